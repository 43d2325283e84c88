//! The sans-IO peer (responder, after a successful CER/CEA) fed arbitrary bytes: must
//! never panic, and everything it sends back must decode.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use diameter::{Message, Peer, PeerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut c = Peer::connect(Arc::new(PeerConfig::cx("c.lab", "lab")), now, 1, None);
    let mut s = Peer::accept(Arc::new(PeerConfig::cx("s.lab", "lab")), now, 2, None);
    let open = data.first().is_some_and(|b| b & 1 == 1);
    if open {
        if let Some(cer) = c.poll_transmit() {
            s.handle_bytes(now, &cer);
        }
        let _ = s.poll_transmit();
    }
    // Split the input into a few reads at positions the input chooses.
    let split = data.get(1).map_or(0, |&b| b as usize).min(data.len());
    for part in [&data[..split], &data[split..]] {
        s.handle_bytes(now, part);
        while s.poll_event().is_some() {}
        if let Some(out) = s.poll_transmit() {
            let mut rest = &out[..];
            while let Ok(Some(n)) = diameter::frame_length(rest, 1 << 24) {
                assert!(Message::decode_slice(&rest[..n]).is_ok());
                rest = &rest[n..];
            }
        }
    }
    s.handle_timeout(now + Duration::from_secs(1000));
});
