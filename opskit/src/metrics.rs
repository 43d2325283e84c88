//! Prometheus text exposition, format 0.0.4, written by hand (no client library: the format
//! is a few lines of text and every binary needs only counters, gauges and histograms).
//!
//! A binary keeps its own counters (atomics, or the labelled families here) and renders them
//! into an [`Exposition`] at scrape time.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::Mutex;
use std::time::Duration;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets in seconds suited to a request/answer exchange on a LAN (1 ms to 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A metric family's type, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations with `_bucket`, `_sum` and `_count` series.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The exposition text being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Samples of it follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        // In HELP only backslash and newline are escaped (the format's rule).
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = write!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}\n",
            kind.as_str()
        );
    }

    /// One sample line: `name{l1="v1",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, Kind::Counter);
        self.sample(name, &[], value);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, Kind::Gauge);
        self.sample(name, &[], value);
    }

    /// A gauge with one label, one sample per `(label value, value)`.
    pub fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, help, Kind::Gauge);
        for (l, v) in samples {
            self.sample(name, &[(label, l)], v);
        }
    }

    /// A labelled counter family, one sample per label set seen so far.
    pub fn counters<const N: usize>(&mut self, name: &str, help: &str, fam: &CounterFamily<N>) {
        self.family(name, help, Kind::Counter);
        for (key, v) in lock(&fam.values).iter() {
            let labels = zip_labels(&fam.labels, key);
            self.sample(name, &labels, v);
        }
    }

    /// A labelled histogram family: cumulative `_bucket` lines with `le`, `_sum`, `_count`.
    pub fn histograms<const N: usize>(&mut self, name: &str, help: &str, fam: &HistogramFamily<N>) {
        self.family(name, help, Kind::Histogram);
        let bucket = format!("{name}_bucket");
        let sum = format!("{name}_sum");
        let count = format!("{name}_count");
        let les: Vec<String> = fam.bounds.iter().map(f64::to_string).collect();
        for (key, h) in lock(&fam.values).iter() {
            let mut labels = zip_labels(&fam.labels, key);
            let mut cumulative = 0;
            for (le, n) in les.iter().zip(&h.buckets) {
                cumulative += n;
                labels.push(("le", le));
                self.sample(&bucket, &labels, cumulative);
                labels.pop();
            }
            labels.push(("le", "+Inf"));
            self.sample(&bucket, &labels, h.count);
            labels.pop();
            self.sample(&sum, &labels, h.sum);
            self.sample(&count, &labels, h.count);
        }
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn zip_labels<'a, const N: usize>(
    names: &[&'static str; N],
    values: &'a [String; N],
) -> Vec<(&'static str, &'a str)> {
    names
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .collect()
}

/// Metrics are never worth a panic: a poisoned lock still holds valid counts.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A counter per label set, e.g. rejections by `code` and `reason`. Label values must come
/// from a small fixed set (status codes, reason categories), never from user input: every
/// distinct set is a time series kept forever.
#[derive(Debug)]
pub struct CounterFamily<const N: usize> {
    labels: [&'static str; N],
    values: Mutex<BTreeMap<[String; N], u64>>,
}

impl<const N: usize> CounterFamily<N> {
    /// A family with these label names.
    pub fn new(labels: [&'static str; N]) -> Self {
        CounterFamily {
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds one to the counter of this label set.
    pub fn inc(&self, values: [&str; N]) {
        self.add(values, 1);
    }

    /// Adds `n` to the counter of this label set.
    pub fn add(&self, values: [&str; N], n: u64) {
        *lock(&self.values)
            .entry(values.map(str::to_string))
            .or_default() += n;
    }

    /// The counter of this label set (0 if never counted).
    pub fn get(&self, values: [&str; N]) -> u64 {
        lock(&self.values)
            .get(&values.map(str::to_string))
            .copied()
            .unwrap_or(0)
    }

    /// The sum over all label sets.
    pub fn total(&self) -> u64 {
        lock(&self.values).values().sum()
    }
}

#[derive(Debug, Clone)]
struct HistogramData {
    /// Per-bucket (non-cumulative) counts; observations above the last bound only count.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A histogram per label set, e.g. Cx latency by command. Same cardinality rule as
/// [`CounterFamily`].
#[derive(Debug)]
pub struct HistogramFamily<const N: usize> {
    labels: [&'static str; N],
    bounds: &'static [f64],
    values: Mutex<BTreeMap<[String; N], HistogramData>>,
}

impl<const N: usize> HistogramFamily<N> {
    /// A family with these label names and bucket upper bounds (ascending; `+Inf` is
    /// implied).
    pub fn new(labels: [&'static str; N], bounds: &'static [f64]) -> Self {
        HistogramFamily {
            labels,
            bounds,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one observation (seconds, bytes, …) for this label set.
    pub fn observe(&self, values: [&str; N], v: f64) {
        let mut m = lock(&self.values);
        let h = m
            .entry(values.map(str::to_string))
            .or_insert_with(|| HistogramData {
                buckets: vec![0; self.bounds.len()],
                sum: 0.0,
                count: 0,
            });
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += v;
        h.count += 1;
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, values: [&str; N], d: Duration) {
        self.observe(values, d.as_secs_f64());
    }

    /// Observations of this label set so far.
    pub fn count(&self, values: [&str; N]) -> u64 {
        lock(&self.values)
            .get(&values.map(str::to_string))
            .map_or(0, |h| h.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_counter_and_gauge() {
        let mut e = Exposition::new();
        e.counter("x_total", "Things.\nMore \\ things.", 3);
        e.gauge("y", "Level.", 7);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\\nMore \\\\ things.\n# TYPE x_total counter\nx_total 3\n\
             # HELP y Level.\n# TYPE y gauge\ny 7\n"
        );
    }

    #[test]
    fn labelled_counters_are_sorted_and_escaped() {
        let f = CounterFamily::new(["code", "reason"]);
        f.inc(["403", "bad \"auth\"\\\n"]);
        f.add(["401", "challenge"], 2);
        f.inc(["403", "bad \"auth\"\\\n"]);
        assert_eq!(f.get(["403", "bad \"auth\"\\\n"]), 2);
        assert_eq!(f.get(["500", "x"]), 0);
        assert_eq!(f.total(), 4);
        let mut e = Exposition::new();
        e.counters("r_total", "R.", &f);
        assert_eq!(
            e.finish(),
            "# HELP r_total R.\n# TYPE r_total counter\n\
             r_total{code=\"401\",reason=\"challenge\"} 2\n\
             r_total{code=\"403\",reason=\"bad \\\"auth\\\"\\\\\\n\"} 2\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
        static B: &[f64] = &[0.01, 0.1, 1.0];
        let h = HistogramFamily::new(["command"], B);
        // Binary fractions so that the sum prints exactly.
        h.observe(["MAR"], 0.0078125);
        h.observe(["MAR"], 0.0625);
        h.observe(["MAR"], 0.0625);
        h.observe(["MAR"], 3.0);
        h.observe_duration(["SAR"], Duration::from_millis(10));
        assert_eq!(h.count(["MAR"]), 4);
        let mut e = Exposition::new();
        e.histograms("lat_seconds", "Latency.", &h);
        let t = e.finish();
        let want = "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
            lat_seconds_bucket{command=\"MAR\",le=\"0.01\"} 1\n\
            lat_seconds_bucket{command=\"MAR\",le=\"0.1\"} 3\n\
            lat_seconds_bucket{command=\"MAR\",le=\"1\"} 3\n\
            lat_seconds_bucket{command=\"MAR\",le=\"+Inf\"} 4\n\
            lat_seconds_sum{command=\"MAR\"} 3.1328125\n\
            lat_seconds_count{command=\"MAR\"} 4\n\
            lat_seconds_bucket{command=\"SAR\",le=\"0.01\"} 1\n";
        assert!(t.starts_with(want), "{t}");
        assert!(t.ends_with("lat_seconds_count{command=\"SAR\"} 1\n"), "{t}");
    }

    #[test]
    fn single_label_gauges() {
        let mut e = Exposition::new();
        e.gauges("sets", "Sets.", "state", [("a", 1), ("b", 0)]);
        assert_eq!(
            e.finish(),
            "# HELP sets Sets.\n# TYPE sets gauge\nsets{state=\"a\"} 1\nsets{state=\"b\"} 0\n"
        );
    }
}
