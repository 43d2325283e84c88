//! Inline: packets held by the kernel in an NFQUEUE (`iptables … -j NFQUEUE --queue-num
//! N`), each decided here. An initial INVITE whose [`Verdict`] is
//! [`Verdict::Block`] is dropped (`NF_DROP`): the calling box retransmits it (RFC 3261
//! Timer A) into the same drop and gives up after Timer B (32 s), so the callee never
//! rings. Everything else is accepted.
//!
//! Errors (a packet that does not decode, an unparsable SIP message on a SIP port) are
//! accepted — fail open, so a parser gap can never cut a phone line — unless
//! `fail_closed` is set. The kernel side follows the same choice: with fail-open the
//! kernel accepts packets itself when the queue is full.
//!
//! Not done, on purpose: answering a blocked INVITE with 603 from here (it would need a
//! raw socket to forge the reply from the callee's address; the drop already blocks).
//! A TCP INVITE is reported but a drop of its segment would only stall the stream until
//! TCP retransmits bytes the scanner has already consumed, so blocking is reliable for
//! UDP, which is what residential boxes use.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::frames::LinkType;
use super::{deliver_all, PassiveConfig, Scanner, Stats};
use crate::event::{CallObserver, Source, Verdict};

/// `[nfqueue]`: decide packets held in a netfilter queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NfqueueConfig {
    /// The queue number of the iptables/nftables rule (default none: the inline input is
    /// off).
    pub queue: Option<u16>,
    /// Drop packets that cannot be decided (default `false`: fail open, the phone line
    /// keeps working through any parser gap).
    pub fail_closed: bool,
}

/// What to do with one queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketVerdict {
    /// Let it through.
    Accept,
    /// Drop it.
    Drop,
}

/// The sans-IO decision core: one IP packet in, a verdict out, events to the pipeline.
#[derive(Debug)]
pub struct Inline {
    scanner: Scanner,
    fail_closed: bool,
}

impl Inline {
    /// A decider for `cfg`.
    pub fn new(passive: &PassiveConfig, fail_closed: bool) -> Inline {
        Inline {
            scanner: Scanner::new(passive, Source::Nfqueue),
            fail_closed,
        }
    }

    /// What was seen so far.
    pub fn stats(&self) -> Stats {
        self.scanner.stats()
    }

    /// Decides one IP packet (NFQUEUE hands packets without a link layer) seen at `at`.
    pub fn handle_packet(
        &mut self,
        packet: &[u8],
        at: SystemTime,
        observer: &dyn CallObserver,
    ) -> PacketVerdict {
        let r = self.scanner.handle_frame(LinkType::RawIp, packet, at);
        let v = deliver_all(&mut self.scanner, observer);
        if let Some(Verdict::Block { rule }) = v {
            tracing::info!(%rule, "NFQUEUE: INVITE dropped");
            return PacketVerdict::Drop;
        }
        match r {
            Err(e) if self.fail_closed => {
                tracing::debug!(error = %e, "NFQUEUE: undecidable packet dropped (fail_closed)");
                PacketVerdict::Drop
            }
            _ => PacketVerdict::Accept,
        }
    }
}

/// A running NFQUEUE input; [`NfqueueHandle::stop`] ends it.
#[derive(Debug)]
pub struct NfqueueHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<Stats>>>,
}

impl NfqueueHandle {
    /// Stops the thread (the queue is unbound; packets queued afterwards are dropped by
    /// the kernel unless the rule has `--queue-bypass`) and returns what it saw.
    pub fn stop(mut self) -> io::Result<Stats> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    fn join(&mut self) -> io::Result<Stats> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("NFQUEUE thread panicked"))?,
            None => Ok(Stats::default()),
        }
    }
}

impl Drop for NfqueueHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join();
    }
}

/// How long the thread sleeps when the queue is empty: bounds both the added latency of
/// the first packet after a quiet spell and how late a stop is noticed.
const IDLE: Duration = Duration::from_millis(2);

/// Starts the inline input when `[nfqueue] queue` is set (`Ok(None)` otherwise). The
/// netlink socket is opened on the calling thread, so in the caller's network namespace.
pub fn spawn(
    cfg: &NfqueueConfig,
    passive: &PassiveConfig,
    observer: Arc<dyn CallObserver>,
) -> io::Result<Option<NfqueueHandle>> {
    let Some(num) = cfg.queue else {
        return Ok(None);
    };
    let mut q = nfq::Queue::open()?;
    q.bind(num)?;
    q.set_fail_open(num, !cfg.fail_closed)?;
    // nfq blocks in recv with no timeout; non-blocking lets the thread see its stop flag.
    q.set_nonblocking(true);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut inline = Inline::new(passive, cfg.fail_closed);
    let thread = std::thread::Builder::new()
        .name(format!("nfqueue-{num}"))
        .spawn(move || {
            tracing::info!(queue = num, "NFQUEUE input started");
            while !flag.load(Ordering::Relaxed) {
                let mut msg = match q.recv() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(IDLE);
                        continue;
                    }
                    // ENOBUFS: the kernel dropped queue messages; carry on with the next.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                let v =
                    inline.handle_packet(msg.get_payload(), SystemTime::now(), observer.as_ref());
                msg.set_verdict(match v {
                    PacketVerdict::Accept => nfq::Verdict::Accept,
                    PacketVerdict::Drop => nfq::Verdict::Drop,
                });
                q.verdict(msg)?;
            }
            let _ = q.unbind(num);
            Ok(inline.stats())
        })?;
    Ok(Some(NfqueueHandle {
        stop,
        thread: Some(thread),
    }))
}
