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
        let trailer = raw_lines[used..]
            .iter()
            .flat_map(|(r, _)| r.iter())
            .copied();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{PrecondDirection, StatusType};

    const OFFER: &str = "v=0\r\n\
o=- 100 1 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 4000 RTP/AVP 96 8 101\r\n\
b=AS:41\r\n\
a=rtpmap:96 AMR/8000/1\r\n\
a=fmtp:96 octet-align=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=maxptime:240\r\n\
a=curr:qos local none\r\n\
a=des:qos mandatory local sendrecv\r\n\
a=sendonly\r\n\
a=rtcp:4001 IN IP4 192.0.2.10\r\n\
a=mid:1\r\n\
a=x-vendor:some thing\r\n";

    fn err_line(input: &str) -> usize {
        match Session::parse(input.as_bytes()) {
            Err(SdpError::Line { line, .. }) => line,
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn typed_access() {
        let s = Session::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(s.origin().session_version, 1);
        assert_eq!(s.origin().address, "192.0.2.10");
        assert_eq!(s.session_name(), Some("-"));
        assert_eq!(
            s.connection().and_then(Connection::ip),
            Some("192.0.2.10".parse().unwrap())
        );
        assert_eq!(s.timings().count(), 1);
        let m = &s.media()[0];
        assert_eq!(m.line().port, 4000);
        assert_eq!(m.line().formats, ["96", "8", "101"]);
        assert_eq!(m.bandwidth(&BwType::As), Some(41));
        assert_eq!(m.ptime(), Some(20));
        assert_eq!(m.maxptime(), Some(240));
        assert_eq!(m.direction(), Some(Direction::SendOnly));
        assert_eq!(s.media_direction(0), Some(Direction::SendOnly));
        assert_eq!(m.rtcp().map(|r| r.port), Some(4001));
        assert_eq!(m.mid(), Some("1"));
        let curr: Vec<_> = m.curr().collect();
        assert_eq!(
            curr,
            [&StatusLine::qos(StatusType::Local, PrecondDirection::None)]
        );
        assert_eq!(m.des().count(), 1);
        let codecs = m.codecs();
        assert_eq!(codecs.len(), 3);
        assert_eq!(codecs[0].fmtp.as_deref(), Some("octet-align=1"));
        // PCMA is static (RFC 3551) and has no rtpmap line here.
        assert_eq!(
            codecs[1].rtpmap.as_ref().map(|r| r.encoding.as_str()),
            Some("PCMA")
        );
        assert!(m.attributes().any(|a| matches!(
            a,
            Attribute::Other { name, value: Some(v) } if name == "x-vendor" && v == "some thing"
        )));
    }

    #[test]
    fn unedited_parse_is_byte_identical() {
        let lf = OFFER.replace("\r\n", "\n");
        let no_final = OFFER.trim_end().to_owned();
        let trailer = format!("{OFFER}\r\n\r\n");
        let mixed = OFFER.replacen("\r\n", "\n", 3);
        for input in [OFFER, &lf, &no_final, &trailer, &mixed] {
            let s = Session::parse(input.as_bytes()).unwrap();
            assert_eq!(s.to_bytes(), input.as_bytes());
        }
        // Canonical rendering of a canonical body is the body too.
        let s = Session::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(s.to_canonical_bytes(), OFFER.as_bytes());
    }

    #[test]
    fn edits_touch_only_edited_lines() {
        // Odd spacing and LF endings that a rewrite of the whole body would lose.
        let input = OFFER
            .replace("\r\n", "\n")
            .replace("o=- 100 1", "o=-  100   1")
            .replace("c=IN IP4 192.0.2.10", "c=IN  IP4 192.0.2.10");
        let mut s = Session::parse(input.as_bytes()).unwrap();
        s.media_mut()[0].set_port(5000);
        s.media_mut()[0].set_direction(Direction::SendRecv);
        let expect = input
            .replace("m=audio 4000", "m=audio 5000")
            .replace("a=sendonly", "a=sendrecv");
        assert_eq!(String::from_utf8(s.to_bytes()).unwrap(), expect);

        s.bump_version();
        let expect = expect.replace("o=-  100   1", "o=- 100 2");
        assert_eq!(String::from_utf8(s.to_bytes()).unwrap(), expect);

        // A new line uses the body's own line ending and goes to its RFC 8866 place.
        s.set_bandwidth(Bandwidth::new(BwType::As, 64));
        let expect = expect.replace("t=0 0\n", "b=AS:64\nt=0 0\n");
        assert_eq!(String::from_utf8(s.to_bytes()).unwrap(), expect);
    }

    #[test]
    fn appending_after_an_unterminated_last_line() {
        let mut s =
            Session::parse(b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nm=audio 9 RTP/AVP 0").unwrap();
        s.media_mut()[0].push_attribute(Attribute::Ptime(20));
        assert_eq!(
            s.to_bytes(),
            b"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nm=audio 9 RTP/AVP 0\na=ptime:20\n"
        );
        let mut s = Session::parse(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-").unwrap();
        s.push_media(Media::new(MediaLine::audio(9, &[0])));
        assert_eq!(
            s.to_bytes(),
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 9 RTP/AVP 0\r\n"
        );
    }

    #[test]
    fn retain_and_session_level_direction() {
        let mut s = Session::parse(OFFER.replace("a=sendonly\r\n", "").as_bytes()).unwrap();
        assert_eq!(s.media_direction(0), Some(Direction::SendRecv));
        s.set_direction(Direction::Inactive);
        assert_eq!(s.direction(), Some(Direction::Inactive));
        assert_eq!(s.media_direction(0), Some(Direction::Inactive));
        assert!(String::from_utf8(s.to_bytes())
            .unwrap()
            .contains("t=0 0\r\na=inactive\r\nm=audio"));
        s.media_mut()[0].retain_attributes(|a| !a.is_precondition());
        assert_eq!(s.media()[0].curr().count(), 0);
        assert_eq!(s.media()[0].des().count(), 0);
        assert_eq!(s.media_mut().len(), 1);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(err_line("v=1\r\n"), 1);
        assert_eq!(err_line("o=- 1 1 IN IP4 x\r\n"), 1);
        assert_eq!(err_line("v=0\r\no=- 1\r\ns=-\r\n"), 2);
        assert_eq!(err_line("v=0\r\no=- x 1 IN IP4 a\r\ns=-\r\n"), 2);
        let bad = |line: &str, n: usize| {
            let body = OFFER.replace("a=ptime:20", line);
            assert_eq!(err_line(&body), n, "{line}");
        };
        bad("a=rtpmap:96 AMR", 12);
        bad("a=rtpmap:200 AMR/8000", 12);
        bad("a=rtpmap:96 AMR/fast", 12);
        bad("a=ptime:twenty", 12);
        bad("a=curr:qos sideways none", 12);
        bad("a=des:qos hard local sendrecv", 12);
        bad("a=des:qos mandatory local both", 12);
        bad("a=conf:qos local", 12);
        bad("a=sendrecv:yes", 12);
        bad("a=rtcp:port", 12);
        bad("a=mid:", 12);
        bad("a=fmtp:", 12);
        bad("a=bad name", 12);
        bad("b=AS", 12);
        bad("c=IN IP4", 12);
        bad("t=0 0", 12);
        bad("o=- 1 1 IN IP4 a", 12);
        bad("", 12);
        bad("noequals", 12);
        bad("=x", 12);
        bad("a=ptime:20\rx", 12);
        bad("m=audio 70000 RTP/AVP 0", 12);
        bad("m=audio 4000/x RTP/AVP 0", 12);
        bad("m=audio 4000 RTP/AVP", 12);
        let mut non_utf8 = OFFER.as_bytes().to_vec();
        non_utf8[3] = b'\n';
        non_utf8.splice(4..4, [b's', b'=', 0xff, b'\n']);
        assert!(matches!(
            Session::parse(&non_utf8),
            Err(SdpError::Line { line: 2, .. })
        ));
        assert_eq!(Session::parse(b""), Err(SdpError::Missing('v')));
        assert_eq!(Session::parse(b"\r\n\r\n"), Err(SdpError::Missing('v')));
        assert_eq!(
            Session::parse(b"v=0\r\ns=-\r\n"),
            Err(SdpError::Missing('o'))
        );
        assert_eq!(
            Session::parse(b"v=0\r\no=- 1 1 IN IP4 a\r\n"),
            Err(SdpError::Missing('s'))
        );
        assert_eq!(err_line("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\ns=x\r\n"), 4);
        let msg = |body: &str| Session::parse(body.as_bytes()).unwrap_err().to_string();
        let head = "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\n";
        assert_eq!(
            msg(&format!("{head}a=rtpmap:96 AMR\r\n")),
            "line 4: a=rtpmap has no clock rate"
        );
        assert_eq!(
            msg(&format!("{head}m=audio 4000 RTP/AVP 0\r\nt=0 0\r\n")),
            "line 5: t= is not allowed inside a media description"
        );
        assert_eq!(
            msg(&format!("{head}a=des:qos mandatory local both\r\n")),
            "line 4: direction \"both\" is not none/send/recv/sendrecv"
        );
        assert_eq!(msg(&format!("{head}\r\nt=0 0\r\n")), "line 4: empty line");
    }

    #[test]
    fn unknown_letters_are_kept() {
        let input = "v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\ni=info\r\nu=http://x\r\nx=whatever\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\ni=media title\r\nk=prompt\r\n";
        let s = Session::parse(input.as_bytes()).unwrap();
        assert_eq!(s.to_bytes(), input.as_bytes());
        assert_eq!(s.to_canonical_bytes(), input.as_bytes());
        assert!(s.fields().any(|f| *f
            == Field::Other {
                kind: 'x',
                value: "whatever".into()
            }));
    }
}
