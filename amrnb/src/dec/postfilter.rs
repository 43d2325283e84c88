//! Adaptive post-filter (TS 26.090 §6.2.1-6.2.3): formant filter A(z/γn)/A(z/γd), tilt
//! compensation 1 − μz⁻¹ and adaptive gain control back to the input level.

use crate::dsp::filter::{residual, synthesis};
use crate::dsp::lsp::weight;
use crate::dsp::Lpc;
use crate::{Mode, FRAME_SAMPLES, LPC_ORDER as M, SUBFRAME_SAMPLES as L};

/// Smoothing of the gain control (§6.2.3).
const AGC_FAC: f32 = 0.9;
/// Tilt factor scale: μ = 0.8·r1/r0 of the formant filter's impulse response.
const MU: f32 = 0.8;
/// Length of the impulse response the tilt is measured on.
const L_H: usize = 22;

/// Post-filter memories.
#[derive(Debug, Clone)]
pub struct PostFilter {
    /// The unfiltered synthesis: 10 samples of history, then the current frame.
    hist: [f32; M + FRAME_SAMPLES],
    /// Previous output of the tilt filter's input (its one-sample memory).
    tilt_mem: f32,
    /// Memory of the formant synthesis part.
    syn_mem: [f32; M],
    /// Gain of the gain control at the end of the previous subframe.
    past_gain: f32,
}

impl PostFilter {
    /// Zero memories.
    pub fn new() -> Self {
        PostFilter {
            hist: [0.0; M + FRAME_SAMPLES],
            tilt_mem: 0.0,
            syn_mem: [0.0; M],
            past_gain: 1.0,
        }
    }

    /// Filters one frame of synthesis `syn` with the four subframe filters `az` into `out`.
    pub fn run(
        &mut self,
        mode: Mode,
        az: &[Lpc; 4],
        syn: &[f32; FRAME_SAMPLES],
        out: &mut [f32; FRAME_SAMPLES],
    ) {
        let (gn, gd) = if matches!(mode, Mode::MR122 | Mode::MR102) {
            (0.7, 0.75)
        } else {
            (0.55, 0.7)
        };
        self.hist[M..].copy_from_slice(syn);
        for (sf, a) in az.iter().enumerate() {
            let mut an: Lpc = [0.0; M + 1];
            let mut ad: Lpc = [0.0; M + 1];
            weight(a, gn, &mut an);
            weight(a, gd, &mut ad);
            let mut res = [0f32; L];
            residual(&an, &self.hist, M + sf * L, &mut res);

            // Tilt of the formant filter from its impulse response.
            let mut h_in = [0f32; L_H];
            h_in[..=M].copy_from_slice(&an);
            let mut h = [0f32; L_H];
            let mut zero = [0f32; M];
            synthesis(&ad, &h_in, &mut h, &mut zero, false);
            let r0: f32 = h.iter().map(|v| v * v).sum();
            let r1: f32 = h.windows(2).map(|w| w[0] * w[1]).sum();
            let mu = if r1 > 0.0 && r0 > 0.0 {
                MU * r1 / r0
            } else {
                0.0
            };
            for v in res.iter_mut() {
                let x = *v;
                *v = x - mu * self.tilt_mem;
                self.tilt_mem = x;
            }

            let o = &mut out[sf * L..(sf + 1) * L];
            synthesis(&ad, &res, o, &mut self.syn_mem, true);
            self.gain_control(&syn[sf * L..(sf + 1) * L], o);
        }
        self.hist.copy_within(FRAME_SAMPLES.., 0);
        if !self.syn_mem.iter().all(|v| v.is_finite()) {
            *self = PostFilter::new();
        }
    }

    /// Scales `out` toward the energy of `input`, smoothly from sample to sample (§6.2.3).
    fn gain_control(&mut self, input: &[f32], out: &mut [f32]) {
        let e_out: f32 = out.iter().map(|v| v * v).sum();
        if e_out <= 0.0 {
            self.past_gain = 0.0;
            return;
        }
        let e_in: f32 = input.iter().map(|v| v * v).sum();
        let g0 = (1.0 - AGC_FAC) * (e_in / e_out).sqrt();
        let mut g = self.past_gain;
        for v in out.iter_mut() {
            g = g * AGC_FAC + g0;
            *v *= g;
        }
        self.past_gain = g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_level_of_a_flat_spectrum() {
        let mut pf = PostFilter::new();
        let mut a: Lpc = [0.0; M + 1];
        a[0] = 1.0;
        let az = [a; 4];
        let syn: [f32; 160] = core::array::from_fn(|n| 1000.0 * (n as f32 * 0.7).sin());
        let mut out = [0f32; 160];
        for _ in 0..5 {
            pf.run(Mode::MR122, &az, &syn, &mut out);
        }
        let e_in: f32 = syn.iter().map(|v| v * v).sum();
        let e_out: f32 = out.iter().map(|v| v * v).sum();
        assert!((e_out / e_in - 1.0).abs() < 0.1, "{}", e_out / e_in);
    }
}
