//! SIPp fixture (Debian `sip-tester`, SIPp 3.6.1).
//!
//! [`Sipp::run`] runs one scenario against a target with `-m 1` (one call),
//! SIPp's own `-timeout` and a hard wall-clock bound on our side, with
//! `-trace_err -trace_msg` into a temp dir, and returns a [`SippOutcome`]
//! (success, exit code, message and error logs).
//!
//! Bundled scenarios (`fixtures/sipp/`):
//! - `aka-register.xml` — one AKAv1-MD5 REGISTER exchange (RFC 3310):
//!   REGISTER → 401 → pause → REGISTER with `[authentication username=IMPI
//!   aka_K=.. aka_OP=.. aka_AMF=..]` → 200. [`AkaUe`] renders it for an
//!   initial registration, a re-registration (same Call-ID, higher CSeq) and a
//!   deregistration (`Expires: 0`).
//! - `options-uac.xml` — OPTIONS → 200 ([`options_scenario`]).
//! - `call-uac.xml`, `call-uas.xml` — a basic call and its answerer
//!   ([`call_uac_scenario`], [`CALL_UAS_SCENARIO`]). The UAC logs each call's INVITE → 200
//!   time in microseconds (SIPp's own response-time statistics count whole
//!   milliseconds); [`SippLoad`] runs either at a fixed rate for a bounded number of
//!   calls and reads those times and SIPp's final counters.
//!
//! SIPp 3.6.1 facts:
//! - AKA keys must be written as `\xNN` bytes in the scenario
//!   (`aka_K=\x46\x5b...`); plain hex is taken as ASCII and fails. Only OP is
//!   supported (no OPc): subscribers for SIPp tests need an OP.
//! - SIPp checks AUTN's MAC but never answers with AUTS (no resync) and does
//!   no IPsec/sec-agree.
//! - **Bug**: when RES contains a 0x00 byte SIPp computes a wrong digest
//!   response (C-string handling; fixed in 3.7.0): the registrar then answers
//!   403. RAND is chosen by the HSS, so a test cannot avoid it; about 3 % of
//!   random RANDs (1-(255/256)^8) hit it. Workaround: [`AkaUe::run_with_retry`]
//!   repeats the whole exchange when the failure is a 403 right after the
//!   authenticated REGISTER (a new MAR gives a new RAND); two hits in a row
//!   have ≈0.1 % probability, three ≈0.003 %. A test that must not retry can
//!   instead provision a fixed-RAND mode in the HSS and pick a RAND whose RES
//!   has no zero byte.
//! - Exit codes: 0 all calls succeeded, 1 at least one failed, 97/99 exit
//!   without calls, 255/254 (−1/−2) fatal (bad scenario, bind failure).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::process::{read_lossy, tail, ChildGuard, TestDir};
use crate::wait::free_port_on;
use crate::{render, Error};

/// The AKAv1-MD5 REGISTER scenario template.
pub const AKA_REGISTER_TEMPLATE: &str = include_str!("../fixtures/sipp/aka-register.xml");
/// A basic call from a registered UE: INVITE, 200, ACK, BYE (placeholders `CALLER`,
/// `CALLEE`, `USER`, `HOLD_MS`); see [`call_uac_scenario`].
pub const CALL_UAC_TEMPLATE: &str = include_str!("../fixtures/sipp/call-uac.xml");
/// Answers one call: 180, 200, then the BYE.
pub const CALL_UAS_SCENARIO: &str = include_str!("../fixtures/sipp/call-uas.xml");
/// The OPTIONS scenario template.
pub const OPTIONS_TEMPLATE: &str = include_str!("../fixtures/sipp/options-uac.xml");

/// Path of `sipp`, if installed.
pub fn bin() -> Option<PathBuf> {
    crate::find_bin("sipp")
}

/// SIP transport of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `-t u1`: one UDP socket.
    Udp,
    /// `-t t1`: one TCP connection.
    Tcp,
}

/// One SIPp invocation.
#[derive(Clone, Debug)]
pub struct Sipp {
    /// Scenario XML text (already rendered).
    pub scenario: String,
    /// Target `ip:port`.
    pub target: SocketAddr,
    /// Local port (`-p`); 0 = pick a free one.
    pub local_port: u16,
    /// Transport.
    pub transport: Transport,
    /// SIPp's `-timeout` (whole run), also the basis of our hard bound.
    pub timeout: Duration,
    /// Call-ID of the call (`-cid_str`; scenarios use `[call_id]`, which is
    /// also how SIPp maps responses to the call). `None` = SIPp's default.
    pub call_id: Option<String>,
    /// Extra arguments appended verbatim.
    pub extra_args: Vec<String>,
}

/// Result of a run. `success` is SIPp's verdict (exit code 0 with `-m 1`).
#[derive(Clone, Debug)]
pub struct SippOutcome {
    /// The call succeeded.
    pub success: bool,
    /// SIPp's exit code (`None` if killed by us or a signal).
    pub exit_code: Option<i32>,
    /// Contents of `-trace_msg` (every message sent/received).
    pub messages: String,
    /// Contents of `-trace_err` (unexpected messages, failures).
    pub errors: String,
    /// SIPp's stdout+stderr.
    pub output: String,
    /// The local port used.
    pub local_port: u16,
}

impl SippOutcome {
    /// Status codes of the responses SIPp received, in order (from the
    /// message trace).
    pub fn received_status_codes(&self) -> Vec<u16> {
        let mut codes = Vec::new();
        let mut after_received = false;
        for line in self.messages.lines() {
            if line.contains("message received") {
                after_received = true;
                continue;
            }
            if after_received && !line.trim().is_empty() {
                if let Ok(code) = crate::kamailio::parse_status_code(line.trim().as_bytes()) {
                    codes.push(code);
                }
                after_received = false;
            }
        }
        codes
    }

    /// A readable summary for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "sipp exit={:?} success={} received={:?}\n--- errors ---\n{}\n--- output (tail) ---\n{}\n--- messages (tail) ---\n{}",
            self.exit_code,
            self.success,
            self.received_status_codes(),
            tail(&self.errors, 40),
            tail(&self.output, 20),
            tail(&self.messages, 60)
        )
    }
}

impl Sipp {
    /// A UDP run of `scenario` against `target` with a 10 s timeout.
    pub fn new(scenario: String, target: SocketAddr) -> Self {
        Self {
            scenario,
            target,
            local_port: 0,
            transport: Transport::Udp,
            timeout: Duration::from_secs(10),
            call_id: None,
            extra_args: Vec::new(),
        }
    }

    /// Runs SIPp once (`-m 1`) and waits for it, at most `timeout` + 5 s
    /// (then kills it and reports failure). Errors only when SIPp cannot be
    /// started at all; a failing call is `Ok` with `success == false`.
    pub fn run(&self) -> Result<SippOutcome, Error> {
        let bin = bin().ok_or_else(|| Error::Failed {
            what: "find sipp".into(),
            detail: "not installed (apt-get install sip-tester)".into(),
        })?;
        let dir = TestDir::new("sipp")?;
        let scen = dir.write("scenario.xml", &self.scenario)?;
        let local_ip = self.target.ip();
        let local_port = if self.local_port == 0 {
            free_port_on(local_ip)
        } else {
            self.local_port
        };
        let msg_file = dir.join("messages.log");
        let err_file = dir.join("errors.log");
        let mut cmd = Command::new(bin);
        cmd.arg(self.target.to_string())
            .arg("-sf")
            .arg(&scen)
            .args(["-m", "1", "-l", "1", "-nostdin"])
            // No BYE after a failed REGISTER/OPTIONS "call": it only adds noise.
            .args(["-default_behaviors", "all,-bye"])
            .arg("-i")
            .arg(local_ip.to_string())
            .arg("-p")
            .arg(local_port.to_string())
            .arg("-t")
            .arg(match self.transport {
                Transport::Udp => "u1",
                Transport::Tcp => "t1",
            })
            .arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .arg("-timeout_error")
            .args(["-trace_err", "-trace_msg"])
            .arg("-message_file")
            .arg(&msg_file)
            .arg("-error_file")
            .arg(&err_file)
            .args(
                self.call_id
                    .iter()
                    .flat_map(|c| ["-cid_str".to_string(), c.replace('%', "%%")]),
            )
            .args(&self.extra_args)
            .current_dir(dir.path());
        let mut guard = ChildGuard::spawn("sipp", &mut cmd, &dir.join("sipp.out"))?;
        let status = guard
            .wait_timeout(self.timeout + Duration::from_secs(5))
            .ok();
        if status.is_none() {
            guard.stop(Duration::from_secs(1));
        }
        let exit_code = status.and_then(|s| s.code());
        Ok(SippOutcome {
            success: exit_code == Some(0),
            exit_code,
            messages: read_lossy(&msg_file),
            errors: read_lossy(&err_file),
            output: guard.log(),
            local_port,
        })
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Bytes as SIPp's `\xNN` escapes (how AKA keys must appear in a scenario).
pub fn sipp_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("\\x{x:02x}")).collect()
}

/// The OPTIONS scenario for `request_uri` (e.g. `sip:127.0.0.1:5060`).
pub fn options_scenario(request_uri: &str) -> String {
    render(
        OPTIONS_TEMPLATE,
        &[
            ("REQUEST_URI", request_uri.to_string()),
            ("FROM_TAG", unique("tag")),
        ],
    )
}

/// An ISIM-like UE driven through SIPp: credentials plus the registration's
/// Call-ID and CSeq, so that successive runs form one registration
/// (initial → re-registration → deregistration), as a real UE does.
#[derive(Clone, Debug)]
pub struct AkaUe {
    /// Private identity (digest username), e.g. `001010000000001@ims.lab`.
    pub impi: String,
    /// Public identity, e.g. `sip:001010000000001@ims.lab`.
    pub impu: String,
    /// Home domain (Request-URI `sip:<domain>`, digest realm of the first REGISTER).
    pub domain: String,
    /// K.
    pub k: [u8; 16],
    /// OP (SIPp 3.6.1 cannot take OPc).
    pub op: [u8; 16],
    /// AMF.
    pub amf: [u8; 2],
    /// Pause before answering the 401 (default 300 ms, see [`crate::kamailio`]).
    pub pause: Duration,
    /// Per-run SIPp timeout.
    pub timeout: Duration,
    /// Transport.
    pub transport: Transport,
    /// Local SIP port, fixed for the UE's lifetime so the Contact stays the same.
    pub local_port: u16,
    call_id: String,
    from_tag: String,
    cseq: u32,
}

impl AkaUe {
    /// A UE with the given identities and keys, a fresh Call-ID and a free
    /// local port on 127.0.0.1.
    pub fn new(
        impi: &str,
        impu: &str,
        domain: &str,
        k: [u8; 16],
        op: [u8; 16],
        amf: [u8; 2],
    ) -> Self {
        Self {
            impi: impi.into(),
            impu: impu.into(),
            domain: domain.into(),
            k,
            op,
            amf,
            pause: Duration::from_millis(300),
            timeout: Duration::from_secs(10),
            transport: Transport::Udp,
            local_port: crate::free_port(),
            call_id: unique("reg"),
            from_tag: unique("tag"),
            cseq: 0,
        }
    }

    /// The registration's Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The user part of the IMPU (for the Contact).
    fn user(&self) -> String {
        let s = self
            .impu
            .trim_start_matches("sips:")
            .trim_start_matches("sip:");
        s.split('@').next().unwrap_or("ue").to_string()
    }

    /// Renders the scenario for one REGISTER exchange with `expires`
    /// (0 = deregistration), consuming two CSeq numbers.
    pub fn scenario(&mut self, label: &str, expires: u32) -> String {
        let c1 = self.cseq + 1;
        let c2 = self.cseq + 2;
        self.cseq += 2;
        render(
            AKA_REGISTER_TEMPLATE,
            &[
                ("LABEL", label.to_string()),
                ("DOMAIN", self.domain.clone()),
                ("IMPU", self.impu.clone()),
                ("IMPI", self.impi.clone()),
                ("USER", self.user()),
                ("FROM_TAG", self.from_tag.clone()),
                ("CSEQ1", c1.to_string()),
                ("CSEQ2", c2.to_string()),
                ("EXPIRES", expires.to_string()),
                ("PAUSE_MS", self.pause.as_millis().to_string()),
                ("AKA_K", sipp_bytes(&self.k)),
                ("AKA_OP", sipp_bytes(&self.op)),
                ("AKA_AMF", sipp_bytes(&self.amf)),
            ],
        )
    }

    /// One REGISTER exchange against `target` (no retry).
    pub fn register_once(
        &mut self,
        target: SocketAddr,
        label: &str,
        expires: u32,
    ) -> Result<SippOutcome, Error> {
        let scenario = self.scenario(label, expires);
        let mut s = Sipp::new(scenario, target);
        s.local_port = self.local_port;
        s.transport = self.transport;
        s.timeout = self.timeout;
        s.call_id = Some(self.call_id.clone());
        s.run()
    }

    /// Like [`AkaUe::register_once`], repeated (at most `attempts` times in
    /// all) while the failure is a 403 after the authenticated REGISTER —
    /// the SIPp 3.6.1 RES-with-0x00 bug (see the module docs). Returns the
    /// last outcome and the number of attempts made.
    pub fn run_with_retry(
        &mut self,
        target: SocketAddr,
        label: &str,
        expires: u32,
        attempts: u32,
    ) -> Result<(SippOutcome, u32), Error> {
        let mut n = 0;
        loop {
            n += 1;
            let out = self.register_once(target, label, expires)?;
            let codes = out.received_status_codes();
            let res_bug = !out.success && codes.contains(&401) && codes.last() == Some(&403);
            if out.success || !res_bug || n >= attempts.max(1) {
                return Ok((out, n));
            }
            eprintln!(
                "testkit::sipp: {label}: 403 after AKA answer (SIPp 3.6.1 RES-with-0x00 bug?), retrying ({n}/{attempts})"
            );
        }
    }

    /// Initial registration (`expires` seconds), retrying the RES bug up to 3 attempts.
    pub fn register(
        &mut self,
        target: SocketAddr,
        expires: u32,
    ) -> Result<(SippOutcome, u32), Error> {
        self.run_with_retry(target, "register", expires, 3)
    }

    /// Re-registration: same Call-ID, higher CSeq, retrying the RES bug.
    pub fn reregister(
        &mut self,
        target: SocketAddr,
        expires: u32,
    ) -> Result<(SippOutcome, u32), Error> {
        self.run_with_retry(target, "re-register", expires, 3)
    }

    /// Deregistration (`Expires: 0`), retrying the RES bug.
    pub fn deregister(&mut self, target: SocketAddr) -> Result<(SippOutcome, u32), Error> {
        self.run_with_retry(target, "deregister", 0, 3)
    }
}

/// The UAC call scenario for `caller` (its IMPU; its user part names the Contact) calling
/// `callee`, holding the call `hold` before its BYE.
pub fn call_uac_scenario(caller: &str, callee: &str, hold: Duration) -> String {
    let user = caller
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or("ue")
        .to_string();
    render(
        CALL_UAC_TEMPLATE,
        &[
            ("CALLER", caller.to_string()),
            ("CALLEE", callee.to_string()),
            ("USER", user),
            ("HOLD_MS", hold.as_millis().to_string()),
        ],
    )
}

/// Writes `scenario` into `dir` as `name` (for tests that run SIPp themselves).
pub fn write_scenario(dir: &Path, name: &str, scenario: &str) -> Result<PathBuf, Error> {
    let p = dir.join(name);
    std::fs::write(&p, scenario).map_err(|e| Error::io(format!("write {}", p.display()), e))?;
    Ok(p)
}

/// A bounded load run: one SIPp process placing (`rate` set) or answering (`rate` unset)
/// up to `calls` calls, e.g. the UAC and UAS of `imslab bench calls`. Unlike [`Sipp::run`]
/// it returns at once ([`SippLoad::spawn`]) so that a UAS can be started before its UAC.
#[derive(Clone, Debug)]
pub struct SippLoad {
    /// Scenario XML text (already rendered).
    pub scenario: String,
    /// Remote `ip:port` (for a UAS only its IP matters: SIPp binds there).
    pub target: SocketAddr,
    /// Local port (`-p`), e.g. the one the UE registered from.
    pub local_port: u16,
    /// Transport.
    pub transport: Transport,
    /// Calls to place or answer (`-m`); SIPp exits after that many.
    pub calls: u32,
    /// New calls per second (`-r`); `None` for a UAS.
    pub rate: Option<u32>,
    /// Most calls open at once (`-l`): a slow system under test lowers the achieved rate
    /// instead of piling up calls without bound.
    pub max_open: Option<u32>,
    /// SIPp's `-timeout` for the whole run (exit code non-zero when reached).
    pub timeout: Duration,
    /// A call waiting longer than this for an expected message fails (`-recv_timeout`).
    pub recv_timeout: Duration,
}

/// A running [`SippLoad`]. Dropping it kills SIPp.
#[derive(Debug)]
pub struct LoadRun {
    guard: ChildGuard,
    dir: TestDir,
    bound: Duration,
}

/// What a [`LoadRun`] did, from SIPp's final statistics and its `<log>` lines.
#[derive(Clone, Debug, Default)]
pub struct LoadOutcome {
    /// SIPp's exit code (`None` when killed: it did not finish in time).
    pub exit_code: Option<i32>,
    /// Calls that completed their scenario (`SuccessfulCall(C)`).
    pub successful: u64,
    /// Calls that failed (`FailedCall(C)`): unexpected message, timeout, retransmissions
    /// exhausted.
    pub failed: u64,
    /// Per-call set-up times logged by the scenario ([`parse_setup_log`]).
    pub setups: Vec<SetupTime>,
    /// Tail of `-trace_err` (unexpected messages), for the report.
    pub errors: String,
    /// Tail of SIPp's own output.
    pub output: String,
}

/// One call's set-up, as logged by `call-uac.xml`: INVITE sent, 200 received
/// (microseconds since the Unix epoch, SIPp's `gettimeofday`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupTime {
    /// When the INVITE went out.
    pub invite_us: u64,
    /// When its 200 came back.
    pub answer_us: u64,
}

impl SetupTime {
    /// INVITE → 200.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.answer_us.saturating_sub(self.invite_us))
    }
}

impl SippLoad {
    /// Starts SIPp. Errors only when it cannot be started at all.
    pub fn spawn(&self) -> Result<LoadRun, Error> {
        let bin = bin().ok_or_else(|| Error::Failed {
            what: "find sipp".into(),
            detail: "not installed (apt-get install sip-tester)".into(),
        })?;
        let dir = TestDir::new("sipp-load")?;
        let scen = dir.write("scenario.xml", &self.scenario)?;
        let mut cmd = Command::new(bin);
        cmd.arg(self.target.to_string())
            .arg("-sf")
            .arg(&scen)
            .args(["-m", &self.calls.to_string(), "-nostdin"])
            .arg("-i")
            .arg(self.target.ip().to_string())
            .arg("-p")
            .arg(self.local_port.to_string())
            .arg("-t")
            .arg(match self.transport {
                Transport::Udp => "u1",
                Transport::Tcp => "t1",
            })
            .arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .arg("-timeout_error")
            .arg("-recv_timeout")
            .arg(self.recv_timeout.as_millis().max(1).to_string())
            // Final counters go to stat.csv; `<log>` lines (set-up times) to *_logs.log;
            // unexpected messages to errors.log.
            // SIPp's default socket buffers (64 KB) overflow in bursts at a few thousand
            // calls/s: the lost ACKs and BYEs would be charged to the system under test.
            // The kernel caps this at net.core.rmem_max/wmem_max.
            .args(["-buff_size", "4194304"])
            .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
            .args(["-trace_logs", "-trace_err", "-error_file", "errors.log"])
            .current_dir(dir.path());
        if let Some(r) = self.rate {
            // -rp 1000: `r` calls per second, spread evenly.
            cmd.args(["-r", &r.to_string(), "-rp", "1000"]);
        }
        if let Some(l) = self.max_open {
            cmd.args(["-l", &l.to_string()]);
        }
        let guard = ChildGuard::spawn("sipp", &mut cmd, &dir.join("sipp.out"))?;
        Ok(LoadRun {
            guard,
            dir,
            bound: self.timeout + Duration::from_secs(5),
        })
    }
}

impl LoadRun {
    /// SIPp's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Waits until SIPp exits, at most its `-timeout` + 5 s, else kills it; then reads
    /// its results.
    pub fn wait(self) -> Result<LoadOutcome, Error> {
        let bound = self.bound;
        self.finish(bound)
    }

    /// Waits at most `grace` (a UAS whose UAC has finished), then kills SIPp and reads
    /// its results (SIPp writes its final statistics on SIGTERM too).
    pub fn finish(mut self, grace: Duration) -> Result<LoadOutcome, Error> {
        let status = self.guard.wait_timeout(grace).ok();
        if status.is_none() {
            self.guard.stop(Duration::from_secs(2));
        }
        let stat = read_lossy(&self.dir.join("stat.csv"));
        let (successful, failed) = parse_stat_csv(&stat).unwrap_or((0, 0));
        let mut setups = Vec::new();
        let entries = std::fs::read_dir(self.dir.path())
            .map_err(|e| Error::io(format!("read {}", self.dir.path().display()), e))?;
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with("_logs.log") {
                setups.extend(parse_setup_log(&read_lossy(&e.path())));
            }
        }
        Ok(LoadOutcome {
            exit_code: status.and_then(|s| s.code()),
            successful,
            failed,
            setups,
            errors: tail(&read_lossy(&self.dir.join("errors.log")), 20),
            output: tail(&self.guard.log(), 20),
        })
    }
}

/// `(SuccessfulCall(C), FailedCall(C))` from the last line of SIPp's `-trace_stat` CSV
/// (`;`-separated, header first).
pub fn parse_stat_csv(csv: &str) -> Result<(u64, u64), Error> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| Error::parse("SIPp statistics", "empty".to_string()))?
        .split(';')
        .collect();
    let last: Vec<&str> = lines
        .next_back()
        .ok_or_else(|| Error::parse("SIPp statistics", "no data line".to_string()))?
        .split(';')
        .collect();
    let field = |name: &str| -> Result<u64, Error> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| Error::parse("SIPp statistics", format!("no column {name}")))?;
        last.get(i)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::parse("SIPp statistics", format!("bad {name}")))
    };
    Ok((field("SuccessfulCall(C)")?, field("FailedCall(C)")?))
}

/// Set-up times from the `setup <s> <us> <s> <us>` lines `call-uac.xml` logs (SIPp prints
/// its variables as decimals, `1796646815.000000`); other lines are ignored.
pub fn parse_setup_log(log: &str) -> Vec<SetupTime> {
    log.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            if f.next()? != "setup" {
                return None;
            }
            let mut us = || -> Option<u64> {
                let s: f64 = f.next()?.parse().ok()?;
                let u: f64 = f.next()?.parse().ok()?;
                (s >= 0.0 && u >= 0.0).then(|| s as u64 * 1_000_000 + u as u64)
            };
            Some(SetupTime {
                invite_us: us()?,
                answer_us: us()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_bytes_format() {
        assert_eq!(sipp_bytes(&[0x46, 0x5b, 0]), "\\x46\\x5b\\x00");
    }

    #[test]
    fn ue_scenarios_share_call_id_and_grow_cseq() {
        let mut ue = AkaUe::new(
            "u@ims.lab",
            "sip:u@ims.lab",
            "ims.lab",
            [0x46; 16],
            [0xcd; 16],
            [0xb9, 0xb9],
        );
        let a = ue.scenario("register", 600);
        let b = ue.scenario("deregister", 0);
        assert!(a.contains("CSeq: 1 REGISTER") && a.contains("CSeq: 2 REGISTER"));
        assert!(b.contains("CSeq: 3 REGISTER") && b.contains("Expires: 0"));
        assert!(a.contains("Call-ID: [call_id]"));
        assert!(a.contains("aka_K=\\x46\\x46"));
        assert!(a.contains("aka_AMF=\\xb9\\xb9]"));
        assert!(a.contains("<pause milliseconds=\"300\"/>"));
    }

    #[test]
    fn load_statistics_and_setup_times() {
        let csv = "StartTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
                   t0;1;1;0;0;\n\
                   t1;5;48;1;2;\n";
        assert_eq!(parse_stat_csv(csv).unwrap(), (48, 2));
        assert!(parse_stat_csv("").is_err());
        assert!(parse_stat_csv("A;B\n1;2\n").is_err());
        assert!(parse_stat_csv("SuccessfulCall(C);FailedCall(C)\nx;1\n").is_err());
        let log = "setup 1796646815.000000 282299.000000 1796646815.000000 284739.000000\n\
                   noise\nsetup 1 999999.000000 2 1000.000000\nsetup 1 2\n";
        let s = parse_setup_log(log);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].duration(), Duration::from_micros(2440));
        assert_eq!(s[1].duration(), Duration::from_micros(1001));
    }

    #[test]
    fn uac_scenario_logs_its_setup_time() {
        let s = call_uac_scenario("sip:a@ims.lab", "sip:b@ims.lab", Duration::ZERO);
        assert!(s.contains("INVITE sip:b@ims.lab SIP/2.0"));
        assert!(s.contains("<log message=\"setup [$t0s] [$t0us] [$t1s] [$t1us]\"/>"));
    }

    #[test]
    fn status_codes_from_trace() {
        let o = SippOutcome {
            success: false,
            exit_code: Some(1),
            messages: "----- UDP message received [300] bytes :\n\nSIP/2.0 401 Unauthorized\r\nVia: x\n\n----- UDP message received [10] bytes :\n\nSIP/2.0 403 Forbidden\n".into(),
            errors: String::new(),
            output: String::new(),
            local_port: 1,
        };
        assert_eq!(o.received_status_codes(), vec![401, 403]);
    }
}
