//! `pcscf.toml`: every key, its default and why. `pcscf config example` prints [`EXAMPLE`],
//! a commented file to start from; `pcscf config check FILE` validates one and prints the
//! effective values.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use xfrm::{BackendKind, EncryptionAlg, IntegrityAlg};

pub use opskit::config::ConfigError;
/// `[registrar]`, `[hss]` and `[isc]` are the collapsed S-CSCF role's, the same as our
/// `scscf`'s.
pub use scscf::config::{HssConfig, IscConfig, RegistrarConfig};

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
    /// Logging (`[log] level`, see [`opskit::log`]).
    pub log: opskit::log::LogConfig,
    /// The Prometheus endpoint.
    pub metrics: opskit::http::MetricsConfig,
    /// What is refused before it costs anything (rate limits, overload shedding).
    pub admission: AdmissionSection,
    /// Interop rewrite rules ([`crate::rewrite`]).
    pub rewrite: RewriteConfig,
    /// SIP over TCP toward UEs (RFC 3261 §18.1.1).
    pub tcp: TcpConfig,
    /// Collapsed mode: application servers (iFC routing over ISC).
    pub isc: IscConfig,
}

/// `[admission]`: 503 with Retry-After instead of work we cannot afford (see
/// `pcscf::core::AdmissionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionSection {
    /// Unprotected REGISTERs one IMPI may send at once (each costs a vector at the HSS and
    /// a temporary SA set). 0 = no limit. Default 20.
    pub register_burst: u32,
    /// REGISTERs per second an IMPI regains. Default 2.
    pub register_per_second: f64,
    /// IMPIs tracked at most; a new one beyond it waits. Default 200000.
    pub max_tracked: usize,
    /// Received messages waiting in our queue above which new work is shed (503); shedding
    /// stops below half of it. 0 = never shed. Default 3500 (the queue holds 4096).
    pub overload_backlog: usize,
    /// Retry-After of an overload 503, seconds. Default 5.
    pub overload_retry_after: u32,
}

impl Default for AdmissionSection {
    fn default() -> Self {
        let c = crate::core::AdmissionConfig::default();
        AdmissionSection {
            register_burst: c.register_burst,
            register_per_second: c.register_per_second,
            max_tracked: c.max_tracked,
            overload_backlog: 3500,
            overload_retry_after: c.overload_retry_after,
        }
    }
}

impl AdmissionSection {
    /// The core's admission limits.
    pub fn core(&self) -> crate::core::AdmissionConfig {
        crate::core::AdmissionConfig {
            register_burst: self.register_burst,
            register_per_second: self.register_per_second,
            max_tracked: self.max_tracked,
            overload_retry_after: self.overload_retry_after,
        }
    }
}

/// `[rewrite]`: the interop rewrite rules file ([`siprewrite`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewriteConfig {
    /// The rules file, relative to the working directory. Loaded at start (an invalid file
    /// is a start error naming the rule) and again on SIGHUP (an invalid new file is logged
    /// and the old rules stay). Default: none.
    pub file: Option<PathBuf>,
}

/// `[sip]`: the unprotected SIP side (Gm), default `127.0.0.1:5060`.
pub type SipConfig = scscf::config::SipConfig<PcscfRole>;

/// The P-CSCF's `[sip]`: port 5060 by default, where handsets send their first REGISTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcscfRole;

impl scscf::config::SipRole for PcscfRole {
    const PORT: u16 = 5060;
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
    /// Collapsed mode: our S-CSCF's own address (Service-Route, Server-Name on Cx);
    /// proxy mode: where REGISTERs go. An unspecified IP stands for our advertise IP
    /// ([`Config::advertise_addr`]). Default `0.0.0.0:6060`, i.e. the advertise IP with
    /// port 6060, so that several collapsed P-CSCFs on one HSS each have their own S-CSCF
    /// name. Proxy mode needs a specific address.
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
    /// Subscribe to each registered user's reg event at the S-CSCF (TS 24.229 §5.2.3), so
    /// that a network-initiated deregistration (an RTR from the HSS) ends the registration
    /// and its SAs here at once. Default: true.
    pub subscribe_reg_event: bool,
}

impl Default for ScscfConfig {
    fn default() -> Self {
        ScscfConfig {
            mode: ScscfMode::Collapsed,
            address: SocketAddr::from(([0, 0, 0, 0], 6060)),
            transport: UpstreamTransport::Udp,
            uri: None,
            visited_network_id: None,
            subscribe_reg_event: true,
        }
    }
}

/// `[tcp]`: SIP over TCP toward UEs, inside their SAs (TS 24.229 §5.2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// A request to a UE larger than this many bytes goes over TCP (RFC 3261 §18.1.1, the
    /// path MTU − 200 rule; 1300 when the MTU is unknown), back over UDP if the UE refuses
    /// the connection. Not possible through the SAs of the userspace ESP backend (no TCP
    /// stack): there every request stays on UDP. Requests toward the S-CSCF keep
    /// `[scscf] transport`. Default 1300.
    pub size_threshold: usize,
    /// A TCP connection that received nothing for this long is closed, seconds (any of
    /// ours: with UEs, and with the S-CSCF in proxy mode, which we then reopen on the next
    /// request). Connections on protected ports also close when their SA set is deleted.
    /// Default 900.
    pub idle_timeout: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            size_threshold: sip::size_rule::DEFAULT_THRESHOLD,
            idle_timeout: 900,
        }
    }
}

/// A commented configuration with every key and its default, printed by
/// `pcscf config example`. A unit test keeps it equal to [`Config::default`].
pub const EXAMPLE: &str = r#"# pcscf.toml — every key is optional; the values shown are the defaults.

[sip]
# Unprotected SIP listen address, UDP and TCP. Handsets learn the P-CSCF address from the
# PCO (the EPC's P-CSCF address setting) and send their first REGISTER here.
listen = "127.0.0.1:5060"
# The address UEs and peers are told: in the IPsec SAs, Path, Service-Route, Via and
# Record-Route. Unset = the IP of listen. Required when listen is 0.0.0.0 or [::]: an
# unspecified address must never end up in an SA, Path or Service-Route. The port is
# always the listen port.
# advertise = "10.45.0.1"
# Home network domain: the realm of the digest challenge and of the IMPIs. The default is
# the test PLMN 001/01 domain (TS 23.003 §13.2), the same as the HSS's default realm.
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
# How long a challenge and its temporary SAs wait for the protected REGISTER, seconds
# (TS 33.203 §7.1: the lifetime of the temporary SAs).
auth_timeout = 30

[ipsec]
# "required": a REGISTER without Security-Client gets 421 (handsets expect this).
# "optional": UEs that offer sec-agree get IPsec, others (SIPp) register unprotected.
# "off": no IPsec, Security-Client is ignored.
policy = "required"
# "kernel" (XFRM), "userspace" (raw-socket ESP, needs root or CAP_NET_RAW) or "auto"
# (kernel if it can install ESP, else userspace).
backend = "auto"
# Integrity algorithms accepted, most preferred first.
integrity = ["hmac-sha-1-96", "hmac-md5-96"]
# Encryption algorithms accepted, most preferred first; "null" = integrity only.
encryption = ["aes-cbc", "null", "des-ede3-cbc"]
# First and last SPI allocated for our inbound SAs (SPIs 1-255 are reserved, RFC 4303).
spi_range = [4096, 65535]
# First and last protected port (port-c/port-s); must not contain the listen port.
port_range = [31100, 31999]
# How long retired SAs stay after deregistration or re-authentication, milliseconds, so
# that the final responses still go out protected.
retire_grace_ms = 2000
# Write the Wireshark esp_sa UAT of every SA set to this file as sets are created (mode
# 0600: it holds keys). Unset = none.
# esp_sa_file = "esp_sa"

[hss]
# Collapsed mode only. HSS Diameter address (TCP).
address = "127.0.0.1:3868"
# Our Origin-Host. Unset = "pcscf.<sip.domain>".
# origin_host = "pcscf.ims.mnc001.mcc001.3gppnetwork.org"
# Our Origin-Realm and the Destination-Realm. Unset = sip.domain.
# realm = "ims.mnc001.mcc001.3gppnetwork.org"
# Cx request timeout, milliseconds.
timeout_ms = 3000

[scscf]
# "collapsed": this process is also the S-CSCF (registrar, AKA check, Cx to the HSS).
# "proxy": forward REGISTER to the S-CSCF at address (e.g. Kamailio) and only do the
# P-CSCF's share (sec-agree, IPsec, Path, P-Visited-Network-ID; TS 24.229 §5.2.2);
# [hss] is then not used.
mode = "collapsed"
# Collapsed mode: our S-CSCF's own address (Service-Route, Server-Name on Cx). Proxy
# mode: where REGISTERs go (required there). Unset (0.0.0.0:6060) = the advertise IP
# (sip.advertise, else the IP of sip.listen) with port 6060, so that several collapsed
# P-CSCFs on one HSS do not all call themselves sip:127.0.0.1:6060.
# address = "127.0.0.1:6060"
# Proxy mode: "udp" or "tcp" toward address.
transport = "udp"
# Proxy mode: the S-CSCF's SIP URI. When set, forwarded REGISTERs carry Route: <uri;lr>
# (needed when address is a generic proxy in front of the S-CSCF). Unset = none.
# uri = "sip:scscf.ims.mnc001.mcc001.3gppnetwork.org:6060"
# Proxy mode: the P-Visited-Network-ID asserted (TS 24.229 §5.2.2.1). Unset = sip.domain:
# a lab network is its own visited network.
# visited_network_id = "ims.mnc001.mcc001.3gppnetwork.org"
# Subscribe to each registered user's reg event at the S-CSCF (TS 24.229 §5.2.3), so that
# a network-initiated deregistration (an RTR from the HSS) ends the registration and its
# SAs here at once.
subscribe_reg_event = true

[admission]
# 503 with Retry-After instead of work the P-CSCF cannot afford (RFC 3261 §21.5.4).
# Unprotected REGISTERs one IMPI may send at once: each costs a vector at the HSS and a
# temporary SA set. 0 = no limit.
register_burst = 20
# REGISTERs per second an IMPI regains.
register_per_second = 2.0
# IMPIs tracked at most; a new one beyond it waits until the table drains.
max_tracked = 200000
# Received messages waiting in our queue above which new REGISTERs and new dialogs are
# answered 503 (work under way goes on); shedding stops below half of it. 0 = never.
overload_backlog = 3500
# Retry-After of an overload 503, seconds.
overload_retry_after = 5

[isc]
# Collapsed mode: application servers, reached by the users' iFCs (from the HSS) at the
# S-CSCF's address ([scscf] address, which this process then also listens on). Their IP
# addresses: trusted to originate requests on behalf of users, also unregistered ones (an
# AS as B2BUA). Third-party REGISTERs and iFC hops go to any AS an iFC names; only what
# comes back from an AS we sent to, or from these addresses, is accepted.
application_servers = []
# How long an AS may stay silent (nothing but a 100 Trying) before the iFC's
# DefaultHandling applies (SESSION_CONTINUED: skip it; SESSION_TERMINATED: 408 to the
# caller), milliseconds.
as_timeout_ms = 4000

[log]
# Log filter: "info", "debug", "warn,pcscf=debug"... The RUST_LOG environment variable
# overrides it. Logs go to stderr, in colour only on a terminal.
level = "info"

[metrics]
# Prometheus GET /metrics over plain HTTP without authentication: keep it on a management
# address. Unset = off (several P-CSCFs on one host would fight over one port).
# listen = "127.0.0.1:9091"

[rewrite]
# Interop rewrite rules ("SIP interceptor" edits for handsets and cores that need them): a
# TOML file of named rules per direction (to_ue, to_core, to_as, from_ue, from_core,
# from_as). to_core/from_core are the wire toward the S-CSCF (proxy mode), to_as/from_as the
# collapsed S-CSCF's wire toward application servers. Checked at start and by `config
# check` (a mistake names the rule); SIGHUP reloads it, keeping the old rules if the new
# file is invalid. Unset = no rules. A rules file looks like this (without the "|"):
#   | [[to_ue]]
#   | name = "no-rtcp-mid"                    # required, unique per direction
#   | method = "INVITE"                       # requests, and responses by CSeq method
#   | status = [183, "2xx"]                   # responses: 480, "4xx", "400-499"
#   | headers = [{ name = "User-Agent", value = "^SM-" }, { name = "X-A", absent = true }]
#   | remove_sdp_attributes = ["rtcp", "mid"]
#   | remove_codecs = ["AMR-WB"]              # its m= payload types, rtpmap/fmtp/rtcp-fb
#   | remove_header = [{ name = "Allow", value = "MESSAGE" }]   # value: a regex, optional
#   | replace_header = [{ name = "Server", pattern = "^(\\w+)/.*", with = "$1" }]
#   | add_header = [{ name = "X-Lab", value = "1" }]
#   | dscp = 46                               # 0-63: IP_TOS/IPV6_TCLASS of this message
#   |                                         # (unprotected UDP only; not TCP or IPsec)
#   |
#   | [[to_ue]]
#   | name = "busy"
#   | status = 480
#   | map_status = { code = 486, reason = "Busy Here" }
# file = "rewrite.toml"

[tcp]
# A request to a UE larger than this many bytes goes over TCP (RFC 3261 §18.1.1: path MTU
# minus 200, 1300 when the MTU is unknown), from our protected client port to the UE's
# protected server port, back over UDP if the UE refuses. UEs' own TCP connections to our
# protected server ports are accepted from the UE's protected client port only. With the
# userspace ESP backend there is no TCP inside the SAs: requests then stay on UDP (one log
# line at start says so); use the kernel backend for TCP. Requests toward the S-CSCF keep
# [scscf] transport.
size_threshold = 1300
# Close a TCP connection (with a UE, or with the S-CSCF in proxy mode) that received
# nothing for this long, seconds. Connections on protected ports also close when their SA
# set is deleted (deregistration, expiry).
idle_timeout = 900
"#;

impl Config {
    /// Parse a TOML document (unknown keys are errors: a typo must not silently fall back to
    /// a default).
    pub fn from_toml(s: &str) -> Result<Config, ConfigError> {
        let c: Config = opskit::config::parse(s)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads, parses and validates a file, and the rewrite rules file it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let c = Config::from_toml(&opskit::config::read(path)?)?;
        c.rewrite_rules()?;
        Ok(c)
    }

    /// Loads `[rewrite] file` (no rules when unset). Not part of [`Config::validate`]:
    /// that one reads no files.
    pub fn rewrite_rules(&self) -> Result<siprewrite::RuleSet, ConfigError> {
        match &self.rewrite.file {
            Some(p) => siprewrite::RuleSet::load_file(p).map_err(|e| ConfigError::Value {
                key: "rewrite.file",
                reason: e.to_string(),
            }),
            None => Ok(siprewrite::RuleSet::default()),
        }
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Value { key, reason });
        self.sip.validate()?;
        self.validate_addresses()?;
        self.registrar.validate()?;
        self.hss.validate()?;
        self.isc.validate()?;
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
        let a = &self.admission;
        if !(a.register_per_second.is_finite() && a.register_per_second > 0.0) {
            return bad(
                "admission.register_per_second",
                "must be a positive number".into(),
            );
        }
        if a.max_tracked == 0 || a.overload_retry_after == 0 {
            return bad(
                "admission",
                "max_tracked and overload_retry_after must be at least 1".into(),
            );
        }
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
        if self.tcp.idle_timeout == 0 {
            return bad("tcp.idle_timeout", "must be at least 1 second".into());
        }
        if let Err(e) = self.log.validate() {
            return bad("log.level", e.to_string());
        }
        Ok(())
    }

    /// The address checks of [`Config::validate`]: what we advertise, what we bind, and
    /// that no two of our listeners (or the S-CSCF we forward to) collide.
    fn validate_addresses(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Value { key, reason });
        let listen = self.sip.listen;
        let [first, last] = self.ipsec.port_range;
        if listen.port() != 0 && (first..=last).contains(&listen.port()) {
            return bad(
                "ipsec.port_range",
                format!(
                    "contains sip.listen's port {}: protected ports must differ from it",
                    listen.port()
                ),
            );
        }
        if let Some(m) = self.metrics.listen {
            if m.port() != 0 && m == listen {
                return bad(
                    "metrics.listen",
                    format!("{m} is also sip.listen (TCP): give metrics its own port"),
                );
            }
        }
        if self.scscf.mode == ScscfMode::Proxy && self.scscf.address.ip().is_unspecified() {
            return bad(
                "scscf.address",
                "proxy mode needs the S-CSCF's address (where REGISTERs go)".into(),
            );
        }
        if self.scscf.mode == ScscfMode::Proxy && self.scscf.address == self.advertise_addr() {
            return bad(
                "scscf.address",
                format!(
                    "{} is this P-CSCF itself: proxy mode would forward REGISTERs to itself",
                    self.scscf.address
                ),
            );
        }
        Ok(())
    }

    /// The address to put in SAs, Path, Service-Route, Via and Record-Route:
    /// `sip.advertise` (or the IP of `sip.listen`) with the port of `sip.listen`. After
    /// [`Config::validate`] it is never the unspecified address. When `sip.listen` has
    /// port 0 the port is 0 too: the shell substitutes the port it actually bound.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.sip.advertise_addr()
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
        self.hss.origin_host("pcscf", &self.sip.domain)
    }

    /// Realm on Cx.
    pub fn realm(&self) -> String {
        self.hss.realm(&self.sip.domain)
    }

    /// `scscf.address` with an unspecified IP replaced by the advertise IP.
    pub fn scscf_address(&self) -> SocketAddr {
        let mut a = self.scscf.address;
        if a.ip().is_unspecified() {
            a.set_ip(self.advertise_addr().ip());
        }
        a
    }

    /// P-Visited-Network-ID in proxy mode.
    pub fn visited_network_id(&self) -> String {
        self.scscf
            .visited_network_id
            .clone()
            .unwrap_or_else(|| self.sip.domain.clone())
    }

    /// This configuration with every derived default filled in (advertise address,
    /// Origin-Host, realm, P-Visited-Network-ID), as `config check` prints it.
    pub fn effective(&self) -> Config {
        let mut c = self.clone();
        c.sip.advertise = Some(self.advertise_addr().ip());
        c.hss.origin_host = Some(self.origin_host());
        c.hss.realm = Some(self.realm());
        c.scscf.visited_network_id = Some(self.visited_network_id());
        c.scscf.address = self.scscf_address();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_the_example_tells_them() {
        let d = Config::default();
        assert!(d.validate().is_ok());
        assert_eq!(Config::from_toml("").unwrap(), d);
        assert_eq!(Config::from_toml(EXAMPLE).unwrap(), d);
        opskit::config::check_example(EXAMPLE, &d).unwrap();
    }

    #[test]
    fn home_domain_is_the_shared_one() {
        assert_eq!(Config::default().sip.domain, opskit::HOME_DOMAIN);
        assert_eq!(Config::default().realm(), opskit::HOME_DOMAIN);
    }

    #[test]
    fn unspecified_listen_needs_advertise() {
        for any in ["0.0.0.0:5060", "[::]:5060"] {
            let e = Config::from_toml(&format!("[sip]\nlisten = \"{any}\"\n")).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("sip.advertise"), "{msg}");
            assert!(
                msg.contains("must never end up in an SA, Path or Service-Route"),
                "{msg}"
            );
        }
        let c = Config::from_toml("[sip]\nlisten = \"0.0.0.0:5060\"\nadvertise = \"10.45.0.1\"\n")
            .unwrap();
        assert_eq!(
            c.advertise_addr(),
            "10.45.0.1:5060".parse::<SocketAddr>().unwrap()
        );
        // A dual-stack listener may advertise either family.
        let c = Config::from_toml("[sip]\nlisten = \"[::]:5070\"\nadvertise = \"10.45.0.1\"\n")
            .unwrap();
        assert_eq!(c.advertise_addr().port(), 5070);
    }

    #[test]
    fn advertise_defaults_to_listen_and_must_reach_it() {
        let c = Config::default();
        assert_eq!(c.advertise_addr(), c.sip.listen);
        let c = Config::from_toml("[sip]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        assert_eq!(
            c.advertise_addr(),
            "127.0.0.1:0".parse::<SocketAddr>().unwrap()
        );
        for (listen, adv) in [
            ("127.0.0.1:5060", "10.0.0.1"),
            ("0.0.0.0:5060", "::1"),
            ("0.0.0.0:5060", "0.0.0.0"),
            ("0.0.0.0:5060", "255.255.255.255"),
            ("[::]:5060", "ff02::1"),
        ] {
            let e = Config::from_toml(&format!(
                "[sip]\nlisten = \"{listen}\"\nadvertise = \"{adv}\"\n"
            ))
            .unwrap_err();
            assert!(
                e.to_string().starts_with("sip.advertise"),
                "{listen} {adv}: {e}"
            );
        }
    }

    #[test]
    fn colliding_addresses_are_refused() {
        let e = Config::from_toml("[sip]\nlisten = \"127.0.0.1:31500\"\n").unwrap_err();
        assert!(e.to_string().starts_with("ipsec.port_range"), "{e}");
        let e = Config::from_toml("[metrics]\nlisten = \"127.0.0.1:5060\"\n").unwrap_err();
        assert!(e.to_string().starts_with("metrics.listen"), "{e}");
        let e = Config::from_toml("[scscf]\nmode = \"proxy\"\naddress = \"127.0.0.1:5060\"\n")
            .unwrap_err();
        assert!(e.to_string().starts_with("scscf.address"), "{e}");
        // The same address is fine when nobody forwards to it.
        Config::from_toml("[scscf]\naddress = \"127.0.0.1:5060\"\n").unwrap();
        // Proxy mode must say where to forward.
        let e = Config::from_toml("[scscf]\nmode = \"proxy\"\n").unwrap_err();
        assert!(e.to_string().starts_with("scscf.address"), "{e}");
    }

    #[test]
    fn the_collapsed_scscf_lives_on_the_advertise_ip() {
        assert_eq!(
            Config::default().scscf_address(),
            SocketAddr::from(([127, 0, 0, 1], 6060))
        );
        let c = Config::from_toml("[sip]\nlisten = \"0.0.0.0:5060\"\nadvertise = \"10.45.0.1\"\n")
            .unwrap();
        assert_eq!(
            c.scscf_address(),
            "10.45.0.1:6060".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.effective().scscf.address, c.scscf_address());
        let c = Config::from_toml("[scscf]\naddress = \"127.0.0.5:7000\"\n").unwrap();
        assert_eq!(
            c.scscf_address(),
            "127.0.0.5:7000".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn effective_fills_derived_defaults_and_prints_without_secrets() {
        let c = Config::from_toml("[sip]\ndomain = \"ims.lab\"\n")
            .unwrap()
            .effective();
        assert_eq!(c.hss.origin_host.as_deref(), Some("pcscf.ims.lab"));
        assert_eq!(c.hss.realm.as_deref(), Some("ims.lab"));
        assert_eq!(c.scscf.visited_network_id.as_deref(), Some("ims.lab"));
        assert_eq!(c.sip.advertise, Some(c.sip.listen.ip()));
        c.validate().unwrap();
        let text = opskit::config::render_redacted(&c).unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), c, "{text}");
    }

    #[test]
    fn load_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/pcscf.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/pcscf.toml"), "{e}");
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
        let e = Config::from_toml("[log]\nlevel = \"pcscf=chatty\"\n").unwrap_err();
        assert!(e.to_string().starts_with("log.level"), "{e}");
        let e = Config::from_toml("[registrar]\nauth_timeout = 0\n").unwrap_err();
        assert!(e.to_string().starts_with("registrar.auth_timeout"), "{e}");
        let e = Config::from_toml("[tcp]\nidle_timeout = 0\n").unwrap_err();
        assert!(e.to_string().starts_with("tcp.idle_timeout"), "{e}");
        let e = Config::from_toml("[sip]\nmax_message_size = 100\n").unwrap_err();
        assert!(e.to_string().starts_with("sip.max_message_size"), "{e}");
    }
}
