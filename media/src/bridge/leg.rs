//! What one leg of a bridged call negotiated, read from the SDP we sent there and the SDP
//! the peer sent (RFC 3264 offer/answer; RFC 4867 §8 for AMR, RFC 4733 §7 for DTMF).

use std::net::{IpAddr, SocketAddr};

use sdp::{AmrKind, AmrParams, Codec, Direction, Session};

use crate::amr::{AmrError, AmrFormat};

/// Why the two SDPs of a leg give no media the bridge can handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    /// One of the SDPs has no audio `m=` line with a port other than 0.
    #[error("no active audio stream")]
    NoAudio,
    /// No AMR, AMR-WB, PCMA or PCMU format in common.
    #[error("no common codec the bridge handles")]
    NoCommonCodec,
    /// The common AMR format uses options the payload code refuses.
    #[error("AMR payload: {0}")]
    Amr(#[from] AmrError),
    /// The AMR mode-sets of the two sides have no mode in common.
    #[error("AMR mode-sets have no mode in common")]
    NoMode,
}

/// The voice codec of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegCodec {
    /// AMR or AMR-WB in one payload format.
    Amr(AmrFormat),
    /// G.711 A-law.
    Pcma,
    /// G.711 µ-law.
    Pcmu,
}

impl LegCodec {
    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            LegCodec::Amr(f) => f.kind.clock_rate(),
            LegCodec::Pcma | LegCodec::Pcmu => 8000,
        }
    }

    /// The same codec (payload format aside): relaying needs no decoding.
    pub fn same_codec(self, other: LegCodec) -> bool {
        match (self, other) {
            (LegCodec::Amr(a), LegCodec::Amr(b)) => a.kind == b.kind,
            (a, b) => a == b,
        }
    }
}

/// telephone-event (RFC 4733) as negotiated on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfSpec {
    /// The payload type the peer receives it with (from the peer's SDP): what we send.
    pub send_pt: u8,
    /// The payload type we receive it with (from our SDP).
    pub recv_pt: u8,
    /// Clock rate in Hz (8000 or 16000).
    pub clock_rate: u32,
}

/// Everything the media plane needs about one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegSpec {
    /// The voice codec both sides agreed on.
    pub codec: LegCodec,
    /// Payload type the peer expects from us (its SDP's number for the codec).
    pub send_pt: u8,
    /// Payload type we receive the codec with (our SDP's number).
    pub recv_pt: u8,
    /// AMR modes we may send toward this peer (bit n = mode n): the intersection of both
    /// mode-sets, all modes when neither restricts them (RFC 4867 §8.3.1). 0 for G.711.
    pub modes: u16,
    /// telephone-event, when both sides have it.
    pub dtmf: Option<DtmfSpec>,
    /// Packetization toward the peer in ms (its `a=ptime`, RFC 4566 §6: what it wants to
    /// receive), a multiple of 20 for AMR, 10 to 120.
    pub ptime: u32,
    /// Where to send RTP; `None` while the peer holds the call with a zero address.
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP: `a=rtcp` (RFC 3605), else the RTP port + 1 (RFC 3550 §11).
    pub remote_rtcp: Option<SocketAddr>,
    /// What we do on this leg: send only if we and the peer agreed we send, receive only if
    /// the peer sends (`sendonly`/`recvonly`/`inactive` and hold per RFC 3264 §8.4).
    pub direction: Direction,
}

impl LegSpec {
    /// The leg from the SDP we sent (`local`) and the SDP the peer sent (`remote`), offer or
    /// answer either way round. The codec is the first voice format of the answer's `m=`
    /// line that the other SDP also has; the answer is taken to be the one with fewer voice
    /// formats (an answer lists a subset of the offer's, RFC 3264 §6.1), `remote` on a tie.
    pub fn from_sdp(local: &Session, remote: &Session) -> Result<LegSpec, LegError> {
        let (li, lm) = first_audio(local).ok_or(LegError::NoAudio)?;
        let (ri, rm) = first_audio(remote).ok_or(LegError::NoAudio)?;
        let lc = lm.codecs();
        let rc = rm.codecs();
        let voice = |c: &[Codec]| c.iter().filter(|c| voice_of(c).is_some()).count();
        let local_is_answer = voice(&lc) < voice(&rc);
        let (answer, other) = if local_is_answer {
            (&lc, &rc)
        } else {
            (&rc, &lc)
        };
        let mut found = None;
        for a in answer {
            let Some(va) = voice_of(a) else { continue };
            if let Some(o) = other
                .iter()
                .find(|o| voice_of(o).is_some_and(|vo| va.matches(&vo)))
            {
                found = Some(if local_is_answer { (a, o) } else { (o, a) });
                break;
            }
        }
        let (l, r) = found.ok_or(LegError::NoCommonCodec)?;
        let (lv, rv) = match (voice_of(l), voice_of(r)) {
            (Some(lv), Some(rv)) => (lv, rv),
            _ => return Err(LegError::NoCommonCodec),
        };
        let (codec, modes) = match (&lv, &rv) {
            (Voice::Amr(kind, lp), Voice::Amr(_, rp)) => {
                let format = AmrFormat::from_params(*kind, rp)?;
                let all = (1u16 << (kind.max_mode() + 1)) - 1;
                let modes = match lp.mode_set_intersection(rp) {
                    None => all,
                    Some(m) => m.iter().fold(0u16, |acc, &x| acc | (1 << x)) & all,
                };
                if modes == 0 {
                    return Err(LegError::NoMode);
                }
                (LegCodec::Amr(format), modes)
            }
            (Voice::Pcma, _) => (LegCodec::Pcma, 0),
            _ => (LegCodec::Pcmu, 0),
        };
        let rate = codec.clock_rate();
        let dtmf = dtmf_pair(&lc, &rc, rate).map(|(lpt, rpt, clock_rate)| DtmfSpec {
            send_pt: rpt,
            recv_pt: lpt,
            clock_rate,
        });
        let raw_ptime = rm.ptime().unwrap_or(20).clamp(10, 120);
        let ptime = match codec {
            LegCodec::Amr(_) => (raw_ptime / 20).max(1) * 20,
            _ => raw_ptime / 10 * 10,
        };
        let ip = remote
            .media_connection(ri)
            .and_then(|c| c.ip())
            .filter(|ip| !ip.is_unspecified());
        let remote_rtp = ip.map(|ip| SocketAddr::new(ip, rm.line().port));
        let remote_rtcp = ip.map(|ip| match rm.rtcp() {
            Some(r) => {
                let addr = r
                    .address
                    .as_deref()
                    .and_then(|a| a.split_ascii_whitespace().nth(2))
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .unwrap_or(ip);
                SocketAddr::new(addr, r.port)
            }
            None => SocketAddr::new(ip, rm.line().port.wrapping_add(1)),
        });
        let ld = local.media_direction(li).unwrap_or(Direction::SendRecv);
        let rd = remote.media_direction(ri).unwrap_or(Direction::SendRecv);
        let direction = Direction::from_flags(
            ld.sends() && rd.receives() && remote_rtp.is_some(),
            ld.receives() && rd.sends(),
        );
        Ok(LegSpec {
            codec,
            send_pt: r.payload_type,
            recv_pt: l.payload_type,
            modes,
            dtmf,
            ptime,
            remote_rtp,
            remote_rtcp,
            direction,
        })
    }

    /// The highest mode we may send toward this peer at or below `request` (its CMR), or
    /// the highest allowed without a request. `None` for G.711.
    pub fn send_mode(&self, request: Option<u8>) -> Option<u8> {
        let LegCodec::Amr(f) = self.codec else {
            return None;
        };
        let cap = request.unwrap_or(f.kind.max_mode()).min(f.kind.max_mode());
        // A request below every allowed mode gets the lowest allowed one (§4.3.1: the
        // receiver must not exceed the mode-set, so the set wins over the request).
        (0..=cap)
            .rev()
            .find(|m| self.modes & (1 << m) != 0)
            .or_else(|| (0..=f.kind.max_mode()).find(|m| self.modes & (1 << m) != 0))
    }
}

fn first_audio(s: &Session) -> Option<(usize, &sdp::Media)> {
    s.media()
        .iter()
        .enumerate()
        .find(|(_, m)| m.line().media == "audio" && m.line().port != 0)
}

#[derive(Debug, Clone)]
enum Voice {
    Amr(AmrKind, AmrParams),
    Pcma,
    Pcmu,
}

impl Voice {
    fn matches(&self, o: &Voice) -> bool {
        match (self, o) {
            (Voice::Amr(a, pa), Voice::Amr(b, pb)) => a == b && pa.same_payload_format(pb),
            (Voice::Pcma, Voice::Pcma) | (Voice::Pcmu, Voice::Pcmu) => true,
            _ => false,
        }
    }
}

fn voice_of(c: &Codec) -> Option<Voice> {
    let r = c.rtpmap.as_ref()?;
    if r.channels() != 1 {
        return None;
    }
    if let Some(kind) = AmrKind::of(r) {
        let params = AmrParams::parse(c.fmtp.as_deref().unwrap_or(""), kind).ok()?;
        return Some(Voice::Amr(kind, params));
    }
    if r.clock_rate != 8000 {
        return None;
    }
    if r.is("PCMA") {
        Some(Voice::Pcma)
    } else if r.is("PCMU") {
        Some(Voice::Pcmu)
    } else {
        None
    }
}

/// The telephone-event formats of both sides at the same clock rate, preferring the voice
/// codec's rate (RFC 4733 §2.1: the event clock should be the audio clock).
fn dtmf_pair(local: &[Codec], remote: &[Codec], voice_rate: u32) -> Option<(u8, u8, u32)> {
    let te = |c: &Codec| {
        c.rtpmap
            .as_ref()
            .filter(|r| r.is("telephone-event"))
            .map(|r| (c.payload_type, r.clock_rate))
    };
    let pairs = || {
        local.iter().filter_map(te).flat_map(move |(lpt, lrate)| {
            remote
                .iter()
                .filter_map(te)
                .filter(move |&(_, rrate)| rrate == lrate)
                .map(move |(rpt, _)| (lpt, rpt, lrate))
        })
    };
    pairs()
        .find(|&(_, _, rate)| rate == voice_rate)
        .or_else(|| pairs().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdp::{answer, G711Offer, LocalCaps, LocalCodec, Origin, VolteOffer};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn volte_offer_answered_with_octet_aligned_amr() {
        let ue = ip("10.0.0.5");
        let offer = VolteOffer::new(Origin::new("-", "1", 1, ue), ue, 4000).build();
        let me = ip("10.0.0.9");
        let mut caps = LocalCaps::new(Origin::new("as", "7", 1, me), me, 6000);
        caps.codecs = vec![
            LocalCodec::amr(AmrKind::Nb, true),
            LocalCodec::pcma(),
            LocalCodec::telephone_event(8000),
        ];
        let ans = answer(&offer, &caps).unwrap();
        // We answered: local is the answer.
        let leg = LegSpec::from_sdp(&ans, &offer).unwrap();
        assert_eq!(
            leg.codec,
            LegCodec::Amr(AmrFormat::octet_aligned(AmrKind::Nb))
        );
        assert_eq!((leg.send_pt, leg.recv_pt), (99, 99));
        assert_eq!(leg.modes, 0xFF);
        assert_eq!(leg.send_mode(None), Some(7));
        assert_eq!(leg.send_mode(Some(4)), Some(4));
        assert_eq!(
            leg.dtmf,
            Some(DtmfSpec {
                send_pt: 101,
                recv_pt: 101,
                clock_rate: 8000
            })
        );
        assert_eq!(leg.remote_rtp, Some("10.0.0.5:4000".parse().unwrap()));
        assert_eq!(leg.remote_rtcp, Some("10.0.0.5:4001".parse().unwrap()));
        assert_eq!(leg.ptime, 20);
        assert_eq!(leg.direction, Direction::SendRecv);
    }

    #[test]
    fn g711_answer_by_peer_with_ptime_rtcp_and_hold() {
        let me = ip("10.0.0.9");
        let offer = G711Offer::new(Origin::new("as", "1", 1, me), me, 6002).build();
        let pbx = ip("192.0.2.1");
        let mut caps = LocalCaps::new(Origin::new("pbx", "2", 1, pbx), pbx, 7000);
        caps.codecs = vec![LocalCodec::pcmu(), LocalCodec::telephone_event(8000)];
        caps.ptime = Some(30);
        caps.direction = Direction::RecvOnly;
        let mut ans = answer(&offer, &caps).unwrap();
        ans.media_mut()[0].push_attribute(sdp::Attribute::Rtcp(sdp::Rtcp {
            port: 7100,
            address: None,
        }));
        let leg = LegSpec::from_sdp(&offer, &ans).unwrap();
        assert_eq!(leg.codec, LegCodec::Pcmu);
        assert_eq!((leg.send_pt, leg.recv_pt), (0, 0));
        assert_eq!(leg.ptime, 30);
        assert_eq!(leg.remote_rtcp, Some("192.0.2.1:7100".parse().unwrap()));
        // The peer only receives: we send, we do not expect to receive.
        assert_eq!(leg.direction, Direction::SendOnly);
        assert_eq!(leg.send_mode(None), None);
    }

    #[test]
    fn mode_set_intersection_limits_modes_and_zero_address_is_hold() {
        let parse = |s: &str| Session::parse(s.replace('\n', "\r\n").as_bytes()).unwrap();
        let local = parse(
            "v=0\no=- 1 1 IN IP4 10.0.0.9\ns=-\nc=IN IP4 10.0.0.9\nt=0 0\n\
             m=audio 6000 RTP/AVP 97\na=rtpmap:97 AMR/8000/1\na=fmtp:97 mode-set=0,2,4,7\n",
        );
        let remote = parse(
            "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n\
             m=audio 4000 RTP/AVP 96\na=rtpmap:96 AMR/8000/1\na=fmtp:96 mode-set=0,2,4\n",
        );
        let leg = LegSpec::from_sdp(&local, &remote).unwrap();
        assert_eq!(
            leg.codec,
            LegCodec::Amr(AmrFormat::bandwidth_efficient(AmrKind::Nb))
        );
        assert_eq!(leg.modes, 0b10101);
        assert_eq!(leg.send_mode(None), Some(4));
        assert_eq!(leg.send_mode(Some(3)), Some(2));
        assert_eq!(leg.send_mode(Some(7)), Some(4));
        assert_eq!((leg.send_pt, leg.recv_pt), (96, 97));
        assert_eq!(leg.remote_rtp, None);
        assert!(!leg.direction.sends());
        assert!(leg.direction.receives());
    }

    #[test]
    fn no_common_codec_is_an_error() {
        let parse = |s: &str| Session::parse(s.replace('\n', "\r\n").as_bytes()).unwrap();
        let a = parse(
            "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=-\nc=IN IP4 1.1.1.1\nt=0 0\nm=audio 6000 RTP/AVP 8\n",
        );
        let b = parse(
            "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=-\nc=IN IP4 1.1.1.1\nt=0 0\nm=audio 6000 RTP/AVP 0 9\n",
        );
        assert_eq!(LegSpec::from_sdp(&a, &b), Err(LegError::NoCommonCodec));
        let c = parse(
            "v=0\no=- 1 1 IN IP4 1.1.1.1\ns=-\nc=IN IP4 1.1.1.1\nt=0 0\nm=audio 0 RTP/AVP 8\n",
        );
        assert_eq!(LegSpec::from_sdp(&a, &c), Err(LegError::NoAudio));
    }
}
