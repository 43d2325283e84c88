//! `imslab verify` on the demo's own capture: with the demo's keys it passes and shows the
//! registration and call ladder; with one key altered the ESP check fails; without keys
//! the registrations cannot be followed and it fails too. Needs root (the demo's capture
//! and userspace ESP) and tshark; without them SKIPPED (FAILED when `CI=true`).

use std::path::Path;
mod common;

use common::{imslab, text};

fn diameter_port(out: &Path) -> String {
    let t = std::fs::read_to_string(out.join("hss.toml")).expect("demo wrote hss.toml");
    let l = t
        .lines()
        .find(|l| l.starts_with("listen"))
        .expect("hss.toml has listen");
    l.rsplit(':')
        .next()
        .expect("listen has a port")
        .trim_end_matches('"')
        .to_string()
}

#[test]
fn verify_passes_the_demo_capture_and_fails_a_wrong_key() {
    if !testkit::require_root() || testkit::require_bin("tshark").is_none() {
        return;
    }
    let dir = testkit::TestDir::new("verify").unwrap();
    let out = dir.path().join("out");
    let demo = imslab(&["demo", "--out", out.to_str().unwrap()]);
    assert!(demo.status.success(), "demo failed:\n{}", text(&demo));
    let pcap = out.join("demo.pcap");
    let keys = out.join("esp_sa");
    let port = diameter_port(&out);
    let args = |keys: &Path| {
        vec![
            "verify".to_string(),
            pcap.display().to_string(),
            "--keys".into(),
            keys.display().to_string(),
            "--diameter-port".into(),
            port.clone(),
            "--expect".into(),
            "register,call,message,ipsec".into(),
        ]
    };
    let ok = imslab(&args(&keys));
    let s = text(&ok);
    assert!(ok.status.success(), "{s}");
    for want in [
        "verdict: the capture shows a correct flow",
        "every one decrypted with a good ICV",
        "2 UE(s): challenged (401)",
        "1 call(s) answered, ACKed, ended with BYE/200",
        "4 MAR",
        "6 SAR",
    ] {
        assert!(s.contains(want), "{want:?} missing from:\n{s}");
    }
    for step in ["INVITE", "PRACK", "UPDATE", "ACK", "BYE", "MESSAGE"] {
        assert!(
            s.lines().any(|l| l.contains(step) && l.contains('🔒')),
            "{step} not in the ladder inside ESP:\n{s}"
        );
    }

    // One authentication key altered: every frame of that SA fails its ICV.
    let original = std::fs::read_to_string(&keys).unwrap();
    let line = original
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("HMAC"))
        .expect("a keyed SA");
    let auth = line
        .rsplit(',')
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let flipped = format!(
        "0x{}{}",
        if auth[2..3] == *"0" { "1" } else { "0" },
        &auth[3..]
    );
    let bad_keys = dir.path().join("esp_sa.bad");
    std::fs::write(&bad_keys, original.replacen(&auth, &flipped, 1)).unwrap();
    let bad = imslab(&args(&bad_keys));
    let s = text(&bad);
    assert!(!bad.status.success(), "a wrong key must fail:\n{s}");
    assert!(s.contains("[FAIL] ESP: bad ICV"), "{s}");

    // No keys at all: nothing inside ESP can be read.
    let none = imslab(&["verify", pcap.to_str().unwrap(), "--quiet"]);
    let s = text(&none);
    assert!(!none.status.success(), "{s}");
    assert!(s.contains("no key for SPI"), "{s}");
}

#[test]
fn verify_explains_a_missing_capture() {
    let o = imslab(&["verify", "/nonexistent/capture.pcap"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("/nonexistent/capture.pcap"),
        "{}",
        text(&o)
    );
}

/// The captures docs/call-flows.md explains still verify with their keys (tshark needed,
/// not root).
#[test]
fn the_captures_in_the_docs_verify() {
    if testkit::require_bin("tshark").is_none() {
        return;
    }
    let flows = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/flows");
    for (pcap, keys, extra) in [
        ("demo.pcap", "demo.esp_sa", vec!["--diameter-port", "36337"]),
        ("netns.pcap", "netns.esp_sa", vec![]),
    ] {
        let pcap = flows.join(pcap);
        let keys = flows.join(keys);
        let mut args = vec![
            "verify",
            pcap.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
            "--expect",
            "register,call,message,ipsec",
            "--quiet",
        ];
        args.extend(extra);
        let o = imslab(&args);
        assert!(o.status.success(), "{}: {}", pcap.display(), text(&o));
    }
}
