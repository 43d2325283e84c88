//! Load tools that print figures.
//!
//! `imslab bench register`: full AKA registrations per second through the P-CSCF, with
//! Cx MAR + SAR to the HSS (durable SQN), IPsec off and userspace ESP side by side.
//! Everything runs in this process on loopback: the network from [`crate::net`], N UEs on
//! their own loopback addresses, all starting at once. A registration is counted from the
//! UE's first REGISTER to its 200 OK (two REGISTER transactions, MAR, SAR, and with IPsec
//! the SA installs on both ends). The load is bounded by the number of UEs.
//!
//! `imslab bench calls` ([`calls_run`], [`calls_report`]): call set-ups per second through
//! the CSCFs, with third-party UAs (SIPp) and separate CSCF processes so that their CPU
//! can be read from `/proc`. Two systems, side by side in one run, on one in-process HSS:
//! our `pcscf` binary in collapsed mode, and our `pcscf` in proxy mode in front of a
//! Kamailio 5.6 S-CSCF (the test kit's configuration). Per system two SIPp UEs register
//! with AKA (unprotected, IPsec off); then per step of a rate ladder a SIPp UAS answers on
//! the callee's registered contact and a SIPp UAC places `rate × seconds` calls from the
//! caller's registered port at a fixed rate (`-r`, `-m`, `-l`, each call and the whole run
//! time-bounded). Figures per step: calls completed and failed, the rate the 200s came
//! back at, p50/p99 INVITE → 200 (microseconds logged by the scenario), and utime+stime of
//! the CSCF processes before and after → completed calls per CSCF core-second. A system
//! stops climbing at its first step with a failure.
//!
//! `imslab bench cx` ([`cx`]): the HSS alone under Cx registration load. `imslab bench media`
//! ([`media`]): concurrent RTP channels per core through media engines (rtpengine today).

pub mod cx;
pub mod media;

use crate::net::{self, LabNet, NetOptions, Ports};
use anyhow::Context;
use secagree::IpsecMode;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::sipp::{AkaUe, SippLoad, Transport};
use testkit::ChildGuard;
use ue::{IoConfig, Step};

/// One measured run.
#[derive(Debug, Clone)]
pub struct RegisterFigures {
    /// "off", "userspace" or "kernel".
    pub backend: &'static str,
    /// UEs that registered.
    pub registered: usize,
    /// UEs that failed.
    pub failed: usize,
    /// From the first REGISTER to the last 200 OK.
    pub wall: Duration,
    /// Median registration time.
    pub p50: Duration,
    /// 99th percentile registration time.
    pub p99: Duration,
}

impl RegisterFigures {
    /// Registrations per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.registered as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Register `ues` UEs at once against a fresh network with IPsec `mode`.
pub async fn register_once(ues: usize, mode: IpsecMode) -> anyhow::Result<RegisterFigures> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let lab = LabNet::start(&NetOptions {
        subscribers: ues,
        mode,
        config_dir: dir.path().to_path_buf(),
        ports: Ports::pick()?,
        port_range: (20000, 29999),
        min_expires: 60,
        application_server: None,
        bridge: None,
        advertise: None,
    })
    .await?;
    let configs = lab.ue_configs(ues, mode != IpsecMode::Off);
    let report = ue::register_many(
        IoConfig {
            mode,
            tag: ue::ue_tag(&configs),
            ..IoConfig::default()
        },
        configs,
        &[Step::Register],
    )
    .await
    .context("run the UEs")?;
    let backend = lab.pcscf.backend;
    lab.pcscf.stop().await;
    let times = report.register_times();
    Ok(RegisterFigures {
        backend: if mode == IpsecMode::Off {
            "off"
        } else {
            backend
        },
        registered: times.len(),
        failed: report.ues.len() - times.len(),
        wall: report.wall,
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
    })
}

/// Both runs, printed side by side.
pub async fn register(ues: usize, with_ipsec: Option<IpsecMode>) -> anyhow::Result<String> {
    let mut runs = vec![register_once(ues, IpsecMode::Off).await?];
    if let Some(m) = with_ipsec {
        runs.push(register_once(ues, m).await?);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "full AKA registrations (REGISTER/401/REGISTER/200 + MAR + SAR, SQLite SQN), {ues} UEs at once, domain {}",
        net::DOMAIN
    );
    let _ = writeln!(
        out,
        "{:<10} {:>10} {:>8} {:>10} {:>12} {:>10} {:>10}",
        "ipsec", "registered", "failed", "wall", "reg/s", "p50", "p99"
    );
    for r in &runs {
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>8} {:>9.1}ms {:>12.0} {:>8.1}ms {:>8.1}ms",
            r.backend,
            r.registered,
            r.failed,
            r.wall.as_secs_f64() * 1e3,
            r.rate(),
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
    if runs.len() == 2 {
        let _ = writeln!(
            out,
            "IPsec ({}) costs {:.2}x the time of no IPsec",
            runs[1].backend,
            runs[0].rate() / runs[1].rate().max(1e-9)
        );
    }
    Ok(out)
}

// ---- imslab bench calls ------------------------------------------------------------------

/// What `imslab bench calls` measures and how far it goes.
#[derive(Debug, Clone)]
pub struct CallsOptions {
    /// Offered call rates (calls/s), tried in order per system until one has failures.
    pub rates: Vec<u32>,
    /// Seconds of calls per step: a step places `rate × seconds` calls (at most
    /// `max_calls`).
    pub seconds: u32,
    /// Cap on the calls of one step.
    pub max_calls: u32,
    /// How long each call stays up between ACK and BYE.
    pub hold: Duration,
    /// Our `pcscf` binary.
    pub pcscf: PathBuf,
    /// Also measure the P-CSCF in proxy mode in front of a Kamailio S-CSCF.
    pub kamailio: bool,
    /// Kamailio's UDP worker processes (`children`).
    pub kamailio_children: u32,
}

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Our `pcscf` in collapsed mode (P-CSCF + S-CSCF in one process) with our HSS.
    Ours,
    /// Our `pcscf` in proxy mode in front of a Kamailio 5.6 S-CSCF with our HSS.
    Kamailio,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Ours => "ours",
            System::Kamailio => "kamailio",
        }
    }
}

/// One step of the rate ladder on one system.
#[derive(Debug, Clone)]
pub struct CallStep {
    /// Which system.
    pub system: System,
    /// Offered rate (calls/s).
    pub offered: u32,
    /// Calls placed.
    pub calls: u32,
    /// Calls SIPp's UAC completed (INVITE … BYE/200).
    pub ok: u64,
    /// Calls that failed on either SIPp side, or never finished.
    pub failed: u64,
    /// 200s received per second, from the first INVITE to the last 200.
    pub achieved: f64,
    /// Median INVITE → 200.
    pub p50: Duration,
    /// 99th percentile INVITE → 200.
    pub p99: Duration,
    /// CPU seconds (user + system) of the CSCF processes during the step, by process:
    /// `pcscf`, and `kamailio` (all its processes) for [`System::Kamailio`].
    pub cpu: Vec<(&'static str, f64)>,
    /// UDP datagrams the host's kernel dropped for full receive buffers during the step
    /// (`RcvbufErrors` of `/proc/net/snmp`, host-wide: other processes count too). A lost
    /// ACK or BYE fails a call without any process being at fault.
    pub udp_drops: u64,
    /// Of those, the drops at the CSCFs' own SIP sockets (`/proc/net/udp`), by process as
    /// in `cpu`: messages the CSCF did not read in time.
    pub cscf_drops: Vec<(&'static str, u64)>,
    /// The first lines of SIPp's error trace when something failed.
    pub error: Option<String>,
}

impl CallStep {
    /// CPU seconds of all CSCF processes.
    pub fn cpu_total(&self) -> f64 {
        self.cpu.iter().map(|(_, s)| s).sum()
    }

    /// Completed calls per CPU second of the CSCF processes.
    pub fn per_core_second(&self) -> f64 {
        self.ok as f64 / self.cpu_total().max(1e-9)
    }

    /// Drops at one CSCF's socket during the step, by process name.
    pub fn drops_of(&self, name: &str) -> u64 {
        self.cscf_drops
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, d)| d)
            .sum()
    }

    /// CPU seconds of one process, by name.
    pub fn cpu_of(&self, name: &str) -> f64 {
        self.cpu
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, s)| s)
            .sum()
    }
}

/// Kamailio's address: not the UEs' 127.0.0.1 (see [`Sut::start`]).
const KAMAILIO_IP: [u8; 4] = [127, 0, 0, 2];
/// Domain of the benchmark's network (SIPp's UEs and Kamailio share it).
const BENCH_DOMAIN: &str = "ims.lab";
/// TS 35.208 test set 1 K and OP: SIPp 3.6.1 takes OP, not OPc.
const BENCH_K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
const BENCH_OP: [u8; 16] = [
    0xcd, 0xc2, 0x02, 0xd5, 0x12, 0x3e, 0x20, 0xf6, 0x2b, 0x6d, 0x67, 0x6a, 0xc7, 0x2c, 0xb3, 0x18,
];
const BENCH_AMF: [u8; 2] = [0x80, 0x00];

/// Caller and callee IMSIs of each system (distinct so the two systems never share a
/// registration in the one HSS).
fn bench_imsis(system: System) -> (&'static str, &'static str) {
    match system {
        System::Ours => ("001010000000901", "001010000000902"),
        System::Kamailio => ("001010000000911", "001010000000912"),
    }
}

fn bench_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Our HSS in this process, with the four SIPp subscribers provisioned from OP, admitting
/// our collapsed P-CSCF and Kamailio.
struct BenchHss {
    diameter: SocketAddr,
    _hss: std::sync::Arc<hss::server::Hss>,
    _rt: tokio::runtime::Runtime,
}

fn start_hss(dir: &Path) -> anyhow::Result<BenchHss> {
    let db = dir.join("hss.db");
    let defaults = hss::provision::Defaults {
        domain: Some(BENCH_DOMAIN.into()),
        ..Default::default()
    };
    let mut store = hss::store::Store::open(&db, hss::store::Durability::Normal)
        .context("open the HSS store")?;
    for system in [System::Ours, System::Kamailio] {
        let (a, b) = bench_imsis(system);
        for imsi in [a, b] {
            let sub = hss::provision::NewSubscriber {
                imsi: Some(imsi.into()),
                k: bench_hex(&BENCH_K),
                op: Some(bench_hex(&BENCH_OP)),
                amf: Some(bench_hex(&BENCH_AMF)),
                ..Default::default()
            }
            .build(&defaults)
            .map_err(|e| anyhow::anyhow!("provision a SIPp subscriber: {e}"))?;
            store.add(&sub).context("store a SIPp subscriber")?;
        }
    }
    drop(store);
    let mut cfg = hss::config::Config {
        origin_host: format!("hss.{BENCH_DOMAIN}"),
        realm: BENCH_DOMAIN.into(),
        ..Default::default()
    };
    cfg.diameter.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.diameter.allowed_peers = vec![
        format!("pcscf.{BENCH_DOMAIN}").into(),
        format!("scscf.{BENCH_DOMAIN}").into(),
    ];
    cfg.store.path = db;
    cfg.store.durability = hss::store::Durability::Normal;
    cfg.ims.domain = Some(BENCH_DOMAIN.into());
    cfg.validate().context("HSS configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("tokio runtime for the HSS")?;
    let (hss, listening) = rt
        .block_on(hss::server::start(&cfg))
        .context("start the HSS")?;
    Ok(BenchHss {
        diameter: listening.diameter,
        _hss: hss,
        _rt: rt,
    })
}

/// Our `pcscf` binary, started with `toml` (a `{port}` in it is replaced by the SIP port),
/// retried on another port when the picked one was taken meanwhile.
fn start_pcscf(
    bin: &Path,
    dir: &Path,
    name: &str,
    toml: &str,
) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    for attempt in 1..=3 {
        let port = testkit::free_port();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml.replace("{port}", &port.to_string()))
            .with_context(|| format!("write {}", path.display()))?;
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("-c").arg(&path).env("RUST_LOG", "warn");
        let mut guard =
            ChildGuard::spawn(name, &mut cmd, &dir.join(format!("{name}-{attempt}.log")))
                .with_context(|| format!("start {}", bin.display()))?;
        match guard.wait_for_log("pcscf ready: sip ", Duration::from_secs(20)) {
            Ok(()) => return Ok((guard, SocketAddr::from(([127, 0, 0, 1], port)))),
            Err(_) if attempt < 3 && guard.log().contains("in use") => continue,
            Err(e) => anyhow::bail!("{name} did not start: {e}\n{}", guard.log_tail(20)),
        }
    }
    anyhow::bail!("{name}: no free port after 3 attempts")
}

/// One system: its CSCF processes and its two registered SIPp UEs.
struct Sut {
    system: System,
    pcscf: ChildGuard,
    kamailio: Option<testkit::kamailio::Kamailio>,
    sip: SocketAddr,
    caller: AkaUe,
    callee: AkaUe,
}

impl Sut {
    fn start(
        system: System,
        opts: &CallsOptions,
        hss: &BenchHss,
        dir: &Path,
    ) -> anyhow::Result<Sut> {
        let common = format!(
            "[sip]\nlisten = \"127.0.0.1:{{port}}\"\ndomain = \"{BENCH_DOMAIN}\"\n\n\
             [ipsec]\npolicy = \"off\"\n\n[registrar]\nmax_expires = 7200\n\n\
             [log]\nlevel = \"warn\"\n"
        );
        let (pcscf, sip, kamailio) = match system {
            System::Ours => {
                let scscf_port = testkit::free_port();
                let toml = format!(
                    "{common}\n[hss]\naddress = \"{}\"\norigin_host = \"pcscf.{BENCH_DOMAIN}\"\n\
                     realm = \"{BENCH_DOMAIN}\"\n\n[scscf]\naddress = \"127.0.0.1:{scscf_port}\"\n",
                    hss.diameter
                );
                let (g, sip) = start_pcscf(&opts.pcscf, dir, "pcscf-collapsed", &toml)?;
                (g, sip, None)
            }
            System::Kamailio => {
                let mut kc = testkit::kamailio::ScscfConfig::new(hss.diameter.port());
                kc.domain = BENCH_DOMAIN.into();
                kc.scscf_fqdn = format!("scscf.{BENCH_DOMAIN}");
                kc.realm = BENCH_DOMAIN.into();
                kc.hss_realm = BENCH_DOMAIN.into();
                // Warnings only: the per-request info line would cost Kamailio a write
                // per message.
                kc.debug = 1;
                kc.children = opts.kamailio_children;
                // tm holds each transaction in shared memory for 5 s after it ends: the
                // fixture's 64 MB runs out near 2,000 calls in flight ("out of mem" in
                // build_cell, 500 to the caller), which would measure the fixture, not
                // Kamailio.
                kc.shm_mb = 1024;
                // The P-CSCF tells the S-CSCF from UEs by IP address alone
                // (`is_from_upstream`): Kamailio must not share 127.0.0.1 with SIPp.
                kc.listen_ip = KAMAILIO_IP.into();
                let mut k = testkit::kamailio::Kamailio::start(kc).context("start Kamailio")?;
                k.wait_hss_open(Duration::from_secs(20))
                    .with_context(|| format!("Kamailio's Cx peer\n{}", k.log()))?;
                let toml = format!(
                    // The test kit's Kamailio serves no reg event: our P-CSCF must not
                    // SUBSCRIBE there (Kamailio would route it to the callee's SIPp).
                    "{common}\n[scscf]\nmode = \"proxy\"\naddress = \"{}\"\nsubscribe_reg_event = false\n",
                    k.sip_addr()
                );
                let (g, sip) = start_pcscf(&opts.pcscf, dir, "pcscf-proxy", &toml)?;
                (g, sip, Some(k))
            }
        };
        let ue = |imsi: &str| {
            let mut u = AkaUe::new(
                &format!("{imsi}@{BENCH_DOMAIN}"),
                &format!("sip:{imsi}@{BENCH_DOMAIN}"),
                BENCH_DOMAIN,
                BENCH_K,
                BENCH_OP,
                BENCH_AMF,
            );
            u.timeout = Duration::from_secs(10);
            u
        };
        let (a, b) = bench_imsis(system);
        let mut sut = Sut {
            system,
            pcscf,
            kamailio,
            sip,
            caller: ue(a),
            callee: ue(b),
        };
        for u in [&mut sut.caller, &mut sut.callee] {
            let (out, _) = u.register(sip, 7200).context("run SIPp")?;
            if !out.success {
                anyhow::bail!(
                    "{}: {} did not register\n{}",
                    system.label(),
                    u.impu,
                    out.describe()
                );
            }
        }
        Ok(sut)
    }

    /// CPU seconds so far of the CSCF processes, by name.
    fn cpu(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![("pcscf", cpu_seconds(&[self.pcscf.pid()]))];
        if let Some(k) = &self.kamailio {
            // Kamailio forks its workers: count every process of its group.
            let pgid = k.pid();
            v.push((
                "kamailio",
                cpu_seconds(&testkit::process::group_members(pgid)),
            ));
        }
        v
    }

    fn step(&mut self, opts: &CallsOptions, rate: u32) -> anyhow::Result<CallStep> {
        let calls = rate.saturating_mul(opts.seconds).clamp(1, opts.max_calls);
        let nominal = Duration::from_secs_f64(calls as f64 / rate.max(1) as f64);
        let timeout = nominal + opts.hold + Duration::from_secs(20);
        let callee = self.callee.impu.clone();
        let caller = self.caller.impu.clone();
        let uas = SippLoad {
            scenario: testkit::sipp::CALL_UAS_SCENARIO.to_string(),
            target: self.sip,
            local_port: self.callee.local_port,
            transport: Transport::Udp,
            calls,
            rate: None,
            max_open: None,
            timeout,
            recv_timeout: Duration::from_secs(5) + opts.hold,
        }
        .spawn()
        .context("start the SIPp UAS")?;
        // The UAS must be bound before the first INVITE reaches its port.
        std::thread::sleep(Duration::from_millis(300));
        let drops_before = udp_rcvbuf_errors();
        let cscf_before = self.socket_drops();
        let before = self.cpu();
        let uac = SippLoad {
            scenario: testkit::sipp::call_uac_scenario(&caller, &callee, opts.hold),
            target: self.sip,
            local_port: self.caller.local_port,
            transport: Transport::Udp,
            calls,
            rate: Some(rate),
            // Three seconds' worth of calls open at most: an overloaded system shows as a
            // lower achieved rate and failures, not as unbounded memory.
            max_open: Some(rate.saturating_mul(3).max(100)),
            timeout,
            recv_timeout: Duration::from_secs(5) + opts.hold,
        }
        .spawn()
        .context("start the SIPp UAC")?
        .wait()
        .context("SIPp UAC")?;
        let uas = uas.finish(Duration::from_secs(5)).context("SIPp UAS")?;
        let after = self.cpu();
        let udp_drops = udp_rcvbuf_errors().saturating_sub(drops_before);
        let cscf_drops = self
            .socket_drops()
            .into_iter()
            .zip(&cscf_before)
            .map(|((n, a), (_, b))| (n, a.saturating_sub(*b)))
            .collect();
        let cpu = after
            .iter()
            .zip(&before)
            .map(|((n, a), (_, b))| (*n, (a - b).max(0.0)))
            .collect();
        let mut times: Vec<Duration> = uac.setups.iter().map(|s| s.duration()).collect();
        times.sort();
        let achieved = match (
            uac.setups.iter().map(|s| s.invite_us).min(),
            uac.setups.iter().map(|s| s.answer_us).max(),
        ) {
            (Some(first), Some(last)) if last > first && uac.setups.len() > 1 => {
                uac.setups.len() as f64 / ((last - first) as f64 / 1e6)
            }
            _ => 0.0,
        };
        // A call that neither side counted (killed run) is a failure too.
        let failed = uac
            .failed
            .max(uas.failed)
            .max(u64::from(calls).saturating_sub(uac.successful));
        let error = (failed > 0).then(|| {
            format!(
                "UAC exit {:?}: {}\nUAS exit {:?}: {}",
                uac.exit_code,
                first_lines(&uac.errors, &uac.output),
                uas.exit_code,
                first_lines(&uas.errors, &uas.output)
            )
        });
        Ok(CallStep {
            system: self.system,
            offered: rate,
            calls,
            ok: uac.successful,
            failed,
            achieved,
            p50: percentile(&times, 0.50),
            p99: percentile(&times, 0.99),
            cpu,
            udp_drops,
            cscf_drops,
            error,
        })
    }

    /// Drops so far at the CSCFs' SIP UDP sockets, by process.
    fn socket_drops(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![("pcscf", udp_socket_drops(&[self.sip]))];
        if let Some(k) = &self.kamailio {
            v.push(("kamailio", udp_socket_drops(&[k.sip_addr()])));
        }
        v
    }

    fn stop(mut self) {
        self.pcscf.stop(Duration::from_secs(3));
        if let Some(k) = self.kamailio.take() {
            k.stop();
        }
    }
}

fn first_lines(errors: &str, output: &str) -> String {
    let src = if errors.trim().is_empty() {
        output
    } else {
        errors
    };
    src.lines().take(6).collect::<Vec<_>>().join("\n")
}

/// The host's UDP `RcvbufErrors` so far (0 when unreadable).
fn udp_rcvbuf_errors() -> u64 {
    std::fs::read_to_string("/proc/net/snmp")
        .ok()
        .and_then(|s| snmp_udp_field(&s, "RcvbufErrors"))
        .unwrap_or(0)
}

/// Datagrams dropped so far at the UDP sockets bound to `addrs` (the `drops` column of
/// `/proc/net/udp`).
fn udp_socket_drops(addrs: &[SocketAddr]) -> u64 {
    std::fs::read_to_string("/proc/net/udp")
        .map(|t| proc_net_udp_drops(&t, addrs))
        .unwrap_or(0)
}

/// Sum of the `drops` column (the last) of `/proc/net/udp` rows whose local address is one
/// of `addrs` (a wildcard-bound socket matches by port). The kernel prints an IPv4 address
/// as the hex of its in-memory (network order) word read natively, the port in host order.
fn proc_net_udp_drops(table: &str, addrs: &[SocketAddr]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (ip, port) = f.get(1)?.split_once(':')?;
            let ip = std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            let port = u16::from_str_radix(port, 16).ok()?;
            let ours = addrs.iter().any(|a| {
                a.port() == port && (a.ip() == std::net::IpAddr::V4(ip) || ip.is_unspecified())
            });
            if !ours {
                return None;
            }
            f.last()?.parse::<u64>().ok()
        })
        .sum()
}

/// One counter of the `Udp:` lines of `/proc/net/snmp` (a header line of names, then a
/// line of values).
fn snmp_udp_field(snmp: &str, name: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names = udp.next()?;
    let values = udp.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// utime + stime of `pids` in seconds (Linux `/proc/<pid>/stat`, fields 14 and 15, in
/// clock ticks). A process that is gone counts 0.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|&pid| testkit::rtpload::process_cpu_seconds(pid))
        .sum()
}

/// Runs the rate ladder on our collapsed core and (if asked) on Kamailio, alternating
/// system per step so that background load hits both alike. Each system stops at its
/// first step with a failure.
pub fn calls_run(opts: &CallsOptions) -> anyhow::Result<Vec<CallStep>> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let hss = start_hss(dir.path())?;
    let mut suts = vec![Sut::start(System::Ours, opts, &hss, dir.path())?];
    if opts.kamailio {
        suts.push(Sut::start(System::Kamailio, opts, &hss, dir.path())?);
    }
    let mut steps = Vec::new();
    let mut done = vec![false; suts.len()];
    for &rate in &opts.rates {
        for (i, sut) in suts.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            let step = sut.step(opts, rate)?;
            eprintln!(
                "bench calls: {:<8} {:>5}/s offered, {:>6} ok, {} failed, {:.0}/s achieved",
                sut.system.label(),
                rate,
                step.ok,
                step.failed,
                step.achieved
            );
            done[i] = step.failed > 0;
            steps.push(step);
        }
        if done.iter().all(|d| *d) {
            break;
        }
    }
    for sut in suts {
        sut.stop();
    }
    Ok(steps)
}

/// The best step of `system`: the highest achieved rate with 0 failures.
pub fn best_step(steps: &[CallStep], system: System) -> Option<&CallStep> {
    steps
        .iter()
        .filter(|s| s.system == system && s.failed == 0)
        .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
}

/// The ladder and the side-by-side summary, as printed by `imslab bench calls`.
pub fn calls_report(opts: &CallsOptions, steps: &[CallStep]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "call set-ups through the CSCFs: SIPp UAC → P-CSCF → S-CSCF → P-CSCF → SIPp UAS, UDP, \
         IPsec off; INVITE/100/180/200/ACK, hold {} ms, BYE/200; {} s per step (≤ {} calls)",
        opts.hold.as_millis(),
        opts.seconds,
        opts.max_calls
    );
    let _ = writeln!(
        out,
        "ours = pcscf collapsed (P+S in one process); kamailio = pcscf proxy + Kamailio 5.6 S-CSCF \
         ({} UDP workers); HSS ours in both",
        opts.kamailio_children
    );
    let _ = writeln!(
        out,
        "{:<9} {:>8} {:>7} {:>7} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>12} {:>14}",
        "system",
        "offered",
        "calls",
        "ok",
        "failed",
        "achieved/s",
        "p50",
        "p99",
        "cpu P",
        "cpu S",
        "calls/core-s",
        "drops P/S/host"
    );
    for s in steps {
        let (p, k) = match s.system {
            System::Ours => (s.cpu_of("pcscf"), 0.0),
            System::Kamailio => (s.cpu_of("pcscf"), s.cpu_of("kamailio")),
        };
        let _ = writeln!(
            out,
            "{:<9} {:>8} {:>7} {:>7} {:>7} {:>10.0} {:>6.2}ms {:>6.2}ms {:>7.2}s {:>7.2}s {:>12.0} {:>14}",
            s.system.label(),
            s.offered,
            s.calls,
            s.ok,
            s.failed,
            s.achieved,
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            p,
            k,
            s.per_core_second(),
            format!(
                "{}/{}/{}",
                s.drops_of("pcscf"),
                s.drops_of("kamailio"),
                s.udp_drops
            )
        );
        if let Some(e) = &s.error {
            for l in e.lines().take(8) {
                let _ = writeln!(out, "          | {l}");
            }
        }
    }
    let _ = writeln!(
        out,
        "(cpu P = pcscf process; cpu S = Kamailio's processes, for ours the S-CSCF is inside cpu P; \
         calls/core-s = completed calls / (cpu P + cpu S); drops P/S/host = UDP receive-buffer drops at the pcscf socket / Kamailio's / on the whole host)"
    );
    let ours = best_step(steps, System::Ours);
    let kam = best_step(steps, System::Kamailio);
    let _ = writeln!(out, "best step with 0 failures:");
    for (name, s) in [("ours", ours), ("kamailio", kam)] {
        match s {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "  {name:<9} {:>6.0} set-ups/s (offered {}), p50 {:.2} ms, p99 {:.2} ms, {:.0} set-ups per CSCF core-second",
                    s.achieved,
                    s.offered,
                    s.p50.as_secs_f64() * 1e3,
                    s.p99.as_secs_f64() * 1e3,
                    s.per_core_second()
                );
            }
            None if name == "kamailio" && !opts.kamailio => {
                let _ = writeln!(out, "  {name:<9} not measured");
            }
            None => {
                let _ = writeln!(out, "  {name:<9} no step without failures");
            }
        }
    }
    let ratio_line = |out: &mut String, what: &str, o: &CallStep, k: &CallStep| {
        let _ = writeln!(
            out,
            "ratio ours/kamailio {what}: set-ups/s {:.2}x; set-ups per CSCF core-second {:.0}/{:.0} = {:.2}x \
             (against Kamailio's processes alone, its P-CSCF not counted: {:.2}x)",
            o.achieved / k.achieved.max(1e-9),
            o.per_core_second(),
            k.per_core_second(),
            o.per_core_second() / k.per_core_second().max(1e-9),
            o.per_core_second() / (k.ok as f64 / k.cpu_of("kamailio").max(1e-9)).max(1e-9)
        );
    };
    if let (Some(o), Some(k)) = (ours, kam) {
        ratio_line(&mut out, "at each one's best step", o, k);
    }
    // Efficiency at one load: the highest offered rate both passed without failure (a
    // saturated system spends its CPU differently from one with headroom).
    let same = steps
        .iter()
        .filter(|o| o.system == System::Ours && o.failed == 0)
        .filter_map(|o| {
            steps
                .iter()
                .find(|k| k.system == System::Kamailio && k.failed == 0 && k.offered == o.offered)
                .map(|k| (o, k))
        })
        .max_by_key(|(o, _)| o.offered);
    if let Some((o, k)) = same {
        ratio_line(
            &mut out,
            &format!("at {} calls/s offered to both", o.offered),
            o,
            k,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::rtpload::proc_stat_ticks;

    #[test]
    fn cpu_ticks_from_proc_stat() {
        // A command name with spaces and a parenthesis must not shift the fields.
        let line = "4242 (kam ail)o) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 \
                    1 0 100 1000 10 18446744073709551615";
        assert_eq!(proc_stat_ticks(line), Some(1234 + 567));
        assert_eq!(proc_stat_ticks("4242 (x) S 1 2"), None);
        assert_eq!(proc_stat_ticks("garbage"), None);
        assert_eq!(
            cpu_seconds(&[u32::MAX]),
            0.0,
            "a missing process counts nothing"
        );
    }

    #[test]
    fn udp_drops_from_proc_net_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 100 2 7 90 5 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    UdpLite: 0 0 0 0 9 0\n";
        assert_eq!(snmp_udp_field(snmp, "RcvbufErrors"), Some(5));
        assert_eq!(snmp_udp_field(snmp, "InErrors"), Some(7));
        assert_eq!(snmp_udp_field(snmp, "Nope"), None);
        assert_eq!(snmp_udp_field("Udp: A B\n", "A"), None);
    }

    #[test]
    fn socket_drops_from_proc_net_udp() {
        // 127.0.0.1:5060 (drops 3), 127.0.0.2:5060 (drops 4), 0.0.0.0:6000 (drops 5).
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let lo2 = u32::from_ne_bytes([127, 0, 0, 2]);
        let table = format!(
            "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1: {lo:08X}:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0000000000000000 3\n\
             2: {lo2:08X}:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0000000000000000 4\n\
             3: 00000000:1770 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0000000000000000 5\n"
        );
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(proc_net_udp_drops(&table, &[a("127.0.0.1:5060")]), 3);
        assert_eq!(
            proc_net_udp_drops(&table, &[a("127.0.0.1:5060"), a("127.0.0.2:5060")]),
            7
        );
        assert_eq!(proc_net_udp_drops(&table, &[a("127.0.0.1:6000")]), 5);
        assert_eq!(proc_net_udp_drops(&table, &[a("127.0.0.1:5061")]), 0);
    }

    #[test]
    fn best_step_has_no_failures() {
        let step = |system, offered, achieved, failed| CallStep {
            system,
            offered,
            calls: 10,
            ok: 10 - failed,
            failed,
            achieved,
            p50: Duration::from_millis(1),
            p99: Duration::from_millis(2),
            cpu: vec![("pcscf", 0.5), ("kamailio", 1.5)],
            udp_drops: 0,
            cscf_drops: Vec::new(),
            error: None,
        };
        let steps = vec![
            step(System::Ours, 100, 99.0, 0),
            step(System::Ours, 200, 190.0, 0),
            step(System::Ours, 400, 300.0, 2),
            step(System::Kamailio, 100, 98.0, 0),
        ];
        assert_eq!(
            best_step(&steps, System::Ours).map(|s| s.offered),
            Some(200)
        );
        assert_eq!(
            best_step(&steps, System::Kamailio).map(|s| s.offered),
            Some(100)
        );
        assert_eq!(steps[0].cpu_total(), 2.0);
        assert_eq!(steps[0].per_core_second(), 5.0);
        let report = calls_report(
            &CallsOptions {
                rates: vec![100, 200, 400],
                seconds: 1,
                max_calls: 10,
                hold: Duration::ZERO,
                pcscf: PathBuf::from("pcscf"),
                kamailio: true,
                kamailio_children: 2,
            },
            &steps,
        );
        assert!(
            report.contains("ratio ours/kamailio at each one's best step: set-ups/s 1.94x"),
            "{report}"
        );
        assert!(
            report.contains("at 100 calls/s offered to both"),
            "{report}"
        );
    }
}
