//! # `scscf`: the S-CSCF role of IMS Lab Core
//!
//! A sans-IO core in the project's quinn-proto shape ([`Scscf`]): the shell (or the
//! collapsed P-CSCF node that embeds it) feeds what arrives — SIP messages
//! ([`Scscf::handle_message`], [`Scscf::handle_inbound`]), Cx answers
//! ([`Scscf::handle_cx_answer`]) and timer expiries ([`Scscf::handle_timeout`]) — with the
//! current time, and drains [`Scscf::poll_output`] and [`Scscf::poll_timeout`].
//!
//! Hosts: the `pcscf` binary in collapsed mode wires the core in memory beside its P-CSCF;
//! the `scscf` binary runs it on its own ([`shell`], [`config`], [`metrics`]) behind
//! P-CSCFs in proxy mode. Both reach the HSS through [`cxclient`].
//!
//! What it does today (TS 24.229 §5.4.1, TS 29.229, RFC 3327, RFC 3608):
//!
//! - **Registrar.** A REGISTER without valid credentials gets a vector from the HSS (Cx MAR)
//!   and a 401 whose `WWW-Authenticate` carries `ck=` and `ik=` for the P-CSCF, exactly as
//!   an external S-CSCF (Kamailio) hands them over; the P-CSCF builds the UE's SAs from them
//!   and strips them. The answer is checked against XRES; Cx SAR assigns us as the user's
//!   S-CSCF and brings the subscription (User-Data), which is kept per registration
//!   ([`Scscf::subscription`]) for the routing work that follows. The 200 OK lists every
//!   binding, the implicit registration set in P-Associated-URI (barred identities left
//!   out), our Service-Route and the Path it was given.
//! - **Resynchronisation.** An `auts` goes to the HSS as RAND ‖ AUTS (MAR), and the fresh
//!   vector is challenged like any other.
//! - **Deregistration** by the UE (`Expires: 0`, accepted without a new challenge when the
//!   P-CSCF says the request came through the UE's SA: `integrity-protected="yes"`,
//!   TS 24.229 §5.4.1.4) and by expiry, each with its SAR.
//!
//! - **Service routing over ISC** ([`isc`], TS 24.229 §5.4.3.2/§5.4.3.3, TS 29.228
//!   Annex B): the served user's iFCs (originating, terminating registered, terminating
//!   unregistered with the profile from SAR UNREGISTERED_USER, originating unregistered
//!   for an AS acting on a user's behalf) send initial requests through application
//!   servers in priority order, with a one-use marker in our Route entry and
//!   DefaultHandling for an AS that fails or stays silent ([`Isc::as_timeout`]).
//! - **Third-party REGISTER** ([`thirdparty`], TS 24.229 §5.4.1.7) to every AS whose
//!   REGISTER iFC matches, on registration, re-registration and every kind of
//!   deregistration.
//!
//! Challenges are bound to exactly the state they were made for: several may be pending for
//! one IMPI (a stranger's REGISTER naming someone else's IMPI adds one; it never replaces
//! the one the real UE is answering), each has its own timer, and a timer removes only the
//! challenge it was set for.

#![warn(missing_docs)]

pub mod config;
pub mod core;
pub mod cx;
pub mod cxclient;
pub mod isc;
pub mod metrics;
pub mod regevent;
pub mod registrar;
pub mod session;
pub mod shell;
pub mod thirdparty;

pub use crate::core::{Config, Event, Output, Routing, Scscf, Stats};
pub use cx::{CxError, CxIdentity};
pub use isc::Isc;
