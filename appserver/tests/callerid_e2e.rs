//! Caller-ID through the whole core, with the real `appserver` binary and real clients on
//! every sink (issue 11's acceptance):
//!
//! ```text
//!  UE A, C, D ─▶ pcscf (S-CSCF core) ─ iFC: B's terminating INVITE ─▶ appserver ─▶ UE B
//!                    │ Cx                                               │
//!                   hss                      NCID client, Fritz!Box reader, mosquitto,
//!                                            webhook (axum), datagram → `appserver
//!                                            notify-agent` → D-Bus Notify (dbus-monitor),
//!                                            SIP MESSAGE → UE B, call log (REST)
//! ```
//!
//! - A (in the phonebook as "Alice Example") calls B: every sink names A with A's number;
//! - D withholds its identity (Privacy: id): "Anonymous" everywhere, D's number nowhere;
//! - C is on the blocklist: C gets 603, B never sees an INVITE, NCID writes a BLK line;
//! - A calls and B rejects (missed); A calls and gives up (cancelled);
//! - the call log (REST API) holds every outcome.

use appserver::event::Outcome;
use axum::extract::State;
use axum::routing::post;
use ifc::{DefaultHandling, InitialFilterCriteria, SessionCase};
use secagree::IpsecMode;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{ChildGuard, TestDir};
use ue::{AnswerMode, CallEnd, IoConfig, UeHost};

const DOMAIN: &str = lab::net::DOMAIN;
const TOKEN: &str = "e2e-token";

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

/// The number subscriber `i` calls from (its tel URI without the scheme).
fn number(i: usize) -> String {
    lab::net::subscriber(i)
        .tel
        .trim_start_matches("tel:")
        .to_string()
}

/// Lines a TCP server sends, read by a thread (a plain client, as NCID and call-monitor
/// clients are).
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn connect(addr: SocketAddr) -> Lines {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                match line {
                    Ok(s) => l.lock().unwrap().push(s),
                    Err(_) => break,
                }
            }
        });
        Lines(lines)
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (bounded) for a line containing every needle.
    async fn wait(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(l) = self
                .all()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needles:?} in {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

type Posts = Arc<Mutex<Vec<serde_json::Value>>>;

async fn webhook_server() -> (SocketAddr, Posts) {
    let posts: Posts = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(p): State<Posts>, axum::Json(v): axum::Json<serde_json::Value>| async move {
                    p.lock().unwrap().push(v);
                    "ok"
                },
            ),
        )
        .with_state(posts.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, posts)
}

async fn wait_posts(posts: &Posts, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = posts.lock().unwrap().iter().find(|v| pred(v)) {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no such webhook POST in {:#?}",
            posts.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_through_the_core_reaches_every_sink_privacy_hides_and_blocking_refuses() {
    for bin in ["mosquitto", "mosquitto_sub", "dbus-daemon", "dbus-monitor"] {
        if testkit::require_bin(bin).is_none() {
            return;
        }
    }
    let dir = TestDir::new("appserver-callerid").unwrap();
    let ports = testkit::free_ports(8);
    let (d_port, s_port, p_port, as_port) = (ports[0], ports[1], ports[2], ports[3]);
    let (ncid_port, fritz_port, dg_port, rest_port) = (ports[4], ports[5], ports[6], ports[7]);
    let as_uri = format!("sip:127.0.0.1:{as_port}");

    // HSS: A, C, D plain; B sends its incoming calls and its REGISTERs to our AS.
    let db = dir.join("hss.db");
    let mut profiles = vec![Vec::new(); 4];
    profiles[1] = vec![
        ifc(0, "REGISTER", None, &as_uri),
        ifc(
            10,
            "INVITE",
            Some(SessionCase::TerminatingRegistered),
            &as_uri,
        ),
    ];
    lab::net::provision(&db, &profiles).unwrap();
    let hss_toml = format!(
        "origin_host = \"hss.{DOMAIN}\"\nrealm = \"{DOMAIN}\"\n[diameter]\nlisten = \
         \"127.0.0.1:{d_port}\"\n[store]\npath = \"{}\"\ndurability = \"normal\"\n",
        db.display()
    );
    let hss_cfg = hss::config::Config::load(&dir.write("hss.toml", &hss_toml).unwrap()).unwrap();
    let (_hss, _) = hss::server::start(&hss_cfg).await.unwrap();

    // The P-CSCF with its S-CSCF core (the default), which trusts our AS.
    let s_addr = SocketAddr::from(([127, 0, 0, 1], s_port));
    let p_toml = format!(
        "[sip]\nlisten = \"127.0.0.1:{p_port}\"\ndomain = \"{DOMAIN}\"\n[ipsec]\npolicy = \
         \"off\"\n[scscf]\naddress = \"{s_addr}\"\n[hss]\naddress = \"127.0.0.1:{d_port}\"\n\
         origin_host = \"pcscf.{DOMAIN}\"\n[isc]\napplication_servers = [\"127.0.0.1\"]\n"
    );
    let pcscf = pcscf::shell::start(pcscf::Config::from_toml(&p_toml).unwrap())
        .await
        .unwrap();
    let p_addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), pcscf.sip_addr.port());

    // The peers of the sinks.
    let broker = testkit::mosquitto::Mosquitto::start().unwrap();
    let (hook_addr, posts) = webhook_server().await;
    let bus = testkit::dbus::SessionBus::start().unwrap();
    let monitor = bus
        .monitor("interface='org.freedesktop.Notifications'")
        .unwrap();

    // The application server, from its own file, as a lab would run it.
    dir.write(
        "phonebook.csv",
        format!("number,name\n{},Alice Example\n", number(0)),
    )
    .unwrap();
    let as_toml = format!(
        "[isc]\nlisten = \"127.0.0.1:{as_port}\"\nscscf = \"{s_addr}\"\n\
         [phonebook]\nfile = \"{pb}\"\n\
         [blocklist]\nentries = [\"{blocked}\"]\n\
         [calllog]\npath = \"{log}\"\n\
         [ncid]\nenabled = true\nlisten = \"127.0.0.1:{ncid_port}\"\n\
         [fritz]\nenabled = true\nlisten = \"127.0.0.1:{fritz_port}\"\n\
         [mqtt]\nenabled = true\nport = {mqtt}\n\
         [datagram]\nenabled = true\nto = \"127.0.0.1:{dg_port}\"\n\
         [webhook]\nenabled = true\nurl = \"http://{hook_addr}/hook\"\n\
         [message]\nenabled = true\n\
         [rest]\nlisten = \"127.0.0.1:{rest_port}\"\ntoken = \"{TOKEN}\"\n",
        pb = dir.join("phonebook.csv").display(),
        blocked = number(2),
        log = dir.join("calls.db").display(),
        mqtt = broker.port(),
    );
    let as_path = dir.write("appserver.toml", &as_toml).unwrap();
    let bin = env!("CARGO_BIN_EXE_appserver");
    let check = Command::new(bin)
        .args(["config", "check"])
        .arg(&as_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut appserver = ChildGuard::spawn(
        "appserver",
        Command::new(bin).arg("-c").arg(&as_path),
        &dir.join("appserver.log"),
    )
    .unwrap();
    appserver
        .wait_for_log("appserver ready", Duration::from_secs(20))
        .unwrap();
    let agent_path = dir
        .write(
            "agent.toml",
            format!("[agent]\nsource = \"datagram\"\nlisten = \"127.0.0.1:{dg_port}\"\n"),
        )
        .unwrap();
    let mut agent = ChildGuard::spawn(
        "notify-agent",
        Command::new(bin)
            .arg("-c")
            .arg(&agent_path)
            .arg("notify-agent")
            .env("DBUS_SESSION_BUS_ADDRESS", bus.address()),
        &dir.join("agent.log"),
    )
    .unwrap();
    agent
        .wait_for_log("notify-agent ready", Duration::from_secs(20))
        .unwrap();
    let ncid = Lines::connect(SocketAddr::from(([127, 0, 0, 1], ncid_port)));
    let fritz = Lines::connect(SocketAddr::from(([127, 0, 0, 1], fritz_port)));
    ncid.wait(&["300 End of connection startup"]).await;

    // UEs A, B, C, D; B rings until told; D withholds its identity.
    let mut cfgs = lab::net::ue_configs(p_addr, 4, false);
    for c in &mut cfgs {
        c.calls.answer = AnswerMode::Ring;
        c.calls.no_answer_timeout = Duration::from_secs(30);
    }
    for (i, c) in cfgs.iter_mut().enumerate() {
        c.local_ip = IpAddr::from([127, 0, 75, 2 + i as u8]);
        c.port = testkit::free_port_on(c.local_ip);
    }
    cfgs[3].calls.privacy = Some("id".into());
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
    let (a, b, c, d) = (&ues[0], &ues[1], &ues[2], &ues[3]);
    let b_impu = lab::net::subscriber(1).impu;
    let alice = number(0);

    // 1. A calls B: named everywhere, with A's number.
    let mqtt = broker
        .subscribe("imslab/calls", 3, Duration::from_secs(30))
        .unwrap();
    let call = a.call(&b_impu).await.unwrap();
    let incoming = b.wait_incoming().await.unwrap();
    let cid = ncid
        .wait(&["CID:", &format!("NMBR*{alice}*"), "NAME*Alice Example*"])
        .await;
    assert!(cid.starts_with("CID: *DATE*"), "{cid}");
    fritz.wait(&[";RING;", &format!(";{alice};")]).await;
    let ring = wait_posts(&posts, |v| v["event"] == "ring").await;
    assert_eq!(ring["caller"]["number"], alice.as_str(), "{ring}");
    assert_eq!(ring["caller"]["name"], "Alice Example", "{ring}");
    // B is called by its IMSI-based SIP URI; the number shown is its tel URI.
    assert_eq!(ring["callee"]["number"], number(1).as_str(), "{ring}");
    monitor
        .wait_for("Call from Alice Example", 1, Duration::from_secs(15))
        .unwrap();
    let (_, text) = tokio::time::timeout(Duration::from_secs(15), b.next_message())
        .await
        .expect("the SIP MESSAGE reaches B")
        .unwrap();
    assert_eq!(text, format!("Call from Alice Example ({alice})"));
    b.answer(incoming).await.unwrap();
    a.wait_answered(call).await.unwrap();
    fritz.wait(&[";CONNECT;"]).await;
    a.hangup(call).await.unwrap();
    b.wait_ended(incoming).await.unwrap();
    fritz.wait(&[";DISCONNECT;"]).await;
    ncid.wait(&["CIDINFO:", "*RING*-2*"]).await;
    let msgs = mqtt.messages().unwrap();
    assert_eq!(msgs.len(), 3, "ring, connect, end: {msgs:?}");
    assert!(
        msgs.iter().all(|m| m.payload.contains("Alice Example")),
        "{msgs:?}"
    );

    // 2. D withholds its identity: Anonymous everywhere, its number nowhere.
    let hidden = number(3);
    let mqtt = broker
        .subscribe("imslab/calls", 1, Duration::from_secs(30))
        .unwrap();
    let call = d.call(&b_impu).await.unwrap();
    let incoming = b.wait_incoming().await.unwrap();
    ncid.wait(&["CID:", "NMBR*PRIVATE*"]).await;
    monitor
        .wait_for("Call from Anonymous", 1, Duration::from_secs(15))
        .unwrap();
    let ring = wait_posts(&posts, |v| {
        v["event"] == "ring" && v["caller"]["anonymous"] == true
    })
    .await;
    assert!(ring["caller"]["number"].is_null(), "{ring}");
    let (_, text) = tokio::time::timeout(Duration::from_secs(15), b.next_message())
        .await
        .expect("the SIP MESSAGE reaches B")
        .unwrap();
    assert_eq!(text, "Call from Anonymous");
    let msgs = mqtt.messages().unwrap();
    b.reject(incoming, 486).await.unwrap();
    let end = d.wait_ended(call).await.unwrap();
    assert!(matches!(end, CallEnd::Rejected { code: 486, .. }), "{end}");
    let everything = format!(
        "{:?}{:?}{:?}{:?}{}",
        ncid.all(),
        fritz.all(),
        msgs,
        posts.lock().unwrap(),
        monitor.log()
    );
    assert!(
        !everything.contains(&hidden[1..]),
        "D's number {hidden} leaked: {everything}"
    );

    // 3. C is blocked: 603 for C, nothing for B, a BLK line for NCID clients.
    let call = c.call(&b_impu).await.unwrap();
    let end = c.wait_ended(call).await.unwrap();
    assert!(matches!(end, CallEnd::Rejected { code: 603, .. }), "{end}");
    let rang = tokio::time::timeout(Duration::from_millis(800), b.wait_incoming()).await;
    assert!(rang.is_err(), "B saw no INVITE from the blocked caller");
    ncid.wait(&["BLK:", &format!("NMBR*{}*", number(2))]).await;

    // 4. A gives up before B answers: cancelled.
    let call = a.call(&b_impu).await.unwrap();
    let incoming = b.wait_incoming().await.unwrap();
    a.hangup(call).await.unwrap();
    b.wait_ended(incoming).await.unwrap();

    // The call log, through the REST API: one row per call, each outcome.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let v: serde_json::Value = client
            .get(format!("http://127.0.0.1:{rest_port}/api/calls?limit=10"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = v
            .as_array()
            .or_else(|| v["calls"].as_array())
            .cloned()
            .unwrap_or_default();
        if rows.len() >= 4 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut outcomes: Vec<String> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or("?").to_string())
        .collect();
    outcomes.sort();
    let mut want = vec![
        Outcome::Answered.as_str(),
        Outcome::Missed.as_str(),
        Outcome::Blocked.as_str(),
        Outcome::Cancelled.as_str(),
    ];
    want.sort();
    assert_eq!(outcomes, want, "{rows:#?}");
    assert!(
        rows.iter()
            .any(|r| r["caller_name"] == "Alice Example" && r["outcome"] == "answered"),
        "{rows:#?}"
    );
    // Without the token: refused.
    let status = client
        .get(format!("http://127.0.0.1:{rest_port}/api/calls"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);

    host.shutdown().await;
    pcscf.stop().await;
}
