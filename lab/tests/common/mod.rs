//! What the `imslab` command-line tests share.

use std::process::{Command, Output};

/// Runs the `imslab` built for these tests with `args` and waits for it.
pub fn imslab<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imslab"))
        .args(args)
        .output()
        .expect("run imslab")
}

/// stdout then stderr, for assertions and their messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
