//! The call and MESSAGE commands of [`ue::UeHandle`] over real loopback UDP sockets, IPsec
//! off and sec-agree off (no privileges needed): two UEs on one [`ue::UeHost`] register
//! with AKA against the scripted registrar of `common` and call each other through a
//! small record-routing relay on its own socket. The same network roles over the SA are
//! checked message by message in `ue_calls.rs`; this test is about the shell's plumbing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::relay::relay_and_host;
use common::*;
use ue::{AnswerMode, CallEnd, Party, UeConfig, UeHostError};

const LIMIT: Duration = Duration::from_secs(10);

fn ue_config(user: &str, ip: &str, relay: SocketAddr) -> UeConfig {
    let mut c = config();
    c.impi = format!("{user}@{DOMAIN}");
    c.impu = format!("sip:{user}@{DOMAIN}");
    c.local_ip = ip.parse().unwrap();
    c.port = testkit::wait::free_port_on(c.local_ip);
    c.pcscf = relay;
    c.sec_agree = false;
    c
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}

#[tokio::test]
async fn calls_and_messages_through_the_shell() {
    let (relay_addr, relay_task, host) = relay_and_host().await;
    let alice = format!("sip:alice@{DOMAIN}");
    let bob = format!("sip:bob@{DOMAIN}");
    let a = host
        .add(ue_config("alice", "127.0.9.2", relay_addr))
        .await
        .unwrap();
    let mut cb = ue_config("bob", "127.0.9.3", relay_addr);
    cb.calls.answer = AnswerMode::Ring;
    let b = host.add(cb).await.unwrap();
    within(a.register()).await.unwrap();
    within(b.register()).await.unwrap();

    // a call bob answers by command, alice hangs up
    let call = a.call(&bob).await.unwrap();
    let incoming = within(b.wait_incoming()).await.unwrap();
    b.answer(incoming).await.unwrap();
    within(a.wait_answered(call)).await.unwrap();
    within(b.wait_answered(incoming)).await.unwrap();
    assert_eq!(
        a.snapshot().await.unwrap().calls,
        vec![(call, ue::CallPhase::Answered)]
    );
    a.hangup(call).await.unwrap();
    assert_eq!(
        within(a.wait_ended(call)).await.unwrap(),
        CallEnd::HungUp { by: Party::Local }
    );
    assert_eq!(
        within(b.wait_ended(incoming)).await.unwrap(),
        CallEnd::HungUp { by: Party::Remote }
    );
    // waiting on an ended call resolves at once
    assert_eq!(
        within(a.wait_ended(call)).await.unwrap(),
        CallEnd::HungUp { by: Party::Local }
    );

    // busy
    let call = a.call(&bob).await.unwrap();
    let incoming = within(b.wait_incoming()).await.unwrap();
    b.reject(incoming, 486).await.unwrap();
    match within(a.wait_answered(call)).await {
        Err(UeHostError::CallEnded(CallEnd::Rejected { code: 486, .. })) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        b.hangup(incoming).await,
        Err(UeHostError::Call(ue::CallError::UnknownCall(_)))
    ));

    // MESSAGE both ways
    assert_eq!(within(a.send_message(&bob, "hi bob")).await.unwrap(), 200);
    assert_eq!(
        within(b.next_message()).await.unwrap(),
        (alice.clone(), "hi bob".to_string())
    );
    assert_eq!(
        within(b.send_message(&alice, "hi alice")).await.unwrap(),
        200
    );
    assert_eq!(
        within(a.next_message()).await.unwrap(),
        (bob.clone(), "hi alice".to_string())
    );
    host.shutdown().await;
    relay_task.abort();
}

/// RTP over real loopback sockets: each UE sends its test pattern from its own RTP socket
/// (one port picked by the OS, one configured) to the other's c=/m= address, counts and
/// checks what arrives, carries a DTMF digit, and stops at the BYE.
#[tokio::test]
async fn rtp_flows_both_ways_over_loopback_sockets() {
    let (relay_addr, relay_task, host) = relay_and_host().await;
    let mut events = host.take_events().unwrap();
    let bob = format!("sip:bob@{DOMAIN}");
    let mut ca = ue_config("alice", "127.0.9.4", relay_addr);
    ca.calls.rtp_port = 0;
    let mut cb = ue_config("bob", "127.0.9.5", relay_addr);
    cb.calls.rtp_port = testkit::wait::free_port_on(cb.local_ip);
    cb.calls.answer = AnswerMode::Auto(Duration::from_millis(100));
    let bob_rtp = SocketAddr::new(cb.local_ip, cb.calls.rtp_port);
    let a = host.add(ca).await.unwrap();
    let b = host.add(cb).await.unwrap();
    within(a.register()).await.unwrap();
    within(b.register()).await.unwrap();

    let call = a.call(&bob).await.unwrap();
    let incoming = within(b.wait_incoming()).await.unwrap();
    within(a.wait_answered(call)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a.send_dtmf(call, '3').await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.hangup(call).await.unwrap();
    within(a.wait_ended(call)).await.unwrap();
    within(b.wait_ended(incoming)).await.unwrap();
    host.shutdown().await;
    relay_task.abort();

    let mut started = Vec::new();
    let mut stats = [None, None];
    let mut dtmf = Vec::new();
    while let Ok(e) = events.try_recv() {
        match e.event.kind {
            ue::EventKind::MediaStarted { to, .. } => started.push((e.ue, to)),
            ue::EventKind::CallMedia { stats: s, .. } => stats[e.ue] = Some(s),
            ue::EventKind::DtmfReceived { digit, .. } => dtmf.push((e.ue, digit)),
            _ => {}
        }
    }
    let to_bob = started.iter().find(|(u, _)| *u == 0).map(|x| x.1);
    let to_alice = started.iter().find(|(u, _)| *u == 1).map(|x| x.1);
    assert_eq!(to_bob, Some(bob_rtp), "{started:?}");
    let to_alice = to_alice.expect("bob's RTP started");
    assert_eq!(to_alice.ip().to_string(), "127.0.9.4");
    assert_ne!(to_alice.port(), 0, "the port the OS picked is in the SDP");
    assert_eq!(dtmf, [(1, '3')]);
    let [Some(sa), Some(sb)] = stats else {
        panic!("both UEs report media: {stats:?}")
    };
    for (x, y) in [(&sa, &sb), (&sb, &sa)] {
        // 1.4 s of a 20 ms pace, whatever the scheduling of this shared machine
        assert!(x.sent >= 40, "{x:?}");
        assert!(
            u64::from(y.received) * 5 >= u64::from(x.sent) * 4,
            "received {y:?} of sent {x:?}"
        );
        assert!(
            y.frames_ok >= 30 && y.frames_bad == 0 && y.malformed == 0,
            "{y:?}"
        );
    }
    assert_eq!(sa.dtmf_sent, "3");
}
