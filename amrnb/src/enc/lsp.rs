//! LSP helpers of the encoder (TS 26.090 §5.2.4, §5.2.6): LSP → LPC and the LSF ⇄ LSP maps
//! in the codebooks' scale.

use super::lpc::M;

/// LSF scale of the codebooks: 16384 is half the sampling rate (4 kHz).
pub const LSF_HALF: f64 = 16384.0;

/// LSP (cosine domain, decreasing) → A(z), `a[0] = 1`.
pub fn lsp_to_az(lsp: &[f64; M]) -> [f64; M + 1] {
    fn poly(q: impl Iterator<Item = f64>) -> [f64; 6] {
        let mut f = [0.0f64; 6];
        f[0] = 1.0;
        for (i, x) in q.enumerate() {
            // Multiply by (1 − 2x z⁻¹ + z⁻²).
            let n = 2 * (i + 1);
            for k in (1..=n.min(5)).rev() {
                let mut v = f[k] - 2.0 * x * f[k - 1];
                if k >= 2 {
                    v += f[k - 2];
                }
                f[k] = v;
            }
        }
        f
    }
    let f1 = poly(lsp.iter().step_by(2).copied());
    let f2 = poly(lsp.iter().skip(1).step_by(2).copied());
    let mut a = [0.0f64; M + 1];
    a[0] = 1.0;
    for i in 1..=5 {
        let p = f1[i] + f1[i - 1];
        let q = f2[i] - f2[i - 1];
        a[i] = 0.5 * (p + q);
        a[M + 1 - i] = 0.5 * (p - q);
    }
    a
}

/// LSP → LSF in the codebook scale.
pub fn lsp_to_lsf(lsp: &[f64; M], lsf: &mut [f64; M]) {
    for (f, &q) in lsf.iter_mut().zip(lsp.iter()) {
        *f = q.clamp(-1.0, 1.0).acos() / std::f64::consts::PI * LSF_HALF;
    }
}

/// LSF in the codebook scale → LSP.
pub fn lsf_to_lsp(lsf: &[f64; M], lsp: &mut [f64; M]) {
    for (q, &f) in lsp.iter_mut().zip(lsf.iter()) {
        *q = (f / LSF_HALF * std::f64::consts::PI).cos();
    }
}

/// The decoder's LSF reordering (§5.2.5 "ensure a minimum distance"): gap 205 ≈ 50 Hz.
pub fn reorder_lsf(lsf: &mut [f64; M]) {
    let mut min = 205.0;
    for f in lsf.iter_mut() {
        if *f < min {
            *f = min;
        }
        min = *f + 205.0;
    }
}

/// Per-subframe A(z) from two LSP sets: `w` of the new set.
pub fn interp_az(old: &[f64; M], new: &[f64; M], w: f64) -> [f32; M + 1] {
    let mut l = [0.0f64; M];
    for ((o, &a), &b) in l.iter_mut().zip(old.iter()).zip(new.iter()) {
        *o = (1.0 - w) * a + w * b;
    }
    let a = lsp_to_az(&l);
    let mut out = [0.0f32; M + 1];
    for (o, &c) in out.iter_mut().zip(a.iter()) {
        *o = c as f32;
    }
    out
}
