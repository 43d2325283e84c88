#![no_main]
//! Phonebook vCard import (folding, groups, TEL as text or tel: URI): typed errors only,
//! and every key it keeps is a normalised number.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let plan = appserver::numbers::NumberPlan::default();
    if let Ok(pb) = appserver::phonebook::parse_vcard(&s, &plan) {
        for (number, _) in pb.entries() {
            assert_eq!(plan.normalize(number).as_deref(), Some(number));
        }
    }
});
