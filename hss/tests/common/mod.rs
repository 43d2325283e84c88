#![allow(dead_code)]
use hss::store::{Impu, RegState, Subscriber};

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
        impi: format!("{imsi}@{dom}"),
        imsi: Some(imsi.clone()),
        iccid: Some(format!("89882000000000{n:05}")),
        msisdn: Some(format!("4917000{n:05}")),
        k: K,
        opc: OPC,
        amf: [0x80, 0x00],
        sqn: 0,
        impus: vec![
            Impu {
                uri: format!("sip:{imsi}@{dom}"),
                irs: 0,
                barred: false,
                display_name: None,
            },
            Impu {
                uri: format!("tel:+4917000{n:05}"),
                irs: 0,
                barred: false,
                display_name: Some("Lab".into()),
            },
            Impu {
                uri: format!("sip:other{n}@{dom}"),
                irs: 1,
                barred: true,
                display_name: None,
            },
        ],
        ifcs: vec![],
        profile: None,
        shared_ifc_set_ids: vec![],
        reg_state: RegState::NotRegistered,
        scscf_name: None,
        scscf_host: None,
        scscf_realm: None,
    }
}
