//! The UE's reg event subscription (TS 24.229 §5.1.1.3, RFC 3680, RFC 6665) against the
//! scripted network of `common`: the SUBSCRIBE after the initial registration, NOTIFYs
//! with the full state, the refresh, the unsubscribe before deregistering, and the network
//! deregistering the UE (§5.1.1.7) — registration and SAs gone at once, no de-REGISTER.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use sip::{Flow, Message, Method, Protocol, RequestBuilder, ResponseBuilder, Via};
use ue::{
    ContactEvent, ContactState, EventKind, RegState, SaAction, SubscriptionEnd, SubscriptionState,
    Ue, UeConfig,
};
use xfrm::SaSet;

const SCSCF_RR: &str = "<sip:scscf.ims.mnc001.mcc001.3gppnetwork.org:6060;lr>";

fn cfg_on() -> UeConfig {
    let mut c = config();
    c.reg_event = true;
    c
}

fn pcscf_rr(set: &SaSet) -> String {
    format!("<sip:127.0.0.1:{};lr>", set.port_ps)
}

/// Our protected server port, where NOTIFYs arrive from the P-CSCF's protected client
/// port (TS 33.203 §7.1).
fn notify_flow(set: &SaSet) -> Flow {
    Flow::new(
        SocketAddr::new(ue_ip(), set.port_us),
        SocketAddr::new(pcscf_addr().ip(), set.port_pc),
        Protocol::Udp,
    )
}

/// Registered, with the SUBSCRIBE that followed the 200 OK taken off the UE.
fn subscribing(cfg: UeConfig) -> (Ue, Instant, SaSet, Message, Flow) {
    let (mut ue, _net, t, set) = registered_with(cfg);
    let (sub, flow) = one_transmit(&mut ue);
    (ue, t, set, sub, flow)
}

use std::time::Instant;

/// The S-CSCF's 200 to a SUBSCRIBE, through the P-CSCF (both Record-Route).
fn sub_ok(sub: &Message, set: &SaSet, expires: u32) -> Message {
    ResponseBuilder::new(sub, 200)
        .to_tag("scscf-tag")
        .header("Record-Route", pcscf_rr(set))
        .header("Record-Route", SCSCF_RR)
        .header("Contact", "<sip:127.0.0.1:6060>")
        .header("Expires", expires)
        .build()
        .unwrap()
}

fn reginfo(version: u32, contact_state: &str, event: &str, set: &SaSet) -> String {
    format!(
        "<?xml version=\"1.0\"?>\r\n<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"{version}\" state=\"full\">\r\n\
  <registration aor=\"{IMPU}\" id=\"r0\" state=\"{}\">\r\n\
    <contact id=\"c0-0\" state=\"{contact_state}\" event=\"{event}\">\r\n\
      <uri>sip:001010000000001@127.0.0.2:{}</uri>\r\n\
    </contact>\r\n\
  </registration>\r\n</reginfo>\r\n",
        if contact_state == "active" { "active" } else { "terminated" },
        set.port_us
    )
}

/// A NOTIFY of the subscription `sub` as the P-CSCF relays it to the UE.
fn notify(sub: &Message, set: &SaSet, cseq: u32, state: &str, body: &str) -> Message {
    let from_tag = sub.from_header().unwrap().tag().unwrap().to_string();
    let via = Via::new("UDP", "127.0.0.1", Some(set.port_pc), &sip::new_branch());
    RequestBuilder::new(
        Method::Notify,
        format!("sip:001010000000001@127.0.0.2:{}", set.port_us),
    )
    .via(&via)
    .max_forwards(69)
    .header("Record-Route", pcscf_rr(set))
    .header("From", format!("<{IMPU}>;tag=scscf-tag"))
    .header("To", format!("<{IMPU}>;tag={from_tag}"))
    .call_id(sub.call_id().unwrap())
    .cseq(cseq)
    .header("Contact", "<sip:127.0.0.1:6060>")
    .header("Event", "reg")
    .header("Subscription-State", state)
    .body(
        "application/reginfo+xml",
        bytes::Bytes::from(body.to_string()),
    )
    .build()
}

/// Delivers a NOTIFY and returns the UE's answer (checked to leave where it came in).
fn deliver_notify(ue: &mut Ue, m: &Message, set: &SaSet, t: Instant) -> Message {
    ue.handle_datagram(notify_flow(set), &m.to_bytes(), t);
    let tr = ue.poll_transmit().expect("an answer to the NOTIFY");
    assert_eq!(tr.flow.local, Some(notify_flow(set).local.unwrap()));
    assert_eq!(tr.flow.remote, notify_flow(set).remote);
    Message::parse(&tr.payload).unwrap()
}

/// Subscribed and notified of the full state once.
fn subscribed(cfg: UeConfig) -> (Ue, Instant, SaSet, Message) {
    let (mut ue, t, set, sub, flow) = subscribing(cfg);
    deliver(&mut ue, &sub_ok(&sub, &set, 600_000), flow, t);
    let ok = deliver_notify(
        &mut ue,
        &notify(
            &sub,
            &set,
            1,
            "active;expires=600000",
            &reginfo(0, "active", "registered", &set),
        ),
        &set,
        t,
    );
    assert_eq!(ok.code(), Some(200));
    let _ = events(&mut ue);
    (ue, t, set, sub)
}

#[test]
fn subscribes_after_register_and_takes_the_full_state() {
    let (mut ue, t, set, sub, flow) = subscribing(cfg_on());
    assert_eq!(sub.method(), Some(&Method::Subscribe));
    assert_eq!(sub.uri_str(), Some(IMPU));
    assert_eq!(sub.header("Event"), Some("reg"));
    assert_eq!(sub.header("Accept"), Some("application/reginfo+xml"));
    assert_eq!(sub.expires().unwrap(), Some(600_000));
    assert!(sub.to_header().unwrap().tag().is_none());
    // over the SA, to the P-CSCF's protected server port, routed by the Service-Route
    assert_eq!(flow.local, Some(SocketAddr::new(ue_ip(), set.port_uc)));
    assert_eq!(flow.remote, SocketAddr::new(pcscf_addr().ip(), set.port_ps));
    let route: Vec<&str> = sub.header_values("Route").collect();
    assert_eq!(
        route,
        [
            pcscf_rr(&set).as_str(),
            &format!("<sip:orig@scscf.{DOMAIN};lr>")
        ]
    );
    let contact = sub.contacts().unwrap();
    let sip::Contacts::List(c) = contact else {
        panic!("a Contact")
    };
    assert_eq!(c[0].uri.port, Some(set.port_us));
    assert!(sub.header("P-Access-Network-Info").is_some());
    assert!(sub.header("Security-Verify").is_some());

    deliver(&mut ue, &sub_ok(&sub, &set, 600_000), flow, t);
    let ev = events(&mut ue);
    assert!(ev.iter().any(|e| e.kind
        == EventKind::RegEventSubscribed {
            expires: 600_000,
            refresh: false
        }));
    assert!(ue.is_subscribed());

    let n = notify(
        &sub,
        &set,
        1,
        "active;expires=600000",
        &reginfo(0, "active", "registered", &set),
    );
    let ok = deliver_notify(&mut ue, &n, &set, t);
    assert_eq!(ok.code(), Some(200));
    assert_eq!(ok.cseq().unwrap().method, Method::Notify);
    let notified: Vec<_> = events(&mut ue)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::RegEventNotified(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(notified.len(), 1);
    assert_eq!(
        notified[0].subscription,
        SubscriptionState::Active {
            expires: Some(600_000)
        }
    );
    assert_eq!(notified[0].version, Some(0));
    assert_eq!(notified[0].active_contacts, 1);
    assert_eq!(
        notified[0].own,
        Some((ContactState::Active, ContactEvent::Registered))
    );
    assert!(ue.is_registered());
    // an out-of-order NOTIFY (CSeq not above the last) gets 500 (RFC 3261 §12.2.2)
    let stale = deliver_notify(&mut ue, &n, &set, t);
    assert_eq!(stale.code(), Some(200), "a retransmission is absorbed");
    let mut replay = notify(
        &sub,
        &set,
        1,
        "active;expires=600000",
        &reginfo(1, "active", "registered", &set),
    );
    replay.set_header("CSeq", "1 NOTIFY");
    assert_eq!(deliver_notify(&mut ue, &replay, &set, t).code(), Some(500));
}

#[test]
fn a_notify_before_the_200_creates_the_dialog() {
    let (mut ue, t, set, sub, flow) = subscribing(cfg_on());
    let ok = deliver_notify(
        &mut ue,
        &notify(
            &sub,
            &set,
            1,
            "active;expires=600000",
            &reginfo(0, "active", "registered", &set),
        ),
        &set,
        t,
    );
    assert_eq!(ok.code(), Some(200));
    deliver(&mut ue, &sub_ok(&sub, &set, 600), flow, t);
    assert!(ue.is_subscribed());
    // the refresh continues the SUBSCRIBE's CSeq space
    let t2 = t + Duration::from_secs(300);
    ue.handle_timeout(t2);
    let (refresh, _) = one_transmit(&mut ue);
    assert_eq!(refresh.cseq().unwrap().seq, 2);
}

#[test]
fn network_deregistration_drops_the_registration_and_deletes_the_sas_at_once() {
    let (mut ue, t, set, sub) = subscribed(cfg_on());
    let t2 = t + Duration::from_secs(5);
    let n = notify(
        &sub,
        &set,
        2,
        "terminated;reason=noresource",
        &reginfo(1, "terminated", "deactivated", &set),
    );
    let ok = deliver_notify(&mut ue, &n, &set, t2);
    assert_eq!(ok.code(), Some(200));
    // no de-REGISTER: the network said so (TS 24.229 §5.1.1.7)
    assert!(ue.poll_transmit().is_none());
    assert!(!ue.is_registered());
    assert_eq!(ue.state(), RegState::Idle);
    assert!(ue.current_set().is_none());
    assert_eq!(ue.registration().set_count(), 0);
    assert!(!ue.is_subscribed());
    let acts = actions(&mut ue);
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert!(matches!(
        acts[0],
        SaAction::Delete {
            id: 41,
            close_server_port: true,
            ..
        }
    ));
    let ev = events(&mut ue);
    assert!(ev.iter().any(|e| e.kind
        == EventKind::DeregisteredByNetwork {
            event: ContactEvent::Deactivated
        }));
    assert!(ev.iter().any(|e| e.kind
        == EventKind::RegEventEnded(SubscriptionEnd::Terminated {
            reason: Some("noresource".into())
        })));
    let lines: Vec<String> = ev.iter().map(|e| ue::ladder_line(t, "UE", e)).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("deregistered by the network (deactivated)")),
        "{lines:#?}"
    );
    // nothing left to do: no refresh, no SA deletion pending
    ue.handle_timeout(t2 + Duration::from_secs(10_000));
    assert!(ue.poll_transmit().is_none());
    assert!(actions(&mut ue).is_empty());
}

#[test]
fn deactivation_reregisters_when_configured_but_rejection_never_does() {
    for (event, again) in [("deactivated", true), ("rejected", false)] {
        let mut cfg = cfg_on();
        cfg.reregister_on_deactivation = true;
        let (mut ue, t, set, sub) = subscribed(cfg);
        let n = notify(
            &sub,
            &set,
            2,
            "terminated;reason=noresource",
            &reginfo(1, "terminated", event, &set),
        );
        assert_eq!(deliver_notify(&mut ue, &n, &set, t).code(), Some(200));
        assert!(ue.registration().current_set().is_none());
        match ue.poll_transmit() {
            Some(tr) if again => {
                let m = Message::parse(&tr.payload).unwrap();
                assert_eq!(m.method(), Some(&Method::Register));
                // a new initial registration: unprotected, empty Authorization
                assert_eq!(tr.flow.local, Some(SocketAddr::new(ue_ip(), 5060)));
                assert!(m.header("Security-Verify").is_none());
                assert!(matches!(ue.state(), RegState::InProgress { .. }));
            }
            None if !again => assert_eq!(ue.state(), RegState::Idle),
            other => panic!("{event}: unexpected {:?}", other.map(|t| t.flow)),
        }
    }
}

#[test]
fn a_notify_about_others_or_a_refresh_keeps_the_registration() {
    let (mut ue, t, set, sub) = subscribed(cfg_on());
    // another contact of the same IMPU deactivated; ours stays active
    let body = reginfo(1, "active", "refreshed", &set).replace(
        "</registration>",
        "<contact id=\"c9\" state=\"terminated\" event=\"deactivated\"><uri>sip:x@127.0.0.9:5060</uri></contact></registration>",
    );
    let n = notify(&sub, &set, 2, "active;expires=599000", &body);
    assert_eq!(deliver_notify(&mut ue, &n, &set, t).code(), Some(200));
    assert!(ue.is_registered());
    assert!(actions(&mut ue).is_empty());
    // a body that does not parse is still answered 200 and reported, nothing dropped
    let n = notify(
        &sub,
        &set,
        3,
        "active;expires=599000",
        "<reginfo version=\"2\"",
    );
    assert_eq!(deliver_notify(&mut ue, &n, &set, t).code(), Some(200));
    assert!(events(&mut ue)
        .iter()
        .any(|e| matches!(e.kind, EventKind::RegEventBadBody(_))));
    assert!(ue.is_registered());
    // a NOTIFY without Subscription-State is refused (RFC 6665 §8.2.3)
    let mut n = notify(
        &sub,
        &set,
        4,
        "active",
        &reginfo(3, "active", "registered", &set),
    );
    n.remove_header("Subscription-State");
    assert_eq!(deliver_notify(&mut ue, &n, &set, t).code(), Some(400));
    assert!(ue.is_registered());
}

#[test]
fn the_subscription_is_refreshed_before_it_expires() {
    let (mut ue, t, set, sub, flow) = subscribing(cfg_on());
    // granted 600 s: refreshed at half (TS 24.229 §5.1.1.3)
    deliver(&mut ue, &sub_ok(&sub, &set, 600), flow, t);
    let _ = events(&mut ue);
    ue.handle_timeout(t + Duration::from_secs(299));
    assert!(ue.poll_transmit().is_none());
    let t2 = t + Duration::from_secs(300);
    ue.handle_timeout(t2);
    let (refresh, rflow) = one_transmit(&mut ue);
    assert_eq!(refresh.method(), Some(&Method::Subscribe));
    assert_eq!(refresh.to_header().unwrap().tag(), Some("scscf-tag"));
    assert_eq!(refresh.call_id().unwrap(), sub.call_id().unwrap());
    assert_eq!(refresh.cseq().unwrap().seq, 2);
    assert_eq!(refresh.expires().unwrap(), Some(600_000));
    assert_eq!(refresh.header("Event"), Some("reg"));
    // in-dialog: to the notifier's Contact along the Record-Route, reversed (RFC 3261
    // §12.1.2)
    assert_eq!(refresh.uri_str(), Some("sip:127.0.0.1:6060"));
    let route: Vec<&str> = refresh.header_values("Route").collect();
    assert_eq!(route, [SCSCF_RR, pcscf_rr(&set).as_str()]);
    assert_eq!(rflow, flow);
    deliver(&mut ue, &sub_ok(&refresh, &set, 600), rflow, t2);
    assert!(events(&mut ue).iter().any(|e| e.kind
        == EventKind::RegEventSubscribed {
            expires: 600,
            refresh: true
        }));
    ue.handle_timeout(t2 + Duration::from_secs(299));
    assert!(ue.poll_transmit().is_none());
    ue.handle_timeout(t2 + Duration::from_secs(300));
    assert_eq!(one_transmit(&mut ue).0.cseq().unwrap().seq, 3);
}

#[test]
fn deregistration_unsubscribes_first() {
    let (mut ue, t, set, sub) = subscribed(cfg_on());
    let t2 = t + Duration::from_secs(1);
    ue.deregister(t2);
    let sent: Vec<(Message, Flow)> = std::iter::from_fn(|| ue.poll_transmit())
        .map(|tr| (Message::parse(&tr.payload).unwrap(), tr.flow))
        .collect();
    assert_eq!(sent.len(), 2);
    let (unsub, uflow) = &sent[0];
    assert_eq!(unsub.method(), Some(&Method::Subscribe));
    assert_eq!(unsub.expires().unwrap(), Some(0));
    assert_eq!(unsub.to_header().unwrap().tag(), Some("scscf-tag"));
    let (dereg, dflow) = &sent[1];
    assert_eq!(dereg.method(), Some(&Method::Register));
    assert_eq!(dereg.expires().unwrap(), Some(0));
    assert!(!ue.is_subscribed());
    // the notifier confirms and sends its final NOTIFY, which is still answered 200
    deliver(&mut ue, &sub_ok(unsub, &set, 0), *uflow, t2);
    assert!(events(&mut ue)
        .iter()
        .any(|e| e.kind == EventKind::RegEventEnded(SubscriptionEnd::Unsubscribed)));
    let last = notify(
        &sub,
        &set,
        2,
        "terminated;reason=noresource",
        &reginfo(1, "active", "registered", &set),
    );
    assert_eq!(deliver_notify(&mut ue, &last, &set, t2).code(), Some(200));
    // the final NOTIFY is not mistaken for a network deregistration
    assert!(ue.is_registered());
    let ok = ResponseBuilder::new(dereg, 200)
        .to_tag("pcscf-tag")
        .build()
        .unwrap();
    deliver(&mut ue, &ok, *dflow, t2);
    assert!(!ue.is_registered());
    assert!(events(&mut ue)
        .iter()
        .any(|e| matches!(e.kind, EventKind::Deregistered { .. })));
    // nothing more is sent, and the lingering subscription is forgotten
    ue.handle_timeout(t2 + Duration::from_secs(60));
    assert!(ue.poll_transmit().is_none());
    assert_eq!(ue.poll_timeout(), None);
}

#[test]
fn off_means_no_subscribe_and_a_stranger_notify_is_refused() {
    let (mut ue, _net, t, set) = registered();
    assert!(ue.poll_transmit().is_none(), "reg_event = false");
    assert!(!ue.is_subscribed());
    // a NOTIFY for a subscription we do not have (built from a SUBSCRIBE nobody sent)
    let fake = Message::parse(
        format!(
            "SUBSCRIBE {IMPU} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:6100;branch=z9hG4bKx\r\nFrom: <{IMPU}>;tag=nottag\r\nTo: <{IMPU}>\r\nCall-ID: nobody\r\nCSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let n = notify(
        &fake,
        &set,
        1,
        "active",
        &reginfo(0, "terminated", "deactivated", &set),
    );
    let answer = deliver_notify(&mut ue, &n, &set, t);
    assert_ne!(answer.code(), Some(200));
    assert!(ue.is_registered());
}

/// Mutated NOTIFYs (a real one with bytes overwritten) never panic the core, and only one
/// whose document still says our contact is deactivated or rejected can deregister us.
#[test]
fn mutated_notifies_do_not_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e9);
    for _ in 0..150 {
        let (mut ue, t, set, sub) = subscribed(cfg_on());
        let n = notify(
            &sub,
            &set,
            2,
            "active;expires=600000",
            &reginfo(1, "active", "refreshed", &set),
        );
        let mut bytes = n.to_bytes();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random();
        }
        ue.handle_datagram(notify_flow(&set), &bytes, t);
        while ue.poll_transmit().is_some() {}
        let ev = events(&mut ue);
        assert!(
            !ev.iter()
                .any(|e| matches!(e.kind, EventKind::DeregisteredByNetwork { .. })),
            "an active contact never deregisters"
        );
    }
}

/// A re-registration running when the network deregisters the UE ends with a typed failure
/// (a shell waiting for it is answered), and its late answer changes nothing.
#[test]
fn network_deregistration_during_a_reregistration_fails_it() {
    let (mut ue, t, set, sub) = subscribed(cfg_on());
    ue.reregister(t);
    let (rereg, rflow) = one_transmit(&mut ue);
    assert_eq!(rereg.method(), Some(&Method::Register));
    let n = notify(
        &sub,
        &set,
        2,
        "terminated;reason=noresource",
        &reginfo(1, "terminated", "rejected", &set),
    );
    assert_eq!(deliver_notify(&mut ue, &n, &set, t).code(), Some(200));
    let ev = events(&mut ue);
    assert!(ev.iter().any(|e| e.kind
        == EventKind::Failed {
            procedure: ue::Procedure::Reregistration,
            error: ue::RegError::NetworkDeregistered,
        }));
    assert_eq!(ue.state(), RegState::Idle);
    // the registrar's late 200 to the re-REGISTER is not a registration
    let late = ResponseBuilder::new(&rereg, 200)
        .to_tag("pcscf-tag")
        .header("Contact", rereg.header("Contact").unwrap())
        .build()
        .unwrap();
    deliver(&mut ue, &late, rflow, t);
    assert!(!ue.is_registered());
    assert!(!events(&mut ue)
        .iter()
        .any(|e| matches!(e.kind, EventKind::Registered(_))));
}

/// Our contact deactivated only under another AoR (not the IMPU we registered) does not
/// deregister us when our IMPU's registration still lists it active.
#[test]
fn our_impu_decides_over_other_aors() {
    let (mut ue, t, set, sub) = subscribed(cfg_on());
    let body = reginfo(1, "active", "refreshed", &set).replace(
        "</reginfo>",
        &format!(
            "<registration aor=\"tel:+4930123456\" id=\"r1\" state=\"terminated\">\
<contact id=\"c1\" state=\"terminated\" event=\"deactivated\"><uri>sip:001010000000001@127.0.0.2:{}</uri></contact>\
</registration></reginfo>",
            set.port_us
        ),
    );
    let n = notify(&sub, &set, 2, "active;expires=599000", &body);
    assert_eq!(deliver_notify(&mut ue, &n, &set, t).code(), Some(200));
    assert!(ue.is_registered());
    assert!(actions(&mut ue).is_empty());
}

/// RFC 6665 §4.1.3: a subscription the notifier ended with `timeout` (or `deactivated`)
/// is set up again at once while the registration stands, a bounded number of times in a
/// row; `noresource` is not retried.
#[test]
fn the_notifier_ending_the_subscription_is_retried_only_when_it_invites_it() {
    let (mut ue, t, set, sub) = subscribed(cfg_on());
    let n = notify(
        &sub,
        &set,
        2,
        "terminated;reason=noresource",
        &reginfo(1, "active", "registered", &set),
    );
    assert_eq!(deliver_notify(&mut ue, &n, &set, t).code(), Some(200));
    assert!(ue.poll_transmit().is_none());
    assert!(!ue.is_subscribed());
    assert!(ue.is_registered());

    let (mut ue, t, set, mut sub) = subscribed(cfg_on());
    for round in 0..4 {
        let n = notify(
            &sub,
            &set,
            2,
            "terminated;reason=timeout",
            &reginfo(1, "active", "registered", &set),
        );
        ue.handle_datagram(notify_flow(&set), &n.to_bytes(), t);
        let sent: Vec<Message> = std::iter::from_fn(|| ue.poll_transmit())
            .map(|tr| Message::parse(&tr.payload).unwrap())
            .collect();
        assert_eq!(sent[0].code(), Some(200));
        if round < 3 {
            assert_eq!(sent.len(), 2, "round {round}");
            let again = &sent[1];
            assert_eq!(again.method(), Some(&Method::Subscribe));
            assert!(again.to_header().unwrap().tag().is_none());
            assert_ne!(again.call_id().unwrap(), sub.call_id().unwrap());
            sub = again.clone();
        } else {
            assert_eq!(sent.len(), 1, "gives up after three in a row");
            assert!(!ue.is_subscribed());
        }
    }
}
