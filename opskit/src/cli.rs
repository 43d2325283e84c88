//! The few lines every binary's `main.rs` would otherwise repeat: the exit code and error
//! line, the runtime, and waiting for the signal that stops a service.

use std::fmt::Display;
use std::process::ExitCode;

/// `SUCCESS`, or `FAILURE` after printing `<binary>: error: <e>` on stderr (with `{:#}`, so
/// an `anyhow` error shows its whole chain of causes).
pub fn exit_code<E: Display>(binary: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-threaded tokio runtime a service runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, the two ways operators and service managers
/// stop a binary. Must be called inside a tokio runtime.
pub async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fail_the_process() {
        assert_eq!(exit_code::<String>("x", Ok(())), ExitCode::SUCCESS);
        assert_eq!(exit_code("x", Err("boom")), ExitCode::FAILURE);
    }
}
