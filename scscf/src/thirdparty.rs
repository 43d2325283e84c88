//! Third-party REGISTER (TS 24.229 §5.4.1.7, TS 23.218 §6.5): every application server
//! whose REGISTER iFC matches hears of the registration, re-registration and
//! deregistration of the user it serves (by the UE, by expiry, by the network).
//!
//! The request: Request-URI = the AS's ServerName, From = this S-CSCF, To = the
//! registered public identity, Contact = our URI as the AS reaches it, Expires = what
//! the registration was granted (0 when it ends), P-Associated-URI = the implicit set.
//! Body: the iFC's ServiceInfo as `application/3gpp-ims+xml` (TS 24.229 §7.6), and the
//! UE's REGISTER and our 200 OK as `message/sip` parts when IncludeRegisterRequest /
//! IncludeRegisterResponse ask for them; more than one part makes a `multipart/mixed`
//! body (RFC 2046 §5.1). A UE's deregistration is told once our 200 to it exists (after
//! the HSS's SAA), so IncludeRegisterResponse has it; expiry and network-initiated
//! deregistration have no REGISTER and no 200 to include, and are evaluated against a
//! bare REGISTER for the identity.
//!
//! A third-party REGISTER that fails (a final ≥ 300, no answer, no route) follows the
//! iFC's DefaultHandling: SESSION_TERMINATED deregisters the user as the network would
//! (§5.4.1.7: the reg-event subscribers hear `deactivated`, the HSS gets an
//! ADMINISTRATIVE_DEREGISTRATION SAR); a failure on a deregistration changes nothing.

use crate::core::Scscf;
use crate::isc::View;
use ifc::{
    ApplicationServer, DefaultHandling, EvalContext, IfcMatcher, RegistrationType, RequestView,
    SessionCase,
};
use sip::{Message, Method, RequestBuilder};
use std::time::Instant;

/// The body's media type for ServiceInfo (TS 24.229 §7.6, Annex A: `application/3gpp-ims+xml`).
pub const IMS_XML: &str = "application/3gpp-ims+xml";

/// A third-party REGISTER on its way, by client transaction.
pub(crate) struct Pending3p {
    pub impu: String,
    pub handling: DefaultHandling,
    pub deregistration: bool,
}

/// Which REGISTER the iFCs are evaluated against when the UE sent none (expiry,
/// network-initiated deregistration): a REGISTER for the identity, without headers.
struct Synthetic<'a> {
    uri: &'a str,
}

impl RequestView for Synthetic<'_> {
    fn method(&self) -> &str {
        "REGISTER"
    }
    fn request_uri(&self) -> &str {
        self.uri
    }
    fn headers(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }
    fn sdp(&self) -> Option<&str> {
        None
    }
}

/// What one registration event tells the application servers.
pub(crate) struct RegisterNews<'a> {
    pub impu: &'a str,
    pub kind: RegistrationType,
    pub expires: u32,
    pub associated: &'a [String],
    pub subscription: Option<&'a ifc::ImsSubscription>,
    /// The UE's REGISTER, when it sent one.
    pub request: Option<&'a Message>,
    /// Our answer to it, when there is one yet.
    pub response: Option<&'a Message>,
}

/// `ServiceInfo` in the `ims-3gpp` document of TS 24.229 §7.6.
pub fn service_info_xml(info: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ims-3gpp version=\"1\"><service-info>{}</service-info></ims-3gpp>\n",
        xml_escape(info)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body of a third-party REGISTER for `server` (content type, bytes), if any.
pub fn body(
    server: &ApplicationServer,
    request: Option<&Message>,
    response: Option<&Message>,
    boundary: &str,
) -> Option<(String, Vec<u8>)> {
    let mut parts: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(info) = &server.service_info {
        parts.push((IMS_XML, service_info_xml(info).into_bytes()));
    }
    if server.include_register_request {
        if let Some(r) = request {
            parts.push(("message/sip", r.to_bytes()));
        }
    }
    if server.include_register_response {
        if let Some(r) = response {
            parts.push(("message/sip", r.to_bytes()));
        }
    }
    match parts.len() {
        0 => None,
        1 => parts.pop().map(|(ct, b)| (ct.to_string(), b)),
        _ => {
            let mut out = Vec::new();
            for (ct, b) in parts {
                out.extend_from_slice(
                    format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes(),
                );
                out.extend_from_slice(&b);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            Some((format!("multipart/mixed;boundary={boundary}"), out))
        }
    }
}

impl Scscf {
    /// Our URI as application servers see it (From and Contact of third-party REGISTERs).
    pub fn as_facing_uri(&self) -> String {
        let a = self.cfg.address;
        format!("sip:{}:{}", sip::uri::ip_host(a.ip()), a.port())
    }

    /// Third-party REGISTERs on their way.
    pub fn third_party_pending(&self) -> usize {
        self.third_party.len()
    }

    /// Sends a third-party REGISTER to every AS whose REGISTER iFC matches `news`.
    pub(crate) fn third_party_register(&mut self, news: RegisterNews<'_>, now: Instant) {
        let ifcs = self.ifcs_of(news.impu, news.subscription);
        if ifcs.is_empty() {
            return;
        }
        let matcher = IfcMatcher::new(&ifcs);
        let ctx = EvalContext {
            session_case: SessionCase::Originating,
            registered: true,
            registration_type: Some(news.kind),
        };
        let servers: Vec<ApplicationServer> = match news.request {
            Some(r) => matcher
                .all_matches(&View(r), &ctx)
                .into_iter()
                .map(|(_, i)| i.application_server.clone())
                .collect(),
            None => matcher
                .all_matches(&Synthetic { uri: news.impu }, &ctx)
                .into_iter()
                .map(|(_, i)| i.application_server.clone())
                .collect(),
        };
        let assoc: Vec<String> = news.associated.iter().map(|a| format!("<{a}>")).collect();
        let us = self.as_facing_uri();
        for server in servers {
            let Some(target) = sip::Uri::parse(server.server_name.trim()).ok() else {
                tracing::warn!(r#as = %server.server_name, "third-party REGISTER: not a SIP URI");
                continue;
            };
            let Some(flow) = self.flow_to(&target) else {
                tracing::warn!(r#as = %server.server_name, "third-party REGISTER: no address");
                continue;
            };
            let via = self.our_via(flow.protocol);
            let tag = self.ids.tag();
            let call_id = self.ids.call_id(None);
            let mut b = RequestBuilder::new(Method::Register, &target)
                .header("Via", via)
                .max_forwards(70)
                .header("From", format!("<{us}>;tag={tag}"))
                .header("To", format!("<{}>", news.impu))
                .call_id(&call_id)
                .cseq(1)
                .header("Contact", format!("<{us}>"))
                .header("Expires", news.expires)
                .header("P-Associated-URI", assoc.join(", "));
            let boundary = self.ids.tag();
            if let Some((ct, bytes)) = body(&server, news.request, news.response, &boundary) {
                b = b.body(&ct, bytes);
            }
            match self.tx.send_request(b.build(), flow, now) {
                Ok(client) => {
                    self.third_party.insert(
                        client,
                        Pending3p {
                            impu: news.impu.to_string(),
                            handling: server.default_handling,
                            deregistration: news.expires == 0,
                        },
                    );
                    self.stats.third_party_registers += 1;
                }
                Err(e) => tracing::warn!("third-party REGISTER not sent: {e}"),
            }
        }
    }

    /// A final response (or a failure code) on a client transaction: true when it was a
    /// third-party REGISTER's.
    pub(crate) fn third_party_result(
        &mut self,
        client: sip::transaction::TxId,
        code: u16,
        now: Instant,
    ) -> bool {
        if code < 200 {
            return self.third_party.contains_key(&client);
        }
        let Some(p) = self.third_party.remove(&client) else {
            return false;
        };
        if code < 300 {
            return true;
        }
        tracing::info!(impu = %p.impu, code, handling = ?p.handling, "third-party REGISTER failed");
        self.stats.as_failures += 1;
        if p.handling == DefaultHandling::SessionTerminated && !p.deregistration {
            self.end_registration(
                &p.impu,
                None,
                crate::core::DeregReason::ApplicationServer,
                now,
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Message {
        Message::parse(
            b"REGISTER sip:ims.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
              From: <sip:a@ims.test>;tag=1\r\nTo: <sip:a@ims.test>\r\nCall-ID: c\r\n\
              CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    #[test]
    fn service_info_alone_is_the_whole_body_escaped() {
        let s = ApplicationServer {
            service_info: Some("a<b&c".into()),
            ..Default::default()
        };
        let (ct, b) = body(&s, Some(&reg()), None, "x").unwrap();
        assert_eq!(ct, IMS_XML);
        let b = String::from_utf8(b).unwrap();
        assert!(
            b.contains("<service-info>a&lt;b&amp;c</service-info>"),
            "{b}"
        );
        assert!(body(&ApplicationServer::default(), Some(&reg()), None, "x").is_none());
    }

    #[test]
    fn several_parts_make_multipart_mixed() {
        let s = ApplicationServer {
            service_info: Some("vm".into()),
            include_register_request: true,
            include_register_response: true,
            ..Default::default()
        };
        let ok = sip::ResponseBuilder::new(&reg(), 200).build().unwrap();
        let (ct, b) = body(&s, Some(&reg()), Some(&ok), "bnd").unwrap();
        assert_eq!(ct, "multipart/mixed;boundary=bnd");
        let b = String::from_utf8(b).unwrap();
        assert_eq!(b.matches("--bnd\r\n").count(), 3);
        assert!(b.ends_with("--bnd--\r\n"));
        assert!(b.contains("Content-Type: message/sip\r\n\r\nREGISTER sip:ims.test SIP/2.0\r\n"));
        assert!(b.contains("Content-Type: message/sip\r\n\r\nSIP/2.0 200 OK\r\n"));
        // Asked for the response of a deregistration that has none yet: the rest only.
        let (ct, _) = body(&s, Some(&reg()), None, "bnd").unwrap();
        assert!(ct.starts_with("multipart/mixed"));
    }
}
