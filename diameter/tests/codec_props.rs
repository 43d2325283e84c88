//! Codec properties: round trips, byte-exact vectors built from the RFC 6733 / TS 29.229
//! layouts, and arbitrary bytes never panicking the decoder or the peer.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use diameter::{app, avp, cmd, Avp, AvpType, FindAvp, Message, Peer, PeerConfig, VENDOR_3GPP};
use proptest::prelude::*;

fn arb_avp() -> impl Strategy<Value = Avp> {
    (
        any::<u32>(),
        prop_oneof![Just(0u32), Just(VENDOR_3GPP), 1u32..],
        prop_oneof![Just(0u8), Just(0x40), Just(0x20), Just(0x60)],
        proptest::collection::vec(any::<u8>(), 0..48),
    )
        .prop_filter("not a known grouped AVP", |(code, vendor, _, _)| {
            diameter::dict::lookup_avp(*code, *vendor).is_none_or(|d| d.ty != AvpType::Grouped)
        })
        .prop_map(|(code, vendor, flags, data)| Avp::raw(code, vendor, flags, data))
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![
            Just(0x80u8),
            Just(0xc0),
            Just(0x40),
            Just(0x60),
            Just(0x00),
            Just(0x90)
        ],
        0u32..0x0100_0000,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(arb_avp(), 0..12),
        proptest::collection::vec(arb_avp(), 0..4),
    )
        .prop_map(|(flags, code, app_id, hbh, e2e, avps, kids)| {
            let mut m = Message {
                flags,
                code,
                app_id,
                hop_by_hop: hbh,
                end_to_end: e2e,
                avps,
            };
            if !kids.is_empty() {
                m.add(Avp::grouped(
                    avp::SIP_AUTH_DATA_ITEM,
                    [Avp::grouped(avp::PROXY_INFO, kids)],
                ));
            }
            m
        })
}

proptest! {
    #[test]
    fn message_round_trip(m in arb_message()) {
        let w = m.encode();
        prop_assert_eq!(w.len(), m.encoded_len());
        prop_assert_eq!(w.len() % 4, 0);
        let d = Message::decode(w.clone()).unwrap();
        prop_assert_eq!(&d, &m);
        prop_assert_eq!(d.encode(), w);
    }

    #[test]
    fn typed_values_round_trip(u in any::<u32>(), i in any::<i32>(), l in any::<i64>(), q in any::<u64>(),
                               s in ".{0,40}", v4 in any::<[u8; 4]>(), v6 in any::<[u8; 16]>(),
                               secs in 0u64..4_000_000_000) {
        prop_assert_eq!(Avp::u32(avp::RESULT_CODE, u).as_u32().unwrap(), u);
        prop_assert_eq!(Avp::i32(avp::DISCONNECT_CAUSE, i).as_i32().unwrap(), i);
        prop_assert_eq!(Avp::i64(avp::ACCOUNTING_SUB_SESSION_ID, l).as_i64().unwrap(), l);
        prop_assert_eq!(Avp::u64(avp::ACCOUNTING_SUB_SESSION_ID, q).as_u64().unwrap(), q);
        let sa = Avp::utf8(avp::SESSION_ID, &s);
        prop_assert_eq!(sa.as_utf8().unwrap(), s.as_str());
        let a4 = std::net::IpAddr::from(v4);
        prop_assert_eq!(Avp::address(avp::HOST_IP_ADDRESS, a4).as_address().unwrap(), a4);
        let a6 = std::net::IpAddr::from(v6);
        prop_assert_eq!(Avp::address(avp::HOST_IP_ADDRESS, a6).as_address().unwrap(), a6);
        // NTP era 0 covers 1968..2036, era 1 from 2036 to 2104: representable span.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        prop_assert_eq!(Avp::time(avp::EVENT_TIMESTAMP, t).as_time().unwrap(), t);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::decode(b.clone());
        let _ = diameter::frame_length(&b, 4096);
        let _ = Avp::decode(&Bytes::from(b.clone()));
        if let Ok(m) = Message::decode(b) {
            for a in &m.avps {
                let _ = a.value();
                let _ = format!("{a:?}");
            }
        }
    }

    #[test]
    fn plausible_headers_with_random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400), flags in any::<u8>()) {
        let len = 20 + body.len() / 4 * 4;
        let mut w = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8, flags, 0, 1, 0x2f, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        w.extend_from_slice(&body[..len - 20]);
        if let Ok(m) = Message::decode(w) {
            for a in &m.avps {
                let _ = a.value();
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_peer(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6),
                                            open_first in any::<bool>()) {
        let now = Instant::now();
        let mut c = Peer::connect(Arc::new(PeerConfig::cx("c.lab", "lab")), now, 1, None);
        let mut s = Peer::accept(Arc::new(PeerConfig::cx("s.lab", "lab")), now, 2, None);
        if open_first {
            let cer = c.poll_transmit().unwrap();
            s.handle_bytes(now, &cer);
            let cea = s.poll_transmit().unwrap();
            c.handle_bytes(now, &cea);
        }
        for ch in &chunks {
            let mut framed = ch.clone();
            if framed.len() >= 4 {
                framed[0] = 1;
            }
            s.handle_bytes(now, &framed);
            c.handle_bytes(now, ch);
            while s.poll_event().is_some() {}
            while c.poll_event().is_some() {}
            if let Some(out) = s.poll_transmit() {
                // Whatever the peer answers must itself be decodable.
                let mut rest = &out[..];
                while let Ok(Some(n)) = diameter::frame_length(rest, 1 << 24) {
                    prop_assert!(Message::decode_slice(&rest[..n]).is_ok());
                    rest = &rest[n..];
                }
            }
        }
        s.handle_timeout(now + std::time::Duration::from_secs(100));
        c.handle_timeout(now + std::time::Duration::from_secs(100));
    }
}

/// A Cx SIP-Auth-Data-Item as an HSS sends it in an MAA, laid out by hand from
/// RFC 6733 §4.1 (AVP header) and TS 29.229 §6.3 (codes, V and M flags, vendor 10415).
#[test]
fn byte_exact_sip_auth_data_item() {
    let item = Avp::grouped(
        avp::SIP_AUTH_DATA_ITEM,
        [
            Avp::u32(avp::SIP_ITEM_NUMBER, 1),
            Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, "Digest-AKAv1-MD5"),
        ],
    );
    let mut w = Vec::new();
    item.encode_into(&mut w);
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        // SIP-Auth-Data-Item 612, flags V|M, length 12 + 16 + 28 = 56, vendor 10415
        0x00, 0x00, 0x02, 0x64, 0xc0, 0x00, 0x00, 0x38, 0x00, 0x00, 0x28, 0xaf,
        // SIP-Item-Number 613 = 1
        0x00, 0x00, 0x02, 0x65, 0xc0, 0x00, 0x00, 0x10, 0x00, 0x00, 0x28, 0xaf,
        0x00, 0x00, 0x00, 0x01,
        // SIP-Authentication-Scheme 608, length 12 + 16 = 28
        0x00, 0x00, 0x02, 0x60, 0xc0, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x28, 0xaf,
        b'D', b'i', b'g', b'e', b's', b't', b'-', b'A', b'K', b'A', b'v', b'1', b'-', b'M', b'D', b'5',
    ];
    assert_eq!(w, want);
}

/// A DWR as RFC 6733 §5.5.1 describes it: header (version 1, R flag, code 280, app 0)
/// followed by Origin-Host and Origin-Realm, each padded to 4 bytes.
#[test]
fn byte_exact_dwr() {
    let mut dwr = Message::request(app::COMMON, cmd::DEVICE_WATCHDOG)
        .with(Avp::utf8(avp::ORIGIN_HOST, "a.b"))
        .with(Avp::utf8(avp::ORIGIN_REALM, "b"));
    dwr.hop_by_hop = 0x0102_0304;
    dwr.end_to_end = 0x0a0b_0c0d;
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        0x01, 0x00, 0x00, 0x2c, 0x80, 0x00, 0x01, 0x18, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d,
        // Origin-Host 264, M, length 11, "a.b" + 1 pad byte
        0x00, 0x00, 0x01, 0x08, 0x40, 0x00, 0x00, 0x0b, b'a', b'.', b'b', 0x00,
        // Origin-Realm 296, M, length 9, "b" + 3 pad bytes
        0x00, 0x00, 0x01, 0x28, 0x40, 0x00, 0x00, 0x09, b'b', 0x00, 0x00, 0x00,
    ];
    assert_eq!(dwr.encode(), want);
    let d = Message::decode(want).unwrap();
    assert_eq!(d, dwr);
    assert_eq!(d.get_utf8(avp::ORIGIN_REALM).unwrap(), "b");
}

/// Decoding shares the input buffer: AVP payloads point into it.
#[test]
fn decode_is_zero_copy() {
    let m = Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::octets(avp::USER_DATA, vec![7u8; 1000]));
    let buf = Bytes::from(m.encode());
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let d = Message::decode(buf.clone()).unwrap();
    let p = d.get_octets(avp::USER_DATA).unwrap().as_ptr() as usize;
    assert!(range.contains(&p));
}
