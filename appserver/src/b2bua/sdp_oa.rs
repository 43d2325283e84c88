//! The B2BUA's SDP: the answer on the leg whose INVITE we received, and the offer on the
//! leg we call out on (RFC 3264 §5, §6), both from the plane's codec lists.

use sdp::{
    AmrKind, AmrParams, Attribute, Connection, Direction, Fmtp, LocalCaps, LocalCodec, Media,
    MediaLine, Origin, Rtpmap, Session,
};
use std::net::SocketAddr;

/// Our `o=` for a leg: one session id per leg, the version counted by the caller (RFC 3264
/// §8: each new offer or answer of ours increments it).
pub(crate) fn origin(session_id: &str, version: u64, addr: SocketAddr) -> Origin {
    Origin::new("-", session_id, version, addr.ip())
}

/// Our answer to `offer` with `codecs`, media on `addr`; `None` when no stream could be
/// accepted (the caller answers 488).
pub(crate) fn answer(
    offer: &Session,
    codecs: Vec<LocalCodec>,
    origin: Origin,
    addr: SocketAddr,
) -> Option<Session> {
    let mut caps = LocalCaps::new(origin, addr.ip(), addr.port());
    caps.codecs = codecs;
    let a = sdp::answer(offer, &caps).ok()?;
    a.media().iter().any(|m| m.line().port != 0).then_some(a)
}

/// One payload format of an offer: rtpmap and the fmtp text.
type Format = (Rtpmap, Option<String>);

/// Our offer on the leg we call out on: the caller's formats `caller_caps` can take
/// (`caller`: its offer, `None` to leave them out), then `local`'s formats not already
/// there, telephone-event last; media on `addr`.
pub(crate) fn offer(
    caller: Option<(&Session, Vec<LocalCodec>)>,
    local: &[LocalCodec],
    origin: Origin,
    addr: SocketAddr,
) -> Session {
    let mut voice: Vec<Format> = Vec::new();
    let mut events: Vec<Format> = Vec::new();
    if let Some((offer, caps)) = caller {
        // The answer machinery already knows which offered formats a codec list takes
        // (payload format parameters of RFC 4867 §8.3.1 included): ask it for all of them.
        let mut lc = LocalCaps::new(origin.clone(), addr.ip(), addr.port());
        lc.codecs = caps;
        lc.one_codec = false;
        if let Ok(a) = sdp::answer(offer, &lc) {
            if let Some(m) = a.media().iter().find(|m| m.line().port != 0) {
                for c in m.codecs() {
                    let Some(r) = c.rtpmap else { continue };
                    if r.is("telephone-event") {
                        events.push((r, c.fmtp));
                    } else {
                        voice.push((r, c.fmtp));
                    }
                }
            }
        }
    }
    let mut used: Vec<u8> = voice
        .iter()
        .chain(events.iter())
        .map(|f| f.0.payload_type)
        .collect();
    for l in local {
        let present = voice.iter().chain(events.iter()).any(|f| covers(f, l));
        if present {
            continue;
        }
        let Some(f) = format_of(l, &mut used) else {
            continue;
        };
        if matches!(l, LocalCodec::TelephoneEvent { .. }) {
            events.push(f);
        } else {
            voice.push(f);
        }
    }
    voice.extend(events);
    let pts: Vec<u8> = voice.iter().map(|f| f.0.payload_type).collect();
    let mut s = Session::new(origin);
    s.set_connection(Connection::new(addr.ip()));
    let mut m = Media::new(MediaLine::audio(addr.port(), &pts));
    for (r, f) in voice {
        let pt = r.payload_type;
        m.push_attribute(Attribute::Rtpmap(r));
        if let Some(f) = f.filter(|f| !f.is_empty()) {
            m.push_attribute(Attribute::Fmtp(Fmtp::new(pt, f)));
        }
    }
    m.push_attribute(Attribute::Ptime(20));
    m.push_attribute(Attribute::Maxptime(240));
    m.push_attribute(Attribute::Direction(Direction::SendRecv));
    s.push_media(m);
    s
}

/// True when format `f` already offers what `l` is.
fn covers(f: &Format, l: &LocalCodec) -> bool {
    let r = &f.0;
    match l {
        LocalCodec::Plain {
            encoding,
            clock_rate,
            channels,
        } => r.is(encoding) && r.clock_rate == *clock_rate && r.channels() == *channels,
        LocalCodec::TelephoneEvent { clock_rate, .. } => {
            r.is("telephone-event") && r.clock_rate == *clock_rate
        }
        LocalCodec::Amr { kind, params } => {
            AmrKind::of(r) == Some(*kind)
                && AmrParams::parse(f.1.as_deref().unwrap_or(""), *kind)
                    .is_ok_and(|p| p.same_payload_format(params))
        }
    }
}

/// The rtpmap and fmtp of `l` with a payload type: the static one of RFC 3551 §6 where it
/// has one, else the lowest free dynamic one (`used` is updated); `None` when all 32 are
/// taken.
fn format_of(l: &LocalCodec, used: &mut Vec<u8>) -> Option<Format> {
    let (encoding, rate, fmtp) = match l {
        LocalCodec::Plain {
            encoding,
            clock_rate,
            ..
        } => (encoding.clone(), *clock_rate, None),
        LocalCodec::TelephoneEvent { clock_rate, events } => (
            "telephone-event".to_string(),
            *clock_rate,
            Some(events.to_string()),
        ),
        LocalCodec::Amr { kind, params } => (
            kind.encoding().to_string(),
            kind.clock_rate(),
            Some(params.to_string()),
        ),
    };
    let fixed = match (encoding.to_ascii_uppercase().as_str(), rate) {
        ("PCMU", 8000) => Some(0),
        ("PCMA", 8000) => Some(8),
        ("G722", 8000) => Some(9),
        _ => None,
    };
    let pt = match fixed {
        Some(p) if !used.contains(&p) => p,
        _ => (96..128).find(|p| !used.contains(p))?,
    };
    used.push(pt);
    let mut r = Rtpmap::new(pt, &encoding, rate);
    if let LocalCodec::Plain { channels, .. } = l {
        if *channels != 1 {
            r.encoding_params = Some(*channels);
        }
    }
    Some((r, fmtp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "192.0.2.7:30000".parse().unwrap()
    }

    fn volte() -> Session {
        sdp::VolteOffer::new(
            Origin::new("-", "1", 1, "192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse().unwrap(),
            4000,
        )
        .build()
    }

    fn ims_codecs() -> Vec<LocalCodec> {
        vec![
            LocalCodec::amr(AmrKind::Nb, false),
            LocalCodec::amr(AmrKind::Nb, true),
            LocalCodec::pcma(),
            LocalCodec::telephone_event(8000),
        ]
    }

    #[test]
    fn offer_puts_callers_codecs_first_then_pcma_and_events() {
        let sip = vec![LocalCodec::pcma(), LocalCodec::telephone_event(8000)];
        let s = offer(
            Some((&volte(), ims_codecs())),
            &sip,
            origin("9", 1, addr()),
            addr(),
        );
        let m = &s.media()[0];
        assert_eq!(m.line().port, 30000);
        let names: Vec<String> = m
            .codecs()
            .iter()
            .map(|c| {
                let r = c.rtpmap.as_ref().unwrap();
                format!("{}:{}/{}", c.payload_type, r.encoding, r.clock_rate)
            })
            .collect();
        assert_eq!(
            names,
            [
                "98:AMR/8000",
                "99:AMR/8000",
                "8:PCMA/8000",
                "101:telephone-event/8000"
            ]
        );
        let text = String::from_utf8(s.to_bytes()).unwrap();
        assert!(text.contains("a=fmtp:99 octet-align=1"), "{text}");
        assert!(text.contains("c=IN IP4 192.0.2.7"), "{text}");
    }

    #[test]
    fn offer_without_caller_is_the_local_list_with_static_and_dynamic_types() {
        let s = offer(
            None,
            &[
                LocalCodec::pcma(),
                LocalCodec::pcmu(),
                LocalCodec::amr(AmrKind::Nb, true),
                LocalCodec::telephone_event(8000),
            ],
            origin("9", 1, addr()),
            addr(),
        );
        let pts: Vec<u8> = s.media()[0]
            .codecs()
            .iter()
            .map(|c| c.payload_type)
            .collect();
        assert_eq!(pts, [8, 0, 96, 97]);
    }

    #[test]
    fn answer_refuses_an_offer_without_common_codec() {
        let sip_only = vec![LocalCodec::plain("G729", 8000)];
        assert!(answer(&volte(), sip_only, origin("9", 1, addr()), addr()).is_none());
        let a = answer(&volte(), ims_codecs(), origin("9", 1, addr()), addr()).unwrap();
        let c = a
            .media()
            .iter()
            .find(|m| m.line().port != 0)
            .unwrap()
            .codecs();
        assert_eq!(c[0].rtpmap.as_ref().unwrap().encoding, "AMR");
    }
}
