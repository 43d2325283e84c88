//! The sans-IO P-CSCF (TS 24.229 §5.2, TS 33.203 §6–7): sec-agree, the UE's IPsec SAs,
//! identity from the SA, and ONE path toward an S-CSCF, whether that S-CSCF is Kamailio
//! over the network or our [`scscf`] core in the same process (see [`crate::node`]).
//!
//! Shape of quinn-proto's `Connection`: the shell feeds what arrives
//! ([`Pcscf::handle_inbound`] for bytes, [`Pcscf::handle_message`] for a message another
//! core in this process handed over, [`Pcscf::handle_security_ready`],
//! [`Pcscf::handle_timeout`]) with the current time, and drains [`Pcscf::poll_output`] and
//! [`Pcscf::poll_timeout`]. Nothing here does I/O, so the whole registration flow is
//! driven message by message in tests.
//!
//! Rules carried from the specifications and from where Kamailio users get hurt:
//! - Security-Verify must repeat our Security-Server exactly, or the REGISTER is refused
//!   (TS 33.203 §7.2 bid-down protection);
//! - a request that arrives on a protected port is attributed to the registration that owns
//!   the SA it came through, never to what its headers claim, and a packet on a protected
//!   port from an address/port that owns no SA there is dropped;
//! - a pending challenge (and its temporary SAs) is never replaced by somebody else's
//!   REGISTER: several may wait per IMPI, each with its own timer;
//! - retired SAs (re-authentication, deregistration) live on for a grace period so the final
//!   responses still go out protected.

use crate::config::IpsecPolicy;
use bytes::Bytes;
use secagree::{AlgPrefs, Choice};
use sip::ims::{format_security_list, SecurityMechanism};
use sip::transaction::{self, Handoff, RequestOutcome, Transactions, TxId};
use sip::uas::Dropped;
use sip::{Flow, Limits, Message, Method, Protocol, ResponseBuilder, Transmit};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use xfrm::{Lease, Pool, SaSet, SetId};

mod admission;
mod regevent;
mod register;
mod sa_table;
mod session;
pub use admission::AdmissionConfig;
pub use register::Upstream;
pub use session::Refusal;

/// What the core needs to know, resolved from the configuration by the shell.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Home domain: digest realm.
    pub domain: String,
    /// Our address as UEs reach it (SAs, Service-Route).
    pub local_ip: IpAddr,
    /// Our unprotected SIP port.
    pub sip_port: u16,
    /// IPsec policy.
    pub policy: IpsecPolicy,
    /// Whether an IPsec backend is active (else sec-agree is refused or skipped).
    pub ipsec_available: bool,
    /// Algorithm preferences.
    pub prefs: AlgPrefs,
    /// Our SPI range.
    pub spi_range: (u32, u32),
    /// Our protected port range.
    pub port_range: (u16, u16),
    /// Expiry a REGISTER without one asks for, seconds (only to tell a deregistration
    /// from a registration: the S-CSCF grants the real one).
    pub default_expires: u32,
    /// Challenge / temporary SA lifetime.
    pub auth_timeout: Duration,
    /// How long retired SAs stay.
    pub retire_grace: Duration,
    /// Pending challenges (each with its temporary SA set) kept per IMPI; the oldest goes
    /// when a new one would exceed it.
    pub max_challenges_per_impi: usize,
    /// SIP parse limits.
    pub limits: Limits,
}

/// Something the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes.
    Transmit(Transmit),
    /// Hand this message to the core in this process that `flow.remote` names (the
    /// collapsed S-CSCF).
    Handoff(Handoff),
    /// Change IPsec state.
    Security(SecurityOp),
    /// Something worth logging or counting.
    Event(CoreEvent),
}

/// IPsec work for the shell. Every operation is reported back: `Prepare` with
/// [`Pcscf::handle_security_ready`], the others with [`Pcscf::handle_security_result`].
#[derive(Debug)]
pub enum SecurityOp {
    /// Open the protected ports `set.port_pc`/`set.port_ps` on `set.pcscf` and install the
    /// set (temporary); report with [`Pcscf::handle_security_ready`].
    Prepare {
        /// Correlation token.
        token: u64,
        /// The set.
        set: SaSet,
    },
    /// Temporary → established.
    Promote {
        /// Which set.
        id: SetId,
        /// Valid for.
        lifetime: Duration,
    },
    /// Established → expiring (still usable during `grace`).
    Retire {
        /// Which set.
        id: SetId,
        /// Grace period.
        grace: Duration,
    },
    /// Delete the set and close its protected ports (whatever the deletion's outcome:
    /// the core has returned them to its pools already).
    Delete {
        /// Which set.
        id: SetId,
        /// Its parameters (addresses and ports to close).
        set: SaSet,
    },
}

/// A step of an SA set's life after its installation, as reported with
/// [`Pcscf::handle_security_result`] (TS 33.203 §7.1, §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaStep {
    /// [`SecurityOp::Promote`]: temporary → established.
    Promote,
    /// [`SecurityOp::Retire`]: established → expiring.
    Retire,
    /// [`SecurityOp::Delete`].
    Delete,
}

impl SaStep {
    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SaStep::Promote => "promote",
            SaStep::Retire => "retire",
            SaStep::Delete => "delete",
        }
    }
}

impl std::fmt::Display for SaStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Notable things that happened, for logs, metrics and the demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreEvent {
    /// A 401 went out.
    Challenged {
        /// Private identity.
        impi: String,
        /// With IPsec.
        ipsec: bool,
    },
    /// A registration succeeded.
    Registered {
        /// Public identity registered.
        impu: String,
        /// Its private identity.
        impi: String,
        /// Granted seconds.
        expires: u32,
        /// Over IPsec.
        protected: bool,
    },
    /// A registration ended.
    Deregistered {
        /// Public identity.
        impu: String,
        /// Why.
        reason: &'static str,
    },
    /// Authentication or sec-agree failed.
    Rejected {
        /// Private identity (or what we know of it).
        impi: String,
        /// Status code sent.
        code: u16,
        /// Why, for the log and metrics (never sent to the UE: it would help an attacker
        /// probe which identities and set-ups exist).
        reason: Rejection,
    },
    /// Input dropped without answer.
    Dropped {
        /// From where.
        remote: SocketAddr,
        /// Why.
        reason: DropReason,
    },
    /// The shell could not carry out an SA step. The set is gone from our accounts
    /// either way (its SPIs and ports are back in the pools); after a failed
    /// [`SaStep::Delete`] its kernel state may outlive it, until the flush at the next
    /// start, and is counted as leaked.
    SaFailed {
        /// Which set.
        id: SetId,
        /// Which step failed.
        step: SaStep,
        /// Whose set it was, when we still knew.
        impi: Option<String>,
        /// The backend's error, for the log.
        error: String,
    },
    /// A request other than REGISTER was refused.
    Refused {
        /// Its method.
        method: String,
        /// Status code sent.
        code: u16,
        /// Why (the UE hears only the code).
        reason: Refusal,
    },
}

/// Why the P-CSCF refused a REGISTER (or answered it with an error on the S-CSCF's
/// behalf).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header we need is missing or unparsable.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Security-Client does not parse (RFC 3329 §2.2).
    #[error("malformed Security-Client: {0}")]
    MalformedSecurityClient(sip::ParseError),
    /// It came through an SA that another identity owns (TS 33.203 §7.4).
    #[error("identity does not own the security association it used")]
    NotSaOwner,
    /// Security-Verify differs from our Security-Server (TS 33.203 §7.2 bid-down).
    #[error("Security-Verify does not match our Security-Server")]
    VerifyMismatch,
    /// No Security-Client while our policy requires IPsec (421, RFC 3329 §2.3.1).
    #[error("no Security-Client: IPsec is required")]
    SecAgreeRequired,
    /// No offer of Security-Client is acceptable (494, RFC 3329 §2.3.1).
    #[error("no acceptable Security-Client: {0}")]
    NoAcceptableOffer(secagree::SecAgreeError),
    /// The chosen offer and our mechanism make no valid SA set.
    #[error("unusable Security-Client: {0}")]
    UnusableOffer(secagree::SecAgreeError),
    /// IPsec is required but no backend is available.
    #[error("IPsec is required but no backend is available")]
    NoIpsecBackend,
    /// No SPI or protected port left.
    #[error("IPsec resources exhausted: {0}")]
    IpsecExhausted(xfrm::PoolError),
    /// The shell could not install the temporary SA set; the detail is the backend's.
    #[error("IPsec setup failed: {0}")]
    IpsecSetup(String),
    /// Max-Forwards reached zero (483, RFC 3261 §16.3 step 3).
    #[error("Max-Forwards exhausted")]
    TooManyHops,
    /// The request cannot be forwarded (its Via or Max-Forwards are unusable).
    #[error("request cannot be forwarded")]
    Unforwardable,
    /// Our client transaction toward the S-CSCF could not be created.
    #[error("cannot forward: {0}")]
    ForwardFailed(transaction::TxError),
    /// The S-CSCF answered with this error, passed down as it is.
    #[error("refused by the S-CSCF")]
    Upstream,
    /// The S-CSCF's 401 carries `ck`/`ik` that are not 32 hex digits each.
    #[error("the S-CSCF's ck/ik are not 32 hex digits each")]
    BadUpstreamKeys,
    /// The S-CSCF's WWW-Authenticate does not parse.
    #[error("the S-CSCF's WWW-Authenticate is malformed: {0}")]
    BadUpstreamChallenge(akav1::digest::DigestError),
    /// The S-CSCF's 401 carries no keys while IPsec is required.
    #[error("the S-CSCF's 401 carries no ck/ik: cannot set up IPsec")]
    NoUpstreamKeys,
    /// No final response from the S-CSCF in time (408, RFC 3261 §16.7 step 6 / §16.9).
    #[error("no answer from the S-CSCF")]
    UpstreamTimeout,
    /// The S-CSCF cannot be reached (503, RFC 3261 §16.9).
    #[error("S-CSCF unreachable")]
    UpstreamUnreachable,
    /// Too many unprotected REGISTERs for this IMPI (503 with Retry-After).
    #[error("too many unprotected REGISTERs for this identity; retry after {0} s")]
    RateLimited(u32),
    /// The P-CSCF is shedding new work (503 with Retry-After).
    #[error("overloaded")]
    Overloaded,
}

/// Why input was dropped without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Unparsable, without what transactions need, or unanswerable: as every core.
    #[error(transparent)]
    Sip(#[from] Dropped),
    /// It arrived on a protected port from an address/port that owns no SA there.
    #[error("protected port, but no SA from this address/port")]
    NoSa,
    /// A response without what transactions need.
    #[error("response without what transactions need: {0}")]
    BadResponse(transaction::TxError),
    /// A response from anywhere but the node its request went to (the S-CSCF for a
    /// REGISTER).
    #[error("response not from the node its request went to")]
    NotFromUpstream,
    /// An ACK from no registered UE and not from the S-CSCF.
    #[error("ACK from a stranger")]
    Stranger,
}

/// Counters the shell exports as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// 401s sent.
    pub challenges: u64,
    /// Successful registrations (incl. re-registrations).
    pub registrations: u64,
    /// Deregistrations (user, timeout).
    pub deregistrations: u64,
    /// 403/494/4xx answers to REGISTER.
    pub rejections: u64,
    /// Packets dropped: unparsable, or on a protected port without a matching SA.
    pub dropped: u64,
    /// Resynchronisations (REGISTERs with `auts`) passed to the S-CSCF.
    pub resyncs: u64,
    /// SA promotions, retirements and deletions the shell reported failed.
    pub sa_failures: u64,
    /// Requests other than REGISTER refused (403 to strangers, 480, 483…), and
    /// unparsable datagram requests answered 400/505/513 from their raw bytes.
    pub refused: u64,
}

struct SaRecord {
    set: SaSet,
    impi: String,
    /// The Security-Server we sent for this set: what Security-Verify must repeat.
    server: Vec<SecurityMechanism>,
    // Held for their lifetime: dropping a lease returns the SPI/port to the pool.
    _leases: Vec<Lease>,
}

/// A 401 that went down with a temporary SA set, waiting for the protected answer.
struct PendingChallenge {
    id: u64,
    sa: SetId,
}

#[derive(Debug, Clone)]
struct Binding {
    contact: String,
    expires_at: Instant,
}

/// Our view of a registration, from the S-CSCF's 200 OK.
struct Registration {
    impi: String,
    associated: Vec<String>,
    service_route: Vec<String>,
    bindings: Vec<Binding>,
    sa: Option<SetId>,
    /// Where its REGISTER came from (an unprotected UE's requests must come from there).
    source: SocketAddr,
    expires_at: Instant,
    generation: u64,
}

/// The REGISTER being handled, with what the answer needs.
struct Ctx {
    tx: TxId,
    req: Message,
    flow: Flow,
    impi: String,
    impu: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimerKind {
    Challenge {
        impi: String,
        id: u64,
    },
    Expiry {
        impu: String,
        generation: u64,
    },
    /// The network deregistered it; the grace for the UE's own NOTIFY is over.
    Deactivated {
        impu: String,
        generation: u64,
    },
    DeleteSa {
        id: SetId,
    },
}

/// The methods this P-CSCF implements (`Allow`).
const ALLOW: &str =
    "REGISTER, INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, INFO, MESSAGE, OPTIONS, SUBSCRIBE, NOTIFY, REFER";

/// The P-CSCF core. See the module docs.
pub struct Pcscf {
    cfg: CoreConfig,
    upstream: Upstream,
    tx: Transactions,
    out: VecDeque<Output>,
    next_token: u64,
    /// 401s from the S-CSCF waiting for their SA set, by security token.
    preparing: HashMap<u64, register::PendingPrepare>,
    /// Forwarded REGISTERs by our client transaction.
    forwarded: HashMap<TxId, register::Forwarded>,
    challenges: HashMap<String, Vec<PendingChallenge>>,
    regs: HashMap<String, Registration>,
    /// Established set → the registered identity it protects.
    sa_owner: HashMap<SetId, String>,
    /// A registered contact's address → the registered identity (terminating requests).
    ue_contacts: HashMap<SocketAddr, String>,
    /// Where an unprotected registration's REGISTER came from → its identity.
    unprotected: HashMap<SocketAddr, String>,
    /// Response contexts of forwarded requests other than REGISTER.
    branches: sip::proxy::Branches,
    /// Our reg-event subscriptions, by registered identity.
    reg_subs: HashMap<String, regevent::RegSub>,
    sas: sa_table::SaTable,
    spis: Pool,
    ports: Pool,
    timers: BTreeMap<(Instant, u64), TimerKind>,
    seq: u64,
    stats: Stats,
    ids: sip::Ids,
    admission: admission::Admission,
    /// Which transport requests toward UEs take ([`Pcscf::set_tcp_to_ue`]).
    to_ue: ToUe,
}

/// The RFC 3261 §18.1.1 size rule toward UEs, and whether their SAs carry TCP.
#[derive(Debug, Clone, Copy)]
struct ToUe {
    rule: sip::SizeRule,
    through_sa: bool,
}

/// Why the core could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// SPI or port range unusable.
    #[error(transparent)]
    Pool(#[from] xfrm::PoolError),
}

impl Pcscf {
    /// A core with no registrations, in front of the S-CSCF `upstream`.
    pub fn new(cfg: CoreConfig, upstream: Upstream) -> Result<Pcscf, CoreError> {
        let spis = Pool::spis(cfg.spi_range.0..=cfg.spi_range.1)?;
        let ports = Pool::ports(cfg.port_range.0..=cfg.port_range.1)?;
        Ok(Pcscf {
            tx: Transactions::new(transaction::Config::default()),
            cfg,
            upstream,
            out: VecDeque::new(),
            next_token: 0,
            preparing: HashMap::new(),
            forwarded: HashMap::new(),
            challenges: HashMap::new(),
            regs: HashMap::new(),
            sa_owner: HashMap::new(),
            ue_contacts: HashMap::new(),
            unprotected: HashMap::new(),
            branches: sip::proxy::Branches::new(sip::proxy::ProxyTimers::default()),
            reg_subs: HashMap::new(),
            sas: sa_table::SaTable::default(),
            spis,
            ports,
            timers: BTreeMap::new(),
            seq: 0,
            stats: Stats::default(),
            ids: sip::Ids::from_entropy(),
            admission: admission::Admission::new(AdmissionConfig::default()),
            // UDP only until the shell says which TCP it can carry.
            to_ue: ToUe {
                rule: sip::SizeRule::default().without_tcp(),
                through_sa: false,
            },
        })
    }

    /// Admission limits other than the defaults ([`AdmissionConfig`]).
    pub fn with_admission(mut self, cfg: AdmissionConfig) -> Pcscf {
        self.admission = admission::Admission::new(cfg);
        self
    }

    /// The shell's report on its input backlog: while `true`, requests that would start
    /// new work are answered 503 with Retry-After (see the `admission` module).
    pub fn set_overloaded(&mut self, on: bool) {
        self.admission.set_overloaded(on);
    }

    /// Lets requests toward UEs move to TCP under `rule` (RFC 3261 §18.1.1; TS 24.229
    /// §5.2.2: from our protected client port to the UE's protected server port), through
    /// their SAs only when `through_sa` (the kernel backend, or IPsec off; the userspace
    /// ESP backend has no TCP). Until this is called every request stays on UDP.
    pub fn set_tcp_to_ue(&mut self, rule: sip::SizeRule, through_sa: bool) {
        self.to_ue = ToUe { rule, through_sa };
    }

    /// Takes tags and branches from `ids` (a seeded source makes tests reproducible).
    pub fn with_ids(mut self, ids: sip::Ids) -> Pcscf {
        self.ids = ids;
        self
    }

    // ---- getters -------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The S-CSCF we forward to.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Turns the reg-event subscriptions of new registrations on or off.
    pub fn set_reg_event(&mut self, on: bool) {
        self.upstream.reg_event = on;
    }

    /// Reg-event subscriptions we hold.
    pub fn reg_event_subscriptions(&self) -> usize {
        self.reg_subs.len()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of registered public identities (explicitly registered ones).
    pub fn registration_count(&self) -> usize {
        self.regs.len()
    }

    /// Is `impu` registered, and through which SA set?
    pub fn registration(&self, impu: &str) -> Option<Option<SetId>> {
        self.regs.get(impu).map(|r| r.sa)
    }

    /// Seconds until the registration of `impu` expires.
    pub fn expires_in(&self, impu: &str, now: Instant) -> Option<Duration> {
        self.regs
            .get(impu)
            .map(|r| r.expires_at.saturating_duration_since(now))
    }

    /// SA sets the core knows (temporary, established or retiring).
    pub fn sa_count(&self) -> usize {
        self.sas.len()
    }

    /// SA sets registrations live on (established).
    pub fn established_sa_count(&self) -> usize {
        self.regs.values().filter(|r| r.sa.is_some()).count()
    }

    /// SPIs and ports currently leased.
    pub fn leases_in_use(&self) -> (usize, usize) {
        (self.spis.in_use(), self.ports.in_use())
    }

    /// REGISTERs forwarded upstream and not answered yet.
    pub fn forwarded_in_flight(&self) -> usize {
        self.forwarded.len()
    }

    /// Challenges waiting for the UE's protected answer.
    pub fn pending_challenges(&self) -> usize {
        self.challenges.values().map(Vec::len).sum()
    }

    /// Live SIP transactions.
    pub fn transaction_count(&self) -> usize {
        self.tx.len()
    }

    /// The service routes of a registered `impu`, from the S-CSCF's 200 OK.
    pub fn service_route(&self, impu: &str) -> Vec<String> {
        self.regs
            .get(impu)
            .map(|r| r.service_route.clone())
            .unwrap_or_default()
    }

    /// Contacts registered for `impu` that have not expired.
    pub fn contacts(&self, impu: &str, now: Instant) -> Vec<String> {
        self.regs
            .get(impu)
            .map(|r| {
                r.bindings
                    .iter()
                    .filter(|b| b.expires_at > now)
                    .map(|b| b.contact.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The private identity a registered `impu` registered with.
    pub fn private_identity(&self, impu: &str) -> Option<&str> {
        self.regs.get(impu).map(|r| r.impi.as_str())
    }

    /// The implicit registration set of a registered `impu`.
    pub fn associated(&self, impu: &str) -> Vec<String> {
        self.regs
            .get(impu)
            .map(|r| r.associated.clone())
            .unwrap_or_default()
    }

    // ---- outputs -------------------------------------------------------------------

    /// Next output for the shell.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(h) = self.tx.poll_handoff() {
            return Some(Output::Handoff(h));
        }
        if let Some(t) = self.tx.poll_transmit() {
            return Some(Output::Transmit(t));
        }
        self.out.pop_front()
    }

    /// When [`Pcscf::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ours = self.timers.keys().next().map(|(t, _)| *t);
        let ours = transaction::earliest(ours, self.branches.poll_timeout());
        transaction::earliest(ours, self.tx.poll_timeout())
    }

    // ---- inputs --------------------------------------------------------------------

    /// Feed one received datagram or framed stream message.
    pub fn handle_inbound(&mut self, flow: Flow, data: Bytes, now: Instant) {
        let Some(via_sa) = self.admit(&flow) else {
            return;
        };
        match sip::uas::parse(&flow, data.clone(), &self.cfg.limits) {
            Ok(m) => self.on_message(m, flow, via_sa, now),
            Err(Dropped::Unparsable(pe)) => {
                match sip::uas::reject_unparsable(&data, &pe, flow.protocol) {
                    Some(a) => {
                        self.stats.refused += 1;
                        self.out
                            .push_back(Output::Transmit(Transmit::new(flow, a.response)));
                        self.event(CoreEvent::Refused {
                            method: a.method,
                            code: a.code,
                            reason: Refusal::Unparsable(pe),
                        });
                    }
                    None => self.dropped(flow.remote, Dropped::Unparsable(pe).into()),
                }
            }
            Err(e) => self.dropped(flow.remote, e.into()),
        }
    }

    /// A message another core in this process handed over (`flow` is the reverse of its
    /// [`Handoff::flow`]), or one a test built.
    pub fn handle_message(&mut self, msg: Message, flow: Flow, now: Instant) {
        if let Some(via_sa) = self.admit(&flow) {
            self.on_message(msg, flow, via_sa, now);
        }
    }

    /// The shell's report on a [`SecurityOp::Prepare`].
    pub fn handle_security_ready(
        &mut self,
        token: u64,
        result: Result<SetId, secagree::SipIoError>,
        now: Instant,
    ) {
        if let Some(p) = self.preparing.remove(&token) {
            self.challenge_ready(p, result, now);
        }
    }

    /// The shell's report on a [`SecurityOp::Promote`], [`SecurityOp::Retire`] or
    /// [`SecurityOp::Delete`] of set `id`.
    ///
    /// A failed promotion means the registration that set was made for cannot be
    /// protected: a P-CSCF that asserts identity from the SA (TS 33.203 §7.4, TS 24.229
    /// §5.2.3) must not keep it on an unprotected footing, so the registrations bound to
    /// the set end here and the set is deleted; the UE finds its SAs gone and registers
    /// again. A failed retirement changes nothing: the set is no registration's any more and
    /// its deletion after the grace period stays scheduled. A failed deletion leaves the set
    /// gone from our accounts (the backend forgets it too, so there is nothing to retry);
    /// it is reported as a leak for the operator.
    pub fn handle_security_result(
        &mut self,
        id: SetId,
        step: SaStep,
        result: Result<(), secagree::SipIoError>,
        now: Instant,
    ) {
        let Err(e) = result else { return };
        self.stats.sa_failures += 1;
        let impi = self.sas.get(&id).map(|r| r.impi.clone());
        if step == SaStep::Promote {
            let bound: Vec<String> = self
                .regs
                .iter()
                .filter(|(_, r)| r.sa == Some(id))
                .map(|(impu, _)| impu.clone())
                .collect();
            for impu in bound {
                // Unbound first: the set is deleted below, not retired.
                if let Some(r) = self.regs.get_mut(&impu) {
                    r.sa = None;
                }
                self.end_registration(&impu, "sa-failure", now);
            }
            // A set still waiting as a challenge's (a promotion reported very late) goes
            // with its challenge.
            if let Some(impi) = &impi {
                self.take_challenge(impi, |c| c.sa == id);
            }
            self.delete_sa(id);
        }
        self.event(CoreEvent::SaFailed {
            id,
            step,
            impi,
            error: e.to_string(),
        });
    }

    /// Fire due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.branch_timers(now);
        while let Some((&(at, seq), _)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            let Some(kind) = self.timers.remove(&(at, seq)) else {
                break;
            };
            match kind {
                TimerKind::Challenge { impi, id } => {
                    if let Some(sa) = self.take_challenge(&impi, |c| c.id == id) {
                        self.delete_sa(sa);
                    }
                }
                TimerKind::Expiry { impu, generation } => {
                    let due = self
                        .regs
                        .get(&impu)
                        .is_some_and(|r| r.generation == generation);
                    if due {
                        // The S-CSCF expires its own binding; we only drop ours.
                        self.end_registration(&impu, "timeout", now);
                    }
                }
                TimerKind::Deactivated { impu, generation } => {
                    let due = self
                        .regs
                        .get(&impu)
                        .is_some_and(|r| r.generation == generation);
                    if due {
                        self.end_registration(&impu, "network", now);
                    }
                }
                TimerKind::DeleteSa { id } => {
                    // Only if no registration took it back in the meantime.
                    if !self.regs.values().any(|r| r.sa == Some(id)) {
                        self.delete_sa(id);
                    }
                }
            }
        }
        self.drain_tx_events(now);
    }

    // ---- internals -----------------------------------------------------------------

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn set_timer(&mut self, at: Instant, kind: TimerKind) {
        let seq = self.next_seq();
        self.timers.insert((at, seq), kind);
    }

    fn event(&mut self, e: CoreEvent) {
        self.out.push_back(Output::Event(e));
    }

    fn dropped(&mut self, remote: SocketAddr, reason: DropReason) {
        self.stats.dropped += 1;
        self.event(CoreEvent::Dropped { remote, reason });
    }

    /// Which SA set, if any, the flow came through; `None` (and the input dropped) when it
    /// came to one of our protected ports from an address/port that owns no SA there.
    fn admit(&mut self, flow: &Flow) -> Option<Option<SetId>> {
        match self.classify(flow) {
            Ok(s) => Some(s),
            Err(()) => {
                self.dropped(flow.remote, DropReason::NoSa);
                None
            }
        }
    }

    /// Which SA set, if any, owns this protected local address; `Err` if `local` is one of
    /// our protected ports but `remote` owns no SA on it.
    fn classify(&self, flow: &Flow) -> Result<Option<SetId>, ()> {
        let Some(local) = flow.local else {
            return Ok(None);
        };
        match self.sas.classify(local, flow.remote) {
            Err(()) => Err(()),
            Ok(None) if self.is_protected_port(local) => Err(()),
            found => found,
        }
    }

    fn is_protected_port(&self, local: SocketAddr) -> bool {
        local.ip() == self.cfg.local_ip
            && (self.cfg.port_range.0..=self.cfg.port_range.1).contains(&local.port())
            && local.port() != self.cfg.sip_port
    }

    fn on_message(&mut self, msg: Message, flow: Flow, via_sa: Option<SetId>, now: Instant) {
        if !msg.is_request() {
            let on_protected_port = flow.local.is_some_and(|l| self.is_protected_port(l));
            if self.is_from_upstream(&flow) && via_sa.is_none() && !on_protected_port {
                return self.on_upstream_message(msg, flow, now);
            }
            return self.on_branch_response(msg, flow, via_sa, now);
        }
        match self.tx.handle_request(msg, flow, now) {
            Ok(RequestOutcome::New { id, request }) => {
                self.on_request(id, request, flow, via_sa, now)
            }
            Ok(RequestOutcome::Ack { request, .. }) => self.route_ack(request, flow, via_sa, now),
            Ok(_) => {}
            Err(e) => self.dropped(flow.remote, Dropped::NoTransaction(e).into()),
        }
        self.drain_tx_events(now);
    }

    fn respond(&mut self, tx: TxId, resp: Result<Message, sip::ParseError>, now: Instant) {
        if let Err(u) = sip::uas::respond(&mut self.tx, tx, resp, now) {
            self.dropped(u.remote, u.reason.into());
        }
    }

    fn simple(&mut self, tx: TxId, req: &Message, code: u16, now: Instant) {
        let r = sip::uas::simple(req, code, &mut self.ids);
        self.respond(tx, r, now);
    }

    fn reject(&mut self, ctx: &Ctx, code: u16, reason: Rejection, now: Instant) {
        // The reason goes to our log only: a Warning with it would tell anyone probing
        // which identities, SAs and set-ups exist.
        let r = sip::uas::simple(&ctx.req, code, &mut self.ids);
        self.refuse(ctx, r, code, reason, now);
    }

    /// 503 with `Retry-After: secs` to the REGISTER of `ctx` (RFC 3261 §21.5.4, §20.33).
    fn unavailable(&mut self, ctx: &Ctx, secs: u32, reason: Rejection, now: Instant) {
        let r = ResponseBuilder::new(&ctx.req, 503)
            .to_tag(&self.ids.tag())
            .header("Retry-After", secs.to_string())
            .build();
        self.refuse(ctx, r, 503, reason, now);
    }

    /// Sends `response`, an error of `code` to the REGISTER of `ctx`, and counts it.
    fn refuse(
        &mut self,
        ctx: &Ctx,
        response: Result<Message, sip::ParseError>,
        code: u16,
        reason: Rejection,
        now: Instant,
    ) {
        self.stats.rejections += 1;
        self.respond(ctx.tx, response, now);
        self.event(CoreEvent::Rejected {
            impi: ctx.impi.clone(),
            code,
            reason,
        });
    }

    fn on_request(
        &mut self,
        id: TxId,
        req: Message,
        flow: Flow,
        via_sa: Option<SetId>,
        now: Instant,
    ) {
        match req.method() {
            Some(Method::Register) => self.on_register(id, req, flow, via_sa, now),
            // OPTIONS to us ourselves (a keep-alive, a capability probe) is ours to answer.
            Some(Method::Options) if !req.has_header("Route") && self.names_us(&req) => {
                if let Some(r) = sip::uas::unhandled(&req, ALLOW, &mut self.ids) {
                    self.respond(id, r, now);
                }
            }
            _ => self.on_session_request(id, req, flow, via_sa, now),
        }
    }

    /// True when the Request-URI is this P-CSCF itself, not a user.
    fn names_us(&self, req: &Message) -> bool {
        req.request_uri().is_ok_and(|u| {
            u.user.is_none()
                && u.host_ip() == Some(self.cfg.local_ip)
                && u.port.is_none_or(|p| {
                    p == self.cfg.sip_port
                        || self.is_protected_port(SocketAddr::new(self.cfg.local_ip, p))
                })
        })
    }

    /// Removes the first pending challenge of `impi` that `pick` selects; its set.
    fn take_challenge(
        &mut self,
        impi: &str,
        pick: impl Fn(&PendingChallenge) -> bool,
    ) -> Option<SetId> {
        let list = self.challenges.get_mut(impi)?;
        let pos = list.iter().position(pick)?;
        let c = list.remove(pos);
        if list.is_empty() {
            self.challenges.remove(impi);
        }
        Some(c.sa)
    }

    /// Is `sa` the temporary set of one of `impi`'s pending challenges?
    fn is_challenge_set(&self, impi: &str, sa: SetId) -> bool {
        self.challenges
            .get(impi)
            .is_some_and(|l| l.iter().any(|c| c.sa == sa))
    }

    fn retire_sa(&mut self, id: SetId, now: Instant) {
        if self.sas.contains_key(&id) {
            self.out.push_back(Output::Security(SecurityOp::Retire {
                id,
                grace: self.cfg.retire_grace,
            }));
            self.set_timer(now + self.cfg.retire_grace, TimerKind::DeleteSa { id });
        }
    }

    fn delete_sa(&mut self, id: SetId) {
        self.sa_owner.remove(&id);
        if let Some(r) = self.sas.remove(&id) {
            // Dropping the record returns its SPIs and ports to the pools.
            self.out
                .push_back(Output::Security(SecurityOp::Delete { id, set: r.set }));
        }
    }

    /// Drops our view of a registration (the S-CSCF keeps its own); its set retires and
    /// is deleted after the grace period.
    fn end_registration(&mut self, impu: &str, reason: &'static str, now: Instant) {
        if let Some(reg) = self.regs.remove(impu) {
            self.unindex_registration(impu, &reg);
            self.forget_reg_event(impu);
            if let Some(sa) = reg.sa {
                self.retire_sa(sa, now);
            }
            self.stats.deregistrations += 1;
            self.event(CoreEvent::Deregistered {
                impu: impu.to_string(),
                reason,
            });
        }
    }

    /// Transaction events: a forwarded REGISTER whose client transaction timed out or
    /// failed gets its answer here (RFC 3261 §16.7 step 6 / §16.9); server transactions
    /// need nothing, every REGISTER is answered.
    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(e) = self.tx.poll_event() {
            let (id, code, why) = match e {
                transaction::Event::Timeout { id, .. } => (id, 408, Rejection::UpstreamTimeout),
                transaction::Event::TransportError { id } => {
                    (id, 503, Rejection::UpstreamUnreachable)
                }
                transaction::Event::Terminated { id } => {
                    self.branches.terminated(id);
                    continue;
                }
            };
            if self.forwarded.contains_key(&id) {
                self.upstream_failed(id, code, why, now);
            } else {
                let d = self.branches.failed(id, code);
                self.carry_out(d, now);
            }
        }
    }

    /// The shell could not send a [`Transmit`] of transaction `id` (RFC 3261 §17.1.4):
    /// the transaction ends, and a forwarded REGISTER is answered 503.
    pub fn handle_transport_error(&mut self, id: TxId, now: Instant) {
        self.tx.handle_transport_error(id, now);
        self.drain_tx_events(now);
    }
}
