//! Command-line front ends, one module per `imslab` subcommand.

pub mod aka;
pub mod bench;
pub mod demo;
pub mod net;
pub mod ue;

use clap::{Parser, Subcommand, ValueEnum};
use secagree::IpsecMode;
use xfrm::BackendKind;

/// imslab: IMS Lab Core's lab tool.
///
/// The all-in-one demo, the UE simulator and AKA debugging.
#[derive(Debug, Parser)]
#[command(name = "imslab", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
}

/// `--ipsec` values of `imslab ue`, `imslab demo` and `imslab net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IpsecChoice {
    /// kernel XFRM if the kernel can do ESP, else userspace ESP
    Auto,
    /// kernel XFRM (fails where the kernel lacks ESP)
    Kernel,
    /// userspace ESP over raw sockets (root)
    Userspace,
    /// no IPsec
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
    }
}
