//! The media plane over real UDP on 127.0.0.1: two fake endpoints (plain sockets standing in
//! for the UE and the PBX) send RTP through an allocated session after both legs were
//! negotiated with real SDP; release and the media timeout give the ports back.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appserver::media_api::{Allocated, Leg, MediaControl, MediaError, MediaEvent};
use appserver::mediaplane::{MediaConfig, MediaPlane};
use media::rtp::{RtpHeader, RtpPacket};
use sdp::{answer, G711Offer, LocalCaps, LocalCodec, Origin, Session};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn config(port_min: u16, port_max: u16, timeout: u64) -> MediaConfig {
    MediaConfig {
        port_min,
        port_max,
        timeout,
        workers: 2,
        ..MediaConfig::default()
    }
}

/// The IMS leg: the UE offered G.711, we answered with what the plane takes.
fn ims_sdp(plane: &MediaPlane, a: &Allocated, ue_port: u16) -> (Session, Session) {
    let offer = G711Offer::new(Origin::new("ue", "1", 1, LO), LO, ue_port).build();
    let mut caps = LocalCaps::new(Origin::new("as", "2", 1, LO), LO, a.ims.port());
    caps.codecs = plane.codecs(Leg::Ims);
    let ans = answer(&offer, &caps).expect("answer to the UE");
    (ans, offer)
}

/// The SIP leg: we offered G.711, the PBX answered PCMA.
fn sip_sdp(a: &Allocated, pbx_port: u16) -> (Session, Session) {
    let offer = G711Offer::new(Origin::new("as", "3", 1, LO), LO, a.sip.port()).build();
    let mut caps = LocalCaps::new(Origin::new("pbx", "4", 1, LO), LO, pbx_port);
    caps.codecs = vec![LocalCodec::pcma(), LocalCodec::telephone_event(8000)];
    let ans = answer(&offer, &caps).expect("PBX answer");
    (offer, ans)
}

fn rtp(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut b = vec![0u8; 172];
    let n = RtpHeader::new(8, seq, u32::from(seq) * 160, ssrc)
        .write_packet(&[fill; 160], &mut b)
        .unwrap();
    b.truncate(n);
    b
}

async fn recv(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 1500];
    match tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

/// Sends packets `from` → `to` until `at` receives one (the session applies the
/// negotiation asynchronously), then `count` more; returns what arrived.
async fn cross(
    from: &UdpSocket,
    to: SocketAddr,
    at: &UdpSocket,
    ssrc: u32,
    count: u16,
) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    let mut seq = 0u16;
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.is_empty() && Instant::now() < deadline {
        from.send_to(&rtp(seq, ssrc, seq as u8), to).await.unwrap();
        seq += 1;
        let mut buf = [0u8; 1500];
        if let Ok(Ok((n, f))) =
            tokio::time::timeout(Duration::from_millis(50), at.recv_from(&mut buf)).await
        {
            got.push((buf[..n].to_vec(), f));
        }
    }
    assert!(!got.is_empty(), "nothing crossed the bridge");
    for _ in 0..count {
        from.send_to(&rtp(seq, ssrc, seq as u8), to).await.unwrap();
        seq += 1;
        got.push(recv(at).await.expect("packet relayed"));
    }
    got
}

async fn ports_back(plane: &MediaPlane, pairs: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while plane.free_port_pairs() != pairs || plane.sessions() != 0 {
        assert!(
            Instant::now() < deadline,
            "ports not returned: {} free",
            plane.free_port_pairs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn packets_cross_with_rewritten_headers_and_release_frees_the_ports() {
    let (tx, _events) = mpsc::channel(8);
    let plane = MediaPlane::start(&config(42100, 42131, 30), tx).unwrap();
    let pairs = plane.free_port_pairs();
    assert_eq!(pairs, 16);
    let ue = UdpSocket::bind((LO, 0)).await.unwrap();
    let pbx = UdpSocket::bind((LO, 0)).await.unwrap();
    let a = plane.allocate().unwrap();
    assert_eq!(a.ims.port() % 2, 0);
    assert_eq!(a.sip.port() % 2, 0);
    assert_eq!(plane.free_port_pairs(), pairs - 2);

    let (local, remote) = ims_sdp(&plane, &a, ue.local_addr().unwrap().port());
    plane.negotiated(a.id, Leg::Ims, &local, &remote).unwrap();
    let (local, remote) = sip_sdp(&a, pbx.local_addr().unwrap().port());
    plane.negotiated(a.id, Leg::Sip, &local, &remote).unwrap();

    let got = cross(&ue, a.ims, &pbx, 0x1111, 5).await;
    let first = RtpPacket::parse(&got[0].0).unwrap();
    for (k, (d, from)) in got.iter().enumerate() {
        assert_eq!(*from, a.sip, "sent from the SIP leg's port");
        let p = RtpPacket::parse(d).unwrap();
        assert_ne!(p.ssrc(), 0x1111, "the SIP leg has its own SSRC");
        assert_eq!(p.ssrc(), first.ssrc());
        assert_eq!(p.sequence(), first.sequence().wrapping_add(k as u16));
        assert_eq!(
            p.timestamp(),
            first.timestamp().wrapping_add(160 * k as u32)
        );
        assert_eq!(p.payload().len(), 160);
    }
    let back = cross(&pbx, a.sip, &ue, 0x2222, 5).await;
    for (d, from) in &back {
        assert_eq!(*from, a.ims);
        assert_ne!(RtpPacket::parse(d).unwrap().ssrc(), 0x2222);
    }
    let text = plane.render_metrics();
    assert!(text.contains("appserver_media_sessions 1"), "{text}");
    assert!(
        text.contains(r#"appserver_media_packets_sent_total{how="relayed"}"#),
        "{text}"
    );

    plane.release(a.id);
    plane.release(a.id);
    ports_back(&plane, pairs).await;
    for addr in [a.ims, a.sip] {
        std::net::UdpSocket::bind(addr).expect("RTP port free after release");
        std::net::UdpSocket::bind(SocketAddr::new(addr.ip(), addr.port() + 1))
            .expect("RTCP port free");
    }
    assert_eq!(
        plane.negotiated(
            a.id,
            Leg::Ims,
            &ims_sdp(&plane, &a, 9).0,
            &ims_sdp(&plane, &a, 9).1
        ),
        Err(MediaError::Unknown(a.id))
    );
}

#[tokio::test]
async fn silent_leg_is_reported_and_its_ports_freed() {
    let (tx, mut events) = mpsc::channel(8);
    let plane: Arc<MediaPlane> = MediaPlane::start(&config(42140, 42147, 1), tx).unwrap();
    let ue = UdpSocket::bind((LO, 0)).await.unwrap();
    let pbx = UdpSocket::bind((LO, 0)).await.unwrap();
    let a = plane.allocate().unwrap();
    let (local, remote) = ims_sdp(&plane, &a, ue.local_addr().unwrap().port());
    plane.negotiated(a.id, Leg::Ims, &local, &remote).unwrap();
    let (local, remote) = sip_sdp(&a, pbx.local_addr().unwrap().port());
    plane.negotiated(a.id, Leg::Sip, &local, &remote).unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(4), events.recv())
        .await
        .expect("timeout reported within 4 s")
        .unwrap();
    let MediaEvent::Timeout { id, .. } = ev;
    assert_eq!(id, a.id);
    ports_back(&plane, 4).await;
    assert!(plane
        .render_metrics()
        .contains("appserver_media_timeouts_total 1"));
}

#[tokio::test]
async fn a_full_range_refuses_then_serves_again_after_release() {
    let (tx, _events) = mpsc::channel(8);
    let plane = MediaPlane::start(&config(42150, 42153, 30), tx).unwrap();
    let a = plane.allocate().unwrap();
    assert_eq!(plane.allocate(), Err(MediaError::NoPorts));
    plane.release(a.id);
    ports_back(&plane, 2).await;
    let b = plane.allocate().unwrap();
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn a_leg_without_a_common_codec_is_refused() {
    let (tx, _events) = mpsc::channel(8);
    let plane = MediaPlane::start(&config(42160, 42167, 30), tx).unwrap();
    let a = plane.allocate().unwrap();
    let offer = G711Offer::new(Origin::new("ue", "1", 1, LO), LO, 5000).build();
    let mut other = offer.clone();
    other.media_mut()[0].set_line(sdp::MediaLine::audio(5002, &[9]));
    match plane.negotiated(a.id, Leg::Sip, &offer, &other) {
        Err(MediaError::Codec { leg: Leg::Sip, .. }) => {}
        r => panic!("expected a codec error, got {r:?}"),
    }
}

/// A VoLTE UE's AMR against the PBX's PCMA: the plane answers the UE with AMR, transcodes
/// a tone in real time, and the PBX hears it (needs a codec backend: `--features
/// media/opencore`, as CI builds; skipped loudly otherwise).
#[tokio::test]
async fn amr_ue_to_pcma_pbx_is_transcoded_in_real_time() {
    use media::amr::{AmrFormat, AmrFrame, CMR_NONE};
    use media::codec;
    use sdp::{AmrKind, VolteOffer};

    let (tx, _events) = mpsc::channel(8);
    let plane = MediaPlane::start(&config(42170, 42177, 30), tx).unwrap();
    if !plane
        .codecs(Leg::Ims)
        .iter()
        .any(|c| matches!(c, LocalCodec::Amr { .. }))
    {
        eprintln!(
            "SKIPPED: no AMR codec backend in this build (build with --features media/opencore)"
        );
        return;
    }
    let ue = UdpSocket::bind((LO, 0)).await.unwrap();
    let pbx = UdpSocket::bind((LO, 0)).await.unwrap();
    let a = plane.allocate().unwrap();
    let offer = VolteOffer::new(
        Origin::new("ue", "1", 1, LO),
        LO,
        ue.local_addr().unwrap().port(),
    )
    .build();
    let mut caps = LocalCaps::new(Origin::new("as", "2", 1, LO), LO, a.ims.port());
    caps.codecs = plane.codecs(Leg::Ims);
    let ans = answer(&offer, &caps).unwrap();
    plane.negotiated(a.id, Leg::Ims, &ans, &offer).unwrap();
    let (local, remote) = sip_sdp(&a, pbx.local_addr().unwrap().port());
    plane.negotiated(a.id, Leg::Sip, &local, &remote).unwrap();

    // What the plane answered: the UE offered AMR-WB first.
    let m = &ans.media()[0];
    let pt = m.line().payload_types()[0];
    let kind = AmrKind::of(m.rtpmap(pt).unwrap()).unwrap();
    let format = AmrFormat::bandwidth_efficient(kind);
    let backend = codec::Backend::available()[codec::Backend::available().len() - 1];
    let mut enc = codec::encoder(kind, backend, false).unwrap();
    let mut tone = media::tone::ToneGenerator::new(1000.0, -20.0, kind.clock_rate()).unwrap();
    let n = codec::frame_samples(kind);

    let collector = tokio::spawn(async move {
        let mut pcm = Vec::new();
        let mut buf = [0u8; 1500];
        while let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(500), pbx.recv_from(&mut buf)).await
        {
            if let Ok(p) = RtpPacket::parse(&buf[..len]) {
                assert_eq!(p.payload_type(), 8);
                pcm.extend(p.payload().iter().map(|&c| media::g711::alaw_decode(c)));
            }
        }
        pcm
    });
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut samples = vec![0i16; n];
    for k in 0..75u16 {
        tick.tick().await;
        tone.fill(&mut samples);
        let mut bits = [0u8; codec::MAX_FRAME_OCTETS];
        let e = enc.encode(&samples, kind.max_mode(), &mut bits).unwrap();
        let f = AmrFrame::from_octets(kind, e.frame_type, true, &bits[..e.len]).unwrap();
        let mut payload = [0u8; 80];
        let len = media::amr::pack(format, CMR_NONE, [f], &mut payload).unwrap();
        let mut d = [0u8; 100];
        let len = RtpHeader::new(pt, k, u32::from(k) * n as u32, 0x3333)
            .write_packet(&payload[..len], &mut d)
            .unwrap();
        ue.send_to(&d[..len], a.ims).await.unwrap();
    }
    let pcm = collector.await.unwrap();
    assert!(
        pcm.len() >= 160 * 50,
        "{} samples reached the PBX",
        pcm.len()
    );
    // Real time on a shared machine: a late packet may cost a concealed frame, which shifts
    // a whole-stream measurement. Each 200 ms window is measured; the median must hold.
    let windows: Vec<media::tone::ToneMeasurement> = pcm[pcm.len() / 4..]
        .chunks_exact(1600)
        .filter_map(|w| media::tone::measure(w, 8000).ok())
        .collect();
    assert!(windows.len() >= 3, "{} windows", windows.len());
    let median = |f: fn(&media::tone::ToneMeasurement) -> f64| {
        let mut v: Vec<f64> = windows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let m = media::tone::ToneMeasurement {
        frequency_hz: median(|m| m.frequency_hz),
        level_dbfs: median(|m| m.level_dbfs),
    };
    assert!(
        m.is_within(1000.0, 0.02, -20.0, 3.0),
        "PBX heard {m:?} (median of {windows:?})"
    );
    plane.release(a.id);
    ports_back(&plane, 4).await;
}
