//! Property tests: the parser never panics, relays any body it accepts byte for byte, and
//! reads back exactly the typed lines a generated valid body was written from.

use proptest::prelude::*;
use sdp::{
    AddrType, AmrKind, AmrParams, Attribute, Bandwidth, BwType, Connection, DesiredStatus,
    Direction, Field, Fmtp, MediaLine, Origin, PrecondDirection, Rtcp, Rtpmap, Session, StatusLine,
    StatusType, Strength, TelephoneEvents, Timing,
};

const TYPED_ATTRS: [&str; 13] = [
    "rtpmap", "fmtp", "ptime", "maxptime", "sendrecv", "sendonly", "recvonly", "inactive", "rtcp",
    "mid", "curr", "des", "conf",
];

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,10}"
}

fn text() -> impl Strategy<Value = String> {
    "[^\r\n\u{0}]{0,16}"
}

fn addr_type() -> impl Strategy<Value = AddrType> {
    prop_oneof![
        Just(AddrType::Ip4),
        Just(AddrType::Ip6),
        token()
            .prop_filter("not a known type", |t| t != "IP4" && t != "IP6")
            .prop_map(AddrType::Other),
    ]
}

fn origin() -> impl Strategy<Value = Origin> {
    (
        token(),
        "[0-9]{1,22}",
        any::<u64>(),
        token(),
        addr_type(),
        token(),
    )
        .prop_map(
            |(username, session_id, session_version, net_type, addr_type, address)| Origin {
                username,
                session_id,
                session_version,
                net_type,
                addr_type,
                address,
            },
        )
}

fn connection() -> impl Strategy<Value = Field> {
    (token(), addr_type(), token()).prop_map(|(net_type, addr_type, address)| {
        Field::Connection(Connection {
            net_type,
            addr_type,
            address,
        })
    })
}

fn bandwidth() -> impl Strategy<Value = Field> {
    let kind = prop_oneof![
        Just(BwType::Ct),
        Just(BwType::As),
        Just(BwType::Rs),
        Just(BwType::Rr),
        Just(BwType::Tias),
        token()
            .prop_filter("not known", |t| !["CT", "AS", "RS", "RR", "TIAS"]
                .contains(&t.as_str()))
            .prop_map(BwType::Other),
    ];
    (kind, any::<u64>()).prop_map(|(kind, value)| Field::Bandwidth(Bandwidth { kind, value }))
}

fn precond_dir() -> impl Strategy<Value = PrecondDirection> {
    prop_oneof![
        Just(PrecondDirection::None),
        Just(PrecondDirection::Send),
        Just(PrecondDirection::Recv),
        Just(PrecondDirection::SendRecv),
    ]
}

fn status_type() -> impl Strategy<Value = StatusType> {
    prop_oneof![
        Just(StatusType::E2e),
        Just(StatusType::Local),
        Just(StatusType::Remote)
    ]
}

fn strength() -> impl Strategy<Value = Strength> {
    prop_oneof![
        Just(Strength::Mandatory),
        Just(Strength::Optional),
        Just(Strength::None),
        Just(Strength::Failure),
        Just(Strength::Unknown),
    ]
}

fn amr_params() -> impl Strategy<Value = AmrParams> {
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::collection::vec(0u8..=7, 1..5)),
        proptest::option::of(1u32..=2),
        proptest::option::of(1u8..=2),
        proptest::option::of(any::<bool>()),
        proptest::option::of(0u32..1000),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(1u8..=255),
        ),
        proptest::collection::vec(
            ("x-[a-z]{1,5}", proptest::option::of("[a-z0-9]{0,4}")),
            0..2,
        ),
    )
        .prop_map(
            |(oa, ms, mcp, mcc, mcn, red, (crc, rs, il, ch), other)| AmrParams {
                octet_align: oa,
                mode_set: ms,
                mode_change_period: mcp,
                mode_change_capability: mcc,
                mode_change_neighbor: mcn,
                max_red: red,
                crc,
                robust_sorting: rs,
                interleaving: il,
                channels: ch,
                other,
            },
        )
}

fn attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        (
            0u8..128,
            "[A-Za-z0-9.-]{1,12}",
            any::<u32>(),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(pt, enc, rate, p)| Attribute::Rtpmap(Rtpmap {
                payload_type: pt,
                encoding: enc,
                clock_rate: rate,
                encoding_params: p,
            })),
        (token(), text()).prop_map(|(format, params)| Attribute::Fmtp(Fmtp { format, params })),
        (0u8..128, amr_params()).prop_map(|(pt, p)| Attribute::Fmtp(Fmtp::new(pt, p.to_string()))),
        any::<u32>().prop_map(Attribute::Ptime),
        any::<u32>().prop_map(Attribute::Maxptime),
        prop_oneof![
            Just(Direction::SendRecv),
            Just(Direction::SendOnly),
            Just(Direction::RecvOnly),
            Just(Direction::Inactive)
        ]
        .prop_map(Attribute::Direction),
        (
            any::<u16>(),
            proptest::option::of((token(), token(), token()))
        )
            .prop_map(|(port, a)| {
                Attribute::Rtcp(Rtcp {
                    port,
                    address: a.map(|(n, t, x)| format!("{n} {t} {x}")),
                })
            }),
        "[^\r\n\u{0}]{1,8}".prop_map(Attribute::Mid),
        (token(), status_type(), precond_dir()).prop_map(|(p, s, d)| Attribute::Curr(StatusLine {
            precondition: p,
            status: s,
            direction: d
        })),
        (token(), status_type(), precond_dir()).prop_map(|(p, s, d)| Attribute::Conf(StatusLine {
            precondition: p,
            status: s,
            direction: d
        })),
        (token(), strength(), status_type(), precond_dir()).prop_map(|(p, st, s, d)| {
            Attribute::Des(DesiredStatus {
                precondition: p,
                strength: st,
                status: s,
                direction: d,
            })
        }),
        (
            token().prop_filter("untyped", |n| !TYPED_ATTRS.contains(&n.as_str())),
            proptest::option::of(text())
        )
            .prop_map(|(name, value)| Attribute::Other { name, value }),
    ]
}

fn other(kinds: &'static str) -> impl Strategy<Value = Field> {
    (
        proptest::sample::select(kinds.chars().collect::<Vec<_>>()),
        text(),
    )
        .prop_map(|(kind, value)| Field::Other { kind, value })
}

fn session_fields() -> impl Strategy<Value = Vec<Field>> {
    let extra = prop_oneof![
        connection(),
        bandwidth(),
        (any::<u64>(), any::<u64>())
            .prop_map(|(start, stop)| Field::Timing(Timing { start, stop })),
        attribute().prop_map(Field::Attribute),
        other("iueprzkxy"),
    ];
    (origin(), text(), proptest::collection::vec(extra, 0..8)).prop_map(|(o, s, rest)| {
        let mut v = vec![Field::Version(0), Field::Origin(o), Field::SessionName(s)];
        v.extend(rest);
        v
    })
}

fn media_fields() -> impl Strategy<Value = Vec<Field>> {
    let line = (
        token(),
        any::<u16>(),
        proptest::option::of(any::<u16>()),
        token(),
        proptest::collection::vec(token(), 1..6),
    )
        .prop_map(|(media, port, port_count, proto, formats)| MediaLine {
            media,
            port,
            port_count,
            proto,
            formats,
        });
    let extra = prop_oneof![
        connection(),
        bandwidth(),
        attribute().prop_map(Field::Attribute),
        other("ikx"),
    ];
    (line, proptest::collection::vec(extra, 0..10)).prop_map(|(m, rest)| {
        let mut v = vec![Field::Media(m)];
        v.extend(rest);
        v
    })
}

fn render(fields: &[Field], eol: &str) -> String {
    fields.iter().map(|f| format!("{f}{eol}")).collect()
}

proptest! {
    #[test]
    fn parse_never_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(s) = Session::parse(&data) {
            prop_assert_eq!(s.to_bytes(), data);
        }
    }

    /// SDP-shaped noise reaches deeper than random bytes.
    #[test]
    fn parse_never_panics_on_sdp_like_lines(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("v=0".to_owned()),
                Just("o=- 1 1 IN IP4 a".to_owned()),
                Just("s=-".to_owned()),
                "[a-z]=[ -~]{0,30}",
                "a=(rtpmap|fmtp|ptime|curr|des|conf|rtcp|mid|sendrecv):[ -~]{0,20}",
                "[^\n]{0,10}",
            ],
            0..20,
        ),
        eol in prop_oneof![Just("\r\n"), Just("\n"), Just("\r")],
    ) {
        let text = lines.join(eol);
        if let Ok(s) = Session::parse(text.as_bytes()) {
            prop_assert_eq!(s.to_bytes(), text.as_bytes());
            let canon = s.to_canonical_bytes();
            let again = Session::parse(&canon).expect("canonical output parses");
            prop_assert_eq!(again.to_canonical_bytes(), canon);
        }
    }

    #[test]
    fn valid_bodies_round_trip(
        head in session_fields(),
        media in proptest::collection::vec(media_fields(), 0..4),
        crlf in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = render(&head, eol);
        for m in &media {
            text += &render(m, eol);
        }
        let s = Session::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(s.to_bytes(), text.as_bytes());
        prop_assert_eq!(s.to_canonical_bytes(), text.as_bytes());
        prop_assert_eq!(s.fields().cloned().collect::<Vec<_>>(), head);
        let got: Vec<Vec<Field>> = s.media().iter().map(|m| m.fields().cloned().collect()).collect();
        prop_assert_eq!(got, media);
    }

    #[test]
    fn amr_params_round_trip(p in amr_params()) {
        let text = p.to_string();
        prop_assert_eq!(AmrParams::parse(&text, AmrKind::Nb), Ok(p));
    }

    #[test]
    fn telephone_events_round_trip(events in proptest::collection::vec(any::<u8>(), 1..40)) {
        let e = TelephoneEvents::from_events(events.iter().copied());
        let back = TelephoneEvents::parse(&e.to_string()).unwrap();
        prop_assert_eq!(&back, &e);
        for x in 0..=255u8 {
            prop_assert_eq!(e.contains(x), events.contains(&x));
        }
    }
}
