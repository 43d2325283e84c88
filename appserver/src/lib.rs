//! # `appserver`: the IMS Lab Core application server
//!
//! Reached from the S-CSCF over ISC by an initial filter criterion (TS 23.218, TS 24.229
//! §5.7), or fed from the wire for VoIP boxes whose signalling we do not control.
//!
//! Everything that learns of a call — the ISC service, a pcap file, a live interface,
//! NFQUEUE — hands an [`event::Offer`] to one [`event::CallObserver`], the caller-ID
//! pipeline. It names the caller (P-Asserted-Identity or From, Privacy, E.164, phonebook),
//! decides ring or block, writes the call log, and publishes [`event::CallEvent`]s that the
//! notification sinks turn into their wire formats.

#![warn(missing_docs)]

pub mod agent;
pub mod b2bua;
pub mod blocklist;
pub mod calllog;
pub mod cli;
pub mod config;
pub mod event;
pub mod identity;
pub mod isc;
pub mod late;
pub mod media_api;
pub mod mediaplane;
pub mod mgcp;
pub mod numbers;
pub mod passive;
pub mod phonebook;
pub mod pipeline;
pub mod rest;
pub mod reverse;
pub mod server;
pub mod sinks;
