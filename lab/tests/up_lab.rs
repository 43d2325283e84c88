//! `imslab up`: a real lab's core from one lab.toml. It checks before it starts (an address
//! that is not this host's fails, naming it), imports the SIM CSV, and a UE with that card's
//! keys registers against it (over IPsec as root) and deregisters; SIGTERM stops it
//! cleanly.

mod common;

use common::{imslab, text};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn lab_toml(dir: &testkit::TestDir, address: &str, sip: u16, dia: u16, policy: &str) -> String {
    let s = lab::net::subscriber(0);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let csv = dir
        .write(
            "sims.csv",
            format!(
                "ICCID,IMSI,Ki,OPc,MSISDN,ADM1\n8988211000000000001,{},{},{},{},12345678\n",
                s.imsi,
                hex(&s.k),
                hex(&s.opc),
                s.tel.trim_start_matches("tel:+")
            ),
        )
        .unwrap();
    format!(
        "[network]\npcscf_address = \"{address}\"\nsip_port = {sip}\ndiameter_port = {dia}\n\
         [subscribers]\ncsv = \"{}\"\nstore = \"{}\"\n[ipsec]\npolicy = \"{policy}\"\n\
         [out]\ndir = \"{}\"\n",
        csv.display(),
        dir.join("hss.db").display(),
        dir.join("out").display()
    )
}

#[test]
fn check_names_an_address_that_is_not_ours() {
    let dir = testkit::TestDir::new("up-check").unwrap();
    let cfg = dir
        .write(
            "lab.toml",
            lab_toml(&dir, "192.0.2.77", free_port(), free_port(), "off"),
        )
        .unwrap();
    let o = imslab(&["up", "--config", cfg.to_str().unwrap(), "--check"]);
    let s = text(&o);
    assert!(!o.status.success(), "{s}");
    assert!(
        s.contains("[FAIL] 192.0.2.77 is not an address of this host"),
        "{s}"
    );
    assert!(s.contains("1 subscriber(s)"), "{s}");
    let ok = dir
        .write(
            "ok.toml",
            lab_toml(&dir, "127.0.0.1", free_port(), free_port(), "off"),
        )
        .unwrap();
    let o = imslab(&["up", "--config", ok.to_str().unwrap(), "--check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("# pcscf.toml"), "{}", text(&o));
}

#[test]
fn a_card_from_the_csv_registers_and_sigterm_stops_the_core() {
    let root = testkit::require_root();
    let policy = if root { "required" } else { "off" };
    let dir = testkit::TestDir::new("up-run").unwrap();
    let sip = free_port();
    let cfg = dir
        .write(
            "lab.toml",
            lab_toml(&dir, "127.0.0.1", sip, free_port(), policy),
        )
        .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imslab"));
    cmd.args(["up", "--config", cfg.to_str().unwrap()]);
    let mut core =
        testkit::process::ChildGuard::spawn("imslab up", &mut cmd, &dir.join("up.log")).unwrap();
    core.wait_for_log("imslab up: ready", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}: {}", core.log()));
    let log = core.log();
    assert!(log.contains("1 row(s) of the SIM CSV, 1 added"), "{log}");
    assert!(log.contains("P-CSCF address for the IMS APN"), "{log}");

    let s = lab::net::subscriber(0);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let pcscf = format!("127.0.0.1:{sip}");
    let (k, opc) = (hex(&s.k), hex(&s.opc));
    let mut args = vec![
        "ue",
        "register",
        "--pcscf",
        &pcscf,
        "--local-ip",
        "127.0.0.9",
        "--impi",
        &s.impi,
        "--impu",
        &s.impu,
        "--domain",
        lab::net::DOMAIN,
        "-k",
        &k,
        "--opc",
        &opc,
        "--then",
        "deregister",
    ];
    if !root {
        args.extend(["--ipsec", "off"]);
    }
    let ue = imslab(&args);
    let out = text(&ue);
    assert!(ue.status.success(), "{out}\ncore:\n{}", core.log());
    assert!(out.contains("registered"), "{out}");
    if root {
        assert!(out.contains("IPsec") || out.contains("🔒"), "{out}");
    }
    core.signal_group(libc::SIGTERM);
    let st = core.wait_timeout(Duration::from_secs(15)).unwrap();
    assert!(st.success(), "{}", core.log());
    assert!(core.log().contains("imslab up: stopped"), "{}", core.log());
}
