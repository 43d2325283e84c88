#![no_main]
//! The `auts` decoder, then resync with the decoded AUTS: never a panic, and a random AUTS
//! must not verify except by the 2^-64 chance of a MAC-S collision.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(auts) = akav1::nonce::decode_auts(s) {
            let m = akav1::Milenage::new(&[1; 16], &[2; 16]);
            let _ = m.resync(&[3; 16], &auts);
        }
    }
});
