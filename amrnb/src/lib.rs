//! Pure-Rust AMR-NB speech codec (3GPP TS 26.090), the zero-install backend of
//! `media::codec` (issue 12).
//!
//! - [`Mode`]: the eight speech modes 4.75 to 12.2 kbit/s and their frame sizes;
//! - [`bits`]: codec parameters ⇄ speech bits in the order RFC 4867 carries them (classes A,
//!   B, C; TS 26.101 Annex B), MSB first, the form the storage format and RTP payloads use;
//! - [`tables`]: the codec's constant tables (TS 26.073 reference data);
//! - [`dsp`]: LPC/LSP/LSF conversions, interpolation, synthesis and analysis filters, the
//!   fractional-pitch adaptive codebook, shared by both directions;
//! - [`dec`]: the decoder (TS 26.090 §6, concealment after TS 26.091, comfort noise after
//!   TS 26.092);
//! - [`enc`]: the encoder (TS 26.090 §5).
//!
//! The signal processing runs in `f32`: bit-exactness with the fixed-point reference is not a
//! goal, correct audio is. Encoding and decoding never allocate.

pub mod bits;
pub mod dec;
pub mod dsp;
pub mod enc;
pub mod tables;

pub use dec::Decoder;
pub use enc::{EncodeError, Encoder, Frame};

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Samples in one 5 ms subframe.
pub const SUBFRAME_SAMPLES: usize = 40;
/// Order of the LP filter.
pub const LPC_ORDER: usize = 10;
/// Frame type of a comfort-noise SID frame (RFC 4867 §3.1, TS 26.101 table 1a).
pub const FT_SID: u8 = 8;
/// Frame type of a frame with no speech data (DTX pause or nothing sent).
pub const FT_NO_DATA: u8 = 15;
/// Bits of a SID frame: 35 parameter bits, the SID type indicator (STI), 3 mode bits.
pub const SID_BITS: usize = 39;
/// Bits of the comfort-noise parameters inside a SID frame.
pub const SID_PARAM_BITS: usize = 35;
/// Most codec parameters of any mode (12.2 has 57).
pub const MAX_PARAMS: usize = 57;
/// Most speech bits of any mode (12.2 has 244).
pub const MAX_BITS: usize = 244;

/// One of the eight AMR-NB speech modes; the discriminant is the RFC 4867 frame type / CMR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Mode {
    /// 4.75 kbit/s.
    MR475 = 0,
    /// 5.15 kbit/s.
    MR515 = 1,
    /// 5.90 kbit/s.
    MR59 = 2,
    /// 6.70 kbit/s (PDC-EFR).
    MR67 = 3,
    /// 7.40 kbit/s (TDMA-EFR).
    MR74 = 4,
    /// 7.95 kbit/s.
    MR795 = 5,
    /// 10.2 kbit/s.
    MR102 = 6,
    /// 12.2 kbit/s (GSM-EFR).
    MR122 = 7,
}

impl Mode {
    /// Every mode, lowest rate first (index = frame type).
    pub const ALL: [Mode; 8] = [
        Mode::MR475,
        Mode::MR515,
        Mode::MR59,
        Mode::MR67,
        Mode::MR74,
        Mode::MR795,
        Mode::MR102,
        Mode::MR122,
    ];

    /// The mode of RFC 4867 frame type `ft` (0–7), or `None` for SID, NO_DATA and the reserved
    /// types.
    pub fn from_frame_type(ft: u8) -> Option<Mode> {
        Mode::ALL.get(usize::from(ft)).copied()
    }

    /// The frame type / index of this mode.
    pub fn frame_type(self) -> u8 {
        self as u8
    }

    /// Speech bits of one frame (TS 26.101 table 1a).
    pub fn bits(self) -> usize {
        match self {
            Mode::MR475 => 95,
            Mode::MR515 => 103,
            Mode::MR59 => 118,
            Mode::MR67 => 134,
            Mode::MR74 => 148,
            Mode::MR795 => 159,
            Mode::MR102 => 204,
            Mode::MR122 => 244,
        }
    }

    /// Octets of one frame's speech bits, the last one zero-padded (storage format, RFC 4867
    /// §5.3).
    pub fn octets(self) -> usize {
        self.bits().div_ceil(8)
    }

    /// Bit rate in bit/s.
    pub fn bitrate(self) -> u32 {
        // 20 ms frames: 50 per second.
        self.bits() as u32 * 50
    }

    /// Codec parameters of one frame (the length of [`bits::param_bits`]).
    pub fn params(self) -> usize {
        bits::param_bits(self).len()
    }
}

/// Octets of the speech bits of frame type `ft`: modes per [`Mode::octets`], SID 5, NO_DATA 0;
/// `None` for the reserved types 9–14.
pub fn frame_octets(ft: u8) -> Option<usize> {
    match ft {
        0..=7 => Mode::from_frame_type(ft).map(Mode::octets),
        FT_SID => Some(SID_BITS.div_ceil(8)),
        FT_NO_DATA => Some(0),
        _ => None,
    }
}

/// What can go wrong handing bits to the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmrError {
    /// A frame type AMR-NB does not define (9–14 are reserved / other codecs' SID).
    #[error("AMR-NB has no frame type {0}")]
    FrameType(u8),
    /// Fewer speech octets than the frame type needs.
    #[error("frame type {frame_type} needs {need} octets, got {got}")]
    Short {
        /// The frame type.
        frame_type: u8,
        /// Octets needed.
        need: usize,
        /// Octets given.
        got: usize,
    },
    /// A parameter slice or output buffer of the wrong length.
    #[error("buffer of {got} where {need} is needed")]
    Buffer {
        /// Length needed.
        need: usize,
        /// Length given.
        got: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_match_ts_26_101() {
        let octets: Vec<usize> = Mode::ALL.iter().map(|m| m.octets()).collect();
        assert_eq!(octets, [12, 13, 15, 17, 19, 20, 26, 31]);
        assert_eq!(frame_octets(FT_SID), Some(5));
        assert_eq!(frame_octets(FT_NO_DATA), Some(0));
        assert_eq!(frame_octets(9), None);
        for m in Mode::ALL {
            assert_eq!(Mode::from_frame_type(m.frame_type()), Some(m));
            let sum: i32 = bits::param_bits(m).iter().map(|&b| i32::from(b)).sum();
            assert_eq!(sum as usize, m.bits(), "{m:?}");
        }
        assert_eq!(Mode::MR122.bitrate(), 12_200);
    }
}
