//! HTTP Digest as SIP uses it for AKAv1-MD5: RFC 2617 (qop `auth` and `auth-int`) with the
//! AKA RES as the password (RFC 3310 §3.4), plus the IMS parameters `auts`, `ck`, `ik` and
//! `integrity-protected` (TS 24.229 §7.2A.1, TS 33.203).
//!
//! The parameter parser is shared by every header that carries digest parameters:
//! WWW-Authenticate / Proxy-Authenticate ([`Challenge`]), Authorization /
//! Proxy-Authorization ([`Credentials`]) and Authentication-Info ([`AuthenticationInfo`],
//! which has no scheme token). Unknown parameters are kept in order so a proxy can forward
//! what it does not understand.

use md5::{Digest, Md5};

/// Why a digest header value could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The scheme is not `Digest`.
    #[error("authentication scheme {0:?} is not Digest")]
    NotDigest(String),
    /// Nothing after the scheme.
    #[error("digest header has no parameters")]
    Empty,
    /// A parameter name that is not a token.
    #[error("bad parameter name at byte {0}")]
    BadName(usize),
    /// `name` without `=value`.
    #[error("parameter {0:?} has no value")]
    MissingValue(String),
    /// A quoted string that never ends.
    #[error("unterminated quoted string in parameter {0:?}")]
    Unterminated(String),
    /// Something other than `,` between parameters.
    #[error("expected ',' at byte {0}")]
    ExpectedComma(usize),
    /// The same parameter twice (RFC 2617 §3.2.1 allows each at most once).
    #[error("parameter {0:?} appears twice")]
    Duplicate(String),
    /// A parameter the header needs is absent.
    #[error("required parameter {0:?} is missing")]
    Missing(&'static str),
    /// A parameter whose value is not acceptable.
    #[error("parameter {name:?} has an invalid value {value:?}")]
    Invalid {
        /// Parameter name.
        name: &'static str,
        /// The offending value.
        value: String,
    },
}

/// One `name=value` parameter as it appeared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Name, as written (compare case-insensitively).
    pub name: String,
    /// Value with quotes removed and quoted-pairs resolved.
    pub value: String,
    /// Whether it was a quoted-string.
    pub quoted: bool,
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Parse `Digest p1=v1, p2="v2", ...` (scheme checked, case-insensitive).
pub fn parse_params(value: &str) -> Result<Vec<Param>, DigestError> {
    let s = value.trim_start();
    let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
    let scheme = &s[..end];
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(DigestError::NotDigest(scheme.to_string()));
    }
    let params = parse_param_list(&s[end..])?;
    if params.is_empty() {
        return Err(DigestError::Empty);
    }
    Ok(params)
}

/// Parse a bare parameter list (Authentication-Info has no scheme token).
pub fn parse_param_list(s: &str) -> Result<Vec<Param>, DigestError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<Param> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        // Empty list elements are allowed by the #rule of RFC 2616 §2.1.
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && is_token_char(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(DigestError::BadName(start));
        }
        let name = &s[start..i];
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(DigestError::MissingValue(name.to_string()));
        }
        i += 1;
        skip_ws(&mut i);
        let (value, quoted) = if i < b.len() && b[i] == b'"' {
            i += 1;
            let rest = &b[i..];
            match rest.iter().position(|&c| c == b'"' || c == b'\\') {
                // Most values hold no escapes: take them as one slice.
                Some(p) if rest[p] == b'"' => {
                    i += p + 1;
                    (s[i - p - 1..i - 1].to_string(), true)
                }
                _ => (unescape_quoted(b, &mut i, name)?, true),
            }
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i == vs {
                return Err(DigestError::MissingValue(name.to_string()));
            }
            (s[vs..i].to_string(), false)
        };
        if out.iter().any(|p| p.name.eq_ignore_ascii_case(name)) {
            return Err(DigestError::Duplicate(name.to_string()));
        }
        out.push(Param {
            name: name.to_string(),
            value,
            quoted,
        });
        skip_ws(&mut i);
        if i < b.len() && b[i] != b',' {
            return Err(DigestError::ExpectedComma(i));
        }
    }
    Ok(out)
}

/// The rest of a quoted-string whose opening quote is just before `b[*i]`, with its
/// quoted-pairs resolved (RFC 3261 §25.1); `*i` ends after the closing quote.
fn unescape_quoted(b: &[u8], i: &mut usize, name: &str) -> Result<String, DigestError> {
    let mut v = Vec::new();
    loop {
        match b.get(*i) {
            None => return Err(DigestError::Unterminated(name.to_string())),
            Some(b'"') => {
                *i += 1;
                break;
            }
            Some(b'\\') if *i + 1 < b.len() => {
                v.push(b[*i + 1]);
                *i += 2;
            }
            Some(&c) => {
                v.push(c);
                *i += 1;
            }
        }
    }
    // Only ASCII quote/backslash bytes were removed, so this stays valid UTF-8.
    Ok(String::from_utf8_lossy(&v).into_owned())
}

fn write_params(out: &mut String, params: &[(&str, &str, bool)]) {
    for (n, (name, value, quoted)) in params.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        if *quoted {
            out.push('"');
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(value);
        }
    }
}

/// Take the parameter `name` out of `params` (case-insensitive).
fn take(params: &mut Vec<Param>, name: &str) -> Option<String> {
    let pos = params
        .iter()
        .position(|p| p.name.eq_ignore_ascii_case(name))?;
    Some(params.remove(pos).value)
}

/// Quality of protection (RFC 2617 §3.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qop {
    /// Authentication only.
    Auth,
    /// Authentication with integrity of the message body.
    AuthInt,
}

impl Qop {
    /// The token as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }

    fn parse(s: &str) -> Option<Qop> {
        if s.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if s.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }
}

/// The algorithm name of AKA version 1 with MD5 digest (RFC 3310 §3.1).
pub const AKAV1_MD5: &str = "AKAv1-MD5";

/// A WWW-Authenticate / Proxy-Authenticate challenge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    /// realm (the home network domain in IMS).
    pub realm: String,
    /// nonce (base64 RAND ‖ AUTN for AKA; see [`crate::nonce`]).
    pub nonce: String,
    /// algorithm, e.g. `AKAv1-MD5`; absent means MD5.
    pub algorithm: Option<String>,
    /// Offered qop values; empty means RFC 2069 compatibility (no qop).
    pub qop: Vec<Qop>,
    /// opaque, echoed by the client.
    pub opaque: Option<String>,
    /// stale=true: the nonce expired but the credentials were right.
    pub stale: bool,
    /// Cipher key, hex: added by the S-CSCF for the P-CSCF only (TS 24.229 §5.4.1.2.1);
    /// a P-CSCF must strip it before the UE sees the 401.
    pub ck: Option<String>,
    /// Integrity key, hex, like [`Challenge::ck`].
    pub ik: Option<String>,
    /// Parameters we do not interpret, in order.
    pub other: Vec<Param>,
}

impl Challenge {
    /// Parse a challenge header value.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let mut p = parse_params(value)?;
        let realm = take(&mut p, "realm").ok_or(DigestError::Missing("realm"))?;
        let nonce = take(&mut p, "nonce").ok_or(DigestError::Missing("nonce"))?;
        let algorithm = take(&mut p, "algorithm");
        let qop = match take(&mut p, "qop") {
            None => Vec::new(),
            Some(list) => {
                // Unknown qop tokens are ignored as RFC 2617 §3.2.1 requires.
                let q: Vec<Qop> = list
                    .split(',')
                    .filter_map(|t| Qop::parse(t.trim()))
                    .collect();
                if q.is_empty() {
                    return Err(DigestError::Invalid {
                        name: "qop",
                        value: list,
                    });
                }
                q
            }
        };
        let opaque = take(&mut p, "opaque");
        let stale = take(&mut p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        let ck = take(&mut p, "ck");
        let ik = take(&mut p, "ik");
        Ok(Challenge {
            realm,
            nonce,
            algorithm,
            qop,
            opaque,
            stale,
            ck,
            ik,
            other: p,
        })
    }

    /// Is the algorithm AKAv1-MD5?
    pub fn is_akav1_md5(&self) -> bool {
        self.algorithm
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(AKAV1_MD5))
    }

    /// The header value, `Digest realm="..", nonce="..", ...`.
    pub fn to_header(&self) -> String {
        let qop = self
            .qop
            .iter()
            .map(|q| q.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut ps: Vec<(&str, &str, bool)> = vec![("realm", &self.realm, true)];
        ps.push(("nonce", &self.nonce, true));
        if let Some(a) = &self.algorithm {
            ps.push(("algorithm", a, false));
        }
        if !qop.is_empty() {
            ps.push(("qop", &qop, true));
        }
        if let Some(o) = &self.opaque {
            ps.push(("opaque", o, true));
        }
        if self.stale {
            ps.push(("stale", "TRUE", false));
        }
        if let Some(ck) = &self.ck {
            ps.push(("ck", ck, true));
        }
        if let Some(ik) = &self.ik {
            ps.push(("ik", ik, true));
        }
        for o in &self.other {
            ps.push((&o.name, &o.value, o.quoted));
        }
        let mut out = String::from("Digest ");
        write_params(&mut out, &ps);
        out
    }
}

/// An Authorization / Proxy-Authorization credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// username: the IMPI in IMS.
    pub username: String,
    /// realm.
    pub realm: String,
    /// nonce, echoed (may be empty in the initial unprotected REGISTER of TS 24.229).
    pub nonce: String,
    /// digest-uri: the Request-URI of the request.
    pub uri: String,
    /// 32 hex digits (may be empty in the initial REGISTER).
    pub response: String,
    /// algorithm.
    pub algorithm: Option<String>,
    /// cnonce (with qop).
    pub cnonce: Option<String>,
    /// opaque, echoed.
    pub opaque: Option<String>,
    /// Chosen qop.
    pub qop: Option<Qop>,
    /// nonce-count, 8 hex digits (with qop).
    pub nc: Option<String>,
    /// base64 AUTS on an SQN synchronisation failure (RFC 3310 §3.4).
    pub auts: Option<String>,
    /// TS 24.229 §7.2A.1 `integrity-protected` ("yes", "no", "ip-assoc-yes", ...): set by the
    /// P-CSCF, never trusted from the UE.
    pub integrity_protected: Option<String>,
    /// Parameters we do not interpret, in order.
    pub other: Vec<Param>,
}

impl Credentials {
    /// Parse a credentials header value.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let mut p = parse_params(value)?;
        let username = take(&mut p, "username").ok_or(DigestError::Missing("username"))?;
        let realm = take(&mut p, "realm").ok_or(DigestError::Missing("realm"))?;
        let nonce = take(&mut p, "nonce").unwrap_or_default();
        let uri = take(&mut p, "uri").ok_or(DigestError::Missing("uri"))?;
        let response = take(&mut p, "response").unwrap_or_default();
        let algorithm = take(&mut p, "algorithm");
        let cnonce = take(&mut p, "cnonce");
        let opaque = take(&mut p, "opaque");
        let qop = match take(&mut p, "qop") {
            None => None,
            Some(q) => Some(Qop::parse(&q).ok_or(DigestError::Invalid {
                name: "qop",
                value: q,
            })?),
        };
        let nc = take(&mut p, "nc");
        if let Some(n) = &nc {
            if n.len() != 8 || !n.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(DigestError::Invalid {
                    name: "nc",
                    value: n.clone(),
                });
            }
        }
        if qop.is_some() && (cnonce.is_none() || nc.is_none()) {
            return Err(DigestError::Missing(if cnonce.is_none() {
                "cnonce"
            } else {
                "nc"
            }));
        }
        let auts = take(&mut p, "auts");
        let integrity_protected = take(&mut p, "integrity-protected");
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
            auts,
            integrity_protected,
            other: p,
        })
    }

    /// The header value, `Digest username="..", ...`.
    pub fn to_header(&self) -> String {
        let mut ps: Vec<(&str, &str, bool)> = vec![
            ("username", &self.username, true),
            ("realm", &self.realm, true),
            ("nonce", &self.nonce, true),
            ("uri", &self.uri, true),
            ("response", &self.response, true),
        ];
        if let Some(a) = &self.algorithm {
            ps.push(("algorithm", a, false));
        }
        if let Some(c) = &self.cnonce {
            ps.push(("cnonce", c, true));
        }
        if let Some(o) = &self.opaque {
            ps.push(("opaque", o, true));
        }
        if let Some(q) = self.qop {
            ps.push(("qop", q.as_str(), false));
        }
        if let Some(n) = &self.nc {
            ps.push(("nc", n, false));
        }
        if let Some(a) = &self.auts {
            ps.push(("auts", a, true));
        }
        if let Some(ip) = &self.integrity_protected {
            ps.push(("integrity-protected", ip, true));
        }
        for o in &self.other {
            ps.push((&o.name, &o.value, o.quoted));
        }
        let mut out = String::from("Digest ");
        write_params(&mut out, &ps);
        out
    }

    /// The inputs of the response computation that this credential names.
    pub fn response_input<'a>(&'a self, method: &'a str, body: &'a [u8]) -> ResponseInput<'a> {
        ResponseInput {
            username: &self.username,
            realm: &self.realm,
            nonce: &self.nonce,
            method,
            uri: &self.uri,
            qop: match (self.qop, &self.cnonce, &self.nc) {
                (Some(qop), Some(cnonce), Some(nc)) => Some(QopInput { qop, cnonce, nc }),
                _ => None,
            },
            body,
        }
    }

    /// Does `response` match what `password` (XRES for AKA) gives for this request?
    pub fn verify(&self, password: &[u8], method: &str, body: &[u8]) -> bool {
        let expected = response(password, &self.response_input(method, body));
        self.response.len() == expected.len()
            && self
                .response
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a.to_ascii_lowercase() ^ b))
                == 0
    }
}

/// Authentication-Info (RFC 2617 §3.2.3), sent by the registrar in the 200 OK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthenticationInfo {
    /// Server's proof of knowing the password (see [`rspauth`]).
    pub rspauth: Option<String>,
    /// cnonce echoed.
    pub cnonce: Option<String>,
    /// nc echoed.
    pub nc: Option<String>,
    /// qop echoed.
    pub qop: Option<Qop>,
    /// Next nonce to use.
    pub nextnonce: Option<String>,
}

impl AuthenticationInfo {
    /// Parse an Authentication-Info header value.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let mut p = parse_param_list(value)?;
        let qop = match take(&mut p, "qop") {
            None => None,
            Some(q) => Some(Qop::parse(&q).ok_or(DigestError::Invalid {
                name: "qop",
                value: q,
            })?),
        };
        Ok(AuthenticationInfo {
            rspauth: take(&mut p, "rspauth"),
            cnonce: take(&mut p, "cnonce"),
            nc: take(&mut p, "nc"),
            qop,
            nextnonce: take(&mut p, "nextnonce"),
        })
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        let mut ps: Vec<(&str, &str, bool)> = Vec::new();
        if let Some(v) = &self.nextnonce {
            ps.push(("nextnonce", v, true));
        }
        if let Some(q) = self.qop {
            ps.push(("qop", q.as_str(), false));
        }
        if let Some(v) = &self.rspauth {
            ps.push(("rspauth", v, true));
        }
        if let Some(v) = &self.cnonce {
            ps.push(("cnonce", v, true));
        }
        if let Some(v) = &self.nc {
            ps.push(("nc", v, false));
        }
        let mut out = String::new();
        write_params(&mut out, &ps);
        out
    }
}

/// The qop-related inputs of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QopInput<'a> {
    /// auth or auth-int.
    pub qop: Qop,
    /// Client nonce.
    pub cnonce: &'a str,
    /// Nonce count, 8 hex digits as sent.
    pub nc: &'a str,
}

/// Everything but the password that a digest response depends on (RFC 2617 §3.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseInput<'a> {
    /// username.
    pub username: &'a str,
    /// realm.
    pub realm: &'a str,
    /// nonce.
    pub nonce: &'a str,
    /// SIP method (empty for rspauth).
    pub method: &'a str,
    /// digest-uri.
    pub uri: &'a str,
    /// qop, cnonce, nc; None for the RFC 2069 form.
    pub qop: Option<QopInput<'a>>,
    /// Message body, used by auth-int only.
    pub body: &'a [u8],
}

fn hex32(d: &[u8]) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in d.iter().take(16).enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

fn compute(password: &[u8], i: &ResponseInput<'_>, method: &str) -> String {
    // HA1 = MD5(username ":" realm ":" password); for AKA the password is RES as raw octets.
    let mut h = Md5::new();
    h.update(i.username.as_bytes());
    h.update(b":");
    h.update(i.realm.as_bytes());
    h.update(b":");
    h.update(password);
    let ha1 = hex32(&h.finalize());
    // HA2 = MD5(method ":" uri [":" MD5(body)])
    let mut h = Md5::new();
    h.update(method.as_bytes());
    h.update(b":");
    h.update(i.uri.as_bytes());
    if let Some(QopInput {
        qop: Qop::AuthInt, ..
    }) = i.qop
    {
        h.update(b":");
        h.update(hex32(&Md5::digest(i.body)));
    }
    let ha2 = hex32(&h.finalize());
    let mut h = Md5::new();
    h.update(ha1);
    h.update(b":");
    h.update(i.nonce.as_bytes());
    h.update(b":");
    if let Some(q) = i.qop {
        h.update(q.nc.as_bytes());
        h.update(b":");
        h.update(q.cnonce.as_bytes());
        h.update(b":");
        h.update(q.qop.as_str().as_bytes());
        h.update(b":");
    }
    h.update(ha2);
    let out = hex32(&h.finalize());
    out.iter().map(|&c| char::from(c)).collect()
}

/// The `response` value (RFC 2617 §3.2.2.1), lowercase hex.
///
/// For AKAv1-MD5 `password` is RES (RFC 3310 §3.4); after a synchronisation or MAC failure
/// the UE uses the empty password.
pub fn response(password: &[u8], input: &ResponseInput<'_>) -> String {
    compute(password, input, input.method)
}

/// The `rspauth` value of Authentication-Info (RFC 2617 §3.2.3): as the response, with an
/// empty method in A2.
pub fn rspauth(password: &[u8], input: &ResponseInput<'_>) -> String {
    compute(password, input, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 2617 §3.5: the example exchange (password "Circle Of Life").
    #[test]
    fn rfc2617_example_response() {
        let c = Credentials::parse(
            r#"Digest username="Mufasa", realm="testrealm@host.com",
               nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html",
               qop=auth, nc=00000001, cnonce="0a4f113b",
               response="6629fae49393a05397450978507c4ef1",
               opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(
            response(b"Circle Of Life", &c.response_input("GET", b"")),
            "6629fae49393a05397450978507c4ef1"
        );
        assert!(c.verify(b"Circle Of Life", "GET", b""));
        assert!(!c.verify(b"Circle of Life", "GET", b""));
    }

    /// An AKA response computed by hand from RFC 2617's formulas with a binary RES that
    /// contains a zero octet (the case SIPp 3.6 gets wrong).
    #[test]
    fn aka_response_uses_raw_res_octets() {
        let res = [0xa5, 0x42, 0x00, 0xd5, 0xe3, 0xba, 0x50, 0xbf];
        let input = ResponseInput {
            username: "001010000000001@ims.mnc001.mcc001.3gppnetwork.org",
            realm: "ims.mnc001.mcc001.3gppnetwork.org",
            nonce: "abc",
            method: "REGISTER",
            uri: "sip:ims.mnc001.mcc001.3gppnetwork.org",
            qop: Some(QopInput {
                qop: Qop::Auth,
                cnonce: "c0ffee",
                nc: "00000001",
            }),
            body: b"",
        };
        let md5hex = |d: &[u8]| {
            Md5::digest(d)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let mut a1 = format!("{}:{}:", input.username, input.realm).into_bytes();
        a1.extend_from_slice(&res);
        let ha1 = md5hex(&a1);
        let ha2 = md5hex(format!("REGISTER:{}", input.uri).as_bytes());
        let expected = md5hex(format!("{ha1}:abc:00000001:c0ffee:auth:{ha2}").as_bytes());
        assert_eq!(response(&res, &input), expected);
        // auth-int covers the body.
        let int = ResponseInput {
            qop: Some(QopInput {
                qop: Qop::AuthInt,
                ..input.qop.unwrap()
            }),
            body: b"v=0\r\n",
            ..input
        };
        let ha2i = md5hex(format!("REGISTER:{}:{}", input.uri, md5hex(b"v=0\r\n")).as_bytes());
        let expected_i = md5hex(format!("{ha1}:abc:00000001:c0ffee:auth-int:{ha2i}").as_bytes());
        assert_eq!(response(&res, &int), expected_i);
        // rspauth has an empty method; without qop the RFC 2069 form.
        let ha2r = md5hex(format!(":{}", input.uri).as_bytes());
        let exp_r = md5hex(format!("{ha1}:abc:00000001:c0ffee:auth:{ha2r}").as_bytes());
        assert_eq!(rspauth(&res, &input), exp_r);
        let plain = ResponseInput { qop: None, ..input };
        assert_eq!(
            response(&res, &plain),
            md5hex(format!("{ha1}:abc:{ha2}").as_bytes())
        );
    }

    #[test]
    fn ims_challenge_with_ck_ik_round_trips() {
        let v = r#"Digest realm="ims.example.org", nonce="AAAA", algorithm=AKAv1-MD5, qop="auth,auth-int", ck="00112233445566778899aabbccddeeff", ik="ffeeddccbbaa99887766554433221100", foo="x\"y""#;
        let c = Challenge::parse(v).unwrap();
        assert!(c.is_akav1_md5());
        assert_eq!(c.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert_eq!(c.ck.as_deref(), Some("00112233445566778899aabbccddeeff"));
        assert_eq!(c.other[0].value, "x\"y");
        assert_eq!(Challenge::parse(&c.to_header()).unwrap(), c);
        // Stripping ck/ik is what a P-CSCF does before relaying the 401.
        let stripped = Challenge {
            ck: None,
            ik: None,
            ..c
        }
        .to_header();
        assert!(!stripped.contains("ck=") && !stripped.contains("ik="));
    }

    #[test]
    fn initial_register_credentials_and_auts() {
        let c = Credentials::parse(
            r#"Digest uri="sip:ims.example.org", username="001010000000001@ims.example.org", response="", realm="ims.example.org", nonce="""#,
        )
        .unwrap();
        assert_eq!(c.response, "");
        let r = Credentials::parse(&format!("{}, auts=\"AAECAwQFBgcICQoLDA0=\"", c.to_header()))
            .unwrap();
        assert_eq!(r.auts.as_deref(), Some("AAECAwQFBgcICQoLDA0="));
        assert_eq!(Credentials::parse(&r.to_header()).unwrap(), r);
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            parse_params("Basic abc"),
            Err(DigestError::NotDigest(_))
        ));
        assert_eq!(parse_params("Digest "), Err(DigestError::Empty));
        assert!(matches!(
            parse_params("Digest realm=\"x"),
            Err(DigestError::Unterminated(_))
        ));
        assert!(matches!(
            parse_params("Digest realm"),
            Err(DigestError::MissingValue(_))
        ));
        assert!(matches!(
            parse_params("Digest realm=a realm=b"),
            Err(DigestError::ExpectedComma(_))
        ));
        assert!(matches!(
            parse_params("Digest realm=a, REALM=b"),
            Err(DigestError::Duplicate(_))
        ));
        assert!(matches!(
            parse_params("Digest =a"),
            Err(DigestError::BadName(_))
        ));
        assert_eq!(
            Challenge::parse("Digest nonce=\"a\""),
            Err(DigestError::Missing("realm"))
        );
        assert!(matches!(
            Credentials::parse(
                "Digest username=\"a\", realm=\"b\", uri=\"c\", qop=auth, nc=1, cnonce=\"x\""
            ),
            Err(DigestError::Invalid { name: "nc", .. })
        ));
        assert_eq!(
            Credentials::parse("Digest username=\"a\", realm=\"b\", uri=\"c\", qop=auth"),
            Err(DigestError::Missing("cnonce"))
        );
    }

    #[test]
    fn authentication_info_round_trip() {
        let a = AuthenticationInfo {
            rspauth: Some("0123456789abcdef0123456789abcdef".into()),
            cnonce: Some("x".into()),
            nc: Some("00000001".into()),
            qop: Some(Qop::Auth),
            nextnonce: None,
        };
        assert_eq!(AuthenticationInfo::parse(&a.to_header()).unwrap(), a);
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(s in ".*") {
            let _ = parse_params(&s);
            let _ = Challenge::parse(&s);
            let _ = Credentials::parse(&s);
            let _ = AuthenticationInfo::parse(&s);
        }

        #[test]
        fn digest_like_input_never_panics(s in "Digest [a-z=\", \\\\]{0,60}") {
            let _ = Credentials::parse(&s);
        }

        #[test]
        fn credentials_round_trip(user in "[ -~]{1,30}", realm in "[ -~]{1,30}",
                                  uri in "[!-~]{1,30}", nonce in "[A-Za-z0-9+/=]{0,60}",
                                  auts in proptest::option::of("[A-Za-z0-9+/=]{20}")) {
            let c = Credentials {
                username: user, realm, nonce, uri,
                response: "00112233445566778899aabbccddeeff".into(),
                algorithm: Some(AKAV1_MD5.into()),
                cnonce: Some("abc".into()), qop: Some(Qop::Auth), nc: Some("0000000a".into()),
                auts, ..Default::default()
            };
            prop_assert_eq!(Credentials::parse(&c.to_header()).unwrap(), c);
        }
    }
}
