//! NCID line parser of the notify-agent (`appserver::sinks::ncid::parse_line`): typed
//! errors only on anything a server sends; a parsed `CID:` line always gives a ring the
//! agent can show. The second half: any caller name and number our NCID server writes
//! parses back to a `CID:` line with the same number of fields (a `*` or control
//! character in a name must not break the framing).
#![no_main]
use std::time::{Duration, UNIX_EPOCH};

use appserver::agent::Ring;
use appserver::event::{CallEvent, CallEventKind, Callee, Caller, NameSource, Source};
use appserver::sinks::ncid::{lines, parse_line, NcidLine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(l) = parse_line(&text) {
        if let Some(r) = Ring::from_ncid(&l) {
            let _ = (r.summary(), r.body());
        }
    }

    let (a, b) = text.split_at(
        text.char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i),
    );
    let ev = CallEvent {
        conn: 1,
        call_id: "f".into(),
        kind: CallEventKind::Ring,
        at: UNIX_EPOCH + Duration::from_secs(u64::from(data.first().copied().unwrap_or(0)) << 24),
        started: UNIX_EPOCH,
        caller: Caller {
            number: Some(b.to_string()),
            name: Some(a.to_string()),
            name_source: NameSource::Display,
            anonymous: false,
        },
        callee: Callee {
            number: None,
            uri: "sip:x@y".into(),
        },
        source: Source::Isc,
    };
    let line = lines(&ev, "", &chrono::Utc).expect("a ring has a line");
    match parse_line(&line) {
        Ok(NcidLine::Cid(f)) => assert_eq!(f.mesg, "NONE", "{line:?}"),
        other => panic!("our own line {line:?} parsed as {other:?}"),
    }
});
