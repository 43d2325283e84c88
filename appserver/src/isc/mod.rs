//! The ISC service: the application server as a stateful proxy on the terminating INVITE
//! (TS 24.229 §5.7.4 "AS acting as a SIP proxy", RFC 3261 §16).
//!
//! ```text
//!  S-CSCF ── INVITE, Route: <AS;lr>, <S;lr;isc=T>, P-Served-User: …;sescase=term ──▶ AS
//!                                          observer.offer() ─┬─ Block: 603 Decline
//!                                                            └─ Ring: INVITE ──▶ S-CSCF
//!  responses relayed back; 2xx/487/CANCEL/BYE become Progress reports
//!  third-party REGISTER (TS 24.229 §5.4.1.7) ──▶ 200, remembered for late call state
//! ```
//!
//! - Terminating or originating is told by the `P-Served-User` the S-CSCF adds (RFC 5502,
//!   TS 24.229 §5.4.3.3): `sescase=orig` is proxied on untouched and unobserved; an INVITE
//!   without the header counts as terminating, since an iFC toward this AS is normally
//!   written for the terminating case and an S-CSCF that does not send the header (older
//!   releases) would otherwise make the service silently do nothing.
//! - Requests other than a terminating initial INVITE (MESSAGE, OPTIONS routed past us,
//!   SUBSCRIBE, in-dialog requests) are proxied along their Route untouched and
//!   unobserved. OPTIONS whose Request-URI is this AS is our keepalive: answered 200.
//! - `record_route` (default true): our Record-Route keeps us in the dialog so the BYE
//!   passes us and the call's end (and talk time) is reported. Without it we leave the
//!   path after the final response and report `Answered` then `Ended` at once.
//! - Requests this AS originates (late-registration notices, the SIP MESSAGE sink) go to
//!   the S-CSCF with `Route: <sip:scscf;lr>`; the S-CSCF must list this AS in `[isc]
//!   application_servers` to accept them. When they come back to us through the callee's
//!   own terminating iFC, our Via with a branch we made marks them: proxied, unobserved.

mod core;
mod shell;

pub use self::core::{CoreConfig, IscCore, Stats};
pub use self::shell::{start, Originator, OriginatorError, Running, StartError};

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `[isc]`: the ISC proxy service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IscConfig {
    /// Where SIP is received (UDP and TCP). Default `127.0.0.1:5070`: the port iFCs
    /// conventionally give an AS next to an S-CSCF on 5060/6060.
    pub listen: SocketAddr,
    /// The IP written into Via, Record-Route and Contact when `listen` is a wildcard.
    /// Default none: the listen address.
    pub advertise: Option<IpAddr>,
    /// The S-CSCF: its address is trusted (P-Asserted-Identity believed, third-party
    /// REGISTERs accepted), and requests this AS originates go to it. Default none:
    /// nothing is originated (late notices and the MESSAGE sink stay silent, logged).
    pub scscf: Option<SocketAddr>,
    /// Further trusted addresses (other S-CSCFs of the home network). Default empty.
    pub trusted: Vec<IpAddr>,
    /// Record-Route terminating INVITEs so the BYE passes us (the call monitor's
    /// DISCONNECT and talk time need it). Default true; false leaves the path after the
    /// final response and reports `Ended` right after `Answered`.
    pub record_route: bool,
    /// Seconds an answered, record-routed call is remembered without a BYE; then it is
    /// reported `Ended` and forgotten. Default 14400 (4 h): longer than any lab call, and
    /// a lost BYE must not keep state forever.
    pub dialog_max_age: u64,
    /// The From and P-Asserted-Identity of requests this AS originates. Default none:
    /// `sip:callerid@<our address>`.
    pub identity: Option<String>,
}

impl Default for IscConfig {
    fn default() -> Self {
        IscConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5070)),
            advertise: None,
            scscf: None,
            trusted: Vec::new(),
            record_route: true,
            dialog_max_age: 14400,
            identity: None,
        }
    }
}

impl IscConfig {
    /// The core's settings once the socket is bound to `bound` (the port a `:0` listen
    /// got), with the late-registration settings.
    pub fn core(&self, bound: SocketAddr, late: &crate::late::LateConfig) -> CoreConfig {
        let ip = self.advertise.unwrap_or(bound.ip());
        let address = SocketAddr::new(ip, bound.port());
        let identity = self.identity.clone().unwrap_or_else(|| {
            format!(
                "sip:callerid@{}:{}",
                sip::uri::ip_host(address.ip()),
                address.port()
            )
        });
        CoreConfig {
            address,
            scscf: self.scscf,
            trusted: self.trusted.clone(),
            record_route: self.record_route,
            dialog_max_age: Duration::from_secs(self.dialog_max_age),
            identity,
            late: late.clone(),
        }
    }
}

/// The `[isc]` section as the example configuration documents it.
pub const EXAMPLE: &str = r#"# The ISC service: the S-CSCF sends terminating INVITEs here by an iFC
# (ServerName sip:<listen>), and third-party REGISTERs for late call state.
[isc]
listen = "127.0.0.1:5070"
# IP for Via/Record-Route/Contact when listen is a wildcard (default: listen's).
# advertise = "192.0.2.10"
# The S-CSCF: trusted, and where requests we originate go. List this AS's address in
# the S-CSCF's [isc] application_servers so it accepts them.
# scscf = "127.0.0.1:6060"
# Other trusted S-CSCF addresses.
trusted = []
# Stay in the dialog so the BYE is seen (call end, talk time).
record_route = true
# Seconds an answered call is remembered without a BYE.
dialog_max_age = 14400
# From / P-Asserted-Identity of our own requests (default sip:callerid@<address>).
# identity = "sip:callerid@ims.mnc001.mcc001.3gppnetwork.org"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_and_defaults_match() {
        #[derive(Deserialize)]
        struct File {
            isc: IscConfig,
            late: crate::late::LateConfig,
        }
        let f: File = toml::from_str(&format!("{EXAMPLE}\n{}", crate::late::EXAMPLE)).unwrap();
        assert_eq!(f.isc, IscConfig::default());
        assert_eq!(f.late, crate::late::LateConfig::default());
        assert!(toml::from_str::<IscConfig>("bogus = 1").is_err());
    }

    #[test]
    fn core_config_uses_the_bound_port_and_a_default_identity() {
        let c = IscConfig {
            listen: "0.0.0.0:0".parse().unwrap(),
            advertise: Some("127.0.0.9".parse().unwrap()),
            ..IscConfig::default()
        };
        let core = c.core("0.0.0.0:5999".parse().unwrap(), &Default::default());
        assert_eq!(core.address, "127.0.0.9:5999".parse().unwrap());
        assert_eq!(core.identity, "sip:callerid@127.0.0.9:5999");
    }
}

#[cfg(test)]
mod tests_core;
