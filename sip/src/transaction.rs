//! Sans-IO SIP transactions (RFC 3261 §17, with the RFC 6026 Accepted state).
//!
//! [`Transactions`] is a table of client and server transactions in the shape of
//! quinn-proto's `Connection`: the shell feeds it parsed messages
//! ([`Transactions::handle_request`], [`Transactions::handle_response`]) and timer
//! expiries ([`Transactions::handle_timeout`]) with the current time, and drains
//! [`Transactions::poll_transmit`], [`Transactions::poll_event`] and
//! [`Transactions::poll_timeout`]. It never reads the clock and never does I/O,
//! so it works with bytes from tokio sockets as well as from the userspace ESP
//! backend, and unit tests drive it step by step.
//!
//! Matching: responses by top-Via branch + CSeq method (§17.1.3); requests by
//! branch + sent-by + method, ACK matching INVITE (§17.2.3). Requests without the
//! `z9hG4bK` cookie fall back to an RFC 2543 style key (Call-ID, CSeq number,
//! From tag, sent-by).
//!
//! The tokio shell around it is a small loop (sketch; the P-CSCF and UE add their
//! own TU logic where the comments are):
//!
//! ```no_run
//! # async fn shell() -> std::io::Result<()> {
//! use std::time::Instant;
//! use sip::transaction::{Config, Incoming, Transactions};
//! use sip::transport::{Transport, TransportConfig};
//! use sip::Message;
//!
//! let (transport, mut inbound) = Transport::new(TransportConfig::default());
//! transport.bind_udp("127.0.0.1:5060".parse().unwrap()).await?;
//! let mut txs = Transactions::new(Config::default());
//! loop {
//!     let deadline = txs.poll_timeout();
//!     tokio::select! {
//!         Some(inb) = inbound.recv() => {
//!             let Ok(mut msg) = Message::parse_bytes(inb.data, &Default::default(), sip::Framing::Datagram) else { continue };
//!             if msg.is_request() { let _ = msg.stamp_received(inb.flow.remote); }
//!             match txs.handle_message(msg, inb.flow, Instant::now()) {
//!                 Ok(Incoming::Request(_new_or_absorbed)) => { /* TU: respond() later */ }
//!                 Ok(Incoming::Response(_deliver_or_stray)) => { /* TU */ }
//!                 Err(_) => { /* unmatchable garbage: drop */ }
//!             }
//!         }
//!         _ = async { match deadline {
//!                 Some(d) => tokio::time::sleep_until(d.into()).await,
//!                 None => std::future::pending().await,
//!             } } => txs.handle_timeout(Instant::now()),
//!     }
//!     while let Some(t) = txs.poll_transmit() { let _ = transport.send(&t).await; }
//!     while let Some(_event) = txs.poll_event() { /* TU: timeouts, terminations */ }
//! }
//! # }
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use crate::builder::{ack_for_non2xx, ResponseBuilder};
use crate::error::ParseError;
use crate::flow::{Flow, Protocol, Transmit};
use crate::headers::BRANCH_MAGIC;
use crate::message::Message;
use crate::method::Method;
use crate::size_rule::{self, SizeRule};

/// Timer values (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms
    pub t1: Duration,
    /// maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s
    pub t2: Duration,
    /// maximum duration a message remains in the network, 5 s
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Transaction-layer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// timer base values
    pub timers: TimerConfig,
    /// send `100 Trying` as soon as an INVITE server transaction is created
    /// (§17.2.1 requires it within 200 ms unless the TU answers first)
    pub auto_trying: bool,
    /// how long a non-INVITE server transaction waits for its TU's final answer before it
    /// ends with [`Event::Timeout`] (timer [`Timer::U`]); longer than Timer F (64·T1), so a
    /// proxy that waits for the next hop always answers first
    pub tu_guard: Duration,
    /// the same for INVITE server transactions; longer than a proxy's Timer C
    /// (RFC 3261 §16.6 step 11: more than 3 minutes)
    pub tu_guard_invite: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timers: TimerConfig::default(),
            auto_trying: true,
            tu_guard: Duration::from_secs(40),
            tu_guard_invite: Duration::from_secs(300),
        }
    }
}

/// Identifies a transaction in a [`Transactions`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// The RFC 3261 timers (plus L and M from RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit (client)
    A,
    /// INVITE transaction timeout (client)
    B,
    /// wait time for response retransmits (client INVITE)
    D,
    /// non-INVITE request retransmit (client)
    E,
    /// non-INVITE transaction timeout (client)
    F,
    /// INVITE response retransmit (server)
    G,
    /// wait time for ACK receipt (server)
    H,
    /// wait time for ACK retransmits (server)
    I,
    /// wait time for non-INVITE request retransmits (server)
    J,
    /// wait time for response retransmits (client non-INVITE)
    K,
    /// wait time for accepted INVITE request retransmits (server, RFC 6026)
    L,
    /// wait time for retransmission of 2xx (client, RFC 6026)
    M,
    /// TU answer guard (server; not an RFC 3261 timer): ends a server transaction whose
    /// TU never answered, so that no transaction outlives its use whatever the TU does
    U,
}

const TIMERS: usize = 13;

impl Timer {
    fn idx(self) -> usize {
        self as usize
    }
}

/// Kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RFC 3261 §17.1.1
    ClientInvite,
    /// RFC 3261 §17.1.2
    ClientNonInvite,
    /// RFC 3261 §17.2.1
    ServerInvite,
    /// RFC 3261 §17.2.2
    ServerNonInvite,
}

/// Transaction state (RFC 3261 Figures 5–8, RFC 6026 Figures 3–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// client INVITE, request sent
    Calling,
    /// non-INVITE, no response yet
    Trying,
    /// provisional response seen/sent
    Proceeding,
    /// final non-2xx (INVITE) or any final (non-INVITE)
    Completed,
    /// 2xx to INVITE (RFC 6026)
    Accepted,
    /// ACK received (server INVITE)
    Confirmed,
    /// gone
    Terminated,
}

/// Errors returned to the TU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    /// the id does not name a live transaction
    #[error("no such transaction")]
    Unknown,
    /// the operation is not allowed in the current state (e.g. a second final response)
    #[error("not allowed in state {0:?}")]
    InvalidState(State),
    /// a request was expected
    #[error("not a request")]
    NotARequest,
    /// a response was expected
    #[error("not a response")]
    NotAResponse,
    /// ACK is never sent through a client transaction (§17.1.1.3, §13.2.2.4)
    #[error("ACK is sent without a transaction")]
    Ack,
    /// a transaction with the same key already exists
    #[error("duplicate transaction key")]
    Duplicate,
    /// the message lacks what matching needs
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// What happened to an incoming request.
#[derive(Debug)]
pub enum RequestOutcome {
    /// A new server transaction; the TU must eventually [`Transactions::respond`].
    New {
        /// its id
        id: TxId,
        /// the request
        request: Message,
    },
    /// A retransmission, absorbed (the last response may have been re-sent).
    Retransmission(TxId),
    /// ACK for a non-2xx final response, absorbed by its INVITE transaction.
    AckAbsorbed(TxId),
    /// An ACK no transaction claims (ACK for a 2xx, §17.2.3 / RFC 6026): the TU
    /// (UA core or proxy core) handles it statelessly. `accepted` names the INVITE
    /// transaction in the Accepted state it belongs to, if any.
    Ack {
        /// the ACK
        request: Message,
        /// matching accepted INVITE server transaction
        accepted: Option<TxId>,
    },
}

/// What happened to an incoming response.
#[derive(Debug)]
pub enum ResponseOutcome {
    /// Pass to the TU.
    Deliver {
        /// client transaction
        id: TxId,
        /// the response
        response: Message,
    },
    /// A retransmission the transaction absorbed (an ACK may have been re-sent).
    Absorbed(TxId),
    /// No client transaction matches (§17.1.3). A proxy forwards such responses
    /// statelessly (§16.7 step 3 applies only to matched ones; 2xx retransmits
    /// after the transaction ended arrive here).
    Stray(Message),
}

/// Events for the TU produced by timers or the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Timer B or F fired (client: treat as 408), or H fired (server: ACK never came).
    Timeout {
        /// transaction
        id: TxId,
        /// which timer
        timer: Timer,
    },
    /// The transport reported a failure for this transaction (§17.1.4); it ended.
    TransportError {
        /// transaction
        id: TxId,
    },
    /// The transaction ended and was removed from the table.
    Terminated {
        /// transaction
        id: TxId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Client {
        branch: String,
        method: Method,
    },
    Server {
        branch: String,
        sent_by: String,
        method: Method,
    },
}

#[derive(Debug)]
struct Tx {
    kind: Kind,
    state: State,
    flow: Flow,
    key: Key,
    /// client: the request (ACK generation); server: None
    request: Option<Message>,
    /// client: request bytes for retransmission
    request_bytes: Bytes,
    /// server: last response bytes; client INVITE: ACK bytes
    last: Option<Bytes>,
    interval: Duration,
    timers: [Option<Instant>; TIMERS],
    /// A UDP request the size rule moved to TCP: a failed send goes out once more over UDP
    /// (RFC 3261 §18.1.1) instead of ending the transaction.
    udp_fallback: bool,
}

impl Tx {
    fn reliable(&self) -> bool {
        self.flow.protocol.is_reliable()
    }
}

/// A message for a core in the same process (a flow of [`Protocol::InProcess`]): handed
/// over parsed, so the receiving core neither parses nor copies bytes.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// The flow as the sender sees it (`remote` is the receiving core's address).
    pub flow: Flow,
    /// The message.
    pub message: Message,
    /// The transaction that sent it, if any.
    pub tx: Option<TxId>,
}

/// The transaction table.
#[derive(Debug)]
pub struct Transactions {
    config: Config,
    next_id: u64,
    txs: HashMap<TxId, Tx>,
    keys: HashMap<Key, TxId>,
    heap: BinaryHeap<Reverse<(Instant, TxId, usize)>>,
    transmits: VecDeque<Transmit>,
    handoffs: VecDeque<Handoff>,
    events: VecDeque<Event>,
}

fn timer_from_idx(i: usize) -> Timer {
    [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::U,
    ][i % TIMERS]
}

fn request_key(msg: &Message, server: bool) -> Result<Key, ParseError> {
    let via = msg.top_via()?;
    let cseq = msg.cseq()?;
    let method = match (server, msg.method()) {
        (true, Some(Method::Ack)) => Method::Invite,
        (_, Some(m)) => m.clone(),
        (_, None) => cseq.method.clone(),
    };
    let branch = match via.branch() {
        Some(b) if b.starts_with(BRANCH_MAGIC) => b.to_string(),
        _ => {
            // RFC 2543 peers: approximate §17.2.3's fallback rule.
            let from_tag = msg
                .from_header()
                .ok()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default();
            format!(
                "2543|{}|{}|{}|{}",
                msg.call_id()?,
                cseq.seq,
                from_tag,
                via.branch().unwrap_or("")
            )
        }
    };
    Ok(if server {
        Key::Server {
            branch,
            sent_by: via.sent_by().to_ascii_lowercase(),
            method,
        }
    } else {
        Key::Client { branch, method }
    })
}

impl Transactions {
    /// An empty table.
    pub fn new(config: Config) -> Self {
        Transactions {
            config,
            next_id: 1,
            txs: HashMap::new(),
            keys: HashMap::new(),
            heap: BinaryHeap::new(),
            transmits: VecDeque::new(),
            handoffs: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True if no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// State of a transaction, `None` once terminated.
    pub fn state(&self, id: TxId) -> Option<State> {
        self.txs.get(&id).map(|t| t.state)
    }

    /// Kind of a transaction.
    pub fn kind(&self, id: TxId) -> Option<Kind> {
        self.txs.get(&id).map(|t| t.kind)
    }

    /// The flow a transaction uses (server: where the request came from).
    pub fn flow(&self, id: TxId) -> Option<Flow> {
        self.txs.get(&id).map(|t| t.flow)
    }

    /// The request of a client transaction.
    pub fn client_request(&self, id: TxId) -> Option<&Message> {
        self.txs.get(&id).and_then(|t| t.request.as_ref())
    }

    /// The INVITE server transaction a CANCEL refers to (§9.2: same key, method INVITE).
    pub fn invite_for_cancel(&self, cancel: &Message) -> Option<TxId> {
        let Ok(Key::Server {
            branch, sent_by, ..
        }) = request_key(cancel, true)
        else {
            return None;
        };
        self.keys
            .get(&Key::Server {
                branch,
                sent_by,
                method: Method::Invite,
            })
            .copied()
    }

    fn alloc(&mut self, tx: Tx) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        self.keys.insert(tx.key.clone(), id);
        self.txs.insert(id, tx);
        id
    }

    fn set_timer(&mut self, id: TxId, timer: Timer, at: Instant) {
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.timers[timer.idx()] = Some(at);
            self.heap.push(Reverse((at, id, timer.idx())));
        }
    }

    fn cancel_timer(&mut self, id: TxId, timer: Timer) {
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.timers[timer.idx()] = None;
        }
    }

    fn send(&mut self, id: Option<TxId>, flow: Flow, payload: Bytes) {
        self.transmits.push_back(Transmit {
            flow,
            payload,
            tx: id,
        });
    }

    /// Queues `msg` on `flow`: as bytes for a socket (returned, for retransmissions), or
    /// as the message itself for a core in this process (nothing to retransmit: the
    /// link is reliable).
    fn emit(&mut self, id: Option<TxId>, flow: Flow, msg: &Message) -> Option<Bytes> {
        if flow.protocol == Protocol::InProcess {
            self.emit_owned(id, flow, msg.clone())
        } else {
            let b = Bytes::from(msg.to_bytes());
            self.send(id, flow, b.clone());
            Some(b)
        }
    }

    /// [`Self::emit`] for a message the caller no longer needs: a core in this process
    /// gets it without a copy.
    fn emit_owned(&mut self, id: Option<TxId>, flow: Flow, msg: Message) -> Option<Bytes> {
        if flow.protocol == Protocol::InProcess {
            self.handoffs.push_back(Handoff {
                flow,
                message: msg,
                tx: id,
            });
            None
        } else {
            self.emit(id, flow, &msg)
        }
    }

    fn terminate(&mut self, id: TxId) {
        if let Some(tx) = self.txs.remove(&id) {
            if self.keys.get(&tx.key) == Some(&id) {
                self.keys.remove(&tx.key);
            }
            self.events.push_back(Event::Terminated { id });
        }
    }

    /// Either terminates at once (zero wait on reliable transports) or arms `timer`.
    fn wait_or_terminate(&mut self, id: TxId, timer: Timer, wait: Duration, now: Instant) {
        let reliable = self.txs.get(&id).is_some_and(Tx::reliable);
        if reliable || wait.is_zero() {
            self.terminate(id);
        } else {
            self.set_timer(id, timer, now + wait);
        }
    }

    /// Starts a client transaction and queues the first transmission (§17.1.1.2, §17.1.2.2).
    pub fn send_request(
        &mut self,
        request: Message,
        flow: Flow,
        now: Instant,
    ) -> Result<TxId, TxError> {
        let method = request.method().ok_or(TxError::NotARequest)?.clone();
        if method == Method::Ack {
            return Err(TxError::Ack);
        }
        let key = request_key(&request, false)?;
        if self.keys.contains_key(&key) {
            return Err(TxError::Duplicate);
        }
        let t = self.config.timers;
        let invite = method == Method::Invite;
        let id = self.alloc(Tx {
            kind: if invite {
                Kind::ClientInvite
            } else {
                Kind::ClientNonInvite
            },
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            flow,
            key,
            request: None,
            request_bytes: Bytes::new(),
            last: None,
            interval: t.t1,
            timers: [None; TIMERS],
            udp_fallback: false,
        });
        let bytes = self.emit(Some(id), flow, &request);
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.request = Some(request);
            tx.request_bytes = bytes.unwrap_or_default();
        }
        let reliable = flow.protocol.is_reliable();
        if invite {
            if !reliable {
                self.set_timer(id, Timer::A, now + t.t1);
            }
            self.set_timer(id, Timer::B, now + 64 * t.t1);
        } else {
            if !reliable {
                self.set_timer(id, Timer::E, now + t.t1);
            }
            self.set_timer(id, Timer::F, now + 64 * t.t1);
        }
        Ok(id)
    }

    /// [`Self::send_request`] under the RFC 3261 §18.1.1 size rule ([`crate::size_rule`]):
    /// a UDP request larger than `rule.threshold` goes over TCP with its top Via changed to
    /// match, when `rule.tcp` says the path carries TCP. Should that send fail
    /// ([`Self::handle_transport_error`]) before anything came back, the request goes
    /// once more over UDP, as §18.1.1 recommends.
    pub fn send_request_sized(
        &mut self,
        mut request: Message,
        flow: Flow,
        rule: &SizeRule,
        now: Instant,
    ) -> Result<TxId, TxError> {
        let mut sized = None;
        // Encoding costs a copy; only a UDP request that could move pays it.
        if flow.protocol == Protocol::Udp && rule.tcp {
            let len = request.to_bytes().len();
            sized = size_rule::apply(rule, &mut request, flow, len);
        }
        let id = self.send_request(request, sized.unwrap_or(flow), now)?;
        if sized.is_some() {
            if let Some(tx) = self.txs.get_mut(&id) {
                tx.udp_fallback = true;
            }
        }
        Ok(id)
    }

    /// Queues a message outside any transaction (ACK for 2xx, stateless forwarding),
    /// so the shell has a single output queue.
    pub fn send_stateless(&mut self, msg: &Message, flow: Flow) {
        self.emit(None, flow, msg);
    }

    /// Feeds a received request (§17.2.3 matching).
    pub fn handle_request(
        &mut self,
        request: Message,
        flow: Flow,
        now: Instant,
    ) -> Result<RequestOutcome, TxError> {
        let method = request.method().ok_or(TxError::NotARequest)?.clone();
        let key = request_key(&request, true)?;
        if let Some(&id) = self.keys.get(&key) {
            let Some(tx) = self.txs.get(&id) else {
                return Err(TxError::Unknown);
            };
            let (state, kind, last, tflow) = (tx.state, tx.kind, tx.last.clone(), tx.flow);
            if method == Method::Ack {
                if kind != Kind::ServerInvite {
                    return Ok(RequestOutcome::Ack {
                        request,
                        accepted: None,
                    });
                }
                return Ok(match state {
                    State::Completed => {
                        self.cancel_timer(id, Timer::G);
                        self.cancel_timer(id, Timer::H);
                        if let Some(tx) = self.txs.get_mut(&id) {
                            tx.state = State::Confirmed;
                        }
                        let t4 = self.config.timers.t4;
                        self.wait_or_terminate(id, Timer::I, t4, now);
                        RequestOutcome::AckAbsorbed(id)
                    }
                    State::Confirmed => RequestOutcome::AckAbsorbed(id),
                    State::Accepted => RequestOutcome::Ack {
                        request,
                        accepted: Some(id),
                    },
                    _ => RequestOutcome::AckAbsorbed(id),
                });
            }
            // retransmitted request
            // Accepted absorbs without resending (RFC 6026 §8.5: the TU retransmits
            // its 2xx itself); Trying has nothing to resend.
            if matches!(state, State::Proceeding | State::Completed) {
                if let Some(b) = last {
                    self.send(Some(id), tflow, b);
                }
            }
            return Ok(RequestOutcome::Retransmission(id));
        }
        if method == Method::Ack {
            return Ok(RequestOutcome::Ack {
                request,
                accepted: None,
            });
        }
        let invite = method == Method::Invite;
        let id = self.alloc(Tx {
            kind: if invite {
                Kind::ServerInvite
            } else {
                Kind::ServerNonInvite
            },
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            flow,
            key,
            request: None,
            request_bytes: Bytes::new(),
            last: None,
            interval: self.config.timers.t1,
            timers: [None; TIMERS],
            udp_fallback: false,
        });
        let guard = if invite {
            self.config.tu_guard_invite
        } else {
            self.config.tu_guard
        };
        self.set_timer(id, Timer::U, now + guard);
        if invite && self.config.auto_trying {
            if let Ok(trying) = ResponseBuilder::new(&request, 100).build() {
                let b = self.emit(Some(id), flow, &trying);
                if let Some(tx) = self.txs.get_mut(&id) {
                    tx.last = b;
                }
            }
        }
        Ok(RequestOutcome::New { id, request })
    }

    /// Ends transaction `id` at once: a server transaction whose request its TU cannot
    /// answer at all (no response can be built for it; retransmissions of that request
    /// then start a new transaction, which ends the same way), or a client INVITE
    /// transaction a proxy gave up on after Timer C and a CANCEL that went unanswered
    /// (RFC 3261 §16.8: its Timer B stopped with the first provisional).
    pub fn abandon(&mut self, id: TxId) {
        self.terminate(id);
    }

    /// Sends a response through a server transaction (§17.2.1, §17.2.2).
    pub fn respond(&mut self, id: TxId, response: Message, now: Instant) -> Result<(), TxError> {
        let code = response.code().ok_or(TxError::NotAResponse)?;
        let t = self.config.timers;
        let tx = self.txs.get(&id).ok_or(TxError::Unknown)?;
        let (kind, state, flow, reliable) = (tx.kind, tx.state, tx.flow, tx.reliable());
        let allowed = match (kind, state) {
            (Kind::ServerNonInvite, State::Trying | State::Proceeding) => true,
            (Kind::ServerInvite, State::Proceeding) => true,
            // the TU core retransmits its 2xx (§13.3.1.4) through here
            (Kind::ServerInvite, State::Accepted) => (200..300).contains(&code),
            _ => false,
        };
        if !allowed {
            return Err(TxError::InvalidState(state));
        }
        let bytes = self.emit_owned(Some(id), flow, response);
        let tx = self.txs.get_mut(&id).ok_or(TxError::Unknown)?;
        match (kind, state) {
            (Kind::ServerNonInvite, _) => {
                tx.last = bytes;
                if code < 200 {
                    tx.state = State::Proceeding;
                } else {
                    tx.state = State::Completed;
                    self.wait_or_terminate(id, Timer::J, 64 * t.t1, now);
                }
            }
            (Kind::ServerInvite, State::Proceeding) => {
                tx.last = bytes;
                if (200..300).contains(&code) {
                    tx.state = State::Accepted;
                    self.set_timer(id, Timer::L, now + 64 * t.t1);
                } else if code >= 300 {
                    tx.state = State::Completed;
                    if !reliable {
                        self.set_timer(id, Timer::G, now + t.t1);
                    }
                    self.set_timer(id, Timer::H, now + 64 * t.t1);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The client transaction a response would match (§17.1.3), without feeding it: for a
    /// core that must check where the response came from before it may change any state
    /// (a forged response must not complete somebody's transaction).
    pub fn match_response(&self, response: &Message) -> Option<TxId> {
        let key = request_key(response, false).ok()?;
        self.keys.get(&key).copied()
    }

    /// Feeds a received response (§17.1.3 matching).
    pub fn handle_response(
        &mut self,
        response: Message,
        now: Instant,
    ) -> Result<ResponseOutcome, TxError> {
        let code = response.code().ok_or(TxError::NotAResponse)?;
        let key = request_key(&response, false)?;
        let Some(&id) = self.keys.get(&key) else {
            return Ok(ResponseOutcome::Stray(response));
        };
        let t = self.config.timers;
        let Some(tx) = self.txs.get_mut(&id) else {
            return Ok(ResponseOutcome::Stray(response));
        };
        let flow = tx.flow;
        let deliver = |response| Ok(ResponseOutcome::Deliver { id, response });
        match (tx.kind, tx.state) {
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => {
                if code < 200 {
                    tx.state = State::Proceeding;
                } else {
                    tx.state = State::Completed;
                    self.cancel_timer(id, Timer::E);
                    self.cancel_timer(id, Timer::F);
                    self.wait_or_terminate(id, Timer::K, t.t4, now);
                }
                deliver(response)
            }
            (Kind::ClientNonInvite, _) => Ok(ResponseOutcome::Absorbed(id)),
            (Kind::ClientInvite, State::Calling | State::Proceeding) => {
                if code < 200 {
                    tx.state = State::Proceeding;
                    self.cancel_timer(id, Timer::A);
                    self.cancel_timer(id, Timer::B);
                } else if code < 300 {
                    tx.state = State::Accepted;
                    self.cancel_timer(id, Timer::A);
                    self.cancel_timer(id, Timer::B);
                    self.set_timer(id, Timer::M, now + 64 * t.t1);
                } else {
                    tx.state = State::Completed;
                    let ack = tx
                        .request
                        .as_ref()
                        .and_then(|r| ack_for_non2xx(r, &response).ok());
                    let bytes = ack.and_then(|a| self.emit(Some(id), flow, &a));
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.last = bytes;
                    }
                    self.cancel_timer(id, Timer::A);
                    self.cancel_timer(id, Timer::B);
                    let wait = Duration::from_secs(32).max(64 * t.t1);
                    self.wait_or_terminate(id, Timer::D, wait, now);
                }
                deliver(response)
            }
            (Kind::ClientInvite, State::Accepted) if (200..300).contains(&code) => {
                // RFC 6026 §8.4: 2xx retransmissions go to the TU
                deliver(response)
            }
            (Kind::ClientInvite, State::Completed) if code >= 300 => {
                if let Some(a) = tx.last.clone() {
                    self.send(Some(id), flow, a);
                }
                Ok(ResponseOutcome::Absorbed(id))
            }
            _ => Ok(ResponseOutcome::Absorbed(id)),
        }
    }

    /// Feeds any received message; convenience over the two handlers.
    pub fn handle_message(
        &mut self,
        msg: Message,
        flow: Flow,
        now: Instant,
    ) -> Result<Incoming, TxError> {
        if msg.is_request() {
            self.handle_request(msg, flow, now).map(Incoming::Request)
        } else {
            self.handle_response(msg, now).map(Incoming::Response)
        }
    }

    /// The transport failed to send for this transaction (§17.1.4, §17.2.4). A request the
    /// size rule moved to TCP ([`Self::send_request_sized`]) that has had no answer yet is
    /// sent again over UDP, with its own UDP timers (§18.1.1); anything else ends with
    /// [`Event::TransportError`].
    pub fn handle_transport_error(&mut self, id: TxId, now: Instant) {
        if self.fall_back_to_udp(id, now) {
            return;
        }
        if self.txs.contains_key(&id) {
            self.events.push_back(Event::TransportError { id });
            self.terminate(id);
        }
    }

    fn fall_back_to_udp(&mut self, id: TxId, now: Instant) -> bool {
        let t1 = self.config.timers.t1;
        let Some(tx) = self.txs.get_mut(&id) else {
            return false;
        };
        if !tx.udp_fallback || !matches!(tx.state, State::Calling | State::Trying) {
            return false;
        }
        tx.udp_fallback = false;
        let Some(req) = tx.request.as_mut() else {
            return false;
        };
        if size_rule::set_via_transport(req, Protocol::Udp).is_err() {
            return false;
        }
        let bytes = Bytes::from(req.to_bytes());
        tx.flow.protocol = Protocol::Udp;
        tx.request_bytes = bytes.clone();
        tx.interval = t1;
        let (flow, timer) = (
            tx.flow,
            if tx.kind == Kind::ClientInvite {
                Timer::A
            } else {
                Timer::E
            },
        );
        self.send(Some(id), flow, bytes);
        self.set_timer(id, timer, now + t1);
        true
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, ti))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            if tx.timers[ti] != Some(at) {
                continue; // stale entry
            }
            tx.timers[ti] = None;
            self.fire(id, timer_from_idx(ti), now);
        }
    }

    fn fire(&mut self, id: TxId, timer: Timer, now: Instant) {
        let t = self.config.timers;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        let flow = tx.flow;
        match (timer, tx.state) {
            (Timer::A, State::Calling) => {
                tx.interval *= 2;
                let (b, next) = (tx.request_bytes.clone(), now + tx.interval);
                self.send(Some(id), flow, b);
                self.set_timer(id, Timer::A, next);
            }
            (Timer::E, State::Trying | State::Proceeding) => {
                tx.interval = if tx.state == State::Trying {
                    (tx.interval * 2).min(t.t2)
                } else {
                    t.t2
                };
                let (b, next) = (tx.request_bytes.clone(), now + tx.interval);
                self.send(Some(id), flow, b);
                self.set_timer(id, Timer::E, next);
            }
            (Timer::G, State::Completed) => {
                tx.interval = (tx.interval * 2).min(t.t2);
                let next = now + tx.interval;
                if let Some(b) = tx.last.clone() {
                    self.send(Some(id), flow, b);
                }
                self.set_timer(id, Timer::G, next);
            }
            (Timer::B | Timer::F, State::Calling | State::Trying | State::Proceeding)
            | (Timer::H, State::Completed)
            | (Timer::U, State::Trying | State::Proceeding) => {
                self.events.push_back(Event::Timeout { id, timer });
                self.terminate(id);
            }
            (Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M, _) => {
                self.terminate(id);
            }
            _ => {}
        }
    }

    /// Next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next message for a core in this process ([`Protocol::InProcess`] flows).
    pub fn poll_handoff(&mut self) -> Option<Handoff> {
        self.handoffs.pop_front()
    }

    /// Next event for the TU. Poll until `None` after each `handle_*` call.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest pending timer deadline.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id, ti))) = self.heap.peek().copied() {
            match self.txs.get(&id) {
                Some(tx) if tx.timers[ti] == Some(at) => return Some(at),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }
}

/// The earlier of two optional deadlines: a core's own timers against its transaction
/// table's, for its `poll_timeout`.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Result of [`Transactions::handle_message`].
#[derive(Debug)]
pub enum Incoming {
    /// see [`RequestOutcome`]
    Request(RequestOutcome),
    /// see [`ResponseOutcome`]
    Response(ResponseOutcome),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::RequestBuilder;
    use crate::flow::Protocol;
    use crate::headers::{NameAddr, Via};
    use crate::uri::Uri;

    fn flow(p: Protocol) -> Flow {
        Flow::new(
            "127.0.0.1:5060".parse().unwrap(),
            "127.0.0.1:5070".parse().unwrap(),
            p,
        )
    }

    fn request(method: Method, branch: &str) -> Message {
        let mut from = NameAddr::new(Uri::parse("sip:a@x").unwrap());
        from.params.set("tag", Some("ft"));
        RequestBuilder::new(method, "sip:b@x")
            .via(&Via::new("UDP", "127.0.0.1", Some(5070), branch))
            .max_forwards(70)
            .from(&from)
            .to(&NameAddr::new(Uri::parse("sip:b@x").unwrap()))
            .call_id("cid")
            .cseq(1)
            .build()
    }

    fn resp(req: &Message, code: u16) -> Message {
        ResponseBuilder::new(req, code)
            .to_tag("tt")
            .build()
            .unwrap()
    }

    fn drain(t: &mut Transactions) -> Vec<Transmit> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    fn events(t: &mut Transactions) -> Vec<Event> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    #[test]
    fn client_non_invite_udp_retransmits_and_times_out() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let id = t
            .send_request(
                request(Method::Register, "z9hG4bK1"),
                flow(Protocol::Udp),
                t0,
            )
            .unwrap();
        assert_eq!(drain(&mut t).len(), 1);
        // E: 0.5, 1.5, 3.5, 7.5, 11.5 ... (interval doubling capped at T2=4)
        let mut sent_at = vec![];
        let mut now = t0;
        while let Some(dl) = t.poll_timeout() {
            now = dl;
            t.handle_timeout(now);
            if !drain(&mut t).is_empty() {
                sent_at.push((now - t0).as_millis());
            }
            if t.state(id).is_none() {
                break;
            }
        }
        assert_eq!(&sent_at[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(now - t0, Duration::from_secs(32));
        let ev = events(&mut t);
        assert_eq!(
            ev[0],
            Event::Timeout {
                id,
                timer: Timer::F
            }
        );
        assert_eq!(ev[1], Event::Terminated { id });
        assert!(t.is_empty());
    }

    #[test]
    fn a_server_transaction_the_tu_never_answers_ends_at_the_tu_guard() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let (id, inv) = (
            t.handle_request(
                request(Method::Register, "z9hG4bKg1"),
                flow(Protocol::Udp),
                t0,
            ),
            t.handle_request(
                request(Method::Invite, "z9hG4bKg2"),
                flow(Protocol::Udp),
                t0,
            ),
        );
        let (Ok(RequestOutcome::New { id, .. }), Ok(RequestOutcome::New { id: inv, .. })) =
            (id, inv)
        else {
            panic!("both requests start transactions");
        };
        let guard = Config::default().tu_guard;
        t.handle_timeout(t0 + guard - Duration::from_millis(1));
        assert_eq!(t.state(id), Some(State::Trying), "not before the guard");
        t.handle_timeout(t0 + guard);
        assert_eq!(t.state(id), None);
        let ev = events(&mut t);
        assert_eq!(
            ev[0],
            Event::Timeout {
                id,
                timer: Timer::U
            }
        );
        assert_eq!(ev[1], Event::Terminated { id });
        // The INVITE may ring for minutes; it still ends.
        assert_eq!(t.state(inv), Some(State::Proceeding));
        t.handle_timeout(t0 + Config::default().tu_guard_invite);
        assert!(t.is_empty());
    }

    #[test]
    fn the_guard_leaves_an_answered_transaction_alone() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Register, "z9hG4bKg3");
        let Ok(RequestOutcome::New { id, .. }) =
            t.handle_request(req.clone(), flow(Protocol::Udp), t0)
        else {
            panic!("new transaction");
        };
        t.respond(id, resp(&req, 100), t0).unwrap();
        t.handle_timeout(t0 + Duration::from_secs(1));
        t.respond(id, resp(&req, 200), t0 + Duration::from_secs(1))
            .unwrap();
        t.handle_timeout(t0 + Config::default().tu_guard);
        // Completed, then Timer J: no TU timeout reported.
        assert!(!events(&mut t)
            .iter()
            .any(|e| matches!(e, Event::Timeout { .. })));
    }

    #[test]
    fn an_abandoned_server_transaction_is_gone_at_once() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let Ok(RequestOutcome::New { id, .. }) = t.handle_request(
            request(Method::Register, "z9hG4bKg4"),
            flow(Protocol::Udp),
            t0,
        ) else {
            panic!("new transaction");
        };
        t.abandon(id);
        assert!(t.is_empty());
        assert_eq!(events(&mut t), vec![Event::Terminated { id }]);
    }

    #[test]
    fn client_non_invite_final_then_k() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Register, "z9hG4bK2");
        let id = t
            .send_request(req.clone(), flow(Protocol::Udp), t0)
            .unwrap();
        drain(&mut t);
        let r = t.handle_response(resp(&req, 100), t0).unwrap();
        assert!(matches!(r, ResponseOutcome::Deliver { .. }));
        assert_eq!(t.state(id), Some(State::Proceeding));
        let r = t.handle_response(resp(&req, 401), t0).unwrap();
        assert!(matches!(r, ResponseOutcome::Deliver { .. }));
        assert_eq!(t.state(id), Some(State::Completed));
        assert!(matches!(
            t.handle_response(resp(&req, 401), t0).unwrap(),
            ResponseOutcome::Absorbed(_)
        ));
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        t.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(t.state(id), None);
        // a response after termination is stray
        assert!(matches!(
            t.handle_response(resp(&req, 200), t0).unwrap(),
            ResponseOutcome::Stray(_)
        ));
        // a different CSeq method with the same branch does not match
        let mut other = resp(&req, 200);
        other.set_header("CSeq", "1 CANCEL");
        assert!(matches!(
            t.handle_response(other, t0).unwrap(),
            ResponseOutcome::Stray(_)
        ));
    }

    #[test]
    fn client_tcp_has_no_retransmits_and_no_wait() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Options, "z9hG4bK3");
        let id = t
            .send_request(req.clone(), flow(Protocol::Tcp), t0)
            .unwrap();
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        t.handle_response(resp(&req, 200), t0).unwrap();
        assert_eq!(t.state(id), None);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn client_invite_non2xx_acks() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Invite, "z9hG4bK4");
        let id = t
            .send_request(req.clone(), flow(Protocol::Udp), t0)
            .unwrap();
        drain(&mut t);
        t.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(drain(&mut t).len(), 1, "timer A retransmit");
        t.handle_response(resp(&req, 180), t0).unwrap();
        t.handle_timeout(t0 + Duration::from_secs(10));
        assert!(drain(&mut t).is_empty(), "no retransmit in Proceeding");
        t.handle_response(resp(&req, 486), t0).unwrap();
        let tx = drain(&mut t);
        assert_eq!(tx.len(), 1);
        let ack = Message::parse(&tx[0].payload).unwrap();
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.branch().unwrap(), "z9hG4bK4");
        assert!(matches!(
            t.handle_response(resp(&req, 486), t0).unwrap(),
            ResponseOutcome::Absorbed(_)
        ));
        assert_eq!(
            drain(&mut t).len(),
            1,
            "ACK re-sent for retransmitted final"
        );
        t.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(t.state(id), None);
    }

    #[test]
    fn client_invite_2xx_accepted() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Invite, "z9hG4bK5");
        let id = t
            .send_request(req.clone(), flow(Protocol::Udp), t0)
            .unwrap();
        t.handle_response(resp(&req, 200), t0).unwrap();
        assert_eq!(t.state(id), Some(State::Accepted));
        assert!(matches!(
            t.handle_response(resp(&req, 200), t0).unwrap(),
            ResponseOutcome::Deliver { .. }
        ));
        t.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(t.state(id), None);
        assert!(t
            .send_request(request(Method::Ack, "z9hG4bK6"), flow(Protocol::Udp), t0)
            .is_err());
    }

    #[test]
    fn server_non_invite_absorbs_and_resends() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Register, "z9hG4bK7");
        let RequestOutcome::New { id, .. } = t
            .handle_request(req.clone(), flow(Protocol::Udp), t0)
            .unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            t.handle_request(req.clone(), flow(Protocol::Udp), t0)
                .unwrap(),
            RequestOutcome::Retransmission(_)
        ));
        assert!(drain(&mut t).is_empty());
        t.respond(id, resp(&req, 401), t0).unwrap();
        assert_eq!(drain(&mut t).len(), 1);
        assert!(matches!(
            t.respond(id, resp(&req, 200), t0),
            Err(TxError::InvalidState(State::Completed))
        ));
        t.handle_request(req.clone(), flow(Protocol::Udp), t0)
            .unwrap();
        let again = drain(&mut t);
        assert_eq!(Message::parse(&again[0].payload).unwrap().code(), Some(401));
        t.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(t.state(id), None);
        assert_eq!(events(&mut t), vec![Event::Terminated { id }]);
    }

    #[test]
    fn server_invite_non2xx_g_h_ack() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Invite, "z9hG4bK8");
        let RequestOutcome::New { id, .. } = t
            .handle_request(req.clone(), flow(Protocol::Udp), t0)
            .unwrap()
        else {
            panic!()
        };
        let trying = drain(&mut t);
        assert_eq!(
            Message::parse(&trying[0].payload).unwrap().code(),
            Some(100)
        );
        t.respond(id, resp(&req, 486), t0).unwrap();
        drain(&mut t);
        t.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(drain(&mut t).len(), 1, "timer G");
        t.handle_timeout(t0 + Duration::from_millis(1500));
        assert_eq!(drain(&mut t).len(), 1, "timer G doubled");
        let ack = ack_for_non2xx(&req, &resp(&req, 486)).unwrap();
        assert!(matches!(
            t.handle_request(ack.clone(), flow(Protocol::Udp), t0)
                .unwrap(),
            RequestOutcome::AckAbsorbed(_)
        ));
        assert_eq!(t.state(id), Some(State::Confirmed));
        t.handle_timeout(t0 + Duration::from_secs(10));
        assert!(drain(&mut t).is_empty(), "G stopped");
        assert_eq!(t.state(id), None, "timer I (T4) elapsed");
    }

    #[test]
    fn server_invite_h_timeout_and_2xx_ack_passthrough() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Invite, "z9hG4bK9");
        let RequestOutcome::New { id, .. } = t
            .handle_request(req.clone(), flow(Protocol::Tcp), t0)
            .unwrap()
        else {
            panic!()
        };
        t.respond(id, resp(&req, 500), t0).unwrap();
        t.handle_timeout(t0 + Duration::from_secs(32));
        let ev = events(&mut t);
        assert_eq!(
            ev[0],
            Event::Timeout {
                id,
                timer: Timer::H
            }
        );

        let req2 = request(Method::Invite, "z9hG4bK10");
        let RequestOutcome::New { id, .. } = t
            .handle_request(req2.clone(), flow(Protocol::Udp), t0)
            .unwrap()
        else {
            panic!()
        };
        t.respond(id, resp(&req2, 200), t0).unwrap();
        assert_eq!(t.state(id), Some(State::Accepted));
        let ack2xx = request(Method::Ack, "z9hG4bKnew");
        assert!(matches!(
            t.handle_request(ack2xx, flow(Protocol::Udp), t0).unwrap(),
            RequestOutcome::Ack { accepted: None, .. }
        ));
        assert!(matches!(
            t.handle_request(req2.clone(), flow(Protocol::Udp), t0)
                .unwrap(),
            RequestOutcome::Retransmission(_)
        ));
        let cancel = crate::builder::cancel_for(&req2).unwrap();
        assert_eq!(t.invite_for_cancel(&cancel), Some(id));
        assert!(matches!(
            t.handle_request(cancel, flow(Protocol::Udp), t0).unwrap(),
            RequestOutcome::New { .. }
        ));
        t.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(t.state(id), None);
    }

    #[test]
    fn transport_error() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let id = t
            .send_request(
                request(Method::Options, "z9hG4bK11"),
                flow(Protocol::Tcp),
                t0,
            )
            .unwrap();
        t.handle_transport_error(id, t0);
        assert_eq!(
            events(&mut t),
            vec![Event::TransportError { id }, Event::Terminated { id }]
        );
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None);
    }

    fn big(method: Method, branch: &str) -> Message {
        let mut m = request(method, branch);
        m.set_body(Some("application/sdp"), Bytes::from(vec![b'a'; 1400]));
        m
    }

    #[test]
    fn the_size_rule_moves_a_large_udp_request_to_tcp_without_timer_a() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let rule = SizeRule::default();
        let id = t
            .send_request_sized(
                big(Method::Invite, "z9hG4bK21"),
                flow(Protocol::Udp),
                &rule,
                t0,
            )
            .unwrap();
        let sent = drain(&mut t);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].flow, flow(Protocol::Tcp));
        assert!(sent[0].payload.len() > 1300);
        let m = Message::parse(&sent[0].payload).unwrap();
        assert_eq!(m.top_via().unwrap().transport, "TCP");
        assert_eq!(t.flow(id), Some(flow(Protocol::Tcp)));
        // reliable: no retransmission, only Timer B
        t.handle_timeout(t0 + Duration::from_secs(4));
        assert!(drain(&mut t).is_empty());
        // a small one stays on UDP, byte for byte as built
        let small = request(Method::Options, "z9hG4bK22");
        let bytes = small.to_bytes();
        t.send_request_sized(small, flow(Protocol::Udp), &rule, t0)
            .unwrap();
        let sent = drain(&mut t);
        assert_eq!(sent[0].flow, flow(Protocol::Udp));
        assert_eq!(&sent[0].payload[..], &bytes[..]);
        // a path without TCP keeps even a large one on UDP
        let id = t
            .send_request_sized(
                big(Method::Message, "z9hG4bK23"),
                flow(Protocol::Udp),
                &rule.without_tcp(),
                t0,
            )
            .unwrap();
        assert_eq!(drain(&mut t)[0].flow, flow(Protocol::Udp));
        t.handle_transport_error(id, t0);
        assert_eq!(
            events(&mut t),
            vec![Event::TransportError { id }, Event::Terminated { id }],
            "no fallback for a request that was never moved"
        );
    }

    #[test]
    fn a_failed_tcp_send_falls_back_to_udp_once() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let id = t
            .send_request_sized(
                big(Method::Invite, "z9hG4bK31"),
                flow(Protocol::Udp),
                &SizeRule::default(),
                t0,
            )
            .unwrap();
        drain(&mut t);
        let t1 = t0 + Duration::from_millis(10);
        t.handle_transport_error(id, t1);
        assert!(events(&mut t).is_empty(), "the transaction lives on");
        let sent = drain(&mut t);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].flow, flow(Protocol::Udp));
        let m = Message::parse(&sent[0].payload).unwrap();
        assert_eq!(m.top_via().unwrap().transport, "UDP");
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK31"));
        // UDP now: Timer A retransmits the UDP bytes
        t.handle_timeout(t1 + Duration::from_millis(500));
        let again = drain(&mut t);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].payload, sent[0].payload);
        // the response over UDP completes it as usual
        let r = resp(&m, 180);
        assert!(matches!(
            t.handle_response(r, t1).unwrap(),
            ResponseOutcome::Deliver { .. }
        ));
        // a second failure is final
        t.handle_transport_error(id, t1);
        assert_eq!(
            events(&mut t),
            vec![Event::TransportError { id }, Event::Terminated { id }]
        );
    }

    #[test]
    fn no_fallback_after_an_answer_came_over_tcp() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = big(Method::Invite, "z9hG4bK41");
        let id = t
            .send_request_sized(req, flow(Protocol::Udp), &SizeRule::default(), t0)
            .unwrap();
        let m = Message::parse(&drain(&mut t)[0].payload).unwrap();
        t.handle_response(resp(&m, 100), t0).unwrap();
        t.handle_transport_error(id, t0);
        assert_eq!(
            events(&mut t),
            vec![Event::TransportError { id }, Event::Terminated { id }]
        );
    }

    #[test]
    fn client_invite_timer_a_doubles_until_b() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let id = t
            .send_request(
                request(Method::Invite, "z9hG4bK12"),
                flow(Protocol::Udp),
                t0,
            )
            .unwrap();
        drain(&mut t);
        let mut sent_at = vec![];
        while let Some(dl) = t.poll_timeout() {
            t.handle_timeout(dl);
            if !drain(&mut t).is_empty() {
                sent_at.push((dl - t0).as_millis());
            }
        }
        // A: T1, 2T1, 4T1 … (no cap for INVITE), B at 64*T1
        assert_eq!(sent_at, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(
            events(&mut t)[0],
            Event::Timeout {
                id,
                timer: Timer::B
            }
        );
    }

    #[test]
    fn server_non_invite_tcp_terminates_on_final() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let req = request(Method::Register, "z9hG4bK13");
        let RequestOutcome::New { id, .. } = t
            .handle_request(req.clone(), flow(Protocol::Tcp), t0)
            .unwrap()
        else {
            panic!()
        };
        t.respond(id, resp(&req, 100), t0).unwrap();
        assert_eq!(t.state(id), Some(State::Proceeding));
        t.respond(id, resp(&req, 200), t0).unwrap();
        assert_eq!(t.state(id), None, "timer J is zero on reliable transports");
        assert_eq!(drain(&mut t).len(), 2);
        assert!(matches!(
            t.respond(id, resp(&req, 200), t0),
            Err(TxError::Unknown)
        ));
    }

    #[test]
    fn rfc2543_requests_without_cookie_still_match() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let mut req = request(Method::Options, "z9hG4bK14");
        req.set_header("Via", "SIP/2.0/UDP 127.0.0.1:5070");
        let RequestOutcome::New { id, .. } = t
            .handle_request(req.clone(), flow(Protocol::Udp), t0)
            .unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            t.handle_request(req.clone(), flow(Protocol::Udp), t0).unwrap(),
            RequestOutcome::Retransmission(x) if x == id
        ));
        let mut other = req.clone();
        other.set_header("CSeq", "2 OPTIONS");
        assert!(matches!(
            t.handle_request(other, flow(Protocol::Udp), t0).unwrap(),
            RequestOutcome::New { .. }
        ));
        // a request that cannot be keyed is an error, not a panic
        let mut broken = req;
        broken.remove_header("Via");
        assert!(matches!(
            t.handle_request(broken, flow(Protocol::Udp), t0),
            Err(TxError::Parse(_))
        ));
    }

    #[test]
    fn same_branch_different_sent_by_is_a_different_transaction() {
        let mut t = Transactions::new(Config::default());
        let t0 = Instant::now();
        let a = request(Method::Options, "z9hG4bK15");
        let mut b = a.clone();
        b.set_header("Via", "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK15");
        assert!(matches!(
            t.handle_request(a, flow(Protocol::Udp), t0).unwrap(),
            RequestOutcome::New { .. }
        ));
        assert!(matches!(
            t.handle_request(b, flow(Protocol::Udp), t0).unwrap(),
            RequestOutcome::New { .. }
        ));
        assert_eq!(t.len(), 2);
        // duplicate client transaction keys are refused
        let c = request(Method::Options, "z9hG4bK16");
        t.send_request(c.clone(), flow(Protocol::Udp), t0).unwrap();
        assert_eq!(
            t.send_request(c, flow(Protocol::Udp), t0),
            Err(TxError::Duplicate)
        );
    }
}
