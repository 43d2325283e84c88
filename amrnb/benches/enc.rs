//! Encoder speed: µs per 20 ms frame for each mode, ours and (as the yardstick, measured in
//! the same run) libopencore-amrnb's fixed-point reference encoder.

use amrnb::enc::Encoder;
use amrnb::Mode;
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

/// A voiced-speech-like signal: a 140 Hz pulse train shaped by two resonances, 1 s long.
fn speechlike() -> Vec<[i16; 160]> {
    let mut frames = Vec::new();
    let (mut y1, mut y2, mut z1, mut z2) = (0.0f64, 0.0, 0.0, 0.0);
    let mut seed = 1u32;
    for f in 0..50 {
        let mut fr = [0i16; 160];
        for (n, s) in fr.iter_mut().enumerate() {
            let t = f * 160 + n;
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = f64::from((seed >> 16) as i16) / 32768.0 * 0.05;
            let x = if t % 57 == 0 { 1.0 } else { 0.0 } + noise;
            let y = x + 1.6 * y1 - 0.9 * y2;
            y2 = y1;
            y1 = y;
            let z = y + 0.5 * z1 - 0.8 * z2;
            z2 = z1;
            z1 = z;
            *s = (z * 900.0).clamp(-32768.0, 32767.0) as i16;
        }
        frames.push(fr);
    }
    frames
}

fn bench(c: &mut Criterion) {
    let frames = speechlike();
    let mut g = c.benchmark_group("amrnb_encode_frame");
    for mode in Mode::ALL {
        g.bench_function(format!("{mode:?}"), |b| {
            let mut enc = Encoder::new();
            let mut out = [0u8; 32];
            let mut i = 0;
            b.iter(|| {
                let n = enc.encode(mode, &frames[i % frames.len()], &mut out);
                i += 1;
                n
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("opencore_encode_frame");
    for mode in Mode::ALL {
        g.bench_function(format!("{mode:?}"), |b| {
            // SAFETY: the state lives for this closure only and is freed below; the library
            // may write into its input, so it gets a copy of each frame.
            let st = unsafe { Encoder_Interface_init(0) };
            assert!(!st.is_null());
            let mut out = [0u8; 64];
            let mut i = 0;
            b.iter(|| {
                let speech = frames[i % frames.len()];
                i += 1;
                // SAFETY: as above; `out` is larger than any frame.
                unsafe {
                    Encoder_Interface_Encode(
                        st,
                        c_int::from(mode.frame_type()),
                        speech.as_ptr(),
                        out.as_mut_ptr(),
                        0,
                    )
                }
            });
            // SAFETY: created above, freed once.
            unsafe { Encoder_Interface_exit(st) };
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
