//! Userspace ESP backend (RFC 4303 transport mode) for hosts whose kernel lacks ESP.
//!
//! [`EspEndpoint`] is the sans-IO core: it holds the installed SA sets, turns received ESP
//! payloads into [`Inbound`] transport segments (UDP parsed and checked, its ports checked
//! against the SA's selector as the kernel's inbound policy check would), and turns datagrams
//! the application sends into ESP payloads. [`UserspaceBackend`] is the thin shell: one raw
//! `IPPROTO_ESP` socket per IP family, a reader thread each, decrypted datagrams delivered on a
//! channel, and outbound datagrams encrypted and sent with the SA's source address.
//!
//! Inner TCP: inbound TCP segments are delivered verbatim as [`Inbound::Tcp`] and
//! [`EspEndpoint::encrypt_segment`] sends a caller-built segment; there is no userspace TCP
//! stack, so SIP over TCP through this backend needs one in the caller (not provided now).
//! Datagrams are sent through the kernel's normal IP output, which fragments as usual.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::XfrmError;
use crate::esp::{peek_spi, EspCounters, EspError, EspSa, NEXT_HEADER_NONE};
use crate::kernel::SetId;
use crate::model::{Direction, SaDesc, SaSet, SaState, Side};

/// Capacity of the channel of decrypted traffic.
pub const QUEUE_LEN: usize = 4096;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

/// A decrypted, accepted inbound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A UDP datagram (e.g. SIP) with its transport addresses.
    Udp {
        /// Sender (the SA's source).
        src: SocketAddr,
        /// Receiver (our protected port).
        dst: SocketAddr,
        /// UDP payload.
        payload: Vec<u8>,
        /// Set it arrived on.
        set: SetId,
        /// SPI it arrived on.
        spi: u32,
    },
    /// A TCP segment (header and data), undecoded: no userspace TCP stack here.
    Tcp {
        /// Sender address.
        src: IpAddr,
        /// Receiver address.
        dst: IpAddr,
        /// The segment.
        segment: Vec<u8>,
        /// Set it arrived on.
        set: SetId,
    },
}

/// Why an inbound packet was dropped by the endpoint (besides ESP errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// ESP-level failure (bad ICV, replay, malformed).
    #[error(transparent)]
    Esp(#[from] EspError),
    /// No inbound SA with this SPI.
    #[error("no inbound SA for spi 0x{0:08x}")]
    UnknownSpi(u32),
    /// The outer source address is not the SA's peer.
    #[error("packet for spi 0x{spi:08x} from {got}, SA expects {want}")]
    WrongSource {
        /// SPI.
        spi: u32,
        /// Expected source.
        want: IpAddr,
        /// Actual source.
        got: IpAddr,
    },
    /// Inner packet not allowed by the SA's selector (ports or protocol).
    #[error("inner packet rejected: {0}")]
    Selector(String),
    /// Inner UDP header malformed or checksum wrong.
    #[error("inner UDP malformed: {0}")]
    BadUdp(&'static str),
    /// Dummy packet (next header 59), dropped silently (RFC 4303 §2.6).
    #[error("dummy packet")]
    Dummy,
}

/// Counters of the whole endpoint (all SAs, including deleted ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Sum of the per-SA ESP counters.
    pub esp: EspCounters,
    /// Dropped: unknown SPI.
    pub unknown_spi: u64,
    /// Dropped: wrong outer source, selector mismatch, bad inner UDP.
    pub rejected_inner: u64,
}

struct UsSet {
    set: SaSet,
    side: Side,
    sas: Vec<(SaDesc, EspSa)>,
}

/// Sans-IO userspace ESP endpoint: the SA database of one host.
#[derive(Default)]
pub struct EspEndpoint {
    next_id: SetId,
    sets: HashMap<SetId, UsSet>,
    by_spi: HashMap<u32, (SetId, usize)>,
    /// Outbound SAs by (src, dst): every datagram looks its SA up here, so the lookup must
    /// not walk all sets. Several sets can share a pair while one replaces another.
    by_out: HashMap<(SocketAddr, SocketAddr), Vec<(SetId, usize)>>,
    retired: EspCounters,
    unknown_spi: u64,
    rejected_inner: u64,
}

fn add_counters(a: &mut EspCounters, b: &EspCounters) {
    a.out_packets += b.out_packets;
    a.out_bytes += b.out_bytes;
    a.in_packets += b.in_packets;
    a.in_bytes += b.in_bytes;
    a.dropped_icv += b.dropped_icv;
    a.dropped_replay += b.dropped_replay;
    a.dropped_malformed += b.dropped_malformed;
}

/// Internet checksum over the UDP/TCP pseudo-header and segment (RFC 768, RFC 8200 §8.1).
pub fn transport_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += u64::from(w);
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&[0, proto]);
            add(&(segment.len() as u16).to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            add(&v6(s));
            add(&v6(d));
            add(&(segment.len() as u32).to_be_bytes());
            add(&[0, 0, 0, proto]);
        }
    }
    add(segment);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds a UDP datagram (header with checksum, then payload).
pub fn build_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut seg = Vec::with_capacity(len);
    seg.extend_from_slice(&src.port().to_be_bytes());
    seg.extend_from_slice(&dst.port().to_be_bytes());
    seg.extend_from_slice(&(len as u16).to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(payload);
    let mut c = transport_checksum(src.ip(), dst.ip(), IPPROTO_UDP, &seg);
    if c == 0 {
        c = 0xffff; // 0 means "no checksum" in IPv4 and is forbidden in IPv6
    }
    seg[6..8].copy_from_slice(&c.to_be_bytes());
    seg
}

impl EspEndpoint {
    /// An empty endpoint.
    pub fn new() -> EspEndpoint {
        EspEndpoint {
            next_id: 1,
            ..Default::default()
        }
    }

    /// Installs a set: inbound SAs are found by SPI, which must be unique on this host.
    pub fn install(&mut self, set: &SaSet, side: Side) -> Result<SetId, XfrmError> {
        let descs = set.sas(side);
        for d in descs.iter().filter(|d| d.dir == Direction::In) {
            if self.by_spi.contains_key(&d.spi) {
                return Err(XfrmError::SpiInUse(d.spi));
            }
        }
        let mut sas = Vec::with_capacity(4);
        for d in descs {
            sas.push((
                d,
                EspSa::new(d.spi, set.integrity, set.encryption, &set.keys)?,
            ));
        }
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        for (i, (d, _)) in sas.iter().enumerate() {
            if d.dir == Direction::In {
                self.by_spi.insert(d.spi, (id, i));
            } else {
                self.by_out.entry((d.src, d.dst)).or_default().push((id, i));
            }
        }
        self.sets.insert(
            id,
            UsSet {
                set: set.clone(),
                side,
                sas,
            },
        );
        Ok(id)
    }

    /// Deletes a set; its counters stay in the endpoint totals.
    pub fn delete(&mut self, id: SetId) -> Result<(), XfrmError> {
        let s = self.sets.remove(&id).ok_or(XfrmError::UnknownSet(id))?;
        for (d, sa) in &s.sas {
            if d.dir == Direction::In {
                self.by_spi.remove(&d.spi);
            } else if let Some(v) = self.by_out.get_mut(&(d.src, d.dst)) {
                v.retain(|(set, _)| *set != id);
                if v.is_empty() {
                    self.by_out.remove(&(d.src, d.dst));
                }
            }
            add_counters(&mut self.retired, &sa.counters());
        }
        Ok(())
    }

    /// Deletes every set.
    pub fn flush(&mut self) -> usize {
        let ids: Vec<SetId> = self.sets.keys().copied().collect();
        for id in &ids {
            let _ = self.delete(*id);
        }
        ids.len()
    }

    /// Applies `f` to the model of a set (promote, begin_expiry).
    pub fn update_model(&mut self, id: SetId, f: impl FnOnce(&mut SaSet)) -> Result<(), XfrmError> {
        let s = self.sets.get_mut(&id).ok_or(XfrmError::UnknownSet(id))?;
        f(&mut s.set);
        Ok(())
    }

    /// Installed sets.
    pub fn sets(&self) -> Vec<(SetId, SaSet, Side)> {
        self.sets
            .iter()
            .map(|(id, s)| (*id, s.set.clone(), s.side))
            .collect()
    }

    /// Per-SA counters of a set, in SA-table order.
    pub fn set_counters(&self, id: SetId) -> Option<Vec<(SaDesc, EspCounters)>> {
        self.sets
            .get(&id)
            .map(|s| s.sas.iter().map(|(d, sa)| (*d, sa.counters())).collect())
    }

    /// Totals over all SAs ever installed.
    pub fn counters(&self) -> EndpointCounters {
        let mut esp = self.retired;
        for s in self.sets.values() {
            for (_, sa) in &s.sas {
                add_counters(&mut esp, &sa.counters());
            }
        }
        EndpointCounters {
            esp,
            unknown_spi: self.unknown_spi,
            rejected_inner: self.rejected_inner,
        }
    }

    /// Handles one received ESP payload (the IP payload). `dst` is checked when known.
    pub fn handle_esp(
        &mut self,
        src: IpAddr,
        dst: Option<IpAddr>,
        esp: &[u8],
    ) -> Result<Inbound, InboundError> {
        let spi = peek_spi(esp)?;
        let Some(&(id, idx)) = self.by_spi.get(&spi) else {
            self.unknown_spi += 1;
            return Err(InboundError::UnknownSpi(spi));
        };
        let r = self.handle_known(id, idx, spi, src, dst, esp);
        if matches!(
            r,
            Err(InboundError::WrongSource { .. }
                | InboundError::Selector(_)
                | InboundError::BadUdp(_))
        ) {
            self.rejected_inner += 1;
        }
        r
    }

    fn handle_known(
        &mut self,
        id: SetId,
        idx: usize,
        spi: u32,
        src: IpAddr,
        dst: Option<IpAddr>,
        esp: &[u8],
    ) -> Result<Inbound, InboundError> {
        let set = self
            .sets
            .get_mut(&id)
            .ok_or(InboundError::UnknownSpi(spi))?;
        let (desc, sa) = set.sas.get_mut(idx).ok_or(InboundError::UnknownSpi(spi))?;
        // Check the outer addresses before spending a MAC on the packet.
        if src != desc.src.ip() || dst.is_some_and(|d| d != desc.dst.ip()) {
            return Err(InboundError::WrongSource {
                spi,
                want: desc.src.ip(),
                got: src,
            });
        }
        let d = sa.decrypt(esp)?;
        match d.next_header {
            IPPROTO_UDP => {
                let p = &d.payload;
                if p.len() < 8 {
                    return Err(InboundError::BadUdp("shorter than a UDP header"));
                }
                let sport = u16::from_be_bytes([p[0], p[1]]);
                let dport = u16::from_be_bytes([p[2], p[3]]);
                let len = usize::from(u16::from_be_bytes([p[4], p[5]]));
                let csum = u16::from_be_bytes([p[6], p[7]]);
                if len < 8 || len > p.len() {
                    return Err(InboundError::BadUdp("length field"));
                }
                let seg = &p[..len];
                if (csum != 0 || desc.src.is_ipv6())
                    && transport_checksum(desc.src.ip(), desc.dst.ip(), IPPROTO_UDP, seg) != 0
                {
                    return Err(InboundError::BadUdp("checksum"));
                }
                if sport != desc.src.port() || dport != desc.dst.port() {
                    return Err(InboundError::Selector(format!(
                        "UDP {sport}->{dport} on SA {}->{}",
                        desc.src, desc.dst
                    )));
                }
                Ok(Inbound::Udp {
                    src: desc.src,
                    dst: desc.dst,
                    payload: seg[8..].to_vec(),
                    set: id,
                    spi,
                })
            }
            IPPROTO_TCP => {
                let p = &d.payload;
                if p.len() < 20 {
                    return Err(InboundError::Selector("short TCP segment".into()));
                }
                let sport = u16::from_be_bytes([p[0], p[1]]);
                let dport = u16::from_be_bytes([p[2], p[3]]);
                if sport != desc.src.port() || dport != desc.dst.port() {
                    return Err(InboundError::Selector(format!(
                        "TCP {sport}->{dport} on SA {}->{}",
                        desc.src, desc.dst
                    )));
                }
                Ok(Inbound::Tcp {
                    src: desc.src.ip(),
                    dst: desc.dst.ip(),
                    segment: d.payload,
                    set: id,
                })
            }
            NEXT_HEADER_NONE => Err(InboundError::Dummy),
            other => Err(InboundError::Selector(format!("next header {other}"))),
        }
    }

    /// Finds the outbound SA for a datagram: the newest established set first, then the
    /// newest temporary one, then an expiring one (whose final responses still go out).
    fn outbound(&mut self, src: SocketAddr, dst: SocketAddr) -> Option<(SetId, usize)> {
        let rank = |s: SaState| match s {
            SaState::Established => 2,
            SaState::Temporary => 1,
            SaState::Expiring => 0,
        };
        self.by_out
            .get(&(src, dst))?
            .iter()
            .filter_map(|&(id, i)| self.sets.get(&id).map(|s| ((rank(s.set.state), id), i)))
            .max_by_key(|(k, _)| *k)
            .map(|((_, id), i)| (id, i))
    }

    /// Encrypts a UDP datagram from `src` to `dst` on the matching outbound SA.
    pub fn encrypt_udp(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<Vec<u8>, XfrmError> {
        let seg = build_udp(src, dst, payload);
        self.encrypt_segment(src, dst, IPPROTO_UDP, &seg)
    }

    /// Encrypts a caller-built transport segment (UDP or TCP) on the outbound SA of
    /// `src` → `dst`.
    pub fn encrypt_segment(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        next_header: u8,
        segment: &[u8],
    ) -> Result<Vec<u8>, XfrmError> {
        let (id, i) = self
            .outbound(src, dst)
            .ok_or(XfrmError::NoOutboundSa { src, dst })?;
        let sa = self
            .sets
            .get_mut(&id)
            .and_then(|s| s.sas.get_mut(i))
            .ok_or(XfrmError::NoOutboundSa { src, dst })?;
        Ok(sa.1.encrypt(next_header, segment)?)
    }
}

/// Parses the IPv4 header a raw socket hands over: (src, dst, ESP payload).
pub fn parse_ipv4_esp(pkt: &[u8]) -> Result<(IpAddr, IpAddr, &[u8]), InboundError> {
    let bad = |w| InboundError::Esp(EspError::Malformed(w));
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return Err(bad("not an IPv4 packet"));
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if ihl < 20 || total < ihl || total > pkt.len() {
        return Err(bad("IPv4 header lengths"));
    }
    if pkt[9] != crate::esp::IPPROTO_ESP {
        return Err(bad("not ESP"));
    }
    let src = IpAddr::from([pkt[12], pkt[13], pkt[14], pkt[15]]);
    let dst = IpAddr::from([pkt[16], pkt[17], pkt[18], pkt[19]]);
    Ok((src, dst, &pkt[ihl..total]))
}

struct RawSock {
    fd: OwnedFd,
    v6: bool,
}

impl RawSock {
    fn open(v6: bool) -> io::Result<RawSock> {
        let domain = if v6 {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let s = socket2::Socket::new(
            domain,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(i32::from(crate::esp::IPPROTO_ESP))),
        )?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        // A raw socket sees every ESP packet of the host; a burst of registrations (or a
        // neighbour's traffic) overflows the default ~200 KB queue and the drops look like
        // packet loss to SIP (retransmissions after T1). Ask for a deep queue; without
        // CAP_NET_ADMIN the kernel caps it at rmem_max, which is still better than default.
        const RCVBUF: libc::c_int = 32 << 20;
        {
            use std::os::fd::AsRawFd;
            // SAFETY: setsockopt reads size_of::<c_int>() bytes from a live local.
            let forced = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &RCVBUF as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if forced != 0 {
                let _ = s.set_recv_buffer_size(RCVBUF as usize);
            }
        }
        Ok(RawSock { fd: s.into(), v6 })
    }

    /// Sends with the given source address via IP_PKTINFO / IPV6_PKTINFO.
    fn send(&self, src: IpAddr, dst: IpAddr, data: &[u8]) -> io::Result<()> {
        let dst_sa: socket2::SockAddr = SocketAddr::new(dst, 0).into();
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut cbuf = [0u64; 8]; // 64 bytes, aligned: room for either pktinfo cmsg
                                  // SAFETY: msghdr is plain data; every pointer set below stays live for sendmsg.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = dst_sa.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = dst_sa.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // SAFETY: CMSG_* compute sizes/pointers within cbuf, which is large enough.
        unsafe {
            match src {
                IpAddr::V4(s) => {
                    let mut info: libc::in_pktinfo = std::mem::zeroed();
                    info.ipi_spec_dst.s_addr = u32::from_ne_bytes(s.octets());
                    let len = std::mem::size_of::<libc::in_pktinfo>() as u32;
                    msg.msg_controllen = libc::CMSG_SPACE(len) as _;
                    let c = libc::CMSG_FIRSTHDR(&msg);
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(len) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
                }
                IpAddr::V6(s) => {
                    let mut info: libc::in6_pktinfo = std::mem::zeroed();
                    info.ipi6_addr.s6_addr = s.octets();
                    let len = std::mem::size_of::<libc::in6_pktinfo>() as u32;
                    msg.msg_controllen = libc::CMSG_SPACE(len) as _;
                    let c = libc::CMSG_FIRSTHDR(&msg);
                    (*c).cmsg_level = libc::IPPROTO_IPV6;
                    (*c).cmsg_type = libc::IPV6_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(len) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
                }
            }
        }
        // SAFETY: msg points at live buffers (see above).
        let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives one packet: (source, destination if known, ESP payload) into `buf`.
    fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<(IpAddr, Option<IpAddr>, &'a [u8])> {
        // SAFETY: zeroed sockaddr_storage is valid; recvfrom writes at most its size.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: buf and ss are live and writable for the given lengths.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut sl,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if self.v6 {
            if i32::from(ss.ss_family) != libc::AF_INET6 {
                return Err(io::Error::other("no IPv6 source"));
            }
            // SAFETY: the kernel filled ss with a sockaddr_in6 (family checked above).
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read_unaligned((&ss as *const libc::sockaddr_storage).cast()) };
            let src = IpAddr::from(a.sin6_addr.s6_addr);
            Ok((src, None, &buf[..n]))
        } else {
            let (s, d, p) =
                parse_ipv4_esp(&buf[..n]).map_err(|e| io::Error::other(e.to_string()))?;
            Ok((s, Some(d), p))
        }
    }
}

/// The userspace ESP shell: raw sockets, reader threads, a channel of decrypted traffic.
pub struct UserspaceBackend {
    endpoint: Arc<Mutex<EspEndpoint>>,
    queue_full: Arc<AtomicU64>,
    socks: Vec<Arc<RawSock>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UserspaceBackend {
    /// Opens raw ESP sockets (IPv4, and IPv6 if available) in the calling thread's network
    /// namespace and starts one reader thread per socket. Needs CAP_NET_RAW. Accepted
    /// datagrams arrive on the returned channel (bounded to [`QUEUE_LEN`]: a consumer that
    /// falls behind loses datagrams, counted in [`Self::queue_full_drops`], instead of growing
    /// memory without bound); ESP drops are counted in [`Self::counters`].
    pub fn start() -> Result<(UserspaceBackend, tokio::sync::mpsc::Receiver<Inbound>), XfrmError> {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_LEN);
        let queue_full = Arc::new(AtomicU64::new(0));
        let endpoint = Arc::new(Mutex::new(EspEndpoint::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut socks = vec![Arc::new(RawSock::open(false)?)];
        match RawSock::open(true) {
            Ok(s) => socks.push(Arc::new(s)),
            Err(e) => tracing::warn!("userspace ESP: no IPv6 raw socket: {e}"),
        }
        let mut threads = Vec::new();
        for s in &socks {
            let (s, ep, stop, tx) = (s.clone(), endpoint.clone(), stop.clone(), tx.clone());
            let full = queue_full.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("esp-rx-v{}", if s.v6 { 6 } else { 4 }))
                    .spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while !stop.load(Ordering::Relaxed) {
                            let (src, dst, esp) = match s.recv(&mut buf) {
                                Ok(x) => x,
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
                                Err(e) => {
                                    tracing::debug!("userspace ESP recv: {e}");
                                    continue;
                                }
                            };
                            let r = lock(&ep).handle_esp(src, dst, esp);
                            match r {
                                Ok(inb) => match tx.try_send(inb) {
                                    Ok(()) => {}
                                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                                        full.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                                        return
                                    }
                                },
                                Err(e) => tracing::debug!("userspace ESP drop from {src}: {e}"),
                            }
                        }
                    })?,
            );
        }
        Ok((
            UserspaceBackend {
                endpoint,
                queue_full,
                socks,
                stop,
                threads,
            },
            rx,
        ))
    }

    /// ESP and inner-packet counters of all SAs.
    pub fn counters(&self) -> EndpointCounters {
        lock(&self.endpoint).counters()
    }

    /// Accepted datagrams dropped because the channel was full.
    pub fn queue_full_drops(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
    }

    /// Access to the sans-IO endpoint (install, delete, counters...).
    pub fn endpoint(&self) -> std::sync::MutexGuard<'_, EspEndpoint> {
        lock(&self.endpoint)
    }

    /// Encrypts and sends a UDP datagram `src` → `dst` on its outbound SA.
    pub fn send_udp(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<(), XfrmError> {
        let esp = lock(&self.endpoint).encrypt_udp(src, dst, payload)?;
        self.send_raw(src.ip(), dst.ip(), &esp)
    }

    /// Sends an already built ESP payload (tests use it to replay or tamper).
    pub fn send_raw(&self, src: IpAddr, dst: IpAddr, esp: &[u8]) -> Result<(), XfrmError> {
        let s = self
            .socks
            .iter()
            .find(|s| s.v6 == dst.is_ipv6())
            .ok_or_else(|| XfrmError::Io(io::Error::other("no raw socket for this family")))?;
        Ok(s.send(src, dst, esp)?)
    }
}

impl Drop for UserspaceBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EncryptionAlg, IntegrityAlg, SocketAddrPair, Spis};
    use std::time::Instant;

    fn set(ue: &str, p: &str) -> SaSet {
        SaSet::new(
            SocketAddrPair {
                addr: ue.parse().unwrap(),
                client: 40000,
                server: 40001,
            },
            SocketAddrPair {
                addr: p.parse().unwrap(),
                client: 5100,
                server: 5101,
            },
            Spis {
                uc: 1000,
                us: 1001,
                pc: 2000,
                ps: 2001,
            },
            IntegrityAlg::HmacSha1_96,
            EncryptionAlg::AesCbc,
            &[1; 16],
            &[2; 16],
            Duration::from_secs(30),
            Instant::now(),
        )
        .unwrap()
    }

    #[test]
    fn udp_checksum_known_value() {
        // IPv4 UDP example checked against Linux-generated packets (tcpdump -vv "udp sum ok").
        let seg = build_udp(
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
            b"hi",
        );
        assert_eq!(
            transport_checksum(
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                17,
                &seg
            ),
            0
        );
        let seg6 = build_udp(
            "[fd00::1]:5060".parse().unwrap(),
            "[fd00::2]:5062".parse().unwrap(),
            b"odd",
        );
        assert_eq!(
            transport_checksum(
                "fd00::1".parse().unwrap(),
                "fd00::2".parse().unwrap(),
                17,
                &seg6
            ),
            0
        );
    }

    #[test]
    fn ue_and_pcscf_endpoints_talk_both_ways() {
        for (ue, p) in [("10.0.0.2", "10.0.0.1"), ("fd00::2", "fd00::1")] {
            let s = set(ue, p);
            let mut pc = EspEndpoint::new();
            let mut u = EspEndpoint::new();
            let pid = pc.install(&s, Side::Pcscf).unwrap();
            u.install(&s, Side::Ue).unwrap();
            let ue_c = SocketAddr::new(s.ue, s.port_uc);
            let p_s = SocketAddr::new(s.pcscf, s.port_ps);
            let esp = u
                .encrypt_udp(ue_c, p_s, b"REGISTER sip:ims SIP/2.0\r\n\r\n")
                .unwrap();
            match pc.handle_esp(s.ue, Some(s.pcscf), &esp).unwrap() {
                Inbound::Udp {
                    src,
                    dst,
                    payload,
                    set,
                    spi,
                } => {
                    assert_eq!((src, dst, set, spi), (ue_c, p_s, pid, s.spi_ps));
                    assert_eq!(payload, b"REGISTER sip:ims SIP/2.0\r\n\r\n");
                }
                other => panic!("{other:?}"),
            }
            let back = pc
                .encrypt_udp(p_s, ue_c, b"SIP/2.0 200 OK\r\n\r\n")
                .unwrap();
            assert!(matches!(
                u.handle_esp(s.pcscf, None, &back).unwrap(),
                Inbound::Udp { .. }
            ));
            // Wrong outer source, replay, unknown SPI.
            assert!(matches!(
                pc.handle_esp(s.pcscf, None, &esp),
                Err(InboundError::WrongSource { .. })
            ));
            assert!(matches!(
                pc.handle_esp(s.ue, None, &esp),
                Err(InboundError::Esp(EspError::Replay { .. }))
            ));
            let mut unk = esp.clone();
            unk[..4].copy_from_slice(&77777u32.to_be_bytes());
            assert!(matches!(
                pc.handle_esp(s.ue, None, &unk),
                Err(InboundError::UnknownSpi(77777))
            ));
            // A datagram on the right SA but to the wrong port is refused by the selector.
            let wrong = u
                .encrypt_segment(
                    ue_c,
                    p_s,
                    17,
                    &build_udp(ue_c, SocketAddr::new(s.pcscf, 9), b"x"),
                )
                .unwrap();
            assert!(matches!(
                pc.handle_esp(s.ue, None, &wrong),
                Err(InboundError::Selector(_))
            ));
            let c = pc.counters();
            assert_eq!(
                (
                    c.esp.in_packets,
                    c.esp.dropped_replay,
                    c.unknown_spi,
                    c.rejected_inner
                ),
                (2, 1, 1, 2)
            );
            // No outbound SA from a non-protected port.
            assert!(matches!(
                pc.encrypt_udp(SocketAddr::new(s.pcscf, 5060), ue_c, b""),
                Err(XfrmError::NoOutboundSa { .. })
            ));
            pc.delete(pid).unwrap();
            assert!(matches!(
                pc.handle_esp(s.ue, None, &back),
                Err(InboundError::UnknownSpi(_))
            ));
            assert_eq!(pc.counters().esp.in_packets, 2, "counters survive delete");
        }
    }

    #[test]
    fn tcp_segments_delivered_verbatim() {
        let s = set("10.0.0.2", "10.0.0.1");
        let mut pc = EspEndpoint::new();
        let mut u = EspEndpoint::new();
        pc.install(&s, Side::Pcscf).unwrap();
        u.install(&s, Side::Ue).unwrap();
        let ue_s = SocketAddr::new(s.ue, s.port_us);
        let p_c = SocketAddr::new(s.pcscf, s.port_pc);
        let mut seg = vec![0u8; 20];
        seg[0..2].copy_from_slice(&s.port_us.to_be_bytes());
        seg[2..4].copy_from_slice(&s.port_pc.to_be_bytes());
        seg[12] = 0x50;
        seg.extend_from_slice(b"SIP/2.0 200 OK\r\n");
        let esp = u.encrypt_segment(ue_s, p_c, IPPROTO_TCP, &seg).unwrap();
        assert_eq!(
            pc.handle_esp(s.ue, Some(s.pcscf), &esp).unwrap(),
            Inbound::Tcp {
                src: s.ue,
                dst: s.pcscf,
                segment: seg,
                set: 1
            }
        );
        // A dummy packet (RFC 4303 §2.6) is dropped quietly.
        let dummy = u.encrypt_segment(ue_s, p_c, NEXT_HEADER_NONE, b"").unwrap();
        assert_eq!(pc.handle_esp(s.ue, None, &dummy), Err(InboundError::Dummy));
    }

    #[test]
    fn spi_uniqueness_and_outbound_preference() {
        let s = set("10.0.0.2", "10.0.0.1");
        let mut pc = EspEndpoint::new();
        let a = pc.install(&s, Side::Pcscf).unwrap();
        assert!(matches!(
            pc.install(&s, Side::Pcscf),
            Err(XfrmError::SpiInUse(_))
        ));
        // A re-authentication set with new SPIs, same ports: the established one wins until
        // the new one is promoted.
        let mut s2 = s.clone();
        s2.spi_pc = 3000;
        s2.spi_ps = 3001;
        s2.spi_uc = 3002;
        s2.spi_us = 3003;
        pc.update_model(a, |m| {
            m.promote(Duration::from_secs(60), Instant::now()).unwrap()
        })
        .unwrap();
        let b = pc.install(&s2, Side::Pcscf).unwrap();
        let src = SocketAddr::new(s.pcscf, s.port_ps);
        let dst = SocketAddr::new(s.ue, s.port_uc);
        let e = pc.encrypt_udp(src, dst, b"x").unwrap();
        assert_eq!(peek_spi(&e).unwrap(), s.spi_uc);
        pc.update_model(b, |m| {
            m.promote(Duration::from_secs(60), Instant::now()).unwrap()
        })
        .unwrap();
        pc.update_model(a, |m| {
            m.begin_expiry(Duration::from_secs(5), Instant::now())
                .unwrap()
        })
        .unwrap();
        let e = pc.encrypt_udp(src, dst, b"x").unwrap();
        assert_eq!(peek_spi(&e).unwrap(), s2.spi_uc);
        assert_eq!(pc.flush(), 2);
    }

    #[test]
    fn ipv4_header_parser() {
        let mut p = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 50, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 1]);
        let (s, d, e) = parse_ipv4_esp(&p).unwrap();
        assert_eq!(
            (s.to_string(), d.to_string(), e.len()),
            ("10.0.0.1".into(), "10.0.0.2".into(), 8)
        );
        assert!(parse_ipv4_esp(&p[..10]).is_err());
        p[9] = 17;
        assert!(parse_ipv4_esp(&p).is_err());
    }

    proptest::proptest! {
        #[test]
        fn endpoint_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_ipv4_esp(&data);
            let s = set("10.0.0.2", "10.0.0.1");
            let mut pc = EspEndpoint::new();
            pc.install(&s, Side::Pcscf).unwrap();
            let mut d = data.clone();
            if d.len() >= 4 { d[..4].copy_from_slice(&s.spi_ps.to_be_bytes()); }
            let _ = pc.handle_esp(s.ue, None, &d);
        }
    }
}
