//! `appserver run`: every configured part started around one caller-ID pipeline.
//!
//! ```text
//!  [isc] (always) ─┐                          ┌─ [ncid] [fritz] [mqtt] [datagram] [webhook]
//!  [live] iface   ─┼─▶ pipeline ─▶ EventBus ──┤
//!  [nfqueue] queue ┘   (calllog)              └─ [message] (through the ISC service)
//!  [rest] API, [metrics] /metrics
//!  [bridge] enabled: B2BUA (ISC side, SIP peer side) ─ MediaControl ─▶ [media] plane
//! ```
//!
//! The bridge (issue 12) stands beside the caller-ID service and shares nothing with it but
//! the process, `/metrics` and the shutdown: the plane reports media timeouts to the
//! B2BUA over an mpsc, the B2BUA drives the plane through [`crate::media_api`].
//!
//! [`start`] is what `main.rs`, `imslab demo` and the end-to-end tests call, so all three
//! run the same server.

use crate::config::Config;
use crate::event::CallObserver;
use crate::media_api::{MediaControl, MediaEvent};
use crate::mediaplane::MediaPlane;
use crate::pipeline::{self, Pipeline};
use crate::sinks::{self, SinkHandle};
use crate::{b2bua, isc, mediaplane, passive, rest};
use opskit::metrics::{CounterFamily, Exposition};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// Media events (timeouts) queued from the plane to the B2BUA: far more than the calls
/// that can time out at once before the B2BUA's loop runs again.
const MEDIA_EVENTS: usize = 256;

/// Events the bus holds for a slow sink before it loses the oldest: a few seconds of a
/// busy lab's calls (four events each), so only a sink stuck for longer loses any.
pub const BUS_CAPACITY: usize = 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pipeline (phonebook, blocklist, call log, reverse lookup).
    #[error(transparent)]
    Pipeline(#[from] pipeline::StartError),
    /// The ISC SIP service.
    #[error(transparent)]
    Isc(#[from] isc::StartError),
    /// A notification sink.
    #[error(transparent)]
    Sink(#[from] sinks::SinkError),
    /// The live capture socket.
    #[error("[live] interface: {0}")]
    Live(std::io::Error),
    /// The NFQUEUE.
    #[error("[nfqueue]: {0} (needs root or CAP_NET_ADMIN, and nfnetlink_queue)")]
    Nfqueue(std::io::Error),
    /// The REST API.
    #[error(transparent)]
    Rest(#[from] rest::RestError),
    /// The bridge's media plane (`[media]`).
    #[error(transparent)]
    Media(#[from] mediaplane::StartError),
    /// The bridge's SIP side (`[bridge]`).
    #[error(transparent)]
    Bridge(#[from] b2bua::StartError),
    /// The metrics endpoint.
    #[error(transparent)]
    Metrics(#[from] opskit::http::ServeError),
}

/// The running server. [`Running::stop`] ends every part.
pub struct Running {
    /// The ISC service (its SIP address, counters).
    pub isc: isc::Running,
    /// The caller-ID pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The event bus (subscribe to watch calls).
    pub bus: crate::event::EventBus,
    /// The network sinks that run.
    pub sinks: Vec<SinkHandle>,
    /// The REST API's address, if configured.
    pub rest_addr: Option<SocketAddr>,
    /// The metrics endpoint's address, if configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The AMR ⇄ PCMA bridge, when `[bridge]` is enabled.
    pub bridge: Option<Bridge>,
    live: Option<passive::live::LiveHandle>,
    nfqueue: Option<passive::nfqueue::NfqueueHandle>,
    message: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    _metrics: Option<opskit::http::MetricsServer>,
}

/// The running bridge: its SIP side and its media plane.
pub struct Bridge {
    /// The B2BUA (its addresses, counters, call events).
    pub sip: b2bua::Running,
    /// The media plane.
    pub media: Arc<MediaPlane>,
}

impl Bridge {
    async fn start(cfg: &Config) -> Result<Bridge, StartError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<MediaEvent>(MEDIA_EVENTS);
        let media = MediaPlane::start(&cfg.media, tx)?;
        let control: Arc<dyn MediaControl> = media.clone();
        let sip = b2bua::start(&cfg.bridge, control, rx).await?;
        Ok(Bridge { sip, media })
    }

    /// Ends the SIP side first (its core holds the plane), then lets the plane's worker
    /// threads end with the last handle.
    async fn stop(self) {
        self.sip.stop().await;
        drop(self.media);
    }
}

impl Running {
    /// The bound address of sink `name` (`ncid`, `fritz`, `datagram`), if it runs.
    pub fn sink_addr(&self, name: &str) -> Option<SocketAddr> {
        self.sinks
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.local_addr)
    }

    /// One line for the operator: what listens where.
    pub fn summary(&self) -> String {
        let mut s = format!("isc {}", self.isc.sip_addr);
        for h in &self.sinks {
            match h.local_addr {
                Some(a) => s.push_str(&format!(" {} {a}", h.name)),
                None => s.push_str(&format!(" {}", h.name)),
            }
        }
        if self.live.is_some() {
            s.push_str(" live");
        }
        if self.nfqueue.is_some() {
            s.push_str(" nfqueue");
        }
        if let Some(a) = self.rest_addr {
            s.push_str(&format!(" rest {a}"));
        }
        if let Some(b) = &self.bridge {
            s.push_str(&format!(
                " bridge isc {} peer-side {}",
                b.sip.isc_addr, b.sip.peer_addr
            ));
        }
        if let Some(a) = self.metrics_addr {
            s.push_str(&format!(" metrics {a}"));
        }
        s
    }

    /// Stops inputs first (no new calls), then the sinks, flushing what is queued.
    pub async fn stop(self) {
        if let Some(l) = self.live {
            let _ = tokio::task::spawn_blocking(move || l.stop()).await;
        }
        if let Some(n) = self.nfqueue {
            let _ = tokio::task::spawn_blocking(move || n.stop()).await;
        }
        self.isc.stop().await;
        if let Some(b) = self.bridge {
            b.stop().await;
        }
        self.ticker.abort();
        let _ = self.shutdown.send(true);
        self.message.abort();
        for s in self.sinks {
            let _ = s.task.await;
        }
    }
}

/// Starts everything `cfg` configures. Must be called inside a tokio runtime.
pub async fn start(cfg: &Config) -> Result<Running, StartError> {
    let (bus, _) = broadcast::channel(BUS_CAPACITY);
    let pipeline = pipeline::start(&cfg.sections(), bus.clone())?;
    let ticker = pipeline.spawn_ticker();
    let observer: Arc<dyn CallObserver> = pipeline.clone();

    let (shutdown, shutdown_rx) = watch::channel(false);
    let sinks = cfg.sinks().spawn(&bus, &shutdown_rx).await?;
    let isc = isc::start(&cfg.isc, &cfg.late, observer.clone()).await?;
    let message = sinks::sipmessage::spawn(cfg.message.clone(), bus.subscribe(), isc.originator());

    let live = passive::live::spawn(&cfg.live, &cfg.passive, observer.clone())
        .map_err(StartError::Live)?;
    let nfqueue = passive::nfqueue::spawn(&cfg.nfqueue, &cfg.passive, observer)
        .map_err(StartError::Nfqueue)?;
    let rest_addr = rest::start(&cfg.rest, pipeline.clone()).await?;
    let bridge = if cfg.bridge.enabled {
        Some(Bridge::start(cfg).await?)
    } else {
        None
    };

    let metrics = match cfg.metrics.listen {
        Some(addr) => {
            let p = pipeline.clone();
            let stats: Vec<(&'static str, Arc<sinks::SinkStats>)> =
                sinks.iter().map(|s| (s.name, s.stats.clone())).collect();
            let isc_stats = isc.stats_shared();
            let bridge_parts = bridge
                .as_ref()
                .map(|b| (b.media.clone(), b.sip.stats_shared()));
            Some(
                opskit::http::serve_metrics(addr, move || {
                    let isc = *isc_stats.lock().unwrap_or_else(|e| e.into_inner());
                    let mut text = render_metrics(&p, &stats, isc);
                    if let Some((media, sip)) = &bridge_parts {
                        text.push_str(&media.render_metrics());
                        let b2b = *sip.lock().unwrap_or_else(|e| e.into_inner());
                        text.push_str(&render_bridge_metrics(b2b));
                    }
                    text
                })
                .await?,
            )
        }
        None => None,
    };
    Ok(Running {
        metrics_addr: metrics.as_ref().map(|m| m.local_addr()),
        isc,
        pipeline,
        bus,
        sinks,
        rest_addr,
        bridge,
        live,
        nfqueue,
        message,
        ticker,
        shutdown,
        _metrics: metrics,
    })
}

/// The pipeline's counters, then every sink's and the ISC service's.
fn render_metrics(
    p: &Pipeline,
    sinks: &[(&'static str, Arc<sinks::SinkStats>)],
    isc: isc::Stats,
) -> String {
    let mut text = p.render_metrics();
    let fam = CounterFamily::new(["sink", "result"]);
    for (name, s) in sinks {
        use sinks::SinkStats as S;
        fam.add([name, "sent"], S::get(&s.sent));
        fam.add([name, "failed"], S::get(&s.failed));
        fam.add([name, "lost"], S::get(&s.lost));
    }
    let mut e = Exposition::new();
    e.counters(
        "appserver_sink_events_total",
        "Events each notification sink delivered, failed to deliver after its retries, or \
         lost by falling behind the event bus.",
        &fam,
    );
    e.gauges(
        "appserver_sink_clients",
        "Clients connected to each TCP sink (NCID, Fritz!Box monitor).",
        "sink",
        sinks
            .iter()
            .map(|(n, s)| (*n, sinks::SinkStats::get(&s.clients))),
    );
    let isc_fam = CounterFamily::new(["what"]);
    for (what, n) in [
        ("offers", isc.offers),
        ("blocked", isc.blocked),
        ("proxied", isc.proxied),
        ("registers", isc.registers),
        ("late_notices", isc.late_notices),
        ("messages", isc.messages),
        ("dropped", isc.dropped),
    ] {
        isc_fam.add([what], n);
    }
    e.counters(
        "appserver_isc_total",
        "The ISC service: terminating INVITEs offered, of them blocked (603), requests \
         proxied, third-party REGISTERs, late-registration notices, MESSAGEs sent, input \
         dropped.",
        &isc_fam,
    );
    text.push_str(&e.finish());
    text
}

/// The B2BUA's counters.
fn render_bridge_metrics(s: b2bua::Stats) -> String {
    let fam = CounterFamily::new(["what"]);
    for (what, n) in [
        ("outbound", s.outbound),
        ("inbound", s.inbound),
        ("answered", s.answered),
        ("ended", s.ended),
        ("refused", s.refused),
        ("dropped", s.dropped),
    ] {
        fam.add([what], n);
    }
    let mut e = Exposition::new();
    e.counters(
        "appserver_bridge_calls_total",
        "The AMR/PCMA bridge's SIP side: calls from subscribers to the SIP peer \
         (outbound), from the peer to subscribers (inbound), of them answered and ended, \
         initial INVITEs refused, input dropped.",
        &fam,
    );
    e.finish()
}
