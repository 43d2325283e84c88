//! The one JSON form of a [`CallEvent`], shared by the MQTT, datagram and webhook sinks
//! and read back by `appserver notify-agent`.
//!
//! ```json
//! {"v":1,"event":"end","conn":3,"call_id":"abc@ue",
//!  "time":"2026-03-05T15:08:14+01:00","started":"2026-03-05T15:07:09+01:00",
//!  "caller":{"number":"+4930123456","name":"Alice","anonymous":false,"name_source":"phonebook"},
//!  "callee":{"number":"+4940999","uri":"sip:+4940999@ims.lab"},
//!  "outcome":"answered","talk_seconds":42,"source":"isc"}
//! ```
//!
//! - `v`: the format version, `1`. A consumer rejects other versions rather than guess.
//! - `event`: `ring`, `blocked`, `connect` or `end`.
//! - `time` (the event) and `started` (the offer): RFC 3339 in the server's local time
//!   zone with its offset, whole seconds.
//! - `caller.number`: E.164 with `+`, or `null` when withheld or absent; `caller.name`:
//!   the shown name or `null`; `name_source`: `phonebook`, `reverse`, `display`,
//!   `anonymous` or `none`.
//! - `callee.number`: E.164 or `null`; `callee.uri`: as the input saw it.
//! - `outcome`: `null` except on `end` (`answered`, `missed`, `blocked`, `cancelled`,
//!   `answered_elsewhere`) and `blocked` (`blocked`).
//! - `talk_seconds`: `null` except on `end` (whole seconds since connect, 0 if never
//!   answered).
//! - `source`: `isc`, `pcap`, `live` or `nfqueue`.
//!
//! Fields are always present (nulls included) and in this order.

use chrono::{DateTime, SecondsFormat, TimeZone};
use serde::{Deserialize, Serialize};

use crate::event::{CallEvent, CallEventKind, NameSource, Outcome};

/// The format version this module writes and accepts.
pub const VERSION: u32 = 1;

/// A call event as JSON carries it (owned, so the agent can decode into it too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// Format version ([`VERSION`]).
    pub v: u32,
    /// `ring`, `blocked`, `connect` or `end`.
    pub event: String,
    /// The call's connection number.
    pub conn: u32,
    /// The call's Call-ID.
    pub call_id: String,
    /// When the event happened (RFC 3339).
    pub time: String,
    /// When the call was offered (RFC 3339).
    pub started: String,
    /// Who calls.
    pub caller: WireCaller,
    /// Who is called.
    pub callee: WireCallee,
    /// How it ended (`end`, `blocked`), else `null`.
    pub outcome: Option<String>,
    /// Talk time in seconds (`end`), else `null`.
    pub talk_seconds: Option<u64>,
    /// Where the call was seen.
    pub source: String,
}

/// The caller in [`WireEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCaller {
    /// E.164 number, `null` when withheld.
    pub number: Option<String>,
    /// Shown name.
    pub name: Option<String>,
    /// The caller asked for privacy.
    pub anonymous: bool,
    /// Where the name came from.
    pub name_source: String,
}

/// The callee in [`WireEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCallee {
    /// E.164 number, if the URI holds one.
    pub number: Option<String>,
    /// The URI as seen.
    pub uri: String,
}

/// Why a JSON event was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON of this shape.
    #[error("not a call event: {0}")]
    Json(#[from] serde_json::Error),
    /// Another format version.
    #[error("unsupported call event version {0} (want {VERSION})")]
    Version(u32),
}

/// `event`'s spelling of a kind.
pub fn kind_str(kind: &CallEventKind) -> &'static str {
    match kind {
        CallEventKind::Ring => "ring",
        CallEventKind::Blocked => "blocked",
        CallEventKind::Connect => "connect",
        CallEventKind::End { .. } => "end",
    }
}

/// `name_source`'s spelling.
pub fn name_source_str(s: NameSource) -> &'static str {
    match s {
        NameSource::Phonebook => "phonebook",
        NameSource::Reverse => "reverse",
        NameSource::Display => "display",
        NameSource::Anonymous => "anonymous",
        NameSource::None => "none",
    }
}

fn rfc3339<Tz: TimeZone>(t: std::time::SystemTime, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    DateTime::<chrono::Utc>::from(t)
        .with_timezone(tz)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// The wire form of `ev`, times in `tz` (the sinks pass [`chrono::Local`]).
pub fn to_wire<Tz: TimeZone>(ev: &CallEvent, tz: &Tz) -> WireEvent
where
    Tz::Offset: std::fmt::Display,
{
    let (outcome, talk) = match ev.kind {
        CallEventKind::End { outcome, talk } => (Some(outcome.as_str()), Some(talk.as_secs())),
        CallEventKind::Blocked => (Some(Outcome::Blocked.as_str()), None),
        _ => (None, None),
    };
    WireEvent {
        v: VERSION,
        event: kind_str(&ev.kind).to_string(),
        conn: ev.conn,
        call_id: ev.call_id.clone(),
        time: rfc3339(ev.at, tz),
        started: rfc3339(ev.started, tz),
        caller: WireCaller {
            number: ev.caller.number.clone(),
            name: ev.caller.name.clone(),
            anonymous: ev.caller.anonymous,
            name_source: name_source_str(ev.caller.name_source).to_string(),
        },
        callee: WireCallee {
            number: ev.callee.number.clone(),
            uri: ev.callee.uri.clone(),
        },
        outcome: outcome.map(str::to_string),
        talk_seconds: talk,
        source: ev.source.as_str().to_string(),
    }
}

/// `ev` as one line of JSON (no trailing newline), times in `tz`.
pub fn encode<Tz: TimeZone>(ev: &CallEvent, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    // Strings, numbers and options only: serde_json cannot fail on this shape.
    serde_json::to_string(&to_wire(ev, tz)).unwrap_or_default()
}

/// `ev` as JSON with times in the server's local time zone: what the sinks send.
pub fn encode_local(ev: &CallEvent) -> String {
    encode(ev, &chrono::Local)
}

/// Reads one JSON event (a datagram, a webhook body), refusing other versions.
pub fn decode(bytes: &[u8]) -> Result<WireEvent, DecodeError> {
    let w: WireEvent = serde_json::from_slice(bytes)?;
    if w.v != VERSION {
        return Err(DecodeError::Version(w.v));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{FixedOffset, Utc};

    use super::*;
    use crate::sinks::testutil::{anonymous, event};

    #[test]
    fn table() {
        let cet = FixedOffset::east_opt(3600).unwrap();
        let end = |outcome, talk| CallEventKind::End {
            outcome,
            talk: Duration::from_secs(talk),
        };
        let cases: Vec<(CallEvent, String)> = vec![
            (
                event(CallEventKind::Ring, 0),
                r#"{"v":1,"event":"ring","conn":3,"call_id":"abc@ue","time":"2026-03-05T15:07:09+01:00","started":"2026-03-05T15:07:09+01:00","caller":{"number":"+4930123456","name":"Alice","anonymous":false,"name_source":"phonebook"},"callee":{"number":"+4940999","uri":"sip:+4940999@ims.lab"},"outcome":null,"talk_seconds":null,"source":"isc"}"#.into(),
            ),
            (
                event(CallEventKind::Connect, 5),
                r#"{"v":1,"event":"connect","conn":3,"call_id":"abc@ue","time":"2026-03-05T15:07:14+01:00","started":"2026-03-05T15:07:09+01:00","caller":{"number":"+4930123456","name":"Alice","anonymous":false,"name_source":"phonebook"},"callee":{"number":"+4940999","uri":"sip:+4940999@ims.lab"},"outcome":null,"talk_seconds":null,"source":"isc"}"#.into(),
            ),
            (
                event(end(Outcome::Answered, 42), 47),
                r#"{"v":1,"event":"end","conn":3,"call_id":"abc@ue","time":"2026-03-05T15:07:56+01:00","started":"2026-03-05T15:07:09+01:00","caller":{"number":"+4930123456","name":"Alice","anonymous":false,"name_source":"phonebook"},"callee":{"number":"+4940999","uri":"sip:+4940999@ims.lab"},"outcome":"answered","talk_seconds":42,"source":"isc"}"#.into(),
            ),
            (
                anonymous(CallEventKind::Blocked, 0),
                r#"{"v":1,"event":"blocked","conn":3,"call_id":"abc@ue","time":"2026-03-05T15:07:09+01:00","started":"2026-03-05T15:07:09+01:00","caller":{"number":null,"name":"Anonymous","anonymous":true,"name_source":"anonymous"},"callee":{"number":"+4940999","uri":"sip:+4940999@ims.lab"},"outcome":"blocked","talk_seconds":null,"source":"isc"}"#.into(),
            ),
            (
                anonymous(end(Outcome::AnsweredElsewhere, 0), 3),
                r#"{"v":1,"event":"end","conn":3,"call_id":"abc@ue","time":"2026-03-05T15:07:12+01:00","started":"2026-03-05T15:07:09+01:00","caller":{"number":null,"name":"Anonymous","anonymous":true,"name_source":"anonymous"},"callee":{"number":"+4940999","uri":"sip:+4940999@ims.lab"},"outcome":"answered_elsewhere","talk_seconds":0,"source":"isc"}"#.into(),
            ),
        ];
        for (ev, want) in cases {
            let got = encode(&ev, &cet);
            assert_eq!(got, want);
            let back = decode(got.as_bytes()).unwrap();
            assert_eq!(back, to_wire(&ev, &cet));
        }
    }

    #[test]
    fn utc_uses_offset_form_and_other_zones_shift() {
        let w = to_wire(&event(CallEventKind::Ring, 0), &Utc);
        assert_eq!(w.time, "2026-03-05T14:07:09+00:00");
        let ny = FixedOffset::west_opt(5 * 3600).unwrap();
        assert_eq!(
            to_wire(&event(CallEventKind::Ring, 0), &ny).time,
            "2026-03-05T09:07:09-05:00"
        );
    }

    #[test]
    fn decode_refuses_other_versions_and_garbage() {
        let mut w = to_wire(&event(CallEventKind::Ring, 0), &Utc);
        w.v = 2;
        let text = serde_json::to_string(&w).unwrap();
        assert!(matches!(
            decode(text.as_bytes()),
            Err(DecodeError::Version(2))
        ));
        assert!(matches!(decode(b"{\"v\":1}"), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b"\xff\x00"), Err(DecodeError::Json(_))));
    }
}
