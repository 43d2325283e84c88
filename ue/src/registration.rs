//! The registration procedures of an IMS UE (TS 24.229 §5.1.1) with IMS AKA and sec-agree
//! (TS 33.203 §6–7, RFC 3310, RFC 3329), as a sans-IO state machine.
//!
//! [`Registration`] never sends anything itself: it pushes outputs (requests with the
//! flow to send them on, SA actions for the shell, events) that [`crate::Ue`] turns into
//! client transactions. Responses come back through `Registration::handle_response` with
//! the id of the transaction they belong to, so the same `Ue` can later run dialogs next to
//! it without the registration seeing their traffic.
//!
//! ```text
//!  UE                                              P-CSCF
//!  │ REGISTER (unprotected, Security-Client, empty Authorization)
//!  │ ───────────────────────────────────────────────▶ port 5060
//!  │ 401 (WWW-Authenticate nonce=RAND‖AUTN, Security-Server)
//!  │ ◀───────────────────────────────────────────────
//!  │ Usim::authenticate → RES, CK, IK ; SaAction::Install(temporary set)
//!  │ REGISTER (port_uc → port_ps over SA 1, Security-Verify, response=f(RES))
//!  │ ═══════════════════════════════════════════════▶
//!  │ 200 OK (Service-Route, P-Associated-URI, expires) over SA 3
//!  │ ◀═══════════════════════════════════════════════
//!  │ SaAction::Promote ; refresh timer armed
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use akav1::digest::{Challenge, Credentials, Qop, AKAV1_MD5};
use akav1::{AuthFailure, Usim};
use sip::ims::{format_security_list, hdr, tag, SecurityMechanism};
use sip::transaction::TxId;
use sip::{Flow, Message, Method, NameAddr, Protocol, RequestBuilder, Uri, Via};
use xfrm::{SaSet, SetId};

use crate::config::{LocalSecurity, UeConfig};
use crate::event::{
    ChallengeError, EventKind, Procedure, RegError, Registered, ResponseError, SaInstallError,
    SaSummary, SecAgreeFailure, UeEvent,
};

/// Slack added to the registration expiry for the established SA lifetime, so the SA
/// outlives the binding it protects (the refresh happens well before).
const SA_SLACK: Duration = Duration::from_secs(30);
/// How many SQN resynchronisations in a row before giving up (TS 24.229 §5.1.1.5.3 leaves
/// the number open; two catches a network that keeps replaying stale vectors).
const MAX_RESYNCS: u32 = 2;
/// How many 401s one procedure may take (a challenge, a resync challenge, a stale nonce).
const MAX_CHALLENGES: u32 = 4;

/// What the shell must do to the IPsec state on the core's behalf. Each action names the
/// set by its backend [`SetId`], except `Install`, which the shell answers with
/// [`crate::Ue::handle_sa_installed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaAction {
    /// Open the protected ports `set.port_uc`/`set.port_us` on `set.ue` (the server port
    /// may already be open for the previous generation) and install `set` as
    /// [`xfrm::Side::Ue`] (temporary).
    Install {
        /// generation to quote back in `handle_sa_installed`
        generation: u64,
        /// the four SAs
        set: SaSet,
    },
    /// Temporary → established for `lifetime` (the 200 OK arrived).
    Promote {
        /// backend id
        id: SetId,
        /// registration expiry plus slack
        lifetime: Duration,
    },
    /// Retire: keep for `grace`; a `Delete` follows when it ends.
    BeginExpiry {
        /// backend id
        id: SetId,
        /// grace period
        grace: Duration,
    },
    /// Delete the set and close its protected client port; close the server port too if
    /// `close_server_port` (no other set uses it).
    Delete {
        /// backend id
        id: SetId,
        /// the UE address the ports are on
        ip: IpAddr,
        /// protected client port of the set
        port_uc: u16,
        /// protected server port of the set
        port_us: u16,
        /// whether no remaining set uses `port_us`
        close_server_port: bool,
    },
}

/// What the registration hands to [`crate::Ue`].
#[derive(Debug)]
pub(crate) enum Output {
    /// Start a client transaction with this request on this flow.
    Request(Message, Flow),
    /// IPsec work for the shell.
    Sa(SaAction),
    /// For the application.
    Event(UeEvent),
}

/// The externally visible state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// Not registered and nothing in progress.
    Idle,
    /// A procedure is running (`registered` says whether a binding exists meanwhile).
    InProgress {
        /// which
        procedure: Procedure,
        /// a previous registration is still valid
        registered: bool,
    },
    /// Registered.
    Registered,
    /// The last initial registration failed (a new `register` may be tried).
    Failed,
}

impl RegState {
    /// Short name for errors.
    pub fn as_str(self) -> &'static str {
        match self {
            RegState::Idle => "not registered",
            RegState::InProgress { .. } => "a procedure is in progress",
            RegState::Registered => "registered",
            RegState::Failed => "failed",
        }
    }
}

/// The digest state after a challenge, reused for the Authorization of later requests
/// (TS 24.229 §5.1.1.4.1: re-registrations carry the last nonce).
#[derive(Debug, Clone)]
struct AuthState {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    qop: Option<Qop>,
    /// RES as digest password; empty after a sync failure (RFC 3310 §3.4).
    password: Vec<u8>,
    nc: u32,
}

/// One SA set the UE knows about.
#[derive(Debug, Clone)]
struct SaEntry {
    generation: u64,
    set: SaSet,
    /// the Security-Server this set was built from: Security-Verify while it is in use
    server: Vec<SecurityMechanism>,
    id: Option<SetId>,
    /// when to delete it (retired sets)
    delete_at: Option<Instant>,
}

/// Where a running procedure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A REGISTER without a valid response is out: initial (empty Authorization), a
    /// resync (auts), the first REGISTER of a re-registration or a deregistration.
    Probe,
    /// Waiting for the shell to install the temporary set of `generation`.
    AwaitSa,
    /// The REGISTER with the AKA response is out.
    Answer,
}

#[derive(Debug, Clone)]
struct Proc {
    procedure: Procedure,
    started: Instant,
    step: Step,
    tx: Option<TxId>,
    round_trips: u32,
    resyncs: u32,
    challenges: u32,
    /// our sec-agree parameters offered in this procedure
    local: LocalSecurity,
    generation: u64,
    /// generation of the temporary set built in this procedure
    new_set: Option<u64>,
}

/// The binding a 200 OK confirmed.
#[derive(Debug, Clone)]
struct Binding {
    expires: u32,
    service_route: Vec<String>,
    associated_uris: Vec<String>,
    /// generation of the SA set protecting it (None without sec-agree)
    set: Option<u64>,
    refresh_at: Option<Instant>,
    /// when the registrar will consider it gone
    expires_at: Instant,
}

/// The registration state machine of one UE.
#[derive(Debug)]
pub struct Registration {
    cfg: UeConfig,
    impu: Uri,
    usim: Usim,
    call_id: String,
    from_tag: String,
    cseq: u32,
    next_generation: u64,
    proc: Option<Proc>,
    binding: Option<Binding>,
    failed: bool,
    auth: Option<AuthState>,
    sets: Vec<SaEntry>,
    /// sets dropped while their install was still pending: deleted when it completes
    orphans: Vec<SaEntry>,
    out: VecDeque<Output>,
}

fn ev(out: &mut VecDeque<Output>, at: Instant, kind: EventKind) {
    out.push_back(Output::Event(UeEvent { at, kind }));
}

impl Registration {
    /// A UE that has not registered yet. The configuration must have been validated.
    pub(crate) fn new(cfg: UeConfig, impu: Uri) -> Registration {
        let usim = cfg.keys.usim();
        Registration {
            impu,
            usim,
            call_id: sip::new_call_id(Some(&sip::uri::ip_host(cfg.local_ip))),
            from_tag: sip::new_tag(),
            cseq: 0,
            next_generation: 0,
            proc: None,
            binding: None,
            failed: false,
            auth: None,
            sets: Vec::new(),
            orphans: Vec::new(),
            out: VecDeque::new(),
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &UeConfig {
        &self.cfg
    }

    /// The card's SQN memory now (persist it to keep the card's state across runs).
    pub fn sqn_state(&self) -> &akav1::UsimSqnState {
        self.usim.sqn_state()
    }

    /// Current state.
    pub fn state(&self) -> RegState {
        match (&self.proc, &self.binding) {
            (Some(p), b) => RegState::InProgress {
                procedure: p.procedure,
                registered: b.is_some(),
            },
            (None, Some(_)) => RegState::Registered,
            (None, None) if self.failed => RegState::Failed,
            (None, None) => RegState::Idle,
        }
    }

    /// Whether a 200 OK confirmed a binding that has not been removed.
    pub fn is_registered(&self) -> bool {
        self.binding.is_some()
    }

    /// Granted expiry of the current binding, in seconds.
    pub fn expires(&self) -> Option<u32> {
        self.binding.as_ref().map(|b| b.expires)
    }

    /// Service-Route of the current binding (the Route set of originating requests).
    pub fn service_route(&self) -> &[String] {
        self.binding.as_ref().map_or(&[], |b| &b.service_route)
    }

    /// P-Associated-URI of the current binding.
    pub fn associated_uris(&self) -> &[String] {
        self.binding.as_ref().map_or(&[], |b| &b.associated_uris)
    }

    /// The established SA set in use, if any.
    pub fn current_set(&self) -> Option<&SaSet> {
        let g = self.binding.as_ref()?.set?;
        self.sets.iter().find(|e| e.generation == g).map(|e| &e.set)
    }

    /// Number of SA sets the UE still holds (temporary, established or retiring).
    pub fn set_count(&self) -> usize {
        self.sets.len()
    }

    /// Is `local` one of our protected ports?
    pub fn is_protected_port(&self, local: SocketAddr) -> bool {
        local.ip() == self.cfg.local_ip
            && self
                .sets
                .iter()
                .any(|e| local.port() == e.set.port_uc || local.port() == e.set.port_us)
    }

    /// The Security-Verify of requests over the current set (the Security-Server it was
    /// built from, RFC 3329 §2.3.1), `None` without one.
    pub fn security_verify(&self) -> Option<String> {
        self.current_verify().map(|v| format_security_list(&v))
    }

    /// The Contact for dialogs and their requests (TS 24.229 §5.1.2A.1.1, §5.1.3.1): the
    /// registered contact (protected server port, `+sip.instance`, the MMTel ICSI) without
    /// `expires`.
    pub fn dialog_contact(&self) -> NameAddr {
        let mut c = self.contact(0);
        c.params.remove("expires");
        c
    }

    /// The flow requests go on: through the established set if there is one.
    pub fn request_flow(&self) -> Flow {
        match self.current_set() {
            Some(s) => Flow::new(
                SocketAddr::new(self.cfg.local_ip, s.port_uc),
                SocketAddr::new(s.pcscf, s.port_ps),
                Protocol::Udp,
            ),
            None => self.unprotected_flow(),
        }
    }

    fn unprotected_flow(&self) -> Flow {
        Flow::new(
            SocketAddr::new(self.cfg.local_ip, self.cfg.port),
            self.cfg.pcscf,
            Protocol::Udp,
        )
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next deadline: an SA deletion, the refresh or the binding's expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let del = self.sets.iter().filter_map(|e| e.delete_at);
        let idle = self.binding.as_ref().filter(|_| self.proc.is_none());
        let refresh = idle.and_then(|b| b.refresh_at);
        let expiry = idle.map(|b| b.expires_at);
        del.chain(refresh).chain(expiry).min()
    }

    // ---- commands ------------------------------------------------------------------

    fn busy(&mut self, command: &'static str, procedure: Procedure, now: Instant) -> bool {
        if self.proc.is_some() {
            self.invalid(procedure, command, now);
        }
        self.proc.is_some()
    }

    fn invalid(&mut self, procedure: Procedure, command: &'static str, now: Instant) {
        let state = self.state().as_str();
        ev(
            &mut self.out,
            now,
            EventKind::Failed {
                procedure,
                error: RegError::InvalidState { command, state },
            },
        );
    }

    fn start(&mut self, procedure: Procedure, now: Instant) {
        let generation = self.next_generation;
        // Every REGISTER offers a fresh SPI/port generation, deregistration included: an
        // S-CSCF may challenge the de-REGISTER (Kamailio does), and the set built for the
        // answer must not reuse the SPIs of the set in use (TS 33.203 §7.4). If it is not
        // challenged, the offer is simply never installed.
        let local = self.cfg.security.generation(generation);
        self.proc = Some(Proc {
            procedure,
            started: now,
            step: Step::Probe,
            tx: None,
            round_trips: 0,
            resyncs: 0,
            challenges: 0,
            local,
            generation,
            new_set: None,
        });
    }

    /// Initial registration (TS 24.229 §5.1.1.2): the unprotected REGISTER with
    /// Security-Client and an empty Authorization.
    pub fn register(&mut self, now: Instant) {
        if self.busy("register", Procedure::Initial, now) {
            return;
        }
        if self.binding.is_some() {
            self.invalid(Procedure::Initial, "register", now);
            return;
        }
        self.failed = false;
        self.auth = None;
        self.start(Procedure::Initial, now);
        let initial = Credentials {
            username: self.cfg.impi.clone(),
            realm: self.cfg.realm().to_string(),
            nonce: String::new(),
            uri: self.request_uri(),
            response: String::new(),
            algorithm: Some(AKAV1_MD5.into()),
            ..Credentials::default()
        };
        let flow = self.unprotected_flow();
        self.send_register(Some(initial), None, self.cfg.expires, flow);
    }

    /// Re-registration (TS 24.229 §5.1.1.4): over the current SA with a fresh
    /// Security-Client (new SPIs and client port), so that a re-authentication builds a
    /// new set.
    pub fn reregister(&mut self, now: Instant) {
        self.start_over_binding(Procedure::Reregistration, "reregister", now);
    }

    /// Deregistration (TS 24.229 §5.1.1.6): Expires 0 over the current SA; the sets are
    /// retired when the response arrives.
    pub fn deregister(&mut self, now: Instant) {
        self.start_over_binding(Procedure::Deregistration, "deregister", now);
    }

    /// The first REGISTER of a procedure on an existing binding: over the current SA, with
    /// the last nonce and the set in use as Security-Verify (TS 24.229 §5.1.1.4.1).
    fn start_over_binding(&mut self, procedure: Procedure, command: &'static str, now: Instant) {
        if self.busy(command, procedure, now) {
            return;
        }
        if self.binding.is_none() {
            self.invalid(procedure, command, now);
            return;
        }
        self.start(procedure, now);
        let cred = self.current_credentials(Method::Register);
        let flow = self.request_flow();
        let verify = self.current_verify();
        let expires = self.proc_expires();
        self.send_register(cred, verify, expires, flow);
    }

    // ---- request building ----------------------------------------------------------

    /// The Expires of the running procedure's REGISTERs: 0 throughout a deregistration,
    /// even when the network challenges it.
    fn proc_expires(&self) -> u32 {
        match self.proc.as_ref().map(|p| p.procedure) {
            Some(Procedure::Deregistration) => 0,
            _ => self.cfg.expires,
        }
    }

    fn request_uri(&self) -> String {
        format!("sip:{}", self.cfg.home_domain)
    }

    fn current_verify(&self) -> Option<Vec<SecurityMechanism>> {
        let g = self.binding.as_ref()?.set?;
        self.sets
            .iter()
            .find(|e| e.generation == g)
            .map(|e| e.server.clone())
    }

    /// Authorization with the last nonce and RES (re-registration, deregistration).
    fn current_credentials(&mut self, method: Method) -> Option<Credentials> {
        let uri = self.request_uri();
        let impi = self.cfg.impi.clone();
        let auth = self.auth.as_mut()?;
        Some(answer(auth, &impi, &uri, method.as_str()))
    }

    fn contact(&self, expires: u32) -> NameAddr {
        // the IMPU's user part (a tel: number keeps its +)
        let user = self.impu.user.clone();
        let port = if self.cfg.sec_agree {
            self.proc
                .as_ref()
                .map_or(self.cfg.security.port_us, |p| p.local.port_us)
        } else {
            self.cfg.port
        };
        let mut c = NameAddr::new(Uri::sip(
            user.as_deref(),
            &sip::uri::ip_host(self.cfg.local_ip),
            Some(port),
        ));
        c.params.set("expires", Some(&expires.to_string()));
        if let Some(i) = &self.cfg.instance_id {
            c.params.set("+sip.instance", Some(&format!("\"{i}\"")));
        }
        // TS 24.229 §5.1.1.2.1: the MMTel feature tag of a voice-capable UE.
        c.params.set(
            "+g.3gpp.icsi-ref",
            Some("\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\""),
        );
        c
    }

    fn send_register(
        &mut self,
        cred: Option<Credentials>,
        verify: Option<Vec<SecurityMechanism>>,
        expires: u32,
        flow: Flow,
    ) {
        self.cseq += 1;
        let local = flow
            .local
            .unwrap_or(SocketAddr::new(self.cfg.local_ip, self.cfg.port));
        let mut via = Via::new(
            "UDP",
            &sip::uri::ip_host(local.ip()),
            Some(local.port()),
            &sip::new_branch(),
        );
        // RFC 3581: answer to the source port, whatever the Via says.
        via.params.set("rport", None);
        let mut from = NameAddr::new(self.impu.clone());
        from.params.set("tag", Some(&self.from_tag));
        let to = NameAddr::new(self.impu.clone());
        let mut b = RequestBuilder::new(Method::Register, self.request_uri())
            .via(&via)
            .max_forwards(70)
            .from(&from)
            .to(&to)
            .call_id(&self.call_id)
            .cseq(self.cseq)
            .contact(&self.contact(expires))
            .header("Expires", expires);
        if self.cfg.sec_agree {
            b = b
                .header(
                    hdr::SUPPORTED,
                    format_args!("{}, {}", tag::PATH, tag::SEC_AGREE),
                )
                .header(hdr::REQUIRE, tag::SEC_AGREE)
                .header(hdr::PROXY_REQUIRE, tag::SEC_AGREE);
            if let Some(p) = &self.proc {
                let offers = secagree::client_offers(
                    &self.cfg.algorithms,
                    p.local.spi_uc,
                    p.local.spi_us,
                    p.local.port_uc,
                    p.local.port_us,
                );
                b = b.header(hdr::SECURITY_CLIENT, format_security_list(&offers));
            }
            if let Some(v) = verify {
                b = b.header(hdr::SECURITY_VERIFY, format_security_list(&v));
            }
        } else {
            b = b.header(hdr::SUPPORTED, tag::PATH);
        }
        if let Some(c) = cred {
            b = b.header(hdr::AUTHORIZATION, c.to_header());
        }
        if let Some(pani) = &self.cfg.access_network_info {
            b = b.header(hdr::P_ACCESS_NETWORK_INFO, pani);
        }
        b = b.header("User-Agent", &self.cfg.user_agent).header(
            "Allow",
            "INVITE, ACK, CANCEL, BYE, UPDATE, PRACK, MESSAGE, NOTIFY, OPTIONS",
        );
        if let Some(p) = self.proc.as_mut() {
            p.round_trips += 1;
        }
        self.out.push_back(Output::Request(b.build(), flow));
    }

    /// The transaction layer accepted the request: remember which transaction answers it.
    pub(crate) fn sent(&mut self, tx: TxId) {
        if let Some(p) = self.proc.as_mut() {
            p.tx = Some(tx);
        }
    }

    /// Whether `tx` is the registration's current transaction.
    pub(crate) fn owns(&self, tx: TxId) -> bool {
        self.proc.as_ref().and_then(|p| p.tx) == Some(tx)
    }

    // ---- responses -----------------------------------------------------------------

    /// A final or provisional response of our transaction `tx`.
    pub(crate) fn handle_response(&mut self, tx: TxId, resp: &Message, now: Instant) {
        if !self.owns(tx) {
            return;
        }
        let Some(code) = resp.code() else { return };
        if code < 200 {
            return;
        }
        let Some(procedure) = self.proc.as_ref().map(|p| p.procedure) else {
            return;
        };
        // A challenged deregistration is answered like any challenge (TS 24.229 §5.1.1.6.1
        // with §5.1.1.5.1), with Expires 0.
        if procedure == Procedure::Deregistration && code != 401 {
            self.finish_deregistration(code, resp.reason().unwrap_or(""), now);
            return;
        }
        match code {
            200..=299 => self.on_ok(resp, now),
            401 => self.on_challenge(resp, now),
            423 => {
                // RFC 3261 §10.2.8: retry with at least Min-Expires.
                let min = resp
                    .header("Min-Expires")
                    .and_then(|v| sip::headers::parse_delta_seconds(v).ok());
                match min {
                    Some(m) if m > self.cfg.expires => {
                        self.cfg.expires = m;
                        self.retry_same_step(now);
                    }
                    _ => self.fail(
                        RegError::Rejected {
                            code,
                            reason: resp.reason().unwrap_or("").into(),
                        },
                        now,
                    ),
                }
            }
            _ => self.fail(
                RegError::Rejected {
                    code,
                    reason: resp.reason().unwrap_or("").into(),
                },
                now,
            ),
        }
    }

    /// Timer F fired or the transport failed for `tx`.
    pub(crate) fn handle_tx_failure(&mut self, tx: TxId, now: Instant) {
        if !self.owns(tx) {
            return;
        }
        if self.proc.as_ref().map(|p| p.procedure) == Some(Procedure::Deregistration) {
            // Nobody confirmed; the binding will expire at the registrar. Clean up locally.
            ev(
                &mut self.out,
                now,
                EventKind::Failed {
                    procedure: Procedure::Deregistration,
                    error: RegError::Timeout,
                },
            );
            self.drop_binding(now);
            self.proc = None;
            return;
        }
        self.fail(RegError::Timeout, now);
    }

    fn retry_same_step(&mut self, _now: Instant) {
        let Some(p) = self.proc.clone() else { return };
        let (cred, verify, flow) = match (p.procedure, p.step) {
            (Procedure::Initial, Step::Probe) => (
                Some(Credentials {
                    username: self.cfg.impi.clone(),
                    realm: self.cfg.realm().to_string(),
                    uri: self.request_uri(),
                    algorithm: Some(AKAV1_MD5.into()),
                    ..Credentials::default()
                }),
                None,
                self.unprotected_flow(),
            ),
            (_, Step::Answer) => {
                let verify = p
                    .new_set
                    .and_then(|g| self.sets.iter().find(|e| e.generation == g))
                    .map(|e| e.server.clone())
                    .or_else(|| self.current_verify());
                let flow = p
                    .new_set
                    .and_then(|g| self.set_flow(g))
                    .unwrap_or_else(|| self.request_flow());
                (self.current_credentials(Method::Register), verify, flow)
            }
            _ => (
                self.current_credentials(Method::Register),
                self.current_verify(),
                self.request_flow(),
            ),
        };
        let expires = self.proc_expires();
        self.send_register(cred, verify, expires, flow);
    }

    fn set_flow(&self, generation: u64) -> Option<Flow> {
        let e = self.sets.iter().find(|e| e.generation == generation)?;
        Some(Flow::new(
            SocketAddr::new(self.cfg.local_ip, e.set.port_uc),
            SocketAddr::new(e.set.pcscf, e.set.port_ps),
            Protocol::Udp,
        ))
    }

    fn on_challenge(&mut self, resp: &Message, now: Instant) {
        let Some(p) = self.proc.as_mut() else { return };
        p.challenges += 1;
        if p.challenges > MAX_CHALLENGES {
            let n = p.challenges;
            self.fail(ChallengeError::TooMany(n).into(), now);
            return;
        }
        // A 401 to the answer (stale nonce, new vector): the temporary set of this
        // procedure is useless now.
        if let Some(g) = p.new_set.take() {
            self.delete_generation(g, now);
        }
        let challenge = match find_aka_challenge(resp) {
            Ok(c) => c,
            Err(e) => {
                self.fail(e.into(), now);
                return;
            }
        };
        let n = match akav1::nonce::decode(&challenge.nonce) {
            Ok(n) => n,
            Err(e) => {
                self.fail(ChallengeError::Nonce(e).into(), now);
                return;
            }
        };
        let qop = challenge.qop.contains(&Qop::Auth).then_some(Qop::Auth);
        match self.usim.authenticate(&n.rand, &n.autn) {
            Err(AuthFailure::MacFailure) => self.fail(RegError::MacFailure, now),
            Err(AuthFailure::SyncFailure { auts, .. }) => {
                let sqn_ms = self.usim.sqn_state().highest().value();
                let Some(p) = self.proc.as_mut() else { return };
                p.resyncs += 1;
                if p.resyncs > MAX_RESYNCS {
                    let r = p.resyncs - 1;
                    self.fail(RegError::ResyncLoop(r), now);
                    return;
                }
                ev(&mut self.out, now, EventKind::SqnResync { sqn_ms });
                // RFC 3310 §3.4: auts with a response computed from the empty password.
                let mut st = AuthState {
                    realm: challenge.realm.clone(),
                    nonce: challenge.nonce.clone(),
                    opaque: challenge.opaque.clone(),
                    qop,
                    password: Vec::new(),
                    nc: 0,
                };
                let mut cred = answer(
                    &mut st,
                    &self.cfg.impi,
                    &self.request_uri(),
                    Method::Register.as_str(),
                );
                cred.auts = Some(akav1::nonce::encode_auts(&auts));
                // Resync goes where the probe went: unprotected initially, over the
                // current set during a re-registration.
                let (verify, flow) = if self.binding.is_some() {
                    (self.current_verify(), self.request_flow())
                } else {
                    (None, self.unprotected_flow())
                };
                if let Some(p) = self.proc.as_mut() {
                    p.step = Step::Probe;
                }
                let expires = self.proc_expires();
                self.send_register(Some(cred), verify, expires, flow);
            }
            Ok(r) => {
                ev(
                    &mut self.out,
                    now,
                    EventKind::AkaVerified { sqn: r.sqn.value() },
                );
                self.auth = Some(AuthState {
                    realm: challenge.realm.clone(),
                    nonce: challenge.nonce.clone(),
                    opaque: challenge.opaque.clone(),
                    qop,
                    password: r.res.to_vec(),
                    nc: 0,
                });
                if !self.cfg.sec_agree {
                    let cred = self.current_credentials(Method::Register);
                    let flow = self.request_flow();
                    if let Some(p) = self.proc.as_mut() {
                        p.step = Step::Answer;
                    }
                    let expires = self.proc_expires();
                    self.send_register(cred, None, expires, flow);
                    return;
                }
                let Some(local) = self.proc.as_ref().map(|p| p.local) else {
                    return;
                };
                match self.build_set(resp, &local, &r.ck, &r.ik, now) {
                    Ok((set, server)) => {
                        let Some(p) = self.proc.as_mut() else { return };
                        let generation = p.generation;
                        p.step = Step::AwaitSa;
                        p.new_set = Some(generation);
                        self.next_generation = generation + 1;
                        ev(
                            &mut self.out,
                            now,
                            EventKind::SaInstallRequested(SaSummary::of(generation, &set)),
                        );
                        self.sets.push(SaEntry {
                            generation,
                            set: set.clone(),
                            server,
                            id: None,
                            delete_at: None,
                        });
                        self.out
                            .push_back(Output::Sa(SaAction::Install { generation, set }));
                    }
                    Err(e) => self.fail(e.into(), now),
                }
            }
        }
    }

    /// The set for the P-CSCF's Security-Server and our offer of this procedure (TS 33.203
    /// §7.2: the server's choice must be one of our offers, else the UE aborts).
    fn build_set(
        &self,
        resp: &Message,
        local: &LocalSecurity,
        ck: &[u8; 16],
        ik: &[u8; 16],
        now: Instant,
    ) -> Result<(SaSet, Vec<SecurityMechanism>), SecAgreeFailure> {
        let server_list = resp.security_server().map_err(SecAgreeFailure::Header)?;
        let mut ranked: Vec<SecurityMechanism> = server_list
            .iter()
            .filter(|m| m.mechanism.eq_ignore_ascii_case("ipsec-3gpp"))
            .cloned()
            .collect();
        sip::ims::sort_by_preference(&mut ranked);
        let first = ranked.first().ok_or(SecAgreeFailure::NoIpsec)?;
        let offers = secagree::client_offers(
            &self.cfg.algorithms,
            local.spi_uc,
            local.spi_us,
            local.port_uc,
            local.port_us,
        );
        let matching = |server: &SecurityMechanism| {
            offers.iter().find(|o| {
                o.alg.as_deref().map(str::to_ascii_lowercase)
                    == server.alg.as_deref().map(str::to_ascii_lowercase)
                    && o.ealg_or_null().eq_ignore_ascii_case(server.ealg_or_null())
            })
        };
        // RFC 3329 §2.3.1: the most preferred server mechanism that we offered.
        let (server, chosen) = ranked
            .iter()
            .find_map(|m| matching(m).map(|o| (m, o)))
            .ok_or_else(|| SecAgreeFailure::NotOffered {
                alg: first.alg.as_deref().unwrap_or("?").to_string(),
                ealg: first.ealg_or_null().to_string(),
            })?;
        let set = secagree::sa_set(
            self.cfg.local_ip,
            self.cfg.pcscf.ip(),
            chosen,
            server,
            ck,
            ik,
            self.cfg.temporary_sa_lifetime,
            now,
        )?;
        Ok((set, server_list))
    }

    /// The shell's answer to [`SaAction::Install`].
    pub(crate) fn handle_sa_installed(
        &mut self,
        generation: u64,
        result: Result<SetId, SaInstallError>,
        now: Instant,
    ) {
        let pending = self
            .proc
            .as_ref()
            .is_some_and(|p| p.step == Step::AwaitSa && p.new_set == Some(generation));
        let Some(idx) = self.sets.iter().position(|e| e.generation == generation) else {
            // Not ours any more (the procedure failed meanwhile): undo the install.
            if let Some(o) = self.orphans.iter().position(|e| e.generation == generation) {
                let mut e = self.orphans.remove(o);
                if let Ok(id) = result {
                    e.id = Some(id);
                    self.sets.push(e);
                    self.delete_generation(generation, now);
                }
            }
            return;
        };
        match result {
            // a second answer for the same install (a confused shell): the first one counts
            _ if self.sets[idx].id.is_some() => {}
            Err(e) => {
                self.sets.remove(idx);
                if pending {
                    if let Some(p) = self.proc.as_mut() {
                        p.new_set = None;
                    }
                    self.fail(RegError::SaInstall(e), now);
                }
            }
            Ok(id) => {
                self.sets[idx].id = Some(id);
                ev(
                    &mut self.out,
                    now,
                    EventKind::SaInstalled {
                        id,
                        sa: SaSummary::of(generation, &self.sets[idx].set),
                    },
                );
                if !pending {
                    self.delete_generation(generation, now);
                    return;
                }
                // TS 24.229 §5.1.1.5.1: the answer goes over the new temporary set, with
                // Security-Verify = the Security-Server just received.
                let server = self.sets[idx].server.clone();
                let cred = self.current_credentials(Method::Register);
                let flow = self
                    .set_flow(generation)
                    .unwrap_or_else(|| self.request_flow());
                if let Some(p) = self.proc.as_mut() {
                    p.step = Step::Answer;
                }
                let expires = self.proc_expires();
                self.send_register(cred, Some(server), expires, flow);
            }
        }
    }

    fn on_ok(&mut self, resp: &Message, now: Instant) {
        let Some(p) = self.proc.take() else { return };
        let granted = match granted_expiry(resp, &self.contact(self.cfg.expires), self.cfg.expires)
        {
            // A 200 that grants nothing (our Contact at expires=0) is no registration.
            Ok(0) => {
                self.proc = Some(p);
                self.fail(ResponseError::ZeroExpiry.into(), now);
                return;
            }
            Ok(e) => e,
            Err(e) => {
                self.proc = Some(p);
                self.fail(e.into(), now);
                return;
            }
        };
        let service_route: Vec<String> = resp
            .service_route()
            .map(|v| v.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        let associated_uris: Vec<String> = resp
            .p_associated_uri()
            .map(|v| v.iter().map(|n| n.uri.to_string()).collect())
            .unwrap_or_default();
        let old = self.binding.as_ref().and_then(|b| b.set);
        let set = match p.new_set {
            Some(g) => {
                // Promote the new set, retire the old one (TS 33.203 §7.4).
                let lifetime = Duration::from_secs(u64::from(granted)) + SA_SLACK;
                if let Some(e) = self.sets.iter_mut().find(|e| e.generation == g) {
                    let _ = e.set.promote(lifetime, now);
                    if let Some(id) = e.id {
                        self.out
                            .push_back(Output::Sa(SaAction::Promote { id, lifetime }));
                        ev(&mut self.out, now, EventKind::SaPromoted { id });
                    }
                }
                if let Some(o) = old.filter(|o| *o != g) {
                    self.retire_generation(o, now);
                }
                Some(g)
            }
            // A re-registration the network accepted without re-authentication: the
            // offered parameters stay unused and the old set keeps serving.
            None => old,
        };
        let refresh_at = self.cfg.auto_refresh.then(|| now + refresh_after(granted));
        self.binding = Some(Binding {
            expires: granted,
            service_route: service_route.clone(),
            associated_uris: associated_uris.clone(),
            set,
            refresh_at,
            expires_at: now + Duration::from_secs(u64::from(granted)),
        });
        self.failed = false;
        let protected = set.is_some();
        ev(
            &mut self.out,
            now,
            EventKind::Registered(Registered {
                procedure: p.procedure,
                expires: granted,
                service_route,
                associated_uris,
                protected,
                took: now.saturating_duration_since(p.started),
                round_trips: p.round_trips,
            }),
        );
    }

    fn finish_deregistration(&mut self, code: u16, reason: &str, now: Instant) {
        let Some(p) = self.proc.take() else { return };
        if (200..300).contains(&code) {
            ev(
                &mut self.out,
                now,
                EventKind::Deregistered {
                    took: now.saturating_duration_since(p.started),
                },
            );
        } else {
            ev(
                &mut self.out,
                now,
                EventKind::Failed {
                    procedure: Procedure::Deregistration,
                    error: RegError::Rejected {
                        code,
                        reason: reason.into(),
                    },
                },
            );
        }
        // Either way the UE considers itself deregistered (TS 24.229 §5.1.1.6.1) and
        // retires its SAs after the grace period.
        self.drop_binding(now);
    }

    fn drop_binding(&mut self, now: Instant) {
        self.binding = None;
        self.auth = None;
        let gens: Vec<u64> = self
            .sets
            .iter()
            .filter(|e| e.delete_at.is_none())
            .map(|e| e.generation)
            .collect();
        for g in gens {
            self.retire_generation(g, now);
        }
        // A new registration starts a new Call-ID (TS 24.229 §5.1.1.2.1).
        self.call_id = sip::new_call_id(Some(&sip::uri::ip_host(self.cfg.local_ip)));
    }

    /// The network ended the registration (a reg event NOTIFY with our contact
    /// `terminated`, event `deactivated` or `rejected`; TS 24.229 §5.1.1.7): the UE removes
    /// the registration and deletes its SAs at once, without a de-REGISTER, and a running
    /// procedure is moot. Returns whether there was a registration to drop.
    pub(crate) fn network_deregistered(
        &mut self,
        event: crate::reginfo::ContactEvent,
        now: Instant,
    ) -> bool {
        if self.binding.is_none() {
            return false;
        }
        if let Some(p) = self.proc.take() {
            // whoever waits for the running procedure learns why it ends here
            ev(
                &mut self.out,
                now,
                EventKind::Failed {
                    procedure: p.procedure,
                    error: RegError::NetworkDeregistered,
                },
            );
        }
        self.binding = None;
        self.auth = None;
        ev(
            &mut self.out,
            now,
            EventKind::DeregisteredByNetwork { event },
        );
        let gens: Vec<u64> = self.sets.iter().map(|e| e.generation).collect();
        for g in gens {
            self.delete_generation(g, now);
        }
        self.call_id = sip::new_call_id(Some(&sip::uri::ip_host(self.cfg.local_ip)));
        true
    }

    fn fail(&mut self, error: RegError, now: Instant) {
        let Some(p) = self.proc.take() else { return };
        if let Some(g) = p.new_set {
            self.delete_generation(g, now);
        }
        if self.binding.is_none() {
            self.failed = true;
        }
        ev(
            &mut self.out,
            now,
            EventKind::Failed {
                procedure: p.procedure,
                error,
            },
        );
    }

    // ---- SA bookkeeping ------------------------------------------------------------

    fn retire_generation(&mut self, g: u64, now: Instant) {
        let grace = self.cfg.sa_grace;
        let Some(e) = self.sets.iter_mut().find(|e| e.generation == g) else {
            return;
        };
        if e.delete_at.is_some() {
            return;
        }
        let _ = e.set.begin_expiry(grace, now);
        e.delete_at = Some(now + grace);
        if let Some(id) = e.id {
            self.out
                .push_back(Output::Sa(SaAction::BeginExpiry { id, grace }));
            ev(&mut self.out, now, EventKind::SaExpiring { id });
        }
    }

    fn delete_generation(&mut self, g: u64, now: Instant) {
        let Some(idx) = self.sets.iter().position(|e| e.generation == g) else {
            return;
        };
        let e = self.sets.remove(idx);
        if e.id.is_none() {
            self.orphans.push(e);
            return;
        }
        if let Some(id) = e.id {
            let close_server_port = !self.sets.iter().any(|o| o.set.port_us == e.set.port_us);
            self.out.push_back(Output::Sa(SaAction::Delete {
                id,
                ip: self.cfg.local_ip,
                port_uc: e.set.port_uc,
                port_us: e.set.port_us,
                close_server_port,
            }));
            ev(&mut self.out, now, EventKind::SaDeleted { id });
        }
    }

    /// Timers: retired sets reach their deletion time; the refresh is due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .sets
            .iter()
            .filter(|e| e.delete_at.is_some_and(|t| t <= now))
            .map(|e| e.generation)
            .collect();
        for g in due {
            self.delete_generation(g, now);
        }
        let refresh = self.proc.is_none()
            && self
                .binding
                .as_ref()
                .and_then(|b| b.refresh_at)
                .is_some_and(|t| t <= now);
        if refresh {
            if let Some(b) = self.binding.as_mut() {
                b.refresh_at = None;
            }
            self.reregister(now);
        }
        // Not refreshed in time (refresh off, or it failed): the registrar has dropped the
        // binding, so does the UE (TS 24.229 §5.1.1.4.1), and its SAs go.
        let expired =
            self.proc.is_none() && self.binding.as_ref().is_some_and(|b| b.expires_at <= now);
        if expired {
            ev(&mut self.out, now, EventKind::Expired);
            self.drop_binding(now);
        }
    }
}

/// The next Authorization for `auth` (nonce-count advances with qop, RFC 2617 §3.2.2).
fn answer(auth: &mut AuthState, impi: &str, uri: &str, method: &str) -> Credentials {
    let mut c = Credentials {
        username: impi.to_string(),
        realm: auth.realm.clone(),
        nonce: auth.nonce.clone(),
        uri: uri.to_string(),
        response: String::new(),
        algorithm: Some(AKAV1_MD5.into()),
        opaque: auth.opaque.clone(),
        ..Credentials::default()
    };
    if let Some(q) = auth.qop {
        auth.nc += 1;
        c.qop = Some(q);
        c.nc = Some(format!("{:08x}", auth.nc));
        c.cnonce = Some(sip::new_tag());
    }
    c.response = akav1::digest::response(&auth.password, &c.response_input(method, b""));
    c
}

/// The AKAv1-MD5 challenge among the WWW-Authenticate headers (a 401 may carry several
/// schemes, RFC 3261 §22.4).
fn find_aka_challenge(resp: &Message) -> Result<Challenge, ChallengeError> {
    let mut last_err = ChallengeError::NoChallenge;
    for v in resp.headers_named(hdr::WWW_AUTHENTICATE) {
        match Challenge::parse(v) {
            Ok(c) if c.is_akav1_md5() => return Ok(c),
            Ok(c) => {
                last_err = ChallengeError::NotAka {
                    algorithm: c.algorithm.as_deref().unwrap_or("MD5").to_string(),
                }
            }
            Err(e) => last_err = ChallengeError::Header(e),
        }
    }
    Err(last_err)
}

/// The expiry the registrar granted us: our Contact's `expires` in the 200's Contact list
/// (matched by URI), else the Expires header, else what we asked (RFC 3261 §10.2.4).
fn granted_expiry(resp: &Message, ours: &NameAddr, asked: u32) -> Result<u32, ResponseError> {
    let bad = |header| move |source| ResponseError::Header { header, source };
    let contacts = resp.contacts().map_err(bad("Contact"))?;
    if let sip::Contacts::List(list) = contacts {
        let mine = list.iter().find(|c| {
            c.uri.host.eq_ignore_ascii_case(&ours.uri.host) && c.uri.port == ours.uri.port
        });
        if let Some(c) = mine {
            if let Some(e) = sip::headers::contact_expires(c).map_err(bad("Contact expires"))? {
                return Ok(e);
            }
        }
    }
    match resp.expires() {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Ok(asked),
        Err(e) => Err(bad("Expires")(e)),
    }
}

/// When to refresh a registration granted for `expires` seconds (TS 24.229 §5.1.1.4.1:
/// 600 s before expiry if it was granted for more than 1200 s, else at half of it).
pub fn refresh_after(expires: u32) -> Duration {
    let e = u64::from(expires);
    Duration::from_secs(if e > 1200 { e - 600 } else { e / 2 }.max(1))
}
