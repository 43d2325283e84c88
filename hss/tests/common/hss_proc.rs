//! Our `hss` binary as a child process for the acceptance tests against real peers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{ChildGuard, TestDir};

/// Our `hss` binary with a generated config and a fresh SQLite store; killed on drop.
pub struct HssProc {
    pub guard: ChildGuard,
    pub diameter: SocketAddr,
    pub config: PathBuf,
}

impl HssProc {
    /// Writes `hss.toml` (Origin-Host `hss.ims.lab`, realm `ims.lab`, the allow-list, the
    /// store in `dir`, then `extra_toml`), runs `provision` once with the config path, then
    /// starts `hss run` on a free loopback port and waits for its ready line. A port taken
    /// meanwhile is retried with another one, at most three attempts in all.
    pub fn start(
        dir: &TestDir,
        allowed: &[&str],
        extra_toml: &str,
        provision: impl FnOnce(&Path),
    ) -> HssProc {
        let allowed = allowed
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut provision = Some(provision);
        for attempt in 1..=3 {
            let port = testkit::free_port();
            let config = dir
                .write(
                    "hss.toml",
                    format!(
                        "origin_host = \"hss.ims.lab\"\nrealm = \"ims.lab\"\n\n\
                         [diameter]\nlisten = \"127.0.0.1:{port}\"\nallowed_peers = [{allowed}]\n\n\
                         [store]\npath = \"{}\"\ndurability = \"normal\"\n{extra_toml}",
                        dir.join("hss.db").display()
                    ),
                )
                .unwrap();
            if let Some(p) = provision.take() {
                p(&config);
            }
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_hss"));
            cmd.arg("-c")
                .arg(&config)
                .arg("run")
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1");
            let log = dir.join(&format!("hss-{attempt}.log"));
            let mut guard = ChildGuard::spawn("hss", &mut cmd, &log).unwrap();
            match guard.wait_for_log("hss ready diameter=", Duration::from_secs(20)) {
                Ok(()) => {
                    let text = guard.log();
                    let line = text
                        .lines()
                        .find(|l| l.starts_with("hss ready diameter="))
                        .expect("ready line");
                    let diameter: SocketAddr = line["hss ready diameter=".len()..]
                        .split_whitespace()
                        .next()
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
                    assert_eq!(diameter.port(), port, "{line}");
                    eprintln!("accept: {line}");
                    return HssProc {
                        guard,
                        diameter,
                        config,
                    };
                }
                Err(e) if attempt < 3 && guard.log().contains("in use") => {
                    eprintln!("accept: hss port {port} taken, retrying: {e}");
                }
                Err(e) => panic!("hss did not start: {e}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Runs `hss -c <config> <args>` to completion and returns stdout.
    pub fn cli(config: &Path, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_hss"))
            .arg("-c")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the hss CLI");
        assert!(
            out.status.success(),
            "hss {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The log without ANSI colours (in case the binary colours its output anyway).
    pub fn plain_log(&self) -> String {
        let mut out = String::new();
        let mut it = self.guard.log().chars().collect::<Vec<_>>().into_iter();
        while let Some(c) = it.next() {
            if c == '\u{1b}' {
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
