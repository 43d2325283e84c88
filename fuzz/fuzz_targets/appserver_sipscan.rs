//! Passive SIP path: frames of every link type through the decoder (IP reassembly, TCP
//! streams) and the SIP scanner, and fuzz bytes as a SIP payload over UDP and over TCP
//! segments; typed errors only, never a panic, and bounded state.
#![no_main]
use appserver::event::Source;
use appserver::passive::frames::{build, LinkType};
use appserver::passive::sipscan::{SipScanConfig, SipScanner};
use appserver::passive::{PassiveConfig, Scanner};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Null,
    LinkType::Loop,
];

fuzz_target!(|input: &[u8]| {
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut s = Scanner::new(&PassiveConfig::default(), Source::Pcap);
    if sel & 1 == 0 {
        // Raw frames: each chunk prefixed by a one-byte length.
        let link = LINKS[usize::from(sel >> 1) % LINKS.len()];
        let mut data = rest;
        let mut t = t0;
        while let Some((&len, tail)) = data.split_first() {
            let n = usize::from(len).min(tail.len());
            let _ = s.handle_frame(link, &tail[..n], t);
            data = &tail[n..];
            t += Duration::from_millis(u64::from(len) * 100);
        }
    } else {
        let (c, srv) = (
            "192.0.2.1:40000".parse().unwrap(),
            "192.0.2.2:5060".parse().unwrap(),
        );
        let _ = s.handle_frame(LinkType::Ethernet, &build::udp(c, srv, rest), t0);
        // the same bytes as a TCP stream in three segments, the middle one first
        let (a, b) = (rest.len() / 3, 2 * rest.len() / 3);
        let seq = u32::from(sel) << 8;
        let _ = s.handle_frame(LinkType::Ethernet, &build::tcp(c, srv, seq, true, &[]), t0);
        for (off, part) in [(a, &rest[a..b]), (0, &rest[..a]), (b, &rest[b..])] {
            let f = build::tcp(c, srv, seq + 1 + off as u32, false, part);
            let _ = s.handle_frame(LinkType::Ethernet, &f, t0);
        }
        let mut sip = SipScanner::new(SipScanConfig::default(), Source::Live);
        let _ = sip.handle_message(rest, t0);
        while sip.poll_event().is_some() {}
    }
    while s.poll_event().is_some() {}
});
