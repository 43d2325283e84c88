//! Command-line front ends, one module per `imslab` subcommand.

pub mod aka;
pub mod ue;

use clap::{Parser, Subcommand};

/// imslab: IMS Lab Core's lab tool.
///
/// AKA debugging today; the UE simulator and the all-in-one demo build on it.
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
}

/// Run a parsed command line; what it returns is printed on stdout.
pub fn run(cli: &Cli) -> anyhow::Result<String> {
    match &cli.command {
        Command::Aka(a) => aka::run(a),
        Command::Ue(a) => ue::run(a),
    }
}
