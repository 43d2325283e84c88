//! `imslab netns`: the lab as separate hosts, in network namespaces of its own.
//!
//! ```text
//!   <name>-ue1  eth0 10.77.0.11 ─┐
//!   <name>-ue2  eth0 10.77.0.12 ─┼─ v-* ── bridge imsbr0 10.77.0.1  <name>-core (HSS + P-CSCF)
//!   <name>-as   eth0 10.77.0.20 ─┘
//! ```
//!
//! Each UE talks to the P-CSCF over a real interface, the way a handset does through an
//! eNB and an EPC: its SAs are between two different hosts, so the kernel backend works
//! wherever the kernel has ESP (it cannot hold both mirror-image SA sets in one
//! namespace). Elsewhere the userspace backend runs inside the namespaces. The `as`
//! namespace is where application servers go.
//!
//! - [`Lab::up`] builds the namespaces, the bridge and the veth pairs. The handle deletes
//!   them on drop unless [`Lab::persist`]ed. A failure part way removes what was built.
//! - [`down`] removes a persisted lab, ending the processes still inside it first.
//! - [`demo`] builds a transient lab and runs the HSS and P-CSCF on a thread inside
//!   `core`, each UE on a thread inside its own namespace (sockets belong to the
//!   namespace of the thread that opens them), and captures on the bridge. The UEs
//!   register, call, send a MESSAGE and deregister. It tears everything down afterwards,
//!   also after a failure or Ctrl-C.

use anyhow::{anyhow, Context};
use secagree::IpsecMode;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use xfrm::netns::NetNs;

use crate::capture::{Capture, Filter};
use crate::net::{self, LabNet, NetOptions, Ports};

/// The bridge in the `core` namespace.
pub const BRIDGE: &str = "imsbr0";
/// The P-CSCF's SIP port in the lab.
pub const SIP_PORT: u16 = 5060;
/// The HSS's Diameter port, on the core namespace's loopback.
pub const DIAMETER_PORT: u16 = 3868;
/// The P-CSCF's protected port range.
pub const PORT_RANGE: (u16, u16) = (31100, 31999);

/// Where the lab goes: its name (namespace prefix) and its /24.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Namespace prefix: `<name>-core`, `<name>-ue1`, `<name>-ue2`, `<name>-as`.
    pub name: String,
    /// The first three octets of the lab's /24 (default 10.77.0).
    pub subnet: [u8; 3],
    /// UEs (namespaces `ue1`..`ueN`).
    pub ues: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            name: "imslab".into(),
            subnet: [10, 77, 0],
            ues: 2,
        }
    }
}

impl Plan {
    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host)
    }

    /// The core's address (the bridge).
    pub fn core_ip(&self) -> Ipv4Addr {
        self.ip(1)
    }

    /// UE `i`'s address (0-based): .11, .12, …
    pub fn ue_ip(&self, i: usize) -> Ipv4Addr {
        self.ip(11u8.saturating_add(u8::try_from(i).unwrap_or(u8::MAX)))
    }

    /// The application servers' address.
    pub fn as_ip(&self) -> Ipv4Addr {
        self.ip(20)
    }

    /// The namespace names, core first.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![format!("{}-core", self.name)];
        v.extend((1..=self.ues).map(|i| format!("{}-ue{i}", self.name)));
        v.push(format!("{}-as", self.name));
        v
    }

    fn check(&self) -> anyhow::Result<()> {
        // Interface-name limits and `ip netns` names: keep it short and plain.
        if self.name.is_empty()
            || self.name.len() > 20
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            anyhow::bail!("lab name {:?}: 1-20 letters, digits, '-' or '_'", self.name);
        }
        if !(1..=8).contains(&self.ues) {
            anyhow::bail!("{} UEs: the lab has 1 to 8", self.ues);
        }
        Ok(())
    }
}

/// A built lab. Dropping it deletes its namespaces (and so their interfaces), unless it
/// was [`Lab::persist`]ed.
pub struct Lab {
    /// The plan it was built from.
    pub plan: Plan,
    /// The core namespace (HSS, P-CSCF, bridge).
    pub core: NetNs,
    /// One namespace per UE.
    pub ues: Vec<NetNs>,
    /// The application servers' namespace.
    pub app: NetNs,
}

impl Lab {
    /// Builds the namespaces, the bridge in `core` and a veth pair from each other
    /// namespace into it.
    pub fn up(plan: &Plan) -> anyhow::Result<Lab> {
        plan.check()?;
        let names = plan.namespaces();
        if let Some(n) = names
            .iter()
            .find(|n| Path::new(&format!("/run/netns/{n}")).exists())
        {
            anyhow::bail!(
                "namespace {n} exists already: `imslab netns down --name {}` first",
                plan.name
            );
        }
        // Each handle deletes its namespace on drop, so a failure below undoes the rest.
        let core = NetNs::create_named(&names[0]).context("create the core namespace")?;
        let ues = names[1..=plan.ues]
            .iter()
            .map(|n| NetNs::create_named(n).with_context(|| format!("create namespace {n}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let app = NetNs::create_named(&names[plan.ues + 1]).context("create the as namespace")?;
        core.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        core.ip(&[
            "addr",
            "add",
            &format!("{}/24", plan.core_ip()),
            "dev",
            BRIDGE,
        ])?;
        core.ip(&["link", "set", BRIDGE, "up"])?;
        let mut hosts: Vec<(&NetNs, String, Ipv4Addr)> = ues
            .iter()
            .enumerate()
            .map(|(i, ns)| (ns, format!("v-ue{}", i + 1), plan.ue_ip(i)))
            .collect();
        hosts.push((&app, "v-as".into(), plan.as_ip()));
        for (ns, port, ip) in hosts {
            core.ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])?;
            core.ip(&["link", "set", &port, "master", BRIDGE, "up"])?;
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
        }
        Ok(Lab {
            plan: plan.clone(),
            core,
            ues,
            app,
        })
    }

    /// Leaves the namespaces in place (for `imslab netns up`); [`down`] removes them.
    pub fn persist(self) -> Vec<String> {
        let mut v = vec![self.core.persist()];
        v.extend(self.ues.into_iter().map(NetNs::persist));
        v.push(self.app.persist());
        v
    }
}

/// Removes the lab `name`: ends the processes inside its namespaces (SIGTERM, then
/// SIGKILL after 2 s), then deletes the namespaces. Returns what it deleted.
pub fn down(name: &str) -> anyhow::Result<Vec<String>> {
    let listing = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("ip netns list")?;
    let ours: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.strip_prefix(name)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|r| r == "core" || r == "as" || is_ue_suffix(r))
        })
        .map(str::to_string)
        .collect();
    for signal in ["-TERM", "-KILL"] {
        let mut any = false;
        for n in &ours {
            let pids = Command::new("ip").args(["netns", "pids", n]).output();
            for pid in pids.iter().flat_map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .into_owned()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            }) {
                // Never ourselves: `down` may run from inside a lab namespace.
                if pid.trim() == std::process::id().to_string() {
                    continue;
                }
                any = true;
                let _ = Command::new("kill").args([signal, pid.trim()]).output();
            }
        }
        if !any {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    for n in &ours {
        let out = Command::new("ip")
            .args(["netns", "del", n])
            .output()
            .with_context(|| format!("ip netns del {n}"))?;
        if !out.status.success() {
            anyhow::bail!(
                "ip netns del {n}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(ours)
}

fn is_ue_suffix(s: &str) -> bool {
    s.strip_prefix("ue")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// What [`demo`] needs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The lab's names and addresses.
    pub plan: Plan,
    /// IPsec of the P-CSCF and the UEs.
    pub mode: IpsecMode,
    /// Where configurations, keys and the capture go.
    pub out: PathBuf,
}

/// The outcome of [`demo`].
#[derive(Debug)]
pub struct DemoReport {
    /// Everything printed, in order.
    pub text: String,
    /// Whether every step passed.
    pub ok: bool,
    /// The capture on the bridge, if one was written.
    pub pcap: Option<PathBuf>,
    /// The esp_sa keys of the capture.
    pub esp_sa: PathBuf,
}

/// Tells a thread running inside a namespace to finish, and waits for it (bounded).
struct InNs<T> {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<T>>>,
}

impl<T> InNs<T> {
    fn finish(&mut self) -> Option<T> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let t = self.thread.take()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if t.is_finished() {
            t.join().ok().and_then(Result::ok)
        } else {
            None
        }
    }
}

impl<T> Drop for InNs<T> {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// What the core thread reports when it is ready.
struct CoreReady {
    sip: SocketAddr,
    backend: &'static str,
    esp_sa: PathBuf,
}

/// The core's counters and keys when it stops.
#[derive(Default)]
struct CoreEnd {
    registrations: u64,
    deregistrations: u64,
    sa_sets_left: usize,
    keys: String,
}

/// What a service thread reports once: ready (with what the caller needs) or why not.
type Ready<R> = std::sync::mpsc::Receiver<anyhow::Result<R>>;

/// Runs `service` on a tokio runtime of its own, on a thread inside `ns` (so every socket
/// and worker thread it makes belongs to `ns`). It reports on its ready channel once, then
/// runs until the [`InNs`] tells it to stop; what it returns is what [`InNs::finish`]
/// gives back.
fn in_ns<R, T, F, Fut>(
    ns: &NetNs,
    what: &'static str,
    service: F,
) -> anyhow::Result<(InNs<T>, Ready<R>)>
where
    R: Send + 'static,
    T: Send + Default + 'static,
    F: FnOnce(std::sync::mpsc::Sender<anyhow::Result<R>>, oneshot::Receiver<()>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = T>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = ns.spawn(move || match runtime() {
        Ok(rt) => rt.block_on(service(ready_tx, stop_rx)),
        Err(e) => {
            let _ = ready_tx.send(Err(anyhow!("tokio runtime for {what}: {e}")));
            T::default()
        }
    })?;
    Ok((
        InNs {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
        ready_rx,
    ))
}

fn start_core(
    lab: &Lab,
    mode: IpsecMode,
    out: &Path,
) -> anyhow::Result<(InNs<CoreEnd>, Ready<CoreReady>)> {
    let opts = NetOptions {
        subscribers: lab.plan.ues,
        mode,
        config_dir: out.to_path_buf(),
        ports: Ports {
            diameter: DIAMETER_PORT,
            sip: SocketAddr::new(IpAddr::V4(lab.plan.core_ip()), SIP_PORT),
        },
        advertise: None,
        port_range: PORT_RANGE,
        min_expires: 60,
        application_server: None,
        bridge: None,
    };
    in_ns(&lab.core, "the core", move |ready, stop| async move {
        let lab = match LabNet::start(&opts).await {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e.context("start HSS and P-CSCF in the core")));
                return CoreEnd::default();
            }
        };
        let _ = ready.send(Ok(CoreReady {
            sip: lab.sip_advertised,
            backend: lab.pcscf.backend,
            esp_sa: lab.esp_sa.clone(),
        }));
        let _ = stop.await;
        let stats = lab.pcscf.stats();
        let end = CoreEnd {
            registrations: stats.registrations,
            deregistrations: stats.deregistrations,
            sa_sets_left: lab.pcscf.live_sa_sets(),
            keys: lab.pcscf.esp_sa_history(),
        };
        lab.pcscf.stop().await;
        end
    })
}

fn start_ue(
    ns: &NetNs,
    cfg: ue::UeConfig,
    mode: IpsecMode,
) -> anyhow::Result<(InNs<()>, Ready<ue::UeHandle>)> {
    in_ns(ns, "a UE", move |ready, stop| async move {
        let io = ue::IoConfig {
            mode,
            ..ue::IoConfig::default()
        };
        let host = match ue::UeHost::start(io).await {
            Ok(h) => h,
            Err(e) => {
                let _ = ready.send(Err(anyhow!("UE host: {e}")));
                return;
            }
        };
        let _ = ready.send(host.add(cfg).await.map_err(|e| anyhow!("UE: {e}")));
        let _ = stop.await;
        host.shutdown().await;
    })
}

/// Waits (bounded) for a thread's ready report.
fn ready<T>(rx: &std::sync::mpsc::Receiver<anyhow::Result<T>>, what: &str) -> anyhow::Result<T> {
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow!("{what} did not start within 30 s"))?
}

/// Runs the namespace demo (see the module docs); `progress` sees each line as it
/// happens.
pub async fn demo(o: &DemoOptions, mut progress: impl FnMut(&str)) -> anyhow::Result<DemoReport> {
    let mut text = String::new();
    let mut ok = true;
    let t0 = Instant::now();
    let mut say = |s: String| {
        let line = format!("[{:>7.1} ms] {s}", t0.elapsed().as_secs_f64() * 1000.0);
        progress(&line);
        text.push_str(&line);
        text.push('\n');
    };
    std::fs::create_dir_all(&o.out).with_context(|| format!("create {}", o.out.display()))?;
    let lab = Lab::up(&o.plan)?;
    say(format!(
        "namespaces {} up: bridge {BRIDGE} {}/24 in {}",
        o.plan.namespaces().join(", "),
        o.plan.core_ip(),
        lab.core.name()
    ));
    let pcap = o.out.join("netns.pcap");
    let ue_ips: Vec<IpAddr> = (0..o.plan.ues)
        .map(|i| IpAddr::V4(o.plan.ue_ip(i)))
        .collect();
    let filter = Filter {
        esp_hosts: ue_ips.clone(),
        ports: vec![SIP_PORT],
        port_ranges: vec![PORT_RANGE, (5102, 5103)],
    };
    let capture = lab
        .core
        .run(|| Capture::start_on(BRIDGE, &pcap, filter))
        .map_err(anyhow::Error::from)
        .and_then(|r| r.map_err(anyhow::Error::from));
    let capture = match capture {
        Ok(c) => Some(c),
        Err(e) => {
            say(format!("WARNING: no capture on {BRIDGE}: {e}"));
            None
        }
    };
    let (mut core, core_rx) = start_core(&lab, o.mode, &o.out)?;
    let core_ready = ready(&core_rx, "the core")?;
    say(format!(
        "{}: HSS (Cx on 127.0.0.1:{DIAMETER_PORT}) and P-CSCF on {} (IPsec {})",
        lab.core.name(),
        core_ready.sip,
        core_ready.backend
    ));
    let sec_agree = o.mode != IpsecMode::Off;
    let mut ue_threads = Vec::new();
    let mut handles = Vec::new();
    for (i, cfg) in net::ue_configs(core_ready.sip, o.plan.ues, sec_agree)
        .into_iter()
        .enumerate()
    {
        let mut cfg = cfg;
        cfg.local_ip = ue_ips[i];
        let (t, rx) = start_ue(&lab.ues[i], cfg, o.mode)?;
        ue_threads.push(t);
        handles.push(ready(&rx, "a UE")?);
    }
    let step = Duration::from_secs(20);
    let bounded = |what: &'static str| move |_| anyhow!("{what}: no result within 20 s");

    for (i, h) in handles.iter().enumerate() {
        match tokio::time::timeout(step, h.register())
            .await
            .map_err(bounded("registration"))
            .and_then(|r| r.map_err(anyhow::Error::from))
        {
            Ok(r) => say(format!(
                "UE{} {} in {}: registered in {:.1} ms{}",
                i + 1,
                ue_ips[i],
                lab.ues[i].name(),
                r.took.as_secs_f64() * 1000.0,
                if r.protected { ", over IPsec" } else { "" }
            )),
            Err(e) => {
                ok = false;
                say(format!("FAILED: UE{} registration: {e}", i + 1));
            }
        }
    }
    if ok && handles.len() >= 2 {
        let callee = handles[1].name().to_string();
        match tokio::time::timeout(
            step,
            ue::fleet::call(&handles[0], &callee, Duration::from_millis(500)),
        )
        .await
        .map_err(bounded("call"))
        {
            Ok(Ok(setup)) => say(format!(
                "UE1 → UE2 call answered in {:.1} ms, held, hung up",
                setup.as_secs_f64() * 1000.0
            )),
            Ok(Err(e)) => {
                ok = false;
                say(format!("FAILED: UE1 → UE2 call: {e}"));
            }
            Err(e) => {
                ok = false;
                say(format!("FAILED: {e}"));
            }
        }
        let caller = handles[0].name().to_string();
        match tokio::time::timeout(step, handles[1].send_message(&caller, "hello from ue2"))
            .await
            .map_err(bounded("MESSAGE"))
        {
            Ok(Ok(code)) if (200..300).contains(&code) => {
                say(format!("UE2 → UE1 MESSAGE delivered ({code})"))
            }
            Ok(Ok(code)) => {
                ok = false;
                say(format!("FAILED: UE2 → UE1 MESSAGE answered {code}"));
            }
            Ok(Err(e)) => {
                ok = false;
                say(format!("FAILED: UE2 → UE1 MESSAGE: {e}"));
            }
            Err(e) => {
                ok = false;
                say(format!("FAILED: {e}"));
            }
        }
    }
    for (i, h) in handles.iter().enumerate() {
        if let Err(e) = tokio::time::timeout(step, h.deregister())
            .await
            .map_err(bounded("deregistration"))
            .and_then(|r| r.map_err(anyhow::Error::from))
        {
            ok = false;
            say(format!("FAILED: UE{} deregistration: {e}", i + 1));
        }
    }
    // The retired SAs go after their grace period; then stop everyone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(handles);
    for t in &mut ue_threads {
        t.finish();
    }
    match core.finish() {
        Some(end) => {
            std::fs::write(&core_ready.esp_sa, &end.keys).context("write esp_sa")?;
            let want = o.plan.ues as u64;
            let good =
                end.registrations >= want && end.deregistrations >= want && end.sa_sets_left == 0;
            ok &= good;
            say(format!(
                "{} P-CSCF: {} registrations, {} deregistrations, {} SA sets left",
                if good { "[ok]" } else { "[FAIL]" },
                end.registrations,
                end.deregistrations,
                end.sa_sets_left
            ));
        }
        None => {
            ok = false;
            say("FAILED: the core did not stop".into());
        }
    }
    let pcap = match capture {
        Some(c) => match c.stop() {
            Ok(n) => {
                say(format!(
                    "wrote {} ({n} packets on {BRIDGE})",
                    pcap.display()
                ));
                Some(pcap)
            }
            Err(e) => {
                say(format!("WARNING: capture: {e}"));
                None
            }
        },
        None => None,
    };
    drop(lab);
    say(format!(
        "namespaces {} removed",
        o.plan.namespaces().join(", ")
    ));
    // The capture must show the flow too: `imslab verify` where tshark is installed.
    if let Some(p) = &pcap {
        let opts = crate::verify::Options {
            keys: Some(core_ready.esp_sa.clone()),
            expect: {
                use crate::verify::Expect;
                let mut e = vec![Expect::Register];
                if o.plan.ues >= 2 {
                    e.extend([Expect::Call, Expect::Message]);
                }
                if o.mode != IpsecMode::Off {
                    e.push(Expect::Ipsec);
                }
                e
            },
            ..crate::verify::Options::default()
        };
        match crate::verify::run(p, &opts) {
            Ok(mut v) => {
                v.ladder.clear();
                ok &= v.passed();
                for l in v.to_string().lines() {
                    say(format!("verify: {l}"));
                }
            }
            Err(crate::verify::VerifyError::NoTshark) => {
                say("WARNING: tshark not installed: the capture was not verified".into())
            }
            Err(e) => {
                ok = false;
                say(format!("FAILED: verify: {e}"));
            }
        }
    }
    Ok(DemoReport {
        text,
        ok,
        pcap,
        esp_sa: core_ready.esp_sa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names_and_addresses() {
        let p = Plan::default();
        assert_eq!(
            p.namespaces(),
            ["imslab-core", "imslab-ue1", "imslab-ue2", "imslab-as"]
        );
        assert_eq!(p.core_ip(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(p.ue_ip(1), Ipv4Addr::new(10, 77, 0, 12));
        assert_eq!(p.as_ip(), Ipv4Addr::new(10, 77, 0, 20));
        assert!(Plan {
            name: "bad name".into(),
            ..Plan::default()
        }
        .check()
        .is_err());
        assert!(Plan {
            ues: 9,
            ..Plan::default()
        }
        .check()
        .is_err());
    }

    #[test]
    fn ue_suffixes() {
        assert!(is_ue_suffix("ue1"));
        assert!(is_ue_suffix("ue12"));
        assert!(!is_ue_suffix("ue"));
        assert!(!is_ue_suffix("uex"));
    }
}
