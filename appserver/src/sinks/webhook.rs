//! # Webhook sink: each event as an HTTP POST
//!
//! `POST <url>` with `Content-Type: application/json` and the [`super::json`] form as
//! the body; `Authorization: Bearer <token>` when a token is set. A 2xx is delivered.
//!
//! Failures are retried `retries` times (default 3) with exponential backoff from
//! `backoff_ms` (500 ms, 1 s, 2 s, … capped at [`MAX_BACKOFF`]) when they may pass:
//! connection errors, timeouts, `408`, `429` and `5xx`. Any other status (a `4xx` that
//! says the request itself is wrong) is not retried. After the last attempt the event is
//! given up, counted in `failed` and logged.
//!
//! Events are delivered one at a time in bus order, so the events of one call reach the
//! endpoint in order (ring before connect before end) and a retried event is never
//! overtaken. The price: while an endpoint is down, later events wait (at most
//! `(retries + 1) · timeout` plus the backoffs each), and if the bus runs more than its
//! capacity ahead the oldest are lost (logged).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{backoff, json, Shutdown, SinkError, SinkHandle, SinkStats, Subscription};
use crate::event::EventBus;

/// The longest pause between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The `[webhook]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// POST events. Default `false`.
    pub enabled: bool,
    /// The endpoint (`http://` or `https://`). Default empty; required when enabled.
    pub url: String,
    /// Bearer token for `Authorization`. Default empty: no header.
    pub token: String,
    /// Per-attempt timeout in milliseconds. Default 5000: a home-automation endpoint
    /// answers in well under a second, and a hung one must not hold later calls long.
    pub timeout_ms: u64,
    /// Retries after the first attempt. Default 3.
    pub retries: u32,
    /// First backoff in milliseconds, doubled each retry. Default 500.
    pub backoff_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: String::new(),
            token: String::new(),
            timeout_ms: 5000,
            retries: 3,
            backoff_ms: 500,
        }
    }
}

/// The `[webhook]` section as the example configuration shows it.
pub const EXAMPLE: &str = r#"[webhook]
# POST each call event as JSON.
enabled = false
# The endpoint, e.g. "http://homeassistant.local:8123/api/webhook/incoming-call".
url = ""
# Sent as "Authorization: Bearer <token>" when set.
token = ""
timeout_ms = 5000
retries = 3
backoff_ms = 500
"#;

/// Whether an HTTP status is worth another attempt.
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// How one event's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A 2xx after this many attempts.
    Delivered(u32),
    /// Given up after this many attempts; the last error.
    GaveUp(u32, String),
    /// Shutdown came during the retries.
    Stopped,
}

/// Starts the webhook sender.
pub fn spawn(
    cfg: &WebhookConfig,
    bus: &EventBus,
    shutdown: Shutdown,
) -> Result<SinkHandle, SinkError> {
    let url = reqwest::Url::parse(&cfg.url).map_err(|e| SinkError::Config {
        section: "webhook",
        key: "url",
        value: cfg.url.clone(),
        reason: e.to_string(),
    })?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .build()?;
    let stats = Arc::new(SinkStats::default());
    let mut sub = Subscription::new("webhook", bus, shutdown.clone(), stats.clone());
    let (cfg, st) = (cfg.clone(), stats.clone());
    let task = tokio::spawn(async move {
        let mut stop = shutdown;
        while let Some(ev) = sub.next().await {
            let body = json::encode_local(&ev);
            match deliver(&client, &url, &cfg, body, &mut stop).await {
                Delivery::Delivered(_) => SinkStats::add(&st.sent, 1),
                Delivery::GaveUp(attempts, last) => {
                    SinkStats::add(&st.failed, 1);
                    tracing::warn!(sink = "webhook", %url, attempts, error = %last, call_id = %ev.call_id, "gave up delivering an event");
                }
                Delivery::Stopped => break,
            }
        }
    });
    Ok(SinkHandle {
        name: "webhook",
        task,
        stats,
        local_addr: None,
    })
}

/// POSTs `body` with the retries of `cfg`.
async fn deliver(
    client: &reqwest::Client,
    url: &reqwest::Url,
    cfg: &WebhookConfig,
    body: String,
    stop: &mut Shutdown,
) -> Delivery {
    let mut last = String::new();
    let base = Duration::from_millis(cfg.backoff_ms);
    for attempt in 0..=cfg.retries {
        if attempt > 0 {
            let pause = backoff(attempt - 1, base, MAX_BACKOFF);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = Subscription::stopped(stop) => return Delivery::Stopped,
            }
        }
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if !cfg.token.is_empty() {
            req = req.bearer_auth(&cfg.token);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Delivery::Delivered(attempt + 1),
            Ok(r) => {
                last = format!("HTTP {}", r.status());
                if !retryable(r.status().as_u16()) {
                    return Delivery::GaveUp(attempt + 1, last);
                }
            }
            Err(e) => last = e.to_string(),
        }
        tracing::info!(sink = "webhook", attempt = attempt + 1, error = %last, "delivery failed; will retry if attempts remain");
    }
    Delivery::GaveUp(cfg.retries + 1, last)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;
    use tokio::sync::{broadcast, watch};

    use super::*;
    use crate::event::CallEventKind;
    use crate::sinks::testutil::event;

    #[test]
    fn retryable_table() {
        for (s, want) in [
            (500, true),
            (503, true),
            (599, true),
            (408, true),
            (429, true),
            (400, false),
            (401, false),
            (404, false),
            (410, false),
            (302, false),
        ] {
            assert_eq!(retryable(s), want, "{s}");
        }
    }

    #[test]
    fn example_is_the_defaults() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct File {
            webhook: WebhookConfig,
        }
        opskit::config::check_example(EXAMPLE, &File::default()).unwrap();
    }

    #[test]
    fn a_bad_url_is_a_config_error() {
        let (bus, _) = broadcast::channel(1);
        let (_s, sd) = watch::channel(false);
        let cfg = WebhookConfig {
            enabled: true,
            url: "not a url".into(),
            ..Default::default()
        };
        assert!(matches!(
            spawn(&cfg, &bus, sd),
            Err(SinkError::Config { key: "url", .. })
        ));
    }

    /// What the endpoint saw: (authorization header, event kind) per request.
    #[derive(Default)]
    struct Seen {
        requests: Mutex<Vec<(String, String)>>,
        fail_first: usize,
    }

    async fn hook(State(s): State<Arc<Seen>>, headers: HeaderMap, body: String) -> StatusCode {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let kind = json::decode(body.as_bytes())
            .map(|w| w.event)
            .unwrap_or_else(|e| format!("bad: {e}"));
        let mut r = s.requests.lock().unwrap();
        r.push((auth, kind));
        if r.len() <= s.fail_first {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        }
    }

    async fn endpoint(fail_first: usize) -> (String, Arc<Seen>) {
        let seen = Arc::new(Seen {
            fail_first,
            ..Default::default()
        });
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(seen.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, seen)
    }

    async fn wait_for(h: &SinkHandle, sent: u64, failed: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while SinkStats::get(&h.stats.sent) < sent || SinkStats::get(&h.stats.failed) < failed {
            assert!(tokio::time::Instant::now() < deadline, "webhook too slow");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn fails_twice_then_delivers_in_order() {
        let (url, seen) = endpoint(2).await;
        let cfg = WebhookConfig {
            enabled: true,
            url,
            token: "s3cret".into(),
            backoff_ms: 20,
            ..Default::default()
        };
        let (bus, _) = broadcast::channel(16);
        let (stop, sd) = watch::channel(false);
        let h = spawn(&cfg, &bus, sd).unwrap();
        bus.send(Arc::new(event(CallEventKind::Ring, 0))).unwrap();
        bus.send(Arc::new(event(CallEventKind::Connect, 3)))
            .unwrap();
        wait_for(&h, 2, 0).await;
        let r = seen.requests.lock().unwrap().clone();
        let kinds: Vec<&str> = r.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(kinds, ["ring", "ring", "ring", "connect"]);
        assert!(r.iter().all(|(a, _)| a == "Bearer s3cret"), "{r:?}");
        assert_eq!(SinkStats::get(&h.stats.failed), 0);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), h.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn gives_up_after_the_retries() {
        let (url, seen) = endpoint(usize::MAX).await;
        let cfg = WebhookConfig {
            enabled: true,
            url,
            retries: 2,
            backoff_ms: 10,
            ..Default::default()
        };
        let (bus, _) = broadcast::channel(16);
        let (_stop, sd) = watch::channel(false);
        let h = spawn(&cfg, &bus, sd).unwrap();
        bus.send(Arc::new(event(CallEventKind::Ring, 0))).unwrap();
        wait_for(&h, 0, 1).await;
        let r = seen.requests.lock().unwrap().clone();
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r.iter().all(|(a, _)| a.is_empty()), "no token, no header");
        assert_eq!(SinkStats::get(&h.stats.sent), 0);
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_retried_and_given_up() {
        // A port nobody listens on: connection refused every time.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        drop(l);
        let cfg = WebhookConfig {
            enabled: true,
            url,
            retries: 1,
            backoff_ms: 10,
            timeout_ms: 1000,
            ..Default::default()
        };
        let client = reqwest::Client::new();
        let (_s, mut sd) = watch::channel(false);
        let url = reqwest::Url::parse(&cfg.url).unwrap();
        let d = deliver(&client, &url, &cfg, "{}".into(), &mut sd).await;
        assert!(matches!(d, Delivery::GaveUp(2, _)), "{d:?}");
    }
}
