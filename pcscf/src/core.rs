//! The sans-IO P-CSCF with the collapsed S-CSCF role: registration with sec-agree,
//! AKAv1-MD5 over Cx and IPsec (TS 24.229 §5.2.2 and §5.4.1, TS 33.203 §6–7).
//!
//! Shape of quinn-proto's `Connection`: the shell feeds what arrives
//! ([`Pcscf::handle_inbound`], [`Pcscf::handle_cx_answer`],
//! [`Pcscf::handle_security_ready`], [`Pcscf::handle_timeout`]) with the current time, and
//! drains [`Pcscf::poll_output`] and [`Pcscf::poll_timeout`]. Nothing here does I/O, so the
//! whole registration flow is driven message by message in tests.
//!
//! Three rules carried from the specifications and from where Kamailio users get hurt:
//! - Security-Verify must repeat our Security-Server exactly, or the REGISTER is refused
//!   (TS 33.203 §7.2 bid-down protection);
//! - a request that arrives on a protected port is attributed to the registration that owns
//!   the SA it came through, never to what its headers claim, and a packet on a protected
//!   port from an address/port that owns no SA there is dropped;
//! - retired SAs (re-authentication, deregistration) live on for a grace period so the final
//!   responses still go out protected.

use crate::config::IpsecPolicy;
use crate::cx::{self, assignment, CxIdentity, CxVector};
use akav1::digest::{Challenge as DigestChallenge, Credentials, Qop, AKAV1_MD5};
use bytes::Bytes;
use secagree::{AlgPrefs, Choice};
use sip::headers::{contact_expires, parse_delta_seconds, Contacts};
use sip::ims::{format_security_list, SecurityMechanism};
use sip::transaction::{self, RequestOutcome, Transactions, TxId};
use sip::{Flow, Framing, Limits, Message, Method, NameAddr, Protocol, ResponseBuilder, Transmit};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use xfrm::{Lease, Pool, SaSet, SetId};

mod proxy;
pub use proxy::Upstream;

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
    /// Registration expiry bounds and default, seconds.
    pub min_expires: u32,
    /// See [`CoreConfig::min_expires`].
    pub max_expires: u32,
    /// See [`CoreConfig::min_expires`].
    pub default_expires: u32,
    /// Challenge / temporary SA lifetime.
    pub auth_timeout: Duration,
    /// How long retired SAs stay.
    pub retire_grace: Duration,
    /// Cx identity.
    pub cx: CxIdentity,
    /// SIP parse limits.
    pub limits: Limits,
}

/// Something the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes.
    Transmit(Transmit),
    /// Send a Cx request; answer with [`Pcscf::handle_cx_answer`] and the same token.
    Cx {
        /// Correlation token.
        token: u64,
        /// The request.
        request: diameter::Message,
    },
    /// Change IPsec state.
    Security(SecurityOp),
    /// Something worth logging or counting.
    Event(CoreEvent),
}

/// IPsec work for the shell.
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
    /// Delete the set and close its protected ports.
    Delete {
        /// Which set.
        id: SetId,
        /// Its parameters (addresses and ports to close).
        set: SaSet,
    },
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
        /// Why.
        reason: String,
    },
    /// Input dropped without answer.
    Dropped {
        /// From where.
        remote: SocketAddr,
        /// Why.
        reason: String,
    },
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
    /// Resynchronisations performed.
    pub resyncs: u64,
}

struct SaRecord {
    set: SaSet,
    impi: String,
    /// The Security-Server we sent for this set: what Security-Verify must repeat.
    server: Vec<SecurityMechanism>,
    // Held for their lifetime: dropping a lease returns the SPI/port to the pool.
    _leases: Vec<Lease>,
}

struct PendingChallenge {
    impu: String,
    nonce: String,
    rand: [u8; 16],
    xres: Vec<u8>,
    server: Vec<SecurityMechanism>,
    sa: Option<SetId>,
    expires_at: Instant,
}

#[derive(Debug, Clone)]
struct Binding {
    contact: String,
    expires_at: Instant,
}

struct Registration {
    impi: String,
    associated: Vec<String>,
    service_route: Vec<String>,
    bindings: Vec<Binding>,
    sa: Option<SetId>,
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

enum Pending {
    Mar {
        ctx: Ctx,
        choice: Option<Choice>,
        resync: bool,
    },
    Prepare {
        ctx: Ctx,
        vector: CxVector,
        server: Vec<SecurityMechanism>,
        set: SaSet,
        leases: Vec<Lease>,
    },
    SarRegister {
        ctx: Ctx,
        expires: u32,
        contacts: Vec<NameAddr>,
        new_sa: Option<SetId>,
        kind: i32,
    },
    SarDeregister {
        ctx: Option<Ctx>,
        impu: String,
        reason: &'static str,
    },
    /// Proxy mode: the S-CSCF's 401 waits for its SA set.
    ProxyPrepare(Box<proxy::PendingPrepare>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimerKind {
    Challenge { impi: String, nonce: String },
    Expiry { impu: String, generation: u64 },
    DeleteSa { id: SetId },
}

/// The P-CSCF core. See the module docs.
pub struct Pcscf {
    cfg: CoreConfig,
    tx: Transactions,
    out: VecDeque<Output>,
    next_token: u64,
    pending: HashMap<u64, Pending>,
    challenges: HashMap<String, PendingChallenge>,
    regs: HashMap<String, Registration>,
    sas: HashMap<SetId, SaRecord>,
    spis: Pool,
    ports: Pool,
    timers: BTreeMap<(Instant, u64), TimerKind>,
    timer_seq: u64,
    session_seq: u64,
    generation: u64,
    stats: Stats,
    /// Proxy mode: the external S-CSCF; `None` = collapsed.
    upstream: Option<proxy::Upstream>,
    /// Proxy mode: forwarded REGISTERs by our client transaction.
    proxied: HashMap<TxId, proxy::ProxyCtx>,
}

/// Why the core could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// SPI or port range unusable.
    #[error(transparent)]
    Pool(#[from] xfrm::PoolError),
}

impl Pcscf {
    /// A core with no registrations.
    pub fn new(cfg: CoreConfig) -> Result<Pcscf, CoreError> {
        let spis = Pool::spis(cfg.spi_range.0..=cfg.spi_range.1)?;
        let ports = Pool::ports(cfg.port_range.0..=cfg.port_range.1)?;
        Ok(Pcscf {
            tx: Transactions::new(transaction::Config::default()),
            cfg,
            out: VecDeque::new(),
            next_token: 1,
            pending: HashMap::new(),
            challenges: HashMap::new(),
            regs: HashMap::new(),
            sas: HashMap::new(),
            spis,
            ports,
            timers: BTreeMap::new(),
            timer_seq: 0,
            session_seq: 0,
            generation: 0,
            stats: Stats::default(),
            upstream: None,
            proxied: HashMap::new(),
        })
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

    /// SPIs and ports currently leased.
    pub fn leases_in_use(&self) -> (usize, usize) {
        (self.spis.in_use(), self.ports.in_use())
    }

    /// Next output for the shell.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(t) = self.tx.poll_transmit() {
            return Some(Output::Transmit(t));
        }
        // Transaction events (timeouts of server transactions) need no action here: the
        // registrar answers every REGISTER itself.
        while self.tx.poll_event().is_some() {}
        self.out.pop_front()
    }

    /// When [`Pcscf::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ours = self.timers.keys().next().map(|(t, _)| *t);
        match (ours, self.tx.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn session_id(&mut self) -> String {
        self.session_seq += 1;
        format!(
            "{};{};{}",
            self.cfg.cx.origin_host, self.generation, self.session_seq
        )
    }

    fn set_timer(&mut self, at: Instant, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), kind);
    }

    fn event(&mut self, e: CoreEvent) {
        self.out.push_back(Output::Event(e));
    }

    /// Which SA set, if any, owns this protected local address; `Err` if `local` is one of
    /// our protected ports but `remote` owns no SA on it.
    fn classify(&self, flow: &Flow) -> Result<Option<SetId>, ()> {
        let Some(local) = flow.local else {
            return Ok(None);
        };
        let mut is_protected_port = false;
        for (id, r) in &self.sas {
            let s = &r.set;
            if s.pcscf != local.ip() {
                continue;
            }
            let remote = flow.remote;
            if local.port() == s.port_ps {
                is_protected_port = true;
                if remote.ip() == s.ue && remote.port() == s.port_uc {
                    return Ok(Some(*id));
                }
            } else if local.port() == s.port_pc {
                is_protected_port = true;
                if remote.ip() == s.ue && remote.port() == s.port_us {
                    return Ok(Some(*id));
                }
            }
        }
        if is_protected_port || self.is_protected_port(local) {
            Err(())
        } else {
            Ok(None)
        }
    }

    fn is_protected_port(&self, local: SocketAddr) -> bool {
        local.ip() == self.cfg.local_ip
            && (self.cfg.port_range.0..=self.cfg.port_range.1).contains(&local.port())
            && local.port() != self.cfg.sip_port
    }

    /// Feed one received datagram or framed stream message.
    pub fn handle_inbound(&mut self, flow: Flow, data: Bytes, now: Instant) {
        let via_sa = match self.classify(&flow) {
            Ok(s) => s,
            Err(()) => {
                self.stats.dropped += 1;
                self.event(CoreEvent::Dropped {
                    remote: flow.remote,
                    reason: "protected port, but no SA from this address/port".into(),
                });
                return;
            }
        };
        let framing = match flow.protocol {
            Protocol::Udp => Framing::Datagram,
            _ => Framing::Stream,
        };
        let msg = match Message::parse_bytes(data, &self.cfg.limits, framing) {
            Ok(m) => m,
            Err(e) => {
                self.stats.dropped += 1;
                self.event(CoreEvent::Dropped {
                    remote: flow.remote,
                    reason: format!("unparsable SIP: {e}"),
                });
                return;
            }
        };
        if !msg.is_request() {
            // Only proxy mode has client transactions (toward the S-CSCF).
            if self.upstream.is_some() {
                self.on_upstream_message(msg, flow, now);
            }
            return;
        }
        match self.tx.handle_request(msg, flow, now) {
            Ok(RequestOutcome::New { id, request }) => {
                self.on_request(id, request, flow, via_sa, now)
            }
            Ok(_) => {}
            Err(e) => {
                self.stats.dropped += 1;
                self.event(CoreEvent::Dropped {
                    remote: flow.remote,
                    reason: format!("request without what transactions need: {e}"),
                });
            }
        }
    }

    fn respond(&mut self, tx: TxId, resp: Result<Message, sip::ParseError>, now: Instant) {
        match resp {
            Ok(r) => {
                // Only fails if the transaction is gone (timer H/J fired): nothing to send.
                let _ = self.tx.respond(tx, r, now);
            }
            Err(e) => self.event(CoreEvent::Dropped {
                remote: SocketAddr::from(([0, 0, 0, 0], 0)),
                reason: format!("cannot build a response: {e}"),
            }),
        }
    }

    fn simple(&mut self, tx: TxId, req: &Message, code: u16, now: Instant) {
        let r = ResponseBuilder::new(req, code)
            .to_tag(&sip::new_tag())
            .build();
        self.respond(tx, r, now);
    }

    fn reject(&mut self, ctx: &Ctx, code: u16, reason: String, now: Instant) {
        self.stats.rejections += 1;
        let r = ResponseBuilder::new(&ctx.req, code)
            .to_tag(&sip::new_tag())
            .header(
                "Warning",
                format!("399 {} \"{}\"", self.cfg.domain, reason.replace('"', "'")),
            )
            .build();
        self.respond(ctx.tx, r, now);
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
            Some(Method::Options) => {
                let r = ResponseBuilder::new(&req, 200)
                    .to_tag(&sip::new_tag())
                    .header("Allow", "REGISTER, OPTIONS")
                    .build();
                self.respond(id, r, now);
            }
            Some(Method::Ack) => {}
            _ => {
                // Calls and other sessions are a later stage of this P-CSCF: say so
                // plainly instead of pretending.
                let r = ResponseBuilder::new(&req, 501)
                    .to_tag(&sip::new_tag())
                    .header("Allow", "REGISTER, OPTIONS")
                    .build();
                self.respond(id, r, now);
            }
        }
    }

    fn on_register(
        &mut self,
        tx: TxId,
        req: Message,
        flow: Flow,
        via_sa: Option<SetId>,
        now: Instant,
    ) {
        let impu = match req.header("To").map(NameAddr::parse) {
            Some(Ok(to)) => to.uri.aor(),
            _ => return self.simple(tx, &req, 400, now),
        };
        let creds = match req.header("Authorization").map(Credentials::parse) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return self.simple(tx, &req, 400, now),
        };
        // The IMPI: the digest username, else derived from the IMPU (TS 24.229 §5.1.1.2.1).
        let impi = match &creds {
            Some(c) => c.username.clone(),
            None => impu
                .strip_prefix("sip:")
                .or_else(|| impu.strip_prefix("sips:"))
                .unwrap_or(&impu)
                .to_string(),
        };
        let ctx = Ctx {
            tx,
            req,
            flow,
            impi,
            impu,
        };
        // What arrives through an SA belongs to the owner of that SA.
        if let Some(sa) = via_sa {
            let owner = self.sas.get(&sa).map(|r| r.impi.clone());
            if owner.as_deref() != Some(ctx.impi.as_str()) {
                return self.reject(
                    &ctx,
                    403,
                    "identity does not own the security association it used".into(),
                    now,
                );
            }
        }
        let expires = match self.requested_expires(&ctx.req) {
            Ok(e) => e,
            Err(()) => return self.reject(&ctx, 400, "bad Expires or Contact".into(), now),
        };
        if self.upstream.is_some() {
            return self.proxy_register(ctx, creds, via_sa, expires, now);
        }

        // An answer to our challenge?
        let answering = creds.as_ref().is_some_and(|c| {
            !c.response.is_empty()
                && self
                    .challenges
                    .get(&ctx.impi)
                    .is_some_and(|ch| ch.nonce == c.nonce && ch.sa == via_sa)
        });
        if answering {
            if let Some(c) = creds {
                return self.on_challenge_response(ctx, c, expires, now);
            }
        }
        if let Some(c) = &creds {
            if let Some(auts) = &c.auts {
                return self.on_resync(ctx, c.clone(), auts.clone(), now);
            }
        }
        // Deregistration through the registration's own SA needs no new authentication
        // (TS 24.229 §5.4.1.4: the request is integrity protected).
        if expires == 0 {
            if let (Some(sa), Some(reg)) = (via_sa, self.regs.get(&ctx.impu)) {
                if reg.sa == Some(sa) {
                    return self.deregister(Some(ctx), "user", now);
                }
            }
        }
        // Anything else, including the deregistration of an unprotected registration, is
        // authenticated afresh.
        self.challenge(ctx, now);
    }

    fn requested_expires(&self, req: &Message) -> Result<u32, ()> {
        let header = match req.header("Expires") {
            Some(v) => Some(parse_delta_seconds(v).map_err(|_| ())?),
            None => None,
        };
        let mut contact = None;
        for v in req.header_values("Contact") {
            match Contacts::parse(v).map_err(|_| ())? {
                Contacts::Star => contact = Some(0),
                Contacts::List(l) => {
                    for c in l {
                        if let Some(e) = contact_expires(&c).map_err(|_| ())? {
                            contact = Some(contact.map_or(e, |x: u32| x.min(e)));
                        }
                    }
                }
            }
        }
        Ok(contact.or(header).unwrap_or(self.cfg.default_expires))
    }

    /// Sec-agree for a REGISTER that may lead to a challenge: the offer we pick from its
    /// Security-Client by preference (RFC 3329 §2.3, TS 33.203 §7.1), `None` for no IPsec.
    /// `Err(())` when the REGISTER has been answered with a refusal already (421, 400, 494,
    /// 500).
    fn negotiate(&mut self, ctx: &Ctx, now: Instant) -> Result<Option<Choice>, ()> {
        let offers = match ctx.req.header("Security-Client") {
            None => None,
            Some(_) => {
                let mut all = Vec::new();
                for v in ctx.req.header_values("Security-Client") {
                    match SecurityMechanism::parse_list(v) {
                        Ok(l) => all.extend(l),
                        Err(e) => {
                            self.reject(ctx, 400, format!("malformed Security-Client: {e}"), now);
                            return Err(());
                        }
                    }
                }
                Some(all)
            }
        };
        let choice = match (self.cfg.policy, offers) {
            (IpsecPolicy::Off, _) => None,
            (IpsecPolicy::Required, None) => {
                self.stats.rejections += 1;
                let r = ResponseBuilder::new(&ctx.req, 421)
                    .to_tag(&sip::new_tag())
                    .header("Require", "sec-agree")
                    .build();
                self.respond(ctx.tx, r, now);
                self.event(CoreEvent::Rejected {
                    impi: ctx.impi.clone(),
                    code: 421,
                    reason: "no Security-Client: IPsec is required".into(),
                });
                return Err(());
            }
            (IpsecPolicy::Optional, None) => None,
            (_, Some(offers)) => {
                if !self.cfg.ipsec_available {
                    if self.cfg.policy == IpsecPolicy::Required {
                        self.reject(
                            ctx,
                            500,
                            "IPsec is required but no backend is available".into(),
                            now,
                        );
                        return Err(());
                    }
                    None
                } else {
                    match secagree::choose(&offers, &self.cfg.prefs) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.stats.rejections += 1;
                            let r = ResponseBuilder::new(&ctx.req, 494)
                                .to_tag(&sip::new_tag())
                                .header("Security-Server", self.supported_mechanisms())
                                .header("Require", "sec-agree")
                                .build();
                            self.respond(ctx.tx, r, now);
                            self.event(CoreEvent::Rejected {
                                impi: ctx.impi.clone(),
                                code: 494,
                                reason: e.to_string(),
                            });
                            return Err(());
                        }
                    }
                }
            }
        };
        Ok(choice)
    }

    fn challenge(&mut self, ctx: Ctx, now: Instant) {
        let Ok(choice) = self.negotiate(&ctx, now) else {
            return;
        };
        let session = self.session_id();
        let request = cx::mar(&self.cfg.cx, &session, &ctx.impi, &ctx.impu, None);
        let token = self.token();
        self.out.push_back(Output::Cx { token, request });
        self.pending.insert(
            token,
            Pending::Mar {
                ctx,
                choice,
                resync: false,
            },
        );
    }

    /// Our acceptable mechanisms, for a 494 (RFC 3329 §2.3.1).
    fn supported_mechanisms(&self) -> String {
        let mut list = Vec::new();
        for e in &self.cfg.prefs.encryption {
            for i in &self.cfg.prefs.integrity {
                list.push(SecurityMechanism::ipsec_3gpp(
                    i.sip_name(),
                    Some(e.sip_name()),
                    0,
                    0,
                    0,
                    0,
                ));
            }
        }
        for m in &mut list {
            m.spi_c = None;
            m.spi_s = None;
            m.port_c = None;
            m.port_s = None;
        }
        format_security_list(&list)
    }

    fn on_resync(&mut self, ctx: Ctx, creds: Credentials, auts: String, now: Instant) {
        let nonce = match akav1::nonce::decode(&creds.nonce) {
            Ok(n) => n,
            Err(e) => return self.reject(&ctx, 403, format!("resync with a bad nonce: {e}"), now),
        };
        let auts = match akav1::nonce::decode_auts(&auts) {
            Ok(a) => a,
            Err(e) => return self.reject(&ctx, 403, format!("bad auts: {e}"), now),
        };
        // The old challenge (and its temporary SAs) are void: the card refused them.
        if let Some(old) = self.challenges.remove(&ctx.impi) {
            if let Some(sa) = old.sa {
                self.delete_sa(sa);
            }
        }
        let offers: Vec<SecurityMechanism> = ctx
            .req
            .header_values("Security-Client")
            .filter_map(|v| SecurityMechanism::parse_list(v).ok())
            .flatten()
            .collect();
        let choice = if self.cfg.policy != IpsecPolicy::Off
            && self.cfg.ipsec_available
            && !offers.is_empty()
        {
            secagree::choose(&offers, &self.cfg.prefs).ok()
        } else {
            None
        };
        if choice.is_none() && self.cfg.policy == IpsecPolicy::Required {
            return self.reject(
                &ctx,
                494,
                "resync REGISTER without an acceptable Security-Client".into(),
                now,
            );
        }
        let mut resync = nonce.rand.to_vec();
        resync.extend_from_slice(&auts);
        let session = self.session_id();
        let request = cx::mar(&self.cfg.cx, &session, &ctx.impi, &ctx.impu, Some(&resync));
        let token = self.token();
        self.stats.resyncs += 1;
        self.out.push_back(Output::Cx { token, request });
        self.pending.insert(
            token,
            Pending::Mar {
                ctx,
                choice,
                resync: true,
            },
        );
    }

    /// The Cx answer (or failure) for `token`.
    pub fn handle_cx_answer(
        &mut self,
        token: u64,
        answer: Result<diameter::Message, String>,
        now: Instant,
    ) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        match p {
            Pending::Mar {
                ctx,
                choice,
                resync,
            } => self.on_maa(ctx, choice, resync, answer, now),
            Pending::SarRegister {
                ctx,
                expires,
                contacts,
                new_sa,
                kind,
            } => self.on_saa_register(ctx, expires, contacts, new_sa, kind, answer, now),
            Pending::SarDeregister { ctx, impu, reason } => {
                // The registration is gone locally whatever the HSS said: the UE asked,
                // or it expired. A failed SAR only means the HSS keeps a stale S-CSCF name.
                if let Err(e) = answer
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|a| cx::parse_saa(a).map(|_| ()).map_err(|e| e.to_string()))
                {
                    tracing::warn!(%impu, "deregistration SAR failed: {e}");
                }
                if let Some(ctx) = ctx {
                    let mut b = ResponseBuilder::new(&ctx.req, 200).to_tag(&sip::new_tag());
                    if let Some(c) = contact_list_expired(&ctx.req) {
                        b = b.header("Contact", c);
                    }
                    self.respond(ctx.tx, b.build(), now);
                }
                let _ = reason;
            }
            Pending::Prepare { ctx, .. } => {
                // A security token answered as Cx: a shell bug; fail the request cleanly.
                self.reject(&ctx, 500, "internal: mismatched completion".into(), now);
            }
            Pending::ProxyPrepare(p) => {
                self.reject(
                    &p.ctx.ctx,
                    500,
                    "internal: mismatched completion".into(),
                    now,
                );
            }
        }
    }

    fn on_maa(
        &mut self,
        ctx: Ctx,
        choice: Option<Choice>,
        resync: bool,
        answer: Result<diameter::Message, String>,
        now: Instant,
    ) {
        let vector = match answer {
            Err(e) => return self.reject(&ctx, 504, format!("HSS unreachable: {e}"), now),
            Ok(a) => match cx::parse_maa(&a) {
                Ok(v) => v,
                Err(e) if e.is_user_error() => return self.reject(&ctx, 403, e.to_string(), now),
                Err(e) if resync => {
                    return self.reject(&ctx, 403, format!("resynchronisation refused: {e}"), now)
                }
                Err(e) => return self.reject(&ctx, 500, e.to_string(), now),
            },
        };
        let Some(choice) = choice else {
            return self.send_challenge(ctx, vector, Vec::new(), None, now);
        };
        // Allocate our side of the association and ask the shell to install it.
        let leases = (|| -> Result<Vec<Lease>, xfrm::PoolError> {
            Ok(vec![
                self.spis.allocate()?,
                self.spis.allocate()?,
                self.ports.allocate()?,
                self.ports.allocate()?,
            ])
        })();
        let leases = match leases {
            Ok(l) => l,
            Err(e) => {
                return self.reject(&ctx, 503, format!("IPsec resources exhausted: {e}"), now)
            }
        };
        let server = secagree::server_mechanism(
            &choice,
            leases[0].value(),
            leases[1].value(),
            leases[2].port(),
            leases[3].port(),
        );
        let set = match secagree::sa_set(
            ctx.flow.remote.ip(),
            self.cfg.local_ip,
            &choice.offer,
            &server,
            &vector.ck,
            &vector.ik,
            self.cfg.auth_timeout,
            now,
        ) {
            Ok(s) => s,
            Err(e) => return self.reject(&ctx, 494, format!("unusable Security-Client: {e}"), now),
        };
        let token = self.token();
        self.out.push_back(Output::Security(SecurityOp::Prepare {
            token,
            set: set.clone(),
        }));
        self.pending.insert(
            token,
            Pending::Prepare {
                ctx,
                vector,
                server: vec![server],
                set,
                leases,
            },
        );
    }

    /// The shell's report on a [`SecurityOp::Prepare`].
    pub fn handle_security_ready(
        &mut self,
        token: u64,
        result: Result<SetId, String>,
        now: Instant,
    ) {
        let (ctx, vector, server, set, leases) = match self.pending.remove(&token) {
            Some(Pending::Prepare {
                ctx,
                vector,
                server,
                set,
                leases,
            }) => (ctx, vector, server, set, leases),
            Some(Pending::ProxyPrepare(p)) => return self.proxy_security_ready(*p, result, now),
            Some(other) => {
                // Not a security token: put it back for its real completion.
                self.pending.insert(token, other);
                return;
            }
            None => return,
        };
        match result {
            Err(e) => self.reject(&ctx, 500, format!("IPsec setup failed: {e}"), now),
            Ok(id) => {
                self.sas.insert(
                    id,
                    SaRecord {
                        set,
                        impi: ctx.impi.clone(),
                        server: server.clone(),
                        _leases: leases,
                    },
                );
                self.send_challenge(ctx, vector, server, Some(id), now);
            }
        }
    }

    fn send_challenge(
        &mut self,
        ctx: Ctx,
        vector: CxVector,
        server: Vec<SecurityMechanism>,
        sa: Option<SetId>,
        now: Instant,
    ) {
        let nonce = akav1::nonce::encode(&vector.rand, &vector.autn, &[]);
        let challenge = DigestChallenge {
            realm: self.cfg.domain.clone(),
            nonce: nonce.clone(),
            algorithm: Some(AKAV1_MD5.into()),
            qop: vec![Qop::Auth],
            ..Default::default()
        };
        let mut b = ResponseBuilder::new(&ctx.req, 401)
            .to_tag(&sip::new_tag())
            .header("WWW-Authenticate", challenge.to_header());
        if !server.is_empty() {
            b = b.header("Security-Server", format_security_list(&server));
        }
        let r = b.build();
        // A previous unanswered challenge of this IMPI is superseded.
        if let Some(old) = self.challenges.remove(&ctx.impi) {
            if let Some(old_sa) = old.sa {
                self.delete_sa(old_sa);
            }
        }
        let expires_at = now + self.cfg.auth_timeout;
        self.set_timer(
            expires_at,
            TimerKind::Challenge {
                impi: ctx.impi.clone(),
                nonce: nonce.clone(),
            },
        );
        self.challenges.insert(
            ctx.impi.clone(),
            PendingChallenge {
                impu: ctx.impu.clone(),
                nonce,
                rand: vector.rand,
                xres: vector.xres,
                server,
                sa,
                expires_at,
            },
        );
        self.stats.challenges += 1;
        self.respond(ctx.tx, r, now);
        self.event(CoreEvent::Challenged {
            impi: ctx.impi,
            ipsec: sa.is_some(),
        });
    }

    fn on_challenge_response(&mut self, ctx: Ctx, creds: Credentials, expires: u32, now: Instant) {
        let Some(ch) = self.challenges.remove(&ctx.impi) else {
            return self.challenge(ctx, now);
        };
        let _ = (ch.rand, ch.expires_at);
        let fail = |this: &mut Self, ctx: &Ctx, code: u16, why: String| {
            if let Some(sa) = ch.sa {
                this.delete_sa(sa);
            }
            this.reject(ctx, code, why, now);
        };
        if ch.impu != ctx.impu {
            return fail(
                self,
                &ctx,
                403,
                "public identity differs from the challenged one".into(),
            );
        }
        if ch.sa.is_some() {
            let verify: Result<Vec<SecurityMechanism>, _> = ctx
                .req
                .header_values("Security-Verify")
                .map(SecurityMechanism::parse_list)
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.into_iter().flatten().collect());
            let ok = verify
                .ok()
                .is_some_and(|v| secagree::check_verify(&ch.server, &v).is_ok());
            if !ok {
                return fail(
                    self,
                    &ctx,
                    494,
                    "Security-Verify does not match our Security-Server".into(),
                );
            }
        }
        if !creds.verify(&ch.xres, "REGISTER", ctx.req.body()) {
            return fail(
                self,
                &ctx,
                403,
                "authentication failed: wrong response".into(),
            );
        }
        if expires != 0 && expires < self.cfg.min_expires {
            if let Some(sa) = ch.sa {
                self.delete_sa(sa);
            }
            self.stats.rejections += 1;
            let r = ResponseBuilder::new(&ctx.req, 423)
                .to_tag(&sip::new_tag())
                .header("Min-Expires", self.cfg.min_expires)
                .build();
            return self.respond(ctx.tx, r, now);
        }
        if expires == 0 {
            // An authenticated deregistration (unprotected registrations end this way).
            if let Some(sa) = ch.sa {
                self.delete_sa(sa);
            }
            return self.deregister(Some(ctx), "user", now);
        }
        let contacts: Vec<NameAddr> = ctx
            .req
            .header_values("Contact")
            .filter_map(|v| match Contacts::parse(v) {
                Ok(Contacts::List(l)) => Some(l),
                _ => None,
            })
            .flatten()
            .collect();
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
        self.pending.insert(
            token,
            Pending::SarRegister {
                ctx,
                expires,
                contacts,
                new_sa: ch.sa,
                kind,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_saa_register(
        &mut self,
        ctx: Ctx,
        expires: u32,
        contacts: Vec<NameAddr>,
        new_sa: Option<SetId>,
        kind: i32,
        answer: Result<diameter::Message, String>,
        now: Instant,
    ) {
        let _ = kind;
        let user_data = match answer
            .map_err(|e| format!("HSS unreachable: {e}"))
            .and_then(|a| cx::parse_saa(&a).map_err(|e| e.to_string()))
        {
            Ok(u) => u,
            Err(e) => {
                if let Some(sa) = new_sa {
                    self.delete_sa(sa);
                }
                return self.reject(&ctx, 500, format!("SAR failed: {e}"), now);
            }
        };
        // P-Associated-URI: the registered IMPU first, then the rest of the implicit set
        // (TS 24.229 §5.4.1.2.2), barred identities left out.
        let mut associated = vec![ctx.impu.clone()];
        if let Some(xml) = user_data {
            match ifc::ImsSubscription::from_xml(&xml) {
                Ok(sub) => {
                    for sp in &sub.service_profiles {
                        if sp
                            .public_identities
                            .iter()
                            .any(|p| uri_key(&p.identity) == ctx.impu)
                        {
                            for p in &sp.public_identities {
                                let k = uri_key(&p.identity);
                                if !p.barring_indication && !associated.contains(&k) {
                                    associated.push(k);
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(impu = %ctx.impu, "User-Data not understood: {e}"),
            }
        }
        self.generation += 1;
        let generation = self.generation;
        let expires_at = now + Duration::from_secs(u64::from(expires));
        let bindings: Vec<Binding> = contacts
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.params.remove("expires");
                Binding {
                    contact: c.to_string(),
                    expires_at,
                }
            })
            .collect();
        let old_sa = self.regs.get(&ctx.impu).and_then(|r| r.sa);
        // The new SA set takes over; the old one retires once the 200 OK has gone out
        // through the new one (the UE already uses the new set: TS 33.203 §7.4).
        if let Some(id) = new_sa {
            self.out.push_back(Output::Security(SecurityOp::Promote {
                id,
                lifetime: Duration::from_secs(u64::from(expires)) + self.cfg.auth_timeout,
            }));
        }
        if let Some(old) = old_sa {
            if Some(old) != new_sa {
                self.retire_sa(old, now);
            }
        }
        self.regs.insert(
            ctx.impu.clone(),
            Registration {
                impi: ctx.impi.clone(),
                associated: associated.clone(),
                service_route: vec![self.own_service_route()],
                bindings: bindings.clone(),
                sa: new_sa,
                expires_at,
                generation,
            },
        );
        self.set_timer(
            expires_at,
            TimerKind::Expiry {
                impu: ctx.impu.clone(),
                generation,
            },
        );
        let mut b = ResponseBuilder::new(&ctx.req, 200).to_tag(&sip::new_tag());
        for bd in &bindings {
            b = b.header("Contact", format!("{};expires={}", bd.contact, expires));
        }
        let assoc: Vec<String> = associated.iter().map(|a| format!("<{a}>")).collect();
        b = b
            .header("P-Associated-URI", assoc.join(", "))
            .header("Service-Route", self.own_service_route())
            .header("Expires", expires);
        if let Some(path) = ctx.req.header("Path") {
            b = b.header("Path", path);
        }
        let r = b.build();
        self.stats.registrations += 1;
        self.respond(ctx.tx, r, now);
        self.event(CoreEvent::Registered {
            impu: ctx.impu.clone(),
            impi: ctx.impi.clone(),
            expires,
            protected: new_sa.is_some(),
        });
    }

    /// Collapsed mode: the Service-Route we hand out (RFC 3608), pointing at ourselves.
    fn own_service_route(&self) -> String {
        format!(
            "<sip:orig@{}:{};lr>",
            sip::uri::ip_host(self.cfg.local_ip),
            self.cfg.sip_port
        )
    }

    fn deregister(&mut self, ctx: Option<Ctx>, reason: &'static str, now: Instant) {
        let (impu, impi) = match &ctx {
            Some(c) => (c.impu.clone(), c.impi.clone()),
            None => return,
        };
        self.end_registration(&impu, &impi, ctx, reason, now);
    }

    fn end_registration(
        &mut self,
        impu: &str,
        impi: &str,
        ctx: Option<Ctx>,
        reason: &'static str,
        now: Instant,
    ) {
        if let Some(reg) = self.regs.remove(impu) {
            if let Some(sa) = reg.sa {
                self.retire_sa(sa, now);
            }
            self.stats.deregistrations += 1;
            self.event(CoreEvent::Deregistered {
                impu: impu.to_string(),
                reason,
            });
        }
        let kind = if reason == "timeout" {
            assignment::TIMEOUT_DEREGISTRATION
        } else {
            assignment::USER_DEREGISTRATION
        };
        let session = self.session_id();
        let request = cx::sar(&self.cfg.cx, &session, impi, impu, kind);
        let token = self.token();
        self.out.push_back(Output::Cx { token, request });
        self.pending.insert(
            token,
            Pending::SarDeregister {
                ctx,
                impu: impu.to_string(),
                reason,
            },
        );
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
        if let Some(r) = self.sas.remove(&id) {
            // Dropping the record returns its SPIs and ports to the pools.
            self.out
                .push_back(Output::Security(SecurityOp::Delete { id, set: r.set }));
        }
    }

    /// Fire due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        while let Some((&(at, seq), _)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            let Some(kind) = self.timers.remove(&(at, seq)) else {
                break;
            };
            match kind {
                TimerKind::Challenge { impi, nonce } => {
                    if self.challenges.get(&impi).is_some_and(|c| c.nonce == nonce) {
                        if let Some(ch) = self.challenges.remove(&impi) {
                            if let Some(sa) = ch.sa {
                                self.delete_sa(sa);
                            }
                        }
                    }
                }
                TimerKind::Expiry { impu, generation } => {
                    let due = self
                        .regs
                        .get(&impu)
                        .filter(|r| r.generation == generation)
                        .map(|r| r.impi.clone());
                    if let Some(impi) = due {
                        if self.upstream.is_some() {
                            // The S-CSCF expires its own binding; we only drop ours.
                            self.end_proxy_registration(&impu, "timeout", now);
                        } else {
                            self.end_registration(&impu, &impi, None, "timeout", now);
                        }
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

    /// Transaction events: a proxied REGISTER whose client transaction timed out or
    /// failed gets its answer here (RFC 3261 §16.7 step 6 / §16.9); server transaction
    /// events need nothing, the registrar answers every REGISTER itself.
    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(e) = self.tx.poll_event() {
            match e {
                transaction::Event::Timeout { id, .. } => {
                    self.upstream_failed(id, 408, "no answer from the S-CSCF", now)
                }
                transaction::Event::TransportError { id } => {
                    self.upstream_failed(id, 503, "S-CSCF unreachable", now)
                }
                transaction::Event::Terminated { .. } => {}
            }
        }
    }

    /// The service routes of a registered `impu`: ours in collapsed mode, the S-CSCF's
    /// (from its 200 OK) in proxy mode.
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

    /// The implicit registration set of a registered `impu`.
    pub fn associated(&self, impu: &str) -> Vec<String> {
        self.regs
            .get(impu)
            .map(|r| r.associated.clone())
            .unwrap_or_default()
    }
}

/// A public identity from User-Data in the same canonical form as registrations are keyed.
fn uri_key(identity: &str) -> String {
    sip::Uri::parse(identity)
        .map(|u| u.aor())
        .unwrap_or_else(|_| identity.to_string())
}

/// The Contact value of a deregistration's 200 OK: each contact with expires=0.
fn contact_list_expired(req: &Message) -> Option<String> {
    let mut out = Vec::new();
    for v in req.header_values("Contact") {
        if let Ok(Contacts::List(l)) = Contacts::parse(v) {
            for mut c in l {
                c.params.remove("expires");
                out.push(format!("{c};expires=0"));
            }
        }
    }
    (!out.is_empty()).then(|| out.join(", "))
}
