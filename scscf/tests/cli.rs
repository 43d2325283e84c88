//! The `scscf` binary's command line: `config example` is a valid file for `config check`,
//! and mistakes are named.

mod common;
use common::{run, scscf_bin};

#[test]
fn the_example_passes_config_check_and_shows_derived_defaults() {
    let (ok, example, err) = run(&scscf_bin(), &["config", "example"]);
    assert!(ok, "{err}");
    assert!(
        example.contains("[hss]") && example.contains("[metrics]"),
        "{example}"
    );
    let dir = testkit::TestDir::new("scscf-cli").unwrap();
    let file = dir.write("scscf.toml", &example).unwrap();
    let (ok, effective, err) = run(&scscf_bin(), &["config", "check", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    // Derived defaults are printed filled in.
    assert!(
        effective.contains("origin_host = \"scscf.ims.mnc001.mcc001.3gppnetwork.org\""),
        "{effective}"
    );
    assert!(
        effective.contains("advertise = \"127.0.0.1\""),
        "{effective}"
    );
}

#[test]
fn a_wildcard_listener_without_advertise_is_refused() {
    let dir = testkit::TestDir::new("scscf-cli-bad").unwrap();
    let file = dir
        .write("scscf.toml", "[sip]\nlisten = \"0.0.0.0:6060\"\n")
        .unwrap();
    let (ok, _, err) = run(&scscf_bin(), &["config", "check", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("sip.advertise"), "{err}");
    // `run` refuses it the same way before binding anything.
    let (ok, _, err) = run(&scscf_bin(), &["-c", file.to_str().unwrap(), "run"]);
    assert!(!ok);
    assert!(err.contains("sip.advertise"), "{err}");
}

#[test]
fn help_teaches_the_proxy_setup() {
    let (ok, help, err) = run(&scscf_bin(), &["--help"]);
    assert!(ok, "{err}");
    for needle in [
        "config example",
        "config check",
        "mode = \"proxy\"",
        "RUST_LOG",
    ] {
        assert!(help.contains(needle), "{needle} in\n{help}");
    }
}
