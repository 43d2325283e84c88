//! A whole IMS network in this process, on loopback: HSS (SQLite in a temporary directory,
//! provisioned subscribers, Cx over TCP) and P-CSCF (SIP on UDP/TCP, IPsec), with their
//! generated configuration files written out for the curious. The demo and the load tools
//! run their UEs against it.

use anyhow::Context;
use secagree::IpsecMode;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use ue::{IsimKeys, UeConfig};

/// Home domain of the lab network (test PLMN 001/01).
pub const DOMAIN: &str = "ims.mnc001.mcc001.3gppnetwork.org";

/// Subscriber `i`'s identities and keys: IMSI 00101 + (i+1) on 10 digits, K derived from
/// i, one OPc, so that `imslab aka` can recompute everything seen in a capture.
pub struct Sub {
    /// IMSI.
    pub imsi: String,
    /// Private identity.
    pub impi: String,
    /// SIP public identity.
    pub impu: String,
    /// tel: public identity (same implicit registration set).
    pub tel: String,
    /// K.
    pub k: [u8; 16],
    /// OPc.
    pub opc: [u8; 16],
}

/// The `i`-th subscriber of the lab network (0-based).
pub fn subscriber(i: usize) -> Sub {
    let imsi = format!("00101{:010}", i + 1);
    let mut k = [0u8; 16];
    let mut opc = [0u8; 16];
    let seed = (i as u64).to_be_bytes();
    for j in 0..16 {
        k[j] = (j as u8) ^ 0x46 ^ seed[j % 8].rotate_left(j as u32);
        opc[j] = (j as u8).wrapping_mul(17) ^ 0xcd;
    }
    Sub {
        impi: format!("{imsi}@{DOMAIN}"),
        impu: format!("sip:{imsi}@{DOMAIN}"),
        tel: format!("tel:+4915550{:06}", i + 1),
        imsi,
        k,
        opc,
    }
}

/// Loopback ports, picked before anything starts so a capture can begin first.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// HSS Diameter (TCP) on 127.0.0.1.
    pub diameter: u16,
    /// P-CSCF SIP (UDP and TCP).
    pub sip: SocketAddr,
}

impl Ports {
    /// Free ports on 127.0.0.1 right now.
    pub fn pick() -> std::io::Result<Ports> {
        let d = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let s = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        Ok(Ports {
            diameter: d,
            sip: s,
        })
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Subscribers to provision ([`subscriber`] 0..n).
    pub subscribers: usize,
    /// IPsec of the P-CSCF (`Off` also sets `ipsec.policy = "off"`).
    pub mode: IpsecMode,
    /// Where hss.toml, pcscf.toml and esp_sa go.
    pub config_dir: PathBuf,
    /// Ports from [`Ports::pick`].
    pub ports: Ports,
    /// The address UEs reach the P-CSCF on (`sip.advertise`): needed when `ports.sip`
    /// is a wildcard (`0.0.0.0`, `[::]`), else the IP of `ports.sip`.
    pub advertise: Option<IpAddr>,
    /// The P-CSCF's protected port range (two ports per SA set; a re-registration holds
    /// two sets for a moment).
    pub port_range: (u16, u16),
    /// Shortest registration the P-CSCF grants, seconds (`registrar.min_expires`; tests of
    /// expiry use a few seconds, the default is 60).
    pub min_expires: u32,
    /// An application server for UE2's incoming calls (the demo's caller-ID AS): subscriber
    /// 1 gets the iFC "terminating INVITE → sip:this", and the P-CSCF's S-CSCF core listens
    /// for ISC on a port of its own ([`LabNet::scscf_addr`]), trusting the AS's address.
    pub application_server: Option<SocketAddr>,
    /// The appserver's AMR ⇄ PCMA bridge ([`BridgeOptions`]): UE1's calls to the SIP side's
    /// numbers go to it by an originating iFC, and the S-CSCF core takes the calls it
    /// brings in from the SIP side as a trusted AS ([`LabNet::scscf_addr`]).
    pub bridge: Option<BridgeOptions>,
}

/// Where the bridge takes calls and which dialled numbers are the SIP side's.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// The bridge's ISC address (`[bridge] isc_listen`), the iFC's ServerName.
    pub isc: SocketAddr,
    /// A regular expression searched in the Request-URI (the iFC's SPT, TS 29.228 Annex
    /// B.2.7), e.g. `^(tel:|sip:)\+4930` for the numbers of the SIP side.
    pub request_uri: String,
}

impl BridgeOptions {
    /// UE1's originating iFC: INVITEs (session case originating) whose Request-URI
    /// matches go to the bridge; a SessionContinued default so an unreachable bridge
    /// fails the call the ordinary way rather than blocking every call of UE1.
    pub fn ifc(&self, priority: i32) -> ifc::InitialFilterCriteria {
        let mut c = ifc::InitialFilterCriteria::for_method(
            priority,
            "INVITE",
            Some(ifc::SessionCase::Originating),
            &format!("sip:{}", self.isc),
            ifc::DefaultHandling::SessionContinued,
        );
        if let Some(tp) = c.trigger_point.as_mut() {
            tp.spts.push(ifc::Spt {
                condition_negated: false,
                groups: vec![2],
                condition: ifc::SptCondition::RequestUri(self.request_uri.clone()),
                registration_types: vec![],
            });
        }
        c
    }
}

/// The running network.
pub struct LabNet {
    /// The HSS (its store, metrics, Diameter server).
    pub hss: Arc<hss::server::Hss>,
    /// The P-CSCF.
    pub pcscf: pcscf::shell::Running,
    /// Where UEs send SIP: the advertised address with the port SIP listens on.
    pub sip_advertised: SocketAddr,
    /// SQLite database of the HSS.
    pub db: PathBuf,
    /// `ipsec.policy` in force.
    pub policy: &'static str,
    /// The esp_sa file the P-CSCF keeps up to date.
    pub esp_sa: PathBuf,
    /// Where the S-CSCF core takes requests from application servers, when
    /// [`NetOptions::application_server`] or [`NetOptions::bridge`] asked for one.
    pub scscf_addr: Option<SocketAddr>,
    _work: tempfile::TempDir,
}

impl LabNet {
    /// Provision, write the configurations, start the HSS, then the P-CSCF.
    pub async fn start(o: &NetOptions) -> anyhow::Result<LabNet> {
        std::fs::create_dir_all(&o.config_dir)
            .with_context(|| format!("create {}", o.config_dir.display()))?;
        let work = tempfile::tempdir().context("temporary directory")?;
        let db = work.path().join("hss.db");
        let hss_toml = format!(
            "origin_host = \"hss.{DOMAIN}\"\nrealm = \"{DOMAIN}\"\n\n[diameter]\nlisten = \
             \"127.0.0.1:{}\"\nallowed_peers = [\"pcscf.{DOMAIN}\"]\n\n[store]\npath = \
             \"{}\"\ndurability = \"normal\"\n",
            o.ports.diameter,
            db.display()
        );
        let hss_cfg_path = o.config_dir.join("hss.toml");
        std::fs::write(&hss_cfg_path, &hss_toml).context("write hss.toml")?;
        let hss_cfg = hss::config::Config::load(&hss_cfg_path).context("hss.toml")?;
        let mut profiles = vec![Vec::new(); o.subscribers];
        let mut isc = String::new();
        let mut scscf_addr = None;
        if let Some(a) = o.application_server {
            if let Some(p) = profiles.get_mut(1) {
                p.push(ifc::InitialFilterCriteria::for_method(
                    10,
                    "INVITE",
                    Some(ifc::SessionCase::TerminatingRegistered),
                    &format!("sip:{a}"),
                    ifc::DefaultHandling::SessionContinued,
                ));
            }
        }
        if let Some(b) = &o.bridge {
            if let Some(p) = profiles.get_mut(0) {
                p.push(b.ifc(20));
            }
        }
        // Application servers the S-CSCF core trusts (TS 24.229 §5.4.3.3: requests from
        // them are not authenticated by the P-CSCF's registration).
        let mut trusted: Vec<IpAddr> = o
            .application_server
            .iter()
            .map(|a| a.ip())
            .chain(o.bridge.iter().map(|b| b.isc.ip()))
            .collect();
        trusted.dedup();
        if !trusted.is_empty() {
            let s = SocketAddr::new(
                o.ports.sip.ip(),
                std::net::UdpSocket::bind(SocketAddr::new(o.ports.sip.ip(), 0))
                    .and_then(|u| u.local_addr())
                    .context("a port for the S-CSCF core")?
                    .port(),
            );
            let list: Vec<String> = trusted.iter().map(|ip| format!("\"{ip}\"")).collect();
            isc = format!(
                "\n[scscf]\naddress = \"{s}\"\n\n[isc]\napplication_servers = [{}]\n",
                list.join(", ")
            );
            scscf_addr = Some(s);
        }
        provision(&db, &profiles)?;
        let (hss, _listening) = hss::server::start(&hss_cfg)
            .await
            .context("start the HSS")?;

        let esp_sa = o.config_dir.join("esp_sa");
        let (policy, backend) = match o.mode {
            IpsecMode::Off => ("off", "auto".to_string()),
            IpsecMode::Backend(b) => ("required", b.to_string()),
        };
        let advertise = o
            .advertise
            .map(|a| format!("advertise = \"{a}\"\n"))
            .unwrap_or_default();
        let pcscf_toml = format!(
            "[sip]\nlisten = \"{}\"\n{advertise}domain = \"{DOMAIN}\"\n\n[ipsec]\npolicy = \
             \"{policy}\"\nbackend = \"{backend}\"\nport_range = [{}, {}]\nesp_sa_file = \
             \"{}\"\n\n[registrar]\nmin_expires = {}\ndefault_expires = {}\n\n[hss]\naddress = \
             \"127.0.0.1:{}\"\norigin_host = \"pcscf.{DOMAIN}\"\n{isc}",
            o.ports.sip,
            o.port_range.0,
            o.port_range.1,
            esp_sa.display(),
            o.min_expires,
            o.min_expires.max(600),
            o.ports.diameter
        );
        std::fs::write(o.config_dir.join("pcscf.toml"), &pcscf_toml).context("write pcscf.toml")?;
        let pcscf_cfg = pcscf::Config::from_toml(&pcscf_toml).context("pcscf.toml")?;
        let pcscf = pcscf::shell::start(pcscf_cfg)
            .await
            .context("start the P-CSCF")?;
        let sip_advertised = SocketAddr::new(
            o.advertise.unwrap_or(o.ports.sip.ip()),
            pcscf.sip_addr.port(),
        );
        Ok(LabNet {
            hss,
            pcscf,
            sip_advertised,
            db,
            policy,
            esp_sa,
            scscf_addr,
            _work: work,
        })
    }

    /// UE configurations for subscribers 0..n ([`ue_configs`]) pointing at our P-CSCF.
    pub fn ue_configs(&self, n: usize, sec_agree: bool) -> Vec<UeConfig> {
        ue_configs(self.sip_advertised, n, sec_agree)
    }
}

/// UE configurations for subscribers 0..n, each on its own loopback address
/// ([`ue::loopback_ip`]; the netns lab moves them to its own), pointing at `pcscf`.
pub fn ue_configs(pcscf: SocketAddr, n: usize, sec_agree: bool) -> Vec<UeConfig> {
    let mut template = UeConfig::new(
        "",
        "",
        DOMAIN,
        IsimKeys::new([0; 16], [0; 16]),
        IpAddr::from([127, 0, 0, 1]),
        pcscf,
    );
    template.sec_agree = sec_agree;
    template.expires = 600;
    template.sa_grace = Duration::from_millis(500);
    ue::numbered(&template, n, |i| {
        let s = subscriber(i);
        (s.impi, s.impu, IsimKeys::new(s.k, s.opc))
    })
}

/// Provisions subscribers 0..`profiles.len()` ([`subscriber`]) into the HSS store `db`,
/// subscriber `i` with the initial filter criteria `profiles[i]` (its services; empty for
/// none): the IMSI-derived SIP IMPU and the tel URI (display name "Lab UE n") in one
/// implicit registration set. The demo, the labs and the end-to-end tests share it.
pub fn provision(
    db: &std::path::Path,
    profiles: &[Vec<ifc::InitialFilterCriteria>],
) -> anyhow::Result<()> {
    let mut store = hss::store::Store::open(db, hss::store::Durability::Normal)
        .context("open the HSS store")?;
    for (i, ifcs) in profiles.iter().enumerate() {
        let s = subscriber(i);
        store
            .add(&hss::store::Subscriber {
                imsi: Some(s.imsi),
                msisdn: Some(s.tel.trim_start_matches("tel:+").to_string()),
                impus: vec![
                    hss::store::Impu::new(s.impu),
                    hss::store::Impu {
                        display_name: Some(format!("Lab UE {}", i + 1)),
                        ..hss::store::Impu::new(s.tel)
                    },
                ],
                ifcs: ifcs.clone(),
                ..hss::store::Subscriber::new(s.impi, s.k, s.opc)
            })
            .context("provision a subscriber")?;
    }
    Ok(())
}
