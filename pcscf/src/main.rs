use clap::{Parser, Subcommand};
use opskit::config::ConfigCmd;
use std::path::{Path, PathBuf};

/// P-CSCF of IMS Lab Core, with the collapsed S-CSCF role.
///
/// Handsets register here with AKAv1-MD5 and IPsec (sec-agree); vectors and the
/// registration state come from the HSS over Cx (Diameter, TCP).
///
/// Quick start:
///   pcscf config example > pcscf.toml    # every key with its default and why, commented
///   pcscf config check pcscf.toml        # validate; print the effective values
///   pcscf -c pcscf.toml                  # prints "pcscf ready: ..." once listening
///
/// Without -c, built-in defaults are used (SIP on 127.0.0.1:5060, HSS at 127.0.0.1:3868).
/// Logs go to stderr; the level is `[log] level` in the file, overridden by RUST_LOG.
#[derive(Debug, Parser)]
#[command(name = "pcscf", version, verbatim_doc_comment)]
struct Cli {
    /// Configuration file (TOML). See `pcscf config example`.
    #[arg(short, long, global = true, value_name = "FILE", env = "PCSCF_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the P-CSCF (the default).
    Run,
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        None | Some(Cmd::Run) => run(cli.config.as_deref()),
        Some(Cmd::Config(ConfigCmd::Example)) => {
            print!("{}", pcscf::config::EXAMPLE);
            Ok(())
        }
        Some(Cmd::Config(ConfigCmd::Check { file })) => check(file.or(cli.config).as_deref()),
    };
    opskit::cli::exit_code("pcscf", result)
}

fn load(path: Option<&Path>) -> anyhow::Result<pcscf::Config> {
    use anyhow::Context;
    match path {
        Some(p) => pcscf::Config::load(p).with_context(|| format!("in {}", p.display())),
        None => Ok(pcscf::Config::default()),
    }
}

fn check(path: Option<&Path>) -> anyhow::Result<()> {
    let cfg = load(path)?;
    print!("{}", opskit::config::render_redacted(&cfg.effective())?);
    Ok(())
}

fn run(path: Option<&Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    let cfg = load(path)?;
    cfg.log.init()?;
    let rt = opskit::cli::runtime().context("tokio runtime")?;
    rt.block_on(async {
        let running = pcscf::shell::start(cfg).await?;
        // The line tests and scripts wait for.
        println!(
            "pcscf ready: sip {} ipsec backend {}",
            running.sip_addr, running.backend
        );
        opskit::cli::shutdown_signal()
            .await
            .context("signal handlers")?;
        running.stop().await;
        Ok(())
    })
}
