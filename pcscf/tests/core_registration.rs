//! The collapsed node (our P-CSCF and S-CSCF cores wired in memory) driven message by
//! message, without sockets: a scripted UE (its USIM is akav1's, its sec-agree is
//! secagree's) on one side, the real HSS Cx handler with a real SQLite store on the other.
//! Every registration path and every refusal of issue 5.

use akav1::digest::Challenge;
use akav1::{AuthFailure, SqnPolicy};
use bytes::Bytes;
use diameter::Message as DMessage;
use hss::cx::{CxConfig, CxHandler};
use hss::metrics::Metrics;
use hss::store::{Durability, Impu, Store, Subscriber};
use pcscf::config::IpsecPolicy;
use pcscf::core::{AdmissionConfig, CoreEvent, SaStep, SecurityOp};
use pcscf::node::{Event, Node, Output};
use scscf::CxIdentity;
use sip::ims::{format_security_list, SecurityMechanism};
use sip::{Flow, Message, Protocol};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xfrm::{SaSet, SetId};

mod common;

use common::{
    core_config, only, p_addr, ue_addr, Ue, DOMAIN, IMPI, IMPU, K, OPC, P_IP, TEL, UE_IP,
};

fn subscriber() -> Subscriber {
    Subscriber {
        imsi: Some("001010000000001".into()),
        msisdn: Some("491700000001".into()),
        impus: vec![Impu::new(IMPU), Impu::new(TEL)],
        ..Subscriber::new(IMPI, K, OPC)
    }
}

struct Hss {
    cx: CxHandler,
    sqn_store: Store,
    _dir: tempfile::TempDir,
}

impl Hss {
    fn new() -> Hss {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hss.db");
        let mut s = Store::open(&p, Durability::Normal).unwrap();
        s.add(&subscriber()).unwrap();
        let sqn_store = Store::open(&p, Durability::Normal).unwrap();
        let cfg = CxConfig {
            origin_host: "hss.ims.test".into(),
            origin_realm: DOMAIN.into(),
            ..CxConfig::default()
        };
        Hss {
            cx: CxHandler::new(cfg, Arc::new(Mutex::new(s)), Arc::new(Metrics::default())),
            sqn_store,
            _dir: dir,
        }
    }

    fn answer(&mut self, req: &DMessage) -> DMessage {
        // The wire round trip keeps both sides honest about encoding.
        let req = DMessage::decode(req.encode()).unwrap();
        let a = self
            .cx
            .handle_blocking(&req, &mut self.sqn_store, &SqnPolicy::default(), 1);
        DMessage::decode(a.encode()).unwrap()
    }
}

/// The network side under test plus its HSS, with the shell's duties done inline.
struct Net {
    core: Node,
    hss: Hss,
    now: Instant,
    next_set: SetId,
    installed: HashMap<SetId, SaSet>,
    promoted: Vec<SetId>,
    retired: Vec<SetId>,
    deleted: Vec<SetId>,
    cx_log: Vec<String>,
    events: Vec<CoreEvent>,
    /// The next promotion fails (as a kernel refusing the update would).
    fail_promote: bool,
}

impl Net {
    fn new(policy: IpsecPolicy) -> Net {
        Net::with_admission(policy, AdmissionConfig::default())
    }

    fn with_admission(policy: IpsecPolicy, admission: AdmissionConfig) -> Net {
        let cfg = core_config(policy);
        let s_cfg = scscf::Config {
            cx: CxIdentity {
                origin_host: "scscf.ims.test".into(),
                origin_realm: DOMAIN.into(),
                destination_realm: DOMAIN.into(),
                server_name: "sip:127.0.0.1:6060".into(),
            },
            ..scscf::Config::new(DOMAIN, SocketAddr::from((P_IP, 6060)))
        };
        Net {
            core: Node::collapsed(cfg, s_cfg, DOMAIN.into())
                .unwrap()
                .with_admission(admission),
            hss: Hss::new(),
            now: Instant::now(),
            next_set: 1,
            installed: HashMap::new(),
            promoted: vec![],
            retired: vec![],
            deleted: vec![],
            cx_log: vec![],
            events: vec![],
            fail_promote: false,
        }
    }

    /// Feed one message from the UE; return what the P-CSCF sent back (to whom, what).
    fn send(&mut self, from: SocketAddr, to: SocketAddr, msg: &Message) -> Vec<(Flow, Message)> {
        self.core.handle_inbound(
            Flow::new(to, from, Protocol::Udp),
            Bytes::from(msg.to_bytes()),
            self.now,
        );
        self.run()
    }

    fn run(&mut self) -> Vec<(Flow, Message)> {
        let mut sent = Vec::new();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Transmit(_, t) => sent.push((t.flow, Message::parse(&t.payload).unwrap())),
                Output::Cx { token, request } => {
                    self.cx_log.push(request.name());
                    let a = self.hss.answer(&request);
                    self.core.handle_cx_answer(token, Ok(a), self.now);
                }
                Output::Security(SecurityOp::Prepare { token, set }) => {
                    let id = self.next_set;
                    self.next_set += 1;
                    self.installed.insert(id, set);
                    self.core.handle_security_ready(token, Ok(id), self.now);
                }
                Output::Security(SecurityOp::Promote { id, .. }) => {
                    self.promoted.push(id);
                    let r = if std::mem::take(&mut self.fail_promote) {
                        Err(secagree::SipIoError::IpsecOff)
                    } else {
                        Ok(())
                    };
                    self.core
                        .handle_security_result(id, SaStep::Promote, r, self.now);
                }
                Output::Security(SecurityOp::Retire { id, .. }) => self.retired.push(id),
                Output::Security(SecurityOp::Delete { id, .. }) => {
                    assert!(
                        self.installed.remove(&id).is_some(),
                        "delete of unknown set {id}"
                    );
                    self.deleted.push(id);
                }
                Output::Event(Event::Pcscf(e)) => self.events.push(e),
                Output::Event(Event::Scscf(_)) => {}
            }
        }
        sent
    }

    fn advance(&mut self, d: Duration) -> Vec<(Flow, Message)> {
        self.now += d;
        self.core.handle_timeout(self.now);
        self.run()
    }
}

/// This file's REGISTER layout: the Contact carries the expiry and a `+sip.instance`, no
/// Expires header; a new port pair moves both protected ports.
impl Ue {
    fn new_ports(&mut self) {
        self.spi_c += 2;
        self.spi_s += 2;
        self.port_c += 2;
        self.port_s += 2;
    }

    fn register(&mut self, extra: &[(&str, String)], expires: u32, contact_port: u16) -> Message {
        self.register_with(
            contact_port,
            &format!(
                "Contact: <sip:127.0.0.2:{contact_port}>;expires={expires};+sip.instance=\"<urn:gsma:imei:35000000-000000-0>\"\r\n"
            ),
            extra,
        )
    }

    fn initial(&mut self) -> Message {
        let h = self.initial_headers();
        self.register(&h, 600, 5060)
    }
}

/// 401 → (challenge, Security-Server, the SA set the UE derives).
fn read_401(ue: &mut Ue, resp: &Message) -> (Challenge, Vec<SecurityMechanism>, [u8; 8], SaSet) {
    assert_eq!(resp.code(), Some(401), "{resp:?}");
    let ch = Challenge::parse(resp.header("WWW-Authenticate").unwrap()).unwrap();
    assert!(
        ch.ck.is_none() && ch.ik.is_none(),
        "CK/IK must never reach the UE"
    );
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

/// Full initial registration; returns the established SA set.
/// The UE's protected answer to the 401 `resp`: the REGISTER to send through the new SA
/// set, the set and our Security-Server.
fn answer_401(ue: &mut Ue, resp: &Message) -> (Message, SaSet, Vec<SecurityMechanism>) {
    let (ch, server, res, set) = read_401(ue, resp);
    let auth = ue.authorization(&ch, &res, None);
    let req = ue.register(
        &[
            ("Security-Verify", format_security_list(&server)),
            ("Require", "sec-agree".into()),
            ("Proxy-Require", "sec-agree".into()),
            ("Authorization", auth),
        ],
        600,
        set.port_uc,
    );
    (req, set, server)
}

fn register(net: &mut Net, ue: &mut Ue) -> SaSet {
    let (to, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    assert_eq!(to.remote, ue_addr(5060));
    let (req, set, server) = answer_401(ue, &resp);
    let (to, ok) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &req));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    // The 200 OK leaves through the new SA: from port_ps to the UE's port_uc.
    assert_eq!(
        to,
        Flow::new(p_addr(set.port_ps), ue_addr(set.port_uc), Protocol::Udp)
    );
    ue.sa = Some(set.clone());
    ue.verify = format_security_list(&server);
    set
}

#[test]
fn initial_registration_with_ipsec_then_reregistration_then_deregistration() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let set = register(&mut net, &mut ue);
    assert_eq!(net.cx_log, ["MAR", "SAR"]);
    assert_eq!(net.core.pcscf().registration(IMPU), Some(Some(1)));
    assert_eq!(net.promoted, [1]);
    let mut ue_view = set.clone();
    ue_view.expires_at = net.installed[&1].expires_at;
    assert_eq!(
        net.installed[&1], ue_view,
        "both ends derive the same SA set"
    );
    assert_eq!(
        net.core.pcscf().associated(IMPU),
        [IMPU, TEL],
        "implicit set from User-Data"
    );
    assert_eq!(net.core.pcscf().leases_in_use(), (2, 2));

    // Re-registration through the established SA: a new challenge, a new set.
    ue.new_ports();
    let offers = format_security_list(&ue.offers());
    let rereg = ue.register(
        &[
            ("Security-Client", offers),
            ("Security-Verify", ue.verify.clone()),
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
    let auth = ue.authorization(&ch, &res, None);
    let req = ue.register(
        &[
            ("Security-Verify", format_security_list(&server)),
            ("Authorization", auth),
        ],
        600,
        set2.port_uc,
    );
    let (_, ok) = only(net.send(ue_addr(set2.port_uc), p_addr(set2.port_ps), &req));
    assert_eq!(ok.code(), Some(200));
    assert_eq!(net.core.pcscf().registration(IMPU), Some(Some(2)));
    assert_eq!(net.retired, [1], "the old set retires");
    assert!(net.deleted.is_empty(), "but lives through the grace period");
    net.advance(Duration::from_secs(3));
    assert_eq!(net.deleted, [1]);
    assert_eq!(
        net.core.pcscf().leases_in_use(),
        (2, 2),
        "old SPIs and ports returned"
    );

    // Deregistration through the new SA: no challenge, 200 OK protected, then all gone.
    let dereg = ue.register(
        &[("Security-Verify", format_security_list(&server))],
        0,
        set2.port_uc,
    );
    let (to, ok) = only(net.send(ue_addr(set2.port_uc), p_addr(set2.port_ps), &dereg));
    assert_eq!(ok.code(), Some(200));
    assert_eq!(to.local, Some(p_addr(set2.port_ps)));
    assert!(ok.header("Contact").unwrap().contains("expires=0"));
    assert_eq!(net.core.pcscf().registration(IMPU), None);
    assert_eq!(net.cx_log.last().map(String::as_str), Some("SAR"));
    net.advance(Duration::from_secs(3));
    assert_eq!(net.deleted, [1, 2]);
    assert!(net.installed.is_empty());
    assert_eq!(net.core.pcscf().sa_count(), 0);
    assert_eq!(
        net.core.pcscf().leases_in_use(),
        (0, 0),
        "all SPIs and ports released"
    );
}

#[test]
fn wrong_response_is_refused_and_leaves_no_sa() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    let (ch, server, _res, set) = read_401(&mut ue, &resp);
    let auth = ue.authorization(&ch, b"wrongres", None);
    let req = ue.register(
        &[
            ("Security-Verify", format_security_list(&server)),
            ("Authorization", auth),
        ],
        600,
        set.port_uc,
    );
    let (_, r) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &req));
    assert_eq!(r.code(), Some(403));
    assert_eq!(net.core.pcscf().sa_count(), 0);
    assert!(net.installed.is_empty());
    assert_eq!(net.core.pcscf().leases_in_use(), (0, 0));
    assert_eq!(net.core.pcscf().registration(IMPU), None);
    assert!(
        !net.cx_log.contains(&"SAR".to_string()),
        "no SAR for a failed authentication"
    );
}

#[test]
fn security_verify_mismatch_is_refused_no_downgrade() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    let (ch, mut server, res, set) = read_401(&mut ue, &resp);
    // A man in the middle rewrote the answer to null encryption.
    server[0].ealg = Some("null".into());
    let auth = ue.authorization(&ch, &res, None);
    let req = ue.register(
        &[
            ("Security-Verify", format_security_list(&server)),
            ("Authorization", auth),
        ],
        600,
        set.port_uc,
    );
    let (_, r) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &req));
    assert_eq!(r.code(), Some(494));
    assert_eq!(net.core.pcscf().sa_count(), 0);
    assert_eq!(net.core.pcscf().registration(IMPU), None);
}

#[test]
fn malformed_or_missing_security_client_gets_4xx() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let bad = ue.register(
        &[("Security-Client", "ipsec-3gpp;spi-c=notanumber".into())],
        600,
        5060,
    );
    let (_, r) = only(net.send(ue_addr(5060), p_addr(5060), &bad));
    assert_eq!(r.code(), Some(400));
    let none = ue.register(&[], 600, 5060);
    let (_, r) = only(net.send(ue_addr(5060), p_addr(5060), &none));
    assert_eq!(r.code(), Some(421));
    assert_eq!(r.header("Require"), Some("sec-agree"));
    let unacceptable = ue.register(
        &[(
            "Security-Client",
            "ipsec-3gpp;alg=hmac-sha-256-128;spi-c=1;spi-s=2;port-c=3;port-s=4".into(),
        )],
        600,
        5060,
    );
    let (_, r) = only(net.send(ue_addr(5060), p_addr(5060), &unacceptable));
    assert_eq!(r.code(), Some(494));
    assert!(net.cx_log.is_empty(), "no Cx traffic for refused offers");
}

#[test]
fn protected_port_from_an_unknown_source_is_dropped() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let set = register(&mut net, &mut ue);
    let before = net.core.pcscf().stats().dropped;
    // Another host (or the same host from another port) aims at the protected server port.
    let msg = ue.register(&[], 600, 5060);
    assert!(net
        .send(
            SocketAddr::from(([127, 0, 0, 9], set.port_uc)),
            p_addr(set.port_ps),
            &msg
        )
        .is_empty());
    assert!(net
        .send(ue_addr(set.port_uc + 100), p_addr(set.port_ps), &msg)
        .is_empty());
    assert_eq!(net.core.pcscf().stats().dropped, before + 2);
    assert_eq!(net.core.pcscf().registration(IMPU), Some(Some(1)));
}

#[test]
fn sqn_resynchronisation_then_success() {
    let mut net = Net::new(IpsecPolicy::Required);
    // The card has seen a much higher SQN in the HSS's IND slot than the fresh HSS record.
    let p = SqnPolicy::default();
    let mut ue = Ue::new(p.compose(5000, 1).unwrap().value());
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    let ch = Challenge::parse(resp.header("WWW-Authenticate").unwrap()).unwrap();
    let n = akav1::nonce::decode(&ch.nonce).unwrap();
    let Err(AuthFailure::SyncFailure { auts, .. }) = ue.usim.authenticate(&n.rand, &n.autn) else {
        panic!("the card must refuse the stale SQN");
    };
    // RFC 3310 §3.4: auts with the empty password; a new Security-Client, unprotected.
    let auth = ue.authorization(&ch, b"", Some(akav1::nonce::encode_auts(&auts)));
    ue.new_ports();
    let offers = format_security_list(&ue.offers());
    let req = ue.register(
        &[("Security-Client", offers), ("Authorization", auth)],
        600,
        5060,
    );
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &req));
    assert_eq!(net.cx_log, ["MAR", "MAR"], "second MAR carries RAND‖AUTS");
    assert_eq!(net.core.pcscf().stats().resyncs, 1);
    assert_eq!(
        net.core.pcscf().sa_count(),
        1,
        "the refused challenge's SAs are gone"
    );
    let (ch, server, res, set) = read_401(&mut ue, &resp);
    let auth = ue.authorization(&ch, &res, None);
    let req = ue.register(
        &[
            ("Security-Verify", format_security_list(&server)),
            ("Authorization", auth),
        ],
        600,
        set.port_uc,
    );
    let (_, ok) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &req));
    assert_eq!(ok.code(), Some(200));
}

#[test]
fn expiry_deregisters_and_deletes_the_sas() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    register(&mut net, &mut ue);
    assert!(net.core.pcscf().expires_in(IMPU, net.now).unwrap() <= Duration::from_secs(600));
    net.advance(Duration::from_secs(601));
    assert_eq!(net.core.pcscf().registration(IMPU), None);
    assert!(net.events.iter().any(|e| matches!(
        e,
        CoreEvent::Deregistered {
            reason: "timeout",
            ..
        }
    )));
    net.advance(Duration::from_secs(3));
    assert_eq!(net.core.pcscf().sa_count(), 0);
    assert_eq!(net.core.pcscf().leases_in_use(), (0, 0));
}

#[test]
fn a_failed_promotion_ends_the_p_cscf_registration_through_the_node() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    net.fail_promote = true;
    register(&mut net, &mut ue);
    let p = net.core.pcscf();
    assert_eq!(p.registration(IMPU), None);
    assert_eq!(p.sa_count(), 0);
    assert_eq!(p.leases_in_use(), (0, 0));
    assert_eq!(net.deleted, [1]);
    assert!(net.events.iter().any(|e| matches!(
        e,
        CoreEvent::SaFailed {
            id: 1,
            step: SaStep::Promote,
            ..
        }
    )));
    // The S-CSCF keeps its binding (it expires, or the UE's next REGISTER replaces it);
    // only the P-CSCF knows the SAs are gone.
    assert!(net.core.scscf().unwrap().registration(IMPU).is_some());
    ue.sa = None;
    register(&mut net, &mut ue);
    assert_eq!(net.core.pcscf().registration(IMPU), Some(Some(2)));
}

#[test]
fn unanswered_challenge_times_out_and_frees_everything() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    assert_eq!(net.core.pcscf().sa_count(), 1);
    net.advance(Duration::from_secs(31));
    assert_eq!(net.core.pcscf().sa_count(), 0);
    assert_eq!(net.core.pcscf().leases_in_use(), (0, 0));
}

#[test]
fn optional_ipsec_registers_a_ue_without_sec_agree_unprotected() {
    let mut net = Net::new(IpsecPolicy::Optional);
    let mut ue = Ue::new(0);
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.register(&[], 600, 5060)));
    assert_eq!(resp.code(), Some(401));
    assert!(resp.header("Security-Server").is_none());
    let ch = Challenge::parse(resp.header("WWW-Authenticate").unwrap()).unwrap();
    let n = akav1::nonce::decode(&ch.nonce).unwrap();
    let res = ue.usim.authenticate(&n.rand, &n.autn).unwrap().res;
    let auth = ue.authorization(&ch, &res, None);
    let (_, ok) = only(net.send(
        ue_addr(5060),
        p_addr(5060),
        &ue.register(&[("Authorization", auth)], 600, 5060),
    ));
    assert_eq!(ok.code(), Some(200));
    assert_eq!(net.core.pcscf().registration(IMPU), Some(None));
    assert_eq!(net.core.pcscf().sa_count(), 0);
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut net = Net::new(IpsecPolicy::Required);
    for g in [
        &b""[..],
        b"\x00\x01\x02",
        b"REGISTER",
        b"SIP/2.0 200 OK\r\n\r\n",
        &[0xff; 2000],
    ] {
        net.core.handle_inbound(
            Flow::new(p_addr(5060), ue_addr(5060), Protocol::Udp),
            Bytes::copy_from_slice(g),
            net.now,
        );
        net.run();
    }
    assert!(net.core.pcscf().stats().dropped >= 3);
}

/// Hardening item 4: a request that does not parse but names who sent it is answered (400,
/// or 505 for another SIP version), from its raw bytes and on the flow it came on, instead
/// of leaving the sender retransmitting into silence; on a protected port only from the
/// SA's owner.
#[test]
fn an_unparsable_request_is_answered_400_on_its_flow() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let set = register(&mut net, &mut ue);
    let good = String::from_utf8(ue.register(&[], 600, 5060).to_bytes()).unwrap();
    let bad = good.replacen("Content-Length: 0", "Content-Length: lots", 1);
    assert_ne!(good, bad, "{good}");
    let before = net.core.pcscf().stats();
    let answered = |net: &mut Net, from: SocketAddr, to: SocketAddr, raw: &str| {
        net.core.handle_inbound(
            Flow::new(to, from, Protocol::Udp),
            Bytes::from(raw.to_string()),
            net.now,
        );
        net.run()
    };
    let sent = answered(&mut net, ue_addr(5060), p_addr(5060), &bad);
    let (flow, r) = only(sent);
    assert_eq!(r.code(), Some(400));
    assert_eq!(
        (flow.local, flow.remote),
        (Some(p_addr(5060)), ue_addr(5060))
    );
    assert!(
        r.header("Warning").unwrap().contains("Content-Length"),
        "{r:?}"
    );
    // Through the SA, from its owner: answered on the protected flow.
    let sent = answered(
        &mut net,
        ue_addr(set.port_uc),
        p_addr(set.port_ps),
        &bad.replace("SIP/2.0\r\n", "SIP/3.0\r\n"),
    );
    let (flow, r) = only(sent);
    assert_eq!(r.code(), Some(505));
    assert_eq!(flow.local, Some(p_addr(set.port_ps)));
    // From a stranger to the protected port: dropped, not answered.
    let sent = answered(
        &mut net,
        SocketAddr::from(([127, 0, 0, 9], set.port_uc)),
        p_addr(set.port_ps),
        &bad,
    );
    assert!(sent.is_empty());
    let after = net.core.pcscf().stats();
    assert_eq!(after.refused, before.refused + 2);
    assert_eq!(after.dropped, before.dropped + 1);
    // The registration is untouched.
    assert_eq!(net.core.pcscf().registration(IMPU), Some(Some(1)));
}

/// Hardening item 4: unprotected REGISTERs naming one IMPI beyond its burst get 503 with
/// Retry-After and cost nothing (no Cx, no SA set); the UE's protected answer to a
/// challenge it already has still goes through.
#[test]
fn a_register_flood_for_one_impi_gets_503_with_retry_after_and_costs_nothing() {
    let mut net = Net::with_admission(
        IpsecPolicy::Required,
        AdmissionConfig {
            register_burst: 3,
            register_per_second: 0.1,
            ..AdmissionConfig::default()
        },
    );
    let mut ue = Ue::new(0);
    // Three challenges (the burst), each with its MAR and temporary SA set.
    let mut last = None;
    for _ in 0..3 {
        let (_, r) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
        assert_eq!(r.code(), Some(401));
        last = Some(r);
    }
    let mars = net.cx_log.len();
    let sets = net.installed.len();
    for _ in 0..5 {
        let (_, r) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
        assert_eq!(r.code(), Some(503));
        assert_eq!(r.header("Retry-After"), Some("10"));
    }
    assert_eq!((net.cx_log.len(), net.installed.len()), (mars, sets));
    // The protected answer to the last challenge is no new work: registered.
    let (req, set, _) = answer_401(&mut ue, &last.unwrap());
    let (_, ok) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &req));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
}

/// Overload: while the shell reports a deep backlog, a new REGISTER and a UE's new INVITE
/// get 503 + Retry-After at once; an in-dialog request and the protected answer to a
/// challenge still go on.
#[test]
fn under_overload_new_work_is_shed_with_503_and_work_under_way_goes_on() {
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let set = register(&mut net, &mut ue);
    net.core.set_overloaded(true);
    let (_, r) = only(net.send(ue_addr(5062), p_addr(5060), &ue.initial()));
    assert_eq!(r.code(), Some(503));
    assert_eq!(r.header("Retry-After"), Some("5"));
    let invite = Message::parse(
        format!(
            "INVITE sip:bob@{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.2:{};branch=z9hG4bKinv1\r\n\
             Max-Forwards: 70\r\nFrom: <{IMPU}>;tag=a\r\nTo: <sip:bob@{DOMAIN}>\r\n\
             Call-ID: shed1\r\nCSeq: 1 INVITE\r\nContact: <sip:u@127.0.0.2:{}>\r\n\
             Content-Length: 0\r\n\r\n",
            set.port_uc, set.port_us
        )
        .as_bytes(),
    )
    .unwrap();
    let sent = net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &invite);
    let r = &sent.last().expect("an answer").1;
    assert_eq!(r.code(), Some(503), "{sent:?}");
    assert!(r.header("Retry-After").is_some());
    // In-dialog (a To tag): not shed (it fails later for its own reasons, not 503).
    let bye = Message::parse(
        format!(
            "BYE sip:bob@{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.2:{};branch=z9hG4bKbye1\r\n\
             Max-Forwards: 70\r\nFrom: <{IMPU}>;tag=a\r\nTo: <sip:bob@{DOMAIN}>;tag=b\r\n\
             Call-ID: shed2\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            set.port_uc
        )
        .as_bytes(),
    )
    .unwrap();
    let sent = net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &bye);
    assert!(sent.iter().all(|(_, m)| m.code() != Some(503)), "{sent:?}");
    // Back to normal: a new REGISTER is challenged again.
    net.core.set_overloaded(false);
    let (_, r) = only(net.send(ue_addr(5063), p_addr(5060), &ue.initial()));
    assert_eq!(r.code(), Some(401));
}

#[test]
fn a_strangers_register_or_forged_auts_never_breaks_a_pending_challenge() {
    // Hardening item 2: between B's 401 and B's protected answer, anyone on the LAN names
    // B's IMPI — once plainly, once with a garbage `auts` (before the HSS checked MAC-S).
    let mut net = Net::new(IpsecPolicy::Required);
    let mut ue = Ue::new(0);
    let (_, resp) = only(net.send(ue_addr(5060), p_addr(5060), &ue.initial()));
    let (ch, server, res, set) = read_401(&mut ue, &resp);
    let stranger = SocketAddr::from(([127, 0, 0, 9], 5060));
    let mut eve = Ue::new(0);
    eve.new_ports();
    let (_, r) = only(net.send(stranger, p_addr(5060), &eve.initial()));
    assert_eq!(
        r.code(),
        Some(401),
        "the stranger gets a challenge of its own"
    );
    let forged = eve.authorization(&ch, b"", Some("AAAAAAAAAAAAAAAAAAA=".into()));
    let offers = format_security_list(&eve.offers());
    let req = eve.register(
        &[("Security-Client", offers), ("Authorization", forged)],
        600,
        5060,
    );
    let (_, r) = only(net.send(stranger, p_addr(5060), &req));
    assert_eq!(r.code(), Some(403), "MAC-S fails at the HSS: {r:?}");
    assert!(net.deleted.is_empty(), "B's temporary SAs are still there");
    // B answers through its temporary SAs as if nothing happened.
    let auth = ue.authorization(&ch, &res, None);
    let req = ue.register(
        &[
            ("Security-Verify", format_security_list(&server)),
            ("Authorization", auth),
        ],
        600,
        set.port_uc,
    );
    let (to, ok) = only(net.send(ue_addr(set.port_uc), p_addr(set.port_ps), &req));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(to.local, Some(p_addr(set.port_ps)));
    assert_eq!(net.core.pcscf().registration(IMPU), Some(Some(1)));
    // The stranger's challenge and its SAs end on their own timer.
    net.advance(Duration::from_secs(31));
    assert_eq!(net.core.pcscf().sa_count(), 1);
    assert_eq!(net.core.pcscf().pending_challenges(), 0);
}
