//! # `appserver notify-agent`: caller-ID pop-ups (and speech) on a Linux desktop
//!
//! Runs on the desktop, not on the server. It learns of calls in one of two ways
//! (`source`):
//!
//! - `datagram` (default): binds `listen` (default `0.0.0.0:4711`, the datagram sink's
//!   default port) and reads the [`crate::sinks::json`] events; with `multicast_group`
//!   set it joins that IPv4 group (on `multicast_interface`, default any). A datagram
//!   that is not a version-1 event is logged and dropped; the same call's ring seen
//!   twice (broadcast on two interfaces) pops up once.
//! - `ncid`: connects to an NCID server (`ncid_server`, default `127.0.0.1:3333` — ours
//!   or any other) and reads its `CID:` lines with [`crate::sinks::ncid::parse_line`];
//!   lines longer than [`crate::sinks::ncid::MAX_LINE`] are skipped. A lost connection
//!   is retried with backoff (1 s doubling to 60 s).
//!
//! For each ring it sends a freedesktop notification over the session D-Bus
//! (`org.freedesktop.Notifications.Notify` via notify-rust/zbus): summary
//! `Call from NAME`, body the number ([`Ring::summary`], [`Ring::body`]). Without a
//! notification server the call fails; that is logged and the agent goes on. With
//! `speak = true` it also runs `speak_command` (default `espeak-ng "Call from NAME"`,
//! `{text}` replaced in every argument) — at most one at a time (a ring while one is
//! speaking is not spoken), killed after `speak_timeout_ms`. Neither the notification nor
//! the speech ever blocks the receive loop: each runs in its own task.
//!
//! Configuration: an `[agent]` section ([`AgentConfig`], [`EXAMPLE`]) in the agent's own
//! small TOML file; the lead's `main.rs` reads it and calls [`run`].

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

use crate::sinks::json::{self, WireEvent};
use crate::sinks::ncid::{self, NcidLine};
use crate::sinks::{backoff, Shutdown, Subscription};

/// Where the agent hears of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AgentSource {
    /// JSON datagrams from the datagram sink.
    #[default]
    Datagram,
    /// An NCID server's `CID:` lines.
    Ncid,
}

/// The `[agent]` section of the notify-agent's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// `datagram` or `ncid`. Default `datagram` (no server address to configure: the
    /// sink broadcasts).
    pub source: AgentSource,
    /// Datagram: where to listen. Default `0.0.0.0:4711` (the datagram sink's port).
    pub listen: String,
    /// Datagram: an IPv4 multicast group to join. Default empty: none (broadcast or
    /// unicast).
    pub multicast_group: String,
    /// Datagram: the IPv4 address of the interface to join on. Default empty: any.
    pub multicast_interface: String,
    /// NCID: the server. Default `127.0.0.1:3333`.
    pub ncid_server: String,
    /// Show a desktop notification per ring. Default `true` (the point of the agent).
    pub notify: bool,
    /// Speak `Call from NAME`. Default `false` (a desktop may be in a shared room).
    pub speak: bool,
    /// The speech command; `{text}` in any argument is replaced. Default
    /// `["espeak-ng", "{text}"]`.
    pub speak_command: Vec<String>,
    /// A speech still running after this many milliseconds is killed. Default 15000.
    pub speak_timeout_ms: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            source: AgentSource::Datagram,
            listen: "0.0.0.0:4711".into(),
            multicast_group: String::new(),
            multicast_interface: String::new(),
            ncid_server: "127.0.0.1:3333".into(),
            notify: true,
            speak: false,
            speak_command: vec!["espeak-ng".into(), "{text}".into()],
            speak_timeout_ms: 15_000,
        }
    }
}

/// The `[agent]` section as the example file shows it.
pub const EXAMPLE: &str = r#"[agent]
# "datagram" (JSON from the server's [datagram] sink) or "ncid" (an NCID server).
source = "datagram"
listen = "0.0.0.0:4711"
# Join an IPv4 multicast group (e.g. "239.255.47.11") on an interface address; empty = no.
multicast_group = ""
multicast_interface = ""
ncid_server = "127.0.0.1:3333"
# Desktop notification per ring (org.freedesktop.Notifications on the session bus).
notify = true
# Speak "Call from NAME"; {text} is replaced in each argument.
speak = false
speak_command = ["espeak-ng", "{text}"]
speak_timeout_ms = 15000
"#;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configured value is wrong.
    #[error("[agent] {key} = {value:?}: {reason}")]
    Config {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The datagram socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A ringing call, as the agent shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// The caller's name, if known.
    pub name: Option<String>,
    /// The caller's number, if shown.
    pub number: Option<String>,
    /// Withheld.
    pub anonymous: bool,
}

impl Ring {
    /// From a JSON event: `Some` for `ring` only.
    pub fn from_json(w: &WireEvent) -> Option<Ring> {
        (w.event == "ring").then(|| Ring {
            name: w.caller.name.clone(),
            number: w.caller.number.clone(),
            anonymous: w.caller.anonymous,
        })
    }

    /// From an NCID line: `Some` for `CID:` only (NCID's `PRIVATE`, `NO NAME`,
    /// `OUT-OF-AREA` words read as what they mean).
    pub fn from_ncid(l: &NcidLine) -> Option<Ring> {
        let NcidLine::Cid(f) = l else { return None };
        Some(Ring {
            name: f
                .real_name()
                .filter(|n| *n != "PRIVATE")
                .map(str::to_string),
            number: f.real_number().map(str::to_string),
            anonymous: f.number == "PRIVATE",
        })
    }

    /// The name to show: the name, else the number, else `Anonymous`/`Unknown caller`.
    pub fn who(&self) -> String {
        match (&self.name, &self.number) {
            (Some(n), _) => n.clone(),
            (None, Some(num)) => num.clone(),
            (None, None) if self.anonymous => "Anonymous".into(),
            (None, None) => "Unknown caller".into(),
        }
    }

    /// The notification summary (and the spoken text): `Call from NAME`.
    pub fn summary(&self) -> String {
        format!("Call from {}", self.who())
    }

    /// The notification body: the number, or why there is none.
    pub fn body(&self) -> String {
        match &self.number {
            Some(n) => n.clone(),
            None if self.anonymous => "Number withheld".into(),
            None => "No number".into(),
        }
    }
}

/// The speech command with `{text}` filled in every argument.
pub fn speak_argv(template: &[String], text: &str) -> Vec<String> {
    template.iter().map(|a| a.replace("{text}", text)).collect()
}

/// Calls whose ring was shown recently, so a duplicate datagram does not pop up twice.
#[derive(Debug, Default)]
struct Recent(VecDeque<String>);

impl Recent {
    const KEEP: usize = 32;

    /// `true` the first time a call id is seen (among the last [`Self::KEEP`]).
    fn first(&mut self, call_id: &str) -> bool {
        if self.0.iter().any(|c| c == call_id) {
            return false;
        }
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back(call_id.to_string());
        true
    }
}

/// The agent's counters (for logs and tests).
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Rings received.
    pub rings: AtomicU64,
    /// Notifications the notification server accepted.
    pub notified: AtomicU64,
    /// Notifications that failed (no server, bus unreachable, timeout).
    pub notify_errors: AtomicU64,
    /// Speech commands that ran to a successful exit.
    pub spoken: AtomicU64,
    /// Speech commands that failed, timed out or were skipped while one ran.
    pub speak_errors: AtomicU64,
    /// Inputs that could not be read (bad JSON, bad NCID lines).
    pub bad_input: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A running agent.
#[derive(Debug)]
pub struct AgentHandle {
    /// The receive loop; ends on shutdown.
    pub task: tokio::task::JoinHandle<()>,
    /// Its counters.
    pub stats: Arc<AgentStats>,
    /// The datagram socket's address (datagram source only).
    pub local_addr: Option<SocketAddr>,
}

/// Runs the agent until `shutdown`. What `main.rs` calls for `appserver notify-agent`.
pub async fn run(cfg: AgentConfig, shutdown: Shutdown) -> Result<(), AgentError> {
    let h = spawn(cfg, shutdown).await?;
    // A panic in the loop is a bug; report it as the task's end rather than hide it.
    if let Err(e) = h.task.await {
        tracing::error!(error = %e, "notify-agent loop failed");
    }
    Ok(())
}

/// Starts the agent's receive loop (the datagram socket is bound before returning).
pub async fn spawn(cfg: AgentConfig, shutdown: Shutdown) -> Result<AgentHandle, AgentError> {
    let stats = Arc::new(AgentStats::default());
    let shower = Shower {
        cfg: Arc::new(cfg.clone()),
        stats: stats.clone(),
        speaking: Arc::new(AtomicBool::new(false)),
    };
    match cfg.source {
        AgentSource::Datagram => {
            let sock = bind_datagram(&cfg)?;
            let local = sock.local_addr().ok();
            let task = tokio::spawn(datagram_loop(sock, shower, shutdown));
            Ok(AgentHandle {
                task,
                stats,
                local_addr: local,
            })
        }
        AgentSource::Ncid => {
            let server = cfg.ncid_server.clone();
            let task = tokio::spawn(ncid_loop(server, shower, shutdown));
            Ok(AgentHandle {
                task,
                stats,
                local_addr: None,
            })
        }
    }
}

fn config_err(key: &'static str, value: &str, reason: impl ToString) -> AgentError {
    AgentError::Config {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn bind_datagram(cfg: &AgentConfig) -> Result<UdpSocket, AgentError> {
    let listen: SocketAddr = cfg
        .listen
        .parse()
        .map_err(|e| config_err("listen", &cfg.listen, e))?;
    let err = |source| AgentError::Bind {
        addr: cfg.listen.clone(),
        source,
    };
    let sock = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(err)?;
    // Several agents on one machine (two users) may each want the broadcast.
    sock.set_reuse_address(true).map_err(err)?;
    sock.bind(&listen.into()).map_err(err)?;
    if !cfg.multicast_group.is_empty() {
        let group: Ipv4Addr = cfg
            .multicast_group
            .parse()
            .map_err(|e| config_err("multicast_group", &cfg.multicast_group, e))?;
        if !group.is_multicast() {
            return Err(config_err(
                "multicast_group",
                &cfg.multicast_group,
                "not a multicast address",
            ));
        }
        let iface: Ipv4Addr = if cfg.multicast_interface.is_empty() {
            Ipv4Addr::UNSPECIFIED
        } else {
            cfg.multicast_interface
                .parse()
                .map_err(|e| config_err("multicast_interface", &cfg.multicast_interface, e))?
        };
        sock.join_multicast_v4(&group, &iface).map_err(err)?;
    }
    sock.set_nonblocking(true).map_err(err)?;
    UdpSocket::from_std(sock.into()).map_err(err)
}

async fn datagram_loop(sock: UdpSocket, shower: Shower, mut shutdown: Shutdown) {
    let mut buf = vec![0u8; 65_536];
    let mut recent = Recent::default();
    loop {
        let (n, from) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "datagram receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = Subscription::stopped(&mut shutdown) => return,
        };
        match json::decode(&buf[..n]) {
            Ok(w) => {
                if let Some(ring) = Ring::from_json(&w) {
                    if recent.first(&w.call_id) {
                        shower.show(ring);
                    }
                }
            }
            Err(e) => {
                inc(&shower.stats.bad_input);
                tracing::info!(%from, error = %e, "ignored a datagram");
            }
        }
    }
}

async fn ncid_loop(server: String, shower: Shower, mut shutdown: Shutdown) {
    let mut failures = 0u32;
    loop {
        let res = tokio::select! {
            r = ncid_session(&server, &shower) => r,
            _ = Subscription::stopped(&mut shutdown) => return,
        };
        match res {
            Ok(()) => {
                tracing::info!(%server, "NCID server closed the connection");
                failures = 0;
            }
            Err(e) => tracing::warn!(%server, error = %e, "NCID connection failed"),
        }
        let pause = backoff(failures, Duration::from_secs(1), Duration::from_secs(60));
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = Subscription::stopped(&mut shutdown) => return,
        }
    }
}

/// One connection to an NCID server, until it closes.
async fn ncid_session(server: &str, shower: &Shower) -> std::io::Result<()> {
    let sock = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(server))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tracing::info!(%server, "connected to NCID server");
    let mut rd = BufReader::new(sock);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // Read at most MAX_LINE + 1 bytes of a line: a server that never sends a newline
        // cannot grow our buffer.
        let n = (&mut rd)
            .take(ncid::MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && line.len() > ncid::MAX_LINE {
            inc(&shower.stats.bad_input);
            tracing::warn!("NCID line too long; skipped");
            skip_rest_of_line(&mut rd).await?;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        match ncid::parse_line(&text) {
            Ok(l) => {
                if let Some(ring) = Ring::from_ncid(&l) {
                    shower.show(ring);
                }
            }
            Err(e) => {
                inc(&shower.stats.bad_input);
                tracing::info!(error = %e, line = %text.trim_end(), "ignored an NCID line");
            }
        }
    }
}

async fn skip_rest_of_line(rd: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    loop {
        let buf = rd.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            rd.consume(i + 1);
            return Ok(());
        }
        let n = buf.len();
        rd.consume(n);
    }
}

/// Shows rings: notification and speech, each in its own task.
#[derive(Clone)]
struct Shower {
    cfg: Arc<AgentConfig>,
    stats: Arc<AgentStats>,
    speaking: Arc<AtomicBool>,
}

/// A notification that takes longer than this (a hung bus) is given up.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

impl Shower {
    fn show(&self, ring: Ring) {
        inc(&self.stats.rings);
        let summary = ring.summary();
        tracing::info!(%summary, body = %ring.body(), "ring");
        if self.cfg.notify {
            let stats = self.stats.clone();
            let body = ring.body();
            let summary = summary.clone();
            tokio::spawn(async move {
                let mut n = notify_rust::Notification::new();
                n.appname("IMS Lab Core")
                    .summary(&summary)
                    .body(&body)
                    .icon("call-start");
                match tokio::time::timeout(NOTIFY_TIMEOUT, n.show_async()).await {
                    Ok(Ok(_)) => inc(&stats.notified),
                    Ok(Err(e)) => {
                        inc(&stats.notify_errors);
                        tracing::warn!(error = %e, "desktop notification failed");
                    }
                    Err(_) => {
                        inc(&stats.notify_errors);
                        tracing::warn!("desktop notification timed out");
                    }
                }
            });
        }
        if self.cfg.speak {
            self.speak(summary);
        }
    }

    fn speak(&self, text: String) {
        let argv = speak_argv(&self.cfg.speak_command, &text);
        let Some((prog, args)) = argv.split_first() else {
            inc(&self.stats.speak_errors);
            tracing::warn!("speak_command is empty");
            return;
        };
        if self.speaking.swap(true, Ordering::AcqRel) {
            inc(&self.stats.speak_errors);
            tracing::info!("still speaking the previous ring; this one is not spoken");
            return;
        }
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let (stats, speaking) = (self.stats.clone(), self.speaking.clone());
        let limit = Duration::from_millis(self.cfg.speak_timeout_ms);
        tokio::spawn(async move {
            let outcome = match cmd.spawn() {
                Ok(mut child) => match tokio::time::timeout(limit, child.wait()).await {
                    Ok(Ok(st)) if st.success() => Ok(()),
                    Ok(Ok(st)) => Err(format!("exited with {st}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => {
                        let _ = child.kill().await;
                        Err(format!("killed after {limit:?}"))
                    }
                },
                Err(e) => Err(format!("cannot start: {e}")),
            };
            match outcome {
                Ok(()) => inc(&stats.spoken),
                Err(e) => {
                    inc(&stats.speak_errors);
                    tracing::warn!(error = %e, "speech command failed");
                }
            }
            speaking.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CallEventKind;
    use crate::sinks::testutil::{anonymous, event};

    #[test]
    fn ring_texts_table() {
        let cases = [
            (
                Some("Alice"),
                Some("+49301"),
                false,
                "Call from Alice",
                "+49301",
            ),
            (None, Some("+49301"), false, "Call from +49301", "+49301"),
            (None, None, true, "Call from Anonymous", "Number withheld"),
            (
                Some("Anonymous"),
                None,
                true,
                "Call from Anonymous",
                "Number withheld",
            ),
            (None, None, false, "Call from Unknown caller", "No number"),
        ];
        for (name, number, anonymous, summary, body) in cases {
            let r = Ring {
                name: name.map(Into::into),
                number: number.map(Into::into),
                anonymous,
            };
            assert_eq!((r.summary().as_str(), r.body().as_str()), (summary, body));
        }
    }

    #[test]
    fn rings_from_json_and_ncid_agree() {
        let utc = chrono::Utc;
        for ev in [
            event(CallEventKind::Ring, 0),
            anonymous(CallEventKind::Ring, 0),
        ] {
            let from_json = Ring::from_json(&json::to_wire(&ev, &utc)).unwrap();
            let line = ncid::lines(&ev, "", &utc).unwrap();
            let from_ncid = Ring::from_ncid(&ncid::parse_line(&line).unwrap()).unwrap();
            assert_eq!(from_json.summary(), from_ncid.summary());
            assert_eq!(from_json.body(), from_ncid.body());
        }
        let connect = json::to_wire(&event(CallEventKind::Connect, 1), &utc);
        assert_eq!(Ring::from_json(&connect), None);
        let blk = ncid::lines(&event(CallEventKind::Blocked, 0), "", &utc).unwrap();
        assert_eq!(Ring::from_ncid(&ncid::parse_line(&blk).unwrap()), None);
    }

    #[test]
    fn speak_argv_fills_every_argument() {
        let t: Vec<String> = ["espeak-ng", "-w", "/tmp/x.wav", "--", "{text}"]
            .map(String::from)
            .into();
        assert_eq!(
            speak_argv(&t, "Call from Alice"),
            ["espeak-ng", "-w", "/tmp/x.wav", "--", "Call from Alice"]
        );
    }

    #[test]
    fn recent_remembers_a_bounded_number_of_calls() {
        let mut r = Recent::default();
        assert!(r.first("a"));
        assert!(!r.first("a"));
        for i in 0..Recent::KEEP {
            assert!(r.first(&i.to_string()));
        }
        assert!(r.first("a"), "forgotten after KEEP newer calls");
    }

    #[test]
    fn example_is_the_defaults() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct File {
            agent: AgentConfig,
        }
        opskit::config::check_example(EXAMPLE, &File::default()).unwrap();
    }

    #[tokio::test]
    async fn bad_multicast_settings_are_config_errors() {
        let (_s, sd) = tokio::sync::watch::channel(false);
        let cfg = AgentConfig {
            listen: "127.0.0.1:0".into(),
            multicast_group: "10.0.0.1".into(),
            ..Default::default()
        };
        assert!(matches!(
            spawn(cfg, sd).await,
            Err(AgentError::Config {
                key: "multicast_group",
                ..
            })
        ));
    }
}
