//! The stateful-proxy pieces both CSCF roles share (RFC 3261 §16): loose routing on
//! receipt (§16.4), the copy a proxy forwards (§16.6), and the response context of a
//! forwarded request ([`Branches`]): forking to several targets, which responses go
//! upstream and when (§16.7), CANCEL of the other branches (§16.10) and Timer C (§16.8).
//!
//! Sans-IO like the transaction layer it sits on: [`Branches`] only decides; the core
//! that owns the [`crate::transaction::Transactions`] sends what it is told to, so the
//! same table serves the P-CSCF (one branch per request) and the S-CSCF (one branch per
//! registered contact of the callee).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::builder::cancel_for;
use crate::error::ParseError;
use crate::flow::{Flow, Protocol};
use crate::headers::NameAddr;
use crate::message::Message;
use crate::transaction::{Transactions, TxError, TxId};
use crate::uri::{parse_host_ip, Scheme, Uri};

/// Why a request cannot be forwarded, with the status to answer instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Max-Forwards reached zero (483, §16.3 step 3).
    #[error("Max-Forwards exhausted")]
    TooManyHops,
    /// A header forwarding needs (Via, Max-Forwards, Route) does not parse (400).
    #[error("cannot forward: {0}")]
    Malformed(#[from] ParseError),
}

impl ForwardError {
    /// The status code that answers the request instead.
    pub fn status(&self) -> u16 {
        match self {
            ForwardError::TooManyHops => 483,
            ForwardError::Malformed(_) => 400,
        }
    }
}

/// The copy of `req` a proxy forwards (§16.6 steps 1 and 3, §18.2.1): `received`/`rport`
/// stamped on the sender's Via, Max-Forwards decremented (70 added where there was none).
/// Our own Via and any Route or Record-Route edits are the caller's, who knows them.
pub fn forward_copy(req: &Message, from: SocketAddr) -> Result<Message, ForwardError> {
    let mut fwd = req.clone();
    fwd.stamp_received(from)?;
    match fwd.decrement_max_forwards()? {
        Some(_) => Ok(fwd),
        None => Err(ForwardError::TooManyHops),
    }
}

/// Removes the Route entries at the top of `msg` that name this proxy (§16.4, and the
/// double Record-Route of RFC 5658 §3.3: a proxy that faces two networks finds two of its
/// own entries in a row). Returns how many went. An entry that does not parse stops the
/// loop and is left for the next hop to judge.
pub fn pop_own_routes(msg: &mut Message, is_ours: impl Fn(&Uri) -> bool) -> usize {
    let mut popped = 0;
    loop {
        let Some(top) = msg.header_values("Route").next() else {
            break;
        };
        match NameAddr::parse(top) {
            Ok(na) if is_ours(&na.uri) => {
                msg.pop_header_value("Route");
                popped += 1;
            }
            _ => break,
        }
    }
    popped
}

/// The URI the request goes to next (§16.6 steps 6–7, §16.12): the first Route entry
/// when there is one (loose routing), else the Request-URI.
pub fn next_hop(msg: &Message) -> Result<Uri, ParseError> {
    match msg.header_values("Route").next() {
        Some(r) => Ok(NameAddr::parse(r)?.uri),
        None => msg.request_uri(),
    }
}

/// Where a SIP URI with an IP literal host points (RFC 3263 without DNS: a lab names its
/// nodes by address): the host and port (5060 when absent) and the transport its
/// `transport` parameter names (UDP when absent). `None` for a host name or a non-SIP URI.
pub fn uri_target(uri: &Uri) -> Option<(SocketAddr, Protocol)> {
    if uri.scheme != Scheme::Sip {
        return None;
    }
    let ip = parse_host_ip(&uri.host)?;
    let protocol = match uri.params.get("transport") {
        Some(t) if t.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
        _ => Protocol::Udp,
    };
    Some((SocketAddr::new(ip, uri.port.unwrap_or(5060)), protocol))
}

/// What goes upstream on the server transaction of a forwarded request.
#[derive(Debug)]
pub enum Upstream {
    /// This response (our Via already removed).
    Response(Message),
    /// A final the proxy builds itself from the request it received: every branch
    /// ended without a response worth passing on (timeouts, transport errors).
    Synthesize {
        /// Status code.
        code: u16,
        /// The request as received (a copy), to build the response from.
        request: Message,
    },
}

/// The decision for one input: what to send upstream, if anything, and which branches to
/// CANCEL now.
#[derive(Debug, Default)]
pub struct Decision {
    /// The server transaction and what it answers.
    pub upstream: Option<(TxId, Upstream)>,
    /// INVITE client transactions to cancel (with [`cancel_branch`]).
    pub cancel: Vec<TxId>,
}

#[derive(Debug)]
struct Branch {
    client: TxId,
    /// A provisional arrived: a CANCEL may go (§9.1).
    provisional: bool,
    /// A final arrived or the branch failed.
    done: bool,
    /// The client transaction ended (its table entry may go).
    terminated: bool,
    /// A CANCEL is owed as soon as a provisional arrives.
    cancel_owed: bool,
    cancelled: bool,
    /// Timer C deadline (INVITE only).
    timer_c: Option<Instant>,
}

#[derive(Debug)]
enum Best {
    Response(Message),
    Code(u16),
}

impl Best {
    fn code(&self) -> u16 {
        match self {
            Best::Response(m) => m.code().unwrap_or(500),
            Best::Code(c) => *c,
        }
    }
}

#[derive(Debug)]
struct Context {
    /// The request as received, for responses the proxy must make itself.
    request: Message,
    invite: bool,
    branches: Vec<Branch>,
    best: Option<Best>,
    /// A final response went upstream (a 2xx, or the best once all branches ended).
    final_sent: bool,
    /// A 2xx went upstream: only further 2xx follow it (§16.7 step 5).
    success_sent: bool,
    cancelled: bool,
}

impl Context {
    fn branch(&mut self, client: TxId) -> Option<&mut Branch> {
        self.branches.iter_mut().find(|b| b.client == client)
    }

    /// §16.7 step 6: a 6xx wins; else the lowest class; 503 is passed on as 500 (a
    /// proxy must not tell its client to stop using it for a downstream's overload).
    fn consider(&mut self, offered: Best) {
        let class = |c: u16| if c >= 600 { 0 } else { c / 100 };
        let better = match &self.best {
            None => true,
            Some(b) => class(offered.code()) < class(b.code()),
        };
        if better {
            self.best = Some(match offered {
                Best::Response(mut m) if m.code() == Some(503) => {
                    m.set_status(500, crate::builder::reason_phrase(500));
                    Best::Response(m)
                }
                Best::Code(503) => Best::Code(500),
                o => o,
            });
        }
    }

    fn all_done(&self) -> bool {
        self.branches.iter().all(|b| b.done)
    }

    /// Marks every pending INVITE branch for cancellation; returns those that may be
    /// cancelled now.
    fn cancel_pending(&mut self, except: Option<TxId>) -> Vec<TxId> {
        let mut now = Vec::new();
        if !self.invite {
            return now;
        }
        for b in &mut self.branches {
            if b.done || b.cancelled || Some(b.client) == except {
                continue;
            }
            if b.provisional {
                b.cancelled = true;
                now.push(b.client);
            } else {
                b.cancel_owed = true;
            }
        }
        now
    }
}

/// Timer C (§16.6 step 11): how long an INVITE branch may stay without a final response
/// after its last provisional; and how long a cancelled branch may then take to answer
/// its CANCEL before it counts as timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyTimers {
    /// Timer C; more than 3 minutes (§16.6 step 11).
    pub timer_c: Duration,
    /// After Timer C has cancelled a branch: the wait for its final response (64·T1).
    pub cancel_wait: Duration,
}

impl Default for ProxyTimers {
    fn default() -> Self {
        ProxyTimers {
            timer_c: Duration::from_secs(181),
            cancel_wait: Duration::from_secs(32),
        }
    }
}

/// What Timer C asks of the core.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TimerCDue {
    /// Branches to CANCEL now.
    pub cancel: Vec<TxId>,
    /// Branches that did not answer even their CANCEL: abandon their client transaction
    /// ([`Transactions::abandon`]) and report them with [`Branches::failed`] (408).
    pub give_up: Vec<TxId>,
}

/// The response contexts of forwarded requests (§16.7), keyed by server transaction,
/// each with its branches (client transactions). See the module docs.
#[derive(Debug, Default)]
pub struct Branches {
    timers: ProxyTimers,
    contexts: HashMap<TxId, Context>,
    by_client: HashMap<TxId, TxId>,
    deadlines: BTreeMap<(Instant, TxId), ()>,
}

impl Branches {
    /// An empty table.
    pub fn new(timers: ProxyTimers) -> Branches {
        Branches {
            timers,
            ..Branches::default()
        }
    }

    /// Forwarded requests with a context.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// True when no forwarded request is open.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// The server transaction a branch belongs to.
    pub fn server_of(&self, client: TxId) -> Option<TxId> {
        self.by_client.get(&client).copied()
    }

    /// True when `server` has a context (the request was forwarded).
    pub fn has(&self, server: TxId) -> bool {
        self.contexts.contains_key(&server)
    }

    /// Opens the response context of `server`, whose request as received is `request`
    /// (kept for the responses the proxy may have to make itself); branches follow with
    /// [`Branches::add`]. A context without branches is never closed: open it only when
    /// the first branch starts.
    pub fn open(&mut self, server: TxId, request: Message) {
        let invite = request.method() == Some(&crate::method::Method::Invite);
        self.contexts.entry(server).or_insert(Context {
            request,
            invite,
            branches: Vec::new(),
            best: None,
            final_sent: false,
            success_sent: false,
            cancelled: false,
        });
    }

    /// Removes the context of `server` if no branch was ever added (every attempt to
    /// start one failed); its request, to answer it.
    pub fn discard(&mut self, server: TxId) -> Option<Message> {
        if self.contexts.get(&server)?.branches.is_empty() {
            self.contexts.remove(&server).map(|c| c.request)
        } else {
            None
        }
    }

    /// Adds branch `client` (a client transaction just started) to the context of
    /// `server` ([`Branches::open`] first).
    pub fn add(&mut self, server: TxId, client: TxId, now: Instant) {
        let Some(ctx) = self.contexts.get_mut(&server) else {
            return;
        };
        let timer_c = ctx.invite.then(|| now + self.timers.timer_c);
        if let Some(at) = timer_c {
            self.deadlines.insert((at, client), ());
        }
        ctx.branches.push(Branch {
            client,
            provisional: false,
            done: false,
            terminated: false,
            cancel_owed: ctx.cancelled,
            cancelled: false,
            timer_c,
        });
        self.by_client.insert(client, server);
    }

    /// A response `client`'s transaction delivered (§16.7).
    pub fn response(&mut self, client: TxId, mut response: Message, now: Instant) -> Decision {
        let mut d = Decision::default();
        let Some(&server) = self.by_client.get(&client) else {
            return d;
        };
        let Some(code) = response.code() else {
            return d;
        };
        let timer_c = self.timers.timer_c;
        let Some(ctx) = self.contexts.get_mut(&server) else {
            return d;
        };
        // §16.7 step 3: our Via goes before anything is passed on.
        response.pop_header_value("Via");
        let invite = ctx.invite;
        let Some(b) = ctx.branch(client) else {
            return d;
        };
        if code < 200 {
            if !b.provisional {
                b.provisional = true;
                if b.cancel_owed && !b.cancelled {
                    b.cancelled = true;
                    d.cancel.push(client);
                }
            }
            // §16.7 step 2: Timer C restarts on every provisional.
            if let Some(old) = b.timer_c.take() {
                self.deadlines.remove(&(old, client));
                let at = now + timer_c;
                b.timer_c = Some(at);
                self.deadlines.insert((at, client), ());
            }
            // 100 is hop by hop (§16.7 step 5); others go up until a final has.
            if code > 100 && !ctx.final_sent {
                d.upstream = Some((server, Upstream::Response(response)));
            }
            return d;
        }
        let first_final = !b.done;
        b.done = true;
        if let Some(at) = b.timer_c.take() {
            self.deadlines.remove(&(at, client));
        }
        if code < 300 {
            // Every 2xx goes up, even after another (§16.7 step 5, RFC 6026 §8.4); the
            // other branches of an INVITE are no longer wanted (§16.7 step 10).
            ctx.final_sent = true;
            ctx.success_sent = true;
            if invite && first_final {
                d.cancel = ctx.cancel_pending(Some(client));
            }
            d.upstream = Some((server, Upstream::Response(response)));
            return d;
        }
        if !first_final {
            return d;
        }
        if code >= 600 && invite {
            d.cancel = ctx.cancel_pending(Some(client));
        }
        ctx.consider(Best::Response(response));
        self.settle(server, &mut d);
        d
    }

    /// Branch `client` ended without a final response: its transaction timed out (408)
    /// or could not be sent (503), §16.7 step 6 / §16.9.
    pub fn failed(&mut self, client: TxId, code: u16) -> Decision {
        let mut d = Decision::default();
        let Some(&server) = self.by_client.get(&client) else {
            return d;
        };
        let Some(ctx) = self.contexts.get_mut(&server) else {
            return d;
        };
        let Some(b) = ctx.branch(client) else {
            return d;
        };
        if !b.done {
            b.done = true;
            if let Some(at) = b.timer_c.take() {
                self.deadlines.remove(&(at, client));
            }
            ctx.consider(Best::Code(code));
            self.settle(server, &mut d);
        }
        d
    }

    /// A CANCEL for the INVITE of `server` arrived (§16.10): the branches to CANCEL now
    /// (the others get theirs when their first provisional arrives). Their 487s make the
    /// final response upstream.
    pub fn cancel(&mut self, server: TxId) -> Vec<TxId> {
        match self.contexts.get_mut(&server) {
            Some(ctx) if !ctx.final_sent => {
                ctx.cancelled = true;
                ctx.cancel_pending(None)
            }
            _ => Vec::new(),
        }
    }

    /// The client transaction of `client` ended; the context goes with its last branch.
    pub fn terminated(&mut self, client: TxId) {
        let Some(server) = self.by_client.remove(&client) else {
            return;
        };
        let Some(ctx) = self.contexts.get_mut(&server) else {
            return;
        };
        if let Some(b) = ctx.branch(client) {
            b.terminated = true;
            b.done = true;
            if let Some(at) = b.timer_c.take() {
                self.deadlines.remove(&(at, client));
            }
        }
        if ctx.branches.iter().all(|b| b.terminated) {
            self.contexts.remove(&server);
        }
    }

    /// When [`Branches::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(t, _)| *t)
    }

    /// Fires Timer C of every branch due at `now` (§16.8).
    pub fn handle_timeout(&mut self, now: Instant) -> TimerCDue {
        let mut due = TimerCDue::default();
        while let Some((&(at, client), _)) = self.deadlines.iter().next() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, client));
            let Some(server) = self.by_client.get(&client).copied() else {
                continue;
            };
            let wait = self.timers.cancel_wait;
            let Some(b) = self
                .contexts
                .get_mut(&server)
                .and_then(|c| c.branch(client))
            else {
                continue;
            };
            if b.timer_c != Some(at) || b.done {
                continue;
            }
            if b.cancelled || !b.provisional {
                // Cancelled long ago and still silent, or never a provisional (its own
                // Timer B should have ended it): give up on it.
                b.timer_c = None;
                due.give_up.push(client);
            } else {
                b.cancelled = true;
                let next = now + wait;
                b.timer_c = Some(next);
                self.deadlines.insert((next, client), ());
                due.cancel.push(client);
            }
        }
        due
    }

    fn settle(&mut self, server: TxId, d: &mut Decision) {
        let Some(ctx) = self.contexts.get_mut(&server) else {
            return;
        };
        if ctx.final_sent || !ctx.all_done() {
            return;
        }
        ctx.final_sent = true;
        d.upstream = ctx.best.take().map(|b| {
            let up = match b {
                Best::Response(m) => Upstream::Response(m),
                Best::Code(code) => Upstream::Synthesize {
                    code,
                    request: ctx.request.clone(),
                },
            };
            (server, up)
        });
    }
}

/// Sends a CANCEL for the INVITE of client transaction `client` on that transaction's
/// flow (§9.1: same branch, Request-URI, Call-ID, From, To, CSeq number and Route). Its
/// own client transaction's answer (200 or 481) concerns nobody: the core ignores
/// responses of transactions it does not know.
pub fn cancel_branch(
    txs: &mut Transactions,
    client: TxId,
    now: Instant,
) -> Result<Option<TxId>, TxError> {
    let Some(flow) = txs.flow(client) else {
        return Ok(None);
    };
    let Some(invite) = txs.client_request(client) else {
        return Ok(None);
    };
    let cancel = cancel_for(invite)?;
    txs.send_request(cancel, flow, now).map(Some)
}

/// Carries out `d` on `txs`: the response upstream (a synthesized one built with `ids`)
/// and the CANCELs. A response that cannot be sent or built is returned for the core to
/// log; a CANCEL that cannot start is skipped (its branch ends by its own timers).
pub fn carry_out(
    txs: &mut Transactions,
    d: Decision,
    ids: &mut crate::builder::Ids,
    now: Instant,
) -> Result<(), crate::uas::Unanswerable> {
    for c in d.cancel {
        let _ = cancel_branch(txs, c, now);
    }
    match d.upstream {
        Some((server, Upstream::Response(r))) => crate::uas::respond(txs, server, Ok(r), now),
        Some((server, Upstream::Synthesize { code, request })) => {
            let r = crate::uas::simple(&request, code, ids);
            crate::uas::respond(txs, server, r, now)
        }
        None => Ok(()),
    }
}

/// A CANCEL arrived on server transaction `cancel_tx` (§16.10, §9.2): answered 200 when
/// it matches an INVITE server transaction of `txs` (481 otherwise), and the branches of
/// that INVITE are cancelled. Returns the INVITE's server transaction.
pub fn on_cancel(
    txs: &mut Transactions,
    branches: &mut Branches,
    cancel_tx: TxId,
    cancel: &Message,
    ids: &mut crate::builder::Ids,
    now: Instant,
) -> Result<Option<TxId>, crate::uas::Unanswerable> {
    let invite = txs.invite_for_cancel(cancel);
    let code = if invite.is_some() { 200 } else { 481 };
    let r = crate::uas::simple(cancel, code, ids);
    crate::uas::respond(txs, cancel_tx, r, now)?;
    if let Some(server) = invite {
        for c in branches.cancel(server) {
            let _ = cancel_branch(txs, c, now);
        }
    }
    Ok(invite)
}

/// Fires Timer C of `branches` (§16.8): CANCELs the branches it says to, abandons the
/// client transactions of those that did not even answer their CANCEL, and returns their
/// decisions (a 408 upstream once every branch has ended) for the core to carry out.
pub fn timer_c(txs: &mut Transactions, branches: &mut Branches, now: Instant) -> Vec<Decision> {
    let due = branches.handle_timeout(now);
    for c in due.cancel {
        let _ = cancel_branch(txs, c, now);
    }
    due.give_up
        .into_iter()
        .map(|c| {
            txs.abandon(c);
            branches.failed(c, 408)
        })
        .collect()
}

/// A flow toward `to` for forwarding: from `local` when the core must choose its socket
/// (a protected port), else from whatever the shell picks.
pub fn flow_to(local: Option<SocketAddr>, to: SocketAddr, protocol: Protocol) -> Flow {
    match local {
        Some(l) => Flow::new(l, to, protocol),
        None => Flow::to(to, protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{RequestBuilder, ResponseBuilder};
    use crate::method::Method;

    fn invite() -> Message {
        RequestBuilder::new(Method::Invite, "sip:b@example.net")
            .header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-up")
            .header("Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-ue")
            .header("From", "<sip:a@example.net>;tag=a")
            .header("To", "<sip:b@example.net>")
            .header("Call-ID", "c1")
            .header("CSeq", "1 INVITE")
            .header("Max-Forwards", "70")
            .build()
    }

    fn resp(code: u16) -> Message {
        ResponseBuilder::new(&invite(), code)
            .to_tag("t")
            .build()
            .unwrap()
    }

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn loose_routing_pops_our_entries_only() {
        let mut m = invite();
        m.append_header("Route", "<sip:10.0.0.1:5060;lr>, <sip:10.0.0.1:40000;lr>");
        m.append_header("Route", "<sip:orig@10.0.0.2:6060;lr>");
        let ours = |u: &Uri| u.host == "10.0.0.1";
        assert_eq!(pop_own_routes(&mut m, ours), 2);
        assert_eq!(
            next_hop(&m).unwrap().to_string(),
            "sip:orig@10.0.0.2:6060;lr"
        );
        assert_eq!(pop_own_routes(&mut m, ours), 0);
        m.remove_header("Route");
        assert_eq!(next_hop(&m).unwrap().to_string(), "sip:b@example.net");
    }

    #[test]
    fn targets_need_an_address() {
        let t = |s: &str| uri_target(&Uri::parse(s).unwrap());
        assert_eq!(
            t("sip:a@127.0.0.1:5070;transport=TCP"),
            Some(("127.0.0.1:5070".parse().unwrap(), Protocol::Tcp))
        );
        assert_eq!(
            t("sip:[::1]"),
            Some(("[::1]:5060".parse().unwrap(), Protocol::Udp))
        );
        assert_eq!(t("sip:a@example.net"), None);
        assert_eq!(t("tel:+4930123"), None);
    }

    #[test]
    fn forward_copy_counts_hops() {
        let src = "10.0.0.9:5060".parse().unwrap();
        let f = forward_copy(&invite(), src).unwrap();
        assert_eq!(f.max_forwards().unwrap(), Some(69));
        let mut last = invite();
        last.set_header("Max-Forwards", "0");
        assert_eq!(
            forward_copy(&last, src).err(),
            Some(ForwardError::TooManyHops)
        );
        assert_eq!(ForwardError::TooManyHops.status(), 483);
    }

    #[test]
    fn provisionals_then_the_2xx_go_up_and_other_branches_are_cancelled() {
        let mut t = Branches::new(ProxyTimers::default());
        let (s, a, b) = (TxId(1), TxId(2), TxId(3));
        let n = now();
        t.open(s, invite());
        t.add(s, a, n);
        t.add(s, b, n);
        let d = t.response(a, resp(100), n);
        assert!(d.upstream.is_none(), "100 is hop by hop");
        let d = t.response(a, resp(180), n);
        assert!(
            matches!(d.upstream, Some((x, Upstream::Response(ref m))) if x == s && m.code() == Some(180))
        );
        let d = t.response(b, resp(180), n);
        assert!(d.upstream.is_some());
        let d = t.response(a, resp(200), n);
        let Some((_, Upstream::Response(m))) = d.upstream else {
            panic!("2xx not forwarded")
        };
        assert_eq!(m.vias().unwrap().len(), 1, "our Via removed");
        assert_eq!(d.cancel, vec![b]);
        // b's 487 after the CANCEL stays here.
        assert!(t.response(b, resp(487), n).upstream.is_none());
        t.terminated(a);
        assert_eq!(t.len(), 1);
        t.terminated(b);
        assert!(t.is_empty());
    }

    #[test]
    fn best_final_waits_for_every_branch() {
        let mut t = Branches::new(ProxyTimers::default());
        let (s, a, b) = (TxId(1), TxId(2), TxId(3));
        let n = now();
        t.open(s, invite());
        t.add(s, a, n);
        t.add(s, b, n);
        assert!(t.response(a, resp(486), n).upstream.is_none());
        let d = t.failed(b, 408);
        let Some((_, Upstream::Response(m))) = d.upstream else {
            panic!("no final")
        };
        assert_eq!(m.code(), Some(486), "same class: the first final stays");
        // Only timeouts: the proxy makes the answer.
        let mut t = Branches::new(ProxyTimers::default());
        let mut msg = invite();
        msg.set_uri("sip:b@example.net");
        t.open(s, msg);
        t.add(s, a, n);
        assert!(matches!(
            t.failed(a, 503).upstream,
            Some((_, Upstream::Synthesize { code: 500, .. }))
        ));
    }

    #[test]
    fn a_6xx_ends_the_search() {
        let mut t = Branches::new(ProxyTimers::default());
        let (s, a, b) = (TxId(1), TxId(2), TxId(3));
        let n = now();
        t.open(s, invite());
        t.add(s, a, n);
        t.add(s, b, n);
        t.response(b, resp(180), n);
        let d = t.response(a, resp(603), n);
        assert_eq!(d.cancel, vec![b]);
        assert!(d.upstream.is_none(), "b still has to answer its CANCEL");
        let d = t.response(b, resp(487), n);
        assert!(
            matches!(d.upstream, Some((_, Upstream::Response(ref m))) if m.code() == Some(603))
        );
    }

    #[test]
    fn cancel_waits_for_a_provisional() {
        let mut t = Branches::new(ProxyTimers::default());
        let (s, a) = (TxId(1), TxId(2));
        let n = now();
        t.open(s, invite());
        t.add(s, a, n);
        assert!(
            t.cancel(s).is_empty(),
            "no CANCEL before a provisional (§9.1)"
        );
        let d = t.response(a, resp(180), n);
        assert_eq!(d.cancel, vec![a]);
        let d = t.response(a, resp(487), n);
        assert!(
            matches!(d.upstream, Some((_, Upstream::Response(ref m))) if m.code() == Some(487))
        );
    }

    #[test]
    fn timer_c_cancels_then_gives_up() {
        let timers = ProxyTimers {
            timer_c: Duration::from_secs(10),
            cancel_wait: Duration::from_secs(5),
        };
        let mut t = Branches::new(timers);
        let (s, a) = (TxId(1), TxId(2));
        let n = now();
        t.open(s, invite());
        t.add(s, a, n);
        t.response(a, resp(180), n + Duration::from_secs(5));
        assert_eq!(
            t.handle_timeout(n + Duration::from_secs(11)),
            TimerCDue::default()
        );
        let due = t.handle_timeout(n + Duration::from_secs(15));
        assert_eq!(due.cancel, vec![a]);
        let due = t.handle_timeout(n + Duration::from_secs(20));
        assert_eq!(due.give_up, vec![a]);
        let d = t.failed(a, 408);
        assert!(matches!(
            d.upstream,
            Some((_, Upstream::Synthesize { code: 408, .. }))
        ));
        t.terminated(a);
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn cancel_branch_reuses_the_branch() {
        let mut txs = Transactions::new(crate::transaction::Config::default());
        let mut inv = invite();
        inv.pop_header_value("Via");
        let flow = Flow::to("10.0.0.5:5060".parse().unwrap(), Protocol::Udp);
        let n = now();
        let id = txs.send_request(inv, flow, n).unwrap();
        while txs.poll_transmit().is_some() {}
        let c = cancel_branch(&mut txs, id, n).unwrap().unwrap();
        let sent = txs.poll_transmit().unwrap();
        let m = Message::parse(&sent.payload).unwrap();
        assert_eq!(m.method(), Some(&Method::Cancel));
        assert_eq!(m.branch().unwrap(), "z9hG4bK-ue");
        assert_ne!(c, id);
    }
}
