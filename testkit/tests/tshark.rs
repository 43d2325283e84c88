//! tshark captures loopback traffic we generate and dissects it with
//! decode-as rules: Diameter on a TCP port, SIP on a UDP port.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use testkit::tshark::{dissect, Capture, DecodeAs, DissectOptions};

fn cer() -> Vec<u8> {
    use common::*;
    encode(
        0x80,
        257,
        0,
        1,
        1,
        &[
            avp(264, 0, b"client.testkit"),
            avp(296, 0, b"testkit"),
            avp(257, 0, &[0, 1, 127, 0, 0, 1]),
            avp_u32(266, 0, 0),
            avp(269, 0, b"testkit"),
            avp_u32(258, 0, CX_APP),
        ],
    )
}

#[test]
fn tshark_captures_and_dissects_loopback() {
    if testkit::require_bin("tshark").is_none() || !testkit::require_root() {
        return;
    }
    let dir = testkit::TestDir::new("tshark-test").unwrap();
    let dia = TcpListener::bind("127.0.0.1:0").unwrap();
    let dia_port = dia.local_addr().unwrap().port();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sip_port = sip.local_addr().unwrap().port();
    let pcap = dir.join("lo.pcap");
    let cap = Capture::loopback(&[dia_port, sip_port], &pcap).unwrap();

    // Diameter: a well-formed CER, then (second connection) a message whose
    // AVP length runs past the end of the message.
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = dia.accept().unwrap();
            let mut buf = [0u8; 4096];
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.read(&mut buf);
        }
    });
    let mut c = TcpStream::connect(("127.0.0.1", dia_port)).unwrap();
    c.write_all(&cer()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    let mut bad = cer();
    bad[20 + 7] = 0xff; // first AVP's length low byte: 255 > remaining bytes
    let mut c = TcpStream::connect(("127.0.0.1", dia_port)).unwrap();
    c.write_all(&bad).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    server.join().unwrap();

    // SIP over UDP: OPTIONS and a 200.
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ua_port = ua.local_addr().unwrap().port();
    let req = format!(
        "OPTIONS sip:127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{ua_port};branch=z9hG4bK1\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: tk1\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    ua.send_to(req.as_bytes(), ("127.0.0.1", sip_port)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sip.recv_from(&mut buf).unwrap();
    assert!(n > 0);
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\n\
                To: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: tk1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    sip.send_to(resp.as_bytes(), from).unwrap();

    let pcap = cap.stop().unwrap();
    let opts = DissectOptions {
        decode_as: vec![
            DecodeAs::diameter_tcp(dia_port),
            DecodeAs::sip_udp(sip_port),
        ],
        ..Default::default()
    };
    let d = dissect(&pcap, &opts).unwrap();
    assert!(d.packets >= 10, "{d:?}"); // 2 handshakes, data, fins, 2 UDP
    assert_eq!(d.diameter_codes(true), vec![257, 257], "{d:?}");
    assert_eq!(d.sip_methods, vec!["OPTIONS"], "{d:?}");
    assert_eq!(d.sip_status, vec![200], "{d:?}");
    assert_eq!(d.malformed, 1, "exactly the corrupted CER: {d:?}");

    // Without decode-as the port is unknown: no Diameter (SIP over UDP is
    // still found by Wireshark's heuristic dissector).
    let plain = dissect(&pcap, &DissectOptions::default()).unwrap();
    assert!(plain.diameter.is_empty(), "{plain:?}");
    assert_eq!(plain.malformed, 0, "{plain:?}");
}
