//! `scscf.toml` from arbitrary text (alone, or spliced into the commented example): a typed
//! `ConfigError` or a configuration whose derived values and `config check` rendering all
//! work, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scscf::config::{Config, EXAMPLE};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(input) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(c) = Config::from_toml(&imslab_fuzz::config_text(EXAMPLE, sel, input)) {
        let addr = c.advertise_addr();
        let _ = c.hss_peer();
        let _ = c.core(addr);
        let _ = c.limits();
        let e = c.effective();
        let _ = opskit::config::render_redacted(&e);
    }
});
