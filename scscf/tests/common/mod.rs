//! Our binaries as child processes for the end-to-end tests: `scscf` (this package's own),
//! `hss` and `pcscf` (other packages': cargo builds them for `cargo test --workspace`; for
//! `cargo test -p scscf`, run `cargo build --release -p hss -p pcscf` first).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::{ChildGuard, TestDir};

/// The `scscf` binary under test.
pub fn scscf_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scscf"))
}

/// `name` built by cargo next to the `scscf` binary (same target directory and profile),
/// or the skip-or-fail policy when it is not there.
pub fn sibling_bin(name: &str) -> Option<PathBuf> {
    let p = scscf_bin().with_file_name(name);
    if p.is_file() {
        return Some(p);
    }
    testkit::skip_or_fail(&format!(
        "{} is not built: run `cargo build --release -p hss -p pcscf` (cargo test \
         --workspace builds it)",
        p.display()
    ));
    None
}

/// Runs `bin args` to completion; (success, stdout, stderr).
pub fn run(bin: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "error")
        .env_remove("SCSCF_CONFIG")
        .env_remove("HSS_CONFIG")
        .output()
        .expect("run the binary");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Starts `bin -c config run` and waits for the line starting with `ready`; returns the
/// guard and that line.
pub fn start(
    dir: &TestDir,
    name: &str,
    bin: &Path,
    config: &Path,
    ready: &str,
) -> (ChildGuard, String) {
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(config)
        .arg("run")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut guard = ChildGuard::spawn(name, &mut cmd, &dir.join(&format!("{name}.log")))
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    if let Err(e) = guard.wait_for_log(ready, Duration::from_secs(20)) {
        panic!("{name} did not start: {e}");
    }
    let line = guard
        .log()
        .lines()
        .find(|l| l.starts_with(ready))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{name}: no line starting with {ready:?}"));
    eprintln!("e2e: {line}");
    (guard, line)
}

/// The address after `key ` in a ready line (`... sip 127.0.0.1:6060 ...`).
pub fn addr_after(line: &str, key: &str) -> SocketAddr {
    let mut words = line.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == key)
        .and_then(|_| words.next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address after {key:?} in {line:?}"))
}

/// `GET /metrics` over loopback: the body.
pub fn scrape(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: scscf\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The value of one series in a scrape.
pub fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')
            .and_then(|v| v.trim().parse().ok())
    })
}
