//! The UE's offer/answer, made by the `sdp` crate: a VoLTE handset's audio offer
//! ([`sdp::VolteOffer`], TS 26.114 §6.2.2), the answer computed by the crate's RFC 3264
//! answerer, and the RFC 3312 `qos` precondition status ([`sdp::QosStatus`]) in the
//! segmented model of TS 24.229 §6.1.2.
//!
//! This UE reserves its access bearer at once, so its local segment is `none` in the first
//! offer (and in a callee's 183) and `sendrecv` from the UPDATE on.

use std::net::IpAddr;

use sdp::{
    AmrKind, Direction, LocalCaps, LocalCodec, Origin, PrecondDirection, QosStatus, Session,
    Strength, VolteOffer,
};

/// Payload types of our offer, as handsets number them: AMR-WB (bandwidth-efficient,
/// octet-aligned), AMR (same), telephone-event 16000, 8000.
const PAYLOAD_TYPES: [u8; 6] = [116, 107, 118, 111, 110, 100];

/// Where our media is and which `o=` line describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    /// our RTP address
    pub ip: IpAddr,
    /// our RTP port (the UE's real RTP socket)
    pub port: u16,
    /// `o=` session id
    pub session_id: u64,
    /// `o=` version, raised for every new offer or answer in the session (RFC 3264 §8)
    pub version: u64,
}

impl Local {
    fn origin(&self) -> Origin {
        Origin::new("-", &self.session_id.to_string(), self.version, self.ip)
    }
}

/// Our audio offer; `qos` adds the precondition lines.
pub(crate) fn offer(local: Local, qos: Option<QosStatus>) -> Session {
    let mut b = VolteOffer::new(local.origin(), local.ip, local.port);
    b.payload_types = PAYLOAD_TYPES;
    b.qos = qos;
    b.direction = Direction::SendRecv;
    b.build()
}

/// The status of our first offer with preconditions: nothing reserved yet, our segment
/// mandatory.
pub(crate) fn initial_qos() -> QosStatus {
    QosStatus::ue_initial_offer()
}

/// The status of the caller's UPDATE once its bearer is up, from the callee's last answer
/// (`peer`): our segment `sendrecv`, the callee's as it reported it, no confirmation asked.
pub(crate) fn update_qos(peer: Option<&Session>) -> QosStatus {
    match peer.and_then(qos) {
        Some(q) => q
            .answer(PrecondDirection::SendRecv, Strength::Mandatory)
            .with_local_current(PrecondDirection::SendRecv),
        None => initial_qos().with_local_current(PrecondDirection::SendRecv),
    }
}

/// What the UE can receive: AMR-WB and AMR in both payload formats, telephone-event at
/// both clock rates.
fn caps(local: Local, local_qos: PrecondDirection) -> LocalCaps {
    let mut c = LocalCaps::new(local.origin(), local.ip, local.port);
    c.codecs = vec![
        LocalCodec::amr(AmrKind::Wb, false),
        LocalCodec::amr(AmrKind::Wb, true),
        LocalCodec::amr(AmrKind::Nb, false),
        LocalCodec::amr(AmrKind::Nb, true),
        LocalCodec::telephone_event(16000),
        LocalCodec::telephone_event(8000),
    ];
    // the offerer's order decides (RFC 3264 §6.1); one voice codec, as handsets answer
    c.one_codec = true;
    c.qos = (local_qos, Strength::Mandatory);
    c
}

/// Our answer to `offer` with our segment `local_qos` when it carries preconditions; `None`
/// when no audio stream has a codec we speak (the UE then answers 488, RFC 3264 §6).
pub(crate) fn answer(
    offer: &Session,
    local: Local,
    local_qos: PrecondDirection,
) -> Option<Session> {
    let a = sdp::answer(offer, &caps(local, local_qos)).ok()?;
    a.media().iter().any(|m| m.line().port != 0).then_some(a)
}

/// A body as SDP; `None` when empty or unparsable.
pub(crate) fn parse(body: &[u8]) -> Option<Session> {
    if body.is_empty() {
        return None;
    }
    Session::parse(body).ok()
}

/// The `qos` status of the first audio stream that has one.
pub(crate) fn qos(s: &Session) -> Option<QosStatus> {
    s.media()
        .iter()
        .filter(|m| m.line().media == "audio")
        .find_map(QosStatus::from_media)
}

/// Whether an SDP asks for a mandatory QoS precondition (RFC 3312 §5).
pub(crate) fn wants_preconditions(s: &Session) -> bool {
    qos(s).is_some_and(|q| {
        q.local.strength == Strength::Mandatory || q.remote.strength == Strength::Mandatory
    })
}

/// Whether the writer of `s` reports its own segment reserved both ways.
pub(crate) fn peer_ready(s: &Session) -> bool {
    qos(s).is_some_and(|q| q.local.current.covers(PrecondDirection::SendRecv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(ip: &str, port: u16) -> Local {
        Local {
            ip: ip.parse().unwrap(),
            port,
            session_id: 7,
            version: 1,
        }
    }

    fn text(s: &Session) -> String {
        String::from_utf8(s.to_bytes()).unwrap()
    }

    #[test]
    fn offer_lists_both_codecs_in_both_formats_and_dtmf() {
        let o = text(&offer(local("127.0.0.2", 40000), None));
        assert!(o.starts_with("v=0\r\no=- 7 1 IN IP4 127.0.0.2\r\n"), "{o}");
        assert!(o.contains("m=audio 40000 RTP/AVP 116 107 118 111 110 100\r\n"));
        assert!(o.contains("a=fmtp:107 octet-align=1;mode-change-capability=2;max-red=0"));
        assert!(o.contains("a=rtpmap:100 telephone-event/8000"));
        assert!(o.contains("a=ptime:20\r\n") && o.contains("a=maxptime:240\r\n"));
        assert!(!o.contains("a=curr"));
        let v6 = text(&offer(local("::1", 40000), None));
        assert!(v6.contains("c=IN IP6 ::1\r\n"));
        let q = text(&offer(local("127.0.0.2", 40000), Some(initial_qos())));
        assert!(q.contains(
            "a=curr:qos local none\r\na=curr:qos remote none\r\n\
             a=des:qos mandatory local sendrecv\r\na=des:qos optional remote sendrecv\r\n"
        ));
    }

    #[test]
    fn answer_keeps_the_first_codec_and_its_dtmf() {
        let o = offer(local("127.0.0.2", 40000), None);
        let a = text(&answer(&o, local("127.0.0.3", 40002), PrecondDirection::None).unwrap());
        assert!(a.contains("m=audio 40002 RTP/AVP 116 110\r\n"), "{a}");
        assert!(
            a.contains("a=fmtp:116 mode-change-capability=2;max-red=0\r\n"),
            "{a}"
        );
        assert!(a.contains("c=IN IP4 127.0.0.3"));
        // an AMR-NB octet-aligned-only offer keeps its format, mode-set and the 8 kHz DTMF
        let nb = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 97 101 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:97 AMR/8000\r\n\
a=fmtp:97 octet-align=1;mode-set=2,7\r\na=rtpmap:101 telephone-event/8000\r\n";
        let o = Session::parse(nb.as_bytes()).unwrap();
        let a = text(&answer(&o, local("127.0.0.3", 40002), PrecondDirection::None).unwrap());
        assert!(a.contains("m=audio 40002 RTP/AVP 97 101\r\n"), "{a}");
        assert!(a.contains("a=fmtp:97 octet-align=1;mode-set=2,7"), "{a}");
        // nothing we speak
        let g711 = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let o = Session::parse(g711.as_bytes()).unwrap();
        assert!(answer(&o, local("127.0.0.3", 1), PrecondDirection::None).is_none());
        assert!(parse(b"garbage").is_none());
        assert!(parse(b"").is_none());
    }

    #[test]
    fn precondition_exchange() {
        let o = offer(local("127.0.0.2", 40000), Some(initial_qos()));
        assert!(wants_preconditions(&o));
        assert!(!peer_ready(&o));
        assert!(!wants_preconditions(&offer(local("127.0.0.2", 1), None)));
        // the callee's 183: nothing reserved, confirmation of the caller's segment asked
        let a183 = answer(&o, local("127.0.0.3", 40002), PrecondDirection::None).unwrap();
        let t = text(&a183);
        assert!(
            t.contains(
                "a=curr:qos local none\r\na=curr:qos remote none\r\n\
             a=des:qos mandatory local sendrecv\r\na=des:qos mandatory remote sendrecv\r\n\
             a=conf:qos remote sendrecv\r\n"
            ),
            "{t}"
        );
        // the caller's UPDATE: its segment up
        let mut l = local("127.0.0.2", 40000);
        l.version = 2;
        let upd = offer(l, Some(update_qos(Some(&a183))));
        let t = text(&upd);
        assert!(
            t.contains("a=curr:qos local sendrecv\r\na=curr:qos remote none\r\n"),
            "{t}"
        );
        assert!(t.contains("a=des:qos mandatory remote sendrecv\r\n"), "{t}");
        assert!(!t.contains("a=conf"), "{t}");
        assert!(t.contains(" 2 IN IP4 "));
        assert!(peer_ready(&upd));
        // the callee's answer to it: both segments up
        let ok = answer(&upd, local("127.0.0.3", 40002), PrecondDirection::SendRecv).unwrap();
        let t = text(&ok);
        assert!(
            t.contains("a=curr:qos local sendrecv\r\na=curr:qos remote sendrecv\r\n"),
            "{t}"
        );
        assert!(qos(&ok).is_some_and(|q| q.met()));
    }
}
