//! Encode/decode of a typical Cx MAA (one AKA vector, TS 29.229 §6.1.8), and a MAR→MAA
//! round trip through two sans-IO peers. Criterion prints messages per second.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diameter::{
    app, avp, cmd, enums, result, Avp, FindAvp, Message, Peer, PeerConfig, VENDOR_3GPP,
};

fn mar() -> Message {
    Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(
            avp::SESSION_ID,
            "scscf.ims.mnc001.mcc001.3gppnetwork.org;1700000000;42",
        ))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            enums::NO_STATE_MAINTAINED,
        ))
        .with(Avp::utf8(
            avp::ORIGIN_HOST,
            "scscf.ims.mnc001.mcc001.3gppnetwork.org",
        ))
        .with(Avp::utf8(
            avp::ORIGIN_REALM,
            "ims.mnc001.mcc001.3gppnetwork.org",
        ))
        .with(Avp::utf8(
            avp::DESTINATION_REALM,
            "ims.mnc001.mcc001.3gppnetwork.org",
        ))
        .with(Avp::utf8(
            avp::USER_NAME,
            "001010000000001@ims.mnc001.mcc001.3gppnetwork.org",
        ))
        .with(Avp::utf8(
            avp::PUBLIC_IDENTITY,
            "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org",
        ))
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
        .with(Avp::grouped(
            avp::SIP_AUTH_DATA_ITEM,
            [Avp::utf8(
                avp::SIP_AUTHENTICATION_SCHEME,
                "Digest-AKAv1-MD5",
            )],
        ))
        .with(Avp::utf8(
            avp::SERVER_NAME,
            "sip:scscf.ims.mnc001.mcc001.3gppnetwork.org:6060",
        ))
}

fn maa(req: &Message) -> Message {
    Message::answer_for(req)
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            enums::NO_STATE_MAINTAINED,
        ))
        .with(Avp::utf8(
            avp::ORIGIN_HOST,
            "hss.ims.mnc001.mcc001.3gppnetwork.org",
        ))
        .with(Avp::utf8(
            avp::ORIGIN_REALM,
            "ims.mnc001.mcc001.3gppnetwork.org",
        ))
        .with(Avp::utf8(
            avp::USER_NAME,
            "001010000000001@ims.mnc001.mcc001.3gppnetwork.org",
        ))
        .with(Avp::utf8(
            avp::PUBLIC_IDENTITY,
            "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org",
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

fn bench(c: &mut Criterion) {
    let req = mar();
    let ans = maa(&req);
    let wire = bytes::Bytes::from(ans.encode());
    println!(
        "typical MAA: {} bytes, {} top-level AVPs",
        wire.len(),
        ans.avps.len()
    );

    let mut g = c.benchmark_group("maa");
    g.throughput(Throughput::Elements(1));
    g.bench_function("build+encode", |b| {
        let mut buf = Vec::with_capacity(512);
        b.iter(|| {
            buf.clear();
            maa(black_box(&req)).encode_into(&mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("encode", |b| {
        let mut buf = Vec::with_capacity(512);
        b.iter(|| {
            buf.clear();
            black_box(&ans).encode_into(&mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| Message::decode(black_box(wire.clone())).unwrap())
    });
    g.bench_function("decode+read vector", |b| {
        b.iter(|| {
            let m = Message::decode(black_box(wire.clone())).unwrap();
            let item = m.get_grouped(avp::SIP_AUTH_DATA_ITEM).unwrap();
            black_box(item.get_octets(avp::SIP_AUTHENTICATE).unwrap().len())
        })
    });
    g.finish();

    // MAR→MAA through two sans-IO peers (no sockets): the protocol core's own cost.
    let now = Instant::now();
    let mut cl = Peer::connect(
        Arc::new(PeerConfig::cx("scscf.ims.lab", "ims.lab")),
        now,
        1,
        None,
    );
    let mut sv = Peer::accept(
        Arc::new(PeerConfig::cx("hss.ims.lab", "ims.lab")),
        now,
        2,
        None,
    );
    sv.handle_bytes(now, &cl.poll_transmit().unwrap());
    cl.handle_bytes(now, &sv.poll_transmit().unwrap());
    while cl.poll_event().is_some() {}
    while sv.poll_event().is_some() {}
    let mut g = c.benchmark_group("peer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("MAR->MAA round trip", |b| {
        b.iter(|| {
            cl.send_request(now, mar()).unwrap();
            sv.handle_bytes(now, &cl.poll_transmit().unwrap());
            let Some(diameter::peer::Event::Request(r)) = sv.poll_event() else {
                panic!()
            };
            sv.send_answer(maa(&r)).unwrap();
            cl.handle_bytes(now, &sv.poll_transmit().unwrap());
            black_box(cl.poll_event().unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
