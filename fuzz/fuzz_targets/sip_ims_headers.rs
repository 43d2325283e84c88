//! IMS and core header parsers, dispatched by the first byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip::headers::{CSeq, Contacts};
use sip::ims::{AccessNetworkInfo, ChargingVector, SecurityMechanism, VisitedNetworkId};
use sip::{NameAddr, Params, Uri, Via};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let s = String::from_utf8_lossy(rest);
    match sel % 10 {
        0 => {
            if let Ok(l) = SecurityMechanism::parse_list(&s) {
                // our own rendering must parse back to the same value
                let text = sip::ims::format_security_list(&l);
                assert_eq!(SecurityMechanism::parse_list(&text).expect("re-parse"), l);
            }
        }
        1 => drop(AccessNetworkInfo::parse(&s)),
        2 => drop(VisitedNetworkId::parse_list(&s)),
        3 => drop(ChargingVector::parse(&s)),
        4 => {
            if let Ok(l) = NameAddr::parse_list(&s) {
                let text = l
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                assert_eq!(NameAddr::parse_list(&text).expect("re-parse"), l);
            }
        }
        5 => {
            if let Ok(l) = Via::parse_list(&s) {
                let text = l
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                assert_eq!(Via::parse_list(&text).expect("re-parse"), l);
            }
        }
        6 => {
            if let Ok(u) = Uri::parse(&s) {
                assert_eq!(Uri::parse(&u.to_string()).expect("re-parse"), u);
            }
        }
        7 => drop(CSeq::parse(&s)),
        8 => drop(Contacts::parse(&s)),
        _ => drop(Params::parse(&s)),
    }
});
