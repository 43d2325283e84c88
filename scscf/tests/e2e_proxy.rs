//! End to end over loopback, real processes: `hss` ⇄ (Cx) ⇄ our `scscf` binary ⇄ (SIP over
//! UDP, and over TCP) ⇄ `pcscf` in proxy mode ⇄ the `ue` simulator. The UE registers, re-registers and
//! deregisters; the 200 OK carries the S-CSCF's Service-Route and the implicit set in
//! P-Associated-URI; the HSS stores the S-CSCF's own name; `/metrics` counts it all.
//!
//! As root both ends use userspace ESP (sec-agree, protected REGISTERs); otherwise IPsec
//! is off and the UE registers like SIPp.

mod common;

use common::{addr_after, sample, scrape, sibling_bin, start};
use secagree::IpsecMode;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use ue::{IoConfig, IsimKeys, UeConfig};
use xfrm::BackendKind;

/// Every binary's default home domain (the test PLMN 001/01): no domain is configured.
const DOMAIN: &str = "ims.mnc001.mcc001.3gppnetwork.org";
const IMSI: &str = "001010000000071";
const MSISDN: &str = "491700000071";
const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
/// The UE's own loopback address, away from the 127.0.0.2… that lab tests use.
const UE_IP: [u8; 4] = [127, 0, 71, 2];

/// One chain at a time: both tests put their UE on [`UE_IP`] and their P-CSCF's
/// protected ports in one range.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn hex16(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn hss_show(hss: &std::path::Path, config: &std::path::Path) -> String {
    let (ok, out, err) = common::run(
        hss,
        &["-c", config.to_str().unwrap(), "subscriber", "show", IMSI],
    );
    assert!(ok, "{err}");
    out
}

/// Polls `/metrics` until `series` has `want` (gauges are refreshed a few times a second).
async fn await_sample(metrics: SocketAddr, series: &str, want: u64) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = tokio::task::spawn_blocking(move || scrape(metrics))
            .await
            .unwrap();
        if sample(&text, series) == Some(want) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ue_registers_reregisters_and_deregisters_through_pcscf_proxy_and_scscf_over_udp() {
    chain("udp").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_over_tcp_between_pcscf_and_scscf() {
    chain("tcp").await;
}

/// The whole chain with `transport` between the P-CSCF and the S-CSCF.
async fn chain(transport: &str) {
    let (Some(hss), Some(pcscf)) = (sibling_bin("hss"), sibling_bin("pcscf")) else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let mode = if testkit::is_root() {
        IpsecMode::Backend(BackendKind::Userspace)
    } else {
        eprintln!("not root: IPsec off (the UE registers without sec-agree)");
        IpsecMode::Off
    };
    let dir = testkit::TestDir::new(&format!("scscf-e2e-{transport}")).unwrap();
    let ports = testkit::free_ports(4);
    let (d_port, s_port, p_port, m_port) = (ports[0], ports[1], ports[2], ports[3]);

    // HSS, with the subscriber provisioned through its CLI.
    let hss_cfg = dir
        .write(
            "hss.toml",
            format!(
                "[diameter]\nlisten = \"127.0.0.1:{d_port}\"\n\
                 [store]\npath = \"{}\"\ndurability = \"normal\"\n",
                dir.join("hss.db").display()
            ),
        )
        .unwrap();
    let (ok, _, err) = common::run(
        &hss,
        &[
            "-c",
            hss_cfg.to_str().unwrap(),
            "subscriber",
            "add",
            "--imsi",
            IMSI,
            "--ki",
            K,
            "--opc",
            OPC,
            "--msisdn",
            MSISDN,
        ],
    );
    assert!(ok, "{err}");
    let (_hss_proc, _) = start(&dir, "hss", &hss, &hss_cfg, "hss ready diameter=");

    // Our S-CSCF, with /metrics.
    let s_cfg = dir
        .write(
            "scscf.toml",
            format!(
                "[sip]\nlisten = \"127.0.0.1:{s_port}\"\n\
                 [hss]\naddress = \"127.0.0.1:{d_port}\"\n\
                 [metrics]\nlisten = \"127.0.0.1:{m_port}\"\n"
            ),
        )
        .unwrap();
    let (mut scscf_proc, line) = start(&dir, "scscf", &common::scscf_bin(), &s_cfg, "scscf ready:");
    let s_addr = addr_after(&line, "sip");
    let metrics = addr_after(&line, "metrics");
    assert_eq!(s_addr.port(), s_port);

    // The P-CSCF in proxy mode in front of it, over UDP.
    let ipsec = match mode {
        IpsecMode::Off => "policy = \"off\"\n".to_string(),
        IpsecMode::Backend(_) => {
            "policy = \"required\"\nbackend = \"userspace\"\nport_range = [33710, 33749]\n".into()
        }
    };
    let p_cfg = dir
        .write(
            "pcscf.toml",
            format!(
                "[sip]\nlisten = \"127.0.0.1:{p_port}\"\n\
                 [ipsec]\n{ipsec}\
                 [scscf]\nmode = \"proxy\"\naddress = \"{s_addr}\"\ntransport = \"{transport}\"\n"
            ),
        )
        .unwrap();
    let (_pcscf_proc, line) = start(&dir, "pcscf", &pcscf, &p_cfg, "pcscf ready:");
    let p_addr = addr_after(&line, "sip");

    // The UE.
    let impi = format!("{IMSI}@{DOMAIN}");
    let impu = format!("sip:{IMSI}@{DOMAIN}");
    let mut cfg = UeConfig::new(
        impi,
        impu.clone(),
        DOMAIN,
        IsimKeys::new(hex16(K), hex16(OPC)),
        IpAddr::from(UE_IP),
        p_addr,
    );
    cfg.port = testkit::free_port_on(IpAddr::from(UE_IP));
    cfg.security = ue::LocalSecurity::random(33760, 33761);
    cfg.sec_agree = mode != IpsecMode::Off;
    cfg.expires = 600;
    cfg.sa_grace = Duration::from_millis(300);
    let io = IoConfig {
        mode,
        tag: ue::ue_tag(std::slice::from_ref(&cfg)),
        ..IoConfig::default()
    };
    let (host, ue) = ue::run(cfg, io).await.expect("UE host starts");

    let first = ue.register().await.unwrap_or_else(|e| {
        panic!("register: {e}\n{}", scscf_proc.log_tail(40));
    });
    let want_route = format!("<sip:orig@{s_addr};lr>");
    assert_eq!(first.service_route, vec![want_route.clone()], "{first:?}");
    for uri in [
        impu.clone(),
        format!("sip:+{MSISDN}@{DOMAIN}"),
        format!("tel:+{MSISDN}"),
    ] {
        assert!(
            first.associated_uris.iter().any(|a| a.contains(&uri)),
            "{uri} in {:?}",
            first.associated_uris
        );
    }
    assert_eq!(first.protected, mode != IpsecMode::Off);
    // The HSS stores this S-CSCF's own name (its address, not a shared 127.0.0.1:6060).
    let show = hss_show(&hss, &hss_cfg);
    assert!(show.contains("\"reg_state\": \"registered\""), "{show}");
    assert!(
        show.contains(&format!("\"scscf_name\": \"sip:{s_addr}\"")),
        "{show}"
    );
    let text = await_sample(metrics, "scscf_registered", 1).await;
    assert_eq!(
        sample(&text, "scscf_registrations_total"),
        Some(1),
        "{text}"
    );
    assert!(sample(&text, "scscf_challenges_total") >= Some(1), "{text}");
    assert_eq!(
        sample(
            &text,
            "scscf_cx_request_duration_seconds_count{command=\"MAR\"}"
        ),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "scscf_cx_request_duration_seconds_count{command=\"SAR\"}"
        ),
        Some(1),
        "{text}"
    );

    let again = ue.reregister().await.expect("re-register");
    assert_eq!(again.service_route, vec![want_route], "{again:?}");
    assert!(
        again.associated_uris.iter().any(|a| a.contains(&impu)),
        "{again:?}"
    );
    let text = await_sample(metrics, "scscf_registrations_total", 2).await;
    assert_eq!(sample(&text, "scscf_registered"), Some(1), "{text}");

    ue.deregister().await.expect("deregister");
    let text = await_sample(metrics, "scscf_registered", 0).await;
    assert_eq!(
        sample(&text, "scscf_deregistrations_total{reason=\"user\"}"),
        Some(1),
        "{text}"
    );
    assert_eq!(sample(&text, "scscf_cx_failures_total"), None, "{text}");
    let show = hss_show(&hss, &hss_cfg);
    assert!(show.contains("\"reg_state\": \"not_registered\""), "{show}");
    host.shutdown().await;
    // The S-CSCF stops cleanly on SIGTERM.
    assert!(
        scscf_proc
            .stop(Duration::from_secs(5))
            .is_some_and(|s| s.success()),
        "{}",
        scscf_proc.log_tail(20)
    );
}
