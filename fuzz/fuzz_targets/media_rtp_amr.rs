//! RTP, RTCP, telephone-event and AMR payload parsing (`media` crate): typed errors only,
//! whatever parses writes back to something that parses the same, and an AMR payload
//! converted to the other payload format and back is what writing it directly gives.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::amr::{AmrFormat, AmrPayload, StorageFrames, CMR_NONE};
use media::rewrite::LegRewriter;
use media::rtcp::{Compound, RtcpPacket, RtcpWriter};
use media::rtp::RtpPacket;
use media::telephone_event::TelephoneEvent;
use sdp::AmrKind;
use std::time::Instant;

const FORMATS: [AmrFormat; 4] = [
    AmrFormat::octet_aligned(AmrKind::Nb),
    AmrFormat::bandwidth_efficient(AmrKind::Nb),
    AmrFormat::octet_aligned(AmrKind::Wb),
    AmrFormat::bandwidth_efficient(AmrKind::Wb),
];

fn amr(payload: &[u8]) {
    for from in FORMATS {
        let Ok(p) = AmrPayload::parse(from, payload) else {
            continue;
        };
        assert_eq!(p.frames().count(), p.len());
        // A reserved CMR parses but is no request; ours is then "none".
        let cmr = p.mode_request().unwrap_or(CMR_NONE);
        let mut direct = vec![0u8; payload.len() + 8];
        let n = p
            .write(from, cmr, &mut direct)
            .expect("rewrite in own format");
        for to in FORMATS.into_iter().filter(|f| f.kind == from.kind) {
            let mut other = vec![0u8; payload.len() + 2 * p.len() + 8];
            let m = p.write(to, cmr, &mut other).expect("convert");
            let q = AmrPayload::parse(to, &other[..m]).expect("own output parses");
            assert_eq!((q.mode_request(), q.len()), (p.mode_request(), p.len()));
            for (a, b) in p.frames().zip(q.frames()) {
                assert_eq!(
                    (a.frame_type(), a.quality(), a.bit_len()),
                    (b.frame_type(), b.quality(), b.bit_len())
                );
                assert!((0..a.bit_len()).all(|i| a.bit(i) == b.bit(i)));
            }
            let mut back = vec![0u8; n];
            let k = q.write(from, cmr, &mut back).expect("convert back");
            assert_eq!(&back[..k], &direct[..n]);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        let mut out = vec![0u8; data.len()];
        let n = p
            .header()
            .write_packet_padded(p.payload(), p.padding(), &mut out)
            .expect("a parsed packet fits its own length");
        assert_eq!(n, data.len());
        let again = RtpPacket::parse(&out).expect("own output parses");
        assert_eq!(again.header(), p.header());
        assert_eq!(again.payload(), p.payload());
        amr(p.payload());
        let _ = TelephoneEvent::parse(p.payload());
    }

    if let Ok(c) = Compound::parse(data) {
        let mut out = vec![0u8; data.len() + 64];
        let mut w = RtcpWriter::new(&mut out);
        for packet in c.packets() {
            match packet {
                RtcpPacket::SenderReport(sr) => {
                    let blocks: Vec<_> = sr.blocks.iter().collect();
                    w.sender_report(sr.ssrc, &sr.info, &blocks)
                        .expect("SR fits");
                }
                RtcpPacket::ReceiverReport(rr) => {
                    let blocks: Vec<_> = rr.blocks.iter().collect();
                    w.receiver_report(rr.ssrc, &blocks).expect("RR fits");
                }
                RtcpPacket::Sdes(s) => {
                    for chunk in s.chunks() {
                        let _ = chunk.items().count();
                        let _ = chunk.cname();
                    }
                }
                RtcpPacket::Bye(b) => {
                    let _ = (b.ssrcs().count(), b.reason);
                }
                RtcpPacket::Other { .. } => {}
            }
        }
        // The reports re-written without extensions, SDES or BYE still form a compound.
        let len = w.len();
        assert!(Compound::parse(&out[..len]).is_ok());

        // Relaying through a B2BUA leg rewrites in place and keeps the compound valid.
        let now = Instant::now();
        let mut fwd = LegRewriter::new(0xB0, 1, 2, 8000);
        let mut rev = LegRewriter::new(0xA0, 3, 4, 8000);
        let first = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        fwd.map(5, 6, first, now);
        rev.map(7, 8, first ^ 1, now);
        let mut relayed = data.to_vec();
        fwd.rewrite_rtcp(&mut relayed, &rev)
            .expect("valid compound rewrites");
        assert_eq!(
            Compound::parse(&relayed).map(|c| c.packets().count()),
            Ok(c.packets().count())
        );
    }

    amr(data);
    if let Ok(frames) = StorageFrames::parse(data) {
        for f in frames.flatten() {
            let mut out = [0u8; 64];
            media::amr::write_storage_frame(&f, &mut out).expect("a frame fits 61 octets");
        }
    }
});
