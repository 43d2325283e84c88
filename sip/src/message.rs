//! The SIP message: a lazy, byte-preserving parse of start line + header fields + body.
//!
//! Parsing only splits the header section into fields (name/value spans into one
//! shared copy of the header text) and frames the body. Typed views (Via, CSeq,
//! name-addr, IMS headers) are parsed on demand. Editing replaces individual
//! fields; serialisation writes untouched fields byte for byte as received
//! (folding, compact names and spacing included), which is what a stateful proxy
//! needs (RFC 3261 §16.6: only the headers the proxy changes may differ).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ParseError, Result};
use crate::headers::{CSeq, Contacts, NameAddr, Via};
use crate::method::Method;
use crate::name::{expand_compact, is_token_char, names_match};
use crate::params::split_list;
use crate::uri::Uri;

/// Default maximum message size. RFC 3261 §18.1.1 makes 1300 bytes the UDP
/// congestion threshold; IMS REGISTERs with Security-* and large bodies stay far
/// below 64 KiB, which is also the UDP datagram limit.
pub const DEFAULT_MAX_MESSAGE: usize = 65_535;
/// Default maximum number of header fields.
pub const DEFAULT_MAX_HEADERS: usize = 256;

/// Limits applied while parsing or framing untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// maximum total size (start line + headers + body) in bytes
    pub max_message: usize,
    /// maximum number of header fields
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: DEFAULT_MAX_MESSAGE,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

#[derive(Debug, Clone)]
enum Text {
    Src(u32, u32),
    Own(Box<str>),
}

#[derive(Debug, Clone)]
struct Field {
    name: Text,
    value: Text,
    /// span of the whole line(s) including the line terminator, while untouched
    raw: Option<(u32, u32)>,
}

/// Request-Line or Status-Line (RFC 3261 §7.1, §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD Request-URI SIP/2.0`
    Request {
        /// method
        method: Method,
        /// Request-URI as written (parse with [`Message::request_uri`])
        uri: String,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// status code 100..=699
        code: u16,
        /// reason phrase (may be empty)
        reason: String,
    },
}

/// How the message was framed, which decides Content-Length rules (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// datagram: missing Content-Length means "rest of the datagram", extra bytes are dropped
    Datagram,
    /// stream: Content-Length is mandatory and the input must be exactly one message
    Stream,
}

/// A SIP request or response.
#[derive(Clone)]
pub struct Message {
    head: Arc<str>,
    start: StartLine,
    start_raw: Option<(u32, u32)>,
    fields: Vec<Field>,
    body: Bytes,
}

/// A borrowed header field.
#[derive(Debug, Clone, Copy)]
pub struct HeaderRef<'a> {
    /// name as written (possibly compact)
    pub name: &'a str,
    /// value with folding replaced by a single space, surrounding whitespace trimmed
    pub value: &'a str,
}

impl<'a> HeaderRef<'a> {
    /// The full (non-compact) name.
    pub fn full_name(&self) -> &'a str {
        expand_compact(self.name)
    }
}

/// Position of the first `needle` in `hay`, eight bytes at a time (SWAR): the
/// newline search dominates parsing time.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_le_bytes(w) ^ pat;
        let z = v.wrapping_sub(LO) & !v & HI;
        if z != 0 {
            return Some(base + (z.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|p| base + p)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Finds the end of the header section starting at `from`: returns
/// `(end of last header line incl. its terminator, start of body)`.
/// Accepts CRLF and, leniently, bare LF line ends.
fn find_head_end(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < b.len() {
        let nl = i + find_byte(&b[i..], b'\n')?;
        let next = nl + 1;
        if next < b.len() && b[next] == b'\n' {
            return Some((next, next + 1));
        }
        if next + 1 < b.len() && b[next] == b'\r' && b[next + 1] == b'\n' {
            return Some((next, next + 2));
        }
        i = next;
    }
    None
}

fn skip_crlf(b: &[u8]) -> usize {
    b.iter().take_while(|&&c| c == b'\r' || c == b'\n').count()
}

fn parse_content_length(v: &str) -> Result<usize> {
    let v = v.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::ContentLength("not a number"));
    }
    v.parse()
        .map_err(|_| ParseError::ContentLength("not a number"))
}

/// Result of [`stream_frame`]: what the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// this many CR/LF bytes are keep-alives (RFC 5626 §3.5.1 "CRLF ping") to discard
    KeepAlive(usize),
    /// a complete message occupies the first `len` bytes
    Message(usize),
    /// more bytes are needed
    Incomplete,
}

/// Stream framing (RFC 3261 §18.3): find the end of the headers and the
/// Content-Length, without parsing the message. Errors mean the connection is
/// unusable (size limit exceeded, missing or bad Content-Length) and should be closed.
pub fn stream_frame(buf: &[u8], limits: &Limits) -> Result<Frame> {
    StreamFramer::new().poll(buf, limits)
}

/// Incremental stream framing: the same result as [`stream_frame`], but remembers
/// how far it has looked so a peer trickling bytes cannot make framing quadratic.
///
/// Feed it the same buffer with bytes only appended, until it returns
/// [`Frame::KeepAlive`] or [`Frame::Message`]; then drop those bytes from the front
/// of the buffer and keep going (the framer resets itself).
#[derive(Debug, Clone, Default)]
pub struct StreamFramer {
    scanned: usize,
    total: Option<usize>,
}

impl StreamFramer {
    /// A framer at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at the front of `buf`.
    pub fn poll(&mut self, buf: &[u8], limits: &Limits) -> Result<Frame> {
        let r = self.poll_inner(buf, limits);
        if !matches!(r, Ok(Frame::Incomplete)) {
            *self = Self::default();
        }
        r
    }

    fn poll_inner(&mut self, buf: &[u8], limits: &Limits) -> Result<Frame> {
        if let Some(total) = self.total {
            return Ok(if buf.len() >= total {
                Frame::Message(total)
            } else {
                Frame::Incomplete
            });
        }
        let skip = skip_crlf(buf);
        if skip > 0 {
            return Ok(Frame::KeepAlive(skip));
        }
        // a terminator completed by new bytes starts at most 3 bytes before them
        let from = self.scanned.saturating_sub(3);
        let Some((head_end, body_start)) = find_head_end(buf, from) else {
            self.scanned = buf.len();
            if buf.len() > limits.max_message {
                return Err(ParseError::TooLarge {
                    size: buf.len(),
                    limit: limits.max_message,
                });
            }
            return Ok(Frame::Incomplete);
        };
        let total = body_start
            .checked_add(content_length_of_head(&buf[..head_end])?)
            .ok_or(ParseError::ContentLength("overflow"))?;
        if total > limits.max_message {
            return Err(ParseError::TooLarge {
                size: total,
                limit: limits.max_message,
            });
        }
        self.total = Some(total);
        Ok(if buf.len() >= total {
            Frame::Message(total)
        } else {
            Frame::Incomplete
        })
    }
}

fn content_length_of_head(head: &[u8]) -> Result<usize> {
    let mut cl: Option<usize> = None;
    for line in head.split(|&c| c == b'\n').skip(1) {
        if line.first().is_some_and(|&c| is_ws(c)) {
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = std::str::from_utf8(&line[..colon]).unwrap_or("").trim_end();
        if names_match(name, "Content-Length") {
            let v = std::str::from_utf8(&line[colon + 1..])
                .map_err(|_| ParseError::ContentLength("not a number"))?;
            let n = parse_content_length(v)?;
            if cl.is_some_and(|c| c != n) {
                return Err(ParseError::ContentLength("conflicting values"));
            }
            cl = Some(n);
        }
    }
    cl.ok_or(ParseError::ContentLength("missing on a stream transport"))
}

impl Message {
    /// Parses a datagram with default [`Limits`].
    pub fn parse(input: &[u8]) -> Result<Message> {
        Self::parse_with(input, &Limits::default(), Framing::Datagram)
    }

    /// Parses one message with explicit limits and framing rules.
    pub fn parse_with(input: &[u8], limits: &Limits, framing: Framing) -> Result<Message> {
        Self::parse_inner(input, None, limits, framing)
    }

    /// Like [`Message::parse_with`] but borrows the body from `input` without copying.
    pub fn parse_bytes(input: Bytes, limits: &Limits, framing: Framing) -> Result<Message> {
        Self::parse_inner(&input, Some(&input), limits, framing)
    }

    fn parse_inner(
        input: &[u8],
        owner: Option<&Bytes>,
        limits: &Limits,
        framing: Framing,
    ) -> Result<Message> {
        if input.len() > limits.max_message {
            return Err(ParseError::TooLarge {
                size: input.len(),
                limit: limits.max_message,
            });
        }
        let pos = skip_crlf(input);
        if pos == input.len() {
            return Err(ParseError::Empty);
        }
        let (head_end, body_start) = find_head_end(input, pos).ok_or(ParseError::Incomplete)?;
        let head_str =
            std::str::from_utf8(&input[pos..head_end]).map_err(|_| ParseError::NotUtf8)?;
        if u32::try_from(head_str.len()).is_err() {
            return Err(ParseError::TooLarge {
                size: head_str.len(),
                limit: u32::MAX as usize,
            });
        }
        let head: Arc<str> = Arc::from(head_str);
        let hb = head.as_bytes();

        // start line
        let sl_end = find_byte(hb, b'\n').unwrap_or(hb.len());
        let sl_raw_end = (sl_end + 1).min(hb.len());
        let sl = head[..sl_end].strip_suffix('\r').unwrap_or(&head[..sl_end]);
        let start = parse_start_line(sl)?;

        // header fields
        let mut fields: Vec<Field> = Vec::with_capacity(16);
        let mut folded: Vec<usize> = Vec::new();
        let mut i = sl_raw_end;
        while i < hb.len() {
            let nl = find_byte(&hb[i..], b'\n')
                .map(|p| i + p)
                .unwrap_or(hb.len());
            let line_end = (nl + 1).min(hb.len());
            let content_end = if nl > i && hb[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if is_ws(hb[i]) {
                // continuation line (RFC 3261 §7.3.1 folding)
                let last = fields.len().checked_sub(1).ok_or(ParseError::HeaderLine)?;
                let f = &mut fields[last];
                if let (Text::Src(vs, ve), Some((rs, _))) = (&mut f.value, f.raw) {
                    let trimmed = trim_end_pos(hb, i, content_end);
                    if trimmed > i && hb[i..trimmed].iter().any(|&c| !is_ws(c)) {
                        if *vs == *ve {
                            // value started on the continuation line
                            *vs = (i + hb[i..].iter().take_while(|&&c| is_ws(c)).count()) as u32;
                        }
                        *ve = trimmed as u32;
                        if folded.last() != Some(&last) {
                            folded.push(last);
                        }
                    }
                    f.raw = Some((rs, line_end as u32));
                }
                i = line_end;
                continue;
            }
            let colon = hb[i..content_end]
                .iter()
                .position(|&c| c == b':')
                .map(|p| i + p)
                .ok_or(ParseError::HeaderLine)?;
            let name_end = trim_end_pos(hb, i, colon);
            if name_end == i || !hb[i..name_end].iter().all(|&c| is_token_char(c)) {
                return Err(ParseError::HeaderLine);
            }
            let mut vs = colon + 1;
            while vs < content_end && is_ws(hb[vs]) {
                vs += 1;
            }
            let ve = trim_end_pos(hb, vs, content_end);
            if fields.len() >= limits.max_headers {
                return Err(ParseError::TooManyHeaders(limits.max_headers));
            }
            fields.push(Field {
                name: Text::Src(i as u32, name_end as u32),
                value: Text::Src(vs as u32, ve as u32),
                raw: Some((i as u32, line_end as u32)),
            });
            i = line_end;
        }
        for idx in folded {
            if let Text::Src(a, b) = fields[idx].value {
                let v = unfold(head.get(a as usize..b as usize).unwrap_or(""));
                fields[idx].value = Text::Own(v.into_boxed_str());
            }
        }

        let mut msg = Message {
            head,
            start,
            start_raw: Some((0, sl_raw_end as u32)),
            fields,
            body: Bytes::new(),
        };

        // body framing (RFC 3261 §18.3)
        let mut cl: Option<usize> = None;
        for v in msg.headers_named("Content-Length") {
            let n = parse_content_length(v)?;
            if cl.is_some_and(|c| c != n) {
                return Err(ParseError::ContentLength("conflicting values"));
            }
            cl = Some(n);
        }
        let available = input.len() - body_start;
        let body_len = match (cl, framing) {
            (Some(n), _) if n > available => {
                return Err(ParseError::BodyTruncated {
                    declared: n,
                    available,
                })
            }
            (Some(n), Framing::Stream) if n < available => {
                return Err(ParseError::ContentLength(
                    "bytes after the message on a stream",
                ))
            }
            (Some(n), _) => n,
            (None, Framing::Datagram) => available,
            (None, Framing::Stream) => {
                return Err(ParseError::ContentLength("missing on a stream transport"))
            }
        };
        let range = body_start..body_start + body_len;
        msg.body = match owner {
            Some(b) => b.slice(range),
            None => Bytes::copy_from_slice(&input[range]),
        };
        Ok(msg)
    }

    /// Creates a message from parts (used by the builders).
    pub fn new(start: StartLine) -> Message {
        Message {
            head: Arc::from(""),
            start,
            start_raw: None,
            fields: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn text<'a>(&'a self, t: &'a Text) -> &'a str {
        match t {
            Text::Src(a, b) => self.head.get(*a as usize..*b as usize).unwrap_or(""),
            Text::Own(s) => s,
        }
    }

    // ---- start line -------------------------------------------------------------

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method, `None` for responses.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            _ => None,
        }
    }

    /// Status code, `None` for requests.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Reason phrase, `None` for requests.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Request-URI as written, `None` for responses.
    pub fn uri_str(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            _ => None,
        }
    }

    /// Parsed Request-URI.
    pub fn request_uri(&self) -> Result<Uri> {
        Uri::parse(
            self.uri_str()
                .ok_or(ParseError::StartLine("not a request"))?,
        )
    }

    /// Rewrites the Request-URI (RFC 3261 §16.6 step 6 / loose routing §16.4).
    pub fn set_uri(&mut self, uri: &str) {
        if let StartLine::Request { uri: u, .. } = &mut self.start {
            *u = uri.to_string();
            self.start_raw = None;
        }
    }

    /// Sets the status code and reason phrase of a response.
    pub fn set_status(&mut self, code: u16, reason: &str) {
        if let StartLine::Response { code: c, reason: r } = &mut self.start {
            *c = code;
            *r = reason.to_string();
            self.start_raw = None;
        }
    }

    // ---- header access -----------------------------------------------------------

    /// All header fields in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderRef<'_>> {
        self.fields.iter().map(|f| HeaderRef {
            name: self.text(&f.name),
            value: self.text(&f.value),
        })
    }

    /// Number of header fields.
    pub fn header_count(&self) -> usize {
        self.fields.len()
    }

    /// Value of the first field named `name` (compact forms match, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| names_match(self.text(&f.name), name))
            .map(|f| self.text(&f.value))
    }

    /// True if a field named `name` exists.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Values of every field named `name`, one per header line (not split on commas).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| names_match(self.text(&f.name), name))
            .map(|f| self.text(&f.value))
    }

    /// Elements of every field named `name`, split on top-level commas
    /// (RFC 3261 §7.3.1). Only meaningful for list-valued headers.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers_named(name).flat_map(split_list)
    }

    fn field_index(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| names_match(self.text(&f.name), name))
    }

    // ---- header editing ----------------------------------------------------------

    fn owned(name: &str, value: &str) -> Field {
        Field {
            name: Text::Own(name.into()),
            value: Text::Own(value.into()),
            raw: None,
        }
    }

    /// Appends a field after all others.
    pub fn append_header(&mut self, name: &str, value: &str) {
        self.fields.push(Self::owned(name, value));
    }

    /// Inserts a field before the first field of the same name, or first of all if
    /// there is none (Via push, Record-Route/Path add: RFC 3261 §16.6 steps 4 and 8).
    pub fn prepend_header(&mut self, name: &str, value: &str) {
        let at = self.field_index(name).unwrap_or(0);
        self.fields.insert(at, Self::owned(name, value));
    }

    /// Inserts a field at an absolute position (clamped).
    pub fn insert_header_at(&mut self, index: usize, name: &str, value: &str) {
        let at = index.min(self.fields.len());
        self.fields.insert(at, Self::owned(name, value));
    }

    /// Replaces every field named `name` by one field with `value`, placed where the
    /// first one was (or appended).
    pub fn set_header(&mut self, name: &str, value: &str) {
        match self.field_index(name) {
            Some(i) => {
                self.fields[i] = Self::owned(name, value);
                let mut j = i + 1;
                while j < self.fields.len() {
                    if names_match(self.text(&self.fields[j].name), name) {
                        self.fields.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => self.append_header(name, value),
        }
    }

    /// Removes every field named `name`; returns how many were removed.
    pub fn remove_header(&mut self, name: &str) -> usize {
        let before = self.fields.len();
        let head = self.head.clone();
        self.fields.retain(|f| {
            let n = match &f.name {
                Text::Src(a, b) => head.get(*a as usize..*b as usize).unwrap_or(""),
                Text::Own(s) => s,
            };
            !names_match(n, name)
        });
        before - self.fields.len()
    }

    /// Removes the first element of the first field named `name` and returns it
    /// (Via pop on responses §16.7 step 3, Route pop §16.4). If the field had
    /// several comma-separated elements the rest stays in a rewritten field.
    pub fn pop_header_value(&mut self, name: &str) -> Option<String> {
        let i = self.field_index(name)?;
        let value = self.text(&self.fields[i].value).to_string();
        let mut it = split_list(&value);
        let first = it.next().map(str::to_string);
        let rest: Vec<&str> = it.collect();
        if rest.is_empty() {
            self.fields.remove(i);
        } else {
            let n = self.text(&self.fields[i].name).to_string();
            self.fields[i] = Self::owned(&n, &rest.join(", "));
        }
        match first {
            Some(f) => Some(f),
            // an empty field: drop it and look at the next one
            None => self.pop_header_value(name),
        }
    }

    /// Keeps only the elements of list header `name` for which `keep` is true; fields
    /// that become empty are removed (option-tag removal, e.g. `sec-agree`).
    pub fn retain_header_values(&mut self, name: &str, mut keep: impl FnMut(&str) -> bool) {
        let mut i = 0;
        while i < self.fields.len() {
            if !names_match(self.text(&self.fields[i].name), name) {
                i += 1;
                continue;
            }
            let value = self.text(&self.fields[i].value).to_string();
            let all: Vec<&str> = split_list(&value).collect();
            let kept: Vec<&str> = all.iter().copied().filter(|v| keep(v)).collect();
            if kept.len() == all.len() {
                i += 1;
            } else if kept.is_empty() {
                self.fields.remove(i);
            } else {
                let n = self.text(&self.fields[i].name).to_string();
                self.fields[i] = Self::owned(&n, &kept.join(", "));
                i += 1;
            }
        }
    }

    /// Calls `f` with the value of every field named `name`; where it returns
    /// `Some(new)`, that field's value is replaced (name and position kept).
    pub fn rewrite_headers(&mut self, name: &str, mut f: impl FnMut(&str) -> Option<String>) {
        for i in 0..self.fields.len() {
            if !names_match(self.text(&self.fields[i].name), name) {
                continue;
            }
            if let Some(new) = f(self.text(&self.fields[i].value)) {
                let n = self.text(&self.fields[i].name).to_string();
                self.fields[i] = Self::owned(&n, &new);
            }
        }
    }

    // ---- body ----------------------------------------------------------------------

    /// The body (exactly Content-Length bytes when the header is present).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the body, sets Content-Length and (if given) Content-Type;
    /// `None` removes Content-Type.
    pub fn set_body(&mut self, content_type: Option<&str>, body: Bytes) {
        match content_type {
            Some(ct) => self.set_header("Content-Type", ct),
            None => {
                self.remove_header("Content-Type");
            }
        }
        self.set_header("Content-Length", &body.len().to_string());
        self.body = body;
    }

    /// Replaces the body without touching any header (builders set Content-Length).
    pub fn set_body_raw(&mut self, body: Bytes) {
        self.body = body;
    }

    // ---- typed core headers ----------------------------------------------------------

    fn required(&self, name: &'static str) -> Result<&str> {
        self.header(name).ok_or(ParseError::MissingHeader(name))
    }

    /// Topmost Via element.
    pub fn top_via(&self) -> Result<Via> {
        let v = self
            .header_values("Via")
            .next()
            .ok_or(ParseError::MissingHeader("Via"))?;
        Via::parse(v)
    }

    /// All Via elements, top first.
    pub fn vias(&self) -> Result<Vec<Via>> {
        self.header_values("Via").map(Via::parse).collect()
    }

    /// From header.
    pub fn from_header(&self) -> Result<NameAddr> {
        NameAddr::parse(self.required("From")?)
    }

    /// To header.
    pub fn to_header(&self) -> Result<NameAddr> {
        NameAddr::parse(self.required("To")?)
    }

    /// Call-ID value.
    pub fn call_id(&self) -> Result<&str> {
        let v = self.required("Call-ID")?;
        if v.is_empty() {
            return Err(ParseError::hdr("Call-ID", "empty"));
        }
        Ok(v)
    }

    /// CSeq header.
    pub fn cseq(&self) -> Result<CSeq> {
        CSeq::parse(self.required("CSeq")?)
    }

    /// Max-Forwards, `None` if absent.
    pub fn max_forwards(&self) -> Result<Option<u32>> {
        self.header("Max-Forwards")
            .map(|v| {
                let v = v.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::hdr("Max-Forwards", "not 0..255"));
                }
                // leading zeros are legal (1*DIGIT), so only the significant part counts
                let sig = v.trim_start_matches('0');
                if sig.len() > 3 {
                    return Err(ParseError::hdr("Max-Forwards", "not 0..255"));
                }
                let sig = if sig.is_empty() { "0" } else { sig };
                sig.parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 255)
                    .ok_or(ParseError::hdr("Max-Forwards", "not 0..255"))
            })
            .transpose()
    }

    /// Proxy step 3 of RFC 3261 §16.6: decrements Max-Forwards (inserting 70 when
    /// absent). Returns the new value, or `None` when it already was 0 and the request
    /// must be answered with 483 instead of being forwarded (§16.3 step 2).
    pub fn decrement_max_forwards(&mut self) -> Result<Option<u32>> {
        match self.max_forwards()? {
            Some(0) => Ok(None),
            Some(n) => {
                self.set_header("Max-Forwards", &(n - 1).to_string());
                Ok(Some(n - 1))
            }
            None => {
                self.prepend_header("Max-Forwards", "70");
                Ok(Some(70))
            }
        }
    }

    /// Expires header in seconds, `None` if absent.
    pub fn expires(&self) -> Result<Option<u32>> {
        self.header("Expires")
            .map(crate::headers::parse_delta_seconds)
            .transpose()
    }

    /// All Contact values (RFC 3261 §20.10); `Star` if any header is `*`.
    pub fn contacts(&self) -> Result<Contacts> {
        let mut list = Vec::new();
        for v in self.headers_named("Contact") {
            match Contacts::parse(v)? {
                Contacts::Star => return Ok(Contacts::Star),
                Contacts::List(mut l) => list.append(&mut l),
            }
        }
        Ok(Contacts::List(list))
    }

    /// Parses every element of a name-addr list header (Route, Record-Route, Path …).
    pub fn name_addrs(&self, name: &str) -> Result<Vec<NameAddr>> {
        self.header_values(name).map(NameAddr::parse).collect()
    }

    /// Checks the headers every request/response needs (RFC 3261 §8.1.1) and that
    /// they parse: Via, From, To, Call-ID, CSeq (and that CSeq's method matches a
    /// request's method, §8.2.2 / RFC 4475 §3.1.2.x).
    pub fn validate(&self) -> Result<()> {
        self.top_via()?;
        self.from_header()?;
        self.to_header()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if let Some(m) = self.method() {
            if *m != cseq.method {
                return Err(ParseError::hdr("CSeq", "method differs from Request-Line"));
            }
        }
        self.max_forwards()?;
        Ok(())
    }

    /// The transaction branch of the top Via.
    pub fn branch(&self) -> Result<String> {
        self.top_via()?
            .branch()
            .map(str::to_string)
            .ok_or(ParseError::hdr("Via", "missing branch"))
    }

    /// Adds `received` (when the source IP differs from sent-by) and fills `rport`
    /// (when requested) on the top Via, as a server transport does on receipt
    /// (RFC 3261 §18.2.1, RFC 3581 §4).
    pub fn stamp_received(&mut self, src: std::net::SocketAddr) -> Result<()> {
        let mut via = self.top_via()?;
        let same = crate::uri::parse_host_ip(&via.host) == Some(src.ip());
        let rport = via.params.has("rport");
        if same && !rport {
            return Ok(());
        }
        // RFC 3581 §4: with rport, `received` is added even when it equals sent-by.
        via.params.set("received", Some(&src.ip().to_string()));
        if rport {
            via.params.set("rport", Some(&src.port().to_string()));
        }
        self.replace_top_value("Via", &via.to_string());
        Ok(())
    }

    /// Replaces the first element of the first field named `name`.
    pub fn replace_top_value(&mut self, name: &str, new_first: &str) {
        let Some(i) = self.field_index(name) else {
            self.prepend_header(name, new_first);
            return;
        };
        let value = self.text(&self.fields[i].value).to_string();
        let mut parts: Vec<&str> = split_list(&value).collect();
        if parts.is_empty() {
            parts.push(new_first);
        } else {
            parts[0] = new_first;
        }
        let n = self.text(&self.fields[i].name).to_string();
        self.fields[i] = Self::owned(&n, &parts.join(", "));
    }

    // ---- serialisation -------------------------------------------------------------

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.head.len() + self.body.len() + 64);
        match self.start_raw {
            Some((a, b)) => out.extend_from_slice(
                self.head
                    .get(a as usize..b as usize)
                    .unwrap_or("")
                    .as_bytes(),
            ),
            None => {
                match &self.start {
                    StartLine::Request { method, uri } => {
                        out.extend_from_slice(method.as_str().as_bytes());
                        out.push(b' ');
                        out.extend_from_slice(uri.as_bytes());
                        out.extend_from_slice(b" SIP/2.0");
                    }
                    StartLine::Response { code, reason } => {
                        out.extend_from_slice(b"SIP/2.0 ");
                        out.extend_from_slice(code.to_string().as_bytes());
                        out.push(b' ');
                        out.extend_from_slice(reason.as_bytes());
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        for f in &self.fields {
            match f.raw {
                Some((a, b)) => out.extend_from_slice(
                    self.head
                        .get(a as usize..b as usize)
                        .unwrap_or("")
                        .as_bytes(),
                ),
                None => {
                    out.extend_from_slice(self.text(&f.name).as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(self.text(&f.value).as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

fn trim_end_pos(b: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && (is_ws(b[end - 1]) || b[end - 1] == b'\r') {
        end -= 1;
    }
    end
}

/// Replaces each line break plus surrounding whitespace with one space.
fn unfold(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (n, line) in v.split('\n').enumerate() {
        let line = line.trim_end_matches(['\r', ' ', '\t']);
        if n == 0 {
            out.push_str(line);
        } else {
            let l = line.trim_start_matches([' ', '\t']);
            if !l.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(l);
            }
        }
    }
    out
}

fn parse_start_line(sl: &str) -> Result<StartLine> {
    if sl.len() >= 4 && sl.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        let mut it = sl.splitn(3, ' ');
        let ver = it.next().unwrap_or("");
        if !ver.eq_ignore_ascii_case("SIP/2.0") {
            return Err(ParseError::Version);
        }
        let code_s = it
            .next()
            .ok_or(ParseError::StartLine("missing status code"))?;
        if code_s.len() != 3 || !code_s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::StartLine("bad status code"));
        }
        let code: u16 = code_s
            .parse()
            .map_err(|_| ParseError::StartLine("bad status code"))?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::StartLine("status code out of range"));
        }
        let reason = it.next().unwrap_or("").to_string();
        return Ok(StartLine::Response { code, reason });
    }
    let mut it = sl.split(' ');
    let (Some(m), Some(uri), Some(ver), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(ParseError::StartLine("expected METHOD SP URI SP SIP/2.0"));
    };
    let method = Method::parse(m)?;
    if uri.is_empty() || uri.bytes().any(|b| b <= b' ') {
        return Err(ParseError::StartLine("bad Request-URI"));
    }
    if !ver.eq_ignore_ascii_case("SIP/2.0") {
        return if ver.len() >= 4 && ver.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            Err(ParseError::Version)
        } else {
            Err(ParseError::StartLine("bad SIP-Version"))
        };
    }
    Ok(StartLine::Request {
        method,
        uri: uri.to_string(),
    })
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "REGISTER sip:ims.example.net SIP/2.0\r\n\
v: SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKabc;rport\r\n\
Max-Forwards: 70\r\n\
f: <sip:001010000000001@ims.example.net>;tag=4711\r\n\
t: <sip:001010000000001@ims.example.net>\r\n\
i: 0123456789abcdef\r\n\
CSeq : 1 REGISTER\r\n\
m: <sip:001010000000001@[2001:db8::5]:5060>;expires=600\r\n\
Supported: path,\r\n sec-agree\r\n\
l: 0\r\n\
\r\n";

    #[test]
    fn parse_and_roundtrip_byte_identical() {
        let m = Message::parse(REG.as_bytes()).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(&Method::Register));
        assert_eq!(m.uri_str(), Some("sip:ims.example.net"));
        assert_eq!(
            m.header("Via").unwrap(),
            "SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKabc;rport"
        );
        assert_eq!(m.header("call-id"), Some("0123456789abcdef"));
        assert_eq!(m.cseq().unwrap().seq, 1);
        assert_eq!(m.header("Supported"), Some("path, sec-agree"));
        assert_eq!(
            m.header_values("k").collect::<Vec<_>>(),
            vec!["path", "sec-agree"]
        );
        m.validate().unwrap();
        assert_eq!(m.to_bytes(), REG.as_bytes());
    }

    #[test]
    fn edits_preserve_other_bytes() {
        let mut m = Message::parse(REG.as_bytes()).unwrap();
        m.prepend_header("Via", "SIP/2.0/UDP pcscf.x;branch=z9hG4bKp");
        m.prepend_header("Path", "<sip:term@pcscf.x;lr>");
        m.set_uri("sip:scscf.x");
        let out = String::from_utf8(m.to_bytes()).unwrap();
        assert!(out.starts_with("REGISTER sip:scscf.x SIP/2.0\r\nPath: <sip:term@pcscf.x;lr>\r\nVia: SIP/2.0/UDP pcscf.x;branch=z9hG4bKp\r\nv: SIP/2.0/UDP [2001:db8::5]"));
        assert!(out.contains("Supported: path,\r\n sec-agree\r\n"));
        let m2 = Message::parse(out.as_bytes()).unwrap();
        assert_eq!(m2.vias().unwrap().len(), 2);
        let mut m3 = m2.clone();
        assert_eq!(
            m3.pop_header_value("Via").unwrap(),
            "SIP/2.0/UDP pcscf.x;branch=z9hG4bKp"
        );
        assert_eq!(m3.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        m3.retain_header_values("Supported", |t| t != "sec-agree");
        assert_eq!(m3.header("Supported"), Some("path"));
        m3.retain_header_values("Supported", |_| false);
        assert!(!m3.has_header("k"));
        assert_eq!(m3.remove_header("Path"), 1);
    }

    #[test]
    fn multi_value_pop() {
        let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/TCP c;branch=z9hG4bK3\r\nContent-Length: 0\r\n\r\n";
        let mut m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.code(), Some(200));
        assert_eq!(m.vias().unwrap().len(), 3);
        m.pop_header_value("Via");
        assert_eq!(m.top_via().unwrap().host, "b");
        m.pop_header_value("Via");
        assert_eq!(m.top_via().unwrap().host, "c");
        m.pop_header_value("Via");
        assert!(m.top_via().is_err());
        assert_eq!(m.pop_header_value("Via"), None);
    }

    #[test]
    fn content_length_rules() {
        let base = "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n";
        let m = Message::parse(format!("{base}Content-Length: 5\r\n\r\nhelloEXTRA").as_bytes())
            .unwrap();
        assert_eq!(&m.body()[..], b"hello");
        let m = Message::parse(format!("{base}\r\nno length").as_bytes()).unwrap();
        assert_eq!(&m.body()[..], b"no length");
        assert!(matches!(
            Message::parse(format!("{base}l: 50\r\n\r\nshort").as_bytes()),
            Err(ParseError::BodyTruncated {
                declared: 50,
                available: 5
            })
        ));
        assert!(
            Message::parse(format!("{base}l: 1\r\nContent-Length: 2\r\n\r\nab").as_bytes())
                .is_err()
        );
        assert!(Message::parse(format!("{base}l: -1\r\n\r\n").as_bytes()).is_err());
        assert!(Message::parse_with(
            format!("{base}\r\nx").as_bytes(),
            &Limits::default(),
            Framing::Stream
        )
        .is_err());
    }

    #[test]
    fn stream_framing() {
        let msg = "OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabc";
        let l = Limits::default();
        let two = format!("\r\n\r\n{msg}{msg}");
        assert_eq!(
            stream_frame(two.as_bytes(), &l).unwrap(),
            Frame::KeepAlive(4)
        );
        assert_eq!(
            stream_frame(&two.as_bytes()[4..], &l).unwrap(),
            Frame::Message(msg.len())
        );
        assert_eq!(
            stream_frame(&msg.as_bytes()[..20], &l).unwrap(),
            Frame::Incomplete
        );
        assert_eq!(
            stream_frame(&msg.as_bytes()[..msg.len() - 1], &l).unwrap(),
            Frame::Incomplete
        );
        assert!(stream_frame(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n", &l).is_err());
        let small = Limits {
            max_message: 10,
            max_headers: 10,
        };
        assert!(matches!(
            stream_frame(msg.as_bytes(), &small),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            stream_frame(&[b'A'; 11], &small),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn incremental_framer_matches_stateless() {
        let l = Limits::default();
        let msg = "OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 4\r\n\r\nbody";
        let stream = format!("\r\n{msg}{msg}");
        let bytes = stream.as_bytes();
        let mut f = StreamFramer::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut frames = Vec::new();
        for &b in bytes {
            buf.push(b);
            loop {
                let got = f.poll(&buf, &l).unwrap();
                assert_eq!(got, stream_frame(&buf, &l).unwrap());
                match got {
                    Frame::KeepAlive(n) => {
                        buf.drain(..n);
                    }
                    Frame::Message(n) => {
                        frames.push(buf.drain(..n).collect::<Vec<u8>>());
                    }
                    Frame::Incomplete => break,
                }
            }
        }
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(|m| m == msg.as_bytes()));
        assert!(buf.is_empty());
    }

    #[test]
    fn swar_find_byte() {
        let hay: Vec<u8> = (0..40u8).collect();
        for n in 0..45u8 {
            assert_eq!(find_byte(&hay, n), hay.iter().position(|&b| b == n));
            for start in 0..hay.len() {
                assert_eq!(
                    find_byte(&hay[start..], n),
                    hay[start..].iter().position(|&b| b == n)
                );
            }
        }
        // high bytes next to the needle must not cause false positives
        let tricky = [0x8a, 0x0b, 0xff, 0x09, 0x0a, 0x80, 0x00, 0x8b, 0x0a];
        assert_eq!(find_byte(&tricky, b'\n'), Some(4));
        assert_eq!(find_byte(&tricky[5..], b'\n'), Some(3));
        assert_eq!(find_byte(&[0xffu8; 17], b'\n'), None);
    }

    #[test]
    fn start_line_errors() {
        for bad in ["INVITE sip:a SIP/7.0\r\n\r\n", "SIP/1.0 200 OK\r\n\r\n"] {
            assert_eq!(
                Message::parse(bad.as_bytes()).unwrap_err(),
                ParseError::Version
            );
        }
        for bad in [
            "INVITE  sip:a SIP/2.0\r\n\r\n",
            "INVITE sip:a\r\n\r\n",
            "SIP/2.0 2000 OK\r\n\r\n",
            "SIP/2.0 099 X\r\n\r\n",
            "IN@VITE sip:a SIP/2.0\r\n\r\n",
            "INVITE sip:a SIP/2.0\r\nNoColon\r\n\r\n",
            "INVITE sip:a SIP/2.0\r\n: empty\r\n\r\n",
            "INVITE sip:a SIP/2.0\r\n folded-first: x\r\n\r\n",
            "INVITE sip:a SIP/2.0\r\nVia: x",
        ] {
            assert!(Message::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(Message::parse(b"\r\n\r\n").unwrap_err(), ParseError::Empty);
        assert!(Message::parse(b"OPTIONS sip:a SIP/2.0\r\n\xff: x\r\n\r\n").is_err());
    }

    #[test]
    fn limits() {
        let l = Limits {
            max_message: 100,
            max_headers: 2,
        };
        let m = "OPTIONS sip:a SIP/2.0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(
            Message::parse_with(m.as_bytes(), &l, Framing::Datagram).unwrap_err(),
            ParseError::TooManyHeaders(2)
        );
        let big = format!("OPTIONS sip:a SIP/2.0\r\na: {}\r\n\r\n", "x".repeat(200));
        assert!(matches!(
            Message::parse_with(big.as_bytes(), &l, Framing::Datagram),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn max_forwards() {
        let mut m = Message::parse(REG.as_bytes()).unwrap();
        assert_eq!(m.decrement_max_forwards().unwrap(), Some(69));
        assert_eq!(m.max_forwards().unwrap(), Some(69));
        m.set_header("Max-Forwards", "0");
        assert_eq!(m.decrement_max_forwards().unwrap(), None);
        m.remove_header("Max-Forwards");
        assert_eq!(m.decrement_max_forwards().unwrap(), Some(70));
        m.set_header("Max-Forwards", "x");
        assert!(m.decrement_max_forwards().is_err());
    }

    #[test]
    fn stamp_received() {
        let mut m = Message::parse(REG.as_bytes()).unwrap();
        m.stamp_received("[2001:db8::9]:40000".parse().unwrap())
            .unwrap();
        let v = m.top_via().unwrap();
        assert_eq!(v.received(), Some("2001:db8::9"));
        assert_eq!(v.rport(), Some(Some(40000)));
        assert_eq!(v.response_target(), ("2001:db8::9".to_string(), 40000));
    }

    #[test]
    fn lf_only_and_leading_crlf() {
        let m = Message::parse(b"\r\nOPTIONS sip:a SIP/2.0\nCall-ID: x\n\nbody").unwrap();
        assert_eq!(m.call_id().unwrap(), "x");
        assert_eq!(&m.body()[..], b"body");
    }
}
