//! `imslab demo`: the whole core on one machine, in one command.
//!
//! An HSS (embedded SQLite in a temporary directory, N provisioned subscribers) and a
//! P-CSCF run in this process on loopback, talking Cx over real TCP; N simulated UEs, each
//! on its own loopback address, register with AKAv1-MD5 and sec-agree; UE1 calls UE2 (with
//! QoS preconditions, 100rel/PRACK and UPDATE, as a VoLTE handset does), UE2 answers, the
//! call holds ~3 s with RTP both ways (the AMR-WB test pattern, checked bit for bit at the
//! receiver; plain UDP, not inside the SAs) and UE1 hangs up; UE2 sends UE1 a MESSAGE; then every UE re-registers (new
//! SA set) and deregisters. IPsec is the kernel's where it can do ESP, userspace ESP over raw
//! sockets when we are root, and off (loudly) otherwise. The run prints a ladder with
//! timings and writes `demo.pcap` with the `esp_sa` keys that let Wireshark decrypt it.
//! The exit status is non-zero if any step failed, if either side of the call received less
//! than 80 % of the RTP packets the other sent, or if any frame arrived damaged.
//!
//! UE2's incoming calls pass the caller-ID application server (`appserver`, in this process,
//! reached by an iFC over ISC): an NCID client of it must receive UE1's number with the name
//! the demo's phonebook gives it, or the demo fails.
//!
//! Later stages (the media bridge) extend the script; the pieces stay.

use crate::capture::{Capture, Filter};
use crate::net;
use anyhow::Context;
use secagree::IpsecMode;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use ue::{IoConfig, Step};
use xfrm::BackendKind;

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of UEs (and subscribers).
    pub ues: usize,
    /// Directory for demo.pcap, esp_sa and the generated configs.
    pub out: PathBuf,
    /// IPsec: `None` = automatic (kernel, else userspace if root, else off).
    pub ipsec: Option<IpsecMode>,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The result of a demo run.
#[derive(Debug)]
pub struct DemoReport {
    /// Everything printed, in order.
    pub text: String,
    /// Whether every step passed.
    pub ok: bool,
    /// IPsec backend used by the P-CSCF.
    pub backend: &'static str,
    /// The capture, if one was written.
    pub pcap: Option<PathBuf>,
    /// The Wireshark esp_sa UAT file.
    pub esp_sa: PathBuf,
}

/// Run the demo; progress goes to `progress` as it happens.
pub async fn run(opts: &DemoOptions, mut progress: impl FnMut(&str)) -> anyhow::Result<DemoReport> {
    let mut text = String::new();
    let mut say = |s: String| {
        progress(&s);
        text.push_str(&s);
        text.push('\n');
    };
    let t0 = Instant::now();
    let root = is_root();
    let mode = match opts.ipsec {
        Some(m) => m,
        None if root => IpsecMode::Backend(BackendKind::Auto),
        None => IpsecMode::Off,
    };
    if mode == IpsecMode::Off {
        if opts.ipsec.is_some() {
            say("IPsec is off (--ipsec off): UEs register without sec-agree.".into());
        } else {
            say(
                "WARNING: IPsec is OFF: not root, so neither kernel XFRM nor userspace ESP \
                 (raw sockets) can be used. UEs register unprotected. Run as root for the real \
                 thing."
                    .into(),
            );
        }
    }
    std::fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    let ports = net::Ports::pick()?;
    let (diameter_port, sip_port) = (ports.diameter, ports.sip.port());
    let pcscf_ip = ports.sip.ip();
    // Capture before anything talks, CER included.
    let ue_ips: Vec<IpAddr> = (0..opts.ues).map(ue::loopback_ip).collect();
    let pcap = opts.out.join("demo.pcap");
    let capture = if root {
        let mut hosts = ue_ips.clone();
        hosts.push(pcscf_ip);
        match Capture::start(
            &pcap,
            Filter {
                esp_hosts: ue_ips.clone(),
                ports: vec![diameter_port, sip_port],
                // SIP (unprotected and protected ports) and the UEs' RTP and RTCP
                port_ranges: vec![
                    (31100, 31999),
                    (5060, 5060),
                    (5102, 5103),
                    (DEMO_RTP_PORT, DEMO_RTP_PORT + 1),
                ],
            },
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                say(format!("WARNING: no capture: {e}"));
                None
            }
        }
    } else {
        say("WARNING: no capture without root (raw packet socket); demo.pcap not written".into());
        None
    };

    // The caller-ID application server takes UE2's incoming calls (an iFC in the HSS).
    let talks = opts.ues >= 2;
    let as_addr = if talks {
        let port = std::net::UdpSocket::bind((pcscf_ip, 0))
            .and_then(|u| u.local_addr())
            .context("a port for the application server")?
            .port();
        Some(std::net::SocketAddr::new(pcscf_ip, port))
    } else {
        None
    };
    let lab = net::LabNet::start(&net::NetOptions {
        subscribers: opts.ues,
        mode,
        config_dir: opts.out.clone(),
        ports,
        port_range: (31100, 31999),
        min_expires: 60,
        application_server: as_addr,
        bridge: None,
        advertise: None,
    })
    .await?;
    say(format!(
        "[{:>6.1} ms] hss: {} subscribers in {} (SQLite), Cx on 127.0.0.1:{diameter_port}",
        ms(t0),
        opts.ues,
        lab.db.display()
    ));
    let pcscf = &lab.pcscf;
    let policy = lab.policy;
    let esp_sa = lab.esp_sa.clone();
    say(format!(
        "[{:>6.1} ms] pcscf: SIP on {} (UDP/TCP), IPsec {} ({}), collapsed S-CSCF role",
        ms(t0),
        pcscf.sip_addr,
        pcscf.backend,
        policy
    ));
    let callerid = match as_addr {
        Some(a) => {
            let c = CallerId::start(a, lab.scscf_addr, &opts.out).await?;
            say(format!(
                "[{:>6.1} ms] appserver: ISC on {a} (UE2's incoming calls, by iFC), NCID on {}, \
                 phonebook {}",
                ms(t0),
                c.ncid_addr,
                opts.out.join("phonebook.csv").display()
            ));
            Some(c)
        }
        None => None,
    };
    let mut ues = lab.ue_configs(opts.ues, mode != IpsecMode::Off);
    for u in &mut ues {
        u.calls.rtp_port = DEMO_RTP_PORT;
    }
    if let Some(u) = ues.first_mut() {
        u.calls.preconditions = true;
    }
    if let Some(u) = ues.get_mut(1) {
        u.calls.answer = ue::AnswerMode::Auto(Duration::from_millis(500));
    }
    for (i, u) in ues.iter().enumerate() {
        let sub = net::subscriber(i);
        say(format!(
            "             UE{} {} on {}  K={} OPc={}",
            i + 1,
            u.impu,
            u.local_ip,
            hex(&sub.k),
            hex(&sub.opc)
        ));
    }
    let io = IoConfig {
        mode,
        tag: ue::ue_tag(&ues),
        ..IoConfig::default()
    };
    let scripts = scripts(&ues);
    say(format!(
        "[{:>6.1} ms] running on {} UEs: register{}, re-register, deregister",
        ms(t0),
        opts.ues,
        if talks {
            ", UE1 calls UE2 (preconditions, RTP both ways), UE2 sends UE1 a MESSAGE"
        } else {
            ""
        }
    ));
    let report = ue::run_scripts(io, ues, scripts).await;
    // Let the P-CSCF's retired SAs pass their grace period before judging.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let stats = pcscf.stats();
    let live = pcscf.live_sa_sets();
    let backend_used = pcscf.backend;
    let keys = pcscf.esp_sa_history();
    let cid = match callerid {
        Some(c) => Some(c.finish().await),
        None => None,
    };
    lab.pcscf.stop().await;
    let packets = match capture {
        Some(c) => Some(c.stop().context("finish the capture")?),
        None => None,
    };
    std::fs::write(&esp_sa, &keys).context("write esp_sa")?;

    let report = report.context("run the UEs")?;
    say(String::new());
    say("ladder (times from the first REGISTER):".into());
    for l in report.ladder().lines() {
        say(format!("  {l}"));
    }
    say(String::new());
    let mut ok = report.all_ok();
    let mut table = String::new();
    for (i, u) in report.ues.iter().enumerate() {
        let _ = write!(
            table,
            "  UE{} {:<55} register {:>7} re-register {:>7} deregister {:>7} {}",
            i + 1,
            u.impu,
            fmt_d(u.register),
            fmt_d(u.reregister.first().copied()),
            fmt_d(u.deregister),
            if u.protected { "IPsec" } else { "no IPsec" }
        );
        if let Some(e) = &u.error {
            let _ = write!(table, "  FAILED: {e}");
        }
        table.push('\n');
    }
    say(format!("results (backend {backend_used}):"));
    say(table.trim_end().to_string());
    let mut check = |cond: bool, what: String| {
        ok &= cond;
        format!("  [{}] {what}", if cond { "ok" } else { "FAILED" })
    };
    let n = opts.ues as u64;
    let media = talks.then(|| call_media(&report));
    if let Some(m) = &media {
        say(m.table());
    }
    let lines = vec![
        check(
            stats.registrations == 2 * n,
            format!(
                "P-CSCF: {} registrations (expected {})",
                stats.registrations,
                2 * n
            ),
        ),
        check(
            stats.deregistrations == n,
            format!(
                "P-CSCF: {} deregistrations (expected {n})",
                stats.deregistrations
            ),
        ),
        check(
            stats.rejections == 0 && stats.dropped == 0 && stats.refused == 0,
            format!(
                "P-CSCF: {} rejections, {} refused requests, {} dropped packets",
                stats.rejections, stats.refused, stats.dropped
            ),
        ),
        check(
            !talks || report.ues[0].calls.len() == 1,
            match report.ues[0].calls.first() {
                Some(d) => format!(
                    "UE1 → UE2 call answered in {}, held, hung up",
                    fmt_d(Some(*d))
                ),
                None => "UE1 → UE2 call".into(),
            },
        ),
        check(
            media.as_ref().is_none_or(CallMedia::ok),
            match &media {
                Some(m) => m.verdict(),
                None => "no call, no RTP".into(),
            },
        ),
        check(
            !talks || report.ues.get(1).is_some_and(|u| u.messages.len() == 1),
            "UE2 → UE1 MESSAGE delivered (200)".into(),
        ),
        check(
            cid.as_ref().is_none_or(|l| CallerId::shows_ue1(l)),
            match &cid {
                Some(l) => match l.iter().find(|l| l.starts_with("CID:")) {
                    Some(c) => format!("appserver: caller-ID to an NCID client: {c}"),
                    None => format!("appserver: no CID line for UE1's call (got {l:?})"),
                },
                None => "no call, no caller-ID".into(),
            },
        ),
        check(
            live == 0,
            format!("P-CSCF: {live} SA sets left after deregistration"),
        ),
        check(
            report.ues.iter().all(|u| u.sa_sets_left == 0),
            "UEs: no SA sets left".into(),
        ),
        check(
            mode == IpsecMode::Off || report.ues.iter().all(|u| u.protected),
            "every registration protected by IPsec".into(),
        ),
    ];
    for l in lines {
        say(l);
    }
    let script = opts.out.join("tshark-decrypt.sh");
    let cmd = format!(
        "#!/bin/sh\n# Dissect the demo capture with ESP decrypted (keys from esp_sa).\n\
         exec tshark -r \"$(dirname \"$0\")/demo.pcap\" -d tcp.port=={diameter_port},diameter \\\n  \
         -o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE \\\n  {} \"$@\"\n",
        tshark_uat_args(&keys)
    );
    std::fs::write(&script, cmd).context("write tshark-decrypt.sh")?;
    match packets {
        Some(p) => say(format!(
            "wrote {} ({p} packets), {} (Wireshark: Preferences > Protocols > ESP > ESP SAs, \
             or copy it to ~/.config/wireshark/esp_sa) and {} (tshark with the keys)",
            pcap.display(),
            esp_sa.display(),
            script.display()
        )),
        None => say(format!("wrote {} (no capture)", esp_sa.display())),
    }
    // The capture must show the flow as well: `imslab verify`, where tshark is installed.
    if packets.is_some() {
        use crate::verify::{self, Expect};
        let mut expect = vec![Expect::Register];
        if opts.ues >= 2 {
            expect.extend([Expect::Call, Expect::Message]);
        }
        if mode != IpsecMode::Off {
            expect.push(Expect::Ipsec);
        }
        let vopts = verify::Options {
            keys: Some(esp_sa.clone()),
            diameter_ports: vec![diameter_port],
            sip_ports: vec![],
            expect,
        };
        match verify::run(&pcap, &vopts) {
            Ok(v) => {
                ok &= v.passed();
                say(String::new());
                say(format!(
                    "imslab verify {} --keys {} --diameter-port {diameter_port}:",
                    pcap.display(),
                    esp_sa.display()
                ));
                for c in &v.checks {
                    say(format!(
                        "  {} {}: {}",
                        if c.ok { "[ok]  " } else { "[FAIL]" },
                        c.name,
                        c.detail
                    ));
                }
            }
            Err(verify::VerifyError::NoTshark) => {
                say("WARNING: tshark not installed: the capture was not verified".into())
            }
            Err(e) => {
                ok = false;
                say(format!("FAILED: imslab verify: {e}"));
            }
        }
    }
    say(format!(
        "[{:>6.1} ms] demo {}",
        ms(t0),
        if ok { "passed" } else { "FAILED" }
    ));
    Ok(DemoReport {
        text,
        ok,
        backend: backend_used,
        pcap: packets.map(|_| pcap),
        esp_sa,
    })
}

/// The demo's scripts: every UE registers; UE1 calls UE2 while the others wait at the same
/// sync points; UE2 then sends UE1 a MESSAGE; everyone re-registers and deregisters.
fn scripts(ues: &[ue::UeConfig]) -> Vec<Vec<Step>> {
    if ues.len() < 2 {
        return vec![vec![Step::Register, Step::Reregister, Step::Deregister]; ues.len()];
    }
    let (ue1, ue2) = (ues[0].impu.clone(), ues[1].impu.clone());
    (0..ues.len())
        .map(|i| {
            let mut s = vec![Step::Register, Step::Sync];
            match i {
                0 => s.extend([
                    Step::Call {
                        to: ue2.clone(),
                        hold: CALL_HOLD,
                    },
                    Step::Sync,
                    Step::Sync,
                ]),
                1 => s.extend([
                    Step::Sync,
                    Step::Message {
                        to: ue1.clone(),
                        text: "hello from UE2 over IMS".into(),
                    },
                    Step::Sync,
                ]),
                _ => s.extend([Step::Sync, Step::Sync]),
            }
            s.extend([Step::Reregister, Step::Deregister]);
            s
        })
        .collect()
}

/// `-o uat:esp_sa:"..."` arguments for every record of an esp_sa file (tshark 4.0 takes
/// records inline).
pub fn tshark_uat_args(esp_sa: &str) -> String {
    esp_sa
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| format!("-o 'uat:esp_sa:{l}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long the demo call holds: ~150 RTP packets each way.
const CALL_HOLD: Duration = Duration::from_secs(3);
/// The UEs' RTP port (each UE has its own loopback address).
const DEMO_RTP_PORT: u16 = 40000;
/// The share of the peer's packets a side must receive for the demo to pass.
const MIN_RECEIVED: f64 = 0.8;

/// The RTP of the demo call, as both UEs reported it when it ended.
#[derive(Debug, Clone, Default)]
struct CallMedia {
    /// UE1's and UE2's statistics (`None`: no media report)
    stats: [Option<ue::MediaStats>; 2],
}

fn call_media(report: &ue::FleetReport) -> CallMedia {
    let mut m = CallMedia::default();
    for e in &report.events {
        if let ue::EventKind::CallMedia { stats, .. } = &e.event.kind {
            if let Some(slot) = m.stats.get_mut(e.ue) {
                *slot = Some(stats.clone());
            }
        }
    }
    m
}

impl CallMedia {
    /// (sender, receiver) pairs: UE1 → UE2, UE2 → UE1.
    fn directions(&self) -> [(usize, usize); 2] {
        [(0, 1), (1, 0)]
    }

    fn ok(&self) -> bool {
        self.directions()
            .iter()
            .all(|&(s, r)| match (&self.stats[s], &self.stats[r]) {
                (Some(tx), Some(rx)) => {
                    tx.sent > 0
                        && f64::from(rx.received) >= MIN_RECEIVED * f64::from(tx.sent)
                        && rx.frames_bad == 0
                        && rx.malformed == 0
                        && rx.frames_ok > 0
                }
                _ => false,
            })
    }

    fn table(&self) -> String {
        let mut t = String::from("RTP of the call (AMR test pattern, not audio):\n");
        for (s, r) in self.directions() {
            let _ = match (&self.stats[s], &self.stats[r]) {
                (Some(tx), Some(rx)) => writeln!(
                    t,
                    "  UE{} → UE{}: {} sent, {} received ({:.1} %), lost {}, out of order {}, \
                     jitter {:.2} ms, frames ok {} bad {}, RTCP reports {}",
                    s + 1,
                    r + 1,
                    tx.sent,
                    rx.received,
                    100.0 * f64::from(rx.received) / f64::from(tx.sent.max(1)),
                    rx.lost,
                    rx.out_of_order,
                    rx.jitter.as_secs_f64() * 1000.0,
                    rx.frames_ok,
                    rx.frames_bad,
                    rx.rtcp_received
                ),
                _ => writeln!(t, "  UE{} → UE{}: no media report", s + 1, r + 1),
            };
        }
        if let Some(c) = self.stats.iter().flatten().next() {
            let _ = write!(t, "  codec {}", c.codec);
        }
        t.trim_end().to_string()
    }

    fn verdict(&self) -> String {
        format!(
            "RTP both ways: each side received >= {:.0} % of what the other sent, every frame \
             bit-exact",
            MIN_RECEIVED * 100.0
        )
    }
}

/// The demo's caller-ID application server and one NCID client of it, reading lines.
struct CallerId {
    server: appserver::server::Running,
    ncid_addr: std::net::SocketAddr,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The phonebook name the demo gives UE1's number.
const UE1_NAME: &str = "UE1 (demo phonebook)";

impl CallerId {
    /// Starts the AS on `addr` (UE2's terminating iFC points there), its requests going to
    /// the S-CSCF core at `scscf`; writes a one-line phonebook and connects an NCID client.
    async fn start(
        addr: std::net::SocketAddr,
        scscf: Option<std::net::SocketAddr>,
        out: &std::path::Path,
    ) -> anyhow::Result<CallerId> {
        let book = out.join("phonebook.csv");
        std::fs::write(&book, format!("number,name\n{},{UE1_NAME}\n", ue1_number()))
            .context("write phonebook.csv")?;
        let mut cfg = appserver::config::Config::default();
        cfg.isc.listen = addr;
        cfg.isc.scscf = scscf;
        cfg.phonebook.file = Some(book);
        cfg.calllog.path = out.join("calls.db");
        cfg.ncid.enabled = true;
        cfg.ncid.listen = format!("{}:0", addr.ip());
        let server = appserver::server::start(&cfg)
            .await
            .context("start the application server")?;
        let ncid_addr = server
            .sink_addr("ncid")
            .context("the NCID server's address")?;
        let stream = tokio::net::TcpStream::connect(ncid_addr)
            .await
            .context("connect to the NCID server")?;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = lines.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut r = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = r.next_line().await {
                l.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Ok(CallerId {
            server,
            ncid_addr,
            lines,
        })
    }

    /// Waits (at most 3 s) for the call's end line, stops the AS, returns the NCID lines.
    async fn finish(self) -> Vec<String> {
        let read = || self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for _ in 0..30 {
            if read().iter().any(|l| l.starts_with("CIDINFO:")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let lines = read();
        self.server.stop().await;
        lines
    }

    /// A `CID:` line with UE1's number and its phonebook name.
    fn shows_ue1(lines: &[String]) -> bool {
        lines.iter().any(|l| {
            l.starts_with("CID:")
                && l.contains(&format!("*NMBR*{}*", ue1_number()))
                && l.contains(&format!("*NAME*{UE1_NAME}*"))
        })
    }
}

/// UE1's number (E.164, its tel URI without the scheme).
fn ue1_number() -> String {
    net::subscriber(0)
        .tel
        .trim_start_matches("tel:")
        .to_string()
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1000.0
}

fn fmt_d(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1}ms", d.as_secs_f64() * 1000.0),
        None => "-".into(),
    }
}
