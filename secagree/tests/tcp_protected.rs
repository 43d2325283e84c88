//! TCP on protected ports with IPsec off, over real loopback sockets: only the peer port
//! the SA pairs a protected port with may connect (TS 33.203 §7.1, the rule the P-CSCF
//! core applies to every datagram), a stranger's connection is closed before anything
//! it sends is read, and closing the protected ports (the SA set deleted) ends the
//! connections they carry.

use secagree::{IpsecMode, SipIo};
use sip::transport::TransportConfig;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

const OPTIONS: &str = "OPTIONS sip:p@127.0.0.1 SIP/2.0\r\n\
    Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKtcp1\r\nMax-Forwards: 70\r\n\
    From: <sip:ue@ims.test>;tag=1\r\nTo: <sip:p@ims.test>\r\nCall-ID: tcp1\r\n\
    CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connect_from(local: SocketAddr, remote: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(true).unwrap();
    s.bind(local).unwrap();
    s.connect(remote).await.unwrap()
}

/// True when the peer closed (or reset) the stream within a second.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(
        timeout(Duration::from_secs(1), s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn only_the_sa_peer_may_connect_and_the_connection_ends_with_the_ports() {
    let (io, mut rx) = SipIo::start(
        IpsecMode::Off,
        xfrm::Tag::for_this_process("tcp-test"),
        TransportConfig::default(),
    )
    .await
    .unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let (pc, ps) = (free_port(), free_port());
    io.open_protected(ip, pc, ps).await.unwrap();
    let port_ps = SocketAddr::new(ip, ps);
    let ue_uc = SocketAddr::new(ip, free_port());
    io.restrict_tcp(port_ps, ue_uc);

    // A stranger reaches the port (TCP handshakes complete in the kernel) but is closed
    // before its request is read.
    let mut stranger = TcpStream::connect(port_ps).await.unwrap();
    let _ = stranger.write_all(OPTIONS.as_bytes()).await;
    assert!(closed(&mut stranger).await, "the stranger is refused");

    // The UE's protected client port is welcome.
    let mut ue = connect_from(ue_uc, port_ps).await;
    ue.write_all(OPTIONS.as_bytes()).await.unwrap();
    let got = timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the UE's request arrives")
        .unwrap();
    assert_eq!(got.flow.remote, ue_uc);
    assert_eq!(got.flow.local, Some(port_ps));
    assert_eq!(got.flow.protocol, sip::Protocol::Tcp);
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "nothing of the stranger's was read"
    );
    assert_eq!(io.transport().tcp_connection_count(), 1);

    // The SA set goes: its ports close, and the connection with them.
    io.close_protected(ip, pc, ps);
    assert!(closed(&mut ue).await, "the connection ends with its SA set");
    assert_eq!(io.transport().tcp_connection_count(), 0);
    assert!(
        TcpStream::connect(port_ps).await.is_err(),
        "nothing listens there any more"
    );
}
