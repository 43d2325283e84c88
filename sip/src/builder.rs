//! Builders for requests and responses, and identifier generation.

use std::fmt::Display;

use bytes::Bytes;
use rand::Rng;

use crate::error::{ParseError, Result};
use crate::headers::{NameAddr, Via, BRANCH_MAGIC};
use crate::message::{Message, StartLine};
use crate::method::Method;

fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

/// Where a core's identifiers (tags, branches, Call-IDs) come from: OS entropy in
/// production, a seed in tests, so that a core fed the same inputs writes the same bytes.
/// RFC 3261 only asks them to be unique and hard to guess (§8.1.1.7, §19.3); a seeded
/// source is for tests only.
#[derive(Debug, Clone)]
pub struct Ids {
    rng: rand::rngs::StdRng,
}

impl Ids {
    /// Identifiers from OS entropy.
    pub fn from_entropy() -> Ids {
        use rand::SeedableRng;
        Ids {
            rng: rand::rngs::StdRng::from_os_rng(),
        }
    }

    /// Reproducible identifiers (tests).
    pub fn seeded(seed: u64) -> Ids {
        use rand::SeedableRng;
        Ids {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.rng.random_range(0..16u32), 16).unwrap_or('0'))
            .collect()
    }

    /// A branch, like [`new_branch`].
    pub fn branch(&mut self) -> String {
        format!("{BRANCH_MAGIC}{}", self.hex(16))
    }

    /// A tag, like [`new_tag`].
    pub fn tag(&mut self) -> String {
        self.hex(16)
    }

    /// A Call-ID, like [`new_call_id`].
    pub fn call_id(&mut self, host: Option<&str>) -> String {
        match host {
            Some(h) => format!("{}@{h}", self.hex(24)),
            None => self.hex(24),
        }
    }
}

impl Default for Ids {
    fn default() -> Self {
        Ids::from_entropy()
    }
}

/// A fresh RFC 3261 branch (`z9hG4bK` + 64 random bits, §8.1.1.7).
pub fn new_branch() -> String {
    format!("{BRANCH_MAGIC}{}", random_hex(16))
}

/// A fresh From/To tag (32 random bits suffice per §19.3; we use 64).
pub fn new_tag() -> String {
    random_hex(16)
}

/// A fresh Call-ID, optionally `@host` (§8.1.1.4).
pub fn new_call_id(host: Option<&str>) -> String {
    match host {
        Some(h) => format!("{}@{h}", random_hex(24)),
        None => random_hex(24),
    }
}

/// The default reason phrase of a status code (RFC 3261 §21 and common extensions).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => match code / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Builds a request header by header, in the order of the calls.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    body: Bytes,
}

impl RequestBuilder {
    /// Starts `METHOD uri SIP/2.0`.
    pub fn new(method: Method, uri: impl Display) -> Self {
        RequestBuilder {
            method,
            uri: uri.to_string(),
            headers: Vec::new(),
            content_type: None,
            body: Bytes::new(),
        }
    }

    /// Adds any header.
    pub fn header(mut self, name: &str, value: impl Display) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a Via.
    pub fn via(self, via: &Via) -> Self {
        self.header("Via", via)
    }

    /// Adds Max-Forwards.
    pub fn max_forwards(self, n: u8) -> Self {
        self.header("Max-Forwards", n)
    }

    /// Adds From.
    pub fn from(self, from: &NameAddr) -> Self {
        self.header("From", from)
    }

    /// Adds To.
    pub fn to(self, to: &NameAddr) -> Self {
        self.header("To", to)
    }

    /// Adds Call-ID.
    pub fn call_id(self, id: &str) -> Self {
        self.header("Call-ID", id)
    }

    /// Adds CSeq with the request's method.
    pub fn cseq(self, seq: u32) -> Self {
        let m = self.method.clone();
        self.header("CSeq", format_args!("{seq} {m}"))
    }

    /// Adds Contact.
    pub fn contact(self, c: &NameAddr) -> Self {
        self.header("Contact", c)
    }

    /// Sets the body; Content-Type and Content-Length are written by `build`.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.content_type = Some(content_type.to_string());
        self.body = body.into();
        self
    }

    /// Finishes the request (Content-Length is always written, as streams need it).
    pub fn build(self) -> Message {
        let mut m = Message::new(StartLine::Request {
            method: self.method,
            uri: self.uri,
        });
        for (n, v) in &self.headers {
            m.append_header(n, v);
        }
        if let Some(ct) = &self.content_type {
            m.append_header("Content-Type", ct);
        }
        m.append_header("Content-Length", &self.body.len().to_string());
        m.set_body_raw(self.body);
        m
    }
}

/// Builds a response to a request (RFC 3261 §8.2.6.2): Via (all, in order), From,
/// To (+ tag), Call-ID and CSeq are copied; Record-Route is copied for
/// dialog-creating responses (§12.1.1).
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'a> {
    req: &'a Message,
    code: u16,
    reason: Option<String>,
    to_tag: Option<String>,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    body: Bytes,
}

impl<'a> ResponseBuilder<'a> {
    /// Starts a response with `code` to `req`.
    pub fn new(req: &'a Message, code: u16) -> Self {
        ResponseBuilder {
            req,
            code,
            reason: None,
            to_tag: None,
            headers: Vec::new(),
            content_type: None,
            body: Bytes::new(),
        }
    }

    /// Overrides the reason phrase.
    pub fn reason(mut self, r: &str) -> Self {
        self.reason = Some(r.to_string());
        self
    }

    /// Tag to add to To when the request's To has none (ignored for 100, §8.2.6.2).
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(tag.to_string());
        self
    }

    /// Adds any header after the copied ones.
    pub fn header(mut self, name: &str, value: impl Display) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a body.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.content_type = Some(content_type.to_string());
        self.body = body.into();
        self
    }

    /// Builds the response. Fails if the request lacks To (the only header we
    /// must parse, to add a tag).
    pub fn build(self) -> Result<Message> {
        let req = self.req;
        if !req.is_request() {
            return Err(ParseError::StartLine("not a request"));
        }
        let mut m = Message::new(StartLine::Response {
            code: self.code,
            reason: self
                .reason
                .unwrap_or_else(|| reason_phrase(self.code).to_string()),
        });
        for v in req.headers_named("Via") {
            m.append_header("Via", v);
        }
        if let Some(v) = req.header("From") {
            m.append_header("From", v);
        }
        let to = req.header("To").ok_or(ParseError::MissingHeader("To"))?;
        match &self.to_tag {
            Some(tag) if self.code > 100 => {
                let na = NameAddr::parse(to)?;
                if na.tag().is_none() {
                    m.append_header("To", &format!("{to};tag={tag}"));
                } else {
                    m.append_header("To", to);
                }
            }
            _ => m.append_header("To", to),
        }
        if let Some(v) = req.header("Call-ID") {
            m.append_header("Call-ID", v);
        }
        if let Some(v) = req.header("CSeq") {
            m.append_header("CSeq", v);
        }
        let dialog_creating = matches!(
            req.method(),
            Some(Method::Invite) | Some(Method::Subscribe) | Some(Method::Refer)
        );
        if dialog_creating && (101..300).contains(&self.code) {
            for v in req.headers_named("Record-Route") {
                m.append_header("Record-Route", v);
            }
        }
        for (n, v) in &self.headers {
            m.append_header(n, v);
        }
        if let Some(ct) = &self.content_type {
            m.append_header("Content-Type", ct);
        }
        m.append_header("Content-Length", &self.body.len().to_string());
        m.set_body_raw(self.body);
        Ok(m)
    }
}

/// The ACK a client transaction sends for a non-2xx final response
/// (RFC 3261 §17.1.1.3): Request-URI, Call-ID, From, CSeq number and Route of the
/// INVITE, To of the response, the INVITE's top Via only.
pub fn ack_for_non2xx(invite: &Message, response: &Message) -> Result<Message> {
    let uri = invite
        .uri_str()
        .ok_or(ParseError::StartLine("not a request"))?;
    let via = invite
        .header_values("Via")
        .next()
        .ok_or(ParseError::MissingHeader("Via"))?;
    let cseq = invite.cseq()?;
    let mut b = RequestBuilder::new(Method::Ack, uri).header("Via", via);
    if let Some(mf) = invite.header("Max-Forwards") {
        b = b.header("Max-Forwards", mf);
    }
    b = b
        .header(
            "From",
            invite
                .header("From")
                .ok_or(ParseError::MissingHeader("From"))?,
        )
        .header(
            "To",
            response
                .header("To")
                .ok_or(ParseError::MissingHeader("To"))?,
        )
        .header("Call-ID", invite.call_id()?)
        .header("CSeq", format_args!("{} ACK", cseq.seq));
    for r in invite.headers_named("Route") {
        b = b.header("Route", r);
    }
    Ok(b.build())
}

/// A CANCEL for a pending request (RFC 3261 §9.1): same Request-URI, Call-ID,
/// From, To, CSeq number, Route and top Via (same branch).
pub fn cancel_for(request: &Message) -> Result<Message> {
    let uri = request
        .uri_str()
        .ok_or(ParseError::StartLine("not a request"))?;
    let via = request
        .header_values("Via")
        .next()
        .ok_or(ParseError::MissingHeader("Via"))?;
    let cseq = request.cseq()?;
    let mut b = RequestBuilder::new(Method::Cancel, uri)
        .header("Via", via)
        .max_forwards(70)
        .header(
            "From",
            request
                .header("From")
                .ok_or(ParseError::MissingHeader("From"))?,
        )
        .header(
            "To",
            request
                .header("To")
                .ok_or(ParseError::MissingHeader("To"))?,
        )
        .header("Call-ID", request.call_id()?)
        .header("CSeq", format_args!("{} CANCEL", cseq.seq));
    for r in request.headers_named("Route") {
        b = b.header("Route", r);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Uri;

    fn req() -> Message {
        let a = NameAddr::new(Uri::parse("sip:alice@ims.test").unwrap());
        let mut from = a.clone();
        from.params.set("tag", Some("f1"));
        RequestBuilder::new(Method::Invite, "sip:bob@ims.test")
            .via(&Via::new("UDP", "10.0.0.1", Some(5060), "z9hG4bK1"))
            .via(&Via::new("UDP", "10.0.0.2", None, "z9hG4bK2"))
            .max_forwards(70)
            .from(&from)
            .to(&NameAddr::new(Uri::parse("sip:bob@ims.test").unwrap()))
            .call_id("c1")
            .cseq(7)
            .header("Record-Route", "<sip:p.ims.test;lr>")
            .header("Route", "<sip:p.ims.test;lr>")
            .body("application/sdp", &b"v=0\r\n"[..])
            .build()
    }

    #[test]
    fn request_and_response() {
        let r = req();
        r.validate().unwrap();
        let bytes = r.to_bytes();
        let p = Message::parse(&bytes).unwrap();
        assert_eq!(p.to_bytes(), bytes);
        assert_eq!(&p.body()[..], b"v=0\r\n");
        assert_eq!(p.header("Content-Length"), Some("5"));

        let resp = ResponseBuilder::new(&p, 180).to_tag("tt").build().unwrap();
        assert_eq!(resp.reason(), Some("Ringing"));
        assert_eq!(resp.vias().unwrap().len(), 2);
        assert_eq!(resp.to_header().unwrap().tag(), Some("tt"));
        assert_eq!(resp.header("Record-Route"), Some("<sip:p.ims.test;lr>"));
        assert_eq!(resp.cseq().unwrap().seq, 7);
        resp.validate().unwrap();
        let trying = ResponseBuilder::new(&p, 100).to_tag("tt").build().unwrap();
        assert_eq!(trying.to_header().unwrap().tag(), None);
        assert!(!trying.has_header("Record-Route"));
        assert!(ResponseBuilder::new(&resp, 200).build().is_err());
    }

    #[test]
    fn ack_and_cancel() {
        let r = req();
        let resp = ResponseBuilder::new(&r, 486).to_tag("tt").build().unwrap();
        let ack = ack_for_non2xx(&r, &resp).unwrap();
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.vias().unwrap().len(), 1);
        assert_eq!(ack.branch().unwrap(), "z9hG4bK1");
        assert_eq!(ack.to_header().unwrap().tag(), Some("tt"));
        assert_eq!(ack.cseq().unwrap().to_string(), "7 ACK");
        assert_eq!(ack.header("Route"), Some("<sip:p.ims.test;lr>"));
        let c = cancel_for(&r).unwrap();
        assert_eq!(c.branch().unwrap(), "z9hG4bK1");
        assert_eq!(c.cseq().unwrap().method, Method::Cancel);
        c.validate().unwrap();
    }

    #[test]
    fn ids() {
        assert!(new_branch().starts_with(BRANCH_MAGIC));
        assert_ne!(new_branch(), new_branch());
        assert_eq!(new_tag().len(), 16);
        assert!(new_call_id(Some("h")).ends_with("@h"));
    }
}
