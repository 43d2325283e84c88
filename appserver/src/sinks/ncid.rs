//! # NCID server (Network Caller ID, TCP, default `127.0.0.1:3333`)
//!
//! Existing NCID clients (ncid's own GUI and its output modules, the Android and
//! Windows clients) connect and show our calls unchanged. On connect a client gets
//!
//! ```text
//! 200 <banner>
//! 300 End of connection startup
//! ```
//!
//! and then one line per event, all ending `\r\n` (NCID's line terminator; our parser
//! accepts a bare `\n` too):
//!
//! | event | line |
//! |---|---|
//! | Ring | `CID: *DATE*mmddyyyy*TIME*hhmm*LINE*<line>*NMBR*<number>*MESG*NONE*NAME*<name>*` |
//! | Blocked | `BLK: ` and the same fields: NCID's line for a call its blacklist refused |
//! | End (after a Ring) | `CIDINFO: *LINE*<line>*RING*<n>*TIME*hh:mm:ss*`, `n` = `-1` hung up before an answer (missed, cancelled, answered elsewhere), `-2` after one |
//! | Connect, End of a blocked call | nothing (NCID has no line for them) |
//!
//! Field values, as NCID servers write them for a modem's caller ID:
//! - date and time are the event's, in the server's local time zone;
//! - `<line>` is the `line` setting, or the callee's number, or `-` (NCID's "no line id");
//! - `<number>` is the caller's E.164 number with its `+`; a withheld caller (RFC 3323
//!   privacy) is `PRIVATE` and an absent number `OUT-OF-AREA` — the words NCID uses for a
//!   modem's `P` and `O` markers, which clients show as they are;
//! - `<name>` is the shown name, `PRIVATE` for a withheld caller, `NO NAME` when unknown.
//!
//! `*` separates fields, so a `*` or control character inside a value is written as a
//! space, and values are cut at [`MAX_FIELD`] characters. Whatever a client sends is
//! read and dropped (NCID client jobs are not served).
//!
//! [`parse_line`] reads these lines back (the notify-agent's NCID client uses it; fuzz
//! target `appserver_ncid_line`).

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{parse_addr, tcp, Shutdown, SinkError, SinkHandle};
use crate::event::{CallEvent, CallEventKind, Outcome};

/// The `[ncid]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NcidConfig {
    /// Run the NCID server. Default `false`: a listening port is opt-in.
    pub enabled: bool,
    /// Where to listen. Default `127.0.0.1:3333` (NCID's port, loopback only until the
    /// operator opens it to the LAN deliberately).
    pub listen: String,
    /// The text after `200 ` in the greeting. Default `IMS Lab Core appserver NCID server`.
    pub banner: String,
    /// The NCID `LINE` label. Default empty: the callee's number (or `-` without one), so
    /// a household with several numbers sees which one rang.
    pub line: String,
    /// Clients at once; more are refused. Default 32 (a household's desktops and phones,
    /// with room to spare, and a bound on sockets).
    pub max_clients: usize,
}

impl Default for NcidConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:3333".into(),
            banner: "IMS Lab Core appserver NCID server".into(),
            line: String::new(),
            max_clients: 32,
        }
    }
}

/// The `[ncid]` section as the example configuration shows it.
pub const EXAMPLE: &str = r#"[ncid]
# An NCID server for NCID clients (desktop, Android, output modules).
enabled = false
# Loopback by default; 0.0.0.0:3333 serves the LAN.
listen = "127.0.0.1:3333"
banner = "IMS Lab Core appserver NCID server"
# LINE label of every call; empty = the callee's number.
line = ""
max_clients = 32
"#;

/// A value longer than this (in characters) is cut: NCID clients show names in one line.
pub const MAX_FIELD: usize = 64;

/// The longest line [`parse_line`] accepts (bytes): NCID lines are short, and a client
/// must bound what it buffers from a server.
pub const MAX_LINE: usize = 1024;

/// Starts the NCID server (binds before returning).
pub async fn spawn(
    cfg: &NcidConfig,
    bus: &crate::event::EventBus,
    shutdown: Shutdown,
) -> Result<SinkHandle, SinkError> {
    let listen = parse_addr("ncid", "listen", &cfg.listen)?;
    let greeting = vec![
        format!("200 {}\r\n", clean(&cfg.banner)),
        "300 End of connection startup\r\n".to_string(),
    ];
    let line = cfg.line.clone();
    tcp::spawn(
        "ncid",
        listen,
        greeting,
        cfg.max_clients,
        bus,
        shutdown,
        move |ev| lines(ev, &line, &chrono::Local).into_iter().collect(),
    )
    .await
}

/// A field value with `*` and control characters made spaces, cut at [`MAX_FIELD`].
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c == '*' || c.is_control() { ' ' } else { c })
        .take(MAX_FIELD)
        .collect()
}

fn line_label(ev: &CallEvent, configured: &str) -> String {
    if !configured.is_empty() {
        clean(configured)
    } else {
        ev.callee.number.as_deref().map_or("-".into(), clean)
    }
}

/// The NCID line for `ev` (with `\r\n`), or `None` when NCID has none for it. `line` is
/// the configured label (empty: the callee's number); times in `tz`.
pub fn lines<Tz: TimeZone>(ev: &CallEvent, line: &str, tz: &Tz) -> Option<String>
where
    Tz::Offset: std::fmt::Display,
{
    let at = DateTime::<Utc>::from(ev.at).with_timezone(tz);
    let line = line_label(ev, line);
    let call = |label: &str| {
        let c = &ev.caller;
        let number = match (&c.number, c.anonymous) {
            (_, true) => "PRIVATE".to_string(),
            (None, false) => "OUT-OF-AREA".to_string(),
            (Some(n), false) => clean(n),
        };
        let name = match (&c.name, c.anonymous) {
            (_, true) => "PRIVATE".to_string(),
            (None, false) => "NO NAME".to_string(),
            (Some(n), false) => clean(n),
        };
        format!(
            "{label}: *DATE*{}*TIME*{}*LINE*{line}*NMBR*{number}*MESG*NONE*NAME*{name}*\r\n",
            at.format("%m%d%Y"),
            at.format("%H%M"),
        )
    };
    match ev.kind {
        CallEventKind::Ring => Some(call("CID")),
        CallEventKind::Blocked => Some(call("BLK")),
        CallEventKind::Connect => None,
        CallEventKind::End {
            outcome: Outcome::Blocked,
            ..
        } => None,
        CallEventKind::End { outcome, .. } => {
            let ring = if outcome == Outcome::Answered { -2 } else { -1 };
            Some(format!(
                "CIDINFO: *LINE*{line}*RING*{ring}*TIME*{}*\r\n",
                at.format("%H:%M:%S")
            ))
        }
    }
}

/// One line from an NCID server, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NcidLine {
    /// A numbered status line (`200 banner`, `300 End of connection startup`, …).
    Status {
        /// The code.
        code: u16,
        /// The text after it.
        text: String,
    },
    /// `CID:` (a call is ringing).
    Cid(CallFields),
    /// `BLK:` (a blacklisted call was refused).
    Blk(CallFields),
    /// `CIDINFO:` (ring count, or the end of a call).
    CidInfo {
        /// The line label.
        line: String,
        /// The ring count, `-1`/`-2` at the end of a call.
        ring: i32,
        /// `hh:mm:ss`.
        time: String,
    },
    /// Any other labelled line (`OUT:`, `MSG:`, `HUP:`, log replay, …), kept by label.
    Other {
        /// The label before `:`.
        label: String,
    },
}

/// The fields of a `CID:`/`BLK:` line, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFields {
    /// `mmddyyyy`.
    pub date: String,
    /// `hhmm`.
    pub time: String,
    /// Line label.
    pub line: String,
    /// The number (`PRIVATE`, `OUT-OF-AREA` are words, not numbers).
    pub number: String,
    /// `MESG` (`NONE` when none).
    pub mesg: String,
    /// The name (`NO NAME`, `PRIVATE` are words).
    pub name: String,
}

impl CallFields {
    /// The number unless NCID's words say there is none.
    pub fn real_number(&self) -> Option<&str> {
        match self.number.as_str() {
            "" | "-" | "PRIVATE" | "OUT-OF-AREA" | "ANONYMOUS" => None,
            n => Some(n),
        }
    }

    /// The name unless NCID's words say there is none (`PRIVATE` is kept: it is what
    /// the user should see).
    pub fn real_name(&self) -> Option<&str> {
        match self.name.as_str() {
            "" | "-" | "NO NAME" => None,
            n => Some(n),
        }
    }
}

/// Why a line from an NCID server was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NcidParseError {
    /// Longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    /// Neither a status line nor `LABEL: …`.
    #[error("not an NCID line")]
    Unrecognised,
    /// The `*KEY*value*` list is malformed (not framed by `*`, odd number of items).
    #[error("malformed field list")]
    Fields,
    /// A required field is missing.
    #[error("field {0} missing")]
    Missing(&'static str),
    /// `RING` is not a number.
    #[error("RING is not a number: {0:?}")]
    Ring(String),
}

/// Parses one line (with or without its `\r\n`).
pub fn parse_line(raw: &str) -> Result<NcidLine, NcidParseError> {
    if raw.len() > MAX_LINE {
        return Err(NcidParseError::TooLong);
    }
    let l = raw.trim_end_matches(['\r', '\n']);
    let b = l.as_bytes();
    if b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) && b.get(3).is_none_or(|c| *c == b' ')
    {
        let code = l[..3].parse().map_err(|_| NcidParseError::Unrecognised)?;
        return Ok(NcidLine::Status {
            code,
            text: l.get(4..).unwrap_or("").to_string(),
        });
    }
    let (label, rest) = l.split_once(':').ok_or(NcidParseError::Unrecognised)?;
    if label.is_empty() || !label.bytes().all(|c| c.is_ascii_uppercase() || c == b'_') {
        return Err(NcidParseError::Unrecognised);
    }
    match label {
        "CID" | "BLK" => {
            let f = fields(rest)?;
            let get = |k: &'static str| {
                f.iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
                    .ok_or(NcidParseError::Missing(k))
            };
            let call = CallFields {
                date: get("DATE")?,
                time: get("TIME")?,
                line: get("LINE").unwrap_or_else(|_| "-".into()),
                number: get("NMBR")?,
                mesg: get("MESG").unwrap_or_else(|_| "NONE".into()),
                name: get("NAME")?,
            };
            Ok(if label == "CID" {
                NcidLine::Cid(call)
            } else {
                NcidLine::Blk(call)
            })
        }
        "CIDINFO" => {
            let f = fields(rest)?;
            let get = |k: &'static str| {
                f.iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
                    .ok_or(NcidParseError::Missing(k))
            };
            let ring = get("RING")?;
            Ok(NcidLine::CidInfo {
                line: get("LINE")?,
                ring: ring.parse().map_err(|_| NcidParseError::Ring(ring))?,
                time: get("TIME").unwrap_or_default(),
            })
        }
        _ => Ok(NcidLine::Other {
            label: label.to_string(),
        }),
    }
}

/// `*K*v*K*v*` (after the label's `:` and optional spaces) as key/value pairs.
fn fields(rest: &str) -> Result<Vec<(&str, &str)>, NcidParseError> {
    let inner = rest
        .trim_start_matches(' ')
        .strip_prefix('*')
        .and_then(|s| s.strip_suffix('*'))
        .ok_or(NcidParseError::Fields)?;
    let items: Vec<&str> = inner.split('*').collect();
    if items.len() % 2 != 0 {
        return Err(NcidParseError::Fields);
    }
    Ok(items.chunks(2).map(|p| (p[0], p[1])).collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::FixedOffset;

    use super::*;
    use crate::event::Caller;
    use crate::event::NameSource;
    use crate::sinks::testutil::{anonymous, event};

    fn end(outcome: Outcome) -> CallEventKind {
        CallEventKind::End {
            outcome,
            talk: Duration::from_secs(30),
        }
    }

    #[test]
    fn format_table() {
        let cet = FixedOffset::east_opt(3600).unwrap();
        let mut unnamed = event(CallEventKind::Ring, 0);
        unnamed.caller = Caller {
            number: None,
            name: None,
            name_source: NameSource::None,
            anonymous: false,
        };
        unnamed.callee.number = None;
        let mut starry = event(CallEventKind::Ring, 0);
        starry.caller.name = Some("A*B\r\nC".into());
        let cases: Vec<(CallEvent, &str, Option<&str>)> = vec![
            (
                event(CallEventKind::Ring, 0),
                "",
                Some("CID: *DATE*03052026*TIME*1507*LINE*+4940999*NMBR*+4930123456*MESG*NONE*NAME*Alice*\r\n"),
            ),
            (
                event(CallEventKind::Ring, 0),
                "HOME",
                Some("CID: *DATE*03052026*TIME*1507*LINE*HOME*NMBR*+4930123456*MESG*NONE*NAME*Alice*\r\n"),
            ),
            (
                anonymous(CallEventKind::Ring, 0),
                "",
                Some("CID: *DATE*03052026*TIME*1507*LINE*+4940999*NMBR*PRIVATE*MESG*NONE*NAME*PRIVATE*\r\n"),
            ),
            (
                unnamed,
                "",
                Some("CID: *DATE*03052026*TIME*1507*LINE*-*NMBR*OUT-OF-AREA*MESG*NONE*NAME*NO NAME*\r\n"),
            ),
            (
                starry,
                "",
                Some("CID: *DATE*03052026*TIME*1507*LINE*+4940999*NMBR*+4930123456*MESG*NONE*NAME*A B  C*\r\n"),
            ),
            (
                event(CallEventKind::Blocked, 0),
                "",
                Some("BLK: *DATE*03052026*TIME*1507*LINE*+4940999*NMBR*+4930123456*MESG*NONE*NAME*Alice*\r\n"),
            ),
            (event(CallEventKind::Connect, 4), "", None),
            (
                event(end(Outcome::Answered), 64),
                "",
                Some("CIDINFO: *LINE*+4940999*RING*-2*TIME*15:08:13*\r\n"),
            ),
            (
                event(end(Outcome::Missed), 20),
                "",
                Some("CIDINFO: *LINE*+4940999*RING*-1*TIME*15:07:29*\r\n"),
            ),
            (
                event(end(Outcome::Cancelled), 3),
                "L1",
                Some("CIDINFO: *LINE*L1*RING*-1*TIME*15:07:12*\r\n"),
            ),
            (
                event(end(Outcome::AnsweredElsewhere), 3),
                "",
                Some("CIDINFO: *LINE*+4940999*RING*-1*TIME*15:07:12*\r\n"),
            ),
            (event(end(Outcome::Blocked), 0), "", None),
        ];
        for (ev, line, want) in cases {
            assert_eq!(lines(&ev, line, &cet).as_deref(), want, "{:?}", ev.kind);
        }
    }

    #[test]
    fn long_names_are_cut() {
        let mut ev = event(CallEventKind::Ring, 0);
        ev.caller.name = Some("x".repeat(500));
        let l = lines(&ev, "", &Utc).unwrap();
        let NcidLine::Cid(f) = parse_line(&l).unwrap() else {
            panic!("{l}")
        };
        assert_eq!(f.name.len(), MAX_FIELD);
    }

    #[test]
    fn our_lines_parse_back() {
        let l = lines(&anonymous(CallEventKind::Ring, 0), "", &Utc).unwrap();
        let NcidLine::Cid(f) = parse_line(&l).unwrap() else {
            panic!("{l}")
        };
        assert_eq!(f.real_number(), None);
        assert_eq!(f.real_name(), Some("PRIVATE"));
        assert_eq!(f.date, "03052026");
        assert_eq!(f.time, "1407");
        let l = lines(&event(end(Outcome::Answered), 64), "", &Utc).unwrap();
        assert_eq!(
            parse_line(&l),
            Ok(NcidLine::CidInfo {
                line: "+4940999".into(),
                ring: -2,
                time: "14:08:13".into()
            })
        );
    }

    #[test]
    fn parser_table() {
        use NcidParseError::*;
        let ok_cid = CallFields {
            date: "12242025".into(),
            time: "0915".into(),
            line: "-".into(),
            number: "4075551212".into(),
            mesg: "NONE".into(),
            name: "NO NAME".into(),
        };
        let cases: Vec<(&str, Result<NcidLine, NcidParseError>)> = vec![
            (
                "200 NCID Server: ncidd (NCID) 1.17\r\n",
                Ok(NcidLine::Status {
                    code: 200,
                    text: "NCID Server: ncidd (NCID) 1.17".into(),
                }),
            ),
            (
                "300 End of connection startup",
                Ok(NcidLine::Status {
                    code: 300,
                    text: "End of connection startup".into(),
                }),
            ),
            (
                "CID: *DATE*12242025*TIME*0915*LINE*-*NMBR*4075551212*MESG*NONE*NAME*NO NAME*",
                Ok(NcidLine::Cid(ok_cid.clone())),
            ),
            // LINE and MESG are optional in old servers' lines.
            (
                "CID: *DATE*12242025*TIME*0915*NMBR*4075551212*NAME*NO NAME*\n",
                Ok(NcidLine::Cid(ok_cid)),
            ),
            (
                "CIDINFO: *LINE*POTS*RING*3*TIME*09:15:02*",
                Ok(NcidLine::CidInfo {
                    line: "POTS".into(),
                    ring: 3,
                    time: "09:15:02".into(),
                }),
            ),
            (
                "MSG: hello ###",
                Ok(NcidLine::Other {
                    label: "MSG".into(),
                }),
            ),
            ("CID: *DATE*1*TIME*2*NMBR*3*", Err(Missing("NAME"))),
            ("CID: DATE*1*", Err(Fields)),
            ("CID: *DATE*1*TIME*", Err(Fields)),
            ("CIDINFO: *LINE*x*RING*many*", Err(Ring("many".into()))),
            ("CIDINFO: *LINE*x*", Err(Missing("RING"))),
            ("hello world", Err(Unrecognised)),
            ("", Err(Unrecognised)),
            ("cid: *A*b*", Err(Unrecognised)),
            ("20", Err(Unrecognised)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_line(input), want, "{input:?}");
        }
        assert_eq!(parse_line(&"9".repeat(MAX_LINE + 1)), Err(TooLong));
    }

    #[test]
    fn example_is_the_defaults() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct File {
            ncid: NcidConfig,
        }
        opskit::config::check_example(EXAMPLE, &File::default()).unwrap();
    }
}
