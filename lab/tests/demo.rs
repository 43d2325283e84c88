//! `imslab demo`, the README's first command, end to end: it must pass, and tshark must
//! dissect its capture with zero malformed packets and every ESP packet decrypted with a
//! correct ICV using the esp_sa file it wrote.

use std::path::Path;
use std::process::Command;
use testkit::tshark::{dissect, DecodeAs, DissectOptions};

/// Demos bind the UEs' 127.0.0.x:5060; two at once in this binary would collide.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_demo(out: &Path, extra: &[&str]) -> String {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let o = Command::new(env!("CARGO_BIN_EXE_imslab"))
        .arg("demo")
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run imslab demo");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "imslab demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("demo passed"), "{stdout}");
    stdout
}

/// The demo's RTP lines, `UE1 → UE2: 151 sent, 150 received (99.3 %), … frames ok 150 bad 0`:
/// (sent, received, frames ok, frames bad) per direction.
fn rtp_counts(stdout: &str) -> Vec<(u32, u32, u32, u32)> {
    stdout
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("UE1 → UE2:") || l.trim_start().starts_with("UE2 → UE1:")
        })
        .map(|l| {
            let n = |after: &str| -> u32 {
                let words: Vec<&str> = l.split_whitespace().collect();
                let i = words
                    .windows(2)
                    .position(|w| w[1].trim_end_matches(',') == after)
                    .unwrap_or_else(|| panic!("{after:?} in {l:?}"));
                words[i].parse().unwrap()
            };
            let ok = l.split("frames ok ").nth(1).unwrap();
            let mut it = ok.split_whitespace();
            let frames_ok: u32 = it.next().unwrap().parse().unwrap();
            let bad: u32 = it.nth(1).unwrap().trim_end_matches(',').parse().unwrap();
            (n("sent"), n("received"), frames_ok, bad)
        })
        .collect()
}

/// The call holds 3 s: ~150 packets each way, at least 80 % of them received, every frame
/// bit-exact.
fn assert_rtp(stdout: &str) {
    let rtp = rtp_counts(stdout);
    assert_eq!(rtp.len(), 2, "both directions reported:\n{stdout}");
    for (sent, received, ok, bad) in rtp {
        assert!(
            (120..=170).contains(&sent),
            "{sent} packets in 3 s:\n{stdout}"
        );
        assert!(received * 5 >= sent * 4, "{received} of {sent}:\n{stdout}");
        assert!(received <= sent);
        assert_eq!((ok, bad), (received, 0), "every frame checked and good");
    }
    // one RTCP report each way, 2.5 s into the 3 s call (RFC 3550 §6.2)
    assert_eq!(
        stdout
            .matches("RTCP sent 1 received 1 (peer reports 0 lost)")
            .count(),
        2,
        "{stdout}"
    );
}

fn diameter_port(out: &Path) -> u16 {
    let t = std::fs::read_to_string(out.join("hss.toml")).unwrap();
    let l = t.lines().find(|l| l.starts_with("listen")).unwrap();
    l.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('"')
        .parse()
        .unwrap()
}

#[test]
fn demo_registers_calls_and_messages_over_ipsec_and_its_capture_decrypts() {
    if !testkit::require_root() || testkit::require_bin("tshark").is_none() {
        return;
    }
    let dir = testkit::TestDir::new("demo").unwrap();
    let out = dir.path().join("out");
    let stdout = run_demo(&out, &["--ues", "2"]);
    assert!(
        stdout.contains("every registration protected by IPsec"),
        "{stdout}"
    );
    // The demo verifies its own capture (`imslab verify`) and shows it.
    assert!(stdout.contains("imslab verify"), "{stdout}");
    assert!(
        stdout.contains("[ok]   expected a call answered and ended"),
        "{stdout}"
    );
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    assert_rtp(&stdout);
    let keys = std::fs::read_to_string(out.join("esp_sa")).unwrap();
    let mut prefs = vec![
        "esp.enable_encryption_decode:TRUE".to_string(),
        "esp.enable_authentication_check:TRUE".to_string(),
    ];
    prefs.extend(
        keys.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| format!("uat:esp_sa:{l}")),
    );
    let d = dissect(
        &out.join("demo.pcap"),
        &DissectOptions {
            decode_as: vec![DecodeAs::diameter_tcp(diameter_port(&out))],
            prefs: prefs.clone(),
            display_filter: None,
        },
    )
    .unwrap();
    assert_eq!(d.malformed, 0, "malformed frames {:?}", d.malformed_frames);
    // Protected: 2 REGISTER + 200 per UE at registration, 2 + 401 + 200 at re-registration,
    // REGISTER + 200 at deregistration, all inside ESP.
    assert!(d.esp_packets >= 2 * 8, "ESP packets: {}", d.esp_packets);
    assert_eq!(d.esp_icv_bad, 0);
    assert_eq!(
        d.esp_icv_good, d.esp_packets,
        "every ICV checked and correct"
    );
    let registers = d.sip_methods.iter().filter(|m| *m == "REGISTER").count();
    assert_eq!(registers, 2 * 5, "REGISTERs seen (decrypted ones included)");
    let challenges = d.sip_status.iter().filter(|c| **c == 401).count();
    assert_eq!(challenges, 4);
    let count = |filter: &str| {
        dissect(
            &out.join("demo.pcap"),
            &DissectOptions {
                decode_as: vec![DecodeAs::diameter_tcp(diameter_port(&out))],
                prefs: prefs.clone(),
                display_filter: Some(filter.to_string()),
            },
        )
        .unwrap()
        .packets
    };
    assert_eq!(
        count("sip.CSeq.method == \"REGISTER\" && sip.Status-Code == 200"),
        6
    );
    // The call (with preconditions: 183, PRACK, UPDATE) and the MESSAGE, each request on
    // both legs of the P-CSCF, all inside ESP.
    for m in ["INVITE", "PRACK", "UPDATE", "ACK", "BYE", "MESSAGE"] {
        let n = count(&format!("esp && sip.Method == \"{m}\""));
        assert!(n >= 2, "{m} inside ESP: {n}");
    }
    assert!(count("esp && sip.Status-Code == 183") >= 2);
    // RTP is plain UDP on the UEs' addresses (its own bearer, not the SAs), both ways
    for (src, dst) in [("127.0.0.2", "127.0.0.3"), ("127.0.0.3", "127.0.0.2")] {
        let n = count(&format!(
            "!esp && udp.port == 40000 && ip.src == {src} && ip.dst == {dst}"
        ));
        assert!(n >= 120, "RTP {src} → {dst} in the capture: {n}");
    }
    // No cleartext SIP to or from a UE after its first 401: outside ESP there is only
    // each UE's first REGISTER and its 401.
    assert_eq!(
        count("sip && !esp"),
        4,
        "cleartext SIP beyond the first exchange"
    );
    let mar = d
        .diameter
        .iter()
        .filter(|m| m.code == 303 && m.request)
        .count();
    let sar = d
        .diameter
        .iter()
        .filter(|m| m.code == 301 && m.request)
        .count();
    assert_eq!(
        (mar, sar),
        (4, 6),
        "Cx: MAR per challenge, SAR per (re/de)registration"
    );
}
#[test]
fn demo_without_ipsec_still_registers() {
    let dir = testkit::TestDir::new("demo-off").unwrap();
    let stdout = run_demo(&dir.path().join("out"), &["--ues", "3", "--ipsec", "off"]);
    assert!(stdout.contains("UE3"), "{stdout}");
    assert!(stdout.contains("no IPsec"), "{stdout}");
    assert_rtp(&stdout);
}
