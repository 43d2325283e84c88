//! LP synthesis and analysis filters, LP analysis (autocorrelation, lag window, Levinson-Durbin;
//! TS 26.090 §5.2.1-5.2.2) and small IIR helpers.

use super::Lpc;
use crate::tables::filters::{LAG_H, LAG_L};
use crate::LPC_ORDER as M;

/// All-pole synthesis `y[n] = x[n] − Σ a[i]·y[n−i]` (1/A(z)). `mem` holds the last 10 outputs
/// of the previous call, oldest first; it is updated when `update` is set. `x` and `y` have the
/// same length and may not overlap.
pub fn synthesis(a: &Lpc, x: &[f32], y: &mut [f32], mem: &mut [f32; M], update: bool) {
    const MAX: usize = 160;
    if x.len() <= MAX && y.len() >= x.len() {
        // Memory and output in one buffer: no branch per tap. Same arithmetic, same order.
        let mut buf = [0f32; M + MAX];
        buf[..M].copy_from_slice(mem);
        let len = x.len();
        for (n, &xn) in x.iter().enumerate() {
            let past: &[f32; M] = buf[n..n + M].try_into().unwrap_or(&[0.0; M]);
            let mut s = xn;
            for i in 1..=M {
                s -= a[i] * past[M - i];
            }
            buf[M + n] = s;
        }
        y[..len].copy_from_slice(&buf[M..M + len]);
        if update {
            mem.copy_from_slice(&buf[len..len + M]);
        }
        return;
    }
    for n in 0..x.len() {
        let mut s = x[n];
        for i in 1..=M {
            let past = if n >= i { y[n - i] } else { mem[M + n - i] };
            s -= a[i] * past;
        }
        y[n] = s;
    }
    if update {
        let len = y.len();
        if len >= M {
            mem.copy_from_slice(&y[len - M..]);
        } else {
            mem.copy_within(len.., 0);
            mem[M - len..].copy_from_slice(y);
        }
    }
}

/// In-place form of [`synthesis`] over `buf[start..start + len]` where `buf[start − 10..start]`
/// already holds the previous outputs (the layout the decoder keeps its excitation in).
pub fn synthesis_in_place(a: &Lpc, buf: &mut [f32], start: usize, len: usize) {
    for n in start..start + len {
        let mut s = buf[n];
        for i in 1..=M {
            s -= a[i] * buf[n - i];
        }
        buf[n] = s;
    }
}

/// LP residual `y[n] = Σ_{i=0..10} a[i]·x[start + n − i]` (filtering through A(z)); `x` must
/// hold 10 samples of history before `start`.
pub fn residual(a: &Lpc, x: &[f32], start: usize, y: &mut [f32]) {
    for (n, out) in y.iter_mut().enumerate() {
        let t = start + n;
        let mut s = 0f32;
        for (i, &c) in a.iter().enumerate() {
            s += c * x[t - i];
        }
        *out = s;
    }
}

/// Autocorrelation r[0..=10] of the windowed 240-sample analysis segment (TS 26.090 §5.2.1);
/// `window` is one of the Q15 tables of [`crate::tables::filters`]. A tiny noise floor keeps
/// `r[0]` positive on digital silence.
pub fn autocorrelation(x: &[f32; 240], window: &[i16; 240], r: &mut [f32; M + 1]) {
    let mut w = [0f32; 240];
    for ((o, &s), &c) in w.iter_mut().zip(x).zip(window) {
        *o = s * f32::from(c) / 32768.0;
    }
    for (k, rk) in r.iter_mut().enumerate() {
        *rk = w[k..].iter().zip(&w).map(|(a, b)| a * b).sum();
    }
    r[0] = r[0].max(1.0);
}

/// Multiplies `r[1..=10]` by the 60 Hz lag window and `r[0]` by the white-noise correction
/// 1.0001 (TS 26.090 §5.2.2).
pub fn lag_window(r: &mut [f32; M + 1]) {
    r[0] *= 1.0001;
    for i in 0..M {
        // The table stores the Q31 window as a high word and a 15-bit low word.
        let w = (f64::from(LAG_H[i]) * 65536.0 + f64::from(LAG_L[i]) * 2.0) / 2_147_483_648.0;
        r[i + 1] = (f64::from(r[i + 1]) * w) as f32;
    }
}

/// Levinson-Durbin recursion (TS 26.090 §5.2.2): LP coefficients from r[0..=10]. Returns the
/// first two reflection coefficients' worth of information the encoder needs (`rc`), and
/// `false` (leaving `a` untouched) when the recursion becomes unstable (|k| ≥ 1).
pub fn levinson(r: &[f32; M + 1], a: &mut Lpc, rc: &mut [f32; M]) -> bool {
    let mut cur = [0f32; M + 1];
    cur[0] = 1.0;
    let mut err = r[0];
    if err <= 0.0 {
        return false;
    }
    for i in 1..=M {
        let mut acc = r[i];
        for j in 1..i {
            acc += cur[j] * r[i - j];
        }
        let k = -acc / err;
        if k.abs() >= 1.0 || !k.is_finite() {
            return false;
        }
        rc[i - 1] = k;
        let prev = cur;
        for j in 1..i {
            cur[j] = prev[j] + k * prev[i - j];
        }
        cur[i] = k;
        err *= 1.0 - k * k;
    }
    *a = cur;
    true
}

/// Second-order IIR section `y = b0 x + b1 x1 + b2 x2 + a1 y1 + a2 y2` (the high-pass filters
/// of §4.2 / §6.2.4, coefficients in the sign convention of the reference tables).
#[derive(Debug, Clone, Copy, Default)]
pub struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    x: [f32; 2],
    y: [f32; 2],
}

impl Biquad {
    /// A section from numerator `b` and feedback `a1, a2` (already scaled to plain numbers).
    pub fn new(b: [f32; 3], a: [f32; 2]) -> Self {
        Biquad {
            b,
            a,
            ..Default::default()
        }
    }

    /// Filters one sample.
    pub fn step(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x
            + self.b[1] * self.x[0]
            + self.b[2] * self.x[1]
            + self.a[0] * self.y[0]
            + self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }

    /// Clears the memory.
    pub fn reset(&mut self) {
        self.x = [0.0; 2];
        self.y = [0.0; 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesis_inverts_residual() {
        let a: Lpc = [1.0, -0.9, 0.2, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01];
        let x: Vec<f32> = (0..60).map(|n| ((n * 7 % 13) as f32) - 6.0).collect();
        let mut xr = vec![0f32; 70];
        xr[10..].copy_from_slice(&x);
        let mut e = vec![0f32; 60];
        residual(&a, &xr, 10, &mut e);
        let mut mem = [0f32; M];
        let mut y = vec![0f32; 60];
        synthesis(&a, &e, &mut y, &mut mem, true);
        for (p, q) in x.iter().zip(&y) {
            assert!((p - q).abs() < 1e-3);
        }
        assert_eq!(mem[M - 1], y[59]);
    }

    #[test]
    fn levinson_of_ar1_finds_the_pole() {
        // r[k] = 0.8^k: an AR(1) process with A(z) = 1 − 0.8 z^-1.
        let r: [f32; M + 1] = core::array::from_fn(|k| 0.8f32.powi(k as i32));
        let mut a = [0f32; M + 1];
        let mut rc = [0f32; M];
        assert!(levinson(&r, &mut a, &mut rc));
        assert!((a[1] + 0.8).abs() < 1e-4);
        assert!(a[2..].iter().all(|c| c.abs() < 1e-4));
    }

    #[test]
    fn lag_window_is_near_one_at_small_lags() {
        let mut r = [1.0f32; M + 1];
        lag_window(&mut r);
        assert!((r[1] - 0.9988).abs() < 1e-3, "{}", r[1]);
        assert!(r[10] < r[1]);
    }
}
