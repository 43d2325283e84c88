//! The media port range: even RTP ports with RTCP on the next one up (RFC 3550 §11), leased
//! with both sockets bound, given back when the session's sockets are closed.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;

/// An RTP/RTCP socket pair on consecutive ports.
#[derive(Debug)]
pub struct PortPair {
    /// The even port's socket.
    pub rtp: UdpSocket,
    /// The port above.
    pub rtcp: UdpSocket,
    /// The RTP port.
    pub port: u16,
}

/// The free ports of the range.
#[derive(Debug)]
pub struct PortPool {
    bind: IpAddr,
    free: Mutex<VecDeque<u16>>,
    size: usize,
}

impl PortPool {
    /// Every even port `p` with `min <= p` and `p + 1 <= max`.
    pub fn new(bind: IpAddr, min: u16, max: u16) -> Self {
        let first = min + (min % 2);
        let free: VecDeque<u16> = (first..max).step_by(2).collect();
        PortPool {
            bind,
            size: free.len(),
            free: Mutex::new(free),
        }
    }

    /// Pairs in the range.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Pairs not leased.
    pub fn available(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
        // A panic elsewhere while holding the lock leaves a consistent queue: keep going.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leases a pair and binds both sockets (non-blocking, for tokio). A pair some other
    /// program holds goes to the back of the queue and the next is tried, once each.
    pub fn lease(&self) -> Option<PortPair> {
        let mut free = self.lock();
        for _ in 0..free.len() {
            let port = free.pop_front()?;
            match bind_pair(self.bind, port) {
                Ok(pair) => return Some(pair),
                Err(_) => free.push_back(port),
            }
        }
        None
    }

    /// Gives a pair back once its sockets are closed.
    pub fn release(&self, port: u16) {
        let mut free = self.lock();
        if !free.contains(&port) {
            free.push_back(port);
        }
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> std::io::Result<PortPair> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port))?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port + 1))?;
    rtp.set_nonblocking(true)?;
    rtcp.set_nonblocking(true)?;
    Ok(PortPair { rtp, rtcp, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_even_ports_skips_taken_ones_and_reuses_released() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // A range of three pairs; an outsider holds the middle RTCP port.
        let base = 47_410;
        let pool = PortPool::new(ip, base - 1, base + 5);
        assert_eq!(pool.size(), 3);
        let _squatter = UdpSocket::bind((ip, base + 3)).unwrap();
        let a = pool.lease().unwrap();
        assert_eq!(a.port, base);
        assert_eq!(a.rtcp.local_addr().unwrap().port(), base + 1);
        let b = pool.lease().unwrap();
        assert_eq!(b.port, base + 4, "the pair with a taken port is skipped");
        assert!(pool.lease().is_none());
        let port = a.port;
        drop(a);
        pool.release(port);
        assert_eq!(pool.lease().map(|p| p.port), Some(base));
    }
}
