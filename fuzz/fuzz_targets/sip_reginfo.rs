//! The reg event document (RFC 3680) a NOTIFY carries, read by the UE and the P-CSCF.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(info) = sip::reginfo::RegInfo::parse(text) {
            let _ = info.is_terminated("sip:a@b");
            let _ = info.active_contacts();
            // The writer takes whatever the reader gave.
            let _ = sip::reginfo::RegInfo::parse(&info.to_string());
        }
    }
});
