//! Service routing over ISC (TS 24.229 §5.4.3.2/§5.4.3.3, TS 23.218 §6, TS 29.228 Annex B):
//! the served user's initial filter criteria decide which application servers see an
//! initial request, one after the other in ascending priority.
//!
//! ```text
//!  S-CSCF ── INVITE, Route: <AS;lr>, <sip:S;lr;isc=TOKEN> ──▶ AS
//!  S-CSCF ◀── INVITE, Route: <sip:S;lr;isc=TOKEN> ─────────── AS (proxy or B2BUA)
//!         └─ TOKEN → (session case, served user, next iFC index): evaluation goes on there
//! ```
//!
//! - The marker is a random 128-bit token keyed into a table of ours (not the iFC index in
//!   clear): an AS, or anybody who saw one request, cannot make up a marker that skips
//!   services of another session. A token is used once and forgotten after
//!   [`MARK_LIFETIME`].
//! - DefaultHandling (TS 29.228 Annex B.2.8, TS 24.229 §5.4.3.2 step 4 / §5.4.3.3): the AS is
//!   "not reachable" when it answers 408 or 5xx before any provisional other than 100, when
//!   its transaction fails, or when it stays silent for [`Isc::as_timeout`] (a 100 does not
//!   count: a stateful AS's SIP stack sends it before the service logic runs).
//!   SESSION_CONTINUED goes on with the next iFC as if the AS had passed the request back;
//!   SESSION_TERMINATED answers the caller (408 when the AS was silent, else the AS's final,
//!   503 turned into 500 as a proxy must).
//! - Each request to an AS carries `P-Served-User: <served identity>;sescase=orig|term;
//!   regstate=reg|unreg` (RFC 5502, TS 24.229 §5.4.3.2/§5.4.3.3): a proxy AS tells the
//!   terminating leg from the originating one by it. It is removed before the request
//!   leaves for the callee's contacts (RFC 5502 §4: the trust domain's edge).
//! - A request that brings a live marker back from the AS it was given to needs no other
//!   trust (an AS that only proxies needs no configuration). Requests from configured AS
//!   addresses are trusted like the P-CSCFs: an AS acting as a B2BUA may
//!   originate on behalf of a user (originating, or originating-unregistered when the user
//!   is not registered here: the profile then comes from Cx SAR UNREGISTERED_USER).

use crate::core::{Pending, Scscf, Timer};
use crate::session::Refusal;
use ifc::{
    DefaultHandling, EvalContext, IfcMatcher, InitialFilterCriteria, RequestView, SessionCase,
};
use sip::transaction::TxId;
use sip::{Message, NameAddr};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a marker waits for its request to come back from the AS: long enough for a
/// B2BUA that plays an announcement first, bounded like Timer C (RFC 3261 §16.6 step 11).
pub const MARK_LIFETIME: Duration = Duration::from_secs(181);

/// The Route parameter that carries our marker.
pub const MARK_PARAM: &str = "isc";

/// ISC settings of the core ([`Scscf::with_isc`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isc {
    /// Silence of an AS (no response but 100) after which DefaultHandling applies.
    /// Default 4 s.
    pub as_timeout: Duration,
    /// Addresses of application servers: trusted like the P-CSCFs, and allowed to
    /// originate on behalf of users who are not registered (TS 24.229 §5.4.3.2).
    pub application_servers: Vec<IpAddr>,
    /// Shared iFC sets (TS 29.228 §6.6.3) a profile may reference by number.
    pub shared_ifc_sets: ifc::SharedIfcSets,
}

impl Default for Isc {
    fn default() -> Self {
        Isc {
            as_timeout: Duration::from_secs(4),
            application_servers: Vec::new(),
            shared_ifc_sets: ifc::SharedIfcSets::new(),
        }
    }
}

/// A [`sip::Message`] as the iFC evaluator sees it.
pub struct View<'a>(pub &'a Message);

impl RequestView for View<'_> {
    fn method(&self) -> &str {
        self.0.method().map(sip::Method::as_str).unwrap_or_default()
    }
    fn request_uri(&self) -> &str {
        self.0.uri_str().unwrap_or_default()
    }
    fn headers(&self) -> Vec<(&str, &str)> {
        self.0.headers().map(|h| (h.full_name(), h.value)).collect()
    }
    fn sdp(&self) -> Option<&str> {
        let ct = self.0.header("Content-Type")?;
        let media = ct.split(';').next().unwrap_or_default().trim();
        if !media.eq_ignore_ascii_case("application/sdp") {
            return None;
        }
        std::str::from_utf8(self.0.body()).ok()
    }
}

/// The user a request is served for, and the iFCs of that user's service profile.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub case: SessionCase,
    /// The served identity (asserted caller, or the callee's Request-URI).
    pub identity: String,
    pub registered: bool,
    pub ifcs: Vec<InitialFilterCriteria>,
}

impl Served {
    /// The `P-Served-User` value for the AS (RFC 5502 §6: `sescase`, `regstate`).
    pub(crate) fn p_served_user(&self) -> String {
        let sescase = if self.originating() { "orig" } else { "term" };
        let regstate = if self.registered { "reg" } else { "unreg" };
        format!("<{}>;sescase={sescase};regstate={regstate}", self.identity)
    }

    fn matcher(&self) -> IfcMatcher {
        IfcMatcher::new(&self.ifcs)
    }
    fn originating(&self) -> bool {
        matches!(
            self.case,
            SessionCase::Originating
                | SessionCase::OriginatingUnregistered
                | SessionCase::OriginatingCdiv
        )
    }
}

/// Where evaluation resumes when the request comes back with our marker.
pub(crate) struct Mark {
    pub served: Served,
    pub next: usize,
    /// The AS the request went to: only it may bring the marker back.
    pub from: IpAddr,
}

/// A request forwarded to an AS that has not yet shown it is alive.
pub(crate) struct AsHop {
    pub server: TxId,
    /// The request as received (for the response context).
    pub req: Message,
    /// The forwarded copy before the AS's Route and our Record-Route went on.
    pub fwd: Message,
    pub served: Served,
    pub next: usize,
    pub token: String,
    pub handling: DefaultHandling,
    /// The caller CANCELled: whatever the DefaultHandling, the request goes no further.
    pub cancelled: bool,
}

/// Why an AS hop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AsFailure {
    /// Silent for [`Isc::as_timeout`].
    Silent,
    /// A final 408/5xx before any provisional, or a failed transaction.
    Failed,
}

impl Scscf {
    /// Sets the ISC behaviour (application servers, AS timeout, shared iFC sets).
    pub fn with_isc(mut self, isc: Isc) -> Scscf {
        self.isc = isc;
        self
    }

    /// The ISC settings.
    pub fn isc(&self) -> &Isc {
        &self.isc
    }

    /// Markers waiting for their request to come back from an AS.
    pub fn isc_pending(&self) -> usize {
        self.isc_marks.len()
    }

    pub(crate) fn is_application_server(&self, ip: IpAddr) -> bool {
        self.isc.application_servers.contains(&ip)
    }

    /// The iFCs that apply to `identity` in the subscription `sub`.
    pub(crate) fn ifcs_of(
        &self,
        identity: &str,
        sub: Option<&ifc::ImsSubscription>,
    ) -> Vec<InitialFilterCriteria> {
        sub.and_then(|s| s.profile_of(identity))
            .map(|sp| sp.effective_ifcs(&self.isc.shared_ifc_sets))
            .unwrap_or_default()
    }

    /// Our marker token in the top Route of `msg`, if the top Route is ours and has one.
    pub(crate) fn isc_marker(&self, msg: &Message) -> Option<String> {
        let top = msg.header_values("Route").next()?;
        let na = NameAddr::parse(top).ok()?;
        if !self.is_ours(&na.uri) {
            return None;
        }
        na.uri.params.get(MARK_PARAM).map(str::to_string)
    }

    /// True when `token` is a live marker handed to the AS at `ip`.
    pub(crate) fn marker_from(&self, token: &str, ip: IpAddr) -> bool {
        self.isc_marks.get(token).is_some_and(|m| m.from == ip)
    }

    /// The request came back from an AS with marker `token`: pick up where it left.
    pub(crate) fn resume(
        &mut self,
        id: TxId,
        req: Message,
        fwd: Message,
        token: &str,
        now: Instant,
    ) {
        let Some(mark) = self.isc_marks.remove(token) else {
            return self.refuse(id, &req, Refusal::StaleMarker, now);
        };
        // The AS answered by sending the request on: it is alive, whatever it says later.
        self.as_hops.retain(|_, h| h.token != token);
        self.serve(id, req, fwd, mark.served, mark.next, now);
    }

    /// Evaluates the served user's iFCs from index `start` on: the first that matches
    /// sends the request to its AS; when none does, the request goes on (originating:
    /// to the terminating half; terminating: to the callee's contacts).
    pub(crate) fn serve(
        &mut self,
        id: TxId,
        req: Message,
        fwd: Message,
        served: Served,
        start: usize,
        now: Instant,
    ) {
        let ctx = EvalContext {
            session_case: served.case,
            registered: served.registered,
            registration_type: None,
        };
        let matcher = served.matcher();
        let hit = matcher
            .next_match(&View(&fwd), &ctx, start)
            .map(|(i, f)| (i, f.application_server.clone()));
        let Some((index, server)) = hit else {
            return if served.originating() {
                self.terminating(id, req, fwd, now)
            } else {
                self.deliver(id, req, fwd, &served, now)
            };
        };
        let next = index + 1;
        let target = sip::Uri::parse(server.server_name.trim())
            .ok()
            .and_then(|u| self.flow_to(&u).map(|f| (u, f)));
        let Some((as_uri, flow)) = target else {
            tracing::warn!(r#as = %server.server_name, "application server has no SIP address");
            return self.as_unreachable(
                id,
                req,
                fwd,
                served,
                next,
                server.default_handling,
                AsFailure::Failed,
                now,
            );
        };
        let token = self.ids.tag() + &self.ids.tag();
        let mut m = fwd.clone();
        // Who the AS serves and in which case (RFC 5502, TS 24.229 §5.4.3.2/§5.4.3.3): a
        // proxy AS tells a terminating INVITE from an originating one by it. One value:
        // an earlier AS's (or anybody's) goes, it named an earlier hop's case.
        m.remove_header("P-Served-User");
        m.append_header("P-Served-User", &served.p_served_user());
        if req.method().is_some_and(crate::session::creates_dialog) {
            m.prepend_header("Record-Route", &self.record_route());
        }
        let a = self.cfg.address;
        m.prepend_header(
            "Route",
            &format!(
                "<sip:{}:{};lr;{MARK_PARAM}={token}>",
                sip::uri::ip_host(a.ip()),
                a.port()
            ),
        );
        m.prepend_header("Route", &format!("<{}>", with_lr(&as_uri)));
        let via = self.our_via(flow.protocol);
        m.prepend_header("Via", &via);
        let client = match self.tx.send_request(m, flow, now) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot send to the application server: {e}");
                return self.as_unreachable(
                    id,
                    req,
                    fwd,
                    served,
                    next,
                    server.default_handling,
                    AsFailure::Failed,
                    now,
                );
            }
        };
        tracing::debug!(r#as = %as_uri, case = ?served.case, index, "iFC matched");
        self.branches.open(id, req.clone());
        self.branches.add(id, client, now);
        self.isc_marks.insert(
            token.clone(),
            Mark {
                served: served.clone(),
                next,
                from: flow.remote.ip(),
            },
        );
        self.set_timer(
            now + MARK_LIFETIME,
            Timer::IscMark {
                token: token.clone(),
            },
        );
        self.set_timer(now + self.isc.as_timeout, Timer::AsHop { client });
        self.as_hops.insert(
            client,
            AsHop {
                server: id,
                req,
                fwd,
                served,
                next,
                token,
                handling: server.default_handling,
                cancelled: false,
            },
        );
        self.stats.as_forwards += 1;
    }

    /// DefaultHandling for an AS that could not be used (TS 29.228 Annex B.2.8).
    #[allow(clippy::too_many_arguments)]
    fn as_unreachable(
        &mut self,
        id: TxId,
        req: Message,
        fwd: Message,
        served: Served,
        next: usize,
        handling: DefaultHandling,
        why: AsFailure,
        now: Instant,
    ) {
        self.stats.as_failures += 1;
        match handling {
            DefaultHandling::SessionContinued => self.serve(id, req, fwd, served, next, now),
            DefaultHandling::SessionTerminated => {
                let code = match why {
                    AsFailure::Silent => 408,
                    AsFailure::Failed => 500,
                };
                self.stats.refused += 1;
                self.simple(id, &req, code, now);
            }
        }
    }

    /// A response on a client transaction: true when it was an AS hop's failure that
    /// DefaultHandling took over (the caller must not pass it on).
    pub(crate) fn as_hop_response(&mut self, client: TxId, code: u16, now: Instant) -> bool {
        if !self.as_hops.contains_key(&client) {
            return false;
        }
        if code == 100 {
            return false;
        }
        let failed = code == 408 || (500..600).contains(&code);
        if !failed {
            // A provisional or a final that is the service's answer: the AS works.
            self.as_hops.remove(&client);
            return false;
        }
        self.as_hop_failed(client, AsFailure::Failed, now)
    }

    /// An AS hop failed (its transaction ended without a final, or it answered 408/5xx
    /// first, or it stayed silent). True when DefaultHandling took the request over.
    pub(crate) fn as_hop_failed(&mut self, client: TxId, why: AsFailure, now: Instant) -> bool {
        let Some(hop) = self.as_hops.remove(&client) else {
            return false;
        };
        self.isc_marks.remove(&hop.token);
        if hop.cancelled {
            // The caller gave up while the AS was silent or failing: no next iFC. A
            // silent AS never got the CANCEL (nothing to cancel before a provisional),
            // so the caller's INVITE is answered 487 here (RFC 3261 §16.10).
            if why == AsFailure::Silent {
                self.tx.abandon(client);
                let d = self.branches.failed(client, 487);
                self.carry_out(d, now);
                return true;
            }
            return false;
        }
        tracing::info!(case = ?hop.served.case, ?why, handling = ?hop.handling, "application server not reachable");
        match (hop.handling, why) {
            (DefaultHandling::SessionContinued, _) => {
                self.stats.as_failures += 1;
                // The AS's branch leaves the response context (with it, the context: it
                // was the only branch); evaluation opens a new one.
                self.branches.terminated(client);
                if why == AsFailure::Silent {
                    self.tx.abandon(client);
                }
                self.serve(hop.server, hop.req, hop.fwd, hop.served, hop.next, now);
                true
            }
            (DefaultHandling::SessionTerminated, AsFailure::Silent) => {
                self.stats.as_failures += 1;
                self.tx.abandon(client);
                let d = self.branches.failed(client, 408);
                self.carry_out(d, now);
                true
            }
            // The AS's own final (or the transaction's failure) answers the caller.
            (DefaultHandling::SessionTerminated, AsFailure::Failed) => {
                self.stats.as_failures += 1;
                false
            }
        }
    }

    /// The caller CANCELled the INVITE of server transaction `server`.
    pub(crate) fn as_hop_cancelled(&mut self, server: TxId) {
        for h in self.as_hops.values_mut().filter(|h| h.server == server) {
            h.cancelled = true;
        }
    }

    /// The AS timer of `client` fired.
    pub(crate) fn as_hop_timer(&mut self, client: TxId, now: Instant) {
        self.as_hop_failed(client, AsFailure::Silent, now);
    }

    /// The marker `token` was never used.
    pub(crate) fn isc_mark_timer(&mut self, token: &str) {
        self.isc_marks.remove(token);
    }

    /// A callee that is known to the HSS but not registered: its profile for the
    /// terminating-unregistered case (Cx SAR UNREGISTERED_USER, TS 29.229 §6.1.2).
    pub(crate) fn fetch_unregistered(
        &mut self,
        id: TxId,
        req: Message,
        fwd: Message,
        case: SessionCase,
        identity: String,
    ) {
        let session = self.session_id();
        let request = crate::cx::sar_unregistered(&self.cfg.cx, &session, &identity);
        let token = self.token();
        self.out
            .push_back(crate::core::Output::Cx { token, request });
        self.pending.insert(
            token,
            Pending::SarUnregistered {
                tx: id,
                req,
                fwd,
                case,
                identity,
            },
        );
    }

    /// The SAA for an unregistered user: serve with its profile, or refuse.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_saa_unregistered(
        &mut self,
        id: TxId,
        req: Message,
        fwd: Message,
        case: SessionCase,
        identity: String,
        answer: Result<diameter::Message, diameter::RequestError>,
        now: Instant,
    ) {
        let user_data = match answer.map(|a| crate::cx::parse_saa(&a)) {
            Ok(Ok(u)) => u,
            Ok(Err(e)) if e.is_unknown_user() => {
                return self.refuse(id, &req, Refusal::Unknown, now)
            }
            Ok(Err(e)) => {
                tracing::warn!(%identity, "SAR UNREGISTERED_USER refused: {e}");
                return self.refuse(id, &req, self.unreachable_refusal(case), now);
            }
            Err(e) => {
                tracing::warn!(%identity, "SAR UNREGISTERED_USER failed: {e}");
                return self.refuse(id, &req, self.unreachable_refusal(case), now);
            }
        };
        let sub = user_data.and_then(|x| ifc::ImsSubscription::from_xml(&x).ok());
        let barred = sub.as_ref().is_some_and(|s| {
            s.service_profiles
                .iter()
                .flat_map(|sp| &sp.public_identities)
                .any(|p| {
                    p.barring_indication
                        && ifc::identity_key(&p.identity) == ifc::identity_key(&identity)
                })
        });
        if barred {
            return self.refuse(id, &req, self.unreachable_refusal(case), now);
        }
        let ifcs = self.ifcs_of(&identity, sub.as_ref());
        let served = Served {
            case,
            identity,
            registered: false,
            ifcs,
        };
        self.serve(id, req, fwd, served, 0, now);
    }

    fn unreachable_refusal(&self, case: SessionCase) -> Refusal {
        if case == SessionCase::OriginatingUnregistered {
            Refusal::NotRegistered
        } else {
            Refusal::Unavailable
        }
    }
}

/// `uri` with the `lr` parameter (RFC 3261 §16.12: the AS is a loose router).
fn with_lr(uri: &sip::Uri) -> sip::Uri {
    let mut u = uri.clone();
    if !u.params.has("lr") {
        u.params.set("lr", None);
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_exposes_full_header_names_and_sdp_only_for_sdp() {
        let m = Message::parse(
            b"INVITE sip:bob@ims.test SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
              f: <sip:alice@ims.test>;tag=1\r\nTo: <sip:bob@ims.test>\r\nCall-ID: c\r\n\
              CSeq: 1 INVITE\r\nc: application/sdp\r\nContent-Length: 6\r\n\r\nm=audi",
        )
        .unwrap();
        let v = View(&m);
        assert_eq!(v.method(), "INVITE");
        assert_eq!(v.request_uri(), "sip:bob@ims.test");
        assert!(v
            .headers()
            .contains(&("From", "<sip:alice@ims.test>;tag=1")));
        assert_eq!(v.sdp(), Some("m=audi"));
        let plain = Message::parse(
            b"MESSAGE sip:bob@ims.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
              From: <sip:a@ims.test>;tag=1\r\nTo: <sip:bob@ims.test>\r\nCall-ID: c\r\n\
              CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        )
        .unwrap();
        assert_eq!(View(&plain).sdp(), None);
    }

    #[test]
    fn lr_is_added_once() {
        let u = sip::Uri::parse("sip:as@127.0.0.1:5070").unwrap();
        assert_eq!(with_lr(&u).to_string(), "sip:as@127.0.0.1:5070;lr");
        let u = sip::Uri::parse("sip:127.0.0.1:5070;lr").unwrap();
        assert_eq!(with_lr(&u).to_string(), "sip:127.0.0.1:5070;lr");
    }
}
