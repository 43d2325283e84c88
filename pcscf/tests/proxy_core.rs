//! Proxy mode of the P-CSCF core, driven message by message without sockets: a scripted UE
//! (akav1's USIM, secagree's offers) on one side, a scripted S-CSCF on the other that
//! challenges with a real Milenage vector and puts `ck`/`ik` into its 401 as Kamailio does
//! (TS 24.229 §5.4.1.2.1). Checks what each side sees (header edits of TS 24.229 §5.2.2,
//! no keys toward the UE) and the SA lifecycle.

use akav1::digest::{Challenge, Credentials, Qop, AKAV1_MD5};
use akav1::{AuthVector, Milenage, Sqn};
use bytes::Bytes;
use pcscf::config::IpsecPolicy;
use pcscf::core::{CoreEvent, Output, Pcscf, Rejection, SaStep, SecurityOp, Upstream};
use sip::ims::{format_security_list, SecurityMechanism};
use sip::{Flow, Message, Protocol, ResponseBuilder};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use xfrm::{SaSet, SetId};

mod common;

use common::{
    core_config, only, p_addr, ue_addr, Ue, DOMAIN, IMPI, IMPU, K, OPC, P_IP, TEL, UE_IP,
};

const SERVICE_ROUTE: &str = "<sip:orig@scscf.ims.test:6060;lr>";

const S_IP: [u8; 4] = [127, 0, 0, 3];

fn s_addr() -> SocketAddr {
    SocketAddr::from((S_IP, 6060))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the scripted S-CSCF does with the next REGISTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Challenge unauthenticated REGISTERs, accept right answers, 403 wrong ones.
    Normal,
    /// Challenge without ck/ik (a misconfigured S-CSCF).
    NoKeys,
    /// Never answer.
    Silent,
    /// Challenge every REGISTER without a fresh answer, deregistrations too (Kamailio's
    /// testkit configuration does this).
    ChallengeAll,
}

/// An S-CSCF that does AKA itself (the HSS is folded in: it owns K/OPc and an SQN).
struct Scscf {
    milenage: Milenage,
    sqn: u64,
    mode: Mode,
    vector: Option<(String, AuthVector)>,
    registered: bool,
    /// Every REGISTER as received.
    seen: Vec<Message>,
}

impl Scscf {
    fn new() -> Scscf {
        Scscf {
            milenage: Milenage::new(&K, &OPC),
            sqn: 32,
            mode: Mode::Normal,
            vector: None,
            registered: false,
            seen: vec![],
        }
    }

    fn handle(&mut self, req: Message) -> Option<Message> {
        self.seen.push(req.clone());
        if self.mode == Mode::Silent {
            return None;
        }
        let creds = req
            .header("Authorization")
            .map(|v| Credentials::parse(v).unwrap());
        let expires = req
            .header("Expires")
            .map(|v| v.parse::<u32>().unwrap())
            .unwrap_or(600);
        let protected = creds
            .as_ref()
            .and_then(|c| c.integrity_protected.as_deref())
            == Some("yes");
        // A registered user's deregistration over the SA needs no new authentication.
        if expires == 0 && protected && self.registered && self.mode != Mode::ChallengeAll {
            self.registered = false;
            return Some(self.ok(&req, 0));
        }
        if let (Some(c), Some((nonce, v))) = (&creds, &self.vector) {
            if !c.response.is_empty() && &c.nonce == nonce {
                let ok = c.verify(&v.xres, "REGISTER", req.body());
                self.vector = None;
                if !ok {
                    return Some(ResponseBuilder::new(&req, 403).to_tag("s").build().unwrap());
                }
                self.registered = expires > 0;
                return Some(self.ok(&req, expires));
            }
        }
        // Challenge (also every re-registration, like Kamailio).
        self.sqn += 32;
        let rand = [self.sqn as u8; 16];
        let v = self
            .milenage
            .vector(&rand, Sqn::new(self.sqn).unwrap(), [0x80, 0]);
        let nonce = akav1::nonce::encode(&v.rand, &v.autn, &[]);
        let keys = self.mode != Mode::NoKeys;
        let ch = Challenge {
            realm: DOMAIN.into(),
            nonce: nonce.clone(),
            algorithm: Some(AKAV1_MD5.into()),
            qop: vec![Qop::Auth],
            ck: keys.then(|| hex(&v.ck)),
            ik: keys.then(|| hex(&v.ik)),
            ..Default::default()
        };
        self.vector = Some((nonce, v));
        Some(
            ResponseBuilder::new(&req, 401)
                .to_tag("s")
                .header("WWW-Authenticate", ch.to_header())
                .build()
                .unwrap(),
        )
    }

    fn ok(&self, req: &Message, expires: u32) -> Message {
        let contact = req.header("Contact").unwrap().to_string();
        let contact = contact.split(";expires=").next().unwrap().to_string();
        let mut b = ResponseBuilder::new(req, 200)
            .to_tag("s")
            .header("Contact", format!("{contact};expires={expires}"));
        if expires > 0 {
            b = b
                .header("Service-Route", SERVICE_ROUTE)
                .header("P-Associated-URI", format!("<{IMPU}>, <{TEL}>"));
        }
        if let Some(p) = req.header("Path") {
            b = b.header("Path", p);
        }
        b.build().unwrap()
    }
}

/// The P-CSCF in proxy mode, the S-CSCF behind it, the shell's duties done inline.
struct Net {
    core: Pcscf,
    scscf: Scscf,
    now: Instant,
    next_set: SetId,
    installed: HashMap<SetId, SaSet>,
    promoted: Vec<SetId>,
    retired: Vec<SetId>,
    deleted: Vec<SetId>,
    events: Vec<CoreEvent>,
    /// The next SA install fails (as a kernel refusing the state would).
    fail_install: bool,
    /// The next promotion, retirement or deletion fails.
    fail_step: Option<SaStep>,
}

impl Net {
    fn new(policy: IpsecPolicy) -> Net {
        let cfg = core_config(policy);
        let upstream = Upstream {
            address: s_addr(),
            protocol: Protocol::Udp,
            route: None,
            visited_network_id: "visited.ims.test".into(),
            // This scripted S-CSCF answers REGISTERs only.
            reg_event: false,
        };
        Net {
            core: Pcscf::new(cfg, upstream).unwrap(),
            scscf: Scscf::new(),
            now: Instant::now(),
            next_set: 1,
            installed: HashMap::new(),
            promoted: vec![],
            retired: vec![],
            deleted: vec![],
            events: vec![],
            fail_install: false,
            fail_step: None,
        }
    }

    /// Feed one message from the UE; return what reached the UE.
    fn send(&mut self, from: SocketAddr, to: SocketAddr, msg: &Message) -> Vec<(Flow, Message)> {
        self.core.handle_inbound(
            Flow::new(to, from, Protocol::Udp),
            Bytes::from(msg.to_bytes()),
            self.now,
        );
        self.run()
    }

    fn run(&mut self) -> Vec<(Flow, Message)> {
        let mut to_ue = Vec::new();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Transmit(t) if t.flow.remote == s_addr() => {
                    assert_eq!(t.flow.protocol, Protocol::Udp);
                    let req = Message::parse(&t.payload).unwrap();
                    if let Some(resp) = self.scscf.handle(req) {
                        // Back to the Via the P-CSCF put on top: its unprotected port.
                        let via = resp.top_via().unwrap();
                        assert_eq!(via.sent_by(), "127.0.0.1:5060");
                        self.core.handle_inbound(
                            Flow::new(p_addr(5060), s_addr(), Protocol::Udp),
                            Bytes::from(resp.to_bytes()),
                            self.now,
                        );
                    }
                }
                Output::Transmit(t) => {
                    let raw = String::from_utf8(t.payload.to_vec()).unwrap();
                    assert!(
                        !raw.contains("ck=") && !raw.contains("ik="),
                        "keys reached the UE:\n{raw}"
                    );
                    to_ue.push((t.flow, Message::parse(&t.payload).unwrap()));
                }
                Output::Handoff(h) => panic!("no core in this process to hand to: {h:?}"),
                Output::Security(SecurityOp::Prepare { token, .. }) if self.fail_install => {
                    self.fail_install = false;
                    let e = secagree::SipIoError::Io {
                        what: "bind protected port".into(),
                        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
                    };
                    self.core.handle_security_ready(token, Err(e), self.now);
                }
                Output::Security(SecurityOp::Prepare { token, set }) => {
                    let id = self.next_set;
                    self.next_set += 1;
                    self.installed.insert(id, set);
                    self.core.handle_security_ready(token, Ok(id), self.now);
                }
                Output::Security(SecurityOp::Promote { id, .. }) => {
                    self.promoted.push(id);
                    self.report(id, SaStep::Promote);
                }
                Output::Security(SecurityOp::Retire { id, .. }) => {
                    self.retired.push(id);
                    self.report(id, SaStep::Retire);
                }
                Output::Security(SecurityOp::Delete { id, .. }) => {
                    // A backend forgets the set even when deleting it failed.
                    assert!(
                        self.installed.remove(&id).is_some(),
                        "delete of unknown set {id}"
                    );
                    self.deleted.push(id);
                    self.report(id, SaStep::Delete);
                }
                Output::Event(e) => self.events.push(e),
            }
        }
        to_ue
    }

    /// The shell's report on `step` of set `id`: success unless `fail_step` names it.
    fn report(&mut self, id: SetId, step: SaStep) {
        let r = if self.fail_step == Some(step) {
            self.fail_step = None;
            Err(secagree::SipIoError::Io {
                what: format!("{step} SA set {id}"),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            })
        } else {
            Ok(())
        };
        self.core.handle_security_result(id, step, r, self.now);
    }

    fn sa_failed(&self, id: SetId, step: SaStep) -> Option<&Option<String>> {
        self.events.iter().find_map(|e| match e {
            CoreEvent::SaFailed {
                id: i,
                step: s,
                impi,
                ..
            } if *i == id && *s == step => Some(impi),
            _ => None,
        })
    }

    fn advance(&mut self, d: Duration) -> Vec<(Flow, Message)> {
        self.now += d;
        self.core.handle_timeout(self.now);
        self.run()
    }

    fn last_seen(&self) -> &Message {
        self.scscf.seen.last().expect("the S-CSCF got nothing")
    }
}

/// This file's REGISTER layout: the Contact on the protected server port plus an Expires
/// header; a new port pair moves only the client port.
impl Ue {
    fn new_ports(&mut self) {
        self.spi_c += 2;
        self.spi_s += 2;
        self.port_c += 2;
    }

    fn register(&mut self, extra: &[(&str, String)], expires: u32, via_port: u16) -> Message {
        let contact = format!(
            "Contact: <sip:127.0.0.2:{}>;expires={expires}\r\nExpires: {expires}\r\n",
            self.port_s
        );
        self.register_with(via_port, &contact, extra)
    }

    fn initial(&mut self) -> Message {
        let h = self.initial_headers();
        self.register(&h, 600, 5060)
    }
}

/// 401 → (challenge, Security-Server, RES, the SA set the UE derives from its own CK/IK).
fn read_401(ue: &mut Ue, resp: &Message) -> (Challenge, Vec<SecurityMechanism>, [u8; 8], SaSet) {
    assert_eq!(resp.code(), Some(401), "{resp:?}");
    assert_eq!(resp.header_values("Via").count(), 1, "our Via is popped");
    let ch = Challenge::parse(resp.header("WWW-Authenticate").unwrap()).unwrap();
    assert!(ch.ck.is_none() && ch.ik.is_none());
    let server = SecurityMechanism::parse_list(resp.header("Security-Server").unwrap()).unwrap();
    let n = akav1::nonce::decode(&ch.nonce).unwrap();
    let r = ue.usim.authenticate(&n.rand, &n.autn).unwrap();
    let set = secagree::sa_set(
        IpAddr::from(UE_IP),
        IpAddr::from(P_IP),
        &ue.offers()[0],
        &server[0],
        &r.ck,
        &r.ik,
        Duration::from_secs(30),
        Instant::now(),
    )
    .unwrap();
    (ch, server, r.res, set)
}

fn answer(
    ue: &mut Ue,
    ch: &Challenge,
    server: &[SecurityMechanism],
    res: &[u8],
    set: &SaSet,
) -> Message {
    let auth = ue.authorization(ch, res, None);
    ue.register(
        &[
            ("Security-Verify", format_security_list(server)),
            ("Require", "sec-agree".into()),
            ("Proxy-Require", "sec-agree".into()),
            ("Authorization", auth),
        ],
        600,
        set.port_uc,
    )
}

fn assert_forwarded_edits(fwd: &Message, integrity: &str) {
    assert_eq!(
        fwd.uri_str(),
        Some(&*format!("sip:{DOMAIN}")),
        "Request-URI unchanged"
    );
    let vias = fwd.vias().unwrap();
    assert_eq!(vias.len(), 2, "{fwd}");
    assert_eq!(vias[0].sent_by(), "127.0.0.1:5060", "our Via on top");
    assert_eq!(fwd.max_forwards().unwrap(), Some(69));
    assert_eq!(fwd.header("Path"), Some("<sip:term@127.0.0.1:5060;lr>"));
    assert_eq!(fwd.header("P-Visited-Network-ID"), Some("visited.ims.test"));
    assert_eq!(fwd.header_values("P-Visited-Network-ID").count(), 1);
    assert!(fwd.has_option_tag("Supported", "path"));
    for h in [
        "Security-Client",
        "Security-Verify",
        "Require",
        "Proxy-Require",
    ] {
        assert!(!fwd.has_header(h), "{h} must not go upstream:\n{fwd}");
    }
    let c = Credentials::parse(fwd.header("Authorization").unwrap()).unwrap();
    assert_eq!(c.integrity_protected.as_deref(), Some(integrity));
    assert_eq!(c.username, IMPI);
}

/// Initial registration through the proxy; returns the established set and the
/// Security-Server it came from.
fn register(net: &mut Net, ue: &mut Ue) -> (SaSet, Vec<SecurityMechanism>) {
    let (to, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    assert_eq!(to, Flow::new(p_addr(5060), ue_addr(5060), Protocol::Udp));
    assert_forwarded_edits(net.last_seen(), "no");
    let (ch, server, res, set) = read_401(ue, &resp);
    let (to, ok) = only(net.send(
        ue_addr(set.port_uc),
        p_addr(set.port_ps),
        &answer(ue, &ch, &server, &res, &set),
    ));
    assert_forwarded_edits(net.last_seen(), "yes");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(
        to,
        Flow::new(p_addr(set.port_ps), ue_addr(set.port_uc), Protocol::Udp),
        "the 200 OK leaves through the new SA"
    );
    (set, server)
}

#[test]
fn register_reregister_deregister_through_an_s_cscf() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let (set, server1) = register(&mut net, &mut ue);
    // The P-CSCF's keys came from the S-CSCF's ck/ik, the UE's from its USIM: same set.
    let mut ue_view = set.clone();
    ue_view.expires_at = net.installed[&1].expires_at;
    assert_eq!(net.installed[&1], ue_view);
    assert_eq!(net.promoted, [1]);
    assert_eq!(net.core.registration(IMPU), Some(Some(1)));
    assert_eq!(net.core.service_route(IMPU), [SERVICE_ROUTE]);
    assert_eq!(net.core.associated(IMPU), [IMPU, TEL]);
    assert_eq!(net.core.forwarded_in_flight(), 0);
    assert!(net.events.contains(&CoreEvent::Registered {
        impu: IMPU.into(),
        impi: IMPI.into(),
        expires: 600,
        protected: true
    }));

    // Re-registration over the SA with a new offer; the S-CSCF challenges again.
    ue.new_ports();
    let offers = format_security_list(&ue.offers());
    let verify = format_security_list(&server1);
    let rereg = ue.register(
        &[
            ("Security-Client", offers),
            ("Security-Verify", verify.clone()),
        ],
        600,
        set.port_uc,
    );
    let (to, resp) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &rereg));
    assert_eq!(
        to.local,
        Some(p_addr(set.port_ps)),
        "401 goes out protected"
    );
    let (ch, server, res, set2) = read_401(&mut ue, &resp);
    assert_ne!(set2.spi_ps, set.spi_ps);
    let (_, ok) = only(net.send(
        ue_addr(set2.port_uc),
        p_addr(set2.port_ps),
        &answer(&mut ue, &ch, &server, &res, &set2),
    ));
    assert_eq!(ok.code(), Some(200));
    assert_eq!(net.core.registration(IMPU), Some(Some(2)));
    assert_eq!(net.promoted, [1, 2]);
    assert_eq!(net.retired, [1], "the old set retires");
    assert!(net.deleted.is_empty(), "but lives through the grace period");
    net.advance(Duration::from_secs(3));
    assert_eq!(net.deleted, [1]);
    assert_eq!(net.core.leases_in_use(), (2, 2));

    // Deregistration over the new SA: the S-CSCF accepts it (integrity-protected="yes").
    let verify2 = format_security_list(&server);
    let auth = ue.authorization(&ch, &res, None);
    let dereg = ue.register(
        &[("Security-Verify", verify2), ("Authorization", auth)],
        0,
        set2.port_uc,
    );
    let (to, ok) = only(net.send(ue_addr(set2.port_uc), p_addr(set2.port_ps), &dereg));
    assert_eq!(ok.code(), Some(200));
    assert_eq!(
        to.local,
        Some(p_addr(set2.port_ps)),
        "final 200 still protected"
    );
    assert_eq!(net.core.registration(IMPU), None);
    assert_eq!(net.retired, [1, 2]);
    net.advance(Duration::from_secs(3));
    assert_eq!(net.deleted, [1, 2]);
    assert!(net.installed.is_empty());
    assert_eq!(net.core.sa_count(), 0);
    assert_eq!(
        net.core.leases_in_use(),
        (0, 0),
        "all SPIs and ports released"
    );
}

#[test]
fn wrong_response_gets_the_s_cscfs_403_and_no_sa_is_left() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    let (ch, server, _res, set) = read_401(&mut ue, &resp);
    let req = answer(&mut ue, &ch, &server, b"wrongres", &set);
    let (to, r) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &req));
    assert_eq!(r.code(), Some(403));
    assert_eq!(to.local, Some(p_addr(set.port_ps)));
    assert_eq!(net.deleted, [1], "the temporary set goes with the failure");
    assert_eq!(net.core.sa_count(), 0);
    assert_eq!(net.core.leases_in_use(), (0, 0));
    assert_eq!(net.core.registration(IMPU), None);
}

#[test]
fn security_verify_mismatch_is_refused_before_the_s_cscf_sees_it() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    let (ch, mut server, res, set) = read_401(&mut ue, &resp);
    server[0].ealg = Some("null".into());
    let req = answer(&mut ue, &ch, &server, &res, &set);
    let (_, r) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &req));
    assert_eq!(r.code(), Some(494));
    assert_eq!(
        net.scscf.seen.len(),
        1,
        "only the initial REGISTER went upstream"
    );
    assert_eq!(net.core.registration(IMPU), None);
}

#[test]
fn challenge_without_keys_is_a_clear_502_when_ipsec_is_required() {
    let mut net = Net::new(IpsecPolicy::Required);
    net.scscf.mode = Mode::NoKeys;
    let mut ue = Ue::new(0);
    let (_, r) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    assert_eq!(r.code(), Some(502));
    // Why goes to the log, not to whoever sent the REGISTER.
    assert!(r.header("Warning").is_none(), "{r:?}");
    assert!(net.events.iter().any(|e| matches!(
        e,
        CoreEvent::Rejected {
            code: 502,
            reason: Rejection::NoUpstreamKeys,
            ..
        }
    )));
    assert!(net.installed.is_empty());
    assert_eq!(net.core.leases_in_use(), (0, 0));
}

#[test]
fn challenge_without_keys_goes_down_unprotected_when_ipsec_is_optional() {
    let mut net = Net::new(IpsecPolicy::Optional);
    net.scscf.mode = Mode::NoKeys;
    let mut ue = Ue::new(0);
    let (_, r) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    assert_eq!(r.code(), Some(401));
    assert!(!r.has_header("Security-Server"));
    assert!(net.installed.is_empty());
}

#[test]
fn what_the_ue_claims_is_replaced_not_forwarded() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let offers = format_security_list(&ue.offers());
    let req = ue.register(
        &[
            ("Security-Client", offers),
            ("Require", "sec-agree, foo".into()),
            ("P-Visited-Network-ID", "\"Fake net\"".into()),
            (
                "Authorization",
                format!(
                    "Digest username=\"{IMPI}\", realm=\"{DOMAIN}\", uri=\"sip:{DOMAIN}\", nonce=\"\", response=\"\", integrity-protected=\"yes\""
                ),
            ),
        ],
        600,
        5060,
    );
    let (_, r) = only(net.send(ue_addr(5060), p_addr(5060), &req));
    assert_eq!(r.code(), Some(401));
    let fwd = net.last_seen();
    let c = Credentials::parse(fwd.header("Authorization").unwrap()).unwrap();
    assert_eq!(c.integrity_protected.as_deref(), Some("no"));
    assert_eq!(
        fwd.header_values("P-Visited-Network-ID")
            .collect::<Vec<_>>(),
        ["visited.ims.test"]
    );
    assert_eq!(
        fwd.header_values("Require").collect::<Vec<_>>(),
        ["foo"],
        "only sec-agree is removed"
    );
}

#[test]
fn silent_s_cscf_gets_the_ue_a_408_and_frees_the_context() {
    let mut net = Net::new(IpsecPolicy::Required);
    net.scscf.mode = Mode::Silent;
    let mut ue = Ue::new(0);
    assert!(net
        .send(ue_addr(5060), p_addr(5060), &ue.initial())
        .is_empty());
    assert_eq!(net.core.forwarded_in_flight(), 1);
    let mut answers = Vec::new();
    for _ in 0..40 {
        answers.extend(net.advance(Duration::from_secs(1)));
    }
    let (_, r) = only(answers);
    assert_eq!(r.code(), Some(408));
    assert_eq!(net.core.forwarded_in_flight(), 0);
    // Timer E retransmitted the REGISTER upstream meanwhile (RFC 3261 §17.1.2.2).
    assert!(net.scscf.seen.len() > 1);
}

#[test]
fn max_forwards_zero_is_not_forwarded() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let m = ue
        .initial()
        .to_string()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let (_, r) = only(net.send(
        ue_addr(5060),
        p_addr(5060),
        &Message::parse(m.as_bytes()).unwrap(),
    ));
    assert_eq!(r.code(), Some(483));
    assert!(net.scscf.seen.is_empty());
}

#[test]
fn registration_expiry_retires_the_set_without_upstream_traffic() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    register(&mut net, &mut ue);
    let seen = net.scscf.seen.len();
    net.advance(Duration::from_secs(601));
    assert_eq!(net.core.registration(IMPU), None);
    assert_eq!(net.retired, [1]);
    net.advance(Duration::from_secs(3));
    assert_eq!(net.deleted, [1]);
    assert_eq!(net.scscf.seen.len(), seen);
    assert!(net.events.iter().any(|e| matches!(
        e,
        CoreEvent::Deregistered {
            reason: "timeout",
            ..
        }
    )));
}

#[test]
fn a_response_from_anyone_but_the_s_cscf_is_dropped() {
    let mut net = Net::new(IpsecPolicy::Required);
    net.scscf.mode = Mode::Silent;
    let mut ue = Ue::new(0);
    assert!(net
        .send(ue_addr(5060), p_addr(5060), &ue.initial())
        .is_empty());
    // Someone who saw the forwarded REGISTER forges the 401 with keys of their choosing.
    net.scscf.mode = Mode::Normal;
    let fwd = net.last_seen().clone();
    let forged = net.scscf.handle(fwd).unwrap();
    let before = net.core.stats().dropped;
    for from in [SocketAddr::from(([127, 0, 0, 66], 6060)), ue_addr(5060)] {
        net.core.handle_inbound(
            Flow::new(p_addr(5060), from, Protocol::Udp),
            Bytes::from(forged.to_bytes()),
            net.now,
        );
        assert!(net.run().is_empty());
    }
    assert_eq!(net.core.stats().dropped, before + 2);
    assert!(net.installed.is_empty(), "no SA from forged keys");
    assert_eq!(net.core.forwarded_in_flight(), 1);
}

/// Whatever the S-CSCF sends back (mutated answers, garbage), the core neither panics nor
/// leaks: every forwarded REGISTER ends with one answer to the UE or stays in flight.
#[test]
fn mangled_s_cscf_answers_do_not_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut net = Net::new(IpsecPolicy::Required);
        net.scscf.mode = Mode::Silent;
        let mut ue = Ue::new(0);
        net.send(ue_addr(5060), p_addr(5060), &ue.initial());
        net.scscf.mode = Mode::Normal;
        let fwd = net.last_seen().clone();
        let mut bytes = net.scscf.handle(fwd).unwrap().to_bytes();
        // Keep the status line and Via mostly intact so that some rounds still match the
        // transaction and reach the proxy logic.
        let edits = 1 + next() % 8;
        for _ in 0..edits {
            let at = (next() as usize) % bytes.len();
            match next() % 3 {
                0 => bytes[at] = next() as u8,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, b"\"=,;<>\r\n "[(next() % 9) as usize]),
            }
        }
        net.core.handle_inbound(
            Flow::new(p_addr(5060), s_addr(), Protocol::Udp),
            Bytes::from(bytes),
            net.now,
        );
        let out = net.run();
        assert!(out.len() <= 1, "round {round}: {out:#?}");
        for (_, m) in &out {
            let raw = m.to_string();
            assert!(!raw.contains("ck=") && !raw.contains("ik="), "{raw}");
        }
        assert_eq!(
            net.core.forwarded_in_flight() + out.len(),
            1,
            "round {round}: answered xor still waiting"
        );
    }
}

/// Kamailio challenges deregistrations too: the UE offers new SPIs in its de-REGISTER, the
/// 401 goes down through the set in use with a new Security-Server, the answer comes
/// through the new temporary set, and on the final 200 both sets retire.
#[test]
fn challenged_deregistration_builds_a_set_for_the_answer_then_everything_goes() {
    let mut net = Net::new(IpsecPolicy::Required);
    net.scscf.mode = Mode::ChallengeAll;
    let mut ue = Ue::new(0);
    let (set, server1) = register(&mut net, &mut ue);
    ue.new_ports();
    let dereg = ue.register(
        &[
            ("Security-Client", format_security_list(&ue.offers())),
            ("Security-Verify", format_security_list(&server1)),
        ],
        0,
        set.port_uc,
    );
    let (to, resp) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &dereg));
    assert_eq!(
        to.local,
        Some(p_addr(set.port_ps)),
        "401 through the set in use"
    );
    let (ch, server, res, set2) = read_401(&mut ue, &resp);
    assert_eq!(net.installed.len(), 2);
    let auth = ue.authorization(&ch, &res, None);
    let answer = ue.register(
        &[
            ("Security-Verify", format_security_list(&server)),
            ("Authorization", auth),
        ],
        0,
        set2.port_uc,
    );
    let (to, ok) = only(net.send(ue_addr(set2.port_uc), p_addr(set2.port_ps), &answer));
    assert_eq!(ok.code(), Some(200));
    assert_eq!(
        to.local,
        Some(p_addr(set2.port_ps)),
        "final 200 through the new set"
    );
    assert_eq!(net.core.registration(IMPU), None);
    assert_eq!(
        net.promoted,
        [1],
        "a set for a deregistration is never promoted"
    );
    let mut retired = net.retired.clone();
    retired.sort();
    assert_eq!(retired, [1, 2]);
    net.advance(Duration::from_secs(3));
    assert!(net.installed.is_empty());
    assert_eq!(net.core.leases_in_use(), (0, 0));
}

#[test]
fn failed_sa_install_answers_the_ue_and_leases_nothing() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    net.fail_install = true;
    let (to, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    assert_eq!(to.remote, ue_addr(5060));
    assert_eq!(resp.code(), Some(500), "{resp:?}");
    assert!(
        resp.header("WWW-Authenticate").is_none(),
        "no challenge without its SAs"
    );
    assert_eq!(net.core.sa_count(), 0);
    assert_eq!(net.core.leases_in_use(), (0, 0), "SPIs and ports returned");
    assert_eq!(net.core.pending_challenges(), 0);
    assert!(net.installed.is_empty());
    assert!(net.events.iter().any(|e| matches!(
        e,
        CoreEvent::Rejected {
            code: 500,
            reason: Rejection::IpsecSetup(_),
            ..
        }
    )));
    // The next attempt works: nothing was left behind to collide with.
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    assert_eq!(resp.code(), Some(401));
    assert_eq!(net.core.leases_in_use(), (2, 2));
}

#[test]
fn failed_sa_promotion_ends_the_registration_and_leases_nothing() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    net.fail_step = Some(SaStep::Promote);
    // The 200 OK leaves through the temporary set before the promotion is tried.
    let (set, server) = register(&mut net, &mut ue);
    assert_eq!(net.promoted, [1]);
    assert_eq!(
        net.core.registration(IMPU),
        None,
        "a registration whose SAs failed is not kept unprotected"
    );
    assert_eq!(net.sa_failed(1, SaStep::Promote), Some(&Some(IMPI.into())));
    assert!(net.events.contains(&CoreEvent::Deregistered {
        impu: IMPU.into(),
        reason: "sa-failure",
    }));
    assert_eq!(net.deleted, [1], "the set is torn down at once");
    assert!(net.installed.is_empty());
    assert_eq!(net.core.sa_count(), 0);
    assert_eq!(net.core.pending_challenges(), 0);
    assert_eq!(net.core.leases_in_use(), (0, 0), "SPIs and ports returned");
    assert_eq!(net.core.stats().sa_failures, 1);
    // Nothing that still arrives on the dead set's port is attributed to the UE.
    let rereg = ue.register(
        &[("Security-Verify", format_security_list(&server))],
        600,
        0,
    );
    assert!(net
        .send(ue_addr(set.port_uc), p_addr(set.port_ps), &rereg)
        .is_empty());
    assert!(matches!(
        net.events.last(),
        Some(CoreEvent::Dropped {
            reason: pcscf::core::DropReason::NoSa,
            ..
        })
    ));
    // The UE registers again from scratch, on fresh SAs.
    register(&mut net, &mut ue);
    assert_eq!(net.core.registration(IMPU), Some(Some(2)));
    assert_eq!(net.core.leases_in_use(), (2, 2));
}

/// A registration that expires while the backend fails `step` of its set: the set is
/// still deleted after its grace period and every SPI and port comes back.
fn expiry_with_failed(step: SaStep) -> Net {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    register(&mut net, &mut ue);
    net.fail_step = Some(step);
    net.advance(Duration::from_secs(601));
    assert_eq!(net.core.registration(IMPU), None);
    assert_eq!(net.retired, [1]);
    net.advance(Duration::from_secs(3));
    assert_eq!(net.deleted, [1]);
    assert!(net.installed.is_empty());
    assert_eq!(net.core.sa_count(), 0, "accounted as gone");
    assert_eq!(net.core.leases_in_use(), (0, 0), "SPIs and ports returned");
    assert_eq!(net.core.stats().sa_failures, 1);
    // The SPIs and ports serve the next registration.
    register(&mut net, &mut ue);
    assert_eq!(net.core.leases_in_use(), (2, 2));
    net
}

#[test]
fn failed_sa_retirement_still_deletes_the_set_after_its_grace() {
    let net = expiry_with_failed(SaStep::Retire);
    assert_eq!(net.sa_failed(1, SaStep::Retire), Some(&Some(IMPI.into())));
}

#[test]
fn failed_sa_deletion_is_reported_and_leases_nothing() {
    let net = expiry_with_failed(SaStep::Delete);
    // Reported after the set left our accounts: no owner to name any more.
    assert_eq!(net.sa_failed(1, SaStep::Delete), Some(&None));
}

/// Hardening item 1: a REGISTER whose To URI cannot be echoed into any response gets no
/// answer, and must not leave its server transaction behind (it used to stay in Trying
/// forever: 50,000 such datagrams kept ~49 MB).
#[test]
fn requests_that_cannot_be_answered_leave_no_transaction() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let good = ue.initial().to_string();
    let before = net.core.transaction_count();
    let dropped = net.core.stats().dropped;
    for (i, to) in ["<sip:a@x:99999>", "<sip:[::1>"].iter().enumerate() {
        for n in 0..50 {
            let branch = format!("z9hG4bKunanswerable{i}x{n}");
            let mut raw = good
                .lines()
                .map(|l| {
                    if l.starts_with("To:") {
                        format!("To: {to}")
                    } else if l.starts_with("Via:") {
                        format!("Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\r\n");
            raw.push_str("\r\n");
            net.core.handle_inbound(
                Flow::new(p_addr(5060), ue_addr(5060), Protocol::Udp),
                Bytes::from(raw),
                net.now,
            );
            assert!(net.run().is_empty(), "{to}: nothing can answer it");
        }
    }
    assert_eq!(net.core.stats().dropped, dropped + 100, "each one reported");
    assert_eq!(net.core.transaction_count(), before);
}
