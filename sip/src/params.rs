//! Generic parameter lists (`;name=value`) and list splitting shared by all typed headers.

use std::fmt;

use crate::error::ParseError;

/// One `name[=value]` parameter. The value is kept as written (quotes included) so
/// re-serialisation is faithful; use [`Param::unquoted`] to read quoted strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// parameter name as written
    pub name: String,
    /// value as written, `None` for a flag parameter such as `lr`
    pub value: Option<String>,
}

impl Param {
    /// Creates a parameter.
    pub fn new(name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        Param {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    /// The value with surrounding quotes and backslash escapes removed.
    pub fn unquoted(&self) -> Option<String> {
        self.value.as_deref().map(unquote)
    }
}

/// An ordered list of parameters; names compare case-insensitively (RFC 3261 §7.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// Parses `;a=b;c` (leading `;` optional). Quoted values may contain `;`.
    pub fn parse(s: &str) -> Result<Params, ParseError> {
        let s = s.trim();
        let s = s.strip_prefix(';').unwrap_or(s);
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Ok(Params(out));
        }
        for part in split_top(s, b';') {
            let part = part.trim();
            if part.is_empty() {
                return Err(ParseError::hdr("parameter", "empty parameter"));
            }
            match part.find('=') {
                Some(eq) => {
                    let name = part[..eq].trim();
                    let value = part[eq + 1..].trim();
                    check_name(name)?;
                    if value.starts_with('"') {
                        if !is_quoted_string(value) {
                            return Err(ParseError::hdr("parameter", "bad quoted string"));
                        }
                    } else if value.contains(['"', '<', '>']) {
                        // gen-value = token / host / quoted-string (RFC 3261 §25.1); a stray
                        // quote or bracket would change how the rest of the header splits
                        return Err(ParseError::hdr("parameter", "quote or bracket in value"));
                    }
                    out.push(Param::new(name, Some(value)));
                }
                None => {
                    check_name(part)?;
                    out.push(Param::new(part, None::<String>));
                }
            }
        }
        Ok(Params(out))
    }

    /// First parameter with this name.
    pub fn find(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// True if a parameter with this name exists (flag or valued).
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The raw value of a parameter (`None` if absent or a flag).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).and_then(|p| p.value.as_deref())
    }

    /// Sets (replacing) or appends a parameter.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        match self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value.map(str::to_string),
            None => self.0.push(Param::new(name, value)),
        }
    }

    /// Removes every parameter with this name; returns whether one was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
        before != self.0.len()
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the parameters in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.0.iter()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            match &p.value {
                Some(v) => write!(f, ";{}={}", p.name, v)?,
                None => write!(f, ";{}", p.name)?,
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), ParseError> {
    // Lenient beyond `token` because uri-parameters allow "[]/:&+$" and escapes.
    if name.is_empty()
        || name
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'"' | b'<' | b'>' | b',' | b'='))
    {
        return Err(ParseError::hdr("parameter", "bad name"));
    }
    Ok(())
}

fn is_quoted_string(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 2 || b[0] != b'"' {
        return false;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i == b.len() - 1,
            _ => i += 1,
        }
    }
    false
}

/// Removes surrounding double quotes and backslash escapes (RFC 3261 §25.1 quoted-pair).
pub fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let inner = &v[1..v.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut esc = false;
        for c in inner.chars() {
            if esc {
                out.push(c);
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else {
                out.push(c);
            }
        }
        out
    } else {
        v.to_string()
    }
}

/// Quotes a string for use as a quoted-string.
pub fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits `s` on `sep` at top level: not inside a quoted string nor inside `<...>`.
///
/// This is how multi-value headers (`Via: a, b`, `Route: <x>, <y>`) are split
/// (RFC 3261 §7.3.1). Empty elements are preserved for the caller to reject.
pub fn split_top(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    SplitTop {
        s,
        pos: 0,
        sep,
        done: false,
    }
}

struct SplitTop<'a> {
    s: &'a str,
    pos: usize,
    sep: u8,
    done: bool,
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut in_q = false;
        let mut angle = false;
        while i < b.len() {
            let c = b[i];
            if in_q {
                if c == b'\\' {
                    i += 1;
                } else if c == b'"' {
                    in_q = false;
                }
            } else if c == b'"' {
                in_q = true;
            } else if c == b'<' {
                angle = true;
            } else if c == b'>' {
                angle = false;
            } else if c == self.sep && !angle {
                self.pos = i + 1;
                return self.s.get(start..i);
            }
            i += 1;
        }
        self.done = true;
        self.s.get(start..)
    }
}

/// Splits a header value into its comma-separated elements, trimmed, skipping
/// empty elements (RFC 3261 §7.3.1 allows `a, , b`-style leniency to be ignored).
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    split_top(s, b',').map(str::trim).filter(|x| !x.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_roundtrip() {
        let p = Params::parse(";lr;transport=udp;x=\"a;b\"").unwrap();
        assert!(p.has("LR"));
        assert_eq!(p.get("transport"), Some("udp"));
        assert_eq!(p.find("x").unwrap().unquoted().unwrap(), "a;b");
        assert_eq!(p.to_string(), ";lr;transport=udp;x=\"a;b\"");
        assert!(Params::parse(";x=\"abc").is_err());
        assert!(Params::parse(";;").is_err());
        assert!(Params::parse(";=a").is_err());
        assert!(Params::parse(";a=b\"c").is_err());
        assert!(Params::parse(";a=<b").is_err());
        assert!(Params::parse(";a b=c").is_err());
        assert!(Params::parse(";\"a\"").is_err());
        assert_eq!(
            Params::parse(";icid=ab+c=1;maddr=[::1]")
                .unwrap()
                .get("icid"),
            Some("ab+c=1")
        );
    }

    #[test]
    fn split() {
        let v: Vec<_> = split_list("<sip:a,b@x>;p=\"1,2\" , sip:c ,,").collect();
        assert_eq!(v, vec!["<sip:a,b@x>;p=\"1,2\"", "sip:c"]);
        assert_eq!(unquote(r#""a\"b""#), "a\"b");
        assert_eq!(quote("a\"b"), r#""a\"b""#);
    }
}
