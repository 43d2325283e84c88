//! Linear prediction analysis of the encoder (TS 26.090 §5.1–5.2): pre-processing, windowed
//! autocorrelation, lag window, Levinson-Durbin, LPC → LSP, and the perceptual weighting.
//!
//! The encoder works in floating point: the standard asks for the bitstream and decoder
//! behaviour, and an encoder that is close in quality (not bit-exact) is what this crate
//! promises.

/// LP order.
pub const M: usize = 10;

/// The 80 Hz high-pass and /2 scaling of TS 26.090 §5.1 (second-order IIR).
#[derive(Debug, Clone, Default)]
pub struct HighPass {
    x1: f32,
    x2: f32,
    y1: f32,
    y2: f32,
}

impl HighPass {
    /// Filters `pcm` into `out` in place of the standard's fixed-point filter; the /2 keeps the
    /// same signal scale as the decoder's post-processing expects (it multiplies by 2).
    pub fn run(&mut self, pcm: &[i16; 160], out: &mut [f32]) {
        // Coefficients of §5.1 with the 1/2 folded into the numerator.
        const B: [f32; 3] = [0.463_623_05, -0.927_246_1, 0.463_623_05];
        const A: [f32; 2] = [1.906_005_9, -0.911_376_95];
        for (o, &s) in out.iter_mut().zip(pcm.iter()) {
            let x0 = f32::from(s);
            let y0 = B[0] * x0 + B[1] * self.x1 + B[2] * self.x2 + A[0] * self.y1 + A[1] * self.y2;
            self.x2 = self.x1;
            self.x1 = x0;
            self.y2 = self.y1;
            self.y1 = y0;
            *o = y0;
        }
    }
}

/// One LPC analysis window of TS 26.090 §5.2.1: a Hamming half of `l1` samples and a cosine
/// quarter of `l2`, 240 in all.
pub fn lpc_window(l1: usize, l2: usize) -> [f32; 240] {
    let mut w = [0.0f32; 240];
    for (n, v) in w.iter_mut().enumerate() {
        *v = if n < l1 {
            0.54 - 0.46 * (2.0 * std::f64::consts::PI * n as f64 / (2 * l1 - 1) as f64).cos()
        } else {
            (2.0 * std::f64::consts::PI * (n - l1) as f64 / (4 * l2 - 1) as f64).cos()
        } as f32;
    }
    w
}

/// Autocorrelation of the windowed signal, lag-windowed (60 Hz Gaussian) and with the white
/// noise correction of §5.2.1 (r0 × 1.0001), then Levinson-Durbin: `a[0] = 1`.
pub fn analyse(x: &[f32], window: &[f32; 240], a: &mut [f64; M + 1]) -> bool {
    let mut xw = [0.0f64; 240];
    for ((o, &s), &w) in xw.iter_mut().zip(x.iter()).zip(window.iter()) {
        *o = f64::from(s) * f64::from(w);
    }
    let mut r = [0.0f64; M + 1];
    for (k, rk) in r.iter_mut().enumerate() {
        *rk = xw[k..].iter().zip(xw.iter()).map(|(a, b)| a * b).sum();
    }
    if r[0] <= 0.0 {
        return false;
    }
    r[0] *= 1.0001;
    for (k, rk) in r.iter_mut().enumerate().skip(1) {
        let f = 2.0 * std::f64::consts::PI * 60.0 * k as f64 / 8000.0;
        *rk *= (-0.5 * f * f).exp();
    }
    levinson(&r, a)
}

/// Levinson-Durbin recursion; false (and `a` untouched) when the recursion is unstable.
pub fn levinson(r: &[f64; M + 1], a: &mut [f64; M + 1]) -> bool {
    let mut cur = [0.0f64; M + 1];
    let mut prev = [0.0f64; M + 1];
    cur[0] = 1.0;
    let mut err = r[0];
    for i in 1..=M {
        let mut acc = r[i];
        for j in 1..i {
            acc += cur[j] * r[i - j];
        }
        let k = -acc / err;
        if !(k.abs() < 1.0) {
            return false;
        }
        prev[..i].copy_from_slice(&cur[..i]);
        for j in 1..i {
            cur[j] = prev[j] + k * prev[i - j];
        }
        cur[i] = k;
        err *= 1.0 - k * k;
    }
    *a = cur;
    true
}

/// Sum and difference polynomials of A(z) without their trivial roots (§5.2.3), as the
/// coefficients of a 5th-order Chebyshev series in x = cos ω.
fn chebyshev(a: &[f64; M + 1]) -> ([f64; 6], [f64; 6]) {
    let mut f1 = [0.0f64; 6];
    let mut f2 = [0.0f64; 6];
    f1[0] = 1.0;
    f2[0] = 1.0;
    for i in 0..5 {
        f1[i + 1] = a[i + 1] + a[M - i] - f1[i];
        f2[i + 1] = a[i + 1] - a[M - i] + f2[i];
    }
    (f1, f2)
}

/// C(x) = T5(x) + f1 T4(x) + … + f5/2, by the Clenshaw recurrence.
fn cheb_eval(x: f64, f: &[f64; 6]) -> f64 {
    let mut b2 = 0.0;
    let mut b1 = 1.0;
    for &c in &f[1..5] {
        let b0 = 2.0 * x * b1 - b2 + c;
        b2 = b1;
        b1 = b0;
    }
    x * b1 - b2 + f[5] / 2.0
}

/// LPC → LSP (cosine domain, decreasing): the roots of the two polynomials, alternating,
/// searched on a fine grid from x = 1 down to −1 and refined by bisection. False when fewer
/// than ten roots come out (the caller keeps the previous frame's LSPs, as §5.2.3 says).
pub fn az_to_lsp(a: &[f64; M + 1], lsp: &mut [f64; M]) -> bool {
    const GRID: usize = 240;
    let (f1, f2) = chebyshev(a);
    let polys = [&f1, &f2];
    let mut found = [0.0f64; M];
    let mut n = 0;
    let mut which = 0;
    let mut xlow = 1.0f64;
    let mut ylow = cheb_eval(xlow, polys[which]);
    let mut j = 0;
    while n < M && j < GRID {
        j += 1;
        let xhigh = xlow;
        let yhigh = ylow;
        xlow = (std::f64::consts::PI * j as f64 / GRID as f64).cos();
        ylow = cheb_eval(xlow, polys[which]);
        if ylow * yhigh <= 0.0 {
            let (mut lo, mut hi, mut ylo) = (xlow, xhigh, ylow);
            for _ in 0..30 {
                let mid = 0.5 * (lo + hi);
                let ym = cheb_eval(mid, polys[which]);
                if ym * ylo <= 0.0 {
                    hi = mid;
                } else {
                    lo = mid;
                    ylo = ym;
                }
            }
            let x = 0.5 * (lo + hi);
            found[n] = x;
            n += 1;
            which ^= 1;
            xlow = x;
            ylow = cheb_eval(xlow, polys[which]);
            j -= 1;
            // Step past the root on the next grid point.
            while j < GRID && (std::f64::consts::PI * j as f64 / GRID as f64).cos() >= x {
                j += 1;
            }
            j = j.saturating_sub(1);
        }
    }
    if n < M {
        return false;
    }
    *lsp = found;
    true
}

/// Bandwidth-expanded coefficients a_i γ^i of A(z/γ).
pub fn weight(a: &[f32; M + 1], gamma: f32, out: &mut [f32; M + 1]) {
    let mut g = 1.0f32;
    for (o, &c) in out.iter_mut().zip(a.iter()) {
        *o = c * g;
        g *= gamma;
    }
}

/// FIR A(z): `y[n] = x[n] + Σ a_i x[n−i]`; `x` carries M samples of history before `start`.
pub fn residual(a: &[f32; M + 1], x: &[f32], start: usize, y: &mut [f32]) {
    for (n, out) in y.iter_mut().enumerate() {
        let p = start + n;
        let mut s = x[p];
        for i in 1..=M {
            s += a[i] * x[p - i];
        }
        *out = s;
    }
}

/// IIR 1/A(z) over `x` into `y`, `mem` holding the last M outputs (oldest first); `mem` is
/// updated when `update`.
pub fn synth(a: &[f32; M + 1], x: &[f32], y: &mut [f32], mem: &mut [f32; M], update: bool) {
    let n = x.len();
    let mut buf = [0.0f32; M + 160];
    buf[..M].copy_from_slice(mem);
    for i in 0..n {
        let mut s = x[i];
        for k in 1..=M {
            s -= a[k] * buf[M + i - k];
        }
        buf[M + i] = s;
        y[i] = s;
    }
    if update {
        mem.copy_from_slice(&buf[n..n + M]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsp_roots_of_a_known_filter_come_back() {
        // A(z) from an LSP set, then back: the roots must match.
        let lsp_in = [0.95, 0.85, 0.7, 0.5, 0.3, 0.1, -0.2, -0.45, -0.7, -0.9];
        let a = crate::enc::lsp::lsp_to_az(&lsp_in);
        let mut lsp = [0.0; M];
        assert!(az_to_lsp(&a, &mut lsp));
        for (x, y) in lsp.iter().zip(lsp_in.iter()) {
            assert!((x - y).abs() < 1e-6, "{lsp:?}");
        }
    }

    #[test]
    fn levinson_of_an_ar1_process() {
        let mut r = [0.0; M + 1];
        for (k, v) in r.iter_mut().enumerate() {
            *v = 0.9f64.powi(k as i32);
        }
        let mut a = [0.0; M + 1];
        assert!(levinson(&r, &mut a));
        assert!((a[1] + 0.9).abs() < 1e-9);
        assert!(a[2..].iter().all(|c| c.abs() < 1e-9));
    }
}
