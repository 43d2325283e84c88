//! The tokio shell of the standalone `scscf` binary: SIP over UDP and TCP on `[sip]
//! listen`, Cx to the HSS through [`crate::cxclient`], timers from
//! [`Scscf::poll_timeout`], `/metrics`. A loop of a few dozen lines; all decisions are in
//! the core.
//!
//! P-CSCFs reach it in proxy mode (`[scscf] mode = "proxy"`, `address` = our listen
//! address): exactly the path they take to any external S-CSCF (TS 24.229 §5.2.2 Mw).

use crate::config::{Config, ConfigError};
use crate::cxclient::{self, CxClient};
use crate::metrics::{Gauges, Metrics, MetricsServer, ServeError};
use crate::{Event, Output, Scscf, Stats};
use sip::transport::{Transport, TransportConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why the S-CSCF could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding the SIP port.
    #[error("bind SIP {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
    /// No HSS.
    #[error("cannot reach the HSS at {addr}: {source}")]
    Hss {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: diameter::TransportError,
    },
    /// The `/metrics` endpoint.
    #[error("metrics endpoint: {0}")]
    Metrics(#[from] ServeError),
}

/// A running S-CSCF.
pub struct Running {
    /// Where SIP listens (UDP and TCP).
    pub sip_addr: SocketAddr,
    /// What P-CSCFs and the HSS are told: Service-Route, Server-Name.
    pub advertise: SocketAddr,
    /// Where `/metrics` is served, when `[metrics] listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    _metrics_server: Option<MetricsServer>,
    stop: watch::Sender<bool>,
    stats: Arc<Mutex<Stats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Counters so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the loop. Registrations are not deregistered at the HSS: a restarted S-CSCF
    /// with the same name takes them over as the UEs re-register.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How often the loop refreshes the gauges of `/metrics`: often enough for a scrape,
/// rarely enough that walking the pending challenges costs nothing per message.
const GAUGE_PERIOD: Duration = Duration::from_millis(250);

/// Starts the S-CSCF as configured: binds SIP, connects to the HSS (Cx capabilities
/// exchange done before the first REGISTER can arrive), serves `/metrics`.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    cfg.validate()?;
    let tcfg = TransportConfig {
        limits: cfg.limits(),
        ..TransportConfig::default()
    };
    let (transport, mut rx) = Transport::new(tcfg);
    let listen = cfg.sip.listen;
    let sip_addr = transport
        .bind_udp(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    transport
        .bind_tcp(sip_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: sip_addr,
            source,
        })?;
    // Never a wildcard in Service-Route or the HSS: the configured advertise IP, the port
    // we bound.
    let advertise = SocketAddr::new(cfg.advertise_addr().ip(), sip_addr.port());
    let peer = cfg.hss_peer();
    let (hss, hss_requests) = cxclient::connect(&peer)
        .await
        .map_err(|source| StartError::Hss {
            addr: peer.address,
            source,
        })?;
    let mut core = Scscf::new(cfg.core(advertise)).with_isc(cfg.isc.core());
    let metrics = Arc::new(Metrics::new());
    let (metrics_addr, metrics_server) = match cfg.metrics.listen {
        Some(addr) => {
            let server = crate::metrics::serve(addr, metrics.clone()).await?;
            (Some(server.local_addr()), Some(server))
        }
        None => (None, None),
    };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stats = Arc::new(Mutex::new(Stats::default()));
    let stats2 = stats.clone();
    let task = tokio::spawn(async move {
        let (cx, mut cx_rx) = CxClient::new(Some(hss));
        let mut hss_requests = Some(hss_requests);
        let mut last_gauges: Option<Instant> = None;
        loop {
            drain(&mut core, &transport, &cx, &metrics).await;
            *stats2.lock().unwrap_or_else(|e| e.into_inner()) = core.stats();
            if last_gauges.is_none_or(|t| t.elapsed() >= GAUGE_PERIOD) {
                metrics.set(Gauges {
                    registered: core.registration_count() as u64,
                    pending_challenges: core.pending_challenges() as u64,
                    transactions: core.transaction_count() as u64,
                    resyncs: core.stats().resyncs,
                    as_forwards: core.stats().as_forwards,
                    as_failures: core.stats().as_failures,
                    third_party_registers: core.stats().third_party_registers,
                });
                last_gauges = Some(Instant::now());
            }
            let deadline = core.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            // The gauge refresh needs a turn of the loop even when nothing happens.
            let tick = tokio::time::sleep(GAUGE_PERIOD);
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => core.handle_inbound(m.flow, m.data, Instant::now()),
                    None => break,
                },
                Some((token, answer)) = cx_rx.recv() => {
                    core.handle_cx_answer(token, answer, Instant::now());
                }
                q = cxclient::next_request(&mut hss_requests) => {
                    let _ = q.reply.send(core.handle_cx_request(&q.request, Instant::now()));
                }
                _ = sleep => core.handle_timeout(Instant::now()),
                _ = tick => {}
                _ = stop_rx.changed() => break,
            }
        }
    });
    Ok(Running {
        sip_addr,
        advertise,
        metrics_addr,
        _metrics_server: metrics_server,
        stop: stop_tx,
        stats,
        task,
    })
}

async fn drain(core: &mut Scscf, transport: &Transport, cx: &CxClient, metrics: &Arc<Metrics>) {
    while let Some(o) = core.poll_output() {
        match o {
            Output::Transmit(t) => {
                // A branch that cannot be sent ends as a 503 (RFC 3261 §16.9); a lost
                // response is retransmitted when the P-CSCF retransmits its request.
                if let Err(e) = transport.send(&t).await {
                    tracing::warn!("send to {}: {e}", t.flow.remote);
                    if let Some(id) = t.tx {
                        core.handle_transport_error(id, std::time::Instant::now());
                    }
                }
            }
            Output::Handoff(h) => {
                // Alone in this process: nobody takes in-process messages.
                tracing::warn!(to = %h.flow.remote, "in-process message to no core");
            }
            Output::Cx { token, request } => cx.request(token, request, metrics.clone()),
            Output::Event(e) => {
                metrics.event(&e);
                log_event(&e);
            }
        }
    }
}

fn log_event(e: &Event) {
    match e {
        Event::Challenged { impi } => tracing::info!(%impi, "401 challenge"),
        Event::Registered {
            impu,
            impi,
            expires,
        } => tracing::info!(%impu, %impi, expires, "registered"),
        Event::Deregistered { impu, reason } => tracing::info!(%impu, ?reason, "deregistered"),
        Event::Rejected { impi, code, reason } => {
            tracing::warn!(%impi, code, %reason, "REGISTER rejected")
        }
        Event::Dropped { remote, reason } => tracing::debug!(%remote, %reason, "dropped"),
    }
}
