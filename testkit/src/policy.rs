//! Skip-or-fail policy for tests that need something from the machine.
//!
//! A test that needs a real peer binary, root or network namespaces asks for it
//! here. When it is missing:
//! - with `CI=true` (or `CI=1`) in the environment the call **panics** with a
//!   clear message, so the test fails and CI cannot go green by skipping;
//! - otherwise it prints a loud `SKIPPED: <why>` line on stderr and returns
//!   `None`/`false`, and the test returns early.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether we run in CI: `CI` set to `true`/`1`/`yes` (any case).
pub fn is_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        Err(_) => false,
    }
}

/// Applies the policy to an unmet requirement: panics in CI, else prints
/// `SKIPPED: <reason>` on stderr. Call it, then return from the test.
pub fn skip_or_fail(reason: &str) {
    skip_or_fail_with(is_ci(), reason);
}

fn skip_or_fail_with(ci: bool, reason: &str) {
    if ci {
        panic!("REQUIREMENT MISSING (CI=true, so this test fails instead of skipping): {reason}");
    }
    eprintln!();
    eprintln!("=====================================================================");
    eprintln!("SKIPPED: {reason}");
    eprintln!("=====================================================================");
}

/// Where `name` would be found: `$PATH`, then `/usr/sbin`, `/sbin`,
/// `/usr/local/sbin` (daemons such as `kamailio` live there and test runners
/// often have a user `$PATH`). `None` when not found or not executable.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The path of binary `name`, or the skip-or-fail policy (see the module docs).
///
/// ```no_run
/// let Some(kamailio) = testkit::require_bin("kamailio") else { return };
/// ```
pub fn require_bin(name: &str) -> Option<PathBuf> {
    match find_bin(name) {
        Some(p) => Some(p),
        None => {
            skip_or_fail(&format!(
                "binary `{name}` not found in $PATH or /usr/sbin (install the Debian package \
                 that provides it, see ../shared/design.md \"Real peers\")"
            ));
            None
        }
    }
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `true` when running as root, else the skip-or-fail policy and `false`.
pub fn require_root() -> bool {
    if is_root() {
        true
    } else {
        skip_or_fail("this test needs root (effective uid 0)");
        false
    }
}

/// `true` when network namespaces can be created here (root, `ip` present and
/// `ip netns add` of a throwaway namespace works), else the skip-or-fail
/// policy and `false`. The probe namespace is deleted again.
pub fn require_netns() -> bool {
    if !require_root() {
        return false;
    }
    let Some(ip) = require_bin("ip") else {
        return false;
    };
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "tk-probe-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let ok = Command::new(&ip)
        .args(["netns", "add", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        let _ = Command::new(&ip)
            .args(["netns", "del", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        true
    } else {
        skip_or_fail("cannot create a network namespace (`ip netns add` failed)");
        false
    }
}

/// `true` when every Kamailio module in `modules` (file stems such as
/// `"ims_auth"`) exists in [`crate::kamailio::module_dir`], else the
/// skip-or-fail policy and `false`.
pub fn require_kamailio_modules(modules: &[&str]) -> bool {
    let dir = crate::kamailio::module_dir();
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| !dir.join(format!("{m}.so")).is_file())
        .collect();
    if missing.is_empty() {
        true
    } else {
        skip_or_fail(&format!(
            "Kamailio modules missing in {}: {} (apt-get install kamailio-ims-modules \
             kamailio-presence-modules)",
            dir.display(),
            missing.join(", ")
        ));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_panics_only_in_ci() {
        skip_or_fail_with(false, "testing the policy (not a real skip)");
        let r = std::panic::catch_unwind(|| skip_or_fail_with(true, "missing thing"));
        let msg = r.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("missing thing") && msg.contains("CI=true"),
            "{msg}"
        );
    }

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_bin("sh").is_some());
        assert!(find_bin("definitely-not-a-binary-testkit").is_none());
        assert!(find_bin("/bin/sh").is_some());
    }
}
