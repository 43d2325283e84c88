//! Message/AVP decoder on arbitrary bytes: must never panic; whatever decodes must
//! re-encode to something that decodes to the same message.
#![no_main]

use diameter::{Avp, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = diameter::frame_length(data, 1 << 20);
    let _ = Avp::decode(&bytes::Bytes::copy_from_slice(data));
    if let Ok(m) = Message::decode_slice(data) {
        for a in &m.avps {
            let _ = a.value();
            let _ = a.as_grouped();
            let _ = format!("{a:?}");
        }
        let _ = m.result();
        // The last AVP's padding may be missing on input; re-encoding adds it.
        let again = Message::decode(m.encode()).expect("re-encoded message must decode");
        assert_eq!(again, m);
    }
});
