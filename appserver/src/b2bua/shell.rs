//! The tokio shell of the bridge's SIP side: SIP over UDP and TCP on `[bridge] isc_listen`
//! and `listen`, timers from [`B2bCore::poll_timeout`], and the plane's
//! [`MediaEvent`]s. All decisions are in the core.

use super::{B2bCore, B2bEvent, BridgeConfig, ConfigError, Stats};
use crate::media_api::{MediaControl, MediaEvent};
use sip::transport::{Transport, TransportConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The `[bridge]` section.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding a SIP port.
    #[error("bind SIP {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
}

/// A running bridge.
pub struct Running {
    /// Where the ISC side listens (UDP and TCP).
    pub isc_addr: SocketAddr,
    /// Where the peer side listens (UDP and TCP).
    pub peer_addr: SocketAddr,
    stop: watch::Sender<bool>,
    stats: Arc<Mutex<Stats>>,
    events: Arc<Mutex<Vec<B2bEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

/// How many events [`Running::events`] keeps (the oldest go first).
const EVENTS_KEPT: usize = 1024;

impl Running {
    /// Counters so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters as the loop updates them, for a `/metrics` closure that outlives no
    /// borrow of this handle (as [`crate::isc::Running::stats_shared`]).
    pub fn stats_shared(&self) -> Arc<Mutex<Stats>> {
        self.stats.clone()
    }

    /// The latest call events (at most 1024), oldest first.
    pub fn events(&self) -> Vec<B2bEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ends the loop. Calls in progress are abandoned (no BYE).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn bind(transport: &Transport, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    let bound = transport
        .bind_udp(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    transport
        .bind_tcp(bound)
        .await
        .map_err(|source| StartError::Bind {
            addr: bound,
            source,
        })?;
    Ok(bound)
}

/// Starts the bridge: binds both SIP sides and runs the core, which drives `media`; the
/// plane's reports arrive on `media_events`.
pub async fn start(
    cfg: &BridgeConfig,
    media: Arc<dyn MediaControl>,
    mut media_events: mpsc::Receiver<MediaEvent>,
) -> Result<Running, StartError> {
    cfg.validate()?;
    let (transport, mut rx) = Transport::new(TransportConfig::default());
    let isc_addr = bind(&transport, cfg.isc_listen).await?;
    let peer_addr = bind(&transport, cfg.listen).await?;
    let mut core = B2bCore::new(cfg.core(isc_addr, peer_addr)?, media);
    core.handle_start(Instant::now());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stats = Arc::new(Mutex::new(Stats::default()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let (stats2, events2) = (stats.clone(), events.clone());
    tracing::info!(%isc_addr, %peer_addr, peer = %cfg.peer, "bridge listening");
    let task = tokio::spawn(async move {
        let mut media_open = true;
        loop {
            while let Some(t) = core.poll_transmit() {
                if let Err(e) = transport.send(&t).await {
                    tracing::warn!("send to {}: {e}", t.flow.remote);
                    if let Some(id) = t.tx {
                        core.handle_transport_error(id, Instant::now());
                    }
                }
            }
            {
                let mut ev = events2.lock().unwrap_or_else(|e| e.into_inner());
                while let Some(e) = core.poll_event() {
                    ev.push(e);
                }
                let excess = ev.len().saturating_sub(EVENTS_KEPT);
                ev.drain(..excess);
            }
            *stats2.lock().unwrap_or_else(|e| e.into_inner()) = core.stats();
            let deadline = core.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => core.handle_inbound(m.flow, m.data, Instant::now()),
                    None => break,
                },
                e = media_events.recv(), if media_open => match e {
                    Some(MediaEvent::Timeout { id, leg }) => {
                        core.handle_media_timeout(id, leg, Instant::now());
                    }
                    None => media_open = false,
                },
                _ = sleep => core.handle_timeout(Instant::now()),
                _ = stop_rx.changed() => break,
            }
        }
    });
    Ok(Running {
        isc_addr,
        peer_addr,
        stop: stop_tx,
        stats,
        events,
        task,
    })
}
