//! The ISC service end to end, real sockets on loopback: UE simulators ⇄ `pcscf` (proxy
//! mode) ⇄ our `scscf` (with `[isc]`) ⇄ `hss`, and this crate's ISC service (its tokio
//! shell, in this process) as the callee's terminating-INVITE and REGISTER application
//! server, reporting to a recording [`CallObserver`] that blocks one caller.
//!
//! - A calls B: the offer names A, B answers, the observer hears Answered then Ended (our
//!   Record-Route keeps the BYE on our path);
//! - C (blocked) calls B: C gets 603, B sees no INVITE;
//! - A's call to B is cancelled; B registers again 5 s later, within `[late] window`: B
//!   receives the
//!   late MESSAGE (message mode) or the call again on its Call-ID, then its CANCEL (cancel
//!   mode); a second cancelled call followed by a registration after the window:
//!   nothing;
//! - the SIP MESSAGE sink turns a Ring event into a MESSAGE that reaches B.
//!
//! IPsec is off: what is tested here is ISC, which runs between the S-CSCF and the AS.

use appserver::event::{
    CallEvent, CallEventKind, CallObserver, Callee, Caller, NameSource, Offer, Progress, RawCaller,
    Source, Verdict,
};
use appserver::isc::IscConfig;
use appserver::late::{LateConfig, LateMode};
use ifc::{DefaultHandling, InitialFilterCriteria, SessionCase};
use secagree::IpsecMode;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use testkit::TestDir;
use ue::{AnswerMode, CallEnd, IoConfig, Party, UeHost};

const DOMAIN: &str = lab::net::DOMAIN;

/// Records offers and progress; blocks callers whose asserted identity contains `block`.
struct Recorder {
    block: String,
    offers: Mutex<Vec<Offer>>,
    progress: Mutex<Vec<(String, Progress)>>,
}

impl CallObserver for Recorder {
    fn offer(&self, offer: Offer) -> Verdict {
        let blocked = match &offer.caller {
            RawCaller::Sip {
                p_asserted_identity,
                ..
            } => p_asserted_identity.iter().any(|p| p.contains(&self.block)),
            RawCaller::Plain { .. } => false,
        };
        self.offers.lock().unwrap().push(offer);
        if blocked {
            Verdict::Block {
                rule: "test".into(),
            }
        } else {
            Verdict::Ring
        }
    }

    fn progress(&self, call_id: &str, progress: Progress, _at: SystemTime) {
        self.progress
            .lock()
            .unwrap()
            .push((call_id.to_string(), progress));
    }
}

impl Recorder {
    fn progress_of(&self, call_id: &str) -> Vec<Progress> {
        self.progress
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == call_id)
            .map(|(_, p)| *p)
            .collect()
    }

    /// Waits (bounded) until `call_id` has `n` progress reports.
    async fn wait_progress(&self, call_id: &str, n: usize) -> Vec<Progress> {
        for _ in 0..100 {
            let p = self.progress_of(call_id);
            if p.len() >= n {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.progress_of(call_id)
    }

    fn last_call_id(&self) -> String {
        self.offers
            .lock()
            .unwrap()
            .last()
            .map(|o| o.call_id.clone())
            .expect("an offer")
    }
}

fn ifc(
    priority: i32,
    method: &str,
    case: Option<SessionCase>,
    server: &str,
) -> InitialFilterCriteria {
    InitialFilterCriteria::for_method(
        priority,
        method,
        case,
        server,
        DefaultHandling::SessionContinued,
    )
}

/// One scenario at a time: both use the same UE addresses.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn isc_offers_blocks_reports_progress_and_tells_late_registrations_by_message() {
    scenario(LateMode::Message).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn late_registration_in_cancel_mode_rings_and_cancels_the_original_call() {
    scenario(LateMode::Cancel).await;
}

async fn scenario(mode: LateMode) {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = TestDir::new("appserver-isc").unwrap();
    let ports = testkit::free_ports(4);
    let (d_port, s_port, p_port, as_port) = (ports[0], ports[1], ports[2], ports[3]);
    let as_uri = format!("sip:127.0.0.1:{as_port}");

    // HSS: A and C without services; B with our AS on terminating INVITEs and REGISTERs.
    let profiles: Vec<Vec<InitialFilterCriteria>> = vec![
        vec![],
        vec![
            ifc(0, "REGISTER", None, &as_uri),
            ifc(
                10,
                "INVITE",
                Some(SessionCase::TerminatingRegistered),
                &as_uri,
            ),
        ],
        vec![],
    ];
    let db = dir.join("hss.db");
    lab::net::provision(&db, &profiles).unwrap();
    let hss_toml = format!(
        "origin_host = \"hss.{DOMAIN}\"\nrealm = \"{DOMAIN}\"\n[diameter]\nlisten = \
         \"127.0.0.1:{d_port}\"\n[store]\npath = \"{}\"\ndurability = \"normal\"\n",
        db.display()
    );
    let hss_path = dir.write("hss.toml", &hss_toml).unwrap();
    let hss_cfg = hss::config::Config::load(&hss_path).unwrap();
    let (_hss, _) = hss::server::start(&hss_cfg).await.unwrap();

    // The S-CSCF trusts the P-CSCF and (as an application server) our AS on 127.0.0.1.
    let s_toml = format!(
        "[sip]\nlisten = \"127.0.0.1:{s_port}\"\ndomain = \"{DOMAIN}\"\n\
         [hss]\naddress = \"127.0.0.1:{d_port}\"\n\
         [routing]\ntrusted = [\"127.0.0.1\"]\n\
         [isc]\napplication_servers = [\"127.0.0.1\"]\nas_timeout_ms = 2000\n"
    );
    let scscf = scscf::shell::start(scscf::config::Config::from_toml(&s_toml).unwrap())
        .await
        .unwrap();
    let p_toml = format!(
        "[sip]\nlisten = \"127.0.0.1:{p_port}\"\ndomain = \"{DOMAIN}\"\n[ipsec]\n\
         policy = \"off\"\n[scscf]\nmode = \"proxy\"\naddress = \"{}\"\ntransport = \"udp\"\n",
        scscf.advertise
    );
    let pcscf = pcscf::shell::start(pcscf::Config::from_toml(&p_toml).unwrap())
        .await
        .unwrap();
    let p_addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), pcscf.sip_addr.port());

    // Our AS: C's number is blocked; a short late window keeps the test quick.
    let blocked = lab::net::subscriber(2)
        .impu
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap()
        .to_string();
    let recorder = Arc::new(Recorder {
        block: blocked,
        offers: Mutex::new(Vec::new()),
        progress: Mutex::new(Vec::new()),
    });
    // The acceptance case: B registers 5 s after the cancelled call.
    let window = 8;
    let isc_cfg = IscConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], as_port)),
        scscf: Some(scscf.advertise),
        ..IscConfig::default()
    };
    let late = LateConfig {
        window,
        mode,
        // The CANCEL waits for B's 180 (a loaded machine must not let the fallback
        // cancel the INVITE before it reaches B).
        cancel_delay_ms: 8000,
        ..LateConfig::default()
    };
    let isc = appserver::isc::start(&isc_cfg, &late, recorder.clone())
        .await
        .unwrap();

    // UEs A, B, C; B rings until told.
    let mut cfgs = lab::net::ue_configs(p_addr, 3, false);
    for c in &mut cfgs {
        c.calls.preconditions = false;
        c.calls.answer = AnswerMode::Ring;
        c.calls.no_answer_timeout = Duration::from_secs(20);
    }
    for (i, c) in cfgs.iter_mut().enumerate() {
        c.local_ip = IpAddr::from([127, 0, 74, 2 + i as u8]);
        c.port = testkit::free_port_on(c.local_ip);
    }
    let io = IoConfig {
        mode: IpsecMode::Off,
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
    let impu = |i: usize| lab::net::subscriber(i).impu;
    let (a, b, c) = (&ues[0], &ues[1], &ues[2]);
    assert!(
        isc.stats().registers >= 1,
        "B's registration reached the AS: {:?}",
        isc.stats()
    );

    // 1. A calls B: offered with A's identity, answered, ended by A's BYE.
    let call = a.call(&impu(1)).await.unwrap();
    let incoming = b.wait_incoming().await.unwrap();
    b.answer(incoming).await.unwrap();
    a.wait_answered(call).await.unwrap();
    let call_id = recorder.last_call_id();
    {
        let offers = recorder.offers.lock().unwrap();
        assert_eq!(offers.len(), 1, "{offers:?}");
        let o = &offers[0];
        assert_eq!(o.source, Source::Isc);
        // Called by its IMSI-based SIP URI, B is offered by the tel URI its third-party
        // REGISTER's P-Associated-URI named.
        assert_eq!(o.callee, lab::net::subscriber(1).tel);
        match &o.caller {
            RawCaller::Sip {
                p_asserted_identity,
                trusted,
                ..
            } => {
                assert!(*trusted);
                let a_user = impu(0);
                assert!(
                    p_asserted_identity.iter().any(|p| p.contains(&a_user)),
                    "{p_asserted_identity:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    a.hangup(call).await.unwrap();
    let end = b.wait_ended(incoming).await.unwrap();
    assert!(
        matches!(end, CallEnd::HungUp { by: Party::Remote }),
        "{end}"
    );
    assert_eq!(
        recorder.wait_progress(&call_id, 2).await,
        [Progress::Answered, Progress::Ended]
    );

    // 2. C is blocked: 603 for C, no INVITE for B.
    let call = c.call(&impu(1)).await.unwrap();
    let end = c.wait_ended(call).await.unwrap();
    assert!(matches!(end, CallEnd::Rejected { code: 603, .. }), "{end}");
    let rang = tokio::time::timeout(Duration::from_millis(800), b.wait_incoming()).await;
    assert!(rang.is_err(), "B saw no INVITE");
    assert_eq!(isc.stats().blocked, 1);

    // 3. A's call is cancelled while B rings; B registers again within the window and
    //    hears of the missed call.
    let call = a.call(&impu(1)).await.unwrap();
    let incoming = b.wait_incoming().await.unwrap();
    a.hangup(call).await.unwrap();
    let end = a.wait_ended(call).await.unwrap();
    assert!(matches!(end, CallEnd::Cancelled { .. }), "{end}");
    b.wait_ended(incoming).await.unwrap();
    let call_id = recorder.last_call_id();
    assert_eq!(
        recorder.wait_progress(&call_id, 1).await,
        [Progress::Cancelled]
    );
    let offers = recorder.offers.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.reregister().await.unwrap();
    match mode {
        LateMode::Message => {
            let (from, text) = tokio::time::timeout(Duration::from_secs(5), b.next_message())
                .await
                .expect("the late MESSAGE arrives")
                .unwrap();
            assert!(text.starts_with("Missed call from "), "{from}: {text}");
        }
        LateMode::Cancel => {
            // The call again (it passes our AS once more, through B's own terminating
            // iFC, as our own request: not offered), then its CANCEL.
            let again = tokio::time::timeout(Duration::from_secs(10), b.wait_incoming())
                .await
                .expect("the late INVITE arrives")
                .unwrap();
            let end = tokio::time::timeout(Duration::from_secs(10), b.wait_ended(again))
                .await
                .expect("and is cancelled")
                .unwrap();
            assert!(
                matches!(end, CallEnd::Cancelled { by: Party::Remote }),
                "{end}"
            );
            assert_eq!(recorder.offers.lock().unwrap().len(), offers);
        }
    }
    assert_eq!(isc.stats().late_notices, 1);

    // 4. Another cancelled call, then a registration after the window: nothing.
    let call = a.call(&impu(1)).await.unwrap();
    let incoming = b.wait_incoming().await.unwrap();
    a.hangup(call).await.unwrap();
    a.wait_ended(call).await.unwrap();
    b.wait_ended(incoming).await.unwrap();
    tokio::time::sleep(Duration::from_secs(window + 1)).await;
    b.reregister().await.unwrap();
    let late = tokio::time::timeout(Duration::from_millis(1500), b.next_message()).await;
    assert!(late.is_err(), "nothing after the window: {late:?}");
    let rang = tokio::time::timeout(Duration::from_millis(300), b.wait_incoming()).await;
    assert!(rang.is_err(), "no late INVITE after the window");
    assert_eq!(isc.stats().late_notices, 1);

    // 5. The SIP MESSAGE sink: a Ring event on the bus becomes a MESSAGE to the callee,
    //    sent by the AS through the S-CSCF.
    let (bus, _) = tokio::sync::broadcast::channel(16);
    let sink = appserver::sinks::sipmessage::spawn(
        appserver::sinks::sipmessage::MessageConfig {
            enabled: true,
            to: None,
        },
        bus.subscribe(),
        isc.originator(),
    );
    let ring = CallEvent {
        conn: 1,
        call_id: "ring-1".into(),
        kind: CallEventKind::Ring,
        at: SystemTime::now(),
        started: SystemTime::now(),
        caller: Caller {
            number: Some("+4930123".into()),
            name: Some("Alice".into()),
            name_source: NameSource::Phonebook,
            anonymous: false,
        },
        callee: Callee {
            number: None,
            uri: impu(1),
        },
        source: Source::Isc,
    };
    bus.send(Arc::new(ring)).unwrap();
    let (_, text) = tokio::time::timeout(Duration::from_secs(5), b.next_message())
        .await
        .expect("the sink's MESSAGE arrives")
        .unwrap();
    assert_eq!(text, "Call from Alice (+4930123)");
    drop(bus);
    sink.await.unwrap();

    for u in &ues {
        let _ = u.deregister().await;
    }
    host.shutdown().await;
    isc.stop().await;
    pcscf.stop().await;
    scscf.stop().await;
}
