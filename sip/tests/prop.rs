//! Property tests: no parser panics on arbitrary input; parse → serialise → parse
//! is stable; generated messages and IMS headers round-trip.

use proptest::prelude::*;
use sip::headers::{CSeq, Contacts};
use sip::ims::{AccessNetworkInfo, ChargingVector, SecurityMechanism, VisitedNetworkId};
use sip::{
    stream_frame, Frame, Framing, Limits, Message, NameAddr, Params, StreamFramer, Uri, Via,
};

fn exercise(m: &Message) {
    let _ = m.validate();
    let _ = m.request_uri();
    let _ = m.vias();
    let _ = m.contacts();
    let _ = m.expires();
    let _ = m.security_client();
    let _ = m.security_verify();
    let _ = m.path();
    let _ = m.p_access_network_info();
    let _ = m.p_visited_network_id();
    let _ = m.p_charging_vector();
    let _ = m.p_asserted_identity();
    let _ = m.branch();
    let mut e = m.clone();
    let _ = e.stamp_received("192.0.2.1:5060".parse().unwrap());
    let _ = e.pop_header_value("Via");
    e.remove_option_tag("Supported", "sec-agree");
    let _ = e.to_bytes();
}

fn all_str_parsers(s: &str) {
    let _ = Uri::parse(s);
    let _ = NameAddr::parse(s);
    let _ = NameAddr::parse_list(s);
    let _ = Via::parse_list(s);
    let _ = CSeq::parse(s);
    let _ = Contacts::parse(s);
    let _ = Params::parse(s);
    let _ = SecurityMechanism::parse_list(s);
    let _ = AccessNetworkInfo::parse(s);
    let _ = VisitedNetworkId::parse_list(s);
    let _ = ChargingVector::parse(s);
}

const SIPISH: &str = "[a-zA-Z0-9:;,=<>\"@\\[\\]\\\\/. \t\r\n?&%+*_-]{0,120}";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let l = Limits::default();
        let _ = stream_frame(&data, &l);
        let _ = Message::parse_with(&data, &l, Framing::Stream);
        if let Ok(m) = Message::parse(&data) {
            exercise(&m);
        }
        all_str_parsers(&String::from_utf8_lossy(&data));
    }

    #[test]
    fn sipish_strings_never_panic(s in SIPISH) {
        all_str_parsers(&s);
        let msg = format!("INVITE sip:a@b SIP/2.0\r\nVia: {s}\r\nContact: {s}\r\nSecurity-Client: {s}\r\nCSeq: {s}\r\n\r\n");
        if let Ok(m) = Message::parse(msg.as_bytes()) {
            exercise(&m);
        }
    }

    #[test]
    fn typed_render_then_parse_is_identity(s in SIPISH) {
        if let Ok(l) = SecurityMechanism::parse_list(&s) {
            let text = sip::ims::format_security_list(&l);
            prop_assert_eq!(SecurityMechanism::parse_list(&text).unwrap(), l);
        }
        if let Ok(l) = NameAddr::parse_list(&s) {
            let text = l.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
            prop_assert_eq!(NameAddr::parse_list(&text).unwrap(), l);
        }
        if let Ok(l) = Via::parse_list(&s) {
            let text = l.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
            prop_assert_eq!(Via::parse_list(&text).unwrap(), l);
        }
        if let Ok(u) = Uri::parse(&s) {
            prop_assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
        }
    }

    #[test]
    fn serialise_is_stable(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(m) = Message::parse(&data) {
            let once = m.to_bytes();
            let again = Message::parse(&once).expect("re-parse of our own output");
            prop_assert_eq!(again.to_bytes(), once);
        }
    }

    #[test]
    fn generated_messages_round_trip(
        method in "(INVITE|REGISTER|OPTIONS|BYE|X-EXT)",
        user in "[a-z0-9]{1,10}",
        headers in proptest::collection::vec(
            ("(Via|v|From|f|To|t|Call-ID|i|CSeq|X-Custom|Path|Supported|k)", "[ \t]{0,2}", "[a-zA-Z0-9;=<>:@., -]{0,40}", proptest::bool::ANY),
            0..12),
        body in "[a-z0-9\r\n]{0,40}",
    ) {
        let mut raw = format!("{method} sip:{user}@ims.test SIP/2.0\r\n");
        for (name, ws, value, fold) in &headers {
            let value = value.trim();
            if *fold && !value.is_empty() {
                raw.push_str(&format!("{name}{ws}:{ws}{value}\r\n {value}\r\n"));
            } else {
                raw.push_str(&format!("{name}{ws}:{ws}{value}\r\n"));
            }
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let m = Message::parse(raw.as_bytes()).expect("generated message parses");
        prop_assert_eq!(m.to_bytes(), raw.as_bytes().to_vec());
        prop_assert_eq!(m.header_count(), headers.len() + 1);
        prop_assert_eq!(&m.body()[..], body.as_bytes());
        for (h, (name, _, value, fold)) in m.headers().zip(headers.iter()) {
            prop_assert_eq!(h.name, name.as_str());
            let v = value.trim();
            if *fold && !v.is_empty() {
                prop_assert_eq!(h.value.to_string(), format!("{v} {v}"));
            } else {
                prop_assert_eq!(h.value, v);
            }
        }
        // edits keep the message parseable and leave other headers alone
        let mut e = m.clone();
        e.prepend_header("Via", "SIP/2.0/UDP p.test;branch=z9hG4bKx");
        e.remove_header("X-Custom");
        let out = Message::parse(&e.to_bytes()).expect("edited message parses");
        prop_assert_eq!(out.header("Via"), Some("SIP/2.0/UDP p.test;branch=z9hG4bKx"));
        prop_assert!(!out.has_header("X-Custom"));
        prop_assert_eq!(&out.body()[..], body.as_bytes());
    }

    #[test]
    fn security_mechanism_round_trip(
        alg in proptest::option::of("(hmac-md5-96|hmac-sha-1-96)"),
        ealg in proptest::option::of("(null|aes-cbc|des-ede3-cbc)"),
        spis in proptest::option::of((any::<u32>(), any::<u32>())),
        ports in proptest::option::of((any::<u16>(), any::<u16>())),
        q in proptest::option::of(0u16..=1000),
    ) {
        let m = SecurityMechanism {
            mechanism: "ipsec-3gpp".into(),
            alg, ealg,
            spi_c: spis.map(|s| s.0), spi_s: spis.map(|s| s.1),
            port_c: ports.map(|p| p.0), port_s: ports.map(|p| p.1),
            prot: Some("esp".into()), mode: Some("trans".into()), q,
            other: Params::default(),
        };
        let s = m.to_string();
        let back = SecurityMechanism::parse(&s).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn uri_round_trip(
        scheme in "(sip|sips)",
        user in proptest::option::of("[a-z0-9+.%-]{1,12}"),
        host in "([a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}|\\[2001:db8::[0-9a-f]{1,4}\\]|10\\.[0-9]{1,2}\\.0\\.1)",
        port in proptest::option::of(any::<u16>()),
        params in proptest::collection::vec(("[a-z]{1,6}", proptest::option::of("[a-z0-9]{1,6}")), 0..4),
    ) {
        let mut s = format!("{scheme}:");
        if let Some(u) = &user { s.push_str(u); s.push('@'); }
        s.push_str(&host);
        if let Some(p) = port { s.push_str(&format!(":{p}")); }
        for (n, v) in &params {
            match v { Some(v) => s.push_str(&format!(";{n}={v}")), None => s.push_str(&format!(";{n}")) }
        }
        let u = Uri::parse(&s).unwrap();
        prop_assert_eq!(u.to_string(), s.clone());
        prop_assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn incremental_framing_equals_stateless(
        data in proptest::collection::vec(proptest::sample::select(b"\r\nl: 3Content-Length:x".to_vec()), 0..300),
        cuts in proptest::collection::vec(1usize..40, 1..20),
    ) {
        let l = Limits { max_message: 200, max_headers: 16 };
        let mut f = StreamFramer::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut pos = 0;
        let mut ci = 0;
        'outer: while pos < data.len() {
            let n = cuts[ci % cuts.len()].min(data.len() - pos);
            ci += 1;
            buf.extend_from_slice(&data[pos..pos + n]);
            pos += n;
            loop {
                let a = f.poll(&buf, &l);
                let b = stream_frame(&buf, &l);
                prop_assert_eq!(&a, &b);
                match a {
                    Ok(Frame::KeepAlive(n)) | Ok(Frame::Message(n)) => { buf.drain(..n); }
                    Ok(Frame::Incomplete) => break,
                    Err(_) => break 'outer,
                }
            }
        }
    }
}
