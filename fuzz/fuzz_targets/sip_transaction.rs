//! The transaction table fed with arbitrary messages and timer ticks.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::transaction::{Config, Transactions};
use sip::{Flow, Message, Protocol};

fuzz_target!(|data: &[u8]| {
    let mut t = Transactions::new(Config::default());
    let t0 = Instant::now();
    let flow = Flow::to("127.0.0.1:5060".parse().unwrap(), Protocol::Udp);
    for (i, chunk) in data.split(|&b| b == 0).enumerate() {
        let now = t0 + Duration::from_millis(i as u64 * 700);
        if let Ok(m) = Message::parse(chunk) {
            if m.is_request() && i % 2 == 0 {
                let _ = t.send_request(m, flow, now);
            } else if let Ok(sip::transaction::Incoming::Request(
                sip::transaction::RequestOutcome::New { id, request },
            )) = t.handle_message(m, flow, now)
            {
                if let Ok(r) = sip::ResponseBuilder::new(&request, 486).build() {
                    let _ = t.respond(id, r, now);
                }
            }
        }
        t.handle_timeout(now);
        while t.poll_transmit().is_some() {}
        while t.poll_event().is_some() {}
        let _ = t.poll_timeout();
    }
});
