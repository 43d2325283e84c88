#![no_main]
//! Digest header parsers (challenge, credentials, Authentication-Info) on arbitrary text;
//! whatever parses must survive serialise → parse unchanged.
use akav1::digest::{AuthenticationInfo, Challenge, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = Challenge::parse(s) {
            assert_eq!(Challenge::parse(&c.to_header()).as_ref(), Ok(&c));
        }
        if let Ok(c) = Credentials::parse(s) {
            assert_eq!(Credentials::parse(&c.to_header()).as_ref(), Ok(&c));
            let _ = c.verify(b"res", "REGISTER", b"");
        }
        let _ = AuthenticationInfo::parse(s);
    }
});
