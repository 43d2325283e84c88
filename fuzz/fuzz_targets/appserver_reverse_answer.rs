#![no_main]
//! A reverse-lookup server's answer (any bytes, any field path): never panics, and a name it
//! yields is one line, without control characters, at most MAX_NAME_CHARS long.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let (field, body) = s.split_once('\n').unwrap_or(("name", &s));
    for name in [
        appserver::reverse::json_name(body, field),
        appserver::reverse::clean_name(body),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!name.is_empty() && name.chars().count() <= appserver::reverse::MAX_NAME_CHARS);
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert_eq!(name.trim(), name);
    }
});
