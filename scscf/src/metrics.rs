//! Prometheus metrics of the standalone S-CSCF, rendered by [`opskit::metrics`] and served
//! on `[metrics] listen` by [`serve`].
//!
//! The shell counts the core's events and sets the gauges from its getters; the core
//! itself stays free of shared state. Labels are fixed categories chosen in code, never
//! text from a message (an IMPI in a label would make one time series per user).

use crate::core::{DeregReason, Event, Rejection};
use crate::cxclient::CxMetrics;
use opskit::metrics::{CounterFamily, Exposition};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use opskit::http::{MetricsServer, ServeError};

/// The S-CSCF's counters and gauges. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    challenges: AtomicU64,
    registrations: AtomicU64,
    deregistrations: CounterFamily<1>,
    rejections: CounterFamily<2>,
    dropped: AtomicU64,
    resyncs: AtomicU64,
    as_forwards: AtomicU64,
    as_failures: AtomicU64,
    third_party_registers: AtomicU64,
    registered: AtomicU64,
    pending_challenges: AtomicU64,
    transactions: AtomicU64,
    cx: CxMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            challenges: AtomicU64::new(0),
            registrations: AtomicU64::new(0),
            deregistrations: CounterFamily::new(["reason"]),
            rejections: CounterFamily::new(["code", "reason"]),
            dropped: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            as_forwards: AtomicU64::new(0),
            as_failures: AtomicU64::new(0),
            third_party_registers: AtomicU64::new(0),
            registered: AtomicU64::new(0),
            pending_challenges: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            cx: CxMetrics::default(),
        }
    }
}

impl AsRef<CxMetrics> for Metrics {
    fn as_ref(&self) -> &CxMetrics {
        &self.cx
    }
}

/// A core's state at one moment, for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Registered public identities.
    pub registered: u64,
    /// Challenges waiting for an answer.
    pub pending_challenges: u64,
    /// Live SIP transactions.
    pub transactions: u64,
    /// Resynchronisations asked of the HSS so far (a counter the core keeps).
    pub resyncs: u64,
    /// Requests sent to application servers on an iFC match (a counter the core keeps).
    pub as_forwards: u64,
    /// Application servers that failed or stayed silent (a counter the core keeps).
    pub as_failures: u64,
    /// Third-party REGISTERs sent (a counter the core keeps).
    pub third_party_registers: u64,
}

impl Metrics {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one event of the core.
    pub fn event(&self, e: &Event) {
        match e {
            Event::Challenged { .. } => {
                self.challenges.fetch_add(1, Ordering::Relaxed);
            }
            Event::Registered { .. } => {
                self.registrations.fetch_add(1, Ordering::Relaxed);
            }
            Event::Deregistered { reason, .. } => self.deregistrations.inc([match reason {
                DeregReason::User => "user",
                DeregReason::Timeout => "expired",
                DeregReason::Network => "network",
                DeregReason::ApplicationServer => "application_server",
            }]),
            Event::Rejected { code, reason, .. } => self
                .rejections
                .inc([&code.to_string(), rejection_class(reason)]),
            Event::Dropped { .. } => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sets the gauges.
    pub fn set(&self, g: Gauges) {
        self.registered.store(g.registered, Ordering::Relaxed);
        self.pending_challenges
            .store(g.pending_challenges, Ordering::Relaxed);
        self.transactions.store(g.transactions, Ordering::Relaxed);
        self.resyncs.store(g.resyncs, Ordering::Relaxed);
        self.as_forwards.store(g.as_forwards, Ordering::Relaxed);
        self.as_failures.store(g.as_failures, Ordering::Relaxed);
        self.third_party_registers
            .store(g.third_party_registers, Ordering::Relaxed);
    }

    /// The Cx series.
    pub fn cx(&self) -> &CxMetrics {
        &self.cx
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut e = Exposition::new();
        e.counter(
            "scscf_challenges_total",
            "401 challenges sent.",
            get(&self.challenges),
        );
        e.counter(
            "scscf_registrations_total",
            "Successful registrations and re-registrations.",
            get(&self.registrations),
        );
        e.counters(
            "scscf_deregistrations_total",
            "Registrations ended, by reason.",
            &self.deregistrations,
        );
        e.counters(
            "scscf_rejections_total",
            "REGISTERs refused, by status code and reason.",
            &self.rejections,
        );
        e.counter(
            "scscf_dropped_total",
            "Input dropped without an answer.",
            get(&self.dropped),
        );
        e.counter(
            "scscf_aka_resyncs_total",
            "AKA resynchronisations (AUTS) sent to the HSS.",
            get(&self.resyncs),
        );
        e.counter(
            "scscf_isc_forwards_total",
            "Initial requests sent to an application server on an iFC match.",
            get(&self.as_forwards),
        );
        e.counter(
            "scscf_isc_as_failures_total",
            "Application servers that failed or stayed silent (DefaultHandling applied).",
            get(&self.as_failures),
        );
        e.counter(
            "scscf_third_party_registers_total",
            "Third-party REGISTERs sent to application servers.",
            get(&self.third_party_registers),
        );
        e.gauge(
            "scscf_registered",
            "Registered public identities.",
            get(&self.registered),
        );
        e.gauge(
            "scscf_pending_challenges",
            "Challenges waiting for an answer.",
            get(&self.pending_challenges),
        );
        e.gauge(
            "scscf_transactions",
            "Live SIP transactions.",
            get(&self.transactions),
        );
        self.cx.render_into("scscf", &mut e);
        e.finish()
    }
}

fn rejection_class(r: &Rejection) -> &'static str {
    match r {
        Rejection::Malformed(_) => "malformed",
        Rejection::WrongResponse
        | Rejection::OtherIdentity
        | Rejection::Resync(_)
        | Rejection::UriMismatch => "authentication",
        Rejection::Barred => "barred",
        Rejection::Cx(_) => "hss",
        Rejection::HssUnreachable(_) => "hss-unreachable",
        Rejection::TooBrief => "too-brief",
    }
}

/// Serves `GET /metrics` with `metrics.render()` on `addr` until the returned handle is
/// dropped. Must be called inside a tokio runtime.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer, ServeError> {
    opskit::http::serve_metrics(addr, move || metrics.render()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    #[test]
    fn events_and_gauges_land_in_their_series() {
        let m = Metrics::new();
        let t = m.render();
        for s in [
            "scscf_challenges_total",
            "scscf_registrations_total",
            "scscf_registered",
        ] {
            assert_eq!(sample(&t, s).as_deref(), Some("0"), "{s} in\n{t}");
        }
        m.event(&Event::Challenged { impi: "a".into() });
        m.event(&Event::Registered {
            impu: "sip:a@x".into(),
            impi: "a".into(),
            expires: 600,
        });
        m.event(&Event::Deregistered {
            impu: "sip:a@x".into(),
            reason: DeregReason::User,
        });
        m.event(&Event::Rejected {
            impi: "a".into(),
            code: 403,
            reason: Rejection::WrongResponse,
        });
        m.set(Gauges {
            registered: 2,
            pending_challenges: 1,
            transactions: 3,
            resyncs: 4,
            as_forwards: 5,
            as_failures: 6,
            third_party_registers: 7,
        });
        m.cx().answer("MAR", Duration::from_millis(3));
        let t = m.render();
        for (s, v) in [
            ("scscf_challenges_total", "1"),
            ("scscf_registrations_total", "1"),
            ("scscf_deregistrations_total{reason=\"user\"}", "1"),
            (
                "scscf_rejections_total{code=\"403\",reason=\"authentication\"}",
                "1",
            ),
            ("scscf_registered", "2"),
            ("scscf_pending_challenges", "1"),
            ("scscf_transactions", "3"),
            ("scscf_aka_resyncs_total", "4"),
            ("scscf_isc_forwards_total", "5"),
            ("scscf_isc_as_failures_total", "6"),
            ("scscf_third_party_registers_total", "7"),
            (
                "scscf_cx_request_duration_seconds_count{command=\"MAR\"}",
                "1",
            ),
        ] {
            assert_eq!(sample(&t, s).as_deref(), Some(v), "{s} in\n{t}");
        }
    }
}
