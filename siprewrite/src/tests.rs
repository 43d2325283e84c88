//! One test per action and per match kind, and the validation errors.

use super::*;

const SDP: &str = "v=0\r\n\
o=- 1 1 IN IP4 10.0.0.5\r\n\
s=-\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
m=audio 4000 RTP/AVPF 104 110 102 108 100 0\r\n\
a=rtpmap:104 AMR-WB/16000\r\n\
a=fmtp:104 mode-change-capability=2;max-red=0\r\n\
a=rtpmap:110 AMR-WB/16000\r\n\
a=fmtp:110 octet-align=1;mode-change-capability=2;max-red=0\r\n\
a=rtpmap:102 AMR/8000\r\n\
a=fmtp:102 mode-change-capability=2;max-red=0\r\n\
a=rtpmap:108 AMR/8000\r\n\
a=rtpmap:100 telephone-event/16000\r\n\
a=rtcp-fb:104 nack\r\n\
a=rtcp-fb:102 nack\r\n\
a=rtcp-fb:* trr-int 100\r\n\
a=rtcp:4001\r\n\
a=mid:0\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn invite() -> Message {
    let text = format!(
        "INVITE sip:bob@ims.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@ims.test>;tag=a\r\n\
         To: <sip:bob@ims.test>\r\n\
         Call-ID: call-1\r\n\
         CSeq: 1 INVITE\r\n\
         User-Agent: Samsung IMS 6.0\r\n\
         Allow: INVITE, ACK\r\n\
         Allow: MESSAGE\r\n\
         Supported: 100rel\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    Message::parse(text.as_bytes()).unwrap()
}

fn response(code: u16, reason: &str, cseq: &str) -> Message {
    let text = format!(
        "SIP/2.0 {code} {reason}\r\n\
         Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa\r\n\
         From: <sip:alice@ims.test>;tag=a\r\n\
         To: <sip:bob@ims.test>;tag=b\r\n\
         Call-ID: call-1\r\n\
         CSeq: {cseq}\r\n\
         Server: Kamailio/5.6.3 (x86_64/linux)\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(text.as_bytes()).unwrap()
}

fn rules(text: &str) -> RuleSet {
    RuleSet::load(text).unwrap_or_else(|e| panic!("{e}"))
}

/// The body and its Content-Length agree after an edit (RFC 3261 §20.14), and the
/// message still parses.
fn reparsed(m: &Message) -> Message {
    let wire = m.to_bytes();
    let again = Message::parse(&wire).unwrap();
    let cl: usize = again.header("Content-Length").unwrap().parse().unwrap();
    assert_eq!(cl, again.body().len());
    again
}

fn body(m: &Message) -> String {
    String::from_utf8(m.body().to_vec()).unwrap()
}

#[test]
fn add_header_appends_a_field() {
    let r = rules(
        "[[to_core]]\nname = \"tag\"\nadd_header = [{ name = \"X-Lab\", value = \"on; a=1\" }]\n",
    );
    let mut m = invite();
    let out = r.apply(Direction::ToCore, &mut m);
    assert!(out.changed);
    assert_eq!(&*out.rules[0], "tag");
    assert_eq!(reparsed(&m).header("X-Lab"), Some("on; a=1"));
    // Only its direction: the same message toward the UE is left alone.
    let mut m2 = invite();
    assert!(!r.apply(Direction::ToUe, &mut m2).matched());
}

#[test]
fn remove_header_all_or_by_value() {
    let r = rules(
        "[[to_ue]]\nname = \"all\"\nremove_header = [{ name = \"Supported\" }]\n\
         [[to_ue]]\nname = \"by-value\"\nremove_header = [{ name = \"Allow\", value = \"MESSAGE\" }]\n",
    );
    let mut m = invite();
    let out = r.apply(Direction::ToUe, &mut m);
    assert!(out.changed);
    let m = reparsed(&m);
    assert!(!m.has_header("Supported"));
    assert_eq!(
        m.headers_named("Allow").collect::<Vec<_>>(),
        ["INVITE, ACK"]
    );
    // Nothing to remove: no change reported, the bytes stay.
    let mut again = m.clone();
    let out = r.apply(Direction::ToUe, &mut again);
    assert!(out.matched() && !out.changed);
    assert_eq!(again.to_bytes(), m.to_bytes());
}

#[test]
fn replace_header_with_captures() {
    let r = rules(
        r#"[[to_ue]]
name = "hide-server"
replace_header = [{ name = "Server", pattern = '^(?P<product>[A-Za-z]+)/[^ ]+ .*$', with = "${product} lab" }]
"#,
    );
    let mut m = response(200, "OK", "1 INVITE");
    assert!(r.apply(Direction::ToUe, &mut m).changed);
    assert_eq!(reparsed(&m).header("Server"), Some("Kamailio lab"));
}

#[test]
fn remove_codecs_drops_payload_types_and_their_lines() {
    let r = rules("[[to_ue]]\nname = \"no-wb\"\nremove_codecs = [\"amr-wb\"]\n");
    let mut m = invite();
    let out = r.apply(Direction::ToUe, &mut m);
    assert!(out.changed, "{out:?}");
    let b = body(&reparsed(&m));
    assert!(b.contains("m=audio 4000 RTP/AVPF 102 108 100 0\r\n"), "{b}");
    for gone in ["AMR-WB", "fmtp:104", "fmtp:110", "rtcp-fb:104"] {
        assert!(!b.contains(gone), "{gone} still in\n{b}");
    }
    // The other codecs' lines and the wildcard feedback line stay, in order.
    assert!(
        b.contains("a=rtpmap:102 AMR/8000\r\na=fmtp:102 mode-change-capability=2;max-red=0\r\n")
    );
    assert!(
        b.contains("a=rtcp-fb:102 nack\r\na=rtcp-fb:* trr-int 100\r\n"),
        "{b}"
    );
}

#[test]
fn remove_codecs_never_empties_an_m_line() {
    let r = rules("[[to_ue]]\nname = \"all\"\nremove_codecs = [\"AMR-WB\", \"AMR\", \"telephone-event\", \"PCMU\"]\n");
    let mut m = invite();
    let before = m.to_bytes();
    let out = r.apply(Direction::ToUe, &mut m);
    assert!(!out.changed);
    assert_eq!(out.warnings.len(), 1, "{out:?}");
    assert_eq!(m.to_bytes(), before);
}

#[test]
fn remove_sdp_attributes_by_name() {
    let r = rules("[[to_ue]]\nname = \"rtcp-mid\"\nstatus = \"1xx\"\nremove_sdp_attributes = [\"a=rtcp\", \"mid\", \"group\"]\n");
    let mut m = response(183, "Session Progress", "1 INVITE");
    m.set_body(Some("application/sdp"), Bytes::from_static(SDP.as_bytes()));
    let out = r.apply(Direction::ToUe, &mut m);
    assert!(out.changed);
    let b = body(&reparsed(&m));
    assert!(
        !b.contains("a=rtcp:") && !b.contains("a=mid") && !b.contains("a=group"),
        "{b}"
    );
    // `rtcp` names a=rtcp only, not a=rtcp-fb.
    assert!(b.contains("a=rtcp-fb:104 nack"), "{b}");
    assert_eq!(
        b.len(),
        SDP.len() - "a=rtcp:4001\r\na=mid:0\r\na=group:BUNDLE 0\r\n".len()
    );
}

#[test]
fn sdp_actions_need_an_sdp_body_that_parses() {
    let r = rules("[[to_ue]]\nname = \"x\"\nremove_sdp_attributes = [\"mid\"]\n");
    let mut m = response(200, "OK", "1 INVITE");
    m.set_body(Some("text/plain"), Bytes::from_static(b"a=mid:0\r\n"));
    assert!(!r.apply(Direction::ToUe, &mut m).changed);
    m.set_body(
        Some("application/sdp"),
        Bytes::from_static(b"v=0\r\nm=audio x\r\n"),
    );
    let out = r.apply(Direction::ToUe, &mut m);
    assert!(!out.changed && out.warnings.len() == 1, "{out:?}");
}

#[test]
fn map_status_changes_code_and_reason() {
    let r = rules(
        "[[to_ue]]\nname = \"busy\"\nstatus = [480, \"600-603\"]\nmethod = \"INVITE\"\n\
         map_status = { code = 486, reason = \"Busy Here\" }\n",
    );
    let mut m = response(480, "Temporarily Unavailable", "1 INVITE");
    assert!(r.apply(Direction::ToUe, &mut m).changed);
    let m = reparsed(&m);
    assert_eq!((m.code(), m.reason()), (Some(486), Some("Busy Here")));
    // Another method's 480, and other codes, pass.
    let mut other = response(480, "Temporarily Unavailable", "2 MESSAGE");
    assert!(!r.apply(Direction::ToUe, &mut other).matched());
    let mut other = response(404, "Not Found", "1 INVITE");
    assert!(!r.apply(Direction::ToUe, &mut other).matched());
    let mut m = response(603, "Decline", "1 INVITE");
    assert!(r.apply(Direction::ToUe, &mut m).changed);
}

#[test]
fn dscp_is_reported_without_changing_bytes() {
    let r = rules(
        "[[to_ue]]\nname = \"ef\"\nmethod = \"INVITE\"\ndscp = 46\n\
         [[to_ue]]\nname = \"cs3\"\nkind = \"response\"\ndscp = 24\n",
    );
    let mut m = invite();
    let out = r.apply(Direction::ToUe, &mut m);
    assert_eq!((out.changed, out.dscp), (false, Some(46)));
    // The last matching rule wins.
    let mut resp = response(200, "OK", "1 INVITE");
    assert_eq!(r.apply(Direction::ToUe, &mut resp).dscp, Some(24));
    let data = Bytes::from(invite().to_bytes());
    let w = r
        .apply_bytes(Direction::ToUe, &data, &Limits::default())
        .unwrap();
    assert_eq!((w.bytes, w.outcome.dscp), (None, Some(46)));
}

#[test]
fn header_matchers_present_absent_and_regex() {
    let r = rules(
        r#"[[from_ue]]
name = "samsung-without-debug"
kind = "request"
headers = [{ name = "User-Agent", value = "^Samsung" }, { name = "X-Debug", absent = true }, { name = "Allow" }]
add_header = [{ name = "X-Seen", value = "1" }]
"#,
    );
    let mut m = invite();
    assert!(r.apply(Direction::FromUe, &mut m).changed);
    let mut with_debug = invite();
    with_debug.append_header("X-Debug", "1");
    assert!(!r.apply(Direction::FromUe, &mut with_debug).matched());
    let mut other_ua = invite();
    other_ua.set_header("User-Agent", "iOS/17");
    assert!(!r.apply(Direction::FromUe, &mut other_ua).matched());
    let mut resp = response(200, "OK", "1 INVITE");
    assert!(!r.apply(Direction::FromUe, &mut resp).matched());
}

#[test]
fn untouched_messages_pass_byte_for_byte() {
    let r = rules("[[to_ue]]\nname = \"x\"\nstatus = 480\nmap_status = { code = 486, reason = \"Busy Here\" }\n");
    // Compact forms and odd spacing would not survive a re-serialisation of every field.
    let wire = Bytes::from_static(
        b"SIP/2.0 200 OK\r\nv:  SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@x>;tag=1\r\n\
          t: <sip:b@x>;tag=2\r\ni: c\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n",
    );
    assert!(r
        .apply_bytes(Direction::ToUe, &wire, &Limits::default())
        .is_none());
    // No rules for a direction: not even parsed (garbage passes untouched).
    assert!(!r.has_rules(Direction::ToCore));
    assert!(r
        .apply_bytes(
            Direction::ToCore,
            &Bytes::from_static(b"\xff"),
            &Limits::default()
        )
        .is_none());
    let busy = Bytes::from(response(480, "x", "1 INVITE").to_bytes());
    let w = r
        .apply_bytes(Direction::ToUe, &busy, &Limits::default())
        .unwrap();
    assert!(w.bytes.unwrap().starts_with(b"SIP/2.0 486 Busy Here\r\n"));
}

#[test]
fn every_direction_key_loads() {
    let mut text = String::new();
    for d in Direction::ALL {
        text.push_str(&format!("[[{d}]]\nname = \"r\"\ndscp = 1\n"));
    }
    let r = rules(&text);
    assert_eq!(r.len(), 6);
    for d in Direction::ALL {
        assert_eq!(r.names(d).collect::<Vec<_>>(), ["r"]);
        assert_eq!(Direction::from_key(d.key()), Some(d));
    }
}

/// Each mistake names the direction and rule, and says what.
#[test]
fn invalid_rules_name_the_rule() {
    let cases: &[(&str, &str)] = &[
        ("[[to_ue]]\nname = \"re\"\nheaders = [{ name = \"To\", value = \"(\" }]\ndscp = 1\n", "bad regex \"(\": unclosed group"),
        ("[[to_ue]]\nname = \"act\"\nrewrite_header = []\n", "unknown field `rewrite_header`"),
        ("[[to_ue]]\nname = \"dscp\"\ndscp = 64\n", "dscp 64 is not 0-63"),
        ("[[to_ue]]\nname = \"dscp\"\ndscp = -1\n", "dscp -1 is not 0-63"),
        ("[[to_ue]]\nname = \"code\"\nstatus = 99\ndscp = 1\n", "status 99"),
        ("[[to_ue]]\nname = \"code\"\nstatus = \"7xx\"\ndscp = 1\n", "\"7xx\""),
        ("[[to_ue]]\nname = \"code\"\nstatus = \"500-400\"\ndscp = 1\n", "empty"),
        ("[[to_ue]]\nname = \"map\"\nstatus = 480\nmap_status = { code = 700, reason = \"x\" }\n", "700"),
        ("[[to_ue]]\nname = \"map\"\nstatus = 480\nmap_status = { code = 180, reason = \"x\" }\n", "provisional"),
        ("[[to_ue]]\nname = \"map\"\nmap_status = { code = 486, reason = \"x\" }\n", "needs a status"),
        ("[[to_ue]]\nname = \"cap\"\nreplace_header = [{ name = \"To\", pattern = \"(a)\", with = \"$2\" }]\n", "no group \"2\""),
        ("[[to_ue]]\nname = \"hdr\"\nadd_header = [{ name = \"X Y\", value = \"1\" }]\n", "not a header name"),
        ("[[to_ue]]\nname = \"hdr\"\nadd_header = [{ name = \"X\", value = \"1\\r\\nEvil: 1\" }]\n", "control"),
        ("[[to_ue]]\nname = \"cl\"\nremove_header = [{ name = \"l\" }]\n", "Content-Length is set by the engine"),
        ("[[to_ue]]\nname = \"noop\"\nmethod = \"INVITE\"\n", "has no action"),
        ("[[to_ue]]\nname = \"m\"\nmethod = \"IN VITE\"\ndscp = 1\n", "method"),
        ("[[to_ue]]\nname = \"c\"\nremove_codecs = [\"AMR/8000\"]\n", "encoding name"),
        ("[[to_ue]]\nname = \"k\"\nkind = \"request\"\nstatus = 200\ndscp = 1\n", "never match"),
        ("[[to_ue]]\nname = \"twice\"\ndscp = 1\n[[to_ue]]\nname = \"twice\"\ndscp = 2\n", "used twice"),
    ];
    for (text, what) in cases {
        let e = RuleSet::load(text).unwrap_err();
        let RuleError::Rule {
            direction, rule, ..
        } = &e
        else {
            panic!("{text}: {e:?}");
        };
        assert_eq!(*direction, "to_ue");
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("to_ue rule {rule:?}: ")), "{msg}");
        assert!(text.contains(&format!("name = \"{rule}\"")), "{msg}");
        assert!(msg.contains(what), "{text}\n=> {msg}\n(wanted {what:?})");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    let e = RuleSet::load("[[to_ue]]\ndscp = 1\n").unwrap_err();
    assert!(e.to_string().contains("rule \"#1\": has no name"), "{e}");
    let e = RuleSet::load("[[toward_ue]]\nname = \"x\"\n").unwrap_err();
    assert_eq!(e, RuleError::UnknownDirection("toward_ue".into()));
    let e = RuleSet::load("to_ue = 1\n").unwrap_err();
    assert_eq!(e, RuleError::NotAList("to_ue"));
    assert!(matches!(RuleSet::load("[[to_ue]"), Err(RuleError::Toml(_))));
}

#[test]
fn load_file_names_the_file() {
    let dir = std::env::temp_dir().join(format!("siprewrite-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("rules.toml");
    std::fs::write(&p, "[[to_ue]]\nname = \"bad\"\ndscp = 99\n").unwrap();
    let e = RuleSet::load_file(&p).unwrap_err().to_string();
    assert!(
        e.contains(p.to_str().unwrap()) && e.contains("\"bad\""),
        "{e}"
    );
    let missing = RuleSet::load_file(&dir.join("none.toml")).unwrap_err();
    assert!(matches!(missing, FileError::Read { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_crate_docs_example_loads() {
    let doc = include_str!("lib.rs");
    let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
    let end = start + doc[start..].find("//! ```\n").unwrap();
    let text: String = doc[start..end]
        .lines()
        .map(|l| {
            l.strip_prefix("//! ")
                .or(l.strip_prefix("//!"))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let r = rules(&text);
    assert_eq!(
        r.names(Direction::ToUe).collect::<Vec<_>>(),
        ["no-rtcp-mid-for-old-handsets", "busy-here-not-unavailable"]
    );
}
