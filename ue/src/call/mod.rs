//! Calls and pager-mode MESSAGE of the UE (TS 24.229 §5.1.2A, §5.1.3, RFC 3261 §13–15,
//! RFC 3262, RFC 3311, RFC 3428), sans-IO like the registration next to it.
//!
//! `Calls` owns the call state; [`crate::Ue`] gives it the requests that belong to calls
//! and the responses of its client transactions, and turns its outputs (requests, responses,
//! stateless ACKs, events) into transactions, as for the registration.
//!
//! The contract with the network (TS 24.229 §5.1.2A.1, §5.1.3.1), the same for every
//! request the UE sends:
//! - it leaves on the registration's request flow: the protected client port to the
//!   P-CSCF's protected server port over the SA (the unprotected flow without sec-agree);
//! - an initial request carries `Route: <sip:P-CSCF:port_ps;lr>` followed by the
//!   Service-Route of the registration; an in-dialog request the dialog's route set;
//! - Contact is the registered contact (protected server port), so requests toward the UE
//!   arrive on it from the P-CSCF's protected client port, and the UE answers on the flow
//!   a request came on (the server transaction's flow);
//! - with sec-agree: `Security-Verify` of the set in use and `sec-agree` in Require and
//!   Proxy-Require (RFC 3329 §2.3.1; the P-CSCF removes them toward the core);
//! - never P-Asserted-Identity; P-Preferred-Identity only if configured.
//!
//! Every call ends whatever the peer does: a caller gives up ringing after
//! [`CallConfig::no_answer_timeout`] with CANCEL; a callee rings at most
//! [`CallConfig::ring_timeout`] (480); a 2xx without ACK for 64·T1 ends with BYE (§13.3.1.4);
//! a CANCEL or BYE left unanswered ends the call locally after 64·T1.

mod sdp_oa;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::builder::cancel_for;
use sip::dialog::{parse_rack, Dialog, DialogError, DialogId};
use sip::ims::{hdr, tag};
use sip::transaction::{TimerConfig, TxId};
use sip::{Flow, Message, Method, NameAddr, RequestBuilder, ResponseBuilder, Uri, Via};

use sdp::{PrecondDirection, Session};

use crate::event::EventKind;
use crate::media::{MediaConfig, MediaEvent, MediaSession, MediaStats, Negotiated};

/// The MMTel ICSI as a feature-tag value (TS 24.173 §5.1, RFC 3840 quoting).
const MMTEL_TAG: &str = "\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"";
/// The MMTel ICSI as a URN (P-Preferred-Service, RFC 6050).
const MMTEL_URN: &str = "urn:urn-7:3gpp-service.ims.icsi.mmtel";
/// Methods the UE handles (Allow).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, UPDATE, PRACK, MESSAGE, INFO, NOTIFY, OPTIONS";
/// Option tags the UE understands in a peer's Require.
const UNDERSTOOD: [&str; 4] = ["100rel", "timer", "sec-agree", "precondition"];
/// Ended calls remembered for [`Calls::phase`] lookups.
const ENDED_KEPT: usize = 256;

/// A call of this UE (not a Call-ID: a local handle, numbered from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

impl fmt::Display for CallRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// Who did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// this UE
    Local,
    /// the other side (or the network on its behalf)
    Remote,
}

impl Party {
    fn as_str(self) -> &'static str {
        match self {
            Party::Local => "us",
            Party::Remote => "the peer",
        }
    }
}

/// What a call waited for in vain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallTimeout {
    /// no final response to the INVITE (Timer B) or the transport failed
    NoResponse,
    /// nobody answered in time (caller: CANCEL sent; callee: 480 sent)
    NoAnswer,
    /// our 2xx was never acknowledged (RFC 3261 §13.3.1.4: BYE sent)
    NoAck,
    /// a CANCEL or BYE got no final answer; the call ended locally
    NoFinal,
    /// the session timer ran out without a refresh (RFC 4028 §10: BYE sent)
    SessionExpired,
    /// our reliable provisional response was never PRACKed (RFC 3262 §3: 500 sent)
    NoPrack,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEnd {
    /// A final failure response to the INVITE: from the network or callee (`by` remote),
    /// or sent by us (`by` local).
    Rejected {
        /// status code
        code: u16,
        /// reason phrase
        reason: String,
        /// who rejected
        by: Party,
    },
    /// CANCEL before the answer.
    Cancelled {
        /// who cancelled
        by: Party,
    },
    /// BYE after the answer.
    HungUp {
        /// who sent the BYE
        by: Party,
    },
    /// A timeout ended it.
    Timeout(CallTimeout),
}

impl fmt::Display for CallEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallEnd::Rejected { code, reason, by } => {
                write!(f, "rejected by {} with {code} {reason}", by.as_str())
            }
            CallEnd::Cancelled { by } => write!(f, "cancelled by {}", by.as_str()),
            CallEnd::HungUp { by } => write!(f, "hung up by {}", by.as_str()),
            CallEnd::Timeout(t) => write!(f, "timed out ({t:?})"),
        }
    }
}

/// Where a call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallPhase {
    /// caller: INVITE sent, no ringing yet; callee: the INVITE arrived
    Calling,
    /// caller: 180/183 received; callee: 180 sent
    Ringing,
    /// caller: 2xx received and ACKed; callee: 2xx sent (waiting for or after the ACK)
    Answered,
    /// CANCEL or BYE sent, waiting for its answer
    Ending,
    /// over
    Ended(CallEnd),
}

/// What a callee does with an incoming INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// ring (180), then answer with 200 after this delay
    Auto(Duration),
    /// answer at once with this final status (486 busy, 603 decline …)
    Reject(u16),
    /// ring until [`crate::Ue::answer`]/[`crate::Ue::reject`], or until
    /// [`CallConfig::ring_timeout`]
    Ring,
}

/// How the UE places and takes calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConfig {
    /// What to do with incoming calls.
    pub answer: AnswerMode,
    /// A caller cancels a call nobody answered after this long.
    pub no_answer_timeout: Duration,
    /// A callee stops ringing (480) after this long; keep it below the transaction
    /// layer's INVITE guard (300 s).
    pub ring_timeout: Duration,
    /// P-Preferred-Identity of initial requests (RFC 3325 §9.2), e.g. one of the
    /// P-Associated-URIs; none by default.
    pub preferred_identity: Option<String>,
    /// `Privacy` of our INVITEs (RFC 3323 §4.2; TS 24.607 OIR): `id` withholds our
    /// identity from the callee, as a handset with "hide my number" does. None by default.
    pub privacy: Option<String>,
    /// The UE's RTP port, announced in SDP. The shell binds it on the UE's address; 0 lets
    /// the shell pick a free port (and the SDP carries that one).
    pub rtp_port: u16,
    /// Offer QoS preconditions (RFC 3312) like a VoLTE handset: `des:qos mandatory local
    /// sendrecv` with `curr:qos local none` in the INVITE, PRACK the 183, then an UPDATE
    /// with `curr:qos local sendrecv` before the callee alerts. Incoming calls that ask
    /// for preconditions get them whatever this says.
    pub preconditions: bool,
    /// Session-Expires asked for in our INVITEs (RFC 4028; 0: none). The callee makes the
    /// caller the refresher; whichever side does not refresh sends BYE when the session
    /// runs out without a refresh, so no dialog outlives a vanished peer.
    pub session_expires: u32,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            answer: AnswerMode::Auto(Duration::from_secs(1)),
            no_answer_timeout: Duration::from_secs(60),
            ring_timeout: Duration::from_secs(120),
            preferred_identity: None,
            privacy: None,
            rtp_port: 40000,
            preconditions: false,
            session_expires: 1800,
        }
    }
}

/// Why a call command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Calls need a registration (the Service-Route and the SA come from it).
    #[error("not registered")]
    NotRegistered,
    /// The target is not a SIP or tel URI.
    #[error("target {0:?} is not a sip:/tel: URI")]
    BadTarget(String),
    /// No such call (it may have ended).
    #[error("no such call {0}")]
    UnknownCall(CallRef),
    /// The command does not fit the call's phase.
    #[error("cannot {command} {call} while {phase}")]
    InvalidState {
        /// the call
        call: CallRef,
        /// the command
        command: &'static str,
        /// its phase
        phase: &'static str,
    },
    /// The in-dialog request could not be built.
    #[error(transparent)]
    Dialog(#[from] DialogError),
    /// DTMF needs a call with RTP running and a telephone-event format in the answer.
    #[error("{0} has no RTP with telephone-event (or the digit is not 0-9, *, #, A-D)")]
    NoDtmf(CallRef),
}

/// What the registration tells the calls about the network (recomputed per input, as the
/// SA set in use changes with re-authentication).
#[derive(Debug, Clone)]
pub(crate) struct Net {
    /// the flow every request leaves on
    pub flow: Flow,
    /// its local address (the Via sent-by)
    pub local: SocketAddr,
    /// Service-Route of the registration
    pub service_route: Vec<String>,
    /// Security-Verify while an SA set is in use
    pub verify: Option<String>,
    /// our Contact
    pub contact: NameAddr,
    /// our IMPU
    pub impu: Uri,
    /// whether a binding exists
    pub registered: bool,
    /// P-Access-Network-Info
    pub pani: Option<String>,
    /// User-Agent
    pub user_agent: String,
}

impl Net {
    /// A Via for a new request from our local address, with `rport` (RFC 3581).
    pub(crate) fn via(&self) -> Via {
        let mut v = Via::new(
            "UDP",
            &sip::uri::ip_host(self.local.ip()),
            Some(self.local.port()),
            &sip::new_branch(),
        );
        v.params.set("rport", None);
        v
    }

    /// `<sip:P-CSCF:port_ps;lr>` then the Service-Route (TS 24.229 §5.1.2A.1.1).
    pub(crate) fn initial_route(&self) -> String {
        let r = self.flow.remote;
        let mut all = vec![format!(
            "<sip:{}:{};lr>",
            sip::uri::ip_host(r.ip()),
            r.port()
        )];
        all.extend(self.service_route.iter().cloned());
        all.join(", ")
    }

    /// The headers every request over the SA carries.
    pub(crate) fn decorate(&self, mut b: RequestBuilder, extra_require: &[&str]) -> RequestBuilder {
        let mut require: Vec<&str> = extra_require.to_vec();
        if let Some(v) = &self.verify {
            b = b
                .header(hdr::SECURITY_VERIFY, v)
                .header(hdr::PROXY_REQUIRE, tag::SEC_AGREE);
            require.push(tag::SEC_AGREE);
        }
        if !require.is_empty() {
            b = b.header(hdr::REQUIRE, require.join(", "));
        }
        if let Some(p) = &self.pani {
            b = b.header(hdr::P_ACCESS_NETWORK_INFO, p);
        }
        b.header("User-Agent", &self.user_agent)
    }
}

/// Which request a client transaction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Invite(CallRef),
    Cancel(CallRef),
    Bye(CallRef),
    /// UPDATE (refresh) and the like: a 408/481 ends the call
    InDialog(CallRef),
    /// the BYE of a dialog another fork's 2xx created: answers change nothing
    ForkBye,
    /// PRACK of a reliable provisional response
    Prack(CallRef),
    /// the caller's UPDATE that reports its QoS reserved (RFC 3312)
    Precondition(CallRef),
    Message(u64),
}

/// What the calls hand to [`crate::Ue`].
#[derive(Debug)]
pub(crate) enum CallOut {
    /// start a client transaction
    Request(Message, Flow, Purpose),
    /// answer through server transaction `tx`
    Respond(TxId, Message),
    /// send outside any transaction (ACK for a 2xx)
    Stateless(Message, Flow),
    /// a retransmission of our 2xx through its transaction (RFC 3261 §13.3.1.4); the
    /// ladder shows only the first transmission
    Resend(TxId, Message),
    /// the ACK again, for a retransmitted 2xx (§13.2.2.4)
    ResendStateless(Message, Flow),
    /// for the application
    Event(EventKind),
}

/// Where the QoS precondition exchange of a call is (RFC 3312 §5–6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precond {
    /// caller: offered in the INVITE; callee: answered in the reliable 183
    Offered,
    /// caller: the 183 answered with preconditions (PRACK it, then UPDATE)
    Answered,
    /// caller: the UPDATE with our reserved segment is out
    Updating,
    /// both segments reserved: the callee may alert
    Met,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// caller: nobody answered, CANCEL
    NoAnswer,
    /// callee: stop ringing with 480
    Ring,
    /// callee: the 2xx was never ACKed
    NoAck,
    /// a CANCEL/BYE without a final answer
    Ending,
    /// the peer should have refreshed the session by now (RFC 4028 §10)
    SessionExpiry,
}

/// When the non-refreshing side gives up on a session of `se` seconds (RFC 4028 §10).
fn expiry_after(se: u32) -> Duration {
    Duration::from_secs(u64::from(se - (se / 3).min(32)))
}

#[derive(Debug)]
struct Call {
    outgoing: bool,
    phase: CallPhase,
    started: Instant,
    /// caller: our INVITE; callee: the received one
    invite: Message,
    /// the INVITE's client or server transaction
    invite_tx: Option<TxId>,
    local_tag: String,
    dialog: Option<Dialog>,
    /// caller: a provisional arrived, CANCEL may go (RFC 3261 §9.1)
    provisional: bool,
    /// caller: cancel as soon as a provisional arrives, and report this end
    cancel: Option<CallEnd>,
    /// caller: the ACK of the 2xx, re-sent on 2xx retransmissions
    ack: Option<Message>,
    /// callee: our 2xx, re-sent until the ACK (§13.3.1.4)
    ok: Option<Message>,
    acked: bool,
    interval: Duration,
    retransmit_at: Option<Instant>,
    answer_at: Option<Instant>,
    guard: Option<(Instant, Guard)>,
    ringing_code: Option<u16>,
    /// what ends the call when the BYE/CANCEL completes
    ending: Option<CallEnd>,
    /// callee: RSeq of our last reliable provisional
    rseq: u32,
    /// callee: that provisional until its PRACK arrives (RFC 3262 §3)
    reliable: Option<Reliable>,
    /// callee: hung up before the ACK of our 2xx; the BYE waits for it (RFC 3261 §15)
    bye_pending: bool,
    /// RFC 4028: refresh with UPDATE at this time
    refresh_at: Option<Instant>,
    session_expires: Option<u32>,
    session_id: u64,
    /// the o= version of our last SDP
    sdp_version: u64,
    /// None: no preconditions in this call
    precond: Option<Precond>,
    /// the peer's last SDP: its offer, or its answer to ours
    remote_sdp: Option<Session>,
    /// the answer in force (ours as callee, the peer's as caller): it fixes the codec
    answer_sdp: Option<Session>,
    /// the RTP, from the answer on
    media: Option<MediaSession>,
}

impl Call {
    fn deadline(&self) -> Option<Instant> {
        [
            self.retransmit_at,
            self.reliable.as_ref().map(|r| r.next),
            self.answer_at,
            self.guard.map(|g| g.0),
            self.refresh_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn phase_name(&self) -> &'static str {
        match self.phase {
            CallPhase::Calling => "calling",
            CallPhase::Ringing => "ringing",
            CallPhase::Answered => "answered",
            CallPhase::Ending => "ending",
            CallPhase::Ended(_) => "ended",
        }
    }
}

/// A reliable provisional response being retransmitted until its PRACK.
#[derive(Debug)]
struct Reliable {
    response: Message,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
struct PendingMessage {
    to: String,
    started: Instant,
}

/// The calls and pager-mode messages of one UE.
#[derive(Debug)]
pub(crate) struct Calls {
    cfg: CallConfig,
    media_cfg: MediaConfig,
    timers: TimerConfig,
    next: u64,
    calls: HashMap<CallRef, Call>,
    ended: VecDeque<(CallRef, CallEnd)>,
    owners: HashMap<TxId, Purpose>,
    /// server INVITE transactions of incoming calls
    servers: HashMap<TxId, CallRef>,
    messages: HashMap<u64, PendingMessage>,
    /// a message built but not yet given a transaction id (the core numbers it)
    out: VecDeque<CallOut>,
}

fn ev(out: &mut VecDeque<CallOut>, kind: EventKind) {
    out.push_back(CallOut::Event(kind));
}

/// Moves a call's media events into the calls' outputs.
fn media_events(out: &mut VecDeque<CallOut>, call: CallRef, m: &mut MediaSession) {
    while let Some(e) = m.poll_event() {
        ev(
            out,
            match e {
                MediaEvent::Timeout(silent) => EventKind::MediaTimeout { call, silent },
                MediaEvent::Dtmf(digit) => EventKind::DtmfReceived { call, digit },
            },
        );
    }
}

/// Parses a call/message target: a sip:/sips:/tel: URI.
fn target_uri(target: &str) -> Result<Uri, CallError> {
    let bad = || CallError::BadTarget(target.to_string());
    let u = Uri::parse(target).map_err(|_| bad())?;
    match u.scheme {
        sip::Scheme::Sip | sip::Scheme::Sips | sip::Scheme::Tel => Ok(u),
        sip::Scheme::Other(_) => Err(bad()),
    }
}

/// `Session-Expires: delta;refresher=uac|uas` (RFC 4028 §4).
fn session_expires(m: &Message) -> Option<(u32, Option<String>)> {
    let v = m.header("Session-Expires")?;
    let mut parts = v.split(';');
    let delta = parts.next()?.trim().parse::<u32>().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some((delta, refresher))
}

impl Calls {
    pub(crate) fn new(cfg: CallConfig, media_cfg: MediaConfig, timers: TimerConfig) -> Calls {
        Calls {
            cfg,
            media_cfg,
            timers,
            next: 1,
            calls: HashMap::new(),
            ended: VecDeque::new(),
            owners: HashMap::new(),
            servers: HashMap::new(),
            messages: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    pub(crate) fn poll_output(&mut self) -> Option<CallOut> {
        self.out.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| {
                [
                    c.deadline(),
                    c.media.as_ref().and_then(MediaSession::poll_timeout),
                ]
            })
            .flatten()
            .min()
    }

    /// The RTP port our SDP announces (the shell's socket).
    pub(crate) fn set_rtp_port(&mut self, port: u16) {
        self.cfg.rtp_port = port;
    }

    /// Our SDP's `o=` and media address for call `c`.
    fn local(&self, c: &Call, net: &Net) -> sdp_oa::Local {
        sdp_oa::Local {
            ip: net.local.ip(),
            port: self.cfg.rtp_port,
            session_id: c.session_id,
            version: c.sdp_version,
        }
    }

    /// Our answer to the INVITE's offer (in the 183 or the 2xx), remembered with the offer.
    fn answer_offer(&self, c: &mut Call, net: &Net, qos: PrecondDirection) -> Option<Vec<u8>> {
        let offer = sdp_oa::parse(c.invite.body())?;
        let answer = sdp_oa::answer(&offer, self.local(c, net), qos)?;
        let bytes = answer.to_bytes();
        c.remote_sdp = Some(offer);
        c.answer_sdp = Some(answer);
        Some(bytes)
    }

    /// A later offer/answer in the dialog (UPDATE, re-INVITE): remembered; running RTP
    /// follows the peer if it moved.
    fn negotiated(c: &mut Call, remote: Session, answer: Session) {
        if let Some(m) = c.media.as_mut() {
            if let Ok(n) = Negotiated::from_sdp(&answer, &remote) {
                m.retarget(n.remote);
            }
        }
        c.remote_sdp = Some(remote);
        c.answer_sdp = Some(answer);
    }

    /// The peer answered our offer with `resp`'s body (if it has one).
    fn peer_answered(c: &mut Call, resp: &Message) {
        if let Some(a) = sdp_oa::parse(resp.body()) {
            Self::negotiated(c, a.clone(), a);
        }
    }

    /// Sets up the RTP of a call once an answer is known: receiving at once (the peer may
    /// send before our 2xx or its 2xx arrives), sending too when `send` (answered).
    fn start_media(&mut self, r: CallRef, c: &mut Call, now: Instant, send: bool) {
        if !self.media_cfg.enabled {
            return;
        }
        if c.media.is_none() {
            let n = match (&c.answer_sdp, &c.remote_sdp) {
                (Some(answer), Some(remote)) => Negotiated::from_sdp(answer, remote),
                _ => Err(crate::media::MediaError::NoAudio),
            };
            match n {
                Ok(n) => c.media = Some(MediaSession::new(n, &self.media_cfg, rand::random(), now)),
                // reported once, when the call is answered without usable media
                Err(error) if send => {
                    ev(&mut self.out, EventKind::MediaFailed { call: r, error });
                    return;
                }
                Err(_) => return,
            }
        }
        let Some(m) = c.media.as_mut() else { return };
        if send && !m.is_sending() {
            m.start_sending(now);
            if m.is_sending() {
                ev(
                    &mut self.out,
                    EventKind::MediaStarted {
                        call: r,
                        to: m.negotiated().remote,
                        codec: m.negotiated().codec.to_string(),
                        source: m.source().to_string(),
                    },
                );
            }
        }
    }

    /// A datagram on the UE's RTP or RTCP port: to the call whose peer sent it (its RTP
    /// address, else its IP: RTCP comes from the next port), else to the only call with
    /// media (the peer may send from another address than it receives on).
    pub(crate) fn handle_media(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        let with_media = || self.calls.iter().filter(|(_, c)| c.media.is_some());
        let peer_is = |same: &dyn Fn(SocketAddr) -> bool| {
            with_media()
                .find(|(_, c)| {
                    c.media
                        .as_ref()
                        .is_some_and(|m| same(m.negotiated().remote))
                })
                .map(|(r, _)| *r)
        };
        let by_peer = peer_is(&|r| r == from).or_else(|| peer_is(&|r| r.ip() == from.ip()));
        let r = by_peer.or_else(|| {
            let mut it = with_media();
            match (it.next(), it.next()) {
                (Some((r, _)), None) => Some(*r),
                _ => None,
            }
        });
        let Some(r) = r else { return };
        let out = &mut self.out;
        if let Some(m) = self.calls.get_mut(&r).and_then(|c| c.media.as_mut()) {
            m.handle_datagram(data, now);
            media_events(out, r, m);
        }
    }

    /// The next RTP packet due at `now`, written into `buf`: length and destination.
    pub(crate) fn poll_media_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        self.calls
            .values_mut()
            .filter_map(|c| c.media.as_mut())
            .find_map(|m| m.poll_transmit(now, buf))
    }

    /// Sends a DTMF digit in an answered call's RTP (RFC 4733).
    pub(crate) fn send_dtmf(&mut self, r: CallRef, digit: char) -> Result<(), CallError> {
        let c = self.calls.get_mut(&r).ok_or(CallError::UnknownCall(r))?;
        let answered = c.phase == CallPhase::Answered;
        match c.media.as_mut() {
            Some(m) if answered => m.send_dtmf(digit).then_some(()).ok_or(CallError::NoDtmf(r)),
            _ => Err(CallError::NoDtmf(r)),
        }
    }

    /// The RTP statistics of a live call so far.
    pub(crate) fn media_stats(&self, r: CallRef) -> Option<MediaStats> {
        self.calls.get(&r)?.media.as_ref().map(MediaSession::stats)
    }

    /// Where a call is (ended calls are remembered for a while).
    pub(crate) fn phase(&self, call: CallRef) -> Option<CallPhase> {
        if let Some(c) = self.calls.get(&call) {
            return Some(c.phase.clone());
        }
        self.ended
            .iter()
            .find(|(r, _)| *r == call)
            .map(|(_, e)| CallPhase::Ended(e.clone()))
    }

    /// Whether any call is live.
    pub(crate) fn has_calls(&self) -> bool {
        !self.calls.is_empty()
    }

    /// Live calls.
    pub(crate) fn live(&self) -> Vec<(CallRef, CallPhase)> {
        let mut v: Vec<_> = self
            .calls
            .iter()
            .map(|(r, c)| (*r, c.phase.clone()))
            .collect();
        v.sort_by_key(|(r, _)| *r);
        v
    }

    pub(crate) fn owns(&self, tx: TxId) -> bool {
        self.owners.contains_key(&tx) || self.servers.contains_key(&tx)
    }

    /// The core started the transaction for a request of ours.
    pub(crate) fn sent(&mut self, tx: TxId, purpose: Purpose) {
        self.owners.insert(tx, purpose);
        if let Purpose::Invite(r) = purpose {
            if let Some(c) = self.calls.get_mut(&r) {
                c.invite_tx = Some(tx);
            }
        }
    }

    /// A transaction ended: forget it.
    pub(crate) fn terminated(&mut self, tx: TxId) {
        self.owners.remove(&tx);
        self.servers.remove(&tx);
    }

    fn alloc(&mut self) -> CallRef {
        let r = CallRef(self.next);
        self.next += 1;
        r
    }

    /// Puts a call back, or records its end.
    fn put(&mut self, r: CallRef, mut c: Call) {
        if matches!(c.phase, CallPhase::Ending | CallPhase::Ended(_)) {
            // RTP stops with the BYE; what is still in flight is counted until the end
            if let Some(m) = c.media.as_mut() {
                m.stop_sending();
            }
        }
        if let CallPhase::Ended(end) = &c.phase {
            if let Some(m) = c.media.take() {
                ev(
                    &mut self.out,
                    EventKind::CallMedia {
                        call: r,
                        stats: m.stats(),
                    },
                );
            }
            ev(
                &mut self.out,
                EventKind::CallEnded {
                    call: r,
                    end: end.clone(),
                },
            );
            if self.ended.len() >= ENDED_KEPT {
                self.ended.pop_front();
            }
            self.ended.push_back((r, end.clone()));
        } else {
            self.calls.insert(r, c);
        }
    }

    fn take(&mut self, r: CallRef) -> Result<Call, CallError> {
        self.calls.remove(&r).ok_or(CallError::UnknownCall(r))
    }

    // ---- commands ------------------------------------------------------------------

    /// Places a call to `target` (INVITE with an SDP offer).
    pub(crate) fn call(
        &mut self,
        target: &str,
        net: &Net,
        now: Instant,
    ) -> Result<CallRef, CallError> {
        if !net.registered {
            return Err(CallError::NotRegistered);
        }
        let to_uri = target_uri(target)?;
        let r = self.alloc();
        let local_tag = sip::new_tag();
        let call_id = sip::new_call_id(Some(&sip::uri::ip_host(net.local.ip())));
        let session_id = rand::random::<u32>() as u64;
        let local = sdp_oa::Local {
            ip: net.local.ip(),
            port: self.cfg.rtp_port,
            session_id,
            version: 1,
        };
        let sdp = sdp_oa::offer(local, self.cfg.preconditions.then(sdp_oa::initial_qos)).to_bytes();
        let supported = if self.cfg.preconditions {
            "100rel, timer, precondition"
        } else {
            "100rel, timer"
        };
        let mut from = NameAddr::new(net.impu.clone());
        from.params.set("tag", Some(&local_tag));
        let mut b = RequestBuilder::new(Method::Invite, &to_uri)
            .via(&net.via())
            .max_forwards(70)
            .header("Route", net.initial_route())
            .from(&from)
            .to(&NameAddr::new(to_uri.clone()))
            .call_id(&call_id)
            .cseq(1)
            .contact(&net.contact)
            .header(
                "Accept-Contact",
                format_args!("*;+g.3gpp.icsi-ref={MMTEL_TAG}"),
            )
            .header("P-Preferred-Service", MMTEL_URN);
        if let Some(p) = &self.cfg.preferred_identity {
            b = b.header(hdr::P_PREFERRED_IDENTITY, format_args!("<{p}>"));
        }
        if let Some(p) = &self.cfg.privacy {
            b = b.header("Privacy", p);
        }
        b = net
            .decorate(b, &[])
            .header(hdr::SUPPORTED, supported)
            .header("Allow", ALLOW);
        if self.cfg.session_expires > 0 {
            b = b
                .header("Session-Expires", self.cfg.session_expires)
                .header("Min-SE", 90);
        }
        b = b.body("application/sdp", Bytes::from(sdp));
        let invite = b.build();
        self.out.push_back(CallOut::Request(
            invite.clone(),
            net.flow,
            Purpose::Invite(r),
        ));
        ev(
            &mut self.out,
            EventKind::CallStarted {
                call: r,
                to: to_uri.to_string(),
            },
        );
        self.calls.insert(
            r,
            Call {
                outgoing: true,
                phase: CallPhase::Calling,
                started: now,
                invite,
                invite_tx: None,
                local_tag,
                dialog: None,
                provisional: false,
                cancel: None,
                ack: None,
                ok: None,
                acked: false,
                interval: self.timers.t1,
                retransmit_at: None,
                answer_at: None,
                guard: Some((now + self.cfg.no_answer_timeout, Guard::NoAnswer)),
                ringing_code: None,
                ending: None,
                rseq: 0,
                reliable: None,
                bye_pending: false,
                refresh_at: None,
                session_expires: None,
                session_id,
                sdp_version: 1,
                precond: self.cfg.preconditions.then_some(Precond::Offered),
                remote_sdp: None,
                answer_sdp: None,
                media: None,
            },
        );
        Ok(r)
    }

    /// Answers a ringing incoming call (200 with the SDP answer).
    pub(crate) fn answer(&mut self, r: CallRef, net: &Net, now: Instant) -> Result<(), CallError> {
        let mut c = self.take(r)?;
        let res = if c.outgoing || !matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
            Err(CallError::InvalidState {
                call: r,
                command: "answer",
                phase: c.phase_name(),
            })
        } else {
            self.send_ok(r, &mut c, net, now);
            Ok(())
        };
        self.put(r, c);
        res
    }

    /// Rejects a ringing incoming call with `code` (≥ 300).
    pub(crate) fn reject(&mut self, r: CallRef, code: u16) -> Result<(), CallError> {
        let mut c = self.take(r)?;
        let res = if c.outgoing || !matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
            Err(CallError::InvalidState {
                call: r,
                command: "reject",
                phase: c.phase_name(),
            })
        } else {
            let code = code.clamp(300, 699);
            self.final_failure(&mut c, code, None);
            Ok(())
        };
        self.put(r, c);
        res
    }

    /// Ends a call: CANCEL before the answer (caller), BYE after it, 603 for an incoming
    /// call still ringing.
    pub(crate) fn hangup(&mut self, r: CallRef, net: &Net, now: Instant) -> Result<(), CallError> {
        let mut c = self.take(r)?;
        let res = match (&c.phase, c.outgoing) {
            (CallPhase::Calling | CallPhase::Ringing, true) => {
                self.cancel(r, &mut c, CallEnd::Cancelled { by: Party::Local }, net, now);
                Ok(())
            }
            (CallPhase::Calling | CallPhase::Ringing, false) => {
                self.final_failure(&mut c, 603, None);
                Ok(())
            }
            (CallPhase::Answered, false) if !c.acked => {
                c.bye_pending = true;
                Ok(())
            }
            (CallPhase::Answered, _) => {
                self.bye(r, &mut c, CallEnd::HungUp { by: Party::Local }, net, now)
            }
            _ => Err(CallError::InvalidState {
                call: r,
                command: "hang up",
                phase: c.phase_name(),
            }),
        };
        self.put(r, c);
        res
    }

    /// Session refresh (RFC 4028 §7.4, RFC 3311): an UPDATE without SDP in the dialog.
    pub(crate) fn refresh(&mut self, r: CallRef, net: &Net) -> Result<(), CallError> {
        self.refresh_by(r, net, Method::Update, "refresh")
    }

    /// Session refresh by re-INVITE with a new SDP offer (RFC 3261 §14, RFC 4028).
    pub(crate) fn reinvite(&mut self, r: CallRef, net: &Net) -> Result<(), CallError> {
        self.refresh_by(r, net, Method::Invite, "re-INVITE")
    }

    /// A target-refresh request `method` in an answered call's dialog.
    fn refresh_by(
        &mut self,
        r: CallRef,
        net: &Net,
        method: Method,
        command: &'static str,
    ) -> Result<(), CallError> {
        let mut c = self.take(r)?;
        let res = if c.phase != CallPhase::Answered {
            Err(CallError::InvalidState {
                call: r,
                command,
                phase: c.phase_name(),
            })
        } else {
            self.in_dialog(r, &mut c, method, net)
        };
        self.put(r, c);
        res
    }

    /// Sends a MESSAGE with `text` (RFC 3428, text/plain) outside any dialog.
    pub(crate) fn message(
        &mut self,
        target: &str,
        text: &str,
        net: &Net,
        now: Instant,
    ) -> Result<u64, CallError> {
        if !net.registered {
            return Err(CallError::NotRegistered);
        }
        let to_uri = target_uri(target)?;
        let id = self.next;
        self.next += 1;
        let mut from = NameAddr::new(net.impu.clone());
        from.params.set("tag", Some(&sip::new_tag()));
        let mut b = RequestBuilder::new(Method::Message, &to_uri)
            .via(&net.via())
            .max_forwards(70)
            .header("Route", net.initial_route())
            .from(&from)
            .to(&NameAddr::new(to_uri.clone()))
            .call_id(&sip::new_call_id(Some(&sip::uri::ip_host(net.local.ip()))))
            .cseq(1);
        if let Some(p) = &self.cfg.preferred_identity {
            b = b.header(hdr::P_PREFERRED_IDENTITY, format_args!("<{p}>"));
        }
        let msg = net
            .decorate(b, &[])
            .body("text/plain", Bytes::from(text.to_string()))
            .build();
        self.out
            .push_back(CallOut::Request(msg, net.flow, Purpose::Message(id)));
        self.messages.insert(
            id,
            PendingMessage {
                to: to_uri.to_string(),
                started: now,
            },
        );
        Ok(id)
    }

    // ---- caller side ---------------------------------------------------------------

    fn cancel(&mut self, r: CallRef, c: &mut Call, end: CallEnd, net: &Net, now: Instant) {
        c.guard = Some((now + 64 * self.timers.t1, Guard::Ending));
        c.phase = CallPhase::Ending;
        // RFC 3261 §9.1: no CANCEL before a provisional response; it goes when one arrives
        if c.provisional {
            self.send_cancel(r, c, net);
        }
        c.cancel = Some(end);
    }

    fn send_cancel(&mut self, r: CallRef, c: &Call, net: &Net) {
        // same Via branch, Route and flow as the INVITE (RFC 3261 §9.1)
        if let Ok(m) = cancel_for(&c.invite) {
            self.out
                .push_back(CallOut::Request(m, net.flow, Purpose::Cancel(r)));
        }
    }

    fn bye(
        &mut self,
        r: CallRef,
        c: &mut Call,
        end: CallEnd,
        net: &Net,
        now: Instant,
    ) -> Result<(), CallError> {
        let d = c.dialog.as_mut().ok_or(CallError::InvalidState {
            call: r,
            command: "hang up",
            phase: "without dialog",
        })?;
        let b = d.request(Method::Bye, &net.via())?;
        d.terminate();
        let m = net.decorate(b, &[]).build();
        self.out
            .push_back(CallOut::Request(m, net.flow, Purpose::Bye(r)));
        c.phase = CallPhase::Ending;
        c.ending = Some(end);
        c.retransmit_at = None;
        c.refresh_at = None;
        c.answer_at = None;
        c.guard = Some((now + 64 * self.timers.t1, Guard::Ending));
        Ok(())
    }

    /// The caller's UPDATE (RFC 3311) with a new offer in which its own segment is
    /// reserved (RFC 3312 §6: the callee alerts once both are).
    fn precondition_update(&mut self, r: CallRef, c: &mut Call, net: &Net) {
        let via = net.via();
        let Some(d) = c.dialog.as_mut() else { return };
        let Ok(b) = d.request(Method::Update, &via) else {
            return;
        };
        c.sdp_version += 1;
        let qos = sdp_oa::update_qos(c.remote_sdp.as_ref());
        let sdp = sdp_oa::offer(self.local(c, net), Some(qos)).to_bytes();
        let m = net
            .decorate(b.contact(&net.contact), &[])
            .body("application/sdp", Bytes::from(sdp))
            .build();
        self.out
            .push_back(CallOut::Request(m, net.flow, Purpose::Precondition(r)));
        c.precond = Some(Precond::Updating);
    }

    fn in_dialog(
        &mut self,
        r: CallRef,
        c: &mut Call,
        method: Method,
        net: &Net,
    ) -> Result<(), CallError> {
        let d = c.dialog.as_mut().ok_or(CallError::InvalidState {
            call: r,
            command: "send in-dialog request",
            phase: "without dialog",
        })?;
        let mut b = d.request(method.clone(), &net.via())?;
        if sip::dialog::is_target_refresh(&method) {
            b = b.contact(&net.contact);
        }
        if let Some(se) = c.session_expires {
            b = b.header("Session-Expires", format_args!("{se};refresher=uac"));
        }
        if method == Method::Invite {
            // a re-INVITE carries a new offer (RFC 3264 §8: same session, version + 1)
            c.sdp_version += 1;
            let sdp = sdp_oa::offer(self.local(c, net), None).to_bytes();
            b = b
                .header(hdr::SUPPORTED, "100rel, timer")
                .body("application/sdp", Bytes::from(sdp));
        }
        let m = net.decorate(b, &[]).build();
        self.out
            .push_back(CallOut::Request(m, net.flow, Purpose::InDialog(r)));
        Ok(())
    }

    /// A response to one of our client transactions.
    pub(crate) fn handle_response(&mut self, tx: TxId, resp: &Message, net: &Net, now: Instant) {
        let Some(&purpose) = self.owners.get(&tx) else {
            return;
        };
        let Some(code) = resp.code() else { return };
        match purpose {
            Purpose::ForkBye => {}
            Purpose::Message(id) => {
                if code >= 200 {
                    if let Some(p) = self.messages.remove(&id) {
                        ev(
                            &mut self.out,
                            EventKind::MessageSent {
                                id,
                                to: p.to,
                                code: Some(code),
                                took: now.saturating_duration_since(p.started),
                            },
                        );
                    }
                }
            }
            Purpose::Invite(r) => {
                if let Ok(mut c) = self.take(r) {
                    self.invite_response(r, &mut c, resp, code, net, now);
                    self.put(r, c);
                }
            }
            Purpose::Prack(r) | Purpose::Precondition(r) => {
                if !(200..300).contains(&code) {
                    return;
                }
                let Ok(mut c) = self.take(r) else { return };
                Self::peer_answered(&mut c, resp);
                let early = matches!(c.phase, CallPhase::Calling | CallPhase::Ringing);
                match (purpose, c.precond) {
                    // the 183's PRACK is through: report our segment reserved
                    (Purpose::Prack(_), Some(Precond::Answered)) if early => {
                        self.precondition_update(r, &mut c, net);
                    }
                    (Purpose::Precondition(_), Some(Precond::Updating))
                        if sdp_oa::parse(resp.body()).is_some_and(|s| sdp_oa::peer_ready(&s)) =>
                    {
                        c.precond = Some(Precond::Met);
                        ev(&mut self.out, EventKind::CallPreconditionsMet { call: r });
                    }
                    _ => {}
                }
                self.put(r, c);
            }
            Purpose::Bye(r) | Purpose::Cancel(r) | Purpose::InDialog(r) => {
                if code < 200 {
                    return;
                }
                let Ok(mut c) = self.take(r) else { return };
                if matches!(purpose, Purpose::Bye(_)) {
                    let end = c
                        .ending
                        .take()
                        .unwrap_or(CallEnd::HungUp { by: Party::Local });
                    c.phase = CallPhase::Ended(end);
                } else if matches!(purpose, Purpose::InDialog(_)) {
                    let reinvite_ok = resp.cseq().is_ok_and(|s| s.method == Method::Invite)
                        && (200..300).contains(&code);
                    if reinvite_ok {
                        Self::peer_answered(&mut c, resp);
                    }
                    if let Some(d) = c.dialog.as_mut() {
                        let _ = d.handle_response(resp);
                        // the 2xx of a re-INVITE (and each retransmission) gets its ACK
                        let reinvite = resp.cseq().is_ok_and(|s| s.method == Method::Invite);
                        if reinvite && (200..300).contains(&code) {
                            if let Ok(a) = d.ack(&net.via()) {
                                let a = net.decorate(a, &[]).build();
                                self.out.push_back(CallOut::Stateless(a, net.flow));
                            }
                        }
                    }
                    // RFC 3261 §12.2.1.2: 481/408 to an in-dialog request ends the dialog
                    if matches!(code, 408 | 481) && c.phase == CallPhase::Answered {
                        let _ =
                            self.bye(r, &mut c, CallEnd::Timeout(CallTimeout::NoFinal), net, now);
                    }
                }
                self.put(r, c);
            }
        }
    }

    fn invite_response(
        &mut self,
        r: CallRef,
        c: &mut Call,
        resp: &Message,
        code: u16,
        net: &Net,
        now: Instant,
    ) {
        if code < 200 {
            if !c.provisional {
                c.provisional = true;
                if c.cancel.is_some() {
                    self.send_cancel(r, c, net);
                }
            }
            if code == 100 {
                return;
            }
            let tagged = resp.to_header().ok().is_some_and(|t| t.tag().is_some());
            if tagged {
                match c.dialog.as_mut() {
                    None => c.dialog = Dialog::uac(&c.invite, resp).ok(),
                    Some(d) => {
                        let _ = d.handle_response(resp);
                    }
                }
            }
            Self::peer_answered(c, resp);
            if c.answer_sdp.is_some() {
                // early: the callee's RTP may overtake its 2xx
                self.start_media(r, c, now, false);
            }
            if c.precond == Some(Precond::Offered)
                && sdp_oa::parse(resp.body()).is_some_and(|s| sdp_oa::wants_preconditions(&s))
            {
                c.precond = Some(Precond::Answered);
            }
            // RFC 3262 §4: acknowledge a reliable provisional response with PRACK
            if resp.has_option_tag(hdr::REQUIRE, "100rel") {
                let via = net.via();
                if let Some(d) = c.dialog.as_mut() {
                    if let Ok(Some(b)) = d.prack(resp, &via) {
                        let m = net.decorate(b, &[]).build();
                        self.out
                            .push_back(CallOut::Request(m, net.flow, Purpose::Prack(r)));
                    }
                }
            }
            if matches!(c.phase, CallPhase::Calling | CallPhase::Ringing)
                && c.ringing_code != Some(code)
            {
                c.ringing_code = Some(code);
                c.phase = CallPhase::Ringing;
                ev(&mut self.out, EventKind::CallRinging { call: r, code });
            }
            return;
        }
        if code < 300 {
            let first = c.ack.is_none();
            let same_dialog = match (&c.dialog, DialogId::of_response(resp)) {
                (Some(d), Ok(id)) => d.matches(&id),
                _ => false,
            };
            if !first && !same_dialog {
                // a 2xx from another fork: ACK and BYE it (RFC 3261 §13.2.2.4)
                if let Ok(mut d) = Dialog::uac(&c.invite, resp) {
                    if let Ok(a) = d.ack(&net.via()) {
                        let a = net.decorate(a, &[]).build();
                        self.out.push_back(CallOut::Stateless(a, net.flow));
                    }
                    if let Ok(b) = d.request(Method::Bye, &net.via()) {
                        let b = net.decorate(b, &[]).build();
                        self.out
                            .push_back(CallOut::Request(b, net.flow, Purpose::ForkBye));
                    }
                }
                return;
            }
            if !first {
                // a retransmission: our ACK was lost
                if let Some(a) = &c.ack {
                    self.out
                        .push_back(CallOut::ResendStateless(a.clone(), net.flow));
                }
                return;
            }
            match c.dialog.as_mut() {
                Some(d) if same_dialog => {
                    let _ = d.handle_response(resp);
                }
                _ => c.dialog = Dialog::uac(&c.invite, resp).ok(),
            }
            let Some(d) = c.dialog.as_ref() else {
                // a 2xx we cannot build a dialog from (no To tag): nothing to ACK it
                // with, so for us the INVITE got no usable answer
                c.phase = CallPhase::Ended(CallEnd::Timeout(CallTimeout::NoResponse));
                return;
            };
            let Ok(a) = d.ack(&net.via()) else { return };
            let ack = net.decorate(a, &[]).build();
            self.out
                .push_back(CallOut::Stateless(ack.clone(), net.flow));
            c.ack = Some(ack);
            if let Some(end) = c.cancel.take() {
                // CANCEL lost the race with the 2xx: the call exists, end it (§9.1)
                c.phase = CallPhase::Answered;
                let _ = self.bye(r, c, end, net, now);
                return;
            }
            c.phase = CallPhase::Answered;
            c.guard = None;
            Self::peer_answered(c, resp);
            self.start_media(r, c, now, true);
            if let Some((se, refresher)) = session_expires(resp) {
                c.session_expires = Some(se);
                if refresher.as_deref() == Some("uas") {
                    c.guard = Some((now + expiry_after(se), Guard::SessionExpiry));
                } else {
                    // RFC 4028 §7.2: we asked, the answer names us (or nobody): we refresh
                    c.refresh_at = Some(now + Duration::from_secs(u64::from(se / 2).max(1)));
                }
            }
            ev(
                &mut self.out,
                EventKind::CallAnswered {
                    call: r,
                    took: now.saturating_duration_since(c.started),
                },
            );
            return;
        }
        // a final failure: the transaction ACKs it
        if let Some(d) = c.dialog.as_mut() {
            d.terminate();
        }
        // after our CANCEL the answer is normally 487; whatever it is, we ended the call
        let end = c.cancel.take().unwrap_or_else(|| CallEnd::Rejected {
            code,
            reason: resp.reason().unwrap_or("").to_string(),
            by: Party::Remote,
        });
        c.phase = CallPhase::Ended(end);
    }

    /// Timer B/F or a transport failure of one of our transactions, or Timer U of an
    /// incoming call's INVITE that nobody answered.
    pub(crate) fn handle_tx_failure(&mut self, tx: TxId, net: &Net, now: Instant) {
        if let Some(r) = self.servers.remove(&tx) {
            if let Ok(mut c) = self.take(r) {
                if matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
                    c.phase = CallPhase::Ended(CallEnd::Timeout(CallTimeout::NoAnswer));
                }
                self.put(r, c);
            }
            return;
        }
        let Some(purpose) = self.owners.remove(&tx) else {
            return;
        };
        match purpose {
            Purpose::Message(id) => {
                if let Some(p) = self.messages.remove(&id) {
                    ev(
                        &mut self.out,
                        EventKind::MessageSent {
                            id,
                            to: p.to,
                            code: None,
                            took: now.saturating_duration_since(p.started),
                        },
                    );
                }
            }
            Purpose::Invite(r) => {
                if let Ok(mut c) = self.take(r) {
                    if c.ack.is_none() {
                        let end = c
                            .cancel
                            .take()
                            .unwrap_or(CallEnd::Timeout(CallTimeout::NoResponse));
                        c.phase = CallPhase::Ended(end);
                    }
                    self.put(r, c);
                }
            }
            Purpose::Bye(r) => {
                if let Ok(mut c) = self.take(r) {
                    let end = c
                        .ending
                        .take()
                        .unwrap_or(CallEnd::HungUp { by: Party::Local });
                    c.phase = CallPhase::Ended(end);
                    self.put(r, c);
                }
            }
            Purpose::Cancel(_)
            | Purpose::Prack(_)
            | Purpose::Precondition(_)
            | Purpose::ForkBye => {}
            Purpose::InDialog(r) => {
                // RFC 3261 §12.2.1.2: a timeout in the dialog ends it
                if let Ok(mut c) = self.take(r) {
                    if c.phase == CallPhase::Answered {
                        let _ =
                            self.bye(r, &mut c, CallEnd::Timeout(CallTimeout::NoFinal), net, now);
                    }
                    self.put(r, c);
                }
            }
        }
    }

    // ---- callee side and requests from the network ----------------------------------

    /// A new server transaction with a request for the calls (INVITE, ACK is separate,
    /// CANCEL, BYE, PRACK, UPDATE, INFO, MESSAGE). Returns `false` if the request is not
    /// for the calls (the core answers it).
    pub(crate) fn handle_request(
        &mut self,
        tx: TxId,
        req: Message,
        cancelled: Option<TxId>,
        net: &Net,
        now: Instant,
    ) -> bool {
        let Some(method) = req.method().cloned() else {
            return false;
        };
        let id = match DialogId::of_incoming_request(&req) {
            Ok(id) => id,
            Err(_) => {
                self.respond_plain(tx, &req, 400, None);
                return true;
            }
        };
        if method == Method::Cancel {
            self.incoming_cancel(tx, &req, cancelled);
            return true;
        }
        match id {
            None => match method {
                Method::Invite => self.incoming_invite(tx, req, net, now),
                Method::Message => {
                    self.respond_plain(tx, &req, 200, Some(&sip::new_tag()));
                    self.message_received(&req);
                }
                _ => return false,
            },
            Some(id) => self.in_dialog_request(tx, req, &id, net, now),
        }
        true
    }

    fn message_received(&mut self, req: &Message) {
        let from = req
            .from_header()
            .map(|f| f.uri.to_string())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(req.body()).into_owned();
        ev(&mut self.out, EventKind::MessageReceived { from, text });
    }

    fn respond_plain(&mut self, tx: TxId, req: &Message, code: u16, to_tag: Option<&str>) {
        let mut b = ResponseBuilder::new(req, code);
        if let Some(t) = to_tag {
            b = b.to_tag(t);
        }
        if code == 405 || code == 501 {
            b = b.header("Allow", ALLOW);
        }
        if let Ok(m) = b.build() {
            self.out.push_back(CallOut::Respond(tx, m));
        }
    }

    fn incoming_invite(&mut self, tx: TxId, req: Message, net: &Net, now: Instant) {
        // RFC 3261 §8.2.2.3: an extension we do not understand is refused with 420
        let unknown: Vec<String> = req
            .option_tags(hdr::REQUIRE)
            .filter(|t| !UNDERSTOOD.iter().any(|u| u.eq_ignore_ascii_case(t)))
            .map(str::to_string)
            .collect();
        if !unknown.is_empty() {
            if let Ok(m) = ResponseBuilder::new(&req, 420)
                .to_tag(&sip::new_tag())
                .header("Unsupported", unknown.join(", "))
                .build()
            {
                self.out.push_back(CallOut::Respond(tx, m));
            }
            return;
        }
        let local_tag = sip::new_tag();
        let dialog = match Dialog::uas(&req, &local_tag) {
            Ok(d) => d,
            Err(_) => {
                self.respond_plain(tx, &req, 400, Some(&local_tag));
                return;
            }
        };
        let r = self.alloc();
        self.servers.insert(tx, r);
        let from = req
            .from_header()
            .map(|f| f.uri.to_string())
            .unwrap_or_default();
        ev(&mut self.out, EventKind::IncomingCall { call: r, from });
        let mut c = Call {
            outgoing: false,
            phase: CallPhase::Calling,
            started: now,
            session_expires: session_expires(&req).map(|s| s.0),
            invite: req,
            invite_tx: Some(tx),
            local_tag,
            dialog: Some(dialog),
            provisional: false,
            cancel: None,
            ack: None,
            ok: None,
            acked: false,
            interval: self.timers.t1,
            retransmit_at: None,
            answer_at: None,
            guard: Some((now + self.cfg.ring_timeout, Guard::Ring)),
            ringing_code: None,
            ending: None,
            rseq: 0,
            reliable: None,
            bye_pending: false,
            refresh_at: None,
            session_id: rand::random::<u32>() as u64,
            sdp_version: 1,
            precond: None,
            remote_sdp: None,
            answer_sdp: None,
            media: None,
        };
        let offers_tag = |t: &str| {
            c.invite.has_option_tag(hdr::SUPPORTED, t) || c.invite.has_option_tag(hdr::REQUIRE, t)
        };
        // RFC 3312 §11: preconditions need reliable provisional responses
        let precond = offers_tag("precondition")
            && offers_tag("100rel")
            && sdp_oa::parse(c.invite.body()).is_some_and(|s| sdp_oa::wants_preconditions(&s));
        match self.cfg.answer {
            AnswerMode::Reject(code) => self.final_failure(&mut c, code.clamp(300, 699), None),
            _ if precond => self.session_progress(&mut c, net, now),
            AnswerMode::Auto(after) => {
                self.ringing(&mut c, net, now);
                c.answer_at = Some(now + after);
            }
            AnswerMode::Ring => self.ringing(&mut c, net, now),
        }
        self.put(r, c);
    }

    /// The callee's reliable 183 with the SDP answer and its QoS status (nothing reserved
    /// yet, confirmation of the caller's segment requested: RFC 3312 §6).
    fn session_progress(&mut self, c: &mut Call, net: &Net, now: Instant) {
        let Some(tx) = c.invite_tx else { return };
        let Some(sdp) = self.answer_offer(c, net, PrecondDirection::None) else {
            self.final_failure(c, 488, None);
            return;
        };
        c.rseq += 1;
        let b = ResponseBuilder::new(&c.invite, 183)
            .to_tag(&c.local_tag)
            .header("Contact", &net.contact)
            .header(hdr::REQUIRE, "100rel, precondition")
            .header("RSeq", c.rseq)
            .header("Allow", ALLOW)
            .body("application/sdp", Bytes::from(sdp));
        if let Ok(m) = b.build() {
            self.track_reliable(c, &m, now);
            self.out.push_back(CallOut::Respond(tx, m));
        }
        c.precond = Some(Precond::Offered);
    }

    /// 180 Ringing, reliable (RFC 3262) when the caller requires 100rel.
    fn ringing(&mut self, c: &mut Call, net: &Net, now: Instant) {
        let Some(tx) = c.invite_tx else { return };
        let mut b = ResponseBuilder::new(&c.invite, 180)
            .to_tag(&c.local_tag)
            .header("Contact", &net.contact)
            .header("Allow", ALLOW);
        let reliable = c.invite.has_option_tag(hdr::REQUIRE, "100rel") || c.precond.is_some();
        if reliable {
            c.rseq += 1;
            b = b.header(hdr::REQUIRE, "100rel").header("RSeq", c.rseq);
        }
        if let Ok(m) = b.build() {
            if reliable {
                self.track_reliable(c, &m, now);
            }
            self.out.push_back(CallOut::Respond(tx, m));
        }
        c.phase = CallPhase::Ringing;
    }

    /// Retransmits `m` with T1 doubling until its PRACK, for 64·T1 (RFC 3262 §3).
    fn track_reliable(&self, c: &mut Call, m: &Message, now: Instant) {
        let t1 = self.timers.t1;
        c.reliable = Some(Reliable {
            response: m.clone(),
            next: now + t1,
            interval: t1,
            give_up: now + 64 * t1,
        });
    }

    fn send_ok(&mut self, r: CallRef, c: &mut Call, net: &Net, now: Instant) {
        let Some(tx) = c.invite_tx else { return };
        // after preconditions the offer/answer is done (183, UPDATE): no SDP in the 2xx
        let sdp = match c.precond {
            Some(_) => None,
            None => match self.answer_offer(c, net, PrecondDirection::SendRecv) {
                Some(sdp) => Some(sdp),
                None => {
                    // RFC 3264 §6: nothing acceptable in the offer
                    self.final_failure(c, 488, None);
                    return;
                }
            },
        };
        let mut b = ResponseBuilder::new(&c.invite, 200)
            .to_tag(&c.local_tag)
            .header("Contact", &net.contact)
            .header(hdr::SUPPORTED, "100rel, timer")
            .header("Allow", ALLOW);
        if let Some(se) = c.session_expires {
            b = b
                .header("Session-Expires", format_args!("{se};refresher=uac"))
                .header(hdr::REQUIRE, "timer");
        }
        if let Some(sdp) = sdp {
            b = b.body("application/sdp", Bytes::from(sdp));
        }
        let Ok(m) = b.build() else {
            return;
        };
        self.out.push_back(CallOut::Respond(tx, m.clone()));
        c.ok = Some(m);
        c.reliable = None;
        c.interval = self.timers.t1;
        c.retransmit_at = Some(now + self.timers.t1);
        c.guard = Some((now + 64 * self.timers.t1, Guard::NoAck));
        c.answer_at = None;
        c.phase = CallPhase::Answered;
        if let Some(d) = c.dialog.as_mut() {
            d.confirm();
        }
        // the caller may send RTP as soon as our 2xx reaches it, before its ACK reaches us
        self.start_media(r, c, now, true);
    }

    /// Answers the incoming INVITE with a final failure; the call ends with `end`, or as
    /// rejected by us.
    fn final_failure(&mut self, c: &mut Call, code: u16, end: Option<CallEnd>) {
        let Some(tx) = c.invite_tx else { return };
        if let Ok(m) = ResponseBuilder::new(&c.invite, code)
            .to_tag(&c.local_tag)
            .build()
        {
            let reason = m.reason().unwrap_or("").to_string();
            self.out.push_back(CallOut::Respond(tx, m));
            c.reliable = None;
            c.phase = CallPhase::Ended(end.unwrap_or(CallEnd::Rejected {
                code,
                reason,
                by: Party::Local,
            }));
        }
        if let Some(d) = c.dialog.as_mut() {
            d.terminate();
        }
    }

    fn incoming_cancel(&mut self, tx: TxId, req: &Message, invite_tx: Option<TxId>) {
        let r = invite_tx.and_then(|t| self.servers.get(&t).copied());
        let Some(r) = r else {
            // RFC 3261 §9.2: no matching transaction
            self.respond_plain(tx, req, 481, None);
            return;
        };
        self.respond_plain(tx, req, 200, None);
        let Ok(mut c) = self.take(r) else { return };
        if matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
            if let (Some(itx), Ok(m)) = (
                c.invite_tx,
                ResponseBuilder::new(&c.invite, 487)
                    .to_tag(&c.local_tag)
                    .build(),
            ) {
                self.out.push_back(CallOut::Respond(itx, m));
            }
            c.phase = CallPhase::Ended(CallEnd::Cancelled { by: Party::Remote });
        }
        self.put(r, c);
    }

    fn find(&self, id: &DialogId) -> Option<CallRef> {
        self.calls
            .iter()
            .find(|(_, c)| c.dialog.as_ref().is_some_and(|d| d.matches(id)))
            .map(|(r, _)| *r)
    }

    fn in_dialog_request(
        &mut self,
        tx: TxId,
        req: Message,
        id: &DialogId,
        net: &Net,
        now: Instant,
    ) {
        let Some(r) = self.find(id) else {
            // RFC 3261 §12.2.2: a request for a dialog we do not know
            self.respond_plain(tx, &req, 481, None);
            return;
        };
        let Ok(mut c) = self.take(r) else { return };
        let Some(method) = req.method().cloned() else {
            self.put(r, c);
            return;
        };
        let check = c
            .dialog
            .as_mut()
            .map(|d| d.handle_request(&req))
            .unwrap_or(Err(DialogError::Terminated));
        match check {
            Ok(()) => {}
            Err(DialogError::OutOfOrder { .. }) => {
                self.respond_plain(tx, &req, 500, None);
                self.put(r, c);
                return;
            }
            Err(_) => {
                self.respond_plain(tx, &req, 481, None);
                self.put(r, c);
                return;
            }
        }
        match method {
            Method::Bye => {
                self.respond_plain(tx, &req, 200, None);
                if !c.outgoing && matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
                    // a BYE before our final answer ends the INVITE with 487 (§15.2)
                    if let (Some(itx), Ok(m)) = (
                        c.invite_tx,
                        ResponseBuilder::new(&c.invite, 487)
                            .to_tag(&c.local_tag)
                            .build(),
                    ) {
                        self.out.push_back(CallOut::Respond(itx, m));
                    }
                }
                if let Some(d) = c.dialog.as_mut() {
                    d.terminate();
                }
                c.phase = CallPhase::Ended(CallEnd::HungUp { by: Party::Remote });
            }
            Method::Prack => {
                let ok = parse_rack(&req).is_ok_and(|(rseq, _, _)| rseq == c.rseq);
                if ok {
                    c.reliable = None;
                }
                self.respond_plain(tx, &req, if ok { 200 } else { 481 }, None);
            }
            Method::Update | Method::Invite => {
                // a session refresh or an offer: answer it; re-INVITE 2xx retransmission
                // is left to Timer L (loopback/ESP loss is rare, the peer re-sends INVITE)
                let mut b = ResponseBuilder::new(&req, 200)
                    .header("Contact", &net.contact)
                    .header(hdr::SUPPORTED, "100rel, timer");
                if let Some((se, _)) = session_expires(&req) {
                    b = b
                        .header("Session-Expires", format_args!("{se};refresher=uac"))
                        .header(hdr::REQUIRE, "timer");
                }
                let offer = sdp_oa::parse(req.body());
                if offer.is_none() && !req.body().is_empty() {
                    // RFC 3264 §6: an offer we cannot read is not acceptable
                    self.respond_plain(tx, &req, 488, None);
                    self.put(r, c);
                    return;
                }
                // RFC 3312 §6: the caller reports its segment reserved; ours is at once
                let qos_met = !c.outgoing
                    && c.precond == Some(Precond::Offered)
                    && offer.as_ref().is_some_and(sdp_oa::peer_ready);
                if let Some(offer) = offer {
                    c.sdp_version += 1;
                    let local = self.local(&c, net);
                    match sdp_oa::answer(&offer, local, PrecondDirection::SendRecv) {
                        Some(sdp) => {
                            b = b.body("application/sdp", Bytes::from(sdp.to_bytes()));
                            Self::negotiated(&mut c, offer, sdp);
                        }
                        None => {
                            self.respond_plain(tx, &req, 488, None);
                            self.put(r, c);
                            return;
                        }
                    }
                }
                if let Ok(m) = b.build() {
                    self.out.push_back(CallOut::Respond(tx, m));
                }
                if qos_met {
                    c.precond = Some(Precond::Met);
                    ev(&mut self.out, EventKind::CallPreconditionsMet { call: r });
                    self.ringing(&mut c, net, now);
                    if let AnswerMode::Auto(after) = self.cfg.answer {
                        c.answer_at = Some(now + after);
                    }
                } else if c.phase == CallPhase::Answered {
                    if let Some((se, _)) = session_expires(&req) {
                        c.session_expires = Some(se);
                    }
                    // the peer refreshed: restart the wait for its next refresh
                    if matches!(c.guard, Some((_, Guard::SessionExpiry))) {
                        c.guard = c
                            .session_expires
                            .map(|se| (now + expiry_after(se), Guard::SessionExpiry));
                    }
                    ev(&mut self.out, EventKind::CallRefreshed { call: r });
                }
            }
            Method::Message => {
                self.respond_plain(tx, &req, 200, None);
                self.message_received(&req);
            }
            Method::Info | Method::Notify | Method::Options => {
                self.respond_plain(tx, &req, 200, None);
            }
            _ => self.respond_plain(tx, &req, 501, None),
        }
        self.put(r, c);
    }

    /// An ACK outside any transaction: the ACK of a 2xx we sent (RFC 3261 §13.3.1.4).
    pub(crate) fn handle_ack(&mut self, req: &Message, net: &Net, now: Instant) {
        let Ok(Some(id)) = DialogId::of_incoming_request(req) else {
            return;
        };
        let Some(r) = self.find(&id) else { return };
        let Ok(mut c) = self.take(r) else { return };
        if c.dialog
            .as_mut()
            .is_some_and(|d| d.handle_request(req).is_ok())
            && !c.acked
            && c.ok.is_some()
        {
            c.acked = true;
            c.retransmit_at = None;
            // we made the caller the refresher: expect its refreshes
            c.guard = c
                .session_expires
                .map(|se| (now + expiry_after(se), Guard::SessionExpiry));
            ev(
                &mut self.out,
                EventKind::CallAnswered {
                    call: r,
                    took: now.saturating_duration_since(c.started),
                },
            );
            if c.bye_pending {
                let _ = self.bye(r, &mut c, CallEnd::HungUp { by: Party::Local }, net, now);
            }
        }
        self.put(r, c);
    }

    /// Timers: 2xx retransmission, auto-answer, ring and no-answer limits, refreshes.
    pub(crate) fn handle_timeout(&mut self, net: &Net, now: Instant) {
        let out = &mut self.out;
        for (r, c) in self.calls.iter_mut() {
            if let Some(m) = c.media.as_mut() {
                m.handle_timeout(now);
                media_events(out, *r, m);
            }
        }
        let due: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|d| d <= now))
            .map(|(r, _)| *r)
            .collect();
        for r in due {
            let Ok(mut c) = self.take(r) else { continue };
            if c.retransmit_at.is_some_and(|t| t <= now) {
                if let (Some(tx), Some(ok)) = (c.invite_tx, c.ok.clone()) {
                    self.out.push_back(CallOut::Resend(tx, ok));
                }
                c.interval = (c.interval * 2).min(self.timers.t2);
                c.retransmit_at = Some(now + c.interval);
            }
            if c.reliable.as_ref().is_some_and(|r| r.next <= now) {
                match c.reliable.take() {
                    Some(r) if now >= r.give_up => {
                        if matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
                            self.final_failure(
                                &mut c,
                                500,
                                Some(CallEnd::Timeout(CallTimeout::NoPrack)),
                            );
                        }
                    }
                    Some(mut r) => {
                        if let Some(tx) = c.invite_tx {
                            self.out.push_back(CallOut::Resend(tx, r.response.clone()));
                        }
                        r.interval *= 2;
                        r.next = (now + r.interval).min(r.give_up);
                        c.reliable = Some(r);
                    }
                    None => {}
                }
            }
            if c.answer_at.is_some_and(|t| t <= now) {
                c.answer_at = None;
                if matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
                    self.send_ok(r, &mut c, net, now);
                }
            }
            if c.refresh_at.is_some_and(|t| t <= now) {
                c.refresh_at = c
                    .session_expires
                    .map(|se| now + Duration::from_secs(u64::from(se / 2).max(1)));
                let _ = self.in_dialog(r, &mut c, Method::Update, net);
            }
            if let Some((t, g)) = c.guard {
                if t <= now {
                    c.guard = None;
                    match g {
                        Guard::NoAnswer => {
                            if matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
                                self.cancel(
                                    r,
                                    &mut c,
                                    CallEnd::Timeout(CallTimeout::NoAnswer),
                                    net,
                                    now,
                                );
                            }
                        }
                        Guard::Ring => {
                            if matches!(c.phase, CallPhase::Calling | CallPhase::Ringing) {
                                self.final_failure(
                                    &mut c,
                                    480,
                                    Some(CallEnd::Timeout(CallTimeout::NoAnswer)),
                                );
                            }
                        }
                        Guard::NoAck => {
                            c.retransmit_at = None;
                            if !c.acked {
                                let end = if c.bye_pending {
                                    CallEnd::HungUp { by: Party::Local }
                                } else {
                                    CallEnd::Timeout(CallTimeout::NoAck)
                                };
                                let _ = self.bye(r, &mut c, end, net, now);
                            }
                        }
                        Guard::SessionExpiry => {
                            if c.phase == CallPhase::Answered {
                                let _ = self.bye(
                                    r,
                                    &mut c,
                                    CallEnd::Timeout(CallTimeout::SessionExpired),
                                    net,
                                    now,
                                );
                            }
                        }
                        Guard::Ending => {
                            let end = c
                                .ending
                                .take()
                                .or_else(|| c.cancel.take())
                                .unwrap_or(CallEnd::Timeout(CallTimeout::NoFinal));
                            c.phase = CallPhase::Ended(end);
                        }
                    }
                }
            }
            self.put(r, c);
        }
    }
}
