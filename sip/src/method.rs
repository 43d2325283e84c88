//! Request methods (RFC 3261 §7.1 and extensions).

use std::fmt;

use crate::error::ParseError;
use crate::name::is_token;

/// A SIP request method. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// RFC 3261
    Register,
    /// RFC 3261
    Invite,
    /// RFC 3261
    Ack,
    /// RFC 3261
    Bye,
    /// RFC 3261
    Cancel,
    /// RFC 3261
    Options,
    /// RFC 6665
    Subscribe,
    /// RFC 6665
    Notify,
    /// RFC 3903
    Publish,
    /// RFC 3428
    Message,
    /// RFC 6086
    Info,
    /// RFC 3262
    Prack,
    /// RFC 3311
    Update,
    /// RFC 3515
    Refer,
    /// Any other extension method token.
    Other(String),
}

impl Method {
    /// Parses a method token; unknown tokens become [`Method::Other`].
    pub fn parse(s: &str) -> Result<Method, ParseError> {
        Ok(match s {
            "REGISTER" => Method::Register,
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "REFER" => Method::Refer,
            _ if is_token(s) => Method::Other(s.to_string()),
            _ => return Err(ParseError::StartLine("method is not a token")),
        })
    }

    /// The method token as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Register => "REGISTER",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::parse(s)
    }
}
