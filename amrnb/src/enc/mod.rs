//! AMR-NB speech encoder (3GPP TS 26.090 §5), all eight modes, floating point.
//!
//! One call of [`Encoder::encode`] takes 20 ms (160 samples at 8 kHz) and writes one frame's
//! speech bits in the class order of TS 26.101 Annex B (= RFC 4867 storage order), MSB first.
//! The analysis looks 5 ms ahead, so the decoded speech lags the input by 40 samples plus the
//! decoder's own delay.
//!
//! Not bit-exact with the TS 26.073 fixed-point reference: the searches follow the standard's
//! criteria in floating point and some are simpler (focused pairwise search of the 8- and
//! 10-pulse codebooks, nearest-entry scalar gains). The bitstream is the standard's, so any
//! conforming decoder plays it. DTX (VAD and SID frames, TS 26.093/26.094) is not implemented:
//! every frame is a speech frame of the mode asked for.

mod acelp;
mod gain;
mod lpc;
mod lsfq;
mod lsp;
mod pitch;
mod scratch_tables;

use scratch_tables as tables;

use crate::Mode;
use gain::{Corr, GainPredictor};
use lpc::M;
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
}

/// Samples of history kept before the current subframe in the excitation buffer: the longest
/// lag plus the interpolation filter's reach.
const EXC_HIST: usize = 154;
/// Weighted-speech history for the open-loop search.
const WSP_HIST: usize = 143;
/// Where the frame being coded starts in the speech buffer (5 ms look-ahead after it).
const FRAME: usize = 120;
/// Largest pitch gain used (§5.6).
const GP_MAX: f32 = 1.2;
/// Cap of the pitch sharpening factor (the decoder's SHARPMAX, 13017 in Q14).
const SHARP_MAX: f32 = 13017.0 / 16384.0;

/// Speech bits of one frame of `mode`.
pub fn frame_bits(mode: Mode) -> usize {
    match mode {
        Mode::MR475 => 95,
        Mode::MR515 => 103,
        Mode::MR59 => 118,
        Mode::MR67 => 134,
        Mode::MR74 => 148,
        Mode::MR795 => 159,
        Mode::MR102 => 204,
        Mode::MR122 => 244,
    }
}

/// Saved filter memories (4.75 re-runs a subframe once its gains are known).
#[derive(Debug, Clone, Copy)]
struct Mems {
    syn: [f32; M],
    w0: [f32; M],
    err: [f32; M],
}

/// Everything one subframe's search produced that its memory update needs.
#[derive(Debug, Clone, Copy)]
struct Sub {
    aq: [f32; M + 1],
    aw1: [f32; M + 1],
    aw2: [f32; M + 1],
    h: [f32; 40],
    lag: Lag,
    code: [f32; 40],
    y2: [f32; 40],
}

/// AMR-NB encoder state for one direction of one call.
pub struct Encoder {
    hp: lpc::HighPass,
    speech: [f32; 320],
    wsp: [f32; WSP_HIST + 160],
    exc: [f32; EXC_HIST + 160],
    lsp_old: [f64; M],
    lsp_old_q: [f64; M],
    lsfq: lsfq::LsfQuant,
    mem: Mems,
    mem_wsp: [f32; M],
    old_t0: i32,
    sharp: f32,
    gpred: GainPredictor,
    win_200_40: [f32; 240],
    win_160_80: [f32; 240],
    win_232_8: [f32; 240],
    cands: Cands,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// A fresh encoder (the reset state of §5 and of the decoder it talks to).
    pub fn new() -> Encoder {
        let mut lsp = [0.0f64; M];
        for (l, &v) in lsp.iter_mut().zip(tables::LSP_INIT_DATA.iter()) {
            *l = f64::from(v) / 32768.0;
        }
        Encoder {
            hp: lpc::HighPass::default(),
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
            gpred: GainPredictor::default(),
            win_200_40: lpc::lpc_window(200, 40),
            win_160_80: lpc::lpc_window(160, 80),
            win_232_8: lpc::lpc_window(232, 8),
            cands: Cands::new(),
        }
    }

    /// Encodes one 20 ms frame at `mode` into `out` (at least `ceil(bits/8)` octets):
    /// returns the octets written, the speech bits MSB first in RFC 4867 order, the last
    /// octet zero-padded.
    pub fn encode(
        &mut self,
        mode: Mode,
        pcm: &[i16; 160],
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let nbits = frame_bits(mode);
        let need = nbits.div_ceil(8);
        if out.len() < need {
            return Err(EncodeError::Buffer {
                need,
                got: out.len(),
            });
        }
        let mut prm = [0u16; 57];
        let nprm = self.frame(mode, pcm, &mut prm);
        pack(mode, &prm[..nprm], &mut out[..need]);
        Ok(need)
    }

    /// The codec parameters of one frame, in the order of TS 26.101 Table B's parameter lists.
    fn frame(&mut self, mode: Mode, pcm: &[i16; 160], prm: &mut [u16; 57]) -> usize {
        self.hp.run(pcm, &mut self.speech[160..]);

        // LP analysis and LSP quantisation (§5.2).
        let mut np = 0;
        let mut a = [0.0f64; M + 1];
        let mut lsp_new = self.lsp_old;
        let mut lsp_mid = self.lsp_old;
        let mut lsp_new_q = [0.0f64; M];
        let mut lsp_mid_q = [0.0f64; M];
        if mode == Mode::MR122 {
            if lpc::analyse(&self.speech[40..280], &self.win_160_80, &mut a) {
                lpc::az_to_lsp(&a, &mut lsp_mid);
            }
            if lpc::analyse(&self.speech[40..280], &self.win_232_8, &mut a) {
                lpc::az_to_lsp(&a, &mut lsp_new);
            }
            let mut f1 = [0.0; M];
            let mut f2 = [0.0; M];
            lsp::lsp_to_lsf(&lsp_mid, &mut f1);
            lsp::lsp_to_lsf(&lsp_new, &mut f2);
            let mut q1 = [0.0; M];
            let mut q2 = [0.0; M];
            self.lsfq
                .quantise5(&f1, &f2, &mut prm[..5], &mut q1, &mut q2);
            lsp::lsf_to_lsp(&q1, &mut lsp_mid_q);
            lsp::lsf_to_lsp(&q2, &mut lsp_new_q);
            np = 5;
        } else {
            if lpc::analyse(&self.speech[80..320], &self.win_200_40, &mut a) {
                lpc::az_to_lsp(&a, &mut lsp_new);
            }
            let mut f = [0.0; M];
            lsp::lsp_to_lsf(&lsp_new, &mut f);
            let mut q = [0.0; M];
            self.lsfq.quantise3(mode, &f, &mut prm[..3], &mut q);
            lsp::lsf_to_lsp(&q, &mut lsp_new_q);
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
                a_sf[sf] = lsp::interp_az(o, n, w);
                aq_sf[sf] = lsp::interp_az(oq, nq, w);
            } else {
                let w = 0.25 * (sf + 1) as f64;
                a_sf[sf] = lsp::interp_az(&self.lsp_old, &lsp_new, w);
                aq_sf[sf] = lsp::interp_az(&self.lsp_old_q, &lsp_new_q, w);
            }
        }
        self.lsp_old = lsp_new;
        self.lsp_old_q = lsp_new_q;

        // Weighted speech and open-loop pitch (§5.3–5.4).
        let gamma1 = if matches!(mode, Mode::MR122 | Mode::MR102) {
            0.9
        } else {
            0.94
        };
        let mut aw1_sf = [[0.0f32; M + 1]; 4];
        let mut aw2_sf = [[0.0f32; M + 1]; 4];
        for sf in 0..4 {
            lpc::weight(&a_sf[sf], gamma1, &mut aw1_sf[sf]);
            lpc::weight(&a_sf[sf], 0.6, &mut aw2_sf[sf]);
            let mut r = [0.0f32; 40];
            lpc::residual(&aw1_sf[sf], &self.speech, FRAME + 40 * sf, &mut r);
            let w0 = WSP_HIST + 40 * sf;
            lpc::synth(
                &aw2_sf[sf],
                &r,
                &mut self.wsp[w0..w0 + 40],
                &mut self.mem_wsp,
                true,
            );
        }
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
        let mut pending: Option<(Mems, Sub, [f32; 40], [u16; 1])> = None;
        for sf in 0..4 {
            let aq = aq_sf[sf];
            let (x, h) = self.target(sf, &aq, &aw1_sf[sf], &aw2_sf[sf]);
            let mut res = [0.0f32; 40];
            lpc::residual(&aq, &self.speech, FRAME + 40 * sf, &mut res);

            // Adaptive codebook.
            let ep = EXC_HIST + 40 * sf;
            let (lag, lag_idx) = self.pitch_search(mode, sf, &t_op, &x, &h, &res);
            prm[np] = lag_idx;
            np += 1;
            let res_n = if mode == Mode::MR122 { 6 } else { 3 };
            pitch::pred_lt(&mut self.exc, ep, lag.t0, lag.frac, res_n);
            let v: [f32; 40] = self.exc[ep..ep + 40].try_into().unwrap_or([0.0; 40]);
            let mut y1 = [0.0f32; 40];
            pitch::convolve(&v, &h, &mut y1);
            let c1 = Corr::new(&x, &y1, &y1);
            let mut gp = if c1.yy1 > 0.0 {
                (c1.xy1 / c1.yy1).clamp(0.0, GP_MAX)
            } else {
                0.0
            };
            let mut gp_idx = 0;
            if matches!(mode, Mode::MR122 | Mode::MR795) {
                let (i, g) = gain::quant_pitch(mode, gp);
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
            let sub = Sub {
                aq,
                aw1: aw1_sf[sf],
                aw2: aw2_sf[sf],
                h,
                lag,
                code,
                y2,
            };

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
                        pending = Some((self.mem, sub, x, [np as u16]));
                        prm[np] = 0;
                        np += 1;
                        (gp, gc)
                    } else if let Some((saved, s0, x0, [slot])) = pending.take() {
                        // Joint quantisation, then redo the even subframe with its real gains
                        // and rebuild this one's target on top.
                        let ep0 = ep - 40;
                        let mut v0 = [0.0f32; 40];
                        v0.copy_from_slice(&self.exc[ep0..ep0 + 40]);
                        let v0 = self.recompute_v0(ep0, &s0, v0);
                        let mut y10 = [0.0f32; 40];
                        pitch::convolve(&v0, &s0.h, &mut y10);
                        let corr0 = Corr::new(&x0, &y10, &s0.y2);
                        let (gi, g) =
                            gain::quant_475(&mut self.gpred, &corr0, &s0.code, &corr, &code);
                        prm[slot as usize] = gi;
                        self.mem = saved;
                        self.post(sf - 1, &s0, &v0, &x0, &y10, g[0], g[1]);
                        self.sharp = self.sharp.min(SHARP_MAX);
                        let (x1, _) = self.target(sf, &aq, &aw1_sf[sf], &aw2_sf[sf]);
                        pitch::pred_lt(&mut self.exc, ep, lag.t0, lag.frac, 3);
                        let v1: [f32; 40] = self.exc[ep..ep + 40].try_into().unwrap_or([0.0; 40]);
                        let mut y11 = [0.0f32; 40];
                        pitch::convolve(&v1, &h, &mut y11);
                        self.post(sf, &sub, &v1, &x1, &y11, g[2], g[3]);
                        self.sharp = g[2].min(SHARP_MAX);
                        self.old_t0 = lag.t0;
                        continue;
                    } else {
                        (gp, 0.0)
                    }
                }
                _ => {
                    let (gi, gp_q, gc_q) = gain::quant_joint(mode, &mut self.gpred, &corr, gc0);
                    prm[np] = gi;
                    np += 1;
                    (gp_q, gc_q)
                }
            };
            self.post(sf, &sub, &v, &x, &y1, gp_q, gc_q);
            if mode != Mode::MR475 {
                self.sharp = gp_q.min(SHARP_MAX);
            }
            self.old_t0 = lag.t0;
        }

        self.speech.copy_within(160.., 0);
        self.wsp.copy_within(160.., 0);
        self.exc.copy_within(160.., 0);
        np
    }

    /// 4.75's even subframe: its adaptive vector only depends on older excitation, which the
    /// odd subframe has not touched; returned as is.
    fn recompute_v0(&self, _ep0: usize, _s0: &Sub, v0: [f32; 40]) -> [f32; 40] {
        v0
    }

    /// Target of the adaptive-codebook search (§5.5) and the weighted synthesis filter's
    /// impulse response, from the current memories.
    fn target(
        &self,
        sf: usize,
        aq: &[f32; M + 1],
        aw1: &[f32; M + 1],
        aw2: &[f32; M + 1],
    ) -> ([f32; 40], [f32; 40]) {
        let mut res = [0.0f32; 40];
        lpc::residual(aq, &self.speech, FRAME + 40 * sf, &mut res);
        // Error signal s − ŝ_zir, with its history.
        let mut err = [0.0f32; M + 40];
        err[..M].copy_from_slice(&self.mem.err);
        let mut m = self.mem.err;
        lpc::synth(aq, &res, &mut err[M..], &mut m, false);
        let mut xr = [0.0f32; 40];
        lpc::residual(aw1, &err, M, &mut xr);
        let mut x = [0.0f32; 40];
        let mut w0 = self.mem.w0;
        lpc::synth(aw2, &xr, &mut x, &mut w0, false);
        // Impulse response of A(z/γ1) / (Â(z) A(z/γ2)).
        let mut imp = [0.0f32; 40];
        imp[..=M].copy_from_slice(aw1);
        let mut h = [0.0f32; 40];
        let mut z = [0.0f32; M];
        lpc::synth(aq, &imp, &mut h, &mut z, false);
        let hh = h;
        let mut z = [0.0f32; M];
        lpc::synth(aw2, &hh, &mut h, &mut z, false);
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
        res: &[f32; 40],
    ) -> (Lag, u16) {
        let ep = EXC_HIST + 40 * sf;
        let saved: [f32; 40] = self.exc[ep..ep + 40].try_into().unwrap_or([0.0; 40]);
        self.exc[ep..ep + 40].copy_from_slice(res);
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
        self.exc[ep..ep + 40].copy_from_slice(&saved);
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
            e[n] = gp * v[n] + gc * s.code[n];
        }
        self.exc[ep..ep + 40].copy_from_slice(&e);
        let mut syn = [0.0f32; 40];
        lpc::synth(&s.aq, &e, &mut syn, &mut self.mem.syn, true);
        let sp = FRAME + 40 * sf;
        for i in 0..M {
            let n = 40 - M + i;
            self.mem.err[i] = self.speech[sp + n] - syn[n];
            self.mem.w0[i] = x[n] - gp * y1[n] - gc * s.y2[n];
        }
        let _ = (&s.aw1, &s.aw2);
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

/// Parameters → serial bits (each MSB first, widths of the mode) → class order of
/// TS 26.101 Annex B, MSB first into `out`.
fn pack(mode: Mode, prm: &[u16], out: &mut [u8]) {
    let (widths, order): (&[i16], &[i16]) = match mode {
        Mode::MR475 => (&tables::BITNO_MR475, &tables::REORDERBITS_MR475),
        Mode::MR515 => (&tables::BITNO_MR515, &tables::REORDERBITS_MR515),
        Mode::MR59 => (&tables::BITNO_MR59, &tables::REORDERBITS_MR59),
        Mode::MR67 => (&tables::BITNO_MR67, &tables::REORDERBITS_MR67),
        Mode::MR74 => (&tables::BITNO_MR74, &tables::REORDERBITS_MR74),
        Mode::MR795 => (&tables::BITNO_MR795, &tables::REORDERBITS_MR795),
        Mode::MR102 => (&tables::BITNO_MR102, &tables::REORDERBITS_MR102),
        Mode::MR122 => (&tables::BITNO_MR122, &tables::REORDERBITS_MR122),
    };
    let mut serial = [0u8; 244];
    let mut k = 0;
    for (&p, &w) in prm.iter().zip(widths.iter()) {
        for b in (0..w).rev() {
            serial[k] = ((p >> b) & 1) as u8;
            k += 1;
        }
    }
    out.fill(0);
    for (i, &src) in order.iter().enumerate() {
        if serial[src as usize] != 0 {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
}
