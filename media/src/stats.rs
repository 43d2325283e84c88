//! Reception statistics of one RTP source (RFC 3550 Appendix A.1, A.3, A.8): sequence
//! validation with probation, wrap-around counting, loss and interarrival jitter, and the
//! report block a receiver sends about it.
//!
//! Sans-IO: arrival time is the `now` the caller passes with each packet.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::rtcp::{ReportBlock, SenderInfo};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The 64-bit NTP timestamp of a wall-clock time (RFC 3550 §4): seconds since 1900 in the
/// high 32 bits, the fraction in the low 32. Times before 1970 count as 1970.
pub fn ntp_timestamp(wall: SystemTime) -> u64 {
    let d = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// What a sender counts for its sender reports (RFC 3550 §6.4.1).
#[derive(Debug, Clone)]
pub struct SenderStats {
    clock_rate: u32,
    packets: u32,
    octets: u32,
    last: Option<(u32, Instant)>,
}

impl SenderStats {
    /// Counters for a stream whose RTP clock runs at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Self {
        SenderStats {
            clock_rate,
            packets: 0,
            octets: 0,
            last: None,
        }
    }

    /// Accounts one packet sent with `payload_len` payload octets (header and padding
    /// excluded, as §6.4.1 counts) and RTP timestamp `rtp_timestamp`.
    pub fn handle_sent(&mut self, payload_len: usize, rtp_timestamp: u32, now: Instant) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last = Some((rtp_timestamp, now));
    }

    /// Packets sent.
    pub fn packets(&self) -> u32 {
        self.packets
    }

    /// The sender info of an SR sent at `now` (wall clock `wall`): the RTP timestamp is the
    /// last one sent advanced by the time since, so receivers can synchronize (§6.4.1).
    pub fn sender_info(&self, wall: SystemTime, now: Instant) -> SenderInfo {
        let rtp_timestamp = match self.last {
            Some((ts, at)) => {
                let d = now.saturating_duration_since(at);
                ts.wrapping_add((d.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32)
            }
            None => 0,
        };
        SenderInfo {
            ntp_timestamp: ntp_timestamp(wall),
            rtp_timestamp,
            packet_count: self.packets,
            octet_count: self.octets,
        }
    }
}

const SEQ_MOD: u32 = 1 << 16;
/// RFC 3550 A.1: a jump of fewer packets ahead is loss, not a restart.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: this many behind is a late or duplicate packet, not a restart.
const MAX_MISORDER: u16 = 100;
/// RFC 3550 A.1: sequential packets needed before a new source is believed.
const MIN_SEQUENTIAL: u8 = 2;

/// What [`ReceiverStats::handle_packet`] made of a packet's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqStatus {
    /// In sequence (or late/duplicate within the misorder window): counted.
    Valid,
    /// The source is still on probation; not counted yet.
    Probation,
    /// A large jump: not counted; if the next packet follows it, the source restarts there.
    Jump,
}

/// Statistics of one source as seen by a receiver.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    started: Option<Instant>,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u8,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<u32>,
    /// Jitter scaled by 16; 64 bits so a pathological stream cannot overflow it.
    jitter_q4: u64,
    last_sr: Option<(u32, Instant)>,
}

impl ReceiverStats {
    /// Statistics for a source whose RTP clock runs at `clock_rate` Hz (8000 for AMR and
    /// G.711, 16000 for AMR-WB); jitter is in these units.
    pub fn new(clock_rate: u32) -> Self {
        ReceiverStats {
            clock_rate,
            started: None,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter_q4: 0,
            last_sr: None,
        }
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Accounts one received packet (RFC 3550 A.1 `update_seq`, A.8 jitter).
    pub fn handle_packet(&mut self, sequence: u16, rtp_timestamp: u32, now: Instant) -> SeqStatus {
        let started = match self.started {
            Some(s) => s,
            None => {
                // RFC 3550 A.1: a new source starts on probation, one below its first packet.
                self.started = Some(now);
                self.init_seq(sequence);
                self.max_seq = sequence.wrapping_sub(1);
                self.probation = MIN_SEQUENTIAL;
                now
            }
        };
        self.update(sequence, rtp_timestamp, now, started)
    }

    fn update(&mut self, seq: u16, ts: u32, now: Instant, started: Instant) -> SeqStatus {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    self.update_jitter(ts, now, started);
                    return SeqStatus::Valid;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqStatus::Probation;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a jump: the sender restarted.
                self.init_seq(seq);
                self.transit = None;
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return SeqStatus::Jump;
            }
        }
        self.received = self.received.wrapping_add(1);
        self.update_jitter(ts, now, started);
        SeqStatus::Valid
    }

    fn update_jitter(&mut self, ts: u32, now: Instant, started: Instant) {
        let elapsed = now.saturating_duration_since(started);
        let arrival = (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(ts);
        if let Some(prev) = self.transit {
            let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            // RFC 3550 A.8: J += (|D| - J) / 16, kept scaled by 16 to stay in integers.
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Packets counted as received.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The extended highest sequence number: wrap count in the high 16 bits.
    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected from the first valid one to the highest.
    pub fn expected(&self) -> u32 {
        if self.received == 0 && self.probation > 0 {
            return 0;
        }
        self.extended_max_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Cumulative packets lost (negative when duplicates outnumber losses).
    pub fn lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// Interarrival jitter as a duration.
    pub fn jitter_duration(&self) -> Duration {
        Duration::from_nanos(
            u64::from(self.jitter()) * 1_000_000_000 / u64::from(self.clock_rate.max(1)),
        )
    }

    /// Remembers an SR from this source so the next report block carries LSR and DLSR.
    pub fn handle_sender_report(&mut self, compact_ntp: u32, now: Instant) {
        self.last_sr = Some((compact_ntp, now));
    }

    /// The report block about this source (RFC 3550 A.3); starts a new interval for the
    /// fraction lost.
    pub fn report_block(&mut self, ssrc: u32, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (
                    lsr,
                    (d.as_nanos() * 65536 / 1_000_000_000).min(u128::from(u32::MAX)) as u32,
                )
            }
            None => (0, 0),
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            extended_highest_seq: self.extended_max_seq(),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn in_order_stream_after_probation() {
        let t = t0();
        let mut s = ReceiverStats::new(8000);
        assert_eq!(s.handle_packet(100, 0, t), SeqStatus::Probation);
        for i in 1..50u16 {
            let at = t + Duration::from_millis(20 * u64::from(i));
            assert_eq!(
                s.handle_packet(100 + i, 160 * u32::from(i), at),
                SeqStatus::Valid
            );
        }
        assert_eq!(s.received(), 49);
        assert_eq!(s.expected(), 49);
        assert_eq!(s.lost(), 0);
        // Perfectly paced: no jitter.
        assert_eq!(s.jitter(), 0);
        let b = s.report_block(5, t + Duration::from_secs(1));
        assert_eq!(
            (b.fraction_lost, b.cumulative_lost, b.extended_highest_seq),
            (0, 0, 149)
        );
    }

    #[test]
    fn loss_fraction_and_wrap() {
        let t = t0();
        let mut s = ReceiverStats::new(8000);
        // Start near the wrap, lose every 4th packet over 400 packets.
        let mut seq: u16 = 65_500;
        for i in 0..400u32 {
            if i < 2 || i % 4 != 3 {
                s.handle_packet(seq, i * 160, t + Duration::from_millis(20 * u64::from(i)));
            }
            seq = seq.wrapping_add(1);
        }
        // Base is 65501 (the packet that ended probation); the last one sent (i = 399) was
        // lost, so the highest is 65500 + 398: 398 expected, 299 received.
        assert_eq!(s.extended_max_seq(), 65_500 + 398);
        assert_eq!(s.expected(), 398);
        assert_eq!(s.lost(), 99);
        let b = s.report_block(1, t);
        // 99 of 398 lost = 63.7/256.
        assert_eq!(b.fraction_lost, 63);
        assert_eq!(b.cumulative_lost, 99);
        assert_eq!(b.extended_highest_seq >> 16, 1);
        // Nothing new: the next interval reports no loss.
        assert_eq!(s.report_block(1, t).fraction_lost, 0);
    }

    #[test]
    fn jitter_follows_rfc_a8() {
        let t = t0();
        let mut s = ReceiverStats::new(8000);
        // Packets every 20 ms in timestamp, arriving alternately 0 and 10 ms late:
        // |D| is 80 timestamp units every packet, so J converges toward 80.
        for i in 0..400u32 {
            let late = if i % 2 == 0 { 0 } else { 10 };
            s.handle_packet(
                i as u16,
                i * 160,
                t + Duration::from_millis(u64::from(i) * 20 + late),
            );
        }
        assert!((78..=80).contains(&s.jitter()), "{}", s.jitter());
        assert!((9..=10).contains(&s.jitter_duration().as_millis()));
    }

    #[test]
    fn restart_after_two_sequential_packets_past_a_jump() {
        let t = t0();
        let mut s = ReceiverStats::new(8000);
        for i in 0..10u16 {
            s.handle_packet(i, 0, t);
        }
        assert_eq!(s.handle_packet(40_000, 0, t), SeqStatus::Jump);
        assert_eq!(s.handle_packet(40_001, 0, t), SeqStatus::Valid);
        assert_eq!(s.received(), 1);
        assert_eq!(s.expected(), 1);
        // A late or duplicate packet within the misorder window is counted.
        assert_eq!(s.handle_packet(40_001, 0, t), SeqStatus::Valid);
        assert_eq!(s.lost(), -1);
    }

    proptest::proptest! {
        #[test]
        fn any_arrival_pattern_is_accounted_without_panic(
            packets in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<u32>(), 0u64..100_000), 0..200),
        ) {
            let t = t0();
            let mut s = ReceiverStats::new(8000);
            let mut at = t;
            let mut counted = 0u32;
            for (seq, ts, dt) in &packets {
                at += Duration::from_micros(*dt);
                if s.handle_packet(*seq, *ts, at) == SeqStatus::Valid {
                    counted += 1;
                }
                let _ = s.report_block(1, at);
            }
            // Restarts reset the count, so it can only be lower than the valid packets.
            proptest::prop_assert!(s.received() <= counted);
        }
    }

    #[test]
    fn sender_counts_and_ntp() {
        let t = t0();
        let mut s = SenderStats::new(8000);
        s.handle_sent(32, 1000, t);
        s.handle_sent(32, 1160, t + Duration::from_millis(20));
        // 2026-12-07 00:00:00.5 UTC is 1796601600.5 s after 1970.
        let wall = UNIX_EPOCH + Duration::from_millis(1_796_601_600_500);
        let info = s.sender_info(wall, t + Duration::from_millis(30));
        assert_eq!(
            (info.packet_count, info.octet_count, info.rtp_timestamp),
            (2, 64, 1240)
        );
        assert_eq!(
            info.ntp_timestamp,
            ((1_796_601_600 + NTP_UNIX_OFFSET) << 32) | 0x8000_0000
        );
        assert_eq!(s.packets(), 2);
        // The SR's compact NTP is what the receiver echoes as LSR.
        let mut r = ReceiverStats::new(8000);
        r.handle_sender_report(info.compact_ntp(), t);
        assert_eq!(r.report_block(1, t).last_sr, info.compact_ntp());
    }

    #[test]
    fn lsr_and_dlsr() {
        let t = t0();
        let mut s = ReceiverStats::new(8000);
        s.handle_sender_report(0xABCD_0000, t);
        let b = s.report_block(3, t + Duration::from_millis(500));
        assert_eq!((b.last_sr, b.delay_since_last_sr), (0xABCD_0000, 32768));
    }
}
