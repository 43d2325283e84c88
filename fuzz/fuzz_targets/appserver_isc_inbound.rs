#![no_main]
//! Arbitrary datagrams into the ISC service's core (the AS as a proxy on the terminating
//! INVITE), from the S-CSCF's address or a stranger's, after a terminating INVITE and a
//! third-party REGISTER put calls and registrations in its tables; timers run after
//! each input. No input may panic the core or the observer it reports to.
use appserver::event::{CallObserver, Offer, Progress, Verdict};
use appserver::isc::{CoreConfig, IscCore};
use appserver::late::{LateConfig, LateMode};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::{Flow, Protocol};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

struct Observer;

impl CallObserver for Observer {
    fn offer(&self, offer: Offer) -> Verdict {
        if offer.call_id.len() % 2 == 0 {
            Verdict::Ring
        } else {
            Verdict::Block {
                rule: "fuzz".into(),
            }
        }
    }
    fn progress(&self, _: &str, _: Progress, _: SystemTime) {}
}

const INVITE: &[u8] = b"INVITE sip:bob@ims.test SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKs1\r\nMax-Forwards: 68\r\n\
Route: <sip:127.0.0.10:5070;lr>, <sip:127.0.0.1:6060;lr;isc=t>\r\n\
From: <sip:alice@ims.test>;tag=a\r\nTo: <sip:bob@ims.test>\r\nCall-ID: cc\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

const REGISTER: &[u8] = b"REGISTER sip:127.0.0.10:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKr1\r\nMax-Forwards: 70\r\n\
From: <sip:127.0.0.1:6060>;tag=s\r\nTo: <sip:bob@ims.test>\r\nCall-ID: r\r\n\
CSeq: 1 REGISTER\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let s = SocketAddr::from(([127, 0, 0, 1], 6060));
    let cfg = CoreConfig {
        address: SocketAddr::from(([127, 0, 0, 10], 5070)),
        scscf: Some(s),
        trusted: vec![],
        record_route: sel & 1 == 0,
        dialog_max_age: Duration::from_secs(60),
        identity: "sip:callerid@127.0.0.10:5070".into(),
        late: LateConfig {
            mode: if sel & 2 == 0 {
                LateMode::Message
            } else {
                LateMode::Cancel
            },
            ..LateConfig::default()
        },
    };
    let mut core = IscCore::new(cfg, Arc::new(Observer));
    let mut now = Instant::now();
    let from = if sel & 4 == 0 {
        s
    } else {
        SocketAddr::from(([127, 0, 0, 99], 5060))
    };
    let flow = Flow::new(SocketAddr::from(([127, 0, 0, 10], 5070)), from, Protocol::Udp);
    let s_flow = Flow::new(SocketAddr::from(([127, 0, 0, 10], 5070)), s, Protocol::Udp);
    core.handle_inbound(s_flow, Bytes::from_static(INVITE), now);
    core.handle_inbound(s_flow, Bytes::from_static(REGISTER), now);
    for chunk in rest.split(|&b| b == 0) {
        core.handle_inbound(flow, Bytes::copy_from_slice(chunk), now);
        while core.poll_transmit().is_some() {}
        now += Duration::from_millis(700);
        core.handle_timeout(now);
        while core.poll_transmit().is_some() {}
    }
});
