//! The media plane of the AMR ⇄ PCMA bridge (issue 12): the tokio shell around
//! [`media::bridge::Channel`], driven by the B2BUA through [`MediaControl`].
//!
//! [`MediaPlane::allocate`] leases two RTP/RTCP port pairs from the configured range (one
//! per leg, RTP even, RTCP + 1, RFC 3550 §11) and hands the session to one of N worker
//! threads, round robin. Each worker is a single-thread tokio runtime that owns the sockets
//! and channels of its sessions and only moves datagrams and timers: relaying, transcoding,
//! jitter buffering, DTMF and RTCP are all in the sans-IO channel. [`MediaPlane::negotiated`]
//! reads the leg's [`LegSpec`] from the two SDPs on the caller's task (pure, no IO) and
//! refuses codecs the backend cannot transcode before the call goes on. A session ends on
//! [`MediaPlane::release`] or when a leg stays silent past the media timeout (then
//! [`MediaEvent::Timeout`] goes to the B2BUA); either way its sockets are closed before its
//! ports go back to the pool, so none leak.

mod ports;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use media::bridge::{Channel, ChannelConfig, ChannelStats, LegCodec, LegSpec, Side};
use media::codec::{self, Backend};
use opskit::metrics::{CounterFamily, Exposition};
use sdp::{AmrKind, LocalCodec};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::media_api::{Allocated, Leg, MediaControl, MediaError, MediaEvent, MediaId};
pub use ports::{PortPair, PortPool};
use session::{NewSession, SessionCmd, Shared};

/// The codec implementation, as the configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecBackend {
    /// The pure-Rust codec (always built).
    Rust,
    /// opencore-amr / vo-amrwbenc (cargo feature `opencore` of `media`).
    Opencore,
}

impl CodecBackend {
    /// The `media` backend.
    pub fn backend(self) -> Backend {
        match self {
            CodecBackend::Rust => Backend::Rust,
            CodecBackend::Opencore => Backend::Opencore,
        }
    }

    /// opencore when this build has it (the fast one), else Rust.
    pub fn best_available() -> Self {
        if Backend::available().contains(&Backend::Opencore) {
            CodecBackend::Opencore
        } else {
            CodecBackend::Rust
        }
    }
}

/// `[media]`: the bridge's media plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Address the media sockets bind to. Default 127.0.0.1 (a lab on one host); set the
    /// interface address (or 0.0.0.0 with `advertise`) to reach other machines.
    pub bind: IpAddr,
    /// Address written into our SDP. Default: `bind` (required when `bind` is 0.0.0.0 or
    /// `::`, which no peer can send to).
    pub advertise: Option<IpAddr>,
    /// Lowest port of the range. Default 40000.
    pub port_min: u16,
    /// Highest port of the range. Default 40999: 250 calls (4 ports each).
    pub port_max: u16,
    /// Seconds without RTP or RTCP on a leg before the call is ended. Default 30: longer
    /// than any DTX pause (SID every 160 ms) and RTCP interval (5 s), shorter than a user
    /// waits on a dead line.
    pub timeout: u64,
    /// `"opencore"` or `"rust"`. Default: opencore when built with it, else rust.
    pub backend: CodecBackend,
    /// Event-loop threads. Default 0: one per core.
    pub workers: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise: None,
            port_min: 40000,
            port_max: 40999,
            timeout: 30,
            backend: CodecBackend::best_available(),
            workers: 0,
        }
    }
}

/// A commented `[media]` section.
pub const EXAMPLE: &str = r#"# Media plane of the AMR <-> PCMA bridge: RTP/RTCP of both legs of every bridged call.
[media]
# Address the media sockets bind to; the address in our SDP is `advertise`, or this.
bind = "127.0.0.1"
# advertise = "192.0.2.10"
# Port range: each call takes two RTP ports (even) and their RTCP ports (odd, +1).
port_min = 40000
port_max = 40999
# Seconds without RTP or RTCP on a leg before the call is ended.
timeout = 30
# Codec for transcoding: "opencore" (Debian's libopencore-amr, when built) or "rust".
# backend = "opencore"
# Event-loop threads; 0 = one per core.
workers = 0
"#;

/// Why the plane did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work.
    #[error("[media] {0}")]
    Config(String),
    /// The backend lacks a codec (opencore without the cargo feature).
    #[error("[media] backend: {0}")]
    Backend(#[from] codec::CodecError),
    /// A worker thread could not start.
    #[error("media worker: {0}")]
    Worker(#[from] std::io::Error),
}

impl MediaConfig {
    /// The address peers send to, or why there is none.
    pub fn advertised(&self) -> Result<IpAddr, StartError> {
        let a = self.advertise.unwrap_or(self.bind);
        if a.is_unspecified() {
            return Err(StartError::Config(
                "bind is a wildcard address: set advertise".into(),
            ));
        }
        Ok(a)
    }
}

/// The plane's counters, summed over sessions.
#[derive(Debug, Default)]
pub struct Metrics {
    started: AtomicU64,
    active: AtomicU64,
    relayed: AtomicU64,
    transcoded: AtomicU64,
    dtmf: AtomicU64,
    dropped: AtomicU64,
    late: AtomicU64,
    lost: AtomicU64,
    timeouts: AtomicU64,
    rtcp_sent: AtomicU64,
    rtcp_received: AtomicU64,
}

impl Metrics {
    fn add(&self, was: &ChannelStats, now: &ChannelStats) {
        for (c, a, b) in [
            (&self.relayed, was.relayed, now.relayed),
            (&self.transcoded, was.transcoded, now.transcoded),
            (&self.dtmf, was.dtmf, now.dtmf),
            (&self.dropped, was.dropped, now.dropped),
            (&self.late, was.late, now.late),
            (&self.rtcp_sent, was.rtcp_sent, now.rtcp_sent),
            (&self.rtcp_received, was.rtcp_received, now.rtcp_received),
        ] {
            if b > a {
                c.fetch_add(b - a, Ordering::Relaxed);
            }
        }
    }
}

struct Handle {
    tx: mpsc::UnboundedSender<SessionCmd>,
    specs: [Option<LegSpec>; 2],
}

/// The live sessions, shared by the plane and the session tasks (which remove themselves).
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<MediaId, Handle>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MediaId, Handle>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn remove(&self, id: MediaId) {
        self.lock().remove(&id);
    }
}

/// The running media plane.
pub struct MediaPlane {
    advertised: IpAddr,
    backend: Backend,
    timeout: Duration,
    amr: Vec<AmrKind>,
    pool: Arc<PortPool>,
    sessions: Arc<Sessions>,
    workers: Vec<mpsc::UnboundedSender<(NewSession, Shared)>>,
    next_worker: AtomicUsize,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    events: mpsc::Sender<MediaEvent>,
}

impl std::fmt::Debug for MediaPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPlane")
            .field("advertised", &self.advertised)
            .field("backend", &self.backend)
            .field("workers", &self.workers.len())
            .finish()
    }
}

fn side_of(leg: Leg) -> Side {
    match leg {
        Leg::Ims => Side::A,
        Leg::Sip => Side::B,
    }
}

impl MediaPlane {
    /// Starts the worker threads; timeouts are reported on `events`. Needs no runtime on the
    /// calling thread.
    pub fn start(
        cfg: &MediaConfig,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<Arc<MediaPlane>, StartError> {
        let advertised = cfg.advertised()?;
        if cfg.port_min > cfg.port_max || cfg.port_max - cfg.port_min < 3 {
            return Err(StartError::Config(format!(
                "port range {}-{} holds no two port pairs",
                cfg.port_min, cfg.port_max
            )));
        }
        if cfg.timeout == 0 {
            return Err(StartError::Config("timeout must be at least 1 s".into()));
        }
        let backend = cfg.backend.backend();
        if !Backend::available().contains(&backend) {
            return Err(StartError::Config(format!(
                "backend {:?} is not built in",
                cfg.backend
            )));
        }
        // The AMR codecs the backend has decide what the IMS leg may offer for transcoding.
        let amr: Vec<AmrKind> = [AmrKind::Nb, AmrKind::Wb]
            .into_iter()
            .filter(|&k| {
                codec::decoder(k, backend).is_ok() && codec::encoder(k, backend, false).is_ok()
            })
            .collect();
        let n = match cfg.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || worker(rt, rx))?;
            workers.push(tx);
        }
        Ok(Arc::new(MediaPlane {
            advertised,
            backend,
            timeout: Duration::from_secs(cfg.timeout),
            amr,
            pool: Arc::new(PortPool::new(cfg.bind, cfg.port_min, cfg.port_max)),
            sessions: Arc::new(Sessions::default()),
            workers,
            next_worker: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            metrics: Arc::new(Metrics::default()),
            events,
        }))
    }

    /// Port pairs not leased (two per session).
    pub fn free_port_pairs(&self) -> usize {
        self.pool.available()
    }

    /// Sessions running.
    pub fn sessions(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The plane's Prometheus families, for the server's `/metrics` next to its own.
    pub fn render_metrics(&self) -> String {
        let m = &*self.metrics;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut e = Exposition::new();
        e.counter(
            "appserver_media_sessions_total",
            "Media sessions allocated by the bridge.",
            get(&m.started),
        );
        e.gauge(
            "appserver_media_sessions",
            "Media sessions running.",
            get(&m.active),
        );
        let fam = CounterFamily::new(["how"]);
        fam.add(["relayed"], get(&m.relayed));
        fam.add(["transcoded"], get(&m.transcoded));
        fam.add(["dtmf"], get(&m.dtmf));
        e.counters(
            "appserver_media_packets_sent_total",
            "RTP packets the bridge sent: relayed (payload untouched or AMR repacked), \
             from the transcoder, telephone-event.",
            &fam,
        );
        let fam = CounterFamily::new(["why"]);
        fam.add(["lost"], get(&m.lost));
        fam.add(["late"], get(&m.late));
        fam.add(["dropped"], get(&m.dropped));
        e.counters(
            "appserver_media_packet_losses_total",
            "RTP lost before reaching the bridge (RFC 3550 cumulative), frames too late for \
             the jitter buffer, datagrams dropped (malformed, unexpected, queue full).",
            &fam,
        );
        let fam = CounterFamily::new(["dir"]);
        fam.add(["sent"], get(&m.rtcp_sent));
        fam.add(["received"], get(&m.rtcp_received));
        e.counters(
            "appserver_media_rtcp_total",
            "RTCP compounds sent and received.",
            &fam,
        );
        e.counter(
            "appserver_media_timeouts_total",
            "Sessions ended because a leg sent no RTP nor RTCP for the media timeout.",
            get(&m.timeouts),
        );
        e.finish()
    }

    fn spec_error(leg: Leg, reason: impl std::fmt::Display) -> MediaError {
        MediaError::Codec {
            leg,
            reason: reason.to_string(),
        }
    }
}

fn worker(rt: tokio::runtime::Runtime, mut rx: mpsc::UnboundedReceiver<(NewSession, Shared)>) {
    rt.block_on(async move {
        while let Some((new, shared)) = rx.recv().await {
            let span = tracing::info_span!("media", id = new.id.0);
            tokio::spawn(tracing::Instrument::instrument(
                session::run(new, shared),
                span,
            ));
        }
    });
}

impl MediaControl for MediaPlane {
    fn codecs(&self, leg: Leg) -> Vec<LocalCodec> {
        let mut v = Vec::new();
        if leg == Leg::Ims {
            for &k in &self.amr {
                v.push(LocalCodec::amr(k, false));
                v.push(LocalCodec::amr(k, true));
            }
        }
        v.push(LocalCodec::pcma());
        v.push(LocalCodec::pcmu());
        v.push(LocalCodec::telephone_event(8000));
        if leg == Leg::Ims && self.amr.contains(&AmrKind::Wb) {
            v.push(LocalCodec::telephone_event(16000));
        }
        v
    }

    fn allocate(&self) -> Result<Allocated, MediaError> {
        let ims = self.pool.lease().ok_or(MediaError::NoPorts)?;
        let Some(sip) = self.pool.lease() else {
            let p = ims.port;
            drop(ims);
            self.pool.release(p);
            return Err(MediaError::NoPorts);
        };
        let id = MediaId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (ims_port, sip_port) = (ims.port, sip.port);
        let now = Instant::now();
        let mut config = ChannelConfig::new(rand::random(), SystemTime::now());
        config.backend = self.backend;
        config.media_timeout = self.timeout;
        let channel = Channel::new(config, now);
        let (tx, cmds) = mpsc::unbounded_channel();
        self.sessions.lock().insert(
            id,
            Handle {
                tx,
                specs: [None, None],
            },
        );
        let w = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let new = NewSession {
            id,
            channel,
            ims,
            sip,
            cmds,
        };
        let shared = Shared {
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
            events: self.events.clone(),
            sessions: self.sessions.clone(),
        };
        if let Err(mpsc::error::SendError((new, _))) = self.workers[w].send((new, shared)) {
            // The worker is gone (its thread panicked): nothing will serve the session.
            self.sessions.remove(id);
            drop(new);
            self.pool.release(ims_port);
            self.pool.release(sip_port);
            return Err(MediaError::NoPorts);
        }
        self.metrics.started.fetch_add(1, Ordering::Relaxed);
        Ok(Allocated {
            id,
            ims: SocketAddr::new(self.advertised, ims_port),
            sip: SocketAddr::new(self.advertised, sip_port),
        })
    }

    fn negotiated(
        &self,
        id: MediaId,
        leg: Leg,
        local: &sdp::Session,
        remote: &sdp::Session,
    ) -> Result<(), MediaError> {
        let spec = LegSpec::from_sdp(local, remote).map_err(|e| Self::spec_error(leg, e))?;
        let mut sessions = self.sessions.lock();
        let h = sessions.get_mut(&id).ok_or(MediaError::Unknown(id))?;
        let side = side_of(leg);
        let mut specs = h.specs;
        specs[match side {
            Side::A => 0,
            Side::B => 1,
        }] = Some(spec);
        if let [Some(a), Some(b)] = specs {
            if !a.codec.same_codec(b.codec) {
                for (l, s) in [(Leg::Ims, a), (Leg::Sip, b)] {
                    if let LegCodec::Amr(f) = s.codec {
                        if !self.amr.contains(&f.kind) {
                            return Err(Self::spec_error(
                                l,
                                format!(
                                    "no {:?} codec in the {:?} backend to transcode",
                                    f.kind, self.backend
                                ),
                            ));
                        }
                    }
                }
            }
        }
        h.tx.send(SessionCmd::Leg(side, spec))
            .map_err(|_| MediaError::Unknown(id))?;
        h.specs = specs;
        Ok(())
    }

    fn release(&self, id: MediaId) {
        // Dropping the command sender ends the session task, which closes the sockets and
        // returns the ports.
        self.sessions.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        media: MediaConfig,
    }

    #[test]
    fn example_is_the_defaults_and_unknown_keys_are_refused() {
        let f: File = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(f.media, MediaConfig::default());
        assert_eq!(
            f.media.advertised().unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert!(toml::from_str::<File>("[media]\nport = 1\n").is_err());
        let f: File = toml::from_str("[media]\nbind = \"0.0.0.0\"\nbackend = \"rust\"\n").unwrap();
        assert_eq!(f.media.backend, CodecBackend::Rust);
        assert!(
            f.media.advertised().is_err(),
            "a wildcard bind needs advertise"
        );
    }

    #[test]
    fn start_refuses_unusable_settings() {
        let (tx, _rx) = mpsc::channel(1);
        let small = MediaConfig {
            port_min: 40000,
            port_max: 40002,
            ..MediaConfig::default()
        };
        assert!(matches!(
            MediaPlane::start(&small, tx.clone()),
            Err(StartError::Config(_))
        ));
        let no_timeout = MediaConfig {
            timeout: 0,
            ..MediaConfig::default()
        };
        assert!(matches!(
            MediaPlane::start(&no_timeout, tx),
            Err(StartError::Config(_))
        ));
    }
}
