//! Quantised LSFs rebuilt from codebook indices (TS 26.090 §5.2.3, §5.2.5, §6.1 step 1), one
//! copy for both directions: the encoder rebuilds what it sent exactly as the decoder does, so
//! their MA predictor memories stay equal.
//!
//! 12.2 codes two LSF sets per frame with a split-matrix VQ of the residual after a fixed
//! first-order prediction; the other modes code one set with a 3-split VQ after a per-LSF
//! prediction. The indices are the codec parameters as transmitted.

use super::lsp::reorder_lsf;
use crate::tables::lsf as t;
use crate::{Mode, LPC_ORDER as M};

/// Smallest distance kept between neighbouring LSFs after dequantisation (50 Hz, §6.1).
pub const LSF_GAP: f32 = 205.0;
/// MA prediction factor of the 12.2 LSF quantiser.
pub const PRED_MR122: f32 = 0.65;

/// The three split codebooks of a non-12.2 mode and whether the second one is indexed in
/// steps of two rows (4.75 and 5.15 use every other row of the 9-bit table).
pub fn codebooks3(mode: Mode) -> (&'static [i16], &'static [i16], &'static [i16], bool) {
    match mode {
        Mode::MR475 | Mode::MR515 => (&t::DICO1_LSF_3, &t::DICO2_LSF_3, &t::MR515_3_LSF, true),
        Mode::MR795 => (&t::MR795_1_LSF, &t::DICO2_LSF_3, &t::DICO3_LSF_3, false),
        _ => (&t::DICO1_LSF_3, &t::DICO2_LSF_3, &t::DICO3_LSF_3, false),
    }
}

/// The five split-matrix codebooks of 12.2 (rows of four: two LSFs of each set).
pub const BOOKS5: [&[i16]; 5] = [
    &t::DICO1_LSF_5,
    &t::DICO2_LSF_5,
    &t::DICO3_LSF_5,
    &t::DICO4_LSF_5,
    &t::DICO5_LSF_5,
];

/// Row `index` (clamped to the table) of a codebook of `dim`-wide rows.
fn row(cb: &[i16], dim: usize, index: usize) -> &[i16] {
    let i = index.min(cb.len() / dim - 1) * dim;
    &cb[i..i + dim]
}

/// The MA predictor memory of the LSF quantiser: the previous quantised residual.
#[derive(Debug, Clone, Default)]
pub struct LsfPredictor {
    /// Last quantised residual (of the end-of-frame set for 12.2).
    pub past_r: [f32; M],
}

impl LsfPredictor {
    /// Prediction of the non-12.2 modes: mean + per-LSF factor × past residual.
    pub fn prediction3(&self) -> [f32; M] {
        core::array::from_fn(|i| {
            f32::from(t::MEAN_LSF_3[i]) + self.past_r[i] * f32::from(t::PRED_FAC_3[i]) / 32768.0
        })
    }

    /// Prediction of 12.2: mean + 0.65 × past residual.
    pub fn prediction5(&self) -> [f32; M] {
        core::array::from_fn(|i| f32::from(t::MEAN_LSF_5[i]) + self.past_r[i] * PRED_MR122)
    }

    /// The end-of-frame LSFs of a non-12.2 mode from its three indices; the memory moves on.
    pub fn dequant3(&mut self, mode: Mode, idx: [usize; 3]) -> [f32; M] {
        let (cb1, cb2, cb3, half) = codebooks3(mode);
        let i2 = if half { idx[1] << 1 } else { idx[1] };
        let mut r = [0f32; M];
        for (d, &v) in r[0..3].iter_mut().zip(row(cb1, 3, idx[0])) {
            *d = f32::from(v);
        }
        for (d, &v) in r[3..6].iter_mut().zip(row(cb2, 3, i2)) {
            *d = f32::from(v);
        }
        for (d, &v) in r[6..10].iter_mut().zip(row(cb3, 4, idx[2])) {
            *d = f32::from(v);
        }
        let pred = self.prediction3();
        let mut lsf: [f32; M] = core::array::from_fn(|i| r[i] + pred[i]);
        self.past_r = r;
        reorder_lsf(&mut lsf, LSF_GAP);
        lsf
    }

    /// The mid-frame and end-of-frame LSFs of 12.2 from its five indices (the third carries
    /// a sign in its LSB); the memory moves on.
    pub fn dequant5(&mut self, idx: [usize; 5]) -> ([f32; M], [f32; M]) {
        let mut r1 = [0f32; M];
        let mut r2 = [0f32; M];
        for (k, cb) in BOOKS5.iter().enumerate() {
            let (index, sign) = if k == 2 {
                (idx[k] >> 1, if idx[k] & 1 == 1 { -1.0 } else { 1.0 })
            } else {
                (idx[k], 1.0)
            };
            let e = row(cb, 4, index);
            r1[2 * k] = sign * f32::from(e[0]);
            r1[2 * k + 1] = sign * f32::from(e[1]);
            r2[2 * k] = sign * f32::from(e[2]);
            r2[2 * k + 1] = sign * f32::from(e[3]);
        }
        let pred = self.prediction5();
        let mut l1: [f32; M] = core::array::from_fn(|i| r1[i] + pred[i]);
        let mut l2: [f32; M] = core::array::from_fn(|i| r2[i] + pred[i]);
        self.past_r = r2;
        reorder_lsf(&mut l1, LSF_GAP);
        reorder_lsf(&mut l2, LSF_GAP);
        (l1, l2)
    }
}

/// LSFs of a SID frame (TS 26.092 §5.2): the 3-split VQ of a non-12.2 mode (8, 9, 9 bits)
/// around the mean plus one of eight reference residual vectors, no MA prediction.
pub fn sid_lsf(ref_index: usize, idx: [usize; 3]) -> [f32; M] {
    let base = ref_index.min(7) * M;
    let mut lsf = [0f32; M];
    for (d, &v) in lsf[0..3].iter_mut().zip(row(&t::DICO1_LSF_3, 3, idx[0])) {
        *d = f32::from(v);
    }
    for (d, &v) in lsf[3..6].iter_mut().zip(row(&t::DICO2_LSF_3, 3, idx[1])) {
        *d = f32::from(v);
    }
    for (d, &v) in lsf[6..10].iter_mut().zip(row(&t::DICO3_LSF_3, 4, idx[2])) {
        *d = f32::from(v);
    }
    for (i, l) in lsf.iter_mut().enumerate() {
        *l += f32::from(t::MEAN_LSF_3[i]) + f32::from(t::PAST_RQ_INIT[base + i]);
    }
    reorder_lsf(&mut lsf, LSF_GAP);
    lsf
}
