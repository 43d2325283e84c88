//! A bounded RTP load generator for media engines (relays and transcoders), engine-agnostic
//! through [`Engine`]: the benchmark of issue 12 drives rtpengine ([`crate::rtpengine`])
//! and our media plane with the same streams.
//!
//! Per channel the generator binds a leg-A socket and a leg-B socket on 127.0.0.1 (each
//! with its RTCP neighbour bound too, so whatever an engine sends to port + 1 lands on a
//! socket of ours and not on a stranger's), asks the engine for the channel's two engine
//! addresses, and then for `duration`:
//! - one **sender thread** sends a packet per channel every frame time (20 ms for the
//!   codecs here) from leg A to the engine's leg-A address, and with `duplex` from leg B
//!   to its leg-B address. Channels are spread evenly over the frame time (channel c of N
//!   starts c/N of a frame late), as independent calls would be, rather than all sent in
//!   one burst. Payloads are made once up front and cycled; the header is written into one
//!   reused buffer. The actual send instant of each packet goes to a side table indexed
//!   by channel and frame.
//! - one **receiver thread** waits on all sockets with one `epoll` set and records
//!   (channel, direction, sequence number, payload type, arrival instant) for every packet.
//!
//! Two OS threads rather than tokio tasks: this crate is blocking and runtime-free (see the
//! crate docs), and two threads are all the generator needs whatever N is, so its CPU stays
//! below the engine's; both threads' CPU is measured and reported so that claim can be
//! checked in every run.
//!
//! After the run the arrivals are matched to the side table. An engine that keeps sequence
//! numbers ([`Engine::keeps_sequence`], rtpengine does) maps each packet to its frame
//! exactly. For one that rewrites them (a B2BUA's per-leg rewriting) the frame offset of
//! each channel is inferred from causality: a packet cannot leave before its frame was
//! sent, so the offset is the largest one under which every arrival of the channel comes
//! after its frame's send time. That is exact while the engine adds less than one frame
//! time to some packet of the channel, which any engine fit to pass (p99 < 5 ms) does.
//!
//! Figures per direction: packets sent, received (with the payload type the receiving
//! leg negotiated), lost, duplicates, packets with a wrong payload type (an engine that
//! forwarded instead of transcoding), and the added delay (arrival − send) p50/p99/max.
//! The engine's CPU ([`Engine::cpu_seconds`], utime + stime of its process for an external
//! daemon) over the streaming window gives its CPU share and a channels-per-core estimate.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::rtp::{RtpHeader, RtpPacket};

use crate::LOOPBACK;

/// One codec as the generator sends it and an engine negotiates it in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSpec {
    /// The rtpmap encoding name ("PCMA", "AMR", "G729").
    pub name: &'static str,
    /// The RTP payload type.
    pub payload_type: u8,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// The fmtp parameters, if any.
    pub fmtp: Option<&'static str>,
    /// RTP timestamp units per packet (one 20 ms frame: 160 at 8000 Hz).
    pub samples_per_frame: u32,
}

impl CodecSpec {
    /// G.711 A-law, static payload type 8 (RFC 3551 §4.5.14).
    pub const PCMA: CodecSpec = CodecSpec {
        name: "PCMA",
        payload_type: 8,
        clock_rate: 8000,
        fmtp: None,
        samples_per_frame: 160,
    };
    /// G.711 µ-law, static payload type 0.
    pub const PCMU: CodecSpec = CodecSpec {
        name: "PCMU",
        payload_type: 0,
        clock_rate: 8000,
        fmtp: None,
        samples_per_frame: 160,
    };
    /// G.729 without Annex B, static payload type 18 (two 10 ms frames per packet).
    pub const G729: CodecSpec = CodecSpec {
        name: "G729",
        payload_type: 18,
        clock_rate: 8000,
        fmtp: Some("annexb=no"),
        samples_per_frame: 160,
    };
    /// AMR-NB, octet-aligned payload format (RFC 4867 §4.4), payload type 96.
    pub const AMR_NB_OCTET: CodecSpec = CodecSpec {
        name: "AMR",
        payload_type: 96,
        clock_rate: 8000,
        fmtp: Some("octet-align=1"),
        samples_per_frame: 160,
    };

    /// The packet interval.
    pub fn ptime(&self) -> Duration {
        Duration::from_micros(
            u64::from(self.samples_per_frame) * 1_000_000 / u64::from(self.clock_rate.max(1)),
        )
    }
}

/// What flows through every channel: leg A sends `a` payloads and receives `b`; leg B
/// the reverse (only with `duplex`).
#[derive(Debug, Clone)]
pub struct Scenario {
    /// A short name for reports ("AMR-NB→PCMA").
    pub label: String,
    /// Leg A's codec.
    pub a: CodecSpec,
    /// Leg B's codec.
    pub b: CodecSpec,
    /// Whether leg B sends too.
    pub duplex: bool,
    /// Payloads leg A cycles through (at least one).
    pub frames_a: Vec<Vec<u8>>,
    /// Payloads leg B cycles through (at least one with `duplex`).
    pub frames_b: Vec<Vec<u8>>,
}

impl Scenario {
    /// PCMA on both legs: the engine relays.
    pub fn pcma_relay(duplex: bool) -> Self {
        let tone = pcma_tone_frames();
        Scenario {
            label: "PCMA→PCMA relay".into(),
            a: CodecSpec::PCMA,
            b: CodecSpec::PCMA,
            duplex,
            frames_a: tone.clone(),
            frames_b: tone,
        }
    }

    /// AMR-NB 12.2 (octet-aligned) on leg A, PCMA on leg B.
    pub fn amr_to_pcma(frames_a: Vec<Vec<u8>>, duplex: bool) -> Self {
        Scenario {
            label: format!("AMR-NB{}PCMA", if duplex { "⇄" } else { "→" }),
            a: CodecSpec::AMR_NB_OCTET,
            b: CodecSpec::PCMA,
            duplex,
            frames_a,
            frames_b: pcma_tone_frames(),
        }
    }

    /// G.729 on leg A, PCMA on leg B: a CELP codec at 8 kHz that Debian's rtpengine can
    /// transcode (it cannot transcode AMR), as the nearest stand-in for AMR-NB ⇄ PCMA.
    pub fn g729_to_pcma(duplex: bool) -> Self {
        Scenario {
            label: format!("G.729{}PCMA", if duplex { "⇄" } else { "→" }),
            a: CodecSpec::G729,
            b: CodecSpec::PCMA,
            duplex,
            frames_a: g729_noise_frames(),
            frames_b: pcma_tone_frames(),
        }
    }
}

/// One second (50 frames) of a 1 kHz tone at −20 dBFS in PCMA, 160 octets a frame.
pub fn pcma_tone_frames() -> Vec<Vec<u8>> {
    let Ok(mut tone) = media::tone::ToneGenerator::new(1000.0, -20.0, 8000) else {
        // The constants above are valid; an error here is a bug in media.
        return vec![vec![media::g711::ALAW_SILENCE; 160]];
    };
    let mut pcm = [0i16; 160];
    (0..50)
        .map(|_| {
            tone.fill(&mut pcm);
            pcm.iter().map(|&s| media::g711::alaw_encode(s)).collect()
        })
        .collect()
}

/// 50 packets of AMR-NB in the octet-aligned format, one mode-`mode` frame each, whose
/// speech bits are [`media::pattern`] bits (a decoder turns them into noise: the cost of
/// decoding is that of speech). CMR 15 (no request).
pub fn amr_nb_pattern_frames(mode: u8) -> Result<Vec<Vec<u8>>, media::amr::AmrError> {
    let format = media::amr::AmrFormat::octet_aligned(sdp::AmrKind::Nb);
    let mut out = Vec::with_capacity(50);
    for i in 0..50u32 {
        let mut buf = [0u8; media::pattern::MAX_FRAME_OCTETS];
        let frame =
            media::pattern::pattern_frame(sdp::AmrKind::Nb, mode, 0x4242, i * 160, &mut buf)?;
        let mut pkt = vec![0u8; 64];
        let n = media::amr::pack(format, 15, [frame], &mut pkt)?;
        pkt.truncate(n);
        out.push(pkt);
    }
    Ok(out)
}

/// Why [`amr_nb_tone_frames`] could not make frames.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FramesError {
    /// The tone generator refused its parameters.
    #[error(transparent)]
    Tone(#[from] media::tone::ToneError),
    /// The encoder is missing or failed.
    #[error(transparent)]
    Codec(#[from] media::codec::CodecError),
    /// Packing the payload failed.
    #[error(transparent)]
    Amr(#[from] media::amr::AmrError),
}

/// 50 packets (one second) of a 1 kHz tone at −20 dBFS encoded at AMR-NB mode `mode` by
/// `backend`'s encoder, octet-aligned, CMR 15: real speech frames, for when the engine's
/// output is listened to or its decoder's cost on speech matters.
pub fn amr_nb_tone_frames(
    backend: media::codec::Backend,
    mode: u8,
) -> Result<Vec<Vec<u8>>, FramesError> {
    let mut enc = media::codec::encoder(sdp::AmrKind::Nb, backend, false)?;
    let format = media::amr::AmrFormat::octet_aligned(sdp::AmrKind::Nb);
    let mut tone = media::tone::ToneGenerator::new(1000.0, -20.0, 8000)?;
    let mut pcm = vec![0i16; media::codec::frame_samples(sdp::AmrKind::Nb)];
    let mut bits = [0u8; media::codec::MAX_FRAME_OCTETS];
    let mut out = Vec::with_capacity(50);
    for _ in 0..50 {
        tone.fill(&mut pcm);
        let e = enc.encode(&pcm, mode, &mut bits)?;
        let frame = media::amr::AmrFrame::from_octets(
            sdp::AmrKind::Nb,
            e.frame_type,
            true,
            &bits[..e.len],
        )?;
        let mut pkt = vec![0u8; 64];
        let n = media::amr::pack(format, 15, [frame], &mut pkt)?;
        pkt.truncate(n);
        out.push(pkt);
    }
    Ok(out)
}

/// 50 packets of G.729 (two 10-octet frames each) of pseudo-random bits: decoders take any
/// bits, so this costs what speech costs.
pub fn g729_noise_frames() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..50)
        .map(|_| {
            (0..20)
                .map(|_| {
                    // xorshift64: enough for filler bits.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect()
        })
        .collect()
}

/// The engine's two addresses for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelAddrs {
    /// Where leg A sends (and, with duplex, where leg A's packets come from).
    pub a: SocketAddr,
    /// Where leg B sends (and where leg B's packets come from).
    pub b: SocketAddr,
}

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A socket or thread operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The engine refused or failed to set up or release a channel.
    #[error("{engine}: {detail}")]
    Engine {
        /// The engine's name.
        engine: String,
        /// What went wrong.
        detail: String,
    },
    /// The options or the scenario cannot be run.
    #[error("bad load options: {0}")]
    Options(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadError {
    let what = what.into();
    move |source| LoadError::Io { what, source }
}

/// A media engine under test: something that, per channel, receives RTP on one address
/// per leg and forwards (relayed or transcoded) to the other leg's peer.
pub trait Engine {
    /// The name in reports.
    fn name(&self) -> String;

    /// Sets up channel `channel` of `scenario`: leg A's peer (the generator) receives at
    /// `a_peer` with codec `scenario.a`, leg B's at `b_peer` with `scenario.b`. Returns
    /// the engine's address on each leg.
    fn allocate(
        &mut self,
        channel: usize,
        scenario: &Scenario,
        a_peer: SocketAddr,
        b_peer: SocketAddr,
    ) -> Result<ChannelAddrs, LoadError>;

    /// Tears channel `channel` down.
    fn release(&mut self, channel: usize) -> Result<(), LoadError>;

    /// CPU seconds (user + system) the engine has used so far, if it can be told apart
    /// from the generator's (an external process; an in-process engine on its own
    /// threads).
    fn cpu_seconds(&self) -> Option<f64>;

    /// Whether the engine passes RTP sequence numbers through unchanged (then every
    /// packet maps to its frame exactly, with no inference).
    fn keeps_sequence(&self) -> bool {
        false
    }
}

/// How long and how wide a run is.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Concurrent channels.
    pub channels: usize,
    /// How long the senders send.
    pub duration: Duration,
    /// How long the receiver keeps listening after the last send.
    pub drain: Duration,
    /// Frames sent in this first part of the run count for loss but not for the delay
    /// figures: an engine's first packets of a stream pay for its set-up (rtpengine holds
    /// the first packet of a transcoded stream about one frame time), which is not the
    /// steady state a capacity figure is about.
    pub warmup: Duration,
}

impl LoadOptions {
    /// `channels` for `duration`, 300 ms drain.
    pub fn new(channels: usize, duration: Duration) -> Self {
        LoadOptions {
            channels,
            duration,
            drain: Duration::from_millis(300),
            warmup: Duration::ZERO,
        }
    }
}

/// The figures of one direction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectionStats {
    /// Packets sent.
    pub sent: u64,
    /// Sends the kernel refused.
    pub send_errors: u64,
    /// Distinct frames received with the expected payload type.
    pub received: u64,
    /// Frames sent and never received.
    pub lost: u64,
    /// Copies of frames already received.
    pub duplicates: u64,
    /// Packets with another payload type (forwarded rather than transcoded, say).
    pub wrong_pt: u64,
    /// Packets that matched no frame sent (or were not RTP).
    pub unmatched: u64,
    /// Median added delay.
    pub p50: Duration,
    /// 99th percentile added delay.
    pub p99: Duration,
    /// Largest added delay.
    pub max: Duration,
    /// Channels whose median added delay is half a frame time or more: an engine that
    /// holds some streams a whole frame shows here, where p99 alone cannot tell a few
    /// late channels from late packets everywhere.
    pub slow_channels: u64,
}

impl DirectionStats {
    /// Lost share of sent frames, in percent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.lost as f64 * 100.0 / self.sent as f64
    }
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The engine's name.
    pub engine: String,
    /// The scenario's label.
    pub scenario: String,
    /// Concurrent channels.
    pub channels: usize,
    /// The streaming window (first send to end of drain).
    pub wall: Duration,
    /// Leg A → leg B.
    pub a_to_b: DirectionStats,
    /// Leg B → leg A (duplex only).
    pub b_to_a: Option<DirectionStats>,
    /// Engine CPU seconds over the window, if known.
    pub engine_cpu: Option<f64>,
    /// CPU seconds of the generator's two threads.
    pub generator_cpu: f64,
}

impl LoadReport {
    /// Engine CPU as a percentage of one core over the window.
    pub fn engine_cpu_percent(&self) -> Option<f64> {
        self.engine_cpu
            .map(|c| c * 100.0 / self.wall.as_secs_f64().max(1e-9))
    }

    /// Channels one fully busy core would carry at this cost per channel.
    pub fn channels_per_core(&self) -> Option<f64> {
        let cpu = self.engine_cpu?;
        (cpu > 0.0).then(|| self.channels as f64 * self.wall.as_secs_f64() / cpu)
    }

    /// Every direction: no loss, no wrong payload type, and p99 below `p99_limit`.
    pub fn passes(&self, p99_limit: Duration) -> bool {
        [Some(&self.a_to_b), self.b_to_a.as_ref()]
            .into_iter()
            .flatten()
            .all(|d| d.lost == 0 && d.wrong_pt == 0 && d.received > 0 && d.p99 < p99_limit)
    }
}

/// utime + stime of process `pid` in seconds (`/proc/<pid>/stat`, fields 14 and 15 in
/// clock ticks); `None` when the process is gone or the line is unreadable.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = proc_stat_ticks(&stat)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some(ticks as f64 / hz)
}

/// utime + stime (clock ticks) from one `/proc/<pid>/stat` line. The command name may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn proc_stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(") ")?;
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime in seconds of this process's threads whose name (`comm`, at most 15
/// bytes) starts with `name_prefix`: the CPU of an engine running in this process on its
/// own named threads (a tokio runtime's `thread_name`), apart from the generator's threads
/// (`rtpload-tx`, `rtpload-rx`).
pub fn threads_cpu_seconds(name_prefix: &str) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|stat| {
            stat.split_once(" (")
                .is_some_and(|(_, rest)| rest.starts_with(name_prefix))
        })
        .filter_map(|stat| proc_stat_ticks(&stat))
        .map(|t| t as f64 / hz)
        .sum()
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// An RTP socket on an even loopback port with its RTCP neighbour (RFC 3550 §11) held too.
struct RtpPair {
    rtp: UdpSocket,
    _rtcp: UdpSocket,
}

fn bind_pair() -> Result<RtpPair, LoadError> {
    // Bounded: an ephemeral port is even half the time and its neighbour is usually free.
    for _ in 0..2000 {
        let rtp = UdpSocket::bind((LOOPBACK, 0)).map_err(io_err("bind RTP socket"))?;
        let port = rtp
            .local_addr()
            .map_err(io_err("RTP socket address"))?
            .port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((LOOPBACK, port + 1)) {
            return Ok(RtpPair { rtp, _rtcp: rtcp });
        }
    }
    Err(LoadError::Options(
        "no even/odd loopback port pair free after 2000 tries".into(),
    ))
}

/// First sequence number, timestamp and SSRC of channel `c`'s stream in direction `dir`
/// (0 = A→B, 1 = B→A): spread so that streams differ.
fn stream_origin(c: usize, dir: usize) -> (u16, u32, u32) {
    let k = (c * 2 + dir) as u32;
    (
        (k.wrapping_mul(7919) & 0xFFFF) as u16,
        k.wrapping_mul(1_000_003),
        0x5242_0000 ^ k,
    )
}

/// One arrival.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    /// channel × 2 + direction.
    stream: u32,
    seq: u16,
    pt: u8,
    at: Instant,
}

/// Runs `scenario` on `engine` with `opts.channels` channels for `opts.duration`; sets up
/// every channel first (not timed), releases them all after.
pub fn run(
    engine: &mut dyn Engine,
    scenario: &Scenario,
    opts: &LoadOptions,
) -> Result<LoadReport, LoadError> {
    let n = opts.channels;
    if n == 0 || opts.duration.is_zero() {
        return Err(LoadError::Options(
            "channels and duration must be > 0".into(),
        ));
    }
    if scenario.frames_a.is_empty() || (scenario.duplex && scenario.frames_b.is_empty()) {
        return Err(LoadError::Options("a sending leg has no payloads".into()));
    }
    let ptime = scenario.a.ptime();
    if ptime.is_zero() || (scenario.duplex && scenario.b.ptime() != ptime) {
        return Err(LoadError::Options(
            "both legs need the same non-zero packet time".into(),
        ));
    }
    let frames = (opts.duration.as_micros() / ptime.as_micros()).max(1) as usize;

    let mut a_socks = Vec::with_capacity(n);
    let mut b_socks = Vec::with_capacity(n);
    for _ in 0..n {
        a_socks.push(bind_pair()?);
        b_socks.push(bind_pair()?);
    }
    let mut addrs = Vec::with_capacity(n);
    let mut allocated = 0;
    let setup = (|| {
        for c in 0..n {
            let a_peer = a_socks[c]
                .rtp
                .local_addr()
                .map_err(io_err("local address"))?;
            let b_peer = b_socks[c]
                .rtp
                .local_addr()
                .map_err(io_err("local address"))?;
            addrs.push(engine.allocate(c, scenario, a_peer, b_peer)?);
            allocated += 1;
        }
        Ok::<(), LoadError>(())
    })();
    let result =
        setup.and_then(|()| stream(engine, scenario, opts, frames, &a_socks, &b_socks, &addrs));
    let mut release_err = None;
    for c in 0..allocated {
        if let Err(e) = engine.release(c) {
            release_err.get_or_insert(e);
        }
    }
    let report = result?;
    match release_err {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

#[allow(clippy::too_many_arguments)]
fn stream(
    engine: &mut dyn Engine,
    scenario: &Scenario,
    opts: &LoadOptions,
    frames: usize,
    a_socks: &[RtpPair],
    b_socks: &[RtpPair],
    addrs: &[ChannelAddrs],
) -> Result<LoadReport, LoadError> {
    let n = opts.channels;
    let ptime = scenario.a.ptime();
    // The receiver's view: socket index 2c is leg A of channel c (B→A arrivals), 2c + 1
    // leg B (A→B arrivals).
    let mut recv_socks = Vec::with_capacity(2 * n);
    let mut send_a = Vec::with_capacity(n);
    let mut send_b = Vec::with_capacity(n);
    for c in 0..n {
        let a = a_socks[c].rtp.try_clone().map_err(io_err("clone socket"))?;
        let b = b_socks[c].rtp.try_clone().map_err(io_err("clone socket"))?;
        a.set_nonblocking(true).map_err(io_err("non-blocking"))?;
        recv_socks.push(a);
        recv_socks.push(b);
        send_a.push(a_socks[c].rtp.try_clone().map_err(io_err("clone socket"))?);
        send_b.push(b_socks[c].rtp.try_clone().map_err(io_err("clone socket"))?);
    }

    let epoll = Epoll::new(&recv_socks)?;
    let cpu0 = engine.cpu_seconds();
    // Setup of the threads is outside the window: start a little in the future.
    let start = Instant::now() + Duration::from_millis(50);
    let recv_until = start + opts.duration + opts.drain;
    let capacity = frames * n * if scenario.duplex { 2 } else { 1 } + 1024;
    let receiver = std::thread::Builder::new()
        .name("rtpload-rx".into())
        .spawn(move || receive(epoll, recv_socks, recv_until, capacity))
        .map_err(io_err("spawn receiver"))?;

    let sender_scenario = Arc::new(scenario.clone());
    let targets: Vec<ChannelAddrs> = addrs.to_vec();
    let sender = std::thread::Builder::new()
        .name("rtpload-tx".into())
        .spawn(move || {
            send(
                &sender_scenario,
                &send_a,
                &send_b,
                &targets,
                start,
                ptime,
                frames,
            )
        })
        .map_err(io_err("spawn sender"))?;

    let sent = sender
        .join()
        .map_err(|_| LoadError::Options("sender thread panicked".into()))?;
    let received = receiver
        .join()
        .map_err(|_| LoadError::Options("receiver thread panicked".into()))?;
    let cpu1 = engine.cpu_seconds();
    let wall = recv_until.saturating_duration_since(start);

    let (arrivals, garbage, rx_cpu) = received?;
    let keeps = engine.keeps_sequence();
    let skip = (opts.warmup.as_micros() / ptime.as_micros()) as usize;
    let a_to_b = direction(
        &sent,
        &arrivals,
        0,
        n,
        scenario.b.payload_type,
        keeps,
        skip,
        ptime,
        garbage,
    );
    let b_to_a = scenario.duplex.then(|| {
        direction(
            &sent,
            &arrivals,
            1,
            n,
            scenario.a.payload_type,
            keeps,
            skip,
            ptime,
            0,
        )
    });
    Ok(LoadReport {
        engine: engine.name(),
        scenario: scenario.label.clone(),
        channels: n,
        wall,
        a_to_b,
        b_to_a,
        engine_cpu: cpu0.zip(cpu1).map(|(a, b)| (b - a).max(0.0)),
        generator_cpu: sent.cpu + rx_cpu,
    })
}

/// What the sender did: per stream (channel × 2 + direction) the send instant of each
/// frame (`None`: not sent), and its own CPU.
struct Sent {
    times: Vec<Vec<Option<Instant>>>,
    errors: Vec<u64>,
    cpu: f64,
}

fn send(
    scenario: &Scenario,
    send_a: &[UdpSocket],
    send_b: &[UdpSocket],
    targets: &[ChannelAddrs],
    start: Instant,
    ptime: Duration,
    frames: usize,
) -> Sent {
    let n = targets.len();
    let mut times = vec![vec![None; frames]; 2 * n];
    let mut errors = vec![0u64; 2 * n];
    let mut buf = [0u8; 1500];
    let dirs: &[usize] = if scenario.duplex { &[0, 1] } else { &[0] };
    let slot = ptime / n as u32;
    for f in 0..frames {
        for c in 0..n {
            let due = start + ptime * f as u32 + slot * c as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            for &dir in dirs {
                let (codec, payloads, sock, to) = if dir == 0 {
                    (&scenario.a, &scenario.frames_a, &send_a[c], targets[c].a)
                } else {
                    (&scenario.b, &scenario.frames_b, &send_b[c], targets[c].b)
                };
                let (seq0, ts0, ssrc) = stream_origin(c, dir);
                let header = RtpHeader::new(
                    codec.payload_type,
                    seq0.wrapping_add(f as u16),
                    ts0.wrapping_add(codec.samples_per_frame.wrapping_mul(f as u32)),
                    ssrc,
                );
                let payload = &payloads[(f + c) % payloads.len()];
                let Ok(len) = header.write_packet(payload, &mut buf) else {
                    errors[2 * c + dir] += 1;
                    continue;
                };
                let at = Instant::now();
                match sock.send_to(&buf[..len], to) {
                    Ok(_) => times[2 * c + dir][f] = Some(at),
                    Err(_) => errors[2 * c + dir] += 1,
                }
            }
        }
    }
    Sent {
        times,
        errors,
        cpu: thread_cpu_seconds(),
    }
}

type Received = Result<(Vec<Arrival>, u64, f64), LoadError>;

fn receive(epoll: Epoll, socks: Vec<UdpSocket>, until: Instant, capacity: usize) -> Received {
    let mut arrivals = Vec::with_capacity(capacity);
    let mut garbage = 0u64;
    let mut buf = [0u8; 2048];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        let wait_ms = (until - now).as_millis().clamp(1, 20) as i32;
        let ready = epoll.wait(&mut events, wait_ms)?;
        for ev in &events[..ready] {
            let idx = ev.u64 as usize;
            let Some(sock) = socks.get(idx) else { continue };
            // Drain: level-triggered epoll would report the socket again anyway, but
            // reading all that is queued saves wake-ups under load.
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((len, _)) => {
                        let at = Instant::now();
                        match RtpPacket::parse(&buf[..len]) {
                            Ok(p) => arrivals.push(Arrival {
                                // Socket 2c is leg A: it receives the B→A direction.
                                stream: ((idx / 2) * 2 + if idx % 2 == 0 { 1 } else { 0 }) as u32,
                                seq: p.sequence(),
                                pt: p.payload_type(),
                                at,
                            }),
                            Err(_) => garbage += 1,
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // ICMP port unreachable reported on the socket (ECONNREFUSED) and the
                    // like: not a datagram, nothing to count.
                    Err(_) => break,
                }
            }
        }
    }
    Ok((arrivals, garbage, thread_cpu_seconds()))
}

/// Matches the arrivals of direction `dir` to the frames sent and computes the figures;
/// frames before `warmup_frames` are left out of the delays.
#[allow(clippy::too_many_arguments)]
fn direction(
    sent: &Sent,
    arrivals: &[Arrival],
    dir: usize,
    n: usize,
    expected_pt: u8,
    keeps_sequence: bool,
    warmup_frames: usize,
    frame_time: Duration,
    garbage: u64,
) -> DirectionStats {
    let mut st = DirectionStats {
        unmatched: garbage,
        ..Default::default()
    };
    let mut delays = Vec::new();
    let mut per_stream: Vec<Vec<&Arrival>> = vec![Vec::new(); n];
    for a in arrivals {
        if a.stream as usize % 2 == dir {
            if let Some(v) = per_stream.get_mut(a.stream as usize / 2) {
                v.push(a);
            }
        }
    }
    let mut channel_delays = Vec::new();
    for (c, arr) in per_stream.iter().enumerate() {
        channel_delays.clear();
        let s = 2 * c + dir;
        let times = &sent.times[s];
        st.sent += times.iter().filter(|t| t.is_some()).count() as u64;
        st.send_errors += sent.errors[s];
        let good: Vec<&&Arrival> = arr
            .iter()
            .filter(|a| {
                if a.pt & 0x7F != expected_pt {
                    st.wrong_pt += 1;
                    false
                } else {
                    true
                }
            })
            .collect();
        let frames_of = frame_indices(&good, times, stream_origin(c, dir).0, keeps_sequence);
        let mut seen = vec![false; times.len()];
        for (a, f) in good.iter().zip(frames_of) {
            let Some(f) = f.filter(|&f| f < times.len()) else {
                st.unmatched += 1;
                continue;
            };
            let Some(sent_at) = times[f] else {
                st.unmatched += 1;
                continue;
            };
            if seen[f] {
                st.duplicates += 1;
                continue;
            }
            seen[f] = true;
            st.received += 1;
            if f >= warmup_frames {
                let d = a.at.saturating_duration_since(sent_at);
                delays.push(d);
                channel_delays.push(d);
            }
        }
        channel_delays.sort_unstable();
        if percentile(&channel_delays, 0.5) >= frame_time / 2 {
            st.slow_channels += 1;
        }
        st.lost += times
            .iter()
            .zip(&seen)
            .filter(|(t, s)| t.is_some() && !**s)
            .count() as u64;
    }
    delays.sort_unstable();
    st.p50 = percentile(&delays, 0.50);
    st.p99 = percentile(&delays, 0.99);
    st.max = delays.last().copied().unwrap_or_default();
    st
}

/// The frame index of each arrival of one stream (in arrival order).
fn frame_indices(
    arrivals: &[&&Arrival],
    times: &[Option<Instant>],
    seq0: u16,
    keeps_sequence: bool,
) -> Vec<Option<usize>> {
    if keeps_sequence {
        return arrivals
            .iter()
            .map(|a| Some(a.seq.wrapping_sub(seq0) as usize))
            .collect();
    }
    // Unwrap the sequence numbers relative to the first arrival (RFC 3550 A.1's idea:
    // the shortest distance mod 2^16 from the previous one).
    let mut k = Vec::with_capacity(arrivals.len());
    let mut prev: Option<(u16, i64)> = None;
    for a in arrivals {
        let v = match prev {
            None => 0,
            Some((ps, pv)) => pv + i64::from(a.seq.wrapping_sub(ps) as i16),
        };
        prev = Some((a.seq, v));
        k.push(v);
    }
    // Causality: the frame of arrival i is f0 + k[i] and was sent before it arrived, so
    // f0 + k[i] ≤ last frame sent by then; the largest f0 meeting all of them. Only
    // arrivals while the stream was still being sent count: a transcoder's jitter buffer
    // goes on concealing for a while after its input stops, and those extra packets have
    // no frame (counting them would shift every frame by the length of that tail).
    let last_sent_by =
        |at: Instant| -> i64 { times.partition_point(|t| t.is_none_or(|t| t <= at)) as i64 - 1 };
    let sending_until = times.iter().rev().find_map(|t| *t);
    let during = |a: &&&Arrival| sending_until.is_none_or(|end| a.at <= end);
    let bound = |(a, &ki): (&&&Arrival, &i64)| last_sent_by(a.at) - ki;
    let f0 = arrivals
        .iter()
        .zip(&k)
        .filter(|(a, _)| during(a))
        .map(bound)
        .min()
        .or_else(|| arrivals.iter().zip(&k).map(bound).min());
    let Some(f0) = f0 else { return Vec::new() };
    k.iter().map(|&ki| usize::try_from(f0 + ki).ok()).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// An epoll set over the receive sockets (event data = socket index).
struct Epoll {
    fd: i32,
}

impl Epoll {
    fn new(socks: &[UdpSocket]) -> Result<Self, LoadError> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io_err("epoll_create1")(std::io::Error::last_os_error()));
        }
        let ep = Epoll { fd };
        for (i, s) in socks.iter().enumerate() {
            s.set_nonblocking(true).map_err(io_err("non-blocking"))?;
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both fds are open; ev is a valid epoll_event.
            let rc = unsafe { libc::epoll_ctl(fd, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
            if rc != 0 {
                return Err(io_err("epoll_ctl")(std::io::Error::last_os_error()));
            }
        }
        Ok(ep)
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> Result<usize, LoadError> {
        // SAFETY: events is a valid writable buffer of the length passed.
        let rc = unsafe {
            libc::epoll_wait(
                self.fd,
                events.as_mut_ptr(),
                events.len().min(i32::MAX as usize) as i32,
                timeout_ms,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(io_err("epoll_wait")(e));
        }
        Ok(rc as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: fd is our epoll descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A loopback relay in a thread: what arrives on a channel's leg-A engine socket goes
    /// to leg B's peer and vice versa, with the sequence number shifted by `seq_shift`
    /// (a rewriting B2BUA) and packets whose `drop_every`-th frame index is dropped.
    struct ToyRelay {
        seq_shift: u16,
        drop_every: Option<u16>,
        /// Held this long before forwarding, on channel 0 only.
        hold_channel0: Duration,
        channels: HashMap<
            usize,
            (
                std::thread::JoinHandle<()>,
                Arc<std::sync::atomic::AtomicBool>,
            ),
        >,
    }

    impl ToyRelay {
        fn new(seq_shift: u16, drop_every: Option<u16>) -> Self {
            ToyRelay {
                seq_shift,
                drop_every,
                hold_channel0: Duration::ZERO,
                channels: HashMap::new(),
            }
        }
    }

    impl Engine for ToyRelay {
        fn name(&self) -> String {
            "toy".into()
        }

        fn allocate(
            &mut self,
            channel: usize,
            _scenario: &Scenario,
            a_peer: SocketAddr,
            b_peer: SocketAddr,
        ) -> Result<ChannelAddrs, LoadError> {
            let a = UdpSocket::bind((LOOPBACK, 0)).map_err(io_err("bind"))?;
            let b = UdpSocket::bind((LOOPBACK, 0)).map_err(io_err("bind"))?;
            let addrs = ChannelAddrs {
                a: a.local_addr().map_err(io_err("addr"))?,
                b: b.local_addr().map_err(io_err("addr"))?,
            };
            a.set_read_timeout(Some(Duration::from_millis(5)))
                .map_err(io_err("t"))?;
            b.set_read_timeout(Some(Duration::from_millis(5)))
                .map_err(io_err("t"))?;
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (shift, drop_every, stop2) = (self.seq_shift, self.drop_every, stop.clone());
            let (seq0, _, _) = stream_origin(channel, 0);
            let hold = if channel == 0 {
                self.hold_channel0
            } else {
                Duration::ZERO
            };
            let h = std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    for (from, to, peer) in [(&a, &b, b_peer), (&b, &a, a_peer)] {
                        if let Ok(n) = from.recv(&mut buf) {
                            let seq = u16::from_be_bytes([buf[2], buf[3]]);
                            if let Some(k) = drop_every {
                                if seq.wrapping_sub(seq0) % k == k - 1 {
                                    continue;
                                }
                            }
                            buf[2..4].copy_from_slice(&seq.wrapping_add(shift).to_be_bytes());
                            if !hold.is_zero() {
                                std::thread::sleep(hold);
                            }
                            let _ = to.send_to(&buf[..n], peer);
                        }
                    }
                }
            });
            self.channels.insert(channel, (h, stop));
            Ok(addrs)
        }

        fn release(&mut self, channel: usize) -> Result<(), LoadError> {
            if let Some((h, stop)) = self.channels.remove(&channel) {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = h.join();
            }
            Ok(())
        }

        fn cpu_seconds(&self) -> Option<f64> {
            None
        }

        fn keeps_sequence(&self) -> bool {
            self.seq_shift == 0
        }
    }

    #[test]
    fn counts_every_packet_through_a_relay_that_rewrites_sequence_numbers() {
        let mut engine = ToyRelay::new(12345, None);
        let scenario = Scenario::pcma_relay(true);
        let r = run(
            &mut engine,
            &scenario,
            &LoadOptions::new(3, Duration::from_millis(400)),
        )
        .unwrap();
        for d in [&r.a_to_b, r.b_to_a.as_ref().unwrap()] {
            assert_eq!(d.sent, 3 * 20, "{d:?}");
            assert_eq!(d.received, d.sent, "{d:?}");
            assert_eq!(
                (d.lost, d.duplicates, d.wrong_pt, d.unmatched),
                (0, 0, 0, 0)
            );
            // A thread relay on loopback adds well under a frame time.
            assert!(d.p50 < Duration::from_millis(15), "{d:?}");
            assert!(d.p50 <= d.p99 && d.p99 <= d.max);
        }
        assert!(r.generator_cpu > 0.0);
        assert_eq!(r.engine_cpu, None);
    }

    #[test]
    fn counts_loss_and_wrong_payload_types() {
        // Every 4th frame dropped, sequence kept.
        let mut engine = ToyRelay::new(0, Some(4));
        let mut scenario = Scenario::pcma_relay(false);
        // Leg B expects PCMU but the relay forwards PCMA: all packets have a wrong type.
        let r = run(
            &mut engine,
            &scenario,
            &LoadOptions::new(2, Duration::from_millis(400)),
        )
        .unwrap();
        assert_eq!(r.a_to_b.sent, 40);
        assert_eq!(r.a_to_b.lost, 10, "{:?}", r.a_to_b);
        assert_eq!(r.a_to_b.received, 30);
        assert!(r.b_to_a.is_none());
        scenario.b = CodecSpec::PCMU;
        let r = run(
            &mut engine,
            &scenario,
            &LoadOptions::new(2, Duration::from_millis(200)),
        )
        .unwrap();
        assert_eq!(r.a_to_b.received, 0);
        assert_eq!(r.a_to_b.wrong_pt, 2 * 10 - 2 * 2, "{:?}", r.a_to_b);
        assert!(!r.passes(Duration::from_millis(5)));
    }

    #[test]
    fn tells_a_channel_held_for_most_of_a_frame() {
        let mut engine = ToyRelay::new(0, None);
        engine.hold_channel0 = Duration::from_millis(14);
        let r = run(
            &mut engine,
            &Scenario::pcma_relay(false),
            &LoadOptions::new(3, Duration::from_millis(400)),
        )
        .unwrap();
        assert_eq!(r.a_to_b.received, 60, "{:?}", r.a_to_b);
        assert_eq!(r.a_to_b.slow_channels, 1, "{:?}", r.a_to_b);
        assert!(r.a_to_b.max >= Duration::from_millis(14), "{:?}", r.a_to_b);
    }

    #[test]
    fn causal_inference_finds_the_frame_offset() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let times: Vec<Option<Instant>> = (0..10).map(|f| Some(t0 + ms(20 * f))).collect();
        // Frames 2, 3, 5 arrive 1 ms after sending, with sequence numbers 900, 901, 903.
        let arr: Vec<Arrival> = [(900u16, 2u64), (901, 3), (903, 5)]
            .iter()
            .map(|&(seq, f)| Arrival {
                stream: 0,
                seq,
                pt: 8,
                at: t0 + ms(20 * f + 1),
            })
            .collect();
        let refs: Vec<&Arrival> = arr.iter().collect();
        let rr: Vec<&&Arrival> = refs.iter().collect();
        assert_eq!(
            frame_indices(&rr, &times, 0, false),
            vec![Some(2), Some(3), Some(5)]
        );
    }

    #[test]
    fn proc_stat_fields_after_the_command_name() {
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0";
        assert_eq!(proc_stat_ticks(line), Some(175));
        assert_eq!(proc_stat_ticks("garbage"), None);
        assert!(process_cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn cpu_of_named_threads() {
        let h = std::thread::Builder::new()
            .name("cpuprobe-1".into())
            .spawn(|| {
                let t = Instant::now();
                let mut x = 0u64;
                while t.elapsed() < Duration::from_millis(300) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                // Still alive while measured: report from inside.
                threads_cpu_seconds("cpuprobe-")
            })
            .unwrap();
        let inside = h.join().unwrap();
        // At least one clock tick of 300 ms spinning, however loaded the machine.
        assert!(inside > 0.0, "{inside}");
        assert_eq!(threads_cpu_seconds("no-such-thread"), 0.0);
    }

    #[test]
    fn payloads_have_codec_sizes() {
        assert!(pcma_tone_frames().iter().all(|f| f.len() == 160));
        assert!(g729_noise_frames().iter().all(|f| f.len() == 20));
        // 12.2 kbit/s: CMR octet, ToC octet, 31 speech octets.
        assert!(amr_nb_pattern_frames(7)
            .unwrap()
            .iter()
            .all(|f| f.len() == 33));
        assert!(amr_nb_pattern_frames(9).is_err());
        // A backend without an encoder says so (the Rust one did before amrenc); one with an
        // encoder (opencore, with the feature) gives 33-octet packets.
        for &b in media::codec::Backend::available() {
            match amr_nb_tone_frames(b, 7) {
                Ok(frames) => assert!(frames.iter().all(|f| f.len() == 33), "{b:?}"),
                Err(e) => assert!(
                    b != media::codec::Backend::Opencore && matches!(e, FramesError::Codec(_)),
                    "{b:?}: {e}"
                ),
            }
        }
    }
}
