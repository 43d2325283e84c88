//! Spawned peers that cannot outlive the test, and temp directories.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::wait::{wait_until, POLL};
use crate::Error;

/// A spawned child process, in its own process group, whose stdout and stderr
/// go to one log file. Dropping the guard terminates the whole group (SIGTERM,
/// then SIGKILL after a grace period) and reaps the child, so daemons that fork
/// workers (Kamailio, freeDiameterd) never leak past a failing test.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

/// How long [`ChildGuard`]'s `Drop` waits after SIGTERM before SIGKILL.
pub const DROP_GRACE: Duration = Duration::from_secs(3);

impl ChildGuard {
    /// Spawns `cmd` in a new process group with stdin from `/dev/null` and
    /// stdout+stderr appended to `log` (created or truncated).
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self, Error> {
        use std::os::unix::process::CommandExt;
        let out =
            File::create(log).map_err(|e| Error::io(format!("create {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io("dup log file".to_string(), e))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawn {name} ({:?})", cmd.get_program()), e))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// The name given at spawn time (used in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the combined stdout/stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (lossy UTF-8; empty if unreadable).
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Exit status if the child has exited (reaps it), else `None`.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits until the child exits, at most `timeout`. On timeout the child is
    /// left running (the guard still kills it on drop).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{} to exit", self.name),
                    after: timeout,
                    detail: self.log_tail(30),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the log contains `needle`, at most `timeout`; fails early
    /// if the child exits first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<(), Error> {
        let log = self.log.clone();
        let what = format!("{} to log {needle:?}", self.name);
        let mut exited = None;
        let res = wait_until(&what, timeout, || {
            if read_lossy(&log).contains(needle) {
                return true;
            }
            if let Some(st) = self.try_wait() {
                exited = Some(st);
                return true;
            }
            false
        });
        if let Some(st) = exited {
            if !read_lossy(&log).contains(needle) {
                return Err(Error::Exited {
                    name: self.name.clone(),
                    status: st.to_string(),
                    detail: self.log_tail(40),
                });
            }
        }
        res.map_err(|e| e.with_detail(self.log_tail(40)))
    }

    /// Sends `signal` to the whole process group.
    pub fn signal_group(&self, signal: i32) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid addresses our own child's group;
        // no memory is shared.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }

    /// Stops the process group: SIGTERM, up to `grace` for the leader to
    /// exit, then SIGKILL to the group. Returns the leader's exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            self.signal_group(libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.try_wait().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        // Workers may outlive their leader: always clean the group.
        self.signal_group(libc::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        self.status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(DROP_GRACE);
    }
}

/// A temporary directory for one test (`/tmp/testkit-<prefix>-XXXX`), removed
/// on drop unless `TESTKIT_KEEP=1` is set (then its path is printed so logs,
/// configs and pcaps can be inspected after a failure).
#[derive(Debug)]
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// Creates the directory.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("testkit-{prefix}-"))
            .tempdir()
            .map_err(|e| Error::io("create temp dir".to_string(), e))?;
        let path = dir.path().to_path_buf();
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `path()/name` and returns the full path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf, Error> {
        let p = self.join(name);
        std::fs::write(&p, contents).map_err(|e| Error::io(format!("write {}", p.display()), e))?;
        Ok(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let keep = std::env::var("TESTKIT_KEEP").is_ok_and(|v| v == "1");
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("testkit: keeping {}", dir.keep().display());
            }
        }
    }
}

/// Reads a file as lossy UTF-8; empty when unreadable.
pub(crate) fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `s`.
pub(crate) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether process `pid` exists and is not a zombie (Linux `/proc`).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Live (non-zombie) processes whose process group is `pgid` (Linux `/proc`).
/// After a [`ChildGuard`] is dropped this is empty for its pid.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(") ")?;
                    let mut f = rest.split_whitespace();
                    let state = f.next()?;
                    let pgrp: u32 = f.nth(1)?.parse().ok()?;
                    Some(pgrp == pgid && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Opens `p` for appending (creating it).
#[allow(dead_code)]
pub(crate) fn append(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_kills_group_on_drop() {
        let dir = TestDir::new("guard").unwrap();
        let log = dir.join("sh.log");
        let pidfile = dir.join("grandchild.pid");
        // The shell forks a grandchild sleeper in the same group and records its pid.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "sleep 300 & echo $! > {}; echo started; wait",
            pidfile.display()
        ));
        let mut g = ChildGuard::spawn("sh", &mut cmd, &log).unwrap();
        g.wait_for_log("started", Duration::from_secs(5)).unwrap();
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(g.is_running());
        drop(g);
        // The grandchild is not our child: once killed it is reaped by init,
        // so poll until kill(pid, 0) fails.
        let gone = wait_until("grandchild to die", Duration::from_secs(5), || {
            !pid_alive(grandchild as u32)
        });
        assert!(gone.is_ok(), "grandchild {grandchild} survived the guard");
    }

    #[test]
    fn wait_for_log_reports_early_exit() {
        let dir = TestDir::new("exit").unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo bye; exit 3");
        let mut g = ChildGuard::spawn("sh", &mut cmd, &dir.join("l")).unwrap();
        let err = g
            .wait_for_log("never printed", Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(err, Error::Exited { .. }), "{err}");
    }

    #[test]
    fn tail_takes_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
