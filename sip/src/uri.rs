//! SIP/SIPS (RFC 3261 §19.1) and tel (RFC 3966) URIs.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::error::ParseError;
use crate::params::{split_top, Params};

/// URI scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// any other scheme (`urn:`, `mailto:` …); the rest is kept opaque in [`Uri::host`]
    Other(String),
}

impl Scheme {
    /// Scheme name without the colon.
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// A parsed URI.
///
/// For `tel:` the subscriber number is in [`Uri::user`] and `host` is empty.
/// For unknown schemes everything after the colon is kept in `host` verbatim.
/// IPv6 hosts are stored with their brackets (`[2001:db8::1]`) as in the
/// RFC 3261 `hostport` grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// scheme
    pub scheme: Scheme,
    /// user part (or telephone-subscriber for `tel:`), escaped form as written
    pub user: Option<String>,
    /// password after `user:` (deprecated, RFC 3261 §19.1.1)
    pub password: Option<String>,
    /// host name, IPv4 literal or bracketed IPv6 literal
    pub host: String,
    /// explicit port
    pub port: Option<u16>,
    /// uri-parameters (`;transport=tcp;lr`) or tel parameters (`;phone-context=…`)
    pub params: Params,
    /// `?name=value&…` headers, raw
    pub headers: Vec<String>,
}

impl Uri {
    /// Parses a URI. Surrounding whitespace is ignored; `<>` are not accepted here
    /// (see [`crate::NameAddr`]).
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let s = s.trim();
        let colon = s.find(':').ok_or(ParseError::Uri("missing scheme"))?;
        let scheme_s = &s[..colon];
        if scheme_s.is_empty()
            || !scheme_s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(ParseError::Uri("invalid scheme"));
        }
        let rest = &s[colon + 1..];
        // '<', '>' and '"' are never allowed unescaped in a URI (RFC 3986 §2) and would
        // break the name-addr that carries it
        if rest
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"'))
        {
            return Err(ParseError::Uri(
                "whitespace, control or delimiter character",
            ));
        }
        let scheme = if scheme_s.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_s.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_s.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            if rest.is_empty() {
                return Err(ParseError::Uri("empty opaque part"));
            }
            return Ok(Uri {
                scheme: Scheme::Other(scheme_s.to_string()),
                user: None,
                password: None,
                host: rest.to_string(),
                port: None,
                params: Params::default(),
                headers: Vec::new(),
            });
        };
        if scheme == Scheme::Tel {
            let (num, params) = match rest.find(';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            if num.is_empty()
                || !num
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b"+-.()*#pw".contains(&b))
            {
                return Err(ParseError::Uri("invalid telephone-subscriber"));
            }
            return Ok(Uri {
                scheme,
                user: Some(num.to_string()),
                password: None,
                host: String::new(),
                port: None,
                params: Params::parse(params).map_err(|_| ParseError::Uri("bad tel parameter"))?,
                headers: Vec::new(),
            });
        }
        // headers
        let (main, headers) = match rest.find('?') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (user, password, hostpart) = match main.rfind('@') {
            Some(at) => {
                let ui = &main[..at];
                if ui.is_empty() {
                    return Err(ParseError::Uri("empty user"));
                }
                let (u, p) = match ui.find(':') {
                    Some(c) => (&ui[..c], Some(ui[c + 1..].to_string())),
                    None => (ui, None),
                };
                if u.is_empty() {
                    return Err(ParseError::Uri("empty user"));
                }
                (Some(u.to_string()), p, &main[at + 1..])
            }
            None => (None, None, main),
        };
        let (host, port, params) = parse_hostport_params(hostpart)?;
        let headers = match headers {
            Some(h) => split_top(h, b'&').map(str::to_string).collect(),
            None => Vec::new(),
        };
        Ok(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params: Params::parse(params).map_err(|_| ParseError::Uri("bad uri parameter"))?,
            headers,
        })
    }

    /// Builds `sip:user@host[:port]`.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host: host.to_string(),
            port,
            params: Params::default(),
            headers: Vec::new(),
        }
    }

    /// The host as an IP address if it is a literal.
    pub fn host_ip(&self) -> Option<IpAddr> {
        parse_host_ip(&self.host)
    }

    /// A key identifying the address-of-record: scheme, user and lower-cased host
    /// (RFC 3261 §10.3 step 5: registrar canonicalisation; parameters and port
    /// dropped). `tel:` URIs keep only the number without visual separators.
    pub fn aor(&self) -> String {
        match self.scheme {
            Scheme::Tel => {
                let n: String = self
                    .user
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !"-.()".contains(*c))
                    .collect();
                format!("tel:{n}")
            }
            _ => match &self.user {
                Some(u) => format!(
                    "{}:{}@{}",
                    self.scheme.as_str(),
                    u,
                    self.host.to_ascii_lowercase()
                ),
                None => format!(
                    "{}:{}",
                    self.scheme.as_str(),
                    self.host.to_ascii_lowercase()
                ),
            },
        }
    }
}

/// Parses `host[:port][;params]` with IPv6 brackets; returns the raw params tail.
pub(crate) fn parse_hostport_params(s: &str) -> Result<(String, Option<u16>, &str), ParseError> {
    let (host, after) = if let Some(rest) = s.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or(ParseError::Uri("unterminated IPv6 literal"))?;
        let lit = &rest[..close];
        lit.parse::<Ipv6Addr>()
            .map_err(|_| ParseError::Uri("invalid IPv6 literal"))?;
        (&s[..close + 2], &rest[close + 1..])
    } else {
        let end = s.find([':', ';', '?']).unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    if host.is_empty() {
        return Err(ParseError::Uri("empty host"));
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(ParseError::Uri("invalid host"));
    }
    let (port, params) = if let Some(p) = after.strip_prefix(':') {
        let end = p.find(';').unwrap_or(p.len());
        let digits = &p[..end];
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Uri("invalid port"));
        }
        let port: u16 = digits
            .parse()
            .map_err(|_| ParseError::Uri("port out of range"))?;
        (Some(port), &p[end..])
    } else if after.is_empty() || after.starts_with(';') {
        (None, after)
    } else {
        return Err(ParseError::Uri("garbage after host"));
    };
    Ok((host.to_string(), port, params))
}

/// Parses a host string (`1.2.3.4`, `[::1]` or `::1`) as an IP address.
pub fn parse_host_ip(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

/// Formats an IP address as a SIP host (brackets around IPv6).
pub fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if let Scheme::Other(_) = self.scheme {
            return f.write_str(&self.host);
        }
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            if self.scheme != Scheme::Tel {
                f.write_str("@")?;
            }
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if !self.headers.is_empty() {
            write!(f, "?{}", self.headers.join("&"))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Uri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris() {
        let u = Uri::parse("sip:alice:pw@Example.COM:5070;transport=tcp;lr?subject=x&h=y").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, "Example.COM");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params.get("transport"), Some("tcp"));
        assert!(u.params.has("lr"));
        assert_eq!(u.headers, vec!["subject=x", "h=y"]);
        assert_eq!(
            u.to_string(),
            "sip:alice:pw@Example.COM:5070;transport=tcp;lr?subject=x&h=y"
        );
        assert_eq!(u.aor(), "sip:alice@example.com");
    }

    #[test]
    fn ipv6() {
        let u = Uri::parse("sips:[2001:db8::10]:5061;maddr=x").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.host_ip(), Some("2001:db8::10".parse().unwrap()));
        assert_eq!(u.to_string(), "sips:[2001:db8::10]:5061;maddr=x");
        let u = Uri::parse("sip:+1234@[::1]").unwrap();
        assert_eq!(u.host_ip(), Some("::1".parse().unwrap()));
        assert!(Uri::parse("sip:[2001:db8::10:5060").is_err());
        assert!(Uri::parse("sip:[2001:db8:::::10]").is_err());
        assert_eq!(ip_host("::1".parse().unwrap()), "[::1]");
    }

    #[test]
    fn tel() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=ims.example").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(u.params.get("phone-context"), Some("ims.example"));
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=ims.example"
        );
        assert_eq!(u.aor(), "tel:+12015550123");
        assert!(Uri::parse("tel:").is_err());
        assert!(Uri::parse("tel:abc xyz").is_err());
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "sip",
            ":x",
            "sip:",
            "sip:@host",
            "sip:host:99999",
            "sip:host:",
            "sip:host:5x",
            "sip:a b@host",
            "sip:ho st",
            "s p:x",
            "urn:a>b",
            "sip:a\"b@h",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
        let u = Uri::parse("urn:service:sos").unwrap();
        assert_eq!(u.to_string(), "urn:service:sos");
    }
}
