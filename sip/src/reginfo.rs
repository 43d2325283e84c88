//! The registration state document of the reg event package (RFC 3680 §5.3,
//! `application/reginfo+xml`): written by the S-CSCF's notifier ([`RegInfo`]'s `Display`,
//! TS 24.229 §5.4.2.1.2), read by the UE and the P-CSCF that subscribe to it (§5.1.1.3,
//! §5.2.3).
//!
//! Typed and tolerant the way a handset must be: namespace prefixes, comments, whitespace
//! and unknown elements or attributes (extensions such as `gr:pub-gruu` or
//! `unknown-param`) are ignored; what the UE acts on — the `state` and `event` of its own
//! contact — must be one of RFC 3680's values, else the document is refused with a typed
//! [`RegInfoError`]. Input from the network never makes it panic, and its size is bounded
//! ([`MAX_DEPTH`], [`MAX_ELEMENTS`]).

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::Uri;

/// Most nested elements accepted (reginfo needs 4: reginfo/registration/contact/uri).
pub const MAX_DEPTH: usize = 16;
/// Most elements accepted in one document (a guard against memory blow-up).
pub const MAX_ELEMENTS: usize = 4096;

/// Why a reginfo document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegInfoError {
    /// Not well-formed XML (as reported by quick-xml).
    #[error("malformed XML: {0}")]
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`] or more than [`MAX_ELEMENTS`] elements.
    #[error("document too large or too deeply nested")]
    TooLarge,
    /// The document has no root element.
    #[error("no root element")]
    Empty,
    /// The root element is not `reginfo`.
    #[error("root element is <{0}>, expected <reginfo>")]
    WrongRoot(String),
    /// A mandatory attribute is absent (RFC 3680 §5.3 schema).
    #[error("<{element}> lacks attribute {attribute}")]
    MissingAttribute {
        /// the element
        element: &'static str,
        /// the attribute
        attribute: &'static str,
    },
    /// An attribute's value is not one the schema allows.
    #[error("<{element}> has invalid {attribute}={value:?}")]
    InvalidAttribute {
        /// the element
        element: &'static str,
        /// the attribute
        attribute: &'static str,
        /// its value
        value: String,
    },
    /// A `contact` without its mandatory `uri` element.
    #[error("<contact> without <uri>")]
    MissingUri,
}

/// Whether the document is the whole state or a change (RFC 3680 §5.3 `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocState {
    /// The complete registration state.
    Full,
    /// Only what changed since the previous version.
    Partial,
}

/// The state of one address-of-record's registration (RFC 3680 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// Being set up (no active contact yet).
    Init,
    /// At least one active contact.
    Active,
    /// No contact left.
    Terminated,
}

/// The state of one contact (RFC 3680 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    /// Bound.
    Active,
    /// Gone.
    Terminated,
}

/// What moved a contact into its state (RFC 3680 §5.2 `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactEvent {
    /// Registered (a REGISTER created it).
    Registered,
    /// Created by the network (administratively).
    Created,
    /// Refreshed by a REGISTER.
    Refreshed,
    /// Its expiry was shortened by the network.
    Shortened,
    /// It ran out.
    Expired,
    /// The network removed it, expecting the UE to register again (an RTR from the HSS,
    /// TS 24.229 §5.4.1.5).
    Deactivated,
    /// On probation (re-register later).
    Probation,
    /// The UE deregistered it.
    Unregistered,
    /// The network removed it and does not want it back.
    Rejected,
}

impl ContactEvent {
    fn parse(s: &str) -> Option<ContactEvent> {
        Some(match s {
            "registered" => ContactEvent::Registered,
            "created" => ContactEvent::Created,
            "refreshed" => ContactEvent::Refreshed,
            "shortened" => ContactEvent::Shortened,
            "expired" => ContactEvent::Expired,
            "deactivated" => ContactEvent::Deactivated,
            "probation" => ContactEvent::Probation,
            "unregistered" => ContactEvent::Unregistered,
            "rejected" => ContactEvent::Rejected,
            _ => return None,
        })
    }

    /// The RFC 3680 name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactEvent::Registered => "registered",
            ContactEvent::Created => "created",
            ContactEvent::Refreshed => "refreshed",
            ContactEvent::Shortened => "shortened",
            ContactEvent::Expired => "expired",
            ContactEvent::Deactivated => "deactivated",
            ContactEvent::Probation => "probation",
            ContactEvent::Unregistered => "unregistered",
            ContactEvent::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for ContactEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `contact` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInfo {
    /// Its id (unique within the document's registration).
    pub id: String,
    /// Active or terminated.
    pub state: ContactState,
    /// Why.
    pub event: ContactEvent,
    /// Seconds left, when given.
    pub expires: Option<u32>,
    /// The contact address (the `uri` element's text, trimmed).
    pub uri: String,
}

/// One `registration` element: an address-of-record and its contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationInfo {
    /// The address-of-record (one IMPU of the implicit set).
    pub aor: String,
    /// Its id.
    pub id: String,
    /// Init, active or terminated.
    pub state: RegistrationState,
    /// Its contacts.
    pub contacts: Vec<ContactInfo>,
}

/// A reginfo document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegInfo {
    /// Version, one more per NOTIFY of the subscription (RFC 3680 §5.4: older ones are
    /// discarded).
    pub version: u32,
    /// Full or partial.
    pub state: DocState,
    /// The registrations.
    pub registrations: Vec<RegistrationInfo>,
}

impl RegInfo {
    /// Parses a document; see the module docs for what is tolerated.
    pub fn parse(xml: &str) -> Result<RegInfo, RegInfoError> {
        parse(xml)
    }

    /// The contacts whose URI designates `ours` (same host and port, the way a
    /// registrar matches bindings, RFC 3261 §10.3), with the AoR they are bound to.
    pub fn contacts_of<'a>(
        &'a self,
        ours: &'a Uri,
    ) -> impl Iterator<Item = (&'a RegistrationInfo, &'a ContactInfo)> + 'a {
        self.registrations.iter().flat_map(move |r| {
            r.contacts
                .iter()
                .filter(move |c| same_contact(&c.uri, ours))
                .map(move |c| (r, c))
        })
    }

    /// Number of distinct active contact URIs over all registrations (the S-CSCF lists a
    /// contact once per IMPU of the implicit set, TS 24.229 §5.4.2.1.2).
    pub fn active_contacts(&self) -> usize {
        let mut uris: Vec<&str> = self
            .registrations
            .iter()
            .flat_map(|r| &r.contacts)
            .filter(|c| c.state == ContactState::Active)
            .map(|c| c.uri.as_str())
            .collect();
        uris.sort_unstable();
        uris.dedup();
        uris.len()
    }
}

fn same_contact(text: &str, ours: &Uri) -> bool {
    Uri::parse(text.trim()).is_ok_and(|u| {
        u.host.eq_ignore_ascii_case(&ours.host)
            && u.port.unwrap_or(5060) == ours.port.unwrap_or(5060)
    })
}

/// Which element of the schema we are inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum In {
    Reginfo,
    Registration,
    Contact,
    Uri,
    /// Anything else (extensions); its content is skipped.
    Other,
}

fn local(name: &str) -> String {
    name.rsplit(':').next().unwrap_or(name).to_string()
}

/// The attributes of an element, by local name (an attribute may appear once, quick-xml
/// checks that).
fn attrs(s: &BytesStart<'_>) -> Result<Vec<(String, String)>, RegInfoError> {
    let mut v = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| RegInfoError::Syntax(e.to_string()))?;
        let key = local(a.key.as_ref());
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| RegInfoError::Syntax(e.to_string()))?;
        v.push((key, value.into_owned()));
    }
    Ok(v)
}

fn get<'a>(
    a: &'a [(String, String)],
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, RegInfoError> {
    a.iter()
        .find(|(k, _)| k == attribute)
        .map(|(_, v)| v.trim())
        .ok_or(RegInfoError::MissingAttribute { element, attribute })
}

fn invalid(element: &'static str, attribute: &'static str, value: &str) -> RegInfoError {
    RegInfoError::InvalidAttribute {
        element,
        attribute,
        value: value.to_string(),
    }
}

fn start_reginfo(a: &[(String, String)]) -> Result<RegInfo, RegInfoError> {
    let v = get(a, "reginfo", "version")?;
    let version = v.parse().map_err(|_| invalid("reginfo", "version", v))?;
    let s = get(a, "reginfo", "state")?;
    let state = match s {
        "full" => DocState::Full,
        "partial" => DocState::Partial,
        _ => return Err(invalid("reginfo", "state", s)),
    };
    Ok(RegInfo {
        version,
        state,
        registrations: Vec::new(),
    })
}

fn start_registration(a: &[(String, String)]) -> Result<RegistrationInfo, RegInfoError> {
    let s = get(a, "registration", "state")?;
    let state = match s {
        "init" => RegistrationState::Init,
        "active" => RegistrationState::Active,
        "terminated" => RegistrationState::Terminated,
        _ => return Err(invalid("registration", "state", s)),
    };
    Ok(RegistrationInfo {
        aor: get(a, "registration", "aor")?.to_string(),
        id: get(a, "registration", "id")?.to_string(),
        state,
        contacts: Vec::new(),
    })
}

fn start_contact(a: &[(String, String)]) -> Result<ContactInfo, RegInfoError> {
    let s = get(a, "contact", "state")?;
    let state = match s {
        "active" => ContactState::Active,
        "terminated" => ContactState::Terminated,
        _ => return Err(invalid("contact", "state", s)),
    };
    let e = get(a, "contact", "event")?;
    let event = ContactEvent::parse(e).ok_or_else(|| invalid("contact", "event", e))?;
    let expires = match get(a, "contact", "expires") {
        Ok(x) => Some(x.parse().map_err(|_| invalid("contact", "expires", x))?),
        Err(_) => None,
    };
    Ok(ContactInfo {
        id: get(a, "contact", "id")?.to_string(),
        state,
        event,
        expires,
        uri: String::new(),
    })
}

/// Partly read document: the innermost open registration and contact are the last ones
/// of their parents.
struct Builder {
    doc: Option<RegInfo>,
    stack: Vec<In>,
    count: usize,
    /// the open contact has seen its `uri`
    has_uri: bool,
}

impl Builder {
    fn open(&mut self, s: &BytesStart<'_>) -> Result<In, RegInfoError> {
        self.count += 1;
        if self.stack.len() >= MAX_DEPTH || self.count > MAX_ELEMENTS {
            return Err(RegInfoError::TooLarge);
        }
        let name = local(s.name().as_ref());
        let parent = self.stack.last().copied();
        let kind = match (parent, name.as_str()) {
            (None, "reginfo") => {
                self.doc = Some(start_reginfo(&attrs(s)?)?);
                In::Reginfo
            }
            (None, _) => return Err(RegInfoError::WrongRoot(name)),
            (Some(In::Reginfo), "registration") => {
                let r = start_registration(&attrs(s)?)?;
                if let Some(d) = self.doc.as_mut() {
                    d.registrations.push(r);
                }
                In::Registration
            }
            (Some(In::Registration), "contact") => {
                let c = start_contact(&attrs(s)?)?;
                if let Some(r) = self.doc.as_mut().and_then(|d| d.registrations.last_mut()) {
                    r.contacts.push(c);
                }
                self.has_uri = false;
                In::Contact
            }
            (Some(In::Contact), "uri") => {
                self.has_uri = true;
                In::Uri
            }
            _ => In::Other,
        };
        Ok(kind)
    }

    /// The element `kind` ends; the document when it is the root.
    fn close(&mut self, kind: In) -> Result<Option<RegInfo>, RegInfoError> {
        match kind {
            In::Contact if !self.has_uri => return Err(RegInfoError::MissingUri),
            In::Uri => {
                if let Some(c) = self.contact() {
                    c.uri = c.uri.trim().to_string();
                    if c.uri.is_empty() {
                        return Err(RegInfoError::MissingUri);
                    }
                }
            }
            In::Reginfo => return Ok(self.doc.take()),
            _ => {}
        }
        Ok(None)
    }

    fn contact(&mut self) -> Option<&mut ContactInfo> {
        self.doc
            .as_mut()?
            .registrations
            .last_mut()?
            .contacts
            .last_mut()
    }

    fn text(&mut self, t: &str) {
        if self.stack.last() == Some(&In::Uri) {
            if let Some(c) = self.contact() {
                c.uri.push_str(t);
            }
        }
    }
}

fn parse(xml: &str) -> Result<RegInfo, RegInfoError> {
    let mut reader = Reader::from_str(xml);
    let mut b = Builder {
        doc: None,
        stack: Vec::new(),
        count: 0,
        has_uri: false,
    };
    let syn = |e: &dyn std::fmt::Display| RegInfoError::Syntax(e.to_string());
    loop {
        match reader.read_event().map_err(|e| syn(&e))? {
            Event::Start(s) => {
                let k = b.open(&s)?;
                b.stack.push(k);
            }
            Event::Empty(s) => {
                let k = b.open(&s)?;
                if let Some(doc) = b.close(k)? {
                    return Ok(doc);
                }
            }
            Event::End(_) => {
                let k = b
                    .stack
                    .pop()
                    .ok_or_else(|| RegInfoError::Syntax("unbalanced end tag".into()))?;
                if let Some(doc) = b.close(k)? {
                    return Ok(doc);
                }
            }
            Event::Text(t) => b.text(&t.xml10_content()),
            Event::CData(c) => b.text(&c.xml10_content()),
            Event::GeneralRef(r) => {
                if let Some(ch) = r.resolve_char_ref().map_err(|e| syn(&e))? {
                    b.text(ch.encode_utf8(&mut [0; 4]));
                } else {
                    let name = r.xml10_content();
                    match quick_xml::escape::resolve_xml_entity(&name) {
                        Some(v) => b.text(v),
                        None => {
                            return Err(RegInfoError::Syntax(format!("unknown entity &{name};")))
                        }
                    }
                }
            }
            Event::Eof => {
                return Err(if b.stack.is_empty() {
                    RegInfoError::Empty
                } else {
                    RegInfoError::Syntax("unexpected end of document".into())
                })
            }
            _ => {}
        }
    }
}

impl RegInfo {
    /// True when `aor`'s registration is terminated, or every contact of it is: what a
    /// P-CSCF acts on (TS 24.229 §5.2.3).
    pub fn is_terminated(&self, aor: &str) -> bool {
        self.registrations.iter().any(|r| {
            r.aor == aor
                && (r.state == RegistrationState::Terminated
                    || (!r.contacts.is_empty()
                        && r.contacts
                            .iter()
                            .all(|c| c.state == ContactState::Terminated)))
        })
    }
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

impl std::fmt::Display for RegInfo {
    /// The document as the notifier sends it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<?xml version=\"1.0\"?>\r\n<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"{}\" state=\"{}\">\r\n",
            self.version,
            match self.state {
                DocState::Full => "full",
                DocState::Partial => "partial",
            }
        )?;
        for r in &self.registrations {
            let state = match r.state {
                RegistrationState::Init => "init",
                RegistrationState::Active => "active",
                RegistrationState::Terminated => "terminated",
            };
            write!(
                f,
                "  <registration aor=\"{}\" id=\"{}\" state=\"{state}\">\r\n",
                esc(&r.aor),
                esc(&r.id)
            )?;
            for c in &r.contacts {
                let cs = match c.state {
                    ContactState::Active => "active",
                    ContactState::Terminated => "terminated",
                };
                write!(
                    f,
                    "    <contact id=\"{}\" state=\"{cs}\" event=\"{}\"",
                    esc(&c.id),
                    c.event
                )?;
                if let Some(e) = c.expires {
                    write!(f, " expires=\"{e}\"")?;
                }
                write!(
                    f,
                    ">\r\n      <uri>{}</uri>\r\n    </contact>\r\n",
                    esc(&c.uri)
                )?;
            }
            f.write_str("  </registration>\r\n")?;
        }
        f.write_str("</reginfo>\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the S-CSCF of this project sends, and the shape of RFC 3680 §6's example.
    const FULL: &str = "<?xml version=\"1.0\"?>\r\n\
<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"3\" state=\"full\">\r\n\
  <registration aor=\"sip:alice@ims.test\" id=\"r0\" state=\"active\">\r\n\
    <contact id=\"c0-0\" state=\"active\" event=\"registered\" expires=\"3599\">\r\n\
      <uri>sip:alice@127.0.0.2:6101</uri>\r\n\
      <unknown-param name=\"+sip.instance\">x</unknown-param>\r\n\
    </contact>\r\n\
  </registration>\r\n\
  <registration aor=\"tel:+4930123456\" id=\"r1\" state=\"terminated\"/>\r\n\
</reginfo>\r\n";

    #[test]
    fn reads_a_full_document_and_finds_our_contact() {
        let d = RegInfo::parse(FULL).unwrap();
        assert_eq!((d.version, d.state), (3, DocState::Full));
        assert_eq!(d.registrations.len(), 2);
        let r = &d.registrations[0];
        assert_eq!(
            (r.aor.as_str(), r.state),
            ("sip:alice@ims.test", RegistrationState::Active)
        );
        let c = &r.contacts[0];
        assert_eq!(c.uri, "sip:alice@127.0.0.2:6101");
        assert_eq!(
            (c.state, c.event, c.expires),
            (ContactState::Active, ContactEvent::Registered, Some(3599))
        );
        assert_eq!(d.registrations[1].state, RegistrationState::Terminated);
        assert_eq!(d.active_contacts(), 1);
        let twice = FULL.replace(
            "<registration aor=\"tel:+4930123456\" id=\"r1\" state=\"terminated\"/>",
            "<registration aor=\"tel:+4930123456\" id=\"r1\" state=\"active\"><contact id=\"c1\" \
             state=\"active\" event=\"registered\"><uri>sip:alice@127.0.0.2:6101</uri></contact></registration>",
        );
        assert_eq!(RegInfo::parse(&twice).unwrap().active_contacts(), 1);
        let ours = Uri::parse("sip:alice@127.0.0.2:6101").unwrap();
        assert_eq!(d.contacts_of(&ours).count(), 1);
        let other = Uri::parse("sip:alice@127.0.0.2:6103").unwrap();
        assert_eq!(d.contacts_of(&other).count(), 0);
    }

    #[test]
    fn prefixes_entities_and_deactivation() {
        let x = "<r:reginfo xmlns:r=\"urn:ietf:params:xml:ns:reginfo\" version=\"0\" state=\"partial\">\
<r:registration aor=\"sip:a&amp;b@x\" id=\"r\" state=\"terminated\">\
<r:contact id=\"c\" state=\"terminated\" event=\"deactivated\"><r:uri> sip:a@[::1]:5&#48;61 </r:uri></r:contact>\
</r:registration></r:reginfo>";
        let d = RegInfo::parse(x).unwrap();
        assert_eq!(d.state, DocState::Partial);
        assert_eq!(d.registrations[0].aor, "sip:a&b@x");
        let c = &d.registrations[0].contacts[0];
        assert_eq!(
            (c.uri.as_str(), c.event),
            ("sip:a@[::1]:5061", ContactEvent::Deactivated)
        );
    }

    #[test]
    fn errors_are_typed() {
        let cases: &[(&str, RegInfoError)] = &[
            ("", RegInfoError::Empty),
            ("<reg/>", RegInfoError::WrongRoot("reg".into())),
            (
                "<reginfo state=\"full\"/>",
                RegInfoError::MissingAttribute { element: "reginfo", attribute: "version" },
            ),
            (
                "<reginfo version=\"-1\" state=\"full\"/>",
                RegInfoError::InvalidAttribute { element: "reginfo", attribute: "version", value: "-1".into() },
            ),
            (
                "<reginfo version=\"1\" state=\"full\"><registration aor=\"a\" id=\"r\" state=\"active\">\
<contact id=\"c\" state=\"active\" event=\"bogus\"><uri>sip:x</uri></contact></registration></reginfo>",
                RegInfoError::InvalidAttribute { element: "contact", attribute: "event", value: "bogus".into() },
            ),
            (
                "<reginfo version=\"1\" state=\"full\"><registration aor=\"a\" id=\"r\" state=\"active\">\
<contact id=\"c\" state=\"active\" event=\"registered\"/></registration></reginfo>",
                RegInfoError::MissingUri,
            ),
        ];
        for (x, want) in cases {
            assert_eq!(&RegInfo::parse(x).unwrap_err(), want, "{x}");
        }
        assert!(matches!(
            RegInfo::parse("<reginfo version=\"1\" state=\"full\">"),
            Err(RegInfoError::Syntax(_))
        ));
        let deep = format!("<reginfo version=\"1\" state=\"full\">{}", "<a>".repeat(40));
        assert_eq!(RegInfo::parse(&deep), Err(RegInfoError::TooLarge));
    }

    proptest::proptest! {
        /// Whatever the network sends as a body, the reader answers with a document or a
        /// typed error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(x in "\\PC{0,400}") {
            let _ = RegInfo::parse(&x);
        }

        /// Nor do damaged versions of a real document (bytes overwritten, cut short, or
        /// markup characters inserted), which reach deeper into the reader.
        #[test]
        fn damaged_documents_never_panic(
            edits in proptest::collection::vec((0usize..4096, 0u8..=255u8, 0u8..4), 1..12),
            cut in 0usize..4096,
        ) {
            let mut b = FULL.as_bytes().to_vec();
            for (at, byte, how) in edits {
                let i = at % b.len().max(1);
                match how {
                    0 => b[i] = byte,
                    1 => b.insert(i, b"<>\"&;/="[usize::from(byte) % 7]),
                    2 => { b.remove(i); }
                    _ => b.splice(i..i, b"<contact id=\"x\" state=\"terminated\" event=\"deactivated\">".iter().copied()).for_each(drop),
                }
                if b.is_empty() { break; }
            }
            b.truncate(cut.max(1));
            let _ = RegInfo::parse(&String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn written_documents_read_back() {
        for (state, event) in [
            (ContactState::Active, ContactEvent::Registered),
            (ContactState::Terminated, ContactEvent::Deactivated),
        ] {
            let d = RegInfo {
                version: 3,
                state: DocState::Full,
                registrations: vec![RegistrationInfo {
                    aor: "sip:alice@ims.test".into(),
                    id: "r0".into(),
                    state: if state == ContactState::Active {
                        RegistrationState::Active
                    } else {
                        RegistrationState::Terminated
                    },
                    contacts: vec![ContactInfo {
                        id: "c0".into(),
                        state,
                        event,
                        expires: (state == ContactState::Active).then_some(3600),
                        uri: "sip:alice@10.0.0.2:5060;a=<b>&c".into(),
                    }],
                }],
            };
            let back = RegInfo::parse(&d.to_string()).unwrap();
            assert_eq!(back, d);
            assert_eq!(
                back.is_terminated("sip:alice@ims.test"),
                state == ContactState::Terminated
            );
        }
    }
}
