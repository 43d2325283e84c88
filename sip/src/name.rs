//! Header names: compact forms (RFC 3261 §7.3.3 and later RFCs) and comparison.

/// Full header names that have a single-letter compact form.
///
/// Sources: RFC 3261 §20 (i, m, e, l, c, f, s, k, t, v), RFC 3265 (o, u),
/// RFC 3515 (r), RFC 3892 (b), RFC 4028 (x), RFC 3841 (a, j, d), RFC 8224 (y).
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Expands a compact header name to its full form; other names are returned unchanged.
///
/// ```
/// assert_eq!(sip::expand_compact("v"), "Via");
/// assert_eq!(sip::expand_compact("I"), "Call-ID");
/// assert_eq!(sip::expand_compact("Path"), "Path");
/// ```
pub fn expand_compact(name: &str) -> &str {
    if let [b] = name.as_bytes() {
        let b = b.to_ascii_lowercase();
        for (c, full) in COMPACT {
            if *c == b {
                return full;
            }
        }
    }
    name
}

/// The compact form of a full header name, if it has one.
pub fn compact_of(name: &str) -> Option<char> {
    COMPACT
        .iter()
        .find(|(_, full)| full.eq_ignore_ascii_case(name))
        .map(|(c, _)| *c as char)
}

/// Header names compare case-insensitively, compact and full forms being equal (RFC 3261 §7.3.1).
pub fn names_match(a: &str, b: &str) -> bool {
    if a.len() == b.len() && a.eq_ignore_ascii_case(b) {
        return true;
    }
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// True if `s` is a non-empty RFC 3261 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms() {
        for (c, full) in COMPACT {
            let s = (*c as char).to_string();
            assert_eq!(expand_compact(&s), *full);
            assert!(names_match(&s, full));
            assert!(names_match(&full.to_uppercase(), &s.to_uppercase()));
            assert_eq!(compact_of(full), Some(*c as char));
        }
        assert!(!names_match("v", "Via-X"));
        assert!(!names_match("q", "Via"));
        assert_eq!(compact_of("Path"), None);
    }
}
