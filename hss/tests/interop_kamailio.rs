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
            impi: impi.into(),
            imsi: Some("001010000000001".into()),
            iccid: None,
            msisdn: Some("491701234567".into()),
            k,
            opc: akav1::opc_from_op(&k, &op),
            amf,
            sqn: 0,
            impus: vec![
                Impu {
                    uri: impu.into(),
                    irs: 0,
                    barred: false,
                    display_name: None,
                },
                Impu {
                    uri: "tel:+491701234567".into(),
                    irs: 0,
                    barred: false,
                    display_name: None,
                },
            ],
            ifcs: vec![],
            profile: None,
            shared_ifc_set_ids: vec![],
            reg_state: RegState::NotRegistered,
            scscf_name: None,
            scscf_host: None,
            scscf_realm: None,
        })
        .unwrap();
    let port = testkit::free_port();
    let conf = dir.join("hss.toml");
    std::fs::write(
        &conf,
        format!(
            "origin_host = \"hss.ims.lab\"\nrealm = \"ims.lab\"\n[diameter]\nlisten = \"127.0.0.1:{port}\"\nallowed_peers = [\"scscf.ims.lab\"]\n[store]\npath = \"{}\"\n",
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
        .env("HSS_LOG", "info")
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
    for code in [257, 303, 301] {
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
