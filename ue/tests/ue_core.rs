//! The sans-IO UE core driven message by message against a P-CSCF scripted here from the
//! `sip`, `akav1` and `secagree` crates: real Milenage vectors (TS 35.208 test set 1 keys),
//! real AKAv1-MD5 digest checks against XRES, real Security-Server choice and SA sets.
//! No sockets, no clock: `now` advances by hand.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use akav1::digest::Credentials;
use akav1::{Milenage, SqnPolicy, UsimSqnState};
use secagree::AlgPrefs;
use sip::ims::format_security_list;
use sip::{Flow, Message, Protocol, ResponseBuilder};
use ue::{
    ChallengeError, EventKind, Note, Procedure, RegError, RegState, ResponseError, SaAction,
    SaInstallError, SecAgreeFailure, Ue, UeEvent,
};

mod common;

use common::*;

#[test]
fn initial_registration_step_by_step() {
    let mut ue = Ue::new(config()).unwrap();
    let mut net = Net::new(Milenage::from_op(&K, &OP));
    let t0 = Instant::now();
    assert_eq!(ue.state(), RegState::Idle);
    ue.register(t0);

    // 1. The unprotected REGISTER (TS 24.229 §5.1.1.2.1).
    let (r1, f1) = one_transmit(&mut ue);
    assert_eq!(f1.local, Some(SocketAddr::new(ue_ip(), 5060)));
    assert_eq!(f1.remote, pcscf_addr());
    assert_eq!(r1.uri_str(), Some(format!("sip:{DOMAIN}").as_str()));
    r1.validate().unwrap();
    assert!(r1.has_option_tag("Require", "sec-agree"));
    assert!(r1.has_option_tag("Proxy-Require", "sec-agree"));
    assert!(r1.has_option_tag("Supported", "path"));
    assert!(r1.has_option_tag("Supported", "sec-agree"));
    let offers = r1.security_client().unwrap();
    assert_eq!(offers.len(), 6, "one mechanism per alg/ealg pair");
    for o in &offers {
        assert!(o.is_complete_ipsec_3gpp());
        assert_eq!(
            (o.spi_c, o.spi_s, o.port_c, o.port_s),
            (Some(11111), Some(22222), Some(6100), Some(6101))
        );
    }
    let a = Credentials::parse(r1.header("Authorization").unwrap()).unwrap();
    assert_eq!(
        (
            a.username.as_str(),
            a.realm.as_str(),
            a.nonce.as_str(),
            a.response.as_str()
        ),
        (IMPI, DOMAIN, "", "")
    );
    assert_eq!(a.uri, format!("sip:{DOMAIN}"));
    let contact = &r1.name_addrs("Contact").unwrap()[0];
    assert_eq!(
        contact.uri.port,
        Some(6101),
        "Contact carries the protected server port"
    );
    assert_eq!(contact.params.get("expires"), Some("3600"));
    assert!(contact
        .params
        .get("+sip.instance")
        .unwrap()
        .contains("urn:gsma:imei"));
    assert!(r1
        .header("P-Access-Network-Info")
        .unwrap()
        .starts_with("3GPP-E-UTRAN-FDD"));
    assert!(r1.security_verify().unwrap().is_empty());
    assert!(matches!(
        ue.state(),
        RegState::InProgress {
            procedure: Procedure::Initial,
            registered: false
        }
    ));

    // 2. The 401: AUTN verified, the SA set requested.
    let c401 = net.challenge(&r1);
    let t1 = t0 + Duration::from_millis(5);
    deliver(&mut ue, &c401, f1, t1);
    assert!(
        ue.poll_transmit().is_none(),
        "nothing is sent before the SAs exist"
    );
    let set = match actions(&mut ue).as_slice() {
        [SaAction::Install { generation: 0, set }] => set.clone(),
        other => panic!("expected one install, got {other:?}"),
    };
    let at_pcscf = net.set(t1);
    assert_eq!(
        set, at_pcscf,
        "UE and P-CSCF derive the same four SAs and keys"
    );
    assert_eq!(
        (set.spi_uc, set.spi_us, set.port_uc, set.port_us),
        (11111, 22222, 6100, 6101)
    );
    assert_eq!((set.port_pc, set.port_ps), (7100, 7101));
    let ev = events(&mut ue);
    assert!(ev
        .iter()
        .any(|e| matches!(e.kind, EventKind::AkaVerified { .. })));
    assert!(ev
        .iter()
        .any(|e| matches!(e.kind, EventKind::SaInstallRequested(_))));
    assert!(ev.iter().all(|e| e.at <= t1));

    // 3. Installed: the protected REGISTER from port_uc to port_ps.
    ue.handle_sa_installed(0, Ok(41), t1);
    let (r2, f2) = one_transmit(&mut ue);
    assert_eq!(f2.local, Some(SocketAddr::new(ue_ip(), 6100)));
    assert_eq!(f2.remote, SocketAddr::new(pcscf_addr().ip(), 7101));
    assert_eq!(r2.call_id().unwrap(), r1.call_id().unwrap());
    assert_eq!(r2.cseq().unwrap().seq, r1.cseq().unwrap().seq + 1);
    assert_ne!(r2.branch().unwrap(), r1.branch().unwrap());
    let verify = r2.security_verify().unwrap();
    assert!(
        secagree::check_verify(&net.server, &verify).is_ok(),
        "Security-Verify = Security-Server"
    );
    assert_eq!(r2.security_client().unwrap(), offers, "same offer repeated");
    let cred = net.check_answer(&r2);
    assert_eq!(cred.qop, Some(akav1::digest::Qop::Auth));
    assert_eq!(cred.nc.as_deref(), Some("00000001"));
    let sent = events(&mut ue);
    assert!(sent.iter().any(|e| matches!(
        &e.kind,
        EventKind::Sent {
            protected: true,
            ..
        }
    )));

    // 4. The 200 OK.
    let ok = net.ok(&r2, 1800);
    let t2 = t1 + Duration::from_millis(4);
    deliver(&mut ue, &ok, f2, t2);
    assert_eq!(ue.state(), RegState::Registered);
    assert_eq!(
        actions(&mut ue),
        vec![SaAction::Promote {
            id: 41,
            lifetime: Duration::from_secs(1800 + 30)
        }]
    );
    let ev = events(&mut ue);
    let reg = ev
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Registered(r) => Some(r.clone()),
            _ => None,
        })
        .expect("Registered event");
    assert_eq!(reg.procedure, Procedure::Initial);
    assert_eq!(
        reg.expires, 1800,
        "the Contact's expires wins over what we asked"
    );
    assert_eq!(reg.took, Duration::from_millis(9));
    assert_eq!(reg.round_trips, 2);
    assert!(reg.protected);
    assert_eq!(
        reg.service_route,
        vec![format!("<sip:orig@scscf.{DOMAIN};lr>")]
    );
    assert_eq!(
        reg.associated_uris,
        vec![IMPU.to_string(), "tel:+4930123456".to_string()]
    );
    assert_eq!(ue.current_set().unwrap().state, xfrm::SaState::Established);
    // refresh 600 s before the 1800 s run out (TS 24.229 §5.1.1.4.1), after the client transaction's
    // Timer K (T4) has ended it
    assert!(ue.poll_timeout().is_some());
    ue.handle_timeout(t2 + Duration::from_secs(6));
    assert_eq!(ue.transaction_count(), 0);
    assert_eq!(ue.poll_timeout(), Some(t2 + Duration::from_secs(1200)));
}

#[test]
fn reregistration_with_reauthentication_builds_a_new_set_and_retires_the_old() {
    let (mut ue, mut net, t, old) = registered();
    let t = t + Duration::from_secs(10);
    ue.reregister(t);
    let (r1, f1) = one_transmit(&mut ue);
    // over the old SA, verifying the old Security-Server, offering new SPIs and port_uc
    assert_eq!(f1.local, Some(SocketAddr::new(ue_ip(), old.port_uc)));
    assert_eq!(f1.remote, SocketAddr::new(old.pcscf, old.port_ps));
    assert!(secagree::check_verify(&net.server, &r1.security_verify().unwrap()).is_ok());
    let offer = r1.security_client().unwrap()[0].clone();
    assert_eq!(
        (offer.spi_c, offer.spi_s, offer.port_c, offer.port_s),
        (Some(11113), Some(22224), Some(6102), Some(6101)),
        "new SPIs and client port; the server port (Contact) stays"
    );
    let old_cred = Credentials::parse(r1.header("Authorization").unwrap()).unwrap();
    assert_eq!(
        old_cred.nonce, net.nonce,
        "re-registration carries the last nonce"
    );
    assert_eq!(old_cred.nc.as_deref(), Some("00000002"));

    let c401 = net.challenge(&r1);
    deliver(&mut ue, &c401, f1, t);
    let new = match actions(&mut ue).as_slice() {
        [SaAction::Install { generation: 1, set }] => set.clone(),
        other => panic!("expected install of generation 1, got {other:?}"),
    };
    assert_eq!(new, net.set(t));
    ue.handle_sa_installed(1, Ok(42), t);
    let (r2, f2) = one_transmit(&mut ue);
    assert_eq!(f2.local, Some(SocketAddr::new(ue_ip(), 6102)));
    assert_eq!(f2.remote, SocketAddr::new(new.pcscf, new.port_ps));
    assert!(secagree::check_verify(&net.server, &r2.security_verify().unwrap()).is_ok());
    net.check_answer(&r2);
    deliver(
        &mut ue,
        &net.ok(&r2, 3600),
        f2,
        t + Duration::from_millis(1),
    );
    let acts = actions(&mut ue);
    assert_eq!(
        acts,
        vec![
            SaAction::Promote {
                id: 42,
                lifetime: Duration::from_secs(3630)
            },
            SaAction::BeginExpiry {
                id: 41,
                grace: Duration::from_secs(2)
            }
        ]
    );
    assert_eq!(ue.registration().set_count(), 2);
    assert!(events(&mut ue).iter().any(|e| matches!(
        &e.kind,
        EventKind::Registered(r) if r.procedure == Procedure::Reregistration && r.round_trips == 2
    )));
    // the grace period ends: the old set goes, but not the shared server port
    ue.handle_timeout(t + Duration::from_secs(3));
    assert_eq!(
        actions(&mut ue),
        vec![SaAction::Delete {
            id: 41,
            ip: ue_ip(),
            port_uc: 6100,
            port_us: 6101,
            close_server_port: false
        }]
    );
    assert_eq!(ue.registration().set_count(), 1);
    assert_eq!(ue.current_set().unwrap().spi_uc, 11113);
}

#[test]
fn reregistration_without_reauthentication_keeps_the_set() {
    let (mut ue, net, t, old) = registered();
    ue.reregister(t);
    let (r1, f1) = one_transmit(&mut ue);
    deliver(
        &mut ue,
        &net.ok(&r1, 3600),
        f1,
        t + Duration::from_millis(1),
    );
    assert!(actions(&mut ue).is_empty());
    assert_eq!(ue.current_set().unwrap(), &{
        let mut o = old.clone();
        o.state = xfrm::SaState::Established;
        o.expires_at = ue.current_set().unwrap().expires_at;
        o
    });
    assert_eq!(ue.state(), RegState::Registered);
}

#[test]
fn deregistration_retires_and_then_deletes_everything() {
    let (mut ue, _net, t, set) = registered();
    ue.deregister(t);
    let (r, f) = one_transmit(&mut ue);
    assert_eq!(f.local, Some(SocketAddr::new(ue_ip(), set.port_uc)));
    assert_eq!(r.expires().unwrap(), Some(0));
    assert_eq!(
        r.name_addrs("Contact").unwrap()[0].params.get("expires"),
        Some("0")
    );
    assert!(!r.security_verify().unwrap().is_empty());
    let ok = ResponseBuilder::new(&r, 200).to_tag("x").build().unwrap();
    deliver(&mut ue, &ok, f, t + Duration::from_millis(2));
    assert_eq!(ue.state(), RegState::Idle);
    assert_eq!(
        actions(&mut ue),
        vec![SaAction::BeginExpiry {
            id: 41,
            grace: Duration::from_secs(2)
        }]
    );
    assert!(events(&mut ue).iter().any(|e| matches!(
        e.kind,
        EventKind::Deregistered { took } if took == Duration::from_millis(2)
    )));
    ue.handle_timeout(t + Duration::from_secs(5));
    assert_eq!(
        actions(&mut ue),
        vec![SaAction::Delete {
            id: 41,
            ip: ue_ip(),
            port_uc: 6100,
            port_us: 6101,
            close_server_port: true
        }]
    );
    assert_eq!(ue.registration().set_count(), 0);
    // and the UE may register again, with a new Call-ID
    ue.register(t + Duration::from_secs(6));
    let (r3, _) = one_transmit(&mut ue);
    assert_ne!(r3.call_id().unwrap(), r.call_id().unwrap());
}

#[test]
fn sqn_resync_answers_with_auts_that_the_hss_accepts() {
    let mut cfg = config();
    let policy = SqnPolicy::default();
    // the card has seen SEQ 500 (a restored HSS database is behind it)
    let card_sqn = policy.compose(500, 0).unwrap();
    cfg.keys = cfg
        .keys
        .clone()
        .with_sqn(UsimSqnState::with_highest(policy, card_sqn));
    let (mut ue, mut net, t, r1, f1) = started(cfg);
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    assert!(
        actions(&mut ue).is_empty(),
        "no SAs for a refused challenge"
    );
    let (r2, f2) = one_transmit(&mut ue);
    assert_eq!(f2, f1, "the resync REGISTER is unprotected too");
    let c = Credentials::parse(r2.header("Authorization").unwrap()).unwrap();
    let auts = akav1::nonce::decode_auts(c.auts.as_deref().unwrap()).unwrap();
    // the HSS checks MAC-S and recovers SQN_MS
    assert_eq!(net.hss.resync(&net.rand, &auts), Ok(card_sqn));
    assert!(
        c.verify(b"", "REGISTER", b""),
        "RFC 3310: empty password with auts"
    );
    assert_eq!(r2.security_client().unwrap(), r1.security_client().unwrap());
    assert!(events(&mut ue)
        .iter()
        .any(|e| matches!(e.kind, EventKind::SqnResync { sqn_ms } if sqn_ms == card_sqn.value())));
    net.last_sqn = card_sqn;
    deliver(&mut ue, &net.challenge(&r2), f2, t);
    assert!(matches!(
        actions(&mut ue).as_slice(),
        [SaAction::Install { generation: 0, .. }]
    ));
    ue.handle_sa_installed(0, Ok(1), t);
    let (r3, f3) = one_transmit(&mut ue);
    net.check_answer(&r3);
    deliver(&mut ue, &net.ok(&r3, 600), f3, t);
    assert!(events(&mut ue).iter().any(|e| matches!(
        &e.kind,
        EventKind::Registered(r) if r.round_trips == 3
    )));
}

#[test]
fn mac_failure_is_an_error_and_installs_nothing() {
    let (mut ue, mut net, t, r1, f1) = started(config());
    // the HSS has a different OP for this subscriber
    net.hss = Milenage::from_op(&K, &[0x11; 16]);
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    assert!(ue.poll_transmit().is_none());
    assert!(actions(&mut ue).is_empty());
    assert!(failed_with(
        &mut ue,
        Procedure::Initial,
        &RegError::MacFailure
    ));
    assert_eq!(ue.state(), RegState::Failed);
}

#[test]
fn rejected_answer_deletes_the_temporary_set() {
    let (mut ue, mut net, t, r1, f1) = started(config());
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    let _ = actions(&mut ue);
    ue.handle_sa_installed(0, Ok(9), t);
    let (r2, f2) = one_transmit(&mut ue);
    let forbidden = ResponseBuilder::new(&r2, 403).to_tag("x").build().unwrap();
    deliver(&mut ue, &forbidden, f2, t);
    assert_eq!(
        actions(&mut ue),
        vec![SaAction::Delete {
            id: 9,
            ip: ue_ip(),
            port_uc: 6100,
            port_us: 6101,
            close_server_port: true
        }]
    );
    assert!(events(&mut ue).iter().any(|e| matches!(
        &e.kind,
        EventKind::Failed {
            error: RegError::Rejected { code: 403, .. },
            ..
        }
    )));
    assert_eq!(ue.registration().set_count(), 0);
}

#[test]
fn install_failure_and_late_install_results() {
    // The shell could not install: the procedure fails, nothing is sent.
    let (mut ue, mut net, t, r1, f1) = started(config());
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    let _ = actions(&mut ue);
    let port: SocketAddr = "127.0.0.2:6000".parse().unwrap();
    let eperm = SaInstallError::port(port, std::io::ErrorKind::PermissionDenied.into());
    ue.handle_sa_installed(0, Err(eperm.clone()), t);
    assert!(ue.poll_transmit().is_none());
    assert!(events(&mut ue).iter().any(|e| matches!(
        &e.kind,
        EventKind::Failed { error: RegError::SaInstall(err @ SaInstallError::Port { addr, .. }), .. }
            if *addr == port && *err == eperm
    )));
    // A second register while one runs is refused without disturbing it.
    let mut ue = Ue::new(config()).unwrap();
    ue.register(t);
    let (r1, f1) = one_transmit(&mut ue);
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    let _ = actions(&mut ue);
    let _ = events(&mut ue);
    ue.register(t);
    assert!(events(&mut ue).iter().any(|e| matches!(
        &e.kind,
        EventKind::Failed {
            error: RegError::InvalidState { .. },
            ..
        }
    )));
    ue.handle_sa_installed(0, Ok(5), t);
    let (r2, _) = one_transmit(&mut ue);
    net.check_answer(&r2);
}

/// A UE with `cfg` after its first REGISTER (sent at the returned time on the returned
/// flow), and the scripted network with the test set's keys.
/// A UE offering only `integrity` with `encryption`, after its first REGISTER, and the 401
/// the scripted P-CSCF answers it with (not delivered yet, for the test to edit).
struct Offered {
    ue: Ue,
    net: Net,
    t: Instant,
    register: Message,
    flow: Flow,
    c401: Message,
}

fn challenged_offering(integrity: xfrm::IntegrityAlg, encryption: xfrm::EncryptionAlg) -> Offered {
    let mut cfg = config();
    cfg.algorithms = AlgPrefs {
        integrity: vec![integrity],
        encryption: vec![encryption],
    };
    let (ue, mut net, t, register, flow) = started(cfg);
    let c401 = net.challenge(&register);
    Offered {
        ue,
        net,
        t,
        register,
        flow,
        c401,
    }
}

#[test]
fn bid_down_to_an_algorithm_we_did_not_offer_aborts() {
    let Offered {
        mut ue,
        net,
        t,
        register: r1,
        flow: f1,
        mut c401,
    } = challenged_offering(xfrm::IntegrityAlg::HmacSha1_96, xfrm::EncryptionAlg::AesCbc);
    assert_eq!(r1.security_client().unwrap().len(), 1);
    let mut weak = net.server[0].clone();
    weak.ealg = Some("null".into());
    weak.alg = Some("hmac-md5-96".into());
    c401.set_header("Security-Server", &weak.to_string());
    deliver(&mut ue, &c401, f1, t);
    assert!(actions(&mut ue).is_empty());
    assert!(ue.poll_transmit().is_none());
    assert!(events(&mut ue).iter().any(|e| matches!(
        &e.kind,
        EventKind::Failed {
            error: RegError::SecAgree(SecAgreeFailure::NotOffered { alg, ealg }),
            ..
        } if alg == "hmac-md5-96" && ealg == "null"
    )));
}

#[test]
fn the_best_server_mechanism_we_offered_wins_and_duplicate_install_answers_are_ignored() {
    let Offered {
        mut ue,
        net,
        t,
        flow: f1,
        mut c401,
        ..
    } = challenged_offering(xfrm::IntegrityAlg::HmacMd5_96, xfrm::EncryptionAlg::Null);
    // the P-CSCF lists a mechanism we did not offer first (higher q), then ours
    let mut unoffered = net.server[0].clone();
    unoffered.alg = Some("hmac-sha-1-96".into());
    unoffered.ealg = Some("aes-cbc".into());
    unoffered.q = Some(900);
    c401.set_header(
        "Security-Server",
        &format_security_list(&[unoffered, net.server[0].clone()]),
    );
    deliver(&mut ue, &c401, f1, t);
    let set = match actions(&mut ue).as_slice() {
        [SaAction::Install { set, .. }] => set.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(set.integrity, xfrm::IntegrityAlg::HmacMd5_96);
    assert_eq!(set.encryption, xfrm::EncryptionAlg::Null);
    ue.handle_sa_installed(0, Ok(8), t);
    let (r2, _) = one_transmit(&mut ue);
    assert_eq!(
        r2.security_verify().unwrap().len(),
        2,
        "Security-Verify repeats the whole list"
    );
    // a confused shell answers again: nothing changes
    ue.handle_sa_installed(0, Ok(9), t);
    ue.handle_sa_installed(0, Err(secagree::SipIoError::IpsecOff.into()), t);
    assert!(ue.poll_transmit().is_none());
    assert!(actions(&mut ue).is_empty());
    assert_eq!(ue.registration().set_count(), 1);
}

#[test]
fn silence_means_retransmissions_then_a_timeout() {
    let mut cfg = config();
    cfg.timers.t1 = Duration::from_millis(100);
    let mut ue = Ue::new(cfg).unwrap();
    let t = Instant::now();
    ue.register(t);
    let (first, _) = one_transmit(&mut ue);
    let mut now = t;
    let mut retransmissions = 0;
    let mut failed = false;
    while let Some(deadline) = ue.poll_timeout() {
        now = deadline;
        ue.handle_timeout(now);
        while let Some(tx) = ue.poll_transmit() {
            assert_eq!(&tx.payload[..], &first.to_bytes()[..]);
            retransmissions += 1;
        }
        failed |= events(&mut ue).iter().any(|e| {
            matches!(
                e.kind,
                EventKind::Failed {
                    error: RegError::Timeout,
                    ..
                }
            )
        });
        if failed {
            break;
        }
    }
    assert!(failed);
    assert_eq!(now - t, Duration::from_millis(6400), "timer F = 64·T1");
    assert!(
        retransmissions >= 6,
        "timer E retransmits ({retransmissions})"
    );
    assert_eq!(ue.state(), RegState::Failed);
}

#[test]
fn without_sec_agree_it_is_a_plain_digest_ue() {
    let mut cfg = config();
    cfg.sec_agree = false;
    let (mut ue, mut net, t, r1, f1) = started(cfg);
    assert!(r1.security_client().unwrap().is_empty());
    assert!(!r1.has_option_tag("Require", "sec-agree"));
    assert_eq!(r1.name_addrs("Contact").unwrap()[0].uri.port, Some(5060));
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    assert!(actions(&mut ue).is_empty());
    let (r2, f2) = one_transmit(&mut ue);
    assert_eq!(f2, f1);
    net.check_answer(&r2);
    deliver(&mut ue, &net.ok(&r2, 600), f2, t);
    assert!(events(&mut ue).iter().any(|e| matches!(
        &e.kind,
        EventKind::Registered(r) if !r.protected
    )));
    assert!(ue.is_registered());
}

#[test]
fn a_challenged_deregistration_is_answered_with_expires_zero() {
    let mut cfg = config();
    cfg.sec_agree = false;
    let (mut ue, mut net, t, r1, f1) = started(cfg);
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    let (r2, f2) = one_transmit(&mut ue);
    deliver(&mut ue, &net.ok(&r2, 600), f2, t);
    assert!(ue.is_registered());
    // an unprotected registration's deregistration gets challenged afresh
    ue.deregister(t);
    let (d1, g1) = one_transmit(&mut ue);
    assert_eq!(d1.expires().unwrap(), Some(0));
    deliver(&mut ue, &net.challenge(&d1), g1, t);
    assert!(
        ue.is_registered(),
        "a 401 is not the end of the deregistration"
    );
    let (d2, g2) = one_transmit(&mut ue);
    assert_eq!(d2.expires().unwrap(), Some(0));
    net.check_answer(&d2);
    let ok = ResponseBuilder::new(&d2, 200).to_tag("x").build().unwrap();
    deliver(&mut ue, &ok, g2, t + Duration::from_millis(1));
    assert_eq!(ue.state(), RegState::Idle);
    assert!(events(&mut ue)
        .iter()
        .any(|e| matches!(e.kind, EventKind::Deregistered { .. })));
}

#[test]
fn ipv6_addresses_are_bracketed_and_the_set_is_ipv6() {
    let mut cfg = config();
    cfg.local_ip = "2001:db8::2".parse().unwrap();
    cfg.pcscf = "[2001:db8::1]:5060".parse().unwrap();
    let (mut ue, mut net, t, r1, f1) = started(cfg);
    assert_eq!(r1.top_via().unwrap().host, "[2001:db8::2]");
    assert_eq!(
        r1.name_addrs("Contact").unwrap()[0].uri.host,
        "[2001:db8::2]"
    );
    assert!(r1.call_id().unwrap().ends_with("@[2001:db8::2]"));
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    match actions(&mut ue).as_slice() {
        [SaAction::Install { set, .. }] => {
            assert!(set.is_ipv6());
            assert_eq!(set.pcscf, "2001:db8::1".parse::<IpAddr>().unwrap());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsolicited_requests_are_answered() {
    let (mut ue, _net, t, set) = registered();
    let from_pcscf = Flow::new(
        SocketAddr::new(ue_ip(), set.port_us),
        SocketAddr::new(set.pcscf, set.port_pc),
        Protocol::Udp,
    );
    let options = format!(
        "OPTIONS sip:ue@127.0.0.2:6101 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7100;branch=z9hG4bKopt\r\nFrom: <sip:pcscf@{DOMAIN}>;tag=p\r\nTo: <{IMPU}>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    ue.handle_datagram(from_pcscf, options.as_bytes(), t);
    let t1 = ue.poll_transmit().unwrap();
    assert_eq!(
        t1.flow, from_pcscf,
        "answered on the flow it came from (through the SA)"
    );
    assert_eq!(Message::parse(&t1.payload).unwrap().code(), Some(200));
    // what the UE does not handle (a reg-event SUBSCRIBE toward a UE) is answered 501
    let subscribe = options
        .replace("OPTIONS sip", "SUBSCRIBE sip")
        .replace("1 OPTIONS", "1 SUBSCRIBE")
        .replace("z9hG4bKopt", "z9hG4bKsub");
    ue.handle_datagram(from_pcscf, subscribe.as_bytes(), t);
    let codes: Vec<u16> = std::iter::from_fn(|| ue.poll_transmit())
        .map(|t| Message::parse(&t.payload).unwrap().code().unwrap())
        .collect();
    assert_eq!(codes, vec![501]);
    let ev = events(&mut ue);
    assert!(ev.iter().any(|e| matches!(
        &e.kind,
        EventKind::Received {
            protected: true,
            ..
        }
    )));
    let notes: Vec<Note> = ev
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Note(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(
        notes,
        vec![
            Note::Answering {
                method: Some(sip::Method::Options),
                code: 200
            },
            Note::Answering {
                method: Some(sip::Method::Subscribe),
                code: 501
            }
        ]
    );
    // what is not SIP is dropped with the parser's reason, and answered by nothing
    ue.handle_datagram(from_pcscf, b"\x16\x03\x01 not SIP\r\n\r\n", t);
    assert!(ue.poll_transmit().is_none());
    assert!(matches!(
        events(&mut ue).as_slice(),
        [UeEvent {
            kind: EventKind::Note(Note::Unparsable { from, .. }),
            ..
        }] if *from == from_pcscf.remote
    ));
}

#[test]
fn tel_impu_and_commands_in_the_wrong_state() {
    let mut cfg = config();
    cfg.impu = "tel:+4930123456".into();
    let mut ue = Ue::new(cfg).unwrap();
    let t = Instant::now();
    ue.reregister(t);
    ue.deregister(t);
    let ev = events(&mut ue);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(
                e.kind,
                EventKind::Failed {
                    error: RegError::InvalidState { .. },
                    ..
                }
            ))
            .count(),
        2
    );
    assert!(ue.poll_transmit().is_none());
    ue.register(t);
    let (r, _) = one_transmit(&mut ue);
    assert_eq!(r.from_header().unwrap().uri.to_string(), "tel:+4930123456");
    assert_eq!(r.to_header().unwrap().uri.to_string(), "tel:+4930123456");
    assert_eq!(
        r.name_addrs("Contact").unwrap()[0].uri.user.as_deref(),
        Some("+4930123456")
    );
}

#[test]
fn refresh_timer_reregisters_by_itself() {
    let (mut ue, net, t, set) = registered();
    // granted 3600 s: the refresh is due 600 s before expiry
    let due = ue.poll_timeout().unwrap();
    assert!(due <= t + Duration::from_secs(3000));
    // transactions end first (timer K), then the refresh fires
    let mut now = t;
    let mut sent = None;
    while sent.is_none() {
        now = ue.poll_timeout().expect("a deadline");
        ue.handle_timeout(now);
        sent = ue.poll_transmit();
    }
    assert_eq!(now, t + Duration::from_secs(3000));
    let r = Message::parse(&sent.unwrap().payload).unwrap();
    assert_eq!(r.expires().unwrap(), Some(3600));
    assert!(secagree::check_verify(&net.server, &r.security_verify().unwrap()).is_ok());
    assert!(matches!(
        ue.state(),
        RegState::InProgress {
            procedure: Procedure::Reregistration,
            registered: true
        }
    ));
    let _ = set;
}

#[test]
fn without_refresh_the_binding_expires_and_the_sas_go() {
    let mut cfg = config();
    cfg.auto_refresh = false;
    let (mut ue, mut net, t, r1, f1) = started(cfg);
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    let _ = actions(&mut ue);
    ue.handle_sa_installed(0, Ok(3), t);
    let (r2, f2) = one_transmit(&mut ue);
    deliver(&mut ue, &net.ok(&r2, 60), f2, t);
    let _ = actions(&mut ue);
    let _ = events(&mut ue);
    let mut now = t;
    while ue.is_registered() {
        now = ue.poll_timeout().unwrap();
        ue.handle_timeout(now);
        assert!(ue.poll_transmit().is_none(), "no refresh");
    }
    assert_eq!(now, t + Duration::from_secs(60));
    assert!(events(&mut ue).iter().any(|e| e.kind == EventKind::Expired));
    assert_eq!(
        actions(&mut ue),
        vec![SaAction::BeginExpiry {
            id: 3,
            grace: Duration::from_secs(2)
        }]
    );
    ue.handle_timeout(now + Duration::from_secs(2));
    assert!(matches!(
        actions(&mut ue).as_slice(),
        [SaAction::Delete {
            id: 3,
            close_server_port: true,
            ..
        }]
    ));
    assert_eq!(ue.state(), RegState::Idle);
}

#[test]
fn failed_reregistration_keeps_the_binding_and_its_set() {
    let (mut ue, mut net, t, set) = registered();
    ue.reregister(t);
    let (r1, f1) = one_transmit(&mut ue);
    // the network now sends a vector built with another OP: the UE refuses it
    net.hss = Milenage::from_op(&K, &[0x77; 16]);
    deliver(&mut ue, &net.challenge(&r1), f1, t);
    assert!(actions(&mut ue).is_empty());
    assert!(failed_with(
        &mut ue,
        Procedure::Reregistration,
        &RegError::MacFailure
    ));
    assert_eq!(ue.state(), RegState::Registered);
    assert_eq!(ue.current_set().unwrap().spi_uc, set.spi_uc);
    // and it can still deregister over the old set
    ue.deregister(t);
    let (_, f) = one_transmit(&mut ue);
    assert_eq!(f.local, Some(SocketAddr::new(ue_ip(), set.port_uc)));
}

/// Arbitrary bytes from the network never panic the core, in any state (bounded random
/// inputs; the fuzzing proper is `cargo fuzz` on the `sip` parsers the core relies on).
#[test]
fn arbitrary_datagrams_do_not_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1e5);
    for round in 0..400 {
        let (mut ue, t) = if round % 2 == 0 {
            let (ue, _, t, _) = registered();
            (ue, t)
        } else {
            let mut ue = Ue::new(config()).unwrap();
            let t = Instant::now();
            ue.register(t);
            let _ = ue.poll_transmit();
            (ue, t)
        };
        let len = rng.random_range(0..1500);
        let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let f = Flow::new(SocketAddr::new(ue_ip(), 5060), pcscf_addr(), Protocol::Udp);
        ue.handle_datagram(f, &data, t);
        while ue.poll_transmit().is_some() {}
        while ue.poll_event().is_some() {}
    }
}

/// Mutated 401s (a real one with bytes overwritten) never panic either, and whatever the
/// UE makes of them, it never installs SAs for a challenge whose AUTN does not verify.
#[test]
fn mutated_challenges_do_not_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x401);
    for _ in 0..400 {
        let (mut ue, mut net, t, r1, f1) = started(config());
        let mut bytes = net.challenge(&r1).to_bytes();
        for _ in 0..rng.random_range(1..8) {
            let n = bytes.len();
            let i = rng.random_range(0..n);
            bytes[i] = rng.random();
        }
        let back = Flow::new(f1.local.unwrap(), f1.remote, Protocol::Udp);
        ue.handle_datagram(back, &bytes, t);
        while let Some(a) = ue.poll_action() {
            if let SaAction::Install { generation, .. } = a {
                ue.handle_sa_installed(generation, Ok(1), t);
            }
        }
        while ue.poll_transmit().is_some() {}
        while ue.poll_event().is_some() {}
    }
}

#[test]
fn an_unusable_challenge_or_200_fails_with_the_reason_typed() {
    let failure = |ue: &mut Ue| {
        events(ue).into_iter().find_map(|e| match e.kind {
            EventKind::Failed { error, .. } => Some(error),
            _ => None,
        })
    };
    // a 401 without any WWW-Authenticate
    let Offered {
        mut ue,
        flow,
        mut c401,
        ..
    } = challenged_offering(xfrm::IntegrityAlg::HmacSha1_96, xfrm::EncryptionAlg::Null);
    let t = Instant::now();
    c401.remove_header("WWW-Authenticate");
    deliver(&mut ue, &c401, flow, t);
    assert_eq!(
        failure(&mut ue),
        Some(RegError::BadChallenge(ChallengeError::NoChallenge))
    );
    // a nonce that is not RAND ‖ AUTN
    let Offered {
        mut ue,
        flow,
        mut c401,
        ..
    } = challenged_offering(xfrm::IntegrityAlg::HmacSha1_96, xfrm::EncryptionAlg::Null);
    c401.set_header(
        "WWW-Authenticate",
        "Digest realm=\"x\", nonce=\"AAAA\", algorithm=AKAv1-MD5",
    );
    deliver(&mut ue, &c401, flow, t);
    assert!(matches!(
        failure(&mut ue),
        Some(RegError::BadChallenge(ChallengeError::Nonce(_)))
    ));
    // a 200 OK whose Expires does not parse (and no expires on our Contact)
    let Offered {
        mut ue,
        net,
        flow,
        c401,
        ..
    } = challenged_offering(xfrm::IntegrityAlg::HmacSha1_96, xfrm::EncryptionAlg::Null);
    deliver(&mut ue, &c401, flow, t);
    let _ = actions(&mut ue);
    ue.handle_sa_installed(0, Ok(1), t);
    let (r2, f2) = one_transmit(&mut ue);
    let mut ok = net.ok(&r2, 600);
    ok.remove_header("Contact");
    ok.set_header("Expires", "soon");
    deliver(&mut ue, &ok, f2, t);
    assert!(matches!(
        failure(&mut ue),
        Some(RegError::BadResponse(ResponseError::Header {
            header: "Expires",
            ..
        }))
    ));
}
