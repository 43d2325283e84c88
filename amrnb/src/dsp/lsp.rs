//! LSF ⇄ LSP ⇄ LPC conversions and LSP interpolation (TS 26.090 §5.2.3, §5.2.4, §5.2.6).

use super::Lpc;
use crate::LPC_ORDER as M;

/// LSF value (Q15 normalised, 16384.0 = 4 kHz) of half the sampling rate.
pub const LSF_NYQUIST: f32 = 16384.0;

/// LSFs (table unit, see [`crate::dsp`]) to LSPs: `q_i = cos(ω_i)`.
pub fn lsf_to_lsp(lsf: &[f32; M], lsp: &mut [f32; M]) {
    for (q, &f) in lsp.iter_mut().zip(lsf) {
        *q = (f * core::f32::consts::PI / LSF_NYQUIST).cos();
    }
}

/// LSPs to LSFs (table unit).
pub fn lsp_to_lsf(lsp: &[f32; M], lsf: &mut [f32; M]) {
    for (f, &q) in lsf.iter_mut().zip(lsp) {
        *f = q.clamp(-1.0, 1.0).acos() * LSF_NYQUIST / core::f32::consts::PI;
    }
}

/// Coefficients of `Π (1 − 2 q z^-1 + z^-2)` over the 5 LSPs `lsp[start], lsp[start+2], …`.
fn lsp_poly(lsp: &[f32; M], start: usize) -> [f32; 6] {
    let mut f = [0f32; 6];
    f[0] = 1.0;
    f[1] = -2.0 * lsp[start];
    for i in 2..=5 {
        let b = -2.0 * lsp[start + 2 * (i - 1)];
        f[i] = b * f[i - 1] + 2.0 * f[i - 2];
        for j in (2..i).rev() {
            f[j] += b * f[j - 1] + f[j - 2];
        }
        f[1] += b;
    }
    f
}

/// LSPs to LP coefficients (TS 26.090 §5.2.4): `A(z) = (F1(z)(1 + z^-1) + F2(z)(1 − z^-1)) / 2`
/// where F1 has the odd-numbered and F2 the even-numbered LSPs as roots.
pub fn lsp_to_lpc(lsp: &[f32; M], a: &mut Lpc) {
    let f1 = lsp_poly(lsp, 0);
    let f2 = lsp_poly(lsp, 1);
    a[0] = 1.0;
    for i in 1..=5 {
        let s = f1[i] + f1[i - 1];
        let d = f2[i] - f2[i - 1];
        a[i] = 0.5 * (s + d);
        a[M + 1 - i] = 0.5 * (s - d);
    }
}

/// Chebyshev-series value of a symmetric 5th-order polynomial at `x = cos ω`.
fn chebyshev(x: f32, f: &[f32; 6]) -> f32 {
    let mut b2 = 1.0f32;
    let mut b1 = 2.0 * x + f[1];
    for &c in &f[2..5] {
        let b0 = 2.0 * x * b1 - b2 + c;
        b2 = b1;
        b1 = b0;
    }
    x * b1 - b2 + 0.5 * f[5]
}

/// Points of the root-search grid over 0..π (TS 26.090 §5.2.3 uses 60 intervals).
const GRID_POINTS: usize = 60;

/// LP coefficients to LSPs (TS 26.090 §5.2.3): roots of the symmetric and antisymmetric
/// polynomials, found on a cosine grid, refined by 4 bisections and a linear interpolation.
/// When fewer than 10 roots turn up (an unstable or odd filter) `lsp` keeps `old`; returns
/// whether all 10 were found.
pub fn lpc_to_lsp(a: &Lpc, old: &[f32; M], lsp: &mut [f32; M]) -> bool {
    let mut f1 = [0f32; 6];
    let mut f2 = [0f32; 6];
    f1[0] = 1.0;
    f2[0] = 1.0;
    for i in 0..5 {
        f1[i + 1] = a[i + 1] + a[M - i] - f1[i];
        f2[i + 1] = a[i + 1] - a[M - i] + f2[i];
    }
    let grid = |j: usize| (core::f32::consts::PI * j as f32 / GRID_POINTS as f32).cos();
    let mut found = 0;
    let mut use_f1 = true;
    let mut xlow = grid(0);
    let mut ylow = chebyshev(xlow, &f1);
    let mut j = 0;
    while found < M && j < GRID_POINTS {
        let poly = if use_f1 { &f1 } else { &f2 };
        j += 1;
        let xhigh = xlow;
        let yhigh = ylow;
        xlow = grid(j);
        ylow = chebyshev(xlow, poly);
        if ylow * yhigh <= 0.0 {
            let (mut lo, mut hi, mut ylo, mut yhi) = (xlow, xhigh, ylow, yhigh);
            for _ in 0..4 {
                let xmid = 0.5 * (lo + hi);
                let ymid = chebyshev(xmid, poly);
                if ylo * ymid <= 0.0 {
                    hi = xmid;
                    yhi = ymid;
                } else {
                    lo = xmid;
                    ylo = ymid;
                }
            }
            let dy = yhi - ylo;
            let x = if dy == 0.0 {
                lo
            } else {
                lo - ylo * (hi - lo) / dy
            };
            lsp[found] = x.clamp(-1.0, 1.0);
            found += 1;
            // Roots of the two polynomials interlace: the next one is searched on the other
            // polynomial, starting from this root.
            use_f1 = !use_f1;
            xlow = lsp[found - 1];
            ylow = chebyshev(xlow, if use_f1 { &f1 } else { &f2 });
        }
    }
    if found < M {
        *lsp = *old;
        return false;
    }
    true
}

/// `out = (1 − w)·from + w·to`, the per-subframe LSP interpolation of TS 26.090 §5.2.6.
pub fn interpolate(from: &[f32; M], to: &[f32; M], w: f32, out: &mut [f32; M]) {
    for ((o, &f), &t) in out.iter_mut().zip(from).zip(to) {
        *o = (1.0 - w) * f + w * t;
    }
}

/// Orders LSFs ascending with at least `min_dist` between neighbours and the first at least
/// `min_dist` (TS 26.090 §6.1 "Reorder_lsf": keeps the synthesis filter stable after
/// quantisation errors).
pub fn reorder_lsf(lsf: &mut [f32; M], min_dist: f32) {
    let mut lo = min_dist;
    for f in lsf.iter_mut() {
        if *f < lo {
            *f = lo;
        }
        lo = *f + min_dist;
    }
}

/// `a'[i] = a[i]·γ^i`: the bandwidth-expanded filter A(z/γ) of the weighting and post filters.
pub fn weight(a: &Lpc, gamma: f32, out: &mut Lpc) {
    let mut g = 1.0f32;
    for (o, &c) in out.iter_mut().zip(a) {
        *o = c * g;
        g *= gamma;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::lsf::{LSP_INIT_DATA, MEAN_LSF_3};

    #[test]
    fn lsf_lsp_round_trip() {
        let lsf: [f32; M] = core::array::from_fn(|i| f32::from(MEAN_LSF_3[i]));
        let mut lsp = [0f32; M];
        lsf_to_lsp(&lsf, &mut lsp);
        let mut back = [0f32; M];
        lsp_to_lsf(&lsp, &mut back);
        for (a, b) in lsf.iter().zip(&back) {
            assert!((a - b).abs() < 0.5, "{a} {b}");
        }
        // LSPs are cosines of ascending frequencies: the init table descends.
        assert!(LSP_INIT_DATA.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn lpc_lsp_round_trip() {
        let lsf: [f32; M] = core::array::from_fn(|i| f32::from(MEAN_LSF_3[i]));
        let mut lsp = [0f32; M];
        lsf_to_lsp(&lsf, &mut lsp);
        let mut a = [0f32; M + 1];
        lsp_to_lpc(&lsp, &mut a);
        assert_eq!(a[0], 1.0);
        let mut back = [0f32; M];
        assert!(lpc_to_lsp(&a, &[0.0; M], &mut back));
        for (x, y) in lsp.iter().zip(&back) {
            assert!((x - y).abs() < 2e-3, "{x} {y}");
        }
    }

    #[test]
    fn flat_filter_has_no_roots_and_keeps_old() {
        let mut a = [0f32; M + 1];
        a[0] = 1.0;
        a[1] = 5.0; // far outside the unit circle: no interlaced roots
        let old = [0.5f32; M];
        let mut lsp = [0f32; M];
        let ok = lpc_to_lsp(&a, &old, &mut lsp);
        if !ok {
            assert_eq!(lsp, old);
        }
    }

    #[test]
    fn reorder_keeps_distance() {
        let mut lsf = [
            10.0, 5.0, 5.0, 900.0, 800.0, 3000.0, 3000.0, 9000.0, 12000.0, 16000.0,
        ];
        reorder_lsf(&mut lsf, 205.0);
        for w in lsf.windows(2) {
            assert!(w[1] - w[0] >= 204.9);
        }
        assert!(lsf[0] >= 205.0);
    }
}
