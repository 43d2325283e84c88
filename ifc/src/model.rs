//! The IMS subscription profile data model: TS 29.228 Annex B (CxDataType.xsd), the content of
//! the Cx `User-Data` AVP (TS 29.229 §6.3.6) sent in SAA and PPR.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `IMSSubscription` (TS 29.228 Annex B.2.1): one private identity and its service profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImsSubscription {
    /// `PrivateID`: the IMPI (e.g. `001010000000001@ims.mnc001.mcc001.3gppnetwork.org`).
    pub private_id: String,
    /// `ServiceProfile` elements, at least one in a valid document.
    pub service_profiles: Vec<ServiceProfile>,
}

impl ImsSubscription {
    /// The service profile whose implicit set holds `identity` (TS 29.228 §6.1.2: the S-CSCF
    /// serves a request with the profile of the public identity it names). Identities are
    /// compared by [`identity_key`], so `tel:+49-30-123` finds the profile listing
    /// `tel:+4930123`, and `sip:Alice@IMS.example.org;user=phone` the one listing
    /// `sip:Alice@ims.example.org`.
    pub fn profile_of(&self, identity: &str) -> Option<&ServiceProfile> {
        let key = identity_key(identity);
        self.service_profiles.iter().find(|sp| {
            sp.public_identities
                .iter()
                .any(|p| identity_key(&p.identity) == key)
        })
    }
}

/// The comparable form of a public identity: for `sip:`/`sips:` the scheme, user part and
/// lower-cased host (port, parameters and headers dropped, RFC 3261 §10.3 step 5; the user
/// part stays case-sensitive, RFC 3261 §19.1.4); for `tel:` the number without visual
/// separators `-.()` and parameters (RFC 3966 §5.1.1); anything else as written. Angle
/// brackets and a display name around the URI are ignored.
pub fn identity_key(identity: &str) -> String {
    let s = identity.trim();
    let s = match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let Some((scheme, rest)) = s.split_once(':') else {
        return s.to_string();
    };
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "tel" => {
            let number = rest.split(';').next().unwrap_or_default();
            let digits: String = number
                .chars()
                .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
                .collect();
            format!("tel:{digits}")
        }
        "sip" | "sips" => {
            let rest = rest.split(['?']).next().unwrap_or_default();
            let (user, hostport) = match rest.rsplit_once('@') {
                Some((u, h)) => (Some(u.split(';').next().unwrap_or_default()), h),
                None => (None, rest),
            };
            let hostport = hostport.split(';').next().unwrap_or_default();
            let host = if let Some(v6) = hostport.strip_prefix('[') {
                format!("[{}]", v6.split(']').next().unwrap_or_default())
            } else {
                hostport.split(':').next().unwrap_or_default().to_string()
            };
            let host = host.to_ascii_lowercase();
            match user {
                Some(u) => format!("{scheme}:{u}@{host}"),
                None => format!("{scheme}:{host}"),
            }
        }
        _ => s.to_string(),
    }
}

/// `ServiceProfile` (TS 29.228 Annex B.2.2): public identities sharing one set of services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceProfile {
    /// `PublicIdentity` elements (the implicit registration set when sent in an SAA).
    pub public_identities: Vec<PublicIdentity>,
    /// `CoreNetworkServicesAuthorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_network_services_authorization: Option<CoreNetworkServicesAuthorization>,
    /// `InitialFilterCriteria` elements, in document order (evaluation sorts by priority).
    #[serde(default)]
    pub initial_filter_criteria: Vec<InitialFilterCriteria>,
    /// `Extension/SharedIFCSetID` (TS 29.228 Annex B.2.2, TS 29.229 Shared iFC Sets feature):
    /// references to iFC sets both HSS and S-CSCF know by number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_ifc_set_ids: Vec<u32>,
}

/// Shared iFC sets (TS 29.228 §6.6.3): set id → its iFCs, configured in HSS and S-CSCF alike.
pub type SharedIfcSets = BTreeMap<u32, Vec<InitialFilterCriteria>>;

impl ServiceProfile {
    /// The iFCs that apply to this profile: its own plus those of every referenced shared set
    /// known in `shared` (unknown ids are ignored, as an S-CSCF without them would).
    pub fn effective_ifcs(&self, shared: &SharedIfcSets) -> Vec<InitialFilterCriteria> {
        let mut out = self.initial_filter_criteria.clone();
        for id in &self.shared_ifc_set_ids {
            if let Some(set) = shared.get(id) {
                out.extend(set.iter().cloned());
            }
        }
        out
    }

    /// Replaces each shared-set reference known in `shared` by its iFCs (for an S-CSCF that does
    /// not support the Shared iFC Sets feature).
    pub fn expand_shared(&mut self, shared: &SharedIfcSets) {
        self.initial_filter_criteria = self.effective_ifcs(shared);
        self.shared_ifc_set_ids
            .retain(|id| !shared.contains_key(id));
    }
}

/// `PublicIdentity` (TS 29.228 Annex B.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PublicIdentity {
    /// `Identity`: a SIP URI (`sip:alice@ims.example.org`) or tel URI (`tel:+491701234567`).
    pub identity: String,
    /// `BarringIndication`: barred identities may register but not originate or terminate.
    #[serde(default)]
    pub barring_indication: bool,
    /// `Extension/IdentityType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<IdentityType>,
    /// `Extension/WildcardedPSI` (for [`IdentityType::WildcardedPsi`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcarded_psi: Option<String>,
    /// `Extension/Extension/DisplayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `IdentityType` (TS 29.228 Annex B.2.3, tIdentityType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityType {
    /// 0 PUBLIC_USER_IDENTITY.
    PublicUserIdentity,
    /// 1 DISTINCT_PSI.
    DistinctPsi,
    /// 2 WILDCARDED_PSI.
    WildcardedPsi,
    /// 3 WILDCARDED_IMPU.
    WildcardedImpu,
}

impl IdentityType {
    /// Numeric value in the XML.
    pub fn code(self) -> u8 {
        match self {
            Self::PublicUserIdentity => 0,
            Self::DistinctPsi => 1,
            Self::WildcardedPsi => 2,
            Self::WildcardedImpu => 3,
        }
    }
    /// From the numeric value in the XML.
    pub fn from_code(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::PublicUserIdentity,
            1 => Self::DistinctPsi,
            2 => Self::WildcardedPsi,
            3 => Self::WildcardedImpu,
            _ => return None,
        })
    }
}

/// `CoreNetworkServicesAuthorization` (TS 29.228 Annex B.2.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CoreNetworkServicesAuthorization {
    /// `SubscribedMediaProfileId`: an operator-defined media policy index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed_media_profile_id: Option<u32>,
}

/// `InitialFilterCriteria` (TS 29.228 Annex B.2.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialFilterCriteria {
    /// `Priority`: lower values are evaluated first.
    pub priority: i32,
    /// `TriggerPoint`: absent means the iFC always matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_point: Option<TriggerPoint>,
    /// `ApplicationServer`.
    pub application_server: ApplicationServer,
    /// `ProfilePartIndicator`: absent means the iFC applies registered and unregistered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_part_indicator: Option<ProfilePartIndicator>,
}

impl InitialFilterCriteria {
    /// The iFC labs provision most: requests of `method` (in session case `case`, or any
    /// case when `None`) go to the application server `server`, with `default_handling`
    /// when it cannot be reached. One trigger point, conjunctive (CNF) groups 0 and 1.
    pub fn for_method(
        priority: i32,
        method: &str,
        case: Option<SessionCase>,
        server: &str,
        default_handling: DefaultHandling,
    ) -> InitialFilterCriteria {
        let spt = |group, condition| Spt {
            condition_negated: false,
            groups: vec![group],
            condition,
            registration_types: vec![],
        };
        let mut spts = vec![spt(0, SptCondition::Method(method.into()))];
        if let Some(c) = case {
            spts.push(spt(1, SptCondition::SessionCase(c)));
        }
        InitialFilterCriteria {
            priority,
            trigger_point: Some(TriggerPoint {
                condition_type_cnf: true,
                spts,
            }),
            application_server: ApplicationServer {
                server_name: server.into(),
                default_handling,
                ..Default::default()
            },
            profile_part_indicator: None,
        }
    }
}

/// `TriggerPoint` (TS 29.228 Annex B.2.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TriggerPoint {
    /// `ConditionTypeCNF`: true = conjunctive normal form (AND of groups, OR inside a group),
    /// false = disjunctive normal form (OR of groups, AND inside a group).
    pub condition_type_cnf: bool,
    /// `SPT` elements.
    #[serde(default)]
    pub spts: Vec<Spt>,
}

/// `SPT`, a service point trigger (TS 29.228 Annex B.2.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spt {
    /// `ConditionNegated`.
    #[serde(default)]
    pub condition_negated: bool,
    /// `Group` elements: the SPT belongs to every listed group.
    pub groups: Vec<u32>,
    /// The condition.
    pub condition: SptCondition,
    /// `Extension/RegistrationType` (only meaningful with `Method` = REGISTER).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registration_types: Vec<RegistrationType>,
}

/// The choice inside an `SPT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SptCondition {
    /// `RequestURI`: a regular expression searched in the Request-URI.
    RequestUri(String),
    /// `Method`: a SIP method, compared case-insensitively.
    Method(String),
    /// `SIPHeader`: a header name and an optional regular expression for its value; without
    /// `Content` the presence of the header is the condition.
    SipHeader {
        /// `Header`.
        header: String,
        /// `Content`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
    },
    /// `SessionCase`.
    SessionCase(SessionCase),
    /// `SessionDescription`: an SDP line type (`m`, `a`, ...) and an optional regex for its value.
    SessionDescription {
        /// `Line`.
        line: String,
        /// `Content`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
    },
}

/// `SessionCase` (TS 29.228 Annex B.2.7, tDirectionOfRequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionCase {
    /// 0 ORIGINATING_SESSION.
    Originating,
    /// 1 TERMINATING_REGISTERED.
    TerminatingRegistered,
    /// 2 TERMINATING_UNREGISTERED.
    TerminatingUnregistered,
    /// 3 ORIGINATING_UNREGISTERED.
    OriginatingUnregistered,
    /// 4 ORIGINATING_CDIV.
    OriginatingCdiv,
}

impl SessionCase {
    /// Numeric value in the XML.
    pub fn code(self) -> u8 {
        match self {
            Self::Originating => 0,
            Self::TerminatingRegistered => 1,
            Self::TerminatingUnregistered => 2,
            Self::OriginatingUnregistered => 3,
            Self::OriginatingCdiv => 4,
        }
    }
    /// From the numeric value in the XML.
    pub fn from_code(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Originating,
            1 => Self::TerminatingRegistered,
            2 => Self::TerminatingUnregistered,
            3 => Self::OriginatingUnregistered,
            4 => Self::OriginatingCdiv,
            _ => return None,
        })
    }
}

/// `RegistrationType` (TS 29.228 Annex B.2.7 extension): which REGISTERs a Method=REGISTER SPT
/// matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationType {
    /// 0 INITIAL_REGISTRATION.
    Initial,
    /// 1 RE-REGISTRATION.
    Re,
    /// 2 DE-REGISTRATION.
    De,
}

impl RegistrationType {
    /// Numeric value in the XML.
    pub fn code(self) -> u8 {
        match self {
            Self::Initial => 0,
            Self::Re => 1,
            Self::De => 2,
        }
    }
    /// From the numeric value in the XML.
    pub fn from_code(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Initial,
            1 => Self::Re,
            2 => Self::De,
            _ => return None,
        })
    }
}

/// `ApplicationServer` (TS 29.228 Annex B.2.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApplicationServer {
    /// `ServerName`: the AS SIP URI.
    pub server_name: String,
    /// `DefaultHandling`: what to do when the AS cannot be reached.
    #[serde(default)]
    pub default_handling: DefaultHandling,
    /// `ServiceInfo`: opaque data given to the AS in a third-party REGISTER body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_info: Option<String>,
    /// `IncludeRegisterRequest`: include the incoming REGISTER in third-party registration.
    #[serde(default)]
    pub include_register_request: bool,
    /// `IncludeRegisterResponse`: include the 200 OK in third-party registration.
    #[serde(default)]
    pub include_register_response: bool,
}

/// `DefaultHandling` (TS 29.228 Annex B.2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DefaultHandling {
    /// 0 SESSION_CONTINUED: skip the AS and evaluate the next iFC.
    #[default]
    SessionContinued,
    /// 1 SESSION_TERMINATED: fail the request.
    SessionTerminated,
}

/// `ProfilePartIndicator` (TS 29.228 Annex B.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfilePartIndicator {
    /// 0 REGISTERED: applies only while the user is registered.
    Registered,
    /// 1 UNREGISTERED: applies only while the user is not registered.
    Unregistered,
}
