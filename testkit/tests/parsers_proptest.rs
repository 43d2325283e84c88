//! The parsers in testkit read bytes from the network (SIP status line of the
//! readiness probe) or from peer tools (osmo-auc-gen, tshark fields): any input
//! gives a value or a typed error, never a panic.

use proptest::prelude::*;

proptest! {
    #[test]
    fn status_line_never_panics(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = testkit::kamailio::parse_status_code(&b);
    }

    #[test]
    fn status_line_roundtrip(code in 100u16..700, reason in "[A-Za-z ]{0,20}") {
        let line = format!("SIP/2.0 {code} {reason}\r\n");
        prop_assert_eq!(testkit::kamailio::parse_status_code(line.as_bytes()).unwrap(), code);
    }

    #[test]
    fn osmo_output_never_panics(s in "(?s).{0,400}") {
        let _ = testkit::osmo::parse(&s);
    }

    #[test]
    fn osmo_lines_never_panic(lines in proptest::collection::vec(
        ("(RAND|AUTN|IK|CK|RES|SQN|IND|IMS nonce)", "[0-9a-fA-Fx=+/]{0,40}"), 0..12)) {
        let s: String = lines.iter().map(|(k, v)| format!("{k}:\t{v}\n")).collect();
        let _ = testkit::osmo::parse(&s);
    }

    #[test]
    fn tshark_fields_never_panic(rows in proptest::collection::vec(
        proptest::collection::vec("[0-9,a-zA-Z_.]{0,12}", 10), 0..10)) {
        let s: String = rows.iter().map(|r| r.join("\t") + "\n").collect();
        let _ = testkit::tshark::parse_fields(&s);
    }
}
