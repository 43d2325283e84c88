//! Our own `diameter` crate's TCP server against the real peers the fixtures
//! start: Kamailio's cdp (S-CSCF, Cx) and freeDiameter (base protocol, Relay).
//! Early interop evidence for the `diameter` crate; the full Cx acceptance
//! tests live with `hss`.

use std::time::Duration;

use diameter::peer::PeerConfig;
use diameter::transport::Server;
use diameter::{result, Message};
use testkit::freediameter::{FdConfig, FreeDiameter};
use testkit::kamailio::{Kamailio, ScscfConfig};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a Cx-advertising server on 127.0.0.1:<free> answering every request
/// with DIAMETER_UNABLE_TO_COMPLY; returns its port and handle.
fn server(rt: &tokio::runtime::Runtime) -> (u16, diameter::transport::ServerHandle) {
    rt.block_on(async {
        let mut cfg = PeerConfig::cx("hss.ims.lab", "ims.lab");
        cfg.vendor_id = diameter::VENDOR_3GPP;
        cfg.watchdog_interval = Duration::from_secs(6);
        let s = Server::bind("127.0.0.1:0", cfg, |req: Message| async move {
            Message::error_answer(&req, result::UNABLE_TO_COMPLY, Some("testkit interop"))
        })
        .await
        .unwrap();
        let port = s.local_addr().unwrap().port();
        let (h, _task) = s.spawn();
        (port, h)
    })
}

#[test]
fn kamailio_cdp_goes_open_against_diameter_crate_server() {
    if !testkit::kamailio::require_scscf() {
        return;
    }
    let rt = runtime();
    let (port, handle) = server(&rt);
    let mut k = Kamailio::start(ScscfConfig::new(port)).unwrap();
    k.wait_hss_open(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        handle.peers().iter().any(|p| p == "scscf.ims.lab"),
        "{:?}",
        handle.peers()
    );
}

#[test]
fn freediameter_goes_open_against_diameter_crate_server() {
    if testkit::require_bin("freeDiameterd").is_none() {
        return;
    }
    let rt = runtime();
    let (port, handle) = server(&rt);
    let mut fd = FreeDiameter::start(FdConfig::new("hss.ims.lab", port)).unwrap();
    fd.wait_open(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        handle.peers().iter().any(|p| p == "fd.testkit.lab"),
        "{:?}",
        handle.peers()
    );
    let log = fd.stop_graceful(Duration::from_secs(10)).unwrap();
    // A graceful DPR/DPA ends without freeDiameter's forced shutdown.
    assert!(!log.contains("Forcing connections shutdown"), "{log}");
}
