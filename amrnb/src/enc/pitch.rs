//! Pitch analysis (TS 26.090 §5.4–5.6): open-loop estimate on the weighted speech,
//! closed-loop fractional search of the adaptive codebook, and the lag codes the decoder reads.

use crate::dsp::pitch::{adaptive_vector, HISTORY};

/// Shortest lag with 1/3 resolution (all modes but 12.2).
pub const PIT_MIN: i32 = crate::dsp::pitch::PIT_MIN as i32;
/// Shortest lag of 12.2.
pub const PIT_MIN_122: i32 = 18;
/// Longest lag.
pub const PIT_MAX: i32 = crate::dsp::pitch::PIT_MAX as i32;

/// Open-loop lag of `wsp[start..start+len]` (history before `start` ≥ 143), §5.4: the best
/// normalised correlation in three lag ranges, preferring shorter lags that are nearly as good
/// (so a multiple of the true period does not win).
pub fn open_loop(wsp: &[f32], start: usize, len: usize, pit_min: i32) -> i32 {
    let ranges = [(pit_min, 39), (40, 79), (80, PIT_MAX)];
    let mut best = [(0i32, f32::MIN); 3];
    // Energy of the delayed segment, slid one lag at a time.
    let lo0 = pit_min as usize;
    let corr = correlations(wsp, start, len, lo0);
    let mut e: f64 = (start..start + len)
        .map(|n| f64::from(wsp[n - lo0]).powi(2))
        .sum();
    for (r, &(lo, hi)) in ranges.iter().enumerate() {
        for lag in lo..=hi {
            let l = lag as usize;
            if l > lo0 {
                e += f64::from(wsp[start - l]).powi(2) - f64::from(wsp[start + len - l]).powi(2);
            }
            let v = corr[l] / (e as f32).max(1.0).sqrt();
            if v > best[r].1 {
                best[r] = (lag, v);
            }
        }
    }
    // Favour the lower ranges (§5.4: 0.85 thresholds).
    let mut pick = best[2];
    if best[1].1 > 0.85 * pick.1 {
        pick = best[1];
    }
    if best[0].1 > 0.85 * pick.1 {
        pick = best[0];
    }
    pick.0
}

/// Σₙ wsp[n]·wsp[n − l] over the segment for every lag `l` from `lo` to [`PIT_MAX`].
/// Eight lags accumulate side by side (vectorisable), each over n in increasing order like a
/// lag-by-lag loop, so the sums are the same.
fn correlations(wsp: &[f32], start: usize, len: usize, lo: usize) -> [f32; PIT_MAX as usize + 1] {
    const B: usize = 8;
    let top = PIT_MAX as usize;
    let mut out = [0f32; PIT_MAX as usize + 1];
    let mut l = lo;
    while l + B - 1 <= top {
        let mut c = [0f32; B];
        for n in start..start + len {
            let w = wsp[n];
            // wsp[n − l − k] for k = 0..8, lowest address first.
            let d = &wsp[n - l - (B - 1)..=n - l];
            for k in 0..B {
                c[k] += w * d[B - 1 - k];
            }
        }
        out[l..l + B].copy_from_slice(&c);
        l += B;
    }
    for l in l..=top {
        let mut c = 0.0f32;
        for n in start..start + len {
            c += wsp[n] * wsp[n - l];
        }
        out[l] = c;
    }
    out
}

/// Convolution of a 40-sample vector with the impulse response `h`.
pub fn convolve(x: &[f32; 40], h: &[f32; 40], y: &mut [f32; 40]) {
    // Eight outputs at a time in registers (vectorisable); each still sums x[0]h[n],
    // x[1]h[n−1], … in that order, so the result is the same as the direct loop's.
    const B: usize = 8;
    for b in (0..40).step_by(B) {
        let mut acc = [0f32; B];
        // Terms every output of the block has.
        for i in 0..=b {
            let xi = x[i];
            let hs = &h[b - i..b - i + B];
            for k in 0..B {
                acc[k] += xi * hs[k];
            }
        }
        // The triangle: output b + k takes i up to b + k.
        for i in b + 1..b + B {
            let xi = x[i];
            for k in i - b..B {
                acc[k] += xi * h[b + k - i];
            }
        }
        y[b..b + B].copy_from_slice(&acc);
    }
}

/// One lag candidate in units of 1/`res` sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// Integer part (the decoder's T0).
    pub t0: i32,
    /// Fraction, −1..=1 (res 3) or −2..=3 (res 6).
    pub frac: i32,
}

/// Closed-loop search over the lags `cands` (as 1/`res` units `v = t0·res + frac`), for the
/// target `x` and impulse response `h`; `exc[pos − HISTORY..pos]` is the past excitation. Each
/// candidate vector is built exactly as the decoder will (lags below 40 repeat the vector), on
/// a copy. Integer lags first, then the fractions within one sample of the best; the criterion
/// is the normalised correlation of §5.6.
pub fn closed_loop(
    exc: &[f32],
    pos: usize,
    x: &[f32; 40],
    h: &[f32; 40],
    res: i32,
    cands: &[i32],
) -> Lag {
    // The candidate vectors are built on one copy of the past: each build writes the whole
    // subframe before reading any of it back.
    let mut tmp = [0.0f32; HISTORY + 40];
    tmp[..HISTORY].copy_from_slice(&exc[pos - HISTORY..pos]);
    let mut score = |v: i32| -> f32 {
        let lag = split(v, res);
        adaptive_vector(&mut tmp, HISTORY, lag.t0.max(0) as usize, lag.frac, res, 40);
        let mut y = [0.0f32; 40];
        if let Some(v) = tmp[HISTORY..].first_chunk::<40>() {
            convolve(v, h, &mut y);
        }
        let c: f32 = x.iter().zip(y.iter()).map(|(a, b)| a * b).sum();
        let e: f32 = y.iter().map(|a| a * a).sum();
        c / e.max(1e-3).sqrt()
    };
    let mut best = (cands[0], f32::MIN);
    let ints = cands.iter().any(|v| v.rem_euclid(res) == 0);
    for &v in cands.iter().filter(|&&v| !ints || v.rem_euclid(res) == 0) {
        let s = score(v);
        if s > best.1 {
            best = (v, s);
        }
    }
    if ints {
        let centre = best.0;
        for &v in cands
            .iter()
            .filter(|&&v| v.rem_euclid(res) != 0 && (v - centre).abs() < res)
        {
            let s = score(v);
            if s > best.1 {
                best = (v, s);
            }
        }
    }
    split(best.0, res)
}

/// 1/`res` units → (T0, frac) with the fraction the decoder uses (−1..=1 or −2..=3).
pub fn split(v: i32, res: i32) -> Lag {
    let t0 = v.div_euclid(res);
    let frac = v.rem_euclid(res);
    let hi = if res == 3 { 1 } else { 3 };
    if frac > hi {
        Lag {
            t0: t0 + 1,
            frac: frac - res,
        }
    } else {
        Lag { t0, frac }
    }
}

/// A fixed-size list of lag candidates (no allocation per frame).
pub struct Cands {
    /// Storage.
    pub v: [i32; 128],
    /// Used length.
    pub n: usize,
}

impl Cands {
    /// Empty.
    pub fn new() -> Cands {
        Cands { v: [0; 128], n: 0 }
    }
    fn push(&mut self, x: i32) {
        if self.n < self.v.len() {
            self.v[self.n] = x;
            self.n += 1;
        }
    }
    /// The candidates.
    pub fn as_slice(&self) -> &[i32] {
        &self.v[..self.n]
    }
}

impl Default for Cands {
    fn default() -> Self {
        Cands::new()
    }
}

/// Lag codes with 1/3 resolution (all modes but 12.2), §5.6: what the decoder can represent
/// for this subframe, pushed to `out` as 1/3 units, and the encoder of a chosen lag.
pub struct Lag3 {
    /// Absolute (first/third subframe, or first only for 4.75/5.15) or relative.
    pub absolute: bool,
    /// 4-bit relative code (4.75, 5.15, 5.90, 6.70).
    pub flag4: bool,
    /// Relative window.
    pub t0_min: i32,
    /// Relative window.
    pub t0_max: i32,
    /// The 4-bit code's centre.
    pub tmp_lag: i32,
}

impl Lag3 {
    /// The code context of one subframe: `old_t0` is the previous subframe's integer lag,
    /// `wide` the ±10 window of 7.95.
    pub fn new(absolute: bool, flag4: bool, old_t0: i32, wide: bool) -> Lag3 {
        let (low, range) = if wide { (10, 19) } else { (5, 9) };
        let mut t0_min = (old_t0 - low).max(PIT_MIN);
        let mut t0_max = t0_min + range;
        if t0_max > PIT_MAX {
            t0_max = PIT_MAX;
            t0_min = t0_max - range;
        }
        let mut tmp_lag = old_t0;
        if tmp_lag - t0_min > 5 {
            tmp_lag = t0_min + 5;
        }
        if t0_max - tmp_lag > 4 {
            tmp_lag = t0_max - 4;
        }
        Lag3 {
            absolute,
            flag4,
            t0_min,
            t0_max,
            tmp_lag,
        }
    }

    /// Every representable lag (1/3 units) within [`lo`, `hi`] (integers, inclusive).
    pub fn candidates(&self, lo: i32, hi: i32, out: &mut Cands) {
        out.n = 0;
        if self.absolute {
            for t0 in lo.max(19)..=hi.min(PIT_MAX) {
                if t0 < 85 {
                    for f in -1..=1 {
                        let v = 3 * t0 + f;
                        if v > 3 * 19 {
                            out.push(v);
                        }
                    }
                } else {
                    out.push(3 * t0);
                }
            }
        } else if !self.flag4 {
            for t0 in self.t0_min..=self.t0_max {
                for f in -1..=1 {
                    out.push(3 * t0 + f);
                }
            }
        } else {
            let c = self.tmp_lag;
            for i in 0..4 {
                out.push(3 * (c - 5 + i));
            }
            for i in 4..12 {
                out.push(3 * c + i - 9);
            }
            for i in 12..16 {
                out.push(3 * (c + 1 + i - 12));
            }
        }
    }

    /// The code of `lag` (which must come from [`Lag3::candidates`]).
    pub fn encode(&self, lag: Lag) -> u16 {
        let v = 3 * lag.t0 + lag.frac;
        let idx = if self.absolute {
            if lag.t0 < 85 || (lag.t0 == 85 && lag.frac < 0) {
                v - 58
            } else {
                lag.t0 + 112
            }
        } else if !self.flag4 {
            (lag.t0 - self.t0_min) * 3 + 2 + lag.frac
        } else {
            let c = self.tmp_lag;
            if v <= 3 * (c - 2) && lag.frac == 0 && lag.t0 <= c - 2 {
                lag.t0 - (c - 5)
            } else if v <= 3 * c + 2 {
                v - 3 * c + 9
            } else {
                lag.t0 - c - 1 + 12
            }
        };
        idx.clamp(0, 0xffff) as u16
    }
}

/// Lag codes of 12.2 (1/6 resolution), §5.6.
pub struct Lag6 {
    /// First or third subframe.
    pub absolute: bool,
    /// Relative window start.
    pub t0_min: i32,
}

impl Lag6 {
    /// The context: `prev_t0` is the previous subframe's integer lag.
    pub fn new(absolute: bool, prev_t0: i32) -> Lag6 {
        let mut t0_min = (prev_t0 - 5).max(PIT_MIN_122);
        if t0_min + 9 > PIT_MAX {
            t0_min = PIT_MAX - 9;
        }
        Lag6 { absolute, t0_min }
    }

    /// Every representable lag (1/6 units) within [`lo`, `hi`].
    pub fn candidates(&self, lo: i32, hi: i32, out: &mut Cands) {
        out.n = 0;
        if self.absolute {
            for t0 in lo.max(17)..=hi.min(PIT_MAX) {
                if t0 <= 94 {
                    for f in -2..=3 {
                        let v = 6 * t0 + f;
                        if (6 * 17 + 3..=6 * 94 + 3).contains(&v) {
                            out.push(v);
                        }
                    }
                } else {
                    out.push(6 * t0);
                }
            }
        } else {
            // The decoder takes relative codes 61–63 as corrupt (it keeps the previous lag).
            for idx in 0..=60 {
                out.push(6 * self.t0_min + idx - 3);
            }
        }
    }

    /// The code of `lag`.
    pub fn encode(&self, lag: Lag) -> u16 {
        let v = 6 * lag.t0 + lag.frac;
        let idx = if self.absolute {
            if v <= 6 * 94 + 3 {
                v - 105
            } else {
                lag.t0 + 368
            }
        } else {
            v - 6 * self.t0_min + 3
        };
        idx.clamp(0, 0xffff) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's reading of a 1/3 code (TS 26.090 §6.1), written from the spec's
    /// description to check our encoder against.
    fn dec3(l: &Lag3, idx: i32) -> i32 {
        if l.absolute {
            if idx < 197 {
                idx + 58
            } else {
                3 * (idx - 112)
            }
        } else if !l.flag4 {
            3 * l.t0_min + idx - 2
        } else if idx < 4 {
            3 * (l.tmp_lag - 5 + idx)
        } else if idx < 12 {
            3 * l.tmp_lag + idx - 9
        } else {
            3 * (l.tmp_lag + idx - 11)
        }
    }

    #[test]
    fn lag3_codes_round_trip() {
        let mut c = Cands::new();
        for old in [20, 21, 40, 84, 85, 86, 140, 143] {
            for (abs, f4, wide) in [
                (true, false, false),
                (false, false, false),
                (false, true, false),
                (false, false, true),
            ] {
                let l = Lag3::new(abs, f4, old, wide);
                l.candidates(19, 143, &mut c);
                assert!(c.n > 0);
                for &v in c.as_slice() {
                    let idx = l.encode(split(v, 3));
                    assert_eq!(
                        dec3(&l, i32::from(idx)),
                        v,
                        "old {old} abs {abs} f4 {f4} v {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn lag6_codes_round_trip() {
        let mut c = Cands::new();
        for prev in [18, 40, 94, 95, 143] {
            for abs in [true, false] {
                let l = Lag6::new(abs, prev);
                l.candidates(17, 143, &mut c);
                for &v in c.as_slice() {
                    let idx = i32::from(l.encode(split(v, 6)));
                    let back = if abs {
                        if idx < 463 {
                            idx + 105
                        } else {
                            6 * (idx - 368)
                        }
                    } else {
                        6 * l.t0_min + idx - 3
                    };
                    assert_eq!(back, v);
                    assert!(idx < if abs { 512 } else { 61 });
                }
            }
        }
    }
}
