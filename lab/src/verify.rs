//! `imslab verify`: does a capture show a correct IMS flow?
//!
//! tshark (Debian's 4.0) dissects the capture once, with the ESP keys the P-CSCF or the demo
//! exported (`esp_sa`, the Wireshark UAT format), and prints one line of fields per frame.
//! [`parse_frames`] turns those lines into [`Frame`]s and [`analyse`] checks them, without
//! any I/O, so the rules are unit-tested on hand-made frames:
//!
//! - **dissection**: no frame carries Wireshark's malformed-packet marker;
//! - **ESP** (RFC 4303): every ESP frame was decrypted with a key from the file and its ICV
//!   checked good — a frame with no key, or a bad ICV, fails;
//! - **registrations** (TS 24.229 §5.1.1, §5.2.2): per UE, the initial REGISTER is
//!   challenged (401), the challenge answered, and the registration ends in 200; a REGISTER
//!   that ends in anything else fails;
//! - **no cleartext SIP** to or from a UE that offered sec-agree (RFC 3329) after that UE's
//!   first 401 (TS 33.203 §7: everything after the challenge goes through the SAs);
//! - **transactions** (RFC 3261 §17): every request but ACK gets a final response on the
//!   same hop (top Via branch and CSeq method); every INVITE answered 2xx is ACKed, and
//!   every dialog the capture sees established ends with a BYE answered 200 (§12, §15);
//! - **Cx** (TS 29.229): every Diameter request is answered (hop-by-hop id, RFC 6733 §3);
//!   answers with a non-success result are listed;
//! - **expectations** given on the command line (`--expect register,call,message`): at least
//!   one complete flow of each kind.
//!
//! The verdict prints a ladder of the UE legs and one line per check; any failed check makes
//! `imslab verify` exit non-zero.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The tshark fields read per frame, in column order. `sip.Security-Client` comes last:
/// its value holds commas and semicolons of its own.
pub const FIELDS: &[&str] = &[
    "frame.number",
    "frame.time_relative",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "tcp.srcport",
    "tcp.dstport",
    "_ws.malformed",
    "esp.spi",
    "esp.icv_good",
    "esp.icv_bad",
    "sip.Method",
    "sip.Status-Code",
    "sip.CSeq.method",
    "sip.Call-ID",
    "sip.Via.branch",
    "diameter.cmd.code",
    "diameter.flags.request",
    "diameter.hopbyhopid",
    "diameter.Result-Code",
    "diameter.Experimental-Result-Code",
    "sip.Security-Client",
];

/// A line of tshark's output that is not what [`FIELDS`] asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer columns than fields asked for.
    #[error("line {line}: {got} columns, expected {want}")]
    Columns {
        /// 1-based line number.
        line: usize,
        /// Columns found.
        got: usize,
        /// Columns expected.
        want: usize,
    },
    /// A column that should hold a number, an address or a flag does not.
    #[error("line {line}: field {field} = {value:?} is not valid")]
    Value {
        /// 1-based line number.
        line: usize,
        /// The tshark field.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

/// Why `imslab verify` could not produce a verdict (as opposed to a failed check).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// tshark is not installed.
    #[error("tshark not found in PATH (apt-get install tshark)")]
    NoTshark,
    /// The capture or key file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// tshark failed or ran too long.
    #[error("tshark: {0}")]
    Tshark(String),
    /// tshark's output did not parse.
    #[error("tshark output: {0}")]
    Parse(#[from] ParseError),
}

/// ESP as tshark saw it in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspSeen {
    /// The SPI.
    pub spi: u32,
    /// tshark checked the ICV and it matched.
    pub icv_good: bool,
    /// tshark checked the ICV and it did not match.
    pub icv_bad: bool,
}

/// Whether a SIP message is a request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipKind {
    /// A request with its method.
    Request(String),
    /// A response with its status code.
    Response(u16),
}

/// One SIP message of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSeen {
    /// Request or response.
    pub kind: SipKind,
    /// The CSeq method.
    pub cseq_method: String,
    /// The Call-ID.
    pub call_id: String,
    /// The top Via's branch (the hop's transaction id, RFC 3261 §17.2.3).
    pub branch: String,
}

/// One Diameter message of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiameterSeen {
    /// Command code.
    pub code: u32,
    /// R flag.
    pub request: bool,
    /// Hop-by-hop identifier.
    pub hop_by_hop: u32,
}

/// One frame of the capture, reduced to what the checks read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    /// Frame number (1-based, as Wireshark shows it).
    pub number: u64,
    /// Seconds since the first frame.
    pub time: f64,
    /// Source and destination address.
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: Option<IpAddr>,
    /// Source port (UDP or TCP; the inner one for decrypted ESP).
    pub sport: Option<u16>,
    /// Destination port.
    pub dport: Option<u16>,
    /// Wireshark marked the frame malformed.
    pub malformed: bool,
    /// ESP, if the frame is ESP.
    pub esp: Option<EspSeen>,
    /// SIP messages in the frame (one for UDP; TCP may carry several).
    pub sip: Vec<SipSeen>,
    /// Diameter messages in the frame.
    pub diameter: Vec<DiameterSeen>,
    /// Result codes (Result-Code and Experimental-Result-Code) in the frame.
    pub results: Vec<u32>,
    /// `port-c` and `port-s` of the frame's Security-Client, if any (RFC 3329, TS 33.203).
    pub security_client_ports: Vec<u16>,
}

fn cells(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn number<T: std::str::FromStr>(
    line: usize,
    field: &'static str,
    s: &str,
) -> Result<T, ParseError> {
    s.parse().map_err(|_| ParseError::Value {
        line,
        field,
        value: s.to_string(),
    })
}

fn hex_or_dec(line: usize, field: &'static str, s: &str) -> Result<u32, ParseError> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    };
    r.ok_or_else(|| ParseError::Value {
        line,
        field,
        value: s.to_string(),
    })
}

fn flag(s: &str) -> bool {
    matches!(s, "1" | "True" | "true")
}

fn first<T: std::str::FromStr>(
    line: usize,
    field: &'static str,
    cell: &str,
) -> Result<Option<T>, ParseError> {
    cells(cell)
        .next()
        .map(|s| number(line, field, s))
        .transpose()
}

/// The `port-c`/`port-s` values of a Security-Client header's mechanisms.
fn security_ports(header: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = header
        .split([';', ',', ' '])
        .filter_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            matches!(k.trim().to_ascii_lowercase().as_str(), "port-c" | "port-s")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Parses tshark's `-T fields` output for [`FIELDS`] (tab-separated, `,` between
/// occurrences).
pub fn parse_frames(out: &str) -> Result<Vec<Frame>, ParseError> {
    let mut frames = Vec::new();
    for (i, raw) in out.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = raw.splitn(FIELDS.len(), '\t').collect();
        if cols.len() != FIELDS.len() {
            return Err(ParseError::Columns {
                line,
                got: cols.len(),
                want: FIELDS.len(),
            });
        }
        let col = |name: &str| {
            FIELDS
                .iter()
                .position(|f| *f == name)
                .map_or("", |i| cols[i])
        };
        let mut f = Frame {
            number: number(line, "frame.number", col("frame.number").trim())?,
            time: number(
                line,
                "frame.time_relative",
                col("frame.time_relative").trim(),
            )?,
            ..Frame::default()
        };
        // Transport mode: the outer and inner addresses are the same; take the first.
        f.src = first(line, "ip.src", col("ip.src"))?.or(first(line, "ipv6.src", col("ipv6.src"))?);
        f.dst = first(line, "ip.dst", col("ip.dst"))?.or(first(line, "ipv6.dst", col("ipv6.dst"))?);
        f.sport = first(line, "udp.srcport", col("udp.srcport"))?.or(first(
            line,
            "tcp.srcport",
            col("tcp.srcport"),
        )?);
        f.dport = first(line, "udp.dstport", col("udp.dstport"))?.or(first(
            line,
            "tcp.dstport",
            col("tcp.dstport"),
        )?);
        f.malformed = !col("_ws.malformed").trim().is_empty();
        if let Some(spi) = cells(col("esp.spi")).next() {
            f.esp = Some(EspSeen {
                spi: hex_or_dec(line, "esp.spi", spi)?,
                icv_good: cells(col("esp.icv_good")).any(flag),
                icv_bad: cells(col("esp.icv_bad")).any(flag),
            });
        }
        let methods: Vec<&str> = cells(col("sip.Method")).collect();
        let statuses: Vec<u16> = cells(col("sip.Status-Code"))
            .map(|s| number(line, "sip.Status-Code", s))
            .collect::<Result<_, _>>()?;
        let cseqs: Vec<&str> = cells(col("sip.CSeq.method")).collect();
        let call_ids: Vec<&str> = cells(col("sip.Call-ID")).collect();
        let branches: Vec<&str> = cells(col("sip.Via.branch")).collect();
        // With one SIP message in the frame (UDP, the usual case) every field belongs to
        // it; several in one TCP segment cannot be told apart field by field, so only
        // their kinds are kept and the per-transaction checks skip them.
        let kinds: Vec<SipKind> = methods
            .iter()
            .map(|m| SipKind::Request((*m).to_string()))
            .chain(statuses.into_iter().map(SipKind::Response))
            .collect();
        let single = kinds.len() == 1;
        for kind in kinds {
            let field = |v: &[&str]| {
                if single {
                    v.first().copied().unwrap_or_default().to_string()
                } else {
                    String::new()
                }
            };
            f.sip.push(SipSeen {
                kind,
                cseq_method: field(&cseqs),
                call_id: field(&call_ids),
                branch: field(&branches),
            });
        }
        let codes: Vec<&str> = cells(col("diameter.cmd.code")).collect();
        let reqs: Vec<&str> = cells(col("diameter.flags.request")).collect();
        let hops: Vec<&str> = cells(col("diameter.hopbyhopid")).collect();
        for (i, code) in codes.iter().enumerate() {
            f.diameter.push(DiameterSeen {
                code: number(line, "diameter.cmd.code", code)?,
                request: reqs.get(i).is_some_and(|r| flag(r)),
                hop_by_hop: match hops.get(i) {
                    Some(h) => hex_or_dec(line, "diameter.hopbyhopid", h)?,
                    None => 0,
                },
            });
        }
        for c in cells(col("diameter.Result-Code"))
            .chain(cells(col("diameter.Experimental-Result-Code")))
        {
            f.results.push(number(line, "diameter.Result-Code", c)?);
        }
        f.security_client_ports = security_ports(col("sip.Security-Client"));
        frames.push(f);
    }
    Ok(frames)
}

/// A kind of flow `--expect` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Expect {
    /// A UE registered: REGISTER, 401, REGISTER, 200.
    Register,
    /// A call was answered, ACKed and ended with BYE/200.
    Call,
    /// A MESSAGE was answered 2xx.
    Message,
    /// ESP is present and every ESP frame verified.
    Ipsec,
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Figures or the frames that broke it.
    pub detail: String,
}

/// The result of [`analyse`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// The UE legs' SIP messages, one line each, in capture order.
    pub ladder: Vec<String>,
    /// The checks, in the order of the module docs.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            ok,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.ladder.is_empty() {
            writeln!(f, "ladder (UE legs):")?;
            for l in &self.ladder {
                writeln!(f, "  {l}")?;
            }
            writeln!(f)?;
        }
        for c in &self.checks {
            let mark = if c.ok { "[ok]  " } else { "[FAIL]" };
            writeln!(f, "{mark} {}: {}", c.name, c.detail)?;
        }
        if self.passed() {
            write!(f, "verdict: the capture shows a correct flow")
        } else {
            let n = self.checks.iter().filter(|c| !c.ok).count();
            write!(f, "verdict: {n} check(s) failed")
        }
    }
}

type Endpoint = (IpAddr, u16);

/// A UE as the capture shows it: the endpoint of its first REGISTER and its protected ports.
#[derive(Debug, Clone)]
struct UeSeen {
    endpoints: HashSet<Endpoint>,
    label: String,
    sec_agree: bool,
    first_401: Option<u64>,
}

fn frame_ends(f: &Frame) -> Option<(Endpoint, Endpoint)> {
    Some(((f.src?, f.sport?), (f.dst?, f.dport?)))
}

fn list(frames: &[u64]) -> String {
    let shown: Vec<String> = frames.iter().take(10).map(u64::to_string).collect();
    let more = frames.len().saturating_sub(10);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Finds the UEs: the senders of REGISTERs that no earlier REGISTER's UE owns, with the
/// protected ports their Security-Client named.
fn find_ues(frames: &[Frame]) -> Vec<UeSeen> {
    let mut ues: Vec<UeSeen> = Vec::new();
    let mut by_call: HashMap<String, usize> = HashMap::new();
    for f in frames {
        let Some((src, _)) = frame_ends(f) else {
            continue;
        };
        for m in &f.sip {
            if m.kind != SipKind::Request("REGISTER".into()) {
                continue;
            }
            let idx = match ues.iter().position(|u| u.endpoints.contains(&src)) {
                Some(i) => i,
                None => match by_call.get(&m.call_id) {
                    // A REGISTER of a known registration from a new port (the protected
                    // one): the same UE. A proxy's onward leg keeps the Call-ID too, but
                    // comes after the UE's own, from the P-CSCF — which no UE offered as
                    // a protected port.
                    Some(&i) if ues[i].endpoints.iter().any(|e| e.0 == src.0) => i,
                    Some(_) => continue,
                    None => {
                        ues.push(UeSeen {
                            endpoints: HashSet::from([src]),
                            label: format!("{}:{}", src.0, src.1),
                            sec_agree: false,
                            first_401: None,
                        });
                        ues.len() - 1
                    }
                },
            };
            by_call.entry(m.call_id.clone()).or_insert(idx);
            let u = &mut ues[idx];
            u.endpoints.insert(src);
            if !f.security_client_ports.is_empty() {
                u.sec_agree = true;
                for p in &f.security_client_ports {
                    u.endpoints.insert((src.0, *p));
                }
            }
        }
    }
    for f in frames {
        let Some((_, dst)) = frame_ends(f) else {
            continue;
        };
        if f.sip.iter().any(|m| {
            m.kind == SipKind::Response(401) && m.cseq_method.eq_ignore_ascii_case("REGISTER")
        }) {
            if let Some(u) = ues
                .iter_mut()
                .find(|u| u.endpoints.contains(&dst) && u.first_401.is_none())
            {
                u.first_401 = Some(f.number);
            }
        }
    }
    ues
}

/// Checks `frames` (see the module docs). `expect` lists the flows that must be present.
pub fn analyse(frames: &[Frame], expect: &[Expect]) -> Verdict {
    let mut v = Verdict::default();
    let ues = find_ues(frames);
    let ue_of = |e: &Endpoint| ues.iter().position(|u| u.endpoints.contains(e));

    // Dissection.
    let malformed: Vec<u64> = frames
        .iter()
        .filter(|f| f.malformed)
        .map(|f| f.number)
        .collect();
    v.check(
        "dissection",
        malformed.is_empty(),
        if malformed.is_empty() {
            format!("{} frames, none malformed", frames.len())
        } else {
            format!("malformed frames: {}", list(&malformed))
        },
    );

    // ESP.
    let esp: Vec<&Frame> = frames.iter().filter(|f| f.esp.is_some()).collect();
    let bad: Vec<u64> = esp
        .iter()
        .filter(|f| f.esp.is_some_and(|e| e.icv_bad))
        .map(|f| f.number)
        .collect();
    let unverified: Vec<&Frame> = esp
        .iter()
        .copied()
        .filter(|f| f.esp.is_some_and(|e| !e.icv_good && !e.icv_bad))
        .collect();
    let mut no_key: Vec<String> = unverified
        .iter()
        .filter_map(|f| f.esp.map(|e| format!("0x{:08x}", e.spi)))
        .collect();
    no_key.sort();
    no_key.dedup();
    let esp_ok = bad.is_empty() && unverified.is_empty();
    v.check(
        "ESP",
        esp_ok && (!expect.contains(&Expect::Ipsec) || !esp.is_empty()),
        if esp.is_empty() {
            "no ESP in the capture".to_string()
        } else if esp_ok {
            format!(
                "{} ESP frames, every one decrypted with a good ICV",
                esp.len()
            )
        } else {
            let mut d = Vec::new();
            if !bad.is_empty() {
                d.push(format!("bad ICV in frames {}", list(&bad)));
            }
            if !unverified.is_empty() {
                let n: Vec<u64> = unverified.iter().map(|f| f.number).collect();
                d.push(format!(
                    "no key for SPI {} (frames {})",
                    no_key.join(", "),
                    list(&n)
                ));
            }
            d.join("; ")
        },
    );

    // Ladder of the UE legs, and the cleartext rule.
    let mut cleartext = Vec::new();
    for f in frames {
        let Some((src, dst)) = frame_ends(f) else {
            continue;
        };
        if f.sip.is_empty() {
            continue;
        }
        let (ue, arrow) = match (ue_of(&src), ue_of(&dst)) {
            (Some(u), _) => (u, "──▶"),
            (None, Some(u)) => (u, "◀──"),
            (None, None) => continue,
        };
        let u = &ues[ue];
        if u.sec_agree && f.esp.is_none() && u.first_401.is_some_and(|n| f.number > n) {
            cleartext.push(f.number);
        }
        for m in &f.sip {
            let what = match &m.kind {
                SipKind::Request(r) => r.clone(),
                SipKind::Response(s) => format!("{s} ({})", m.cseq_method),
            };
            v.ladder.push(format!(
                "{:>5} {:>9.3}s UE{} {} {:<16} {} {}:{} → {}:{}",
                f.number,
                f.time,
                ue + 1,
                arrow,
                what,
                if f.esp.is_some() { "🔒" } else { "  " },
                src.0,
                src.1,
                dst.0,
                dst.1,
            ));
        }
    }
    let protected_ues = ues.iter().filter(|u| u.sec_agree).count();
    v.check(
        "no cleartext SIP after the first 401",
        cleartext.is_empty(),
        if !cleartext.is_empty() {
            format!(
                "cleartext SIP to or from a UE in frames {}",
                list(&cleartext)
            )
        } else if protected_ues == 0 {
            "no UE offered sec-agree (IPsec off)".to_string()
        } else {
            format!("{protected_ues} UE(s) with sec-agree, every later SIP message inside ESP")
        },
    );

    // Transactions, per hop: (top branch, CSeq method) → the responses seen.
    let mut requests: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    let mut finals: HashMap<(String, String), u16> = HashMap::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut byes_ok: HashSet<String> = HashSet::new();
    let mut answered_invites: BTreeMap<String, u64> = BTreeMap::new();
    let mut messages_ok = 0usize;
    for f in frames {
        for m in &f.sip {
            if m.branch.is_empty() {
                continue;
            }
            let key = (m.branch.clone(), m.cseq_method.clone());
            match &m.kind {
                SipKind::Request(r) if r == "ACK" => {
                    acked.insert(m.call_id.clone());
                }
                SipKind::Request(r) => {
                    requests
                        .entry(key)
                        .or_insert((f.number, format!("{r} ({})", m.call_id)));
                }
                SipKind::Response(s) if *s >= 200 => {
                    finals.insert(key, *s);
                    if (200..300).contains(s) {
                        match m.cseq_method.as_str() {
                            "INVITE" => {
                                answered_invites
                                    .entry(m.call_id.clone())
                                    .or_insert(f.number);
                            }
                            "BYE" => {
                                byes_ok.insert(m.call_id.clone());
                            }
                            "MESSAGE" => messages_ok += 1,
                            _ => {}
                        }
                    }
                }
                SipKind::Response(_) => {}
            }
        }
    }
    let unanswered: Vec<String> = requests
        .iter()
        .filter(|(k, _)| !finals.contains_key(*k))
        .map(|(_, (n, what))| format!("frame {n} {what}"))
        .collect();
    v.check(
        "every SIP request answered",
        unanswered.is_empty(),
        if unanswered.is_empty() {
            format!(
                "{} transactions, each with a final response",
                requests.len()
            )
        } else {
            format!(
                "no final response to {}",
                unanswered
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
    );
    let not_acked: Vec<&String> = answered_invites
        .keys()
        .filter(|c| !acked.contains(*c))
        .collect();
    let not_ended: Vec<&String> = answered_invites
        .keys()
        .filter(|c| !byes_ok.contains(*c))
        .collect();
    v.check(
        "every answered call ACKed and ended",
        not_acked.is_empty() && not_ended.is_empty(),
        if not_acked.is_empty() && not_ended.is_empty() {
            format!(
                "{} call(s) answered, ACKed, ended with BYE/200",
                answered_invites.len()
            )
        } else {
            format!("without ACK: {not_acked:?}; without BYE answered 200: {not_ended:?}")
        },
    );

    // Registrations of each UE: every REGISTER transaction on its leg and how it ended.
    let mut reg_fail = Vec::new();
    let mut registered = 0usize;
    for (i, u) in ues.iter().enumerate() {
        let mut seq = Vec::new();
        for f in frames {
            let Some((src, dst)) = frame_ends(f) else {
                continue;
            };
            if !u.endpoints.contains(&src) && !u.endpoints.contains(&dst) {
                continue;
            }
            for m in &f.sip {
                if m.cseq_method != "REGISTER" {
                    continue;
                }
                if let SipKind::Response(s) = m.kind {
                    if s >= 200 {
                        seq.push(s);
                    }
                }
            }
        }
        let challenged_first = seq.first() == Some(&401);
        let ends_ok = seq.last().is_some_and(|s| (200..300).contains(s));
        let others: Vec<u16> = seq
            .iter()
            .copied()
            .filter(|s| *s != 401 && !(200..300).contains(s))
            .collect();
        if challenged_first && ends_ok && others.is_empty() {
            registered += 1;
        } else {
            reg_fail.push(format!(
                "UE{} ({}): REGISTER answers {:?}",
                i + 1,
                u.label,
                seq
            ));
        }
    }
    v.check(
        "registrations",
        reg_fail.is_empty() && (!expect.contains(&Expect::Register) || registered > 0),
        if reg_fail.is_empty() {
            format!("{registered} UE(s): challenged (401), then 200 to every REGISTER")
        } else {
            reg_fail.join("; ")
        },
    );

    // Cx.
    let mut open: HashMap<u32, (u64, u32)> = HashMap::new();
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    let mut errors = Vec::new();
    for f in frames {
        for d in &f.diameter {
            if d.request {
                open.insert(d.hop_by_hop, (f.number, d.code));
                *counts.entry(d.code).or_default() += 1;
            } else {
                open.remove(&d.hop_by_hop);
            }
        }
        for r in &f.results {
            if !(2000..3000).contains(r) {
                errors.push(format!("{r} in frame {}", f.number));
            }
        }
    }
    let names: Vec<String> = counts
        .iter()
        .map(|(c, n)| format!("{n} {}", diameter_name(*c)))
        .collect();
    let mut unanswered: Vec<(u64, u32)> = open.into_values().collect();
    unanswered.sort_unstable();
    v.check(
        "Diameter",
        unanswered.is_empty(),
        if counts.is_empty() {
            "no Diameter in the capture".to_string()
        } else if unanswered.is_empty() {
            let mut d = format!("{}, every one answered", names.join(", "));
            if !errors.is_empty() {
                d.push_str(&format!(
                    "; non-success results: {}",
                    errors
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            d
        } else {
            let u: Vec<String> = unanswered
                .iter()
                .take(5)
                .map(|(n, c)| format!("{} in frame {n}", diameter_name(*c)))
                .collect();
            format!("unanswered: {}", u.join(", "))
        },
    );

    for e in expect {
        let (ok, what) = match e {
            Expect::Register => (registered > 0, "a registration"),
            Expect::Call => (
                answered_invites
                    .keys()
                    .any(|c| acked.contains(c) && byes_ok.contains(c)),
                "a call answered and ended",
            ),
            Expect::Message => (messages_ok > 0, "a MESSAGE answered 2xx"),
            Expect::Ipsec => (!esp.is_empty() && esp_ok, "ESP, every frame verified"),
        };
        v.check(
            &format!("expected {what}"),
            ok,
            if ok { "present" } else { "not in the capture" },
        );
    }
    v
}

/// The usual name of a Diameter command (base, RFC 6733; Cx, TS 29.229 §6.1).
pub fn diameter_name(code: u32) -> String {
    match code {
        257 => "CER".into(),
        280 => "DWR".into(),
        282 => "DPR".into(),
        300 => "UAR".into(),
        301 => "SAR".into(),
        302 => "LIR".into(),
        303 => "MAR".into(),
        304 => "RTR".into(),
        305 => "PPR".into(),
        c => format!("command {c}"),
    }
}

/// What [`run`] needs to know besides the capture.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `esp_sa` file (Wireshark's UAT format, as the P-CSCF and the demo write it).
    pub keys: Option<PathBuf>,
    /// TCP ports to dissect as Diameter (3868 is always one).
    pub diameter_ports: Vec<u16>,
    /// UDP and TCP ports to dissect as SIP besides 5060 and what tshark's heuristics find.
    pub sip_ports: Vec<u16>,
    /// Flows that must be present.
    pub expect: Vec<Expect>,
}

/// tshark's arguments for `capture` (shown by `imslab verify --print-command`, so the same
/// dissection can be reproduced by hand).
pub fn tshark_args(capture: &Path, opts: &Options, keys: &str) -> Vec<String> {
    let mut a: Vec<String> = vec!["-n".into(), "-r".into(), capture.display().to_string()];
    let mut dia = opts.diameter_ports.clone();
    dia.push(3868);
    dia.sort_unstable();
    dia.dedup();
    for p in dia {
        a.extend(["-d".into(), format!("tcp.port=={p},diameter")]);
    }
    for p in &opts.sip_ports {
        a.extend(["-d".into(), format!("udp.port=={p},sip")]);
        a.extend(["-d".into(), format!("tcp.port=={p},sip")]);
    }
    a.extend([
        "-o".into(),
        "esp.enable_encryption_decode:TRUE".into(),
        "-o".into(),
        "esp.enable_authentication_check:TRUE".into(),
    ]);
    for l in keys
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        a.extend(["-o".into(), format!("uat:esp_sa:{l}")]);
    }
    for s in [
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ] {
        a.push(s.into());
    }
    for f in FIELDS {
        a.extend(["-e".into(), (*f).to_string()]);
    }
    a
}

/// How long tshark may take on one capture.
pub const TSHARK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs tshark on `capture` and checks what it shows.
pub fn run(capture: &Path, opts: &Options) -> Result<Verdict, VerifyError> {
    std::fs::metadata(capture).map_err(|source| VerifyError::Read {
        path: capture.to_path_buf(),
        source,
    })?;
    let keys = match &opts.keys {
        Some(p) => std::fs::read_to_string(p).map_err(|source| VerifyError::Read {
            path: p.clone(),
            source,
        })?,
        None => String::new(),
    };
    let tshark = find_tshark().ok_or(VerifyError::NoTshark)?;
    let out = run_bounded(
        Command::new(tshark).args(tshark_args(capture, opts, &keys)),
        TSHARK_TIMEOUT,
    )?;
    Ok(analyse(&parse_frames(&out)?, &opts.expect))
}

fn find_tshark() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("tshark"))
        .find(|p| p.is_file())
}

/// Runs `cmd` to completion within `limit`, returning its stdout; killed when late.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<String, VerifyError> {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| VerifyError::Tshark(e.to_string()))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VerifyError::Tshark(format!(
                    "still running after {} s; killed",
                    limit.as_secs()
                )));
            }
            Err(e) => return Err(VerifyError::Tshark(e.to_string())),
        }
    };
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let err: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("could be dangerous"))
            .collect();
        return Err(VerifyError::Tshark(format!(
            "{status}: {}",
            err.join(" | ")
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tshark line with the given columns set and every other column empty.
    fn line(set: &[(&str, &str)]) -> String {
        FIELDS
            .iter()
            .map(|f| {
                set.iter()
                    .find(|(k, _)| k == f)
                    .map_or(String::new(), |(_, v)| (*v).to_string())
            })
            .collect::<Vec<_>>()
            .join("\t")
    }

    struct Ladder {
        n: u64,
        out: String,
    }

    impl Ladder {
        fn new() -> Self {
            Ladder {
                n: 0,
                out: String::new(),
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn sip(
            &mut self,
            src: &str,
            dst: &str,
            what: &str,
            cseq: &str,
            call: &str,
            branch: &str,
            esp: Option<bool>,
            sec_client: &str,
        ) -> &mut Self {
            self.n += 1;
            let (sip_src, sport) = src.split_once(':').unwrap();
            let (sip_dst, dport) = dst.split_once(':').unwrap();
            let n = self.n.to_string();
            let t = format!("0.{:03}", self.n);
            let mut set: Vec<(&str, &str)> = vec![
                ("frame.number", &n),
                ("frame.time_relative", &t),
                ("ip.src", sip_src),
                ("ip.dst", sip_dst),
                ("udp.srcport", sport),
                ("udp.dstport", dport),
                ("sip.CSeq.method", cseq),
                ("sip.Call-ID", call),
                ("sip.Via.branch", branch),
                ("sip.Security-Client", sec_client),
            ];
            if what.chars().all(|c| c.is_ascii_digit()) {
                set.push(("sip.Status-Code", what));
            } else {
                set.push(("sip.Method", what));
            }
            match esp {
                Some(true) => {
                    set.extend([("esp.spi", "0x00001001"), ("esp.icv_good", "1")]);
                }
                Some(false) => {
                    set.extend([("esp.spi", "0x00001001"), ("esp.icv_bad", "1")]);
                }
                None => {}
            }
            self.out.push_str(&line(&set));
            self.out.push('\n');
            self
        }

        fn frames(&self) -> Vec<Frame> {
            parse_frames(&self.out).unwrap()
        }
    }

    const UE: &str = "127.0.0.2:5060";
    const UE_C: &str = "127.0.0.2:5102";
    const UE_S: &str = "127.0.0.2:5103";
    const P: &str = "127.0.0.1:5060";
    const P_S: &str = "127.0.0.1:31101";
    const P_C: &str = "127.0.0.1:31100";
    const SEC: &str = "ipsec-3gpp;alg=hmac-sha-1-96;prot=esp;port-c=5102;port-s=5103";

    fn registration(l: &mut Ladder) {
        l.sip(UE, P, "REGISTER", "REGISTER", "r1", "b1", None, SEC)
            .sip(P, UE, "401", "REGISTER", "r1", "b1", None, "")
            .sip(
                UE_C,
                P_S,
                "REGISTER",
                "REGISTER",
                "r1",
                "b2",
                Some(true),
                SEC,
            )
            .sip(P_S, UE_C, "200", "REGISTER", "r1", "b2", Some(true), "");
    }

    fn call(l: &mut Ladder) {
        l.sip(UE_C, P_S, "INVITE", "INVITE", "c1", "i1", Some(true), "")
            .sip(P_S, UE_C, "100", "INVITE", "c1", "i1", Some(true), "")
            .sip(P_S, UE_C, "200", "INVITE", "c1", "i1", Some(true), "")
            .sip(UE_C, P_S, "ACK", "ACK", "c1", "a1", Some(true), "")
            .sip(P_C, UE_S, "BYE", "BYE", "c1", "y1", Some(true), "")
            .sip(UE_S, P_C, "200", "BYE", "c1", "y1", Some(true), "");
    }

    fn failed(v: &Verdict) -> Vec<&str> {
        v.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_registration_and_a_call_inside_esp_pass() {
        let mut l = Ladder::new();
        registration(&mut l);
        call(&mut l);
        let v = analyse(
            &l.frames(),
            &[Expect::Register, Expect::Call, Expect::Ipsec],
        );
        assert!(v.passed(), "{v}");
        assert_eq!(v.ladder.len(), 10);
        assert!(v.to_string().contains("correct flow"));
    }

    #[test]
    fn cleartext_sip_after_the_401_fails() {
        let mut l = Ladder::new();
        registration(&mut l);
        l.sip(UE_C, P_S, "MESSAGE", "MESSAGE", "m1", "m1", None, "")
            .sip(P_S, UE_C, "200", "MESSAGE", "m1", "m1", None, "");
        let v = analyse(&l.frames(), &[Expect::Message]);
        assert_eq!(failed(&v), ["no cleartext SIP after the first 401"], "{v}");
        assert!(v.to_string().contains("frames 5, 6"), "{v}");
    }

    #[test]
    fn a_bad_icv_or_a_missing_key_fails() {
        let mut l = Ladder::new();
        registration(&mut l);
        l.sip(UE_C, P_S, "OPTIONS", "OPTIONS", "o1", "o1", Some(false), "")
            .sip(P_S, UE_C, "200", "OPTIONS", "o1", "o1", Some(true), "");
        let v = analyse(&l.frames(), &[]);
        assert_eq!(failed(&v), ["ESP"], "{v}");
        let raw = line(&[
            ("frame.number", "1"),
            ("frame.time_relative", "0"),
            ("esp.spi", "0x00000101"),
        ]);
        let v = analyse(&parse_frames(&raw).unwrap(), &[]);
        assert!(v.to_string().contains("no key for SPI 0x00000101"), "{v}");
    }

    #[test]
    fn an_unanswered_request_and_an_unended_call_fail() {
        let mut l = Ladder::new();
        registration(&mut l);
        l.sip(UE_C, P_S, "INVITE", "INVITE", "c1", "i1", Some(true), "")
            .sip(P_S, UE_C, "200", "INVITE", "c1", "i1", Some(true), "")
            .sip(UE_C, P_S, "BYE", "BYE", "c1", "y1", Some(true), "");
        let v = analyse(&l.frames(), &[Expect::Call]);
        assert_eq!(
            failed(&v),
            [
                "every SIP request answered",
                "every answered call ACKed and ended",
                "expected a call answered and ended"
            ],
            "{v}"
        );
    }

    #[test]
    fn a_registration_that_is_refused_or_never_challenged_fails() {
        let mut l = Ladder::new();
        l.sip(UE, P, "REGISTER", "REGISTER", "r1", "b1", None, SEC)
            .sip(P, UE, "403", "REGISTER", "r1", "b1", None, "");
        let v = analyse(&l.frames(), &[Expect::Register]);
        assert!(failed(&v).contains(&"registrations"), "{v}");
        let mut l = Ladder::new();
        l.sip(UE, P, "REGISTER", "REGISTER", "r1", "b1", None, "")
            .sip(P, UE, "200", "REGISTER", "r1", "b1", None, "");
        let v = analyse(&l.frames(), &[]);
        assert!(failed(&v).contains(&"registrations"), "{v}");
    }

    #[test]
    fn malformed_frames_and_unanswered_diameter_fail() {
        let raw = [
            line(&[
                ("frame.number", "1"),
                ("frame.time_relative", "0"),
                ("diameter.cmd.code", "303"),
                ("diameter.flags.request", "1"),
                ("diameter.hopbyhopid", "0x00000007"),
            ]),
            line(&[
                ("frame.number", "2"),
                ("frame.time_relative", "0.1"),
                ("diameter.cmd.code", "301,303"),
                ("diameter.flags.request", "1,0"),
                ("diameter.hopbyhopid", "0x00000008,0x00000007"),
                ("diameter.Experimental-Result-Code", "5001"),
            ]),
            line(&[
                ("frame.number", "3"),
                ("frame.time_relative", "0.2"),
                ("_ws.malformed", "Malformed Packet"),
            ]),
        ]
        .join("\n");
        let v = analyse(&parse_frames(&raw).unwrap(), &[]);
        assert_eq!(failed(&v), ["dissection", "Diameter"], "{v}");
        let s = v.to_string();
        assert!(s.contains("SAR in frame 2"), "{s}");
    }

    #[test]
    fn bad_tshark_output_is_a_typed_error() {
        assert!(matches!(
            parse_frames("1\t2\n"),
            Err(ParseError::Columns { line: 1, .. })
        ));
        let raw = line(&[("frame.number", "x"), ("frame.time_relative", "0")]);
        assert!(matches!(
            parse_frames(&raw),
            Err(ParseError::Value {
                field: "frame.number",
                ..
            })
        ));
    }

    #[test]
    fn security_client_ports_are_read_from_every_mechanism() {
        assert_eq!(
            security_ports(
                "ipsec-3gpp;alg=x;port-c=5102;port-s=5103, ipsec-3gpp;port-c=5102;port-s=5104"
            ),
            [5102, 5103, 5104]
        );
    }
}
