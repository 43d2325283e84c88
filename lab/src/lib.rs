//! `imslab`: the lab side of IMS Lab Core.
//!
//! - [`demo`] (`imslab demo`): HSS + P-CSCF + simulated UEs on loopback, the README's first
//!   command;
//! - `imslab ue` ([`cli::ue`]): the IMS UE simulator of the `ue` crate on the command line;
//! - `imslab aka`: AKA debugging ([`cli::aka`]);
//! - [`capture`]: the pcap writer the demo uses.
//!
//! The network-namespace lab and the load tools grow here as further modules, each a
//! subcommand; `main.rs` only parses arguments and dispatches.

pub mod bench;
pub mod capture;
pub mod cli;
pub mod demo;
pub mod hexarg;
pub mod net;
pub mod netns;
pub mod up;
pub mod verify;
