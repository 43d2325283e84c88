//! Prometheus metrics, text exposition format 0.0.4 written by hand (no extra dependency).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters of the HSS.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<String, u64>>,
    answers: Mutex<BTreeMap<(String, u32), u64>>,
    vectors: AtomicU64,
    resyncs: AtomicU64,
    resyncs_rejected: AtomicU64,
    rest_requests: AtomicU64,
}

/// Gauges read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Provisioned subscribers.
    pub subscribers: u64,
    /// Registered subscribers.
    pub registered: u64,
    /// Connected Diameter peers.
    pub peers: u64,
    /// SQN group commits so far.
    pub sqn_commits: u64,
    /// MARs served by them.
    pub sqn_commit_requests: u64,
}

impl Metrics {
    /// Counts a received Diameter request.
    pub fn request(&self, name: &str) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(name.to_string()).or_default() += 1;
    }
    /// Counts an answer with its (Experimental-)Result-Code.
    pub fn answer(&self, name: &str, code: u32) {
        let mut m = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((name.to_string(), code)).or_default() += 1;
    }
    /// Counts issued authentication vectors.
    pub fn vectors(&self, n: u64) {
        self.vectors.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts an accepted resynchronisation.
    pub fn resync(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts a rejected AUTS.
    pub fn resync_rejected(&self) {
        self.resyncs_rejected.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts a REST API request.
    pub fn rest(&self) {
        self.rest_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, g: Gauges) -> String {
        let mut o = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        o.push_str("# HELP hss_diameter_requests_total Diameter requests received, by command.\n");
        o.push_str("# TYPE hss_diameter_requests_total counter\n");
        for (k, v) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "hss_diameter_requests_total{{command=\"{}\"}} {v}",
                esc(k)
            );
        }
        o.push_str("# HELP hss_diameter_answers_total Diameter answers sent, by command and (experimental) result code.\n");
        o.push_str("# TYPE hss_diameter_answers_total counter\n");
        for ((k, c), v) in self
            .answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "hss_diameter_answers_total{{command=\"{}\",result=\"{c}\"}} {v}",
                esc(k)
            );
        }
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        };
        counter(
            &mut o,
            "hss_auth_vectors_total",
            "Authentication vectors issued (SQN committed).",
            self.vectors.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "hss_sqn_resync_total",
            "Accepted SQN resynchronisations (AUTS verified).",
            self.resyncs.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "hss_sqn_resync_rejected_total",
            "AUTS whose MAC-S did not verify.",
            self.resyncs_rejected.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "hss_rest_requests_total",
            "Provisioning API requests.",
            self.rest_requests.load(Ordering::Relaxed),
        );
        gauge(
            &mut o,
            "hss_subscribers",
            "Provisioned subscribers.",
            g.subscribers,
        );
        gauge(
            &mut o,
            "hss_registered_subscribers",
            "Subscribers with an S-CSCF assigned and registered.",
            g.registered,
        );
        gauge(
            &mut o,
            "hss_diameter_peers",
            "Connected Diameter peers.",
            g.peers,
        );
        o
    }
}
