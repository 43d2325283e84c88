//! The sinks against real clients: NCID clients over TCP, fritzconnection's FritzMonitor
//! (python3) against our call monitor, mosquitto for MQTT.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use appserver::event::*;
use appserver::sinks::{self, SinkHandle, SinkStats};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};

fn call(kind: CallEventKind, anonymous: bool) -> Arc<CallEvent> {
    let now = SystemTime::now();
    Arc::new(CallEvent {
        conn: 7,
        call_id: "it@ue".into(),
        kind,
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

fn end(outcome: Outcome, secs: u64) -> CallEventKind {
    CallEventKind::End {
        outcome,
        talk: Duration::from_secs(secs),
    }
}

async fn wait_clients(h: &SinkHandle, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while SinkStats::get(&h.stats.clients) != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} clients never became {n}",
            h.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut l))
        .await
        .expect("a line within 5 s")
        .unwrap();
    l
}

#[tokio::test]
async fn ncid_serves_many_clients_and_ignores_what_they_send() {
    let (bus, _) = broadcast::channel(64);
    let (stop, sd) = watch::channel(false);
    let cfg = sinks::ncid::NcidConfig {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        max_clients: 3,
        ..Default::default()
    };
    let h = sinks::ncid::spawn(&cfg, &bus, sd).await.unwrap();
    let addr = h.local_addr.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut r = BufReader::new(TcpStream::connect(addr).await.unwrap());
        assert!(read_line(&mut r).await.starts_with("200 "));
        assert_eq!(read_line(&mut r).await, "300 End of connection startup\r\n");
        clients.push(r);
    }
    wait_clients(&h, 3).await;
    // A fourth is refused (closed without a greeting).
    let mut extra = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let mut l = String::new();
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read_line(&mut l))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "over the limit: {l:?}");
    // Clients may send anything, a lot of it, without a newline.
    clients[0]
        .get_mut()
        .write_all(&vec![b'x'; 100_000])
        .await
        .unwrap();
    clients[1]
        .get_mut()
        .write_all(b"REQ: DIAL 123\r\n")
        .await
        .unwrap();

    bus.send(call(CallEventKind::Ring, false)).unwrap();
    bus.send(call(CallEventKind::Connect, false)).unwrap();
    bus.send(call(end(Outcome::Answered, 12), false)).unwrap();
    bus.send(call(CallEventKind::Blocked, true)).unwrap();
    for r in clients.iter_mut() {
        let cid = read_line(r).await;
        let parsed = sinks::ncid::parse_line(&cid).unwrap();
        let sinks::ncid::NcidLine::Cid(f) = parsed else {
            panic!("{cid}")
        };
        assert_eq!(
            (f.number.as_str(), f.name.as_str(), f.line.as_str()),
            ("+4930123456", "Alice", "+4940999")
        );
        let info = read_line(r).await;
        assert!(
            matches!(
                sinks::ncid::parse_line(&info),
                Ok(sinks::ncid::NcidLine::CidInfo { ring: -2, .. })
            ),
            "{info}"
        );
        let blk = read_line(r).await;
        assert!(
            blk.starts_with("BLK: ") && blk.contains("*NMBR*PRIVATE*"),
            "{blk}"
        );
    }
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), h.task)
        .await
        .unwrap()
        .unwrap();
    // Clients are closed once the server stops.
    let mut l = String::new();
    let n = tokio::time::timeout(Duration::from_secs(5), clients[2].read_line(&mut l))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "{l:?}");
}

/// fritzconnection's own call-monitor client, reading `n` lines from our port.
const FRITZ_CLIENT: &str = r#"
import sys, queue
from fritzconnection.core.fritzmonitor import FritzMonitor
port, n = int(sys.argv[1]), int(sys.argv[2])
with FritzMonitor(address="127.0.0.1", port=port, timeout=2) as monitor:
    q = monitor.start(reconnect_tries=0)
    print("CONNECTED", flush=True)
    for _ in range(n):
        print(q.get(timeout=10), flush=True)
"#;

#[tokio::test]
async fn fritz_monitor_reads_our_call_monitor() {
    if testkit::require_bin("python3").is_none() {
        return;
    }
    let probe = std::process::Command::new("python3")
        .args(["-c", "import fritzconnection.core.fritzmonitor"])
        .status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        testkit::skip_or_fail("python3 module fritzconnection is not installed");
        return;
    }
    let (bus, _) = broadcast::channel(64);
    let (_stop, sd) = watch::channel(false);
    let cfg = sinks::fritz::FritzConfig {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let h = sinks::fritz::spawn(&cfg, &bus, sd).await.unwrap();
    let port = h.local_addr.unwrap().port();
    let child = tokio::process::Command::new("python3")
        .args(["-c", FRITZ_CLIENT, &port.to_string(), "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_clients(&h, 1).await;
    bus.send(call(CallEventKind::Ring, false)).unwrap();
    bus.send(call(CallEventKind::Connect, false)).unwrap();
    bus.send(call(end(Outcome::Answered, 42), false)).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the python client ends within 30 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split(';').collect())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        &lines[0][1..6],
        ["RING", "7", "+4930123456", "+4940999", "SIP0"]
    );
    assert_eq!(&lines[1][1..5], ["CONNECT", "7", "0", "+4930123456"]);
    assert_eq!(&lines[2][1..4], ["DISCONNECT", "7", "42"]);
}

#[tokio::test]
async fn mqtt_publishes_to_mosquitto_with_discovery() {
    if testkit::require_bin("mosquitto").is_none()
        || testkit::require_bin("mosquitto_sub").is_none()
    {
        return;
    }
    let broker = tokio::task::spawn_blocking(testkit::mosquitto::Mosquitto::start)
        .await
        .unwrap()
        .unwrap();
    let port = broker.port();
    let broker = Arc::new(broker);
    let b = broker.clone();
    let sub = tokio::task::spawn_blocking(move || b.subscribe("#", 4, Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap();
    let (bus, _) = broadcast::channel(64);
    let (stop, sd) = watch::channel(false);
    let cfg = sinks::mqtt::MqttConfig {
        enabled: true,
        port,
        discovery: true,
        client_id: "imslab-test".into(),
        ..Default::default()
    };
    let h = sinks::mqtt::spawn(&cfg, &bus, sd).unwrap();
    bus.send(call(CallEventKind::Ring, false)).unwrap();
    bus.send(call(end(Outcome::Missed, 0), false)).unwrap();
    let msgs = tokio::task::spawn_blocking(move || sub.messages())
        .await
        .unwrap()
        .unwrap();
    let topics: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
    assert!(
        topics.contains(&"homeassistant/sensor/imslab_last_caller/config"),
        "{msgs:?}"
    );
    let events: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic == "imslab/calls")
        .map(|m| sinks::json::decode(m.payload.as_bytes()).unwrap().event)
        .collect();
    assert_eq!(events, ["ring", "end"], "{msgs:?}");
    let last = msgs
        .iter()
        .find(|m| m.topic == "imslab/calls/last_caller")
        .expect("sensor state");
    assert_eq!(last.payload, "Alice (+4930123456)");
    // Config, ring, sensor state, end: four QoS 1 publishes, four PUBACKs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while SinkStats::get(&h.stats.sent) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "PUBACKs not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), h.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn mqtt_retries_until_the_broker_comes() {
    if testkit::require_bin("mosquitto").is_none()
        || testkit::require_bin("mosquitto_sub").is_none()
    {
        return;
    }
    // The sink starts first, against a port with no broker yet: it must retry with
    // backoff and publish once the broker is there.
    let port = testkit::free_port();
    let (bus, _) = broadcast::channel(64);
    let (_stop, sd) = watch::channel(false);
    let cfg = sinks::mqtt::MqttConfig {
        enabled: true,
        port,
        client_id: "imslab-retry".into(),
        ..Default::default()
    };
    let h = sinks::mqtt::spawn(&cfg, &bus, sd).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while SinkStats::get(&h.stats.failed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection failure seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sub = tokio::task::spawn_blocking(move || {
        let broker = testkit::mosquitto::Mosquitto::start_on(port)?;
        let sub = broker.subscribe("imslab/calls", 1, Duration::from_secs(20))?;
        Ok::<_, testkit::Error>((broker, sub))
    })
    .await
    .unwrap()
    .unwrap();
    bus.send(call(CallEventKind::Ring, false)).unwrap();
    let (_broker, sub) = sub;
    let msgs = tokio::task::spawn_blocking(move || sub.messages())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(
        sinks::json::decode(msgs[0].payload.as_bytes())
            .unwrap()
            .caller
            .number
            .as_deref(),
        Some("+4930123456")
    );
}

#[tokio::test]
async fn mqtt_logs_in_with_username_and_password() {
    for bin in ["mosquitto", "mosquitto_sub", "mosquitto_passwd"] {
        if testkit::require_bin(bin).is_none() {
            return;
        }
    }
    let (broker, sub) = tokio::task::spawn_blocking(|| {
        let b = testkit::mosquitto::Mosquitto::start_with_password("lab", "pw1")?;
        let s = b.subscribe("imslab/calls", 1, Duration::from_secs(20))?;
        Ok::<_, testkit::Error>((b, s))
    })
    .await
    .unwrap()
    .unwrap();
    let (bus, _) = broadcast::channel(64);
    let (_stop, sd) = watch::channel(false);
    // Wrong password first: refused, counted, retried, never delivered.
    let bad = sinks::mqtt::spawn(
        &sinks::mqtt::MqttConfig {
            enabled: true,
            port: broker.port(),
            client_id: "imslab-bad".into(),
            username: "lab".into(),
            password: "wrong".into(),
            ..Default::default()
        },
        &bus,
        sd.clone(),
    )
    .unwrap();
    let good = sinks::mqtt::spawn(
        &sinks::mqtt::MqttConfig {
            enabled: true,
            port: broker.port(),
            client_id: "imslab-good".into(),
            username: "lab".into(),
            password: "pw1".into(),
            ..Default::default()
        },
        &bus,
        sd,
    )
    .unwrap();
    bus.send(call(CallEventKind::Ring, false)).unwrap();
    let msgs = tokio::task::spawn_blocking(move || sub.messages())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msgs.len(), 1, "{msgs:?}\n{}", broker.log());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while SinkStats::get(&bad.stats.failed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bad login not refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(SinkStats::get(&bad.stats.sent), 0);
    good.task.abort();
    bad.task.abort();
}
