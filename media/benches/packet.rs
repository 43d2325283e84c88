//! Per-packet cost of the media hot path a bridge runs 50 times a second per direction and
//! call: relaying an RTP packet with the per-leg rewrite, converting an AMR payload between
//! the octet-aligned and bandwidth-efficient formats, and G.711 for one 20 ms frame.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use media::amr::{AmrFormat, AmrPayload};
use media::g711;
use media::rewrite::LegRewriter;
use media::rtp::RtpHeader;
use media::tone::ToneGenerator;
use sdp::AmrKind;

const OA: AmrFormat = AmrFormat::octet_aligned(AmrKind::Nb);
const BE: AmrFormat = AmrFormat::bandwidth_efficient(AmrKind::Nb);

fn mr122_octet_aligned() -> Vec<u8> {
    let mut p = vec![0xF0, 0x3C];
    p.extend((0..31u8).map(|i| i.wrapping_mul(37)));
    p[32] &= 0xF0;
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("media");
    g.throughput(Throughput::Elements(1));

    let oa = mr122_octet_aligned();
    let mut packet = [0u8; 64];
    let n = RtpHeader::new(99, 1, 160, 0xABCD)
        .write_packet(&oa, &mut packet)
        .expect("bench packet fits");
    let mut leg = LegRewriter::new(0x1234, 7, 9, 8000);
    let now = Instant::now();
    let mut seq = 0u16;
    g.bench_function("rtp_parse_and_rewrite", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            let r = leg.rewrite_packet(black_box(&mut packet[..n]), Some(97), now);
            black_box(r.is_ok())
        })
    });

    let mut out = [0u8; 64];
    g.bench_function("amr_mr122_octet_aligned_to_bandwidth_efficient", |b| {
        b.iter(|| {
            let p = AmrPayload::parse(OA, black_box(&oa)).expect("valid payload");
            black_box(p.write(BE, 15, &mut out).expect("fits"))
        })
    });
    let be_len = AmrPayload::parse(OA, &oa)
        .and_then(|p| p.write(BE, 15, &mut out))
        .expect("valid payload");
    let be = out[..be_len].to_vec();
    g.bench_function("amr_mr122_bandwidth_efficient_to_octet_aligned", |b| {
        b.iter(|| {
            let p = AmrPayload::parse(BE, black_box(&be)).expect("valid payload");
            black_box(p.write(OA, 15, &mut out).expect("fits"))
        })
    });

    let mut pcm = [0i16; 160];
    ToneGenerator::new(1000.0, -20.0, 8000)
        .expect("valid tone")
        .fill(&mut pcm);
    let mut codes = [0u8; 160];
    g.bench_function("g711_alaw_encode_20ms", |b| {
        b.iter(|| black_box(g711::alaw_encode_slice(black_box(&pcm), &mut codes)))
    });
    let mut back = [0i16; 160];
    g.bench_function("g711_alaw_decode_20ms", |b| {
        b.iter(|| black_box(g711::alaw_decode_slice(black_box(&codes), &mut back)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
