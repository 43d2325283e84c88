//! A `/metrics` endpoint for binaries that have no HTTP server of their own.
//!
//! The HSS serves `/metrics` on its REST router; the P-CSCF (and later the S-CSCF and the
//! application server) have nothing else to say over HTTP, so they start this one.

use crate::metrics::CONTENT_TYPE;
use axum::http::header;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;

/// `[metrics]` of a binary without a REST server of its own (`pcscf`, `scscf`,
/// `appserver` without `[rest]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where to serve Prometheus `GET /metrics` (plain HTTP, no authentication: keep it on a
    /// management address). Default: none (off), so that several nodes on one host do not
    /// fight over a port. Conventional choices: `127.0.0.1:9091` for the P-CSCF, `:9092` for
    /// the S-CSCF, `:9093` for the application server.
    pub listen: Option<SocketAddr>,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address cannot be bound.
    #[error("metrics listener on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// A running `/metrics` endpoint. Dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (the real port when the configuration said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `GET /metrics` with whatever `render` returns at scrape time
/// (the text exposition; see [`crate::metrics::Exposition`]). Other paths get 404.
/// Must be called inside a tokio runtime.
pub async fn serve_metrics<F>(addr: SocketAddr, render: F) -> Result<MetricsServer, ServeError>
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let render = Arc::new(render);
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], render()) }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(%local_addr, error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(%local_addr, "metrics on http://{local_addr}/metrics");
    Ok(MetricsServer { local_addr, task })
}

/// Whether a request's headers carry `Authorization: Bearer <token>` with the right token
/// (RFC 6750 §2.1). Compared in constant time so the answer's timing does not reveal how
/// much of a guess was right. An empty `token` never matches: an API is never open by
/// accident.
pub fn bearer_ok(headers: &axum::http::HeaderMap, token: &str) -> bool {
    !token.is_empty()
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| ct_eq(t.trim().as_bytes(), token.as_bytes()))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {

    #[test]
    fn bearer_tokens_match_exactly() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!bearer_ok(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(bearer_ok(&h, "s3cret"));
        assert!(!bearer_ok(&h, "s3cre"));
        assert!(!bearer_ok(&h, "s3crett"));
        assert!(!bearer_ok(&h, ""));
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!bearer_ok(&h, "s3cret"));
    }

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.1 GET over loopback; returns the whole response.
    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_render_on_metrics_only_and_stops_on_drop() {
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let n2 = n.clone();
        let srv = serve_metrics("127.0.0.1:0".parse().unwrap(), move || {
            let v = n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("scrapes {v}\n")
        })
        .await
        .unwrap();
        let addr = srv.local_addr();
        assert_ne!(addr.port(), 0);
        let r = get(addr, "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            r.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{r}"
        );
        assert!(r.ends_with("scrapes 0\n"), "{r}");
        assert!(get(addr, "/metrics").await.ends_with("scrapes 1\n"));
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
        drop(srv);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn bind_failure_names_the_address() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let e = serve_metrics(addr, String::new).await.unwrap_err();
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
