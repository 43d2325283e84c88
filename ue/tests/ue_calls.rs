//! Calls between two sans-IO UE cores, both registered with IMS AKA and sec-agree against
//! the scripted registrar of `common`, their messages moved by a minimal relay that
//! behaves like the P-CSCF/S-CSCF path would toward them (TS 24.229 §5.2.6–5.2.7): it
//! checks that every request arrives over the SA from port_uc at port_ps with our
//! P-CSCF's entry first in Route, pops its own and the Service-Route entries,
//! record-routes each side's protected server port, retargets initial requests to the
//! callee's registered contact and sends them to port_us from port_pc. No sockets, no
//! clock: `now` advances by hand, timers included.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use akav1::Milenage;
use common::*;
use sip::{Flow, Message, Method, Protocol};
use ue::{
    AnswerMode, CallEnd, CallError, CallPhase, CallRef, CallTimeout, EventKind, LocalSecurity,
    Party, SaAction, Ue, UeConfig,
};
use xfrm::SaSet;

const SERVICE_ROUTE: &str = "<sip:orig@scscf.ims.mnc001.mcc001.3gppnetwork.org;lr>";

fn alice() -> String {
    format!("sip:alice@{DOMAIN}")
}
fn bob() -> String {
    format!("sip:bob@{DOMAIN}")
}

/// A registered UE: the whole AKA + sec-agree registration against the scripted registrar.
fn register(cfg: UeConfig, server_port: u16, t: Instant) -> (Ue, SaSet) {
    let mut ue = Ue::new(cfg.clone()).unwrap();
    let mut net = Net::new(Milenage::from_op(&K, &OP));
    net.impi = cfg.impi.clone();
    net.impu = cfg.impu.clone();
    net.ue_ip = cfg.local_ip;
    net.next_server_port = server_port;
    ue.register(t);
    let (r1, f1) = one_transmit(&mut ue);
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    let set = match actions(&mut ue).as_slice() {
        [SaAction::Install { set, .. }] => set.clone(),
        other => panic!("expected one install, got {other:?}"),
    };
    ue.handle_sa_installed(0, Ok(1), t);
    let (r2, f2) = one_transmit(&mut ue);
    net.check_answer(&r2);
    deliver(&mut ue, &net.ok(&r2, 3600), f2, t);
    let _ = events(&mut ue);
    let _ = actions(&mut ue);
    assert!(ue.is_registered());
    (ue, set)
}

fn ue_config(user: &str, ip: &str, port_uc: u16) -> UeConfig {
    let mut c = config();
    c.impi = format!("{user}@{DOMAIN}");
    c.impu = format!("sip:{user}@{DOMAIN}");
    c.local_ip = ip.parse().unwrap();
    // RTP every 20 ms would fire thousands of timers in the long `advance`s below: only
    // the media tests turn it on
    c.media.enabled = false;
    c.security = LocalSecurity {
        spi_uc: 11111 + u32::from(port_uc),
        spi_us: 22222 + u32::from(port_uc),
        port_uc,
        port_us: port_uc + 1,
    };
    c
}

/// Two registered UEs and the relay between them.
struct Lab {
    ues: Vec<Ue>,
    sets: Vec<SaSet>,
    users: Vec<&'static str>,
    now: Instant,
    /// every message a UE sent: (sender, message, flow)
    log: Vec<(usize, Message, Flow)>,
    /// every event of each UE
    events: Vec<Vec<EventKind>>,
    /// the relay loses what this matches
    drop: fn(&Message) -> bool,
    /// the relay overwrites random bytes of a third of what it delivers
    mangle: Option<rand::rngs::StdRng>,
    /// RTP packets moved from UE i to the other
    rtp: [u32; 2],
    /// RTCP reports moved from UE i to the other
    rtcp: [u32; 2],
    /// RTP from UE i is lost
    rtp_lost: [bool; 2],
}

impl Lab {
    fn new(a: impl FnOnce(&mut UeConfig), b: impl FnOnce(&mut UeConfig)) -> Lab {
        let now = Instant::now();
        let mut ca = ue_config("alice", "127.0.0.2", 6100);
        let mut cb = ue_config("bob", "127.0.0.3", 6200);
        a(&mut ca);
        b(&mut cb);
        let (ua, sa) = register(ca, 7100, now);
        let (ub, sb) = register(cb, 7200, now);
        Lab {
            ues: vec![ua, ub],
            sets: vec![sa, sb],
            users: vec!["alice", "bob"],
            now,
            log: Vec::new(),
            events: vec![Vec::new(), Vec::new()],
            drop: |_| false,
            mangle: None,
            rtp: [0; 2],
            rtcp: [0; 2],
            rtp_lost: [false; 2],
        }
    }

    fn uc(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.sets[i].ue, self.sets[i].port_uc)
    }
    fn us(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.sets[i].ue, self.sets[i].port_us)
    }
    fn ps(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.sets[i].pcscf, self.sets[i].port_ps)
    }
    fn pc(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.sets[i].pcscf, self.sets[i].port_pc)
    }
    /// The P-CSCF's Record-Route entry toward UE `i`: its protected server port.
    fn rr(&self, i: usize) -> String {
        format!("<sip:{}:{};lr>", self.sets[i].pcscf, self.sets[i].port_ps)
    }

    /// What the relay does with a message UE `i` sent: the receiving UE, the message and
    /// the flow it arrives on; `Err` names the broken rule of the contract.
    fn route(
        &self,
        i: usize,
        mut m: Message,
        flow: Flow,
    ) -> Result<(usize, Message, Flow), String> {
        macro_rules! ensure {
            ($cond:expr, $($why:tt)+) => {
                if !$cond {
                    return Err(format!($($why)+));
                }
            };
        }
        if !m.is_request() {
            ensure!(
                (flow.local, flow.remote) == (Some(self.us(i)), self.pc(i)),
                "responses leave on the flow the request came on: port_us → port_pc, not {flow:?}"
            );
            ensure!(m.pop_header_value("Via").is_some(), "the relay's Via");
            let via = m.top_via().map_err(|e| e.to_string())?;
            let j = (0..self.ues.len())
                .find(|&j| via.host == self.sets[j].ue.to_string())
                .ok_or("a UE's Via")?;
            return Ok((j, m, Flow::new(self.uc(j), self.ps(j), Protocol::Udp)));
        }
        ensure!(
            (flow.local, flow.remote) == (Some(self.uc(i)), self.ps(i)),
            "requests go over the SA from port_uc to port_ps: {} on {flow:?}",
            m.start_line_str()
        );
        let first = m.pop_header_value("Route").ok_or("no Route")?;
        ensure!(
            first == self.rr(i),
            "our P-CSCF's protected port comes first, not {first}"
        );
        let next = m.pop_header_value("Route").ok_or("no second Route")?;
        let uri = m.request_uri().map_err(|e| e.to_string())?;
        let j = if next == SERVICE_ROUTE {
            // initial request (or its CANCEL / non-2xx ACK): S-CSCF retargeting to the
            // callee's registered contact
            let j = (0..self.ues.len())
                .find(|&j| uri.user.as_deref() == Some(self.users[j]))
                .ok_or("an unknown callee")?;
            m.set_uri(&format!(
                "sip:{}@{}:{}",
                self.users[j], self.sets[j].ue, self.sets[j].port_us
            ));
            if m.method() == Some(&Method::Invite) {
                m.prepend_header("Record-Route", &self.rr(i));
                m.prepend_header("Record-Route", &self.rr(j));
            }
            j
        } else {
            let j = (0..self.ues.len())
                .find(|&j| next == self.rr(j))
                .ok_or("not the other side's Record-Route entry")?;
            ensure!(
                (uri.host.as_str(), uri.port)
                    == (
                        self.sets[j].ue.to_string().as_str(),
                        Some(self.sets[j].port_us)
                    ),
                "in-dialog requests target the peer's Contact, not {uri}"
            );
            j
        };
        ensure!(!m.has_header("Route"), "nothing beyond the route set");
        let branch = m.branch().map_err(|e| e.to_string())?;
        m.prepend_header(
            "Via",
            &format!(
                "SIP/2.0/UDP {}:{};branch=z9hG4bKrelay{}",
                self.sets[j].pcscf,
                self.sets[j].port_pc,
                branch.trim_start_matches("z9hG4bK")
            ),
        );
        Ok((j, m, Flow::new(self.us(j), self.pc(j), Protocol::Udp)))
    }

    /// Moves messages until both UEs are quiet.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = Vec::new();
            for i in 0..self.ues.len() {
                while let Some(t) = self.ues[i].poll_transmit() {
                    let m = Message::parse(&t.payload).unwrap();
                    self.log.push((i, m.clone(), t.flow));
                    if (self.drop)(&m) {
                        continue;
                    }
                    match self.route(i, m, t.flow) {
                        Ok(x) => moved.push(x),
                        // with mangled input the UEs may answer anything: the relay drops
                        // what it cannot route
                        Err(_) if self.mangle.is_some() => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                while let Some(e) = self.ues[i].poll_event() {
                    self.events[i].push(e.kind);
                }
                // RTP goes straight from UE to UE (no media anchor on this path), from
                // and to the RTP port each SDP announced
                let mut buf = [0u8; 1500];
                while let Some((n, to)) = self.ues[i].poll_media_transmit(self.now, &mut buf) {
                    let from = SocketAddr::new(
                        self.ues[i].config().local_ip,
                        self.ues[i].config().calls.rtp_port,
                    );
                    let j = 1 - i;
                    let rtcp = media::rtp::is_rtcp(&buf[..n]);
                    let port = self.ues[j].config().calls.rtp_port;
                    // RTCP to the next port (RFC 3550 §11)
                    let peer = SocketAddr::new(
                        self.ues[j].config().local_ip,
                        if rtcp { port + 1 } else { port },
                    );
                    assert_eq!(to, peer, "RTP goes to the peer's c=/m= address");
                    if rtcp {
                        self.rtcp[i] += 1;
                    } else {
                        self.rtp[i] += 1;
                    }
                    if !self.rtp_lost[i] {
                        self.ues[j].handle_media(from, &buf[..n], self.now);
                    }
                }
                while let Some(e) = self.ues[i].poll_event() {
                    self.events[i].push(e.kind);
                }
            }
            if moved.is_empty() {
                return;
            }
            for (j, m, flow) in moved {
                let mut bytes = m.to_bytes();
                if let Some(rng) = self.mangle.as_mut() {
                    use rand::Rng;
                    if rng.random_range(0..3) == 0 {
                        for _ in 0..rng.random_range(1..6) {
                            let k = rng.random_range(0..bytes.len());
                            bytes[k] = rng.random();
                        }
                    }
                }
                self.ues[j].handle_datagram(flow, &bytes, self.now);
            }
        }
        panic!("messages kept flowing");
    }

    /// Lets `d` pass, firing every timer on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..10_000 {
            let next = self.ues.iter_mut().filter_map(|u| u.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for u in &mut self.ues {
                        if u.poll_timeout().is_some_and(|x| x <= self.now) {
                            u.handle_timeout(self.now);
                        }
                    }
                    self.pump();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("timers kept firing");
    }

    /// Messages UE `i` sent whose start line begins with `what` ("INVITE", "180" …).
    fn sent(&self, i: usize, what: &str) -> Vec<(Message, Flow)> {
        self.log
            .iter()
            .filter(|(s, m, _)| *s == i && m.start_line_str().starts_with(what))
            .map(|(_, m, f)| (m.clone(), *f))
            .collect()
    }

    fn incoming(&self, i: usize) -> CallRef {
        self.events[i]
            .iter()
            .find_map(|e| match e {
                EventKind::IncomingCall { call, .. } => Some(*call),
                _ => None,
            })
            .expect("an incoming call")
    }

    fn ended(&self, i: usize, call: CallRef) -> Option<CallEnd> {
        self.events[i].iter().find_map(|e| match e {
            EventKind::CallEnded { call: c, end } if *c == call => Some(end.clone()),
            _ => None,
        })
    }

    fn answered(&self, i: usize, call: CallRef) -> bool {
        self.events[i]
            .iter()
            .any(|e| matches!(e, EventKind::CallAnswered { call: c, .. } if *c == call))
    }

    /// Both UEs' transactions and calls are gone after every timer ran out.
    fn assert_all_ended(&mut self) {
        self.advance(Duration::from_secs(60));
        for u in &self.ues {
            assert_eq!(u.transaction_count(), 0);
            assert!(u.calls().is_empty(), "{:?}", u.calls());
        }
    }
}

trait StartLine {
    fn start_line_str(&self) -> String;
}

impl StartLine for Message {
    fn start_line_str(&self) -> String {
        match (self.method(), self.code()) {
            (Some(m), _) => format!("{m} {}", self.uri_str().unwrap_or("")),
            (None, Some(c)) => format!(
                "{c} {}",
                self.cseq()
                    .map(|c| c.method.to_string())
                    .unwrap_or_default()
            ),
            _ => String::new(),
        }
    }
}

#[test]
fn basic_call_headers_routes_and_bye_from_the_caller() {
    let mut lab = Lab::new(|_| {}, |_| {});
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();

    // the initial INVITE exactly as the contract says
    let (inv, flow) = lab.sent(0, "INVITE").remove(0);
    assert_eq!(flow.local, Some(lab.uc(0)));
    assert_eq!(flow.remote, lab.ps(0));
    assert_eq!(inv.uri_str(), Some(bob().as_str()));
    assert_eq!(
        inv.header("Route").unwrap(),
        format!("{}, {SERVICE_ROUTE}", lab.rr(0))
    );
    let top = inv.top_via().unwrap();
    assert_eq!(top.sent_by(), lab.uc(0).to_string());
    assert!(top.params.has("rport"));
    let contact = &inv.name_addrs("Contact").unwrap()[0];
    assert_eq!(contact.uri.to_string(), "sip:alice@127.0.0.2:6101");
    assert_eq!(
        contact.params.get("+g.3gpp.icsi-ref"),
        Some("\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"")
    );
    assert!(contact.params.get("expires").is_none());
    assert_eq!(inv.from_header().unwrap().uri.to_string(), alice());
    assert!(inv.from_header().unwrap().tag().is_some());
    assert_eq!(inv.to_header().unwrap().tag(), None);
    assert!(!inv.has_header("P-Asserted-Identity"));
    assert!(!inv.has_header("P-Preferred-Identity"));
    assert!(inv.has_option_tag("Require", "sec-agree"));
    assert!(inv.has_option_tag("Proxy-Require", "sec-agree"));
    assert!(!inv.security_verify().unwrap().is_empty());
    assert!(inv.has_option_tag("Supported", "100rel"));
    assert!(inv.has_option_tag("Supported", "timer"));
    assert_eq!(
        inv.header("P-Preferred-Service"),
        Some("urn:urn-7:3gpp-service.ims.icsi.mmtel")
    );
    assert!(inv
        .header("Accept-Contact")
        .unwrap()
        .contains("+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\""));
    assert!(inv.header("Allow").unwrap().contains("PRACK"));
    assert_eq!(inv.header("Content-Type"), Some("application/sdp"));
    let sdp = std::str::from_utf8(inv.body()).unwrap();
    assert!(sdp.contains("a=rtpmap:116 AMR-WB/16000/1"), "{sdp}");
    assert!(sdp.contains("c=IN IP4 127.0.0.2"));

    // B rings on port_us, A hears it
    let b_call = lab.incoming(1);
    assert_eq!(lab.ues[1].call_phase(b_call), Some(CallPhase::Ringing));
    let (ringing, rflow) = lab.sent(1, "180").remove(0);
    assert_eq!(rflow.local, Some(lab.us(1)));
    assert_eq!(
        ringing.header_values("Record-Route").collect::<Vec<_>>(),
        vec![lab.rr(1), lab.rr(0)]
    );
    assert!(lab.events[0].contains(&EventKind::CallRinging { call, code: 180 }));
    assert_eq!(lab.ues[0].call_phase(call), Some(CallPhase::Ringing));

    // auto-answer after 1 s: 200 with the SDP answer, ACK
    lab.advance(Duration::from_millis(1500));
    let (ok, _) = lab.sent(1, "200 INVITE").remove(0);
    assert_eq!(
        ok.name_addrs("Contact").unwrap()[0].uri.to_string(),
        "sip:bob@127.0.0.3:6201"
    );
    let answer = std::str::from_utf8(ok.body()).unwrap();
    assert!(answer.contains("m=audio 40000 RTP/AVP 116 110"), "{answer}");
    assert!(lab.answered(0, call));
    assert!(lab.answered(1, b_call));
    let (ack, aflow) = lab.sent(0, "ACK").remove(0);
    assert_eq!(aflow.remote, lab.ps(0));
    assert_eq!(ack.cseq().unwrap().to_string(), "1 ACK");
    assert_eq!(ack.uri_str(), Some("sip:bob@127.0.0.3:6201"));
    assert_eq!(
        ack.header("Route").unwrap(),
        format!("{}, {}", lab.rr(0), lab.rr(1)),
        "the route set: Record-Route reversed, our P-CSCF first"
    );
    assert!(ack.has_option_tag("Require", "sec-agree"));
    assert_eq!(lab.sent(1, "200 INVITE").len(), 1, "ACK stops the 2xx");

    // A hangs up
    lab.ues[0].hangup(call, lab.now).unwrap();
    lab.pump();
    let (bye, bflow) = lab.sent(0, "BYE").remove(0);
    assert_eq!(bflow.local, Some(lab.uc(0)));
    assert_eq!(bye.cseq().unwrap().to_string(), "2 BYE");
    assert_eq!(
        bye.header("Route").unwrap(),
        format!("{}, {}", lab.rr(0), lab.rr(1))
    );
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::HungUp { by: Party::Local })
    );
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::HungUp { by: Party::Remote })
    );
    assert_eq!(
        lab.ues[0].call_phase(call),
        Some(CallPhase::Ended(CallEnd::HungUp { by: Party::Local }))
    );
    lab.assert_all_ended();
}

#[test]
fn the_callee_hangs_up_along_its_own_route_set() {
    let mut lab = Lab::new(|_| {}, |b| b.calls.answer = AnswerMode::Ring);
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    let b_call = lab.incoming(1);
    lab.ues[1].answer(b_call, lab.now).unwrap();
    lab.pump();
    assert!(lab.answered(0, call) && lab.answered(1, b_call));
    lab.ues[1].hangup(b_call, lab.now).unwrap();
    lab.pump();
    let (bye, flow) = lab.sent(1, "BYE").remove(0);
    assert_eq!((flow.local, flow.remote), (Some(lab.uc(1)), lab.ps(1)));
    assert_eq!(bye.uri_str(), Some("sip:alice@127.0.0.2:6101"));
    assert_eq!(
        bye.header("Route").unwrap(),
        format!("{}, {}", lab.rr(1), lab.rr(0))
    );
    assert_eq!(bye.from_header().unwrap().uri.to_string(), bob());
    assert_eq!(bye.cseq().unwrap().seq, 1, "the callee's own CSeq space");
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::HungUp { by: Party::Remote })
    );
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::HungUp { by: Party::Local })
    );
    lab.assert_all_ended();
}

#[test]
fn busy_and_decline() {
    for code in [486u16, 603] {
        let mut lab = Lab::new(|_| {}, |b| b.calls.answer = AnswerMode::Reject(code));
        let call = lab.ues[0].call(&bob(), lab.now).unwrap();
        lab.pump();
        let b_call = lab.incoming(1);
        assert!(lab.sent(1, "180").is_empty());
        match lab.ended(0, call) {
            Some(CallEnd::Rejected {
                code: c,
                by: Party::Remote,
                ..
            }) => assert_eq!(c, code),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            lab.ended(1, b_call),
            Some(CallEnd::Rejected { code: c, by: Party::Local, .. }) if c == code
        ));
        // the caller's transaction ACKed the failure hop by hop
        assert_eq!(lab.sent(0, "ACK").len(), 1);
        lab.assert_all_ended();
    }
}

#[test]
fn cancel_before_the_answer_ends_with_487() {
    let mut lab = Lab::new(|_| {}, |b| b.calls.answer = AnswerMode::Ring);
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    let b_call = lab.incoming(1);
    lab.ues[0].hangup(call, lab.now).unwrap();
    assert_eq!(lab.ues[0].call_phase(call), Some(CallPhase::Ending));
    lab.pump();
    let (cancel, flow) = lab.sent(0, "CANCEL").remove(0);
    let (inv, _) = lab.sent(0, "INVITE").remove(0);
    assert_eq!(flow.remote, lab.ps(0));
    assert_eq!(cancel.branch().unwrap(), inv.branch().unwrap());
    assert_eq!(cancel.header("Route"), inv.header("Route"));
    assert_eq!(lab.sent(1, "487").len(), 1);
    assert_eq!(lab.sent(1, "200 CANCEL").len(), 1);
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::Cancelled { by: Party::Local })
    );
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::Cancelled { by: Party::Remote })
    );
    lab.assert_all_ended();
}

#[test]
fn nobody_answers_the_caller_cancels_and_the_callee_stops_ringing() {
    // the caller gives up first
    let mut lab = Lab::new(
        |a| a.calls.no_answer_timeout = Duration::from_secs(20),
        |b| b.calls.answer = AnswerMode::Ring,
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    let b_call = lab.incoming(1);
    lab.advance(Duration::from_secs(21));
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::Timeout(CallTimeout::NoAnswer))
    );
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::Cancelled { by: Party::Remote })
    );
    lab.assert_all_ended();

    // the callee gives up first: 480
    let mut lab = Lab::new(
        |_| {},
        |b| {
            b.calls.answer = AnswerMode::Ring;
            b.calls.ring_timeout = Duration::from_secs(10);
        },
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    let b_call = lab.incoming(1);
    lab.advance(Duration::from_secs(11));
    assert!(matches!(
        lab.ended(0, call),
        Some(CallEnd::Rejected {
            code: 480,
            by: Party::Remote,
            ..
        })
    ));
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::Timeout(CallTimeout::NoAnswer))
    );
    lab.assert_all_ended();
}

#[test]
fn a_lost_ack_means_2xx_retransmissions_then_bye() {
    let mut lab = Lab::new(
        |_| {},
        |b| b.calls.answer = AnswerMode::Auto(Duration::ZERO),
    );
    lab.drop = |m| m.method() == Some(&Method::Ack);
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(10));
    let b_call = lab.incoming(1);
    assert!(lab.answered(0, call));
    assert!(!lab.answered(1, b_call));
    lab.advance(Duration::from_secs(40));
    // T1 doubling up to T2 within 64·T1, each retransmission ACKed again by the caller
    let oks = lab.sent(1, "200 INVITE").len();
    assert!((6..=12).contains(&oks), "{oks} 2xx");
    assert_eq!(lab.sent(0, "ACK").len(), oks);
    // the ladder shows the first 2xx and the first ACK, not their retransmissions
    let shown = |i: usize, what: &str| {
        lab.events[i]
            .iter()
            .filter(|e| matches!(e, EventKind::Sent { summary, .. } if summary.starts_with(what)))
            .count()
    };
    assert_eq!(shown(1, "200 OK (CSeq 1 INVITE"), 1);
    assert_eq!(shown(0, "ACK"), 1);
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::Timeout(CallTimeout::NoAck))
    );
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::HungUp { by: Party::Remote })
    );
    lab.assert_all_ended();
}

#[test]
fn silence_ends_every_call_and_transaction() {
    let mut lab = Lab::new(|_| {}, |_| {});
    lab.drop = |_| true;
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_secs(33));
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::Timeout(CallTimeout::NoResponse))
    );
    lab.ues[0].send_message(&bob(), "anyone?", lab.now).unwrap();
    lab.advance(Duration::from_secs(33));
    assert!(lab.events[0]
        .iter()
        .any(|e| matches!(e, EventKind::MessageSent { code: None, .. })));
    lab.assert_all_ended();
}

#[test]
fn message_both_ways() {
    let mut lab = Lab::new(
        |a| a.calls.preferred_identity = Some("tel:+4930123456".into()),
        |_| {},
    );
    lab.ues[0]
        .send_message(&bob(), "hello bob", lab.now)
        .unwrap();
    lab.pump();
    let (msg, flow) = lab.sent(0, "MESSAGE").remove(0);
    assert_eq!(flow.remote, lab.ps(0));
    assert_eq!(msg.header("Content-Type"), Some("text/plain"));
    assert_eq!(
        msg.header("P-Preferred-Identity"),
        Some("<tel:+4930123456>")
    );
    assert!(!msg.has_header("P-Asserted-Identity"));
    assert!(
        !msg.has_header("Contact"),
        "RFC 3428: no dialog, no Contact"
    );
    assert_eq!(
        msg.header("Route").unwrap(),
        format!("{}, {SERVICE_ROUTE}", lab.rr(0))
    );
    assert!(lab.events[1].contains(&EventKind::MessageReceived {
        from: alice(),
        text: "hello bob".into()
    }));
    assert!(lab.events[0]
        .iter()
        .any(|e| matches!(e, EventKind::MessageSent { code: Some(200), to, .. } if *to == bob())));
    lab.ues[1]
        .send_message(&alice(), "hi alice", lab.now)
        .unwrap();
    lab.pump();
    assert!(lab.events[0].contains(&EventKind::MessageReceived {
        from: bob(),
        text: "hi alice".into()
    }));
    lab.assert_all_ended();
}

#[test]
fn update_refreshes_the_session_and_strangers_get_481() {
    let mut lab = Lab::new(
        |_| {},
        |b| b.calls.answer = AnswerMode::Auto(Duration::ZERO),
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(10));
    let b_call = lab.incoming(1);
    lab.ues[0].refresh(call, lab.now).unwrap();
    lab.pump();
    let (update, _) = lab.sent(0, "UPDATE").remove(0);
    assert!(update.body().is_empty());
    assert_eq!(update.cseq().unwrap().to_string(), "2 UPDATE");
    assert_eq!(
        update.header("Route").unwrap(),
        format!("{}, {}", lab.rr(0), lab.rr(1))
    );
    assert_eq!(
        update.name_addrs("Contact").unwrap()[0].uri.to_string(),
        "sip:alice@127.0.0.2:6101"
    );
    assert_eq!(lab.sent(1, "200 UPDATE").len(), 1);
    assert!(lab.events[1].contains(&EventKind::CallRefreshed { call: b_call }));
    assert_eq!(lab.ues[0].call_phase(call), Some(CallPhase::Answered));

    // an in-dialog request for a dialog B does not have, straight to its protected port
    let mut stranger = update.clone();
    stranger.set_header("From", &format!("<{}>;tag=nobody", alice()));
    stranger.set_header("Via", "SIP/2.0/UDP 127.0.0.1:7200;branch=z9hG4bKstranger");
    let to_b = Flow::new(lab.us(1), lab.pc(1), Protocol::Udp);
    lab.ues[1].handle_datagram(to_b, &stranger.to_bytes(), lab.now);
    let t = lab.ues[1].poll_transmit().unwrap();
    assert_eq!(Message::parse(&t.payload).unwrap().code(), Some(481));
    // a replayed UPDATE of the real dialog is out of order
    let mut replay = update.clone();
    replay.remove_header("Route");
    replay.set_header("Via", "SIP/2.0/UDP 127.0.0.1:7200;branch=z9hG4bKreplay");
    lab.ues[1].handle_datagram(to_b, &replay.to_bytes(), lab.now);
    let t = lab.ues[1].poll_transmit().unwrap();
    assert_eq!(Message::parse(&t.payload).unwrap().code(), Some(500));
    lab.pump();
    lab.ues[1].hangup(b_call, lab.now).unwrap();
    lab.pump();
    lab.assert_all_ended();
}

#[test]
fn commands_outside_their_state_are_refused() {
    let mut lab = Lab::new(|_| {}, |_| {});
    assert_eq!(
        lab.ues[0].call("mailto:bob@example.com", lab.now),
        Err(CallError::BadTarget("mailto:bob@example.com".into()))
    );
    assert_eq!(
        lab.ues[0].hangup(CallRef(99), lab.now),
        Err(CallError::UnknownCall(CallRef(99)))
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    assert!(matches!(
        lab.ues[0].answer(call, lab.now),
        Err(CallError::InvalidState {
            command: "answer",
            ..
        })
    ));
    let mut cfg = ue_config("carol", "127.0.0.4", 6300);
    cfg.sec_agree = false;
    let mut carol = Ue::new(cfg).unwrap();
    assert_eq!(carol.call(&bob(), lab.now), Err(CallError::NotRegistered));
    assert_eq!(
        carol.send_message(&bob(), "x", lab.now),
        Err(CallError::NotRegistered)
    );
}

#[test]
fn preconditions_183_prack_update_then_ringing_and_answer() {
    let mut lab = Lab::new(
        |a| a.calls.preconditions = true,
        |b| b.calls.answer = AnswerMode::Auto(Duration::from_millis(500)),
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    let (inv, _) = lab.sent(0, "INVITE").remove(0);
    assert!(inv.has_option_tag("Supported", "precondition"));
    assert!(inv.has_option_tag("Supported", "100rel"));
    let offer = std::str::from_utf8(inv.body()).unwrap();
    assert!(
        offer.contains("a=des:qos mandatory local sendrecv\r\n"),
        "{offer}"
    );
    assert!(offer.contains("a=curr:qos local none\r\n"));

    // the callee answers the offer in a reliable 183 and does not alert yet
    let (p183, _) = lab.sent(1, "183").remove(0);
    assert!(p183.has_option_tag("Require", "100rel"));
    assert!(p183.has_option_tag("Require", "precondition"));
    assert_eq!(p183.header("RSeq"), Some("1"));
    let answer = std::str::from_utf8(p183.body()).unwrap();
    assert!(answer.contains("a=conf:qos remote sendrecv"), "{answer}");
    assert!(answer.contains("m=audio 40000 RTP/AVP 116 110"));

    // PRACK, then the UPDATE reporting the caller's segment reserved
    let pracks = lab.sent(0, "PRACK");
    assert_eq!(pracks[0].0.header("RAck"), Some("1 1 INVITE"));
    assert_eq!(pracks[0].0.cseq().unwrap().to_string(), "2 PRACK");
    assert_eq!(
        pracks[0].0.header("Route").unwrap(),
        format!("{}, {}", lab.rr(0), lab.rr(1))
    );
    let (update, uflow) = lab.sent(0, "UPDATE").remove(0);
    assert_eq!(uflow.remote, lab.ps(0));
    assert_eq!(update.cseq().unwrap().to_string(), "3 UPDATE");
    let upd_sdp = std::str::from_utf8(update.body()).unwrap();
    assert!(
        upd_sdp.contains("a=curr:qos local sendrecv\r\n"),
        "{upd_sdp}"
    );
    assert!(
        upd_sdp.contains(" 2 IN IP4 "),
        "a new offer raises the o= version"
    );
    let (upd_ok, _) = lab.sent(1, "200 UPDATE").remove(0);
    let ok_sdp = std::str::from_utf8(upd_ok.body()).unwrap();
    assert!(ok_sdp.contains("a=curr:qos local sendrecv\r\n"), "{ok_sdp}");
    assert!(ok_sdp.contains("a=curr:qos remote sendrecv\r\n"));
    assert!(lab.events[0].contains(&EventKind::CallPreconditionsMet { call }));
    let b_call = lab.incoming(1);
    assert!(lab.events[1].contains(&EventKind::CallPreconditionsMet { call: b_call }));

    // only now the callee alerts (reliably), after the UPDATE's answer
    let pos = |i: usize, what: &str| {
        lab.log
            .iter()
            .position(|(s, m, _)| *s == i && m.start_line_str().starts_with(what))
            .unwrap()
    };
    assert!(pos(1, "183") < pos(1, "200 UPDATE"));
    assert!(pos(1, "200 UPDATE") < pos(1, "180"));
    let (ringing, _) = lab.sent(1, "180").remove(0);
    assert_eq!(ringing.header("RSeq"), Some("2"));
    assert_eq!(lab.sent(0, "PRACK")[1].0.header("RAck"), Some("2 1 INVITE"));
    let codes: Vec<u16> = lab.events[0]
        .iter()
        .filter_map(|e| match e {
            EventKind::CallRinging { call: c, code } if *c == call => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![183, 180]);

    // answered after the configured delay, without SDP (offer/answer is done)
    lab.advance(Duration::from_millis(600));
    assert!(lab.answered(0, call) && lab.answered(1, b_call));
    let (ok, _) = lab.sent(1, "200 INVITE").remove(0);
    assert!(ok.body().is_empty());
    lab.ues[0].hangup(call, lab.now).unwrap();
    lab.pump();
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::HungUp { by: Party::Remote })
    );
    lab.assert_all_ended();
}

#[test]
fn session_timer_refreshes_and_a_vanished_peer_ends_the_call() {
    let mut lab = Lab::new(
        |a| a.calls.session_expires = 90,
        |b| b.calls.answer = AnswerMode::Auto(Duration::ZERO),
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(10));
    let b_call = lab.incoming(1);
    let (inv, _) = lab.sent(0, "INVITE").remove(0);
    assert_eq!(inv.header("Session-Expires"), Some("90"));
    let (ok, _) = lab.sent(1, "200 INVITE").remove(0);
    assert_eq!(ok.header("Session-Expires"), Some("90;refresher=uac"));
    assert!(ok.has_option_tag("Require", "timer"));

    // the caller refreshes at half the interval, the callee answers and waits again
    lab.advance(Duration::from_secs(46));
    let (update, _) = lab.sent(0, "UPDATE").remove(0);
    assert_eq!(update.header("Session-Expires"), Some("90;refresher=uac"));
    assert!(update.body().is_empty());
    assert!(lab.events[1].contains(&EventKind::CallRefreshed { call: b_call }));
    lab.advance(Duration::from_secs(50));
    assert_eq!(lab.sent(0, "UPDATE").len(), 2);
    assert_eq!(lab.ues[1].call_phase(b_call), Some(CallPhase::Answered));

    // then the network goes silent: the callee gives up 60 s after the last refresh,
    // the caller when its refresh times out
    lab.drop = |_| true;
    lab.advance(Duration::from_secs(200));
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::Timeout(CallTimeout::SessionExpired))
    );
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::Timeout(CallTimeout::NoFinal))
    );
    lab.assert_all_ended();
}

/// Calls with preconditions whose messages the relay mangles: whatever arrives, no UE
/// panics, and every call and transaction still ends.
#[test]
fn mangled_call_messages_do_not_panic_and_everything_ends() {
    use rand::SeedableRng;
    for seed in 0..60u64 {
        let mut lab = Lab::new(
            |a| a.calls.preconditions = true,
            |b| b.calls.answer = AnswerMode::Auto(Duration::from_millis(200)),
        );
        lab.mangle = Some(rand::rngs::StdRng::seed_from_u64(seed));
        let call = lab.ues[0].call(&bob(), lab.now).unwrap();
        lab.pump();
        lab.advance(Duration::from_secs(2));
        let _ = lab.ues[0].refresh(call, lab.now);
        lab.pump();
        let _ = lab.ues[0].send_message(&bob(), "x", lab.now);
        let _ = lab.ues[0].hangup(call, lab.now);
        lab.pump();
        // a mangled Call-ID or tag can leave an established call that nobody can hang up
        // any more: the session timer (1800 s) ends it
        lab.advance(Duration::from_secs(2000));
        for u in &lab.ues {
            assert_eq!(u.transaction_count(), 0, "seed {seed}");
            assert!(u.calls().is_empty(), "seed {seed}: {:?}", u.calls());
        }
    }
}

#[test]
fn reliable_provisionals_are_retransmitted_until_prack_then_given_up() {
    let mut lab = Lab::new(|a| a.calls.preconditions = true, |_| {});
    lab.drop = |m| m.method() == Some(&Method::Prack);
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    let b_call = lab.incoming(1);
    lab.advance(Duration::from_secs(40));
    // T1 doubling for 64·T1: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s
    assert_eq!(lab.sent(1, "183").len(), 7);
    let mut pracks: Vec<u32> = lab
        .sent(0, "PRACK")
        .iter()
        .map(|(m, _)| m.cseq().unwrap().seq)
        .collect();
    pracks.dedup();
    assert_eq!(pracks, vec![2], "a retransmission is not PRACKed again");
    assert!(matches!(
        lab.ended(0, call),
        Some(CallEnd::Rejected {
            code: 500,
            by: Party::Remote,
            ..
        })
    ));
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::Timeout(CallTimeout::NoPrack))
    );
    lab.assert_all_ended();
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let mut lab = Lab::new(|_| {}, |b| b.calls.answer = AnswerMode::Ring);
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    // hung up before anything came back: RFC 3261 §9.1 forbids the CANCEL yet
    lab.ues[0].hangup(call, lab.now).unwrap();
    let first: Vec<Message> = std::iter::from_fn(|| lab.ues[0].poll_transmit())
        .map(|t| Message::parse(&t.payload).unwrap())
        .collect();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].method(), Some(&Method::Invite));
    // the relay gets the INVITE through; the callee's 100/180 release the CANCEL
    let (inv_flow, inv) = (
        Flow::new(lab.uc(0), lab.ps(0), Protocol::Udp),
        first[0].clone(),
    );
    let (j, m, f) = lab.route(0, inv, inv_flow).unwrap();
    lab.ues[j].handle_datagram(f, &m.to_bytes(), lab.now);
    lab.pump();
    assert_eq!(lab.sent(0, "CANCEL").len(), 1);
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::Cancelled { by: Party::Local })
    );
    assert_eq!(
        lab.ended(1, lab.incoming(1)),
        Some(CallEnd::Cancelled { by: Party::Remote })
    );
    lab.assert_all_ended();
}

#[test]
fn a_callee_hanging_up_before_the_ack_waits_for_it() {
    let mut lab = Lab::new(|_| {}, |b| b.calls.answer = AnswerMode::Ring);
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    let b_call = lab.incoming(1);
    lab.ues[1].answer(b_call, lab.now).unwrap();
    lab.ues[1].hangup(b_call, lab.now).unwrap();
    assert!(
        lab.sent(1, "BYE").is_empty() && lab.ues[1].poll_timeout().is_some(),
        "no BYE before the ACK (RFC 3261 §15)"
    );
    lab.pump();
    let pos = |i: usize, what: &str| {
        lab.log
            .iter()
            .position(|(s, m, _)| *s == i && m.start_line_str().starts_with(what))
            .unwrap()
    };
    assert!(pos(0, "ACK") < pos(1, "BYE"));
    assert!(lab.answered(0, call));
    assert_eq!(
        lab.ended(0, call),
        Some(CallEnd::HungUp { by: Party::Remote })
    );
    assert_eq!(
        lab.ended(1, b_call),
        Some(CallEnd::HungUp { by: Party::Local })
    );
    lab.assert_all_ended();
}

#[test]
fn a_2xx_from_another_fork_is_acked_and_released() {
    let mut lab = Lab::new(
        |_| {},
        |b| b.calls.answer = AnswerMode::Auto(Duration::ZERO),
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(10));
    assert!(lab.answered(0, call));
    // the same 2xx as if a second registered contact of bob had answered too
    let (mut fork, _) = lab.sent(1, "200 INVITE").remove(0);
    fork.pop_header_value("Via");
    let to = fork.header("To").unwrap().replace(";tag=", ";tag=fork2");
    fork.set_header("To", &to);
    let to_a = Flow::new(lab.uc(0), lab.ps(0), Protocol::Udp);
    lab.ues[0].handle_datagram(to_a, &fork.to_bytes(), lab.now);
    lab.pump();
    let tagged = |what: &str| {
        lab.sent(0, what)
            .iter()
            .filter(|(m, _)| {
                m.to_header()
                    .unwrap()
                    .tag()
                    .is_some_and(|t| t.starts_with("fork2"))
            })
            .count()
    };
    assert_eq!(tagged("ACK"), 1);
    assert_eq!(tagged("BYE"), 1);
    assert_eq!(lab.ues[0].call_phase(call), Some(CallPhase::Answered));
    lab.ues[0].hangup(call, lab.now).unwrap();
    lab.pump();
    lab.assert_all_ended();
}

#[test]
fn re_invite_refreshes_with_a_new_offer_and_is_acked() {
    let mut lab = Lab::new(
        |_| {},
        |b| b.calls.answer = AnswerMode::Auto(Duration::ZERO),
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(10));
    let b_call = lab.incoming(1);
    lab.ues[0].reinvite(call, lab.now).unwrap();
    lab.pump();
    let invites = lab.sent(0, "INVITE");
    assert_eq!(invites.len(), 2);
    let (re, _) = &invites[1];
    assert_eq!(re.cseq().unwrap().to_string(), "2 INVITE");
    assert!(re.to_header().unwrap().tag().is_some());
    assert_eq!(
        re.header("Route").unwrap(),
        format!("{}, {}", lab.rr(0), lab.rr(1))
    );
    assert!(std::str::from_utf8(re.body())
        .unwrap()
        .contains(" 2 IN IP4 "));
    let oks = lab.sent(1, "200 INVITE");
    assert_eq!(oks.len(), 2);
    assert!(!oks[1].0.body().is_empty(), "the answer to the new offer");
    let acks: Vec<String> = lab
        .sent(0, "ACK")
        .iter()
        .map(|(m, _)| m.cseq().unwrap().to_string())
        .collect();
    assert_eq!(acks, vec!["1 ACK", "2 ACK"]);
    assert!(lab.events[1].contains(&EventKind::CallRefreshed { call: b_call }));
    assert_eq!(lab.ues[0].call_phase(call), Some(CallPhase::Answered));
    lab.ues[1].hangup(b_call, lab.now).unwrap();
    lab.pump();
    lab.assert_all_ended();
}

fn media_of(events: &[EventKind], call: CallRef) -> Option<ue::MediaStats> {
    events.iter().find_map(|e| match e {
        EventKind::CallMedia { call: c, stats } if *c == call => Some(stats.clone()),
        _ => None,
    })
}

#[test]
fn rtp_flows_both_ways_with_the_negotiated_codec_and_stops_at_bye() {
    let media = |c: &mut UeConfig| {
        c.media.enabled = true;
        c.media.timeout = Duration::from_secs(1);
    };
    let mut lab = Lab::new(
        |a| {
            media(a);
            a.calls.preconditions = true;
        },
        |b| {
            media(b);
            b.calls.rtp_port = 41000;
        },
    );
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(1500));
    let b_call = lab.incoming(1);
    assert!(lab.answered(0, call) && lab.answered(1, b_call));
    // the 183 fixed the codec: AMR-WB bandwidth-efficient, the first of the offer
    let started: Vec<String> = lab
        .events
        .iter()
        .flatten()
        .filter_map(|e| match e {
            EventKind::MediaStarted {
                codec, to, source, ..
            } => Some(format!("{codec} to {to} ({source})")),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [
            "AMR-WB/16000 pt 116 bandwidth-efficient mode 8, telephone-event pt 110 to 127.0.0.3:41000 (test pattern)",
            "AMR-WB/16000 pt 116 bandwidth-efficient mode 8, telephone-event pt 110 to 127.0.0.2:40000 (test pattern)",
        ]
    );
    lab.advance(Duration::from_secs(2));
    let mid = lab.ues[1].media_stats(b_call).unwrap();
    // answered at 1 s (auto-answer), now 3.5 s: 2.5 s of 20 ms packets
    assert!((120..=130).contains(&mid.received), "{mid:?}");
    assert_eq!((mid.frames_bad, mid.lost, mid.malformed), (0, 0, 0));

    // DTMF both ways while the voice flows
    lab.ues[0].send_dtmf(call, '7').unwrap();
    lab.ues[1].send_dtmf(b_call, '#').unwrap();
    assert_eq!(
        lab.ues[1].send_dtmf(b_call, 'x'),
        Err(CallError::NoDtmf(b_call))
    );
    lab.advance(Duration::from_millis(400));
    assert!(lab.events[1].contains(&EventKind::DtmfReceived {
        call: b_call,
        digit: '7'
    }));
    assert!(lab.events[0].contains(&EventKind::DtmfReceived { call, digit: '#' }));

    lab.ues[0].hangup(call, lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(100));
    let (a, b) = (
        media_of(&lab.events[0], call).expect("A's media stats"),
        media_of(&lab.events[1], b_call).expect("B's media stats"),
    );
    for (x, y, moved) in [(&a, &b, lab.rtp[0]), (&b, &a, lab.rtp[1])] {
        assert_eq!(x.sent, moved, "{x:?}");
        assert_eq!(y.received, x.sent, "every packet counted: {y:?}");
        assert_eq!(
            (y.lost, y.out_of_order, y.frames_bad, y.malformed),
            (0, 0, 0, 0)
        );
        assert!(y.frames_ok + 7 == y.received, "{y:?}");
    }
    assert_eq!((a.dtmf_sent.as_str(), b.dtmf_received.as_str()), ("7", "7"));
    // one RTCP report each way, 2.5 s after the answer (RFC 3550 §6.2)
    assert_eq!(lab.rtcp, [1, 1]);
    assert_eq!(
        (a.rtcp_sent, a.rtcp_received, b.rtcp_sent, b.rtcp_received),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (a.peer_reported_lost, b.peer_reported_lost),
        (Some(0), Some(0))
    );
    assert_eq!((b.dtmf_sent.as_str(), a.dtmf_received.as_str()), ("#", "#"));
    // the stats come just before the end, and nothing is sent afterwards
    let pos = |i: usize, f: &dyn Fn(&EventKind) -> bool| lab.events[i].iter().position(f);
    assert!(
        pos(0, &|e| matches!(e, EventKind::CallMedia { .. }))
            < pos(0, &|e| matches!(e, EventKind::CallEnded { .. }))
    );
    let sent = lab.rtp;
    lab.advance(Duration::from_secs(3));
    assert_eq!(lab.rtp, sent, "RTP stopped at the BYE");
    assert!(!lab
        .events
        .iter()
        .flatten()
        .any(|e| matches!(e, EventKind::MediaTimeout { .. })));
    lab.assert_all_ended();
}

#[test]
fn a_silent_peer_is_reported_not_waited_for() {
    let media = |c: &mut UeConfig| {
        c.media.enabled = true;
        c.media.timeout = Duration::from_secs(1);
    };
    let mut lab = Lab::new(media, media);
    lab.rtp_lost[1] = true;
    let call = lab.ues[0].call(&bob(), lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(1500));
    lab.advance(Duration::from_millis(1500));
    let timeouts: Vec<_> = lab.events[0]
        .iter()
        .filter(|e| matches!(e, EventKind::MediaTimeout { call: c, .. } if *c == call))
        .collect();
    assert_eq!(timeouts.len(), 1, "reported once: {timeouts:?}");
    assert_eq!(lab.ues[0].call_phase(call), Some(CallPhase::Answered));
    lab.ues[0].hangup(call, lab.now).unwrap();
    lab.pump();
    lab.advance(Duration::from_millis(100));
    let a = media_of(&lab.events[0], call).unwrap();
    assert_eq!(a.received, 0);
    assert!(a.sent > 50);
    lab.assert_all_ended();
}
