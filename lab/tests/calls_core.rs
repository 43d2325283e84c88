//! Calls through the collapsed node, sans IO: the real UE simulator cores (`ue::Ue`), our
//! P-CSCF and S-CSCF cores wired as the `pcscf` binary wires them (`pcscf::node::Node`),
//! and the real HSS Cx handler on a SQLite store, with the shells' duties done inline.
//! No sockets and no clock: every message is checked where it crosses, so the routing of
//! each request (which SA, which port, which headers) is asserted hop by hop. SAs are
//! modelled by their flows only (which ports talk to which); the real ESP runs in the
//! socket tests.

use bytes::Bytes;
use diameter::Message as DMessage;
use hss::cx::{CxConfig, CxHandler};
use hss::store::{Durability, Impu, Store, Subscriber};
use pcscf::config::IpsecPolicy;
use pcscf::core::{CoreConfig, SaStep, SecurityOp};
use pcscf::node::{Node, Output};
use sip::{Flow, Limits, Message, Protocol};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ue::{IsimKeys, LocalSecurity, SaAction, Ue, UeConfig};

const DOMAIN: &str = "ims.test";
const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
const OPC: [u8; 16] = [
    0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf,
];
const P_IP: [u8; 4] = [127, 0, 0, 1];

fn impi(n: u8) -> String {
    format!("00101000000000{n}@{DOMAIN}")
}
fn impu(n: u8) -> String {
    format!("sip:00101000000000{n}@{DOMAIN}")
}
fn tel(n: u8) -> String {
    format!("tel:+4917000000{n}")
}
fn ue_ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + n])
}

struct Hss {
    cx: CxHandler,
    sqn_store: Store,
    _dir: tempfile::TempDir,
}

impl Hss {
    /// Subscribers 1..=n, each with a sip: and a tel: identity; subscriber 9 exists but
    /// never registers.
    fn new(n: u8) -> Hss {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hss.db");
        let mut s = Store::open(&p, Durability::Normal).unwrap();
        for i in (1..=n).chain([9]) {
            s.add(&Subscriber {
                impus: vec![Impu::new(impu(i)), Impu::new(tel(i))],
                ..Subscriber::new(impi(i), K, OPC)
            })
            .unwrap();
        }
        let sqn_store = Store::open(&p, Durability::Normal).unwrap();
        let cfg = CxConfig {
            origin_host: "hss.ims.test".into(),
            origin_realm: DOMAIN.into(),
            ..CxConfig::default()
        };
        let metrics = Arc::new(hss::metrics::Metrics::default());
        Hss {
            cx: CxHandler::new(cfg, Arc::new(Mutex::new(s)), metrics),
            sqn_store,
            _dir: dir,
        }
    }

    fn answer(&mut self, req: &DMessage) -> DMessage {
        let req = DMessage::decode(req.encode()).unwrap();
        let a = self
            .cx
            .handle_blocking(&req, &mut self.sqn_store, &akav1::SqnPolicy::default(), 1);
        DMessage::decode(a.encode()).unwrap()
    }
}

/// One message as it crossed between a UE and the P-CSCF.
#[derive(Debug, Clone)]
struct Hop {
    /// Sender's address.
    from: SocketAddr,
    /// Receiver's address.
    to: SocketAddr,
    /// The transport it took (RFC 3261 §18.1.1 may move a large request to TCP).
    protocol: Protocol,
    msg: Message,
}

struct Lab {
    node: Node,
    hss: Hss,
    ues: Vec<Ue>,
    now: Instant,
    next_set: u64,
    /// Everything that crossed between UEs and the P-CSCF, in order.
    wire: Vec<Hop>,
    cx: Vec<String>,
    /// Every TCP connect fails (a peer that listens on UDP only): the shells report the
    /// transmits as transport errors instead of delivering them.
    refuse_tcp: bool,
    /// How many TCP transmits were refused.
    refused: Vec<String>,
}

fn core_config() -> CoreConfig {
    CoreConfig {
        domain: DOMAIN.into(),
        local_ip: IpAddr::from(P_IP),
        sip_port: 5060,
        policy: IpsecPolicy::Required,
        ipsec_available: true,
        prefs: secagree::AlgPrefs::default(),
        spi_range: (4096, 4199),
        port_range: (31100, 31199),
        default_expires: 600,
        auth_timeout: Duration::from_secs(30),
        retire_grace: Duration::from_secs(2),
        max_challenges_per_impi: 3,
        limits: Limits::default(),
    }
}

fn scscf_config() -> scscf::Config {
    scscf::Config {
        cx: scscf::CxIdentity {
            origin_host: "scscf.ims.test".into(),
            origin_realm: DOMAIN.into(),
            destination_realm: DOMAIN.into(),
            server_name: "sip:127.0.0.1:6060".into(),
        },
        ..scscf::Config::new(DOMAIN, SocketAddr::from((P_IP, 6060)))
    }
}

fn ue_config(n: u8) -> UeConfig {
    let mut c = UeConfig::new(
        impi(n),
        impu(n),
        DOMAIN,
        IsimKeys::new(K, OPC),
        ue_ip(n),
        SocketAddr::from((P_IP, 5060)),
    );
    c.security = LocalSecurity {
        spi_uc: 1000 + u32::from(n) * 10,
        spi_us: 1001 + u32::from(n) * 10,
        port_uc: 6100,
        port_us: 6101,
    };
    c.expires = 3600;
    c
}

impl Lab {
    fn new(ues: u8) -> Lab {
        Lab::with(ues, |_, _| {})
    }

    /// `ues` UEs, each configuration adjusted by `tweak(n, cfg)` first.
    fn with(ues: u8, tweak: impl Fn(u8, &mut UeConfig)) -> Lab {
        let node = Node::collapsed(core_config(), scscf_config(), DOMAIN.into())
            .unwrap()
            .with_seed(7);
        Lab {
            node,
            hss: Hss::new(ues),
            ues: (1..=ues)
                .map(|n| {
                    let mut c = ue_config(n);
                    tweak(n, &mut c);
                    Ue::new(c).unwrap()
                })
                .collect(),
            now: Instant::now(),
            next_set: 1,
            wire: Vec::new(),
            cx: Vec::new(),
            refuse_tcp: false,
            refused: Vec::new(),
        }
    }

    fn p_addr() -> SocketAddr {
        SocketAddr::from((P_IP, 5060))
    }

    /// Delivers everything until nobody has anything left to say.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.ues.len() {
                while let Some(a) = self.ues[i].poll_action() {
                    moved = true;
                    if let SaAction::Install { generation, .. } = a {
                        let id = self.next_set;
                        self.next_set += 1;
                        self.ues[i].handle_sa_installed(generation, Ok(id), self.now);
                    }
                }
                while self.ues[i].poll_event().is_some() {}
                while let Some(t) = self.ues[i].poll_transmit() {
                    moved = true;
                    if self.refuse_tcp && t.flow.protocol == Protocol::Tcp {
                        self.refused.push(method_of(&t.payload));
                        if let Some(id) = t.tx {
                            self.ues[i].handle_transport_error(id, self.now);
                        }
                        continue;
                    }
                    let c = self.ues[i].config();
                    let from = t
                        .flow
                        .local
                        .unwrap_or_else(|| SocketAddr::new(c.local_ip, c.port));
                    self.wire.push(Hop {
                        from,
                        to: t.flow.remote,
                        protocol: t.flow.protocol,
                        msg: Message::parse(&t.payload).unwrap(),
                    });
                    self.node.handle_inbound(
                        Flow::new(t.flow.remote, from, t.flow.protocol),
                        t.payload,
                        self.now,
                    );
                }
            }
            while let Some(o) = self.node.poll_output() {
                moved = true;
                match o {
                    Output::Transmit(role, t) => {
                        if self.refuse_tcp && t.flow.protocol == Protocol::Tcp {
                            self.refused.push(method_of(&t.payload));
                            self.node.handle_transport_error(role, t.tx, self.now);
                            continue;
                        }
                        let from = t.flow.local.unwrap_or_else(Lab::p_addr);
                        self.wire.push(Hop {
                            from,
                            to: t.flow.remote,
                            protocol: t.flow.protocol,
                            msg: Message::parse(&t.payload).unwrap(),
                        });
                        let ue = self
                            .ues
                            .iter_mut()
                            .find(|u| u.config().local_ip == t.flow.remote.ip())
                            .expect("the P-CSCF sent to no UE");
                        ue.handle_datagram(
                            Flow::new(t.flow.remote, from, t.flow.protocol),
                            &t.payload,
                            self.now,
                        );
                    }
                    Output::Cx { token, request } => {
                        self.cx.push(request.name());
                        let a = self.hss.answer(&request);
                        self.node.handle_cx_answer(token, Ok(a), self.now);
                    }
                    Output::Security(SecurityOp::Prepare { token, .. }) => {
                        let id = self.next_set;
                        self.next_set += 1;
                        self.node.handle_security_ready(token, Ok(id), self.now);
                    }
                    Output::Security(SecurityOp::Promote { id, .. }) => self
                        .node
                        .handle_security_result(id, SaStep::Promote, Ok(()), self.now),
                    Output::Security(_) | Output::Event(_) => {}
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn register_all(&mut self) {
        for i in 0..self.ues.len() {
            self.ues[i].register(self.now);
            self.pump();
            assert!(self.ues[i].is_registered(), "UE {} did not register", i + 1);
        }
    }

    /// A request from UE `n` (1-based) the way a handset sends it: from its protected
    /// client port to our protected server port, over its SA.
    fn send_from(&mut self, n: u8, raw: String) {
        let set = self.ues[usize::from(n - 1)].current_set().unwrap().clone();
        let from = SocketAddr::new(set.ue, set.port_uc);
        let to = SocketAddr::new(set.pcscf, set.port_ps);
        let msg = Message::parse(raw.as_bytes()).unwrap();
        self.wire.push(Hop {
            from,
            to,
            protocol: Protocol::Udp,
            msg,
        });
        self.node.handle_inbound(
            Flow::new(to, from, Protocol::Udp),
            Bytes::from(raw),
            self.now,
        );
        self.pump();
    }

    fn hops_since(&self, mark: usize) -> &[Hop] {
        &self.wire[mark..]
    }

    /// Lets `d` pass in steps, firing every due timer of the UEs and the node.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self
                .ues
                .iter_mut()
                .filter_map(Ue::poll_timeout)
                .chain(self.node.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for u in &mut self.ues {
                        if u.poll_timeout().is_some_and(|x| x <= self.now) {
                            u.handle_timeout(self.now);
                        }
                    }
                    if self.node.poll_timeout().is_some_and(|x| x <= self.now) {
                        self.node.handle_timeout(self.now);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn ue(&mut self, n: u8) -> &mut Ue {
        &mut self.ues[usize::from(n - 1)]
    }

    /// Methods (requests) and codes (responses) that crossed to or from UE `n` since
    /// `mark`, in order.
    fn ladder(&self, n: u8, mark: usize) -> Vec<String> {
        let ip = ue_ip(n);
        self.hops_since(mark)
            .iter()
            .filter(|h| h.from.ip() == ip || h.to.ip() == ip)
            .map(|h| {
                let dir = if h.from.ip() == ip { ">" } else { "<" };
                match h.msg.method() {
                    Some(m) => format!("{dir}{}", m.as_str()),
                    None => format!(
                        "{dir}{} {}",
                        h.msg.code().unwrap_or(0),
                        h.msg
                            .cseq()
                            .map(|c| c.method.as_str().to_string())
                            .unwrap_or_default()
                    ),
                }
            })
            .collect()
    }
}

/// An initial request from UE `from` to `target`, as a handset builds it (TS 24.229
/// §5.1.2A): Route to our protected port and its Service-Route, its own
/// P-Asserted-Identity (which must never survive), its protected contact.
fn request(lab: &Lab, method: &str, from: u8, target: &str, call_id: &str, extra: &str) -> String {
    let set = lab.ues[usize::from(from - 1)].current_set().unwrap();
    let (ue, uc, us, ps) = (set.ue, set.port_uc, set.port_us, set.port_ps);
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ue}:{uc};branch=z9hG4bK-{call_id}-{method};rport\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:127.0.0.1:{ps};lr>, <sip:orig@127.0.0.1:6060;lr>\r\n\
         From: <{}>;tag=f-{call_id}\r\n\
         To: <{target}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:{ue}:{us}>\r\n\
         P-Asserted-Identity: <sip:somebody-else@{DOMAIN}>\r\n\
         Require: sec-agree\r\n\
         Proxy-Require: sec-agree\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n",
        impu(from)
    )
}

#[test]
fn a_request_from_one_ue_reaches_the_other_through_both_sas_and_its_answer_comes_back() {
    let mut lab = Lab::new(2);
    lab.register_all();
    let a = lab.ues[0].current_set().unwrap().clone();
    let b = lab.ues[1].current_set().unwrap().clone();
    let mark = lab.wire.len();
    let req = request(&lab, "INVITE", 1, &impu(2), "call-1", "");
    lab.send_from(1, req);
    let hops = lab.hops_since(mark).to_vec();
    // UE B got the INVITE from our protected client port on its protected server port.
    let to_b: Vec<&Hop> = hops
        .iter()
        .filter(|h| h.msg.method() == Some(&sip::Method::Invite) && h.to.ip() == b.ue)
        .collect();
    assert_eq!(to_b.len(), 1, "{hops:#?}");
    let inv = &to_b[0];
    assert_eq!(inv.from, SocketAddr::new(b.pcscf, b.port_pc));
    assert_eq!(inv.to, SocketAddr::new(b.ue, b.port_us));
    let ruri = inv.msg.request_uri().unwrap();
    assert_eq!((ruri.host_ip(), ruri.port), (Some(b.ue), Some(b.port_us)));
    // The caller's identity is asserted from its registration, never taken from the UE;
    // the S-CSCF adds the tel URI of its implicit set (TS 24.229 §5.4.3.2).
    let pai: Vec<&str> = inv.msg.header_values("P-Asserted-Identity").collect();
    assert_eq!(pai, vec![format!("<{}>", impu(1)), format!("<{}>", tel(1))]);
    assert!(inv.msg.header("Security-Verify").is_none());
    assert!(!inv.msg.has_option_tag("Require", "sec-agree"));
    assert!(inv.msg.p_charging_vector().unwrap().is_some());
    // Record-Route: B's side of us (its protected server port), us toward the core, the
    // S-CSCF, us toward the core again, A's side of us.
    let rr: Vec<String> = inv
        .msg
        .header_values("Record-Route")
        .map(str::to_string)
        .collect();
    assert_eq!(
        rr,
        vec![
            format!("<sip:127.0.0.1:{};lr>", b.port_ps),
            "<sip:127.0.0.1:5060;lr>".to_string(),
            "<sip:127.0.0.1:6060;lr>".to_string(),
            "<sip:127.0.0.1:5060;lr>".to_string(),
            format!("<sip:127.0.0.1:{};lr>", a.port_ps),
        ]
    );
    assert!(
        inv.msg.header("Route").is_none(),
        "every Route was ours: {:?}",
        inv.msg
    );
    // UE B rings; the 180 goes back to A through A's SA, with only A's Via left.
    let to_a: Vec<&Hop> = hops
        .iter()
        .filter(|h| !h.msg.is_request() && h.to.ip() == a.ue)
        .collect();
    let last = to_a.last().expect("no answer reached A");
    assert_eq!(last.msg.code(), Some(180), "{:?}", last.msg);
    assert_eq!(last.from, SocketAddr::new(a.pcscf, a.port_ps));
    assert_eq!(last.to, SocketAddr::new(a.ue, a.port_uc));
    assert_eq!(last.msg.vias().unwrap().len(), 1);
}

#[test]
fn unknown_and_unregistered_callees_get_404_and_480() {
    let mut lab = Lab::new(1);
    lab.register_all();
    for (target, code) in [
        (format!("sip:nobody@{DOMAIN}"), 404),
        (impu(9), 480),
        (tel(9), 480),
    ] {
        let mark = lab.wire.len();
        let id = format!("c-{code}-{}", target.len());
        let req = request(&lab, "MESSAGE", 1, &target, &id, "");
        lab.send_from(1, req);
        let answer = lab
            .hops_since(mark)
            .iter()
            .rev()
            .find(|h| !h.msg.is_request())
            .map(|h| h.msg.code())
            .unwrap();
        assert_eq!(answer, Some(code), "{target}");
    }
    assert!(
        lab.cx
            .iter()
            .any(|c| c.contains("LIR") || c.contains("Location")),
        "{:?}",
        lab.cx
    );
}

#[test]
fn a_stranger_cannot_send_requests_through_the_p_cscf() {
    let mut lab = Lab::new(2);
    lab.register_all();
    // From the unprotected port, claiming to be UE 1.
    let raw = request(&lab, "MESSAGE", 1, &impu(2), "stranger", "");
    let stranger = SocketAddr::from(([127, 0, 0, 99], 5060));
    lab.node.handle_inbound(
        Flow::new(Lab::p_addr(), stranger, Protocol::Udp),
        Bytes::from(raw),
        lab.now,
    );
    let mut out = Vec::new();
    while let Some(o) = lab.node.poll_output() {
        if let Output::Transmit(_, t) = o {
            out.push((t.flow.remote, Message::parse(&t.payload).unwrap()));
        }
    }
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].0, stranger);
    assert_eq!(out[0].1.code(), Some(403));
}

/// Every message to or from a UE after its registration went through its SA: a request
/// from its protected client port to our protected server port or from our protected
/// client port to its protected server port, and responses the reverse.
fn assert_all_protected(lab: &Lab, mark: usize) {
    for h in lab.hops_since(mark) {
        let (ue, p) = if h.from.ip() == IpAddr::from(P_IP) {
            (h.to, h.from)
        } else {
            (h.from, h.to)
        };
        assert_ne!(
            p.port(),
            5060,
            "cleartext to/from the unprotected port: {h:?}"
        );
        assert_ne!(ue.port(), 5060, "UE's unprotected port used: {h:?}");
    }
}

#[test]
fn basic_call_rings_answers_and_ends_with_bye_from_either_side() {
    let mut lab = Lab::new(2);
    lab.register_all();
    for (caller, callee, hanger) in [(1u8, 2u8, 1u8), (2, 1, 1)] {
        let mark = lab.wire.len();
        let now = lab.now;
        let call = lab.ue(caller).call(&impu(callee), now).unwrap();
        lab.pump();
        // The callee rings, answers after its auto-answer delay, the caller ACKs.
        lab.advance(Duration::from_secs(2));
        assert_eq!(
            lab.ue(caller).call_phase(call),
            Some(ue::CallPhase::Answered),
            "{:?}",
            lab.ladder(caller, mark)
        );
        let callee_call = lab.ue(callee).calls()[0].0;
        let now = lab.now;
        if hanger == caller {
            lab.ue(caller).hangup(call, now).unwrap();
        } else {
            lab.ue(callee).hangup(callee_call, now).unwrap();
        }
        lab.pump();
        lab.advance(Duration::from_secs(1));
        assert!(
            matches!(
                lab.ue(caller).call_phase(call),
                Some(ue::CallPhase::Ended(ue::CallEnd::HungUp { .. })) | None
            ),
            "{:?}",
            lab.ladder(caller, mark)
        );
        let caller_ladder = lab.ladder(caller, mark);
        for step in [">INVITE", "<180 INVITE", "<200 INVITE", ">ACK"] {
            assert!(
                caller_ladder.contains(&step.to_string()),
                "{step}: {caller_ladder:?}"
            );
        }
        let callee_ladder = lab.ladder(callee, mark);
        for step in ["<INVITE", ">180 INVITE", ">200 INVITE", "<ACK"] {
            assert!(
                callee_ladder.contains(&step.to_string()),
                "{step}: {callee_ladder:?}"
            );
        }
        let bye = if hanger == caller {
            &caller_ladder
        } else {
            &callee_ladder
        };
        assert!(bye.contains(&">BYE".to_string()) && bye.contains(&"<200 BYE".to_string()));
        assert_all_protected(&lab, mark);
        // Nothing is left behind once the transactions have run out.
        lab.advance(Duration::from_secs(40));
        assert_eq!(lab.node.pcscf().transaction_count(), 0);
        assert_eq!(lab.node.scscf().unwrap().transaction_count(), 0);
        let _ = hanger;
    }
}

#[test]
fn busy_callee_gets_486_to_the_caller_and_cancel_gets_487() {
    let mut lab = Lab::with(2, |n, c| {
        if n == 2 {
            c.calls.answer = ue::AnswerMode::Reject(486);
        }
    });
    lab.register_all();
    let now = lab.now;
    let call = lab.ue(1).call(&impu(2), now).unwrap();
    lab.pump();
    assert!(
        matches!(
            lab.ue(1).call_phase(call),
            Some(ue::CallPhase::Ended(ue::CallEnd::Rejected {
                code: 486,
                ..
            }))
        ),
        "{:?}",
        lab.ue(1).call_phase(call)
    );
    let mut lab = Lab::with(2, |n, c| {
        if n == 2 {
            c.calls.answer = ue::AnswerMode::Ring;
        }
    });
    lab.register_all();
    let mark = lab.wire.len();
    let now = lab.now;
    let call = lab.ue(1).call(&impu(2), now).unwrap();
    lab.pump();
    assert_eq!(lab.ue(1).call_phase(call), Some(ue::CallPhase::Ringing));
    let now = lab.now;
    lab.ue(1).hangup(call, now).unwrap();
    lab.pump();
    lab.advance(Duration::from_secs(1));
    let l = lab.ladder(1, mark);
    assert!(
        l.contains(&">CANCEL".to_string()) && l.contains(&"<487 INVITE".to_string()),
        "{l:?}"
    );
    assert!(lab.ladder(2, mark).contains(&"<CANCEL".to_string()));
    assert_all_protected(&lab, mark);
}

#[test]
fn message_reaches_the_other_ue_and_is_answered() {
    let mut lab = Lab::new(2);
    lab.register_all();
    let mark = lab.wire.len();
    let now = lab.now;
    lab.ue(2)
        .send_message(&impu(1), "hello over IMS", now)
        .unwrap();
    lab.pump();
    assert_eq!(lab.ladder(2, mark), vec![">MESSAGE", "<200 MESSAGE"]);
    assert_eq!(lab.ladder(1, mark), vec!["<MESSAGE", ">200 MESSAGE"]);
    // By its tel: identity too (the implicit registration set).
    let mark = lab.wire.len();
    let now = lab.now;
    lab.ue(2).send_message(&tel(1), "by number", now).unwrap();
    lab.pump();
    assert_eq!(lab.ladder(1, mark), vec!["<MESSAGE", ">200 MESSAGE"]);
}

/// An RTR from the HSS (TS 29.228 §6.2.1): the S-CSCF ends the registration, tells every
/// subscriber of its reg event (the P-CSCF and the UE subscribed after the registration,
/// TS 24.229 §5.2.3, §5.1.1.3), the P-CSCF ends its registration and the UE drops its own
/// and its SAs; the other UE stays registered.
#[test]
fn network_deregistration_reaches_the_p_cscf_through_the_reg_event() {
    use diameter::{avp, cmd, Avp};
    let mut lab = Lab::new(2);
    lab.register_all();
    // The P-CSCF and each UE subscribed to each registration's reg event.
    assert_eq!(lab.node.pcscf().reg_event_subscriptions(), 2);
    assert_eq!(lab.node.scscf().unwrap().subscription_count(), 4);
    assert_eq!(lab.node.pcscf().registration_count(), 2);
    let rtr = DMessage::request(diameter::app::CX, cmd::REGISTRATION_TERMINATION)
        .with(Avp::utf8(avp::SESSION_ID, "hss.ims.test;1;1"))
        .with(Avp::utf8(avp::ORIGIN_HOST, "hss.ims.test"))
        .with(Avp::utf8(avp::ORIGIN_REALM, DOMAIN))
        .with(Avp::utf8(avp::USER_NAME, impi(1)));
    let now = lab.now;
    let rta = lab.node.handle_cx_request(&rtr, now);
    assert_eq!(
        rta.result(),
        Some(diameter::ResultCode::Base(diameter::result::SUCCESS))
    );
    lab.pump();
    // The P-CSCF keeps the registration for the retire grace, so the S-CSCF's NOTIFY to the
    // UE still reaches it through its SA, whichever NOTIFY left first.
    lab.advance(Duration::from_secs(3));
    assert_eq!(
        lab.node.pcscf().registration_count(),
        1,
        "UE1 gone, UE2 stays"
    );
    assert!(lab.node.pcscf().registration(&impu(1)).is_none());
    assert!(lab.node.pcscf().registration(&impu(2)).is_some());
    assert_eq!(lab.node.pcscf().reg_event_subscriptions(), 1);
    assert_eq!(lab.node.scscf().unwrap().subscription_count(), 2);
    // UE1 heard `deactivated` in its own NOTIFY, over its SA, and dropped its registration
    // and SAs without a REGISTER (TS 24.229 §5.1.1.7).
    assert!(!lab.ue(1).is_registered());
    assert!(lab.ue(1).current_set().is_none());
    assert!(lab.ue(2).is_registered());
    // UE1 is unreachable now.
    let mark = lab.wire.len();
    let now = lab.now;
    lab.ue(2)
        .send_message(&impu(1), "still there?", now)
        .unwrap();
    lab.pump();
    assert_eq!(lab.ladder(2, mark), vec![">MESSAGE", "<480 MESSAGE"]);
}

/// Abuse (issue 9): whatever From a UE writes, the network asserts the identity of the SA
/// the request came through; and an in-dialog request from an address that owns no
/// registration is refused, not routed.
#[test]
fn identity_comes_from_the_sa_and_strangers_cannot_use_a_dialog() {
    let mut lab = Lab::new(2);
    lab.register_all();
    let mark = lab.wire.len();
    // Through UE1's SA, claiming to be UE2.
    let forged = request(&lab, "MESSAGE", 1, &impu(2), "forged", "").replace(
        &format!("From: <{}>", impu(1)),
        &format!("From: <{}>", impu(2)),
    );
    assert!(forged.contains(&format!("From: <{}>;tag", impu(2))));
    lab.send_from(1, forged);
    let b = lab.ues[1].current_set().unwrap().clone();
    let got = lab
        .hops_since(mark)
        .iter()
        .find(|h| h.msg.method() == Some(&sip::Method::Message) && h.to.ip() == b.ue)
        .expect("the MESSAGE reached UE2")
        .msg
        .clone();
    let pai: Vec<&str> = got.header_values("P-Asserted-Identity").collect();
    assert_eq!(
        pai,
        vec![format!("<{}>", impu(1)), format!("<{}>", tel(1))],
        "asserted as the SA's owner (and its tel URI)"
    );

    // A BYE "in a dialog" from a stranger on the unprotected port.
    let raw = request(&lab, "BYE", 1, &impu(2), "dlg", "").replace(
        &format!("To: <{}>\r\n", impu(2)),
        &format!("To: <{}>;tag=t-1\r\n", impu(2)),
    );
    assert!(raw.contains(";tag=t-1"));
    let stranger = SocketAddr::from(([127, 0, 0, 99], 5060));
    lab.node.handle_inbound(
        Flow::new(Lab::p_addr(), stranger, Protocol::Udp),
        Bytes::from(raw),
        lab.now,
    );
    let mut answers = Vec::new();
    while let Some(o) = lab.node.poll_output() {
        if let Output::Transmit(_, t) = o {
            answers.push((t.flow.remote, Message::parse(&t.payload).unwrap()));
        }
    }
    assert_eq!(answers.len(), 1, "{answers:#?}");
    assert_eq!((answers[0].0, answers[0].1.code()), (stranger, Some(403)));
}

/// A response forged by somebody who saw a branch (its Via) is dropped before it can end
/// the branch's transaction: the call rings on and is answered normally.
#[test]
fn a_forged_response_cannot_end_a_call_attempt() {
    let mut lab = Lab::with(2, |n, c| {
        if n == 2 {
            c.calls.answer = ue::AnswerMode::Ring;
        }
    });
    lab.register_all();
    let mark = lab.wire.len();
    let now = lab.now;
    let call = lab.ue(1).call(&impu(2), now).unwrap();
    lab.pump();
    let b = lab.ues[1].current_set().unwrap().clone();
    let invite = lab
        .hops_since(mark)
        .iter()
        .find(|h| h.msg.method() == Some(&sip::Method::Invite) && h.to.ip() == b.ue)
        .unwrap()
        .msg
        .clone();
    let forged = sip::ResponseBuilder::new(&invite, 486)
        .to_tag("forged")
        .build()
        .unwrap();
    let before = lab.node.pcscf().stats().dropped;
    let stranger = SocketAddr::from(([127, 0, 0, 99], 5060));
    lab.node.handle_inbound(
        Flow::new(Lab::p_addr(), stranger, Protocol::Udp),
        Bytes::from(forged.to_bytes()),
        lab.now,
    );
    lab.pump();
    assert_eq!(lab.node.pcscf().stats().dropped, before + 1);
    assert_eq!(lab.ue(1).call_phase(call), Some(ue::CallPhase::Ringing));
    let incoming = lab.ue(2).calls()[0].0;
    let now = lab.now;
    lab.ue(2).answer(incoming, now).unwrap();
    lab.pump();
    assert_eq!(lab.ue(1).call_phase(call), Some(ue::CallPhase::Answered));
}

/// A lab whose UEs and P-CSCF apply the RFC 3261 §18.1.1 size rule toward each other, as the
/// shells set it up: `through_sa` false is the userspace ESP backend (no TCP in the SAs).
fn sized_lab(through_sa: bool) -> Lab {
    let rule = sip::SizeRule::default();
    let mut lab = Lab::new(2);
    lab.node = Node::collapsed(core_config(), scscf_config(), DOMAIN.into())
        .unwrap()
        .with_seed(7)
        .with_tcp_to_ue(rule, through_sa);
    for n in 1..=2 {
        lab.ue(n)
            .set_size_rule(if through_sa { rule } else { rule.without_tcp() });
    }
    lab
}

/// A call from UE 1 to UE 2, answered; the hops from the registrations on.
fn sized_call(lab: &mut Lab) {
    lab.register_all();
    let now = lab.now;
    let call = lab.ue(1).call(&impu(2), now).unwrap();
    lab.pump();
    lab.advance(Duration::from_secs(2));
    assert_eq!(
        lab.ue(1).call_phase(call),
        Some(ue::CallPhase::Answered),
        "{:?}",
        lab.ladder(1, 0)
    );
}

fn method_of(payload: &[u8]) -> String {
    Message::parse(payload)
        .ok()
        .and_then(|m| m.method().map(|m| m.as_str().to_string()))
        .unwrap_or_default()
}

fn hops<'a>(lab: &'a Lab, method: &'a str) -> impl Iterator<Item = &'a Hop> + 'a {
    lab.wire
        .iter()
        .filter(move |h| h.msg.method().is_some_and(|m| m.as_str() == method))
}

#[test]
fn large_requests_go_over_tcp_through_the_sas_on_both_legs() {
    let mut lab = sized_lab(true);
    sized_call(&mut lab);
    let (s1, s2) = (
        lab.ue(1).current_set().unwrap().clone(),
        lab.ue(2).current_set().unwrap().clone(),
    );
    let invites: Vec<&Hop> = hops(&lab, "INVITE").collect();
    assert_eq!(invites.len(), 2, "one per leg");
    // UE 1's protected client port → our protected server port; our protected client port
    // → UE 2's protected server port (TS 24.229 §5.1.1.2, §5.2.2), both over TCP, with
    // a Via that says so.
    assert_eq!(
        (invites[0].from, invites[0].to),
        (
            SocketAddr::new(s1.ue, s1.port_uc),
            SocketAddr::new(s1.pcscf, s1.port_ps)
        )
    );
    assert_eq!(
        (invites[1].from, invites[1].to),
        (
            SocketAddr::new(s2.pcscf, s2.port_pc),
            SocketAddr::new(s2.ue, s2.port_us)
        )
    );
    for h in &invites {
        assert_eq!(h.protocol, Protocol::Tcp, "{h:?}");
        assert!(h.msg.to_bytes().len() > 1300);
        assert_eq!(h.msg.top_via().unwrap().transport, "TCP");
    }
    // Responses go back on the flow of their request (§18.2.2).
    let answers: Vec<&Hop> = lab
        .wire
        .iter()
        .filter(|h| h.msg.code() == Some(200) && h.msg.cseq().unwrap().method.as_str() == "INVITE")
        .collect();
    assert!(
        answers.iter().all(|h| h.protocol == Protocol::Tcp),
        "{answers:?}"
    );
    // Every REGISTER is above 1300 bytes too; the ACK is small and stays on UDP.
    assert!(hops(&lab, "REGISTER").all(|h| h.protocol == Protocol::Tcp));
    assert!(hops(&lab, "ACK").all(|h| h.protocol == Protocol::Udp));
    assert!(hops(&lab, "ACK").count() >= 2);
}

#[test]
fn without_tcp_in_the_sas_everything_stays_on_udp() {
    let mut lab = sized_lab(false);
    sized_call(&mut lab);
    assert_eq!(hops(&lab, "INVITE").count(), 2);
    assert!(
        lab.wire.iter().all(|h| h.protocol == Protocol::Udp),
        "userspace ESP carries no TCP"
    );
}

#[test]
fn a_refused_tcp_connection_sends_the_request_again_over_udp() {
    let mut lab = sized_lab(true);
    lab.refuse_tcp = true;
    sized_call(&mut lab);
    // Both ends tried TCP for the INVITE (and the UEs for every REGISTER)...
    assert_eq!(
        lab.refused.iter().filter(|m| *m == "INVITE").count(),
        2,
        "{:?}",
        lab.refused
    );
    assert!(lab.refused.iter().any(|m| m == "REGISTER"));
    // ...nothing got through over TCP, yet the call went through: both fell back to UDP.
    assert!(lab.wire.iter().all(|h| h.protocol == Protocol::Udp));
    let invites: Vec<&Hop> = hops(&lab, "INVITE").collect();
    assert_eq!(invites.len(), 2);
    for h in invites {
        assert_eq!(h.msg.top_via().unwrap().transport, "UDP", "{h:?}");
    }
}
