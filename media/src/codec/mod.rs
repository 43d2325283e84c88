//! Speech codecs behind one interface: AMR-NB and AMR-WB encoders and decoders that turn
//! 20 ms of linear PCM into the speech bits of one [`AmrFrame`] and back.
//!
//! Two backends implement the same traits (issue 12):
//! - [`Backend::Rust`]: pure Rust, the zero-install default (AMR-NB; TS 26.090 algorithm,
//!   bit order of TS 26.101 Annex B);
//! - [`Backend::Opencore`]: Debian's `libopencore-amrnb` / `libopencore-amrwb` and
//!   `libvo-amrwbenc` over FFI, behind the cargo feature `opencore`, for speed.
//!
//! The frame bits are always in the order RFC 4867 carries them (class A, B, C; the same as
//! the storage format, §5.3), so a frame from one backend goes straight into an RTP payload
//! with [`crate::amr::pack`] and into the other backend's decoder. Codec state is per
//! direction of one call: a bridge holds one encoder and one decoder per leg that speaks AMR.
//! Encoding and decoding never allocate.

use sdp::AmrKind;

use crate::amr::AmrFrame;

#[cfg(feature = "opencore")]
pub mod opencore;
pub mod rust;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// Samples in one 20 ms frame of linear PCM: 160 at 8 kHz (AMR-NB), 320 at 16 kHz (AMR-WB).
pub fn frame_samples(kind: AmrKind) -> usize {
    match kind {
        AmrKind::Nb => 160,
        AmrKind::Wb => 320,
    }
}

/// The largest speech part of one frame in octets (AMR-NB 12.2: 31; AMR-WB 23.85: 60); a
/// buffer this long takes any frame an encoder writes.
pub const MAX_FRAME_OCTETS: usize = 61;

/// Which implementation of the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// Pure Rust, always built.
    #[default]
    Rust,
    /// opencore-amr / vo-amrwbenc over FFI (cargo feature `opencore`).
    Opencore,
}

impl Backend {
    /// Every backend this build has, the default first.
    pub fn available() -> &'static [Backend] {
        #[cfg(feature = "opencore")]
        {
            &[Backend::Rust, Backend::Opencore]
        }
        #[cfg(not(feature = "opencore"))]
        {
            &[Backend::Rust]
        }
    }
}

/// What can go wrong creating or running a codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// This build does not have the backend, or the backend does not do this codec.
    #[error("{backend:?} backend has no {kind:?} {what}")]
    Unsupported {
        /// The backend asked for.
        backend: Backend,
        /// The codec asked for.
        kind: AmrKind,
        /// "encoder" or "decoder".
        what: &'static str,
    },
    /// A mode outside the codec's (0–7 AMR-NB, 0–8 AMR-WB).
    #[error("no {kind:?} speech mode {mode}")]
    Mode {
        /// The codec.
        kind: AmrKind,
        /// The mode asked for.
        mode: u8,
    },
    /// The PCM or output buffer has the wrong length.
    #[error("buffer of {got} where {need} is needed")]
    Buffer {
        /// Length needed.
        need: usize,
        /// Length given.
        got: usize,
    },
    /// A frame of the other codec (an AMR-WB frame to an AMR-NB decoder).
    #[error("a {got:?} frame given to a {want:?} decoder")]
    Kind {
        /// The decoder's codec.
        want: AmrKind,
        /// The frame's codec.
        got: AmrKind,
    },
    /// The library failed to initialise (out of memory).
    #[error("codec library failed to initialise")]
    Init,
}

/// What one call of [`Encoder::encode`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Frame type written: the mode asked for, the SID frame type during DTX, or
    /// [`crate::amr::FT_NO_DATA`] when DTX sends nothing for this frame.
    pub frame_type: u8,
    /// Octets of speech bits written (= [`crate::amr::frame_octets`] of `frame_type`).
    pub len: usize,
}

/// An AMR-NB or AMR-WB speech encoder: one 20 ms frame per call, state kept between calls.
pub trait Encoder: Send {
    /// The codec this encoder makes frames of.
    fn kind(&self) -> AmrKind;

    /// Encodes exactly [`frame_samples`] samples at `mode` into `out` (at least
    /// [`MAX_FRAME_OCTETS`] long): the speech bits MSB first in RFC 4867 order, the last octet
    /// zero-padded, ready for [`AmrFrame::from_octets`] with the returned frame type.
    fn encode(&mut self, pcm: &[i16], mode: u8, out: &mut [u8]) -> Result<Encoded, CodecError>;
}

/// An AMR-NB or AMR-WB speech decoder: one 20 ms frame per call, state kept between calls.
pub trait Decoder: Send {
    /// The codec this decoder takes frames of.
    fn kind(&self) -> AmrKind;

    /// Decodes one frame into exactly [`frame_samples`] samples. `None` is a frame that never
    /// arrived (lost; the decoder conceals it); a NO_DATA frame continues comfort noise after
    /// a SID; a frame whose Q bit is 0 is treated as damaged (RFC 4867 §4.3.2).
    fn decode(&mut self, frame: Option<&AmrFrame<'_>>, pcm: &mut [i16]) -> Result<(), CodecError>;
}

/// Checks a PCM buffer holds exactly one frame of `kind`.
pub(crate) fn check_pcm(kind: AmrKind, got: usize) -> Result<usize, CodecError> {
    let need = frame_samples(kind);
    if got == need {
        Ok(need)
    } else {
        Err(CodecError::Buffer { need, got })
    }
}

/// A new encoder of `kind` from `backend`; `dtx` turns on discontinuous transmission (SID
/// and NO_DATA frames in silence).
pub fn encoder(kind: AmrKind, backend: Backend, dtx: bool) -> Result<Box<dyn Encoder>, CodecError> {
    match backend {
        #[cfg(feature = "opencore")]
        Backend::Opencore => Ok(Box::new(opencore::OpencoreEncoder::new(kind, dtx)?)),
        Backend::Rust if kind == AmrKind::Nb => Ok(Box::new(rust::RustEncoder::new(dtx))),
        _ => {
            let _ = dtx;
            Err(CodecError::Unsupported {
                backend,
                kind,
                what: "encoder",
            })
        }
    }
}

/// A new decoder of `kind` from `backend`.
pub fn decoder(kind: AmrKind, backend: Backend) -> Result<Box<dyn Decoder>, CodecError> {
    match backend {
        #[cfg(feature = "opencore")]
        Backend::Opencore => Ok(Box::new(opencore::OpencoreDecoder::new(kind)?)),
        Backend::Rust if kind == AmrKind::Nb => Ok(Box::new(rust::RustDecoder::default())),
        _ => Err(CodecError::Unsupported {
            backend,
            kind,
            what: "decoder",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factories_follow_the_build() {
        for kind in [AmrKind::Nb, AmrKind::Wb] {
            let opencore = cfg!(feature = "opencore");
            assert_eq!(encoder(kind, Backend::Opencore, true).is_ok(), opencore);
            assert_eq!(decoder(kind, Backend::Opencore).is_ok(), opencore);
            assert_eq!(Backend::available().contains(&Backend::Opencore), opencore);
            // The pure-Rust backend does AMR-NB; AMR-WB is opencore's.
            assert_eq!(decoder(kind, Backend::Rust).is_ok(), kind == AmrKind::Nb);
            assert_eq!(
                encoder(kind, Backend::Rust, false).is_ok(),
                kind == AmrKind::Nb
            );
        }
    }
}
