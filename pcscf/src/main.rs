use clap::Parser;
use std::path::PathBuf;

/// P-CSCF of IMS Lab Core, with the collapsed S-CSCF role.
///
/// Handsets register here with AKAv1-MD5 and IPsec (sec-agree); vectors and the
/// registration state come from the HSS over Cx (Diameter, TCP).
///
/// Configuration is one TOML file; every key is optional. `pcscf --print-config` prints all
/// keys with their defaults:
///
///   [sip]        listen, domain, max_message_size
///   [registrar]  min_expires, max_expires, default_expires, auth_timeout
///   [ipsec]      policy (required|optional|off), backend (kernel|userspace|auto),
///                integrity, encryption, spi_range, port_range, retire_grace_ms, esp_sa_file
///   [hss]        address, origin_host, realm, timeout_ms (collapsed mode only)
///   [scscf]      mode (collapsed|proxy), address, transport (udp|tcp), uri,
///                visited_network_id (proxy mode: forward REGISTER to that S-CSCF)
///
/// Logs go to stderr; set RUST_LOG=debug for every message.
#[derive(Debug, Parser)]
#[command(name = "pcscf", version, verbatim_doc_comment)]
struct Args {
    /// Configuration file (TOML). Without it, the defaults.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the default configuration and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.print_config {
        print!("{}", pcscf::Config::default_toml());
        return std::process::ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs redirected to files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pcscf: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    let cfg = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            pcscf::Config::from_toml(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => pcscf::Config::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let running = pcscf::shell::start(cfg).await?;
        // The line tests and scripts wait for.
        println!(
            "pcscf ready: sip {} ipsec backend {}",
            running.sip_addr, running.backend
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        running.stop().await;
        Ok(())
    })
}
