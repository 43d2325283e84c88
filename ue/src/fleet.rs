//! Many UEs at once: run a script of steps (register, re-register, deregister) on N UEs
//! concurrently over one [`UeHost`] and report each UE's timings, the ladder of events and
//! the `esp_sa` keys of every set installed. The end-to-end tests against `pcscf` + `hss`
//! and `imslab demo` call [`register_many`].
//!
//! ```no_run
//! # async fn e2e() -> Result<(), ue::UeHostError> {
//! use ue::{numbered, register_many, IoConfig, IsimKeys, Step, UeConfig};
//! let k = [0x46; 16];
//! let opc = [0xcd; 16];
//! let domain = "ims.mnc001.mcc001.3gppnetwork.org";
//! let template = UeConfig::new(
//!     "x", "sip:x@x", domain, IsimKeys::new(k, opc),
//!     "127.0.0.2".parse().unwrap(), "127.0.0.1:5060".parse().unwrap(),
//! );
//! // UE i: 127.0.0.(2+i), IMPI 00101000000000i@domain (as provisioned in the HSS)
//! let ues = numbered(&template, 2, |i| {
//!     let impi = format!("00101000000000{}@{domain}", i + 1);
//!     let impu = format!("sip:00101000000000{}@{domain}", i + 1);
//!     (impi, impu, IsimKeys::new(k, opc))
//! });
//! let report = register_many(
//!     IoConfig::default(),
//!     ues,
//!     &[Step::Register, Step::Reregister, Step::Deregister],
//! )
//! .await?;
//! print!("{}", report.ladder());
//! assert!(report.all_ok());
//! for u in &report.ues {
//!     println!("{}: {:?} (rereg {:?}, dereg {:?}), SAs left {}",
//!         u.impu, u.register, u.reregister, u.deregister, u.sa_sets_left);
//! }
//! # Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::UeConfig;
use crate::event::EventKind;
use crate::shell::{HostEvent, IoConfig, UeHandle, UeHost, UeHostError};
use crate::summary::ladder_line;

/// One step of the script every UE runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Initial registration.
    Register,
    /// Re-registration.
    Reregister,
    /// Deregistration.
    Deregister,
    /// Wait (e.g. to let the old SA set's grace period pass).
    Pause(Duration),
    /// Wait until the registration expires without a refresh (UEs configured with
    /// `auto_refresh = false`), then for the SA grace period.
    AwaitExpiry,
    /// Call `to` (an IMPU or tel: URI), wait until answered, hold it, hang up (BYE) and
    /// wait for the end. The callee answers by its own [`crate::CallConfig`].
    Call {
        /// Callee.
        to: String,
        /// How long the call stays up.
        hold: Duration,
    },
    /// Send a MESSAGE (RFC 3428) to `to`; a 2xx is success.
    Message {
        /// Recipient.
        to: String,
        /// Its text.
        text: String,
    },
    /// Wait until every UE of the run has reached its own `Sync` of the same number (the
    /// scripts must have as many each): callers wait for callees to be registered, and
    /// nobody deregisters during somebody else's call.
    Sync,
}

/// Why a step name does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepParseError {
    /// `pause:` without a number of milliseconds.
    #[error("bad pause {0:?}: use pause:<milliseconds>")]
    Pause(String),
    /// No such step.
    #[error("unknown step {0:?} (register, reregister, deregister, expire, pause:<ms>)")]
    Unknown(String),
}

/// Why a UE's script stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScriptError {
    /// A step failed (the script stops there).
    #[error("{step:?}: {error}")]
    Step {
        /// the step
        step: Step,
        /// why (shared: reports are cloned, host errors are not `Clone`)
        error: Arc<UeHostError>,
    },
    /// The UE's task panicked.
    #[error("UE task panicked: {0}")]
    Panicked(Arc<tokio::task::JoinError>),
    /// Another UE did not reach the same [`Step::Sync`] in time (it failed earlier).
    #[error("the other UEs did not reach sync point {0} within {SYNC_WAIT:?}")]
    SyncTimeout(usize),
}

/// How long a [`Step::Sync`] waits for the other UEs.
pub const SYNC_WAIT: Duration = Duration::from_secs(60);

impl std::str::FromStr for Step {
    type Err = StepParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "register" | "reg" => Ok(Step::Register),
            "reregister" | "rereg" | "re-register" => Ok(Step::Reregister),
            "deregister" | "dereg" | "de-register" => Ok(Step::Deregister),
            "expire" | "await-expiry" => Ok(Step::AwaitExpiry),
            _ => {
                if let Some(ms) = s.strip_prefix("pause").and_then(|r| r.strip_prefix(':')) {
                    let ms: u64 = ms
                        .trim_end_matches("ms")
                        .parse()
                        .map_err(|_| StepParseError::Pause(s.clone()))?;
                    return Ok(Step::Pause(Duration::from_millis(ms)));
                }
                Err(StepParseError::Unknown(s))
            }
        }
    }
}

/// What one UE did.
#[derive(Debug, Clone, Default)]
pub struct UeTimings {
    /// IMPU
    pub impu: String,
    /// Initial registration: REGISTER … 200 OK.
    pub register: Option<Duration>,
    /// Each re-registration.
    pub reregister: Vec<Duration>,
    /// Deregistration.
    pub deregister: Option<Duration>,
    /// [`Step::AwaitExpiry`]: from the last 200 OK to the UE dropping the binding.
    pub expired_after: Option<Duration>,
    /// REGISTER transactions of the initial registration (2, or 3 after a resync).
    pub register_round_trips: u32,
    /// Whether the registration's 200 OK came through an SA.
    pub protected: bool,
    /// Service-Route of the last 200 OK.
    pub service_route: Vec<String>,
    /// P-Associated-URI of the last 200 OK.
    pub associated_uris: Vec<String>,
    /// [`Step::Call`]s: from the INVITE to the call being answered.
    pub calls: Vec<Duration>,
    /// [`Step::Message`]s: from the MESSAGE to its 2xx.
    pub messages: Vec<Duration>,
    /// The first failure, with its step (the script stops there).
    pub error: Option<ScriptError>,
    /// SA sets the UE still held at the end (0 after a deregistration and its grace).
    pub sa_sets_left: usize,
}

/// The outcome of a fleet run.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// "kernel", "userspace" or "off".
    pub backend: &'static str,
    /// Per UE, in the order given.
    pub ues: Vec<UeTimings>,
    /// From the first command to the last step's end.
    pub wall: Duration,
    /// Every event of every UE, in arrival order.
    pub events: Vec<HostEvent>,
    /// Wireshark `esp_sa` UAT of every set installed during the run.
    pub esp_sa: String,
    /// When the run started (origin of the ladder's times).
    pub started: Instant,
}

impl FleetReport {
    /// True if every UE ran its whole script.
    pub fn all_ok(&self) -> bool {
        self.ues.iter().all(|u| u.error.is_none())
    }

    /// The ladder of all events, one line each, times relative to the start.
    pub fn ladder(&self) -> String {
        let mut out = String::new();
        let mut events: Vec<&HostEvent> = self.events.iter().collect();
        // shell notes and core events of one UE interleave by time, not by arrival
        events.sort_by_key(|e| e.event.at);
        for e in events {
            out.push_str(&ladder_line(
                self.started,
                &format!("UE{}", e.ue + 1),
                &e.event,
            ));
            out.push('\n');
        }
        out
    }

    /// Initial registration times of the UEs that registered, sorted.
    pub fn register_times(&self) -> Vec<Duration> {
        let mut v: Vec<Duration> = self.ues.iter().filter_map(|u| u.register).collect();
        v.sort();
        v
    }
}

/// The loopback address of UE number `i` (0-based): 127.0.0.2, 127.0.0.3, … 127.0.1.0, …
/// (127.0.0.1 is left for the P-CSCF).
pub fn loopback_ip(i: usize) -> IpAddr {
    let n = u32::try_from(i).unwrap_or(u32::MAX - 2).saturating_add(2);
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000u32 | (n & 0x00ff_ffff)))
}

/// N configurations from a template: UE `i` gets [`loopback_ip`]`(i)`, the identity and
/// keys `identity(i)` returns (IMPI, IMPU, keys), and SPIs that no other UE of the fleet
/// uses in its first 1024 generations (all UEs of a host share one IPsec endpoint, where an
/// inbound SPI must be unique).
pub fn numbered(
    template: &UeConfig,
    n: usize,
    identity: impl Fn(usize) -> (String, String, crate::config::IsimKeys),
) -> Vec<UeConfig> {
    (0..n)
        .map(|i| {
            let (impi, impu, keys) = identity(i);
            let mut c = template.clone();
            c.impi = impi;
            c.impu = impu;
            c.keys = keys;
            c.local_ip = loopback_ip(i);
            let base = 0x0100_0000u32.wrapping_add(u32::try_from(i).unwrap_or(0) << 12);
            c.security.spi_uc = base;
            c.security.spi_us = base + 0x800;
            c
        })
        .collect()
}

/// The rendezvous of [`Step::Sync`]: a barrier with a timeout, so one UE that failed
/// never leaves the others waiting forever.
struct Syncs {
    barrier: tokio::sync::Barrier,
}

/// [`Step::Call`]: call `to`, wait for the answer, hold, hang up, wait for the end;
/// the set-up time (INVITE to answered).
pub async fn call(h: &UeHandle, to: &str, hold: Duration) -> Result<Duration, UeHostError> {
    let t0 = Instant::now();
    let c = h.call(to).await?;
    h.wait_answered(c).await?;
    let took = t0.elapsed();
    tokio::time::sleep(hold).await;
    h.hangup(c).await?;
    match h.wait_ended(c).await? {
        crate::CallEnd::HungUp { .. } => Ok(took),
        other => Err(UeHostError::CallEnded(other)),
    }
}

async fn script(h: UeHandle, steps: Vec<Step>, grace: Duration, syncs: Arc<Syncs>) -> UeTimings {
    let mut t = UeTimings {
        impu: h.name().to_string(),
        ..UeTimings::default()
    };
    let mut last_ok: Option<Instant> = None;
    let mut sync_no = 0;
    for step in steps {
        let r = match &step {
            Step::Call { to, hold } => call(&h, to, *hold).await.map(|d| t.calls.push(d)),
            Step::Message { to, text } => {
                let t0 = Instant::now();
                match h.send_message(to, text).await {
                    Ok(code) if (200..300).contains(&code) => {
                        t.messages.push(t0.elapsed());
                        Ok(())
                    }
                    Ok(code) => Err(UeHostError::MessageRefused(code)),
                    Err(e) => Err(e),
                }
            }
            Step::Sync => {
                sync_no += 1;
                if tokio::time::timeout(SYNC_WAIT, syncs.barrier.wait())
                    .await
                    .is_err()
                {
                    t.error = Some(ScriptError::SyncTimeout(sync_no));
                    break;
                }
                Ok(())
            }
            Step::Register => h.register().await.map(|r| {
                last_ok = Some(Instant::now());
                t.register = Some(r.took);
                t.register_round_trips = r.round_trips;
                t.protected = r.protected;
                t.service_route = r.service_route;
                t.associated_uris = r.associated_uris;
            }),
            Step::Reregister => h.reregister().await.map(|r| {
                last_ok = Some(Instant::now());
                t.reregister.push(r.took);
                t.protected = r.protected;
                t.service_route = r.service_route;
                t.associated_uris = r.associated_uris;
            }),
            Step::Deregister => h.deregister().await.map(|d| t.deregister = Some(d)),
            Step::Pause(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            Step::AwaitExpiry => match h.await_expiry().await {
                Ok(at) => {
                    t.expired_after = last_ok.map(|l| at.saturating_duration_since(l));
                    tokio::time::sleep(grace + Duration::from_millis(200)).await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = r {
            t.error = Some(ScriptError::Step {
                step,
                error: Arc::new(e),
            });
            break;
        }
    }
    if let Ok(s) = h.snapshot().await {
        t.sa_sets_left = s.sa_sets;
    }
    t
}

/// Runs `steps` on every UE of `ues` concurrently (one [`UeHost`] on `io`) and reports:
/// [`run_scripts`] with the same script for all.
pub async fn register_many(
    io: IoConfig,
    ues: Vec<UeConfig>,
    steps: &[Step],
) -> Result<FleetReport, UeHostError> {
    let scripts = vec![steps.to_vec(); ues.len()];
    run_scripts(io, ues, scripts).await
}

/// Runs script `scripts[i]` on UE `ues[i]`, all concurrently (one [`UeHost`] on `io`), and
/// reports.
///
/// Give each UE its own `local_ip` ([`loopback_ip`]). If the script ends with
/// [`Step::Deregister`], the run also waits for the UEs' SA grace period so that
/// `sa_sets_left` shows whether everything was deleted. Failures of single UEs are in
/// their [`UeTimings::error`]; `Err` means the host could not start or a UE could not be
/// added.
pub async fn run_scripts(
    io: IoConfig,
    ues: Vec<UeConfig>,
    scripts: Vec<Vec<Step>>,
) -> Result<FleetReport, UeHostError> {
    let grace = ues
        .iter()
        .map(|u| u.sa_grace)
        .max()
        .unwrap_or(Duration::ZERO);
    let host = UeHost::start(io).await?;
    let mut events_rx = host.take_events();
    let collector = tokio::spawn(async move {
        let mut v = Vec::new();
        if let Some(rx) = events_rx.as_mut() {
            while let Some(e) = rx.recv().await {
                v.push(e);
            }
        }
        v
    });
    let mut handles = Vec::new();
    for cfg in ues {
        match host.add(cfg).await {
            Ok(h) => handles.push(h),
            Err(e) => {
                host.shutdown().await;
                return Err(e);
            }
        }
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    let syncs = Arc::new(Syncs {
        barrier: tokio::sync::Barrier::new(handles.len()),
    });
    for (h, steps) in handles.into_iter().zip(scripts) {
        let mut s = steps.clone();
        if steps.last() == Some(&Step::Deregister) {
            s.push(Step::Pause(grace + Duration::from_millis(200)));
        }
        tasks.push(tokio::spawn(script(h, s, grace, syncs.clone())));
    }
    let mut timings = Vec::new();
    for t in tasks {
        timings.push(t.await.unwrap_or_else(|e| UeTimings {
            error: Some(ScriptError::Panicked(Arc::new(e))),
            ..UeTimings::default()
        }));
    }
    let wall = started.elapsed();
    let esp_sa = host.io().esp_sa_history();
    let backend = host.io().backend_name();
    host.shutdown().await;
    drop(host);
    let events = collector.await.unwrap_or_default();
    Ok(FleetReport {
        backend,
        ues: timings,
        wall,
        events,
        esp_sa,
        started,
    })
}

/// Counts events of a kind in a report (tests: "every UE resynced once").
pub fn count_events(report: &FleetReport, pred: impl Fn(&EventKind) -> bool) -> usize {
    report.events.iter().filter(|e| pred(&e.event.kind)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_ips_skip_the_pcscf() {
        assert_eq!("Rereg".parse::<Step>(), Ok(Step::Reregister));
        assert_eq!(
            "pause:250".parse::<Step>(),
            Ok(Step::Pause(Duration::from_millis(250)))
        );
        assert!("later".parse::<Step>().is_err());
        assert_eq!(loopback_ip(0).to_string(), "127.0.0.2");
        assert_eq!(loopback_ip(254).to_string(), "127.0.1.0");
    }

    #[test]
    fn numbered_configs_have_distinct_addresses_and_spis() {
        use crate::{IsimKeys, UeConfig};
        let t = UeConfig::new(
            "x@ims.test",
            "sip:x@ims.test",
            "ims.test",
            IsimKeys::new([1; 16], [2; 16]),
            loopback_ip(0),
            "127.0.0.1:5060".parse().unwrap(),
        );
        let v = numbered(&t, 300, |i| {
            (
                format!("u{i}@ims.test"),
                format!("sip:u{i}@ims.test"),
                IsimKeys::new([i as u8; 16], [2; 16]),
            )
        });
        let mut spis = std::collections::HashSet::new();
        let mut ips = std::collections::HashSet::new();
        for c in &v {
            c.validate().unwrap();
            assert!(ips.insert(c.local_ip));
            for g in [0u64, 1, 500, 1023] {
                let l = c.security.generation(g);
                assert!(spis.insert(l.spi_uc) && spis.insert(l.spi_us));
            }
        }
    }
}
