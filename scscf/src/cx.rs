//! The S-CSCF side of Cx (TS 29.229): MAR for vectors (and resynchronisation), SAR to
//! register and deregister. Pure functions over `diameter::Message`, so they are tested
//! without a socket.
//!
//! Answers are read into types, never into strings: a base-protocol error such as
//! 5001 DIAMETER_AVP_UNSUPPORTED (RFC 6733 §7.1.5) and the Cx Experimental-Result 5001
//! DIAMETER_ERROR_USER_UNKNOWN (TS 29.229 §6.2.2.1) share a number and nothing else.

use diameter::dict::enums::NO_STATE_MAINTAINED;
use diameter::{app, avp, cmd, Avp, FindAvp, Message, ResultCode, VENDOR_3GPP};

/// The scheme Kamailio and handsets use; an HSS answers AKA vectors for it.
pub const SCHEME_AKAV1_MD5: &str = "Digest-AKAv1-MD5";

/// Who we are on Cx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CxIdentity {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Realm (the HSS's realm).
    pub destination_realm: String,
    /// Server-Name: our SIP URI as the S-CSCF the HSS stores.
    pub server_name: String,
}

/// The Server-Name the HSS stores for the S-CSCF at `address` (TS 29.228 §6.3.4): its SIP
/// URI, by address so that each S-CSCF instance on one HSS has its own.
pub fn server_name(address: std::net::SocketAddr) -> String {
    format!("sip:{}:{}", sip::uri::ip_host(address.ip()), address.port())
}

/// Why a Cx answer is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CxError {
    /// A base-protocol Result-Code other than success (RFC 6733 §7.1).
    #[error("HSS answered Result-Code {0}")]
    Base(u32),
    /// An Experimental-Result-Code other than success (TS 29.229 §6.2).
    #[error("HSS answered Experimental-Result-Code {code} (vendor {vendor})")]
    Experimental {
        /// Vendor-Id (10415 for 3GPP).
        vendor: u32,
        /// The code.
        code: u32,
    },
    /// A required AVP is missing or malformed.
    #[error("malformed answer: {0}")]
    Malformed(#[from] Malformed),
}

/// What is wrong with an answer that claims success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Neither Result-Code nor Experimental-Result.
    #[error("no Result-Code")]
    NoResult,
    /// A required AVP is absent or of the wrong type.
    #[error(transparent)]
    Avp(#[from] diameter::AvpError),
    /// An octet string of the wrong length.
    #[error("{what} is {len} octets ({expected})")]
    Length {
        /// Which value.
        what: &'static str,
        /// Its length.
        len: usize,
        /// What was expected.
        expected: &'static str,
    },
    /// User-Data that is not UTF-8.
    #[error("User-Data is not UTF-8")]
    UserDataNotUtf8,
}

impl CxError {
    /// True when the HSS refuses the user rather than failing: unknown user (5001), the
    /// identities do not belong together (5002), roaming not allowed (5004), and the
    /// base-protocol AUTHORIZATION_REJECTED (5003). A 403 to the UE, not a 5xx.
    pub fn is_user_error(&self) -> bool {
        use diameter::result::cx;
        match self {
            CxError::Experimental { vendor, code } => {
                *vendor == VENDOR_3GPP
                    && [
                        cx::ERROR_USER_UNKNOWN,
                        cx::ERROR_IDENTITIES_DONT_MATCH,
                        cx::ERROR_ROAMING_NOT_ALLOWED,
                    ]
                    .contains(code)
            }
            CxError::Base(c) => *c == diameter::result::AUTHORIZATION_REJECTED,
            CxError::Malformed(_) => false,
        }
    }

    /// True for Experimental-Result 5001 DIAMETER_ERROR_USER_UNKNOWN (TS 29.229
    /// §6.2.2.1): the identity does not exist, as opposed to existing elsewhere or not
    /// registered.
    pub fn is_unknown_user(&self) -> bool {
        matches!(self, CxError::Experimental { vendor, code }
            if *vendor == VENDOR_3GPP && *code == diameter::result::cx::ERROR_USER_UNKNOWN)
    }
}

/// What every Cx request of ours starts with (TS 29.229 §6.1: session, application,
/// origin, destination realm).
fn header(id: &CxIdentity, session_id: &str, code: u32) -> Message {
    Message::request(app::CX, code)
        .with(Avp::utf8(avp::SESSION_ID, session_id))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            NO_STATE_MAINTAINED,
        ))
        .with(Avp::utf8(avp::ORIGIN_HOST, &id.origin_host))
        .with(Avp::utf8(avp::ORIGIN_REALM, &id.origin_realm))
        .with(Avp::utf8(avp::DESTINATION_REALM, &id.destination_realm))
}

fn base(id: &CxIdentity, session_id: &str, code: u32, impi: &str, impu: &str) -> Message {
    header(id, session_id, code)
        .with(Avp::utf8(avp::USER_NAME, impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, impu))
        .with(Avp::utf8(avp::SERVER_NAME, &id.server_name))
}

/// MAR for one AKA vector (TS 29.229 §6.1.8). With `resync = Some(RAND ‖ AUTS)` the HSS
/// checks AUTS and restarts from the card's SQN.
pub fn mar(
    id: &CxIdentity,
    session_id: &str,
    impi: &str,
    impu: &str,
    resync: Option<&[u8]>,
) -> Message {
    let mut item = vec![Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, SCHEME_AKAV1_MD5)];
    if let Some(r) = resync {
        item.push(Avp::octets(avp::SIP_AUTHORIZATION, r.to_vec()));
    }
    base(id, session_id, cmd::MULTIMEDIA_AUTH, impi, impu)
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
        .with(Avp::grouped(avp::SIP_AUTH_DATA_ITEM, item))
}

/// SAR (TS 29.229 §6.1.3) with a Server-Assignment-Type from
/// [`diameter::dict::enums::server_assignment_type`].
pub fn sar(id: &CxIdentity, session_id: &str, impi: &str, impu: &str, kind: i32) -> Message {
    base(id, session_id, cmd::SERVER_ASSIGNMENT, impi, impu)
        .with(Avp::enumerated(avp::SERVER_ASSIGNMENT_TYPE, kind))
        .with(Avp::enumerated(
            avp::USER_DATA_ALREADY_AVAILABLE,
            diameter::dict::enums::user_data_already_available::NOT_AVAILABLE,
        ))
}

/// SAR with Server-Assignment-Type UNREGISTERED_USER (TS 29.229 §6.1.2, §6.3.15): the
/// profile of a public identity that is not registered, to serve a request for it
/// (terminating-unregistered, or an AS originating on its behalf). No User-Name: only the
/// public identity is known (TS 29.228 §6.1.2.1, the HSS finds the private one).
pub fn sar_unregistered(id: &CxIdentity, session_id: &str, impu: &str) -> Message {
    header(id, session_id, cmd::SERVER_ASSIGNMENT)
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, impu))
        .with(Avp::utf8(avp::SERVER_NAME, &id.server_name))
        .with(Avp::enumerated(
            avp::SERVER_ASSIGNMENT_TYPE,
            assignment::UNREGISTERED_USER,
        ))
        .with(Avp::enumerated(
            avp::USER_DATA_ALREADY_AVAILABLE,
            diameter::dict::enums::user_data_already_available::NOT_AVAILABLE,
        ))
}

/// LIR (TS 29.229 §6.1.5): which S-CSCF serves `impu`, asked for a callee we hold no
/// registration of. No User-Name: a location request names only the public identity.
pub fn lir(id: &CxIdentity, session_id: &str, impu: &str) -> Message {
    header(id, session_id, cmd::LOCATION_INFO).with(Avp::utf8(avp::PUBLIC_IDENTITY, impu))
}

/// What an LIA says of the callee (TS 29.229 §6.1.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Registered at the S-CSCF of this Server-Name.
    Registered(String),
    /// Known, not registered (2003 UNREGISTERED_SERVICE), perhaps with an S-CSCF for its
    /// unregistered services.
    Unregistered(Option<String>),
    /// Known, no S-CSCF assigned (the answer carries capabilities instead).
    Unassigned,
}

/// The location in a successful LIA; a refusal (e.g. 5001 USER_UNKNOWN) as its error.
pub fn parse_lia(answer: &Message) -> Result<Location, CxError> {
    check_success(answer)?;
    let name = answer
        .find(avp::SERVER_NAME)
        .and_then(|a| std::str::from_utf8(a.as_octets()).ok())
        .map(str::to_string);
    let unregistered = matches!(answer.result(), Some(ResultCode::Experimental { code, .. })
        if code == diameter::result::cx::UNREGISTERED_SERVICE);
    Ok(match (unregistered, name) {
        (true, n) => Location::Unregistered(n),
        (false, Some(n)) => Location::Registered(n),
        (false, None) => Location::Unassigned,
    })
}

/// The Server-Assignment-Types we send (TS 29.229 §6.3.15), from the one dictionary.
pub use diameter::dict::enums::server_assignment_type as assignment;

fn check_success(answer: &Message) -> Result<(), CxError> {
    match answer.result() {
        Some(ResultCode::Base(c)) if (2000..3000).contains(&c) => Ok(()),
        Some(ResultCode::Experimental { code, .. }) if (2000..3000).contains(&code) => Ok(()),
        Some(ResultCode::Base(c)) => Err(CxError::Base(c)),
        Some(ResultCode::Experimental { vendor, code }) => {
            Err(CxError::Experimental { vendor, code })
        }
        None => Err(Malformed::NoResult.into()),
    }
}

/// One vector from an MAA.
#[derive(Clone, PartialEq, Eq)]
pub struct CxVector {
    /// RAND.
    pub rand: [u8; 16],
    /// AUTN.
    pub autn: [u8; 16],
    /// XRES (4..16 octets; Milenage gives 8).
    pub xres: Vec<u8>,
    /// CK.
    pub ck: [u8; 16],
    /// IK.
    pub ik: [u8; 16],
}

impl std::fmt::Debug for CxVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CxVector").finish_non_exhaustive()
    }
}

fn arr16(what: &'static str, b: &[u8]) -> Result<[u8; 16], CxError> {
    b.try_into().map_err(|_| {
        Malformed::Length {
            what,
            len: b.len(),
            expected: "16",
        }
        .into()
    })
}

/// The first SIP-Auth-Data-Item of a successful MAA (TS 29.229 §6.3.13).
pub fn parse_maa(answer: &Message) -> Result<CxVector, CxError> {
    check_success(answer)?;
    let m = |e: diameter::AvpError| CxError::from(Malformed::from(e));
    let item = answer.get_grouped(avp::SIP_AUTH_DATA_ITEM).map_err(m)?;
    let sa = item.get_octets(avp::SIP_AUTHENTICATE).map_err(m)?;
    if sa.len() < 32 {
        return Err(Malformed::Length {
            what: "SIP-Authenticate",
            len: sa.len(),
            expected: "RAND ‖ AUTN needs 32",
        }
        .into());
    }
    let xres = item.get_octets(avp::SIP_AUTHORIZATION).map_err(m)?.to_vec();
    if !(4..=16).contains(&xres.len()) {
        return Err(Malformed::Length {
            what: "XRES",
            len: xres.len(),
            expected: "4..16",
        }
        .into());
    }
    Ok(CxVector {
        rand: arr16("RAND", &sa[..16])?,
        autn: arr16("AUTN", &sa[16..32])?,
        xres,
        ck: arr16("CK", item.get_octets(avp::CONFIDENTIALITY_KEY).map_err(m)?)?,
        ik: arr16("IK", item.get_octets(avp::INTEGRITY_KEY).map_err(m)?)?,
    })
}

/// The User-Data of a successful SAA, if any (TS 29.229 §6.1.4).
pub fn parse_saa(answer: &Message) -> Result<Option<String>, CxError> {
    check_success(answer)?;
    match answer.find(avp::USER_DATA) {
        None => Ok(None),
        Some(a) => String::from_utf8(a.as_octets().to_vec())
            .map(Some)
            .map_err(|_| Malformed::UserDataNotUtf8.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diameter::result;

    fn id() -> CxIdentity {
        CxIdentity {
            origin_host: "pcscf.ims.test".into(),
            origin_realm: "ims.test".into(),
            destination_realm: "ims.test".into(),
            server_name: "sip:scscf.ims.test:6060".into(),
        }
    }

    #[test]
    fn lia_tells_unknown_from_unregistered() {
        let req = lir(&id(), "s;2", "sip:bob@ims.test");
        let wire = Message::decode(req.encode()).unwrap();
        assert_eq!(wire.code, cmd::LOCATION_INFO);
        assert!(wire.find(avp::USER_NAME).is_none());
        let unknown = Message::answer_for(&wire)
            .with_experimental_result(VENDOR_3GPP, result::cx::ERROR_USER_UNKNOWN);
        assert!(parse_lia(&unknown).unwrap_err().is_unknown_user());
        // Base 5001 AVP_UNSUPPORTED is not an unknown user.
        let base = Message::answer_for(&wire).with_result_code(result::AVP_UNSUPPORTED);
        assert!(!parse_lia(&base).unwrap_err().is_unknown_user());
        let unreg = Message::answer_for(&wire)
            .with_experimental_result(VENDOR_3GPP, result::cx::UNREGISTERED_SERVICE);
        assert_eq!(parse_lia(&unreg).unwrap(), Location::Unregistered(None));
        let reg = Message::answer_for(&wire)
            .with_result_code(result::SUCCESS)
            .with(Avp::utf8(avp::SERVER_NAME, "sip:127.0.0.1:6060"));
        assert_eq!(
            parse_lia(&reg).unwrap(),
            Location::Registered("sip:127.0.0.1:6060".into())
        );
    }

    #[test]
    fn mar_carries_the_resync_data_inside_the_item() {
        let m = mar(&id(), "s;1", "impi", "sip:impu", Some(&[7u8; 30]));
        let wire = Message::decode(m.encode()).unwrap();
        assert_eq!(wire.code, cmd::MULTIMEDIA_AUTH);
        assert_eq!(
            wire.get_utf8(avp::SERVER_NAME).unwrap(),
            "sip:scscf.ims.test:6060"
        );
        let item = wire.get_grouped(avp::SIP_AUTH_DATA_ITEM).unwrap();
        assert_eq!(
            item.get_octets(avp::SIP_AUTHORIZATION).unwrap(),
            &[7u8; 30][..]
        );
    }

    #[test]
    fn maa_parsing_checks_result_and_lengths() {
        let req = mar(&id(), "s;1", "impi", "sip:impu", None);
        let good = Message::answer_for(&req)
            .with(Avp::grouped(
                avp::SIP_AUTH_DATA_ITEM,
                [
                    Avp::octets(avp::SIP_AUTHENTICATE, vec![1u8; 32]),
                    Avp::octets(avp::SIP_AUTHORIZATION, vec![2u8; 8]),
                    Avp::octets(avp::CONFIDENTIALITY_KEY, vec![3u8; 16]),
                    Avp::octets(avp::INTEGRITY_KEY, vec![4u8; 16]),
                ],
            ))
            .with_result_code(result::SUCCESS);
        let v = parse_maa(&good).unwrap();
        assert_eq!((v.rand, v.xres.len(), v.ik), ([1; 16], 8, [4; 16]));
        let unknown = Message::answer_for(&req)
            .with_experimental_result(VENDOR_3GPP, result::cx::ERROR_USER_UNKNOWN);
        let e = parse_maa(&unknown).unwrap_err();
        assert!(e.is_user_error(), "{e}");
        let short = Message::answer_for(&req)
            .with(Avp::grouped(
                avp::SIP_AUTH_DATA_ITEM,
                [Avp::octets(avp::SIP_AUTHENTICATE, vec![1u8; 20])],
            ))
            .with_result_code(result::SUCCESS);
        assert!(matches!(parse_maa(&short), Err(CxError::Malformed(_))));
    }

    #[test]
    fn base_5001_is_not_user_unknown() {
        let req = mar(&id(), "s;1", "impi", "sip:impu", None);
        // DIAMETER_AVP_UNSUPPORTED (base, 5001) shares its number with Cx USER_UNKNOWN.
        let base = Message::answer_for(&req).with_result_code(5001);
        let e = parse_maa(&base).unwrap_err();
        assert_eq!(e, CxError::Base(5001));
        assert!(!e.is_user_error(), "{e}");
    }
}
