//! Smoke test of `imslab bench cx` (issue 10's HSS benchmark), so that the harness cannot
//! rot: 300 subscribers provisioned through the `hss` binary, 400 MAR + SAR registrations at
//! 200/s over two connections. It checks that every registration completes, that the
//! figures are filled in and that no SQN is issued twice; it times nothing (the figures come
//! from `imslab bench cx`).
//!
//! Needs the `hss` binary: the one cargo built next to this test, else it is built here.

use std::path::PathBuf;
use std::process::Command;

use lab::bench::cx::{cx_report, cx_run, CxOptions};

/// `target/<profile>/hss`, built with this test's profile when missing.
fn hss_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/bench_cx-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable inside target/<profile>/deps")
        .to_path_buf();
    let bin = profile_dir.join("hss");
    if !bin.is_file() {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(p) => p.to_string(),
            None => "dev".to_string(),
        };
        let target_dir = profile_dir.parent().expect("target dir");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "hss", "--bin", "hss", "--profile"])
            .arg(&profile)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p hss failed");
    }
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

#[test]
fn four_hundred_registrations_at_200_per_second() {
    let opts = CxOptions {
        hss: hss_bin(),
        subscribers: 300,
        rates: vec![200],
        seconds: 2,
        max_registrations: 400,
        connections: 2,
        durability: "full".into(),
    };
    let steps = cx_run(&opts).expect("bench cx runs");
    let report = cx_report(&opts, &steps);
    eprintln!("{report}");
    assert_eq!(steps.len(), 1);
    let s = &steps[0];
    assert_eq!(s.started, 400, "{report}");
    assert_eq!(s.completed, 400, "{report}");
    assert_eq!(s.maa.get(&2001), Some(&400), "{report}");
    assert_eq!(s.saa.get(&2001), Some(&400), "{report}");
    assert_eq!(
        (s.timeouts, s.errors, s.duplicate_sqns),
        (0, 0, 0),
        "{report}"
    );
    assert_eq!(s.answers(3004), 0);
    assert!(s.hss_cpu > 0.0, "HSS CPU read from /proc: {report}");
    assert!(
        s.p50 > std::time::Duration::ZERO && s.p99 >= s.p50,
        "{report}"
    );
    assert!(report.contains("HSS µs/reg"), "{report}");
}
