//! What a UE reports to its application: every message in and out (for the ladder), every
//! SA step, registration outcomes. Each event carries the `now` of the input that caused it,
//! so a ladder shows real timings without the core reading a clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip::transaction::TxError;
use sip::Method;
use xfrm::{EncryptionAlg, IntegrityAlg, SaSet, SetId};

use crate::call::{CallEnd, CallRef};
use crate::media::{MediaError, MediaStats};
use crate::regevent::{RegNotification, SubscriptionEnd};
use crate::reginfo::{ContactEvent, RegInfoError};

/// Why a registration procedure failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegError {
    /// AUTN's MAC does not verify: the network does not know our K/OPc (TS 33.102 §6.3.3).
    #[error("network authentication failed: AUTN MAC mismatch (wrong K/OPc in the HSS?)")]
    MacFailure,
    /// The network kept sending SQNs the card refuses, even after resynchronisation.
    #[error("SQN resynchronisation failed {0} times in a row")]
    ResyncLoop(u32),
    /// The 401 could not be understood.
    #[error("bad challenge: {0}")]
    BadChallenge(#[from] ChallengeError),
    /// The P-CSCF chose something we did not offer (TS 33.203 §7.2: abort).
    #[error("Security-Server does not match our offer: {0}")]
    SecAgree(#[from] SecAgreeFailure),
    /// The shell could not install the SAs or open the protected ports.
    #[error("SA install failed: {0}")]
    SaInstall(#[from] SaInstallError),
    /// A final failure response.
    #[error("registration rejected: {code} {reason}")]
    Rejected {
        /// status code
        code: u16,
        /// reason phrase
        reason: String,
    },
    /// No final response (RFC 3261 §17.1.2.2 timer F) or a transport error.
    #[error("no response from the P-CSCF (transaction timeout)")]
    Timeout,
    /// A command that makes no sense in the current state.
    #[error("cannot {command} while {state}")]
    InvalidState {
        /// the command
        command: &'static str,
        /// the state
        state: &'static str,
    },
    /// The 200 OK could not be understood.
    #[error("bad 200 OK: {0}")]
    BadResponse(#[from] ResponseError),
    /// The shell stopped before the procedure ended.
    #[error("the UE host stopped")]
    HostStopped,
    /// The network deregistered the UE meanwhile (reg event NOTIFY, TS 24.229 §5.1.1.7).
    #[error("the network deregistered the UE")]
    NetworkDeregistered,
}

/// Why a 401 could not be answered (TS 24.229 §5.1.1.5.1, RFC 3310 §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The 401 has no WWW-Authenticate at all.
    #[error("no WWW-Authenticate")]
    NoChallenge,
    /// The only challenges are not AKAv1-MD5.
    #[error("algorithm {algorithm} instead of AKAv1-MD5")]
    NotAka {
        /// the algorithm offered (`MD5` when absent, RFC 2617 §3.2.1)
        algorithm: String,
    },
    /// A WWW-Authenticate value does not parse.
    #[error("WWW-Authenticate: {0}")]
    Header(#[source] akav1::digest::DigestError),
    /// The nonce is not RAND ‖ AUTN in base64 (TS 33.203 §6.1).
    #[error("nonce: {0}")]
    Nonce(#[source] akav1::nonce::NonceError),
    /// More 401s in one procedure than a challenge, a resync and a stale nonce need.
    #[error("{0} challenges in one procedure")]
    TooMany(u32),
}

/// Why the UE cannot build an SA set from the 401's Security-Server (TS 33.203 §7.2,
/// RFC 3329 §2.3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecAgreeFailure {
    /// Security-Server does not parse.
    #[error("Security-Server: {0}")]
    Header(#[source] sip::ParseError),
    /// No `ipsec-3gpp` mechanism in Security-Server.
    #[error("no ipsec-3gpp Security-Server in the 401")]
    NoIpsec,
    /// The P-CSCF's preferred mechanism is none of our offers.
    #[error("P-CSCF chose alg={alg} ealg={ealg}, which we did not offer")]
    NotOffered {
        /// integrity algorithm it chose
        alg: String,
        /// encryption algorithm it chose
        ealg: String,
    },
    /// The chosen parameters do not make a valid SA set.
    #[error(transparent)]
    Set(#[from] secagree::SecAgreeError),
}

/// Why a 200 OK to a REGISTER could not be used (RFC 3261 §10.2.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// A header the UE reads from the 200 does not parse.
    #[error("{header}: {source}")]
    Header {
        /// which header (or parameter)
        header: &'static str,
        /// the parser's complaint
        source: sip::ParseError,
    },
    /// The registrar granted our Contact 0 seconds: no registration.
    #[error("the registrar granted 0 seconds")]
    ZeroExpiry,
}

/// An I/O error of the shell (sockets or the IPsec backend), shared because the events and
/// errors carrying it are cloned to every listener; two are equal when they say the same.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct IoFailure(pub Arc<secagree::SipIoError>);

impl From<secagree::SipIoError> for IoFailure {
    fn from(e: secagree::SipIoError) -> Self {
        IoFailure(Arc::new(e))
    }
}

impl PartialEq for IoFailure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for IoFailure {}

/// Why the shell could not carry out [`crate::SaAction::Install`]: the answer the core gets
/// in [`crate::Ue::handle_sa_installed`].
///
/// The OS error is shared (`Arc`) because events carrying it are cloned to every listener;
/// two values are equal when they say the same.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SaInstallError {
    /// A protected port could not be bound (kernel backend or IPsec off: a UDP socket).
    #[error("bind protected port {addr}: {source}")]
    Port {
        /// the port
        addr: SocketAddr,
        /// the OS error
        source: Arc<std::io::Error>,
    },
    /// The IPsec backend (or the userspace ESP port bookkeeping) refused.
    #[error(transparent)]
    Backend(IoFailure),
}

impl SaInstallError {
    /// A protected port that could not be bound.
    pub fn port(addr: SocketAddr, source: std::io::Error) -> Self {
        SaInstallError::Port {
            addr,
            source: Arc::new(source),
        }
    }
}

impl From<secagree::SipIoError> for SaInstallError {
    fn from(e: secagree::SipIoError) -> Self {
        SaInstallError::Backend(e.into())
    }
}

impl PartialEq for SaInstallError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                SaInstallError::Port { addr, source },
                SaInstallError::Port {
                    addr: a2,
                    source: s2,
                },
            ) => addr == a2 && source.kind() == s2.kind() && source.to_string() == s2.to_string(),
            (SaInstallError::Backend(a), SaInstallError::Backend(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for SaInstallError {}

/// Which registration procedure an outcome belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Procedure {
    /// The first registration (TS 24.229 §5.1.1.2).
    Initial,
    /// A re-registration (§5.1.1.4), by command or refresh timer.
    Reregistration,
    /// A deregistration (§5.1.1.6).
    Deregistration,
}

impl Procedure {
    /// Lower-case name for ladders and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Procedure::Initial => "registration",
            Procedure::Reregistration => "re-registration",
            Procedure::Deregistration => "deregistration",
        }
    }
}

/// A short description of one SA set for the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSummary {
    /// The generation of the UE's sec-agree parameters this set belongs to.
    pub generation: u64,
    /// Integrity algorithm.
    pub integrity: IntegrityAlg,
    /// Encryption algorithm.
    pub encryption: EncryptionAlg,
    /// spi_uc, spi_us, spi_pc, spi_ps.
    pub spis: [u32; 4],
    /// port_uc, port_us, port_pc, port_ps.
    pub ports: [u16; 4],
}

impl SaSummary {
    /// Summary of a set.
    pub fn of(generation: u64, s: &SaSet) -> Self {
        SaSummary {
            generation,
            integrity: s.integrity,
            encryption: s.encryption,
            spis: [s.spi_uc, s.spi_us, s.spi_pc, s.spi_ps],
            ports: [s.port_uc, s.port_us, s.port_pc, s.port_ps],
        }
    }
}

impl std::fmt::Display for SaSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} spi uc={} us={} pc={} ps={} ports uc={} us={} pc={} ps={}",
            self.integrity.sip_name(),
            self.encryption.sip_name(),
            self.spis[0],
            self.spis[1],
            self.spis[2],
            self.spis[3],
            self.ports[0],
            self.ports[1],
            self.ports[2],
            self.ports[3]
        )
    }
}

/// The registration that a 200 OK confirmed (TS 24.229 §5.1.1.2.2 / §5.1.1.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Which procedure.
    pub procedure: Procedure,
    /// Granted expiry (our Contact's `expires`, else Expires).
    pub expires: u32,
    /// Service-Route entries (used as Route of later originating requests).
    pub service_route: Vec<String>,
    /// P-Associated-URI entries (the implicit registration set).
    pub associated_uris: Vec<String>,
    /// Whether the REGISTER that got the 200 went through an SA.
    pub protected: bool,
    /// Time from the procedure's first REGISTER to its 200 OK.
    pub took: Duration,
    /// Number of REGISTER transactions the procedure needed (2 normally, 3 with resync).
    pub round_trips: u32,
}

/// One thing that happened, with the time of the input that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UeEvent {
    /// When (the `now` given to the core).
    pub at: Instant,
    /// What.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A message left (the first transmission; retransmissions are not reported).
    Sent {
        /// one-line summary (start line and the interesting headers)
        summary: String,
        /// local address it left from
        from: SocketAddr,
        /// destination
        to: SocketAddr,
        /// sent from a protected port (through an SA)
        protected: bool,
    },
    /// A message arrived.
    Received {
        /// one-line summary
        summary: String,
        /// sender
        from: SocketAddr,
        /// local address it arrived on
        to: SocketAddr,
        /// arrived on a protected port (through an SA)
        protected: bool,
    },
    /// AUTN verified; RES/CK/IK computed (TS 33.102 §6.3.3).
    AkaVerified {
        /// the SQN the network used
        sqn: u64,
    },
    /// The card refused the SQN; answering with AUTS (TS 33.102 §6.3.5).
    SqnResync {
        /// the card's SQN_MS reported in AUTS
        sqn_ms: u64,
    },
    /// The core asks the shell to install an SA set ([`crate::SaAction::Install`]).
    SaInstallRequested(SaSummary),
    /// The shell installed it.
    SaInstalled {
        /// backend id
        id: SetId,
        /// the set
        sa: SaSummary,
    },
    /// Temporary → established (after the 200 OK).
    SaPromoted {
        /// backend id
        id: SetId,
    },
    /// Retired: kept for the grace period, then deleted.
    SaExpiring {
        /// backend id
        id: SetId,
    },
    /// Deleted, ports closed.
    SaDeleted {
        /// backend id
        id: SetId,
    },
    /// A procedure ended with a 200 OK.
    Registered(Registered),
    /// Deregistration confirmed (or, after a failure, given up locally).
    Deregistered {
        /// time from the de-REGISTER to its response
        took: Duration,
    },
    /// The registration ran out without a refresh; the UE considers itself deregistered.
    Expired,
    /// A procedure failed.
    Failed {
        /// which
        procedure: Procedure,
        /// why
        error: RegError,
    },
    /// We placed a call: the INVITE is out.
    CallStarted {
        /// the call
        call: CallRef,
        /// the callee (Request-URI)
        to: String,
    },
    /// An INVITE arrived.
    IncomingCall {
        /// the call
        call: CallRef,
        /// the caller (From URI)
        from: String,
    },
    /// The callee is alerting (180) or a session is in progress (183).
    CallRinging {
        /// the call
        call: CallRef,
        /// the provisional status code
        code: u16,
    },
    /// The call is established: caller — the 2xx arrived (and was ACKed); callee — the
    /// ACK of our 2xx arrived.
    CallAnswered {
        /// the call
        call: CallRef,
        /// time from the INVITE to this point
        took: Duration,
    },
    /// Both QoS segments are reserved (RFC 3312): caller — the UPDATE's answer says so;
    /// callee — the caller's UPDATE said so and we alert now.
    CallPreconditionsMet {
        /// the call
        call: CallRef,
    },
    /// A session refresh (UPDATE or re-INVITE) arrived and was answered.
    CallRefreshed {
        /// the call
        call: CallRef,
    },
    /// RTP sending started with the answer (receiving may have begun at an earlier reliable
    /// 183's answer): to the peer's address, with the negotiated codec.
    MediaStarted {
        /// the call
        call: CallRef,
        /// where the peer receives RTP
        to: SocketAddr,
        /// the codec ([`crate::MediaCodec`] as text)
        codec: String,
        /// what is sent: `test pattern` (not audio) or an AMR file
        source: String,
    },
    /// No RTP could be set up from the offer/answer; the call goes on without media.
    MediaFailed {
        /// the call
        call: CallRef,
        /// why
        error: MediaError,
    },
    /// The peer sent no RTP for this long (reported once per silence; the call goes on).
    MediaTimeout {
        /// the call
        call: CallRef,
        /// time since the last RTP packet
        silent: Duration,
    },
    /// A DTMF digit arrived as an RFC 4733 telephone-event.
    DtmfReceived {
        /// the call
        call: CallRef,
        /// the digit
        digit: char,
    },
    /// What the call's RTP did, reported just before [`EventKind::CallEnded`].
    CallMedia {
        /// the call
        call: CallRef,
        /// the counts
        stats: MediaStats,
    },
    /// The call is over.
    CallEnded {
        /// the call
        call: CallRef,
        /// how
        end: CallEnd,
    },
    /// A MESSAGE we sent got its final answer (`None`: no answer at all).
    MessageSent {
        /// what [`crate::Ue::send_message`] returned
        id: u64,
        /// the recipient
        to: String,
        /// the final status code
        code: Option<u16>,
        /// time to the final answer
        took: Duration,
    },
    /// A MESSAGE arrived (and was answered 200).
    MessageReceived {
        /// the sender (From URI)
        from: String,
        /// the body as text
        text: String,
    },
    /// The reg event subscription was accepted (2xx to the SUBSCRIBE, TS 24.229
    /// §5.1.1.3).
    RegEventSubscribed {
        /// the granted expiry, seconds
        expires: u32,
        /// a refresh (not the initial SUBSCRIBE)
        refresh: bool,
    },
    /// A reg event NOTIFY arrived and was answered 200.
    RegEventNotified(RegNotification),
    /// A reg event NOTIFY's body could not be read (it was still answered 200).
    RegEventBadBody(RegInfoError),
    /// The reg event subscription is over.
    RegEventEnded(SubscriptionEnd),
    /// The network deregistered us (our contact `terminated` with this event in a reg
    /// event NOTIFY, TS 24.229 §5.1.1.7): the registration and its SAs are gone.
    DeregisteredByNetwork {
        /// `deactivated` or `rejected`
        event: ContactEvent,
    },
    /// Something worth a line in the ladder that is not a procedure's outcome (e.g. an
    /// unsolicited request answered 501, a datagram that could not be sent).
    Note(Note),
}

/// A ladder line that is not a procedure's outcome: what the UE did on its own, and
/// failures that did not end a procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A datagram that is not SIP was dropped.
    Unparsable {
        /// sender
        from: SocketAddr,
        /// the parser's complaint
        error: sip::ParseError,
    },
    /// A response no transaction of ours waits for (its one-line summary).
    StrayResponse(String),
    /// The transaction layer could not use a response.
    UnusableResponse(TxError),
    /// The transaction layer could not use a request.
    UnusableRequest(TxError),
    /// A request the UE does not handle yet is answered with `code` (RFC 3261 §8.2.1).
    Answering {
        /// its method
        method: Option<Method>,
        /// the status code
        code: u16,
    },
    /// That answer could not be built.
    CannotBuildResponse(sip::ParseError),
    /// That answer could not be sent through its server transaction.
    CannotRespond(TxError),
    /// A request could not start its client transaction.
    CannotSend(TxError),
    /// The shell could not send a datagram.
    SendFailed {
        /// destination
        to: SocketAddr,
        /// why
        error: IoFailure,
    },
    /// IPsec is off: a set was "installed" without SAs, protected ports are plain UDP.
    IpsecOff,
    /// The UE's RTP socket could not be bound: its calls have no media.
    MediaBindFailed {
        /// the RTP address
        addr: SocketAddr,
        /// the OS error's kind
        error: std::io::ErrorKind,
    },
    /// The backend refused an SA action after the install.
    SaFailed {
        /// which action
        action: SaStep,
        /// the set
        id: SetId,
        /// why
        error: IoFailure,
    },
}

/// The SA actions after an install, for [`Note::SaFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaStep {
    /// [`crate::SaAction::Promote`]
    Promote,
    /// [`crate::SaAction::BeginExpiry`]
    Retire,
    /// [`crate::SaAction::Delete`]
    Delete,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Unparsable { from, error } => {
                write!(f, "dropped unparsable datagram from {from}: {error}")
            }
            Note::StrayResponse(summary) => write!(f, "stray response {summary}"),
            Note::UnusableResponse(e) => write!(f, "unusable response: {e}"),
            Note::UnusableRequest(e) => write!(f, "unusable request: {e}"),
            Note::Answering { method, code } => write!(
                f,
                "answering {} with {code}",
                method.as_ref().map_or("?", |m| m.as_str())
            ),
            Note::CannotBuildResponse(e) => write!(f, "cannot build a response: {e}"),
            Note::CannotRespond(e) => write!(f, "cannot respond: {e}"),
            Note::CannotSend(e) => write!(f, "cannot send request: {e}"),
            Note::SendFailed { to, error } => write!(f, "send to {to} failed: {error}"),
            Note::IpsecOff => f.write_str(
                "IPsec is OFF: SA set not installed, protected ports are plain UDP (nothing is \
                 encrypted)",
            ),
            Note::MediaBindFailed { addr, error } => {
                write!(f, "cannot bind the RTP socket {addr}: {error}")
            }
            Note::SaFailed { action, id, error } => {
                let action = match action {
                    SaStep::Promote => "promote",
                    SaStep::Retire => "retire",
                    SaStep::Delete => "delete",
                };
                write!(f, "{action} SA set #{id}: {error}")
            }
        }
    }
}
