//! UE simulator ⇄ pcscf (collapsed) ⇄ hss over loopback sockets, with the userspace ESP
//! backend as root: the paths the demo does not take — an SQN resynchronisation forced by
//! a card that is ahead of the HSS, and a registration that is not refreshed and expires.

use akav1::{SqnPolicy, UsimSqnState};
use lab::net::{LabNet, NetOptions, Ports};
use secagree::IpsecMode;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use ue::{IoConfig, Step};
use xfrm::BackendKind;

fn mode() -> IpsecMode {
    if testkit::require_root() {
        IpsecMode::Backend(BackendKind::Userspace)
    } else {
        IpsecMode::Off
    }
}

/// Both tests put their UE on 127.0.0.2:5060.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn network(dir: &testkit::TestDir, mode: IpsecMode, min_expires: u32) -> LabNet {
    network_on(dir, mode, min_expires, Ports::pick().unwrap(), None).await
}

async fn network_on(
    dir: &testkit::TestDir,
    mode: IpsecMode,
    min_expires: u32,
    ports: Ports,
    advertise: Option<IpAddr>,
) -> LabNet {
    LabNet::start(&NetOptions {
        subscribers: 2,
        mode,
        config_dir: dir.path().to_path_buf(),
        ports,
        port_range: (32100, 32199),
        min_expires,
        advertise,
        application_server: None,
        bridge: None,
    })
    .await
    .unwrap()
}

/// Runs `steps` on the one UE of `cfgs`, which must get through all of them.
async fn run_one(mode: IpsecMode, cfgs: Vec<ue::UeConfig>, steps: &[Step]) -> ue::FleetReport {
    let report = ue::register_many(
        IoConfig {
            mode,
            ..IoConfig::default()
        },
        cfgs,
        steps,
    )
    .await
    .unwrap();
    let u = &report.ues[0];
    assert!(u.error.is_none(), "{:?}\n{}", u.error, report.ladder());
    report
}

/// `imslab net serve --sip 0.0.0.0:… --advertise 127.0.0.1`: the P-CSCF listens on every
/// address, and UEs are given, and register (with their SAs) through, the advertised one.
#[tokio::test(flavor = "multi_thread")]
async fn a_wildcard_listener_registers_ues_through_the_advertised_address() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mode = mode();
    let dir = testkit::TestDir::new("e2e-advertise").unwrap();
    let mut ports = Ports::pick().unwrap();
    ports.sip.set_ip(IpAddr::from([0, 0, 0, 0]));
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let lab = network_on(&dir, mode, 60, ports, Some(loopback)).await;
    assert_eq!(
        lab.sip_advertised,
        SocketAddr::new(loopback, ports.sip.port())
    );
    let cfgs = lab.ue_configs(1, mode != IpsecMode::Off);
    assert_eq!(cfgs[0].pcscf, lab.sip_advertised);
    let report = run_one(mode, cfgs, &[Step::Register, Step::Deregister]).await;
    let u = &report.ues[0];
    assert_eq!(u.protected, mode != IpsecMode::Off);
    assert!(
        !report.ladder().contains("0.0.0.0"),
        "the wildcard reached a UE:\n{}",
        report.ladder()
    );
    lab.pcscf.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn card_ahead_of_the_hss_resynchronises_then_registers_protected() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mode = mode();
    let dir = testkit::TestDir::new("e2e-resync").unwrap();
    let lab = network(&dir, mode, 60).await;
    let mut cfgs = lab.ue_configs(1, mode != IpsecMode::Off);
    // The card has accepted SEQ 5000 in the HSS's IND slot (1): the HSS's first vector
    // (SEQ 1) is stale, the UE answers with AUTS, the HSS checks MAC-S and jumps ahead.
    let p = SqnPolicy::default();
    let card = UsimSqnState::with_highest(p, p.compose(5000, 1).unwrap());
    cfgs[0].keys = cfgs[0].keys.clone().with_sqn(card);
    let report = run_one(mode, cfgs, &[Step::Register, Step::Deregister]).await;
    let u = &report.ues[0];
    assert_eq!(
        u.register_round_trips, 3,
        "REGISTER, REGISTER with auts, REGISTER"
    );
    assert_eq!(u.protected, mode != IpsecMode::Off);
    let stats = lab.pcscf.stats();
    assert_eq!(stats.resyncs, 1);
    // The stale challenge and the fresh one after the resync; the collapsed S-CSCF role does
    // not challenge a de-REGISTER that arrives through the registration's own SA.
    assert_eq!(stats.challenges, if mode == IpsecMode::Off { 3 } else { 2 });
    lab.pcscf.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unrefreshed_registration_expires_and_everything_is_released() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mode = mode();
    let dir = testkit::TestDir::new("e2e-expiry").unwrap();
    let lab = network(&dir, mode, 2).await;
    let mut cfgs = lab.ue_configs(1, mode != IpsecMode::Off);
    cfgs[0].expires = 2;
    cfgs[0].auto_refresh = false;
    let report = run_one(mode, cfgs, &[Step::Register, Step::AwaitExpiry]).await;
    let u = &report.ues[0];
    assert_eq!(u.sa_sets_left, 0, "the UE dropped its SAs at expiry");
    // The P-CSCF's expiry timer sends SAR TIMEOUT_DEREGISTRATION and retires the set;
    // after the grace period nothing is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = lab.pcscf.stats();
        if s.deregistrations == 1 && lab.pcscf.live_sa_sets() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "P-CSCF did not expire the registration: {s:?}, {} live sets",
            lab.pcscf.live_sa_sets()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hss_state = {
        let store = lab.hss.store.lock().unwrap();
        store
            .get(&lab::net::subscriber(0).impi)
            .unwrap()
            .unwrap()
            .reg_state
    };
    assert_eq!(hss_state, hss::store::RegState::NotRegistered);
    lab.pcscf.stop().await;
}
