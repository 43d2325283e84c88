//! `lab.toml` for `imslab up` from arbitrary text (alone, or spliced into the commented
//! example): a typed `ConfigError`, or a lab whose derived `hss.toml` and `pcscf.toml` are
//! accepted by those binaries' own parsers — `imslab up` never starts a node with a
//! configuration the node would refuse. Never a panic.
#![no_main]
use lab::up::{LabConfig, EXAMPLE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(input) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(c) = LabConfig::from_toml(&imslab_fuzz::config_text(EXAMPLE, sel, input)) {
        let hss = c.hss_toml();
        if let Err(e) = hss::config::Config::parse(&hss) {
            panic!("derived hss.toml refused: {e}\n{hss}");
        }
        let pcscf = c.pcscf_toml();
        if let Err(e) = pcscf::config::Config::from_toml(&pcscf) {
            panic!("derived pcscf.toml refused: {e}\n{pcscf}");
        }
        let _ = c.domain();
        let _ = c.sip_addr();
    }
});
