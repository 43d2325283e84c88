//! Vectors per second: our Milenage (key schedule cached per subscriber) against the
//! `milenage` crate, side by side in one run. Both compute what an HSS needs per vector:
//! f1 (MAC-A) and f2..f5 (RES, CK, IK, AK) for one RAND.
//!
//! `cargo bench -p akav1 --bench milenage` prints both throughputs; the ratio is the figure.

use akav1::{Milenage, Sqn};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn vectors(c: &mut Criterion) {
    let k = [0x46u8; 16];
    let op = [0xcdu8; 16];
    let amf = [0x80, 0x00];
    let sqn = [0, 0, 0, 0, 0x10, 0x20];
    let mut g = c.benchmark_group("vector");
    g.throughput(Throughput::Elements(1));

    let ours = Milenage::from_op(&k, &op);
    let mut rand = [0u8; 16];
    g.bench_function("akav1 (cached key schedule)", |b| {
        b.iter(|| {
            rand[0] = rand[0].wrapping_add(1);
            black_box(ours.vector(black_box(&rand), Sqn::from_bytes(&sqn), amf))
        })
    });

    let mut theirs = milenage::Milenage::new_with_op(k, op);
    g.bench_function("milenage crate", |b| {
        b.iter(|| {
            rand[0] = rand[0].wrapping_add(1);
            let mac = theirs.f1(black_box(&rand), &sqn, &amf);
            black_box((mac, theirs.f2345(black_box(&rand))))
        })
    });

    // The per-subscriber cost we pay once: building the instance (key expansion + OPc).
    g.bench_function("akav1 instance from K+OP", |b| {
        b.iter(|| black_box(Milenage::from_op(black_box(&k), black_box(&op))))
    });
    g.finish();
}

criterion_group!(benches, vectors);
criterion_main!(benches);
