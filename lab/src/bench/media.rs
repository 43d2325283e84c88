//! `imslab bench media`: concurrent media channels per core through a media engine, side by
//! side in one run (issue 12's benchmark).
//!
//! Each engine implements [`testkit::rtpload::Engine`] (allocate a channel → its leg-A and
//! leg-B addresses; release; its CPU seconds). Today that is Debian's rtpengine
//! ([`testkit::rtpengine`], userspace, `--table=-1`); the appserver media plane joins as a
//! second [`EngineKind`] (an `Engine` over `appserver::mediaplane::MediaPlane`, driven
//! through `appserver::media_api::MediaControl`, on its own runtime threads so that its
//! CPU can be told from the generator's).
//!
//! Per scenario the channel count climbs a ladder (`--channels 50,100,200,400`); at each
//! step every engine still climbing runs the same streams in turn (alternating, so that
//! background load on a shared machine hits all alike) through [`testkit::rtpload::run`].
//! A step passes with 0 loss, no packet of the wrong payload type (forwarded instead of
//! transcoded) and p99 added delay below `--p99-ms` in every direction; an engine stops
//! climbing at its first failing step. The report prints, per step, packets sent and
//! received, loss %, p50/p99/max added delay, "slow" channels (median added delay of half a
//! frame or more, per direction), the engine's CPU % of one core and the
//! channels-per-core estimate (channels ÷ CPU share); then per scenario the largest
//! passing N of each engine and, with two engines, the ratio of their channels per core.
//!
//! Delays leave out the first `--warmup-ms` of each run (counted for loss still): the set-up
//! of a stream in an engine (rtpengine holds the first transcoded packet about one frame)
//! is not what a capacity figure is about.

use std::fmt::Write as _;
use std::time::Duration;

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::Context;
use appserver::media_api::{Leg, MediaControl, MediaEvent, MediaId};
use appserver::mediaplane::{CodecBackend, MediaConfig, MediaPlane};
use testkit::rtpengine::{audio_sdp, Rtpengine, RtpengineConfig};
use testkit::rtpload::{
    self, ChannelAddrs, DirectionStats, Engine, LoadError, LoadOptions, LoadReport, Scenario,
};

/// An engine `imslab bench media` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// The appserver's media plane with a codec backend, in this process on its own
    /// worker threads (`media-N`, whose CPU is counted).
    Appserver(CodecBackend),
    /// Debian's rtpengine daemon, userspace forwarding and transcoding.
    Rtpengine,
}

/// Ports of the media plane under test: two RTP/RTCP pairs per channel, room for 1,000.
const PLANE_PORTS: (u16, u16) = (40000, 43999);

impl EngineKind {
    /// Starts the engine.
    pub fn start(self) -> anyhow::Result<Box<dyn Engine>> {
        match self {
            EngineKind::Appserver(backend) => {
                let (tx, events) = tokio::sync::mpsc::channel(1024);
                let cfg = MediaConfig {
                    port_min: PLANE_PORTS.0,
                    port_max: PLANE_PORTS.1,
                    backend,
                    ..MediaConfig::default()
                };
                let plane = MediaPlane::start(&cfg, tx).context("start the media plane")?;
                Ok(Box::new(MediaControlEngine::new(
                    &format!("appserver ({:?})", backend.backend()).to_lowercase(),
                    OwnedPlane {
                        plane,
                        _events: events,
                    },
                    Box::new(|| Some(rtpload::threads_cpu_seconds("media-"))),
                    false,
                )))
            }
            EngineKind::Rtpengine => Ok(Box::new(
                Rtpengine::start(&RtpengineConfig::default()).context("start rtpengine")?,
            )),
        }
    }

    /// Whether the engine can run on this machine (its binary or codec is there).
    pub fn available(self) -> bool {
        match self {
            EngineKind::Appserver(b) => media::codec::Backend::available().contains(&b.backend()),
            EngineKind::Rtpengine => testkit::find_bin("rtpengine").is_some(),
        }
    }

    /// Whether the engine can carry a scenario at all: the media plane has no G.729 (it is
    /// rtpengine's stand-in for AMR, which Debian's rtpengine cannot encode).
    pub fn carries(self, scenario: ScenarioKind) -> bool {
        !matches!(
            (self, scenario),
            (EngineKind::Appserver(_), ScenarioKind::G729Pcma)
        )
    }
}

/// The media plane and the receiver of its events, which must live as long as it does.
struct OwnedPlane {
    plane: std::sync::Arc<MediaPlane>,
    _events: tokio::sync::mpsc::Receiver<MediaEvent>,
}

impl MediaControl for OwnedPlane {
    fn codecs(&self, leg: Leg) -> Vec<sdp::LocalCodec> {
        self.plane.codecs(leg)
    }
    fn allocate(
        &self,
    ) -> Result<appserver::media_api::Allocated, appserver::media_api::MediaError> {
        self.plane.allocate()
    }
    fn negotiated(
        &self,
        id: MediaId,
        leg: Leg,
        local: &sdp::Session,
        remote: &sdp::Session,
    ) -> Result<(), appserver::media_api::MediaError> {
        self.plane.negotiated(id, leg, local, remote)
    }
    fn release(&self, id: MediaId) {
        self.plane.release(id)
    }
}

/// An [`Engine`] over any [`MediaControl`] (the appserver media plane): a channel is a
/// media session whose IMS leg is leg A and SIP leg is leg B; each leg's offer/answer is
/// completed at once with one-codec SDPs (ours: the plane's address; the peer's: the
/// generator's socket). `cpu` reports the plane's CPU seconds, e.g.
/// `|| Some(testkit::rtpload::threads_cpu_seconds("media"))` when the plane's runtime names
/// its threads so.
pub struct MediaControlEngine<M: MediaControl> {
    name: String,
    plane: M,
    cpu: Box<dyn Fn() -> Option<f64>>,
    keeps_sequence: bool,
    sessions: HashMap<usize, MediaId>,
    serial: u64,
}

impl<M: MediaControl> MediaControlEngine<M> {
    /// Wraps `plane` under `name`; `keeps_sequence` says whether it passes RTP sequence
    /// numbers through (a B2BUA that rewrites them per leg does not).
    pub fn new(
        name: &str,
        plane: M,
        cpu: Box<dyn Fn() -> Option<f64>>,
        keeps_sequence: bool,
    ) -> Self {
        MediaControlEngine {
            name: name.into(),
            plane,
            cpu,
            keeps_sequence,
            sessions: HashMap::new(),
            serial: 0,
        }
    }

    /// The wrapped plane.
    pub fn plane(&self) -> &M {
        &self.plane
    }
}

impl<M: MediaControl> Engine for MediaControlEngine<M> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn allocate(
        &mut self,
        channel: usize,
        scenario: &Scenario,
        a_peer: SocketAddr,
        b_peer: SocketAddr,
    ) -> Result<ChannelAddrs, LoadError> {
        let err = |detail: String| LoadError::Engine {
            engine: self.name.clone(),
            detail,
        };
        let al = self.plane.allocate().map_err(|e| err(e.to_string()))?;
        self.sessions.insert(channel, al.id);
        for (leg, ours, theirs, codec) in [
            (Leg::Ims, al.ims, a_peer, &scenario.a),
            (Leg::Sip, al.sip, b_peer, &scenario.b),
        ] {
            self.serial += 1;
            let parse = |at: SocketAddr| {
                sdp::Session::parse(audio_sdp(at, self.serial, codec).as_bytes())
                    .map_err(|e| err(format!("our own SDP does not parse: {e}")))
            };
            let (local, remote) = (parse(ours)?, parse(theirs)?);
            self.plane
                .negotiated(al.id, leg, &local, &remote)
                .map_err(|e| err(e.to_string()))?;
        }
        Ok(ChannelAddrs {
            a: al.ims,
            b: al.sip,
        })
    }

    fn release(&mut self, channel: usize) -> Result<(), LoadError> {
        if let Some(id) = self.sessions.remove(&channel) {
            self.plane.release(id);
        }
        Ok(())
    }

    fn cpu_seconds(&self) -> Option<f64> {
        (self.cpu)()
    }

    fn keeps_sequence(&self) -> bool {
        self.keeps_sequence
    }
}

/// The streams of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioKind {
    /// AMR-NB 12.2 octet-aligned on leg A, PCMA on leg B.
    AmrPcma,
    /// G.729 on leg A, PCMA on leg B (a CELP transcode rtpengine can do; see
    /// [`testkit::rtpengine`]).
    G729Pcma,
    /// PCMA on both legs: relay.
    PcmaRelay,
}

impl ScenarioKind {
    /// The streams, full-duplex or A → B only.
    pub fn scenario(self, duplex: bool) -> anyhow::Result<Scenario> {
        Ok(match self {
            ScenarioKind::AmrPcma => {
                // A tone from the first backend with an AMR-NB encoder; without one, pattern
                // frames (the decoder's cost is the same, the sound is noise).
                let encoded = media::codec::Backend::available().iter().find_map(|&b| {
                    rtpload::amr_nb_tone_frames(b, 7)
                        .ok()
                        .map(|f| (f, format!("tone, {b:?} encoder")))
                });
                let (frames, what) = match encoded {
                    Some(e) => e,
                    None => (
                        rtpload::amr_nb_pattern_frames(7).context("AMR-NB frames")?,
                        "pattern frames".to_string(),
                    ),
                };
                let mut s = Scenario::amr_to_pcma(frames, duplex);
                s.label = format!("{} 12.2 ({what})", s.label);
                s
            }
            ScenarioKind::G729Pcma => Scenario::g729_to_pcma(duplex),
            ScenarioKind::PcmaRelay => Scenario::pcma_relay(duplex),
        })
    }
}

/// What `imslab bench media` runs.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// Channel counts to climb through.
    pub channels: Vec<usize>,
    /// Seconds of streaming per step.
    pub seconds: u32,
    /// Leading part of each step left out of the delay figures.
    pub warmup: Duration,
    /// A step passes with p99 added delay below this (and no loss).
    pub p99_limit: Duration,
    /// Both legs send.
    pub duplex: bool,
    /// Engines, measured in this order at each step.
    pub engines: Vec<EngineKind>,
    /// Scenarios, one ladder each.
    pub scenarios: Vec<ScenarioKind>,
}

/// One engine at one step of one scenario.
#[derive(Debug, Clone)]
pub struct MediaStep {
    /// The scenario's label.
    pub scenario: String,
    /// The run's figures (engine name inside).
    pub report: LoadReport,
    /// Whether the step met the pass criteria.
    pub passed: bool,
}

/// Runs every scenario's ladder on every engine. Engines are started once and kept across
/// steps and scenarios.
pub fn media_run(opts: &MediaOptions) -> anyhow::Result<Vec<MediaStep>> {
    anyhow::ensure!(!opts.engines.is_empty(), "no engine to measure");
    let mut engines = Vec::new();
    for kind in &opts.engines {
        engines.push(kind.start()?);
    }
    let load = |n: usize| LoadOptions {
        warmup: opts.warmup,
        ..LoadOptions::new(n, Duration::from_secs(u64::from(opts.seconds)))
    };
    let mut steps = Vec::new();
    for kind in &opts.scenarios {
        let scenario = kind.scenario(opts.duplex)?;
        let mut climbing = vec![true; engines.len()];
        for &n in &opts.channels {
            for (i, engine) in engines.iter_mut().enumerate() {
                if !climbing[i] || !opts.engines[i].carries(*kind) {
                    continue;
                }
                let report = rtpload::run(engine.as_mut(), &scenario, &load(n))
                    .with_context(|| format!("{} with {n} channels", scenario.label))?;
                let passed = report.passes(opts.p99_limit);
                climbing[i] = passed;
                steps.push(MediaStep {
                    scenario: scenario.label.clone(),
                    report,
                    passed,
                });
            }
            if !climbing.iter().any(|&c| c) {
                break;
            }
        }
    }
    Ok(steps)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn delays(d: &DirectionStats) -> String {
    if d.received == 0 {
        return "-".into();
    }
    format!("{:.2}/{:.2}/{:.1}", ms(d.p50), ms(d.p99), ms(d.max))
}

/// The figures as a text table per scenario, the largest passing step of each engine and,
/// with two or more engines, the ratio of channels per core to the first engine.
pub fn media_report(opts: &MediaOptions, steps: &[MediaStep]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Media channels through each engine on loopback: 20 ms packets, {} s per step, {}, \
         delays after a {} ms warm-up; pass = 0 loss, right payload type, p99 < {} ms",
        opts.seconds,
        if opts.duplex {
            "full duplex"
        } else {
            "leg A → leg B only"
        },
        opts.warmup.as_millis(),
        ms(opts.p99_limit)
    );
    let mut labels: Vec<&str> = Vec::new();
    for st in steps {
        if !labels.contains(&st.scenario.as_str()) {
            labels.push(&st.scenario);
        }
    }
    for label in labels {
        let _ = writeln!(s, "\n{label}");
        let _ = writeln!(
            s,
            "{:<10} {:>5} {:>13} {:>13} {:>7} {:>8} {:>18} {:>18} {:>7} {:>8} {:>8} {:>7}  pass",
            "engine",
            "ch",
            "sent A→B/B→A",
            "recv A→B/B→A",
            "loss %",
            "wrongPT",
            "A→B p50/p99/max ms",
            "B→A p50/p99/max ms",
            "slow ch",
            "eng CPU%",
            "ch/core",
            "gen CPU%"
        );
        let of_label: Vec<&MediaStep> = steps.iter().filter(|st| st.scenario == label).collect();
        for st in &of_label {
            let r = &st.report;
            let back = r.b_to_a.clone().unwrap_or_default();
            let sent = r.a_to_b.sent + back.sent;
            let lost = r.a_to_b.lost + back.lost;
            let loss = if sent == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / sent as f64
            };
            let _ = writeln!(
                s,
                "{:<10} {:>5} {:>13} {:>13} {:>7.3} {:>8} {:>18} {:>18} {:>7} {:>8} {:>8} {:>7.1}  {}",
                r.engine,
                r.channels,
                format!("{}/{}", r.a_to_b.sent, back.sent),
                format!("{}/{}", r.a_to_b.received, back.received),
                loss,
                r.a_to_b.wrong_pt + back.wrong_pt,
                delays(&r.a_to_b),
                if r.b_to_a.is_some() {
                    delays(&back)
                } else {
                    "-".into()
                },
                format!("{}/{}", r.a_to_b.slow_channels, back.slow_channels),
                r.engine_cpu_percent()
                    .map_or("?".into(), |c| format!("{c:.1}")),
                r.channels_per_core()
                    .map_or("?".into(), |c| format!("{c:.0}")),
                r.generator_cpu * 100.0 / r.wall.as_secs_f64().max(1e-9),
                if st.passed { "yes" } else { "NO" }
            );
        }
        let mut best: Vec<(String, Option<&MediaStep>)> = Vec::new();
        for st in &of_label {
            let name = st.report.engine.clone();
            let slot = match best.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot,
                None => {
                    best.push((name, None));
                    let last = best.len() - 1;
                    &mut best[last]
                }
            };
            if st.passed
                && slot
                    .1
                    .is_none_or(|b| st.report.channels > b.report.channels)
            {
                slot.1 = Some(st);
            }
        }
        for (name, b) in &best {
            match b {
                Some(b) => {
                    let _ = writeln!(
                        s,
                        "{name}: largest passing step {} channels, {} channels per core there",
                        b.report.channels,
                        b.report
                            .channels_per_core()
                            .map_or("?".into(), |c| format!("{c:.0}"))
                    );
                }
                None => {
                    let wrong = of_label
                        .iter()
                        .filter(|st| st.report.engine == *name)
                        .any(|st| {
                            st.report.a_to_b.wrong_pt
                                + st.report.b_to_a.as_ref().map_or(0, |d| d.wrong_pt)
                                > 0
                        });
                    let _ = writeln!(
                        s,
                        "{name}: no passing step{}",
                        if wrong {
                            " (packets arrived in the sender's codec: forwarded, not transcoded)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        if let Some((first, Some(fb))) = best.first() {
            for (other, ob) in best.iter().skip(1) {
                let cpc = |b: &MediaStep| b.report.channels_per_core();
                match ob.and_then(cpc).zip(cpc(fb)) {
                    Some((o, f)) if o > 0.0 => {
                        let _ =
                            writeln!(s, "ratio {first}/{other} channels per core: {:.2}", f / o);
                    }
                    _ => {
                        let _ = writeln!(s, "ratio {first}/{other}: {other} has no figure");
                    }
                }
            }
        }
    }
    s.push_str(&cross_ratio(steps));
    s
}

/// Debian's rtpengine cannot encode AMR, so the nearest anchor for the plane's AMR-NB ⇄
/// PCMA transcoding is rtpengine's G.729 ⇄ PCMA (both 8 kHz CELP codecs): one line per
/// appserver backend with the ratio of channels per core, each taken at the engine's
/// largest step without loss (delay and the odd packet of another payload type not
/// considered: on a shared 2-core machine rtpengine's G.729 does not meet the p99 limit, and
/// it sends a few packets in the other codec as a stream starts).
fn cross_ratio(steps: &[MediaStep]) -> String {
    let best = |engine: &dyn Fn(&str) -> bool, scenario: &str| {
        steps
            .iter()
            .filter(|st| engine(&st.report.engine) && st.scenario.starts_with(scenario))
            .filter(|st| {
                std::iter::once(&st.report.a_to_b)
                    .chain(st.report.b_to_a.as_ref())
                    .all(|d| d.lost == 0 && d.received > 0)
            })
            .max_by_key(|st| st.report.channels)
            .and_then(|st| {
                Some((
                    st.report.engine.clone(),
                    st.report.channels,
                    st.report.channels_per_core()?,
                ))
            })
    };
    let Some((anchor, an, ac)) = best(&|e| e.starts_with("rtpengine"), "G.729") else {
        return String::new();
    };
    let mut s = String::new();
    let mut names: Vec<&str> = Vec::new();
    for st in steps {
        let e = st.report.engine.as_str();
        if e.starts_with("appserver") && !names.contains(&e) {
            names.push(e);
        }
    }
    for name in names {
        if let Some((ours, on, oc)) = best(&|e| e == name, "AMR-NB") {
            let _ = writeln!(
                s,
                "{ours} AMR-NB⇄PCMA ({on} ch, {oc:.0}/core) vs {anchor} G.729⇄PCMA ({an} ch, \
                 {ac:.0}/core), lossless steps: ratio {:.2}",
                oc / ac
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(engine: &str, channels: usize, cpu: f64, passed: bool, wrong: u64) -> MediaStep {
        let d = DirectionStats {
            sent: 100,
            received: if wrong > 0 { 0 } else { 100 },
            lost: if wrong > 0 { 100 } else { 0 },
            wrong_pt: wrong,
            p50: Duration::from_micros(300),
            p99: Duration::from_millis(2),
            max: Duration::from_millis(3),
            ..Default::default()
        };
        MediaStep {
            scenario: "X→Y".into(),
            report: LoadReport {
                engine: engine.into(),
                scenario: "X→Y".into(),
                channels,
                wall: Duration::from_secs(10),
                a_to_b: d.clone(),
                b_to_a: Some(d),
                engine_cpu: Some(cpu),
                generator_cpu: 0.5,
            },
            passed,
        }
    }

    fn opts() -> MediaOptions {
        MediaOptions {
            channels: vec![50, 100],
            seconds: 10,
            warmup: Duration::from_secs(1),
            p99_limit: Duration::from_millis(5),
            duplex: true,
            engines: vec![EngineKind::Rtpengine],
            scenarios: vec![ScenarioKind::G729Pcma],
        }
    }

    #[test]
    fn report_names_the_largest_passing_step_and_the_ratio() {
        // ours: 100 channels for 2 CPU-s over 10 s → 500 per core; theirs: 50 for 5 → 100.
        let steps = [
            step("ours", 50, 1.0, true, 0),
            step("theirs", 50, 5.0, true, 0),
            step("ours", 100, 2.0, true, 0),
            step("theirs", 100, 12.0, false, 0),
        ];
        let r = media_report(&opts(), &steps);
        assert!(
            r.contains("ours: largest passing step 100 channels, 500 channels per core"),
            "{r}"
        );
        assert!(
            r.contains("theirs: largest passing step 50 channels, 100"),
            "{r}"
        );
        assert!(
            r.contains("ratio ours/theirs channels per core: 5.00"),
            "{r}"
        );
        assert!(r.contains("NO"), "{r}");
    }

    #[test]
    fn report_says_when_an_engine_forwarded_instead_of_transcoding() {
        let r = media_report(&opts(), &[step("rtpengine", 50, 0.1, false, 200)]);
        assert!(r.contains("rtpengine: no passing step (packets arrived in the sender's codec"));
    }

    /// A running relay thread, its stop flag and its session.
    type Relay = (
        std::thread::JoinHandle<()>,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        MediaId,
    );

    /// A media plane of threads: each session relays between its two sockets toward the
    /// peers its SDPs named, as the real plane does for equal codecs.
    #[derive(Default)]
    struct ToyPlane {
        next: std::sync::atomic::AtomicU64,
        #[allow(clippy::type_complexity)]
        sessions: std::sync::Mutex<
            HashMap<
                MediaId,
                (
                    std::net::UdpSocket,
                    std::net::UdpSocket,
                    [Option<SocketAddr>; 2],
                ),
            >,
        >,
        running: std::sync::Mutex<Vec<Relay>>,
    }

    impl MediaControl for ToyPlane {
        fn codecs(&self, _leg: Leg) -> Vec<sdp::LocalCodec> {
            Vec::new()
        }

        fn allocate(
            &self,
        ) -> Result<appserver::media_api::Allocated, appserver::media_api::MediaError> {
            let bind = || {
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .map_err(|_| appserver::media_api::MediaError::NoPorts)
            };
            let (ims, sip) = (bind()?, bind()?);
            let id = MediaId(self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let al = appserver::media_api::Allocated {
                id,
                ims: ims.local_addr().unwrap(),
                sip: sip.local_addr().unwrap(),
            };
            self.sessions
                .lock()
                .unwrap()
                .insert(id, (ims, sip, [None, None]));
            Ok(al)
        }

        fn negotiated(
            &self,
            id: MediaId,
            leg: Leg,
            _local: &sdp::Session,
            remote: &sdp::Session,
        ) -> Result<(), appserver::media_api::MediaError> {
            let text = String::from_utf8_lossy(&remote.to_bytes()).into_owned();
            let peer = testkit::rtpengine::sdp_audio_addr(&text).expect("peer address");
            let mut sessions = self.sessions.lock().unwrap();
            let s = sessions
                .get_mut(&id)
                .ok_or(appserver::media_api::MediaError::Unknown(id))?;
            s.2[if leg == Leg::Ims { 0 } else { 1 }] = Some(peer);
            if let [Some(ims_peer), Some(sip_peer)] = s.2 {
                let (a, b) = (s.0.try_clone().unwrap(), s.1.try_clone().unwrap());
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let stop2 = stop.clone();
                a.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
                b.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
                let h = std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                        for (from, to, peer) in [(&a, &b, sip_peer), (&b, &a, ims_peer)] {
                            if let Ok(n) = from.recv(&mut buf) {
                                let _ = to.send_to(&buf[..n], peer);
                            }
                        }
                    }
                });
                self.running.lock().unwrap().push((h, stop, id));
            }
            Ok(())
        }

        fn release(&self, id: MediaId) {
            self.sessions.lock().unwrap().remove(&id);
            let mut running = self.running.lock().unwrap();
            for (_, stop, rid) in running.iter() {
                if *rid == id {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let (done, keep): (Vec<_>, Vec<_>) =
                running.drain(..).partition(|(_, _, rid)| *rid == id);
            *running = keep;
            for (h, _, _) in done {
                let _ = h.join();
            }
        }
    }

    #[test]
    fn a_media_control_plane_carries_the_load() {
        let mut engine =
            MediaControlEngine::new("toy", ToyPlane::default(), Box::new(|| None), true);
        let scenario = ScenarioKind::PcmaRelay.scenario(true).unwrap();
        let r = rtpload::run(
            &mut engine,
            &scenario,
            &LoadOptions::new(4, Duration::from_millis(400)),
        )
        .unwrap();
        for d in [&r.a_to_b, r.b_to_a.as_ref().unwrap()] {
            assert_eq!(
                (d.sent, d.received, d.lost, d.wrong_pt),
                (80, 80, 0, 0),
                "{d:?}"
            );
        }
        assert!(
            engine.plane().sessions.lock().unwrap().is_empty(),
            "released"
        );
        assert!(
            engine.plane().running.lock().unwrap().is_empty(),
            "released"
        );
    }

    #[test]
    fn scenarios_build() {
        for k in [
            ScenarioKind::AmrPcma,
            ScenarioKind::G729Pcma,
            ScenarioKind::PcmaRelay,
        ] {
            let s = k.scenario(true).unwrap();
            assert!(!s.frames_a.is_empty() && !s.frames_b.is_empty());
        }
    }
}
