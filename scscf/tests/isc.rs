//! Service routing over ISC, sans-IO: the S-CSCF core driven message by message with a
//! scripted HSS, the P-CSCF in memory and an application server on the network that this
//! test plays (TS 24.229 §5.4.3.2/§5.4.3.3, TS 29.228 Annex B).

use akav1::digest::{Credentials, Qop, QopInput, ResponseInput, AKAV1_MD5};
use diameter::{avp, result, Avp, FindAvp, VENDOR_3GPP};
use ifc::{
    DefaultHandling, ImsSubscription, InitialFilterCriteria, PublicIdentity, ServiceProfile,
    SessionCase,
};
use scscf::{Config, Isc, Output, Scscf};
use sip::{Flow, Message, Protocol};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DOMAIN: &str = "ims.test";
const XRES: [u8; 8] = [2; 8];
const S: ([u8; 4], u16) = ([127, 0, 0, 1], 6060);
const P: ([u8; 4], u16) = ([127, 0, 0, 1], 5060);
const AS1: ([u8; 4], u16) = ([127, 0, 0, 5], 5070);
const AS2: ([u8; 4], u16) = ([127, 0, 0, 6], 5070);

fn addr(a: ([u8; 4], u16)) -> SocketAddr {
    SocketAddr::from(a)
}

fn as_uri(a: ([u8; 4], u16)) -> String {
    let a = addr(a);
    format!("sip:{}:{}", a.ip(), a.port())
}

/// An iFC on `method` and `case` toward `server`.
fn ifc(
    priority: i32,
    method: &str,
    case: SessionCase,
    server: String,
    dh: DefaultHandling,
) -> InitialFilterCriteria {
    InitialFilterCriteria::for_method(priority, method, Some(case), &server, dh)
}

fn user_data(user: &str, ifcs: Vec<InitialFilterCriteria>) -> String {
    ImsSubscription {
        private_id: format!("{user}@{DOMAIN}"),
        service_profiles: vec![ServiceProfile {
            public_identities: vec![
                PublicIdentity {
                    identity: format!("sip:{user}@{DOMAIN}"),
                    ..Default::default()
                },
                PublicIdentity {
                    identity: format!("tel:+49{}", user.len()),
                    ..Default::default()
                },
            ],
            initial_filter_criteria: ifcs,
            ..Default::default()
        }],
    }
    .to_xml()
}

struct Net {
    s: Scscf,
    now: Instant,
    /// User-Data per user name (the HSS's profiles); users absent are unknown.
    profiles: HashMap<String, String>,
    /// Users the HSS knows but who are not registered (LIR answers 2003).
    unregistered: Vec<String>,
    /// Server-Assignment-Types of the SARs sent.
    sars: Vec<i32>,
    /// What went to the P-CSCF in memory.
    to_p: Vec<Message>,
    /// What went over the network, with its destination.
    wire: Vec<(SocketAddr, Message)>,
    seq: u32,
    /// The Authorization of the last successful REGISTER (a protected deregistration
    /// reuses it, as the UE does through its SA).
    last_creds: String,
}

impl Net {
    fn new(as_timeout: Duration) -> Net {
        Net::with(as_timeout, vec![addr(AS1).ip(), addr(AS2).ip()])
    }

    fn with(as_timeout: Duration, application_servers: Vec<std::net::IpAddr>) -> Net {
        let s = Scscf::new(Config {
            routing: scscf::Routing {
                trusted: vec![],
                local_peers: vec![addr(P)],
            },
            ..Config::new(DOMAIN, addr(S))
        })
        .with_ids(sip::Ids::seeded(7))
        .with_isc(Isc {
            as_timeout,
            application_servers,
            ..Isc::default()
        });
        Net {
            s,
            now: Instant::now(),
            profiles: HashMap::new(),
            unregistered: vec![],
            sars: vec![],
            to_p: vec![],
            wire: vec![],
            seq: 0,
            last_creds: String::new(),
        }
    }

    fn p_flow() -> Flow {
        Flow::new(addr(S), addr(P), Protocol::InProcess)
    }

    fn hss(&mut self, request: &diameter::Message) -> diameter::Message {
        let a = diameter::Message::answer_for(request);
        let impu = request
            .get_utf8(avp::PUBLIC_IDENTITY)
            .unwrap_or_default()
            .to_string();
        let user = impu
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        match request.code {
            diameter::cmd::MULTIMEDIA_AUTH => a
                .with(Avp::grouped(
                    avp::SIP_AUTH_DATA_ITEM,
                    [
                        Avp::octets(avp::SIP_AUTHENTICATE, vec![1; 32]),
                        Avp::octets(avp::SIP_AUTHORIZATION, XRES.to_vec()),
                        Avp::octets(avp::CONFIDENTIALITY_KEY, vec![0xc0; 16]),
                        Avp::octets(avp::INTEGRITY_KEY, vec![0x1c; 16]),
                    ],
                ))
                .with_result_code(result::SUCCESS),
            diameter::cmd::SERVER_ASSIGNMENT => {
                let kind = request
                    .find(avp::SERVER_ASSIGNMENT_TYPE)
                    .and_then(|a| a.as_u32().ok())
                    .unwrap_or(99) as i32;
                self.sars.push(kind);
                match self.profiles.get(&user) {
                    Some(xml) => a
                        .with(Avp::octets(avp::USER_DATA, xml.as_bytes().to_vec()))
                        .with_experimental_result(VENDOR_3GPP, 2001)
                        .with_result_code(result::SUCCESS),
                    None => a.with_experimental_result(VENDOR_3GPP, 5001),
                }
            }
            diameter::cmd::LOCATION_INFO if self.unregistered.contains(&user) => {
                a.with_experimental_result(VENDOR_3GPP, 2003)
            }
            _ => a.with_experimental_result(VENDOR_3GPP, 5001),
        }
    }

    fn run(&mut self) {
        while let Some(o) = self.s.poll_output() {
            match o {
                Output::Handoff(h) => self.to_p.push(h.message),
                Output::Transmit(t) => {
                    let m = Message::parse(&t.payload).expect("we send what we can parse");
                    self.wire.push((t.flow.remote, m));
                }
                Output::Cx { token, request } => {
                    let a = self.hss(&request);
                    self.s.handle_cx_answer(token, Ok(a), self.now);
                }
                Output::Event(_) => {}
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.s.handle_timeout(self.now);
        self.run();
    }

    /// Registers `user` (profile `ifcs`) with contact `sip:user@10.0.0.N`.
    fn register(&mut self, user: &str, ifcs: Vec<InitialFilterCriteria>) {
        self.profiles.insert(user.into(), user_data(user, ifcs));
        let first = self.register_once(user, None, 600);
        assert_eq!(first.code(), Some(401));
        let ch = first.digest_challenge().unwrap().unwrap();
        let impi = format!("{user}@{DOMAIN}");
        let uri = format!("sip:{DOMAIN}");
        let input = ResponseInput {
            username: &impi,
            realm: &ch.realm,
            nonce: &ch.nonce,
            method: "REGISTER",
            uri: &uri,
            qop: Some(QopInput {
                qop: Qop::Auth,
                cnonce: "c0ffee",
                nc: "00000001",
            }),
            body: b"",
        };
        let creds = Credentials {
            username: impi.clone(),
            realm: ch.realm.clone(),
            nonce: ch.nonce.clone(),
            uri: uri.clone(),
            response: akav1::digest::response(&XRES, &input),
            algorithm: Some(AKAV1_MD5.into()),
            cnonce: Some("c0ffee".into()),
            qop: Some(Qop::Auth),
            nc: Some("00000001".into()),
            integrity_protected: Some("yes".into()),
            ..Default::default()
        };
        let ok = self.register_once(user, Some(creds.to_header()), 600);
        assert_eq!(ok.code(), Some(200), "{ok:?}");
        self.last_creds = creds.to_header();
    }

    fn register_once(&mut self, user: &str, auth: Option<String>, expires: u32) -> Message {
        self.seq += 1;
        let impu = format!("sip:{user}@{DOMAIN}");
        let mut m = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKr{}\r\n\
             Max-Forwards: 69\r\nFrom: <{impu}>;tag=u\r\nTo: <{impu}>\r\nCall-ID: r-{user}\r\n\
             CSeq: {} REGISTER\r\nContact: <sip:{user}@10.0.0.{}:5060>;expires={expires}\r\n\
             Path: <sip:term@127.0.0.1:5060;lr>\r\n",
            self.seq,
            self.seq,
            user.len()
        );
        if let Some(a) = auth {
            m.push_str(&format!("Authorization: {a}\r\n"));
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        let before = self.to_p.len();
        self.s.handle_message(
            Message::parse(m.as_bytes()).unwrap(),
            Self::p_flow(),
            self.now,
        );
        self.run();
        self.to_p[before..]
            .iter()
            .rev()
            .find(|m| !m.is_request())
            .cloned()
            .expect("an answer")
    }

    /// An originating INVITE from `from` (asserted by the P-CSCF) to `to`.
    fn invite(&mut self, from: &str, to: &str) -> Message {
        self.seq += 1;
        let m = format!(
            "INVITE {to} SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKi{}\r\n\
             Max-Forwards: 69\r\nRoute: <sip:orig@127.0.0.1:6060;lr>\r\n\
             From: <sip:{from}@{DOMAIN}>;tag=a\r\nTo: <{to}>\r\nCall-ID: call-{}\r\n\
             CSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:{from}@{DOMAIN}>\r\n\
             Contact: <sip:{from}@10.0.0.9:5060>\r\nContent-Length: 0\r\n\r\n",
            self.seq, self.seq
        );
        let m = Message::parse(m.as_bytes()).unwrap();
        self.s.handle_message(m.clone(), Self::p_flow(), self.now);
        self.run();
        m
    }

    /// The last request that went to `to` over the network.
    fn last_to(&self, to: ([u8; 4], u16)) -> Option<Message> {
        self.wire
            .iter()
            .rev()
            .find(|(a, m)| *a == addr(to) && m.is_request())
            .map(|(_, m)| m.clone())
    }

    /// Plays a proxy AS at `at`: sends `req` back to the S-CSCF with its own Via on top and
    /// its Route entry popped.
    fn as_relays(&mut self, at: ([u8; 4], u16), req: &Message, branch: &str) {
        let mut m = req.clone();
        m.pop_header_value("Route");
        let a = addr(at);
        m.prepend_header(
            "Via",
            &format!("SIP/2.0/UDP {}:{};branch=z9hG4bK{branch}", a.ip(), a.port()),
        );
        self.as_sends(at, m);
    }

    fn as_sends(&mut self, at: ([u8; 4], u16), m: Message) {
        let flow = Flow::new(addr(S), addr(at), Protocol::Udp);
        self.s
            .handle_inbound(flow, bytes::Bytes::from(m.to_bytes()), self.now);
        self.run();
    }

    /// The AS answers `req` (what it received from us) with `code`.
    fn as_answers(&mut self, at: ([u8; 4], u16), req: &Message, code: u16) {
        let r = sip::ResponseBuilder::new(req, code)
            .to_tag("as")
            .build()
            .unwrap();
        self.as_sends(at, r);
    }

    fn last_to_p(&self) -> &Message {
        self.to_p.last().expect("something went to the P-CSCF")
    }
}

fn routes(m: &Message) -> Vec<String> {
    m.header_values("Route").map(str::to_string).collect()
}

#[test]
fn originating_ifc_sends_the_invite_through_the_as_and_back_then_to_the_callee() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::Originating,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.register("bob", vec![]);
    n.invite("alice", "sip:bob@ims.test");
    let at_as = n.last_to(AS1).expect("the INVITE went to the AS");
    let r = routes(&at_as);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0], "<sip:127.0.0.5:5070;lr>");
    assert!(r[1].starts_with("<sip:127.0.0.1:6060;lr;isc="), "{r:?}");
    let token_len = r[1].len() - "<sip:127.0.0.1:6060;lr;isc=>".len();
    assert!(token_len >= 32, "an unguessable marker: {r:?}");
    assert_eq!(
        at_as.header("Record-Route"),
        Some("<sip:127.0.0.1:6060;lr>")
    );
    assert_eq!(
        at_as.header("P-Served-User"),
        Some("<sip:alice@ims.test>;sescase=orig;regstate=reg")
    );
    assert!(n
        .to_p
        .iter()
        .all(|m| m.method() != Some(&sip::Method::Invite)));
    assert_eq!(n.s.isc_pending(), 1);

    // The AS (a proxy) sends it back: on to bob's contact along his Path.
    n.as_relays(AS1, &at_as, "as1");
    let to_bob = n.last_to_p().clone();
    assert_eq!(to_bob.method(), Some(&sip::Method::Invite));
    assert_eq!(to_bob.uri_str(), Some("sip:bob@10.0.0.3:5060"));
    assert_eq!(routes(&to_bob), ["<sip:term@127.0.0.1:5060;lr>"]);
    let rr: Vec<&str> = to_bob.header_values("Record-Route").collect();
    assert_eq!(
        rr,
        ["<sip:127.0.0.1:6060;lr>", "<sip:127.0.0.1:6060;lr>"],
        "one per pass"
    );
    assert_eq!(n.s.isc_pending(), 0, "a marker is used once");
    assert_eq!(
        to_bob.header("P-Served-User"),
        None,
        "not past the trust domain"
    );
    assert_eq!(n.s.stats().as_forwards, 1);

    // Bob answers: the 200 goes to the AS, then (relayed by it) to alice's P-CSCF.
    let ok = sip::ResponseBuilder::new(&to_bob, 200)
        .to_tag("b")
        .build()
        .unwrap();
    n.s.handle_message(ok, Net::p_flow(), n.now);
    n.run();
    let (to, resp) = n.wire.last().expect("the 200 went to the AS").clone();
    assert_eq!((to, resp.code()), (addr(AS1), Some(200)));
    let mut up = resp.clone();
    up.pop_header_value("Via");
    n.as_sends(AS1, up);
    assert_eq!(n.last_to_p().code(), Some(200));

    // The same marker again (a replay with a fresh branch) is refused.
    n.as_relays(AS1, &at_as, "replay");
    let refused = n.wire.last().unwrap();
    assert_eq!((refused.0, refused.1.code()), (addr(AS1), Some(403)));
}

#[test]
fn ifcs_run_in_priority_order_and_terminating_ifcs_follow_for_the_tel_form() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![
            ifc(
                20,
                "INVITE",
                SessionCase::Originating,
                as_uri(AS2),
                DefaultHandling::SessionContinued,
            ),
            ifc(
                10,
                "INVITE",
                SessionCase::Originating,
                as_uri(AS1),
                DefaultHandling::SessionContinued,
            ),
            ifc(
                5,
                "MESSAGE",
                SessionCase::Originating,
                as_uri(AS2),
                DefaultHandling::SessionContinued,
            ),
        ],
    );
    n.register(
        "bob",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::TerminatingRegistered,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.invite("alice", "tel:+493");
    let first = n.last_to(AS1).expect("priority 10 first");
    assert!(n.last_to(AS2).is_none());
    n.as_relays(AS1, &first, "a1");
    let second = n.last_to(AS2).expect("then priority 20");
    n.as_relays(AS2, &second, "a2");
    // Bob's terminating iFC, found through his tel: identity.
    let term = n
        .wire
        .iter()
        .filter(|(a, m)| *a == addr(AS1) && m.is_request())
        .count();
    assert_eq!(term, 2, "bob's terminating AS");
    let third = n.last_to(AS1).unwrap();
    n.as_relays(AS1, &third, "a3");
    let to_bob = n.last_to_p();
    assert_eq!(to_bob.uri_str(), Some("sip:bob@10.0.0.3:5060"));
    assert_eq!(n.s.stats().as_forwards, 3);
}

#[test]
fn silent_as_with_session_continued_is_skipped_after_the_timeout() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::Originating,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.register("bob", vec![]);
    n.invite("alice", "sip:bob@ims.test");
    assert!(n.last_to(AS1).is_some());
    n.advance(Duration::from_millis(3900));
    assert!(
        n.to_p
            .iter()
            .all(|m| m.method() != Some(&sip::Method::Invite)),
        "not yet"
    );
    n.advance(Duration::from_millis(200));
    let to_bob = n.last_to_p();
    assert_eq!(to_bob.method(), Some(&sip::Method::Invite));
    assert_eq!(to_bob.uri_str(), Some("sip:bob@10.0.0.3:5060"));
    assert_eq!(n.s.isc_pending(), 0);
    assert_eq!(n.s.stats().as_failures, 1);
    // The AS's late request (with the marker of the abandoned hop) is not served twice.
    let late = n.last_to(AS1).unwrap();
    let before = n.to_p.len();
    n.as_relays(AS1, &late, "late");
    assert_eq!(n.to_p.len(), before);
}

#[test]
fn silent_as_with_session_terminated_answers_408() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::Originating,
            as_uri(AS1),
            DefaultHandling::SessionTerminated,
        )],
    );
    n.register("bob", vec![]);
    n.invite("alice", "sip:bob@ims.test");
    n.advance(Duration::from_secs(5));
    let answer = n.last_to_p();
    assert_eq!(answer.code(), Some(408), "{answer:?}");
    assert!(n
        .to_p
        .iter()
        .all(|m| m.method() != Some(&sip::Method::Invite)));
}

#[test]
fn as_5xx_before_any_provisional_follows_default_handling() {
    // SESSION_CONTINUED: the next iFC (a second AS), then the callee.
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![
            ifc(
                1,
                "INVITE",
                SessionCase::Originating,
                as_uri(AS1),
                DefaultHandling::SessionContinued,
            ),
            ifc(
                2,
                "INVITE",
                SessionCase::Originating,
                as_uri(AS2),
                DefaultHandling::SessionContinued,
            ),
        ],
    );
    n.register("bob", vec![]);
    n.invite("alice", "sip:bob@ims.test");
    let at1 = n.last_to(AS1).unwrap();
    n.as_answers(AS1, &at1, 503);
    let at2 = n.last_to(AS2).expect("the next iFC's AS");
    // A 100 does not show the service is alive; a 503 after it still counts as failure.
    n.as_answers(AS2, &at2, 100);
    n.as_answers(AS2, &at2, 500);
    let to_bob = n.last_to_p();
    assert_eq!(to_bob.method(), Some(&sip::Method::Invite), "{to_bob:?}");

    // SESSION_TERMINATED: the AS's failure answers the caller (503 passed on as 500).
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::Originating,
            as_uri(AS1),
            DefaultHandling::SessionTerminated,
        )],
    );
    n.register("bob", vec![]);
    n.invite("alice", "sip:bob@ims.test");
    let at1 = n.last_to(AS1).unwrap();
    n.as_answers(AS1, &at1, 503);
    assert_eq!(n.last_to_p().code(), Some(500));

    // After a provisional the AS owns the request: its 500 is the answer, whatever the
    // DefaultHandling.
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::Originating,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.register("bob", vec![]);
    n.invite("alice", "sip:bob@ims.test");
    let at1 = n.last_to(AS1).unwrap();
    n.as_answers(AS1, &at1, 180);
    n.as_answers(AS1, &at1, 500);
    assert_eq!(n.last_to_p().code(), Some(500));
    n.advance(Duration::from_secs(5));
    assert!(n
        .to_p
        .iter()
        .all(|m| m.method() != Some(&sip::Method::Invite)));
}

#[test]
fn terminating_unregistered_callee_is_served_by_its_as_with_the_profile_from_sar() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register("alice", vec![]);
    n.profiles.insert(
        "carol".into(),
        user_data(
            "carol",
            vec![
                ifc(
                    1,
                    "INVITE",
                    SessionCase::TerminatingRegistered,
                    as_uri(AS2),
                    DefaultHandling::SessionContinued,
                ),
                ifc(
                    2,
                    "INVITE",
                    SessionCase::TerminatingUnregistered,
                    as_uri(AS1),
                    DefaultHandling::SessionContinued,
                ),
            ],
        ),
    );
    n.unregistered.push("carol".into());
    let sars = n.sars.len();
    n.invite("alice", "sip:carol@ims.test");
    assert_eq!(n.sars[sars..], [3], "SAR UNREGISTERED_USER");
    let at_as = n.last_to(AS1).expect("the voicemail-style AS");
    assert!(n.last_to(AS2).is_none(), "not the registered-case iFC");
    assert_eq!(at_as.uri_str(), Some("sip:carol@ims.test"));
    // The AS passes it back unchanged: nobody to deliver it to.
    n.as_relays(AS1, &at_as, "vm");
    let answer = n.wire.last().unwrap();
    assert_eq!((answer.0, answer.1.code()), (addr(AS1), Some(480)));

    // Without a matching iFC the unregistered callee gets 480 as before.
    n.profiles.insert("dave".into(), user_data("dave", vec![]));
    n.unregistered.push("dave".into());
    n.invite("alice", "sip:dave@ims.test");
    assert_eq!(n.last_to_p().code(), Some(480));
}

#[test]
fn an_as_may_originate_for_an_unregistered_user_only_from_a_configured_address() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register("bob", vec![]);
    n.profiles.insert(
        "erin".into(),
        user_data(
            "erin",
            vec![ifc(
                1,
                "MESSAGE",
                SessionCase::OriginatingUnregistered,
                as_uri(AS2),
                DefaultHandling::SessionContinued,
            )],
        ),
    );
    let msg = |branch: &str| {
        Message::parse(
            format!(
                "MESSAGE sip:bob@ims.test SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.5:5070;branch=z9hG4bK{branch}\r\n\
                 Max-Forwards: 70\r\nRoute: <sip:orig@127.0.0.1:6060;lr>\r\n\
                 From: <sip:erin@ims.test>;tag=e\r\nTo: <sip:bob@ims.test>\r\nCall-ID: m-{branch}\r\n\
                 CSeq: 1 MESSAGE\r\nP-Asserted-Identity: <sip:erin@ims.test>\r\n\
                 Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
            )
            .as_bytes(),
        )
        .unwrap()
    };
    let sars = n.sars.len();
    n.as_sends(AS1, msg("m1"));
    assert_eq!(n.sars[sars..], [3]);
    let at2 = n.last_to(AS2).expect("erin's originating-unregistered iFC");
    n.as_relays(AS2, &at2, "m2");
    assert_eq!(n.last_to_p().method(), Some(&sip::Method::Message));

    // The same from an address that is no AS of ours: refused.
    let stranger = ([127, 0, 0, 9], 5070);
    n.as_sends(stranger, msg("m3"));
    let (to, r) = n.wire.last().unwrap();
    assert_eq!((*to, r.code()), (addr(stranger), Some(403)));
}

/// An iFC on REGISTER toward `server` with ServiceInfo and both Include flags.
fn register_ifc(server: String, dh: DefaultHandling) -> InitialFilterCriteria {
    let mut i = ifc(1, "REGISTER", SessionCase::Originating, server, dh);
    i.application_server.service_info = Some("voicemail<box>".into());
    i.application_server.include_register_request = true;
    i.application_server.include_register_response = true;
    i
}

fn registers_to(n: &Net, to: ([u8; 4], u16)) -> Vec<Message> {
    n.wire
        .iter()
        .filter(|(a, m)| *a == addr(to) && m.method() == Some(&sip::Method::Register))
        .map(|(_, m)| m.clone())
        .collect()
}

#[test]
fn third_party_register_on_registration_reregistration_deregistration_and_expiry() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![register_ifc(as_uri(AS1), DefaultHandling::SessionContinued)],
    );
    let r = registers_to(&n, AS1);
    assert_eq!(r.len(), 1, "on registration");
    let first = &r[0];
    assert_eq!(first.uri_str(), Some("sip:127.0.0.5:5070"));
    assert!(first
        .header("From")
        .unwrap()
        .starts_with("<sip:127.0.0.1:6060>;tag="));
    assert_eq!(first.header("To"), Some("<sip:alice@ims.test>"));
    assert_eq!(first.header("Contact"), Some("<sip:127.0.0.1:6060>"));
    assert_eq!(first.header("Expires"), Some("600"));
    assert_eq!(
        first.header("P-Associated-URI"),
        Some("<sip:alice@ims.test>, <tel:+495>")
    );
    let ct = first.header("Content-Type").unwrap();
    let boundary = ct.strip_prefix("multipart/mixed;boundary=").expect(ct);
    let body = String::from_utf8(first.body().to_vec()).unwrap();
    assert_eq!(
        body.matches(&format!("--{boundary}\r\n")).count(),
        3,
        "{body}"
    );
    assert!(body.contains(
        "Content-Type: application/3gpp-ims+xml\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ims-3gpp version=\"1\"><service-info>voicemail&lt;box&gt;</service-info></ims-3gpp>"
    ));
    assert!(body.contains("Content-Type: message/sip\r\n\r\nREGISTER sip:ims.test SIP/2.0\r\n"));
    assert!(body.contains("Content-Type: message/sip\r\n\r\nSIP/2.0 200 OK\r\n"));
    assert_eq!(n.s.third_party_pending(), 1);
    n.as_answers(AS1, first, 200);
    assert_eq!(n.s.third_party_pending(), 0);

    // Re-registration.
    n.register(
        "alice",
        vec![register_ifc(as_uri(AS1), DefaultHandling::SessionContinued)],
    );
    let r = registers_to(&n, AS1);
    assert_eq!(r.len(), 2, "on re-registration");
    assert_eq!(r[1].header("Expires"), Some("600"));
    n.as_answers(AS1, &r[1], 200);

    // Deregistration by the UE (through its SA): Expires 0, the REGISTER included.
    let creds = n.last_creds.clone();
    let bye = n.register_once("alice", Some(creds), 0);
    assert_eq!(bye.code(), Some(200));
    let r = registers_to(&n, AS1);
    assert_eq!(r.len(), 3, "on deregistration");
    assert_eq!(r[2].header("Expires"), Some("0"));
    let body = String::from_utf8_lossy(r[2].body()).into_owned();
    assert!(body.contains("REGISTER sip:ims.test SIP/2.0\r\n"), "{body}");
    assert!(body.contains("expires=0"), "{body}");
    assert!(
        body.contains("SIP/2.0 200 OK\r\n"),
        "our 200 to the deregistration: {body}"
    );
    n.as_answers(AS1, &r[2], 200);

    // Expiry: a synthetic REGISTER view still matches the REGISTER iFC.
    n.register(
        "alice",
        vec![register_ifc(as_uri(AS1), DefaultHandling::SessionContinued)],
    );
    let fourth = registers_to(&n, AS1).pop().unwrap();
    n.as_answers(AS1, &fourth, 200);
    n.advance(Duration::from_secs(601));
    let r = registers_to(&n, AS1);
    let last = r.last().unwrap();
    assert_eq!(r.len(), 5, "on expiry");
    assert_eq!(last.header("Expires"), Some("0"));
    assert!(n.s.registration("sip:alice@ims.test").is_none());
    assert_eq!(n.s.stats().third_party_registers, 5);
}

#[test]
fn third_party_register_on_network_initiated_deregistration() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![register_ifc(as_uri(AS1), DefaultHandling::SessionContinued)],
    );
    let rtr =
        diameter::Message::request(diameter::app::CX, diameter::cmd::REGISTRATION_TERMINATION)
            .with(Avp::utf8(avp::USER_NAME, "alice@ims.test"));
    let answer = n.s.handle_cx_request(&rtr, n.now);
    assert_eq!(answer.get_u32(avp::RESULT_CODE).ok(), Some(result::SUCCESS));
    n.run();
    let r = registers_to(&n, AS1);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].header("Expires"), Some("0"));
}

#[test]
fn failed_third_party_register_follows_default_handling() {
    // SESSION_CONTINUED: the registration stays.
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![register_ifc(as_uri(AS1), DefaultHandling::SessionContinued)],
    );
    let r = registers_to(&n, AS1);
    n.as_answers(AS1, &r[0], 500);
    assert!(n.s.registration("sip:alice@ims.test").is_some());

    // SESSION_TERMINATED: network-initiated deregistration, the HSS told
    // (ADMINISTRATIVE_DEREGISTRATION), the other AS told with Expires 0.
    let mut n = Net::new(Duration::from_secs(4));
    let mut second = register_ifc(as_uri(AS2), DefaultHandling::SessionContinued);
    second.priority = 2;
    n.register(
        "alice",
        vec![
            register_ifc(as_uri(AS1), DefaultHandling::SessionTerminated),
            second,
        ],
    );
    assert_eq!(registers_to(&n, AS2).len(), 1);
    let r = registers_to(&n, AS1);
    n.as_answers(AS1, &r[0], 503);
    assert!(n.s.registration("sip:alice@ims.test").is_none());
    assert_eq!(n.sars.last(), Some(&8));
    let to2 = registers_to(&n, AS2);
    assert_eq!(to2.len(), 2);
    assert_eq!(to2[1].header("Expires"), Some("0"));

    // No answer at all (the transaction times out): the same.
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![register_ifc(
            as_uri(AS1),
            DefaultHandling::SessionTerminated,
        )],
    );
    for _ in 0..70 {
        n.advance(Duration::from_millis(500));
    }
    assert!(n.s.registration("sip:alice@ims.test").is_none());
}

#[test]
fn a_marker_is_its_own_credential_but_only_from_the_as_it_went_to() {
    // No AS configured: the proxy AS is trusted for the request it was given.
    let mut n = Net::with(Duration::from_secs(4), vec![]);
    n.register(
        "alice",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::Originating,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.register("bob", vec![]);
    n.invite("alice", "sip:bob@ims.test");
    let at_as = n.last_to(AS1).unwrap();
    // Another host with the same marker: refused, and the marker stays for the AS.
    n.as_relays(AS2, &at_as, "thief");
    let (to, r) = n.wire.last().unwrap();
    assert_eq!((*to, r.code()), (addr(AS2), Some(403)));
    assert_eq!(n.s.isc_pending(), 1);
    n.as_relays(AS1, &at_as, "as1");
    assert_eq!(n.last_to_p().method(), Some(&sip::Method::Invite));
}

#[test]
fn in_dialog_requests_follow_the_record_route_through_the_as() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::Originating,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.register("bob", vec![]);
    n.invite("alice", "sip:bob@ims.test");
    let mut at_as = n.last_to(AS1).unwrap();
    // This AS stays in the dialog.
    at_as.prepend_header("Record-Route", "<sip:127.0.0.5:5070;lr>");
    n.as_relays(AS1, &at_as, "rr");
    let to_bob = n.last_to_p().clone();
    let rr: Vec<&str> = to_bob.header_values("Record-Route").collect();
    assert_eq!(
        rr,
        [
            "<sip:127.0.0.1:6060;lr>",
            "<sip:127.0.0.5:5070;lr>",
            "<sip:127.0.0.1:6060;lr>"
        ]
    );
    // Bob hangs up along that route set (RFC 3261 §12.2.1.1): S, then the AS, then S.
    let bye = format!(
        "BYE sip:alice@10.0.0.9:5060 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKbye1\r\nMax-Forwards: 69\r\n\
         Route: {}\r\nFrom: {};tag=b\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        rr.join(", "),
        to_bob.header("To").unwrap(),
        to_bob.header("From").unwrap(),
        to_bob.call_id().unwrap(),
    );
    n.s.handle_message(
        Message::parse(bye.as_bytes()).unwrap(),
        Net::p_flow(),
        n.now,
    );
    n.run();
    let at_as = n.last_to(AS1).expect("the BYE goes through the AS");
    assert_eq!(at_as.method(), Some(&sip::Method::Bye));
    assert_eq!(
        routes(&at_as),
        ["<sip:127.0.0.5:5070;lr>", "<sip:127.0.0.1:6060;lr>"]
    );
    n.as_relays(AS1, &at_as, "bye-as");
    let (to, m) = n.wire.last().unwrap();
    assert_eq!(m.method(), Some(&sip::Method::Bye));
    assert_eq!(*to, SocketAddr::from(([10, 0, 0, 9], 5060)));
}

#[test]
fn a_cancel_while_the_as_is_silent_ends_the_call_instead_of_skipping_the_as() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register(
        "alice",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::Originating,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.register("bob", vec![]);
    let invite = n.invite("alice", "sip:bob@ims.test");
    let cancel = sip::builder::cancel_for(&invite).unwrap();
    n.s.handle_message(cancel, Net::p_flow(), n.now);
    n.run();
    assert_eq!(n.last_to_p().code(), Some(200), "the CANCEL's own 200");
    n.advance(Duration::from_secs(5));
    assert_eq!(n.last_to_p().code(), Some(487));
    assert!(n
        .to_p
        .iter()
        .all(|m| m.method() != Some(&sip::Method::Invite)));
}

/// A terminating iFC tells the AS the case and the registration state (RFC 5502).
#[test]
fn a_terminating_ifc_sends_p_served_user_sescase_term() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register("alice", vec![]);
    n.register(
        "bob",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::TerminatingRegistered,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.invite("alice", "sip:bob@ims.test");
    let at_as = n.last_to(AS1).expect("the INVITE went to the AS");
    assert_eq!(
        at_as.header("P-Served-User"),
        Some("<sip:bob@ims.test>;sescase=term;regstate=reg")
    );
}

/// A configured AS originates toward one of our users on behalf of somebody who is not
/// ours (a caller-ID or late-call-state notification): the request has no `orig` Route,
/// so it gets the terminating half for the Request-URI, not originating treatment of its
/// From/P-Asserted-Identity (which would refuse it: not registered here).
#[test]
fn a_trusted_as_reaches_a_registered_callee_for_a_caller_not_served_here() {
    for served in [None, Some("<sip:bob@ims.test>;sescase=term;regstate=reg")] {
        let mut n = Net::new(Duration::from_secs(4));
        n.register("bob", vec![]);
        let mut m = String::from(
            "MESSAGE sip:bob@ims.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.5:5070;branch=z9hG4bKasmsg\r\n\
             Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:6060;lr>\r\n\
             From: <sip:stranger@elsewhere.example>;tag=as\r\nTo: <sip:bob@ims.test>\r\n\
             Call-ID: as-msg\r\nCSeq: 1 MESSAGE\r\n\
             P-Asserted-Identity: <sip:stranger@elsewhere.example>\r\n",
        );
        if let Some(p) = served {
            m.push_str(&format!("P-Served-User: {p}\r\n"));
        }
        m.push_str("Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
        n.as_sends(AS1, Message::parse(m.as_bytes()).unwrap());
        let to_bob = n.last_to_p().clone();
        assert_eq!(to_bob.method(), Some(&sip::Method::Message), "{to_bob:?}");
        assert_eq!(to_bob.uri_str(), Some("sip:bob@10.0.0.3:5060"));
        assert_eq!(to_bob.header("P-Served-User"), None);
        assert_eq!(n.s.stats().refused, 0);
    }
}

/// The same request from an address that is not a configured AS is refused.
#[test]
fn an_unconfigured_node_cannot_originate_toward_our_users() {
    let mut n = Net::with(Duration::from_secs(4), vec![]);
    n.register("bob", vec![]);
    let m = "MESSAGE sip:bob@ims.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.5:5070;branch=z9hG4bKasmsg\r\n\
             Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:6060;lr>\r\n\
             From: <sip:stranger@elsewhere.example>;tag=as\r\nTo: <sip:bob@ims.test>\r\n\
             Call-ID: as-msg\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    n.as_sends(AS1, Message::parse(m.as_bytes()).unwrap());
    let (to, r) = n.wire.last().expect("an answer").clone();
    assert_eq!((to, r.code()), (addr(AS1), Some(403)));
}

/// TS 24.229 §5.4.3.2: a caller asserted by its SIP URI alone gets the tel URI of its
/// implicit registration set as a second P-Asserted-Identity, so the callee's AS (caller
/// ID) and handset see a number; a request that already asserts a tel URI keeps just it.
#[test]
fn the_originating_s_cscf_adds_the_callers_tel_uri_to_p_asserted_identity() {
    let mut n = Net::new(Duration::from_secs(4));
    n.register("alice", vec![]);
    n.register(
        "bob",
        vec![ifc(
            1,
            "INVITE",
            SessionCase::TerminatingRegistered,
            as_uri(AS1),
            DefaultHandling::SessionContinued,
        )],
    );
    n.invite("alice", "sip:bob@ims.test");
    let at_as = n.last_to(AS1).expect("the INVITE went to the AS");
    let pai: Vec<String> = at_as
        .name_addrs("P-Asserted-Identity")
        .unwrap()
        .iter()
        .map(|a| a.uri.to_string())
        .collect();
    assert_eq!(pai, ["sip:alice@ims.test", "tel:+495"], "{at_as:?}");
}
