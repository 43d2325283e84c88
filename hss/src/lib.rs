//! `hss`: an IMS Home Subscriber Server for labs.
//!
//! - [`store`]: SQLite subscriber store with durable SQNs.
//! - [`sqn`]: group-commit SQN service for the Diameter server.
//! - [`csv`]: import of SIM card data CSVs.
//! - [`cx`]: sans-IO Cx handlers (UAR, MAR, SAR, LIR; RTR/PPR builders).
//! - [`metrics`]: Prometheus counters.

pub mod csv;
pub mod cx;
pub mod metrics;
pub mod sqn;
pub mod store;
