//! The HSS configuration file (TOML). Every key is optional; [`EXAMPLE`] documents each default.

use crate::store::Durability;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// A commented configuration with every default, printed by `hss config example`.
pub const EXAMPLE: &str = r#"# hss.toml — every key is optional; the values shown are the defaults.

# Diameter identity (RFC 6733 Origin-Host / Origin-Realm) of this HSS. The default realm
# is the test PLMN 001/01 home domain (TS 23.003 §13.2), the same as the pcscf's default
# [sip] domain, so that the two agree without configuration.
origin_host = "hss.ims.mnc001.mcc001.3gppnetwork.org"
realm = "ims.mnc001.mcc001.3gppnetwork.org"

[diameter]
# TCP listen address for Cx (port 3868 is the Diameter default).
listen = "127.0.0.1:3868"
# The S-CSCFs/I-CSCFs/P-CSCFs allowed to connect (CER) and send requests, each by its
# Origin-Host AND the source addresses its connections come from, since the Origin-Host is
# only what a peer claims, for example (one table per peer):
#   [{ host = "scscf.ims.lab", addresses = ["10.0.0.2", "fd00::2"] }]
# A CER with an unknown Origin-Host, or a known one from another address, gets
# DIAMETER_UNKNOWN_PEER (3010) and is counted in hss_diameter_cer_refused_total. A bare
# name, "scscf.ims.lab", means that host from 127.0.0.1 or ::1 only, and is accepted only
# while `listen` is a loopback address (older configs keep working on one machine).
# A peer has one connection at a time: a second one while the first is open is refused
# (5012). Empty = accept any peer from anywhere (lab default; logged as a warning).
allowed_peers = []
# Device-Watchdog interval in seconds (RFC 3539 Tw, at least 6).
watchdog_secs = 30
# Threads serving Diameter and the REST API (1..=64). One thread carries well over 5,000
# registrations/s; each extra thread adds cross-thread wake-ups that cost more CPU per
# request than they save unless the HSS has cores of its own to spare.
threads = 1

[store]
# SQLite database file (created and migrated on start). Relative paths are relative to the
# working directory.
path = "hss.db"
# "full": fsync every commit (SQNs survive power loss). "normal": survive a crashed or
# killed process, not a power cut; faster on slow disks.
durability = "full"
# Microseconds the writer waits after the first MAR/SAR of a batch for more to join it
# (0..=100000). All writes of a batch share one commit (one fsync with "full"), so under
# load a little wait saves CPU per registration; it adds at most this much to each answer.
commit_delay_us = 1000

[aka]
# SQN = SEQ || IND (TS 33.102 Annex C). Width of IND in bits, as programmed on the cards.
ind_bits = 5
# The IND slot this HSS uses. Give an EPC HSS sharing the same cards another slot (most use
# 0), so that authentications on LTE and IMS never force each other into resynchronisation.
ind = 1
# AMF for subscribers provisioned without one (hex; bit 15 = the "separation bit" for EPS).
default_amf = "8000"
# Most vectors returned by one MAA, whatever SIP-Number-Auth-Items asks for.
max_vectors = 16

[cx]
# S-CSCF SIP URI returned in UAA/LIA for a user that has none assigned (an I-CSCF then needs
# no capabilities matching). Unset = return an empty Server-Capabilities.
# default_scscf = "sip:scscf.ims.lab:6060"
# Visited-Network-Identifier values allowed in UAR; others get ROAMING_NOT_ALLOWED (5004).
# Empty = any.
allowed_visited_networks = []

[ims]
# Home domain for IMPIs/IMPUs derived from an IMSI when provisioning without explicit ones.
# Unset = derive "ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org" from the IMSI (TS 23.003 §13),
# as the ISIM does when its home domain file is empty; for test IMSIs 00101... that is the
# default realm above.
# domain = "ims.mnc001.mcc001.3gppnetwork.org"
# MNC length used for that derivation (2 or 3).
mnc_digits = 2

[rest]
# Provisioning REST API + /metrics + /openapi.json. Unset listen = disabled.
# listen = "127.0.0.1:8080"
# Bearer token required on /api/* (Authorization: Bearer <token>). Also read from the
# environment variable HSS_REST_TOKEN. /metrics, /health and /openapi.json need none.
# `hss config check` prints it redacted.
# token = "change-me"
# The web page's "Recent calls": the application server's call log (`appserver` [rest],
# GET /api/calls), fetched by the HSS with that server's own token (also read from the
# environment variable HSS_CALLS_TOKEN) so the browser needs only the HSS token.
# Unset = the page says no call log is configured.
# calls_url = "http://127.0.0.1:8091/api/calls"
# calls_token = "the appserver's [rest] token"

[log]
# Log filter: "info", "debug", "warn,hss=debug"... The RUST_LOG environment variable
# overrides it. Logs go to stderr, in colour only on a terminal.
level = "info"
"#;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Cannot read the file.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// Not valid TOML for this schema.
    #[error("{0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    /// Semantically wrong.
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub realm: String,
    /// `[diameter]`.
    pub diameter: DiameterConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[aka]`.
    pub aka: AkaConfig,
    /// `[cx]`.
    pub cx: CxSection,
    /// `[ims]`.
    pub ims: ImsConfig,
    /// `[rest]`.
    pub rest: RestConfig,
    /// `[log]` (see [`opskit::log`]).
    pub log: opskit::log::LogConfig,
}

/// `[diameter]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiameterConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Allowed peers; empty = any.
    pub allowed_peers: Vec<PeerEntry>,
    /// Watchdog interval.
    pub watchdog_secs: u64,
    /// Runtime worker threads.
    pub threads: usize,
}

/// One `[diameter] allowed_peers` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PeerEntry {
    /// `"scscf.ims.lab"`: that Origin-Host from [`LOOPBACK_PEER_ADDRESSES`] only; valid only
    /// with a loopback `diameter.listen` (the form older configurations use).
    Host(String),
    /// `{ host = "scscf.ims.lab", addresses = ["10.0.0.2"] }`.
    Peer(PeerAddresses),
}

/// An Origin-Host and the source addresses its connections may come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerAddresses {
    /// Origin-Host (case-insensitive).
    pub host: String,
    /// Source addresses; at least one.
    pub addresses: Vec<IpAddr>,
}

/// Where a bare-name `allowed_peers` entry may connect from.
pub const LOOPBACK_PEER_ADDRESSES: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
];

impl PeerEntry {
    /// The Origin-Host.
    pub fn host(&self) -> &str {
        match self {
            PeerEntry::Host(h) => h,
            PeerEntry::Peer(p) => &p.host,
        }
    }

    /// The source addresses allowed for it.
    pub fn addresses(&self) -> &[IpAddr] {
        match self {
            PeerEntry::Host(_) => &LOOPBACK_PEER_ADDRESSES,
            PeerEntry::Peer(p) => &p.addresses,
        }
    }
}

// By hand rather than `#[serde(untagged)]`, whose only error is "did not match any
// variant": a typo inside the table should name the field.
impl<'de> Deserialize<'de> for PeerEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PeerEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"an Origin-Host or { host = "...", addresses = ["..."] }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PeerEntry, E> {
                Ok(PeerEntry::Host(v.into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<PeerEntry, A::Error> {
                PeerAddresses::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(PeerEntry::Peer)
            }
        }
        d.deserialize_any(V)
    }
}

impl From<&str> for PeerEntry {
    fn from(host: &str) -> Self {
        PeerEntry::Host(host.into())
    }
}

impl From<String> for PeerEntry {
    fn from(host: String) -> Self {
        PeerEntry::Host(host)
    }
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Database file.
    pub path: PathBuf,
    /// Commit durability.
    pub durability: Durability,
    /// How long the group-commit writer gathers a batch, microseconds.
    pub commit_delay_us: u64,
}

/// `[aka]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AkaConfig {
    /// IND width.
    pub ind_bits: u8,
    /// Our IND slot.
    pub ind: u32,
    /// Default AMF, hex.
    pub default_amf: String,
    /// Vector cap per MAA.
    pub max_vectors: u32,
}

/// `[cx]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CxSection {
    /// Default S-CSCF name.
    pub default_scscf: Option<String>,
    /// Allowed visited networks.
    pub allowed_visited_networks: Vec<String>,
}

/// `[ims]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImsConfig {
    /// Home domain.
    pub domain: Option<String>,
    /// MNC digits.
    pub mnc_digits: usize,
}

/// `[rest]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RestConfig {
    /// Listen address; None disables the API.
    pub listen: Option<SocketAddr>,
    /// Bearer token.
    pub token: Option<String>,
    /// The application server's call log (`GET /api/calls`), shown on the web page.
    pub calls_url: Option<String>,
    /// The application server's REST token for `calls_url`.
    pub calls_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            origin_host: format!("hss.{}", opskit::HOME_DOMAIN),
            realm: opskit::HOME_DOMAIN.into(),
            diameter: DiameterConfig::default(),
            store: StoreConfig::default(),
            aka: AkaConfig::default(),
            cx: CxSection::default(),
            ims: ImsConfig::default(),
            rest: RestConfig::default(),
            log: opskit::log::LogConfig::default(),
        }
    }
}

impl Default for DiameterConfig {
    fn default() -> Self {
        DiameterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3868)),
            allowed_peers: vec![],
            watchdog_secs: 30,
            threads: 1,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: "hss.db".into(),
            durability: Durability::Full,
            commit_delay_us: 1000,
        }
    }
}

impl Default for AkaConfig {
    fn default() -> Self {
        AkaConfig {
            ind_bits: 5,
            ind: 1,
            default_amf: "8000".into(),
            max_vectors: 16,
        }
    }
}

impl Default for ImsConfig {
    fn default() -> Self {
        ImsConfig {
            domain: None,
            mnc_digits: 2,
        }
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        Config::parse_named(&text, path)
    }

    /// Parses and validates a TOML document held in memory, exactly as [`Config::load`]
    /// treats a file's text (the fuzz target `hss_config` feeds it); a syntax error names
    /// `<string>` where `load` names the file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_named(text, Path::new("<string>"))
    }

    fn parse_named(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut c: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse(origin.into(), e))?;
        if c.rest.token.is_none() {
            c.rest.token = std::env::var("HSS_REST_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
        }
        if c.rest.calls_token.is_none() {
            c.rest.calls_token = std::env::var("HSS_CALLS_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks values that TOML types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let policy = self.sqn_policy()?;
        if u64::from(self.aka.ind) >= policy.slots() as u64 {
            return Err(ConfigError::Invalid(format!(
                "aka.ind = {} does not fit in aka.ind_bits = {}",
                self.aka.ind, self.aka.ind_bits
            )));
        }
        self.default_amf()?;
        self.check_allowed_peers()?;
        if !(6..=3600).contains(&self.diameter.watchdog_secs) {
            return Err(ConfigError::Invalid(
                "diameter.watchdog_secs must be 6..=3600".into(),
            ));
        }
        if !(1..=64).contains(&self.diameter.threads) {
            return Err(ConfigError::Invalid(
                "diameter.threads must be 1..=64".into(),
            ));
        }
        if self.store.commit_delay_us > 100_000 {
            return Err(ConfigError::Invalid(
                "store.commit_delay_us must be 0..=100000".into(),
            ));
        }
        if self.rest.listen.is_some() && self.rest.token.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Invalid(
                "rest.listen is set but no rest.token (or HSS_REST_TOKEN): refusing an open provisioning API".into(),
            ));
        }
        if !matches!(self.ims.mnc_digits, 2 | 3) {
            return Err(ConfigError::Invalid("ims.mnc_digits must be 2 or 3".into()));
        }
        self.log
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(())
    }

    fn check_allowed_peers(&self) -> Result<(), ConfigError> {
        let listen = self.diameter.listen;
        for p in &self.diameter.allowed_peers {
            let host = p.host();
            if host.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "diameter.allowed_peers: an entry has an empty host".into(),
                ));
            }
            match p {
                PeerEntry::Host(_) if !listen.ip().is_loopback() => {
                    return Err(ConfigError::Invalid(format!(
                        "diameter.allowed_peers: \"{host}\" names no addresses, which means \
                         loopback only, but diameter.listen = {listen} is not a loopback \
                         address; write {{ host = \"{host}\", addresses = [\"<the peer's IP>\"] }}"
                    )));
                }
                PeerEntry::Peer(a) if a.addresses.is_empty() => {
                    return Err(ConfigError::Invalid(format!(
                        "diameter.allowed_peers: \"{host}\" needs at least one address"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The Diameter allow-list from `diameter.allowed_peers`.
    pub fn diameter_peers(&self) -> Vec<diameter::AllowedPeer> {
        self.diameter
            .allowed_peers
            .iter()
            .map(|p| diameter::AllowedPeer::new(p.host(), p.addresses().iter().copied()))
            .collect()
    }

    /// The SQN policy from `[aka]`.
    pub fn sqn_policy(&self) -> Result<akav1::SqnPolicy, ConfigError> {
        akav1::SqnPolicy::with_ind_bits(self.aka.ind_bits)
            .map_err(|e| ConfigError::Invalid(format!("aka.ind_bits: {e}")))
    }

    /// The default AMF from `[aka]`.
    pub fn default_amf(&self) -> Result<[u8; 2], ConfigError> {
        crate::store::parse_hex::<2>(&self.aka.default_amf)
            .map_err(|e| ConfigError::Invalid(format!("aka.default_amf: {e}")))
    }

    /// The Cx handler settings.
    pub fn cx_config(&self) -> crate::cx::CxConfig {
        crate::cx::CxConfig {
            origin_host: self.origin_host.clone(),
            origin_realm: self.realm.clone(),
            allowed_peers: self
                .diameter
                .allowed_peers
                .iter()
                .map(|p| p.host().to_string())
                .collect(),
            allowed_visited_networks: self.cx.allowed_visited_networks.clone(),
            default_scscf: self.cx.default_scscf.clone(),
            max_vectors: self.aka.max_vectors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_tells_every_default() {
        let c: Config = toml::from_str(EXAMPLE).unwrap();
        c.validate().unwrap();
        opskit::config::check_example(EXAMPLE, &Config::default()).unwrap();
    }

    #[test]
    fn default_realm_is_the_shared_home_domain_and_the_test_plmn_one() {
        let d = Config::default();
        assert_eq!(d.realm, opskit::HOME_DOMAIN);
        assert_eq!(d.origin_host, format!("hss.{}", opskit::HOME_DOMAIN));
        assert_eq!(
            crate::store::home_domain_from_imsi("001010000000001", d.ims.mnc_digits).as_deref(),
            Some(opskit::HOME_DOMAIN)
        );
    }

    #[test]
    fn check_output_redacts_the_token() {
        let c: Config =
            toml::from_str("[rest]\nlisten = \"127.0.0.1:1\"\ntoken = \"s3cr3t-t0ken\"\n").unwrap();
        c.validate().unwrap();
        let out = opskit::config::render_redacted(&c).unwrap();
        assert!(!out.contains("s3cr3t-t0ken"), "{out}");
        assert!(out.contains(opskit::config::REDACTED), "{out}");
        assert!(out.contains("127.0.0.1:1"), "{out}");
    }

    #[test]
    fn invalid_values_are_explained() {
        let c: Config = toml::from_str("[aka]\nind = 40\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("aka.ind"));
        let c: Config = toml::from_str("[rest]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("token"));
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        let c: Config = toml::from_str("[log]\nlevel = \"hss=noisy\"\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("log.level"));
    }

    #[test]
    fn allowed_peers_by_host_and_address() {
        let c = Config::parse(
            "[diameter]\nlisten = \"0.0.0.0:3868\"\nallowed_peers = [\n  \
             { host = \"scscf.ims.lab\", addresses = [\"10.0.0.2\", \"fd00::2\"] },\n]\n",
        )
        .unwrap();
        let p = c.diameter_peers();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].origin_host, "scscf.ims.lab");
        assert_eq!(
            p[0].addresses,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
        assert_eq!(c.cx_config().allowed_peers, vec!["scscf.ims.lab"]);
        // What `config check` prints reads back as the same list.
        let again = Config::parse(&opskit::config::render_redacted(&c).unwrap()).unwrap();
        assert_eq!(again.diameter.allowed_peers, c.diameter.allowed_peers);

        // The old bare-name form: loopback peers of a loopback listener.
        let c = Config::parse("[diameter]\nallowed_peers = [\"scscf.ims.lab\"]\n").unwrap();
        assert_eq!(c.diameter_peers()[0].addresses, LOOPBACK_PEER_ADDRESSES);
        let e = Config::parse(
            "[diameter]\nlisten = \"0.0.0.0:3868\"\nallowed_peers = [\"scscf.ims.lab\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("scscf.ims.lab") && e.contains("addresses = ["),
            "{e}"
        );
        let e =
            Config::parse("[diameter]\nallowed_peers = [{ host = \"s.lab\", addresses = [] }]\n")
                .unwrap_err();
        assert!(e.to_string().contains("at least one address"), "{e}");
        let e = Config::parse(
            "[diameter]\nallowed_peers = [{ host = \"s.lab\", address = [\"10.0.0.1\"] }]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `address`"), "{e}");
        let e = Config::parse("[diameter]\nallowed_peers = [5]\n").unwrap_err();
        assert!(e.to_string().contains("addresses = ["), "{e}");
        let e = Config::parse(
            "[diameter]\nallowed_peers = [{ host = \"s.lab\", addresses = [\"s.lab\"] }]\n",
        );
        assert!(e.is_err());
    }

    #[test]
    fn parse_checks_like_load() {
        assert!(Config::parse(EXAMPLE).is_ok());
        let e = Config::parse("[aka]\nind = 40\n").unwrap_err();
        assert!(e.to_string().contains("aka.ind"), "{e}");
        let e = Config::parse("bogus = 1").unwrap_err();
        assert!(matches!(e, ConfigError::Parse(..)), "{e}");
        assert!(e.to_string().starts_with("<string>: "), "{e}");
    }
}
