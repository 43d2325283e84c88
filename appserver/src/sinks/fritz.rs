//! # Fritz!Box call-monitor server (TCP, default `127.0.0.1:1012`)
//!
//! AVM's Fritz!Box reports calls on TCP port 1012 (after `#96*5*` on a phone); Home
//! Assistant's `fritzbox_callmonitor` integration and the `fritzconnection` library's
//! `FritzMonitor` read it. We serve the same lines so they work against us unchanged. No
//! greeting; one `;`-separated line per event, each ending `;\n`, date
//! `dd.mm.yy HH:MM:SS` in the server's local time zone:
//!
//! | event | line |
//! |---|---|
//! | Ring | `<date>;RING;<conn>;<caller>;<callee>;<line>;` |
//! | Connect | `<date>;CONNECT;<conn>;<extension>;<caller>;` |
//! | End (after a Ring) | `<date>;DISCONNECT;<conn>;<talk seconds>;` |
//! | Blocked, End of a blocked call | nothing: a refused call never rang here |
//!
//! - `<conn>` is the event's connection number, so a client pairs RING, CONNECT and
//!   DISCONNECT of one call exactly as with the box.
//! - `<caller>` is the caller's number (E.164 with `+`), empty when withheld or absent
//!   (as the box writes an anonymous call); `<callee>` the callee's number, else its URI.
//! - `<extension>` and `<line>` are settings (defaults `0` and `SIP0`: the box's first
//!   analogue port and first SIP account).
//!
//! Outgoing calls (`CALL`) are not reported: the caller-ID service sees incoming calls
//! only. `;` and control characters inside a value are written as spaces.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{parse_addr, tcp, Shutdown, SinkError, SinkHandle};
use crate::event::{CallEvent, CallEventKind, Outcome};

/// The `[fritz]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FritzConfig {
    /// Run the call-monitor server. Default `false`: a listening port is opt-in.
    pub enabled: bool,
    /// Where to listen. Default `127.0.0.1:1012` (the box's port; loopback until the
    /// operator opens it).
    pub listen: String,
    /// The extension field of `CONNECT`. Default `0` (the box's first phone port).
    pub extension: String,
    /// The line field of `RING`. Default `SIP0` (the box's first SIP account).
    pub line: String,
    /// Clients at once; more are refused. Default 32 (bounds the sockets).
    pub max_clients: usize,
}

impl Default for FritzConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:1012".into(),
            extension: "0".into(),
            line: "SIP0".into(),
            max_clients: 32,
        }
    }
}

/// The `[fritz]` section as the example configuration shows it.
pub const EXAMPLE: &str = r#"[fritz]
# A Fritz!Box call monitor for Home Assistant's fritzbox_callmonitor and fritzconnection.
enabled = false
listen = "127.0.0.1:1012"
# CONNECT's extension and RING's line fields.
extension = "0"
line = "SIP0"
max_clients = 32
"#;

/// Starts the call-monitor server (binds before returning).
pub async fn spawn(
    cfg: &FritzConfig,
    bus: &crate::event::EventBus,
    shutdown: Shutdown,
) -> Result<SinkHandle, SinkError> {
    let listen = parse_addr("fritz", "listen", &cfg.listen)?;
    let cfg = cfg.clone();
    tcp::spawn(
        "fritz",
        listen,
        Vec::new(),
        cfg.max_clients,
        bus,
        shutdown,
        move |ev| line(ev, &cfg, &chrono::Local).into_iter().collect(),
    )
    .await
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c == ';' || c.is_control() { ' ' } else { c })
        .collect()
}

/// The call-monitor line for `ev` (with `\n`), or `None` when the box would write none.
pub fn line<Tz: TimeZone>(ev: &CallEvent, cfg: &FritzConfig, tz: &Tz) -> Option<String>
where
    Tz::Offset: std::fmt::Display,
{
    let date = DateTime::<Utc>::from(ev.at)
        .with_timezone(tz)
        .format("%d.%m.%y %H:%M:%S");
    let caller = if ev.caller.anonymous {
        String::new()
    } else {
        ev.caller.number.as_deref().map(clean).unwrap_or_default()
    };
    let conn = ev.conn;
    match ev.kind {
        CallEventKind::Ring => {
            let callee = clean(ev.callee.number.as_deref().unwrap_or(&ev.callee.uri));
            Some(format!(
                "{date};RING;{conn};{caller};{callee};{};\n",
                clean(&cfg.line)
            ))
        }
        CallEventKind::Connect => Some(format!(
            "{date};CONNECT;{conn};{};{caller};\n",
            clean(&cfg.extension)
        )),
        CallEventKind::Blocked
        | CallEventKind::End {
            outcome: Outcome::Blocked,
            ..
        } => None,
        CallEventKind::End { talk, .. } => {
            Some(format!("{date};DISCONNECT;{conn};{};\n", talk.as_secs()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::FixedOffset;

    use super::*;
    use crate::sinks::testutil::{anonymous, event};

    #[test]
    fn format_table() {
        let cet = FixedOffset::east_opt(3600).unwrap();
        let cfg = FritzConfig::default();
        let end = |outcome, s| CallEventKind::End {
            outcome,
            talk: Duration::from_secs(s),
        };
        let mut by_uri = event(CallEventKind::Ring, 0);
        by_uri.callee.number = None;
        by_uri.callee.uri = "sip:alice;x@lab".into();
        let cases: Vec<(CallEvent, Option<&str>)> = vec![
            (
                event(CallEventKind::Ring, 0),
                Some("05.03.26 15:07:09;RING;3;+4930123456;+4940999;SIP0;\n"),
            ),
            (
                anonymous(CallEventKind::Ring, 0),
                Some("05.03.26 15:07:09;RING;3;;+4940999;SIP0;\n"),
            ),
            (
                by_uri,
                Some("05.03.26 15:07:09;RING;3;+4930123456;sip:alice x@lab;SIP0;\n"),
            ),
            (
                event(CallEventKind::Connect, 4),
                Some("05.03.26 15:07:13;CONNECT;3;0;+4930123456;\n"),
            ),
            (
                event(end(Outcome::Answered, 61), 65),
                Some("05.03.26 15:08:14;DISCONNECT;3;61;\n"),
            ),
            (
                event(end(Outcome::Missed, 0), 30),
                Some("05.03.26 15:07:39;DISCONNECT;3;0;\n"),
            ),
            (event(CallEventKind::Blocked, 0), None),
            (event(end(Outcome::Blocked, 0), 0), None),
        ];
        for (ev, want) in cases {
            assert_eq!(line(&ev, &cfg, &cet).as_deref(), want, "{:?}", ev.kind);
        }
    }

    #[test]
    fn example_is_the_defaults() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct File {
            fritz: FritzConfig,
        }
        opskit::config::check_example(EXAMPLE, &File::default()).unwrap();
    }
}
