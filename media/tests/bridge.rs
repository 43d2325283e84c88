//! The sans-IO bridge channel with synthetic packets: relay with rewritten headers, AMR
//! repacking between payload formats, transcoding a tone both ways (G.711 A-law ⇄ µ-law
//! with different ptimes; AMR ⇄ PCMA when a codec backend is built), telephone-event with
//! clock conversion, the media timeout and per-leg RTCP.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use media::amr::{AmrFormat, AmrFrame, AmrPayload};
use media::bridge::{
    Channel, ChannelConfig, ChannelEvent, DtmfSpec, LegCodec, LegSpec, Mode, Side, Transmit,
    MAX_DATAGRAM,
};
use media::g711;
use media::rtcp::{Compound, RtcpPacket, RtcpWriter, SenderInfo};
use media::rtp::{RtpHeader, RtpPacket};
use media::telephone_event::TelephoneEvent;
use media::tone::{measure, ToneGenerator};
use sdp::{AmrKind, Direction};

const A_PEER: &str = "127.0.0.1:4000";
const B_PEER: &str = "127.0.0.1:6000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn spec(codec: LegCodec, pt: u8, dtmf: Option<(u8, u32)>, ptime: u32, peer: &str) -> LegSpec {
    let rtp = addr(peer);
    LegSpec {
        codec,
        send_pt: pt,
        recv_pt: pt,
        modes: match codec {
            LegCodec::Amr(f) => (1 << (f.kind.max_mode() + 1)) - 1,
            _ => 0,
        },
        dtmf: dtmf.map(|(pt, rate)| DtmfSpec {
            send_pt: pt,
            recv_pt: pt,
            clock_rate: rate,
        }),
        ptime,
        remote_rtp: Some(rtp),
        remote_rtcp: Some(SocketAddr::new(rtp.ip(), rtp.port() + 1)),
        direction: Direction::SendRecv,
    }
}

fn channel(a: LegSpec, b: LegSpec, t: Instant) -> (Channel, Mode) {
    let mut ch = Channel::new(ChannelConfig::new(7, SystemTime::now()), t);
    assert_eq!(ch.set_leg(Side::A, a, t).unwrap(), Mode::Idle);
    let mode = ch.set_leg(Side::B, b, t).unwrap();
    (ch, mode)
}

type Sent = (Transmit, Vec<u8>);

fn drain(ch: &mut Channel, out: &mut Vec<Sent>) {
    let mut buf = [0u8; MAX_DATAGRAM];
    while let Some(tx) = ch.poll_transmit(&mut buf) {
        out.push((tx, buf[..tx.len].to_vec()));
    }
}

/// Runs every timer due up to `to`.
fn advance(ch: &mut Channel, to: Instant, out: &mut Vec<Sent>) {
    for _ in 0..100_000 {
        match ch.poll_timeout() {
            Some(t) if t <= to => {
                ch.handle_timeout(t);
                drain(ch, out);
            }
            _ => return,
        }
    }
    panic!("timers never settled");
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 12 + payload.len()];
    let n = RtpHeader::new(pt, seq, ts, ssrc)
        .write_packet(payload, &mut b)
        .unwrap();
    b.truncate(n);
    b
}

fn rtp_on(out: &[Sent], side: Side) -> Vec<&Sent> {
    out.iter()
        .filter(|(t, _)| t.side == side && !t.rtcp)
        .collect()
}

#[test]
fn relay_rewrites_headers_and_keeps_payload() {
    let t0 = Instant::now();
    let (mut ch, mode) = channel(
        spec(LegCodec::Pcma, 8, None, 20, A_PEER),
        spec(LegCodec::Pcma, 8, None, 20, B_PEER),
        t0,
    );
    assert_eq!(mode, Mode::Relay);
    let mut out = Vec::new();
    for i in 0..10u16 {
        let payload = [i as u8; 160];
        let now = t0 + Duration::from_millis(20 * u64::from(i));
        ch.handle_rtp(
            Side::A,
            &rtp(8, 1000 + i, 5000 + 160 * u32::from(i), 0xAAAA, &payload),
            now,
        );
        ch.handle_rtp(
            Side::B,
            &rtp(8, 60000 + i, 7 + 160 * u32::from(i), 0xBBBB, &payload),
            now,
        );
        drain(&mut ch, &mut out);
    }
    for (side, peer) in [(Side::B, B_PEER), (Side::A, A_PEER)] {
        let sent = rtp_on(&out, side);
        assert_eq!(sent.len(), 10);
        let first = RtpPacket::parse(&sent[0].1).unwrap();
        for (i, (tx, d)) in sent.iter().enumerate() {
            assert_eq!(tx.to, addr(peer));
            let p = RtpPacket::parse(d).unwrap();
            assert_eq!(p.ssrc(), ch.ssrc(side));
            assert_eq!(p.sequence(), first.sequence().wrapping_add(i as u16));
            assert_eq!(
                p.timestamp(),
                first.timestamp().wrapping_add(160 * i as u32)
            );
            assert_eq!(p.payload(), &[i as u8; 160][..]);
        }
    }
    assert_ne!(ch.ssrc(Side::A), 0xBBBB);
    assert_eq!(ch.stats().relayed, 20);
    assert_eq!(ch.stats().dropped, 0);
}

#[test]
fn relay_repacks_amr_between_payload_formats() {
    let t0 = Instant::now();
    let be = AmrFormat::bandwidth_efficient(AmrKind::Nb);
    let oa = AmrFormat::octet_aligned(AmrKind::Nb);
    let (mut ch, mode) = channel(
        spec(LegCodec::Amr(be), 97, None, 20, A_PEER),
        spec(LegCodec::Amr(oa), 99, None, 20, B_PEER),
        t0,
    );
    assert_eq!(mode, Mode::Relay);
    // Two 12.2 frames with a recognisable pattern, CMR 5.
    let speech: [u8; 31] =
        std::array::from_fn(|i| (i as u8).wrapping_mul(29) & if i == 30 { 0xF0 } else { 0xFF });
    let f = AmrFrame::from_octets(AmrKind::Nb, 7, true, &speech).unwrap();
    let mut payload = [0u8; 80];
    let n = media::amr::pack(be, 5, [f, f], &mut payload).unwrap();
    ch.handle_rtp(Side::A, &rtp(97, 1, 0, 0x1111, &payload[..n]), t0);
    let mut out = Vec::new();
    drain(&mut ch, &mut out);
    let sent = rtp_on(&out, Side::B);
    assert_eq!(sent.len(), 1);
    let p = RtpPacket::parse(&sent[0].1).unwrap();
    assert_eq!(p.payload_type(), 99);
    let got = AmrPayload::parse(oa, p.payload()).unwrap();
    assert_eq!(got.cmr(), 5);
    let frames: Vec<AmrFrame<'_>> = got.frames().collect();
    assert_eq!(frames.len(), 2);
    for g in frames {
        let mut o = [0u8; 31];
        g.copy_octets(&mut o).unwrap();
        assert_eq!(o, speech);
    }
    // And back: octet-aligned from B arrives bandwidth-efficient on A.
    let mut oa_payload = [0u8; 80];
    let n = media::amr::pack(oa, 15, [f], &mut oa_payload).unwrap();
    ch.handle_rtp(Side::B, &rtp(99, 9, 0, 0x2222, &oa_payload[..n]), t0);
    out.clear();
    drain(&mut ch, &mut out);
    let p = RtpPacket::parse(&rtp_on(&out, Side::A)[0].1).unwrap();
    assert_eq!(p.payload_type(), 97);
    assert_eq!(p.payload().len(), 32, "BE 12.2: 4 + 6 + 244 bits");
    assert!(AmrPayload::parse(be, p.payload()).is_ok());
}

/// Sends a tone from one leg in packets of `ptime_in` ms for a second and returns the other
/// leg's RTP.
fn send_tone(
    ch: &mut Channel,
    from: Side,
    t0: Instant,
    mut encode: impl FnMut(&[i16], &mut Vec<u8>),
    pt: u8,
    ptime_in: u32,
    rate: u32,
) -> Vec<Sent> {
    let mut gen = ToneGenerator::new(1000.0, -20.0, rate).unwrap();
    let per = (rate / 1000 * ptime_in) as usize;
    let mut pcm = vec![0i16; per];
    let mut out = Vec::new();
    let packets = 1000 / ptime_in;
    for k in 0..packets {
        let now = t0 + Duration::from_millis(u64::from(k * ptime_in));
        advance(ch, now, &mut out);
        gen.fill(&mut pcm);
        let mut payload = Vec::new();
        encode(&pcm, &mut payload);
        ch.handle_rtp(
            from,
            &rtp(pt, k as u16, k * per as u32, 0x5151, &payload),
            now,
        );
        drain(ch, &mut out);
    }
    advance(ch, t0 + Duration::from_millis(1400), &mut out);
    out.into_iter()
        .filter(|(t, _)| t.side == from.other() && !t.rtcp)
        .collect()
}

fn alaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| g711::alaw_encode(s)));
}

fn ulaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| g711::ulaw_encode(s)));
}

fn check_tone(samples: &[i16], rate: u32) {
    // Skip the start: jitter-buffer fill and codec warm-up.
    let m = measure(&samples[samples.len() / 4..], rate).unwrap();
    assert!(m.is_within(1000.0, 0.02, -20.0, 3.0), "measured {m:?}");
}

#[test]
fn g711_alaw_ulaw_transcode_both_ways_with_ptime_change() {
    let t0 = Instant::now();
    let (mut ch, mode) = channel(
        spec(LegCodec::Pcma, 8, None, 20, A_PEER),
        spec(LegCodec::Pcmu, 0, None, 30, B_PEER),
        t0,
    );
    assert_eq!(mode, Mode::Transcode);
    let to_b = send_tone(&mut ch, Side::A, t0, alaw, 8, 20, 8000);
    assert!(to_b.len() >= 30, "{} packets", to_b.len());
    let mut pcm = Vec::new();
    let mut last: Option<RtpPacket<'_>> = None;
    for (tx, d) in &to_b {
        assert_eq!(tx.to, addr(B_PEER));
        let p = RtpPacket::parse(d).unwrap();
        assert_eq!(p.payload_type(), 0);
        assert_eq!(p.payload().len(), 240, "30 ms toward B");
        assert_eq!(p.ssrc(), ch.ssrc(Side::B));
        if let Some(l) = last {
            assert_eq!(p.sequence(), l.sequence().wrapping_add(1));
            assert_eq!(p.timestamp(), l.timestamp().wrapping_add(240));
        } else {
            assert!(p.marker());
        }
        pcm.extend(p.payload().iter().map(|&c| g711::ulaw_decode(c)));
        last = Some(p);
    }
    check_tone(&pcm, 8000);

    let t1 = t0 + Duration::from_secs(5);
    let to_a = send_tone(&mut ch, Side::B, t1, ulaw, 0, 30, 8000);
    assert!(to_a.len() >= 45, "{} packets", to_a.len());
    let mut pcm = Vec::new();
    for (_, d) in &to_a {
        let p = RtpPacket::parse(d).unwrap();
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.payload().len(), 160, "20 ms toward A");
        pcm.extend(p.payload().iter().map(|&c| g711::alaw_decode(c)));
    }
    check_tone(&pcm, 8000);
    assert!(ch.stats().transcoded >= 75);
}

fn event(digit: u8, end: bool, duration: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    TelephoneEvent {
        event: digit,
        end,
        volume: 10,
        duration,
    }
    .write(&mut b)
    .unwrap();
    b
}

#[test]
fn dtmf_converted_16k_to_8k_with_the_other_legs_payload_type() {
    let t0 = Instant::now();
    let (mut ch, mode) = channel(
        spec(LegCodec::Pcmu, 0, Some((100, 16000)), 20, A_PEER),
        spec(LegCodec::Pcma, 8, Some((101, 8000)), 20, B_PEER),
        t0,
    );
    assert_eq!(mode, Mode::Transcode);
    let mut out = Vec::new();
    // Digit 5 for 120 ms at 16 kHz: three updates, the end sent three times.
    let packets = [
        (320u16, false),
        (960, false),
        (1920, true),
        (1920, true),
        (1920, true),
    ];
    for (i, (d, end)) in packets.iter().enumerate() {
        let mut p = rtp(100, 40 + i as u16, 32000, 0x7777, &event(5, *end, *d));
        if i == 0 {
            p[1] |= 0x80;
        }
        ch.handle_rtp(Side::A, &p, t0 + Duration::from_millis(20 * i as u64));
        drain(&mut ch, &mut out);
    }
    let sent = rtp_on(&out, Side::B);
    assert_eq!(sent.len(), 5);
    let mut ts = None;
    for (i, (_, d)) in sent.iter().enumerate() {
        let p = RtpPacket::parse(d).unwrap();
        assert_eq!(p.payload_type(), 101);
        assert_eq!(p.marker(), i == 0);
        assert_eq!(
            *ts.get_or_insert(p.timestamp()),
            p.timestamp(),
            "one event, one timestamp"
        );
        let e = TelephoneEvent::parse(p.payload()).unwrap();
        assert_eq!(e.digit(), Some('5'));
        assert_eq!(e.duration, packets[i].0 / 2);
        assert_eq!(e.end, packets[i].1);
    }
    // And 8 kHz to 16 kHz the other way.
    out.clear();
    ch.handle_rtp(
        Side::B,
        &rtp(101, 1, 800, 0x8888, &event(11, true, 800)),
        t0 + Duration::from_millis(200),
    );
    drain(&mut ch, &mut out);
    let sent = rtp_on(&out, Side::A);
    let p = RtpPacket::parse(&sent[0].1).unwrap();
    assert_eq!(p.payload_type(), 100);
    let e = TelephoneEvent::parse(p.payload()).unwrap();
    assert_eq!((e.digit(), e.duration), (Some('#'), 1600));
    assert_eq!(ch.stats().dtmf, 6);
}

#[test]
fn dtmf_relayed_with_the_other_legs_payload_type() {
    let t0 = Instant::now();
    let mut b = spec(LegCodec::Pcma, 8, Some((96, 8000)), 20, B_PEER);
    b.send_pt = 8;
    let (mut ch, mode) = channel(
        spec(LegCodec::Pcma, 8, Some((101, 8000)), 20, A_PEER),
        b,
        t0,
    );
    assert_eq!(mode, Mode::Relay);
    let mut out = Vec::new();
    ch.handle_rtp(Side::A, &rtp(8, 10, 1600, 0x99, &[0xD5; 160]), t0);
    ch.handle_rtp(
        Side::A,
        &rtp(101, 11, 1760, 0x99, &event(1, false, 160)),
        t0 + Duration::from_millis(20),
    );
    drain(&mut ch, &mut out);
    let sent = rtp_on(&out, Side::B);
    let voice = RtpPacket::parse(&sent[0].1).unwrap();
    let dtmf = RtpPacket::parse(&sent[1].1).unwrap();
    assert_eq!(dtmf.payload_type(), 96);
    assert_eq!(dtmf.sequence(), voice.sequence().wrapping_add(1));
    assert_eq!(dtmf.timestamp(), voice.timestamp().wrapping_add(160));
    assert_eq!(TelephoneEvent::parse(dtmf.payload()).unwrap().duration, 160);
}

#[test]
fn silent_leg_times_out_once_and_rtcp_keeps_a_leg_alive() {
    let t0 = Instant::now();
    let mut ch = Channel::new(
        ChannelConfig {
            media_timeout: Duration::from_secs(3),
            ..ChannelConfig::new(1, SystemTime::now())
        },
        t0,
    );
    ch.set_leg(Side::A, spec(LegCodec::Pcma, 8, None, 20, A_PEER), t0)
        .unwrap();
    ch.set_leg(Side::B, spec(LegCodec::Pcma, 8, None, 20, B_PEER), t0)
        .unwrap();
    let mut out = Vec::new();
    let mut rr = [0u8; 64];
    let mut w = RtcpWriter::new(&mut rr);
    w.receiver_report(0x4242, &[]).unwrap();
    let rr_len = w.len();
    let mut events = Vec::new();
    for s in 0..10u64 {
        let now = t0 + Duration::from_secs(s);
        advance(&mut ch, now, &mut out);
        while let Some(e) = ch.poll_event() {
            events.push((s, e));
        }
        // Leg A sends only RTCP; leg B nothing.
        ch.handle_rtcp(Side::A, &rr[..rr_len], now);
    }
    assert_eq!(events, [(3, ChannelEvent::Timeout(Side::B))]);
    // Media again on B re-arms its timeout.
    ch.handle_rtp(
        Side::B,
        &rtp(8, 1, 0, 5, &[0; 160]),
        t0 + Duration::from_secs(10),
    );
    for s in 10..15u64 {
        let now = t0 + Duration::from_secs(s);
        advance(&mut ch, now, &mut out);
        ch.handle_rtcp(Side::A, &rr[..rr_len], now);
    }
    assert_eq!(ch.poll_event(), Some(ChannelEvent::Timeout(Side::B)));
    assert_eq!(ch.poll_event(), None);
}

#[test]
fn each_leg_gets_its_own_reports() {
    let t0 = Instant::now();
    let (mut ch, _) = channel(
        spec(LegCodec::Pcma, 8, None, 20, A_PEER),
        spec(LegCodec::Pcma, 8, None, 20, B_PEER),
        t0,
    );
    let mut out = Vec::new();
    // 50 packets from A with 5 lost; an SR from A's peer.
    for i in 0..55u16 {
        if i % 11 == 3 {
            continue;
        }
        let now = t0 + Duration::from_millis(20 * u64::from(i));
        ch.handle_rtp(
            Side::A,
            &rtp(8, 300 + i, 160 * u32::from(i), 0xA0A0, &[0xD5; 160]),
            now,
        );
        drain(&mut ch, &mut out);
    }
    let mut sr = [0u8; 64];
    let mut w = RtcpWriter::new(&mut sr);
    let info = SenderInfo {
        ntp_timestamp: 0x0001_0002_0003_0004,
        ..SenderInfo::default()
    };
    w.sender_report(0xA0A0, &info, &[]).unwrap();
    let n = w.len();
    ch.handle_rtcp(Side::A, &sr[..n], t0 + Duration::from_secs(1));
    drain(&mut ch, &mut out);
    out.clear();
    advance(&mut ch, t0 + Duration::from_secs(6), &mut out);
    let reports: Vec<&Sent> = out.iter().filter(|(t, _)| t.rtcp).collect();
    let on_a = reports
        .iter()
        .find(|(t, _)| t.side == Side::A)
        .expect("report on A");
    let on_b = reports
        .iter()
        .find(|(t, _)| t.side == Side::B)
        .expect("report on B");
    assert_eq!(on_a.0.to, addr("127.0.0.1:4001"));
    assert_eq!(on_b.0.to, addr("127.0.0.1:6001"));
    // A: we sent nothing there, so an RR about A's source: 50 of 55 received, LSR echoed.
    let c = Compound::parse(&on_a.1).unwrap();
    let Some(RtcpPacket::ReceiverReport(rr)) = c.packets().next() else {
        panic!("RR first on A");
    };
    assert_eq!(rr.ssrc, ch.ssrc(Side::A));
    let b = rr.blocks.iter().next().unwrap();
    assert_eq!(b.ssrc, 0xA0A0);
    assert_eq!(b.cumulative_lost, 5);
    assert_eq!(b.extended_highest_seq, 354);
    assert_eq!(b.last_sr, 0x0002_0003);
    // B: we relayed 50 packets there, so an SR with our counts and no block.
    let c = Compound::parse(&on_b.1).unwrap();
    let Some(RtcpPacket::SenderReport(sr)) = c.packets().next() else {
        panic!("SR first on B");
    };
    assert_eq!(sr.ssrc, ch.ssrc(Side::B));
    assert_eq!(sr.info.packet_count, 50);
    assert_eq!(sr.info.octet_count, 50 * 160);
    assert_eq!(ch.lost(Side::A), 5);
}

#[test]
fn hold_sends_nothing_toward_the_held_leg() {
    let t0 = Instant::now();
    let mut b = spec(LegCodec::Pcma, 8, None, 20, B_PEER);
    b.direction = Direction::RecvOnly;
    let (mut ch, _) = channel(spec(LegCodec::Pcma, 8, None, 20, A_PEER), b, t0);
    ch.handle_rtp(Side::A, &rtp(8, 1, 0, 1, &[0; 160]), t0);
    let mut out = Vec::new();
    drain(&mut ch, &mut out);
    assert!(rtp_on(&out, Side::B).is_empty());
}

#[test]
fn malformed_and_unknown_input_is_counted_not_fatal() {
    let t0 = Instant::now();
    let (mut ch, _) = channel(
        spec(LegCodec::Pcma, 8, None, 20, A_PEER),
        spec(LegCodec::Pcmu, 0, None, 20, B_PEER),
        t0,
    );
    ch.handle_rtp(Side::A, &[0x80, 8, 0], t0);
    ch.handle_rtp(Side::A, &rtp(34, 1, 0, 1, &[0; 20]), t0);
    ch.handle_rtcp(Side::A, &[1, 2, 3], t0);
    assert_eq!(ch.stats().dropped, 3);
}

/// Counts allocations made on the current thread while armed, to prove the per-packet
/// path allocates nothing (other test threads are not counted).
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ARMED.try_with(|a| {
                if a.get() {
                    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
                }
            });
            // SAFETY: the caller's contract is forwarded unchanged to the system allocator.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `alloc` above, i.e. from the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Allocations `f` makes on this thread.
    pub fn count(f: impl FnOnce()) -> u64 {
        COUNT.with(|c| c.set(0));
        ARMED.with(|a| a.set(true));
        f();
        ARMED.with(|a| a.set(false));
        COUNT.with(|c| c.get())
    }
}

#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

/// Runs `frames` 20 ms steps of full-duplex traffic with pre-built packets.
fn steady(
    ch: &mut Channel,
    t0: Instant,
    from_a: &[Vec<u8>],
    from_b: &[Vec<u8>],
    out: &mut [u8],
) -> u64 {
    let mut sent = 0;
    for (k, (a, b)) in from_a.iter().zip(from_b).enumerate() {
        let now = t0 + Duration::from_millis(20 * k as u64);
        ch.handle_rtp(Side::A, a, now);
        ch.handle_rtp(Side::B, b, now);
        while let Some(t) = ch.poll_timeout().filter(|&t| t <= now) {
            ch.handle_timeout(t);
        }
        while ch.poll_transmit(out).is_some() {
            sent += 1;
        }
    }
    sent
}

fn g711_stream(pt: u8, ssrc: u32, from: u16, n: u16) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|k| rtp(pt, k, u32::from(k) * 160, ssrc, &[0x55 ^ (k as u8); 160]))
        .collect()
}

#[test]
fn the_packet_path_does_not_allocate() {
    // The counter counts (or this test could not fail).
    assert!(alloc_count::count(|| drop(std::hint::black_box(vec![0u8; 8]))) > 0);
    let t0 = Instant::now();
    for (a, b) in [
        (LegCodec::Pcma, LegCodec::Pcma),
        (LegCodec::Pcma, LegCodec::Pcmu),
    ] {
        let (mut ch, _) = channel(
            spec(a, 8, None, 20, A_PEER),
            spec(b, 8, None, 30, B_PEER),
            t0,
        );
        let mut out = vec![0u8; MAX_DATAGRAM];
        // Warm up (first packets, RTCP timers), then count a steady second.
        steady(
            &mut ch,
            t0,
            &g711_stream(8, 1, 0, 50),
            &g711_stream(8, 2, 0, 50),
            &mut out,
        );
        let (pa, pb) = (g711_stream(8, 1, 50, 50), g711_stream(8, 2, 50, 50));
        let t1 = t0 + Duration::from_secs(1);
        let mut sent = 0;
        let allocs = alloc_count::count(|| sent = steady(&mut ch, t1, &pa, &pb, &mut out));
        assert!(sent >= 80, "{sent} datagrams");
        assert_eq!(allocs, 0, "{a:?} -> {b:?}");
    }
}

#[test]
fn jitter_and_reordering_are_absorbed_on_the_transcode_path() {
    let t0 = Instant::now();
    let (mut ch, _) = channel(
        spec(LegCodec::Pcma, 8, None, 20, A_PEER),
        spec(LegCodec::Pcmu, 0, None, 20, B_PEER),
        t0,
    );
    let mut gen = ToneGenerator::new(1000.0, -20.0, 8000).unwrap();
    let mut pcm = [0i16; 160];
    // 100 packets sent every 20 ms, each delayed by 0-50 ms (a fixed pseudo-random
    // pattern), so they arrive bunched and out of order.
    let mut arrivals: Vec<(Duration, Vec<u8>)> = (0..100u16)
        .map(|k| {
            gen.fill(&mut pcm);
            let mut payload = Vec::new();
            alaw(&pcm, &mut payload);
            let delay = u64::from((k.wrapping_mul(37) ^ 0x15) % 51);
            let at = Duration::from_millis(20 * u64::from(k) + delay);
            (at, rtp(8, k, u32::from(k) * 160, 0x77, &payload))
        })
        .collect();
    arrivals.sort_by_key(|(at, _)| *at);
    let mut out = Vec::new();
    for (at, d) in &arrivals {
        advance(&mut ch, t0 + *at, &mut out);
        ch.handle_rtp(Side::A, d, t0 + *at);
        drain(&mut ch, &mut out);
    }
    advance(&mut ch, t0 + Duration::from_secs(3), &mut out);
    assert!(ch.jitter_target(Side::A).unwrap() >= 2);
    let sent = rtp_on(&out, Side::B);
    assert!(sent.len() >= 90, "{} of 100 frames played", sent.len());
    let mut samples = Vec::new();
    for (_, d) in &sent {
        samples.extend(
            RtpPacket::parse(d)
                .unwrap()
                .payload()
                .iter()
                .map(|&c| g711::ulaw_decode(c)),
        );
    }
    check_tone(&samples, 8000);
    assert!(ch.stats().late <= 5, "{:?}", ch.stats());
}

/// AMR ⇄ PCMA through the real codec backends (the pure-Rust AMR-NB always, opencore's
/// AMR-NB and AMR-WB with the feature): the tone crosses both ways, the AMR side's CMR is
/// honoured, the mode-set bounds the mode, DTMF converts between AMR-WB's 16 kHz and PCMA's
/// 8 kHz, and nothing allocates per packet.
mod amr {
    use super::*;
    use media::amr::CMR_NONE;
    use media::codec::{self, Backend, MAX_FRAME_OCTETS};

    fn amr_channel(kind: AmrKind, backend: Backend, t0: Instant) -> Channel {
        let mut cfg = ChannelConfig::new(3, SystemTime::now());
        cfg.backend = backend;
        let mut ch = Channel::new(cfg, t0);
        let te = kind.clock_rate();
        ch.set_leg(
            Side::A,
            spec(
                LegCodec::Amr(AmrFormat::octet_aligned(kind)),
                99,
                Some((100, te)),
                20,
                A_PEER,
            ),
            t0,
        )
        .unwrap();
        let mode = ch
            .set_leg(
                Side::B,
                spec(LegCodec::Pcma, 8, Some((101, 8000)), 20, B_PEER),
                t0,
            )
            .unwrap();
        assert_eq!(mode, Mode::Transcode);
        ch
    }

    /// An encoder closure producing octet-aligned payloads at `mode` with `cmr`.
    fn amr_encoder(
        kind: AmrKind,
        backend: Backend,
        mode: u8,
        cmr: u8,
    ) -> impl FnMut(&[i16], &mut Vec<u8>) {
        let mut enc = codec::encoder(kind, backend, false).unwrap();
        move |pcm, out| {
            let mut bits = [0u8; MAX_FRAME_OCTETS];
            let e = enc.encode(pcm, mode, &mut bits).unwrap();
            let f = AmrFrame::from_octets(kind, e.frame_type, true, &bits[..e.len]).unwrap();
            let mut p = [0u8; 80];
            let n = media::amr::pack(AmrFormat::octet_aligned(kind), cmr, [f], &mut p).unwrap();
            out.extend_from_slice(&p[..n]);
        }
    }

    fn tone_both_ways(kind: AmrKind, backend: Backend) {
        let t0 = Instant::now();
        let mut ch = amr_channel(kind, backend, t0);
        let rate = kind.clock_rate();
        // A → B: AMR in (12.2 / 23.85), PCMA out.
        let to_b = send_tone(
            &mut ch,
            Side::A,
            t0,
            amr_encoder(kind, backend, kind.max_mode(), CMR_NONE),
            99,
            20,
            rate,
        );
        assert!(to_b.len() >= 45, "{} packets", to_b.len());
        let mut pcm = Vec::new();
        for (_, d) in &to_b {
            let p = RtpPacket::parse(d).unwrap();
            assert_eq!(p.payload_type(), 8);
            assert_eq!(p.payload().len(), 160);
            pcm.extend(p.payload().iter().map(|&c| g711::alaw_decode(c)));
        }
        check_tone(&pcm, 8000);

        // B → A: PCMA in, AMR out at the highest mode (no CMR from A yet in this direction).
        let t1 = t0 + Duration::from_secs(5);
        let to_a = send_tone(&mut ch, Side::B, t1, alaw, 8, 20, 8000);
        assert!(to_a.len() >= 45, "{} packets", to_a.len());
        let mut dec = codec::decoder(kind, backend).unwrap();
        let n = codec::frame_samples(kind);
        let mut pcm = Vec::new();
        let mut frame = vec![0i16; n];
        for (_, d) in &to_a {
            let p = RtpPacket::parse(d).unwrap();
            assert_eq!(p.payload_type(), 99);
            let payload = AmrPayload::parse(AmrFormat::octet_aligned(kind), p.payload()).unwrap();
            // A's stream had CMR 15: we encode at the best mode of the (unrestricted) set.
            assert_eq!(payload.cmr(), CMR_NONE);
            for f in payload.frames() {
                assert_eq!(f.frame_type(), kind.max_mode());
                dec.decode(Some(&f), &mut frame).unwrap();
                pcm.extend_from_slice(&frame);
            }
        }
        check_tone(&pcm, rate);
    }

    #[test]
    fn amr_nb_pcma_tone_both_ways_rust() {
        tone_both_ways(AmrKind::Nb, Backend::Rust);
    }

    #[cfg(feature = "opencore")]
    #[test]
    fn amr_nb_pcma_tone_both_ways_opencore() {
        tone_both_ways(AmrKind::Nb, Backend::Opencore);
    }

    #[cfg(feature = "opencore")]
    #[test]
    fn amr_wb_pcma_tone_both_ways_opencore() {
        tone_both_ways(AmrKind::Wb, Backend::Opencore);
    }

    #[test]
    fn received_cmr_sets_the_mode_we_send() {
        let t0 = Instant::now();
        let mut ch = amr_channel(AmrKind::Nb, Backend::Rust, t0);
        let mut out = Vec::new();
        // A asks for 5.9 kbit/s (mode 2) in its own packets.
        let mut enc = amr_encoder(AmrKind::Nb, Backend::Rust, 7, 2);
        let mut gen = ToneGenerator::new(500.0, -20.0, 8000).unwrap();
        let mut pcm = [0i16; 160];
        for k in 0..50u16 {
            let now = t0 + Duration::from_millis(20 * u64::from(k));
            advance(&mut ch, now, &mut out);
            gen.fill(&mut pcm);
            let mut a = Vec::new();
            enc(&pcm, &mut a);
            ch.handle_rtp(Side::A, &rtp(99, k, u32::from(k) * 160, 9, &a), now);
            let mut b = Vec::new();
            alaw(&pcm, &mut b);
            ch.handle_rtp(Side::B, &rtp(8, k, u32::from(k) * 160, 10, &b), now);
            drain(&mut ch, &mut out);
        }
        let toward_a = rtp_on(&out, Side::A);
        assert!(toward_a.len() > 40);
        let last = RtpPacket::parse(&toward_a[toward_a.len() - 1].1).unwrap();
        let p = AmrPayload::parse(AmrFormat::octet_aligned(AmrKind::Nb), last.payload()).unwrap();
        assert_eq!(p.frames().next().unwrap().frame_type(), 2);
    }

    #[test]
    fn mode_set_limits_the_mode_and_is_our_cmr() {
        let t0 = Instant::now();
        let cfg = ChannelConfig::new(4, SystemTime::now());
        let mut ch = Channel::new(cfg, t0);
        let mut a = spec(
            LegCodec::Amr(AmrFormat::bandwidth_efficient(AmrKind::Nb)),
            97,
            None,
            40,
            A_PEER,
        );
        a.modes = 0b0001_0101; // 4.75, 5.9, 7.4
        ch.set_leg(Side::A, a, t0).unwrap();
        ch.set_leg(Side::B, spec(LegCodec::Pcma, 8, None, 20, B_PEER), t0)
            .unwrap();
        let to_a = send_tone(&mut ch, Side::B, t0, alaw, 8, 20, 8000);
        assert!(to_a.len() >= 20);
        for (_, d) in &to_a {
            let p = RtpPacket::parse(d).unwrap();
            let payload =
                AmrPayload::parse(AmrFormat::bandwidth_efficient(AmrKind::Nb), p.payload())
                    .unwrap();
            assert_eq!(payload.cmr(), 4, "we ask for the best mode of the set");
            assert_eq!(payload.len(), 2, "ptime 40: two frames a packet");
            assert!(payload.frames().all(|f| f.frame_type() == 4));
        }
    }

    #[test]
    fn amr_transcoding_does_not_allocate_per_packet() {
        for &backend in Backend::available() {
            no_alloc(backend);
        }
    }

    fn no_alloc(backend: Backend) {
        let t0 = Instant::now();
        let mut ch = amr_channel(AmrKind::Nb, backend, t0);
        let mut enc = amr_encoder(AmrKind::Nb, backend, 7, CMR_NONE);
        let mut gen = ToneGenerator::new(700.0, -15.0, 8000).unwrap();
        let mut pcm = [0i16; 160];
        let amr: Vec<Vec<u8>> = (0..100u16)
            .map(|k| {
                gen.fill(&mut pcm);
                let mut p = Vec::new();
                enc(&pcm, &mut p);
                rtp(99, k, u32::from(k) * 160, 1, &p)
            })
            .collect();
        let pcma = g711_stream(8, 2, 0, 100);
        let mut out = vec![0u8; MAX_DATAGRAM];
        steady(&mut ch, t0, &amr[..50], &pcma[..50], &mut out);
        let t1 = t0 + Duration::from_secs(1);
        let mut sent = 0;
        let allocs =
            alloc_count::count(|| sent = steady(&mut ch, t1, &amr[50..], &pcma[50..], &mut out));
        assert!(sent >= 80, "{sent} datagrams");
        assert_eq!(allocs, 0, "{backend:?}");
    }

    #[cfg(feature = "opencore")]
    #[test]
    fn dtmf_from_amr_wb_at_16k_reaches_pcma_at_8k() {
        let t0 = Instant::now();
        let mut ch = amr_channel(AmrKind::Wb, Backend::Opencore, t0);
        let mut out = Vec::new();
        ch.handle_rtp(Side::A, &rtp(100, 1, 64000, 0x5, &event(9, false, 640)), t0);
        ch.handle_rtp(
            Side::A,
            &rtp(100, 2, 64000, 0x5, &event(9, true, 3200)),
            t0 + Duration::from_millis(20),
        );
        drain(&mut ch, &mut out);
        let sent = rtp_on(&out, Side::B);
        assert_eq!(sent.len(), 2);
        let durations: Vec<u16> = sent
            .iter()
            .map(|(_, d)| {
                let p = RtpPacket::parse(d).unwrap();
                assert_eq!(p.payload_type(), 101);
                TelephoneEvent::parse(p.payload()).unwrap().duration
            })
            .collect();
        assert_eq!(durations, [320, 1600]);
    }
}
