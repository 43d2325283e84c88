#![no_main]
//! Any bytes a Diameter peer can send, decoded and handed to the Cx handlers over an
//! in-memory store: an answer (or a decode error) every time, never a panic.
use hss::cx::{CxConfig, CxHandler};
use hss::metrics::Metrics;
use hss::store::Store;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex, OnceLock};

struct Env {
    cx: CxHandler,
    sqn: Mutex<Store>,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        // Two connections to one shared in-memory database are not possible; a temp file is.
        let path = std::env::temp_dir().join(format!("hss-fuzz-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut s = Store::open(&path, hss::store::Durability::Normal).expect("store");
        let n = hss::provision::NewSubscriber {
            imsi: Some("001010000000001".into()),
            k: "465B5CE8B199B49FAA5F0A2EE238A6BC".into(),
            opc: Some("CD63CB71954A9F4E48A5994E37A02BAF".into()),
            msisdn: Some("491701234567".into()),
            ..Default::default()
        };
        s.add(&n.build(&Default::default()).expect("subscriber"))
            .expect("add");
        let sqn = Store::open(&path, hss::store::Durability::Normal).expect("store");
        Env {
            cx: CxHandler::new(
                CxConfig::default(),
                Arc::new(Mutex::new(s)),
                Arc::new(Metrics::default()),
            ),
            sqn: Mutex::new(sqn),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = diameter::Message::decode_slice(data) {
        let e = env();
        let mut sqn = e.sqn.lock().unwrap_or_else(|p| p.into_inner());
        let a =
            e.cx.handle_blocking(&m, &mut sqn, &akav1::SqnPolicy::default(), 1);
        assert!(!a.is_request());
        let _ = a.encode();
    }
});
