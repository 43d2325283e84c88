//! Interop rewrite rules ([`siprewrite`]) at the P-CSCF's wire: which [`Direction`] a
//! message travels, the rules applied to its bytes where the shell receives and sends,
//! the DSCP of what is sent, and the SIGHUP reload of `[rewrite] file`.
//!
//! Directions: what arrives from `[scscf] address` in proxy mode is `from_core`, what is
//! sent there `to_core`; what arrives at or leaves the collapsed S-CSCF's own address (the
//! ISC side) is `from_as` / `to_as`; everything else is the UE's (`from_ue` / `to_ue`).
//! In collapsed mode the P-CSCF and the S-CSCF hand messages over in memory: there is no
//! wire between them, so `to_core`/`from_core` rules see nothing there.
//!
//! The cores never know: inbound rules run before a core parses the bytes, outbound rules
//! after it encoded them, so a core's transaction state keeps what it sent (a mapped
//! status code reaches the UE; the P-CSCF's own transaction still saw the original).

use crate::node::Role;
use bytes::Bytes;
use sip::transport::Transport;
use sip::{Flow, Limits, Protocol, Transmit};
use siprewrite::{Direction, FileError, RuleSet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// Receive queue asked for on the UDP socket we bind ourselves (see
/// [`Rewriter::bind_udp`]): a registration burst must not overflow the kernel's default.
const UDP_RCVBUF: usize = 8 << 20;

/// The rules in force and where they apply. Cheap to consult per message: a direction
/// without rules costs one lookup, no parse.
pub struct Rewriter {
    rules: watch::Receiver<Arc<RuleSet>>,
    file: Option<PathBuf>,
    upstream: Option<SocketAddr>,
    scscf: Option<SocketAddr>,
    limits: Limits,
    /// Duplicates of the UDP sockets bound through [`Rewriter::bind_udp`]: the same
    /// kernel socket, so its IP_TOS/IPV6_TCLASS can be set for one datagram.
    dscp_sockets: Mutex<HashMap<SocketAddr, socket2::Socket>>,
    /// Whether the operator has been told once that a DSCP could not be applied.
    unmarked_told: AtomicBool,
    _reload: Option<tokio::task::JoinHandle<()>>,
}

/// Where this P-CSCF's directions lead.
#[derive(Debug, Clone, Copy)]
pub struct Peers {
    /// Proxy mode: the S-CSCF's address (`to_core` / `from_core`).
    pub upstream: Option<SocketAddr>,
    /// Collapsed mode: our S-CSCF's own address (`to_as` / `from_as`).
    pub scscf: Option<SocketAddr>,
}

impl Peers {
    /// The peers a configuration names.
    pub fn of(cfg: &crate::Config) -> Peers {
        match cfg.scscf.mode {
            crate::config::ScscfMode::Proxy => Peers {
                upstream: Some(cfg.scscf.address),
                scscf: None,
            },
            crate::config::ScscfMode::Collapsed => Peers {
                upstream: None,
                scscf: Some(cfg.scscf_address()),
            },
        }
    }
}

impl Rewriter {
    /// The rules of `file` (none when `None`), with SIGHUP reloading the file. Must run
    /// inside a tokio runtime when `file` is set.
    pub fn start(file: Option<&Path>, peers: Peers, limits: Limits) -> Result<Self, FileError> {
        let rules = match file {
            Some(p) => RuleSet::load_file(p)?,
            None => RuleSet::default(),
        };
        if let Some(p) = file {
            tracing::info!("rewrite rules from {}: {} rules", p.display(), rules.len());
        }
        let (tx, rx) = watch::channel(Arc::new(rules));
        // The handler is in place before start returns: a SIGHUP right after "ready" must
        // reload, not end the process (the default action).
        let reload = file.and_then(|p| match signal(SignalKind::hangup()) {
            Ok(hup) => Some(tokio::spawn(reload_on_hangup(p.to_path_buf(), hup, tx))),
            Err(e) => {
                tracing::warn!("no SIGHUP handler ({e}): rewrite rules will not reload");
                None
            }
        });
        Ok(Rewriter {
            rules: rx,
            file: file.map(Path::to_path_buf),
            upstream: peers.upstream,
            scscf: peers.scscf,
            limits,
            dscp_sockets: Mutex::new(HashMap::new()),
            unmarked_told: AtomicBool::new(false),
            _reload: reload,
        })
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.borrow().clone()
    }

    /// The direction of bytes received on `flow`.
    pub fn inbound_direction(&self, flow: &Flow) -> Direction {
        if self.upstream == Some(flow.remote) {
            Direction::FromCore
        } else if self.scscf.is_some() && flow.local == self.scscf {
            Direction::FromAs
        } else {
            Direction::FromUe
        }
    }

    /// The direction of a core's transmit.
    pub fn outbound_direction(&self, role: Role, flow: &Flow) -> Direction {
        match role {
            Role::Scscf => Direction::ToAs,
            Role::Pcscf if self.upstream == Some(flow.remote) => Direction::ToCore,
            Role::Pcscf => Direction::ToUe,
        }
    }

    /// Bytes received on `flow`, rewritten by the `from_*` rules (unchanged when none
    /// matches).
    pub fn inbound(&self, flow: &Flow, data: Bytes) -> Bytes {
        let dir = self.inbound_direction(flow);
        let rules = self.rules.borrow();
        match rules.apply_bytes(dir, &data, &self.limits) {
            Some(w) => {
                log(dir, &flow.remote, &w.outcome);
                w.bytes.unwrap_or(data)
            }
            None => data,
        }
    }

    /// A transmit of `role`, rewritten by the `to_*` rules, with the DSCP to send it with.
    pub fn outbound(&self, role: Role, mut t: Transmit) -> (Transmit, Option<u8>) {
        let dir = self.outbound_direction(role, &t.flow);
        let rules = self.rules.borrow();
        let Some(w) = rules.apply_bytes(dir, &t.payload, &self.limits) else {
            return (t, None);
        };
        log(dir, &t.flow.remote, &w.outcome);
        if let Some(b) = w.bytes {
            t.payload = b;
        }
        (t, w.outcome.dscp)
    }

    /// Binds a UDP socket into `transport` as [`Transport::bind_udp`] does, keeping a
    /// duplicate of it so that [`Rewriter::send_with_dscp`] can mark datagrams sent from
    /// it. Without a rules file this is exactly [`Transport::bind_udp`].
    pub async fn bind_udp(
        &self,
        transport: &Transport,
        addr: SocketAddr,
    ) -> std::io::Result<SocketAddr> {
        if self.file.is_none() {
            return transport.bind_udp(addr).await;
        }
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: without CAP_NET_ADMIN the kernel caps it at rmem_max.
        let _ = s.set_recv_buffer_size(UDP_RCVBUF);
        s.bind(&addr.into())?;
        s.set_nonblocking(true)?;
        let dup = s.try_clone()?;
        let local = transport.attach_udp(tokio::net::UdpSocket::from_std(s.into())?)?;
        self.dscp_sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(local, dup);
        Ok(local)
    }

    /// Sends `t` with `dscp` when it leaves from a UDP socket bound through
    /// [`Rewriter::bind_udp`]: sets IP_TOS (IPV6_TCLASS), sends, restores, with no await in
    /// between so no other datagram of ours goes out marked. Returns false when it could
    /// not (TCP, a protected port, a full socket buffer): the caller sends as usual and the
    /// message goes unmarked.
    pub fn send_with_dscp(&self, t: &Transmit, dscp: u8) -> bool {
        if t.flow.protocol != Protocol::Udp {
            self.tell_unmarked(t);
            return false;
        }
        let socks = self.dscp_sockets.lock().unwrap_or_else(|e| e.into_inner());
        let sock = match t.flow.local {
            Some(l) => socks.get(&l),
            None => socks
                .iter()
                .find(|(a, _)| a.is_ipv4() == t.flow.remote.is_ipv4())
                .map(|(_, s)| s),
        };
        let Some(sock) = sock else {
            self.tell_unmarked(t);
            return false;
        };
        // DSCP is the upper six bits of the TOS / traffic class octet (RFC 2474 §3).
        let tos = u32::from(dscp) << 2;
        let v6 = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.is_ipv6());
        let set = |v: u32| {
            if v6 {
                sock.set_tclass_v6(v)
            } else {
                sock.set_tos_v4(v)
            }
        };
        let old = if v6 { sock.tclass_v6() } else { sock.tos_v4() }.unwrap_or(0);
        if set(tos).is_err() {
            return false;
        }
        let sent = sock.send_to(&t.payload, &t.flow.remote.into());
        if let Err(e) = set(old) {
            tracing::warn!("restoring the TOS of {:?}: {e}", t.flow.local);
        }
        match sent {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(to = %t.flow.remote, "marked send failed ({e}); sending unmarked");
                false
            }
        }
    }
}

impl Rewriter {
    /// Once per process: a rule's DSCP reaches only the unprotected UDP socket today, and
    /// an operator who set one must learn that the rest goes out unmarked.
    fn tell_unmarked(&self, t: &Transmit) {
        if !self.unmarked_told.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                local = ?t.flow.local, protocol = %t.flow.protocol,
                "rewrite: a rule's dscp applies to the unprotected UDP socket only; \
                 this and later messages over TCP or IPsec ports go out unmarked"
            );
        }
    }
}

fn log(dir: Direction, remote: &SocketAddr, o: &siprewrite::Outcome) {
    tracing::debug!(%dir, %remote, rules = ?o.rules, changed = o.changed, dscp = ?o.dscp, "rewrite");
    for w in &o.warnings {
        tracing::warn!(%dir, %remote, rules = ?o.rules, "rewrite: {w}");
    }
}

/// Reloads `file` into `tx`. A file that does not load leaves the rules in force as they
/// were; the error names the file and the rule.
pub fn reload(file: &Path, tx: &watch::Sender<Arc<RuleSet>>) -> Result<usize, FileError> {
    let rules = RuleSet::load_file(file)?;
    let n = rules.len();
    tx.send_replace(Arc::new(rules));
    Ok(n)
}

async fn reload_on_hangup(file: PathBuf, mut hup: Signal, tx: watch::Sender<Arc<RuleSet>>) {
    loop {
        tokio::select! {
            r = hup.recv() => {
                if r.is_none() {
                    return;
                }
                match reload(&file, &tx) {
                    Ok(n) => tracing::info!("rewrite rules reloaded from {}: {n} rules", file.display()),
                    Err(e) => tracing::error!("{e}; the previous rewrite rules stay in force"),
                }
            }
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(local: u16, remote: u16) -> Flow {
        Flow::new(
            SocketAddr::from(([127, 0, 0, 1], local)),
            SocketAddr::from(([127, 0, 0, 1], remote)),
            Protocol::Udp,
        )
    }

    #[test]
    fn directions_follow_the_peers() {
        let proxy = Rewriter::start(
            None,
            Peers {
                upstream: Some(SocketAddr::from(([127, 0, 0, 1], 6060))),
                scscf: None,
            },
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            proxy.inbound_direction(&flow(5060, 6060)),
            Direction::FromCore
        );
        assert_eq!(
            proxy.inbound_direction(&flow(5060, 40000)),
            Direction::FromUe
        );
        assert_eq!(
            proxy.outbound_direction(Role::Pcscf, &flow(5060, 6060)),
            Direction::ToCore
        );
        assert_eq!(
            proxy.outbound_direction(Role::Pcscf, &flow(5060, 40000)),
            Direction::ToUe
        );
        let collapsed = Rewriter::start(
            None,
            Peers {
                upstream: None,
                scscf: Some(SocketAddr::from(([127, 0, 0, 1], 6060))),
            },
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            collapsed.inbound_direction(&flow(6060, 7000)),
            Direction::FromAs
        );
        assert_eq!(
            collapsed.inbound_direction(&flow(5060, 7000)),
            Direction::FromUe
        );
        assert_eq!(
            collapsed.outbound_direction(Role::Scscf, &flow(6060, 7000)),
            Direction::ToAs
        );
    }

    #[test]
    fn reload_keeps_the_old_rules_when_the_new_file_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rules.toml");
        std::fs::write(&p, "[[to_ue]]\nname = \"one\"\ndscp = 1\n").unwrap();
        let (tx, rx) = watch::channel(Arc::new(RuleSet::load_file(&p).unwrap()));
        std::fs::write(&p, "[[to_ue]]\nname = \"broken\"\ndscp = 64\n").unwrap();
        let e = reload(&p, &tx).unwrap_err().to_string();
        assert!(
            e.contains("\"broken\"") && e.contains(p.to_str().unwrap()),
            "{e}"
        );
        assert_eq!(
            rx.borrow().names(Direction::ToUe).collect::<Vec<_>>(),
            ["one"]
        );
        std::fs::write(&p, "[[to_ue]]\nname = \"two\"\ndscp = 2\n").unwrap();
        assert_eq!(reload(&p, &tx).unwrap(), 1);
        assert_eq!(
            rx.borrow().names(Direction::ToUe).collect::<Vec<_>>(),
            ["two"]
        );
    }

    #[tokio::test]
    async fn dscp_marks_one_datagram_and_restores_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rules.toml");
        std::fs::write(&p, "[[to_ue]]\nname = \"ef\"\ndscp = 46\n").unwrap();
        let peers = Peers {
            upstream: None,
            scscf: None,
        };
        let rw = Rewriter::start(Some(&p), peers, Limits::default()).unwrap();
        let (transport, _rx) = Transport::new(Default::default());
        let local = rw
            .bind_udp(&transport, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        // The receiver reads the TOS of what arrives (IP_RECVTOS).
        let rx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        rx.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        rx.set_recv_tos_v4(true).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let msg = Bytes::from_static(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
              To: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let t = Transmit::new(Flow::new(local, to, Protocol::Udp), msg.clone());
        let (t, dscp) = rw.outbound(Role::Pcscf, t);
        assert_eq!(dscp, Some(46));
        assert!(rw.send_with_dscp(&t, 46));
        let sock = rw.dscp_sockets.lock().unwrap();
        assert_eq!(sock[&local].tos_v4().unwrap(), 0, "restored after the send");
        drop(sock);
        assert_eq!(recv_tos(&rx), 46 << 2);
        // TCP is not marked: the caller sends it as usual.
        let tcp = Transmit::new(
            Flow::new(local, to, Protocol::Tcp),
            Bytes::from_static(b"x"),
        );
        assert!(!rw.send_with_dscp(&tcp, 46));
    }

    /// The TOS octet of the next datagram on `s` (IP_TOS control message).
    fn recv_tos(s: &socket2::Socket) -> u32 {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 64];
        let mut cmsg = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        // SAFETY: msghdr points at live local buffers with their true lengths for the
        // duration of the recvmsg call; the cmsg walk stays within msg_controllen.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr().cast();
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = cmsg.len() as _;
            assert!(libc::recvmsg(s.as_raw_fd(), &mut msg, 0) > 0);
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_TOS {
                    return u32::from(*libc::CMSG_DATA(c));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        panic!("no IP_TOS control message");
    }
}
