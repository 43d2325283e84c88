//! # Datagram sink: each event as JSON in one UDP datagram
//!
//! For desktops on the LAN (`appserver notify-agent`) and home-automation scripts: no
//! broker, no server, one `recvfrom`. Each event is one datagram whose payload is the
//! [`super::json`] form (UTF-8, no newline), sent to `to`:
//!
//! - unicast `host:port`;
//! - broadcast `255.255.255.255:4711` (the default target; `SO_BROADCAST` is set, which
//!   Linux needs for any broadcast destination, limited or directed);
//! - IPv4 multicast `239.x.y.z:4711`: `multicast_ttl` hops (default 1: this subnet
//!   only), leaving by `multicast_interface` (an interface's IPv4 address; empty: the
//!   routing table's choice).
//!
//! Port 4711 is our choice (no IANA registration is involved for a LAN-local datagram);
//! the agent listens there by default. UDP gives no delivery guarantee and we add none:
//! a lost datagram is a missed pop-up, the call log keeps the truth. Send errors are
//! counted and logged; the sink keeps going.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use super::{json, parse_addr, Shutdown, SinkError, SinkHandle, SinkStats, Subscription};
use crate::event::EventBus;

/// The `[datagram]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatagramConfig {
    /// Send datagrams. Default `false`.
    pub enabled: bool,
    /// Destination. Default `255.255.255.255:4711`: every desktop on this subnet, the
    /// agent's default port.
    pub to: String,
    /// Local address to send from. Default `0.0.0.0:0` (any interface, any port); use
    /// `[::]:0` for an IPv6 destination.
    pub bind: String,
    /// Multicast hop limit. Default 1: a caller's name should not leave the subnet unless
    /// the operator says so.
    pub multicast_ttl: u32,
    /// IPv4 address of the interface multicast leaves by. Default empty: the routing
    /// table's choice.
    pub multicast_interface: String,
}

impl Default for DatagramConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            to: "255.255.255.255:4711".into(),
            bind: "0.0.0.0:0".into(),
            multicast_ttl: 1,
            multicast_interface: String::new(),
        }
    }
}

/// The `[datagram]` section as the example configuration shows it.
pub const EXAMPLE: &str = r#"[datagram]
# Each call event as JSON in one UDP datagram (appserver notify-agent listens on 4711).
enabled = false
# Broadcast to this subnet; or unicast "192.0.2.10:4711", or multicast "239.255.47.11:4711".
to = "255.255.255.255:4711"
bind = "0.0.0.0:0"
# Multicast only: hop limit and outgoing interface address (empty = routing table).
multicast_ttl = 1
multicast_interface = ""
"#;

/// Opens the socket for `cfg` (broadcast and multicast options set).
fn open(cfg: &DatagramConfig) -> Result<(std::net::UdpSocket, SocketAddr), SinkError> {
    let to = parse_addr("datagram", "to", &cfg.to)?;
    let bind = parse_addr("datagram", "bind", &cfg.bind)?;
    let err = |source| SinkError::Bind {
        sink: "datagram",
        addr: cfg.bind.clone(),
        source,
    };
    let sock =
        Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if bind.is_ipv4() {
        sock.set_broadcast(true).map_err(err)?;
    }
    if let IpAddr::V4(v4) = to.ip() {
        if v4.is_multicast() {
            sock.set_multicast_ttl_v4(cfg.multicast_ttl).map_err(err)?;
            if !cfg.multicast_interface.is_empty() {
                let ifa: Ipv4Addr =
                    cfg.multicast_interface
                        .parse()
                        .map_err(|e: std::net::AddrParseError| SinkError::Config {
                            section: "datagram",
                            key: "multicast_interface",
                            value: cfg.multicast_interface.clone(),
                            reason: e.to_string(),
                        })?;
                sock.set_multicast_if_v4(&ifa).map_err(err)?;
            }
        }
    }
    sock.bind(&bind.into()).map_err(err)?;
    sock.set_nonblocking(true).map_err(err)?;
    Ok((sock.into(), to))
}

/// Starts the datagram sender (the socket is opened before returning).
pub fn spawn(
    cfg: &DatagramConfig,
    bus: &EventBus,
    shutdown: Shutdown,
) -> Result<SinkHandle, SinkError> {
    let (std_sock, to) = open(cfg)?;
    let sock = tokio::net::UdpSocket::from_std(std_sock).map_err(|source| SinkError::Bind {
        sink: "datagram",
        addr: cfg.bind.clone(),
        source,
    })?;
    let local = sock.local_addr().ok();
    let stats = Arc::new(SinkStats::default());
    let mut sub = Subscription::new("datagram", bus, shutdown, stats.clone());
    let st = stats.clone();
    let task = tokio::spawn(async move {
        while let Some(ev) = sub.next().await {
            let payload = json::encode_local(&ev);
            match sock.send_to(payload.as_bytes(), to).await {
                Ok(_) => SinkStats::add(&st.sent, 1),
                Err(e) => {
                    SinkStats::add(&st.failed, 1);
                    tracing::warn!(sink = "datagram", %to, error = %e, "send failed");
                }
            }
        }
    });
    Ok(SinkHandle {
        name: "datagram",
        task,
        stats,
        local_addr: local,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{broadcast, watch};

    use super::*;
    use crate::event::CallEventKind;
    use crate::sinks::testutil::event;

    #[test]
    fn example_is_the_defaults() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct File {
            datagram: DatagramConfig,
        }
        opskit::config::check_example(EXAMPLE, &File::default()).unwrap();
    }

    #[test]
    fn bad_addresses_are_config_errors() {
        let cfg = DatagramConfig {
            to: "nowhere".into(),
            ..Default::default()
        };
        assert!(matches!(
            open(&cfg),
            Err(SinkError::Config { key: "to", .. })
        ));
        let cfg = DatagramConfig {
            to: "239.255.47.11:4711".into(),
            multicast_interface: "eth0".into(),
            ..Default::default()
        };
        assert!(matches!(
            open(&cfg),
            Err(SinkError::Config {
                key: "multicast_interface",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn one_datagram_per_event_on_loopback() {
        let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cfg = DatagramConfig {
            enabled: true,
            to: rx.local_addr().unwrap().to_string(),
            bind: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let (bus, _) = broadcast::channel(16);
        let (stop, sd) = watch::channel(false);
        let h = spawn(&cfg, &bus, sd).unwrap();
        bus.send(Arc::new(event(CallEventKind::Ring, 0))).unwrap();
        bus.send(Arc::new(event(CallEventKind::Connect, 2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), rx.recv_from(&mut buf))
                .await
                .expect("datagram within 5 s")
                .unwrap();
            assert_eq!(Some(from), h.local_addr);
            let w = json::decode(&buf[..n]).unwrap();
            assert_eq!(w.caller.name.as_deref(), Some("Alice"));
            kinds.push(w.event);
        }
        assert_eq!(kinds, ["ring", "connect"]);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), h.task)
            .await
            .expect("ends on shutdown")
            .unwrap();
        assert_eq!(SinkStats::get(&h.stats.sent), 2);
    }

    #[tokio::test]
    async fn multicast_options_apply_on_loopback() {
        // Multicast to a group nobody joined still sends; this checks the socket options
        // are accepted with an explicit loopback interface.
        let cfg = DatagramConfig {
            enabled: true,
            to: "239.255.47.11:4711".into(),
            multicast_ttl: 0,
            multicast_interface: "127.0.0.1".into(),
            ..Default::default()
        };
        let (sock, to) = open(&cfg).unwrap();
        assert!(to.ip().is_multicast());
        let s2 = Socket::from(sock);
        assert_eq!(s2.multicast_ttl_v4().unwrap(), 0);
        assert!(s2.broadcast().unwrap());
    }
}
