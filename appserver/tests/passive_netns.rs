//! The live inputs against the real kernel, in network namespaces made here (a veth pair
//! between a sender and a receiver namespace; the host's interfaces and tables are never
//! touched). Root only: elsewhere they skip loudly (`testkit::require_netns`).
//!
//! - `live`: an AF_PACKET socket on the receiver's veth sees a SIP INVITE sent over UDP,
//!   also one the sender's kernel had to fragment.
//! - `nfqueue`: with `iptables -A INPUT -p udp --dport 5060 -j NFQUEUE` inside the
//!   receiver namespace, a blocked caller's INVITE never reaches the receiver's socket
//!   and another caller's does.

mod passive_support;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appserver::event::{CallObserver, Progress, Source};
use appserver::passive::sipscan::text::{invite, response};
use appserver::passive::{live, nfqueue, PassiveConfig};
use passive_support::{who, Recorder};
use xfrm::netns::NetNs;

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two namespaces joined by a veth pair: (sender, receiver, receiver's interface).
fn pair(prefix: &str, net: u8) -> (NetNs, NetNs, String, String, String) {
    let a = NetNs::create(prefix).expect("netns a");
    let b = NetNs::create(prefix).expect("netns b");
    let (ia, ib) = (format!("10.{net}.0.1"), format!("10.{net}.0.2"));
    let (_, vb) = a
        .veth_to(&b, &[&format!("{ia}/24")], &[&format!("{ib}/24")])
        .expect("veth pair");
    (a, b, vb, ia, ib)
}

#[test]
fn live_capture_on_a_veth_sees_an_invite() {
    if !testkit::require_netns() {
        return;
    }
    let (a, b, vb, ia, ib) = pair("aslive", 231);
    let rec = Arc::new(Recorder::default());
    let cfg = live::LiveConfig {
        interface: Some(vb),
        promiscuous: true,
    };
    let obs: Arc<dyn CallObserver> = rec.clone();
    let handle = b
        .run(move || live::spawn(&cfg, &PassiveConfig::default(), obs))
        .expect("enter netns")
        .expect("AF_PACKET socket")
        .expect("interface configured");
    let small = invite(
        "live-1@a",
        "+4930123456",
        Some("Alice"),
        None,
        None,
        "+4930999",
    );
    // Larger than the veth MTU: the sender's kernel fragments it.
    let mut big = invite(
        "live-2@a",
        "+4940555666",
        Some("Carol"),
        None,
        None,
        "+4930999",
    );
    big.insert_str(
        big.find("Call-ID").unwrap(),
        &format!("Subject: {}\r\n", "y".repeat(3000)),
    );
    let (ia2, ib2) = (ia.clone(), ib.clone());
    a.run(move || {
        let s = UdpSocket::bind(format!("{ia2}:5060")).unwrap();
        s.send_to(small.as_bytes(), format!("{ib2}:5060")).unwrap();
        s.send_to(big.as_bytes(), format!("{ib2}:5060")).unwrap();
        // not SIP: another port
        s.send_to(b"hello", format!("{ib2}:5070")).unwrap();
        // the callee's answer travels back over the same veth
        s.send_to(
            response("live-1@a", 200, "OK").as_bytes(),
            format!("{ib2}:5060"),
        )
        .unwrap();
    })
    .unwrap();
    wait_until("two offers and an answer", Duration::from_secs(5), || {
        rec.calls().len() >= 2 && !rec.progress_of("live-1@a").is_empty()
    });
    let stats = handle.stop().expect("live thread ends cleanly");
    let calls = rec.calls();
    assert_eq!(calls[0].call_id, "live-1@a");
    assert_eq!(calls[0].source, Source::Live);
    assert_eq!(who(&calls[0]).number.as_deref(), Some("+4930123456"));
    assert_eq!(who(&calls[1]).name.as_deref(), Some("Carol"));
    assert_eq!(rec.progress_of("live-1@a"), [Progress::Answered]);
    assert!(stats.packets >= 4, "{stats}");
    let _ = (ia, a);
}

#[test]
fn nfqueue_drops_a_blocked_callers_invite_and_passes_others() {
    if !testkit::require_netns() || testkit::require_bin("iptables").is_none() {
        return;
    }
    let (a, b, _vb, ia, ib) = pair("asnfq", 232);
    let queue = 7u16;
    let out = b
        .command("iptables")
        .args([
            "-A", "INPUT", "-p", "udp", "--dport", "5060", "-j", "NFQUEUE",
        ])
        .args(["--queue-num", &queue.to_string()])
        .output()
        .expect("iptables runs");
    assert!(
        out.status.success(),
        "iptables: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = Arc::new(Recorder::blocking(&["+4990666000"]));
    let obs: Arc<dyn CallObserver> = rec.clone();
    let cfg = nfqueue::NfqueueConfig {
        queue: Some(queue),
        fail_closed: false,
    };
    let ib2 = ib.clone();
    let (handle, receiver) = b
        .run(move || {
            let r = UdpSocket::bind(format!("{ib2}:5060")).unwrap();
            r.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            (nfqueue::spawn(&cfg, &PassiveConfig::default(), obs), r)
        })
        .expect("enter netns");
    let handle = handle.expect("NFQUEUE bound").expect("queue configured");
    let spam = invite(
        "spam-1@a",
        "+4990666000",
        Some("Spam"),
        None,
        None,
        "+4930999",
    );
    let friend = invite(
        "friend-1@a",
        "+4930123456",
        Some("Alice"),
        None,
        None,
        "+4930999",
    );
    let ib3 = ib.clone();
    a.run(move || {
        let s = UdpSocket::bind(format!("{ia}:5060")).unwrap();
        // the blocked INVITE twice (a retransmission meets the same verdict)
        s.send_to(spam.as_bytes(), format!("{ib3}:5060")).unwrap();
        s.send_to(spam.as_bytes(), format!("{ib3}:5060")).unwrap();
        s.send_to(friend.as_bytes(), format!("{ib3}:5060")).unwrap();
        // not SIP but on the queued port: accepted (fail open)
        s.send_to(b"\x00garbage", format!("{ib3}:5060")).unwrap();
    })
    .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && got.len() < 2 {
        if let Ok(n) = receiver.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    // anything still in flight after the two expected datagrams
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(n) = receiver.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let stats = handle.stop().expect("NFQUEUE thread ends cleanly");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("Call-ID: friend-1@a"), "{got:?}");
    assert!(got[1].contains("garbage"), "{got:?}");
    assert!(!got.iter().any(|g| g.contains("spam-1@a")));
    // the pipeline saw the blocked caller (twice) and the friend
    let ids: Vec<String> = rec.offers().iter().map(|o| o.call_id.clone()).collect();
    assert_eq!(ids, ["spam-1@a", "spam-1@a", "friend-1@a"]);
    assert_eq!(rec.offers()[0].source, Source::Nfqueue);
    assert!(stats.errors >= 1, "{stats}");
}
