//! The HSS web page in a real browser (issue 13): log in with the REST token, add a
//! subscriber through the form, edit it, import and delete another from a CSV, then
//! register the first one with the UE simulator through the P-CSCF (UAR, MAR, SAR over Cx
//! on loopback) and see the registration appear after a refresh. Headless Chromium from
//! Debian's `chromium`, driven through `chromedriver` ([`testkit::browser`]).
//!
//! `IMSLAB_UPDATE_SCREENSHOTS=1` also writes the final page to `docs/img/hss-web.png`.

use lab::net::{LabNet, NetOptions, Ports};
use secagree::IpsecMode;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::browser::Browser;
use ue::{IoConfig, Step};

const TOKEN: &str = "lab-web-t0ken";
const AS_TOKEN: &str = "as-t0ken";
const WAIT: Duration = Duration::from_secs(15);

/// The browser is blocking (std sockets); it runs on this worker while the runtime's
/// other workers serve the HSS and the P-CSCF.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn add_a_subscriber_in_the_browser_register_it_and_see_the_registration() {
    if !testkit::browser::require_browser() {
        return;
    }
    let dir = testkit::TestDir::new("hss-web").unwrap();
    let lab = LabNet::start(&NetOptions {
        subscribers: 0,
        mode: IpsecMode::Off,
        config_dir: dir.path().to_path_buf(),
        ports: Ports::pick().unwrap(),
        advertise: None,
        port_range: (32300, 32399),
        min_expires: 60,
        application_server: None,
        bridge: None,
    })
    .await
    .unwrap();
    // The application server whose call log the page shows: one answered call in it.
    let as_cfg = appserver::config::Config::from_toml(&format!(
        "[isc]\nlisten = \"127.0.0.1:0\"\n[calllog]\npath = \"{}\"\n\
         [rest]\nlisten = \"127.0.0.1:0\"\ntoken = \"{AS_TOKEN}\"\n",
        dir.join("calls.db").display()
    ))
    .unwrap();
    let appserver = appserver::server::start(&as_cfg).await.unwrap();
    log_one_answered_call(&appserver).await;
    let rest: SocketAddr = hss::rest::serve(
        lab.hss.clone(),
        "127.0.0.1:0".parse().unwrap(),
        TOKEN.into(),
        Some(hss::rest::CallLogSource {
            url: format!("http://{}/api/calls", appserver.rest_addr.unwrap()),
            token: AS_TOKEN.into(),
        }),
    )
    .await
    .unwrap();
    let sub = lab::net::subscriber(0);
    let msisdn = sub.tel.trim_start_matches("tel:+").to_string();

    let b = blocking(|| Browser::start(&dir)).unwrap();
    let fail = |what: &str, e: testkit::Error| -> ! {
        panic!("{what}: {e}\nchromedriver log:\n{}", b.log_tail(30))
    };
    blocking(|| {
        b.goto(&format!("http://{rest}/"))
            .unwrap_or_else(|e| fail("open the page", e));
        // A wrong token is refused and nothing is shown.
        b.type_into("#token", "wrong").unwrap();
        b.click("#login-btn").unwrap();
        b.wait_for_text("#status", "wrong token", WAIT)
            .unwrap_or_else(|e| fail("wrong token refused", e));
        b.type_into("#token", TOKEN).unwrap();
        b.click("#login-btn").unwrap();
        b.wait_for_text("#subs", "no subscribers", WAIT)
            .unwrap_or_else(|e| fail("log in", e));
        let stored = b
            .execute("return sessionStorage.getItem('hss-token')", &[])
            .unwrap();
        assert_eq!(
            stored.as_str(),
            Some(TOKEN),
            "the token lives in sessionStorage"
        );
        let shown = |id: &str| {
            b.execute(
                "return getComputedStyle(document.getElementById(arguments[0])).display",
                &[id.into()],
            )
            .unwrap()
            .as_str()
            .map(|d| d != "none")
        };
        assert_eq!(
            shown("login"),
            Some(false),
            "login form hidden once logged in"
        );
        assert_eq!(shown("app"), Some(true));
        assert!(!b
            .execute("return location.href", &[])
            .unwrap()
            .to_string()
            .contains(TOKEN));

        // Add through the form.
        b.type_into("#f-imsi", &sub.imsi).unwrap();
        b.type_into("#f-msisdn", "4900000000").unwrap();
        b.type_into("#f-k", &hex(&sub.k)).unwrap();
        b.type_into("#f-opc", &hex(&sub.opc)).unwrap();
        b.click("#f-save").unwrap();
        b.wait_for_text("#status", &format!("added {}", sub.impi), WAIT)
            .unwrap_or_else(|e| fail("add", e));
        let row = b
            .wait_for_text("#subs", &sub.impi, WAIT)
            .unwrap_or_else(|e| fail("listed", e));
        assert!(row.contains("tel:+4900000000"), "{row}");
        assert!(row.contains("not registered"), "{row}");

        // Edit the MSISDN (confirmed in a dialog); K and OPc are never shown back.
        b.click(&format!("#subs tr[data-impi='{}'] button.edit", sub.impi))
            .unwrap();
        b.type_into("#f-msisdn", &msisdn).unwrap();
        b.type_into("#f-impus", &format!("{}\n{}", sub.impu, sub.tel))
            .unwrap();
        b.click("#f-save").unwrap();
        let q = b.dialog_text().unwrap_or_default();
        assert!(q.contains("Save the changes"), "{q:?}");
        b.accept_dialog().unwrap();
        b.wait_for_text("#status", &format!("saved {}", sub.impi), WAIT)
            .unwrap_or_else(|e| fail("edit", e));
        let row = b.wait_for_text("#subs", &sub.tel, WAIT).unwrap();
        assert!(!row.contains("tel:+4900000000"), "{row}");
        let page = b.text("body").unwrap();
        for secret in [hex(&sub.k), hex(&sub.opc)] {
            assert!(!page.to_ascii_lowercase().contains(&secret), "secret shown");
        }

        // CSV import of a second card, then delete it (confirmed).
        let other = lab::net::subscriber(1);
        // Its IMPU is markup: the page must show it as text, never build an element of it.
        let evil = "sip:<img/src=x/onerror=window.pwned=1>@ims.lab";
        let csv = format!(
            "IMSI,ICCID,Ki,OPc,MSISDN,IMPU\n{},8988200000000000002,{},{},4915550000099,{evil}\n",
            other.imsi,
            hex(&other.k),
            hex(&other.opc)
        );
        b.type_into("#csv-text", &csv).unwrap();
        b.click("#csv-import").unwrap();
        b.wait_for_text(
            "#csv-result",
            "imported 1 new, 0 updated, from 1 rows",
            WAIT,
        )
        .unwrap_or_else(|e| fail("CSV import", e));
        let subs = b.wait_for_text("#subs", &other.impi, WAIT).unwrap();
        assert!(subs.contains(evil), "{subs}");
        let injected = b
            .execute(
                "return document.querySelectorAll('#subs img').length + ':' + String(window.pwned)",
                &[],
            )
            .unwrap();
        assert_eq!(
            injected.as_str(),
            Some("0:undefined"),
            "markup from the store ran"
        );
        b.click(&format!(
            "#subs tr[data-impi='{}'] button.delete",
            other.impi
        ))
        .unwrap();
        let q = b.dialog_text().unwrap_or_default();
        assert!(q.contains(&format!("Delete {}", other.impi)), "{q:?}");
        b.accept_dialog().unwrap();
        b.wait_for_text("#status", &format!("deleted {}", other.impi), WAIT)
            .unwrap_or_else(|e| fail("delete", e));
        assert!(!b.text("#subs").unwrap().contains(&other.impi));
        b.wait_for_text("#regs", "no registrations", WAIT).unwrap();
    });
    assert!(lab
        .hss
        .store
        .lock()
        .unwrap()
        .find(&lab::net::subscriber(1).imsi)
        .unwrap()
        .is_none());

    // The UE simulator registers the subscriber added in the browser.
    let report = ue::register_many(
        IoConfig {
            mode: IpsecMode::Off,
            ..IoConfig::default()
        },
        lab.ue_configs(1, false),
        &[Step::Register],
    )
    .await
    .unwrap();
    assert!(
        report.all_ok(),
        "{:?}\n{}",
        report.ues[0].error,
        report.ladder()
    );
    let scscf = {
        let st = lab.hss.store.lock().unwrap();
        let s = st.get(&sub.impi).unwrap().unwrap();
        assert_eq!(s.reg_state, hss::store::RegState::Registered);
        s.scscf_name.expect("SAR stored a Server-Name")
    };

    let png = blocking(|| {
        b.click("#refresh").unwrap();
        let regs = b
            .wait_for_text("#regs", &sub.impi, WAIT)
            .unwrap_or_else(|e| fail("registration shown", e));
        assert!(regs.contains("registered"), "{regs}");
        assert!(regs.contains(&scscf), "{regs} lacks {scscf}");
        assert!(regs.contains(&sub.impu), "{regs}");
        let subs = b.text("#subs").unwrap();
        assert!(
            subs.contains("registered") && !subs.contains("not registered"),
            "{subs}"
        );
        // The application server's call log, fetched by the HSS with the AS's token.
        let calls = b
            .wait_for_text("#calls", "Carol Caller", WAIT)
            .unwrap_or_else(|e| fail("recent calls shown", e));
        assert!(calls.contains("+4930555123"), "{calls}");
        assert!(calls.contains("answered"), "{calls}");
        // The shot shows the registration at the top, with the form below.
        b.execute("window.scrollTo(0, 0)", &[]).unwrap();
        b.screenshot_png().unwrap()
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::write(dir.join("hss-web.png"), &png).unwrap();
    if std::env::var_os("IMSLAB_UPDATE_SCREENSHOTS").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("hss-web.png"), &png).unwrap();
    }
    drop(b);
    lab.pcscf.stop().await;
}

/// Puts one answered and ended call into the application server's call log, as its ISC
/// service would report it, and waits until the log's writer has stored it.
async fn log_one_answered_call(appserver: &appserver::server::Running) {
    use appserver::event::{CallObserver, Offer, Progress, RawCaller, Source};
    let p = &appserver.pipeline;
    let now = std::time::SystemTime::now();
    p.offer(Offer {
        call_id: "web-call-1".into(),
        caller: RawCaller::Sip {
            p_asserted_identity: vec!["\"Carol Caller\" <tel:+4930555123>".into()],
            from: "\"Carol Caller\" <sip:carol@ims.lab>;tag=1".into(),
            privacy: None,
            trusted: true,
        },
        callee: "tel:+4915550000001".into(),
        source: Source::Isc,
        at: now,
    });
    p.progress("web-call-1", Progress::Answered, now);
    p.progress("web-call-1", Progress::Ended, now + Duration::from_secs(7));
    let log = p.calllog().unwrap().clone();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = tokio::task::spawn_blocking({
            let log = log.clone();
            move || {
                log.query(&appserver::calllog::Filter {
                    limit: 10,
                    ..Default::default()
                })
            }
        })
        .await
        .unwrap()
        .unwrap();
        if rows
            .iter()
            .any(|r| r.outcome.as_deref() == Some("answered"))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "call not logged: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
