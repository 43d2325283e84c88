//! # `siprewrite`: interop rewrite rules for SIP proxies
//!
//! What "SIP interceptor" tools do on the wire, as a TOML file a proxy loads: per
//! [`Direction`], an ordered list of named rules. Each rule matches a message by method,
//! status code and header regexes, then edits it: add, remove or rewrite header fields,
//! remove SDP codecs or attribute lines, map a response code to another, and ask the
//! sender for a DSCP. Labs need this for handsets that reject what a standard core sends
//! (TS 24.229 leaves much optional, and some UEs cancel a call on `a=rtcp`/`a=mid` in a
//! 183 or 200).
//!
//! The engine is sans-IO: [`RuleSet::load`] parses and validates text, [`RuleSet::apply`]
//! edits a parsed [`sip::Message`] and returns an [`Outcome`] (whether the bytes changed,
//! the DSCP to send with); [`RuleSet::apply_bytes`] does the same on wire bytes and
//! leaves a message no rule matches untouched, byte for byte. The caller decides which
//! direction a message travels and applies the DSCP to its socket.
//!
//! ## The rules file
//!
//! ```toml
//! # One array of tables per direction: to_ue, to_core, to_as, from_ue, from_core,
//! # from_as. Rules run in file order; a later rule sees the earlier rules' edits.
//! [[to_ue]]
//! name = "no-rtcp-mid-for-old-handsets"   # required, unique per direction
//! # Match (all given conditions must hold; none given = every message):
//! method = ["INVITE", "UPDATE"]  # requests by method, responses by their CSeq method
//! status = [183, "2xx"]          # responses only: a code, "4xx", or "400-499"
//! kind = "response"              # optional: "request" or "response"
//! headers = [
//!   { name = "User-Agent", value = "^Samsung" },  # a field whose value matches
//!   { name = "X-Debug", absent = true },          # no such field
//! ]
//! # Actions, applied in this order:
//! remove_header = [{ name = "P-Early-Media" }, { name = "Allow", value = "MESSAGE" }]
//! replace_header = [{ name = "Server", pattern = "^([A-Za-z]+)/.*", with = "$1" }]
//! add_header = [{ name = "X-Lab", value = "rewritten" }]
//! remove_codecs = ["AMR-WB"]             # m= payload types + rtpmap/fmtp/rtcp-fb lines
//! remove_sdp_attributes = ["rtcp", "mid"]
//! dscp = 46                              # 0-63: IP_TOS / IPV6_TCLASS of what is sent
//!
//! [[to_ue]]
//! name = "busy-here-not-unavailable"
//! status = 480
//! map_status = { code = 486, reason = "Busy Here" }
//! ```
//!
//! ```
//! use siprewrite::{Direction, RuleSet};
//!
//! let rules = RuleSet::load(r#"
//!     [[to_ue]]
//!     name = "busy"
//!     status = 480
//!     map_status = { code = 486, reason = "Busy Here" }
//! "#)?;
//! let mut m = sip::Message::parse(
//!     b"SIP/2.0 480 Temporarily Unavailable\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
//!       From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
//!       Content-Length: 0\r\n\r\n",
//! )?;
//! let out = rules.apply(Direction::ToUe, &mut m);
//! assert!(out.changed);
//! assert_eq!(m.code(), Some(486));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Loading validates everything: a bad regex, an unknown key or action, a DSCP above 63,
//! a status code outside 100–699 or a mapping between provisional and final responses
//! is a [`RuleError`] that names the direction and the rule.

#![warn(missing_docs)]

mod def;
mod edit;

use bytes::Bytes;
use regex::Regex;
use sip::{Framing, Limits, Message, Method};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which way a message travels through the proxy applying the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent toward the UE (`to_ue`).
    ToUe,
    /// Sent toward the core, e.g. the S-CSCF (`to_core`).
    ToCore,
    /// Sent toward an application server (`to_as`).
    ToAs,
    /// Received from a UE (`from_ue`), before the proxy looks at it.
    FromUe,
    /// Received from the core (`from_core`).
    FromCore,
    /// Received from an application server (`from_as`).
    FromAs,
}

impl Direction {
    /// Every direction, in file-key order.
    pub const ALL: [Direction; 6] = [
        Direction::ToUe,
        Direction::ToCore,
        Direction::ToAs,
        Direction::FromUe,
        Direction::FromCore,
        Direction::FromAs,
    ];

    /// The key of this direction's rules in the file (`to_ue`, …).
    pub fn key(self) -> &'static str {
        match self {
            Direction::ToUe => "to_ue",
            Direction::ToCore => "to_core",
            Direction::ToAs => "to_as",
            Direction::FromUe => "from_ue",
            Direction::FromCore => "from_core",
            Direction::FromAs => "from_as",
        }
    }

    /// The direction of a file key.
    pub fn from_key(key: &str) -> Option<Direction> {
        Direction::ALL.into_iter().find(|d| d.key() == key)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Why a rules text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not TOML at all.
    #[error("not valid TOML: {0}")]
    Toml(String),
    /// A top-level key that is no direction.
    #[error(
        "unknown direction {0:?}: expected to_ue, to_core, to_as, from_ue, from_core or from_as"
    )]
    UnknownDirection(String),
    /// A direction that is not an array of tables.
    #[error("{0} must be an array of rules ([[{0}]])")]
    NotAList(&'static str),
    /// One rule is wrong.
    #[error("{direction} rule {rule:?}: {what}")]
    Rule {
        /// Its direction.
        direction: &'static str,
        /// Its name, or `#n` (1-based position) when it has none.
        rule: String,
        /// What is wrong.
        what: String,
    },
}

/// A rules file could not be used: [`RuleError`] with the file's path, or why it could
/// not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("rewrite rules {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is read but invalid.
    #[error("rewrite rules {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: RuleError,
    },
}

/// What [`RuleSet::apply`] did to one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The message's bytes differ from before.
    pub changed: bool,
    /// The DSCP (0–63) the message must be sent with; the last matching rule that sets one
    /// wins.
    pub dscp: Option<u8>,
    /// Names of the rules that matched, in order.
    pub rules: Vec<Arc<str>>,
    /// Edits that could not be made (an SDP body that does not parse, a codec removal
    /// that would leave an `m=` line without formats); the message went on without them.
    pub warnings: Vec<String>,
}

impl Outcome {
    /// True when some rule matched.
    pub fn matched(&self) -> bool {
        !self.rules.is_empty()
    }
}

/// [`RuleSet::apply_bytes`]'s result for a message some rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The new wire form; `None` when no rule changed the bytes (only a DSCP was set).
    pub bytes: Option<Bytes>,
    /// What was done.
    pub outcome: Outcome,
}

/// The validated rules of all directions. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct RuleSet {
    dirs: [Vec<Rule>; 6],
}

impl RuleSet {
    /// Parses and validates a rules text (see the crate docs for its shape).
    pub fn load(text: &str) -> Result<RuleSet, RuleError> {
        def::load(text)
    }

    /// Reads and loads a rules file; errors name the file.
    pub fn load_file(path: &Path) -> Result<RuleSet, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.into(),
            source,
        })?;
        RuleSet::load(&text).map_err(|source| FileError::Invalid {
            path: path.into(),
            source,
        })
    }

    /// Whether `dir` has rules; without, nothing needs parsing at all.
    pub fn has_rules(&self, dir: Direction) -> bool {
        !self.dirs[dir.index()].is_empty()
    }

    /// Number of rules over all directions.
    pub fn len(&self) -> usize {
        self.dirs.iter().map(Vec::len).sum()
    }

    /// True when no direction has a rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rule names of `dir`, in order.
    pub fn names(&self, dir: Direction) -> impl Iterator<Item = &str> {
        self.dirs[dir.index()].iter().map(|r| &*r.name)
    }

    /// Runs the rules of `dir` over `msg` in order, editing it in place.
    pub fn apply(&self, dir: Direction, msg: &mut Message) -> Outcome {
        let mut out = Outcome::default();
        for rule in &self.dirs[dir.index()] {
            if rule.matches(msg) {
                out.rules.push(rule.name.clone());
                rule.act(msg, &mut out);
            }
        }
        out
    }

    /// [`RuleSet::apply`] on wire bytes. `None` when no rule of `dir` matched, or the
    /// bytes are no SIP message (the caller's own parser will say why): the caller sends
    /// or handles `data` exactly as it was, and a direction without rules costs no parse.
    pub fn apply_bytes(&self, dir: Direction, data: &Bytes, limits: &Limits) -> Option<Rewrite> {
        if !self.has_rules(dir) {
            return None;
        }
        let mut msg = Message::parse_bytes(data.clone(), limits, Framing::Datagram).ok()?;
        let outcome = self.apply(dir, &mut msg);
        if !outcome.matched() {
            return None;
        }
        let bytes = outcome.changed.then(|| Bytes::from(msg.to_bytes()));
        Some(Rewrite { bytes, outcome })
    }
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    kind: Option<Kind>,
    methods: Vec<Method>,
    status: Vec<RangeInclusive<u16>>,
    headers: Vec<HeaderMatch>,
    remove_header: Vec<RemoveHeader>,
    replace_header: Vec<ReplaceHeader>,
    add_header: Vec<(String, String)>,
    remove_codecs: Vec<String>,
    remove_sdp_attributes: Vec<String>,
    map_status: Option<(u16, String)>,
    dscp: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
}

#[derive(Debug)]
struct HeaderMatch {
    name: String,
    value: Option<Regex>,
    absent: bool,
}

#[derive(Debug)]
struct RemoveHeader {
    name: String,
    value: Option<Regex>,
}

#[derive(Debug)]
struct ReplaceHeader {
    name: String,
    pattern: Regex,
    with: String,
}

impl Rule {
    fn matches(&self, msg: &Message) -> bool {
        let code = msg.code();
        match (self.kind, code) {
            (Some(Kind::Request), Some(_)) | (Some(Kind::Response), None) => return false,
            _ => {}
        }
        if !self.status.is_empty() {
            match code {
                Some(c) if self.status.iter().any(|r| r.contains(&c)) => {}
                _ => return false,
            }
        }
        if !self.methods.is_empty() {
            let ok = match msg.method() {
                Some(m) => self.methods.contains(m),
                // A response belongs to the request its CSeq names (RFC 3261 §8.1.3.5).
                None => msg.cseq().is_ok_and(|c| self.methods.contains(&c.method)),
            };
            if !ok {
                return false;
            }
        }
        self.headers.iter().all(|h| {
            let mut values = msg.headers_named(&h.name);
            let found = match &h.value {
                Some(re) => values.any(|v| re.is_match(v)),
                None => values.next().is_some(),
            };
            found != h.absent
        })
    }

    fn act(&self, msg: &mut Message, out: &mut Outcome) {
        for r in &self.remove_header {
            let removed = match &r.value {
                None => msg.remove_header(&r.name) > 0,
                Some(re) => edit::remove_matching(msg, &r.name, re),
            };
            out.changed |= removed;
        }
        for r in &self.replace_header {
            msg.rewrite_headers(&r.name, |v| {
                let new = r.pattern.replace_all(v, r.with.as_str());
                if new == v {
                    None
                } else {
                    out.changed = true;
                    Some(new.into_owned())
                }
            });
        }
        for (name, value) in &self.add_header {
            msg.append_header(name, value);
            out.changed = true;
        }
        if !self.remove_codecs.is_empty() || !self.remove_sdp_attributes.is_empty() {
            out.changed |= edit::edit_sdp(
                msg,
                &self.remove_codecs,
                &self.remove_sdp_attributes,
                &mut out.warnings,
            );
        }
        if let Some((code, reason)) = &self.map_status {
            if msg.code() != Some(*code) || msg.reason() != Some(reason.as_str()) {
                msg.set_status(*code, reason);
                out.changed = true;
            }
        }
        if self.dscp.is_some() {
            out.dscp = self.dscp;
        }
    }
}

#[cfg(test)]
mod tests;
