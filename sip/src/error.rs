//! Typed errors of every parser in this crate.

use thiserror::Error;

/// Why a message or a header value could not be parsed.
///
/// Parsers never panic on network input; every failure ends up here so that
/// a server can answer with the right status (400, 413, 505, …) or drop the
/// datagram.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The input contained only line breaks (a keep-alive, RFC 5626 §4.4.1).
    #[error("keep-alive / empty input")]
    Empty,
    /// The message is larger than the configured limit (answer 513 on a datagram).
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// size seen so far
        size: usize,
        /// configured limit
        limit: usize,
    },
    /// More header fields than the configured limit.
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// No empty line terminates the header section.
    #[error("header section not terminated")]
    Incomplete,
    /// The header section is not UTF-8 (RFC 3261 §25 uses UTF-8 text).
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// SIP-Version other than SIP/2.0 (RFC 3261 §8.2.2: answer 505).
    #[error("unsupported SIP version")]
    Version,
    /// A header line has no colon or an empty/invalid name.
    #[error("malformed header line")]
    HeaderLine,
    /// Content-Length missing where required, unparsable or contradictory.
    #[error("invalid Content-Length: {0}")]
    ContentLength(&'static str),
    /// The body is shorter than Content-Length announces.
    #[error("body truncated: Content-Length {declared}, {available} bytes present")]
    BodyTruncated {
        /// Content-Length value
        declared: usize,
        /// bytes actually present
        available: usize,
    },
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header value does not match its grammar.
    #[error("invalid {header}: {reason}")]
    InvalidHeader {
        /// header (or element) being parsed
        header: &'static str,
        /// short description of the failure
        reason: &'static str,
    },
    /// A URI does not match RFC 3261 §19.1 / RFC 3966.
    #[error("invalid URI: {0}")]
    Uri(&'static str),
}

impl ParseError {
    pub(crate) fn hdr(header: &'static str, reason: &'static str) -> Self {
        ParseError::InvalidHeader { header, reason }
    }
}

/// Result alias for this crate's parsers.
pub type Result<T, E = ParseError> = std::result::Result<T, E>;
