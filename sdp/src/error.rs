//! The one error type of the crate.

/// Everything that can be wrong with an SDP body or with what is asked of it.
///
/// Parse errors carry the 1-based line number of the offending line, so a log line points
/// straight at the byte range a capture shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A line of the body is malformed.
    #[error("line {line}: {what}")]
    Line {
        /// 1-based line number in the parsed body.
        line: usize,
        /// What is wrong with it.
        what: String,
    },
    /// A line RFC 8866 §5 requires is absent (`v=`, `o=`, `s=`).
    #[error("missing required {0}= line")]
    Missing(char),
    /// A format parameter (`a=fmtp`) value is malformed.
    #[error("fmtp parameter {param}: {what}")]
    Param {
        /// The parameter name as written.
        param: String,
        /// What is wrong with it.
        what: String,
    },
    /// A media description cannot be used for what was asked (offer/answer).
    #[error("media description {index}: {what}")]
    Media {
        /// 0-based index of the `m=` section.
        index: usize,
        /// What is wrong with it.
        what: String,
    },
}

impl SdpError {
    pub(crate) fn line(line: usize, what: impl Into<String>) -> Self {
        SdpError::Line {
            line,
            what: what.into(),
        }
    }

    pub(crate) fn param(param: &str, what: impl Into<String>) -> Self {
        SdpError::Param {
            param: param.to_owned(),
            what: what.into(),
        }
    }
}
