//! From captured frames to SIP and MGCP messages: link layers, IPv4/IPv6 with fragment
//! reassembly, UDP datagrams and TCP streams framed by Content-Length.
//!
//! Sans-IO: [`Decoder::handle_frame`] takes one frame and its capture time,
//! [`Decoder::poll_payload`] hands out the application messages it completed. Every buffer
//! is bounded (fragments in flight, bytes per datagram, TCP flows, bytes per flow) and ages
//! out by capture time, so a hostile or truncated capture costs bounded memory. Nothing
//! here panics on input; what cannot be decoded is a [`FrameError`] and the frame is
//! dropped.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use etherparse::{IpNumber, Ipv4Slice, Ipv6ExtensionSlice, Ipv6Slice, TcpSlice, UdpSlice};
use sip::{Frame, Limits, StreamFramer};

/// The link layer of a capture (pcap `LINKTYPE_*` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II, with 802.1Q / 802.1ad VLAN tags (`LINKTYPE_ETHERNET` 1). Also what an
    /// AF_PACKET socket on an Ethernet or veth interface delivers.
    Ethernet,
    /// Linux "cooked" capture v1 (`LINKTYPE_LINUX_SLL` 113), `tcpdump -i any`.
    LinuxSll,
    /// Linux "cooked" capture v2 (`LINKTYPE_LINUX_SLL2` 276), newer `tcpdump -i any`.
    LinuxSll2,
    /// Bare IPv4 or IPv6 (`LINKTYPE_RAW` 101, DLT 12/14, `LINKTYPE_IPV4` 228,
    /// `LINKTYPE_IPV6` 229); also what NFQUEUE delivers.
    RawIp,
    /// BSD loopback: a 4-byte address family in the capturing host's byte order
    /// (`LINKTYPE_NULL` 0).
    Null,
    /// OpenBSD loopback: the same in network byte order (`LINKTYPE_LOOP` 108).
    Loop,
}

impl LinkType {
    /// The link type for a pcap/pcapng link-type number, `None` when unsupported.
    pub fn from_linktype(n: u32) -> Option<LinkType> {
        Some(match n {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

/// Which parser an application payload belongs to, chosen by port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// SIP (a datagram, or one message cut from a TCP stream).
    Sip,
    /// MGCP (RFC 3435, UDP only).
    Mgcp,
}

/// The transport a payload arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: one datagram.
    Udp,
    /// TCP: one message cut from the reassembled stream.
    Tcp,
}

/// One application message, complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// SIP or MGCP.
    pub app: App,
    /// UDP or TCP.
    pub transport: Transport,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// The message bytes.
    pub data: Vec<u8>,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame ends inside a header.
    #[error("frame truncated in the {0} header")]
    Truncated(&'static str),
    /// The IP header is invalid.
    #[error("bad IP packet: {0}")]
    Ip(String),
    /// The UDP header is invalid.
    #[error("bad UDP datagram: {0}")]
    Udp(String),
    /// The TCP header is invalid.
    #[error("bad TCP segment: {0}")]
    Tcp(String),
    /// A fragment is inconsistent with the others or would exceed the size bound.
    #[error("IP fragment rejected: {0}")]
    Fragment(&'static str),
    /// A TCP stream could not be framed (no or bad Content-Length, too large); its buffer
    /// was dropped and framing restarts with the next segment.
    #[error("TCP stream framing: {0}")]
    Stream(sip::ParseError),
}

/// Bounds of the decoder's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Fragmented datagrams being reassembled at once; the oldest is dropped for a new one.
    pub max_fragmented: usize,
    /// Largest reassembled datagram in bytes.
    pub max_datagram: usize,
    /// How long (capture time) a fragmented datagram may wait for its missing fragments.
    pub fragment_timeout: Duration,
    /// TCP flows followed at once; the least recently active is dropped for a new one.
    pub max_flows: usize,
    /// How long (capture time) an idle TCP flow is kept.
    pub flow_idle: Duration,
    /// Largest SIP message on a TCP stream, and the most a flow buffers.
    pub max_message: usize,
    /// Out-of-order TCP segments held per flow while waiting for a gap to fill.
    pub max_out_of_order: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_fragmented: 256,
            max_datagram: 65_535,
            fragment_timeout: Duration::from_secs(30),
            max_flows: 1024,
            flow_idle: Duration::from_secs(300),
            max_message: sip::message::DEFAULT_MAX_MESSAGE,
            max_out_of_order: 16,
        }
    }
}

/// The ports that select SIP and MGCP traffic (either end of a packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// UDP and TCP ports carrying SIP.
    pub sip: Vec<u16>,
    /// UDP ports carrying MGCP.
    pub mgcp: Vec<u16>,
}

impl Ports {
    fn app(&self, transport: Transport, a: u16, b: u16) -> Option<App> {
        if self.sip.contains(&a) || self.sip.contains(&b) {
            Some(App::Sip)
        } else if transport == Transport::Udp && (self.mgcp.contains(&a) || self.mgcp.contains(&b))
        {
            Some(App::Mgcp)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

#[derive(Debug)]
struct FragBuf {
    data: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    have: Vec<(usize, usize)>,
    total: Option<usize>,
    first: SystemTime,
}

impl FragBuf {
    fn add(
        &mut self,
        offset: usize,
        more: bool,
        bytes: &[u8],
        max: usize,
    ) -> Result<(), FrameError> {
        let end = offset
            .checked_add(bytes.len())
            .filter(|&e| e <= max)
            .ok_or(FrameError::Fragment("reassembled datagram too large"))?;
        if !more {
            if self.total.is_some_and(|t| t != end) {
                return Err(FrameError::Fragment("two different last fragments"));
            }
            self.total = Some(end);
        }
        if self.total.is_some_and(|t| end > t) {
            return Err(FrameError::Fragment("fragment beyond the last one"));
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(bytes);
        self.have.push((offset, end));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
        Ok(())
    }

    fn complete(&self) -> bool {
        matches!((self.total, self.have.as_slice()), (Some(t), [(0, e)]) if *e == t)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    src: SocketAddr,
    dst: SocketAddr,
}

#[derive(Debug)]
struct Flow {
    next_seq: u32,
    buf: Vec<u8>,
    framer: StreamFramer,
    ooo: Vec<(u32, Vec<u8>)>,
    last: SystemTime,
}

/// The frame decoder: link layer → IP (reassembled) → UDP datagram or TCP stream message.
#[derive(Debug)]
pub struct Decoder {
    ports: Ports,
    limits: DecoderLimits,
    frags: HashMap<FragKey, FragBuf>,
    flows: HashMap<FlowKey, Flow>,
    out: VecDeque<Payload>,
    next_sweep: Option<SystemTime>,
}

/// How often (capture time) expired fragments and flows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Decoder {
    /// A decoder passing on traffic of `ports`, within `limits`.
    pub fn new(ports: Ports, limits: DecoderLimits) -> Decoder {
        Decoder {
            ports,
            limits,
            frags: HashMap::new(),
            flows: HashMap::new(),
            out: VecDeque::new(),
            next_sweep: None,
        }
    }

    /// Fragmented datagrams waiting for fragments.
    pub fn fragments_in_flight(&self) -> usize {
        self.frags.len()
    }

    /// TCP flows followed.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Decodes one captured frame seen at `at`. Frames that are not IP, not UDP/TCP or
    /// not on a selected port are dropped silently (`Ok`). Completed messages are
    /// queued for [`Decoder::poll_payload`], also when an error is returned.
    pub fn handle_frame(
        &mut self,
        link: LinkType,
        frame: &[u8],
        at: SystemTime,
    ) -> Result<(), FrameError> {
        self.sweep(at);
        let Some(ip) = strip_link(link, frame)? else {
            return Ok(());
        };
        self.handle_ip(ip, at)
    }

    /// The next completed message, oldest first.
    pub fn poll_payload(&mut self) -> Option<Payload> {
        self.out.pop_front()
    }

    fn sweep(&mut self, at: SystemTime) {
        if self.next_sweep.is_some_and(|n| at < n) {
            return;
        }
        self.next_sweep = at.checked_add(SWEEP_EVERY);
        let (ft, fi) = (self.limits.fragment_timeout, self.limits.flow_idle);
        let young = |t: SystemTime, max: Duration| at.duration_since(t).map_or(true, |d| d <= max);
        self.frags.retain(|_, f| young(f.first, ft));
        self.flows.retain(|_, f| young(f.last, fi));
    }

    fn handle_ip(&mut self, ip: &[u8], at: SystemTime) -> Result<(), FrameError> {
        match ip.first().map(|b| b >> 4) {
            Some(4) => {
                let p = Ipv4Slice::from_slice(ip).map_err(|e| FrameError::Ip(e.to_string()))?;
                let h = p.header();
                let (src, dst) = (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                );
                let pl = p.payload();
                if pl.fragmented {
                    let key = FragKey {
                        src,
                        dst,
                        id: u32::from(h.identification()),
                        proto: pl.ip_number.0,
                    };
                    let offset = usize::from(h.fragments_offset().value()) * 8;
                    if let Some(whole) =
                        self.add_fragment(key, offset, h.more_fragments(), pl.payload, at)?
                    {
                        return self.handle_transport(pl.ip_number, src, dst, &whole, at);
                    }
                    return Ok(());
                }
                self.handle_transport(pl.ip_number, src, dst, pl.payload, at)
            }
            Some(6) => {
                let p = Ipv6Slice::from_slice(ip).map_err(|e| FrameError::Ip(e.to_string()))?;
                let h = p.header();
                let (src, dst) = (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                );
                let pl = p.payload();
                if pl.fragmented {
                    let frag = p.extensions().clone().into_iter().find_map(|x| match x {
                        Ipv6ExtensionSlice::Fragment(f) => Some(f.to_header()),
                        _ => None,
                    });
                    let Some(frag) = frag else {
                        return Err(FrameError::Fragment(
                            "fragmented IPv6 without a fragment header",
                        ));
                    };
                    let key = FragKey {
                        src,
                        dst,
                        id: frag.identification,
                        proto: pl.ip_number.0,
                    };
                    let offset = usize::from(frag.fragment_offset.value()) * 8;
                    if let Some(whole) =
                        self.add_fragment(key, offset, frag.more_fragments, pl.payload, at)?
                    {
                        return self.handle_transport(pl.ip_number, src, dst, &whole, at);
                    }
                    return Ok(());
                }
                self.handle_transport(pl.ip_number, src, dst, pl.payload, at)
            }
            Some(_) => Err(FrameError::Ip("IP version neither 4 nor 6".into())),
            None => Err(FrameError::Truncated("IP")),
        }
    }

    fn add_fragment(
        &mut self,
        key: FragKey,
        offset: usize,
        more: bool,
        bytes: &[u8],
        at: SystemTime,
    ) -> Result<Option<Vec<u8>>, FrameError> {
        if !self.frags.contains_key(&key) && self.frags.len() >= self.limits.max_fragmented {
            // Full: the oldest incomplete datagram is the least likely to complete.
            if let Some(old) = self
                .frags
                .iter()
                .min_by_key(|(_, f)| f.first)
                .map(|(k, _)| k.clone())
            {
                self.frags.remove(&old);
            }
        }
        let max = self.limits.max_datagram;
        let buf = self.frags.entry(key.clone()).or_insert_with(|| FragBuf {
            data: Vec::new(),
            have: Vec::new(),
            total: None,
            first: at,
        });
        if let Err(e) = buf.add(offset, more, bytes, max) {
            self.frags.remove(&key);
            return Err(e);
        }
        if buf.complete() {
            return Ok(self.frags.remove(&key).map(|b| b.data));
        }
        Ok(None)
    }

    fn handle_transport(
        &mut self,
        proto: IpNumber,
        src: IpAddr,
        dst: IpAddr,
        bytes: &[u8],
        at: SystemTime,
    ) -> Result<(), FrameError> {
        if proto == IpNumber::UDP {
            let u = UdpSlice::from_slice(bytes).map_err(|e| FrameError::Udp(e.to_string()))?;
            let (sp, dp) = (u.source_port(), u.destination_port());
            let Some(app) = self.ports.app(Transport::Udp, sp, dp) else {
                return Ok(());
            };
            let data = u.payload();
            // A lone CRLF keep-alive (RFC 5626 §4.4.1) or an empty datagram is no message.
            if data.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(());
            }
            self.out.push_back(Payload {
                app,
                transport: Transport::Udp,
                src: SocketAddr::new(src, sp),
                dst: SocketAddr::new(dst, dp),
                data: data.to_vec(),
            });
            Ok(())
        } else if proto == IpNumber::TCP {
            let t = TcpSlice::from_slice(bytes).map_err(|e| FrameError::Tcp(e.to_string()))?;
            let (sp, dp) = (t.source_port(), t.destination_port());
            if self.ports.app(Transport::Tcp, sp, dp) != Some(App::Sip) {
                return Ok(());
            }
            let key = FlowKey {
                src: SocketAddr::new(src, sp),
                dst: SocketAddr::new(dst, dp),
            };
            self.handle_segment(key, &t, at)
        } else {
            Ok(())
        }
    }

    fn handle_segment(
        &mut self,
        key: FlowKey,
        t: &TcpSlice<'_>,
        at: SystemTime,
    ) -> Result<(), FrameError> {
        if t.rst() {
            self.flows.remove(&key);
            return Ok(());
        }
        let seq = t.sequence_number();
        let data = t.payload();
        if t.syn() {
            // A new connection on a reused 4-tuple starts afresh.
            self.flows.remove(&key);
        }
        if !self.flows.contains_key(&key) {
            if data.is_empty() && !t.syn() {
                return Ok(());
            }
            if self.flows.len() >= self.limits.max_flows {
                if let Some(old) = self
                    .flows
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| *k)
                {
                    self.flows.remove(&old);
                }
            }
            // Without the SYN (capture started mid-connection) the stream starts here.
            let next_seq = if t.syn() { seq.wrapping_add(1) } else { seq };
            self.flows.insert(
                key,
                Flow {
                    next_seq,
                    buf: Vec::new(),
                    framer: StreamFramer::new(),
                    ooo: Vec::new(),
                    last: at,
                },
            );
        }
        let limits = self.limits;
        let Some(flow) = self.flows.get_mut(&key) else {
            return Ok(());
        };
        flow.last = at;
        let data_seq = if t.syn() { seq.wrapping_add(1) } else { seq };
        let mut result = Ok(());
        if !data.is_empty() {
            // Sequence arithmetic modulo 2^32 (RFC 9293 §3.4): the signed distance.
            let rel = data_seq.wrapping_sub(flow.next_seq) as i32;
            if rel > 0 {
                if flow.ooo.len() < limits.max_out_of_order {
                    flow.ooo.push((data_seq, data.to_vec()));
                } else {
                    // A gap that never fills: give up on the buffered bytes and resync here.
                    flow.buf.clear();
                    flow.framer = StreamFramer::new();
                    flow.ooo.clear();
                    flow.next_seq = data_seq;
                    flow.append(data_seq, data);
                }
            } else {
                flow.append(data_seq, data);
            }
            // Held segments that the new bytes made contiguous.
            while let Some(i) = flow
                .ooo
                .iter()
                .position(|(s, _)| s.wrapping_sub(flow.next_seq) as i32 <= 0)
            {
                let (s, d) = flow.ooo.swap_remove(i);
                flow.append(s, &d);
            }
            result = flow.frame(&limits, key, &mut self.out);
        }
        if t.fin() {
            self.flows.remove(&key);
        }
        result
    }
}

impl Flow {
    /// Appends the part of a segment starting at `seq` that is new.
    fn append(&mut self, seq: u32, data: &[u8]) {
        let rel = seq.wrapping_sub(self.next_seq) as i32;
        if rel > 0 {
            return;
        }
        let skip = rel.unsigned_abs() as usize;
        if skip >= data.len() {
            return;
        }
        let new = &data[skip..];
        self.buf.extend_from_slice(new);
        self.next_seq = self.next_seq.wrapping_add(new.len() as u32);
    }

    fn frame(
        &mut self,
        limits: &DecoderLimits,
        key: FlowKey,
        out: &mut VecDeque<Payload>,
    ) -> Result<(), FrameError> {
        let sip_limits = Limits {
            max_message: limits.max_message,
            ..Limits::default()
        };
        loop {
            match self.framer.poll(&self.buf, &sip_limits) {
                Ok(Frame::KeepAlive(n)) => {
                    self.buf.drain(..n.min(self.buf.len()));
                }
                Ok(Frame::Message(n)) => {
                    let n = n.min(self.buf.len());
                    let data: Vec<u8> = self.buf.drain(..n).collect();
                    out.push_back(Payload {
                        app: App::Sip,
                        transport: Transport::Tcp,
                        src: key.src,
                        dst: key.dst,
                        data,
                    });
                }
                Ok(Frame::Incomplete) => return Ok(()),
                Err(e) => {
                    self.buf.clear();
                    self.framer = StreamFramer::new();
                    return Err(FrameError::Stream(e));
                }
            }
        }
    }
}

fn by_ethertype(ty: u16, rest: &[u8]) -> Option<&[u8]> {
    matches!(ty, 0x0800 | 0x86DD).then_some(rest)
}

/// Returns the IP packet inside a frame, `None` for a frame that carries no IP.
fn strip_link(link: LinkType, f: &[u8]) -> Result<Option<&[u8]>, FrameError> {
    let be16 = |b: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    };
    match link {
        LinkType::RawIp => Ok(Some(f)),
        LinkType::Ethernet => {
            let mut ty = be16(f, 12).ok_or(FrameError::Truncated("Ethernet"))?;
            let mut at = 14;
            // 802.1Q, 802.1ad and the old QinQ tags, at most three deep.
            for _ in 0..3 {
                if !matches!(ty, 0x8100 | 0x88A8 | 0x9100) {
                    break;
                }
                ty = be16(f, at + 2).ok_or(FrameError::Truncated("802.1Q"))?;
                at += 4;
            }
            Ok(by_ethertype(ty, f.get(at..).unwrap_or_default()))
        }
        LinkType::LinuxSll => {
            let ty = be16(f, 14).ok_or(FrameError::Truncated("Linux cooked"))?;
            Ok(by_ethertype(ty, f.get(16..).unwrap_or_default()))
        }
        LinkType::LinuxSll2 => {
            let ty = be16(f, 0).ok_or(FrameError::Truncated("Linux cooked v2"))?;
            if f.len() < 20 {
                return Err(FrameError::Truncated("Linux cooked v2"));
            }
            Ok(by_ethertype(ty, &f[20..]))
        }
        LinkType::Null | LinkType::Loop => {
            let b: [u8; 4] = f
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(FrameError::Truncated("loopback"))?;
            // The family is in the capturing host's order for NULL: accept both orders.
            let fam = if link == LinkType::Loop {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b).min(u32::from_be_bytes(b))
            };
            // AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD/OpenBSD), 28 (FreeBSD),
            // 30 (macOS).
            Ok(matches!(fam, 2 | 24 | 28 | 30).then(|| &f[4..]))
        }
    }
}

/// Test and fixture helpers that build frames (also used by the pcap fixture generator
/// and the benchmark): Ethernet + IPv4/IPv6 + UDP/TCP with correct lengths and checksums.
pub mod build {
    use super::*;
    use etherparse::PacketBuilder;

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    /// An Ethernet frame with a UDP datagram from `src` to `dst` (both of one family).
    pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B);
        let mut out = Vec::new();
        match (src.ip(), dst.ip()) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let b = b
                    .ipv6(s.octets(), d.octets(), 64)
                    .udp(src.port(), dst.port());
                let _ = b.write(&mut out, payload);
            }
            (s, d) => {
                let b = b
                    .ipv4(v4(s).octets(), v4(d).octets(), 64)
                    .udp(src.port(), dst.port());
                let _ = b.write(&mut out, payload);
            }
        }
        out
    }

    /// An Ethernet frame with a TCP segment (flags PSH|ACK, or SYN when `syn`).
    pub fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(v4(src.ip()).octets(), v4(dst.ip()).octets(), 64)
            .tcp(src.port(), dst.port(), seq, 65535);
        let b = if syn { b.syn() } else { b.psh().ack(1) };
        let mut out = Vec::new();
        let _ = b.write(&mut out, payload);
        out
    }

    /// IPv4 fragments (as Ethernet frames) of one UDP datagram, each fragment's payload
    /// at most `mtu_payload` bytes (rounded down to a multiple of 8).
    pub fn udp_fragments(
        src: SocketAddr,
        dst: SocketAddr,
        id: u16,
        payload: &[u8],
        mtu_payload: usize,
    ) -> Vec<Vec<u8>> {
        // The whole datagram once, to take its UDP header (with checksum) from it.
        let whole = udp(src, dst, payload);
        let udp_bytes = &whole[14 + 20..];
        let step = (mtu_payload / 8).max(1) * 8;
        let mut frames = Vec::new();
        let mut off = 0;
        while off < udp_bytes.len() {
            let end = (off + step).min(udp_bytes.len());
            let more = end < udp_bytes.len();
            let mut h = etherparse::Ipv4Header::new(
                (end - off) as u16,
                64,
                IpNumber::UDP,
                v4(src.ip()).octets(),
                v4(dst.ip()).octets(),
            )
            .unwrap_or_default();
            h.identification = id;
            h.more_fragments = more;
            h.fragment_offset = etherparse::IpFragOffset::try_new((off / 8) as u16)
                .unwrap_or(etherparse::IpFragOffset::ZERO);
            h.header_checksum = h.calc_header_checksum();
            let mut f = Vec::with_capacity(14 + 20 + end - off);
            f.extend_from_slice(&MAC_B);
            f.extend_from_slice(&MAC_A);
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let _ = h.write(&mut f);
            f.extend_from_slice(&udp_bytes[off..end]);
            frames.push(f);
            off = end;
        }
        frames
    }

    /// IPv6 fragments (as Ethernet frames, fragment header RFC 8200 §4.5) of one UDP
    /// datagram, each fragment's payload at most `mtu_payload` bytes (multiple of 8).
    pub fn udp6_fragments(
        src: SocketAddr,
        dst: SocketAddr,
        id: u32,
        payload: &[u8],
        mtu_payload: usize,
    ) -> Vec<Vec<u8>> {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
            return Vec::new();
        };
        let whole = udp(src, dst, payload);
        let udp_bytes = &whole[14 + 40..];
        let step = (mtu_payload / 8).max(1) * 8;
        let mut frames = Vec::new();
        let mut off = 0;
        while off < udp_bytes.len() {
            let end = (off + step).min(udp_bytes.len());
            let ip = etherparse::Ipv6Header {
                payload_length: (8 + end - off) as u16,
                next_header: IpNumber::IPV6_FRAGMENTATION_HEADER,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
                ..Default::default()
            };
            let frag = etherparse::Ipv6FragmentHeader::new(
                IpNumber::UDP,
                etherparse::IpFragOffset::try_new((off / 8) as u16)
                    .unwrap_or(etherparse::IpFragOffset::ZERO),
                end < udp_bytes.len(),
                id,
            );
            let mut f = Vec::with_capacity(14 + 48 + end - off);
            f.extend_from_slice(&MAC_B);
            f.extend_from_slice(&MAC_A);
            f.extend_from_slice(&0x86DDu16.to_be_bytes());
            let _ = ip.write(&mut f);
            let _ = frag.write(&mut f);
            f.extend_from_slice(&udp_bytes[off..end]);
            frames.push(f);
            off = end;
        }
        frames
    }

    fn v4(ip: IpAddr) -> Ipv4Addr {
        match ip {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn dec() -> Decoder {
        Decoder::new(
            Ports {
                sip: vec![5060],
                mgcp: vec![2427, 2727],
            },
            DecoderLimits::default(),
        )
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn udp_ipv4_and_ipv6_on_sip_port_pass_others_do_not() {
        let mut d = dec();
        let f = udp(sa("10.0.0.1:5060"), sa("10.0.0.2:5080"), MSG);
        d.handle_frame(LinkType::Ethernet, &f, t0()).unwrap();
        let p = d.poll_payload().unwrap();
        assert_eq!(
            (p.app, p.transport, p.data.as_slice()),
            (App::Sip, Transport::Udp, MSG)
        );
        assert_eq!(p.src, sa("10.0.0.1:5060"));
        let f = udp(sa("[2001:db8::1]:40000"), sa("[2001:db8::2]:5060"), MSG);
        d.handle_frame(LinkType::Ethernet, &f, t0()).unwrap();
        assert_eq!(d.poll_payload().unwrap().dst, sa("[2001:db8::2]:5060"));
        let f = udp(
            sa("10.0.0.1:4000"),
            sa("10.0.0.2:2427"),
            b"RQNT 1 a@b MGCP 1.0\n",
        );
        d.handle_frame(LinkType::Ethernet, &f, t0()).unwrap();
        assert_eq!(d.poll_payload().unwrap().app, App::Mgcp);
        let f = udp(sa("10.0.0.1:4000"), sa("10.0.0.2:53"), b"dns");
        d.handle_frame(LinkType::Ethernet, &f, t0()).unwrap();
        assert!(d.poll_payload().is_none());
    }

    #[test]
    fn vlan_sll_sll2_raw_and_loopback_link_layers() {
        let eth = udp(sa("10.0.0.1:5060"), sa("10.0.0.2:5060"), MSG);
        let ip = &eth[14..];
        let mut vlan = eth[..12].to_vec();
        vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        vlan.extend_from_slice(&eth[12..]);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(ip);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(ip);
        let mut lo = 2u32.to_be_bytes().to_vec();
        lo.extend_from_slice(ip);
        for (link, f) in [
            (LinkType::Ethernet, vlan),
            (LinkType::LinuxSll, sll),
            (LinkType::LinuxSll2, sll2),
            (LinkType::RawIp, ip.to_vec()),
            (LinkType::Null, null),
            (LinkType::Loop, lo),
        ] {
            let mut d = dec();
            d.handle_frame(link, &f, t0()).unwrap();
            assert_eq!(
                d.poll_payload().map(|p| p.data),
                Some(MSG.to_vec()),
                "{link:?}"
            );
        }
    }

    #[test]
    fn ipv4_fragments_reassemble_in_any_order_and_bounded() {
        let big: Vec<u8> = [MSG, &[b'x'; 1500][..]].concat();
        let frags = udp_fragments(sa("10.0.0.1:5060"), sa("10.0.0.2:5060"), 7, &big, 600);
        assert!(frags.len() >= 3);
        let mut d = dec();
        for f in frags.iter().rev() {
            d.handle_frame(LinkType::Ethernet, f, t0()).unwrap();
        }
        assert_eq!(d.poll_payload().unwrap().data, big);
        assert_eq!(d.fragments_in_flight(), 0);
        // Incomplete datagrams beyond the bound: the oldest are dropped, memory bounded.
        let mut d = Decoder::new(
            Ports {
                sip: vec![5060],
                mgcp: vec![],
            },
            DecoderLimits {
                max_fragmented: 4,
                ..DecoderLimits::default()
            },
        );
        for id in 0..20u16 {
            let f = udp_fragments(sa("10.0.0.1:5060"), sa("10.0.0.2:5060"), id, &big, 600);
            d.handle_frame(LinkType::Ethernet, &f[0], t0()).unwrap();
        }
        assert_eq!(d.fragments_in_flight(), 4);
        // And they age out.
        d.handle_frame(LinkType::Ethernet, &[0; 10], t0() + Duration::from_secs(31))
            .unwrap_err();
        assert_eq!(d.fragments_in_flight(), 0);
    }

    #[test]
    fn ipv6_fragments_reassemble() {
        let big: Vec<u8> = [MSG, &[b'y'; 2000][..]].concat();
        let frags = udp6_fragments(
            sa("[2001:db8::1]:5060"),
            sa("[2001:db8::2]:5060"),
            77,
            &big,
            1000,
        );
        assert_eq!(frags.len(), 3);
        let mut d = dec();
        for i in [2, 0, 1] {
            d.handle_frame(LinkType::Ethernet, &frags[i], t0()).unwrap();
        }
        let p = d.poll_payload().unwrap();
        assert_eq!((p.data, p.src), (big, sa("[2001:db8::1]:5060")));
    }

    #[test]
    fn oversized_fragment_is_an_error() {
        let mut d = dec();
        let big = vec![b'x'; 1200];
        let mut frags = udp_fragments(sa("10.0.0.1:5060"), sa("10.0.0.2:5060"), 9, &big, 600);
        // Move the last fragment's offset near 64 KiB: 8191 * 8 + 600 > 65535.
        let f = frags.last_mut().unwrap();
        f[14 + 6] = 0x1f;
        f[14 + 7] = 0xff;
        let err = d.handle_frame(LinkType::Ethernet, f, t0()).unwrap_err();
        assert!(matches!(err, FrameError::Fragment(_)), "{err}");
    }

    #[test]
    fn tcp_split_out_of_order_retransmitted_and_pipelined() {
        let (c, s) = (sa("10.0.0.1:40000"), sa("10.0.0.2:5060"));
        let two = [MSG, MSG].concat();
        let mut d = dec();
        d.handle_frame(LinkType::Ethernet, &tcp(c, s, 999, true, &[]), t0())
            .unwrap();
        let seq = 1000u32;
        let parts = [&two[..10], &two[10..40], &two[40..]];
        // second part first (held), then the first, then the first again (retransmission)
        d.handle_frame(
            LinkType::Ethernet,
            &tcp(c, s, seq + 10, false, parts[1]),
            t0(),
        )
        .unwrap();
        assert!(d.poll_payload().is_none());
        d.handle_frame(LinkType::Ethernet, &tcp(c, s, seq, false, parts[0]), t0())
            .unwrap();
        d.handle_frame(LinkType::Ethernet, &tcp(c, s, seq, false, parts[0]), t0())
            .unwrap();
        assert!(d.poll_payload().is_none());
        d.handle_frame(
            LinkType::Ethernet,
            &tcp(c, s, seq + 40, false, parts[2]),
            t0(),
        )
        .unwrap();
        assert_eq!(d.poll_payload().unwrap().data, MSG);
        let p = d.poll_payload().unwrap();
        assert_eq!((p.data.as_slice(), p.transport), (MSG, Transport::Tcp));
        assert!(d.poll_payload().is_none());
        // A message without Content-Length cannot be framed: typed error, buffer dropped.
        let bad = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n";
        let e = d
            .handle_frame(
                LinkType::Ethernet,
                &tcp(c, s, seq + two.len() as u32, false, bad),
                t0(),
            )
            .unwrap_err();
        assert!(matches!(e, FrameError::Stream(_)), "{e}");
    }

    #[test]
    fn tcp_flows_are_bounded_and_expire() {
        let mut d = Decoder::new(
            Ports {
                sip: vec![5060],
                mgcp: vec![],
            },
            DecoderLimits {
                max_flows: 8,
                ..DecoderLimits::default()
            },
        );
        for port in 0..50u16 {
            let c = SocketAddr::new("10.0.0.1".parse().unwrap(), 30000 + port);
            let f = tcp(
                c,
                sa("10.0.0.2:5060"),
                1,
                false,
                b"INVITE sip:x SIP/2.0\r\n",
            );
            d.handle_frame(LinkType::Ethernet, &f, t0()).unwrap();
        }
        assert_eq!(d.flows(), 8);
        let f = udp(sa("10.0.0.1:1"), sa("10.0.0.2:2"), b"x");
        d.handle_frame(LinkType::Ethernet, &f, t0() + Duration::from_secs(301))
            .unwrap();
        assert_eq!(d.flows(), 0);
    }

    #[test]
    fn garbage_never_panics() {
        let mut d = dec();
        let eth = udp(sa("10.0.0.1:5060"), sa("10.0.0.2:5060"), MSG);
        for link in [
            LinkType::Ethernet,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
            LinkType::RawIp,
            LinkType::Null,
            LinkType::Loop,
        ] {
            for n in 0..eth.len() {
                let _ = d.handle_frame(link, &eth[..n], t0());
                let mut flipped = eth.clone();
                flipped[n] ^= 0xa5;
                let _ = d.handle_frame(link, &flipped, t0());
            }
        }
    }
}
