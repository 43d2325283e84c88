//! `hss.toml` from arbitrary text (alone, or spliced into the commented example): a typed
//! `ConfigError` or a configuration whose derived values and `config check` rendering all
//! work, never a panic.
#![no_main]
use hss::config::{Config, EXAMPLE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(input) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(c) = Config::parse(&imslab_fuzz::config_text(EXAMPLE, sel, input)) {
        // validate() already succeeded on these, so they must not fail now
        assert!(c.sqn_policy().is_ok());
        assert!(c.default_amf().is_ok());
        let _ = c.cx_config();
        let _ = opskit::config::render_redacted(&c);
    }
});
