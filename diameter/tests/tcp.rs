//! The tokio shell over loopback TCP: many concurrent requests, server-initiated
//! requests, allow-list, timeouts, and hostile byte streams.

use std::time::Duration;

use diameter::peer::CloseReason;
use diameter::transport::Handler;
use diameter::{
    app, avp, cmd, enums, result, AllowedPeer, Avp, FindAvp, Message, PeerConfig, PeerHandle,
    RefusalCounts, RequestError, ResultCode, Server, TransportError, VENDOR_3GPP,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A handler type of our own (not a closure): the HSS will look like this.
struct EchoHss;

impl Handler for EchoHss {
    async fn handle(&self, req: Message) -> Message {
        let user = req.get_utf8(avp::USER_NAME).unwrap_or("?").to_string();
        // Vary the delay so answers leave in a different order than requests came.
        let d = user
            .bytes()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64))
            % 5;
        tokio::time::sleep(Duration::from_millis(d)).await;
        Message::answer_for(&req)
            .with(Avp::utf8(avp::USER_NAME, user))
            .with_experimental_result(VENDOR_3GPP, result::cx::FIRST_REGISTRATION)
    }
}

fn mar(client: &PeerHandle, user: &str) -> Message {
    Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::SESSION_ID, client.new_session_id()))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            enums::NO_STATE_MAINTAINED,
        ))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, user))
}

async fn start_server() -> diameter::ServerHandle {
    let server = Server::bind(
        "127.0.0.1:0",
        PeerConfig::cx("hss.ims.lab", "ims.lab"),
        EchoHss,
    )
    .await
    .unwrap();
    server.spawn().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_on_one_connection() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "diameter=info".into()))
        .with_test_writer()
        .try_init();
    let srv = start_server().await;
    let client = PeerHandle::connect(srv.local_addr(), PeerConfig::cx("scscf.ims.lab", "ims.lab"))
        .await
        .unwrap();
    assert_eq!(client.remote().origin_host, "hss.ims.lab");
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("user{i}@ims.lab");
            let a = c.request(mar(&c, &user)).await.unwrap();
            assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), user);
            assert_eq!(a.origin_host(), Some("hss.ims.lab"));
            assert_eq!(
                a.result(),
                Some(ResultCode::Experimental {
                    vendor: VENDOR_3GPP,
                    code: 2001
                })
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(srv.peers(), vec!["scscf.ims.lab".to_string()]);
    client.disconnect().await;
    // The server drops the registration once the connection is gone.
    for _ in 0..100 {
        if srv.peers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(srv.peers().is_empty());
}

#[tokio::test]
async fn server_sends_rtr_to_a_connected_client() {
    let srv = start_server().await;
    let client = PeerHandle::connect_with_handler(
        srv.local_addr(),
        PeerConfig::cx("scscf.ims.lab", "ims.lab"),
        |req: Message| async move {
            assert_eq!(req.code, cmd::REGISTRATION_TERMINATION);
            Message::answer_for(&req).with_result_code(result::SUCCESS)
        },
    )
    .await
    .unwrap();
    let rtr = Message::request(app::CX, cmd::REGISTRATION_TERMINATION)
        .with(Avp::utf8(avp::SESSION_ID, "hss.ims.lab;1;1"))
        .with(Avp::utf8(avp::DESTINATION_HOST, "scscf.ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, "alice@ims.lab"));
    let a = srv.request("SCSCF.ims.lab", rtr.clone()).await.unwrap();
    assert_eq!(a.result(), Some(ResultCode::Base(2001)));
    assert!(matches!(
        srv.request("nobody", rtr).await,
        Err(RequestError::UnknownPeer(_))
    ));
    // A plain client refuses requests with 5012.
    let plain = PeerHandle::connect(srv.local_addr(), PeerConfig::cx("icscf.ims.lab", "ims.lab"))
        .await
        .unwrap();
    let a = srv
        .request(
            "icscf.ims.lab",
            Message::request(app::CX, cmd::PUSH_PROFILE),
        )
        .await
        .unwrap();
    assert_eq!(a.result(), Some(ResultCode::Base(result::UNABLE_TO_COMPLY)));
    drop(plain);
    drop(client);
}

#[tokio::test]
async fn allow_list_rejects_with_unknown_peer() {
    let server = Server::bind(
        "127.0.0.1:0",
        PeerConfig::cx("hss.ims.lab", "ims.lab").allow_hosts(["scscf.ims.lab"]),
        EchoHss,
    )
    .await
    .unwrap();
    let (srv, _t) = server.spawn();
    let r = PeerHandle::connect(srv.local_addr(), PeerConfig::cx("evil.lab", "lab")).await;
    assert!(
        matches!(
            r,
            Err(TransportError::Rejected(CloseReason::CapabilitiesRejected(
                3010
            )))
        ),
        "{r:?}"
    );
    assert!(
        PeerHandle::connect(srv.local_addr(), PeerConfig::cx("scscf.ims.lab", "ims.lab"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn request_timeout_reported() {
    let server = Server::bind(
        "127.0.0.1:0",
        PeerConfig::cx("hss.ims.lab", "ims.lab"),
        |req: Message| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Message::answer_for(&req)
        },
    )
    .await
    .unwrap();
    let (srv, _t) = server.spawn();
    let mut conf = PeerConfig::cx("scscf.ims.lab", "ims.lab");
    conf.request_timeout = Duration::from_millis(200);
    let client = PeerHandle::connect(srv.local_addr(), conf).await.unwrap();
    let r = client.request(mar(&client, "slow@ims.lab")).await;
    assert_eq!(r, Err(RequestError::TimedOut));
    let r = client
        .request_with_timeout(mar(&client, "slow@ims.lab"), Duration::from_millis(50))
        .await;
    assert_eq!(r, Err(RequestError::TimedOut));
}

async fn raw_open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut cer = Message::request(app::COMMON, cmd::CAPABILITIES_EXCHANGE)
        .with(Avp::utf8(avp::ORIGIN_HOST, "raw.lab"))
        .with(Avp::utf8(avp::ORIGIN_REALM, "lab"))
        .with(Avp::address(
            avp::HOST_IP_ADDRESS,
            "127.0.0.1".parse().unwrap(),
        ))
        .with(Avp::u32(avp::VENDOR_ID, 0))
        .with(Avp::utf8(avp::PRODUCT_NAME, "raw"))
        .with(Avp::u32(avp::AUTH_APPLICATION_ID, app::CX));
    cer.hop_by_hop = 1;
    s.write_all(&cer.encode()).await.unwrap();
    let cea = read_msg(&mut s).await.unwrap();
    assert_eq!(cea.result(), Some(ResultCode::Base(2001)));
    s
}

async fn read_msg(s: &mut TcpStream) -> Option<Message> {
    let mut hdr = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut hdr))
        .await
        .ok()?
        .ok()?;
    let len = u32::from_be_bytes([0, hdr[1], hdr[2], hdr[3]]) as usize;
    let mut rest = vec![0u8; len - 4];
    s.read_exact(&mut rest).await.ok()?;
    let mut all = hdr.to_vec();
    all.extend(rest);
    Message::decode(all).ok()
}

/// The connection ends (EOF or reset) within 5 s.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn hostile_input_never_crashes_the_server() {
    let srv = start_server().await;
    let addr = srv.local_addr();

    // Unknown command → 3001 on an open connection.
    let mut s = raw_open(addr).await;
    let mut m = Message::request(app::CX, 399).with(Avp::utf8(avp::SESSION_ID, "x;1;1"));
    m.hop_by_hop = 2;
    s.write_all(&m.encode()).await.unwrap();
    let a = read_msg(&mut s).await.unwrap();
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::COMMAND_UNSUPPORTED))
    );
    assert_eq!(a.hop_by_hop, 2);
    // Wrong AVP length → 5014, connection stays.
    let mut w = Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::USER_NAME, "a"))
        .encode();
    w[27] = 99;
    s.write_all(&w).await.unwrap();
    let a = read_msg(&mut s).await.unwrap();
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::INVALID_AVP_LENGTH))
    );
    // Oversized length → closed.
    s.write_all(&[1, 0xff, 0xff, 0xfc, 0x80, 0, 1, 0x2f])
        .await
        .unwrap();
    assert!(closed(&mut s).await);

    // Garbage before CER → closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x00\x00\x00\x00garbage garbage garbage")
        .await
        .unwrap();
    assert!(closed(&mut s).await);

    // Truncated message then EOF → closed quietly.
    let mut s = raw_open(addr).await;
    let w = Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::USER_NAME, "a"))
        .encode();
    s.write_all(&w[..w.len() - 3]).await.unwrap();
    s.shutdown().await.unwrap();
    assert!(closed(&mut s).await);

    // Random bytes on many connections.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut junk = vec![0u8; 300];
        for b in junk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        junk[0] = 1; // a plausible version keeps the parser going further
        let _ = s.write_all(&junk).await;
        drop(s);
    }

    // The server still works.
    let client = PeerHandle::connect(addr, PeerConfig::cx("scscf.ims.lab", "ims.lab"))
        .await
        .unwrap();
    let a = client.request(mar(&client, "after@ims.lab")).await.unwrap();
    assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), "after@ims.lab");
}

#[tokio::test]
async fn panicking_handler_still_answers() {
    let server = Server::bind(
        "127.0.0.1:0",
        PeerConfig::cx("hss.ims.lab", "ims.lab"),
        |req: Message| async move {
            if req.get_utf8(avp::USER_NAME) == Ok("boom@ims.lab") {
                panic!("handler bug");
            }
            Message::answer_for(&req).with_result_code(result::SUCCESS)
        },
    )
    .await
    .unwrap();
    let (srv, _t) = server.spawn();
    let client = PeerHandle::connect(srv.local_addr(), PeerConfig::cx("scscf.ims.lab", "ims.lab"))
        .await
        .unwrap();
    let a = client.request(mar(&client, "boom@ims.lab")).await.unwrap();
    assert_eq!(a.result(), Some(ResultCode::Base(result::UNABLE_TO_COMPLY)));
    let a = client.request(mar(&client, "fine@ims.lab")).await.unwrap();
    assert_eq!(a.result(), Some(ResultCode::Base(result::SUCCESS)));
}

#[tokio::test]
async fn reconnecting_client_comes_back_after_server_dpr() {
    let srv = start_server().await;
    let rc = diameter::ReconnectingClient::spawn(
        srv.local_addr(),
        PeerConfig::cx("scscf.ims.lab", "ims.lab"),
        diameter::transport::NoHandler,
        Duration::from_millis(100),
    );
    let h = rc
        .wait_connected(Duration::from_secs(5))
        .await
        .expect("connected");
    let a = rc.request(mar(&h, "one@ims.lab")).await.unwrap();
    assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), "one@ims.lab");
    // The server says goodbye: DPR, connection closed, then the client reconnects.
    srv.disconnect_all().await;
    h.closed().await;
    let h2 = rc
        .wait_connected(Duration::from_secs(5))
        .await
        .expect("reconnected");
    assert!(!h2.is_closed());
    let a = rc.request(mar(&h2, "two@ims.lab")).await.unwrap();
    assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), "two@ims.lab");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_at_once() {
    let srv = start_server().await;
    let mut tasks = Vec::new();
    for n in 0..20 {
        let addr = srv.local_addr();
        tasks.push(tokio::spawn(async move {
            let host = format!("scscf{n}.ims.lab");
            let c = PeerHandle::connect(addr, PeerConfig::cx(host.as_str(), "ims.lab"))
                .await
                .unwrap();
            let mut inner = Vec::new();
            for i in 0..100 {
                let c = c.clone();
                inner.push(tokio::spawn(async move {
                    let user = format!("u{n}-{i}@ims.lab");
                    let a = c.request(mar(&c, &user)).await.unwrap();
                    assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), user);
                }));
            }
            for t in inner {
                t.await.unwrap();
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    assert_eq!(srv.peers().len(), 20);
    for c in &clients {
        c.disconnect().await;
    }
}

/// Opens a TCP connection from `local` (any 127.0.0.0/8 address works on Linux without
/// setup) and sends a CER claiming `host`; returns the socket and the CEA.
async fn cer_from(
    local: &str,
    addr: std::net::SocketAddr,
    host: &str,
) -> (TcpStream, Option<Message>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let mut cer = Message::request(app::COMMON, cmd::CAPABILITIES_EXCHANGE)
        .with(Avp::utf8(avp::ORIGIN_HOST, host))
        .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
        .with(Avp::address(avp::HOST_IP_ADDRESS, local.parse().unwrap()))
        .with(Avp::u32(avp::VENDOR_ID, 0))
        .with(Avp::utf8(avp::PRODUCT_NAME, "impostor"))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX));
    cer.hop_by_hop = 7;
    s.write_all(&cer.encode()).await.unwrap();
    let cea = read_msg(&mut s).await;
    (s, cea)
}

/// An S-CSCF that answers RTR with a marker, so a test can tell which connection answered.
async fn marked_client(addr: std::net::SocketAddr, marker: &'static str) -> PeerHandle {
    PeerHandle::connect_with_handler(
        addr,
        PeerConfig::cx("scscf.ims.lab", "ims.lab"),
        move |req: Message| async move {
            Message::answer_for(&req)
                .with(Avp::utf8(avp::USER_NAME, marker))
                .with_result_code(result::SUCCESS)
        },
    )
    .await
    .unwrap()
}

fn rtr() -> Message {
    Message::request(app::CX, cmd::REGISTRATION_TERMINATION)
        .with(Avp::utf8(avp::SESSION_ID, "hss.ims.lab;1;9"))
        .with(Avp::utf8(avp::DESTINATION_HOST, "scscf.ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, "alice@ims.lab"))
}

/// Issue 14: a second connection claiming the Origin-Host of an open one (here from
/// another address) must neither take over the registry entry nor, when it closes, remove
/// the live connection's entry.
#[tokio::test]
async fn second_connection_for_an_open_host_leaves_the_live_one_registered() {
    let server = Server::bind(
        "127.0.0.1:0",
        PeerConfig::cx("hss.ims.lab", "ims.lab").allow_hosts(["scscf.ims.lab"]),
        EchoHss,
    )
    .await
    .unwrap();
    let (srv, _t) = server.spawn();
    let real = marked_client(srv.local_addr(), "real").await;

    let (mut imp, cea) = cer_from("127.0.0.2", srv.local_addr(), "scscf.ims.lab").await;
    let cea = cea.expect("a CEA before the close");
    assert_eq!(
        cea.result(),
        Some(ResultCode::Base(result::UNABLE_TO_COMPLY)),
        "{cea:?}"
    );
    assert!(closed(&mut imp).await, "refused connection left open");
    drop(imp);
    assert_eq!(srv.peers(), vec!["scscf.ims.lab".to_string()]);

    // RTR still reaches the real S-CSCF after the second connection is gone.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let a = srv.request("scscf.ims.lab", rtr()).await.unwrap();
    assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), "real");

    // Once the live connection closes the name is free again, from any allowed address.
    real.disconnect().await;
    let mut freed = false;
    for _ in 0..100 {
        if srv.peers().is_empty() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(freed, "entry of a closed connection kept");
    let (_s, cea) = cer_from("127.0.0.2", srv.local_addr(), "scscf.ims.lab").await;
    assert_eq!(cea.unwrap().result(), Some(ResultCode::Base(2001)));
}

/// Issue 14: the allow-list names a peer by Origin-Host AND address; the right name from
/// the wrong address gets DIAMETER_UNKNOWN_PEER (RFC 6733 §5.3) and is counted.
#[tokio::test]
async fn allowed_host_from_another_address_gets_unknown_peer() {
    let config = PeerConfig::cx("hss.ims.lab", "ims.lab").allow_peers([AllowedPeer::new(
        "scscf.ims.lab",
        ["127.0.0.1".parse().unwrap()],
    )]);
    let server = Server::bind("127.0.0.1:0", config, EchoHss).await.unwrap();
    let (srv, _t) = server.spawn();

    // Before the real peer connects too: an impostor never gets as far as the registry.
    let (mut imp, cea) = cer_from("127.0.0.2", srv.local_addr(), "SCSCF.ims.lab").await;
    let cea = cea.expect("a CEA before the close");
    assert_eq!(cea.result(), Some(ResultCode::Base(result::UNKNOWN_PEER)));
    assert!(cea.is_error(), "3010 is a protocol error: E bit");
    assert!(closed(&mut imp).await);
    assert!(srv.peers().is_empty());

    let _real = marked_client(srv.local_addr(), "real").await;
    let (_s, cea) = cer_from("127.0.0.3", srv.local_addr(), "scscf.ims.lab").await;
    assert_eq!(
        cea.unwrap().result(),
        Some(ResultCode::Base(result::UNKNOWN_PEER))
    );
    let (_s, cea) = cer_from("127.0.0.1", srv.local_addr(), "other.ims.lab").await;
    assert_eq!(
        cea.unwrap().result(),
        Some(ResultCode::Base(result::UNKNOWN_PEER))
    );
    // The right address too, but the peer is already connected (RFC 6733 §5.6 R-Reject).
    let (_s, cea) = cer_from("127.0.0.1", srv.local_addr(), "scscf.ims.lab").await;
    assert_eq!(
        cea.unwrap().result(),
        Some(ResultCode::Base(result::UNABLE_TO_COMPLY))
    );
    assert_eq!(
        srv.refusals(),
        RefusalCounts {
            unknown_host: 1,
            wrong_address: 2,
            already_connected: 1
        }
    );
    let a = srv.request("scscf.ims.lab", rtr()).await.unwrap();
    assert_eq!(a.get_utf8(avp::USER_NAME).unwrap(), "real");
}

/// RFC 6733 §7.5 / §7.1.5: a request with a second copy of a single-occurrence AVP is
/// answered 5009 with that copy in Failed-AVP, before the handler sees it.
#[tokio::test]
async fn repeated_single_avp_is_answered_5009() {
    let srv = start_server().await;
    let client = PeerHandle::connect(srv.local_addr(), PeerConfig::cx("scscf.ims.lab", "ims.lab"))
        .await
        .unwrap();
    let m = mar(&client, "alice@ims.lab").with(Avp::utf8(avp::USER_NAME, "mallory@ims.lab"));
    let a = client.request(m).await.unwrap();
    assert_eq!(
        a.result(),
        Some(ResultCode::Base(result::AVP_OCCURS_TOO_MANY_TIMES))
    );
    assert!(!a.is_error(), "5xxx is not a protocol error");
    let failed = a.get_grouped(avp::FAILED_AVP).unwrap();
    assert_eq!(failed.get_utf8(avp::USER_NAME).unwrap(), "mallory@ims.lab");
    // The echo handler never ran: its answer would carry the User-Name and 2001.
    assert!(a.find(avp::EXPERIMENTAL_RESULT).is_none());
    // One User-Name is fine.
    let a = client.request(mar(&client, "alice@ims.lab")).await.unwrap();
    assert!(a.result().is_some_and(|r| r.is_success()));
}
