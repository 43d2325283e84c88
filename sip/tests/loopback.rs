//! Loopback UDP + TCP over IPv4 and IPv6 through the tokio transport and the
//! sans-IO transaction table on both ends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip::transaction::{Config, RequestOutcome, ResponseOutcome, Transactions};
use sip::transport::{Inbound, Transport, TransportConfig};
use sip::{Flow, Message, Method, NameAddr, Protocol, RequestBuilder, ResponseBuilder, Uri, Via};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

fn register(local: SocketAddr, proto: Protocol, branch: &str) -> Message {
    let mut from = NameAddr::new(Uri::parse("sip:alice@ims.test").unwrap());
    from.params.set("tag", Some("ft"));
    RequestBuilder::new(Method::Register, "sip:ims.test")
        .via(&Via::new(
            proto.as_str(),
            &sip::uri::ip_host(local.ip()),
            Some(local.port()),
            branch,
        ))
        .max_forwards(70)
        .from(&from)
        .to(&NameAddr::new(Uri::parse("sip:alice@ims.test").unwrap()))
        .call_id(&sip::new_call_id(None))
        .cseq(1)
        .header(
            "Contact",
            format_args!("<sip:alice@{}>", sip::uri::ip_host(local.ip())),
        )
        .build()
}

async fn recv(rx: &mut Receiver<Inbound>) -> Inbound {
    timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel closed")
}

async fn flush(t: &mut Transactions, tr: &Transport) {
    while let Some(x) = t.poll_transmit() {
        tr.send(&x).await.expect("send");
    }
}

/// UAC and UAS each bind two sockets; the UAC sends from its *second* socket and
/// the UAS must see that local/remote pair and answer on the same flow.
async fn round_trip(proto: Protocol, ip: &str) {
    let any: SocketAddr = format!("{ip}:0").parse().unwrap();
    let (uac, mut uac_rx) = Transport::new(TransportConfig::default());
    let (uas, mut uas_rx) = Transport::new(TransportConfig::default());
    let bind = |t: &Transport| {
        let t = t.clone();
        async move {
            match proto {
                Protocol::Udp => t.bind_udp(any).await.unwrap(),
                Protocol::Tcp => t.bind_tcp(any).await.unwrap(),
                Protocol::InProcess => unreachable!("no sockets for in-process flows"),
            }
        }
    };
    let _uac_a = bind(&uac).await;
    let uac_b = bind(&uac).await;
    let _uas_a = bind(&uas).await;
    let uas_b = bind(&uas).await;

    let mut ct = Transactions::new(Config::default());
    let mut st = Transactions::new(Config::default());
    let now = Instant::now();
    let req = register(uac_b, proto, &sip::new_branch());
    let id = ct
        .send_request(req, Flow::new(uac_b, uas_b, proto), now)
        .unwrap();
    flush(&mut ct, &uac).await;

    let inb = recv(&mut uas_rx).await;
    assert_eq!(inb.flow.local, Some(uas_b));
    assert_eq!(inb.flow.protocol, proto);
    if proto == Protocol::Udp {
        assert_eq!(inb.flow.remote, uac_b, "sent from the chosen socket");
    } else {
        assert_eq!(inb.flow.remote.ip(), uac_b.ip());
    }
    let mut msg = Message::parse(&inb.data).unwrap();
    msg.stamp_received(inb.flow.remote).unwrap();
    let RequestOutcome::New { id: sid, request } = st.handle_request(msg, inb.flow, now).unwrap()
    else {
        panic!("expected a new server transaction")
    };
    let resp = ResponseBuilder::new(&request, 200)
        .to_tag("uas")
        .build()
        .unwrap();
    st.respond(sid, resp, now).unwrap();
    flush(&mut st, &uas).await;

    let inb = recv(&mut uac_rx).await;
    assert_eq!(inb.flow.remote, uas_b);
    let resp = Message::parse(&inb.data).unwrap();
    match ct.handle_response(resp, now).unwrap() {
        ResponseOutcome::Deliver { id: got, response } => {
            assert_eq!(got, id);
            assert_eq!(response.code(), Some(200));
            assert_eq!(response.to_header().unwrap().tag(), Some("uas"));
        }
        other => panic!("unexpected {other:?}"),
    }
    if proto == Protocol::Tcp {
        // the response reused the connection the request opened
        assert_eq!(uas.tcp_connection_count(), 1);
        assert_eq!(uac.tcp_connection_count(), 1);
        // and a second request reuses it as well
        let req2 = register(uac_b, proto, &sip::new_branch());
        uac.send_message(&req2, Flow::new(uac_b, uas_b, proto))
            .await
            .unwrap();
        let _ = recv(&mut uas_rx).await;
        assert_eq!(uac.tcp_connection_count(), 1);
        assert!(uac.unbind(uac_b, Protocol::Tcp));
        assert_eq!(uac.tcp_connection_count(), 0);
    }
}

#[tokio::test]
async fn udp_v4() {
    round_trip(Protocol::Udp, "127.0.0.1").await;
}

#[tokio::test]
async fn tcp_v4() {
    round_trip(Protocol::Tcp, "127.0.0.1").await;
}

fn have_v6() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn udp_v6() {
    if !have_v6() {
        eprintln!("SKIPPED: no IPv6 loopback");
        return;
    }
    round_trip(Protocol::Udp, "[::1]").await;
}

#[tokio::test]
async fn tcp_v6() {
    if !have_v6() {
        eprintln!("SKIPPED: no IPv6 loopback");
        return;
    }
    round_trip(Protocol::Tcp, "[::1]").await;
}

#[tokio::test]
async fn tcp_framing_keepalive_split_and_limit() {
    use tokio::io::AsyncWriteExt;
    let cfg = TransportConfig {
        limits: sip::Limits {
            max_message: 2048,
            max_headers: 64,
        },
        ..Default::default()
    };
    let (uas, mut rx) = Transport::new(cfg);
    let addr = uas.bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let m = register("127.0.0.1:1".parse().unwrap(), Protocol::Tcp, "z9hG4bKs").to_bytes();
    // keep-alive, then two messages written in awkward pieces
    let mut all = b"\r\n\r\n".to_vec();
    all.extend_from_slice(&m);
    all.extend_from_slice(&m);
    for chunk in all.chunks(37) {
        s.write_all(chunk).await.unwrap();
        s.flush().await.unwrap();
    }
    for _ in 0..2 {
        let inb = recv(&mut rx).await;
        assert_eq!(&inb.data[..], &m[..]);
    }
    // an oversized header section makes the server drop the connection
    let big = format!("OPTIONS sip:a SIP/2.0\r\nX: {}\r\n", "a".repeat(4096));
    let _ = s.write_all(big.as_bytes()).await;
    let mut buf = [0u8; 16];
    use tokio::io::AsyncReadExt;
    let n = timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("server should close");
    assert!(matches!(n, Ok(0) | Err(_)));
}

#[tokio::test]
async fn udp_send_without_socket_fails() {
    let (t, _rx) = Transport::new(TransportConfig::default());
    let r = t
        .send(&sip::Transmit::new(
            Flow::to("127.0.0.1:9".parse().unwrap(), Protocol::Udp),
            bytes::Bytes::from_static(b"x"),
        ))
        .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn tcp_connection_limit() {
    let cfg = TransportConfig {
        max_tcp_connections: 1,
        ..Default::default()
    };
    let (uas, _rx) = Transport::new(cfg);
    let addr = uas.bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
    // wait until the first connection is registered
    for _ in 0..100 {
        if uas.tcp_connection_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(uas.tcp_connection_count(), 1);
    let mut b = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4];
    let n = timeout(Duration::from_secs(5), b.read(&mut buf))
        .await
        .expect("second connection closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert_eq!(uas.tcp_connection_count(), 1);
}

#[tokio::test]
async fn other_sources_feed_the_same_channel() {
    // e.g. the userspace ESP backend handing over decrypted UDP payloads
    let (t, mut rx) = Transport::new(TransportConfig::default());
    let flow = Flow::new(
        "127.0.0.1:5064".parse().unwrap(),
        "127.0.0.1:40000".parse().unwrap(),
        Protocol::Udp,
    );
    let data = register(
        "127.0.0.1:40000".parse().unwrap(),
        Protocol::Udp,
        "z9hG4bKesp",
    )
    .to_bytes();
    t.inbound_sender()
        .send(Inbound {
            flow,
            data: bytes::Bytes::from(data.clone()),
        })
        .await
        .unwrap();
    let got = recv(&mut rx).await;
    assert_eq!(got.flow, flow);
    assert_eq!(Message::parse(&got.data).unwrap().to_bytes(), data);
}

#[tokio::test]
async fn wildcard_socket_serves_a_specific_local_address() {
    let (a, _arx) = Transport::new(TransportConfig::default());
    let (b, mut brx) = Transport::new(TransportConfig::default());
    let own = tokio::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let wild = a.attach_udp(own).unwrap();
    let b_addr = b.bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let specific: SocketAddr = format!("127.0.0.1:{}", wild.port()).parse().unwrap();
    a.send(&sip::Transmit::new(
        Flow::new(specific, b_addr, Protocol::Udp),
        bytes::Bytes::from(register(specific, Protocol::Udp, "z9hG4bKw").to_bytes()),
    ))
    .await
    .unwrap();
    let got = recv(&mut brx).await;
    assert_eq!(got.flow.remote, specific);

    // TCP: accepted connections report the concrete local address
    let (c, mut crx) = Transport::new(TransportConfig::default());
    let l = c.bind_tcp("0.0.0.0:0".parse().unwrap()).await.unwrap();
    let target: SocketAddr = format!("127.0.0.1:{}", l.port()).parse().unwrap();
    b.send_message(
        &register(b_addr, Protocol::Tcp, "z9hG4bKw2"),
        Flow::to(target, Protocol::Tcp),
    )
    .await
    .unwrap();
    let got = recv(&mut crx).await;
    assert_eq!(got.flow.local, Some(target));
}

#[tokio::test]
async fn idle_tcp_connections_are_closed() {
    let cfg = TransportConfig {
        tcp_idle_timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let (uas, _rx) = Transport::new(cfg);
    let addr = uas.bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4];
    let n = timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("idle connection closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    for _ in 0..100 {
        if uas.tcp_connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(uas.tcp_connection_count(), 0);
}

#[tokio::test]
async fn the_accept_filter_refuses_a_stranger_and_keeps_the_owner() {
    let (uas, mut uas_rx) = Transport::new(TransportConfig::default());
    let addr = uas.bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // the owner connects from a port we know; anybody else is refused
    let owner_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let owner: SocketAddr = format!("127.0.0.1:{owner_port}").parse().unwrap();
    uas.set_accept_filter(std::sync::Arc::new(move |local, remote| {
        local == addr && remote == owner
    }));

    let (stranger, _srx) = Transport::new(TransportConfig::default());
    let _ = stranger
        .send_message(
            &register(addr, Protocol::Tcp, "z9hG4bKstranger"),
            Flow::to(addr, Protocol::Tcp),
        )
        .await;
    let (ue, _urx) = Transport::new(TransportConfig::default());
    ue.send_message(
        &register(owner, Protocol::Tcp, "z9hG4bKowner"),
        Flow::new(owner, addr, Protocol::Tcp),
    )
    .await
    .unwrap();
    // only the owner's request arrives (in order after the stranger's attempt)
    let got = recv(&mut uas_rx).await;
    assert_eq!(got.flow.remote, owner);
    assert!(String::from_utf8_lossy(&got.data).contains("z9hG4bKowner"));
    assert!(
        timeout(Duration::from_millis(300), uas_rx.recv())
            .await
            .is_err(),
        "nothing from the stranger"
    );
    assert_eq!(uas.tcp_connection_count(), 1);
}

/// The size rule end to end over real sockets: a large request goes over TCP where the
/// peer listens, and back over UDP (same transaction, same branch) where TCP is refused.
#[tokio::test]
async fn the_size_rule_uses_tcp_and_falls_back_to_udp_when_refused() {
    let (uac, _uac_rx) = Transport::new(TransportConfig::default());
    let uac_addr = uac.bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (uas, mut uas_rx) = Transport::new(TransportConfig::default());
    let udp = uas.bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut txs = Transactions::new(Config::default());
    let rule = sip::SizeRule::default();
    let big = |branch: &str| {
        let mut m = register(uac_addr, Protocol::Udp, branch);
        m.set_body(Some("text/plain"), bytes::Bytes::from(vec![b'x'; 1500]));
        m
    };
    let now = Instant::now();

    // 1. nobody listens on TCP at that port: refused, then UDP
    txs.send_request_sized(big("z9hG4bKfb1"), Flow::to(udp, Protocol::Udp), &rule, now)
        .unwrap();
    let t = txs.poll_transmit().unwrap();
    assert_eq!(t.flow.protocol, Protocol::Tcp);
    let e = uac.send(&t).await.expect_err("no TCP listener there");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    txs.handle_transport_error(t.tx.unwrap(), now);
    flush(&mut txs, &uac).await;
    let got = recv(&mut uas_rx).await;
    assert_eq!(got.flow.protocol, Protocol::Udp);
    let m = Message::parse(&got.data).unwrap();
    assert_eq!(m.top_via().unwrap().transport, "UDP");
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKfb1"));

    // 2. the peer listens on TCP too: the request arrives over TCP, Via says so
    uas.bind_tcp(udp).await.unwrap();
    txs.send_request_sized(big("z9hG4bKfb2"), Flow::to(udp, Protocol::Udp), &rule, now)
        .unwrap();
    flush(&mut txs, &uac).await;
    let got = recv(&mut uas_rx).await;
    assert_eq!(got.flow.protocol, Protocol::Tcp);
    let m = Message::parse(&got.data).unwrap();
    assert_eq!(m.top_via().unwrap().transport, "TCP");
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKfb2"));
}

/// A peer that never completes the handshake (here: a listener whose accept queue is full,
/// so the kernel drops further SYNs) costs at most the connect timeout, not the kernel's
/// two minutes.
#[tokio::test]
async fn a_connect_nobody_answers_gives_up_at_the_timeout() {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    // fill the accept queue (never accepted)
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let (t, _rx) = Transport::new(TransportConfig {
        tcp_connect_timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    });
    let started = Instant::now();
    let r = t
        .send(&sip::Transmit::new(
            Flow::to(addr, Protocol::Tcp),
            bytes::Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
        ))
        .await;
    let e = r.expect_err("nobody completes the handshake");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(fillers);
}
