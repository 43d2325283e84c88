//! Generating an answer to an offer (RFC 3264 §6) from what this side can do.

use std::net::IpAddr;

use crate::amr::{AmrKind, AmrParams};
use crate::attr::{Attribute, Direction, Fmtp, PrecondDirection, Rtpmap, Strength};
use crate::dtmf::TelephoneEvents;
use crate::error::SdpError;
use crate::model::{Bandwidth, Connection, MediaLine, Origin};
use crate::precondition::QosStatus;
use crate::session::{Codec, Media, Session};

/// One payload format this side can receive and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalCodec {
    /// AMR or AMR-WB in one payload format configuration. List one entry per
    /// configuration supported (bandwidth-efficient and octet-aligned are two entries):
    /// an offered payload type matches only an entry with the same octet-align, crc,
    /// robust-sorting, interleaving and channels (RFC 4867 §8.3.1). The entry's `mode_set`
    /// restricts the modes, its `max_red` is written into the answer.
    Amr {
        /// AMR or AMR-WB.
        kind: AmrKind,
        /// The configuration.
        params: AmrParams,
    },
    /// telephone-event (RFC 4733) at a clock rate, with the events this side handles.
    TelephoneEvent {
        /// 8000 or 16000 in IMS, matching the voice codec's rate.
        clock_rate: u32,
        /// Events supported.
        events: TelephoneEvents,
    },
    /// Any codec matched on encoding name (case-insensitive), clock rate and channels,
    /// answered without fmtp (PCMA, PCMU, G722, …).
    Plain {
        /// Encoding name.
        encoding: String,
        /// Clock rate in Hz.
        clock_rate: u32,
        /// Audio channels.
        channels: u32,
    },
}

impl LocalCodec {
    /// G.711 A-law (PCMA/8000).
    pub fn pcma() -> Self {
        Self::plain("PCMA", 8000)
    }

    /// G.711 µ-law (PCMU/8000).
    pub fn pcmu() -> Self {
        Self::plain("PCMU", 8000)
    }

    /// A codec matched by name and rate, one channel.
    pub fn plain(encoding: &str, clock_rate: u32) -> Self {
        LocalCodec::Plain {
            encoding: encoding.to_owned(),
            clock_rate,
            channels: 1,
        }
    }

    /// AMR/AMR-WB in one payload format, `max-red=0` (no redundancy).
    pub fn amr(kind: AmrKind, octet_aligned: bool) -> Self {
        LocalCodec::Amr {
            kind,
            params: AmrParams {
                octet_align: octet_aligned.then_some(true),
                max_red: Some(0),
                ..AmrParams::default()
            },
        }
    }

    /// DTMF events 0-15 at a clock rate.
    pub fn telephone_event(clock_rate: u32) -> Self {
        LocalCodec::TelephoneEvent {
            clock_rate,
            events: TelephoneEvents::dtmf(),
        }
    }
}

/// What the answering side can do, and the values it writes into its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCaps {
    /// Our `o=`; the caller increments the version for later answers (RFC 3264 §8).
    pub origin: Origin,
    /// Our media address (session-level `c=`).
    pub address: IpAddr,
    /// Our RTP port for the one audio stream we accept; other streams are rejected.
    pub audio_port: u16,
    /// Payload formats we support (the offerer's order decides, RFC 3264 §6.1).
    pub codecs: Vec<LocalCodec>,
    /// Accept only the first common voice codec (IMS practice, and what a B2BUA that
    /// transcodes one codec needs), instead of every common one.
    pub one_codec: bool,
    /// What we are willing to do; the answered direction also depends on the offer.
    pub direction: Direction,
    /// `a=ptime` of the answer.
    pub ptime: Option<u32>,
    /// `a=maxptime` of the answer.
    pub maxptime: Option<u32>,
    /// Media-level `b=` lines of the answer.
    pub bandwidth: Vec<Bandwidth>,
    /// Our resources when the offer carries `qos` preconditions (`sendrecv` for a network
    /// element without an access bearer), and the strength we want on our segment.
    pub qos: (PrecondDirection, Strength),
}

impl LocalCaps {
    /// Defaults for a network-side answerer: sendrecv, one codec, ptime 20, maxptime 240,
    /// our segment's resources up and mandatory; no codecs yet.
    pub fn new(origin: Origin, address: IpAddr, audio_port: u16) -> Self {
        LocalCaps {
            origin,
            address,
            audio_port,
            codecs: Vec::new(),
            one_codec: true,
            direction: Direction::SendRecv,
            ptime: Some(20),
            maxptime: Some(240),
            bandwidth: Vec::new(),
            qos: (PrecondDirection::SendRecv, Strength::Mandatory),
        }
    }
}

/// The answer to `offer` (RFC 3264 §6): one `m=` per offered `m=`, in order; the first
/// offered audio RTP stream with a common codec is accepted on `caps.audio_port`, every other
/// stream gets port 0. Fails only when the accepted stream has no connection address.
pub fn answer(offer: &Session, caps: &LocalCaps) -> Result<Session, SdpError> {
    let mut out = Session::new(caps.origin.clone());
    out.set_connection(Connection::new(caps.address));
    let mut accepted = false;
    for (i, m) in offer.media().iter().enumerate() {
        let line = m.line();
        let rtp = line.proto == "RTP/AVP" || line.proto == "RTP/AVPF";
        let chosen = if !accepted && line.port != 0 && line.media == "audio" && rtp {
            choose(m, caps)
        } else {
            Vec::new()
        };
        if chosen.is_empty() {
            out.push_media(Media::new(MediaLine {
                port: 0,
                ..line.clone()
            }));
            continue;
        }
        if offer.media_connection(i).is_none() {
            return Err(SdpError::Media {
                index: i,
                what: "no c= line at media or session level".into(),
            });
        }
        accepted = true;
        let pts: Vec<u8> = chosen.iter().map(|c| c.0.payload_type).collect();
        let mut a = Media::new(MediaLine {
            port: caps.audio_port,
            port_count: None,
            formats: pts.iter().map(u8::to_string).collect(),
            ..line.clone()
        });
        for b in &caps.bandwidth {
            a.set_bandwidth(b.clone());
        }
        for (rtpmap, fmtp) in chosen {
            let pt = rtpmap.payload_type;
            a.push_attribute(Attribute::Rtpmap(rtpmap));
            if let Some(p) = fmtp {
                a.push_attribute(Attribute::Fmtp(Fmtp::new(pt, p)));
            }
        }
        if let Some(p) = caps.ptime {
            a.push_attribute(Attribute::Ptime(p));
        }
        if let Some(p) = caps.maxptime {
            a.push_attribute(Attribute::Maxptime(p));
        }
        let offered = offer.media_direction(i).unwrap_or(Direction::SendRecv);
        a.push_attribute(Attribute::Direction(Direction::answer(
            offered,
            caps.direction,
        )));
        if let Some(mid) = m.mid() {
            a.push_attribute(Attribute::Mid(mid.to_owned()));
        }
        if let Some(q) = QosStatus::from_media(m) {
            a.set_qos(&q.answer(caps.qos.0, caps.qos.1));
        }
        out.push_media(a);
    }
    Ok(out)
}

/// The accepted formats of one offered stream, in the offer's order, with the fmtp text of
/// the answer: voice codecs first decided, then telephone-event at their clock rates.
fn choose(m: &Media, caps: &LocalCaps) -> Vec<(Rtpmap, Option<String>)> {
    let codecs = m.codecs();
    let mut voice: Vec<(usize, Rtpmap, Option<String>)> = Vec::new();
    for (i, c) in codecs.iter().enumerate() {
        let Some(r) = &c.rtpmap else { continue };
        if r.is("telephone-event") {
            continue;
        }
        if let Some(fmtp) = caps.codecs.iter().find_map(|l| match_voice(c, r, l)) {
            voice.push((i, r.clone(), fmtp));
            if caps.one_codec {
                break;
            }
        }
    }
    let mut rates: Vec<u32> = voice.iter().map(|v| v.1.clock_rate).collect();
    let mut events = Vec::new();
    for (i, c) in codecs.iter().enumerate() {
        let Some(r) = &c.rtpmap else { continue };
        if !r.is("telephone-event") {
            continue;
        }
        // One telephone-event per voice clock rate (RFC 4733 §2.1: same clock as the audio).
        let Some(k) = rates.iter().position(|&x| x == r.clock_rate) else {
            continue;
        };
        let offered = match c.fmtp.as_deref().map(str::trim) {
            // RFC 4733 §2.4.1: without a list the receiver assumes 0-15.
            None | Some("") => TelephoneEvents::dtmf(),
            Some(p) => match TelephoneEvents::parse(p) {
                Ok(e) => e,
                Err(_) => continue,
            },
        };
        let common = caps.codecs.iter().find_map(|l| match l {
            LocalCodec::TelephoneEvent { clock_rate, events } if *clock_rate == r.clock_rate => {
                Some(events.intersection(&offered))
            }
            _ => None,
        });
        if let Some(e) = common.filter(|e| !e.is_empty()) {
            rates.remove(k);
            events.push((i, r.clone(), Some(e.to_string())));
        }
    }
    voice.extend(events);
    voice.sort_by_key(|v| v.0);
    voice.into_iter().map(|(_, r, f)| (r, f)).collect()
}

/// The answer's fmtp for an offered voice format if `local` can take it.
fn match_voice(c: &Codec, r: &Rtpmap, local: &LocalCodec) -> Option<Option<String>> {
    match local {
        LocalCodec::Amr { kind, params } => {
            if AmrKind::of(r) != Some(*kind) {
                return None;
            }
            let offered = AmrParams::parse(c.fmtp.as_deref().unwrap_or(""), *kind).ok()?;
            // Channels may be said in the rtpmap or the fmtp; both count.
            let ch = u8::try_from(offered.channels.map_or(r.channels(), u32::from)).ok()?;
            let with_rtpmap_channels = AmrParams {
                channels: Some(ch),
                ..offered.clone()
            };
            let ours = AmrParams {
                channels: Some(params.channel_count()),
                ..params.clone()
            };
            if !with_rtpmap_channels.same_payload_format(&ours) {
                return None;
            }
            let mode_set = match offered.mode_set_intersection(params) {
                Some(m) if m.is_empty() => return None,
                m => m,
            };
            // RFC 4867 §8.3.1: the configuration parameters are echoed, mode-set narrowed;
            // mode-change-capability=2 because some UEs reject an answer without it.
            let a = AmrParams {
                octet_align: offered.octet_align,
                mode_set,
                mode_change_period: offered.mode_change_period,
                mode_change_capability: Some(2),
                mode_change_neighbor: offered.mode_change_neighbor,
                max_red: params.max_red,
                crc: offered.crc,
                robust_sorting: offered.robust_sorting,
                interleaving: offered.interleaving,
                channels: offered.channels,
                other: Vec::new(),
            };
            Some(Some(a.to_string()))
        }
        LocalCodec::Plain {
            encoding,
            clock_rate,
            channels,
        } => (r.is(encoding) && r.clock_rate == *clock_rate && r.channels() == *channels)
            .then_some(None),
        LocalCodec::TelephoneEvent { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(codecs: Vec<LocalCodec>) -> LocalCaps {
        let mut c = LocalCaps::new(
            Origin::new("as", "55", 1, "192.0.2.9".parse().unwrap()),
            "192.0.2.9".parse().unwrap(),
            6000,
        );
        c.codecs = codecs;
        c
    }

    /// An offer with one audio stream of `fmts` (`(pt, rtpmap, fmtp)`) and `extra` lines.
    fn offer(fmts: &[(u8, &str, &str)], extra: &str) -> Session {
        let pts: Vec<String> = fmts.iter().map(|f| f.0.to_string()).collect();
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP {}\r\n",
            pts.join(" ")
        );
        for (pt, map, fmtp) in fmts {
            s += &format!("a=rtpmap:{pt} {map}\r\n");
            if !fmtp.is_empty() {
                s += &format!("a=fmtp:{pt} {fmtp}\r\n");
            }
        }
        s += extra;
        Session::parse(s.as_bytes()).unwrap()
    }

    fn formats(a: &Session) -> Vec<String> {
        a.media()[0].line().formats.clone()
    }

    fn fmtp(a: &Session, pt: u8) -> Option<String> {
        a.media()[0].fmtp(&pt.to_string()).map(|f| f.params.clone())
    }

    #[test]
    fn octet_align_mismatch_is_no_amr_match() {
        let o = offer(&[(97, "AMR/8000/1", "mode-change-capability=2")], "");
        let a = answer(&o, &caps(vec![LocalCodec::amr(AmrKind::Nb, true)])).unwrap();
        assert_eq!(
            a.media()[0].line().port,
            0,
            "no common codec rejects the stream"
        );
        assert_eq!(formats(&a), ["97"]);
        let o = offer(&[(97, "AMR/8000/1", "octet-align=1")], "");
        let a = answer(&o, &caps(vec![LocalCodec::amr(AmrKind::Nb, false)])).unwrap();
        assert_eq!(a.media()[0].line().port, 0);
        // crc is part of the configuration as well.
        let o = offer(&[(97, "AMR/8000/1", "octet-align=1;crc=1")], "");
        let a = answer(&o, &caps(vec![LocalCodec::amr(AmrKind::Nb, true)])).unwrap();
        assert_eq!(a.media()[0].line().port, 0);
    }

    #[test]
    fn amr_answer_echoes_configuration_and_sets_mode_change_capability() {
        let o = offer(
            &[
                (96, "AMR/8000/1", "mode-change-capability=2;max-red=0"),
                (
                    97,
                    "AMR/8000/1",
                    "octet-align=1;mode-change-period=2;mode-change-neighbor=1",
                ),
            ],
            "",
        );
        let a = answer(&o, &caps(vec![LocalCodec::amr(AmrKind::Nb, true)])).unwrap();
        assert_eq!(a.media()[0].line().port, 6000);
        assert_eq!(formats(&a), ["97"]);
        assert_eq!(
            fmtp(&a, 97).as_deref(),
            Some("octet-align=1;mode-change-period=2;mode-change-capability=2;mode-change-neighbor=1;max-red=0")
        );
        assert_eq!(
            a.media()[0].rtpmap(97).map(ToString::to_string).as_deref(),
            Some("97 AMR/8000/1")
        );
    }

    #[test]
    fn mode_set_is_intersected() {
        let o = offer(&[(97, "AMR/8000", "octet-align=1;mode-set=0,2,4,7")], "");
        let mut c = caps(vec![LocalCodec::amr(AmrKind::Nb, true)]);
        if let LocalCodec::Amr { params, .. } = &mut c.codecs[0] {
            params.mode_set = Some(vec![7, 5, 4]);
        }
        let a = answer(&o, &c).unwrap();
        let p = AmrParams::parse(&fmtp(&a, 97).unwrap(), AmrKind::Nb).unwrap();
        assert_eq!(p.mode_set, Some(vec![4, 7]));
        assert!(p.is_octet_aligned());
        // No mode in common: that payload type cannot be used.
        if let LocalCodec::Amr { params, .. } = &mut c.codecs[0] {
            params.mode_set = Some(vec![1, 3]);
        }
        let a = answer(&o, &c).unwrap();
        assert_eq!(a.media()[0].line().port, 0);
        // Only the offer restricts: its set stands.
        if let LocalCodec::Amr { params, .. } = &mut c.codecs[0] {
            params.mode_set = None;
        }
        let p = AmrParams::parse(&fmtp(&answer(&o, &c).unwrap(), 97).unwrap(), AmrKind::Nb);
        assert_eq!(p.unwrap().mode_set, Some(vec![0, 2, 4, 7]));
    }

    #[test]
    fn telephone_event_at_the_voice_clock_rate() {
        let fmts = [
            (116, "AMR-WB/16000/1", ""),
            (118, "AMR/8000/1", ""),
            (111, "telephone-event/16000", "0-15"),
            (110, "telephone-event/8000", "0-15"),
        ];
        let o = offer(&fmts, "");
        let both_te = || {
            vec![
                LocalCodec::telephone_event(8000),
                LocalCodec::telephone_event(16000),
            ]
        };
        let mut wb = both_te();
        wb.push(LocalCodec::amr(AmrKind::Wb, false));
        let a = answer(&o, &caps(wb)).unwrap();
        assert_eq!(formats(&a), ["116", "111"]);
        assert_eq!(fmtp(&a, 111).as_deref(), Some("0-15"));
        let mut nb = both_te();
        nb.push(LocalCodec::amr(AmrKind::Nb, false));
        let a = answer(&o, &caps(nb)).unwrap();
        assert_eq!(formats(&a), ["118", "110"]);
        // We only do telephone-event at 8000: no DTMF format for a wideband call.
        let a = answer(
            &o,
            &caps(vec![
                LocalCodec::amr(AmrKind::Wb, false),
                LocalCodec::telephone_event(8000),
            ]),
        )
        .unwrap();
        assert_eq!(formats(&a), ["116"]);
    }

    #[test]
    fn telephone_event_events_are_intersected() {
        let o = offer(
            &[
                (8, "PCMA/8000", ""),
                (101, "telephone-event/8000", "0-11,16"),
            ],
            "",
        );
        let mut c = caps(vec![LocalCodec::pcma()]);
        c.codecs.push(LocalCodec::TelephoneEvent {
            clock_rate: 8000,
            events: TelephoneEvents::parse("0-15").unwrap(),
        });
        let a = answer(&o, &c).unwrap();
        assert_eq!(fmtp(&a, 101).as_deref(), Some("0-11"));
    }

    #[test]
    fn all_common_formats_in_offer_order() {
        let o = offer(
            &[
                (0, "PCMU/8000", ""),
                (96, "AMR/8000/1", ""),
                (8, "PCMA/8000", ""),
                (97, "AMR/8000/1", "octet-align=1"),
                (101, "telephone-event/8000", ""),
            ],
            "",
        );
        let mut c = caps(vec![
            LocalCodec::amr(AmrKind::Nb, true),
            LocalCodec::pcma(),
            LocalCodec::amr(AmrKind::Nb, false),
            LocalCodec::telephone_event(8000),
        ]);
        c.one_codec = false;
        let a = answer(&o, &c).unwrap();
        assert_eq!(formats(&a), ["96", "8", "97", "101"]);
        // Offered without fmtp: the receiver assumes 0-15 (RFC 4733 §2.4.1).
        assert_eq!(fmtp(&a, 101).as_deref(), Some("0-15"));
        c.one_codec = true;
        assert_eq!(formats(&answer(&o, &c).unwrap()), ["96", "101"]);
        // An fmtp line without events means the same default.
        let mut body = o.to_bytes();
        body.extend_from_slice(b"a=fmtp:101\r\n");
        let o = Session::parse(&body).unwrap();
        assert_eq!(fmtp(&answer(&o, &c).unwrap(), 101).as_deref(), Some("0-15"));
    }

    #[test]
    fn direction_per_rfc3264() {
        let pcma = [(8, "PCMA/8000", "")];
        let c = caps(vec![LocalCodec::pcma()]);
        for (extra, expect) in [
            ("", Direction::SendRecv),
            ("a=sendonly\r\n", Direction::RecvOnly),
            ("a=recvonly\r\n", Direction::SendOnly),
            ("a=inactive\r\n", Direction::Inactive),
        ] {
            let a = answer(&offer(&pcma, extra), &c).unwrap();
            assert_eq!(a.media()[0].direction(), Some(expect), "{extra:?}");
        }
        // Session-level direction applies to media without its own.
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
a=sendonly\r\nm=audio 4000 RTP/AVP 8\r\n";
        let a = answer(&Session::parse(text.as_bytes()).unwrap(), &c).unwrap();
        assert_eq!(a.media()[0].direction(), Some(Direction::RecvOnly));
        let mut c = c;
        c.direction = Direction::RecvOnly;
        let a = answer(&offer(&pcma, ""), &c).unwrap();
        assert_eq!(a.media()[0].direction(), Some(Direction::RecvOnly));
    }

    #[test]
    fn other_streams_are_rejected_with_port_zero() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=video 5000 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n\
m=audio 0 RTP/AVP 8\r\n\
m=audio 4000 RTP/SAVP 8\r\n\
m=audio 4002 RTP/AVP 8\r\na=mid:a1\r\n\
m=audio 4004 RTP/AVP 8\r\n";
        let a = answer(
            &Session::parse(text.as_bytes()).unwrap(),
            &caps(vec![LocalCodec::pcma()]),
        )
        .unwrap();
        let ports: Vec<u16> = a.media().iter().map(|m| m.line().port).collect();
        assert_eq!(ports, [0, 0, 0, 6000, 0]);
        assert_eq!(a.media()[0].line().media, "video");
        assert_eq!(a.media()[0].line().formats, ["99"]);
        assert_eq!(a.media()[3].mid(), Some("a1"));
        // Rejected descriptions carry nothing but the m= line.
        assert_eq!(a.media()[0].fields().count(), 1);
        let again = Session::parse(&a.to_bytes()).unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn accepted_stream_needs_a_connection() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";
        let e = answer(
            &Session::parse(text.as_bytes()).unwrap(),
            &caps(vec![LocalCodec::pcma()]),
        );
        assert!(matches!(e, Err(SdpError::Media { index: 0, .. })));
        let with_media_c = text.replace("RTP/AVP 8\r\n", "RTP/AVP 8\r\nc=IN IP4 192.0.2.1\r\n");
        assert!(answer(
            &Session::parse(with_media_c.as_bytes()).unwrap(),
            &caps(vec![LocalCodec::pcma()])
        )
        .is_ok());
    }

    #[test]
    fn preconditions_are_answered_when_offered() {
        let q = "a=curr:qos local none\r\na=curr:qos remote none\r\n\
a=des:qos mandatory local sendrecv\r\na=des:qos optional remote sendrecv\r\n";
        let pcma = [(8, "PCMA/8000", "")];
        let a = answer(&offer(&pcma, q), &caps(vec![LocalCodec::pcma()])).unwrap();
        let got: Vec<String> = a.media()[0]
            .attributes()
            .filter(|x| x.is_precondition())
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "curr:qos local sendrecv",
                "curr:qos remote none",
                "des:qos mandatory local sendrecv",
                "des:qos mandatory remote sendrecv",
                "conf:qos remote sendrecv",
            ]
        );
        let a = answer(&offer(&pcma, ""), &caps(vec![LocalCodec::pcma()])).unwrap();
        assert!(!a.media()[0].attributes().any(Attribute::is_precondition));
    }

    #[test]
    fn answer_fields() {
        let mut c = caps(vec![LocalCodec::pcma()]);
        c.bandwidth = vec![Bandwidth::new(crate::BwType::As, 80)];
        let a = answer(&offer(&[(8, "PCMA/8000", "")], ""), &c).unwrap();
        let text = String::from_utf8(a.to_bytes()).unwrap();
        assert_eq!(
            text,
            "v=0\r\no=as 55 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 8\r\nb=AS:80\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=maxptime:240\r\n\
a=sendrecv\r\n"
        );
    }
}
