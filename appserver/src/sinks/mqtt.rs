//! # MQTT sink: each event as JSON on a broker topic, and Home Assistant discovery
//!
//! Every event is published to `topic` (default `imslab/calls`) as the [`super::json`]
//! form, QoS 1 (at least once: a broker restart must not drop a call), retain off (an
//! old ring replayed to a new subscriber would look like a new call).
//!
//! With `discovery = true` the sink also announces a Home Assistant MQTT sensor, "Last
//! caller", so HA shows the newest caller without any YAML:
//!
//! - on every (re)connect, retained, QoS 1, to
//!   `<discovery_prefix>/sensor/<discovery_id>/config` (default prefix `homeassistant`):
//!   `{"name":"Last caller","unique_id":"<id>","object_id":"<id>",
//!   "state_topic":"<topic>/last_caller","json_attributes_topic":"<topic>",
//!   "icon":"mdi:phone-incoming","device":{"identifiers":["<id>"],"name":"IMS Lab Core caller ID"}}`
//! - on every ring and blocked event, retained (HA shows it again after a restart), to
//!   `<topic>/last_caller`: [`last_caller`] (`Alice (+4930123456)`, `Anonymous`, …).
//!
//! Connection problems are logged and retried with backoff (1 s doubling to 60 s);
//! events published while the broker is unreachable or slow wait, first in rumqttc's
//! queue ([`QUEUE`] requests), then, while that is full, on the event bus; only events
//! the bus no longer holds are counted lost. The `sent` counter counts the broker's
//! PUBACKs (events, sensor states and discovery configs alike).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};

use super::{backoff, json, Shutdown, SinkError, SinkHandle, SinkStats, Subscription};
use crate::event::{CallEvent, CallEventKind, EventBus};

/// Requests rumqttc holds while the broker is away.
pub const QUEUE: usize = 64;

/// The `[mqtt]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Publish events. Default `false`.
    pub enabled: bool,
    /// Broker host. Default `127.0.0.1` (a broker on this machine).
    pub host: String,
    /// Broker port. Default 1883 (MQTT without TLS).
    pub port: u16,
    /// Topic of the JSON events. Default `imslab/calls`.
    pub topic: String,
    /// MQTT client id. Default `imslab-appserver` (must be unique on the broker).
    pub client_id: String,
    /// User name. Default empty: connect without credentials.
    pub username: String,
    /// Password (with `username`). Default empty.
    pub password: String,
    /// Keep-alive in seconds. Default 30: a dead broker is noticed within a minute.
    pub keep_alive_secs: u64,
    /// Announce the Home Assistant "Last caller" sensor. Default `false`.
    pub discovery: bool,
    /// Home Assistant's discovery prefix. Default `homeassistant` (HA's default).
    pub discovery_prefix: String,
    /// The sensor's id (unique_id, object_id, config topic). Default `imslab_last_caller`.
    pub discovery_id: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            topic: "imslab/calls".into(),
            client_id: "imslab-appserver".into(),
            username: String::new(),
            password: String::new(),
            keep_alive_secs: 30,
            discovery: false,
            discovery_prefix: "homeassistant".into(),
            discovery_id: "imslab_last_caller".into(),
        }
    }
}

/// The `[mqtt]` section as the example configuration shows it.
pub const EXAMPLE: &str = r#"[mqtt]
# Publish each call event as JSON (QoS 1, not retained).
enabled = false
host = "127.0.0.1"
port = 1883
topic = "imslab/calls"
client_id = "imslab-appserver"
# Credentials; empty = anonymous.
username = ""
password = ""
keep_alive_secs = 30
# Home Assistant MQTT discovery: a "Last caller" sensor.
discovery = false
discovery_prefix = "homeassistant"
discovery_id = "imslab_last_caller"
"#;

/// The sensor state for a ring or blocked event: `Name (number)`, the name or number
/// alone, `Anonymous` for a withheld caller, `Unknown` with neither.
pub fn last_caller(ev: &CallEvent) -> String {
    let c = &ev.caller;
    if c.anonymous {
        return c.name.clone().unwrap_or_else(|| "Anonymous".into());
    }
    match (&c.name, &c.number) {
        (Some(name), Some(num)) => format!("{name} ({num})"),
        (Some(name), None) => name.clone(),
        (None, Some(num)) => num.clone(),
        (None, None) => "Unknown".into(),
    }
}

/// The discovery config topic and payload of `cfg`.
pub fn discovery(cfg: &MqttConfig) -> (String, String) {
    let id = &cfg.discovery_id;
    let payload = serde_json::json!({
        "name": "Last caller",
        "unique_id": id,
        "object_id": id,
        "state_topic": format!("{}/last_caller", cfg.topic),
        "json_attributes_topic": cfg.topic,
        "icon": "mdi:phone-incoming",
        "device": {"identifiers": [id], "name": "IMS Lab Core caller ID"},
    });
    (
        format!("{}/sensor/{id}/config", cfg.discovery_prefix),
        payload.to_string(),
    )
}

/// Starts the MQTT publisher. Connecting happens in the task (a broker that is down at
/// start is retried like one that goes away).
pub fn spawn(
    cfg: &MqttConfig,
    bus: &EventBus,
    shutdown: Shutdown,
) -> Result<SinkHandle, SinkError> {
    if cfg.topic.is_empty() || cfg.topic.contains(['+', '#']) {
        return Err(SinkError::Config {
            section: "mqtt",
            key: "topic",
            value: cfg.topic.clone(),
            reason: "a publish topic must be non-empty and without wildcards".into(),
        });
    }
    let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)));
    if !cfg.username.is_empty() {
        opts.set_credentials(&cfg.username, &cfg.password);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, QUEUE);
    let stats = Arc::new(SinkStats::default());
    let mut sub = Subscription::new("mqtt", bus, shutdown.clone(), stats.clone());
    let (cfg, st) = (cfg.clone(), stats.clone());
    let task = tokio::spawn(async move {
        let mut stop = shutdown;
        let mut failures = 0u32;
        // Requests handed to rumqttc and not yet sent to the broker. Events stay on the
        // bus (which holds far more) while its queue is full, so a burst (a pcap read in
        // one go) is published in order instead of overflowing 64 requests.
        let queued = std::sync::atomic::AtomicUsize::new(0);
        let publish = |topic: &str, retain: bool, payload: String| match client.try_publish(
            topic,
            QoS::AtLeastOnce,
            retain,
            payload,
        ) {
            Ok(()) => {
                queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                SinkStats::add(&st.lost, 1);
                tracing::warn!(sink = "mqtt", error = %e, "queue full; message lost");
            }
        };
        loop {
            tokio::select! {
                ev = sub.next(), if queued.load(std::sync::atomic::Ordering::Relaxed) + 2 < QUEUE => {
                    let Some(ev) = ev else { break };
                    publish(&cfg.topic, false, json::encode_local(&ev));
                    if cfg.discovery && matches!(ev.kind, CallEventKind::Ring | CallEventKind::Blocked) {
                        publish(&format!("{}/last_caller", cfg.topic), true, last_caller(&ev));
                    }
                }
                polled = eventloop.poll() => match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(sink = "mqtt", host = %cfg.host, port = cfg.port, "connected");
                        failures = 0;
                        if cfg.discovery {
                            let (topic, payload) = discovery(&cfg);
                            publish(&topic, true, payload);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => SinkStats::add(&st.sent, 1),
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                        let _ = queued.fetch_update(
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                            |q| q.checked_sub(1),
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let pause = backoff(failures, Duration::from_secs(1), Duration::from_secs(60));
                        failures = failures.saturating_add(1);
                        SinkStats::add(&st.failed, 1);
                        tracing::warn!(sink = "mqtt", host = %cfg.host, port = cfg.port, error = %e, retry_in = ?pause, "broker connection failed");
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = Subscription::stopped(&mut stop) => break,
                        }
                    }
                },
            }
        }
        // Best effort: tell the broker we leave, so it does not wait for the keep-alive.
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
    });
    Ok(SinkHandle {
        name: "mqtt",
        task,
        stats,
        local_addr: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Caller, NameSource};
    use crate::sinks::testutil::{anonymous, event};

    #[test]
    fn last_caller_table() {
        let with = |name: Option<&str>, number: Option<&str>| {
            let mut e = event(CallEventKind::Ring, 0);
            e.caller = Caller {
                number: number.map(Into::into),
                name: name.map(Into::into),
                name_source: NameSource::Display,
                anonymous: false,
            };
            last_caller(&e)
        };
        assert_eq!(with(Some("Alice"), Some("+49301")), "Alice (+49301)");
        assert_eq!(with(Some("Alice"), None), "Alice");
        assert_eq!(with(None, Some("+49301")), "+49301");
        assert_eq!(with(None, None), "Unknown");
        assert_eq!(last_caller(&anonymous(CallEventKind::Ring, 0)), "Anonymous");
    }

    #[test]
    fn discovery_config() {
        let (topic, payload) = discovery(&MqttConfig::default());
        assert_eq!(topic, "homeassistant/sensor/imslab_last_caller/config");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["state_topic"], "imslab/calls/last_caller");
        assert_eq!(v["json_attributes_topic"], "imslab/calls");
        assert_eq!(v["unique_id"], "imslab_last_caller");
        assert_eq!(v["device"]["identifiers"][0], "imslab_last_caller");
    }

    #[test]
    fn example_is_the_defaults() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct File {
            mqtt: MqttConfig,
        }
        opskit::config::check_example(EXAMPLE, &File::default()).unwrap();
    }

    #[tokio::test]
    async fn wildcard_topics_are_refused() {
        let (bus, _) = tokio::sync::broadcast::channel(1);
        let (_s, sd) = tokio::sync::watch::channel(false);
        let cfg = MqttConfig {
            topic: "calls/#".into(),
            ..Default::default()
        };
        assert!(matches!(
            spawn(&cfg, &bus, sd),
            Err(SinkError::Config { key: "topic", .. })
        ));
    }
}
