//! The registrar's data (RFC 3261 §10.3, TS 24.229 §5.4.1.2): bindings with their Path,
//! the implicit registration set and the subscription the HSS sent with SAR.
//!
//! Pure data and functions: the [`crate::Scscf`] core owns the tables and the timers.

use ifc::ImsSubscription;
use sip::headers::{contact_expires, parse_delta_seconds, Contacts};
use sip::{Message, NameAddr, ParseError};
use std::time::Instant;

/// One contact of a registered identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact as registered, without its `expires` parameter.
    pub contact: String,
    /// The Path the REGISTER carried (RFC 3327): how terminating requests reach the UE.
    pub path: Vec<String>,
    /// When it expires.
    pub expires_at: Instant,
}

/// A registration: one implicit registration set of one private identity.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The private identity that registered.
    pub impi: String,
    /// The public identity in the REGISTER's To.
    pub impu: String,
    /// The implicit registration set: `impu` first, then the rest of its set, barred
    /// identities left out (TS 24.229 §5.4.1.2.2).
    pub associated: Vec<String>,
    /// The user's profile from the SAA (service profiles, iFCs), when the HSS sent one.
    pub subscription: Option<ImsSubscription>,
    /// Contacts.
    pub bindings: Vec<Binding>,
    /// When the whole registration expires (its longest binding).
    pub expires_at: Instant,
    /// Distinguishes this registration from an earlier one of the same identity, so an
    /// old expiry timer cannot end a newer registration.
    pub generation: u64,
}

/// A URI in the canonical form registrations are keyed by (scheme, user, host; no port
/// or parameters, RFC 3261 §10.3 step 5). Strings that do not parse key as themselves.
pub fn aor_key(identity: &str) -> String {
    sip::Uri::parse(identity)
        .map(|u| u.aor())
        .unwrap_or_else(|_| identity.to_string())
}

/// The implicit registration set of `impu` in `sub`: `impu` first, then the other
/// non-barred identities of the service profile that contains it.
pub fn implicit_set(impu: &str, sub: Option<&ImsSubscription>) -> Vec<String> {
    let mut out = vec![impu.to_string()];
    let Some(sub) = sub else { return out };
    for sp in &sub.service_profiles {
        if sp
            .public_identities
            .iter()
            .any(|p| aor_key(&p.identity) == impu)
        {
            for p in &sp.public_identities {
                let k = aor_key(&p.identity);
                if !p.barring_indication && !out.contains(&k) {
                    out.push(k);
                }
            }
        }
    }
    out
}

/// Is `impu` barred in `sub` (TS 29.228 §6.1.4: a barred identity cannot be registered
/// on its own)?
pub fn is_barred(impu: &str, sub: &ImsSubscription) -> bool {
    sub.service_profiles
        .iter()
        .flat_map(|sp| &sp.public_identities)
        .any(|p| p.barring_indication && aor_key(&p.identity) == impu)
}

/// Who a REGISTER is for (TS 24.229 §5.1.1.2.1): the public identity in To, the digest
/// credentials if any, and the private identity — the credentials' username, else derived
/// from the public identity.
#[derive(Debug, Clone)]
pub struct Identities {
    /// IMPU, as registrations are keyed ([`aor_key`]).
    pub impu: String,
    /// IMPI.
    pub impi: String,
    /// The Authorization credentials.
    pub creds: Option<akav1::digest::Credentials>,
}

/// The [`Identities`] of a REGISTER; `None` when To or Authorization is malformed (a 400).
pub fn identities(req: &Message) -> Option<Identities> {
    let impu = req.to_header().ok()?.uri.aor();
    let creds = match req.digest_credentials() {
        None => None,
        Some(c) => Some(c.ok()?),
    };
    let impi = match &creds {
        Some(c) => c.username.clone(),
        None => sip::ims::derived_impi(&impu),
    };
    Some(Identities { impu, impi, creds })
}

/// The expiry a REGISTER asks for: the smallest Contact `expires`, else the Expires
/// header, else `default` (RFC 3261 §10.2.1.1). `Contact: *` is 0.
pub fn requested_expires(req: &Message, default: u32) -> Result<u32, ParseError> {
    let header = match req.header("Expires") {
        Some(v) => Some(parse_delta_seconds(v)?),
        None => None,
    };
    let mut contact = None;
    for v in req.header_values("Contact") {
        match Contacts::parse(v)? {
            Contacts::Star => contact = Some(0),
            Contacts::List(l) => {
                for c in l {
                    if let Some(e) = contact_expires(&c)? {
                        contact = Some(contact.map_or(e, |x: u32| x.min(e)));
                    }
                }
            }
        }
    }
    Ok(contact.or(header).unwrap_or(default))
}

/// The Contacts of a REGISTER, each without its `expires` parameter.
pub fn contacts(req: &Message) -> Vec<NameAddr> {
    req.header_values("Contact")
        .filter_map(|v| match Contacts::parse(v) {
            Ok(Contacts::List(l)) => Some(l),
            _ => None,
        })
        .flatten()
        .map(|mut c| {
            c.params.remove("expires");
            c
        })
        .collect()
}

/// The Contact value of a deregistration's 200 OK: each contact with `expires=0`.
pub fn contacts_expired(req: &Message) -> Option<String> {
    let out: Vec<String> = contacts(req)
        .into_iter()
        .map(|c| format!("{c};expires=0"))
        .collect();
    (!out.is_empty()).then(|| out.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ifc::{PublicIdentity, ServiceProfile};

    fn sub() -> ImsSubscription {
        let id = |u: &str, barred| PublicIdentity {
            identity: u.into(),
            barring_indication: barred,
            ..Default::default()
        };
        ImsSubscription {
            private_id: "a@ims.test".into(),
            service_profiles: vec![
                ServiceProfile {
                    public_identities: vec![
                        id("sip:a@ims.test", false),
                        id("tel:+4930123", false),
                        id("sip:hidden@ims.test", true),
                    ],
                    ..Default::default()
                },
                ServiceProfile {
                    public_identities: vec![id("sip:other@ims.test", false)],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn implicit_set_is_the_profile_without_barred_identities() {
        let s = sub();
        assert_eq!(
            implicit_set("sip:a@ims.test", Some(&s)),
            ["sip:a@ims.test", "tel:+4930123"]
        );
        assert_eq!(
            implicit_set("sip:other@ims.test", Some(&s)),
            ["sip:other@ims.test"]
        );
        assert_eq!(implicit_set("sip:x@y", None), ["sip:x@y"]);
        assert!(is_barred("sip:hidden@ims.test", &s));
        assert!(!is_barred("sip:a@ims.test", &s));
    }

    #[test]
    fn expiry_from_contact_header_or_default() {
        let m = |extra: &str| {
            Message::parse(
                format!(
                    "REGISTER sip:ims.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                     From: <sip:a@ims.test>;tag=1\r\nTo: <sip:a@ims.test>\r\nCall-ID: c\r\n\
                     CSeq: 1 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(requested_expires(&m(""), 600).unwrap(), 600);
        assert_eq!(requested_expires(&m("Expires: 30\r\n"), 600).unwrap(), 30);
        assert_eq!(
            requested_expires(
                &m("Expires: 30\r\nContact: <sip:u@h>;expires=90, <sip:v@h>;expires=70\r\n"),
                600
            )
            .unwrap(),
            70
        );
        assert_eq!(
            requested_expires(&m("Contact: *\r\nExpires: 0\r\n"), 600).unwrap(),
            0
        );
        assert!(requested_expires(&m("Expires: soon\r\n"), 600).is_err());
        let r = m("Contact: <sip:u@h>;expires=90\r\n");
        assert_eq!(contacts_expired(&r).as_deref(), Some("<sip:u@h>;expires=0"));
    }
}
