//! The ISC core driven message by message: this test plays the S-CSCF (bytes in, bytes
//! out, no sockets) and a recording [`CallObserver`].

use super::{CoreConfig, IscCore};
use crate::event::{CallObserver, Offer, Progress, RawCaller, Source, Verdict};
use crate::late::{LateConfig, LateMode};
use bytes::Bytes;
use sip::{Flow, Message, Method, Protocol, ResponseBuilder};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const AS: ([u8; 4], u16) = ([127, 0, 0, 10], 5070);
const S: ([u8; 4], u16) = ([127, 0, 0, 1], 6060);
const STRANGER: ([u8; 4], u16) = ([127, 0, 0, 99], 5060);

fn addr(a: ([u8; 4], u16)) -> SocketAddr {
    SocketAddr::from(a)
}

#[derive(Default)]
struct Recorder {
    offers: Mutex<Vec<Offer>>,
    progress: Mutex<Vec<(String, Progress)>>,
    block: Mutex<bool>,
}

impl CallObserver for Recorder {
    fn offer(&self, offer: Offer) -> Verdict {
        self.offers.lock().unwrap().push(offer);
        if *self.block.lock().unwrap() {
            Verdict::Block {
                rule: "test".into(),
            }
        } else {
            Verdict::Ring
        }
    }
    fn progress(&self, call_id: &str, progress: Progress, _at: SystemTime) {
        self.progress
            .lock()
            .unwrap()
            .push((call_id.to_string(), progress));
    }
}

struct Net {
    core: IscCore,
    obs: Arc<Recorder>,
    now: Instant,
    /// Everything the core sent, with its destination.
    wire: Vec<(SocketAddr, Message)>,
}

fn config(record_route: bool, mode: LateMode) -> CoreConfig {
    CoreConfig {
        address: addr(AS),
        scscf: Some(addr(S)),
        trusted: vec![],
        record_route,
        dialog_max_age: Duration::from_secs(3600),
        identity: "sip:callerid@127.0.0.10:5070".into(),
        late: LateConfig {
            mode,
            ..LateConfig::default()
        },
    }
}

impl Net {
    fn new() -> Net {
        Net::with(config(true, LateMode::Message))
    }

    fn with(cfg: CoreConfig) -> Net {
        let obs = Arc::new(Recorder::default());
        let core = IscCore::new(cfg, obs.clone()).with_ids(sip::Ids::seeded(3));
        Net {
            core,
            obs,
            now: Instant::now(),
            wire: Vec::new(),
        }
    }

    fn sends(&mut self, at: ([u8; 4], u16), m: &Message) {
        let flow = Flow::new(addr(AS), addr(at), Protocol::Udp);
        self.core
            .handle_inbound(flow, Bytes::from(m.to_bytes()), self.now);
        self.run();
    }

    fn scscf_sends(&mut self, m: &Message) {
        self.sends(S, m)
    }

    fn run(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let m = Message::parse(&t.payload).expect("we send what we parse");
            self.wire.push((t.flow.remote, m));
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        // Every timer in between, in order (bounded: timers only move forward).
        for _ in 0..10_000 {
            match self.core.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.core.handle_timeout(self.now);
                    self.run();
                }
                _ => break,
            }
        }
        self.now = end;
        self.core.handle_timeout(self.now);
        self.run();
    }

    fn sent(&self) -> usize {
        self.wire.len()
    }

    /// Requests of `method` sent since index `since`.
    fn requests(&self, since: usize, method: Method) -> Vec<Message> {
        self.wire[since..]
            .iter()
            .filter(|(_, m)| m.method() == Some(&method))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// CANCELs of the INVITE `inv` (same top Via branch) sent since `since`, each once
    /// (UDP retransmissions are the same bytes).
    fn cancels_of(&self, since: usize, inv: &Message) -> Vec<Message> {
        let branch = inv.header_values("Via").next().unwrap().to_string();
        let mut out: Vec<Message> = Vec::new();
        for m in self.requests(since, Method::Cancel) {
            if m.header_values("Via").next() == Some(branch.as_str())
                && !out.iter().any(|o| o.to_bytes() == m.to_bytes())
            {
                out.push(m);
            }
        }
        out
    }

    /// Responses with `code` sent since `since`.
    fn responses(&self, since: usize, code: u16) -> Vec<Message> {
        self.wire[since..]
            .iter()
            .filter(|(_, m)| m.code() == Some(code))
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn progress(&self) -> Vec<Progress> {
        self.obs
            .progress
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| *p)
            .collect()
    }

    fn offers(&self) -> usize {
        self.obs.offers.lock().unwrap().len()
    }

    /// What the S-CSCF answers to a request the core sent it (our Via on top).
    fn answer(&mut self, req: &Message, code: u16) {
        let r = ResponseBuilder::new(req, code)
            .to_tag("callee")
            .build()
            .unwrap();
        self.scscf_sends(&r);
    }
}

fn parse(s: &str) -> Message {
    Message::parse(s.as_bytes()).unwrap()
}

/// The INVITE the S-CSCF sends on a terminating iFC.
fn invite(call_id: &str, served: Option<&str>, extra: &str) -> Message {
    let psu = served
        .map(|s| format!("P-Served-User: {s}\r\n"))
        .unwrap_or_default();
    parse(&format!(
        "INVITE sip:bob@ims.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKs-{call_id}\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKue;received=10.0.0.1\r\n\
         Max-Forwards: 68\r\n\
         Route: <sip:127.0.0.10:5070;lr>, <sip:127.0.0.1:6060;lr;isc=t0k3n>\r\n\
         Record-Route: <sip:127.0.0.1:6060;lr>\r\n\
         From: \"Alice\" <sip:alice@ims.test>;tag=a1\r\nTo: <sip:bob@ims.test>\r\n\
         Call-ID: {call_id}\r\nCSeq: 7 INVITE\r\n\
         P-Asserted-Identity: \"Alice\" <sip:alice@ims.test>, <tel:+4930123>\r\n\
         {psu}{extra}Contact: <sip:alice@10.0.0.1:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: 6\r\n\r\nv=0\r\n\r\n"
    ))
}

const TERM: Option<&str> = Some("<sip:bob@ims.test>;sescase=term;regstate=reg");

/// The CANCEL the S-CSCF sends for `inv` (as it received it).
fn cancel(inv: &Message, reason: Option<&str>) -> Message {
    let mut c = sip::builder::cancel_for(inv).unwrap();
    if let Some(r) = reason {
        c.append_header("Reason", r);
    }
    c
}

fn third_party_register(expires: u32, seq: u32) -> Message {
    parse(&format!(
        "REGISTER sip:127.0.0.10:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKreg{seq}\r\nMax-Forwards: 70\r\n\
         From: <sip:127.0.0.1:6060>;tag=s\r\nTo: <sip:bob@ims.test>\r\nCall-ID: reg-bob\r\n\
         CSeq: {seq} REGISTER\r\nContact: <sip:127.0.0.1:6060>\r\nExpires: {expires}\r\n\
         P-Associated-URI: <sip:bob@ims.test>, <tel:+4930999>\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// A ringing call: the INVITE forwarded to the S-CSCF and its 180 relayed back.
fn ringing(n: &mut Net, call_id: &str) -> (Message, Message) {
    let inv = invite(call_id, TERM, "");
    let before = n.sent();
    n.scscf_sends(&inv);
    let fwd = n.requests(before, Method::Invite).pop().expect("forwarded");
    n.answer(&fwd, 180);
    (inv, fwd)
}

#[test]
fn a_ringing_call_is_offered_forwarded_answered_and_ended_by_bye() {
    let mut n = Net::new();
    let (_inv, fwd) = ringing(&mut n, "c1");
    {
        let offers = n.obs.offers.lock().unwrap();
        assert_eq!(offers.len(), 1);
        let o = &offers[0];
        assert_eq!(o.call_id, "c1");
        assert_eq!(o.callee, "sip:bob@ims.test");
        assert_eq!(o.source, Source::Isc);
        assert_eq!(
            o.caller,
            RawCaller::Sip {
                p_asserted_identity: vec![
                    "\"Alice\" <sip:alice@ims.test>".into(),
                    "<tel:+4930123>".into()
                ],
                from: "\"Alice\" <sip:alice@ims.test>;tag=a1".into(),
                privacy: None,
                trusted: true,
            }
        );
    }
    // On to the S-CSCF along its marker, with our Record-Route and Via.
    assert_eq!(
        n.wire.iter().find(|(_, m)| m.is_request()).unwrap().0,
        addr(S)
    );
    let routes: Vec<&str> = fwd.header_values("Route").collect();
    assert_eq!(routes, ["<sip:127.0.0.1:6060;lr;isc=t0k3n>"]);
    let rr: Vec<&str> = fwd.header_values("Record-Route").collect();
    assert_eq!(rr, ["<sip:127.0.0.10:5070;lr>", "<sip:127.0.0.1:6060;lr>"]);
    assert!(fwd
        .header_values("Via")
        .next()
        .unwrap()
        .starts_with("SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bK"));
    assert_eq!(fwd.header("Max-Forwards"), Some("67"));
    // The 180 went back up without our Via.
    let up180 = n.responses(0, 180).pop().expect("180 relayed");
    assert!(up180
        .header_values("Via")
        .next()
        .unwrap()
        .contains("z9hG4bKs-c1"));
    assert!(n.progress().is_empty());

    let before = n.sent();
    n.answer(&fwd, 200);
    assert_eq!(n.responses(before, 200).len(), 1);
    assert_eq!(n.progress(), [Progress::Answered]);
    assert_eq!((n.core.call_count(), n.core.dialog_count()), (0, 1));

    // The BYE passes us (we record-routed): Ended, then forgotten with its 200.
    let bye = parse(
        "BYE sip:alice@10.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKbye\r\nMax-Forwards: 69\r\n\
         Route: <sip:127.0.0.10:5070;lr>, <sip:127.0.0.1:6060;lr>\r\n\
         From: <sip:bob@ims.test>;tag=callee\r\nTo: \"Alice\" <sip:alice@ims.test>;tag=a1\r\n\
         Call-ID: c1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
    );
    let before = n.sent();
    n.scscf_sends(&bye);
    let fwd_bye = n.requests(before, Method::Bye).pop().expect("BYE relayed");
    assert_eq!(
        fwd_bye.header_values("Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.1:6060;lr>"]
    );
    assert_eq!(n.progress(), [Progress::Answered, Progress::Ended]);
    n.answer(&fwd_bye, 200);
    assert_eq!(n.core.dialog_count(), 0);
    assert_eq!(n.responses(before, 200).len(), 1, "the BYE's 200 went up");
    // A retransmitted BYE reports nothing new.
    n.scscf_sends(&bye);
    assert_eq!(n.progress().len(), 2);
    n.advance(Duration::from_secs(64));
    assert_eq!(n.core.transaction_count(), 0);
    assert_eq!(n.core.late_pending(), 0);
}

#[test]
fn a_blocked_caller_gets_603_and_nothing_is_forwarded() {
    let mut n = Net::new();
    *n.obs.block.lock().unwrap() = true;
    n.scscf_sends(&invite("c2", TERM, ""));
    assert_eq!(n.responses(0, 603).len(), 1);
    assert!(n.requests(0, Method::Invite).is_empty());
    assert_eq!(n.wire.iter().filter(|(_, m)| m.is_request()).count(), 0);
    assert_eq!(n.core.stats().blocked, 1);
    // The retransmitted INVITE is answered by the transaction, not offered again.
    n.scscf_sends(&invite("c2", TERM, ""));
    assert_eq!(n.offers(), 1);
    assert_eq!(n.responses(0, 603).len(), 2);
    assert_eq!(n.core.call_count(), 0);
}

#[test]
fn the_callers_cancel_is_answered_relayed_and_reported_cancelled() {
    let mut n = Net::new();
    let (inv, _fwd) = ringing(&mut n, "c3");
    let before = n.sent();
    n.scscf_sends(&cancel(&inv, None));
    assert_eq!(
        n.responses(before, 200).len(),
        1,
        "CANCEL answered hop by hop"
    );
    let c = n
        .requests(before, Method::Cancel)
        .pop()
        .expect("CANCEL relayed");
    assert_eq!(c.header("Reason"), None);
    assert_eq!(n.progress(), [Progress::Cancelled]);
    // The S-CSCF's 487 goes up; nothing more is reported.
    let fwd = n.requests(0, Method::Invite).pop().unwrap();
    n.answer(&fwd, 487);
    assert_eq!(n.responses(before, 487).len(), 1);
    assert_eq!(n.progress(), [Progress::Cancelled]);
    assert_eq!(n.core.late_pending(), 1);
}

#[test]
fn a_cancel_with_reason_cause_200_is_answered_elsewhere_and_passes_the_reason_on() {
    let mut n = Net::new();
    let (inv, fwd) = ringing(&mut n, "c4");
    let before = n.sent();
    let reason = "SIP;cause=200;text=\"Call completed elsewhere\"";
    n.scscf_sends(&cancel(&inv, Some(reason)));
    let c = n
        .requests(before, Method::Cancel)
        .pop()
        .expect("CANCEL relayed");
    assert_eq!(c.header("Reason"), Some(reason));
    n.answer(&fwd, 487);
    assert_eq!(n.progress(), [Progress::AnsweredElsewhere]);
}

#[test]
fn a_cancel_before_any_provisional_waits_for_one_and_a_487_alone_means_cancelled() {
    let mut n = Net::new();
    let inv = invite("c5", TERM, "");
    n.scscf_sends(&inv);
    let fwd = n.requests(0, Method::Invite).pop().unwrap();
    let before = n.sent();
    n.scscf_sends(&cancel(&inv, None));
    assert!(
        n.requests(before, Method::Cancel).is_empty(),
        "no CANCEL before a provisional (RFC 3261 §9.1)"
    );
    n.answer(&fwd, 180);
    assert_eq!(n.requests(before, Method::Cancel).len(), 1);

    // Another call ends in a 487 the S-CSCF decided on its own (its CANCEL came from
    // elsewhere): Cancelled all the same.
    let (_inv, fwd6) = ringing(&mut n, "c6");
    n.answer(&fwd6, 487);
    assert_eq!(n.progress(), [Progress::Cancelled, Progress::Cancelled]);
}

#[test]
fn a_200_that_crosses_the_cancel_still_goes_up() {
    let mut n = Net::new();
    let (inv, fwd) = ringing(&mut n, "c7");
    n.scscf_sends(&cancel(&inv, None));
    let before = n.sent();
    n.answer(&fwd, 200);
    assert_eq!(n.responses(before, 200).len(), 1, "every 2xx goes up");
    assert_eq!(n.progress(), [Progress::Cancelled, Progress::Answered]);
    assert_eq!(n.core.late_pending(), 0, "answered: nothing to tell later");
}

#[test]
fn failures_are_reported_with_their_code() {
    let mut n = Net::new();
    let (_inv, fwd) = ringing(&mut n, "c8");
    n.answer(&fwd, 486);
    assert_eq!(n.progress(), [Progress::Failed(486)]);
    assert_eq!(n.responses(0, 486).len(), 1);
    assert_eq!(n.core.late_pending(), 0);
}

#[test]
fn originating_invites_and_other_methods_pass_unobserved() {
    let mut n = Net::new();
    n.scscf_sends(&invite(
        "o1",
        Some("<sip:alice@ims.test>;sescase=orig;regstate=reg"),
        "",
    ));
    let fwd = n.requests(0, Method::Invite).pop().expect("proxied");
    assert_eq!(fwd.header("Record-Route"), Some("<sip:127.0.0.1:6060;lr>"));
    n.answer(&fwd, 200);
    assert_eq!(n.responses(0, 200).len(), 1);
    let msg = parse(
        "MESSAGE sip:bob@ims.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKm1\r\nMax-Forwards: 69\r\n\
         Route: <sip:127.0.0.10:5070;lr>, <sip:127.0.0.1:6060;lr;isc=x>\r\n\
         From: <sip:alice@ims.test>;tag=m\r\nTo: <sip:bob@ims.test>\r\nCall-ID: m1\r\n\
         CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
    );
    let before = n.sent();
    n.scscf_sends(&msg);
    let fwd = n.requests(before, Method::Message).pop().expect("proxied");
    assert_eq!(fwd.body().as_ref(), b"hi");
    assert_eq!(fwd.header("Route"), Some("<sip:127.0.0.1:6060;lr;isc=x>"));
    n.answer(&fwd, 200);
    assert_eq!(n.offers(), 0);
    assert!(n.progress().is_empty());

    // OPTIONS to us is the keepalive: answered here.
    let before = n.sent();
    n.scscf_sends(&parse(
        "OPTIONS sip:127.0.0.10:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKo1\r\nMax-Forwards: 70\r\n\
         From: <sip:127.0.0.1:6060>;tag=o\r\nTo: <sip:127.0.0.10:5070>\r\nCall-ID: o1\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    ));
    assert_eq!(n.responses(before, 200).len(), 1);
    assert_eq!(n.sent(), before + 1);
}

#[test]
fn an_invite_without_p_served_user_counts_as_terminating_and_untrusted_pai_is_marked() {
    let mut n = Net::new();
    n.sends(STRANGER, &invite("t1", None, "Privacy: id\r\n"));
    let offers = n.obs.offers.lock().unwrap();
    assert_eq!(offers.len(), 1);
    match &offers[0].caller {
        RawCaller::Sip {
            trusted, privacy, ..
        } => {
            assert!(!trusted);
            assert_eq!(privacy.as_deref(), Some("id"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn third_party_register_is_answered_and_remembered_until_expiry_or_expires_0() {
    let mut n = Net::new();
    n.scscf_sends(&third_party_register(600, 1));
    let ok = n.responses(0, 200).pop().expect("200");
    assert_eq!(ok.header("Expires"), Some("600"));
    assert!(n.core.is_registered("sip:bob@ims.test", n.now));
    assert!(n.core.is_registered("tel:+4930999", n.now));
    n.scscf_sends(&third_party_register(0, 2));
    assert!(!n.core.is_registered("sip:bob@ims.test", n.now));
    n.scscf_sends(&third_party_register(60, 3));
    n.advance(Duration::from_secs(61));
    assert_eq!(n.core.registration_count(), 0, "forgotten at expiry");
    // Only the S-CSCF may send them.
    let before = n.sent();
    n.sends(STRANGER, &third_party_register(600, 4));
    assert_eq!(n.responses(before, 403).len(), 1);
    assert_eq!(n.core.registration_count(), 0);
}

/// The Request-URI names the callee by a SIP URI; the number shown is the tel URI of the
/// set their third-party REGISTER announced, and the SIP URI while nothing is known.
#[test]
fn the_callee_is_shown_by_the_tel_uri_of_their_registration_set() {
    let mut n = Net::new();
    n.scscf_sends(&invite("before-reg", TERM, ""));
    n.scscf_sends(&third_party_register(600, 1));
    n.scscf_sends(&invite("after-reg", TERM, ""));
    n.advance(Duration::from_secs(601));
    n.scscf_sends(&invite("after-expiry", TERM, ""));
    let callees: Vec<String> = n
        .obs
        .offers
        .lock()
        .unwrap()
        .iter()
        .map(|o| o.callee.clone())
        .collect();
    assert_eq!(
        callees,
        ["sip:bob@ims.test", "tel:+4930999", "sip:bob@ims.test"]
    );
}

/// A call cancelled, then the callee registers within the window: one MESSAGE through
/// the S-CSCF, once; after the window, nothing.
#[test]
fn late_registration_gets_a_message_once_and_only_within_the_window() {
    let mut n = Net::new();
    let (inv, fwd) = ringing(&mut n, "late1");
    n.scscf_sends(&cancel(&inv, None));
    n.answer(&fwd, 487);
    n.advance(Duration::from_secs(10));
    let before = n.sent();
    n.scscf_sends(&third_party_register(600, 1));
    let msgs = n.requests(before, Method::Message);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.uri_str(), Some("sip:bob@ims.test"));
    assert_eq!(m.header("Route"), Some("<sip:127.0.0.1:6060;lr>"));
    assert_eq!(
        n.wire
            .iter()
            .rev()
            .find(|(_, x)| x.method() == Some(&Method::Message))
            .unwrap()
            .0,
        addr(S)
    );
    assert!(m
        .header("From")
        .unwrap()
        .starts_with("<sip:callerid@127.0.0.10:5070>;tag="));
    assert_eq!(m.body().as_ref(), b"Missed call from Alice (+4930123)");
    assert_eq!(m.call_id().unwrap(), "late1", "on the original Call-ID");
    n.answer(m, 200);
    // Re-registering again tells nothing more.
    let before = n.sent();
    n.scscf_sends(&third_party_register(600, 2));
    assert!(n.requests(before, Method::Message).is_empty());

    // A second call, answered elsewhere; the registration comes after the window.
    let (inv, fwd) = ringing(&mut n, "late2");
    n.scscf_sends(&cancel(
        &inv,
        Some("SIP;cause=200;text=\"Call completed elsewhere\""),
    ));
    n.answer(&fwd, 487);
    n.advance(Duration::from_secs(31));
    let before = n.sent();
    n.scscf_sends(&third_party_register(600, 3));
    assert!(n.requests(before, Method::Message).is_empty());
    assert_eq!(n.core.late_pending(), 0);
    n.advance(Duration::from_secs(64));
    assert_eq!(n.core.own_pending(), 0);
    assert_eq!(n.core.transaction_count(), 0);
}

/// Cancel mode: INVITE on the original Call-ID, CANCEL after the phone's 180, with the
/// Reason for answered elsewhere; the INVITE coming back through us is not a new call.
#[test]
fn late_registration_in_cancel_mode_replays_the_invite_and_cancels_it() {
    let mut n = Net::with(config(true, LateMode::Cancel));
    let (inv, fwd) = ringing(&mut n, "late3");
    let reason = "SIP;cause=200;text=\"Call completed elsewhere\"";
    n.scscf_sends(&cancel(&inv, Some(reason)));
    n.answer(&fwd, 487);
    let before = n.sent();
    n.scscf_sends(&third_party_register(600, 1));
    let again = n
        .requests(before, Method::Invite)
        .pop()
        .expect("late INVITE");
    assert_eq!(again.call_id().unwrap(), "late3");
    assert_eq!(again.cseq().unwrap().seq, 8, "the next CSeq: no 482 merge");
    assert_eq!(again.header("From"), inv.header("From"));
    assert_eq!(again.header("Route"), Some("<sip:127.0.0.1:6060;lr>"));
    assert_eq!(again.body().as_ref(), inv.body().as_ref());
    let offers = n.offers();

    // The S-CSCF runs bob's terminating iFC: the INVITE comes back to us.
    let mut back = again.clone();
    back.set_header(
        "Route",
        "<sip:127.0.0.10:5070;lr>, <sip:127.0.0.1:6060;lr;isc=t2>",
    );
    back.prepend_header("Via", "SIP/2.0/UDP 127.0.0.1:6060;branch=z9hG4bKback");
    back.set_header("P-Served-User", TERM.unwrap());
    let before = n.sent();
    n.scscf_sends(&back);
    assert_eq!(n.offers(), offers, "our own INVITE is not offered");
    let relayed = n
        .requests(before, Method::Invite)
        .pop()
        .expect("proxied on");
    assert_eq!(relayed.header("Record-Route"), None);

    // A 100 alone does not let the CANCEL go at once; the phone's 180 does.
    n.answer(&again, 100);
    assert!(n.cancels_of(before, &again).is_empty());
    n.answer(&again, 180);
    let c = n.cancels_of(before, &again);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].header("Reason"), Some(reason));
    assert_eq!(c[0].call_id().unwrap(), "late3");
    n.answer(&again, 487);
    // No second CANCEL when the delay runs out.
    n.advance(Duration::from_secs(5));
    assert_eq!(n.cancels_of(before, &again).len(), 1);
}

#[test]
fn cancel_mode_for_a_missed_call_cancels_without_reason_after_the_delay() {
    let mut n = Net::with(config(true, LateMode::Cancel));
    let (inv, fwd) = ringing(&mut n, "late4");
    n.scscf_sends(&cancel(&inv, None));
    n.answer(&fwd, 487);
    let before = n.sent();
    n.scscf_sends(&third_party_register(600, 1));
    let again = n
        .requests(before, Method::Invite)
        .pop()
        .expect("late INVITE");
    n.answer(&again, 100);
    n.advance(Duration::from_millis(1500));
    assert!(n.cancels_of(before, &again).is_empty());
    n.advance(Duration::from_millis(600));
    let c = n.cancels_of(before, &again);
    assert_eq!(c.len(), 1, "after the delay, a 100 is enough");
    assert_eq!(c[0].header("Reason"), None);
}

#[test]
fn without_record_route_answered_is_followed_by_ended_at_once() {
    let mut n = Net::with(config(false, LateMode::Message));
    let (_inv, fwd) = ringing(&mut n, "nr1");
    assert_eq!(fwd.header("Record-Route"), Some("<sip:127.0.0.1:6060;lr>"));
    n.answer(&fwd, 200);
    assert_eq!(n.progress(), [Progress::Answered, Progress::Ended]);
    assert_eq!(n.core.dialog_count(), 0);
}

#[test]
fn timers_end_silent_branches_and_dialogs_without_bye() {
    let mut n = Net::new();
    // The S-CSCF never answers: Timer B, 408 upstream, Failed(408).
    n.scscf_sends(&invite("s1", TERM, ""));
    n.advance(Duration::from_secs(40));
    assert_eq!(n.progress(), [Progress::Failed(408)]);
    assert!(!n.responses(0, 408).is_empty());
    assert_eq!(n.core.call_count(), 0);

    // Answered, the BYE never comes: ended at the dialog's max age.
    let (_inv, fwd) = ringing(&mut n, "s2");
    n.answer(&fwd, 200);
    assert_eq!(n.core.dialog_count(), 1);
    n.advance(Duration::from_secs(3601));
    assert_eq!(n.core.dialog_count(), 0);
    let p = n.progress();
    assert_eq!(p[p.len() - 2..], [Progress::Answered, Progress::Ended]);
    assert_eq!(n.core.transaction_count(), 0);
    assert_eq!(n.core.call_count(), 0);
    assert_eq!(n.core.poll_timeout(), None, "nothing left to time");
}

#[test]
fn send_message_goes_to_the_s_cscf_and_needs_one() {
    let mut n = Net::new();
    assert!(n
        .core
        .send_message("tel:+4930999", "Call from Alice (+4930123)", n.now));
    n.run();
    let m = n.requests(0, Method::Message).pop().unwrap();
    assert_eq!(m.uri_str(), Some("tel:+4930999"));
    assert_eq!(m.header("Content-Type"), Some("text/plain;charset=UTF-8"));
    assert_eq!(
        m.header("P-Asserted-Identity"),
        Some("<sip:callerid@127.0.0.10:5070>")
    );
    assert!(!n.core.send_message("not a uri", "x", n.now));
    let mut cfg = config(true, LateMode::Message);
    cfg.scscf = None;
    let mut lone = Net::with(cfg);
    assert!(!lone.core.send_message("sip:bob@ims.test", "x", lone.now));
}

#[test]
fn unparsable_input_is_dropped_without_panic() {
    let mut n = Net::new();
    let flow = Flow::new(addr(AS), addr(S), Protocol::Udp);
    for junk in [
        &b""[..],
        b"\xff\xfe",
        b"INVITE sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
    ] {
        n.core.handle_inbound(flow, Bytes::from_static(junk), n.now);
        n.run();
    }
    assert!(n.core.stats().dropped >= 2);
    assert_eq!(n.offers(), 0);
}

#[test]
fn caller_descriptions() {
    use super::core::describe_caller;
    let pai = vec![
        "\"Alice\" <sip:alice@ims.test>".to_string(),
        "<tel:+4930123>".to_string(),
    ];
    assert_eq!(describe_caller(&pai, "", None), "Alice (+4930123)");
    assert_eq!(describe_caller(&pai, "", Some("id")), "Anonymous");
    assert_eq!(
        describe_caller(&[], "<sip:bob@ims.test>;tag=1", Some("none")),
        "bob"
    );
    assert_eq!(
        describe_caller(
            &[],
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1",
            None
        ),
        "Anonymous"
    );
    assert_eq!(describe_caller(&[], "garbage<", None), "an unknown caller");
}

/// The callee's device may register again before the 487 is back through us: the call
/// counts as missed from the CANCEL on.
#[test]
fn a_registration_before_the_487_still_hears_of_the_cancelled_call() {
    let mut n = Net::new();
    let (inv, fwd) = ringing(&mut n, "early");
    n.scscf_sends(&cancel(&inv, None));
    let before = n.sent();
    n.scscf_sends(&third_party_register(600, 1));
    assert_eq!(n.requests(before, Method::Message).len(), 1);
    n.answer(&fwd, 487);
    assert_eq!(n.core.late_pending(), 0, "told once");
}

/// Every prefix of real messages, and messages with bytes flipped (a fixed xorshift
/// sequence, reproducible), go in from the S-CSCF with timers running: nothing panics and
/// every table empties once the timers have run out.
#[test]
fn truncated_and_mangled_messages_never_panic_and_leave_nothing_behind() {
    let inv = invite("m1", TERM, "");
    let samples: Vec<Vec<u8>> = vec![
        inv.to_bytes(),
        cancel(&inv, Some("SIP;cause=200")).to_bytes(),
        third_party_register(600, 1).to_bytes(),
        invite("m2", None, "Privacy: id\r\n").to_bytes(),
    ];
    let mut n = Net::new();
    let flow = Flow::new(addr(AS), addr(S), Protocol::Udp);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for s in &samples {
        for cut in (0..s.len()).step_by(5) {
            n.core
                .handle_inbound(flow, Bytes::copy_from_slice(&s[..cut]), n.now);
            n.run();
        }
        for _ in 0..300 {
            let mut m = s.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            n.core.handle_inbound(flow, Bytes::from(m), n.now);
            n.run();
            n.advance(Duration::from_millis(50));
        }
    }
    n.advance(Duration::from_secs(4 * 3600));
    assert_eq!(n.core.transaction_count(), 0);
    assert_eq!(n.core.call_count(), 0);
    assert_eq!(n.core.dialog_count(), 0);
    assert_eq!(n.core.registration_count(), 0);
    assert_eq!(n.core.late_pending(), 0);
    assert_eq!(n.core.own_pending(), 0);
}
