//! SIP seen on the wire → [`Offer`]s and [`Progress`] reports, by Call-ID.
//!
//! | message | report |
//! |---|---|
//! | INVITE without a To tag (initial, RFC 3261 §12.1) | [`ScanEvent::Offer`], every time it is seen (the pipeline answers a repeat with the first verdict, which NFQUEUE needs for retransmissions) |
//! | 2xx to INVITE | [`Progress::Answered`] |
//! | 487 to INVITE | [`Progress::Cancelled`] |
//! | other ≥ 300 to INVITE | [`Progress::Failed`] with the code |
//! | CANCEL | [`Progress::Cancelled`], or [`Progress::AnsweredElsewhere`] with `Reason: SIP;cause=200` (RFC 3326) |
//! | BYE | [`Progress::Ended`] |
//!
//! Progress is reported only for calls this scanner offered, and each stage once: a
//! retransmitted 200, a re-INVITE's 200 or the 487 after a CANCEL add nothing.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use sip::{Framing, Limits, Message, Method};

use super::{CalleeFrom, ScanEvent};
use crate::event::{Offer, Progress, RawCaller, Source};

/// Why a SIP payload gave nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipScanError {
    /// Not a SIP message.
    #[error("unparsable SIP: {0}")]
    Parse(#[from] sip::ParseError),
}

/// How the scanner reads an INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipScanConfig {
    /// Whether P-Asserted-Identity on this wire may be believed.
    pub trust_pai: bool,
    /// Where the callee is taken from.
    pub callee_from: CalleeFrom,
    /// Calls remembered for progress; the oldest is forgotten for a new one.
    pub max_calls: usize,
    /// How long (capture time) a finished call is remembered, so that late
    /// retransmissions of its final messages add nothing.
    pub linger: Duration,
}

impl Default for SipScanConfig {
    fn default() -> Self {
        SipScanConfig {
            trust_pai: false,
            callee_from: CalleeFrom::To,
            max_calls: 4096,
            linger: Duration::from_secs(64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Call {
    answered: bool,
    done: Option<SystemTime>,
}

/// The SIP scanner: feed it messages ([`SipScanner::handle_message`]), collect events
/// ([`SipScanner::poll_event`]).
#[derive(Debug)]
pub struct SipScanner {
    cfg: SipScanConfig,
    source: Source,
    calls: HashMap<String, Call>,
    /// Call-IDs oldest first: eviction and expiry look only at the front, so each INVITE
    /// costs O(1) however many calls are remembered.
    order: VecDeque<String>,
    out: VecDeque<ScanEvent>,
}

impl SipScanner {
    /// A scanner whose offers carry `source`.
    pub fn new(cfg: SipScanConfig, source: Source) -> SipScanner {
        SipScanner {
            cfg,
            source,
            calls: HashMap::new(),
            order: VecDeque::new(),
            out: VecDeque::new(),
        }
    }

    /// Calls remembered.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ScanEvent> {
        self.out.pop_front()
    }

    /// One SIP message (a UDP datagram or a message cut from a TCP stream) seen at `at`.
    /// Returns whether it was an INVITE that produced an offer.
    pub fn handle_message(&mut self, data: &[u8], at: SystemTime) -> Result<bool, SipScanError> {
        // Stream framing already checked Content-Length; a datagram may lack it.
        let m = Message::parse_with(data, &Limits::default(), Framing::Datagram)?;
        let Ok(call_id) = m.call_id().map(str::to_string) else {
            return Ok(false);
        };
        match m.method() {
            Some(Method::Invite) => {
                let initial = m.to_header().map(|t| t.tag().is_none()).unwrap_or(false);
                if !initial {
                    return Ok(false);
                }
                let Some(offer) = self.offer(&m, call_id, at) else {
                    return Ok(false);
                };
                self.remember(&offer.call_id, at);
                self.out.push_back(ScanEvent::Offer(offer));
                Ok(true)
            }
            Some(Method::Cancel) => {
                let p = if answered_elsewhere(&m) {
                    Progress::AnsweredElsewhere
                } else {
                    Progress::Cancelled
                };
                self.stage(&call_id, p, at);
                Ok(false)
            }
            Some(Method::Bye) => {
                self.stage(&call_id, Progress::Ended, at);
                Ok(false)
            }
            Some(_) => Ok(false),
            None => {
                let invite = m.cseq().is_ok_and(|c| c.method == Method::Invite);
                let code = m.code().unwrap_or(0);
                if !invite || code < 200 {
                    return Ok(false);
                }
                let p = match code {
                    200..=299 => Progress::Answered,
                    487 => Progress::Cancelled,
                    300.. => Progress::Failed(code),
                    _ => return Ok(false),
                };
                self.stage(&call_id, p, at);
                Ok(false)
            }
        }
    }

    fn offer(&self, m: &Message, call_id: String, at: SystemTime) -> Option<Offer> {
        let callee = match self.cfg.callee_from {
            CalleeFrom::To => m.to_header().ok()?.uri.to_string(),
            CalleeFrom::RequestUri => m.uri_str()?.to_string(),
        };
        Some(Offer {
            call_id,
            caller: RawCaller::Sip {
                p_asserted_identity: m
                    .header_values("P-Asserted-Identity")
                    .map(|v| v.trim().to_string())
                    .collect(),
                from: m.header("From")?.trim().to_string(),
                privacy: m.header("Privacy").map(|p| p.trim().to_string()),
                trusted: self.cfg.trust_pai,
            },
            callee,
            source: self.source,
            at,
        })
    }

    fn remember(&mut self, call_id: &str, at: SystemTime) {
        if self.calls.contains_key(call_id) {
            return;
        }
        let linger = self.cfg.linger;
        while let Some(front) = self.order.front() {
            let expired = self.calls.get(front).is_none_or(|c| {
                c.done
                    .is_some_and(|d| at.duration_since(d).is_ok_and(|x| x > linger))
            });
            if !expired && self.calls.len() < self.cfg.max_calls {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.calls.remove(&old);
            }
        }
        self.order.push_back(call_id.to_string());
        self.calls.insert(
            call_id.to_string(),
            Call {
                answered: false,
                done: None,
            },
        );
    }

    /// Reports a stage of a known call unless it adds nothing.
    fn stage(&mut self, call_id: &str, p: Progress, at: SystemTime) {
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        if c.done.is_some() {
            return;
        }
        match p {
            Progress::Answered => {
                if c.answered {
                    return;
                }
                c.answered = true;
            }
            // After an answer only BYE ends the call (a 487 or CANCEL crossing the 200).
            Progress::Cancelled | Progress::AnsweredElsewhere | Progress::Failed(_) => {
                if c.answered {
                    return;
                }
                c.done = Some(at);
            }
            Progress::Ended => c.done = Some(at),
        }
        self.out.push_back(ScanEvent::Progress {
            call_id: call_id.to_string(),
            progress: p,
            at,
        });
    }
}

/// `Reason: SIP ;cause=200` among the Reason values (RFC 3326 §2; TS 24.229 uses it for
/// "call completed elsewhere").
fn answered_elsewhere(m: &Message) -> bool {
    m.header_values("Reason").any(|v| {
        let mut parts = v.split(';');
        let proto = parts.next().unwrap_or("").trim();
        proto.eq_ignore_ascii_case("SIP")
            && parts.any(|p| {
                let mut kv = p.splitn(2, '=');
                kv.next()
                    .is_some_and(|k| k.trim().eq_ignore_ascii_case("cause"))
                    && kv.next().is_some_and(|v| v.trim() == "200")
            })
    })
}

/// SIP message texts for tests, fixtures and the benchmark.
pub mod text {
    /// An initial INVITE from `from_user` (display `name`, optional PAI and Privacy) to
    /// `to_user`, Call-ID `call_id`.
    pub fn invite(
        call_id: &str,
        from_user: &str,
        name: Option<&str>,
        pai: Option<&str>,
        privacy: Option<&str>,
        to_user: &str,
    ) -> String {
        let display = name.map(|n| format!("\"{n}\" ")).unwrap_or_default();
        let mut s = format!(
            "INVITE sip:{to_user}@192.0.2.2:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: {display}<sip:{from_user}@example.net>;tag=f-{call_id}\r\n\
             To: <sip:{to_user}@example.net>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{from_user}@192.0.2.1:5060>\r\n"
        );
        if let Some(p) = pai {
            s.push_str(&format!("P-Asserted-Identity: {p}\r\n"));
        }
        if let Some(p) = privacy {
            s.push_str(&format!("Privacy: {p}\r\n"));
        }
        let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        s
    }

    /// A response `code` to the INVITE of `call_id`.
    pub fn response(call_id: &str, code: u16, reason: &str) -> String {
        format!(
            "SIP/2.0 {code} {reason}\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{call_id}\r\n\
             From: <sip:caller@example.net>;tag=f-{call_id}\r\n\
             To: <sip:callee@example.net>;tag=t-{call_id}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// A request `method` (CANCEL, BYE) on `call_id`, with an optional Reason value.
    pub fn request(method: &str, call_id: &str, reason: Option<&str>) -> String {
        let reason = reason
            .map(|r| format!("Reason: {r}\r\n"))
            .unwrap_or_default();
        format!(
            "{method} sip:callee@192.0.2.2:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{method}-{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:caller@example.net>;tag=f-{call_id}\r\n\
             To: <sip:callee@example.net>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 2 {method}\r\n\
             {reason}Content-Length: 0\r\n\r\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::text::*;
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn drain(s: &mut SipScanner) -> Vec<ScanEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn progress(s: &mut SipScanner) -> Vec<Progress> {
        drain(s)
            .into_iter()
            .filter_map(|e| match e {
                ScanEvent::Progress { progress, .. } => Some(progress),
                ScanEvent::Offer(_) => None,
            })
            .collect()
    }

    #[test]
    fn invite_gives_offer_with_pai_from_privacy_and_to() {
        let mut s = SipScanner::new(SipScanConfig::default(), Source::Pcap);
        let inv = invite(
            "c1",
            "alice",
            Some("Alice"),
            Some("<sip:+4930123@example.net>, <tel:+4930123>"),
            Some("id"),
            "bob",
        );
        assert!(s.handle_message(inv.as_bytes(), t(0)).unwrap());
        let ev = drain(&mut s);
        let [ScanEvent::Offer(o)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(o.call_id, "c1");
        assert_eq!(o.callee, "sip:bob@example.net");
        assert_eq!(o.source, Source::Pcap);
        assert_eq!(o.at, t(0));
        assert_eq!(
            o.caller,
            RawCaller::Sip {
                p_asserted_identity: vec![
                    "<sip:+4930123@example.net>".into(),
                    "<tel:+4930123>".into()
                ],
                from: "\"Alice\" <sip:alice@example.net>;tag=f-c1".into(),
                privacy: Some("id".into()),
                trusted: false,
            }
        );
        // configured: trust PAI, callee from the Request-URI
        let mut s = SipScanner::new(
            SipScanConfig {
                trust_pai: true,
                callee_from: CalleeFrom::RequestUri,
                ..SipScanConfig::default()
            },
            Source::Live,
        );
        s.handle_message(inv.as_bytes(), t(0)).unwrap();
        let Some(ScanEvent::Offer(o)) = s.poll_event() else {
            panic!()
        };
        assert_eq!(o.callee, "sip:bob@192.0.2.2:5060");
        assert!(matches!(o.caller, RawCaller::Sip { trusted: true, .. }));
    }

    #[test]
    fn reinvite_with_to_tag_is_no_offer() {
        let mut s = SipScanner::new(SipScanConfig::default(), Source::Pcap);
        let inv = invite("c1", "a", None, None, None, "b")
            .replace("To: <sip:b@example.net>", "To: <sip:b@example.net>;tag=x");
        assert!(!s.handle_message(inv.as_bytes(), t(0)).unwrap());
        assert!(s.poll_event().is_none());
    }

    #[test]
    fn answered_then_bye_each_once() {
        let mut s = SipScanner::new(SipScanConfig::default(), Source::Pcap);
        for m in [
            invite("c", "a", None, None, None, "b"),
            invite("c", "a", None, None, None, "b"),
            response("c", 180, "Ringing"),
            response("c", 200, "OK"),
            response("c", 200, "OK"),
            request("BYE", "c", None),
            request("BYE", "c", None),
        ] {
            s.handle_message(m.as_bytes(), t(1)).unwrap();
        }
        let ev = drain(&mut s);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, ScanEvent::Offer(_)))
                .count(),
            2
        );
        let p: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                ScanEvent::Progress { progress, .. } => Some(*progress),
                _ => None,
            })
            .collect();
        assert_eq!(p, [Progress::Answered, Progress::Ended]);
    }

    #[test]
    fn cancel_487_failures_and_answered_elsewhere() {
        let mut s = SipScanner::new(SipScanConfig::default(), Source::Pcap);
        let cases: [(&str, Vec<String>, Vec<Progress>); 4] = [
            (
                "x1",
                vec![
                    request("CANCEL", "x1", None),
                    response("x1", 487, "Terminated"),
                ],
                vec![Progress::Cancelled],
            ),
            (
                "x2",
                vec![request(
                    "CANCEL",
                    "x2",
                    Some("Q.850;cause=16, SIP ;cause=200;text=\"Call completed elsewhere\""),
                )],
                vec![Progress::AnsweredElsewhere],
            ),
            (
                "x3",
                vec![response("x3", 486, "Busy Here")],
                vec![Progress::Failed(486)],
            ),
            (
                "x4",
                vec![response("x4", 487, "Terminated")],
                vec![Progress::Cancelled],
            ),
        ];
        for (id, msgs, want) in cases {
            s.handle_message(invite(id, "a", None, None, None, "b").as_bytes(), t(0))
                .unwrap();
            for m in msgs {
                s.handle_message(m.as_bytes(), t(1)).unwrap();
            }
            assert_eq!(progress(&mut s), want, "{id}");
        }
        // progress of a call never offered here is not reported
        s.handle_message(response("unknown", 200, "OK").as_bytes(), t(2))
            .unwrap();
        assert!(s.poll_event().is_none());
    }

    #[test]
    fn calls_are_bounded() {
        let mut s = SipScanner::new(
            SipScanConfig {
                max_calls: 10,
                ..SipScanConfig::default()
            },
            Source::Pcap,
        );
        for i in 0..100 {
            let inv = invite(&format!("b{i}"), "a", None, None, None, "b");
            s.handle_message(inv.as_bytes(), t(i)).unwrap();
        }
        assert!(s.calls() <= 10);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let mut s = SipScanner::new(SipScanConfig::default(), Source::Pcap);
        assert!(s.handle_message(b"\x00\x01garbage", t(0)).is_err());
        let inv = invite("g", "a", None, None, None, "b");
        for n in 0..inv.len() {
            let _ = s.handle_message(&inv.as_bytes()[..n], t(0));
        }
    }
}
