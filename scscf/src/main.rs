use clap::{Parser, Subcommand};
use opskit::config::ConfigCmd;
use std::path::{Path, PathBuf};

/// S-CSCF of IMS Lab Core, as its own process.
///
/// The registrar of the home network: challenges REGISTERs with AKAv1-MD5 (vectors from
/// the HSS over Cx MAR), hands CK/IK to the P-CSCF in the 401 (ck=/ik=), checks the answer,
/// assigns itself at the HSS (Cx SAR) and answers 200 OK with Service-Route and
/// P-Associated-URI. P-CSCFs reach it over SIP (UDP or TCP), like any external S-CSCF.
///
/// Quick start:
///   scscf config example > scscf.toml    # every key with its default and why, commented
///   scscf config check scscf.toml        # validate; print the effective values
///   scscf -c scscf.toml                  # prints "scscf ready: ..." once listening
///
/// Then put a P-CSCF in front of it, in proxy mode (pcscf.toml):
///   [scscf]
///   mode = "proxy"
///   address = "127.0.0.1:6060"           # this S-CSCF's [sip] listen
///
/// Without -c, built-in defaults are used (SIP on 127.0.0.1:6060, HSS at 127.0.0.1:3868).
/// The HSS must accept our Origin-Host (default scscf.<domain>) as a peer.
/// Logs go to stderr; the level is `[log] level` in the file, overridden by RUST_LOG.
#[derive(Debug, Parser)]
#[command(name = "scscf", version, verbatim_doc_comment)]
struct Cli {
    /// Configuration file (TOML). See `scscf config example`.
    #[arg(short, long, global = true, value_name = "FILE", env = "SCSCF_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the S-CSCF (the default).
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
            print!("{}", scscf::config::EXAMPLE);
            Ok(())
        }
        Some(Cmd::Config(ConfigCmd::Check { file })) => check(file.or(cli.config).as_deref()),
    };
    opskit::cli::exit_code("scscf", result)
}

fn load(path: Option<&Path>) -> anyhow::Result<scscf::config::Config> {
    use anyhow::Context;
    match path {
        Some(p) => scscf::config::Config::load(p).with_context(|| format!("in {}", p.display())),
        None => Ok(scscf::config::Config::default()),
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
        let running = scscf::shell::start(cfg).await?;
        // The line tests and scripts wait for.
        match running.metrics_addr {
            Some(m) => println!(
                "scscf ready: sip {} advertise {} metrics {m}",
                running.sip_addr, running.advertise
            ),
            None => println!(
                "scscf ready: sip {} advertise {}",
                running.sip_addr, running.advertise
            ),
        }
        opskit::cli::shutdown_signal()
            .await
            .context("signal handlers")?;
        running.stop().await;
        Ok(())
    })
}
