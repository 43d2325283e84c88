//! MGCP (RFC 3435) parser, event/signal lists, the line package's caller-ID fields and the
//! MGCP scanner: typed errors only, never a panic.
#![no_main]
use appserver::event::Source;
use appserver::mgcp::{self, MgcpScanner};
use libfuzzer_sys::fuzz_target;
use std::time::SystemTime;

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = mgcp::parse(data) {
        for m in msgs {
            if let mgcp::Message::Command(c) = m {
                for code in ["S", "O", "R"] {
                    if let Some(Ok(list)) = c.param(code).map(mgcp::parse_event_list) {
                        for e in list {
                            if let Some(p) = e.params {
                                let _ = mgcp::parse_caller_id(&p);
                            }
                        }
                    }
                }
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = mgcp::parse_event_list(&text);
    let _ = mgcp::parse_caller_id(&text);
    let mut s = MgcpScanner::new(Source::Pcap);
    // twice: the second pass meets the state the first one left
    for _ in 0..2 {
        let _ = s.handle_datagram(data, SystemTime::UNIX_EPOCH);
    }
    while s.poll_event().is_some() {}
});
