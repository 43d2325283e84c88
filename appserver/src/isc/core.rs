//! [`IscCore`]: the sans-IO ISC proxy. See the module docs of [`crate::isc`].

use crate::event::{CallObserver, Offer, Progress, RawCaller, Source, Verdict};
use crate::late::{EndedCall, LateCalls, LateConfig, LateKind, LateMode};
use bytes::Bytes;
use sip::proxy::{self, Branches, Decision, Upstream};
use sip::transaction::{self, RequestOutcome, ResponseOutcome, Transactions, TxId};
use sip::{Flow, Limits, Message, Method, NameAddr, Protocol, RequestBuilder, Transmit, Via};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The methods this AS handles itself or proxies (`Allow` of our OPTIONS answer).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, INFO, MESSAGE, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, REFER";

/// The core's settings, resolved by its host ([`crate::isc::IscConfig::core`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Our SIP address (Via, Record-Route, Contact; what "for us" means).
    pub address: SocketAddr,
    /// The S-CSCF: trusted, and the next hop of what we originate.
    pub scscf: Option<SocketAddr>,
    /// Other trusted addresses.
    pub trusted: Vec<IpAddr>,
    /// Record-Route terminating INVITEs.
    pub record_route: bool,
    /// How long an answered, record-routed call is kept without a BYE.
    pub dialog_max_age: Duration,
    /// From / P-Asserted-Identity URI of requests we originate.
    pub identity: String,
    /// Late-registration call state.
    pub late: LateConfig,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Terminating INVITEs offered to the observer.
    pub offers: u64,
    /// Of those, answered 603.
    pub blocked: u64,
    /// Requests proxied on (any method).
    pub proxied: u64,
    /// Third-party REGISTERs answered.
    pub registers: u64,
    /// Late-registration notices started (MESSAGE or INVITE).
    pub late_notices: u64,
    /// MESSAGEs originated for the MESSAGE sink.
    pub messages: u64,
    /// Input dropped or refused.
    pub dropped: u64,
}

/// A terminating INVITE in progress, by its server transaction.
struct Call {
    call_id: String,
    /// Identity key of the callee (Request-URI).
    callee_key: String,
    callee: String,
    caller: String,
    /// The INVITE as forwarded (cancel-mode late notices replay it).
    invite: Message,
    /// Set by the caller's CANCEL: the outcome already reported.
    cancelled: Option<Progress>,
    /// The CANCEL's Reason, passed on to the branches (RFC 3326).
    reason: Option<String>,
}

/// An answered call we record-routed, by Call-ID.
struct Dialog {
    generation: u64,
    ended: bool,
}

/// A request this AS originated, by client transaction.
enum Own {
    Message,
    LateInvite {
        /// `Reason` for the CANCEL (answered elsewhere), or none (missed).
        reason: Option<String>,
        provisional: bool,
        cancelled: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    DialogAge { call_id: String, generation: u64 },
    Registration { key: String, until: Instant },
    LateCancel { client: TxId },
}

/// The ISC proxy core. Feed it with `handle_*`, drain [`IscCore::poll_transmit`], call
/// [`IscCore::handle_timeout`] at [`IscCore::poll_timeout`].
pub struct IscCore {
    cfg: CoreConfig,
    observer: Arc<dyn CallObserver>,
    tx: Transactions,
    branches: Branches,
    ids: sip::Ids,
    limits: Limits,
    calls: HashMap<TxId, Call>,
    dialogs: HashMap<String, Dialog>,
    regs: HashMap<String, Registered>,
    late: LateCalls,
    own: HashMap<TxId, Own>,
    /// Via branches of the requests we originated, while their transaction lives: such a
    /// request that comes back through us is ours, not a new call.
    own_branches: HashMap<TxId, String>,
    timers: BTreeMap<(Instant, u64), Timer>,
    seq: u64,
    /// Maps `Instant`s to wall-clock time for the observer.
    anchor: (Instant, SystemTime),
    stats: Stats,
}

impl IscCore {
    /// A core with nothing in progress, reporting to `observer`.
    pub fn new(cfg: CoreConfig, observer: Arc<dyn CallObserver>) -> IscCore {
        let late = LateCalls::new(cfg.late.window());
        IscCore {
            cfg,
            observer,
            tx: Transactions::new(transaction::Config::default()),
            branches: Branches::new(proxy::ProxyTimers::default()),
            ids: sip::Ids::from_entropy(),
            limits: Limits::default(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            regs: HashMap::new(),
            late,
            own: HashMap::new(),
            own_branches: HashMap::new(),
            timers: BTreeMap::new(),
            seq: 0,
            anchor: (Instant::now(), SystemTime::now()),
            stats: Stats::default(),
        }
    }

    /// Takes tags and branches from `ids` (seeded: reproducible tests).
    pub fn with_ids(mut self, ids: sip::Ids) -> IscCore {
        self.ids = ids;
        self
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Live SIP transactions.
    pub fn transaction_count(&self) -> usize {
        self.tx.len()
    }

    /// Terminating INVITEs not yet answered finally.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Answered calls we still expect a BYE for.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Identities with a live third-party registration.
    pub fn registration_count(&self) -> usize {
        self.regs.len()
    }

    /// Calls waiting for their callee to register ([`crate::late`]).
    pub fn late_pending(&self) -> usize {
        self.late.len()
    }

    /// True when `impu` (any identity of the set the third-party REGISTER named) is
    /// registered at `now`.
    pub fn is_registered(&self, impu: &str, now: Instant) -> bool {
        self.regs.get(&key(impu)).is_some_and(|r| r.until > now)
    }

    /// Requests we originated whose transaction is still alive.
    pub fn own_pending(&self) -> usize {
        self.own.len()
    }

    // ---- outputs -------------------------------------------------------------------

    /// Next datagram or stream write for the host.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    /// When [`IscCore::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ours = self.timers.keys().next().map(|(t, _)| *t);
        let t = transaction::earliest(ours, self.branches.poll_timeout());
        let t = transaction::earliest(t, self.late.poll_timeout());
        transaction::earliest(t, self.tx.poll_timeout())
    }

    // ---- inputs --------------------------------------------------------------------

    /// Bytes received on `flow`.
    pub fn handle_inbound(&mut self, flow: Flow, data: Bytes, now: Instant) {
        match sip::uas::parse(&flow, data, &self.limits) {
            Ok(m) => self.handle_message(m, flow, now),
            Err(e) => self.drop_input(flow.remote, &e),
        }
    }

    /// A parsed message received on `flow`.
    pub fn handle_message(&mut self, msg: Message, flow: Flow, now: Instant) {
        if msg.is_request() {
            match self.tx.handle_request(msg, flow, now) {
                Ok(RequestOutcome::New { id, request }) => self.on_request(id, request, flow, now),
                Ok(RequestOutcome::Ack { request, .. }) => self.route_ack(request, flow),
                Ok(_) => {}
                Err(e) => self.drop_input(flow.remote, &e),
            }
        } else {
            self.on_response(msg, flow, now);
        }
        self.drain_tx_events(now);
    }

    /// The host could not send a transmission of transaction `id`.
    pub fn handle_transport_error(&mut self, id: TxId, now: Instant) {
        self.tx.handle_transport_error(id, now);
        self.drain_tx_events(now);
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        for d in proxy::timer_c(&mut self.tx, &mut self.branches, now) {
            self.carry_out(d, now);
        }
        self.drain_tx_events(now);
        self.late.handle_timeout(now);
        while let Some((&(at, seq), _)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            let Some(t) = self.timers.remove(&(at, seq)) else {
                break;
            };
            match t {
                Timer::DialogAge {
                    call_id,
                    generation,
                } => {
                    let due = self
                        .dialogs
                        .get(&call_id)
                        .is_some_and(|d| d.generation == generation);
                    if due {
                        // A BYE we never saw: the call counts as over, or it would stay
                        // "connected" in every monitor forever.
                        if let Some(d) = self.dialogs.remove(&call_id) {
                            if !d.ended {
                                self.progress(&call_id, Progress::Ended, now);
                            }
                        }
                    }
                }
                Timer::Registration { key, until } => {
                    if self.regs.get(&key).map(|r| r.until) == Some(until) {
                        self.regs.remove(&key);
                    }
                }
                Timer::LateCancel { client } => self.late_cancel(client, true, now),
            }
        }
    }

    /// Sends a pager-mode MESSAGE (RFC 3428, text/plain) to `to` through the S-CSCF.
    /// False when no S-CSCF is configured or `to` is no usable URI.
    pub fn send_message(&mut self, to: &str, text: &str, now: Instant) -> bool {
        self.message(to, text, None, now)
    }

    /// A MESSAGE on `call_id` (a late notice names the call it is about by reusing the
    /// call's Call-ID: the device can match it to the call screen it shows), else a new
    /// one.
    fn message(&mut self, to: &str, text: &str, call_id: Option<&str>, now: Instant) -> bool {
        let Ok(to_uri) = sip::Uri::parse(to) else {
            return false;
        };
        let Some((flow, route)) = self.scscf_path() else {
            tracing::warn!("no [isc] scscf configured: MESSAGE to {to} not sent");
            return false;
        };
        let call_id = match call_id {
            Some(c) => c.to_string(),
            None => self
                .ids
                .call_id(Some(&sip::uri::ip_host(self.cfg.address.ip()))),
        };
        let tag = self.ids.tag();
        let m = RequestBuilder::new(Method::Message, &to_uri)
            .header("Via", self.our_via(flow.protocol))
            .max_forwards(70)
            .header("Route", &route)
            .header("From", format_args!("<{}>;tag={tag}", self.cfg.identity))
            .header("To", format_args!("<{to_uri}>"))
            .call_id(&call_id)
            .cseq(1)
            .header(
                "P-Asserted-Identity",
                format_args!("<{}>", self.cfg.identity),
            )
            .body("text/plain;charset=UTF-8", Bytes::from(text.to_string()))
            .build();
        let sent = self.originate(m, flow, Own::Message, now).is_some();
        if sent {
            self.stats.messages += 1;
        }
        sent
    }

    // ---- requests ------------------------------------------------------------------

    fn on_request(&mut self, id: TxId, req: Message, flow: Flow, now: Instant) {
        match req.method() {
            Some(Method::Cancel) => self.on_cancel(id, &req, now),
            Some(Method::Register) => self.on_register(id, &req, flow, now),
            Some(Method::Options) if self.is_for_us(&req) => {
                if let Some(r) = sip::uas::unhandled(&req, ALLOW, &mut self.ids) {
                    self.respond(id, r, now);
                }
            }
            _ => self.on_proxied(id, req, flow, now),
        }
    }

    /// True when the request names this AS (Request-URI) and no Route of somebody else
    /// is left: it is addressed to us, not routed through us.
    fn is_for_us(&self, req: &Message) -> bool {
        let uri_ours = req.request_uri().is_ok_and(|u| self.is_ours(&u));
        let routed_on = req
            .header_values("Route")
            .filter_map(|r| NameAddr::parse(r).ok())
            .any(|na| !self.is_ours(&na.uri));
        uri_ours && !routed_on
    }

    fn is_ours(&self, uri: &sip::Uri) -> bool {
        let a = self.cfg.address;
        uri.host_ip() == Some(a.ip()) && uri.port.unwrap_or(5060) == a.port()
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.cfg.scscf.is_some_and(|s| s.ip() == ip) || self.cfg.trusted.contains(&ip)
    }

    /// A third-party REGISTER from the S-CSCF (TS 24.229 §5.4.1.7): 200 with the expiry
    /// it named, remembered for every identity of the set (To, P-Associated-URI).
    fn on_register(&mut self, id: TxId, req: &Message, flow: Flow, now: Instant) {
        if !self.trusted(flow.remote.ip()) {
            self.stats.dropped += 1;
            return self.simple(id, req, 403, now);
        }
        let expires = match req.header("Expires").map(sip::headers::parse_delta_seconds) {
            Some(Ok(e)) => e,
            None => 3600,
            Some(Err(_)) => {
                self.stats.dropped += 1;
                return self.simple(id, req, 400, now);
            }
        };
        let Ok(to) = req.to_header() else {
            self.stats.dropped += 1;
            return self.simple(id, req, 400, now);
        };
        let mut keys = vec![to.uri.aor()];
        let mut tel = None;
        if let Ok(list) = req.name_addrs("P-Associated-URI") {
            keys.extend(list.iter().map(|na| na.uri.aor()));
            tel = list
                .iter()
                .find(|na| is_telephone(&na.uri))
                .map(|na| na.uri.to_string());
        }
        keys.sort();
        keys.dedup();
        self.stats.registers += 1;
        let ok = sip::ResponseBuilder::new(req, 200)
            .to_tag(&self.ids.tag())
            .header("Expires", expires)
            .build();
        self.respond(id, ok, now);
        if expires == 0 {
            for k in &keys {
                self.regs.remove(k);
            }
            return;
        }
        let until = now + Duration::from_secs(u64::from(expires));
        let mut told = HashSet::new();
        for k in keys {
            self.regs.insert(
                k.clone(),
                Registered {
                    until,
                    tel: tel.clone(),
                },
            );
            self.set_timer(
                until,
                Timer::Registration {
                    key: k.clone(),
                    until,
                },
            );
            if !self.cfg.late.enabled {
                continue;
            }
            for call in self.late.registered(&k, now) {
                if told.insert(call.call_id.clone()) {
                    self.late_notice(call, now);
                }
            }
        }
    }

    /// The caller's CANCEL (RFC 3261 §16.10): 200 here, CANCEL on to the branches with
    /// its Reason (RFC 3326); the call's outcome is known now.
    fn on_cancel(&mut self, id: TxId, cancel: &Message, now: Instant) {
        let invite = self.tx.invite_for_cancel(cancel);
        let code = if invite.is_some() { 200 } else { 481 };
        self.simple(id, cancel, code, now);
        let Some(server) = invite else {
            return;
        };
        let reason = cancel.header("Reason").map(str::to_string);
        let outcome = if reason.as_deref().is_some_and(answered_elsewhere) {
            Progress::AnsweredElsewhere
        } else {
            Progress::Cancelled
        };
        let mut report = None;
        if let Some(call) = self.calls.get_mut(&server) {
            if call.cancelled.is_none() {
                call.cancelled = Some(outcome);
                call.reason = reason.clone();
                report = Some(late_entry(call, outcome));
            }
        }
        if let Some((call_id, key, ended)) = report {
            self.progress(&call_id, outcome, now);
            // Remembered now, not at the 487: the callee's device may register again
            // before the 487 has come back through us.
            if let (true, Some(ended)) = (self.cfg.late.enabled, ended) {
                self.late.call_ended(key, ended, now);
            }
        }
        for c in self.branches.cancel(server) {
            self.cancel_branch(c, reason.as_deref(), now);
        }
    }

    fn on_proxied(&mut self, id: TxId, req: Message, flow: Flow, now: Instant) {
        let mut fwd = match proxy::forward_copy(&req, flow.remote) {
            Ok(f) => f,
            Err(e) => {
                self.stats.dropped += 1;
                return self.simple(id, &req, e.status(), now);
            }
        };
        proxy::pop_own_routes(&mut fwd, |u| self.is_ours(u));
        let in_dialog = req.to_header().is_ok_and(|t| t.tag().is_some());
        let method = req.method().cloned();
        if !in_dialog
            && method == Some(Method::Invite)
            && !self.is_own_request(&req)
            && terminating(&fwd)
        {
            return self.terminating_invite(id, req, fwd, flow, now);
        }
        if in_dialog && method == Some(Method::Bye) {
            let call_id = req.call_id().unwrap_or_default().to_string();
            let first = match self.dialogs.get_mut(&call_id) {
                Some(d) if !d.ended => {
                    d.ended = true;
                    true
                }
                _ => false,
            };
            if first {
                self.progress(&call_id, Progress::Ended, now);
            }
        }
        self.relay(id, req, fwd, now);
    }

    /// A terminating INVITE: the observer decides; 603 or on to the S-CSCF.
    fn terminating_invite(
        &mut self,
        id: TxId,
        req: Message,
        mut fwd: Message,
        flow: Flow,
        now: Instant,
    ) {
        let call_id = fwd.call_id().unwrap_or_default().to_string();
        let pai: Vec<String> = fwd
            .header_values("P-Asserted-Identity")
            .map(str::to_string)
            .collect();
        let from = fwd.header("From").unwrap_or_default().to_string();
        let privacy = fwd.header("Privacy").map(str::to_string);
        let callee = fwd.uri_str().unwrap_or_default().to_string();
        let caller = describe_caller(&pai, &from, privacy.as_deref());
        // The Request-URI is often the callee's IMSI-based SIP URI (TS 23.003 §13.4B),
        // which is no number to show; the callee's registration set names their tel URI.
        let shown_callee = self
            .regs
            .get(&key(&callee))
            .filter(|r| r.until > now)
            .and_then(|r| r.tel.clone())
            .unwrap_or_else(|| callee.clone());
        self.stats.offers += 1;
        let verdict = self.observer.offer(Offer {
            call_id: call_id.clone(),
            caller: RawCaller::Sip {
                p_asserted_identity: pai,
                from,
                privacy,
                trusted: self.trusted(flow.remote.ip()),
            },
            callee: shown_callee,
            source: Source::Isc,
            at: self.wall(now),
        });
        if let Verdict::Block { rule } = verdict {
            tracing::info!(%call_id, %rule, "blocked: 603");
            self.stats.blocked += 1;
            // RFC 3261 §21.6.2: the callee does not want the call and says so for all of
            // their devices; nothing is forwarded.
            return self.simple(id, &req, 603, now);
        }
        if self.cfg.record_route {
            fwd.prepend_header("Record-Route", &self.record_route());
        }
        let callee_key = sip::Uri::parse(&callee)
            .map(|u| u.aor())
            .unwrap_or_else(|_| callee.clone());
        self.calls.insert(
            id,
            Call {
                call_id,
                callee_key,
                callee,
                caller,
                invite: fwd.clone(),
                cancelled: None,
                reason: None,
            },
        );
        self.relay(id, req, fwd, now);
    }

    /// Sends `fwd` on to its next hop (Route, else Request-URI, else the S-CSCF) as the
    /// one branch of `id`'s response context.
    fn relay(&mut self, id: TxId, req: Message, mut fwd: Message, now: Instant) {
        let next = proxy::next_hop(&fwd)
            .ok()
            .and_then(|u| proxy::uri_target(&u))
            .map(|(a, p)| Flow::to(a, p))
            .or_else(|| self.cfg.scscf.map(|s| Flow::to(s, Protocol::Udp)));
        let Some(to) = next else {
            self.stats.dropped += 1;
            self.calls.remove(&id);
            return self.simple(id, &req, 404, now);
        };
        let via = self.our_via(to.protocol);
        fwd.prepend_header("Via", &via);
        match self.tx.send_request(fwd, to, now) {
            Ok(client) => {
                self.stats.proxied += 1;
                self.branches.open(id, req);
                self.branches.add(id, client, now);
            }
            Err(e) => {
                tracing::warn!("cannot forward: {e}");
                self.calls.remove(&id);
                self.simple(id, &req, 500, now);
            }
        }
    }

    /// An ACK for a 2xx (RFC 3261 §13.2.2.4): statelessly along its Route.
    fn route_ack(&mut self, req: Message, flow: Flow) {
        let Ok(mut fwd) = proxy::forward_copy(&req, flow.remote) else {
            return;
        };
        proxy::pop_own_routes(&mut fwd, |u| self.is_ours(u));
        let Some((addr, protocol)) = proxy::next_hop(&fwd)
            .ok()
            .and_then(|u| proxy::uri_target(&u))
        else {
            return;
        };
        let via = self.our_via(protocol);
        fwd.prepend_header("Via", &via);
        self.tx.send_stateless(&fwd, Flow::to(addr, protocol));
    }

    // ---- responses -----------------------------------------------------------------

    fn on_response(&mut self, msg: Message, flow: Flow, now: Instant) {
        // Only the node a branch went to may answer it (a forged response must not end
        // somebody's call).
        if let Some(id) = self.tx.match_response(&msg) {
            if self
                .tx
                .flow(id)
                .is_some_and(|f| f.remote.ip() != flow.remote.ip())
            {
                self.stats.dropped += 1;
                return;
            }
        }
        match self.tx.handle_response(msg, now) {
            Ok(ResponseOutcome::Deliver { id, response }) => {
                if self.own.contains_key(&id) {
                    return self.own_response(id, &response, now);
                }
                let code = response.code().unwrap_or(500);
                let bye = response.cseq().is_ok_and(|c| c.method == Method::Bye);
                if bye && code >= 200 {
                    if let Ok(call_id) = response.call_id() {
                        self.dialogs.remove(call_id);
                    }
                }
                let d = self.branches.response(id, response, now);
                self.carry_out(d, now);
            }
            Ok(_) => {}
            Err(e) => self.drop_input(flow.remote, &e),
        }
    }

    /// Carries out a response-context decision, learning the call's outcome from what
    /// goes upstream and passing the caller's CANCEL Reason on.
    fn carry_out(&mut self, mut d: Decision, now: Instant) {
        for c in std::mem::take(&mut d.cancel) {
            let reason = self
                .branches
                .server_of(c)
                .and_then(|s| self.calls.get(&s))
                .and_then(|call| call.reason.clone());
            self.cancel_branch(c, reason.as_deref(), now);
        }
        if let Some((server, up)) = &d.upstream {
            let code = match up {
                Upstream::Response(r) => r.code().unwrap_or(500),
                Upstream::Synthesize { code, .. } => *code,
            };
            self.call_outcome(*server, code, now);
        }
        if let Err(u) = proxy::carry_out(&mut self.tx, d, &mut self.ids, now) {
            self.drop_input(u.remote, &u.reason);
        }
    }

    /// The final response `code` goes upstream for server transaction `server`.
    fn call_outcome(&mut self, server: TxId, code: u16, now: Instant) {
        if code < 200 || !self.calls.contains_key(&server) {
            return;
        }
        let Some(call) = self.calls.remove(&server) else {
            return;
        };
        if code < 300 {
            if call.cancelled.is_some() {
                // The callee answered as the CANCEL crossed: nothing was missed.
                self.late.forget(&call.call_id);
            }
            self.progress(&call.call_id, Progress::Answered, now);
            if self.cfg.record_route {
                let generation = self.next_seq();
                self.dialogs.insert(
                    call.call_id.clone(),
                    Dialog {
                        generation,
                        ended: false,
                    },
                );
                self.set_timer(
                    now + self.cfg.dialog_max_age,
                    Timer::DialogAge {
                        call_id: call.call_id,
                        generation,
                    },
                );
            } else {
                // Not in the dialog: the BYE will not pass us. The end is reported now
                // so no monitor keeps the call open forever (talk time reads zero).
                self.progress(&call.call_id, Progress::Ended, now);
            }
            return;
        }
        if call.cancelled.is_some() {
            // Reported, and remembered for late registration, when the CANCEL came.
            return;
        }
        let outcome = if code == 487 {
            Progress::Cancelled
        } else {
            Progress::Failed(code)
        };
        self.progress(&call.call_id, outcome, now);
        let (_, key, ended) = late_entry(&call, outcome);
        if let (true, Some(ended)) = (self.cfg.late.enabled, ended) {
            self.late.call_ended(key, ended, now);
        }
    }

    /// Transaction events: a branch that timed out or could not be sent counts as its
    /// 408/503 (RFC 3261 §16.7 step 6, §16.9); ended ones leave every table.
    fn drain_tx_events(&mut self, now: Instant) {
        use sip::transaction::Event;
        while let Some(e) = self.tx.poll_event() {
            let (id, code) = match e {
                Event::Timeout { id, .. } => (id, 408),
                Event::TransportError { id } => (id, 503),
                Event::Terminated { id } => {
                    self.branches.terminated(id);
                    self.own.remove(&id);
                    self.own_branches.remove(&id);
                    // A server transaction that ended without a final passing us (its
                    // own timers): nothing more will come for it.
                    self.calls.remove(&id);
                    continue;
                }
            };
            if self.own.remove(&id).is_some() {
                tracing::info!(code, "request we originated failed");
                continue;
            }
            let d = self.branches.failed(id, code);
            self.carry_out(d, now);
        }
    }

    // ---- what we originate ---------------------------------------------------------

    /// The flow to the S-CSCF and the Route entry that names it.
    fn scscf_path(&self) -> Option<(Flow, String)> {
        let s = self.cfg.scscf?;
        let route = format!("<sip:{}:{};lr>", sip::uri::ip_host(s.ip()), s.port());
        Some((Flow::to(s, Protocol::Udp), route))
    }

    fn originate(&mut self, m: Message, flow: Flow, own: Own, now: Instant) -> Option<TxId> {
        let branch = m
            .header_values("Via")
            .next()
            .and_then(|v| Via::parse(v).ok())
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        match self.tx.send_request(m, flow, now) {
            Ok(client) => {
                self.own.insert(client, own);
                self.own_branches.insert(client, branch);
                Some(client)
            }
            Err(e) => {
                tracing::warn!("cannot originate: {e}");
                None
            }
        }
    }

    /// True when one of the request's Vias is ours with a branch we originated.
    fn is_own_request(&self, req: &Message) -> bool {
        if self.own_branches.is_empty() {
            return false;
        }
        let mine: HashSet<&str> = self.own_branches.values().map(String::as_str).collect();
        req.header_values("Via")
            .filter_map(|v| Via::parse(v).ok())
            .any(|v| v.branch().is_some_and(|b| mine.contains(b)))
    }

    /// Tells the callee of `call`, who just registered, what became of it.
    fn late_notice(&mut self, call: EndedCall, now: Instant) {
        self.stats.late_notices += 1;
        tracing::info!(call_id = %call.call_id, callee = %call.callee, kind = ?call.kind, "late-registration notice");
        match self.cfg.late.mode {
            LateMode::Message => {
                let text = call.text();
                if !self.message(&call.callee, &text, Some(&call.call_id), now) {
                    self.stats.late_notices -= 1;
                }
            }
            LateMode::Cancel => self.late_invite(call, now),
        }
    }

    /// Cancel mode: the original INVITE again (same Call-ID, From and tag, To, offer;
    /// the next CSeq number, or the phone would take it for a merged request and answer
    /// 482, RFC 3261 §8.2.2.2), from us through the S-CSCF.
    fn late_invite(&mut self, call: EndedCall, now: Instant) {
        let Some((flow, route)) = self.scscf_path() else {
            tracing::warn!("no [isc] scscf configured: late INVITE not sent");
            self.stats.late_notices -= 1;
            return;
        };
        let inv = &call.invite;
        let seq = inv.cseq().map(|c| c.seq.saturating_add(1)).unwrap_or(2);
        let a = self.cfg.address;
        let mut b = RequestBuilder::new(Method::Invite, &call.callee)
            .header("Via", self.our_via(flow.protocol))
            .max_forwards(70)
            .header("Route", &route)
            .header("From", inv.header("From").unwrap_or_default())
            .header("To", inv.header("To").unwrap_or_default())
            .call_id(&call.call_id)
            .cseq(seq)
            .header(
                "Contact",
                format_args!("<sip:{}:{}>", sip::uri::ip_host(a.ip()), a.port()),
            );
        for v in inv.headers_named("P-Asserted-Identity") {
            b = b.header("P-Asserted-Identity", v);
        }
        if let Some(p) = inv.header("Privacy") {
            b = b.header("Privacy", p);
        }
        if let Some(ct) = inv.header("Content-Type") {
            b = b.body(ct, inv.body().clone());
        }
        let reason = (call.kind == LateKind::AnsweredElsewhere)
            .then(|| "SIP;cause=200;text=\"Call completed elsewhere\"".to_string());
        let own = Own::LateInvite {
            reason,
            provisional: false,
            cancelled: false,
        };
        if let Some(client) = self.originate(b.build(), flow, own, now) {
            let delay = self.cfg.late.cancel_delay();
            self.set_timer(now + delay, Timer::LateCancel { client });
        } else {
            self.stats.late_notices -= 1;
        }
    }

    /// A response to a request we originated.
    fn own_response(&mut self, id: TxId, response: &Message, now: Instant) {
        let code = response.code().unwrap_or(500);
        let mut cancel_now = false;
        if let Some(Own::LateInvite { provisional, .. }) = self.own.get_mut(&id) {
            if code < 200 {
                // The phone's own provisional (not the S-CSCF's 100) shows it has the
                // call: the CANCEL may follow at once.
                cancel_now = code > 100;
                *provisional = true;
            } else if code < 300 {
                // The phone answered before our CANCEL: the call it took is ours to end.
                self.end_answered(response, now);
            }
        }
        if cancel_now {
            self.late_cancel(id, false, now);
        }
        if code >= 200 {
            tracing::debug!(code, "final response to a request we originated");
        }
    }

    /// Sends the CANCEL of late INVITE `client` if it may go: after a provisional, once.
    /// `timer`: the delay passed (a 100 is then enough).
    fn late_cancel(&mut self, client: TxId, timer: bool, now: Instant) {
        let reason = match self.own.get_mut(&client) {
            Some(Own::LateInvite {
                reason,
                provisional,
                cancelled,
            }) if !*cancelled => {
                if !*provisional {
                    if timer {
                        // Nothing yet, not even a 100: a CANCEL may not go before one
                        // (RFC 3261 §9.1); try again shortly, the INVITE's Timer B
                        // ends this in any case.
                        let at = now + Duration::from_millis(500);
                        self.set_timer(at, Timer::LateCancel { client });
                    }
                    return;
                }
                *cancelled = true;
                reason.clone()
            }
            _ => return,
        };
        self.cancel_branch(client, reason.as_deref(), now);
    }

    /// ACK and BYE for a 2xx to our late INVITE (the phone answered before the CANCEL
    /// arrived): along the route set the 2xx built (RFC 3261 §12.1.2: Record-Route
    /// reversed), to its Contact.
    fn end_answered(&mut self, ok: &Message, now: Instant) {
        let Ok(contact) = ok.name_addrs("Contact").map(|l| l.into_iter().next()) else {
            return;
        };
        let Some(contact) = contact else {
            return;
        };
        let routes: Vec<String> = {
            let mut r: Vec<String> = ok
                .header_values("Record-Route")
                .map(str::to_string)
                .collect();
            r.reverse();
            r
        };
        let next = match routes.first() {
            Some(r) => NameAddr::parse(r).ok().map(|n| n.uri),
            None => Some(contact.uri.clone()),
        };
        let Some((addr, protocol)) = next.as_ref().and_then(proxy::uri_target) else {
            return;
        };
        let flow = Flow::to(addr, protocol);
        let seq = ok.cseq().map(|c| c.seq).unwrap_or(1);
        let build = |core: &mut IscCore, method: Method, seq: u32| {
            let mut b = RequestBuilder::new(method, &contact.uri)
                .header("Via", core.our_via(protocol))
                .max_forwards(70);
            for r in &routes {
                b = b.header("Route", r);
            }
            b.header("From", ok.header("From").unwrap_or_default())
                .header("To", ok.header("To").unwrap_or_default())
                .call_id(ok.call_id().unwrap_or_default())
                .cseq(seq)
                .build()
        };
        let ack = build(self, Method::Ack, seq);
        self.tx.send_stateless(&ack, flow);
        let bye = build(self, Method::Bye, seq.saturating_add(1));
        self.originate(bye, flow, Own::Message, now);
    }

    // ---- helpers -------------------------------------------------------------------

    fn cancel_branch(&mut self, client: TxId, reason: Option<&str>, now: Instant) {
        let (Some(flow), Some(invite)) = (self.tx.flow(client), self.tx.client_request(client))
        else {
            return;
        };
        let Ok(mut cancel) = sip::builder::cancel_for(invite) else {
            return;
        };
        if let Some(r) = reason {
            cancel.append_header("Reason", r);
        }
        if let Err(e) = self.tx.send_request(cancel, flow, now) {
            tracing::debug!("CANCEL not sent: {e}");
        }
    }

    fn progress(&self, call_id: &str, p: Progress, now: Instant) {
        tracing::debug!(%call_id, ?p, "progress");
        self.observer.progress(call_id, p, self.wall(now));
    }

    fn wall(&self, now: Instant) -> SystemTime {
        self.anchor.1 + now.saturating_duration_since(self.anchor.0)
    }

    fn record_route(&self) -> String {
        let a = self.cfg.address;
        format!("<sip:{}:{};lr>", sip::uri::ip_host(a.ip()), a.port())
    }

    fn our_via(&mut self, protocol: Protocol) -> String {
        let a = self.cfg.address;
        Via::new(
            protocol.as_str(),
            &sip::uri::ip_host(a.ip()),
            Some(a.port()),
            &self.ids.branch(),
        )
        .to_string()
    }

    fn simple(&mut self, id: TxId, req: &Message, code: u16, now: Instant) {
        let r = sip::uas::simple(req, code, &mut self.ids);
        self.respond(id, r, now);
    }

    fn respond(&mut self, id: TxId, r: Result<Message, sip::ParseError>, now: Instant) {
        if let Err(u) = sip::uas::respond(&mut self.tx, id, r, now) {
            self.drop_input(u.remote, &u.reason);
        }
    }

    fn drop_input(&mut self, from: SocketAddr, why: &dyn std::fmt::Display) {
        self.stats.dropped += 1;
        tracing::debug!(%from, "dropped: {why}");
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn set_timer(&mut self, at: Instant, t: Timer) {
        let seq = self.next_seq();
        self.timers.insert((at, seq), t);
    }
}

/// A live third-party registration of one identity of an implicit set.
struct Registered {
    /// When it expires unless refreshed.
    until: Instant,
    /// The set's telephone identity (a tel URI, or a SIP URI with `user=phone`), shown as
    /// the callee's number.
    tel: Option<String>,
}

/// A telephone-number identity: `tel:` (RFC 3966) or `sip:…;user=phone` (RFC 3261 §19.1.6).
fn is_telephone(uri: &sip::Uri) -> bool {
    uri.scheme == sip::uri::Scheme::Tel
        || uri
            .params
            .get("user")
            .is_some_and(|u| u.eq_ignore_ascii_case("phone"))
}

/// The call's Call-ID, its callee's identity key, and what late registration remembers of
/// it when `outcome` is one a late device is told about.
fn late_entry(call: &Call, outcome: Progress) -> (String, String, Option<EndedCall>) {
    let kind = match outcome {
        Progress::Cancelled => Some(LateKind::Missed),
        Progress::AnsweredElsewhere => Some(LateKind::AnsweredElsewhere),
        _ => None,
    };
    let ended = kind.map(|kind| EndedCall {
        call_id: call.call_id.clone(),
        callee: call.callee.clone(),
        caller: call.caller.clone(),
        kind,
        invite: call.invite.clone(),
    });
    (call.call_id.clone(), call.callee_key.clone(), ended)
}

/// The identity key of a URI string (RFC 3261 §10.3 canonical form), the string itself
/// when it does not parse.
fn key(uri: &str) -> String {
    sip::Uri::parse(uri)
        .map(|u| u.aor())
        .unwrap_or_else(|_| uri.to_string())
}

/// True unless the S-CSCF said the AS serves the caller (`P-Served-User: …;sescase=orig`,
/// RFC 5502 §6): without the header an INVITE counts as terminating (module docs).
fn terminating(fwd: &Message) -> bool {
    match fwd.header("P-Served-User").map(NameAddr::parse) {
        Some(Ok(na)) => !na
            .params
            .get("sescase")
            .is_some_and(|s| s.eq_ignore_ascii_case("orig")),
        _ => true,
    }
}

/// `Reason: SIP;cause=200` (RFC 3326; TS 24.229 §5.4.3.3): the call was answered by
/// another device of the callee.
fn answered_elsewhere(reason: &str) -> bool {
    reason.split(',').any(|r| {
        let mut parts = r.split(';').map(str::trim);
        let proto = parts.next().unwrap_or_default();
        proto.eq_ignore_ascii_case("SIP")
            && parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("cause") && v.trim() == "200"
                })
            })
    })
}

/// Who calls, for the late notice's text: the display name and the number (or user) of
/// the first P-Asserted-Identity (a `tel:` one preferred), else of From; `Anonymous`
/// when the caller asked for privacy (RFC 3323) or From is the anonymous URI.
pub(crate) fn describe_caller(pai: &[String], from: &str, privacy: Option<&str>) -> String {
    let private = privacy.is_some_and(|p| {
        p.split(';').map(str::trim).any(|v| {
            ["id", "header", "user"]
                .iter()
                .any(|x| v.eq_ignore_ascii_case(x))
        })
    });
    if private {
        return "Anonymous".into();
    }
    let parsed: Vec<NameAddr> = pai.iter().filter_map(|p| NameAddr::parse(p).ok()).collect();
    let chosen = parsed
        .iter()
        .find(|n| n.uri.scheme == sip::Scheme::Tel)
        .or_else(|| parsed.first())
        .cloned()
        .or_else(|| NameAddr::parse(from).ok());
    let Some(na) = chosen else {
        return "an unknown caller".into();
    };
    if na.uri.host.eq_ignore_ascii_case("anonymous.invalid") {
        return "Anonymous".into();
    }
    let display = na
        .display
        .clone()
        .or_else(|| parsed.iter().find_map(|n| n.display.clone()))
        .filter(|d| !d.trim().is_empty());
    let who = na.uri.user.clone().unwrap_or_else(|| na.uri.host.clone());
    match display {
        Some(d) => format!("{d} ({who})"),
        None => who,
    }
}
