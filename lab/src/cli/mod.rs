//! Command-line front ends, one module per `imslab` subcommand.

pub mod aka;
pub mod bench;
pub mod demo;
pub mod net;
pub mod netns;
pub mod ue;
pub mod up;
pub mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use secagree::IpsecMode;
use xfrm::BackendKind;

/// imslab: IMS Lab Core's lab tool.
///
/// The all-in-one demo, the UE simulator and AKA debugging.
#[derive(Debug, Parser)]
#[command(name = "imslab", version, about, long_about = None)]
pub struct Cli {
    /// Log filter for stderr: `warn`, `info`, `debug`, or per crate (`warn,ue=debug`).
    /// RUST_LOG, when set, overrides it (the convention of every IMS Lab Core binary).
    #[arg(
        long,
        global = true,
        default_value = DEFAULT_LOG_LEVEL,
        value_name = "FILTER",
        value_parser = log_filter
    )]
    pub log_level: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `imslab`'s log level without `--log-level` or RUST_LOG: warnings only, so that the
/// demo's and the commands' own output stays readable.
pub const DEFAULT_LOG_LEVEL: &str = "warn";

fn log_filter(s: &str) -> Result<String, String> {
    opskit::log::check_level(s)
        .map(|()| s.to_string())
        .map_err(|_| format!("{s:?} is not a log filter (e.g. warn, info, debug or warn,ue=debug)"))
}

/// imslab subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// AKA debugging: vectors, IMS nonces, AUTS/resync, digest responses (hex in, hex out).
    Aka(aka::AkaArgs),
    /// Simulated IMS UE: register with IMS AKA and IPsec, re-register, deregister.
    Ue(ue::UeArgs),
    /// All-in-one demo: HSS + P-CSCF + simulated UEs registering over IPsec on loopback.
    Demo(demo::DemoArgs),
    /// Load tools: registrations per second through P-CSCF and HSS.
    Bench(bench::BenchArgs),
    /// The lab network (HSS + P-CSCF) as a server for UEs in other processes/namespaces.
    Net(net::NetArgs),
    /// Check a capture with tshark: dissection, ESP keys and ICVs, the registration and
    /// call ladders, no cleartext SIP after the 401, every transaction answered.
    Verify(verify::VerifyArgs),
    /// The lab as separate hosts in network namespaces (ue1, ue2, core, as): up, down,
    /// or a demo run that cleans up after itself.
    Netns(netns::NetnsArgs),
    /// The core for a real lab (eNB, EPC, ISIM cards, handsets) from one lab.toml: checks,
    /// generated configs, SIM CSV import, and what to set in the EPC and on the handsets.
    Up(up::UpArgs),
}

/// `--ipsec` values of `imslab ue`, `imslab demo`, `imslab net` and `imslab bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IpsecChoice {
    /// kernel XFRM if the kernel can do ESP, else userspace ESP
    Auto,
    /// kernel XFRM (fails where the kernel lacks ESP)
    Kernel,
    /// userspace ESP over raw sockets (root)
    Userspace,
    /// no IPsec
    #[value(alias = "none")]
    Off,
}

impl IpsecChoice {
    /// The mode this choice asks for (`auto` leaves the backend to [`BackendKind::Auto`]).
    pub fn mode(self) -> IpsecMode {
        match self {
            IpsecChoice::Auto => IpsecMode::Backend(BackendKind::Auto),
            IpsecChoice::Kernel => IpsecMode::Backend(BackendKind::Kernel),
            IpsecChoice::Userspace => IpsecMode::Backend(BackendKind::Userspace),
            IpsecChoice::Off => IpsecMode::Off,
        }
    }
}

/// Run a parsed command line; what it returns is printed on stdout.
pub fn run(cli: &Cli) -> anyhow::Result<String> {
    match &cli.command {
        Command::Aka(a) => aka::run(a),
        Command::Ue(a) => ue::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Net(a) => net::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Netns(a) => netns::run(a),
        Command::Up(a) => up::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_defaults_to_warn_and_is_checked() {
        let cli = Cli::try_parse_from(["imslab", "net", "subscribers"]).unwrap();
        assert_eq!(cli.log_level, DEFAULT_LOG_LEVEL);
        let cli = Cli::try_parse_from([
            "imslab",
            "net",
            "subscribers",
            "--log-level",
            "warn,ue=debug",
        ])
        .unwrap();
        assert_eq!(cli.log_level, "warn,ue=debug");
        let e = Cli::try_parse_from(["imslab", "--log-level", "ue=loud", "net", "subscribers"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a log filter"), "{e}");
    }
}
