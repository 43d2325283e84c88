//! The UEs' RTP sockets for the shell: one UDP socket per UE on its own address and
//! [`crate::CallConfig::rtp_port`], and one for RTCP on the next port, plain UDP (VoLTE media has its own bearer, outside the
//! SIP signalling's SAs). One small task per socket reads datagrams into a channel the host
//! task selects on; the host writes what [`Ue::poll_media_transmit`] returns.
//!
//! A socket is bound when the UE is added if its port is 0 (the SDP must carry the port the
//! OS picked), else on its first call, so that a host registering thousands of UEs for a
//! load test does not hold thousands of idle RTP sockets. It stays open until the host
//! stops: the SDP of the next call names the same port.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::Ue;
use crate::event::{EventKind, Note, UeEvent};

/// A datagram that arrived on a UE's RTP socket.
pub(crate) struct MediaIn {
    /// the UE's address (which UE)
    pub local: IpAddr,
    /// the sender
    pub from: SocketAddr,
    /// the datagram
    pub data: Vec<u8>,
}

struct Bound {
    sock: Arc<UdpSocket>,
    /// the RTCP socket (RTP port + 1), if that port was free
    rtcp: Option<Arc<UdpSocket>>,
    readers: Vec<JoinHandle<()>>,
}

fn udp(addr: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    Ok(Arc::new(UdpSocket::from_std(s)?))
}

/// The RTP sockets of a host's UEs, by UE address.
#[derive(Clone)]
pub(crate) struct MediaIo {
    socks: Arc<Mutex<HashMap<IpAddr, Bound>>>,
    tx: mpsc::Sender<MediaIn>,
}

/// Datagrams waiting for the host task; a reader waits when it is full.
const QUEUE: usize = 1024;

impl MediaIo {
    pub(crate) fn new() -> (MediaIo, mpsc::Receiver<MediaIn>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            MediaIo {
                socks: Arc::new(Mutex::new(HashMap::new())),
                tx,
            },
            rx,
        )
    }

    fn is_bound(&self, ip: IpAddr) -> bool {
        self.socks.lock().is_ok_and(|m| m.contains_key(&ip))
    }

    /// Binds `ip:port` (0: any free port) for the UE at `ip` unless it has a socket;
    /// returns the bound port.
    pub(crate) fn bind(&self, ip: IpAddr, port: u16) -> std::io::Result<u16> {
        let mut socks = self
            .socks
            .lock()
            .map_err(|_| std::io::Error::other("RTP socket table poisoned"))?;
        if let Some(b) = socks.get(&ip) {
            return Ok(b.sock.local_addr()?.port());
        }
        let sock = udp(SocketAddr::new(ip, port))?;
        let bound = sock.local_addr()?.port();
        let mut readers = vec![tokio::spawn(read(sock.clone(), ip, self.tx.clone()))];
        // RTCP is a nicety: without the next port the call still has its RTP
        let rtcp = match udp(SocketAddr::new(ip, bound.wrapping_add(1))) {
            Ok(r) => {
                readers.push(tokio::spawn(read(r.clone(), ip, self.tx.clone())));
                Some(r)
            }
            Err(e) => {
                tracing::debug!(%ip, port = bound.wrapping_add(1), error = %e, "no RTCP socket");
                None
            }
        };
        socks.insert(
            ip,
            Bound {
                sock,
                rtcp,
                readers,
            },
        );
        Ok(bound)
    }

    /// Sends `data` from the UE at `ip` to `to`, RTCP from the RTCP socket (never waits:
    /// RTP that cannot leave at once is lost, as on a real link).
    fn send(&self, ip: IpAddr, to: SocketAddr, data: &[u8]) -> std::io::Result<()> {
        let rtcp = media::rtp::is_rtcp(data);
        let sock = self
            .socks
            .lock()
            .ok()
            .and_then(|m| {
                m.get(&ip).and_then(|b| {
                    if rtcp {
                        b.rtcp.clone()
                    } else {
                        Some(b.sock.clone())
                    }
                })
            })
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))?;
        sock.try_send_to(data, to).map(|_| ())
    }

    /// Closes every socket (the host stops).
    pub(crate) fn close_all(&self) {
        if let Ok(mut m) = self.socks.lock() {
            for (_, b) in m.drain() {
                for r in b.readers {
                    r.abort();
                }
            }
        }
    }

    /// Sends every RTP packet `ue` has due now; binds its socket on its first call. Send
    /// failures become notes in `events`.
    pub(crate) fn flush(&self, ue: &mut Ue, mut events: impl FnMut(UeEvent)) {
        let ip = ue.config().local_ip;
        if ue.has_calls() && !self.is_bound(ip) {
            let port = ue.config().calls.rtp_port;
            if let Err(e) = self.bind(ip, port) {
                events(note(Note::MediaBindFailed {
                    addr: SocketAddr::new(ip, port),
                    error: e.kind(),
                }));
            }
        }
        let mut buf = [0u8; 1500];
        // bounded: a session sends at most what is due (and skips a long backlog)
        for _ in 0..1000 {
            let Some((n, to)) = ue.poll_media_transmit(Instant::now(), &mut buf) else {
                break;
            };
            if let Err(e) = self.send(ip, to, &buf[..n]) {
                tracing::debug!(%ip, %to, error = %e, "RTP send failed");
            }
        }
    }
}

fn note(n: Note) -> UeEvent {
    UeEvent {
        at: Instant::now(),
        kind: EventKind::Note(n),
    }
}

async fn read(sock: Arc<UdpSocket>, local: IpAddr, tx: mpsc::Sender<MediaIn>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let m = MediaIn {
                    local,
                    from,
                    data: buf[..n].to_vec(),
                };
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            // ICMP port unreachable from a peer that already closed shows up here on
            // Linux; the socket is still good
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                tracing::debug!(%local, error = %e, "RTP socket closed");
                return;
            }
        }
    }
}
