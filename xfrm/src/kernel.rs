//! Kernel backend: XFRM netlink (the `ip xfrm` interface) on `netlink-packet-xfrm`.
//!
//! Each SA set becomes four transport-mode ESP SAs and four policies (selector protocol 0 so
//! UDP and TCP share them, exact ports, /32 or /128), exactly as `ip xfrm state add ... mode
//! transport replay-window 64 auth-trunc ... 96 enc ... sel ...` and `ip xfrm policy add ...
//! tmpl ... proto esp spi ... mode transport` would create them (tests compare the bytes).
//! Our state is tagged ([`Tag`]) so that listing and flushing never touch anybody else's.
//!
//! The socket is a plain blocking `NETLINK_XFRM` socket: each request waits for its ACK (a few
//! microseconds), which keeps the backend usable from any thread, and bound to the network
//! namespace of the thread that created it: create the backend inside the netns you want.
//! No kernel lifetimes are set: the owner of the set deletes it (see [`crate::SaSet`]).
//!
//! Why not `xfrmnetlink`'s request builders and `netlink-proto`'s connection: we need the
//! selector `user` field as our tag, iproute2's exact attribute set for byte-level parity, the
//! kernel's extended-ack text (netlink-packet-core's `ErrorMessage` keeps only code and
//! header, and nothing sets NETLINK_EXT_ACK), and a socket usable from any thread without an
//! async runtime tied to the namespace it was spawned in. The typed messages still come from
//! `netlink-packet-xfrm`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_xfrm::{
    policy, state, Address, Alg, AlgAuth, Id, LifetimeConfig, Mark, ReplayEsn, Selector,
    UserPolicyId, UserPolicyInfo, UserSaId, UserSaInfo, UserTemplate, XfrmAttrs, XfrmMessage,
    XFRM_ALG_AUTH_NAME_LEN, XFRM_ALG_NAME_LEN,
};

use sha1::{Digest, Sha1};

use crate::claim::TagClaim;
use crate::error::XfrmError;
use crate::model::{Direction, SaDesc, SaSet, Side};

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const IPPROTO_ESP: u8 = 50;
const NETLINK_XFRM: i32 = 6;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLM_F_CAPPED: u16 = 0x100;
const NLMSGERR_ATTR_MSG: u16 = 1;
const SOL_NETLINK: i32 = 270;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;
/// Replay window the kernel SAs get (RFC 4303 §3.4.3 recommends at least 32; 64 as ours).
pub const KERNEL_REPLAY_WINDOW: u32 = 64;

/// How our XFRM objects are recognised among everybody else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    /// The selector's `user` field (a uid-sized number the kernel stores but never matches on):
    /// invisible to traffic, the default. (Kamailio's `xfrm_user_selector` uses the same field.)
    /// The kernel compares whole selectors, this field included, when it checks for
    /// duplicates: a foreign policy with the same addresses and ports does not make ours fail
    /// with EEXIST, and both then exist (the older one matches first at equal priority).
    SelectorUser(u32),
    /// An XFRMA_MARK on SAs and policies. Traffic then needs the same skb mark to match,
    /// so only use it with fwmark rules in place.
    Mark {
        /// Mark value.
        value: u32,
        /// Mark mask.
        mask: u32,
    },
}

impl Default for Tag {
    fn default() -> Self {
        // "IMS" in ASCII: recognisable in `ip xfrm state` output as user 0x494d53.
        Tag::SelectorUser(0x0049_4d53)
    }
}

/// The high byte of every [`Tag::for_instance`] tag ('I'): our per-instance tags read as
/// `0x49……` in `ip xfrm` output, apart from [`Tag::default`] (`0x00494d53`).
pub const INSTANCE_TAG_PREFIX: u32 = 0x4900_0000;

impl Tag {
    /// The tag of one running instance of a `role` ("pcscf", "ue", …), derived from what
    /// identifies it on this host: its listen address(es), in order.
    ///
    /// Stable across restarts and builds (SHA-1 of a fixed encoding, never `std`'s `Hash`),
    /// so a restarted instance finds and flushes its own leftovers; distinct for different
    /// roles or addresses, so two instances in one network namespace never flush or delete
    /// each other's SAs and policies (that also holds for anybody else's state: listing,
    /// flushing and deleting only ever touch objects carrying exactly this tag).
    ///
    /// Encoding: SHA-1 over `"imslab-xfrm-tag\0"`, the role, a 0 byte, then per address its
    /// family (4 or 6), its octets and its port (big-endian); the tag is
    /// [`INSTANCE_TAG_PREFIX`] plus the digest's first 24 bits: two different
    /// instances collide with probability 2⁻²⁴ per pair (about 3·10⁻⁶ for ten instances in
    /// one namespace). Two processes started with the same identity would share a tag, but
    /// they cannot both bind their listen address anyway.
    pub fn for_instance(role: &str, identity: &[SocketAddr]) -> Tag {
        Tag::digest(role, |h| {
            for a in identity {
                match a.ip() {
                    IpAddr::V4(v4) => {
                        h.update([4]);
                        h.update(v4.octets());
                    }
                    IpAddr::V6(v6) => {
                        h.update([6]);
                        h.update(v6.octets());
                    }
                }
                h.update(a.port().to_be_bytes());
            }
        })
    }

    /// A tag for an instance without a stable identity (e.g. one listening on port 0):
    /// unique among the live processes of this host (process id) and the instances of this
    /// process (a counter). A later run gets another tag and so cannot flush this run's
    /// leftovers: such an instance must stop cleanly (its stop flushes its state).
    pub fn for_this_process(role: &str) -> Tag {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Tag::digest(role, |h| {
            // 'P' never starts an address of `for_instance` (4 or 6).
            h.update([b'P']);
            h.update(std::process::id().to_be_bytes());
            h.update(n.to_be_bytes());
        })
    }

    fn digest(role: &str, identity: impl FnOnce(&mut Sha1)) -> Tag {
        let mut h = Sha1::new();
        h.update(b"imslab-xfrm-tag\0");
        h.update(role.as_bytes());
        h.update([0]);
        identity(&mut h);
        let d = h.finalize();
        Tag::SelectorUser(INSTANCE_TAG_PREFIX | u32::from_be_bytes([0, d[0], d[1], d[2]]))
    }

    /// The selector `user` value written into our objects (0 for [`Tag::Mark`]).
    pub fn selector_user(self) -> u32 {
        match self {
            Tag::SelectorUser(u) => u,
            Tag::Mark { .. } => 0,
        }
    }

    fn mark_nla(self) -> Option<XfrmAttrs> {
        match self {
            Tag::SelectorUser(_) => None,
            Tag::Mark { value, mask } => Some(XfrmAttrs::Mark(Mark { value, mask })),
        }
    }

    fn matches(self, sel: &Selector, nlas: &[XfrmAttrs]) -> bool {
        match self {
            Tag::SelectorUser(u) => sel.user == u,
            Tag::Mark { value, mask } => nlas
                .iter()
                .any(|n| matches!(n, XfrmAttrs::Mark(m) if m.value == value && m.mask == mask)),
        }
    }
}

impl fmt::Display for Tag {
    /// As `ip xfrm` shows it: the selector's user id or the mark.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::SelectorUser(u) => write!(f, "user 0x{u:08x} ({u})"),
            Tag::Mark { value, mask } => write!(f, "mark 0x{value:x}/0x{mask:x}"),
        }
    }
}

/// Builders of the netlink requests (pure: bytes out, sequence number and port id 0).
pub mod msg {
    use super::*;

    fn family(a: IpAddr) -> u16 {
        if a.is_ipv4() {
            AF_INET
        } else {
            AF_INET6
        }
    }

    fn prefix(a: IpAddr) -> u8 {
        if a.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn name<const N: usize>(s: &str) -> [u8; N] {
        let mut b = [0u8; N];
        let n = s.len().min(N - 1);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        b
    }

    /// The selector shared by an SA and its policy: protocol any, exact ports, host prefixes.
    pub fn selector(sa: &SaDesc, tag: Tag) -> Selector {
        Selector {
            daddr: Address::from_ip(&sa.dst.ip()),
            saddr: Address::from_ip(&sa.src.ip()),
            dport: sa.dst.port(),
            dport_mask: 0xffff,
            sport: sa.src.port(),
            sport_mask: 0xffff,
            family: family(sa.src.ip()),
            prefixlen_d: prefix(sa.dst.ip()),
            prefixlen_s: prefix(sa.src.ip()),
            proto: 0,
            ifindex: 0,
            user: tag.selector_user(),
        }
    }

    fn frame(message_type: u16, flags: u16, inner: XfrmMessage) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.message_type = message_type;
        header.flags = flags;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    /// XFRM_MSG_NEWSA for one SA of a set (what `ip xfrm state add` sends).
    pub fn new_sa(set: &SaSet, sa: &SaDesc, tag: Tag) -> Vec<u8> {
        let info = UserSaInfo {
            selector: selector(sa, tag),
            id: Id {
                daddr: Address::from_ip(&sa.dst.ip()),
                spi: sa.spi,
                proto: IPPROTO_ESP,
            },
            saddr: Address::from_ip(&sa.src.ip()),
            lifetime_cfg: LifetimeConfig::default(),
            family: family(sa.src.ip()),
            mode: 0, // XFRM_MODE_TRANSPORT
            // Windows > 32 go in XFRMA_REPLAY_ESN_VAL, as iproute2 does.
            replay_window: 0,
            ..Default::default()
        };
        let mut nlas = vec![
            XfrmAttrs::AuthenticationAlgTrunc(AlgAuth {
                alg_name: name::<XFRM_ALG_AUTH_NAME_LEN>(set.integrity.kernel_name()),
                alg_key_len: (set.keys.auth.len() * 8) as u32,
                alg_trunc_len: (set.integrity.icv_len() * 8) as u32,
                alg_key: set.keys.auth.clone(),
            }),
            XfrmAttrs::EncryptionAlg(Alg {
                alg_name: name::<XFRM_ALG_NAME_LEN>(set.encryption.kernel_name()),
                alg_key_len: (set.keys.enc.len() * 8) as u32,
                alg_key: set.keys.enc.clone(),
            }),
            XfrmAttrs::ReplayStateEsn(ReplayEsn {
                bmp_len: KERNEL_REPLAY_WINDOW.div_ceil(32),
                replay_window: KERNEL_REPLAY_WINDOW,
                ..Default::default()
            }),
        ];
        nlas.extend(tag.mark_nla());
        frame(
            netlink_packet_xfrm::XFRM_MSG_NEWSA,
            NLM_F_REQUEST | NLM_F_ACK,
            XfrmMessage::AddSa(state::ModifyMessage {
                user_sa_info: info,
                nlas,
            }),
        )
    }

    /// XFRM_MSG_NEWPOLICY for one SA of a set, direction as seen by `side`.
    pub fn new_policy(sa: &SaDesc, tag: Tag) -> Vec<u8> {
        let fam = family(sa.src.ip());
        let info = UserPolicyInfo {
            selector: selector(sa, tag),
            lifetime_cfg: LifetimeConfig::default(),
            direction: dir(sa.dir),
            action: 0, // XFRM_POLICY_ALLOW
            ..Default::default()
        };
        let tmpl = UserTemplate {
            id: Id {
                daddr: Address::from_ip(&sa.dst.ip()),
                spi: sa.spi,
                proto: IPPROTO_ESP,
            },
            family: fam,
            saddr: Address::from_ip(&sa.src.ip()),
            reqid: 0,
            mode: 0,
            share: 0,
            optional: 0,
            aalgos: u32::MAX,
            ealgos: u32::MAX,
            calgos: u32::MAX,
        };
        let mut nlas = vec![XfrmAttrs::Template(vec![tmpl])];
        nlas.extend(tag.mark_nla());
        frame(
            netlink_packet_xfrm::XFRM_MSG_NEWPOLICY,
            NLM_F_REQUEST | NLM_F_ACK,
            XfrmMessage::AddPolicy(policy::ModifyMessage {
                user_policy_info: info,
                nlas,
            }),
        )
    }

    /// Kernel policy direction.
    pub fn dir(d: Direction) -> u8 {
        match d {
            Direction::In => 0,
            Direction::Out => 1,
        }
    }

    /// XFRM_MSG_DELSA by (daddr, spi, esp).
    pub fn del_sa(daddr: IpAddr, spi: u32, mark: Option<XfrmAttrs>) -> Vec<u8> {
        frame(
            netlink_packet_xfrm::XFRM_MSG_DELSA,
            NLM_F_REQUEST | NLM_F_ACK,
            XfrmMessage::DeleteSa(state::DelGetMessage {
                user_sa_id: UserSaId {
                    daddr: Address::from_ip(&daddr),
                    spi,
                    family: family(daddr),
                    proto: IPPROTO_ESP,
                },
                nlas: mark.into_iter().collect(),
            }),
        )
    }

    /// XFRM_MSG_DELPOLICY by selector and direction.
    pub fn del_policy(selector: Selector, direction: u8, mark: Option<XfrmAttrs>) -> Vec<u8> {
        frame(
            netlink_packet_xfrm::XFRM_MSG_DELPOLICY,
            NLM_F_REQUEST | NLM_F_ACK,
            XfrmMessage::DeletePolicy(policy::DelGetMessage {
                user_policy_id: UserPolicyId {
                    selector,
                    index: 0,
                    direction,
                },
                nlas: mark.into_iter().collect(),
            }),
        )
    }

    /// Dump request for all SAs.
    pub fn dump_sa() -> Vec<u8> {
        frame(
            netlink_packet_xfrm::XFRM_MSG_GETSA,
            NLM_F_REQUEST | NLM_F_DUMP,
            XfrmMessage::GetDumpSa(state::GetDumpMessage { nlas: vec![] }),
        )
    }

    /// Dump request for all policies (the payload is an empty xfrm_userpolicy_id).
    pub fn dump_policy() -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.message_type = netlink_packet_xfrm::XFRM_MSG_GETPOLICY;
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut buf = vec![0u8; 16];
        buf[0..4].copy_from_slice(&16u32.to_ne_bytes());
        buf[4..6].copy_from_slice(&header.message_type.to_ne_bytes());
        buf[6..8].copy_from_slice(&header.flags.to_ne_bytes());
        buf
    }
}

/// One of our SAs as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSa {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// SPI.
    pub spi: u32,
    /// Selector source port.
    pub sport: u16,
    /// Selector destination port.
    pub dport: u16,
}

/// One of our policies as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPolicy {
    /// Selector source address.
    pub src: IpAddr,
    /// Selector destination address.
    pub dst: IpAddr,
    /// Selector source port.
    pub sport: u16,
    /// Selector destination port.
    pub dport: u16,
    /// Direction.
    pub dir: Direction,
    /// SPI of the template.
    pub spi: Option<u32>,
    selector: Selector,
}

/// What [`KernelBackend::list`] found with our tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    /// Our SAs.
    pub sas: Vec<KernelSa>,
    /// Our policies.
    pub policies: Vec<KernelPolicy>,
}

fn ip_of(a: &Address, fam: u16) -> IpAddr {
    if fam == AF_INET6 {
        IpAddr::V6(a.to_ipv6())
    } else {
        IpAddr::V4(a.to_ipv4())
    }
}

/// A blocking NETLINK_XFRM socket with extended acks.
pub struct NetlinkSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn setsockopt_int(fd: i32, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: fd is a valid socket; the option value is a live i32 of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One netlink message of a datagram: (type, flags, seq, whole message).
pub type RawMessage<'a> = (u16, u16, u32, &'a [u8]);

/// Walks the netlink messages of one datagram (checked lengths, typed error).
pub fn parse_messages(buf: &[u8]) -> Result<Vec<RawMessage<'_>>, XfrmError> {
    messages(buf)
}

fn messages(buf: &[u8]) -> Result<Vec<RawMessage<'_>>, XfrmError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let h = &buf[off..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < 16 || len > h.len() {
            return Err(XfrmError::Decode(format!("bad netlink length {len}")));
        }
        let ty = u16::from_ne_bytes([h[4], h[5]]);
        let flags = u16::from_ne_bytes([h[6], h[7]]);
        let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        out.push((ty, flags, seq, &h[..len]));
        off += len.div_ceil(4) * 4;
    }
    Ok(out)
}

/// Parses an NLMSG_ERROR: (positive errno or 0, extended ack message).
pub fn parse_error(msg: &[u8]) -> Result<(i32, Option<String>), XfrmError> {
    let short = || XfrmError::Decode("short NLMSG_ERROR".into());
    if msg.len() < 20 {
        return Err(short());
    }
    let flags = u16::from_ne_bytes([msg[6], msg[7]]);
    let e = msg.get(16..20).ok_or_else(short)?;
    let errno = i32::from_ne_bytes([e[0], e[1], e[2], e[3]])
        .checked_neg()
        .ok_or_else(|| XfrmError::Decode("errno out of range".into()))?;
    let mut text = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let orig = msg.get(20..36).ok_or_else(short)?;
        let orig_len = u32::from_ne_bytes([orig[0], orig[1], orig[2], orig[3]]) as usize;
        let mut off = if flags & NLM_F_CAPPED != 0 {
            36
        } else {
            20 + orig_len.div_ceil(4) * 4
        };
        while off + 4 <= msg.len() {
            let len = usize::from(u16::from_ne_bytes([msg[off], msg[off + 1]]));
            let ty = u16::from_ne_bytes([msg[off + 2], msg[off + 3]]);
            if len < 4 || off + len > msg.len() {
                break;
            }
            if ty == NLMSGERR_ATTR_MSG {
                let v = &msg[off + 4..off + len];
                let v = v.split(|b| *b == 0).next().unwrap_or(v);
                text = Some(String::from_utf8_lossy(v).into_owned());
            }
            off += len.div_ceil(4) * 4;
        }
    }
    Ok((errno, text))
}

impl NetlinkSocket {
    /// Opens a NETLINK_XFRM socket in the calling thread's network namespace.
    pub fn open() -> io::Result<NetlinkSocket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_XFRM,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        // Best effort: older kernels lack these, and then errors simply have no text.
        let _ = setsockopt_int(raw, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        let _ = setsockopt_int(raw, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: valid fd, tv is a live timeval of the given size.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        // SAFETY: zeroed sockaddr_nl is a valid "any" address; bind checks the rest.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sa is a live sockaddr_nl of the given size.
        let r = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NetlinkSocket {
            fd,
            seq: 1,
            buf: vec![0u8; 1 << 16],
        })
    }

    fn send(&mut self, mut msg: Vec<u8>) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
        // SAFETY: zeroed sockaddr_nl = the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and sa are live for the call with the given lengths.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(seq)
    }

    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // SAFETY: buf is live and writable for its length.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends a request with NLM_F_ACK and checks its ACK.
    pub fn request(&mut self, msg: Vec<u8>, op: impl FnOnce() -> String) -> Result<(), XfrmError> {
        let seq = self.send(msg)?;
        loop {
            let n = self.recv()?;
            let data = self.buf[..n].to_vec();
            for (ty, _, s, m) in messages(&data)? {
                if s != seq || ty != NLMSG_ERROR {
                    continue;
                }
                let (errno, message) = parse_error(m)?;
                return if errno == 0 {
                    Ok(())
                } else {
                    Err(XfrmError::Netlink {
                        op: op(),
                        errno,
                        message,
                    })
                };
            }
        }
    }

    /// Sends a dump request and returns every message of the answer.
    pub fn dump(&mut self, msg: Vec<u8>) -> Result<Vec<Vec<u8>>, XfrmError> {
        let seq = self.send(msg)?;
        let mut out = Vec::new();
        loop {
            let n = self.recv()?;
            let data = self.buf[..n].to_vec();
            for (ty, _, s, m) in messages(&data)? {
                if s != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let (errno, message) = parse_error(m)?;
                        return Err(XfrmError::Netlink {
                            op: "dump".into(),
                            errno,
                            message,
                        });
                    }
                    _ => out.push(m.to_vec()),
                }
            }
        }
    }
}

/// Handle of an installed SA set.
pub type SetId = u64;

struct Installed {
    set: SaSet,
    side: Side,
    sas: bool,
}

/// The kernel XFRM backend.
pub struct KernelBackend {
    sock: Mutex<NetlinkSocket>,
    tag: Tag,
    sets: Mutex<(SetId, HashMap<SetId, Installed>)>,
    _claim: Option<Arc<TagClaim>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KernelBackend {
    /// Opens the backend in the calling thread's network namespace.
    pub fn new(tag: Tag) -> Result<KernelBackend, XfrmError> {
        Ok(KernelBackend {
            sock: Mutex::new(NetlinkSocket::open()?),
            tag,
            sets: Mutex::new((1, HashMap::new())),
            _claim: None,
        })
    }

    /// Opens the backend as the owner of `tag` in this network namespace ([`crate::claim`]):
    /// fails with [`XfrmError::TagInUse`] while another process owns it, so that flushing
    /// our leftovers can never hit a live process's state. [`crate::select`] uses this.
    pub fn owner(tag: Tag) -> Result<KernelBackend, XfrmError> {
        let claim = crate::claim::claim(tag)?;
        Ok(KernelBackend {
            _claim: Some(claim),
            ..KernelBackend::new(tag)?
        })
    }

    /// The tag of our state.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    fn add_sa(&self, set: &SaSet, sa: &SaDesc) -> Result<(), XfrmError> {
        let r = lock(&self.sock).request(msg::new_sa(set, sa, self.tag), || {
            format!("NEWSA {} -> {} spi 0x{:08x}", sa.src, sa.dst, sa.spi)
        });
        match r {
            Err(XfrmError::Netlink { errno, message, .. }) if errno == libc::EPROTONOSUPPORT => {
                tracing::debug!("NEWSA: EPROTONOSUPPORT ({message:?}): no ESP in this kernel");
                Err(XfrmError::KernelLacksEsp)
            }
            r => r,
        }
    }

    fn del_sa(&self, sa: &SaDesc) -> Result<(), XfrmError> {
        lock(&self.sock).request(
            msg::del_sa(sa.dst.ip(), sa.spi, self.tag.mark_nla()),
            || format!("DELSA {} spi 0x{:08x}", sa.dst, sa.spi),
        )
    }

    fn add_policy(&self, sa: &SaDesc) -> Result<(), XfrmError> {
        lock(&self.sock).request(msg::new_policy(sa, self.tag), || {
            format!("NEWPOLICY {} -> {} dir {:?}", sa.src, sa.dst, sa.dir)
        })
    }

    fn del_policy(&self, sa: &SaDesc) -> Result<(), XfrmError> {
        lock(&self.sock).request(
            msg::del_policy(
                msg::selector(sa, self.tag),
                msg::dir(sa.dir),
                self.tag.mark_nla(),
            ),
            || format!("DELPOLICY {} -> {} dir {:?}", sa.src, sa.dst, sa.dir),
        )
    }

    /// Installs the four SAs, then the four policies; any failure removes what this call added
    /// (SAs before policies so no policy ever points at a missing SA).
    pub fn install(&self, set: &SaSet, side: Side) -> Result<SetId, XfrmError> {
        self.install_inner(set, side, true)
    }

    /// Installs only the four policies (hosts without ESP; tests and benches of the policy
    /// path). Deleting the returned set deletes only the policies.
    pub fn install_policies_only(&self, set: &SaSet, side: Side) -> Result<SetId, XfrmError> {
        self.install_inner(set, side, false)
    }

    fn install_inner(&self, set: &SaSet, side: Side, with_sas: bool) -> Result<SetId, XfrmError> {
        let sas = set.sas(side);
        if with_sas {
            for (i, sa) in sas.iter().enumerate() {
                if let Err(e) = self.add_sa(set, sa) {
                    for done in &sas[..i] {
                        let _ = self.del_sa(done);
                    }
                    return Err(e);
                }
            }
        }
        for (i, sa) in sas.iter().enumerate() {
            if let Err(e) = self.add_policy(sa) {
                for done in &sas[..i] {
                    let _ = self.del_policy(done);
                }
                if with_sas {
                    for done in &sas {
                        let _ = self.del_sa(done);
                    }
                }
                return Err(e);
            }
        }
        let mut g = lock(&self.sets);
        let id = g.0;
        g.0 += 1;
        g.1.insert(
            id,
            Installed {
                set: set.clone(),
                side,
                sas: with_sas,
            },
        );
        Ok(id)
    }

    /// Deletes a set: all four policies and SAs are attempted; the first error is returned.
    /// An object that is already gone (ENOENT) counts as deleted.
    pub fn delete(&self, id: SetId) -> Result<(), XfrmError> {
        let inst = lock(&self.sets)
            .1
            .remove(&id)
            .ok_or(XfrmError::UnknownSet(id))?;
        let mut first = None;
        for sa in inst.set.sas(inst.side) {
            if let Err(e) = gone_is_ok(self.del_policy(&sa)) {
                first.get_or_insert(e);
            }
        }
        if inst.sas {
            for sa in inst.set.sas(inst.side) {
                if let Err(e) = gone_is_ok(self.del_sa(&sa)) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Marks a set established. The kernel objects do not change (no kernel lifetimes).
    pub fn set_of(&self, id: SetId) -> Option<SaSet> {
        lock(&self.sets).1.get(&id).map(|i| i.set.clone())
    }

    /// Replaces our copy of a set's model (state/expiry) after promote/expiry.
    pub fn update_model(&self, id: SetId, f: impl FnOnce(&mut SaSet)) -> Result<(), XfrmError> {
        let mut g = lock(&self.sets);
        let i = g.1.get_mut(&id).ok_or(XfrmError::UnknownSet(id))?;
        f(&mut i.set);
        Ok(())
    }

    /// Sets installed through this backend (for the esp_sa export).
    pub fn live_sets(&self) -> Vec<(SetId, SaSet, Side)> {
        lock(&self.sets)
            .1
            .iter()
            .map(|(id, i)| (*id, i.set.clone(), i.side))
            .collect()
    }

    /// Lists the SAs and policies in the kernel that carry our tag (whoever installed them:
    /// after a crash this is how leftovers are found).
    pub fn list(&self) -> Result<KernelState, XfrmError> {
        let mut st = KernelState::default();
        let sa_msgs = lock(&self.sock).dump(msg::dump_sa())?;
        for raw in sa_msgs {
            let m = NetlinkMessage::<XfrmMessage>::deserialize(&raw)
                .map_err(|e| XfrmError::Decode(e.to_string()))?;
            if let NetlinkPayload::InnerMessage(XfrmMessage::AddSa(s)) = m.payload {
                let i = &s.user_sa_info;
                if self.tag.matches(&i.selector, &s.nlas) && i.id.proto == IPPROTO_ESP {
                    st.sas.push(KernelSa {
                        src: ip_of(&i.saddr, i.family),
                        dst: ip_of(&i.id.daddr, i.family),
                        spi: i.id.spi,
                        sport: i.selector.sport,
                        dport: i.selector.dport,
                    });
                }
            }
        }
        let pol_msgs = lock(&self.sock).dump(msg::dump_policy())?;
        for raw in pol_msgs {
            let m = NetlinkMessage::<XfrmMessage>::deserialize(&raw)
                .map_err(|e| XfrmError::Decode(e.to_string()))?;
            if let NetlinkPayload::InnerMessage(XfrmMessage::AddPolicy(p)) = m.payload {
                let i = &p.user_policy_info;
                if !self.tag.matches(&i.selector, &p.nlas) {
                    continue;
                }
                let spi = p.nlas.iter().find_map(|n| match n {
                    XfrmAttrs::Template(t) => t.first().map(|t| t.id.spi),
                    _ => None,
                });
                let dir = match i.direction {
                    0 => Direction::In,
                    1 => Direction::Out,
                    // Forward policies are never ours.
                    _ => continue,
                };
                st.policies.push(KernelPolicy {
                    src: ip_of(&i.selector.saddr, i.selector.family),
                    dst: ip_of(&i.selector.daddr, i.selector.family),
                    sport: i.selector.sport,
                    dport: i.selector.dport,
                    dir,
                    spi,
                    selector: i.selector,
                });
            }
        }
        Ok(st)
    }

    /// Deletes every SA and policy with our tag (at start and stop of the P-CSCF) and forgets
    /// the installed sets. Returns how many objects were deleted.
    pub fn flush(&self) -> Result<usize, XfrmError> {
        let st = self.list()?;
        let mut n = 0;
        for p in &st.policies {
            let m = msg::del_policy(p.selector, msg::dir(p.dir), self.tag.mark_nla());
            gone_is_ok(
                lock(&self.sock).request(m, || format!("DELPOLICY {} -> {}", p.src, p.dst)),
            )?;
            n += 1;
        }
        for s in &st.sas {
            let m = msg::del_sa(s.dst, s.spi, self.tag.mark_nla());
            gone_is_ok(
                lock(&self.sock).request(m, || format!("DELSA {} spi 0x{:08x}", s.dst, s.spi)),
            )?;
            n += 1;
        }
        lock(&self.sets).1.clear();
        Ok(n)
    }

    /// True if this kernel can install an ESP SA: adds and deletes a dummy SA (loopback,
    /// reserved-range SPI, our tag). `Ok(false)` when ESP is missing or we lack NET_ADMIN.
    pub fn probe_esp(&self) -> Result<bool, XfrmError> {
        let set = probe_set();
        let sa = set.sas(Side::Pcscf)[0];
        match self.add_sa(&set, &sa) {
            Ok(()) => {
                self.del_sa(&sa)?;
                Ok(true)
            }
            Err(XfrmError::KernelLacksEsp) => Ok(false),
            Err(XfrmError::Netlink { errno, .. }) if errno == libc::EPERM => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A delete that finds nothing to delete reached its goal (another flush, a kernel expiry).
fn gone_is_ok(r: Result<(), XfrmError>) -> Result<(), XfrmError> {
    match r {
        Err(XfrmError::Netlink { errno, .. }) if errno == libc::ENOENT => Ok(()),
        r => r,
    }
}

fn probe_set() -> SaSet {
    use crate::model::*;
    let lo: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let mut s = SaSet::new(
        SocketAddrPair {
            addr: lo,
            client: 9,
            server: 9,
        },
        SocketAddrPair {
            addr: lo,
            client: 9,
            server: 9,
        },
        // SPIs unique per process: two processes probing at the same moment in one
        // namespace must not collide on the same (destination, SPI) with EEXIST.
        {
            let base = 0xf000_0000 | ((std::process::id() & 0x003f_ffff) << 2);
            Spis {
                uc: base,
                us: base | 1,
                pc: base | 2,
                ps: base | 3,
            }
        },
        IntegrityAlg::HmacSha1_96,
        EncryptionAlg::AesCbc,
        &[0; 16],
        &[0; 16],
        Duration::from_secs(1),
        std::time::Instant::now(),
    )
    .unwrap_or_else(|_| unreachable!("constant probe set is valid"));
    s.state = SaState::Temporary;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-1("imslab-xfrm-tag\0pcscf\0" 04 0a4d0001 13c4): 0x2b31e7.., computed independently
    /// (Python hashlib) from the encoding documented at [`Tag::for_instance`].
    const PINNED_PCSCF_TAG: u32 = 0x492b_31e7;

    #[test]
    fn error_parsing_with_ext_ack() {
        // NLMSG_ERROR, flags CAPPED|ACK_TLVS, errno -93, orig header, MSG attr.
        let mut m = Vec::new();
        let text = b"Requested type not found\0";
        let attr_len = 4 + text.len();
        let total = 16 + 4 + 16 + attr_len.div_ceil(4) * 4;
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_CAPPED | NLM_F_ACK_TLVS).to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&(-93i32).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        m.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        m.extend_from_slice(text);
        m.resize(total, 0);
        let (errno, msg) = parse_error(&m).unwrap();
        assert_eq!(errno, 93);
        assert_eq!(msg.as_deref(), Some("Requested type not found"));
        assert!(parse_error(&m[..18]).is_err());
        assert!(messages(&m).unwrap().len() == 1);
        let mut bad = m.clone();
        bad[0] = 3;
        assert!(messages(&bad).is_err());
        // Found by the fuzzer: errno i32::MIN cannot be negated.
        let mut min = m.clone();
        min[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert!(matches!(parse_error(&min), Err(XfrmError::Decode(_))));
    }

    proptest::proptest! {
        #[test]
        fn netlink_answer_parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(ms) = parse_messages(&data) {
                for (ty, _, _, m) in ms {
                    if ty == NLMSG_ERROR {
                        let _ = parse_error(m);
                    }
                }
            }
            let _ = parse_error(&data);
            let _ = NetlinkMessage::<XfrmMessage>::deserialize(&data);
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn instance_tags_are_stable_and_recognisable() {
        let t = Tag::for_instance("pcscf", &[sa("10.77.0.1:5060")]);
        // Pinned: a restarted process, even of a newer build, must find its leftovers. A
        // change of the derivation is a change of every deployed instance's tag.
        assert_eq!(t, Tag::SelectorUser(PINNED_PCSCF_TAG));
        assert_eq!(t, Tag::for_instance("pcscf", &[sa("10.77.0.1:5060")]));
        let Tag::SelectorUser(u) = t else {
            panic!("{t:?}")
        };
        assert_eq!(u & 0xff00_0000, INSTANCE_TAG_PREFIX);
        assert_ne!(t, Tag::default());
        assert_eq!(t.to_string(), format!("user 0x{u:08x} ({u})"));
        assert_eq!(t.selector_user(), u);
    }

    #[test]
    fn instance_tags_differ_by_role_address_port_family_and_order() {
        let a = sa("10.77.0.1:5060");
        let b = sa("10.77.0.3:5060");
        let tags = [
            Tag::for_instance("pcscf", &[a]),
            Tag::for_instance("ue", &[a]),
            Tag::for_instance("pcscf", &[b]),
            Tag::for_instance("pcscf", &[sa("10.77.0.1:5061")]),
            Tag::for_instance("pcscf", &[sa("[::ffff:10.77.0.1]:5060")]),
            Tag::for_instance("pcscf", &[a, b]),
            Tag::for_instance("pcscf", &[b, a]),
            Tag::for_instance("pcscf", &[]),
            // The role and the address do not run into each other.
            Tag::for_instance("pcscf\u{4}", &[]),
            Tag::default(),
        ];
        for (i, x) in tags.iter().enumerate() {
            for y in &tags[i + 1..] {
                assert_ne!(x, y);
            }
        }
        // A lab's worth of loopback instances (UEs and P-CSCFs on 127.0.0.x:5060): all apart.
        let mut seen = std::collections::HashSet::new();
        for role in ["pcscf", "ue"] {
            for i in 0..=255u8 {
                let addr = SocketAddr::from(([127, 0, 0, i], 5060));
                assert!(
                    seen.insert(Tag::for_instance(role, &[addr])),
                    "{role} {addr}"
                );
            }
        }
    }

    #[test]
    fn process_tags_are_unique_per_call() {
        let a = Tag::for_this_process("pcscf");
        let b = Tag::for_this_process("pcscf");
        assert_ne!(a, b);
        assert_eq!(a.selector_user() & 0xff00_0000, INSTANCE_TAG_PREFIX);
        assert_ne!(a, Tag::for_instance("pcscf", &[sa("127.0.0.1:0")]));
    }

    #[test]
    fn probe_set_is_valid() {
        assert_eq!(probe_set().sas(Side::Pcscf).len(), 4);
    }
}
