//! A realistic IMS registration exchange (REGISTER → 401 → protected REGISTER →
//! 200) as a P-CSCF sees it, including the edits the P-CSCF makes, and IMS
//! header round trips.

use sip::ims::{
    format_security_list, hdr, security_lists_equal, sort_by_preference, tag, AccessNetworkInfo,
    ChargingVector, SecurityMechanism, VisitedNetworkId,
};
use sip::{Message, NameAddr, ResponseBuilder, Scheme};

const UE_REGISTER: &str = "REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org SIP/2.0\r
Via: SIP/2.0/UDP [2001:db8:0:1::5]:5060;branch=z9hG4bK3c1d7e8f1;rport\r
Max-Forwards: 70\r
From: <sip:001010123456789@ims.mnc001.mcc001.3gppnetwork.org>;tag=2093471011\r
To: <sip:001010123456789@ims.mnc001.mcc001.3gppnetwork.org>\r
Call-ID: 2093470989_2350183944@2001:db8:0:1::5\r
CSeq: 1 REGISTER\r
Contact: <sip:001010123456789@[2001:db8:0:1::5]:5060>;+sip.instance=\"<urn:gsma:imei:35000000-000000-0>\";+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\";expires=600000\r
Authorization: Digest username=\"001010123456789@ims.mnc001.mcc001.3gppnetwork.org\",realm=\"ims.mnc001.mcc001.3gppnetwork.org\",uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\",nonce=\"\",response=\"\"\r
Require: sec-agree\r
Proxy-Require: sec-agree\r
Supported: path, gruu,sec-agree\r
Security-Client: ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;mod=trans;port-c=50412;port-s=50413;prot=esp;spi-c=34235;spi-s=34236;q=0.5\r
Security-Client: ipsec-3gpp;alg=hmac-md5-96;ealg=null;mod=trans;port-c=50412;port-s=50413;prot=esp;spi-c=34235;spi-s=34236;q=0.1\r
P-Access-Network-Info: 3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=0010100010a2d501\r
User-Agent: Lab UE\r
Content-Length: 0\r
\r
";

#[test]
fn pcscf_forwarding_edits() {
    let mut m = Message::parse(UE_REGISTER.as_bytes()).unwrap();
    m.validate().unwrap();
    let offers = m.security_client().unwrap();
    assert_eq!(offers.len(), 2);
    assert!(offers.iter().all(SecurityMechanism::is_complete_ipsec_3gpp));
    let mut pref = offers.clone();
    sort_by_preference(&mut pref);
    assert_eq!(pref[0].ealg.as_deref(), Some("aes-cbc"));
    assert!(m.has_option_tag(hdr::REQUIRE, tag::SEC_AGREE));
    assert!(m.has_option_tag(hdr::SUPPORTED, tag::PATH));
    let pani = m.p_access_network_info().unwrap();
    assert_eq!(pani[0].cell_id().as_deref(), Some("0010100010a2d501"));
    let auth_raw = m.header(hdr::AUTHORIZATION).unwrap().to_string();
    assert!(auth_raw.starts_with("Digest username="));

    // What a P-CSCF does before forwarding to the S-CSCF (TS 24.229 §5.2.2).
    m.stamp_received("[2001:db8:0:1::5]:5060".parse().unwrap())
        .unwrap();
    m.remove_header(hdr::SECURITY_CLIENT);
    m.remove_option_tag(hdr::REQUIRE, tag::SEC_AGREE);
    m.remove_option_tag(hdr::PROXY_REQUIRE, tag::SEC_AGREE);
    m.remove_option_tag(hdr::SUPPORTED, tag::SEC_AGREE);
    m.prepend_header(
        "Via",
        "SIP/2.0/UDP [2001:db8::100]:5060;branch=z9hG4bKpcscf1",
    );
    m.prepend_header(hdr::PATH, "<sip:term@pcscf.ims.test;lr>");
    m.append_header(hdr::P_VISITED_NETWORK_ID, "\"Lab Network\"");
    m.append_header(
        hdr::P_CHARGING_VECTOR,
        &ChargingVector::new("icid-1").to_string(),
    );
    let fwd = m.to_bytes();
    let f = Message::parse(&fwd).unwrap();
    f.validate().unwrap();
    assert!(!f.has_header(hdr::SECURITY_CLIENT));
    assert!(!f.has_header(hdr::REQUIRE));
    assert!(!f.has_header(hdr::PROXY_REQUIRE));
    assert_eq!(f.header(hdr::SUPPORTED), Some("path, gruu"));
    assert_eq!(f.vias().unwrap().len(), 2);
    assert_eq!(f.path().unwrap()[0].uri.host, "pcscf.ims.test");
    assert_eq!(f.p_visited_network_id().unwrap()[0].value, "Lab Network");
    assert_eq!(
        f.p_charging_vector().unwrap().unwrap().icid().as_deref(),
        Some("icid-1")
    );
    // untouched headers are byte-identical (digest and Contact survive verbatim)
    let text = String::from_utf8(fwd).unwrap();
    for line in UE_REGISTER.split("\r\n").filter(|l| {
        [
            "Authorization",
            "Contact",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "P-Access",
            "User-Agent",
        ]
        .iter()
        .any(|p| l.starts_with(p))
    }) {
        assert!(text.contains(&format!("{line}\r\n")), "{line} changed");
    }

    // The 401 coming back: pop our Via, add Security-Server, send to the UE.
    let chosen =
        SecurityMechanism::ipsec_3gpp("hmac-sha-1-96", Some("aes-cbc"), 5001, 5002, 5100, 5101);
    let mut r401 = ResponseBuilder::new(&f, 401)
        .to_tag("scscf-tag")
        .header(
            hdr::WWW_AUTHENTICATE,
            "Digest realm=\"ims.test\",nonce=\"abc\",algorithm=AKAv1-MD5,qop=\"auth\"",
        )
        .build()
        .unwrap();
    let popped = r401.pop_header_value("Via").unwrap();
    assert!(popped.contains("z9hG4bKpcscf1"));
    r401.append_header(
        hdr::SECURITY_SERVER,
        &format_security_list(std::slice::from_ref(&chosen)),
    );
    let to_ue = Message::parse(&r401.to_bytes()).unwrap();
    assert_eq!(to_ue.top_via().unwrap().branch(), Some("z9hG4bK3c1d7e8f1"));
    assert_eq!(
        to_ue.top_via().unwrap().response_target(),
        ("2001:db8:0:1::5".to_string(), 5060)
    );
    let server = to_ue.security_server().unwrap();
    assert_eq!(server, vec![chosen.clone()]);

    // The protected REGISTER echoes it in Security-Verify; a tampered one must not match.
    let verify_ok = format!("Security-Verify: {}\r\n", format_security_list(&server));
    let protected = UE_REGISTER.replace("CSeq: 1", "CSeq: 2").replace(
        "\r\nRequire: sec-agree\r\n",
        &format!("\r\nRequire: sec-agree\r\n{verify_ok}"),
    );
    let p = Message::parse(protected.as_bytes()).unwrap();
    assert!(security_lists_equal(&server, &p.security_verify().unwrap()));
    let tampered = protected.replace("ealg=aes-cbc;prot", "ealg=null;prot");
    let t = Message::parse(tampered.as_bytes()).unwrap();
    assert!(!security_lists_equal(
        &server,
        &t.security_verify().unwrap()
    ));

    // 200 OK with Path, Service-Route, P-Associated-URI.
    let ok = ResponseBuilder::new(&p, 200)
        .to_tag("scscf-tag")
        .header(hdr::PATH, "<sip:term@pcscf.ims.test;lr>")
        .header(hdr::SERVICE_ROUTE, "<sip:orig@scscf.ims.test;lr>")
        .header(
            hdr::P_ASSOCIATED_URI,
            "<sip:001010123456789@ims.test>, <tel:+15550001>",
        )
        .header(
            "Contact",
            "<sip:001010123456789@[2001:db8:0:1::5]:5060>;expires=600",
        )
        .build()
        .unwrap();
    let ok = Message::parse(&ok.to_bytes()).unwrap();
    assert!(ok.service_route().unwrap()[0].uri.params.has("lr"));
    let pau = ok.p_associated_uri().unwrap();
    assert_eq!(pau[1].uri.scheme, Scheme::Tel);
    let sip::Contacts::List(c) = ok.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(sip::headers::contact_expires(&c[0]).unwrap(), Some(600));
}

#[test]
fn malformed_security_client_is_an_error_not_a_panic() {
    let bad = UE_REGISTER.replace("spi-c=34235;spi-s=34236;q=0.5", "spi-c=notanumber;q=0.5");
    let m = Message::parse(bad.as_bytes()).unwrap();
    assert!(m.security_client().is_err());
}

#[test]
fn ims_headers_round_trip() {
    let cases = [
        "ipsec-3gpp;q=0.1;alg=hmac-md5-96;ealg=des-ede3-cbc;prot=esp;mod=trans;spi-c=1;spi-s=2;port-c=3;port-s=4;x-ext=1",
        "tls;q=0.2",
        "digest",
    ];
    for c in cases {
        let m = SecurityMechanism::parse(c).unwrap();
        assert_eq!(m.to_string(), c);
    }
    let pani = "IEEE-802.11; i-wlan-node-id=ffeeddccbbaa; network-provided";
    let a = AccessNetworkInfo::parse(pani).unwrap();
    assert!(a.network_provided());
    assert_eq!(a.to_string(), pani);
    assert_eq!(AccessNetworkInfo::parse(&a.to_string()).unwrap(), a);
    let v = VisitedNetworkId::parse_list("lab.example;p=q").unwrap();
    assert_eq!(v[0].to_string(), "lab.example;p=q");
    let pai = NameAddr::parse_list("\"Alice\" <sip:alice@ims.test>, <tel:+15550001>").unwrap();
    let s = pai
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(NameAddr::parse_list(&s).unwrap(), pai);
    let cv = "icid-value=1234bc9876e;icid-generated-at=192.0.6.8;orig-ioi=home1.net";
    assert_eq!(ChargingVector::parse(cv).unwrap().to_string(), cv);
}

#[test]
fn fuzz_regressions_render_consistently() {
    // a stray quote in a parameter value used to shift parameter boundaries on re-render
    let bad = "0;\u{fffd};\u{fffd}\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\";ealg=aes-cbc\"\"\"\"\"\"\"";
    assert!(SecurityMechanism::parse_list(bad).is_err());
    // a '>' inside an opaque URI used to break the name-addr it was rendered into
    assert!(NameAddr::parse_list("JJeJe:'x, J:'x>y").is_err());
}
