//! `hss`: an IMS Home Subscriber Server for labs.
//!
//! - [`store`]: SQLite subscriber store with durable SQNs.
//! - [`sqn`]: group-commit SQN service for the Diameter server.
//! - [`csv`]: import of SIM card data CSVs.

pub mod csv;
pub mod sqn;
pub mod store;
