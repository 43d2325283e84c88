//! Test tones: a sine generator producing 16-bit PCM in 20 ms frames, and the measurement
//! that checks what arrived at the far end ("a 1 kHz tone at -20 dBFS arrived within 2 % and
//! 3 dB").
//!
//! Levels are dBFS as AES17 defines them: a sine whose peak reaches full scale (32767) is
//! 0 dBFS, so a tone generated at L dBFS measures L dBFS by RMS.

use std::f64::consts::{PI, SQRT_2};

/// Full scale of 16-bit PCM.
const FULL_SCALE: f64 = 32767.0;

/// Why a tone cannot be generated or measured.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ToneError {
    /// The sample rate is zero.
    #[error("sample rate 0")]
    SampleRate,
    /// The frequency is not between 0 and half the sample rate.
    #[error("frequency {0} Hz not between 0 and the Nyquist frequency")]
    Frequency(f64),
    /// The level is above 0 dBFS or not a number.
    #[error("level {0} dBFS above full scale or not a number")]
    Level(f64),
    /// The signal has too few cycles (or is silent) to measure a frequency.
    #[error("no tone: {0} rising zero crossings")]
    NoTone(usize),
}

/// A sine generator keeping its phase across frames.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    sample_rate: u32,
    amplitude: f64,
    /// Phase in cycles, kept in [0, 1) so precision does not degrade over a long call.
    phase: f64,
    step: f64,
}

impl ToneGenerator {
    /// A tone of `frequency_hz` at `level_dbfs` (≤ 0) sampled at `sample_rate` Hz (8000 for
    /// narrowband, 16000 for wideband).
    pub fn new(frequency_hz: f64, level_dbfs: f64, sample_rate: u32) -> Result<Self, ToneError> {
        if sample_rate == 0 {
            return Err(ToneError::SampleRate);
        }
        let nyquist = f64::from(sample_rate) / 2.0;
        if frequency_hz.is_nan() || frequency_hz <= 0.0 || frequency_hz >= nyquist {
            return Err(ToneError::Frequency(frequency_hz));
        }
        if level_dbfs.is_nan() || level_dbfs > 0.0 {
            return Err(ToneError::Level(level_dbfs));
        }
        Ok(ToneGenerator {
            sample_rate,
            amplitude: FULL_SCALE * 10f64.powf(level_dbfs / 20.0),
            phase: 0.0,
            step: frequency_hz / f64::from(sample_rate),
        })
    }

    /// The sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples in one 20 ms frame (160 at 8000 Hz, 320 at 16000 Hz).
    pub fn frame_len(&self) -> usize {
        self.sample_rate as usize / 50
    }

    /// Fills `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            *s = (self.amplitude * (2.0 * PI * self.phase).sin()).round() as i16;
            self.phase += self.step;
            if self.phase >= 1.0 {
                self.phase -= 1.0;
            }
        }
    }
}

/// RMS level of `samples` in dBFS (AES17: a full-scale sine is 0 dBFS); `-inf` for silence.
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    20.0 * (rms * SQRT_2 / FULL_SCALE).log10()
}

/// Level in dBFS of the component of `samples` at `frequency_hz` (Goertzel algorithm),
/// on the same scale as [`rms_dbfs`]: a pure tone measures the same by both. Useful to check
/// a tone dominates what arrived, or that a frequency is absent.
pub fn goertzel_dbfs(samples: &[i16], sample_rate: u32, frequency_hz: f64) -> f64 {
    if samples.is_empty() || sample_rate == 0 {
        return f64::NEG_INFINITY;
    }
    let w = 2.0 * PI * frequency_hz / f64::from(sample_rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // |X(f)| = N·A/2 for a sine of amplitude A over N samples.
    let amplitude = 2.0 * power.max(0.0).sqrt() / samples.len() as f64;
    20.0 * (amplitude / FULL_SCALE).log10()
}

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneMeasurement {
    /// Frequency from the rising zero crossings.
    pub frequency_hz: f64,
    /// RMS level in dBFS.
    pub level_dbfs: f64,
}

impl ToneMeasurement {
    /// Is the measurement within `frequency_tolerance` (a fraction: 0.02 for 2 %) of
    /// `frequency_hz` and within `level_tolerance_db` of `level_dbfs`?
    pub fn is_within(
        &self,
        frequency_hz: f64,
        frequency_tolerance: f64,
        level_dbfs: f64,
        level_tolerance_db: f64,
    ) -> bool {
        (self.frequency_hz - frequency_hz).abs() <= frequency_hz * frequency_tolerance
            && (self.level_dbfs - level_dbfs).abs() <= level_tolerance_db
    }
}

/// Measures the dominant tone of `samples`: frequency from the interpolated times of rising
/// zero crossings (after removing DC, with hysteresis so codec noise near zero does not
/// count as crossings), level by RMS without DC. Needs at least three crossings.
pub fn measure(samples: &[i16], sample_rate: u32) -> Result<ToneMeasurement, ToneError> {
    if sample_rate == 0 {
        return Err(ToneError::SampleRate);
    }
    if samples.is_empty() {
        return Err(ToneError::NoTone(0));
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    let rms = (samples
        .iter()
        .map(|&s| (f64::from(s) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    // Half the peak of a sine of this RMS: far above codec noise, well below the peaks.
    let threshold = rms * SQRT_2 / 2.0;
    let mut armed = false;
    let mut first = None;
    let mut last = 0.0;
    let mut crossings = 0usize;
    let mut prev = 0.0;
    for (i, &s) in samples.iter().enumerate() {
        let x = f64::from(s) - mean;
        if x < -threshold {
            armed = true;
        } else if armed && x >= 0.0 && i > 0 {
            // Linear interpolation between the sample below zero and this one.
            let t = (i - 1) as f64 + (-prev) / (x - prev);
            first.get_or_insert(t);
            last = t;
            crossings += 1;
            armed = false;
        }
        prev = x;
    }
    let first = match first {
        Some(f) if crossings >= 3 && rms > 0.0 => f,
        _ => return Err(ToneError::NoTone(crossings)),
    };
    let frequency_hz = (crossings - 1) as f64 * f64::from(sample_rate) / (last - first);
    Ok(ToneMeasurement {
        frequency_hz,
        // Without the DC a codec or a sound card may add.
        level_dbfs: 20.0 * (rms * SQRT_2 / FULL_SCALE).log10(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711;

    fn tone(freq: f64, level: f64, rate: u32, frames: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(freq, level, rate).unwrap();
        let mut out = vec![0i16; g.frame_len() * frames];
        for f in out.chunks_mut(g.frame_len()) {
            g.fill(f);
        }
        out
    }

    #[test]
    fn frames_are_20_ms_and_continuous() {
        let g = ToneGenerator::new(1000.0, -20.0, 16_000).unwrap();
        assert_eq!(g.frame_len(), 320);
        assert_eq!(
            ToneGenerator::new(1000.0, 0.0, 8000).unwrap().frame_len(),
            160
        );
        // Frame by frame equals all at once: the phase carries over.
        let framed = tone(440.0, -6.0, 8000, 10);
        let mut g = ToneGenerator::new(440.0, -6.0, 8000).unwrap();
        let mut whole = vec![0i16; 1600];
        g.fill(&mut whole);
        assert_eq!(framed, whole);
        // 1 kHz at 8000 Hz: 0, +A/√2, +A, … exactly.
        let t = tone(1000.0, 0.0, 8000, 1);
        assert_eq!(&t[..5], [0, 23_170, 32_767, 23_170, 0]);
    }

    #[test]
    fn measures_what_it_generates() {
        for (f, l, rate) in [
            (1000.0, -20.0, 8000),
            (440.0, -3.0, 8000),
            (3150.0, -30.0, 16_000),
            (300.0, -10.0, 16_000),
        ] {
            let m = measure(&tone(f, l, rate, 50), rate).unwrap();
            assert!((m.frequency_hz - f).abs() < f * 0.001, "{f}: {m:?}");
            assert!((m.level_dbfs - l).abs() < 0.05, "{l}: {m:?}");
            assert!(m.is_within(f, 0.02, l, 3.0));
            assert!(!m.is_within(f * 1.03, 0.02, l, 3.0));
            assert!(!m.is_within(f, 0.02, l - 4.0, 3.0));
            let g = goertzel_dbfs(&tone(f, l, rate, 50), rate, f);
            assert!((g - l).abs() < 0.1, "goertzel {g} for {l}");
            assert!(goertzel_dbfs(&tone(f, l, rate, 50), rate, f * 1.5) < l - 30.0);
        }
    }

    #[test]
    fn survives_g711_and_noise() {
        // Issue 12's acceptance through A-law and µ-law, with DC offset and noise added.
        let pcm = tone(1000.0, -20.0, 8000, 50);
        let mut codes = vec![0u8; pcm.len()];
        let mut back = vec![0i16; pcm.len()];
        g711::alaw_encode_slice(&pcm, &mut codes).unwrap();
        g711::alaw_decode_slice(&codes, &mut back).unwrap();
        let m = measure(&back, 8000).unwrap();
        assert!(m.is_within(1000.0, 0.02, -20.0, 3.0), "{m:?}");
        g711::ulaw_encode_slice(&pcm, &mut codes).unwrap();
        g711::ulaw_decode_slice(&codes, &mut back).unwrap();
        assert!(measure(&back, 8000)
            .unwrap()
            .is_within(1000.0, 0.02, -20.0, 3.0));
        // A deterministic pseudo-random noise at about -45 dBFS and a DC offset.
        let mut x: u32 = 1;
        let noisy: Vec<i16> = pcm
            .iter()
            .map(|&s| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                s + 200 + ((x >> 16) as i16 % 300)
            })
            .collect();
        let m = measure(&noisy, 8000).unwrap();
        assert!((m.frequency_hz - 1000.0).abs() < 20.0, "{m:?}");
    }

    #[test]
    fn errors() {
        assert_eq!(
            ToneGenerator::new(1000.0, -20.0, 0).err(),
            Some(ToneError::SampleRate)
        );
        assert_eq!(
            ToneGenerator::new(4000.0, -20.0, 8000).err(),
            Some(ToneError::Frequency(4000.0))
        );
        assert_eq!(
            ToneGenerator::new(0.0, -20.0, 8000).err(),
            Some(ToneError::Frequency(0.0))
        );
        assert_eq!(
            ToneGenerator::new(1000.0, 1.0, 8000).err(),
            Some(ToneError::Level(1.0))
        );
        assert!(ToneGenerator::new(1000.0, f64::NAN, 8000).is_err());
        assert_eq!(measure(&[0; 800], 8000), Err(ToneError::NoTone(0)));
        assert_eq!(measure(&[], 8000), Err(ToneError::NoTone(0)));
        assert_eq!(
            measure(&tone(1000.0, -20.0, 8000, 1)[..10], 8000),
            Err(ToneError::NoTone(1))
        );
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
        assert_eq!(rms_dbfs(&[0; 10]), f64::NEG_INFINITY);
    }
}
