//! MAR → MAA over loopback TCP with durable SQNs: throughput and latency.
//!
//! Starts the HSS in-process (Diameter on 127.0.0.1:0, a temporary SQLite database with
//! `durability = "full"`: fsync per group commit), connects `CONNS` S-CSCF clients and keeps
//! `INFLIGHT` MARs outstanding on each, for `TOTAL` MARs (bounded). Prints MAA/s, p50/p99.
//! Env: HSS_BENCH_TOTAL, HSS_BENCH_CONNS, HSS_BENCH_INFLIGHT, HSS_BENCH_DURABILITY=normal,
//! HSS_BENCH_SUBS.

use diameter::transport::PeerHandle;
use diameter::{app, avp, cmd, result, Avp, FindAvp, Message, PeerConfig, VENDOR_3GPP};
use hss::config::Config;
use hss::store::{Durability, Impu, Store, Subscriber};
use std::time::{Duration, Instant};

fn env(name: &str, d: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn subscriber(n: u64) -> Subscriber {
    let imsi = format!("00101{n:010}");
    Subscriber {
        imsi: Some(imsi.clone()),
        amf: [0x80, 0],
        impus: vec![Impu::new(format!("sip:{imsi}@ims.lab"))],
        ..Subscriber::new(format!("{imsi}@ims.lab"), [0x46; 16], [0xcd; 16])
    }
}

fn mar(c: &PeerHandle, s: &Subscriber) -> Message {
    Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::SESSION_ID, c.new_session_id()))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
        .with(Avp::utf8(avp::ORIGIN_HOST, "scscf.ims.lab"))
        .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, &s.impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, &s.impus[0].uri))
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
        .with(Avp::grouped(
            avp::SIP_AUTH_DATA_ITEM,
            [Avp::utf8(
                avp::SIP_AUTHENTICATION_SCHEME,
                "Digest-AKAv1-MD5",
            )],
        ))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special: run small.
    let quick =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let total = env("HSS_BENCH_TOTAL", if quick { 2_000 } else { 200_000 });
    let conns = env("HSS_BENCH_CONNS", 4);
    let inflight = env("HSS_BENCH_INFLIGHT", 64);
    let nsubs = env("HSS_BENCH_SUBS", 1000);
    let durability = match std::env::var("HSS_BENCH_DURABILITY").as_deref() {
        Ok("normal") => Durability::Normal,
        _ => Durability::Full,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    {
        let mut s = Store::open(&db, durability).expect("store");
        for n in 0..nsubs {
            s.add(&subscriber(n)).expect("add");
        }
    }
    let mut cfg = Config::default();
    cfg.diameter.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.store.path = db.clone();
    cfg.store.durability = durability;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (hss, l) = hss::server::start(&cfg).await.expect("start");
        let subs: std::sync::Arc<Vec<Subscriber>> = std::sync::Arc::new((0..nsubs).map(subscriber).collect());
        let per_worker = total / (conns * inflight);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for ci in 0..conns {
            let c = PeerHandle::connect(l.diameter, PeerConfig::cx(format!("scscf{ci}.ims.lab"), "ims.lab"))
                .await
                .expect("connect");
            for w in 0..inflight {
                let c = c.clone();
                let subs = subs.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per_worker as usize);
                    for i in 0..per_worker {
                        let s = &subs[((ci * 7919 + w * 104729 + i) % subs.len() as u64) as usize];
                        let m = mar(&c, s);
                        let t = Instant::now();
                        let a = c.request(m).await.expect("answer");
                        lat.push(t.elapsed());
                        assert_eq!(a.get_u32(avp::RESULT_CODE).ok(), Some(result::SUCCESS));
                    }
                    lat
                }));
            }
        }
        let mut lat: Vec<Duration> = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("worker"));
        }
        let el = start.elapsed();
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "cx_mar: {} MAR->MAA over TCP, {} conns x {} in flight, {} subscribers, durability={:?}: {:.0} MAA/s, p50 {:?}, p99 {:?}, max {:?}, {:.1} MARs per SQN commit",
            lat.len(),
            conns,
            inflight,
            nsubs,
            durability,
            lat.len() as f64 / el.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            lat[lat.len() - 1],
            hss.sqn.stats().requests.load(std::sync::atomic::Ordering::Relaxed) as f64
                / hss.sqn.stats().batches.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64
        );
    });
}
