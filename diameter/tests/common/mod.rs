//! Test helpers: a freeDiameter config generator/launcher and a raw driver that runs a
//! sans-IO [`Peer`] over a TcpStream while logging every message in both directions.
//! (The hss crate's tests may copy this approach.)
#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diameter::peer::Event;
use diameter::{frame_length, Message, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
            unsafe_kill(c.id(), 15);
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for FreeDiameter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), 15);
            for _ in 0..30 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = &self.dir;
    }
}

/// Direction of a logged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// We sent it.
    Out,
    /// We received it.
    In,
}

/// Runs a sans-IO peer over a real socket and logs every message.
pub struct RawDriver {
    /// The peer.
    pub peer: Peer,
    /// The socket.
    pub sock: TcpStream,
    /// Every message, in order.
    pub log: Vec<(Dir, Message)>,
    /// Every event, in order.
    pub events: Vec<Event>,
    rx_log: Vec<u8>,
    eof: bool,
}

fn split_frames(buf: &mut Vec<u8>, dir: Dir, log: &mut Vec<(Dir, Message)>) {
    while let Ok(Some(n)) = frame_length(buf, 1 << 24) {
        if buf.len() < n {
            break;
        }
        let f: Vec<u8> = buf.drain(..n).collect();
        if let Ok(m) = Message::decode(f) {
            log.push((dir, m));
        }
    }
}

impl RawDriver {
    /// Wraps a connected socket.
    pub fn new(peer: Peer, sock: TcpStream) -> RawDriver {
        RawDriver {
            peer,
            sock,
            log: Vec::new(),
            events: Vec::new(),
            rx_log: Vec::new(),
            eof: false,
        }
    }

    /// Drives I/O and timers until `done` is true, the connection closes, or `max` passes.
    pub async fn run_until(&mut self, max: Duration, done: impl Fn(&RawDriver) -> bool) -> bool {
        let end = Instant::now() + max;
        loop {
            while let Some(b) = self.peer.poll_transmit() {
                let mut v = b.to_vec();
                split_frames(&mut v, Dir::Out, &mut self.log);
                let _ = self.sock.write_all(&b).await;
            }
            while let Some(e) = self.peer.poll_event() {
                self.events.push(e);
            }
            if done(self) {
                return true;
            }
            if self.peer.is_closed() || self.eof || Instant::now() >= end {
                return done(self);
            }
            let wake = self.peer.poll_timeout().map_or(end, |t| t.min(end));
            let wait = wake.saturating_duration_since(Instant::now());
            let mut buf = [0u8; 65536];
            match tokio::time::timeout(wait, self.sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.eof = true;
                    self.peer.handle_transport_closed();
                }
                Ok(Ok(n)) => {
                    self.rx_log.extend_from_slice(&buf[..n]);
                    split_frames(&mut self.rx_log, Dir::In, &mut self.log);
                    self.peer.handle_bytes(Instant::now(), &buf[..n]);
                }
                Err(_) => self.peer.handle_timeout(Instant::now()),
            }
        }
    }

    /// Whether a message with this direction, command code and R bit was logged.
    pub fn saw(&self, dir: Dir, code: u32, request: bool) -> bool {
        self.log
            .iter()
            .any(|(d, m)| *d == dir && m.code == code && m.is_request() == request)
    }

    /// Short transcript for failure messages.
    pub fn transcript(&self) -> String {
        self.log
            .iter()
            .map(|(d, m)| format!("{d:?} {} {:?}\n", m.name(), m.result()))
            .collect()
    }
}
