//! Cost of the speech codecs per 20 ms frame, the figure that bounds a transcoding bridge's
//! channels per core: encode and decode of one frame of a 1 kHz tone, AMR-NB 12.2 and 4.75
//! kbit/s and AMR-WB 12.65 kbit/s, for every backend this build has that does the codec.
//! After criterion's report, prints µs/frame of each (mean over 2,000 frames) side by side.
//!
//! `cargo bench -p media --features opencore --bench codec`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use media::amr::AmrFrame;
use media::codec::{self, frame_samples, Backend, MAX_FRAME_OCTETS};
use media::tone::ToneGenerator;
use sdp::AmrKind;

/// (codec, mode, label) of each measured case.
const CASES: [(AmrKind, u8, &str); 3] = [
    (AmrKind::Nb, 7, "nb_12.2"),
    (AmrKind::Nb, 0, "nb_4.75"),
    (AmrKind::Wb, 2, "wb_12.65"),
];

/// One second of tone frames of `kind`.
fn tone_frames(kind: AmrKind) -> Vec<Vec<i16>> {
    let rate = if kind == AmrKind::Nb { 8000 } else { 16000 };
    let mut g = ToneGenerator::new(1000.0, -20.0, rate).expect("valid tone");
    (0..50)
        .map(|_| {
            let mut f = vec![0i16; frame_samples(kind)];
            g.fill(&mut f);
            f
        })
        .collect()
}

/// The encoded frames of `pcm` at `mode`: (frame type, speech octets).
fn encoded(kind: AmrKind, backend: Backend, mode: u8, pcm: &[Vec<i16>]) -> Vec<(u8, Vec<u8>)> {
    let mut enc = codec::encoder(kind, backend, false).expect("encoder");
    let mut out = [0u8; MAX_FRAME_OCTETS];
    pcm.iter()
        .map(|f| {
            let e = enc.encode(f, mode, &mut out).expect("encode");
            (e.frame_type, out[..e.len].to_vec())
        })
        .collect()
}

/// The backends of this build that have `kind`, by trying to make its codecs.
fn backends(kind: AmrKind) -> impl Iterator<Item = Backend> {
    Backend::available()
        .iter()
        .copied()
        .filter(move |&b| codec::encoder(kind, b, false).is_ok() && codec::decoder(kind, b).is_ok())
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    for (kind, mode, label) in CASES {
        let pcm = tone_frames(kind);
        for backend in backends(kind) {
            let name = format!("{backend:?}").to_lowercase();
            let mut enc = codec::encoder(kind, backend, false).expect("encoder");
            let mut out = [0u8; MAX_FRAME_OCTETS];
            let mut i = 0;
            g.bench_function(format!("{name}_{label}_encode_20ms"), |b| {
                b.iter(|| {
                    i = (i + 1) % pcm.len();
                    black_box(enc.encode(black_box(&pcm[i]), mode, &mut out))
                })
            });
            let frames = encoded(kind, backend, mode, &pcm);
            let mut dec = codec::decoder(kind, backend).expect("decoder");
            let mut back = vec![0i16; frame_samples(kind)];
            let mut i = 0;
            g.bench_function(format!("{name}_{label}_decode_20ms"), |b| {
                b.iter(|| {
                    i = (i + 1) % frames.len();
                    let (ft, speech) = &frames[i];
                    let f = AmrFrame::from_octets(kind, *ft, true, speech).expect("frame");
                    black_box(dec.decode(Some(black_box(&f)), &mut back))
                })
            });
        }
    }
    g.finish();
    summary();
}

/// µs per frame of each backend and case, timed directly so the figures sit side by side.
fn summary() {
    const N: usize = 2000;
    println!("\ncodec cost per 20 ms frame (mean of {N} frames of a 1 kHz tone)");
    println!(
        "{:<10} {:<10} {:>12} {:>12}",
        "backend", "case", "encode µs", "decode µs"
    );
    for (kind, mode, label) in CASES {
        let pcm = tone_frames(kind);
        for backend in backends(kind) {
            let frames = encoded(kind, backend, mode, &pcm);
            let mut enc = codec::encoder(kind, backend, false).expect("encoder");
            let mut dec = codec::decoder(kind, backend).expect("decoder");
            let mut out = [0u8; MAX_FRAME_OCTETS];
            let t = Instant::now();
            for i in 0..N {
                black_box(enc.encode(black_box(&pcm[i % pcm.len()]), mode, &mut out)).ok();
            }
            let enc_us = t.elapsed().as_secs_f64() * 1e6 / N as f64;
            let mut back = vec![0i16; frame_samples(kind)];
            let t = Instant::now();
            for i in 0..N {
                let (ft, speech) = &frames[i % frames.len()];
                if let Ok(f) = AmrFrame::from_octets(kind, *ft, true, speech) {
                    black_box(dec.decode(Some(black_box(&f)), &mut back)).ok();
                }
            }
            let dec_us = t.elapsed().as_secs_f64() * 1e6 / N as f64;
            println!(
                "{:<10} {:<10} {:>12.1} {:>12.1}",
                format!("{backend:?}"),
                label,
                enc_us,
                dec_us
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
