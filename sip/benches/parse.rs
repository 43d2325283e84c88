//! Parse + serialise throughput of a typical protected REGISTER (the message the
//! P-CSCF handles most during registration storms), plus the proxy edit path.
//! Prints messages/s (criterion's `thrpt` in elem/s and a plain summary line).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sip::ims::{hdr, tag};
use sip::transaction::{Config, RequestOutcome, Transactions};
use sip::{Flow, Message, Protocol, ResponseBuilder};

const PROTECTED_REGISTER: &str = "REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org SIP/2.0\r
Via: SIP/2.0/UDP [2001:db8:0:1::5]:50413;branch=z9hG4bK3c1d7e8f2;rport\r
Max-Forwards: 70\r
From: <sip:001010123456789@ims.mnc001.mcc001.3gppnetwork.org>;tag=2093471011\r
To: <sip:001010123456789@ims.mnc001.mcc001.3gppnetwork.org>\r
Call-ID: 2093470989_2350183944@2001:db8:0:1::5\r
CSeq: 2 REGISTER\r
Contact: <sip:001010123456789@[2001:db8:0:1::5]:50413>;+sip.instance=\"<urn:gsma:imei:35000000-000000-0>\";+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\";expires=600000\r
Authorization: Digest username=\"001010123456789@ims.mnc001.mcc001.3gppnetwork.org\",realm=\"ims.mnc001.mcc001.3gppnetwork.org\",uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\",nonce=\"3DGvJ2j3Xn1rZ8Ks0c8Zq2a9mF2XbL0AAAAAAAAAAAAAAA==\",response=\"6629fae49393a05397450978507c4ef1\",algorithm=AKAv1-MD5,qop=auth,nc=00000001,cnonce=\"0a4f113b\"\r
Require: sec-agree\r
Proxy-Require: sec-agree\r
Supported: path, gruu, sec-agree\r
Security-Verify: ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=5001;spi-s=5002;port-c=5100;port-s=5101\r
P-Access-Network-Info: 3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=0010100010a2d501\r
User-Agent: Lab UE\r
Content-Length: 0\r
\r
";

fn parse_serialize(raw: &[u8], out: &mut Vec<u8>) {
    let m = Message::parse(raw).expect("bench message parses");
    out.clear();
    m.write_to(out);
}

fn proxy_path(raw: &[u8], out: &mut Vec<u8>) {
    let mut m = Message::parse(raw).expect("bench message parses");
    let _ = m.cseq();
    let _ = m.security_verify();
    m.remove_header(hdr::SECURITY_VERIFY);
    m.remove_option_tag(hdr::REQUIRE, tag::SEC_AGREE);
    m.remove_option_tag(hdr::PROXY_REQUIRE, tag::SEC_AGREE);
    m.remove_option_tag(hdr::SUPPORTED, tag::SEC_AGREE);
    m.prepend_header(
        "Via",
        "SIP/2.0/UDP [2001:db8::100]:5060;branch=z9hG4bKpcscf1",
    );
    m.prepend_header(hdr::PATH, "<sip:term@pcscf.ims.test;lr>");
    out.clear();
    m.write_to(out);
}

fn summary(name: &str, f: &mut dyn FnMut()) {
    // a plain, bounded measurement so the figure is visible without reading criterion's table
    let n = 200_000u32;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let dt = t.elapsed();
    println!(
        "{name}: {:.0} messages/s ({:.2} µs/message)",
        f64::from(n) / dt.as_secs_f64(),
        dt.as_secs_f64() * 1e6 / f64::from(n)
    );
}

fn bench(c: &mut Criterion) {
    let raw = PROTECTED_REGISTER.as_bytes();
    let mut out = Vec::with_capacity(2048);
    let mut g = c.benchmark_group("protected_register");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        b.iter(|| Message::parse(black_box(raw)).expect("parses"))
    });
    g.bench_function("parse+serialize", |b| {
        b.iter(|| parse_serialize(black_box(raw), &mut out))
    });
    g.bench_function("parse+proxy_edits+serialize", |b| {
        b.iter(|| proxy_path(black_box(raw), &mut out))
    });
    let flow = Flow::to(
        "[2001:db8:0:1::5]:50413".parse().expect("addr"),
        Protocol::Udp,
    );
    g.bench_function("server_tx+401", |b| {
        let mut t = Transactions::new(Config::default());
        let now = Instant::now();
        let mut cseq = 0u32;
        b.iter(|| {
            cseq += 1;
            let mut m = Message::parse(black_box(raw)).expect("parses");
            m.set_header(
                "Via",
                &format!("SIP/2.0/UDP [2001:db8:0:1::5]:50413;branch=z9hG4bK{cseq};rport"),
            );
            if let Ok(RequestOutcome::New { id, request }) = t.handle_request(m, flow, now) {
                let r = ResponseBuilder::new(&request, 401)
                    .to_tag("t")
                    .build()
                    .expect("builds");
                let _ = t.respond(id, r, now);
            }
            while t.poll_transmit().is_some() {}
            // reliable-less table keeps completed transactions for timer J; expire them
            t.handle_timeout(now + std::time::Duration::from_secs(40));
            while t.poll_event().is_some() {}
        })
    });
    g.finish();

    summary("parse", &mut || {
        black_box(Message::parse(black_box(raw)).expect("parses"));
    });
    summary("parse+serialize", &mut || {
        parse_serialize(black_box(raw), &mut out)
    });
    summary("parse+proxy_edits+serialize", &mut || {
        proxy_path(black_box(raw), &mut out)
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
