//! `hss`: an IMS Home Subscriber Server for labs.
//!
//! - [`store`]: SQLite subscriber store with durable SQNs.
//! - [`sqn`]: group-commit SQN service for the Diameter server.
//! - [`csv`]: import of SIM card data CSVs.
//! - [`cx`]: sans-IO Cx handlers (UAR, MAR, SAR, LIR; RTR/PPR builders).
//! - [`registration`]: registration state per implicit registration set and the SAR rules.
//! - [`metrics`]: Prometheus counters.
//! - [`config`]: the TOML configuration; [`server`]: wiring; [`rest`]: provisioning API;
//!   [`provision`]: input validation shared by the CLI and the API; [`web`]: the web page.

pub mod config;
pub mod csv;
pub mod cx;
pub mod metrics;
pub mod provision;
pub mod registration;
pub mod rest;
pub mod server;
pub mod sqn;
pub mod store;
pub mod web;
