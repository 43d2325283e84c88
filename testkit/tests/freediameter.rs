//! freeDiameterd connects to a Diameter responder with the generated config:
//! CER/CEA, DWR/DWA after Tw, DPR/DPA on graceful stop.

mod common;

use std::time::{Duration, Instant};

use common::{StubHss, Subscriber};
use testkit::freediameter::{self_signed_cert, FdConfig, FreeDiameter};

fn stub() -> StubHss {
    StubHss::start(
        Subscriber {
            impi: "x@ims.lab".into(),
            impu: "sip:x@ims.lab".into(),
            k: [0; 16],
            op: [0; 16],
            amf: [0; 2],
        },
        false,
    )
}

fn wait_for_command(hss: &StubHss, cmd: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if hss.seen.lock().unwrap().commands.contains(&cmd) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn freediameter_cer_dwr_dpr_against_responder() {
    if testkit::require_bin("freeDiameterd").is_none() {
        return;
    }
    let hss = stub();
    // The stub answers as Origin-Host hss.ims.lab: freeDiameter checks it.
    let mut fd = FreeDiameter::start(FdConfig::new("hss.ims.lab", hss.port)).unwrap();
    fd.wait_open(Duration::from_secs(10)).unwrap();
    {
        let seen = hss.seen.lock().unwrap();
        let cer = seen.cers.first().expect("a CER");
        assert_eq!(cer.str(264).as_deref(), Some("fd.testkit.lab"));
        assert_eq!(cer.str(296).as_deref(), Some("testkit.lab"));
        // Relay only: Auth-Application-Id 0xffffffff.
        assert_eq!(cer.u32(258), Some(0xffff_ffff), "{cer:?}");
    }
    // Tw = 6 s with up to 2 s jitter.
    assert!(
        wait_for_command(&hss, 280, Duration::from_secs(12)),
        "no DWR\n{}",
        fd.log()
    );
    let log = fd.stop_graceful(Duration::from_secs(10)).unwrap();
    assert!(
        wait_for_command(&hss, 282, Duration::from_secs(2)),
        "no DPR\n{log}"
    );
    let seen = hss.seen.lock().unwrap();
    assert_eq!(seen.commands.first(), Some(&257), "{seen:?}");
    assert_eq!(seen.commands.last(), Some(&282), "{seen:?}");
}

#[test]
fn freediameter_refuses_wrong_origin_host() {
    if testkit::require_bin("freeDiameterd").is_none() {
        return;
    }
    let hss = stub();
    let mut fd = FreeDiameter::start(FdConfig::new("other.ims.lab", hss.port)).unwrap();
    assert!(
        wait_for_command(&hss, 257, Duration::from_secs(10)),
        "{}",
        fd.log()
    );
    assert!(
        fd.wait_open(Duration::from_secs(2)).is_err(),
        "{}",
        fd.log()
    );
}

#[test]
fn freediameter_starts_with_throwaway_tls_cred() {
    if testkit::require_bin("freeDiameterd").is_none() || testkit::require_bin("openssl").is_none()
    {
        return;
    }
    let dir = testkit::TestDir::new("fd-cert").unwrap();
    let (cert, key) = self_signed_cert(dir.path(), "fd", "fd.testkit.lab").unwrap();
    let hss = stub();
    let mut cfg = FdConfig::new("hss.ims.lab", hss.port);
    cfg.tls_cred = Some((cert, key));
    let mut fd = FreeDiameter::start(cfg).unwrap();
    fd.wait_open(Duration::from_secs(10)).unwrap();
}
