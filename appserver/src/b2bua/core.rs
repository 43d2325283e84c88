//! [`B2bCore`]: the sans-IO B2BUA. See the module docs of [`crate::b2bua`].
//!
//! Each call has two legs: the one whose INVITE we received (we are its UAS) and the one we
//! call out on (its UAC). Which of them is [`Leg::Ims`] depends on the direction. Both share
//! one transaction table (RFC 3261 §17); flows carry the local socket, which tells the ISC
//! side from the peer side.

use super::sdp_oa;
use crate::media_api::{Allocated, Leg, MediaControl, MediaId};
use bytes::Bytes;
use sdp::Session;
use sip::dialog::{parse_rack, Dialog, DialogError, DialogState};
use sip::ims::hdr;
use sip::transaction::{self, Event, RequestOutcome, ResponseOutcome, Transactions, TxId};
use sip::{
    proxy, Flow, Limits, Message, Method, NameAddr, Protocol, RequestBuilder, ResponseBuilder,
    Scheme, Transmit, Uri, Via,
};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// RFC 4028 §4: the smallest Session-Expires anybody may ask for.
pub const MIN_SE: u32 = 90;
/// Methods we answer (Allow).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, OPTIONS";
/// What our INVITEs and 2xx say we support.
const SUPPORTED: &str = "100rel, timer";
/// How long a call that ended waits for its outgoing INVITE's final answer (CANCEL sent or
/// about to be) before it is forgotten: Timer B's 64·T1 with the default T1.
const ENDING_GRACE: Duration = Duration::from_secs(32);

/// The core's settings, resolved by its host ([`crate::b2bua::BridgeConfig::core`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// The ISC socket as bound (flows from and to it).
    pub isc_local: SocketAddr,
    /// The ISC side's address in Via and Contact.
    pub isc_address: SocketAddr,
    /// The peer-side socket as bound.
    pub peer_local: SocketAddr,
    /// The peer side's address in Via and Contact.
    pub peer_address: SocketAddr,
    /// The S-CSCF (trusted; next hop of inbound calls).
    pub scscf: Option<SocketAddr>,
    /// Other trusted ISC addresses.
    pub trusted: Vec<IpAddr>,
    /// The peer's URI (its host and port make the Request-URI of outbound calls).
    pub peer: Uri,
    /// Where the peer is reached; the only IP that may call in.
    pub peer_addr: SocketAddr,
    /// The transport toward the peer.
    pub peer_protocol: Protocol,
    /// Dialled-number prefixes of the SIP side.
    pub prefixes: Vec<String>,
    /// Domain of `sip:` callee URIs of inbound calls (`tel:` without).
    pub ims_domain: Option<String>,
    /// Session-Expires we ask for and grant (0: none).
    pub session_expires: u32,
    /// How long a call may ring.
    pub ring_timeout: Duration,
    /// How long an answered call may last.
    pub max_duration: Duration,
    /// Offer the callee the caller's codecs first.
    pub offer_caller_codecs: bool,
    /// Registration with the peer, and the credentials for its challenges.
    pub register: Option<super::RegisterConfig>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls from the IMS toward the peer.
    pub outbound: u64,
    /// Calls from the peer toward a subscriber.
    pub inbound: u64,
    /// Calls answered (both legs confirmed).
    pub answered: u64,
    /// Calls ended (any way).
    pub ended: u64,
    /// Initial INVITEs refused (untrusted, no number, no codec, no ports).
    pub refused: u64,
    /// Input dropped (unparsable, unmatched).
    pub dropped: u64,
}

/// A call of this core (a local handle, numbered from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// What the core reports to its host (logs, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum B2bEvent {
    /// A call started: `from` calls `to`; `inbound` when the peer called.
    Started {
        /// The call.
        call: CallId,
        /// True for peer → subscriber.
        inbound: bool,
        /// The caller's number.
        from: String,
        /// The dialled number.
        to: String,
        /// Its media session.
        media: MediaId,
    },
    /// The callee answered; both legs are up.
    Answered {
        /// The call.
        call: CallId,
    },
    /// The call ended; both legs are over (or being ended).
    Ended {
        /// The call.
        call: CallId,
        /// Why, for logs: `"BYE from caller"`, `"487"`, `"media timeout"`, …
        why: String,
    },
}

/// Which of a call's two legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    /// The leg whose INVITE we received.
    Uas,
    /// The leg we called out on.
    Uac,
}

/// What a client transaction of ours is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The outgoing leg's INVITE.
    Invite,
    /// A session refresh UPDATE on `Side`.
    Refresh(Side),
    /// Our REGISTER with the peer.
    Register,
    /// Anything whose answer changes nothing (BYE, PRACK, CANCEL).
    Fire,
}

/// How long after a failed registration we try again.
const REGISTER_RETRY: Duration = Duration::from_secs(60);

/// Our registration with the peer (RFC 3261 §10.2): one Call-ID and From tag for all
/// REGISTERs, CSeq counting up.
#[derive(Debug)]
struct RegState {
    call_id: String,
    tag: String,
    cseq: u32,
    next_at: Option<Instant>,
    /// Challenges answered in a row (a wrong password must not loop).
    tries: u32,
    registered: bool,
}

/// A response we retransmit ourselves: a 2xx to INVITE until its ACK (RFC 3261
/// §13.3.1.4), a reliable provisional until its PRACK (RFC 3262 §3).
#[derive(Debug, Clone)]
struct Retrans {
    tx: TxId,
    msg: Message,
    next: Instant,
    interval: Duration,
    until: Instant,
    /// RSeq of a reliable provisional.
    rseq: u32,
}

/// One leg's SIP and SDP state.
#[derive(Debug)]
struct LegState {
    leg: Leg,
    /// The socket the leg's messages leave from.
    local: SocketAddr,
    /// Our address in Via and Contact on this leg.
    address: SocketAddr,
    /// The media address the plane gave this leg.
    media: SocketAddr,
    local_tag: String,
    dialog: Option<Dialog>,
    local_sdp: Option<Session>,
    remote_sdp: Option<Session>,
    session_id: String,
    sdp_version: u64,
    /// A 2xx waiting for its ACK.
    ok: Option<Retrans>,
    /// A reliable provisional waiting for its PRACK.
    rel: Option<Retrans>,
    rseq: u32,
    /// We sent our offer in a 2xx to an offerless re-INVITE: the ACK brings the answer.
    offer_in_ok: bool,
    /// Session timer (RFC 4028): when we refresh, or when the session runs out.
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
    session_expires: u32,
}

impl LegState {
    fn new(leg: Leg, local: SocketAddr, address: SocketAddr, media: SocketAddr) -> LegState {
        LegState {
            leg,
            local,
            address,
            media,
            local_tag: String::new(),
            dialog: None,
            local_sdp: None,
            remote_sdp: None,
            session_id: String::new(),
            sdp_version: 1,
            ok: None,
            rel: None,
            rseq: 0,
            offer_in_ok: false,
            refresh_at: None,
            expires_at: None,
            session_expires: 0,
        }
    }

    fn contact(&self) -> String {
        format!(
            "<sip:b2bua@{}:{}>",
            sip::uri::ip_host(self.address.ip()),
            self.address.port()
        )
    }

    fn confirmed(&self) -> bool {
        self.dialog
            .as_ref()
            .is_some_and(|d| d.state() == DialogState::Confirmed)
    }

    fn deadline(&self) -> Option<Instant> {
        [
            self.ok.as_ref().map(|r| r.next.min(r.until)),
            self.rel.as_ref().map(|r| r.next.min(r.until)),
            self.refresh_at,
            self.expires_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The outgoing INVITE has no final answer yet.
    Setup,
    /// Both legs are confirmed.
    Answered,
    /// Ended; waiting for the outgoing INVITE's final answer to a CANCEL.
    Ending,
}

#[derive(Debug)]
struct Call {
    id: CallId,
    inbound: bool,
    media: Allocated,
    phase: Phase,
    uas: LegState,
    uac: LegState,
    /// The INVITE we received and its server transaction.
    uas_invite: Message,
    uas_tx: TxId,
    /// A final response went out on the UAS leg's INVITE.
    uas_final: bool,
    /// The caller takes reliable provisionals (RFC 3262: Require or Supported 100rel).
    rel100: bool,
    /// Our 2xx must wait for the PRACK of a reliable provisional that carried our answer
    /// (RFC 3262 §3).
    ok_after_prack: bool,
    /// Our answer on the UAS leg went out in a reliable response.
    answer_sent: bool,
    /// The outgoing INVITE was sent again with credentials (once).
    auth_sent: bool,
    /// The outgoing INVITE and its client transaction.
    uac_invite: Message,
    uac_tx: Option<TxId>,
    uac_provisional: bool,
    uac_final: bool,
    /// The ACK of the outgoing INVITE's 2xx and where it went (re-sent on retransmitted
    /// 2xx, §13.2.2.4).
    uac_ack: Option<(Message, Flow)>,
    /// End the outgoing INVITE as soon as it can be: CANCEL at its first provisional, BYE
    /// after a 2xx.
    cancel_pending: bool,
    cancel_reason: Option<String>,
    /// Ringing ends here; the whole call at `max_at`; an ended call is forgotten at
    /// `forget_at`.
    ring_until: Instant,
    max_at: Option<Instant>,
    forget_at: Option<Instant>,
    /// The caller's session timer as its INVITE asked: (delta, refresher is uac).
    uas_timer: Option<u32>,
}

impl Call {
    fn side_mut(&mut self, s: Side) -> &mut LegState {
        match s {
            Side::Uas => &mut self.uas,
            Side::Uac => &mut self.uac,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let ring = (self.phase == Phase::Setup).then_some(self.ring_until);
        [
            ring,
            self.max_at,
            self.forget_at,
            self.uas.deadline(),
            self.uac.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The B2BUA core. Feed it with `handle_*`, drain [`B2bCore::poll_transmit`] and
/// [`B2bCore::poll_event`], call [`B2bCore::handle_timeout`] at [`B2bCore::poll_timeout`].
pub struct B2bCore {
    cfg: CoreConfig,
    media: Arc<dyn MediaControl>,
    tx: Transactions,
    t1: Duration,
    t2: Duration,
    ids: sip::Ids,
    limits: Limits,
    calls: HashMap<CallId, Call>,
    next_call: u64,
    by_server: HashMap<TxId, CallId>,
    by_client: HashMap<TxId, (CallId, Purpose)>,
    /// (Call-ID, our tag) of each leg's dialog.
    by_dialog: HashMap<(String, String), (CallId, Side)>,
    by_media: HashMap<MediaId, CallId>,
    reg: Option<RegState>,
    /// Digest nonce-count (RFC 2617 §3.2.2).
    nc: u32,
    events: VecDeque<B2bEvent>,
    stats: Stats,
}

impl B2bCore {
    /// A core with no calls, driving `media`.
    pub fn new(cfg: CoreConfig, media: Arc<dyn MediaControl>) -> B2bCore {
        let tc = transaction::Config::default();
        B2bCore {
            cfg,
            media,
            tx: Transactions::new(tc),
            t1: tc.timers.t1,
            t2: tc.timers.t2,
            ids: sip::Ids::from_entropy(),
            limits: Limits::default(),
            calls: HashMap::new(),
            next_call: 0,
            by_server: HashMap::new(),
            by_client: HashMap::new(),
            by_dialog: HashMap::new(),
            by_media: HashMap::new(),
            reg: None,
            nc: 0,
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Takes tags, branches and Call-IDs from `ids` (seeded: reproducible tests).
    pub fn with_ids(mut self, ids: sip::Ids) -> B2bCore {
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

    /// Calls in progress (ringing, answered, or ending).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Live SIP transactions.
    pub fn transaction_count(&self) -> usize {
        self.tx.len()
    }

    /// True while our registration with the peer holds (`[bridge.register]`).
    pub fn registered(&self) -> bool {
        self.reg.as_ref().is_some_and(|r| r.registered)
    }

    /// The host started: the registration with the peer (if configured) begins now.
    pub fn handle_start(&mut self, now: Instant) {
        if self.cfg.register.is_some() && self.reg.is_none() {
            let host = sip::uri::ip_host(self.cfg.peer_address.ip());
            self.reg = Some(RegState {
                call_id: self.ids.call_id(Some(&host)),
                tag: self.ids.tag(),
                cseq: 0,
                next_at: Some(now),
                tries: 0,
                registered: false,
            });
        }
    }

    // ---- outputs -------------------------------------------------------------------

    /// Next datagram or stream write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    /// Next event for the host.
    pub fn poll_event(&mut self) -> Option<B2bEvent> {
        self.events.pop_front()
    }

    /// When [`B2bCore::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ours = self.calls.values().filter_map(Call::deadline).min();
        let reg = self.reg.as_ref().and_then(|r| r.next_at);
        let ours = transaction::earliest(ours, reg);
        transaction::earliest(ours, self.tx.poll_timeout())
    }

    // ---- inputs --------------------------------------------------------------------

    /// Bytes received on `flow` (either socket).
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
                Ok(RequestOutcome::Ack { request, .. }) => self.on_ack(&request),
                Ok(_) => {}
                Err(e) => self.drop_input(flow.remote, &e),
            }
        } else {
            match self.tx.handle_response(msg, now) {
                Ok(ResponseOutcome::Deliver { id, response }) => {
                    self.on_response(id, &response, now)
                }
                Ok(ResponseOutcome::Stray(r)) => self.on_stray(&r),
                Ok(ResponseOutcome::Absorbed(_)) => {}
                Err(e) => self.drop_input(flow.remote, &e),
            }
        }
        self.drain_tx_events(now);
    }

    /// The host could not send a transmission of transaction `id`.
    pub fn handle_transport_error(&mut self, id: TxId, now: Instant) {
        self.tx.handle_transport_error(id, now);
        self.drain_tx_events(now);
    }

    /// The plane found media session `id` silent: both legs end (BYE with a Reason).
    pub fn handle_media_timeout(&mut self, id: MediaId, leg: Leg, now: Instant) {
        let Some(&call) = self.by_media.get(&id) else {
            return;
        };
        tracing::info!(?call, ?leg, "media timeout");
        let reason = format!("SIP;cause=408;text=\"RTP timeout on the {leg:?} leg\"");
        self.end_call(call, None, 408, Some(reason), "media timeout", now);
        self.drain_tx_events(now);
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.drain_tx_events(now);
        let due: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.deadline().is_some_and(|d| d <= now))
            .map(|c| c.id)
            .collect();
        for id in due {
            self.call_timers(id, now);
        }
        if self
            .reg
            .as_ref()
            .and_then(|r| r.next_at)
            .is_some_and(|t| t <= now)
        {
            self.send_register(None, now);
        }
        self.drain_tx_events(now);
    }

    // ---- registration with the peer ---------------------------------------------

    /// A REGISTER for our account at the peer, with `auth` (header name and value) after
    /// a challenge.
    fn send_register(&mut self, auth: Option<(&'static str, String)>, now: Instant) {
        let Some(rc) = self.cfg.register.clone() else {
            return;
        };
        let via = self.via(self.cfg.peer_address, self.cfg.peer_protocol);
        let Some(r) = self.reg.as_mut() else {
            return;
        };
        r.next_at = None;
        r.cseq += 1;
        let peer = &self.cfg.peer;
        let registrar = Uri::sip(None, &peer.host, peer.port);
        let aor = Uri::sip(Some(&rc.user), &peer.host, None);
        let a = self.cfg.peer_address;
        let mut b = RequestBuilder::new(Method::Register, &registrar)
            .header("Via", via)
            .max_forwards(70)
            .header("From", format_args!("<{aor}>;tag={}", r.tag))
            .header("To", format_args!("<{aor}>"))
            .call_id(&r.call_id)
            .cseq(r.cseq)
            .header(
                "Contact",
                format_args!(
                    "<sip:{}@{}:{}>",
                    rc.user,
                    sip::uri::ip_host(a.ip()),
                    a.port()
                ),
            )
            .header("Expires", rc.expires)
            .header("Allow", ALLOW);
        if let Some((name, value)) = auth {
            b = b.header(name, value);
        }
        let flow = self.peer_flow();
        match self.tx.send_request(b.build(), flow, now) {
            Ok(t) => {
                self.by_client.insert(t, (CallId(0), Purpose::Register));
            }
            Err(e) => {
                tracing::warn!("cannot send REGISTER: {e}");
                if let Some(r) = self.reg.as_mut() {
                    r.next_at = Some(now + REGISTER_RETRY);
                }
            }
        }
    }

    fn peer_flow(&self) -> Flow {
        Flow::new(
            self.cfg.peer_local,
            self.cfg.peer_addr,
            self.cfg.peer_protocol,
        )
    }

    fn register_response(&mut self, resp: &Message, now: Instant) {
        let code = resp.code().unwrap_or(500);
        let expires = self.cfg.register.as_ref().map_or(600, |r| r.expires);
        let Some(r) = self.reg.as_mut() else {
            return;
        };
        match code {
            100..=199 => {}
            200..=299 => {
                let granted = resp
                    .header("Expires")
                    .and_then(|e| e.trim().parse::<u32>().ok())
                    .unwrap_or(expires)
                    .clamp(2, expires.max(2));
                if !r.registered {
                    tracing::info!(granted, "registered with the SIP peer");
                }
                r.registered = true;
                r.tries = 0;
                r.next_at = Some(now + Duration::from_secs(u64::from(granted / 2)));
            }
            401 | 407 if r.tries < 2 => {
                r.tries += 1;
                let uri = format!(
                    "sip:{}{}",
                    self.cfg.peer.host,
                    self.cfg
                        .peer
                        .port
                        .map(|p| format!(":{p}"))
                        .unwrap_or_default()
                );
                match self.authorize(resp, &Method::Register, &uri, b"") {
                    Some(auth) => self.send_register(Some(auth), now),
                    None => self.register_failed(code, now),
                }
            }
            _ => self.register_failed(code, now),
        }
    }

    fn register_failed(&mut self, code: u16, now: Instant) {
        tracing::warn!(
            code,
            "registration with the SIP peer failed; retrying in 60 s"
        );
        if let Some(r) = self.reg.as_mut() {
            r.registered = false;
            r.tries = 0;
            r.next_at = Some(now + REGISTER_RETRY);
        }
    }

    /// Credentials for the digest challenge in `resp` (RFC 3261 §22.2, §22.3; RFC 2617
    /// MD5 with `qop=auth` when offered): the header to add and its value. `None` without
    /// `[bridge.register]` or for a challenge we cannot answer.
    fn authorize(
        &mut self,
        resp: &Message,
        method: &Method,
        uri: &str,
        body: &[u8],
    ) -> Option<(&'static str, String)> {
        use akav1::digest::{Credentials, Qop, QopInput, ResponseInput};
        let rc = self.cfg.register.as_ref()?;
        let (name, challenge) = match resp.digest_challenge() {
            Some(c) => ("Authorization", c),
            None => (
                "Proxy-Authorization",
                resp.header("Proxy-Authenticate")
                    .map(sip::auth::Challenge::parse)?,
            ),
        };
        let ch = challenge.ok()?;
        if ch
            .algorithm
            .as_deref()
            .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
        {
            return None;
        }
        let qop = ch.qop.contains(&Qop::Auth).then_some(Qop::Auth);
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let cnonce = self.ids.tag();
        let input = ResponseInput {
            username: &rc.user,
            realm: &ch.realm,
            nonce: &ch.nonce,
            method: method.as_str(),
            uri,
            qop: qop.map(|q| QopInput {
                qop: q,
                cnonce: &cnonce,
                nc: &nc,
            }),
            body,
        };
        let response = akav1::digest::response(rc.password.as_bytes(), &input);
        let creds = Credentials {
            username: rc.user.clone(),
            realm: ch.realm.clone(),
            nonce: ch.nonce.clone(),
            uri: uri.to_string(),
            response,
            algorithm: ch.algorithm.clone(),
            cnonce: qop.map(|_| cnonce.clone()),
            opaque: ch.opaque.clone(),
            qop,
            nc: qop.map(|_| nc),
            ..Credentials::default()
        };
        Some((name, creds.to_header()))
    }

    /// The peer challenged our INVITE: the same INVITE once more with credentials (next
    /// CSeq, new branch, RFC 3261 §22.2). False when it cannot be.
    fn invite_with_auth(&mut self, call: CallId, resp: &Message, now: Instant) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        if c.auth_sent || c.phase != Phase::Setup || c.inbound {
            return false;
        }
        let old = c.uac_invite.clone();
        let uri = old.uri_str().unwrap_or_default().to_string();
        let Some((name, value)) = self.authorize(resp, &Method::Invite, &uri, old.body()) else {
            return false;
        };
        let flow = self.peer_flow();
        let mut inv = old;
        let seq = inv.cseq().map(|c| c.seq + 1).unwrap_or(2);
        inv.set_header("CSeq", &format!("{seq} INVITE"));
        let via = self.via(self.cfg.peer_address, flow.protocol);
        inv.set_header("Via", &via);
        inv.append_header(name, &value);
        let Ok(t) = self.tx.send_request(inv.clone(), flow, now) else {
            return false;
        };
        self.by_client.insert(t, (call, Purpose::Invite));
        if let Some(c) = self.calls.get_mut(&call) {
            c.auth_sent = true;
            c.uac_invite = inv;
            c.uac_tx = Some(t);
            c.uac_final = false;
        }
        true
    }

    // ---- requests ------------------------------------------------------------------

    fn on_request(&mut self, id: TxId, req: Message, flow: Flow, now: Instant) {
        // By port: a TCP connection accepted on a wildcard listener reports the concrete
        // local address, not the bound one.
        let from_isc = match flow.local {
            Some(l) => l.port() == self.cfg.isc_local.port(),
            None => flow.remote != self.cfg.peer_addr,
        };
        let allowed = if from_isc {
            self.trusted(flow.remote.ip())
        } else {
            flow.remote.ip() == self.cfg.peer_addr.ip()
        };
        if !allowed {
            self.stats.refused += 1;
            tracing::info!(from = %flow.remote, "request from an address we do not serve: 403");
            return self.simple(id, &req, 403, now);
        }
        let method = req.method().cloned();
        if method == Some(Method::Cancel) {
            return self.on_cancel(id, &req, now);
        }
        let dialog = match sip::DialogId::of_incoming_request(&req) {
            Ok(d) => d,
            Err(_) => return self.simple(id, &req, 400, now),
        };
        if let Some(d) = dialog {
            let found = self.by_dialog.get(&(d.call_id, d.local_tag)).copied();
            return match found {
                Some((call, side)) => self.in_dialog(call, side, id, req, now),
                None => self.simple(id, &req, 481, now),
            };
        }
        match method {
            Some(Method::Invite) if from_isc => self.outbound_invite(id, req, flow, now),
            Some(Method::Invite) => self.inbound_invite(id, req, flow, now),
            _ => {
                if let Some(r) = sip::uas::unhandled(&req, ALLOW, &mut self.ids) {
                    self.respond(id, r, now);
                }
            }
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.cfg.scscf.is_some_and(|s| s.ip() == ip) || self.cfg.trusted.contains(&ip)
    }

    /// True when `number` (or the Request-URI's host) belongs to the SIP side.
    fn is_sip_side(&self, ruri: &Uri, number: &str) -> bool {
        let host_is_peer = ruri.scheme == Scheme::Sip
            && ruri.host_ip() == Some(self.cfg.peer_addr.ip())
            && ruri.port.unwrap_or(5060) == self.cfg.peer_addr.port();
        host_is_peer || self.cfg.prefixes.iter().any(|p| number.starts_with(p))
    }

    /// An INVITE from the IMS for the SIP side: UAS here, UAC toward the peer.
    fn outbound_invite(&mut self, id: TxId, req: Message, flow: Flow, now: Instant) {
        let Ok(ruri) = req.request_uri() else {
            return self.refuse(id, &req, 400, "bad Request-URI", now);
        };
        let Some(number) = number_of(&ruri) else {
            return self.refuse(id, &req, 404, "no number in the Request-URI", now);
        };
        if !self.is_sip_side(&ruri, &number) {
            return self.refuse(id, &req, 404, "not a number of the SIP side", now);
        }
        let caller = caller_number(&req).unwrap_or_else(|| "anonymous".into());
        let peer = &self.cfg.peer;
        let mut target = Uri::sip(Some(&number), &peer.host, peer.port);
        target.params = peer.params.clone();
        let from = Uri::sip(Some(&caller), &peer.host, None);
        let flow_out = Flow::new(
            self.cfg.peer_local,
            self.cfg.peer_addr,
            self.cfg.peer_protocol,
        );
        let plan = Plan {
            inbound: false,
            caller,
            callee: number,
            target,
            from: NameAddr::new(from),
            pai: None,
            route: None,
            out: flow_out,
        };
        self.start_call(id, req, flow, plan, now);
    }

    /// An INVITE from the peer for a subscriber: UAS here, UAC toward the S-CSCF.
    fn inbound_invite(&mut self, id: TxId, req: Message, flow: Flow, now: Instant) {
        let Some(scscf) = self.cfg.scscf else {
            return self.refuse(id, &req, 503, "no [bridge] scscf for inbound calls", now);
        };
        let Ok(ruri) = req.request_uri() else {
            return self.refuse(id, &req, 400, "bad Request-URI", now);
        };
        let Some(mut number) = number_of(&ruri) else {
            return self.refuse(id, &req, 404, "no number in the Request-URI", now);
        };
        // A registered account receives calls at its Contact: the dialled number is in To.
        if self.cfg.register.as_ref().is_some_and(|r| r.user == number) {
            if let Some(n) = req.to_header().ok().and_then(|t| number_of(&t.uri)) {
                number = n;
            }
        }
        let caller = caller_number(&req).unwrap_or_else(|| "anonymous".into());
        let target = match &self.cfg.ims_domain {
            Some(d) => {
                let mut u = Uri::sip(Some(&number), d, None);
                u.params.set("user", Some("phone"));
                u
            }
            None => match Uri::parse(&format!("tel:{number}")) {
                Ok(u) => u,
                Err(_) => return self.refuse(id, &req, 404, "callee is no number", now),
            },
        };
        let digits = !caller.is_empty()
            && caller
                .trim_start_matches('+')
                .bytes()
                .all(|b| b.is_ascii_digit());
        let from = if digits {
            Uri::parse(&format!("tel:{caller}")).ok()
        } else {
            None
        }
        .unwrap_or_else(|| Uri::sip(Some(&caller), &self.cfg.peer.host, None));
        let route = format!(
            "<sip:{}:{};lr>",
            sip::uri::ip_host(scscf.ip()),
            scscf.port()
        );
        let plan = Plan {
            inbound: true,
            caller,
            callee: number,
            target,
            from: NameAddr::new(from.clone()),
            pai: Some(format!("<{from}>")),
            route: Some(route),
            out: Flow::new(self.cfg.isc_local, scscf, Protocol::Udp),
        };
        self.start_call(id, req, flow, plan, now);
    }

    /// Both directions alike from here: media, the answer on the UAS leg, the INVITE on
    /// the UAC leg.
    fn start_call(&mut self, id: TxId, req: Message, flow: Flow, plan: Plan, now: Instant) {
        let (uas_leg, uac_leg) = if plan.inbound {
            (Leg::Sip, Leg::Ims)
        } else {
            (Leg::Ims, Leg::Sip)
        };
        // RFC 4028 §4: a Session-Expires below our floor is refused with our Min-SE.
        let se = match req.header("Session-Expires").map(parse_se) {
            Some(Some((se, _))) if se < MIN_SE => {
                self.stats.refused += 1;
                let r = ResponseBuilder::new(&req, 422)
                    .to_tag(&self.ids.tag())
                    .header("Min-SE", MIN_SE)
                    .build();
                return self.respond(id, r, now);
            }
            Some(Some((se, _))) => Some(se),
            Some(None) => return self.refuse(id, &req, 400, "bad Session-Expires", now),
            None => None,
        };
        if req.body().is_empty() {
            // An offerless INVITE would make us offer on both legs at once; not supported.
            return self.refuse(id, &req, 488, "INVITE without SDP offer", now);
        }
        let Ok(offer) = Session::parse(req.body()) else {
            return self.refuse(id, &req, 488, "unparsable SDP offer", now);
        };
        let media = match self.media.allocate() {
            Ok(m) => m,
            Err(e) => return self.refuse(id, &req, 503, &e.to_string(), now),
        };
        let (uas_media, uac_media) = match uas_leg {
            Leg::Ims => (media.ims, media.sip),
            Leg::Sip => (media.sip, media.ims),
        };
        let (uas_local, uas_addr, uac_local, uac_addr) = if plan.inbound {
            let c = &self.cfg;
            (c.peer_local, c.peer_address, c.isc_local, c.isc_address)
        } else {
            let c = &self.cfg;
            (c.isc_local, c.isc_address, c.peer_local, c.peer_address)
        };
        let _ = flow;
        let mut uas = LegState::new(uas_leg, uas_local, uas_addr, uas_media);
        uas.local_tag = self.ids.tag();
        uas.session_id = format!("{}", 1000 + media.id.0);
        let Some(answer) = sdp_oa::answer(
            &offer,
            self.media.codecs(uas_leg),
            sdp_oa::origin(&uas.session_id, 1, uas_media),
            uas_media,
        ) else {
            self.media.release(media.id);
            return self.refuse(id, &req, 488, "no common codec", now);
        };
        uas.remote_sdp = Some(offer.clone());
        uas.local_sdp = Some(answer);
        let mut uac = LegState::new(uac_leg, uac_local, uac_addr, uac_media);
        uac.local_tag = self.ids.tag();
        uac.session_id = format!("{}", 2000 + media.id.0);
        let caller_codecs = self
            .cfg
            .offer_caller_codecs
            .then(|| (&offer, self.media.codecs(uas_leg)));
        let uac_offer = sdp_oa::offer(
            caller_codecs,
            &self.media.codecs(uac_leg),
            sdp_oa::origin(&uac.session_id, 1, uac_media),
            uac_media,
        );
        let host = sip::uri::ip_host(uac_addr.ip());
        let call_id = self.ids.call_id(Some(&host));
        let mut from = plan.from.clone();
        from.params.set("tag", Some(&uac.local_tag));
        let mut b = RequestBuilder::new(Method::Invite, &plan.target)
            .header("Via", self.via(uac_addr, plan.out.protocol))
            .max_forwards(70);
        if let Some(r) = &plan.route {
            b = b.header("Route", r);
        }
        b = b
            .from(&from)
            .to(&NameAddr::new(plan.target.clone()))
            .call_id(&call_id)
            .cseq(1)
            .header("Contact", uac.contact())
            .header("Allow", ALLOW)
            .header(hdr::SUPPORTED, SUPPORTED);
        if let Some(p) = &plan.pai {
            b = b.header(hdr::P_ASSERTED_IDENTITY, p);
        }
        if self.cfg.session_expires > 0 {
            b = b
                .header("Session-Expires", self.cfg.session_expires)
                .header("Min-SE", MIN_SE);
        }
        let invite = b
            .body("application/sdp", Bytes::from(uac_offer.to_bytes()))
            .build();
        uac.local_sdp = Some(uac_offer);
        let client = match self.tx.send_request(invite.clone(), plan.out, now) {
            Ok(c) => c,
            Err(e) => {
                self.media.release(media.id);
                return self.refuse(id, &req, 500, &format!("cannot send INVITE: {e}"), now);
            }
        };
        self.next_call += 1;
        let call = CallId(self.next_call);
        if plan.inbound {
            self.stats.inbound += 1;
        } else {
            self.stats.outbound += 1;
        }
        tracing::info!(?call, inbound = plan.inbound, from = %plan.caller, to = %plan.callee, "bridged call");
        self.events.push_back(B2bEvent::Started {
            call,
            inbound: plan.inbound,
            from: plan.caller,
            to: plan.callee,
            media: media.id,
        });
        let rel100 = req.has_option_tag(hdr::REQUIRE, "100rel")
            || req.has_option_tag(hdr::SUPPORTED, "100rel");
        let timer_ok = req.has_option_tag(hdr::SUPPORTED, "timer")
            || req.has_option_tag(hdr::REQUIRE, "timer");
        // RFC 4028 §9: a caller that supports timers but asked for none gets ours.
        let uas_timer =
            se.or((timer_ok && self.cfg.session_expires > 0).then_some(self.cfg.session_expires));
        let uas_timer = uas_timer.filter(|_| timer_ok);
        match Dialog::uas(&req, &uas.local_tag) {
            Ok(d) => uas.dialog = Some(d),
            Err(e) => {
                tracing::debug!("caller's INVITE makes no dialog: {e}");
            }
        }
        let key = (call_id_of(&req), uas.local_tag.clone());
        self.by_dialog.insert(key, (call, Side::Uas));
        self.by_dialog
            .insert((call_id.clone(), uac.local_tag.clone()), (call, Side::Uac));
        self.by_server.insert(id, call);
        self.by_client.insert(client, (call, Purpose::Invite));
        self.by_media.insert(media.id, call);
        self.calls.insert(
            call,
            Call {
                id: call,
                inbound: plan.inbound,
                media,
                phase: Phase::Setup,
                uas,
                uac,
                uas_invite: req,
                uas_tx: id,
                uas_final: false,
                rel100,
                ok_after_prack: false,
                answer_sent: false,
                auth_sent: false,
                uac_invite: invite,
                uac_tx: Some(client),
                uac_provisional: false,
                uac_final: false,
                uac_ack: None,
                cancel_pending: false,
                cancel_reason: None,
                ring_until: now + self.cfg.ring_timeout,
                max_at: None,
                forget_at: None,
                uas_timer,
            },
        );
    }

    /// A CANCEL (RFC 3261 §9.2): 200 here, 487 to the INVITE, and the other leg ended.
    fn on_cancel(&mut self, id: TxId, cancel: &Message, now: Instant) {
        let invite = self.tx.invite_for_cancel(cancel);
        let code = if invite.is_some() { 200 } else { 481 };
        self.simple(id, cancel, code, now);
        let Some(server) = invite else {
            return;
        };
        let Some(&call) = self.by_server.get(&server) else {
            // A re-INVITE's CANCEL: we answered it already (answers are local).
            return;
        };
        let reason = cancel.header("Reason").map(str::to_string);
        self.end_call(call, None, 487, reason, "CANCEL from the caller", now);
    }

    /// An ACK for a 2xx (RFC 3261 §13.2.2.4) on a leg we answered.
    fn on_ack(&mut self, ack: &Message) {
        let Ok(Some(d)) = sip::DialogId::of_incoming_request(ack) else {
            return;
        };
        let Some(&(call, side)) = self.by_dialog.get(&(d.call_id, d.local_tag)) else {
            return;
        };
        let media = self.media.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let id = c.media.id;
        let s = c.side_mut(side);
        s.ok = None;
        if s.offer_in_ok {
            s.offer_in_ok = false;
            match Session::parse(ack.body()) {
                Ok(answer) => {
                    if let Some(local) = s.local_sdp.as_ref() {
                        if let Err(e) = media.negotiated(id, s.leg, local, &answer) {
                            tracing::info!(?call, "answer in ACK refused by the plane: {e}");
                        }
                    }
                    s.remote_sdp = Some(answer);
                }
                Err(e) => tracing::info!(?call, "ACK without a usable answer: {e}"),
            }
        }
    }

    /// A request inside one of our dialogs.
    fn in_dialog(&mut self, call: CallId, side: Side, id: TxId, req: Message, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return self.simple(id, &req, 481, now);
        };
        let method = req.method().cloned().unwrap_or(Method::Options);
        if c.phase == Phase::Ending {
            let code = if method == Method::Bye { 200 } else { 481 };
            return self.simple(id, &req, code, now);
        }
        let check = match c.side_mut(side).dialog.as_mut() {
            Some(d) => d.handle_request(&req),
            None => Err(DialogError::Mismatch),
        };
        match check {
            Ok(()) => {}
            Err(DialogError::OutOfOrder { .. }) => return self.simple(id, &req, 500, now),
            Err(_) => return self.simple(id, &req, 481, now),
        }
        match method {
            Method::Bye => {
                self.simple(id, &req, 200, now);
                let who = match (side, c_inbound(self, call)) {
                    (Side::Uas, false) | (Side::Uac, true) => "BYE from the IMS side",
                    _ => "BYE from the SIP peer",
                };
                let reason = req.header("Reason").map(str::to_string);
                self.end_call(call, Some(side), 200, reason, who, now);
            }
            Method::Prack => self.on_prack(call, side, id, &req, now),
            Method::Invite | Method::Update => self.local_offer(call, side, id, &req, now),
            _ => {
                if let Some(r) = sip::uas::unhandled(&req, ALLOW, &mut self.ids) {
                    self.respond(id, r, now);
                }
            }
        }
    }

    /// PRACK of our reliable provisional (RFC 3262 §3): 200, and the 2xx that waited for
    /// it goes out.
    fn on_prack(&mut self, call: CallId, side: Side, id: TxId, req: &Message, now: Instant) {
        let rack = parse_rack(req).ok();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let invite_seq = c.uas_invite.cseq().map(|x| x.seq).ok();
        let s = c.side_mut(side);
        let matches = match (&s.rel, rack) {
            (Some(r), Some((rseq, cseq, Method::Invite))) => {
                r.rseq == rseq && invite_seq == Some(cseq)
            }
            _ => false,
        };
        if !matches {
            return self.simple(id, req, 481, now);
        }
        s.rel = None;
        let send_ok = c.ok_after_prack;
        c.ok_after_prack = false;
        self.simple(id, req, 200, now);
        if send_ok {
            self.answer_uas(call, now);
        }
    }

    /// A re-INVITE or UPDATE on one leg, answered on that leg (module docs): with an offer
    /// our answer from the plane's codecs for the leg; without one (a session refresh) our
    /// current SDP as the offer (re-INVITE) or nothing (UPDATE).
    fn local_offer(&mut self, call: CallId, side: Side, id: TxId, req: &Message, now: Instant) {
        let media = self.media.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let mid = c.media.id;
        let is_invite = req.method() == Some(&Method::Invite);
        let s = c.side_mut(side);
        let tag_ok = s.local_tag.clone();
        let mut body: Option<Session> = None;
        if !req.body().is_empty() {
            let Ok(offer) = Session::parse(req.body()) else {
                return self.simple(id, req, 488, now);
            };
            let version = s.sdp_version + 1;
            let Some(answer) = sdp_oa::answer(
                &offer,
                media.codecs(s.leg),
                sdp_oa::origin(&s.session_id, version, s.media),
                s.media,
            ) else {
                return self.simple(id, req, 488, now);
            };
            if let Err(e) = media.negotiated(mid, s.leg, &answer, &offer) {
                tracing::info!(?call, "re-offer refused by the plane: {e}");
                return self.simple(id, req, 488, now);
            }
            s.sdp_version = version;
            s.remote_sdp = Some(offer);
            s.local_sdp = Some(answer.clone());
            body = Some(answer);
        } else if is_invite {
            body = s.local_sdp.clone();
            s.offer_in_ok = body.is_some();
        }
        let mut b = ResponseBuilder::new(req, 200)
            .to_tag(&tag_ok)
            .header("Contact", s.contact())
            .header(hdr::SUPPORTED, SUPPORTED)
            .header("Allow", ALLOW);
        // A refresh of the session timer (RFC 4028 §9): echo it; the requester refreshes.
        if let Some((se, _)) = req.header("Session-Expires").and_then(parse_se) {
            let se = se.max(MIN_SE);
            b = b
                .header("Session-Expires", format_args!("{se};refresher=uac"))
                .header(hdr::REQUIRE, "timer");
            s.session_expires = se;
            s.refresh_at = None;
            s.expires_at = Some(now + expiry_after(se));
        } else if let Some(e) = s.expires_at.as_mut() {
            // Any re-INVITE or UPDATE counts as a refresh of a running timer.
            if s.session_expires > 0 {
                *e = now + expiry_after(s.session_expires);
            }
        }
        if let Some(sdp) = &body {
            b = b.body("application/sdp", Bytes::from(sdp.to_bytes()));
        }
        match b.build() {
            Ok(ok) => {
                if is_invite {
                    s.ok = Some(Retrans {
                        tx: id,
                        msg: ok.clone(),
                        next: now + self.t1,
                        interval: self.t1,
                        until: now + 64 * self.t1,
                        rseq: 0,
                    });
                }
                let _ = self.tx.respond(id, ok, now);
            }
            Err(e) => self.drop_input(SocketAddr::from(([0, 0, 0, 0], 0)), &e),
        }
    }

    // ---- responses -----------------------------------------------------------------

    fn on_response(&mut self, client: TxId, resp: &Message, now: Instant) {
        let Some(&(call, purpose)) = self.by_client.get(&client) else {
            return;
        };
        let code = resp.code().unwrap_or(500);
        match purpose {
            Purpose::Invite => self.invite_response(call, client, resp, now),
            Purpose::Refresh(side) => {
                if code >= 200 {
                    self.refresh_answered(call, side, code, now);
                }
            }
            Purpose::Register => self.register_response(resp, now),
            Purpose::Fire => {}
        }
    }

    /// A 2xx retransmission after the INVITE's transaction ended: ACK again.
    fn on_stray(&mut self, resp: &Message) {
        let is_invite_2xx = resp.code().is_some_and(|c| (200..300).contains(&c))
            && resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        if !is_invite_2xx {
            return;
        }
        let Ok(d) = sip::DialogId::of_response(resp) else {
            return;
        };
        let Some(&(call, Side::Uac)) = self.by_dialog.get(&(d.call_id, d.local_tag)) else {
            return;
        };
        if let Some((ack, flow)) = self.calls.get(&call).and_then(|c| c.uac_ack.clone()) {
            self.tx.send_stateless(&ack, flow);
        }
    }

    /// A response to the outgoing leg's INVITE.
    fn invite_response(&mut self, call: CallId, client: TxId, resp: &Message, now: Instant) {
        let code = resp.code().unwrap_or(500);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if code == 100 {
            return;
        }
        if code < 200 {
            c.uac_provisional = true;
            if c.cancel_pending && !c.uac_final {
                self.cancel_uac(call, now);
                return;
            }
            self.uac_early(call, resp, now);
            return;
        }
        if c.uac_final {
            // A retransmitted 2xx (RFC 6026 §8.4 hands it to us): our ACK was lost.
            if let (true, Some((ack, flow))) = ((200..300).contains(&code), c.uac_ack.clone()) {
                self.tx.send_stateless(&ack, flow);
            }
            return;
        }
        c.uac_final = true;
        c.uac_tx = None;
        if (200..300).contains(&code) {
            return self.uac_answered(call, resp, now);
        }
        // A final failure: the transaction ACKs it; the caller hears it.
        if c.phase == Phase::Ending {
            return self.forget(call);
        }
        if matches!(code, 401 | 407) && self.invite_with_auth(call, resp, now) {
            return;
        }
        let relayed = match code {
            300..=399 => 480,
            401 | 407 => 403,
            c => c,
        };
        let _ = client;
        self.end_call(
            call,
            Some(Side::Uac),
            relayed,
            None,
            &format!("{code} from the callee"),
            now,
        );
    }

    /// A provisional with a tag on the outgoing leg: the early dialog, PRACK when it is
    /// reliable, its answer to the plane, and a provisional toward the caller.
    fn uac_early(&mut self, call: CallId, resp: &Message, now: Instant) {
        let code = resp.code().unwrap_or(180);
        let media = self.media.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let has_tag = resp.to_header().is_ok_and(|t| t.tag().is_some());
        if has_tag {
            let same =
                c.uac.dialog.as_ref().is_some_and(|d| {
                    sip::DialogId::of_response(resp).is_ok_and(|id| d.matches(&id))
                });
            if same {
                if let Some(d) = c.uac.dialog.as_mut() {
                    let _ = d.handle_response(resp);
                }
            } else if c.uac.dialog.is_none() {
                match Dialog::uac(&c.uac_invite, resp) {
                    Ok(d) => c.uac.dialog = Some(d),
                    Err(e) => tracing::debug!("provisional makes no dialog: {e}"),
                }
            }
        }
        let reliable = resp.has_option_tag(hdr::REQUIRE, "100rel");
        if reliable && c.uac.dialog.is_some() {
            let via = Via::parse(&self_via(&mut self.ids, c.uac.address, Protocol::Udp)).ok();
            if let (Some(d), Some(via)) = (c.uac.dialog.as_mut(), via) {
                if let Ok(Some(b)) = d.prack(resp, &via) {
                    let prack = b.build();
                    let local = c.uac.local;
                    if let Some(flow) = next_flow(&prack, local) {
                        if let Ok(t) = self.tx.send_request(prack, flow, now) {
                            self.by_client.insert(t, (call, Purpose::Fire));
                        }
                    }
                }
            }
            // An answer in a reliable provisional completes the O/A (RFC 3262 §5).
            let c = self.calls.get_mut(&call);
            if let Some(c) = c {
                if c.uac.remote_sdp.is_none() && !resp.body().is_empty() {
                    if let Ok(a) = Session::parse(resp.body()) {
                        if let Some(local) = c.uac.local_sdp.as_ref() {
                            if let Err(e) = media.negotiated(c.media.id, c.uac.leg, local, &a) {
                                tracing::info!(?call, "early answer refused by the plane: {e}");
                            }
                        }
                        c.uac.remote_sdp = Some(a);
                    }
                }
            }
        }
        self.provisional_uas(call, code, now);
    }

    /// Relays a provisional toward the caller: reliable (with our answer, the first time)
    /// when the caller takes 100rel and no other reliable one is pending; plain otherwise.
    fn provisional_uas(&mut self, call: CallId, code: u16, now: Instant) {
        let media = self.media.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.uas_final || c.uas.rel.is_some() {
            return;
        }
        let code = if (180..=183).contains(&code) {
            code
        } else {
            180
        };
        let mut b = ResponseBuilder::new(&c.uas_invite, code)
            .to_tag(&c.uas.local_tag)
            .header("Contact", c.uas.contact());
        let mut rseq = 0;
        if c.rel100 {
            c.uas.rseq += 1;
            rseq = c.uas.rseq;
            b = b
                .header(hdr::REQUIRE, "100rel")
                .header("RSeq", rseq)
                .header("Allow", ALLOW);
            if !c.answer_sent {
                if let Some(a) = &c.uas.local_sdp {
                    b = b.body("application/sdp", Bytes::from(a.to_bytes()));
                }
            }
        }
        let Ok(msg) = b.build() else {
            return;
        };
        if c.rel100 {
            if !c.answer_sent {
                c.answer_sent = true;
                if let (Some(l), Some(r)) = (&c.uas.local_sdp, &c.uas.remote_sdp) {
                    if let Err(e) = media.negotiated(c.media.id, c.uas.leg, l, r) {
                        tracing::info!(?call, "answer refused by the plane: {e}");
                    }
                }
            }
            c.uas.rel = Some(Retrans {
                tx: c.uas_tx,
                msg: msg.clone(),
                next: now + self.t1,
                interval: self.t1,
                until: now + 64 * self.t1,
                rseq,
            });
        }
        let _ = self.tx.respond(c.uas_tx, msg, now);
    }

    /// The callee answered: ACK, its answer to the plane, 2xx to the caller.
    fn uac_answered(&mut self, call: CallId, resp: &Message, now: Instant) {
        let media = self.media.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let matches_dialog = c
            .uac
            .dialog
            .as_ref()
            .is_some_and(|d| sip::DialogId::of_response(resp).is_ok_and(|id| d.matches(&id)));
        if matches_dialog {
            if let Some(d) = c.uac.dialog.as_mut() {
                let _ = d.handle_response(resp);
            }
        } else {
            // A 2xx of another fork than the early dialog's: this one is the call.
            match Dialog::uac(&c.uac_invite, resp) {
                Ok(d) => c.uac.dialog = Some(d),
                Err(e) => {
                    tracing::info!(?call, "2xx makes no dialog: {e}");
                    return self.end_call(call, None, 502, None, "unusable 2xx", now);
                }
            }
        }
        // ACK (§13.2.2.4) along the dialog's route.
        let via = Via::parse(&self_via(&mut self.ids, c.uac.address, Protocol::Udp)).ok();
        let ack = match (c.uac.dialog.as_ref(), via) {
            (Some(d), Some(via)) => d.ack(&via).ok().map(|b| b.build()),
            _ => None,
        };
        if let Some(ack) = ack {
            if let Some(flow) = next_flow(&ack, c.uac.local) {
                self.tx.send_stateless(&ack, flow);
                c.uac_ack = Some((ack, flow));
            }
        }
        if c.phase == Phase::Ending {
            // Cancelled or given up while the callee answered: end what just started.
            return self.bye_and_forget(call, now);
        }
        // The answer (in the 2xx, or already in a reliable provisional).
        if c.uac.remote_sdp.is_none() {
            let answer = Session::parse(resp.body()).ok();
            let Some(answer) = answer else {
                return self.end_call(call, None, 488, None, "2xx without SDP answer", now);
            };
            if let Some(local) = c.uac.local_sdp.as_ref() {
                if let Err(e) = media.negotiated(c.media.id, c.uac.leg, local, &answer) {
                    tracing::info!(?call, "answer refused by the plane: {e}");
                    let reason = "SIP;cause=488;text=\"no usable codec\"".to_string();
                    return self.end_call(call, None, 488, Some(reason), "no usable codec", now);
                }
            }
            c.uac.remote_sdp = Some(answer);
        }
        // The callee's session timer (RFC 4028 §7.2): whoever the 2xx names refreshes.
        if let Some((se, refresher)) = resp.header("Session-Expires").and_then(parse_se) {
            c.uac.session_expires = se;
            if refresher.as_deref() == Some("uac") {
                c.uac.refresh_at = Some(now + Duration::from_secs(u64::from(se / 2)));
            } else {
                c.uac.expires_at = Some(now + expiry_after(se));
            }
        }
        c.phase = Phase::Answered;
        c.max_at = Some(now + self.cfg.max_duration);
        self.stats.answered += 1;
        self.events.push_back(B2bEvent::Answered { call });
        if c.uas.rel.is_some() && c.answer_sent {
            // RFC 3262 §3: no 2xx before the PRACK of the provisional with our answer.
            c.ok_after_prack = true;
            return;
        }
        self.answer_uas(call, now);
    }

    /// The 2xx toward the caller, retransmitted until its ACK.
    fn answer_uas(&mut self, call: CallId, now: Instant) {
        let media = self.media.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.uas_final {
            return;
        }
        let mut b = ResponseBuilder::new(&c.uas_invite, 200)
            .to_tag(&c.uas.local_tag)
            .header("Contact", c.uas.contact())
            .header("Allow", ALLOW)
            .header(hdr::SUPPORTED, SUPPORTED);
        if let Some(se) = c.uas_timer {
            // The caller refreshes; we end the session if it does not (RFC 4028 §10).
            b = b
                .header("Session-Expires", format_args!("{se};refresher=uac"))
                .header(hdr::REQUIRE, "timer");
            c.uas.session_expires = se;
            c.uas.expires_at = Some(now + expiry_after(se));
        }
        if !c.answer_sent {
            if let Some(a) = &c.uas.local_sdp {
                b = b.body("application/sdp", Bytes::from(a.to_bytes()));
            }
        }
        let Ok(ok) = b.build() else {
            return self.end_call(call, None, 500, None, "cannot build 2xx", now);
        };
        if !c.answer_sent {
            c.answer_sent = true;
            if let (Some(l), Some(r)) = (&c.uas.local_sdp, &c.uas.remote_sdp) {
                if let Err(e) = media.negotiated(c.media.id, c.uas.leg, l, r) {
                    tracing::info!(?call, "answer refused by the plane: {e}");
                }
            }
        }
        c.uas_final = true;
        if let Some(d) = c.uas.dialog.as_mut() {
            d.confirm();
        }
        c.uas.ok = Some(Retrans {
            tx: c.uas_tx,
            msg: ok.clone(),
            next: now + self.t1,
            interval: self.t1,
            until: now + 64 * self.t1,
            rseq: 0,
        });
        let tx = c.uas_tx;
        self.by_server.remove(&tx);
        let _ = self.tx.respond(tx, ok, now);
    }

    /// The answer to our session refresh UPDATE.
    fn refresh_answered(&mut self, call: CallId, side: Side, code: u16, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let s = c.side_mut(side);
        match code {
            200..=299 => {
                let half = u64::from(s.session_expires / 2).max(1);
                s.refresh_at = Some(now + Duration::from_secs(half));
            }
            // The peer cannot take UPDATE: no refresh, the media timeout and max_duration
            // still end the call.
            405 | 501 => s.refresh_at = None,
            _ => {
                let reason = format!("SIP;cause={code};text=\"session refresh failed\"");
                self.end_call(call, None, 408, Some(reason), "session refresh failed", now);
            }
        }
    }

    // ---- timers --------------------------------------------------------------------

    fn call_timers(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.forget_at.is_some_and(|t| t <= now) {
            return self.forget(call);
        }
        if c.phase == Phase::Setup && c.ring_until <= now {
            let reason = "SIP;cause=480;text=\"no answer\"".to_string();
            return self.end_call(call, None, 480, Some(reason), "ring timeout", now);
        }
        if c.max_at.is_some_and(|t| t <= now) {
            return self.end_call(call, None, 408, None, "max_duration", now);
        }
        for side in [Side::Uas, Side::Uac] {
            let Some(c) = self.calls.get_mut(&call) else {
                return;
            };
            let t2 = self.t2;
            let s = c.side_mut(side);
            let mut resend = Vec::new();
            let mut fail: Option<(&str, u16)> = None;
            for slot in [&mut s.ok, &mut s.rel] {
                if let Some(r) = slot.as_mut() {
                    if r.until <= now {
                        fail = Some(if r.rseq == 0 {
                            ("2xx never ACKed", 408)
                        } else {
                            ("reliable provisional never PRACKed", 500)
                        });
                        *slot = None;
                    } else if r.next <= now {
                        resend.push((r.tx, r.msg.clone()));
                        r.interval = (r.interval * 2).min(t2);
                        r.next = now + r.interval;
                    }
                }
            }
            let refresh = s.refresh_at.is_some_and(|t| t <= now);
            let expired = s.expires_at.is_some_and(|t| t <= now);
            for (tx, m) in resend {
                let _ = self.tx.respond(tx, m, now);
            }
            if let Some((why, code)) = fail {
                return self.end_call(call, None, code, None, why, now);
            }
            if expired {
                let reason = "SIP;cause=408;text=\"session expired\"".to_string();
                return self.end_call(call, None, 408, Some(reason), "session expired", now);
            }
            if refresh {
                self.send_refresh(call, side, now);
            }
        }
    }

    /// A session refresh (RFC 4028 §7.4) on `side`: UPDATE without SDP, so no offer/answer
    /// happens; the next one is set when its 2xx arrives.
    fn send_refresh(&mut self, call: CallId, side: Side, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let s = c.side_mut(side);
        s.refresh_at = None;
        let via = Via::parse(&self_via(&mut self.ids, s.address, Protocol::Udp)).ok();
        let (Some(d), Some(via)) = (s.dialog.as_mut(), via) else {
            return;
        };
        let Ok(b) = d.request(Method::Update, &via) else {
            return;
        };
        let m = b
            .header("Contact", s.contact())
            .header(hdr::SUPPORTED, SUPPORTED)
            .header(
                "Session-Expires",
                format_args!("{};refresher=uac", s.session_expires),
            )
            .build();
        if let Some(flow) = next_flow(&m, s.local) {
            if let Ok(t) = self.tx.send_request(m, flow, now) {
                self.by_client.insert(t, (call, Purpose::Refresh(side)));
            }
        }
    }

    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(e) = self.tx.poll_event() {
            let (id, code) = match e {
                Event::Timeout { id, .. } => (id, 408),
                Event::TransportError { id } => (id, 503),
                Event::Terminated { id } => {
                    self.by_client.remove(&id);
                    if let Some(call) = self.by_server.remove(&id) {
                        // The caller's INVITE transaction ended without our final.
                        self.end_call(call, Some(Side::Uas), 408, None, "caller gone", now);
                    }
                    continue;
                }
            };
            match self.by_client.remove(&id) {
                Some((call, Purpose::Invite)) => {
                    let ending = self
                        .calls
                        .get(&call)
                        .is_some_and(|c| c.phase == Phase::Ending);
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.uac_final = true;
                        c.uac_tx = None;
                    }
                    if ending {
                        self.forget(call);
                    } else {
                        let why = format!("callee unreachable ({code})");
                        self.end_call(call, Some(Side::Uac), code, None, &why, now);
                    }
                }
                Some((call, Purpose::Refresh(side))) => {
                    self.refresh_answered(call, side, code, now)
                }
                Some((_, Purpose::Register)) => self.register_failed(code, now),
                _ => {}
            }
        }
    }

    // ---- ending --------------------------------------------------------------------

    /// Ends both legs of `call` (`done`: the side that ended itself, by BYE or a final
    /// failure): a final response to the caller's INVITE if it had none, BYE on confirmed
    /// legs (with `reason`, RFC 3326), CANCEL (or a pending one) on the outgoing INVITE.
    fn end_call(
        &mut self,
        call: CallId,
        done: Option<Side>,
        code: u16,
        reason: Option<String>,
        why: &str,
        now: Instant,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.phase == Phase::Ending {
            return;
        }
        c.phase = Phase::Ending;
        tracing::info!(?call, why, "call ends");
        self.stats.ended += 1;
        self.events.push_back(B2bEvent::Ended {
            call,
            why: why.to_string(),
        });
        self.media.release(c.media.id);
        c.uas.ok = None;
        c.uas.rel = None;
        c.uac.ok = None;
        // The caller's side.
        if done != Some(Side::Uas) {
            if !c.uas_final {
                c.uas_final = true;
                let r = ResponseBuilder::new(&c.uas_invite, code.max(300))
                    .to_tag(&c.uas.local_tag)
                    .build();
                if let Ok(r) = r {
                    let _ = self.tx.respond(c.uas_tx, r, now);
                }
            } else if c.uas.confirmed() {
                self.bye(call, Side::Uas, reason.as_deref(), now);
            }
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        // The callee's side.
        let mut wait = false;
        if done != Some(Side::Uac) {
            if c.uac_final {
                if c.uac.confirmed() {
                    self.bye(call, Side::Uac, reason.as_deref(), now);
                }
            } else {
                c.cancel_reason = reason.clone();
                wait = true;
                if c.uac_provisional {
                    self.cancel_uac(call, now);
                } else {
                    // §9.1: no CANCEL before a provisional; it goes when one arrives.
                    c.cancel_pending = true;
                }
            }
        }
        if wait {
            if let Some(c) = self.calls.get_mut(&call) {
                c.forget_at = Some(now + ENDING_GRACE);
            }
        } else {
            self.forget(call);
        }
    }

    fn cancel_uac(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.cancel_pending = false;
        let Some(client) = c.uac_tx else {
            return;
        };
        let reason = c.cancel_reason.clone();
        let (Some(flow), Some(invite)) = (self.tx.flow(client), self.tx.client_request(client))
        else {
            return;
        };
        let Ok(mut cancel) = sip::builder::cancel_for(invite) else {
            return;
        };
        if let Some(r) = reason {
            cancel.append_header("Reason", &r);
        }
        if let Ok(t) = self.tx.send_request(cancel, flow, now) {
            self.by_client.insert(t, (call, Purpose::Fire));
        }
    }

    fn bye(&mut self, call: CallId, side: Side, reason: Option<&str>, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let s = c.side_mut(side);
        let via = Via::parse(&self_via(&mut self.ids, s.address, Protocol::Udp)).ok();
        let local = s.local;
        let (Some(d), Some(via)) = (s.dialog.as_mut(), via) else {
            return;
        };
        let Ok(mut b) = d.request(Method::Bye, &via) else {
            return;
        };
        d.terminate();
        if let Some(r) = reason {
            b = b.header("Reason", r);
        }
        let m = b.build();
        if let Some(flow) = next_flow(&m, local) {
            if let Ok(t) = self.tx.send_request(m, flow, now) {
                self.by_client.insert(t, (call, Purpose::Fire));
            }
        }
    }

    /// A 2xx arrived for an outgoing INVITE of a call that already ended: BYE it.
    fn bye_and_forget(&mut self, call: CallId, now: Instant) {
        let reason = self.calls.get(&call).and_then(|c| c.cancel_reason.clone());
        self.bye(call, Side::Uac, reason.as_deref(), now);
        self.forget(call);
    }

    fn forget(&mut self, call: CallId) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        // Only ended calls are forgotten: end_call released the media already.
        self.by_media.remove(&c.media.id);
        self.by_server.retain(|_, v| *v != call);
        self.by_dialog.retain(|_, v| v.0 != call);
        // Client transactions keep their entry until they terminate; a response then
        // finds no call and is ignored.
    }

    // ---- helpers -------------------------------------------------------------------

    fn via(&mut self, addr: SocketAddr, protocol: Protocol) -> String {
        self_via(&mut self.ids, addr, protocol)
    }

    fn refuse(&mut self, id: TxId, req: &Message, code: u16, why: &str, now: Instant) {
        self.stats.refused += 1;
        tracing::info!(code, why, "INVITE refused");
        self.simple(id, req, code, now);
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
}

/// How a new call leaves on its UAC leg.
struct Plan {
    inbound: bool,
    caller: String,
    callee: String,
    target: Uri,
    from: NameAddr,
    pai: Option<String>,
    route: Option<String>,
    out: Flow,
}

fn c_inbound(core: &B2bCore, call: CallId) -> bool {
    core.calls.get(&call).is_some_and(|c| c.inbound)
}

fn self_via(ids: &mut sip::Ids, addr: SocketAddr, protocol: Protocol) -> String {
    Via::new(
        protocol.as_str(),
        &sip::uri::ip_host(addr.ip()),
        Some(addr.port()),
        &ids.branch(),
    )
    .to_string()
}

/// The flow of an in-dialog request: to its first Route (loose routing) or its
/// Request-URI, from the leg's socket.
fn next_flow(m: &Message, local: SocketAddr) -> Option<Flow> {
    let uri = proxy::next_hop(m).ok()?;
    let (addr, protocol) = proxy::uri_target(&uri)?;
    Some(proxy::flow_to(
        (protocol == Protocol::Udp).then_some(local),
        addr,
        protocol,
    ))
}

fn call_id_of(m: &Message) -> String {
    m.call_id().unwrap_or_default().to_string()
}

/// The number in a Request-URI or identity: a tel URI's subscriber, a SIP URI's user part
/// without parameters.
pub(crate) fn number_of(uri: &Uri) -> Option<String> {
    let u = uri.user.as_deref()?;
    let n = u.split(';').next().unwrap_or(u).trim();
    (!n.is_empty()).then(|| n.to_string())
}

/// The caller's number: the tel URI of P-Asserted-Identity (TS 24.229 §5.4.3.2 adds it),
/// else its first SIP URI's user, else From's user.
fn caller_number(req: &Message) -> Option<String> {
    let pai = req.name_addrs(hdr::P_ASSERTED_IDENTITY).unwrap_or_default();
    pai.iter()
        .find(|n| n.uri.scheme == Scheme::Tel)
        .or_else(|| pai.first())
        .and_then(|n| number_of(&n.uri))
        .or_else(|| req.from_header().ok().and_then(|f| number_of(&f.uri)))
}

/// `Session-Expires: delta[;refresher=uac|uas]` (RFC 4028 §4); `None` when it does not
/// parse.
fn parse_se(v: &str) -> Option<(u32, Option<String>)> {
    let mut parts = v.split(';');
    let se = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some((se, refresher))
}

/// When the side that does not refresh ends the session (RFC 4028 §10): a third of the
/// interval, at most 32 s, before it runs out.
fn expiry_after(se: u32) -> Duration {
    Duration::from_secs(u64::from(se - (se / 3).min(32)))
}
