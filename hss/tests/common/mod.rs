#![allow(dead_code)]
pub mod hss_proc;

use hss::store::{Impu, Subscriber};

pub const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
pub const OPC: [u8; 16] = [
    0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf,
];

pub fn sub(n: u32) -> Subscriber {
    let imsi = format!("0010100000{n:05}");
    let dom = "ims.mnc001.mcc001.3gppnetwork.org";
    Subscriber {
        imsi: Some(imsi.clone()),
        iccid: Some(format!("89882000000000{n:05}")),
        msisdn: Some(format!("4917000{n:05}")),
        impus: vec![
            Impu::new(format!("sip:{imsi}@{dom}")),
            Impu {
                display_name: Some("Lab".into()),
                ..Impu::new(format!("tel:+4917000{n:05}"))
            },
            Impu {
                irs: 1,
                barred: true,
                ..Impu::new(format!("sip:other{n}@{dom}"))
            },
        ],
        ..Subscriber::new(format!("{imsi}@{dom}"), K, OPC)
    }
}
