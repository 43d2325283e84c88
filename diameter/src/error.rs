//! Typed errors of the codec and of typed AVP access.

use crate::dict::AvpType;

/// Why a byte sequence is not a valid Diameter message (RFC 6733 §3, §4).
///
/// Every malformation of network input maps to one of these; the codec never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the structure being read needs.
    #[error("truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that were available.
        available: usize,
    },
    /// Header version is not 1 (RFC 6733 §3); answer DIAMETER_UNSUPPORTED_VERSION (5011).
    #[error("unsupported Diameter version {0}")]
    BadVersion(u8),
    /// Message length in the header is below 20 or not a multiple of 4 (RFC 6733 §3).
    #[error("invalid message length {0}")]
    InvalidMessageLength(u32),
    /// Message length in the header exceeds the configured maximum.
    #[error("message length {length} exceeds the limit {max}")]
    TooLarge {
        /// Length announced in the header.
        length: u32,
        /// Configured limit.
        max: usize,
    },
    /// The header's length does not match the number of bytes given to `decode`.
    #[error("header says {header} bytes, buffer holds {actual}")]
    LengthMismatch {
        /// Length announced in the header.
        header: u32,
        /// Bytes actually supplied.
        actual: usize,
    },
    /// Flag combination forbidden by RFC 6733 §3 (E bit set in a request).
    #[error("invalid command flags {0:#04x}")]
    InvalidHeaderBits(u8),
    /// An AVP's length field is smaller than its own header (RFC 6733 §4.1).
    #[error("AVP {code} length {length} shorter than its header")]
    AvpTooShort {
        /// AVP code.
        code: u32,
        /// Length field value.
        length: u32,
    },
    /// An AVP's length runs past the end of the message or of the enclosing grouped AVP.
    #[error("AVP {code} length {length} overruns the {remaining} remaining bytes")]
    AvpOverrun {
        /// AVP code.
        code: u32,
        /// Length field value.
        length: u32,
        /// Bytes left in the enclosing container.
        remaining: usize,
    },
    /// The payload of a grouped AVP is itself malformed.
    #[error("in grouped AVP {code} (vendor {vendor}): {source}")]
    Grouped {
        /// Code of the grouped AVP.
        code: u32,
        /// Vendor-Id of the grouped AVP (0 if none).
        vendor: u32,
        /// Error inside the group.
        source: Box<DecodeError>,
    },
    /// Grouped AVPs nested deeper than the codec accepts (protects the stack).
    #[error("grouped AVPs nested deeper than {0}")]
    TooDeep(usize),
}

impl DecodeError {
    /// The RFC 6733 §7.1 Result-Code that reports this error to the sender of a request.
    pub fn result_code(&self) -> u32 {
        use crate::result;
        match self {
            DecodeError::BadVersion(_) => result::UNSUPPORTED_VERSION,
            DecodeError::InvalidMessageLength(_)
            | DecodeError::LengthMismatch { .. }
            | DecodeError::TooLarge { .. }
            | DecodeError::Truncated { .. } => result::INVALID_MESSAGE_LENGTH,
            DecodeError::InvalidHeaderBits(_) => result::INVALID_HDR_BITS,
            DecodeError::AvpTooShort { .. } | DecodeError::AvpOverrun { .. } => {
                result::INVALID_AVP_LENGTH
            }
            DecodeError::Grouped { source, .. } => source.result_code(),
            DecodeError::TooDeep(_) => result::INVALID_AVP_VALUE,
        }
    }

    /// Whether the byte stream can no longer be framed after this error, so the
    /// connection must be closed (RFC 6733 §3: the header itself is unusable).
    pub fn is_framing_error(&self) -> bool {
        matches!(
            self,
            DecodeError::BadVersion(_)
                | DecodeError::InvalidMessageLength(_)
                | DecodeError::TooLarge { .. }
        )
    }
}

/// Why a typed AVP access failed: the AVP is missing, or its payload does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvpError {
    /// No AVP with this code and vendor is present.
    #[error("missing AVP {name} ({code}, vendor {vendor})")]
    Missing {
        /// AVP code.
        code: u32,
        /// Vendor-Id (0 if none).
        vendor: u32,
        /// Dictionary name, or "?".
        name: &'static str,
    },
    /// The payload length does not fit the type (e.g. an Unsigned32 of 3 bytes).
    #[error("AVP {code} (vendor {vendor}) has {len} bytes, invalid for {ty:?}")]
    InvalidLength {
        /// AVP code.
        code: u32,
        /// Vendor-Id (0 if none).
        vendor: u32,
        /// Payload length.
        len: usize,
        /// Type that was asked for.
        ty: AvpType,
    },
    /// A UTF8String / DiameterIdentity is not valid UTF-8.
    #[error("AVP {code} (vendor {vendor}) is not valid UTF-8")]
    InvalidUtf8 {
        /// AVP code.
        code: u32,
        /// Vendor-Id (0 if none).
        vendor: u32,
    },
    /// An Address AVP with a family other than IPv4 (1) or IPv6 (2).
    #[error("AVP {code} has unsupported address family {family}")]
    AddressFamily {
        /// AVP code.
        code: u32,
        /// IANA address family number.
        family: u16,
    },
    /// A Time AVP whose value is not representable as `SystemTime`.
    #[error("AVP {code} holds an unrepresentable time")]
    InvalidTime {
        /// AVP code.
        code: u32,
    },
    /// The payload of a grouped AVP is malformed.
    #[error("grouped AVP {code} (vendor {vendor}): {source}")]
    Grouped {
        /// AVP code.
        code: u32,
        /// Vendor-Id (0 if none).
        vendor: u32,
        /// Decoding error inside the group.
        source: DecodeError,
    },
}

impl AvpError {
    /// The Result-Code (RFC 6733 §7.1) to answer a request whose AVP failed this way.
    pub fn result_code(&self) -> u32 {
        match self {
            AvpError::Missing { .. } => crate::result::MISSING_AVP,
            AvpError::InvalidLength { .. } => crate::result::INVALID_AVP_LENGTH,
            AvpError::Grouped { source, .. } => source.result_code(),
            _ => crate::result::INVALID_AVP_VALUE,
        }
    }
}
