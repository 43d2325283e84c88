//! `imslab aka` against an independent implementation: osmo-auc-gen (libosmocore-utils).
//! Random K/OP/OPc/SQN/AMF/RAND; every printed value must agree.

use rand::{Rng, SeedableRng};
use std::process::Command;
use testkit::osmo::{self, AucInput, OpKind};

fn imslab(args: &[String]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imslab"))
        .args(args)
        .output()
        .expect("run imslab");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of `name:` in imslab's `name: value` output (first word).
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().split(' ').next().unwrap_or(""))
        .unwrap_or_else(|| panic!("no {name} in imslab output:\n{out}"))
}

fn authorization(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Authorization:"))
        .unwrap_or_else(|| panic!("no Authorization in:\n{out}"))
        .trim()
        .to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn key_args(k: &[u8; 16], op: &OpKind) -> Vec<String> {
    let mut a = vec!["-k".to_string(), hex(k)];
    match op {
        OpKind::Op(op) => a.extend(["--op".into(), hex(op)]),
        OpKind::Opc(opc) => a.extend(["--opc".into(), hex(opc)]),
    }
    a
}

/// Each case runs four processes; 150 cases cover OP and OPc, all AMF bits, the whole SQN
/// range and every IND slot in a few seconds.
const CASES: usize = 150;

#[test]
fn vector_and_resync_match_osmo_auc_gen_on_random_inputs() {
    if testkit::require_bin("osmo-auc-gen").is_none() {
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(35_206);
    for case in 0..CASES {
        let k: [u8; 16] = rng.random();
        let opk: [u8; 16] = rng.random();
        let op = if case % 2 == 0 {
            OpKind::Op(opk)
        } else {
            OpKind::Opc(opk)
        };
        let rand: [u8; 16] = rng.random();
        let amf: [u8; 2] = rng.random();
        let sqn: u64 = rng.random::<u64>() >> 16;
        let input = AucInput {
            k,
            op,
            amf,
            sqn,
            rand,
            auts: None,
            ind: None,
        };
        let theirs = osmo::run(&input).expect("osmo-auc-gen");
        let mut args = strings(&["aka", "vector"]);
        args.extend(key_args(&k, &op));
        args.extend([
            "--sqn".into(),
            sqn.to_string(),
            "--amf".into(),
            hex(&amf),
            "--rand".into(),
            hex(&rand),
        ]);
        let (ok, out, err) = imslab(&args);
        assert!(ok, "case {case}: imslab failed: {err}");
        assert_eq!(field(&out, "AUTN"), hex(&theirs.autn), "case {case}: AUTN");
        assert_eq!(field(&out, "XRES"), hex(&theirs.res), "case {case}: RES");
        assert_eq!(field(&out, "CK"), hex(&theirs.ck), "case {case}: CK");
        assert_eq!(field(&out, "IK"), hex(&theirs.ik), "case {case}: IK");
        assert_eq!(
            Some(field(&out, "IMS nonce")),
            theirs.ims_nonce.as_deref(),
            "case {case}: IMS nonce"
        );

        // Resync: our UE-side AUTS is accepted by osmo-auc-gen, which recovers the same
        // SQN_MS and proposes the same next SQN in the same IND slot as we do.
        let sqn_ms: u64 = rng.random::<u64>() >> 20;
        let ind: u8 = rng.random_range(0..32);
        let mut a = strings(&["aka", "auts"]);
        a.extend(key_args(&k, &op));
        a.extend([
            "--rand".into(),
            hex(&rand),
            "--sqn-ms".into(),
            sqn_ms.to_string(),
        ]);
        let (ok, out, err) = imslab(&a);
        assert!(ok, "case {case}: imslab aka auts failed: {err}");
        let auts_hex = field(&out, "AUTS").to_string();
        let mut auts = [0u8; 14];
        for (i, b) in auts.iter_mut().enumerate() {
            *b = u8::from_str_radix(&auts_hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let resync = osmo::run(&AucInput {
            auts: Some(auts),
            ind: Some(ind),
            ..input
        })
        .expect("osmo-auc-gen resync");
        let ms = resync
            .fields
            .iter()
            .find(|(n, _)| n == "SQN.MS")
            .map(|(_, v)| v.parse::<u64>().unwrap());
        assert_eq!(ms, Some(sqn_ms), "case {case}: osmo's SQN.MS");
        let mut r = strings(&["aka", "resync"]);
        r.extend(key_args(&k, &op));
        r.extend([
            "--rand".into(),
            hex(&rand),
            "--auts".into(),
            auts_hex.clone(),
            "--ind".into(),
            ind.to_string(),
        ]);
        let (ok, out, err) = imslab(&r);
        assert!(ok, "case {case}: imslab aka resync failed: {err}");
        assert_eq!(field(&out, "SQN_MS"), sqn_ms.to_string(), "case {case}");
        assert_eq!(
            Some(field(&out, "next SQN").parse::<u64>().unwrap()),
            resync.sqn,
            "case {case}: next SQN after resync"
        );
    }
}

#[test]
fn response_is_accepted_by_check_and_a_wrong_key_is_reported() {
    let keys = [
        "-k",
        "465b5ce8b199b49faa5f0a2ee238a6bc",
        "--opc",
        "cd63cb71954a9f4e48a5994e37a02baf",
    ];
    let mut v = strings(&["aka", "vector"]);
    v.extend(strings(&keys));
    v.extend(strings(&[
        "--sqn",
        "65",
        "--rand",
        "000102030405060708090a0b0c0d0e0f",
    ]));
    let (ok, out, _) = imslab(&v);
    assert!(ok);
    let nonce = field(&out, "IMS nonce").to_string();
    let xres = field(&out, "XRES").to_string();
    let challenge = format!(
        "Digest realm=\"ims.test\", nonce=\"{nonce}\", algorithm=AKAv1-MD5, qop=\"auth,auth-int\""
    );
    let mut r = strings(&["aka", "response"]);
    r.extend(strings(&keys));
    r.extend(strings(&[
        "--challenge",
        &challenge,
        "--impi",
        "u@ims.test",
        "--uri",
        "sip:ims.test",
    ]));
    let (ok, out, err) = imslab(&r);
    assert!(ok, "{err}");
    assert_eq!(field(&out, "RES"), xres);
    let auth = authorization(&out);
    let mut c = strings(&["aka", "check"]);
    c.extend(strings(&keys));
    c.extend(strings(&["--authorization", &auth]));
    let (ok, out, err) = imslab(&c);
    assert!(ok, "{err}");
    assert!(out.contains("response matches XRES"));
    // The same Authorization checked against another K fails with a clear message.
    c[3] = "565b5ce8b199b49faa5f0a2ee238a6bc".into();
    let (ok, _, err) = imslab(&c);
    assert!(!ok);
    assert!(err.contains("does not match XRES"), "{err}");
    // A card that already saw SQN 65 answers the same challenge with auts=, which check
    // recognises as a resynchronisation with a valid MAC-S carrying SQN_MS = 65.
    r.extend(strings(&["--sqn-ms", "65"]));
    let (ok, out, err) = imslab(&r);
    assert!(ok, "{err}");
    assert!(out.contains("SQN failure"));
    let auth = authorization(&out);
    assert!(auth.contains("auts=\""));
    let mut c = strings(&["aka", "check"]);
    c.extend(strings(&keys));
    c.extend(strings(&["--authorization", &auth]));
    let (ok, out, err) = imslab(&c);
    assert!(ok, "{err}");
    assert_eq!(field(&out, "SQN_MS"), "65");
}

#[test]
fn bad_input_gets_a_clear_error() {
    const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
    const OPC: &str = "00112233445566778899aabbccddeeff";
    let cases: &[(&[&str], &str)] = &[
        (
            &["aka", "vector", "-k", "465b", "--opc", OPC, "--sqn", "1"],
            "K: expected 16 octets (32 hex digits), got 2 octets",
        ),
        (
            &[
                "aka",
                "vector",
                "-k",
                "465b5ce8b199b49faa5f0a2ee238a6bX",
                "--opc",
                OPC,
                "--sqn",
                "1",
            ],
            "K: 'X' at position 31 is not a hex digit",
        ),
        (
            &["aka", "vector", "-k", K, "--opc", OPC, "--sqn", "1e"],
            "SQN: \"1e\" is not a decimal or 0x-prefixed hex number",
        ),
        (
            &[
                "aka",
                "vector",
                "-k",
                K,
                "--opc",
                OPC,
                "--sqn",
                "0x1000000000000",
            ],
            "does not fit in 48 bits",
        ),
        (
            &[
                "aka", "resync", "-k", K, "--opc", OPC, "--rand", OPC, "--auts", "0011",
            ],
            "AUTS: expected 14 octets (28 hex digits), got 2 octets",
        ),
        (
            &[
                "aka",
                "resync",
                "-k",
                K,
                "--opc",
                OPC,
                "--rand",
                OPC,
                "--auts",
                "000102030405060708090a0b0c0d",
            ],
            "MAC-S mismatch",
        ),
        (
            &[
                "aka",
                "response",
                "-k",
                K,
                "--opc",
                OPC,
                "--challenge",
                "Digest realm=\"x\", nonce=\"AAAA\"",
                "--impi",
                "a",
                "--uri",
                "sip:x",
            ],
            "nonce decodes to 3 octets",
        ),
    ];
    for (args, needle) in cases {
        let (ok, _, err) = imslab(&strings(args));
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
}
