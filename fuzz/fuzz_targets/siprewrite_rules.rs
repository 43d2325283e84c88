//! Interop rewrite rules: arbitrary rules text (alone, or spliced into a valid rules file)
//! is a typed `RuleError` or a rule set; that set applied to arbitrary SIP bytes and to an
//! INVITE with SDP in every direction never panics, and what it rewrites parses again with
//! a Content-Length equal to its body.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::{Limits, Message};
use siprewrite::{Direction, RuleSet};

/// A valid file using every action, for the splice: one line replaced by the input keeps
/// the rest valid, so the fuzzer reaches the per-rule checks.
const RULES: &str = r#"[[to_ue]]
name = "all"
method = ["INVITE", "UPDATE"]
status = [183, "2xx", "400-499"]
headers = [{ name = "User-Agent", value = "^S" }, { name = "X-A", absent = true }]
remove_header = [{ name = "Allow", value = "MESSAGE" }, { name = "Supported" }]
replace_header = [{ name = "From", pattern = "(?P<u>sip:[a-z]+)@", with = "${u}-x@" }]
add_header = [{ name = "X-Lab", value = "1" }]
remove_codecs = ["AMR-WB", "PCMU"]
remove_sdp_attributes = ["rtcp", "mid"]
dscp = 46
[[to_ue]]
name = "map"
status = "4xx"
map_status = { code = 486, reason = "Busy Here" }
[[from_ue]]
name = "any"
remove_sdp_attributes = ["rtcp-fb"]
"#;

const INVITE: &[u8] = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:alice@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
User-Agent: SM\r\nAllow: INVITE, MESSAGE\r\nContent-Type: application/sdp\r\n\
Content-Length: 138\r\n\r\nv=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\n\
t=0 0\r\nm=audio 4000 RTP/AVP 104 0 8\r\na=rtpmap:104 AMR-WB/16000\r\na=rtcp:4001\r\n\
a=mid:0\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // Rules text, then (after the first NUL) the message.
    let (text, msg) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(rules) = RuleSet::load(&imslab_fuzz::config_text(RULES, sel, text)) else {
        return;
    };
    let msg = if msg.is_empty() { INVITE } else { msg };
    let data = Bytes::copy_from_slice(msg);
    for dir in Direction::ALL {
        let Some(w) = rules.apply_bytes(dir, &data, &Limits::default()) else {
            continue;
        };
        assert!(w.outcome.dscp.is_none_or(|d| d <= 63));
        if let Some(b) = w.bytes {
            let again = Message::parse(&b).expect("rewritten output parses");
            if let Some(cl) = again.header("Content-Length") {
                assert_eq!(cl.trim().parse::<usize>().ok(), Some(again.body().len()));
            }
        }
    }
});
