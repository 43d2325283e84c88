//! Dialogs and the stateful-proxy response context fed with arbitrary messages: the first
//! parsable request opens a UAS dialog and a proxy context with two branches; every later
//! chunk is a request or response for the dialog, a response for one of the branches, a
//! CANCEL, or a Timer C tick (issue 9: dialog/proxy handling of inbound messages).
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::dialog::Dialog;
use sip::proxy::{self, Branches, ProxyTimers};
use sip::transaction::TxId;
use sip::Message;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut chunks = data.split(|&b| b == 0);
    let Some(first) = chunks.next().and_then(|c| Message::parse(c).ok()) else {
        return;
    };
    let mut dialog = Dialog::uas(&first, "fuzz-tag").ok();
    let mut b = Branches::new(ProxyTimers {
        timer_c: Duration::from_secs(3),
        cancel_wait: Duration::from_secs(1),
    });
    let server = TxId(1);
    b.open(server, first.clone());
    b.add(server, TxId(2), t0);
    b.add(server, TxId(3), t0);
    let _ = proxy::next_hop(&first);
    let mut fwd = first;
    proxy::pop_own_routes(&mut fwd, |u| u.host == "127.0.0.1");
    let _ = proxy::forward_copy(&fwd, "127.0.0.9:5060".parse().unwrap());
    for (i, chunk) in chunks.enumerate() {
        let now = t0 + Duration::from_millis(i as u64 * 900);
        let Ok(m) = Message::parse(chunk) else {
            let _ = b.handle_timeout(now);
            continue;
        };
        if let Some(d) = dialog.as_mut() {
            if m.is_request() {
                let _ = d.handle_request(&m);
            } else {
                let _ = d.handle_response(&m);
            }
        }
        match i % 4 {
            0 => drop(b.response(TxId(2), m, now)),
            1 => drop(b.response(TxId(3), m, now)),
            2 => drop(b.cancel(server)),
            _ => drop(b.failed(TxId(2 + (i as u64 % 2)), 408)),
        }
        let _ = b.handle_timeout(now);
    }
    b.terminated(TxId(2));
    b.terminated(TxId(3));
});
