//! MAR→MAA over loopback TCP through the tokio shell (client and server in one process,
//! trivial handler): requests per second with 1, 64 and 512 requests in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diameter::{
    app, avp, cmd, enums, result, Avp, Message, PeerConfig, PeerHandle, Server, VENDOR_3GPP,
};

fn mar(c: &PeerHandle) -> Message {
    Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::SESSION_ID, c.new_session_id()))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            enums::NO_STATE_MAINTAINED,
        ))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, "001010000000001@ims.lab"))
        .with(Avp::utf8(
            avp::PUBLIC_IDENTITY,
            "sip:001010000000001@ims.lab",
        ))
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
        .with(Avp::grouped(
            avp::SIP_AUTH_DATA_ITEM,
            [Avp::utf8(
                avp::SIP_AUTHENTICATION_SCHEME,
                "Digest-AKAv1-MD5",
            )],
        ))
}

async fn maa(req: Message) -> Message {
    Message::answer_for(&req)
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            enums::NO_STATE_MAINTAINED,
        ))
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
        .with(Avp::grouped(
            avp::SIP_AUTH_DATA_ITEM,
            [
                Avp::u32(avp::SIP_ITEM_NUMBER, 1),
                Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, "Digest-AKAv1-MD5"),
                Avp::octets(avp::SIP_AUTHENTICATE, vec![0x5a; 32]),
                Avp::octets(avp::SIP_AUTHORIZATION, vec![0xa5; 8]),
                Avp::octets(avp::CONFIDENTIALITY_KEY, vec![0x11; 16]),
                Avp::octets(avp::INTEGRITY_KEY, vec![0x22; 16]),
            ],
        ))
        .with_result_code(result::SUCCESS)
}

/// Runs `n` requests with `depth` in flight; returns the elapsed time.
async fn run(client: &PeerHandle, n: u64, depth: usize) -> Duration {
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(depth));
    let mut tasks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = c.request(mar(&c)).await;
            drop(permit);
            r.unwrap_or_else(|e| panic!("request failed: {e:?}"))
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let server = Server::bind("127.0.0.1:0", PeerConfig::cx("hss.ims.lab", "ims.lab"), maa)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let _ = server.spawn();
        PeerHandle::connect(addr, PeerConfig::cx("scscf.ims.lab", "ims.lab"))
            .await
            .unwrap()
    });
    let mut g = c.benchmark_group("tcp MAR->MAA");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for depth in [1usize, 64, 512] {
        g.bench_function(format!("{depth} in flight"), |b| {
            b.iter_custom(|iters| rt.block_on(run(&client, iters, depth)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
