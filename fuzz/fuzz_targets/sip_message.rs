//! SIP message parser (`scripts/fuzz-smoke` runs it with `dicts/sip_message.dict`), stream framing and every typed accessor reachable from a message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip::{stream_frame, Framing, Limits, Message};

/// Start lines prepended on some inputs so the fuzzer reaches header parsing
/// quickly without a seed corpus.
const STARTS: [&[u8]; 3] = [
    b"",
    b"REGISTER sip:ims.test SIP/2.0\r\n",
    b"SIP/2.0 401 Unauthorized\r\n",
];

fuzz_target!(|input: &[u8]| {
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let mut buf = STARTS[usize::from(sel) % STARTS.len()].to_vec();
    buf.extend_from_slice(rest);
    let data = &buf[..];
    let l = Limits::default();
    let _ = stream_frame(data, &l);
    let _ = Message::parse_with(data, &l, Framing::Stream);
    // An unparsable request answered from its raw bytes: the answer itself is sound SIP.
    if let Err(e) = Message::parse(data) {
        if let Some(a) = sip::uas::reject_unparsable(data, &e, sip::Protocol::Udp) {
            let r = Message::parse(&a.response).expect("our answer to a bad request parses");
            assert_eq!(r.code(), Some(a.code));
            r.validate().expect("our answer to a bad request is a valid response");
        }
    }
    if let Ok(m) = Message::parse(data) {
        let _ = m.validate();
        let _ = m.request_uri();
        let _ = m.vias();
        let _ = m.contacts();
        let _ = m.expires();
        let _ = m.max_forwards();
        let _ = m.security_client();
        let _ = m.security_server();
        let _ = m.security_verify();
        let _ = m.path();
        let _ = m.service_route();
        let _ = m.p_asserted_identity();
        let _ = m.p_associated_uri();
        let _ = m.p_access_network_info();
        let _ = m.p_visited_network_id();
        let _ = m.p_charging_vector();
        let mut e = m.clone();
        let _ = e.stamp_received("[2001:db8::1]:5060".parse().unwrap());
        let _ = e.pop_header_value("Route");
        e.remove_option_tag("Require", "sec-agree");
        e.prepend_header("Via", "SIP/2.0/UDP x;branch=z9hG4bK1");
        let once = e.to_bytes();
        // our own output must parse again and serialise identically
        let again = Message::parse(&once).expect("re-parse of own output");
        assert_eq!(again.to_bytes(), once);
    }
});
