//! The pure-Rust backend: the `amrnb` crate (TS 26.090) behind the codec traits. AMR-NB
//! only; AMR-WB needs the opencore backend.

use sdp::AmrKind;

use super::{check_pcm, CodecError, Decoder, Encoded, Encoder};
use crate::amr::{AmrFrame, FT_NO_DATA};

/// The `amrnb` encoder as an [`Encoder`]. With DTX on, pauses come out as SID and NO_DATA
/// frames (TS 26.093; the VAD is amrnb's, after TS 26.094 option 1), and
/// [`Encoded::frame_type`] says which.
#[derive(Default)]
pub struct RustEncoder {
    inner: amrnb::Encoder,
}

impl RustEncoder {
    /// An encoder with DTX on or off.
    pub fn new(dtx: bool) -> Self {
        RustEncoder {
            inner: amrnb::Encoder::new().with_dtx(dtx),
        }
    }
}

impl Encoder for RustEncoder {
    fn kind(&self) -> AmrKind {
        AmrKind::Nb
    }

    fn encode(&mut self, pcm: &[i16], mode: u8, out: &mut [u8]) -> Result<Encoded, CodecError> {
        check_pcm(AmrKind::Nb, pcm.len())?;
        self.inner
            .encode_frame_type(mode, pcm, out)
            .map(|f| Encoded {
                frame_type: f.frame_type,
                len: f.len,
            })
            .map_err(|e| match e {
                amrnb::EncodeError::Mode(mode) => CodecError::Mode {
                    kind: AmrKind::Nb,
                    mode,
                },
                amrnb::EncodeError::Samples(got) => CodecError::Buffer { need: 160, got },
                amrnb::EncodeError::Buffer { need, got } => CodecError::Buffer { need, got },
            })
    }
}

/// The `amrnb` decoder as a [`Decoder`].
#[derive(Default)]
pub struct RustDecoder {
    inner: amrnb::Decoder,
    /// The frame's speech bits, realigned to octets when they came bandwidth-efficient.
    bits: [u8; 32],
}

impl Decoder for RustDecoder {
    fn kind(&self) -> AmrKind {
        AmrKind::Nb
    }

    fn decode(&mut self, frame: Option<&AmrFrame<'_>>, pcm: &mut [i16]) -> Result<(), CodecError> {
        let got = pcm.len();
        check_pcm(AmrKind::Nb, got)?;
        let out: &mut [i16; amrnb::FRAME_SAMPLES] =
            pcm.try_into().map_err(|_| CodecError::Buffer {
                need: amrnb::FRAME_SAMPLES,
                got,
            })?;
        let Some(f) = frame else {
            self.inner.decode_lost(out);
            return Ok(());
        };
        if f.kind() != AmrKind::Nb {
            return Err(CodecError::Kind {
                want: AmrKind::Nb,
                got: f.kind(),
            });
        }
        // A valid AmrFrame of AMR-NB has at most 31 speech octets.
        let n = f.copy_octets(&mut self.bits).unwrap_or(0);
        if self
            .inner
            .decode(f.frame_type(), f.quality(), &self.bits[..n], out)
            .is_err()
        {
            // A frame type the payload parser let through that AMR-NB has no decoding
            // for is a frame that did not arrive.
            debug_assert!(f.frame_type() != FT_NO_DATA);
            self.inner.decode_lost(out);
        }
        Ok(())
    }
}
