//! Requests other than REGISTER through the S-CSCF (TS 24.229 §5.4.3): the originating
//! and terminating halves of a session or a MESSAGE, in-dialog requests, CANCEL and ACK.
//!
//! ```text
//!  P-CSCF(A) ── INVITE, Route: <orig@S> ──▶ S-CSCF ── INVITE to each contact of B, ──▶ P-CSCF(B)
//!             P-Asserted-Identity: A          │        Route: B's Path
//!                                             └─ Record-Route: <S;lr>
//! ```
//!
//! - Originating (the request's top Route is our Service-Route `orig` entry): accepted only
//!   from a trusted node (the P-CSCF in this process, or a configured address), with a
//!   P-Asserted-Identity that one of our registrations holds (TS 24.229 §5.4.3.2); then
//!   the terminating half follows at once, since every callee of the home domain is ours.
//! - Terminating: the Request-URI names an identity of an implicit registration set
//!   (`sip:` or `tel:`, RFC 3261 §10.3 canonical form); the request forks to every live
//!   contact of that registration (RFC 3261 §16.6), each routed along the Path it
//!   registered with (RFC 3327). An identity nobody registered is asked of the HSS (Cx
//!   LIR, TS 29.228 §6.1.4): unknown → 404, known but not registered → 480.
//! - In-dialog requests (a To tag) and ACKs for 2xx are routed on their Route set.
//! - Responses go back through [`sip::proxy::Branches`]: best response, CANCEL of the
//!   other forks, Timer C.

use crate::core::{Output, Pending, Scscf};
use crate::cx;
use crate::registrar;
use sip::proxy::{self, Decision};
use sip::transaction::{ResponseOutcome, TxId};
use sip::{Flow, Message, Method, NameAddr, Protocol, Uri, Via};
use std::time::Instant;

/// Why a request other than REGISTER was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// From a node that is neither in this process nor in `trusted`.
    #[error("request from an untrusted node")]
    Untrusted,
    /// An originating request whose asserted identity is not registered here.
    #[error("originating identity not registered here")]
    NotRegistered,
    /// The callee is unknown to the HSS (404).
    #[error("unknown callee")]
    Unknown,
    /// The callee is not registered (480).
    #[error("callee not registered")]
    Unavailable,
    /// A request came back with an ISC marker we do not know (used, expired or made up).
    #[error("unknown or expired ISC marker")]
    StaleMarker,
    /// No address for the next hop (a host name, a non-SIP URI).
    #[error("no route to {0}")]
    NoRoute(String),
    /// Max-Forwards exhausted or headers unusable for forwarding.
    #[error(transparent)]
    Forward(#[from] proxy::ForwardError),
}

impl Refusal {
    /// The status code that answers the request.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Untrusted | Refusal::NotRegistered | Refusal::StaleMarker => 403,
            Refusal::Unknown | Refusal::NoRoute(_) => 404,
            Refusal::Unavailable => 480,
            Refusal::Forward(e) => e.status(),
        }
    }
}

/// Methods whose initial request makes a dialog, so we record-route them (RFC 3261 §16.6
/// step 4; RFC 6665 for SUBSCRIBE, RFC 3515 for REFER).
pub(crate) fn creates_dialog(m: &Method) -> bool {
    matches!(m, Method::Invite | Method::Subscribe | Method::Refer)
}

fn has_to_tag(req: &Message) -> bool {
    req.to_header().is_ok_and(|t| t.tag().is_some())
}

impl Scscf {
    /// Is this URI one of ours (a Route entry or Record-Route the P-CSCF or an AS echoes)?
    pub(crate) fn is_ours(&self, uri: &Uri) -> bool {
        let a = self.cfg.address;
        uri.host_ip() == Some(a.ip()) && uri.port.unwrap_or(5060) == a.port()
    }

    fn trusted(&self, flow: &Flow) -> bool {
        flow.protocol == Protocol::InProcess
            || self.cfg.routing.trusted.contains(&flow.remote.ip())
            || self.is_application_server(flow.remote.ip())
    }

    /// Our Record-Route entry (RFC 3261 §16.6 step 4).
    pub(crate) fn record_route(&self) -> String {
        let a = self.cfg.address;
        format!("<sip:{}:{};lr>", sip::uri::ip_host(a.ip()), a.port())
    }

    /// The flow to a SIP URI: in memory to a core of this process, else over the network.
    pub(crate) fn flow_to(&self, uri: &Uri) -> Option<Flow> {
        let (addr, protocol) = proxy::uri_target(uri)?;
        Some(if self.cfg.routing.local_peers.contains(&addr) {
            Flow::new(self.cfg.address, addr, Protocol::InProcess)
        } else {
            Flow::to(addr, protocol)
        })
    }

    pub(crate) fn our_via(&mut self, protocol: Protocol) -> String {
        let a = self.cfg.address;
        Via::new(
            protocol.as_str(),
            &sip::uri::ip_host(a.ip()),
            Some(a.port()),
            &self.ids.branch(),
        )
        .to_string()
    }

    pub(crate) fn refuse(&mut self, tx: TxId, req: &Message, why: Refusal, now: Instant) {
        tracing::debug!(code = why.status(), "refused: {why}");
        self.stats.refused += 1;
        self.simple(tx, req, why.status(), now);
    }

    /// A new server transaction for anything but REGISTER.
    pub(crate) fn on_session_request(&mut self, id: TxId, req: Message, flow: Flow, now: Instant) {
        if req.method() == Some(&Method::Cancel) {
            match proxy::on_cancel(
                &mut self.tx,
                &mut self.branches,
                id,
                &req,
                &mut self.ids,
                now,
            ) {
                Ok(Some(invite)) => self.as_hop_cancelled(invite),
                Ok(None) => {}
                Err(u) => self.dropped(u.remote, u.reason.into()),
            }
            return;
        }
        // A request that comes back with one of our markers from the AS we gave it to
        // proves itself: the token is ours, unguessable and used once.
        let marked = self
            .isc_marker(&req)
            .is_some_and(|t| self.marker_from(&t, flow.remote.ip()));
        if !marked && !self.trusted(&flow) {
            return self.refuse(id, &req, Refusal::Untrusted, now);
        }
        if req.method() == Some(&Method::Subscribe) && self.on_subscribe(id, &req, now) {
            return;
        }
        let mut fwd = match proxy::forward_copy(&req, flow.remote) {
            Ok(f) => f,
            Err(e) => return self.refuse(id, &req, e.into(), now),
        };
        let marker = self.isc_marker(&fwd);
        let originating = self.pop_routes(&mut fwd);
        if let Some(token) = marker {
            if !has_to_tag(&req) && !fwd.has_header("Route") {
                return self.resume(id, req, fwd, &token, now);
            }
        }
        if has_to_tag(&req) || fwd.has_header("Route") {
            // In a dialog, or routed past us: loose routing decides (RFC 3261 §16.4).
            let Some(next) = proxy::next_hop(&fwd).ok() else {
                return self.refuse(id, &req, Refusal::NoRoute("?".into()), now);
            };
            let Some(to) = self.flow_to(&next) else {
                return self.refuse(id, &req, Refusal::NoRoute(next.to_string()), now);
            };
            self.branches.open(id, req);
            return self.fork(id, fwd, &[(None, Vec::new(), to)], now);
        }
        if originating {
            return self.originating(id, req, fwd, flow, now);
        }
        self.terminating(id, req, fwd, now);
    }

    /// The originating half (TS 24.229 §5.4.3.2): the asserted caller must be registered
    /// here, or the request comes from a configured AS on behalf of a user who is not
    /// (originating-unregistered, the profile then comes from the HSS). The caller's
    /// originating iFCs run first.
    fn originating(&mut self, id: TxId, req: Message, mut fwd: Message, flow: Flow, now: Instant) {
        let asserted = fwd
            .name_addrs("P-Asserted-Identity")
            .ok()
            .and_then(|l| l.into_iter().next())
            .map(|a| a.uri.to_string());
        let Some(asserted) = asserted else {
            return self.refuse(id, &req, Refusal::NotRegistered, now);
        };
        let owner = self.identity_owner(&asserted).map(str::to_string);
        let Some(owner) = owner else {
            if self.is_application_server(flow.remote.ip()) {
                return self.fetch_unregistered(
                    id,
                    req,
                    fwd,
                    ifc::SessionCase::OriginatingUnregistered,
                    asserted,
                );
            }
            return self.refuse(id, &req, Refusal::NotRegistered, now);
        };
        if let Some(reg) = self.regs.get(&owner) {
            add_tel_identity(&mut fwd, &reg.associated);
        }
        let sub = self.regs.get(&owner).and_then(|r| r.subscription.clone());
        let ifcs = self.ifcs_of(&asserted, sub.as_ref());
        let served = crate::isc::Served {
            case: ifc::SessionCase::Originating,
            identity: asserted,
            registered: true,
            ifcs,
        };
        self.serve(id, req, fwd, served, 0, now);
    }

    /// Pops our own Route entries; true when one of them was our Service-Route's `orig`
    /// entry (the originating session case, TS 24.229 §5.4.3.2).
    fn pop_routes(&self, msg: &mut Message) -> bool {
        let orig = msg
            .header_values("Route")
            .next()
            .and_then(|r| NameAddr::parse(r).ok())
            .is_some_and(|na| self.is_ours(&na.uri) && na.uri.user.as_deref() == Some("orig"));
        proxy::pop_own_routes(msg, |u| self.is_ours(u));
        orig
    }

    /// The registered identity (key of our registrations) that `identity` belongs to.
    pub(crate) fn identity_owner(&self, identity: &str) -> Option<&str> {
        self.aliases
            .get(&registrar::aor_key(identity))
            .map(String::as_str)
    }

    /// The terminating half: the registered callee's terminating iFCs, then its contacts;
    /// a callee we hold no registration of is asked of the HSS.
    pub(crate) fn terminating(&mut self, id: TxId, req: Message, fwd: Message, now: Instant) {
        let callee = fwd.uri_str().unwrap_or_default().to_string();
        let sub = match self
            .identity_owner(&callee)
            .and_then(|impu| self.regs.get(impu))
        {
            Some(reg) if reg.bindings.iter().any(|b| b.expires_at > now) => {
                reg.subscription.clone()
            }
            _ => return self.locate(id, req, fwd, callee),
        };
        let ifcs = self.ifcs_of(&callee, sub.as_ref());
        let served = crate::isc::Served {
            case: ifc::SessionCase::TerminatingRegistered,
            identity: callee,
            registered: true,
            ifcs,
        };
        self.serve(id, req, fwd, served, 0, now);
    }

    /// After the terminating iFCs: fork to the callee's contacts. A Request-URI an AS
    /// changed names somebody else, who gets a terminating case of their own.
    pub(crate) fn deliver(
        &mut self,
        id: TxId,
        req: Message,
        mut fwd: Message,
        served: &crate::isc::Served,
        now: Instant,
    ) {
        let callee = fwd.uri_str().unwrap_or_default().to_string();
        if ifc::identity_key(&callee) != ifc::identity_key(&served.identity) {
            return self.terminating(id, req, fwd, now);
        }
        let targets: Vec<(Option<String>, Vec<String>, Flow)> = match self
            .identity_owner(&callee)
            .and_then(|impu| self.regs.get(impu))
        {
            Some(reg) => reg
                .bindings
                .iter()
                .filter(|b| b.expires_at > now)
                .filter_map(|b| {
                    let contact = NameAddr::parse(&b.contact).ok()?.uri;
                    let first = match b.path.first() {
                        Some(p) => NameAddr::parse(p).ok()?.uri,
                        None => contact.clone(),
                    };
                    let flow = self.flow_to(&first)?;
                    Some((Some(contact.to_string()), b.path.clone(), flow))
                })
                .collect(),
            None => Vec::new(),
        };
        if targets.is_empty() {
            return self.refuse(id, &req, Refusal::Unavailable, now);
        }
        // P-Served-User is for application servers only (RFC 5502 §4: not past the
        // trust domain's edge toward the UE).
        fwd.remove_header("P-Served-User");
        if req.method().is_some_and(creates_dialog) {
            fwd.prepend_header("Record-Route", &self.record_route());
        }
        self.branches.open(id, req);
        self.fork(id, fwd, &targets, now);
    }

    /// Sends a copy of `fwd` to each target: its Request-URI (if any), its Route entries on
    /// top, our Via with a fresh branch.
    fn fork(
        &mut self,
        server: TxId,
        fwd: Message,
        targets: &[(Option<String>, Vec<String>, Flow)],
        now: Instant,
    ) {
        let last = targets.len().saturating_sub(1);
        let mut fwd = Some(fwd);
        for (i, (uri, route, flow)) in targets.iter().enumerate() {
            let Some(mut m) = (if i == last { fwd.take() } else { fwd.clone() }) else {
                break;
            };
            if let Some(u) = uri {
                m.set_uri(u);
            }
            for r in route.iter().rev() {
                m.prepend_header("Route", r);
            }
            let via = self.our_via(flow.protocol);
            m.prepend_header("Via", &via);
            match self.tx.send_request(m, *flow, now) {
                Ok(client) => self.branches.add(server, client, now),
                Err(e) => tracing::warn!("cannot fork: {e}"),
            }
        }
        // Nothing could start: the context would never close, so it goes now.
        if let Some(req) = self.branches.discard(server) {
            self.simple(server, &req, 500, now);
        }
    }

    /// Cx LIR for a callee we have no contact of.
    fn locate(&mut self, id: TxId, req: Message, fwd: Message, callee: String) {
        let session = self.session_id();
        let request = cx::lir(&self.cfg.cx, &session, &callee);
        let token = self.token();
        self.out.push_back(Output::Cx { token, request });
        self.pending.insert(
            token,
            Pending::Lir {
                tx: id,
                req,
                fwd,
                callee,
            },
        );
    }

    /// The HSS's answer on a callee we found no contact of.
    pub(crate) fn on_lia(
        &mut self,
        tx: TxId,
        req: Message,
        fwd: Message,
        callee: String,
        answer: Result<diameter::Message, diameter::RequestError>,
        now: Instant,
    ) {
        let why = match answer.map(|a| cx::parse_lia(&a)) {
            Ok(Err(e)) if e.is_unknown_user() => Refusal::Unknown,
            // Known and not registered (TS 29.228 §6.1.4: 2003 UNREGISTERED_SERVICE): its
            // unregistered services (voicemail-style iFCs) are ours to run, with the
            // profile a SAR UNREGISTERED_USER brings (TS 29.229 §6.1.2).
            Ok(Ok(cx::Location::Unregistered(_) | cx::Location::Unassigned)) => {
                return self.fetch_unregistered(
                    tx,
                    req,
                    fwd,
                    ifc::SessionCase::TerminatingUnregistered,
                    callee,
                )
            }
            // Known (registered elsewhere, unregistered, or the HSS could not say): the
            // callee cannot be reached through us now.
            _ => Refusal::Unavailable,
        };
        self.refuse(tx, &req, why, now);
    }

    /// An ACK outside any transaction of ours (for a 2xx, RFC 3261 §13.2.2.4): forwarded
    /// statelessly along its route.
    pub(crate) fn route_ack(&mut self, req: Message, flow: Flow, _now: Instant) {
        if !self.trusted(&flow) {
            return;
        }
        let Ok(mut fwd) = proxy::forward_copy(&req, flow.remote) else {
            return;
        };
        self.pop_routes(&mut fwd);
        let Some(to) = proxy::next_hop(&fwd).ok().and_then(|u| self.flow_to(&u)) else {
            return;
        };
        let via = self.our_via(to.protocol);
        fwd.prepend_header("Via", &via);
        self.tx.send_stateless(&fwd, to);
    }

    /// A response: to one of our branches, or nothing.
    pub(crate) fn on_response(&mut self, msg: Message, flow: Flow, now: Instant) {
        // Only the node we sent the branch to answers it, checked before the transaction
        // sees the response (a forged one must not complete it).
        if let Some(id) = self.tx.match_response(&msg) {
            let from_target = self
                .tx
                .flow(id)
                .is_none_or(|f| f.remote.ip() == flow.remote.ip());
            if !from_target {
                return self.dropped(flow.remote, crate::core::Drop::WrongSource);
            }
        }
        match self.tx.handle_response(msg, now) {
            Ok(ResponseOutcome::Deliver { id, response }) => {
                let code = response.code().unwrap_or(500);
                if self.third_party_result(id, code, now) || self.as_hop_response(id, code, now) {
                    return;
                }
                let d = self.branches.response(id, response, now);
                self.carry_out(d, now);
            }
            Ok(ResponseOutcome::Absorbed(_)) => {}
            Ok(ResponseOutcome::Stray(_)) => {
                self.dropped(flow.remote, crate::core::Drop::StrayResponse)
            }
            Err(e) => self.dropped(flow.remote, sip::uas::Dropped::NoTransaction(e).into()),
        }
    }

    pub(crate) fn carry_out(&mut self, d: Decision, now: Instant) {
        if let Err(u) = proxy::carry_out(&mut self.tx, d, &mut self.ids, now) {
            self.dropped(u.remote, u.reason.into());
        }
    }

    /// Timer C of the forwarded INVITEs.
    pub(crate) fn branch_timers(&mut self, now: Instant) {
        for d in proxy::timer_c(&mut self.tx, &mut self.branches, now) {
            self.carry_out(d, now);
        }
    }

    /// Transaction events: a branch that timed out or could not be sent counts as its
    /// 408/503 (RFC 3261 §16.7 step 6, §16.9); an ended one leaves the response context.
    pub(crate) fn drain_tx_events(&mut self, now: Instant) {
        use sip::transaction::Event;
        while let Some(e) = self.tx.poll_event() {
            let (id, code) = match e {
                Event::Timeout { id, .. } => (id, 408),
                Event::TransportError { id } => (id, 503),
                Event::Terminated { id } => {
                    self.branches.terminated(id);
                    continue;
                }
            };
            if self.third_party_result(id, code, now)
                || self.as_hop_failed(id, crate::isc::AsFailure::Failed, now)
            {
                continue;
            }
            let d = self.branches.failed(id, code);
            self.carry_out(d, now);
        }
    }
}

/// TS 24.229 §5.4.3.2: when the caller is asserted by a SIP URI only and its implicit
/// registration set holds a tel URI, the originating S-CSCF adds that tel URI as a second
/// P-Asserted-Identity. The callee's network, its application servers (caller-ID) and
/// its handset then see the caller's number, not only an IMSI-derived SIP identity.
fn add_tel_identity(fwd: &mut Message, implicit_set: &[String]) {
    let Ok(asserted) = fwd.name_addrs("P-Asserted-Identity") else {
        return;
    };
    if asserted.is_empty()
        || asserted
            .iter()
            .any(|a| a.uri.scheme == sip::uri::Scheme::Tel)
    {
        return;
    }
    if let Some(tel) = implicit_set.iter().find(|i| i.starts_with("tel:")) {
        fwd.append_header("P-Asserted-Identity", &format!("<{tel}>"));
    }
}
