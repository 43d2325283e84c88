mod common;
use akav1::{Milenage, Sqn, SqnPolicy};
use common::*;
use hss::store::*;
use std::collections::HashSet;

fn req(impi: &str, count: u32) -> SqnRequest {
    SqnRequest {
        impi: impi.into(),
        impu: None,
        count,
        resync: None,
    }
}

#[test]
fn migrations_set_user_version_and_reopen_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hss.db");
    let s = Store::open(&p, Durability::Full).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    drop(s);
    let s = Store::open(&p, Durability::Full).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hss.db");
    drop(Store::open(&p, Durability::Full).unwrap());
    let c = rusqlite::Connection::open(&p).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    assert!(matches!(
        Store::open(&p, Durability::Full),
        Err(StoreError::TooNew(99))
    ));
}

#[test]
fn crud_and_lookups() {
    let mut s = Store::open_in_memory().unwrap();
    let a = sub(1);
    s.add(&a).unwrap();
    assert!(matches!(s.add(&a), Err(StoreError::Conflict(_))));
    let mut b = sub(2);
    b.impus[0].uri = a.impus[0].uri.clone();
    assert!(
        matches!(s.add(&b), Err(StoreError::Conflict(_))),
        "IMPU shared between subscribers"
    );
    assert_eq!(s.get(&a.impi).unwrap().unwrap(), a);
    assert_eq!(
        s.find(a.imsi.as_deref().unwrap()).unwrap().unwrap().impi,
        a.impi
    );
    assert_eq!(s.find("tel:+491700000001").unwrap().unwrap().impi, a.impi);
    assert_eq!(s.find("+491700000001").unwrap().unwrap().impi, a.impi);
    assert_eq!(s.find("491700000001").unwrap().unwrap().impi, a.impi);
    assert_eq!(
        s.impi_of(&a.impus[2].uri).unwrap().as_deref(),
        Some(a.impi.as_str())
    );
    assert_eq!(s.list().unwrap(), vec![a.impi.clone()]);
    let mut bad = sub(3);
    bad.impus[0].uri = "mailto:x".into();
    assert!(matches!(s.add(&bad), Err(StoreError::Invalid(_))));
    assert!(s.delete(&a.impi).unwrap());
    assert!(!s.delete(&a.impi).unwrap());
    assert!(
        s.impi_of(&a.impus[0].uri).unwrap().is_none(),
        "IMPUs cascade"
    );
}

#[test]
fn update_never_moves_sqn_back_and_keeps_registration() {
    let mut s = Store::open_in_memory().unwrap();
    let a = sub(1);
    s.add(&a).unwrap();
    let p = SqnPolicy::default();
    s.issue_sqns(&[req(&a.impi, 3)], &p, 0);
    s.set_registration(
        &a.impi,
        RegState::Registered,
        Some("sip:scscf"),
        Some("scscf.host"),
        None,
    )
    .unwrap();
    let mut b = a.clone();
    b.msisdn = Some("1".into());
    s.update(&a.impi, &b).unwrap();
    let got = s.get(&a.impi).unwrap().unwrap();
    assert_eq!(got.sqn, 3 << 5);
    assert_eq!(got.reg_state, RegState::Registered);
    assert_eq!(got.msisdn.as_deref(), Some("1"));
}

#[test]
fn sqn_in_configured_ind_slot_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hss.db");
    let a = sub(1);
    let pol = SqnPolicy::default();
    {
        let mut s = Store::open(&p, Durability::Full).unwrap();
        s.add(&a).unwrap();
        let r = s.issue_sqns(&[req(&a.impi, 2)], &pol, 7);
        let sqns = &r[0].as_ref().unwrap().sqns;
        assert_eq!(
            sqns.iter().map(|x| x.value()).collect::<Vec<_>>(),
            vec![(1 << 5) | 7, (2 << 5) | 7]
        );
    }
    let mut s = Store::open(&p, Durability::Full).unwrap();
    assert_eq!(s.get(&a.impi).unwrap().unwrap().sqn, (2 << 5) | 7);
    let r = s.issue_sqns(&[req(&a.impi, 1)], &pol, 7);
    assert_eq!(r[0].as_ref().unwrap().sqns[0].value(), (3 << 5) | 7);
}

#[test]
fn batch_errors_are_per_request() {
    let mut s = Store::open_in_memory().unwrap();
    let a = sub(1);
    s.add(&a).unwrap();
    let mut wrong = req(&a.impi, 1);
    wrong.impu = Some("sip:nobody@x".into());
    let mut right = req(&a.impi, 1);
    right.impu = Some(a.impus[1].uri.clone());
    let r = s.issue_sqns(
        &[req("nobody", 1), wrong, right, req(&a.impi, 1)],
        &SqnPolicy::default(),
        0,
    );
    assert_eq!(r[0].as_ref().unwrap_err(), &IssueError::UnknownUser);
    assert_eq!(r[1].as_ref().unwrap_err(), &IssueError::IdentitiesDontMatch);
    assert_eq!(r[2].as_ref().unwrap().sqns[0].value(), 1 << 5);
    assert_eq!(
        r[3].as_ref().unwrap().sqns[0].value(),
        2 << 5,
        "same subscriber twice in a batch"
    );
}

#[test]
fn resync_checks_mac_s_and_moves_forward_only() {
    let mut s = Store::open_in_memory().unwrap();
    let a = sub(1);
    s.add(&a).unwrap();
    let pol = SqnPolicy::default();
    let m = Milenage::new(&K, &OPC);
    let rand = [9u8; 16];
    let sqn_ms = pol.compose(1000, 3).unwrap();
    let auts = m.auts(&rand, sqn_ms);
    let mut r = req(&a.impi, 1);
    r.resync = Some((rand, auts));
    let out = s.issue_sqns(&[r.clone()], &pol, 0);
    let iss = out[0].as_ref().unwrap();
    assert_eq!(iss.resynced_from, Some(sqn_ms));
    assert_eq!(iss.sqns[0], pol.compose(1001, 0).unwrap());
    // Replaying the old AUTS must not move SEQ back.
    let out = s.issue_sqns(&[r.clone()], &pol, 0);
    assert_eq!(
        out[0].as_ref().unwrap().sqns[0],
        pol.compose(1002, 0).unwrap()
    );
    // A forged AUTS is refused and does not consume an SQN.
    let mut forged = r;
    forged.resync.as_mut().unwrap().1[13] ^= 1;
    let out = s.issue_sqns(&[forged], &pol, 0);
    assert!(matches!(
        out[0],
        Err(IssueError::Resync(akav1::AkaError::MacSMismatch))
    ));
    assert_eq!(
        s.get(&a.impi).unwrap().unwrap().sqn,
        pol.compose(1002, 0).unwrap().value()
    );
}

#[test]
fn sqn_never_reused_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hss.db");
    let a = sub(1);
    Store::open(&p, Durability::Normal)
        .unwrap()
        .add(&a)
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            let impi = a.impi.clone();
            std::thread::spawn(move || {
                let mut s = Store::open(&p, Durability::Normal).unwrap();
                let mut got = Vec::new();
                for i in 0..100 {
                    let batch = vec![req(&impi, 1 + (i % 3)); 1 + (i as usize % 4)];
                    for r in s.issue_sqns(&batch, &SqnPolicy::default(), 0) {
                        got.extend(r.unwrap().sqns.iter().map(|x| x.value()));
                    }
                }
                got
            })
        })
        .collect();
    let mut all = HashSet::new();
    let mut n = 0;
    for t in threads {
        for v in t.join().unwrap() {
            n += 1;
            assert!(all.insert(v), "SQN {v} issued twice");
        }
    }
    let last = Store::open(&p, Durability::Normal)
        .unwrap()
        .get(&a.impi)
        .unwrap()
        .unwrap()
        .sqn;
    assert_eq!(last, (n as u64) << 5, "every SEQ used exactly once");
    let _ = Sqn::ZERO;
}

#[test]
fn user_data_groups_implicit_sets() {
    let mut s = Store::open_in_memory().unwrap();
    let mut a = sub(1);
    let ifc = ifc::InitialFilterCriteria {
        priority: 0,
        trigger_point: None,
        application_server: ifc::ApplicationServer {
            server_name: "sip:as".into(),
            ..Default::default()
        },
        profile_part_indicator: None,
    };
    let mut early = sub(9);
    early.profile = Some("gold".into());
    assert!(
        matches!(s.add(&early), Err(StoreError::Invalid(_))),
        "unknown profile"
    );
    s.put_profile("gold", std::slice::from_ref(&ifc)).unwrap();
    a.profile = Some("gold".into());
    a.ifcs = vec![ifc.clone()];
    s.add(&a).unwrap();
    assert_eq!(s.users_of_profile("gold").unwrap(), vec![a.impi.clone()]);
    let ud = s.user_data(&a).unwrap();
    assert_eq!(ud.private_id, a.impi);
    assert_eq!(ud.service_profiles.len(), 2);
    assert_eq!(ud.service_profiles[0].public_identities.len(), 2);
    assert_eq!(ud.service_profiles[0].initial_filter_criteria.len(), 2);
    assert!(ud.service_profiles[1].public_identities[0].barring_indication);
    let xml = ud.to_xml();
    assert_eq!(ifc::ImsSubscription::from_xml(&xml).unwrap(), ud);
}

#[test]
fn home_domain() {
    assert_eq!(
        home_domain_from_imsi("001010000000001", 2).unwrap(),
        "ims.mnc001.mcc001.3gppnetwork.org"
    );
    assert_eq!(
        home_domain_from_imsi("310410123456789", 3).unwrap(),
        "ims.mnc410.mcc310.3gppnetwork.org"
    );
    assert_eq!(
        home_domain_from_imsi("26201", 2).unwrap(),
        "ims.mnc001.mcc262.3gppnetwork.org"
    );
    assert!(home_domain_from_imsi("abc", 2).is_none());
}

/// `tests/data/hss-schema-v1.db` was made by the hss of commit 4d27441 (schema v1, one
/// registration per subscriber): `hss --db … subscriber add` for alice (IMPUs in sets 0 and
/// 1), bob (set 0) and carol (sets 0 and 2); then alice was marked registered and carol
/// unregistered at `sip:scscf.ims.lab:6060` with the UPDATE that version's
/// `set_registration` runs, and alice's SQN set to 97. Opening it migrates to v2: every set
/// of a subscriber starts with that subscriber's registration, nothing else changes.
#[test]
fn schema_v1_database_migrates_to_per_set_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hss.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hss-schema-v1.db"),
        &db,
    )
    .unwrap();
    let s = Store::open(&db, hss::store::Durability::Full).unwrap();
    assert_eq!(s.schema_version().unwrap(), hss::store::SCHEMA_VERSION);
    assert_eq!(hss::store::SCHEMA_VERSION, 2);
    let dom = "ims.mnc001.mcc001.3gppnetwork.org";
    let alice = s.get(&format!("001010000000001@{dom}")).unwrap().unwrap();
    assert_eq!(alice.sqn, 97);
    assert_eq!(alice.impus.len(), 3);
    assert_eq!(alice.reg_state, RegState::Registered);
    let sets = s.irs_registrations(&alice.impi).unwrap();
    assert_eq!(sets.len(), 2);
    for r in &sets {
        assert_eq!(r.state, RegState::Registered, "{r:?}");
        assert_eq!(r.scscf_name.as_deref(), Some("sip:scscf.ims.lab:6060"));
        assert_eq!(r.scscf_host.as_deref(), Some("scscf.ims.lab"));
    }
    let work = s
        .registration_of("sip:alice-work@ims.lab")
        .unwrap()
        .unwrap();
    assert_eq!((work.irs, work.state), (1, RegState::Registered));
    let bob = format!("001010000000002@{dom}");
    assert!(s
        .irs_registrations(&bob)
        .unwrap()
        .iter()
        .all(|r| r.is_empty()));
    let carol = s.registration_of("sip:carol2@ims.lab").unwrap().unwrap();
    assert_eq!((carol.irs, carol.state), (2, RegState::Unregistered));
    assert!(s.registration_of("sip:nobody@ims.lab").unwrap().is_none());
    drop(s);
    // Opening again is a no-op; the migrated database keeps working.
    let mut s = Store::open(&db, hss::store::Durability::Full).unwrap();
    assert_eq!(s.schema_version().unwrap(), 2);
    s.set_registration(&bob, RegState::Registered, Some("sip:s"), None, None)
        .unwrap();
    assert_eq!(
        s.registration_of("sip:bob@ims.lab").unwrap().unwrap().state,
        RegState::Registered
    );
}

#[test]
fn update_keeps_each_sets_registration() {
    let mut s = Store::open_in_memory().unwrap();
    let a = sub(1);
    s.add(&a).unwrap();
    // Register only set 1 (sub(1)'s third IMPU) through a SAR in the write path.
    let out = s.commit_batch(
        &[hss::store::WriteJob::Sar(hss::store::SarRequest {
            impi: None,
            impu: Some(a.impus[2].uri.clone()),
            assignment_type: hss::cx::sat::REGISTRATION,
            server_name: "sip:scscf".into(),
            origin_host: Some("scscf.host".into()),
            origin_realm: None,
        })],
        &SqnPolicy::default(),
        0,
    );
    assert!(matches!(&out[0], hss::store::WriteResult::Sar(r) if r.is_ok()));
    let mut b = a.clone();
    b.msisdn = Some("1".into());
    s.update(&a.impi, &b).unwrap();
    let sets = s.irs_registrations(&a.impi).unwrap();
    assert_eq!(sets[0].state, RegState::NotRegistered);
    assert_eq!(sets[1].state, RegState::Registered);
    // Dropping set 1 from the IMPUs drops its registration.
    let mut c = b.clone();
    c.impus.truncate(2);
    s.update(&a.impi, &c).unwrap();
    assert!(s
        .irs_registrations(&a.impi)
        .unwrap()
        .iter()
        .all(|r| r.is_empty()));
    assert_eq!(
        s.get(&a.impi).unwrap().unwrap().reg_state,
        RegState::NotRegistered
    );
}
