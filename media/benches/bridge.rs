//! Cost of one call's bridge channel per 20 ms full-duplex frame pair: one packet in from
//! each leg, the playout tick, and the two packets out. Transcoding AMR-NB (octet-aligned,
//! 12.2) ⇄ PCMA for every codec backend this build has, and relaying PCMA ⇄ PCMA as the
//! floor. `cargo bench -p media --bench bridge [--features opencore]`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use media::amr::{self, AmrFormat, AmrFrame};
use media::bridge::{Channel, ChannelConfig, LegCodec, LegSpec, Side, MAX_DATAGRAM};
use media::codec::{self, Backend};
use media::g711;
use media::rtp::RtpHeader;
use media::tone::ToneGenerator;
use sdp::{AmrKind, Direction};

const OA: AmrFormat = AmrFormat::octet_aligned(AmrKind::Nb);

fn spec(codec: LegCodec, pt: u8, port: u16) -> LegSpec {
    let ip = "127.0.0.1".parse().expect("literal address");
    LegSpec {
        codec,
        send_pt: pt,
        recv_pt: pt,
        modes: 0xFF,
        dtmf: None,
        ptime: 20,
        remote_rtp: Some(SocketAddr::new(ip, port)),
        remote_rtcp: Some(SocketAddr::new(ip, port + 1)),
        direction: Direction::SendRecv,
    }
}

/// One second of datagrams from one leg.
type Packets = Vec<Vec<u8>>;

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Option<Vec<u8>> {
    let mut d = vec![0u8; 12 + payload.len()];
    let n = RtpHeader::new(pt, seq, ts, ssrc)
        .write_packet(payload, &mut d)
        .ok()?;
    d.truncate(n);
    Some(d)
}

/// 50 packets (one second) of a 1 kHz tone from each side: from A AMR-NB 12.2 encoded
/// with `backend` (or PCMA for the relay case), from B PCMA.
fn packets(backend: Backend, amr_a: bool) -> Option<(Packets, Packets)> {
    let mut enc = match amr_a {
        true => Some(codec::encoder(AmrKind::Nb, backend, false).ok()?),
        false => None,
    };
    let mut gen = ToneGenerator::new(1000.0, -20.0, 8000).ok()?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut pcm = [0i16; 160];
    let mut codes = [0u8; 160];
    for k in 0..50u16 {
        gen.fill(&mut pcm);
        let ts = u32::from(k) * 160;
        g711::alaw_encode_slice(&pcm, &mut codes).ok()?;
        a.push(match enc.as_mut() {
            Some(e) => {
                let mut bits = [0u8; codec::MAX_FRAME_OCTETS];
                let got = e.encode(&pcm, 7, &mut bits).ok()?;
                let f = AmrFrame::from_octets(AmrKind::Nb, got.frame_type, true, &bits[..got.len])
                    .ok()?;
                let mut payload = [0u8; 64];
                let n = amr::pack(OA, amr::CMR_NONE, [f], &mut payload).ok()?;
                rtp(99, k, ts, 0xA, &payload[..n])?
            }
            None => rtp(8, k, ts, 0xA, &codes)?,
        });
        b.push(rtp(8, k, ts, 0xB, &codes)?);
    }
    Some((a, b))
}

/// A channel in the steady state with its input, or `None` when the backend lacks the codec.
fn setup(backend: Backend, transcode: bool) -> Option<(Channel, Packets, Packets, Instant)> {
    let t0 = Instant::now();
    let mut cfg = ChannelConfig::new(1, SystemTime::now());
    cfg.backend = backend;
    cfg.media_timeout = Duration::from_secs(1 << 30);
    cfg.rtcp_interval = Duration::from_secs(1 << 30);
    let mut ch = Channel::new(cfg, t0);
    let a = if transcode {
        LegCodec::Amr(OA)
    } else {
        LegCodec::Pcma
    };
    ch.set_leg(Side::A, spec(a, if transcode { 99 } else { 8 }, 4000), t0)
        .ok()?;
    ch.set_leg(Side::B, spec(LegCodec::Pcma, 8, 6000), t0)
        .ok()?;
    let (pa, pb) = packets(backend, transcode)?;
    Some((ch, pa, pb, t0))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("bridge");
    g.throughput(Throughput::Elements(1));
    let mut cases: Vec<(String, Backend, bool)> = Backend::available()
        .iter()
        .map(|&b| {
            (
                format!("transcode_amrnb_pcma_{b:?}").to_lowercase(),
                b,
                true,
            )
        })
        .collect();
    cases.push(("relay_pcma".into(), Backend::Rust, false));
    for (name, backend, transcode) in cases {
        let Some((mut ch, mut pa, mut pb, t0)) = setup(backend, transcode) else {
            eprintln!("{name}: the {backend:?} backend has no AMR-NB codec in this build, skipped");
            continue;
        };
        let mut out = [0u8; MAX_DATAGRAM];
        let mut k = 0usize;
        // Relabel the packets' sequence numbers and timestamps so the stream never repeats.
        let mut frame = 0u32;
        g.bench_function(name.as_str(), |bencher| {
            bencher.iter(|| {
                let now = t0 + Duration::from_millis(20 * u64::from(frame));
                for d in [&mut pa[k], &mut pb[k]] {
                    d[2..4].copy_from_slice(&(frame as u16).to_be_bytes());
                    d[4..8].copy_from_slice(&(frame * 160).to_be_bytes());
                }
                ch.handle_rtp(Side::A, &pa[k], now);
                ch.handle_rtp(Side::B, &pb[k], now);
                ch.handle_timeout(now);
                while let Some(tx) = ch.poll_transmit(&mut out) {
                    black_box(tx);
                }
                k = (k + 1) % pa.len();
                frame = frame.wrapping_add(1);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
