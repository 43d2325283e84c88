//! Requests other than REGISTER through the P-CSCF (TS 24.229 §5.2.6–5.2.7): calls,
//! MESSAGE, in-dialog requests, CANCEL and ACK, in both directions.
//!
//! ```text
//!  UE A ══ INVITE over A's SA ══▶ P-CSCF ── INVITE, Route: A's Service-Route ──▶ S-CSCF
//!         Route: <P:ps_A;lr>,…             P-Asserted-Identity: from A's registration
//!                                          Record-Route: <P:5060;lr>, <P:ps_A;lr>
//!  UE B ◀═ INVITE over B's SA ═══ P-CSCF ◀─ INVITE to B's contact, Route: B's Path ─ S-CSCF
//!         (P:pc_B → B:us_B)               Record-Route: <P:ps_B;lr>, <P:5060;lr> added
//! ```
//!
//! - Originating requests are taken only from a registered UE: through the SA it
//!   registered over, or, where IPsec is off, from the address it registered from. The
//!   UE's P-Asserted-Identity never goes on: we assert one of its registered identities
//!   (its P-Preferred-Identity when that is one of them, TS 24.229 §5.2.6.3.2), its Route
//!   is replaced by its Service-Route (RFC 3608 §6), `sec-agree` and Security-Verify are
//!   removed (RFC 3329 §2.5), and a P-Charging-Vector is added (RFC 7315 §4.6).
//! - Terminating requests come only from the S-CSCF, to a contact some UE registered, and
//!   go to that UE through its SA: from our protected client port to its protected server
//!   port. A Privacy `id` request loses its P-Asserted-Identity on the way to the UE, which
//!   is outside the trust domain (RFC 3325 §7, RFC 3323 §5).
//! - Both directions Record-Route twice, once per side (RFC 5658): the entry the UE sees
//!   is our protected server port, so every in-dialog request comes back through its SA
//!   (PRACK, UPDATE, BYE outside the tunnel is how lab calls break).
//! - Anything else — a request from a stranger, or a response from somewhere its branch
//!   did not go — is refused or dropped.

use super::*;
use sip::ims::ChargingVector;
use sip::proxy::{self, Decision};
use sip::transaction::ResponseOutcome;
use sip::{NameAddr, Uri, Via};

/// Why a request other than REGISTER was refused (the UE hears only the status code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Neither through a registered UE's SA, nor from the S-CSCF, nor (IPsec off) from an
    /// address a UE registered from (TS 24.229 §5.2.6.3.1).
    #[error("request from no registered UE and not from the S-CSCF")]
    Stranger,
    /// The Request-URI of a terminating request is no contact a UE registered here.
    #[error("terminating request to no registered contact")]
    NoSuchContact,
    /// Max-Forwards exhausted or headers unusable for forwarding.
    #[error(transparent)]
    Forward(#[from] proxy::ForwardError),
    /// The client transaction could not start.
    #[error("cannot forward: {0}")]
    Send(transaction::TxError),
    /// A datagram request that did not parse, answered from its raw bytes
    /// ([`sip::uas::reject_unparsable`]); REGISTERs included.
    #[error("unparsable: {0}")]
    Unparsable(sip::ParseError),
    /// A UE's request that would start new work while the P-CSCF sheds load (503 with
    /// Retry-After, see the `admission` module).
    #[error("overloaded")]
    Overloaded,
}

impl Refusal {
    /// The status code that answers the request.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Stranger => 403,
            Refusal::NoSuchContact => 480,
            Refusal::Forward(e) => e.status(),
            Refusal::Send(_) => 500,
            Refusal::Unparsable(sip::ParseError::Version) => 505,
            Refusal::Unparsable(sip::ParseError::TooLarge { .. }) => 513,
            Refusal::Unparsable(_) => 400,
            Refusal::Overloaded => 503,
        }
    }
}

/// The UE a request came from: its registration and, if protected, the SA set.
struct Originator {
    impu: String,
    sa: Option<SetId>,
}

/// Where a terminating request goes: the UE's flow and the set it goes through.
struct Destination {
    flow: Flow,
    sa: Option<SetId>,
}

fn creates_dialog(m: &Method) -> bool {
    matches!(m, Method::Invite | Method::Subscribe | Method::Refer)
}

/// The parts of sec-agree that stay between the UE and us (RFC 3329 §2.5, TS 24.229
/// §5.2.2.1, §5.2.6.3).
pub(super) fn strip_sec_agree(m: &mut Message) {
    m.remove_header("Security-Client");
    m.remove_header("Security-Verify");
    m.remove_option_tag("Require", "sec-agree");
    m.remove_option_tag("Proxy-Require", "sec-agree");
}

/// The identity we assert for a message from the UE registered as `reg`: its
/// P-Preferred-Identity when that is one of its registered identities (RFC 3325 §9.2),
/// else the first of them (TS 24.229 §5.2.6.3.2, §5.2.6.4.4).
fn asserted_identity(reg: &Registration, msg: &Message) -> Option<String> {
    let registered = |p: &str| {
        let k = scscf::registrar::aor_key(p);
        reg.associated
            .iter()
            .any(|a| scscf::registrar::aor_key(a) == k)
    };
    msg.p_preferred_identity()
        .ok()
        .and_then(|l| l.into_iter().next())
        .map(|na| na.uri.to_string())
        .filter(|p| registered(p))
        .or_else(|| reg.associated.first().cloned())
}

/// Whatever identity the UE wrote goes; ours (if any) takes its place.
fn assert_identity(msg: &mut Message, asserted: Option<String>) {
    msg.remove_header("P-Preferred-Identity");
    msg.remove_header("P-Asserted-Identity");
    if let Some(a) = asserted {
        msg.append_header("P-Asserted-Identity", &format!("<{a}>"));
    }
}

impl Pcscf {
    fn is_ours(&self, uri: &Uri) -> bool {
        uri.host_ip() == Some(self.cfg.local_ip)
            && uri
                .port
                .is_some_and(|p| p == self.cfg.sip_port || self.is_protected_port_number(p))
    }

    fn is_protected_port_number(&self, p: u16) -> bool {
        (self.cfg.port_range.0..=self.cfg.port_range.1).contains(&p) && p != self.cfg.sip_port
    }

    pub(super) fn is_from_upstream(&self, flow: &Flow) -> bool {
        let up = &self.upstream;
        up.address.ip() == flow.remote.ip() && up.protocol == flow.protocol
    }

    fn our_uri(&self, port: u16) -> String {
        format!("<sip:{}:{port};lr>", sip::uri::ip_host(self.cfg.local_ip))
    }

    fn our_via(&mut self, protocol: Protocol, port: u16) -> String {
        Via::new(
            protocol.as_str(),
            &sip::uri::ip_host(self.cfg.local_ip),
            Some(port),
            &self.ids.branch(),
        )
        .to_string()
    }

    /// The registered UE behind `flow`, if any.
    fn originator(&self, flow: &Flow, via_sa: Option<SetId>) -> Option<Originator> {
        match via_sa {
            Some(sa) => {
                let impu = self.sa_owner.get(&sa)?;
                let reg = self.regs.get(impu)?;
                (self.sas.get(&sa).map(|r| r.impi.as_str()) == Some(reg.impi.as_str())).then(|| {
                    Originator {
                        impu: impu.clone(),
                        sa: Some(sa),
                    }
                })
            }
            None if flow.local.is_none_or(|l| !self.is_protected_port(l)) => {
                let impu = self.unprotected.get(&flow.remote)?;
                (self.regs.get(impu)?.sa.is_none()).then(|| Originator {
                    impu: impu.clone(),
                    sa: None,
                })
            }
            None => None,
        }
    }

    fn refuse_request(&mut self, tx: TxId, req: &Message, why: Refusal, now: Instant) {
        let code = why.status();
        self.stats.refused += 1;
        let r = match why {
            Refusal::Overloaded => ResponseBuilder::new(req, 503)
                .to_tag(&self.ids.tag())
                .header(
                    "Retry-After",
                    self.admission.overload_retry_after().to_string(),
                )
                .build(),
            _ => sip::uas::simple(req, code, &mut self.ids),
        };
        self.respond(tx, r, now);
        self.event(CoreEvent::Refused {
            method: req
                .method()
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
            code,
            reason: why,
        });
    }

    /// A new server transaction for anything but REGISTER.
    pub(super) fn on_session_request(
        &mut self,
        id: TxId,
        req: Message,
        flow: Flow,
        via_sa: Option<SetId>,
        now: Instant,
    ) {
        if req.method() == Some(&Method::Cancel) {
            // Only a CANCEL that matches one of our INVITE server transactions does
            // anything, and that match includes the sender's Via (RFC 3261 §9.2).
            if let Err(u) = proxy::on_cancel(
                &mut self.tx,
                &mut self.branches,
                id,
                &req,
                &mut self.ids,
                now,
            ) {
                self.dropped(u.remote, u.reason.into());
            }
            return;
        }
        // From the S-CSCF's address, unless a UE registered from exactly there (a lab with
        // SIPp and the S-CSCF on one loopback IP): the S-CSCF is recognised by IP alone,
        // since over TCP it may open connections from any port.
        let from_core = via_sa.is_none()
            && self.is_from_upstream(&flow)
            && self.originator(&flow, None).is_none();
        if from_core {
            if self.on_reg_notify(id, &req, now) {
                return;
            }
            return self.terminating(id, req, flow, now);
        }
        // Shedding: a UE's request that opens something new waits; in-dialog requests
        // (a To tag) finish what is under way.
        if self.admission.overloaded() && !req.to_header().is_ok_and(|t| t.tag().is_some()) {
            return self.refuse_request(id, &req, Refusal::Overloaded, now);
        }
        match self.originator(&flow, via_sa) {
            Some(o) => self.originating(id, req, flow, o, now),
            None => self.refuse_request(id, &req, Refusal::Stranger, now),
        }
    }

    /// UE → core (TS 24.229 §5.2.6.3).
    fn originating(&mut self, id: TxId, req: Message, flow: Flow, o: Originator, now: Instant) {
        let mut fwd = match proxy::forward_copy(&req, flow.remote) {
            Ok(f) => f,
            Err(e) => return self.refuse_request(id, &req, e.into(), now),
        };
        proxy::pop_own_routes(&mut fwd, |u| self.is_ours(u));
        strip_sec_agree(&mut fwd);
        let initial = !fwd.to_header().is_ok_and(|t| t.tag().is_some());
        let Some(reg) = self.regs.get(&o.impu) else {
            return self.refuse_request(id, &req, Refusal::Stranger, now);
        };
        // The identity we assert: the preferred one if it is registered, else the first
        // of the registered set.
        let asserted = asserted_identity(reg, &fwd).or_else(|| Some(o.impu.clone()));
        let service_route = reg.service_route.clone();
        assert_identity(&mut fwd, asserted);
        if initial {
            // Service-Route enforced (RFC 3608 §6, TS 24.229 §5.2.6.3.2): whatever the UE
            // preloaded goes.
            fwd.remove_header("Route");
            for r in service_route.iter().rev() {
                fwd.prepend_header("Route", r);
            }
            if !fwd.has_header("P-Charging-Vector") {
                let icid = self.ids.call_id(None);
                let cv = ChargingVector::new(&icid).to_string();
                fwd.append_header(
                    "P-Charging-Vector",
                    &format!(
                        "{cv};icid-generated-at={}",
                        sip::uri::ip_host(self.cfg.local_ip)
                    ),
                );
            }
            if req.method().is_some_and(creates_dialog) {
                let ue_side = match o.sa.and_then(|s| self.sas.get(&s)) {
                    Some(r) => r.set.port_ps,
                    None => self.cfg.sip_port,
                };
                if ue_side != self.cfg.sip_port {
                    fwd.prepend_header("Record-Route", &self.our_uri(ue_side));
                }
                fwd.prepend_header("Record-Route", &self.our_uri(self.cfg.sip_port));
            }
        }
        let up = self.upstream.clone();
        let via = self.our_via(up.protocol, self.cfg.sip_port);
        fwd.prepend_header("Via", &via);
        self.start_branch(id, req, fwd, Flow::to(up.address, up.protocol), None, now);
    }

    /// Core → UE (TS 24.229 §5.2.6.4).
    fn terminating(&mut self, id: TxId, req: Message, flow: Flow, now: Instant) {
        let mut fwd = match proxy::forward_copy(&req, flow.remote) {
            Ok(f) => f,
            Err(e) => return self.refuse_request(id, &req, e.into(), now),
        };
        proxy::pop_own_routes(&mut fwd, |u| self.is_ours(u));
        let Some(dest) = self.destination(&fwd) else {
            return self.refuse_request(id, &req, Refusal::NoSuchContact, now);
        };
        let initial = !fwd.to_header().is_ok_and(|t| t.tag().is_some());
        if initial && req.method().is_some_and(creates_dialog) {
            fwd.prepend_header("Record-Route", &self.our_uri(self.cfg.sip_port));
            if let Some(r) = dest.sa.and_then(|s| self.sas.get(&s)) {
                let ps = r.set.port_ps;
                fwd.prepend_header("Record-Route", &self.our_uri(ps));
            }
        }
        if fwd
            .option_tags("Privacy")
            .any(|t| t.eq_ignore_ascii_case("id"))
        {
            fwd.remove_header("P-Asserted-Identity");
        }
        let port = dest.flow.local.map_or(self.cfg.sip_port, |l| l.port());
        let via = self.our_via(dest.flow.protocol, port);
        fwd.prepend_header("Via", &via);
        let rule = match dest.sa {
            Some(_) if !self.to_ue.through_sa => self.to_ue.rule.without_tcp(),
            _ => self.to_ue.rule,
        };
        self.start_branch(id, req, fwd, dest.flow, Some(&rule), now);
    }

    /// The UE whose registered contact the Request-URI names, and the flow to it.
    fn destination(&self, fwd: &Message) -> Option<Destination> {
        let target = fwd.request_uri().ok()?;
        let (addr, protocol) = proxy::uri_target(&target)?;
        let impu = self.ue_contacts.get(&addr)?;
        let reg = self.regs.get(impu)?;
        match reg.sa.and_then(|s| self.sas.get(&s).map(|r| (s, r))) {
            Some((sa, r)) => {
                let set = &r.set;
                Some(Destination {
                    flow: Flow::new(
                        SocketAddr::new(set.pcscf, set.port_pc),
                        SocketAddr::new(set.ue, set.port_us),
                        protocol,
                    ),
                    sa: Some(sa),
                })
            }
            None => Some(Destination {
                flow: Flow::to(addr, protocol),
                sa: None,
            }),
        }
    }

    /// Forwards `fwd` on a new client transaction; `rule` (toward UEs) may move it to TCP.
    fn start_branch(
        &mut self,
        server: TxId,
        req: Message,
        fwd: Message,
        flow: Flow,
        rule: Option<&sip::SizeRule>,
        now: Instant,
    ) {
        let sent = match rule {
            Some(r) => self.tx.send_request_sized(fwd, flow, r, now),
            None => self.tx.send_request(fwd, flow, now),
        };
        match sent {
            Ok(client) => {
                self.branches.open(server, req);
                self.branches.add(server, client, now);
            }
            Err(e) => self.refuse_request(server, &req, Refusal::Send(e), now),
        }
    }

    /// An ACK for a 2xx (RFC 3261 §13.2.2.4): no transaction, routed like its dialog's
    /// other requests, and only from the same places.
    pub(super) fn route_ack(
        &mut self,
        req: Message,
        flow: Flow,
        via_sa: Option<SetId>,
        _now: Instant,
    ) {
        let Ok(mut fwd) = proxy::forward_copy(&req, flow.remote) else {
            return;
        };
        proxy::pop_own_routes(&mut fwd, |u| self.is_ours(u));
        let to = if self.is_from_upstream(&flow) && via_sa.is_none() {
            match self.destination(&fwd) {
                Some(d) => d.flow,
                None => return,
            }
        } else if self.originator(&flow, via_sa).is_some() {
            strip_sec_agree(&mut fwd);
            fwd.remove_header("P-Asserted-Identity");
            Flow::to(self.upstream.address, self.upstream.protocol)
        } else {
            return self.dropped(flow.remote, DropReason::Stranger);
        };
        let port = to.local.map_or(self.cfg.sip_port, |l| l.port());
        let via = self.our_via(to.protocol, port);
        fwd.prepend_header("Via", &via);
        self.tx.send_stateless(&fwd, to);
    }

    /// A response to one of our branches: from where the branch went, or dropped.
    pub(super) fn on_branch_response(
        &mut self,
        msg: Message,
        flow: Flow,
        via_sa: Option<SetId>,
        now: Instant,
    ) {
        // Where it comes from is checked before the transaction sees it: a forged response
        // must not complete anybody's transaction. A REGISTER's answer only ever comes from
        // the S-CSCF; a branch's only from where the branch went (through the SA it went
        // through).
        if let Some(id) = self.tx.match_response(&msg) {
            let expected = self.tx.flow(id).map(|f| f.remote);
            let ok = !self.forwarded.contains_key(&id)
                && expected.is_none_or(|r| {
                    r.ip() == flow.remote.ip() && (via_sa.is_none() || r == flow.remote)
                });
            if !ok {
                return self.dropped(flow.remote, DropReason::NotFromUpstream);
            }
        }
        match self.tx.handle_response(msg, now) {
            Ok(ResponseOutcome::Deliver { id, response }) => {
                let mut response = response;
                if let Some(sa) = via_sa {
                    self.assert_responder(&mut response, sa);
                }
                let d = self.branches.response(id, response, now);
                self.carry_out(d, now);
            }
            Ok(ResponseOutcome::Absorbed(_) | ResponseOutcome::Stray(_)) => {}
            Err(e) => self.dropped(flow.remote, DropReason::BadResponse(e)),
        }
        self.drain_tx_events(now);
    }

    /// A response from a UE leaves with the identity we assert for it, never its own
    /// (TS 24.229 §5.2.6.4.4: the called party's P-Asserted-Identity comes from its
    /// registration; a P-Preferred-Identity among its registered ones picks which).
    fn assert_responder(&self, response: &mut Message, sa: SetId) {
        let asserted = self
            .sa_owner
            .get(&sa)
            .and_then(|i| self.regs.get(i))
            .and_then(|reg| asserted_identity(reg, response));
        assert_identity(response, asserted);
    }

    pub(super) fn carry_out(&mut self, d: Decision, now: Instant) {
        if let Err(u) = proxy::carry_out(&mut self.tx, d, &mut self.ids, now) {
            self.dropped(u.remote, u.reason.into());
        }
    }

    /// Timer C of the forwarded INVITEs.
    pub(super) fn branch_timers(&mut self, now: Instant) {
        for d in proxy::timer_c(&mut self.tx, &mut self.branches, now) {
            self.carry_out(d, now);
        }
    }

    /// Where the registration of `impu` can be reached, for the indexes the two
    /// directions use: its contacts' addresses, and the address it registered from when
    /// it has no SA.
    pub(super) fn index_registration(&mut self, impu: &str, source: SocketAddr) {
        let Some(reg) = self.regs.get(impu) else {
            return;
        };
        let contacts: Vec<SocketAddr> = reg
            .bindings
            .iter()
            .filter_map(|b| NameAddr::parse(&b.contact).ok())
            .filter_map(|na| proxy::uri_target(&na.uri).map(|(a, _)| a))
            .collect();
        let sa = reg.sa;
        for a in contacts {
            self.ue_contacts.insert(a, impu.to_string());
        }
        match sa {
            Some(sa) => {
                self.sa_owner.insert(sa, impu.to_string());
            }
            None => {
                self.unprotected.insert(source, impu.to_string());
            }
        }
    }

    /// Removes what [`Pcscf::index_registration`] added for `reg` of `impu`.
    pub(super) fn unindex_registration(&mut self, impu: &str, reg: &Registration) {
        let drop_if_ours = |m: &mut HashMap<SocketAddr, String>, k: SocketAddr| {
            if m.get(&k).map(String::as_str) == Some(impu) {
                m.remove(&k);
            }
        };
        for b in &reg.bindings {
            if let Some((a, _)) = NameAddr::parse(&b.contact)
                .ok()
                .and_then(|na| proxy::uri_target(&na.uri))
            {
                drop_if_ours(&mut self.ue_contacts, a);
            }
        }
        drop_if_ours(&mut self.unprotected, reg.source);
        if let Some(sa) = reg.sa {
            if self.sa_owner.get(&sa).map(String::as_str) == Some(impu) {
                self.sa_owner.remove(&sa);
            }
        }
    }
}
