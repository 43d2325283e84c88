#![no_main]
//! The AKA nonce decoder on arbitrary text: typed error or a value that re-encodes to the
//! same octets.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(n) = akav1::nonce::decode(s) {
            let again = akav1::nonce::encode(&n.rand, &n.autn, &n.server_data);
            assert_eq!(akav1::nonce::decode(&again).ok(), Some(n));
        }
    }
});
