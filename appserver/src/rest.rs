//! The REST API of the caller-ID pipeline (JSON, bearer token like the HSS's):
//!
//! - `GET /api/calls?limit=&outcome=&since=&caller=`: the call log, newest first. `since`
//!   is Unix seconds or RFC 3339; `outcome` one of `answered`, `missed`, `blocked`,
//!   `cancelled`, `answered_elsewhere`.
//! - `GET /api/phonebook`: `[{"number", "name"}]`.
//! - `GET /api/blocklist`: `[{"written", "origin"}]`; `POST /api/blocklist` with
//!   `{"entry": "0900*"}` adds one (201, or 400 naming what is wrong).
//!
//! The lead mounts [`router`] (or calls [`start`]); the token check is
//! [`opskit::http::bearer_ok`], shared with the other binaries.

use crate::calllog::{self, Filter};
use crate::pipeline::Pipeline;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// `[rest]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestConfig {
    /// Where the API listens (default none: no API; the call log is still written).
    pub listen: Option<SocketAddr>,
    /// The bearer token every request needs; falls back to the environment variable
    /// `APPSERVER_REST_TOKEN` (default none; a listen address without a token is refused
    /// rather than serving an open API).
    pub token: Option<String>,
}

/// The commented TOML snippet of `[rest]`.
pub const EXAMPLE: &str = r#"[rest]
# The call log, phonebook and blocklist over HTTP (JSON): GET /api/calls, /api/phonebook,
# /api/blocklist; POST /api/blocklist {"entry": "0900*"}.
# listen = "127.0.0.1:8091"
# Required with listen (Authorization: Bearer <token>); or APPSERVER_REST_TOKEN.
# token = "change-me"
"#;

/// The environment variable read when `[rest] token` is not set.
pub const TOKEN_ENV: &str = "APPSERVER_REST_TOKEN";

/// Why the API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// A listen address without a token.
    #[error("[rest] listen is set but no token (nor {TOKEN_ENV}): refusing an open API")]
    NoToken,
    /// The address cannot be bound.
    #[error("[rest] listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// The largest request body accepted (a blocklist entry is a few bytes).
pub const MAX_BODY_BYTES: usize = 4096;

#[derive(Clone)]
struct AppState {
    pipeline: Arc<Pipeline>,
    token: Arc<str>,
}

/// The API router, every route behind the bearer token.
pub fn router(pipeline: Arc<Pipeline>, token: String) -> Router {
    let st = AppState {
        pipeline,
        token: token.into(),
    };
    Router::new()
        .route("/api/calls", get(calls))
        .route("/api/phonebook", get(phonebook))
        .route("/api/blocklist", get(blocklist).post(add_block))
        .layer(middleware::from_fn_with_state(st.clone(), auth))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(st)
}

/// Starts the API when `[rest] listen` is set: returns the bound address (port 0 picks
/// one), `None` when no API is configured.
pub async fn start(
    cfg: &RestConfig,
    pipeline: Arc<Pipeline>,
) -> Result<Option<SocketAddr>, RestError> {
    let Some(addr) = cfg.listen else {
        return Ok(None);
    };
    let token = cfg
        .token
        .clone()
        .or_else(|| std::env::var(TOKEN_ENV).ok())
        .filter(|t| !t.is_empty())
        .ok_or(RestError::NoToken)?;
    let bind = |source| RestError::Bind { addr, source };
    let l = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let local = l.local_addr().map_err(bind)?;
    let app = router(pipeline, token);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(l, app).await {
            tracing::error!(error = %e, "REST server stopped");
        }
    });
    tracing::info!(%local, "REST API on http://{local}/api/calls");
    Ok(Some(local))
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if !opskit::http::bearer_ok(req.headers(), &st.token) {
        return err(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    next.run(req).await
}

fn err(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// `since` as Unix seconds or RFC 3339, in Unix milliseconds.
pub fn parse_since(s: &str) -> Option<i64> {
    if let Ok(secs) = s.trim().parse::<i64>() {
        return secs.checked_mul(1000);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

#[derive(Debug, Deserialize)]
struct CallsQ {
    limit: Option<usize>,
    outcome: Option<String>,
    since: Option<String>,
    caller: Option<String>,
}

async fn calls(
    State(st): State<AppState>,
    q: Result<Query<CallsQ>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return err(StatusCode::BAD_REQUEST, "bad query string");
    };
    let outcome = match q.outcome.as_deref() {
        None | Some("") => None,
        Some(o) => match calllog::parse_outcome(o) {
            Some(o) => Some(o),
            None => return err(StatusCode::BAD_REQUEST, format!("unknown outcome {o:?}")),
        },
    };
    let since = match q.since.as_deref() {
        None | Some("") => None,
        Some(s) => match parse_since(s) {
            Some(ms) => Some(ms),
            None => {
                return err(
                    StatusCode::BAD_REQUEST,
                    "since must be Unix seconds or RFC 3339",
                )
            }
        },
    };
    let caller = q.caller.as_deref().filter(|c| !c.is_empty()).map(|c| {
        st.pipeline
            .plan()
            .normalize(c)
            .unwrap_or_else(|| c.to_string())
    });
    let f = Filter {
        limit: q.limit.unwrap_or(100),
        outcome,
        caller,
        since,
    };
    let Some(log) = st.pipeline.calllog().cloned() else {
        return Json(Vec::<calllog::CallRecord>::new()).into_response();
    };
    match tokio::task::spawn_blocking(move || log.query(&f)).await {
        Ok(Ok(rows)) => Json(rows).into_response(),
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn phonebook(State(st): State<AppState>) -> Response {
    let pb = st.pipeline.phonebook();
    let v: Vec<_> = pb
        .entries()
        .map(|(number, name)| json!({ "number": number, "name": name }))
        .collect();
    Json(v).into_response()
}

async fn blocklist(State(st): State<AppState>) -> Response {
    Json(st.pipeline.blocklist().get().entries().to_vec()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    entry: String,
}

async fn add_block(
    State(st): State<AppState>,
    body: Result<Json<NewEntry>, JsonRejection>,
) -> Response {
    let e = match body {
        Ok(Json(e)) => e,
        Err(r) => return err(StatusCode::BAD_REQUEST, r.body_text()),
    };
    let h = st.pipeline.blocklist().clone();
    match tokio::task::spawn_blocking(move || h.add(&e.entry)).await {
        Ok(Ok(entry)) => (StatusCode::CREATED, Json(entry)).into_response(),
        Ok(Err(e @ crate::blocklist::BlocklistError::Entry { .. })) => {
            err(StatusCode::BAD_REQUEST, e)
        }
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calllog::CallLogConfig;
    use crate::event::{Offer, Progress, RawCaller, Source};
    use crate::phonebook::PhonebookConfig;
    use crate::pipeline::{self, Sections};
    use std::time::{Duration, Instant, SystemTime};

    async fn api(tag: &str) -> (String, Arc<Pipeline>) {
        let dir = std::env::temp_dir().join(format!("rest-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("book.csv"), "number,name\n030 1,\"Doe, Jane\"\n").unwrap();
        let s = Sections {
            phonebook: PhonebookConfig {
                file: Some(dir.join("book.csv")),
                poll_seconds: 60,
            },
            calllog: CallLogConfig {
                path: dir.join("calls.db"),
                ..Default::default()
            },
            ..Default::default()
        };
        let (bus, _) = tokio::sync::broadcast::channel(16);
        let p = pipeline::start(&s, bus).unwrap();
        let cfg = RestConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            token: Some("tok".into()),
        };
        let addr = start(&cfg, p.clone()).await.unwrap().unwrap();
        (format!("http://{addr}"), p)
    }

    fn offer(id: &str, number: &str, secs: u64) -> Offer {
        Offer {
            call_id: id.into(),
            caller: RawCaller::Plain {
                number: Some(number.into()),
                name: None,
                anonymous: false,
            },
            callee: "aaln/1@gw".into(),
            source: Source::Pcap,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[tokio::test]
    async fn the_api_needs_the_token_and_serves_calls_phonebook_and_blocklist() {
        let (base, p) = api("all").await;
        let c = reqwest::Client::new();
        let r = c.get(format!("{base}/api/calls")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = c
            .get(format!("{base}/api/calls"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        let now = Instant::now();
        p.offer_at(offer("a", "0301", 1000), now);
        p.progress_at("a", Progress::Failed(486), SystemTime::UNIX_EPOCH, now);
        p.offer_at(offer("b", "0302", 2000), now);
        p.calllog().unwrap().flush(Duration::from_secs(5));
        let get = |q: &'static str| {
            let (c, base) = (c.clone(), base.clone());
            async move {
                let r = c
                    .get(format!("{base}{q}"))
                    .bearer_auth("tok")
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.json::<serde_json::Value>().await.unwrap(),
                )
            }
        };
        let (s, v) = get("/api/calls").await;
        assert_eq!(s, 200);
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["call_id"], "b");
        assert_eq!(v[1]["caller_name"], "Doe, Jane");
        let (_, v) = get("/api/calls?outcome=missed").await;
        assert_eq!(v.as_array().unwrap().len(), 1);
        let (_, v) = get("/api/calls?since=1500").await;
        assert_eq!(v[0]["call_id"], "b");
        assert_eq!(v.as_array().unwrap().len(), 1);
        let (_, v) = get("/api/calls?since=1970-01-01T00:25:00Z&limit=5").await;
        assert_eq!(v.as_array().unwrap().len(), 1);
        let (_, v) = get("/api/calls?caller=0301").await;
        assert_eq!(v[0]["call_id"], "a");
        assert_eq!(get("/api/calls?outcome=ringing").await.0, 400);
        assert_eq!(get("/api/calls?since=yesterday").await.0, 400);
        assert_eq!(get("/api/calls?limit=-1").await.0, 400);

        let (_, v) = get("/api/phonebook").await;
        assert_eq!(v, json!([{ "number": "+49301", "name": "Doe, Jane" }]));

        let post = |body: serde_json::Value| {
            let (c, base) = (c.clone(), base.clone());
            async move {
                c.post(format!("{base}/api/blocklist"))
                    .bearer_auth("tok")
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(post(json!({ "entry": "0302" })).await, 201);
        assert_eq!(post(json!({ "entry": "nonsense" })).await, 400);
        assert_eq!(post(json!({ "nope": 1 })).await, 400);
        let (_, v) = get("/api/blocklist").await;
        assert_eq!(v, json!([{ "written": "0302", "origin": "rest" }]));
        assert!(matches!(
            p.offer_at(offer("c", "0302", 3000), now),
            crate::event::Verdict::Block { .. }
        ));
    }

    #[tokio::test]
    async fn no_listen_no_api_and_no_token_no_start() {
        let (_, p) = api("cfg").await;
        assert!(start(&RestConfig::default(), p.clone())
            .await
            .unwrap()
            .is_none());
        if std::env::var(TOKEN_ENV).is_err() {
            let cfg = RestConfig {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                token: Some(String::new()),
            };
            assert!(matches!(start(&cfg, p).await, Err(RestError::NoToken)));
        }
        assert_eq!(parse_since("10"), Some(10_000));
        assert_eq!(parse_since("1970-01-01T00:00:10+00:00"), Some(10_000));
        assert_eq!(parse_since("x"), None);
    }
}
