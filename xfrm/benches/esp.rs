//! Userspace ESP packets/s per algorithm pair (encrypt, and decrypt+verify, of a SIP-sized
//! 1000-byte UDP payload), and, as root, SA sets installed+deleted per second through the
//! kernel backend in a private netns (policies only where the kernel lacks ESP).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xfrm::model::{EncryptionAlg, IntegrityAlg, SaSet, Side, SocketAddrPair, Spis};
use xfrm::userspace::EspEndpoint;
use xfrm::{KernelBackend, Tag};

fn set(i: IntegrityAlg, e: EncryptionAlg, base: u32) -> SaSet {
    SaSet::new(
        SocketAddrPair {
            addr: [10, 0, 0, 2].into(),
            client: 40000,
            server: 40001,
        },
        SocketAddrPair {
            addr: [10, 0, 0, 1].into(),
            client: 5100,
            server: 5101,
        },
        Spis {
            uc: base,
            us: base + 1,
            pc: base + 2,
            ps: base + 3,
        },
        i,
        e,
        &[3; 16],
        &[4; 16],
        Duration::from_secs(30),
        Instant::now(),
    )
    .unwrap()
}

fn esp(c: &mut Criterion) {
    let payload = vec![b'S'; 1000];
    let mut g = c.benchmark_group("userspace_esp_1000B");
    g.throughput(Throughput::Elements(1));
    for i in IntegrityAlg::ALL {
        for e in EncryptionAlg::ALL {
            let s = set(i, e, 1000);
            let mut ue = EspEndpoint::new();
            ue.install(&s, Side::Ue).unwrap();
            let mut pc = EspEndpoint::new();
            pc.install(&s, Side::Pcscf).unwrap();
            let src = SocketAddr::new(s.ue, s.port_uc);
            let dst = SocketAddr::new(s.pcscf, s.port_ps);
            g.bench_function(format!("encrypt/{i}/{e}"), |b| {
                b.iter(|| ue.encrypt_udp(src, dst, &payload).unwrap())
            });
            // Decrypt needs fresh sequence numbers: pre-encrypt a batch and cycle through
            // fresh endpoints (replay state) outside the timed part.
            g.bench_function(format!("decrypt/{i}/{e}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(10_000);
                        let mut tx = EspEndpoint::new();
                        tx.install(&s, Side::Ue).unwrap();
                        let mut rx = EspEndpoint::new();
                        rx.install(&s, Side::Pcscf).unwrap();
                        let pkts: Vec<Vec<u8>> = (0..n)
                            .map(|_| tx.encrypt_udp(src, dst, &payload).unwrap())
                            .collect();
                        let t = Instant::now();
                        for p in &pkts {
                            rx.handle_esp(s.ue, Some(s.pcscf), p).unwrap();
                        }
                        total += t.elapsed();
                        left -= n;
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

fn kernel(c: &mut Criterion) {
    if !xfrm::netns::is_root() || !xfrm::netns::have("ip") {
        eprintln!("SKIPPED: kernel backend bench needs root and iproute2");
        return;
    }
    let ns = xfrm::netns::NetNs::create("xfrmbench").unwrap();
    let kb = ns
        .run(|| KernelBackend::new(Tag::default()).unwrap())
        .unwrap();
    let esp = kb.probe_esp().unwrap();
    let s = set(IntegrityAlg::HmacSha1_96, EncryptionAlg::AesCbc, 5000);
    let mut g = c.benchmark_group("kernel_backend");
    g.throughput(Throughput::Elements(1));
    let name = if esp {
        "sa_set_install_delete"
    } else {
        "policies_only_set_install_delete"
    };
    g.bench_function(name, |b| {
        b.iter(|| {
            let id = if esp {
                kb.install(&s, Side::Pcscf).unwrap()
            } else {
                kb.install_policies_only(&s, Side::Pcscf).unwrap()
            };
            kb.delete(id).unwrap();
        })
    });
    g.finish();
    kb.flush().unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = esp, kernel
}
criterion_main!(benches);
