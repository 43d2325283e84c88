use hss::csv::*;
use proptest::prelude::*;

#[test]
fn sysmocom_style_columns_any_case_and_order() {
    let text = "# card data\nICCID,IMSI,ACC,PIN1,PUK1,PIN2,PUK2,Ki,OPC,ADM1\n\
        8988211000000000001,001010000000001,0001,1234,11111111,5678,22222222,465B5CE8B199B49FAA5F0A2EE238A6BC,CD63CB71954A9F4E48A5994E37A02BAF,12345678\n";
    let subs = parse(text, &ImportDefaults::default()).unwrap();
    assert_eq!(subs.len(), 1);
    let s = &subs[0];
    assert_eq!(s.impi, "001010000000001@ims.mnc001.mcc001.3gppnetwork.org");
    assert_eq!(s.iccid.as_deref(), Some("8988211000000000001"));
    assert_eq!(hex::encode(s.k), "465b5ce8b199b49faa5f0a2ee238a6bc");
    assert_eq!(s.amf, [0x80, 0]);
    assert_eq!(
        s.impus[0].uri,
        "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org"
    );
}

#[test]
fn pysim_style_with_op_semicolons_and_msisdn() {
    let text = "imsi;ki;op;msisdn;iccid\n\
        262420000000001;000102030405060708090A0B0C0D0E0F;\"00112233445566778899AABBCCDDEEFF\";+491701234567;8949\n";
    let d = ImportDefaults {
        domain: Some("ims.lab".into()),
        ..Default::default()
    };
    let s = &parse(text, &d).unwrap()[0];
    let k: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f")
        .unwrap()
        .try_into()
        .unwrap();
    let op: [u8; 16] = hex::decode("00112233445566778899aabbccddeeff")
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(s.opc, akav1::opc_from_op(&k, &op));
    assert_eq!(s.impi, "262420000000001@ims.lab");
    assert_eq!(s.msisdn.as_deref(), Some("491701234567"));
    let uris: Vec<_> = s.impus.iter().map(|i| i.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "sip:262420000000001@ims.lab",
            "sip:+491701234567@ims.lab",
            "tel:+491701234567"
        ]
    );
}

#[test]
fn errors_name_the_problem() {
    assert_eq!(parse("", &ImportDefaults::default()), Err(CsvError::Empty));
    assert!(matches!(
        parse("imsi,opc\n1,2", &ImportDefaults::default()),
        Err(CsvError::MissingColumn("Ki", _))
    ));
    assert!(matches!(
        parse("imsi,ki\n1,2", &ImportDefaults::default()),
        Err(CsvError::MissingColumn("OPc or OP", _))
    ));
    let e = parse(
        "imsi,ki,opc\n001010000000001,zz,00\n",
        &ImportDefaults::default(),
    )
    .unwrap_err();
    assert!(matches!(e, CsvError::Line { line: 2, .. }), "{e:?}");
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = parse(&s, &ImportDefaults::default());
        let _ = parse(&format!("imsi,ki,opc,impu\n{s}"), &ImportDefaults::default());
    }
}
