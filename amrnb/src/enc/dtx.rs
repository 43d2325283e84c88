//! Discontinuous transmission on the sending side: the TX DTX handler of TS 26.093 §4.2 and
//! the comfort-noise parameters of TS 26.092 §5.
//!
//! After the VAD ([`super::vad`]) goes quiet, seven more frames are coded as speech (the
//! hangover: the receiver averages them into its first comfort noise), unless the last SID is
//! recent enough that the receiver still has good parameters; then a SID_FIRST, a SID_UPDATE
//! three frames later and every eighth frame after that, NO_DATA in between. The SID carries
//! the mean LSFs and the mean log energy of the last eight frames.

use crate::bits::Sid;
use crate::{Mode, LPC_ORDER as M};

/// Speech frames coded after the VAD goes quiet (DTX_HANG_CONST).
const HANGOVER: u32 = 7;
/// If fewer frames than this passed since the last SID analysis, no hangover is needed.
const ELAPSED_THRESH: u32 = 30;
/// Frames from one SID_UPDATE to the next.
const SID_UPDATE_RATE: u32 = 8;
/// Frames the comfort-noise parameters are averaged over.
const HIST: usize = 8;

/// What the handler decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxType {
    /// A speech frame.
    Speech,
    /// The first SID after speech (STI = 0).
    SidFirst,
    /// A SID with new parameters (STI = 1).
    SidUpdate,
    /// Nothing sent.
    NoData,
}

/// TX DTX state of one encoder.
#[derive(Debug, Clone)]
pub struct Dtx {
    hangover: u32,
    elapsed: u32,
    sid_counter: u32,
    prev_speech: bool,
    lsf_hist: [[f32; M]; HIST],
    log_en_hist: [f32; HIST],
    hist_at: usize,
}

impl Default for Dtx {
    fn default() -> Self {
        Dtx {
            hangover: HANGOVER,
            // As if the last SID were long ago: the first pause gets its hangover.
            elapsed: u32::MAX / 2,
            sid_counter: 0,
            prev_speech: true,
            lsf_hist: [[0.0; M]; HIST],
            log_en_hist: [-20.0; HIST],
            hist_at: 0,
        }
    }
}

impl Dtx {
    /// Keeps this frame's unquantised LSFs and pre-processed samples for the SID averages.
    pub fn buffer(&mut self, lsf: &[f32; M], x: &[f32]) {
        let en = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        // log2 of the RMS, the unit of the SID energy.
        self.log_en_hist[self.hist_at] = 0.5 * en.max(1e-12).log2();
        self.lsf_hist[self.hist_at] = *lsf;
        self.hist_at = (self.hist_at + 1) % HIST;
    }

    /// The frame type for this frame given the VAD flag (the TX DTX handler and SID
    /// synchronisation).
    pub fn handle(&mut self, vad: bool) -> TxType {
        self.elapsed = self.elapsed.saturating_add(1);
        let dtx = if vad {
            self.hangover = HANGOVER;
            false
        } else if self.hangover == 0 {
            self.elapsed = 0;
            true
        } else {
            self.hangover -= 1;
            self.elapsed.saturating_add(self.hangover) < ELAPSED_THRESH
        };
        let t = if !dtx {
            TxType::Speech
        } else if self.prev_speech {
            self.sid_counter = 3;
            TxType::SidFirst
        } else {
            self.sid_counter = self.sid_counter.saturating_sub(1);
            if self.sid_counter == 0 {
                self.sid_counter = SID_UPDATE_RATE;
                TxType::SidUpdate
            } else {
                TxType::NoData
            }
        };
        self.prev_speech = t == TxType::Speech;
        t
    }

    /// The SID parameters from the buffered frames, and the quantised LSFs the receiver
    /// rebuilds.
    pub fn sid(&self, mode: Mode, update: bool) -> (Sid, [f32; M]) {
        let mut lsf = [0f32; M];
        for h in &self.lsf_hist {
            for (l, &v) in lsf.iter_mut().zip(h) {
                *l += v / HIST as f32;
            }
        }
        let log_en = self.log_en_hist.iter().sum::<f32>() / HIST as f32;
        let (idx, q) = super::lsfq::quantise_sid(&lsf);
        // 6 bits: quarter steps of log2 RMS from −2.5; 0 is silence.
        let e = ((log_en + 2.5) * 4.0).floor().clamp(0.0, 63.0) as i16;
        let sid = Sid {
            params: [
                idx[0] as i16,
                idx[1] as i16,
                idx[2] as i16,
                idx[3] as i16,
                e,
            ],
            update,
            mode: mode.frame_type(),
        };
        (sid, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangover_sid_first_then_update_every_eighth() {
        let mut d = Dtx::default();
        for _ in 0..10 {
            assert_eq!(d.handle(true), TxType::Speech);
        }
        let seq: Vec<TxType> = (0..30).map(|_| d.handle(false)).collect();
        assert!(seq[..7].iter().all(|&t| t == TxType::Speech), "{seq:?}");
        assert_eq!(seq[7], TxType::SidFirst);
        assert_eq!(
            &seq[8..11],
            &[TxType::NoData, TxType::NoData, TxType::SidUpdate]
        );
        assert_eq!(seq[18], TxType::SidUpdate);
        assert_eq!(seq[26], TxType::SidUpdate);
        assert_eq!(seq.iter().filter(|&&t| t == TxType::NoData).count(), 19);
        // A short burst soon after: no hangover, straight back to SID.
        assert_eq!(d.handle(true), TxType::Speech);
        assert_eq!(d.handle(false), TxType::SidFirst);
    }
}
