//! Encodes a few seconds of a voiced, speech-like signal and prints a hash of the frames per
//! mode: the workload for profiling the encoder (`valgrind --tool=callgrind`) and a check that
//! a speed-up left the bitstream unchanged.
//!
//! `cargo run -p amrnb --release --example enc_profile [mode 0-7|all] [frames] [opencore]`
//!
//! With the feature `opencore` and a third argument `opencore`, libopencore-amrnb's encoder
//! runs the same workload instead (its instruction count is the yardstick).

use amrnb::{Encoder, Mode};

#[cfg(feature = "opencore")]
#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let modes: Vec<Mode> = match args.next().as_deref() {
        None | Some("all") => Mode::ALL.to_vec(),
        Some(m) => match m.parse::<u8>().ok().and_then(Mode::from_frame_type) {
            Some(m) => vec![m],
            None => {
                eprintln!("mode: 0-7 or all");
                std::process::exit(2);
            }
        },
    };
    let frames: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(250);
    let opencore = args.next().as_deref() == Some("opencore");
    // Glottal-like pulses at a gliding pitch through two formant resonators, plus a little
    // noise: exercises pitch, codebook and gain searches like voiced speech does.
    let mut pcm = vec![0i16; frames * 160];
    let (mut phase, mut seed) = (0.0f64, 99u32);
    let (mut a1, mut a2, mut b1, mut b2) = (0.0f64, 0.0, 0.0, 0.0);
    for (n, s) in pcm.iter_mut().enumerate() {
        let f0 = 110.0 + 60.0 * (n as f64 / 8000.0 * 1.3).sin();
        phase += f0 / 8000.0;
        let pulse = if phase >= 1.0 {
            phase -= 1.0;
            1.0
        } else {
            0.0
        };
        seed = seed.wrapping_mul(22_695_477).wrapping_add(1);
        let x = pulse + (f64::from(seed >> 16) / 65536.0 - 0.5) * 0.02;
        let a = x + 1.75 * a1 - 0.92 * a2;
        (a2, a1) = (a1, a);
        let b = a + 0.3 * b1 - 0.85 * b2;
        (b2, b1) = (b1, b);
        *s = (b * 700.0).clamp(-32768.0, 32767.0) as i16;
    }
    for mode in modes {
        if opencore {
            opencore_run(mode, &pcm);
            continue;
        }
        let mut enc = Encoder::new();
        let mut out = [0u8; 32];
        // FNV-1a over every frame's octets.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for chunk in pcm.chunks_exact(160) {
            let frame: &[i16; 160] = chunk.try_into().expect("160 samples");
            let n = enc.encode(mode, frame, &mut out).expect("buffer fits");
            for &b in &out[..n] {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        println!("{mode:?} {h:016x}");
    }
}

/// The workload through libopencore-amrnb's encoder (prints the frame count only).
#[cfg(feature = "opencore")]
fn opencore_run(mode: Mode, pcm: &[i16]) {
    use common::*;
    // SAFETY: the state is created and freed here and used by this thread only; the library
    // pre-processes its input in place, so it gets a copy of each frame; `out` is larger than
    // any frame.
    unsafe {
        let st = Encoder_Interface_init(0);
        assert!(!st.is_null());
        let mut n = 0;
        for chunk in pcm.chunks_exact(160) {
            let speech: [i16; 160] = chunk.try_into().expect("160 samples");
            let mut out = [0u8; 64];
            let len = Encoder_Interface_Encode(
                st,
                c_int::from(mode.frame_type()),
                speech.as_ptr(),
                out.as_mut_ptr(),
                0,
            );
            n += usize::from(len > 0);
        }
        Encoder_Interface_exit(st);
        println!("{mode:?} opencore {n} frames");
    }
}

#[cfg(not(feature = "opencore"))]
fn opencore_run(_: Mode, _: &[i16]) {
    eprintln!("built without the feature opencore");
    std::process::exit(2);
}
