#![no_main]
//! Arbitrary datagrams into the bridge's B2BUA core, on its ISC side (from the S-CSCF or a
//! stranger) and its peer side (from the peer or a stranger), after an outbound and an
//! inbound INVITE put calls in its tables; timers run after each input. No input may panic
//! the core; the media plane here only hands out addresses and accepts every SDP.
use appserver::b2bua::{B2bCore, CoreConfig};
use appserver::media_api::{Allocated, Leg, MediaControl, MediaError, MediaId};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::{Flow, Protocol};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Plane(AtomicU64);

impl MediaControl for Plane {
    fn codecs(&self, _: Leg) -> Vec<sdp::LocalCodec> {
        vec![
            sdp::LocalCodec::amr(sdp::AmrKind::Nb, false),
            sdp::LocalCodec::pcma(),
            sdp::LocalCodec::telephone_event(8000),
        ]
    }
    fn allocate(&self) -> Result<Allocated, MediaError> {
        let id = self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Allocated {
            id: MediaId(id),
            ims: SocketAddr::from(([127, 0, 0, 1], 40000)),
            sip: SocketAddr::from(([127, 0, 0, 1], 40002)),
        })
    }
    fn negotiated(
        &self,
        _: MediaId,
        _: Leg,
        _: &sdp::Session,
        _: &sdp::Session,
    ) -> Result<(), MediaError> {
        Ok(())
    }
    fn release(&self, _: MediaId) {}
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 97 8\r\na=rtpmap:97 AMR/8000\r\na=rtpmap:8 PCMA/8000\r\n";

fn invite(uri: &str, via: &str, pai: &str) -> Vec<u8> {
    format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{}\r\nMax-Forwards: 68\r\n\
         From: <sip:alice@ims.test>;tag=a\r\nTo: <{uri}>\r\nCall-ID: c{}\r\nCSeq: 1 INVITE\r\n\
         P-Asserted-Identity: <{pai}>\r\nContact: <sip:a@{via}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        via.len(),
        uri.len(),
        SDP.len()
    )
    .into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let scscf = SocketAddr::from(([127, 0, 0, 1], 6060));
    let peer = SocketAddr::from(([127, 0, 0, 20], 5080));
    let isc_local = SocketAddr::from(([127, 0, 0, 10], 5072));
    let peer_local = SocketAddr::from(([127, 0, 0, 10], 5090));
    let cfg = CoreConfig {
        isc_local,
        isc_address: isc_local,
        peer_local,
        peer_address: peer_local,
        scscf: Some(scscf),
        trusted: vec![],
        peer: sip::Uri::parse("sip:pbx@127.0.0.20:5080").expect("a valid URI"),
        peer_addr: peer,
        peer_protocol: Protocol::Udp,
        prefixes: vec!["+4930".into()],
        ims_domain: None,
        session_expires: if sel & 1 == 0 { 1800 } else { 0 },
        ring_timeout: Duration::from_secs(180),
        max_duration: Duration::from_secs(3600),
        offer_caller_codecs: sel & 2 == 0,
        register: None,
    };
    let mut core = B2bCore::new(cfg, Arc::new(Plane::default()));
    let mut now = Instant::now();
    core.handle_start(now);
    let isc = Flow::new(isc_local, scscf, Protocol::Udp);
    let from_peer = Flow::new(peer_local, peer, Protocol::Udp);
    core.handle_inbound(
        isc,
        Bytes::from(invite("tel:+49301234", "127.0.0.1:6060", "tel:+4915550001")),
        now,
    );
    core.handle_inbound(
        from_peer,
        Bytes::from(invite("sip:+4915550002@127.0.0.10:5090", "127.0.0.20:5080", "sip:+4930999@pbx")),
        now,
    );
    let stranger = SocketAddr::from(([127, 0, 0, 99], 5060));
    let flow = match sel & 12 {
        0 => isc,
        4 => from_peer,
        8 => Flow::new(isc_local, stranger, Protocol::Udp),
        _ => Flow::new(peer_local, stranger, Protocol::Udp),
    };
    for chunk in rest.split(|&b| b == 0) {
        core.handle_inbound(flow, Bytes::copy_from_slice(chunk), now);
        while core.poll_transmit().is_some() {}
        now += Duration::from_millis(700);
        core.handle_timeout(now);
        while core.poll_transmit().is_some() {}
    }
});
