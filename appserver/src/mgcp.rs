//! MGCP (RFC 3435) as far as caller-ID needs it: the message parser, the signal/event
//! list syntax, the line package's caller-ID signal (RFC 3660 `L/ci`), and
//! [`MgcpScanner`], which turns a call agent's conversation with a residential gateway
//! into [`Offer`]s and [`Progress`] reports.
//!
//! # What is mapped
//!
//! | seen | report |
//! |---|---|
//! | `RQNT` whose `S:` holds `ci(...)` (with or without `L/`, usually with `L/rg`) | [`ScanEvent::Offer`]: [`RawCaller::Plain`] from the ci fields, callee = the endpoint (`aaln/1@gw`), call id = `<endpoint>#<X: request id>` (the transaction id when `X:` is absent); every time it is seen, like a retransmitted INVITE |
//! | `NTFY` with `O:` holding `hd` (off-hook) while that endpoint rings | [`Progress::Answered`] |
//! | a later `RQNT` to the ringing endpoint whose `S:` has no `rg` and no `ci`, without an off-hook first | [`Progress::Cancelled`]: the call agent stopped the ringing, so the caller gave up |
//! | `NTFY` with `O:` holding `hu` (on-hook) after the answer | [`Progress::Ended`] |
//!
//! Why the "ringing stopped" RQNT is not an answer: the gateway reports the off-hook
//! (`NTFY O: L/hd`) *before* the call agent stops the ringing, so when the stop comes
//! without an off-hook nobody picked up. Seen that way an MGCP call gives the same
//! call-log outcomes as the SIP call it stands for (200 → answered, CANCEL → cancelled).
//!
//! `ci` fields (RFC 3660 §2.3, the Bellcore/Telcordia MDMF presentation): time
//! `MM/DD/HH/MM`, number, name; quoted or not. `P` = private (the caller withheld it:
//! `anonymous`), `O` = out of area / unavailable (no number, not anonymous).

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use crate::event::{Offer, Progress, RawCaller, Source};
use crate::passive::ScanEvent;

/// Why MGCP input was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MgcpError {
    /// The datagram holds no message.
    #[error("empty MGCP message")]
    Empty,
    /// The first line is neither a command nor a response line.
    #[error("bad MGCP start line: {0}")]
    StartLine(&'static str),
    /// A parameter line lacks its `:`.
    #[error("bad MGCP parameter line")]
    ParamLine,
    /// An event or signal list is malformed.
    #[error("bad MGCP event list: {0}")]
    EventList(&'static str),
    /// Larger than any sane MGCP message.
    #[error("MGCP message of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

/// Largest MGCP datagram accepted (RFC 3435 §3.5 keeps messages within one UDP datagram).
pub const MAX_MESSAGE: usize = 65_535;

/// MGCP command verbs (RFC 3435 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// EndpointConfiguration.
    Epcf,
    /// CreateConnection.
    Crcx,
    /// ModifyConnection.
    Mdcx,
    /// DeleteConnection.
    Dlcx,
    /// NotificationRequest.
    Rqnt,
    /// Notify.
    Ntfy,
    /// AuditEndpoint.
    Auep,
    /// AuditConnection.
    Aucx,
    /// RestartInProgress.
    Rsip,
    /// Another (extension) verb, upper-cased.
    Other(String),
}

impl Verb {
    fn parse(s: &str) -> Verb {
        match s.to_ascii_uppercase().as_str() {
            "EPCF" => Verb::Epcf,
            "CRCX" => Verb::Crcx,
            "MDCX" => Verb::Mdcx,
            "DLCX" => Verb::Dlcx,
            "RQNT" => Verb::Rqnt,
            "NTFY" => Verb::Ntfy,
            "AUEP" => Verb::Auep,
            "AUCX" => Verb::Aucx,
            "RSIP" => Verb::Rsip,
            other => Verb::Other(other.to_string()),
        }
    }
}

/// A command: `verb transaction-id endpoint MGCP version`, parameter lines, and an
/// optional SDP session description after an empty line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The verb.
    pub verb: Verb,
    /// Transaction identifier (1..999999999).
    pub transaction_id: u32,
    /// Endpoint name, `local@domain` (`aaln/1@rgw.example.net`).
    pub endpoint: String,
    /// Protocol version after `MGCP` (`1.0`, `1.0 NCS 1.0`).
    pub version: String,
    /// Parameter lines as (code, value), code as written (`S`, `X`, `O`…), value trimmed.
    pub params: Vec<(String, String)>,
    /// The session description, if any.
    pub sdp: Option<String>,
}

impl Command {
    /// The value of the first parameter `code` (case-insensitive: RFC 3435 §3.2.2).
    pub fn param(&self, code: &str) -> Option<&str> {
        param(&self.params, code)
    }
}

/// A response: `code transaction-id [package-name] [comment]`, parameters, optional SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Return code (RFC 3435 §2.4: 000–999).
    pub code: u16,
    /// The transaction answered.
    pub transaction_id: u32,
    /// The rest of the response line.
    pub comment: String,
    /// Parameter lines.
    pub params: Vec<(String, String)>,
    /// The session description, if any.
    pub sdp: Option<String>,
}

/// One MGCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A command.
    Command(Command),
    /// A response.
    Response(Response),
}

fn param<'a>(params: &'a [(String, String)], code: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map(|(_, v)| v.as_str())
}

/// Parses a datagram: one message, or several piggybacked ones separated by a line
/// holding a single `.` (RFC 3435 §3.5.5).
pub fn parse(data: &[u8]) -> Result<Vec<Message>, MgcpError> {
    if data.len() > MAX_MESSAGE {
        return Err(MgcpError::TooLarge(data.len()));
    }
    // MGCP is ASCII; a name from a gateway in Latin-1 should not cost the whole call.
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "." {
            out.push(parse_one(&cur)?);
            cur.clear();
        } else {
            cur.push(line);
        }
    }
    if cur.iter().any(|l| !l.trim().is_empty()) {
        out.push(parse_one(&cur)?);
    }
    if out.is_empty() {
        return Err(MgcpError::Empty);
    }
    Ok(out)
}

fn parse_one(lines: &[&str]) -> Result<Message, MgcpError> {
    let mut it = lines.iter().skip_while(|l| l.trim().is_empty());
    let first = it.next().ok_or(MgcpError::Empty)?;
    let mut params = Vec::new();
    let mut sdp: Option<String> = None;
    for line in it.by_ref() {
        if line.trim().is_empty() {
            break;
        }
        let (code, value) = line.split_once(':').ok_or(MgcpError::ParamLine)?;
        let code = code.trim();
        if code.is_empty() || code.contains(char::is_whitespace) {
            return Err(MgcpError::ParamLine);
        }
        params.push((code.to_string(), value.trim().to_string()));
    }
    let rest: Vec<&str> = it.copied().collect();
    if rest.iter().any(|l| !l.trim().is_empty()) {
        sdp = Some(rest.join("\r\n"));
    }
    let words: Vec<&str> = first.split_whitespace().collect();
    let w0 = words.first().ok_or(MgcpError::StartLine("empty"))?;
    let tid = |w: Option<&&str>| -> Result<u32, MgcpError> {
        let w = w.ok_or(MgcpError::StartLine("no transaction id"))?;
        if w.is_empty() || w.len() > 9 || !w.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MgcpError::StartLine("transaction id not 1-9 digits"));
        }
        w.parse()
            .map_err(|_| MgcpError::StartLine("transaction id not 1-9 digits"))
    };
    if w0.len() == 3 && w0.bytes().all(|b| b.is_ascii_digit()) {
        let code = w0
            .parse()
            .map_err(|_| MgcpError::StartLine("bad response code"))?;
        return Ok(Message::Response(Response {
            code,
            transaction_id: tid(words.get(1))?,
            comment: words.get(2..).unwrap_or_default().join(" "),
            params,
            sdp,
        }));
    }
    if w0.len() != 4 || !w0.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(MgcpError::StartLine("verb is not four letters"));
    }
    let transaction_id = tid(words.get(1))?;
    let endpoint = words.get(2).ok_or(MgcpError::StartLine("no endpoint"))?;
    if !endpoint.contains('@') {
        return Err(MgcpError::StartLine("endpoint without @domain"));
    }
    if !words.get(3).is_some_and(|m| m.eq_ignore_ascii_case("MGCP")) {
        return Err(MgcpError::StartLine("no MGCP version"));
    }
    let version = words.get(4..).unwrap_or_default().join(" ");
    if version.is_empty() {
        return Err(MgcpError::StartLine("no MGCP version"));
    }
    Ok(Message::Command(Command {
        verb: Verb::parse(w0),
        transaction_id,
        endpoint: endpoint.to_string(),
        version,
        params,
        sdp,
    }))
}

/// One element of a signal (`S:`) or event (`O:`, `R:`) list: `[package/]name[@conn][(params)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventName {
    /// The package (`L`), if named.
    pub package: Option<String>,
    /// The event or signal name (`rg`, `ci`, `hd`).
    pub name: String,
    /// The connection after `@`, if any.
    pub connection: Option<String>,
    /// The text between the parentheses, if any.
    pub params: Option<String>,
}

impl EventName {
    /// True for `name` in the line package (`L/name`) or without a package.
    pub fn is_line(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            && self
                .package
                .as_deref()
                .is_none_or(|p| p.eq_ignore_ascii_case("L"))
    }
}

/// Parses a comma-separated event or signal list; commas inside parentheses or quotes do
/// not separate.
pub fn parse_event_list(s: &str) -> Result<Vec<EventName>, MgcpError> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0u32, false, 0usize);
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(MgcpError::EventList("unbalanced ')'"))?
            }
            b',' if !quoted && depth == 0 => {
                out.push(parse_event(&s[start..i])?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err(MgcpError::EventList("unterminated quote or parenthesis"));
    }
    if !s[start..].trim().is_empty() || !out.is_empty() {
        out.push(parse_event(&s[start..])?);
    }
    Ok(out)
}

fn parse_event(s: &str) -> Result<EventName, MgcpError> {
    let s = s.trim();
    let (head, params) = match s.find('(') {
        Some(open) => {
            let inner = s[open + 1..]
                .strip_suffix(')')
                .ok_or(MgcpError::EventList("text after ')'"))?;
            (&s[..open], Some(inner.to_string()))
        }
        None => (s, None),
    };
    let (head, connection) = match head.split_once('@') {
        Some((h, c)) => (h, Some(c.trim().to_string())),
        None => (head, None),
    };
    let (package, name) = match head.rsplit_once('/') {
        Some((p, n)) => (Some(p.trim().to_string()), n.trim()),
        None => (None, head.trim()),
    };
    if name.is_empty() {
        return Err(MgcpError::EventList("empty event name"));
    }
    Ok(EventName {
        package,
        name: name.to_string(),
        connection,
        params,
    })
}

/// The line package's caller-ID signal parameters, interpreted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallerId {
    /// `MM/DD/HH/MM` as sent, if any.
    pub time: Option<String>,
    /// The number, `None` when absent, private or unavailable.
    pub number: Option<String>,
    /// The name, `None` when absent, private or unavailable.
    pub name: Option<String>,
    /// The number was marked `P` (private: withheld by the caller).
    pub anonymous: bool,
    /// The number was marked `O` (out of area / unavailable).
    pub unavailable: bool,
}

/// Parses the parameters of `ci(...)`: `time, number, name`, each quoted or not, any may
/// be empty.
pub fn parse_caller_id(params: &str) -> Result<CallerId, MgcpError> {
    // (text outside quotes, text inside quotes, whether quoted)
    let mut fields: Vec<(String, String, bool)> = Vec::new();
    let mut cur = (String::new(), String::new(), false);
    let mut quoted = false;
    for c in params.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.2 = true;
            }
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            c if quoted => cur.1.push(c),
            c => cur.0.push(c),
        }
    }
    if quoted {
        return Err(MgcpError::EventList("unterminated quote in ci"));
    }
    fields.push(cur);
    if fields.len() > 3 {
        return Err(MgcpError::EventList("ci takes at most three fields"));
    }
    let field = |i: usize| -> Option<(String, bool)> {
        let (outside, inside, q) = fields.get(i)?;
        // quoted text keeps its spaces; unquoted text is trimmed
        let f = if *q {
            inside.clone()
        } else {
            outside.trim().to_string()
        };
        (!f.trim().is_empty()).then_some((f, *q))
    };
    let mut cid = CallerId {
        time: field(0).map(|(f, _)| f.trim().to_string()),
        ..CallerId::default()
    };
    match field(1) {
        Some((n, _)) if n.trim().eq_ignore_ascii_case("P") => cid.anonymous = true,
        Some((n, _)) if n.trim().eq_ignore_ascii_case("O") => cid.unavailable = true,
        Some((n, _)) => cid.number = Some(n.trim().to_string()),
        None => {}
    }
    match field(2) {
        // a private name alone, with no number at all, is still a withheld caller
        Some((n, _))
            if n.trim().eq_ignore_ascii_case("P") && cid.number.is_none() && !cid.unavailable =>
        {
            cid.anonymous = true
        }
        Some((n, _))
            if n.trim().eq_ignore_ascii_case("P") || n.trim().eq_ignore_ascii_case("O") => {}
        Some((n, _)) => cid.name = Some(n),
        None => {}
    }
    Ok(cid)
}

#[derive(Debug, Clone)]
struct Ringing {
    call_id: String,
    answered: bool,
}

/// The MGCP scanner: feed it datagrams ([`MgcpScanner::handle_datagram`]), collect
/// events ([`MgcpScanner::poll_event`]). Keyed by endpoint name (case-insensitive: RFC 3435
/// §2.1.1), bounded to `max_endpoints`.
#[derive(Debug)]
pub struct MgcpScanner {
    source: Source,
    endpoints: HashMap<String, Ringing>,
    max_endpoints: usize,
    out: VecDeque<ScanEvent>,
}

impl MgcpScanner {
    /// A scanner whose offers carry `source`, following up to 4096 endpoints.
    pub fn new(source: Source) -> MgcpScanner {
        MgcpScanner {
            source,
            endpoints: HashMap::new(),
            max_endpoints: 4096,
            out: VecDeque::new(),
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ScanEvent> {
        self.out.pop_front()
    }

    /// One MGCP datagram seen at `at`. Returns the number of offers it produced.
    pub fn handle_datagram(&mut self, data: &[u8], at: SystemTime) -> Result<usize, MgcpError> {
        let mut offers = 0;
        for m in parse(data)? {
            if let Message::Command(c) = m {
                offers += self.handle_command(&c, at)?;
            }
        }
        Ok(offers)
    }

    fn handle_command(&mut self, c: &Command, at: SystemTime) -> Result<usize, MgcpError> {
        let key = c.endpoint.to_ascii_lowercase();
        match c.verb {
            Verb::Rqnt => {
                let signals = match c.param("S") {
                    Some(s) => parse_event_list(s)?,
                    None => Vec::new(),
                };
                if let Some(ci) = signals.iter().find(|s| s.is_line("ci")) {
                    let cid = parse_caller_id(ci.params.as_deref().unwrap_or(""))?;
                    let rid = c
                        .param("X")
                        .map(str::to_string)
                        .unwrap_or_else(|| c.transaction_id.to_string());
                    let call_id = format!("{}#{rid}", c.endpoint);
                    if self.endpoints.len() >= self.max_endpoints
                        && !self.endpoints.contains_key(&key)
                    {
                        // Forget an arbitrary endpoint: a full table is an attack or a
                        // huge plant, and either way one stale ringing state is harmless.
                        if let Some(k) = self.endpoints.keys().next().cloned() {
                            self.endpoints.remove(&k);
                        }
                    }
                    let same = self
                        .endpoints
                        .get(&key)
                        .is_some_and(|r| r.call_id == call_id);
                    if !same {
                        self.endpoints.insert(
                            key,
                            Ringing {
                                call_id: call_id.clone(),
                                answered: false,
                            },
                        );
                    }
                    self.out.push_back(ScanEvent::Offer(Offer {
                        call_id,
                        caller: RawCaller::Plain {
                            number: cid.number,
                            name: cid.name,
                            anonymous: cid.anonymous,
                        },
                        callee: c.endpoint.clone(),
                        source: self.source,
                        at,
                    }));
                    return Ok(1);
                }
                let rings = signals.iter().any(|s| s.is_line("rg"));
                if !rings {
                    if let Some(r) = self.endpoints.get(&key) {
                        if !r.answered {
                            let call_id = r.call_id.clone();
                            self.endpoints.remove(&key);
                            self.progress(call_id, Progress::Cancelled, at);
                        }
                    }
                }
                Ok(0)
            }
            Verb::Ntfy => {
                let observed = match c.param("O") {
                    Some(o) => parse_event_list(o)?,
                    None => Vec::new(),
                };
                for e in observed {
                    if e.is_line("hd") {
                        if let Some(r) = self.endpoints.get_mut(&key) {
                            if !r.answered {
                                r.answered = true;
                                let id = r.call_id.clone();
                                self.progress(id, Progress::Answered, at);
                            }
                        }
                    } else if e.is_line("hu")
                        && self.endpoints.get(&key).is_some_and(|r| r.answered)
                    {
                        if let Some(r) = self.endpoints.remove(&key) {
                            self.progress(r.call_id, Progress::Ended, at);
                        }
                    }
                }
                Ok(0)
            }
            _ => Ok(0),
        }
    }

    fn progress(&mut self, call_id: String, progress: Progress, at: SystemTime) {
        self.out.push_back(ScanEvent::Progress {
            call_id,
            progress,
            at,
        });
    }
}

/// MGCP message texts for tests, fixtures and the benchmark.
pub mod text {
    /// A ringing RQNT with caller-ID: `S: L/rg,L/ci(time,"number","name")`; `number` and
    /// `name` are written as given (pass `P` for private).
    pub fn rqnt_ring(tid: u32, endpoint: &str, rid: &str, number: &str, name: &str) -> String {
        format!(
            "RQNT {tid} {endpoint} MGCP 1.0\r\nN: ca@ca.example.net:2727\r\nX: {rid}\r\n\
             R: L/hd(N)\r\nS: L/rg,L/ci(10/14/17/26,\"{number}\",\"{name}\")\r\n"
        )
    }

    /// An RQNT without ringing (the call agent stops the ringer).
    pub fn rqnt_stop(tid: u32, endpoint: &str, rid: &str) -> String {
        format!("RQNT {tid} {endpoint} MGCP 1.0\r\nX: {rid}\r\nR: L/hd(N)\r\nS:\r\n")
    }

    /// A NTFY from the gateway with `O: <event>` (`L/hd`, `L/hu`).
    pub fn ntfy(tid: u32, endpoint: &str, rid: &str, event: &str) -> String {
        format!(
            "NTFY {tid} {endpoint} MGCP 1.0\r\nN: ca@ca.example.net:2727\r\nX: {rid}\r\nO: {event}\r\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::text::*;
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn parses_rfc3435_command_with_sdp_and_piggybacked_response() {
        let d = "CRCX 1204 aaln/1@rgw-2567.whatever.net MGCP 1.0\r\nC: A3C47F21456789F0\r\nL: p:10, a:PCMU\r\nM: recvonly\r\n\r\nv=0\r\nc=IN IP4 128.96.41.1\r\nm=audio 3456 RTP/AVP 0\r\n.\r\n200 1203 OK\r\n";
        let ms = parse(d.as_bytes()).unwrap();
        assert_eq!(ms.len(), 2);
        let Message::Command(c) = &ms[0] else {
            panic!()
        };
        assert_eq!(c.verb, Verb::Crcx);
        assert_eq!(c.transaction_id, 1204);
        assert_eq!(c.endpoint, "aaln/1@rgw-2567.whatever.net");
        assert_eq!(c.version, "1.0");
        assert_eq!(c.param("l"), Some("p:10, a:PCMU"));
        assert!(c.sdp.as_deref().unwrap().contains("m=audio 3456"));
        let Message::Response(r) = &ms[1] else {
            panic!()
        };
        assert_eq!(
            (r.code, r.transaction_id, r.comment.as_str()),
            (200, 1203, "OK")
        );
    }

    #[test]
    fn start_line_errors_are_typed() {
        for bad in [
            "",
            "RQNT",
            "RQNT x a@b MGCP 1.0",
            "RQNT 1 nodomain MGCP 1.0",
            "RQNT 1 a@b SIP 2.0",
            "RQNT 1 a@b MGCP",
            "RQNTX 1 a@b MGCP 1.0",
            "RQNT 1234567890 a@b MGCP 1.0",
            "RQNT 1 a@b MGCP 1.0\nno colon here",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn event_lists_and_caller_id_fields() {
        let l = parse_event_list("L/rg, L/ci(10/14/17/26, \"555,1212\", \"Doe, John\"),hd@0A3F(N)")
            .unwrap();
        assert_eq!(l.len(), 3);
        assert!(l[0].is_line("rg"));
        assert!(l[1].is_line("ci"));
        assert_eq!(l[2].connection.as_deref(), Some("0A3F"));
        let c = parse_caller_id(l[1].params.as_deref().unwrap()).unwrap();
        assert_eq!(c.number.as_deref(), Some("555,1212"));
        assert_eq!(c.name.as_deref(), Some("Doe, John"));
        assert_eq!(c.time.as_deref(), Some("10/14/17/26"));
        let c = parse_caller_id("10/14/17/26, 0301234567 , Alice").unwrap();
        assert_eq!(
            (c.number.as_deref(), c.name.as_deref()),
            (Some("0301234567"), Some("Alice"))
        );
        let c = parse_caller_id("10/14/17/26,P,P").unwrap();
        assert!(c.anonymous && c.number.is_none() && c.name.is_none());
        let c = parse_caller_id("10/14/17/26,\"O\",\"O\"").unwrap();
        assert!(!c.anonymous && c.unavailable && c.number.is_none());
        assert!(parse_event_list("L/ci(1,\"2").is_err());
        assert!(parse_event_list("L/ci(1))").is_err());
        assert!(parse_caller_id("1,2,3,4").is_err());
        assert_eq!(parse_event_list("").unwrap(), vec![]);
    }

    fn events(s: &mut MgcpScanner) -> Vec<ScanEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn ring_answer_hangup() {
        let mut s = MgcpScanner::new(Source::Pcap);
        let ep = "aaln/1@gw.example.net";
        assert_eq!(
            s.handle_datagram(
                rqnt_ring(1, ep, "AB12", "0301234567", "Alice").as_bytes(),
                t(0)
            )
            .unwrap(),
            1
        );
        s.handle_datagram(ntfy(2, ep, "AB12", "L/hd").as_bytes(), t(2))
            .unwrap();
        s.handle_datagram(rqnt_stop(3, ep, "AB13").as_bytes(), t(2))
            .unwrap();
        s.handle_datagram(ntfy(4, ep, "AB13", "L/hu").as_bytes(), t(9))
            .unwrap();
        let ev = events(&mut s);
        assert_eq!(
            ev,
            vec![
                ScanEvent::Offer(Offer {
                    call_id: format!("{ep}#AB12"),
                    caller: RawCaller::Plain {
                        number: Some("0301234567".into()),
                        name: Some("Alice".into()),
                        anonymous: false
                    },
                    callee: ep.into(),
                    source: Source::Pcap,
                    at: t(0),
                }),
                ScanEvent::Progress {
                    call_id: format!("{ep}#AB12"),
                    progress: Progress::Answered,
                    at: t(2)
                },
                ScanEvent::Progress {
                    call_id: format!("{ep}#AB12"),
                    progress: Progress::Ended,
                    at: t(9)
                },
            ]
        );
    }

    #[test]
    fn ringing_stopped_without_offhook_is_cancelled_and_private_is_anonymous() {
        let mut s = MgcpScanner::new(Source::Live);
        let ep = "aaln/2@gw";
        // without L/ prefix, unquoted P
        let d = format!("RQNT 7 {ep} MGCP 1.0\nX: 9\nS: rg,ci(01/01/00/00,P,)\n");
        s.handle_datagram(d.as_bytes(), t(0)).unwrap();
        s.handle_datagram(rqnt_stop(8, ep, "10").as_bytes(), t(5))
            .unwrap();
        let ev = events(&mut s);
        let ScanEvent::Offer(o) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(
            o.caller,
            RawCaller::Plain {
                number: None,
                name: None,
                anonymous: true
            }
        );
        assert_eq!(o.call_id, "aaln/2@gw#9");
        assert_eq!(
            ev[1],
            ScanEvent::Progress {
                call_id: "aaln/2@gw#9".into(),
                progress: Progress::Cancelled,
                at: t(5)
            }
        );
        // no X: → the transaction id names the call
        let d = format!("RQNT 77 {ep} MGCP 1.0\nS: L/ci(,\"123\",)\n");
        s.handle_datagram(d.as_bytes(), t(6)).unwrap();
        let Some(ScanEvent::Offer(o)) = s.poll_event() else {
            panic!()
        };
        assert_eq!(o.call_id, "aaln/2@gw#77");
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = MgcpScanner::new(Source::Pcap);
        let d = rqnt_ring(1, "aaln/1@gw", "1", "123", "N");
        for n in 0..d.len() {
            let _ = s.handle_datagram(&d.as_bytes()[..n], t(0));
            let mut b = d.clone().into_bytes();
            b[n] = b'(';
            let _ = s.handle_datagram(&b, t(0));
            b[n] = b'"';
            let _ = s.handle_datagram(&b, t(0));
        }
        assert!(s
            .handle_datagram(&vec![b'a'; MAX_MESSAGE + 1], t(0))
            .is_err());
    }
}
