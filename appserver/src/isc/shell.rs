//! The tokio shell of the ISC service: SIP over UDP and TCP on `[isc] listen`, timers from
//! [`IscCore::poll_timeout`], and an [`Originator`] through which the MESSAGE sink has
//! the core send requests. All decisions are in the core.

use super::{IscConfig, IscCore, Stats};
use crate::event::CallObserver;
use crate::late::LateConfig;
use sip::transport::{Transport, TransportConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Why the ISC service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the SIP port.
    #[error("bind SIP {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
}

/// Why a request could not be handed to the ISC service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginatorError {
    /// The service has stopped.
    #[error("the ISC service has stopped")]
    Stopped,
    /// Its queue is full (it falls behind): this request is dropped rather than waited
    /// for, like any notification that would come too late.
    #[error("the ISC service's queue is full")]
    Full,
}

enum Originate {
    Message { to: String, text: String },
}

/// How many requests to originate may wait for the loop.
const ORIGINATE_QUEUE: usize = 256;

/// Has the running ISC service send requests of its own (through the S-CSCF). Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Originator(mpsc::Sender<Originate>);

impl std::fmt::Debug for Originate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Originate::Message { to, .. } => write!(f, "MESSAGE to {to}"),
        }
    }
}

impl Originator {
    /// Queues a pager-mode MESSAGE (text/plain) to the SIP or tel URI `to`.
    pub fn send_message(&self, to: &str, text: &str) -> Result<(), OriginatorError> {
        self.0
            .try_send(Originate::Message {
                to: to.to_string(),
                text: text.to_string(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => OriginatorError::Full,
                mpsc::error::TrySendError::Closed(_) => OriginatorError::Stopped,
            })
    }
}

/// A running ISC service.
pub struct Running {
    /// Where SIP listens (UDP and TCP).
    pub sip_addr: SocketAddr,
    originator: Originator,
    stop: watch::Sender<bool>,
    stats: Arc<Mutex<Stats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Counters so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters as the loop updates them, for a `/metrics` renderer that outlives
    /// this borrow.
    pub fn stats_shared(&self) -> Arc<Mutex<Stats>> {
        self.stats.clone()
    }

    /// A handle to have the service send requests (the MESSAGE sink's way out).
    pub fn originator(&self) -> Originator {
        self.originator.clone()
    }

    /// Ends the loop. Calls in progress are no longer watched.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the ISC service: binds `[isc] listen` (UDP and TCP) and runs the core, which
/// reports calls to `observer`.
pub async fn start(
    cfg: &IscConfig,
    late: &LateConfig,
    observer: Arc<dyn CallObserver>,
) -> Result<Running, StartError> {
    let (transport, mut rx) = Transport::new(TransportConfig::default());
    let sip_addr = transport
        .bind_udp(cfg.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.listen,
            source,
        })?;
    transport
        .bind_tcp(sip_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: sip_addr,
            source,
        })?;
    let mut core = IscCore::new(cfg.core(sip_addr, late), observer);
    let (orig_tx, mut orig_rx) = mpsc::channel(ORIGINATE_QUEUE);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stats = Arc::new(Mutex::new(Stats::default()));
    let stats2 = stats.clone();
    tracing::info!(%sip_addr, "ISC service listening");
    let task = tokio::spawn(async move {
        loop {
            // Counters first: what we are about to send may make a test (or an operator)
            // look at them before this loop comes round again.
            *stats2.lock().unwrap_or_else(|e| e.into_inner()) = core.stats();
            while let Some(t) = core.poll_transmit() {
                if let Err(e) = transport.send(&t).await {
                    tracing::warn!("send to {}: {e}", t.flow.remote);
                    if let Some(id) = t.tx {
                        core.handle_transport_error(id, Instant::now());
                    }
                }
            }
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
                Some(o) = orig_rx.recv() => match o {
                    Originate::Message { to, text } => {
                        core.send_message(&to, &text, Instant::now());
                    }
                },
                _ = sleep => core.handle_timeout(Instant::now()),
                _ = stop_rx.changed() => break,
            }
        }
    });
    Ok(Running {
        sip_addr,
        originator: Originator(orig_tx),
        stop: stop_tx,
        stats,
        task,
    })
}
