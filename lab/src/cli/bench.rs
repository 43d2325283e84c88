//! `imslab bench`: load tools that print figures.

use anyhow::Context;
use clap::{Args, Subcommand};
use secagree::IpsecMode;
use xfrm::BackendKind;

/// Benchmarks against an in-process network on loopback (bounded in count).
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Full AKA registrations per second through the P-CSCF (MAR + SAR to the HSS), IPsec
    /// off and (as root) userspace ESP side by side, with p50/p99 registration times.
    Register {
        /// UEs registering at once (each on its own loopback address).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=5000))]
        ues: u32,
        /// Also measure with IPsec: auto, kernel, userspace or none.
        #[arg(long, default_value = "auto")]
        ipsec: String,
    },
}

/// Run a benchmark; the figures are returned for printing.
pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    match &args.command {
        BenchCommand::Register { ues, ipsec } => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() == 0 };
            let mode = match ipsec.as_str() {
                "none" | "off" => None,
                "auto" if !root => {
                    eprintln!(
                        "not root: measuring without IPsec only (userspace ESP needs raw sockets)"
                    );
                    None
                }
                other => Some(IpsecMode::Backend(
                    other
                        .parse::<BackendKind>()
                        .map_err(|e| anyhow::anyhow!("--ipsec: {e}"))?,
                )),
            };
            rt.block_on(crate::bench::register(*ues as usize, mode))
        }
    }
}
