//! Service routing over ISC end to end, real sockets on loopback: UE simulators ⇄ `pcscf`
//! (proxy mode) ⇄ our `scscf` (with `[isc]`) ⇄ `hss` (the subscribers' iFCs), and SIPp
//! playing the application servers (TS 24.229 §5.4.3.2/§5.4.3.3, §5.4.1.7):
//!
//! - an originating INVITE iFC sends A's call through a SIPp proxy AS, which relays it back
//!   (the S-CSCF's marker in its Route) and the callee answers;
//! - DefaultHandling with the AS down: SESSION_CONTINUED → the call goes on to the callee,
//!   SESSION_TERMINATED → the caller gets the failure;
//! - a terminating-unregistered iFC sends the call for an unregistered user to its AS
//!   (a SIPp UAS answering 486, voicemail-style);
//! - third-party REGISTERs reach a SIPp UAS on registration, re-registration and
//!   deregistration, with the ServiceInfo and the UE's REGISTER in a multipart body.
//!
//! As root the UEs and the P-CSCF use userspace ESP; otherwise IPsec is off (loudly, by
//! testkit's policy: under CI=true a missing root fails the test).

use ifc::{DefaultHandling, InitialFilterCriteria, SessionCase};
use secagree::IpsecMode;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;
use testkit::{ChildGuard, TestDir};
use ue::{AnswerMode, CallEnd, IoConfig, Party, UeHost};
use xfrm::BackendKind;

const DOMAIN: &str = lab::net::DOMAIN;

fn mode() -> IpsecMode {
    if testkit::require_root() {
        IpsecMode::Backend(BackendKind::Userspace)
    } else {
        IpsecMode::Off
    }
}

/// An iFC: `method` in session case `case` (or any case) to `server`.
fn ifc(
    priority: i32,
    method: &str,
    case: Option<SessionCase>,
    server: &str,
    dh: DefaultHandling,
) -> InitialFilterCriteria {
    InitialFilterCriteria::for_method(priority, method, case, server, dh)
}

/// SIPp as a stateful proxy AS for one INVITE: relays it back to the S-CSCF along the
/// Route the S-CSCF gave it (its marker entry), then relays the 200 upstream. It does not
/// Record-Route, so the rest of the dialog bypasses it. SIPp has no "pop the top Via": the
/// INVITE's Via lines are kept from the first to the UE's (the one the P-CSCF stamped
/// with `received=`) and written back on the 200; the 180 is not relayed (the callee
/// sends it unreliably, as the caller does not ask for 100rel or preconditions).
const PROXY_AS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="isc proxy as">
  <recv request="INVITE">
    <action>
      <ereg regexp="sip:[^ ]+" search_in="msg" check_it="true" assign_to="ruri"/>
      <ereg regexp="Route: .sip:[^;]*;lr;isc=[0-9a-f]*." search_in="msg" check_it="true" assign_to="back"/>
      <ereg regexp="Via: SIP.*received=[0-9.]*" search_in="msg" check_it="true" assign_to="vias"/>
      <ereg regexp="v=0.*" search_in="body" check_it="true" assign_to="sdp"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      INVITE [$ruri] SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      [last_Via:]
      [$back]
      [last_Record-Route:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      [last_P-Asserted-Identity:]
      Max-Forwards: 60
      Content-Type: application/sdp
      Content-Length: [len]

      [$sdp]
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="v=0.*" search_in="body" check_it="true" assign_to="answer"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [$vias]
      [last_Record-Route:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      Content-Type: application/sdp
      Content-Length: [len]

      [$answer]
    ]]>
  </send>
</scenario>
"#;

/// SIPp as a voicemail-style AS: busy for the one call it gets.
const BUSY_AS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="isc busy as">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]vm[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"#;

/// SIPp as an AS that takes third-party REGISTERs.
const REGISTER_SINK: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="third-party register sink">
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]tp[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      [last_Expires:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// A SIPp UAS in the background on 127.0.0.1:`port`, for `calls` calls.
fn sipp_uas(dir: &TestDir, name: &str, scenario: &str, port: u16, calls: u32) -> ChildGuard {
    let bin = testkit::sipp::bin().expect("checked before");
    let scen = dir.write(&format!("{name}.xml"), scenario).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-sf")
        .arg(&scen)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", "u1"])
        .args([
            "-m",
            &calls.to_string(),
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .args(["-trace_msg", "-trace_err", "-message_file"])
        .arg(dir.join(&format!("{name}.msg")))
        .arg("-error_file")
        .arg(dir.join(&format!("{name}.err")))
        .current_dir(dir.path());
    ChildGuard::spawn(name, &mut cmd, &dir.join(&format!("{name}.out"))).unwrap()
}

/// Waits until SIPp `g` has exited; its verdict and message trace.
fn sipp_done(dir: &TestDir, name: &str, g: &mut ChildGuard) -> (bool, String) {
    let ok = g
        .wait_timeout(Duration::from_secs(10))
        .map(|s| s.success())
        .unwrap_or(false);
    let msgs = std::fs::read_to_string(dir.join(&format!("{name}.msg"))).unwrap_or_default();
    let errs = std::fs::read_to_string(dir.join(&format!("{name}.err"))).unwrap_or_default();
    (
        ok,
        format!(
            "{msgs}\n--- errors ---\n{errs}\n--- out ---\n{}",
            g.log_tail(20)
        ),
    )
}

/// The REGISTER requests in a SIPp message trace, in order.
fn registers_in(trace: &str) -> Vec<String> {
    trace
        .split("message received")
        .skip(1)
        .filter_map(|s| {
            let start = s.find("REGISTER ")?;
            let end = s
                .find("-----------------------------------------------")
                .unwrap_or(s.len());
            (start < end).then(|| s[start..end].to_string())
        })
        .collect()
}

/// Where the S-CSCF runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stack {
    /// `pcscf` in proxy mode in front of the `scscf` binary's core.
    Proxy,
    /// `pcscf` with its S-CSCF in the same process (the default), `[isc]` in pcscf.toml.
    Collapsed,
}

/// Both stacks use userspace ESP in this process: one at a time, or their SPIs would meet
/// on 127.0.0.1.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn ifcs_route_calls_through_application_servers_and_third_party_registers_reach_them() {
    ifc_end_to_end(Stack::Proxy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_collapsed_pcscf_routes_through_application_servers_too() {
    ifc_end_to_end(Stack::Collapsed).await;
}

async fn ifc_end_to_end(stack: Stack) {
    let _one = ONE_AT_A_TIME.lock().await;
    if testkit::sipp::bin().is_none() {
        testkit::skip_or_fail("sipp is not installed (apt-get install sip-tester)");
        return;
    }
    let mode = mode();
    let dir = TestDir::new("e2e-ifc").unwrap();
    let ports = testkit::free_ports(6);
    let (d_port, s_port, p_port, proxy_port, sink_port, busy_port) =
        (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]);
    // Nobody listens here: the AS that is down.
    let dead_port = testkit::free_port();
    let proxy_as = format!("sip:127.0.0.1:{proxy_port}");
    let sink_as = format!("sip:127.0.0.1:{sink_port}");
    let busy_as = format!("sip:127.0.0.1:{busy_port}");
    let dead_as = format!("sip:127.0.0.1:{dead_port}");

    // HSS with five subscribers: A (ISC proxy on originating INVITE, third-party REGISTER
    // with ServiceInfo and the REGISTER), B (no services), C and D (an AS that is down,
    // continued and terminated), E (never registers; voicemail-style AS when unregistered).
    let mut reg_ifc = ifc(
        0,
        "REGISTER",
        None,
        &sink_as,
        DefaultHandling::SessionContinued,
    );
    reg_ifc.application_server.service_info = Some("lab-vm".into());
    reg_ifc.application_server.include_register_request = true;
    let profiles: Vec<Vec<InitialFilterCriteria>> = vec![
        vec![
            reg_ifc,
            ifc(
                10,
                "INVITE",
                Some(SessionCase::Originating),
                &proxy_as,
                DefaultHandling::SessionContinued,
            ),
        ],
        vec![],
        vec![ifc(
            10,
            "INVITE",
            Some(SessionCase::Originating),
            &dead_as,
            DefaultHandling::SessionContinued,
        )],
        vec![ifc(
            10,
            "INVITE",
            Some(SessionCase::Originating),
            &dead_as,
            DefaultHandling::SessionTerminated,
        )],
        vec![ifc(
            10,
            "INVITE",
            Some(SessionCase::TerminatingUnregistered),
            &busy_as,
            DefaultHandling::SessionContinued,
        )],
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

    let ipsec = match mode {
        IpsecMode::Off => "policy = \"off\"\n".to_string(),
        IpsecMode::Backend(_) => {
            "policy = \"required\"\nbackend = \"userspace\"\nport_range = [32500, 32599]\n".into()
        }
    };
    let isc = "[isc]\napplication_servers = [\"127.0.0.1\"]\nas_timeout_ms = 1000\n";
    let (scscf, pcscf, s_advertise) = match stack {
        Stack::Proxy => {
            // Our S-CSCF, trusting the P-CSCF and the application servers on 127.0.0.1.
            let s_toml = format!(
                "[sip]\nlisten = \"127.0.0.1:{s_port}\"\ndomain = \"{DOMAIN}\"\n\
                 [hss]\naddress = \"127.0.0.1:{d_port}\"\n\
                 [routing]\ntrusted = [\"127.0.0.1\"]\n{isc}"
            );
            dir.write("scscf.toml", &s_toml).unwrap();
            let scscf = scscf::shell::start(scscf::config::Config::from_toml(&s_toml).unwrap())
                .await
                .unwrap();
            // The P-CSCF in proxy mode in front of it.
            let p_toml = format!(
                "[sip]\nlisten = \"127.0.0.1:{p_port}\"\ndomain = \"{DOMAIN}\"\n[ipsec]\n{ipsec}\
                 [scscf]\nmode = \"proxy\"\naddress = \"{}\"\ntransport = \"udp\"\n",
                scscf.advertise
            );
            dir.write("pcscf.toml", &p_toml).unwrap();
            let pcscf = pcscf::shell::start(pcscf::Config::from_toml(&p_toml).unwrap())
                .await
                .unwrap();
            let adv = scscf.advertise;
            (Some(scscf), pcscf, adv)
        }
        Stack::Collapsed => {
            // One process: the S-CSCF listens on its own address for the ASes.
            let s_addr = SocketAddr::from(([127, 0, 0, 1], s_port));
            let p_toml = format!(
                "[sip]\nlisten = \"127.0.0.1:{p_port}\"\ndomain = \"{DOMAIN}\"\n[ipsec]\n{ipsec}\
                 [scscf]\naddress = \"{s_addr}\"\n[hss]\naddress = \"127.0.0.1:{d_port}\"\n\
                 origin_host = \"pcscf.{DOMAIN}\"\n{isc}"
            );
            dir.write("pcscf.toml", &p_toml).unwrap();
            let pcscf = pcscf::shell::start(pcscf::Config::from_toml(&p_toml).unwrap())
                .await
                .unwrap();
            (None, pcscf, s_addr)
        }
    };
    let p_addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), pcscf.sip_addr.port());

    // The application servers that answer.
    let mut sink = sipp_uas(&dir, "sink", REGISTER_SINK, sink_port, 3);
    let mut proxy = sipp_uas(&dir, "proxy", PROXY_AS, proxy_port, 1);
    let mut busy = sipp_uas(&dir, "busy", BUSY_AS, busy_port, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // UEs A..D.
    let mut cfgs = lab::net::ue_configs(p_addr, 4, mode != IpsecMode::Off);
    for c in &mut cfgs {
        c.sa_grace = Duration::from_millis(300);
        c.calls.preconditions = false;
        c.calls.answer = AnswerMode::Auto(Duration::from_millis(100));
        c.calls.no_answer_timeout = Duration::from_secs(20);
    }
    // Away from the 127.0.0.x:5060 other lab tests give their UEs.
    for (i, c) in cfgs.iter_mut().enumerate() {
        c.local_ip = IpAddr::from([127, 0, 73, 2 + i as u8]);
        c.port = testkit::free_port_on(c.local_ip);
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
    let impu = |i: usize| lab::net::subscriber(i).impu;

    // A calls B: through the proxy AS and back, then B answers.
    let call = ues[0].call(&impu(1)).await.unwrap();
    ues[0].wait_answered(call).await.unwrap();
    let incoming = ues[1].wait_incoming().await.unwrap();
    ues[0].hangup(call).await.unwrap();
    let end = ues[1].wait_ended(incoming).await.unwrap();
    assert!(
        matches!(end, CallEnd::HungUp { by: Party::Remote }),
        "{end}"
    );
    let (ok, trace) = sipp_done(&dir, "proxy", &mut proxy);
    assert!(ok, "the proxy AS saw the call through:\n{trace}");
    assert!(trace.contains(";lr;isc="), "{trace}");

    // C's AS is down, SESSION_CONTINUED: the call reaches B all the same.
    let call = ues[2].call(&impu(1)).await.unwrap();
    ues[2].wait_answered(call).await.unwrap();
    let incoming = ues[1].wait_incoming().await.unwrap();
    ues[2].hangup(call).await.unwrap();
    ues[1].wait_ended(incoming).await.unwrap();

    // D's AS is down, SESSION_TERMINATED: D gets the failure, B never rings.
    let call = ues[3].call(&impu(1)).await.unwrap();
    let end = ues[3].wait_ended(call).await.unwrap();
    assert!(
        matches!(
            end,
            CallEnd::Rejected {
                code: 408 | 500,
                ..
            }
        ),
        "{end}"
    );

    // E is not registered: its terminating-unregistered AS answers (busy).
    let call = ues[0].call(&impu(4)).await.unwrap();
    let end = ues[0].wait_ended(call).await.unwrap();
    assert!(matches!(end, CallEnd::Rejected { code: 486, .. }), "{end}");
    let (ok, trace) = sipp_done(&dir, "busy", &mut busy);
    assert!(ok, "{trace}");

    // Third-party REGISTERs: A's registration above, then re-registration and
    // deregistration.
    ues[0].reregister().await.unwrap();
    ues[0].deregister().await.unwrap();
    let (ok, trace) = sipp_done(&dir, "sink", &mut sink);
    assert!(ok, "three third-party REGISTERs:\n{trace}");
    let regs = registers_in(&trace);
    assert_eq!(regs.len(), 3, "{trace}");
    let scscf_uri = format!("<sip:{s_advertise}>");
    for (r, expires) in regs.iter().zip(["600", "600", "0"]) {
        assert!(
            r.contains(&format!("Expires: {expires}\r\n"))
                || r.contains(&format!("Expires: {expires}\n")),
            "{r}"
        );
        assert!(r.contains(&format!("To: <{}>", impu(0))), "{r}");
        assert!(r.contains(&format!("Contact: {scscf_uri}")), "{r}");
        assert!(
            r.contains(&format!("P-Associated-URI: <{}>, <tel:", impu(0))),
            "{r}"
        );
        assert!(r.contains("multipart/mixed;boundary="), "{r}");
        assert!(r.contains("<service-info>lab-vm</service-info>"), "{r}");
        assert!(r.contains("Content-Type: message/sip"), "{r}");
    }
    if let Some(scscf) = &scscf {
        let stats = scscf.stats();
        assert_eq!(stats.third_party_registers, 3, "{stats:?}");
        assert!(stats.as_failures >= 2, "{stats:?}");
    }

    for u in &ues[1..] {
        let _ = u.deregister().await;
    }
    host.shutdown().await;
    pcscf.stop().await;
    if let Some(scscf) = scscf {
        scscf.stop().await;
    }
}
