//! The SDP body: parsed line by line, every line keeping its original bytes.
//!
//! A proxy must relay the body it received byte for byte, and an application that edits one
//! line must not reformat the others (other stacks compare `o=` and whole bodies to detect a
//! changed offer, RFC 3264 §8). So each line stores its raw bytes, line ending included, beside
//! its typed value; [`Session::to_bytes`] concatenates the raw bytes, and an edit re-renders
//! only the line it changes.

use crate::attr::{Attribute, DesiredStatus, Direction, Fmtp, Rtcp, Rtpmap, StatusLine};
use crate::error::SdpError;
use crate::model::{Bandwidth, BwType, Connection, Field, MediaLine, Origin, Timing};

/// The line ending used for lines this crate writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// `\r\n`, what RFC 8866 §5 asks for.
    CrLf,
    /// `\n`, which RFC 8866 §5 tells parsers to accept.
    Lf,
}

impl LineEnding {
    fn bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
        }
    }

    fn of(raw: &[u8]) -> Option<Self> {
        if raw.ends_with(b"\r\n") {
            Some(LineEnding::CrLf)
        } else if raw.ends_with(b"\n") {
            Some(LineEnding::Lf)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    raw: Vec<u8>,
    field: Field,
}

impl Line {
    fn fresh(field: Field, eol: Option<LineEnding>) -> Line {
        let mut raw = field.to_string().into_bytes();
        if let Some(e) = eol {
            raw.extend_from_slice(e.bytes());
        }
        Line { raw, field }
    }
}

/// A list of lines with the RFC 8866 §5 order of its letters, shared by the session part
/// and each media description.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    lines: Vec<Line>,
    eol: LineEnding,
    media_level: bool,
}

fn session_rank(c: char) -> u8 {
    match c {
        'v' => 0,
        'o' => 1,
        's' => 2,
        'i' => 3,
        'u' => 4,
        'e' => 5,
        'p' => 6,
        'c' => 7,
        'b' => 8,
        't' => 9,
        'r' => 10,
        'z' => 11,
        'k' => 12,
        'a' => 13,
        _ => 14,
    }
}

fn media_rank(c: char) -> u8 {
    match c {
        'm' => 0,
        'i' => 1,
        'c' => 2,
        'b' => 3,
        'k' => 4,
        'a' => 5,
        _ => 6,
    }
}

impl Section {
    fn rank(&self, c: char) -> u8 {
        if self.media_level {
            media_rank(c)
        } else {
            session_rank(c)
        }
    }

    fn fields(&self) -> impl Iterator<Item = &Field> {
        self.lines.iter().map(|l| &l.field)
    }

    fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.fields().filter_map(|f| match f {
            Field::Attribute(a) => Some(a),
            _ => None,
        })
    }

    fn find<T: ?Sized>(&self, pick: impl Fn(&Field) -> Option<&T>) -> Option<&T> {
        self.fields().find_map(pick)
    }

    /// Inserts after the last line whose letter may precede the new one.
    fn insert(&mut self, field: Field) {
        let rank = self.rank(field.kind());
        let at = self
            .lines
            .iter()
            .rposition(|l| self.rank(l.field.kind()) <= rank)
            .map_or(0, |i| i + 1);
        // The line before may be the unterminated last line of the input.
        if at > 0 {
            let prev = &mut self.lines[at - 1];
            if LineEnding::of(&prev.raw).is_none() {
                prev.raw.extend_from_slice(self.eol.bytes());
            }
        }
        self.lines.insert(at, Line::fresh(field, Some(self.eol)));
    }

    /// Re-renders line `i`, keeping its own line ending.
    fn replace(&mut self, i: usize, field: Field) {
        let eol = LineEnding::of(&self.lines[i].raw);
        self.lines[i] = Line::fresh(field, eol);
    }

    /// Replaces the first line `matches` selects and drops the others, or inserts.
    fn set_unique(&mut self, field: Field, matches: impl Fn(&Field) -> bool) {
        match self.lines.iter().position(|l| matches(&l.field)) {
            Some(i) => {
                if self.lines[i].field != field {
                    self.replace(i, field);
                }
                let mut k = 0;
                self.lines.retain(|l| {
                    k += 1;
                    k - 1 == i || !matches(&l.field)
                });
            }
            None => self.insert(field),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Field) -> bool) {
        self.lines.retain(|l| keep(&l.field));
    }

    fn write(&self, out: &mut Vec<u8>) {
        for l in &self.lines {
            // Only the input's last line can lack an ending; once lines follow it, it needs one.
            if LineEnding::of(out).is_none() && !out.is_empty() {
                out.extend_from_slice(self.eol.bytes());
            }
            out.extend_from_slice(&l.raw);
        }
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        for l in &self.lines {
            out.extend_from_slice(l.field.to_string().as_bytes());
            out.extend_from_slice(self.eol.bytes());
        }
    }
}

fn attr(f: &Field) -> Option<&Attribute> {
    match f {
        Field::Attribute(a) => Some(a),
        _ => None,
    }
}

fn is_direction(f: &Field) -> bool {
    matches!(f, Field::Attribute(Attribute::Direction(_)))
}

/// A parsed SDP session description (RFC 8866 §5): session-level lines and media
/// descriptions, each line holding its original bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    head: Section,
    media: Vec<Media>,
    /// Empty lines after the last line, which some stacks append; kept for byte identity.
    trailer: Vec<u8>,
}

/// One media description: the `m=` line and the lines up to the next `m=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    sec: Section,
}

impl Session {
    /// Parses an SDP body. Accepts CRLF and bare LF line endings (RFC 8866 §5) and empty lines
    /// at the very end; never panics. Requires `v=0` first, one `o=` and one `s=`.
    ///
    /// Attributes this crate types (rtpmap, fmtp, ptime, maxptime, directions, rtcp, mid,
    /// curr/des/conf) must be well formed; other attributes and unknown line letters are kept
    /// as text.
    pub fn parse(input: &[u8]) -> Result<Session, SdpError> {
        let mut raw_lines: Vec<(&[u8], &[u8])> = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            let (raw, content) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let c = &rest[..i];
                    (&rest[..=i], c.strip_suffix(b"\r").unwrap_or(c))
                }
                None => (rest, rest),
            };
            pos += raw.len();
            raw_lines.push((raw, content));
        }
        let used = raw_lines
            .iter()
            .rposition(|(_, c)| !c.is_empty())
            .map_or(0, |i| i + 1);
        if used == 0 {
            return Err(SdpError::Missing('v'));
        }
        let eol = LineEnding::of(raw_lines[0].0).unwrap_or(LineEnding::CrLf);
        let mut head = Section {
            lines: Vec::new(),
            eol,
            media_level: false,
        };
        let mut media: Vec<Media> = Vec::new();
        let (mut seen_o, mut seen_s) = (false, false);
        for (i, &(raw, content)) in raw_lines[..used].iter().enumerate() {
            let n = i + 1;
            let field = parse_line(n, content)?;
            let kind = field.kind();
            if n == 1 && kind != 'v' {
                return Err(SdpError::line(n, "the first line must be v=0"));
            }
            let line = Line {
                raw: raw.to_vec(),
                field,
            };
            if kind == 'm' {
                media.push(Media {
                    sec: Section {
                        lines: vec![line],
                        eol,
                        media_level: true,
                    },
                });
                continue;
            }
            if let Some(m) = media.last_mut() {
                if matches!(kind, 'v' | 'o' | 's' | 't' | 'r' | 'z' | 'u' | 'e' | 'p') {
                    return Err(SdpError::line(
                        n,
                        format!("{kind}= is not allowed inside a media description"),
                    ));
                }
                m.sec.lines.push(line);
                continue;
            }
            let dup = match kind {
                'v' => n != 1,
                'o' => std::mem::replace(&mut seen_o, true),
                's' => std::mem::replace(&mut seen_s, true),
                _ => false,
            };
            if dup {
                return Err(SdpError::line(n, format!("second {kind}= line")));
            }
            head.lines.push(line);
        }
        if !seen_o {
            return Err(SdpError::Missing('o'));
        }
        if !seen_s {
            return Err(SdpError::Missing('s'));
        }
        let trailer = raw_lines[used..].iter().flat_map(|(r, _)| r.iter()).copied();
        Ok(Session {
            head,
            media,
            trailer: trailer.collect(),
        })
    }

    /// A new session description: `v=0`, the origin, `s=-`, `t=0 0`, lines ending in CRLF.
    pub fn new(origin: Origin) -> Session {
        let eol = LineEnding::CrLf;
        let lines = [
            Field::Version(0),
            Field::Origin(origin),
            Field::SessionName("-".to_owned()),
            Field::Timing(Timing { start: 0, stop: 0 }),
        ]
        .into_iter()
        .map(|f| Line::fresh(f, Some(eol)))
        .collect();
        Session {
            head: Section {
                lines,
                eol,
                media_level: false,
            },
            media: Vec::new(),
            trailer: Vec::new(),
        }
    }

    /// The body: the parsed bytes exactly, except for lines edited since.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.head.write(&mut out);
        for m in &self.media {
            m.sec.write(&mut out);
        }
        out.extend_from_slice(&self.trailer);
        out
    }

    /// The body re-rendered from the typed values, every line in canonical form (single
    /// spaces, this session's line ending, no trailing empty lines).
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.head.write_canonical(&mut out);
        for m in &self.media {
            m.sec.write_canonical(&mut out);
        }
        out
    }

    /// The line ending of the first line, used for lines this session writes.
    pub fn line_ending(&self) -> LineEnding {
        self.head.eol
    }

    /// Session-level lines, in order.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.head.fields()
    }

    /// Session-level attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.head.attributes()
    }

    /// `o=`.
    pub fn origin(&self) -> &Origin {
        match self.head.find(|f| match f {
            Field::Origin(o) => Some(o),
            _ => None,
        }) {
            Some(o) => o,
            // parse() rejects a body without o=, new() writes one, and set_unique only ever
            // replaces it.
            None => unreachable!("session without o= line"),
        }
    }

    /// Replaces `o=`.
    pub fn set_origin(&mut self, origin: Origin) {
        self.head
            .set_unique(Field::Origin(origin), |f| matches!(f, Field::Origin(_)));
    }

    /// Increments the `o=` session version, as every changed offer must (RFC 3264 §8).
    pub fn bump_version(&mut self) {
        let mut o = self.origin().clone();
        o.session_version = o.session_version.wrapping_add(1);
        self.set_origin(o);
    }

    /// `s=`.
    pub fn session_name(&self) -> Option<&str> {
        self.head.find(|f| match f {
            Field::SessionName(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Session-level `c=`.
    pub fn connection(&self) -> Option<&Connection> {
        self.head.find(|f| match f {
            Field::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// Sets the session-level `c=`.
    pub fn set_connection(&mut self, c: Connection) {
        self.head
            .set_unique(Field::Connection(c), |f| matches!(f, Field::Connection(_)));
    }

    /// Session-level `b=` lines.
    pub fn bandwidths(&self) -> impl Iterator<Item = &Bandwidth> {
        self.head.fields().filter_map(|f| match f {
            Field::Bandwidth(b) => Some(b),
            _ => None,
        })
    }

    /// Sets the session-level `b=` line of this modifier.
    pub fn set_bandwidth(&mut self, b: Bandwidth) {
        let kind = b.kind.clone();
        self.head.set_unique(
            Field::Bandwidth(b),
            |f| matches!(f, Field::Bandwidth(x) if x.kind == kind),
        );
    }

    /// `t=` lines.
    pub fn timings(&self) -> impl Iterator<Item = &Timing> {
        self.head.fields().filter_map(|f| match f {
            Field::Timing(t) => Some(t),
            _ => None,
        })
    }

    /// Session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.head.attributes().find_map(|a| match a {
            Attribute::Direction(d) => Some(*d),
            _ => None,
        })
    }

    /// Sets the session-level direction attribute.
    pub fn set_direction(&mut self, d: Direction) {
        self.head
            .set_unique(Field::Attribute(Attribute::Direction(d)), is_direction);
    }

    /// Appends a session-level attribute.
    pub fn push_attribute(&mut self, a: Attribute) {
        self.head.insert(Field::Attribute(a));
    }

    /// Keeps the session-level attributes `keep` accepts.
    pub fn retain_attributes(&mut self, mut keep: impl FnMut(&Attribute) -> bool) {
        self.head.retain(|f| attr(f).is_none_or(&mut keep));
    }

    /// The media descriptions in order.
    pub fn media(&self) -> &[Media] {
        &self.media
    }

    /// The media descriptions, for editing.
    pub fn media_mut(&mut self) -> &mut [Media] {
        &mut self.media
    }

    /// Appends a media description.
    pub fn push_media(&mut self, m: Media) {
        self.media.push(m);
    }

    /// The direction in force for media description `index`: its own attribute, else the
    /// session's, else sendrecv (RFC 8866 §6.7). `None` if there is no such media.
    pub fn media_direction(&self, index: usize) -> Option<Direction> {
        let m = self.media.get(index)?;
        Some(
            m.direction()
                .or_else(|| self.direction())
                .unwrap_or(Direction::SendRecv),
        )
    }

    /// The connection in force for media description `index`: its own `c=`, else the
    /// session's.
    pub fn media_connection(&self, index: usize) -> Option<&Connection> {
        let m = self.media.get(index)?;
        m.connection().or_else(|| self.connection())
    }
}

fn parse_line(n: usize, content: &[u8]) -> Result<Field, SdpError> {
    if content.contains(&b'\r') {
        return Err(SdpError::line(n, "carriage return inside the line"));
    }
    if content.contains(&0) {
        return Err(SdpError::line(n, "NUL byte in the line"));
    }
    let text = std::str::from_utf8(content)
        .map_err(|e| SdpError::line(n, format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    if content.is_empty() {
        return Err(SdpError::line(n, "empty line"));
    }
    let (kind, value) = match text.as_bytes() {
        [k, b'=', ..] if k.is_ascii_alphabetic() => (char::from(*k), &text[2..]),
        _ => return Err(SdpError::line(n, "expected <letter>=<value>")),
    };
    Field::parse(kind, value).map_err(|what| SdpError::line(n, what))
}

/// A static RTP/AVP payload type's rtpmap (RFC 3551 §6), for formats offered without one.
fn static_rtpmap(pt: u8) -> Option<Rtpmap> {
    let (enc, rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        18 => ("G729", 8000),
        _ => return None,
    };
    Some(Rtpmap::new(pt, enc, rate))
}

/// One RTP format of a media description with its rtpmap and fmtp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// Payload type.
    pub payload_type: u8,
    /// The `a=rtpmap`, or the RFC 3551 static assignment for 0–34 without one.
    pub rtpmap: Option<Rtpmap>,
    /// The `a=fmtp` parameters, if any.
    pub fmtp: Option<String>,
}

impl Media {
    /// A media description with only its `m=` line, lines ending in CRLF.
    pub fn new(line: MediaLine) -> Media {
        Media {
            sec: Section {
                lines: vec![Line::fresh(Field::Media(line), Some(LineEnding::CrLf))],
                eol: LineEnding::CrLf,
                media_level: true,
            },
        }
    }

    /// All lines of the description, `m=` first.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.sec.fields()
    }

    /// The `m=` line.
    pub fn line(&self) -> &MediaLine {
        match self.sec.lines.first().map(|l| &l.field) {
            Some(Field::Media(m)) => m,
            // Every Media is built from an m= line, which stays first (rank 0) and is only
            // replaced by set_line with another m= line.
            _ => unreachable!("media description without m= line"),
        }
    }

    /// Replaces the `m=` line.
    pub fn set_line(&mut self, line: MediaLine) {
        if *self.line() != line {
            self.sec.replace(0, Field::Media(line));
        }
    }

    /// Sets the port (0 rejects or disables the stream, RFC 3264 §6, §8.2).
    pub fn set_port(&mut self, port: u16) {
        let mut l = self.line().clone();
        l.port = port;
        self.set_line(l);
    }

    /// The `c=` of this media description (not the session's; see
    /// [`Session::media_connection`]).
    pub fn connection(&self) -> Option<&Connection> {
        self.sec.find(|f| match f {
            Field::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// Sets this description's `c=`.
    pub fn set_connection(&mut self, c: Connection) {
        self.sec
            .set_unique(Field::Connection(c), |f| matches!(f, Field::Connection(_)));
    }

    /// Media-level `b=` lines.
    pub fn bandwidths(&self) -> impl Iterator<Item = &Bandwidth> {
        self.sec.fields().filter_map(|f| match f {
            Field::Bandwidth(b) => Some(b),
            _ => None,
        })
    }

    /// The `b=` value of a modifier.
    pub fn bandwidth(&self, kind: &BwType) -> Option<u64> {
        self.bandwidths().find(|b| b.kind == *kind).map(|b| b.value)
    }

    /// Sets the media-level `b=` line of this modifier.
    pub fn set_bandwidth(&mut self, b: Bandwidth) {
        let kind = b.kind.clone();
        self.sec.set_unique(
            Field::Bandwidth(b),
            |f| matches!(f, Field::Bandwidth(x) if x.kind == kind),
        );
    }

    /// Media-level attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.sec.attributes()
    }

    /// Appends an attribute after the existing ones.
    pub fn push_attribute(&mut self, a: Attribute) {
        self.sec.insert(Field::Attribute(a));
    }

    /// Keeps the attributes `keep` accepts; other lines are untouched.
    pub fn retain_attributes(&mut self, mut keep: impl FnMut(&Attribute) -> bool) {
        self.sec.retain(|f| attr(f).is_none_or(&mut keep));
    }

    /// The rtpmap of a payload type.
    pub fn rtpmap(&self, pt: u8) -> Option<&Rtpmap> {
        self.attributes().find_map(|a| match a {
            Attribute::Rtpmap(r) if r.payload_type == pt => Some(r),
            _ => None,
        })
    }

    /// The fmtp of a format (payload type number as text for RTP).
    pub fn fmtp(&self, format: &str) -> Option<&Fmtp> {
        self.attributes().find_map(|a| match a {
            Attribute::Fmtp(x) if x.format == format => Some(x),
            _ => None,
        })
    }

    /// The RTP formats in `m=` order with their rtpmap and fmtp.
    pub fn codecs(&self) -> Vec<Codec> {
        self.line()
            .payload_types()
            .into_iter()
            .map(|pt| Codec {
                payload_type: pt,
                rtpmap: self.rtpmap(pt).cloned().or_else(|| static_rtpmap(pt)),
                fmtp: self.fmtp(&pt.to_string()).map(|f| f.params.clone()),
            })
            .collect()
    }

    /// `a=ptime`.
    pub fn ptime(&self) -> Option<u32> {
        self.attributes().find_map(|a| match a {
            Attribute::Ptime(p) => Some(*p),
            _ => None,
        })
    }

    /// `a=maxptime`.
    pub fn maxptime(&self) -> Option<u32> {
        self.attributes().find_map(|a| match a {
            Attribute::Maxptime(p) => Some(*p),
            _ => None,
        })
    }

    /// This description's own direction attribute.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes().find_map(|a| match a {
            Attribute::Direction(d) => Some(*d),
            _ => None,
        })
    }

    /// Sets this description's direction attribute (the first one is rewritten in place).
    pub fn set_direction(&mut self, d: Direction) {
        self.sec
            .set_unique(Field::Attribute(Attribute::Direction(d)), is_direction);
    }

    /// `a=rtcp`.
    pub fn rtcp(&self) -> Option<&Rtcp> {
        self.attributes().find_map(|a| match a {
            Attribute::Rtcp(r) => Some(r),
            _ => None,
        })
    }

    /// `a=mid`.
    pub fn mid(&self) -> Option<&str> {
        self.attributes().find_map(|a| match a {
            Attribute::Mid(m) => Some(m.as_str()),
            _ => None,
        })
    }

    /// `a=curr` lines.
    pub fn curr(&self) -> impl Iterator<Item = &StatusLine> {
        self.attributes().filter_map(|a| match a {
            Attribute::Curr(s) => Some(s),
            _ => None,
        })
    }

    /// `a=des` lines.
    pub fn des(&self) -> impl Iterator<Item = &DesiredStatus> {
        self.attributes().filter_map(|a| match a {
            Attribute::Des(s) => Some(s),
            _ => None,
        })
    }

    /// `a=conf` lines.
    pub fn conf(&self) -> impl Iterator<Item = &StatusLine> {
        self.attributes().filter_map(|a| match a {
            Attribute::Conf(s) => Some(s),
            _ => None,
        })
    }
}
