//! Typed core headers: name-addr (From/To/Contact/Route/Path…), Via, CSeq.

use std::fmt;

use crate::error::ParseError;
use crate::method::Method;
use crate::params::{quote, split_list, unquote, Params};
use crate::uri::{parse_hostport_params, Uri};

/// `[display-name] <URI> *(;param)` or a bare addr-spec (RFC 3261 §20.10, §25.1).
///
/// With a bare addr-spec, everything after the first `;` is a *header* parameter,
/// not a URI parameter (RFC 3261 §20 note on Contact/From/To).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// display name, unquoted
    pub display: Option<String>,
    /// the URI
    pub uri: Uri,
    /// header parameters (`tag`, `expires`, `q`, `+sip.instance` …)
    pub params: Params,
}

impl NameAddr {
    /// Wraps a URI with no display name or parameters.
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    /// Parses one name-addr / addr-spec element.
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        let s = s.trim();
        let (display, rest) = if s.starts_with('"') {
            let b = s.as_bytes();
            let mut i = 1;
            let mut end = None;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        end = Some(i);
                        break;
                    }
                    _ => i += 1,
                }
            }
            let end = end.ok_or(ParseError::hdr("name-addr", "unterminated display name"))?;
            (Some(unquote(&s[..=end])), s[end + 1..].trim_start())
        } else {
            match find_unquoted(s, b'<') {
                Some(lt) => {
                    let d = s[..lt].trim();
                    ((!d.is_empty()).then(|| d.to_string()), &s[lt..])
                }
                None => (None, s),
            }
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let gt = inner
                .find('>')
                .ok_or(ParseError::hdr("name-addr", "missing '>'"))?;
            let uri = Uri::parse(&inner[..gt])?;
            let tail = inner[gt + 1..].trim();
            if !tail.is_empty() && !tail.starts_with(';') {
                return Err(ParseError::hdr("name-addr", "garbage after '>'"));
            }
            Ok(NameAddr {
                display,
                uri,
                params: Params::parse(tail)?,
            })
        } else {
            if display.is_some() {
                return Err(ParseError::hdr("name-addr", "display name without <URI>"));
            }
            let (u, p) = match rest.find(';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            Ok(NameAddr {
                display: None,
                uri: Uri::parse(u)?,
                params: Params::parse(p)?,
            })
        }
    }

    /// Parses a comma-separated list of name-addrs (Route, Path, P-Asserted-Identity …).
    pub fn parse_list(s: &str) -> Result<Vec<NameAddr>, ParseError> {
        split_list(s).map(NameAddr::parse).collect()
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag")
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{} ", quote(d))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

impl std::str::FromStr for NameAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NameAddr::parse(s)
    }
}

fn find_unquoted(s: &str, c: u8) -> Option<usize> {
    let mut in_q = false;
    let mut esc = false;
    for (i, b) in s.bytes().enumerate() {
        if esc {
            esc = false;
        } else if in_q && b == b'\\' {
            esc = true;
        } else if b == b'"' {
            in_q = !in_q;
        } else if !in_q && b == c {
            return Some(i);
        }
    }
    None
}

/// RFC 3261 §8.1.1.7: branches starting with this cookie are RFC 3261 compliant.
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// One Via element: `SIP/2.0/UDP host[:port];branch=…;received=…;rport[=…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// protocol name, normally `SIP`
    pub protocol: String,
    /// protocol version, normally `2.0`
    pub version: String,
    /// transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS` …)
    pub transport: String,
    /// sent-by host (IPv6 with brackets)
    pub host: String,
    /// sent-by port
    pub port: Option<u16>,
    /// via-params
    pub params: Params,
}

impl Via {
    /// A Via for `transport` and `host[:port]` with the given branch.
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::default();
        params.set("branch", Some(branch));
        Via {
            protocol: "SIP".into(),
            version: "2.0".into(),
            transport: transport.to_string(),
            host: host.to_string(),
            port,
            params,
        }
    }

    /// Parses one Via element (not a list; see [`Via::parse_list`]).
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let s = s.trim();
        let mut parts = s.splitn(3, '/');
        let protocol = parts.next().unwrap_or("").trim();
        let version = parts
            .next()
            .ok_or(ParseError::hdr("Via", "missing version"))?
            .trim();
        let rest = parts
            .next()
            .ok_or(ParseError::hdr("Via", "missing transport"))?
            .trim_start();
        let ws = rest
            .find([' ', '\t', '\r', '\n'])
            .ok_or(ParseError::hdr("Via", "missing sent-by"))?;
        let transport = &rest[..ws];
        let sent_by = rest[ws..].trim_start();
        if protocol.is_empty() || version.is_empty() || !crate::name::is_token(transport) {
            return Err(ParseError::hdr("Via", "bad sent-protocol"));
        }
        // LWS is allowed around ';' and ':' in sent-by; compact it first only if needed.
        let compacted;
        let sent_by = if sent_by.contains([' ', '\t']) {
            compacted = compact_lws(sent_by);
            compacted.as_str()
        } else {
            sent_by
        };
        let (host, port, params) =
            parse_hostport_params(sent_by).map_err(|_| ParseError::hdr("Via", "bad sent-by"))?;
        let params = Params::parse(params)?;
        if let Some(r) = params.find("rport") {
            if let Some(v) = &r.value {
                v.parse::<u16>()
                    .map_err(|_| ParseError::hdr("Via", "bad rport"))?;
            }
        }
        Ok(Via {
            protocol: protocol.to_string(),
            version: version.to_string(),
            transport: transport.to_string(),
            host,
            port,
            params,
        })
    }

    /// Parses a comma-separated list of Via elements.
    pub fn parse_list(s: &str) -> Result<Vec<Via>, ParseError> {
        split_list(s).map(Via::parse).collect()
    }

    /// `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch")
    }

    /// `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&str> {
        self.params.get("received")
    }

    /// `rport`: `None` absent, `Some(None)` requested, `Some(Some(p))` filled (RFC 3581).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .find("rport")
            .map(|p| p.value.as_deref().and_then(|v| v.parse().ok()))
    }

    /// `sent-by` as written: `host[:port]`.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// True for reliable (stream) transports.
    pub fn is_reliable(&self) -> bool {
        !self.transport.eq_ignore_ascii_case("UDP")
    }

    /// Where responses go (RFC 3261 §18.2.2, RFC 3581 §4): `received` if present
    /// else the sent-by host; `rport` value if present else the sent-by port, else 5060.
    pub fn response_target(&self) -> (String, u16) {
        let host = self
            .received()
            .map(str::to_string)
            .unwrap_or_else(|| self.host.clone());
        let port = match self.rport() {
            Some(Some(p)) => p,
            _ => self.port.unwrap_or(5060),
        };
        (host, port)
    }
}

fn compact_lws(s: &str) -> String {
    // Remove whitespace that is adjacent to ':' ';' '=' so "host : 5060 ; branch = x" parses.
    let mut out = String::with_capacity(s.len());
    for part in s.split([' ', '\t', '\r', '\n']).filter(|p| !p.is_empty()) {
        out.push_str(part);
    }
    out
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} {}",
            self.protocol, self.version, self.transport, self.host
        )?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// `CSeq: 42 REGISTER` (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// sequence number (< 2**31)
    pub seq: u32,
    /// method
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let mut it = s.split_ascii_whitespace();
        let n = it.next().ok_or(ParseError::hdr("CSeq", "empty"))?;
        let m = it.next().ok_or(ParseError::hdr("CSeq", "missing method"))?;
        if it.next().is_some() {
            return Err(ParseError::hdr("CSeq", "trailing garbage"));
        }
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::hdr("CSeq", "bad number"));
        }
        let sig = n.trim_start_matches('0');
        if sig.len() > 10 {
            return Err(ParseError::hdr("CSeq", "number >= 2**31"));
        }
        let seq: u64 = if sig.is_empty() { "0" } else { sig }
            .parse()
            .map_err(|_| ParseError::hdr("CSeq", "bad number"))?;
        if seq >= 1 << 31 {
            return Err(ParseError::hdr("CSeq", "number >= 2**31"));
        }
        Ok(CSeq {
            seq: seq as u32,
            method: Method::parse(m).map_err(|_| ParseError::hdr("CSeq", "bad method"))?,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// A Contact header value: `*` or a list of contacts (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *` (remove all bindings, only with Expires: 0)
    Star,
    /// one or more addresses
    List(Vec<NameAddr>),
}

impl Contacts {
    /// Parses one Contact header value.
    pub fn parse(s: &str) -> Result<Contacts, ParseError> {
        if s.trim() == "*" {
            Ok(Contacts::Star)
        } else {
            Ok(Contacts::List(NameAddr::parse_list(s)?))
        }
    }
}

/// The `expires` parameter of a contact (RFC 3261 §10.2.1.1), parsed as seconds.
pub fn contact_expires(c: &NameAddr) -> Result<Option<u32>, ParseError> {
    match c.params.get("expires") {
        None => Ok(None),
        Some(v) => parse_delta_seconds(v).map(Some),
    }
}

/// delta-seconds (RFC 3261 §25.1); values above 2**32-1 saturate as the RFC asks.
pub fn parse_delta_seconds(v: &str) -> Result<u32, ParseError> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::hdr("delta-seconds", "not a number"));
    }
    Ok(v.parse::<u32>().unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n =
            NameAddr::parse("\"Alice \\\"A\\\"\" <sip:alice@a.com;transport=tcp>;tag=123").unwrap();
        assert_eq!(n.display.as_deref(), Some("Alice \"A\""));
        assert_eq!(n.uri.params.get("transport"), Some("tcp"));
        assert_eq!(n.tag(), Some("123"));
        let n = NameAddr::parse("sip:bob@b.com;tag=9").unwrap();
        assert!(n.uri.params.is_empty());
        assert_eq!(n.tag(), Some("9"));
        let n = NameAddr::parse("Bob Smith <tel:+4930123>").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob Smith"));
        assert_eq!(n.to_string(), "\"Bob Smith\" <tel:+4930123>");
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("\"x <sip:a@b>").is_err());
        assert!(NameAddr::parse("<sip:a@b> junk").is_err());
        let l = NameAddr::parse_list("<sip:p1.x;lr>, <sip:p2.x;lr>").unwrap();
        assert_eq!(l.len(), 2);
        assert!(l[1].uri.params.has("lr"));
    }

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport"
        );
        let v =
            Via::parse("SIP / 2.0 / TCP host.x ; branch = z9hG4bKx ; received=10.0.0.1;rport=1234")
                .unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "host.x");
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        assert_eq!(v.response_target(), ("10.0.0.1".into(), 1234));
        assert!(v.is_reliable());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("SIP/2.0/UDP h;rport=abc").is_err());
        assert_eq!(
            Via::parse_list("SIP/2.0/UDP a;branch=1, SIP/2.0/TCP b;branch=2")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse(" 17  REGISTER ").unwrap();
        assert_eq!(c.seq, 17);
        assert_eq!(c.method, Method::Register);
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("1 INVITE x").is_err());
    }

    #[test]
    fn contacts() {
        assert_eq!(Contacts::parse(" * ").unwrap(), Contacts::Star);
        let Contacts::List(l) =
            Contacts::parse("<sip:a@1.2.3.4:5060>;expires=600;+sip.instance=\"<urn:gsma:imei:1>\"")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(contact_expires(&l[0]).unwrap(), Some(600));
        assert_eq!(parse_delta_seconds("99999999999").unwrap(), u32::MAX);
        assert!(parse_delta_seconds("1x").is_err());
    }
}
