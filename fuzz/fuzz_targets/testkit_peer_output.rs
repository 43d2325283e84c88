//! Every parser in testkit (SIP status line from the network, osmo-auc-gen and
//! tshark output) on arbitrary bytes: typed errors only, no panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = testkit::kamailio::parse_status_code(data);
    let s = String::from_utf8_lossy(data);
    let _ = testkit::osmo::parse(&s);
    let _ = testkit::tshark::parse_fields(&s);
});
