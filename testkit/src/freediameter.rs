//! freeDiameter fixture (Debian `freediameter` 1.2.1, binary `freeDiameterd`):
//! an independent Diameter base-protocol peer that connects to *our* server.
//!
//! [`FreeDiameter::start`] writes `fixtures/freediameter.conf` into a temp
//! dir and runs `freeDiameterd -c <conf>` in the foreground. The peer:
//! - has its own Identity/Realm and a non-default listen port (free port);
//! - connects (`ConnectPeer`) to our server over TCP on loopback, without TLS
//!   (`No_TLS`, `SecPort = 0`) and without SCTP;
//! - sends **CER** on connect, **DWR** every Tw seconds (minimum 6, freeDiameter
//!   adds ±2 s jitter), and **DPR** when stopped gracefully
//!   ([`FreeDiameter::stop_graceful`], SIGTERM), waiting for the DPA.
//!
//! Facts found on this machine:
//! - No certificate is needed: 1.2.1 starts without `TLS_Cred`/`TLS_CA` and
//!   only warns "TLS is disabled". (Older builds demanded `TLS_Cred` even with
//!   `No_TLS`; if that ever happens, [`self_signed_cert`] makes a throwaway
//!   pair with `openssl` and [`FdConfig::tls_cred`] adds the line.)
//! - Its CER advertises only the Relay application (Auth-Application-Id
//!   0xffffffff), no Vendor-Specific-Application-Id: our server must accept a
//!   Relay-only peer (RFC 6733 §5.3 / issue 3).
//! - freeDiameter checks that the Origin-Host in our CEA equals the
//!   `ConnectPeer` identity: set [`FdConfig::peer_identity`] to our server's
//!   Origin-Host, or the connection is refused.
//! - `ListenOn = "127.0.0.1"` is accepted but the 1.2.1 server still binds
//!   0.0.0.0 on [`FdConfig::port`]; nothing is sent to other hosts.
//! - Log lines to wait for: `freeDiameterd daemon initialized.` (started),
//!   `'STATE_WAITCEA'\t-> 'STATE_OPEN'` (CEA accepted; [`FreeDiameter::wait_open`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, TestDir};
use crate::wait::{free_port_on, LOOPBACK};
use crate::{render, Error};

/// The configuration template.
pub const CONF_TEMPLATE: &str = include_str!("../fixtures/freediameter.conf");

/// Log line printed once the daemon is up.
pub const READY_LINE: &str = "freeDiameterd daemon initialized";
/// Substring of the log line printed when the peer state becomes Open.
pub const OPEN_LINE: &str = "-> 'STATE_OPEN'";

/// Path of `freeDiameterd`, if installed.
pub fn bin() -> Option<PathBuf> {
    crate::find_bin("freeDiameterd")
}

/// Settings of the freeDiameter peer.
#[derive(Clone, Debug)]
pub struct FdConfig {
    /// Our peer's Diameter Identity (Origin-Host).
    pub identity: String,
    /// Its Origin-Realm.
    pub realm: String,
    /// Its listen port; 0 = pick a free one (never 3868).
    pub port: u16,
    /// `ListenOn` address.
    pub listen_ip: IpAddr,
    /// The server under test: its Origin-Host (must match its CEA).
    pub peer_identity: String,
    /// Address of the server under test.
    pub peer_ip: IpAddr,
    /// TCP port of the server under test.
    pub peer_port: u16,
    /// Tc: reconnect interval in seconds.
    pub tc: u32,
    /// Tw: watchdog interval in seconds (≥ 6, freeDiameter's minimum).
    pub tw: u32,
    /// Extensions to load (`LoadExtension = "path"[ : "conf"];`), e.g.
    /// `/usr/lib/freeDiameter/dbg_msg_dumps.fdx` to log every message.
    pub extensions: Vec<(PathBuf, Option<String>)>,
    /// `(cert, key)` for a `TLS_Cred` line (not needed by 1.2.1 without TLS).
    pub tls_cred: Option<(PathBuf, PathBuf)>,
    /// Start-up bound.
    pub start_timeout: Duration,
}

impl FdConfig {
    /// A peer `fd.testkit.lab`/`testkit.lab` connecting to `peer_identity` at
    /// 127.0.0.1:`peer_port`, Tc 3 s, Tw 6 s.
    pub fn new(peer_identity: &str, peer_port: u16) -> Self {
        Self {
            identity: "fd.testkit.lab".into(),
            realm: "testkit.lab".into(),
            port: 0,
            listen_ip: LOOPBACK,
            peer_identity: peer_identity.into(),
            peer_ip: LOOPBACK,
            peer_port,
            tc: 3,
            tw: 6,
            extensions: Vec::new(),
            tls_cred: None,
            start_timeout: Duration::from_secs(15),
        }
    }

    /// Renders the configuration file (ports must be chosen).
    pub fn render(&self) -> String {
        let mut ext = String::new();
        for (path, conf) in &self.extensions {
            match conf {
                Some(c) => ext.push_str(&format!(
                    "LoadExtension = \"{}\" : \"{c}\";\n",
                    path.display()
                )),
                None => ext.push_str(&format!("LoadExtension = \"{}\";\n", path.display())),
            }
        }
        if let Some((cert, key)) = &self.tls_cred {
            ext.push_str(&format!(
                "TLS_Cred = \"{}\", \"{}\";\nTLS_CA = \"{}\";\n",
                cert.display(),
                key.display(),
                cert.display()
            ));
        }
        render(
            CONF_TEMPLATE,
            &[
                ("IDENTITY", self.identity.clone()),
                ("REALM", self.realm.clone()),
                ("PORT", self.port.to_string()),
                ("LISTEN_IP", self.listen_ip.to_string()),
                ("TC", self.tc.to_string()),
                ("TW", self.tw.max(6).to_string()),
                ("EXTENSIONS", ext),
                ("PEER_IDENTITY", self.peer_identity.clone()),
                ("PEER_IP", self.peer_ip.to_string()),
                ("PEER_PORT", self.peer_port.to_string()),
            ],
        )
    }
}

/// A running `freeDiameterd`. Dropping it kills it (no DPR); use
/// [`FreeDiameter::stop_graceful`] to see DPR/DPA.
#[derive(Debug)]
pub struct FreeDiameter {
    guard: ChildGuard,
    config: FdConfig,
    dir: TestDir,
}

impl FreeDiameter {
    /// Writes the configuration, starts `freeDiameterd` and waits for
    /// [`READY_LINE`] (bounded by `start_timeout`).
    pub fn start(mut config: FdConfig) -> Result<Self, Error> {
        let bin = bin().ok_or_else(|| Error::Failed {
            what: "find freeDiameterd".into(),
            detail: "not installed (apt-get install freediameter)".into(),
        })?;
        if config.port == 0 {
            config.port = free_port_on(config.listen_ip);
        }
        let dir = TestDir::new("freediameter")?;
        let conf = dir.write("freeDiameter.conf", config.render())?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&conf).current_dir(dir.path());
        let mut guard =
            ChildGuard::spawn("freeDiameterd", &mut cmd, &dir.join("freediameter.log"))?;
        guard.wait_for_log(READY_LINE, config.start_timeout)?;
        Ok(Self { guard, config, dir })
    }

    /// The effective configuration.
    pub fn config(&self) -> &FdConfig {
        &self.config
    }

    /// The temp dir (config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.guard.log()
    }

    /// The process guard.
    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// Waits until the connection to our server is Open (CER/CEA done).
    pub fn wait_open(&mut self, timeout: Duration) -> Result<(), Error> {
        self.guard.wait_for_log(OPEN_LINE, timeout)
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<(), Error> {
        self.guard.wait_for_log(needle, timeout)
    }

    /// SIGTERM: freeDiameter sends DPR to its open peers and waits for the DPA
    /// before exiting. Waits at most `timeout` for the exit (then kills) and
    /// returns the log.
    pub fn stop_graceful(mut self, timeout: Duration) -> Result<String, Error> {
        self.guard.signal_group(libc::SIGTERM);
        let res = self.guard.wait_timeout(timeout);
        let log = self.guard.log();
        res.map(|_| log)
    }
}

/// Makes a throwaway self-signed certificate and key (`<name>.cert.pem`,
/// `<name>.key.pem`) in `dir` with `openssl`, CN = `cn`, valid one day.
pub fn self_signed_cert(dir: &Path, name: &str, cn: &str) -> Result<(PathBuf, PathBuf), Error> {
    let openssl = crate::find_bin("openssl").ok_or_else(|| Error::Failed {
        what: "find openssl".into(),
        detail: "not installed".into(),
    })?;
    let cert = dir.join(format!("{name}.cert.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    let out = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .map_err(|e| Error::io("run openssl".into(), e))?;
    if !out.status.success() {
        return Err(Error::Failed {
            what: "openssl req -x509".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_peer_without_tls() {
        let mut c = FdConfig::new("hss.ims.lab", 3868);
        c.port = 13870;
        c.extensions.push((
            PathBuf::from("/usr/lib/freeDiameter/dbg_msg_dumps.fdx"),
            Some("0x0080".into()),
        ));
        let s = c.render();
        assert!(s.contains("Port = 13870;"));
        assert!(s.contains("SecPort = 0;"));
        assert!(s.contains(
            "ConnectPeer = \"hss.ims.lab\" { ConnectTo = \"127.0.0.1\"; port = 3868; No_TLS; No_SCTP; };"
        ));
        assert!(
            s.contains("LoadExtension = \"/usr/lib/freeDiameter/dbg_msg_dumps.fdx\" : \"0x0080\";")
        );
        assert!(!s.lines().any(|l| l.starts_with("TLS_Cred")));
    }
}
