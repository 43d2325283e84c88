//! E.164 normalisation of caller and callee numbers (ITU-T E.164, RFC 3966 tel: URIs).
//!
//! Every number the pipeline compares — phonebook keys, blocklist entries, the caller of an
//! offer — goes through [`NumberPlan::normalize`] first, so `+49 30 1234`, `0049301234`,
//! `030-1234` and `tel:+49-30-1234` all meet as `+49301234`. A number that cannot be placed
//! in the plan (a short internal extension, `**610`) stays as written, minus separators.
//!
//! Pure functions, no I/O.

use serde::{Deserialize, Serialize};
use sip::uri::{Scheme, Uri};

/// `[numbers]`: the dialling plan of the subscriber's country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumbersConfig {
    /// Country calling code without `+` (default `"49"`, Germany: the lab's home network;
    /// national numbers `030…` become `+4930…`).
    pub country_code: String,
    /// Trunk prefix of national numbers (default `"0"`, used by most of Europe).
    pub national_prefix: String,
    /// International call prefix (default `"00"`, the ITU-T recommended prefix).
    pub international_prefix: String,
}

impl Default for NumbersConfig {
    fn default() -> Self {
        NumbersConfig {
            country_code: "49".into(),
            national_prefix: "0".into(),
            international_prefix: "00".into(),
        }
    }
}

/// The commented TOML snippet of `[numbers]`.
pub const EXAMPLE: &str = r#"[numbers]
# Country calling code without '+': national numbers 030… become +4930….
country_code = "49"
# Trunk prefix of national numbers.
national_prefix = "0"
# International call prefix: 0044… becomes +44….
international_prefix = "00"
"#;

/// A dialling plan: turns numbers as written into E.164 (`+` and digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    cfg: NumbersConfig,
}

impl Default for NumberPlan {
    fn default() -> Self {
        NumberPlan::new(NumbersConfig::default())
    }
}

/// Visual separators of RFC 3966 §5.1.1 (`-`, `.`, `(`, `)`) and the spaces people type.
fn is_separator(c: char) -> bool {
    matches!(c, '-' | '.' | '(' | ')' | ' ' | '\t' | '/')
}

/// `%2B` and friends in a SIP user part (RFC 3261 §19.1.2 allows escaping any character).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Strips separators; `Some` when what is left is an optional `+` and then digits, `*`, `#`.
fn clean(raw: &str) -> Option<String> {
    let s: String = raw.trim().chars().filter(|c| !is_separator(*c)).collect();
    let body = s.strip_prefix('+').unwrap_or(&s);
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    {
        return None;
    }
    Some(s)
}

impl NumberPlan {
    /// A plan from its configuration.
    pub fn new(cfg: NumbersConfig) -> Self {
        NumberPlan { cfg }
    }

    /// The configuration the plan was built from.
    pub fn config(&self) -> &NumbersConfig {
        &self.cfg
    }

    /// A number as written (`+49 30 1234`, `0049301234`, `030/1234`, `1234`) in E.164 form
    /// when it can be placed, else as written without separators; `None` when it is not a
    /// number at all (letters, empty).
    pub fn normalize(&self, raw: &str) -> Option<String> {
        let s = clean(&unescape(raw))?;
        if let Some(rest) = s.strip_prefix('+') {
            return rest
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| format!("+{rest}"));
        }
        // `*31#`-style service codes and extensions with `*`/`#` are never E.164.
        if !s.chars().all(|c| c.is_ascii_digit()) {
            return Some(s);
        }
        let intl = &self.cfg.international_prefix;
        let nat = &self.cfg.national_prefix;
        if !intl.is_empty() {
            if let Some(rest) = s.strip_prefix(intl.as_str()) {
                // The prefix alone is a dialling fragment, not a national number.
                return Some(if rest.is_empty() {
                    s.clone()
                } else {
                    format!("+{rest}")
                });
            }
        }
        if !nat.is_empty() {
            if let Some(rest) = s.strip_prefix(nat.as_str()) {
                if !rest.is_empty() {
                    return Some(format!("+{}{rest}", self.cfg.country_code));
                }
            }
        }
        // No prefix: an extension or a local number without area code; neither can be
        // placed without guessing.
        Some(s)
    }

    /// The number a URI holds: the subscriber of a `tel:` URI (RFC 3966, global or local
    /// with `phone-context`), or the user part of a `sip:`/`sips:` URI when it is marked
    /// `user=phone` or looks like a number. `None` for a name (`sip:alice@…`) or another
    /// scheme.
    pub fn from_uri(&self, uri: &Uri) -> Option<String> {
        match uri.scheme {
            Scheme::Tel => {
                let user = uri.user.as_deref()?;
                self.with_context(user, uri.params.get("phone-context"))
            }
            Scheme::Sip | Scheme::Sips => {
                let user = uri.user.as_deref()?;
                // With user=phone the user part is a telephone-subscriber and may carry its
                // own `;phone-context=` (RFC 3261 §19.1.6).
                let (num, params) = match user.split_once(';') {
                    Some((n, p)) => (n, Some(p)),
                    None => (user, None),
                };
                let ctx = params.and_then(|p| {
                    p.split(';').find_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        k.trim().eq_ignore_ascii_case("phone-context").then_some(v)
                    })
                });
                self.with_context(num, ctx)
            }
            Scheme::Other(_) => None,
        }
    }

    /// A URI string (`tel:…`, `sip:…`, or a bare number) to its number; `None` when it does
    /// not parse or holds no number.
    pub fn from_uri_str(&self, s: &str) -> Option<String> {
        match Uri::parse(s) {
            Ok(u) => self.from_uri(&u),
            // A bare number as an MGCP or a plain input gives it.
            Err(_) => self.normalize(s),
        }
    }

    /// RFC 3966 §5.1.5: a local number is placed by its `phone-context`; when that is a
    /// global number prefix (`+4930`) the two are concatenated, when it is a domain name
    /// only our own plan can place it.
    fn with_context(&self, num: &str, ctx: Option<&str>) -> Option<String> {
        let n = clean(&unescape(num))?;
        if n.starts_with('+') {
            return self.normalize(&n);
        }
        match ctx.map(str::trim) {
            Some(c) if c.starts_with('+') => {
                let prefix = clean(c)?;
                let joined = format!("{prefix}{n}");
                self.normalize(&joined)
            }
            _ => self.normalize(&n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> NumberPlan {
        NumberPlan::default()
    }

    #[test]
    fn numbers_as_written_become_e164() {
        let table: &[(&str, Option<&str>)] = &[
            ("+49301234567", Some("+49301234567")),
            ("+49 (30) 123-45.67", Some("+49301234567")),
            ("0049301234567", Some("+49301234567")),
            ("030 1234567", Some("+49301234567")),
            ("030/1234567", Some("+49301234567")),
            ("0044207946000", Some("+44207946000")),
            ("%2B49301234", Some("+49301234")),
            ("1234", Some("1234")),
            ("**610", Some("**610")),
            ("0", Some("0")),
            ("00", Some("00")),
            ("+", None),
            ("+49*1", None),
            ("alice", None),
            ("", None),
            ("  ", None),
        ];
        for (raw, want) in table {
            assert_eq!(plan().normalize(raw).as_deref(), *want, "{raw:?}");
        }
    }

    #[test]
    fn another_plan_uses_its_own_prefixes() {
        let us = NumberPlan::new(NumbersConfig {
            country_code: "1".into(),
            national_prefix: "1".into(),
            international_prefix: "011".into(),
        });
        assert_eq!(us.normalize("0114930123").as_deref(), Some("+4930123"));
        assert_eq!(us.normalize("12125550100").as_deref(), Some("+12125550100"));
    }

    #[test]
    fn uris_yield_their_number() {
        let table: &[(&str, Option<&str>)] = &[
            ("tel:+49-30-1234567", Some("+49301234567")),
            ("tel:1234567;phone-context=+4930", Some("+49301234567")),
            (
                "tel:030-1234567;phone-context=example.com",
                Some("+49301234567"),
            ),
            ("tel:7042;phone-context=example.com", Some("7042")),
            (
                "sip:+49301234567@ims.example.com;user=phone",
                Some("+49301234567"),
            ),
            ("sip:0301234567@ims.example.com", Some("+49301234567")),
            ("sip:030-123.4567@ims.example.com", Some("+49301234567")),
            (
                "sip:1234;phone-context=+4930@ims.example.com;user=phone",
                Some("+49301234"),
            ),
            ("sip:alice@ims.example.com", None),
            ("sip:ims.example.com", None),
            ("urn:service:sos", None),
            ("0301234", Some("+49301234")),
        ];
        for (raw, want) in table {
            assert_eq!(plan().from_uri_str(raw).as_deref(), *want, "{raw:?}");
        }
    }
}
