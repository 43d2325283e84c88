//! The web page's side of the REST API: the page and its assets with their security
//! headers, the subscriber table (`?details`), partial edits (`PATCH`), CSV import, and the
//! registrations list fed by a real SAR over Diameter on loopback.
mod common;
use axum::http::StatusCode;
use common::*;
use diameter::transport::PeerHandle;
use diameter::{avp, cmd, result, Avp, FindAvp, Message, PeerConfig};
use hss::config::Config;
use hss::store::{Durability, Store};
use serde_json::json;

const TOKEN: &str = "w3b-t0ken";

fn config(dir: &std::path::Path) -> Config {
    let c: Config = toml::from_str(&format!(
        r#"origin_host = "hss.ims.lab"
realm = "ims.lab"
[diameter]
listen = "127.0.0.1:0"
allowed_peers = ["scscf.ims.lab"]
[store]
path = "{}"
durability = "normal"
"#,
        dir.join("hss.db").display()
    ))
    .unwrap();
    c.validate().unwrap();
    c
}

async fn raw(app: &axum::Router, uri: &str) -> axum::response::Response {
    use tower::ServiceExt;
    let req = axum::http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

#[tokio::test]
async fn page_and_assets_are_public_with_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (hss, _) = hss::server::start(&config(dir.path())).await.unwrap();
    let app = hss::rest::router(hss, TOKEN.into());
    for (uri, ct, marker) in [
        ("/", "text/html", "<title>IMS Lab HSS</title>"),
        ("/app.js", "text/javascript", "sessionStorage"),
        ("/app.css", "text/css", "table"),
    ] {
        let r = raw(&app, uri).await;
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(ct), "{uri}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{uri}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{uri}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{uri}: {csp}");
        use http_body_util::BodyExt;
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains(marker),
            "{uri} lacks {marker}"
        );
    }
    // The data the page shows needs the token, and a refusal is not sniffable either.
    let r = raw(&app, "/api/v1/registrations").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    for uri in ["/api/v1/subscribers?details=true", "/api/v1/import"] {
        assert_eq!(
            call(&app, "GET", uri, None, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    assert_eq!(
        call(&app, "POST", "/api/v1/import", Some("nope"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // The OpenAPI document describes what the page uses.
    let doc = hss::rest::openapi();
    assert!(doc["paths"]["/api/v1/registrations"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/import"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/subscribers/{id}"]["patch"].is_object());
    for name in ["SubscriberPatch", "Registration", "ImportReport"] {
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
}

#[tokio::test]
async fn details_mask_secrets_and_patch_keeps_what_it_does_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    Store::open(&cfg.store.path, Durability::Normal)
        .unwrap()
        .add(&sub(1))
        .unwrap();
    let (hss, _) = hss::server::start(&cfg).await.unwrap();
    let app = hss::rest::router(hss.clone(), TOKEN.into());

    let (s, v) = call(
        &app,
        "GET",
        "/api/v1/subscribers?details=true",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let row = &v["subscribers"][0];
    assert_eq!(row["impi"], sub(1).impi);
    assert_eq!(row["impus"].as_array().unwrap().len(), 3);
    let text = v.to_string();
    assert!(!text.contains(&hex::encode(K)), "K leaked: {text}");
    assert!(!text.contains(&hex::encode(OPC)), "OPc leaked: {text}");
    assert!(row["k"].as_str().unwrap().chars().all(|c| c == '*'));
    // Without `details` the list keeps its old shape.
    let (_, v) = call(&app, "GET", "/api/v1/subscribers", Some(TOKEN), None).await;
    assert_eq!(v["subscribers"][0], sub(1).impi);

    // Edit the MSISDN, clear the ICCID; K, OPc, IMPUs (with their IRS and barring) stay.
    let uri = format!("/api/v1/subscribers/{}", sub(1).impi);
    let (s, v) = call(
        &app,
        "PATCH",
        &uri,
        Some(TOKEN),
        Some(json!({ "msisdn": "+491111", "iccid": "" })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["k"].as_str().unwrap().starts_with("***"), "{v}");
    let stored = hss
        .store
        .lock()
        .unwrap()
        .get(&sub(1).impi)
        .unwrap()
        .unwrap();
    assert_eq!(stored.msisdn.as_deref(), Some("491111"));
    assert_eq!(stored.iccid, None);
    assert_eq!((stored.k, stored.opc), (K, OPC));
    assert_eq!(stored.impus, sub(1).impus);

    // A new K with OP: OPc is recomputed (TS 35.208 test set 1 gives OPC from K and OP).
    let (s, v) = call(
        &app,
        "PATCH",
        &uri,
        Some(TOKEN),
        Some(
            json!({ "k": hex::encode(K), "op": "CDC202D5123E20F62B6D676AC72CB318", "amf": "9001" }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let stored = hss
        .store
        .lock()
        .unwrap()
        .get(&sub(1).impi)
        .unwrap()
        .unwrap();
    assert_eq!((stored.opc, stored.amf), (OPC, [0x90, 0x01]));

    // Bad input is refused and changes nothing.
    for (body, code) in [
        (json!({ "k": "zz" }), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "msisdn": "12ab" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "opc": hex::encode(OPC), "op": hex::encode(OPC) }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({ "impi": "other@ims.lab" }), StatusCode::BAD_REQUEST),
    ] {
        let (s, v) = call(&app, "PATCH", &uri, Some(TOKEN), Some(body.clone())).await;
        assert_eq!(s, code, "{body} -> {v}");
    }
    let after = hss
        .store
        .lock()
        .unwrap()
        .get(&sub(1).impi)
        .unwrap()
        .unwrap();
    assert_eq!(after, stored);
    let (s, _) = call(
        &app,
        "PATCH",
        "/api/v1/subscribers/nobody",
        Some(TOKEN),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A CSV as `hss subscriber import` takes it (tests/csv.rs has the format's corner cases).
const CARDS: &str = "IMSI,ICCID,Ki,OPc,MSISDN,ADM1\n\
001010000000201,8988200000000000201,465B5CE8B199B49FAA5F0A2EE238A6BC,CD63CB71954A9F4E48A5994E37A02BAF,4915550000201,12345678\n\
001010000000202,8988200000000000202,465B5CE8B199B49FAA5F0A2EE238A6BC,CD63CB71954A9F4E48A5994E37A02BAF,4915550000202,12345678\n";

async fn post_csv(app: &axum::Router, query: &str, csv: &str) -> (StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::post(format!("/api/v1/import{query}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "text/csv")
        .body(axum::body::Body::from(csv.to_string()))
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let s = r.status();
    let b = r.into_body().collect().await.unwrap().to_bytes();
    (s, serde_json::from_slice(&b).unwrap())
}

#[tokio::test]
async fn csv_import_is_the_cli_import() {
    let dir = tempfile::tempdir().unwrap();
    let (hss, _) = hss::server::start(&config(dir.path())).await.unwrap();
    let app = hss::rest::router(hss.clone(), TOKEN.into());

    let (s, v) = post_csv(&app, "", CARDS).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "rows": 2, "added": 2, "updated": 0 }));
    let got = hss
        .store
        .lock()
        .unwrap()
        .find("tel:+4915550000202")
        .unwrap()
        .unwrap();
    assert_eq!(
        got.impi,
        "001010000000202@ims.mnc001.mcc001.3gppnetwork.org"
    );
    assert_eq!((got.k, got.opc), (K, OPC));

    // Again: the first row conflicts, nothing is stored, and the answer says how far it got.
    let (s, v) = post_csv(&app, "", CARDS).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        v["imported"],
        json!({ "rows": 2, "added": 0, "updated": 0 })
    );
    assert!(
        v["error"].as_str().unwrap().contains("001010000000201"),
        "{v}"
    );
    let (s, v) = post_csv(&app, "?update=true", CARDS).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({ "rows": 2, "added": 0, "updated": 2 }));

    // A bad row stores nothing, the line is named.
    let bad = "IMSI,Ki,OPc\n001010000000301,465B5CE8B199B49FAA5F0A2EE238A6BC,CD63CB71954A9F4E48A5994E37A02BAF\n001010000000302,xyz,CD63CB71954A9F4E48A5994E37A02BAF\n";
    let (s, v) = post_csv(&app, "", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("line 3"), "{v}");
    assert!(hss
        .store
        .lock()
        .unwrap()
        .find("001010000000301")
        .unwrap()
        .is_none());
    let (s, v) = post_csv(&app, "", "").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sar_over_diameter_shows_in_registrations_and_deregistration_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let mut st = Store::open(&cfg.store.path, Durability::Normal).unwrap();
        st.add(&sub(1)).unwrap();
        st.add(&sub(2)).unwrap();
    }
    let (hss, listening) = hss::server::start(&cfg).await.unwrap();
    let app = hss::rest::router(hss.clone(), TOKEN.into());
    let (s, v) = call(&app, "GET", "/api/v1/registrations", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({ "registrations": [] }));

    let client = PeerHandle::connect_with_handler(
        listening.diameter,
        PeerConfig::cx("scscf.ims.lab", "ims.lab"),
        |req: Message| async move { Message::answer_for(&req).with_result_code(result::SUCCESS) },
    )
    .await
    .unwrap();
    let sar = |kind: i32| {
        base_req(cmd::SERVER_ASSIGNMENT, &client)
            .with(Avp::utf8(avp::SERVER_NAME, "sip:scscf.ims.lab:6060"))
            .with(Avp::enumerated(avp::SERVER_ASSIGNMENT_TYPE, kind))
            .with(Avp::enumerated(avp::USER_DATA_ALREADY_AVAILABLE, 0))
    };
    // TS 29.229 §6.3.15: 1 = REGISTRATION, 5 = USER_DEREGISTRATION.
    let a = client.request(sar(1)).await.unwrap();
    assert_eq!(a.get_u32(avp::RESULT_CODE).unwrap(), result::SUCCESS);

    let (_, v) = call(&app, "GET", "/api/v1/registrations", Some(TOKEN), None).await;
    let regs = v["registrations"].as_array().unwrap();
    assert_eq!(regs.len(), 1, "{v}");
    let r = &regs[0];
    assert_eq!(r["impi"], sub(1).impi);
    assert_eq!(r["reg_state"], "registered");
    assert_eq!(r["scscf_name"], "sip:scscf.ims.lab:6060");
    assert_eq!(r["scscf_host"], "scscf.ims.lab");
    assert_eq!(r["scscf_realm"], "ims.lab");
    assert_eq!(r["impus"][1], "tel:+491700000001");
    // Per implicit registration set: the SAR registered set 0 only.
    assert_eq!(r["sets"][0]["irs"], 0, "{r}");
    assert_eq!(r["sets"][0]["reg_state"], "registered", "{r}");
    assert_eq!(r["sets"][0]["impus"][1], "tel:+491700000001", "{r}");
    assert_eq!(r["sets"][1]["irs"], 1, "{r}");
    assert_eq!(r["sets"][1]["reg_state"], "not_registered", "{r}");
    assert!(r.get("k").is_none() && r.get("opc").is_none(), "{r}");

    let a = client.request(sar(5)).await.unwrap();
    assert_eq!(a.get_u32(avp::RESULT_CODE).unwrap(), result::SUCCESS);
    let (_, v) = call(&app, "GET", "/api/v1/registrations", Some(TOKEN), None).await;
    assert_eq!(v, json!({ "registrations": [] }));
    client.disconnect().await;
}

/// `/api/v1/calls` needs the HSS token, says 404 when no call log is configured and 502
/// when the application server does not answer (the answered case runs against a real
/// appserver in lab/tests/hss_web.rs).
#[tokio::test]
async fn recent_calls_without_an_application_server() {
    let dir = tempfile::tempdir().unwrap();
    let (hss, _) = hss::server::start(&config(dir.path())).await.unwrap();
    let none = hss::rest::router(hss.clone(), TOKEN.into());
    assert_eq!(
        call(&none, "GET", "/api/v1/calls", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, v) = call(&none, "GET", "/api/v1/calls", Some(TOKEN), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("calls_url"), "{v}");
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = hss::rest::router_with_calls(
        hss,
        TOKEN.into(),
        Some(hss::rest::CallLogSource {
            url: format!("http://127.0.0.1:{port}/api/calls"),
            token: "t".into(),
        }),
    );
    let (st, v) = call(&gone, "GET", "/api/v1/calls?limit=5", Some(TOKEN), None).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert!(v["error"].as_str().unwrap().contains("call log"), "{v}");
}
