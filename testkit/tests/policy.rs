//! The requirement helpers on this machine (root, namespaces, binaries).

#[test]
fn netns_probe_cleans_up() {
    if !testkit::require_netns() {
        return;
    }
    // The probe namespace must be gone again.
    let out = std::process::Command::new(testkit::find_bin("ip").unwrap())
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(!list.contains("tk-probe-"), "{list}");
}

#[test]
fn finds_the_real_peers_or_applies_policy() {
    for bin in [
        "kamailio",
        "sipp",
        "tshark",
        "freeDiameterd",
        "osmo-auc-gen",
    ] {
        if let Some(p) = testkit::require_bin(bin) {
            assert!(p.is_absolute(), "{}", p.display());
        }
    }
}
