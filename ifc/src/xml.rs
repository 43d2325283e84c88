//! User-Data XML both ways (TS 29.228 Annex B / CxDataType.xsd).
//!
//! The writer emits exactly the schema's element names and order, compactly (no whitespace
//! between elements), because S-CSCFs such as Kamailio's `ims_registrar_scscf` walk the
//! elements by name. The reader is tolerant: whitespace, comments, namespace prefixes and
//! unknown elements are ignored, element order inside a parent does not matter, and errors are
//! typed ([`XmlError`]), never panics.

use crate::model::*;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt::Write as _;

/// Most nested elements accepted; CxDataType needs 7.
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted in one document (a guard against memory blow-up from hostile input).
pub const MAX_ELEMENTS: usize = 65_536;

/// Why User-Data XML could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML (as reported by quick-xml).
    #[error("malformed XML: {0}")]
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`] or more than [`MAX_ELEMENTS`] elements.
    #[error("document too large or too deeply nested")]
    TooLarge,
    /// The root element is not `IMSSubscription`.
    #[error("root element is <{0}>, expected <IMSSubscription>")]
    WrongRoot(String),
    /// The document has no root element.
    #[error("no root element")]
    Empty,
    /// A mandatory element is absent.
    #[error("<{parent}> lacks mandatory <{child}>")]
    Missing {
        /// The parent element.
        parent: &'static str,
        /// The missing child.
        child: &'static str,
    },
    /// An element's text is not a valid value of its type.
    #[error("<{element}> has invalid value {value:?}")]
    Invalid {
        /// The element.
        element: &'static str,
        /// Its (trimmed) text.
        value: String,
    },
    /// An `SPT` carries none of RequestURI/Method/SIPHeader/SessionCase/SessionDescription.
    #[error("<SPT> has no condition")]
    EmptySpt,
}

// ---------------------------------------------------------------------------------------------
// Writing

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

fn elem(out: &mut String, name: &str, text: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", esc(text));
}

fn bool01(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

impl ImsSubscription {
    /// Serializes to the User-Data XML document carried in SAA/PPR (TS 29.228 Annex B).
    pub fn to_xml(&self) -> String {
        let mut o = String::with_capacity(1024);
        o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        o.push_str(
            "<IMSSubscription xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xsi:noNamespaceSchemaLocation=\"CxDataType.xsd\">",
        );
        elem(&mut o, "PrivateID", &self.private_id);
        for sp in &self.service_profiles {
            write_service_profile(&mut o, sp);
        }
        o.push_str("</IMSSubscription>");
        o
    }

    /// Parses a User-Data XML document; see the module docs for what is tolerated.
    pub fn from_xml(xml: &str) -> Result<Self, XmlError> {
        let root = parse_tree(xml)?;
        if root.name != "IMSSubscription" {
            return Err(XmlError::WrongRoot(root.name));
        }
        read_subscription(&root)
    }
}

fn write_service_profile(o: &mut String, sp: &ServiceProfile) {
    o.push_str("<ServiceProfile>");
    for pi in &sp.public_identities {
        o.push_str("<PublicIdentity>");
        if pi.barring_indication {
            elem(o, "BarringIndication", "1");
        }
        elem(o, "Identity", &pi.identity);
        if pi.identity_type.is_some() || pi.wildcarded_psi.is_some() || pi.display_name.is_some() {
            // IdentityType is mandatory inside the extension; default to a plain IMPU.
            o.push_str("<Extension>");
            let it = pi.identity_type.unwrap_or(IdentityType::PublicUserIdentity);
            elem(o, "IdentityType", &it.code().to_string());
            if let Some(w) = &pi.wildcarded_psi {
                elem(o, "WildcardedPSI", w);
            }
            if let Some(d) = &pi.display_name {
                o.push_str("<Extension>");
                elem(o, "DisplayName", d);
                o.push_str("</Extension>");
            }
            o.push_str("</Extension>");
        }
        o.push_str("</PublicIdentity>");
    }
    if let Some(cn) = &sp.core_network_services_authorization {
        o.push_str("<CoreNetworkServicesAuthorization>");
        if let Some(id) = cn.subscribed_media_profile_id {
            elem(o, "SubscribedMediaProfileId", &id.to_string());
        }
        o.push_str("</CoreNetworkServicesAuthorization>");
    }
    for ifc in &sp.initial_filter_criteria {
        write_ifc(o, ifc);
    }
    if !sp.shared_ifc_set_ids.is_empty() {
        o.push_str("<Extension>");
        for id in &sp.shared_ifc_set_ids {
            elem(o, "SharedIFCSetID", &id.to_string());
        }
        o.push_str("</Extension>");
    }
    o.push_str("</ServiceProfile>");
}

fn write_ifc(o: &mut String, ifc: &InitialFilterCriteria) {
    o.push_str("<InitialFilterCriteria>");
    elem(o, "Priority", &ifc.priority.to_string());
    if let Some(tp) = &ifc.trigger_point {
        o.push_str("<TriggerPoint>");
        elem(o, "ConditionTypeCNF", bool01(tp.condition_type_cnf));
        for spt in &tp.spts {
            o.push_str("<SPT>");
            elem(o, "ConditionNegated", bool01(spt.condition_negated));
            for g in &spt.groups {
                elem(o, "Group", &g.to_string());
            }
            match &spt.condition {
                SptCondition::RequestUri(r) => elem(o, "RequestURI", r),
                SptCondition::Method(m) => elem(o, "Method", m),
                SptCondition::SipHeader { header, content } => {
                    o.push_str("<SIPHeader>");
                    elem(o, "Header", header);
                    if let Some(c) = content {
                        elem(o, "Content", c);
                    }
                    o.push_str("</SIPHeader>");
                }
                SptCondition::SessionCase(sc) => elem(o, "SessionCase", &sc.code().to_string()),
                SptCondition::SessionDescription { line, content } => {
                    o.push_str("<SessionDescription>");
                    elem(o, "Line", line);
                    if let Some(c) = content {
                        elem(o, "Content", c);
                    }
                    o.push_str("</SessionDescription>");
                }
            }
            if !spt.registration_types.is_empty() {
                o.push_str("<Extension>");
                for rt in &spt.registration_types {
                    elem(o, "RegistrationType", &rt.code().to_string());
                }
                o.push_str("</Extension>");
            }
            o.push_str("</SPT>");
        }
        o.push_str("</TriggerPoint>");
    }
    let asv = &ifc.application_server;
    o.push_str("<ApplicationServer>");
    elem(o, "ServerName", &asv.server_name);
    let dh = match asv.default_handling {
        DefaultHandling::SessionContinued => "0",
        DefaultHandling::SessionTerminated => "1",
    };
    elem(o, "DefaultHandling", dh);
    if let Some(si) = &asv.service_info {
        elem(o, "ServiceInfo", si);
    }
    // tApplicationServerExtension of the Release 8 schema (the newest one Kamailio ships
    // and parses); the reader also takes the Release 9+ placement directly under
    // ApplicationServer.
    if asv.include_register_request || asv.include_register_response {
        o.push_str("<Extension>");
        if asv.include_register_request {
            o.push_str("<IncludeRegisterRequest/>");
        }
        if asv.include_register_response {
            o.push_str("<IncludeRegisterResponse/>");
        }
        o.push_str("</Extension>");
    }
    o.push_str("</ApplicationServer>");
    if let Some(ppi) = ifc.profile_part_indicator {
        let v = match ppi {
            ProfilePartIndicator::Registered => "0",
            ProfilePartIndicator::Unregistered => "1",
        };
        elem(o, "ProfilePartIndicator", v);
    }
    o.push_str("</InitialFilterCriteria>");
}

// ---------------------------------------------------------------------------------------------
// Reading: a small element tree first (limits enforced), then a tolerant mapping.

#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn text(&self) -> &str {
        self.text.trim()
    }
    fn req(&self, parent: &'static str, child: &'static str) -> Result<&Node, XmlError> {
        self.child(child).ok_or(XmlError::Missing { parent, child })
    }
    fn opt_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|n| n.text().to_string())
    }
}

fn local_name(qname: &str) -> String {
    match qname.rfind(':') {
        Some(i) => qname[i + 1..].to_string(),
        None => qname.to_string(),
    }
}

fn parse_tree(xml: &str) -> Result<Node, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut count = 0usize;
    let syn = |e: &dyn std::fmt::Display| XmlError::Syntax(e.to_string());
    loop {
        let ev = reader.read_event().map_err(|e| syn(&e))?;
        match ev {
            Event::Start(s) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                stack.push(Node {
                    name: local_name(s.name().as_ref()),
                    ..Node::default()
                });
            }
            Event::Empty(s) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                let node = Node {
                    name: local_name(s.name().as_ref()),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(p) => p.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| XmlError::Syntax("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(p) => p.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    let raw = t.xml10_content();
                    cur.text.push_str(&raw);
                }
            }
            Event::CData(c) => {
                if let Some(cur) = stack.last_mut() {
                    let raw = c.xml10_content();
                    cur.text.push_str(&raw);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(cur) = stack.last_mut() {
                    if let Some(ch) = r.resolve_char_ref().map_err(|e| syn(&e))? {
                        cur.text.push(ch);
                    } else {
                        let name = r.xml10_content();
                        match quick_xml::escape::resolve_xml_entity(&name) {
                            Some(v) => cur.text.push_str(v),
                            None => {
                                return Err(XmlError::Syntax(format!("unknown entity &{name};")))
                            }
                        }
                    }
                }
            }
            Event::Eof => {
                return Err(if stack.is_empty() {
                    XmlError::Empty
                } else {
                    XmlError::Syntax("unexpected end of document".into())
                })
            }
            _ => {}
        }
    }
}

fn parse_bool(n: &Node, element: &'static str) -> Result<bool, XmlError> {
    match n.text() {
        "1" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "false" | "FALSE" | "False" => Ok(false),
        v => Err(XmlError::Invalid {
            element,
            value: v.to_string(),
        }),
    }
}

fn parse_num<T: std::str::FromStr>(n: &Node, element: &'static str) -> Result<T, XmlError> {
    n.text().parse().map_err(|_| XmlError::Invalid {
        element,
        value: n.text().to_string(),
    })
}

fn read_subscription(root: &Node) -> Result<ImsSubscription, XmlError> {
    let private_id = root.req("IMSSubscription", "PrivateID")?.text().to_string();
    let service_profiles = root
        .all("ServiceProfile")
        .map(read_service_profile)
        .collect::<Result<_, _>>()?;
    Ok(ImsSubscription {
        private_id,
        service_profiles,
    })
}

fn read_service_profile(n: &Node) -> Result<ServiceProfile, XmlError> {
    let mut sp = ServiceProfile::default();
    for pi in n.all("PublicIdentity") {
        sp.public_identities.push(read_public_identity(pi)?);
    }
    if let Some(cn) = n.child("CoreNetworkServicesAuthorization") {
        let id = match cn.child("SubscribedMediaProfileId") {
            Some(x) => Some(parse_num(x, "SubscribedMediaProfileId")?),
            None => None,
        };
        sp.core_network_services_authorization = Some(CoreNetworkServicesAuthorization {
            subscribed_media_profile_id: id,
        });
    }
    for ifc in n.all("InitialFilterCriteria") {
        sp.initial_filter_criteria.push(read_ifc(ifc)?);
    }
    for ext in n.all("Extension") {
        for id in ext.all("SharedIFCSetID") {
            sp.shared_ifc_set_ids.push(parse_num(id, "SharedIFCSetID")?);
        }
    }
    Ok(sp)
}

fn read_public_identity(n: &Node) -> Result<PublicIdentity, XmlError> {
    let mut pi = PublicIdentity {
        identity: n.req("PublicIdentity", "Identity")?.text().to_string(),
        ..PublicIdentity::default()
    };
    if let Some(b) = n.child("BarringIndication") {
        pi.barring_indication = parse_bool(b, "BarringIndication")?;
    }
    if let Some(ext) = n.child("Extension") {
        if let Some(t) = ext.child("IdentityType") {
            let code: u8 = parse_num(t, "IdentityType")?;
            pi.identity_type = Some(IdentityType::from_code(code).ok_or(XmlError::Invalid {
                element: "IdentityType",
                value: code.to_string(),
            })?);
        }
        pi.wildcarded_psi = ext.opt_text("WildcardedPSI");
        if let Some(ext2) = ext.child("Extension") {
            pi.display_name = ext2.opt_text("DisplayName");
        }
        // Some HSSes put DisplayName directly under the first Extension.
        if pi.display_name.is_none() {
            pi.display_name = ext.opt_text("DisplayName");
        }
    }
    Ok(pi)
}

fn read_ifc(n: &Node) -> Result<InitialFilterCriteria, XmlError> {
    let priority = match n.child("Priority") {
        Some(p) => parse_num(p, "Priority")?,
        None => 0,
    };
    let trigger_point = match n.child("TriggerPoint") {
        Some(tp) => Some(read_trigger_point(tp)?),
        None => None,
    };
    let a = n.req("InitialFilterCriteria", "ApplicationServer")?;
    let mut application_server = ApplicationServer {
        server_name: a.req("ApplicationServer", "ServerName")?.text().to_string(),
        service_info: a.opt_text("ServiceInfo"),
        ..ApplicationServer::default()
    };
    if let Some(dh) = a.child("DefaultHandling") {
        application_server.default_handling = match parse_num::<u8>(dh, "DefaultHandling")? {
            0 => DefaultHandling::SessionContinued,
            1 => DefaultHandling::SessionTerminated,
            v => {
                return Err(XmlError::Invalid {
                    element: "DefaultHandling",
                    value: v.to_string(),
                })
            }
        };
    }
    // Present (usually empty) means yes; Release 9 put them directly under ApplicationServer,
    // some implementations inside its Extension.
    let flag = |name: &str| -> bool {
        let f = a
            .child(name)
            .or_else(|| a.child("Extension").and_then(|e| e.child(name)));
        matches!(f, Some(x) if !matches!(x.text(), "0" | "false"))
    };
    application_server.include_register_request = flag("IncludeRegisterRequest");
    application_server.include_register_response = flag("IncludeRegisterResponse");
    let profile_part_indicator = match n.child("ProfilePartIndicator") {
        Some(p) => Some(match parse_num::<u8>(p, "ProfilePartIndicator")? {
            0 => ProfilePartIndicator::Registered,
            1 => ProfilePartIndicator::Unregistered,
            v => {
                return Err(XmlError::Invalid {
                    element: "ProfilePartIndicator",
                    value: v.to_string(),
                })
            }
        }),
        None => None,
    };
    Ok(InitialFilterCriteria {
        priority,
        trigger_point,
        application_server,
        profile_part_indicator,
    })
}

fn read_trigger_point(n: &Node) -> Result<TriggerPoint, XmlError> {
    let condition_type_cnf = match n.child("ConditionTypeCNF") {
        Some(c) => parse_bool(c, "ConditionTypeCNF")?,
        None => {
            return Err(XmlError::Missing {
                parent: "TriggerPoint",
                child: "ConditionTypeCNF",
            })
        }
    };
    let spts = n.all("SPT").map(read_spt).collect::<Result<_, _>>()?;
    Ok(TriggerPoint {
        condition_type_cnf,
        spts,
    })
}

fn read_spt(n: &Node) -> Result<Spt, XmlError> {
    let condition_negated = match n.child("ConditionNegated") {
        Some(c) => parse_bool(c, "ConditionNegated")?,
        None => false,
    };
    let mut groups = Vec::new();
    for g in n.all("Group") {
        groups.push(parse_num(g, "Group")?);
    }
    if groups.is_empty() {
        // The schema requires a Group; a single implicit group 0 is the only sane reading.
        groups.push(0);
    }
    let condition = if let Some(r) = n.child("RequestURI") {
        SptCondition::RequestUri(r.text().to_string())
    } else if let Some(m) = n.child("Method") {
        SptCondition::Method(m.text().to_string())
    } else if let Some(h) = n.child("SIPHeader") {
        SptCondition::SipHeader {
            header: h.req("SIPHeader", "Header")?.text().to_string(),
            content: h.opt_text("Content"),
        }
    } else if let Some(s) = n.child("SessionCase") {
        let code: u8 = parse_num(s, "SessionCase")?;
        SptCondition::SessionCase(SessionCase::from_code(code).ok_or(XmlError::Invalid {
            element: "SessionCase",
            value: code.to_string(),
        })?)
    } else if let Some(s) = n.child("SessionDescription") {
        SptCondition::SessionDescription {
            line: s.req("SessionDescription", "Line")?.text().to_string(),
            content: s.opt_text("Content"),
        }
    } else {
        return Err(XmlError::EmptySpt);
    };
    let mut registration_types = Vec::new();
    for ext in n.all("Extension") {
        for rt in ext.all("RegistrationType") {
            let code: u8 = parse_num(rt, "RegistrationType")?;
            registration_types.push(RegistrationType::from_code(code).ok_or(
                XmlError::Invalid {
                    element: "RegistrationType",
                    value: code.to_string(),
                },
            )?);
        }
    }
    Ok(Spt {
        condition_negated,
        groups,
        condition,
        registration_types,
    })
}
