//! The `hss` binary's provisioning commands.
use std::process::Command;

fn hss(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_hss"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env("RUST_LOG", "error")
        .env_remove("HSS_CONFIG")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn add_show_import_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let k = "465B5CE8B199B49FAA5F0A2EE238A6BC";
    let (ok, out, err) = hss(
        &db,
        &[
            "subscriber",
            "add",
            "--imsi",
            "001010000000001",
            "--ki",
            k,
            "--op",
            "CDC202D5123E20F62B6D676AC72CB318",
            "--msisdn",
            "+491701234567",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        !out.to_lowercase().contains(&k.to_lowercase()),
        "K printed without --show-secrets"
    );
    let (ok, out, _) = hss(&db, &["subscriber", "show", "tel:+491701234567"]);
    assert!(ok && out.contains("********") && !out.contains("cd63cb71954a9f4e48a5994e37a02baf"));
    let (ok, out, _) = hss(
        &db,
        &["subscriber", "show", "001010000000001", "--show-secrets"],
    );
    assert!(
        ok && out.contains("cd63cb71954a9f4e48a5994e37a02baf"),
        "OPc from OP: {out}"
    );
    let csv = dir.path().join("cards.csv");
    std::fs::write(&csv, "IMSI,ICCID,KI,OPC,ADM1\n001010000000002,8988,00112233445566778899aabbccddeeff,00112233445566778899aabbccddeeff,1234\n").unwrap();
    let (ok, out, err) = hss(&db, &["subscriber", "import", csv.to_str().unwrap()]);
    assert!(ok && out.contains("imported 1 new"), "{out}{err}");
    let (ok, _, err) = hss(&db, &["subscriber", "import", csv.to_str().unwrap()]);
    assert!(!ok && err.contains("--update"), "{err}");
    let (ok, out, _) = hss(
        &db,
        &["subscriber", "import", csv.to_str().unwrap(), "--update"],
    );
    assert!(ok && out.contains("1 updated"));
    let (_, out, _) = hss(&db, &["subscriber", "list"]);
    assert_eq!(out.lines().count(), 2);
    let (ok, _, _) = hss(&db, &["subscriber", "delete", "001010000000002"]);
    assert!(ok);
    let (ok, _, err) = hss(&db, &["subscriber", "show", "001010000000002"]);
    assert!(!ok && err.contains("no subscriber"));
    let (ok, out, err) = hss(
        &db,
        &[
            "subscriber",
            "add",
            "--impi",
            "bob@ims.lab",
            "--ki",
            k,
            "--opc",
            k,
            "--impu",
            "sip:bob@ims.lab",
            "--impu",
            "sip:ops@ims.lab;irs=1;barred",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("\"barred\": true") && out.contains("\"irs\": 1"),
        "{out}"
    );
    let (ok, _, err) = hss(
        &db,
        &[
            "subscriber",
            "add",
            "--impi",
            "x@y",
            "--ki",
            k,
            "--opc",
            k,
            "--impu",
            "sip:x@y;bogus",
        ],
    );
    assert!(!ok && err.contains("bogus"), "{err}");
    let (ok, _, err) = hss(
        &db,
        &["subscriber", "add", "--imsi", "1", "--ki", "xx", "--opc", k],
    );
    assert!(!ok && err.contains("k:"), "{err}");
}

#[test]
fn config_example_is_valid_and_help_teaches() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let (ok, example, _) = hss(&db, &["config", "example"]);
    assert!(ok);
    let conf = dir.path().join("hss.toml");
    std::fs::write(&conf, &example).unwrap();
    let (ok, out, err) = hss(&db, &["-c", conf.to_str().unwrap(), "config", "check"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("hss.ims.mnc001.mcc001.3gppnetwork.org"),
        "{out}"
    );
    // The file may also be named after `check`; the REST token is never printed.
    std::fs::write(
        &conf,
        "[rest]\nlisten = \"127.0.0.1:1\"\ntoken = \"s3cr3t-t0ken\"\n",
    )
    .unwrap();
    let (ok, out, err) = hss(&db, &["config", "check", conf.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("token = \"<redacted>\"") && !out.contains("s3cr3t"),
        "{out}"
    );
    std::fs::write(&conf, "[aka]\nind = 99\n").unwrap();
    let (ok, _, err) = hss(&db, &["config", "check", conf.to_str().unwrap()]);
    assert!(!ok && err.contains("aka.ind"), "{err}");
    let (ok, out, _) = hss(&db, &["--help"]);
    assert!(ok && out.contains("hss ready") && out.contains("subscriber import"));
}
