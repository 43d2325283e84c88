//! The UE's SDP, as text, in one place until the `sdp` crate lands (then this module is
//! replaced by calls into it): a VoLTE handset's audio offer and the matching answer
//! (RFC 3264, RFC 4867 AMR/AMR-WB payload formats, RFC 4733 telephone-event).
//!
//! The offer lists what handsets offer (TS 26.114 §6.2.2): AMR-WB then AMR, each in the
//! bandwidth-efficient and the octet-aligned payload format, `mode-change-capability=2;
//! max-red=0`, and telephone-event at 16000 and 8000 Hz. The answer keeps the first codec
//! of the offer we support, in the offered payload format, plus the telephone-event of the
//! same clock rate.
//!
//! With preconditions (RFC 3312, TS 24.229 §6.1.2) the audio stream carries the segmented
//! QoS status lines ([`qos`]); this UE reserves its access bearer at once, so its local
//! segment is `none` in the first offer and `sendrecv` from the UPDATE on.

use std::net::IpAddr;

/// Payload types of our offer: AMR-WB (be, oa), AMR (be, oa), telephone-event 16k, 8k.
const OFFER: [(u8, &str, &str); 6] = [
    (116, "AMR-WB/16000/1", "mode-change-capability=2;max-red=0"),
    (
        107,
        "AMR-WB/16000/1",
        "octet-align=1;mode-change-capability=2;max-red=0",
    ),
    (118, "AMR/8000/1", "mode-change-capability=2;max-red=0"),
    (
        111,
        "AMR/8000/1",
        "octet-align=1;mode-change-capability=2;max-red=0",
    ),
    (110, "telephone-event/16000", "0-15"),
    (100, "telephone-event/8000", "0-15"),
];

fn session(ip: IpAddr, session_id: u64, version: u64) -> String {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- {session_id} {version} IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n"
    )
}

/// The audio offer of a VoLTE handset with media at `ip:port` (`version`: the o= line's,
/// raised for every new offer in the session).
pub fn offer(ip: IpAddr, port: u16, session_id: u64, version: u64) -> String {
    let pts: Vec<String> = OFFER.iter().map(|(pt, _, _)| pt.to_string()).collect();
    let mut s = session(ip, session_id, version);
    s.push_str(&format!("m=audio {port} RTP/AVP {}\r\n", pts.join(" ")));
    s.push_str("b=AS:49\r\n");
    for (pt, map, fmtp) in OFFER {
        s.push_str(&format!("a=rtpmap:{pt} {map}\r\na=fmtp:{pt} {fmtp}\r\n"));
    }
    s.push_str("a=ptime:20\r\na=maxptime:240\r\na=sendrecv\r\n");
    s
}

/// One payload type of an offer's audio stream.
struct Format<'a> {
    pt: &'a str,
    rtpmap: Option<&'a str>,
    fmtp: Option<&'a str>,
}

/// The answer to `offer` with media at `ip:port`, or `None` when the offer has no audio
/// stream with AMR-WB or AMR (the UE then answers 488, RFC 3264 §6).
pub fn answer(offer: &str, ip: IpAddr, port: u16, session_id: u64, version: u64) -> Option<String> {
    let lines: Vec<&str> = offer.lines().map(str::trim_end).collect();
    let m = lines.iter().find_map(|l| l.strip_prefix("m=audio "))?;
    let mut it = m.split_ascii_whitespace();
    let (_port, proto) = (it.next()?, it.next()?);
    let formats: Vec<Format> = it
        .map(|pt| {
            let attr = |name: &str| {
                let prefix = format!("a={name}:{pt} ");
                lines
                    .iter()
                    .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::trim))
            };
            Format {
                pt,
                rtpmap: attr("rtpmap"),
                fmtp: attr("fmtp"),
            }
        })
        .collect();
    let codec_of = |f: &Format| {
        let map = f.rtpmap?;
        let name = map.split('/').next()?;
        Some((
            name.to_ascii_uppercase(),
            map.split('/').nth(1)?.to_string(),
        ))
    };
    let voice = formats
        .iter()
        .find(|f| codec_of(f).is_some_and(|(n, _)| n == "AMR-WB" || n == "AMR"))?;
    let (_, rate) = codec_of(voice)?;
    let dtmf = formats
        .iter()
        .find(|f| codec_of(f).is_some_and(|(n, r)| n == "TELEPHONE-EVENT" && r == rate));
    let chosen: Vec<&Format> = std::iter::once(voice).chain(dtmf).collect();
    let pts: Vec<&str> = chosen.iter().map(|f| f.pt).collect();
    let mut s = session(ip, session_id, version);
    s.push_str(&format!("m=audio {port} {proto} {}\r\n", pts.join(" ")));
    s.push_str("b=AS:49\r\n");
    for f in chosen {
        if let Some(map) = f.rtpmap {
            s.push_str(&format!("a=rtpmap:{} {map}\r\n", f.pt));
        }
        if let Some(fmtp) = f.fmtp {
            s.push_str(&format!("a=fmtp:{} {fmtp}\r\n", f.pt));
        }
    }
    s.push_str("a=ptime:20\r\na=maxptime:240\r\na=sendrecv\r\n");
    Some(s)
}

/// RFC 3312 §5 segmented status of the audio stream: current local/remote state,
/// desired strength (local always mandatory), and optionally a confirmation request for
/// the remote segment. Appended to an SDP whose last stream is the audio one.
pub fn qos(local_ready: bool, remote_ready: bool, remote_strength: &str, confirm: bool) -> String {
    let st = |ready: bool| if ready { "sendrecv" } else { "none" };
    let mut s = format!(
        "a=curr:qos local {}\r\na=curr:qos remote {}\r\na=des:qos mandatory local sendrecv\r\na=des:qos {remote_strength} remote sendrecv\r\n",
        st(local_ready),
        st(remote_ready)
    );
    if confirm {
        s.push_str("a=conf:qos remote sendrecv\r\n");
    }
    s
}

/// Whether an SDP asks for mandatory QoS preconditions (RFC 3312 §5).
pub fn wants_preconditions(sdp: &str) -> bool {
    sdp.lines()
        .any(|l| l.trim_end().starts_with("a=des:qos mandatory"))
}

/// Whether the peer reports its own (local) segment reserved in both directions.
pub fn peer_ready(sdp: &str) -> bool {
    sdp.lines()
        .any(|l| l.trim_end() == "a=curr:qos local sendrecv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_lists_both_codecs_in_both_formats_and_dtmf() {
        let o = offer("127.0.0.2".parse().unwrap(), 40000, 7, 1);
        assert!(o.starts_with("v=0\r\no=- 7 1 IN IP4 127.0.0.2\r\n"));
        assert!(o.contains("m=audio 40000 RTP/AVP 116 107 118 111 110 100\r\n"));
        assert!(o.contains("a=fmtp:107 octet-align=1;mode-change-capability=2;max-red=0"));
        assert!(o.contains("a=rtpmap:100 telephone-event/8000"));
        let v6 = offer("::1".parse().unwrap(), 40000, 7, 1);
        assert!(v6.contains("c=IN IP6 ::1\r\n"));
    }

    #[test]
    fn answer_keeps_the_first_codec_and_its_dtmf() {
        let o = offer("127.0.0.2".parse().unwrap(), 40000, 7, 1);
        let a = answer(&o, "127.0.0.3".parse().unwrap(), 40002, 9, 1).unwrap();
        assert!(a.contains("m=audio 40002 RTP/AVP 116 110\r\n"), "{a}");
        assert!(a.contains("a=fmtp:116 mode-change-capability=2;max-red=0\r\n"));
        assert!(a.contains("c=IN IP4 127.0.0.3"));
        // an AMR-NB octet-aligned-only offer keeps its format and the 8 kHz DTMF
        let nb = "v=0\r\nm=audio 5000 RTP/AVP 97 101 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:97 AMR/8000\r\na=fmtp:97 octet-align=1\r\na=rtpmap:101 telephone-event/8000\r\n";
        let a = answer(nb, "127.0.0.3".parse().unwrap(), 40002, 9, 1).unwrap();
        assert!(a.contains("m=audio 40002 RTP/AVP 97 101\r\n"), "{a}");
        assert!(a.contains("a=fmtp:97 octet-align=1\r\n"));
        // nothing we speak, or no audio at all
        let g711 = "v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        assert!(answer(g711, "127.0.0.3".parse().unwrap(), 1, 1, 1).is_none());
        assert!(answer("garbage", "127.0.0.3".parse().unwrap(), 1, 1, 1).is_none());
    }

    #[test]
    fn qos_status_lines() {
        let first = qos(false, false, "optional", false);
        assert_eq!(
            first,
            "a=curr:qos local none\r\na=curr:qos remote none\r\na=des:qos mandatory local sendrecv\r\na=des:qos optional remote sendrecv\r\n"
        );
        assert!(wants_preconditions(&first));
        assert!(!peer_ready(&first));
        let update = qos(true, false, "mandatory", false);
        assert!(peer_ready(&update));
        assert!(qos(false, false, "mandatory", true).ends_with("a=conf:qos remote sendrecv\r\n"));
        assert!(!wants_preconditions(&offer(
            "127.0.0.2".parse().unwrap(),
            1,
            1,
            1
        )));
    }
}
