//! One call's channel: the state machine of [`super`] (module documentation there).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::amr::{self, frame_octets, valid_cmr, AmrFormat, AmrFrame, AmrPayload, CMR_NONE};
use crate::codec::{self, Backend, CodecError, Decoder, Encoder, MAX_FRAME_OCTETS};
use crate::g711;
use crate::rewrite::LegRewriter;
use crate::rtcp::{Compound, ReportBlock, RtcpPacket, RtcpWriter};
use crate::rtp::{RtpHeader, RtpPacket};
use crate::stats::{ReceiverStats, SenderStats};
use crate::telephone_event::TelephoneEvent;

use super::jitter::{JitterBuffer, Played, FRAME};
use super::leg::{LegCodec, LegError, LegSpec};

/// The largest datagram a channel takes or writes: a caller's buffer for
/// [`Channel::poll_transmit`] of this length takes any.
pub const MAX_DATAGRAM: usize = 1500;
/// Datagrams queued between two drains by the shell.
const QUEUE: usize = 16;
/// AMR frames in one packet we send (120 ms, the largest ptime accepted).
const MAX_FRAMES: usize = 6;
/// G.711 octets pending toward a leg: 120 ms plus one frame of carry.
const G711_PENDING: usize = 960 + 160;
/// A gap in our output longer than this restarts the stream's timestamps from the clock.
const OUTPUT_GAP: Duration = Duration::from_millis(60);

/// Which leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Leg A: toward the IMS core.
    A,
    /// Leg B: toward the SIP peer.
    B,
}

impl Side {
    /// The other leg.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn idx(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    fn of(i: usize) -> Side {
        if i == 0 {
            Side::A
        } else {
            Side::B
        }
    }
}

/// How media crosses the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A leg is not negotiated yet (or its codec failed): nothing crosses.
    Idle,
    /// Same codec on both legs: payloads cross untouched (or repacked, AMR).
    Relay,
    /// Different codecs: decoded, resampled if needed, encoded.
    Transcode,
}

/// Settings and the per-call random values (RFC 3550 §5.1 wants random SSRCs, initial
/// sequence numbers and timestamps; the caller draws them so the core stays deterministic).
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Codec implementation for transcoding.
    pub backend: Backend,
    /// A leg with no RTP nor RTCP for this long is reported ([`ChannelEvent::Timeout`]).
    pub media_timeout: Duration,
    /// Interval of our RTCP reports on each leg (RFC 3550 §6.2 minimum: 5 s).
    pub rtcp_interval: Duration,
    /// Our SSRC on leg A and leg B.
    pub ssrc: [u32; 2],
    /// First sequence number on each leg.
    pub first_seq: [u16; 2],
    /// First timestamp on each leg.
    pub first_ts: [u32; 2],
    /// The CNAME of our RTCP (RFC 3550 §6.5.1).
    pub cname: String,
    /// Wall-clock time at the `now` given to [`Channel::new`], for the NTP time of SRs.
    pub wall_clock: SystemTime,
}

impl ChannelConfig {
    /// Defaults (Rust backend, 30 s timeout, 5 s RTCP) with the random values derived from
    /// `seed`: a shell passes a random number, a test a fixed one.
    pub fn new(seed: u64, wall_clock: SystemTime) -> Self {
        let mut s = seed;
        let mut next = || {
            // splitmix64: spreads any seed, 0 included, over all bits.
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (a, b, c) = (next(), next(), next());
        ChannelConfig {
            backend: Backend::default(),
            media_timeout: Duration::from_secs(30),
            rtcp_interval: Duration::from_secs(5),
            ssrc: [a as u32, (a >> 32) as u32],
            first_seq: [b as u16, (b >> 16) as u16],
            first_ts: [c as u32, (c >> 32) as u32],
            cname: format!("bridge-{:08x}@imslab", (b >> 32) as u32),
            wall_clock,
        }
    }
}

/// What a channel reports on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEvent {
    /// No RTP nor RTCP arrived on this leg for the media timeout.
    Timeout(Side),
}

/// A datagram [`Channel::poll_transmit`] wrote into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The leg to send on (its RTP socket, or the RTCP one when `rtcp`).
    pub side: Side,
    /// RTCP (from the leg's RTCP port) rather than RTP.
    pub rtcp: bool,
    /// Destination.
    pub to: SocketAddr,
    /// Bytes written at the start of the buffer.
    pub len: usize,
}

/// Counters of a channel since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// RTP packets relayed (payload untouched or repacked).
    pub relayed: u64,
    /// RTP packets sent from the transcoder.
    pub transcoded: u64,
    /// telephone-event packets forwarded.
    pub dtmf: u64,
    /// Datagrams dropped: malformed, unknown payload type, leg not ready, queue full.
    pub dropped: u64,
    /// Frames that reached a jitter buffer after their playout time.
    pub late: u64,
    /// RTCP compounds sent.
    pub rtcp_sent: u64,
    /// RTCP compounds received.
    pub rtcp_received: u64,
}

/// Why a leg cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// The SDPs give no usable media.
    #[error(transparent)]
    Leg(#[from] LegError),
    /// Transcoding needs a codec the backend does not have.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    side: Side,
    rtcp: bool,
    to: SocketAddr,
    len: usize,
}

/// The datagrams waiting for the shell, in preallocated slots.
#[derive(Debug)]
struct OutQueue {
    buf: Box<[u8]>,
    meta: [Option<Meta>; QUEUE],
    head: usize,
    len: usize,
}

impl OutQueue {
    fn new() -> Self {
        OutQueue {
            buf: vec![0; QUEUE * MAX_DATAGRAM].into_boxed_slice(),
            meta: [None; QUEUE],
            head: 0,
            len: 0,
        }
    }

    /// The next free slot, `None` when full.
    fn slot(&mut self) -> Option<&mut [u8]> {
        if self.len == QUEUE {
            return None;
        }
        let i = (self.head + self.len) % QUEUE;
        Some(&mut self.buf[i * MAX_DATAGRAM..(i + 1) * MAX_DATAGRAM])
    }

    /// Queues what was written into the slot [`Self::slot`] gave.
    fn commit(&mut self, m: Meta) {
        if self.len < QUEUE {
            self.meta[(self.head + self.len) % QUEUE] = Some(m);
            self.len += 1;
        }
    }

    fn pop(&mut self, out: &mut [u8]) -> Option<Transmit> {
        while self.len > 0 {
            let i = self.head;
            self.head = (self.head + 1) % QUEUE;
            self.len -= 1;
            let Some(m) = self.meta[i].take() else {
                continue;
            };
            // A buffer too short for the datagram loses it rather than truncates it.
            let Some(dst) = out.get_mut(..m.len) else {
                continue;
            };
            dst.copy_from_slice(&self.buf[i * MAX_DATAGRAM..i * MAX_DATAGRAM + m.len]);
            return Some(Transmit {
                side: m.side,
                rtcp: m.rtcp,
                to: m.to,
                len: m.len,
            });
        }
        None
    }
}

/// Frames encoded toward a leg, waiting for a whole packet.
#[derive(Debug)]
struct Pending {
    n: usize,
    fts: [u8; MAX_FRAMES],
    frames: [[u8; MAX_FRAME_OCTETS]; MAX_FRAMES],
    g711: [u8; G711_PENDING],
    g711_len: usize,
    ts: u32,
}

/// One leg: what we receive there (and decode, in transcoding) and what we send there.
struct LegState {
    side: Side,
    spec: Option<LegSpec>,
    ssrc: u32,
    // Reception.
    recv: ReceiverStats,
    recv_ssrc: Option<u32>,
    cmr_in: Option<u8>,
    jb: Option<JitterBuffer>,
    decoder: Option<Box<dyn Decoder>>,
    pcm_in: [i16; 320],
    pcm_out: [i16; 320],
    resample_prev: i16,
    last_activity: Instant,
    timed_out: bool,
    timeout_pending: bool,
    // Sending.
    send: SenderStats,
    encoder: Option<Box<dyn Encoder>>,
    rewriter: LegRewriter,
    out_seq: u16,
    out_ts: u32,
    out_next: Option<Instant>,
    marker: bool,
    pend: Box<Pending>,
    ev_in_ts: Option<u32>,
    ev_out_ts: u32,
    next_rtcp: Instant,
}

impl LegState {
    fn new(side: Side, ssrc: u32, seq: u16, ts: u32, now: Instant) -> Self {
        LegState {
            side,
            spec: None,
            ssrc,
            recv: ReceiverStats::new(8000),
            recv_ssrc: None,
            cmr_in: None,
            jb: None,
            decoder: None,
            pcm_in: [0; 320],
            pcm_out: [0; 320],
            resample_prev: 0,
            last_activity: now,
            timed_out: false,
            timeout_pending: false,
            send: SenderStats::new(8000),
            encoder: None,
            rewriter: LegRewriter::new(ssrc, seq, ts, 8000),
            out_seq: seq,
            out_ts: ts,
            out_next: None,
            marker: true,
            pend: Box::new(Pending {
                n: 0,
                fts: [0; MAX_FRAMES],
                frames: [[0; MAX_FRAME_OCTETS]; MAX_FRAMES],
                g711: [0; G711_PENDING],
                g711_len: 0,
                ts: 0,
            }),
            ev_in_ts: None,
            ev_out_ts: 0,
            next_rtcp: now,
        }
    }

    fn rate(&self) -> u32 {
        self.spec.map_or(8000, |s| s.codec.clock_rate())
    }

    /// The timestamp our stream toward this leg is at `now` (for an event starting now).
    fn clock_now(&self, now: Instant) -> u32 {
        match self.out_next {
            Some(t) if now > t => self.out_ts.wrapping_add(ticks(now - t, self.rate())),
            _ => self.out_ts,
        }
    }

    /// Where to send RTP to this leg's peer, when we send there.
    fn rtp_dest(&self) -> Option<(LegSpec, SocketAddr)> {
        let s = self.spec?;
        s.direction.sends().then_some(())?;
        Some((s, s.remote_rtp?))
    }
}

fn ticks(d: Duration, rate: u32) -> u32 {
    (d.as_nanos() * u128::from(rate) / 1_000_000_000) as u32
}

fn pair(legs: &mut [LegState; 2], x: usize) -> (&mut LegState, &mut LegState) {
    let (a, b) = legs.split_at_mut(1);
    if x == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    }
}

/// The CMR we send toward a leg: the best mode we accept from it (RFC 4867 §4.3.1), or
/// "no request" when its mode-set does not restrict the modes.
fn our_cmr(spec: &LegSpec) -> u8 {
    let LegCodec::Amr(f) = spec.codec else {
        return CMR_NONE;
    };
    let all = (1u16 << (f.kind.max_mode() + 1)) - 1;
    if spec.modes & all == all {
        return CMR_NONE;
    }
    (0..=f.kind.max_mode())
        .rev()
        .find(|m| spec.modes & (1 << m) != 0)
        .unwrap_or(CMR_NONE)
}

/// Converts 20 ms of PCM between 8 and 16 kHz (or copies): 16 → 8 kHz through a
/// [1 2 1]/4 low-pass before dropping every other sample, 8 → 16 kHz by linear
/// interpolation; `prev` carries the last input sample across frames.
fn resample(inp: &[i16], in_rate: u32, out: &mut [i16], out_rate: u32, prev: &mut i16) -> usize {
    match (in_rate, out_rate) {
        (16000, 8000) => {
            let n = (inp.len() / 2).min(out.len());
            for i in 0..n {
                let (b, c) = (i32::from(inp[2 * i]), i32::from(inp[2 * i + 1]));
                out[i] = ((i32::from(*prev) + 2 * b + c) / 4) as i16;
                *prev = inp[2 * i + 1];
            }
            n
        }
        (8000, 16000) => {
            let n = inp.len().min(out.len() / 2);
            for i in 0..n {
                out[2 * i] = ((i32::from(*prev) + i32::from(inp[i])) / 2) as i16;
                out[2 * i + 1] = inp[i];
                *prev = inp[i];
            }
            2 * n
        }
        _ => {
            let n = inp.len().min(out.len());
            out[..n].copy_from_slice(&inp[..n]);
            n
        }
    }
}

/// One call's media: two legs, relaying or transcoding between them.
pub struct Channel {
    config: ChannelConfig,
    started: Instant,
    legs: [LegState; 2],
    mode: Mode,
    queue: OutQueue,
    stats: ChannelStats,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("mode", &self.mode)
            .field("a", &self.legs[0].spec)
            .field("b", &self.legs[1].spec)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Channel {
    /// A channel with neither leg negotiated yet.
    pub fn new(config: ChannelConfig, now: Instant) -> Self {
        let leg = |i: usize| {
            LegState::new(
                Side::of(i),
                config.ssrc[i],
                config.first_seq[i],
                config.first_ts[i],
                now,
            )
        };
        Channel {
            legs: [leg(0), leg(1)],
            config,
            started: now,
            mode: Mode::Idle,
            queue: OutQueue::new(),
            stats: ChannelStats::default(),
        }
    }

    /// How media crosses now.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Counters since the channel started.
    pub fn stats(&self) -> ChannelStats {
        let late: u64 = self
            .legs
            .iter()
            .filter_map(|l| l.jb.as_ref())
            .map(JitterBuffer::late)
            .sum();
        ChannelStats {
            late: self.stats.late + late,
            ..self.stats
        }
    }

    /// Packets lost on the way to us on a leg (RFC 3550 A.3 cumulative lost, never negative).
    pub fn lost(&self, side: Side) -> u64 {
        let l = &self.legs[side.idx()];
        if l.recv_ssrc.is_none() {
            return 0;
        }
        l.recv.lost().max(0) as u64
    }

    /// A leg's negotiated parameters.
    pub fn leg(&self, side: Side) -> Option<&LegSpec> {
        self.legs[side.idx()].spec.as_ref()
    }

    /// The SSRC we send as on a leg.
    pub fn ssrc(&self, side: Side) -> u32 {
        self.legs[side.idx()].ssrc
    }

    /// The jitter buffer depth (frames) of what we receive on a leg, when transcoding.
    pub fn jitter_target(&self, side: Side) -> Option<u32> {
        self.legs[side.idx()].jb.as_ref().map(JitterBuffer::target)
    }

    /// A leg's offer/answer completed (again): media flows once both legs are set. Fails when
    /// transcoding needs a codec the backend lacks; the channel is then idle until a later
    /// negotiation succeeds.
    pub fn set_leg(
        &mut self,
        side: Side,
        spec: LegSpec,
        now: Instant,
    ) -> Result<Mode, BridgeError> {
        let x = side.idx();
        let l = &mut self.legs[x];
        let changed = l.spec.map(|s| s.codec) != Some(spec.codec);
        if l.spec.is_none() {
            // Spread the two legs' reports over the interval.
            l.next_rtcp = now + self.config.rtcp_interval / (2 + x as u32);
        }
        l.spec = Some(spec);
        l.last_activity = now;
        l.timed_out = false;
        if changed {
            l.recv_ssrc = None;
            l.jb = None;
            l.decoder = None;
            l.encoder = None;
            l.cmr_in = None;
            l.pend.n = 0;
            l.pend.g711_len = 0;
        }
        self.reconfigure(changed, now)
    }

    fn reconfigure(&mut self, changed: bool, now: Instant) -> Result<Mode, BridgeError> {
        let (Some(a), Some(b)) = (self.legs[0].spec, self.legs[1].spec) else {
            self.mode = Mode::Idle;
            return Ok(Mode::Idle);
        };
        let mode = if a.codec.same_codec(b.codec) {
            Mode::Relay
        } else {
            Mode::Transcode
        };
        if mode == Mode::Transcode {
            for l in &mut self.legs {
                let Some(s) = l.spec else { continue };
                match s.codec {
                    LegCodec::Amr(f) => {
                        if l.decoder.is_none() {
                            l.decoder = Some(
                                codec::decoder(f.kind, self.config.backend).inspect_err(|_| {
                                    self.mode = Mode::Idle;
                                })?,
                            );
                        }
                        if l.encoder.is_none() {
                            l.encoder = Some(
                                codec::encoder(f.kind, self.config.backend, false).inspect_err(
                                    |_| {
                                        self.mode = Mode::Idle;
                                    },
                                )?,
                            );
                        }
                        if l.jb.is_none() {
                            l.jb = Some(JitterBuffer::amr(f.kind, now));
                        }
                    }
                    LegCodec::Pcma | LegCodec::Pcmu => {
                        if l.jb.is_none() {
                            l.jb = Some(JitterBuffer::g711(now));
                        }
                    }
                }
            }
        }
        if changed || mode != self.mode {
            // Each leg's outgoing numbering continues where it was (RFC 3550 §5.1: the peer
            // sees one source whatever we do upstream).
            for y in 0..2 {
                let in_rate = self.legs[1 - y].rate();
                let l = &mut self.legs[y];
                let rate = l.rate();
                l.recv = if l.recv_ssrc.is_some() {
                    l.recv.clone()
                } else {
                    ReceiverStats::new(rate)
                };
                if l.send.packets() == 0 {
                    l.send = SenderStats::new(rate);
                }
                l.rewriter = LegRewriter::new(l.ssrc, l.out_seq, l.out_ts, rate)
                    .with_clock_rates(in_rate, rate);
                l.out_next = None;
                l.marker = true;
                if let Some(jb) = l.jb.as_mut() {
                    jb.reset();
                }
            }
        }
        self.mode = mode;
        Ok(mode)
    }

    /// An RTP datagram arrived on a leg's RTP port. Malformed and unexpected packets are
    /// counted in [`ChannelStats::dropped`].
    pub fn handle_rtp(&mut self, side: Side, datagram: &[u8], now: Instant) {
        let x = side.idx();
        let Ok(p) = RtpPacket::parse(datagram) else {
            self.stats.dropped += 1;
            return;
        };
        let lx = &mut self.legs[x];
        lx.last_activity = now;
        lx.timed_out = false;
        let Some(sx) = lx.spec else {
            self.stats.dropped += 1;
            return;
        };
        if lx.recv_ssrc != Some(p.ssrc()) {
            lx.recv_ssrc = Some(p.ssrc());
            lx.recv = ReceiverStats::new(sx.codec.clock_rate());
            lx.ev_in_ts = None;
            if let Some(jb) = lx.jb.as_mut() {
                jb.reset();
            }
        }
        lx.recv.handle_packet(p.sequence(), p.timestamp(), now);
        let pt = p.payload_type();
        let ok = if pt == sx.recv_pt {
            match self.mode {
                Mode::Relay => self.relay_voice(x, &p, datagram, now),
                Mode::Transcode => self.buffer_voice(x, &p, now),
                Mode::Idle => false,
            }
        } else if sx.dtmf.is_some_and(|d| d.recv_pt == pt) {
            self.forward_dtmf(x, &p, now)
        } else {
            false
        };
        if !ok {
            self.stats.dropped += 1;
        }
    }

    fn relay_voice(&mut self, x: usize, p: &RtpPacket<'_>, datagram: &[u8], now: Instant) -> bool {
        let (lx, ly) = pair(&mut self.legs, x);
        let (Some(sx), Some((sy, to))) = (lx.spec, ly.rtp_dest()) else {
            return false;
        };
        let Some(buf) = self.queue.slot() else {
            return false;
        };
        let (r, len) = match (sx.codec, sy.codec) {
            (LegCodec::Amr(fx), LegCodec::Amr(fy)) if fx != fy => {
                let Ok(payload) = AmrPayload::parse(fx, p.payload()) else {
                    return false;
                };
                let r = ly.rewriter.map(p.sequence(), p.timestamp(), p.ssrc(), now);
                let mut h = RtpHeader::new(sy.send_pt, r.sequence, r.timestamp, r.ssrc);
                h.marker = p.marker();
                let Ok(hl) = h.write(buf) else { return false };
                let cmr = if valid_cmr(fy.kind, payload.cmr()) {
                    payload.cmr()
                } else {
                    CMR_NONE
                };
                let Ok(pl) = payload.write(fy, cmr, &mut buf[hl..]) else {
                    return false;
                };
                (r, hl + pl)
            }
            _ => {
                let Some(dst) = buf.get_mut(..datagram.len()) else {
                    return false;
                };
                dst.copy_from_slice(datagram);
                let Ok(r) = ly.rewriter.rewrite_packet(dst, Some(sy.send_pt), now) else {
                    return false;
                };
                (r, datagram.len())
            }
        };
        self.queue.commit(Meta {
            side: Side::of(1 - x),
            rtcp: false,
            to,
            len,
        });
        ly.send
            .handle_sent(len - crate::rtp::RTP_FIXED_HEADER_LEN, r.timestamp, now);
        ly.out_seq = r.sequence.wrapping_add(1);
        ly.out_ts = r.timestamp;
        self.stats.relayed += 1;
        true
    }

    fn buffer_voice(&mut self, x: usize, p: &RtpPacket<'_>, now: Instant) -> bool {
        let lx = &mut self.legs[x];
        let (Some(sx), Some(jb)) = (lx.spec, lx.jb.as_mut()) else {
            return false;
        };
        let jitter = lx.recv.jitter_duration();
        match sx.codec {
            LegCodec::Amr(f) => {
                let Ok(payload) = AmrPayload::parse(f, p.payload()) else {
                    return false;
                };
                lx.cmr_in = payload.mode_request();
                jb.push_amr(p.timestamp(), payload.frames(), jitter, now);
            }
            LegCodec::Pcma => jb.push_g711(p.timestamp(), p.payload(), true, jitter, now),
            LegCodec::Pcmu => jb.push_g711(p.timestamp(), p.payload(), false, jitter, now),
        }
        true
    }

    fn forward_dtmf(&mut self, x: usize, p: &RtpPacket<'_>, now: Instant) -> bool {
        let mode = self.mode;
        let (lx, ly) = pair(&mut self.legs, x);
        let (Some(sx), Some((sy, to))) = (lx.spec, ly.rtp_dest()) else {
            return false;
        };
        let (Some(dx), Some(dy)) = (sx.dtmf, sy.dtmf) else {
            return false;
        };
        let Ok(ev) = TelephoneEvent::parse(p.payload())
            .and_then(|e| e.with_clock_rate(dx.clock_rate, dy.clock_rate))
        else {
            return false;
        };
        let (seq, ts, marker) = match mode {
            Mode::Relay => {
                let r = ly.rewriter.map(p.sequence(), p.timestamp(), p.ssrc(), now);
                ly.out_seq = r.sequence.wrapping_add(1);
                (r.sequence, r.timestamp, p.marker())
            }
            Mode::Transcode => {
                // The event gets a timestamp of our outgoing stream (RFC 4733 §2.5.1.2:
                // the start of the event); its later packets repeat it.
                let new = ly.ev_in_ts != Some(p.timestamp());
                if new {
                    ly.ev_in_ts = Some(p.timestamp());
                    ly.ev_out_ts = ly.clock_now(now);
                }
                let seq = ly.out_seq;
                ly.out_seq = seq.wrapping_add(1);
                (seq, ly.ev_out_ts, new)
            }
            Mode::Idle => return false,
        };
        let Some(buf) = self.queue.slot() else {
            return false;
        };
        let mut h = RtpHeader::new(dy.send_pt, seq, ts, ly.ssrc);
        h.marker = marker;
        let Ok(hl) = h.write(buf) else { return false };
        let Ok(pl) = ev.write(&mut buf[hl..]) else {
            return false;
        };
        self.queue.commit(Meta {
            side: Side::of(1 - x),
            rtcp: false,
            to,
            len: hl + pl,
        });
        ly.send.handle_sent(pl, ts, now);
        self.stats.dtmf += 1;
        true
    }

    /// An RTCP datagram arrived on a leg's RTCP port: it proves the leg alive, and an SR from
    /// the source we receive gives the next report block its LSR/DLSR.
    pub fn handle_rtcp(&mut self, side: Side, datagram: &[u8], now: Instant) {
        let Ok(c) = Compound::parse(datagram) else {
            self.stats.dropped += 1;
            return;
        };
        let l = &mut self.legs[side.idx()];
        l.last_activity = now;
        l.timed_out = false;
        self.stats.rtcp_received += 1;
        for p in c.packets() {
            if let RtcpPacket::SenderReport(sr) = p {
                if l.recv_ssrc == Some(sr.ssrc) {
                    l.recv.handle_sender_report(sr.info.compact_ntp(), now);
                }
            }
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for l in &self.legs {
            let Some(s) = l.spec else { continue };
            if self.mode == Mode::Transcode {
                if let Some(t) = l.jb.as_ref().and_then(JitterBuffer::next_due) {
                    at(t);
                }
            }
            if s.remote_rtcp.is_some() {
                at(l.next_rtcp);
            }
            if !l.timed_out {
                at(l.last_activity + self.config.media_timeout);
            }
        }
        next
    }

    /// Runs what is due at `now`: playout and encoding of transcoded frames, RTCP reports,
    /// the media timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        for x in 0..2 {
            if self.mode == Mode::Transcode {
                // Bounded: a shell a second late catches up by at most this many frames,
                // the jitter buffer drops what is older.
                for _ in 0..64 {
                    if !self.transcode_frame(x, now) {
                        break;
                    }
                }
            }
            self.report(x, now);
            let l = &mut self.legs[x];
            if l.spec.is_some()
                && !l.timed_out
                && now >= l.last_activity + self.config.media_timeout
            {
                l.timed_out = true;
                l.timeout_pending = true;
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        for (i, l) in self.legs.iter_mut().enumerate() {
            if std::mem::take(&mut l.timeout_pending) {
                return Some(ChannelEvent::Timeout(Side::of(i)));
            }
        }
        None
    }

    /// Copies the next datagram to send into `buf` ([`MAX_DATAGRAM`] long takes any).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        self.queue.pop(buf)
    }

    /// Plays one frame of what leg `x` sent into the other leg; false when none is due.
    fn transcode_frame(&mut self, x: usize, now: Instant) -> bool {
        let (lx, ly) = pair(&mut self.legs, x);
        let (Some(sx), Some(sy)) = (lx.spec, ly.spec) else {
            return false;
        };
        let LegState {
            jb,
            decoder,
            pcm_in,
            pcm_out,
            resample_prev,
            ..
        } = lx;
        let Some(jb) = jb.as_mut() else { return false };
        let rate_x = sx.codec.clock_rate();
        let n_in = (rate_x / 50) as usize;
        match jb.pop(now) {
            None => return false,
            Some(Played::Amr(f)) => {
                let ok = decoder
                    .as_mut()
                    .is_some_and(|d| d.decode(f.as_ref(), &mut pcm_in[..n_in]).is_ok());
                if !ok {
                    pcm_in[..n_in].fill(0);
                }
            }
            Some(Played::Pcm(s)) => pcm_in[..n_in].copy_from_slice(&s[..n_in]),
        }
        let rate_y = sy.codec.clock_rate();
        let n_out = resample(
            &pcm_in[..n_in],
            rate_x,
            &mut pcm_out[..],
            rate_y,
            resample_prev,
        );

        // Our output clock: after a pause the timestamps jump by the time that passed
        // (RFC 3550 §5.1) and the marker starts the new talkspurt.
        match ly.out_next {
            Some(t) if now > t + OUTPUT_GAP => {
                let frames = (now - t).as_millis() as u32 / 20;
                ly.out_ts = ly.out_ts.wrapping_add(frames * n_out as u32);
                ly.marker = true;
                ly.pend.n = 0;
                ly.pend.g711_len = 0;
            }
            None => ly.marker = true,
            _ => {}
        }
        ly.out_next = Some(now + FRAME);
        let pend = &mut *ly.pend;
        if pend.n == 0 && pend.g711_len == 0 {
            pend.ts = ly.out_ts;
        }
        ly.out_ts = ly.out_ts.wrapping_add(n_out as u32);
        let pcm = &pcm_out[..n_out];
        match sy.codec {
            LegCodec::Amr(f) => {
                let mode = sy.send_mode(ly.cmr_in).unwrap_or(0);
                let Some(enc) = ly.encoder.as_mut() else {
                    return true;
                };
                match enc.encode(pcm, mode, &mut pend.frames[pend.n]) {
                    Ok(e) if frame_octets(f.kind, e.frame_type).is_some() => {
                        pend.fts[pend.n] = e.frame_type;
                    }
                    _ => pend.fts[pend.n] = amr::FT_NO_DATA,
                }
                pend.n += 1;
                if pend.n * 20 >= sy.ptime as usize || pend.n == MAX_FRAMES {
                    emit_amr(&mut self.queue, ly, sy, f, now, &mut self.stats);
                }
            }
            LegCodec::Pcma | LegCodec::Pcmu => {
                let at = pend.g711_len;
                let dst = &mut pend.g711[at..at + pcm.len()];
                let _ = if sy.codec == LegCodec::Pcma {
                    g711::alaw_encode_slice(pcm, dst)
                } else {
                    g711::ulaw_encode_slice(pcm, dst)
                };
                pend.g711_len += pcm.len();
                let chunk = sy.ptime as usize * 8;
                while ly.pend.g711_len >= chunk {
                    emit_g711(&mut self.queue, ly, sy, chunk, now, &mut self.stats);
                }
            }
        }
        true
    }

    /// Sends leg `x` its RTCP report when due: SR when we sent there since the start, else
    /// RR, with a report block about the source we receive there, and our CNAME.
    fn report(&mut self, x: usize, now: Instant) {
        let l = &mut self.legs[x];
        let Some(to) = l.spec.and_then(|s| s.remote_rtcp) else {
            return;
        };
        if now < l.next_rtcp {
            return;
        }
        l.next_rtcp = now + self.config.rtcp_interval;
        let Some(buf) = self.queue.slot() else { return };
        let block;
        let blocks: &[ReportBlock] = match l.recv_ssrc {
            Some(s) if l.recv.received() > 0 => {
                block = [l.recv.report_block(s, now)];
                &block
            }
            _ => &[],
        };
        let wall = self.config.wall_clock + now.saturating_duration_since(self.started);
        let mut w = RtcpWriter::new(buf);
        let r = if l.send.packets() > 0 {
            w.sender_report(l.ssrc, &l.send.sender_info(wall, now), blocks)
        } else {
            w.receiver_report(l.ssrc, blocks)
        };
        if r.and_then(|()| w.sdes_cname(l.ssrc, self.config.cname.as_bytes()))
            .is_err()
        {
            return;
        }
        let len = w.len();
        self.queue.commit(Meta {
            side: Side::of(x),
            rtcp: true,
            to,
            len,
        });
        self.stats.rtcp_sent += 1;
    }
}

fn emit_amr(
    queue: &mut OutQueue,
    ly: &mut LegState,
    sy: LegSpec,
    f: AmrFormat,
    now: Instant,
    stats: &mut ChannelStats,
) {
    let pend = &mut *ly.pend;
    let n = pend.n;
    pend.n = 0;
    let Some(to) = sy.remote_rtp.filter(|_| sy.direction.sends()) else {
        return;
    };
    let Some(buf) = queue.slot() else {
        stats.dropped += 1;
        return;
    };
    let mut h = RtpHeader::new(sy.send_pt, ly.out_seq, pend.ts, ly.ssrc);
    h.marker = ly.marker;
    let Ok(hl) = h.write(buf) else { return };
    let (fts, frames) = (&pend.fts, &pend.frames);
    let iter = (0..n).filter_map(|i| {
        let len = frame_octets(f.kind, fts[i])?;
        AmrFrame::from_octets(f.kind, fts[i], true, &frames[i][..len]).ok()
    });
    let Ok(pl) = amr::pack(f, our_cmr(&sy), iter, &mut buf[hl..]) else {
        return;
    };
    queue.commit(Meta {
        side: ly.side,
        rtcp: false,
        to,
        len: hl + pl,
    });
    ly.send.handle_sent(pl, pend.ts, now);
    ly.out_seq = ly.out_seq.wrapping_add(1);
    ly.marker = false;
    stats.transcoded += 1;
}

fn emit_g711(
    queue: &mut OutQueue,
    ly: &mut LegState,
    sy: LegSpec,
    chunk: usize,
    now: Instant,
    stats: &mut ChannelStats,
) {
    let pend = &mut *ly.pend;
    let ts = pend.ts;
    pend.ts = pend.ts.wrapping_add(chunk as u32);
    let send = sy.remote_rtp.filter(|_| sy.direction.sends());
    if let (Some(to), Some(buf)) = (send, queue.slot()) {
        let mut h = RtpHeader::new(sy.send_pt, ly.out_seq, ts, ly.ssrc);
        h.marker = ly.marker;
        if let Ok(n) = h.write_packet(&pend.g711[..chunk], buf) {
            queue.commit(Meta {
                side: ly.side,
                rtcp: false,
                to,
                len: n,
            });
            ly.send.handle_sent(chunk, ts, now);
            ly.out_seq = ly.out_seq.wrapping_add(1);
            ly.marker = false;
            stats.transcoded += 1;
        }
    }
    pend.g711.copy_within(chunk..pend.g711_len, 0);
    pend.g711_len -= chunk;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amr::AmrFormat;
    use proptest::prelude::*;
    use sdp::{AmrKind, Direction};

    fn spec(codec: LegCodec, port: u16) -> LegSpec {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        LegSpec {
            codec,
            send_pt: 96,
            recv_pt: 96,
            modes: 0x1F,
            dtmf: Some(super::super::DtmfSpec {
                send_pt: 101,
                recv_pt: 101,
                clock_rate: 8000,
            }),
            ptime: 40,
            remote_rtp: Some(SocketAddr::new(ip, port)),
            remote_rtcp: Some(SocketAddr::new(ip, port + 1)),
            direction: Direction::SendRecv,
        }
    }

    #[test]
    fn resampler_keeps_a_constant_and_the_length() {
        let mut prev = 1000;
        let mut out = [0i16; 320];
        assert_eq!(
            resample(&[1000; 160], 8000, &mut out, 16000, &mut prev),
            320
        );
        assert!(out.iter().all(|&s| s == 1000));
        let mut down = [0i16; 160];
        assert_eq!(resample(&out, 16000, &mut down, 8000, &mut prev), 160);
        assert!(down.iter().all(|&s| s == 1000));
    }

    #[test]
    fn our_cmr_is_none_for_an_open_mode_set_else_its_best_mode() {
        let mut s = spec(LegCodec::Amr(AmrFormat::octet_aligned(AmrKind::Nb)), 1000);
        assert_eq!(our_cmr(&s), 4);
        s.modes = 0xFF;
        assert_eq!(our_cmr(&s), CMR_NONE);
        assert_eq!(our_cmr(&spec(LegCodec::Pcma, 1000)), CMR_NONE);
    }

    proptest! {
        /// Whatever arrives on either port of either leg, in every mode, the channel neither
        /// panics nor stops answering its timers.
        #[test]
        fn any_datagram_in_any_mode_is_handled(
            kinds in (0usize..4, 0usize..4),
            datagrams in proptest::collection::vec(
                (any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)),
                1..40,
            ),
        ) {
            let codecs = [
                LegCodec::Pcma,
                LegCodec::Pcmu,
                LegCodec::Amr(AmrFormat::octet_aligned(AmrKind::Nb)),
                LegCodec::Amr(AmrFormat::bandwidth_efficient(AmrKind::Wb)),
            ];
            let t0 = Instant::now();
            let mut ch = Channel::new(ChannelConfig::new(9, SystemTime::now()), t0);
            ch.set_leg(Side::A, spec(codecs[kinds.0], 1000), t0).ok();
            ch.set_leg(Side::B, spec(codecs[kinds.1], 2000), t0).ok();
            let mut out = [0u8; MAX_DATAGRAM];
            for (i, (b, rtcp, mut d)) in datagrams.into_iter().enumerate() {
                let now = t0 + Duration::from_millis(7 * i as u64);
                let side = if b { Side::B } else { Side::A };
                if d.len() >= 2 && !rtcp {
                    // Steer half the packets into the parsers behind the version check.
                    d[0] = 0x80 | (d[0] & 0x3F);
                    if i % 2 == 0 {
                        d[1] = (d[1] & 0x80) | if i % 4 == 0 { 96 } else { 101 };
                    }
                }
                if rtcp { ch.handle_rtcp(side, &d, now) } else { ch.handle_rtp(side, &d, now) }
                ch.handle_timeout(now);
                while ch.poll_transmit(&mut out).is_some() {}
                while ch.poll_event().is_some() {}
            }
            if let Some(t) = ch.poll_timeout() {
                ch.handle_timeout(t);
            }
        }
    }
}
