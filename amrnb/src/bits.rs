//! Codec parameters ⇄ speech bits.
//!
//! The codec works on a list of integer parameters per frame (LSF indices, pitch lags,
//! codebook indices, gains; TS 26.090 tables 1–9, widths in [`param_bits`]). Concatenated MSB
//! first they form the "parameter bit stream"; TS 26.101 Annex B reorders that stream by
//! subjective importance into classes A, B, C, and that reordered stream, MSB first in octets,
//! is what RFC 4867 carries (both octet-aligned and bandwidth-efficient payloads, and the
//! storage format). [`unpack`] and [`pack`] convert between the two; SID frames (TS 26.101
//! §4.2.3) are not reordered and have their own pair [`unpack_sid`] / [`pack_sid`].

use crate::tables::bitorder as t;
use crate::{AmrError, Mode, FT_SID, MAX_BITS, MAX_PARAMS, SID_BITS, SID_PARAM_BITS};

/// Bits of each codec parameter of `mode`, in parameter order.
pub fn param_bits(mode: Mode) -> &'static [i16] {
    match mode {
        Mode::MR475 => &t::BITNO_MR475,
        Mode::MR515 => &t::BITNO_MR515,
        Mode::MR59 => &t::BITNO_MR59,
        Mode::MR67 => &t::BITNO_MR67,
        Mode::MR74 => &t::BITNO_MR74,
        Mode::MR795 => &t::BITNO_MR795,
        Mode::MR102 => &t::BITNO_MR102,
        Mode::MR122 => &t::BITNO_MR122,
    }
}

/// The TS 26.101 Annex B order of `mode`: entry i is the position in the parameter bit stream
/// of the i-th transmitted bit.
pub fn reorder_table(mode: Mode) -> &'static [i16] {
    match mode {
        Mode::MR475 => &t::REORDER_MR475,
        Mode::MR515 => &t::REORDER_MR515,
        Mode::MR59 => &t::REORDER_MR59,
        Mode::MR67 => &t::REORDER_MR67,
        Mode::MR74 => &t::REORDER_MR74,
        Mode::MR795 => &t::REORDER_MR795,
        Mode::MR102 => &t::REORDER_MR102,
        Mode::MR122 => &t::REORDER_MR122,
    }
}

/// Codec parameters of a SID frame (TS 26.092 §5.2 / TS 26.093): the reference LSF vector
/// index, the three LSF sub-vector indices and the 6-bit log energy, plus the SID type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sid {
    /// [reference vector index (3 bits), LSF index 1 (8), LSF index 2 (9), LSF index 3 (9),
    /// log frame energy (6)].
    pub params: [i16; 5],
    /// SID type indicator: `false` SID_FIRST, `true` SID_UPDATE.
    pub update: bool,
    /// The speech mode the encoder runs in (mode indication, 3 bits).
    pub mode: u8,
}

fn bit(bits: &[u8], i: usize) -> u8 {
    (bits[i / 8] >> (7 - i % 8)) & 1
}

fn need(frame_type: u8, n_bits: usize, got: usize) -> Result<(), AmrError> {
    let need = n_bits.div_ceil(8);
    if got < need {
        return Err(AmrError::Short {
            frame_type,
            need,
            got,
        });
    }
    Ok(())
}

/// Speech bits of `mode` (class order, MSB first, at least [`Mode::octets`] octets; trailing
/// padding ignored) to its codec parameters in `prm`; returns how many parameters were written
/// ([`Mode::params`]).
pub fn unpack(mode: Mode, bits: &[u8], prm: &mut [i16; MAX_PARAMS]) -> Result<usize, AmrError> {
    let n = mode.bits();
    need(mode.frame_type(), n, bits.len())?;
    let order = reorder_table(mode);
    let mut serial = [0u8; MAX_BITS];
    for (i, &pos) in order.iter().enumerate() {
        serial[pos as usize] = bit(bits, i);
    }
    let widths = param_bits(mode);
    let mut at = 0;
    for (p, &w) in prm.iter_mut().zip(widths) {
        let mut v = 0i16;
        for _ in 0..w {
            v = (v << 1) | i16::from(serial[at]);
            at += 1;
        }
        *p = v;
    }
    Ok(widths.len())
}

/// Codec parameters of `mode` ([`Mode::params`] of them; each is masked to its width) to
/// speech bits in class order, MSB first, the last octet zero-padded; returns the octets
/// written ([`Mode::octets`]).
pub fn pack(mode: Mode, prm: &[i16], out: &mut [u8]) -> Result<usize, AmrError> {
    let widths = param_bits(mode);
    if prm.len() < widths.len() {
        return Err(AmrError::Buffer {
            need: widths.len(),
            got: prm.len(),
        });
    }
    let octets = mode.octets();
    if out.len() < octets {
        return Err(AmrError::Buffer {
            need: octets,
            got: out.len(),
        });
    }
    let mut serial = [0u8; MAX_BITS];
    let mut at = 0;
    for (&p, &w) in prm.iter().zip(widths) {
        for k in (0..w).rev() {
            serial[at] = ((p >> k) & 1) as u8;
            at += 1;
        }
    }
    out[..octets].fill(0);
    for (i, &pos) in reorder_table(mode).iter().enumerate() {
        out[i / 8] |= serial[pos as usize] << (7 - i % 8);
    }
    Ok(octets)
}

/// The 39 bits of a SID frame (5 octets, MSB first) to its parameters. The parameters come in
/// transmission order without reordering, then the STI bit, then the mode indication, least
/// significant bit first (TS 26.101 §4.2.3).
pub fn unpack_sid(bits: &[u8]) -> Result<Sid, AmrError> {
    need(FT_SID, SID_BITS, bits.len())?;
    let mut sid = Sid::default();
    let mut at = 0;
    for (p, &w) in sid.params.iter_mut().zip(&t::BITNO_MRDTX) {
        let mut v = 0i16;
        for _ in 0..w {
            v = (v << 1) | i16::from(bit(bits, at));
            at += 1;
        }
        *p = v;
    }
    sid.update = bit(bits, SID_PARAM_BITS) == 1;
    sid.mode = (0..3).fold(0, |m, k| m | (bit(bits, SID_PARAM_BITS + 1 + k) << k));
    Ok(sid)
}

/// A SID frame's parameters to its 39 bits (5 octets, last one zero-padded); returns 5.
pub fn pack_sid(sid: &Sid, out: &mut [u8]) -> Result<usize, AmrError> {
    let octets = SID_BITS.div_ceil(8);
    if out.len() < octets {
        return Err(AmrError::Buffer {
            need: octets,
            got: out.len(),
        });
    }
    out[..octets].fill(0);
    let mut at = 0;
    let mut put = |out: &mut [u8], b: u8| {
        out[at / 8] |= (b & 1) << (7 - at % 8);
        at += 1;
    };
    for (&p, &w) in sid.params.iter().zip(&t::BITNO_MRDTX) {
        for k in (0..w).rev() {
            put(out, ((p >> k) & 1) as u8);
        }
    }
    put(out, u8::from(sid.update));
    for k in 0..3 {
        put(out, (sid.mode >> k) & 1);
    }
    Ok(octets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_tables_are_permutations() {
        for m in Mode::ALL {
            let order = reorder_table(m);
            assert_eq!(order.len(), m.bits(), "{m:?}");
            let mut seen = vec![false; m.bits()];
            for &p in order {
                assert!(!seen[p as usize], "{m:?} repeats {p}");
                seen[p as usize] = true;
            }
        }
    }

    #[test]
    fn pack_unpack_round_trip_every_mode() {
        for m in Mode::ALL {
            let widths = param_bits(m);
            let mut prm = [0i16; MAX_PARAMS];
            // A different pattern in every parameter, using every bit of its width.
            for (i, (p, &w)) in prm.iter_mut().zip(widths).enumerate() {
                *p = ((0x5a5a_u32.rotate_left(i as u32 * 3) as i32) & ((1 << w) - 1)) as i16;
            }
            let mut out = [0u8; 31];
            assert_eq!(pack(m, &prm, &mut out).unwrap(), m.octets());
            // Padding bits stay zero.
            let pad = m.octets() * 8 - m.bits();
            assert_eq!(out[m.octets() - 1] & ((1u16 << pad) - 1) as u8, 0);
            let mut back = [0i16; MAX_PARAMS];
            assert_eq!(unpack(m, &out, &mut back).unwrap(), widths.len());
            assert_eq!(back[..widths.len()], prm[..widths.len()], "{m:?}");
        }
    }

    #[test]
    fn class_a_starts_with_the_lsf_msbs() {
        // TS 26.101 table B.8: the first transmitted 12.2 bits are the MSBs of the LSF indices.
        let mut prm = [0i16; MAX_PARAMS];
        prm[0] = 0x40; // first LSF index (7 bits): only its MSB set
        let mut out = [0u8; 31];
        pack(Mode::MR122, &prm, &mut out).unwrap();
        assert_eq!(out[0], 0x80);
    }

    #[test]
    fn short_input_is_an_error() {
        let mut prm = [0i16; MAX_PARAMS];
        assert_eq!(
            unpack(Mode::MR122, &[0; 30], &mut prm),
            Err(AmrError::Short {
                frame_type: 7,
                need: 31,
                got: 30
            })
        );
        assert!(unpack_sid(&[0; 4]).is_err());
    }

    #[test]
    fn sid_round_trip() {
        let sid = Sid {
            params: [5, 200, 300, 511, 33],
            update: true,
            mode: 6,
        };
        let mut out = [0u8; 5];
        assert_eq!(pack_sid(&sid, &mut out).unwrap(), 5);
        assert_eq!(unpack_sid(&out).unwrap(), sid);
        assert_eq!(out[4] & 1, 0, "the 40th bit is padding");
    }
}
