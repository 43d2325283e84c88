//! Addressing shared by the sans-IO core and the transports.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// UDP: unreliable, retransmission timers run (RFC 3261 §17)
    Udp,
    /// TCP: reliable, retransmission timers are zero/unused
    Tcp,
}

impl Protocol {
    /// True for stream transports, which make timers D/I/J/K zero (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        matches!(self, Protocol::Tcp)
    }

    /// Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message came from or goes to.
///
/// `local` selects the socket: the P-CSCF answers from the protected port a
/// request arrived on, and the UE sends from its own protected client port.
/// `None` lets the transport pick its default socket of the right family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// local address (received on / send from)
    pub local: Option<SocketAddr>,
    /// remote address
    pub remote: SocketAddr,
    /// protocol
    pub protocol: Protocol,
}

impl Flow {
    /// A flow with an explicit local address.
    pub fn new(local: SocketAddr, remote: SocketAddr, protocol: Protocol) -> Self {
        Flow {
            local: Some(local),
            remote,
            protocol,
        }
    }

    /// A flow to `remote` from the transport's default socket.
    pub fn to(remote: SocketAddr, protocol: Protocol) -> Self {
        Flow {
            local: None,
            remote,
            protocol,
        }
    }
}

/// Bytes to send on a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// where to send
    pub flow: Flow,
    /// encoded message
    pub payload: Bytes,
}
