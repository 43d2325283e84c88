//! One log convention for every binary.
//!
//! The filter is an `EnvFilter` directive string (`info`, `warn,pcscf=debug`, …). It comes
//! from, in this order: the `RUST_LOG` environment variable when set and non-empty (the
//! usual Rust convention, handy for one debugging run), else the config file's
//! `[log] level`, else [`DEFAULT_LEVEL`]. Logs go to stderr so that stdout stays for the
//! readiness line and command output scripts parse; colour codes only when stderr is a
//! terminal, so redirected logs stay plain text.

use tracing_subscriber::EnvFilter;

/// The level when neither `RUST_LOG` nor the config says otherwise.
pub const DEFAULT_LEVEL: &str = "info";

/// The environment variable that overrides the configured level.
pub const ENV: &str = "RUST_LOG";

/// The `[log]` section every binary's configuration file has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Log filter (`info`, `warn,pcscf=debug`, …); `RUST_LOG` overrides it.
    /// Default [`DEFAULT_LEVEL`].
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LEVEL.into(),
        }
    }
}

impl LogConfig {
    /// [`check_level`] on `level`.
    pub fn validate(&self) -> Result<(), LogError> {
        check_level(&self.level)
    }

    /// [`init`] with `level`.
    pub fn init(&self) -> Result<(), LogError> {
        init(&self.level)
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter does not parse.
    #[error("{source_name} = {directive:?} is not a log filter (e.g. \"info\" or \"warn,pcscf=debug\"): {reason}")]
    BadFilter {
        /// Where the filter came from: `RUST_LOG` or `log.level`.
        source_name: &'static str,
        /// The filter as given.
        directive: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A global subscriber is already installed (a second [`init`] in one process).
    #[error("a log subscriber is already installed")]
    AlreadySet,
}

/// Checks a `[log] level` value without installing anything (for `config check`).
pub fn check_level(level: &str) -> Result<(), LogError> {
    parse(level, "log.level").map(drop)
}

fn parse(directive: &str, source_name: &'static str) -> Result<EnvFilter, LogError> {
    EnvFilter::builder()
        .parse(directive)
        .map_err(|e| LogError::BadFilter {
            source_name,
            directive: directive.to_string(),
            reason: e.to_string(),
        })
}

/// The filter directive in force: `RUST_LOG` if set and non-empty, else `configured`.
pub fn effective_level(configured: &str) -> (String, &'static str) {
    match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => (v, ENV),
        _ => (configured.to_string(), "log.level"),
    }
}

/// Installs the global subscriber: filter from [`effective_level`], stderr, ANSI colour only
/// on a terminal.
pub fn init(configured: &str) -> Result<(), LogError> {
    let (directive, source_name) = effective_level(configured);
    let filter = parse(&directive, source_name)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|_| LogError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_and_named() {
        check_level("info").unwrap();
        check_level("warn,pcscf=debug").unwrap();
        let e = check_level("pcscf=loud").unwrap_err().to_string();
        assert!(e.starts_with("log.level = \"pcscf=loud\""), "{e}");
    }
}
