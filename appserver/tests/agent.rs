//! `appserver notify-agent` against a real private session bus (dbus-daemon), watched by
//! dbus-monitor, fed by our own datagram and NCID sinks; speech by espeak-ng into a file.
//! One test function: the agent reads DBUS_SESSION_BUS_ADDRESS from the process
//! environment, which tests running in parallel would share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use appserver::agent::{self, AgentConfig, AgentSource};
use appserver::event::*;
use appserver::sinks;
use tokio::sync::{broadcast, watch};

fn ring(call_id: &str, anonymous: bool) -> Arc<CallEvent> {
    let now = SystemTime::now();
    Arc::new(CallEvent {
        conn: 1,
        call_id: call_id.into(),
        kind: CallEventKind::Ring,
        at: now,
        started: now,
        caller: if anonymous {
            Caller {
                number: None,
                name: Some("Anonymous".into()),
                name_source: NameSource::Anonymous,
                anonymous: true,
            }
        } else {
            Caller {
                number: Some("+4930123456".into()),
                name: Some("Alice".into()),
                name_source: NameSource::Phonebook,
                anonymous: false,
            }
        },
        callee: Callee {
            number: Some("+4940999".into()),
            uri: "sip:+4940999@ims.lab".into(),
        },
        source: Source::Isc,
    })
}

async fn wait_count(what: &str, c: &AtomicU64, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.load(Ordering::Relaxed) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never reached {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_agent_pops_up_over_dbus_and_speaks() {
    for bin in ["dbus-daemon", "dbus-monitor", "espeak-ng"] {
        if testkit::require_bin(bin).is_none() {
            return;
        }
    }
    let (bus_d, monitor) = tokio::task::spawn_blocking(|| {
        let bus = testkit::dbus::SessionBus::start()?;
        let mon = bus.monitor("interface='org.freedesktop.Notifications'")?;
        Ok::<_, testkit::Error>((bus, mon))
    })
    .await
    .unwrap()
    .unwrap();
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", bus_d.address());
    let dir = testkit::TestDir::new("agent").unwrap();
    let wav = dir.join("ring.wav");

    // 1. Datagram source, fed by our datagram sink.
    let (stop, sd) = watch::channel(false);
    let cfg = AgentConfig {
        source: AgentSource::Datagram,
        listen: "127.0.0.1:0".into(),
        speak: true,
        speak_command: vec![
            "espeak-ng".into(),
            "-w".into(),
            wav.display().to_string(),
            "{text}".into(),
        ],
        ..Default::default()
    };
    let a = agent::spawn(cfg, sd.clone()).await.unwrap();
    let (bus, _) = broadcast::channel(16);
    let dg = sinks::datagram::spawn(
        &sinks::datagram::DatagramConfig {
            enabled: true,
            to: a.local_addr.unwrap().to_string(),
            bind: "127.0.0.1:0".into(),
            ..Default::default()
        },
        &bus,
        sd.clone(),
    )
    .unwrap();
    // Garbage first: logged and dropped, the agent goes on.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.send_to(b"{\"v\":9}", a.local_addr.unwrap()).unwrap();
    wait_count("bad_input", &a.stats.bad_input, 1).await;

    bus.send(ring("call-1", false)).unwrap();
    bus.send(ring("call-1", false)).unwrap(); // a duplicate: one pop-up
    let m = &monitor;
    tokio::task::block_in_place(|| {
        m.wait_for("string \"Call from Alice\"", 1, Duration::from_secs(20))
    })
    .unwrap();
    assert!(monitor.log().contains("member=Notify"), "{}", monitor.log());
    assert!(monitor.log().contains("string \"+4930123456\""));
    // No notification server on this bus: the call fails, the agent logs and goes on.
    wait_count("notify_errors", &a.stats.notify_errors, 1).await;
    wait_count("spoken", &a.stats.spoken, 1).await;
    let size = std::fs::metadata(&wav).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "espeak-ng wrote {size} bytes");
    assert_eq!(
        a.stats.rings.load(Ordering::Relaxed),
        1,
        "duplicate shown once"
    );

    // 2. NCID source, fed by our NCID server.
    let ncid = sinks::ncid::spawn(
        &sinks::ncid::NcidConfig {
            enabled: true,
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        },
        &bus,
        sd.clone(),
    )
    .await
    .unwrap();
    let b = agent::spawn(
        AgentConfig {
            source: AgentSource::Ncid,
            ncid_server: ncid.local_addr.unwrap().to_string(),
            ..Default::default()
        },
        sd.clone(),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sinks::SinkStats::get(&ncid.stats.clients) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.send(ring("call-2", true)).unwrap();
    tokio::task::block_in_place(|| {
        m.wait_for("string \"Call from Anonymous\"", 2, Duration::from_secs(20))
    })
    .unwrap();
    // The datagram agent saw call-2 too (same bus): two pop-ups for it, one per agent.
    assert!(monitor.log().contains("string \"Number withheld\""));
    wait_count("rings via NCID", &b.stats.rings, 1).await;

    stop.send_replace(true);
    for t in [a.task, b.task, dg.task, ncid.task] {
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("ends on shutdown")
            .unwrap();
    }
    drop(bus_d);
}
