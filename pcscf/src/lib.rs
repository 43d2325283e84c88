//! P-CSCF for IMS Lab Core, with the collapsed S-CSCF role.
//!
//! A handset's registration, end to end (TS 24.229 §5.2.2 and §5.4.1, TS 33.203):
//!
//! 1. REGISTER (unprotected) with Security-Client → we pick one offer by preference, ask the
//!    HSS for a vector (Cx MAR, Server-Name = our URI), allocate our SPIs and protected
//!    ports, install temporary SAs and answer 401 with the AKA nonce and Security-Server.
//! 2. REGISTER through the new SAs with Security-Verify and the AKAv1-MD5 response → we
//!    check Security-Verify against what we sent and the response against XRES, Cx SAR,
//!    answer 200 OK (P-Associated-URI from the User-Data, Service-Route) and promote the SAs.
//! 3. Re-registration builds a new SA set and retires the old one; deregistration and
//!    expiry send SAR and delete the SAs after a grace period.
//!
//! Proxy mode (`[scscf] mode = "proxy"`): the same sec-agree and IPsec, but REGISTERs are
//! forwarded statefully to an external S-CSCF (Kamailio); CK/IK are taken out of its 401
//! (`ck=`/`ik=`) for the SA set and stripped before the UE sees it; Path,
//! P-Visited-Network-ID and `integrity-protected` are added, Security-* and the `sec-agree`
//! option tags removed (TS 24.229 §5.2.2). No Cx in this mode. See `core::proxy`.
//!
//! Layers: [`config`] (TOML), [`cx`] (Cx requests and answers), [`core`] (sans-IO
//! registrar and proxy), [`shell`] (tokio), [`metrics`] (Prometheus). Calls and iFC routing come on top of this core.

pub mod config;
pub mod core;
pub mod cx;
pub mod metrics;
pub mod shell;

pub use config::Config;
