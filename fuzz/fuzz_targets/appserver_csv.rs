#![no_main]
//! Phonebook CSV import: typed errors only, and every key it keeps is a normalised number
//! (normalising it again changes nothing).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let plan = appserver::numbers::NumberPlan::default();
    if let Ok(pb) = appserver::phonebook::parse_csv(&s, &plan) {
        for (number, _) in pb.entries() {
            assert_eq!(plan.normalize(number).as_deref(), Some(number));
        }
    }
});
