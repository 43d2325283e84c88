//! Provisioning input shared by the CLI and the REST API.

use crate::csv::default_impus;
use crate::store::{home_domain_from_imsi, parse_hex, Impu, RegState, Subscriber};
use serde::{Deserialize, Serialize};

/// How to fill identities that the input leaves out.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// IMS home domain; None = derive from the IMSI.
    pub domain: Option<String>,
    /// MNC length for that derivation.
    pub mnc_digits: usize,
    /// AMF when none is given.
    pub amf: [u8; 2],
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            domain: None,
            mnc_digits: 2,
            amf: [0x80, 0x00],
        }
    }
}

/// A subscriber as given to `hss subscriber add` or `POST /api/v1/subscribers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscriber {
    /// IMPI; default `<IMSI>@<domain>`.
    #[serde(default)]
    pub impi: Option<String>,
    /// IMSI (needed unless `impi` is given).
    #[serde(default)]
    pub imsi: Option<String>,
    /// ICCID.
    #[serde(default)]
    pub iccid: Option<String>,
    /// MSISDN (a leading `+` is dropped).
    #[serde(default)]
    pub msisdn: Option<String>,
    /// K, 32 hex digits.
    pub k: String,
    /// OPc, 32 hex digits (give this or `op`).
    #[serde(default)]
    pub opc: Option<String>,
    /// OP, 32 hex digits; OPc is computed and only OPc is stored.
    #[serde(default)]
    pub op: Option<String>,
    /// AMF, 4 hex digits.
    #[serde(default)]
    pub amf: Option<String>,
    /// Last issued SQN to start from.
    #[serde(default)]
    pub sqn: Option<u64>,
    /// IMPUs; default sip:IMSI@domain, and sip:+MSISDN@domain, tel:+MSISDN with an MSISDN.
    #[serde(default)]
    pub impus: Option<Vec<Impu>>,
    /// Own iFCs.
    #[serde(default)]
    pub ifcs: Vec<ifc::InitialFilterCriteria>,
    /// Shared iFC profile name.
    #[serde(default)]
    pub profile: Option<String>,
    /// Shared iFC set ids.
    #[serde(default)]
    pub shared_ifc_set_ids: Vec<u32>,
}

impl NewSubscriber {
    /// Validates and completes the input.
    pub fn build(self, d: &Defaults) -> Result<Subscriber, String> {
        let k = parse_hex::<16>(&self.k).map_err(|e| format!("k: {e}"))?;
        let opc = match (&self.opc, &self.op) {
            (Some(_), Some(_)) => return Err("give either opc or op, not both".into()),
            (Some(o), None) => parse_hex::<16>(o).map_err(|e| format!("opc: {e}"))?,
            (None, Some(o)) => {
                akav1::opc_from_op(&k, &parse_hex::<16>(o).map_err(|e| format!("op: {e}"))?)
            }
            (None, None) => return Err("opc or op is required".into()),
        };
        let amf = match &self.amf {
            Some(a) => parse_hex::<2>(a).map_err(|e| format!("amf: {e}"))?,
            None => d.amf,
        };
        if let Some(i) = &self.imsi {
            if !(6..=15).contains(&i.len()) || !i.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("imsi {i:?} is not 6-15 digits"));
            }
        }
        let domain = d.domain.clone().or_else(|| {
            self.imsi
                .as_deref()
                .and_then(|i| home_domain_from_imsi(i, d.mnc_digits))
        });
        let impi = match (self.impi, &self.imsi, &domain) {
            (Some(i), _, _) => i,
            (None, Some(imsi), Some(dom)) => format!("{imsi}@{dom}"),
            _ => return Err("impi or imsi is required".into()),
        };
        let msisdn = self.msisdn.map(|m| m.trim_start_matches('+').to_string());
        if let Some(m) = &msisdn {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("msisdn {m:?} is not digits"));
            }
        }
        let impus = match self.impus {
            Some(v) if !v.is_empty() => v,
            _ => default_impus(
                &impi,
                self.imsi.as_deref(),
                msisdn.as_deref(),
                domain.as_deref(),
            ),
        };
        let sqn = self.sqn.unwrap_or(0);
        if sqn > akav1::SQN_MAX {
            return Err("sqn does not fit in 48 bits".into());
        }
        Ok(Subscriber {
            impi,
            imsi: self.imsi,
            iccid: self.iccid,
            msisdn,
            k,
            opc,
            amf,
            sqn,
            impus,
            ifcs: self.ifcs,
            profile: self.profile,
            shared_ifc_set_ids: self.shared_ifc_set_ids,
            reg_state: RegState::NotRegistered,
            scscf_name: None,
            scscf_host: None,
            scscf_realm: None,
        })
    }
}
