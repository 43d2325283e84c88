//! Gain quantisation (TS 26.090 §5.8): the fixed-codebook gain is predicted from the past
//! quantised energies (4th-order MA in dB), then coded as a correction factor γ together with
//! (or after) the pitch gain: scalar for 12.2 and 7.95, joint vector otherwise, joint over two
//! subframes for 4.75. The predictor ([`crate::dsp::gain`]) is the decoder's own, so both
//! sides keep predicting the same.

use crate::tables::gains as t;
use crate::Mode;

use crate::dsp::gain::innovation_db;
pub use crate::dsp::gain::GainPredictor;

/// Correlations one subframe's gain search needs: x target, y1 filtered adaptive vector,
/// y2 filtered code vector.
#[derive(Debug, Clone, Copy, Default)]
pub struct Corr {
    /// ⟨y1,y1⟩.
    pub yy1: f32,
    /// ⟨x,y1⟩.
    pub xy1: f32,
    /// ⟨y2,y2⟩.
    pub yy2: f32,
    /// ⟨x,y2⟩.
    pub xy2: f32,
    /// ⟨y1,y2⟩.
    pub y1y2: f32,
}

impl Corr {
    /// From the vectors.
    pub fn new(x: &[f32; 40], y1: &[f32; 40], y2: &[f32; 40]) -> Corr {
        let dot =
            |a: &[f32; 40], b: &[f32; 40]| a.iter().zip(b.iter()).map(|(p, q)| p * q).sum::<f32>();
        Corr {
            yy1: dot(y1, y1),
            xy1: dot(x, y1),
            yy2: dot(y2, y2),
            xy2: dot(x, y2),
            y1y2: dot(y1, y2),
        }
    }

    /// Weighted error (minus the constant ⟨x,x⟩) of gains (gp, gc).
    pub fn err(&self, gp: f32, gc: f32) -> f32 {
        gp * gp * self.yy1 - 2.0 * gp * self.xy1 + gc * gc * self.yy2 - 2.0 * gc * self.xy2
            + 2.0 * gp * gc * self.y1y2
    }
}

/// Nearest pitch gain not above `gp_limit` of the 4-bit scalar table (12.2 drops the two low bits, as its decoder
/// does): (index, gain).
pub fn quant_pitch(mode: Mode, gp: f32, gp_limit: f32) -> (u16, f32) {
    let mut best = (0u16, 0.0f32, f32::MAX);
    for (i, &q) in t::QUA_GAIN_PITCH.iter().enumerate() {
        let q = if mode == Mode::MR122 { q & !3 } else { q };
        let g = f32::from(q) / 16384.0;
        if g > gp_limit {
            continue;
        }
        let d = (g - gp).abs();
        if d < best.2 {
            best = (i as u16, g, d);
        }
    }
    (best.0, best.1)
}

/// Scalar code gain of 12.2 / 7.95: the correction factor nearest (in log) to gc / g'c.
/// Returns (index, quantised gc) and updates the predictor.
pub fn quant_code(pred: &mut GainPredictor, gc: f32, gc0: f32) -> (u16, f32) {
    let target = (gc.max(1e-6) / gc0.max(1e-12)).ln();
    let mut best = (0usize, f32::MAX);
    for (i, row) in t::QUA_GAIN_CODE.chunks_exact(3).enumerate().take(32) {
        let g = (f32::from(row[0]) / 2048.0).ln();
        let d = (g - target).abs();
        if d < best.1 {
            best = (i, d);
        }
    }
    let row = &t::QUA_GAIN_CODE[best.0 * 3..best.0 * 3 + 3];
    pred.update(row[1], row[2]);
    (best.0 as u16, f32::from(row[0]) / 2048.0 * gc0)
}

/// Joint (gp, γ) vector quantisation of 5.15, 5.90 (6-bit table) and 6.70, 7.40, 10.2 (7-bit):
/// the entry minimising the weighted error. Returns (index, gp, gc), updates the predictor.
pub fn quant_joint(
    mode: Mode,
    pred: &mut GainPredictor,
    c: &Corr,
    gc0: f32,
    gp_limit: f32,
) -> (u16, f32, f32) {
    let table: &[i16] = match mode {
        Mode::MR67 | Mode::MR74 | Mode::MR102 => &t::TABLE_GAIN_HIGHRATES,
        _ => &t::TABLE_GAIN_LOWRATES,
    };
    let mut best = (0usize, f32::MAX);
    for (i, row) in table.chunks_exact(4).enumerate() {
        let gp = f32::from(row[0]) / 16384.0;
        if gp > gp_limit {
            continue;
        }
        let gc = f32::from(row[1]) / 4096.0 * gc0;
        let e = c.err(gp, gc);
        if e < best.1 {
            best = (i, e);
        }
    }
    let row = &table[best.0 * 4..best.0 * 4 + 4];
    pred.update(row[2], row[3]);
    (
        best.0 as u16,
        f32::from(row[0]) / 16384.0,
        f32::from(row[1]) / 4096.0 * gc0,
    )
}

/// 4.75's joint quantisation of two subframes' gains. `gc0b` of the second subframe depends on
/// the first one's quantised energy, so it is predicted per candidate. Returns (index,
/// [gp0, gc0, gp1, gc1]) and updates the predictor with both subframes.
pub fn quant_475(
    pred: &mut GainPredictor,
    c0: &Corr,
    code0: &[f32; 40],
    c1: &Corr,
    code1: &[f32; 40],
    gp_limit: f32,
) -> (u16, [f32; 4]) {
    let g0 = pred.predict(Mode::MR475, code0);
    let ei1 = innovation_db(code1);
    let mut best = (0usize, f32::MAX, [0.0f32; 4]);
    for (i, row) in t::TABLE_GAIN_MR475.chunks_exact(4).enumerate() {
        let gp0 = f32::from(row[0]) / 16384.0;
        let gm0 = f32::from(row[1]) / 4096.0;
        let gp1 = f32::from(row[2]) / 16384.0;
        let gm1 = f32::from(row[3]) / 4096.0;
        if gp0 > gp_limit || gp1 > gp_limit {
            continue;
        }
        let mut p2 = pred.clone();
        p2.update_gamma(gm0);
        let g1 = p2.predict_db(Mode::MR475, ei1);
        let e = c0.err(gp0, gm0 * g0) + c1.err(gp1, gm1 * g1);
        if e < best.1 {
            best = (i, e, [gp0, gm0 * g0, gp1, gm1 * g1]);
        }
    }
    let row = &t::TABLE_GAIN_MR475[best.0 * 4..best.0 * 4 + 4];
    pred.update_gamma(f32::from(row[1]) / 4096.0);
    pred.update_gamma(f32::from(row[3]) / 4096.0);
    (best.0 as u16, best.2)
}
