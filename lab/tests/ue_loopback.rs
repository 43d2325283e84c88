//! The tokio shell ([`ue::UeHost`], [`ue::register_many`]) over real loopback
//! sockets against a P-CSCF scripted here on its own `secagree::SipIo`: with IPsec off
//! (no privileges needed) and with the userspace ESP backend on both ends (root). This is
//! the shell's test; the end-to-end test against the real `pcscf` + `hss` binaries lives
//! with them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use akav1::digest::{Challenge, Credentials, Qop};
use akav1::{Milenage, Sqn, SqnPolicy, UsimSqnState};
use secagree::{AlgPrefs, IpsecMode, SipIo};
use sip::ims::{format_security_list, SecurityMechanism};
use sip::transport::TransportConfig;
use sip::{Flow, Message, Protocol, ResponseBuilder, Transmit};
use tokio::task::JoinHandle;
use ue::{numbered, register_many, EventKind, IoConfig, IsimKeys, Step, UeConfig, UeHost};
use xfrm::{BackendKind, SetId, Side, Tag};

const DOMAIN: &str = "ims.test";

fn keys(i: usize) -> ([u8; 16], [u8; 16]) {
    let mut k = [0x46u8; 16];
    k[0] = i as u8;
    (k, [0x2a; 16])
}

struct Sub {
    hss: Milenage,
    last_sqn: Sqn,
    xres: [u8; 8],
    ck: [u8; 16],
    ik: [u8; 16],
    rand: [u8; 16],
    nonce: String,
    server: Vec<SecurityMechanism>,
    offer: Option<SecurityMechanism>,
    sets: Vec<(SetId, u16, u16)>,
}

/// A collapsed P-CSCF in a few dozen lines: challenges every REGISTER without a valid
/// response (so every re-registration re-authenticates), checks digest and
/// Security-Verify, installs its side of the SAs, answers from the port the request came
/// in on.
struct ScriptedPcscf {
    io: SipIo,
    addr: SocketAddr,
    task: JoinHandle<()>,
    stats: std::sync::Arc<std::sync::Mutex<Stats>>,
}

#[derive(Debug, Default)]
struct Stats {
    challenges: usize,
    oks: usize,
    protected_requests: usize,
    verify_ok: usize,
    resyncs: usize,
}

impl ScriptedPcscf {
    async fn start(
        mode: IpsecMode,
        port_base: u16,
        subs: Vec<(String, Milenage)>,
    ) -> ScriptedPcscf {
        let (io, mut rx) = SipIo::start(
            mode,
            Tag::SelectorUser(0x7e57_0001),
            TransportConfig::default(),
        )
        .await
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", testkit::wait::free_port())
            .parse()
            .unwrap();
        io.transport().bind_udp(addr).await.unwrap();
        let mut subs: HashMap<String, Sub> = subs
            .into_iter()
            .map(|(impi, hss)| {
                (
                    impi,
                    Sub {
                        hss,
                        last_sqn: Sqn::ZERO,
                        xres: [0; 8],
                        ck: [0; 16],
                        ik: [0; 16],
                        rand: [0; 16],
                        nonce: String::new(),
                        server: Vec::new(),
                        offer: None,
                        sets: Vec::new(),
                    },
                )
            })
            .collect();
        let io2 = io.clone();
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Stats::default()));
        let stats_out = shared.clone();
        let task = tokio::spawn(async move {
            let io = io2;
            let mut next_port = port_base;
            let mut next_spi = 0x7000_0000u32;
            let mut rand_ctr = 0u8;
            while let Some(inb) = rx.recv().await {
                let Ok(req) = Message::parse(&inb.data) else {
                    continue;
                };
                if !req.is_request() {
                    continue;
                }
                let local = inb.flow.local.unwrap();
                if io.is_protected(local) {
                    shared.lock().unwrap().protected_requests += 1;
                }
                let cred = Credentials::parse(req.header("Authorization").unwrap()).unwrap();
                let sub = subs.get_mut(&cred.username).expect("known subscriber");
                let answered = !cred.response.is_empty()
                    && cred.auts.is_none()
                    && cred.nonce == sub.nonce
                    && cred.verify(&sub.xres, "REGISTER", b"");
                let fresh_offer = req
                    .security_client()
                    .unwrap()
                    .first()
                    .map(|o| Some(o.spi_c) != sub.offer.as_ref().map(|x| x.spi_c))
                    .unwrap_or(false);
                let resp = if answered && !fresh_offer {
                    if !sub.server.is_empty() {
                        assert!(secagree::check_verify(
                            &sub.server,
                            &req.security_verify().unwrap()
                        )
                        .is_ok());
                        shared.lock().unwrap().verify_ok += 1;
                    }
                    shared.lock().unwrap().oks += 1;
                    let expires = req.expires().unwrap().unwrap_or(3600);
                    let contact = req.header("Contact").unwrap();
                    let base = contact.split(";expires=").next().unwrap();
                    if expires == 0 {
                        let grace_sets: Vec<SetId> = sub.sets.drain(..).map(|s| s.0).collect();
                        let io3 = io.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            for id in grace_sets {
                                let _ = io3.delete(id);
                            }
                        });
                    } else if let Some((id, ..)) = sub.sets.last() {
                        let _ = io.promote(
                            *id,
                            Duration::from_secs(u64::from(expires) + 30),
                            Instant::now(),
                        );
                    }
                    ResponseBuilder::new(&req, 200)
                        .to_tag("p")
                        .header("Contact", format_args!("{base};expires={expires}"))
                        .header("Service-Route", "<sip:orig@scscf.ims.test;lr>")
                        .header("P-Associated-URI", req.header("To").unwrap())
                        .build()
                        .unwrap()
                } else {
                    if let Some(a) = &cred.auts {
                        let auts = akav1::nonce::decode_auts(a).unwrap();
                        let sqn_ms = sub.hss.resync(&sub.rand, &auts).expect("MAC-S verifies");
                        sub.last_sqn = sqn_ms;
                        shared.lock().unwrap().resyncs += 1;
                    }
                    shared.lock().unwrap().challenges += 1;
                    rand_ctr = rand_ctr.wrapping_add(1);
                    sub.rand = [rand_ctr; 16];
                    sub.last_sqn = SqnPolicy::default().next(sub.last_sqn, 0).unwrap();
                    let v = sub.hss.vector(&sub.rand, sub.last_sqn, [0x80, 0]);
                    (sub.xres, sub.ck, sub.ik) = (v.xres, v.ck, v.ik);
                    sub.nonce = akav1::nonce::encode(&v.rand, &v.autn, &[]);
                    let ch = Challenge {
                        realm: DOMAIN.into(),
                        nonce: sub.nonce.clone(),
                        algorithm: Some("AKAv1-MD5".into()),
                        qop: vec![Qop::Auth],
                        ..Challenge::default()
                    };
                    let mut b = ResponseBuilder::new(&req, 401)
                        .to_tag("p")
                        .header("WWW-Authenticate", ch.to_header());
                    let offers = req.security_client().unwrap();
                    if !offers.is_empty() {
                        let choice = secagree::choose(&offers, &AlgPrefs::default()).unwrap();
                        let (pc, ps) = (next_port, next_port + 1);
                        next_port += 2;
                        let server =
                            secagree::server_mechanism(&choice, next_spi, next_spi + 1, pc, ps);
                        next_spi += 2;
                        let set = secagree::sa_set(
                            inb.flow.remote.ip(),
                            addr.ip(),
                            &choice.offer,
                            &server,
                            &sub.ck,
                            &sub.ik,
                            Duration::from_secs(30),
                            Instant::now(),
                        )
                        .unwrap();
                        io.open_protected(addr.ip(), pc, ps).await.unwrap();
                        if io.has_ipsec() {
                            let id = io.install(&set, Side::Pcscf).unwrap();
                            sub.sets.push((id, pc, ps));
                        }
                        sub.offer = Some(choice.offer);
                        sub.server = vec![server];
                        b = b.header("Security-Server", format_security_list(&sub.server));
                    }
                    b.build().unwrap()
                };
                let t = Transmit::new(
                    Flow::new(local, inb.flow.remote, Protocol::Udp),
                    resp.to_bytes().into(),
                );
                io.send(&t).await.unwrap();
            }
        });
        ScriptedPcscf {
            io,
            addr,
            task,
            stats: stats_out,
        }
    }

    async fn stop(self) -> Stats {
        self.task.abort();
        let _ = self.task.await;
        let _ = self.io.flush();
        std::mem::take(&mut *self.stats.lock().unwrap())
    }
}

fn fleet(n: usize, pcscf: SocketAddr, ip_base: u8) -> Vec<UeConfig> {
    let mut t = UeConfig::new(
        "t@ims.test",
        "sip:t@ims.test",
        DOMAIN,
        IsimKeys::new([0; 16], [0; 16]),
        "127.0.0.2".parse().unwrap(),
        pcscf,
    );
    t.expires = 600;
    t.sa_grace = Duration::from_millis(300);
    t.timers.t1 = Duration::from_millis(200);
    // The scripted P-CSCF here is a registrar only: no reg event notifier to subscribe to.
    t.reg_event = false;
    let mut v = numbered(&t, n, |i| {
        let (k, opc) = keys(i);
        (
            format!("user{i}@{DOMAIN}"),
            format!("sip:user{i}@{DOMAIN}"),
            IsimKeys::new(k, opc),
        )
    });
    for (i, c) in v.iter_mut().enumerate() {
        c.local_ip = IpAddr::from([127, 0, ip_base, 2 + i as u8]);
    }
    v
}

fn subs(n: usize) -> Vec<(String, Milenage)> {
    (0..n)
        .map(|i| {
            let (k, opc) = keys(i);
            (format!("user{i}@{DOMAIN}"), Milenage::new(&k, &opc))
        })
        .collect()
}

async fn full_cycle(mode: IpsecMode, n: usize, ip_base: u8, port_base: u16) {
    let pcscf = ScriptedPcscf::start(mode, port_base, subs(n)).await;
    let ues = fleet(n, pcscf.addr, ip_base);
    let io = IoConfig {
        mode,
        ..IoConfig::default()
    };
    let report = register_many(
        io,
        ues,
        &[Step::Register, Step::Reregister, Step::Deregister],
    )
    .await
    .unwrap();
    let stats_io = pcscf.io.clone();
    let live_at_pcscf = stats_io.live_sets().len();
    let stats = pcscf.stop().await;
    println!("{}", report.ladder());
    for u in &report.ues {
        assert!(u.error.is_none(), "{}: {:?}", u.impu, u.error);
        assert!(u.register.is_some());
        assert_eq!(u.reregister.len(), 1);
        assert!(u.deregister.is_some());
        assert_eq!(u.register_round_trips, 2);
        assert_eq!(
            u.sa_sets_left, 0,
            "every SA set deleted after deregistration"
        );
        assert_eq!(
            u.service_route,
            vec!["<sip:orig@scscf.ims.test;lr>".to_string()]
        );
    }
    assert!(report.all_ok());
    // per UE: 3 challenges (register, re-registration, and the de-REGISTER: it offers a
    // fresh SA generation and this P-CSCF, like Kamailio, challenges every fresh offer),
    // 3 OKs (reg, rereg, dereg)
    assert_eq!(stats.challenges, 3 * n);
    assert_eq!(stats.oks, 3 * n);
    // protected: the registration's answer, re-REGISTER + answer, de-REGISTER + answer
    assert_eq!(stats.protected_requests, 5 * n);
    assert_eq!(stats.verify_ok, 3 * n);
    let count = |f: fn(&EventKind) -> bool| ue::fleet::count_events(&report, f);
    assert_eq!(count(|k| matches!(k, EventKind::SaInstalled { .. })), 3 * n);
    assert_eq!(count(|k| matches!(k, EventKind::SaDeleted { .. })), 3 * n);
    assert_eq!(
        count(
            |k| matches!(k, EventKind::Received { protected: true, summary, .. } if summary.starts_with("200"))
        ),
        3 * n,
        "every 200 OK after the first challenge arrives through an SA"
    );
    if mode != IpsecMode::Off {
        assert_eq!(report.backend, "userspace");
        assert_eq!(
            report.esp_sa.lines().filter(|l| l.contains("0x")).count(),
            3 * n * 4
        );
        assert_eq!(live_at_pcscf, 0, "the scripted P-CSCF deleted its sets too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_reregister_deregister_without_ipsec() {
    full_cycle(IpsecMode::Off, 3, 20, 17100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_reregister_deregister_over_userspace_esp() {
    if !testkit::policy::require_root() {
        return;
    }
    full_cycle(IpsecMode::Backend(BackendKind::Userspace), 8, 21, 17300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_over_sockets_and_host_commands() {
    let pcscf = ScriptedPcscf::start(IpsecMode::Off, 17500, subs(1)).await;
    let mut cfg = fleet(1, pcscf.addr, 22).remove(0);
    let policy = SqnPolicy::default();
    cfg.keys = cfg.keys.clone().with_sqn(UsimSqnState::with_highest(
        policy,
        policy.compose(99, 0).unwrap(),
    ));
    let host = UeHost::start(IoConfig {
        mode: IpsecMode::Off,
        ..IoConfig::default()
    })
    .await
    .unwrap();
    let mut events = host.take_events().unwrap();
    assert!(host.take_events().is_none());
    // a second UE on the same address is refused
    let dup = cfg.clone();
    let ue = host.add(cfg).await.unwrap();
    assert!(matches!(
        host.add(dup).await,
        Err(ue::UeHostError::DuplicateIp(_))
    ));
    // commands in the wrong state fail cleanly
    assert!(ue.deregister().await.is_err());
    let r = ue.register().await.unwrap();
    assert_eq!(r.round_trips, 3, "probe, auts, answer");
    let snap = ue.snapshot().await.unwrap();
    assert_eq!(snap.state, ue::RegState::Registered);
    assert_eq!(snap.sa_sets, 1);
    assert_eq!(
        policy.seq(Sqn::new(snap.sqn_ms).unwrap()),
        100,
        "the card accepted SEQ 100"
    );
    ue.deregister().await.unwrap();
    host.shutdown().await;
    let stats = pcscf.stop().await;
    assert_eq!(stats.resyncs, 1);
    let mut saw_resync = false;
    while let Some(e) = events.recv().await {
        saw_resync |= matches!(e.event.kind, EventKind::SqnResync { .. });
    }
    assert!(saw_resync);
}

/// `imslab ue register` end to end: arguments, ladder, summary, exit status.
#[test]
fn cli_registers_reregisters_and_deregisters() {
    use clap::Parser;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pcscf = rt.block_on(ScriptedPcscf::start(IpsecMode::Off, 17700, subs(1)));
    let (k, opc) = keys(0);
    let pcscf_addr = pcscf.addr;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let args = |opc: &str| {
        vec![
            "imslab".to_string(),
            "ue".into(),
            "register".into(),
            "--impi".into(),
            format!("user0@{DOMAIN}"),
            "--impu".into(),
            format!("sip:user0@{DOMAIN}"),
            "--domain".into(),
            DOMAIN.into(),
            "-k".into(),
            hex(&k),
            "--opc".into(),
            opc.into(),
            "--local-ip".into(),
            "127.0.23.2".into(),
            "--pcscf".into(),
            pcscf_addr.to_string(),
            "--ipsec".into(),
            "off".into(),
            "--sa-grace-ms".into(),
            "100".into(),
            "--no-reg-event".into(),
            "--then".into(),
            "reregister,pause:50,deregister".into(),
        ]
    };
    let cli = lab::cli::Cli::try_parse_from(args(&hex(&opc))).unwrap();
    let out = lab::cli::run(&cli).unwrap();
    assert!(out.contains("registered in"), "{out}");
    assert!(out.contains("re-registered in"), "{out}");
    assert!(out.contains("deregistered in"), "{out}");
    // a card whose OPc the network does not know: AUTN fails, non-zero exit
    let cli = lab::cli::Cli::try_parse_from(args(&hex(&[0x55; 16]))).unwrap();
    let err = lab::cli::run(&cli).unwrap_err();
    assert!(format!("{err:#}").contains("AUTN MAC mismatch"), "{err:#}");
    rt.block_on(pcscf.stop());
    // the help teaches the flow and every option
    let help = lab::cli::Cli::try_parse_from(["imslab", "ue", "register", "--help"])
        .unwrap_err()
        .to_string();
    for needle in [
        "Security-Client",
        "AUTS",
        "--no-sec-agree",
        "--then",
        "esp_sa",
    ] {
        assert!(help.contains(needle), "help lacks {needle}");
    }
    // bad arguments are refused before anything is sent
    let mut bad = args("00");
    bad.truncate(bad.len() - 2);
    let cli = lab::cli::Cli::try_parse_from(bad).unwrap();
    assert!(lab::cli::run(&cli).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrefreshed_registration_expires_and_its_sas_go() {
    let pcscf = ScriptedPcscf::start(IpsecMode::Off, 17900, subs(2)).await;
    let mut ues = fleet(2, pcscf.addr, 25);
    for u in &mut ues {
        u.expires = 2;
        u.auto_refresh = false;
    }
    let report = register_many(
        IoConfig {
            mode: IpsecMode::Off,
            ..IoConfig::default()
        },
        ues,
        &[Step::Register, Step::AwaitExpiry],
    )
    .await
    .unwrap();
    pcscf.stop().await;
    for u in &report.ues {
        assert!(u.error.is_none(), "{:?}", u.error);
        let after = u.expired_after.expect("expired");
        assert!(
            after >= Duration::from_millis(1900),
            "expired early: {after:?}"
        );
        assert_eq!(u.sa_sets_left, 0);
    }
    assert_eq!(
        ue::fleet::count_events(&report, |k| *k == EventKind::Expired),
        2
    );
}
