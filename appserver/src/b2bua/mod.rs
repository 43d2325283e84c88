//! The SIP side of the AMR ⇄ PCMA bridge (issue 12): a back-to-back user agent with one
//! dialog toward the IMS core and one toward a configured SIP peer (PBX, trunk, desk phone)
//! per call. Media is the plane's business ([`crate::media_api`]); this module deals only in
//! SIP and SDP.
//!
//! ```text
//!  outbound: UE ─▶ S-CSCF ─(orig iFC)─▶ [isc_listen] UAS ═══ UAC [listen] ─▶ peer
//!  inbound:  peer ─▶ [listen] UAS ═══ UAC [isc_listen] ─ Route: S-CSCF ─▶ callee (term)
//! ```
//!
//! - Outbound: an initial INVITE reaching `isc_listen` from the S-CSCF (or a `trusted`
//!   address) for a dialled number of the SIP side (`prefixes`, or the Request-URI host is
//!   the peer's) is answered here as a UAS and leaves as a new INVITE to `peer`: From is
//!   the caller's number (the tel URI of P-Asserted-Identity), To and Request-URI the
//!   dialled number at the peer. Any other INVITE is answered 404: the originating iFC must
//!   select the SIP side's numbers (its SPT on the Request-URI), as nothing here proxies.
//! - Inbound: an INVITE reaching `listen` from the peer's address leaves toward the S-CSCF
//!   as a request of a trusted AS (TS 24.229 §5.7.3: Route to the S-CSCF without the
//!   `orig` user part, so the S-CSCF gives it the callee's terminating treatment; list this
//!   AS in the S-CSCF's `[isc] application_servers`). Request-URI `tel:<number>` (or
//!   `sip:<number>@<ims_domain>;user=phone`), P-Asserted-Identity the peer's caller.
//! - SDP (RFC 3264): the leg we answer gets `sdp::answer` of its offer with the plane's
//!   codecs for that leg; the leg we offer on gets the caller's codecs the plane can take
//!   first (a callee that picks one lets the plane relay without transcoding), then the
//!   plane's codecs for that leg (PCMA on the SIP side). The plane hears of every completed
//!   offer/answer ([`crate::media_api::MediaControl::negotiated`]).
//! - Re-INVITE and UPDATE are answered on the leg they arrive on and never crossed to the
//!   other leg: the plane terminates RTP on each leg, so a new address, port, hold or codec
//!   choice of one endpoint concerns only the plane's socket on that leg (the plane hears of
//!   the new O/A). This keeps both endpoints' sessions independent and avoids re-INVITE
//!   glare between the legs.
//! - Every call ends on a timer whatever the peers do: ringing for `ring_timeout`, a 2xx
//!   not ACKed in 64·T1 (RFC 3261 §13.3.1.4), a reliable provisional not PRACKed (RFC 3262
//!   §3), a session timer not refreshed (RFC 4028 §10), `max_duration`, and the plane's
//!   media timeout, each of which ends both legs.

mod core;
mod sdp_oa;
mod shell;

pub use self::core::{B2bCore, B2bEvent, CallId, CoreConfig, Stats};
pub use self::shell::{start, Running, StartError};

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `[bridge]`: the AMR ⇄ PCMA bridge's SIP side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Run the bridge (and its media plane, `[media]`) in `appserver run`. Default false.
    pub enabled: bool,
    /// Where the S-CSCF sends the originating INVITEs of the SIP side's numbers (UDP and
    /// TCP); the iFC's ServerName. Default `127.0.0.1:5072`, beside `[isc] listen`.
    pub isc_listen: SocketAddr,
    /// Where the SIP peer's requests are received (UDP and TCP). Default
    /// `127.0.0.1:5090`.
    pub listen: SocketAddr,
    /// The IP written into Via and Contact when a listen address is a wildcard. Default
    /// none: the listen address.
    pub advertise: Option<IpAddr>,
    /// The S-CSCF: trusted on the ISC side, and where inbound calls go. Default none:
    /// inbound calls are refused (503).
    pub scscf: Option<SocketAddr>,
    /// Further trusted addresses on the ISC side. Default empty.
    pub trusted: Vec<IpAddr>,
    /// The SIP peer: calls go to its host and port, only its IP may call in. Default
    /// `sip:pbx@127.0.0.1:5080`.
    pub peer: String,
    /// Dialled numbers (Request-URI user part, as written, `+` included) starting with one
    /// of these go to the peer. Default empty: only a Request-URI whose host is the peer's.
    pub prefixes: Vec<String>,
    /// Inbound calls: the callee as `sip:<number>@<ims_domain>;user=phone` instead of
    /// `tel:<number>`. Default none.
    pub ims_domain: Option<String>,
    /// Session-Expires (RFC 4028) asked of the peer and granted to the UE, seconds; 0 for
    /// none. Default 1800.
    pub session_expires: u32,
    /// Seconds a call may ring before both legs are ended (CANCEL toward the callee, 480
    /// toward the caller). Default 180 (RFC 3261 §16.6 Timer C).
    pub ring_timeout: u64,
    /// Seconds an answered call may last at most, whatever refreshes it. Default 14400.
    pub max_duration: u64,
    /// Offer the callee the caller's codecs (those the plane can take) before the plane's
    /// own for that leg, so both ends may share one and the plane relays. Default true.
    pub offer_caller_codecs: bool,
    /// `[bridge.register]`: register with the peer (a PBX extension or trunk account) and
    /// answer its digest challenges, to REGISTER and to our INVITEs. Default none.
    pub register: Option<RegisterConfig>,
}

/// `[bridge.register]`: the account at the peer (RFC 3261 §10, digest of §22, MD5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// The user part of our address of record at the peer (and the digest username).
    pub user: String,
    /// The digest password.
    pub password: String,
    /// Expires asked for, seconds (refreshed at half). Default 600.
    #[serde(default = "default_expires")]
    pub expires: u32,
}

fn default_expires() -> u32 {
    600
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            enabled: false,
            isc_listen: SocketAddr::from(([127, 0, 0, 1], 5072)),
            listen: SocketAddr::from(([127, 0, 0, 1], 5090)),
            advertise: None,
            scscf: None,
            trusted: Vec::new(),
            peer: "sip:pbx@127.0.0.1:5080".into(),
            prefixes: Vec::new(),
            ims_domain: None,
            session_expires: 1800,
            ring_timeout: 180,
            max_duration: 14400,
            offer_caller_codecs: true,
            register: None,
        }
    }
}

/// Why a `[bridge]` section cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `peer` is no SIP URI with an IP host.
    #[error("[bridge] peer {0:?}: expected sip:<user>@<ip>[:port]")]
    Peer(String),
    /// Below RFC 4028's floor of 90 s (and not 0).
    #[error("[bridge] session_expires {0} is below 90 (RFC 4028 Min-SE)")]
    SessionExpires(u32),
}

impl BridgeConfig {
    /// Checks what serde cannot: the peer URI and the session timer.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.peer_target()?;
        if self.session_expires != 0 && self.session_expires < core::MIN_SE {
            return Err(ConfigError::SessionExpires(self.session_expires));
        }
        Ok(())
    }

    /// The peer's URI and where it is reached.
    pub fn peer_target(&self) -> Result<(sip::Uri, SocketAddr, sip::Protocol), ConfigError> {
        let bad = || ConfigError::Peer(self.peer.clone());
        let uri = sip::Uri::parse(&self.peer).map_err(|_| bad())?;
        if uri.scheme != sip::Scheme::Sip {
            return Err(bad());
        }
        let (addr, protocol) = sip::proxy::uri_target(&uri).ok_or_else(bad)?;
        Ok((uri, addr, protocol))
    }

    /// The core's settings once the sockets are bound (`isc`, `peer`: the ports `:0`
    /// listen addresses got).
    pub fn core(&self, isc: SocketAddr, peer: SocketAddr) -> Result<CoreConfig, ConfigError> {
        self.validate()?;
        let (peer_uri, peer_addr, peer_protocol) = self.peer_target()?;
        let adv = |a: SocketAddr| SocketAddr::new(self.advertise.unwrap_or(a.ip()), a.port());
        Ok(CoreConfig {
            isc_local: isc,
            isc_address: adv(isc),
            peer_local: peer,
            peer_address: adv(peer),
            scscf: self.scscf,
            trusted: self.trusted.clone(),
            peer: peer_uri,
            peer_addr,
            peer_protocol,
            prefixes: self.prefixes.clone(),
            ims_domain: self.ims_domain.clone(),
            session_expires: self.session_expires,
            ring_timeout: Duration::from_secs(self.ring_timeout),
            max_duration: Duration::from_secs(self.max_duration),
            offer_caller_codecs: self.offer_caller_codecs,
            register: self.register.clone(),
        })
    }
}

/// The `[bridge]` section as the example configuration documents it.
pub const EXAMPLE: &str = r#"# The AMR <-> PCMA bridge: calls between IMS subscribers and a SIP peer (PBX, trunk,
# desk phone). An originating iFC sends INVITEs for the peer's numbers to isc_listen
# (ServerName sip:<isc_listen>); the peer calls subscribers through listen.
[bridge]
# Run the bridge and its media plane ([media]) beside the caller-ID service.
enabled = false
isc_listen = "127.0.0.1:5072"
listen = "127.0.0.1:5090"
# IP for Via/Contact when a listen address is a wildcard.
# advertise = "192.0.2.10"
# The S-CSCF: trusted, and where calls from the peer go. List this AS's address in the
# S-CSCF's [isc] application_servers.
# scscf = "127.0.0.1:6060"
trusted = []
# The SIP peer; only its IP may call in.
peer = "sip:pbx@127.0.0.1:5080"
# Dialled numbers starting with these go to the peer (besides a Request-URI naming the
# peer's host).
prefixes = []
# Callees of inbound calls as sip:<number>@<ims_domain>;user=phone instead of tel:<number>.
# ims_domain = "ims.mnc001.mcc001.3gppnetwork.org"
# RFC 4028 session timer in seconds (0: none).
session_expires = 1800
# Seconds a call may ring; seconds an answered call may last.
ring_timeout = 180
max_duration = 14400
# Offer the callee the caller's codecs first, so the plane can relay without transcoding.
offer_caller_codecs = true
# Register with the peer and answer its digest challenges (REGISTER and INVITE); the
# same as a [bridge.register] table with these keys (expires defaults to 600).
# register = { user = "4930100", password = "secret", expires = 600 }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_and_defaults_match() {
        #[derive(Deserialize)]
        struct File {
            bridge: BridgeConfig,
        }
        let f: File = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(f.bridge, BridgeConfig::default());
        assert!(f.bridge.validate().is_ok());
        assert!(toml::from_str::<BridgeConfig>("bogus = 1").is_err());
        let r: BridgeConfig =
            toml::from_str("[register]\nuser = \"100\"\npassword = \"pw\"\n").unwrap();
        assert_eq!(r.register.unwrap().expires, 600);
    }

    #[test]
    fn validate_rejects_bad_peer_and_session_expires() {
        let c = BridgeConfig {
            peer: "tel:+123".into(),
            ..BridgeConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Peer(_))));
        let c = BridgeConfig {
            peer: "sip:pbx@pbx.example".into(),
            ..BridgeConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Peer(_))));
        let c = BridgeConfig {
            session_expires: 60,
            ..BridgeConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::SessionExpires(60)));
    }

    #[test]
    fn core_config_uses_bound_ports_and_advertise() {
        let c = BridgeConfig {
            advertise: Some("127.0.0.9".parse().unwrap()),
            ..BridgeConfig::default()
        };
        let core = c
            .core(
                "0.0.0.0:5999".parse().unwrap(),
                "0.0.0.0:5998".parse().unwrap(),
            )
            .unwrap();
        assert_eq!(core.isc_address, "127.0.0.9:5999".parse().unwrap());
        assert_eq!(core.peer_address, "127.0.0.9:5998".parse().unwrap());
        assert_eq!(core.peer_addr, "127.0.0.1:5080".parse().unwrap());
    }
}

#[cfg(test)]
mod tests_core;
