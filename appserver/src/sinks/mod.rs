//! # Notification sinks: every way a [`CallEvent`] leaves the application server
//!
//! Each sink subscribes to the [`EventBus`] on its own (`bus.subscribe()`), turns events
//! into its wire format with a pure function (table-tested in its module), and writes them
//! from one tokio task. No sink can slow a call down: the bus is a broadcast channel, and a
//! sink that falls behind loses the oldest events and logs how many ([`Subscription`]).
//!
//! | module | peer | default | format |
//! |---|---|---|---|
//! | [`json`] | (shared) | — | the one JSON form of an event (`v: 1`), for MQTT, datagram and webhook |
//! | [`ncid`] | NCID clients (TCP server) | off, `127.0.0.1:3333` | `CID:`/`BLK:`/`CIDINFO:` lines |
//! | [`fritz`] | Fritz!Box call-monitor clients (TCP server) | off, `127.0.0.1:1012` | `RING`/`CONNECT`/`DISCONNECT` lines |
//! | [`mqtt`] | an MQTT broker | off | JSON on `imslab/calls`, QoS 1; Home Assistant discovery |
//! | [`datagram`] | desktops on the LAN (`appserver notify-agent`) | off, `255.255.255.255:4711` | JSON in one UDP datagram |
//! | [`webhook`] | an HTTP endpoint | off | JSON in a POST, bounded retries |
//!
//! Every sink is off unless its section says `enabled = true`; [`SinksConfig::spawn`]
//! starts the enabled ones. A sink ends when the [`Shutdown`] watch turns `true` (or its
//! sender is dropped) or when the bus closes. Servers bind before `spawn` returns, so a
//! port in use is a start-up error, not a log line.

pub mod datagram;
pub mod fritz;
pub mod json;
pub mod mqtt;
pub mod ncid;
pub mod sipmessage;
mod tcp;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::event::{CallEvent, EventBus};

/// Stops the sinks: they end when the value becomes `true` or the sender is dropped. The
/// lead's `main.rs` holds the sender and flips it on SIGTERM.
pub type Shutdown = watch::Receiver<bool>;

/// Counters every sink keeps, for logs, `/metrics` and tests.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events (or lines, or datagrams) delivered to the peer.
    pub sent: AtomicU64,
    /// Deliveries that failed for good (after the retries the sink makes).
    pub failed: AtomicU64,
    /// Events lost because the sink lagged behind the bus.
    pub lost: AtomicU64,
    /// Clients connected right now (the TCP servers only).
    pub clients: AtomicU64,
}

impl SinkStats {
    /// Reads a counter (relaxed: these are statistics, not synchronisation).
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A running sink.
#[derive(Debug)]
pub struct SinkHandle {
    /// The sink's name (`ncid`, `fritz`, `mqtt`, `datagram`, `webhook`).
    pub name: &'static str,
    /// Its task; ends on shutdown or when the bus closes.
    pub task: JoinHandle<()>,
    /// Its counters.
    pub stats: Arc<SinkStats>,
    /// The bound address of a server sink (NCID, Fritz!Box) or the local address of the
    /// datagram socket; `None` for client sinks.
    pub local_addr: Option<SocketAddr>,
}

/// Why a sink could not start. Failures after the start are logged and retried instead.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A configured address does not parse.
    #[error("[{section}] {key} = {value:?}: {reason}")]
    Config {
        /// The TOML section.
        section: &'static str,
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket could not be bound or set up.
    #[error("{sink}: cannot use {addr}: {source}")]
    Bind {
        /// The sink.
        sink: &'static str,
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built (TLS backend).
    #[error("webhook: cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The five sink sections of the TOML file, as the lead's `config.rs` composes them
/// (`[ncid]`, `[fritz]`, `[mqtt]`, `[datagram]`, `[webhook]`; examples in each module's
/// `EXAMPLE`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// `[ncid]`: the NCID server.
    pub ncid: ncid::NcidConfig,
    /// `[fritz]`: the Fritz!Box call-monitor server.
    pub fritz: fritz::FritzConfig,
    /// `[mqtt]`: the MQTT publisher.
    pub mqtt: mqtt::MqttConfig,
    /// `[datagram]`: the UDP datagram sender.
    pub datagram: datagram::DatagramConfig,
    /// `[webhook]`: the HTTP POST sender.
    pub webhook: webhook::WebhookConfig,
}

impl SinksConfig {
    /// Starts every enabled sink on `bus`. Call inside a tokio runtime. On an error the
    /// sinks already started keep running until `shutdown`.
    pub async fn spawn(
        &self,
        bus: &EventBus,
        shutdown: &Shutdown,
    ) -> Result<Vec<SinkHandle>, SinkError> {
        let mut out = Vec::new();
        if self.ncid.enabled {
            out.push(ncid::spawn(&self.ncid, bus, shutdown.clone()).await?);
        }
        if self.fritz.enabled {
            out.push(fritz::spawn(&self.fritz, bus, shutdown.clone()).await?);
        }
        if self.mqtt.enabled {
            out.push(mqtt::spawn(&self.mqtt, bus, shutdown.clone())?);
        }
        if self.datagram.enabled {
            out.push(datagram::spawn(&self.datagram, bus, shutdown.clone())?);
        }
        if self.webhook.enabled {
            out.push(webhook::spawn(&self.webhook, bus, shutdown.clone())?);
        }
        Ok(out)
    }
}

/// A sink's view of the bus: the next event, or `None` once it should end. Lag is logged
/// and counted, never fatal: a notification for a call long gone is worth less than the
/// next call's.
#[derive(Debug)]
pub struct Subscription {
    name: &'static str,
    rx: broadcast::Receiver<Arc<CallEvent>>,
    shutdown: Shutdown,
    stats: Arc<SinkStats>,
}

impl Subscription {
    /// Subscribes `name` to `bus`.
    pub fn new(
        name: &'static str,
        bus: &EventBus,
        shutdown: Shutdown,
        stats: Arc<SinkStats>,
    ) -> Self {
        Self {
            name,
            rx: bus.subscribe(),
            shutdown,
            stats,
        }
    }

    /// The next event; `None` on shutdown or when the bus is closed.
    pub async fn next(&mut self) -> Option<Arc<CallEvent>> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(ev) => return Some(ev),
                    Err(RecvError::Lagged(n)) => {
                        SinkStats::add(&self.stats.lost, n);
                        tracing::warn!(sink = self.name, lost = n, "sink lagged behind the event bus; events lost");
                    }
                    Err(RecvError::Closed) => return None,
                },
                r = self.shutdown.changed() => {
                    if r.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// Resolves when the sink should end (for loops that wait on something else).
    pub async fn stopped(shutdown: &mut Shutdown) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Exponential backoff: `base · 2^attempt`, capped at `max` (attempt 0 → `base`).
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

/// Parses a `host:port` socket address of a config section.
pub(crate) fn parse_addr(
    section: &'static str,
    key: &'static str,
    value: &str,
) -> Result<SocketAddr, SinkError> {
    value
        .parse()
        .map_err(|e: std::net::AddrParseError| SinkError::Config {
            section,
            key,
            value: value.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Events for the sinks' table tests.
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crate::event::*;

    /// 2026-03-05 14:07:09 UTC.
    pub const T0: u64 = 1_772_719_629;

    /// An event of a call from Alice (+4930123456) to +4940999 at `T0 + secs`.
    pub fn event(kind: CallEventKind, secs: u64) -> CallEvent {
        CallEvent {
            conn: 3,
            call_id: "abc@ue".into(),
            kind,
            at: UNIX_EPOCH + Duration::from_secs(T0 + secs),
            started: UNIX_EPOCH + Duration::from_secs(T0),
            caller: Caller {
                number: Some("+4930123456".into()),
                name: Some("Alice".into()),
                name_source: NameSource::Phonebook,
                anonymous: false,
            },
            callee: Callee {
                number: Some("+4940999".into()),
                uri: "sip:+4940999@ims.lab".into(),
            },
            source: Source::Isc,
        }
    }

    /// The same call from a withheld number.
    pub fn anonymous(kind: CallEventKind, secs: u64) -> CallEvent {
        let mut e = event(kind, secs);
        e.caller = Caller {
            number: None,
            name: Some("Anonymous".into()),
            name_source: NameSource::Anonymous,
            anonymous: true,
        };
        e
    }

    /// `SystemTime` at `T0 + secs`.
    pub fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let (b, m) = (Duration::from_millis(500), Duration::from_secs(5));
        let got: Vec<u128> = (0..6).map(|a| backoff(a, b, m).as_millis()).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX, b, m), m);
    }

    #[tokio::test]
    async fn subscription_counts_lag_and_ends_on_shutdown() {
        let (bus, _) = broadcast::channel(2);
        let (tx, rx) = watch::channel(false);
        let stats = Arc::new(SinkStats::default());
        let mut sub = Subscription::new("t", &bus, rx, stats.clone());
        for i in 0..5 {
            let _ = bus.send(Arc::new(testutil::event(
                crate::event::CallEventKind::Ring,
                i,
            )));
        }
        let first = sub.next().await.map(|e| e.at);
        assert_eq!(first, Some(testutil::at(3)));
        assert_eq!(SinkStats::get(&stats.lost), 3);
        tx.send_replace(true);
        assert!(sub.next().await.is_none());
    }

    #[tokio::test]
    async fn subscription_ends_when_bus_closes() {
        let (bus, _) = broadcast::channel(2);
        let (_tx, rx) = watch::channel(false);
        let mut sub = Subscription::new("t", &bus, rx, Arc::default());
        drop(bus);
        assert!(sub.next().await.is_none());
    }
}
