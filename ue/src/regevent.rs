//! The UE's subscription to its own registration state (TS 24.229 §5.1.1.3, RFC 3680,
//! RFC 6665), sans-IO like the rest of the core.
//!
//! After the initial registration the UE sends `SUBSCRIBE sip:IMPU` with `Event: reg` over
//! its SA, routed like any originating request (P-CSCF, then the Service-Route). The
//! S-CSCF answers 200 and sends NOTIFYs with the reginfo document ([`crate::reginfo`]) to
//! the UE's protected server port. The subscription is refreshed by the same rule as the
//! registration ([`crate::refresh_after`], TS 24.229 §5.1.1.3: 600 s before expiry when
//! granted more than 1200 s, else at half) and ended with `Expires: 0` before the UE
//! deregisters. A NOTIFY saying that the UE's own contact is `terminated` with event
//! `deactivated` or `rejected` is the network deregistering it (TS 24.229 §5.1.1.7): the
//! core then drops the registration and its SAs without a de-REGISTER.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sip::dialog::Dialog;
use sip::ims::hdr;
use sip::transaction::TxId;
use sip::{Flow, Message, Method, NameAddr, Params, RequestBuilder, ResponseBuilder};

use crate::call::Net;
use crate::event::EventKind;
use crate::reginfo::{ContactEvent, ContactState, RegInfo, RegInfoError};
use crate::registration::refresh_after;

/// The reg event package's body type (RFC 3680 §5.3).
pub const REGINFO: &str = "application/reginfo+xml";
/// How long an ended subscription waits for its final NOTIFY (64·T1, RFC 6665 §4.1.2.3).
const LINGER: Duration = Duration::from_secs(32);
/// Re-subscriptions in a row after the notifier ended the subscription with a reason that
/// invites one (RFC 6665 §4.1.3 `deactivated`, `timeout`) without an active NOTIFY in
/// between: a notifier that keeps ending it does not make the UE loop.
const MAX_RESUBSCRIBES: u32 = 3;

/// The `Subscription-State` of a NOTIFY (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Active, for `expires` more seconds when given.
    Active {
        /// seconds left
        expires: Option<u32>,
    },
    /// Pending authorisation.
    Pending {
        /// seconds left
        expires: Option<u32>,
    },
    /// Over, with the notifier's reason (`noresource`, `deactivated`, `timeout` …).
    Terminated {
        /// the reason parameter
        reason: Option<String>,
    },
}

impl SubscriptionState {
    /// Parses the header value.
    pub fn parse(v: &str) -> Result<SubscriptionState, SubscriptionStateError> {
        let bad = || SubscriptionStateError(v.to_string());
        let (value, rest) = match v.find(';') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, ""),
        };
        let params = Params::parse(rest).map_err(|_| bad())?;
        let expires = match params.get("expires") {
            Some(e) => Some(sip::headers::parse_delta_seconds(e).map_err(|_| bad())?),
            None => None,
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(SubscriptionState::Active { expires }),
            "pending" => Ok(SubscriptionState::Pending { expires }),
            "terminated" => Ok(SubscriptionState::Terminated {
                reason: params.get("reason").map(|r| r.trim().to_ascii_lowercase()),
            }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscriptionState::Active { expires: Some(e) } => write!(f, "active {e} s"),
            SubscriptionState::Active { expires: None } => f.write_str("active"),
            SubscriptionState::Pending { .. } => f.write_str("pending"),
            SubscriptionState::Terminated { reason: Some(r) } => write!(f, "terminated ({r})"),
            SubscriptionState::Terminated { reason: None } => f.write_str("terminated"),
        }
    }
}

/// A `Subscription-State` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad Subscription-State {0:?}")]
pub struct SubscriptionStateError(pub String);

/// What one NOTIFY said, for the ladder and the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegNotification {
    /// The subscription's state.
    pub subscription: SubscriptionState,
    /// The reginfo version (`None` when the body could not be used).
    pub version: Option<u32>,
    /// Active contacts over all registrations of the document.
    pub active_contacts: usize,
    /// Our own contact's state and event, when the document lists it.
    pub own: Option<(ContactState, ContactEvent)>,
}

impl std::fmt::Display for RegNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "subscription {}", self.subscription)?;
        if let Some(v) = self.version {
            write!(
                f,
                ", reginfo v{v}, {} active contact(s)",
                self.active_contacts
            )?;
        }
        match self.own {
            Some((ContactState::Active, e)) => write!(f, ", ours active ({e})"),
            Some((ContactState::Terminated, e)) => write!(f, ", ours terminated ({e})"),
            None => Ok(()),
        }
    }
}

/// How a reg event subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEnd {
    /// We unsubscribed (`Expires: 0`) and the notifier confirmed.
    Unsubscribed,
    /// The notifier ended it (`Subscription-State: terminated`).
    Terminated {
        /// its reason
        reason: Option<String>,
    },
    /// The SUBSCRIBE got a failure response.
    Rejected {
        /// the status code
        code: u16,
    },
    /// The SUBSCRIBE got no answer, or the subscription ran out without a refresh.
    Timeout,
    /// The registration it watched is gone (deregistered or expired locally).
    RegistrationGone,
}

impl std::fmt::Display for SubscriptionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscriptionEnd::Unsubscribed => f.write_str("unsubscribed"),
            SubscriptionEnd::Terminated { reason: Some(r) } => write!(f, "terminated ({r})"),
            SubscriptionEnd::Terminated { reason: None } => f.write_str("terminated"),
            SubscriptionEnd::Rejected { code } => write!(f, "rejected with {code}"),
            SubscriptionEnd::Timeout => f.write_str("timed out"),
            SubscriptionEnd::RegistrationGone => f.write_str("registration gone"),
        }
    }
}

/// What the subscription hands to [`crate::Ue`].
#[derive(Debug)]
pub(crate) enum SubOut {
    /// Start a client transaction.
    Request(Message, Flow),
    /// Answer a server transaction.
    Respond(TxId, Message),
    /// For the application.
    Event(EventKind),
    /// The network deregistered us (our contact `terminated` with this event).
    NetworkDeregistration(ContactEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The initial SUBSCRIBE is out.
    Subscribing,
    /// A 2xx or a NOTIFY established it.
    Active,
    /// The unsubscribe is out, or it ended and we wait for stragglers until `linger`.
    Ending,
}

#[derive(Debug)]
struct Sub {
    phase: Phase,
    call_id: String,
    local_tag: String,
    /// the initial SUBSCRIBE (the UAC dialog is built from it and its 2xx)
    subscribe: Message,
    dialog: Option<Dialog>,
    /// the SUBSCRIBE transaction in flight
    tx: Option<TxId>,
    /// whether the transaction in flight is a refresh (vs the initial or an unsubscribe)
    refreshing: bool,
    /// whether we sent `Expires: 0`
    unsubscribing: bool,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
    /// forget it at this time (ended, waiting for a late NOTIFY)
    linger: Option<Instant>,
    /// the last reginfo version taken (RFC 3680 §5.4)
    version: Option<u32>,
}

/// The headers of every SUBSCRIBE of ours, initial, refresh or unsubscribe (RFC 3680
/// §5.1, RFC 6665 §4.1.2), plus those of any request over the SA.
fn reg_headers(b: RequestBuilder, net: &Net, expires: u32) -> RequestBuilder {
    let b = b
        .contact(&net.contact)
        .header("Event", "reg")
        .header("Accept", REGINFO)
        .header("Expires", expires);
    net.decorate(b, &[])
}

/// The UE's reg event subscription (at most one at a time).
#[derive(Debug)]
pub(crate) struct RegEvent {
    expires: u32,
    sub: Option<Sub>,
    resubscribes: u32,
    out: VecDeque<SubOut>,
}

impl RegEvent {
    /// `expires`: the expiry asked in each SUBSCRIBE.
    pub(crate) fn new(expires: u32) -> RegEvent {
        RegEvent {
            expires,
            sub: None,
            resubscribes: 0,
            out: VecDeque::new(),
        }
    }

    pub(crate) fn poll_output(&mut self) -> Option<SubOut> {
        self.out.pop_front()
    }

    /// Whether a subscription exists that is not ending.
    pub(crate) fn is_alive(&self) -> bool {
        self.sub.as_ref().is_some_and(|s| s.phase != Phase::Ending)
    }

    /// Whether `tx` carries one of our SUBSCRIBEs.
    pub(crate) fn owns(&self, tx: TxId) -> bool {
        self.sub.as_ref().is_some_and(|s| s.tx == Some(tx))
    }

    /// The client transaction of the request just handed out.
    pub(crate) fn sent(&mut self, tx: TxId) {
        if let Some(s) = self.sub.as_mut() {
            s.tx = Some(tx);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let s = self.sub.as_ref()?;
        [s.refresh_at, s.expires_at, s.linger]
            .into_iter()
            .flatten()
            .min()
    }

    /// The initial SUBSCRIBE to our IMPU (TS 24.229 §5.1.1.3).
    pub(crate) fn subscribe(&mut self, net: &Net, preferred: Option<&str>) {
        if self.is_alive() || !net.registered {
            return;
        }
        let local_tag = sip::new_tag();
        let call_id = sip::new_call_id(Some(&sip::uri::ip_host(net.local.ip())));
        let mut from = NameAddr::new(net.impu.clone());
        from.params.set("tag", Some(&local_tag));
        let mut b = RequestBuilder::new(Method::Subscribe, &net.impu)
            .via(&net.via())
            .max_forwards(70)
            .header("Route", net.initial_route())
            .from(&from)
            .to(&NameAddr::new(net.impu.clone()))
            .call_id(&call_id)
            .cseq(1);
        if let Some(p) = preferred {
            b = b.header(hdr::P_PREFERRED_IDENTITY, format_args!("<{p}>"));
        }
        let m = reg_headers(b, net, self.expires).build();
        self.out.push_back(SubOut::Request(m.clone(), net.flow));
        self.sub = Some(Sub {
            phase: Phase::Subscribing,
            call_id,
            local_tag,
            subscribe: m,
            dialog: None,
            tx: None,
            refreshing: false,
            unsubscribing: false,
            refresh_at: None,
            expires_at: None,
            linger: None,
            version: None,
        });
    }

    /// An in-dialog SUBSCRIBE: a refresh, or the unsubscribe with `expires` 0.
    fn in_dialog(&mut self, net: &Net, expires: u32, now: Instant) -> bool {
        let Some(s) = self.sub.as_mut() else {
            return false;
        };
        let Some(d) = s.dialog.as_mut() else {
            return false;
        };
        let Ok(b) = d.request(Method::Subscribe, &net.via()) else {
            return false;
        };
        let m = reg_headers(b, net, expires).build();
        s.refreshing = expires > 0;
        s.refresh_at = None;
        if expires == 0 {
            s.unsubscribing = true;
            s.phase = Phase::Ending;
            s.expires_at = None;
            s.linger = Some(now + LINGER);
        }
        self.out.push_back(SubOut::Request(m, net.flow));
        true
    }

    /// Ends the subscription before a deregistration (`Expires: 0`). Without a dialog yet
    /// there is nothing to end at the notifier's side that the deregistration will not.
    pub(crate) fn unsubscribe(&mut self, net: &Net, now: Instant) {
        if !self.is_alive() {
            return;
        }
        if !self.in_dialog(net, 0, now) {
            self.end(SubscriptionEnd::RegistrationGone, now);
        }
    }

    /// The registration is gone without an unsubscribe (expiry, network deregistration,
    /// a deregistration that failed): forget the subscription, the notifier ends it too.
    pub(crate) fn registration_gone(&mut self, now: Instant) {
        if self.is_alive() {
            self.end(SubscriptionEnd::RegistrationGone, now);
        }
    }

    fn end(&mut self, why: SubscriptionEnd, now: Instant) {
        if let Some(s) = self.sub.as_mut() {
            let was_alive = s.phase != Phase::Ending;
            s.phase = Phase::Ending;
            s.refresh_at = None;
            s.expires_at = None;
            s.linger.get_or_insert(now + LINGER);
            if was_alive || matches!(why, SubscriptionEnd::Unsubscribed) {
                self.out
                    .push_back(SubOut::Event(EventKind::RegEventEnded(why)));
            }
        }
    }

    /// A response to one of our SUBSCRIBEs.
    pub(crate) fn handle_response(&mut self, tx: TxId, resp: &Message, now: Instant) {
        if !self.owns(tx) {
            return;
        }
        let Some(code) = resp.code() else { return };
        if code < 200 {
            return;
        }
        let Some(s) = self.sub.as_mut() else { return };
        s.tx = None;
        if !(200..300).contains(&code) {
            match s.phase {
                Phase::Ending => self.forget(),
                _ => self.end(SubscriptionEnd::Rejected { code }, now),
            }
            return;
        }
        if s.phase == Phase::Ending {
            // The unsubscribe was accepted; the final NOTIFY may still come. (A 2xx to an
            // initial SUBSCRIBE we gave up on meanwhile says nothing new.)
            if s.unsubscribing {
                self.out.push_back(SubOut::Event(EventKind::RegEventEnded(
                    SubscriptionEnd::Unsubscribed,
                )));
            }
            return;
        }
        match s.dialog.as_mut() {
            Some(d) if s.phase == Phase::Active => {
                let _ = d.handle_response(resp);
            }
            // The 2xx to the initial SUBSCRIBE makes the dialog (RFC 6665 §4.1.2.1); one
            // a NOTIFY made first is replaced so that our CSeq space continues.
            _ => match Dialog::uac(&s.subscribe, resp) {
                Ok(d) => s.dialog = Some(d),
                Err(_) => {
                    self.end(SubscriptionEnd::Rejected { code }, now);
                    return;
                }
            },
        }
        let granted = resp.expires().ok().flatten().unwrap_or(self.expires);
        if granted == 0 {
            self.end(SubscriptionEnd::Terminated { reason: None }, now);
            return;
        }
        s.phase = Phase::Active;
        s.expires_at = Some(now + Duration::from_secs(u64::from(granted)));
        s.refresh_at = Some(now + refresh_after(granted));
        let refresh = std::mem::take(&mut s.refreshing);
        self.out
            .push_back(SubOut::Event(EventKind::RegEventSubscribed {
                expires: granted,
                refresh,
            }));
    }

    /// Our SUBSCRIBE got no answer.
    pub(crate) fn handle_tx_failure(&mut self, tx: TxId, now: Instant) {
        if !self.owns(tx) {
            return;
        }
        if let Some(s) = self.sub.as_mut() {
            s.tx = None;
            if s.phase == Phase::Ending {
                self.forget();
                return;
            }
        }
        self.end(SubscriptionEnd::Timeout, now);
    }

    fn forget(&mut self) {
        self.sub = None;
    }

    /// Timers: the refresh, the expiry, the end of lingering.
    pub(crate) fn handle_timeout(&mut self, net: &Net, now: Instant) {
        let Some(s) = self.sub.as_mut() else { return };
        if s.linger.is_some_and(|t| t <= now) {
            self.forget();
            return;
        }
        if s.refresh_at.is_some_and(|t| t <= now) {
            s.refresh_at = None;
            // with a SUBSCRIBE still in flight its 2xx sets the next refresh
            if s.tx.is_none() {
                let e = self.expires;
                if !self.in_dialog(net, e, now) {
                    self.end(SubscriptionEnd::Timeout, now);
                }
                return;
            }
        }
        if s.expires_at.is_some_and(|t| t <= now) {
            self.end(SubscriptionEnd::Timeout, now);
        }
    }

    /// Whether a request is a NOTIFY of ours: `Event: reg` in our subscription's Call-ID
    /// with our tag as To tag.
    pub(crate) fn is_ours(&self, req: &Message) -> bool {
        let is_reg = req
            .header("Event")
            .is_some_and(|e| e.split(';').next().is_some_and(|p| p.trim() == "reg"));
        if req.method() != Some(&Method::Notify) || !is_reg {
            return false;
        }
        let Some(s) = self.sub.as_ref() else {
            return false;
        };
        req.call_id().is_ok_and(|c| c == s.call_id)
            && req
                .to_header()
                .is_ok_and(|t| t.tag() == Some(s.local_tag.as_str()))
    }

    /// A NOTIFY of ours (checked with [`RegEvent::is_ours`]); `own` is our registered
    /// Contact URI, for finding our contact in the document.
    pub(crate) fn handle_notify(
        &mut self,
        tx: TxId,
        req: &Message,
        own: &sip::Uri,
        net: &Net,
        preferred: Option<&str>,
        now: Instant,
    ) {
        let Some(s) = self.sub.as_mut() else { return };
        let respond = |code: u16| ResponseBuilder::new(req, code).build().ok();
        // RFC 6665 §4.1.2.4: a NOTIFY may come before the 2xx and then creates the dialog.
        let checked = match s.dialog.as_mut() {
            Some(d) => d.handle_request(req).map_err(|e| match e {
                sip::DialogError::OutOfOrder { .. } => 500,
                _ => 481,
            }),
            None => Dialog::uas(req, &s.local_tag)
                .map(|d| s.dialog = Some(d))
                .map_err(|_| 400),
        };
        let state = match req
            .header("Subscription-State")
            .map(SubscriptionState::parse)
        {
            Some(Ok(st)) => Ok(st),
            _ => Err(400),
        };
        let state = match checked.and(state) {
            Ok(st) => st,
            Err(code) => {
                if let Some(m) = respond(code) {
                    self.out.push_back(SubOut::Respond(tx, m));
                }
                return;
            }
        };
        if let Some(m) = respond(200) {
            self.out.push_back(SubOut::Respond(tx, m));
        }
        // The body (RFC 3680 §5.4): older versions than one already seen are stale.
        let doc = if req.body().is_empty() {
            None
        } else {
            let ct_ok = req
                .header("Content-Type")
                .is_some_and(|c| c.trim().eq_ignore_ascii_case(REGINFO));
            match std::str::from_utf8(req.body()) {
                Ok(text) if ct_ok => match RegInfo::parse(text) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        self.out
                            .push_back(SubOut::Event(EventKind::RegEventBadBody(e)));
                        None
                    }
                },
                _ => {
                    self.out.push_back(SubOut::Event(EventKind::RegEventBadBody(
                        RegInfoError::Syntax("not UTF-8 application/reginfo+xml".into()),
                    )));
                    None
                }
            }
        };
        let Some(s) = self.sub.as_mut() else { return };
        let doc = doc.filter(|d| s.version.is_none_or(|v| d.version > v));
        if let Some(d) = &doc {
            s.version = Some(d.version);
        }
        let own_state = doc.as_ref().and_then(|d| {
            // Our contact as bound to the IMPU we registered; a document without that
            // AoR is read over all of them (one registration element per IMPU of the
            // implicit set lists the same contact, TS 24.229 §5.4.2.1.2).
            let all: Vec<_> = d.contacts_of(own).collect();
            let ours_by_aor: Vec<_> = all
                .iter()
                .filter(|(r, _)| sip::Uri::parse(r.aor.trim()).is_ok_and(|u| u == net.impu))
                .collect();
            let mine: Vec<_> = if ours_by_aor.is_empty() {
                all.iter().map(|(_, c)| (c.state, c.event)).collect()
            } else {
                ours_by_aor
                    .iter()
                    .map(|(_, c)| (c.state, c.event))
                    .collect()
            };
            // a terminated one among them wins
            mine.iter()
                .find(|(st, _)| *st == ContactState::Terminated)
                .or(mine.first())
                .copied()
        });
        self.out
            .push_back(SubOut::Event(EventKind::RegEventNotified(
                RegNotification {
                    subscription: state.clone(),
                    version: doc.as_ref().map(|d| d.version),
                    active_contacts: doc.as_ref().map_or(0, RegInfo::active_contacts),
                    own: own_state,
                },
            )));
        match &state {
            SubscriptionState::Active { expires } | SubscriptionState::Pending { expires } => {
                self.resubscribes = 0;
                if let (Some(e), Phase::Subscribing | Phase::Active) = (expires, s.phase) {
                    // the notifier may shorten the subscription (RFC 6665 §4.1.2.1)
                    let at = now + Duration::from_secs(u64::from(*e));
                    if s.expires_at.is_none_or(|x| at < x) {
                        s.expires_at = Some(at);
                        s.refresh_at = Some(now + refresh_after(*e));
                    }
                }
            }
            SubscriptionState::Terminated { reason } => {
                let was_ending = s.phase == Phase::Ending;
                if was_ending {
                    self.forget();
                } else {
                    self.end(
                        SubscriptionEnd::Terminated {
                            reason: reason.clone(),
                        },
                        now,
                    );
                    self.forget();
                }
                // RFC 6665 §4.1.3: after `deactivated` or `timeout` subscribe again at once
                // (if our registration stands, see below)
                let again = matches!(reason.as_deref(), Some("deactivated" | "timeout"));
                let dereg = own_state.is_some_and(|(st, ev)| {
                    st == ContactState::Terminated
                        && matches!(ev, ContactEvent::Deactivated | ContactEvent::Rejected)
                });
                if again && !was_ending && !dereg && self.resubscribes < MAX_RESUBSCRIBES {
                    self.resubscribes += 1;
                    self.subscribe(net, preferred);
                }
            }
        }
        if let Some((ContactState::Terminated, ev)) = own_state {
            if matches!(ev, ContactEvent::Deactivated | ContactEvent::Rejected) {
                self.out.push_back(SubOut::NetworkDeregistration(ev));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_state_values() {
        assert_eq!(
            SubscriptionState::parse("active;expires=600000"),
            Ok(SubscriptionState::Active {
                expires: Some(600000)
            })
        );
        assert_eq!(
            SubscriptionState::parse(" Terminated ; reason=noresource"),
            Ok(SubscriptionState::Terminated {
                reason: Some("noresource".into())
            })
        );
        assert_eq!(
            SubscriptionState::parse("pending"),
            Ok(SubscriptionState::Pending { expires: None })
        );
        for bad in ["", "gone", "active;expires=x", "active;expires=-1"] {
            assert!(SubscriptionState::parse(bad).is_err(), "{bad}");
        }
    }
}
