//! LSF quantisation (TS 26.090 §5.2.5): split-matrix VQ of two LSF sets for 12.2 and split-VQ
//! (3 + 3 + 4) of one set for the other modes, both on the residual after MA prediction.
//! The search minimises the LSF-weighted squared error; the quantised LSFs come out exactly as
//! the decoder rebuilds them (same tables, prediction and reordering).

use crate::dsp::lsp::reorder_lsf;
use crate::tables::lsf as t;
use crate::{Mode, LPC_ORDER as M};

/// Smallest LSF distance the decoder keeps (§5.2.5), about 50 Hz.
const LSF_GAP: f32 = 205.0;

/// Prediction memory shared with the decoder: the previous quantised residual.
#[derive(Debug, Clone, Default)]
pub struct LsfQuant {
    past_rq: [f32; M],
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
        let mut r = [0.0f32; M];
        let mut pred = [0.0f32; M];
        for i in 0..M {
            pred[i] = f32::from(t::MEAN_LSF_3[i])
                + self.past_rq[i] * f32::from(t::PRED_FAC_3[i]) / 32768.0;
            r[i] = lsf[i] - pred[i];
        }
        let (cb1, cb3): (&[i16], &[i16]) = match mode {
            Mode::MR475 | Mode::MR515 => (&t::DICO1_LSF_3, &t::MR515_3_LSF),
            Mode::MR795 => (&t::MR795_1_LSF, &t::DICO3_LSF_3),
            _ => (&t::DICO1_LSF_3, &t::DICO3_LSF_3),
        };
        let half = matches!(mode, Mode::MR475 | Mode::MR515);
        let i1 = search(cb1, 3, 1, &r[0..3], &w[0..3]);
        let i2 = search(
            &t::DICO2_LSF_3,
            3,
            if half { 2 } else { 1 },
            &r[3..6],
            &w[3..6],
        );
        let i3 = search(cb3, 4, 1, &r[6..10], &w[6..10]);
        prm[0] = i1 as u16;
        prm[1] = if half { (i2 / 2) as u16 } else { i2 as u16 };
        prm[2] = i3 as u16;
        let mut rq = [0.0f32; M];
        for k in 0..3 {
            rq[k] = f32::from(cb1[i1 * 3 + k]);
            rq[3 + k] = f32::from(t::DICO2_LSF_3[i2 * 3 + k]);
        }
        for k in 0..4 {
            rq[6 + k] = f32::from(cb3[i3 * 4 + k]);
        }
        for i in 0..M {
            q[i] = rq[i] + pred[i];
        }
        self.past_rq = rq;
        reorder_lsf(q, LSF_GAP);
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
        const PRED: f32 = 0.65;
        let w1 = weights(lsf1);
        let w2 = weights(lsf2);
        let mut pred = [0.0f32; M];
        let mut r1 = [0.0f32; M];
        let mut r2 = [0.0f32; M];
        for i in 0..M {
            pred[i] = f32::from(t::MEAN_LSF_5[i]) + self.past_rq[i] * PRED;
            r1[i] = lsf1[i] - pred[i];
            r2[i] = lsf2[i] - pred[i];
        }
        let books: [&[i16]; 5] = [
            &t::DICO1_LSF_5,
            &t::DICO2_LSF_5,
            &t::DICO3_LSF_5,
            &t::DICO4_LSF_5,
            &t::DICO5_LSF_5,
        ];
        let mut rq1 = [0.0f32; M];
        let mut rq2 = [0.0f32; M];
        for (k, cb) in books.iter().enumerate() {
            let s = 2 * k;
            let (idx, neg) = search_pair(
                cb,
                &r1[s..s + 2],
                &r2[s..s + 2],
                &w1[s..s + 2],
                &w2[s..s + 2],
                k == 2,
            );
            prm[k] = if k == 2 {
                (idx * 2 + usize::from(neg)) as u16
            } else {
                idx as u16
            };
            let sg = if neg { -1.0 } else { 1.0 };
            let row = &cb[idx * 4..idx * 4 + 4];
            rq1[s] = sg * f32::from(row[0]);
            rq1[s + 1] = sg * f32::from(row[1]);
            rq2[s] = sg * f32::from(row[2]);
            rq2[s + 1] = sg * f32::from(row[3]);
        }
        for i in 0..M {
            q1[i] = rq1[i] + pred[i];
            q2[i] = rq2[i] + pred[i];
        }
        self.past_rq = rq2;
        reorder_lsf(q1, LSF_GAP);
        reorder_lsf(q2, LSF_GAP);
    }
}
