//! The per-leg RTP rewriter of a B2BUA: each leg sees one SSRC with continuous sequence
//! numbers and timestamps, whatever happens on the other leg (source changes after a
//! re-INVITE, a switch between relaying and transcoding, a different clock rate).
//!
//! RFC 3550 §8.2 and §5.1: a receiver treats a new SSRC as a new source and expects
//! sequence numbers and timestamps to continue from where they were; RFC 7667 §3.2.1.3
//! (media translator) is the topology this implements.

use std::time::Instant;

use crate::rtp::{rewrite_header, RtpError, RtpPacket};

/// What the rewriter did to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// The outgoing sequence number.
    pub sequence: u16,
    /// The outgoing timestamp.
    pub timestamp: u32,
    /// The outgoing SSRC (always the leg's).
    pub ssrc: u32,
    /// The incoming SSRC changed with this packet (the first packet counts): a sender
    /// would set the marker bit on it when it starts a talkspurt.
    pub new_source: bool,
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    in_ssrc: u32,
    seq_delta: u16,
    base_in_ts: u32,
    base_out_ts: u32,
    last_out_seq: u16,
    last_out_ts: u32,
    last_at: Instant,
}

/// Maps sequence numbers, timestamps and SSRC from what one leg receives to what the other
/// leg sends.
#[derive(Debug, Clone)]
pub struct LegRewriter {
    out_ssrc: u32,
    first_seq: u16,
    first_ts: u32,
    in_rate: u32,
    out_rate: u32,
    map: Option<Mapping>,
}

impl LegRewriter {
    /// A rewriter sending as `ssrc`, starting at `first_seq`/`first_ts` (RFC 3550 §5.1 asks
    /// for random initial values: the caller draws them), with the same `clock_rate` (Hz) on
    /// both sides.
    pub fn new(ssrc: u32, first_seq: u16, first_ts: u32, clock_rate: u32) -> Self {
        let rate = clock_rate.max(1);
        LegRewriter {
            out_ssrc: ssrc,
            first_seq,
            first_ts,
            in_rate: rate,
            out_rate: rate,
            map: None,
        }
    }

    /// Converts timestamps from an `in_rate` Hz clock to an `out_rate` Hz one (e.g. an
    /// AMR-WB or telephone-event/16000 leg toward an 8000 Hz one). Zero rates are ignored.
    pub fn with_clock_rates(mut self, in_rate: u32, out_rate: u32) -> Self {
        if in_rate != 0 && out_rate != 0 {
            self.in_rate = in_rate;
            self.out_rate = out_rate;
        }
        self
    }

    /// The SSRC this leg sends as.
    pub fn ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Maps one packet's fields; `now` is its arrival time, used to advance the timestamp
    /// across a change of source by the time that passed.
    pub fn map(&mut self, sequence: u16, timestamp: u32, ssrc: u32, now: Instant) -> Rewritten {
        let (mut m, new_source) = match self.map {
            Some(m) if m.in_ssrc == ssrc => (m, false),
            Some(m) => {
                let elapsed = now.saturating_duration_since(m.last_at);
                let ticks = elapsed.as_nanos() * u128::from(self.out_rate) / 1_000_000_000;
                // At least one tick so the new source never repeats the old timestamp.
                let out_ts = m.last_out_ts.wrapping_add((ticks as u32).max(1));
                let out_seq = m.last_out_seq.wrapping_add(1);
                (
                    self.fresh(sequence, timestamp, ssrc, out_seq, out_ts, now),
                    true,
                )
            }
            None => (
                self.fresh(
                    sequence,
                    timestamp,
                    ssrc,
                    self.first_seq,
                    self.first_ts,
                    now,
                ),
                true,
            ),
        };
        let out_seq = sequence.wrapping_add(m.seq_delta);
        let d = i64::from(timestamp.wrapping_sub(m.base_in_ts) as i32);
        let scaled = d * i64::from(self.out_rate);
        let out_ts = m
            .base_out_ts
            .wrapping_add((scaled / i64::from(self.in_rate)) as u32);
        // Move the base forward when the scaling is exact so the 32-bit difference never
        // wraps however long the call lasts.
        if d > 0 && scaled % i64::from(self.in_rate) == 0 {
            m.base_in_ts = timestamp;
            m.base_out_ts = out_ts;
        }
        if new_source || out_seq.wrapping_sub(m.last_out_seq) < 0x8000 {
            m.last_out_seq = out_seq;
            m.last_at = now;
        }
        if new_source || (out_ts.wrapping_sub(m.last_out_ts) as i32) > 0 {
            m.last_out_ts = out_ts;
        }
        self.map = Some(m);
        Rewritten {
            sequence: out_seq,
            timestamp: out_ts,
            ssrc: self.out_ssrc,
            new_source,
        }
    }

    fn fresh(
        &self,
        seq: u16,
        ts: u32,
        ssrc: u32,
        out_seq: u16,
        out_ts: u32,
        now: Instant,
    ) -> Mapping {
        Mapping {
            in_ssrc: ssrc,
            seq_delta: out_seq.wrapping_sub(seq),
            base_in_ts: ts,
            base_out_ts: out_ts,
            last_out_seq: out_seq,
            last_out_ts: out_ts,
            last_at: now,
        }
    }

    /// Rewrites a received packet in place for the other leg, optionally with a new payload
    /// type (the two legs may number the same codec differently).
    pub fn rewrite_packet(
        &mut self,
        packet: &mut [u8],
        payload_type: Option<u8>,
        now: Instant,
    ) -> Result<Rewritten, RtpError> {
        let p = RtpPacket::parse(packet)?;
        let r = self.map(p.sequence(), p.timestamp(), p.ssrc(), now);
        rewrite_header(packet, r.sequence, r.timestamp, r.ssrc, payload_type)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rtp::RtpHeader;

    #[test]
    fn continuous_across_a_source_change() {
        let t = Instant::now();
        let mut r = LegRewriter::new(0xAAAA, 1000, 50_000, 8000);
        let a = r.map(7, 900, 1, t);
        assert_eq!(
            (a.sequence, a.timestamp, a.ssrc, a.new_source),
            (1000, 50_000, 0xAAAA, true)
        );
        let b = r.map(8, 1060, 1, t + Duration::from_millis(20));
        assert_eq!(
            (b.sequence, b.timestamp, b.new_source),
            (1001, 50_160, false)
        );
        // A reordered packet maps back without moving the high-water marks.
        let late = r.map(6, 740, 1, t + Duration::from_millis(21));
        assert_eq!((late.sequence, late.timestamp), (999, 49_840));
        // Another source 40 ms later, with unrelated numbering, continues the leg.
        let c = r.map(30_000, 7, 2, t + Duration::from_millis(60));
        assert_eq!(
            (c.sequence, c.timestamp, c.new_source),
            (1002, 50_160 + 320, true)
        );
        let d = r.map(30_001, 167, 2, t + Duration::from_millis(80));
        assert_eq!((d.sequence, d.timestamp), (1003, 50_160 + 320 + 160));
    }

    #[test]
    fn wraps_and_halves_the_clock() {
        let t = Instant::now();
        let mut r =
            LegRewriter::new(5, 65_535, u32::MAX - 100, 16_000).with_clock_rates(16_000, 8000);
        let mut last = r.map(0, u32::MAX - 320, 9, t);
        for i in 1..2000u32 {
            let x = r.map(i as u16, (u32::MAX - 320).wrapping_add(320 * i), 9, t);
            assert_eq!(x.sequence, last.sequence.wrapping_add(1));
            assert_eq!(x.timestamp, last.timestamp.wrapping_add(160));
            last = x;
        }
    }

    #[test]
    fn rewrites_a_packet_in_place() {
        let t = Instant::now();
        let mut buf = [0u8; 20];
        let n = RtpHeader::new(96, 3, 4, 5)
            .write_packet(&[1, 2], &mut buf)
            .unwrap();
        let mut r = LegRewriter::new(0x10, 100, 200, 8000);
        r.rewrite_packet(&mut buf[..n], Some(8), t).unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(
            (
                p.payload_type(),
                p.sequence(),
                p.timestamp(),
                p.ssrc(),
                p.payload()
            ),
            (8, 100, 200, 0x10, &[1u8, 2][..])
        );
        assert!(r.rewrite_packet(&mut [0x80; 5], None, t).is_err());
    }
}
