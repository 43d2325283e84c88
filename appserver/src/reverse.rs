//! Optional reverse lookup of a caller's name over HTTP(S), with a bounded TTL cache.
//!
//! `GET url` with `{number}` replaced by the caller's E.164 number (percent-encoded, so
//! `+` arrives as `%2B`); the answer is the name, either as plain text (its first line) or
//! in a JSON object's configured field (`json_field = "name"`, dotted for nested objects:
//! `"result.name"`). A 404 or an empty answer means "no name" and is cached like a name;
//! a timeout or an error is not cached, so the next call from the number asks again.
//!
//! The design that never delays a call (see [`crate::pipeline`] for the other half):
//! the verdict never depends on the lookup, so `offer()` returns at once. Only the Ring
//! *event* may wait, at most `ring_delay_ms` (default 0: the Ring goes out at once with
//! the display name). A name that arrives later is written to the call log and carried by
//! the call's later events (Connect, End); it is never announced as a second Ring, which
//! would ring a notification twice. Only numbers in E.164 form (`+…`) are looked up:
//! an internal extension means nothing to a public directory, and a withheld caller has no
//! number to send.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `[reverse]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReverseConfig {
    /// The lookup URL with `{number}` where the E.164 number goes, e.g.
    /// `"https://directory.example/lookup?number={number}"` (default none: no lookup).
    pub url: Option<String>,
    /// The JSON field holding the name, dotted for nested objects (default none: the
    /// answer is plain text and its first line is the name).
    pub json_field: Option<String>,
    /// Milliseconds one lookup may take (default 800: an answer later than that is rarely
    /// useful while the phone rings, and a hung server must not pile up requests).
    pub timeout_ms: u64,
    /// Milliseconds the Ring event may wait for the lookup (default 0: notify at once with
    /// what is known; a late name still reaches the call log and later events).
    pub ring_delay_ms: u64,
    /// Seconds a looked-up name (or "no name") is kept (default 86400: directory entries
    /// change rarely, repeat callers are common).
    pub cache_ttl_seconds: u64,
    /// Most numbers in the cache (default 10000; the oldest entry makes room).
    pub cache_size: usize,
}

impl Default for ReverseConfig {
    fn default() -> Self {
        ReverseConfig {
            url: None,
            json_field: None,
            timeout_ms: 800,
            ring_delay_ms: 0,
            cache_ttl_seconds: 86_400,
            cache_size: 10_000,
        }
    }
}

/// The commented TOML snippet of `[reverse]`.
pub const EXAMPLE: &str = r#"[reverse]
# Reverse lookup of callers not in the phonebook; {number} becomes the E.164 number (%2B49…).
# url = "https://directory.example/lookup?number={number}"
# The answer is plain text (first line = name) unless a JSON field is named (dotted path).
# json_field = "name"
# A lookup gives up after this many milliseconds.
timeout_ms = 800
# The Ring notification waits at most this long for the name (0: never waits; a late name
# still goes into the call log and the call's later events).
ring_delay_ms = 0
cache_ttl_seconds = 86400
cache_size = 10000
"#;

/// Why the reverse lookup cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    /// The URL has no `{number}` or is not http(s).
    #[error("[reverse] url {0:?} must be http:// or https:// and contain {{number}}")]
    Url(String),
    /// The HTTP client cannot be built (TLS roots).
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The longest name kept; longer answers are cut (a name goes into fixed-width displays).
pub const MAX_NAME_CHARS: usize = 64;
/// The most of an answer read.
const MAX_BODY: usize = 16 * 1024;

#[derive(Debug)]
struct Cache {
    map: HashMap<String, (Option<String>, Instant)>,
    cap: usize,
    ttl: Duration,
}

impl Cache {
    fn get(&self, number: &str, now: Instant) -> Option<Option<String>> {
        let (v, at) = self.map.get(number)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| v.clone())
    }

    fn put(&mut self, number: String, v: Option<String>, now: Instant) {
        if self.cap == 0 {
            return;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&number) {
            let ttl = self.ttl;
            self.map
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if self.map.len() >= self.cap {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.map.remove(&k);
                }
            }
        }
        self.map.insert(number, (v, now));
    }
}

/// The reverse lookup service client.
#[derive(Debug)]
pub struct ReverseLookup {
    url: String,
    json_field: Option<String>,
    ring_delay: Duration,
    client: reqwest::Client,
    cache: Mutex<Cache>,
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A name fit to show: first line, no control characters, at most [`MAX_NAME_CHARS`].
pub fn clean_name(s: &str) -> Option<String> {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty())?;
    let n: String = line
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let n = n.trim().to_string();
    (!n.is_empty()).then_some(n)
}

/// The name in a JSON answer at a dotted `field` path; numbers are not names.
pub fn json_name(body: &str, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut cur = &v;
    for part in field.split('.') {
        cur = match cur {
            serde_json::Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            o => o.get(part)?,
        };
    }
    clean_name(cur.as_str()?)
}

impl ReverseLookup {
    /// The client of a configuration; `None` when no URL is configured.
    pub fn new(cfg: &ReverseConfig) -> Result<Option<ReverseLookup>, ReverseError> {
        let Some(url) = &cfg.url else {
            return Ok(None);
        };
        let lower = url.to_ascii_lowercase();
        if !url.contains("{number}")
            || !(lower.starts_with("http://") || lower.starts_with("https://"))
        {
            return Err(ReverseError::Url(url.clone()));
        }
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("imslab-appserver/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Some(ReverseLookup {
            url: url.clone(),
            json_field: cfg.json_field.clone(),
            ring_delay: Duration::from_millis(cfg.ring_delay_ms),
            client,
            cache: Mutex::new(Cache {
                map: HashMap::new(),
                cap: cfg.cache_size,
                ttl: Duration::from_secs(cfg.cache_ttl_seconds),
            }),
        }))
    }

    /// How long the Ring event may wait for a lookup.
    pub fn ring_delay(&self) -> Duration {
        self.ring_delay
    }

    /// Whether a number is worth asking about (E.164 only).
    pub fn wants(number: &str) -> bool {
        number.len() > 3 && number.starts_with('+')
    }

    /// The cached answer: `Some(Some(name))`, `Some(None)` for a known "no name", `None`
    /// when the number must be asked about.
    pub fn cached(&self, number: &str, now: Instant) -> Option<Option<String>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(number, now)
    }

    /// Asks the service (the cache first). `None` when it has no name, failed or timed out.
    pub async fn lookup(&self, number: &str) -> Option<String> {
        if let Some(hit) = self.cached(number, Instant::now()) {
            return hit;
        }
        let url = self.url.replace("{number}", &encode(number));
        match self.fetch(&url).await {
            Ok(name) => {
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).put(
                    number.to_string(),
                    name.clone(),
                    Instant::now(),
                );
                name
            }
            Err(e) => {
                tracing::debug!(error = %e, "reverse lookup failed");
                None
            }
        }
    }

    /// `Ok(None)`: the service answered that it has no name (404, empty answer, no field).
    async fn fetch(&self, url: &str) -> Result<Option<String>, reqwest::Error> {
        let mut resp = self.client.get(url).send().await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp_ok = resp.error_for_status_ref().map(|_| ());
        resp_ok?;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            let room = MAX_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
        let text = String::from_utf8_lossy(&body);
        Ok(match &self.json_field {
            Some(f) => json_name(&text, f),
            None => clean_name(&text),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::extract::Query;
    use axum::routing::get;
    use std::collections::HashMap as Map;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A directory on loopback: `/text` answers plain text, `/json` JSON, `/slow` too late,
    /// `/fail` 500, `/none` 404. Counts requests.
    pub(crate) async fn directory() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let count = move || {
            h.fetch_add(1, Ordering::SeqCst);
        };
        let (c1, c2, c3, c4) = (count.clone(), count.clone(), count.clone(), count.clone());
        let app = axum::Router::new()
            .route(
                "/text",
                get(move |Query(q): Query<Map<String, String>>| async move {
                    c1();
                    match q.get("number").map(String::as_str) {
                        Some("+49301234") => "Example GmbH\nBerlin\n".to_string(),
                        _ => String::new(),
                    }
                }),
            )
            .route(
                "/json",
                get(move |Query(q): Query<Map<String, String>>| async move {
                    c2();
                    axum::Json(
                        serde_json::json!({"result": {"name": format!("N {}", q["number"])}}),
                    )
                }),
            )
            .route(
                "/slow",
                get(move || async move {
                    c3();
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "Too Late"
                }),
            )
            .route(
                "/fail",
                get(move || async move {
                    c4();
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "Oops")
                }),
            )
            .route(
                "/none",
                get(|| async { (axum::http::StatusCode::NOT_FOUND, "Nobody") }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        (format!("http://{addr}"), hits)
    }

    fn client(url: String, json_field: Option<&str>) -> ReverseLookup {
        ReverseLookup::new(&ReverseConfig {
            url: Some(url),
            json_field: json_field.map(str::to_string),
            timeout_ms: 300,
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    #[tokio::test]
    async fn text_answers_are_named_and_cached() {
        let (base, hits) = directory().await;
        let r = client(format!("{base}/text?number={{number}}"), None);
        assert_eq!(r.lookup("+49301234").await.as_deref(), Some("Example GmbH"));
        assert_eq!(r.lookup("+49301234").await.as_deref(), Some("Example GmbH"));
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "second answer from the cache"
        );
        assert_eq!(r.lookup("+49309999").await, None);
        assert_eq!(r.cached("+49309999", Instant::now()), Some(None));
    }

    #[tokio::test]
    async fn json_answers_use_the_field() {
        let (base, _) = directory().await;
        let r = client(
            format!("{base}/json?number={{number}}"),
            Some("result.name"),
        );
        assert_eq!(r.lookup("+4930").await.as_deref(), Some("N +4930"));
    }

    #[tokio::test]
    async fn slow_and_failing_services_give_no_name_and_are_asked_again() {
        let (base, hits) = directory().await;
        let slow = client(format!("{base}/slow?n={{number}}"), None);
        let t = Instant::now();
        assert_eq!(slow.lookup("+4930").await, None);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(slow.cached("+4930", Instant::now()), None);
        let fail = client(format!("{base}/fail?n={{number}}"), None);
        assert_eq!(fail.lookup("+4930").await, None);
        assert_eq!(fail.lookup("+4930").await, None);
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        let none = client(format!("{base}/none?n={{number}}"), None);
        assert_eq!(none.lookup("+4930").await, None);
        assert_eq!(none.cached("+4930", Instant::now()), Some(None));
    }

    #[test]
    fn the_cache_is_bounded_and_expires() {
        let mut c = Cache {
            map: HashMap::new(),
            cap: 2,
            ttl: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        c.put("a".into(), Some("A".into()), t0);
        c.put("b".into(), None, t0 + Duration::from_secs(1));
        c.put("c".into(), Some("C".into()), t0 + Duration::from_secs(2));
        assert_eq!(c.map.len(), 2);
        assert_eq!(
            c.get("a", t0 + Duration::from_secs(2)),
            None,
            "oldest evicted"
        );
        assert_eq!(c.get("b", t0 + Duration::from_secs(2)), Some(None));
        assert_eq!(c.get("c", t0 + Duration::from_secs(12)), None, "expired");
    }

    #[test]
    fn configuration_and_answer_cleaning() {
        assert!(ReverseLookup::new(&ReverseConfig::default())
            .unwrap()
            .is_none());
        for bad in ["ftp://x/{number}", "https://x/lookup"] {
            let cfg = ReverseConfig {
                url: Some(bad.into()),
                ..Default::default()
            };
            assert!(matches!(
                ReverseLookup::new(&cfg),
                Err(ReverseError::Url(_))
            ));
        }
        assert_eq!(encode("+49 30"), "%2B49%2030");
        assert_eq!(
            clean_name("\n  Jane\u{7} Doe \r\nx").as_deref(),
            Some("Jane Doe")
        );
        assert_eq!(
            clean_name(&"x".repeat(200)).map(|n| n.len()),
            Some(MAX_NAME_CHARS)
        );
        assert_eq!(clean_name(" \n "), None);
        assert_eq!(
            json_name(r#"{"a":[{"n":"X"}]}"#, "a.0.n").as_deref(),
            Some("X")
        );
        assert_eq!(json_name(r#"{"a":1}"#, "a"), None);
        assert_eq!(json_name("not json", "a"), None);
        assert!(ReverseLookup::wants("+4930"));
        assert!(!ReverseLookup::wants("1234"));
    }
}
