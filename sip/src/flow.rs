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
    /// A reliable link between two cores in one process (the collapsed P-CSCF and
    /// S-CSCF): messages cross it as parsed [`crate::Message`]s through
    /// [`crate::transaction::Transactions::poll_handoff`], never as bytes and never
    /// through a socket. Via calls it `TCP`: it is reliable and ordered, and RFC 3261
    /// has no token for "no wire at all".
    InProcess,
}

impl Protocol {
    /// True for stream transports, which make timers D/I/J/K zero (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::InProcess)
    }

    /// Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp | Protocol::InProcess => "TCP",
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
    /// The transaction that sent it, if any: a shell that fails to send reports the
    /// failure to exactly this transaction
    /// ([`crate::transaction::Transactions::handle_transport_error`], RFC 3261 §17.1.4).
    pub tx: Option<crate::transaction::TxId>,
}

impl Transmit {
    /// Bytes on a flow, outside any transaction.
    pub fn new(flow: Flow, payload: Bytes) -> Self {
        Transmit {
            flow,
            payload,
            tx: None,
        }
    }
}
