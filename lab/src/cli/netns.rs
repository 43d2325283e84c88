//! `imslab netns`: the lab as separate hosts in network namespaces; see [`crate::netns`].

use super::IpsecChoice;
use crate::netns::{self, DemoOptions, Lab, Plan, BRIDGE, SIP_PORT};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The lab as separate hosts: network namespaces NAME-core, NAME-ue1, NAME-ue2 and
/// NAME-as, joined by veth pairs to a bridge in NAME-core. Needs root and `ip` (iproute2).
#[derive(Debug, Args)]
pub struct NetnsArgs {
    #[command(subcommand)]
    command: NetnsCommand,
}

#[derive(Debug, Subcommand)]
enum NetnsCommand {
    /// Build the namespaces and leave them in place (remove them with `down`).
    ///
    /// Then run the core and UEs inside them with `ip netns exec`, e.g.:
    ///   ip netns exec imslab-core imslab net serve --sip 10.77.0.1:5060 --ipsec auto &
    ///   ip netns exec imslab-ue1 imslab ue register --pcscf 10.77.0.1:5060
    ///     --local-ip 10.77.0.11 $(imslab net subscribers --index 0 --ue-args)
    #[command(verbatim_doc_comment)]
    Up(LabArgs),
    /// End the processes inside the lab's namespaces and delete the namespaces.
    Down(NameArgs),
    /// Build the lab for one run: the HSS and the P-CSCF in NAME-core, each UE in its
    /// own namespace; they register over IPsec, UE1 calls UE2, UE2 sends a MESSAGE, both
    /// deregister. The capture on the bridge and its keys go to --out. Everything is
    /// removed afterwards, also after a failure or Ctrl-C. Exits non-zero on any failure.
    Demo(DemoArgs),
}

/// `--name`.
#[derive(Debug, Args)]
struct NameArgs {
    /// Namespace prefix of the lab.
    #[arg(long, default_value = "imslab")]
    name: String,
}

/// `up`'s arguments.
#[derive(Debug, Args)]
struct LabArgs {
    #[command(flatten)]
    name: NameArgs,
    /// The lab's /24, as its first three octets.
    #[arg(long, default_value = "10.77.0", value_parser = subnet)]
    subnet: [u8; 3],
    /// UE namespaces (1..=8).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    ues: u16,
}

impl LabArgs {
    fn plan(&self) -> Plan {
        Plan {
            name: self.name.name.clone(),
            subnet: self.subnet,
            ues: usize::from(self.ues),
        }
    }
}

/// `demo`'s arguments.
#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    lab: LabArgs,
    /// Directory for netns.pcap, esp_sa and the generated configs.
    #[arg(long, default_value = "netns-out")]
    out: PathBuf,
    /// IPsec of the P-CSCF and the UEs: `auto` (kernel XFRM where the kernel can do ESP,
    /// else userspace ESP), `kernel`, `userspace` or `off`.
    #[arg(long, value_enum, default_value_t = IpsecChoice::Auto)]
    ipsec: IpsecChoice,
}

fn subnet(s: &str) -> Result<[u8; 3], String> {
    let parts: Vec<&str> = s.trim_end_matches(".0/24").split('.').collect();
    match parts.as_slice() {
        [a, b, c] => {
            let p = |x: &str| x.parse::<u8>().map_err(|e| format!("{s:?}: {e}"));
            Ok([p(a)?, p(b)?, p(c)?])
        }
        _ => Err(format!("{s:?}: expected three octets, e.g. 10.77.0")),
    }
}

/// Runs `imslab netns …`.
pub fn run(args: &NetnsArgs) -> anyhow::Result<String> {
    match &args.command {
        NetnsCommand::Up(a) => {
            let plan = a.plan();
            let lab = Lab::up(&plan)?;
            let names = lab.persist();
            Ok(format!(
                "imslab netns: up: {}\n  core {} (bridge {BRIDGE}), UEs {}, as {}\n  \
                 P-CSCF address for the UEs: {}:{SIP_PORT}\n  remove with: imslab netns down \
                 --name {}\n",
                names.join(", "),
                plan.core_ip(),
                (0..plan.ues)
                    .map(|i| plan.ue_ip(i).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                plan.as_ip(),
                plan.core_ip(),
                plan.name
            ))
        }
        NetnsCommand::Down(a) => {
            let gone = netns::down(&a.name)?;
            if gone.is_empty() {
                Ok(format!("imslab netns: no lab named {:?}\n", a.name))
            } else {
                Ok(format!("imslab netns: removed {}\n", gone.join(", ")))
            }
        }
        NetnsCommand::Demo(a) => {
            let opts = DemoOptions {
                plan: a.lab.plan(),
                mode: a.ipsec.mode(),
                out: a.out.clone(),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("tokio runtime")?;
            let report = rt.block_on(async {
                tokio::select! {
                    r = netns::demo(&opts, |line| println!("{line}")) => r,
                    // Dropping the demo's future drops the lab: its namespaces go.
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
                }
            })?;
            if report.ok {
                Ok("imslab netns: demo passed\n".into())
            } else {
                anyhow::bail!("the netns demo failed (see above)")
            }
        }
    }
}
