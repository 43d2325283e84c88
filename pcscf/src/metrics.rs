//! Prometheus metrics of the P-CSCF: what the shell counts, rendered in the text format by
//! [`opskit::metrics`] and served on `[metrics] listen` by [`serve`].
//!
//! The shell owns one `Arc<Metrics>`, calls the counting methods as it handles the core's
//! outputs and events, and sets the gauges from the core's getters (after each batch of
//! work, or at least once a second): the core itself stays free of shared state.
//!
//! Label values are `&'static str` on purpose: a reason is a category chosen in code, never
//! text from a message (an IMPI or a header in a label would make one time series per user).

use crate::core::{CoreEvent, DropReason, Rejection, SaStep};
use opskit::metrics::{CounterFamily, Exposition};
use scscf::cxclient::CxMetrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use opskit::http::{MetricsServer, ServeError};

/// The life stage of an SA set (TS 33.203 §7.1, §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaState {
    /// Installed with the 401, waiting for the protected REGISTER.
    Temporary,
    /// Promoted by the 200 OK; carries the UE's traffic.
    Established,
    /// Replaced or deregistered; kept for the grace period, then deleted.
    Retiring,
}

impl SaState {
    const ALL: [SaState; 3] = [SaState::Temporary, SaState::Established, SaState::Retiring];

    fn label(self) -> &'static str {
        match self {
            SaState::Temporary => "temporary",
            SaState::Established => "established",
            SaState::Retiring => "retiring",
        }
    }
}

/// The P-CSCF's counters and gauges. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    challenges: AtomicU64,
    registrations: AtomicU64,
    deregistrations: CounterFamily<1>,
    rejections: CounterFamily<2>,
    dropped: CounterFamily<1>,
    resyncs: AtomicU64,
    registered: AtomicU64,
    sa_sets: [AtomicU64; 3],
    transactions: AtomicU64,
    cx: CxMetrics,
    sa_failures: CounterFamily<1>,
    sa_leaks: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            challenges: AtomicU64::new(0),
            registrations: AtomicU64::new(0),
            deregistrations: CounterFamily::new(["reason"]),
            rejections: CounterFamily::new(["code", "reason"]),
            dropped: CounterFamily::new(["reason"]),
            resyncs: AtomicU64::new(0),
            registered: AtomicU64::new(0),
            sa_sets: Default::default(),
            transactions: AtomicU64::new(0),
            cx: CxMetrics::default(),
            sa_failures: CounterFamily::new(["step"]),
            sa_leaks: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one of the P-CSCF core's events in its series.
    pub fn count(&self, e: &CoreEvent) {
        match e {
            CoreEvent::Challenged { .. } => self.challenge(),
            CoreEvent::Registered { .. } => self.registration(),
            CoreEvent::Deregistered { reason, .. } => self.deregistration(reason),
            CoreEvent::Rejected { code, reason, .. } => {
                self.rejection(*code, rejection_label(reason))
            }
            CoreEvent::Dropped { reason, .. } => self.dropped(drop_label(reason)),
            CoreEvent::SaFailed { step, .. } => self.sa_failure(*step),
            CoreEvent::Refused { code, reason, .. } => self.rejection(*code, refusal_label(reason)),
        }
    }

    /// An SA step failed; a failed deletion also counts as a leaked set (its kernel state
    /// may stay until the next start flushes it).
    pub fn sa_failure(&self, step: SaStep) {
        self.sa_failures.inc([step.as_str()]);
        if step == SaStep::Delete {
            self.sa_leaks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A 401 challenge went out.
    pub fn challenge(&self) {
        self.challenges.fetch_add(1, Ordering::Relaxed);
    }

    /// A registration or re-registration succeeded (200 OK to a REGISTER).
    pub fn registration(&self) {
        self.registrations.fetch_add(1, Ordering::Relaxed);
    }

    /// A registration ended; `reason` e.g. `"user"`, `"expired"`, `"network"`.
    pub fn deregistration(&self, reason: &'static str) {
        self.deregistrations.inc([reason]);
    }

    /// A request was answered with an error `code`; `reason` a fixed category such as
    /// `"auth_failed"`, `"sec_agree"`, `"too_brief"`.
    pub fn rejection(&self, code: u16, reason: &'static str) {
        self.rejections.inc([&code.to_string(), reason]);
    }

    /// Input was dropped without an answer; `reason` e.g. `"unparsable"`, `"no_sa"`.
    pub fn dropped(&self, reason: &'static str) {
        self.dropped.inc([reason]);
    }

    /// An AKA resynchronisation (AUTS) was sent to the HSS.
    pub fn resync(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Gauge: registered public identities right now.
    pub fn set_registered(&self, n: u64) {
        self.registered.store(n, Ordering::Relaxed);
    }

    /// Gauge: SA sets in `state` right now.
    pub fn set_sa_sets(&self, state: SaState, n: u64) {
        self.sa_sets[state as usize].store(n, Ordering::Relaxed);
    }

    /// Gauge: live SIP transactions right now.
    pub fn set_transactions(&self, n: u64) {
        self.transactions.store(n, Ordering::Relaxed);
    }

    /// A Cx answer to `command` (`"MAR"`, `"SAR"`, …) arrived `elapsed` after the request.
    pub fn cx_answer(&self, command: &'static str, elapsed: Duration) {
        self.cx.answer(command, elapsed);
    }

    /// A Cx request got no usable answer; `reason` e.g. `"timeout"`, `"transport"`.
    pub fn cx_failure(&self, command: &'static str, reason: &'static str) {
        self.cx.failure(command, reason);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut e = Exposition::new();
        e.counter(
            "pcscf_challenges_total",
            "401 challenges sent.",
            get(&self.challenges),
        );
        e.counter(
            "pcscf_registrations_total",
            "Successful registrations and re-registrations.",
            get(&self.registrations),
        );
        e.counters(
            "pcscf_deregistrations_total",
            "Registrations ended, by reason.",
            &self.deregistrations,
        );
        e.counters(
            "pcscf_rejections_total",
            "Requests answered with an error, by status code and reason.",
            &self.rejections,
        );
        e.counters(
            "pcscf_dropped_total",
            "Input dropped without an answer, by reason.",
            &self.dropped,
        );
        e.counter(
            "pcscf_aka_resyncs_total",
            "AKA resynchronisations (AUTS) sent to the HSS.",
            get(&self.resyncs),
        );
        e.gauge(
            "pcscf_registered",
            "Registered public identities.",
            get(&self.registered),
        );
        e.gauges(
            "pcscf_sa_sets",
            "IPsec SA sets, by state.",
            "state",
            SaState::ALL.map(|s| (s.label(), get(&self.sa_sets[s as usize]))),
        );
        e.gauge(
            "pcscf_transactions",
            "Live SIP transactions.",
            get(&self.transactions),
        );
        self.cx.render_into("pcscf", &mut e);
        e.counters(
            "pcscf_sa_failures_total",
            "SA set steps the IPsec backend failed, by step.",
            &self.sa_failures,
        );
        e.counter(
            "pcscf_sa_leaked_total",
            "SA sets whose deletion failed: their state may outlive them until a restart.",
            get(&self.sa_leaks),
        );
        e.finish()
    }
}

/// The `reason` label of a refusal: a category, never the detail.
fn rejection_label(r: &Rejection) -> &'static str {
    use Rejection as R;
    match r {
        R::Malformed(_) | R::MalformedSecurityClient(_) | R::Unforwardable => "malformed",
        R::NotSaOwner => "sa-owner",
        R::VerifyMismatch | R::SecAgreeRequired | R::NoAcceptableOffer(_) | R::UnusableOffer(_) => {
            "sec-agree"
        }
        R::NoIpsecBackend | R::IpsecExhausted(_) | R::IpsecSetup(_) => "ipsec",
        R::TooManyHops => "max-forwards",
        R::ForwardFailed(_) => "server",
        R::Upstream => "upstream",
        R::BadUpstreamKeys | R::BadUpstreamChallenge(_) | R::NoUpstreamKeys => "upstream-malformed",
        R::UpstreamTimeout => "upstream-timeout",
        R::UpstreamUnreachable => "upstream-unreachable",
        R::RateLimited(_) => "rate-limited",
        R::Overloaded => "overloaded",
    }
}

/// The `reason` label of a refused request other than REGISTER.
fn refusal_label(r: &crate::core::Refusal) -> &'static str {
    use crate::core::Refusal as R;
    match r {
        R::Stranger => "stranger",
        R::NoSuchContact => "no-contact",
        R::Forward(sip::proxy::ForwardError::TooManyHops) => "max-forwards",
        R::Forward(sip::proxy::ForwardError::Malformed(_)) => "malformed",
        R::Send(_) => "server",
        R::Unparsable(_) => "unparsable",
        R::Overloaded => "overloaded",
    }
}

/// The `reason` label of dropped input.
fn drop_label(r: &DropReason) -> &'static str {
    use sip::uas::Dropped;
    match r {
        DropReason::Sip(Dropped::Unparsable(_)) => "unparsable",
        DropReason::NoSa => "no-sa",
        DropReason::Sip(Dropped::NoTransaction(_)) | DropReason::BadResponse(_) => "no-transaction",
        DropReason::NotFromUpstream => "not-upstream",
        DropReason::Stranger => "stranger",
        DropReason::Sip(Dropped::NoResponse(_)) => "unanswerable",
    }
}

/// The Cx client of the collapsed S-CSCF times its requests into our Cx series.
impl AsRef<CxMetrics> for Metrics {
    fn as_ref(&self) -> &CxMetrics {
        &self.cx
    }
}

/// Serves `GET /metrics` with `metrics.render()` on `addr` (`[metrics] listen`) until the
/// returned handle is dropped. Must be called inside a tokio runtime.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer, ServeError> {
    opskit::http::serve_metrics(addr, move || metrics.render()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    #[test]
    fn a_fresh_scrape_has_every_unlabelled_series_at_zero() {
        let t = Metrics::new().render();
        for s in [
            "pcscf_challenges_total",
            "pcscf_registrations_total",
            "pcscf_aka_resyncs_total",
            "pcscf_sa_leaked_total",
            "pcscf_registered",
            "pcscf_transactions",
            "pcscf_sa_sets{state=\"temporary\"}",
            "pcscf_sa_sets{state=\"established\"}",
            "pcscf_sa_sets{state=\"retiring\"}",
        ] {
            assert_eq!(sample(&t, s).as_deref(), Some("0"), "{s} in\n{t}");
        }
        for f in [
            "pcscf_rejections_total",
            "pcscf_cx_request_duration_seconds",
        ] {
            assert!(t.contains(&format!("# TYPE {f} ")), "{f} in\n{t}");
        }
    }

    #[test]
    fn counts_land_in_their_series() {
        let m = Metrics::new();
        m.challenge();
        m.challenge();
        m.registration();
        m.deregistration("expired");
        m.rejection(403, "auth_failed");
        m.rejection(403, "auth_failed");
        m.rejection(494, "sec_agree");
        m.dropped("no_sa");
        m.resync();
        m.set_registered(7);
        m.set_sa_sets(SaState::Established, 5);
        m.set_sa_sets(SaState::Retiring, 1);
        m.set_transactions(3);
        m.cx_answer("MAR", Duration::from_millis(3));
        m.cx_answer("SAR", Duration::from_secs(20));
        m.cx_failure("MAR", "timeout");
        let t = m.render();
        let want = [
            ("pcscf_challenges_total", "2"),
            ("pcscf_registrations_total", "1"),
            ("pcscf_deregistrations_total{reason=\"expired\"}", "1"),
            (
                "pcscf_rejections_total{code=\"403\",reason=\"auth_failed\"}",
                "2",
            ),
            (
                "pcscf_rejections_total{code=\"494\",reason=\"sec_agree\"}",
                "1",
            ),
            ("pcscf_dropped_total{reason=\"no_sa\"}", "1"),
            ("pcscf_aka_resyncs_total", "1"),
            ("pcscf_registered", "7"),
            ("pcscf_sa_sets{state=\"temporary\"}", "0"),
            ("pcscf_sa_sets{state=\"established\"}", "5"),
            ("pcscf_sa_sets{state=\"retiring\"}", "1"),
            ("pcscf_transactions", "3"),
            (
                "pcscf_cx_request_duration_seconds_bucket{command=\"MAR\",le=\"0.0025\"}",
                "0",
            ),
            (
                "pcscf_cx_request_duration_seconds_bucket{command=\"MAR\",le=\"0.005\"}",
                "1",
            ),
            (
                "pcscf_cx_request_duration_seconds_count{command=\"MAR\"}",
                "1",
            ),
            (
                "pcscf_cx_request_duration_seconds_bucket{command=\"SAR\",le=\"10\"}",
                "0",
            ),
            (
                "pcscf_cx_request_duration_seconds_bucket{command=\"SAR\",le=\"+Inf\"}",
                "1",
            ),
            (
                "pcscf_cx_failures_total{command=\"MAR\",reason=\"timeout\"}",
                "1",
            ),
        ];
        for (series, v) in want {
            assert_eq!(sample(&t, series).as_deref(), Some(v), "{series} in\n{t}");
        }
        // Gauges are set, not added.
        m.set_registered(2);
        assert_eq!(
            sample(&m.render(), "pcscf_registered").as_deref(),
            Some("2")
        );
    }

    #[test]
    fn events_count_under_their_typed_reason() {
        let m = Metrics::new();
        let remote: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        for e in [
            CoreEvent::Rejected {
                impi: "alice@ims.test".into(),
                code: 494,
                reason: Rejection::VerifyMismatch,
            },
            CoreEvent::Rejected {
                impi: "bob@ims.test".into(),
                code: 494,
                reason: Rejection::SecAgreeRequired,
            },
            CoreEvent::Rejected {
                impi: "bob@ims.test".into(),
                code: 408,
                reason: Rejection::UpstreamTimeout,
            },
            CoreEvent::Dropped {
                remote,
                reason: DropReason::NoSa,
            },
            CoreEvent::SaFailed {
                id: 3,
                step: SaStep::Delete,
                impi: Some("alice@ims.test".into()),
                error: "netlink: EPERM".into(),
            },
            CoreEvent::SaFailed {
                id: 4,
                step: SaStep::Promote,
                impi: None,
                error: "unknown set".into(),
            },
        ] {
            m.count(&e);
        }
        let t = m.render();
        for (series, v) in [
            (
                "pcscf_rejections_total{code=\"494\",reason=\"sec-agree\"}",
                "2",
            ),
            (
                "pcscf_rejections_total{code=\"408\",reason=\"upstream-timeout\"}",
                "1",
            ),
            ("pcscf_dropped_total{reason=\"no-sa\"}", "1"),
            ("pcscf_sa_failures_total{step=\"delete\"}", "1"),
            ("pcscf_sa_failures_total{step=\"promote\"}", "1"),
            ("pcscf_sa_leaked_total", "1"),
        ] {
            assert_eq!(sample(&t, series).as_deref(), Some(v), "{series} in\n{t}");
        }
        assert!(!t.contains("alice"), "no identity in a label:\n{t}");
    }

    #[tokio::test]
    async fn the_endpoint_serves_the_live_counters_over_loopback() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let m = Arc::new(Metrics::new());
        let srv = serve("127.0.0.1:0".parse().unwrap(), m.clone())
            .await
            .unwrap();
        m.registration();
        m.set_sa_sets(SaState::Temporary, 4);
        let mut s = tokio::net::TcpStream::connect(srv.local_addr())
            .await
            .unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: pcscf\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let body = r.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        assert_eq!(
            sample(body, "pcscf_registrations_total").as_deref(),
            Some("1"),
            "{r}"
        );
        assert_eq!(
            sample(body, "pcscf_sa_sets{state=\"temporary\"}").as_deref(),
            Some("4"),
            "{r}"
        );
    }
}
