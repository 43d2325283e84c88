//! One-line summaries of SIP messages for the ladder, and the ladder itself.

use std::fmt::Write as _;
use std::time::Instant;

use sip::ims::hdr;
use sip::Message;

use crate::event::{EventKind, UeEvent};

/// `REGISTER sip:ims.test (CSeq 1; Security-Client ×6; Authorization empty)` and the like:
/// the start line plus what matters for an IMS registration.
pub fn summarize(m: &Message) -> String {
    let mut s = match (m.method(), m.code()) {
        (Some(method), _) => format!("{method} {}", m.uri_str().unwrap_or("")),
        (None, Some(code)) => format!("{code} {}", m.reason().unwrap_or("")),
        _ => "?".into(),
    };
    let mut notes: Vec<String> = Vec::new();
    if let Ok(c) = m.cseq() {
        notes.push(format!("CSeq {} {}", c.seq, c.method));
    }
    if let Ok(Some(e)) = m.expires() {
        notes.push(format!("Expires {e}"));
    }
    // calls: reliable provisionals, their PRACKs, the option tags and the offer/answer
    for name in ["RSeq", "RAck"] {
        if let Some(v) = m.header(name) {
            notes.push(format!("{name} {v}"));
        }
    }
    let required: Vec<&str> = m
        .option_tags(hdr::REQUIRE)
        .filter(|t| !t.eq_ignore_ascii_case(sip::ims::tag::SEC_AGREE))
        .collect();
    if !required.is_empty() {
        notes.push(format!("Require {}", required.join(", ")));
    }
    match m.header("Content-Type") {
        Some(ct) if ct.eq_ignore_ascii_case("application/sdp") => {
            let body = String::from_utf8_lossy(m.body());
            let qos = body
                .lines()
                .find_map(|l| l.trim_end().strip_prefix("a=curr:qos local "));
            notes.push(match qos {
                Some(q) => format!("SDP, qos local {q}"),
                None => "SDP".into(),
            });
        }
        Some(ct) => notes.push(ct.to_string()),
        None => {}
    }
    for (name, short) in [
        (hdr::SECURITY_CLIENT, "Security-Client"),
        (hdr::SECURITY_SERVER, "Security-Server"),
        (hdr::SECURITY_VERIFY, "Security-Verify"),
    ] {
        if let Some(v) = first_mechanism(m, name) {
            notes.push(format!("{short} {v}"));
        }
    }
    if let Some(a) = m.header(hdr::AUTHORIZATION) {
        match akav1::digest::Credentials::parse(a) {
            Ok(c) if c.auts.is_some() => notes.push("Authorization auts".into()),
            Ok(c) if c.response.is_empty() => notes.push("Authorization empty".into()),
            Ok(_) => notes.push("Authorization response".into()),
            Err(_) => notes.push("Authorization (unparsable)".into()),
        }
    }
    if let Some(w) = m.header(hdr::WWW_AUTHENTICATE) {
        match akav1::digest::Challenge::parse(w) {
            Ok(c) => notes.push(format!(
                "challenge {}",
                c.algorithm.as_deref().unwrap_or("MD5")
            )),
            Err(_) => notes.push("challenge (unparsable)".into()),
        }
    }
    if m.code() == Some(200) {
        if let Ok(sr) = m.service_route() {
            if !sr.is_empty() {
                notes.push(format!("Service-Route ×{}", sr.len()));
            }
        }
        if let Ok(pa) = m.p_associated_uri() {
            if !pa.is_empty() {
                notes.push(format!("P-Associated-URI ×{}", pa.len()));
            }
        }
    }
    if !notes.is_empty() {
        let _ = write!(s, " ({})", notes.join("; "));
    }
    s
}

fn first_mechanism(m: &Message, name: &str) -> Option<String> {
    let all: Vec<&str> = m.header_values(name).collect();
    let first = all.first()?;
    let short = match sip::ims::SecurityMechanism::parse(first) {
        Ok(x) => format!("{}/{}", x.alg.as_deref().unwrap_or("?"), x.ealg_or_null()),
        Err(_) => "(unparsable)".into(),
    };
    Some(if all.len() > 1 {
        format!("{short} +{} more", all.len() - 1)
    } else {
        short
    })
}

/// One ladder line for an event: `+12.345 ms  name  → REGISTER …`, times relative to `t0`.
pub fn ladder_line(t0: Instant, name: &str, e: &UeEvent) -> String {
    let ms = e.at.saturating_duration_since(t0).as_secs_f64() * 1000.0;
    let lock = |p: bool| if p { "🔒" } else { "  " };
    let what = match &e.kind {
        EventKind::Sent {
            summary,
            from,
            to,
            protected,
        } => format!("{} {from} ──▶ {to}  {summary}", lock(*protected)),
        EventKind::Received {
            summary,
            from,
            to,
            protected,
        } => format!("{} {to} ◀── {from}  {summary}", lock(*protected)),
        EventKind::AkaVerified { sqn } => format!("   AUTN ok (SQN {sqn}), RES/CK/IK computed"),
        EventKind::SqnResync { sqn_ms } => {
            format!("   SQN refused by the card: resync with AUTS (SQN_MS {sqn_ms})")
        }
        EventKind::SaInstallRequested(s) => format!("   install SAs: {s}"),
        EventKind::SaInstalled { id, .. } => format!("   SA set #{id} installed (temporary)"),
        EventKind::SaPromoted { id } => format!("   SA set #{id} established"),
        EventKind::SaExpiring { id } => format!("   SA set #{id} retiring"),
        EventKind::SaDeleted { id } => format!("   SA set #{id} deleted"),
        EventKind::Registered(r) => format!(
            "✔ {} done in {:.1} ms ({} REGISTERs), expires {} s{}",
            r.procedure.as_str(),
            r.took.as_secs_f64() * 1000.0,
            r.round_trips,
            r.expires,
            if r.protected {
                ", via the protected ports"
            } else {
                ""
            }
        ),
        EventKind::Deregistered { took } => {
            format!("✔ deregistered in {:.1} ms", took.as_secs_f64() * 1000.0)
        }
        EventKind::Failed { procedure, error } => {
            format!("✘ {} failed: {error}", procedure.as_str())
        }
        EventKind::Expired => "✘ registration expired (not refreshed)".into(),
        EventKind::CallStarted { call, to } => format!("☎ {call}: calling {to}"),
        EventKind::IncomingCall { call, from } => format!("☎ {call}: incoming call from {from}"),
        EventKind::CallRinging { call, code } => format!("☎ {call}: ringing ({code})"),
        EventKind::CallAnswered { call, took } => format!(
            "✔ {call}: answered after {:.1} ms",
            took.as_secs_f64() * 1000.0
        ),
        EventKind::CallPreconditionsMet { call } => {
            format!("   {call}: QoS preconditions met (both segments sendrecv)")
        }
        EventKind::CallRefreshed { call } => format!("   {call}: session refreshed"),
        EventKind::CallEnded { call, end } => format!("☎ {call}: ended, {end}"),
        EventKind::MediaStarted {
            call,
            to,
            codec,
            source,
        } => format!("♪ {call}: RTP {codec} ({source}) to {to}"),
        EventKind::MediaFailed { call, error } => format!("✘ {call}: no RTP: {error}"),
        EventKind::MediaTimeout { call, silent } => format!(
            "✘ {call}: no RTP from the peer for {:.1} s",
            silent.as_secs_f64()
        ),
        EventKind::DtmfReceived { call, digit } => format!("♪ {call}: DTMF {digit} received"),
        EventKind::CallMedia { call, stats } => format!("♪ {call}: RTP {stats}"),
        EventKind::MessageSent { to, code, took, .. } => match code {
            Some(c) => format!(
                "✉ MESSAGE to {to}: {c} after {:.1} ms",
                took.as_secs_f64() * 1000.0
            ),
            None => format!("✘ MESSAGE to {to}: no answer"),
        },
        EventKind::MessageReceived { from, text } => format!("✉ MESSAGE from {from}: {text:?}"),
        EventKind::RegEventSubscribed { expires, refresh } => format!(
            "✔ reg event {} for {expires} s",
            if *refresh {
                "subscription refreshed"
            } else {
                "subscribed"
            }
        ),
        EventKind::RegEventNotified(n) => format!("   reg event NOTIFY: {n}"),
        EventKind::RegEventBadBody(e) => format!("   reg event NOTIFY body unusable: {e}"),
        EventKind::RegEventEnded(end) => format!("   reg event subscription {end}"),
        EventKind::DeregisteredByNetwork { event } => {
            format!("✘ deregistered by the network ({event}): registration and SAs dropped")
        }
        EventKind::Note(n) => format!("   {n}"),
    };
    format!("{ms:>10.3} ms  {name:<8} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_the_interesting_headers() {
        let raw = "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nFrom: <sip:a@ims.test>;tag=1\r\nTo: <sip:a@ims.test>;tag=2\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"ims.test\", nonce=\"abc\", algorithm=AKAv1-MD5\r\nSecurity-Server: ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;ealg=aes-cbc;spi-c=1000;spi-s=1001;port-c=5100;port-s=5101\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        let s = summarize(&m);
        assert!(s.starts_with("401 Unauthorized"), "{s}");
        assert!(s.contains("Security-Server hmac-sha-1-96/aes-cbc"), "{s}");
        assert!(s.contains("challenge AKAv1-MD5"), "{s}");
        assert!(s.contains("CSeq 1 REGISTER"), "{s}");
    }

    #[test]
    fn call_summaries_name_reliability_and_sdp() {
        let raw = "SIP/2.0 183 Session Progress\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nFrom: <sip:a@ims.test>;tag=1\r\nTo: <sip:b@ims.test>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nRequire: 100rel, precondition\r\nRSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: 28\r\n\r\nv=0\r\na=curr:qos local none\r\n";
        let s = summarize(&Message::parse(raw.as_bytes()).unwrap());
        assert!(s.contains("RSeq 1"), "{s}");
        assert!(s.contains("Require 100rel, precondition"), "{s}");
        assert!(s.contains("SDP, qos local none"), "{s}");
    }
}
