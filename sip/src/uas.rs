//! How a core that answers requests itself (the P-CSCF, the S-CSCF's registrar) sends its
//! answers, in one place so that every core answers the same way: a response goes out
//! through the request's server transaction (RFC 3261 §17.2), a request that cannot even be
//! answered is reported rather than left hanging, and methods the core does not implement
//! get 501 with `Allow` (RFC 3261 §8.2.1, §21.5.2), OPTIONS 200 with `Allow` (§11.2).
//! What every core drops alike is one type, [`Dropped`], inside each core's own reasons.

use crate::transaction::{Transactions, TxError, TxId};
use crate::{Flow, Framing, Ids, Limits, Message, Method, ParseError, Protocol, ResponseBuilder};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Instant;

/// Why a core dropped SIP input without an answer, for the reasons every core shares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Not SIP.
    #[error("unparsable SIP: {0}")]
    Unparsable(ParseError),
    /// A request without what transactions need (RFC 3261 §17.2.3).
    #[error("request without what transactions need: {0}")]
    NoTransaction(TxError),
    /// A response could not be built for the request: it cannot be answered.
    #[error("cannot build a response: {0}")]
    NoResponse(ParseError),
}

/// Parses what arrived on `flow`: a UDP datagram is one message, a stream carries
/// framed ones (RFC 3261 §18.3).
pub fn parse(flow: &Flow, data: Bytes, limits: &Limits) -> Result<Message, Dropped> {
    let framing = match flow.protocol {
        Protocol::Udp => Framing::Datagram,
        _ => Framing::Stream,
    };
    Message::parse_bytes(data, limits, framing).map_err(Dropped::Unparsable)
}

/// A response could not be built for a request (e.g. its To URI cannot be echoed): the
/// caller reports the request as dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswerable {
    /// Where the request came from (`0.0.0.0:0` if its transaction is gone).
    pub remote: SocketAddr,
    /// [`Dropped::NoResponse`] with why the response could not be built.
    pub reason: Dropped,
}

/// Sends `response` (as a [`ResponseBuilder`] built it) through server transaction `id`.
/// A transaction that is gone already (its timer ended it) needs nothing sent: that is
/// not an error.
pub fn respond(
    tx: &mut Transactions,
    id: TxId,
    response: Result<Message, ParseError>,
    now: Instant,
) -> Result<(), Unanswerable> {
    match response {
        Ok(r) => {
            let _ = tx.respond(id, r, now);
            Ok(())
        }
        Err(error) => {
            let remote = tx
                .flow(id)
                .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |f| f.remote);
            // Nothing can ever answer it: the transaction ends now instead of holding
            // its memory until the TU guard (hardening issue, item 1).
            tx.abandon(id);
            Err(Unanswerable {
                remote,
                reason: Dropped::NoResponse(error),
            })
        }
    }
}

/// A response of `code` to `req` with nothing but a fresh To-tag (RFC 3261 §8.2.6.2).
pub fn simple(req: &Message, code: u16, ids: &mut Ids) -> Result<Message, ParseError> {
    ResponseBuilder::new(req, code).to_tag(&ids.tag()).build()
}

/// The answer of a core that implements only the methods in `allow` to a request it does
/// not handle itself: 200 with `Allow` to OPTIONS (RFC 3261 §11.2), nothing to an ACK
/// (it answers nothing, §17.1.1.3), 501 with `Allow` to anything else (§21.5.2), so a
/// peer hears plainly what is not there yet.
pub fn unhandled(req: &Message, allow: &str, ids: &mut Ids) -> Option<Result<Message, ParseError>> {
    let code = match req.method() {
        Some(Method::Ack) => return None,
        Some(Method::Options) => 200,
        _ => 501,
    };
    Some(
        ResponseBuilder::new(req, code)
            .to_tag(&ids.tag())
            .header("Allow", allow)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::{Config, RequestOutcome};
    use crate::{Flow, Protocol};

    fn request(method: &str, to: &str) -> Message {
        let raw = format!(
            "{method} sip:ims.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK{method}1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@ims.test>;tag=1\r\nTo: {to}\r\n\
             Call-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn framing_follows_the_transport() {
        let no_length = b"OPTIONS sip:ims.test SIP/2.0\r\n\
            Via: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bKo1\r\n\
            Max-Forwards: 70\r\nFrom: <sip:a@ims.test>;tag=1\r\nTo: <sip:a@ims.test>\r\n\
            Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let local = SocketAddr::from(([127, 0, 0, 1], 5060));
        let remote = SocketAddr::from(([127, 0, 0, 2], 5060));
        let limits = Limits::default();
        // Without Content-Length a datagram's body is the rest of it; a stream message
        // cannot be framed (RFC 3261 §18.3).
        let udp = Flow::new(local, remote, Protocol::Udp);
        assert!(parse(&udp, Bytes::from_static(no_length), &limits).is_ok());
        let tcp = Flow::new(local, remote, Protocol::Tcp);
        assert!(matches!(
            parse(&tcp, Bytes::from_static(no_length), &limits),
            Err(Dropped::Unparsable(_))
        ));
    }

    #[test]
    fn unhandled_methods() {
        let mut ids = Ids::seeded(1);
        let ok = unhandled(
            &request("OPTIONS", "<sip:a@ims.test>"),
            "REGISTER",
            &mut ids,
        );
        let ok = ok.unwrap().unwrap();
        assert_eq!(ok.code(), Some(200));
        assert_eq!(ok.header("Allow"), Some("REGISTER"));
        let no = unhandled(&request("INVITE", "<sip:a@ims.test>"), "REGISTER", &mut ids);
        assert_eq!(no.unwrap().unwrap().code(), Some(501));
        assert!(unhandled(&request("ACK", "<sip:a@ims.test>"), "REGISTER", &mut ids).is_none());
    }

    #[test]
    fn a_response_that_cannot_be_built_names_the_sender() {
        let mut tx = Transactions::new(Config::default());
        let now = Instant::now();
        let ue = SocketAddr::from(([127, 0, 0, 2], 5060));
        let flow = Flow::new(SocketAddr::from(([127, 0, 0, 1], 5060)), ue, Protocol::Udp);
        let req = request("REGISTER", "<sip:a@ims.test>");
        let Ok(RequestOutcome::New { id, request }) = tx.handle_request(req, flow, now) else {
            panic!("a new transaction");
        };
        let bad = ParseError::Uri("test");
        assert_eq!(
            respond(&mut tx, id, Err(bad.clone()), now),
            Err(Unanswerable {
                remote: ue,
                reason: Dropped::NoResponse(bad)
            })
        );
        // Nothing could answer it, so its transaction is gone (it would otherwise wait in
        // Trying until the TU guard); a late answer finds nothing to send through.
        assert!(tx.state(id).is_none());
        let mut ids = Ids::seeded(2);
        assert_eq!(
            respond(&mut tx, id, simple(&request, 200, &mut ids), now),
            Ok(())
        );
        assert!(tx.poll_transmit().is_none());
    }
}
