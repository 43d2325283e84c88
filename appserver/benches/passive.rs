//! Offers per second through the passive path: a generated pcap of 10,000 answered calls
//! (INVITE, 200, BYE over UDP, Ethernet) read by `pcapin` — pcap records, frame decoding,
//! SIP parsing, scanning — into a counting observer. Throughput is in calls (= offers).
//! Also the MGCP parser on a ringing RQNT with caller-ID.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use appserver::event::{CallObserver, Offer, Progress, Source, Verdict};
use appserver::mgcp::{self, MgcpScanner};
use appserver::passive::{fixtures, pcapin, PassiveConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[derive(Default)]
struct Count {
    offers: AtomicU64,
    progress: AtomicU64,
}

impl CallObserver for Count {
    fn offer(&self, _: Offer) -> Verdict {
        self.offers.fetch_add(1, Ordering::Relaxed);
        Verdict::Ring
    }
    fn progress(&self, _: &str, _: Progress, _: SystemTime) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
}

const CALLS: usize = 10_000;

fn bench(c: &mut Criterion) {
    let pcap = fixtures::many_invites(CALLS).to_pcap();
    let cfg = PassiveConfig::default();
    let mut g = c.benchmark_group("passive");
    g.throughput(Throughput::Elements(CALLS as u64));
    g.sample_size(10);
    g.bench_function("pcap_10k_calls_to_offers", |b| {
        b.iter(|| {
            let n = Count::default();
            let s = pcapin::read(pcap.as_slice(), &cfg, &n).expect("generated pcap reads");
            assert_eq!(n.offers.load(Ordering::Relaxed), CALLS as u64, "{s}");
            assert_eq!(n.progress.load(Ordering::Relaxed), 2 * CALLS as u64);
        })
    });
    g.finish();

    let rqnt = mgcp::text::rqnt_ring(1001, "aaln/1@gw.example.net", "A1", "+4930123456", "Alice");
    let mut g = c.benchmark_group("mgcp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rqnt_ci_to_offer", |b| {
        let mut s = MgcpScanner::new(Source::Pcap);
        b.iter(|| {
            s.handle_datagram(rqnt.as_bytes(), SystemTime::UNIX_EPOCH)
                .expect("RQNT parses");
            s.poll_event().expect("an offer")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
