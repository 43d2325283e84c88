//! Edits that need more than one `sip::Message` call: header removal by value, and the
//! SDP body (through the `sdp` crate, which rewrites only the lines it touches).

use bytes::Bytes;
use regex::Regex;
use sdp::{Attribute, Session};
use sip::Message;

/// Removes the fields named `name` whose value matches `re`; true if any went.
pub(crate) fn remove_matching(msg: &mut Message, name: &str, re: &Regex) -> bool {
    let before = msg.header_count();
    let keep: Vec<String> = msg
        .headers_named(name)
        .filter(|v| !re.is_match(v))
        .map(str::to_owned)
        .collect();
    let total = msg.headers_named(name).count();
    if keep.len() == total {
        return false;
    }
    // `sip::Message` removes by name only: drop them all, then put the survivors back
    // where the first one was, in their order.
    let at = msg
        .headers()
        .position(|h| sip::names_match(h.name, name))
        .unwrap_or(before);
    msg.remove_header(name);
    for (i, v) in keep.iter().enumerate() {
        msg.insert_header_at(at + i, name, v);
    }
    true
}

/// Is the body SDP? Only then are SDP actions applied (multipart bodies are left alone).
fn is_sdp(msg: &Message) -> bool {
    msg.header("Content-Type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    })
}

/// Removes the codecs named in `codecs` (their payload types from `m=` and their
/// `a=rtpmap`/`a=fmtp`/`a=rtcp-fb` lines) and every attribute named in `attrs`, session
/// and media level. Fixes Content-Length. True if the body changed.
pub(crate) fn edit_sdp(
    msg: &mut Message,
    codecs: &[String],
    attrs: &[String],
    warnings: &mut Vec<String>,
) -> bool {
    if msg.body().is_empty() || !is_sdp(msg) {
        return false;
    }
    let before = msg.body().clone();
    let mut s = match Session::parse(&before) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("SDP left as is, it does not parse: {e}"));
            return false;
        }
    };
    if !codecs.is_empty() {
        for m in s.media_mut() {
            remove_codecs(m, codecs, warnings);
        }
    }
    if !attrs.is_empty() {
        let drop = |a: &Attribute| attrs.iter().any(|n| a.name().eq_ignore_ascii_case(n));
        s.retain_attributes(|a| !drop(a));
        for m in s.media_mut() {
            m.retain_attributes(|a| !drop(a));
        }
    }
    let after = s.to_bytes();
    if after[..] == before[..] {
        return false;
    }
    // RFC 3261 §20.14: Content-Length is the body's size in octets.
    msg.set_header("Content-Length", &after.len().to_string());
    msg.set_body_raw(Bytes::from(after));
    true
}

fn remove_codecs(m: &mut sdp::Media, codecs: &[String], warnings: &mut Vec<String>) {
    let gone: Vec<u8> = m
        .codecs()
        .into_iter()
        .filter(|c| {
            c.rtpmap
                .as_ref()
                .is_some_and(|r| codecs.iter().any(|n| r.is(n)))
        })
        .map(|c| c.payload_type)
        .collect();
    if gone.is_empty() {
        return;
    }
    let is_gone = |f: &str| f.parse::<u8>().is_ok_and(|pt| gone.contains(&pt));
    let mut line = m.line().clone();
    line.formats.retain(|f| !is_gone(f));
    if line.formats.is_empty() {
        // An m= line needs a format (RFC 8866 §5.14); rejecting the stream is the
        // answerer's call, not an interceptor's.
        warnings.push(format!(
            "m={} left as is: removing {codecs:?} would leave it without a format",
            line.media
        ));
        return;
    }
    m.set_line(line);
    m.retain_attributes(|a| match a {
        Attribute::Rtpmap(r) => !gone.contains(&r.payload_type),
        Attribute::Fmtp(f) => !is_gone(&f.format),
        // RFC 4585 §4.2: `a=rtcp-fb:<pt> ...`, `*` for all formats stays.
        Attribute::Other {
            name,
            value: Some(v),
        } if name.eq_ignore_ascii_case("rtcp-fb") => {
            !is_gone(v.split_ascii_whitespace().next().unwrap_or(""))
        }
        _ => true,
    });
}
