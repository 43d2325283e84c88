//! tshark verifies ESP ICVs and dissects the SIP inside with the `esp_sa` UAT
//! preferences built by `testkit::tshark::esp_prefs`. The ESP packets (NULL
//! encryption, HMAC-SHA-1-96, RFC 4303/2404) are handcrafted and sent with a
//! raw socket to 127.0.0.1 (this kernel has no ESP: they are simply dropped
//! after the capture saw them).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use testkit::tshark::{dissect, esp_prefs, Capture, DissectOptions, EspAuth, EspEncryption, EspSa};

const SPI: u32 = 0x1234;

fn esp_packet(key: &[u8], seq: u32, corrupt_icv: bool) -> Vec<u8> {
    let sip = b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKesp\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: esp1\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let mut udp = Vec::new();
    udp.extend_from_slice(&5062u16.to_be_bytes());
    udp.extend_from_slice(&5060u16.to_be_bytes());
    udp.extend_from_slice(&((8 + sip.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4)
    udp.extend_from_slice(sip);
    let mut esp = Vec::new();
    esp.extend_from_slice(&SPI.to_be_bytes());
    esp.extend_from_slice(&seq.to_be_bytes());
    esp.extend_from_slice(&udp);
    // Pad so that payload + pad + 2 is a multiple of 4 (RFC 4303 §2.4).
    let pad = (4 - (udp.len() + 2) % 4) % 4;
    esp.extend((1..=pad as u8).collect::<Vec<_>>());
    esp.push(pad as u8);
    esp.push(17); // next header: UDP
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(&esp);
    let icv = mac.finalize().into_bytes();
    esp.extend_from_slice(&icv[..12]);
    if corrupt_icv {
        let n = esp.len();
        esp[n - 1] ^= 0xff;
    }
    esp
}

fn send_raw_esp(payload: &[u8]) {
    // SAFETY: plain socket syscalls on a fd we own and close.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, 50);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let n = libc::sendto(
            fd,
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(
            n,
            payload.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

#[test]
fn tshark_checks_esp_icv_and_dissects_inner_sip() {
    if testkit::require_bin("tshark").is_none() || !testkit::require_root() {
        return;
    }
    // IK ‖ 32 zero bits for HMAC-SHA-1-96 (TS 33.203 Annex I).
    let mut key = vec![0x5au8; 16];
    key.extend_from_slice(&[0; 4]);
    let dir = testkit::TestDir::new("esp").unwrap();
    let pcap = dir.join("esp.pcap");
    let cap = Capture::start("lo", "ip proto 50", &pcap, Duration::from_secs(60)).unwrap();
    send_raw_esp(&esp_packet(&key, 1, false));
    send_raw_esp(&esp_packet(&key, 2, true));
    let pcap = cap.stop().unwrap();

    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let sa = EspSa {
        src: lo,
        dst: lo,
        spi: SPI,
        encryption: EspEncryption::Null,
        enc_key: Vec::new(),
        auth: EspAuth::HmacSha1_96,
        auth_key: key,
    };
    // A decoy SA first: every record of the UAT is used, not only the first.
    let decoy = EspSa {
        spi: 0x9999,
        auth: EspAuth::HmacMd5_96,
        ..sa.clone()
    };
    let d = dissect(
        &pcap,
        &DissectOptions {
            prefs: esp_prefs(&[decoy, sa]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(d.esp_packets, 2, "{d:?}");
    assert_eq!((d.esp_icv_good, d.esp_icv_bad), (1, 1), "{d:?}");
    assert_eq!(d.sip_methods, vec!["OPTIONS", "OPTIONS"], "{d:?}");
    assert_eq!(d.malformed, 0, "{d:?}");

    // Without the SA nothing is checked or decoded.
    let plain = dissect(&pcap, &DissectOptions::default()).unwrap();
    assert_eq!(plain.esp_packets, 2);
    assert_eq!((plain.esp_icv_good, plain.esp_icv_bad), (0, 0), "{plain:?}");
    assert!(plain.sip_methods.is_empty(), "{plain:?}");
}
