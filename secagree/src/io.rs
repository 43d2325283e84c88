//! A SIP transport that knows about protected ports: the one shell both the P-CSCF and the UE
//! simulator send and receive through, whatever IPsec backend is active.
//!
//! - Kernel XFRM: protected ports are ordinary UDP/TCP sockets; the kernel's SAs and
//!   policies encrypt and verify transparently.
//! - Userspace ESP: nothing is bound on protected ports; ESP arrives on a raw socket, is
//!   decrypted by the `xfrm` endpoint and injected into the same inbound channel as if a
//!   socket on the protected port had received it. Sends from a protected port go out
//!   through the endpoint. UDP only: there is no userspace TCP stack.
//! - Off: protected ports are plain sockets (lab hosts without IPsec, SIPp).
//!
//! "Arrived on a protected local port" therefore always means "arrived through an SA": with
//! the kernel backend the inbound policies drop plaintext, with the userspace one only
//! decrypted datagrams can reach those ports.

use bytes::Bytes;
use sip::transport::{Inbound, Transport, TransportConfig};
use sip::{Flow, Protocol, Transmit};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use xfrm::{BackendKind, IpsecBackend, KernelBackend, SaSet, Selected, SetId, Side, Tag};

/// Which IPsec to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpsecMode {
    /// No IPsec at all: protected ports are plain sockets.
    Off,
    /// An `xfrm` backend (kernel, userspace or auto).
    Backend(BackendKind),
}

/// Errors of [`SipIo`].
#[derive(Debug, thiserror::Error)]
pub enum SipIoError {
    /// The IPsec backend refused.
    #[error(transparent)]
    Xfrm(#[from] xfrm::XfrmError),
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An SA operation with IPsec off.
    #[error("IPsec is off: no SA can be installed")]
    IpsecOff,
}

enum Ipsec {
    Off,
    Kernel(KernelBackend),
    Userspace(xfrm::UserspaceBackend),
}

impl Ipsec {
    fn backend(&self) -> Option<&dyn IpsecBackend> {
        match self {
            Ipsec::Off => None,
            Ipsec::Kernel(k) => Some(k),
            Ipsec::Userspace(u) => Some(u),
        }
    }
}

/// How many SA sets the key history keeps for [`SipIo::esp_sa_history`].
const HISTORY: usize = 4096;

struct Shared {
    ipsec: Ipsec,
    protected: Mutex<HashSet<SocketAddr>>,
    /// The one remote address each restricted protected port takes TCP from
    /// ([`SipIo::restrict_tcp`]).
    tcp_peers: Mutex<HashMap<SocketAddr, SocketAddr>>,
    history: Mutex<VecDeque<SaSet>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere mid-update; the sets stay consistent enough
    // to keep serving (each update is a single insert/remove).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIP transport plus IPsec. Cheap to clone.
#[derive(Clone)]
pub struct SipIo {
    transport: Transport,
    shared: Arc<Shared>,
}

impl SipIo {
    /// Opens the transport and the IPsec backend (flushing our leftover kernel state, tag
    /// `tag`). The receiver yields everything received, from sockets and from ESP.
    pub async fn start(
        mode: IpsecMode,
        tag: Tag,
        cfg: TransportConfig,
    ) -> Result<(SipIo, mpsc::Receiver<Inbound>), SipIoError> {
        let (transport, rx) = Transport::new(cfg);
        let ipsec = match mode {
            IpsecMode::Off => Ipsec::Off,
            IpsecMode::Backend(kind) => match xfrm::select(kind, tag)? {
                Selected::Kernel(k) => Ipsec::Kernel(k),
                Selected::Userspace(u, esp_rx) => {
                    tokio::spawn(forward_esp(esp_rx, transport.inbound_sender()));
                    Ipsec::Userspace(u)
                }
            },
        };
        let shared = Arc::new(Shared {
            ipsec,
            protected: Mutex::new(HashSet::new()),
            tcp_peers: Mutex::new(HashMap::new()),
            history: Mutex::new(VecDeque::new()),
        });
        let weak = Arc::downgrade(&shared);
        transport.set_accept_filter(Arc::new(move |local, remote| {
            weak.upgrade()
                .is_none_or(|s| lock(&s.tcp_peers).get(&local).is_none_or(|p| *p == remote))
        }));
        Ok((SipIo { transport, shared }, rx))
    }

    /// The underlying transport (bind the unprotected ports here).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// "kernel", "userspace" or "off".
    pub fn backend_name(&self) -> &'static str {
        match &self.shared.ipsec {
            Ipsec::Off => "off",
            Ipsec::Kernel(_) => "kernel",
            Ipsec::Userspace(_) => "userspace",
        }
    }

    /// Whether SA operations may block the calling thread: the kernel backend waits for
    /// netlink answers; the userspace backend and IPsec off only touch memory.
    pub fn may_block(&self) -> bool {
        matches!(self.shared.ipsec, Ipsec::Kernel(_))
    }

    /// Whether SAs can be installed.
    pub fn has_ipsec(&self) -> bool {
        !matches!(self.shared.ipsec, Ipsec::Off)
    }

    /// Is `local` one of our open protected ports?
    pub fn is_protected(&self, local: SocketAddr) -> bool {
        lock(&self.shared.protected).contains(&local)
    }

    /// Opens a protected client and server port on `ip`: UDP and TCP sockets with the
    /// kernel backend or without IPsec; with userspace ESP only the bookkeeping.
    pub async fn open_protected(
        &self,
        ip: IpAddr,
        port_c: u16,
        port_s: u16,
    ) -> Result<(), SipIoError> {
        let addrs = [SocketAddr::new(ip, port_c), SocketAddr::new(ip, port_s)];
        if !matches!(self.shared.ipsec, Ipsec::Userspace(_)) {
            for (i, a) in addrs.iter().enumerate() {
                let r = async {
                    self.transport.bind_udp(*a).await?;
                    self.transport.bind_tcp(*a).await
                }
                .await;
                if let Err(source) = r {
                    // Leave nothing half-open.
                    for b in &addrs[..=i] {
                        self.transport.unbind(*b, Protocol::Udp);
                        self.transport.unbind(*b, Protocol::Tcp);
                    }
                    return Err(SipIoError::Io {
                        what: format!("bind protected port {a}"),
                        source,
                    });
                }
            }
        }
        lock(&self.shared.protected).extend(addrs);
        Ok(())
    }

    /// Accepts TCP connections on the protected port `local` only from `remote`, the peer
    /// port its SA pairs it with (TS 33.203 §7.1: the P-CSCF's protected server port talks
    /// to the UE's protected client port, its protected client port to the UE's protected
    /// server port). Anybody else's connection is closed before a byte is read: with IPsec
    /// off this is the only thing that keeps a stranger off the port, with the kernel
    /// backend the SA policies already drop its plaintext. Lasts until
    /// [`SipIo::close_protected`].
    pub fn restrict_tcp(&self, local: SocketAddr, remote: SocketAddr) {
        lock(&self.shared.tcp_peers).insert(local, remote);
    }

    /// Closes protected ports opened by [`SipIo::open_protected`], with their TCP
    /// connections.
    pub fn close_protected(&self, ip: IpAddr, port_c: u16, port_s: u16) {
        let addrs = [SocketAddr::new(ip, port_c), SocketAddr::new(ip, port_s)];
        let mut p = lock(&self.shared.protected);
        let mut peers = lock(&self.shared.tcp_peers);
        for a in addrs {
            peers.remove(&a);
            p.remove(&a);
            if !matches!(self.shared.ipsec, Ipsec::Userspace(_)) {
                self.transport.unbind(a, Protocol::Udp);
                self.transport.unbind(a, Protocol::Tcp);
            }
        }
    }

    fn backend(&self) -> Result<&dyn IpsecBackend, SipIoError> {
        self.shared.ipsec.backend().ok_or(SipIoError::IpsecOff)
    }

    /// Installs a (temporary) SA set as `side`.
    pub fn install(&self, set: &SaSet, side: Side) -> Result<SetId, SipIoError> {
        let id = self.backend()?.install(set, side)?;
        let mut h = lock(&self.shared.history);
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(set.clone());
        Ok(id)
    }

    /// Temporary → established, valid for `lifetime`.
    pub fn promote(&self, id: SetId, lifetime: Duration, now: Instant) -> Result<(), SipIoError> {
        Ok(self.backend()?.promote(id, lifetime, now)?)
    }

    /// Established → expiring: still usable for `grace` (final responses go out protected).
    pub fn begin_expiry(&self, id: SetId, grace: Duration, now: Instant) -> Result<(), SipIoError> {
        Ok(self.backend()?.begin_expiry(id, grace, now)?)
    }

    /// Removes a set (SAs and policies).
    pub fn delete(&self, id: SetId) -> Result<(), SipIoError> {
        Ok(self.backend()?.delete(id)?)
    }

    /// Installed sets.
    pub fn live_sets(&self) -> Vec<(SetId, SaSet, Side)> {
        self.shared
            .ipsec
            .backend()
            .map(|b| b.live_sets())
            .unwrap_or_default()
    }

    /// Removes all our sets.
    pub fn flush(&self) -> Result<usize, SipIoError> {
        match self.shared.ipsec.backend() {
            Some(b) => Ok(b.flush()?),
            None => Ok(0),
        }
    }

    /// Sends a message's bytes. From a protected port with userspace ESP: encrypted by the
    /// endpoint; otherwise through the sockets.
    pub async fn send(&self, t: &Transmit) -> Result<(), SipIoError> {
        if let (Ipsec::Userspace(u), Some(local), Protocol::Udp) =
            (&self.shared.ipsec, t.flow.local, t.flow.protocol)
        {
            if self.is_protected(local) {
                return Ok(u.send_udp(local, t.flow.remote, &t.payload)?);
            }
        }
        self.transport
            .send(t)
            .await
            .map_err(|source| SipIoError::Io {
                what: format!("send to {}", t.flow.remote),
                source,
            })
    }

    /// Wireshark `esp_sa` UAT of the live sets.
    pub fn esp_sa_uat(&self) -> String {
        let sets: Vec<SaSet> = self.live_sets().into_iter().map(|(_, s, _)| s).collect();
        xfrm::uat::esp_sa_file(sets.iter())
    }

    /// Wireshark `esp_sa` UAT of every set installed since start (the last few thousand),
    /// so a capture of a whole session decrypts, retired sets included.
    pub fn esp_sa_history(&self) -> String {
        let h = lock(&self.shared.history);
        xfrm::uat::esp_sa_file(h.iter())
    }
}

/// Hands decrypted datagrams to the SIP inbound channel as if a socket on the protected
/// port had received them.
async fn forward_esp(mut esp_rx: mpsc::Receiver<xfrm::Inbound>, sip_tx: mpsc::Sender<Inbound>) {
    while let Some(pkt) = esp_rx.recv().await {
        match pkt {
            xfrm::Inbound::Udp {
                src, dst, payload, ..
            } => {
                let inbound = Inbound {
                    flow: Flow::new(dst, src, Protocol::Udp),
                    data: Bytes::from(payload),
                };
                if sip_tx.send(inbound).await.is_err() {
                    return;
                }
            }
            xfrm::Inbound::Tcp { src, dst, .. } => {
                tracing::warn!(
                    %src, %dst,
                    "TCP over userspace ESP is not supported (no userspace TCP stack); \
                     segment dropped: use UDP or the kernel backend"
                );
            }
        }
    }
}
