//! `mosquitto` fixture (Debian `mosquitto` + `mosquitto-clients`): a real MQTT broker on
//! a free loopback port, and `mosquitto_sub` to read what a test published.
//!
//! The broker runs from a temp config (`listener <port> 127.0.0.1`, anonymous access,
//! no persistence), so nothing outside the test dir is touched. A [`Subscription`] runs
//! `stdbuf -oL mosquitto_sub -d -v -C n -W secs -t topic`: `-d` prints `Client … received SUBACK`,
//! which [`Mosquitto::subscribe`] waits for, so a message published after it returns is
//! never missed; `-C` and `-W` bound the run in count and time.
//!
//! Ask first: `testkit::require_bin("mosquitto")` and `("mosquitto_sub")`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, wait_for_tcp, ChildGuard, Error, TestDir, LOOPBACK};

/// A running broker.
#[derive(Debug)]
pub struct Mosquitto {
    child: ChildGuard,
    port: u16,
    dir: TestDir,
    login: Option<(String, String)>,
}

impl Mosquitto {
    /// Starts the broker on a free port and waits (≤ 10 s) until it accepts TCP.
    pub fn start() -> Result<Self, Error> {
        Self::start_on(free_port())
    }

    /// Starts the broker on `port` (a test of a client that was started first).
    pub fn start_on(port: u16) -> Result<Self, Error> {
        Self::start_with(port, None)
    }

    /// Starts a broker on a free port that admits only `user` with `password` (a
    /// `mosquitto_passwd` file; anonymous clients are refused). Subscriptions made with
    /// [`Mosquitto::subscribe`] log in as that user.
    pub fn start_with_password(user: &str, password: &str) -> Result<Self, Error> {
        Self::start_with(free_port(), Some((user, password)))
    }

    fn start_with(port: u16, login: Option<(&str, &str)>) -> Result<Self, Error> {
        let dir = TestDir::new("mosquitto")?;
        let mut conf = format!(
            "listener {port} 127.0.0.1\npersistence false\nlog_dest stdout\nlog_type all\n"
        );
        if let Some((user, password)) = login {
            let file = dir.join("passwd");
            let out = Command::new("mosquitto_passwd")
                .args(["-b", "-c"])
                .arg(&file)
                .args([user, password])
                .output()
                .map_err(|e| Error::io("run mosquitto_passwd".into(), e))?;
            if !out.status.success() {
                return Err(Error::Failed {
                    what: "mosquitto_passwd".into(),
                    detail: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            conf.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                file.display()
            ));
        } else {
            conf.push_str("allow_anonymous true\n");
        }
        let conf = dir.write("mosquitto.conf", conf)?;
        let mut cmd = Command::new("mosquitto");
        cmd.arg("-c").arg(&conf);
        let mut child = ChildGuard::spawn("mosquitto", &mut cmd, &dir.join("mosquitto.log"))?;
        wait_for_tcp(SocketAddr::new(LOOPBACK, port), Duration::from_secs(10))
            .map_err(|e| e.with_detail(child.log_tail(30)))?;
        if !child.is_running() {
            return Err(Error::Exited {
                name: "mosquitto".into(),
                status: "exited".into(),
                detail: child.log_tail(30),
            });
        }
        let login = login.map(|(u, p)| (u.to_string(), p.to_string()));
        Ok(Self {
            child,
            port,
            dir,
            login,
        })
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's log so far (connections, publishes with `log_type all`).
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Subscribes to `topic` for at most `count` messages within `timeout`, and returns
    /// once the broker acknowledged the subscription (≤ 10 s).
    pub fn subscribe(
        &self,
        topic: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Subscription, Error> {
        let n = self.dir.path().read_dir().map_or(0, |d| d.count());
        let log = self.dir.join(&format!("sub-{n}.log"));
        // Its stdout is a file, which stdio would buffer until exit: `stdbuf -oL` makes
        // the SUBACK line (and each message) visible as it happens.
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-d", "-v", "-q", "1", "-t", topic])
            .args(["-C", &count.to_string()])
            .args(["-W", &timeout.as_secs().max(1).to_string()]);
        if let Some((u, p)) = &self.login {
            cmd.args(["-u", u, "-P", p]);
        }
        let mut child = ChildGuard::spawn("mosquitto_sub", &mut cmd, &log)?;
        child.wait_for_log("received SUBACK", Duration::from_secs(10))?;
        Ok(Subscription { child, timeout })
    }
}

/// A running `mosquitto_sub`.
#[derive(Debug)]
pub struct Subscription {
    child: ChildGuard,
    timeout: Duration,
}

/// One message a subscription received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload as text (one line).
    pub payload: String,
}

impl Subscription {
    /// Waits for `mosquitto_sub` to exit (its count reached, or its `-W` timeout) and
    /// returns the messages it printed.
    pub fn messages(mut self) -> Result<Vec<Message>, Error> {
        let _ = self
            .child
            .wait_timeout(self.timeout + Duration::from_secs(5));
        Ok(parse_output(&self.child.log()))
    }
}

/// The `topic payload` lines of `mosquitto_sub -d -v` output, without its debug lines.
pub fn parse_output(out: &str) -> Vec<Message> {
    out.lines()
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed (mid"))
        .filter_map(|l| {
            let (topic, payload) = l.split_once(' ')?;
            Some(Message {
                topic: topic.to_string(),
                payload: payload.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_lines_are_not_messages() {
        let out = "Client null sending CONNECT\nClient x received SUBACK\nSubscribed (mid: 1): 1\na/b {\"v\":1}\nClient x received PUBLISH (d0, q1, r0, m1, 'a/b', ... (8 bytes))\nc hello world\n";
        assert_eq!(
            parse_output(out),
            vec![
                Message {
                    topic: "a/b".into(),
                    payload: "{\"v\":1}".into()
                },
                Message {
                    topic: "c".into(),
                    payload: "hello world".into()
                }
            ]
        );
    }
}
