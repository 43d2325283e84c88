//! The pipeline's subcommands, as functions the binary's argument parser calls:
//!
//! - `appserver calls [--limit N] [--outcome X]` → [`calls`]: the call log as a table.
//! - `appserver lookup NUMBER` → [`lookup`]: what the pipeline would show and decide for a
//!   caller, with the reverse lookup asked live.
//!
//! Both write to any `Write` so tests read their output.

use crate::blocklist;
use crate::calllog::{self, CallLogConfig, CallLogError, CallRecord, Filter};
use crate::event::{NameSource, RawCaller, Verdict};
use crate::numbers::NumberPlan;
use crate::phonebook;
use crate::pipeline::{Parts, Pipeline, Sections, StartError};
use crate::reverse::ReverseLookup;
use std::io::Write;
use std::time::Instant;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The call log cannot be read.
    #[error("{0}")]
    CallLog(#[from] CallLogError),
    /// `--outcome` is not an outcome.
    #[error("unknown outcome {0:?} (answered, missed, blocked, cancelled, answered_elsewhere)")]
    Outcome(String),
    /// The phonebook, blocklist or reverse lookup configuration is bad.
    #[error("{0}")]
    Start(#[from] StartError),
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

fn local_time(ms: i64) -> String {
    use chrono::TimeZone as _;
    chrono::Local
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Writes rows as an aligned text table, newest first.
pub fn write_table(rows: &[CallRecord], out: &mut impl Write) -> std::io::Result<()> {
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let number = if r.anonymous {
                "(withheld)".to_string()
            } else {
                r.caller_number.clone().unwrap_or_else(|| "-".into())
            };
            let outcome = r.outcome.clone().unwrap_or_else(|| "in progress".into());
            let outcome = match &r.block_rule {
                Some(rule) => format!("{outcome} ({rule})"),
                None => outcome,
            };
            [
                local_time(r.started),
                outcome,
                number,
                r.caller_name.clone().unwrap_or_default(),
                r.callee_number.clone().unwrap_or_else(|| r.callee.clone()),
                format!("{}s", r.talk_seconds),
                r.source.clone(),
            ]
        })
        .collect();
    let head = [
        "STARTED", "OUTCOME", "CALLER", "NAME", "CALLEE", "TALK", "SOURCE",
    ];
    let mut w = head.map(|h| h.chars().count());
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cols: [&str; 7]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                let pad = w[i] - c.chars().count();
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, head)?;
    for row in &cells {
        line(out, row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

/// `appserver calls`: reads the call log read-only (the server may be writing it) and
/// prints up to `limit` rows, optionally of one outcome.
pub fn calls(
    cfg: &CallLogConfig,
    limit: usize,
    outcome: Option<&str>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let outcome = match outcome {
        Some(o) => Some(calllog::parse_outcome(o).ok_or_else(|| CliError::Outcome(o.into()))?),
        None => None,
    };
    let conn = calllog::open_read_only(&cfg.path)?;
    let rows = calllog::query(
        &conn,
        &Filter {
            limit,
            outcome,
            ..Default::default()
        },
    )?;
    write_table(&rows, out)?;
    Ok(())
}

/// What a caller string means to the pipeline: a URI (`tel:`, `sip:`) as an untrusted
/// From, anything else as a number a device gave.
pub fn raw_caller(arg: &str) -> RawCaller {
    if arg.contains(':') {
        RawCaller::Sip {
            p_asserted_identity: Vec::new(),
            from: format!("<{}>", arg.trim()),
            privacy: None,
            trusted: false,
        }
    } else {
        RawCaller::Plain {
            number: Some(arg.to_string()),
            name: None,
            anonymous: false,
        }
    }
}

fn source_str(s: NameSource) -> &'static str {
    match s {
        NameSource::Phonebook => "phonebook",
        NameSource::Reverse => "reverse lookup",
        NameSource::Display => "display name",
        NameSource::Anonymous => "withheld",
        NameSource::None => "none",
    }
}

/// `appserver lookup NUMBER`: the number as the pipeline normalises it, the name it
/// would show (phonebook, else the reverse lookup asked now) and the verdict. Reads the
/// configured files; writes nothing. Needs a tokio runtime when `[reverse]` is set.
pub async fn lookup(s: &Sections, arg: &str, out: &mut impl Write) -> Result<(), CliError> {
    let plan = NumberPlan::new(s.numbers.clone());
    let (bus, _) = tokio::sync::broadcast::channel(1);
    // The same parts the server builds, minus the call log: what is shown is what a call
    // would get.
    let p = Pipeline::new(
        s.pipeline.clone(),
        Parts {
            phonebook: phonebook::start(&s.phonebook, &plan).map_err(StartError::from)?,
            blocklist: blocklist::start(&s.blocklist, &plan).map_err(StartError::from)?,
            reverse: ReverseLookup::new(&s.reverse).map_err(StartError::from)?,
            calllog: None,
            plan,
            bus,
        },
    )?;
    let (mut caller, verdict) = p.decide(&raw_caller(arg), Instant::now());
    if let (Some(r), Some(n)) = (p.reverse(), caller.number.clone()) {
        if caller.name_source != NameSource::Phonebook && ReverseLookup::wants(&n) {
            if let Some(name) = r.lookup(&n).await {
                caller.name = Some(name);
                caller.name_source = NameSource::Reverse;
            }
        }
    }
    writeln!(out, "number:  {}", caller.number.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "name:    {} ({})",
        caller.name.as_deref().unwrap_or("-"),
        source_str(caller.name_source)
    )?;
    match verdict {
        Verdict::Ring => writeln!(out, "verdict: ring")?,
        Verdict::Block { rule } => writeln!(out, "verdict: block (rule {rule:?})")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::BlocklistConfig;
    use crate::calllog::CallLog;
    use crate::phonebook::PhonebookConfig;
    use std::time::Duration;

    fn rec(id: &str, started: i64, outcome: &str, rule: Option<&str>) -> CallRecord {
        CallRecord {
            call_id: id.into(),
            started,
            caller_number: Some("+49301".into()),
            caller_name: Some("Jane".into()),
            name_source: "phonebook".into(),
            anonymous: false,
            callee: "sip:+49302@ims".into(),
            callee_number: Some("+49302".into()),
            source: "isc".into(),
            outcome: Some(outcome.into()),
            answered_at: None,
            ended_at: None,
            talk_seconds: 7,
            block_rule: rule.map(str::to_string),
        }
    }

    #[test]
    fn calls_prints_a_table_filtered_by_outcome() {
        let path = crate::calllog::tests::temp_db("cli");
        let cfg = CallLogConfig {
            path,
            ..Default::default()
        };
        let log = CallLog::open(&cfg).unwrap();
        log.record(rec("a", 1_000, "answered", None));
        log.record(rec("b", 2_000, "blocked", Some("0900*")));
        assert!(log.flush(Duration::from_secs(5)));
        let mut out = Vec::new();
        calls(&cfg, 10, None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("STARTED"));
        assert!(lines[1].contains("blocked (0900*)"), "{text}");
        assert!(
            lines[2].contains("answered") && lines[2].contains("Jane") && lines[2].contains("7s")
        );
        // Columns line up.
        assert_eq!(lines[1].find("+49301"), lines[2].find("+49301"));

        let mut out = Vec::new();
        calls(&cfg, 10, Some("answered"), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        assert!(matches!(
            calls(&cfg, 10, Some("nope"), &mut Vec::new()),
            Err(CliError::Outcome(_))
        ));
        let missing = CallLogConfig {
            path: "/nonexistent/calls.db".into(),
            ..Default::default()
        };
        assert!(matches!(
            calls(&missing, 10, None, &mut Vec::new()),
            Err(CliError::CallLog(_))
        ));
    }

    #[tokio::test]
    async fn lookup_shows_number_name_and_verdict() {
        let dir = std::env::temp_dir().join(format!("cli-lookup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.csv"), "0301,Jane\n").unwrap();
        std::fs::write(dir.join("block.txt"), "0303\n").unwrap();
        let s = Sections {
            phonebook: PhonebookConfig {
                file: Some(dir.join("b.csv")),
                poll_seconds: 5,
            },
            blocklist: BlocklistConfig {
                entries: vec!["0900*".into()],
                file: Some(dir.join("block.txt")),
                poll_seconds: 5,
            },
            ..Default::default()
        };
        let run = |arg: &'static str| {
            let s = s.clone();
            async move {
                let mut out = Vec::new();
                lookup(&s, arg, &mut out).await.unwrap();
                String::from_utf8(out).unwrap()
            }
        };
        assert_eq!(
            run("030 1").await,
            "number:  +49301\nname:    Jane (phonebook)\nverdict: ring\n"
        );
        assert!(run("tel:+49-900-1")
            .await
            .contains("verdict: block (rule \"0900*\")"));
        assert!(run("0303").await.contains("verdict: block (rule \"0303\")"));
        assert_eq!(
            run("sip:alice@example.com").await,
            "number:  alice\nname:    - (none)\nverdict: ring\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
