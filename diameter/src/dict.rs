//! Dictionary: AVP and command definitions for the base protocol (RFC 6733), Cx/Dx
//! (3GPP TS 29.229) and Sh (3GPP TS 29.329).
//!
//! Each AVP is an [`AvpDef`] constant in [`avp`] carrying code, vendor, the flags to
//! send and the data type, so one value both builds and finds an AVP:
//! `Avp::utf8(avp::PUBLIC_IDENTITY, "sip:alice@ims.lab")`, `msg.get_utf8(avp::PUBLIC_IDENTITY)`.

use std::sync::OnceLock;

use crate::codec::Avp;
use crate::message::Message;

/// 3GPP's IANA enterprise number, the Vendor-Id of Cx/Dx/Sh AVPs.
pub const VENDOR_3GPP: u32 = 10415;

/// AVP data formats (RFC 6733 §4.2, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AvpType {
    /// Arbitrary bytes.
    OctetString,
    /// UTF-8 text.
    Utf8String,
    /// FQDN or realm (RFC 6733 §4.3.1), ASCII/UTF-8.
    DiameterIdentity,
    /// `aaa://` URI (RFC 6733 §4.3.1).
    DiameterUri,
    /// 32-bit signed, network order.
    Integer32,
    /// 64-bit signed, network order.
    Integer64,
    /// 32-bit unsigned, network order.
    Unsigned32,
    /// 64-bit unsigned, network order.
    Unsigned64,
    /// IEEE 754 single.
    Float32,
    /// IEEE 754 double.
    Float64,
    /// Integer32 with named values.
    Enumerated,
    /// A sequence of AVPs.
    Grouped,
    /// 2-byte address family + address (RFC 6733 §4.3.1).
    Address,
    /// NTP seconds since 1900 (RFC 6733 §4.3.1), 4 bytes.
    Time,
}

/// Definition of an AVP: what to send and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AvpDef {
    /// AVP code.
    pub code: u32,
    /// Vendor-Id; 0 means no Vendor-Id field (V bit clear).
    pub vendor: u32,
    /// Flags to set when sending (V is derived from `vendor`, M and P as the spec says).
    pub flags: u8,
    /// Data format.
    pub ty: AvpType,
    /// Name as written in the RFC/TS.
    pub name: &'static str,
}

/// Anything naming an AVP by code and vendor: an [`AvpDef`] or a `(code, vendor)` pair.
pub trait AvpKey: Copy {
    /// AVP code.
    fn code(&self) -> u32;
    /// Vendor-Id (0 if none).
    fn vendor(&self) -> u32;
    /// Name for error messages.
    fn name(&self) -> &'static str {
        lookup_avp(self.code(), self.vendor()).map_or("?", |d| d.name)
    }
}

impl AvpKey for AvpDef {
    fn code(&self) -> u32 {
        self.code
    }
    fn vendor(&self) -> u32 {
        self.vendor
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

impl AvpKey for (u32, u32) {
    fn code(&self) -> u32 {
        self.0
    }
    fn vendor(&self) -> u32 {
        self.1
    }
}

impl AvpKey for &AvpDef {
    fn code(&self) -> u32 {
        self.code
    }
    fn vendor(&self) -> u32 {
        self.vendor
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

/// AVP flag bits (RFC 6733 §4.1).
pub mod flags {
    /// Vendor-Specific: a Vendor-Id field follows the header.
    pub const V: u8 = 0x80;
    /// Mandatory: the receiver must understand the AVP or reject the message.
    pub const M: u8 = 0x40;
    /// Protected (end-to-end security; historic).
    pub const P: u8 = 0x20;
}

macro_rules! avps {
    ($( $(#[$doc:meta])* $id:ident = ($code:expr, $vendor:expr, $flags:expr, $ty:ident, $name:expr); )*) => {
        /// AVP definitions (base RFC 6733, Cx/Dx TS 29.229, Sh TS 29.329, digest RFC 4590).
        pub mod avp {
            #[allow(unused_imports)]
            use super::{AvpDef, AvpType, VENDOR_3GPP, flags::*};
            $(
                $(#[$doc])*
                #[doc = concat!("`", $name, "` (code ", stringify!($code), ").")]
                pub const $id: AvpDef = AvpDef {
                    code: $code,
                    vendor: $vendor,
                    flags: $flags,
                    ty: AvpType::$ty,
                    name: $name,
                };
            )*
            /// Every AVP this dictionary knows.
            pub const ALL: &[AvpDef] = &[$($id),*];
        }
    };
}

avps! {
    // ---- RFC 6733 base protocol (§4.5, §8) ----
    USER_NAME = (1, 0, M, Utf8String, "User-Name");
    CLASS = (25, 0, M, OctetString, "Class");
    SESSION_TIMEOUT = (27, 0, M, Unsigned32, "Session-Timeout");
    PROXY_STATE = (33, 0, M, OctetString, "Proxy-State");
    ACCT_SESSION_ID = (44, 0, M, OctetString, "Acct-Session-Id");
    ACCT_MULTI_SESSION_ID = (50, 0, M, Utf8String, "Acct-Multi-Session-Id");
    EVENT_TIMESTAMP = (55, 0, M, Time, "Event-Timestamp");
    ACCT_INTERIM_INTERVAL = (85, 0, M, Unsigned32, "Acct-Interim-Interval");
    HOST_IP_ADDRESS = (257, 0, M, Address, "Host-IP-Address");
    AUTH_APPLICATION_ID = (258, 0, M, Unsigned32, "Auth-Application-Id");
    ACCT_APPLICATION_ID = (259, 0, M, Unsigned32, "Acct-Application-Id");
    VENDOR_SPECIFIC_APPLICATION_ID = (260, 0, M, Grouped, "Vendor-Specific-Application-Id");
    REDIRECT_HOST_USAGE = (261, 0, M, Enumerated, "Redirect-Host-Usage");
    REDIRECT_MAX_CACHE_TIME = (262, 0, M, Unsigned32, "Redirect-Max-Cache-Time");
    SESSION_ID = (263, 0, M, Utf8String, "Session-Id");
    ORIGIN_HOST = (264, 0, M, DiameterIdentity, "Origin-Host");
    SUPPORTED_VENDOR_ID = (265, 0, M, Unsigned32, "Supported-Vendor-Id");
    VENDOR_ID = (266, 0, M, Unsigned32, "Vendor-Id");
    FIRMWARE_REVISION = (267, 0, 0, Unsigned32, "Firmware-Revision");
    RESULT_CODE = (268, 0, M, Unsigned32, "Result-Code");
    PRODUCT_NAME = (269, 0, 0, Utf8String, "Product-Name");
    SESSION_BINDING = (270, 0, M, Unsigned32, "Session-Binding");
    SESSION_SERVER_FAILOVER = (271, 0, M, Enumerated, "Session-Server-Failover");
    MULTI_ROUND_TIME_OUT = (272, 0, M, Unsigned32, "Multi-Round-Time-Out");
    DISCONNECT_CAUSE = (273, 0, M, Enumerated, "Disconnect-Cause");
    AUTH_REQUEST_TYPE = (274, 0, M, Enumerated, "Auth-Request-Type");
    AUTH_GRACE_PERIOD = (276, 0, M, Unsigned32, "Auth-Grace-Period");
    AUTH_SESSION_STATE = (277, 0, M, Enumerated, "Auth-Session-State");
    ORIGIN_STATE_ID = (278, 0, M, Unsigned32, "Origin-State-Id");
    FAILED_AVP = (279, 0, M, Grouped, "Failed-AVP");
    PROXY_HOST = (280, 0, M, DiameterIdentity, "Proxy-Host");
    ERROR_MESSAGE = (281, 0, 0, Utf8String, "Error-Message");
    ROUTE_RECORD = (282, 0, M, DiameterIdentity, "Route-Record");
    DESTINATION_REALM = (283, 0, M, DiameterIdentity, "Destination-Realm");
    PROXY_INFO = (284, 0, M, Grouped, "Proxy-Info");
    RE_AUTH_REQUEST_TYPE = (285, 0, M, Enumerated, "Re-Auth-Request-Type");
    ACCOUNTING_SUB_SESSION_ID = (287, 0, M, Unsigned64, "Accounting-Sub-Session-Id");
    AUTHORIZATION_LIFETIME = (291, 0, M, Unsigned32, "Authorization-Lifetime");
    REDIRECT_HOST = (292, 0, M, DiameterUri, "Redirect-Host");
    DESTINATION_HOST = (293, 0, M, DiameterIdentity, "Destination-Host");
    ERROR_REPORTING_HOST = (294, 0, 0, DiameterIdentity, "Error-Reporting-Host");
    TERMINATION_CAUSE = (295, 0, M, Enumerated, "Termination-Cause");
    ORIGIN_REALM = (296, 0, M, DiameterIdentity, "Origin-Realm");
    EXPERIMENTAL_RESULT = (297, 0, M, Grouped, "Experimental-Result");
    EXPERIMENTAL_RESULT_CODE = (298, 0, M, Unsigned32, "Experimental-Result-Code");
    INBAND_SECURITY_ID = (299, 0, M, Unsigned32, "Inband-Security-Id");
    ACCOUNTING_RECORD_TYPE = (480, 0, M, Enumerated, "Accounting-Record-Type");
    ACCOUNTING_REALTIME_REQUIRED = (483, 0, M, Enumerated, "Accounting-Realtime-Required");
    ACCOUNTING_RECORD_NUMBER = (485, 0, M, Unsigned32, "Accounting-Record-Number");

    // ---- RFC 4590 digest AVPs used inside SIP-Digest-Authenticate (TS 29.229 §6.3.36) ----
    DIGEST_REALM = (104, 0, M, Utf8String, "Digest-Realm");
    DIGEST_QOP = (110, 0, M, Utf8String, "Digest-QoP");
    DIGEST_ALGORITHM = (111, 0, M, Utf8String, "Digest-Algorithm");
    DIGEST_HA1 = (121, 0, M, Utf8String, "Digest-HA1");

    // ---- 3GPP TS 29.229 Cx/Dx (§6.3), vendor 10415 ----
    VISITED_NETWORK_IDENTIFIER = (600, VENDOR_3GPP, V | M, OctetString, "Visited-Network-Identifier");
    PUBLIC_IDENTITY = (601, VENDOR_3GPP, V | M, Utf8String, "Public-Identity");
    SERVER_NAME = (602, VENDOR_3GPP, V | M, Utf8String, "Server-Name");
    SERVER_CAPABILITIES = (603, VENDOR_3GPP, V | M, Grouped, "Server-Capabilities");
    MANDATORY_CAPABILITY = (604, VENDOR_3GPP, V | M, Unsigned32, "Mandatory-Capability");
    OPTIONAL_CAPABILITY = (605, VENDOR_3GPP, V | M, Unsigned32, "Optional-Capability");
    /// Cx User-Data: the TS 29.228 IMS subscription XML.
    USER_DATA = (606, VENDOR_3GPP, V | M, OctetString, "User-Data");
    SIP_NUMBER_AUTH_ITEMS = (607, VENDOR_3GPP, V | M, Unsigned32, "SIP-Number-Auth-Items");
    SIP_AUTHENTICATION_SCHEME = (608, VENDOR_3GPP, V | M, Utf8String, "SIP-Authentication-Scheme");
    SIP_AUTHENTICATE = (609, VENDOR_3GPP, V | M, OctetString, "SIP-Authenticate");
    SIP_AUTHORIZATION = (610, VENDOR_3GPP, V | M, OctetString, "SIP-Authorization");
    SIP_AUTHENTICATION_CONTEXT = (611, VENDOR_3GPP, V | M, OctetString, "SIP-Authentication-Context");
    SIP_AUTH_DATA_ITEM = (612, VENDOR_3GPP, V | M, Grouped, "SIP-Auth-Data-Item");
    SIP_ITEM_NUMBER = (613, VENDOR_3GPP, V | M, Unsigned32, "SIP-Item-Number");
    SERVER_ASSIGNMENT_TYPE = (614, VENDOR_3GPP, V | M, Enumerated, "Server-Assignment-Type");
    DEREGISTRATION_REASON = (615, VENDOR_3GPP, V | M, Grouped, "Deregistration-Reason");
    REASON_CODE = (616, VENDOR_3GPP, V | M, Enumerated, "Reason-Code");
    REASON_INFO = (617, VENDOR_3GPP, V | M, Utf8String, "Reason-Info");
    CHARGING_INFORMATION = (618, VENDOR_3GPP, V | M, Grouped, "Charging-Information");
    PRIMARY_EVENT_CHARGING_FUNCTION_NAME = (619, VENDOR_3GPP, V | M, DiameterUri, "Primary-Event-Charging-Function-Name");
    SECONDARY_EVENT_CHARGING_FUNCTION_NAME = (620, VENDOR_3GPP, V | M, DiameterUri, "Secondary-Event-Charging-Function-Name");
    PRIMARY_CHARGING_COLLECTION_FUNCTION_NAME = (621, VENDOR_3GPP, V | M, DiameterUri, "Primary-Charging-Collection-Function-Name");
    SECONDARY_CHARGING_COLLECTION_FUNCTION_NAME = (622, VENDOR_3GPP, V | M, DiameterUri, "Secondary-Charging-Collection-Function-Name");
    USER_AUTHORIZATION_TYPE = (623, VENDOR_3GPP, V | M, Enumerated, "User-Authorization-Type");
    USER_DATA_ALREADY_AVAILABLE = (624, VENDOR_3GPP, V | M, Enumerated, "User-Data-Already-Available");
    CONFIDENTIALITY_KEY = (625, VENDOR_3GPP, V | M, OctetString, "Confidentiality-Key");
    INTEGRITY_KEY = (626, VENDOR_3GPP, V | M, OctetString, "Integrity-Key");
    /// TS 29.229 §6.3.29: M bit "must not" per TS 29.229 table 6.3.1 for Supported-Features.
    SUPPORTED_FEATURES = (628, VENDOR_3GPP, V, Grouped, "Supported-Features");
    FEATURE_LIST_ID = (629, VENDOR_3GPP, V, Unsigned32, "Feature-List-ID");
    FEATURE_LIST = (630, VENDOR_3GPP, V, Unsigned32, "Feature-List");
    SUPPORTED_APPLICATIONS = (631, VENDOR_3GPP, V, Grouped, "Supported-Applications");
    ASSOCIATED_IDENTITIES = (632, VENDOR_3GPP, V, Grouped, "Associated-Identities");
    ORIGINATING_REQUEST = (633, VENDOR_3GPP, V | M, Enumerated, "Originating-Request");
    WILDCARDED_PUBLIC_IDENTITY = (634, VENDOR_3GPP, V, Utf8String, "Wildcarded-Public-Identity");
    SIP_DIGEST_AUTHENTICATE = (635, VENDOR_3GPP, V, Grouped, "SIP-Digest-Authenticate");
    WILDCARDED_IMPU = (636, VENDOR_3GPP, V, Utf8String, "Wildcarded-IMPU");
    UAR_FLAGS = (637, VENDOR_3GPP, V, Unsigned32, "UAR-Flags");
    LOOSE_ROUTE_INDICATION = (638, VENDOR_3GPP, V, Enumerated, "Loose-Route-Indication");
    SCSCF_RESTORATION_INFO = (639, VENDOR_3GPP, V, Grouped, "SCSCF-Restoration-Info");
    PATH = (640, VENDOR_3GPP, V, OctetString, "Path");
    CONTACT = (641, VENDOR_3GPP, V, OctetString, "Contact");
    SUBSCRIPTION_INFO = (642, VENDOR_3GPP, V, Grouped, "Subscription-Info");
    CALL_ID_SIP_HEADER = (643, VENDOR_3GPP, V, OctetString, "Call-ID-SIP-Header");
    FROM_SIP_HEADER = (644, VENDOR_3GPP, V, OctetString, "From-SIP-Header");
    TO_SIP_HEADER = (645, VENDOR_3GPP, V, OctetString, "To-SIP-Header");
    RECORD_ROUTE = (646, VENDOR_3GPP, V, OctetString, "Record-Route");
    ASSOCIATED_REGISTERED_IDENTITIES = (647, VENDOR_3GPP, V, Grouped, "Associated-Registered-Identities");
    MULTIPLE_REGISTRATION_INDICATION = (648, VENDOR_3GPP, V, Enumerated, "Multiple-Registration-Indication");
    RESTORATION_INFO = (649, VENDOR_3GPP, V, Grouped, "Restoration-Info");
    SESSION_PRIORITY = (650, VENDOR_3GPP, V, Enumerated, "Session-Priority");
    LIA_FLAGS = (653, VENDOR_3GPP, V, Unsigned32, "LIA-Flags");
    INITIAL_CSEQ_SEQUENCE_NUMBER = (654, VENDOR_3GPP, V, Unsigned32, "Initial-CSeq-Sequence-Number");
    SAR_FLAGS = (655, VENDOR_3GPP, V, Unsigned32, "SAR-Flags");

    // ---- 3GPP TS 29.329 Sh (§6.3), vendor 10415 ----
    USER_IDENTITY = (700, VENDOR_3GPP, V | M, Grouped, "User-Identity");
    MSISDN = (701, VENDOR_3GPP, V | M, OctetString, "MSISDN");
    /// Sh User-Data (702), distinct from Cx [`USER_DATA`] (606).
    SH_USER_DATA = (702, VENDOR_3GPP, V | M, OctetString, "User-Data");
    DATA_REFERENCE = (703, VENDOR_3GPP, V | M, Enumerated, "Data-Reference");
    SERVICE_INDICATION = (704, VENDOR_3GPP, V | M, OctetString, "Service-Indication");
    SUBS_REQ_TYPE = (705, VENDOR_3GPP, V | M, Enumerated, "Subs-Req-Type");
    REQUESTED_DOMAIN = (706, VENDOR_3GPP, V | M, Enumerated, "Requested-Domain");
    CURRENT_LOCATION = (707, VENDOR_3GPP, V | M, Enumerated, "Current-Location");
    IDENTITY_SET = (708, VENDOR_3GPP, V, Enumerated, "Identity-Set");
    EXPIRY_TIME = (709, VENDOR_3GPP, V, Time, "Expiry-Time");
    SEND_DATA_INDICATION = (710, VENDOR_3GPP, V, Enumerated, "Send-Data-Indication");
    DSAI_TAG = (711, VENDOR_3GPP, V | M, OctetString, "DSAI-Tag");
}

/// Application identifiers (RFC 6733 §2.4, 3GPP TS 29.229/29.329).
pub mod app {
    /// Diameter common messages (CER/DWR/DPR).
    pub const COMMON: u32 = 0;
    /// Cx/Dx (TS 29.229 §7.2).
    pub const CX: u32 = 16_777_216;
    /// Sh (TS 29.329 §7.2).
    pub const SH: u32 = 16_777_217;
    /// Relay: a relay agent advertises this and supports all applications (RFC 6733 §2.4).
    pub const RELAY: u32 = 0xffff_ffff;
}

/// Command codes (RFC 6733 §3.1, TS 29.229 §6.1, TS 29.329 §6.1).
pub mod cmd {
    /// CER/CEA.
    pub const CAPABILITIES_EXCHANGE: u32 = 257;
    /// RAR/RAA.
    pub const RE_AUTH: u32 = 258;
    /// ACR/ACA.
    pub const ACCOUNTING: u32 = 271;
    /// ASR/ASA.
    pub const ABORT_SESSION: u32 = 274;
    /// STR/STA.
    pub const SESSION_TERMINATION: u32 = 275;
    /// DWR/DWA.
    pub const DEVICE_WATCHDOG: u32 = 280;
    /// DPR/DPA.
    pub const DISCONNECT_PEER: u32 = 282;
    /// Cx UAR/UAA.
    pub const USER_AUTHORIZATION: u32 = 300;
    /// Cx SAR/SAA.
    pub const SERVER_ASSIGNMENT: u32 = 301;
    /// Cx LIR/LIA.
    pub const LOCATION_INFO: u32 = 302;
    /// Cx MAR/MAA.
    pub const MULTIMEDIA_AUTH: u32 = 303;
    /// Cx RTR/RTA.
    pub const REGISTRATION_TERMINATION: u32 = 304;
    /// Cx PPR/PPA.
    pub const PUSH_PROFILE: u32 = 305;
    /// Sh UDR/UDA.
    pub const USER_DATA: u32 = 306;
    /// Sh PUR/PUA.
    pub const PROFILE_UPDATE: u32 = 307;
    /// Sh SNR/SNA.
    pub const SUBSCRIBE_NOTIFICATIONS: u32 = 308;
    /// Sh PNR/PNA.
    pub const PUSH_NOTIFICATION: u32 = 309;
}

/// Result-Code values (RFC 6733 §7.1) and 3GPP Experimental-Result-Code values.
pub mod result {
    /// 1001.
    pub const MULTI_ROUND_AUTH: u32 = 1001;
    /// 2001.
    pub const SUCCESS: u32 = 2001;
    /// 2002.
    pub const LIMITED_SUCCESS: u32 = 2002;
    /// 3001: the command code is not supported.
    pub const COMMAND_UNSUPPORTED: u32 = 3001;
    /// 3002.
    pub const UNABLE_TO_DELIVER: u32 = 3002;
    /// 3003.
    pub const REALM_NOT_SERVED: u32 = 3003;
    /// 3004.
    pub const TOO_BUSY: u32 = 3004;
    /// 3005.
    pub const LOOP_DETECTED: u32 = 3005;
    /// 3006.
    pub const REDIRECT_INDICATION: u32 = 3006;
    /// 3007.
    pub const APPLICATION_UNSUPPORTED: u32 = 3007;
    /// 3008.
    pub const INVALID_HDR_BITS: u32 = 3008;
    /// 3009.
    pub const INVALID_AVP_BITS: u32 = 3009;
    /// 3010: CER from a peer not in the allow-list.
    pub const UNKNOWN_PEER: u32 = 3010;
    /// 4001.
    pub const AUTHENTICATION_REJECTED: u32 = 4001;
    /// 4002.
    pub const OUT_OF_SPACE: u32 = 4002;
    /// 4003.
    pub const ELECTION_LOST: u32 = 4003;
    /// 5001: a mandatory AVP is not understood.
    pub const AVP_UNSUPPORTED: u32 = 5001;
    /// 5002.
    pub const UNKNOWN_SESSION_ID: u32 = 5002;
    /// 5003.
    pub const AUTHORIZATION_REJECTED: u32 = 5003;
    /// 5004.
    pub const INVALID_AVP_VALUE: u32 = 5004;
    /// 5005.
    pub const MISSING_AVP: u32 = 5005;
    /// 5006.
    pub const RESOURCES_EXCEEDED: u32 = 5006;
    /// 5007.
    pub const CONTRADICTING_AVPS: u32 = 5007;
    /// 5008.
    pub const AVP_NOT_ALLOWED: u32 = 5008;
    /// 5009.
    pub const AVP_OCCURS_TOO_MANY_TIMES: u32 = 5009;
    /// 5010.
    pub const NO_COMMON_APPLICATION: u32 = 5010;
    /// 5011.
    pub const UNSUPPORTED_VERSION: u32 = 5011;
    /// 5012.
    pub const UNABLE_TO_COMPLY: u32 = 5012;
    /// 5013.
    pub const INVALID_BIT_IN_HEADER: u32 = 5013;
    /// 5014.
    pub const INVALID_AVP_LENGTH: u32 = 5014;
    /// 5015.
    pub const INVALID_MESSAGE_LENGTH: u32 = 5015;
    /// 5016.
    pub const INVALID_AVP_BIT_COMBO: u32 = 5016;
    /// 5017.
    pub const NO_COMMON_SECURITY: u32 = 5017;

    /// Cx/Dx Experimental-Result-Code values (TS 29.229 §6.2), vendor 10415.
    pub mod cx {
        /// 2001.
        pub const FIRST_REGISTRATION: u32 = 2001;
        /// 2002.
        pub const SUBSEQUENT_REGISTRATION: u32 = 2002;
        /// 2003.
        pub const UNREGISTERED_SERVICE: u32 = 2003;
        /// 2004.
        pub const SERVER_NAME_NOT_STORED: u32 = 2004;
        /// 5001.
        pub const ERROR_USER_UNKNOWN: u32 = 5001;
        /// 5002.
        pub const ERROR_IDENTITIES_DONT_MATCH: u32 = 5002;
        /// 5003.
        pub const ERROR_IDENTITY_NOT_REGISTERED: u32 = 5003;
        /// 5004.
        pub const ERROR_ROAMING_NOT_ALLOWED: u32 = 5004;
        /// 5005.
        pub const ERROR_IDENTITY_ALREADY_REGISTERED: u32 = 5005;
        /// 5006.
        pub const ERROR_AUTH_SCHEME_NOT_SUPPORTED: u32 = 5006;
        /// 5007.
        pub const ERROR_IN_ASSIGNMENT_TYPE: u32 = 5007;
        /// 5008.
        pub const ERROR_TOO_MUCH_DATA: u32 = 5008;
        /// 5009.
        pub const ERROR_NOT_SUPPORTED_USER_DATA: u32 = 5009;
        /// 5011.
        pub const ERROR_FEATURE_UNSUPPORTED: u32 = 5011;
    }

    /// Sh Experimental-Result-Code values (TS 29.329 §6.2), vendor 10415.
    pub mod sh {
        /// 4100.
        pub const USER_DATA_NOT_AVAILABLE: u32 = 4100;
        /// 4101.
        pub const PRIOR_UPDATE_IN_PROGRESS: u32 = 4101;
        /// 5100.
        pub const ERROR_USER_DATA_NOT_RECOGNIZED: u32 = 5100;
        /// 5101.
        pub const ERROR_OPERATION_NOT_ALLOWED: u32 = 5101;
        /// 5102.
        pub const ERROR_USER_DATA_CANNOT_BE_READ: u32 = 5102;
        /// 5103.
        pub const ERROR_USER_DATA_CANNOT_BE_MODIFIED: u32 = 5103;
        /// 5104.
        pub const ERROR_USER_DATA_CANNOT_BE_NOTIFIED: u32 = 5104;
        /// 5105.
        pub const ERROR_TRANSPARENT_DATA_OUT_OF_SYNC: u32 = 5105;
        /// 5106.
        pub const ERROR_SUBS_DATA_ABSENT: u32 = 5106;
        /// 5107.
        pub const ERROR_NO_SUBSCRIPTION_TO_DATA: u32 = 5107;
        /// 5108.
        pub const ERROR_DSAI_NOT_AVAILABLE: u32 = 5108;
    }
}

/// Enumerated values used by the base protocol and Cx.
pub mod enums {
    /// Disconnect-Cause (RFC 6733 §5.4.3): REBOOTING.
    pub const DISCONNECT_REBOOTING: i32 = 0;
    /// Disconnect-Cause: BUSY.
    pub const DISCONNECT_BUSY: i32 = 1;
    /// Disconnect-Cause: DO_NOT_WANT_TO_TALK_TO_YOU.
    pub const DISCONNECT_DO_NOT_WANT_TO_TALK_TO_YOU: i32 = 2;
    /// Auth-Session-State (RFC 6733 §8.11): STATE_MAINTAINED.
    pub const STATE_MAINTAINED: i32 = 0;
    /// Auth-Session-State: NO_STATE_MAINTAINED (what Cx uses).
    pub const NO_STATE_MAINTAINED: i32 = 1;

    /// Server-Assignment-Type (TS 29.229 §6.3.15).
    pub mod server_assignment_type {
        /// NO_ASSIGNMENT.
        pub const NO_ASSIGNMENT: i32 = 0;
        /// REGISTRATION.
        pub const REGISTRATION: i32 = 1;
        /// RE_REGISTRATION.
        pub const RE_REGISTRATION: i32 = 2;
        /// UNREGISTERED_USER.
        pub const UNREGISTERED_USER: i32 = 3;
        /// TIMEOUT_DEREGISTRATION.
        pub const TIMEOUT_DEREGISTRATION: i32 = 4;
        /// USER_DEREGISTRATION.
        pub const USER_DEREGISTRATION: i32 = 5;
        /// TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME.
        pub const TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME: i32 = 6;
        /// USER_DEREGISTRATION_STORE_SERVER_NAME.
        pub const USER_DEREGISTRATION_STORE_SERVER_NAME: i32 = 7;
        /// ADMINISTRATIVE_DEREGISTRATION.
        pub const ADMINISTRATIVE_DEREGISTRATION: i32 = 8;
        /// AUTHENTICATION_FAILURE.
        pub const AUTHENTICATION_FAILURE: i32 = 9;
        /// AUTHENTICATION_TIMEOUT.
        pub const AUTHENTICATION_TIMEOUT: i32 = 10;
        /// DEREGISTRATION_TOO_MUCH_DATA.
        pub const DEREGISTRATION_TOO_MUCH_DATA: i32 = 11;
        /// AAA_USER_DATA_REQUEST.
        pub const AAA_USER_DATA_REQUEST: i32 = 12;
        /// PGW_UPDATE.
        pub const PGW_UPDATE: i32 = 13;
        /// RESTORATION.
        pub const RESTORATION: i32 = 14;
    }

    /// User-Authorization-Type (TS 29.229 §6.3.24).
    pub mod user_authorization_type {
        /// REGISTRATION.
        pub const REGISTRATION: i32 = 0;
        /// DE_REGISTRATION.
        pub const DE_REGISTRATION: i32 = 1;
        /// REGISTRATION_AND_CAPABILITIES.
        pub const REGISTRATION_AND_CAPABILITIES: i32 = 2;
    }

    /// Reason-Code inside Deregistration-Reason (TS 29.229 §6.3.17).
    pub mod reason_code {
        /// PERMANENT_TERMINATION.
        pub const PERMANENT_TERMINATION: i32 = 0;
        /// NEW_SERVER_ASSIGNED.
        pub const NEW_SERVER_ASSIGNED: i32 = 1;
        /// SERVER_CHANGE.
        pub const SERVER_CHANGE: i32 = 2;
        /// REMOVE_S-CSCF.
        pub const REMOVE_SCSCF: i32 = 3;
    }

    /// User-Data-Already-Available (TS 29.229 §6.3.26).
    pub mod user_data_already_available {
        /// USER_DATA_NOT_AVAILABLE.
        pub const NOT_AVAILABLE: i32 = 0;
        /// USER_DATA_ALREADY_AVAILABLE.
        pub const ALREADY_AVAILABLE: i32 = 1;
    }
}

/// A command known to the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandDef {
    /// Command code.
    pub code: u32,
    /// Application the command belongs to.
    pub app_id: u32,
    /// Long name, e.g. "Multimedia-Auth".
    pub name: &'static str,
    /// Request abbreviation, e.g. "MAR".
    pub request: &'static str,
    /// Answer abbreviation, e.g. "MAA".
    pub answer: &'static str,
    /// AVPs that the request's command ABNF allows at most once, beyond the
    /// [`APP_REQUEST_SINGLE`] header every application request has (empty for the base
    /// commands, which the peer handles itself).
    pub request_single: &'static [AvpDef],
}

/// AVPs that every Cx/Sh request carries at most once: `< Session-Id >`,
/// `{ Vendor-Specific-Application-Id }`, `{ Auth-Session-State }`, `{ Origin-Host }`,
/// `{ Origin-Realm }`, `[ Destination-Host ]`, `{ Destination-Realm }` of the command ABNFs
/// (TS 29.229 §6.1, TS 29.329 §6.1; RFC 6733 §3.2 notation).
pub const APP_REQUEST_SINGLE: &[AvpDef] = &[
    avp::SESSION_ID,
    avp::VENDOR_SPECIFIC_APPLICATION_ID,
    avp::AUTH_SESSION_STATE,
    avp::ORIGIN_HOST,
    avp::ORIGIN_REALM,
    avp::DESTINATION_HOST,
    avp::DESTINATION_REALM,
];

/// Every command this dictionary knows.
pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        code: cmd::CAPABILITIES_EXCHANGE,
        app_id: app::COMMON,
        name: "Capabilities-Exchange",
        request: "CER",
        answer: "CEA",
        request_single: &[],
    },
    CommandDef {
        code: cmd::DEVICE_WATCHDOG,
        app_id: app::COMMON,
        name: "Device-Watchdog",
        request: "DWR",
        answer: "DWA",
        request_single: &[],
    },
    CommandDef {
        code: cmd::DISCONNECT_PEER,
        app_id: app::COMMON,
        name: "Disconnect-Peer",
        request: "DPR",
        answer: "DPA",
        request_single: &[],
    },
    CommandDef {
        code: cmd::USER_AUTHORIZATION,
        app_id: app::CX,
        name: "User-Authorization",
        request: "UAR",
        answer: "UAA",
        request_single: &[
            avp::USER_NAME,
            avp::PUBLIC_IDENTITY,
            avp::VISITED_NETWORK_IDENTIFIER,
            avp::USER_AUTHORIZATION_TYPE,
            avp::UAR_FLAGS,
        ],
    },
    CommandDef {
        code: cmd::SERVER_ASSIGNMENT,
        app_id: app::CX,
        name: "Server-Assignment",
        request: "SAR",
        answer: "SAA",
        request_single: &[
            avp::USER_NAME,
            avp::WILDCARDED_PUBLIC_IDENTITY,
            avp::SERVER_NAME,
            avp::SERVER_ASSIGNMENT_TYPE,
            avp::USER_DATA_ALREADY_AVAILABLE,
            avp::SCSCF_RESTORATION_INFO,
            avp::MULTIPLE_REGISTRATION_INDICATION,
            avp::SESSION_PRIORITY,
            avp::SAR_FLAGS,
        ],
    },
    CommandDef {
        code: cmd::LOCATION_INFO,
        app_id: app::CX,
        name: "Location-Info",
        request: "LIR",
        answer: "LIA",
        request_single: &[
            avp::ORIGINATING_REQUEST,
            avp::PUBLIC_IDENTITY,
            avp::USER_AUTHORIZATION_TYPE,
            avp::SESSION_PRIORITY,
        ],
    },
    CommandDef {
        code: cmd::MULTIMEDIA_AUTH,
        app_id: app::CX,
        name: "Multimedia-Auth",
        request: "MAR",
        answer: "MAA",
        request_single: &[
            avp::USER_NAME,
            avp::PUBLIC_IDENTITY,
            avp::SIP_AUTH_DATA_ITEM,
            avp::SIP_NUMBER_AUTH_ITEMS,
            avp::SERVER_NAME,
        ],
    },
    CommandDef {
        code: cmd::REGISTRATION_TERMINATION,
        app_id: app::CX,
        name: "Registration-Termination",
        request: "RTR",
        answer: "RTA",
        request_single: &[avp::USER_NAME, avp::DEREGISTRATION_REASON],
    },
    CommandDef {
        code: cmd::PUSH_PROFILE,
        app_id: app::CX,
        name: "Push-Profile",
        request: "PPR",
        answer: "PPA",
        request_single: &[
            avp::USER_NAME,
            avp::USER_DATA,
            avp::CHARGING_INFORMATION,
            avp::SIP_AUTH_DATA_ITEM,
        ],
    },
    CommandDef {
        code: cmd::USER_DATA,
        app_id: app::SH,
        name: "User-Data",
        request: "UDR",
        answer: "UDA",
        request_single: &[
            avp::USER_IDENTITY,
            avp::SERVER_NAME,
            avp::REQUESTED_DOMAIN,
            avp::CURRENT_LOCATION,
        ],
    },
    CommandDef {
        code: cmd::PROFILE_UPDATE,
        app_id: app::SH,
        name: "Profile-Update",
        request: "PUR",
        answer: "PUA",
        request_single: &[avp::USER_IDENTITY, avp::SH_USER_DATA],
    },
    CommandDef {
        code: cmd::SUBSCRIBE_NOTIFICATIONS,
        app_id: app::SH,
        name: "Subscribe-Notifications",
        request: "SNR",
        answer: "SNA",
        request_single: &[
            avp::USER_IDENTITY,
            avp::SUBS_REQ_TYPE,
            avp::SERVER_NAME,
            avp::EXPIRY_TIME,
            avp::SEND_DATA_INDICATION,
        ],
    },
    CommandDef {
        code: cmd::PUSH_NOTIFICATION,
        app_id: app::SH,
        name: "Push-Notification",
        request: "PNR",
        answer: "PNA",
        request_single: &[avp::USER_IDENTITY, avp::SH_USER_DATA],
    },
];

/// Direct-indexed tables: base AVPs (vendor 0, codes < 1024) and 3GPP AVPs (codes
/// 0..1024 offset), so the per-AVP lookup in the decoder costs one array access.
struct AvpIndex {
    base: Vec<Option<&'static AvpDef>>,
    tgpp: Vec<Option<&'static AvpDef>>,
}

const INDEX_SIZE: usize = 1024;

fn avp_index() -> &'static AvpIndex {
    static INDEX: OnceLock<AvpIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut idx = AvpIndex {
            base: vec![None; INDEX_SIZE],
            tgpp: vec![None; INDEX_SIZE],
        };
        for d in avp::ALL {
            let table = match d.vendor {
                0 => &mut idx.base,
                VENDOR_3GPP => &mut idx.tgpp,
                _ => continue,
            };
            if let Some(slot) = table.get_mut(d.code as usize) {
                *slot = Some(d);
            }
        }
        idx
    })
}

/// Looks up an AVP definition by code and Vendor-Id (0 for none).
pub fn lookup_avp(code: u32, vendor: u32) -> Option<&'static AvpDef> {
    let idx = avp_index();
    let table = match vendor {
        0 => &idx.base,
        VENDOR_3GPP => &idx.tgpp,
        _ => return None,
    };
    table.get(code as usize).copied().flatten()
}

/// Looks up a command by code and application id.
pub fn lookup_command(code: u32, app_id: u32) -> Option<&'static CommandDef> {
    COMMANDS
        .iter()
        .find(|c| c.code == code && c.app_id == app_id)
}

/// The first AVP of an application request that occurs more often than its command ABNF
/// allows: the second copy of an AVP written `< >`, `{ }` or `[ ]` there, which RFC 6733
/// §7.5 wants in the Failed-AVP of a DIAMETER_AVP_OCCURS_TOO_MANY_TIMES (5009) answer.
/// `None` for answers, base commands and commands the dictionary does not know. Only
/// top-level AVPs are counted; a grouped AVP's own rules are its reader's business.
pub fn excess_avp(m: &Message) -> Option<&Avp> {
    if !m.is_request() || m.app_id == app::COMMON {
        return None;
    }
    let def = lookup_command(m.code, m.app_id)?;
    // One bit per single-occurrence AVP; `single_avps_fit_a_bitmask` keeps it under 64.
    let mut seen = 0u64;
    for a in &m.avps {
        let vendor = a.vendor();
        let Some(i) = APP_REQUEST_SINGLE
            .iter()
            .chain(def.request_single)
            .position(|d| d.code == a.code && d.vendor == vendor)
        else {
            continue;
        };
        let bit = 1u64 << i;
        if seen & bit != 0 {
            return Some(a);
        }
        seen |= bit;
    }
    None
}

/// Short display name of a message, e.g. "MAR" / "MAA", or "cmd-1234-R" when unknown.
pub fn command_abbrev(code: u32, app_id: u32, request: bool) -> String {
    match COMMANDS
        .iter()
        .find(|c| c.code == code && (c.app_id == app_id || c.app_id == app::COMMON))
    {
        Some(c) if request => c.request.to_string(),
        Some(c) => c.answer.to_string(),
        None => format!("cmd-{code}-{}", if request { 'R' } else { 'A' }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duplicate_avp_definitions() {
        let mut seen = std::collections::HashSet::new();
        for d in avp::ALL {
            assert!((d.code as usize) < INDEX_SIZE && (d.vendor == 0 || d.vendor == VENDOR_3GPP));
            assert_eq!(lookup_avp(d.code, d.vendor), Some(d));
            assert!(seen.insert((d.code, d.vendor)), "duplicate {}", d.name);
            assert_eq!(
                d.flags & flags::V != 0,
                d.vendor != 0,
                "V flag of {}",
                d.name
            );
        }
    }

    #[test]
    fn single_avps_fit_a_bitmask() {
        for c in COMMANDS {
            let n = APP_REQUEST_SINGLE.len() + c.request_single.len();
            assert!(n < 64, "{}", c.name);
            let mut all: Vec<_> = APP_REQUEST_SINGLE.iter().chain(c.request_single).collect();
            all.sort_by_key(|d| (d.code, d.vendor));
            all.dedup();
            assert_eq!(all.len(), n, "{} lists an AVP twice", c.name);
        }
    }

    fn mar() -> Message {
        Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
            .with(Avp::utf8(avp::SESSION_ID, "s;1;1"))
            .with(Avp::utf8(avp::ORIGIN_HOST, "scscf.ims.lab"))
            .with(Avp::utf8(avp::USER_NAME, "alice@ims.lab"))
            .with(Avp::utf8(avp::PUBLIC_IDENTITY, "sip:alice@ims.lab"))
    }

    #[test]
    fn excess_avp_finds_the_second_copy() {
        assert!(excess_avp(&mar()).is_none());
        let m = mar().with(Avp::utf8(avp::USER_NAME, "bob@ims.lab"));
        let a = excess_avp(&m).unwrap();
        assert_eq!(a.as_utf8().unwrap(), "bob@ims.lab");
        let m = mar().with(Avp::utf8(avp::SESSION_ID, "s;1;2"));
        assert_eq!(excess_avp(&m).unwrap().code, avp::SESSION_ID.code);
        // Several Public-Identity AVPs are legal in SAR (TS 29.229 §6.1.3), not in MAR.
        let m = mar().with(Avp::utf8(avp::PUBLIC_IDENTITY, "tel:+1"));
        assert_eq!(excess_avp(&m).unwrap().code, avp::PUBLIC_IDENTITY.code);
        let mut sar = m.clone();
        sar.code = cmd::SERVER_ASSIGNMENT;
        assert!(excess_avp(&sar).is_none());
        // Answers and unknown commands are not checked.
        let mut ans = mar().with(Avp::utf8(avp::USER_NAME, "bob@ims.lab"));
        ans.flags &= !Message::FLAG_R;
        assert!(excess_avp(&ans).is_none());
        let mut unknown = mar().with(Avp::utf8(avp::USER_NAME, "bob@ims.lab"));
        unknown.code = 9999;
        assert!(excess_avp(&unknown).is_none());
    }

    #[test]
    fn lookups() {
        assert_eq!(
            lookup_avp(601, VENDOR_3GPP).unwrap().name,
            "Public-Identity"
        );
        assert!(lookup_avp(601, 0).is_none());
        assert_eq!(lookup_avp(263, 0).unwrap().ty, AvpType::Utf8String);
        assert_eq!(
            lookup_avp(634, VENDOR_3GPP).unwrap().name,
            "Wildcarded-Public-Identity"
        );
        assert_eq!(lookup_command(303, app::CX).unwrap().request, "MAR");
        assert!(lookup_command(303, app::SH).is_none());
        assert_eq!(command_abbrev(280, app::CX, false), "DWA");
        assert_eq!(command_abbrev(999, 0, true), "cmd-999-R");
    }
}
