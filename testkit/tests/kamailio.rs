//! The Kamailio S-CSCF fixture against real Kamailio 5.6.3: it starts, loads
//! every module, speaks Diameter (CER), goes Open against a Cx responder and
//! registers a SIPp UE with AKAv1-MD5 (register, re-register, deregister).

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{StubHss, Subscriber};
use testkit::kamailio::{Kamailio, ScscfConfig};
use testkit::sipp::AkaUe;

fn hex16(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// TS 35.208 test set 1 keys.
fn subscriber() -> Subscriber {
    Subscriber {
        impi: "001010000000001@ims.lab".into(),
        impu: "sip:001010000000001@ims.lab".into(),
        k: hex16("465b5ce8b199b49faa5f0a2ee238a6bc"),
        op: hex16("cdc202d5123e20f62b6d676ac72cb318"),
        amf: [0xb9, 0xb9],
    }
}

fn ue(sub: &Subscriber) -> AkaUe {
    AkaUe::new(&sub.impi, &sub.impu, "ims.lab", sub.k, sub.op, sub.amf)
}

#[test]
fn kamailio_starts_and_sends_cer() {
    if !testkit::kamailio::require_scscf() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut k = Kamailio::start(ScscfConfig::new(port)).unwrap();
    listener.set_nonblocking(false).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = tx.send(common::read_msg(&mut s).map(|(_, m)| m));
        }
    });
    let cer = rx
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("no connection from cdp\n{}", k.log()))
        .unwrap_or_else(|| panic!("no Diameter message\n{}", k.log()));
    assert_eq!(cer.cmd, 257, "{cer:?}");
    assert!(cer.flags & 0x80 != 0, "CER must be a request");
    assert_eq!(cer.str(264).as_deref(), Some("scscf.ims.lab"));
    assert_eq!(cer.str(296).as_deref(), Some("ims.lab"));
    // Cx advertised as Vendor-Specific-Application-Id {10415, Auth 16777216}.
    let vsai: Vec<_> = cer.avps.iter().filter(|a| a.code == 260).collect();
    assert!(
        vsai.iter()
            .any(|a| a.data.windows(4).any(|w| w == 16_777_216u32.to_be_bytes())),
        "{cer:?}"
    );
    assert!(k.guard().is_running());
    let log = k.stop();
    for m in testkit::kamailio::SCSCF_MODULES {
        assert!(
            !log.contains(&format!("could not open module <{m}")),
            "{log}"
        );
    }
    assert!(!log.contains("ERROR: <core>"), "{log}");
}

#[test]
fn kamailio_probe_reports_peer_state() {
    if !testkit::kamailio::require_scscf() {
        return;
    }
    // Nothing listens on the HSS port yet: the probe must say 503.
    let hss_port = testkit::free_port();
    let mut k = Kamailio::start(ScscfConfig::new(hss_port)).unwrap();
    assert_eq!(k.probe(Duration::from_secs(2)).unwrap(), 503);
    // Kamailio forks ~15 workers into our process group; dropping the
    // fixture must leave none behind.
    let pgid = k.guard().pid();
    // (Start-up returns once SIP/TCP accepts; more workers may still be forking.)
    let members = testkit::group_members(pgid);
    assert!(members.len() >= 2, "{members:?}");
    drop(k);
    let gone = testkit::wait_until("kamailio workers to exit", Duration::from_secs(5), || {
        testkit::group_members(pgid).is_empty()
    });
    assert!(
        gone.is_ok(),
        "left behind: {:?}",
        testkit::group_members(pgid)
    );
}

#[test]
fn kamailio_registers_sipp_ue_over_tcp() {
    if !testkit::kamailio::require_scscf() || testkit::require_bin("sipp").is_none() {
        return;
    }
    let sub = subscriber();
    let hss = StubHss::start(sub.clone(), true);
    let mut k = Kamailio::start(ScscfConfig::new(hss.port)).unwrap();
    k.wait_hss_open(Duration::from_secs(15)).unwrap();
    let mut ue = ue(&sub);
    ue.transport = testkit::sipp::Transport::Tcp;
    let (out, _) = ue.register(k.sip_addr(), 600).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), k.log());
    assert!(out.messages.contains("TCP message"), "{}", out.describe());
    let (out, _) = ue.deregister(k.sip_addr()).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), k.log());
}

#[test]
fn kamailio_registers_sipp_ue_with_aka() {
    if !testkit::kamailio::require_scscf() || testkit::require_bin("sipp").is_none() {
        return;
    }
    let sub = subscriber();
    let hss = StubHss::start(sub.clone(), true);
    let mut k = Kamailio::start(ScscfConfig::new(hss.port)).unwrap();
    k.wait_hss_open(Duration::from_secs(15)).unwrap();
    let target = k.sip_addr();
    let mut ue = ue(&sub);

    let (out, attempts) = ue.register(target, 600).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), k.log());
    assert_eq!(attempts, 1);
    assert_eq!(
        out.received_status_codes(),
        vec![401, 200],
        "{}",
        out.describe()
    );
    assert!(
        out.messages.contains("algorithm=AKAv1-MD5"),
        "{}",
        out.describe()
    );

    let (out, _) = ue.reregister(target, 600).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), k.log());

    let (out, _) = ue.deregister(target).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), k.log());

    let seen = hss.seen.lock().unwrap();
    assert_eq!(
        seen.commands.iter().filter(|&&c| c == 303).count(),
        3,
        "{seen:?}"
    );
    // REGISTRATION, RE_REGISTRATION, USER_DEREGISTRATION (TS 29.229 §6.3.15).
    assert_eq!(seen.sar_types, vec![1, 2, 5], "{seen:?}\n{}", k.log());
}

#[test]
fn sipp_res_zero_byte_bug_is_retried() {
    if !testkit::kamailio::require_scscf() || testkit::require_bin("sipp").is_none() {
        return;
    }
    let sub = subscriber();
    // Find a RAND whose RES has a 0x00 byte: SIPp 3.6.1 answers it wrongly.
    let mut bad = [0u8; 16];
    let mut i: u64 = 0;
    loop {
        bad[..8].copy_from_slice(&i.to_be_bytes());
        if common::res_has_zero(&sub, &bad) {
            break;
        }
        i += 1;
    }
    let hss = StubHss::start(sub.clone(), true);
    hss.forced_rands.lock().unwrap().push(bad);
    let mut k = Kamailio::start(ScscfConfig::new(hss.port)).unwrap();
    k.wait_hss_open(Duration::from_secs(15)).unwrap();
    let mut ue = ue(&sub);
    let first = ue.register_once(k.sip_addr(), "register", 600).unwrap();
    assert!(!first.success, "{}", first.describe());
    assert_eq!(
        first.received_status_codes().last(),
        Some(&403),
        "{}",
        first.describe()
    );
    let (out, attempts) = ue.register(k.sip_addr(), 600).unwrap();
    assert!(out.success, "{}", out.describe());
    assert_eq!(attempts, 1);
}

#[test]
fn tshark_dissects_kamailio_registration_cleanly() {
    if !testkit::kamailio::require_scscf()
        || testkit::require_bin("sipp").is_none()
        || testkit::require_bin("tshark").is_none()
        || !testkit::require_root()
    {
        return;
    }
    use testkit::tshark::{dissect, Capture, DecodeAs, DissectOptions};
    let sub = subscriber();
    let hss = StubHss::start(sub.clone(), true);
    let mut cfg = ScscfConfig::new(hss.port);
    cfg.sip_port = testkit::free_port();
    let dir = testkit::TestDir::new("kam-pcap").unwrap();
    let pcap = dir.join("reg.pcap");
    let cap = Capture::loopback(&[hss.port, cfg.sip_port], &pcap).unwrap();
    let mut k = Kamailio::start(cfg).unwrap();
    k.wait_hss_open(Duration::from_secs(15)).unwrap();
    let mut ue = ue(&sub);
    let (out, _) = ue.register(k.sip_addr(), 600).unwrap();
    assert!(out.success, "{}", out.describe());
    let (out, _) = ue.deregister(k.sip_addr()).unwrap();
    assert!(out.success, "{}", out.describe());
    let pcap = cap.stop().unwrap();
    let d = dissect(
        &pcap,
        &DissectOptions {
            decode_as: vec![
                DecodeAs::diameter_tcp(hss.port),
                DecodeAs::sip_udp(k.config().sip_port),
            ],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(d.malformed, 0, "{d:?}");
    let req = d.diameter_codes(true);
    let ans = d.diameter_codes(false);
    for code in [257, 303, 301] {
        assert!(req.contains(&code), "request {code} missing: {d:?}");
        assert!(ans.contains(&code), "answer {code} missing: {d:?}");
    }
    assert!(d
        .diameter
        .iter()
        .filter(|m| m.code == 303)
        .all(|m| m.app == 16_777_216));
    assert!(
        d.sip_methods.iter().filter(|m| *m == "REGISTER").count() >= 4,
        "{d:?}"
    );
    assert!(
        d.sip_status.contains(&401) && d.sip_status.contains(&200),
        "{d:?}"
    );
}

#[test]
fn kamailio_resync_with_auts_reaches_hss() {
    if !testkit::kamailio::require_scscf() {
        return;
    }
    use base64::Engine;
    use common::raw_ue::{header, param, RawUe};
    let sub = subscriber();
    let hss = StubHss::start(sub.clone(), false);
    let mut k = Kamailio::start(ScscfConfig::new(hss.port)).unwrap();
    k.wait_hss_open(Duration::from_secs(15)).unwrap();
    let to = k.sip_addr();
    let mut ue = RawUe::new(&sub.impi, &sub.impu, "ims.lab");
    // As if relayed by a P-CSCF: the S-CSCF must store and echo the Path.
    ue.extra_headers = "Path: <sip:term@pcscf.ims.lab;lr>\r\nSupported: path\r\n".to_string();

    let r = ue.register(to, &ue.empty_auth());
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let nonce = param(header(&r, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let rand_autn = base64::engine::general_purpose::STANDARD
        .decode(&nonce)
        .unwrap();
    let rand: [u8; 16] = rand_autn[..16].try_into().unwrap();

    // Pretend the ISIM is ahead: AUTS = SQN_MS ^ AK* || MAC-S (TS 33.102 §6.3.3).
    let sqn_ms: [u8; 6] = [0, 0, 0, 0x10, 0, 0];
    let mut mil = milenage::Milenage::new_with_op(sub.k, sub.op);
    let ak_s = mil.f5star(&rand);
    let mac_s = mil.f1star(&rand, &sqn_ms, &[0, 0]);
    let mut auts = Vec::new();
    for i in 0..6 {
        auts.push(sqn_ms[i] ^ ak_s[i]);
    }
    auts.extend_from_slice(&mac_s);
    // ims_auth stores the vector only after sending the 401.
    std::thread::sleep(Duration::from_millis(300));
    let r = ue.register(to, &ue.auts_auth(&nonce, &auts));
    assert!(
        r.starts_with("SIP/2.0 401"),
        "resync must re-challenge: {r}\n{}",
        k.log()
    );
    {
        let seen = hss.seen.lock().unwrap();
        assert_eq!(seen.resync_auths.len(), 1, "{seen:?}");
        assert_eq!(
            seen.resync_auths[0][..16],
            rand,
            "RAND of the old challenge"
        );
        assert_eq!(seen.resync_auths[0][16..], auts[..], "AUTS as sent");
    }

    // Answer the fresh challenge correctly: 200.
    let nonce = param(header(&r, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let rand_autn = base64::engine::general_purpose::STANDARD
        .decode(&nonce)
        .unwrap();
    let rand: [u8; 16] = rand_autn[..16].try_into().unwrap();
    let (res, _, _, _) = mil.f2345(&rand);
    std::thread::sleep(Duration::from_millis(300));
    let r = ue.register(to, &ue.res_auth(&nonce, &res));
    assert!(r.starts_with("SIP/2.0 200"), "{r}\n{}", k.log());
    assert!(
        header(&r, "Path").is_some_and(|p| p.contains("pcscf.ims.lab")),
        "{r}"
    );
    assert!(header(&r, "Service-Route").is_some(), "{r}");
    assert!(
        header(&r, "P-Associated-URI").is_some_and(|p| p.contains(&sub.impu)),
        "{r}"
    );

    // And a wrong RES gets 403.
    let r = ue.register(to, &ue.empty_auth());
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let nonce = param(header(&r, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = ue.register(to, &ue.res_auth(&nonce, b"wrongres"));
    assert!(r.starts_with("SIP/2.0 403"), "{r}\n{}", k.log());
}

#[test]
fn kamailio_fails_clearly_when_its_port_is_taken() {
    if !testkit::kamailio::require_scscf() {
        return;
    }
    // Occupy the SIP port (UDP) ourselves: an explicit port is not retried.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = ScscfConfig::new(testkit::free_port());
    cfg.sip_port = taken.local_addr().unwrap().port();
    let err = Kamailio::start(cfg).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, testkit::Error::Exited { .. }), "{msg}");
    assert!(msg.contains("already in use"), "{msg}");
}
