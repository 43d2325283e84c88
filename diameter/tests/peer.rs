//! The sans-IO peer driven byte-for-byte, without sockets or real time.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diameter::peer::{CloseReason, Event, FailReason, PeerState, WatchdogState};
use diameter::{
    app, avp, cmd, enums, result, AllowedPeer, Avp, FindAvp, Message, Peer, PeerConfig, Refusal,
    ResultCode, VENDOR_3GPP,
};

fn ip() -> Option<IpAddr> {
    Some("127.0.0.1".parse().unwrap())
}

fn cfg(host: &str) -> PeerConfig {
    let mut c = PeerConfig::cx(host, "ims.lab");
    c.watchdog_jitter = Duration::ZERO;
    c
}

/// Moves bytes both ways until neither side has anything to send; returns the events.
fn pump(a: &mut Peer, b: &mut Peer, now: Instant) -> (Vec<Event>, Vec<Event>) {
    loop {
        let mut moved = false;
        if let Some(x) = a.poll_transmit() {
            b.handle_bytes(now, &x);
            moved = true;
        }
        if let Some(x) = b.poll_transmit() {
            a.handle_bytes(now, &x);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    (drain(a), drain(b))
}

fn drain(p: &mut Peer) -> Vec<Event> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn open_pair(now: Instant) -> (Peer, Peer) {
    let mut c = Peer::connect(
        Arc::new(cfg("scscf.ims.lab")),
        now,
        0x1234_5678_9abc_def0,
        ip(),
    );
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 42, ip());
    let (ce, se) = pump(&mut c, &mut s, now);
    assert!(
        matches!(&ce[..], [Event::Up(i)] if i.origin_host == "hss.ims.lab"),
        "{ce:?}"
    );
    assert!(
        matches!(&se[..], [Event::Up(i)] if i.origin_host == "scscf.ims.lab"),
        "{se:?}"
    );
    (c, s)
}

fn mar() -> Message {
    Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::SESSION_ID, "scscf.ims.lab;1;1"))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            enums::NO_STATE_MAINTAINED,
        ))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, "alice@ims.lab"))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, "sip:alice@ims.lab"))
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
}

#[test]
fn cer_content_and_handshake() {
    let now = Instant::now();
    let mut c = Peer::connect(Arc::new(cfg("scscf.ims.lab")), now, 7 << 32 | 99, ip());
    assert_eq!(c.state(), PeerState::WaitCea);
    let cer = Message::decode(c.poll_transmit().unwrap()).unwrap();
    assert_eq!((cer.code, cer.app_id, cer.flags), (257, 0, 0x80));
    assert_eq!(
        cer.end_to_end >> 20,
        7,
        "high 12 bits of end-to-end come from the clock seed"
    );
    assert_eq!(cer.get_utf8(avp::ORIGIN_HOST).unwrap(), "scscf.ims.lab");
    assert_eq!(
        cer.get_address(avp::HOST_IP_ADDRESS).unwrap(),
        ip().unwrap()
    );
    assert_eq!(cer.get_u32(avp::SUPPORTED_VENDOR_ID).unwrap(), VENDOR_3GPP);
    let vsai = cer
        .get_grouped(avp::VENDOR_SPECIFIC_APPLICATION_ID)
        .unwrap();
    assert_eq!(vsai.get_u32(avp::AUTH_APPLICATION_ID).unwrap(), app::CX);
    assert!(cer.find(avp::PRODUCT_NAME).is_some());

    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 1, ip());
    s.handle_bytes(now, &cer.encode());
    let cea = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(cea.result(), Some(ResultCode::Base(2001)));
    assert_eq!(
        (cea.hop_by_hop, cea.end_to_end),
        (cer.hop_by_hop, cer.end_to_end)
    );
    assert!(s.is_open());
    c.handle_bytes(now, &cea.encode());
    assert!(c.is_open());
    assert_eq!(c.remote().unwrap().origin_host, "hss.ims.lab");
}

#[test]
fn request_answer_many_in_flight_out_of_order() {
    let now = Instant::now();
    let (mut c, mut s) = open_pair(now);
    let ids: Vec<u32> = (0..100)
        .map(|_| c.send_request(now, mar()).unwrap())
        .collect();
    let mut uniq = ids.clone();
    uniq.dedup();
    assert_eq!(uniq.len(), 100);
    let (_, se) = pump(&mut c, &mut s, now);
    let reqs: Vec<Message> = se
        .into_iter()
        .map(|e| match e {
            Event::Request(m) => m,
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(reqs.len(), 100);
    assert_eq!(
        reqs[0].origin_host(),
        Some("scscf.ims.lab"),
        "Origin-Host filled in"
    );
    for r in reqs.iter().rev() {
        s.send_answer(Message::answer_for(r).with_result_code(result::SUCCESS))
            .unwrap();
    }
    let (ce, _) = pump(&mut c, &mut s, now);
    let got: Vec<u32> = ce
        .iter()
        .map(|e| match e {
            Event::Answer(m) => {
                assert_eq!(m.origin_host(), Some("hss.ims.lab"));
                m.hop_by_hop
            }
            e => panic!("{e:?}"),
        })
        .collect();
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(got, want);
    assert_eq!(c.pending_requests(), 0);
}

#[test]
fn byte_by_byte_feeding() {
    let now = Instant::now();
    let (mut c, mut s) = open_pair(now);
    c.send_request(now, mar()).unwrap();
    c.send_request(now, mar()).unwrap();
    let bytes = c.poll_transmit().unwrap();
    for b in bytes.iter() {
        s.handle_bytes(now, std::slice::from_ref(b));
    }
    let ev = drain(&mut s);
    assert_eq!(
        ev.iter().filter(|e| matches!(e, Event::Request(_))).count(),
        2
    );
}

#[test]
fn request_times_out() {
    let now = Instant::now();
    let (mut c, mut s) = open_pair(now);
    let id = c.send_request(now, mar()).unwrap();
    let _ = pump(&mut c, &mut s, now);
    let t = c.poll_timeout().unwrap();
    assert_eq!(t, now + Duration::from_secs(5));
    c.handle_timeout(t - Duration::from_millis(1));
    assert!(drain(&mut c).is_empty());
    c.handle_timeout(t);
    let ev = drain(&mut c);
    assert!(
        matches!(&ev[..], [Event::RequestFailed { hop_by_hop, reason: FailReason::TimedOut }] if *hop_by_hop == id),
        "{ev:?}"
    );
    assert_eq!(c.pending_requests(), 0);
}

#[test]
fn watchdog_dwr_dwa_then_suspect_then_down() {
    let t0 = Instant::now();
    let (mut c, mut s) = open_pair(t0);
    let tw = Duration::from_secs(30);
    assert_eq!(c.poll_timeout(), Some(t0 + tw));
    // First Tw: DWR goes out, answered, watchdog okay.
    c.handle_timeout(t0 + tw);
    let dwr = c.poll_transmit().unwrap();
    assert_eq!(
        Message::decode(dwr.clone()).unwrap().code,
        cmd::DEVICE_WATCHDOG
    );
    s.handle_bytes(t0 + tw, &dwr);
    let dwa = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(dwa.result(), Some(ResultCode::Base(2001)));
    c.handle_bytes(t0 + tw, &dwa.encode());
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.watchdog(), WatchdogState::Okay);
    // Peer goes silent: DWR, then SUSPECT, then DOWN.
    let t1 = t0 + 2 * tw;
    c.handle_timeout(t1);
    assert!(c.poll_transmit().is_some());
    c.handle_timeout(t1 + tw);
    assert!(matches!(&drain(&mut c)[..], [Event::WatchdogSuspect]));
    assert_eq!(c.watchdog(), WatchdogState::Suspect);
    c.handle_timeout(t1 + 2 * tw);
    assert!(matches!(
        &drain(&mut c)[..],
        [Event::Closed(CloseReason::WatchdogDown)]
    ));
    assert!(c.is_closed());
}

#[test]
fn watchdog_suspect_recovers_on_dwa() {
    let t0 = Instant::now();
    let (mut c, mut s) = open_pair(t0);
    let tw = Duration::from_secs(30);
    c.handle_timeout(t0 + tw);
    let dwr = c.poll_transmit().unwrap();
    c.handle_timeout(t0 + 2 * tw);
    assert!(matches!(&drain(&mut c)[..], [Event::WatchdogSuspect]));
    s.handle_bytes(t0 + 2 * tw, &dwr);
    c.handle_bytes(t0 + 2 * tw, &s.poll_transmit().unwrap());
    assert!(matches!(&drain(&mut c)[..], [Event::WatchdogRecovered]));
    assert_eq!(c.watchdog(), WatchdogState::Okay);
}

#[test]
fn watchdog_jitter_stays_within_bounds() {
    let now = Instant::now();
    let mut conf = cfg("a.lab");
    conf.watchdog_jitter = Duration::from_secs(2);
    let conf = Arc::new(conf);
    let mut seen = std::collections::HashSet::new();
    for seed in 0..50u64 {
        let mut c = Peer::connect(conf.clone(), now, seed * 7919, ip());
        let mut s = Peer::accept(Arc::new(cfg("b.lab")), now, seed, ip());
        pump(&mut c, &mut s, now);
        let d = c.poll_timeout().unwrap() - now;
        assert!(
            d >= Duration::from_secs(28) && d <= Duration::from_secs(32),
            "{d:?}"
        );
        seen.insert(d);
    }
    assert!(seen.len() > 10, "jitter should vary with the seed");
}

#[test]
fn dpr_dpa_both_directions() {
    let now = Instant::now();
    let (mut c, mut s) = open_pair(now);
    let id = c.send_request(now, mar()).unwrap();
    c.disconnect(now, enums::DISCONNECT_DO_NOT_WANT_TO_TALK_TO_YOU);
    assert_eq!(c.state(), PeerState::Closing);
    assert!(c.send_request(now, mar()).is_err());
    let (ce, se) = pump(&mut c, &mut s, now);
    assert!(
        matches!(
            se.last(),
            Some(Event::Closed(CloseReason::PeerDisconnected(Some(2))))
        ),
        "{se:?}"
    );
    assert!(
        matches!(&ce[..], [Event::RequestFailed { hop_by_hop, reason: FailReason::ConnectionClosed }, Event::Closed(CloseReason::LocalDisconnect)] if *hop_by_hop == id),
        "{ce:?}"
    );
    // The other way round, and DPA never comes: closed after the timeout.
    let (mut c, mut s) = open_pair(now);
    s.disconnect(now, enums::DISCONNECT_REBOOTING);
    let _dpr = s.poll_transmit().unwrap();
    s.handle_timeout(now + Duration::from_secs(2));
    assert!(s.is_closed());
    let _ = pump(&mut c, &mut s, now);
}

#[test]
fn allow_list_rejects_unknown_peer_with_3010() {
    let now = Instant::now();
    let mut c = Peer::connect(Arc::new(cfg("intruder.lab")), now, 1, ip());
    let mut s = Peer::accept(
        Arc::new(cfg("hss.ims.lab").allow_hosts(["scscf.ims.lab"])),
        now,
        2,
        ip(),
    );
    s.handle_bytes(now, &c.poll_transmit().unwrap());
    let cea_bytes = s.poll_transmit().unwrap();
    let cea = Message::decode(cea_bytes.clone()).unwrap();
    assert_eq!(cea.result(), Some(ResultCode::Base(result::UNKNOWN_PEER)));
    assert!(cea.is_error(), "3xxx answers carry the E bit");
    assert!(s.is_closed());
    c.handle_bytes(now, &cea_bytes);
    assert!(matches!(
        &drain(&mut c)[..],
        [Event::Closed(CloseReason::CapabilitiesRejected(3010))]
    ));
    // The allowed one gets in (case-insensitive).
    let mut c = Peer::connect(Arc::new(cfg("SCSCF.ims.lab")), now, 1, ip());
    let mut s = Peer::accept(
        Arc::new(cfg("hss.ims.lab").allow_hosts(["scscf.ims.lab"])),
        now,
        2,
        ip(),
    );
    pump(&mut c, &mut s, now);
    assert!(c.is_open() && s.is_open());
}

#[test]
fn allow_list_checks_the_source_address_too() {
    let now = Instant::now();
    let allowed = || {
        Arc::new(cfg("hss.ims.lab").allow_peers([AllowedPeer::new(
            "scscf.ims.lab",
            ["10.0.0.5".parse().unwrap()],
        )]))
    };
    let cer = |seed| {
        Peer::connect(Arc::new(cfg("scscf.ims.lab")), now, seed, ip())
            .poll_transmit()
            .unwrap()
    };
    // Right name, wrong address; and no address known at all: refused, fail closed.
    for from in [Some("10.0.0.6"), None] {
        let mut s = Peer::accept(allowed(), now, 2, ip());
        if let Some(a) = from {
            s.set_remote_addr(a.parse().unwrap());
        }
        s.handle_bytes(now, &cer(1));
        let cea = Message::decode(s.poll_transmit().unwrap()).unwrap();
        assert_eq!(cea.result(), Some(ResultCode::Base(result::UNKNOWN_PEER)));
        assert!(s.is_closed());
        assert_eq!(s.refusal(), Some(Refusal::WrongAddress));
    }
    // The same address as IPv4-mapped IPv6 (a dual-stack listener) is the same peer.
    let mut s = Peer::accept(allowed(), now, 2, ip());
    s.set_remote_addr("::ffff:10.0.0.5".parse().unwrap());
    s.handle_bytes(now, &cer(1));
    assert!(s.is_open(), "{:?}", s.refusal());
    assert_eq!(s.refusal(), None);
}

#[test]
fn admission_refusal_answers_before_open() {
    let now = Instant::now();
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    s.set_admission(Box::new(|_| Err(Refusal::AlreadyConnected)));
    let mut c = Peer::connect(Arc::new(cfg("scscf.ims.lab")), now, 1, ip());
    let (ce, se) = pump(&mut c, &mut s, now);
    assert!(
        matches!(
            &ce[..],
            [Event::Closed(CloseReason::CapabilitiesRejected(5012))]
        ),
        "{ce:?}"
    );
    assert!(!se.iter().any(|e| matches!(e, Event::Up(_))), "{se:?}");
    assert_eq!(s.refusal(), Some(Refusal::AlreadyConnected));
}

#[test]
fn relay_only_peer_is_accepted_and_no_common_app_rejected() {
    let now = Instant::now();
    // freeDiameter's CER advertises only the Relay application.
    let relay_cer = |apps: &[u32]| {
        let mut m = Message::request(app::COMMON, cmd::CAPABILITIES_EXCHANGE)
            .with(Avp::utf8(avp::ORIGIN_HOST, "fd.lab"))
            .with(Avp::utf8(avp::ORIGIN_REALM, "lab"))
            .with(Avp::address(avp::HOST_IP_ADDRESS, ip().unwrap()))
            .with(Avp::u32(avp::VENDOR_ID, 0))
            .with(Avp::utf8(avp::PRODUCT_NAME, "freeDiameter"));
        for &a in apps {
            m.add(Avp::u32(avp::AUTH_APPLICATION_ID, a));
        }
        m.hop_by_hop = 5;
        m.encode()
    };
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    s.handle_bytes(now, &relay_cer(&[app::RELAY]));
    let cea = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(cea.result(), Some(ResultCode::Base(2001)));
    assert!(s.remote().unwrap().is_relay());
    assert!(s.is_open());

    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    s.handle_bytes(now, &relay_cer(&[4]));
    let cea = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        cea.result(),
        Some(ResultCode::Base(result::NO_COMMON_APPLICATION))
    );
    assert!(s.is_closed());

    // Missing Origin-Host: 5005 and closed.
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    let mut m = Message::request(0, 257).with(Avp::utf8(avp::ORIGIN_REALM, "lab"));
    m.hop_by_hop = 1;
    s.handle_bytes(now, &m.encode());
    let cea = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(cea.result(), Some(ResultCode::Base(result::MISSING_AVP)));
    assert!(s.is_closed());
}

fn one_answer(c: &mut Peer, s: &mut Peer, now: Instant, req: Message) -> Message {
    c.send_request(now, req).unwrap();
    let (ce, se) = pump(c, s, now);
    assert!(se.is_empty(), "should not reach the application: {se:?}");
    match &ce[..] {
        [Event::Answer(a)] => a.clone(),
        e => panic!("{e:?}"),
    }
}

#[test]
fn protocol_errors_for_requests() {
    let now = Instant::now();
    let (mut c, mut s) = open_pair(now);
    // Unknown mandatory AVP → 5001 with Failed-AVP holding it.
    let bad = Avp::raw(4242, 0, 0x40, &b"x"[..]);
    let a = one_answer(&mut c, &mut s, now, mar().with(bad.clone()));
    assert_eq!(a.result(), Some(ResultCode::Base(result::AVP_UNSUPPORTED)));
    assert!(!a.is_error());
    assert_eq!(a.get_grouped(avp::FAILED_AVP).unwrap(), vec![bad]);
    assert_eq!(a.session_id(), Some("scscf.ims.lab;1;1"));
    // Unknown non-mandatory AVP is passed through and kept.
    c.send_request(now, mar().with(Avp::raw(4243, 99, 0, &b"y"[..])))
        .unwrap();
    let (_, se) = pump(&mut c, &mut s, now);
    assert!(matches!(&se[..], [Event::Request(m)] if m.find((4243, 99)).is_some()));
    // Unknown command in Cx → 3001 with E bit.
    let a = one_answer(&mut c, &mut s, now, Message::request(app::CX, 399));
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::COMMAND_UNSUPPORTED))
    );
    assert!(a.is_error());
    // Unknown base command → 3001.
    let a = one_answer(&mut c, &mut s, now, Message::request(app::COMMON, 1000));
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::COMMAND_UNSUPPORTED))
    );
    // Application not advertised → 3007.
    let a = one_answer(
        &mut c,
        &mut s,
        now,
        Message::request(app::SH, cmd::USER_DATA),
    );
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::APPLICATION_UNSUPPORTED))
    );
    assert!(s.is_open() && c.is_open());
}

#[test]
fn malformed_requests_get_answers_or_close() {
    let now = Instant::now();
    let (_c, mut s) = open_pair(now);
    // Well framed request with an AVP whose length overruns the message → 5014.
    let mut w = mar().encode();
    w[20 + 7] = 200; // Session-Id AVP length low byte
    s.handle_bytes(now, &w);
    let a = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::INVALID_AVP_LENGTH))
    );
    // RFC 6733 §7.1.5: the offending AVP's header in Failed-AVP.
    let failed = a.get_grouped(avp::FAILED_AVP).unwrap();
    assert!(failed[0].is(avp::SESSION_ID), "{failed:?}");
    assert!(s.is_open());
    // AVP length shorter than its header → 5014.
    let mut w = mar().encode();
    w[20 + 7] = 4;
    s.handle_bytes(now, &w);
    let a = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::INVALID_AVP_LENGTH))
    );
    // R and E bits together → 3008.
    let mut w = mar().encode();
    w[4] |= 0x20;
    s.handle_bytes(now, &w);
    let a = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(a.result(), Some(ResultCode::Base(result::INVALID_HDR_BITS)));
    assert!(s.is_open());
    // Bad version: the stream is unusable → answer 5011 and close.
    let mut w = mar().encode();
    w[0] = 2;
    s.handle_bytes(now, &w);
    let a = Message::decode(s.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::UNSUPPORTED_VERSION))
    );
    assert!(s.is_closed());
}

#[test]
fn oversized_and_garbage_close_the_connection() {
    let now = Instant::now();
    let (_c, mut s) = open_pair(now);
    let mut w = mar().encode();
    // Announce 16 MiB - 4.
    w[1] = 0xff;
    w[2] = 0xff;
    w[3] = 0xfc;
    s.handle_bytes(now, &w);
    assert!(s.is_closed());
    let ev = drain(&mut s);
    assert!(matches!(
        ev.last(),
        Some(Event::Closed(CloseReason::ProtocolError(_)))
    ));

    let (_c, mut s) = open_pair(now);
    s.handle_bytes(now, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(s.is_closed());

    // Before CER anything else closes.
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    let mut m = mar();
    m.hop_by_hop = 1;
    s.handle_bytes(now, &m.encode());
    assert!(s.is_closed());
    // Nobody sends CER: closed after the capabilities timeout.
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    s.handle_timeout(s.poll_timeout().unwrap());
    assert!(matches!(
        &drain(&mut s)[..],
        [Event::Closed(CloseReason::CapabilitiesTimeout)]
    ));
}

#[test]
fn server_side_sends_requests_too() {
    let now = Instant::now();
    let (mut c, mut s) = open_pair(now);
    let rtr = Message::request(app::CX, cmd::REGISTRATION_TERMINATION)
        .with(Avp::utf8(avp::SESSION_ID, "hss.ims.lab;1;9"))
        .with(Avp::utf8(avp::USER_NAME, "alice@ims.lab"));
    let id = s.send_request(now, rtr).unwrap();
    let (ce, _) = pump(&mut c, &mut s, now);
    let req = match &ce[..] {
        [Event::Request(m)] => m.clone(),
        e => panic!("{e:?}"),
    };
    assert_eq!(req.hop_by_hop, id);
    c.send_answer(Message::answer_for(&req).with_result_code(2001))
        .unwrap();
    let (_, se) = pump(&mut c, &mut s, now);
    assert!(
        matches!(&se[..], [Event::Answer(a)] if a.hop_by_hop == id && a.result() == Some(ResultCode::Base(2001)))
    );
}

#[test]
fn answers_to_unknown_hop_by_hop_are_dropped() {
    let now = Instant::now();
    let (mut c, _s) = open_pair(now);
    let mut a = Message::answer_for(&mar()).with_result_code(2001);
    a.hop_by_hop = 0xdead;
    c.handle_bytes(now, &a.encode());
    assert!(drain(&mut c).is_empty());
    assert!(c.is_open());
}

#[test]
fn transport_closed_fails_pending() {
    let now = Instant::now();
    let (mut c, _s) = open_pair(now);
    let id = c.send_request(now, mar()).unwrap();
    c.handle_transport_closed();
    let ev = drain(&mut c);
    assert!(
        matches!(&ev[..], [Event::RequestFailed { hop_by_hop, reason: FailReason::ConnectionClosed }, Event::Closed(CloseReason::TransportClosed)] if *hop_by_hop == id)
    );
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn message_size_limit_on_send() {
    let now = Instant::now();
    let mut conf = cfg("scscf.ims.lab");
    conf.max_message_size = 1024;
    let mut c = Peer::connect(Arc::new(conf), now, 1, ip());
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    pump(&mut c, &mut s, now);
    let big = mar().with(Avp::octets(avp::USER_DATA, vec![0u8; 2000]));
    assert!(matches!(
        c.send_request(now, big),
        Err(diameter::peer::PeerError::TooLarge { .. })
    ));
}

#[test]
fn too_many_unanswered_requests_get_too_busy() {
    let now = Instant::now();
    let mut conf = cfg("hss.ims.lab");
    conf.max_incoming_requests = 3;
    let mut c = Peer::connect(Arc::new(cfg("scscf.ims.lab")), now, 1, ip());
    let mut s = Peer::accept(Arc::new(conf), now, 2, ip());
    pump(&mut c, &mut s, now);
    for _ in 0..5 {
        c.send_request(now, mar()).unwrap();
    }
    let (ce, se) = pump(&mut c, &mut s, now);
    let reqs: Vec<Message> = se
        .into_iter()
        .filter_map(|e| match e {
            Event::Request(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 3);
    assert_eq!(s.unanswered_requests(), 3);
    let busy = ce
        .iter()
        .filter(|e| matches!(e, Event::Answer(a) if a.result() == Some(ResultCode::Base(result::TOO_BUSY))))
        .count();
    assert_eq!(busy, 2);
    s.send_answer(Message::answer_for(&reqs[0]).with_result_code(2001))
        .unwrap();
    assert_eq!(s.unanswered_requests(), 2);
    c.send_request(now, mar()).unwrap();
    let (_, se) = pump(&mut c, &mut s, now);
    assert!(matches!(&se[..], [Event::Request(_)]));
}

#[test]
fn cx_and_sh_on_one_connection() {
    let now = Instant::now();
    let both = PeerConfig::cx("hss.ims.lab", "ims.lab").with_vendor_auth_app(VENDOR_3GPP, app::SH);
    assert_eq!(both.supported_vendor_ids, vec![VENDOR_3GPP]);
    let mut c = Peer::connect(
        Arc::new(PeerConfig::sh("as.ims.lab", "ims.lab")),
        now,
        1,
        ip(),
    );
    let mut s = Peer::accept(Arc::new(both), now, 2, ip());
    pump(&mut c, &mut s, now);
    assert!(c.is_open() && s.is_open());
    c.send_request(now, Message::request(app::SH, cmd::USER_DATA))
        .unwrap();
    let (_, se) = pump(&mut c, &mut s, now);
    assert!(matches!(&se[..], [Event::Request(m)] if m.code == cmd::USER_DATA));
    // A Cx-only server refuses the Sh-only client: no common application.
    let mut c = Peer::connect(
        Arc::new(PeerConfig::sh("as.ims.lab", "ims.lab")),
        now,
        1,
        ip(),
    );
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    let (ce, _) = pump(&mut c, &mut s, now);
    assert!(
        matches!(
            &ce[..],
            [Event::Closed(CloseReason::CapabilitiesRejected(5010))]
        ),
        "{ce:?}"
    );
}

#[test]
fn any_traffic_leaves_suspect() {
    let t0 = Instant::now();
    let (mut c, mut s) = open_pair(t0);
    let tw = Duration::from_secs(30);
    c.handle_timeout(t0 + tw);
    let _lost_dwr = c.poll_transmit().unwrap();
    c.handle_timeout(t0 + 2 * tw);
    assert!(matches!(&drain(&mut c)[..], [Event::WatchdogSuspect]));
    // The peer sends a request (not a DWA): the connection is alive.
    let rtr = Message::request(app::CX, cmd::REGISTRATION_TERMINATION);
    s.send_request(t0 + 2 * tw, rtr).unwrap();
    c.handle_bytes(t0 + 2 * tw, &s.poll_transmit().unwrap());
    let ev = drain(&mut c);
    assert!(
        matches!(&ev[..], [Event::WatchdogRecovered, Event::Request(_)]),
        "{ev:?}"
    );
    assert_eq!(c.watchdog(), WatchdogState::Okay);
    // Tw restarted from the traffic: no DOWN at the old deadline.
    c.handle_timeout(t0 + 3 * tw - Duration::from_secs(1));
    assert!(!c.is_closed());
}

#[test]
fn malformed_answers() {
    let now = Instant::now();
    // A garbled CEA closes the initiator at once.
    let mut c = Peer::connect(Arc::new(cfg("scscf.ims.lab")), now, 1, ip());
    let mut s = Peer::accept(Arc::new(cfg("hss.ims.lab")), now, 2, ip());
    s.handle_bytes(now, &c.poll_transmit().unwrap());
    let mut cea = s.poll_transmit().unwrap().to_vec();
    cea[20 + 7] = 0xf0;
    c.handle_bytes(now, &cea);
    assert!(matches!(
        &drain(&mut c)[..],
        [Event::Closed(CloseReason::ProtocolError(_))]
    ));
    // A garbled application answer fails just that request.
    let (mut c, mut s) = open_pair(now);
    let id = c.send_request(now, mar()).unwrap();
    let (_, se) = pump(&mut c, &mut s, now);
    let Event::Request(req) = &se[0] else {
        panic!()
    };
    s.send_answer(Message::answer_for(req).with_result_code(2001))
        .unwrap();
    let mut ans = s.poll_transmit().unwrap().to_vec();
    ans[20 + 7] = 0xf0;
    c.handle_bytes(now, &ans);
    let ev = drain(&mut c);
    assert!(
        matches!(&ev[..], [Event::RequestFailed { hop_by_hop, reason: FailReason::MalformedAnswer(_) }] if *hop_by_hop == id),
        "{ev:?}"
    );
    assert!(c.is_open());
}
