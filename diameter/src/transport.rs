//! Thin tokio shell around [`Peer`]: TCP client and server (SCTP with feature `sctp`).
//!
//! One task per connection reads the socket, feeds [`Peer::handle_bytes`], fires
//! [`Peer::handle_timeout`] at [`Peer::poll_timeout`], and hands [`Peer::poll_transmit`]
//! output to a writer task, so a slow reader on the other side never stalls our reads.
//! Requests from the peer run the [`Handler`] in their own task each, so one connection
//! answers many requests concurrently and out of order.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::codec::FindAvp;
use crate::dict::result;
use crate::error::DecodeError;
use crate::message::Message;
use crate::peer::{
    Admission, CloseReason, Event, FailReason, Peer, PeerConfig, PeerError, PeerInfo, Refusal,
    DEFAULT_DISCONNECT_CAUSE,
};

/// Default Diameter port (RFC 6733 §2.1).
pub const DEFAULT_PORT: u16 = 3868;

/// Answers requests from a peer. Implemented for async closures
/// `|req: Message| async move { ... Message }` and for your own types.
///
/// The answer should be built with [`Message::answer_for`]; Origin-Host/Origin-Realm are
/// filled in if absent.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn handle(&self, req: Message) -> impl Future<Output = Message> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Message> + Send + 'static,
{
    fn handle(&self, req: Message) -> impl Future<Output = Message> + Send {
        self(req)
    }
}

/// Handler of a pure client: every request gets DIAMETER_UNABLE_TO_COMPLY (5012).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHandler;

impl Handler for NoHandler {
    async fn handle(&self, req: Message) -> Message {
        Message::error_answer(&req, result::UNABLE_TO_COMPLY, Some("no handler"))
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The capabilities exchange failed or the connection closed before it finished.
    #[error("capabilities exchange failed: {0:?}")]
    Rejected(CloseReason),
    /// The kernel has no SCTP support (`socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)` failed
    /// with EPROTONOSUPPORT).
    #[error("SCTP is not supported by this kernel: {0}")]
    SctpUnsupported(io::Error),
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No answer within the configured request timeout.
    #[error("request timed out")]
    TimedOut,
    /// The connection is closed or closed while waiting.
    #[error("connection closed")]
    Closed,
    /// The answer could not be decoded.
    #[error("malformed answer: {0}")]
    MalformedAnswer(DecodeError),
    /// The peer refused to send it (not open, too large, not a request).
    #[error("not sent: {0}")]
    NotSent(PeerError),
    /// No open connection to a peer with that Origin-Host.
    #[error("no connection to peer {0}")]
    UnknownPeer(String),
}

enum Cmd {
    Request(
        Message,
        Option<std::time::Duration>,
        oneshot::Sender<Result<Message, RequestError>>,
    ),
    Disconnect(i32),
}

/// A connection to one open peer: send requests, disconnect. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PeerHandle {
    cmd: mpsc::UnboundedSender<Cmd>,
    remote: Arc<PeerInfo>,
    origin_host: Arc<str>,
    session: Arc<AtomicU64>,
    session_high: u32,
}

/// A client connection is a [`PeerHandle`] obtained by connecting.
pub type Client = PeerHandle;

impl PeerHandle {
    /// Connects over TCP, runs CER/CEA and returns once the peer is open. Requests from
    /// the peer are refused with 5012; use [`PeerHandle::connect_with_handler`] to answer
    /// them (a P-CSCF/S-CSCF receiving RTR/PPR).
    pub async fn connect(
        addr: impl ToSocketAddrs,
        config: PeerConfig,
    ) -> Result<PeerHandle, TransportError> {
        PeerHandle::connect_with_handler(addr, config, NoHandler).await
    }

    /// Connects over TCP with a handler for requests the peer sends us.
    pub async fn connect_with_handler<H: Handler>(
        addr: impl ToSocketAddrs,
        config: PeerConfig,
        handler: H,
    ) -> Result<PeerHandle, TransportError> {
        PeerHandle::connect_shared(addr, config, Arc::new(handler)).await
    }

    async fn connect_shared<H: Handler>(
        addr: impl ToSocketAddrs,
        config: PeerConfig,
        handler: Arc<H>,
    ) -> Result<PeerHandle, TransportError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let remote = stream.peer_addr()?;
        let config = Arc::new(config);
        let now = tokio::time::Instant::now().into_std();
        let mut peer = Peer::connect(config.clone(), now, seed(), Some(local.ip()));
        peer.set_remote_addr(remote.ip());
        let (up_tx, up_rx) = oneshot::channel();
        let (r, w) = stream.into_split();
        spawn_connection(r, w, peer, handler, Some(up_tx), None);
        match up_rx.await {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(reason)) => Err(TransportError::Rejected(reason)),
            Err(_) => Err(TransportError::Rejected(CloseReason::TransportClosed)),
        }
    }

    /// The peer's capabilities from its CER/CEA.
    pub fn remote(&self) -> &PeerInfo {
        &self.remote
    }

    /// Sends a request and waits for its answer. Many requests may be in flight at once.
    pub async fn request(&self, msg: Message) -> Result<Message, RequestError> {
        self.send(msg, None).await
    }

    /// [`PeerHandle::request`] with its own answer timeout instead of the configured one.
    pub async fn request_with_timeout(
        &self,
        msg: Message,
        timeout: std::time::Duration,
    ) -> Result<Message, RequestError> {
        self.send(msg, Some(timeout)).await
    }

    async fn send(
        &self,
        msg: Message,
        timeout: Option<std::time::Duration>,
    ) -> Result<Message, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Request(msg, timeout, tx))
            .map_err(|_| RequestError::Closed)?;
        rx.await.unwrap_or(Err(RequestError::Closed))
    }

    /// A fresh Session-Id `<our Origin-Host>;<high>;<low>` (RFC 6733 §8.8).
    pub fn new_session_id(&self) -> String {
        let n = self.session.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{};{};{}", self.origin_host, self.session_high, n)
    }

    /// Sends DPR and waits until the connection is closed.
    pub async fn disconnect(&self) {
        let _ = self.cmd.send(Cmd::Disconnect(DEFAULT_DISCONNECT_CAUSE));
        self.cmd.closed().await;
    }

    /// Waits until the connection is closed.
    pub async fn closed(&self) {
        self.cmd.closed().await;
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.cmd.is_closed()
    }
}

/// A client that keeps one connection up: it reconnects `tc` after a failure or close
/// (RFC 6733 §2.1 / RFC 3539 §3.4.1 Tc timer, 30 s recommended). Requests made while
/// down fail at once with [`RequestError::Closed`]. Dropping every clone sends DPR.
#[derive(Clone)]
pub struct ReconnectingClient {
    current: tokio::sync::watch::Receiver<Option<PeerHandle>>,
}

impl ReconnectingClient {
    /// Starts connecting to `addr` in the background.
    pub fn spawn<H: Handler>(
        addr: SocketAddr,
        config: PeerConfig,
        handler: H,
        tc: std::time::Duration,
    ) -> ReconnectingClient {
        let (tx, rx) = tokio::sync::watch::channel(None::<PeerHandle>);
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                match PeerHandle::connect_shared(addr, config.clone(), handler.clone()).await {
                    Ok(h) => {
                        tracing::info!(%addr, peer = %h.remote().origin_host, "Diameter client connected");
                        if tx.send(Some(h.clone())).is_err() {
                            h.disconnect().await;
                            return;
                        }
                        tokio::select! {
                            _ = h.closed() => {}
                            _ = tx.closed() => {
                                h.disconnect().await;
                                return;
                            }
                        }
                        let _ = tx.send(None);
                        tracing::warn!(%addr, "Diameter client connection lost");
                    }
                    Err(e) => tracing::warn!(%addr, error = %e, "Diameter connect failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(tc) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        ReconnectingClient { current: rx }
    }

    /// The open connection, if any.
    pub fn current(&self) -> Option<PeerHandle> {
        self.current.borrow().clone()
    }

    /// Waits until a connection is open (or `timeout` passes).
    pub async fn wait_connected(&self, timeout: std::time::Duration) -> Option<PeerHandle> {
        let mut rx = self.current.clone();
        let r = tokio::time::timeout(
            timeout,
            rx.wait_for(|c| c.as_ref().is_some_and(|h| !h.is_closed())),
        )
        .await;
        match r {
            Ok(Ok(h)) => h.clone(),
            _ => None,
        }
    }

    /// Sends a request on the current connection.
    pub async fn request(&self, msg: Message) -> Result<Message, RequestError> {
        match self.current() {
            Some(h) => h.request(msg).await,
            None => Err(RequestError::Closed),
        }
    }
}

/// Open server-side connections by lower-cased Origin-Host: the connection id that owns
/// the name, and its handle once the connection is up (`None` between the CER's admission
/// and the `Up` event). Only the owning connection may fill or remove its entry.
type Registry = Arc<Mutex<HashMap<String, (u64, Option<PeerHandle>)>>>;

/// Server-side context of one connection: where it registers and what it counts.
#[derive(Clone)]
struct Registration {
    registry: Registry,
    conn_id: u64,
    refusals: Arc<Refusals>,
}

impl Registration {
    /// Reserves the CER's Origin-Host for this connection, unless another open connection
    /// holds it (see [`Refusal::AlreadyConnected`]). Runs inside the peer before its CEA, so
    /// two racing CERs for one name cannot both succeed.
    fn admission(&self) -> Admission {
        let registry = self.registry.clone();
        let conn_id = self.conn_id;
        Box::new(move |info: &PeerInfo| {
            let mut map = registry.lock().unwrap_or_else(|e| e.into_inner());
            let key = info.origin_host.to_ascii_lowercase();
            if let Some((owner, h)) = map.get(&key) {
                // A handle whose task has ended is about to be removed: not a live owner.
                let live = h.as_ref().is_none_or(|h| !h.is_closed());
                if *owner != conn_id && live {
                    return Err(Refusal::AlreadyConnected);
                }
            }
            map.insert(key, (conn_id, None));
            Ok(())
        })
    }

    /// Removes this connection's entry, and only this connection's.
    fn release(&self, origin_host: &str) {
        let mut map = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let key = origin_host.to_ascii_lowercase();
        if map.get(&key).is_some_and(|(id, _)| *id == self.conn_id) {
            map.remove(&key);
        }
    }
}

/// CERs refused by policy, by reason (see [`ServerHandle::refusals`]).
#[derive(Debug, Default)]
struct Refusals {
    unknown_host: AtomicU64,
    wrong_address: AtomicU64,
    already_connected: AtomicU64,
}

impl Refusals {
    fn count(&self, r: Refusal) {
        let c = match r {
            Refusal::UnknownHost => &self.unknown_host,
            Refusal::WrongAddress => &self.wrong_address,
            Refusal::AlreadyConnected => &self.already_connected,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// How many capabilities exchanges a server refused, by [`Refusal`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts {
    /// Origin-Host not allowed.
    pub unknown_host: u64,
    /// Origin-Host allowed, source address not (an impostor, or a stale configuration).
    pub wrong_address: u64,
    /// A second connection of a peer that already has one open.
    pub already_connected: u64,
}

/// A TCP Diameter server: accepts connections, answers CER, runs `handler` for requests.
pub struct Server<H: Handler> {
    listener: TcpListener,
    config: Arc<PeerConfig>,
    handler: Arc<H>,
    registry: Registry,
    refusals: Arc<Refusals>,
}

/// Handle to a running server: send requests (RTR, PPR) to a connected peer by Origin-Host.
#[derive(Clone)]
pub struct ServerHandle {
    registry: Registry,
    refusals: Arc<Refusals>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("peers", &self.peers())
            .finish()
    }
}

impl<H: Handler> Server<H> {
    /// Binds a TCP listener.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: PeerConfig,
        handler: H,
    ) -> io::Result<Server<H>> {
        Ok(Server {
            listener: TcpListener::bind(addr).await?,
            config: Arc::new(config),
            handler: Arc::new(handler),
            registry: Arc::default(),
            refusals: Arc::default(),
        })
    }

    /// Bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Handle for sending requests to connected peers.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            registry: self.registry.clone(),
            refusals: self.refusals.clone(),
            local_addr: self
                .listener
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        }
    }

    /// Accept loop; runs until the listener fails.
    pub async fn run(self) -> io::Result<()> {
        let mut conn_id = 0u64;
        loop {
            let (stream, remote) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) if is_transient_accept_error(&e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            conn_id += 1;
            let _ = stream.set_nodelay(true);
            let local_ip = stream.local_addr().ok().map(|a| a.ip());
            tracing::debug!(%remote, "Diameter connection accepted");
            let now = tokio::time::Instant::now().into_std();
            let mut peer = Peer::accept(self.config.clone(), now, seed(), local_ip);
            peer.set_remote_addr(remote.ip());
            let (r, w) = stream.into_split();
            spawn_connection(
                r,
                w,
                peer,
                self.handler.clone(),
                None,
                Some(Registration {
                    registry: self.registry.clone(),
                    conn_id,
                    refusals: self.refusals.clone(),
                }),
            );
        }
    }

    /// Spawns the accept loop; returns the handle and the task.
    pub fn spawn(self) -> (ServerHandle, JoinHandle<io::Result<()>>) {
        let h = self.handle();
        (h, tokio::spawn(self.run()))
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(24) // EMFILE: back off instead of ending the server
        || e.raw_os_error() == Some(23)
}

impl ServerHandle {
    /// Address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connection to the open peer with this Origin-Host (case-insensitive).
    pub fn peer(&self, origin_host: &str) -> Option<PeerHandle> {
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.get(&origin_host.to_ascii_lowercase())
            .and_then(|(_, h)| h.clone())
    }

    /// Origin-Hosts of the open peers.
    pub fn peers(&self) -> Vec<String> {
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = reg
            .values()
            .filter_map(|(_, h)| h.as_ref().map(|h| h.remote.origin_host.clone()))
            .collect();
        v.sort();
        v
    }

    /// Capabilities exchanges refused by policy since the server started.
    pub fn refusals(&self) -> RefusalCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RefusalCounts {
            unknown_host: get(&self.refusals.unknown_host),
            wrong_address: get(&self.refusals.wrong_address),
            already_connected: get(&self.refusals.already_connected),
        }
    }

    /// Sends a request to the peer with this Origin-Host and waits for the answer.
    pub async fn request(&self, origin_host: &str, msg: Message) -> Result<Message, RequestError> {
        match self.peer(origin_host) {
            Some(p) => p.request(msg).await,
            None => Err(RequestError::UnknownPeer(origin_host.to_string())),
        }
    }

    /// Sends DPR on every open connection.
    pub async fn disconnect_all(&self) {
        let peers: Vec<PeerHandle> = {
            let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
            reg.values().filter_map(|(_, h)| h.clone()).collect()
        };
        for p in peers {
            p.disconnect().await;
        }
    }
}

/// Seed for identifiers: Unix seconds high, process-random low (RFC 6733 §3).
fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now.as_nanos() as u64);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (now.as_secs() << 32) | (h.finish() & 0xffff_ffff)
}

/// Runs one connection: any byte stream halves (TCP, SCTP, tests).
fn spawn_connection<R, W, H>(
    reader: R,
    writer: W,
    peer: Peer,
    handler: Arc<H>,
    up: Option<oneshot::Sender<Result<PeerHandle, CloseReason>>>,
    reg: Option<Registration>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    use tracing::Instrument;
    let mut peer = peer;
    if let Some(r) = &reg {
        peer.set_admission(r.admission());
    }
    let span = tracing::info_span!("diameter", role = ?peer.role(), conn = reg.as_ref().map(|r| r.conn_id), peer = tracing::field::Empty);
    let (wtx, wrx) = mpsc::unbounded_channel::<Bytes>();
    let queue = Arc::new(WriteQueue::default());
    let writer_task = tokio::spawn(write_loop(writer, wrx, queue.clone()));
    let wtx = QueuedSender { tx: wtx, queue };
    tokio::spawn(
        async move {
            drive(reader, wtx, peer, handler, up, reg).await;
            let _ = writer_task.await;
        }
        .instrument(span),
    );
}

/// Bytes handed to the writer and not yet written; above [`WRITE_BACKLOG_LIMIT`] the
/// connection stops reading, so a peer that sends requests but never reads its answers
/// cannot make us buffer without bound.
#[derive(Default)]
struct WriteQueue {
    bytes: AtomicUsize,
    drained: tokio::sync::Notify,
}

const WRITE_BACKLOG_LIMIT: usize = 8 << 20;

struct QueuedSender {
    tx: mpsc::UnboundedSender<Bytes>,
    queue: Arc<WriteQueue>,
}

impl QueuedSender {
    fn send(&self, b: Bytes) {
        self.queue.bytes.fetch_add(b.len(), Ordering::Relaxed);
        let _ = self.tx.send(b);
    }

    fn backlogged(&self) -> bool {
        self.queue.bytes.load(Ordering::Relaxed) > WRITE_BACKLOG_LIMIT
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    queue: Arc<WriteQueue>,
) {
    while let Some(mut b) = rx.recv().await {
        // Coalesce what is already queued into one write.
        if !rx.is_empty() {
            let mut buf = BytesMut::from(&b[..]);
            while let Ok(more) = rx.try_recv() {
                buf.extend_from_slice(&more);
            }
            b = buf.freeze();
        }
        if let Err(e) = w.write_all(&b).await {
            tracing::debug!(error = %e, "write failed");
            queue.bytes.store(0, Ordering::Relaxed);
            queue.drained.notify_one();
            return;
        }
        let before = queue.bytes.fetch_sub(b.len(), Ordering::Relaxed);
        if before > WRITE_BACKLOG_LIMIT && before - b.len() <= WRITE_BACKLOG_LIMIT {
            queue.drained.notify_one();
        }
    }
    let _ = w.shutdown().await;
}

async fn drive<R, H>(
    mut reader: R,
    wtx: QueuedSender,
    mut peer: Peer,
    handler: Arc<H>,
    mut up: Option<oneshot::Sender<Result<PeerHandle, CloseReason>>>,
    reg: Option<Registration>,
) where
    R: AsyncRead + Unpin,
    H: Handler,
{
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Cmd>();
    let (ans_tx, mut ans_rx) = mpsc::unbounded_channel::<Message>();
    let mut cmd_tx = Some(cmd_tx);
    let mut waiters: HashMap<u32, oneshot::Sender<Result<Message, RequestError>>> = HashMap::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut read_open = true;
    let mut cmd_open = true;
    loop {
        while let Some(b) = peer.poll_transmit() {
            wtx.send(b);
        }
        let mut closed = false;
        while let Some(ev) = peer.poll_event() {
            match ev {
                Event::Up(info) => {
                    tracing::Span::current().record("peer", info.origin_host.as_str());
                    let Some(tx) = cmd_tx.take() else { continue };
                    let session_high = (seed() >> 32) as u32;
                    let h = PeerHandle {
                        cmd: tx,
                        remote: Arc::new(info),
                        origin_host: peer.config().origin_host.as_str().into(),
                        session: Arc::new(AtomicU64::new(0)),
                        session_high,
                    };
                    if let Some(r) = &reg {
                        // Fill the entry the admission reserved; never take another's.
                        let mut map = r.registry.lock().unwrap_or_else(|e| e.into_inner());
                        let key = h.remote.origin_host.to_ascii_lowercase();
                        match map.get_mut(&key) {
                            Some((id, slot)) if *id == r.conn_id => *slot = Some(h.clone()),
                            _ => {
                                tracing::error!(peer = %key, "open connection lost its registry entry")
                            }
                        }
                    }
                    if let Some(u) = up.take() {
                        let _ = u.send(Ok(h));
                    }
                }
                Event::Request(req) => {
                    let handler = handler.clone();
                    let ans_tx = ans_tx.clone();
                    tokio::spawn(async move {
                        // A panicking handler must still answer, or the peer waits for a
                        // timeout and our in-progress slot leaks. Keep just what the error
                        // answer needs (header and Session-Id) so the normal path stays cheap.
                        let mut skeleton = req.header_only();
                        skeleton
                            .avps
                            .extend(req.find(crate::avp::SESSION_ID).cloned());
                        let a = match (CatchUnwind {
                            inner: Box::pin(handler.handle(req)),
                        })
                        .await
                        {
                            Ok(a) => a,
                            Err(()) => {
                                tracing::error!(cmd = %skeleton.name(), "Diameter handler panicked");
                                Message::error_answer(
                                    &skeleton,
                                    result::UNABLE_TO_COMPLY,
                                    Some("internal error"),
                                )
                            }
                        };
                        let _ = ans_tx.send(a);
                    });
                }
                Event::Answer(a) => {
                    if let Some(w) = waiters.remove(&a.hop_by_hop) {
                        let _ = w.send(Ok(a));
                    }
                }
                Event::RequestFailed { hop_by_hop, reason } => {
                    if let Some(w) = waiters.remove(&hop_by_hop) {
                        let _ = w.send(Err(match reason {
                            FailReason::TimedOut => RequestError::TimedOut,
                            FailReason::ConnectionClosed => RequestError::Closed,
                            FailReason::MalformedAnswer(e) => RequestError::MalformedAnswer(e),
                        }));
                    }
                }
                Event::WatchdogSuspect => {
                    tracing::warn!(peer = ?peer.remote().map(|r| &r.origin_host), "watchdog: peer suspect");
                }
                Event::WatchdogRecovered => {
                    tracing::info!(peer = ?peer.remote().map(|r| &r.origin_host), "watchdog: peer back");
                }
                Event::Closed(reason) => {
                    tracing::debug!(?reason, "connection closed");
                    if let Some(u) = up.take() {
                        let _ = u.send(Err(reason));
                    }
                    closed = true;
                }
            }
        }
        if closed || peer.is_closed() {
            break;
        }
        let deadline = peer.poll_timeout().map(tokio::time::Instant::from_std);
        let backlogged = wtx.backlogged();
        tokio::select! {
            _ = wtx.queue.drained.notified(), if backlogged => {}
            r = reader.read_buf(&mut buf), if read_open && !backlogged => {
                let now = tokio::time::Instant::now().into_std();
                match r {
                    Ok(0) | Err(_) => {
                        read_open = false;
                        peer.handle_transport_closed();
                    }
                    Ok(_) => {
                        peer.handle_bytes(now, &buf);
                        buf.clear();
                    }
                }
            }
            c = cmd_rx.recv(), if cmd_open => {
                let now = tokio::time::Instant::now().into_std();
                let mut next = c;
                // Take whatever else is queued too (bounded, so reads are not starved):
                // one flush for a burst of requests.
                for i in 0..BURST {
                    match next {
                        Some(Cmd::Request(m, t, tx)) => match match t {
                            Some(t) => peer.send_request_with_timeout(now, m, t),
                            None => peer.send_request(now, m),
                        } {
                            Ok(hbh) => { waiters.insert(hbh, tx); }
                            Err(e) => { let _ = tx.send(Err(RequestError::NotSent(e))); }
                        },
                        Some(Cmd::Disconnect(cause)) => peer.disconnect(now, cause),
                        None => {
                            // Every handle of a client is gone: nobody can use it any more.
                            cmd_open = false;
                            if reg.is_none() {
                                peer.disconnect(now, DEFAULT_DISCONNECT_CAUSE);
                            }
                            break;
                        }
                    }
                    if i + 1 == BURST {
                        break;
                    }
                    match cmd_rx.try_recv() {
                        Ok(c) => next = Some(c),
                        Err(_) => break,
                    }
                }
            }
            Some(a) = ans_rx.recv() => {
                let mut next = a;
                for i in 0..BURST {
                    if let Err(e) = peer.send_answer(next) {
                        tracing::debug!(error = %e, "answer not sent");
                    }
                    if i + 1 == BURST {
                        break;
                    }
                    match ans_rx.try_recv() {
                        Ok(a) => next = a,
                        Err(_) => break,
                    }
                }
            }
            _ = sleep_until(deadline) => {
                peer.handle_timeout(tokio::time::Instant::now().into_std());
            }
        }
    }
    while let Some(b) = peer.poll_transmit() {
        wtx.send(b);
    }
    for (_, w) in waiters.drain() {
        let _ = w.send(Err(RequestError::Closed));
    }
    if let Some(r) = &reg {
        if let Some(info) = peer.remote() {
            r.release(&info.origin_host);
        }
        if let Some(why) = peer.refusal() {
            r.refusals.count(why);
        }
    }
}

/// Runs a future, turning a panic inside `poll` into `Err(())`.
struct CatchUnwind<F> {
    inner: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

/// Most commands or answers taken from a queue in one go.
const BURST: usize = 256;

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(feature = "sctp")]
pub mod sctp;
