//! A stateful proxy built from the sans-IO pieces: UE → proxy → registrar and
//! back, with retransmissions over UDP absorbed by the right transactions, all
//! driven by hand (no sockets, no clock).

use std::time::{Duration, Instant};

use sip::transaction::{Config, RequestOutcome, ResponseOutcome, Transactions, TxId};
use sip::{
    Flow, Message, Method, NameAddr, Protocol, RequestBuilder, ResponseBuilder, Transmit, Uri, Via,
};

const UE: &str = "10.0.0.2:5060";
const PROXY: &str = "10.0.0.1:5060";
const REGISTRAR: &str = "10.0.0.3:5060";

fn udp(local: &str, remote: &str) -> Flow {
    Flow::new(
        local.parse().unwrap(),
        remote.parse().unwrap(),
        Protocol::Udp,
    )
}

fn one(t: &mut Transactions) -> Transmit {
    let x = t.poll_transmit().expect("a transmit");
    assert!(t.poll_transmit().is_none(), "exactly one transmit");
    x
}

#[test]
fn register_through_a_stateful_proxy() {
    let t0 = Instant::now();
    let mut ue = Transactions::new(Config::default());
    let mut proxy = Transactions::new(Config::default());
    let mut reg = Transactions::new(Config::default());

    // UE sends REGISTER
    let mut from = NameAddr::new(Uri::parse("sip:alice@ims.test").unwrap());
    from.params.set("tag", Some("ue1"));
    let request = RequestBuilder::new(Method::Register, "sip:ims.test")
        .via(&Via::new("UDP", "10.0.0.2", Some(5060), "z9hG4bKue1"))
        .max_forwards(70)
        .from(&from)
        .to(&NameAddr::new(Uri::parse("sip:alice@ims.test").unwrap()))
        .call_id("reg-1")
        .cseq(1)
        .header("Contact", "<sip:alice@10.0.0.2:5060>;expires=600")
        .build();
    let ue_tx = ue.send_request(request, udp(UE, PROXY), t0).unwrap();
    let wire = one(&mut ue);

    // proxy: server transaction, then forward through a client transaction
    let msg = Message::parse(&wire.payload).unwrap();
    let RequestOutcome::New { id: srv, request } =
        proxy.handle_request(msg, udp(PROXY, UE), t0).unwrap()
    else {
        panic!("new server transaction")
    };
    let mut fwd = request.clone();
    fwd.stamp_received(UE.parse().unwrap()).unwrap();
    assert_eq!(fwd.decrement_max_forwards().unwrap(), Some(69));
    fwd.prepend_header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKpx1");
    fwd.prepend_header("Path", "<sip:term@10.0.0.1;lr>");
    let cli: TxId = proxy.send_request(fwd, udp(PROXY, REGISTRAR), t0).unwrap();
    let fwd_wire = one(&mut proxy);

    // the UE retransmits (timer E): the proxy absorbs it, nothing is forwarded twice
    ue.handle_timeout(t0 + Duration::from_millis(500));
    let again = Message::parse(&one(&mut ue).payload).unwrap();
    assert!(matches!(
        proxy.handle_request(again, udp(PROXY, UE), t0).unwrap(),
        RequestOutcome::Retransmission(x) if x == srv
    ));
    assert!(proxy.poll_transmit().is_none());

    // registrar answers 200 with Service-Route, echoing Path
    let at_reg = Message::parse(&fwd_wire.payload).unwrap();
    assert_eq!(at_reg.vias().unwrap().len(), 2);
    let RequestOutcome::New {
        id: rid,
        request: rreq,
    } = reg
        .handle_request(at_reg, udp(REGISTRAR, PROXY), t0)
        .unwrap()
    else {
        panic!()
    };
    let ok = ResponseBuilder::new(&rreq, 200)
        .to_tag("reg")
        .header("Path", rreq.header("Path").unwrap())
        .header("Service-Route", "<sip:orig@10.0.0.3;lr>")
        .build()
        .unwrap();
    reg.respond(rid, ok, t0).unwrap();
    let ok_wire = one(&mut reg);

    // proxy: match to its client transaction, pop its Via, answer on the server transaction
    let ResponseOutcome::Deliver { id, mut response } = proxy
        .handle_response(Message::parse(&ok_wire.payload).unwrap(), t0)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(id, cli);
    assert!(response
        .pop_header_value("Via")
        .unwrap()
        .contains("z9hG4bKpx1"));
    proxy.respond(srv, response, t0).unwrap();
    let back = one(&mut proxy);
    assert_eq!(back.flow, udp(PROXY, UE));

    // the registrar's retransmitted 200 is absorbed by the proxy's client transaction
    let ResponseOutcome::Absorbed(x) = proxy
        .handle_response(Message::parse(&ok_wire.payload).unwrap(), t0)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(x, cli);

    // the UE gets exactly its own transaction's response
    let ResponseOutcome::Deliver { id, response } = ue
        .handle_response(Message::parse(&back.payload).unwrap(), t0)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(id, ue_tx);
    assert_eq!(response.code(), Some(200));
    assert_eq!(response.vias().unwrap().len(), 1);
    assert_eq!(response.service_route().unwrap()[0].uri.host, "10.0.0.3");
    let v = response.top_via().unwrap();
    assert_eq!(
        v.received(),
        None,
        "sent-by equalled the source: no received added"
    );

    // a UE retransmission after the final response gets the stored 200 again
    let late = ue.client_request(ue_tx).unwrap().clone();
    proxy.handle_request(late, udp(PROXY, UE), t0).unwrap();
    assert_eq!(
        Message::parse(&one(&mut proxy).payload).unwrap().code(),
        Some(200)
    );

    // everything winds down once the timers run out
    let end = t0 + Duration::from_secs(64);
    for t in [&mut ue, &mut proxy, &mut reg] {
        t.handle_timeout(end);
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None);
    }
}
