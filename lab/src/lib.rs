//! `imslab`: the lab side of IMS Lab Core.
//!
//! Today: the AKA debugging CLI (`imslab aka`). The UE simulator, the all-in-one demo, the
//! network-namespace lab and the load tools grow here as separate modules, each a
//! subcommand; `main.rs` only parses arguments and dispatches.

pub mod cli;
pub mod hexarg;
pub mod ue;
