//! The per-leg RTP rewriter of a B2BUA: each leg sees one SSRC with continuous sequence
//! numbers and timestamps, whatever happens on the other leg (source changes after a
//! re-INVITE, a switch between relaying and transcoding, a different clock rate).
//!
//! RFC 3550 §8.2 and §5.1: a receiver treats a new SSRC as a new source and expects
//! sequence numbers and timestamps to continue from where they were; RFC 7667 §3.2.1.3
//! (media translator) is the topology this implements.

use std::time::Instant;

use crate::rtcp::{Compound, RtcpError, PT_BYE, PT_RR, PT_SDES, PT_SR};
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
        let (out_ts, d, exact) = self.scale(&m, timestamp);
        // Move the base forward when the scaling is exact so the 32-bit difference never
        // wraps however long the call lasts.
        if d > 0 && exact {
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

    /// The outgoing timestamp for `timestamp` of the current source, the signed input
    /// distance from the base, and whether the scaling was exact.
    fn scale(&self, m: &Mapping, timestamp: u32) -> (u32, i64, bool) {
        let d = i64::from(timestamp.wrapping_sub(m.base_in_ts) as i32);
        // 128 bits: a 31-bit distance times a 32-bit rate does not fit 63.
        let scaled = i128::from(d) * i128::from(self.out_rate);
        let out = m
            .base_out_ts
            .wrapping_add((scaled / i128::from(self.in_rate)) as u32);
        (out, d, scaled % i128::from(self.in_rate) == 0)
    }

    /// The SSRC of the source currently mapped (what the other leg's peer sends as).
    pub fn source_ssrc(&self) -> Option<u32> {
        self.map.map(|m| m.in_ssrc)
    }

    /// The outgoing timestamp for an incoming `timestamp` of the current source, without
    /// accounting a packet (for the RTP timestamp of a relayed SR).
    pub fn map_timestamp(&self, timestamp: u32) -> Option<u32> {
        self.map.map(|m| self.scale(&m, timestamp).0)
    }

    /// The incoming sequence number an outgoing one was mapped from (for the extended
    /// highest sequence number of a report about this leg's stream).
    pub fn unmap_sequence(&self, sequence: u16) -> Option<u16> {
        self.map.map(|m| sequence.wrapping_sub(m.seq_delta))
    }

    /// Rewrites a received RTCP compound in place for relaying it to the other leg
    /// (RFC 3550 §7.2, translator): the sender's SSRC in SR, RR, SDES and BYE becomes this
    /// leg's, and an SR's RTP timestamp follows the same mapping as its RTP. Report blocks
    /// describe the stream the peer received from us, which `reverse` (the rewriter of the
    /// opposite direction) produced: their SSRC and extended highest sequence number go
    /// back to that stream's original source. Everything else is left as received; the
    /// compound is validated first and left untouched when malformed.
    pub fn rewrite_rtcp(&self, buf: &mut [u8], reverse: &LegRewriter) -> Result<(), RtcpError> {
        Compound::parse(buf)?;
        let mut at = 0;
        while at + 4 <= buf.len() {
            let count = usize::from(buf[at] & 0x1f);
            let pt = buf[at + 1];
            let len = (usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])) + 1) * 4;
            let packet = &mut buf[at..at + len];
            let blocks_at = match pt {
                PT_SR => {
                    self.map_sender(packet, 4);
                    if let Some(ts) = self.map_timestamp(read32(packet, 16)) {
                        packet[16..20].copy_from_slice(&ts.to_be_bytes());
                    }
                    Some(28)
                }
                PT_RR => {
                    self.map_sender(packet, 4);
                    Some(8)
                }
                PT_SDES => {
                    // Chunks were validated: walk SSRC, items to the null octet, padding.
                    let mut c = 4;
                    for _ in 0..count {
                        self.map_sender(packet, c);
                        let mut i = c + 4;
                        while packet[i] != 0 {
                            i += 2 + usize::from(packet[i + 1]);
                        }
                        c = (i + 1).div_ceil(4) * 4;
                    }
                    None
                }
                PT_BYE => {
                    for k in 0..count {
                        self.map_sender(packet, 4 + 4 * k);
                    }
                    None
                }
                _ => None,
            };
            if let Some(b) = blocks_at {
                for k in 0..count {
                    reverse.unmap_block(&mut packet[b + 24 * k..b + 24 * (k + 1)]);
                }
            }
            at += len;
        }
        Ok(())
    }

    fn map_sender(&self, packet: &mut [u8], at: usize) {
        if self.source_ssrc() == Some(read32(packet, at)) {
            packet[at..at + 4].copy_from_slice(&self.out_ssrc.to_be_bytes());
        }
    }

    fn unmap_block(&self, block: &mut [u8]) {
        let (Some(source), true) = (self.source_ssrc(), read32(block, 0) == self.out_ssrc) else {
            return;
        };
        block[0..4].copy_from_slice(&source.to_be_bytes());
        let ext = read32(block, 8);
        if let Some(seq) = self.unmap_sequence(ext as u16) {
            // Keep the cycle count; a wrap between the two numberings is off by one cycle
            // at most for one report, which receivers tolerate like any late report.
            block[8..12].copy_from_slice(&((ext & 0xFFFF_0000) | u32::from(seq)).to_be_bytes());
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

fn read32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rtcp::{ReportBlock, RtcpPacket, RtcpWriter, SenderInfo};
    use crate::rtp::RtpHeader;

    proptest::proptest! {
        #[test]
        fn any_input_maps_without_panic_and_in_order_stays_in_order(
            rates in (1u32..=u32::MAX, 1u32..=u32::MAX),
            packets in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<u32>(), 0u32..3), 1..100),
        ) {
            let t = Instant::now();
            let mut r = LegRewriter::new(1, 2, 3, 8000).with_clock_rates(rates.0, rates.1);
            let mut last: Option<(u32, u16, Rewritten)> = None;
            for (seq, ts, ssrc) in packets {
                let x = r.map(seq, ts, ssrc, t);
                if let Some((s0, q0, prev)) = last {
                    if s0 == ssrc {
                        proptest::prop_assert_eq!(x.sequence.wrapping_sub(prev.sequence), seq.wrapping_sub(q0));
                    } else {
                        proptest::prop_assert!(x.new_source);
                    }
                }
                last = Some((ssrc, seq, x));
            }
        }
    }

    #[test]
    fn relays_rtcp_between_legs() {
        let t = Instant::now();
        // A sends as 0xA (seq 10, ts 1000) toward B; we send it to B as 0xB0 from 500/9000.
        let mut a_to_b = LegRewriter::new(0xB0, 500, 9000, 8000);
        a_to_b.map(10, 1000, 0xA, t);
        // B sends as 0xB (seq 70); we send it to A as 0xA0 starting at seq 40000.
        let mut b_to_a = LegRewriter::new(0xA0, 40_000, 0, 8000);
        b_to_a.map(70, 0, 0xB, t);
        b_to_a.map(71, 160, 0xB, t);

        // A's SR reports on what it received from us: SSRC 0xA0 up to seq 40001.
        let info = SenderInfo {
            ntp_timestamp: 1 << 32,
            rtp_timestamp: 1160,
            packet_count: 2,
            octet_count: 64,
        };
        let block = ReportBlock {
            ssrc: 0xA0,
            extended_highest_seq: 0x0001_0000 | 40_001,
            jitter: 3,
            ..ReportBlock::default()
        };
        let mut buf = [0u8; 128];
        let mut w = RtcpWriter::new(&mut buf);
        w.sender_report(0xA, &info, &[block]).unwrap();
        w.sdes_cname(0xA, b"a@lab").unwrap();
        w.bye(&[0xA], None).unwrap();
        let n = w.len();
        a_to_b.rewrite_rtcp(&mut buf[..n], &b_to_a).unwrap();

        let c = Compound::parse(&buf[..n]).unwrap();
        let p: Vec<_> = c.packets().collect();
        let RtcpPacket::SenderReport(sr) = p[0] else {
            panic!()
        };
        assert_eq!((sr.ssrc, sr.info.rtp_timestamp), (0xB0, 9160));
        let b = sr.blocks.iter().next().unwrap();
        // Back to B's own numbering: B's source 0xB, seq 71, the cycle count kept.
        assert_eq!(
            (b.ssrc, b.extended_highest_seq, b.jitter),
            (0xB, 0x0001_0000 | 71, 3)
        );
        let RtcpPacket::Sdes(s) = p[1] else { panic!() };
        assert_eq!(
            s.chunks().next().map(|c| (c.ssrc, c.cname())),
            Some((0xB0, Some(&b"a@lab"[..])))
        );
        let RtcpPacket::Bye(bye) = p[2] else { panic!() };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), [0xB0]);

        // Garbage is refused and left alone.
        let mut junk = [0x80, 202, 0, 0];
        assert!(a_to_b.rewrite_rtcp(&mut junk, &b_to_a).is_err());
        assert_eq!(junk, [0x80, 202, 0, 0]);
    }

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
