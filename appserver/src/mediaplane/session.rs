//! One media session's task on a worker's event loop: four sockets (RTP and RTCP of each
//! leg) into the sans-IO [`Channel`], its datagrams back out, its timers, its events.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use media::bridge::{Channel, ChannelEvent, ChannelStats, LegSpec, Side, MAX_DATAGRAM};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::ports::{PortPair, PortPool};
use super::Metrics;
use crate::media_api::{Leg, MediaEvent, MediaId};

/// What the plane tells a running session.
#[derive(Debug)]
pub(crate) enum SessionCmd {
    /// A leg's offer/answer completed.
    Leg(Side, LegSpec),
}

/// Everything a worker needs to start a session.
pub(crate) struct NewSession {
    pub id: MediaId,
    pub channel: Channel,
    pub ims: PortPair,
    pub sip: PortPair,
    pub cmds: mpsc::UnboundedReceiver<SessionCmd>,
}

/// What the session shares with the plane.
pub(crate) struct Shared {
    pub pool: Arc<PortPool>,
    pub metrics: Arc<Metrics>,
    pub events: mpsc::Sender<MediaEvent>,
    pub sessions: Arc<super::Sessions>,
}

fn leg_of(side: Side) -> Leg {
    match side {
        Side::A => Leg::Ims,
        Side::B => Leg::Sip,
    }
}

struct Sockets {
    rtp: [UdpSocket; 2],
    rtcp: [UdpSocket; 2],
}

fn adopt(p: PortPair) -> std::io::Result<(UdpSocket, UdpSocket)> {
    Ok((UdpSocket::from_std(p.rtp)?, UdpSocket::from_std(p.rtcp)?))
}

/// Runs a session until it is released (its command channel closes) or a leg times out;
/// then closes its sockets and gives the ports back.
pub(crate) async fn run(new: NewSession, shared: Shared) {
    let NewSession {
        id,
        mut channel,
        ims,
        sip,
        mut cmds,
    } = new;
    let ports = [ims.port, sip.port];
    tracing::debug!(ims = ports[0], sip = ports[1], "media session started");
    shared.metrics.active.fetch_add(1, Ordering::Relaxed);
    match (adopt(ims), adopt(sip)) {
        (Ok((a_rtp, a_rtcp)), Ok((b_rtp, b_rtcp))) => {
            let s = Sockets {
                rtp: [a_rtp, b_rtp],
                rtcp: [a_rtcp, b_rtcp],
            };
            serve(id, &mut channel, &s, &mut cmds, &shared).await;
        }
        (a, b) => {
            tracing::warn!(?id, ims = ?a.err(), sip = ?b.err(), "media session sockets unusable");
        }
    }
    // The sockets are closed by now (dropped with `serve`'s frame or above): the ports are
    // free for the next lease.
    shared.sessions.remove(id);
    for p in ports {
        shared.pool.release(p);
    }
    shared.metrics.active.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(stats = ?channel.stats(), "media session ended, ports released");
}

async fn serve(
    id: MediaId,
    ch: &mut Channel,
    s: &Sockets,
    cmds: &mut mpsc::UnboundedReceiver<SessionCmd>,
    shared: &Shared,
) {
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut out = [0u8; MAX_DATAGRAM];
    let mut seen = ChannelStats::default();
    let mut lost_seen = [0u64; 2];
    loop {
        let deadline = ch.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = s.rtp[0].readable() => if r.is_ok() { receive(ch, s, 0, false, &mut buf, &mut out) },
            r = s.rtp[1].readable() => if r.is_ok() { receive(ch, s, 1, false, &mut buf, &mut out) },
            r = s.rtcp[0].readable() => if r.is_ok() { receive(ch, s, 0, true, &mut buf, &mut out) },
            r = s.rtcp[1].readable() => if r.is_ok() { receive(ch, s, 1, true, &mut buf, &mut out) },
            () = sleep => {
                ch.handle_timeout(Instant::now());
                flush(ch, s, &mut out);
            }
            cmd = cmds.recv() => match cmd {
                Some(SessionCmd::Leg(side, spec)) => {
                    // The plane checked the codecs before sending; a failure here leaves
                    // the channel idle, which the media timeout ends.
                    if let Err(e) = ch.set_leg(side, spec, Instant::now()) {
                        tracing::warn!(?id, ?side, %e, "media leg not usable");
                    }
                }
                None => break,
            },
        }
        let now = ch.stats();
        shared.metrics.add(&seen, &now);
        seen = now;
        for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
            let l = ch.lost(side);
            if l > lost_seen[i] {
                shared
                    .metrics
                    .lost
                    .fetch_add(l - lost_seen[i], Ordering::Relaxed);
                lost_seen[i] = l;
            }
        }
        if let Some(ChannelEvent::Timeout(side)) = ch.poll_event() {
            shared.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
            let ev = MediaEvent::Timeout {
                id,
                leg: leg_of(side),
            };
            if shared.events.try_send(ev).is_err() {
                tracing::warn!(
                    ?id,
                    "media event queue full or closed: timeout not reported"
                );
            }
            break;
        }
    }
}

/// Reads what a socket has (a bounded batch, so one busy socket cannot starve the others)
/// into the channel, sending what each datagram produces before the next.
fn receive(ch: &mut Channel, s: &Sockets, i: usize, rtcp: bool, buf: &mut [u8], out: &mut [u8]) {
    let side = if i == 0 { Side::A } else { Side::B };
    let sock = if rtcp { &s.rtcp[i] } else { &s.rtp[i] };
    for _ in 0..64 {
        let Ok((n, _)) = sock.try_recv_from(buf) else {
            // WouldBlock ends the batch; ICMP errors (port unreachable) are not ours to act on.
            return;
        };
        let now = Instant::now();
        if rtcp {
            ch.handle_rtcp(side, &buf[..n], now);
        } else {
            ch.handle_rtp(side, &buf[..n], now);
        }
        flush(ch, s, out);
    }
}

/// Sends every datagram the channel has queued.
fn flush(ch: &mut Channel, s: &Sockets, out: &mut [u8]) {
    while let Some(tx) = ch.poll_transmit(out) {
        let i = usize::from(tx.side == Side::B);
        let sock = if tx.rtcp { &s.rtcp[i] } else { &s.rtp[i] };
        // UDP: a full socket buffer loses the datagram like the network would.
        let _ = sock.try_send_to(&out[..tx.len], tx.to);
    }
}
