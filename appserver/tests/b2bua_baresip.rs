//! The bridge's SIP side against a real PCMA-only phone (Debian's baresip): the test plays
//! the S-CSCF on the ISC side and sends a UE's AMR offer; the bridge calls baresip, which
//! answers with PCMA; BYE from each side ends both legs. Then baresip calls a subscriber
//! through the bridge, which the test (as S-CSCF) answers with AMR.
//!
//! The media plane is a stand-in that hands out loopback ports and records the
//! offer/answer it is told of (the real plane is its own piece of issue 12); no RTP flows.

use appserver::b2bua::{self, B2bEvent, BridgeConfig};
use appserver::media_api::{Allocated, Leg, MediaControl, MediaError, MediaId};
use sdp::{AmrKind, LocalCodec, Session};
use sip::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::baresip::Baresip;
use tokio::net::UdpSocket;

#[derive(Default)]
struct StandIn {
    /// (leg, first codec of our SDP, first codec of the remote SDP)
    negotiated: Mutex<Vec<(Leg, String, String)>>,
    released: Mutex<Vec<MediaId>>,
    next: Mutex<u64>,
}

fn first_codec(s: &Session) -> String {
    s.media()
        .iter()
        .find(|m| m.line().port != 0)
        .and_then(|m| m.codecs().into_iter().next())
        .and_then(|c| c.rtpmap)
        .map(|r| r.encoding)
        .unwrap_or_default()
}

impl MediaControl for StandIn {
    fn codecs(&self, leg: Leg) -> Vec<LocalCodec> {
        match leg {
            Leg::Ims => vec![
                LocalCodec::amr(AmrKind::Nb, false),
                LocalCodec::amr(AmrKind::Nb, true),
                LocalCodec::pcma(),
                LocalCodec::telephone_event(8000),
            ],
            Leg::Sip => vec![LocalCodec::pcma(), LocalCodec::telephone_event(8000)],
        }
    }

    fn allocate(&self) -> Result<Allocated, MediaError> {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        let ports = testkit::free_ports(2);
        Ok(Allocated {
            id: MediaId(*n),
            ims: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            sip: SocketAddr::from(([127, 0, 0, 1], ports[1])),
        })
    }

    fn negotiated(
        &self,
        _id: MediaId,
        leg: Leg,
        local: &Session,
        remote: &Session,
    ) -> Result<(), MediaError> {
        self.negotiated
            .lock()
            .unwrap()
            .push((leg, first_codec(local), first_codec(remote)));
        Ok(())
    }

    fn release(&self, id: MediaId) {
        self.released.lock().unwrap().push(id);
    }
}

/// The UE's offer: AMR-NB in both payload formats and telephone-event, as handsets send.
fn amr_offer(port: u16) -> String {
    let mut o = sdp::VolteOffer::new(
        sdp::Origin::new("-", "1", 1, "127.0.0.1".parse().unwrap()),
        "127.0.0.1".parse().unwrap(),
        port,
    );
    o.qos = None;
    String::from_utf8(o.build().to_bytes()).unwrap()
}

struct Scscf {
    sock: UdpSocket,
    bridge: SocketAddr,
}

impl Scscf {
    async fn send(&self, raw: &str) {
        self.sock
            .send_to(raw.as_bytes(), self.bridge)
            .await
            .unwrap();
    }

    /// The next message, at most 10 s away.
    async fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), self.sock.recv_from(&mut buf))
            .await
            .expect("nothing from the bridge within 10 s")
            .unwrap();
        Message::parse(&buf[..n]).unwrap()
    }

    /// Messages until one with `code` (responses) or `method` (requests), at most 20.
    async fn until(&self, what: &str) -> Message {
        for _ in 0..20 {
            let m = self.recv().await;
            let is = match m.method() {
                Some(x) => x.as_str() == what,
                None => m.code().map(|c| c.to_string()).as_deref() == Some(what),
            };
            if is {
                return m;
            }
        }
        panic!("no {what} from the bridge");
    }

    fn invite(&self, call_id: &str) -> String {
        let me = self.sock.local_addr().unwrap();
        let body = amr_offer(40000);
        format!(
            "INVITE tel:+4930123 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}i\r\n\
             Max-Forwards: 69\r\n\
             From: <sip:001010000000001@ims.lab>;tag=ue-{call_id}\r\n\
             To: <tel:+4930123>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:ue@{me}>\r\n\
             P-Asserted-Identity: <tel:+15551234>\r\n\
             Supported: timer\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// An in-dialog request of the UE in the dialog our 2xx `ok` made.
    fn in_dialog(&self, method: &str, seq: u32, ok: &Message) -> String {
        let me = self.sock.local_addr().unwrap();
        let contact = ok.name_addrs("Contact").unwrap()[0].uri.to_string();
        format!(
            "{method} {contact} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{method}{seq}{}\r\n\
             Max-Forwards: 70\r\n\
             From: {}\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {seq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            ok.call_id().unwrap(),
            ok.header("From").unwrap(),
            ok.header("To").unwrap(),
            ok.call_id().unwrap(),
        )
    }

    /// 200 to a request of the bridge.
    async fn ok_to(&self, req: &Message) {
        let r = sip::ResponseBuilder::new(req, 200).build().unwrap();
        let me_to = self.bridge;
        self.sock.send_to(&r.to_bytes(), me_to).await.unwrap();
    }
}

/// Calls baresip through the bridge up to the ACK; returns the bridge's 2xx.
async fn call(
    scscf: &Scscf,
    plane: &StandIn,
    phone: &mut Baresip,
    call_id: &str,
    nth: usize,
) -> Message {
    scscf.send(&scscf.invite(call_id)).await;
    let ok = scscf.until("200").await;
    assert_eq!(ok.cseq().unwrap().method, sip::Method::Invite);
    let answer = Session::parse(ok.body()).unwrap();
    assert_eq!(first_codec(&answer), "AMR", "the UE's leg stays AMR");
    scscf.send(&scscf.in_dialog("ACK", 1, &ok)).await;
    phone
        .wait_for_log_count("Call established", nth, Duration::from_secs(10))
        .unwrap();
    let n = plane.negotiated.lock().unwrap().clone();
    assert!(
        n.iter()
            .any(|(leg, _, remote)| *leg == Leg::Sip && remote == "PCMA"),
        "baresip answered PCMA: {n:?}\n{}",
        phone.log()
    );
    assert!(n
        .iter()
        .any(|(leg, local, _)| *leg == Leg::Ims && local == "AMR"));
    ok
}

async fn wait_events(
    running: &b2bua::Running,
    pred: impl Fn(&[B2bEvent]) -> bool,
) -> Vec<B2bEvent> {
    for _ in 0..100 {
        let ev = running.events();
        if pred(&ev) {
            return ev;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("events never matched: {:?}", running.events());
}

fn ended(ev: &[B2bEvent], n: usize) -> bool {
    ev.iter()
        .filter(|e| matches!(e, B2bEvent::Ended { .. }))
        .count()
        >= n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_both_ways_with_baresip_and_bye_from_either_side_ends_both_legs() {
    if testkit::require_bin("baresip").is_none() {
        return;
    }
    let mut phone = Baresip::start("+4930123").unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // The bridge takes only the phone's IP on its peer side: loopback, like the test.
    let cfg = BridgeConfig {
        isc_listen: "127.0.0.1:0".parse().unwrap(),
        listen: "127.0.0.1:0".parse().unwrap(),
        scscf: Some(sock.local_addr().unwrap()),
        peer: phone.uri(),
        prefixes: vec!["+4930".into()],
        ..BridgeConfig::default()
    };
    let plane = Arc::new(StandIn::default());
    let (_media_tx, media_rx) = tokio::sync::mpsc::channel(8);
    let running = b2bua::start(&cfg, plane.clone(), media_rx).await.unwrap();
    let scscf = Scscf {
        sock,
        bridge: running.isc_addr,
    };

    // 1. BYE from the IMS side.
    let ok = call(&scscf, &plane, &mut phone, "call-one", 1).await;
    scscf.send(&scscf.in_dialog("BYE", 2, &ok)).await;
    scscf.until("200").await;
    // baresip 1.0 reports the far end's BYE as its session closing "by peer".
    phone
        .wait_for_log_count("session closed", 1, Duration::from_secs(10))
        .unwrap();
    let ev = wait_events(&running, |e| ended(e, 1)).await;
    assert!(ev
        .iter()
        .any(|e| matches!(e, B2bEvent::Ended { why, .. } if why == "BYE from the IMS side")));
    assert_eq!(plane.released.lock().unwrap().len(), 1);

    // 2. BYE from baresip: the bridge sends BYE toward the UE.
    let _ok = call(&scscf, &plane, &mut phone, "call-two", 2).await;
    phone.hangup().unwrap();
    let bye = scscf.until("BYE").await;
    assert_eq!(bye.call_id().unwrap(), "call-two");
    scscf.ok_to(&bye).await;
    let ev = wait_events(&running, |e| ended(e, 2)).await;
    assert!(ev
        .iter()
        .any(|e| matches!(e, B2bEvent::Ended { why, .. } if why == "BYE from the SIP peer")));
    let stats = running.stats();
    assert_eq!((stats.outbound, stats.answered, stats.ended), (2, 2, 2));

    // 3. The reverse call: baresip dials a subscriber's number at the bridge, which sends
    //    it to the S-CSCF (us) as a trusted AS; the callee answers AMR; baresip hangs up.
    let target = format!("sip:+4930999@{}", running.peer_addr);
    phone.dial(&target).unwrap();
    let inv = scscf.until("INVITE").await;
    assert_eq!(inv.uri_str(), Some("tel:+4930999"));
    let route = inv.header("Route").unwrap();
    assert!(
        route.contains(&scscf.sock.local_addr().unwrap().port().to_string()),
        "{route}"
    );
    assert!(inv.header("P-Asserted-Identity").is_some());
    let offer = Session::parse(inv.body()).unwrap();
    assert_eq!(
        first_codec(&offer),
        "PCMA",
        "baresip's codec first: relay possible"
    );
    let answer = amr_offer(40010);
    let ok = sip::ResponseBuilder::new(&inv, 200)
        .to_tag("callee")
        .header(
            "Contact",
            format!("<sip:ue@{}>", scscf.sock.local_addr().unwrap()),
        )
        .body("application/sdp", bytes::Bytes::from(answer))
        .build()
        .unwrap();
    scscf
        .sock
        .send_to(&ok.to_bytes(), running.isc_addr)
        .await
        .unwrap();
    let ack = scscf.until("ACK").await;
    assert_eq!(ack.call_id().unwrap(), inv.call_id().unwrap());
    phone
        .wait_for_log_count("Call established", 3, Duration::from_secs(10))
        .unwrap();
    phone.hangup().unwrap();
    let bye = scscf.until("BYE").await;
    assert_eq!(bye.call_id().unwrap(), inv.call_id().unwrap());
    scscf.ok_to(&bye).await;
    wait_events(&running, |e| ended(e, 3)).await;
    let stats = running.stats();
    assert_eq!((stats.inbound, stats.answered), (1, 3));
    let n = plane.negotiated.lock().unwrap().clone();
    assert!(
        n.iter()
            .any(|(leg, local, remote)| *leg == Leg::Sip && local == "PCMA" && remote == "PCMA"),
        "{n:?}"
    );
    running.stop().await;
}
