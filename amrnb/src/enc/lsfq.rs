//! LSF quantisation (TS 26.090 §5.2.5): split-matrix VQ of two LSF sets for 12.2 and split-VQ
//! (3 + 3 + 4) of one set for the other modes, both on the residual after MA prediction.
//! The search minimises the LSF-weighted squared error; the quantised LSFs come out exactly as
//! the decoder rebuilds them (same tables, prediction and reordering).

use crate::dsp::lsfq::{codebooks3, LsfPredictor, BOOKS5};
use crate::{Mode, LPC_ORDER as M};

/// The quantiser's state: the decoder's own MA predictor, fed the same indices.
#[derive(Debug, Clone, Default)]
pub struct LsfQuant {
    pred: LsfPredictor,
}

/// LSF weights of §5.2.5: more weight where neighbours are close (formants).
fn weights(lsf: &[f32; M]) -> [f32; M] {
    let mut w = [0.0f32; M];
    for i in 0..M {
        let lo = if i == 0 { 0.0 } else { lsf[i - 1] };
        let hi = if i == M - 1 { 16384.0 } else { lsf[i + 1] };
        // Distance in Hz.
        let d = (hi - lo) * 4000.0 / 16384.0;
        w[i] = if d < 450.0 {
            3.347 - 1.547 / 450.0 * d
        } else {
            1.8 * (450.0 - d) / (4000.0 - 450.0) + 1.8
        };
    }
    w
}

/// Best entry of a codebook of `dim`-wide rows for `target` under `w`, looking at rows
/// `step`-apart (the 4.75/5.15 modes use every other row of one table).
fn search(cb: &[i16], dim: usize, step: usize, target: &[f32], w: &[f32]) -> usize {
    let mut best = 0;
    let mut best_d = f32::MAX;
    for (idx, row) in cb.chunks_exact(dim).enumerate().step_by(step) {
        let mut d = 0.0;
        for k in 0..dim {
            let e = (target[k] - f32::from(row[k])) * w[k];
            d += e * e;
        }
        if d < best_d {
            best_d = d;
            best = idx;
        }
    }
    best
}

/// Matrix search of 12.2: a row holds two LSFs of each set; `sign` allows the negated row.
fn search_pair(
    cb: &[i16],
    t1: &[f32],
    t2: &[f32],
    w1: &[f32],
    w2: &[f32],
    sign: bool,
) -> (usize, bool) {
    let mut best = (0, false);
    let mut best_d = f32::MAX;
    for (idx, row) in cb.chunks_exact(4).enumerate() {
        for neg in [false, true] {
            if neg && !sign {
                continue;
            }
            let s = if neg { -1.0 } else { 1.0 };
            let e = [
                (t1[0] - s * f32::from(row[0])) * w1[0],
                (t1[1] - s * f32::from(row[1])) * w1[1],
                (t2[0] - s * f32::from(row[2])) * w2[0],
                (t2[1] - s * f32::from(row[3])) * w2[1],
            ];
            let d: f32 = e.iter().map(|x| x * x).sum();
            if d < best_d {
                best_d = d;
                best = (idx, neg);
            }
        }
    }
    best
}

impl LsfQuant {
    /// Quantises the end-of-frame LSFs of a non-12.2 mode: three indices into `prm`, the
    /// quantised LSFs into `q`.
    pub fn quantise3(&mut self, mode: Mode, lsf: &[f32; M], prm: &mut [u16], q: &mut [f32; M]) {
        let w = weights(lsf);
        let pred = self.pred.prediction3();
        let r: [f32; M] = core::array::from_fn(|i| lsf[i] - pred[i]);
        let (cb1, cb2, cb3, half) = codebooks3(mode);
        let i1 = search(cb1, 3, 1, &r[0..3], &w[0..3]);
        let i2 = search(cb2, 3, if half { 2 } else { 1 }, &r[3..6], &w[3..6]);
        let i3 = search(cb3, 4, 1, &r[6..10], &w[6..10]);
        let idx = [i1, if half { i2 / 2 } else { i2 }, i3];
        for (p, &i) in prm.iter_mut().zip(&idx) {
            *p = i as u16;
        }
        *q = self.pred.dequant3(mode, idx);
    }

    /// Quantises the two LSF sets of 12.2 (mid-frame and end-of-frame): five indices into
    /// `prm`, the quantised sets into `q1`, `q2`.
    pub fn quantise5(
        &mut self,
        lsf1: &[f32; M],
        lsf2: &[f32; M],
        prm: &mut [u16],
        q1: &mut [f32; M],
        q2: &mut [f32; M],
    ) {
        let w1 = weights(lsf1);
        let w2 = weights(lsf2);
        let pred = self.pred.prediction5();
        let r1: [f32; M] = core::array::from_fn(|i| lsf1[i] - pred[i]);
        let r2: [f32; M] = core::array::from_fn(|i| lsf2[i] - pred[i]);
        let mut idx = [0usize; 5];
        for (k, cb) in BOOKS5.iter().enumerate() {
            let s = 2 * k;
            let (i, neg) = search_pair(
                cb,
                &r1[s..s + 2],
                &r2[s..s + 2],
                &w1[s..s + 2],
                &w2[s..s + 2],
                k == 2,
            );
            idx[k] = if k == 2 { i * 2 + usize::from(neg) } else { i };
            prm[k] = idx[k] as u16;
        }
        (*q1, *q2) = self.pred.dequant5(idx);
    }
}

/// Quantises the comfort-noise LSFs of a SID frame (TS 26.092 §5.2): the reference residual
/// vector (of eight) nearest the LSFs minus the mean, then the 3-split VQ of what is left
/// (8, 9 and 9 bits, the full tables), no MA prediction. Returns the four SID parameters and
/// the LSFs the decoder rebuilds from them.
pub fn quantise_sid(lsf: &[f32; M]) -> ([u16; 4], [f32; M]) {
    use crate::tables::lsf as t;
    let w = weights(lsf);
    let mut best = (0usize, f32::MAX);
    for k in 0..8 {
        let d: f32 = (0..M)
            .map(|i| {
                let e =
                    lsf[i] - f32::from(t::MEAN_LSF_3[i]) - f32::from(t::PAST_RQ_INIT[k * M + i]);
                e * e
            })
            .sum();
        if d < best.1 {
            best = (k, d);
        }
    }
    let r: [f32; M] = core::array::from_fn(|i| {
        lsf[i] - f32::from(t::MEAN_LSF_3[i]) - f32::from(t::PAST_RQ_INIT[best.0 * M + i])
    });
    let i1 = search(&t::DICO1_LSF_3, 3, 1, &r[0..3], &w[0..3]);
    let i2 = search(&t::DICO2_LSF_3, 3, 1, &r[3..6], &w[3..6]);
    let i3 = search(&t::DICO3_LSF_3, 4, 1, &r[6..10], &w[6..10]);
    let q = crate::dsp::lsfq::sid_lsf(best.0, [i1, i2, i3]);
    ([best.0 as u16, i1 as u16, i2 as u16, i3 as u16], q)
}
