//! Shared fixtures of the integration tests.
#![allow(dead_code)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use xfrm::{EncryptionAlg, IntegrityAlg, SaSet, SocketAddrPair, Spis};

pub const CK: [u8; 16] = [
    0x5c, 0x1d, 0x0a, 0x3f, 0x9e, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
];
pub const IK: [u8; 16] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
];

pub fn set(ue: &str, pcscf: &str, base: u32, i: IntegrityAlg, e: EncryptionAlg) -> SaSet {
    let ue: IpAddr = ue.parse().unwrap();
    let pcscf: IpAddr = pcscf.parse().unwrap();
    SaSet::new(
        SocketAddrPair {
            addr: ue,
            client: 31800,
            server: 31900,
        },
        SocketAddrPair {
            addr: pcscf,
            client: 5100,
            server: 5101,
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
        &IK,
        Duration::from_secs(30),
        Instant::now(),
    )
    .unwrap()
}
