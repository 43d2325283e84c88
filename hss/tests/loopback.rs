//! The whole HSS in-process: Diameter over loopback TCP with the diameter crate's client, and
//! the REST API through its router.
mod common;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use diameter::transport::PeerHandle;
use diameter::{app, avp, cmd, result, Avp, FindAvp, Message, PeerConfig, VENDOR_3GPP};
use hss::config::Config;
use hss::store::{Durability, Store};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "s3cret";

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
[rest]
listen = "127.0.0.1:0"
token = "{TOKEN}"
"#,
        dir.join("hss.db").display()
    ))
    .unwrap();
    c.validate().unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diameter_and_rest_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    Store::open(&cfg.store.path, Durability::Normal)
        .unwrap()
        .add(&sub(1))
        .unwrap();
    let (hss, listening) = hss::server::start(&cfg).await.unwrap();

    // An S-CSCF that answers RTR/PPR and counts them.
    let rtrs = Arc::new(AtomicU32::new(0));
    let r2 = rtrs.clone();
    let handler = move |req: Message| {
        let r2 = r2.clone();
        async move {
            if req.code == cmd::REGISTRATION_TERMINATION || req.code == cmd::PUSH_PROFILE {
                r2.fetch_add(1, Ordering::SeqCst);
            }
            Message::answer_for(&req).with_result_code(result::SUCCESS)
        }
    };
    let client = PeerHandle::connect_with_handler(
        listening.diameter,
        PeerConfig::cx("scscf.ims.lab", "ims.lab"),
        handler,
    )
    .await
    .unwrap();

    // Many MARs in flight on one connection: all succeed with distinct SQNs.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = client.clone();
        let m = base_req(cmd::MULTIMEDIA_AUTH, &client)
            .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
            .with(Avp::grouped(
                avp::SIP_AUTH_DATA_ITEM,
                [Avp::utf8(
                    avp::SIP_AUTHENTICATION_SCHEME,
                    "Digest-AKAv1-MD5",
                )],
            ));
        tasks.push(tokio::spawn(async move { c.request(m).await.unwrap() }));
    }
    let mut seqs = std::collections::HashSet::new();
    let ms = akav1::Milenage::new(&K, &OPC);
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.get_u32(avp::RESULT_CODE).unwrap(), result::SUCCESS);
        let item = a.get_grouped(avp::SIP_AUTH_DATA_ITEM).unwrap();
        let au = item.get_octets(avp::SIP_AUTHENTICATE).unwrap();
        let rand: [u8; 16] = au[..16].try_into().unwrap();
        let ak = ms.f2345(&rand).ak;
        let sqn: Vec<u8> = (0..6).map(|i| au[16 + i] ^ ak[i]).collect();
        assert!(seqs.insert(sqn), "SQN reused");
    }

    // SAR registers the user at this S-CSCF.
    let sar = base_req(cmd::SERVER_ASSIGNMENT, &client)
        .with(Avp::utf8(avp::SERVER_NAME, "sip:scscf.ims.lab:6060"))
        .with(Avp::enumerated(avp::SERVER_ASSIGNMENT_TYPE, 1))
        .with(Avp::enumerated(avp::USER_DATA_ALREADY_AVAILABLE, 0));
    let a = client.request(sar).await.unwrap();
    assert_eq!(a.get_u32(avp::RESULT_CODE).unwrap(), result::SUCCESS);
    assert!(a.find(avp::USER_DATA).is_some());

    // REST: auth, read, PPR, RTR, metrics, OpenAPI.
    let app = hss::rest::router(hss.clone(), TOKEN.into());
    assert_eq!(
        call(&app, "GET", "/api/v1/subscribers", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "GET", "/api/v1/subscribers", Some("wrong"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, v) = call(&app, "GET", "/api/v1/subscribers", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["subscribers"][0], sub(1).impi);
    let (s, v) = call(
        &app,
        "GET",
        "/api/v1/subscribers/001010000000001",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["reg_state"], "registered");
    assert!(
        v["k"].as_str().unwrap().starts_with("****"),
        "secrets masked"
    );
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/subscribers/001010000000001?show_secrets=true",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(v["k"], hex::encode(K));
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/subscribers/{}/ppr", sub(1).impi),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (s, v["result"].as_u64()),
        (StatusCode::OK, Some(2001)),
        "{v}"
    );
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/subscribers/001010000000001/rtr",
        Some(TOKEN),
        Some(serde_json::json!({"reason": "server_change"})),
    )
    .await;
    assert_eq!(
        (s, v["result"].as_u64()),
        (StatusCode::OK, Some(2001)),
        "{v}"
    );
    assert_eq!(rtrs.load(Ordering::SeqCst), 2);
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/subscribers/001010000000001",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(v["reg_state"], "not_registered");

    let new = serde_json::json!({ "imsi": "001010000000099", "k": hex::encode(K), "op": "CDC202D5123E20F62B6D676AC72CB318", "msisdn": "+4912345" });
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/subscribers",
        Some(TOKEN),
        Some(new.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["impus"].as_array().unwrap().len(), 3);
    assert_eq!(
        call(&app, "POST", "/api/v1/subscribers", Some(TOKEN), Some(new))
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/subscribers/tel:+4912345?show_secrets=true",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        v["opc"],
        hex::encode(OPC),
        "OPc computed from OP (TS 35.208 test set 1)"
    );
    let bad = serde_json::json!({ "imsi": "1", "k": "zz" });
    assert_eq!(
        call(&app, "POST", "/api/v1/subscribers", Some(TOKEN), Some(bad))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        call(
            &app,
            "DELETE",
            "/api/v1/subscribers/001010000000099",
            Some(TOKEN),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &app,
            "GET",
            "/api/v1/subscribers/001010000000099",
            Some(TOKEN),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    let ifcs = serde_json::json!([{ "priority": 1, "application_server": { "server_name": "sip:as.ims.lab" } }]);
    let (s, _) = call(
        &app,
        "PUT",
        "/api/v1/profiles/gold",
        Some(TOKEN),
        Some(ifcs),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = call(&app, "GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().unwrap();
    assert!(text.contains("hss_auth_vectors_total 50"), "{text}");
    assert!(
        text.contains("hss_diameter_answers_total{command=\"MAR\",result=\"2001\"} 50"),
        "{text}"
    );
    assert!(text.contains("hss_diameter_peers 1"), "{text}");
    let (s, v) = call(&app, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["openapi"], "3.0.3");
    assert!(v["paths"]["/api/v1/subscribers/{id}/rtr"]["post"].is_object());

    // A peer not in allowed_peers cannot even complete CER/CEA.
    let bad = PeerHandle::connect(
        listening.diameter,
        PeerConfig::cx("rogue.example", "example"),
    )
    .await;
    assert!(bad.is_err(), "unknown peer accepted");
    client.disconnect().await;
}

/// A CER claiming `host` from a socket bound to `local` (127.0.0.2 etc. need no setup on
/// Linux); returns the socket and the CEA, if one came.
async fn cer_from(
    local: &str,
    hss: std::net::SocketAddr,
    host: &str,
) -> (tokio::net::TcpStream, Option<Message>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(hss).await.unwrap();
    let mut cer = Message::request(app::COMMON, cmd::CAPABILITIES_EXCHANGE)
        .with(Avp::utf8(avp::ORIGIN_HOST, host))
        .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
        .with(Avp::address(avp::HOST_IP_ADDRESS, local.parse().unwrap()))
        .with(Avp::u32(avp::VENDOR_ID, 0))
        .with(Avp::utf8(avp::PRODUCT_NAME, "impostor"))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX));
    cer.hop_by_hop = 7;
    s.write_all(&cer.encode()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Ok(Some(n)) = diameter::frame_length(&buf, 1 << 20) {
            if buf.len() >= n {
                return (s, Message::decode(buf[..n].to_vec()).ok());
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return (s, None),
        }
    }
}

/// Issue 14: an impostor with the allowed Origin-Host but another source address gets CEA
/// 3010 and never MAR answers, and the real S-CSCF keeps receiving RTR. The config is the
/// old bare-name form, which now means "from a loopback address of a loopback listener".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostor_with_an_allowed_name_from_another_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    Store::open(&cfg.store.path, Durability::Normal)
        .unwrap()
        .add(&sub(1))
        .unwrap();
    let (hss, listening) = hss::server::start(&cfg).await.unwrap();
    let rtrs = Arc::new(AtomicU32::new(0));
    let r2 = rtrs.clone();
    let real = PeerHandle::connect_with_handler(
        listening.diameter,
        PeerConfig::cx("scscf.ims.lab", "ims.lab"),
        move |req: Message| {
            let r2 = r2.clone();
            async move {
                r2.fetch_add(1, Ordering::SeqCst);
                Message::answer_for(&req).with_result_code(result::SUCCESS)
            }
        },
    )
    .await
    .unwrap();
    let sar = base_req(cmd::SERVER_ASSIGNMENT, &real)
        .with(Avp::utf8(avp::SERVER_NAME, "sip:scscf.ims.lab:6060"))
        .with(Avp::enumerated(avp::SERVER_ASSIGNMENT_TYPE, 1))
        .with(Avp::enumerated(avp::USER_DATA_ALREADY_AVAILABLE, 0));
    let a = real.request(sar).await.unwrap();
    assert_eq!(a.get_u32(avp::RESULT_CODE).unwrap(), result::SUCCESS);

    let (_imp, cea) = cer_from("127.0.0.2", listening.diameter, "scscf.ims.lab").await;
    let cea = cea.expect("a CEA");
    assert_eq!(
        cea.get_u32(avp::RESULT_CODE).unwrap(),
        result::UNKNOWN_PEER,
        "{cea:?}"
    );
    drop(_imp);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    // The real S-CSCF's connection is still the one RTR goes to.
    let r = hss
        .rtr(
            &sub(1).impi,
            hss::cx::DeregReason::PermanentTermination,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.result, result::SUCCESS);
    assert_eq!(rtrs.load(Ordering::SeqCst), 1);

    let app = hss::rest::router(hss.clone(), TOKEN.into());
    let (_, v) = call(&app, "GET", "/metrics", None, None).await;
    let text = v.as_str().unwrap();
    assert!(
        text.contains("hss_diameter_cer_refused_total{reason=\"wrong_address\"} 1"),
        "{text}"
    );
    real.disconnect().await;
}

/// Issue 14: a MAR with a second User-Name is answered 5009 with that User-Name in
/// Failed-AVP (RFC 6733 §7.5), and no vector (no SQN) is issued for either name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mar_with_two_user_names_is_answered_5009() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    Store::open(&cfg.store.path, Durability::Normal)
        .unwrap()
        .add(&sub(1))
        .unwrap();
    let (hss, listening) = hss::server::start(&cfg).await.unwrap();
    let client = PeerHandle::connect(
        listening.diameter,
        PeerConfig::cx("scscf.ims.lab", "ims.lab"),
    )
    .await
    .unwrap();
    let mar = base_req(cmd::MULTIMEDIA_AUTH, &client)
        .with(Avp::utf8(avp::USER_NAME, sub(2).impi))
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
        .with(Avp::grouped(
            avp::SIP_AUTH_DATA_ITEM,
            [Avp::utf8(
                avp::SIP_AUTHENTICATION_SCHEME,
                "Digest-AKAv1-MD5",
            )],
        ));
    let a = client.request(mar).await.unwrap();
    assert_eq!(
        a.get_u32(avp::RESULT_CODE).unwrap(),
        result::AVP_OCCURS_TOO_MANY_TIMES,
        "{a:?}"
    );
    let failed = a.get_grouped(avp::FAILED_AVP).unwrap();
    assert_eq!(failed.get_utf8(avp::USER_NAME).unwrap(), sub(2).impi);
    assert!(a.find(avp::SIP_AUTH_DATA_ITEM).is_none());
    let app = hss::rest::router(hss.clone(), TOKEN.into());
    let (_, v) = call(&app, "GET", "/metrics", None, None).await;
    assert!(
        v.as_str().unwrap().contains("hss_auth_vectors_total 0"),
        "{v}"
    );
    client.disconnect().await;
}

/// Issue 14: a body over the REST limit is 413 Payload Too Large, not 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_body_over_the_limit_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (hss, _listening) = hss::server::start(&cfg).await.unwrap();
    let app = hss::rest::router(hss.clone(), TOKEN.into());
    // 10 MB of valid-looking JSON: the size alone must decide.
    let big = format!("{{\"k\":\"{}\"}}", "0".repeat(10 << 20));
    for (method, uri) in [
        ("POST", "/api/v1/subscribers"),
        ("PUT", "/api/v1/subscribers/001010000000001"),
        ("PUT", "/api/v1/profiles/gold"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(big.clone()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {uri}"
        );
    }
    // A small malformed body stays 400.
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/subscribers",
        Some(TOKEN),
        Some(serde_json::json!({ "k": 5 })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
