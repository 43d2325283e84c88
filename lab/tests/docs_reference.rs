//! `docs/config-reference.md` is generated from each binary's `config example` (the same
//! commented text `hss config example`, `pcscf config example`, … print, which their own
//! tests prove covers every key with its default). This test regenerates it and fails when
//! the committed page differs, so the docs cannot drift from the code.
//!
//! After changing a configuration: `UPDATE_DOCS=1 cargo test -p lab --test docs_reference`.

use std::path::PathBuf;

/// (binary, what it is, its `config example`).
fn binaries() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "hss",
            "The HSS: Cx over Diameter, the subscriber store, REST and the web page",
            hss::config::EXAMPLE.to_string(),
        ),
        (
            "pcscf",
            "The P-CSCF, with the S-CSCF core in the same process by default",
            pcscf::config::EXAMPLE.to_string(),
        ),
        (
            "scscf",
            "The S-CSCF as its own process (behind a P-CSCF in proxy mode)",
            scscf::config::EXAMPLE.to_string(),
        ),
        (
            "appserver",
            "The application server: caller-ID notification, blocking, the call log, passive \
             and inline inputs (docs/appserver.md)",
            appserver::config::example(),
        ),
        (
            "imslab up",
            "One file, `lab.toml`, for a real lab, from which `imslab up` writes the others",
            lab::up::EXAMPLE.to_string(),
        ),
    ]
}

fn render() -> String {
    let mut s = String::from(
        "# Configuration reference\n\n\
         Generated from each binary's `config example` by `lab/tests/docs_reference.rs`; do \
         not edit by hand\n(`UPDATE_DOCS=1 cargo test -p lab --test docs_reference` \
         regenerates it). Every key is optional;\nthe values shown are the defaults. \
         `<binary> config check FILE` validates a file and prints the\neffective values, \
         secrets redacted.\n",
    );
    for (name, what, example) in binaries() {
        s.push_str(&format!(
            "\n## `{name}`\n\n{what}. Print it with `{}`.\n\n```toml\n{}\n```\n",
            if name == "imslab up" {
                "imslab up --example".to_string()
            } else {
                format!("{name} config example")
            },
            example.trim_end()
        ));
    }
    s
}

#[test]
fn the_config_reference_is_what_the_binaries_print() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config-reference.md");
    let want = render();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/config-reference.md is stale: run `UPDATE_DOCS=1 cargo test -p lab --test \
         docs_reference` and commit it"
    );
}
