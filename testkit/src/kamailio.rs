//! Kamailio S-CSCF fixture (Debian `kamailio` + `kamailio-ims-modules` 5.6.3).
//!
//! [`Kamailio::start`] writes a minimal S-CSCF `kamailio.cfg`
//! (`fixtures/scscf.cfg`) and the cdp Diameter XML (`fixtures/scscf-cdp.xml`)
//! into a temp dir and runs `kamailio -DD -E` in the foreground (workers are
//! still forked; [`ChildGuard`] kills the whole group) with its own runtime
//! dir and pid file, on a free loopback port for SIP (UDP and TCP).
//!
//! What the configuration does:
//! - Cx toward the HSS (TS 29.229): cdp connects over TCP to
//!   `hss_fqdn:hss_port`, Origin-Host `scscf_fqdn`, Origin-Realm `realm`,
//!   Auth-Application-Id 16777216 with Vendor-Id 10415 (and 0).
//! - REGISTER without valid credentials → MAR (ims_auth, scheme
//!   `Digest-AKAv1-MD5`) → `401` with `WWW-Authenticate: Digest ...
//!   algorithm=AKAv1-MD5` and `ck`/`ik`; an `auts` answer → MAR with
//!   SIP-Authorization = RAND‖AUTS (resync) → new 401 from the fresh vector;
//!   a correct RES → SAR (ims_registrar_scscf,
//!   `save()` with all four arguments, because 5.6.3 crashes with fewer) →
//!   `200 OK` with Service-Route/P-Associated-URI, and the request's `Path`
//!   echoed when it says `Supported: path` (`use_path`, lazy `path_mode`: a
//!   proxy-mode P-CSCF in front works). Re-registration re-runs the
//!   challenge (Kamailio challenges every REGISTER); `Expires: 0` deregisters
//!   (SAR user-deregistration). Wrong RES → `403`.
//! - Calls (minimal, for the P-CSCF proxy-mode tests and `imslab bench calls`): an
//!   initial request from the P-CSCF (Route: the caller's Service-Route, which
//!   `loose_route()` consumes) goes to the callee's registered contact by `lookup()` of
//!   ims_registrar_scscf, through the callee's stored Path (its P-CSCF); INVITE,
//!   SUBSCRIBE and REFER are Record-Routed, everything is relayed statefully
//!   (`t_relay`). In-dialog requests follow their Route set (`loose_route`). An unknown
//!   callee gets 404, a known one without a usable contact 480. No iFC, no AS.
//! - OPTIONS addressed to the S-CSCF itself is a readiness probe:
//!   `200 HSS peer open` when cdp's peer is Open, else `503`
//!   ([`Kamailio::probe`], [`Kamailio::wait_hss_open`]).
//!
//! Facts a test must know:
//! - cdp connects to the peer by **resolving `hss_fqdn`** (getaddrinfo), so it
//!   must resolve to the HSS's address: the default is `localhost`. The HSS's
//!   own Origin-Host in its CEA does not have to equal `hss_fqdn` (verified:
//!   cdp still goes Open), but Kamailio sends requests to the peer named
//!   `hss_fqdn` (`cxdx_forced_peer`).
//! - cdp retries a failed/closed connection every `tc` seconds (default 2 here),
//!   so the HSS may start after Kamailio.
//! - ims_auth sends the 401 *before* it stores the vector: a UE answering
//!   within ~1 ms (loopback) gets a fresh MAR instead of a check. Clients must
//!   pause ~300 ms before answering the challenge (the SIPp scenarios do).
//! - ims_auth looks for `auts` only after the digest response failed to
//!   match: a UE asking for resync must send a real response computed with an
//!   empty password (RFC 3310 §3.4), not `response=""`.
//! - After a resync MAA ims_auth sends nothing itself; the configuration
//!   calls `ims_www_challenge` again, which uses the stored fresh vector.
//! - `WARNING: tm ... t_continue_helper(): active transaction not found` after
//!   every challenge is expected: ims_auth already answered the 401 from the
//!   MAA callback before the suspended transaction resumes.
//! - With `debug=2` (default) the log shows one `testkit-scscf:` line per
//!   request and per MAA/SAA result code; `debug=3` is very verbose.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{ChildGuard, TestDir};
use crate::wait::{free_port_on, wait_for_tcp, LOOPBACK};
use crate::{render, Error};

/// The S-CSCF `kamailio.cfg` template.
pub const SCSCF_CFG_TEMPLATE: &str = include_str!("../fixtures/scscf.cfg");
/// The cdp `DiameterPeer` XML template.
pub const SCSCF_CDP_TEMPLATE: &str = include_str!("../fixtures/scscf-cdp.xml");

/// Modules the S-CSCF configuration loads (file stems), for
/// [`crate::require_kamailio_modules`].
pub const SCSCF_MODULES: &[&str] = &[
    "kex",
    "corex",
    "tm",
    "tmx",
    "sl",
    "rr",
    "pv",
    "maxfwd",
    "textops",
    "siputils",
    "xlog",
    "cdp",
    "cdp_avp",
    "ims_dialog",
    "presence",
    "ims_usrloc_scscf",
    "ims_registrar_scscf",
    "ims_auth",
];

/// Kamailio's module directory: `$TESTKIT_KAMAILIO_MODULES` or Debian's
/// `/usr/lib/x86_64-linux-gnu/kamailio/modules`.
pub fn module_dir() -> PathBuf {
    std::env::var_os("TESTKIT_KAMAILIO_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/x86_64-linux-gnu/kamailio/modules"))
}

/// `true` if `kamailio` and every S-CSCF module are present; says nothing either way
/// (tools that measure Kamailio only when it is there).
pub fn scscf_available() -> bool {
    crate::find_bin("kamailio").is_some()
        && SCSCF_MODULES
            .iter()
            .all(|m| module_dir().join(format!("{m}.so")).is_file())
}

/// `true` if `kamailio` and every S-CSCF module are present, else the
/// skip-or-fail policy (see [`crate::policy`]) and `false`.
pub fn require_scscf() -> bool {
    crate::require_bin("kamailio").is_some() && crate::require_kamailio_modules(SCSCF_MODULES)
}

/// Settings of the S-CSCF fixture. [`ScscfConfig::new`] gives working defaults.
#[derive(Clone, Debug)]
pub struct ScscfConfig {
    /// Home domain: realm of the digest challenge, alias of the S-CSCF.
    pub domain: String,
    /// The S-CSCF's host name: Diameter Origin-Host and SIP alias.
    pub scscf_fqdn: String,
    /// Diameter Origin-Realm of the S-CSCF.
    pub realm: String,
    /// The HSS peer name; must resolve to the HSS address (see module docs).
    pub hss_fqdn: String,
    /// Destination-Realm of Cx requests.
    pub hss_realm: String,
    /// The HSS's Diameter TCP port on `hss_fqdn`.
    pub hss_port: u16,
    /// Local address for SIP and the cdp acceptor.
    pub listen_ip: IpAddr,
    /// SIP port (UDP and TCP); 0 = pick a free one.
    pub sip_port: u16,
    /// cdp acceptor port (incoming Diameter, e.g. RTR from the HSS); 0 = pick.
    pub cdp_port: u16,
    /// Kamailio `debug` level (2 = info, one log line per request; 1 = warnings only,
    /// what a load test wants; 3 = debug).
    pub debug: i8,
    /// SIP worker processes per UDP socket (`children`); the TCP workers stay at 1.
    pub children: u32,
    /// Shared memory in MB (`-m`). tm keeps every transaction there for its wait time
    /// (5 s after completion): 64 MB runs out after about 2,000 calls in flight, so load
    /// tests give more.
    pub shm_mb: u32,
    /// `default_expires` of ims_registrar_scscf (seconds).
    pub default_expires: u32,
    /// `min_expires` (seconds).
    pub min_expires: u32,
    /// `max_expires` (seconds).
    pub max_expires: u32,
    /// `registration_qop` of ims_auth: `auth`, `auth-int` or `auth,auth-int`.
    pub qop: String,
    /// cdp Tc: seconds between reconnection attempts to the HSS.
    pub tc: u32,
    /// cdp transaction timeout in seconds (MAR/SAR without answer).
    pub transaction_timeout: u32,
    /// Bound for the start-up wait in [`Kamailio::start`].
    pub start_timeout: Duration,
}

impl ScscfConfig {
    /// Defaults for an HSS listening on `localhost:hss_port`: domain and
    /// realms `ims.lab`, S-CSCF `scscf.ims.lab`, free loopback ports, qop
    /// `auth`, expires 3600 (min 10, max 7200), 2 UDP workers, 64 MB shared memory.
    pub fn new(hss_port: u16) -> Self {
        Self {
            domain: "ims.lab".into(),
            scscf_fqdn: "scscf.ims.lab".into(),
            realm: "ims.lab".into(),
            hss_fqdn: "localhost".into(),
            hss_realm: "ims.lab".into(),
            hss_port,
            listen_ip: LOOPBACK,
            sip_port: 0,
            cdp_port: 0,
            debug: 2,
            children: 2,
            shm_mb: 64,
            default_expires: 3600,
            min_expires: 10,
            max_expires: 7200,
            qop: "auth".into(),
            tc: 2,
            transaction_timeout: 5,
            start_timeout: Duration::from_secs(20),
        }
    }

    /// The S-CSCF's SIP URI as sent in Server-Name: `sip:<scscf_fqdn>:<sip_port>`.
    pub fn scscf_name(&self) -> String {
        format!("sip:{}:{}", self.scscf_fqdn, self.sip_port)
    }

    /// Renders `(kamailio.cfg, cdp.xml)` with `cdp_config` as the XML's path.
    /// Ports must already be chosen (non-zero).
    pub fn render(&self, cdp_config: &Path) -> (String, String) {
        let cfg = render(
            SCSCF_CFG_TEMPLATE,
            &[
                ("DEBUG", self.debug.to_string()),
                ("CHILDREN", self.children.max(1).to_string()),
                ("LISTEN_IP", self.listen_ip.to_string()),
                ("SIP_PORT", self.sip_port.to_string()),
                ("DOMAIN", self.domain.clone()),
                ("SCSCF_FQDN", self.scscf_fqdn.clone()),
                ("MODULE_DIR", format!("{}/", module_dir().display())),
                ("CDP_CONFIG", cdp_config.display().to_string()),
                ("DLG_FLAG", "4".into()),
                ("SCSCF_NAME", self.scscf_name()),
                ("HSS_REALM", self.hss_realm.clone()),
                ("HSS_FQDN", self.hss_fqdn.clone()),
                ("DEFAULT_EXPIRES", self.default_expires.to_string()),
                ("MIN_EXPIRES", self.min_expires.to_string()),
                ("MAX_EXPIRES", self.max_expires.to_string()),
                ("QOP", self.qop.clone()),
            ],
        );
        let xml = render(
            SCSCF_CDP_TEMPLATE,
            &[
                ("SCSCF_FQDN", self.scscf_fqdn.clone()),
                ("REALM", self.realm.clone()),
                ("TC", self.tc.to_string()),
                ("TRANSACTION_TIMEOUT", self.transaction_timeout.to_string()),
                ("HSS_FQDN", self.hss_fqdn.clone()),
                ("HSS_REALM", self.hss_realm.clone()),
                ("HSS_PORT", self.hss_port.to_string()),
                ("CDP_LISTEN_PORT", self.cdp_port.to_string()),
                ("LISTEN_IP", self.listen_ip.to_string()),
            ],
        );
        (cfg, xml)
    }
}

/// A running Kamailio S-CSCF. Dropping it kills Kamailio and its workers and
/// removes the temp dir (unless `TESTKIT_KEEP=1`).
#[derive(Debug)]
pub struct Kamailio {
    // Field order matters: the process dies before its directory goes.
    guard: ChildGuard,
    config: ScscfConfig,
    cfg_path: PathBuf,
    dir: TestDir,
}

impl Kamailio {
    /// Writes the configuration, starts Kamailio and waits (bounded by
    /// `config.start_timeout`) until its SIP TCP port and cdp's Diameter
    /// acceptor both accept connections. Zero ports in
    /// `config` are replaced by free ones. Does not wait for the HSS: use
    /// [`Kamailio::wait_hss_open`].
    ///
    /// When ports were left at 0 and another process grabs one between our
    /// check and Kamailio's bind ("Address already in use"), the start is
    /// retried with new ports (3 attempts in all).
    pub fn start(config: ScscfConfig) -> Result<Self, Error> {
        let auto_ports = config.sip_port == 0 || config.cdp_port == 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(config.clone()) {
                Err(Error::Exited { detail, .. })
                    if auto_ports && attempt < 3 && detail.contains("already in use") =>
                {
                    eprintln!("testkit::kamailio: port taken while starting, retrying");
                }
                other => return other,
            }
        }
    }

    fn start_once(mut config: ScscfConfig) -> Result<Self, Error> {
        let bin = crate::find_bin("kamailio").ok_or_else(|| Error::Failed {
            what: "find kamailio".into(),
            detail: "kamailio not installed (use testkit::kamailio::require_scscf first)".into(),
        })?;
        if config.sip_port == 0 {
            config.sip_port = free_port_on(config.listen_ip);
        }
        if config.cdp_port == 0 {
            config.cdp_port = free_port_on(config.listen_ip);
        }
        let dir = TestDir::new("kamailio")?;
        let run_dir = dir.join("run");
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| Error::io(format!("mkdir {}", run_dir.display()), e))?;
        let cdp_path = dir.join("cdp.xml");
        let (cfg, xml) = config.render(&cdp_path);
        dir.write("cdp.xml", xml)?;
        let cfg_path = dir.write("kamailio.cfg", cfg)?;

        let mut cmd = Command::new(bin);
        cmd.arg("-DD")
            .arg("-E")
            .arg("-f")
            .arg(&cfg_path)
            .arg("-Y")
            .arg(&run_dir)
            .arg("-P")
            .arg(run_dir.join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path())
            .args(["-m", &config.shm_mb.max(16).to_string(), "-M", "8"])
            .current_dir(dir.path());
        let mut guard = ChildGuard::spawn("kamailio", &mut cmd, &dir.join("kamailio.log"))?;

        let sip = SocketAddr::new(config.listen_ip, config.sip_port);
        let cdp = SocketAddr::new(config.listen_ip, config.cdp_port);
        let deadline = Instant::now() + config.start_timeout;
        // Ready = SIP over TCP accepts and cdp's acceptor (its own process)
        // listens: by then the modules are initialised and the workers forked.
        let mut sip_up = false;
        loop {
            if let Some(st) = guard.try_wait() {
                return Err(Error::Exited {
                    name: "kamailio".into(),
                    status: st.to_string(),
                    detail: guard.log_tail(40),
                });
            }
            sip_up = sip_up || wait_for_tcp(sip, Duration::from_millis(100)).is_ok();
            if sip_up && wait_for_tcp(cdp, Duration::from_millis(100)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("kamailio SIP port {sip} and cdp acceptor {cdp}"),
                    after: config.start_timeout,
                    detail: guard.log_tail(40),
                });
            }
        }
        Ok(Self {
            guard,
            config,
            cfg_path,
            dir,
        })
    }

    /// The effective configuration (ports filled in).
    pub fn config(&self) -> &ScscfConfig {
        &self.config
    }

    /// SIP address (UDP and TCP).
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.config.listen_ip, self.config.sip_port)
    }

    /// The S-CSCF's SIP URI (also its Server-Name in MAR/SAR).
    pub fn scscf_uri(&self) -> String {
        self.config.scscf_name()
    }

    /// Path of the generated `kamailio.cfg` (the cdp XML is next to it).
    pub fn cfg_path(&self) -> &Path {
        &self.cfg_path
    }

    /// The temp dir holding config, log and runtime files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kamailio's log so far (stderr, `-E`).
    pub fn log(&self) -> String {
        self.guard.log()
    }

    /// Pid of Kamailio's main process, also its process group: its forked workers are
    /// the other members ([`crate::group_members`]).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The process guard (pid, log waits, signals).
    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// Sends one OPTIONS to the S-CSCF over UDP and returns the status code of
    /// the answer: 200 when its Cx peer is Open, 503 when not.
    pub fn probe(&self, timeout: Duration) -> Result<u16, Error> {
        let sock = UdpSocket::bind(SocketAddr::new(self.config.listen_ip, 0))
            .map_err(|e| Error::io("bind probe socket".into(), e))?;
        sock.set_read_timeout(Some(timeout))
            .map_err(|e| Error::io("set timeout".into(), e))?;
        let local = sock
            .local_addr()
            .map_err(|e| Error::io("local addr".into(), e))?;
        let branch = format!("z9hG4bK-tk-{}-{}", std::process::id(), local.port());
        let msg = format!(
            "OPTIONS sip:{fqdn}:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch}\r\n\
             Max-Forwards: 10\r\n\
             From: <sip:probe@testkit.invalid>;tag={branch}\r\n\
             To: <sip:{fqdn}:{port}>\r\n\
             Call-ID: {branch}@testkit\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            fqdn = self.config.scscf_fqdn,
            port = self.config.sip_port,
        );
        sock.send_to(msg.as_bytes(), self.sip_addr())
            .map_err(|e| Error::io("send probe".into(), e))?;
        let mut buf = [0u8; 4096];
        let n = sock
            .recv(&mut buf)
            .map_err(|e| Error::io("receive probe answer".into(), e))?;
        parse_status_code(&buf[..n])
    }

    /// Probes until the S-CSCF reports its HSS peer Open, at most `timeout`.
    pub fn wait_hss_open(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.guard.try_wait() {
                return Err(Error::Exited {
                    name: "kamailio".into(),
                    status: st.to_string(),
                    detail: self.guard.log_tail(40),
                });
            }
            let last = match self.probe(Duration::from_millis(500)) {
                Ok(200) => return Ok(()),
                Ok(code) => format!("last probe answer {code}"),
                Err(e) => format!("last probe error {e}"),
            };
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "kamailio's Cx peer to become Open".into(),
                    after: timeout,
                    detail: format!("{last}\n{}", self.guard.log_tail(40)),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops Kamailio (SIGTERM, then SIGKILL after 3 s) and returns its log.
    pub fn stop(mut self) -> String {
        self.guard.stop(Duration::from_secs(3));
        self.guard.log()
    }
}

/// Status code of a SIP response's first line (`SIP/2.0 200 OK`).
pub fn parse_status_code(msg: &[u8]) -> Result<u16, Error> {
    let line_end = msg
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(msg.len());
    let line = String::from_utf8_lossy(&msg[..line_end]);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("SIP/") => code
            .parse()
            .ok()
            .filter(|c| (100..700).contains(c))
            .ok_or_else(|| Error::parse("SIP status line", line.to_string())),
        _ => Err(Error::parse("SIP status line", line.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_without_leftovers() {
        let mut c = ScscfConfig::new(3868);
        c.sip_port = 5060;
        c.cdp_port = 3869;
        let (cfg, xml) = c.render(Path::new("/tmp/x.xml"));
        assert!(cfg.contains("listen=udp:127.0.0.1:5060"));
        assert!(cfg.contains("\nchildren=2\n"));
        // Calls: callee found by lookup() (with its Path), Record-Route, stateful relay.
        assert!(cfg.contains("lookup(\"location\")") && cfg.contains("record_route()"));
        assert!(cfg.contains("t_relay()") && cfg.contains("loose_route()"));
        assert!(cfg.contains("save(\"REG_SAR_REPLY\", \"location\", \"0\", \"0\")"));
        assert!(xml.contains("<Peer FQDN=\"localhost\" Realm=\"ims.lab\" port=\"3868\"/>"));
        assert!(xml.contains("<Auth id=\"16777216\" vendor=\"10415\"/>"));
    }

    #[test]
    fn status_line() {
        assert_eq!(parse_status_code(b"SIP/2.0 503 x\r\n").unwrap(), 503);
        assert!(parse_status_code(b"garbage").is_err());
        assert!(parse_status_code(b"SIP/2.0 99999 x").is_err());
        assert!(parse_status_code(b"").is_err());
    }
}
