//! Cx handlers driven by messages, without sockets.
mod common;
use akav1::{AuthFailure, Milenage, SqnPolicy, Usim, UsimSqnState};
use common::*;
use diameter::{app, avp, cmd, result, Avp, FindAvp, Message, ResultCode, VENDOR_3GPP};
use hss::cx::{cx as cxr, sat, CxConfig, CxHandler, DeregReason};
use hss::metrics::Metrics;
use hss::store::{RegState, Store};
use std::sync::{Arc, Mutex};

struct Env {
    cx: CxHandler,
    sqn_store: Store,
    _dir: tempfile::TempDir,
    policy: SqnPolicy,
}

fn env_with(cfg: CxConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hss.db");
    let mut s = Store::open(&p, hss::store::Durability::Normal).unwrap();
    s.add(&sub(1)).unwrap();
    s.add(&sub(2)).unwrap();
    let sqn_store = Store::open(&p, hss::store::Durability::Normal).unwrap();
    let cx = CxHandler::new(cfg, Arc::new(Mutex::new(s)), Arc::new(Metrics::default()));
    Env {
        cx,
        sqn_store,
        _dir: dir,
        policy: SqnPolicy::default(),
    }
}

fn env() -> Env {
    env_with(CxConfig::default())
}

impl Env {
    fn send(&mut self, m: &Message) -> Message {
        let a = self
            .cx
            .handle_blocking(m, &mut self.sqn_store, &self.policy, 1);
        assert!(!a.is_request());
        assert_eq!(a.hop_by_hop, m.hop_by_hop);
        assert_eq!(a.end_to_end, m.end_to_end);
        a
    }
}

fn req(code: u32) -> Message {
    let mut m = Message::request(app::CX, code)
        .with(Avp::utf8(avp::SESSION_ID, "scscf.ims.lab;1;2"))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
        .with(Avp::utf8(avp::ORIGIN_HOST, "scscf.ims.lab"))
        .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"));
    m.hop_by_hop = 77;
    m.end_to_end = 88;
    m
}

fn ids(m: Message, n: u32) -> Message {
    let s = sub(n);
    m.with(Avp::utf8(avp::USER_NAME, &s.impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, &s.impus[0].uri))
}

fn mar(n: u32, items: u32, scheme: &str, authz: Option<Vec<u8>>) -> Message {
    let mut item = vec![Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, scheme)];
    if let Some(a) = authz {
        item.push(Avp::octets(avp::SIP_AUTHORIZATION, a));
    }
    ids(req(cmd::MULTIMEDIA_AUTH), n)
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, items))
        .with(Avp::grouped(avp::SIP_AUTH_DATA_ITEM, item))
        .with(Avp::utf8(avp::SERVER_NAME, "sip:scscf.ims.lab:6060"))
}

fn exp(a: &Message) -> Option<u32> {
    match a.result()? {
        ResultCode::Experimental { vendor, code } => {
            assert_eq!(vendor, VENDOR_3GPP);
            Some(code)
        }
        ResultCode::Base(_) => None,
    }
}

fn base(a: &Message) -> Option<u32> {
    match a.result()? {
        ResultCode::Base(c) => Some(c),
        _ => None,
    }
}

type Vector = ([u8; 16], [u8; 16], Vec<u8>, Vec<u8>, Vec<u8>);

fn vectors(a: &Message) -> Vec<Vector> {
    a.find_all(avp::SIP_AUTH_DATA_ITEM)
        .map(|i| {
            let g = i.as_grouped().unwrap();
            assert_eq!(
                g.get_utf8(avp::SIP_AUTHENTICATION_SCHEME).unwrap(),
                "Digest-AKAv1-MD5"
            );
            let au = g.get_octets(avp::SIP_AUTHENTICATE).unwrap();
            assert_eq!(au.len(), 32);
            (
                au[..16].try_into().unwrap(),
                au[16..].try_into().unwrap(),
                g.get_octets(avp::SIP_AUTHORIZATION).unwrap().to_vec(),
                g.get_octets(avp::CONFIDENTIALITY_KEY).unwrap().to_vec(),
                g.get_octets(avp::INTEGRITY_KEY).unwrap().to_vec(),
            )
        })
        .collect()
}

#[test]
fn mar_gives_vectors_a_usim_accepts() {
    let mut e = env();
    for scheme in ["Digest-AKAv1-MD5", "Unknown"] {
        let a = e.send(&mar(1, 1, scheme, None));
        assert_eq!(
            base(&a),
            Some(result::SUCCESS),
            "Kamailio needs Result-Code 2001"
        );
        assert_eq!(a.get_u32(avp::SIP_NUMBER_AUTH_ITEMS).unwrap(), 1);
        assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), sub(1).impi);
    }
    let a = e.send(&mar(1, 3, "Digest-AKAv1-MD5", None));
    let v = vectors(&a);
    assert_eq!(v.len(), 3);
    let mut ue = Usim::new(Milenage::new(&K, &OPC), SqnPolicy::default());
    for (rand, autn, xres, ck, ik) in v {
        let r = ue.authenticate(&rand, &autn).unwrap();
        assert_eq!(
            (r.res.to_vec(), r.ck.to_vec(), r.ik.to_vec()),
            (xres, ck, ik)
        );
        assert_eq!(SqnPolicy::default().ind(r.sqn), 1, "configured IND slot");
    }
}

#[test]
fn mar_resync_with_auts() {
    let mut e = env();
    let pol = SqnPolicy::default();
    // The card already saw SEQ 500 in our slot (e.g. the DB was restored from a backup).
    let mut ue = Usim::with_state(
        Milenage::new(&K, &OPC),
        UsimSqnState::with_highest(pol, pol.compose(500, 1).unwrap()),
    );
    let a = e.send(&mar(1, 1, "Digest-AKAv1-MD5", None));
    let (rand, autn, ..) = vectors(&a)[0].clone();
    let Err(AuthFailure::SyncFailure { auts, .. }) = ue.authenticate(&rand, &autn) else {
        panic!("expected sync failure")
    };
    let mut authz = rand.to_vec();
    authz.extend_from_slice(&auts);
    // A forged AUTS is refused.
    let mut forged = authz.clone();
    forged[29] ^= 0x40;
    let a = e.send(&mar(1, 1, "Digest-AKAv1-MD5", Some(forged)));
    assert_eq!(base(&a), Some(result::AUTHORIZATION_REJECTED));
    assert!(a.find(avp::SIP_AUTH_DATA_ITEM).is_none());
    // The real one resynchronises; the next vector is fresh for the card.
    let a = e.send(&mar(1, 1, "Digest-AKAv1-MD5", Some(authz)));
    assert_eq!(base(&a), Some(result::SUCCESS));
    let (rand, autn, xres, ..) = vectors(&a)[0].clone();
    assert_eq!(ue.authenticate(&rand, &autn).unwrap().res.to_vec(), xres);
}

#[test]
fn mar_errors() {
    let mut e = env();
    let a = e.send(&mar(1, 1, "SIP Digest", None));
    assert_eq!(exp(&a), Some(cxr::ERROR_AUTH_SCHEME_NOT_SUPPORTED));
    let m = req(cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::USER_NAME, "nobody@x"))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, "sip:nobody@x"));
    assert_eq!(exp(&e.send(&m)), Some(cxr::ERROR_USER_UNKNOWN));
    let m = req(cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::USER_NAME, sub(1).impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, &sub(2).impus[0].uri));
    assert_eq!(exp(&e.send(&m)), Some(cxr::ERROR_IDENTITIES_DONT_MATCH));
    let m = req(cmd::MULTIMEDIA_AUTH).with(Avp::utf8(avp::USER_NAME, sub(1).impi));
    assert_eq!(base(&e.send(&m)), Some(result::MISSING_AVP));
    let a = e.send(&mar(1, 1, "Digest-AKAv1-MD5", Some(vec![1, 2, 3])));
    assert_eq!(base(&a), Some(result::INVALID_AVP_VALUE));
    // Asking for a silly number of vectors is capped.
    let a = e.send(&mar(1, 1000, "Digest-AKAv1-MD5", None));
    assert_eq!(vectors(&a).len(), 16);
}

fn uar(n: u32, uat: Option<i32>) -> Message {
    let mut m = ids(req(cmd::USER_AUTHORIZATION), n).with(Avp::octets(
        avp::VISITED_NETWORK_IDENTIFIER,
        b"ims.lab".to_vec(),
    ));
    if let Some(t) = uat {
        m.add(Avp::enumerated(avp::USER_AUTHORIZATION_TYPE, t));
    }
    m
}

fn sar(n: u32, t: i32) -> Message {
    ids(req(cmd::SERVER_ASSIGNMENT), n)
        .with(Avp::utf8(avp::SERVER_NAME, "sip:scscf.ims.lab:6060"))
        .with(Avp::enumerated(avp::SERVER_ASSIGNMENT_TYPE, t))
        .with(Avp::enumerated(avp::USER_DATA_ALREADY_AVAILABLE, 0))
}

fn lir(n: u32) -> Message {
    req(cmd::LOCATION_INFO).with(Avp::utf8(avp::PUBLIC_IDENTITY, &sub(n).impus[1].uri))
}

#[test]
fn registration_lifecycle_uar_sar_lir() {
    let mut e = env();
    // Not registered: first registration with capabilities; LIR says no S-CSCF.
    let a = e.send(&uar(1, None));
    assert_eq!(exp(&a), Some(cxr::FIRST_REGISTRATION));
    assert!(a.find(avp::SERVER_CAPABILITIES).is_some());
    assert_eq!(
        exp(&e.send(&uar(1, Some(1)))),
        Some(cxr::ERROR_IDENTITY_NOT_REGISTERED)
    );
    assert_eq!(base(&e.send(&lir(1))), Some(result::SUCCESS));
    // SAR REGISTRATION stores the S-CSCF and returns User-Data.
    let a = e.send(&sar(1, sat::REGISTRATION));
    assert_eq!(base(&a), Some(result::SUCCESS));
    let xml = String::from_utf8(a.get_octets(avp::USER_DATA).unwrap().to_vec()).unwrap();
    let ud = ifc::ImsSubscription::from_xml(&xml).unwrap();
    assert_eq!(ud.private_id, sub(1).impi);
    assert_eq!(ud.service_profiles[0].public_identities.len(), 2);
    // Now registered: subsequent registration, LIR finds the S-CSCF.
    let a = e.send(&uar(1, Some(0)));
    assert_eq!(exp(&a), Some(cxr::SUBSEQUENT_REGISTRATION));
    assert_eq!(
        a.get_utf8(avp::SERVER_NAME).unwrap(),
        "sip:scscf.ims.lab:6060"
    );
    let a = e.send(&lir(1));
    assert_eq!(base(&a), Some(result::SUCCESS));
    assert_eq!(
        a.get_utf8(avp::SERVER_NAME).unwrap(),
        "sip:scscf.ims.lab:6060"
    );
    assert_eq!(base(&e.send(&uar(1, Some(1)))), Some(result::SUCCESS));
    // RTR goes to the S-CSCF's Diameter host.
    let (rtr, host) =
        e.cx.build_rtr(&sub(1).impi, DeregReason::ServerChange, Some("test"))
            .unwrap();
    assert_eq!(host, "scscf.ims.lab");
    assert_eq!(rtr.code, cmd::REGISTRATION_TERMINATION);
    assert!(rtr.is_request());
    assert_eq!(
        rtr.get_utf8(avp::DESTINATION_HOST).unwrap(),
        "scscf.ims.lab"
    );
    assert_eq!(
        rtr.get_grouped(avp::DEREGISTRATION_REASON)
            .unwrap()
            .get_i32(avp::REASON_CODE)
            .unwrap(),
        2
    );
    assert_eq!(rtr.find_all(avp::PUBLIC_IDENTITY).count(), 3);
    let (ppr, _) = e.cx.build_ppr(&sub(1).impi).unwrap();
    assert!(ppr.find(avp::USER_DATA).is_some());
    // Deregistration with store-server-name keeps the name: LIR answers UNREGISTERED_SERVICE.
    assert_eq!(
        base(&e.send(&sar(1, sat::USER_DEREGISTRATION_STORE_SERVER_NAME))),
        Some(result::SUCCESS)
    );
    let a = e.send(&lir(1));
    assert_eq!(exp(&a), Some(cxr::UNREGISTERED_SERVICE));
    // Plain user deregistration clears it.
    let a = e.send(&sar(1, sat::USER_DEREGISTRATION));
    assert!(a.find(avp::USER_DATA).is_none());
    let a = e.send(&lir(1).with(Avp::enumerated(avp::ORIGINATING_REQUEST, 0)));
    assert_eq!(exp(&a), Some(cxr::SERVER_NAME_NOT_STORED));
    // Unregistered user (terminating call to an unregistered user).
    let a = e.send(&sar(1, sat::UNREGISTERED_USER));
    assert!(a.find(avp::USER_DATA).is_some());
    let a = e.send(&uar(1, None));
    assert_eq!(exp(&a), Some(cxr::FIRST_REGISTRATION));
    assert_eq!(
        a.get_utf8(avp::SERVER_NAME).unwrap(),
        "sip:scscf.ims.lab:6060"
    );
    assert_eq!(exp(&e.send(&lir(1))), Some(cxr::UNREGISTERED_SERVICE));
}

#[test]
fn every_assignment_type_is_answered() {
    let mut e = env();
    for t in 0..=14 {
        let a = e.send(&sar(2, t));
        assert_eq!(base(&a), Some(result::SUCCESS), "type {t}");
        let wants_data = matches!(t, 0 | 1 | 2 | 3 | 12);
        assert_eq!(a.find(avp::USER_DATA).is_some(), wants_data, "type {t}");
    }
    assert_eq!(base(&e.send(&sar(2, 99))), Some(result::INVALID_AVP_VALUE));
    // Authentication failure of a registered user keeps the registration.
    e.send(&sar(2, sat::REGISTRATION));
    e.send(&sar(2, sat::AUTHENTICATION_FAILURE));
    assert_eq!(
        exp(&e.send(&uar(2, None))),
        Some(cxr::SUBSEQUENT_REGISTRATION)
    );
    // Another S-CSCF asking for the data without assignment is refused.
    let m = sar(2, sat::NO_ASSIGNMENT);
    let mut m2 = Message {
        avps: vec![],
        ..m.clone()
    };
    for a in m.avps {
        m2.add(if a.is(avp::SERVER_NAME) {
            Avp::utf8(avp::SERVER_NAME, "sip:other")
        } else {
            a
        });
    }
    assert_eq!(
        exp(&e.send(&m2)),
        Some(cxr::ERROR_IDENTITY_ALREADY_REGISTERED)
    );
}

#[test]
fn uar_errors() {
    let mut e = env_with(CxConfig {
        allowed_visited_networks: vec!["home.net".into()],
        ..CxConfig::default()
    });
    assert_eq!(
        exp(&e.send(&uar(1, None))),
        Some(cxr::ERROR_ROAMING_NOT_ALLOWED)
    );
    let m = req(cmd::USER_AUTHORIZATION)
        .with(Avp::utf8(avp::USER_NAME, sub(1).impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, "sip:nobody@x"));
    assert_eq!(exp(&e.send(&m)), Some(cxr::ERROR_USER_UNKNOWN));
    let m = req(cmd::USER_AUTHORIZATION)
        .with(Avp::utf8(avp::USER_NAME, sub(2).impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, &sub(1).impus[0].uri));
    assert_eq!(exp(&e.send(&m)), Some(cxr::ERROR_IDENTITIES_DONT_MATCH));
}

#[test]
fn peer_allow_list_and_unknown_commands() {
    let mut e = env_with(CxConfig {
        allowed_peers: vec!["scscf.ims.lab".into()],
        ..CxConfig::default()
    });
    assert_eq!(
        base(&e.send(&mar(1, 1, "Unknown", None))),
        Some(result::SUCCESS)
    );
    let mut m = mar(1, 1, "Unknown", None);
    m.set(Avp::utf8(avp::ORIGIN_HOST, "evil.example"));
    let a = e.send(&m);
    assert_eq!(base(&a), Some(result::UNKNOWN_PEER));
    assert!(a.is_error());
    let a = e.send(&req(999));
    assert_eq!(base(&a), Some(result::COMMAND_UNSUPPORTED));
    let mut other = req(cmd::USER_AUTHORIZATION);
    other.app_id = 4;
    assert_eq!(base(&e.send(&other)), Some(result::APPLICATION_UNSUPPORTED));
}

#[test]
fn registered_state_is_in_the_store() {
    let mut e = env();
    e.send(&sar(1, sat::REGISTRATION));
    let s = e.sqn_store.get(&sub(1).impi).unwrap().unwrap();
    assert_eq!(s.reg_state, RegState::Registered);
    assert_eq!(s.scscf_name.as_deref(), Some("sip:scscf.ims.lab:6060"));
    assert_eq!(s.scscf_host.as_deref(), Some("scscf.ims.lab"));
}

/// Subscriber `n` with two unbarred implicit registration sets: set 0 = its SIP and tel
/// IMPUs, set 1 = `sip:other<n>@…`.
fn two_sets(e: &mut Env, n: u32) -> hss::store::Subscriber {
    let mut s = sub(n);
    s.impus[2].barred = false;
    e.sqn_store.add(&s).unwrap();
    s
}

fn sar_for(impi: Option<&str>, impu: Option<&str>, t: i32, server: &str) -> Message {
    let mut m = req(cmd::SERVER_ASSIGNMENT);
    if let Some(i) = impi {
        m.add(Avp::utf8(avp::USER_NAME, i));
    }
    if let Some(u) = impu {
        m.add(Avp::utf8(avp::PUBLIC_IDENTITY, u));
    }
    m.with(Avp::utf8(avp::SERVER_NAME, server))
        .with(Avp::enumerated(avp::SERVER_ASSIGNMENT_TYPE, t))
        .with(Avp::enumerated(avp::USER_DATA_ALREADY_AVAILABLE, 0))
}

fn lir_for(impu: &str) -> Message {
    req(cmd::LOCATION_INFO).with(Avp::utf8(avp::PUBLIC_IDENTITY, impu))
}

/// The IMPUs of each ServiceProfile of an answer's User-Data.
fn profiles(a: &Message) -> Vec<Vec<String>> {
    let xml = String::from_utf8(a.get_octets(avp::USER_DATA).unwrap().to_vec()).unwrap();
    ifc::ImsSubscription::from_xml(&xml)
        .unwrap()
        .service_profiles
        .iter()
        .map(|p| {
            p.public_identities
                .iter()
                .map(|i| i.identity.clone())
                .collect()
        })
        .collect()
}

const S1: &str = "sip:scscf.ims.lab:6060";

#[test]
fn registration_state_is_per_implicit_set() {
    let mut e = env();
    let s = two_sets(&mut e, 5);
    let (home, tel, work) = (&s.impus[0].uri, &s.impus[1].uri, &s.impus[2].uri);
    // Registering set 0 returns set 0's IMPUs only, and leaves set 1 unregistered.
    let a = e.send(&sar_for(Some(&s.impi), Some(home), sat::REGISTRATION, S1));
    assert_eq!(base(&a), Some(result::SUCCESS));
    assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), s.impi);
    assert_eq!(profiles(&a), vec![vec![home.clone(), tel.clone()]]);
    let a = e.send(&lir_for(tel));
    assert_eq!(base(&a), Some(result::SUCCESS));
    assert_eq!(a.get_utf8(avp::SERVER_NAME).unwrap(), S1);
    let a = e.send(&lir_for(work));
    assert!(
        a.find(avp::SERVER_NAME).is_none(),
        "set 1 is not registered"
    );
    let a = e.send(
        &req(cmd::USER_AUTHORIZATION)
            .with(Avp::utf8(avp::USER_NAME, &s.impi))
            .with(Avp::utf8(avp::PUBLIC_IDENTITY, work)),
    );
    assert_eq!(exp(&a), Some(cxr::FIRST_REGISTRATION));
    assert!(a.find(avp::SERVER_NAME).is_none());
    let a = e.send(
        &req(cmd::USER_AUTHORIZATION)
            .with(Avp::utf8(avp::USER_NAME, &s.impi))
            .with(Avp::utf8(avp::PUBLIC_IDENTITY, home)),
    );
    assert_eq!(exp(&a), Some(cxr::SUBSEQUENT_REGISTRATION));
    // Set 1 registers at another S-CSCF; its answer lists set 1's IMPU only.
    let a = e.send(&sar_for(
        Some(&s.impi),
        Some(work),
        sat::REGISTRATION,
        "sip:s2",
    ));
    assert_eq!(profiles(&a), vec![vec![work.clone()]]);
    let sets = e.sqn_store.irs_registrations(&s.impi).unwrap();
    assert_eq!(
        sets.iter()
            .map(|r| (r.irs, r.state, r.scscf_name.clone().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            (0, RegState::Registered, S1.to_string()),
            (1, RegState::Registered, "sip:s2".to_string())
        ]
    );
    // Deregistering set 0 keeps set 1 registered, and the subscriber counts as registered.
    let a = e.send(&sar_for(
        Some(&s.impi),
        Some(tel),
        sat::USER_DEREGISTRATION,
        S1,
    ));
    assert_eq!(base(&a), Some(result::SUCCESS));
    assert!(a.find(avp::USER_DATA).is_none());
    assert!(e.send(&lir_for(home)).find(avp::SERVER_NAME).is_none());
    assert_eq!(
        e.send(&lir_for(work)).get_utf8(avp::SERVER_NAME).unwrap(),
        "sip:s2"
    );
    let got = e.sqn_store.get(&s.impi).unwrap().unwrap();
    assert_eq!(got.reg_state, RegState::Registered);
    assert_eq!(got.scscf_name.as_deref(), Some("sip:s2"));
    // A SAR with only User-Name acts on every set.
    let a = e.send(&sar_for(
        Some(&s.impi),
        None,
        sat::TIMEOUT_DEREGISTRATION,
        S1,
    ));
    assert_eq!(base(&a), Some(result::SUCCESS));
    assert!(e
        .sqn_store
        .irs_registrations(&s.impi)
        .unwrap()
        .iter()
        .all(|r| r.is_empty()));
    assert_eq!(
        e.sqn_store.get(&s.impi).unwrap().unwrap().reg_state,
        RegState::NotRegistered
    );
}

#[test]
fn unregistered_user_gets_a_server_and_its_profile() {
    let mut e = env();
    let s = two_sets(&mut e, 6);
    let work = &s.impus[2].uri;
    // Nobody serves the callee yet: LIA has no Server-Name.
    let a = e.send(&lir_for(work));
    assert_eq!(base(&a), Some(result::SUCCESS));
    assert!(a.find(avp::SERVER_NAME).is_none());
    assert!(a.find(avp::SERVER_CAPABILITIES).is_some());
    // The S-CSCF picked for the terminating request asks with the IMPU alone.
    let a = e.send(&sar_for(None, Some(work), sat::UNREGISTERED_USER, S1));
    assert_eq!(base(&a), Some(result::SUCCESS));
    assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), s.impi);
    assert_eq!(profiles(&a), vec![vec![work.clone()]]);
    let r = e.sqn_store.registration_of(work).unwrap().unwrap();
    assert_eq!(
        (r.state, r.scscf_name.as_deref()),
        (RegState::Unregistered, Some(S1))
    );
    // LIR now names that S-CSCF with UNREGISTERED_SERVICE (TS 29.228 §6.1.4.1); the other set
    // is untouched.
    let a = e.send(&lir_for(work));
    assert_eq!(exp(&a), Some(cxr::UNREGISTERED_SERVICE));
    assert_eq!(a.get_utf8(avp::SERVER_NAME).unwrap(), S1);
    assert!(e
        .send(&lir_for(&s.impus[0].uri))
        .find(avp::SERVER_NAME)
        .is_none());
    // A later registration of that set makes it registered at its S-CSCF.
    e.send(&sar_for(Some(&s.impi), Some(work), sat::REGISTRATION, S1));
    let a = e.send(&lir_for(work));
    assert_eq!(base(&a), Some(result::SUCCESS));
    assert_eq!(a.get_utf8(avp::SERVER_NAME).unwrap(), S1);
    // UNREGISTERED_USER for a registered set keeps it registered.
    e.send(&sar_for(None, Some(work), sat::UNREGISTERED_USER, S1));
    assert_eq!(
        e.sqn_store.registration_of(work).unwrap().unwrap().state,
        RegState::Registered
    );
    // Unknown IMPU, and an IMPU that is not the User-Name's.
    let a = e.send(&sar_for(
        None,
        Some("sip:nobody@ims.lab"),
        sat::UNREGISTERED_USER,
        S1,
    ));
    assert_eq!(exp(&a), Some(cxr::ERROR_USER_UNKNOWN));
    let a = e.send(&sar_for(
        Some(&sub(1).impi),
        Some(work),
        sat::UNREGISTERED_USER,
        S1,
    ));
    assert_eq!(exp(&a), Some(cxr::ERROR_IDENTITIES_DONT_MATCH));
    let a = e.send(&sar_for(None, None, sat::UNREGISTERED_USER, S1));
    assert_eq!(base(&a), Some(result::MISSING_AVP));
}

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    const DEFS: &[diameter::AvpDef] = &[
        avp::USER_NAME,
        avp::PUBLIC_IDENTITY,
        avp::SIP_NUMBER_AUTH_ITEMS,
        avp::SIP_AUTH_DATA_ITEM,
        avp::SIP_AUTHENTICATION_SCHEME,
        avp::SIP_AUTHORIZATION,
        avp::SERVER_NAME,
        avp::SERVER_ASSIGNMENT_TYPE,
        avp::USER_AUTHORIZATION_TYPE,
        avp::VISITED_NETWORK_IDENTIFIER,
        avp::ORIGINATING_REQUEST,
        avp::ORIGIN_HOST,
    ];

    fn arb_avp() -> impl Strategy<Value = Avp> {
        let leaf = (0..DEFS.len(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(i, b)| Avp::octets(DEFS[i], b));
        let known = (0..3usize, 0..20u32).prop_map(|(k, n)| match k {
            0 => Avp::utf8(avp::USER_NAME, sub(1).impi),
            1 => Avp::utf8(avp::PUBLIC_IDENTITY, &sub(1).impus[(n % 3) as usize].uri),
            _ => Avp::u32(avp::SERVER_ASSIGNMENT_TYPE, n),
        });
        let base = prop_oneof![leaf, known];
        base.prop_recursive(2, 8, 4, |inner| {
            proptest::collection::vec(inner, 0..4)
                .prop_map(|v| Avp::grouped(avp::SIP_AUTH_DATA_ITEM, v))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_requests_get_answers(code in 300u32..306, avps in proptest::collection::vec(arb_avp(), 0..8)) {
            let mut e = env();
            let m = Message::request(app::CX, code).with_all(avps);
            // Encoding and decoding first, as the server sees it.
            if let Ok(m) = Message::decode(m.encode()) {
                let a = e.send(&m);
                prop_assert!(a.result().is_some());
            }
        }
    }
}
