//! `pcscf.toml`: every key, its default and why. `pcscf --print-config` prints the defaults
//! as a commented file to start from.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use xfrm::{BackendKind, EncryptionAlg, IntegrityAlg};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SIP side (Gm).
    pub sip: SipConfig,
    /// Registrar (collapsed S-CSCF role).
    pub registrar: RegistrarConfig,
    /// sec-agree and IPsec.
    pub ipsec: IpsecConfig,
    /// The HSS (Cx).
    pub hss: HssConfig,
    /// Which S-CSCF: our own collapsed role, or an external one we proxy to.
    pub scscf: ScscfConfig,
}

/// `[sip]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Unprotected SIP listen address, UDP and TCP. Default `127.0.0.1:5060`. Handsets learn
    /// it from the PCO (the EPC's P-CSCF address) and send the first REGISTER here.
    pub listen: SocketAddr,
    /// Home network domain: the realm of the digest challenge and of the IMPIs.
    /// Default `ims.mnc001.mcc001.3gppnetwork.org` (test PLMN 001/01).
    pub domain: String,
    /// Largest SIP message accepted, bytes. Default 65535.
    pub max_message_size: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            domain: "ims.mnc001.mcc001.3gppnetwork.org".into(),
            max_message_size: 65535,
        }
    }
}

/// `[registrar]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Shortest registration accepted, seconds; shorter gets 423 with Min-Expires.
    /// Default 60.
    pub min_expires: u32,
    /// Longest registration granted, seconds; longer requests are cut down. Default 3600
    /// (handsets ask for 600000 and re-register at half-time of what they get).
    pub max_expires: u32,
    /// Expiry when the REGISTER names none, seconds. Default 600.
    pub default_expires: u32,
    /// How long a challenge (and its temporary SAs) waits for the protected REGISTER,
    /// seconds (TS 33.203 §7.1: the temporary SA lifetime). Default 30.
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

/// Whether UEs must use IPsec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpsecPolicy {
    /// A REGISTER without Security-Client gets 421 (Require: sec-agree).
    Required,
    /// UEs that offer sec-agree get IPsec; others (SIPp) register unprotected.
    Optional,
    /// No IPsec: Security-Client is ignored.
    Off,
}

/// `[ipsec]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpsecConfig {
    /// `required`, `optional` or `off`. Default `required`, as handsets expect.
    pub policy: IpsecPolicy,
    /// `kernel` (XFRM), `userspace` (raw-socket ESP, needs root or CAP_NET_RAW) or `auto`
    /// (kernel if it can install ESP, else userspace). Default `auto`.
    pub backend: String,
    /// Integrity algorithms accepted, most preferred first.
    /// Default `["hmac-sha-1-96", "hmac-md5-96"]`.
    pub integrity: Vec<String>,
    /// Encryption algorithms accepted, most preferred first; `null` = integrity only.
    /// Default `["aes-cbc", "null", "des-ede3-cbc"]`.
    pub encryption: Vec<String>,
    /// First and last SPI we allocate for our inbound SAs (≥ 256). Default 4096..=65535.
    pub spi_range: [u32; 2],
    /// First and last protected port (port-c/port-s). Default 31100..=31999.
    pub port_range: [u16; 2],
    /// How long retired SAs stay after deregistration or re-authentication, milliseconds,
    /// so the final responses still go out protected. Default 2000.
    pub retire_grace_ms: u64,
    /// Write the Wireshark `esp_sa` UAT of every SA set to this file as sets are created
    /// (mode 0600: it holds keys). Default: none.
    pub esp_sa_file: Option<PathBuf>,
}

impl Default for IpsecConfig {
    fn default() -> Self {
        IpsecConfig {
            policy: IpsecPolicy::Required,
            backend: "auto".into(),
            integrity: vec!["hmac-sha-1-96".into(), "hmac-md5-96".into()],
            encryption: vec!["aes-cbc".into(), "null".into(), "des-ede3-cbc".into()],
            spi_range: [4096, 65535],
            port_range: [31100, 31999],
            retire_grace_ms: 2000,
            esp_sa_file: None,
        }
    }
}

/// `[hss]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HssConfig {
    /// HSS Diameter address (TCP). Default `127.0.0.1:3868`.
    pub address: SocketAddr,
    /// Our Origin-Host. Default `pcscf.<domain>`.
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

/// Where the S-CSCF role lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScscfMode {
    /// This process is also the S-CSCF: registrar and AKA check, Cx to the HSS.
    Collapsed,
    /// Forward REGISTER to an external S-CSCF (e.g. Kamailio) and only do the P-CSCF's
    /// share: sec-agree, IPsec, Path, P-Visited-Network-ID (TS 24.229 §5.2.2). The HSS
    /// is then the S-CSCF's business: `[hss]` is not used.
    Proxy,
}

/// SIP transport toward the S-CSCF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTransport {
    /// UDP (Kamailio's default listener).
    Udp,
    /// TCP.
    Tcp,
}

/// `[scscf]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScscfConfig {
    /// `collapsed` (default: we are the S-CSCF too) or `proxy` (forward to `address`).
    pub mode: ScscfMode,
    /// Proxy mode: where REGISTERs go. Default `127.0.0.1:6060`.
    pub address: SocketAddr,
    /// Proxy mode: `udp` or `tcp`. Default `udp`.
    pub transport: UpstreamTransport,
    /// Proxy mode: the S-CSCF's SIP URI. When set, forwarded REGISTERs carry
    /// `Route: <uri;lr>` (needed when `address` is a generic proxy in front of the S-CSCF).
    /// Default: none (the Request-URI stays the home domain and the request goes straight
    /// to `address`).
    pub uri: Option<String>,
    /// Proxy mode: the P-Visited-Network-ID we assert (TS 24.229 §5.2.2.1). Default: the
    /// home domain (`sip.domain`): a lab network is its own visited network.
    pub visited_network_id: Option<String>,
}

impl Default for ScscfConfig {
    fn default() -> Self {
        ScscfConfig {
            mode: ScscfMode::Collapsed,
            address: SocketAddr::from(([127, 0, 0, 1], 6060)),
            transport: UpstreamTransport::Udp,
            uri: None,
            visited_network_id: None,
        }
    }
}

/// A configuration value that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Unparsable TOML or unknown key.
    #[error("{0}")]
    Toml(String),
    /// Bad value.
    #[error("{key}: {reason}")]
    Value {
        /// Which key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Parse a TOML document (unknown keys are errors: a typo must not silently fall back to
    /// a default).
    pub fn from_toml(s: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(s).map_err(|e| ConfigError::Toml(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Value { key, reason });
        let r = &self.registrar;
        if r.min_expires > r.max_expires {
            return bad("registrar.min_expires", "is above max_expires".into());
        }
        if !(r.min_expires..=r.max_expires).contains(&r.default_expires) {
            return bad(
                "registrar.default_expires",
                "must lie in min_expires..=max_expires".into(),
            );
        }
        let i = &self.ipsec;
        if i.spi_range[0] < 256 || i.spi_range[0] > i.spi_range[1] {
            return bad(
                "ipsec.spi_range",
                "must be [first, last] with 256 <= first <= last (SPIs 1-255 are reserved)".into(),
            );
        }
        if i.port_range[0] == 0 || i.port_range[0] > i.port_range[1] {
            return bad(
                "ipsec.port_range",
                "must be [first, last] with 0 < first <= last".into(),
            );
        }
        self.backend_kind()?;
        self.alg_prefs()?;
        if let Some(u) = &self.scscf.uri {
            if sip::Uri::parse(u).is_err() {
                return bad("scscf.uri", format!("{u:?} is not a SIP URI"));
            }
        }
        if let Some(v) = &self.scscf.visited_network_id {
            if v.is_empty() || v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
                return bad(
                    "scscf.visited_network_id",
                    "must be non-empty, without quotes, backslashes or control characters".into(),
                );
            }
        }
        Ok(())
    }

    /// `ipsec.backend` parsed.
    pub fn backend_kind(&self) -> Result<BackendKind, ConfigError> {
        self.ipsec
            .backend
            .parse()
            .map_err(|e: xfrm::backend::UnknownBackend| ConfigError::Value {
                key: "ipsec.backend",
                reason: e.to_string(),
            })
    }

    /// `ipsec.integrity` / `ipsec.encryption` parsed.
    pub fn alg_prefs(&self) -> Result<secagree::AlgPrefs, ConfigError> {
        let integrity = self
            .ipsec
            .integrity
            .iter()
            .map(|s| s.parse::<IntegrityAlg>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Value {
                key: "ipsec.integrity",
                reason: e.to_string(),
            })?;
        let encryption = self
            .ipsec
            .encryption
            .iter()
            .map(|s| s.parse::<EncryptionAlg>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Value {
                key: "ipsec.encryption",
                reason: e.to_string(),
            })?;
        if integrity.is_empty() {
            return Err(ConfigError::Value {
                key: "ipsec.integrity",
                reason: "must name at least one algorithm".into(),
            });
        }
        if encryption.is_empty() {
            return Err(ConfigError::Value {
                key: "ipsec.encryption",
                reason: "must name at least one algorithm (\"null\" for integrity only)".into(),
            });
        }
        Ok(secagree::AlgPrefs {
            integrity,
            encryption,
        })
    }

    /// Origin-Host on Cx.
    pub fn origin_host(&self) -> String {
        self.hss
            .origin_host
            .clone()
            .unwrap_or_else(|| format!("pcscf.{}", self.sip.domain))
    }

    /// Realm on Cx.
    pub fn realm(&self) -> String {
        self.hss
            .realm
            .clone()
            .unwrap_or_else(|| self.sip.domain.clone())
    }

    /// P-Visited-Network-ID in proxy mode.
    pub fn visited_network_id(&self) -> String {
        self.scscf
            .visited_network_id
            .clone()
            .unwrap_or_else(|| self.sip.domain.clone())
    }

    /// The defaults as a TOML document.
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Config::default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_validate() {
        let d = Config::default();
        assert!(d.validate().is_ok());
        assert_eq!(Config::from_toml(&Config::default_toml()).unwrap(), d);
        assert_eq!(Config::from_toml("").unwrap(), d);
    }

    #[test]
    fn proxy_mode_parses_with_defaults() {
        assert_eq!(Config::default().scscf.mode, ScscfMode::Collapsed);
        let c = Config::from_toml(
            "[sip]\ndomain = \"ims.lab\"\n[scscf]\nmode = \"proxy\"\naddress = \"127.0.0.1:7070\"\n",
        )
        .unwrap();
        assert_eq!(c.scscf.mode, ScscfMode::Proxy);
        assert_eq!(c.scscf.address, SocketAddr::from(([127, 0, 0, 1], 7070)));
        assert_eq!(c.scscf.transport, UpstreamTransport::Udp);
        assert_eq!(c.visited_network_id(), "ims.lab");
    }

    #[test]
    fn mistakes_are_named() {
        let e = Config::from_toml("[sip]\nlisten_addr = \"1.2.3.4:5\"\n").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = Config::from_toml("[ipsec]\nspi_range = [1, 100]\n").unwrap_err();
        assert!(e.to_string().starts_with("ipsec.spi_range"), "{e}");
        let e = Config::from_toml("[ipsec]\nintegrity = [\"hmac-sha-256\"]\n").unwrap_err();
        assert!(e.to_string().starts_with("ipsec.integrity"), "{e}");
        let e = Config::from_toml("[ipsec]\nbackend = \"magic\"\n").unwrap_err();
        assert!(e.to_string().starts_with("ipsec.backend"), "{e}");
        let e = Config::from_toml("[scscf]\nmode = \"remote\"\n").unwrap_err();
        assert!(e.to_string().contains("remote"), "{e}");
        let e = Config::from_toml("[scscf]\nuri = \"not a uri\"\n").unwrap_err();
        assert!(e.to_string().starts_with("scscf.uri"), "{e}");
        let e = Config::from_toml("[ipsec]\npolicy = \"sometimes\"\n").unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
    }
}
