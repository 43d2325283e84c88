use clap::{Parser, Subcommand};
use opskit::config::ConfigCmd;
use std::path::{Path, PathBuf};

/// Application server of IMS Lab Core: caller-ID notification, blocking and a call log.
///
/// The S-CSCF sends each subscriber's incoming calls here by an initial filter criterion
/// (terminating INVITE → sip:<this [isc] listen>). The server names the caller (asserted
/// identity, privacy, E.164, phonebook, optional reverse lookup), answers 603 to a
/// blocked caller, lets the others ring, logs every call in SQLite, and tells the world:
/// NCID clients, Fritz!Box call-monitor readers (Home Assistant), MQTT, a LAN datagram,
/// a webhook, a SIP MESSAGE, and `appserver notify-agent` on desktops.
/// It can also watch the wire instead (pcap file, live interface, NFQUEUE inline) for
/// VoIP boxes whose signalling it does not control, SIP and MGCP alike.
///
/// Quick start:
///   appserver config example > appserver.toml   # every key, its default and why
///   appserver config check appserver.toml       # validate; print the effective values
///   appserver -c appserver.toml                 # prints "appserver ready: ..." once up
///
/// Then, in the HSS, give subscribers an iFC: method INVITE, session case terminating
/// registered (1), application server sip:127.0.0.1:5070 (the default [isc] listen),
/// default handling SESSION_CONTINUED; and let the S-CSCF trust this address
/// ([isc] application_servers in pcscf.toml or scscf.toml).
///
/// Other commands:
///   appserver calls --limit 20            # the call log
///   appserver lookup +4930123456          # what a call from that number would show
///   appserver pcap capture.pcap           # notifications from a capture, then exit
///   appserver notify-agent                # desktop notifications ([agent] section)
///
/// Logs go to stderr; the level is `[log] level` in the file, overridden by RUST_LOG.
#[derive(Debug, Parser)]
#[command(name = "appserver", version, verbatim_doc_comment)]
struct Cli {
    /// Configuration file (TOML). See `appserver config example`.
    #[arg(
        short,
        long,
        global = true,
        value_name = "FILE",
        env = "APPSERVER_CONFIG"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the application server (the default).
    Run,
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the call log ([calllog] path), newest first.
    Calls {
        /// Most rows to print.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only this outcome: answered, missed, blocked, cancelled, answered_elsewhere.
        #[arg(long)]
        outcome: Option<String>,
    },
    /// Show the number, name and verdict a call from NUMBER (or a sip:/tel: URI) would get.
    Lookup {
        /// A number in any form the [numbers] plan understands, or a URI.
        number: String,
    },
    /// Read a pcap or pcapng file, notify for every call in it, print a summary and exit.
    Pcap {
        /// The capture.
        file: PathBuf,
    },
    /// Desktop agent: show a notification (D-Bus) for every ringing call the server
    /// announces by datagram or over NCID; `[agent]` in the file configures it.
    NotifyAgent,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let path = cli.config.as_deref();
    let result = match cli.cmd {
        None | Some(Cmd::Run) => run(path),
        Some(Cmd::Config(ConfigCmd::Example)) => {
            print!("{}", appserver::config::example());
            Ok(())
        }
        Some(Cmd::Config(ConfigCmd::Check { file })) => check(file.as_deref().or(path)),
        Some(Cmd::Calls { limit, outcome }) => calls(path, limit, outcome.as_deref()),
        Some(Cmd::Lookup { number }) => lookup(path, &number),
        Some(Cmd::Pcap { file }) => pcap(path, &file),
        Some(Cmd::NotifyAgent) => agent(path),
    };
    opskit::cli::exit_code("appserver", result)
}

fn load(path: Option<&Path>) -> anyhow::Result<appserver::config::Config> {
    use anyhow::Context;
    match path {
        Some(p) => {
            appserver::config::Config::load(p).with_context(|| format!("in {}", p.display()))
        }
        None => Ok(appserver::config::Config::default()),
    }
}

fn check(path: Option<&Path>) -> anyhow::Result<()> {
    let cfg = load(path)?;
    print!("{}", opskit::config::render_redacted(cfg.effective())?);
    Ok(())
}

fn calls(path: Option<&Path>, limit: usize, outcome: Option<&str>) -> anyhow::Result<()> {
    let cfg = load(path)?;
    appserver::cli::calls(&cfg.calllog, limit, outcome, &mut std::io::stdout().lock())?;
    Ok(())
}

fn lookup(path: Option<&Path>, number: &str) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let rt = opskit::cli::runtime()?;
    rt.block_on(appserver::cli::lookup(
        &cfg.sections(),
        number,
        &mut std::io::stdout().lock(),
    ))?;
    Ok(())
}

fn pcap(path: Option<&Path>, file: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    cfg.log.init()?;
    let rt = opskit::cli::runtime()?;
    rt.block_on(async {
        // The whole server but its inputs and its APIs: the capture is the input, and a
        // server running from the same file keeps its ISC, REST and metrics ports.
        let mut cfg = cfg;
        cfg.live.interface = None;
        cfg.nfqueue.queue = None;
        cfg.isc.listen.set_port(0);
        cfg.rest.listen = None;
        cfg.metrics.listen = None;
        let running = appserver::server::start(&cfg).await?;
        let pipeline = running.pipeline.clone();
        let file = file.to_path_buf();
        let passive = cfg.passive.clone();
        let summary = tokio::task::spawn_blocking(move || {
            appserver::passive::pcapin::run(&file, &passive, pipeline.as_ref())
        })
        .await??;
        // Let the sinks write what the capture produced before stopping them.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        running.stop().await;
        anyhow::ensure!(
            summary.stopped.is_none(),
            "stopped early: {:?}",
            summary.stopped
        );
        Ok(())
    })
}

fn agent(path: Option<&Path>) -> anyhow::Result<()> {
    let cfg = load(path)?;
    cfg.log.init()?;
    let rt = opskit::cli::runtime()?;
    rt.block_on(async {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(appserver::agent::run(cfg.agent.clone(), rx));
        println!("appserver notify-agent ready");
        tokio::select! {
            r = opskit::cli::shutdown_signal() => r?,
            r = task => {
                r??;
                return Ok(());
            }
        }
        let _ = stop.send(true);
        Ok(())
    })
}

fn run(path: Option<&Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    let cfg = load(path)?;
    cfg.log.init()?;
    let rt = opskit::cli::runtime().context("tokio runtime")?;
    rt.block_on(async {
        let running = appserver::server::start(&cfg).await?;
        // The line tests and scripts wait for.
        println!("appserver ready: {}", running.summary());
        opskit::cli::shutdown_signal()
            .await
            .context("signal handlers")?;
        running.stop().await;
        Ok(())
    })
}
