//! Interop rewrite rules in a real `pcscf` process on loopback (proxy mode, IPsec off, a
//! scripted S-CSCF on a UDP socket, a raw-UDP UE): an invalid rules file stops the start
//! with the rule's name; SIGHUP with an invalid file keeps the old rules in force, SIGHUP
//! with a valid one puts the new ones in force.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DOMAIN: &str = "ims.test";
const IMPU: &str = "sip:001010000000042@ims.test";

const RULES_V1: &str = r#"
[[to_core]]
name = "tag-v1"
method = "REGISTER"
add_header = [{ name = "X-Rules", value = "v1" }]

[[to_ue]]
name = "forbidden-becomes-not-found"
status = 403
map_status = { code = 404, reason = "Rewritten" }
"#;

const RULES_BROKEN: &str = r#"
[[to_core]]
name = "tag-v1"
add_header = [{ name = "X-Rules", value = "v1" }]

[[to_core]]
name = "broken-regex"
headers = [{ name = "To", value = "((" }]
add_header = [{ name = "X-Never", value = "1" }]
"#;

const RULES_V2: &str = r#"
[[to_core]]
name = "tag-v2"
add_header = [{ name = "X-Rules", value = "v2" }]
"#;

fn config(dir: &Path, scscf: SocketAddr, rules: &Path) -> std::path::PathBuf {
    let conf = dir.join("pcscf.toml");
    std::fs::write(
        &conf,
        format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\n\
             [ipsec]\npolicy = \"off\"\n\
             [hss]\naddress = \"127.0.0.1:1\"\n\
             [scscf]\nmode = \"proxy\"\naddress = \"{scscf}\"\nsubscribe_reg_event = false\n\
             [log]\nlevel = \"info\"\n\
             [rewrite]\nfile = \"{}\"\n",
            rules.display()
        ),
    )
    .unwrap();
    conf
}

/// The process; killed (by its own id) when the test ends, whatever happens.
struct Pcscf {
    child: Child,
    sip: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Pcscf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pcscf {
    fn start(conf: &Path) -> Pcscf {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pcscf"))
            .args(["-c", conf.to_str().unwrap()])
            .env_remove("PCSCF_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // "pcscf ready: sip 127.0.0.1:NNNN ipsec backend off"
        let sip = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no ready line: {line:?}"));
        Pcscf { child, sip, stderr }
    }

    fn hangup(&self) {
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits (at most 10 s) for a log line containing every one of `words`.
    fn wait_log(&self, words: &[&str]) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(l) if words.iter().all(|w| l.contains(w)) => return l,
                Ok(l) => seen.push(l),
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {words:?} within 10 s; saw:\n{}",
            seen.join("\n")
        );
    }
}

fn recv(sock: &UdpSocket) -> sip::Message {
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("nothing arrived within 5 s");
    sip::Message::parse(&buf[..n]).unwrap()
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// One REGISTER from the UE through the P-CSCF; the S-CSCF answers 403. Returns the
/// X-Rules header the S-CSCF saw and the status line the UE got.
fn round(p: &Pcscf, ue: &UdpSocket, scscf: &UdpSocket, n: u32) -> (Option<String>, String) {
    let port = ue.local_addr().unwrap().port();
    let register = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKrw{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <{IMPU}>;tag=ue{n}\r\n\
         To: <{IMPU}>\r\n\
         Call-ID: rewrite-test-{n}\r\n\
         CSeq: {n} REGISTER\r\n\
         Contact: <sip:127.0.0.1:{port}>;expires=600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    ue.send_to(register.as_bytes(), p.sip).unwrap();
    let req = recv(scscf);
    let tag = req.header("X-Rules").map(str::to_owned);
    let resp = sip::ResponseBuilder::new(&req, 403)
        .to_tag("s")
        .build()
        .unwrap();
    let (host, rport) = resp.top_via().unwrap().response_target();
    let to: SocketAddr = format!("{host}:{rport}").parse().unwrap();
    scscf.send_to(&resp.to_bytes(), to).unwrap();
    let got = recv(ue);
    let status = format!("{} {}", got.code().unwrap(), got.reason().unwrap());
    (tag, status)
}

#[test]
fn an_invalid_rules_file_stops_the_start_and_names_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES_BROKEN).unwrap();
    let conf = config(dir.path(), "127.0.0.1:9".parse().unwrap(), &rules);
    for args in [
        vec!["-c", conf.to_str().unwrap()],
        vec!["config", "check", conf.to_str().unwrap()],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_pcscf"))
            .args(&args)
            .env_remove("PCSCF_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} accepted a broken rules file");
        assert!(
            err.contains("to_core rule \"broken-regex\"")
                && err.contains("bad regex")
                && err.contains(rules.to_str().unwrap()),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn sighup_keeps_old_rules_on_an_invalid_file_and_applies_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES_V1).unwrap();
    let scscf = udp();
    let conf = config(dir.path(), scscf.local_addr().unwrap(), &rules);
    let p = Pcscf::start(&conf);
    let ue = udp();

    let (tag, status) = round(&p, &ue, &scscf, 1);
    assert_eq!(tag.as_deref(), Some("v1"), "to_core rule applied");
    assert_eq!(status, "404 Rewritten", "to_ue rule applied");

    std::fs::write(&rules, RULES_BROKEN).unwrap();
    p.hangup();
    let line = p.wait_log(&["broken-regex", "previous rewrite rules stay in force"]);
    assert!(line.contains(rules.to_str().unwrap()), "{line}");
    let (tag, status) = round(&p, &ue, &scscf, 2);
    assert_eq!(tag.as_deref(), Some("v1"), "old rules still in force");
    assert_eq!(status, "404 Rewritten", "old to_ue rule still in force");

    std::fs::write(&rules, RULES_V2).unwrap();
    p.hangup();
    p.wait_log(&["rewrite rules reloaded", "1 rules"]);
    let (tag, status) = round(&p, &ue, &scscf, 3);
    assert_eq!(tag.as_deref(), Some("v2"), "new rules in force");
    assert_eq!(status, "403 Forbidden", "the old to_ue rule is gone");
}
