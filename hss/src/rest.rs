//! Provisioning REST API (JSON, bearer token), `/metrics`, `/openapi.json`, and the web page
//! ([`crate::web`]) that uses the API from a browser with the same token.

// Handlers return `Result<Response, Response>` (the axum idiom); the size of the error is
// irrelevant on this cold path.
#![allow(clippy::result_large_err)]

use crate::cx::DeregReason;
use crate::provision::NewSubscriber;
use crate::server::Hss;
use crate::store::{Impu, Subscriber};
use crate::store::{RegState, StoreError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::HeaderValue;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    hss: Arc<Hss>,
    token: Arc<str>,
    calls: Option<Arc<CallLogSource>>,
}

/// Where the web page's "Recent calls" come from: the application server's call log
/// (`GET /api/calls` of `appserver`), fetched by the HSS with that server's token so the
/// browser holds only the HSS token and the page stays same-origin (no CORS).
#[derive(Debug, Clone)]
pub struct CallLogSource {
    /// The call log URL, e.g. `http://127.0.0.1:8091/api/calls`.
    pub url: String,
    /// The application server's REST bearer token.
    pub token: String,
}

/// How long the HSS waits for the application server's call log.
const CALLS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Largest request body the API reads (axum's default, stated here so the 413 answer and
/// the OpenAPI description have one source): a subscriber with its iFCs is a few kB.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// The API router: `/api/v1/*` behind the bearer token, the rest open.
pub fn router(hss: Arc<Hss>, token: String) -> Router {
    router_with_calls(hss, token, None)
}

/// [`router`] with `/api/v1/calls` served from an application server's call log.
pub fn router_with_calls(hss: Arc<Hss>, token: String, call_log: Option<CallLogSource>) -> Router {
    let st = AppState {
        hss,
        token: token.into(),
        calls: call_log.map(Arc::new),
    };
    let api = Router::new()
        .route("/subscribers", get(list).post(add))
        .route(
            "/subscribers/{id}",
            get(show).put(update).patch(patch).delete(remove),
        )
        .route("/registrations", get(registrations))
        .route("/calls", get(calls))
        .route("/import", post(import_csv))
        .route("/subscribers/{id}/rtr", post(rtr))
        .route("/subscribers/{id}/ppr", post(ppr))
        .route("/profiles/{name}", get(get_profile).put(put_profile))
        .layer(middleware::from_fn_with_state(st.clone(), auth))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .merge(crate::web::routes())
        .layer(middleware::map_response(security_headers))
        .with_state(st)
}

/// Binds `listen`, serves [`router`] on it in a background task and returns the bound
/// address (port 0 picks one): `hss run` and in-process labs share this.
pub async fn serve(
    hss: Arc<Hss>,
    listen: std::net::SocketAddr,
    token: String,
    call_log: Option<CallLogSource>,
) -> std::io::Result<std::net::SocketAddr> {
    let l = tokio::net::TcpListener::bind(listen).await?;
    let a = l.local_addr()?;
    let app = router_with_calls(hss, token, call_log);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(l, app).await {
            tracing::error!(error = %e, "REST server stopped");
        }
    });
    Ok(a)
}

/// Content-Security-Policy of every response: the page loads its own script and style only
/// (no inline script, no eval), talks only to this origin, and cannot be framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Headers on every response, API and page alike: a browser must neither sniff a JSON
/// answer into HTML nor cache subscriber data.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    st.hss.metrics.rest();
    if !opskit::http::bearer_ok(req.headers(), &st.token) {
        return err(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    next.run(req).await
}

#[derive(Deserialize)]
struct CallsQuery {
    limit: Option<u32>,
}

/// `GET /api/v1/calls?limit=`: the application server's call log, newest first, passed
/// through (404 when none is configured, 502 when it does not answer well).
async fn calls(State(st): State<AppState>, Query(q): Query<CallsQuery>) -> Response {
    let Some(src) = st.calls.clone() else {
        return err(
            StatusCode::NOT_FOUND,
            "no application server call log configured ([rest] calls_url)",
        );
    };
    let limit = q.limit.unwrap_or(50).min(500);
    let fetch = async {
        let r = reqwest::Client::new()
            .get(&src.url)
            .query(&[("limit", limit)])
            .bearer_auth(&src.token)
            .timeout(CALLS_TIMEOUT)
            .send()
            .await?
            .error_for_status()?;
        r.json::<serde_json::Value>().await
    };
    match fetch.await {
        Ok(v @ serde_json::Value::Array(_)) => Json(json!({ "calls": v })).into_response(),
        Ok(_) => err(
            StatusCode::BAD_GATEWAY,
            "the application server's call log is not a JSON list",
        ),
        Err(e) => err(
            StatusCode::BAD_GATEWAY,
            format!("application server call log: {e}"),
        ),
    }
}

fn err(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// A body that is not the JSON we want is 400, except one over [`MAX_BODY_BYTES`]: 413
/// Payload Too Large (RFC 9110 §15.5.14), so a client knows that resending cannot help.
fn json_err(e: JsonRejection) -> Response {
    let code = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    err(code, e.body_text())
}

fn store_err(e: StoreError) -> Response {
    match e {
        StoreError::NotFound(_) => err(StatusCode::NOT_FOUND, e),
        StoreError::Conflict(_) => err(StatusCode::CONFLICT, e),
        StoreError::Invalid(_) => err(StatusCode::UNPROCESSABLE_ENTITY, e),
        _ => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

type R = Result<Response, Response>;

fn blocking_store<T>(
    st: &AppState,
    f: impl FnOnce(&mut crate::store::Store) -> Result<T, StoreError>,
) -> Result<T, Response> {
    // Store calls are short; the REST API is not a hot path.
    let mut s = st.hss.store.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut s).map_err(store_err)
}

#[derive(Deserialize)]
struct ListQ {
    #[serde(default)]
    details: bool,
}

async fn list(State(st): State<AppState>, Query(q): Query<ListQ>) -> R {
    let v = blocking_store(&st, |s| s.list())?;
    if !q.details {
        return Ok(Json(json!({ "subscribers": v })).into_response());
    }
    // The page's table: every subscriber, secrets masked.
    let full = blocking_store(&st, |s| {
        let mut out = Vec::with_capacity(v.len());
        for i in &v {
            if let Some(x) = s.get(i)? {
                out.push(x.masked());
            }
        }
        Ok(out)
    })?;
    Ok(Json(json!({ "subscribers": full })).into_response())
}

/// What the HSS knows of a registration: state, the S-CSCF (Server-Name and the Diameter
/// peer RTR/PPR go to) and the IMPUs, as a summary and per implicit registration set
/// (`sets`). Contacts are held by the S-CSCF, not the HSS.
async fn registrations(State(st): State<AppState>) -> R {
    let v = blocking_store(&st, |s| {
        s.registrations()?
            .into_iter()
            .map(|sub| Ok((s.irs_registrations(&sub.impi)?, sub)))
            .collect::<Result<Vec<_>, crate::store::StoreError>>()
    })?;
    let regs: Vec<Value> = v
        .iter()
        .map(|(sets, s)| {
            json!({
                "sets": sets.iter().map(|r| json!({
                    "irs": r.irs,
                    "reg_state": r.state,
                    "scscf_name": r.scscf_name,
                    "scscf_host": r.scscf_host,
                    "impus": s.impus.iter().filter(|u| u.irs == r.irs).map(|u| u.uri.as_str()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "impi": s.impi,
                "imsi": s.imsi,
                "msisdn": s.msisdn,
                "reg_state": s.reg_state,
                "scscf_name": s.scscf_name,
                "scscf_host": s.scscf_host,
                "scscf_realm": s.scscf_realm,
                "impus": s.impus.iter().map(|u| u.uri.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "registrations": regs })).into_response())
}

#[derive(Deserialize)]
struct ImportQ {
    #[serde(default)]
    update: bool,
    profile: Option<String>,
}

/// CSV import, the same format and the same code as `hss subscriber import`.
async fn import_csv(State(st): State<AppState>, Query(q): Query<ImportQ>, body: String) -> R {
    let d = crate::csv::ImportDefaults {
        domain: st.hss.defaults.domain.clone(),
        mnc_digits: st.hss.defaults.mnc_digits,
        amf: st.hss.defaults.amf,
        profile: q.profile.filter(|p| !p.is_empty()),
    };
    let mut s = st.hss.store.lock().unwrap_or_else(|p| p.into_inner());
    match crate::csv::import(&mut s, &body, &d, q.update) {
        Ok(r) => Ok(Json(json!(r)).into_response()),
        Err(e @ crate::csv::ImportError::Csv(_)) => Err(err(StatusCode::UNPROCESSABLE_ENTITY, e)),
        Err(crate::csv::ImportError::Store { impi, source, done }) => {
            let code = match source {
                StoreError::Conflict(_) => StatusCode::CONFLICT,
                StoreError::Invalid(_) | StoreError::NotFound(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let msg = format!("{impi}: {source} (nothing after it was imported; update=true replaces existing ones)");
            Err((code, Json(json!({ "error": msg, "imported": done }))).into_response())
        }
    }
}

#[derive(Deserialize)]
struct ShowQ {
    #[serde(default)]
    show_secrets: bool,
}

async fn show(State(st): State<AppState>, Path(id): Path<String>, Query(q): Query<ShowQ>) -> R {
    let s = blocking_store(&st, |s| s.find(&id))?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no subscriber {id}")))?;
    let v = if q.show_secrets {
        serde_json::to_value(&s).unwrap_or_default()
    } else {
        s.masked()
    };
    Ok(Json(v).into_response())
}

async fn add(State(st): State<AppState>, body: Result<Json<NewSubscriber>, JsonRejection>) -> R {
    let Json(n) = body.map_err(json_err)?;
    let s = n
        .build(&st.hss.defaults)
        .map_err(|e| err(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    blocking_store(&st, |db| db.add(&s))?;
    Ok((StatusCode::CREATED, Json(s.masked())).into_response())
}

async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<NewSubscriber>, JsonRejection>,
) -> R {
    let Json(n) = body.map_err(json_err)?;
    let old = blocking_store(&st, |s| s.find(&id))?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no subscriber {id}")))?;
    replace(&st, old, n).await
}

/// A partial edit (`PATCH`): fields left out keep their value, so the page can edit a
/// subscriber without ever reading K or OPc back. An empty `msisdn`, `iccid` or `profile`
/// clears it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SubscriberPatch {
    msisdn: Option<String>,
    iccid: Option<String>,
    k: Option<String>,
    opc: Option<String>,
    op: Option<String>,
    amf: Option<String>,
    impus: Option<Vec<Impu>>,
    profile: Option<String>,
}

impl SubscriberPatch {
    /// The full input a `PUT` would carry: the old subscriber overlaid with the patch, so
    /// that [`NewSubscriber::build`] validates an edit exactly as it validates an add.
    fn over(self, old: &Subscriber) -> NewSubscriber {
        let clear = |v: Option<String>, old: &Option<String>| match v {
            Some(x) if x.trim().is_empty() => None,
            Some(x) => Some(x.trim().to_string()),
            None => old.clone(),
        };
        let (opc, op) = match (self.opc, self.op) {
            (None, None) => (Some(hex::encode(old.opc)), None),
            (opc, op) => (opc, op),
        };
        NewSubscriber {
            impi: Some(old.impi.clone()),
            imsi: old.imsi.clone(),
            iccid: clear(self.iccid, &old.iccid),
            msisdn: clear(self.msisdn, &old.msisdn),
            k: self.k.unwrap_or_else(|| hex::encode(old.k)),
            opc,
            op,
            amf: Some(self.amf.unwrap_or_else(|| hex::encode(old.amf))),
            sqn: Some(old.sqn),
            impus: Some(self.impus.unwrap_or_else(|| old.impus.clone())),
            ifcs: old.ifcs.clone(),
            profile: clear(self.profile, &old.profile),
            shared_ifc_set_ids: old.shared_ifc_set_ids.clone(),
        }
    }
}

async fn patch(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<SubscriberPatch>, JsonRejection>,
) -> R {
    let Json(p) = body.map_err(json_err)?;
    let old = blocking_store(&st, |s| s.find(&id))?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no subscriber {id}")))?;
    let n = p.over(&old);
    replace(&st, old, n).await
}

/// Stores `n` in place of `old`; a registered user's S-CSCF gets the new profile right
/// away (Cx PPR, TS 29.228 §6.2.2).
async fn replace(st: &AppState, old: Subscriber, n: NewSubscriber) -> R {
    let s = n
        .build(&st.hss.defaults)
        .map_err(|e| err(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    if s.impi != old.impi {
        return Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the IMPI of a subscriber cannot change",
        ));
    }
    blocking_store(st, |db| db.update(&old.impi, &s))?;
    let ppr = if old.reg_state != RegState::NotRegistered && old.scscf_host.is_some() {
        Some(match st.hss.ppr(&old.impi).await {
            Ok(r) => json!(r),
            Err(e) => json!({ "error": e.to_string() }),
        })
    } else {
        None
    };
    let mut v = s.masked();
    if let (Some(o), Some(p)) = (v.as_object_mut(), ppr) {
        o.insert("ppr".into(), p);
    }
    Ok(Json(v).into_response())
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> R {
    let s = blocking_store(&st, |s| s.find(&id))?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no subscriber {id}")))?;
    let mut rtr = None;
    if s.reg_state != RegState::NotRegistered && s.scscf_host.is_some() {
        rtr = Some(
            match st
                .hss
                .rtr(
                    &s.impi,
                    DeregReason::PermanentTermination,
                    Some("subscription deleted"),
                )
                .await
            {
                Ok(r) => json!(r),
                Err(e) => json!({ "error": e.to_string() }),
            },
        );
    }
    blocking_store(&st, |db| db.delete(&s.impi))?;
    Ok(Json(json!({ "deleted": s.impi, "rtr": rtr })).into_response())
}

#[derive(Deserialize, Default)]
struct RtrBody {
    reason: Option<DeregReason>,
    info: Option<String>,
}

async fn rtr(State(st): State<AppState>, Path(id): Path<String>, body: Option<Json<RtrBody>>) -> R {
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let s = blocking_store(&st, |s| s.find(&id))?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no subscriber {id}")))?;
    let reason = b.reason.unwrap_or(DeregReason::PermanentTermination);
    match st.hss.rtr(&s.impi, reason, b.info.as_deref()).await {
        Ok(r) => Ok(Json(json!(r)).into_response()),
        Err(e) => Err(err(StatusCode::BAD_GATEWAY, e)),
    }
}

async fn ppr(State(st): State<AppState>, Path(id): Path<String>) -> R {
    let s = blocking_store(&st, |s| s.find(&id))?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no subscriber {id}")))?;
    match st.hss.ppr(&s.impi).await {
        Ok(r) => Ok(Json(json!(r)).into_response()),
        Err(e) => Err(err(StatusCode::BAD_GATEWAY, e)),
    }
}

async fn get_profile(State(st): State<AppState>, Path(name): Path<String>) -> R {
    let p = blocking_store(&st, |s| s.profile(&name))?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no profile {name}")))?;
    Ok(Json(json!({ "name": name, "ifcs": p })).into_response())
}

async fn put_profile(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<Vec<ifc::InitialFilterCriteria>>, JsonRejection>,
) -> R {
    let Json(ifcs) = body.map_err(json_err)?;
    let users = blocking_store(&st, |s| {
        s.put_profile(&name, &ifcs)?;
        let mut v = Vec::new();
        for u in s.users_of_profile(&name)? {
            if let Some(x) = s.get(&u)? {
                if x.reg_state != RegState::NotRegistered && x.scscf_host.is_some() {
                    v.push(u);
                }
            }
        }
        Ok(v)
    })?;
    let mut pushed = Vec::new();
    for u in users {
        pushed.push(match st.hss.ppr(&u).await {
            Ok(r) => json!({ "impi": u, "ppr": r }),
            Err(e) => json!({ "impi": u, "error": e.to_string() }),
        });
    }
    Ok(Json(json!({ "name": name, "ppr": pushed })).into_response())
}

async fn metrics(State(st): State<AppState>) -> Response {
    let hss = st.hss.clone();
    let g = tokio::task::spawn_blocking(move || hss.gauges())
        .await
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, opskit::metrics::CONTENT_TYPE)],
        st.hss.metrics.render(g),
    )
        .into_response()
}

/// The OpenAPI 3 description of the API.
pub fn openapi() -> Value {
    let id = json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" },
        "description": "IMPI, IMSI, MSISDN or any IMPU of the subscriber" });
    let err = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let sub = json!({ "description": "subscriber (K/OPc masked unless show_secrets=true)",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Subscriber" } } } });
    let new_sub = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/NewSubscriber" } } } });
    json!({
        "openapi": "3.0.3",
        "info": { "title": "IMS Lab HSS provisioning API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Subscribers (IMPI, K, OPc, IMPUs, iFCs), shared iFC profiles, administrative deregistration (Cx RTR) and profile push (Cx PPR)." },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/api/v1/subscribers": {
                "get": { "summary": "List IMPIs, or with details=true every subscriber (K/OPc masked)",
                    "parameters": [ { "name": "details", "in": "query", "schema": { "type": "boolean", "default": false } } ],
                    "responses": { "200": { "description": "IMPIs (strings), or Subscriber objects with details=true",
                    "content": { "application/json": { "schema": { "type": "object", "properties": { "subscribers": { "type": "array",
                        "items": { "oneOf": [ { "type": "string" }, { "$ref": "#/components/schemas/Subscriber" } ] } } } } } } }, "401": err } },
                "post": { "summary": "Add a subscriber", "requestBody": new_sub, "responses": { "201": sub, "400": err, "409": err, "413": err, "422": err } }
            },
            "/api/v1/subscribers/{id}": {
                "parameters": [ id ],
                "get": { "summary": "Show a subscriber", "parameters": [ { "name": "show_secrets", "in": "query", "schema": { "type": "boolean", "default": false } } ],
                    "responses": { "200": sub, "404": err } },
                "put": { "summary": "Replace a subscriber's provisioning data (SQN never moves back); pushes the profile (PPR) if registered",
                    "requestBody": new_sub, "responses": { "200": sub, "400": err, "404": err, "413": err, "422": err } },
                "patch": { "summary": "Change some fields; those left out (K and OPc too) keep their value, an empty msisdn/iccid/profile clears it; pushes the profile (PPR) if registered",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SubscriberPatch" } } } },
                    "responses": { "200": sub, "400": err, "404": err, "413": err, "422": err } },
                "delete": { "summary": "Delete; a registered user is first deregistered (RTR, PERMANENT_TERMINATION)", "responses": { "200": { "description": "deleted" }, "404": err } }
            },
            "/api/v1/registrations": {
                "get": { "summary": "Subscribers an S-CSCF serves: state, S-CSCF and IMPUs (contacts are held by the S-CSCF, not the HSS)",
                    "responses": { "200": { "description": "registrations", "content": { "application/json": { "schema": { "type": "object", "properties": {
                        "registrations": { "type": "array", "items": { "$ref": "#/components/schemas/Registration" } } } } } } }, "401": err } }
            },
            "/api/v1/calls": {
                "get": { "summary": "Recent calls from the application server's call log ([rest] calls_url), newest first",
                    "parameters": [ { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0, "maximum": 500, "default": 50 } } ],
                    "responses": { "200": { "description": "the call log as the application server gives it", "content": { "application/json": { "schema": { "type": "object", "properties": {
                        "calls": { "type": "array", "items": { "type": "object" } } } } } } }, "401": err, "404": err, "502": err } }
            },
            "/api/v1/import": {
                "post": { "summary": "Import a SIM card data CSV (the format of `hss subscriber import`); rows are stored in order, a bad row stops the import",
                    "parameters": [
                        { "name": "update", "in": "query", "schema": { "type": "boolean", "default": false }, "description": "replace existing subscribers instead of refusing them" },
                        { "name": "profile", "in": "query", "schema": { "type": "string" }, "description": "shared iFC profile for every imported subscriber" } ],
                    "requestBody": { "required": true, "content": { "text/csv": { "schema": { "type": "string" } } } },
                    "responses": { "200": { "description": "imported", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ImportReport" } } } },
                        "401": err, "409": err, "413": err, "422": err } }
            },
            "/api/v1/subscribers/{id}/rtr": {
                "parameters": [ id ],
                "post": { "summary": "Administrative deregistration (Cx RTR)",
                    "requestBody": { "content": { "application/json": { "schema": { "type": "object", "properties": {
                        "reason": { "type": "string", "enum": ["permanent_termination", "new_server_assigned", "server_change", "remove_scscf"] },
                        "info": { "type": "string" } } } } } },
                    "responses": { "200": { "description": "answer", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PushResult" } } } }, "404": err, "502": err } }
            },
            "/api/v1/subscribers/{id}/ppr": {
                "parameters": [ id ],
                "post": { "summary": "Push the current profile to the S-CSCF (Cx PPR)",
                    "responses": { "200": { "description": "answer", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PushResult" } } } }, "404": err, "502": err } }
            },
            "/api/v1/profiles/{name}": {
                "parameters": [ { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "get": { "summary": "A shared iFC profile", "responses": { "200": { "description": "profile" }, "404": err } },
                "put": { "summary": "Create or replace a shared iFC profile; registered users of it get a PPR",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/InitialFilterCriteria" } } } } },
                    "responses": { "200": { "description": "stored" }, "400": err, "413": err } }
            },
            "/metrics": { "get": { "summary": "Prometheus metrics", "security": [], "responses": { "200": { "description": "text exposition" } } } },
            "/health": { "get": { "summary": "Liveness", "security": [], "responses": { "200": { "description": "ok" } } } },
            "/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": { "description": "OpenAPI 3" } } } },
            "/": { "get": { "summary": "The web page (its data calls need the bearer token)", "security": [], "responses": { "200": { "description": "HTML" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "string" } } },
                "PushResult": { "type": "object", "properties": { "peer": { "type": "string" }, "result": { "type": "integer" } } },
                "Impu": { "type": "object", "required": ["uri"], "properties": {
                    "uri": { "type": "string", "example": "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org" },
                    "irs": { "type": "integer", "description": "implicit registration set number" },
                    "barred": { "type": "boolean" }, "display_name": { "type": "string" } } },
                "InitialFilterCriteria": { "type": "object", "description": "TS 29.228 Annex B iFC (see the ifc crate's JSON form)",
                    "required": ["priority", "application_server"], "properties": {
                    "priority": { "type": "integer" },
                    "trigger_point": { "type": "object", "properties": { "condition_type_cnf": { "type": "boolean" }, "spts": { "type": "array", "items": { "type": "object" } } } },
                    "application_server": { "type": "object", "required": ["server_name"], "properties": {
                        "server_name": { "type": "string" }, "default_handling": { "type": "string", "enum": ["session_continued", "session_terminated"] },
                        "service_info": { "type": "string" }, "include_register_request": { "type": "boolean" }, "include_register_response": { "type": "boolean" } } },
                    "profile_part_indicator": { "type": "string", "enum": ["registered", "unregistered"] } } },
                "NewSubscriber": { "type": "object", "required": ["k"], "properties": {
                    "impi": { "type": "string", "description": "default <imsi>@<domain>" },
                    "imsi": { "type": "string" }, "iccid": { "type": "string" }, "msisdn": { "type": "string" },
                    "k": { "type": "string", "description": "32 hex digits" },
                    "opc": { "type": "string", "description": "32 hex digits (or give op)" },
                    "op": { "type": "string", "description": "32 hex digits; OPc is computed and stored" },
                    "amf": { "type": "string", "description": "4 hex digits, default from config" },
                    "sqn": { "type": "integer", "description": "last issued SQN to start from" },
                    "impus": { "type": "array", "items": { "$ref": "#/components/schemas/Impu" } },
                    "ifcs": { "type": "array", "items": { "$ref": "#/components/schemas/InitialFilterCriteria" } },
                    "profile": { "type": "string" },
                    "shared_ifc_set_ids": { "type": "array", "items": { "type": "integer" } } } },
                "SubscriberPatch": { "type": "object", "additionalProperties": false, "properties": {
                    "msisdn": { "type": "string" }, "iccid": { "type": "string" },
                    "k": { "type": "string" }, "opc": { "type": "string" }, "op": { "type": "string" }, "amf": { "type": "string" },
                    "impus": { "type": "array", "items": { "$ref": "#/components/schemas/Impu" } }, "profile": { "type": "string" } } },
                "Registration": { "type": "object", "properties": {
                    "impi": { "type": "string" }, "imsi": { "type": "string" }, "msisdn": { "type": "string" },
                    "reg_state": { "type": "string", "enum": ["registered", "unregistered"] },
                    "scscf_name": { "type": "string" }, "scscf_host": { "type": "string" }, "scscf_realm": { "type": "string" },
                    "impus": { "type": "array", "items": { "type": "string" } },
                    "sets": { "type": "array", "items": { "type": "object", "properties": {
                        "irs": { "type": "integer" },
                        "reg_state": { "type": "string", "enum": ["not_registered", "registered", "unregistered"] },
                        "scscf_name": { "type": "string" }, "scscf_host": { "type": "string" },
                        "impus": { "type": "array", "items": { "type": "string" } } } } } } },
                "ImportReport": { "type": "object", "properties": {
                    "rows": { "type": "integer" }, "added": { "type": "integer" }, "updated": { "type": "integer" } } },
                "Subscriber": { "type": "object", "properties": {
                    "impi": { "type": "string" }, "imsi": { "type": "string" }, "iccid": { "type": "string" }, "msisdn": { "type": "string" },
                    "k": { "type": "string" }, "opc": { "type": "string" }, "amf": { "type": "string" },
                    "sqn": { "type": "integer", "description": "last issued SQN (SEQ||IND)" },
                    "impus": { "type": "array", "items": { "$ref": "#/components/schemas/Impu" } },
                    "ifcs": { "type": "array", "items": { "$ref": "#/components/schemas/InitialFilterCriteria" } },
                    "profile": { "type": "string" },
                    "reg_state": { "type": "string", "enum": ["not_registered", "registered", "unregistered"] },
                    "scscf_name": { "type": "string" }, "scscf_host": { "type": "string" }, "scscf_realm": { "type": "string" } } }
            }
        }
    })
}
