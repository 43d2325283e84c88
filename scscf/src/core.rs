//! [`Scscf`]: the sans-IO S-CSCF. See the crate docs for what it does; this module is the
//! event loop's state machine.

use crate::cx::{self, assignment, CxError, CxIdentity, CxVector};
use crate::regevent::RegChange;
use crate::registrar::{self, Binding, Registration};
use akav1::digest::{Challenge as DigestChallenge, Credentials, Qop, AKAV1_MD5};
use bytes::Bytes;
use sip::transaction::{self, Handoff, RequestOutcome, Transactions, TxId};
use sip::uas::Dropped;
use sip::{Flow, Limits, Message, Method, NameAddr, ResponseBuilder, Transmit};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the core needs to know, resolved from configuration by its host.
#[derive(Debug, Clone)]
pub struct Config {
    /// Home domain: the digest realm.
    pub domain: String,
    /// Our SIP address as the P-CSCF and application servers reach it (Service-Route).
    pub address: SocketAddr,
    /// Registration expiry bounds and default, seconds.
    pub min_expires: u32,
    /// See [`Config::min_expires`].
    pub max_expires: u32,
    /// See [`Config::min_expires`].
    pub default_expires: u32,
    /// How long a challenge waits for its answer.
    pub auth_timeout: Duration,
    /// Challenges kept pending per IMPI; the oldest goes when a new one would exceed it.
    pub max_challenges_per_impi: usize,
    /// Cx identity (Server-Name is our SIP URI).
    pub cx: CxIdentity,
    /// SIP parse limits.
    pub limits: Limits,
    /// Who may send us requests other than REGISTER, and which peers live in this
    /// process.
    pub routing: Routing,
}

impl Config {
    /// An S-CSCF for `domain` at `address` with the defaults `scscf config example`
    /// documents: expiry 60 / 3600 / 600 s, a challenge waits 30 s, three pending per
    /// IMPI, Cx identity `scscf.<domain>` in realm `domain` with our SIP URI as
    /// Server-Name, default SIP limits, nobody trusted from the network. Hosts and tests
    /// change what they need with struct update syntax.
    pub fn new(domain: &str, address: SocketAddr) -> Config {
        Config {
            domain: domain.to_string(),
            address,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            auth_timeout: Duration::from_secs(30),
            max_challenges_per_impi: crate::config::MAX_CHALLENGES_PER_IMPI,
            cx: CxIdentity {
                origin_host: format!("scscf.{domain}"),
                origin_realm: domain.to_string(),
                destination_realm: domain.to_string(),
                server_name: crate::cx::server_name(address),
            },
            limits: Limits::default(),
            routing: Routing::default(),
        }
    }
}

/// Trust and reach for session routing (TS 24.229 §5.4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// Network addresses whose requests other than REGISTER we accept: the P-CSCFs in
    /// front of us (proxy mode) and, later, application servers. Cores in this process
    /// are always trusted. Empty: nobody from the network.
    pub trusted: Vec<std::net::IpAddr>,
    /// Addresses of SIP cores in this process (the collapsed P-CSCF): a route to one of
    /// them is a [`sip::Protocol::InProcess`] hand-over, not a packet.
    pub local_peers: Vec<SocketAddr>,
}

/// Something the host must do.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes.
    Transmit(Transmit),
    /// Hand this message to the core in the same process that `flow.remote` names.
    Handoff(Handoff),
    /// Send a Cx request; answer with [`Scscf::handle_cx_answer`] and the same token.
    Cx {
        /// Correlation token.
        token: u64,
        /// The request.
        request: diameter::Message,
    },
    /// Something worth logging or counting.
    Event(Event),
}

/// Notable things that happened, for logs, metrics and ladders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A 401 went out.
    Challenged {
        /// Private identity.
        impi: String,
    },
    /// A registration (or re-registration) succeeded.
    Registered {
        /// Public identity registered.
        impu: String,
        /// Its private identity.
        impi: String,
        /// Granted seconds.
        expires: u32,
    },
    /// A registration ended.
    Deregistered {
        /// Public identity.
        impu: String,
        /// Why.
        reason: DeregReason,
    },
    /// A REGISTER was refused.
    Rejected {
        /// Private identity (or what we know of it).
        impi: String,
        /// Status code sent.
        code: u16,
        /// Why, for the log (never sent to the UE: it would tell an attacker which
        /// identities exist).
        reason: Rejection,
    },
    /// Input dropped without an answer.
    Dropped {
        /// From where.
        remote: SocketAddr,
        /// Why.
        reason: Drop,
    },
}

/// Why a registration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeregReason {
    /// The UE sent `Expires: 0`.
    User,
    /// It was not refreshed in time.
    Timeout,
    /// The HSS ended it (Cx RTR, TS 29.228 §6.2.1).
    Network,
    /// A third-party REGISTER failed with DefaultHandling SESSION_TERMINATED
    /// (TS 24.229 §5.4.1.7): ended by us, the HSS is told (ADMINISTRATIVE_DEREGISTRATION).
    ApplicationServer,
}

/// Why a REGISTER was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header we need is missing or unparsable.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The digest response does not match XRES.
    #[error("authentication failed: wrong response")]
    WrongResponse,
    /// The digest `uri` is not the Request-URI (RFC 2617 §3.2.2.5).
    #[error("digest uri differs from the Request-URI")]
    UriMismatch,
    /// The answer names another public identity than the one challenged.
    #[error("public identity differs from the challenged one")]
    OtherIdentity,
    /// The identity is barred (TS 29.228 §6.1.4).
    #[error("public identity is barred")]
    Barred,
    /// The HSS refused or failed.
    #[error("HSS: {0}")]
    Cx(#[from] CxError),
    /// The HSS could not be asked.
    #[error("HSS unreachable: {0}")]
    HssUnreachable(#[from] diameter::RequestError),
    /// The resynchronisation data was unusable.
    #[error("bad resynchronisation data: {0}")]
    Resync(#[from] akav1::nonce::NonceError),
    /// Expiry below our minimum.
    #[error("expiry below the minimum")]
    TooBrief,
}

/// Why input was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Drop {
    /// Unparsable, without what transactions need, or unanswerable: as every core.
    #[error(transparent)]
    Sip(#[from] sip::uas::Dropped),
    /// A response to nothing we sent.
    #[error("stray response")]
    StrayResponse,
    /// A response to one of our branches from another node than the branch went to.
    #[error("response from a node the request did not go to")]
    WrongSource,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// 401s sent.
    pub challenges: u64,
    /// Successful registrations (incl. re-registrations).
    pub registrations: u64,
    /// Deregistrations (user, timeout).
    pub deregistrations: u64,
    /// Refused REGISTERs.
    pub rejections: u64,
    /// Resynchronisations asked of the HSS.
    pub resyncs: u64,
    /// Input dropped.
    pub dropped: u64,
    /// Requests other than REGISTER refused (403/404/480/483…).
    pub refused: u64,
    /// Reg-event NOTIFYs sent.
    pub notifies: u64,
    /// Requests sent to an application server on an iFC match.
    pub as_forwards: u64,
    /// Application servers that failed or stayed silent (DefaultHandling applied).
    pub as_failures: u64,
    /// Third-party REGISTERs sent (TS 24.229 §5.4.1.7).
    pub third_party_registers: u64,
}

struct Challenge {
    id: u64,
    impu: String,
    nonce: String,
    xres: Vec<u8>,
}

/// The REGISTER being handled, with what its answer needs.
pub(crate) struct Ctx {
    tx: TxId,
    req: Message,
    impi: String,
    impu: String,
}

pub(crate) enum Pending {
    Mar {
        ctx: Ctx,
        resync: bool,
    },
    Lir {
        tx: TxId,
        req: Message,
        fwd: Message,
        callee: String,
    },
    SarUnregistered {
        tx: TxId,
        req: Message,
        fwd: Message,
        case: ifc::SessionCase,
        identity: String,
    },
    SarRegister {
        ctx: Ctx,
        expires: u32,
    },
    SarDeregister {
        ctx: Option<Ctx>,
        impu: String,
        /// The ended registration's set and profile, for the third-party REGISTERs that
        /// wait for our 200 (IncludeRegisterResponse).
        ended: Option<(Vec<String>, Option<ifc::ImsSubscription>)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    Challenge {
        impi: String,
        id: u64,
    },
    Expiry {
        impu: String,
        generation: u64,
    },
    /// An application server's time to show it is alive ([`crate::isc`]).
    AsHop {
        client: TxId,
    },
    /// An ISC marker's lifetime.
    IscMark {
        token: String,
    },
    /// A reg-event subscription's expiry ([`crate::regevent`]).
    Subscription {
        key: String,
        generation: u64,
    },
}

/// The methods this S-CSCF implements (`Allow`).
const ALLOW: &str = "REGISTER, INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, INFO, MESSAGE, OPTIONS, SUBSCRIBE, NOTIFY, REFER";

/// The S-CSCF core. See the crate docs.
pub struct Scscf {
    pub(crate) cfg: Config,
    pub(crate) tx: Transactions,
    pub(crate) out: VecDeque<Output>,
    next_token: u64,
    pub(crate) pending: HashMap<u64, Pending>,
    challenges: HashMap<String, Vec<Challenge>>,
    pub(crate) regs: HashMap<String, Registration>,
    /// Every identity of every implicit registration set (canonical form) → the
    /// registered identity whose registration holds it (terminating lookup).
    pub(crate) aliases: HashMap<String, String>,
    /// Response contexts of forwarded requests.
    pub(crate) branches: sip::proxy::Branches,
    /// Reg-event subscriptions by dialog ([`crate::regevent`]).
    pub(crate) reg_subs: HashMap<String, crate::regevent::Subscription>,
    timers: BTreeMap<(Instant, u64), Timer>,
    seq: u64,
    pub(crate) stats: Stats,
    pub(crate) ids: sip::Ids,
    pub(crate) isc: crate::isc::Isc,
    /// ISC markers by token ([`crate::isc`]).
    pub(crate) isc_marks: HashMap<String, crate::isc::Mark>,
    /// Requests at an AS that has not yet shown it is alive, by client transaction.
    pub(crate) as_hops: HashMap<TxId, crate::isc::AsHop>,
    /// Third-party REGISTERs by client transaction ([`crate::thirdparty`]).
    pub(crate) third_party: HashMap<TxId, crate::thirdparty::Pending3p>,
}

impl Scscf {
    /// A core with no registrations.
    pub fn new(cfg: Config) -> Scscf {
        Scscf {
            cfg,
            tx: Transactions::new(transaction::Config::default()),
            out: VecDeque::new(),
            next_token: 0,
            pending: HashMap::new(),
            challenges: HashMap::new(),
            regs: HashMap::new(),
            aliases: HashMap::new(),
            branches: sip::proxy::Branches::new(sip::proxy::ProxyTimers::default()),
            reg_subs: HashMap::new(),
            timers: BTreeMap::new(),
            seq: 0,
            stats: Stats::default(),
            ids: sip::Ids::from_entropy(),
            isc: crate::isc::Isc::default(),
            isc_marks: HashMap::new(),
            as_hops: HashMap::new(),
            third_party: HashMap::new(),
        }
    }

    /// Takes tags and branches from `ids` (a seeded source makes tests reproducible).
    pub fn with_ids(mut self, ids: sip::Ids) -> Scscf {
        self.ids = ids;
        self
    }

    // ---- getters -------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Our Service-Route (RFC 3608): the originating entry point for our users.
    pub fn service_route(&self) -> String {
        format!(
            "<sip:orig@{}:{};lr>",
            sip::uri::ip_host(self.cfg.address.ip()),
            self.cfg.address.port()
        )
    }

    /// Registered public identities (explicitly registered ones).
    pub fn registration_count(&self) -> usize {
        self.regs.len()
    }

    /// The registration of `impu` (registered explicitly).
    pub fn registration(&self, impu: &str) -> Option<&Registration> {
        self.regs.get(impu)
    }

    /// The subscription (service profiles, iFCs) the HSS sent for the registration of
    /// `impu`.
    pub fn subscription(&self, impu: &str) -> Option<&ifc::ImsSubscription> {
        self.regs.get(impu).and_then(|r| r.subscription.as_ref())
    }

    /// Challenges waiting for an answer.
    pub fn pending_challenges(&self) -> usize {
        self.challenges.values().map(Vec::len).sum()
    }

    /// Live SIP transactions.
    pub fn transaction_count(&self) -> usize {
        self.tx.len()
    }

    /// Cx requests waiting for an answer.
    pub fn cx_in_flight(&self) -> usize {
        self.pending.len()
    }

    // ---- outputs -------------------------------------------------------------------

    /// Next output for the host.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(h) = self.tx.poll_handoff() {
            return Some(Output::Handoff(h));
        }
        if let Some(t) = self.tx.poll_transmit() {
            return Some(Output::Transmit(t));
        }
        self.out.pop_front()
    }

    /// When [`Scscf::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ours = self.timers.keys().next().map(|(t, _)| *t);
        let ours = transaction::earliest(ours, self.branches.poll_timeout());
        transaction::earliest(ours, self.tx.poll_timeout())
    }

    // ---- inputs --------------------------------------------------------------------

    /// Bytes received from the network on `flow`.
    pub fn handle_inbound(&mut self, flow: Flow, data: Bytes, now: Instant) {
        match sip::uas::parse(&flow, data, &self.cfg.limits) {
            Ok(m) => self.handle_message(m, flow, now),
            Err(e) => self.dropped(flow.remote, e.into()),
        }
    }

    /// A parsed message: from the network, or handed over by a core in this process
    /// (then `flow` is the reverse of the sender's [`Handoff::flow`]).
    pub fn handle_message(&mut self, msg: Message, flow: Flow, now: Instant) {
        if !msg.is_request() {
            self.on_response(msg, flow, now);
        } else {
            match self.tx.handle_request(msg, flow, now) {
                Ok(RequestOutcome::New { id, request }) => self.on_request(id, request, flow, now),
                Ok(RequestOutcome::Ack { request, .. }) => self.route_ack(request, flow, now),
                Ok(_) => {}
                Err(e) => self.dropped(flow.remote, Dropped::NoTransaction(e).into()),
            }
        }
        self.drain_tx_events(now);
    }

    /// The host could not send a [`Transmit`] of transaction `id` (RFC 3261 §17.1.4): a
    /// branch that could not go counts as its 503.
    pub fn handle_transport_error(&mut self, id: TxId, now: Instant) {
        self.tx.handle_transport_error(id, now);
        self.drain_tx_events(now);
    }

    /// The Cx answer (or why there is none) for `token`.
    pub fn handle_cx_answer(
        &mut self,
        token: u64,
        answer: Result<diameter::Message, diameter::RequestError>,
        now: Instant,
    ) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        match p {
            Pending::Mar { ctx, resync } => self.on_maa(ctx, resync, answer, now),
            Pending::Lir {
                tx,
                req,
                fwd,
                callee,
            } => self.on_lia(tx, req, fwd, callee, answer, now),
            Pending::SarUnregistered {
                tx,
                req,
                fwd,
                case,
                identity,
            } => self.on_saa_unregistered(tx, req, fwd, case, identity, answer, now),
            Pending::SarRegister { ctx, expires } => {
                self.on_saa_register(ctx, expires, answer, now)
            }
            Pending::SarDeregister { ctx, impu, ended } => {
                // The registration is gone here whatever the HSS said: the UE asked, or
                // it expired. A failed SAR only leaves a stale S-CSCF name in the HSS.
                let r = answer
                    .map_err(Rejection::from)
                    .and_then(|a| cx::parse_saa(&a).map_err(Rejection::from));
                if let Err(e) = r {
                    tracing::warn!(%impu, "deregistration SAR failed: {e}");
                }
                if let Some(ctx) = ctx {
                    let mut b = ResponseBuilder::new(&ctx.req, 200).to_tag(&self.ids.tag());
                    if let Some(c) = registrar::contacts_expired(&ctx.req) {
                        b = b.header("Contact", c);
                    }
                    let ok = b.build();
                    let answer = ok.as_ref().ok().cloned();
                    self.respond(ctx.tx, ok, now);
                    if let Some((associated, subscription)) = ended {
                        self.third_party_register(
                            crate::thirdparty::RegisterNews {
                                impu: &impu,
                                kind: ifc::RegistrationType::De,
                                expires: 0,
                                associated: &associated,
                                subscription: subscription.as_ref(),
                                request: Some(&ctx.req),
                                response: answer.as_ref(),
                            },
                            now,
                        );
                    }
                }
            }
        }
    }

    /// A request the HSS sent us (TS 29.229 §6.1.2 RTR, §6.1.6 PPR), answered at once:
    /// an RTR ends the registrations it names (each subscriber of their reg event hears
    /// `deactivated`, which is how the UE and the P-CSCF drop them and their SAs); a PPR
    /// replaces the stored subscription of the IMPI's registrations. Anything else is
    /// refused with 3001 COMMAND_UNSUPPORTED.
    pub fn handle_cx_request(
        &mut self,
        req: &diameter::Message,
        now: Instant,
    ) -> diameter::Message {
        use diameter::{avp, cmd, result, Avp, FindAvp};
        let answer = |code: u32| {
            diameter::Message::answer_for(req)
                .with(Avp::vendor_specific_auth_app(
                    diameter::VENDOR_3GPP,
                    diameter::app::CX,
                ))
                .with(Avp::enumerated(
                    avp::AUTH_SESSION_STATE,
                    diameter::dict::enums::NO_STATE_MAINTAINED,
                ))
                .with_result_code(code)
        };
        if !req.is_request() || req.app_id != diameter::app::CX {
            return diameter::Message::error_answer(req, result::COMMAND_UNSUPPORTED, None);
        }
        let Ok(impi) = req.get_utf8(avp::USER_NAME).map(str::to_string) else {
            return diameter::Message::error_answer(req, result::MISSING_AVP, Some("User-Name"));
        };
        let named: Vec<String> = req
            .find_all(avp::PUBLIC_IDENTITY)
            .filter_map(|a| std::str::from_utf8(a.as_octets()).ok())
            .map(registrar::aor_key)
            .collect();
        let mine: Vec<String> = self
            .regs
            .iter()
            .filter(|(_, r)| r.impi == impi)
            .filter(|(impu, r)| {
                named.is_empty()
                    || named.contains(&registrar::aor_key(impu))
                    || r.associated
                        .iter()
                        .any(|a| named.contains(&registrar::aor_key(a)))
            })
            .map(|(impu, _)| impu.clone())
            .collect();
        match req.code {
            cmd::REGISTRATION_TERMINATION => {
                for impu in &mine {
                    self.end_registration(impu, None, DeregReason::Network, now);
                }
                answer(result::SUCCESS)
            }
            cmd::PUSH_PROFILE => {
                let profile = req
                    .find(avp::USER_DATA)
                    .and_then(|a| std::str::from_utf8(a.as_octets()).ok())
                    .and_then(|x| ifc::ImsSubscription::from_xml(x).ok());
                if let Some(p) = profile {
                    for impu in &mine {
                        if let Some(r) = self.regs.get_mut(impu) {
                            r.subscription = Some(p.clone());
                        }
                    }
                }
                answer(result::SUCCESS)
            }
            _ => diameter::Message::error_answer(req, result::COMMAND_UNSUPPORTED, None),
        }
    }

    /// Fire due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.branch_timers(now);
        self.drain_tx_events(now);
        while let Some((&(at, seq), _)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            let Some(t) = self.timers.remove(&(at, seq)) else {
                break;
            };
            match t {
                Timer::Challenge { impi, id } => {
                    if let Some(list) = self.challenges.get_mut(&impi) {
                        list.retain(|c| c.id != id);
                        if list.is_empty() {
                            self.challenges.remove(&impi);
                        }
                    }
                }
                Timer::Expiry { impu, generation } => {
                    let due = self
                        .regs
                        .get(&impu)
                        .is_some_and(|r| r.generation == generation);
                    if due {
                        self.end_registration(&impu, None, DeregReason::Timeout, now);
                    }
                }
                Timer::Subscription { key, generation } => {
                    self.subscription_timer(&key, generation, now)
                }
                Timer::AsHop { client } => self.as_hop_timer(client, now),
                Timer::IscMark { token } => self.isc_mark_timer(&token),
            }
        }
    }

    // ---- internals -----------------------------------------------------------------

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(crate) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    pub(crate) fn session_id(&mut self) -> String {
        let n = self.next_seq();
        format!("{};{}", self.cfg.cx.origin_host, n)
    }

    pub(crate) fn next_generation(&mut self) -> u64 {
        self.next_seq()
    }

    pub(crate) fn set_timer(&mut self, at: Instant, t: Timer) {
        let seq = self.next_seq();
        self.timers.insert((at, seq), t);
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    pub(crate) fn dropped(&mut self, remote: SocketAddr, reason: Drop) {
        self.stats.dropped += 1;
        self.event(Event::Dropped { remote, reason });
    }

    pub(crate) fn respond(
        &mut self,
        tx: TxId,
        resp: Result<Message, sip::ParseError>,
        now: Instant,
    ) {
        if let Err(u) = sip::uas::respond(&mut self.tx, tx, resp, now) {
            self.dropped(u.remote, u.reason.into());
        }
    }

    pub(crate) fn simple(&mut self, tx: TxId, req: &Message, code: u16, now: Instant) {
        let r = sip::uas::simple(req, code, &mut self.ids);
        self.respond(tx, r, now);
    }

    fn reject(&mut self, ctx: &Ctx, code: u16, reason: Rejection, now: Instant) {
        self.stats.rejections += 1;
        // The reason stays in our log: a Warning with the HSS's result would tell anyone
        // which IMPI/IMPU pairs exist.
        self.simple(ctx.tx, &ctx.req, code, now);
        self.event(Event::Rejected {
            impi: ctx.impi.clone(),
            code,
            reason,
        });
    }

    fn on_request(&mut self, id: TxId, req: Message, flow: Flow, now: Instant) {
        match req.method() {
            Some(Method::Register) => self.on_register(id, req, now),
            // OPTIONS to us (not routed past us) is answered here (RFC 3261 §11.2).
            Some(Method::Options) if !req.has_header("Route") && self.is_request_for_us(&req) => {
                if let Some(r) = sip::uas::unhandled(&req, ALLOW, &mut self.ids) {
                    self.respond(id, r, now);
                }
            }
            _ => self.on_session_request(id, req, flow, now),
        }
    }

    /// True when the Request-URI names this S-CSCF itself rather than a user.
    fn is_request_for_us(&self, req: &Message) -> bool {
        req.request_uri().is_ok_and(|u| {
            u.host_ip() == Some(self.cfg.address.ip())
                && u.port.unwrap_or(5060) == self.cfg.address.port()
        })
    }

    fn on_register(&mut self, tx: TxId, req: Message, now: Instant) {
        let Some(registrar::Identities { impu, impi, creds }) = registrar::identities(&req) else {
            return self.simple(tx, &req, 400, now);
        };
        let ctx = Ctx {
            tx,
            req,
            impi,
            impu,
        };
        let expires = match registrar::requested_expires(&ctx.req, self.cfg.default_expires) {
            Ok(e) => e,
            Err(_) => {
                return self.reject(&ctx, 400, Rejection::Malformed("Expires or Contact"), now)
            }
        };
        let Some(creds) = creds else {
            return self.challenge(ctx, None, now);
        };
        // A card that refused our AUTN answers with `auts` (RFC 3310 §3.4), whatever its
        // response field holds.
        if let Some(auts) = &creds.auts {
            return self.on_resync(ctx, &creds.nonce, auts.clone(), now);
        }
        // An answer to one of our challenges?
        let answering = !creds.response.is_empty()
            && self
                .challenges
                .get(&ctx.impi)
                .is_some_and(|l| l.iter().any(|c| c.nonce == creds.nonce));
        if answering {
            return self.on_challenge_response(ctx, creds, expires, now);
        }
        // A deregistration the P-CSCF received through the UE's own SA needs no new
        // authentication (TS 24.229 §5.4.1.4).
        let protected = creds.integrity_protected.as_deref() == Some("yes");
        if expires == 0 && protected && self.regs.get(&ctx.impu).is_some_and(|r| r.impi == ctx.impi)
        {
            return self.end_registration(&ctx.impu.clone(), Some(ctx), DeregReason::User, now);
        }
        // Anything else, including the deregistration of an unprotected registration, is
        // authenticated afresh.
        self.challenge(ctx, None, now);
    }

    fn challenge(&mut self, ctx: Ctx, resync: Option<Vec<u8>>, _now: Instant) {
        let session = self.session_id();
        let request = cx::mar(
            &self.cfg.cx,
            &session,
            &ctx.impi,
            &ctx.impu,
            resync.as_deref(),
        );
        let token = self.token();
        self.out.push_back(Output::Cx { token, request });
        let resync = resync.is_some();
        self.pending.insert(token, Pending::Mar { ctx, resync });
    }

    fn on_resync(&mut self, ctx: Ctx, nonce: &str, auts: String, now: Instant) {
        let nonce = match akav1::nonce::decode(nonce) {
            Ok(n) => n,
            Err(e) => return self.reject(&ctx, 403, Rejection::Resync(e), now),
        };
        let auts = match akav1::nonce::decode_auts(&auts) {
            Ok(a) => a,
            Err(e) => return self.reject(&ctx, 403, Rejection::Resync(e), now),
        };
        // The pending challenge stays until the HSS has checked AUTS (a forged `auts`
        // must not cancel the real UE's challenge); it times out on its own.
        let mut data = nonce.rand.to_vec();
        data.extend_from_slice(&auts);
        self.stats.resyncs += 1;
        self.challenge(ctx, Some(data), now);
    }

    fn on_maa(
        &mut self,
        ctx: Ctx,
        resync: bool,
        answer: Result<diameter::Message, diameter::RequestError>,
        now: Instant,
    ) {
        let vector = match answer {
            Err(e) => return self.reject(&ctx, 504, e.into(), now),
            Ok(a) => match cx::parse_maa(&a) {
                Ok(v) => v,
                // A refused resynchronisation is the card's problem, like a wrong user.
                Err(e) if e.is_user_error() || resync => {
                    return self.reject(&ctx, 403, e.into(), now)
                }
                Err(e) => return self.reject(&ctx, 500, e.into(), now),
            },
        };
        self.send_challenge(ctx, vector, now);
    }

    fn send_challenge(&mut self, ctx: Ctx, vector: CxVector, now: Instant) {
        let nonce = akav1::nonce::encode(&vector.rand, &vector.autn, &[]);
        let challenge = DigestChallenge {
            realm: self.cfg.domain.clone(),
            nonce: nonce.clone(),
            algorithm: Some(AKAV1_MD5.into()),
            qop: vec![Qop::Auth],
            // For the P-CSCF's SAs only; it strips them (TS 24.229 §5.4.1.2.1).
            ck: Some(hex(&vector.ck)),
            ik: Some(hex(&vector.ik)),
            ..Default::default()
        };
        let r = ResponseBuilder::new(&ctx.req, 401)
            .to_tag(&self.ids.tag())
            .header("WWW-Authenticate", challenge.to_header())
            .build();
        let id = self.next_seq();
        let list = self.challenges.entry(ctx.impi.clone()).or_default();
        if list.len() >= self.cfg.max_challenges_per_impi.max(1) {
            list.remove(0);
        }
        list.push(Challenge {
            id,
            impu: ctx.impu.clone(),
            nonce,
            xres: vector.xres,
        });
        self.set_timer(
            now + self.cfg.auth_timeout,
            Timer::Challenge {
                impi: ctx.impi.clone(),
                id,
            },
        );
        self.stats.challenges += 1;
        self.respond(ctx.tx, r, now);
        self.event(Event::Challenged { impi: ctx.impi });
    }

    fn on_challenge_response(&mut self, ctx: Ctx, creds: Credentials, expires: u32, now: Instant) {
        let Some(list) = self.challenges.get_mut(&ctx.impi) else {
            return self.challenge(ctx, None, now);
        };
        let Some(pos) = list.iter().position(|c| c.nonce == creds.nonce) else {
            return self.challenge(ctx, None, now);
        };
        // A digest made for another Request-URI is somebody else's answer replayed
        // (RFC 2617 §3.2.2.5: 400); like a wrong answer, it leaves the challenge alone.
        let first_hop = ctx
            .req
            .header_values("Path")
            .last()
            .and_then(|p| NameAddr::parse(p).ok())
            .map(|n| n.uri);
        let request_uri = ctx.req.uri_str().unwrap_or_default();
        if !digest_uri_matches(&creds.uri, request_uri, first_hop.as_ref()) {
            return self.reject(&ctx, 400, Rejection::UriMismatch, now);
        }
        // Only the right answer consumes the challenge: a wrong one from a stranger must
        // not take it away from the UE that will answer it correctly.
        if !creds.verify(&list[pos].xres, "REGISTER", ctx.req.body()) {
            return self.reject(&ctx, 403, Rejection::WrongResponse, now);
        }
        let ch = list.remove(pos);
        if list.is_empty() {
            self.challenges.remove(&ctx.impi);
        }
        if ch.impu != ctx.impu {
            return self.reject(&ctx, 403, Rejection::OtherIdentity, now);
        }
        if expires == 0 {
            return self.end_registration(&ctx.impu.clone(), Some(ctx), DeregReason::User, now);
        }
        if expires < self.cfg.min_expires {
            self.stats.rejections += 1;
            let r = ResponseBuilder::new(&ctx.req, 423)
                .to_tag(&self.ids.tag())
                .header("Min-Expires", self.cfg.min_expires)
                .build();
            self.respond(ctx.tx, r, now);
            return self.event(Event::Rejected {
                impi: ctx.impi,
                code: 423,
                reason: Rejection::TooBrief,
            });
        }
        let kind = if self.regs.contains_key(&ctx.impu) {
            assignment::RE_REGISTRATION
        } else {
            assignment::REGISTRATION
        };
        let session = self.session_id();
        let request = cx::sar(&self.cfg.cx, &session, &ctx.impi, &ctx.impu, kind);
        let token = self.token();
        self.out.push_back(Output::Cx { token, request });
        let expires = expires.min(self.cfg.max_expires);
        self.pending
            .insert(token, Pending::SarRegister { ctx, expires });
    }

    fn on_saa_register(
        &mut self,
        ctx: Ctx,
        expires: u32,
        answer: Result<diameter::Message, diameter::RequestError>,
        now: Instant,
    ) {
        let user_data = match answer
            .map_err(Rejection::from)
            .and_then(|a| cx::parse_saa(&a).map_err(Rejection::from))
        {
            Ok(u) => u,
            Err(e) => return self.reject(&ctx, 500, e, now),
        };
        let subscription = user_data.and_then(|xml| match ifc::ImsSubscription::from_xml(&xml) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(impu = %ctx.impu, "User-Data not understood: {e}");
                None
            }
        });
        if subscription
            .as_ref()
            .is_some_and(|s| registrar::is_barred(&ctx.impu, s))
        {
            return self.reject(&ctx, 403, Rejection::Barred, now);
        }
        let associated = registrar::implicit_set(&ctx.impu, subscription.as_ref());
        let generation = self.next_seq();
        let expires_at = now + Duration::from_secs(u64::from(expires));
        let path: Vec<String> = ctx.req.header_values("Path").map(str::to_string).collect();
        // This REGISTER's contacts replace earlier bindings of the same contact; other
        // contacts of the identity stay until they expire (RFC 3261 §10.3 step 8).
        let mut bindings: Vec<Binding> = self
            .regs
            .get(&ctx.impu)
            .map(|r| r.bindings.clone())
            .unwrap_or_default();
        bindings.retain(|b| b.expires_at > now);
        for c in registrar::contacts(&ctx.req) {
            let contact = c.to_string();
            bindings.retain(|b| uri_of(&b.contact) != uri_of(&contact));
            bindings.push(Binding {
                contact,
                path: path.clone(),
                expires_at,
            });
        }
        let reg_expires = bindings
            .iter()
            .map(|b| b.expires_at)
            .max()
            .unwrap_or(expires_at);
        let mut b = ResponseBuilder::new(&ctx.req, 200).to_tag(&self.ids.tag());
        for bd in &bindings {
            let left = bd.expires_at.saturating_duration_since(now).as_secs();
            b = b.header("Contact", format!("{};expires={left}", bd.contact));
        }
        let assoc: Vec<String> = associated.iter().map(|a| format!("<{a}>")).collect();
        b = b
            .header("P-Associated-URI", assoc.join(", "))
            .header("Service-Route", self.service_route())
            .header("Expires", expires);
        for p in &path {
            b = b.header("Path", p);
        }
        if !path.is_empty() {
            b = b.header("Supported", "path");
        }
        let kind = if self.regs.contains_key(&ctx.impu) {
            ifc::RegistrationType::Re
        } else {
            ifc::RegistrationType::Initial
        };
        self.index_identities(&ctx.impu, &associated);
        self.regs.insert(
            ctx.impu.clone(),
            Registration {
                impi: ctx.impi.clone(),
                impu: ctx.impu.clone(),
                associated,
                subscription,
                bindings,
                expires_at: reg_expires,
                generation,
            },
        );
        self.set_timer(
            reg_expires,
            Timer::Expiry {
                impu: ctx.impu.clone(),
                generation,
            },
        );
        self.stats.registrations += 1;
        let ok = b.build();
        let answer = ok.as_ref().ok().cloned();
        self.respond(ctx.tx, ok, now);
        if let Some(reg) = self.regs.get(&ctx.impu).cloned() {
            self.registration_changed(&ctx.impu, Some(&reg), RegChange::Registered, now);
            self.third_party_register(
                crate::thirdparty::RegisterNews {
                    impu: &ctx.impu,
                    kind,
                    expires,
                    associated: &reg.associated,
                    subscription: reg.subscription.as_ref(),
                    request: Some(&ctx.req),
                    response: answer.as_ref(),
                },
                now,
            );
        }
        self.event(Event::Registered {
            impu: ctx.impu,
            impi: ctx.impi,
            expires,
        });
    }

    /// Points every identity of `set` (the implicit registration set of `impu`, TS 23.228
    /// §4.3.3.4) at `impu`'s registration, after forgetting the set it had before.
    fn index_identities(&mut self, impu: &str, set: &[String]) {
        if let Some(old) = self.regs.get(impu).map(|r| r.associated.clone()) {
            self.unindex_identities(impu, &old);
        }
        self.aliases
            .insert(registrar::aor_key(impu), impu.to_string());
        for a in set {
            self.aliases.insert(registrar::aor_key(a), impu.to_string());
        }
    }

    /// Forgets the identities of `impu`'s set that still point at it.
    fn unindex_identities(&mut self, impu: &str, set: &[String]) {
        for a in set.iter().map(String::as_str).chain([impu]) {
            let k = registrar::aor_key(a);
            if self.aliases.get(&k).map(String::as_str) == Some(impu) {
                self.aliases.remove(&k);
            }
        }
    }

    /// Ends the registration of `impu` (if any) and tells the HSS; `ctx` is the REGISTER
    /// to answer once it has.
    pub(crate) fn end_registration(
        &mut self,
        impu: &str,
        ctx: Option<Ctx>,
        reason: DeregReason,
        now: Instant,
    ) {
        let mut ended = None;
        let impi = match (self.regs.remove(impu), &ctx) {
            (Some(reg), _) => {
                let change = match reason {
                    DeregReason::User => RegChange::Unregistered,
                    DeregReason::Timeout => RegChange::Expired,
                    DeregReason::Network | DeregReason::ApplicationServer => RegChange::Deactivated,
                };
                self.registration_changed(impu, Some(&reg), change, now);
                if ctx.is_some() && reason != DeregReason::Network {
                    // The UE's deregistration: the ASs hear of it with our 200, once
                    // the HSS has answered.
                    ended = Some((reg.associated.clone(), reg.subscription.clone()));
                } else {
                    self.third_party_register(
                        crate::thirdparty::RegisterNews {
                            impu,
                            kind: ifc::RegistrationType::De,
                            expires: 0,
                            associated: &reg.associated,
                            subscription: reg.subscription.as_ref(),
                            request: ctx.as_ref().map(|c| &c.req),
                            response: None,
                        },
                        now,
                    );
                }
                self.unindex_identities(impu, &reg.associated);
                self.stats.deregistrations += 1;
                self.event(Event::Deregistered {
                    impu: impu.to_string(),
                    reason,
                });
                reg.impi
            }
            (None, Some(c)) => c.impi.clone(),
            (None, None) => return,
        };
        let kind = match reason {
            DeregReason::Timeout => assignment::TIMEOUT_DEREGISTRATION,
            DeregReason::User => assignment::USER_DEREGISTRATION,
            DeregReason::ApplicationServer => assignment::ADMINISTRATIVE_DEREGISTRATION,
            // The HSS knows already: it asked (TS 29.228 §6.2.1, no SAR follows an RTR).
            DeregReason::Network => {
                if let Some(c) = ctx {
                    self.simple(c.tx, &c.req, 200, now);
                }
                return;
            }
        };
        let session = self.session_id();
        let request = cx::sar(&self.cfg.cx, &session, &impi, impu, kind);
        let token = self.token();
        self.out.push_back(Output::Cx { token, request });
        self.pending.insert(
            token,
            Pending::SarDeregister {
                ctx,
                impu: impu.to_string(),
                ended,
            },
        );
    }
}

/// RFC 2617 §3.2.2.5: the digest-uri names the Request-URI. Compared as URIs (case of
/// scheme and host, a default port written out) when both parse, else as text. One
/// exception, for SIPp 3.6.1, which writes the address it sent the REGISTER to: a URI of
/// the P-CSCF the request came through (the host and port of its Path entry, RFC 3327)
/// names that same request.
fn digest_uri_matches(digest_uri: &str, request_uri: &str, first_hop: Option<&sip::Uri>) -> bool {
    if digest_uri.trim() == request_uri.trim() {
        return true;
    }
    let Ok(d) = sip::Uri::parse(digest_uri) else {
        return false;
    };
    let same_place = |a: &sip::Uri, b: &sip::Uri| {
        a.scheme == b.scheme
            && a.host.eq_ignore_ascii_case(&b.host)
            && a.port.unwrap_or(5060) == b.port.unwrap_or(5060)
    };
    let names_request =
        sip::Uri::parse(request_uri).is_ok_and(|r| same_place(&d, &r) && d.user == r.user);
    names_request || first_hop.is_some_and(|p| d.user.is_none() && same_place(&d, p))
}

/// The URI part of a Contact value, for comparing bindings (RFC 3261 §10.3 step 7).
fn uri_of(contact: &str) -> String {
    NameAddr::parse(contact)
        .map(|n| n.uri.to_string())
        .unwrap_or_else(|_| contact.to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
