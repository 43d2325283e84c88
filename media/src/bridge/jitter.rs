//! The adaptive jitter buffer of the transcoding path: received audio is stored by RTP
//! timestamp and played out one 20 ms frame at a time on the bridge's own clock, so the
//! decoder sees frames in order and the encoder on the other leg a steady 50 frames/s
//! whatever the sender's packetization and the network's jitter.
//!
//! Depth starts at two frames and follows the interarrival jitter of RFC 3550 §6.4.1
//! (target = 20 ms + 2 × jitter, in whole frames, 1 to [`MAX_DEPTH`]); a late frame raises
//! it by one frame at once. Growing inserts a concealment frame, shrinking drops one when
//! more than the target plus one packet is queued. Storage is fixed at creation: AMR frames
//! in [`SLOTS`] slots, G.711 as decoded samples in a ring.

use std::time::{Duration, Instant};

use sdp::AmrKind;

use crate::amr::{frame_octets, sid_frame_type, AmrFrame, FT_NO_DATA};
use crate::codec::MAX_FRAME_OCTETS;
use crate::g711;

/// Frames the buffer holds; a packet reaching further ahead than this resynchronises.
pub const SLOTS: usize = 16;
/// Largest depth the adaptation goes to, in 20 ms frames (200 ms).
pub const MAX_DEPTH: u32 = 10;
/// One frame of playout.
pub const FRAME: Duration = Duration::from_millis(20);
/// Without a packet for this long once the queue is empty, playout stops (end of talk
/// with DTX, hold, a dead peer) until the next packet.
const IDLE: Duration = Duration::from_millis(300);
/// Samples in the G.711 ring: a power of two above `SLOTS` frames of 160.
const RING: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct AmrSlot {
    ts: u32,
    used: bool,
    ft: u8,
    quality: bool,
    data: [u8; MAX_FRAME_OCTETS],
}

const EMPTY_SLOT: AmrSlot = AmrSlot {
    ts: 0,
    used: false,
    ft: FT_NO_DATA,
    quality: true,
    data: [0; MAX_FRAME_OCTETS],
};

#[derive(Debug)]
enum Store {
    Amr {
        kind: AmrKind,
        slots: Box<[AmrSlot; SLOTS]>,
        /// The last frame played was SID (or NO_DATA after one): a missing frame then is
        /// DTX silence, not loss (RFC 4867 §4.3.2).
        in_dtx: bool,
    },
    Pcm {
        ring: Box<[i16; RING]>,
        out: Box<[i16; 160]>,
    },
}

/// One frame taken out of the buffer for decoding.
#[derive(Debug)]
pub enum Played<'a> {
    /// An AMR frame, or `None` for a frame that never came (the decoder conceals it).
    Amr(Option<AmrFrame<'a>>),
    /// 160 samples of decoded G.711 (zeros where nothing arrived).
    Pcm(&'a [i16]),
}

/// The jitter buffer of one received stream.
#[derive(Debug)]
pub struct JitterBuffer {
    store: Store,
    frame_ticks: u32,
    running: bool,
    anchor: u32,
    play_ts: u32,
    next_at: Instant,
    highest_end: u32,
    last_arrival: Instant,
    target: u32,
    stretch: u32,
    packet_frames: u32,
    calm: u32,
    late: u64,
}

impl JitterBuffer {
    /// A buffer for AMR frames of `kind`.
    pub fn amr(kind: AmrKind, now: Instant) -> Self {
        Self::with(
            Store::Amr {
                kind,
                slots: Box::new([EMPTY_SLOT; SLOTS]),
                in_dtx: false,
            },
            crate::codec::frame_samples(kind) as u32,
            now,
        )
    }

    /// A buffer for G.711 (8000 Hz).
    pub fn g711(now: Instant) -> Self {
        Self::with(
            Store::Pcm {
                ring: Box::new([0; RING]),
                out: Box::new([0; 160]),
            },
            160,
            now,
        )
    }

    fn with(store: Store, frame_ticks: u32, now: Instant) -> Self {
        JitterBuffer {
            store,
            frame_ticks,
            running: false,
            anchor: 0,
            play_ts: 0,
            next_at: now,
            highest_end: 0,
            last_arrival: now,
            target: 2,
            stretch: 0,
            packet_frames: 1,
            calm: 0,
            late: 0,
        }
    }

    /// Frames that arrived after their playout time (dropped).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// The current target depth in frames.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// When the next frame is due, if playing.
    pub fn next_due(&self) -> Option<Instant> {
        self.running.then_some(self.next_at)
    }

    /// Forgets everything (a new source, a codec change): the next packet starts playout.
    pub fn reset(&mut self) {
        self.running = false;
        self.stretch = 0;
        self.clear();
    }

    fn clear(&mut self) {
        match &mut self.store {
            Store::Amr { slots, in_dtx, .. } => {
                slots.iter_mut().for_each(|s| s.used = false);
                *in_dtx = false;
            }
            Store::Pcm { ring, .. } => ring.fill(0),
        }
    }

    /// Where a packet of `frames` frames at `ts` goes: `None` if late (counted).
    fn admit(&mut self, ts: u32, frames: u32, jitter: Duration, now: Instant) -> bool {
        self.last_arrival = now;
        self.packet_frames = frames.max(1);
        let ft = self.frame_ticks;
        let misaligned =
            matches!(self.store, Store::Amr { .. }) && ts.wrapping_sub(self.anchor) % ft != 0;
        if !self.running || misaligned {
            self.running = true;
            self.anchor = ts;
            self.play_ts = ts;
            self.highest_end = ts;
            self.stretch = 0;
            self.next_at = now + FRAME * self.target;
            self.clear();
        }
        let ahead = ts.wrapping_sub(self.play_ts) as i32;
        if ahead < 0 {
            self.late += 1;
            if self.target < MAX_DEPTH {
                self.target += 1;
                self.stretch += 1;
            }
            return false;
        }
        if ahead as u64 + u64::from(frames * ft) > u64::from(SLOTS as u32 * ft) {
            // Far ahead of playout (a pause the sender did not mark, a clock jump): start
            // again from this packet rather than wait through the gap.
            self.anchor = ts;
            self.play_ts = ts;
            self.highest_end = ts;
            self.clear();
        }
        let end = ts.wrapping_add(frames * ft);
        if end.wrapping_sub(self.highest_end) as i32 > 0 {
            self.highest_end = end;
        }
        let want_ms = 20 + 2 * jitter.as_millis() as u32;
        let want = want_ms.div_ceil(20).clamp(1, MAX_DEPTH);
        if want > self.target {
            self.stretch += want - self.target;
            self.target = want;
            self.calm = 0;
        } else if want < self.target {
            // Shrink one frame per second of lower jitter, so a late frame's bump is not
            // undone by the next packet.
            self.calm += 1;
            if self.calm >= 50 {
                self.calm = 0;
                self.target -= 1;
            }
        }
        true
    }

    /// Stores the frames of one AMR packet whose first frame has timestamp `ts`.
    pub fn push_amr<'f>(
        &mut self,
        ts: u32,
        frames: impl ExactSizeIterator<Item = AmrFrame<'f>>,
        jitter: Duration,
        now: Instant,
    ) {
        if !self.admit(ts, frames.len() as u32, jitter, now) {
            return;
        }
        let (ft, anchor, play_ts) = (self.frame_ticks, self.anchor, self.play_ts);
        let Store::Amr { slots, .. } = &mut self.store else {
            return;
        };
        for (i, f) in frames.enumerate() {
            let fts = ts.wrapping_add(i as u32 * ft);
            if (fts.wrapping_sub(play_ts) as i32) < 0 {
                continue;
            }
            let slot = &mut slots[(fts.wrapping_sub(anchor) / ft) as usize % SLOTS];
            if f.copy_octets(&mut slot.data).is_ok() {
                slot.ts = fts;
                slot.ft = f.frame_type();
                slot.quality = f.quality();
                slot.used = true;
            }
        }
    }

    /// Stores one G.711 packet at `ts`, decoding it (`alaw` or µ-law).
    pub fn push_g711(&mut self, ts: u32, codes: &[u8], alaw: bool, jitter: Duration, now: Instant) {
        let frames = (codes.len() as u32).div_ceil(160);
        if codes.is_empty() || !self.admit(ts, frames, jitter, now) {
            return;
        }
        let (anchor, play_ts) = (self.anchor, self.play_ts);
        let Store::Pcm { ring, .. } = &mut self.store else {
            return;
        };
        for (i, &c) in codes.iter().enumerate().take(SLOTS * 160) {
            let sts = ts.wrapping_add(i as u32);
            if (sts.wrapping_sub(play_ts) as i32) < 0 {
                continue;
            }
            ring[sts.wrapping_sub(anchor) as usize % RING] = if alaw {
                g711::alaw_decode(c)
            } else {
                g711::ulaw_decode(c)
            };
        }
    }

    /// The frame due at `now`, if one is (call until `None`); playout advances 20 ms.
    pub fn pop(&mut self, now: Instant) -> Option<Played<'_>> {
        if !self.running || now < self.next_at {
            return None;
        }
        let ft = self.frame_ticks;
        let drained = self.highest_end.wrapping_sub(self.play_ts) as i32 <= 0;
        if drained && now.saturating_duration_since(self.last_arrival) > IDLE {
            self.running = false;
            return None;
        }
        self.next_at += FRAME;
        let conceal = if self.stretch > 0 {
            self.stretch -= 1;
            true
        } else {
            let queued = (self.highest_end.wrapping_sub(self.play_ts) as i32).max(0) as u32 / ft;
            if queued > self.target + self.packet_frames {
                self.discard(self.play_ts);
                self.play_ts = self.play_ts.wrapping_add(ft);
            }
            false
        };
        let at = self.play_ts;
        if !conceal {
            self.play_ts = self.play_ts.wrapping_add(ft);
        }
        let anchor = self.anchor;
        match &mut self.store {
            Store::Amr {
                kind,
                slots,
                in_dtx,
            } => {
                let slot = &mut slots[(at.wrapping_sub(anchor) / ft) as usize % SLOTS];
                let hit = !conceal && slot.used && slot.ts == at;
                if hit {
                    slot.used = false;
                    *in_dtx =
                        slot.ft == sid_frame_type(*kind) || (*in_dtx && slot.ft == FT_NO_DATA);
                    let n = frame_octets(*kind, slot.ft).unwrap_or(0);
                    let f =
                        AmrFrame::from_octets(*kind, slot.ft, slot.quality, &slot.data[..n]).ok();
                    Some(Played::Amr(f))
                } else if *in_dtx {
                    Some(Played::Amr(Some(AmrFrame::no_data(*kind))))
                } else {
                    Some(Played::Amr(None))
                }
            }
            Store::Pcm { ring, out } => {
                if conceal {
                    out.fill(0);
                } else {
                    for (i, o) in out.iter_mut().enumerate() {
                        let r = &mut ring
                            [at.wrapping_add(i as u32).wrapping_sub(anchor) as usize % RING];
                        *o = *r;
                        *r = 0;
                    }
                }
                Some(Played::Pcm(&out[..]))
            }
        }
    }

    fn discard(&mut self, at: u32) {
        let (ft, anchor) = (self.frame_ticks, self.anchor);
        match &mut self.store {
            Store::Amr { slots, .. } => {
                let s = &mut slots[(at.wrapping_sub(anchor) / ft) as usize % SLOTS];
                if s.ts == at {
                    s.used = false;
                }
            }
            Store::Pcm { ring, .. } => {
                for i in 0..160u32 {
                    ring[at.wrapping_add(i).wrapping_sub(anchor) as usize % RING] = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(b: &mut JitterBuffer, now: Instant) -> Vec<i16> {
        let mut v = Vec::new();
        while let Some(p) = b.pop(now) {
            match p {
                Played::Pcm(s) => v.push(s[0]),
                Played::Amr(_) => unreachable!(),
            }
        }
        v
    }

    #[test]
    fn plays_in_timestamp_order_despite_reordering() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::g711(t0);
        // Frames k carry the A-law code of sample value k*1000 (roughly).
        let code = |k: i16| [g711::alaw_encode(k * 1000); 160];
        b.push_g711(1000, &code(1), true, Duration::ZERO, t0);
        b.push_g711(1320, &code(3), true, Duration::ZERO, t0 + FRAME);
        b.push_g711(1160, &code(2), true, Duration::ZERO, t0 + FRAME * 2);
        let out = frames_of(&mut b, t0 + FRAME * 4);
        assert_eq!(out.len(), 3);
        let levels: Vec<i16> = out.iter().map(|s| (*s + 500) / 1000).collect();
        assert_eq!(levels, [1, 2, 3]);
    }

    #[test]
    fn late_frame_is_dropped_and_depth_grows() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::g711(t0);
        let code = [g711::alaw_encode(4000); 160];
        b.push_g711(0, &code, true, Duration::ZERO, t0);
        let before = b.target();
        assert!(b.pop(t0 + FRAME * 2).is_some());
        assert!(b.pop(t0 + FRAME * 2).is_none(), "one frame per 20 ms");
        // A packet for before the playout point arrives.
        b.push_g711(u32::MAX - 159, &code, true, Duration::ZERO, t0 + FRAME * 2);
        assert_eq!(b.late(), 1);
        assert_eq!(b.target(), before + 1);
    }

    #[test]
    fn missing_amr_frame_is_lost_and_playout_stops_when_idle() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::amr(AmrKind::Nb, t0);
        let speech = [0u8; 31];
        let f = AmrFrame::from_octets(AmrKind::Nb, 7, true, &speech).unwrap();
        b.push_amr(0, [f].into_iter(), Duration::ZERO, t0);
        b.push_amr(320, [f].into_iter(), Duration::ZERO, t0 + FRAME * 2);
        let t = t0 + FRAME * 4;
        assert!(matches!(b.pop(t), Some(Played::Amr(Some(_)))));
        assert!(matches!(b.pop(t), Some(Played::Amr(None))));
        assert!(matches!(b.pop(t), Some(Played::Amr(Some(_)))));
        assert!(b.pop(t).is_none());
        // Long silence: playout stops instead of concealing forever.
        let later = t0 + Duration::from_secs(2);
        let mut n = 0;
        while b.pop(later).is_some() {
            n += 1;
            assert!(n < 200);
        }
        assert!(b.next_due().is_none());
    }

    #[test]
    fn jitter_raises_the_target_within_bounds() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::amr(AmrKind::Nb, t0);
        let f = AmrFrame::no_data(AmrKind::Nb);
        b.push_amr(0, [f].into_iter(), Duration::from_millis(45), t0);
        assert_eq!(b.target(), 6);
        b.push_amr(160, [f].into_iter(), Duration::from_secs(1), t0);
        assert_eq!(b.target(), MAX_DEPTH);
    }
}
