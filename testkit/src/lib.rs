//! `testkit`: the one place for test fixtures that drive **real peers** on
//! this machine, so no crate re-implements them. It is a dev-dependency of
//! every crate (`testkit.workspace = true` under `[dev-dependencies]`), blocking
//! (std only, no tokio): call it from plain `#[test]`s, or from async tests via
//! `spawn_blocking` if a fixture call would block a runtime thread for long.
//!
//! # Skip-or-fail policy ([`policy`])
//! Every fixture that needs a binary, root or namespaces asks first:
//! ```no_run
//! #[test]
//! fn registers_through_kamailio() {
//!     let Some(_k) = testkit::require_bin("kamailio") else { return };
//!     if !testkit::require_root() { return; }
//!     // ...
//! }
//! ```
//! Missing → with `CI=true` the call panics (the test fails with a clear
//! message); otherwise it prints a loud `SKIPPED: ...` on stderr and the test
//! returns early. Fixture constructors (`Kamailio::start`, `Sipp::...`) do
//! **not** apply the policy themselves; they return [`Error`]. Ask first.
//!
//! # Generic helpers
//! - [`ChildGuard`]: a spawned child in its own process group with its output
//!   in a log file; `Drop` kills the group (SIGTERM, then SIGKILL) and reaps it.
//! - [`TestDir`]: a temp dir removed on drop (`TESTKIT_KEEP=1` keeps it and
//!   prints the path, for post-mortems).
//! - [`free_port`]/[`free_ports`]: loopback ports free for TCP and UDP, never
//!   handed out twice in one process.
//! - [`wait_for_tcp`], [`wait_until`], [`wait_for_file_line`],
//!   [`ChildGuard::wait_for_log`]: every wait is bounded and says what it
//!   waited for, with the peer's log tail, when it times out.
//!
//! # Peers
//! | module | peer (Debian package) | what it gives a test |
//! |---|---|---|
//! | [`kamailio`] | `kamailio` + `kamailio-ims-modules` 5.6.3 | an S-CSCF (cdp, ims_auth, ims_registrar_scscf) on a free loopback port, registering UEs with AKAv1-MD5 against *our* HSS over Cx/TCP (MAR, resync MAR, SAR; re-registration, Expires: 0, Path); readiness probe that tells when the Cx peer is Open |
//! | [`sipp`] | `sip-tester` (SIPp 3.6.1) | bounded `-m 1` runs of bundled scenarios (AKAv1-MD5 register, re-register, deregister, OPTIONS) with logs; the RES-with-0x00 bug workaround |
//! | [`tshark`] | `tshark` 4.0 | capture on `lo` with a port filter; dissect with `-d` decode-as and count malformed packets, Diameter commands, SIP methods/status codes, ESP frames and good/bad ICVs (with `esp_sa` UAT prefs) |
//! | [`freediameter`] | `freediameter` 1.2.1 (`freeDiameterd`) | a base-protocol peer (CER/CEA, DWR/DWA, DPR/DPA) connecting to our Diameter server, no TLS |
//! | [`baresip`] | `baresip-core` 1.0 | a headless SIP phone on a free loopback port: PCMA only, auto-answer, a WAV (a generated tone) as microphone, `sndfile` recordings, hangup/dial over `ctrl_tcp` |
//! | [`browser`] | `chromium` + `chromium-driver` | headless Chromium through ChromeDriver's WebDriver HTTP API: go to a loopback page, type, click, read text, accept a `confirm`, take a PNG screenshot |
//! | [`mosquitto`] | `mosquitto` + `mosquitto-clients` 2.0 | an MQTT broker on a free loopback port; `mosquitto_sub` subscriptions that return what was published |
//! | [`dbus`] | `dbus-daemon` + `dbus-monitor` 1.14 | a private session bus (no activation) and a monitor that records method calls on it |
//! | [`osmo`] | `libosmocore-utils` (`osmo-auc-gen`) | an independent Milenage: vectors and AUTS resync |
//! | [`rtpengine`] | `rtpengine-daemon` 10.5 (userspace, `--table=-1`) | a reference media proxy/transcoder on loopback and an ng-protocol client (offer/answer/delete); an [`rtpload::Engine`] |
//!
//! [`rtpload`] is the engine-agnostic RTP load generator of the media benchmark (N channels, two
//! threads, loss and added delay p50/p99, the engine's CPU).
//!
//! # Example: a SIPp UE registers through Kamailio against your HSS
//! ```no_run
//! use std::time::Duration;
//! use testkit::kamailio::{require_scscf, Kamailio, ScscfConfig};
//! use testkit::sipp::AkaUe;
//!
//! if !require_scscf() || testkit::require_bin("sipp").is_none() { return; }
//! let hss_port: u16 = 3868; // where your HSS listens on 127.0.0.1 (TCP)
//! let mut k = Kamailio::start(ScscfConfig::new(hss_port)).unwrap();
//! k.wait_hss_open(Duration::from_secs(15)).unwrap(); // CER/CEA done
//! let (k_key, op, amf) = ([0x46u8; 16], [0xcdu8; 16], [0x80, 0x00]);
//! let mut ue = AkaUe::new("001010000000001@ims.lab", "sip:001010000000001@ims.lab",
//!                         "ims.lab", k_key, op, amf);
//! let (out, _attempts) = ue.register(k.sip_addr(), 600).unwrap(); // 401 → 200 (MAR, SAR)
//! assert!(out.success, "{}\n{}", out.describe(), k.log());
//! let (out, _) = ue.reregister(k.sip_addr(), 600).unwrap();
//! assert!(out.success, "{}", out.describe());
//! let (out, _) = ue.deregister(k.sip_addr()).unwrap(); // Expires: 0
//! assert!(out.success, "{}", out.describe());
//! ```
//! Wrap the flow in [`tshark::Capture::loopback`] and check
//! [`tshark::dissect`]`(..).malformed == 0` for the "Wireshark dissects it"
//! criterion. `testkit/tests/kamailio.rs` runs exactly this against a small
//! Cx responder, plus the AUTS resync path with a hand-driven UE.
//!
//! Configuration templates live in `testkit/fixtures/` and are embedded with
//! `include_str!`; placeholders are `{{NAME}}` ([`render`]).
//!
//! Everything binds to 127.0.0.1 (or namespaces the caller creates); nothing
//! here ever targets another host.

pub mod baresip;
pub mod browser;
pub mod dbus;
pub mod freediameter;
pub mod kamailio;
pub mod mosquitto;
pub mod osmo;
pub mod policy;
pub mod process;
pub mod rtpengine;
pub mod rtpload;
pub mod sipp;
pub mod tshark;
pub mod wait;

use std::time::Duration;

pub use policy::{
    find_bin, is_ci, is_root, require_bin, require_kamailio_modules, require_netns, require_root,
    skip_or_fail,
};
pub use process::{group_members, pid_alive, ChildGuard, TestDir};
pub use wait::{
    free_port, free_port_on, free_ports, wait_for_file_line, wait_for_tcp, wait_until, LOOPBACK,
};

/// Errors of the fixtures. Messages carry the peer's log tail where there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation (spawn, file, socket) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}\n{detail}")]
    Timeout {
        /// What we waited for.
        what: String,
        /// The bound.
        after: Duration,
        /// Log tail or other context.
        detail: String,
    },
    /// A peer process exited when it should have kept running.
    #[error("{name} exited early ({status})\n{detail}")]
    Exited {
        /// Peer name.
        name: String,
        /// Exit status as text.
        status: String,
        /// Log tail.
        detail: String,
    },
    /// A peer's output could not be parsed.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// What was parsed.
        what: String,
        /// Why it failed, with the offending text.
        detail: String,
    },
    /// A peer ran and reported failure.
    #[error("{what} failed\n{detail}")]
    Failed {
        /// What failed.
        what: String,
        /// Log tail.
        detail: String,
    },
}

impl Error {
    pub(crate) fn io(what: String, source: std::io::Error) -> Self {
        Error::Io { what, source }
    }

    pub(crate) fn parse(what: &str, detail: impl Into<String>) -> Self {
        Error::Parse {
            what: what.to_string(),
            detail: detail.into(),
        }
    }

    /// Appends context (a log tail) to a timeout's detail.
    pub(crate) fn with_detail(self, more: String) -> Self {
        match self {
            Error::Timeout {
                what,
                after,
                detail,
            } => Error::Timeout {
                what,
                after,
                detail: if detail.is_empty() {
                    more
                } else {
                    format!("{detail}\n{more}")
                },
            },
            other => other,
        }
    }
}

/// Fills `{{NAME}}` placeholders in a fixture template. Panics if a
/// placeholder is left unfilled: a template and its filler disagreeing is a
/// bug in testkit, not an input error.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(pos) = out.find("{{") {
        let end = out[pos..].find("}}").map_or(out.len(), |e| pos + e + 2);
        panic!(
            "testkit: unfilled placeholder {} in template",
            &out[pos..end]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_and_detects_leftovers() {
        assert_eq!(
            render("a={{A}} b={{B}}", &[("A", "1".into()), ("B", "x".into())]),
            "a=1 b=x"
        );
        let r = std::panic::catch_unwind(|| render("{{A}} {{C}}", &[("A", "1".into())]));
        assert!(r.is_err());
    }
}
