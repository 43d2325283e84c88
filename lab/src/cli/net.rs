//! `imslab net`: the lab network (HSS + P-CSCF, [`crate::net::LabNet`]) as a long-running
//! process, so UEs in other processes — or other network namespaces, as the kernel IPsec
//! backend needs — can register against it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::IpsecChoice;
use crate::net::{subscriber, LabNet, NetOptions, Ports, DOMAIN};

/// The lab network (HSS + P-CSCF) as a server, and its subscribers.
#[derive(Debug, Args)]
pub struct NetArgs {
    #[command(subcommand)]
    command: NetCommand,
}

#[derive(Debug, Subcommand)]
enum NetCommand {
    /// Run HSS + P-CSCF (collapsed mode) until SIGTERM or SIGINT.
    ///
    /// The same network `imslab demo` builds, without the UEs: an HSS (SQLite in a
    /// temporary directory, subscribers 0..N of `imslab net subscribers` provisioned, Cx
    /// Diameter on 127.0.0.1) and a P-CSCF on --sip (UDP and TCP) with the chosen IPsec
    /// backend. The generated hss.toml, pcscf.toml and the P-CSCF's esp_sa key file are in
    /// --config-dir. When everything listens, one line starting with `imslab net: ready`
    /// is printed (scripts wait for it). On SIGTERM/SIGINT the P-CSCF stops and deletes
    /// the SAs and policies it installed, then the process exits 0.
    ///
    /// With the kernel backend the UEs must live in another network namespace than the
    /// P-CSCF: both ends install the mirror-image SA set, which one namespace cannot hold
    /// twice. Needs root for IPsec.
    ///
    /// Example (P-CSCF in namespace `core` on 10.77.0.1, UE in namespace `ue`):
    ///   ip netns exec core imslab net serve --sip 10.77.0.1:5060 --ipsec kernel &
    ///   (or --sip 0.0.0.0:5060 --advertise 10.77.0.1 to listen on every address)
    ///   ip netns exec ue imslab ue register --pcscf 10.77.0.1:5060 --local-ip 10.77.0.2
    ///     --ipsec kernel $(imslab net subscribers --index 0 --ue-args) --then deregister
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Print the lab subscribers' identities and keys (what `serve` provisions).
    ///
    /// One line per subscriber: `SUB <index> imsi=… impi=… impu=… tel=… k=<hex> opc=<hex>
    /// domain=…`. With --ue-args, the `imslab ue register` arguments of one subscriber
    /// instead (--impi --impu --domain -k --opc), for shell substitution.
    #[command(verbatim_doc_comment)]
    Subscribers(SubscribersArgs),
}

/// Arguments of `imslab net serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// P-CSCF unprotected SIP address (UDP and TCP). Its IP is also where the protected
    /// ports and the P-CSCF's end of the SAs live, so give a real interface address when
    /// the UEs are elsewhere.
    #[arg(long, default_value = "127.0.0.1:5060", value_name = "IP:PORT")]
    sip: SocketAddr,
    /// The address UEs send SIP to, when --sip listens on every address (0.0.0.0 or [::]):
    /// it goes into the SAs, Path and Service-Route, where a wildcard must never appear.
    /// Defaults to the IP of --sip.
    #[arg(long, value_name = "IP")]
    advertise: Option<IpAddr>,
    /// HSS Diameter port (TCP, on 127.0.0.1; only the in-process P-CSCF uses it).
    #[arg(long, default_value_t = 3868, value_name = "PORT")]
    diameter: u16,
    /// Subscribers to provision: `imslab net subscribers` 0..N.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=10000))]
    subscribers: u16,
    /// IPsec backend of the P-CSCF: `auto` (kernel XFRM if the kernel can do ESP, else
    /// userspace ESP), `kernel`, `userspace`, or `off` (no sec-agree required, plain SIP).
    #[arg(long, value_enum, default_value_t = IpsecChoice::Auto)]
    ipsec: IpsecChoice,
    /// Where hss.toml, pcscf.toml and esp_sa are written (created if missing).
    #[arg(long, default_value = "imslab-net", value_name = "DIR")]
    config_dir: PathBuf,
    /// The P-CSCF's protected port range FIRST-LAST (two ports per SA set; a
    /// re-registration holds two sets for a moment).
    #[arg(long, default_value = "6100-6299", value_name = "FIRST-LAST", value_parser = port_range)]
    port_range: (u16, u16),
}

/// Arguments of `imslab net subscribers`.
#[derive(Debug, Args)]
pub struct SubscribersArgs {
    /// How many (0..N).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=10000))]
    count: u16,
    /// Only this subscriber (0-based).
    #[arg(long, value_name = "I")]
    index: Option<usize>,
    /// Print `imslab ue register` arguments of --index (default 0) instead of SUB lines.
    #[arg(long)]
    ue_args: bool,
}

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected FIRST-LAST"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a == 0 || b < a.saturating_add(3) {
        return Err(format!(
            "{s:?}: need 0 < FIRST and at least four ports (two SA sets)"
        ));
    }
    Ok((a, b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs `imslab net …`.
pub fn run(args: &NetArgs) -> anyhow::Result<String> {
    match &args.command {
        NetCommand::Subscribers(a) => Ok(subscribers(a)),
        NetCommand::Serve(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("tokio runtime")?;
            rt.block_on(serve(a))
        }
    }
}

fn subscribers(a: &SubscribersArgs) -> String {
    if a.ue_args {
        let s = subscriber(a.index.unwrap_or(0));
        return format!(
            "--impi {} --impu {} --domain {DOMAIN} -k {} --opc {}\n",
            s.impi,
            s.impu,
            hex(&s.k),
            hex(&s.opc)
        );
    }
    let range = match a.index {
        Some(i) => i..i + 1,
        None => 0..usize::from(a.count),
    };
    range
        .map(|i| {
            let s = subscriber(i);
            format!(
                "SUB {i} imsi={} impi={} impu={} tel={} k={} opc={} domain={DOMAIN}\n",
                s.imsi,
                s.impi,
                s.impu,
                s.tel,
                hex(&s.k),
                hex(&s.opc)
            )
        })
        .collect()
}

/// A wildcard --sip cannot be told to UEs: say so before anything starts (the P-CSCF's own
/// check would name its config key, which `serve` writes itself).
fn check_advertise(a: &ServeArgs) -> anyhow::Result<()> {
    if a.sip.ip().is_unspecified() && a.advertise.is_none() {
        anyhow::bail!(
            "--sip {} listens on every address: give --advertise IP, the address UEs send \
             to (it goes into the SAs, Path and Service-Route)",
            a.sip
        );
    }
    Ok(())
}

async fn serve(a: &ServeArgs) -> anyhow::Result<String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before anything starts, so a signal during start-up is not lost.
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    check_advertise(a)?;
    let opts = NetOptions {
        subscribers: usize::from(a.subscribers),
        mode: a.ipsec.mode(),
        config_dir: a.config_dir.clone(),
        ports: Ports {
            diameter: a.diameter,
            sip: a.sip,
        },
        port_range: a.port_range,
        min_expires: 60,
        application_server: None,
        bridge: None,
        advertise: a.advertise,
    };
    let net = LabNet::start(&opts).await?;
    println!(
        "imslab net: ready sip={} advertise={} diameter=127.0.0.1:{} ipsec={} policy={} \
         xfrm_user={} subscribers={} config={} esp_sa={}",
        net.pcscf.sip_addr,
        net.sip_advertised,
        a.diameter,
        net.pcscf.backend,
        net.policy,
        net.pcscf.xfrm_tag.selector_user(),
        a.subscribers,
        a.config_dir.display(),
        net.esp_sa.display()
    );
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let stats = net.pcscf.stats();
    let live = net.pcscf.live_sa_sets();
    // Stopping the P-CSCF deletes its SAs and policies (kernel XFRM state outlives us).
    net.pcscf.stop().await;
    Ok(format!(
        "imslab net: stopped on {why}: challenges={} registrations={} deregistrations={} \
         rejections={} dropped={} resyncs={} sa_sets_at_stop={live}\n",
        stats.challenges,
        stats.registrations,
        stats.deregistrations,
        stats.rejections,
        stats.dropped,
        stats.resyncs
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secagree::IpsecMode;
    use xfrm::BackendKind;

    fn args(v: &[&str]) -> NetArgs {
        let mut all = vec!["imslab", "net"];
        all.extend_from_slice(v);
        match crate::cli::Cli::try_parse_from(all).expect("parse").command {
            crate::cli::Command::Net(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscriber_lines_match_the_provisioned_keys() {
        let out = run(&args(&["subscribers", "--count", "3"])).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        let s1 = subscriber(1);
        assert!(lines[1].starts_with("SUB 1 "));
        assert!(lines[1].contains(&format!("k={}", hex(&s1.k))));
        assert!(lines[1].contains(&format!("opc={}", hex(&s1.opc))));
        assert!(lines[1].contains(&format!("impi={}", s1.impi)));
        let ue = run(&args(&["subscribers", "--index", "1", "--ue-args"])).unwrap();
        assert_eq!(
            ue.split_whitespace().collect::<Vec<_>>(),
            vec![
                "--impi",
                &s1.impi,
                "--impu",
                &s1.impu,
                "--domain",
                DOMAIN,
                "-k",
                &hex(&s1.k),
                "--opc",
                &hex(&s1.opc)
            ]
        );
    }

    #[test]
    fn serve_arguments() {
        let NetArgs {
            command: NetCommand::Serve(s),
        } = args(&[
            "serve",
            "--sip",
            "10.77.0.1:5060",
            "--ipsec",
            "kernel",
            "--port-range",
            "7000-7010",
        ])
        else {
            panic!("not serve")
        };
        assert_eq!(s.sip, "10.77.0.1:5060".parse().unwrap());
        assert_eq!(s.ipsec.mode(), IpsecMode::Backend(BackendKind::Kernel));
        assert_eq!(s.port_range, (7000, 7010));
        assert_eq!(s.advertise, None);
        check_advertise(&s).unwrap();
        for bad in ["7000", "7000-7001", "0-10", "x-7"] {
            assert!(port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_sip_address_needs_advertise() {
        let serve = |v: &[&str]| match args(v).command {
            NetCommand::Serve(s) => s,
            other => panic!("{other:?}"),
        };
        let e = check_advertise(&serve(&["serve", "--sip", "0.0.0.0:5060"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--advertise"), "{e}");
        let s = serve(&["serve", "--sip", "0.0.0.0:5060", "--advertise", "10.77.0.1"]);
        assert_eq!(s.advertise, Some("10.77.0.1".parse().unwrap()));
        check_advertise(&s).unwrap();
        assert!(check_advertise(&serve(&["serve", "--sip", "[::]:5060"])).is_err());
    }
}
