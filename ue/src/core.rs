//! [`Ue`]: the sans-IO UE, a transaction layer with the registration on top, in the shape
//! of quinn-proto's `Connection` (`handle_*` in, `poll_*` out, `now` passed in).
//!
//! Responses are routed by client transaction: the registration only sees the answers to
//! its own REGISTERs, the calls ([`crate::call`]) the answers to theirs. Requests from the
//! network that belong to calls or are MESSAGEs go to the calls, NOTIFYs of the reg event
//! subscription to [`crate::regevent`]; OPTIONS is answered 200 and anything else 501, so
//! the network is never left waiting.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use sip::transaction::{
    Config as TxConfig, Event as TxEvent, RequestOutcome, ResponseOutcome, Transactions, TxId,
};
use sip::{Flow, Message, Method, ResponseBuilder, Transmit, Uri};
use xfrm::{SaSet, SetId};

use crate::call::{CallError, CallOut, CallPhase, CallRef, Calls, Net};
use crate::config::{ConfigError, UeConfig};
use crate::event::{EventKind, Note, SaInstallError, UeEvent};
use crate::media::MediaStats;
use crate::regevent::{RegEvent, SubOut};
use crate::reginfo::ContactEvent;
use crate::registration::{Output, RegState, Registration, SaAction};
use crate::summary::summarize;

/// Who a client transaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Registration,
    Call,
    RegEvent,
}

/// A simulated IMS UE without I/O.
#[derive(Debug)]
pub struct Ue {
    reg: Registration,
    calls: Calls,
    regevent: RegEvent,
    impu: Uri,
    tx: Transactions,
    owners: HashMap<TxId, Owner>,
    actions: VecDeque<SaAction>,
    events: VecDeque<UeEvent>,
    /// Which transport our requests take ([`Ue::set_size_rule`]).
    size_rule: sip::SizeRule,
}

impl Ue {
    /// A UE that has not registered yet.
    pub fn new(cfg: UeConfig) -> Result<Ue, ConfigError> {
        cfg.validate()?;
        let impu = cfg.impu_uri()?;
        let tx = Transactions::new(TxConfig {
            timers: cfg.timers,
            ..TxConfig::default()
        });
        Ok(Ue {
            calls: Calls::new(cfg.calls.clone(), cfg.media.clone(), cfg.timers),
            regevent: RegEvent::new(cfg.reg_event_expires),
            reg: Registration::new(cfg, impu.clone()),
            impu,
            tx,
            owners: HashMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            // UDP only until the shell says the path carries TCP.
            size_rule: sip::SizeRule::default().without_tcp(),
        })
    }

    /// The RFC 3261 §18.1.1 size rule for our requests (all of which go to the P-CSCF):
    /// one larger than `rule.threshold` goes over TCP, from our protected client port to
    /// the P-CSCF's protected server port once registered (TS 24.229 §5.1.1.2), and back
    /// over UDP if the P-CSCF refuses. Until this is called every request stays on UDP.
    pub fn set_size_rule(&mut self, rule: sip::SizeRule) {
        self.size_rule = rule;
    }

    // ---- getters -------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &UeConfig {
        self.reg.config()
    }

    /// Registration state.
    pub fn state(&self) -> RegState {
        self.reg.state()
    }

    /// Whether a binding is confirmed.
    pub fn is_registered(&self) -> bool {
        self.reg.is_registered()
    }

    /// The registration (Service-Route, P-Associated-URI, SA sets).
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    /// The established SA set in use.
    pub fn current_set(&self) -> Option<&SaSet> {
        self.reg.current_set()
    }

    /// Live client and server transactions.
    pub fn transaction_count(&self) -> usize {
        self.tx.len()
    }

    // ---- commands ------------------------------------------------------------------

    /// Start the initial registration.
    pub fn register(&mut self, now: Instant) {
        self.reg.register(now);
        self.pump(now);
    }

    /// Re-register (new SA set if the network re-authenticates).
    pub fn reregister(&mut self, now: Instant) {
        self.reg.reregister(now);
        self.pump(now);
    }

    /// Deregister and retire the SAs; the reg event subscription is ended first
    /// (`Expires: 0`), so the notifier does not report our own deregistration to us.
    pub fn deregister(&mut self, now: Instant) {
        if self.reg.state() == RegState::Registered {
            let net = self.net();
            self.regevent.unsubscribe(&net, now);
            // the unsubscribe leaves first
            self.pump(now);
        }
        self.reg.deregister(now);
        self.pump(now);
    }

    /// Places a call to `target` (`sip:…` or `tel:…`): an INVITE with an SDP offer over
    /// the SA to the P-CSCF, routed by the Service-Route.
    pub fn call(&mut self, target: &str, now: Instant) -> Result<CallRef, CallError> {
        let net = self.net();
        let r = self.calls.call(target, &net, now)?;
        self.pump(now);
        Ok(r)
    }

    /// Answers a ringing incoming call (200 OK with the SDP answer).
    pub fn answer(&mut self, call: CallRef, now: Instant) -> Result<(), CallError> {
        let net = self.net();
        let r = self.calls.answer(call, &net, now);
        self.pump(now);
        r
    }

    /// Rejects a ringing incoming call with `code` (486 busy, 603 decline …).
    pub fn reject(&mut self, call: CallRef, code: u16, now: Instant) -> Result<(), CallError> {
        let r = self.calls.reject(call, code);
        self.pump(now);
        r
    }

    /// Ends a call: CANCEL before the answer, BYE after it (603 for an incoming call that
    /// still rings).
    pub fn hangup(&mut self, call: CallRef, now: Instant) -> Result<(), CallError> {
        let net = self.net();
        let r = self.calls.hangup(call, &net, now);
        self.pump(now);
        r
    }

    /// Refreshes an established call's session with an UPDATE without SDP (RFC 4028,
    /// RFC 3311).
    pub fn refresh(&mut self, call: CallRef, now: Instant) -> Result<(), CallError> {
        let net = self.net();
        let r = self.calls.refresh(call, &net);
        self.pump(now);
        r
    }

    /// Refreshes an established call's session with a re-INVITE carrying a new offer.
    pub fn reinvite(&mut self, call: CallRef, now: Instant) -> Result<(), CallError> {
        let net = self.net();
        let r = self.calls.reinvite(call, &net);
        self.pump(now);
        r
    }

    /// Sends a pager-mode MESSAGE (RFC 3428, text/plain); the outcome comes as
    /// [`EventKind::MessageSent`] with the id returned here.
    pub fn send_message(
        &mut self,
        target: &str,
        text: &str,
        now: Instant,
    ) -> Result<u64, CallError> {
        let net = self.net();
        let id = self.calls.message(target, text, &net, now)?;
        self.pump(now);
        Ok(id)
    }

    /// Sends a DTMF digit (`0`–`9`, `*`, `#`, `A`–`D`) as an RFC 4733 telephone-event in
    /// an answered call's RTP.
    pub fn send_dtmf(&mut self, call: CallRef, digit: char) -> Result<(), CallError> {
        self.calls.send_dtmf(call, digit)
    }

    /// The RTP statistics of a live call so far (`None` without RTP); the final ones come
    /// as [`EventKind::CallMedia`].
    pub fn media_stats(&self, call: CallRef) -> Option<MediaStats> {
        self.calls.media_stats(call)
    }

    /// The RTP port the SDP announces: the shell sets it to the port it really bound
    /// (before any call).
    pub fn set_rtp_port(&mut self, port: u16) {
        self.calls.set_rtp_port(port);
    }

    /// Where a call is (`None` for unknown calls; ended ones are remembered for a while).
    pub fn call_phase(&self, call: CallRef) -> Option<CallPhase> {
        self.calls.phase(call)
    }

    /// Whether a reg event subscription is up (or being set up), not ending.
    pub fn is_subscribed(&self) -> bool {
        self.regevent.is_alive()
    }

    /// Whether a call is in progress (cheaper than [`Ue::calls`]).
    pub fn has_calls(&self) -> bool {
        self.calls.has_calls()
    }

    /// The calls in progress.
    pub fn calls(&self) -> Vec<(CallRef, CallPhase)> {
        self.calls.live()
    }

    // ---- inputs --------------------------------------------------------------------

    /// Bytes received on `flow` (from a socket or decrypted by userspace ESP).
    pub fn handle_datagram(&mut self, flow: Flow, data: &[u8], now: Instant) {
        match Message::parse(data) {
            Ok(m) => self.handle_message(m, flow, now),
            Err(sip::ParseError::Empty) => {}
            Err(error) => self.note(
                now,
                Note::Unparsable {
                    from: flow.remote,
                    error,
                },
            ),
        }
    }

    /// A parsed message received on `flow`.
    pub fn handle_message(&mut self, msg: Message, flow: Flow, now: Instant) {
        let local = flow
            .local
            .unwrap_or_else(|| SocketAddr::new(self.config().local_ip, self.config().port));
        self.events.push_back(UeEvent {
            at: now,
            kind: EventKind::Received {
                summary: summarize(&msg),
                from: flow.remote,
                to: local,
                protected: self.reg.is_protected_port(local),
            },
        });
        if msg.is_request() {
            self.handle_request(msg, flow, now);
        } else {
            match self.tx.handle_response(msg, now) {
                Ok(ResponseOutcome::Deliver { id, response }) => match self.owners.get(&id) {
                    Some(Owner::Registration) => self.reg.handle_response(id, &response, now),
                    Some(Owner::Call) => {
                        let net = self.net();
                        self.calls.handle_response(id, &response, &net, now);
                    }
                    Some(Owner::RegEvent) => self.regevent.handle_response(id, &response, now),
                    None => {}
                },
                Ok(ResponseOutcome::Absorbed(_)) => {}
                Ok(ResponseOutcome::Stray(m)) => self.note(now, Note::StrayResponse(summarize(&m))),
                Err(e) => self.note(now, Note::UnusableResponse(e)),
            }
        }
        self.pump(now);
    }

    fn handle_request(&mut self, msg: Message, flow: Flow, now: Instant) {
        match self.tx.handle_request(msg, flow, now) {
            Ok(RequestOutcome::New { id, request }) => {
                if self.regevent.is_ours(&request) {
                    let net = self.net();
                    let own = self.reg.dialog_contact().uri;
                    let preferred = self.config().calls.preferred_identity.clone();
                    self.regevent.handle_notify(
                        id,
                        &request,
                        &own,
                        &net,
                        preferred.as_deref(),
                        now,
                    );
                    return;
                }
                let for_calls = matches!(
                    request.method(),
                    Some(
                        Method::Invite
                            | Method::Cancel
                            | Method::Bye
                            | Method::Prack
                            | Method::Update
                            | Method::Info
                            | Method::Message
                    )
                ) || (request.method() != Some(&Method::Register)
                    && request.to_header().is_ok_and(|t| t.tag().is_some()));
                let request = if for_calls {
                    let cancelled = match request.method() {
                        Some(Method::Cancel) => self.tx.invite_for_cancel(&request),
                        _ => None,
                    };
                    let net = self.net();
                    if self
                        .calls
                        .handle_request(id, request.clone(), cancelled, &net, now)
                    {
                        return;
                    }
                    request
                } else {
                    request
                };
                // Not handled: answer so the network's
                // transaction ends (RFC 3261 §8.2.1).
                let code = match request.method() {
                    Some(Method::Options) => 200,
                    _ => 501,
                };
                let resp = ResponseBuilder::new(&request, code)
                    .to_tag(&sip::new_tag())
                    .build();
                match resp {
                    Ok(r) => {
                        self.note(
                            now,
                            Note::Answering {
                                method: request.method().cloned(),
                                code,
                            },
                        );
                        self.sent_event(&r, flow, now);
                        if let Err(e) = self.tx.respond(id, r, now) {
                            self.note(now, Note::CannotRespond(e));
                        }
                    }
                    Err(e) => self.note(now, Note::CannotBuildResponse(e)),
                }
            }
            Ok(RequestOutcome::Ack { request, .. }) => {
                let net = self.net();
                self.calls.handle_ack(&request, &net, now);
            }
            Ok(_) => {}
            Err(e) => self.note(now, Note::UnusableRequest(e)),
        }
    }

    /// A datagram that arrived on the UE's RTP port from `from` (plain UDP: media is not
    /// inside the SAs).
    pub fn handle_media(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        self.calls.handle_media(from, data, now);
        self.pump(now);
    }

    /// The shell's answer to [`SaAction::Install`]: the backend id, or why it failed.
    pub fn handle_sa_installed(
        &mut self,
        generation: u64,
        result: Result<SetId, SaInstallError>,
        now: Instant,
    ) {
        self.reg.handle_sa_installed(generation, result, now);
        self.pump(now);
    }

    /// The shell could not send a [`Transmit`] of transaction `tx` (RFC 3261 §17.1.4): a
    /// request the size rule moved to TCP goes again over UDP (§18.1.1), anything else
    /// fails its transaction.
    pub fn handle_transport_error(&mut self, tx: TxId, now: Instant) {
        self.tx.handle_transport_error(tx, now);
        self.pump(now);
    }

    /// Timers: transaction retransmissions/timeouts, SA deletions, the refresh.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.reg.handle_timeout(now);
        if self.regevent.poll_timeout().is_some_and(|t| t <= now) {
            let net = self.net();
            self.regevent.handle_timeout(&net, now);
        }
        if self.calls.poll_timeout().is_some_and(|t| t <= now) {
            let net = self.net();
            self.calls.handle_timeout(&net, now);
        }
        self.pump(now);
    }

    // ---- outputs -------------------------------------------------------------------

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    /// The next RTP packet due at `now`, written into `buf` (1500 bytes is plenty): its
    /// length and destination, sent from the UE's RTP port. Call until `None` after every
    /// input and timeout.
    pub fn poll_media_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        self.calls.poll_media_transmit(now, buf)
    }

    /// Next IPsec action for the shell.
    pub fn poll_action(&mut self) -> Option<SaAction> {
        self.actions.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<UeEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline at which [`Ue::handle_timeout`] must be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        [
            self.tx.poll_timeout(),
            self.reg.poll_timeout(),
            self.calls.poll_timeout(),
            self.regevent.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- internals -----------------------------------------------------------------

    /// What the calls need from the registration, as it is now.
    fn net(&self) -> Net {
        let cfg = self.reg.config();
        let flow = self.reg.request_flow();
        Net {
            flow,
            local: flow
                .local
                .unwrap_or_else(|| SocketAddr::new(cfg.local_ip, cfg.port)),
            service_route: self.reg.service_route().to_vec(),
            verify: self.reg.security_verify(),
            contact: self.reg.dialog_contact(),
            impu: self.impu.clone(),
            registered: self.reg.is_registered(),
            pani: cfg.access_network_info.clone(),
            user_agent: cfg.user_agent.clone(),
        }
    }

    /// TS 24.229 §5.1.1.7: the network ended our registration; drop it with its SAs (the
    /// registration reports [`EventKind::DeregisteredByNetwork`]) and, if so configured,
    /// register again after a `deactivated` one.
    fn network_deregistration(&mut self, event: ContactEvent, now: Instant) {
        if !self.reg.network_deregistered(event, now) {
            return;
        }
        self.regevent.registration_gone(now);
        if event == ContactEvent::Deactivated && self.config().reregister_on_deactivation {
            self.reg.register(now);
        }
    }

    fn note(&mut self, now: Instant, note: Note) {
        self.events.push_back(UeEvent {
            at: now,
            kind: EventKind::Note(note),
        });
    }

    fn sent_event(&mut self, m: &Message, flow: Flow, now: Instant) {
        let from = flow
            .local
            .unwrap_or_else(|| SocketAddr::new(self.config().local_ip, self.config().port));
        self.events.push_back(UeEvent {
            at: now,
            kind: EventKind::Sent {
                summary: summarize(m),
                from,
                to: flow.remote,
                protected: self.reg.is_protected_port(from),
            },
        });
    }

    /// Moves the registration's outputs into transactions, actions and events, and the
    /// transaction layer's events back into the registration, until both are quiet.
    fn pump(&mut self, now: Instant) {
        let mut subscribe = false;
        loop {
            let mut progressed = false;
            while let Some(o) = self.reg.poll_output() {
                progressed = true;
                match o {
                    Output::Request(m, flow) => {
                        self.sent_event(&m, flow, now);
                        match self.tx.send_request_sized(m, flow, &self.size_rule, now) {
                            Ok(id) => {
                                self.owners.insert(id, Owner::Registration);
                                self.reg.sent(id);
                            }
                            Err(e) => self.note(now, Note::CannotSend(e)),
                        }
                    }
                    Output::Sa(a) => self.actions.push_back(a),
                    Output::Event(e) => {
                        if let EventKind::Registered(r) = &e.kind {
                            // TS 24.229 §5.1.1.3: subscribe after the initial registration;
                            // after a re-registration only if the subscription is gone.
                            subscribe |= r.procedure == crate::event::Procedure::Initial
                                || !self.regevent.is_alive();
                        }
                        self.events.push_back(e);
                    }
                }
            }
            if !self.reg.is_registered() {
                self.regevent.registration_gone(now);
            } else if std::mem::take(&mut subscribe) && self.config().reg_event {
                let net = self.net();
                let preferred = self.config().calls.preferred_identity.clone();
                self.regevent.subscribe(&net, preferred.as_deref());
            }
            while let Some(o) = self.regevent.poll_output() {
                progressed = true;
                match o {
                    SubOut::Request(m, flow) => {
                        self.sent_event(&m, flow, now);
                        match self.tx.send_request_sized(m, flow, &self.size_rule, now) {
                            Ok(id) => {
                                self.owners.insert(id, Owner::RegEvent);
                                self.regevent.sent(id);
                            }
                            Err(e) => self.note(now, Note::CannotSend(e)),
                        }
                    }
                    SubOut::Respond(id, m) => {
                        if let Some(flow) = self.tx.flow(id) {
                            self.sent_event(&m, flow, now);
                        }
                        if let Err(e) = self.tx.respond(id, m, now) {
                            self.note(now, Note::CannotRespond(e));
                        }
                    }
                    SubOut::Event(kind) => self.events.push_back(UeEvent { at: now, kind }),
                    SubOut::NetworkDeregistration(event) => self.network_deregistration(event, now),
                }
            }
            while let Some(o) = self.calls.poll_output() {
                progressed = true;
                match o {
                    CallOut::Request(m, flow, purpose) => {
                        self.sent_event(&m, flow, now);
                        match self.tx.send_request_sized(m, flow, &self.size_rule, now) {
                            Ok(id) => {
                                self.owners.insert(id, Owner::Call);
                                self.calls.sent(id, purpose);
                            }
                            Err(e) => self.note(now, Note::CannotSend(e)),
                        }
                    }
                    CallOut::Respond(id, m) => {
                        if let Some(flow) = self.tx.flow(id) {
                            self.sent_event(&m, flow, now);
                        }
                        if let Err(e) = self.tx.respond(id, m, now) {
                            self.note(now, Note::CannotRespond(e));
                        }
                    }
                    CallOut::Stateless(m, flow) => {
                        self.sent_event(&m, flow, now);
                        self.tx.send_stateless(&m, flow);
                    }
                    CallOut::Resend(id, m) => {
                        if let Err(e) = self.tx.respond(id, m, now) {
                            self.note(now, Note::CannotRespond(e));
                        }
                    }
                    CallOut::ResendStateless(m, flow) => self.tx.send_stateless(&m, flow),
                    CallOut::Event(kind) => self.events.push_back(UeEvent { at: now, kind }),
                }
            }
            while let Some(e) = self.tx.poll_event() {
                progressed = true;
                match e {
                    TxEvent::Timeout { id, .. } | TxEvent::TransportError { id } => {
                        if self.owners.get(&id) == Some(&Owner::Registration) {
                            self.reg.handle_tx_failure(id, now);
                        } else if self.owners.get(&id) == Some(&Owner::RegEvent) {
                            self.regevent.handle_tx_failure(id, now);
                        } else if self.calls.owns(id) {
                            let net = self.net();
                            self.calls.handle_tx_failure(id, &net, now);
                        }
                    }
                    TxEvent::Terminated { id } => {
                        self.owners.remove(&id);
                        self.calls.terminated(id);
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }
}
