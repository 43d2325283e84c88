//! Interop with freeDiameter 1.2 (Debian `freediameter`): CER/CEA, DWR/DWA and DPR/DPA
//! in both roles, over clear TCP on 127.0.0.1 with non-default ports.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, require_binary, Dir, FdConfig, FdConnectPeer, FreeDiameter, RawDriver};
use diameter::peer::{CloseReason, Event};
use diameter::{cmd, enums, Message, Peer, PeerConfig, PeerHandle, Server};
use tokio::net::{TcpListener, TcpStream};

fn our_config(host: &str) -> PeerConfig {
    let mut c = PeerConfig::cx(host, "ims.lab");
    c.product_name = "imslab-hss".into();
    c.watchdog_interval = Duration::from_secs(6);
    c.watchdog_jitter = Duration::ZERO;
    c
}

/// freeDiameter connects to us (we are the responder): its CER advertises only Relay;
/// both sides' watchdogs fire; we close with DPR and it answers DPA.
#[tokio::test]
async fn freediameter_connects_to_us() {
    if !require_binary("freeDiameterd") || !require_binary("openssl") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let our_port = listener.local_addr().unwrap().port();
    let fd = FreeDiameter::start(&FdConfig {
        identity: "fd.lab".into(),
        realm: "lab".into(),
        port: free_port(),
        tw: 6,
        connect: vec![FdConnectPeer {
            identity: "hss.ims.lab".into(),
            port: our_port,
        }],
        allow_incoming: vec![],
    });
    let (sock, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .unwrap_or_else(|_| panic!("freeDiameter never connected; log:\n{}", fd.log_text()))
        .unwrap();
    let local = sock.local_addr().unwrap().ip();
    let peer = Peer::accept(
        Arc::new(our_config("hss.ims.lab")),
        Instant::now(),
        77,
        Some(local),
    );
    let mut d = RawDriver::new(peer, sock);
    let ok = d
        .run_until(Duration::from_secs(20), |d| {
            d.saw(Dir::In, cmd::DEVICE_WATCHDOG, false)
                && d.saw(Dir::Out, cmd::DEVICE_WATCHDOG, false)
        })
        .await;
    assert!(
        ok,
        "no DWR/DWA both ways:\n{}\nfd log:\n{}",
        d.transcript(),
        fd.log_text()
    );
    let cer = &d
        .log
        .iter()
        .find(|(dir, m)| *dir == Dir::In && m.code == cmd::CAPABILITIES_EXCHANGE)
        .unwrap()
        .1;
    let info = diameter::PeerInfo::from_message(cer).unwrap();
    assert_eq!(info.origin_host, "fd.lab");
    assert!(info.is_relay(), "freeDiameter advertises Relay: {info:?}");
    assert!(d.events.iter().any(|e| matches!(e, Event::Up(_))));

    d.peer
        .disconnect(Instant::now(), enums::DISCONNECT_DO_NOT_WANT_TO_TALK_TO_YOU);
    d.run_until(Duration::from_secs(10), |d| {
        d.saw(Dir::In, cmd::DISCONNECT_PEER, false)
    })
    .await;
    assert!(
        d.saw(Dir::In, cmd::DISCONNECT_PEER, false),
        "no DPA:\n{}",
        d.transcript()
    );
    let dpa = &d
        .log
        .iter()
        .rev()
        .find(|(dir, m)| *dir == Dir::In && m.code == cmd::DISCONNECT_PEER)
        .unwrap()
        .1;
    assert_eq!(dpa.result().map(|r| r.code()), Some(2001));
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, Event::Closed(CloseReason::LocalDisconnect))));
}

/// We connect to freeDiameter (we are the initiator); DWR/DWA; on SIGTERM it sends DPR
/// and we answer DPA.
#[tokio::test]
async fn we_connect_to_freediameter() {
    if !require_binary("freeDiameterd") || !require_binary("openssl") {
        return;
    }
    let fd_port = free_port();
    let fd = FreeDiameter::start(&FdConfig {
        identity: "fd.lab".into(),
        realm: "lab".into(),
        port: fd_port,
        tw: 6,
        connect: vec![],
        allow_incoming: vec!["scscf.ims.lab".into()],
    });
    fd.wait_listening(fd_port).await;
    // wait_listening opened and dropped a probe connection; freeDiameter shrugs that off.
    let sock = TcpStream::connect(("127.0.0.1", fd_port)).await.unwrap();
    let local = sock.local_addr().unwrap().ip();
    let peer = Peer::connect(
        Arc::new(our_config("scscf.ims.lab")),
        Instant::now(),
        99 << 32 | 5,
        Some(local),
    );
    let mut d = RawDriver::new(peer, sock);
    let ok = d
        .run_until(Duration::from_secs(20), |d| {
            d.peer.is_open()
                && d.saw(Dir::In, cmd::DEVICE_WATCHDOG, false)
                && d.saw(Dir::Out, cmd::DEVICE_WATCHDOG, false)
        })
        .await;
    assert!(
        ok,
        "no CEA/DWA:\n{}\nfd log:\n{}",
        d.transcript(),
        fd.log_text()
    );
    assert_eq!(d.peer.remote().unwrap().origin_host, "fd.lab");
    eprintln!("transcript so far:\n{}", d.transcript());

    fd.terminate();
    d.run_until(Duration::from_secs(10), |d| d.peer.is_closed())
        .await;
    assert!(
        d.saw(Dir::In, cmd::DISCONNECT_PEER, true),
        "no DPR:\n{}",
        d.transcript()
    );
    assert!(
        d.saw(Dir::Out, cmd::DISCONNECT_PEER, false),
        "no DPA:\n{}",
        d.transcript()
    );
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::Closed(CloseReason::PeerDisconnected(_)))),
        "{:?}",
        d.events
    );
}

/// The tokio server: freeDiameter connects, shows up among the peers, leaves on SIGTERM.
#[tokio::test]
async fn tokio_server_with_freediameter() {
    if !require_binary("freeDiameterd") || !require_binary("openssl") {
        return;
    }
    let server = Server::bind(
        "127.0.0.1:0",
        our_config("hss.ims.lab"),
        |req: Message| async move { Message::answer_for(&req).with_result_code(2001) },
    )
    .await
    .unwrap();
    let port = server.local_addr().unwrap().port();
    let (srv, _task) = server.spawn();
    let fd = FreeDiameter::start(&FdConfig {
        identity: "fd.lab".into(),
        realm: "lab".into(),
        port: free_port(),
        tw: 6,
        connect: vec![FdConnectPeer {
            identity: "hss.ims.lab".into(),
            port,
        }],
        allow_incoming: vec![],
    });
    let mut up = false;
    for _ in 0..200 {
        if srv.peers() == vec!["fd.lab".to_string()] {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "freeDiameter did not come up; log:\n{}", fd.log_text());
    let h: PeerHandle = srv.peer("fd.lab").unwrap();
    // What an HSS test can check from freeDiameter's side alone (see `diameter::testkit`).
    assert!(
        fd.wait_log("STATE_OPEN", Duration::from_secs(10)).await,
        "{}",
        fd.log_text()
    );
    assert!(
        fd.wait_log("'Device-Watchdog-Answer'", Duration::from_secs(15))
            .await,
        "no DWA in freeDiameter's log:\n{}",
        fd.log_text()
    );
    assert!(h.remote().is_relay());
    fd.terminate();
    tokio::time::timeout(Duration::from_secs(10), h.closed())
        .await
        .expect("connection not closed after DPR");
    assert!(srv.peers().is_empty());
}
