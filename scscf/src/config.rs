//! `scscf.toml`: every key, its default and why. `scscf config example` prints [`EXAMPLE`],
//! a commented file to start from; `scscf config check FILE` validates one and prints the
//! effective values.

use crate::cxclient::HssPeer;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

pub use opskit::config::ConfigError;

/// Challenges kept pending per IMPI; the oldest goes when a new one would exceed it:
/// enough for a UE that retries, few enough that a stranger naming someone else's IMPI
/// cannot pile up state.
pub const MAX_CHALLENGES_PER_IMPI: usize = 3;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SIP side (Mw: the P-CSCFs, later the application servers).
    pub sip: SipConfig<ScscfRole>,
    /// Registrar.
    pub registrar: RegistrarConfig,
    /// The HSS (Cx).
    pub hss: HssConfig,
    /// Who may send requests other than REGISTER.
    pub routing: RoutingConfig,
    /// Application servers over ISC (iFCs, third-party REGISTER).
    pub isc: IscConfig,
    /// Logging (`[log] level`, see [`opskit::log`]).
    pub log: opskit::log::LogConfig,
    /// The Prometheus endpoint.
    pub metrics: opskit::http::MetricsConfig,
}

/// Which node a [`SipConfig`] belongs to: only its default port differs.
pub trait SipRole: std::fmt::Debug + Clone + PartialEq {
    /// The default listen port.
    const PORT: u16;
}

/// Our `scscf`: SIP on port 6060 by default (where P-CSCFs in proxy mode forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScscfRole;

impl SipRole for ScscfRole {
    const PORT: u16 = 6060;
}

/// `[sip]` of a SIP node whose default port is `R::PORT`: 6060 for our `scscf`, 5060 for
/// the `pcscf` (`pcscf::config::SipConfig`). The listen/advertise rule is
/// [`opskit::net::advertise_ip`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct SipConfig<R: SipRole> {
    /// SIP listen address, UDP and TCP. Default `127.0.0.1:<R::PORT>`. A P-CSCF's is where
    /// handsets send their first REGISTER (from the PCO); an S-CSCF's is where P-CSCFs in
    /// proxy mode forward (their `[scscf] address`).
    pub listen: SocketAddr,
    /// The address peers are told: SAs (TS 33.203 §7), Path, Service-Route, the
    /// Server-Name stored in the HSS, Via, Record-Route. Default: the IP of `listen`.
    /// Required when `listen` is the unspecified address (`0.0.0.0` / `::`), which must
    /// never be advertised. The port is always the one of `listen` (SAs and protected
    /// ports are bound locally, so the address cannot be translated on the way).
    pub advertise: Option<IpAddr>,
    /// Home network domain: the digest realm and the IMPIs' domain. Default
    /// [`opskit::HOME_DOMAIN`] (test PLMN 001/01), the same as the HSS's default realm.
    pub domain: String,
    /// Largest SIP message accepted, bytes. Default 65535.
    pub max_message_size: usize,
    #[serde(skip)]
    role: std::marker::PhantomData<R>,
}

impl<R: SipRole> Default for SipConfig<R> {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], R::PORT)),
            advertise: None,
            domain: opskit::HOME_DOMAIN.into(),
            max_message_size: 65535,
            role: std::marker::PhantomData,
        }
    }
}

impl<R: SipRole> SipConfig<R> {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Value { key, reason });
        if let Err(e) = opskit::net::advertise_ip(self.listen, self.advertise) {
            return bad("sip.advertise", e.to_string());
        }
        if self.max_message_size < 1024 {
            return bad(
                "sip.max_message_size",
                "must be at least 1024 bytes (an IMS REGISTER is larger)".into(),
            );
        }
        if sip::Uri::parse(&format!("sip:{}", self.domain)).is_err() {
            return bad("sip.domain", format!("{:?} is not a domain", self.domain));
        }
        Ok(())
    }

    /// `advertise` (or the IP of `listen`) with the port of `listen`; after
    /// [`SipConfig::validate`] never the unspecified address. With port 0 the shell
    /// substitutes the port it bound.
    pub fn advertise_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.advertise.unwrap_or(self.listen.ip()),
            self.listen.port(),
        )
    }

    /// SIP parse limits.
    pub fn limits(&self) -> sip::Limits {
        sip::Limits {
            max_message: self.max_message_size,
            ..sip::Limits::default()
        }
    }
}

/// `[registrar]`: the S-CSCF's registrar, in our `scscf` and in a collapsed `pcscf`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Shortest registration accepted, seconds; shorter gets 423 with Min-Expires.
    /// Default 60.
    pub min_expires: u32,
    /// Longest registration granted, seconds; longer requests are cut down. Default 3600.
    pub max_expires: u32,
    /// Expiry when the REGISTER names none, seconds. Default 600.
    pub default_expires: u32,
    /// How long a challenge waits for its answer, seconds (in a collapsed P-CSCF also
    /// the lifetime of the temporary SAs, TS 33.203 §7.1). Default 30.
    pub auth_timeout: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            auth_timeout: 30,
        }
    }
}

impl RegistrarConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError::Value {
                key,
                reason: reason.into(),
            })
        };
        if self.min_expires == 0 {
            return bad("registrar.min_expires", "must be at least 1 second");
        }
        if self.auth_timeout == 0 {
            return bad("registrar.auth_timeout", "must be at least 1 second");
        }
        if self.min_expires > self.max_expires {
            return bad("registrar.min_expires", "is above max_expires");
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return bad(
                "registrar.default_expires",
                "must lie in min_expires..=max_expires",
            );
        }
        Ok(())
    }

    /// [`RegistrarConfig::auth_timeout`] as a duration.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.auth_timeout))
    }
}

/// `[hss]`: where the S-CSCF role (ours, or a collapsed `pcscf`'s) reaches the HSS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HssConfig {
    /// HSS Diameter address (TCP). Default `127.0.0.1:3868`.
    pub address: SocketAddr,
    /// Our Origin-Host. Default `<binary>.<domain>` (`scscf.…`, `pcscf.…`).
    pub origin_host: Option<String>,
    /// Our Origin-Realm and the Destination-Realm. Default `<domain>`.
    pub realm: Option<String>,
    /// Cx request timeout, milliseconds. Default 3000.
    pub timeout_ms: u64,
}

impl Default for HssConfig {
    fn default() -> Self {
        HssConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 3868)),
            origin_host: None,
            realm: None,
            timeout_ms: 3000,
        }
    }
}

impl HssConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout_ms == 0 {
            return Err(ConfigError::Value {
                key: "hss.timeout_ms",
                reason: "must be at least 1 millisecond".into(),
            });
        }
        Ok(())
    }

    /// Origin-Host: the configured one, else `<binary>.<domain>`.
    pub fn origin_host(&self, binary: &str, domain: &str) -> String {
        self.origin_host
            .clone()
            .unwrap_or_else(|| format!("{binary}.{domain}"))
    }

    /// Origin-Realm and Destination-Realm: the configured one, else the home domain.
    pub fn realm(&self, domain: &str) -> String {
        self.realm.clone().unwrap_or_else(|| domain.to_string())
    }

    /// The HSS peer for a binary in `domain`.
    pub fn peer(&self, binary: &str, domain: &str) -> HssPeer {
        HssPeer {
            address: self.address,
            origin_host: self.origin_host(binary, domain),
            realm: self.realm(domain),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }
}

/// `[routing]`: trust for requests other than REGISTER (TS 24.229 §5.4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// IP addresses whose calls, MESSAGEs and in-dialog requests we accept: the P-CSCFs in
    /// front of this S-CSCF (they assert the caller's identity) and, later, application
    /// servers. Default: none, so nobody on the network can inject a call with an
    /// identity of their choosing; REGISTER is accepted from anywhere as before.
    pub trusted: Vec<IpAddr>,
}

/// `[isc]`: application servers (TS 24.229 §5.4.3.2, §5.4.1.7). Which AS sees which
/// request is the users' iFCs' business (from the HSS); this section only says whom we
/// trust and how long we wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IscConfig {
    /// IP addresses of application servers: trusted like `routing.trusted`, and allowed
    /// to originate requests on behalf of users who are not registered (originating-
    /// unregistered). Default: none.
    pub application_servers: Vec<IpAddr>,
    /// How long an AS may stay silent (nothing but a 100) before its iFC's
    /// DefaultHandling applies, milliseconds. Default 4000.
    pub as_timeout_ms: u64,
}

impl Default for IscConfig {
    fn default() -> Self {
        IscConfig {
            application_servers: Vec::new(),
            as_timeout_ms: 4000,
        }
    }
}

impl IscConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.as_timeout_ms == 0 {
            return Err(ConfigError::Value {
                key: "isc.as_timeout_ms",
                reason: "must be at least 1 millisecond".into(),
            });
        }
        Ok(())
    }

    /// The core's ISC settings.
    pub fn core(&self) -> crate::Isc {
        crate::Isc {
            as_timeout: Duration::from_millis(self.as_timeout_ms),
            application_servers: self.application_servers.clone(),
            ..crate::Isc::default()
        }
    }
}

/// A commented configuration with every key and its default, printed by
/// `scscf config example`. A unit test keeps it equal to [`Config::default`].
pub const EXAMPLE: &str = r#"# scscf.toml — every key is optional; the values shown are the defaults.

[sip]
# SIP listen address, UDP and TCP. P-CSCFs in proxy mode forward REGISTERs here (their
# [scscf] address).
listen = "127.0.0.1:6060"
# The address peers are told: Service-Route, the Server-Name stored in the HSS, Via.
# Unset = the IP of listen. Required when listen is 0.0.0.0 or [::]: an unspecified
# address must never end up in a Service-Route or the HSS. The port is the listen port.
# advertise = "10.45.0.1"
# Home network domain: the digest realm. The default is the test PLMN 001/01 domain
# (TS 23.003 §13.2), the same as the HSS's and the P-CSCF's.
domain = "ims.mnc001.mcc001.3gppnetwork.org"
# Largest SIP message accepted, bytes.
max_message_size = 65535

[registrar]
# Shortest registration accepted, seconds; shorter requests get 423 with Min-Expires.
min_expires = 60
# Longest registration granted, seconds; longer requests are cut down (handsets ask for
# 600000 and re-register at half-time of what they get).
max_expires = 3600
# Expiry when the REGISTER names none, seconds.
default_expires = 600
# How long a challenge waits for its answer, seconds.
auth_timeout = 30

[hss]
# HSS Diameter address (TCP).
address = "127.0.0.1:3868"
# Our Origin-Host. Unset = "scscf.<sip.domain>".
# origin_host = "scscf.ims.mnc001.mcc001.3gppnetwork.org"
# Our Origin-Realm and the Destination-Realm. Unset = sip.domain.
# realm = "ims.mnc001.mcc001.3gppnetwork.org"
# Cx request timeout, milliseconds.
timeout_ms = 3000

[routing]
# IP addresses whose calls, MESSAGEs and in-dialog requests are accepted: the P-CSCFs in
# front of this S-CSCF (they assert the caller's identity) and application servers.
# Empty = none from the network. REGISTER is accepted from anywhere.
trusted = []

[isc]
# IP addresses of application servers (the ServerNames of the users' iFCs): trusted like
# routing.trusted, and allowed to originate requests on behalf of users who are not
# registered (an AS as B2BUA). Third-party REGISTERs and iFC hops go to any AS an iFC
# names; only what comes back from these addresses is accepted.
application_servers = []
# How long an AS may stay silent (nothing but a 100 Trying) before the iFC's
# DefaultHandling applies (SESSION_CONTINUED: skip it; SESSION_TERMINATED: 408 to the
# caller), milliseconds.
as_timeout_ms = 4000

[log]
# Log filter: "info", "debug", "warn,scscf=debug"... The RUST_LOG environment variable
# overrides it. Logs go to stderr, in colour only on a terminal.
level = "info"

[metrics]
# Prometheus GET /metrics over plain HTTP without authentication: keep it on a management
# address. Unset = off.
# listen = "127.0.0.1:9092"
"#;

impl Config {
    /// Parses a TOML document (unknown keys are errors: a typo must not silently fall back
    /// to a default) and validates it.
    pub fn from_toml(s: &str) -> Result<Config, ConfigError> {
        let c: Config = opskit::config::parse(s)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_toml(&opskit::config::read(path)?)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Value { key, reason });
        self.sip.validate()?;
        self.registrar.validate()?;
        self.hss.validate()?;
        self.isc.validate()?;
        if let Some(m) = self.metrics.listen {
            if m.port() != 0 && m == self.sip.listen {
                return bad(
                    "metrics.listen",
                    format!("{m} is also sip.listen (TCP): give metrics its own port"),
                );
            }
        }
        if let Err(e) = self.log.validate() {
            return bad("log.level", e.to_string());
        }
        Ok(())
    }

    /// [`SipConfig::advertise_addr`].
    pub fn advertise_addr(&self) -> SocketAddr {
        self.sip.advertise_addr()
    }

    /// The HSS and who we are toward it (Origin-Host `scscf.<domain>` by default).
    pub fn hss_peer(&self) -> HssPeer {
        self.hss.peer(BINARY, &self.sip.domain)
    }

    /// The core's configuration for an S-CSCF reachable at `address` (the advertise IP and
    /// the bound port).
    pub fn core(&self, address: SocketAddr) -> crate::Config {
        let r = &self.registrar;
        let peer = self.hss_peer();
        crate::Config {
            domain: self.sip.domain.clone(),
            address,
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            default_expires: r.default_expires,
            auth_timeout: r.auth_timeout(),
            max_challenges_per_impi: MAX_CHALLENGES_PER_IMPI,
            cx: crate::CxIdentity {
                origin_host: peer.origin_host,
                origin_realm: peer.realm.clone(),
                destination_realm: peer.realm,
                server_name: crate::cx::server_name(address),
            },
            limits: self.limits(),
            routing: crate::Routing {
                trusted: self.routing.trusted.clone(),
                local_peers: Vec::new(),
            },
        }
    }

    /// SIP parse limits.
    pub fn limits(&self) -> sip::Limits {
        self.sip.limits()
    }

    /// This configuration with every derived default filled in (advertise address,
    /// Origin-Host, realm), as `config check` prints it.
    pub fn effective(&self) -> Config {
        let mut c = self.clone();
        c.sip.advertise = Some(self.advertise_addr().ip());
        let peer = self.hss_peer();
        c.hss.origin_host = Some(peer.origin_host);
        c.hss.realm = Some(peer.realm);
        c
    }
}

/// Our name in default Origin-Hosts.
const BINARY: &str = "scscf";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_the_example_tells_them() {
        let d = Config::default();
        d.validate().unwrap();
        assert_eq!(Config::from_toml("").unwrap(), d);
        assert_eq!(Config::from_toml(EXAMPLE).unwrap(), d);
        opskit::config::check_example(EXAMPLE, &d).unwrap();
        assert_eq!(d.sip.domain, opskit::HOME_DOMAIN);
        assert_eq!(
            d.hss_peer().origin_host,
            format!("scscf.{}", opskit::HOME_DOMAIN)
        );
    }

    #[test]
    fn unspecified_listen_needs_advertise() {
        let e = Config::from_toml("[sip]\nlisten = \"0.0.0.0:6060\"\n").unwrap_err();
        assert!(e.to_string().starts_with("sip.advertise"), "{e}");
        let c = Config::from_toml("[sip]\nlisten = \"0.0.0.0:6060\"\nadvertise = \"10.45.0.2\"\n")
            .unwrap();
        assert_eq!(
            c.advertise_addr(),
            "10.45.0.2:6060".parse::<SocketAddr>().unwrap()
        );
        let core = c.core(c.advertise_addr());
        assert_eq!(core.cx.server_name, "sip:10.45.0.2:6060");
        assert_eq!(core.address, c.advertise_addr());
    }

    #[test]
    fn mistakes_are_named() {
        for (toml, key) in [
            ("[sip]\nlisten_addr = \"1.2.3.4:5\"\n", "listen_addr"),
            ("[registrar]\nmin_expires = 0\n", "registrar.min_expires"),
            (
                "[registrar]\ndefault_expires = 5\n",
                "registrar.default_expires",
            ),
            ("[registrar]\nauth_timeout = 0\n", "registrar.auth_timeout"),
            ("[hss]\ntimeout_ms = 0\n", "hss.timeout_ms"),
            ("[isc]\nas_timeout_ms = 0\n", "isc.as_timeout_ms"),
            (
                "[isc]\napplication_servers = [\"as\"]\n",
                "application_servers",
            ),
            ("[sip]\nmax_message_size = 100\n", "sip.max_message_size"),
            ("[sip]\ndomain = \"a b\"\n", "sip.domain"),
            ("[metrics]\nlisten = \"127.0.0.1:6060\"\n", "metrics.listen"),
            ("[log]\nlevel = \"scscf=chatty\"\n", "log.level"),
        ] {
            let e = Config::from_toml(toml).unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn effective_fills_derived_defaults_and_round_trips() {
        let c = Config::from_toml("[sip]\ndomain = \"ims.lab\"\n")
            .unwrap()
            .effective();
        assert_eq!(c.hss.origin_host.as_deref(), Some("scscf.ims.lab"));
        assert_eq!(c.hss.realm.as_deref(), Some("ims.lab"));
        assert_eq!(c.sip.advertise, Some(c.sip.listen.ip()));
        let text = opskit::config::render_redacted(&c).unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), c, "{text}");
    }

    #[test]
    fn load_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/scscf.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/scscf.toml"), "{e}");
    }
}
