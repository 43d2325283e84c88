//! `imslab demo`: HSS + P-CSCF + simulated UEs on loopback; see [`crate::demo`].

use super::IpsecChoice;
use crate::demo::{run as run_demo, DemoOptions};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// Run the all-in-one demo.
///
/// Starts an HSS (SQLite in a temporary directory, one subscriber per UE) and a P-CSCF on
/// loopback inside this process, then N simulated UEs (127.0.0.2, 127.0.0.3, …) register
/// with AKAv1-MD5 and IPsec, re-register and deregister. Prints the message ladder with
/// timings, writes demo.pcap, esp_sa (Wireshark's ESP keys) and the generated hss.toml and
/// pcscf.toml into --out, and exits non-zero if any step failed.
///
/// IPsec: the kernel's XFRM where the kernel can do ESP, userspace ESP (raw sockets) when
/// run as root, otherwise off with a loud warning.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of simulated UEs (1..=50).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=50))]
    ues: u16,
    /// Directory for demo.pcap, esp_sa and the generated configs.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
    /// IPsec backend for the P-CSCF and the UEs; `auto` when not root: IPsec off, with a
    /// warning.
    #[arg(long, value_enum, default_value_t = IpsecChoice::Auto)]
    ipsec: IpsecChoice,
}

/// Run it; progress is printed as it happens.
pub fn run(args: &DemoArgs) -> anyhow::Result<String> {
    // `auto` is the demo's own choice: off when not root (see `crate::demo::run`)
    let ipsec = match args.ipsec {
        IpsecChoice::Auto => None,
        choice => Some(choice.mode()),
    };
    let opts = DemoOptions {
        ues: usize::from(args.ues),
        out: args.out.clone(),
        ipsec,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = rt.block_on(run_demo(&opts, |line| println!("{line}")))?;
    if report.ok {
        Ok(String::new())
    } else {
        anyhow::bail!("the demo failed (see the results above)")
    }
}
