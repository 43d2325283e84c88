//! `pcscf.toml` from arbitrary text (alone, or spliced into the commented example): a typed
//! `ConfigError` or a configuration whose derived values and `config check` rendering all
//! work, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pcscf::config::{Config, EXAMPLE};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(input) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(c) = Config::from_toml(&imslab_fuzz::config_text(EXAMPLE, sel, input)) {
        let _ = c.backend_kind();
        let _ = c.alg_prefs();
        let e = c.effective();
        let _ = opskit::config::render_redacted(&e);
    }
});
