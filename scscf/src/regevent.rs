//! The registration event package (RFC 3680, TS 24.229 §5.4.2.1): the S-CSCF is the
//! notifier for every identity it registers. A UE (after registering, TS 24.229
//! §5.1.1.3) and a P-CSCF (TS 24.229 §5.2.3) subscribe with `SUBSCRIBE` `Event: reg`
//! to the registered identity; each gets a NOTIFY with the full state at once and
//! another at every change — registration, deregistration, expiry, and the network's own
//! deregistration after an RTR from the HSS, which is how the UE and the P-CSCF learn
//! that their registration and its SAs are gone.
//!
//! The subscription is a dialog of its own (RFC 6665 §4.1.2): we are its UAS. NOTIFYs go
//! to the subscriber's Contact along the Record-Route of its SUBSCRIBE, so they pass the
//! P-CSCF and reach a UE over its SA like every other in-dialog request.

use crate::core::{Scscf, Timer};
use crate::registrar::Registration;
use sip::reginfo::{
    ContactEvent, ContactInfo, ContactState, DocState, RegInfo, RegistrationInfo, RegistrationState,
};
use sip::transaction::TxId;
use sip::{Message, Method, NameAddr, RequestBuilder, ResponseBuilder, Uri, Via};
use std::time::{Duration, Instant};

/// The longest subscription we grant, seconds (TS 24.229 §5.4.2.1.1: the S-CSCF sets
/// the expiry; 600 000 s is what handsets ask).
pub const MAX_EXPIRES: u32 = 600_000;
/// Expiry when the SUBSCRIBE names none (RFC 3680 §5.6: 3761 s).
pub const DEFAULT_EXPIRES: u32 = 3761;

/// Why a subscription ends (RFC 6665 §4.1.3 reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The subscriber unsubscribed (`Expires: 0`).
    Unsubscribed,
    /// It was not refreshed in time.
    Timeout,
    /// The registration it watches is gone for good.
    NoResource,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::Unsubscribed | EndReason::NoResource => "noresource",
            EndReason::Timeout => "timeout",
        }
    }
}

/// What happened to a registration, as a contact's `event` attribute (RFC 3680 §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegChange {
    /// Nothing: the state as it is (first NOTIFY, refreshes).
    None,
    /// A contact was added.
    Registered,
    /// The UE deregistered.
    Unregistered,
    /// The registration expired.
    Expired,
    /// The network ended it (an RTR, RFC 3680 §5.4 `deactivated` / TS 24.229 §5.4.1.5).
    Deactivated,
}

impl RegChange {
    fn contact_state(self) -> (&'static str, ContactEvent) {
        match self {
            RegChange::None | RegChange::Registered => ("active", ContactEvent::Registered),
            RegChange::Unregistered => ("terminated", ContactEvent::Unregistered),
            RegChange::Expired => ("terminated", ContactEvent::Expired),
            RegChange::Deactivated => ("terminated", ContactEvent::Deactivated),
        }
    }
}

/// One subscription: the dialog and what it watches.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    /// The registered identity whose registration it watches.
    pub(crate) impu: String,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// Our URI in the dialog (the SUBSCRIBE's To).
    local_uri: String,
    /// The subscriber's URI (the SUBSCRIBE's From).
    remote_uri: String,
    /// Where NOTIFYs go: the subscriber's Contact.
    remote_target: String,
    /// The SUBSCRIBE's Record-Route, in order (we are the UAS, RFC 3261 §12.1.1).
    route_set: Vec<String>,
    local_cseq: u32,
    expires_at: Instant,
    /// reginfo version, one more per NOTIFY (RFC 3680 §5.4).
    version: u32,
    generation: u64,
}

/// The dialog key of a request or of a subscription: Call-ID and the two tags.
fn key(call_id: &str, ours: &str, theirs: &str) -> String {
    format!("{call_id}\u{1}{ours}\u{1}{theirs}")
}

/// The reginfo document (RFC 3680 §5.3, application/reginfo+xml) for `reg`: one
/// `registration` element per identity of its implicit set (TS 24.229 §5.4.2.1.2), each
/// with every contact.
pub fn reginfo(reg: &Registration, version: u32, change: RegChange, now: Instant) -> RegInfo {
    let (cstate, event) = change.contact_state();
    let terminated = cstate == "terminated";
    let identities: Vec<&String> = if reg.associated.is_empty() {
        vec![&reg.impu]
    } else {
        reg.associated.iter().collect()
    };
    let registrations = identities
        .iter()
        .enumerate()
        .map(|(i, aor)| RegistrationInfo {
            aor: (*aor).clone(),
            id: format!("r{i}"),
            state: if terminated {
                RegistrationState::Terminated
            } else {
                RegistrationState::Active
            },
            contacts: reg
                .bindings
                .iter()
                .enumerate()
                .map(|(j, b)| ContactInfo {
                    id: format!("c{i}-{j}"),
                    state: if terminated {
                        ContactState::Terminated
                    } else {
                        ContactState::Active
                    },
                    event,
                    expires: (!terminated).then(|| {
                        let left = b.expires_at.saturating_duration_since(now).as_secs();
                        u32::try_from(left).unwrap_or(u32::MAX)
                    }),
                    uri: NameAddr::parse(&b.contact)
                        .map(|n| n.uri.to_string())
                        .unwrap_or_else(|_| b.contact.clone()),
                })
                .collect(),
        })
        .collect();
    RegInfo {
        version,
        state: DocState::Full,
        registrations,
    }
}

impl Scscf {
    /// A SUBSCRIBE: for `Event: reg` to an identity we registered (new or a refresh of a
    /// subscription of ours), else `None` and it is routed like any request.
    pub(crate) fn on_subscribe(&mut self, id: TxId, req: &Message, now: Instant) -> bool {
        let is_reg = req
            .header("Event")
            .is_some_and(|e| e.split(';').next().is_some_and(|p| p.trim() == "reg"));
        if !is_reg {
            return false;
        }
        let Ok(call_id) = req.call_id().map(str::to_string) else {
            return false;
        };
        let Ok(from) = req.from_header() else {
            return false;
        };
        let their_tag = from.tag().unwrap_or_default().to_string();
        let to = req.to_header().ok();
        let asked = req
            .expires()
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_EXPIRES)
            .min(MAX_EXPIRES);
        if let Some(our_tag) = to.as_ref().and_then(|t| t.tag()).map(str::to_string) {
            // A refresh or an unsubscribe within one of our subscriptions.
            let k = key(&call_id, &our_tag, &their_tag);
            if !self.reg_subs.contains_key(&k) {
                self.simple(id, req, 481, now);
                return true;
            }
            let r = ResponseBuilder::new(req, 200)
                .header("Expires", asked)
                .header("Contact", self.own_contact())
                .build();
            self.respond(id, r, now);
            if asked == 0 {
                self.end_subscription(&k, EndReason::Unsubscribed, now);
            } else {
                self.refresh_subscription(&k, asked, now);
                self.notify(&k, RegChange::None, now);
            }
            return true;
        }
        // An initial SUBSCRIBE must name one of the identities we registered.
        let target = req.uri_str().unwrap_or_default().to_string();
        let Some(impu) = self.identity_owner(&target).map(str::to_string) else {
            return false;
        };
        let Ok(contact) = req.contacts() else {
            self.simple(id, req, 400, now);
            return true;
        };
        let Some(remote_target) = (match contact {
            sip::Contacts::List(l) => l.into_iter().next().map(|c| c.uri.to_string()),
            sip::Contacts::Star => None,
        }) else {
            self.simple(id, req, 400, now);
            return true;
        };
        let our_tag = self.ids.tag();
        let r = ResponseBuilder::new(req, 200)
            .to_tag(&our_tag)
            .header("Expires", asked)
            .header("Contact", self.own_contact())
            .build();
        self.respond(id, r, now);
        if asked == 0 {
            // A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, then it ends.
        }
        let sub = Subscription {
            impu,
            call_id: call_id.clone(),
            local_tag: our_tag.clone(),
            remote_tag: their_tag.clone(),
            local_uri: to.map(|t| t.uri.to_string()).unwrap_or_default(),
            remote_uri: from.uri.to_string(),
            remote_target,
            route_set: req
                .header_values("Record-Route")
                .map(str::to_string)
                .collect(),
            local_cseq: 0,
            expires_at: now,
            version: 0,
            generation: 0,
        };
        let k = key(&call_id, &our_tag, &their_tag);
        self.reg_subs.insert(k.clone(), sub);
        if asked == 0 {
            self.end_subscription(&k, EndReason::Timeout, now);
        } else {
            self.refresh_subscription(&k, asked, now);
            self.notify(&k, RegChange::None, now);
        }
        true
    }

    fn own_contact(&self) -> String {
        let a = self.cfg.address;
        format!("<sip:{}:{}>", sip::uri::ip_host(a.ip()), a.port())
    }

    fn refresh_subscription(&mut self, k: &str, expires: u32, now: Instant) {
        let generation = self.next_generation();
        if let Some(s) = self.reg_subs.get_mut(k) {
            s.expires_at = now + Duration::from_secs(u64::from(expires));
            s.generation = generation;
            let at = s.expires_at;
            self.set_timer(
                at,
                Timer::Subscription {
                    key: k.to_string(),
                    generation,
                },
            );
        }
    }

    /// A subscription's timer fired: it ends unless refreshed since.
    pub(crate) fn subscription_timer(&mut self, k: &str, generation: u64, now: Instant) {
        if self
            .reg_subs
            .get(k)
            .is_some_and(|s| s.generation == generation)
        {
            self.end_subscription(k, EndReason::Timeout, now);
        }
    }

    /// Sends the final NOTIFY (`Subscription-State: terminated`) and forgets it.
    fn end_subscription(&mut self, k: &str, why: EndReason, now: Instant) {
        self.send_notify(k, RegChange::None, Some(why), now);
        self.reg_subs.remove(k);
    }

    /// Every subscription to `impu`'s registration hears about `change`; when the
    /// registration is gone, the subscriptions end with that NOTIFY (RFC 3680 §5.2).
    pub(crate) fn registration_changed(
        &mut self,
        impu: &str,
        reg: Option<&Registration>,
        change: RegChange,
        now: Instant,
    ) {
        let keys: Vec<String> = self
            .reg_subs
            .iter()
            .filter(|(_, s)| s.impu == impu)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            match reg {
                Some(_)
                    if !matches!(
                        change,
                        RegChange::Unregistered | RegChange::Expired | RegChange::Deactivated
                    ) =>
                {
                    self.notify(&k, change, now)
                }
                _ => {
                    self.send_notify_for(&k, reg, change, Some(EndReason::NoResource), now);
                    self.reg_subs.remove(&k);
                }
            }
        }
    }

    fn notify(&mut self, k: &str, change: RegChange, now: Instant) {
        self.send_notify(k, change, None, now);
    }

    fn send_notify(&mut self, k: &str, change: RegChange, end: Option<EndReason>, now: Instant) {
        let impu = match self.reg_subs.get(k) {
            Some(s) => s.impu.clone(),
            None => return,
        };
        let reg = self.regs.get(&impu).cloned();
        self.send_notify_for(k, reg.as_ref(), change, end, now);
    }

    fn send_notify_for(
        &mut self,
        k: &str,
        reg: Option<&Registration>,
        change: RegChange,
        end: Option<EndReason>,
        now: Instant,
    ) {
        let via_branch = self.ids.branch();
        let a = self.cfg.address;
        let own = self.own_contact();
        let Some(s) = self.reg_subs.get_mut(k) else {
            return;
        };
        s.local_cseq += 1;
        let version = s.version;
        s.version += 1;
        let state = match end {
            Some(r) => format!("terminated;reason={}", r.as_str()),
            None => format!(
                "active;expires={}",
                s.expires_at.saturating_duration_since(now).as_secs()
            ),
        };
        let body = match reg {
            Some(r) => reginfo(r, version, change, now),
            None => RegInfo {
                version,
                state: DocState::Full,
                registrations: vec![RegistrationInfo {
                    aor: s.impu.clone(),
                    id: "r0".into(),
                    state: RegistrationState::Terminated,
                    contacts: Vec::new(),
                }],
            },
        }
        .to_string();
        let Ok(first) = (match s.route_set.first() {
            Some(r) => NameAddr::parse(r).map(|n| n.uri),
            None => Uri::parse(&s.remote_target),
        }) else {
            return;
        };
        let mut b = RequestBuilder::new(Method::Notify, &s.remote_target).max_forwards(70);
        for r in &s.route_set {
            b = b.header("Route", r);
        }
        let msg = b
            .header("From", format!("<{}>;tag={}", s.local_uri, s.local_tag))
            .header("To", format!("<{}>;tag={}", s.remote_uri, s.remote_tag))
            .header("Call-ID", &s.call_id)
            .header("CSeq", format!("{} NOTIFY", s.local_cseq))
            .header("Contact", own)
            .header("Event", "reg")
            .header("Subscription-State", state)
            .body("application/reginfo+xml", body)
            .build();
        let Some(flow) = self.flow_to(&first) else {
            tracing::debug!("reg event: no route to the subscriber");
            return;
        };
        let mut msg = msg;
        let via = Via::new(
            flow.protocol.as_str(),
            &sip::uri::ip_host(a.ip()),
            Some(a.port()),
            &via_branch,
        );
        msg.prepend_header("Via", &via.to_string());
        if let Err(e) = self.tx.send_request(msg, flow, now) {
            tracing::debug!("reg event NOTIFY: {e}");
        }
        self.stats.notifies += 1;
    }

    /// Subscriptions open now (tests, metrics).
    pub fn subscription_count(&self) -> usize {
        self.reg_subs.len()
    }
}
