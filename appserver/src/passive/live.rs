//! Sniffing a live interface: an AF_PACKET raw socket (`packet(7)`: SOCK_RAW, ETH_P_ALL,
//! bound to one interface) read on a blocking thread into the same [`Scanner`] as the
//! pcap input. No BPF: the [`Scanner`]'s port selection drops everything else in user
//! space, which at the packet rates of a home or lab VoIP line costs nothing worth a
//! filter compiler.
//!
//! Needs CAP_NET_RAW. Every frame the interface sees in either direction is read; on a
//! bridge in front of a VoIP adapter bind to the bridge, on a mirror port set
//! `promiscuous`.

use std::io::{self, Read};
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use super::frames::LinkType;
use super::{deliver_all, PassiveConfig, Scanner, Stats};
use crate::event::{CallObserver, Source};

/// `[live]`: sniff an interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// The interface to read (default none: the live input is off).
    pub interface: Option<String>,
    /// Put the interface in promiscuous mode while reading (default `false`: a bridge or
    /// the box's own interface sees its traffic anyway; a mirror port needs it).
    pub promiscuous: bool,
}

/// How often the reading thread looks at its stop flag when the wire is quiet.
const POLL: Duration = Duration::from_millis(200);

/// A running live input; [`LiveHandle::stop`] ends it.
#[derive(Debug)]
pub struct LiveHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<Stats>>>,
}

impl LiveHandle {
    /// Stops the reading thread (within ~200 ms) and returns what it saw, or the error
    /// that ended it.
    pub fn stop(mut self) -> io::Result<Stats> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    fn join(&mut self) -> io::Result<Stats> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("live capture thread panicked"))?,
            None => Ok(Stats::default()),
        }
    }
}

impl Drop for LiveHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join();
    }
}

/// Starts the live input when `[live] interface` is set (`Ok(None)` otherwise). The
/// socket is opened on the calling thread, so in the caller's network namespace.
pub fn spawn(
    live: &LiveConfig,
    passive: &PassiveConfig,
    observer: Arc<dyn CallObserver>,
) -> io::Result<Option<LiveHandle>> {
    let Some(ifname) = live.interface.as_deref() else {
        return Ok(None);
    };
    let (sock, link) = open(ifname, live.promiscuous)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut scanner = Scanner::new(passive, Source::Live);
    let name = ifname.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("live-{name}"))
        .spawn(move || {
            let mut buf = vec![0u8; 65_536];
            tracing::info!(interface = %name, "live capture started");
            while !flag.load(Ordering::Relaxed) {
                let n = match (&sock).read(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                };
                if let Err(e) = scanner.handle_frame(link, &buf[..n], SystemTime::now()) {
                    tracing::debug!(error = %e, "live frame skipped");
                }
                deliver_all(&mut scanner, observer.as_ref());
            }
            Ok(scanner.stats())
        })?;
    Ok(Some(LiveHandle {
        stop,
        thread: Some(thread),
    }))
}

/// Opens an AF_PACKET socket bound to `ifname` (all protocols), optionally promiscuous,
/// with a read timeout; returns it with the link type its frames carry.
pub fn open(ifname: &str, promiscuous: bool) -> io::Result<(Socket, LinkType)> {
    let cname = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: cname is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {ifname}: {}", io::Error::last_os_error()),
        ));
    }
    let index = i32::try_from(index).map_err(io::Error::other)?;
    let all = (libc::ETH_P_ALL as u16).to_be();
    let sock = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(i32::from(all))),
    )?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = all;
    sll.sll_ifindex = index;
    // SAFETY: sll is a valid sockaddr_ll and the length passed is its size.
    let r = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            (&sll as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if promiscuous {
        // SAFETY: packet_mreq is plain old data.
        let mut mreq: libc::packet_mreq = unsafe { mem::zeroed() };
        mreq.mr_ifindex = index;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: mreq is a valid packet_mreq and the length passed is its size; the
        // membership ends when the socket closes.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    sock.set_read_timeout(Some(POLL))?;
    Ok((sock, link_type_of(ifname)))
}

/// The link layer an interface's frames carry, from its ARPHRD type in sysfs: tun and
/// other header-less devices (ARPHRD_NONE 65534, ARPHRD_RAWIP 519) give bare IP;
/// Ethernet, veth, bridges and loopback give Ethernet headers.
fn link_type_of(ifname: &str) -> LinkType {
    let ty = std::fs::read_to_string(format!("/sys/class/net/{ifname}/type")).unwrap_or_default();
    match ty.trim() {
        "65534" | "519" => LinkType::RawIp,
        _ => LinkType::Ethernet,
    }
}
