//! Issue 3 acceptance: freeDiameter 1.2.1 (Debian `freediameter`, `freeDiameterd`;
//! `testkit::freediameter`), an independent Diameter implementation, as a base-protocol peer
//! of our `hss` binary (RFC 6733): CER/CEA (its CER advertises only the Relay application,
//! which we accept), DWR/DWA after its Tw, DPR/DPA when it stops gracefully; and the peer
//! allow-list: an Origin-Host that is not listed gets DIAMETER_UNKNOWN_PEER (3010) in the
//! CEA and the connection closes, while a listed one still gets in. A tshark capture of the
//! HSS port must dissect with **zero** malformed frames.
//!
//! freeDiameter logs every message it sends and receives through its `dbg_msg_dumps`
//! extension (`freediameter-extensions`), which is what the bounded waits watch.
//!
//! Peers missing (freeDiameterd and the extension, tshark) or not root → SKIPPED, or a
//! failure under `CI=true` (testkit policy).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::hss_proc::HssProc;
use testkit::freediameter::{FdConfig, FreeDiameter, OPEN_LINE};
use testkit::tshark::{dissect, Capture, DecodeAs, DissectOptions, Dissection};
use testkit::TestDir;

const DBG_MSG_DUMPS: &str = "/usr/lib/freeDiameter/dbg_msg_dumps.fdx";
const HSS_HOST: &str = "hss.ims.lab";
const FD_HOST: &str = "fd.accept.lab";

/// freeDiameterd as `identity` (realm `accept.lab`) connecting over TCP to `hss.ims.lab` at
/// 127.0.0.1:`hss_port`, Tc 3 s, Tw 6 s (its minimum), every message dumped to its log.
fn start_fd(identity: &str, hss_port: u16) -> FreeDiameter {
    let mut c = FdConfig::new(HSS_HOST, hss_port);
    c.identity = identity.into();
    c.realm = "accept.lab".into();
    // 0x0080: dump sent and received messages (names, AVPs) to the log.
    c.extensions
        .push((PathBuf::from(DBG_MSG_DUMPS), Some("0x0080".into())));
    FreeDiameter::start(c).unwrap()
}

fn requirements() -> bool {
    if testkit::require_bin("freeDiameterd").is_none() || testkit::require_bin("tshark").is_none() {
        return false;
    }
    if !Path::new(DBG_MSG_DUMPS).is_file() {
        testkit::skip_or_fail(&format!(
            "{DBG_MSG_DUMPS} missing (apt-get install freediameter-extensions)"
        ));
        return false;
    }
    testkit::require_root()
}

fn diameter_of(pcap: &Path, port: u16, filter: Option<&str>) -> Dissection {
    dissect(
        pcap,
        &DissectOptions {
            decode_as: vec![DecodeAs::diameter_tcp(port)],
            display_filter: filter.map(String::from),
            ..Default::default()
        },
    )
    .unwrap()
}

fn count(d: &Dissection, code: u32, request: bool) -> usize {
    d.diameter
        .iter()
        .filter(|m| m.code == code && m.request == request)
        .count()
}

fn step(t0: Instant, what: &str) {
    eprintln!("accept: [{:>6.2?}] {what}", t0.elapsed());
}

#[test]
fn freediameter_exchanges_cer_dwr_dpr_with_our_hss() {
    if !requirements() {
        return;
    }
    let t0 = Instant::now();
    let dir = TestDir::new("accept-fd-hss").unwrap();
    let mut hss = HssProc::start(&dir, &[FD_HOST], "", |_| {});
    let port = hss.diameter.port();
    let pcap = dir.join("accept-freediameter.pcap");
    let cap = Capture::loopback(&[port], &pcap).unwrap();
    step(t0, "hss up, capturing");

    let mut fd = start_fd(FD_HOST, port);
    fd.wait_open(Duration::from_secs(15)).unwrap();
    assert!(
        hss.plain_log()
            .contains(&format!("Diameter peer open peer={FD_HOST}")),
        "{}",
        hss.guard.log_tail(20)
    );
    step(t0, "CER/CEA: open on both sides");
    // Tw = 6 s, with up to ±2 s of jitter.
    fd.wait_for_log("'Device-Watchdog-Answer'", Duration::from_secs(15))
        .unwrap();
    step(t0, "DWR/DWA");
    let log = fd.stop_graceful(Duration::from_secs(15)).unwrap();
    assert!(log.contains("'Disconnect-Peer-Answer'"), "no DPA\n{log}");
    step(t0, "DPR/DPA, freeDiameterd exited");
    assert!(
        hss.guard.is_running(),
        "hss died\n{}",
        hss.guard.log_tail(30)
    );

    let pcap = cap.stop().unwrap();
    let d = diameter_of(&pcap, port, None);
    step(
        t0,
        &format!(
            "capture: {} frames, malformed {:?}, messages {:?}",
            d.packets,
            d.malformed_frames,
            d.diameter
                .iter()
                .map(|m| (m.code, m.request))
                .collect::<Vec<_>>()
        ),
    );
    assert_eq!(d.malformed, 0, "malformed frames {:?}", d.malformed_frames);
    assert_eq!(
        (count(&d, 257, true), count(&d, 257, false)),
        (1, 1),
        "{:?}",
        d.diameter
    );
    let (dwr, dwa) = (count(&d, 280, true), count(&d, 280, false));
    assert!(
        dwr >= 1 && dwa == dwr,
        "DWR {dwr} DWA {dwa}: {:?}",
        d.diameter
    );
    assert_eq!(
        (count(&d, 282, true), count(&d, 282, false)),
        (1, 1),
        "{:?}",
        d.diameter
    );
    let first = d.diameter.first().map(|m| (m.code, m.request));
    let last = d.diameter.last().map(|m| (m.code, m.request));
    assert_eq!(first, Some((257, true)), "CER first: {:?}", d.diameter);
    assert_eq!(last, Some((282, false)), "DPA last: {:?}", d.diameter);
    // Every answer says DIAMETER_SUCCESS; both identities are on the wire.
    let answers = diameter_of(&pcap, port, Some("diameter.flags.request == 0"));
    assert_eq!(answers.packets, 1 + dwa + 1);
    for bad in [
        "diameter.flags.request == 0 && !diameter.Result-Code",
        "diameter.Result-Code ~= 2001",
    ] {
        let f = diameter_of(&pcap, port, Some(bad));
        assert_eq!(f.packets, 0, "frames matching {bad:?}: {:?}", f.diameter);
    }
    for host in [FD_HOST, HSS_HOST] {
        let f = diameter_of(
            &pcap,
            port,
            Some(&format!("diameter.Origin-Host == \"{host}\"")),
        );
        assert!(f.packets >= 2, "no message from {host}");
    }
}

#[test]
fn unlisted_origin_host_gets_unknown_peer_and_listed_one_still_gets_in() {
    if !requirements() {
        return;
    }
    let t0 = Instant::now();
    let dir = TestDir::new("accept-fd-allow").unwrap();
    let mut hss = HssProc::start(&dir, &[FD_HOST], "", |_| {});
    let port = hss.diameter.port();
    let pcap = dir.join("accept-unknown-peer.pcap");
    let cap = Capture::loopback(&[port], &pcap).unwrap();

    // Not on the allow-list: CEA 3010, connection closed, never Open.
    let mut rogue = start_fd("fd.rogue.lab", port);
    rogue
        .wait_for_log("DIAMETER_UNKNOWN_PEER", Duration::from_secs(15))
        .unwrap();
    hss.guard
        .wait_for_log(
            "CER from a peer not in the allow-list",
            Duration::from_secs(5),
        )
        .unwrap();
    let rogue_log = rogue.stop_graceful(Duration::from_secs(15)).unwrap();
    assert!(!rogue_log.contains(OPEN_LINE), "{rogue_log}");
    step(t0, "fd.rogue.lab refused with DIAMETER_UNKNOWN_PEER");

    // The listed identity, same HSS: accepted (the refusal was about the name).
    let mut good = start_fd(FD_HOST, port);
    good.wait_open(Duration::from_secs(15)).unwrap();
    let log = good.stop_graceful(Duration::from_secs(15)).unwrap();
    assert!(log.contains("'Disconnect-Peer-Answer'"), "no DPA\n{log}");
    assert!(
        hss.guard.is_running(),
        "hss died\n{}",
        hss.guard.log_tail(30)
    );
    step(t0, "fd.accept.lab accepted, then DPR/DPA");

    let pcap = cap.stop().unwrap();
    let d = diameter_of(&pcap, port, None);
    step(
        t0,
        &format!(
            "capture: {} frames, malformed {:?}, messages {:?}",
            d.packets,
            d.malformed_frames,
            d.diameter
                .iter()
                .map(|m| (m.code, m.request))
                .collect::<Vec<_>>()
        ),
    );
    assert_eq!(d.malformed, 0, "malformed frames {:?}", d.malformed_frames);
    // Two CER/CEA pairs: the first CEA says 3010 (E bit set: a protocol error, RFC 6733
    // §7.1.3), the second 2001.
    assert_eq!(
        (count(&d, 257, true), count(&d, 257, false)),
        (2, 2),
        "{:?}",
        d.diameter
    );
    let refused = diameter_of(
        &pcap,
        port,
        Some(
            "diameter.cmd.code == 257 && diameter.Result-Code == 3010 && diameter.flags.error == 1",
        ),
    );
    assert_eq!(refused.packets, 1, "one CEA with 3010");
    // The same filter syntax as the other test's "no failure" check, matching here.
    let not_success = diameter_of(&pcap, port, Some("diameter.Result-Code ~= 2001"));
    assert_eq!(not_success.packets, 1, "{:?}", not_success.diameter);
    // Nothing but capabilities exchange from the refused peer: every other message comes
    // after the second CER.
    let second_cer = d
        .diameter
        .iter()
        .filter(|m| m.code == 257 && m.request)
        .nth(1)
        .map(|m| m.frame)
        .expect("second CER");
    assert!(
        d.diameter
            .iter()
            .filter(|m| m.code != 257)
            .all(|m| m.frame > second_cer),
        "{:?}",
        d.diameter
    );
}
