//! The adaptive codebook: the past excitation delayed by a fractional pitch lag, interpolated
//! with the 1/6-resolution filter (TS 26.090 §5.6.2 and §6.1 step 2).

use crate::tables::filters::INTER_6_PRED_LT;

/// Largest integer pitch lag of any mode.
pub const PIT_MAX: usize = 143;
/// Smallest pitch lag of any mode.
pub const PIT_MIN: usize = 20;
/// Taps of the interpolation filter on each side of the lag.
pub const INTERP_TAPS: usize = 10;
/// Excitation history an adaptive-codebook buffer needs before the current subframe.
pub const HISTORY: usize = PIT_MAX + INTERP_TAPS + 1;

/// Writes `len` samples of the adaptive-codebook vector to `exc[start..start + len]`: the
/// excitation `t0 + frac/res` samples back (`res` 3 or 6, `frac` in −2..=2 or −3..=2),
/// interpolated. Lags shorter than `len` repeat the vector being built, as the standard does.
/// `exc` must hold [`HISTORY`] samples before `start`; out-of-range lags are clamped.
pub fn adaptive_vector(exc: &mut [f32], start: usize, t0: usize, frac: i32, res: i32, len: usize) {
    let t0 = t0.clamp(PIT_MIN - 3, PIT_MAX);
    // Phase in 1/6 steps of the sample after the one at the lag.
    let mut phase = -frac * if res == 3 { 2 } else { 1 };
    let mut x0 = start - t0;
    if phase < 0 {
        phase += 6;
        x0 -= 1;
    }
    let phase = phase.clamp(0, 5) as usize;
    // Outputs side by side (vectorisable) when the lag reaches past them: all at once for
    // long lags, eight at a time for all but the shortest (each chunk reads only the past and
    // the chunks already written). Each output adds the same terms in the same order as the
    // sample-by-sample loop, which finishes the rest.
    const W: usize = 8;
    let mut j0 = 0;
    if len <= 40 && x0 + len + INTERP_TAPS <= start {
        let mut s = [0f32; 40];
        interpolate_block(exc, x0, phase, &mut s[..len]);
        for (e, &v) in exc[start..start + len].iter_mut().zip(s.iter()) {
            *e = v / 32768.0;
        }
        return;
    }
    if x0 + W + INTERP_TAPS <= start {
        while j0 + W <= len {
            let mut s = [0f32; W];
            interpolate_block(exc, x0 + j0, phase, &mut s);
            for (e, &v) in exc[start + j0..start + j0 + W].iter_mut().zip(s.iter()) {
                *e = v / 32768.0;
            }
            j0 += W;
        }
    }
    for j in j0..len {
        let mut s = 0f32;
        for i in 0..INTERP_TAPS {
            s += exc[x0 + j - i] * f32::from(INTER_6_PRED_LT[phase + 6 * i]);
            s += exc[x0 + j + 1 + i] * f32::from(INTER_6_PRED_LT[6 - phase + 6 * i]);
        }
        exc[start + j] = s / 32768.0;
    }
}

/// The interpolation sums (unscaled) of `s.len()` consecutive outputs whose first tap pair
/// sits at `x0`.
fn interpolate_block(exc: &[f32], x0: usize, phase: usize, s: &mut [f32]) {
    let n = s.len();
    for i in 0..INTERP_TAPS {
        let c1 = f32::from(INTER_6_PRED_LT[phase + 6 * i]);
        let c2 = f32::from(INTER_6_PRED_LT[6 - phase + 6 * i]);
        let lo = &exc[x0 - i..x0 - i + n];
        let hi = &exc[x0 + 1 + i..x0 + 1 + i + n];
        for ((o, &a), &b) in s.iter_mut().zip(lo).zip(hi) {
            *o += a * c1;
            *o += b * c2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_lag_copies_the_past() {
        let mut exc = vec![0f32; HISTORY + 40];
        for (n, e) in exc.iter_mut().enumerate().take(HISTORY) {
            *e = (n as f32 * 0.3).sin();
        }
        adaptive_vector(&mut exc, HISTORY, 50, 0, 3, 40);
        for j in 0..40 {
            let want = exc[HISTORY + j - 50];
            assert!((exc[HISTORY + j] - want).abs() < 0.02, "{j}");
        }
    }

    #[test]
    fn half_sample_lag_interpolates_a_slow_sine() {
        let mut exc = vec![0f32; HISTORY + 40];
        let f = |t: f32| (t * 0.1).sin();
        for (n, e) in exc.iter_mut().enumerate().take(HISTORY) {
            *e = f(n as f32);
        }
        // Lag 40.5 = 40 + 3/6 (1/6 resolution).
        adaptive_vector(&mut exc, HISTORY, 40, 3, 6, 30);
        for j in 0..30 {
            let want = f((HISTORY + j) as f32 - 40.5);
            assert!((exc[HISTORY + j] - want).abs() < 0.02, "{j}");
        }
    }
}
