//! The HSS web page: subscribers (list, add, edit, delete, CSV import), the registrations
//! the HSS knows, and the recent calls of the application server's call log (fetched by the
//! HSS, [`crate::rest::CallLogSource`]), for lab users who want a browser rather than `curl`.
//!
//! Plain HTML, one vanilla JS file and one CSS file, embedded in the binary: nothing to
//! build, nothing fetched from elsewhere. The page itself is public (it holds no data);
//! every data call it makes goes to the bearer-token API in [`crate::rest`], with the token
//! the user types kept in `sessionStorage` (never in a URL, never in a cookie, so no CSRF).
//! The script builds the DOM with `textContent` only, and the Content-Security-Policy
//! ([`crate::rest::CSP`]) forbids inline script, so data from the store can never run.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page.
pub const INDEX_HTML: &str = include_str!("web/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("web/app.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("web/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets change only with the binary; revalidating each load is cheap.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `/`, `/app.js`, `/app.css`, open (no token); the caller adds the security headers.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_no_inline_script_or_handlers() {
        // The CSP would block them anyway; this catches the mistake before a browser does.
        let lower = INDEX_HTML.to_ascii_lowercase();
        assert!(lower.contains("<script src=\"/app.js\""), "script tag");
        assert_eq!(lower.matches("<script").count(), 1, "one external script");
        for attr in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " onchange=",
            "javascript:",
        ] {
            assert!(!lower.contains(attr), "inline handler {attr}");
        }
        assert!(!lower.contains("<style"), "inline style block");
        assert!(!lower.contains(" style="), "inline style attribute");
    }

    #[test]
    fn script_never_writes_html_from_strings() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
        // The token lives in sessionStorage and travels only in the Authorization header.
        assert!(APP_JS.contains("sessionStorage"));
        assert!(APP_JS.contains("Authorization"));
        assert!(!APP_JS.contains("localStorage"));
    }
}
