//! Test data: the captures under `appserver/tests/data/` and the benchmark's input are
//! generated here, so they can be regenerated (`APPSERVER_REGENERATE=1 cargo test -p
//! appserver --test passive_pcap`) and read as code.
//!
//! Both fixture captures carry the same four calls, one as SIP, one as MGCP:
//!
//! | caller | SIP capture | MGCP capture | outcome |
//! |---|---|---|---|
//! | Alice +4930123456 | UDP/IPv4, INVITE retransmitted, 180, 200, BYE | RQNT rg+ci, NTFY hd, RQNT stop, NTFY hu | answered, ended |
//! | Bob 0301112222 | TCP, INVITE split over three segments, CANCEL, 487 | RQNT rg+ci, RQNT stop | cancelled |
//! | withheld (Privacy: id / `P`) | IPv4-fragmented INVITE, CANCEL | RQNT ci with `P` | cancelled |
//! | Carol +4940555666 | UDP/IPv6, 200, BYE | RQNT rg+ci, NTFY hd, NTFY hu | answered, ended |
//!
//! plus frames that must be skipped: random bytes, a truncated IP header, an ARP frame,
//! DNS, an unparsable datagram on the SIP or MGCP port.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use super::frames::build;
use super::sipscan::text as sip;
use crate::mgcp::text as mgcp;

/// Capture time of the first frame of every fixture (2026-01-01T00:00:00Z).
pub const EPOCH: Duration = Duration::from_secs(1_767_225_600);

/// A capture being built: frames with their time offsets.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    /// (time since [`EPOCH`], Ethernet frame).
    pub frames: Vec<(Duration, Vec<u8>)>,
}

impl Capture {
    /// Adds a frame at `ms` milliseconds.
    pub fn at(&mut self, ms: u64, frame: Vec<u8>) {
        self.frames.push((Duration::from_millis(ms), frame));
    }

    /// The capture as a classic pcap (Ethernet, microseconds, little-endian).
    pub fn to_pcap(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            // what tcpdump writes on x86 and ARM (pcap-file's default is big-endian)
            endianness: pcap_file::Endianness::Little,
            ..PcapHeader::default()
        };
        if let Ok(mut w) = PcapWriter::with_header(&mut out, header) {
            for (t, f) in &self.frames {
                let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
                let _ = w.write_packet(&PcapPacket::new(EPOCH + *t, len, f));
            }
        }
        out
    }

    /// Writes [`Capture::to_pcap`] to `path`.
    pub fn write_pcap(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::File::create(path)?.write_all(&self.to_pcap())
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// The calls of the SIP fixture (`sip-invites.pcap`).
pub fn sip_invites() -> Capture {
    let mut c = Capture::default();
    let (box4, pbx4) = (sa("192.168.1.20:5060"), sa("192.0.2.10:5060"));
    let udp = build::udp;
    // Alice: UDP, the INVITE seen twice (retransmission), answered, hung up.
    let inv = sip::invite(
        "alice-1@pbx",
        "+4930123456",
        Some("Alice"),
        None,
        None,
        "+4930999",
    );
    c.at(0, udp(pbx4, box4, inv.as_bytes()));
    c.at(500, udp(pbx4, box4, inv.as_bytes()));
    c.at(
        600,
        udp(
            box4,
            pbx4,
            sip::response("alice-1@pbx", 180, "Ringing").as_bytes(),
        ),
    );
    c.at(
        3000,
        udp(
            box4,
            pbx4,
            sip::response("alice-1@pbx", 200, "OK").as_bytes(),
        ),
    );
    c.at(
        20_000,
        udp(pbx4, box4, sip::request("BYE", "bob-x", None).as_bytes()),
    );
    c.at(
        20_000,
        udp(
            pbx4,
            box4,
            sip::request("BYE", "alice-1@pbx", None).as_bytes(),
        ),
    );
    // Bob: TCP, the INVITE split over three segments (the middle one first), cancelled.
    let (cli, srv) = (sa("192.0.2.10:41000"), sa("192.168.1.20:5060"));
    let inv = sip::invite(
        "bob-2@pbx",
        "0301112222",
        Some("Bob"),
        None,
        None,
        "+4930999",
    );
    let b = inv.as_bytes();
    let (a1, a2) = (40, 300);
    c.at(30_000, build::tcp(cli, srv, 9999, true, &[]));
    c.at(
        30_001,
        build::tcp(cli, srv, 10_000 + a1 as u32, false, &b[a1..a2]),
    );
    c.at(30_002, build::tcp(cli, srv, 10_000, false, &b[..a1]));
    c.at(
        30_003,
        build::tcp(cli, srv, 10_000 + a2 as u32, false, &b[a2..]),
    );
    let cancel = sip::request("CANCEL", "bob-2@pbx", None);
    c.at(
        35_000,
        build::tcp(cli, srv, 10_000 + b.len() as u32, false, cancel.as_bytes()),
    );
    c.at(
        35_001,
        udp(
            box4,
            pbx4,
            sip::response("bob-2@pbx", 487, "Request Terminated").as_bytes(),
        ),
    );
    // Withheld: an INVITE too large for one packet, IPv4 fragments out of order.
    let mut inv = sip::invite(
        "anon-3@pbx",
        "anonymous",
        Some("Anonymous"),
        Some("<sip:+4930777777@example.net>"),
        Some("id"),
        "+4930999",
    );
    let pad = format!("Subject: {}\r\n", "x".repeat(2000));
    if let Some(i) = inv.find("Call-ID:") {
        inv.insert_str(i, &pad);
    }
    let mut frags = build::udp_fragments(pbx4, box4, 0x4242, inv.as_bytes(), 1400);
    frags.swap(0, 1);
    for (i, f) in frags.into_iter().enumerate() {
        c.at(40_000 + i as u64, f);
    }
    c.at(
        44_000,
        udp(
            pbx4,
            box4,
            sip::request("CANCEL", "anon-3@pbx", None).as_bytes(),
        ),
    );
    // Carol: IPv6, answered, hung up.
    let (box6, pbx6) = (sa("[2001:db8::20]:5060"), sa("[2001:db8::10]:5060"));
    let inv = sip::invite(
        "carol-4@pbx",
        "+4940555666",
        Some("Carol"),
        None,
        None,
        "+4930999",
    );
    c.at(50_000, udp(pbx6, box6, inv.as_bytes()));
    c.at(
        52_000,
        udp(
            box6,
            pbx6,
            sip::response("carol-4@pbx", 200, "OK").as_bytes(),
        ),
    );
    c.at(
        60_000,
        udp(
            box6,
            pbx6,
            sip::request("BYE", "carol-4@pbx", None).as_bytes(),
        ),
    );
    garbage(&mut c, 5060);
    c
}

/// The calls of the MGCP fixture (`mgcp-rqnt.pcap`), the same callers as
/// [`sip_invites`].
pub fn mgcp_rqnt() -> Capture {
    let mut c = Capture::default();
    let (gw, ca) = (sa("192.168.1.20:2427"), sa("192.0.2.10:2727"));
    let ep = "aaln/1@gw.example.net";
    let udp = |from, to, s: String| build::udp(from, to, s.as_bytes());
    // Alice: ring with caller-ID (retransmitted), off-hook, ringing stopped, on-hook.
    c.at(
        0,
        udp(
            ca,
            gw,
            mgcp::rqnt_ring(1001, ep, "A1", "+4930123456", "Alice"),
        ),
    );
    c.at(
        500,
        udp(
            ca,
            gw,
            mgcp::rqnt_ring(1001, ep, "A1", "+4930123456", "Alice"),
        ),
    );
    c.at(501, udp(gw, ca, "200 1001 OK\r\n".into()));
    c.at(3000, udp(gw, ca, mgcp::ntfy(2001, ep, "A1", "L/hd")));
    c.at(3001, udp(ca, gw, mgcp::rqnt_stop(1002, ep, "A2")));
    c.at(20_000, udp(gw, ca, mgcp::ntfy(2002, ep, "A2", "L/hu")));
    // Bob: ring, the call agent stops the ringing without an off-hook: cancelled.
    c.at(
        30_000,
        udp(ca, gw, mgcp::rqnt_ring(1003, ep, "B1", "0301112222", "Bob")),
    );
    c.at(35_000, udp(ca, gw, mgcp::rqnt_stop(1004, ep, "B2")));
    // Withheld: P for number and name, then cancelled.
    c.at(
        40_000,
        udp(ca, gw, mgcp::rqnt_ring(1005, ep, "C1", "P", "P")),
    );
    c.at(44_000, udp(ca, gw, mgcp::rqnt_stop(1006, ep, "C2")));
    // Carol: answered, hung up; signals without the L/ prefix and unquoted fields.
    c.at(
        50_000,
        udp(
            ca,
            gw,
            format!(
                "RQNT 1007 {ep} MGCP 1.0\r\nX: D1\r\nR: hd(N)\r\nS: rg,ci(01/01/00/00,+4940555666,Carol)\r\n"
            ),
        ),
    );
    c.at(52_000, udp(gw, ca, mgcp::ntfy(2003, ep, "D1", "hd")));
    c.at(60_000, udp(gw, ca, mgcp::ntfy(2004, ep, "D1", "L/hu")));
    garbage(&mut c, 2427);
    c
}

/// Frames a decoder must skip or reject without effect.
fn garbage(c: &mut Capture, port: u16) {
    let t = 70_000;
    c.at(t, vec![0xde, 0xad, 0xbe, 0xef]);
    c.at(t + 1, (0..200u8).map(|i| i.wrapping_mul(37)).collect());
    let mut truncated = build::udp(sa("10.0.0.1:1"), sa("10.0.0.2:5060"), b"x");
    truncated.truncate(20);
    c.at(t + 2, truncated);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    c.at(t + 3, arp);
    c.at(
        t + 4,
        build::udp(sa("10.0.0.1:40000"), sa("10.0.0.2:53"), b"\x12\x34dns"),
    );
    let to = SocketAddr::new(sa("10.0.0.2:0").ip(), port);
    c.at(
        t + 5,
        build::udp(sa("10.0.0.1:40001"), to, b"\x00\x01 not a message \xff"),
    );
}

/// `n` distinct answered calls over UDP (INVITE, 200, BYE): the benchmark's input.
pub fn many_invites(n: usize) -> Capture {
    many_invites_from(0, n)
}

/// Calls `first..first + n` of the same series: a long run replayed in chunks, each call
/// with its own Call-ID and caller number.
pub fn many_invites_from(first: usize, n: usize) -> Capture {
    let mut c = Capture::default();
    let (a, b) = (sa("192.0.2.10:5060"), sa("192.168.1.20:5060"));
    for i in first..first + n {
        let id = format!("bench-{i}@pbx");
        let t = i as u64;
        let inv = sip::invite(
            &id,
            &format!("+49301{i:07}"),
            Some("Bench"),
            None,
            None,
            "+4930999",
        );
        c.at(t, build::udp(a, b, inv.as_bytes()));
        c.at(
            t,
            build::udp(b, a, sip::response(&id, 200, "OK").as_bytes()),
        );
        c.at(
            t,
            build::udp(a, b, sip::request("BYE", &id, None).as_bytes()),
        );
    }
    c
}
