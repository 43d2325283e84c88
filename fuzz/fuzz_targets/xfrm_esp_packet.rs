//! Fuzzes the ESP receive path: outer IPv4 header parser, ESP decrypt/verify for every
//! algorithm, and the inner UDP/TCP checks of the userspace endpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use xfrm::model::{EncryptionAlg, IntegrityAlg, SaSet, Side, SocketAddrPair, Spis};
use xfrm::userspace::{parse_ipv4_esp, EspEndpoint};

fuzz_target!(|data: &[u8]| {
    let _ = parse_ipv4_esp(data);
    let _ = xfrm::esp::peek_spi(data);
    if data.is_empty() {
        return;
    }
    // First byte picks the algorithms; the rest is the ESP payload with a valid SPI forced in
    // so the parser gets past the lookup.
    let i = IntegrityAlg::ALL[usize::from(data[0] & 1)];
    let e = EncryptionAlg::ALL[usize::from(data[0] >> 1) % 3];
    let set = SaSet::new(
        SocketAddrPair {
            addr: [10, 0, 0, 2].into(),
            client: 1000,
            server: 1001,
        },
        SocketAddrPair {
            addr: [10, 0, 0, 1].into(),
            client: 2000,
            server: 2001,
        },
        Spis {
            uc: 300,
            us: 301,
            pc: 302,
            ps: 303,
        },
        i,
        e,
        &[7; 16],
        &[9; 16],
        Duration::from_secs(1),
        Instant::now(),
    )
    .unwrap();
    let mut ep = EspEndpoint::new();
    ep.install(&set, Side::Pcscf).unwrap();
    let mut pkt = data[1..].to_vec();
    if pkt.len() >= 4 {
        pkt[..4].copy_from_slice(&303u32.to_be_bytes());
    }
    let _ = ep.handle_esp(set.ue, None, &pkt);
    // Also a correctly authenticated packet with fuzzed plaintext, so the inner parsers run.
    let mut ue = EspEndpoint::new();
    ue.install(&set, Side::Ue).unwrap();
    let src = std::net::SocketAddr::new(set.ue, set.port_uc);
    let dst = std::net::SocketAddr::new(set.pcscf, set.port_ps);
    let next = if data[0] & 0x80 != 0 { 6 } else { 17 };
    if let Ok(esp) = ue.encrypt_segment(src, dst, next, &data[1..]) {
        let _ = ep.handle_esp(set.ue, Some(set.pcscf), &esp);
    }
});
