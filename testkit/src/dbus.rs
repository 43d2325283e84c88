//! `dbus-daemon` + `dbus-monitor` fixture (Debian `dbus`, `dbus-bin`): a private session
//! bus for one test, and a monitor that records the method calls a client makes on it.
//!
//! The bus runs from a temp config (a `unix:path=` socket in the test dir, EXTERNAL
//! auth, a policy that lets anyone send, own names and eavesdrop) with
//! `--nofork --print-address`; [`SessionBus::address`] is what it printed, for
//! `DBUS_SESSION_BUS_ADDRESS`. No service directories are configured, so nothing is ever
//! activated: a call to a name nobody owns gets an error reply at once (a test of a
//! client that must survive a missing notification server relies on this).
//!
//! [`SessionBus::monitor`] runs `dbus-monitor --address ADDR RULE`, which becomes a bus
//! monitor (`org.freedesktop.DBus.Monitoring.BecomeMonitor`, dbus ≥ 1.10; checked on
//! Debian's 1.14) and prints every matching message; it is ready when it printed the
//! `NameLost` signal of its own unique name, which the bus sends when a connection
//! turns monitor.
//!
//! Ask first: `testkit::require_bin("dbus-daemon")` and `("dbus-monitor")`.

use std::process::Command;
use std::time::Duration;

use crate::{wait_until, ChildGuard, Error, TestDir};

/// A private session bus.
#[derive(Debug)]
pub struct SessionBus {
    child: ChildGuard,
    address: String,
    dir: TestDir,
}

const CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={{SOCKET}}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

impl SessionBus {
    /// Starts the bus and waits (≤ 10 s) for its address.
    pub fn start() -> Result<Self, Error> {
        let dir = TestDir::new("dbus")?;
        let socket = dir.join("bus");
        let conf = dir.write(
            "session.conf",
            crate::render(CONFIG, &[("SOCKET", socket.display().to_string())]),
        )?;
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address"]);
        let mut child = ChildGuard::spawn("dbus-daemon", &mut cmd, &dir.join("dbus.log"))?;
        child.wait_for_log("unix:path=", Duration::from_secs(10))?;
        let address = child
            .log()
            .lines()
            .find(|l| l.starts_with("unix:path="))
            .map(str::to_string)
            .ok_or_else(|| Error::parse("dbus-daemon address", child.log_tail(10)))?;
        Ok(Self {
            child,
            address,
            dir,
        })
    }

    /// The bus address (`unix:path=…,guid=…`), for `DBUS_SESSION_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Starts `dbus-monitor` with match `rule` (e.g.
    /// `interface='org.freedesktop.Notifications'`) and waits (≤ 10 s) until it is a
    /// monitor.
    pub fn monitor(&self, rule: &str) -> Result<Monitor, Error> {
        let n = self.dir.path().read_dir().map_or(0, |d| d.count());
        let log = self.dir.join(&format!("monitor-{n}.log"));
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "dbus-monitor", "--address", &self.address, rule]);
        let mut child = ChildGuard::spawn("dbus-monitor", &mut cmd, &log)?;
        child.wait_for_log("member=NameLost", Duration::from_secs(10))?;
        Ok(Monitor { child })
    }
}

/// A running `dbus-monitor`.
#[derive(Debug)]
pub struct Monitor {
    child: ChildGuard,
}

impl Monitor {
    /// What it printed so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Waits until its output contains `needle` at least `count` times, at most
    /// `timeout`.
    pub fn wait_for(&self, needle: &str, count: usize, timeout: Duration) -> Result<(), Error> {
        wait_until(
            &format!("dbus-monitor to print {needle:?} {count} times"),
            timeout,
            || self.child.log().matches(needle).count() >= count,
        )
        .map_err(|e| e.with_detail(self.child.log_tail(60)))
    }
}
