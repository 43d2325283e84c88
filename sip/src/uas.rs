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

/// The answer to a datagram request that did not parse, when one can be built from its
/// raw bytes (hardening issue, item 4): RFC 3261 §8.2 wants a malformed request answered,
/// not ignored, so the sender learns why instead of retransmitting into silence.
///
/// The request line must be a request's (`METHOD URI SIP/x`), the method not ACK (never
/// answered, §17.1.1.3), and Via, From, To, Call-ID and CSeq each present on one clean line
/// (full or compact names, §7.3.3): they are copied into the response as §8.2.6.2 says,
/// with a To tag derived from the request so a retransmission gets the same answer
/// (stateless, like §16.11). The code follows the error: 505 for another SIP version
/// (§8.2.2, §21.5.9), 513 for a message over the size limit (§18.1.1, §21.5.11), 400
/// otherwise, with the reason in a `Warning: 399` (§20.43) — parse errors only, nothing
/// about our subscribers. Streams are not answered here: their framing may be lost, and
/// the connection is closed instead. Nothing is answered to a keep-alive or a response.
pub fn reject_unparsable(
    data: &[u8],
    error: &ParseError,
    protocol: Protocol,
) -> Option<UnparsableAnswer> {
    if protocol != Protocol::Udp || matches!(error, ParseError::Empty) {
        return None;
    }
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = &data[..head_end.min(MAX_SALVAGE)];
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = std::str::from_utf8(lines.next()?).ok()?;
    let mut parts = start.split(' ');
    let method = parts.next()?;
    let _uri = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_alphabetic())
        || method == "ACK"
        || !version.starts_with("SIP/")
    {
        return None;
    }
    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in lines {
        // A folded or non-text line belongs to a header we cannot copy faithfully.
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if line.starts_with([' ', '\t']) || line.chars().any(|c| c.is_control() && c != '\t') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => vias.push(value),
            "from" | "f" => from = from.or(Some(value)),
            "to" | "t" => to = to.or(Some(value)),
            "call-id" | "i" => call_id = call_id.or(Some(value)),
            "cseq" => cseq = cseq.or(Some(value)),
            _ => {}
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if vias.is_empty() || !cseq.ends_with(method) {
        return None;
    }
    let (code, reason) = match error {
        ParseError::Version => (505, "Version Not Supported"),
        ParseError::TooLarge { .. } => (513, "Message Too Large"),
        _ => (400, "Bad Request"),
    };
    let to = if to.contains(";tag=") {
        to.to_string()
    } else {
        format!("{to};tag={:016x}", stateless_tag(call_id, vias[0], cseq))
    };
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in &vias {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    out.push_str(&format!(
        "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n\
         Warning: 399 - \"{}\"\r\nContent-Length: 0\r\n\r\n",
        error.to_string().replace(['"', '\\'], "'")
    ));
    // What was copied must make a response our own parser (and so the sender's) accepts;
    // a Via or From too broken for that leaves nothing to answer with.
    let r = Message::parse(out.as_bytes()).ok()?;
    r.validate().ok()?;
    r.vias().ok()?;
    Some(UnparsableAnswer {
        code,
        method: method.to_string(),
        response: Bytes::from(out),
    })
}

/// What [`reject_unparsable`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnparsableAnswer {
    /// 400, 505 or 513.
    pub code: u16,
    /// The method of the request line.
    pub method: String,
    /// The response, ready to send on the request's flow.
    pub response: Bytes,
}

/// How much of a datagram [`reject_unparsable`] reads for the headers it copies.
const MAX_SALVAGE: usize = 16 * 1024;

/// FNV-1a over the request's identity: the same request always gets the same To tag.
fn stateless_tag(call_id: &str, via: &str, cseq: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.bytes().chain(via.bytes()).chain(cseq.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
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

    fn reject(raw: &str) -> Option<Message> {
        let data = raw.as_bytes();
        let err = Message::parse(data).unwrap_err();
        reject_unparsable(data, &err, Protocol::Udp).map(|a| Message::parse(&a.response).unwrap())
    }

    const BAD_CSEQ: &str = "INVITE sip:b@ims.test SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKx1\r\n\
        v: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKx0\r\n\
        Max-Forwards: 70\r\nFrom: <sip:a@ims.test>;tag=1\r\nTo: <sip:b@ims.test>\r\n\
        Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: many\r\n\r\n";

    #[test]
    fn an_unparsable_request_is_answered_400_with_its_identity() {
        let r = reject(BAD_CSEQ).expect("a 400");
        assert_eq!(r.code(), Some(400));
        assert_eq!(r.headers_named("Via").count(), 2);
        assert_eq!(r.header("Call-ID"), Some("c1"));
        assert_eq!(r.header("CSeq"), Some("1 INVITE"));
        assert!(r.header("To").unwrap().contains(";tag="));
        assert!(r.header("Warning").unwrap().starts_with("399 - \""));
        // Stateless but stable: a retransmission gets the same To tag.
        assert_eq!(reject(BAD_CSEQ).unwrap().header("To"), r.header("To"));
    }

    #[test]
    fn another_version_gets_505_and_nothing_is_answered_without_an_identity() {
        let v3 = BAD_CSEQ.replace("SIP/2.0\r\n", "SIP/3.0\r\n");
        assert_eq!(reject(&v3).unwrap().code(), Some(505));
        let no_call_id = BAD_CSEQ.replace("Call-ID: c1\r\n", "");
        assert!(reject(&no_call_id).is_none());
        let ack = BAD_CSEQ.replace("INVITE", "ACK");
        assert!(reject(&ack).is_none());
        let cseq_mismatch = BAD_CSEQ.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        assert!(reject(&cseq_mismatch).is_none());
        let broken_via = BAD_CSEQ.replace("Via: SIP/2.0/UDP 127.0.0.2:5060", "Via: nonsense");
        assert!(reject(&broken_via).is_none());
        let response = "SIP/2.0 200 OK\r\nVia: x\r\nbroken\r\n\r\n";
        let err = Message::parse(response.as_bytes()).unwrap_err();
        assert!(reject_unparsable(response.as_bytes(), &err, Protocol::Udp).is_none());
        let err = Message::parse(BAD_CSEQ.as_bytes()).unwrap_err();
        assert!(reject_unparsable(BAD_CSEQ.as_bytes(), &err, Protocol::Tcp).is_none());
        assert!(reject_unparsable(b"\r\n\r\n", &ParseError::Empty, Protocol::Udp).is_none());
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
