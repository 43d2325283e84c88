//! Fuzzes the parsers of netlink answers (message framing, NLMSG_ERROR with extended ack,
//! XFRM dump messages).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ms) = xfrm::kernel::parse_messages(data) {
        for (ty, _, _, m) in ms {
            if ty == 2 {
                let _ = xfrm::kernel::parse_error(m);
            }
        }
    }
    let _ = xfrm::kernel::parse_error(data);
});
