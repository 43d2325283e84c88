//! A UE's registration through the P-CSCF: its share of the work only, the same whether
//! the S-CSCF is Kamailio over the network or our `scscf` core in this process
//! (TS 24.229 §5.2.2, TS 33.203 §7):
//!
//! ```text
//!  UE ── REGISTER (Security-Client) ──────────▶ P-CSCF ── REGISTER (Path, PVNI, ─▶ S-CSCF
//!                                                          integrity-protected="no")
//!  UE ◀─ 401 (Security-Server, no ck/ik) ─────  P-CSCF ◀─ 401 (ck=, ik=) ──────── S-CSCF
//!        temporary SA set installed from ck/ik in between
//!  UE ══ REGISTER (Security-Verify) over SA ══▶ P-CSCF ── REGISTER (…="yes") ──▶ S-CSCF
//!  UE ◀═ 200 OK over SA ══════════════════════ P-CSCF ◀─ 200 OK ──────────────── S-CSCF
//!        set promoted, the previous one retired
//! ```
//!
//! Everything is keyed by our client transaction toward the S-CSCF ([`Forwarded`]): the
//! REGISTER is forwarded statefully (RFC 3261 §16.6: our Via on top, Max-Forwards
//! decremented, Request-URI unchanged), and the response context remembers which server
//! transaction, flow and SA set it answers.
//!
//! What the UE sends is never trusted for what the P-CSCF asserts: a UE-supplied
//! `integrity-protected` or P-Visited-Network-ID is replaced, and the Security-Verify of a
//! protected REGISTER must repeat the Security-Server of the very SA set it arrived
//! through (TS 33.203 §7.2). CK and IK are removed from every response before it goes
//! down (TS 24.229 §5.2.2.1: the UE derives them itself; seeing them on the air would
//! hand them to anyone listening).

use super::*;
use akav1::digest::Credentials;
use sip::headers::{contact_expires, parse_delta_seconds, Contacts};
use sip::transaction::ResponseOutcome;
use sip::Via;

/// Where the S-CSCF is and what we assert toward it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The S-CSCF's SIP address (for the collapsed S-CSCF: its address in this process).
    pub address: SocketAddr,
    /// Transport toward it: UDP or TCP to an external S-CSCF,
    /// [`Protocol::InProcess`] to ours.
    pub protocol: Protocol,
    /// `Route: <route;lr>` on forwarded REGISTERs, if set.
    pub route: Option<String>,
    /// Our P-Visited-Network-ID (TS 24.229 §5.2.2.1).
    pub visited_network_id: String,
    /// Subscribe to each registered user's reg event at the S-CSCF (TS 24.229 §5.2.3), to
    /// hear of network-initiated deregistrations.
    pub reg_event: bool,
}

/// A REGISTER forwarded upstream, waiting for its final response.
pub(super) struct Forwarded {
    /// The UE's request, its server transaction and flow.
    ctx: Ctx,
    /// The SA set it arrived through, if protected.
    via_sa: Option<SetId>,
    /// The offer picked from its Security-Client, for the SA set a 401 will need.
    choice: Option<Choice>,
    /// Expiry it asked for (0 = deregistration).
    expires: u32,
    /// It carried `auts`: a 401 for it means the HSS checked MAC-S, proof enough that it
    /// came from the card holder, whose earlier challenges are void then.
    resync: bool,
}

/// A 401 from the S-CSCF waiting for its temporary SA set.
pub(super) struct PendingPrepare {
    fwd: Forwarded,
    response: Message,
    server: Vec<SecurityMechanism>,
    set: SaSet,
    leases: Vec<Lease>,
}

impl Pcscf {
    pub(super) fn on_register(
        &mut self,
        tx: TxId,
        req: Message,
        flow: Flow,
        via_sa: Option<SetId>,
        now: Instant,
    ) {
        let Some(scscf::registrar::Identities { impu, impi, creds }) =
            scscf::registrar::identities(&req)
        else {
            return self.simple(tx, &req, 400, now);
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
                return self.reject(&ctx, 403, Rejection::NotSaOwner, now);
            }
        }
        // Admission before any cost: a vector, an SA set, a key line (see `admission`).
        // What arrives through an SA answers a challenge we already paid for.
        if via_sa.is_none() {
            if self.admission.overloaded() {
                let secs = self.admission.overload_retry_after();
                return self.unavailable(&ctx, secs, Rejection::Overloaded, now);
            }
            if let Err(secs) = self.admission.register(&ctx.impi, now) {
                return self.unavailable(&ctx, secs, Rejection::RateLimited(secs), now);
            }
        }
        let expires = match scscf::registrar::requested_expires(&ctx.req, self.cfg.default_expires)
        {
            Ok(e) => e,
            Err(_) => {
                return self.reject(&ctx, 400, Rejection::Malformed("Expires or Contact"), now)
            }
        };
        self.forward_register(ctx, creds, via_sa, expires, now);
    }

    /// Sec-agree checks, header edits, forward.
    fn forward_register(
        &mut self,
        ctx: Ctx,
        creds: Option<Credentials>,
        via_sa: Option<SetId>,
        expires: u32,
        now: Instant,
    ) {
        // Bid-down protection: Security-Verify repeats what we sent for this very set.
        if let Some(sa) = via_sa {
            let sent = self
                .sas
                .get(&sa)
                .map(|r| r.server.clone())
                .unwrap_or_default();
            let verify: Result<Vec<SecurityMechanism>, _> = ctx
                .req
                .header_values("Security-Verify")
                .map(SecurityMechanism::parse_list)
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.into_iter().flatten().collect());
            let ok = verify
                .ok()
                .is_some_and(|v| secagree::check_verify(&sent, &v).is_ok());
            if !ok {
                // Only the SA's owner can send through it: a temporary set whose owner
                // tries a downgrade is void (TS 33.203 §7.2).
                if let Some(set) = self.take_challenge(&ctx.impi, |c| c.sa == sa) {
                    self.delete_sa(set);
                }
                return self.reject(&ctx, 494, Rejection::VerifyMismatch, now);
            }
        }
        // The offer a challenge would build its set from. A protected REGISTER may lack
        // one (no new set then); an unprotected one follows the policy.
        let choice = if via_sa.is_some() {
            let offers: Vec<SecurityMechanism> = ctx
                .req
                .header_values("Security-Client")
                .filter_map(|v| SecurityMechanism::parse_list(v).ok())
                .flatten()
                .collect();
            if offers.is_empty() || self.cfg.policy == IpsecPolicy::Off || !self.cfg.ipsec_available
            {
                None
            } else {
                secagree::choose(&offers, &self.cfg.prefs).ok()
            }
        } else {
            match self.negotiate(&ctx, now) {
                Ok(c) => c,
                Err(()) => return,
            }
        };
        let resync = creds.as_ref().is_some_and(|c| c.auts.is_some());
        let up = self.upstream.clone();
        let fwd = match self.forwarded_request(&ctx, creds, via_sa.is_some(), &up) {
            Ok(f) => f,
            Err(code) => {
                let why = if code == 483 {
                    Rejection::TooManyHops
                } else {
                    Rejection::Unforwardable
                };
                return self.reject(&ctx, code, why, now);
            }
        };
        match self
            .tx
            .send_request(fwd, Flow::to(up.address, up.protocol), now)
        {
            Ok(id) => {
                if resync {
                    self.stats.resyncs += 1;
                }
                self.forwarded.insert(
                    id,
                    Forwarded {
                        ctx,
                        via_sa,
                        choice,
                        expires,
                        resync,
                    },
                );
            }
            Err(e) => self.reject(&ctx, 500, Rejection::ForwardFailed(e), now),
        }
    }

    /// Sec-agree for an unprotected REGISTER that may lead to a challenge: the offer we pick
    /// from its Security-Client by preference (RFC 3329 §2.3, TS 33.203 §7.1), `None` for no
    /// IPsec. `Err(())` when the REGISTER has been answered with a refusal already (421,
    /// 400, 494, 500).
    fn negotiate(&mut self, ctx: &Ctx, now: Instant) -> Result<Option<Choice>, ()> {
        let offers = match ctx.req.header("Security-Client") {
            None => None,
            Some(_) => {
                let mut all = Vec::new();
                for v in ctx.req.header_values("Security-Client") {
                    match SecurityMechanism::parse_list(v) {
                        Ok(l) => all.extend(l),
                        Err(e) => {
                            self.reject(ctx, 400, Rejection::MalformedSecurityClient(e), now);
                            return Err(());
                        }
                    }
                }
                Some(all)
            }
        };
        match (self.cfg.policy, offers) {
            (IpsecPolicy::Off, _) | (IpsecPolicy::Optional, None) => Ok(None),
            (IpsecPolicy::Required, None) => {
                let r = ResponseBuilder::new(&ctx.req, 421)
                    .to_tag(&self.ids.tag())
                    .header("Require", "sec-agree")
                    .build();
                self.refuse(ctx, r, 421, Rejection::SecAgreeRequired, now);
                Err(())
            }
            (_, Some(_)) if !self.cfg.ipsec_available => {
                if self.cfg.policy == IpsecPolicy::Required {
                    self.reject(ctx, 500, Rejection::NoIpsecBackend, now);
                    return Err(());
                }
                Ok(None)
            }
            (_, Some(offers)) => match secagree::choose(&offers, &self.cfg.prefs) {
                Ok(c) => Ok(Some(c)),
                Err(e) => {
                    let r = ResponseBuilder::new(&ctx.req, 494)
                        .to_tag(&self.ids.tag())
                        .header("Security-Server", self.supported_mechanisms())
                        .header("Require", "sec-agree")
                        .build();
                    self.refuse(ctx, r, 494, Rejection::NoAcceptableOffer(e), now);
                    Err(())
                }
            },
        }
    }

    /// Our acceptable mechanisms, for a 494 (RFC 3329 §2.3.1).
    fn supported_mechanisms(&self) -> String {
        let mut list = Vec::new();
        for e in &self.cfg.prefs.encryption {
            for i in &self.cfg.prefs.integrity {
                let mut m =
                    SecurityMechanism::ipsec_3gpp(i.sip_name(), Some(e.sip_name()), 0, 0, 0, 0);
                m.spi_c = None;
                m.spi_s = None;
                m.port_c = None;
                m.port_s = None;
                list.push(m);
            }
        }
        format_security_list(&list)
    }

    /// The REGISTER as the S-CSCF gets it (TS 24.229 §5.2.2.1, RFC 3261 §16.6); `Err`
    /// carries the status code to answer instead.
    fn forwarded_request(
        &mut self,
        ctx: &Ctx,
        creds: Option<Credentials>,
        protected: bool,
        up: &Upstream,
    ) -> Result<Message, u16> {
        let mut fwd =
            sip::proxy::forward_copy(&ctx.req, ctx.flow.remote).map_err(|e| e.status())?;
        // sec-agree is between the UE and us (RFC 3329 §2.5, TS 24.229 §5.2.2.1).
        super::session::strip_sec_agree(&mut fwd);
        // integrity-protected is ours to say, whatever the UE wrote (TS 24.229 §5.2.2.1,
        // §7.2A.1); credentials we cannot parse were refused before (400).
        if let Some(mut first) = creds {
            let flag = if protected { "yes" } else { "no" };
            // The first Authorization is the one `identities` parsed: reuse it instead of
            // parsing it again. Any further ones get the same treatment.
            first.integrity_protected = Some(flag.to_string());
            let mut first = Some(first);
            fwd.rewrite_headers("Authorization", |v| {
                first
                    .take()
                    .or_else(|| Credentials::parse(v).ok())
                    .map(|mut c| {
                        c.integrity_protected = Some(flag.to_string());
                        c.to_header()
                    })
            });
        } else if protected {
            // A protected REGISTER without credentials still tells the S-CSCF what we know:
            // it came through the SA of this IMPI (TS 24.229 §5.2.2.1).
            let c = Credentials {
                username: ctx.impi.clone(),
                realm: self.cfg.domain.clone(),
                uri: ctx.req.uri_str().unwrap_or_default().to_string(),
                integrity_protected: Some("yes".into()),
                ..Default::default()
            };
            fwd.append_header("Authorization", &c.to_header());
        }
        let host = sip::uri::ip_host(self.cfg.local_ip);
        // Terminating requests come back through us (RFC 3327).
        fwd.prepend_header(
            "Path",
            &format!("<sip:term@{host}:{};lr>", self.cfg.sip_port),
        );
        if !fwd.has_option_tag("Supported", "path") {
            fwd.append_header("Supported", "path");
        }
        fwd.remove_header("P-Visited-Network-ID");
        fwd.append_header(
            "P-Visited-Network-ID",
            &token_or_quoted(&up.visited_network_id),
        );
        if let Some(r) = &up.route {
            fwd.prepend_header("Route", &format!("<{r};lr>"));
        }
        let via = Via::new(
            up.protocol.as_str(),
            &host,
            Some(self.cfg.sip_port),
            &self.ids.branch(),
        );
        fwd.prepend_header("Via", &via.to_string());
        Ok(fwd)
    }

    /// A response from the S-CSCF's host (the caller checked: not through an SA, not on a
    /// protected port), matched to a client transaction: a forwarded REGISTER's, or a
    /// call's or MESSAGE's branch. A REGISTER's answer is taken from nowhere else, so
    /// nobody else can hand us keys for a UE's SA set. The source
    /// port is not compared: a UDP server may answer from another socket than the one it
    /// received on (RFC 3261 §18.2.2 sends to the Via, from anywhere), and a relay or
    /// load balancer in front of the S-CSCF makes that the rule.
    pub(super) fn on_upstream_message(&mut self, msg: Message, flow: Flow, now: Instant) {
        match self.tx.handle_response(msg, now) {
            Ok(ResponseOutcome::Deliver { id, response }) if self.forwarded.contains_key(&id) => {
                self.on_upstream_response(id, response, now)
            }
            Ok(ResponseOutcome::Deliver { id, response }) => {
                // The response to a call or MESSAGE we forwarded to the S-CSCF.
                let d = self.branches.response(id, response, now);
                self.carry_out(d, now);
            }
            // Retransmissions of a final response, or answers to nothing we sent: a
            // proxy forwards only what it can match (non-INVITE, RFC 3261 §16.7).
            Ok(ResponseOutcome::Absorbed(_) | ResponseOutcome::Stray(_)) => {}
            Err(e) => self.dropped(flow.remote, DropReason::BadResponse(e)),
        }
        self.drain_tx_events(now);
    }

    fn on_upstream_response(&mut self, id: TxId, mut resp: Message, now: Instant) {
        let Some(code) = resp.code() else { return };
        // Our own Via goes; the transaction matched it by branch (RFC 3261 §16.7 step 3).
        resp.pop_header_value("Via");
        // Keys never travel further down, whatever the status (TS 24.229 §5.2.2.1).
        let keys = resp.take_aka_keys();
        if code < 200 {
            // 100 is hop by hop (RFC 3261 §16.7 step 5); others go down.
            if code > 100 {
                if let Some(p) = self.forwarded.get(&id) {
                    let tx = p.ctx.tx;
                    self.respond(tx, Ok(resp), now);
                }
            }
            return;
        }
        let Some(p) = self.forwarded.remove(&id) else {
            return;
        };
        match code {
            401 => self.upstream_challenge(p, resp, keys, now),
            200..=299 => self.upstream_ok(p, resp, now),
            _ => {
                self.refuse(&p.ctx, Ok(resp), code, Rejection::Upstream, now);
                self.drop_temporary(&p);
            }
        }
    }

    /// The temporary set this request came through (a failed answer to a challenge) is
    /// void now (TS 33.203 §7.1).
    fn drop_temporary(&mut self, p: &Forwarded) {
        let Some(sa) = p.via_sa else { return };
        if let Some(sa) = self.take_challenge(&p.ctx.impi, |c| c.sa == sa) {
            self.delete_sa(sa);
        }
    }

    fn upstream_challenge(
        &mut self,
        p: Forwarded,
        resp: Message,
        keys: Result<Option<sip::auth::AkaKeys>, akav1::digest::DigestError>,
        now: Instant,
    ) {
        let keys = match keys.map(|k| k.map(|k| (hex16(k.ck.as_deref()), hex16(k.ik.as_deref())))) {
            Ok(None) => None,
            Ok(Some((Some(ck), Some(ik)))) => Some((ck, ik)),
            Ok(Some(_)) => {
                self.drop_temporary(&p);
                return self.reject(&p.ctx, 502, Rejection::BadUpstreamKeys, now);
            }
            Err(e) => {
                self.drop_temporary(&p);
                return self.reject(&p.ctx, 502, Rejection::BadUpstreamChallenge(e), now);
            }
        };
        let (choice, (ck, ik)) = match (p.choice.clone(), keys) {
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) if self.cfg.policy == IpsecPolicy::Required => {
                self.drop_temporary(&p);
                return self.reject(&p.ctx, 502, Rejection::NoUpstreamKeys, now);
            }
            _ => {
                // No IPsec for this UE (optional/off, or a protected REGISTER without a
                // new offer): the challenge goes down as it is, keys stripped.
                self.drop_temporary(&p);
                self.stats.challenges += 1;
                self.respond(p.ctx.tx, Ok(resp), now);
                self.event(CoreEvent::Challenged {
                    impi: p.ctx.impi,
                    ipsec: false,
                });
                return;
            }
        };
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
            Err(e) => return self.reject(&p.ctx, 503, Rejection::IpsecExhausted(e), now),
        };
        let server = secagree::server_mechanism(
            &choice,
            leases[0].value(),
            leases[1].value(),
            leases[2].port(),
            leases[3].port(),
        );
        let set = match secagree::sa_set(
            p.ctx.flow.remote.ip(),
            self.cfg.local_ip,
            &choice.offer,
            &server,
            &ck,
            &ik,
            self.cfg.auth_timeout,
            now,
        ) {
            Ok(s) => s,
            Err(e) => return self.reject(&p.ctx, 494, Rejection::UnusableOffer(e), now),
        };
        let token = self.token();
        self.out.push_back(Output::Security(SecurityOp::Prepare {
            token,
            set: set.clone(),
        }));
        self.preparing.insert(
            token,
            PendingPrepare {
                fwd: p,
                response: resp,
                server: vec![server],
                set,
                leases,
            },
        );
    }

    /// The shell installed (or failed to install) the set of a 401: the UE gets the
    /// challenge, or an error and nothing stays leased.
    pub(super) fn challenge_ready(
        &mut self,
        pp: PendingPrepare,
        result: Result<SetId, secagree::SipIoError>,
        now: Instant,
    ) {
        let PendingPrepare {
            fwd: p,
            mut response,
            server,
            set,
            leases,
        } = pp;
        let id = match result {
            Ok(id) => id,
            Err(e) => {
                // `leases` drops here: SPIs and ports go back to the pools.
                drop(leases);
                self.drop_temporary(&p);
                return self.reject(&p.ctx, 500, Rejection::IpsecSetup(e.to_string()), now);
            }
        };
        self.sas.insert(
            id,
            SaRecord {
                set,
                impi: p.ctx.impi.clone(),
                server: server.clone(),
                _leases: leases,
            },
        );
        response.append_header("Security-Server", &format_security_list(&server));
        self.stats.challenges += 1;
        self.respond(p.ctx.tx, Ok(response), now);
        // The set this REGISTER came through, if it was a temporary one, is void: the
        // UE has been challenged again (resync, or the S-CSCF refused the answer).
        self.drop_temporary(&p);
        if p.resync {
            for old in self.challenges.remove(&p.ctx.impi).unwrap_or_default() {
                self.delete_sa(old.sa);
            }
        }
        let cid = self.next_seq();
        let list = self.challenges.entry(p.ctx.impi.clone()).or_default();
        let evicted =
            (list.len() >= self.cfg.max_challenges_per_impi.max(1)).then(|| list.remove(0));
        list.push(PendingChallenge { id: cid, sa: id });
        if let Some(old) = evicted {
            self.delete_sa(old.sa);
        }
        self.set_timer(
            now + self.cfg.auth_timeout,
            TimerKind::Challenge {
                impi: p.ctx.impi.clone(),
                id: cid,
            },
        );
        self.event(CoreEvent::Challenged {
            impi: p.ctx.impi,
            ipsec: true,
        });
    }

    fn upstream_ok(&mut self, p: Forwarded, resp: Message, now: Instant) {
        let Forwarded {
            ctx,
            via_sa,
            expires: asked,
            ..
        } = p;
        // Was the request's set the temporary one of a challenge?
        let temporary = via_sa.is_some_and(|sa| self.is_challenge_set(&ctx.impi, sa));
        if let (true, Some(sa)) = (temporary, via_sa) {
            self.take_challenge(&ctx.impi, |c| c.sa == sa);
        }
        let granted = if asked == 0 {
            0
        } else {
            granted_expiry(&ctx.req, &resp).unwrap_or(asked)
        };
        // The answer goes out before any set changes state: through the set the request
        // used (TS 33.203 §7.4).
        self.respond(ctx.tx, Ok(resp.clone()), now);
        if granted == 0 {
            self.end_registration(&ctx.impu, "user", now);
            if temporary {
                if let Some(sa) = via_sa {
                    self.retire_sa(sa, now);
                }
            }
            return;
        }
        if temporary {
            if let Some(id) = via_sa {
                self.out.push_back(Output::Security(SecurityOp::Promote {
                    id,
                    lifetime: Duration::from_secs(u64::from(granted)) + self.cfg.auth_timeout,
                }));
            }
        }
        // The set the registration lives on: a new one after a re-authentication, else
        // the one it had (a re-registration the S-CSCF did not challenge).
        let old_sa = self.regs.get(&ctx.impu).and_then(|r| r.sa);
        let new_sa = if temporary { via_sa } else { old_sa.or(via_sa) };
        if let Some(old) = old_sa {
            if Some(old) != new_sa {
                self.retire_sa(old, now);
            }
        }
        let strip = |v: &str| {
            let v = v.trim();
            v.strip_prefix('<')
                .and_then(|x| x.split('>').next())
                .unwrap_or(v)
                .to_string()
        };
        let mut associated: Vec<String> =
            resp.header_values("P-Associated-URI").map(strip).collect();
        if associated.is_empty() {
            associated.push(ctx.impu.clone());
        }
        let service_route: Vec<String> = resp
            .header_values("Service-Route")
            .map(str::to_string)
            .collect();
        let generation = self.next_seq();
        let expires_at = now + Duration::from_secs(u64::from(granted));
        let bindings = scscf::registrar::contacts(&ctx.req)
            .into_iter()
            .map(|c| Binding {
                contact: c.to_string(),
                expires_at,
            })
            .collect();
        let old = self.regs.insert(
            ctx.impu.clone(),
            Registration {
                impi: ctx.impi.clone(),
                associated,
                service_route,
                bindings,
                sa: new_sa,
                source: ctx.flow.remote,
                expires_at,
                generation,
            },
        );
        if let Some(old) = old {
            self.unindex_registration(&ctx.impu, &old);
        }
        self.index_registration(&ctx.impu, ctx.flow.remote);
        self.subscribe_reg_event(&ctx.impu, now);
        self.set_timer(
            expires_at,
            TimerKind::Expiry {
                impu: ctx.impu.clone(),
                generation,
            },
        );
        self.stats.registrations += 1;
        self.event(CoreEvent::Registered {
            impu: ctx.impu,
            impi: ctx.impi,
            expires: granted,
            protected: new_sa.is_some(),
        });
    }

    /// Our client transaction `id` ended without a final response.
    pub(super) fn upstream_failed(&mut self, id: TxId, code: u16, why: Rejection, now: Instant) {
        if let Some(p) = self.forwarded.remove(&id) {
            self.drop_temporary(&p);
            self.reject(&p.ctx, code, why, now);
        }
    }
}

/// 16 bytes from 32 hex digits.
fn hex16(s: Option<&str>) -> Option<[u8; 16]> {
    let s = s?.trim();
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The expiry the registrar granted our Contact: its `expires` in the 200 OK's Contact
/// list (a registrar lists every binding of the AoR, RFC 3261 §10.3 step 8), else the
/// Expires header.
fn granted_expiry(req: &Message, resp: &Message) -> Option<u32> {
    let ours: Vec<String> = req
        .header_values("Contact")
        .filter_map(|v| match Contacts::parse(v) {
            Ok(Contacts::List(l)) => Some(l),
            _ => None,
        })
        .flatten()
        .map(|c| c.uri.to_string())
        .collect();
    for v in resp.header_values("Contact") {
        if let Ok(Contacts::List(l)) = Contacts::parse(v) {
            for c in l {
                if ours.contains(&c.uri.to_string()) {
                    if let Ok(Some(e)) = contact_expires(&c) {
                        return Some(e);
                    }
                }
            }
        }
    }
    resp.header("Expires")
        .and_then(|v| parse_delta_seconds(v).ok())
}

/// A header value as an RFC 3261 token when it is one, else a quoted string.
fn token_or_quoted(v: &str) -> String {
    let token = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c));
    if token {
        v.to_string()
    } else {
        format!("\"{v}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys() {
        assert_eq!(
            hex16(Some("000102030405060708090a0b0c0d0e0F")),
            Some([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
        );
        assert_eq!(hex16(Some("00")), None);
        assert_eq!(hex16(Some("zz0102030405060708090a0b0c0d0e0f")), None);
        assert_eq!(hex16(Some("é0102030405060708090a0b0c0d0e0f")), None);
        assert_eq!(hex16(None), None);
    }

    #[test]
    fn visited_network_id_quoting() {
        assert_eq!(token_or_quoted("ims.lab"), "ims.lab");
        assert_eq!(token_or_quoted("Lab network 1"), "\"Lab network 1\"");
    }
}
