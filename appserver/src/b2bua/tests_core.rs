//! Scripted SIP through [`B2bCore`]: both directions, CANCEL, BYE from each side,
//! re-INVITE, and every timer that ends a call.

use super::*;
use crate::media_api::{Allocated, Leg, MediaControl, MediaError, MediaId};
use bytes::Bytes;
use sdp::{AmrKind, LocalCodec, Session};
use sip::{Flow, Message, Method, Protocol, ResponseBuilder};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ISC: &str = "127.0.0.1:5072";
const PEER_SIDE: &str = "127.0.0.1:5090";
const SCSCF: &str = "127.0.0.1:6060";
const PEER: &str = "127.0.0.1:5080";

/// A media plane that hands out ports and records what it is told.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
    next: Mutex<u64>,
    refuse_sip: Mutex<bool>,
}

impl Recorder {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl MediaControl for Recorder {
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
        let p = 30000 + 4 * *n as u16;
        self.log.lock().unwrap().push(format!("allocate {n}"));
        Ok(Allocated {
            id: MediaId(*n),
            ims: format!("127.0.0.1:{p}").parse().unwrap(),
            sip: format!("127.0.0.1:{}", p + 2).parse().unwrap(),
        })
    }

    fn negotiated(
        &self,
        id: MediaId,
        leg: Leg,
        local: &Session,
        remote: &Session,
    ) -> Result<(), MediaError> {
        let enc = |s: &Session| {
            s.media()[0].codecs()[0]
                .rtpmap
                .as_ref()
                .map(|r| r.encoding.clone())
                .unwrap_or_default()
        };
        self.log.lock().unwrap().push(format!(
            "negotiated {} {leg:?} {}/{}",
            id.0,
            enc(local),
            enc(remote)
        ));
        if leg == Leg::Sip && *self.refuse_sip.lock().unwrap() {
            return Err(MediaError::Codec {
                leg,
                reason: "test".into(),
            });
        }
        Ok(())
    }

    fn release(&self, id: MediaId) {
        self.log.lock().unwrap().push(format!("release {}", id.0));
    }
}

struct Harness {
    core: B2bCore,
    media: Arc<Recorder>,
    now: Instant,
}

fn cfg() -> CoreConfig {
    BridgeConfig {
        isc_listen: ISC.parse().unwrap(),
        listen: PEER_SIDE.parse().unwrap(),
        scscf: Some(SCSCF.parse().unwrap()),
        peer: format!("sip:pbx@{PEER}"),
        prefixes: vec!["+4930".into()],
        ..BridgeConfig::default()
    }
    .core(ISC.parse().unwrap(), PEER_SIDE.parse().unwrap())
    .unwrap()
}

fn volte_sdp() -> String {
    String::from_utf8(
        sdp::VolteOffer::new(
            sdp::Origin::new("-", "1", 1, "10.0.0.5".parse().unwrap()),
            "10.0.0.5".parse().unwrap(),
            40000,
        )
        .build()
        .to_bytes(),
    )
    .unwrap()
}

fn pcma_sdp(port: u16) -> String {
    String::from_utf8(
        sdp::G711Offer::new(
            sdp::Origin::new("-", "9", 1, "127.0.0.1".parse().unwrap()),
            "127.0.0.1".parse().unwrap(),
            port,
        )
        .build()
        .to_bytes(),
    )
    .unwrap()
}

fn request(first: &str, headers: &[&str], body: &str) -> String {
    let mut s = format!("{first}\r\n");
    for h in headers {
        s += h;
        s += "\r\n";
    }
    if !body.is_empty() {
        s += "Content-Type: application/sdp\r\n";
    }
    s += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    s
}

/// The UE's INVITE as the S-CSCF passes it to the AS.
fn ue_invite(extra: &[&str]) -> String {
    let mut h = vec![
        "Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKscscf1",
        "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKue1;received=10.0.0.5",
        "Max-Forwards: 68",
        "Record-Route: <sip:127.0.0.1:6060;lr>",
        "From: <sip:001010000000001@ims.lab>;tag=ue1",
        "To: <tel:+4930123>",
        "Call-ID: ue-call-1",
        "CSeq: 1 INVITE",
        "Contact: <sip:001010000000001@10.0.0.5:5060>",
        "P-Asserted-Identity: <sip:001010000000001@ims.lab>, <tel:+15551234>",
        "P-Served-User: <sip:001010000000001@ims.lab>;sescase=orig;regstate=reg",
    ];
    h.extend_from_slice(extra);
    request("INVITE tel:+4930123 SIP/2.0", &h, &volte_sdp())
}

/// The peer and the S-CSCF, sorted: a BYE went each way.
fn both() -> Vec<std::net::SocketAddr> {
    let mut v = vec![PEER.parse().unwrap(), SCSCF.parse().unwrap()];
    v.sort();
    v
}

fn flow(local: &str, remote: &str) -> Flow {
    Flow::new(
        local.parse().unwrap(),
        remote.parse().unwrap(),
        Protocol::Udp,
    )
}

impl Harness {
    fn new() -> Harness {
        let media = Arc::new(Recorder::default());
        let core = B2bCore::new(cfg(), media.clone()).with_ids(sip::Ids::seeded(7));
        Harness {
            core,
            media,
            now: Instant::now(),
        }
    }

    fn feed(&mut self, local: &str, remote: &str, raw: &str) -> Vec<(Flow, Message)> {
        self.core
            .handle_inbound(flow(local, remote), Bytes::from(raw.to_string()), self.now);
        self.out()
    }

    fn feed_msg(&mut self, local: &str, remote: &str, m: &Message) -> Vec<(Flow, Message)> {
        self.core
            .handle_message(m.clone(), flow(local, remote), self.now);
        self.out()
    }

    fn out(&mut self) -> Vec<(Flow, Message)> {
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            v.push((t.flow, Message::parse(&t.payload).unwrap()));
        }
        v
    }

    fn advance(&mut self, d: Duration) -> Vec<(Flow, Message)> {
        let end = self.now + d;
        let mut v = Vec::new();
        // Step through every deadline on the way, as the shell would.
        for _ in 0..10_000 {
            match self.core.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    self.core.handle_timeout(self.now);
                    v.extend(self.out());
                }
                _ => break,
            }
        }
        self.now = end;
        self.core.handle_timeout(self.now);
        v.extend(self.out());
        v
    }

    fn events(&mut self) -> Vec<B2bEvent> {
        let mut v = Vec::new();
        while let Some(e) = self.core.poll_event() {
            v.push(e);
        }
        v
    }
}

/// Where BYEs went (retransmissions counted once).
fn bye_targets(out: &[(Flow, Message)]) -> Vec<std::net::SocketAddr> {
    let mut v: Vec<_> = out
        .iter()
        .filter(|(_, m)| m.method() == Some(&Method::Bye))
        .map(|(f, _)| f.remote)
        .collect();
    v.sort();
    v.dedup();
    v
}

fn find<'a>(out: &'a [(Flow, Message)], what: &str) -> Option<&'a (Flow, Message)> {
    out.iter().find(|(_, m)| match m.method() {
        Some(meth) => meth.as_str() == what,
        None => m.code().map(|c| c.to_string()).as_deref() == Some(what),
    })
}

fn must<'a>(out: &'a [(Flow, Message)], what: &str) -> &'a (Flow, Message) {
    find(out, what).unwrap_or_else(|| {
        let got: Vec<String> = out
            .iter()
            .map(|(f, m)| {
                format!(
                    "{} → {}",
                    m.method()
                        .map(|x| x.as_str().to_string())
                        .unwrap_or_else(|| m.code().unwrap_or(0).to_string()),
                    f.remote
                )
            })
            .collect();
        panic!("no {what} in {got:?}")
    })
}

/// A response of the peer to our request `req`.
fn peer_response(req: &Message, code: u16, sdp: Option<&str>, extra: &[(&str, &str)]) -> Message {
    let mut b = ResponseBuilder::new(req, code)
        .to_tag("peer1")
        .header("Contact", format!("<sip:pbx@{PEER}>"));
    for (k, v) in extra {
        b = b.header(k, v);
    }
    if let Some(s) = sdp {
        b = b.body("application/sdp", Bytes::from(s.to_string()));
    }
    b.build().unwrap()
}

/// In-dialog request of the UE toward the AS (through the S-CSCF), within the call made
/// by `ue_invite`, answering our `resp` (its To tag).
fn ue_in_dialog(method: &str, seq: u32, resp: &Message, extra: &[&str], body: &str) -> String {
    let to = resp.header("To").unwrap().to_string();
    let mut h = vec![
        format!("Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKs{method}{seq}"),
        "Max-Forwards: 69".to_string(),
        "From: <sip:001010000000001@ims.lab>;tag=ue1".to_string(),
        format!("To: {to}"),
        "Call-ID: ue-call-1".to_string(),
        format!("CSeq: {seq} {method}"),
        "Contact: <sip:001010000000001@10.0.0.5:5060>".to_string(),
    ];
    h.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = h.iter().map(String::as_str).collect();
    request(&format!("{method} sip:b2bua@{ISC} SIP/2.0"), &refs, body)
}

/// Peer-side in-dialog request toward us within the dialog of our INVITE `inv`.
fn peer_in_dialog(method: &str, seq: u32, inv: &Message, body: &str) -> String {
    let from = inv.header("From").unwrap().to_string();
    let to = inv.header("To").unwrap().to_string();
    let h = [
        format!("Via: SIP/2.0/UDP {PEER};branch=z9hG4bKp{method}{seq}"),
        "Max-Forwards: 70".to_string(),
        format!("From: {to};tag=peer1"),
        format!("To: {from}"),
        format!("Call-ID: {}", inv.call_id().unwrap()),
        format!("CSeq: {seq} {method}"),
        format!("Contact: <sip:pbx@{PEER}>"),
    ];
    let refs: Vec<&str> = h.iter().map(String::as_str).collect();
    request(
        &format!("{method} sip:b2bua@{PEER_SIDE} SIP/2.0"),
        &refs,
        body,
    )
}

/// An outbound call up to the peer's 2xx and the UE's ACK; returns our INVITE to the
/// peer and our 2xx to the UE.
fn answered_outbound(h: &mut Harness, rel: bool) -> (Message, Message) {
    let extra: &[&str] = if rel {
        &["Supported: 100rel, timer", "Session-Expires: 1800"]
    } else {
        &[]
    };
    let out = h.feed(ISC, SCSCF, &ue_invite(extra));
    must(&out, "100");
    let inv = must(&out, "INVITE").1.clone();
    let ringing = peer_response(&inv, 180, None, &[]);
    let out = h.feed_msg(PEER_SIDE, PEER, &ringing);
    let r180 = must(&out, "180").1.clone();
    if rel {
        let rseq = r180.header("RSeq").unwrap().to_string();
        let prack = ue_in_dialog("PRACK", 2, &r180, &[&format!("RAck: {rseq} 1 INVITE")], "");
        let out = h.feed(ISC, SCSCF, &prack);
        must(&out, "200");
    }
    let ok = peer_response(&inv, 200, Some(&pcma_sdp(7000)), &[]);
    let out = h.feed_msg(PEER_SIDE, PEER, &ok);
    must(&out, "ACK");
    let ok_ue = must(&out, "200").1.clone();
    let ack = ue_in_dialog("ACK", 1, &ok_ue, &[], "");
    h.feed(ISC, SCSCF, &ack);
    (inv, ok_ue)
}

#[test]
fn outbound_call_reaches_the_peer_with_the_callers_number_and_both_codecs() {
    let mut h = Harness::new();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let (f, inv) = must(&out, "INVITE");
    assert_eq!(f.remote, PEER.parse().unwrap());
    assert_eq!(f.local, Some(PEER_SIDE.parse().unwrap()));
    assert_eq!(inv.uri_str(), Some("sip:+4930123@127.0.0.1:5080"));
    assert!(inv
        .header("From")
        .unwrap()
        .contains("sip:+15551234@127.0.0.1"));
    assert!(inv.header("To").unwrap().contains("+4930123"));
    let body = String::from_utf8(inv.body().to_vec()).unwrap();
    assert!(body.contains("AMR/8000"), "{body}");
    assert!(body.contains("PCMA/8000"), "{body}");
    assert!(body.contains("m=audio 30006 "), "SIP leg port: {body}");
    assert!(inv.has_option_tag("Supported", "100rel"));
    assert_eq!(inv.header("Session-Expires"), Some("1800"));
    let ev = h.events();
    assert!(
        matches!(&ev[0], B2bEvent::Started { inbound: false, from, to, .. }
        if from == "+15551234" && to == "+4930123")
    );
}

#[test]
fn outbound_call_with_100rel_answers_in_the_reliable_180_then_bye_from_the_caller() {
    let mut h = Harness::new();
    let out = h.feed(ISC, SCSCF, &ue_invite(&["Supported: 100rel, timer"]));
    let inv = must(&out, "INVITE").1.clone();
    let out = h.feed_msg(PEER_SIDE, PEER, &peer_response(&inv, 180, None, &[]));
    let r180 = must(&out, "180").1.clone();
    assert!(r180.has_option_tag("Require", "100rel"));
    assert_eq!(r180.header("RSeq"), Some("1"));
    let body = String::from_utf8(r180.body().to_vec()).unwrap();
    assert!(
        body.contains("AMR/8000") && body.contains("m=audio 30004 "),
        "{body}"
    );
    assert!(
        h.media
            .log()
            .contains(&"negotiated 1 Ims AMR/AMR-WB".to_string()),
        "{:?}",
        h.media.log()
    );
    // Not PRACKed yet: retransmitted at T1.
    let again = h.advance(Duration::from_millis(600));
    assert!(find(&again, "180").is_some());
    // The peer answers before the PRACK: the 2xx waits (RFC 3262 §3).
    let out = h.feed_msg(
        PEER_SIDE,
        PEER,
        &peer_response(&inv, 200, Some(&pcma_sdp(7000)), &[]),
    );
    must(&out, "ACK");
    assert!(find(&out, "200").is_none());
    let prack = ue_in_dialog("PRACK", 2, &r180, &["RAck: 1 1 INVITE"], "");
    let out = h.feed(ISC, SCSCF, &prack);
    let oks: Vec<_> = out.iter().filter(|(_, m)| m.code() == Some(200)).collect();
    assert_eq!(oks.len(), 2, "200 PRACK and 200 INVITE");
    let ok = oks
        .iter()
        .find(|(_, m)| m.cseq().unwrap().method == Method::Invite)
        .unwrap();
    assert!(ok.1.body().is_empty(), "answer already given in the 180");
    // Our offer (AMR first, then PCMA) and the peer's PCMA answer.
    assert!(
        h.media
            .log()
            .contains(&"negotiated 1 Sip AMR/PCMA".to_string()),
        "{:?}",
        h.media.log()
    );
    h.feed(ISC, SCSCF, &ue_in_dialog("ACK", 1, &ok.1, &[], ""));
    // No retransmission after the ACK.
    assert!(find(&h.advance(Duration::from_secs(2)), "200").is_none());
    let out = h.feed(ISC, SCSCF, &ue_in_dialog("BYE", 3, &ok.1, &[], ""));
    must(&out, "200");
    let (f, bye) = must(&out, "BYE");
    assert_eq!(f.remote, PEER.parse().unwrap());
    assert_eq!(bye.uri_str(), Some("sip:pbx@127.0.0.1:5080"));
    assert!(h.media.log().contains(&"release 1".to_string()));
    assert_eq!(h.core.call_count(), 0);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, B2bEvent::Ended { why, .. } if why == "BYE from the IMS side")));
}

#[test]
fn a_retransmitted_2xx_of_the_peer_gets_the_ack_again_and_nothing_else() {
    let mut h = Harness::new();
    let (inv, _) = answered_outbound(&mut h, false);
    let ok = peer_response(&inv, 200, Some(&pcma_sdp(7000)), &[]);
    let out = h.feed_msg(PEER_SIDE, PEER, &ok);
    assert_eq!(out.len(), 1, "{out:?}");
    must(&out, "ACK");
    assert_eq!(h.core.call_count(), 1);
    assert!(!h.media.log().iter().any(|l| l.starts_with("release")));
}

#[test]
fn bye_from_the_peer_ends_the_ims_leg_along_its_route() {
    let mut h = Harness::new();
    let (inv, _) = answered_outbound(&mut h, false);
    let out = h.feed(PEER_SIDE, PEER, &peer_in_dialog("BYE", 1, &inv, ""));
    must(&out, "200");
    let (f, bye) = must(&out, "BYE");
    // The S-CSCF record-routed: the BYE goes to it, for the UE's contact.
    assert_eq!(f.remote, SCSCF.parse().unwrap());
    assert_eq!(f.local, Some(ISC.parse().unwrap()));
    assert_eq!(bye.uri_str(), Some("sip:001010000000001@10.0.0.5:5060"));
    assert!(bye.header("Route").unwrap().contains("127.0.0.1:6060"));
    assert_eq!(h.core.call_count(), 0);
    // A late request in that dialog is unknown now.
    let out = h.feed(PEER_SIDE, PEER, &peer_in_dialog("UPDATE", 2, &inv, ""));
    must(&out, "481");
}

#[test]
fn cancel_from_the_caller_cancels_the_peer_leg() {
    let mut h = Harness::new();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let inv = must(&out, "INVITE").1.clone();
    h.feed_msg(PEER_SIDE, PEER, &peer_response(&inv, 180, None, &[]));
    let cancel = request(
        "CANCEL tel:+4930123 SIP/2.0",
        &[
            "Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKscscf1",
            "Max-Forwards: 70",
            "From: <sip:001010000000001@ims.lab>;tag=ue1",
            "To: <tel:+4930123>",
            "Call-ID: ue-call-1",
            "CSeq: 1 CANCEL",
            "Reason: SIP;cause=200;text=\"Call completed elsewhere\"",
        ],
        "",
    );
    let out = h.feed(ISC, SCSCF, &cancel);
    must(&out, "200");
    must(&out, "487");
    let (f, c) = must(&out, "CANCEL");
    assert_eq!(f.remote, PEER.parse().unwrap());
    assert!(c.header("Reason").unwrap().contains("cause=200"));
    assert_eq!(h.core.call_count(), 1, "waits for the peer's 487");
    let out = h.feed_msg(PEER_SIDE, PEER, &peer_response(&inv, 487, None, &[]));
    must(&out, "ACK");
    assert_eq!(h.core.call_count(), 0);
}

#[test]
fn cancel_before_any_provisional_waits_for_one_and_a_late_2xx_gets_bye() {
    let mut h = Harness::new();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let inv = must(&out, "INVITE").1.clone();
    let out = h.feed(
        ISC,
        SCSCF,
        &request(
            "CANCEL tel:+4930123 SIP/2.0",
            &[
                "Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKscscf1",
                "From: <sip:001010000000001@ims.lab>;tag=ue1",
                "To: <tel:+4930123>",
                "Call-ID: ue-call-1",
                "CSeq: 1 CANCEL",
            ],
            "",
        ),
    );
    must(&out, "487");
    assert!(
        find(&out, "CANCEL").is_none(),
        "RFC 3261 §9.1: not before a provisional"
    );
    let out = h.feed_msg(PEER_SIDE, PEER, &peer_response(&inv, 100, None, &[]));
    assert!(find(&out, "CANCEL").is_none());
    let out = h.feed_msg(PEER_SIDE, PEER, &peer_response(&inv, 183, None, &[]));
    must(&out, "CANCEL");
    // The peer's 200 crossed the CANCEL: ACK and BYE.
    let out = h.feed_msg(
        PEER_SIDE,
        PEER,
        &peer_response(&inv, 200, Some(&pcma_sdp(7000)), &[]),
    );
    must(&out, "ACK");
    must(&out, "BYE");
    assert_eq!(h.core.call_count(), 0);
}

#[test]
fn a_failure_of_the_peer_reaches_the_caller() {
    let mut h = Harness::new();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let inv = must(&out, "INVITE").1.clone();
    let out = h.feed_msg(PEER_SIDE, PEER, &peer_response(&inv, 486, None, &[]));
    must(&out, "ACK");
    let (f, _) = must(&out, "486");
    assert_eq!(f.remote, SCSCF.parse().unwrap());
    assert_eq!(h.core.call_count(), 0);
    assert!(h.media.log().contains(&"release 1".to_string()));
}

#[test]
fn inbound_call_enters_the_core_as_a_trusted_terminating_request() {
    let mut h = Harness::new();
    let invite = request(
        &format!("INVITE sip:+4930999@{PEER_SIDE} SIP/2.0"),
        &[
            &format!("Via: SIP/2.0/UDP {PEER};branch=z9hG4bKpbx1"),
            "Max-Forwards: 70",
            &format!("From: \"Desk\" <sip:200@{PEER}>;tag=pbx1"),
            &format!("To: <sip:+4930999@{PEER_SIDE}>"),
            "Call-ID: pbx-call-1",
            "CSeq: 10 INVITE",
            &format!("Contact: <sip:200@{PEER}>"),
        ],
        &pcma_sdp(7002),
    );
    let out = h.feed(PEER_SIDE, PEER, &invite);
    must(&out, "100");
    let (f, inv) = must(&out, "INVITE");
    assert_eq!(f.remote, SCSCF.parse().unwrap());
    assert_eq!(f.local, Some(ISC.parse().unwrap()));
    assert_eq!(inv.uri_str(), Some("tel:+4930999"));
    assert_eq!(inv.header("Route"), Some("<sip:127.0.0.1:6060;lr>"));
    assert_eq!(inv.header("P-Asserted-Identity"), Some("<tel:200>"));
    let body = String::from_utf8(inv.body().to_vec()).unwrap();
    assert!(
        body.contains("PCMA/8000") && body.contains("AMR/8000"),
        "{body}"
    );
    // The callee (through the S-CSCF) answers with AMR, record-routed by the S-CSCF.
    let amr = sdp::VolteOffer::new(
        sdp::Origin::new("-", "3", 1, "10.0.0.6".parse().unwrap()),
        "10.0.0.6".parse().unwrap(),
        40002,
    );
    let mut amr = amr;
    amr.qos = None;
    let amr = String::from_utf8(amr.build().to_bytes()).unwrap();
    let ringing = peer_response(
        inv,
        180,
        None,
        &[("Record-Route", "<sip:127.0.0.1:6060;lr>")],
    );
    let out = h.feed_msg(ISC, SCSCF, &ringing);
    let (f, r180) = must(&out, "180");
    assert_eq!(f.remote, PEER.parse().unwrap());
    assert!(
        r180.header("Require").is_none(),
        "the peer did not offer 100rel"
    );
    let ok = peer_response(
        inv,
        200,
        Some(&amr),
        &[("Record-Route", "<sip:127.0.0.1:6060;lr>")],
    );
    let out = h.feed_msg(ISC, SCSCF, &ok);
    let (f, ack) = must(&out, "ACK");
    assert_eq!(f.remote, SCSCF.parse().unwrap());
    assert!(ack.header("Route").is_some());
    let (_, ok_peer) = must(&out, "200");
    let body = String::from_utf8(ok_peer.body().to_vec()).unwrap();
    assert!(
        body.contains("PCMA/8000") && body.contains("m=audio 30006 "),
        "{body}"
    );
    let log = h.media.log();
    assert!(
        log.iter().any(|l| l.starts_with("negotiated 1 Ims")),
        "{log:?}"
    );
    assert!(
        log.contains(&"negotiated 1 Sip PCMA/PCMA".to_string()),
        "{log:?}"
    );
    // BYE from the subscriber's side (the S-CSCF relays it to us).
    let bye = request(
        "BYE sip:b2bua@127.0.0.1:5072 SIP/2.0",
        &[
            "Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKbye9",
            &format!("From: {};tag=peer1", inv.header("To").unwrap()),
            &format!("To: {}", inv.header("From").unwrap()),
            &format!("Call-ID: {}", inv.call_id().unwrap()),
            "CSeq: 5 BYE",
        ],
        "",
    );
    let out = h.feed(ISC, SCSCF, &bye);
    must(&out, "200");
    let (f, b) = must(&out, "BYE");
    assert_eq!(f.remote, PEER.parse().unwrap());
    assert_eq!(b.uri_str(), Some("sip:200@127.0.0.1:5080"));
    assert_eq!(h.core.call_count(), 0);
}

#[test]
fn strangers_and_numbers_of_other_networks_are_refused() {
    let mut h = Harness::new();
    let out = h.feed(ISC, "127.0.0.9:6060", &ue_invite(&[]));
    must(&out, "403");
    let other = ue_invite(&[])
        .replace("INVITE tel:+4930123", "INVITE tel:+4989123")
        .replace("z9hG4bKscscf1", "z9hG4bKscscf2");
    let out = h.feed(ISC, SCSCF, &other);
    must(&out, "404");
    let from_stranger = request(
        &format!("INVITE sip:+4930999@{PEER_SIDE} SIP/2.0"),
        &[
            "Via: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bKx",
            "From: <sip:200@127.0.0.2>;tag=x",
            "To: <sip:+4930999@127.0.0.1>",
            "Call-ID: x",
            "CSeq: 1 INVITE",
            "Contact: <sip:200@127.0.0.2>",
        ],
        &pcma_sdp(7002),
    );
    let out = h.feed(PEER_SIDE, "127.0.0.2:5080", &from_stranger);
    must(&out, "403");
    assert_eq!(h.core.stats().refused, 3);
    assert!(h.media.log().is_empty(), "nothing allocated");
}

#[test]
fn offers_without_a_common_codec_or_sdp_get_488() {
    let mut h = Harness::new();
    let g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let inv = ue_invite(&[]).replace(&volte_sdp(), g729).replace(
        &format!("Content-Length: {}", volte_sdp().len()),
        &format!("Content-Length: {}", g729.len()),
    );
    let out = h.feed(ISC, SCSCF, &inv);
    must(&out, "488");
    assert_eq!(h.media.log(), ["allocate 1", "release 1"]);
    let no_sdp = ue_invite(&[])
        .replace(&volte_sdp(), "")
        .replace("Content-Type: application/sdp\r\n", "")
        .replace(
            &format!("Content-Length: {}", volte_sdp().len()),
            "Content-Length: 0",
        );
    let out = h.feed(ISC, SCSCF, &no_sdp.replace("ue-call-1", "ue-call-2"));
    must(&out, "488");
}

#[test]
fn reinvite_on_the_sip_leg_is_answered_there_and_the_plane_told() {
    let mut h = Harness::new();
    let (inv, _) = answered_outbound(&mut h, false);
    let out = h.feed(
        PEER_SIDE,
        PEER,
        &peer_in_dialog("INVITE", 2, &inv, &pcma_sdp(7100)),
    );
    let (f, ok) = must(&out, "200");
    assert_eq!(f.remote, PEER.parse().unwrap());
    let body = String::from_utf8(ok.body().to_vec()).unwrap();
    assert!(body.contains("o=- 2001 2 IN IP4"), "version bumped: {body}");
    assert!(find(&out, "INVITE").is_none(), "nothing toward the IMS leg");
    let n = h
        .media
        .log()
        .iter()
        .filter(|l| l.starts_with("negotiated 1 Sip"))
        .count();
    assert_eq!(n, 2);
    // Its 2xx is retransmitted until the ACK.
    assert!(find(&h.advance(Duration::from_millis(600)), "200").is_some());
    h.feed(PEER_SIDE, PEER, &peer_in_dialog("ACK", 2, &inv, ""));
    assert!(find(&h.advance(Duration::from_secs(3)), "200").is_none());
    // A refresh by UPDATE without SDP: 200 with no body.
    let out = h.feed(PEER_SIDE, PEER, &peer_in_dialog("UPDATE", 3, &inv, ""));
    assert!(must(&out, "200").1.body().is_empty());
    // An offer the plane refuses keeps the old session: 488.
    *h.media.refuse_sip.lock().unwrap() = true;
    let out = h.feed(
        PEER_SIDE,
        PEER,
        &peer_in_dialog("UPDATE", 4, &inv, &pcma_sdp(7200)),
    );
    must(&out, "488");
    assert_eq!(h.core.call_count(), 1);
}

#[test]
fn media_timeout_ends_both_legs_with_a_reason() {
    let mut h = Harness::new();
    answered_outbound(&mut h, false);
    h.core.handle_media_timeout(MediaId(1), Leg::Sip, h.now);
    let out = h.out();
    assert_eq!(bye_targets(&out), both());
    assert!(out
        .iter()
        .filter(|(_, m)| m.method() == Some(&Method::Bye))
        .all(|(_, m)| m.header("Reason").unwrap().contains("RTP timeout")));
    assert_eq!(h.core.call_count(), 0);
}

#[test]
fn ringing_too_long_cancels_the_callee_and_answers_480() {
    let mut h = Harness::new();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let inv = must(&out, "INVITE").1.clone();
    h.feed_msg(PEER_SIDE, PEER, &peer_response(&inv, 180, None, &[]));
    let out = h.advance(Duration::from_secs(181));
    must(&out, "480");
    must(&out, "CANCEL");
    // The peer never answers the CANCEL or the INVITE: forgotten anyway.
    h.advance(Duration::from_secs(60));
    assert_eq!(h.core.call_count(), 0);
}

#[test]
fn a_2xx_never_acked_ends_both_legs() {
    let mut h = Harness::new();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let inv = must(&out, "INVITE").1.clone();
    let out = h.feed_msg(
        PEER_SIDE,
        PEER,
        &peer_response(&inv, 200, Some(&pcma_sdp(7000)), &[]),
    );
    must(&out, "200");
    let out = h.advance(Duration::from_secs(33));
    assert_eq!(bye_targets(&out), both());
    assert_eq!(h.core.call_count(), 0);
}

#[test]
fn an_unrefreshed_session_timer_ends_the_call() {
    let mut h = Harness::new();
    let (_, ok_ue) = answered_outbound(&mut h, true);
    assert_eq!(ok_ue.header("Session-Expires"), Some("1800;refresher=uac"));
    // The UE refreshes once: the timer starts again.
    let upd = ue_in_dialog(
        "UPDATE",
        3,
        &ok_ue,
        &["Session-Expires: 1800;refresher=uac"],
        "",
    );
    h.advance(Duration::from_secs(1000));
    let out = h.feed(ISC, SCSCF, &upd);
    must(&out, "200");
    assert!(find(&h.advance(Duration::from_secs(1000)), "BYE").is_none());
    let out = h.advance(Duration::from_secs(800));
    assert_eq!(bye_targets(&out), both());
    assert_eq!(h.core.call_count(), 0);
}

#[test]
fn we_refresh_when_the_peer_makes_us_the_refresher() {
    let mut h = Harness::new();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let inv = must(&out, "INVITE").1.clone();
    let ok = peer_response(
        &inv,
        200,
        Some(&pcma_sdp(7000)),
        &[
            ("Session-Expires", "120;refresher=uac"),
            ("Require", "timer"),
        ],
    );
    let out = h.feed_msg(PEER_SIDE, PEER, &ok);
    let ok_ue = must(&out, "200").1.clone();
    h.feed(ISC, SCSCF, &ue_in_dialog("ACK", 1, &ok_ue, &[], ""));
    let out = h.advance(Duration::from_secs(61));
    let (f, upd) = must(&out, "UPDATE");
    assert_eq!(f.remote, PEER.parse().unwrap());
    assert_eq!(upd.header("Session-Expires"), Some("120;refresher=uac"));
    assert!(upd.body().is_empty());
    // The peer does not answer: the UPDATE times out, the call ends.
    let out = h.advance(Duration::from_secs(40));
    assert!(find(&out, "BYE").is_some());
    assert_eq!(h.core.call_count(), 0);
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut h = Harness::new();
    for junk in [
        "",
        "\r\n",
        "INVITE",
        "SIP/2.0 200 OK\r\n\r\n",
        "\u{0}\u{1}xx",
    ] {
        h.feed(ISC, SCSCF, junk);
        h.feed(PEER_SIDE, PEER, junk);
    }
    let bad_sdp = ue_invite(&[]).replace("m=audio", "m=bogus");
    h.feed(ISC, SCSCF, &bad_sdp);
    assert!(h.core.stats().dropped > 0);
}

fn with_register() -> Harness {
    let mut h = Harness::new();
    let mut c = cfg();
    c.register = Some(RegisterConfig {
        user: "4930100".into(),
        password: "secret".into(),
        expires: 600,
    });
    h.core = B2bCore::new(c, h.media.clone()).with_ids(sip::Ids::seeded(8));
    h
}

/// The credentials in `m`'s `header` check out with the password for `method`.
fn creds_ok(m: &Message, header: &str, method: &str) -> bool {
    let c = sip::auth::Credentials::parse(m.header(header).unwrap()).unwrap();
    c.username == "4930100" && c.verify(b"secret", method, m.body())
}

#[test]
fn registration_answers_the_digest_challenge_and_refreshes_at_half_time() {
    let mut h = with_register();
    h.core.handle_start(h.now);
    let out = h.advance(Duration::ZERO);
    let (f, reg) = must(&out, "REGISTER");
    assert_eq!(f.remote, PEER.parse().unwrap());
    assert_eq!(reg.uri_str(), Some("sip:127.0.0.1:5080"));
    assert!(reg
        .header("Contact")
        .unwrap()
        .contains("4930100@127.0.0.1:5090"));
    let challenge = peer_response(
        reg,
        401,
        None,
        &[(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n0nce\", qop=\"auth\", algorithm=MD5",
        )],
    );
    let out = h.feed_msg(PEER_SIDE, PEER, &challenge);
    let (_, reg2) = must(&out, "REGISTER");
    assert_eq!(reg2.cseq().unwrap().seq, 2);
    assert!(creds_ok(reg2, "Authorization", "REGISTER"));
    assert!(!h.core.registered());
    let ok = peer_response(reg2, 200, None, &[("Expires", "300")]);
    h.feed_msg(PEER_SIDE, PEER, &ok);
    assert!(h.core.registered());
    let out = h.advance(Duration::from_secs(151));
    assert_eq!(must(&out, "REGISTER").1.cseq().unwrap().seq, 3);
    // A wrong password: challenged again and again; we give up after two tries.
    let last = must(&out, "REGISTER").1.clone();
    let mut req = last;
    let mut sent = 0;
    for _ in 0..4 {
        let ch = peer_response(
            &req,
            401,
            None,
            &[("WWW-Authenticate", "Digest realm=\"pbx\", nonce=\"n2\"")],
        );
        let out = h.feed_msg(PEER_SIDE, PEER, &ch);
        match find(&out, "REGISTER") {
            Some((_, r)) => {
                sent += 1;
                req = r.clone();
            }
            None => break,
        }
    }
    assert_eq!(sent, 2);
    assert!(!h.core.registered());
}

#[test]
fn a_challenged_invite_is_sent_again_with_credentials() {
    let mut h = with_register();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let inv = must(&out, "INVITE").1.clone();
    let challenge = peer_response(
        &inv,
        407,
        None,
        &[("Proxy-Authenticate", "Digest realm=\"pbx\", nonce=\"abc\"")],
    );
    let out = h.feed_msg(PEER_SIDE, PEER, &challenge);
    must(&out, "ACK");
    assert!(find(&out, "407").is_none(), "the caller does not hear it");
    let (_, inv2) = must(&out, "INVITE");
    assert_eq!(inv2.cseq().unwrap().seq, 2);
    assert_eq!(inv2.call_id().unwrap(), inv.call_id().unwrap());
    assert!(creds_ok(inv2, "Proxy-Authorization", "INVITE"));
    let out = h.feed_msg(
        PEER_SIDE,
        PEER,
        &peer_response(inv2, 200, Some(&pcma_sdp(7000)), &[]),
    );
    must(&out, "ACK");
    must(&out, "200");
    // A second challenge is the callee's answer: the caller hears 403 (it cannot answer a
    // challenge of the peer).
    let mut h = with_register();
    let out = h.feed(ISC, SCSCF, &ue_invite(&[]));
    let inv = must(&out, "INVITE").1.clone();
    let ch = |m: &Message| {
        peer_response(
            m,
            401,
            None,
            &[("WWW-Authenticate", "Digest realm=\"pbx\", nonce=\"x\"")],
        )
    };
    let out = h.feed_msg(PEER_SIDE, PEER, &ch(&inv));
    let inv2 = must(&out, "INVITE").1.clone();
    let out = h.feed_msg(PEER_SIDE, PEER, &ch(&inv2));
    must(&out, "403");
    assert_eq!(h.core.call_count(), 0);
}

/// The peer's INVITE for a subscriber, as in the inbound test.
fn peer_invite() -> String {
    request(
        &format!("INVITE sip:+4930999@{PEER_SIDE} SIP/2.0"),
        &[
            &format!("Via: SIP/2.0/UDP {PEER};branch=z9hG4bKpbx1"),
            "Max-Forwards: 70",
            &format!("From: <sip:200@{PEER}>;tag=pbx1"),
            &format!("To: <sip:+4930999@{PEER_SIDE}>"),
            "Call-ID: pbx-call-1",
            "CSeq: 10 INVITE",
            &format!("Contact: <sip:200@{PEER}>"),
        ],
        &pcma_sdp(7002),
    )
}

#[test]
fn a_reliable_183_with_the_callees_answer_is_pracked_and_told_to_the_plane() {
    let mut h = Harness::new();
    let out = h.feed(PEER_SIDE, PEER, &peer_invite());
    let inv = must(&out, "INVITE").1.clone();
    let mut amr = sdp::VolteOffer::new(
        sdp::Origin::new("-", "3", 1, "10.0.0.6".parse().unwrap()),
        "10.0.0.6".parse().unwrap(),
        40002,
    );
    amr.qos = None;
    let amr = String::from_utf8(amr.build().to_bytes()).unwrap();
    let r183 = peer_response(
        &inv,
        183,
        Some(&amr),
        &[
            ("Require", "100rel"),
            ("RSeq", "7"),
            ("Record-Route", "<sip:127.0.0.1:6060;lr>"),
        ],
    );
    let out = h.feed_msg(ISC, SCSCF, &r183);
    let (f, prack) = must(&out, "PRACK");
    assert_eq!(f.remote, SCSCF.parse().unwrap());
    assert_eq!(prack.header("RAck"), Some("7 1 INVITE"));
    assert!(
        h.media
            .log()
            .iter()
            .any(|l| l.starts_with("negotiated 1 Ims")),
        "{:?}",
        h.media.log()
    );
    // Toward the peer (no 100rel there): a plain 183.
    let (f, p) = must(&out, "183");
    assert_eq!(f.remote, PEER.parse().unwrap());
    assert!(p.header("RSeq").is_none());
    // The same 183 again (retransmitted): no second PRACK.
    let out = h.feed_msg(ISC, SCSCF, &r183);
    assert!(find(&out, "PRACK").is_none());
    // The 2xx without SDP completes the call (the answer came in the 183).
    let out = h.feed_msg(
        ISC,
        SCSCF,
        &peer_response(
            &inv,
            200,
            None,
            &[("Record-Route", "<sip:127.0.0.1:6060;lr>")],
        ),
    );
    must(&out, "ACK");
    let ok = must(&out, "200").1.clone();
    assert!(String::from_utf8(ok.body().to_vec())
        .unwrap()
        .contains("PCMA"));
}

#[test]
fn an_offerless_reinvite_gets_our_sdp_as_offer_and_the_ack_brings_the_answer() {
    let mut h = Harness::new();
    let (_, ok_ue) = answered_outbound(&mut h, false);
    let out = h.feed(ISC, SCSCF, &ue_in_dialog("INVITE", 2, &ok_ue, &[], ""));
    let ok = must(&out, "200").1.clone();
    let body = String::from_utf8(ok.body().to_vec()).unwrap();
    assert!(body.contains("AMR"), "our current SDP as the offer: {body}");
    let before = h.media.log().len();
    let ack = ue_in_dialog("ACK", 2, &ok, &[], &volte_sdp());
    h.feed(ISC, SCSCF, &ack);
    let log = h.media.log();
    assert_eq!(log.len(), before + 1, "{log:?}");
    assert!(log[before].starts_with("negotiated 1 Ims"), "{log:?}");
}
