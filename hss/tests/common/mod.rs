#![allow(dead_code)]
pub mod hss_proc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use diameter::transport::PeerHandle;
use diameter::{app, avp, Avp, Message, VENDOR_3GPP};
use hss::store::{Impu, Subscriber};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
pub const OPC: [u8; 16] = [
    0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf,
];

pub fn sub(n: u32) -> Subscriber {
    let imsi = format!("0010100000{n:05}");
    let dom = "ims.mnc001.mcc001.3gppnetwork.org";
    Subscriber {
        imsi: Some(imsi.clone()),
        iccid: Some(format!("89882000000000{n:05}")),
        msisdn: Some(format!("4917000{n:05}")),
        impus: vec![
            Impu::new(format!("sip:{imsi}@{dom}")),
            Impu {
                display_name: Some("Lab".into()),
                ..Impu::new(format!("tel:+4917000{n:05}"))
            },
            Impu {
                irs: 1,
                barred: true,
                ..Impu::new(format!("sip:other{n}@{dom}"))
            },
        ],
        ..Subscriber::new(format!("{imsi}@{dom}"), K, OPC)
    }
}

/// A Cx request from `scscf.ims.lab` about `sub(1)`.
pub fn base_req(code: u32, client: &PeerHandle) -> Message {
    Message::request(app::CX, code)
        .with(Avp::utf8(avp::SESSION_ID, client.new_session_id()))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
        .with(Avp::utf8(avp::ORIGIN_HOST, "scscf.ims.lab"))
        .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, sub(1).impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, &sub(1).impus[0].uri))
}

/// One REST call through the router: status and the body as JSON (or as a JSON string
/// when it is not JSON).
pub async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(j) => b
            .header("content-type", "application/json")
            .body(Body::from(j.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}
