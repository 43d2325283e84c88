//! A deterministic test pattern in AMR/AMR-WB speech frames: real-sized frames of a mode
//! whose speech bits come from a generator seeded by the packet's SSRC and RTP timestamp.
//!
//! It is not audio (no codec made these bits and a decoder would play noise): it is a
//! codec-free integrity check. A receiver that knows nothing of the sender but the RTP
//! header regenerates the bits of each frame and compares them bit for bit, so loss,
//! reordering and duplicates do not confuse it, and any relay that damages, truncates or
//! re-packs a frame wrongly shows up as a mismatch. A relay that rewrites SSRC or
//! timestamps (a B2BUA's [`crate::rewrite::LegRewriter`]) must be checked against the
//! original header values.

use sdp::AmrKind;

use crate::amr::{frame_octets, AmrError, AmrFrame};

/// The largest speech frame in octets (AMR-WB 23.85 kbit/s: 477 bits).
pub const MAX_FRAME_OCTETS: usize = 60;

/// Mixes the seed once more so that neighbouring timestamps give unrelated streams
/// (SplitMix64, a public-domain generator: small, fast, good enough for test data).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with the pattern octets of the frame at (`ssrc`, `timestamp`) of `bits`
/// speech bits; the bits after the last speech bit are zero (as a storage file pads).
fn fill(ssrc: u32, timestamp: u32, bits: usize, out: &mut [u8]) {
    let mut state = (u64::from(ssrc) << 32) | u64::from(timestamp);
    for chunk in out.chunks_mut(8) {
        let v = splitmix(&mut state).to_be_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let spare = out.len() * 8 - bits;
    if spare > 0 {
        if let Some(last) = out.last_mut() {
            *last &= 0xFFu8 << spare;
        }
    }
}

/// The pattern frame of mode `mode` for the frame whose RTP timestamp is `timestamp` in the
/// stream `ssrc`, built in `buf`. `mode` must be a speech mode of `kind` (0–7 for AMR, 0–8
/// for AMR-WB).
pub fn pattern_frame(
    kind: AmrKind,
    mode: u8,
    ssrc: u32,
    timestamp: u32,
    buf: &mut [u8; MAX_FRAME_OCTETS],
) -> Result<AmrFrame<'_>, AmrError> {
    if mode > kind.max_mode() {
        return Err(AmrError::FrameType { index: 0, ft: mode });
    }
    let n = frame_octets(kind, mode).ok_or(AmrError::FrameType { index: 0, ft: mode })?;
    let bits = crate::amr::frame_bits(kind, mode).unwrap_or(n * 8);
    let out = &mut buf[..n];
    fill(ssrc, timestamp, bits, out);
    AmrFrame::from_octets(kind, mode, true, out)
}

/// What a received frame is, measured against the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternCheck {
    /// A speech frame whose every bit is the pattern's.
    Match,
    /// A speech frame with other bits (damaged, or real speech from an encoder or a file).
    Mismatch,
    /// Not a speech frame (SID, NO_DATA, SPEECH_LOST): nothing to compare.
    NotSpeech,
}

/// Compares a received frame with the pattern frame of the same mode at (`ssrc`,
/// `timestamp`); `timestamp` is the frame's own (the packet's plus the frame's offset in
/// it when a packet carries several).
pub fn check_frame(frame: &AmrFrame<'_>, ssrc: u32, timestamp: u32) -> PatternCheck {
    if !frame.is_speech() {
        return PatternCheck::NotSpeech;
    }
    let mut got = [0u8; MAX_FRAME_OCTETS];
    let mut want = [0u8; MAX_FRAME_OCTETS];
    let Ok(n) = frame.copy_octets(&mut got) else {
        return PatternCheck::Mismatch;
    };
    fill(ssrc, timestamp, frame.bit_len(), &mut want[..n]);
    if got[..n] == want[..n] {
        PatternCheck::Match
    } else {
        PatternCheck::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amr::{pack, AmrFormat, AmrPayload};
    use proptest::prelude::*;

    #[test]
    fn frames_have_the_mode_size_and_depend_on_ssrc_and_timestamp() {
        let mut a = [0u8; MAX_FRAME_OCTETS];
        let mut b = [0u8; MAX_FRAME_OCTETS];
        let f = pattern_frame(AmrKind::Nb, 7, 1, 160, &mut a).unwrap();
        assert_eq!(f.bit_len(), 244);
        assert_eq!(f.aligned_octets().map(<[u8]>::len), Some(31));
        // 244 bits: the last 4 bits of octet 31 are padding, zero
        assert_eq!(f.aligned_octets().unwrap()[30] & 0x0F, 0);
        let fa = f.aligned_octets().unwrap().to_vec();
        let g = pattern_frame(AmrKind::Nb, 7, 1, 320, &mut b).unwrap();
        assert_ne!(fa, g.aligned_octets().unwrap());
        let g = pattern_frame(AmrKind::Nb, 7, 2, 160, &mut b).unwrap();
        assert_ne!(fa, g.aligned_octets().unwrap());
        let w = pattern_frame(AmrKind::Wb, 8, 1, 320, &mut b).unwrap();
        assert_eq!(w.bit_len(), 477);
        assert!(pattern_frame(AmrKind::Nb, 8, 1, 0, &mut b).is_err());
        assert!(pattern_frame(AmrKind::Wb, 9, 1, 0, &mut b).is_err());
    }

    #[test]
    fn one_flipped_bit_is_a_mismatch() {
        let mut buf = [0u8; MAX_FRAME_OCTETS];
        let f = pattern_frame(AmrKind::Wb, 2, 77, 640, &mut buf).unwrap();
        assert_eq!(check_frame(&f, 77, 640), PatternCheck::Match);
        assert_eq!(check_frame(&f, 77, 960), PatternCheck::Mismatch);
        assert_eq!(check_frame(&f, 78, 640), PatternCheck::Mismatch);
        let mut damaged = buf;
        damaged[5] ^= 0x10;
        let d = AmrFrame::from_octets(AmrKind::Wb, 2, true, &damaged[..32]).unwrap();
        assert_eq!(check_frame(&d, 77, 640), PatternCheck::Mismatch);
        let nd = AmrFrame::no_data(AmrKind::Wb);
        assert_eq!(check_frame(&nd, 77, 640), PatternCheck::NotSpeech);
    }

    proptest! {
        /// Through either payload format and back, every mode's pattern still matches.
        #[test]
        fn survives_both_payload_formats(
            wb in any::<bool>(),
            mode in 0u8..=8,
            octet in any::<bool>(),
            ssrc in any::<u32>(),
            ts in any::<u32>(),
        ) {
            let kind = if wb { AmrKind::Wb } else { AmrKind::Nb };
            let mode = mode.min(kind.max_mode());
            let mut buf = [0u8; MAX_FRAME_OCTETS];
            let f = pattern_frame(kind, mode, ssrc, ts, &mut buf).unwrap();
            let format = AmrFormat { kind, octet_aligned: octet };
            let mut wire = [0u8; 64];
            let n = pack(format, 15, [f], &mut wire).unwrap();
            let p = AmrPayload::parse(format, &wire[..n]).unwrap();
            let got = p.frames().next().unwrap();
            prop_assert_eq!(check_frame(&got, ssrc, ts), PatternCheck::Match);
        }
    }
}
