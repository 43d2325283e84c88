//! Typed values of the SDP lines other than attributes (RFC 8866 §5).
//!
//! Each type parses the text after `x=` and renders it back with [`std::fmt::Display`]; the
//! rendering is canonical (single spaces), which only matters for lines an edit rewrites,
//! since unedited lines keep their original bytes.

use std::fmt;
use std::net::IpAddr;

use crate::attr::Attribute;

/// Result of parsing one line's value: the message says what is wrong, the caller adds the
/// line number.
pub(crate) type ValueResult<T> = Result<T, String>;

/// `o=` (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `-` when the host has no user notion.
    pub username: String,
    /// Numeric string; kept as text because implementations use values beyond `u64`.
    pub session_id: String,
    /// Incremented on every changed offer (RFC 3264 §8).
    pub session_version: u64,
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: AddrType,
    /// The originating host's address or FQDN.
    pub address: String,
}

impl Origin {
    /// An `IN` origin for an IP address, as our own offers and answers carry.
    pub fn new(username: &str, session_id: &str, session_version: u64, ip: IpAddr) -> Self {
        Origin {
            username: username.to_owned(),
            session_id: session_id.to_owned(),
            session_version,
            net_type: "IN".to_owned(),
            addr_type: AddrType::of(ip),
            address: ip.to_string(),
        }
    }

    pub(crate) fn parse(v: &str) -> ValueResult<Self> {
        let t: Vec<&str> = v.split_ascii_whitespace().collect();
        let [username, session_id, version, net_type, addr_type, address] = t[..] else {
            return Err(format!("o= needs 6 fields, found {}", t.len()));
        };
        if session_id.is_empty() || !session_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err("o= sess-id is not a number".into());
        }
        let session_version = version
            .parse()
            .map_err(|_| "o= sess-version is not a number below 2^64".to_owned())?;
        Ok(Origin {
            username: username.to_owned(),
            session_id: session_id.to_owned(),
            session_version,
            net_type: net_type.to_owned(),
            addr_type: AddrType::parse(addr_type),
            address: address.to_owned(),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

/// Address type of `o=`, `c=` and `a=rtcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
    /// Anything else, as written.
    Other(String),
}

impl AddrType {
    /// The address type matching an IP address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "IP4" => AddrType::Ip4,
            "IP6" => AddrType::Ip6,
            o => AddrType::Other(o.to_owned()),
        }
    }
}

impl fmt::Display for AddrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
            AddrType::Other(o) => o,
        })
    }
}

/// `c=` (RFC 8866 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: AddrType,
    /// Address as written; multicast forms keep their `/ttl/count` suffix.
    pub address: String,
}

impl Connection {
    /// `IN IP4 a.b.c.d` / `IN IP6 x::y`.
    pub fn new(ip: IpAddr) -> Self {
        Connection {
            net_type: "IN".to_owned(),
            addr_type: AddrType::of(ip),
            address: ip.to_string(),
        }
    }

    /// The address as an IP address, when it is one (not an FQDN or multicast group form).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    pub(crate) fn parse(v: &str) -> ValueResult<Self> {
        let t: Vec<&str> = v.split_ascii_whitespace().collect();
        let [net_type, addr_type, address] = t[..] else {
            return Err(format!("c= needs 3 fields, found {}", t.len()));
        };
        Ok(Connection {
            net_type: net_type.to_owned(),
            addr_type: AddrType::parse(addr_type),
            address: address.to_owned(),
        })
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

/// Bandwidth modifier of `b=` (RFC 8866 §5.8, RFC 3556 for RS/RR, RFC 3890 for TIAS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BwType {
    /// `CT`: conference total.
    Ct,
    /// `AS`: application specific, kbit/s; IMS uses it for the codec rate plus overhead.
    As,
    /// `RS`: RTCP bandwidth of active senders, bit/s (RFC 3556).
    Rs,
    /// `RR`: RTCP bandwidth of other participants, bit/s (RFC 3556).
    Rr,
    /// `TIAS`: transport independent, bit/s (RFC 3890).
    Tias,
    /// Anything else, as written.
    Other(String),
}

impl fmt::Display for BwType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BwType::Ct => "CT",
            BwType::As => "AS",
            BwType::Rs => "RS",
            BwType::Rr => "RR",
            BwType::Tias => "TIAS",
            BwType::Other(o) => o,
        })
    }
}

/// `b=` (RFC 8866 §5.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// The modifier.
    pub kind: BwType,
    /// The value in the modifier's unit.
    pub value: u64,
}

impl Bandwidth {
    /// A bandwidth line.
    pub fn new(kind: BwType, value: u64) -> Self {
        Bandwidth { kind, value }
    }

    pub(crate) fn parse(v: &str) -> ValueResult<Self> {
        let (k, val) = v
            .split_once(':')
            .ok_or_else(|| "b= needs <bwtype>:<bandwidth>".to_owned())?;
        if k.is_empty() || !k.bytes().all(is_token_char) {
            return Err("b= bwtype is not a token".into());
        }
        let value = val
            .parse()
            .map_err(|_| "b= bandwidth is not a number".to_owned())?;
        let kind = match k {
            "CT" => BwType::Ct,
            "AS" => BwType::As,
            "RS" => BwType::Rs,
            "RR" => BwType::Rr,
            "TIAS" => BwType::Tias,
            o => BwType::Other(o.to_owned()),
        };
        Ok(Bandwidth { kind, value })
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// `t=` (RFC 8866 §5.9); `0 0` for the unbounded sessions SIP sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// NTP start time, 0 for unbounded.
    pub start: u64,
    /// NTP stop time, 0 for unbounded.
    pub stop: u64,
}

impl Timing {
    pub(crate) fn parse(v: &str) -> ValueResult<Self> {
        let t: Vec<&str> = v.split_ascii_whitespace().collect();
        let [a, b] = t[..] else {
            return Err(format!("t= needs 2 fields, found {}", t.len()));
        };
        let n = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("t= {s:?} is not a number"))
        };
        Ok(Timing {
            start: n(a)?,
            stop: n(b)?,
        })
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.start, self.stop)
    }
}

/// `m=` (RFC 8866 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// `audio`, `video`, `text`, `application`, `message` or another token.
    pub media: String,
    /// Transport port; 0 marks a rejected or disabled stream (RFC 3264 §5.1, §6).
    pub port: u16,
    /// The `/<number of ports>` suffix, when written.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`, `udp`, …
    pub proto: String,
    /// Format list: RTP payload type numbers for RTP protocols.
    pub formats: Vec<String>,
}

impl MediaLine {
    /// An `audio` RTP/AVP line.
    pub fn audio(port: u16, payload_types: &[u8]) -> Self {
        MediaLine {
            media: "audio".to_owned(),
            port,
            port_count: None,
            proto: "RTP/AVP".to_owned(),
            formats: payload_types.iter().map(u8::to_string).collect(),
        }
    }

    /// The formats that are RTP payload type numbers (0–127), in order.
    pub fn payload_types(&self) -> Vec<u8> {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|&pt| pt < 128)
            .collect()
    }

    pub(crate) fn parse(v: &str) -> ValueResult<Self> {
        let mut t = v.split_ascii_whitespace();
        let (Some(media), Some(port), Some(proto)) = (t.next(), t.next(), t.next()) else {
            return Err("m= needs <media> <port> <proto> <fmt> ...".into());
        };
        let formats: Vec<String> = t.map(str::to_owned).collect();
        if formats.is_empty() {
            return Err("m= has no format".into());
        }
        let (port, port_count) = match port.split_once('/') {
            Some((p, n)) => (p, Some(n)),
            None => (port, None),
        };
        let port = port
            .parse()
            .map_err(|_| format!("m= port {port:?} is not a number up to 65535"))?;
        let port_count = port_count
            .map(|n| {
                n.parse()
                    .map_err(|_| format!("m= port count {n:?} is not a number"))
            })
            .transpose()?;
        Ok(MediaLine {
            media: media.to_owned(),
            port,
            port_count,
            proto: proto.to_owned(),
            formats,
        })
    }
}

impl fmt::Display for MediaLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        Ok(())
    }
}

/// One typed SDP line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `v=`: always 0.
    Version(u32),
    /// `o=`.
    Origin(Origin),
    /// `s=`.
    SessionName(String),
    /// `c=`.
    Connection(Connection),
    /// `b=`.
    Bandwidth(Bandwidth),
    /// `t=`.
    Timing(Timing),
    /// `a=`.
    Attribute(Attribute),
    /// `m=`.
    Media(MediaLine),
    /// `i=`, `u=`, `e=`, `p=`, `r=`, `z=`, `k=` and unknown letters (ignored per RFC 8866 §5):
    /// kept as text.
    Other {
        /// The type letter.
        kind: char,
        /// Everything after `=`.
        value: String,
    },
}

impl Field {
    /// The type letter of the line.
    pub fn kind(&self) -> char {
        match self {
            Field::Version(_) => 'v',
            Field::Origin(_) => 'o',
            Field::SessionName(_) => 's',
            Field::Connection(_) => 'c',
            Field::Bandwidth(_) => 'b',
            Field::Timing(_) => 't',
            Field::Attribute(_) => 'a',
            Field::Media(_) => 'm',
            Field::Other { kind, .. } => *kind,
        }
    }

    pub(crate) fn parse(kind: char, v: &str) -> ValueResult<Self> {
        Ok(match kind {
            'v' => match v {
                "0" => Field::Version(0),
                _ => return Err(format!("v= must be 0, found {v:?}")),
            },
            'o' => Field::Origin(Origin::parse(v)?),
            's' => Field::SessionName(v.to_owned()),
            'c' => Field::Connection(Connection::parse(v)?),
            'b' => Field::Bandwidth(Bandwidth::parse(v)?),
            't' => Field::Timing(Timing::parse(v)?),
            'a' => Field::Attribute(Attribute::parse(v)?),
            'm' => Field::Media(MediaLine::parse(v)?),
            kind => Field::Other {
                kind,
                value: v.to_owned(),
            },
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.kind())?;
        match self {
            Field::Version(v) => write!(f, "{v}"),
            Field::Origin(o) => write!(f, "{o}"),
            Field::SessionName(s) => f.write_str(s),
            Field::Connection(c) => write!(f, "{c}"),
            Field::Bandwidth(b) => write!(f, "{b}"),
            Field::Timing(t) => write!(f, "{t}"),
            Field::Attribute(a) => write!(f, "{a}"),
            Field::Media(m) => write!(f, "{m}"),
            Field::Other { value, .. } => f.write_str(value),
        }
    }
}

/// RFC 8866 §9 `token-char`.
pub(crate) fn is_token_char(b: u8) -> bool {
    matches!(b, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'0'..=b'9' | b'A'..=b'Z' | b'^'..=b'~')
}
