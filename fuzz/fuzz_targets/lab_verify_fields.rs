//! `imslab verify`'s reader of tshark output: any text gives frames or a typed error, and
//! the checks run on whatever parsed without panicking.
#![no_main]
use lab::verify::{analyse, parse_frames, Expect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frames) = parse_frames(text) {
        let v = analyse(&frames, &[Expect::Register, Expect::Call, Expect::Message]);
        let _ = v.to_string();
    }
});
