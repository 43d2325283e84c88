//! Import of SIM card data CSVs as card programming tools and vendors write them.
//!
//! Column names are matched case-insensitively, ignoring spaces, `_` and `-`, in any order:
//! `IMSI`; `ICCID`; `Ki` (also `K`, `KEY`); `OPc` (also `OP_C`) or `OP`; `MSISDN` (also
//! `PHONE`, `NUMBER`); optional `AMF`, `SQN`, `IMPI`, `IMPU`/`IMPUS` (space- or
//! `|`-separated). Lines starting with `#` and blank lines are skipped; the delimiter is `,`,
//! `;` or a tab, whichever the header line uses. Other columns (ADM1, PIN1, PUK1, ACC, KIC...)
//! are ignored: the HSS has no use for them and should not hold them.

use crate::store::{
    home_domain_from_imsi, parse_hex, Impu, RegState, Store, StoreError, Subscriber,
};

/// A CSV problem, with the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// No header line.
    #[error("empty CSV: no header line")]
    Empty,
    /// A required column is missing from the header.
    #[error("CSV header lacks a {0} column (have: {1})")]
    MissingColumn(&'static str, String),
    /// A bad value on a line.
    #[error("line {line}: {msg}")]
    Line {
        /// Line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

/// How to fill what the CSV does not carry.
#[derive(Debug, Clone)]
pub struct ImportDefaults {
    /// IMS home domain; when None it is derived from the IMSI (TS 23.003 §13.2).
    pub domain: Option<String>,
    /// MNC length for that derivation.
    pub mnc_digits: usize,
    /// AMF when the CSV has none.
    pub amf: [u8; 2],
    /// Shared iFC profile to attach.
    pub profile: Option<String>,
}

impl Default for ImportDefaults {
    fn default() -> Self {
        ImportDefaults {
            domain: None,
            mnc_digits: 2,
            amf: [0x80, 0x00],
            profile: None,
        }
    }
}

fn norm(h: &str) -> String {
    h.trim()
        .trim_matches('"')
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.'))
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Parses a card data CSV into subscribers (not yet stored).
pub fn parse(text: &str, d: &ImportDefaults) -> Result<Vec<Subscriber>, CsvError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start_matches('\u{feff}').trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or(CsvError::Empty)?;
    let delim = [',', ';', '\t']
        .into_iter()
        .max_by_key(|c| header.matches(*c).count())
        .unwrap_or(',');
    let cols: Vec<String> = opskit::csv::split_line(header, delim)
        .ok_or(CsvError::Line {
            line: 1,
            msg: "unterminated quote".into(),
        })?
        .iter()
        .map(|h| norm(h))
        .collect();
    let find = |names: &[&str]| cols.iter().position(|c| names.contains(&c.as_str()));
    let have = || cols.join(",");
    let imsi_c = find(&["imsi"]);
    let iccid_c = find(&["iccid"]);
    let ki_c = find(&["ki", "k", "key"]).ok_or_else(|| CsvError::MissingColumn("Ki", have()))?;
    let opc_c = find(&["opc", "opcode"]);
    let op_c = find(&["op"]);
    if opc_c.is_none() && op_c.is_none() {
        return Err(CsvError::MissingColumn("OPc or OP", have()));
    }
    let msisdn_c = find(&["msisdn", "phone", "number", "tel"]);
    let amf_c = find(&["amf"]);
    let sqn_c = find(&["sqn"]);
    let impi_c = find(&["impi", "privateid", "privateidentity"]);
    let impu_c = find(&["impu", "impus", "publicid", "publicidentity"]);
    if imsi_c.is_none() && impi_c.is_none() {
        return Err(CsvError::MissingColumn("IMSI or IMPI", have()));
    }
    let mut out = Vec::new();
    for (line, l) in lines {
        let f = opskit::csv::split_line(l, delim).ok_or_else(|| CsvError::Line {
            line,
            msg: "unterminated quote".into(),
        })?;
        let get = |c: Option<usize>| {
            c.and_then(|i| f.get(i))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let err = |msg: String| CsvError::Line { line, msg };
        let k = parse_hex::<16>(&get(Some(ki_c)).unwrap_or_default())
            .map_err(|e| err(format!("Ki: {e}")))?;
        let opc = match (get(opc_c), get(op_c)) {
            (Some(opc), _) => parse_hex::<16>(&opc).map_err(|e| err(format!("OPc: {e}")))?,
            (None, Some(op)) => {
                let op = parse_hex::<16>(&op).map_err(|e| err(format!("OP: {e}")))?;
                akav1::opc_from_op(&k, &op)
            }
            (None, None) => return Err(err("neither OPc nor OP".into())),
        };
        let amf = match get(amf_c) {
            Some(a) => parse_hex::<2>(&a).map_err(|e| err(format!("AMF: {e}")))?,
            None => d.amf,
        };
        let sqn = match get(sqn_c) {
            Some(s) => s.parse::<u64>().map_err(|e| err(format!("SQN: {e}")))?,
            None => 0,
        };
        let imsi = get(imsi_c);
        if let Some(i) = &imsi {
            if !(6..=15).contains(&i.len()) || !i.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!("IMSI {i:?} is not 6-15 digits")));
            }
        }
        let msisdn = get(msisdn_c).map(|m| m.trim_start_matches('+').to_string());
        let domain = d.domain.clone().or_else(|| {
            imsi.as_deref()
                .and_then(|i| home_domain_from_imsi(i, d.mnc_digits))
        });
        let impi = match (get(impi_c), &imsi, &domain) {
            (Some(i), _, _) => i,
            (None, Some(imsi), Some(dom)) => format!("{imsi}@{dom}"),
            _ => {
                return Err(err(
                    "cannot derive an IMPI (no IMPI column, no usable IMSI)".into(),
                ))
            }
        };
        let impus = match get(impu_c) {
            Some(list) => list
                .split(|c: char| c == '|' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(|u| Impu {
                    uri: u.to_string(),
                    irs: 0,
                    barred: false,
                    display_name: None,
                })
                .collect(),
            None => default_impus(&impi, imsi.as_deref(), msisdn.as_deref(), domain.as_deref()),
        };
        out.push(Subscriber {
            impi,
            imsi,
            iccid: get(iccid_c),
            msisdn,
            k,
            opc,
            amf,
            sqn,
            impus,
            ifcs: vec![],
            profile: d.profile.clone(),
            shared_ifc_set_ids: vec![],
            reg_state: RegState::NotRegistered,
            scscf_name: None,
            scscf_host: None,
            scscf_realm: None,
        });
    }
    Ok(out)
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Data rows parsed.
    pub rows: usize,
    /// New subscribers stored.
    pub added: usize,
    /// Existing subscribers replaced (only with `update`).
    pub updated: usize,
}

/// Why [`import`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The CSV did not parse: nothing was stored.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// Storing the subscriber `impi` failed; the rows before it stay imported (`done`).
    #[error("{impi}: {source} (nothing after it was imported)")]
    Store {
        /// The subscriber that could not be stored.
        impi: String,
        /// Why.
        #[source]
        source: StoreError,
        /// What was stored before it.
        done: ImportReport,
    },
}

/// Parses a card data CSV and stores its subscribers in order, the one path for the CLI
/// (`hss subscriber import`) and the REST API (`POST /api/v1/subscribers/import`). An
/// existing IMPI is a conflict unless `update`, which replaces its provisioning data (the
/// SQN never moves back, see [`Store::update`]). The whole CSV is parsed before anything is
/// stored, so a malformed row stores nothing.
pub fn import(
    store: &mut Store,
    text: &str,
    d: &ImportDefaults,
    update: bool,
) -> Result<ImportReport, ImportError> {
    let subs = parse(text, d)?;
    let mut r = ImportReport {
        rows: subs.len(),
        ..ImportReport::default()
    };
    for s in &subs {
        let res = match store.add(s) {
            Ok(()) => Ok(&mut r.added),
            Err(StoreError::Conflict(_)) if update => {
                store.update(&s.impi, s).map(|()| &mut r.updated)
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(n) => *n += 1,
            Err(source) => {
                return Err(ImportError::Store {
                    impi: s.impi.clone(),
                    source,
                    done: r,
                })
            }
        }
    }
    Ok(r)
}

/// The IMPUs a lab subscriber gets by default: `sip:<IMSI>@<domain>` (the temporary public
/// identity a UE without ISIM IMPUs derives, TS 23.003 §13.4B), plus `sip:<MSISDN>@<domain>`
/// and `tel:+<MSISDN>` when an MSISDN is known — all in one implicit registration set.
pub fn default_impus(
    impi: &str,
    imsi: Option<&str>,
    msisdn: Option<&str>,
    domain: Option<&str>,
) -> Vec<Impu> {
    let mut v = Vec::new();
    let dom = domain
        .map(str::to_string)
        .or_else(|| impi.split_once('@').map(|(_, d)| d.to_string()));
    let mk = |uri: String| Impu {
        uri,
        irs: 0,
        barred: false,
        display_name: None,
    };
    match (imsi, &dom) {
        (Some(i), Some(d)) => v.push(mk(format!("sip:{i}@{d}"))),
        _ => v.push(mk(format!("sip:{impi}"))),
    }
    if let Some(m) = msisdn {
        if let Some(d) = &dom {
            v.push(mk(format!("sip:+{m}@{d}")));
        }
        v.push(mk(format!("tel:+{m}")));
    }
    v
}
