//! The S-CSCF core on its own, driven message by message with scripted Cx answers: what an
//! external P-CSCF (or our own, in memory) sees of it, and the attacks on pending
//! challenges that broke the collapsed core before the split (hardening items 2 and 6).

use akav1::digest::{Challenge, Credentials, Qop, QopInput, ResponseInput, AKAV1_MD5};
use diameter::{avp, result, Avp, VENDOR_3GPP};
use scscf::{Config, Output, Scscf};
use sip::{Flow, Message, Protocol};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DOMAIN: &str = "ims.test";
const IMPI: &str = "alice@ims.test";
const IMPU: &str = "sip:alice@ims.test";
const XRES: [u8; 8] = [2; 8];

fn scscf() -> Scscf {
    Scscf::new(Config {
        ..Config::new(DOMAIN, SocketAddr::from(([127, 0, 0, 1], 6060)))
    })
    .with_ids(sip::Ids::seeded(1))
}

/// What the HSS answers.
#[derive(Clone, Copy)]
enum Hss {
    /// Every MAR gets the same vector (an HSS that reuses vectors), RAND = `rand`.
    Vector { rand: u8 },
    /// A base-protocol error (RFC 6733 §7.1.5: 5001 AVP_UNSUPPORTED).
    BaseError(u32),
}

struct Net {
    s: Scscf,
    hss: Hss,
    now: Instant,
    cx: Vec<u32>,
    branch: u32,
}

const USER_DATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<IMSSubscription><PrivateID>alice@ims.test</PrivateID><ServiceProfile>
<PublicIdentity><Identity>sip:alice@ims.test</Identity></PublicIdentity>
<PublicIdentity><Identity>tel:+4930123</Identity></PublicIdentity>
<PublicIdentity><BarringIndication>1</BarringIndication><Identity>sip:secret@ims.test</Identity></PublicIdentity>
</ServiceProfile></IMSSubscription>"#;

impl Net {
    fn new(hss: Hss) -> Net {
        Net {
            s: scscf(),
            hss,
            now: Instant::now(),
            cx: vec![],
            branch: 0,
        }
    }

    /// A REGISTER from the P-CSCF (in memory); the S-CSCF's response.
    fn send(&mut self, auth: Option<String>, expires: u32) -> Message {
        self.branch += 1;
        let mut m = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKp{}\r\n\
             Max-Forwards: 69\r\nFrom: <{IMPU}>;tag=u\r\nTo: <{IMPU}>\r\nCall-ID: c\r\n\
             CSeq: {} REGISTER\r\nContact: <sip:127.0.0.2:5060>;expires={expires}\r\n\
             Path: <sip:term@127.0.0.1:5060;lr>\r\n",
            self.branch, self.branch
        );
        if let Some(a) = auth {
            m.push_str(&format!("Authorization: {a}\r\n"));
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        let flow = Flow::new(
            SocketAddr::from(([127, 0, 0, 1], 6060)),
            SocketAddr::from(([127, 0, 0, 1], 5060)),
            Protocol::InProcess,
        );
        self.s
            .handle_message(Message::parse(m.as_bytes()).unwrap(), flow, self.now);
        self.run().expect("the S-CSCF answers every REGISTER")
    }

    fn run(&mut self) -> Option<Message> {
        let mut answer = None;
        while let Some(o) = self.s.poll_output() {
            match o {
                Output::Handoff(h) => answer = Some(h.message),
                Output::Cx { token, request } => {
                    self.cx.push(request.code);
                    let a = diameter::Message::answer_for(&request);
                    let a = match (self.hss, request.code) {
                        (Hss::BaseError(c), _) => a.with_result_code(c),
                        (Hss::Vector { rand }, diameter::cmd::MULTIMEDIA_AUTH) => a
                            .with(Avp::grouped(
                                avp::SIP_AUTH_DATA_ITEM,
                                [
                                    Avp::octets(avp::SIP_AUTHENTICATE, vec![rand; 32]),
                                    Avp::octets(avp::SIP_AUTHORIZATION, XRES.to_vec()),
                                    Avp::octets(avp::CONFIDENTIALITY_KEY, vec![0xc0; 16]),
                                    Avp::octets(avp::INTEGRITY_KEY, vec![0x1c; 16]),
                                ],
                            ))
                            .with_result_code(result::SUCCESS),
                        (Hss::Vector { .. }, _) => a
                            .with(Avp::octets(avp::USER_DATA, USER_DATA.as_bytes().to_vec()))
                            .with_experimental_result(VENDOR_3GPP, 2001),
                    };
                    self.s.handle_cx_answer(token, Ok(a), self.now);
                }
                Output::Transmit(_) | Output::Event(_) => {}
            }
        }
        answer
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.s.handle_timeout(self.now);
        self.run();
    }
}

/// The digest answer to `ch` with `password`.
fn answer(ch: &Challenge, password: &[u8]) -> String {
    answer_for_uri(ch, password, &format!("sip:{DOMAIN}"))
}

/// The digest answer to `ch` with `password`, computed for `uri`.
fn answer_for_uri(ch: &Challenge, password: &[u8], uri: &str) -> String {
    let uri = uri.to_string();
    let input = ResponseInput {
        username: IMPI,
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
    Credentials {
        username: IMPI.into(),
        realm: ch.realm.clone(),
        nonce: ch.nonce.clone(),
        uri: uri.clone(),
        response: akav1::digest::response(password, &input),
        algorithm: Some(AKAV1_MD5.into()),
        cnonce: Some("c0ffee".into()),
        qop: Some(Qop::Auth),
        nc: Some("00000001".into()),
        integrity_protected: Some("yes".into()),
        ..Default::default()
    }
    .to_header()
}

fn challenge(r: &Message) -> Challenge {
    assert_eq!(r.code(), Some(401), "{r:?}");
    r.digest_challenge().unwrap().unwrap()
}

#[test]
fn challenge_hands_ck_ik_to_the_p_cscf_then_registers_with_the_implicit_set() {
    let mut n = Net::new(Hss::Vector { rand: 1 });
    let ch = challenge(&n.send(None, 600));
    assert_eq!(ch.ck.as_deref(), Some("c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"));
    assert_eq!(ch.ik.as_deref(), Some("1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c"));
    let ok = n.send(Some(answer(&ch, &XRES)), 600);
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(
        n.cx,
        [
            diameter::cmd::MULTIMEDIA_AUTH,
            diameter::cmd::SERVER_ASSIGNMENT
        ]
    );
    assert_eq!(
        ok.header("P-Associated-URI"),
        Some("<sip:alice@ims.test>, <tel:+4930123>"),
        "barred identities are left out"
    );
    assert_eq!(
        ok.header("Service-Route"),
        Some("<sip:orig@127.0.0.1:6060;lr>")
    );
    assert_eq!(ok.header("Path"), Some("<sip:term@127.0.0.1:5060;lr>"));
    let reg = n.s.registration(IMPU).expect("registered");
    assert_eq!(reg.bindings.len(), 1);
    assert_eq!(reg.bindings[0].path, ["<sip:term@127.0.0.1:5060;lr>"]);
    let sub = n.s.subscription(IMPU).expect("the profile is kept");
    assert_eq!(sub.service_profiles[0].public_identities.len(), 3);
    assert_eq!(n.s.pending_challenges(), 0);

    // A protected deregistration needs no new challenge (TS 24.229 §5.4.1.4).
    let bye = n.send(Some(answer(&ch, &XRES)), 0);
    assert_eq!(bye.code(), Some(200));
    assert!(bye.header("Contact").unwrap().contains("expires=0"));
    assert!(n.s.registration(IMPU).is_none());
}

/// Hardening issue, item 4: a digest computed for another Request-URI (a replay of an
/// answer meant elsewhere) is refused 400 and leaves the challenge for the real answer.
#[test]
fn a_digest_for_another_request_uri_is_refused_and_the_challenge_stays() {
    let mut n = Net::new(Hss::Vector { rand: 1 });
    let ch = challenge(&n.send(None, 600));
    let replay = n.send(Some(answer_for_uri(&ch, &XRES, "sip:elsewhere.test")), 600);
    assert_eq!(replay.code(), Some(400), "{replay:?}");
    assert_eq!(n.s.pending_challenges(), 1);
    // SIPp 3.6.1 writes the P-CSCF it sent to (the Path's host and port): accepted.
    let sipp_style = n.send(Some(answer_for_uri(&ch, &XRES, "sip:127.0.0.1:5060")), 600);
    assert_eq!(sipp_style.code(), Some(200), "{sipp_style:?}");
    let ch = challenge(&n.send(None, 600));
    // The same URI written with its default port is the same URI.
    let ok = n.send(
        Some(answer_for_uri(&ch, &XRES, &format!("sip:{DOMAIN}:5060"))),
        600,
    );
    assert_eq!(ok.code(), Some(200), "{ok:?}");
}

#[test]
fn a_strangers_register_or_wrong_answer_never_takes_the_ues_challenge_away() {
    let mut n = Net::new(Hss::Vector { rand: 1 });
    let ue_ch = challenge(&n.send(None, 600));
    // Between the UE's 401 and its answer: someone else names the same IMPI...
    n.hss = Hss::Vector { rand: 9 };
    let other = challenge(&n.send(None, 600));
    assert_ne!(other.nonce, ue_ch.nonce);
    // ...and answers the UE's nonce wrongly.
    let wrong = n.send(Some(answer(&ue_ch, b"guessed!")), 600);
    assert_eq!(wrong.code(), Some(403));
    assert!(
        wrong.header("Warning").is_none(),
        "no HSS detail for strangers"
    );
    assert_eq!(n.s.pending_challenges(), 2);
    // The UE's right answer still works.
    let ok = n.send(Some(answer(&ue_ch, &XRES)), 600);
    assert_eq!(ok.code(), Some(200), "{ok:?}");
}

#[test]
fn a_challenges_timer_removes_only_that_challenge() {
    // The HSS hands out the same vector twice: two challenges with one nonce.
    let mut n = Net::new(Hss::Vector { rand: 1 });
    let first = challenge(&n.send(None, 600));
    n.advance(Duration::from_secs(20));
    let second = challenge(&n.send(None, 600));
    assert_eq!(first.nonce, second.nonce);
    // The first challenge's timer fires (30 s after it); the second must survive it.
    n.advance(Duration::from_secs(11));
    assert_eq!(n.s.pending_challenges(), 1);
    let ok = n.send(Some(answer(&second, &XRES)), 600);
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    // And the second's own timer ends nothing else.
    n.advance(Duration::from_secs(30));
    assert!(n.s.registration(IMPU).is_some());
}

#[test]
fn a_base_protocol_5001_is_a_server_error_not_an_unknown_user() {
    let mut n = Net::new(Hss::BaseError(5001));
    let r = n.send(None, 600);
    assert_eq!(
        r.code(),
        Some(500),
        "AVP_UNSUPPORTED is our problem, not the user's"
    );
    let mut n = Net::new(Hss::BaseError(result::AUTHORIZATION_REJECTED));
    assert_eq!(n.send(None, 600).code(), Some(403));
}
