//! Thin tokio transports: UDP and TCP on any number of local addresses (IPv4/IPv6),
//! TCP connection reuse, stream framing with a size limit (RFC 3261 §18).
//!
//! Everything received comes out of one channel as [`Inbound`] (raw bytes plus
//! the [`Flow`] they arrived on); parsing and transactions stay sans-IO, so other
//! sources (the userspace ESP backend) can feed the same channel through
//! [`Transport::inbound_sender`] or call [`crate::Message::parse`] directly.
//! Sending takes a [`Transmit`], whose `flow.local` chooses the socket: the
//! P-CSCF answers from the protected port a request arrived on; the UE sends from
//! its own protected client port.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::flow::{Flow, Protocol, Transmit};
use crate::message::{Frame, Limits, Message, StreamFramer};

/// A message (or keep-alive-free datagram) received on a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// local and remote address and protocol (`flow.local` is always `Some`)
    pub flow: Flow,
    /// exactly one framed message (TCP) or one datagram (UDP)
    pub data: Bytes,
}

/// Transport configuration.
#[derive(Debug, Clone, Copy)]
pub struct TransportConfig {
    /// size limits for framing and datagrams
    pub limits: Limits,
    /// capacity of the inbound channel
    pub channel_capacity: usize,
    /// capacity of each TCP connection's outbound queue
    pub conn_queue: usize,
    /// accepted TCP connections beyond this many are closed at once (a flood guard)
    pub max_tcp_connections: usize,
    /// close a TCP connection that received nothing (not even a CRLF keep-alive)
    /// for this long; `None` keeps idle connections open
    pub tcp_idle_timeout: Option<std::time::Duration>,
    /// give up a TCP connect after this long (a peer that vanished never answers the SYN,
    /// and the kernel's own limit is about two minutes); `None` waits as long as the kernel
    pub tcp_connect_timeout: Option<std::time::Duration>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            limits: Limits::default(),
            channel_capacity: 4096,
            conn_queue: 256,
            max_tcp_connections: 10_000,
            tcp_idle_timeout: None,
            tcp_connect_timeout: Some(Duration::from_secs(5)),
        }
    }
}

#[derive(Debug, Clone)]
struct Conn {
    id: u64,
    local: SocketAddr,
    tx: mpsc::Sender<Bytes>,
}

type ConnMap = Arc<Mutex<HashMap<SocketAddr, Vec<Conn>>>>;

/// Decides whether an accepted TCP connection (`local`, `remote`) may stay open; one that
/// may not is closed before a byte is read from it. See [`Transport::set_accept_filter`].
pub type AcceptFilter = Arc<dyn Fn(SocketAddr, SocketAddr) -> bool + Send + Sync>;

struct Bound {
    local: SocketAddr,
    protocol: Protocol,
    udp: Option<Arc<UdpSocket>>,
    task: JoinHandle<()>,
}

struct Inner {
    cfg: TransportConfig,
    bound: Mutex<Vec<Bound>>,
    conns: ConnMap,
    conn_tasks: Arc<Mutex<HashMap<u64, JoinHandle<()>>>>,
    next_conn: std::sync::atomic::AtomicU64,
    inbound: mpsc::Sender<Inbound>,
    accept_filter: Mutex<Option<AcceptFilter>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(b) = self.bound.lock() {
            for x in b.iter() {
                x.task.abort();
            }
        }
        if let Ok(t) = self.conn_tasks.lock() {
            for h in t.values() {
                h.abort();
            }
        }
    }
}

/// A set of UDP sockets, TCP listeners and TCP connections. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // a poisoned lock only means another task panicked mid-update; the maps stay usable
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport {
    /// Creates an empty transport and the receiver of everything it will receive.
    pub fn new(cfg: TransportConfig) -> (Transport, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(cfg.channel_capacity.max(1));
        (
            Transport {
                inner: Arc::new(Inner {
                    cfg,
                    bound: Mutex::new(Vec::new()),
                    conns: Arc::new(Mutex::new(HashMap::new())),
                    conn_tasks: Arc::new(Mutex::new(HashMap::new())),
                    next_conn: std::sync::atomic::AtomicU64::new(1),
                    inbound: tx,
                    accept_filter: Mutex::new(None),
                }),
            },
            rx,
        )
    }

    /// A sender into the inbound channel, for other sources (userspace ESP).
    pub fn inbound_sender(&self) -> mpsc::Sender<Inbound> {
        self.inner.inbound.clone()
    }

    /// Installs the check every accepted TCP connection must pass: a connection it
    /// refuses is closed at once, so nothing the peer sends is ever read. The P-CSCF uses
    /// it to take TCP on a protected port only from the UE that owns the SA there
    /// (TS 33.203 §7.1), the same rule its core applies to every UDP datagram.
    pub fn set_accept_filter(&self, filter: AcceptFilter) {
        *lock(&self.inner.accept_filter) = Some(filter);
    }

    /// Local addresses currently bound.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, Protocol)> {
        lock(&self.inner.bound)
            .iter()
            .map(|b| (b.local, b.protocol))
            .collect()
    }

    /// Binds a UDP socket (port 0 picks one) and starts receiving on it.
    pub async fn bind_udp(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
        self.attach_udp(udp_socket(addr)?)
    }

    /// Adopts a UDP socket the caller created (to set options such as
    /// `IP_FREEBIND`, `IPV6_V6ONLY` or buffer sizes) and starts receiving on it.
    pub fn attach_udp(&self, sock: UdpSocket) -> io::Result<SocketAddr> {
        let sock = Arc::new(sock);
        let local = sock.local_addr()?;
        let tx = self.inner.inbound.clone();
        let max = self.inner.cfg.limits.max_message;
        let s = sock.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let (n, remote) = match s.recv_from(&mut buf).await {
                    Ok(x) => x,
                    // ICMP errors surface as recv errors on some platforms; keep going
                    Err(_) => continue,
                };
                if n == 0 || n > max || buf[..n].iter().all(|&c| c == b'\r' || c == b'\n') {
                    continue;
                }
                let msg = Inbound {
                    flow: Flow::new(local, remote, Protocol::Udp),
                    data: Bytes::copy_from_slice(&buf[..n]),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        lock(&self.inner.bound).push(Bound {
            local,
            protocol: Protocol::Udp,
            udp: Some(sock),
            task,
        });
        Ok(local)
    }

    /// Binds a TCP listener (SO_REUSEADDR + SO_REUSEPORT so that outgoing
    /// connections can share the port, as a protected client port must).
    pub async fn bind_tcp(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let sock = tcp_socket(addr)?;
        sock.bind(addr)?;
        self.attach_tcp(sock.listen(1024)?)
    }

    /// Adopts a TCP listener the caller created. For outgoing connections from its
    /// port to work it needs SO_REUSEADDR and SO_REUSEPORT, as [`Transport::bind_tcp`] sets.
    pub fn attach_tcp(&self, listener: TcpListener) -> io::Result<SocketAddr> {
        let local = listener.local_addr()?;
        let me = self.clone_weak();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, remote)) = listener.accept().await else {
                    continue;
                };
                let Some(inner) = me.upgrade() else { return };
                let t = Transport { inner };
                if t.tcp_connection_count() >= t.inner.cfg.max_tcp_connections {
                    drop(stream);
                    continue;
                }
                // the concrete local address, not the listener's wildcard
                let local = stream.local_addr().unwrap_or(local);
                let filter = lock(&t.inner.accept_filter).clone();
                if filter.is_some_and(|f| !f(local, remote)) {
                    // An RST rather than a FIN: the peer learns at once that it was refused.
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    drop(stream);
                    continue;
                }
                t.spawn_conn(stream, local, remote);
            }
        });
        lock(&self.inner.bound).push(Bound {
            local,
            protocol: Protocol::Tcp,
            udp: None,
            task,
        });
        Ok(local)
    }

    /// Closes the socket/listener bound to `local` (and TCP connections using it).
    /// Returns whether something was bound there.
    pub fn unbind(&self, local: SocketAddr, protocol: Protocol) -> bool {
        let mut found = false;
        lock(&self.inner.bound).retain(|b| {
            let hit = b.local == local && b.protocol == protocol;
            if hit {
                b.task.abort();
                found = true;
            }
            !hit
        });
        if protocol == Protocol::Tcp {
            let mut ids = Vec::new();
            for v in lock(&self.inner.conns).values_mut() {
                v.retain(|c| {
                    let hit = c.local == local || covers(local, c.local);
                    if hit {
                        ids.push(c.id);
                    }
                    !hit
                });
            }
            let mut tasks = lock(&self.inner.conn_tasks);
            for id in ids {
                if let Some(h) = tasks.remove(&id) {
                    h.abort();
                }
            }
        }
        found
    }

    /// Number of open TCP connections.
    pub fn tcp_connection_count(&self) -> usize {
        lock(&self.inner.conns).values().map(Vec::len).sum()
    }

    fn clone_weak(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// Encodes and sends a message.
    pub async fn send_message(&self, msg: &Message, flow: Flow) -> io::Result<()> {
        self.send(&Transmit::new(flow, Bytes::from(msg.to_bytes())))
            .await
    }

    /// Sends bytes on a flow. UDP: from the socket bound to `flow.local` (or the
    /// first socket of the remote's family). TCP: over an existing connection to
    /// the remote (from `flow.local` if given), else a new one bound to `flow.local`.
    pub async fn send(&self, t: &Transmit) -> io::Result<()> {
        if t.payload.len() > self.inner.cfg.limits.max_message {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message exceeds the size limit",
            ));
        }
        match t.flow.protocol {
            Protocol::Udp => {
                let sock = {
                    let b = lock(&self.inner.bound);
                    let mut udp = b.iter().filter(|b| b.protocol == Protocol::Udp);
                    match t.flow.local {
                        // exact socket first, else a wildcard socket on that port
                        Some(l) => udp
                            .clone()
                            .find(|b| b.local == l)
                            .or_else(|| udp.find(|b| covers(b.local, l))),
                        None => udp.find(|b| b.local.is_ipv4() == t.flow.remote.is_ipv4()),
                    }
                    .and_then(|b| b.udp.clone())
                };
                let sock = sock.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrNotAvailable, "no UDP socket for flow")
                })?;
                sock.send_to(&t.payload, t.flow.remote).await.map(|_| ())
            }
            Protocol::Tcp => {
                for _ in 0..2 {
                    let conn = self.find_conn(&t.flow);
                    let conn = match conn {
                        Some(c) => c,
                        None => self.connect(&t.flow).await?,
                    };
                    if conn.tx.send(t.payload.clone()).await.is_ok() {
                        return Ok(());
                    }
                    self.forget_conn(t.flow.remote, conn.id);
                }
                Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "TCP connection closed",
                ))
            }
            // A shell hands these to the other core as messages; bytes for one here
            // are a wiring bug, reported rather than sent anywhere.
            Protocol::InProcess => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "in-process flows carry messages, not bytes",
            )),
        }
    }

    fn find_conn(&self, flow: &Flow) -> Option<Conn> {
        let m = lock(&self.inner.conns);
        let v = m.get(&flow.remote)?;
        match flow.local {
            Some(l) => v
                .iter()
                .find(|c| c.local == l || covers(l, c.local))
                .cloned(),
            None => v.first().cloned(),
        }
    }

    fn forget_conn(&self, remote: SocketAddr, id: u64) {
        forget(&self.inner.conns, remote, id);
    }

    /// Whether a TCP connection for `flow` is open, so that [`Transport::send`] on it only
    /// queues bytes and never waits for a connect.
    pub fn has_tcp_connection(&self, flow: &Flow) -> bool {
        self.find_conn(flow).is_some()
    }

    async fn connect(&self, flow: &Flow) -> io::Result<Conn> {
        let connect = async {
            match flow.local {
                Some(local) => {
                    let s = tcp_socket(local)?;
                    s.bind(local)?;
                    s.connect(flow.remote).await
                }
                None => TcpStream::connect(flow.remote).await,
            }
        };
        let stream = match self.inner.cfg.tcp_connect_timeout {
            Some(d) => tokio::time::timeout(d, connect)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"))??,
            None => connect.await?,
        };
        let local = stream.local_addr()?;
        Ok(self.spawn_conn(stream, local, flow.remote))
    }

    fn spawn_conn(&self, stream: TcpStream, local: SocketAddr, remote: SocketAddr) -> Conn {
        let _ = stream.set_nodelay(true);
        let id = self
            .inner
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (wtx, mut wrx) = mpsc::channel::<Bytes>(self.inner.cfg.conn_queue.max(1));
        let conn = Conn { id, local, tx: wtx };
        lock(&self.inner.conns)
            .entry(remote)
            .or_default()
            .push(conn.clone());
        let (mut rd, mut wr) = stream.into_split();
        let inbound = self.inner.inbound.clone();
        let limits = self.inner.cfg.limits;
        let idle = self.inner.cfg.tcp_idle_timeout;
        let conns = self.inner.conns.clone();
        let tasks = self.inner.conn_tasks.clone();
        let task = tokio::spawn(async move {
            let writer = async {
                while let Some(b) = wrx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
            };
            let reader = async {
                let flow = Flow::new(local, remote, Protocol::Tcp);
                let mut buf = BytesMut::with_capacity(8192);
                let mut framer = StreamFramer::new();
                loop {
                    loop {
                        match framer.poll(&buf, &limits) {
                            Ok(Frame::KeepAlive(n)) => {
                                let _ = buf.split_to(n);
                            }
                            Ok(Frame::Message(n)) => {
                                let data = buf.split_to(n).freeze();
                                if inbound.send(Inbound { flow, data }).await.is_err() {
                                    return;
                                }
                            }
                            Ok(Frame::Incomplete) => break,
                            // framing error or size limit: the stream cannot be resynchronised
                            Err(_) => return,
                        }
                    }
                    let read = rd.read_buf(&mut buf);
                    let n = match idle {
                        Some(d) => match tokio::time::timeout(d, read).await {
                            Ok(r) => r,
                            Err(_) => return,
                        },
                        None => read.await,
                    };
                    match n {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            };
            tokio::select! {
                _ = writer => {},
                _ = reader => {},
            }
            forget(&conns, remote, id);
            lock(&tasks).remove(&id);
        });
        let mut tasks = lock(&self.inner.conn_tasks);
        if !task.is_finished() {
            tasks.insert(id, task);
        }
        drop(tasks);
        conn
    }
}

fn forget(conns: &ConnMap, remote: SocketAddr, id: u64) {
    let mut m = lock(conns);
    if let Some(v) = m.get_mut(&remote) {
        v.retain(|c| c.id != id);
        if v.is_empty() {
            m.remove(&remote);
        }
    }
}

/// True if a socket bound to `bound` (possibly a wildcard address) serves `want`.
fn covers(bound: SocketAddr, want: SocketAddr) -> bool {
    bound.port() == want.port()
        && bound.is_ipv4() == want.is_ipv4()
        && (bound.ip() == want.ip() || bound.ip().is_unspecified())
}

fn tcp_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    #[cfg(unix)]
    s.set_reuseport(true)?;
    Ok(s)
}

/// Receive queue asked for on UDP sockets: a registration burst (hundreds of REGISTERs
/// at once on one port) overflows the default ~200 KB and every drop costs a T1
/// retransmission (500 ms). Without CAP_NET_ADMIN the kernel caps it at rmem_max.
const UDP_RCVBUF: usize = 8 << 20;

/// A non-blocking UDP socket bound to `addr` with a deep receive queue.
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    force_recv_buffer(&s, UDP_RCVBUF);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// SO_RCVBUFFORCE where we may (root), else the capped SO_RCVBUF; failures are not fatal:
/// the socket works with the default queue.
fn force_recv_buffer(s: &socket2::Socket, size: usize) {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads size_of::<c_int>() bytes from a live local.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        let _ = s.set_recv_buffer_size(size);
    }
}
