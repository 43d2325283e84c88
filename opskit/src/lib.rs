//! What every IMS Lab Core binary shares for the people who run it.
//!
//! - [`cli`]: exit code and error line, runtime, shutdown signal: what every `main.rs` needs.
//! - [`log`]: one log convention — `RUST_LOG` overrides the config file's `[log] level`,
//!   logs on stderr, colour only on a terminal.
//! - [`metrics`]: the Prometheus text exposition writer (format 0.0.4), labelled counter and
//!   histogram families; [`http`] serves it on `/metrics`.
//! - [`config`]: `config example|check` helpers: the subcommand, secret redaction of the
//!   effective configuration, and the test that a commented example covers every key.
//! - [`net`]: the `[sip] listen` / `advertise` rule: a wildcard listener is never advertised.
//! - [`HOME_DOMAIN`]: the lab's default home network domain, the same in every binary.
//!
//! Nothing here knows SIP or Diameter: protocol crates do not depend on it, binaries do.

pub mod cli;
pub mod config;
pub mod csv;
pub mod http;
pub mod log;
pub mod metrics;
pub mod net;

/// The default IMS home network domain of every binary: the one TS 23.003 §13.2 derives
/// from the test PLMN MCC 001 / MNC 01 (`ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org`), which is
/// what test ISIMs (IMSI 00101…) compute when their home domain file is empty. A P-CSCF
/// and an HSS started without configuration therefore agree on the realm with each other
/// and with such cards.
pub const HOME_DOMAIN: &str = "ims.mnc001.mcc001.3gppnetwork.org";
