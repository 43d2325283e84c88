//! Prometheus metrics of the HSS, rendered in the text format by [`opskit::metrics`] and
//! served on the REST listener's `/metrics`.

use opskit::metrics::{CounterFamily, Exposition};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the HSS.
#[derive(Debug)]
pub struct Metrics {
    requests: CounterFamily<1>,
    answers: CounterFamily<2>,
    vectors: AtomicU64,
    resyncs: AtomicU64,
    resyncs_rejected: AtomicU64,
    rest_requests: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: CounterFamily::new(["command"]),
            answers: CounterFamily::new(["command", "result"]),
            vectors: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            resyncs_rejected: AtomicU64::new(0),
            rest_requests: AtomicU64::new(0),
        }
    }
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
    /// CERs refused by the allow-list or as a second connection, by reason.
    pub cer_refused: diameter::RefusalCounts,
}

impl Metrics {
    /// Counts a received Diameter request.
    pub fn request(&self, name: &str) {
        self.requests.inc([name]);
    }
    /// Counts an answer with its (Experimental-)Result-Code.
    pub fn answer(&self, name: &str, code: u32) {
        self.answers.inc([name, &code.to_string()]);
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
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut e = Exposition::new();
        e.counters(
            "hss_diameter_requests_total",
            "Diameter requests received, by command.",
            &self.requests,
        );
        e.counters(
            "hss_diameter_answers_total",
            "Diameter answers sent, by command and (experimental) result code.",
            &self.answers,
        );
        e.counter(
            "hss_auth_vectors_total",
            "Authentication vectors issued (SQN committed).",
            get(&self.vectors),
        );
        e.counter(
            "hss_sqn_resync_total",
            "Accepted SQN resynchronisations (AUTS verified).",
            get(&self.resyncs),
        );
        e.counter(
            "hss_sqn_resync_rejected_total",
            "AUTS whose MAC-S did not verify.",
            get(&self.resyncs_rejected),
        );
        e.counter(
            "hss_rest_requests_total",
            "Provisioning API requests.",
            get(&self.rest_requests),
        );
        e.family(
            "hss_diameter_cer_refused_total",
            "CERs refused: unknown Origin-Host, allowed Origin-Host from another address, or a \
             second connection of a connected peer.",
            opskit::metrics::Kind::Counter,
        );
        let r = g.cer_refused;
        for (reason, n) in [
            ("unknown_host", r.unknown_host),
            ("wrong_address", r.wrong_address),
            ("already_connected", r.already_connected),
        ] {
            e.sample("hss_diameter_cer_refused_total", &[("reason", reason)], n);
        }
        e.gauge("hss_subscribers", "Provisioned subscribers.", g.subscribers);
        e.gauge(
            "hss_registered_subscribers",
            "Subscribers with an S-CSCF assigned and registered.",
            g.registered,
        );
        e.gauge("hss_diameter_peers", "Connected Diameter peers.", g.peers);
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_keeps_the_series_names() {
        let m = Metrics::default();
        m.request("MAR");
        m.answer("MAR", 2001);
        m.answer("MAR", 2001);
        m.vectors(3);
        let t = m.render(Gauges {
            peers: 1,
            cer_refused: diameter::RefusalCounts {
                wrong_address: 2,
                ..Default::default()
            },
            ..Gauges::default()
        });
        for line in [
            "hss_diameter_requests_total{command=\"MAR\"} 1",
            "hss_diameter_answers_total{command=\"MAR\",result=\"2001\"} 2",
            "hss_auth_vectors_total 3",
            "hss_sqn_resync_total 0",
            "hss_subscribers 0",
            "hss_diameter_peers 1",
            "hss_diameter_cer_refused_total{reason=\"wrong_address\"} 2",
            "hss_diameter_cer_refused_total{reason=\"unknown_host\"} 0",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} in\n{t}");
        }
    }
}
