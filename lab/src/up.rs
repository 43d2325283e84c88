//! `imslab up`: the core for a real lab (a commercial eNB, an EPC, programmed ISIM cards,
//! real handsets), from one file.
//!
//! `lab.toml` names the operator's PLMN (or its IMS domain), the address the handsets
//! reach the P-CSCF on, and the card vendor's SIM data CSV. From it `imslab up`:
//! 1. checks what it can before anything starts: the address is one of this host's, the
//!    SIP, Diameter and web ports are free, the CSV parses ([`check`]);
//! 2. writes `hss.toml` and `pcscf.toml` for the operator to read or to run the binaries
//!    on their own later, imports the CSV into the HSS's SQLite store (existing
//!    subscribers are updated; their SQN never moves back);
//! 3. runs the HSS (Cx on loopback, REST and web page if configured) and the P-CSCF with
//!    its S-CSCF in this process, prints what to set in the EPC and on the handsets, and
//!    runs until SIGINT or SIGTERM, then removes its IPsec state.

use anyhow::Context;
use opskit::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// `lab.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LabConfig {
    /// The operator's network.
    pub network: Network,
    /// Where the subscribers come from and live.
    pub subscribers: Subscribers,
    /// IPsec toward the handsets.
    pub ipsec: Ipsec,
    /// The HSS's REST API and web page.
    pub web: Web,
    /// Where the generated files go.
    pub out: Out,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Mobile country code (3 digits).
    pub mcc: String,
    /// Mobile network code (2 or 3 digits, as on the cards).
    pub mnc: String,
    /// IMS home domain; unset = `ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org`.
    pub domain: Option<String>,
    /// The P-CSCF's address as the handsets reach it.
    pub pcscf_address: IpAddr,
    /// The P-CSCF's SIP port.
    pub sip_port: u16,
    /// The HSS's Diameter port on 127.0.0.1.
    pub diameter_port: u16,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            mcc: "001".into(),
            mnc: "01".into(),
            domain: None,
            pcscf_address: IpAddr::from([127, 0, 0, 1]),
            sip_port: 5060,
            diameter_port: 3868,
        }
    }
}

/// `[subscribers]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Subscribers {
    /// The SIM card data CSV (IMSI, Ki, OPc/OP, optional MSISDN, ICCID, AMF...).
    pub csv: Option<PathBuf>,
    /// The HSS's SQLite database.
    pub store: PathBuf,
}

impl Default for Subscribers {
    fn default() -> Self {
        Subscribers {
            csv: None,
            store: "imslab-hss.db".into(),
        }
    }
}

/// `[ipsec]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ipsec {
    /// `required`, `optional` or `off` (the pcscf's `ipsec.policy`).
    pub policy: String,
    /// `auto`, `kernel` or `userspace` (the pcscf's `ipsec.backend`).
    pub backend: String,
}

impl Default for Ipsec {
    fn default() -> Self {
        Ipsec {
            policy: "required".into(),
            backend: "auto".into(),
        }
    }
}

/// `[web]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// The HSS's REST API and web page; unset = off.
    pub listen: Option<SocketAddr>,
    /// Its bearer token (or the environment variable HSS_REST_TOKEN).
    pub token: Option<String>,
}

/// `[out]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Out {
    /// Directory for hss.toml, pcscf.toml and the esp_sa key file.
    pub dir: PathBuf,
}

impl Default for Out {
    fn default() -> Self {
        Out {
            dir: "imslab-up".into(),
        }
    }
}

/// `imslab up --example`: every key with its default.
pub const EXAMPLE: &str = r#"# lab.toml for `imslab up --config lab.toml`; every key is optional, the values
# shown are the defaults.

[network]
# The PLMN on the cards (and in the eNB and EPC).
mcc = "001"
mnc = "01"
# IMS home domain. Unset = ims.mnc<MNC, 3 digits>.mcc<MCC>.3gppnetwork.org (TS 23.003
# §13.2), which is what an ISIM with an empty home-domain file derives from the IMSI.
# domain = "ims.mnc001.mcc001.3gppnetwork.org"
# The P-CSCF's address as handsets reach it: an address of this host on the network the
# PGW/UPF routes the IMS APN's traffic to. Give it to the EPC as the P-CSCF address.
pcscf_address = "127.0.0.1"
sip_port = 5060
# The HSS's Diameter port, on 127.0.0.1 (only this process uses it).
diameter_port = 3868

[subscribers]
# The SIM card data CSV as the card vendor or programming tool wrote it (IMSI, Ki,
# OPc or OP, optional MSISDN, ICCID, AMF; see `hss subscriber import --help`). Imported
# at every start; known subscribers are updated, their SQN never moves back. Unset = use
# the store as it is.
# csv = "sims.csv"
# The HSS's SQLite database (the SQNs live here: keep it).
store = "imslab-hss.db"

[ipsec]
# "required" (handsets expect it), "optional" (also SIPp without IPsec) or "off".
policy = "required"
# "auto" (kernel XFRM if the kernel has ESP, else userspace ESP), "kernel", "userspace".
backend = "auto"

[web]
# The HSS's REST API and subscriber web page. Unset = off.
# listen = "127.0.0.1:8080"
# Its bearer token; or the environment variable HSS_REST_TOKEN.
# token = "change-me"

[out]
# Where hss.toml, pcscf.toml and esp_sa (the keys Wireshark needs) are written.
dir = "imslab-up"
"#;

impl LabConfig {
    /// Parses and validates `lab.toml` text (unknown keys are errors).
    pub fn from_toml(s: &str) -> Result<LabConfig, ConfigError> {
        let c: LabConfig = opskit::config::parse(s)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<LabConfig, ConfigError> {
        LabConfig::from_toml(&opskit::config::read(path)?)
    }

    /// Values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Value { key, reason });
        let n = &self.network;
        let digits = |s: &str, lens: &[usize]| {
            lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(&n.mcc, &[3]) {
            return bad("network.mcc", format!("{:?}: three digits", n.mcc));
        }
        if !digits(&n.mnc, &[2, 3]) {
            return bad("network.mnc", format!("{:?}: two or three digits", n.mnc));
        }
        if n.pcscf_address.is_unspecified() {
            return bad(
                "network.pcscf_address",
                format!(
                    "{}: the address handsets reach, not a wildcard",
                    n.pcscf_address
                ),
            );
        }
        if !matches!(self.ipsec.policy.as_str(), "required" | "optional" | "off") {
            return bad(
                "ipsec.policy",
                format!("{:?}: required, optional or off", self.ipsec.policy),
            );
        }
        if !matches!(self.ipsec.backend.as_str(), "auto" | "kernel" | "userspace") {
            return bad(
                "ipsec.backend",
                format!("{:?}: auto, kernel or userspace", self.ipsec.backend),
            );
        }
        Ok(())
    }

    /// The IMS home domain.
    pub fn domain(&self) -> String {
        self.network.domain.clone().unwrap_or_else(|| {
            format!(
                "ims.mnc{:0>3}.mcc{}.3gppnetwork.org",
                self.network.mnc, self.network.mcc
            )
        })
    }

    /// The P-CSCF's SIP address.
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.network.pcscf_address, self.network.sip_port)
    }

    /// `hss.toml` for this lab.
    pub fn hss_toml(&self) -> String {
        let d = self.domain();
        let mut s = format!(
            "origin_host = \"hss.{d}\"\nrealm = \"{d}\"\n\n[diameter]\nlisten = \
             \"127.0.0.1:{}\"\nallowed_peers = [\"pcscf.{d}\"]\n\n[store]\npath = {}\n\n[ims]\n\
             domain = \"{d}\"\nmnc_digits = {}\n",
            self.network.diameter_port,
            toml_string(&self.subscribers.store.display().to_string()),
            self.network.mnc.len()
        );
        if let Some(l) = self.web.listen {
            s.push_str(&format!("\n[rest]\nlisten = \"{l}\"\n"));
            if let Some(t) = &self.web.token {
                s.push_str(&format!("token = {}\n", toml_string(t)));
            }
        }
        s
    }

    /// `pcscf.toml` for this lab.
    pub fn pcscf_toml(&self) -> String {
        let d = self.domain();
        let esp_sa = self.out.dir.join("esp_sa");
        format!(
            "[sip]\nlisten = \"{}\"\ndomain = \"{d}\"\n\n[ipsec]\npolicy = \"{}\"\nbackend = \
             \"{}\"\nesp_sa_file = {}\n\n[hss]\naddress = \"127.0.0.1:{}\"\norigin_host = \
             \"pcscf.{d}\"\n",
            self.sip_addr(),
            self.ipsec.policy,
            self.ipsec.backend,
            toml_string(&esp_sa.display().to_string()),
            self.network.diameter_port
        )
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One line of [`check`]'s report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// It holds.
    pub ok: bool,
    /// What was checked and what was found.
    pub what: String,
}

/// What can be checked before starting: the address is ours, the ports are free, the CSV
/// parses (its subscriber count).
pub fn check(c: &LabConfig) -> Vec<CheckLine> {
    let mut v = Vec::new();
    let mut line = |ok: bool, what: String| v.push(CheckLine { ok, what });
    let addr = c.network.pcscf_address;
    match std::net::UdpSocket::bind(SocketAddr::new(addr, 0)) {
        Ok(_) => line(true, format!("{addr} is an address of this host")),
        Err(e) => line(
            false,
            format!("{addr} is not an address of this host ({e}): network.pcscf_address"),
        ),
    }
    let sip = c.sip_addr();
    let udp = std::net::UdpSocket::bind(sip);
    let tcp = std::net::TcpListener::bind(sip);
    line(
        udp.is_ok() && tcp.is_ok(),
        match (&udp, &tcp) {
            (Ok(_), Ok(_)) => format!("SIP port {sip} is free (UDP and TCP)"),
            (Err(e), _) | (_, Err(e)) => format!("SIP port {sip} is taken: {e}"),
        },
    );
    drop((udp, tcp));
    let dia = SocketAddr::from(([127, 0, 0, 1], c.network.diameter_port));
    match std::net::TcpListener::bind(dia) {
        Ok(_) => line(true, format!("Diameter port {dia} is free")),
        Err(e) => line(false, format!("Diameter port {dia} is taken: {e}")),
    }
    if let Some(w) = c.web.listen {
        match std::net::TcpListener::bind(w) {
            Ok(_) => line(true, format!("web port {w} is free")),
            Err(e) => line(false, format!("web port {w} is taken: {e}")),
        }
    }
    match &c.subscribers.csv {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => match hss::csv::parse(&text, &import_defaults(c)) {
                Ok(subs) => line(
                    true,
                    format!("{}: {} subscriber(s)", p.display(), subs.len()),
                ),
                Err(e) => line(false, format!("{}: {e}", p.display())),
            },
            Err(e) => line(false, format!("{}: {e}", p.display())),
        },
        None => line(
            true,
            format!(
                "no SIM CSV: the subscribers already in {} are used",
                c.subscribers.store.display()
            ),
        ),
    }
    v
}

fn import_defaults(c: &LabConfig) -> hss::csv::ImportDefaults {
    hss::csv::ImportDefaults {
        domain: Some(c.domain()),
        mnc_digits: c.network.mnc.len(),
        ..hss::csv::ImportDefaults::default()
    }
}

/// What the operator sets in the EPC and on the handsets for this lab.
pub fn instructions(c: &LabConfig, backend: &str) -> String {
    let d = c.domain();
    format!(
        "EPC (Open5GS, srsEPC, a commercial core):\n  \
         - APN \"ims\" (PDN type IPv4 or IPv4v6), default bearer QCI 5, on the subscribers' \
         profile beside \"internet\"\n  \
         - P-CSCF address for the IMS APN (sent to the handset in the PCO): {pcscf}\n  \
         - the PGW/UPF routes the IMS APN's UE pool to {pcscf} (this host)\n  \
         - PLMN {mcc}/{mnc} in the eNB, the MME and on the cards\n\
         handsets:\n  \
         - mobile data on, an APN \"ims\" of type IMS (most handsets add it for a known \
         PLMN; else add it by hand)\n  \
         - VoLTE / \"4G calling\" on (operator-locked handsets may need their IMS settings \
         enabled for a test PLMN)\n  \
         - the card's IMPI/IMPU are in its ISIM; without an ISIM the handset derives \
         <IMSI>@{d}\n\
         core: SIP on {sip} (UDP and TCP), IPsec {backend}, home domain {d}; keys for \
         Wireshark in {esp}\n",
        pcscf = c.network.pcscf_address,
        mcc = c.network.mcc,
        mnc = c.network.mnc,
        sip = c.sip_addr(),
        esp = c.out.dir.join("esp_sa").display(),
    )
}

/// Writes the configurations, imports the CSV, starts the HSS and the P-CSCF; returns
/// them running and what to tell the operator.
pub async fn start(c: &LabConfig) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&c.out.dir)
        .with_context(|| format!("create {}", c.out.dir.display()))?;
    let hss_path = c.out.dir.join("hss.toml");
    std::fs::write(&hss_path, c.hss_toml()).context("write hss.toml")?;
    let pcscf_path = c.out.dir.join("pcscf.toml");
    std::fs::write(&pcscf_path, c.pcscf_toml()).context("write pcscf.toml")?;
    let hss_cfg = hss::config::Config::load(&hss_path).context("the generated hss.toml")?;
    let pcscf_cfg = pcscf::Config::load(&pcscf_path).context("the generated pcscf.toml")?;
    let mut imported = None;
    if let Some(csv) = &c.subscribers.csv {
        let text =
            std::fs::read_to_string(csv).with_context(|| format!("read {}", csv.display()))?;
        let mut store = hss::store::Store::open(&hss_cfg.store.path, hss_cfg.store.durability)
            .context("open the HSS store")?;
        let r = hss::csv::import(&mut store, &text, &import_defaults(c), true)
            .with_context(|| format!("import {}", csv.display()))?;
        imported = Some(r);
    }
    let (hss, listening) = hss::server::start(&hss_cfg)
        .await
        .context("start the HSS")?;
    let pcscf = pcscf::shell::start(pcscf_cfg)
        .await
        .context("start the P-CSCF")?;
    let mut summary = String::new();
    if let Some(r) = imported {
        summary.push_str(&format!(
            "subscribers: {} row(s) of the SIM CSV, {} added, {} updated\n",
            r.rows, r.added, r.updated
        ));
    }
    if let Some(rest) = listening.rest {
        summary.push_str(&format!(
            "HSS web page and REST API: http://{rest}/ (token from [web] token or \
             HSS_REST_TOKEN)\n"
        ));
    }
    if pcscf.backend == "userspace" {
        summary.push_str(
            "IPsec: the kernel here cannot do ESP, so the P-CSCF uses userspace ESP (fine \
             for a lab; SIP over TCP toward the handsets is then not available)\n",
        );
    }
    summary.push_str(&instructions(c, pcscf.backend));
    Ok(Running {
        _hss: hss,
        pcscf,
        summary,
    })
}

/// The lab core, running.
pub struct Running {
    _hss: std::sync::Arc<hss::server::Hss>,
    /// The P-CSCF (with its S-CSCF).
    pub pcscf: pcscf::shell::Running,
    /// What to tell the operator.
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_the_default_and_parses() {
        assert_eq!(LabConfig::from_toml(EXAMPLE).unwrap(), LabConfig::default());
    }

    #[test]
    fn the_domain_follows_the_plmn() {
        let c = LabConfig::from_toml("[network]\nmcc = \"262\"\nmnc = \"42\"\n").unwrap();
        assert_eq!(c.domain(), "ims.mnc042.mcc262.3gppnetwork.org");
        let c = LabConfig::from_toml("[network]\ndomain = \"ims.lab\"\n").unwrap();
        assert_eq!(c.domain(), "ims.lab");
    }

    #[test]
    fn mistakes_are_named() {
        for (toml, want) in [
            ("[network]\nmcc = \"1\"\n", "network.mcc"),
            ("[network]\nmnc = \"1234\"\n", "network.mnc"),
            ("[network]\npcscf_address = \"0.0.0.0\"\n", "wildcard"),
            ("[ipsec]\npolicy = \"maybe\"\n", "ipsec.policy"),
            ("[ipsec]\nbackend = \"xfrm\"\n", "ipsec.backend"),
            ("[network]\nmcc_typo = \"001\"\n", "mcc_typo"),
        ] {
            let e = LabConfig::from_toml(toml).unwrap_err().to_string();
            assert!(e.contains(want), "{toml:?}: {e}");
        }
    }

    #[test]
    fn generated_configs_are_valid_for_the_binaries() {
        let c = LabConfig::from_toml(
            "[network]\nmcc = \"262\"\nmnc = \"42\"\npcscf_address = \"10.45.0.1\"\n\
             [web]\nlisten = \"127.0.0.1:8080\"\ntoken = \"t\\\"x\"\n",
        )
        .unwrap();
        let h = hss::config::Config::parse(&c.hss_toml()).unwrap();
        assert_eq!(h.realm, "ims.mnc042.mcc262.3gppnetwork.org");
        let p = pcscf::Config::from_toml(&c.pcscf_toml()).unwrap();
        assert_eq!(p.sip.domain, "ims.mnc042.mcc262.3gppnetwork.org");
        assert_eq!(p.sip.listen, "10.45.0.1:5060".parse().unwrap());
    }
}
