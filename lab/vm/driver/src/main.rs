//! In-VM driver of the real-kernel IPsec acceptance test (issue 4).
//!
//! Runs as root inside the lab VM (lab/vm/run.sh), whose Debian kernel has ESP. Two network
//! namespaces joined by a veth pair play P-CSCF and UE. For every algorithm pair of sec-agree
//! (hmac-md5-96 / hmac-sha-1-96 × null / aes-cbc / des-ede3-cbc) and both IP families:
//!
//! 1. kernel ⇄ kernel: the xfrm crate's kernel backend installs the full set (four SAs, four
//!    policies, mirror images) in both namespaces; SIP-sized UDP crosses on all four SAs and a
//!    multi-segment TCP exchange crosses on SA 1/3; the kernel's own per-SA packet counters
//!    (`ip -s xfrm state`) must have risen and agree between sender and receiver; a raw packet
//!    capture on the veth must show only ESP between the two hosts, and the plaintext marker
//!    must be absent when encrypting (and present with NULL encryption, which proves the
//!    capture sees payloads at all);
//! 2. userspace ⇄ kernel: the userspace ESP backend on one end (either role) and kernel ESP on
//!    the other exchange SIP-sized UDP on all four SAs;
//! 3. a key mismatch is refused by the kernel (integrity failure counted, nothing delivered),
//!    and so is a replayed genuine packet (replay drop counted).
//!
//! With `--out DIR`, the ESP frames of the kernel ⇄ kernel phase are written to
//! `DIR/kernel-esp.pcap` and their keys to `DIR/esp_sa` (Wireshark UAT) for the host to decrypt.
//!
//! Output: one `VMTEST PASS|FAIL <name> ...` line per check and a `VMTEST SUMMARY` line; the
//! exit status is non-zero if any check failed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use xfrm::netns::NetNs;
use xfrm::userspace::Inbound;
use xfrm::{
    EncryptionAlg, IntegrityAlg, IpsecBackend, KernelBackend, SaSet, Side, SocketAddrPair, Spis,
    Tag, UserspaceBackend,
};

type Res<T> = Result<T, String>;

const CK: [u8; 16] = *b"\x5c\x1d\x0a\x3f\x9e\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb";
const IK: [u8; 16] = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\xfe\xdc\xba\x98\x76\x54\x32\x10";
const P4: &str = "10.90.0.1";
const U4: &str = "10.90.0.2";
const P6: &str = "fd90::1";
const U6: &str = "fd90::2";
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn err<E: std::fmt::Display>(ctx: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{ctx}: {e}")
}

/// Pass/fail bookkeeping; every check prints exactly one line.
#[derive(Default)]
struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, name: &str, r: Res<String>) {
        match r {
            Ok(detail) => {
                self.passed += 1;
                println!("VMTEST PASS {name} {detail}");
            }
            Err(e) => {
                self.failed += 1;
                println!("VMTEST FAIL {name}: {e}");
            }
        }
    }
}

/// A unique marker per exchange, searched for in the capture.
fn marker(tag: &str, n: usize) -> String {
    format!("IMSLABPLAINTEXT-{tag}-{n:04}")
}

/// A SIP-sized REGISTER (≈ 1.2 kB, like a protected REGISTER of a handset) carrying `mark`.
fn register(set: &SaSet, mark: &str, extra: usize) -> Vec<u8> {
    let ue = if set.is_ipv6() {
        format!("[{}]", set.ue)
    } else {
        set.ue.to_string()
    };
    let mut m = format!(
        "REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ue}:{uc};branch=z9hG4bK-{mark}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>;tag=vm\r\n\
         To: <sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>\r\n\
         Call-ID: {mark}@lab\r\n\
         CSeq: 2 REGISTER\r\n\
         Contact: <sip:001010000000001@{ue}:{uc}>;expires=600;+sip.instance=\"<urn:gsma:imei:35000000-000000-0>\"\r\n\
         Security-Verify: ipsec-3gpp;alg={alg};ealg={ealg};spi-c={spc};spi-s={sps};port-c={ppc};port-s={pps}\r\n\
         Authorization: Digest username=\"001010000000001@ims.mnc001.mcc001.3gppnetwork.org\",realm=\"ims.mnc001.mcc001.3gppnetwork.org\",nonce=\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\",response=\"00000000000000000000000000000000\",algorithm=AKAv1-MD5\r\n\
         P-Access-Network-Info: 3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=0010100010019B01\r\n\
         User-Agent: imslab-vm\r\nSupported: path,sec-agree\r\nRequire: sec-agree\r\nProxy-Require: sec-agree\r\n",
        uc = set.port_uc,
        alg = set.integrity,
        ealg = set.encryption,
        spc = set.spi_pc,
        sps = set.spi_ps,
        ppc = set.port_pc,
        pps = set.port_ps,
    );
    if extra > 0 {
        m.push_str(&format!("X-Padding: {}\r\n", "p".repeat(extra)));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

fn response(mark: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP ue;branch=z9hG4bK-{mark}\r\nFrom: <sip:a@b>;tag=vm\r\n\
         To: <sip:a@b>;tag=p\r\nCall-ID: {mark}@lab\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn make_set(v6: bool, k: usize, i: IntegrityAlg, e: EncryptionAlg, ik: &[u8; 16]) -> SaSet {
    let (ue, p) = if v6 { (U6, P6) } else { (U4, P4) };
    let k16 = k as u16;
    let base = 0x1000 + 16 * k as u32;
    SaSet::new(
        SocketAddrPair {
            addr: ue.parse().unwrap(),
            client: 20000 + 10 * k16,
            server: 20001 + 10 * k16,
        },
        SocketAddrPair {
            addr: p.parse().unwrap(),
            client: 40000 + 10 * k16,
            server: 40001 + 10 * k16,
        },
        Spis {
            uc: base,
            us: base + 1,
            pc: base + 2,
            ps: base + 3,
        },
        i,
        e,
        &CK,
        ik,
        Duration::from_secs(60),
        Instant::now(),
    )
    .expect("valid test set")
}

fn udp_in(ns: &NetNs, addr: SocketAddr) -> Res<UdpSocket> {
    ns.run(|| {
        let s = UdpSocket::bind(addr).map_err(err("bind udp"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(err("timeout"))?;
        Ok(s)
    })
    .map_err(err("netns"))?
}

fn udp_recv(s: &UdpSocket) -> Res<(Vec<u8>, SocketAddr)> {
    let mut b = vec![0u8; 65536];
    let (n, from) = s.recv_from(&mut b).map_err(err("udp recv"))?;
    b.truncate(n);
    Ok((b, from))
}

/// One UDP request/response over a client→server pair of SAs, both ends kernel sockets.
fn udp_exchange(
    cns: &NetNs,
    c: SocketAddr,
    sns: &NetNs,
    s: SocketAddr,
    req: &[u8],
    resp: &[u8],
) -> Res<()> {
    let cs = udp_in(cns, c)?;
    let ss = udp_in(sns, s)?;
    cs.send_to(req, s).map_err(err("udp send"))?;
    let (got, from) = udp_recv(&ss)?;
    if got != req || from != c {
        return Err(format!("request differs or wrong source {from}"));
    }
    ss.send_to(resp, c).map_err(err("udp send resp"))?;
    let (got, from) = udp_recv(&cs)?;
    if got != resp || from != s {
        return Err(format!("response differs or wrong source {from}"));
    }
    Ok(())
}

/// A TCP connection client→server (bound client port), a large request and a response.
fn tcp_exchange(
    cns: &NetNs,
    c: SocketAddr,
    sns: &NetNs,
    s: SocketAddr,
    req: &[u8],
    resp: &[u8],
) -> Res<()> {
    let l = sns
        .run(|| TcpListener::bind(s).map_err(err("listen")))
        .map_err(err("netns"))??;
    let sock = cns
        .run(|| -> Res<Socket> {
            let d = if c.is_ipv6() {
                Domain::IPV6
            } else {
                Domain::IPV4
            };
            let so = Socket::new(d, Type::STREAM, None).map_err(err("socket"))?;
            so.set_reuse_address(true).map_err(err("reuse"))?;
            so.bind(&c.into()).map_err(err("bind tcp"))?;
            Ok(so)
        })
        .map_err(err("netns"))??;
    std::thread::scope(|sc| {
        let server = sc.spawn(|| -> Res<()> {
            let (mut st, from) = l.accept().map_err(err("accept"))?;
            if from != c {
                return Err(format!("accepted from {from}"));
            }
            st.set_read_timeout(Some(IO_TIMEOUT))
                .map_err(err("timeout"))?;
            let mut got = vec![0u8; req.len()];
            st.read_exact(&mut got).map_err(err("server read"))?;
            if got != req {
                return Err("TCP request differs".into());
            }
            st.write_all(resp).map_err(err("server write"))?;
            Ok(())
        });
        let client = (|| -> Res<()> {
            sock.connect_timeout(&s.into(), IO_TIMEOUT)
                .map_err(err("connect"))?;
            let mut st: std::net::TcpStream = sock.try_clone().map_err(err("clone"))?.into();
            st.set_read_timeout(Some(IO_TIMEOUT))
                .map_err(err("timeout"))?;
            st.write_all(req).map_err(err("client write"))?;
            let mut got = vec![0u8; resp.len()];
            st.read_exact(&mut got).map_err(err("client read"))?;
            if got != resp {
                return Err("TCP response differs".into());
            }
            Ok(())
        })();
        let server = server
            .join()
            .map_err(|_| "server thread panicked".to_string())?;
        client.and(server)
    })
}

/// Raw AF_PACKET capture on one interface (what tcpdump would see), drained on demand.
struct Capture {
    fd: OwnedFd,
    /// Frames between the two hosts kept for the pcap (when `record` is on).
    frames: std::cell::RefCell<Vec<(std::time::SystemTime, Vec<u8>)>>,
    record: std::cell::Cell<bool>,
}

#[derive(Debug, Default)]
struct Seen {
    esp: usize,
    plain_transport: usize,
    marker_hits: usize,
}

impl Capture {
    fn open(ns: &NetNs, dev: &str) -> Res<Capture> {
        let dev = std::ffi::CString::new(dev).map_err(err("dev"))?;
        ns.run(|| -> Res<Capture> {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2) call; the fd is owned right away.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            if raw < 0 {
                return Err(format!(
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: raw is a fresh valid fd.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: dev is a valid C string.
            let ifindex = unsafe { libc::if_nametoindex(dev.as_ptr()) };
            if ifindex == 0 {
                return Err("if_nametoindex failed".into());
            }
            // SAFETY: zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: sll is a live sockaddr_ll of the given size.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r != 0 {
                return Err(format!(
                    "bind AF_PACKET: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let size: i32 = 8 << 20;
            // SAFETY: fd valid, option value a live i32.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&size as *const i32).cast(),
                    4,
                )
            };
            Ok(Capture {
                fd,
                frames: Default::default(),
                record: Default::default(),
            })
        })
        .map_err(err("netns"))?
    }

    /// Reads every queued frame (non-blocking) and classifies those between `a` and `b`.
    fn drain(&self, a: IpAddr, b: IpAddr, mark_prefix: &[u8]) -> Seen {
        let mut seen = Seen::default();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: buf is a live writable buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            let f = &buf[..n as usize];
            if f.len() < 14 {
                continue;
            }
            let ethertype = u16::from_be_bytes([f[12], f[13]]);
            let ip = &f[14..];
            let (src, dst, proto) = match ethertype {
                0x0800 if ip.len() >= 20 => (
                    IpAddr::from([ip[12], ip[13], ip[14], ip[15]]),
                    IpAddr::from([ip[16], ip[17], ip[18], ip[19]]),
                    ip[9],
                ),
                0x86dd if ip.len() >= 40 => {
                    let mut s = [0u8; 16];
                    let mut d = [0u8; 16];
                    s.copy_from_slice(&ip[8..24]);
                    d.copy_from_slice(&ip[24..40]);
                    (IpAddr::from(s), IpAddr::from(d), ip[6])
                }
                _ => continue,
            };
            if !((src == a && dst == b) || (src == b && dst == a)) {
                continue;
            }
            if self.record.get() {
                self.frames
                    .borrow_mut()
                    .push((std::time::SystemTime::now(), f.to_vec()));
            }
            match proto {
                50 => seen.esp += 1,
                6 | 17 => seen.plain_transport += 1,
                _ => {}
            }
            if !mark_prefix.is_empty() && f.windows(mark_prefix.len()).any(|w| w == mark_prefix) {
                seen.marker_hits += 1;
            }
        }
        seen
    }
}

impl Capture {
    /// Writes the recorded frames as a classic pcap (Ethernet link type).
    fn write_pcap(&self, path: &std::path::Path) -> std::io::Result<usize> {
        let frames = self.frames.borrow();
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        for (t, f) in frames.iter() {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            out.extend_from_slice(&(d.as_secs() as u32).to_le_bytes());
            out.extend_from_slice(&d.subsec_micros().to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        std::fs::write(path, out)?;
        Ok(frames.len())
    }
}

/// Per-SPI kernel counters from `ip -s xfrm state`: (packets, integrity failures).
fn xfrm_counters(ns: &NetNs) -> Res<HashMap<u32, (u64, u64)>> {
    let out = ns
        .ip(&["-s", "xfrm", "state"])
        .map_err(err("ip -s xfrm state"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut m = HashMap::new();
    let mut spi = None;
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("proto esp spi 0x") {
            // "0x00001003(4099) reqid ..." with -s, "0x00001003 reqid ..." without.
            let hex: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            spi = u32::from_str_radix(&hex, 16).ok();
        } else if l == "lifetime current:" {
            // "  1234(bytes), 5(packets)"
            let c = lines.next().unwrap_or("");
            let pk = c
                .split(',')
                .nth(1)
                .and_then(|p| p.trim().strip_suffix("(packets)"))
                .and_then(|p| p.parse::<u64>().ok());
            if let (Some(s), Some(p)) = (spi, pk) {
                m.entry(s).or_insert((0, 0)).0 = p;
            }
        } else if let Some(rest) = l.strip_prefix("replay-window ") {
            // stats line: "replay-window 0 replay 0 failed 3"
            if let Some(f) = rest.split("failed ").nth(1) {
                if let (Some(s), Ok(f)) = (spi, f.trim().parse::<u64>()) {
                    m.entry(s).or_insert((0, 0)).1 = f;
                }
            }
        }
    }
    Ok(m)
}

/// Per-SPI replay drops from the stats line of `ip -s xfrm state`
/// ("replay-window 0 replay 1 failed 0").
fn xfrm_replay_drops(ns: &NetNs) -> Res<HashMap<u32, u64>> {
    let out = ns
        .ip(&["-s", "xfrm", "state"])
        .map_err(err("ip -s xfrm state"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut m = HashMap::new();
    let mut spi = None;
    for l in text.lines().map(str::trim) {
        if let Some(rest) = l.strip_prefix("proto esp spi 0x") {
            let hex: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            spi = u32::from_str_radix(&hex, 16).ok();
        } else if l.starts_with("replay-window ") && l.contains(" failed ") {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let (Some(s), Some(i)) = (spi, w.iter().position(|x| *x == "replay")) {
                if let Some(n) = w.get(i + 1).and_then(|n| n.parse().ok()) {
                    m.insert(s, n);
                }
            }
        }
    }
    Ok(m)
}

struct Lab {
    p: NetNs,
    u: NetNs,
    cap: Capture,
}

impl Lab {
    fn addrs(v6: bool) -> (IpAddr, IpAddr) {
        if v6 {
            (P6.parse().unwrap(), U6.parse().unwrap())
        } else {
            (P4.parse().unwrap(), U4.parse().unwrap())
        }
    }
}

/// Kernel ⇄ kernel for one algorithm pair and family.
fn kernel_kernel(
    lab: &Lab,
    pk: &KernelBackend,
    uk: &KernelBackend,
    set: &SaSet,
    k: usize,
) -> Res<String> {
    let (pa, ua) = Lab::addrs(set.is_ipv6());
    let pid = pk
        .install(set, Side::Pcscf)
        .map_err(err("P-CSCF install"))?;
    let uid = match uk.install(set, Side::Ue) {
        Ok(id) => id,
        Err(e) => {
            let _ = pk.delete(pid);
            return Err(format!("UE install: {e}"));
        }
    };
    let r = (|| -> Res<String> {
        let (pst, ust) = (
            pk.list().map_err(err("list"))?,
            uk.list().map_err(err("list"))?,
        );
        if (
            pst.sas.len(),
            pst.policies.len(),
            ust.sas.len(),
            ust.policies.len(),
        ) != (4, 4, 4, 4)
        {
            return Err(format!("kernel state {pst:?} / {ust:?}"));
        }
        let tag = format!("kk{k}");
        let prefix = format!("IMSLABPLAINTEXT-{tag}-");
        lab.cap.drain(pa, ua, b"");
        lab.cap.record.set(true);
        let uc = SocketAddr::new(set.ue, set.port_uc);
        let us = SocketAddr::new(set.ue, set.port_us);
        let pc = SocketAddr::new(set.pcscf, set.port_pc);
        let ps = SocketAddr::new(set.pcscf, set.port_ps);
        // SA 1 + SA 3: UE client → P-CSCF server and back (REGISTER / 200 OK).
        let m1 = marker(&tag, 1);
        udp_exchange(
            &lab.u,
            uc,
            &lab.p,
            ps,
            &register(set, &m1, 0),
            &response(&m1),
        )
        .map_err(err("UDP SA1/3"))?;
        // SA 2 + SA 4: P-CSCF client → UE server and back (a request the P-CSCF originates).
        let m2 = marker(&tag, 2);
        udp_exchange(
            &lab.p,
            pc,
            &lab.u,
            us,
            &register(set, &m2, 0),
            &response(&m2),
        )
        .map_err(err("UDP SA2/4"))?;
        // TCP on SA 1 + SA 3: a 6 kB request (several segments) and its response.
        let m3 = marker(&tag, 3);
        tcp_exchange(
            &lab.u,
            uc,
            &lab.p,
            ps,
            &register(set, &m3, 5000),
            &response(&m3),
        )
        .map_err(err("TCP SA1/3"))?;
        // Let the final ACK/FIN segments go through before reading counters.
        std::thread::sleep(Duration::from_millis(50));
        let seen = lab.cap.drain(pa, ua, prefix.as_bytes());
        lab.cap.record.set(false);
        // Sender and receiver counters must agree. A delayed TCP ACK (≥ 40 ms, longer under
        // TCG) may still be in flight between the two reads: re-read for up to a second.
        let compare = || -> Res<Vec<u64>> {
            let pc_ = xfrm_counters(&lab.p)?;
            let uc_ = xfrm_counters(&lab.u)?;
            let mut per_sa = Vec::new();
            for (n, spi) in [set.spi_ps, set.spi_us, set.spi_uc, set.spi_pc]
                .iter()
                .enumerate()
            {
                let (a, af) = *pc_.get(spi).ok_or(format!("no P-CSCF SA spi 0x{spi:x}"))?;
                let (b, bf) = *uc_.get(spi).ok_or(format!("no UE SA spi 0x{spi:x}"))?;
                if a == 0 || a != b || af != 0 || bf != 0 {
                    return Err(format!(
                        "SA{} spi 0x{spi:x}: P-CSCF {a} pkts ({af} failed), UE {b} pkts ({bf} failed)",
                        n + 1
                    ));
                }
                per_sa.push(a);
            }
            Ok(per_sa)
        };
        let mut per_sa = compare();
        for _ in 0..10 {
            if per_sa.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            per_sa = compare();
        }
        let per_sa = per_sa?;
        if seen.esp == 0 || seen.plain_transport != 0 {
            return Err(format!("wire: {seen:?} (want ESP only)"));
        }
        let encrypted = set.encryption != EncryptionAlg::Null;
        if encrypted && seen.marker_hits != 0 {
            return Err(format!(
                "plaintext visible on the wire with {}: {seen:?}",
                set.encryption
            ));
        }
        if !encrypted && seen.marker_hits == 0 {
            return Err(format!(
                "NULL encryption but no plaintext seen: capture broken? {seen:?}"
            ));
        }
        Ok(format!(
            "sa_packets={}/{}/{}/{} esp_frames={} plaintext_frames={} marker_frames={}",
            per_sa[0],
            per_sa[1],
            per_sa[2],
            per_sa[3],
            seen.esp,
            seen.plain_transport,
            seen.marker_hits
        ))
    })();
    let d1 = pk.delete(pid);
    let d2 = uk.delete(uid);
    let left = (
        pk.list().map(|s| s.sas.len() + s.policies.len()),
        uk.list().map(|s| s.sas.len() + s.policies.len()),
    );
    let r = r?;
    d1.map_err(err("delete P-CSCF set"))?;
    d2.map_err(err("delete UE set"))?;
    match left {
        (Ok(0), Ok(0)) => Ok(r),
        other => Err(format!("state left after delete: {other:?}")),
    }
}

/// Polls the userspace backend's channel (whatever its flavour: only `try_recv` is used).
type TryRecv<'a> = &'a mut dyn FnMut() -> Option<Inbound>;

fn recv_inbound(rx: TryRecv<'_>) -> Res<Inbound> {
    let end = Instant::now() + IO_TIMEOUT;
    while Instant::now() < end {
        if let Some(m) = rx() {
            return Ok(m);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err("nothing from the userspace backend".into())
}

/// Userspace ESP on `us_side`, kernel ESP on the other end.
#[allow(clippy::too_many_arguments)]
fn userspace_kernel(
    lab: &Lab,
    kb: &KernelBackend,
    ub: &UserspaceBackend,
    urx: TryRecv<'_>,
    us_side: Side,
    set: &SaSet,
    k: usize,
) -> Res<String> {
    let k_side = if us_side == Side::Ue {
        Side::Pcscf
    } else {
        Side::Ue
    };
    let (kns, us_addr, k_addr) = if us_side == Side::Ue {
        (
            &lab.p,
            (set.ue, set.port_uc, set.port_us),
            (set.pcscf, set.port_ps, set.port_pc),
        )
    } else {
        (
            &lab.u,
            (set.pcscf, set.port_ps, set.port_pc),
            (set.ue, set.port_uc, set.port_us),
        )
    };
    let kid = kb.install(set, k_side).map_err(err("kernel install"))?;
    let uid = match ub.install(set, us_side) {
        Ok(id) => id,
        Err(e) => {
            let _ = kb.delete(kid);
            return Err(format!("userspace install: {e}"));
        }
    };
    let before = ub.endpoint().counters();
    let (pa, ua) = Lab::addrs(set.is_ipv6());
    let tag = format!("uk{k}");
    let prefix = format!("IMSLABPLAINTEXT-{tag}-");
    lab.cap.drain(pa, ua, b"");
    let r = (|| -> Res<String> {
        // Userspace client port → kernel server port, and the kernel's answer back; then the
        // other pair (userspace server port ⇄ kernel client port).
        for (n, (u_port, k_port)) in [(us_addr.1, k_addr.1), (us_addr.2, k_addr.2)]
            .into_iter()
            .enumerate()
        {
            let u = SocketAddr::new(us_addr.0, u_port);
            let kk = SocketAddr::new(k_addr.0, k_port);
            let m = marker(&tag, n);
            let ks = udp_in(kns, kk)?;
            let req = register(set, &m, 0);
            ub.send_udp(u, kk, &req).map_err(err("userspace send"))?;
            let (got, from) =
                udp_recv(&ks).map_err(err("kernel socket did not get the userspace ESP"))?;
            if got != req || from != u {
                return Err(format!("kernel got a different datagram from {from}"));
            }
            let resp = response(&m);
            ks.send_to(&resp, u).map_err(err("kernel send"))?;
            match recv_inbound(urx).map_err(err("userspace did not get the kernel ESP"))? {
                Inbound::Udp {
                    src, dst, payload, ..
                } if src == kk && dst == u && payload == resp => {}
                other => return Err(format!("userspace got {other:?}")),
            }
        }
        let seen = lab.cap.drain(pa, ua, prefix.as_bytes());
        let after = ub.endpoint().counters();
        let kc = xfrm_counters(kns)?;
        let mut kp = Vec::new();
        for spi in [set.spi_ps, set.spi_us, set.spi_uc, set.spi_pc] {
            let (p, f) = *kc.get(&spi).ok_or(format!("no kernel SA 0x{spi:x}"))?;
            if p != 1 || f != 0 {
                return Err(format!(
                    "kernel SA 0x{spi:x}: {p} packets, {f} failed (want 1, 0)"
                ));
            }
            kp.push(p);
        }
        let (ui, uo) = (
            after.esp.in_packets - before.esp.in_packets,
            after.esp.out_packets - before.esp.out_packets,
        );
        let drops = after.esp.dropped_icv + after.esp.dropped_replay + after.esp.dropped_malformed
            - before.esp.dropped_icv
            - before.esp.dropped_replay
            - before.esp.dropped_malformed;
        if (ui, uo, drops) != (2, 2, 0) {
            return Err(format!(
                "userspace counters in {ui} out {uo} dropped {drops} (want 2 2 0)"
            ));
        }
        if seen.esp != 4 || seen.plain_transport != 0 {
            return Err(format!("wire: {seen:?} (want 4 ESP, no plaintext)"));
        }
        let encrypted = set.encryption != EncryptionAlg::Null;
        if encrypted == (seen.marker_hits != 0) {
            return Err(format!(
                "marker visibility wrong for {}: {seen:?}",
                set.encryption
            ));
        }
        Ok(format!(
            "kernel_sa_packets={kp:?} userspace_in={ui} out={uo} dropped={drops} esp_frames={}",
            seen.esp
        ))
    })();
    let d1 = kb.delete(kid);
    let d2 = ub.delete(uid);
    let r = r?;
    d1.map_err(err("kernel delete"))?;
    d2.map_err(err("userspace delete"))?;
    Ok(r)
}

/// Wrong integrity key at the receiver: the kernel must drop and count, not deliver.
fn key_mismatch(lab: &Lab, pk: &KernelBackend, uk: &KernelBackend) -> Res<String> {
    let good = make_set(
        false,
        60,
        IntegrityAlg::HmacSha1_96,
        EncryptionAlg::AesCbc,
        &IK,
    );
    let mut bad_ik = IK;
    bad_ik[0] ^= 1;
    let bad = make_set(
        false,
        60,
        IntegrityAlg::HmacSha1_96,
        EncryptionAlg::AesCbc,
        &bad_ik,
    );
    let pid = pk.install(&good, Side::Pcscf).map_err(err("install"))?;
    let uid = uk.install(&bad, Side::Ue).map_err(err("install"))?;
    let r = (|| -> Res<String> {
        let uc = SocketAddr::new(good.ue, good.port_uc);
        let ps = SocketAddr::new(good.pcscf, good.port_ps);
        let cs = udp_in(&lab.u, uc)?;
        let ss = udp_in(&lab.p, ps)?;
        ss.set_read_timeout(Some(Duration::from_millis(700)))
            .map_err(err("timeout"))?;
        for n in 0..3 {
            cs.send_to(&register(&good, &marker("mismatch", n), 0), ps)
                .map_err(err("send"))?;
        }
        if let Ok((_, from)) = udp_recv(&ss) {
            return Err(format!(
                "datagram with a wrong ICV key delivered (from {from})"
            ));
        }
        let c = xfrm_counters(&lab.p)?;
        let (pk_, failed) = c.get(&good.spi_ps).copied().unwrap_or_default();
        if failed != 3 {
            return Err(format!(
                "P-CSCF SA 1: {pk_} packets, {failed} integrity failures (want 3 failures)"
            ));
        }
        Ok(format!("delivered=0 integrity_failed={failed}"))
    })();
    let _ = pk.delete(pid);
    let _ = uk.delete(uid);
    r
}

/// A genuine kernel ESP packet sent again (raw, from the UE's namespace): the kernel SA our
/// backend installed (replay window 64, RFC 4303 §3.4.3) drops it and counts a replay.
fn kernel_replay(
    lab: &Lab,
    pk: &KernelBackend,
    uk: &KernelBackend,
    raw: &UserspaceBackend,
) -> Res<String> {
    let set = make_set(
        false,
        62,
        IntegrityAlg::HmacSha1_96,
        EncryptionAlg::AesCbc,
        &IK,
    );
    let (pa, ua) = Lab::addrs(false);
    let pid = pk.install(&set, Side::Pcscf).map_err(err("install"))?;
    let uid = uk.install(&set, Side::Ue).map_err(err("install"))?;
    let r = (|| -> Res<String> {
        let uc = SocketAddr::new(set.ue, set.port_uc);
        let ps = SocketAddr::new(set.pcscf, set.port_ps);
        let cs = udp_in(&lab.u, uc)?;
        let ss = udp_in(&lab.p, ps)?;
        lab.cap.drain(pa, ua, b"");
        let first = lab.cap.frames.borrow().len();
        lab.cap.record.set(true);
        let req = register(&set, &marker("replay", 0), 0);
        cs.send_to(&req, ps).map_err(err("send"))?;
        let (got, _) = udp_recv(&ss)?;
        std::thread::sleep(Duration::from_millis(20));
        lab.cap.drain(pa, ua, b"");
        lab.cap.record.set(false);
        if got != req {
            return Err("original datagram differs".into());
        }
        // The ESP payload of the captured IPv4 frame (Ethernet 14 bytes, then IHL).
        let esp = lab.cap.frames.borrow()[first..]
            .iter()
            .map(|(_, f)| f)
            .find(|f| f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == 50)
            .map(|f| f[14 + usize::from(f[14] & 0x0f) * 4..].to_vec())
            .ok_or("ESP frame not captured")?;
        raw.send_raw(ua, pa, &esp).map_err(err("raw send"))?;
        ss.set_read_timeout(Some(Duration::from_millis(700)))
            .map_err(err("timeout"))?;
        if udp_recv(&ss).is_ok() {
            return Err("replayed ESP packet delivered".into());
        }
        let replay = xfrm_replay_drops(&lab.p)?
            .get(&set.spi_ps)
            .copied()
            .unwrap_or(0);
        let (pkts, _) = xfrm_counters(&lab.p)?
            .get(&set.spi_ps)
            .copied()
            .unwrap_or_default();
        if replay != 1 || pkts != 1 {
            return Err(format!(
                "P-CSCF SA 1: {pkts} packets, {replay} replay drops (want 1, 1)"
            ));
        }
        Ok(format!(
            "delivered=1 replayed_delivered=0 replay_drops={replay}"
        ))
    })();
    let _ = pk.delete(pid);
    let _ = uk.delete(uid);
    r
}

fn run(report: &mut Report, out: Option<&std::path::Path>) -> Res<()> {
    let t0 = Instant::now();
    let p = NetNs::create("vmp").map_err(err("netns"))?;
    let u = NetNs::create("vmu").map_err(err("netns"))?;
    let (pdev, _) = p
        .veth_to(
            &u,
            &[&format!("{P4}/24"), &format!("{P6}/64")],
            &[&format!("{U4}/24"), &format!("{U6}/64")],
        )
        .map_err(err("veth"))?;
    let cap = Capture::open(&p, &pdev)?;
    let lab = Lab { p, u, cap };
    let pk = lab
        .p
        .run(|| KernelBackend::new(Tag::default()))
        .map_err(err("netns"))?
        .map_err(err("kernel backend"))?;
    let uk = lab
        .u
        .run(|| KernelBackend::new(Tag::default()))
        .map_err(err("netns"))?
        .map_err(err("kernel backend"))?;
    report.check(
        "kernel-has-esp",
        match (pk.probe_esp(), uk.probe_esp()) {
            (Ok(true), Ok(true)) => Ok("probe SA installed in both namespaces".into()),
            other => Err(format!("ESP probe: {other:?}")),
        },
    );
    println!("VMTEST INFO setup {:.2}s", t0.elapsed().as_secs_f64());

    let mut k = 0;
    let mut combos = Vec::new();
    for v6 in [false, true] {
        for i in [IntegrityAlg::HmacMd5_96, IntegrityAlg::HmacSha1_96] {
            for e in [
                EncryptionAlg::Null,
                EncryptionAlg::AesCbc,
                EncryptionAlg::DesEde3Cbc,
            ] {
                combos.push((v6, i, e));
            }
        }
    }
    let t1 = Instant::now();
    let mut kk_sets = Vec::new();
    for &(v6, i, e) in &combos {
        let set = make_set(v6, k, i, e, &IK);
        let name = format!("kernel-kernel/{}/{i}/{e}", if v6 { "ipv6" } else { "ipv4" });
        report.check(&name, kernel_kernel(&lab, &pk, &uk, &set, k));
        kk_sets.push(set);
        k += 1;
    }
    println!(
        "VMTEST INFO kernel-kernel {:.2}s",
        t1.elapsed().as_secs_f64()
    );
    if let Some(dir) = out {
        // The kernel's ESP as a capture plus the keys as Wireshark's esp_sa UAT: the host
        // decrypts it with tshark, an independent check of algorithms and keys.
        let pcap = dir.join("kernel-esp.pcap");
        let r = lab
            .cap
            .write_pcap(&pcap)
            .map_err(err("write pcap"))
            .and_then(|n| {
                xfrm::uat::write_esp_sa_file(&dir.join("esp_sa"), kk_sets.iter())
                    .map_err(err("write esp_sa"))?;
                Ok(format!("frames={n} file={}", pcap.display()))
            });
        report.check("kernel-esp-pcap-written", r);
    }

    let t2 = Instant::now();
    let (pub_, mut prx) = lab
        .p
        .run(UserspaceBackend::start)
        .map_err(err("netns"))?
        .map_err(err("userspace"))?;
    let (uub, mut urx) = lab
        .u
        .run(UserspaceBackend::start)
        .map_err(err("netns"))?
        .map_err(err("userspace"))?;
    for us_side in [Side::Ue, Side::Pcscf] {
        for &(v6, i, e) in &combos {
            let set = make_set(v6, k, i, e, &IK);
            let name = format!(
                "userspace-{}-kernel-{}/{}/{i}/{e}",
                if us_side == Side::Ue { "ue" } else { "pcscf" },
                if us_side == Side::Ue { "pcscf" } else { "ue" },
                if v6 { "ipv6" } else { "ipv4" }
            );
            let r = if us_side == Side::Ue {
                userspace_kernel(
                    &lab,
                    &pk,
                    &uub,
                    &mut || urx.try_recv().ok(),
                    us_side,
                    &set,
                    k,
                )
            } else {
                userspace_kernel(
                    &lab,
                    &uk,
                    &pub_,
                    &mut || prx.try_recv().ok(),
                    us_side,
                    &set,
                    k,
                )
            };
            report.check(&name, r);
            k += 1;
        }
    }
    println!(
        "VMTEST INFO userspace-kernel {:.2}s",
        t2.elapsed().as_secs_f64()
    );

    report.check("kernel-key-mismatch-dropped", key_mismatch(&lab, &pk, &uk));
    report.check("kernel-replay-dropped", kernel_replay(&lab, &pk, &uk, &uub));
    report.check(
        "flush-leaves-nothing",
        match (pk.flush(), uk.flush(), pk.list(), uk.list()) {
            (Ok(_), Ok(_), Ok(a), Ok(b))
                if a.sas.is_empty()
                    && a.policies.is_empty()
                    && b.sas.is_empty()
                    && b.policies.is_empty() =>
            {
                Ok("both namespaces clean".into())
            }
            other => Err(format!(
                "{:?}",
                (other.0.err(), other.1.err(), other.2.ok(), other.3.ok())
            )),
        },
    );
    println!("VMTEST INFO total {:.2}s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.iter().position(|a| a == "--out") {
        Some(i) => match args.get(i + 1) {
            Some(d) => Some(std::path::PathBuf::from(d)),
            None => {
                eprintln!("usage: vm-ipsec [--out DIR]");
                std::process::exit(2);
            }
        },
        None => None,
    };
    let mut report = Report::default();
    if let Err(e) = run(&mut report, out.as_deref()) {
        report.check("setup", Err(e));
    }
    println!(
        "VMTEST SUMMARY passed={} failed={}",
        report.passed, report.failed
    );
    std::process::exit(if report.failed == 0 && report.passed > 0 {
        0
    } else {
        1
    });
}
