//! Test helpers: the freeDiameter launcher lives in `diameter::testkit`; here a raw
//! driver runs a sans-IO [`Peer`] over a TcpStream while logging every message in both
//! directions.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use diameter::peer::Event;
pub use diameter::testkit::*;
use diameter::{frame_length, Message, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Direction of a logged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// We sent it.
    Out,
    /// We received it.
    In,
}

/// Runs a sans-IO peer over a real socket and logs every message.
pub struct RawDriver {
    /// The peer.
    pub peer: Peer,
    /// The socket.
    pub sock: TcpStream,
    /// Every message, in order.
    pub log: Vec<(Dir, Message)>,
    /// Every event, in order.
    pub events: Vec<Event>,
    rx_log: Vec<u8>,
    eof: bool,
}

fn split_frames(buf: &mut Vec<u8>, dir: Dir, log: &mut Vec<(Dir, Message)>) {
    while let Ok(Some(n)) = frame_length(buf, 1 << 24) {
        if buf.len() < n {
            break;
        }
        let f: Vec<u8> = buf.drain(..n).collect();
        if let Ok(m) = Message::decode(f) {
            log.push((dir, m));
        }
    }
}

impl RawDriver {
    /// Wraps a connected socket.
    pub fn new(peer: Peer, sock: TcpStream) -> RawDriver {
        RawDriver {
            peer,
            sock,
            log: Vec::new(),
            events: Vec::new(),
            rx_log: Vec::new(),
            eof: false,
        }
    }

    /// Drives I/O and timers until `done` is true, the connection closes, or `max` passes.
    pub async fn run_until(&mut self, max: Duration, done: impl Fn(&RawDriver) -> bool) -> bool {
        let end = Instant::now() + max;
        loop {
            while let Some(b) = self.peer.poll_transmit() {
                let mut v = b.to_vec();
                split_frames(&mut v, Dir::Out, &mut self.log);
                let _ = self.sock.write_all(&b).await;
            }
            while let Some(e) = self.peer.poll_event() {
                self.events.push(e);
            }
            if done(self) {
                return true;
            }
            if self.peer.is_closed() || self.eof || Instant::now() >= end {
                return done(self);
            }
            let wake = self.peer.poll_timeout().map_or(end, |t| t.min(end));
            let wait = wake.saturating_duration_since(Instant::now());
            let mut buf = [0u8; 65536];
            match tokio::time::timeout(wait, self.sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.eof = true;
                    self.peer.handle_transport_closed();
                }
                Ok(Ok(n)) => {
                    self.rx_log.extend_from_slice(&buf[..n]);
                    split_frames(&mut self.rx_log, Dir::In, &mut self.log);
                    self.peer.handle_bytes(Instant::now(), &buf[..n]);
                }
                Err(_) => self.peer.handle_timeout(Instant::now()),
            }
        }
    }

    /// Whether a message with this direction, command code and R bit was logged.
    pub fn saw(&self, dir: Dir, code: u32, request: bool) -> bool {
        self.log
            .iter()
            .any(|(d, m)| *d == dir && m.code == code && m.is_request() == request)
    }

    /// Short transcript for failure messages.
    pub fn transcript(&self) -> String {
        self.log
            .iter()
            .map(|(d, m)| format!("{d:?} {} {:?}\n", m.name(), m.result()))
            .collect()
    }
}
