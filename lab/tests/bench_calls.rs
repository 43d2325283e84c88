//! Smoke test of `imslab bench calls` (issue 9's benchmark), so that the harness cannot
//! rot: 50 calls at 20/s from a SIPp UAC to a SIPp UAS, both registered with AKA, through
//! our `pcscf` binary in collapsed mode, and through our `pcscf` in proxy mode in front of
//! the Kamailio S-CSCF when Kamailio is installed. It checks only that every call
//! completes and that the figures are filled in; it times nothing (the figures come from
//! `imslab bench calls`).
//!
//! Needs `sipp` (else SKIPPED, or FAILED under `CI=true`) and the `pcscf` binary: the one
//! cargo built next to this test (`cargo test --workspace`), else it is built here.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lab::bench::{calls_report, calls_run, CallsOptions, System};

/// `target/<profile>/pcscf`, built with this test's profile when missing.
fn pcscf_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/bench_calls-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable inside target/<profile>/deps")
        .to_path_buf();
    let bin = profile_dir.join("pcscf");
    if !bin.is_file() {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(p) => p.to_string(),
            None => "dev".to_string(),
        };
        let target_dir = profile_dir.parent().expect("target dir");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "pcscf", "--bin", "pcscf", "--profile"])
            .arg(&profile)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p pcscf failed");
    }
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

#[test]
fn fifty_calls_at_20_per_second_without_failure() {
    if testkit::require_bin("sipp").is_none() {
        return;
    }
    // Kamailio is optional here (its own tests fail under CI=true when it is missing).
    let kamailio = testkit::kamailio::scscf_available();
    if !kamailio {
        eprintln!("bench_calls: kamailio not installed, checking our core only");
    }
    let opts = CallsOptions {
        rates: vec![20],
        seconds: 3,
        max_calls: 50,
        hold: Duration::ZERO,
        pcscf: pcscf_bin(),
        kamailio,
        kamailio_children: 2,
    };
    let steps = calls_run(&opts).expect("bench runs");
    let report = calls_report(&opts, &steps);
    eprintln!("{report}");
    let systems: &[System] = if kamailio {
        &[System::Ours, System::Kamailio]
    } else {
        &[System::Ours]
    };
    assert_eq!(steps.len(), systems.len(), "{report}");
    for (s, want) in steps.iter().zip(systems) {
        assert_eq!(s.system, *want, "{report}");
        assert_eq!(s.calls, 50, "{report}");
        assert_eq!((s.ok, s.failed), (50, 0), "{report}");
        // Every call's INVITE → 200 was logged and measured.
        assert!(s.p50 > Duration::ZERO && s.p99 >= s.p50, "{report}");
        assert!(s.achieved > 0.0, "{report}");
    }
}
