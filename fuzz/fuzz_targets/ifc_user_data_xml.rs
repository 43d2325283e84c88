#![no_main]
//! Cx User-Data XML parser: must return a typed error, never panic, on any input; whatever it
//! accepts must survive a write/read round trip unchanged.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(sub) = ifc::ImsSubscription::from_xml(s) {
            let again = ifc::ImsSubscription::from_xml(&sub.to_xml());
            // Trimmed text and dropped unknowns make the first parse canonical.
            assert!(again.is_ok());
        }
    }
});
