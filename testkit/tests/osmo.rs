//! osmo-auc-gen output parses and matches TS 35.208 test set 1; its resync
//! mode accepts an AUTS built with the `milenage` crate and rejects a bad one.

use testkit::osmo::{run, AucInput, OpKind};

fn h<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const RAND: &str = "23553cbe9637a89d218ae64dae47bf35";
const OP: &str = "cdc202d5123e20f62b6d676ac72cb318";

fn input() -> AucInput {
    AucInput {
        k: h(K),
        op: OpKind::Op(h(OP)),
        amf: [0xb9, 0xb9],
        sqn: 0xff9b_b4d0_b607,
        rand: h(RAND),
        auts: None,
        ind: None,
    }
}

#[test]
fn osmo_auc_gen_matches_ts_35_208_set_1() {
    if testkit::require_bin("osmo-auc-gen").is_none() {
        return;
    }
    let v = run(&input()).unwrap();
    assert_eq!(hex::encode(v.rand), RAND);
    assert_eq!(hex::encode(v.mac_a()), "4a9ffac354dfafb3"); // f1
    assert_eq!(hex::encode(&v.res), "a54211d5e3ba50bf"); // f2
    assert_eq!(hex::encode(v.ak().unwrap()), "aa689c648370"); // f5
    assert_eq!(hex::encode(v.ck), "b40ba9a3c58b2a05bbf0d987b21bf8cb"); // f3
    assert_eq!(hex::encode(v.ik), "f769bcd751044604127672711c6d3441"); // f4
    assert_eq!(v.sqn, Some(0xff9b_b4d0_b607));
    // IMS nonce = base64(RAND || AUTN).
    use base64::Engine;
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(v.ims_nonce.as_deref().unwrap())
        .unwrap();
    assert_eq!(&nonce[..16], &v.rand);
    assert_eq!(&nonce[16..], &v.autn);

    // Same with OPc instead of OP.
    let opc = *milenage::Milenage::new_with_op(h(K), h(OP)).opc();
    let mut i = input();
    i.op = OpKind::Opc(opc);
    assert_eq!(run(&i).unwrap().autn, v.autn);
}

#[test]
fn osmo_auc_gen_resync_checks_auts() {
    if testkit::require_bin("osmo-auc-gen").is_none() {
        return;
    }
    // The UE's SQN_MS; AUTS = SQN_MS ^ AK* || MAC-S (f1* with AMF 0000), TS 33.102 §6.3.3.
    let sqn_ms: u64 = 0x0000_0000_1234;
    let sqn_b: [u8; 6] = sqn_ms.to_be_bytes()[2..].try_into().unwrap();
    let rand: [u8; 16] = h(RAND);
    let mut m = milenage::Milenage::new_with_op(h(K), h(OP));
    let ak_s = m.f5star(&rand);
    let mac_s = m.f1star(&rand, &sqn_b, &[0, 0]);
    let mut auts = [0u8; 14];
    for i in 0..6 {
        auts[i] = sqn_b[i] ^ ak_s[i];
    }
    auts[6..].copy_from_slice(&mac_s);

    let mut i = input();
    i.amf = [0, 0];
    i.auts = Some(auts);
    let v = run(&i).unwrap();
    let sqn = v.sqn.unwrap();
    assert!(
        sqn > sqn_ms,
        "new SQN {sqn:#x} must follow SQN_MS {sqn_ms:#x}"
    );

    auts[13] ^= 1;
    i.auts = Some(auts);
    let err = run(&i).unwrap_err();
    assert!(err.to_string().contains("AUTS"), "{err}");
}
