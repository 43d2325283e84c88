//! SDP parser (`scripts/fuzz-smoke` runs it with `dicts/sdp_parse.dict`): typed errors only,
//! byte identity of unedited bodies, our own canonical output parses to itself, and an answer
//! to whatever parsed is well formed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sdp::{
    answer, AmrKind, AmrParams, Direction, LocalCaps, LocalCodec, Origin, PrecondDirection,
    QosStatus, Session, TelephoneEvents,
};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Session::parse(data) else {
        return;
    };
    assert_eq!(
        s.to_bytes(),
        data,
        "unedited body must be relayed byte for byte"
    );
    let canon = s.to_canonical_bytes();
    let again = Session::parse(&canon).expect("re-parse of own canonical output");
    assert_eq!(again.to_canonical_bytes(), canon);

    for (i, m) in s.media().iter().enumerate() {
        let _ = s.media_direction(i);
        let _ = s.media_connection(i);
        for c in m.codecs() {
            let (Some(r), Some(p)) = (&c.rtpmap, &c.fmtp) else {
                continue;
            };
            if let Some(kind) = AmrKind::of(r) {
                if let Ok(a) = AmrParams::parse(p, kind) {
                    let text = a.to_string();
                    assert_eq!(AmrParams::parse(&text, kind).as_ref(), Ok(&a));
                }
            } else if r.is("telephone-event") {
                if let Ok(e) = TelephoneEvents::parse(p) {
                    assert_eq!(
                        TelephoneEvents::parse(&e.to_string()).map(|x| x.events()),
                        Ok(e.events())
                    );
                }
            }
        }
        if let Some(q) = QosStatus::from_media(m) {
            let _ = q
                .answer(PrecondDirection::SendRecv, sdp::Strength::Mandatory)
                .met();
        }
    }

    let mut caps = LocalCaps::new(
        Origin::new("-", "1", 1, [127, 0, 0, 1].into()),
        [127, 0, 0, 1].into(),
        4000,
    );
    caps.codecs = vec![
        LocalCodec::amr(AmrKind::Nb, false),
        LocalCodec::amr(AmrKind::Nb, true),
        LocalCodec::amr(AmrKind::Wb, true),
        LocalCodec::pcma(),
        LocalCodec::telephone_event(8000),
        LocalCodec::telephone_event(16000),
    ];
    caps.direction = Direction::SendRecv;
    if let Ok(a) = answer(&s, &caps) {
        assert_eq!(a.media().len(), s.media().len());
        let bytes = a.to_bytes();
        let back = Session::parse(&bytes).expect("our answer parses");
        assert_eq!(back.to_bytes(), bytes);
    }
});
