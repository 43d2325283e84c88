//! Parser torture cases in the spirit of RFC 4475 (messages written for this
//! test, exercising the same categories: tortuous but valid syntax, then invalid).

use sip::{Message, Method, NameAddr, ParseError, Scheme, Uri};

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

#[test]
fn tortuous_valid_invite() {
    // mixed-case and compact names, LWS around colons, folding, multiple Vias per
    // line, escaped user, IPv6, quoted display names with escapes, unknown headers,
    // empty header value, extension params with quoted strings.
    let raw = crlf(
        "INVITE sip:bob%20smith;p=x@[2001:db8::10]:5070;transport=udp SIP/2.0
vIa   :   SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKtort1;rport ,
   SIP / 2.0 / TCP proxy.example.net:5061 ; branch = z9hG4bKtort2
v: SIP/2.0/UDP 192.0.2.3:5060;branch=z9hG4bKtort3;received=192.0.2.99;x-flag
TO :
 \"Bob \\\"the\\\" Smith\" <sip:bob%20smith;p=x@[2001:db8::10]>
fROM: <tel:+1-212-555-0199;phone-context=example.net>;tag=a%4a%
i: tortuous-1@[2001:db8::1]
Max-Forwards: 0068
CSeq: 0009
 INVITE
Subject:
NewFangledHeader:   newfangled value
 continued newfangled value
c: application/sdp
m: \"Quoted \\\\ backslash\" <sip:caller@[2001:db8::1]:5060;transport=tcp>;+sip.instance=\"<urn:uuid:1,2>\";expires=3600, <mailto:x@y.example>
l: 5

v=0
",
    );
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.to_bytes(), raw, "byte-identical round trip");
    m.validate().unwrap();
    assert_eq!(m.method(), Some(&Method::Invite));
    let ru = m.request_uri().unwrap();
    assert_eq!(ru.user.as_deref(), Some("bob%20smith;p=x"));
    assert_eq!(ru.host, "[2001:db8::10]");
    assert_eq!(ru.port, Some(5070));

    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, "[2001:db8::1]");
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[1].port, Some(5061));
    assert_eq!(vias[1].branch(), Some("z9hG4bKtort2"));
    assert!(vias[2].params.has("x-flag"));

    let to = m.to_header().unwrap();
    assert_eq!(to.display.as_deref(), Some("Bob \"the\" Smith"));
    let from = m.from_header().unwrap();
    assert_eq!(from.uri.scheme, Scheme::Tel);
    assert_eq!(from.tag(), Some("a%4a%"));
    assert_eq!(m.call_id().unwrap(), "tortuous-1@[2001:db8::1]");
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    assert_eq!(m.header("Subject"), Some(""));
    assert_eq!(
        m.header("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    let sip::Contacts::List(c) = m.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].display.as_deref(), Some("Quoted \\ backslash"));
    assert_eq!(c[0].params.get("expires"), Some("3600"));
    assert_eq!(
        c[0].params
            .find("+sip.instance")
            .unwrap()
            .unquoted()
            .unwrap(),
        "<urn:uuid:1,2>"
    );
    assert_eq!(c[1].uri.scheme, Scheme::Other("mailto".into()));
    assert_eq!(&m.body()[..], b"v=0\r\n");
    assert_eq!(m.header("Content-Type"), Some("application/sdp"));
}

#[test]
fn tel_request_uri_and_no_reason_phrase() {
    let raw = crlf("OPTIONS tel:+493012345;phone-context=+49 SIP/2.0\nCSeq: 1 OPTIONS\nl: 0\n\n");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.request_uri().unwrap().scheme, Scheme::Tel);
    let m = Message::parse(b"SIP/2.0 100 \r\n\r\n").unwrap();
    assert_eq!((m.code(), m.reason()), (Some(100), Some("")));
    let m = Message::parse(b"SIP/2.0 183\r\n\r\n").unwrap();
    assert_eq!(m.reason(), Some(""));
    let m = Message::parse(b"SIP/2.0 299 Some weird reason  with spaces\r\n\r\n").unwrap();
    assert_eq!(m.reason(), Some("Some weird reason  with spaces"));
}

#[test]
fn unknown_method_and_scheme_are_not_fatal() {
    let raw = crlf("NEWMETHOD urn:service:sos SIP/2.0\nCSeq: 2 NEWMETHOD\nl: 0\n\n");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.method(), Some(&Method::Other("NEWMETHOD".into())));
    assert_eq!(m.cseq().unwrap().method, Method::Other("NEWMETHOD".into()));
    assert_eq!(m.request_uri().unwrap().scheme, Scheme::Other("urn".into()));
}

#[test]
fn invalid_messages() {
    type Check = fn(&ParseError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("INVITE sip:a SIP/7.0\nl: 0\n\n", |e| {
            *e == ParseError::Version
        }),
        ("INVITE  sip:a  SIP/2.0\nl: 0\n\n", |e| {
            matches!(e, ParseError::StartLine(_))
        }),
        ("INVITE sip:a SIP/2.0\nl: -999\n\n", |e| {
            matches!(e, ParseError::ContentLength(_))
        }),
        ("INVITE sip:a SIP/2.0\nl: 99999999999999999999\n\n", |e| {
            matches!(e, ParseError::ContentLength(_))
        }),
        ("INVITE sip:a SIP/2.0\nl: 9999\n\nshort", |e| {
            matches!(e, ParseError::BodyTruncated { .. })
        }),
        ("INVITE sip:a SIP/2.0\nl: 1\nContent-Length: 0\n\n", |e| {
            matches!(e, ParseError::ContentLength(_))
        }),
        ("INVITE sip:a SIP/2.0\nTo sip:x\n\n", |e| {
            *e == ParseError::HeaderLine
        }),
        ("INVITE sip:a SIP/2.0\nBad Name: x\n\n", |e| {
            *e == ParseError::HeaderLine
        }),
        ("INVITE sip:a SIP/2.0\nVia: x\n", |e| {
            *e == ParseError::Incomplete
        }),
        ("SIP/2.0 20 OK\n\n", |e| {
            matches!(e, ParseError::StartLine(_))
        }),
    ];
    for (raw, pred) in cases {
        let e = Message::parse(&crlf(raw)).expect_err(raw);
        assert!(pred(&e), "{raw:?} gave {e:?}");
    }
}

#[test]
fn semantically_invalid_detected_lazily() {
    let base = "INVITE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: c\n";
    let bad = [
        "CSeq: 1 OPTIONS\nMax-Forwards: 70\n",        // method mismatch
        "CSeq: 1 INVITE\nMax-Forwards: 300\n",        // Max-Forwards > 255
        "CSeq: 4294967296 INVITE\nMax-Forwards: 1\n", // CSeq too large
        "CSeq: INVITE 1\n",                           // swapped
    ];
    for b in bad {
        let m = Message::parse(&crlf(&format!("{base}{b}l: 0\n\n"))).unwrap();
        assert!(m.validate().is_err(), "{b}");
    }
    let m = Message::parse(&crlf(&format!("{base}CSeq: 1 INVITE\nl: 0\n\n"))).unwrap();
    m.validate().unwrap();
    // a Request-URI in angle brackets is a syntax error caught when the URI is read
    let m = Message::parse(&crlf("INVITE <sip:a@b> SIP/2.0\nl: 0\n\n")).unwrap();
    assert!(m.request_uri().is_err());
    for bad in [
        "<sip:a@[2001:db8::1>",
        "\"unterminated <sip:a@b>",
        "sip:a@b c",
    ] {
        assert!(NameAddr::parse(bad).is_err(), "{bad}");
    }
    assert!(Uri::parse("sip:a@[2001:db8:::1:2:3:4:5:6:7]").is_err());
    let m = Message::parse(&crlf(&format!(
        "{base}CSeq: 1 INVITE\nExpires: soon\nl: 0\n\n"
    )))
    .unwrap();
    assert!(m.expires().is_err());
}

#[test]
fn size_limit() {
    let big = format!("OPTIONS sip:a SIP/2.0\r\nX: {}\r\n\r\n", "y".repeat(70_000));
    assert!(matches!(
        Message::parse(big.as_bytes()),
        Err(ParseError::TooLarge { .. })
    ));
}
