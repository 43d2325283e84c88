//! The contract between the three parts of the caller-ID service:
//!
//! ```text
//!  inputs                          pipeline                        sinks
//!  ISC (terminating INVITE) ─┐                                 ┌─ NCID, Fritz!Box monitor
//!  pcap file / live iface ───┼─ Offer, Progress ─▶ CallObserver ─ CallEvent ─┼─ MQTT, datagram, webhook
//!  NFQUEUE inline ───────────┘  ◀─ Verdict ──                  └─ SIP MESSAGE, call log
//! ```
//!
//! An input reports what it saw in SIP or MGCP terms ([`Offer`], [`Progress`]) and obeys
//! the [`Verdict`]; the pipeline names the caller, decides, logs, and publishes
//! [`CallEvent`]s on an [`EventBus`]; each sink subscribes and writes its own format. No
//! input knows a sink and no sink knows where a call was seen.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where a call was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A terminating INVITE reached us over ISC from the S-CSCF.
    Isc,
    /// Read from a pcap file (passive).
    Pcap,
    /// Sniffed on a live interface (AF_PACKET, passive).
    Live,
    /// Held in an NFQUEUE (inline: may be dropped to block).
    Nfqueue,
}

impl Source {
    /// Lower-case name for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Isc => "isc",
            Source::Pcap => "pcap",
            Source::Live => "live",
            Source::Nfqueue => "nfqueue",
        }
    }
}

/// Who the input says is calling, before the pipeline interprets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCaller {
    /// A SIP INVITE: header values as received (one entry per header field line or
    /// comma-separated value), for the pipeline to parse with [`sip::NameAddr`].
    Sip {
        /// `P-Asserted-Identity` values (RFC 3325), possibly a sip: and a tel: one.
        p_asserted_identity: Vec<String>,
        /// The `From` value (name-addr with tag).
        from: String,
        /// The `Privacy` value (RFC 3323: `id`, `header`, `user`, `none`, …), if any.
        privacy: Option<String>,
        /// Whether P-Asserted-Identity may be believed: true from the S-CSCF over ISC
        /// (TS 24.229 §5.7.1.1: a trust domain), false when sniffed from an untrusted wire
        /// unless the configuration says that wire is trusted.
        trusted: bool,
    },
    /// A device that already reduced the caller to a number and a name: MGCP
    /// `L/ci(time,"number","name")` from a residential VoIP adapter.
    Plain {
        /// The number as the device gave it (national or international form).
        number: Option<String>,
        /// The name the device gave, if any.
        name: Option<String>,
        /// The device marked the caller private (`P`) or withheld.
        anonymous: bool,
    },
}

/// A new call offered to a subscriber, as an input saw it.
///
/// The pipeline answers the same `call_id` only once: a retransmitted INVITE, or one
/// sniffed twice on its way through a box, gets the earlier verdict and no new event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// SIP Call-ID, or for MGCP the endpoint plus request identifier: what later
    /// [`Progress`] reports name the call by.
    pub call_id: String,
    /// The caller as seen.
    pub caller: RawCaller,
    /// The called party as the input saw it: over ISC the tel URI of the callee's
    /// registration set when a third-party REGISTER named one, else the terminating
    /// INVITE's Request-URI (the public identity, sip: or tel:); the To URI of a sniffed
    /// INVITE; or an MGCP endpoint name (`aaln/1@gw`).
    pub callee: String,
    /// Where it was seen.
    pub source: Source,
    /// When it was seen (for pcap input: the packet's capture time).
    pub at: SystemTime,
}

/// What happened to an offered call afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A 2xx answered the INVITE.
    Answered,
    /// The caller gave up before an answer (CANCEL, or 487 after it).
    Cancelled,
    /// A CANCEL with `Reason: SIP;cause=200` (RFC 3326): another of the callee's devices
    /// answered a forked call.
    AnsweredElsewhere,
    /// A final failure response other than 487 (486 busy, 480, 408 no answer, 603, …).
    Failed(u16),
    /// A BYE (either side) ended an answered call.
    Ended,
}

/// What the input must do with the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it ring.
    Ring,
    /// Refuse it: ISC answers `603 Decline` (RFC 3261 §21.6.2) and the callee never sees
    /// an INVITE; NFQUEUE drops the packet; passive inputs can only record it.
    Block {
        /// The blocklist entry that matched, for logs and the call log.
        rule: String,
    },
}

/// Where the caller's shown name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// The local phonebook.
    Phonebook,
    /// The configured reverse-lookup service.
    Reverse,
    /// The display name the caller's network sent.
    Display,
    /// Withheld: the name is "Anonymous".
    Anonymous,
    /// No name known.
    None,
}

/// The caller, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// E.164 with a leading `+` when the number could be placed, otherwise as given (a SIP
    /// user part that is not a number, say). `None` when withheld or absent.
    pub number: Option<String>,
    /// The name to show: phonebook, then reverse lookup, then display name;
    /// `Some("Anonymous")` for a withheld caller.
    pub name: Option<String>,
    /// Where `name` came from.
    pub name_source: NameSource,
    /// The caller asked for privacy (RFC 3323 `id`/`header`/`user`, MGCP `P`): no number
    /// is shown anywhere.
    pub anonymous: bool,
}

/// The called subscriber, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callee {
    /// E.164 with `+` when the URI holds a number, else `None`.
    pub number: Option<String>,
    /// The URI (or MGCP endpoint) as the input gave it.
    pub uri: String,
}

/// How a call ended, as the call log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The callee answered.
    Answered,
    /// Nobody answered (timeout, busy, unavailable).
    Missed,
    /// The blocklist refused it.
    Blocked,
    /// The caller hung up first.
    Cancelled,
    /// Another of the callee's devices answered.
    AnsweredElsewhere,
}

impl Outcome {
    /// The call log's and JSON's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Missed => "missed",
            Outcome::Blocked => "blocked",
            Outcome::Cancelled => "cancelled",
            Outcome::AnsweredElsewhere => "answered_elsewhere",
        }
    }
}

/// The stage of a call an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEventKind {
    /// An incoming call is ringing (the moment to notify).
    Ring,
    /// An incoming call was blocked (one event, no Ring before it).
    Blocked,
    /// The call was answered.
    Connect,
    /// The call is over.
    End {
        /// How it ended.
        outcome: Outcome,
        /// Time since [`CallEventKind::Connect`]; zero if never answered.
        talk: Duration,
    },
}

/// One thing a sink may tell the world about a call. Every event of one call carries the
/// same `conn`, caller and callee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// A small number for this call, unique among calls in progress, reused after: the
    /// Fritz!Box monitor's connection id.
    pub conn: u32,
    /// The Call-ID (or MGCP call key) of the offer.
    pub call_id: String,
    /// What happened.
    pub kind: CallEventKind,
    /// When it happened.
    pub at: SystemTime,
    /// When the call was offered.
    pub started: SystemTime,
    /// Who calls.
    pub caller: Caller,
    /// Who is called.
    pub callee: Callee,
    /// Where the call was seen.
    pub source: Source,
}

/// The channel the pipeline publishes on and every sink subscribes to. A sink that falls
/// more than the channel's capacity behind loses the oldest events (and logs how many)
/// rather than slowing calls down.
pub type EventBus = tokio::sync::broadcast::Sender<Arc<CallEvent>>;

/// The pipeline as the inputs see it. Synchronous and quick: it never waits on a network
/// (a reverse lookup or a sink runs on its own; the call does not wait for it).
pub trait CallObserver: Send + Sync + 'static {
    /// A call is offered: returns what to do with it. Publishes a [`CallEventKind::Ring`]
    /// or [`CallEventKind::Blocked`] event for a new `call_id`; a repeat gets the first
    /// verdict again and publishes nothing.
    fn offer(&self, offer: Offer) -> Verdict;

    /// A later stage of an offered call. Unknown call ids are ignored; the first final
    /// stage ends the call (later reports for it are ignored).
    fn progress(&self, call_id: &str, progress: Progress, at: SystemTime);
}
