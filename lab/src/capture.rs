//! A loopback packet capture written as pcap, without tcpdump: the demo records its own
//! Diameter, SIP and ESP so Wireshark can replay (and, with the `esp_sa` file, decrypt) it.
//!
//! An `AF_PACKET`/`SOCK_DGRAM` socket bound to `lo` sees every packet twice (once
//! outgoing, once incoming); only the incoming copy is kept. Packets are IP datagrams
//! without a link header, so the file uses LINKTYPE_RAW. Needs CAP_NET_RAW.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// pcap LINKTYPE_RAW: each record starts with the IPv4 or IPv6 header.
const LINKTYPE_RAW: u32 = 101;
/// `sll_pkttype` of our own transmissions.
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;

/// Which packets to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Keep ESP (IP protocol 50) between these addresses.
    pub esp_hosts: Vec<IpAddr>,
    /// Keep UDP and TCP with either port in this list.
    pub ports: Vec<u16>,
    /// Keep UDP and TCP with either port in one of these inclusive ranges, if one end is
    /// in `esp_hosts` (protected ports with IPsec off).
    pub port_ranges: Vec<(u16, u16)>,
}

impl Filter {
    fn keep(&self, pkt: &[u8]) -> bool {
        let Some((src, dst, proto, l4)) = ip_fields(pkt) else {
            return false;
        };
        let ours = self.esp_hosts.contains(&src) || self.esp_hosts.contains(&dst);
        // A datagram over the link MTU (a REGISTER or INVITE over UDP on a real interface)
        // arrives in fragments; only the first carries ports. The others of our hosts are
        // kept so the dissector can reassemble.
        if ours && is_later_fragment(pkt) {
            return true;
        }
        match proto {
            50 | IPV6_FRAGMENT => ours,
            6 | 17 if l4.len() >= 4 => {
                let sp = u16::from_be_bytes([l4[0], l4[1]]);
                let dp = u16::from_be_bytes([l4[2], l4[3]]);
                self.ports.contains(&sp)
                    || self.ports.contains(&dp)
                    || (ours
                        && self
                            .port_ranges
                            .iter()
                            .any(|(a, b)| (a..=b).contains(&&sp) || (a..=b).contains(&&dp)))
            }
            _ => false,
        }
    }
}

/// IPv6 Fragment extension header (RFC 8200 §4.5).
const IPV6_FRAGMENT: u8 = 44;

/// An IPv4 fragment other than the first (offset ≠ 0, RFC 791).
fn is_later_fragment(pkt: &[u8]) -> bool {
    pkt.first().is_some_and(|b| b >> 4 == 4)
        && pkt.len() >= 20
        && u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff != 0
}

/// (src, dst, protocol, transport header and payload) of an IPv4/IPv6 packet.
fn ip_fields(pkt: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let src = IpAddr::from(<[u8; 4]>::try_from(&pkt[12..16]).ok()?);
            let dst = IpAddr::from(<[u8; 4]>::try_from(&pkt[16..20]).ok()?);
            Some((src, dst, pkt[9], pkt.get(ihl..)?))
        }
        6 if pkt.len() >= 40 => {
            let src = IpAddr::from(<[u8; 16]>::try_from(&pkt[8..24]).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(&pkt[24..40]).ok()?);
            Some((src, dst, pkt[6], &pkt[40..]))
        }
        _ => None,
    }
}

/// A running capture; [`Capture::stop`] flushes the file and returns the packet count.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::io::Result<u64>>>,
    count: Arc<Mutex<u64>>,
}

/// Why a capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Socket or file error (EPERM without CAP_NET_RAW).
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: &'static str,
        /// OS error.
        source: std::io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> CaptureError {
    move |source| CaptureError::Io { what, source }
}

impl Capture {
    /// Start capturing on `lo` into `path`.
    pub fn start(path: &Path, filter: Filter) -> Result<Capture, CaptureError> {
        Capture::start_on("lo", path, filter)
    }

    /// Start capturing on interface `iface` (of the calling thread's network namespace)
    /// into `path`. On `lo` each packet passes twice and only the incoming copy is kept;
    /// on any other interface (the netns lab's bridge) both directions are kept.
    pub fn start_on(iface: &str, path: &Path, filter: Filter) -> Result<Capture, CaptureError> {
        let fd = open_socket(iface).map_err(io_err("packet socket (needs root)"))?;
        let skip_outgoing = iface == "lo";
        let mut out = BufWriter::new(File::create(path).map_err(io_err("create pcap"))?);
        // pcap global header: magic, v2.4, thiszone, sigfigs, snaplen, linktype.
        let mut hdr = Vec::with_capacity(24);
        hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        hdr.extend_from_slice(&2u16.to_le_bytes());
        hdr.extend_from_slice(&4u16.to_le_bytes());
        hdr.extend_from_slice(&0i32.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        hdr.extend_from_slice(&65535u32.to_le_bytes());
        hdr.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&hdr).map_err(io_err("write pcap"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(Mutex::new(0));
        let (stop2, count2) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || run(fd, out, filter, skip_outgoing, stop2, count2));
        Ok(Capture {
            stop,
            thread: Some(thread),
            count,
        })
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop, flush, close; returns the number of packets written.
    pub fn stop(mut self) -> std::io::Result<u64> {
        self.finish()
    }

    fn finish(&mut self) -> std::io::Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("capture thread panicked"))),
            None => Ok(self.packets()),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

struct Fd(i32);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor and close it once.
        unsafe {
            libc::close(self.0);
        }
    }
}

fn open_socket(iface: &str) -> std::io::Result<Fd> {
    let name = std::ffi::CString::new(iface)
        .map_err(|_| std::io::Error::other("interface name with a NUL byte"))?;
    // SAFETY: plain socket(2)/setsockopt(2)/bind(2) calls on a descriptor we own; every
    // pointer passed points to a live, correctly sized value.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            i32::from(ETH_P_ALL.to_be()),
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = Fd(fd);
        let ifindex = libc::if_nametoindex(name.as_ptr());
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        if libc::bind(
            fd.0,
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // Loopback is shared with everything else on the host (other tests, load
        // generators); a deep queue keeps bursts from being dropped before we filter them.
        let size: libc::c_int = 64 << 20;
        if libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        ) < 0
        {
            // Without CAP_NET_ADMIN the ordinary limit applies; still capture.
            libc::setsockopt(
                fd.0,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        // Wake up regularly to notice stop().
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        if libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn run(
    fd: Fd,
    mut out: BufWriter<File>,
    filter: Filter,
    skip_outgoing: bool,
    stop: Arc<AtomicBool>,
    count: Arc<Mutex<u64>>,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 65536];
    let mut n_written = 0u64;
    // Drain what is queued after stop() so the last packets are not lost.
    let mut drain_until: Option<std::time::Instant> = None;
    loop {
        if drain_until.is_none() && stop.load(Ordering::SeqCst) {
            drain_until = Some(std::time::Instant::now() + Duration::from_millis(200));
        }
        if drain_until.is_some_and(|t| std::time::Instant::now() > t) {
            break;
        }
        // SAFETY: buf and sll outlive the call; lengths match their sizes.
        let (n, pkttype) = unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = libc::recvfrom(
                fd.0,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                &mut len,
            );
            (n, sll.sll_pkttype)
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        if skip_outgoing && pkttype == PACKET_OUTGOING {
            continue;
        }
        let pkt = &buf[..n as usize];
        if !filter.keep(pkt) {
            continue;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut rec = Vec::with_capacity(16 + pkt.len());
        rec.extend_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        rec.extend_from_slice(&ts.subsec_micros().to_le_bytes());
        rec.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        rec.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        rec.extend_from_slice(pkt);
        out.write_all(&rec)?;
        n_written += 1;
        *count.lock().unwrap_or_else(|e| e.into_inner()) = n_written;
    }
    out.flush()?;
    let drops = kernel_drops(&fd);
    if drops > 0 {
        return Err(std::io::Error::other(format!(
            "the kernel dropped {drops} packets on the capture socket (loopback too busy); \
             the capture is incomplete"
        )));
    }
    Ok(n_written)
}

/// Packets the kernel dropped on this socket since the last call (PACKET_STATISTICS).
fn kernel_drops(fd: &Fd) -> u32 {
    // SAFETY: getsockopt writes at most `len` bytes into `stats`, which lives on our stack.
    unsafe {
        let mut stats: libc::tpacket_stats = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as u32;
        if libc::getsockopt(
            fd.0,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut stats as *mut libc::tpacket_stats as *mut libc::c_void,
            &mut len,
        ) < 0
        {
            return 0;
        }
        stats.tp_drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_esp_between_our_hosts_and_our_ports() {
        let f = Filter {
            esp_hosts: vec!["127.0.0.2".parse().unwrap()],
            ports: vec![3868],
            port_ranges: vec![(31100, 31199)],
        };
        let mut esp = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 50, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
        ];
        esp.extend_from_slice(&[0; 20]);
        assert!(f.keep(&esp));
        esp[19] = 9;
        assert!(!f.keep(&esp), "ESP between other hosts");
        let mut tcp = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        tcp.extend_from_slice(&[0x0f, 0x1c, 0xc0, 0x00]);
        tcp.extend_from_slice(&[0; 16]);
        assert!(f.keep(&tcp), "Diameter port");
        tcp[20] = 0x10;
        assert!(!f.keep(&tcp), "someone else's traffic on loopback");
        assert!(!f.keep(&[0x45, 0, 0]), "truncated");
        assert!(!f.keep(&[]), "empty");
    }

    #[test]
    fn later_fragments_of_our_hosts_are_kept() {
        let f = Filter {
            esp_hosts: vec!["10.77.0.11".parse().unwrap()],
            ports: vec![5060],
            port_ranges: vec![],
        };
        // UDP, fragment offset 185 (×8 bytes): no ports in it.
        let mut frag = vec![
            0x45, 0, 0, 40, 0, 1, 0, 185, 64, 17, 0, 0, 10, 77, 0, 11, 10, 77, 0, 1,
        ];
        frag.extend_from_slice(&[0xaa; 20]);
        assert!(f.keep(&frag));
        frag[15] = 99;
        assert!(!f.keep(&frag), "another host's fragment");
    }
}
