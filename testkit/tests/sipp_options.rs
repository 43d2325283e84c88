//! SIPp runs the bundled OPTIONS scenario against a tiny UDP responder.

use std::net::UdpSocket;
use std::time::Duration;

use testkit::sipp::{options_scenario, Sipp};

/// Answers every request with `code` (copying Via/From/To/Call-ID/CSeq) until
/// the socket read times out; returns how many requests it saw.
fn responder(sock: UdpSocket, code: &'static str) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut seen = 0;
        let mut buf = [0u8; 8192];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            seen += 1;
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let mut resp = format!("SIP/2.0 {code}\r\n");
            for line in req.lines() {
                let l = line.to_ascii_lowercase();
                if ["via:", "from:", "to:", "call-id:", "cseq:"]
                    .iter()
                    .any(|h| l.starts_with(h))
                {
                    resp.push_str(line.trim_end());
                    if l.starts_with("to:") {
                        resp.push_str(";tag=responder");
                    }
                    resp.push_str("\r\n");
                }
            }
            resp.push_str("Content-Length: 0\r\n\r\n");
            sock.send_to(resp.as_bytes(), from).unwrap();
        }
        seen
    })
}

#[test]
fn sipp_options_succeeds_against_200_responder() {
    if testkit::require_bin("sipp").is_none() {
        return;
    }
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sock.local_addr().unwrap();
    let h = responder(sock, "200 OK");
    let mut run = Sipp::new(options_scenario(&format!("sip:{target}")), target);
    run.timeout = Duration::from_secs(5);
    let out = run.run().unwrap();
    assert!(out.success, "{}", out.describe());
    assert_eq!(out.received_status_codes(), vec![200], "{}", out.describe());
    assert!(out.messages.contains("OPTIONS sip:"), "{}", out.describe());
    assert!(h.join().unwrap() >= 1);
}

#[test]
fn sipp_options_fails_against_404_responder() {
    if testkit::require_bin("sipp").is_none() {
        return;
    }
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sock.local_addr().unwrap();
    let h = responder(sock, "404 Not Found");
    let mut run = Sipp::new(options_scenario(&format!("sip:{target}")), target);
    run.timeout = Duration::from_secs(5);
    let out = run.run().unwrap();
    assert!(!out.success, "{}", out.describe());
    assert_eq!(out.exit_code, Some(1), "{}", out.describe());
    assert!(
        out.received_status_codes().contains(&404),
        "{}",
        out.describe()
    );
    let _ = h.join();
}

#[test]
fn sipp_run_is_bounded_when_nobody_answers() {
    if testkit::require_bin("sipp").is_none() {
        return;
    }
    // A socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap();
    let mut run = Sipp::new(options_scenario(&format!("sip:{target}")), target);
    run.timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let out = run.run().unwrap();
    assert!(!out.success, "{}", out.describe());
    assert!(out.received_status_codes().is_empty());
    // The documented bound: SIPp's -timeout plus our 5 s grace.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
