//! Offers written in the style of real VoLTE handsets and SIP phones (composed for these
//! tests, addresses from the documentation ranges), parsed, relayed and answered.

use sdp::{
    answer, AmrKind, AmrParams, Attribute, BwType, Direction, LocalCaps, LocalCodec, Origin,
    PrecondDirection, QosStatus, Session, TelephoneEvents,
};

/// Samsung-style: IPv6, six payload types with vendor numbering, precondition lines, CRLF.
const SAMSUNG_STYLE: &str = "v=0\r\n\
o=SAMSUNG-IMS-UE 1765432198 0 IN IP6 2001:db8:10::5\r\n\
s=SS VOIP\r\n\
c=IN IP6 2001:db8:10::5\r\n\
t=0 0\r\n\
m=audio 1234 RTP/AVP 116 107 118 96 111 110\r\n\
b=AS:49\r\n\
b=RS:0\r\n\
b=RR:2500\r\n\
a=rtpmap:116 AMR-WB/16000/1\r\n\
a=fmtp:116 mode-change-capability=2;max-red=0\r\n\
a=rtpmap:107 AMR-WB/16000/1\r\n\
a=fmtp:107 octet-align=1;mode-change-capability=2;max-red=0\r\n\
a=rtpmap:118 AMR/8000/1\r\n\
a=fmtp:118 mode-change-capability=2;max-red=0\r\n\
a=rtpmap:96 AMR/8000/1\r\n\
a=fmtp:96 octet-align=1;mode-change-capability=2;max-red=0\r\n\
a=rtpmap:111 telephone-event/16000\r\n\
a=fmtp:111 0-15\r\n\
a=rtpmap:110 telephone-event/8000\r\n\
a=fmtp:110 0-15\r\n\
a=curr:qos local none\r\n\
a=curr:qos remote none\r\n\
a=des:qos mandatory local sendrecv\r\n\
a=des:qos optional remote sendrecv\r\n\
a=sendrecv\r\n\
a=ptime:20\r\n\
a=maxptime:240\r\n";

/// iPhone-style: RTP/AVPF with rtcp-fb, explicit octet-align=0, mode-set on the AMR
/// formats, a=rtcp, session-level b=AS.
const IPHONE_STYLE: &str = "v=0\r\n\
o=- 3912345678 3912345678 IN IP6 2001:db8:20::7\r\n\
s=-\r\n\
c=IN IP6 2001:db8:20::7\r\n\
b=AS:80\r\n\
t=0 0\r\n\
m=audio 49152 RTP/AVPF 104 102 105 100 97 101\r\n\
b=AS:80\r\n\
b=RS:612\r\n\
b=RR:1837\r\n\
a=rtpmap:104 AMR-WB/16000\r\n\
a=fmtp:104 octet-align=0;mode-change-capability=2;max-red=0\r\n\
a=rtpmap:102 AMR-WB/16000\r\n\
a=fmtp:102 octet-align=1;mode-change-capability=2;max-red=0\r\n\
a=rtpmap:105 AMR/8000\r\n\
a=fmtp:105 octet-align=0;mode-set=0,2,4,7;mode-change-period=2;mode-change-capability=2;mode-change-neighbor=1;max-red=0\r\n\
a=rtpmap:100 AMR/8000\r\n\
a=fmtp:100 octet-align=1;mode-set=0,2,4,7;mode-change-period=2;mode-change-capability=2;mode-change-neighbor=1;max-red=0\r\n\
a=rtpmap:97 telephone-event/16000\r\n\
a=fmtp:97 0-15\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=maxptime:240\r\n\
a=rtcp:49153\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n\
a=curr:qos local none\r\n\
a=curr:qos remote none\r\n\
a=des:qos mandatory local sendrecv\r\n\
a=des:qos optional remote sendrecv\r\n\
a=sendrecv\r\n";

/// A Qualcomm-modem style re-offer in an UPDATE after the bearer is up: IPv4, LF endings,
/// a=mid, two AMR formats only.
const UPDATE_STYLE: &str = "v=0\n\
o=rue 3344 3345 IN IP4 10.45.0.7\n\
s=-\n\
c=IN IP4 10.45.0.7\n\
t=0 0\n\
m=audio 31000 RTP/AVP 98 99 100\n\
b=AS:38\n\
a=rtpmap:98 AMR/8000/1\n\
a=fmtp:98 octet-align=1;mode-set=7;max-red=0\n\
a=rtpmap:99 AMR/8000/1\n\
a=fmtp:99 mode-set=7;max-red=0\n\
a=rtpmap:100 telephone-event/8000\n\
a=fmtp:100 0-15\n\
a=mid:0\n\
a=curr:qos local sendrecv\n\
a=curr:qos remote none\n\
a=des:qos mandatory local sendrecv\n\
a=des:qos mandatory remote sendrecv\n\
a=conf:qos remote sendrecv\n\
a=sendrecv\n";

/// A desk SIP phone: G.711 and G.722, static payload types without rtpmap for PCMU,
/// session-level direction, a trailing empty line some stacks append.
const DESK_PHONE: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 192.0.2.33\r\n\
s=Talk\r\n\
c=IN IP4 192.0.2.33\r\n\
t=0 0\r\n\
a=sendrecv\r\n\
m=audio 7078 RTP/AVP 9 0 8 101\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=rtcp:7079\r\n\
\r\n";

const ALL: [&str; 4] = [SAMSUNG_STYLE, IPHONE_STYLE, UPDATE_STYLE, DESK_PHONE];

fn network_caps() -> LocalCaps {
    let mut c = LocalCaps::new(
        Origin::new("imslab", "9001", 1, "2001:db8:ff::1".parse().unwrap()),
        "2001:db8:ff::1".parse().unwrap(),
        20000,
    );
    c.codecs = vec![
        LocalCodec::amr(AmrKind::Wb, false),
        LocalCodec::amr(AmrKind::Wb, true),
        LocalCodec::amr(AmrKind::Nb, false),
        LocalCodec::amr(AmrKind::Nb, true),
        LocalCodec::pcma(),
        LocalCodec::pcmu(),
        LocalCodec::telephone_event(16000),
        LocalCodec::telephone_event(8000),
    ];
    c
}

/// The application server's AMR-NB ⇄ PCMA bridge: octet-aligned AMR only.
fn bridge_caps() -> LocalCaps {
    let mut c = network_caps();
    c.codecs = vec![
        LocalCodec::amr(AmrKind::Nb, true),
        LocalCodec::pcma(),
        LocalCodec::telephone_event(8000),
    ];
    c
}

#[test]
fn every_offer_is_relayed_byte_for_byte() {
    for text in ALL {
        let s = Session::parse(text.as_bytes()).unwrap();
        assert_eq!(s.to_bytes(), text.as_bytes());
    }
}

#[test]
fn every_offer_is_typed() {
    let s = Session::parse(SAMSUNG_STYLE.as_bytes()).unwrap();
    assert_eq!(s.origin().username, "SAMSUNG-IMS-UE");
    assert_eq!(s.session_name(), Some("SS VOIP"));
    let m = &s.media()[0];
    assert_eq!(m.line().payload_types(), [116, 107, 118, 96, 111, 110]);
    assert_eq!(
        (
            m.bandwidth(&BwType::As),
            m.bandwidth(&BwType::Rs),
            m.bandwidth(&BwType::Rr)
        ),
        (Some(49), Some(0), Some(2500))
    );
    let amr: Vec<(u8, AmrKind, bool)> = m
        .codecs()
        .into_iter()
        .filter_map(|c| {
            let r = c.rtpmap?;
            let kind = AmrKind::of(&r)?;
            let p = AmrParams::parse(c.fmtp.as_deref().unwrap_or(""), kind).ok()?;
            Some((c.payload_type, kind, p.is_octet_aligned()))
        })
        .collect();
    assert_eq!(
        amr,
        [
            (116, AmrKind::Wb, false),
            (107, AmrKind::Wb, true),
            (118, AmrKind::Nb, false),
            (96, AmrKind::Nb, true)
        ]
    );
    assert_eq!(
        QosStatus::from_media(m),
        Some(QosStatus::ue_initial_offer())
    );

    let s = Session::parse(IPHONE_STYLE.as_bytes()).unwrap();
    let m = &s.media()[0];
    assert_eq!(m.line().proto, "RTP/AVPF");
    assert_eq!(m.rtcp().map(|r| r.port), Some(49153));
    let p = AmrParams::parse(&m.fmtp("105").unwrap().params, AmrKind::Nb).unwrap();
    assert_eq!(p.mode_set, Some(vec![0, 2, 4, 7]));
    assert_eq!(p.mode_change_neighbor, Some(true));
    assert_eq!(m.attributes().filter(|a| a.name() == "rtcp-fb").count(), 2);

    let s = Session::parse(UPDATE_STYLE.as_bytes()).unwrap();
    let q = QosStatus::from_media(&s.media()[0]).unwrap();
    assert_eq!(q.local.current, PrecondDirection::SendRecv);
    assert_eq!(q.remote.confirm, Some(PrecondDirection::SendRecv));
    assert!(!q.met());

    let s = Session::parse(DESK_PHONE.as_bytes()).unwrap();
    assert_eq!(s.direction(), Some(Direction::SendRecv));
    let c = s.media()[0].codecs();
    assert_eq!(
        c[1].rtpmap.as_ref().map(|r| r.encoding.as_str()),
        Some("PCMU")
    );
    let te = TelephoneEvents::parse(c[3].fmtp.as_deref().unwrap()).unwrap();
    assert!(te.contains(16));
}

#[test]
fn network_answers_the_first_wideband_format() {
    for (offer, pt, te) in [(SAMSUNG_STYLE, "116", "111"), (IPHONE_STYLE, "104", "97")] {
        let o = Session::parse(offer.as_bytes()).unwrap();
        let a = answer(&o, &network_caps()).unwrap();
        let m = &a.media()[0];
        assert_eq!(m.line().formats, [pt, te], "{offer}");
        assert_eq!(m.line().proto, o.media()[0].line().proto);
        let p = AmrParams::parse(&m.fmtp(pt).unwrap().params, AmrKind::Wb).unwrap();
        assert_eq!(p.mode_change_capability, Some(2));
        assert!(!p.is_octet_aligned());
        assert!(QosStatus::from_media(m).is_some());
        assert_eq!(Session::parse(&a.to_bytes()).unwrap(), a);
    }
}

#[test]
fn bridge_answers_octet_aligned_amr_nb() {
    let o = Session::parse(SAMSUNG_STYLE.as_bytes()).unwrap();
    let a = answer(&o, &bridge_caps()).unwrap();
    let m = &a.media()[0];
    assert_eq!(m.line().formats, ["96", "110"]);
    assert_eq!(
        m.fmtp("96").map(|f| f.params.as_str()),
        Some("octet-align=1;mode-change-capability=2;max-red=0")
    );

    // The iPhone-style offer restricts AMR to 0,2,4,7; the answer keeps that set.
    let o = Session::parse(IPHONE_STYLE.as_bytes()).unwrap();
    let a = answer(&o, &bridge_caps()).unwrap();
    let m = &a.media()[0];
    assert_eq!(m.line().formats, ["100", "101"]);
    let p = AmrParams::parse(&m.fmtp("100").unwrap().params, AmrKind::Nb).unwrap();
    assert_eq!(p.mode_set, Some(vec![0, 2, 4, 7]));
    assert_eq!(p.mode_change_period, Some(2));

    // A desk phone without AMR falls back to PCMA; its 0-16 events are cut to ours.
    let o = Session::parse(DESK_PHONE.as_bytes()).unwrap();
    let a = answer(&o, &bridge_caps()).unwrap();
    let m = &a.media()[0];
    assert_eq!(m.line().formats, ["8", "101"]);
    assert_eq!(m.fmtp("101").map(|f| f.params.as_str()), Some("0-15"));
}

#[test]
fn update_offer_is_matched_by_codec_and_payload_format() {
    let o = Session::parse(UPDATE_STYLE.as_bytes()).unwrap();
    let mut caps = bridge_caps();
    caps.codecs = vec![LocalCodec::amr(AmrKind::Nb, true)];
    let a = answer(&o, &caps).unwrap();
    // 98 is the octet-aligned one; telephone-event is not in these caps.
    assert_eq!(a.media()[0].line().formats, ["98"]);
    caps.codecs = vec![LocalCodec::amr(AmrKind::Wb, true)];
    let a = answer(&o, &caps).unwrap();
    assert_eq!(a.media()[0].line().port, 0);
}

#[test]
fn proxy_style_edit_keeps_everything_else() {
    // A media anchor rewrites address and port only.
    let mut s = Session::parse(IPHONE_STYLE.as_bytes()).unwrap();
    s.set_connection(sdp::Connection::new("2001:db8:ff::2".parse().unwrap()));
    s.media_mut()[0].set_port(30000);
    let expect = IPHONE_STYLE
        .replace("c=IN IP6 2001:db8:20::7", "c=IN IP6 2001:db8:ff::2")
        .replace("m=audio 49152", "m=audio 30000");
    assert_eq!(String::from_utf8(s.to_bytes()).unwrap(), expect);
}

#[test]
fn ue_precondition_flow() {
    // INVITE offer from the UE, answer from the network, then the UE's UPDATE.
    let offer = sdp::VolteOffer::new(
        Origin::new("-", "1", 1, "2001:db8:10::5".parse().unwrap()),
        "2001:db8:10::5".parse().unwrap(),
        1234,
    )
    .build();
    let a = answer(&offer, &network_caps()).unwrap();
    let theirs = QosStatus::from_media(&a.media()[0]).unwrap();
    assert_eq!(theirs.local.current, PrecondDirection::SendRecv);
    assert_eq!(theirs.remote.confirm, Some(PrecondDirection::SendRecv));

    let mut update = offer.clone();
    update.bump_version();
    let mine = QosStatus::from_media(&offer.media()[0])
        .unwrap()
        .with_local_current(PrecondDirection::SendRecv);
    update.media_mut()[0].set_qos(&mine);
    let text = String::from_utf8(update.to_bytes()).unwrap();
    assert!(text.contains("o=- 1 2 IN IP6"));
    assert!(text.contains("a=curr:qos local sendrecv\r\n"));
    assert!(text.contains("a=des:qos mandatory local sendrecv\r\n"));
    // The network's answer to the UPDATE: everything met, nothing left to confirm.
    let o2 = Session::parse(text.as_bytes()).unwrap();
    let a2 = answer(&o2, &network_caps()).unwrap();
    let q2 = QosStatus::from_media(&a2.media()[0]).unwrap();
    assert!(q2.met());
    assert_eq!(q2.remote.confirm, None);
    assert!(a2.media()[0]
        .attributes()
        .all(|x| !matches!(x, Attribute::Conf(_))));
}
