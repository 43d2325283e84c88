//! Bounded waiting and loopback ports.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Error;

/// Poll interval of every wait in this crate.
pub const POLL: Duration = Duration::from_millis(20);

/// 127.0.0.1.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Calls `cond` every [`POLL`] until it returns `true` or `timeout` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
                detail: String::new(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until a TCP connect to `addr` succeeds (the connection is closed
/// immediately), at most `timeout`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
    wait_until(&format!("TCP port {addr} to accept"), timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// Waits until the file at `path` contains `needle`, at most `timeout`.
pub fn wait_for_file_line(path: &Path, needle: &str, timeout: Duration) -> Result<(), Error> {
    wait_until(
        &format!("{} to contain {needle:?}", path.display()),
        timeout,
        || crate::process::read_lossy(path).contains(needle),
    )
    .map_err(|e| e.with_detail(crate::process::tail(&crate::process::read_lossy(path), 30)))
}

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that is free for both TCP and UDP right now and has
/// not been returned before by this process (so two fixtures of one test
/// binary never collide). Another process may still grab it before use: the
/// window is short and fixtures fail loudly if a bind fails.
pub fn free_port() -> u16 {
    free_port_on(LOOPBACK)
}

/// Like [`free_port`] on a given local address.
pub fn free_port_on(ip: IpAddr) -> u16 {
    for _ in 0..200 {
        let Ok(tcp) = TcpListener::bind(SocketAddr::new(ip, 0)) else {
            continue;
        };
        let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if UdpSocket::bind(SocketAddr::new(ip, port)).is_err() {
            continue;
        }
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("testkit: no free TCP+UDP port on {ip} after 200 tries");
}

/// `n` distinct free ports (see [`free_port`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports(5);
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), 5);
        for p in ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
            UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        }
    }

    #[test]
    fn wait_for_tcp_sees_listener_and_times_out_without() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        wait_for_tcp(addr, Duration::from_secs(2)).unwrap();
        drop(l);
        let err = wait_for_tcp(addr, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }));
    }
}
