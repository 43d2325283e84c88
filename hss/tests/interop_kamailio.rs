//! Interop with a real S-CSCF: Kamailio 5.6.3 (`ims_auth`, `ims_registrar_scscf`, cdp) talks
//! Cx to the `hss` binary while SIPp registers with AKAv1-MD5 (401, then 200: MAR and SAR),
//! re-registers and deregisters; tshark dissects the capture with zero malformed packets.
//! Skipped (loudly) without kamailio/sipp/tshark unless CI=true, where it fails instead.
use hss::store::{Durability, Impu, RegState, Store, Subscriber};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::kamailio::{Kamailio, ScscfConfig};
use testkit::sipp::AkaUe;

struct Hss(Child);
impl Drop for Hss {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn h16(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn kamailio_scscf_registers_sipp_ue_against_our_hss() {
    if !testkit::kamailio::require_scscf()
        || testkit::require_bin("sipp").is_none()
        || testkit::require_bin("tshark").is_none()
        || !testkit::require_root()
    {
        return;
    }
    use testkit::tshark::{dissect, Capture, DecodeAs, DissectOptions};
    // TS 35.208 test set 1; AMF with the separation bit as on real cards.
    let (k, op, amf) = (
        h16("465b5ce8b199b49faa5f0a2ee238a6bc"),
        h16("cdc202d5123e20f62b6d676ac72cb318"),
        [0x80, 0x00],
    );
    let impi = "001010000000001@ims.lab";
    let impu = "sip:001010000000001@ims.lab";
    let dir = testkit::TestDir::new("hss-kam").unwrap();
    let db = dir.join("hss.db");
    Store::open(&db, Durability::Full)
        .unwrap()
        .add(&Subscriber {
            imsi: Some("001010000000001".into()),
            msisdn: Some("491701234567".into()),
            amf,
            impus: vec![Impu::new(impu), Impu::new("tel:+491701234567")],
            ..Subscriber::new(impi, k, akav1::opc_from_op(&k, &op))
        })
        .unwrap();
    let port = testkit::free_port();
    let conf = dir.join("hss.toml");
    std::fs::write(
        &conf,
        format!(
            "origin_host = \"hss.ims.lab\"\nrealm = \"ims.lab\"\n[diameter]\nlisten = \"127.0.0.1:{port}\"\nallowed_peers = [\"scscf.ims.lab\"]\n[store]\npath = \"{}\"\n[rest]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0k\"\n",
            db.display()
        ),
    )
    .unwrap();
    let mut cfg = ScscfConfig::new(port);
    cfg.sip_port = testkit::free_port();
    let pcap = dir.join("cx.pcap");
    let cap = Capture::loopback(&[port, cfg.sip_port], &pcap).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_hss"))
        .args(["-c", conf.to_str().unwrap(), "run"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _hss = Hss(child);
    assert!(line.starts_with("hss ready"), "{line}");
    let rest: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rest="))
        .unwrap()
        .parse()
        .unwrap();

    let mut kam = Kamailio::start(cfg).unwrap();
    kam.wait_hss_open(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}\n{}", kam.log()));
    let mut ue = AkaUe::new(impi, impu, "ims.lab", k, op, amf);
    let (out, _) = ue.register(kam.sip_addr(), 600).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), kam.log());
    assert_eq!(
        out.received_status_codes().last(),
        Some(&200),
        "{}",
        out.describe()
    );
    let s = Store::open(&db, Durability::Full)
        .unwrap()
        .get(impi)
        .unwrap()
        .unwrap();
    assert_eq!(s.reg_state, RegState::Registered, "{s:?}");
    assert_eq!(s.scscf_name.as_deref(), Some(kam.scscf_uri().as_str()));
    assert!(s.sqn > 0);

    let (out, _) = ue.reregister(kam.sip_addr(), 600).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), kam.log());

    // HSS-initiated administrative deregistration (RTR), answered by Kamailio's
    // ims_registrar_scscf over the connection it opened. (Kamailio 5.6.3 logs "unknown request
    // for Cx/Dx command 305" and never answers a PPR, so PPR is covered by the loopback test.)
    let (status, body) = http(rest, "POST", &format!("/api/v1/subscribers/{impi}/rtr"));
    assert!(
        status == 200 && body.contains("\"result\":2001"),
        "{status} {body}\n{}",
        kam.log()
    );
    let s = Store::open(&db, Durability::Full)
        .unwrap()
        .get(impi)
        .unwrap()
        .unwrap();
    assert_eq!(s.reg_state, RegState::NotRegistered, "{s:?}");

    // Register again, then the UE deregisters itself (SAR USER_DEREGISTRATION).
    let (out, _) = ue.register(kam.sip_addr(), 600).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), kam.log());
    let (out, _) = ue.deregister(kam.sip_addr()).unwrap();
    assert!(out.success, "{}\n{}", out.describe(), kam.log());
    let s = Store::open(&db, Durability::Full)
        .unwrap()
        .get(impi)
        .unwrap()
        .unwrap();
    assert_eq!(s.reg_state, RegState::NotRegistered, "{s:?}\n{}", kam.log());

    let pcap = cap.stop().unwrap();
    let d = dissect(
        &pcap,
        &DissectOptions {
            decode_as: vec![
                DecodeAs::diameter_tcp(port),
                DecodeAs::sip_udp(kam.config().sip_port),
            ],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(d.malformed, 0, "{d:?}");
    let (req, ans) = (d.diameter_codes(true), d.diameter_codes(false));
    for code in [257, 303, 301, 304] {
        assert!(
            req.contains(&code) && ans.contains(&code),
            "Cx command {code} missing: {d:?}"
        );
    }
    assert!(
        d.sip_status.contains(&401) && d.sip_status.contains(&200),
        "{d:?}"
    );
}

/// A minimal blocking HTTP/1.1 client for the REST API.
fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: hss\r\nAuthorization: Bearer t0k\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Our MAA against an independent Milenage (osmo-auc-gen): same RAND and SQN give the same
/// AUTN, XRES, CK and IK.
#[test]
fn maa_vectors_match_osmo_auc_gen() {
    if testkit::require_bin("osmo-auc-gen").is_none() {
        return;
    }
    use diameter::{app, avp, cmd, Avp, FindAvp, Message};
    use hss::cx::{CxConfig, CxHandler};
    let (k, op) = (
        h16("465b5ce8b199b49faa5f0a2ee238a6bc"),
        h16("cdc202d5123e20f62b6d676ac72cb318"),
    );
    let dir = testkit::TestDir::new("hss-osmo").unwrap();
    let db = dir.join("hss.db");
    let n = hss::provision::NewSubscriber {
        imsi: Some("001010000000001".into()),
        k: hex::encode(k),
        op: Some(hex::encode(op)),
        ..Default::default()
    };
    let mut s = Store::open(&db, Durability::Normal).unwrap();
    let sub = n.build(&Default::default()).unwrap();
    s.add(&sub).unwrap();
    let mut sqn_store = Store::open(&db, Durability::Normal).unwrap();
    let cx = CxHandler::new(
        CxConfig::default(),
        std::sync::Arc::new(std::sync::Mutex::new(s)),
        Default::default(),
    );
    let mar = Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::USER_NAME, &sub.impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, &sub.impus[0].uri))
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 3));
    let policy = akav1::SqnPolicy::default();
    let a = cx.handle_blocking(&mar, &mut sqn_store, &policy, 1);
    for (i, item) in a.find_all(avp::SIP_AUTH_DATA_ITEM).enumerate() {
        let g = item.as_grouped().unwrap();
        let au = g.get_octets(avp::SIP_AUTHENTICATE).unwrap();
        let rand: [u8; 16] = au[..16].try_into().unwrap();
        let sqn = policy.compose(i as u64 + 1, 1).unwrap().value();
        let v = testkit::osmo::run(&testkit::osmo::AucInput {
            k,
            op: testkit::osmo::OpKind::Op(op),
            amf: [0x80, 0x00],
            sqn,
            rand,
            auts: None,
            ind: None,
        })
        .unwrap();
        assert_eq!(&v.autn[..], &au[16..], "AUTN for SQN {sqn}");
        assert_eq!(v.res, g.get_octets(avp::SIP_AUTHORIZATION).unwrap());
        assert_eq!(&v.ck[..], g.get_octets(avp::CONFIDENTIALITY_KEY).unwrap());
        assert_eq!(&v.ik[..], g.get_octets(avp::INTEGRITY_KEY).unwrap());
    }
}
