//! Voice activity detector after TS 26.094 option 1 (written from the specification's
//! description, floating point): a filter bank splits each frame into nine sub-bands, their
//! levels are compared with a background-noise estimate, and the summed sub-band SNR against
//! a noise-dependent threshold gives the intermediate decision; a burst/hangover stage gives
//! the final flag. The noise estimate only rises when no speech was seen for a while, or when
//! the spectrum has been stationary and neither pitch nor a tone is present, so a steady tone
//! stays "speech".
//!
//! Left out against option 1: the complex-signal (music) detector and the exact fixed-point
//! constants; the thresholds below are chosen in this implementation's own scale.

/// Sub-bands of the filter bank (0–250, 250–500, 500–750, 750–1000, 1000–1500, 1500–2000,
/// 2000–2500, 2500–3000, 3000–4000 Hz).
const BANDS: usize = 9;
/// Coefficients of the first-order all-pass sections of the 5th-order half-band split.
const C5_1: f32 = 0.67;
const C5_2: f32 = 0.195;
/// Coefficient of the 3rd-order half-band split.
const C3: f32 = 0.309;
/// Smallest background-noise level per band (mean magnitude, halved 16-bit scale).
const NOISE_MIN: f32 = 0.5;
/// Initial background-noise level per band.
const NOISE_INIT: f32 = 4.0;
/// Noise-estimate adaptation: up when no speech was seen for 4 frames, up while only
/// stationary, and down.
const ALPHA_UP1: f32 = 0.1;
const ALPHA_UP2: f32 = 0.03;
const ALPHA_DOWN: f32 = 0.2;
/// Frames the spectrum must stay stationary before the slow noise update.
const STAT_COUNT: u32 = 20;
/// Stationarity threshold of Σ max/min of the band levels against their average.
const STAT_THR: f32 = BANDS as f32 * 1.4;
/// Normalised correlation above which a frame is tonal / pitched (option 1's TONE_THR).
const TONE_THR: f32 = 0.65;
/// Speech frames needed before a burst earns the hangover, and its length.
const BURST_LEN: u32 = 3;
const HANG_LEN: u32 = 4;

/// State of the detector of one encoder.
#[derive(Debug, Clone)]
pub struct Vad {
    /// All-pass memories of the filter-bank sections.
    mem: [f32; 16],
    bckr: [f32; BANDS],
    ave_level: [f32; BANDS],
    old_level: [f32; BANDS],
    /// Intermediate decisions of the last frames, newest in bit 0.
    vadreg: u32,
    /// Tone/pitch flags of the last frames, newest in bit 0.
    tonereg: u32,
    stat_count: u32,
    burst_count: u32,
    hang_count: u32,
}

impl Default for Vad {
    fn default() -> Self {
        Vad {
            mem: [0.0; 16],
            bckr: [NOISE_INIT; BANDS],
            ave_level: [NOISE_INIT; BANDS],
            old_level: [NOISE_INIT; BANDS],
            vadreg: 0,
            tonereg: 0,
            stat_count: STAT_COUNT,
            burst_count: 0,
            hang_count: 0,
        }
    }
}

/// 5th-order half-band split of `x` (even length) into low and high halves, decimated by 2.
fn split5(x: &[f32], lo: &mut [f32], hi: &mut [f32], m: &mut [f32]) {
    for i in 0..x.len() / 2 {
        let t = x[2 * i] - C5_1 * m[0];
        let a = m[0] + C5_1 * t;
        m[0] = t;
        let t = x[2 * i + 1] - C5_2 * m[1];
        let b = m[1] + C5_2 * t;
        m[1] = t;
        lo[i] = 0.5 * (a + b);
        hi[i] = 0.5 * (a - b);
    }
}

/// 3rd-order half-band split.
fn split3(x: &[f32], lo: &mut [f32], hi: &mut [f32], m: &mut f32) {
    for i in 0..x.len() / 2 {
        let t = x[2 * i + 1] - C3 * *m;
        let b = *m + C3 * t;
        *m = t;
        lo[i] = 0.5 * (x[2 * i] + b);
        hi[i] = 0.5 * (x[2 * i] - b);
    }
}

fn level(x: &[f32]) -> f32 {
    x.iter().map(|v| v.abs()).sum::<f32>() / x.len() as f32
}

impl Vad {
    /// The band levels of one 160-sample frame.
    fn levels(&mut self, x: &[f32; 160]) -> [f32; BANDS] {
        let (mut l, mut h) = ([0f32; 80], [0f32; 80]);
        let (m01, rest) = self.mem.split_at_mut(2);
        split5(x, &mut l, &mut h, m01);
        // 0–2 kHz → 0–1, 1–2; 2–4 kHz → 2–3, 3–4 (the high branch is spectrally inverted,
        // which only swaps names).
        let (mut ll, mut lh, mut hl, mut hh) = ([0f32; 40], [0f32; 40], [0f32; 40], [0f32; 40]);
        let (m23, rest) = rest.split_at_mut(2);
        split5(&l, &mut ll, &mut lh, m23);
        let (m45, rest) = rest.split_at_mut(2);
        split5(&h, &mut hl, &mut hh, m45);
        // 0–1 kHz → 0–500, 500–1000; 1–2 → two; 2–3 → two.
        let mut b = [[0f32; 20]; 6];
        let (m67, rest) = rest.split_at_mut(2);
        let [b0, b1, b2, b3, b4, b5] = &mut b;
        split5(&ll, b0, b1, m67);
        split3(&lh, b2, b3, &mut rest[0]);
        split3(&hl, b4, b5, &mut rest[1]);
        // 0–500 → 0–250, 250–500; 500–1000 → 500–750, 750–1000.
        let (mut q0, mut q1, mut q2, mut q3) = ([0f32; 10], [0f32; 10], [0f32; 10], [0f32; 10]);
        split3(b0, &mut q0, &mut q1, &mut rest[2]);
        split3(b1, &mut q2, &mut q3, &mut rest[3]);
        [
            level(&q0),
            level(&q1),
            level(&q2),
            level(&q3),
            level(b2),
            level(b3),
            level(b4),
            level(b5),
            level(&hh),
        ]
    }

    /// The decision for one frame of pre-processed speech `x`; `prev` holds the samples
    /// before it (at least 147) for the tone/pitch detector. Returns the VAD flag.
    pub fn decide(&mut self, prev: &[f32], x: &[f32; 160]) -> bool {
        let lv = self.levels(x);
        let tone = tonal(prev, x);
        self.tonereg = (self.tonereg << 1) | u32::from(tone);

        // Intermediate decision: mean squared sub-band SNR against a threshold that falls
        // as the background noise rises (noisy input needs less margin).
        let snr: f32 = lv
            .iter()
            .zip(&self.bckr)
            .map(|(&l, &b)| {
                let r = (l / b).max(1.0);
                r * r
            })
            .sum::<f32>()
            / BANDS as f32;
        let noise_db = 20.0 * (self.bckr.iter().sum::<f32>() / BANDS as f32).log10();
        let thr = (4.0 - (noise_db - 10.0) * 0.08).clamp(1.8, 4.0);
        let speech = snr > thr;
        self.vadreg = (self.vadreg << 1) | u32::from(speech);

        // Stationarity: how far the levels are from their running average.
        let stat: f32 = lv
            .iter()
            .zip(&self.ave_level)
            .map(|(&l, &a)| {
                let (l, a) = (l.max(NOISE_MIN), a.max(NOISE_MIN));
                l.max(a) / l.min(a)
            })
            .sum();
        if stat > STAT_THR || self.tonereg & 0xf != 0 {
            self.stat_count = STAT_COUNT;
        } else {
            self.stat_count = self.stat_count.saturating_sub(1);
        }
        let alpha = if self.stat_count == STAT_COUNT {
            1.0
        } else {
            0.25
        };
        for (a, &l) in self.ave_level.iter_mut().zip(&lv) {
            *a += alpha * (l - *a);
        }

        // Background noise from the previous frame's levels, so an onset in this frame does
        // not leak into it.
        let quiet = self.vadreg & 0x1e == 0 && self.tonereg & 0x1e == 0;
        let up = if quiet {
            ALPHA_UP1
        } else if self.stat_count == 0 {
            ALPHA_UP2
        } else {
            0.0
        };
        for (b, &l) in self.bckr.iter_mut().zip(&self.old_level) {
            let a = if l < *b { ALPHA_DOWN } else { up };
            *b = (*b + a * (l - *b)).max(NOISE_MIN);
        }
        self.old_level = lv;

        // Hangover after bursts.
        if speech {
            self.burst_count += 1;
            if self.burst_count >= BURST_LEN {
                self.hang_count = HANG_LEN;
            }
            true
        } else {
            self.burst_count = 0;
            if self.hang_count > 0 {
                self.hang_count -= 1;
                true
            } else {
                false
            }
        }
    }
}

/// Whether the frame is tonal or strongly pitched: its best normalised correlation with
/// itself 20–147 samples back exceeds [`TONE_THR`].
fn tonal(prev: &[f32], x: &[f32; 160]) -> bool {
    let n = prev.len();
    let at = |i: isize| -> f32 {
        if i >= 0 {
            x[i as usize]
        } else {
            prev[(n as isize + i) as usize]
        }
    };
    let e0: f32 = x.iter().map(|v| v * v).sum();
    if e0 < 160.0 {
        return false;
    }
    for k in 20..=147isize {
        let mut c = 0.0;
        let mut e1 = 0.0;
        for i in 0..160isize {
            let d = at(i - k);
            c += x[i as usize] * d;
            e1 += d * d;
        }
        if c > 0.0 && c * c > TONE_THR * TONE_THR * e0 * e1 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: &mut u32, amp: f32) -> f32 {
        *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (f32::from((*seed >> 16) as u16) / 32768.0 - 1.0) * amp
    }

    #[test]
    fn tone_is_speech_silence_and_steady_noise_are_not() {
        let mut v = Vad::default();
        let mut prev = [0f32; 160];
        let mut x = [0f32; 160];
        let mut seed = 1;
        let mut n = 0usize;
        let mut run = |v: &mut Vad, f: &dyn Fn(usize, &mut u32) -> f32, frames: usize| {
            let mut flags = Vec::new();
            for _ in 0..frames {
                prev = x;
                for s in x.iter_mut() {
                    *s = f(n, &mut seed);
                    n += 1;
                }
                flags.push(v.decide(&prev, &x));
            }
            flags
        };
        let tone = |n: usize, _: &mut u32| 4000.0 * (n as f32 * 0.3).sin();
        let silence = |_: usize, _: &mut u32| 0.0;
        let low = |_: usize, s: &mut u32| noise(s, 30.0);
        assert!(run(&mut v, &tone, 50).iter().all(|&f| f), "tone");
        assert!(
            !run(&mut v, &silence, 20)[10..].iter().any(|&f| f),
            "silence"
        );
        let noisy = run(&mut v, &low, 200);
        assert!(!noisy[150..].iter().any(|&f| f), "steady noise: {noisy:?}");
        let back = run(&mut v, &tone, 3);
        assert!(back[0], "tone onset");
    }
}
