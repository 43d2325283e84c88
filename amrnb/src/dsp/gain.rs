//! The MA predictor of the fixed-codebook gain (TS 26.090 §5.8.1 / §6.1 step 5), one copy for
//! the encoder and the decoder: both must predict from exactly the same memory or they drift.
//!
//! 12.2 predicts in log2 units with its own coefficients, the other modes in dB; as in the
//! reference, both memories are updated whatever the mode, so a mode change predicts from the
//! right history.

use crate::tables::gains as t;
use crate::Mode;

/// 20·log10(2): dB per log2 unit.
pub const DB_PER_LOG2: f32 = 6.020_6;
/// Floor and reset value of the dB memory, −14 dB (§5.8.2 initial state).
const MIN_QUA_ENER: f32 = -14.0;
/// Floor and reset value of the log2 memory (the same energy in log2 units, Q10 table value).
const MIN_QUA_ENER_122: f32 = -2381.0 / 1024.0;

/// Mean energy Ē of the fixed-codebook excitation per mode in dB (§5.8.1).
fn mean_energy(mode: Mode) -> f32 {
    match mode {
        Mode::MR475 | Mode::MR515 | Mode::MR59 | Mode::MR102 => 33.0,
        Mode::MR67 => 28.75,
        Mode::MR74 => 30.0,
        Mode::MR795 | Mode::MR122 => 36.0,
    }
}

/// E_I of §5.8.1: the mean energy of a code vector in dB.
pub fn innovation_db(code: &[f32; 40]) -> f32 {
    let en: f32 = code.iter().map(|c| c * c).sum::<f32>() / 40.0;
    10.0 * en.max(1e-6).log10()
}

/// Past quantised code-gain energies, both units.
#[derive(Debug, Clone)]
pub struct GainPredictor {
    /// Past quantised energies in dB (Q10 table values / 1024), newest first.
    past: [f32; 4],
    /// The same in log2 units, for 12.2.
    past122: [f32; 4],
}

impl Default for GainPredictor {
    fn default() -> Self {
        GainPredictor {
            past: [MIN_QUA_ENER; 4],
            past122: [MIN_QUA_ENER_122; 4],
        }
    }
}

impl GainPredictor {
    /// Predicted gain g'c of the (sharpened) code vector `code`:
    /// 10^((Ē + Σ bᵢ Rᵢ − E_I)/20), E_I the code's mean energy in dB.
    pub fn predict(&self, mode: Mode, code: &[f32; 40]) -> f32 {
        self.predict_db(mode, innovation_db(code))
    }

    /// [`GainPredictor::predict`] with the code's energy E_I (dB) already known.
    pub fn predict_db(&self, mode: Mode, ei: f32) -> f32 {
        let pred = if mode == Mode::MR122 {
            DB_PER_LOG2
                * t::GC_PRED_MR122
                    .iter()
                    .zip(self.past122.iter())
                    .map(|(&b, p)| f32::from(b) / 64.0 * p)
                    .sum::<f32>()
        } else {
            // The reference's Q13 coefficients (5571, 4751, 2785, 1556) to two decimals.
            const B: [f32; 4] = [0.68, 0.58, 0.34, 0.19];
            B.iter()
                .zip(self.past.iter())
                .map(|(b, p)| b * p)
                .sum::<f32>()
        };
        10f32.powf(0.05 * (mean_energy(mode) + pred - ei))
    }

    /// Shifts in the quantised energies of the chosen correction factor (the tables' Q10
    /// values: log2 for 12.2, dB for the others).
    pub fn update(&mut self, qua_ener_122: i16, qua_ener: i16) {
        self.push(
            f32::from(qua_ener_122) / 1024.0,
            f32::from(qua_ener) / 1024.0,
        );
    }

    /// Shifts in a correction factor γ that comes without table energies (4.75's joint table).
    pub fn update_gamma(&mut self, gamma: f32) {
        let l2 = gamma.max(1e-6).log2();
        self.push(l2, l2 * DB_PER_LOG2);
    }

    /// Bad-frame update (TS 26.091 §6.2.3): shifts in the mean of the memory, floored.
    pub fn update_concealed(&mut self) {
        let avg = (self.past.iter().sum::<f32>() / 4.0).max(MIN_QUA_ENER);
        let avg122 = (self.past122.iter().sum::<f32>() / 4.0).max(MIN_QUA_ENER_122);
        self.push(avg122, avg);
    }

    fn push(&mut self, log2: f32, db: f32) {
        self.past.copy_within(0..3, 1);
        self.past122.copy_within(0..3, 1);
        self.past[0] = db;
        self.past122[0] = log2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_correction_keeps_the_prediction_at_the_mean() {
        // A memory of 0 dB corrections predicts the mode's mean energy: a code vector of mean
        // energy 1 (0 dB) then gets gain 10^(Ē/20).
        let mut p = GainPredictor::default();
        for _ in 0..4 {
            p.update(0, 0);
        }
        let mut code = [0f32; 40];
        code.fill(1.0);
        let g = p.predict(Mode::MR74, &code);
        assert!((g - 10f32.powf(30.0 / 20.0)).abs() < 1e-2, "{g}");
        let g = p.predict(Mode::MR122, &code);
        assert!((g - 10f32.powf(36.0 / 20.0)).abs() < 1e-2, "{g}");
    }

    #[test]
    fn concealment_floors_the_memory() {
        let mut p = GainPredictor::default();
        for _ in 0..8 {
            p.update_concealed();
        }
        assert!(p.past.iter().all(|&e| e >= MIN_QUA_ENER));
    }
}
