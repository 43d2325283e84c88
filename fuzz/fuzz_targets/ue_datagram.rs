#![no_main]
//! Arbitrary datagrams into a UE that is registering (waiting for its 401): whatever the
//! "P-CSCF" sends, the simulator must not panic.
use libfuzzer_sys::fuzz_target;
use sip::{Flow, Protocol};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use ue::{IsimKeys, Ue, UeConfig};

fuzz_target!(|data: &[u8]| {
    let pcscf = SocketAddr::from(([127, 0, 0, 1], 5060));
    let cfg = UeConfig::new(
        "001010000000001@ims.test",
        "sip:001010000000001@ims.test",
        "ims.test",
        IsimKeys::new([1; 16], [2; 16]),
        [127, 0, 0, 2].into(),
        pcscf,
    );
    let Ok(mut ue) = Ue::new(cfg) else { return };
    let now = Instant::now();
    ue.register(now);
    while ue.poll_transmit().is_some() {}
    let flow = Flow::new(
        SocketAddr::from(([127, 0, 0, 2], 5060)),
        pcscf,
        Protocol::Udp,
    );
    ue.handle_datagram(flow, data, now);
    while ue.poll_transmit().is_some() {}
    while ue.poll_action().is_some() {}
    while ue.poll_event().is_some() {}
    ue.handle_timeout(now + Duration::from_secs(120));
    while ue.poll_transmit().is_some() {}
});
