//! Test kit (feature `testkit`): runs freeDiameter 1.2 (Debian `freediameter`) as an
//! independent Diameter peer for interop tests of this crate and of its users (the HSS).
//!
//! freeDiameter insists on `TLS_Cred` even when TLS is off, so a throw-away self-signed
//! certificate is generated with `openssl`. Clear TCP only (`SecPort = 0`, `No_SCTP`,
//! `No_TLS` per peer), 127.0.0.1, ports chosen by the caller. Incoming peers are allowed
//! with the `acl_wl` extension (`ALLOW_IPSEC <fqdn>` = accepted without TLS). The
//! `dbg_msg_dumps` extension logs every message name, and freeDiameter logs state changes
//! such as `'STATE_WAITCEA' -> 'STATE_OPEN'`, so a test can check the log.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;

/// Whether a required external binary is missing: in CI that is a failure, elsewhere the
/// test prints a loud SKIPPED line and returns early.
pub fn require_binary(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is required in CI but is not installed (apt-get install freediameter tshark)");
        }
        eprintln!("SKIPPED: {name} not installed");
    }
    found
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A peer freeDiameter connects to by itself (`ConnectPeer`).
pub struct FdConnectPeer {
    /// Diameter identity the peer must present.
    pub identity: String,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

/// freeDiameter settings for one test instance.
pub struct FdConfig {
    /// Its Diameter identity.
    pub identity: String,
    /// Its realm.
    pub realm: String,
    /// TCP port it listens on (127.0.0.1).
    pub port: u16,
    /// Watchdog timer Tw in seconds (freeDiameter's minimum is 6).
    pub tw: u32,
    /// Peers it connects to.
    pub connect: Vec<FdConnectPeer>,
    /// Identities accepted on incoming connections without TLS (acl_wl ALLOW_IPSEC).
    pub allow_incoming: Vec<String>,
}

/// A running freeDiameterd; killed (SIGTERM, then SIGKILL) on drop.
pub struct FreeDiameter {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Its stdout+stderr log file.
    pub log: PathBuf,
}

impl FreeDiameter {
    /// Writes a config (clear TCP only, TLS port disabled; freeDiameter still insists on
    /// TLS_Cred, so a throw-away self-signed certificate is generated) and starts it.
    pub fn start(c: &FdConfig) -> FreeDiameter {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let st = Command::new("openssl")
            .args([
                "req", "-new", "-batch", "-x509", "-days", "2", "-nodes", "-newkey", "rsa:2048",
            ])
            .arg("-out")
            .arg(d.join("cert.pem"))
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .args(["-subj", &format!("/CN={}", c.identity)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl req failed");
        let mut conf = format!(
            "Identity = \"{id}\";\nRealm = \"{realm}\";\nPort = {port};\nSecPort = 0;\nNo_SCTP;\nNo_IPv6;\n\
             ListenOn = \"127.0.0.1\";\nTwTimer = {tw};\nTcTimer = 6;\n\
             TLS_Cred = \"{dir}/cert.pem\", \"{dir}/key.pem\";\nTLS_CA = \"{dir}/cert.pem\";\n\
             LoadExtension = \"dbg_msg_dumps.fdx\" : \"0x0080\";\n",
            id = c.identity,
            realm = c.realm,
            port = c.port,
            tw = c.tw,
            dir = d.display()
        );
        if !c.allow_incoming.is_empty() {
            let wl: String = c
                .allow_incoming
                .iter()
                .map(|h| format!("ALLOW_IPSEC {h}\n"))
                .collect();
            std::fs::write(d.join("acl_wl.conf"), wl).unwrap();
            conf += &format!(
                "LoadExtension = \"acl_wl.fdx\" : \"{}/acl_wl.conf\";\n",
                d.display()
            );
        }
        for p in &c.connect {
            conf += &format!(
                "ConnectPeer = \"{}\" {{ ConnectTo = \"127.0.0.1\"; Port = {}; No_TLS; No_SCTP; }};\n",
                p.identity, p.port
            );
        }
        std::fs::write(d.join("fd.conf"), &conf).unwrap();
        let log = d.join("fd.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("freeDiameterd")
            .arg("-c")
            .arg(d.join("fd.conf"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("freeDiameterd");
        FreeDiameter {
            child: Some(child),
            dir,
            log,
        }
    }

    /// Waits until freeDiameter accepts TCP connections on `port`.
    pub async fn wait_listening(&self, port: u16) {
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "freeDiameterd did not listen on {port}; log:\n{}",
            self.log_text()
        );
    }

    /// Sends SIGTERM (freeDiameter then sends DPR to its peers).
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), 15);
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (e.g. `STATE_OPEN`,
    /// `'Device-Watchdog-Answer'`, `'Disconnect-Peer-Answer'`); false after `max`.
    pub async fn wait_log(&self, needle: &str, max: Duration) -> bool {
        let end = tokio::time::Instant::now() + max;
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Directory holding the generated config, certificate and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

fn signal(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for FreeDiameter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), 15);
            for _ in 0..30 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
