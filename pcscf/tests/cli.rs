//! The `pcscf` binary's configuration commands (no sockets, no peers).
use std::process::Command;

fn pcscf(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_pcscf"))
        .args(args)
        .env_remove("PCSCF_CONFIG")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn example_checks_clean_and_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pcscf.toml");
    let (ok, example, err) = pcscf(&["config", "example"]);
    assert!(ok, "{err}");
    std::fs::write(&conf, &example).unwrap();
    let (ok, out, err) = pcscf(&["config", "check", conf.to_str().unwrap()]);
    assert!(ok, "{err}");
    // The effective values, derived defaults filled in.
    assert!(out.contains("advertise = \"127.0.0.1\""), "{out}");
    assert!(
        out.contains("origin_host = \"pcscf.ims.mnc001.mcc001.3gppnetwork.org\""),
        "{out}"
    );
    // -c works as well as the positional FILE.
    let (ok, out2, err) = pcscf(&["-c", conf.to_str().unwrap(), "config", "check"]);
    assert!(ok && out2 == out, "{err}");

    std::fs::write(&conf, "[sip]\nlisten = \"0.0.0.0:5060\"\n").unwrap();
    let (ok, _, err) = pcscf(&["config", "check", conf.to_str().unwrap()]);
    assert!(!ok, "0.0.0.0 without advertise must fail");
    assert!(
        err.contains("sip.advertise") && err.contains("must never end up in an SA"),
        "{err}"
    );
    // Validation runs before anything binds: `run` refuses the same file.
    let (ok, _, err) = pcscf(&["-c", conf.to_str().unwrap()]);
    assert!(!ok && err.contains("sip.advertise"), "{err}");
}
