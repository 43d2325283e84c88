//! AMR-NB speech encoder (3GPP TS 26.090 §5), all eight modes, floating point.
//!
//! One call of [`Encoder::encode`] takes 20 ms (160 samples at 8 kHz) and writes one frame's
//! speech bits in the class order of TS 26.101 Annex B (= RFC 4867 storage order), MSB first.
//! The analysis looks 5 ms ahead, so the decoded speech lags the input by 40 samples plus the
//! decoder's own delay.
//!
//! Not bit-exact with the TS 26.073 fixed-point reference: the searches follow the standard's
//! criteria in floating point and some are simpler (exhaustive search of the 2–4 pulse
//! codebooks, pairwise refinement of the 8- and 10-pulse ones, nearest-entry scalar gains, a
//! three-range open-loop pitch without the reference's weighting details). The bitstream is the
//! standard's, so any conforming decoder plays it; through the reference decoder the SNR is
//! within about 1.5 dB of the reference encoder's (tests/enc_opencore.rs prints both).
//!
//! DTX is off by default: every frame is a speech frame of the mode asked for. With
//! [`Encoder::with_dtx`] a voice activity detector ([`vad`], after TS 26.094 option 1) and
//! the TX DTX handler ([`dtx`], TS 26.093) turn pauses into SID frames (comfort-noise
//! parameters of TS 26.092) and NO_DATA; [`Encoder::encode_frame`] says which was written.

// The searches index several arrays at related offsets (h[n − i], Φ[i][j]); index loops keep
// them readable as the equations of the standard.
#![allow(clippy::needless_range_loop)]

mod acelp;
pub mod dtx;
mod gain;
mod lsfq;
mod pitch;
pub mod vad;

use crate::dsp::filter::{autocorrelation, lag_window, levinson, residual, synthesis, Biquad};
use crate::dsp::lsp::{interpolate, lpc_to_lsp, lsf_to_lsp, lsp_to_lpc, lsp_to_lsf, weight};
use crate::dsp::pitch::{adaptive_vector, HISTORY as EXC_HIST};
use crate::dsp::Lpc;
use crate::tables::filters::{HP_PRE_A, HP_PRE_B, WINDOW_160_80, WINDOW_200_40, WINDOW_232_8};
use crate::tables::lsf::LSP_INIT_DATA;
use crate::{Mode, FT_NO_DATA, FT_SID, LPC_ORDER as M, MAX_PARAMS, SID_BITS};
use gain::{Corr, GainPredictor};
use pitch::{Cands, Lag, Lag3, Lag6};

/// What can go wrong encoding a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is shorter than the mode's frame.
    #[error("output buffer of {got} octets, the frame needs {need}")]
    Buffer {
        /// Octets the frame takes.
        need: usize,
        /// Octets given.
        got: usize,
    },
    /// A frame type that is not a speech mode (0–7) given to [`Encoder::encode_frame_type`].
    #[error("frame type {0} is not an AMR-NB speech mode")]
    Mode(u8),
    /// Not 160 samples given to [`Encoder::encode_frame_type`].
    #[error("{0} samples given, a frame is 160")]
    Samples(usize),
}

/// Weighted-speech history for the open-loop search.
const WSP_HIST: usize = 143;
/// Where the frame being coded starts in the speech buffer (5 ms look-ahead after it).
const FRAME: usize = 120;
/// Largest pitch gain used (§5.6).
const GP_MAX: f32 = 1.2;
/// Cap of the pitch sharpening factor (the decoder's SHARPMAX, 13017 in Q14).
const SHARP_MAX: f32 = 13017.0 / 16384.0;

/// Pitch-gain ceiling while a resonance persists (the reference's GP_CLIP, 0.95).
const GP_CLIP: f32 = 15565.0 / 16384.0;

/// Tone stabilisation (TS 26.090 §5.6, the reference's check_lsp / check_gp_clipping): a
/// strong, lasting resonance (a pure tone) with pitch gains near one makes the long-term
/// predictor loop fragile in a decoder that does not compute exactly as the encoder did (the
/// fixed-point reference against this floating-point encoder), so the pitch gain is kept at
/// or below 0.95 then.
#[derive(Debug, Clone, Default)]
struct ToneStab {
    count: u32,
    gp: [f32; 7],
}

impl ToneStab {
    /// Whether the frame's (unquantised) LSPs show a resonance that has lasted 12 frames: two
    /// neighbouring LSPs closer than the reference's thresholds (cosine domain).
    fn check_lsp(&mut self, lsp: &[f32; M]) -> bool {
        let d1 = (3..M - 2)
            .map(|i| lsp[i] - lsp[i + 1])
            .fold(f32::MAX, f32::min);
        let d2 = (1..3).map(|i| lsp[i] - lsp[i + 1]).fold(f32::MAX, f32::min);
        let th = if lsp[1] > 32000.0 / 32768.0 {
            600.0
        } else if lsp[1] > 30500.0 / 32768.0 {
            800.0
        } else {
            1100.0
        } / 32768.0;
        if d1 < 1500.0 / 32768.0 || d2 < th {
            self.count = (self.count + 1).min(12);
        } else {
            self.count = 0;
        }
        self.count >= 12
    }

    /// Whether the mean of this and the last seven pitch gains is above the ceiling.
    fn clipping(&self, gp: f32) -> bool {
        (gp + self.gp.iter().sum::<f32>()) / 8.0 > GP_CLIP
    }

    /// Shifts in a subframe's quantised pitch gain.
    fn update(&mut self, gp: f32) {
        self.gp.copy_within(1.., 0);
        self.gp[6] = gp;
    }
}

/// Saved filter memories (4.75 re-runs a subframe once its gains are known).
#[derive(Debug, Clone, Copy)]
struct Mems {
    syn: [f32; M],
    w0: [f32; M],
    err: [f32; M],
}

/// 4.75's even subframe waiting for the joint gain quantisation in the odd one.
struct Pending {
    mems: Mems,
    sub: Sub,
    x: [f32; 40],
    v: [f32; 40],
    y1: [f32; 40],
    /// Where its gain index goes in the parameter list.
    slot: usize,
    /// Its pitch-gain ceiling.
    gp_limit: f32,
}

/// Everything one subframe's search produced that its memory update needs.
#[derive(Debug, Clone, Copy)]
struct Sub {
    aq: Lpc,
    code: [f32; 40],
    y2: [f32; 40],
}

/// AMR-NB encoder state for one direction of one call.
pub struct Encoder {
    hp: Biquad,
    speech: [f32; 320],
    wsp: [f32; WSP_HIST + 160],
    exc: [f32; EXC_HIST + 160],
    lsp_old: [f32; M],
    lsp_old_q: [f32; M],
    lsfq: lsfq::LsfQuant,
    mem: Mems,
    mem_wsp: [f32; M],
    old_t0: i32,
    sharp: f32,
    ton: ToneStab,
    gpred: GainPredictor,
    cands: Cands,
    /// DTX state, when on.
    dtx: Option<Box<DtxState>>,
}

/// The VAD and TX DTX handler of an encoder with DTX on.
#[derive(Debug, Clone, Default)]
struct DtxState {
    vad: vad::Vad,
    tx: dtx::Dtx,
    /// The VAD flag of the frame being coded.
    flag: bool,
}

/// What [`Encoder::encode_frame`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// RFC 4867 frame type: the speech mode (0–7), [`FT_SID`] or [`FT_NO_DATA`].
    pub frame_type: u8,
    /// Octets written (0 for NO_DATA).
    pub len: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// A fresh encoder (the reset state of §5 and of the decoder it talks to).
    pub fn new() -> Encoder {
        let mut lsp = [0.0f32; M];
        for (l, &v) in lsp.iter_mut().zip(LSP_INIT_DATA.iter()) {
            *l = f32::from(v) / 32768.0;
        }
        let q12 = |v: i16| f32::from(v) / 4096.0;
        Encoder {
            hp: Biquad::new(
                [q12(HP_PRE_B[0]), q12(HP_PRE_B[1]), q12(HP_PRE_B[2])],
                [q12(HP_PRE_A[1]), q12(HP_PRE_A[2])],
            ),
            speech: [0.0; 320],
            wsp: [0.0; WSP_HIST + 160],
            exc: [0.0; EXC_HIST + 160],
            lsp_old: lsp,
            lsp_old_q: lsp,
            lsfq: lsfq::LsfQuant::default(),
            mem: Mems {
                syn: [0.0; M],
                w0: [0.0; M],
                err: [0.0; M],
            },
            mem_wsp: [0.0; M],
            old_t0: 40,
            sharp: SHARP_MAX,
            ton: ToneStab::default(),
            gpred: GainPredictor::default(),
            cands: Cands::new(),
            dtx: None,
        }
    }

    /// This encoder with DTX on or off (TS 26.093): with it on, pauses are sent as SID and
    /// NO_DATA frames (see [`Encoder::encode_frame`]).
    pub fn with_dtx(mut self, on: bool) -> Encoder {
        self.set_dtx(on);
        self
    }

    /// Turns DTX on or off from the next frame.
    pub fn set_dtx(&mut self, on: bool) {
        match (on, self.dtx.is_some()) {
            (true, false) => self.dtx = Some(Box::default()),
            (false, true) => self.dtx = None,
            _ => {}
        }
    }

    /// [`Encoder::encode`] for callers holding a frame type (RFC 4867 FT / CMR, 0–7) and a
    /// sample slice, such as `media::codec`; both are checked.
    pub fn encode_frame_type(
        &mut self,
        frame_type: u8,
        pcm: &[i16],
        out: &mut [u8],
    ) -> Result<Frame, EncodeError> {
        let mode = Mode::from_frame_type(frame_type).ok_or(EncodeError::Mode(frame_type))?;
        let pcm: &[i16; 160] = pcm
            .try_into()
            .map_err(|_| EncodeError::Samples(pcm.len()))?;
        self.encode_frame(mode, pcm, out)
    }

    /// Encodes one 20 ms frame at `mode` into `out` (at least `ceil(bits/8)` octets):
    /// returns the octets written, the speech bits MSB first in RFC 4867 order, the last
    /// octet zero-padded. With DTX on the frame may be a SID or NO_DATA instead; use
    /// [`Encoder::encode_frame`] to learn which.
    pub fn encode(
        &mut self,
        mode: Mode,
        pcm: &[i16; 160],
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        self.encode_frame(mode, pcm, out).map(|f| f.len)
    }

    /// Encodes one 20 ms frame: a speech frame of `mode`, or with DTX on possibly a SID
    /// ([`SID_BITS`] bits: 35 parameter bits, STI, mode indication) or NO_DATA (nothing).
    /// `out` must hold the mode's speech frame whatever comes out.
    pub fn encode_frame(
        &mut self,
        mode: Mode,
        pcm: &[i16; 160],
        out: &mut [u8],
    ) -> Result<Frame, EncodeError> {
        let need = mode.octets();
        if out.len() < need {
            return Err(EncodeError::Buffer {
                need,
                got: out.len(),
            });
        }
        let mut prm = [0u16; MAX_PARAMS];
        let nprm = self.frame(mode, pcm, &mut prm);
        let tx = match self.dtx.as_deref_mut() {
            Some(d) => d.tx.handle(d.flag),
            None => dtx::TxType::Speech,
        };
        let update = match tx {
            dtx::TxType::Speech => {
                let mut p16 = [0i16; MAX_PARAMS];
                for (d, &s) in p16.iter_mut().zip(prm[..nprm].iter()) {
                    *d = s as i16;
                }
                let len = crate::bits::pack(mode, &p16[..nprm], out).map_err(|_| {
                    EncodeError::Buffer {
                        need,
                        got: out.len(),
                    }
                })?;
                return Ok(Frame {
                    frame_type: mode.frame_type(),
                    len,
                });
            }
            dtx::TxType::NoData => None,
            dtx::TxType::SidFirst => Some(false),
            dtx::TxType::SidUpdate => Some(true),
        };
        // A pause: the receiver makes comfort noise and restarts its speech state, so this
        // side forgets the speech it coded as well (excitation, predictors) and continues
        // from the comfort-noise spectrum.
        self.exc = [0.0; EXC_HIST + 160];
        self.gpred = GainPredictor::default();
        self.lsfq = lsfq::LsfQuant::default();
        let Some(update) = update else {
            return Ok(Frame {
                frame_type: FT_NO_DATA,
                len: 0,
            });
        };
        let Some(d) = self.dtx.as_deref() else {
            return Err(EncodeError::Mode(FT_SID));
        };
        let (sid, q) = d.tx.sid(mode, update);
        lsf_to_lsp(&q, &mut self.lsp_old_q);
        let len = crate::bits::pack_sid(&sid, out).map_err(|_| EncodeError::Buffer {
            need: SID_BITS.div_ceil(8),
            got: out.len(),
        })?;
        Ok(Frame {
            frame_type: FT_SID,
            len,
        })
    }

    /// The codec parameters of one frame, in the order of TS 26.101 Table B's parameter lists.
    fn frame(&mut self, mode: Mode, pcm: &[i16; 160], prm: &mut [u16; MAX_PARAMS]) -> usize {
        for (o, &x) in self.speech[160..].iter_mut().zip(pcm.iter()) {
            *o = self.hp.step(f32::from(x));
        }
        if let Some(d) = self.dtx.as_deref_mut() {
            let (prev, new) = self.speech.split_at(160);
            let new: &[f32; 160] = new.try_into().unwrap_or(&[0.0; 160]);
            d.flag = d.vad.decide(prev, new);
        }

        // LP analysis and LSP quantisation (§5.2).
        let mut np = 0;
        let mut lsp_new = self.lsp_old;
        let mut lsp_mid = self.lsp_old;
        let mut lsp_new_q = [0.0f32; M];
        let mut lsp_mid_q = [0.0f32; M];
        if mode == Mode::MR122 {
            // Two analyses without look-ahead, centred on the 2nd and 4th subframes.
            analyse(
                &self.speech[40..280],
                &WINDOW_160_80,
                &self.lsp_old,
                &mut lsp_mid,
            );
            analyse(
                &self.speech[40..280],
                &WINDOW_232_8,
                &self.lsp_old,
                &mut lsp_new,
            );
            let mut f1 = [0.0; M];
            let mut f2 = [0.0; M];
            lsp_to_lsf(&lsp_mid, &mut f1);
            lsp_to_lsf(&lsp_new, &mut f2);
            let mut q1 = [0.0; M];
            let mut q2 = [0.0; M];
            self.lsfq
                .quantise5(&f1, &f2, &mut prm[..5], &mut q1, &mut q2);
            lsf_to_lsp(&q1, &mut lsp_mid_q);
            lsf_to_lsp(&q2, &mut lsp_new_q);
            np = 5;
        } else {
            analyse(
                &self.speech[80..320],
                &WINDOW_200_40,
                &self.lsp_old,
                &mut lsp_new,
            );
            let mut f = [0.0; M];
            lsp_to_lsf(&lsp_new, &mut f);
            let mut q = [0.0; M];
            self.lsfq.quantise3(mode, &f, &mut prm[..3], &mut q);
            lsf_to_lsp(&q, &mut lsp_new_q);
            np += 3;
        }

        // Per-subframe filters: unquantised for weighting, quantised for synthesis (§5.2.6).
        let mut a_sf = [[0.0f32; M + 1]; 4];
        let mut aq_sf = [[0.0f32; M + 1]; 4];
        for sf in 0..4 {
            if mode == Mode::MR122 {
                let (o, n, oq, nq, w) = match sf {
                    0 => (&self.lsp_old, &lsp_mid, &self.lsp_old_q, &lsp_mid_q, 0.5),
                    1 => (&lsp_mid, &lsp_mid, &lsp_mid_q, &lsp_mid_q, 1.0),
                    2 => (&lsp_mid, &lsp_new, &lsp_mid_q, &lsp_new_q, 0.5),
                    _ => (&lsp_new, &lsp_new, &lsp_new_q, &lsp_new_q, 1.0),
                };
                a_sf[sf] = interp_az(o, n, w);
                aq_sf[sf] = interp_az(oq, nq, w);
            } else {
                let w = 0.25 * (sf + 1) as f32;
                a_sf[sf] = interp_az(&self.lsp_old, &lsp_new, w);
                aq_sf[sf] = interp_az(&self.lsp_old_q, &lsp_new_q, w);
            }
        }
        self.lsp_old = lsp_new;
        self.lsp_old_q = lsp_new_q;
        if let Some(d) = self.dtx.as_deref_mut() {
            let mut f = [0.0; M];
            lsp_to_lsf(&lsp_new, &mut f);
            d.tx.buffer(&f, &self.speech[160..]);
        }

        // Weighted speech and open-loop pitch (§5.3–5.4).
        let gamma1 = if matches!(mode, Mode::MR122 | Mode::MR102) {
            0.9
        } else {
            0.94
        };
        let mut aw1_sf = [[0.0f32; M + 1]; 4];
        let mut aw2_sf = [[0.0f32; M + 1]; 4];
        for sf in 0..4 {
            weight(&a_sf[sf], gamma1, &mut aw1_sf[sf]);
            weight(&a_sf[sf], 0.6, &mut aw2_sf[sf]);
            let mut r = [0.0f32; 40];
            residual(&aw1_sf[sf], &self.speech, FRAME + 40 * sf, &mut r);
            let w0 = WSP_HIST + 40 * sf;
            synthesis(
                &aw2_sf[sf],
                &r,
                &mut self.wsp[w0..w0 + 40],
                &mut self.mem_wsp,
                true,
            );
        }
        let resonance = self.ton.check_lsp(&lsp_new);
        let pit_min = if mode == Mode::MR122 {
            pitch::PIT_MIN_122
        } else {
            pitch::PIT_MIN
        };
        let t_op = if matches!(mode, Mode::MR475 | Mode::MR515) {
            let t = pitch::open_loop(&self.wsp, WSP_HIST, 160, pit_min);
            [t, t]
        } else {
            [
                pitch::open_loop(&self.wsp, WSP_HIST, 80, pit_min),
                pitch::open_loop(&self.wsp, WSP_HIST + 80, 80, pit_min),
            ]
        };

        // Subframes (§5.5–5.9).
        let mut pending: Option<Pending> = None;
        for sf in 0..4 {
            let aq = aq_sf[sf];
            let (x, h) = self.target(sf, &aq, &aw1_sf[sf], &aw2_sf[sf]);
            let mut res = [0.0f32; 40];
            residual(&aq, &self.speech, FRAME + 40 * sf, &mut res);

            // Adaptive codebook.
            let ep = EXC_HIST + 40 * sf;
            let (lag, lag_idx) = self.pitch_search(mode, sf, &t_op, &x, &h);
            prm[np] = lag_idx;
            np += 1;
            let res_n = if mode == Mode::MR122 { 6 } else { 3 };
            adaptive_vector(&mut self.exc, ep, lag.t0 as usize, lag.frac, res_n, 40);
            let v: [f32; 40] = self.exc[ep..ep + 40].try_into().unwrap_or([0.0; 40]);
            let mut y1 = [0.0f32; 40];
            pitch::convolve(&v, &h, &mut y1);
            let c1 = Corr::new(&x, &y1, &y1);
            let mut gp = if c1.yy1 > 0.0 {
                (c1.xy1 / c1.yy1).clamp(0.0, GP_MAX)
            } else {
                0.0
            };
            // 12.2's loop (1/6 lags, gains up to 1.2) drifts in the fixed-point reference decoder on
            // steady tones even below the resonance test's thresholds: it clips on gain alone.
            let gp_limit = if (resonance || mode == Mode::MR122) && self.ton.clipping(gp) {
                GP_CLIP
            } else {
                GP_MAX
            };
            gp = gp.min(gp_limit);
            let mut gp_idx = 0;
            if matches!(mode, Mode::MR122 | Mode::MR795) {
                let (i, g) = gain::quant_pitch(mode, gp, gp_limit);
                gp_idx = i;
                gp = g;
            }
            if mode == Mode::MR122 {
                prm[np] = gp_idx;
                np += 1;
            }

            // Fixed codebook on the target without the pitch contribution.
            let mut x2 = [0.0f32; 40];
            let mut res2 = [0.0f32; 40];
            for n in 0..40 {
                x2[n] = x[n] - gp * y1[n];
                res2[n] = res[n] - gp * v[n];
            }
            let beta = if mode == Mode::MR122 {
                gp.min(32767.0 / 32768.0)
            } else {
                self.sharp
            };
            let mut h2 = h;
            if lag.t0 < 40 {
                for n in lag.t0 as usize..40 {
                    h2[n] += beta * h2[n - lag.t0 as usize];
                }
            }
            let mut d = [0.0f32; 40];
            for (n, dn) in d.iter_mut().enumerate() {
                *dn = (n..40).map(|k| x2[k] * h2[k - n]).sum();
            }
            let phi = correlations(&h2);
            let mut code = [0.0f32; 40];
            let nc = acelp::search(
                mode,
                sf,
                &acelp::Search {
                    d: &d,
                    phi: &phi,
                    res: &res2,
                },
                &mut prm[np..],
                &mut code,
            );
            np += nc;
            if lag.t0 < 40 {
                for n in lag.t0 as usize..40 {
                    code[n] += beta * code[n - lag.t0 as usize];
                }
            }
            let mut y2 = [0.0f32; 40];
            pitch::convolve(&code, &h, &mut y2);
            let corr = Corr::new(&x, &y1, &y2);
            let gc0 = self.gpred.predict(mode, &code);
            let sub = Sub { aq, code, y2 };

            // Gains.
            let (gp_q, gc_q) = match mode {
                Mode::MR122 | Mode::MR795 => {
                    let gc = if corr.yy2 > 0.0 {
                        ((corr.xy2 - gp * corr.y1y2) / corr.yy2).max(0.0)
                    } else {
                        0.0
                    };
                    let (ci, gc_q) = gain::quant_code(&mut self.gpred, gc, gc0);
                    if mode == Mode::MR795 {
                        prm[np] = gp_idx;
                        np += 1;
                    }
                    prm[np] = ci;
                    np += 1;
                    (gp, gc_q)
                }
                Mode::MR475 => {
                    if sf % 2 == 0 {
                        // Provisional gains until the odd subframe quantises both.
                        let gc = if corr.yy2 > 0.0 {
                            ((corr.xy2 - gp * corr.y1y2) / corr.yy2).max(0.0)
                        } else {
                            0.0
                        };
                        pending = Some(Pending {
                            mems: self.mem,
                            sub,
                            x,
                            v,
                            y1,
                            slot: np,
                            gp_limit,
                        });
                        prm[np] = 0;
                        np += 1;
                        (gp, gc)
                    } else if let Some(p0) = pending.take() {
                        // Joint quantisation, then redo the even subframe with its real gains
                        // and rebuild this one's target on top.
                        let corr0 = Corr::new(&p0.x, &p0.y1, &p0.sub.y2);
                        let (gi, g) = gain::quant_475(
                            &mut self.gpred,
                            &corr0,
                            &p0.sub.code,
                            &corr,
                            &code,
                            gp_limit.min(p0.gp_limit),
                        );
                        prm[p0.slot] = gi;
                        self.mem = p0.mems;
                        self.post(sf - 1, &p0.sub, &p0.v, &p0.x, &p0.y1, g[0], g[1]);
                        let (x1, _) = self.target(sf, &aq, &aw1_sf[sf], &aw2_sf[sf]);
                        adaptive_vector(&mut self.exc, ep, lag.t0 as usize, lag.frac, 3, 40);
                        let v1: [f32; 40] = self.exc[ep..ep + 40].try_into().unwrap_or([0.0; 40]);
                        let mut y11 = [0.0f32; 40];
                        pitch::convolve(&v1, &h, &mut y11);
                        self.post(sf, &sub, &v1, &x1, &y11, g[2], g[3]);
                        self.sharp = g[2].min(SHARP_MAX);
                        self.ton.update(g[0]);
                        self.ton.update(g[2]);
                        self.old_t0 = lag.t0;
                        continue;
                    } else {
                        (gp, 0.0)
                    }
                }
                _ => {
                    let (gi, gp_q, gc_q) =
                        gain::quant_joint(mode, &mut self.gpred, &corr, gc0, gp_limit);
                    prm[np] = gi;
                    np += 1;
                    (gp_q, gc_q)
                }
            };
            self.post(sf, &sub, &v, &x, &y1, gp_q, gc_q);
            if mode != Mode::MR475 {
                self.sharp = gp_q.min(SHARP_MAX);
                self.ton.update(gp_q);
            }
            self.old_t0 = lag.t0;
        }

        self.speech.copy_within(160.., 0);
        self.wsp.copy_within(160.., 0);
        self.exc.copy_within(160.., 0);
        np
    }

    /// Target of the adaptive-codebook search (§5.5) and the weighted synthesis filter's
    /// impulse response, from the current memories.
    fn target(&self, sf: usize, aq: &Lpc, aw1: &Lpc, aw2: &Lpc) -> ([f32; 40], [f32; 40]) {
        let mut res = [0.0f32; 40];
        residual(aq, &self.speech, FRAME + 40 * sf, &mut res);
        // Error signal s − ŝ_zir, with its history.
        let mut err = [0.0f32; M + 40];
        err[..M].copy_from_slice(&self.mem.err);
        let mut m = self.mem.err;
        synthesis(aq, &res, &mut err[M..], &mut m, false);
        let mut xr = [0.0f32; 40];
        residual(aw1, &err, M, &mut xr);
        let mut x = [0.0f32; 40];
        let mut w0 = self.mem.w0;
        synthesis(aw2, &xr, &mut x, &mut w0, false);
        // Impulse response of A(z/γ1) / (Â(z) A(z/γ2)).
        let mut imp = [0.0f32; 40];
        imp[..=M].copy_from_slice(aw1);
        let mut h = [0.0f32; 40];
        let mut z = [0.0f32; M];
        synthesis(aq, &imp, &mut h, &mut z, false);
        let hh = h;
        let mut z = [0.0f32; M];
        synthesis(aw2, &hh, &mut h, &mut z, false);
        (x, h)
    }

    /// Closed-loop pitch of subframe `sf`: the lag and its code.
    fn pitch_search(
        &mut self,
        mode: Mode,
        sf: usize,
        t_op: &[i32; 2],
        x: &[f32; 40],
        h: &[f32; 40],
    ) -> (Lag, u16) {
        let ep = EXC_HIST + 40 * sf;
        let top = t_op[sf / 2];
        let out = if mode == Mode::MR122 {
            let absolute = sf % 2 == 0;
            let l = Lag6::new(absolute, self.old_t0);
            l.candidates(top - 3, top + 3, &mut self.cands);
            let lag = pitch::closed_loop(&self.exc, ep, x, h, 6, self.cands.as_slice());
            (lag, l.encode(lag))
        } else {
            let absolute = sf == 0 || (sf == 2 && !matches!(mode, Mode::MR475 | Mode::MR515));
            let flag4 = matches!(mode, Mode::MR475 | Mode::MR515 | Mode::MR59 | Mode::MR67);
            let l = Lag3::new(absolute, flag4, self.old_t0, mode == Mode::MR795);
            l.candidates(top - 3, top + 3, &mut self.cands);
            let lag = pitch::closed_loop(&self.exc, ep, x, h, 3, self.cands.as_slice());
            (lag, l.encode(lag))
        };
        out
    }

    /// Memory update of §5.9: excitation, synthesis, error and weighted-error memories.
    #[allow(clippy::too_many_arguments)]
    fn post(
        &mut self,
        sf: usize,
        s: &Sub,
        v: &[f32; 40],
        x: &[f32; 40],
        y1: &[f32; 40],
        gp: f32,
        gc: f32,
    ) {
        let ep = EXC_HIST + 40 * sf;
        let mut e = [0.0f32; 40];
        for n in 0..40 {
            e[n] = (gp * v[n] + gc * s.code[n]).round();
        }
        self.exc[ep..ep + 40].copy_from_slice(&e);
        let mut syn = [0.0f32; 40];
        synthesis(&s.aq, &e, &mut syn, &mut self.mem.syn, true);
        let sp = FRAME + 40 * sf;
        for i in 0..M {
            let n = 40 - M + i;
            self.mem.err[i] = self.speech[sp + n] - syn[n];
            self.mem.w0[i] = x[n] - gp * y1[n] - gc * s.y2[n];
        }
    }
}

/// Φ(i, j) = Σ_k h(k−i) h(k−j) of §5.7, the energy matrix of the filtered pulses.
fn correlations(h: &[f32; 40]) -> [[f32; 40]; 40] {
    let mut phi = [[0.0f32; 40]; 40];
    for delta in 0..40 {
        // Running sum from the end: Φ(39−m−δ, 39−m) grows one term per step.
        let mut acc = 0.0f32;
        for m in 0..40 - delta {
            acc += h[m] * h[m + delta];
            let j = 39 - m;
            let i = j - delta;
            phi[i][j] = acc;
            phi[j][i] = acc;
        }
    }
    phi
}

/// LP analysis of one 240-sample window (§5.2.1–5.2.3): autocorrelation, lag window,
/// Levinson-Durbin, LSPs. An unstable or degenerate frame keeps the previous LSPs.
fn analyse(x: &[f32], window: &[i16; 240], old: &[f32; M], lsp: &mut [f32; M]) {
    let mut seg = [0.0f32; 240];
    seg.copy_from_slice(&x[..240]);
    let mut r = [0.0f32; M + 1];
    autocorrelation(&seg, window, &mut r);
    lag_window(&mut r);
    let mut a = [0.0f32; M + 1];
    let mut rc = [0.0f32; M];
    if levinson(&r, &mut a, &mut rc) {
        lpc_to_lsp(&a, old, lsp);
    } else {
        *lsp = *old;
    }
}

/// A(z) of a subframe from LSPs interpolated between two sets (`w` of the new one).
fn interp_az(old: &[f32; M], new: &[f32; M], w: f32) -> Lpc {
    let mut l = [0.0f32; M];
    interpolate(old, new, w, &mut l);
    let mut a = [0.0f32; M + 1];
    lsp_to_lpc(&l, &mut a);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random samples.
    fn noise(seed: &mut u32) -> i16 {
        *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (*seed >> 16) as i16
    }

    #[test]
    fn with_dtx_voiced_speech_stays_speech_and_its_pause_goes_quiet() {
        // Pulses at a gliding pitch through a formant, 3 s, then 2 s of near silence.
        let mut enc = Encoder::new().with_dtx(true);
        let (mut phase, mut y1, mut y2) = (0.0f32, 0.0f32, 0.0f32);
        let mut seed = 5u32;
        let mut out = [0u8; 32];
        let mut types = Vec::new();
        for f in 0..250 {
            let mut pcm = [0i16; 160];
            for (n, s) in pcm.iter_mut().enumerate() {
                let t = (f * 160 + n) as f32 / 8000.0;
                phase += (120.0 + 40.0 * (t * 2.0).sin()) / 8000.0;
                let pulse = if phase >= 1.0 {
                    phase -= 1.0;
                    1.0
                } else {
                    0.0
                };
                let y = pulse + 1.7 * y1 - 0.9 * y2;
                (y2, y1) = (y1, y);
                let voiced = if f < 150 { y * 1500.0 } else { 0.0 };
                *s = (voiced + f32::from(noise(&mut seed)) / 3000.0) as i16;
            }
            types.push(
                enc.encode_frame(Mode::MR122, &pcm, &mut out)
                    .unwrap()
                    .frame_type,
            );
        }
        assert!(types[..150].iter().all(|&t| t == 7), "{types:?}");
        assert!(
            types[175..]
                .iter()
                .all(|&t| t == crate::FT_SID || t == crate::FT_NO_DATA),
            "{types:?}"
        );
    }

    #[test]
    fn short_output_buffer_is_an_error() {
        let mut enc = Encoder::new();
        let pcm = [0i16; 160];
        let mut out = [0u8; 30];
        assert_eq!(
            enc.encode(Mode::MR122, &pcm, &mut out),
            Err(EncodeError::Buffer { need: 31, got: 30 })
        );
        assert_eq!(enc.encode(Mode::MR475, &pcm, &mut out[..12]), Ok(12));
    }

    #[test]
    fn frame_type_and_sample_count_are_checked() {
        let mut enc = Encoder::new();
        let mut out = [0u8; 32];
        assert_eq!(
            enc.encode_frame_type(8, &[0; 160], &mut out),
            Err(EncodeError::Mode(8))
        );
        assert_eq!(
            enc.encode_frame_type(7, &[0; 159], &mut out),
            Err(EncodeError::Samples(159))
        );
        assert_eq!(
            enc.encode_frame_type(7, &[0; 160], &mut out),
            Ok(Frame {
                frame_type: 7,
                len: 31
            })
        );
    }

    #[test]
    fn frames_have_the_mode_size_and_zero_padding() {
        let mut enc = Encoder::new();
        let mut seed = 7;
        for mode in Mode::ALL {
            let mut pcm = [0i16; 160];
            for s in pcm.iter_mut() {
                *s = noise(&mut seed) / 4;
            }
            let mut out = [0xffu8; 32];
            let n = enc.encode(mode, &pcm, &mut out).unwrap();
            assert_eq!(n, mode.octets());
            let pad = n * 8 - mode.bits();
            assert_eq!(out[n - 1] & ((1u16 << pad) - 1) as u8, 0, "{mode:?}");
        }
    }

    /// Extreme and switching input never panics, and what comes out decodes to finite,
    /// bounded audio: silence, full-scale square waves, clipped noise, impulses, with the
    /// mode changing every frame (the decoder must follow any mode sequence, TS 26.101).
    #[test]
    fn hostile_input_and_mode_switching_stay_sane() {
        let mut enc = Encoder::new();
        let mut dec = crate::Decoder::new();
        let mut seed = 1;
        for f in 0..400usize {
            let mut pcm = [0i16; 160];
            for (n, s) in pcm.iter_mut().enumerate() {
                *s = match (f / 50) % 5 {
                    0 => 0,
                    1 => {
                        if (n / 20) % 2 == 0 {
                            i16::MAX
                        } else {
                            i16::MIN
                        }
                    }
                    2 => noise(&mut seed),
                    3 => {
                        if n == 0 {
                            i16::MAX
                        } else {
                            0
                        }
                    }
                    _ => (noise(&mut seed) / 64).saturating_mul(70),
                };
            }
            let mode = Mode::ALL[(f * 5 + f / 7) % 8];
            let mut out = [0u8; 32];
            let n = enc.encode(mode, &pcm, &mut out).unwrap();
            let mut back = [0i16; 160];
            dec.decode(mode.frame_type(), true, &out[..n], &mut back)
                .unwrap();
        }
        // The state is still healthy: a plain tone afterwards comes through.
        let mut energy = 0.0f64;
        for f in 0..25 {
            let mut pcm = [0i16; 160];
            for (n, s) in pcm.iter_mut().enumerate() {
                let t = (f * 160 + n) as f64 / 8000.0;
                *s = (3000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
            }
            let mut out = [0u8; 32];
            let n = enc.encode(Mode::MR122, &pcm, &mut out).unwrap();
            let mut back = [0i16; 160];
            dec.decode(7, true, &out[..n], &mut back).unwrap();
            if f >= 10 {
                energy += back.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
            }
        }
        let rms = (energy / (15.0 * 160.0)).sqrt();
        assert!((1500.0..3000.0).contains(&rms), "rms {rms}");
    }

    #[test]
    fn encoding_is_deterministic() {
        let mut a = Encoder::new();
        let mut b = Encoder::new();
        let mut seed = 3;
        for f in 0..30 {
            let mut pcm = [0i16; 160];
            for s in pcm.iter_mut() {
                *s = noise(&mut seed) / 8;
            }
            let mode = Mode::ALL[f % 8];
            let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
            a.encode(mode, &pcm, &mut x).unwrap();
            b.encode(mode, &pcm, &mut y).unwrap();
            assert_eq!(x, y);
        }
    }
}
