//! The caller-ID service end to end, figures printed side by side (issue 11's benchmark):
//!
//! 1. **Notifications per second through the whole pipeline**: generated pcaps of
//!    `CALLS` answered calls (INVITE, 200, BYE) read by `appserver`'s own server
//!    (`server::start`: pipeline, SQLite call log, every network sink on loopback) with a
//!    client on each sink — an NCID client, a Fritz!Box monitor reader, a datagram
//!    receiver, a webhook server, and mosquitto when installed — replayed in chunks, each
//!    once every client has the one before (closed loop: the rate every sink sustains
//!    without loss). Each client's last arrival gives its own rate; the pcap reading
//!    (offers into the pipeline) is timed apart.
//! 2. **Call set-up delay the ISC hop adds**: through the real core (HSS, P-CSCF with its
//!    S-CSCF core) with UE simulators, `HOP_CALLS` calls to a callee whose terminating
//!    iFC sends them through the AS and as many to one without, interleaved, the callee
//!    answering at once; INVITE sent → 200 received at the caller, p50/p99 of both, and
//!    the difference.
//!
//! `cargo bench -p appserver --bench notify` (absolute times on a shared 2-core machine
//! are noise; the ratios and the side-by-side rows are the result).

use appserver::config::Config;
use appserver::passive::{fixtures, pcapin};
use appserver::sinks::SinkStats;
use axum::routing::post;
use ifc::{DefaultHandling, InitialFilterCriteria, SessionCase};
use secagree::IpsecMode;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ue::{AnswerMode, IoConfig, UeHost};

/// Calls in the pipeline run (3 events each).
const CALLS: usize = 2_000;
/// Calls per replayed chunk: the next chunk goes in once every client has everything so
/// far, so the run measures what the sinks sustain without losing a line (a burst larger
/// than a sink's queue loses the oldest events by design; the losses are printed and must
/// be zero here).
const CHUNK: usize = 50;
/// Longest any wait may take (every loop here is bounded).
const LIMIT: Duration = Duration::from_secs(60);
/// Calls per side in the ISC-hop run.
const HOP_CALLS: usize = 200;

/// What one client received, and when the last of it arrived.
#[derive(Default)]
struct Counter {
    n: AtomicU64,
    last: std::sync::Mutex<Option<Instant>>,
}

impl Counter {
    fn add(&self) {
        self.n.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn get(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }

    /// `n / (last arrival − t0)`.
    fn rate(&self, t0: Instant) -> String {
        let n = self.get();
        match *self.last.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(l) if n > 0 => {
                let d = l.duration_since(t0).as_secs_f64();
                format!("{:>8.0}/s  ({n} in {d:.3} s)", n as f64 / d)
            }
            _ => "nothing received".into(),
        }
    }
}

/// Counts the lines a TCP sink sends that `wanted` picks.
fn count_lines(addr: SocketAddr, wanted: fn(&str) -> bool, c: Arc<Counter>) {
    let s = TcpStream::connect(addr).expect("connect to the sink");
    s.set_read_timeout(Some(LIMIT)).ok();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines() {
            match line {
                Ok(l) if wanted(&l) => c.add(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
}

/// Waits (bounded) until every count has its share; false on time-out.
fn caught_up(counts: &[(&dyn Fn() -> u64, u64)]) -> bool {
    let t = Instant::now();
    while counts.iter().any(|(c, want)| c() < *want) {
        if t.elapsed() > LIMIT {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

fn pipeline(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("temporary directory");

    // The webhook's server and the datagram receiver count what they get.
    let posts = Arc::new(Counter::default());
    let p = posts.clone();
    let hook: SocketAddr = rt.block_on(async move {
        let app = axum::Router::new().route(
            "/hook",
            post(move || {
                let p = p.clone();
                async move {
                    p.add();
                    "ok"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let a = l.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(l, app).await });
        a
    });
    let dgram = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dgram_addr = dgram.local_addr().expect("address");
    let datagrams = Arc::new(Counter::default());
    {
        let d = datagrams.clone();
        dgram.set_read_timeout(Some(LIMIT)).ok();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while dgram.recv(&mut buf).is_ok() {
                d.add();
            }
        });
    }
    let broker = testkit::mosquitto::Mosquitto::start().ok();

    let mut cfg = Config::default();
    cfg.isc.listen = "127.0.0.1:0".parse().expect("address");
    cfg.calllog.path = dir.path().join("calls.db");
    cfg.ncid.enabled = true;
    cfg.ncid.listen = "127.0.0.1:0".into();
    cfg.fritz.enabled = true;
    cfg.fritz.listen = "127.0.0.1:0".into();
    cfg.datagram.enabled = true;
    cfg.datagram.to = dgram_addr.to_string();
    cfg.webhook.enabled = true;
    cfg.webhook.url = format!("http://{hook}/hook");
    if let Some(b) = &broker {
        cfg.mqtt.enabled = true;
        cfg.mqtt.port = b.port();
    }
    let running = rt
        .block_on(appserver::server::start(&cfg))
        .expect("the server starts");
    let ncid = Arc::new(Counter::default());
    let fritz = Arc::new(Counter::default());
    count_lines(
        running.sink_addr("ncid").expect("ncid"),
        |l| l.starts_with("CID:") || l.starts_with("CIDINFO:"),
        ncid.clone(),
    );
    count_lines(
        running.sink_addr("fritz").expect("fritz"),
        |l| l.contains(";RING;"),
        fritz.clone(),
    );
    let mqtt = broker.as_ref().map(|b| {
        b.subscribe("imslab/calls", 3 * CALLS, LIMIT)
            .expect("mosquitto_sub")
    });
    std::thread::sleep(Duration::from_millis(300));

    let chunks: Vec<Vec<u8>> = (0..CALLS / CHUNK)
        .map(|i| fixtures::many_invites_from(i * CHUNK, CHUNK).to_pcap())
        .collect();
    let pipeline = running.pipeline.clone();
    let mqtt_stats = running
        .sinks
        .iter()
        .find(|h| h.name == "mqtt")
        .map(|h| h.stats.clone());
    let (mut read, mut complete) = (Duration::ZERO, true);
    let t0 = Instant::now();
    for (i, chunk) in chunks.iter().enumerate() {
        let t = Instant::now();
        pcapin::read(chunk.as_slice(), &cfg.passive, pipeline.as_ref()).expect("reads");
        read += t.elapsed();
        let calls = ((i + 1) * CHUNK) as u64;
        // NCID: a CID line and a CIDINFO line per call.
        // MQTT: the broker's PUBACKs (QoS 1) as the sink counts them.
        let mqtt_acked = || {
            mqtt_stats
                .as_ref()
                .map_or(u64::MAX, |s| SinkStats::get(&s.sent))
        };
        if !caught_up(&[
            (&|| ncid.get(), 2 * calls),
            (&|| fritz.get(), calls),
            (&|| datagrams.get(), 3 * calls),
            (&|| posts.get(), 3 * calls),
            (&mqtt_acked, 3 * calls),
        ]) {
            complete = false;
            break;
        }
    }
    let total = t0.elapsed();
    let mqtt_n = mqtt.map(|s| s.messages().map(|m| m.len()).unwrap_or(0));
    let lost: Vec<String> = running
        .sinks
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                h.name,
                appserver::sinks::SinkStats::get(&h.stats.lost)
            )
        })
        .collect();
    rt.block_on(running.stop());

    let calls = CALLS as f64;
    println!(
        "\n== caller-ID pipeline: {CALLS} answered calls replayed from pcaps in chunks of \
         {CHUNK}, every sink on loopback with a client, each chunk once all clients have it"
    );
    println!(
        "  whole pipeline, every client served    {:>8.0} calls/s, {:.0} events/s{}",
        calls / total.as_secs_f64(),
        3.0 * calls / total.as_secs_f64(),
        if complete {
            ""
        } else {
            "  (INCOMPLETE: a client fell behind)"
        }
    );
    println!(
        "  pcap reading into the pipeline alone   {:>8.0} calls/s",
        calls / read.as_secs_f64()
    );
    println!("  NCID lines (CID + CIDINFO)            {}", ncid.rate(t0));
    println!("  Fritz!Box RING lines                  {}", fritz.rate(t0));
    println!(
        "  datagrams                             {}",
        datagrams.rate(t0)
    );
    println!("  webhook POSTs (one by one, in order)  {}", posts.rate(t0));
    match mqtt_n {
        Some(n) => println!(
            "  MQTT messages at mosquitto_sub         {n} of {}",
            3 * CALLS
        ),
        None => println!("  MQTT: mosquitto not installed, not measured"),
    }
    println!("  events lost by lagging sinks: {}", lost.join(", "));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn isc_hop(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ports = testkit::free_ports(4);
        let (d_port, s_port, p_port, as_port) = (ports[0], ports[1], ports[2], ports[3]);
        let as_uri = format!("sip:127.0.0.1:{as_port}");
        // A calls B (through the AS); C calls D (direct).
        let mut profiles = vec![Vec::new(); 4];
        profiles[1] = vec![InitialFilterCriteria::for_method(
            10,
            "INVITE",
            Some(SessionCase::TerminatingRegistered),
            &as_uri,
            DefaultHandling::SessionContinued,
        )];
        let db = dir.path().join("hss.db");
        lab::net::provision(&db, &profiles).expect("provision");
        let domain = lab::net::DOMAIN;
        let hss_toml = format!(
            "origin_host = \"hss.{domain}\"\nrealm = \"{domain}\"\n[diameter]\nlisten = \
             \"127.0.0.1:{d_port}\"\n[store]\npath = \"{}\"\ndurability = \"normal\"\n",
            db.display()
        );
        let hss_cfg = hss::config::Config::parse(&hss_toml).expect("hss.toml");
        let (_hss, _) = hss::server::start(&hss_cfg).await.expect("hss");
        let s_addr = SocketAddr::from(([127, 0, 0, 1], s_port));
        let p_toml = format!(
            "[sip]\nlisten = \"127.0.0.1:{p_port}\"\ndomain = \"{domain}\"\n[ipsec]\npolicy = \
             \"off\"\n[scscf]\naddress = \"{s_addr}\"\n[hss]\naddress = \"127.0.0.1:{d_port}\"\n\
             origin_host = \"pcscf.{domain}\"\n[isc]\napplication_servers = [\"127.0.0.1\"]\n"
        );
        let pcscf = pcscf::shell::start(pcscf::Config::from_toml(&p_toml).expect("pcscf.toml"))
            .await
            .expect("pcscf");
        let mut cfg = Config::default();
        cfg.isc.listen = SocketAddr::from(([127, 0, 0, 1], as_port));
        cfg.isc.scscf = Some(s_addr);
        cfg.calllog.path = dir.path().join("calls.db");
        let server = appserver::server::start(&cfg).await.expect("appserver");

        let p_addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), pcscf.sip_addr.port());
        let mut cfgs = lab::net::ue_configs(p_addr, 4, false);
        for (i, c) in cfgs.iter_mut().enumerate() {
            c.calls.answer = AnswerMode::Auto(Duration::ZERO);
            c.local_ip = IpAddr::from([127, 0, 76, 2 + i as u8]);
            c.port = testkit::free_port_on(c.local_ip);
        }
        let io = IoConfig {
            mode: IpsecMode::Off,
            tag: ue::ue_tag(&cfgs),
            ..IoConfig::default()
        };
        let host = UeHost::start(io).await.expect("UE host");
        let mut ues = Vec::new();
        for c in cfgs {
            let h = host.add(c).await.expect("UE");
            h.register().await.expect("register");
            ues.push(h);
        }
        let impu = |i: usize| lab::net::subscriber(i).impu;
        let (mut via_as, mut direct) = (Vec::new(), Vec::new());
        let t_all = Instant::now();
        for _ in 0..HOP_CALLS {
            if t_all.elapsed() > LIMIT {
                break;
            }
            for (caller, callee, out) in [(0, 1, &mut via_as), (2, 3, &mut direct)] {
                let t = Instant::now();
                let call = ues[caller].call(&impu(callee)).await.expect("call");
                ues[caller].wait_answered(call).await.expect("answered");
                out.push(t.elapsed());
                ues[caller].hangup(call).await.expect("hang up");
                ues[caller].wait_ended(call).await.expect("ended");
            }
        }
        host.shutdown().await;
        let offers = server.isc.stats().offers;
        server.stop().await;
        pcscf.stop().await;
        via_as.sort();
        direct.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (a50, a99) = (percentile(&via_as, 0.5), percentile(&via_as, 0.99));
        let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
        println!(
            "\n== call set-up (INVITE sent → 200 at the caller), {} calls each, interleaved, \
             callee answers at once; {offers} offered to the AS",
            via_as.len()
        );
        println!("                       p50        p99");
        println!("  through the AS   {:>7.2} ms {:>7.2} ms", ms(a50), ms(a99));
        println!("  direct           {:>7.2} ms {:>7.2} ms", ms(d50), ms(d99));
        println!(
            "  the ISC hop adds {:>+7.2} ms {:>+7.2} ms",
            ms(a50) - ms(d50),
            ms(a99) - ms(d99)
        );
    });
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing we need.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    pipeline(&rt);
    isc_hop(&rt);
}
