//! Gold test: frames made by Debian's libopencore-amrnb encoder (the 3GPP reference code) are
//! decoded by this crate; the tone must keep its frequency and level, and the output must
//! follow opencore's own decoder sample by sample (segmental SNR per mode printed and bounded).
//!
//! The FFI is dev-only and minimal (storage-format frames: one header octet, then the speech
//! bits in class order).

use amrnb::{Decoder, Mode, FRAME_SAMPLES};

mod common;
use common::*;

/// Storage-format frames (header octet + speech octets) of `pcm` at `mode`.
fn opencore_encode(pcm: &[i16], mode: Mode, dtx: bool) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    // SAFETY: the state is created and freed here; buffers are as large as the API needs
    // (160 samples in, at most 32 octets out).
    unsafe {
        let st = Encoder_Interface_init(c_int::from(dtx));
        assert!(!st.is_null());
        for chunk in pcm.chunks_exact(FRAME_SAMPLES) {
            let mut out = [0u8; 64];
            // The library writes into its input (it pre-processes in place): give it a copy.
            let speech: [i16; FRAME_SAMPLES] = chunk.try_into().expect("a frame");
            let n = Encoder_Interface_Encode(
                st,
                c_int::from(mode.frame_type()),
                speech.as_ptr(),
                out.as_mut_ptr(),
                0,
            );
            assert!(n > 0);
            frames.push(out[..n as usize].to_vec());
        }
        Encoder_Interface_exit(st);
    }
    frames
}

fn opencore_decode(frames: &[Vec<u8>]) -> Vec<i16> {
    let mut pcm = Vec::new();
    // SAFETY: as above; each input frame is a full storage-format frame.
    unsafe {
        let st = Decoder_Interface_init();
        assert!(!st.is_null());
        for f in frames {
            let mut buf = [0u8; 64];
            buf[..f.len()].copy_from_slice(f);
            let mut out = [0i16; FRAME_SAMPLES];
            Decoder_Interface_Decode(st, buf.as_ptr(), out.as_mut_ptr(), 0);
            pcm.extend_from_slice(&out);
        }
        Decoder_Interface_exit(st);
    }
    pcm
}

fn ours_decode(frames: &[Vec<u8>]) -> Vec<i16> {
    let mut d = Decoder::new();
    let mut pcm = Vec::new();
    for f in frames {
        let ft = (f[0] >> 3) & 15;
        let q = f[0] & 4 != 0;
        let mut out = [0i16; FRAME_SAMPLES];
        d.decode(ft, q, &f[1..], &mut out).expect("decodes");
        pcm.extend_from_slice(&out);
    }
    pcm
}

/// `amp`·sin at `freq` Hz, 8 kHz, `frames` frames; a second tone when `f2` is given.
fn tone(freq: f64, f2: Option<f64>, amp: f64, frames: usize) -> Vec<i16> {
    (0..frames * FRAME_SAMPLES)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let mut v = amp * (2.0 * std::f64::consts::PI * freq * t).sin();
            if let Some(f) = f2 {
                v += amp * (2.0 * std::f64::consts::PI * f * t).sin();
            }
            v.round() as i16
        })
        .collect()
}

/// RMS level in dBFS (full scale sine = 0 dB).
fn dbfs(x: &[i16]) -> f64 {
    let e: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64;
    10.0 * (e.max(1e-9) * 2.0 / 32768f64.powi(2)).log10()
}

/// Frequency from the interpolated zero crossings (rising) over `x`.
fn frequency(x: &[i16]) -> f64 {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0;
    for n in 1..x.len() {
        let (a, b) = (f64::from(x[n - 1]), f64::from(x[n]));
        if a < 0.0 && b >= 0.0 {
            let t = (n - 1) as f64 + a / (a - b);
            if first.is_none() {
                first = Some(t);
            } else {
                count += 1;
            }
            last = t;
        }
    }
    count as f64 * 8000.0 / (last - first.unwrap_or(0.0))
}

/// Magnitude of the DFT bin at `freq` (Goertzel), as dBFS of a sine.
fn tone_dbfs(x: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let (mut re, mut im) = (0.0, 0.0);
    for (n, &s) in x.iter().enumerate() {
        re += f64::from(s) * (w * n as f64).cos();
        im += f64::from(s) * (w * n as f64).sin();
    }
    let amp = 2.0 * (re * re + im * im).sqrt() / x.len() as f64;
    20.0 * (amp / 32768.0).max(1e-9).log10()
}

/// Segmental SNR of `x` against `reference` over 20 ms segments with some energy, each clamped
/// to −10..40 dB.
fn seg_snr(reference: &[i16], x: &[i16]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for (r, y) in reference.chunks(FRAME_SAMPLES).zip(x.chunks(FRAME_SAMPLES)) {
        let e: f64 = r.iter().map(|&s| f64::from(s).powi(2)).sum();
        if e < 160.0 * 100.0 {
            continue;
        }
        let d: f64 = r
            .iter()
            .zip(y)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        sum += (10.0 * (e / d.max(1e-9)).log10()).clamp(-10.0, 40.0);
        n += 1;
    }
    sum / n.max(1) as f64
}

const FRAMES: usize = 100;
/// −20 dBFS: a sine with peak 0.1 of full scale.
const AMP: f64 = 3276.8;

#[test]
fn one_khz_tone_every_mode() {
    let input = tone(1000.0, None, AMP, FRAMES);
    let steady = 20 * FRAME_SAMPLES..;
    for mode in Mode::ALL {
        let frames = opencore_encode(&input, mode, false);
        let ours = ours_decode(&frames);
        let theirs = opencore_decode(&frames);
        let f = frequency(&ours[steady.clone()]);
        let level = dbfs(&ours[steady.clone()]);
        let want = dbfs(&input[steady.clone()]);
        let snr = seg_snr(&theirs[steady.clone()], &ours[steady.clone()]);
        println!(
            "{mode:?}: 1 kHz -> {f:.1} Hz, {level:.2} dBFS (input {want:.2}, opencore {:.2}), seg SNR vs opencore {snr:.1} dB",
            dbfs(&theirs[steady.clone()])
        );
        assert!((f - 1000.0).abs() < 20.0, "{mode:?}: frequency {f}");
        assert!(
            (level - want).abs() < 3.0,
            "{mode:?}: level {level} vs {want}"
        );
        assert!(
            snr > 15.0,
            "{mode:?}: segmental SNR {snr} dB against opencore"
        );
    }
}

#[test]
fn two_tones_and_a_sweep_every_mode() {
    let two = tone(440.0, Some(1700.0), AMP / 2.0, FRAMES);
    // Linear sweep 300 Hz → 3 kHz.
    let sweep: Vec<i16> = (0..FRAMES * FRAME_SAMPLES)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let dur = (FRAMES * FRAME_SAMPLES) as f64 / 8000.0;
            let phase = 2.0 * std::f64::consts::PI * (300.0 * t + 0.5 * (2700.0 / dur) * t * t);
            (AMP * phase.sin()).round() as i16
        })
        .collect();
    let steady = 20 * FRAME_SAMPLES..;
    for mode in Mode::ALL {
        let frames = opencore_encode(&two, mode, false);
        let ours = ours_decode(&frames);
        let theirs = opencore_decode(&frames);
        let ra = tone_dbfs(&theirs[steady.clone()], 440.0);
        let rb = tone_dbfs(&theirs[steady.clone()], 1700.0);
        let a = tone_dbfs(&ours[steady.clone()], 440.0);
        let b = tone_dbfs(&ours[steady.clone()], 1700.0);
        let want = tone_dbfs(&two[steady.clone()], 440.0);
        let snr = seg_snr(&theirs[steady.clone()], &ours[steady.clone()]);
        let frames = opencore_encode(&sweep, mode, false);
        let ours_s = ours_decode(&frames);
        let theirs_s = opencore_decode(&frames);
        let snr_s = seg_snr(&theirs_s[steady.clone()], &ours_s[steady.clone()]);
        let lvl_s = dbfs(&ours_s[steady.clone()]);
        let want_s = dbfs(&sweep[steady.clone()]);
        println!(
            "{mode:?}: two tones 440/1700 Hz at {a:.2}/{b:.2} dBFS (input {want:.2}, opencore {ra:.2}/{rb:.2}), seg SNR {snr:.1} dB; sweep {lvl_s:.2} dBFS (input {want_s:.2}), seg SNR {snr_s:.1} dB"
        );
        // Each tone within 3 dB of what the reference decoder makes of the same frames (the
        // low modes themselves lose some of the upper tone).
        assert!(
            (a - ra).abs() < 3.0 && (b - rb).abs() < 3.0,
            "{mode:?}: tone levels {a} {b} vs {want}"
        );
        assert!(
            (lvl_s - want_s).abs() < 3.0,
            "{mode:?}: sweep level {lvl_s} vs {want_s}"
        );
        assert!(
            snr > 15.0 && snr_s > 15.0,
            "{mode:?}: segmental SNR {snr} / {snr_s}"
        );
    }
}

/// Voice-like test signal: a 120 Hz glottal pulse train through two formant resonators,
/// with the level rising and falling like syllables.
fn vowel(frames: usize) -> Vec<i16> {
    let mut out = Vec::with_capacity(frames * FRAME_SAMPLES);
    let (mut y1, mut y2, mut z1, mut z2) = (0.0f64, 0.0, 0.0, 0.0);
    let res = |f: f64, bw: f64| {
        let r = (-std::f64::consts::PI * bw / 8000.0).exp();
        (
            2.0 * r * (2.0 * std::f64::consts::PI * f / 8000.0).cos(),
            -r * r,
        )
    };
    let (a1, a2) = res(700.0, 100.0);
    let (b1, b2) = res(1200.0, 120.0);
    for n in 0..frames * FRAME_SAMPLES {
        let x = if n % 67 == 0 { 1.0 } else { 0.0 };
        let y = x + a1 * y1 + a2 * y2;
        y2 = y1;
        y1 = y;
        let z = y + b1 * z1 + b2 * z2;
        z2 = z1;
        z1 = z;
        let env = 0.55 + 0.45 * (2.0 * std::f64::consts::PI * n as f64 / 4000.0).sin();
        out.push((z * 1500.0 * env).clamp(-32000.0, 32000.0) as i16);
    }
    out
}

#[test]
fn voice_like_signal_every_mode() {
    let input = vowel(FRAMES);
    let steady = 10 * FRAME_SAMPLES..;
    for mode in Mode::ALL {
        let frames = opencore_encode(&input, mode, false);
        let ours = ours_decode(&frames);
        let theirs = opencore_decode(&frames);
        let snr = seg_snr(&theirs[steady.clone()], &ours[steady.clone()]);
        let (lo, lt) = (dbfs(&ours[steady.clone()]), dbfs(&theirs[steady.clone()]));
        println!(
            "{mode:?}: voice-like {lo:.2} dBFS (opencore {lt:.2}, input {:.2}), seg SNR vs opencore {snr:.1} dB",
            dbfs(&input[steady.clone()])
        );
        assert!((lo - lt).abs() < 2.0, "{mode:?}: level {lo} vs {lt}");
        assert!(snr > 18.0, "{mode:?}: segmental SNR {snr}");
    }
}

#[test]
fn lost_frames_are_concealed_like_the_reference() {
    let input = tone(1000.0, None, AMP, FRAMES);
    for mode in Mode::ALL {
        let frames = opencore_encode(&input, mode, false);
        let mut d = Decoder::new();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        // SAFETY: state created and freed here; full-size buffers.
        unsafe {
            let st = Decoder_Interface_init();
            assert!(!st.is_null());
            for (i, f) in frames.iter().enumerate() {
                let mut pcm = [0i16; FRAME_SAMPLES];
                let mut reference = [0i16; FRAME_SAMPLES];
                let mut buf = [0u8; 64];
                buf[..f.len()].copy_from_slice(f);
                if (30..33).contains(&i) {
                    // Frames 30-32 lost.
                    d.decode_lost(&mut pcm);
                    buf[0] = 15 << 3;
                    Decoder_Interface_Decode(st, buf.as_ptr(), reference.as_mut_ptr(), 1);
                } else {
                    // Frame 45 damaged (Q = 0).
                    let q = i != 45;
                    if !q {
                        buf[0] &= !4;
                    }
                    d.decode((f[0] >> 3) & 15, q, &f[1..], &mut pcm).unwrap();
                    Decoder_Interface_Decode(st, buf.as_ptr(), reference.as_mut_ptr(), 0);
                }
                ours.extend_from_slice(&pcm);
                theirs.extend_from_slice(&reference);
            }
            Decoder_Interface_exit(st);
        }
        let lost = 30 * FRAME_SAMPLES..33 * FRAME_SAMPLES;
        let after = 60 * FRAME_SAMPLES..;
        let (lo, lt) = (dbfs(&ours[lost.clone()]), dbfs(&theirs[lost]));
        let (ao, at) = (dbfs(&ours[after.clone()]), dbfs(&theirs[after.clone()]));
        let f = frequency(&ours[after]);
        println!(
            "{mode:?}: lost frames at {lo:.1} dBFS (opencore {lt:.1}); afterwards {f:.1} Hz at {ao:.1} dBFS (opencore {at:.1})"
        );
        // Concealment fades the tone like the reference and speech comes back.
        assert!(
            (lo - lt).abs() < 4.0,
            "{mode:?}: concealment level {lo} vs {lt}"
        );
        assert!(
            (f - 1000.0).abs() < 20.0 && (ao - at).abs() < 3.0,
            "{mode:?}: recovery {ao} vs {at}"
        );
    }
}

#[test]
fn dtx_comfort_noise_follows_the_background_level() {
    // 1 s tone, then 2 s of low noise: the encoder switches to SID/NO_DATA.
    let mut input = tone(1000.0, None, AMP, 50);
    let mut seed = 12345u32;
    for _ in 0..100 * FRAME_SAMPLES {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        input.push(((seed >> 16) as i16 >> 8) / 2); // about −50 dBFS white noise
    }
    // MR67 = 0b011 tells the mode bits' order apart (LSB first).
    for mode in [Mode::MR122, Mode::MR67, Mode::MR475] {
        let frames = opencore_encode(&input, mode, true);
        let types: Vec<u8> = frames.iter().map(|f| (f[0] >> 3) & 15).collect();
        assert!(
            types.contains(&amrnb::FT_SID),
            "the encoder sent no SID: {types:?}"
        );
        // SID_FIRST, then SID_UPDATEs, all naming the mode the encoder runs (TS 26.101 §4.2.3).
        let sids: Vec<amrnb::bits::Sid> = frames
            .iter()
            .filter(|f| (f[0] >> 3) & 15 == amrnb::FT_SID)
            .map(|f| amrnb::bits::unpack_sid(&f[1..]).unwrap())
            .collect();
        assert!(
            !sids[0].update && sids[1..].iter().all(|s| s.update),
            "{sids:?}"
        );
        assert!(sids.iter().all(|s| s.mode == mode.frame_type()), "{sids:?}");
        let ours = ours_decode(&frames);
        let theirs = opencore_decode(&frames);
        let tail = 100 * FRAME_SAMPLES..;
        let (lo, lt) = (dbfs(&ours[tail.clone()]), dbfs(&theirs[tail.clone()]));
        println!(
            "DTX {mode:?}: {} SID, {} NO_DATA frames; comfort noise {lo:.1} dBFS, opencore {lt:.1}, input {:.1}",
            types.iter().filter(|&&t| t == 8).count(),
            types.iter().filter(|&&t| t == 15).count(),
            dbfs(&input[tail.clone()])
        );
        assert!(
            (lo - lt).abs() < 6.0,
            "{mode:?}: comfort noise {lo} dBFS vs opencore {lt}"
        );
        // Right after SID_FIRST the noise comes from the decoded hangover frames.
        let first = types.iter().position(|&t| t == amrnb::FT_SID).unwrap();
        let start = (first + 1) * FRAME_SAMPLES..(first + 3) * FRAME_SAMPLES;
        let (so, st) = (dbfs(&ours[start.clone()]), dbfs(&theirs[start]));
        println!("DTX {mode:?}: first comfort-noise frames {so:.1} dBFS, opencore {st:.1}");
        assert!(
            (so - st).abs() < 6.0,
            "{mode:?}: comfort noise after SID_FIRST {so} vs {st}"
        );
    }
}

#[test]
fn unpack_then_pack_gives_back_the_reference_bits() {
    let input = vowel(20);
    for mode in Mode::ALL {
        for f in opencore_encode(&input, mode, false) {
            let mut prm = [0i16; amrnb::MAX_PARAMS];
            assert_eq!(
                amrnb::bits::unpack(mode, &f[1..], &mut prm).unwrap(),
                mode.params()
            );
            let mut out = [0u8; 31];
            let n = amrnb::bits::pack(mode, &prm, &mut out).unwrap();
            assert_eq!(&out[..n], &f[1..], "{mode:?}");
        }
    }
}

#[test]
fn decoding_is_fast_enough_for_a_media_plane() {
    let input = vowel(FRAMES);
    let frames = opencore_encode(&input, Mode::MR122, false);
    let mut d = Decoder::new();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let start = std::time::Instant::now();
    for _ in 0..5 {
        for f in &frames {
            d.decode(7, true, &f[1..], &mut pcm).unwrap();
        }
    }
    let per_frame = start.elapsed() / (5 * frames.len() as u32);
    println!("12.2 decode: {per_frame:?} per 20 ms frame");
    // Generous: a loaded 2-core test machine; real time is 20 ms.
    assert!(
        per_frame < std::time::Duration::from_millis(2),
        "{per_frame:?}"
    );
}

#[test]
fn mode_changes_every_few_frames_follow_the_reference() {
    // The encoder's mode changes every 5 frames (as CMR would make it); the decoder's state
    // (LSF predictor, gain predictor, pitch memory) carries across.
    let input = vowel(FRAMES);
    let mut frames = Vec::new();
    // SAFETY: state created and freed here; full-size buffers; the input is copied because
    // the library writes into it.
    unsafe {
        let st = Encoder_Interface_init(0);
        assert!(!st.is_null());
        for (i, chunk) in input.chunks_exact(FRAME_SAMPLES).enumerate() {
            let mode = Mode::ALL[(i / 5 * 3) % 8];
            let speech: [i16; FRAME_SAMPLES] = chunk.try_into().expect("a frame");
            let mut out = [0u8; 64];
            let n = Encoder_Interface_Encode(
                st,
                c_int::from(mode.frame_type()),
                speech.as_ptr(),
                out.as_mut_ptr(),
                0,
            );
            assert!(n > 0);
            frames.push(out[..n as usize].to_vec());
        }
        Encoder_Interface_exit(st);
    }
    let ours = ours_decode(&frames);
    let theirs = opencore_decode(&frames);
    let steady = 10 * FRAME_SAMPLES..;
    let snr = seg_snr(&theirs[steady.clone()], &ours[steady.clone()]);
    let (lo, lt) = (dbfs(&ours[steady.clone()]), dbfs(&theirs[steady]));
    println!("mode changes: {lo:.2} dBFS (opencore {lt:.2}), seg SNR vs opencore {snr:.1} dB");
    assert!(
        (lo - lt).abs() < 2.0 && snr > 15.0,
        "level {lo} vs {lt}, SNR {snr}"
    );
}

#[test]
fn white_noise_every_mode_tracks_the_reference_closely() {
    // Noise exercises every codebook position, the gain smoothing and the anti-sparseness.
    let mut seed = 99u32;
    let input: Vec<i16> = (0..FRAMES * FRAME_SAMPLES)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((seed >> 16) as i16) / 16
        })
        .collect();
    let steady = 10 * FRAME_SAMPLES..;
    for mode in Mode::ALL {
        let frames = opencore_encode(&input, mode, false);
        let ours = ours_decode(&frames);
        let theirs = opencore_decode(&frames);
        let (lo, lt) = (dbfs(&ours[steady.clone()]), dbfs(&theirs[steady.clone()]));
        let snr = seg_snr(&theirs[steady.clone()], &ours[steady.clone()]);
        println!("{mode:?}: white noise {lo:.2} dBFS (opencore {lt:.2}), seg SNR vs opencore {snr:.1} dB");
        assert!(
            (lo - lt).abs() < 1.0 && snr > 30.0,
            "{mode:?}: {lo} vs {lt}, SNR {snr}"
        );
    }
}
