//! IMS header types: sec-agree (RFC 3329, TS 33.203 §7), Path (RFC 3327),
//! Service-Route (RFC 3608), P-headers (RFC 7315 / RFC 3455), option tags.
//!
//! Digest `Authorization` / `WWW-Authenticate` / `Authentication-Info` parameters
//! (AKAv1-MD5 `nonce`, `auts`, `ck`, `ik` …) are parsed by `akav1::digest`; take the
//! raw value with [`Message::header`] and the [`hdr`] names.

use std::fmt;

use crate::error::ParseError;
use crate::headers::NameAddr;
use crate::message::Message;
use crate::params::{split_list, split_top, unquote, Param, Params};

/// Header names used by IMS (full forms).
pub mod hdr {
    /// RFC 3329
    pub const SECURITY_CLIENT: &str = "Security-Client";
    /// RFC 3329
    pub const SECURITY_SERVER: &str = "Security-Server";
    /// RFC 3329
    pub const SECURITY_VERIFY: &str = "Security-Verify";
    /// RFC 3327
    pub const PATH: &str = "Path";
    /// RFC 3608
    pub const SERVICE_ROUTE: &str = "Service-Route";
    /// RFC 3325
    pub const P_ASSERTED_IDENTITY: &str = "P-Asserted-Identity";
    /// RFC 3325
    pub const P_PREFERRED_IDENTITY: &str = "P-Preferred-Identity";
    /// RFC 7315 §4.1
    pub const P_ASSOCIATED_URI: &str = "P-Associated-URI";
    /// RFC 7315 §4.2
    pub const P_CALLED_PARTY_ID: &str = "P-Called-Party-ID";
    /// RFC 7315 §4.3
    pub const P_VISITED_NETWORK_ID: &str = "P-Visited-Network-ID";
    /// RFC 7315 §4.4
    pub const P_ACCESS_NETWORK_INFO: &str = "P-Access-Network-Info";
    /// RFC 7315 §4.6
    pub const P_CHARGING_VECTOR: &str = "P-Charging-Vector";
    /// RFC 7315 §4.5
    pub const P_CHARGING_FUNCTION_ADDRESSES: &str = "P-Charging-Function-Addresses";
    /// RFC 3261
    pub const REQUIRE: &str = "Require";
    /// RFC 3261
    pub const PROXY_REQUIRE: &str = "Proxy-Require";
    /// RFC 3261
    pub const SUPPORTED: &str = "Supported";
    /// RFC 3261 (raw value; parse with `akav1::digest`)
    pub const AUTHORIZATION: &str = "Authorization";
    /// RFC 3261 (raw value; build with `akav1::digest`)
    pub const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
    /// RFC 3261
    pub const PROXY_AUTHORIZATION: &str = "Proxy-Authorization";
    /// RFC 3261
    pub const PROXY_AUTHENTICATE: &str = "Proxy-Authenticate";
    /// RFC 2617 / RFC 3261
    pub const AUTHENTICATION_INFO: &str = "Authentication-Info";
}

/// Option tags relevant to IMS registration.
pub mod tag {
    /// RFC 3329: security agreement
    pub const SEC_AGREE: &str = "sec-agree";
    /// RFC 3327: Path extension
    pub const PATH: &str = "path";
    /// RFC 5626
    pub const OUTBOUND: &str = "outbound";
    /// RFC 5627
    pub const GRUU: &str = "gruu";
}

/// One security mechanism of a Security-Client/Server/Verify header
/// (RFC 3329 §2.2; `ipsec-3gpp` parameters from TS 33.203 §7.1/Annex H).
///
/// Known parameters are typed; unknown ones are kept in `other` in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityMechanism {
    /// mechanism name (`ipsec-3gpp`, `tls`, `digest`, `ipsec-ike` …)
    pub mechanism: String,
    /// integrity algorithm (`hmac-md5-96`, `hmac-sha-1-96`)
    pub alg: Option<String>,
    /// encryption algorithm (`null`, `aes-cbc`, `des-ede3-cbc`)
    pub ealg: Option<String>,
    /// SPI of the client's inbound SA (spi-c)
    pub spi_c: Option<u32>,
    /// SPI of the server's inbound SA (spi-s)
    pub spi_s: Option<u32>,
    /// protected client port (port-c)
    pub port_c: Option<u16>,
    /// protected server port (port-s)
    pub port_s: Option<u16>,
    /// `prot` (`esp`, `ah`)
    pub prot: Option<String>,
    /// `mod` (`trans`, `tun`, `UDP-enc-tun`)
    pub mode: Option<String>,
    /// preference `q` in thousandths (0..=1000)
    pub q: Option<u16>,
    /// any other parameters
    pub other: Params,
}

fn parse_q(v: &str) -> Result<u16, ParseError> {
    // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )  (RFC 3261 §25.1)
    let bad = || ParseError::hdr("security mechanism", "bad q value");
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut thousandths: u16 = 0;
    for (k, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][k];
    }
    match int {
        "0" => Ok(thousandths),
        "1" if thousandths == 0 => Ok(1000),
        _ => Err(bad()),
    }
}

fn fmt_q(q: u16) -> String {
    if q >= 1000 {
        "1".into()
    } else {
        let s = format!("0.{q:03}");
        let t = s.trim_end_matches('0');
        if t == "0." {
            "0".into()
        } else {
            t.into()
        }
    }
}

impl SecurityMechanism {
    /// An `ipsec-3gpp` offer/answer with the given algorithms, SPIs and ports.
    #[allow(clippy::too_many_arguments)]
    pub fn ipsec_3gpp(
        alg: &str,
        ealg: Option<&str>,
        spi_c: u32,
        spi_s: u32,
        port_c: u16,
        port_s: u16,
    ) -> Self {
        SecurityMechanism {
            mechanism: "ipsec-3gpp".into(),
            alg: Some(alg.into()),
            ealg: ealg.map(Into::into),
            spi_c: Some(spi_c),
            spi_s: Some(spi_s),
            port_c: Some(port_c),
            port_s: Some(port_s),
            prot: Some("esp".into()),
            mode: Some("trans".into()),
            ..Default::default()
        }
    }

    /// Parses one mechanism: `name *(;param)`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let (name, params) = match s.find(';') {
            Some(i) => (s[..i].trim(), &s[i..]),
            None => (s, ""),
        };
        if !crate::name::is_token(name) {
            return Err(ParseError::hdr("security mechanism", "bad mechanism name"));
        }
        let mut m = SecurityMechanism {
            mechanism: name.to_string(),
            ..Default::default()
        };
        let bad = |r| ParseError::hdr("security mechanism", r);
        for p in Params::parse(params)?.0 {
            let v = p.value.as_deref().map(str::trim);
            let n = p.name.to_ascii_lowercase();
            let need = || v.ok_or(bad("parameter needs a value"));
            match n.as_str() {
                "alg" => m.alg = Some(need()?.to_string()),
                "ealg" => m.ealg = Some(need()?.to_string()),
                "prot" => m.prot = Some(need()?.to_string()),
                "mod" => m.mode = Some(need()?.to_string()),
                "spi-c" => m.spi_c = Some(need()?.parse().map_err(|_| bad("bad spi-c"))?),
                "spi-s" => m.spi_s = Some(need()?.parse().map_err(|_| bad("bad spi-s"))?),
                "port-c" => m.port_c = Some(need()?.parse().map_err(|_| bad("bad port-c"))?),
                "port-s" => m.port_s = Some(need()?.parse().map_err(|_| bad("bad port-s"))?),
                "q" => m.q = Some(parse_q(need()?)?),
                _ => m.other.0.push(p),
            }
        }
        Ok(m)
    }

    /// Parses a header value with one or more comma-separated mechanisms.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, ParseError> {
        let v: Vec<Self> = split_list(s).map(Self::parse).collect::<Result<_, _>>()?;
        if v.is_empty() {
            return Err(ParseError::hdr("security mechanism", "empty header"));
        }
        Ok(v)
    }

    /// True for `ipsec-3gpp` carrying everything needed to build the SAs
    /// (alg, both SPIs and both ports; TS 33.203 §7.1).
    pub fn is_complete_ipsec_3gpp(&self) -> bool {
        self.mechanism.eq_ignore_ascii_case("ipsec-3gpp")
            && self.alg.is_some()
            && self.spi_c.is_some()
            && self.spi_s.is_some()
            && self.port_c.is_some()
            && self.port_s.is_some()
    }

    /// The `ealg` actually requested: TS 33.203 §7.1 says absent ealg means `null`.
    pub fn ealg_or_null(&self) -> &str {
        self.ealg.as_deref().unwrap_or("null")
    }

    fn normalized(&self) -> String {
        let mut c = self.clone();
        c.mechanism.make_ascii_lowercase();
        for s in [&mut c.alg, &mut c.ealg, &mut c.prot, &mut c.mode]
            .into_iter()
            .flatten()
        {
            s.make_ascii_lowercase();
        }
        for p in &mut c.other.0 {
            p.name.make_ascii_lowercase();
        }
        c.other.0.sort_by(|a, b| a.name.cmp(&b.name));
        c.to_string()
    }
}

impl fmt::Display for SecurityMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.mechanism)?;
        if let Some(q) = self.q {
            write!(f, ";q={}", fmt_q(q))?;
        }
        if let Some(v) = &self.alg {
            write!(f, ";alg={v}")?;
        }
        if let Some(v) = &self.ealg {
            write!(f, ";ealg={v}")?;
        }
        if let Some(v) = &self.prot {
            write!(f, ";prot={v}")?;
        }
        if let Some(v) = &self.mode {
            write!(f, ";mod={v}")?;
        }
        if let Some(v) = self.spi_c {
            write!(f, ";spi-c={v}")?;
        }
        if let Some(v) = self.spi_s {
            write!(f, ";spi-s={v}")?;
        }
        if let Some(v) = self.port_c {
            write!(f, ";port-c={v}")?;
        }
        if let Some(v) = self.port_s {
            write!(f, ";port-s={v}")?;
        }
        write!(f, "{}", self.other)
    }
}

/// Formats several mechanisms as one header value.
pub fn format_security_list(list: &[SecurityMechanism]) -> String {
    list.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The private identity of a REGISTER without credentials: its public identity without
/// the `sip:` scheme (TS 24.229 §5.1.1.2.1: the IMPI derived from the IMSI has the same
/// `user@domain` shape as the temporary IMPU).
pub fn derived_impi(impu: &str) -> String {
    impu.strip_prefix("sip:")
        .or_else(|| impu.strip_prefix("sips:"))
        .unwrap_or(impu)
        .to_string()
}

/// Orders mechanisms by descending `q` (RFC 3329 §2.2); a missing q ranks after
/// every explicit one; ties keep header order.
pub fn sort_by_preference(list: &mut [SecurityMechanism]) {
    list.sort_by_key(|m| std::cmp::Reverse(m.q.map(|q| q as i32).unwrap_or(-1)));
}

/// RFC 3329 §2.3.1 step 6 / TS 33.203 §7.2: the Security-Verify list must equal the
/// Security-Server list the server sent (same mechanisms and parameters; order and
/// case of tokens do not matter). A mismatch indicates a bidding-down attack.
pub fn security_lists_equal(sent: &[SecurityMechanism], verify: &[SecurityMechanism]) -> bool {
    if sent.len() != verify.len() {
        return false;
    }
    let mut a: Vec<String> = sent.iter().map(SecurityMechanism::normalized).collect();
    let mut b: Vec<String> = verify.iter().map(SecurityMechanism::normalized).collect();
    a.sort();
    b.sort();
    a == b
}

/// `P-Access-Network-Info: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=…` (RFC 7315 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessNetworkInfo {
    /// access-type token (`3GPP-E-UTRAN-FDD`, `IEEE-802.11` …)
    pub access_type: String,
    /// access-info parameters (`utran-cell-id-3gpp`, `network-provided` …)
    pub params: Params,
}

impl AccessNetworkInfo {
    /// Parses one element.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let (t, p) = match s.find(';') {
            Some(i) => (s[..i].trim(), &s[i..]),
            None => (s, ""),
        };
        if !crate::name::is_token(t) {
            return Err(ParseError::hdr("P-Access-Network-Info", "bad access-type"));
        }
        Ok(AccessNetworkInfo {
            access_type: t.to_string(),
            params: Params::parse(p)?,
        })
    }

    /// The cell identity, whichever 3GPP parameter carries it.
    pub fn cell_id(&self) -> Option<String> {
        [
            "utran-cell-id-3gpp",
            "cgi-3gpp",
            "nrcgi-3gpp",
            "i-wlan-node-id",
        ]
        .iter()
        .find_map(|n| self.params.find(n).and_then(Param::unquoted))
    }

    /// `network-provided` flag (TS 24.229 §7.2A.4: added by the P-CSCF, trusted).
    pub fn network_provided(&self) -> bool {
        self.params.has("network-provided")
    }
}

impl fmt::Display for AccessNetworkInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.access_type)?;
        for p in self.params.iter() {
            match &p.value {
                Some(v) => write!(f, "; {}={v}", p.name)?,
                None => write!(f, "; {}", p.name)?,
            }
        }
        Ok(())
    }
}

/// `P-Visited-Network-ID: "Visited network", other.net` (RFC 7315 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitedNetworkId {
    /// token or unquoted quoted-string
    pub value: String,
    /// generic parameters
    pub params: Params,
}

impl VisitedNetworkId {
    /// Parses a header value (several elements).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, ParseError> {
        split_list(s)
            .map(|e| {
                let mut parts = split_top(e, b';');
                let v = parts.next().unwrap_or("").trim();
                if v.is_empty() || (v.starts_with('"') != (v.ends_with('"') && v.len() >= 2)) {
                    return Err(ParseError::hdr("P-Visited-Network-ID", "bad value"));
                }
                let rest = &e[e.find(v).map(|i| i + v.len()).unwrap_or(e.len())..];
                Ok(VisitedNetworkId {
                    value: unquote(v),
                    params: Params::parse(rest)?,
                })
            })
            .collect()
    }
}

impl fmt::Display for VisitedNetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if crate::name::is_token(&self.value) {
            f.write_str(&self.value)?;
        } else {
            f.write_str(&crate::params::quote(&self.value))?;
        }
        write!(f, "{}", self.params)
    }
}

/// `P-Charging-Vector: icid-value=…; icid-generated-at=…; orig-ioi=…` (RFC 7315 §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargingVector {
    /// all parameters, in order (icid-value first)
    pub params: Params,
}

impl ChargingVector {
    /// A vector with a fresh ICID.
    pub fn new(icid: &str) -> Self {
        let mut params = Params::default();
        params.set("icid-value", Some(icid));
        ChargingVector { params }
    }

    /// Parses the header value; `icid-value` is mandatory.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let params = Params::parse(s)?;
        if params.get("icid-value").is_none() {
            return Err(ParseError::hdr("P-Charging-Vector", "missing icid-value"));
        }
        Ok(ChargingVector { params })
    }

    /// IMS charging identifier.
    pub fn icid(&self) -> Option<String> {
        self.params.find("icid-value").and_then(Param::unquoted)
    }

    /// Originating IOI.
    pub fn orig_ioi(&self) -> Option<String> {
        self.params.find("orig-ioi").and_then(Param::unquoted)
    }

    /// Terminating IOI.
    pub fn term_ioi(&self) -> Option<String> {
        self.params.find("term-ioi").and_then(Param::unquoted)
    }

    /// icid-generated-at host.
    pub fn generated_at(&self) -> Option<String> {
        self.params
            .find("icid-generated-at")
            .and_then(Param::unquoted)
    }
}

impl fmt::Display for ChargingVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            match &p.value {
                Some(v) => write!(f, "{}={v}", p.name)?,
                None => f.write_str(&p.name)?,
            }
        }
        Ok(())
    }
}

/// Typed access to IMS headers on a [`Message`].
impl Message {
    fn security(&self, name: &str) -> Result<Vec<SecurityMechanism>, ParseError> {
        let mut out = Vec::new();
        for v in self.headers_named(name) {
            out.extend(SecurityMechanism::parse_list(v)?);
        }
        Ok(out)
    }

    /// All Security-Client mechanisms, in header order (empty if absent).
    pub fn security_client(&self) -> Result<Vec<SecurityMechanism>, ParseError> {
        self.security(hdr::SECURITY_CLIENT)
    }

    /// All Security-Server mechanisms.
    pub fn security_server(&self) -> Result<Vec<SecurityMechanism>, ParseError> {
        self.security(hdr::SECURITY_SERVER)
    }

    /// All Security-Verify mechanisms.
    pub fn security_verify(&self) -> Result<Vec<SecurityMechanism>, ParseError> {
        self.security(hdr::SECURITY_VERIFY)
    }

    /// Path entries, top first (RFC 3327).
    pub fn path(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(hdr::PATH)
    }

    /// Service-Route entries (RFC 3608).
    pub fn service_route(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(hdr::SERVICE_ROUTE)
    }

    /// P-Asserted-Identity entries (RFC 3325: at most one sip/sips and one tel).
    pub fn p_asserted_identity(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(hdr::P_ASSERTED_IDENTITY)
    }

    /// P-Preferred-Identity entries.
    pub fn p_preferred_identity(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(hdr::P_PREFERRED_IDENTITY)
    }

    /// P-Associated-URI entries (implicit registration set, RFC 7315 §4.1).
    pub fn p_associated_uri(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(hdr::P_ASSOCIATED_URI)
    }

    /// P-Access-Network-Info elements.
    pub fn p_access_network_info(&self) -> Result<Vec<AccessNetworkInfo>, ParseError> {
        self.header_values(hdr::P_ACCESS_NETWORK_INFO)
            .map(AccessNetworkInfo::parse)
            .collect()
    }

    /// P-Visited-Network-ID elements.
    pub fn p_visited_network_id(&self) -> Result<Vec<VisitedNetworkId>, ParseError> {
        let mut out = Vec::new();
        for v in self.headers_named(hdr::P_VISITED_NETWORK_ID) {
            out.extend(VisitedNetworkId::parse_list(v)?);
        }
        Ok(out)
    }

    /// P-Charging-Vector, `None` if absent.
    pub fn p_charging_vector(&self) -> Result<Option<ChargingVector>, ParseError> {
        self.header(hdr::P_CHARGING_VECTOR)
            .map(ChargingVector::parse)
            .transpose()
    }

    /// Option tags of Require/Supported/Proxy-Require (all fields, in order).
    pub fn option_tags<'a>(&'a self, header: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.header_values(header)
    }

    /// True if `header` lists `tag` (option tags compare case-insensitively).
    pub fn has_option_tag(&self, header: &str, tag: &str) -> bool {
        self.header_values(header)
            .any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// Removes `tag` from every `header` field; fields left empty are removed
    /// (TS 24.229 §5.2.7.2: the P-CSCF strips `sec-agree` before forwarding).
    pub fn remove_option_tag(&mut self, header: &str, tag: &str) {
        self.retain_header_values(header, |t| !t.eq_ignore_ascii_case(tag));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_client_multi() {
        let v = "ipsec-3gpp; alg=hmac-sha-1-96; ealg=aes-cbc; spi-c=3929102; spi-s=2237;port-c=5062; port-s=5064;prot=esp;mod=trans;q=0.5, ipsec-3gpp;alg=hmac-md5-96;spi-c=1;spi-s=2;port-c=3;port-s=4;q=0.9";
        let mut l = SecurityMechanism::parse_list(v).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].alg.as_deref(), Some("hmac-sha-1-96"));
        assert_eq!(l[0].spi_c, Some(3929102));
        assert_eq!(l[0].port_s, Some(5064));
        assert_eq!(l[0].q, Some(500));
        assert_eq!(l[1].ealg_or_null(), "null");
        assert!(l.iter().all(|m| m.is_complete_ipsec_3gpp()));
        sort_by_preference(&mut l);
        assert_eq!(l[0].alg.as_deref(), Some("hmac-md5-96"));
        let s = format_security_list(&l);
        let back = SecurityMechanism::parse_list(&s).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn security_errors() {
        for bad in [
            "",
            "ipsec-3gpp;spi-c=abc",
            "ipsec-3gpp;spi-c=4294967296",
            "ipsec-3gpp;port-c=70000",
            "ipsec-3gpp;q=1.5",
            "ipsec-3gpp;q=0.1234",
            "ipsec-3gpp;alg",
            "ip sec",
            "ipsec-3gpp;;",
        ] {
            assert!(SecurityMechanism::parse_list(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_q("1.000").unwrap(), 1000);
        assert_eq!(fmt_q(100), "0.1");
        assert_eq!(fmt_q(0), "0");
    }

    #[test]
    fn verify_equality() {
        let sent = vec![SecurityMechanism::ipsec_3gpp(
            "hmac-sha-1-96",
            Some("aes-cbc"),
            1,
            2,
            3,
            4,
        )];
        let verify = SecurityMechanism::parse_list(
            "ipsec-3gpp;port-s=4;port-c=3;spi-s=2;spi-c=1;mod=trans;prot=ESP;ealg=aes-cbc;alg=HMAC-SHA-1-96",
        )
        .unwrap();
        assert!(security_lists_equal(&sent, &verify));
        let downgraded = SecurityMechanism::parse_list(
            "ipsec-3gpp;port-s=4;port-c=3;spi-s=2;spi-c=1;mod=trans;prot=esp;ealg=null;alg=hmac-sha-1-96",
        )
        .unwrap();
        assert!(!security_lists_equal(&sent, &downgraded));
        assert!(!security_lists_equal(&sent, &[]));
    }

    #[test]
    fn p_headers() {
        let a = AccessNetworkInfo::parse("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=001010001000019b")
            .unwrap();
        assert_eq!(a.cell_id().as_deref(), Some("001010001000019b"));
        assert_eq!(
            a.to_string(),
            "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=001010001000019b"
        );
        let v = VisitedNetworkId::parse_list("\"Visited, network\";p=1, other.net").unwrap();
        assert_eq!(v[0].value, "Visited, network");
        assert_eq!(v[0].params.get("p"), Some("1"));
        assert_eq!(v[1].to_string(), "other.net");
        assert!(VisitedNetworkId::parse_list("\"open").is_err());
        let c = ChargingVector::parse(
            "icid-value=\"AyretyU0dm+6O2IrT5tAFrbHLso=023551024\"; orig-ioi=home1.net",
        )
        .unwrap();
        assert_eq!(
            c.icid().as_deref(),
            Some("AyretyU0dm+6O2IrT5tAFrbHLso=023551024")
        );
        assert_eq!(c.orig_ioi().as_deref(), Some("home1.net"));
        assert!(ChargingVector::parse("orig-ioi=x").is_err());
        assert_eq!(ChargingVector::parse(&c.to_string()).unwrap(), c);
    }
}
