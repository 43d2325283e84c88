//! `imslab netns`: the lab as separate hosts. The demo registers, calls and messages between
//! UEs in their own namespaces and the P-CSCF in the core's, its capture verifies, and
//! nothing is left behind; `up` leaves the namespaces for `down` to remove, and refuses
//! to build over a lab that exists. Needs root and iproute2 (SKIPPED locally without them,
//! FAILED under `CI=true`); tshark for the capture check.

mod common;

use common::{imslab, text};
use std::process::Command;

fn namespaces_of(name: &str) -> Vec<String> {
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{name}-")))
        .map(str::to_string)
        .collect()
}

fn ready() -> bool {
    testkit::require_root() && testkit::require_bin("ip").is_some()
}

/// Each test its own lab name and /24, so they may run side by side.
fn name(tag: &str) -> String {
    format!("t{}{tag}", std::process::id() % 10000)
}

#[test]
fn the_netns_demo_passes_verifies_its_capture_and_leaves_nothing() {
    if !ready() {
        return;
    }
    let name = name("d");
    let dir = testkit::TestDir::new("netns-demo").unwrap();
    let out = dir.path().join("out");
    let o = imslab(&[
        "netns",
        "demo",
        "--name",
        &name,
        "--subnet",
        "10.78.1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    for want in [
        "UE1 10.78.1.11",
        "registered in",
        "over IPsec",
        "UE1 → UE2 call answered",
        "MESSAGE delivered (200)",
        "[ok] P-CSCF: 2 registrations, 2 deregistrations, 0 SA sets left",
        "demo passed",
    ] {
        assert!(s.contains(want), "{want:?} missing:\n{s}");
    }
    if testkit::require_bin("tshark").is_some() {
        assert!(
            s.contains("verify: verdict: the capture shows a correct flow"),
            "{s}"
        );
    }
    assert!(out.join("netns.pcap").exists());
    assert!(
        namespaces_of(&name).is_empty(),
        "left behind: {:?}",
        namespaces_of(&name)
    );
}

#[test]
fn up_leaves_the_lab_for_down_and_refuses_to_build_twice() {
    if !ready() {
        return;
    }
    let name = name("u");
    let up = imslab(&["netns", "up", "--name", &name, "--subnet", "10.78.2"]);
    assert!(up.status.success(), "{}", text(&up));
    let mut ns = namespaces_of(&name);
    ns.sort();
    assert_eq!(
        ns,
        [
            format!("{name}-as"),
            format!("{name}-core"),
            format!("{name}-ue1"),
            format!("{name}-ue2")
        ]
    );
    // The UE namespace reaches the core over the bridge.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{name}-ue1"),
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.78.2.1",
        ])
        .output();
    if let Ok(p) = ping {
        // ping may be missing on a minimal machine; when present it must succeed.
        if p.status.code() != Some(127)
            && !String::from_utf8_lossy(&p.stderr).contains("No such file")
        {
            assert!(p.status.success(), "{}", text(&p));
        }
    }
    let again = imslab(&["netns", "up", "--name", &name, "--subnet", "10.78.2"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("exists already"), "{}", text(&again));
    // A process left running inside is ended by down.
    let sleeper = Command::new("ip")
        .args(["netns", "exec", &format!("{name}-core"), "sleep", "60"])
        .spawn()
        .unwrap();
    let down = imslab(&["netns", "down", "--name", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(text(&down).contains("removed"), "{}", text(&down));
    assert!(namespaces_of(&name).is_empty());
    let mut sleeper = sleeper;
    let waited = std::time::Instant::now();
    while sleeper.try_wait().unwrap().is_none() {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(10),
            "down left a process running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let none = imslab(&["netns", "down", "--name", &name]);
    assert!(text(&none).contains("no lab named"), "{}", text(&none));
}
