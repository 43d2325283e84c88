//! `imslab bench cx`: the HSS alone under Cx registration load (issue 10).
//!
//! A full IMS registration costs the HSS one MAR (an AKA vector, its SQN committed before the
//! answer) and one SAR (REGISTRATION: the S-CSCF assignment stored, User-Data returned), TS
//! 29.228 §6.1.2 and §6.3. This bench provisions `subscribers` subscribers in a fresh
//! database through the `hss` binary's own CSV import (so a binary of another version, e.g.
//! the code before a change, can be measured the same way), runs that binary with the
//! chosen durability, and sends MAR + SAR pairs over Diameter/TCP on loopback at a fixed
//! offered rate, one step per rate, each step bounded in count (`rate × seconds`, at most
//! `max_registrations`) and in time. The HSS's CPU is read from `/proc/<pid>/stat`
//! (utime + stime) around each step, so the figure per registration is the server's own,
//! not the load generator's. Every AUTN is decoded (SQN = AUTN[0..6] ⊕ AK) to check that
//! no SQN is issued twice to one subscriber.

use anyhow::Context;
use diameter::transport::{PeerHandle, RequestError};
use diameter::{app, avp, cmd, Avp, FindAvp, Message, PeerConfig, VENDOR_3GPP};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::ChildGuard;

/// Subscriber key used for every bench subscriber (the bench only needs distinct SQN spaces,
/// which are per subscriber, not distinct keys).
const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
/// OPc for every bench subscriber.
const OPC: [u8; 16] = [
    0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf,
];
const REALM: &str = "ims.lab";
const SERVER_NAME: &str = "sip:scscf.ims.lab:6060";

/// What `imslab bench cx` runs.
#[derive(Debug, Clone)]
pub struct CxOptions {
    /// The `hss` binary to measure.
    pub hss: PathBuf,
    /// Subscribers provisioned (registrations cycle through them).
    pub subscribers: u32,
    /// Offered registration rates (MAR + SAR pairs per second), one step each.
    pub rates: Vec<u32>,
    /// Seconds of load per step.
    pub seconds: u32,
    /// Most registrations in one step.
    pub max_registrations: u32,
    /// Diameter connections the load is spread over (an S-CSCF usually holds one or two).
    pub connections: u32,
    /// `[store] durability` of the HSS: "full" (its default) or "normal".
    pub durability: String,
}

/// Figures of one rate step.
#[derive(Debug, Clone, Default)]
pub struct CxStep {
    /// Offered rate (registrations/s).
    pub rate: u32,
    /// Registrations started.
    pub started: u64,
    /// Registrations whose MAA and SAA both had Result-Code 2001.
    pub completed: u64,
    /// From the first MAR sent to the last answer.
    pub wall: Duration,
    /// MAA counts by result code (Result-Code or Experimental-Result-Code).
    pub maa: BTreeMap<u32, u64>,
    /// SAA counts by result code.
    pub saa: BTreeMap<u32, u64>,
    /// Requests that got no answer in the client's request timeout (5 s).
    pub timeouts: u64,
    /// Requests that failed otherwise (connection closed, not sent, malformed).
    pub errors: u64,
    /// Median MAR-sent → SAA-received time of completed registrations.
    pub p50: Duration,
    /// 99th percentile of that.
    pub p99: Duration,
    /// HSS process CPU (utime + stime) during the step, seconds.
    pub hss_cpu: f64,
    /// SQNs seen twice for one subscriber (over the whole run up to this step).
    pub duplicate_sqns: u64,
}

impl CxStep {
    /// Completed registrations per second.
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// HSS CPU microseconds per started registration (MAR + SAR).
    pub fn cpu_us_per_registration(&self) -> f64 {
        self.hss_cpu * 1e6 / (self.started.max(1) as f64)
    }

    /// Answers with this code, MAA and SAA together.
    pub fn answers(&self, code: u32) -> u64 {
        self.maa.get(&code).copied().unwrap_or(0) + self.saa.get(&code).copied().unwrap_or(0)
    }
}

fn imsi(i: u32) -> String {
    format!("0010199{i:08}")
}

fn impi(i: u32) -> String {
    format!("{}@{REALM}", imsi(i))
}

fn impu(i: u32) -> String {
    format!("sip:{}@{REALM}", imsi(i))
}

/// Origin-Host of load connection `n`: the HSS refuses a second connection of one peer
/// (RFC 6733 §5.6.4 election), so each connection is its own S-CSCF.
fn client_host(n: u32) -> String {
    format!("scscf{n}.{REALM}")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes the subscribers as a SIM card CSV (two IMPUs each, one implicit set) and imports
/// it with `hss subscriber import` under a provisioning config with `durability = "normal"`
/// (one commit per subscriber; its fsyncs are not what is measured).
fn provision(opts: &CxOptions, dir: &Path, db: &Path) -> anyhow::Result<()> {
    let mut csv = String::from("IMSI,Ki,OPc,IMPI,IMPU\n");
    for i in 0..opts.subscribers {
        let _ = writeln!(
            csv,
            "{},{},{},{},{} tel:+4917{i:08}",
            imsi(i),
            hex(&K),
            hex(&OPC),
            impi(i),
            impu(i)
        );
    }
    let cards = dir.join("cards.csv");
    std::fs::write(&cards, csv).context("write cards.csv")?;
    let conf = dir.join("provision.toml");
    std::fs::write(
        &conf,
        format!(
            "[store]\npath = \"{}\"\ndurability = \"normal\"\n",
            db.display()
        ),
    )
    .context("write provision.toml")?;
    let out = std::process::Command::new(&opts.hss)
        .arg("-c")
        .arg(&conf)
        .args(["subscriber", "import"])
        .arg(&cards)
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("run {} subscriber import", opts.hss.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "hss subscriber import failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Starts `hss run` on a free loopback port (three attempts if the port is taken meanwhile).
fn start(opts: &CxOptions, dir: &Path, db: &Path) -> anyhow::Result<(ChildGuard, u16)> {
    for attempt in 1..=3 {
        let port = testkit::free_port();
        let conf = dir.join("hss.toml");
        let allowed = (0..opts.connections)
            .map(|n| format!("{:?}", client_host(n)))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &conf,
            format!(
                "origin_host = \"hss.{REALM}\"\nrealm = \"{REALM}\"\n\n[diameter]\n\
                 listen = \"127.0.0.1:{port}\"\nallowed_peers = [{allowed}]\n\n\
                 [store]\npath = \"{}\"\ndurability = \"{}\"\n",
                db.display(),
                opts.durability
            ),
        )
        .context("write hss.toml")?;
        let mut cmd = std::process::Command::new(&opts.hss);
        cmd.arg("-c").arg(&conf).arg("run").env("RUST_LOG", "warn");
        let mut guard = ChildGuard::spawn("hss", &mut cmd, &dir.join(format!("hss-{attempt}.log")))
            .with_context(|| format!("start {}", opts.hss.display()))?;
        match guard.wait_for_log("hss ready diameter=", Duration::from_secs(20)) {
            Ok(()) => return Ok((guard, port)),
            Err(_) if attempt < 3 && guard.log().contains("in use") => continue,
            Err(e) => anyhow::bail!("hss did not start: {e}\n{}", guard.log_tail(20)),
        }
    }
    anyhow::bail!("hss: no free port after 3 attempts")
}

/// A load connection and its Origin-Host.
#[derive(Clone)]
struct Client {
    peer: PeerHandle,
    host: Arc<str>,
}

fn request(c: &Client, code: u32, i: u32) -> Message {
    let host: &str = &c.host;
    Message::request(app::CX, code)
        .with(Avp::utf8(avp::SESSION_ID, c.peer.new_session_id()))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
        .with(Avp::utf8(avp::ORIGIN_HOST, host))
        .with(Avp::utf8(avp::ORIGIN_REALM, REALM))
        .with(Avp::utf8(avp::DESTINATION_REALM, REALM))
        .with(Avp::utf8(avp::USER_NAME, impi(i)))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, impu(i)))
}

fn mar(c: &Client, i: u32) -> Message {
    request(c, cmd::MULTIMEDIA_AUTH, i)
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
        .with(Avp::grouped(
            avp::SIP_AUTH_DATA_ITEM,
            [Avp::utf8(
                avp::SIP_AUTHENTICATION_SCHEME,
                "Digest-AKAv1-MD5",
            )],
        ))
        .with(Avp::utf8(avp::SERVER_NAME, SERVER_NAME))
}

fn sar(c: &Client, i: u32) -> Message {
    request(c, cmd::SERVER_ASSIGNMENT, i)
        .with(Avp::utf8(avp::SERVER_NAME, SERVER_NAME))
        .with(Avp::enumerated(avp::SERVER_ASSIGNMENT_TYPE, 1))
        .with(Avp::enumerated(avp::USER_DATA_ALREADY_AVAILABLE, 0))
}

/// The SQNs in an MAA (SQN = AUTN[0..6] ⊕ AK, AK = f5(K, RAND)).
fn sqns(a: &Message, m: &akav1::Milenage) -> Vec<u64> {
    let mut out = Vec::new();
    for item in a.find_all(avp::SIP_AUTH_DATA_ITEM) {
        let Ok(g) = item.as_grouped() else { continue };
        let Some(au) = g.find(avp::SIP_AUTHENTICATE).map(|a| a.as_octets()) else {
            continue;
        };
        if au.len() < 22 {
            continue;
        }
        let mut rand = [0u8; 16];
        rand.copy_from_slice(&au[..16]);
        let ak = m.f2345(&rand).ak;
        let mut b = [0u8; 6];
        for (j, x) in b.iter_mut().enumerate() {
            *x = au[16 + j] ^ ak[j];
        }
        out.push(akav1::Sqn::from_bytes(&b).value());
    }
    out
}

#[derive(Default)]
struct Tally {
    maa: BTreeMap<u32, u64>,
    saa: BTreeMap<u32, u64>,
    timeouts: u64,
    errors: u64,
    times: Vec<Duration>,
    completed: u64,
    last_answer: Option<Instant>,
}

impl Tally {
    fn failed(&mut self, e: &RequestError) {
        match e {
            RequestError::TimedOut => self.timeouts += 1,
            _ => self.errors += 1,
        }
    }
}

/// One registration: MAR, then (on 2001) SAR REGISTRATION.
async fn register(
    c: Client,
    i: u32,
    tally: Arc<Mutex<Tally>>,
    seen: Arc<Mutex<HashSet<(u32, u64)>>>,
    dups: Arc<std::sync::atomic::AtomicU64>,
    m: Arc<akav1::Milenage>,
) {
    let t0 = Instant::now();
    let maa = c.peer.request(mar(&c, i)).await;
    let code = match &maa {
        Ok(a) => a.result().map(|r| r.code()).unwrap_or(0),
        Err(e) => {
            tally.lock().unwrap_or_else(|p| p.into_inner()).failed(e);
            return;
        }
    };
    if let Ok(a) = &maa {
        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
        for q in sqns(a, &m) {
            if !s.insert((i, q)) {
                dups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    {
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        *t.maa.entry(code).or_default() += 1;
        if code != diameter::result::SUCCESS {
            t.last_answer = Some(Instant::now());
            return;
        }
    }
    let saa = c.peer.request(sar(&c, i)).await;
    let now = Instant::now();
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    t.last_answer = Some(t.last_answer.map_or(now, |l| l.max(now)));
    match saa {
        Ok(a) => {
            let code = a.result().map(|r| r.code()).unwrap_or(0);
            *t.saa.entry(code).or_default() += 1;
            if code == diameter::result::SUCCESS {
                t.completed += 1;
                t.times.push(now - t0);
            }
        }
        Err(e) => t.failed(&e),
    }
}

/// One rate step on connected clients.
async fn step(
    clients: &[Client],
    opts: &CxOptions,
    rate: u32,
    pid: u32,
    next_sub: &mut u32,
    seen: &Arc<Mutex<HashSet<(u32, u64)>>>,
    dups: &Arc<std::sync::atomic::AtomicU64>,
) -> CxStep {
    let total = (u64::from(rate) * u64::from(opts.seconds)).min(u64::from(opts.max_registrations));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let m = Arc::new(akav1::Milenage::new(&K, &OPC));
    let cpu0 = crate::bench::cpu_seconds(&[pid]);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut started = 0u64;
    // Launch what is due every millisecond: a fixed offered rate, independent of answers.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let hard_stop = start + Duration::from_secs(u64::from(opts.seconds) * 3 + 10);
    while started < total && Instant::now() < hard_stop {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * f64::from(rate)) as u64).min(total);
        while started < due {
            let c = clients[(started % clients.len() as u64) as usize].clone();
            let i = *next_sub % opts.subscribers;
            *next_sub = next_sub.wrapping_add(1);
            tasks.spawn(register(
                c,
                i,
                tally.clone(),
                seen.clone(),
                dups.clone(),
                m.clone(),
            ));
            started += 1;
        }
    }
    // Every request has the client's 5 s timeout; wait a bounded time for the stragglers.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let cpu1 = crate::bench::cpu_seconds(&[pid]);
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    t.times.sort_unstable();
    let wall = t.last_answer.map_or(start.elapsed(), |l| l - start);
    CxStep {
        rate,
        started,
        completed: t.completed,
        wall,
        maa: t.maa,
        saa: t.saa,
        timeouts: t.timeouts,
        errors: t.errors,
        p50: crate::bench::percentile(&t.times, 0.50),
        p99: crate::bench::percentile(&t.times, 0.99),
        hss_cpu: cpu1 - cpu0,
        duplicate_sqns: dups.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Provisions, starts the HSS and runs every rate step on it.
pub fn cx_run(opts: &CxOptions) -> anyhow::Result<Vec<CxStep>> {
    anyhow::ensure!(opts.subscribers > 0, "need at least one subscriber");
    anyhow::ensure!(opts.connections > 0, "need at least one connection");
    let dir = tempfile::tempdir().context("temporary directory")?;
    let db = dir.path().join("hss.db");
    provision(opts, dir.path(), &db)?;
    let (guard, port) = start(opts, dir.path(), &db)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let steps = rt.block_on(async {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut clients = Vec::new();
        for n in 0..opts.connections {
            let host = client_host(n);
            let peer = PeerHandle::connect(addr, PeerConfig::cx(host.clone(), REALM))
                .await
                .context("Diameter connection to the HSS")?;
            clients.push(Client {
                peer,
                host: host.into(),
            });
        }
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let dups = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut next_sub = 0u32;
        let mut steps = Vec::new();
        for &rate in &opts.rates {
            steps.push(
                step(
                    &clients,
                    opts,
                    rate,
                    guard.pid(),
                    &mut next_sub,
                    &seen,
                    &dups,
                )
                .await,
            );
        }
        for c in &clients {
            c.peer.disconnect().await;
        }
        anyhow::Ok(steps)
    })?;
    drop(guard);
    Ok(steps)
}

fn codes(m: &BTreeMap<u32, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(c, n)| format!("{c}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The figures as a table.
pub fn cx_report(opts: &CxOptions, steps: &[CxStep]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Cx load (MAR + SAR REGISTRATION per registration) on {} ({} subscribers, durability {}, {} connection(s), {} s per step)",
        opts.hss.display(),
        opts.subscribers,
        opts.durability,
        opts.connections,
        opts.seconds
    );
    let _ = writeln!(
        s,
        "{:>7} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>6} {:>6} {:>6}  MAA / SAA result codes",
        "offered",
        "started",
        "done",
        "reg/s",
        "p50 ms",
        "p99 ms",
        "HSS µs/reg",
        "3004",
        "t/o",
        "dupSQN"
    );
    for st in steps {
        let _ = writeln!(
            s,
            "{:>7} {:>8} {:>8} {:>9.0} {:>9.2} {:>9.2} {:>10.1} {:>6} {:>6} {:>6}  {} / {}",
            st.rate,
            st.started,
            st.completed,
            st.throughput(),
            st.p50.as_secs_f64() * 1e3,
            st.p99.as_secs_f64() * 1e3,
            st.cpu_us_per_registration(),
            st.answers(diameter::result::TOO_BUSY),
            st.timeouts,
            st.duplicate_sqns,
            codes(&st.maa),
            codes(&st.saa),
        );
    }
    s
}
