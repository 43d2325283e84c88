//! Attributes (`a=` lines) with a typed form for the ones IMS voice needs.

use std::fmt;

use crate::model::{is_token_char, ValueResult};

/// One `a=` line.
///
/// Attributes this crate knows are parsed into their own variant and a malformed one is a
/// parse error; every other attribute is kept as name and value text ([`Attribute::Other`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// `a=rtpmap` (RFC 8866 §6.6).
    Rtpmap(Rtpmap),
    /// `a=fmtp` (RFC 8866 §6.15).
    Fmtp(Fmtp),
    /// `a=ptime` in milliseconds (RFC 8866 §6.4).
    Ptime(u32),
    /// `a=maxptime` in milliseconds (RFC 8866 §6.5).
    Maxptime(u32),
    /// `a=sendrecv` / `sendonly` / `recvonly` / `inactive` (RFC 8866 §6.7).
    Direction(Direction),
    /// `a=rtcp` (RFC 3605).
    Rtcp(Rtcp),
    /// `a=mid` (RFC 5888).
    Mid(String),
    /// `a=curr` (RFC 3312 §5).
    Curr(StatusLine),
    /// `a=des` (RFC 3312 §5).
    Des(DesiredStatus),
    /// `a=conf` (RFC 3312 §5).
    Conf(StatusLine),
    /// Any other attribute: `a=name` or `a=name:value`.
    Other {
        /// Attribute name.
        name: String,
        /// Text after the first `:`, if any.
        value: Option<String>,
    },
}

impl Attribute {
    /// The attribute name as it appears before `:`.
    pub fn name(&self) -> &str {
        match self {
            Attribute::Rtpmap(_) => "rtpmap",
            Attribute::Fmtp(_) => "fmtp",
            Attribute::Ptime(_) => "ptime",
            Attribute::Maxptime(_) => "maxptime",
            Attribute::Direction(d) => d.as_str(),
            Attribute::Rtcp(_) => "rtcp",
            Attribute::Mid(_) => "mid",
            Attribute::Curr(_) => "curr",
            Attribute::Des(_) => "des",
            Attribute::Conf(_) => "conf",
            Attribute::Other { name, .. } => name,
        }
    }

    /// Is this one of the RFC 3312 precondition lines (`curr`, `des`, `conf`)?
    pub fn is_precondition(&self) -> bool {
        matches!(
            self,
            Attribute::Curr(_) | Attribute::Des(_) | Attribute::Conf(_)
        )
    }

    pub(crate) fn parse<'a>(v: &'a str) -> ValueResult<Self> {
        let (name, value) = match v.split_once(':') {
            Some((n, val)) => (n, Some(val)),
            None => (v, None),
        };
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(format!("attribute name {name:?} is not a token"));
        }
        let need = |value: Option<&'a str>| value.ok_or_else(|| format!("a={name} needs a value"));
        Ok(match name {
            "rtpmap" => Attribute::Rtpmap(Rtpmap::parse(need(value)?)?),
            "fmtp" => Attribute::Fmtp(Fmtp::parse(need(value)?)?),
            "ptime" => Attribute::Ptime(parse_ms(name, need(value)?)?),
            "maxptime" => Attribute::Maxptime(parse_ms(name, need(value)?)?),
            "rtcp" => Attribute::Rtcp(Rtcp::parse(need(value)?)?),
            "mid" => {
                let v = need(value)?;
                if v.is_empty() {
                    return Err("a=mid is empty".into());
                }
                Attribute::Mid(v.to_owned())
            }
            "curr" => Attribute::Curr(StatusLine::parse(name, need(value)?)?),
            "conf" => Attribute::Conf(StatusLine::parse(name, need(value)?)?),
            "des" => Attribute::Des(DesiredStatus::parse(need(value)?)?),
            "sendrecv" | "sendonly" | "recvonly" | "inactive" => {
                if value.is_some() {
                    return Err(format!("a={name} takes no value"));
                }
                Attribute::Direction(match name {
                    "sendrecv" => Direction::SendRecv,
                    "sendonly" => Direction::SendOnly,
                    "recvonly" => Direction::RecvOnly,
                    _ => Direction::Inactive,
                })
            }
            _ => Attribute::Other {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            },
        })
    }
}

fn parse_ms(name: &str, v: &str) -> ValueResult<u32> {
    v.trim()
        .parse()
        .map_err(|_| format!("a={name} {v:?} is not a whole number of milliseconds"))
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Rtpmap(r) => write!(f, "rtpmap:{r}"),
            Attribute::Fmtp(x) => write!(f, "fmtp:{x}"),
            Attribute::Ptime(p) => write!(f, "ptime:{p}"),
            Attribute::Maxptime(p) => write!(f, "maxptime:{p}"),
            Attribute::Direction(d) => f.write_str(d.as_str()),
            Attribute::Rtcp(r) => write!(f, "rtcp:{r}"),
            Attribute::Mid(m) => write!(f, "mid:{m}"),
            Attribute::Curr(s) => write!(f, "curr:{s}"),
            Attribute::Des(d) => write!(f, "des:{d}"),
            Attribute::Conf(s) => write!(f, "conf:{s}"),
            Attribute::Other { name, value: None } => f.write_str(name),
            Attribute::Other {
                name,
                value: Some(v),
            } => write!(f, "{name}:{v}"),
        }
    }
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    /// RTP payload type, 0–127.
    pub payload_type: u8,
    /// `AMR`, `AMR-WB`, `PCMA`, `telephone-event`, … (compare case-insensitively, RFC 4855 §3).
    pub encoding: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// For audio the channel count, when written (`AMR/8000/1`).
    pub encoding_params: Option<u32>,
}

impl Rtpmap {
    /// An rtpmap without encoding parameters.
    pub fn new(payload_type: u8, encoding: &str, clock_rate: u32) -> Self {
        Rtpmap {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            encoding_params: None,
        }
    }

    /// The channel count (1 unless the encoding parameters say otherwise).
    pub fn channels(&self) -> u32 {
        self.encoding_params.unwrap_or(1)
    }

    /// Is the encoding `name` (case-insensitive, as media type names are)?
    pub fn is(&self, name: &str) -> bool {
        self.encoding.eq_ignore_ascii_case(name)
    }

    fn parse(v: &str) -> ValueResult<Self> {
        let (pt, rest) = v
            .split_once(' ')
            .ok_or_else(|| "a=rtpmap needs <payload type> <encoding>/<clock rate>".to_owned())?;
        let payload_type = parse_pt(pt)?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next().unwrap_or_default();
        if encoding.is_empty() {
            return Err("a=rtpmap has no encoding name".into());
        }
        let clock_rate = parts
            .next()
            .ok_or_else(|| "a=rtpmap has no clock rate".to_owned())?
            .parse()
            .map_err(|_| "a=rtpmap clock rate is not a number".to_owned())?;
        let encoding_params = parts
            .next()
            .map(|p| {
                p.parse()
                    .map_err(|_| "a=rtpmap encoding parameters are not a number".to_owned())
            })
            .transpose()?;
        if parts.next().is_some() {
            return Err("a=rtpmap has too many '/' parts".into());
        }
        Ok(Rtpmap {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            encoding_params,
        })
    }
}

fn parse_pt(s: &str) -> ValueResult<u8> {
    match s.parse::<u8>() {
        Ok(pt) if pt < 128 => Ok(pt),
        _ => Err(format!("payload type {s:?} is not a number 0-127")),
    }
}

impl fmt::Display for Rtpmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(p) = self.encoding_params {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

/// `a=fmtp:<format> <format specific parameters>`.
///
/// The parameters stay text here because their syntax depends on the encoding; read them
/// with [`crate::AmrParams::parse`] or [`crate::TelephoneEvents::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    /// The format (payload type number for RTP) it applies to.
    pub format: String,
    /// Everything after the first space.
    pub params: String,
}

impl Fmtp {
    /// An fmtp line for an RTP payload type.
    pub fn new(payload_type: u8, params: impl Into<String>) -> Self {
        Fmtp {
            format: payload_type.to_string(),
            params: params.into(),
        }
    }

    fn parse(v: &str) -> ValueResult<Self> {
        let (format, params) = match v.split_once(' ') {
            Some((f, p)) => (f, p),
            None => (v, ""),
        };
        if format.is_empty() {
            return Err("a=fmtp has no format".into());
        }
        Ok(Fmtp {
            format: format.to_owned(),
            params: params.to_owned(),
        })
    }
}

impl fmt::Display for Fmtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.params.is_empty() {
            f.write_str(&self.format)
        } else {
            write!(f, "{} {}", self.format, self.params)
        }
    }
}

/// Media direction (RFC 8866 §6.7, answered per RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send and receive (the default when no direction attribute is present).
    SendRecv,
    /// Send only.
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// From "do I send" and "do I receive".
    pub fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Does this side send?
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Does this side receive?
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The answer to an offered direction given what the answerer is willing to do
    /// (RFC 3264 §6.1): the answerer sends only if the offerer receives and the answerer
    /// wants to send, and receives only if the offerer sends and the answerer wants to.
    pub fn answer(offered: Direction, local: Direction) -> Direction {
        Direction::from_flags(
            offered.receives() && local.sends(),
            offered.sends() && local.receives(),
        )
    }
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtcp {
    /// RTCP port.
    pub port: u16,
    /// The optional connection address part, as written.
    pub address: Option<String>,
}

impl Rtcp {
    fn parse(v: &str) -> ValueResult<Self> {
        let v = v.trim();
        let (port, address) = match v.split_once(' ') {
            Some((p, a)) => (p, Some(a.trim())),
            None => (v, None),
        };
        let port = port
            .parse()
            .map_err(|_| format!("a=rtcp port {port:?} is not a number up to 65535"))?;
        if let Some(a) = address {
            if a.split_ascii_whitespace().count() != 3 {
                return Err("a=rtcp address needs <nettype> <addrtype> <address>".into());
            }
        }
        Ok(Rtcp {
            port,
            address: address.map(str::to_owned),
        })
    }
}

impl fmt::Display for Rtcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(a) = &self.address {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// RFC 3312 status type: whose segment a precondition line talks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusType {
    /// End to end.
    E2e,
    /// The segment of the side writing the SDP.
    Local,
    /// The segment of the peer.
    Remote,
}

impl StatusType {
    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusType::E2e => "e2e",
            StatusType::Local => "local",
            StatusType::Remote => "remote",
        }
    }

    /// `local` and `remote` swap when the other side speaks (RFC 3312 §6).
    pub fn mirrored(self) -> Self {
        match self {
            StatusType::E2e => StatusType::E2e,
            StatusType::Local => StatusType::Remote,
            StatusType::Remote => StatusType::Local,
        }
    }

    fn parse(s: &str) -> ValueResult<Self> {
        Ok(match s {
            "e2e" => StatusType::E2e,
            "local" => StatusType::Local,
            "remote" => StatusType::Remote,
            o => return Err(format!("status type {o:?} is not e2e/local/remote")),
        })
    }
}

/// RFC 3312 strength tag, weakest first so that `max` upgrades (§6: an answer may only
/// raise a strength).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strength {
    /// `failure`: the precondition failed.
    Failure,
    /// `unknown`: not known yet.
    Unknown,
    /// `none`: no precondition.
    None,
    /// `optional`: try, but go on without it.
    Optional,
    /// `mandatory`: do not alert until met.
    Mandatory,
}

impl Strength {
    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Failure => "failure",
            Strength::Unknown => "unknown",
            Strength::None => "none",
            Strength::Optional => "optional",
            Strength::Mandatory => "mandatory",
        }
    }

    fn parse(s: &str) -> ValueResult<Self> {
        Ok(match s {
            "mandatory" => Strength::Mandatory,
            "optional" => Strength::Optional,
            "none" => Strength::None,
            "failure" => Strength::Failure,
            "unknown" => Strength::Unknown,
            o => {
                return Err(format!(
                    "strength {o:?} is not mandatory/optional/none/failure/unknown"
                ))
            }
        })
    }
}

/// RFC 3312 direction tag of a segment's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrecondDirection {
    /// No resources.
    None,
    /// Resources for sending.
    Send,
    /// Resources for receiving.
    Recv,
    /// Both.
    SendRecv,
}

impl PrecondDirection {
    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            PrecondDirection::None => "none",
            PrecondDirection::Send => "send",
            PrecondDirection::Recv => "recv",
            PrecondDirection::SendRecv => "sendrecv",
        }
    }

    /// Send and receive swap when the other side speaks of the same segment (RFC 3312 §6).
    pub fn mirrored(self) -> Self {
        match self {
            PrecondDirection::Send => PrecondDirection::Recv,
            PrecondDirection::Recv => PrecondDirection::Send,
            d => d,
        }
    }

    /// Does `self` cover everything `wanted` asks for?
    pub fn covers(self, wanted: PrecondDirection) -> bool {
        let (s, r) = self.flags();
        let (ws, wr) = wanted.flags();
        (s || !ws) && (r || !wr)
    }

    fn flags(self) -> (bool, bool) {
        match self {
            PrecondDirection::None => (false, false),
            PrecondDirection::Send => (true, false),
            PrecondDirection::Recv => (false, true),
            PrecondDirection::SendRecv => (true, true),
        }
    }

    fn parse(s: &str) -> ValueResult<Self> {
        Ok(match s {
            "none" => PrecondDirection::None,
            "send" => PrecondDirection::Send,
            "recv" => PrecondDirection::Recv,
            "sendrecv" => PrecondDirection::SendRecv,
            o => return Err(format!("direction {o:?} is not none/send/recv/sendrecv")),
        })
    }
}

/// `a=curr` and `a=conf`: `<precondition type> <status type> <direction>` (RFC 3312 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// `qos` for RFC 3312; other types are kept as written.
    pub precondition: String,
    /// Whose segment.
    pub status: StatusType,
    /// Which directions have (curr) or should be confirmed to have (conf) resources.
    pub direction: PrecondDirection,
}

impl StatusLine {
    /// A `qos` status line.
    pub fn qos(status: StatusType, direction: PrecondDirection) -> Self {
        StatusLine {
            precondition: "qos".to_owned(),
            status,
            direction,
        }
    }

    fn parse(name: &str, v: &str) -> ValueResult<Self> {
        let t: Vec<&str> = v.split_ascii_whitespace().collect();
        let [precondition, status, direction] = t[..] else {
            return Err(format!(
                "a={name} needs <precondition type> <status type> <direction>"
            ));
        };
        Ok(StatusLine {
            precondition: precondition.to_owned(),
            status: StatusType::parse(status)?,
            direction: PrecondDirection::parse(direction)?,
        })
    }
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.precondition,
            self.status.as_str(),
            self.direction.as_str()
        )
    }
}

/// `a=des`: `<precondition type> <strength> <status type> <direction>` (RFC 3312 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredStatus {
    /// `qos` for RFC 3312.
    pub precondition: String,
    /// How hard the precondition is.
    pub strength: Strength,
    /// Whose segment.
    pub status: StatusType,
    /// Which directions need resources.
    pub direction: PrecondDirection,
}

impl DesiredStatus {
    /// A `qos` desired-status line.
    pub fn qos(strength: Strength, status: StatusType, direction: PrecondDirection) -> Self {
        DesiredStatus {
            precondition: "qos".to_owned(),
            strength,
            status,
            direction,
        }
    }

    fn parse(v: &str) -> ValueResult<Self> {
        let t: Vec<&str> = v.split_ascii_whitespace().collect();
        let [precondition, strength, status, direction] = t[..] else {
            return Err(
                "a=des needs <precondition type> <strength> <status type> <direction>".into(),
            );
        };
        Ok(DesiredStatus {
            precondition: precondition.to_owned(),
            strength: Strength::parse(strength)?,
            status: StatusType::parse(status)?,
            direction: PrecondDirection::parse(direction)?,
        })
    }
}

impl fmt::Display for DesiredStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.precondition,
            self.strength.as_str(),
            self.status.as_str(),
            self.direction.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_render_as_parsed() {
        for text in [
            "rtpmap:96 AMR-WB/16000/1",
            "rtpmap:101 telephone-event/8000",
            "fmtp:101 0-15",
            "fmtp:96",
            "ptime:20",
            "maxptime:240",
            "sendrecv",
            "sendonly",
            "recvonly",
            "inactive",
            "rtcp:4001",
            "rtcp:4001 IN IP6 2001:db8::1",
            "mid:audio",
            "curr:qos e2e send",
            "conf:qos remote recv",
            "des:qos failure remote none",
            "des:qos unknown e2e sendrecv",
            "rtcp-fb:* trr-int 1000",
            "x-flag",
        ] {
            let a = Attribute::parse(text).unwrap();
            assert_eq!(a.to_string(), text);
        }
    }

    #[test]
    fn rtpmap_fields() {
        let Attribute::Rtpmap(r) = Attribute::parse("rtpmap:97 AMR/8000/1").unwrap() else {
            panic!("not rtpmap");
        };
        assert_eq!(
            (
                r.payload_type,
                r.encoding.as_str(),
                r.clock_rate,
                r.channels()
            ),
            (97, "AMR", 8000, 1)
        );
        assert!(r.is("amr"));
        assert!(Attribute::parse("rtpmap:97 AMR/8000/1/2").is_err());
        assert!(Attribute::parse("rtpmap:97 /8000").is_err());
    }

    #[test]
    fn direction_answer_rfc3264_6_1() {
        use Direction::*;
        let cases = [
            (SendRecv, SendRecv, SendRecv),
            (SendOnly, SendRecv, RecvOnly),
            (RecvOnly, SendRecv, SendOnly),
            (Inactive, SendRecv, Inactive),
            (SendRecv, RecvOnly, RecvOnly),
            (SendRecv, Inactive, Inactive),
            (SendOnly, SendOnly, Inactive),
        ];
        for (offered, local, expect) in cases {
            assert_eq!(
                Direction::answer(offered, local),
                expect,
                "{offered:?} {local:?}"
            );
        }
    }

    #[test]
    fn precondition_tokens() {
        assert!(Strength::Mandatory > Strength::Optional);
        assert!(Strength::Optional > Strength::None);
        assert_eq!(PrecondDirection::Send.mirrored(), PrecondDirection::Recv);
        assert!(PrecondDirection::SendRecv.covers(PrecondDirection::Send));
        assert!(!PrecondDirection::Send.covers(PrecondDirection::SendRecv));
        assert!(PrecondDirection::None.covers(PrecondDirection::None));
        assert_eq!(StatusType::Local.mirrored(), StatusType::Remote);
    }
}
