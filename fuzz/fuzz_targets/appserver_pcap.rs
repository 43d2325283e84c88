//! pcap and pcapng files through `appserver pcap`'s reader, the frame decoder and both
//! scanners: a damaged capture is an error or a short summary, never a panic.
#![no_main]
use appserver::event::{CallObserver, Offer, Progress, Verdict};
use appserver::passive::{pcapin, PassiveConfig};
use libfuzzer_sys::fuzz_target;
use std::time::SystemTime;

struct Null;

impl CallObserver for Null {
    fn offer(&self, _: Offer) -> Verdict {
        Verdict::Ring
    }
    fn progress(&self, _: &str, _: Progress, _: SystemTime) {}
}

fuzz_target!(|data: &[u8]| {
    let _ = pcapin::read(data, &PassiveConfig::default(), &Null);
});
