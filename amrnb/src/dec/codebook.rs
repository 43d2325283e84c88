//! Algebraic (fixed) codebook vectors from their indices, per mode (TS 26.090 §5.7, tables
//! 7-9 of pulse positions). Pulses have amplitude ±1; every index is masked to its width so
//! garbage never indexes out of range.

use crate::tables::algebraic::{DGRAY, START_POS_2_9};
use crate::SUBFRAME_SAMPLES as L;

fn sign(bit: i16) -> f32 {
    if bit & 1 == 1 {
        1.0
    } else {
        -1.0
    }
}

fn gray(i: i16) -> usize {
    DGRAY[(i & 7) as usize] as usize
}

/// 4.75 and 5.15: 2 pulses, 7-bit positions (3 + 3 bits within a subframe-dependent track
/// pair chosen by the 7th bit), 2 sign bits.
pub fn pulses_2_9(subframe: usize, index: i16, signs: i16, code: &mut [f32; L]) {
    code.fill(0.0);
    let set = if index & 64 != 0 { 8 } else { 0 };
    let k = (subframe & 3) * 2 + set;
    let p0 = (index & 7) as usize * 5 + START_POS_2_9[k] as usize;
    let p1 = ((index >> 3) & 7) as usize * 5 + START_POS_2_9[k + 1] as usize;
    for (j, p) in [p0, p1].into_iter().enumerate() {
        if p < L {
            code[p] = sign(signs >> j);
        }
    }
}

/// 5.9: 2 pulses in 9 bits (pulse 1 on tracks 1/3, pulse 2 on tracks 0/1/2/4), 2 sign bits.
pub fn pulses_2_11(index: i16, signs: i16, code: &mut [f32; L]) {
    code.fill(0.0);
    let j = (index & 1) as usize;
    let p0 = ((index >> 1) & 7) as usize * 5 + j * 2 + 1;
    let track = ((index >> 4) & 3) as usize;
    let base = ((index >> 6) & 7) as usize * 5;
    let p1 = base + if track == 3 { 4 } else { track };
    code[p0] = sign(signs);
    code[p1] = sign(signs >> 1);
}

/// 6.7: 3 pulses in 11 bits (tracks 0, 1/3, 2/4), 3 sign bits.
pub fn pulses_3_14(index: i16, signs: i16, code: &mut [f32; L]) {
    code.fill(0.0);
    let p0 = (index & 7) as usize * 5;
    let p1 = ((index >> 4) & 7) as usize * 5 + ((index >> 3) & 1) as usize * 2 + 1;
    let p2 = ((index >> 8) & 7) as usize * 5 + ((index >> 7) & 1) as usize * 2 + 2;
    for (j, p) in [p0, p1, p2].into_iter().enumerate() {
        code[p] = sign(signs >> j);
    }
}

/// 7.4 and 7.95: 4 pulses in 13 Gray-coded bits (tracks 0, 1, 2, 3/4), 4 sign bits.
pub fn pulses_4_17(index: i16, signs: i16, code: &mut [f32; L]) {
    code.fill(0.0);
    let p0 = gray(index) * 5;
    let p1 = gray(index >> 3) * 5 + 1;
    let p2 = gray(index >> 6) * 5 + 2;
    let p3 = gray(index >> 10) * 5 + 3 + ((index >> 9) & 1) as usize;
    for (j, p) in [p0, p1, p2, p3].into_iter().enumerate() {
        code[p] = sign(signs >> j);
    }
}

/// Adds a pulse pair of one track: the first pulse carries the sign, the second has the same
/// sign unless it comes earlier in the subframe (TS 26.090 §5.7.1 sign rule).
fn pair(code: &mut [f32; L], p1: usize, p2: usize, s: f32) {
    if p1 < L {
        code[p1] += s;
    }
    if p2 < L {
        code[p2] += if p2 < p1 { -s } else { s };
    }
}

/// Three positions (each 0..4 within the track) from a 10-bit joint index of 10.2: 125
/// combinations in 7 bits (5×5×5) plus 3 separate LSBs.
fn decompress10(value: i16, out: [usize; 3], pos: &mut [usize; 8]) {
    let msbs = ((value >> 3) & 127).min(124) as usize;
    let lsbs = (value & 7) as usize;
    let ia = msbs % 25;
    pos[out[0]] = 2 * (ia % 5) + (lsbs & 1);
    pos[out[1]] = 2 * (ia / 5) + ((lsbs >> 1) & 1);
    pos[out[2]] = (lsbs >> 2) + 2 * (msbs / 25);
}

/// 10.2: 8 pulses, two per track of 4 tracks; 4 sign bits and three jointly coded position
/// words of 10, 10 and 7 bits (TS 26.090 §5.7.1, 31-bit codebook).
pub fn pulses_8(prm: &[i16], code: &mut [f32; L]) {
    code.fill(0.0);
    let mut pos = [0usize; 8];
    decompress10(prm[4], [0, 4, 1], &mut pos);
    decompress10(prm[5], [2, 6, 5], &mut pos);
    // Two positions (5×5 = 25 combinations in 5 bits) plus 2 LSBs in the 7-bit word.
    let msbs = ((prm[6] >> 2) & 31) as usize;
    let lsbs = (prm[6] & 3) as usize;
    let m = (msbs * 25 + 12) >> 5;
    let mut ib = m % 5;
    if (m / 5) & 1 == 1 {
        ib = 4 - ib;
    }
    pos[3] = 2 * ib + (lsbs & 1);
    pos[7] = 2 * (m / 5) + (lsbs >> 1);
    for j in 0..4 {
        let s = if prm[j] & 1 == 0 { 1.0 } else { -1.0 };
        pair(code, pos[j] * 4 + j, pos[j + 4] * 4 + j, s);
    }
}

/// 12.2: 10 pulses, two per track of 5 tracks; per track a 4-bit word (sign + Gray-coded
/// position of the first pulse) and a 3-bit word (position of the second).
pub fn pulses_10(prm: &[i16], code: &mut [f32; L]) {
    code.fill(0.0);
    for j in 0..5 {
        let p1 = gray(prm[j]) * 5 + j;
        let s = if (prm[j] >> 3) & 1 == 0 { 1.0 } else { -1.0 };
        let p2 = gray(prm[j + 5]) * 5 + j;
        pair(code, p1, p2, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulses(code: &[f32; L]) -> Vec<(usize, f32)> {
        code.iter()
            .enumerate()
            .filter(|(_, &v)| v != 0.0)
            .map(|(i, &v)| (i, v))
            .collect()
    }

    #[test]
    fn four_pulse_tracks() {
        let mut c = [0f32; L];
        // All positions index 0 (Gray 0), pulse 4 on track 4, signs +,-,+,-.
        pulses_4_17(1 << 9, 0b0101, &mut c);
        assert_eq!(pulses(&c), vec![(0, 1.0), (1, -1.0), (2, 1.0), (4, -1.0)]);
    }

    #[test]
    fn every_index_stays_in_the_subframe() {
        let mut c = [0f32; L];
        for index in 0..1 << 13 {
            pulses_4_17(index, 15, &mut c);
            pulses_3_14(index & 0x7ff, 7, &mut c);
            pulses_2_11(index & 0x1ff, 3, &mut c);
            for sf in 0..4 {
                pulses_2_9(sf, index & 0x7f, 3, &mut c);
            }
            pulses_8(
                &[
                    0,
                    1,
                    0,
                    1,
                    index & 0x3ff,
                    (index >> 3) & 0x3ff,
                    index & 0x7f,
                ],
                &mut c,
            );
            let w = [index & 15, 7, 3, 15, 0, index & 7, 1, 2, 3, 4];
            pulses_10(&w, &mut c);
        }
    }

    #[test]
    fn twelve_two_pulse_pairs_follow_the_sign_rule() {
        let mut c = [0f32; L];
        pulses_10(&[0, 1, 2, 3, 4, 5, 6, 7, 0, 1], &mut c);
        // Second pulses before their first one (tracks 3 and 4) take the opposite sign.
        let want = [
            (0, 1.0),
            (3, -1.0),
            (6, 1.0),
            (9, -1.0),
            (13, 1.0),
            (17, 1.0),
            (21, 1.0),
            (29, 1.0),
            (30, 1.0),
            (37, 1.0),
        ];
        assert_eq!(pulses(&c), want);
    }
}
