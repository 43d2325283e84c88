#![no_main]
//! The JSON call event the notify agent receives by datagram: typed errors only, and what
//! decodes re-encodes to JSON that decodes to the same event.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = appserver::sinks::json::decode(data) {
        let again = serde_json::to_vec(&ev).expect("a decoded event serialises");
        assert_eq!(appserver::sinks::json::decode(&again).ok(), Some(ev));
    }
});
