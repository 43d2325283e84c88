//! `appserver.toml`: every section, its keys, their defaults and why. `appserver config
//! example` prints [`example`], a commented file to start from (each part of the server
//! documents its own section next to its code); `appserver config check FILE` validates one
//! and prints the effective values with secrets redacted.
//!
//! One file serves every role of the binary: `appserver run` reads all of it,
//! `appserver notify-agent` only `[agent]`, `appserver pcap` the pipeline and `[passive]`.

use crate::{
    b2bua, blocklist, calllog, isc, late, mediaplane, numbers, passive, phonebook, pipeline, rest,
    reverse, sinks,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use opskit::config::ConfigError;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[isc]`: the SIP service the S-CSCF's iFCs send calls to.
    pub isc: isc::IscConfig,
    /// `[late]`: late-registration call state.
    pub late: late::LateConfig,
    /// `[numbers]`: E.164 normalisation.
    pub numbers: numbers::NumbersConfig,
    /// `[phonebook]`: names for numbers.
    pub phonebook: phonebook::PhonebookConfig,
    /// `[reverse]`: the optional reverse lookup service.
    pub reverse: reverse::ReverseConfig,
    /// `[blocklist]`: calls answered 603.
    pub blocklist: blocklist::BlocklistConfig,
    /// `[calllog]`: the SQLite call log.
    pub calllog: calllog::CallLogConfig,
    /// `[pipeline]`: call lifetimes and the event bus.
    pub pipeline: pipeline::PipelineConfig,
    /// `[ncid]`: the NCID server sink.
    pub ncid: sinks::ncid::NcidConfig,
    /// `[fritz]`: the Fritz!Box call-monitor sink.
    pub fritz: sinks::fritz::FritzConfig,
    /// `[mqtt]`: the MQTT sink.
    pub mqtt: sinks::mqtt::MqttConfig,
    /// `[datagram]`: the LAN datagram sink.
    pub datagram: sinks::datagram::DatagramConfig,
    /// `[webhook]`: the HTTP POST sink.
    pub webhook: sinks::webhook::WebhookConfig,
    /// `[message]`: the SIP MESSAGE sink.
    pub message: sinks::sipmessage::MessageConfig,
    /// `[passive]`: how wire inputs read SIP and MGCP.
    pub passive: passive::PassiveConfig,
    /// `[live]`: sniffing a live interface.
    pub live: passive::live::LiveConfig,
    /// `[nfqueue]`: inline on an NFQUEUE.
    pub nfqueue: passive::nfqueue::NfqueueConfig,
    /// `[rest]`: the REST API.
    pub rest: rest::RestConfig,
    /// `[bridge]`: the AMR ⇄ PCMA bridge's SIP side (B2BUA), off unless `enabled`.
    pub bridge: b2bua::BridgeConfig,
    /// `[media]`: the bridge's media plane (used only when `[bridge]` is enabled).
    pub media: mediaplane::MediaConfig,
    /// `[agent]`: `appserver notify-agent` on a desktop.
    pub agent: crate::agent::AgentConfig,
    /// `[log]` (see [`opskit::log`]).
    pub log: opskit::log::LogConfig,
    /// `[metrics]`: Prometheus `/metrics`.
    pub metrics: opskit::http::MetricsConfig,
}

/// `[log]` and `[metrics]`, the sections every binary has.
const COMMON_EXAMPLE: &str = r#"[log]
# Log filter: "info", "debug", "warn,appserver=debug"... The RUST_LOG environment variable
# overrides it. Logs go to stderr, in colour only on a terminal.
level = "info"

[metrics]
# Where to serve Prometheus GET /metrics (plain HTTP, no authentication: keep it on a
# management address). Default: off. 127.0.0.1:9093 is the conventional choice.
# listen = "127.0.0.1:9093"
"#;

/// The commented example: every section, every key with its default.
pub fn example() -> String {
    let mut parts = vec![
        "# appserver.toml — every key is optional; the values shown are the defaults.\n\
         # `appserver config check FILE` validates a file and prints the effective values.\n"
            .to_string(),
        isc::EXAMPLE.to_string(),
        late::EXAMPLE.to_string(),
        pipeline::examples(),
        sinks::ncid::EXAMPLE.to_string(),
        sinks::fritz::EXAMPLE.to_string(),
        sinks::mqtt::EXAMPLE.to_string(),
        sinks::datagram::EXAMPLE.to_string(),
        sinks::webhook::EXAMPLE.to_string(),
        sinks::sipmessage::EXAMPLE.to_string(),
        passive::EXAMPLE.to_string(),
        rest::EXAMPLE.to_string(),
        b2bua::EXAMPLE.to_string(),
        mediaplane::EXAMPLE.to_string(),
        crate::agent::EXAMPLE.to_string(),
        COMMON_EXAMPLE.to_string(),
    ];
    for p in &mut parts {
        let t = p.trim_end().len();
        p.truncate(t);
        p.push('\n');
    }
    parts.join("\n")
}

impl Config {
    /// Parses a TOML document (unknown keys are errors: a typo must not silently fall back
    /// to a default).
    pub fn from_toml(s: &str) -> Result<Config, ConfigError> {
        opskit::config::parse(s)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_toml(&opskit::config::read(path)?)
    }

    /// The sections the caller-ID pipeline reads.
    pub fn sections(&self) -> pipeline::Sections {
        pipeline::Sections {
            numbers: self.numbers.clone(),
            phonebook: self.phonebook.clone(),
            reverse: self.reverse.clone(),
            blocklist: self.blocklist.clone(),
            calllog: self.calllog.clone(),
            pipeline: self.pipeline.clone(),
        }
    }

    /// The five network sinks.
    pub fn sinks(&self) -> sinks::SinksConfig {
        sinks::SinksConfig {
            ncid: self.ncid.clone(),
            fritz: self.fritz.clone(),
            mqtt: self.mqtt.clone(),
            datagram: self.datagram.clone(),
            webhook: self.webhook.clone(),
        }
    }

    /// What `config check` prints (secrets are redacted by the renderer).
    pub fn effective(&self) -> &Config {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_the_defaults_and_covers_every_key() {
        let ex = example();
        assert_eq!(Config::from_toml(&ex).unwrap(), Config::default());
        opskit::config::check_example(&ex, &Config::default()).unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::from_toml("[isc]\nlisen = \"127.0.0.1:5070\"\n").is_err());
        assert!(Config::from_toml("[nosuch]\n").is_err());
    }

    #[test]
    fn the_bridge_is_off_unless_enabled_and_its_sections_compose() {
        assert!(!Config::default().bridge.enabled);
        let c = Config::from_toml(
            "[bridge]\nenabled = true\nprefixes = [\"+4930\"]\n\
             [bridge.register]\nuser = \"100\"\npassword = \"pw\"\n\
             [media]\nport_min = 41000\nport_max = 41099\nbackend = \"rust\"\n",
        )
        .unwrap();
        assert!(c.bridge.enabled);
        assert_eq!(c.bridge.register.map(|r| r.expires), Some(600));
        assert_eq!(
            (c.media.port_min, c.media.backend),
            (41000, mediaplane::CodecBackend::Rust)
        );
        assert!(Config::from_toml("[media]\nport = 1\n").is_err());
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }
}
