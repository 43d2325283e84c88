//! `imslab bench`: load tools that print figures.

use anyhow::Context;
use clap::{Args, Subcommand};

use super::IpsecChoice;

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
        /// Also measure with IPsec: `auto` (kernel XFRM if the kernel can do ESP, else
        /// userspace ESP; skipped when not root), `kernel`, `userspace`, or `off` (`none`):
        /// IPsec off only.
        #[arg(long, value_enum, default_value_t = IpsecChoice::Auto)]
        ipsec: IpsecChoice,
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
            let mode = match ipsec {
                IpsecChoice::Off => None,
                IpsecChoice::Auto if !root => {
                    eprintln!(
                        "not root: measuring without IPsec only (userspace ESP needs raw sockets)"
                    );
                    None
                }
                other => Some(other.mode()),
            };
            rt.block_on(crate::bench::register(*ues as usize, mode))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn ipsec(v: &str) -> Result<IpsecChoice, clap::Error> {
        let cli = crate::cli::Cli::try_parse_from(["imslab", "bench", "register", "--ipsec", v])?;
        match cli.command {
            crate::cli::Command::Bench(BenchArgs {
                command: BenchCommand::Register { ipsec, .. },
            }) => Ok(ipsec),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ipsec_is_the_shared_choice() {
        assert_eq!(ipsec("userspace").unwrap(), IpsecChoice::Userspace);
        assert_eq!(ipsec("off").unwrap(), IpsecChoice::Off);
        assert_eq!(ipsec("none").unwrap(), IpsecChoice::Off);
        assert!(ipsec("esp").is_err());
    }
}
