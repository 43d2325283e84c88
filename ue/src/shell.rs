//! The tokio shell: one task drives any number of [`Ue`] cores over one
//! [`secagree::SipIo`]. Each UE has its own IP address (127.0.0.2, 127.0.0.3, …), so what
//! arrives is dispatched by local address; the SA actions of the cores are carried out on
//! the shared IPsec backend.
//!
//! ```no_run
//! # async fn demo(cfg: ue::UeConfig) -> Result<(), ue::UeHostError> {
//! use ue::{IoConfig, UeHost};
//! let host = UeHost::start(IoConfig::default()).await?;
//! let ue = host.add(cfg).await?;
//! let reg = ue.register().await?;
//! println!("registered in {:?}", reg.took);
//! let call = ue.call("sip:bob@ims.test").await?;
//! ue.wait_answered(call).await?;
//! ue.hangup(call).await?;
//! ue.reregister().await?;
//! ue.deregister().await?;
//! host.shutdown().await;
//! # Ok(()) }
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secagree::{IpsecMode, SipIo};
use sip::transport::{Inbound, TransportConfig};
use sip::Protocol;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use xfrm::{BackendKind, SetId, Side, Tag};

use crate::call::{CallEnd, CallError, CallPhase, CallRef};
use crate::config::{ConfigError, UeConfig};
use crate::core::Ue;
use crate::event::{
    EventKind, Note, Procedure, RegError, Registered, SaInstallError, SaStep, UeEvent,
};
use crate::media_io::{MediaIn, MediaIo};
use crate::registration::{RegState, SaAction};

/// The UE simulator's fallback XFRM tag ("IUE") for hosts that do not say which UEs they
/// run ([`IoConfig::default`]); processes that do use [`ue_tag`].
pub const UE_TAG: Tag = Tag::SelectorUser(0x0049_5545);

/// The XFRM tag of a host running `ues`, from their unprotected SIP addresses
/// ([`Tag::for_instance`]): two UE processes in one network namespace never flush each
/// other's SAs, and a restarted one flushes its own leftovers.
pub fn ue_tag(ues: &[UeConfig]) -> Tag {
    let ids: Vec<SocketAddr> = ues
        .iter()
        .map(|u| SocketAddr::new(u.local_ip, u.port))
        .collect();
    Tag::for_instance("ue", &ids)
}

/// How the host reaches the network.
#[derive(Debug, Clone, Copy)]
pub struct IoConfig {
    /// IPsec backend, or off (protected ports become plain sockets).
    pub mode: IpsecMode,
    /// XFRM tag of the UE's kernel state.
    pub tag: Tag,
    /// Transport limits.
    pub transport: TransportConfig,
    /// RFC 3261 §18.1.1: a request larger than this many bytes goes over TCP (default
    /// 1300; `None` keeps everything on UDP). With the userspace ESP backend there is no
    /// TCP inside the SAs and requests stay on UDP whatever this says.
    pub tcp_size_threshold: Option<usize>,
}

impl Default for IoConfig {
    /// Kernel XFRM where the kernel can do ESP, else userspace ESP; the UE tag.
    fn default() -> Self {
        IoConfig {
            mode: IpsecMode::Backend(BackendKind::Auto),
            tag: UE_TAG,
            transport: TransportConfig::default(),
            tcp_size_threshold: Some(sip::size_rule::DEFAULT_THRESHOLD),
        }
    }
}

/// Errors of the shell.
#[derive(Debug, thiserror::Error)]
pub enum UeHostError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// SipIo (backend or sockets) could not start.
    #[error("cannot start SIP/IPsec I/O: {0}")]
    Io(#[from] secagree::SipIoError),
    /// The unprotected port could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// address
        addr: SocketAddr,
        /// OS error
        source: std::io::Error,
    },
    /// Another UE of this host already uses this address.
    #[error("another UE already uses {0}; give each UE its own IP address")]
    DuplicateIp(IpAddr),
    /// The procedure failed.
    #[error("{procedure} failed: {error}")]
    Procedure {
        /// which
        procedure: &'static str,
        /// why
        error: RegError,
    },
    /// A procedure is already running on this UE.
    #[error("a procedure is already running on this UE")]
    Busy,
    /// The host task is gone.
    #[error("the UE host has stopped")]
    Stopped,
    /// A call command was refused.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The call ended before what was awaited happened.
    #[error("the call ended: {0}")]
    CallEnded(CallEnd),
    /// A MESSAGE got no final response.
    #[error("no answer to the MESSAGE")]
    MessageUnanswered,
    /// A MESSAGE was refused with this status.
    #[error("MESSAGE refused with {0}")]
    MessageRefused(u16),
}

/// An event of one of the host's UEs.
#[derive(Debug, Clone)]
pub struct HostEvent {
    /// index of the UE in the host (order of `add`)
    pub ue: usize,
    /// its IMPU (for ladders)
    pub name: Arc<str>,
    /// the event
    pub event: UeEvent,
}

/// What a finished procedure returns.
#[derive(Debug)]
enum Outcome {
    Registered(Registered),
    Deregistered(Duration),
}

type Reply = oneshot::Sender<Result<Outcome, RegError>>;

/// A snapshot of one UE.
#[derive(Debug, Clone)]
pub struct UeSnapshot {
    /// registration state
    pub state: RegState,
    /// SA sets the UE holds (temporary, established or retiring)
    pub sa_sets: usize,
    /// the established set in use
    pub current_set: Option<xfrm::SaSet>,
    /// the card's SQN_MS
    pub sqn_ms: u64,
    /// live transactions
    pub transactions: usize,
    /// calls in progress
    pub calls: Vec<(CallRef, CallPhase)>,
    /// a reg event subscription is up or being set up
    pub subscribed: bool,
}

/// A call or message command for the core.
enum CallOp {
    Call(String),
    Answer(CallRef),
    Reject(CallRef, u16),
    Hangup(CallRef),
    Refresh(CallRef),
    Reinvite(CallRef),
    Dtmf(CallRef, char),
}

/// Something a handle waits for; resolved from the UE's events.
enum Wait {
    Answered(CallRef, oneshot::Sender<Result<(), CallEnd>>),
    Ended(CallRef, oneshot::Sender<CallEnd>),
    Incoming(oneshot::Sender<CallRef>),
    Message(u64, oneshot::Sender<Result<Option<u16>, CallError>>),
    Inbox(oneshot::Sender<(String, String)>),
}

/// Incoming calls and messages nobody waited for yet are kept up to this many.
const QUEUED: usize = 64;

enum Cmd {
    Add(Box<Ue>, Arc<str>, oneshot::Sender<usize>),
    CallOp(
        usize,
        CallOp,
        oneshot::Sender<Result<Option<CallRef>, CallError>>,
    ),
    Message(
        usize,
        String,
        String,
        oneshot::Sender<Result<Option<u16>, CallError>>,
    ),
    Wait(usize, Wait),
    Run(usize, Procedure, Reply),
    Snapshot(usize, oneshot::Sender<Option<UeSnapshot>>),
    AwaitExpiry(usize, oneshot::Sender<Instant>),
    Shutdown(oneshot::Sender<()>),
}

/// Many simulated UEs on one SIP/IPsec I/O.
pub struct UeHost {
    cmd: mpsc::Sender<Cmd>,
    io: SipIo,
    events: std::sync::Mutex<Option<mpsc::UnboundedReceiver<HostEvent>>>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    ips: std::sync::Mutex<HashSet<IpAddr>>,
    size_rule: sip::SizeRule,
    media: MediaIo,
}

/// Commands for one UE of a [`UeHost`].
#[derive(Clone)]
pub struct UeHandle {
    index: usize,
    name: Arc<str>,
    cmd: mpsc::Sender<Cmd>,
}

impl UeHost {
    /// Starts the I/O (and the IPsec backend: root is needed for kernel or userspace ESP)
    /// and the task.
    pub async fn start(io: IoConfig) -> Result<UeHost, UeHostError> {
        let (sipio, inbound) = SipIo::start(io.mode, io.tag, io.transport).await?;
        let size_rule = match io.tcp_size_threshold {
            Some(t) if sipio.backend_name() != "userspace" => sip::SizeRule::new(t),
            Some(t) => {
                note_no_tcp_through_sa();
                sip::SizeRule::new(t).without_tcp()
            }
            None => sip::SizeRule::default().without_tcp(),
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (media, media_rx) = MediaIo::new();
        let task = tokio::spawn(host_task(
            sipio.clone(),
            inbound,
            cmd_rx,
            ev_tx,
            (media.clone(), media_rx),
        ));
        Ok(UeHost {
            cmd: cmd_tx,
            io: sipio,
            events: std::sync::Mutex::new(Some(ev_rx)),
            task: std::sync::Mutex::new(Some(task)),
            ips: std::sync::Mutex::new(HashSet::new()),
            size_rule,
            media,
        })
    }

    /// The I/O (backend name, `esp_sa` export of the live sets).
    pub fn io(&self) -> &SipIo {
        &self.io
    }

    /// The stream of every UE's events (once; `None` afterwards). Until it is taken (or
    /// [`UeHost::discard_events`] is called) events accumulate in memory.
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<HostEvent>> {
        self.events.lock().ok().and_then(|mut e| e.take())
    }

    /// Drops the event stream (load runs): events are then not kept at all.
    pub fn discard_events(&self) {
        drop(self.take_events());
    }

    /// Adds a UE: validates its configuration and binds its unprotected port.
    pub async fn add(&self, cfg: UeConfig) -> Result<UeHandle, UeHostError> {
        let mut ue = Ue::new(cfg.clone())?;
        ue.set_size_rule(self.size_rule);
        {
            let mut ips = self.ips.lock().map_err(|_| UeHostError::Stopped)?;
            if !ips.insert(cfg.local_ip) {
                return Err(UeHostError::DuplicateIp(cfg.local_ip));
            }
        }
        let addr = SocketAddr::new(cfg.local_ip, cfg.port);
        let bound = async {
            self.io.transport().bind_udp(addr).await?;
            // a handset listens on TCP too (RFC 3261 §18: every UA supports both)
            if self.size_rule.tcp {
                if let Err(e) = self.io.transport().bind_tcp(addr).await {
                    self.io.transport().unbind(addr, Protocol::Udp);
                    return Err(e);
                }
            }
            Ok(())
        };
        if let Err(source) = bound.await {
            if let Ok(mut ips) = self.ips.lock() {
                ips.remove(&cfg.local_ip);
            }
            return Err(UeHostError::Bind { addr, source });
        }
        if cfg.media.enabled && cfg.calls.rtp_port == 0 {
            // the SDP must carry the port the OS picks: bind now (others on the first call)
            match self.media.bind(cfg.local_ip, 0) {
                Ok(port) => ue.set_rtp_port(port),
                Err(source) => {
                    self.io.transport().unbind(addr, Protocol::Udp);
                    if let Ok(mut ips) = self.ips.lock() {
                        ips.remove(&cfg.local_ip);
                    }
                    return Err(UeHostError::Bind {
                        addr: SocketAddr::new(cfg.local_ip, 0),
                        source,
                    });
                }
            }
        }
        let name: Arc<str> = Arc::from(cfg.impu.as_str());
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Add(Box::new(ue), name.clone(), tx))
            .await
            .map_err(|_| UeHostError::Stopped)?;
        let index = rx.await.map_err(|_| UeHostError::Stopped)?;
        Ok(UeHandle {
            index,
            name,
            cmd: self.cmd.clone(),
        })
    }

    /// Stops the task and removes every SA the UEs still hold.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
        let _ = self.io.flush();
    }
}

impl Drop for UeHost {
    /// Asks the task to stop and delete the UEs' SAs (without waiting; use
    /// [`UeHost::shutdown`] to wait).
    fn drop(&mut self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.cmd.try_send(Cmd::Shutdown(tx));
    }
}

impl UeHandle {
    /// Index in the host.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The IMPU.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, p: Procedure) -> Result<Outcome, UeHostError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Run(self.index, p, tx))
            .await
            .map_err(|_| UeHostError::Stopped)?;
        match rx.await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(RegError::InvalidState {
                command: "busy", ..
            })) => Err(UeHostError::Busy),
            Ok(Err(error)) => Err(UeHostError::Procedure {
                procedure: p.as_str(),
                error,
            }),
            Err(_) => Err(UeHostError::Stopped),
        }
    }

    /// Initial registration; resolves with the 200 OK's data or the failure.
    pub async fn register(&self) -> Result<Registered, UeHostError> {
        match self.run(Procedure::Initial).await? {
            Outcome::Registered(r) => Ok(r),
            Outcome::Deregistered(_) => Err(UeHostError::Stopped),
        }
    }

    /// Re-registration.
    pub async fn reregister(&self) -> Result<Registered, UeHostError> {
        match self.run(Procedure::Reregistration).await? {
            Outcome::Registered(r) => Ok(r),
            Outcome::Deregistered(_) => Err(UeHostError::Stopped),
        }
    }

    /// Deregistration; resolves with its duration.
    pub async fn deregister(&self) -> Result<Duration, UeHostError> {
        match self.run(Procedure::Deregistration).await? {
            Outcome::Deregistered(d) => Ok(d),
            Outcome::Registered(_) => Err(UeHostError::Stopped),
        }
    }

    /// Waits until the registration runs out without a refresh (configure
    /// `auto_refresh = false`); resolves with the time the UE dropped it. Resolves only
    /// with an expiry that happens after this call.
    pub async fn await_expiry(&self) -> Result<Instant, UeHostError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::AwaitExpiry(self.index, tx))
            .await
            .map_err(|_| UeHostError::Stopped)?;
        rx.await.map_err(|_| UeHostError::Stopped)
    }

    async fn call_op(&self, op: CallOp) -> Result<Option<CallRef>, UeHostError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::CallOp(self.index, op, tx))
            .await
            .map_err(|_| UeHostError::Stopped)?;
        Ok(rx.await.map_err(|_| UeHostError::Stopped)??)
    }

    async fn wait<T>(&self, w: impl FnOnce(oneshot::Sender<T>) -> Wait) -> Result<T, UeHostError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Wait(self.index, w(tx)))
            .await
            .map_err(|_| UeHostError::Stopped)?;
        rx.await.map_err(|_| UeHostError::Stopped)
    }

    /// Places a call (INVITE with an SDP offer); resolves once it is sent.
    pub async fn call(&self, target: &str) -> Result<CallRef, UeHostError> {
        self.call_op(CallOp::Call(target.to_string()))
            .await?
            .ok_or(UeHostError::Stopped)
    }

    /// Waits until `call` is established (caller: 2xx ACKed; callee: our 2xx ACKed), or
    /// fails with how it ended.
    pub async fn wait_answered(&self, call: CallRef) -> Result<(), UeHostError> {
        self.wait(|tx| Wait::Answered(call, tx))
            .await?
            .map_err(UeHostError::CallEnded)
    }

    /// Waits until `call` ends; resolves with how.
    pub async fn wait_ended(&self, call: CallRef) -> Result<CallEnd, UeHostError> {
        self.wait(|tx| Wait::Ended(call, tx)).await
    }

    /// The next incoming call (one that arrived before this call counts).
    pub async fn wait_incoming(&self) -> Result<CallRef, UeHostError> {
        self.wait(Wait::Incoming).await
    }

    /// Answers a ringing incoming call.
    pub async fn answer(&self, call: CallRef) -> Result<(), UeHostError> {
        self.call_op(CallOp::Answer(call)).await.map(|_| ())
    }

    /// Rejects a ringing incoming call with `code`.
    pub async fn reject(&self, call: CallRef, code: u16) -> Result<(), UeHostError> {
        self.call_op(CallOp::Reject(call, code)).await.map(|_| ())
    }

    /// Hangs up (CANCEL, BYE or 603, whichever fits); the end comes with
    /// [`UeHandle::wait_ended`].
    pub async fn hangup(&self, call: CallRef) -> Result<(), UeHostError> {
        self.call_op(CallOp::Hangup(call)).await.map(|_| ())
    }

    /// Session refresh: an UPDATE without SDP.
    pub async fn refresh(&self, call: CallRef) -> Result<(), UeHostError> {
        self.call_op(CallOp::Refresh(call)).await.map(|_| ())
    }

    /// Session refresh by re-INVITE with a new offer.
    pub async fn reinvite(&self, call: CallRef) -> Result<(), UeHostError> {
        self.call_op(CallOp::Reinvite(call)).await.map(|_| ())
    }

    /// Sends a DTMF digit (`0`–`9`, `*`, `#`, `A`–`D`) as an RFC 4733 telephone-event in
    /// an answered call's RTP; the peer reports it as [`EventKind::DtmfReceived`].
    pub async fn send_dtmf(&self, call: CallRef, digit: char) -> Result<(), UeHostError> {
        self.call_op(CallOp::Dtmf(call, digit)).await.map(|_| ())
    }

    /// Sends a MESSAGE and resolves with its final status code.
    pub async fn send_message(&self, target: &str, text: &str) -> Result<u16, UeHostError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Message(
                self.index,
                target.to_string(),
                text.to_string(),
                tx,
            ))
            .await
            .map_err(|_| UeHostError::Stopped)?;
        rx.await
            .map_err(|_| UeHostError::Stopped)??
            .ok_or(UeHostError::MessageUnanswered)
    }

    /// The next MESSAGE received: (sender, text).
    pub async fn next_message(&self) -> Result<(String, String), UeHostError> {
        self.wait(Wait::Inbox).await
    }

    /// The UE's state now.
    pub async fn snapshot(&self) -> Result<UeSnapshot, UeHostError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Snapshot(self.index, tx))
            .await
            .map_err(|_| UeHostError::Stopped)?;
        rx.await
            .map_err(|_| UeHostError::Stopped)?
            .ok_or(UeHostError::Stopped)
    }
}

/// A host with one UE: the shortest way to drive a single simulated UE. Drop the host (or
/// call [`UeHost::shutdown`]) to stop it.
pub async fn run(cfg: UeConfig, io: IoConfig) -> Result<(UeHost, UeHandle), UeHostError> {
    let host = UeHost::start(io).await?;
    match host.add(cfg).await {
        Ok(ue) => Ok((host, ue)),
        Err(e) => {
            host.shutdown().await;
            Err(e)
        }
    }
}

struct Slot {
    ue: Ue,
    name: Arc<str>,
    /// call and message waiters
    waits: Vec<Wait>,
    /// established calls (CallAnswered seen, not ended)
    answered: HashSet<CallRef>,
    /// incoming calls and messages nobody waited for yet
    incoming: VecDeque<CallRef>,
    inbox: VecDeque<(String, String)>,
    waiter: Option<(Procedure, Reply)>,
    /// resolved with the time of the next `EventKind::Expired`
    expiry_waiter: Option<oneshot::Sender<Instant>>,
}

/// Protected ports opened for the UEs, with reference counts: a UE's server port serves
/// consecutive SA generations.
struct Ports {
    open: HashMap<SocketAddr, usize>,
    /// set ids handed out without an IPsec backend (IPsec off)
    fake: HashSet<SetId>,
    next_fake: SetId,
}

impl Ports {
    async fn open(&mut self, io: &SipIo, addr: SocketAddr) -> Result<(), SaInstallError> {
        let n = self.open.entry(addr).or_insert(0);
        if *n == 0 {
            if io.backend_name() == "userspace" {
                // bookkeeping only: decrypted datagrams arrive on the inbound channel
                io.open_protected(addr.ip(), addr.port(), addr.port())
                    .await?;
            } else {
                // kernel XFRM or no IPsec: plain UDP and TCP sockets, which the kernel's
                // SAs (if any) protect; TCP carries what the size rule sends there
                io.transport()
                    .bind_udp(addr)
                    .await
                    .map_err(|e| SaInstallError::port(addr, e))?;
                if let Err(e) = io.transport().bind_tcp(addr).await {
                    io.transport().unbind(addr, Protocol::Udp);
                    return Err(SaInstallError::port(addr, e));
                }
            }
        }
        *n += 1;
        Ok(())
    }

    fn close(&mut self, io: &SipIo, addr: SocketAddr) {
        let Some(n) = self.open.get_mut(&addr) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.open.remove(&addr);
            if io.backend_name() == "userspace" {
                io.close_protected(addr.ip(), addr.port(), addr.port());
            } else {
                // closes the TCP connections on the port too: they end with their SAs
                io.transport().unbind(addr, Protocol::Udp);
                io.transport().unbind(addr, Protocol::Tcp);
            }
        }
    }
}

async fn host_task(
    io: SipIo,
    mut inbound: mpsc::Receiver<Inbound>,
    mut cmds: mpsc::Receiver<Cmd>,
    events: mpsc::UnboundedSender<HostEvent>,
    (media, mut media_rx): (MediaIo, mpsc::Receiver<MediaIn>),
) {
    let mut slots: Vec<Slot> = Vec::new();
    let mut by_ip: HashMap<IpAddr, usize> = HashMap::new();
    let mut ports = Ports {
        open: HashMap::new(),
        fake: HashSet::new(),
        next_fake: 1_000_001,
    };
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    // the UEs an input touched: only they can have output (keeps a host of thousands of
    // UEs from polling every one of them per datagram)
    let mut dirty: Vec<usize> = Vec::new();
    // each UE's next deadline, in a heap so that a host of thousands of UEs does not scan
    // them all per datagram; `scheduled` tells current entries from stale ones
    let mut timers: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut scheduled: Vec<Option<Instant>> = Vec::new();
    loop {
        let sleep_to = timers
            .peek()
            .map(|Reverse((t, _))| tokio::time::Instant::from_std(*t))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            c = cmds.recv() => match c {
                None => break,
                Some(Cmd::Shutdown(tx)) => { shutdown = Some(tx); break; }
                Some(Cmd::Add(ue, name, tx)) => {
                    by_ip.insert(ue.config().local_ip, slots.len());
                    let _ = tx.send(slots.len());
                    slots.push(Slot {
                        ue: *ue,
                        name,
                        waits: Vec::new(),
                        answered: HashSet::new(),
                        incoming: VecDeque::new(),
                        inbox: VecDeque::new(),
                        waiter: None,
                        expiry_waiter: None,
                    });
                    scheduled.push(None);
                }
                Some(Cmd::CallOp(i, op, reply)) => {
                    if let Some(s) = slots.get_mut(i) {
                        let now = Instant::now();
                        let r = match op {
                            CallOp::Call(target) => s.ue.call(&target, now).map(Some),
                            CallOp::Answer(c) => s.ue.answer(c, now).map(|_| None),
                            CallOp::Reject(c, code) => s.ue.reject(c, code, now).map(|_| None),
                            CallOp::Hangup(c) => s.ue.hangup(c, now).map(|_| None),
                            CallOp::Refresh(c) => s.ue.refresh(c, now).map(|_| None),
                            CallOp::Reinvite(c) => s.ue.reinvite(c, now).map(|_| None),
                            CallOp::Dtmf(c, d) => s.ue.send_dtmf(c, d).map(|_| None),
                        };
                        let _ = reply.send(r);
                        dirty.push(i);
                    }
                }
                Some(Cmd::Message(i, to, text, reply)) => {
                    if let Some(s) = slots.get_mut(i) {
                        match s.ue.send_message(&to, &text, Instant::now()) {
                            Ok(id) => s.waits.push(Wait::Message(id, reply)),
                            Err(e) => { let _ = reply.send(Err(e)); }
                        }
                        dirty.push(i);
                    }
                }
                Some(Cmd::Wait(i, w)) => {
                    if let Some(s) = slots.get_mut(i) {
                        add_wait(s, w);
                    }
                }
                Some(Cmd::AwaitExpiry(i, tx)) => {
                    if let Some(s) = slots.get_mut(i) {
                        s.expiry_waiter = Some(tx);
                    }
                }
                Some(Cmd::Snapshot(i, tx)) => {
                    let snap = slots.get(i).map(|s| UeSnapshot {
                        state: s.ue.state(),
                        sa_sets: s.ue.registration().set_count(),
                        current_set: s.ue.current_set().cloned(),
                        sqn_ms: s.ue.registration().sqn_state().highest().value(),
                        transactions: s.ue.transaction_count(),
                        calls: s.ue.calls(),
                        subscribed: s.ue.is_subscribed(),
                    });
                    let _ = tx.send(snap);
                }
                Some(Cmd::Run(i, p, reply)) => {
                    if let Some(s) = slots.get_mut(i) {
                        if s.waiter.is_some() || matches!(s.ue.state(), RegState::InProgress { .. }) {
                            let _ = reply.send(Err(RegError::InvalidState {
                                command: "busy",
                                state: "a procedure is in progress",
                            }));
                        } else {
                            s.waiter = Some((p, reply));
                            dirty.push(i);
                            let now = Instant::now();
                            match p {
                                Procedure::Initial => s.ue.register(now),
                                Procedure::Reregistration => s.ue.reregister(now),
                                Procedure::Deregistration => s.ue.deregister(now),
                            }
                        }
                    }
                }
            },
            inb = inbound.recv() => {
                let Some(inb) = inb else { break };
                let ip = inb.flow.local.map(|l| l.ip());
                if let Some(&i) = ip.and_then(|ip| by_ip.get(&ip)) {
                    if let Some(s) = slots.get_mut(i) {
                        s.ue.handle_datagram(inb.flow, &inb.data, Instant::now());
                        dirty.push(i);
                    }
                }
            },
            m = media_rx.recv() => {
                // RTP for one UE, by the address it arrived on
                if let Some(m) = m {
                    if let Some(&i) = by_ip.get(&m.local) {
                        if let Some(s) = slots.get_mut(i) {
                            s.ue.handle_media(m.from, &m.data, Instant::now());
                            dirty.push(i);
                        }
                    }
                }
            },
            _ = tokio::time::sleep_until(sleep_to) => {
                let now = Instant::now();
                while let Some(&Reverse((t, i))) = timers.peek() {
                    if t > now {
                        break;
                    }
                    timers.pop();
                    if scheduled.get(i).copied().flatten() != Some(t) {
                        continue; // superseded
                    }
                    scheduled[i] = None;
                    if let Some(s) = slots.get_mut(i) {
                        s.ue.handle_timeout(now);
                        dirty.push(i);
                    }
                }
            },
        }
        for i in dirty.drain(..) {
            if let Some(s) = slots.get_mut(i) {
                drive(i, s, &io, &mut ports, &events).await;
                let name = s.name.clone();
                media.flush(&mut s.ue, |event| {
                    let _ = events.send(HostEvent {
                        ue: i,
                        name: name.clone(),
                        event,
                    });
                });
                let next = s.ue.poll_timeout();
                if next != scheduled[i] {
                    scheduled[i] = next;
                    if let Some(t) = next {
                        timers.push(Reverse((t, i)));
                    }
                }
            }
        }
    }
    media.close_all();
    // Leave nothing behind: every SA any UE still holds goes.
    for (id, _, side) in io.live_sets() {
        if side == Side::Ue {
            let _ = io.delete(id);
        }
    }
    for s in slots.iter_mut() {
        if let Some((_, w)) = s.waiter.take() {
            let _ = w.send(Err(RegError::HostStopped));
        }
    }
    if let Some(tx) = shutdown {
        let _ = tx.send(());
    }
}

/// Drains one UE's outputs until it is quiet: sends datagrams, carries out SA actions
/// (whose results feed back into the core), forwards events and resolves waiters.
async fn drive(
    index: usize,
    s: &mut Slot,
    io: &SipIo,
    ports: &mut Ports,
    events: &mpsc::UnboundedSender<HostEvent>,
) {
    loop {
        let mut busy = false;
        // events first: they describe what led to the transmits and actions below
        while let Some(e) = s.ue.poll_event() {
            busy = true;
            if let EventKind::Failed { procedure, error } = &e.kind {
                tracing::info!(ue = %s.name, procedure = procedure.as_str(), %error, "failed");
            }
            resolve(s, &e);
            resolve_calls(s, &e);
            emit(index, s, events, e);
        }
        while let Some(t) = s.ue.poll_transmit() {
            busy = true;
            if let Err(e) = io.send(&t).await {
                tracing::warn!(ue = %s.name, to = %t.flow.remote, error = %e, "send failed");
                // A request the size rule moved to TCP goes again over UDP. A failed UDP
                // send keeps its transaction: its retransmissions may still get through.
                if let (Some(id), Protocol::Tcp) = (t.tx, t.flow.protocol) {
                    s.ue.handle_transport_error(id, Instant::now());
                }
                emit(
                    index,
                    s,
                    events,
                    note(Note::SendFailed {
                        to: t.flow.remote,
                        error: e.into(),
                    }),
                );
            }
        }
        while let Some(a) = s.ue.poll_action() {
            busy = true;
            match a {
                SaAction::Install { generation, set } => {
                    let result = install(io, ports, &set).await;
                    match &result {
                        Ok(id) => tracing::debug!(ue = %s.name, id, generation, "SA set installed"),
                        Err(e) => {
                            tracing::warn!(ue = %s.name, generation, error = %e, "SA install failed")
                        }
                    }
                    if result.as_ref().is_ok_and(|id| ports.fake.contains(id)) {
                        emit(index, s, events, note(Note::IpsecOff));
                    }
                    s.ue.handle_sa_installed(generation, result, Instant::now());
                }
                SaAction::Promote { id, lifetime } => {
                    if !ports.fake.contains(&id) {
                        if let Err(e) = io.promote(id, lifetime, Instant::now()) {
                            tracing::warn!(ue = %s.name, id, error = %e, "SA promote failed");
                            emit(index, s, events, sa_failed(SaStep::Promote, id, e));
                        }
                    }
                }
                SaAction::BeginExpiry { id, grace } => {
                    if !ports.fake.contains(&id) {
                        if let Err(e) = io.begin_expiry(id, grace, Instant::now()) {
                            tracing::warn!(ue = %s.name, id, error = %e, "SA retire failed");
                            emit(index, s, events, sa_failed(SaStep::Retire, id, e));
                        }
                    }
                }
                SaAction::Delete {
                    id,
                    ip,
                    port_uc,
                    port_us,
                    ..
                } => {
                    if !ports.fake.remove(&id) {
                        if let Err(e) = io.delete(id) {
                            tracing::warn!(ue = %s.name, id, error = %e, "SA delete failed");
                            emit(index, s, events, sa_failed(SaStep::Delete, id, e));
                        }
                    }
                    ports.close(io, SocketAddr::new(ip, port_uc));
                    ports.close(io, SocketAddr::new(ip, port_us));
                }
            }
        }
        if !busy {
            break;
        }
    }
}

/// Says once per process that the userspace ESP backend keeps the UEs' SIP on UDP: it has
/// no TCP stack, so the RFC 3261 §18.1.1 size rule cannot move large requests to TCP.
fn note_no_tcp_through_sa() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::info!(
            "userspace ESP backend: no TCP inside the SAs, so the UEs' SIP stays on UDP \
             whatever its size (RFC 3261 §18.1.1 asks for TCP above 1300 bytes); use the \
             kernel backend or IPsec off for SIP over TCP"
        )
    });
}

async fn install(
    io: &SipIo,
    ports: &mut Ports,
    set: &xfrm::SaSet,
) -> Result<SetId, SaInstallError> {
    let uc = SocketAddr::new(set.ue, set.port_uc);
    let us = SocketAddr::new(set.ue, set.port_us);
    ports.open(io, uc).await?;
    if let Err(e) = ports.open(io, us).await {
        ports.close(io, uc);
        return Err(e);
    }
    if !io.has_ipsec() {
        let id = ports.next_fake;
        ports.next_fake += 1;
        ports.fake.insert(id);
        return Ok(id);
    }
    match io.install(set, Side::Ue) {
        Ok(id) => Ok(id),
        Err(e) => {
            ports.close(io, uc);
            ports.close(io, us);
            Err(e.into())
        }
    }
}

fn note(note: Note) -> UeEvent {
    UeEvent {
        at: Instant::now(),
        kind: EventKind::Note(note),
    }
}

fn sa_failed(action: SaStep, id: SetId, error: secagree::SipIoError) -> UeEvent {
    note(Note::SaFailed {
        action,
        id,
        error: error.into(),
    })
}

fn emit(index: usize, s: &Slot, events: &mpsc::UnboundedSender<HostEvent>, event: UeEvent) {
    let _ = events.send(HostEvent {
        ue: index,
        name: s.name.clone(),
        event,
    });
}

/// Registers a waiter, or resolves it at once with what already happened.
fn add_wait(s: &mut Slot, w: Wait) {
    match w {
        Wait::Answered(call, tx) => {
            if s.answered.contains(&call) {
                let _ = tx.send(Ok(()));
            } else if let Some(CallPhase::Ended(end)) = s.ue.call_phase(call) {
                let _ = tx.send(Err(end));
            } else if s.ue.call_phase(call).is_some() {
                s.waits.push(Wait::Answered(call, tx));
            }
            // an unknown call: dropping the sender tells the handle
        }
        Wait::Ended(call, tx) => match s.ue.call_phase(call) {
            Some(CallPhase::Ended(end)) => {
                let _ = tx.send(end);
            }
            Some(_) => s.waits.push(Wait::Ended(call, tx)),
            None => {}
        },
        Wait::Incoming(tx) => match s.incoming.pop_front() {
            Some(c) => {
                let _ = tx.send(c);
            }
            None => s.waits.push(Wait::Incoming(tx)),
        },
        Wait::Inbox(tx) => match s.inbox.pop_front() {
            Some(m) => {
                let _ = tx.send(m);
            }
            None => s.waits.push(Wait::Inbox(tx)),
        },
        w @ Wait::Message(..) => s.waits.push(w),
    }
}

/// Resolves the call and message waiters an event satisfies, and queues incoming calls
/// and messages nobody waits for.
fn resolve_calls(s: &mut Slot, e: &UeEvent) {
    match &e.kind {
        EventKind::CallAnswered { call, .. } => {
            s.answered.insert(*call);
        }
        EventKind::CallEnded { call, .. } => {
            s.answered.remove(call);
            s.incoming.retain(|c| c != call);
        }
        EventKind::IncomingCall { call, .. } => {
            while let Some(i) = s.waits.iter().position(|w| matches!(w, Wait::Incoming(_))) {
                if let Wait::Incoming(tx) = s.waits.remove(i) {
                    if tx.send(*call).is_ok() {
                        return;
                    }
                }
            }
            if s.incoming.len() < QUEUED {
                s.incoming.push_back(*call);
            }
            return;
        }
        EventKind::MessageReceived { from, text } => {
            let m = (from.clone(), text.clone());
            while let Some(i) = s.waits.iter().position(|w| matches!(w, Wait::Inbox(_))) {
                if let Wait::Inbox(tx) = s.waits.remove(i) {
                    if tx.send(m.clone()).is_ok() {
                        return;
                    }
                }
            }
            if s.inbox.len() < QUEUED {
                s.inbox.push_back(m);
            }
            return;
        }
        EventKind::MessageSent { .. } => {}
        _ => return,
    }
    for w in std::mem::take(&mut s.waits) {
        match (w, &e.kind) {
            (Wait::Answered(c, tx), EventKind::CallAnswered { call, .. }) if c == *call => {
                let _ = tx.send(Ok(()));
            }
            (Wait::Answered(c, tx), EventKind::CallEnded { call, end }) if c == *call => {
                let _ = tx.send(Err(end.clone()));
            }
            (Wait::Ended(c, tx), EventKind::CallEnded { call, end }) if c == *call => {
                let _ = tx.send(end.clone());
            }
            (Wait::Message(id, tx), EventKind::MessageSent { id: sent, code, .. })
                if id == *sent =>
            {
                let _ = tx.send(Ok(*code));
            }
            (w, _) => s.waits.push(w),
        }
    }
}

fn resolve(s: &mut Slot, e: &UeEvent) {
    if e.kind == EventKind::Expired {
        if let Some(w) = s.expiry_waiter.take() {
            let _ = w.send(e.at);
        }
    }
    let Some((p, _)) = &s.waiter else { return };
    let p = *p;
    let outcome = match &e.kind {
        EventKind::Registered(r) if r.procedure == p => Ok(Outcome::Registered(r.clone())),
        EventKind::Deregistered { took } if p == Procedure::Deregistration => {
            Ok(Outcome::Deregistered(*took))
        }
        EventKind::Failed { procedure, error } if *procedure == p => Err(error.clone()),
        _ => return,
    };
    if let Some((_, w)) = s.waiter.take() {
        let _ = w.send(outcome);
    }
}
