//! Calls over real sockets: UE simulators ⇄ `pcscf` (collapsed) ⇄ `hss` on loopback, with
//! the userspace ESP backend as root (IPsec off otherwise, loudly by testkit's policy):
//! the paths the demo does not take — CANCEL before the answer, busy, unknown and
//! unregistered callees, session refresh by UPDATE and re-INVITE, BYE from the callee.

use lab::net::{LabNet, NetOptions, Ports};
use secagree::IpsecMode;
use std::time::Duration;
use ue::{AnswerMode, CallEnd, IoConfig, Party, UeHandle, UeHost};
use xfrm::BackendKind;

fn mode() -> IpsecMode {
    if testkit::require_root() {
        IpsecMode::Backend(BackendKind::Userspace)
    } else {
        IpsecMode::Off
    }
}

/// The UEs bind 127.0.0.x:5060..: one network at a time in this binary.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Setup {
    lab: LabNet,
    host: UeHost,
    ues: Vec<UeHandle>,
    impus: Vec<String>,
    _dir: testkit::TestDir,
}

/// A network with three subscribers, and `n` of them registered (each UE's calls answered
/// as `answer(i)` says).
async fn setup(n: usize, answer: impl Fn(usize) -> AnswerMode) -> Setup {
    let mode = mode();
    let dir = testkit::TestDir::new("e2e-calls").unwrap();
    let lab = LabNet::start(&NetOptions {
        subscribers: 3,
        mode,
        config_dir: dir.path().to_path_buf(),
        ports: Ports::pick().unwrap(),
        port_range: (32200, 32299),
        min_expires: 60,
        application_server: None,
        bridge: None,
        advertise: None,
    })
    .await
    .unwrap();
    let mut cfgs = lab.ue_configs(3, mode != IpsecMode::Off);
    let impus = cfgs.iter().map(|c| c.impu.clone()).collect();
    cfgs.truncate(n);
    for (i, c) in cfgs.iter_mut().enumerate() {
        c.calls.answer = answer(i);
        c.calls.no_answer_timeout = Duration::from_secs(20);
    }
    let io = IoConfig {
        mode,
        tag: ue::ue_tag(&cfgs),
        ..IoConfig::default()
    };
    let host = UeHost::start(io).await.unwrap();
    let mut ues = Vec::new();
    for c in cfgs {
        let h = host.add(c).await.unwrap();
        h.register().await.unwrap();
        ues.push(h);
    }
    Setup {
        lab,
        host,
        ues,
        impus,
        _dir: dir,
    }
}

impl Setup {
    async fn stop(self) {
        for u in &self.ues {
            // A UE the network deregistered has nothing to deregister.
            if u.snapshot()
                .await
                .is_ok_and(|s| s.state == ue::RegState::Registered)
            {
                let _ = u.deregister().await;
            }
        }
        self.host.shutdown().await;
        let stats = self.lab.pcscf.stats();
        assert_eq!(stats.dropped, 0, "{stats:?}");
        self.lab.pcscf.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_before_the_answer_gives_487_and_busy_gives_486() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = setup(3, |i| match i {
        1 => AnswerMode::Ring,
        _ => AnswerMode::Reject(486),
    })
    .await;
    // UE1 calls UE2, which rings; UE1 gives up: CANCEL, 487.
    let call = s.ues[0].call(&s.impus[1]).await.unwrap();
    let incoming = s.ues[1].wait_incoming().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.ues[0].hangup(call).await.unwrap();
    let end = s.ues[0].wait_ended(call).await.unwrap();
    assert!(
        matches!(end, CallEnd::Cancelled { by: Party::Local }),
        "{end}"
    );
    let end = s.ues[1].wait_ended(incoming).await.unwrap();
    assert!(
        matches!(end, CallEnd::Cancelled { by: Party::Remote }),
        "{end}"
    );
    // UE1 calls UE3, which is busy.
    let call = s.ues[0].call(&s.impus[2]).await.unwrap();
    let end = s.ues[0].wait_ended(call).await.unwrap();
    assert!(matches!(end, CallEnd::Rejected { code: 486, .. }), "{end}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_callee_gets_404_and_an_unregistered_one_480() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Two UEs registered; subscriber 3 exists in the HSS but is not registered.
    let s = setup(2, |_| AnswerMode::Auto(Duration::from_millis(100))).await;
    let domain = s.impus[0].split('@').nth(1).unwrap().to_string();
    for (target, code) in [
        (format!("sip:nobody@{domain}"), 404),
        (s.impus[2].clone(), 480),
    ] {
        let call = s.ues[0].call(&target).await.unwrap();
        let end = s.ues[0].wait_ended(call).await.unwrap();
        assert!(
            matches!(end, CallEnd::Rejected { code: c, .. } if c == code),
            "{target}: {end}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_by_update_and_reinvite_then_the_callee_hangs_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = setup(2, |_| AnswerMode::Auto(Duration::from_millis(100))).await;
    let call = s.ues[0].call(&s.impus[1]).await.unwrap();
    s.ues[0].wait_answered(call).await.unwrap();
    let incoming = s.ues[1].wait_incoming().await.unwrap();
    s.ues[1].wait_answered(incoming).await.unwrap();
    s.ues[0].refresh(call).await.unwrap();
    s.ues[0].reinvite(call).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snap = s.ues[0].snapshot().await.unwrap();
    assert!(format!("{snap:?}").contains("Answered"), "{snap:?}");
    // The callee hangs up: its BYE goes back along the route set, through both SAs.
    s.ues[1].hangup(incoming).await.unwrap();
    let end = s.ues[0].wait_ended(call).await.unwrap();
    assert!(
        matches!(end, CallEnd::HungUp { by: Party::Remote }),
        "{end}"
    );
    s.stop().await;
}

/// Network-initiated deregistration over real sockets (issue 9): the HSS sends an RTR
/// (TS 29.228 §6.2.1) to the S-CSCF in the `pcscf` process; the S-CSCF NOTIFYs the reg
/// event's subscribers, the UE drops its registration and SAs, the P-CSCF ends its
/// registration; the other UE stays, and the deregistered one is unreachable (480).
#[tokio::test(flavor = "multi_thread")]
async fn an_rtr_from_the_hss_deregisters_the_ue_through_the_reg_event() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = setup(2, |_| AnswerMode::Auto(Duration::from_millis(100))).await;
    let before = s.lab.pcscf.stats().deregistrations;
    let impi = lab::net::subscriber(0).impi;
    let r = s
        .lab
        .hss
        .rtr(&impi, hss::cx::DeregReason::PermanentTermination, None)
        .await
        .unwrap();
    assert_eq!(r.result, diameter::result::SUCCESS, "{r:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let snap = s.ues[0].snapshot().await.unwrap();
        let p = s.lab.pcscf.stats().deregistrations;
        if snap.state == ue::RegState::Idle && snap.sa_sets == 0 && p == before + 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "UE1 {snap:?}, P-CSCF deregistrations {p} (before {before})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let code = s.ues[1].send_message(&s.impus[0], "gone?").await;
    assert!(
        matches!(code, Ok(480) | Err(ue::UeHostError::MessageRefused(480))),
        "{code:?}"
    );
    assert_eq!(
        s.ues[1].snapshot().await.unwrap().state,
        ue::RegState::Registered
    );
    s.stop().await;
}
