//! P-CSCF for IMS Lab Core; by default with our S-CSCF core in the same process.
//!
//! A handset's registration, end to end (TS 24.229 §5.2.2 and §5.4.1, TS 33.203):
//!
//! 1. REGISTER (unprotected) with Security-Client → we pick one offer by preference and
//!    forward; the S-CSCF asks the HSS for a vector (Cx MAR) and challenges with CK/IK for
//!    us; we allocate our SPIs and protected ports, install temporary SAs and answer 401
//!    with the AKA nonce and Security-Server.
//! 2. REGISTER through the new SAs with Security-Verify and the AKAv1-MD5 response → we
//!    check Security-Verify against what we sent and forward with `integrity-protected=yes`;
//!    the S-CSCF checks the response against XRES, sends Cx SAR and answers 200 OK
//!    (P-Associated-URI from the User-Data, Service-Route); we promote the SAs.
//! 3. Re-registration builds a new SA set and retires the old one; deregistration and
//!    expiry delete the SAs after a grace period (and the S-CSCF sends its SAR).
//!
//! The P-CSCF does only the P-CSCF's share ([`core`]): sec-agree, the SAs, identity from
//! the SA; it forwards every REGISTER statefully to an S-CSCF, takes CK/IK out of its 401
//! (`ck=`/`ik=`) for the SA set and strips them before the UE sees it, and adds Path,
//! P-Visited-Network-ID and `integrity-protected`, removing Security-* and the `sec-agree`
//! option tags (TS 24.229 §5.2.2). That S-CSCF is our [`scscf`] core in this process
//! (`[scscf] mode = "collapsed"`, the default: Cx MAR/SAR, the registrar) or an external
//! one such as Kamailio (`mode = "proxy"`): one code path either way ([`node`]).
//!
//! Layers: [`config`] (TOML), [`core`] (sans-IO P-CSCF), [`node`] (the cores of this
//! process wired together), [`shell`] (tokio), [`metrics`] (Prometheus), [`rewrite`]
//! (interop rewrite rules on the wire). Calls and iFC
//! routing come on top.

pub mod config;
pub mod core;
pub mod metrics;
pub mod node;
pub mod rewrite;
pub mod shell;

pub use config::Config;
