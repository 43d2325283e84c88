//! SIP over TCP between the UE simulator and the P-CSCF (collapsed, with the HSS) on
//! loopback, IPsec off: under RFC 3261 §18.1.1 the ~1,800-byte INVITE goes over TCP on
//! both legs of the call (UE → P-CSCF, P-CSCF → UE) at the default threshold of 1300
//! bytes, and so does every REGISTER of UEs configured with a lower threshold (without
//! sec-agree headers our REGISTER is below 1300), while the P-CSCF's small NOTIFYs stay on
//! UDP. tshark on the P-CSCF's and the UEs' SIP ports is the witness: it sees which
//! transport each request really took. Needs root and tshark for the capture
//! (skip-or-fail policy).
//!
//! The kernel-ESP version of the same (TCP inside the SAs, on the protected ports) is the
//! VM test, `vm_registration.rs`.

use lab::net::{LabNet, NetOptions, Ports};
use secagree::IpsecMode;
use std::time::Duration;
use testkit::tshark::{dissect, Capture, DecodeAs, DissectOptions};
use ue::{AnswerMode, CallEnd, IoConfig, Party, UeHost};

/// The UEs' size-rule threshold in this test, bytes.
const REGISTER_THRESHOLD: usize = 600;
const LIMIT: Duration = Duration::from_secs(20);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}

/// SIP methods tshark saw over `layer` ("tcp" or "udp") on `port`.
fn methods(pcap: &std::path::Path, layer: &'static str, port: u16) -> Vec<String> {
    let d = dissect(
        pcap,
        &DissectOptions {
            decode_as: vec![DecodeAs {
                layer,
                port,
                protocol: "sip",
            }],
            prefs: Vec::new(),
            display_filter: Some(format!("{layer} && sip")),
        },
    )
    .unwrap();
    assert_eq!(d.malformed, 0, "malformed frames {:?}", d.malformed_frames);
    d.sip_methods
}

#[tokio::test(flavor = "multi_thread")]
async fn large_requests_go_over_tcp_between_ue_and_pcscf() {
    if !testkit::require_root() || testkit::require_bin("tshark").is_none() {
        return;
    }
    let dir = testkit::TestDir::new("sip-tcp").unwrap();
    let ports = Ports::pick().unwrap();
    let sip_port = ports.sip.port();
    let lab = LabNet::start(&NetOptions {
        subscribers: 2,
        mode: IpsecMode::Off,
        config_dir: dir.path().to_path_buf(),
        ports,
        port_range: (32400, 32499),
        min_expires: 60,
        application_server: None,
        bridge: None,
        advertise: None,
    })
    .await
    .unwrap();
    let mut cfgs = lab.ue_configs(2, false);
    for (i, c) in cfgs.iter_mut().enumerate() {
        // our own addresses: other tests use 127.0.0.x:5060
        c.local_ip = std::net::IpAddr::from([127, 0, 91, 2 + i as u8]);
        c.port = testkit::wait::free_port_on(c.local_ip);
        c.calls.answer = AnswerMode::Auto(Duration::from_millis(100));
    }
    let pcap = dir.path().join("sip-tcp.pcap");
    let capture = Capture::loopback(&[sip_port, cfgs[0].port, cfgs[1].port], &pcap).unwrap();
    let host = UeHost::start(IoConfig {
        mode: IpsecMode::Off,
        tag: ue::ue_tag(&cfgs),
        // below our ~900-byte REGISTER without sec-agree, above ACK and BYE
        tcp_size_threshold: Some(REGISTER_THRESHOLD),
        ..IoConfig::default()
    })
    .await
    .unwrap();
    let mut ues = Vec::new();
    for c in cfgs {
        let h = host.add(c).await.unwrap();
        within(h.register()).await.unwrap();
        ues.push(h);
    }
    let callee = lab.ue_configs(2, false)[1].impu.clone();
    let call = within(ues[0].call(&callee)).await.unwrap();
    within(ues[0].wait_answered(call)).await.unwrap();
    ues[0].hangup(call).await.unwrap();
    assert_eq!(
        within(ues[0].wait_ended(call)).await.unwrap(),
        CallEnd::HungUp { by: Party::Local }
    );
    for u in &ues {
        within(u.deregister()).await.unwrap();
    }
    assert!(
        host.io().transport().tcp_connection_count() >= 2,
        "each UE holds the connection it opened to the P-CSCF"
    );
    host.shutdown().await;
    let stats = lab.pcscf.stats();
    lab.pcscf.stop().await;
    assert_eq!(stats.dropped, 0, "{stats:?}");
    let pcap = capture.stop().unwrap();

    let tcp = methods(&pcap, "tcp", sip_port);
    let udp = methods(&pcap, "udp", sip_port);
    let count = |v: &[String], m: &str| v.iter().filter(|x| *x == m).count();
    eprintln!("over TCP {tcp:?}\nover UDP {udp:?}");
    // Per UE: the REGISTER, its answer to the 401, and the deregistration's (challenged
    // again, so two more).
    assert!(count(&tcp, "REGISTER") >= 6, "over TCP: {tcp:?}");
    assert_eq!(count(&udp, "REGISTER"), 0, "over UDP: {udp:?}");
    // The INVITE on both legs: UE1 → P-CSCF and P-CSCF → UE2 (threshold 1300 there).
    assert_eq!(count(&tcp, "INVITE"), 2, "over TCP: {tcp:?}");
    assert_eq!(count(&udp, "INVITE"), 0, "over UDP: {udp:?}");
    // The P-CSCF's reg-event NOTIFYs are below its 1300 bytes: UDP.
    assert!(count(&udp, "NOTIFY") >= 2, "over UDP: {udp:?}");
    assert_eq!(count(&tcp, "NOTIFY"), 0, "over TCP: {tcp:?}");
}
