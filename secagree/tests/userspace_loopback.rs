//! Two ends of one sec-agree association on loopback (UE 127.0.0.2, P-CSCF 127.0.0.1), each
//! with its own SipIo on the userspace ESP backend: a SIP-sized datagram from the UE's
//! protected client port reaches the P-CSCF's protected server port through real raw ESP
//! sockets, and the answer comes back the same way. Needs root (raw sockets).

use bytes::Bytes;
use secagree::{choose, client_offers, sa_set, server_mechanism, AlgPrefs, IpsecMode, SipIo};
use sip::transport::TransportConfig;
use sip::{Flow, Protocol, Transmit};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use xfrm::{BackendKind, EncryptionAlg, IntegrityAlg, Side, Tag};

#[tokio::test]
async fn protected_datagrams_cross_userspace_esp_both_ways() {
    if !testkit::require_root() {
        return;
    }
    let ue_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let p_ip: IpAddr = "127.0.0.1".parse().unwrap();
    let mode = IpsecMode::Backend(BackendKind::Userspace);
    let (ue, _ue_rx) = SipIo::start(mode, Tag::default(), TransportConfig::default())
        .await
        .expect("UE SipIo");
    let (p, mut p_rx) = SipIo::start(mode, Tag::default(), TransportConfig::default())
        .await
        .expect("P-CSCF SipIo");
    assert_eq!(p.backend_name(), "userspace");
    let mut combos = Vec::new();
    for e in [
        EncryptionAlg::Null,
        EncryptionAlg::AesCbc,
        EncryptionAlg::DesEde3Cbc,
    ] {
        for i in [IntegrityAlg::HmacMd5_96, IntegrityAlg::HmacSha1_96] {
            combos.push((i, e));
        }
    }
    let mut ue_rx = _ue_rx;
    for (n, (i, e)) in combos.into_iter().enumerate() {
        let n = n as u16;
        let prefs = AlgPrefs {
            integrity: vec![i],
            encryption: vec![e],
        };
        let base = 40000 + n * 10;
        let offers = client_offers(
            &prefs,
            5000 + u32::from(n) * 4,
            5001 + u32::from(n) * 4,
            base,
            base + 1,
        );
        let choice = choose(&offers, &prefs).unwrap();
        let server = server_mechanism(
            &choice,
            5002 + u32::from(n) * 4,
            5003 + u32::from(n) * 4,
            base + 2,
            base + 3,
        );
        let now = Instant::now();
        let set = sa_set(
            ue_ip,
            p_ip,
            &choice.offer,
            &server,
            &[7; 16],
            &[9; 16],
            Duration::from_secs(30),
            now,
        )
        .unwrap();
        let ue_id = ue.install(&set, Side::Ue).unwrap();
        let p_id = p.install(&set, Side::Pcscf).unwrap();
        ue.open_protected(ue_ip, set.port_uc, set.port_us)
            .await
            .unwrap();
        p.open_protected(p_ip, set.port_pc, set.port_ps)
            .await
            .unwrap();

        let ue_c = SocketAddr::new(ue_ip, set.port_uc);
        let p_s = SocketAddr::new(p_ip, set.port_ps);
        let register = Bytes::from(format!(
            "REGISTER sip:ims.test SIP/2.0\r\nX-Combo: {i}/{e}\r\n{}\r\n\r\n",
            "X-Pad: ".to_string() + &"a".repeat(900)
        ));
        ue.send(&Transmit::new(
            Flow::new(ue_c, p_s, Protocol::Udp),
            register.clone(),
        ))
        .await
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), p_rx.recv())
            .await
            .expect("P-CSCF receives")
            .unwrap();
        assert_eq!(got.flow, Flow::new(p_s, ue_c, Protocol::Udp), "{i}/{e}");
        assert_eq!(got.data, register, "{i}/{e}");
        assert!(p.is_protected(p_s));

        let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n");
        p.send(&Transmit::new(
            Flow::new(p_s, ue_c, Protocol::Udp),
            ok.clone(),
        ))
        .await
        .unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ue_rx.recv())
            .await
            .expect("UE receives")
            .unwrap();
        assert_eq!(
            (back.flow, back.data),
            (Flow::new(ue_c, p_s, Protocol::Udp), ok),
            "{i}/{e}"
        );

        // Keys of every set stay exportable after deletion, for the session's capture.
        ue.delete(ue_id).unwrap();
        p.delete(p_id).unwrap();
        ue.close_protected(ue_ip, set.port_uc, set.port_us);
        p.close_protected(p_ip, set.port_pc, set.port_ps);
        assert!(p.live_sets().is_empty());
        assert!(p
            .esp_sa_history()
            .contains(&format!("\"{ue_ip}\",\"{p_ip}\",\"0x{:08x}\"", set.spi_ps)));
    }
}
