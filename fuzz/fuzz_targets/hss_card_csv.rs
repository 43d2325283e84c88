#![no_main]
//! Card data CSV import: typed errors only.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = hss::csv::parse(&s, &hss::csv::ImportDefaults::default());
});
