//! The `appserver` binary's own commands, as a user types them: `config example` parses
//! back with `config check`, `appserver pcap FILE` notifies for the calls of a capture and
//! logs them, and `appserver calls` prints that log.

use std::path::PathBuf;
use std::process::{Command, Output};
use testkit::TestDir;

fn appserver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_appserver"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn config_example_is_a_valid_file() {
    let dir = TestDir::new("appserver-cli").unwrap();
    let ex = appserver(&["config", "example"]);
    assert!(ex.status.success(), "{}", text(&ex));
    let path = dir.write("appserver.toml", &ex.stdout).unwrap();
    let check = appserver(&["config", "check", path.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("[isc]"), "{}", text(&check));
    // A typo is an error that names the key.
    let bad = dir.write("bad.toml", "[isc]\nlisen = 1\n").unwrap();
    let check = appserver(&["config", "check", bad.to_str().unwrap()]);
    assert!(!check.status.success());
    assert!(text(&check).contains("lisen"), "{}", text(&check));
}

#[test]
fn pcap_logs_the_calls_of_a_capture_and_calls_prints_them() {
    let dir = TestDir::new("appserver-cli-pcap").unwrap();
    let pcap = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip-invites.pcap");
    let cfg = dir
        .write(
            "appserver.toml",
            format!(
                "[calllog]\npath = \"{}\"\n[phonebook]\nfile = \"{}\"\n",
                dir.join("calls.db").display(),
                dir.write("book.csv", "+4930123456,Alice Phonebook\n")
                    .unwrap()
                    .display()
            ),
        )
        .unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = appserver(&["-c", cfg, "pcap", pcap.to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        text(&run).contains("sip-invites.pcap: packets"),
        "{}",
        text(&run)
    );
    let calls = appserver(&["-c", cfg, "calls", "--limit", "10"]);
    assert!(calls.status.success(), "{}", text(&calls));
    let out = text(&calls);
    for want in [
        "+4930123456",
        "Alice Phonebook",
        "+4940555666",
        "(withheld)",
    ] {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
}
