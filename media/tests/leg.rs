//! The pieces of a media leg working together, as the UE simulator and the AMR ⇄ PCMA
//! bridge use them: packets written by one side, rewritten by a relay, and read back by the
//! other with the audio, the AMR frames and the DTMF digit intact.

use std::time::{Duration, Instant};

use media::amr::{self, AmrFormat, AmrFrame, AmrPayload, StorageFrames};
use media::g711;
use media::rewrite::LegRewriter;
use media::rtcp::{Compound, RtcpPacket, RtcpWriter};
use media::rtp::{RtpHeader, RtpPacket};
use media::stats::{ReceiverStats, SeqStatus};
use media::telephone_event::TelephoneEvent;
use media::tone::{measure, ToneGenerator};
use sdp::{AmrKind, AmrParams};

const PCMA: u8 = 8;

#[test]
fn a_pcma_tone_survives_relay_loss_and_reordering() {
    let t0 = Instant::now();
    let mut tone = ToneGenerator::new(1000.0, -20.0, 8000).unwrap();
    let mut pcm = [0i16; 160];
    let mut codes = [0u8; 160];
    // The sender's packets, 50 of them (1 s).
    let mut sent: Vec<(Vec<u8>, Instant)> = Vec::new();
    for i in 0..50u16 {
        tone.fill(&mut pcm);
        g711::alaw_encode_slice(&pcm, &mut codes).unwrap();
        let mut h = RtpHeader::new(
            PCMA,
            65_520u16.wrapping_add(i),
            1_000 + 160 * u32::from(i),
            0x1111,
        );
        h.marker = i == 0;
        let mut buf = [0u8; 200];
        let n = h.write_packet(&codes, &mut buf).unwrap();
        sent.push((
            buf[..n].to_vec(),
            t0 + Duration::from_millis(20 * u64::from(i)),
        ));
    }
    // The network loses packet 20 and swaps 30 and 31.
    sent.remove(20);
    sent.swap(29, 30);

    // The relay gives the far leg its own SSRC and numbering.
    let mut leg = LegRewriter::new(0x2222, 7, 90_000, 8000);
    let mut stats = ReceiverStats::new(8000);
    let mut audio = vec![0i16; 50 * 160];
    for (mut packet, at) in sent {
        let r = leg.rewrite_packet(&mut packet, None, at).unwrap();
        assert_eq!(r.ssrc, 0x2222);
        let p = RtpPacket::parse(&packet).unwrap();
        assert_eq!((p.ssrc(), p.payload_type()), (0x2222, PCMA));
        if stats.handle_packet(p.sequence(), p.timestamp(), at) == SeqStatus::Probation {
            assert!(p.marker());
        }
        // Place the samples by timestamp, as a playout buffer would.
        let offset = p.timestamp().wrapping_sub(90_000) as usize;
        g711::alaw_decode_slice(p.payload(), &mut audio[offset..offset + 160]).unwrap();
    }
    // Measure on the part after the lost packet's gap so the silence does not count.
    let m = measure(&audio[21 * 160..], 8000).unwrap();
    assert!(m.is_within(1000.0, 0.02, -20.0, 3.0), "{m:?}");

    // The receiver's report on the far leg says one packet was lost.
    assert_eq!(stats.lost(), 1);
    let block = stats.report_block(0x2222, t0 + Duration::from_secs(1));
    let mut rtcp = [0u8; 128];
    let mut w = RtcpWriter::new(&mut rtcp);
    w.receiver_report(0x3333, &[block]).unwrap();
    w.sdes_cname(0x3333, b"phone@lab").unwrap();
    let n = w.len();
    let c = Compound::parse(&rtcp[..n]).unwrap();
    let Some(RtcpPacket::ReceiverReport(rr)) = c.packets().next() else {
        panic!("no RR")
    };
    let b = rr.blocks.iter().next().unwrap();
    assert_eq!((b.ssrc, b.cumulative_lost), (0x2222, 1));
    // 1 of 49 expected since the source was validated: 5/256.
    assert_eq!(b.fraction_lost, 5);
    assert_eq!(b.extended_highest_seq, 7 + 49);
}

/// A storage file with every frame type of `kind` (speech bits from a counter).
fn storage_file(kind: AmrKind) -> Vec<u8> {
    let mut file = match kind {
        AmrKind::Nb => amr::STORAGE_MAGIC_NB.to_vec(),
        AmrKind::Wb => amr::STORAGE_MAGIC_WB.to_vec(),
    };
    let mut x = 0x5Au8;
    let types = (0..=amr::sid_frame_type(kind)).chain([amr::FT_NO_DATA]);
    for ft in types {
        let bits = amr::frame_bits(kind, ft).unwrap();
        let mut speech: Vec<u8> = (0..bits.div_ceil(8))
            .map(|_| {
                x = x.wrapping_mul(29).wrapping_add(7);
                x
            })
            .collect();
        if bits % 8 != 0 {
            if let Some(last) = speech.last_mut() {
                *last &= 0xFF << (8 - bits % 8);
            }
        }
        let f = AmrFrame::from_octets(kind, ft, true, &speech).unwrap();
        let mut buf = [0u8; 64];
        let n = amr::write_storage_frame(&f, &mut buf).unwrap();
        file.extend_from_slice(&buf[..n]);
    }
    file
}

#[test]
fn amr_frames_from_a_file_cross_an_octet_align_mismatch() {
    for kind in [AmrKind::Nb, AmrKind::Wb] {
        let t0 = Instant::now();
        let file = storage_file(kind);
        // The caller's SDP says octet-align=1, the callee's says nothing (bandwidth-efficient).
        let caller = AmrFormat::from_params(kind, &AmrParams::octet_aligned_format()).unwrap();
        let callee = AmrFormat::from_params(kind, &AmrParams::bandwidth_efficient()).unwrap();
        let mut leg = LegRewriter::new(0xBEEF, 1, 1, kind.clock_rate());
        let mut received = match kind {
            AmrKind::Nb => amr::STORAGE_MAGIC_NB.to_vec(),
            AmrKind::Wb => amr::STORAGE_MAGIC_WB.to_vec(),
        };
        let frames = StorageFrames::parse(&file).unwrap();
        assert_eq!(frames.kind(), kind);
        for (i, f) in frames.enumerate() {
            let f = f.unwrap();
            // UE: one frame per packet, octet-aligned, no mode request.
            let mut packet = [0u8; 128];
            let h = RtpHeader::new(99, i as u16, (i * 160) as u32, 0xCAFE);
            let at = h.write(&mut packet).unwrap();
            let len = amr::pack(caller, amr::CMR_NONE, [f], &mut packet[at..]).unwrap();
            let wire = &packet[..at + len];

            // Bridge: re-frame for the callee, asking it for the highest mode.
            let p = RtpPacket::parse(wire).unwrap();
            let payload = AmrPayload::parse(caller, p.payload()).unwrap();
            let r = leg.map(p.sequence(), p.timestamp(), p.ssrc(), t0);
            let mut out = [0u8; 128];
            let at = RtpHeader::new(97, r.sequence, r.timestamp, r.ssrc)
                .write(&mut out)
                .unwrap();
            let len = payload
                .write(callee, kind.max_mode(), &mut out[at..])
                .unwrap();
            if f.bit_len() > 0 {
                // Bandwidth-efficient is never longer.
                assert!(len <= p.payload().len(), "{kind:?} FT {}", f.frame_type());
            }

            // Callee: read the frame back into a storage file.
            let q = RtpPacket::parse(&out[..at + len]).unwrap();
            assert_eq!(q.payload_type(), 97);
            let got = AmrPayload::parse(callee, q.payload()).unwrap();
            assert_eq!(got.cmr(), kind.max_mode());
            for g in got.frames() {
                let mut buf = [0u8; 64];
                let n = amr::write_storage_frame(&g, &mut buf).unwrap();
                received.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(received, file, "{kind:?}");
    }
}

#[test]
fn a_dtmf_digit_crosses_from_16000_to_8000_hz() {
    let t0 = Instant::now();
    // AMR-WB leg at 16000 Hz; telephone-event/16000 shares its SSRC and clock.
    let mut leg = LegRewriter::new(0x88, 500, 10_000, 16_000).with_clock_rates(16_000, 8000);
    // Audio first, so the mapping exists: one packet at timestamp 3200.
    leg.map(1, 3_200, 0x16, t0);
    // Digit 7 starting at timestamp 3520: updates every 20 ms, then three end packets.
    let durations = [320u16, 640, 960, 1280, 1280, 1280];
    let mut seen = Vec::new();
    for (i, &d) in durations.iter().enumerate() {
        let e = TelephoneEvent {
            event: TelephoneEvent::event_of_digit('7').unwrap(),
            end: i >= 3,
            volume: 10,
            duration: d,
        };
        let mut payload = [0u8; 4];
        e.write(&mut payload).unwrap();
        let mut packet = [0u8; 64];
        let mut h = RtpHeader::new(101, 2 + i as u16, 3_520, 0x16);
        h.marker = i == 0;
        let n = h.write_packet(&payload, &mut packet).unwrap();

        let at = t0 + Duration::from_millis(20 * (i as u64 + 1));
        let r = leg.rewrite_packet(&mut packet[..n], Some(100), at).unwrap();
        let p = RtpPacket::parse(&packet[..n]).unwrap();
        let ev = TelephoneEvent::parse(p.payload())
            .unwrap()
            .with_clock_rate(16_000, 8000)
            .unwrap();
        seen.push((
            r.sequence,
            p.timestamp(),
            p.marker(),
            ev.digit(),
            ev.end,
            ev.duration,
        ));
    }
    // 320 units at 16 kHz after the audio packet is 160 at 8 kHz; every packet of the event
    // keeps the event's timestamp; durations halve.
    let want: Vec<_> = durations
        .iter()
        .enumerate()
        .map(|(i, &d)| (501 + i as u16, 10_160, i == 0, Some('7'), i >= 3, d / 2))
        .collect();
    assert_eq!(seen, want);
}
