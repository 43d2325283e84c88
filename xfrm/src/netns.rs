//! Network namespaces for tests, examples and the lab: create one, run code inside it from a
//! dedicated thread (`setns(2)` on that thread only), delete it on drop.
//!
//! Everything the backends open (netlink and raw sockets) belongs to the namespace of the
//! thread that opened it, so `ns.run(|| KernelBackend::new(..))` gives a backend that acts in
//! `ns` even when later used from other threads.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    /// Left in place on drop ([`NetNs::persist`], [`NetNs::attach`]).
    keep: bool,
}

impl NetNs {
    /// Creates `<prefix>-<pid>-<n>` (unique per process and call).
    pub fn create(prefix: &str) -> io::Result<NetNs> {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        NetNs::create_named(&name)
    }

    /// Creates the namespace `name` exactly (fails if it exists), loopback up; deleted on
    /// drop unless [`NetNs::persist`]ed.
    pub fn create_named(name: &str) -> io::Result<NetNs> {
        let name = name.to_string();
        let out = Command::new("ip").args(["netns", "add", &name]).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let ns = NetNs { name, keep: false };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The existing namespace `name` (`/run/netns/<name>`), left in place on drop.
    pub fn attach(name: &str) -> io::Result<NetNs> {
        std::fs::metadata(format!("/run/netns/{name}"))?;
        Ok(NetNs {
            name: name.to_string(),
            keep: true,
        })
    }

    /// Leaves the namespace in place when this handle is dropped.
    pub fn persist(mut self) -> String {
        self.keep = true;
        self.name.clone()
    }

    /// Runs `f` on a new thread that has entered this namespace and returns at once;
    /// sockets `f` opens (and threads it starts, a tokio runtime's workers included)
    /// belong to the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<std::thread::JoinHandle<io::Result<T>>> {
        let file = File::open(format!("/run/netns/{}", self.name))?;
        std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                enter(&file)?;
                Ok(f())
            })
    }

    /// Name of the namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a fresh thread that has entered this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let file = File::open(format!("/run/netns/{}", self.name))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&file)?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("thread in netns panicked"))?
        })
    }

    /// Runs `ip -n <ns> args...`, failing on a non-zero exit.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip -n {} {}: {}",
                self.name,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Connects `self` and `other` with a veth pair and assigns addresses (with prefix length,
    /// e.g. "10.99.0.1/24" or "fd00::1/64"); both ends are brought up. IPv6 DAD is disabled
    /// so addresses are usable at once.
    pub fn veth_to(
        &self,
        other: &NetNs,
        here: &[&str],
        there: &[&str],
    ) -> io::Result<(String, String)> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let a = format!("vx{}a{n}", std::process::id() % 100000);
        let b = format!("vx{}b{n}", std::process::id() % 100000);
        self.ip(&[
            "link",
            "add",
            &a,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            &other.name,
        ])?;
        for (ns, dev, addrs) in [(self, &a, here), (other, &b, there)] {
            let _ = ns
                .command("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{dev}.accept_dad=0")])
                .output();
            for ad in addrs {
                ns.ip(&["addr", "add", ad, "dev", dev, "nodad"])
                    .or_else(|_| ns.ip(&["addr", "add", ad, "dev", dev]))?;
            }
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok((a, b))
    }
}

/// Moves the calling thread into the namespace `file` names.
fn enter(file: &File) -> io::Result<()> {
    // SAFETY: file is an open netns fd; CLONE_NEWNET affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// For tests needing root or a peer binary: under `CI=true` a missing requirement fails the
/// test; elsewhere it prints a loud SKIPPED line and the test returns early (`false`).
pub fn require(ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("requirement missing in CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
    false
}

/// True when running as root (needed for netns, XFRM and raw sockets).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True if `program` is found in PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
