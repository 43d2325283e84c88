//! The registration information document of the reg event package (RFC 3680 §5.3,
//! `application/reginfo+xml`): written by the S-CSCF's notifier, read by the UE and the
//! P-CSCF that subscribe to it (TS 24.229 §5.1.1.3, §5.2.3, §5.4.2.1).
//!
//! The reader is tolerant the way the reginfo schema asks (unknown elements and attributes
//! are ignored, namespace prefixes dropped, element order free) and strict about size:
//! every failure is a typed [`RegInfoError`], never a panic.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::fmt;

/// Most elements a document may hold (a guard against hostile NOTIFY bodies).
pub const MAX_ELEMENTS: usize = 4096;

/// Why a reginfo body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegInfoError {
    /// Not well-formed XML.
    #[error("malformed reginfo XML: {0}")]
    Syntax(String),
    /// The root element is not `reginfo`.
    #[error("root element is <{0}>, expected <reginfo>")]
    WrongRoot(String),
    /// No root element at all.
    #[error("empty reginfo document")]
    Empty,
    /// More than [`MAX_ELEMENTS`] elements.
    #[error("reginfo document too large")]
    TooLarge,
    /// A mandatory attribute is missing or invalid.
    #[error("<{element}> has no valid {attribute}")]
    Attribute {
        /// Element.
        element: &'static str,
        /// Attribute.
        attribute: &'static str,
    },
}

/// `state` of a registration element (RFC 3680 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// `init`
    Init,
    /// `active`
    Active,
    /// `terminated`
    Terminated,
}

/// `state` of a contact element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    /// `active`
    Active,
    /// `terminated`
    Terminated,
}

/// One contact of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInfo {
    /// `id`
    pub id: String,
    /// `state`
    pub state: ContactState,
    /// `event`: registered, created, refreshed, shortened, expired, deactivated, probation,
    /// unregistered, rejected (RFC 3680 §5.3).
    pub event: String,
    /// `expires`, seconds.
    pub expires: Option<u32>,
    /// The `uri` element.
    pub uri: String,
}

/// One registration (an address-of-record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationInfo {
    /// `aor`
    pub aor: String,
    /// `id`
    pub id: String,
    /// `state`
    pub state: RegState,
    /// Its contacts.
    pub contacts: Vec<ContactInfo>,
}

/// A reginfo document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegInfo {
    /// `version`: one more per NOTIFY of a subscription.
    pub version: u32,
    /// `state="full"` (true) or `partial`.
    pub full: bool,
    /// The registrations.
    pub registrations: Vec<RegistrationInfo>,
}

impl RegInfo {
    /// True when `aor`'s registration is terminated, or every contact of it is, with one of
    /// the events that mean the network ended it (`deactivated`, `rejected`, `expired`,
    /// `unregistered`, RFC 3680 §5.3): what a subscriber acts on.
    pub fn is_terminated(&self, aor: &str) -> bool {
        self.registrations.iter().any(|r| {
            r.aor == aor
                && (r.state == RegState::Terminated
                    || (!r.contacts.is_empty()
                        && r.contacts
                            .iter()
                            .all(|c| c.state == ContactState::Terminated)))
        })
    }

    /// Parses a body.
    pub fn parse(body: &[u8]) -> Result<RegInfo, RegInfoError> {
        let text =
            std::str::from_utf8(body).map_err(|_| RegInfoError::Syntax("not UTF-8".into()))?;
        let mut reader = Reader::from_str(text);
        let syn = |e: &dyn fmt::Display| RegInfoError::Syntax(e.to_string());
        let mut doc: Option<RegInfo> = None;
        let mut reg: Option<RegistrationInfo> = None;
        let mut contact: Option<ContactInfo> = None;
        let mut in_uri = false;
        let mut depth = 0usize;
        let mut count = 0usize;
        loop {
            let ev = reader.read_event().map_err(|e| syn(&e))?;
            let (start, empty) = match &ev {
                Event::Start(s) => (Some(s.clone()), false),
                Event::Empty(s) => (Some(s.clone()), true),
                _ => (None, false),
            };
            if let Some(s) = start {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(RegInfoError::TooLarge);
                }
                let name = local(&s);
                match (name.as_str(), doc.is_some(), depth) {
                    ("reginfo", false, 0) => {
                        doc = Some(RegInfo {
                            version: attr(&s, "version").and_then(|v| v.parse().ok()).ok_or(
                                RegInfoError::Attribute {
                                    element: "reginfo",
                                    attribute: "version",
                                },
                            )?,
                            full: attr(&s, "state").as_deref() != Some("partial"),
                            registrations: Vec::new(),
                        })
                    }
                    (n, false, 0) => return Err(RegInfoError::WrongRoot(n.to_string())),
                    ("registration", true, _) => {
                        reg = Some(RegistrationInfo {
                            aor: attr(&s, "aor").ok_or(RegInfoError::Attribute {
                                element: "registration",
                                attribute: "aor",
                            })?,
                            id: attr(&s, "id").unwrap_or_default(),
                            state: match attr(&s, "state").as_deref() {
                                Some("init") => RegState::Init,
                                Some("active") => RegState::Active,
                                Some("terminated") => RegState::Terminated,
                                _ => {
                                    return Err(RegInfoError::Attribute {
                                        element: "registration",
                                        attribute: "state",
                                    })
                                }
                            },
                            contacts: Vec::new(),
                        })
                    }
                    ("contact", true, _) if reg.is_some() => {
                        contact = Some(ContactInfo {
                            id: attr(&s, "id").unwrap_or_default(),
                            state: match attr(&s, "state").as_deref() {
                                Some("active") => ContactState::Active,
                                Some("terminated") => ContactState::Terminated,
                                _ => {
                                    return Err(RegInfoError::Attribute {
                                        element: "contact",
                                        attribute: "state",
                                    })
                                }
                            },
                            event: attr(&s, "event").unwrap_or_default(),
                            expires: attr(&s, "expires").and_then(|v| v.parse().ok()),
                            uri: String::new(),
                        })
                    }
                    ("uri", true, _) if contact.is_some() => in_uri = !empty,
                    _ => {}
                }
                if !empty {
                    depth += 1;
                } else {
                    close(&name, &mut reg, &mut contact, &mut doc);
                }
                continue;
            }
            match ev {
                Event::End(e) => {
                    depth = depth.saturating_sub(1);
                    let name = e.local_name().as_ref().to_string();
                    if name == "uri" {
                        in_uri = false;
                    }
                    close(&name, &mut reg, &mut contact, &mut doc);
                    if depth == 0 {
                        return doc.ok_or(RegInfoError::Empty);
                    }
                }
                Event::Text(t) if in_uri => {
                    if let Some(c) = contact.as_mut() {
                        let raw = t.xml10_content();
                        c.uri.push_str(raw.trim());
                    }
                }
                Event::GeneralRef(r) if in_uri => {
                    if let Some(c) = contact.as_mut() {
                        let name = r.xml10_content();
                        if let Some(v) = quick_xml::escape::resolve_xml_entity(&name) {
                            c.uri.push_str(v);
                        }
                    }
                }
                Event::Eof => {
                    return match doc {
                        Some(_) => Err(RegInfoError::Syntax("unexpected end of document".into())),
                        None => Err(RegInfoError::Empty),
                    }
                }
                _ => {}
            }
        }
    }
}

fn local(s: &BytesStart<'_>) -> String {
    s.local_name().as_ref().to_string()
}

fn attr(s: &BytesStart<'_>, name: &str) -> Option<String> {
    s.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

fn close(
    name: &str,
    reg: &mut Option<RegistrationInfo>,
    contact: &mut Option<ContactInfo>,
    doc: &mut Option<RegInfo>,
) {
    match name {
        "contact" => {
            if let (Some(c), Some(r)) = (contact.take(), reg.as_mut()) {
                r.contacts.push(c);
            }
        }
        "registration" => {
            if let (Some(r), Some(d)) = (reg.take(), doc.as_mut()) {
                d.registrations.push(r);
            }
        }
        _ => {}
    }
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

impl fmt::Display for RegInfo {
    /// The document as the notifier sends it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<?xml version=\"1.0\"?>\r\n<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"{}\" state=\"{}\">\r\n",
            self.version,
            if self.full { "full" } else { "partial" }
        )?;
        for r in &self.registrations {
            let state = match r.state {
                RegState::Init => "init",
                RegState::Active => "active",
                RegState::Terminated => "terminated",
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
                    esc(&c.event)
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

    fn doc(state: ContactState, event: &str) -> RegInfo {
        RegInfo {
            version: 3,
            full: true,
            registrations: vec![RegistrationInfo {
                aor: "sip:alice@ims.test".into(),
                id: "r0".into(),
                state: if state == ContactState::Active {
                    RegState::Active
                } else {
                    RegState::Terminated
                },
                contacts: vec![ContactInfo {
                    id: "c0".into(),
                    state,
                    event: event.into(),
                    expires: (state == ContactState::Active).then_some(3600),
                    uri: "sip:alice@10.0.0.2:5060;a=<b>&c".into(),
                }],
            }],
        }
    }

    #[test]
    fn written_documents_read_back() {
        for (s, e) in [
            (ContactState::Active, "registered"),
            (ContactState::Terminated, "deactivated"),
        ] {
            let d = doc(s, e);
            let back = RegInfo::parse(d.to_string().as_bytes()).unwrap();
            assert_eq!(back, d);
            assert_eq!(
                back.is_terminated("sip:alice@ims.test"),
                s == ContactState::Terminated
            );
        }
    }

    #[test]
    fn foreign_documents_with_prefixes_and_extras_read() {
        let x = br#"<?xml version="1.0" encoding="UTF-8"?>
<r:reginfo xmlns:r="urn:ietf:params:xml:ns:reginfo" xmlns:gr="urn:ietf:params:xml:ns:gruuinfo" version="0" state="full">
 <r:registration aor="sip:bob@ims.test" id="a" state="active">
  <r:contact id="1" state="active" event="registered" expires="600" q="1.0">
   <r:uri>sip:bob@10.0.0.3:5060</r:uri>
   <gr:pub-gruu uri="sip:x"/>
   <r:unknown-param name="+sip.instance">&lt;urn:x&gt;</r:unknown-param>
  </r:contact>
 </r:registration>
 <r:registration aor="tel:+4912345" id="b" state="init"/>
</r:reginfo>"#;
        let d = RegInfo::parse(x).unwrap();
        assert_eq!(d.registrations.len(), 2);
        assert_eq!(d.registrations[0].contacts[0].uri, "sip:bob@10.0.0.3:5060");
        assert_eq!(d.registrations[0].contacts[0].expires, Some(600));
        assert_eq!(d.registrations[1].state, RegState::Init);
        assert!(!d.is_terminated("sip:bob@ims.test"));
    }

    #[test]
    fn garbage_is_an_error() {
        for x in [
            &b""[..],
            b"<other/>",
            b"<reginfo>",
            b"<reginfo version='x'/>",
            b"<reginfo version='1'><registration id='a' state='active'/></reginfo>",
            b"<reginfo version='1'><registration aor='a' state='odd'/></reginfo>",
            b"\xff\xfe",
        ] {
            assert!(
                RegInfo::parse(x).is_err(),
                "{:?}",
                String::from_utf8_lossy(x)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = RegInfo::parse(&b);
        }
    }
}
