//! `hss` binary: parses the command line and config, then wires the library together.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hss::config::{Config, EXAMPLE};
use hss::provision::NewSubscriber;
use hss::store::{Impu, Store};
use opskit::config::ConfigCmd;
use std::io::Write;
use std::path::PathBuf;

/// IMS HSS for labs: Cx over Diameter (UAR/MAR/SAR/LIR, RTR/PPR) with Milenage AKA vectors
/// whose SQNs are committed to SQLite before any answer leaves, plus provisioning by CLI,
/// REST API and SIM card CSV import.
///
/// Quick start:
///   hss config example > hss.toml          # every setting with its default, commented
///   hss -c hss.toml subscriber add --imsi 001010000000001 \
///       --ki 465B5CE8B199B49FAA5F0A2EE238A6BC --opc CD63CB71954A9F4E48A5994E37A02BAF \
///       --msisdn 491701234567
///   hss -c hss.toml subscriber import cards.csv   # IMSI/ICCID/Ki/OPc(or OP)/MSISDN columns
///   hss -c hss.toml run                    # prints "hss ready ..." once listening
///   hss config check hss.toml              # validate; print the effective values, secrets redacted
///
/// Without -c, built-in defaults are used (Diameter on 127.0.0.1:3868, ./hss.db).
/// Logs go to stderr; the level is `[log] level` in the file, overridden by RUST_LOG.
#[derive(Parser)]
#[command(name = "hss", version, verbatim_doc_comment)]
struct Cli {
    /// Configuration file (TOML). See `hss config example`.
    #[arg(short, long, global = true, env = "HSS_CONFIG")]
    config: Option<PathBuf>,
    /// Database file, overriding `[store] path`.
    #[arg(long, global = true, env = "HSS_DB")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the HSS (the default): Diameter Cx server and, if configured, the REST API.
    Run,
    /// Provision subscribers directly in the database (safe while the HSS runs).
    #[command(subcommand)]
    Subscriber(Box<SubCmd>),
    /// Shared iFC profiles (attached to subscribers with --profile).
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Subcommand)]
enum ProfileCmd {
    /// Create or replace a profile from a file: a JSON array of iFCs (the REST API's form) or
    /// a TS 29.228 User-Data XML document (the iFCs of all its ServiceProfiles are taken).
    /// Registered users are not notified from the CLI; use PUT /api/v1/profiles/NAME for PPR.
    Put {
        /// Profile name.
        name: String,
        /// JSON or XML file.
        file: PathBuf,
    },
    /// Print a profile as JSON and as User-Data XML iFCs.
    Show {
        /// Profile name.
        name: String,
    },
}

#[derive(Subcommand)]
enum SubCmd {
    /// Add a subscriber. IMPI defaults to <IMSI>@ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org (or
    /// <IMSI>@<[ims] domain>); IMPUs default to sip:<IMSI>@<domain>, and with an MSISDN also
    /// sip:+<MSISDN>@<domain> and tel:+<MSISDN>, in one implicit registration set.
    Add(Box<AddArgs>),
    /// Show one subscriber (by IMPI, IMSI, MSISDN or IMPU) as JSON; K/OPc masked.
    Show {
        /// IMPI, IMSI, MSISDN or IMPU.
        id: String,
        /// Print K and OPc in clear.
        #[arg(long)]
        show_secrets: bool,
    },
    /// List IMPIs.
    List,
    /// Delete a subscriber (no RTR is sent from the CLI; use the REST API for that).
    Delete {
        /// IMPI, IMSI, MSISDN or IMPU.
        id: String,
    },
    /// Import a SIM card data CSV (as pySim or card vendors write them). Columns are matched
    /// case-insensitively in any order: IMSI, ICCID, Ki, OPc or OP, MSISDN, and optionally
    /// AMF, SQN, IMPI, IMPU (space or | separated). Other columns (PIN, PUK, ADM...) are
    /// ignored. Use - for standard input.
    Import {
        /// CSV file, or - for stdin.
        file: PathBuf,
        /// Shared iFC profile to attach to every imported subscriber.
        #[arg(long)]
        profile: Option<String>,
        /// Replace subscribers that already exist (keeps their SQN and registration).
        #[arg(long)]
        update: bool,
    },
}

#[derive(Args)]
struct AddArgs {
    /// IMSI (digits).
    #[arg(long)]
    imsi: Option<String>,
    /// Private identity, if the ISIM holds something else than the IMSI-derived one.
    #[arg(long)]
    impi: Option<String>,
    /// Subscriber key K, 32 hex digits.
    #[arg(long, alias = "k")]
    ki: String,
    /// OPc, 32 hex digits.
    #[arg(long, conflicts_with = "op", required_unless_present = "op")]
    opc: Option<String>,
    /// OP, 32 hex digits (OPc is computed; only OPc is stored).
    #[arg(long)]
    op: Option<String>,
    /// AMF, 4 hex digits (default from [aka] default_amf).
    #[arg(long)]
    amf: Option<String>,
    /// SQN to start from (last issued).
    #[arg(long)]
    sqn: Option<u64>,
    /// MSISDN.
    #[arg(long)]
    msisdn: Option<String>,
    /// ICCID.
    #[arg(long)]
    iccid: Option<String>,
    /// Public identity (repeat for several); replaces the defaults. Suffixes: `;irs=N` puts it
    /// in implicit registration set N (default 0), `;barred` bars it,
    /// e.g. `--impu 'sip:alice@ims.lab' --impu 'tel:+491701234567' --impu 'sip:ops@ims.lab;irs=1;barred'`.
    #[arg(long = "impu")]
    impus: Vec<String>,
    /// Shared iFC profile name.
    #[arg(long)]
    profile: Option<String>,
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    load_config_from(cli, cli.config.as_deref())
}

fn load_config_from(cli: &Cli, path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let mut c = match path {
        Some(p) => Config::load(p)?,
        None => {
            let mut c = Config::default();
            c.rest.token = std::env::var("HSS_REST_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
            c
        }
    };
    if let Some(db) = &cli.db {
        c.store.path = db.clone();
    }
    c.validate()?;
    Ok(c)
}

fn defaults(c: &Config) -> anyhow::Result<hss::provision::Defaults> {
    Ok(hss::provision::Defaults {
        domain: c.ims.domain.clone(),
        mnc_digits: c.ims.mnc_digits,
        amf: c.default_amf()?,
    })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One line on stderr like the other binaries, never a backtrace for a user mistake.
    match dispatch(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hss: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    match cli.cmd.as_ref().unwrap_or(&Cmd::Run) {
        Cmd::Config(ConfigCmd::Example) => {
            print!("{EXAMPLE}");
            Ok(())
        }
        Cmd::Config(ConfigCmd::Check { file }) => {
            let c = load_config_from(cli, file.as_deref().or(cli.config.as_deref()))?;
            print!("{}", opskit::config::render_redacted(&c)?);
            Ok(())
        }
        Cmd::Run => run(logged(load_config(cli)?)?),
        Cmd::Subscriber(s) => subscriber(&logged(load_config(cli)?)?, s),
        Cmd::Profile(p) => profile(&logged(load_config(cli)?)?, p),
    }
}

/// Starts logging as the configuration says, and hands it on.
fn logged(c: Config) -> anyhow::Result<Config> {
    c.log.init()?;
    Ok(c)
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.diameter.threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (hss, l) = hss::server::start(&cfg).await?;
        let rest = l.rest.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        // The line tests and scripts wait for.
        println!("hss ready diameter={} rest={} db={}", l.diameter, rest, cfg.store.path.display());
        std::io::stdout().flush()?;
        tracing::info!(diameter = %l.diameter, %rest, origin_host = %cfg.origin_host, "HSS running");
        wait_for_shutdown().await?;
        tracing::info!("shutting down: DPR to the Diameter peers");
        // SQNs are already on disk; this only lets the S-CSCFs see a clean disconnect.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), hss.diameter.disconnect_all()).await;
        Ok(())
    })
}

fn profile(cfg: &Config, cmd: &ProfileCmd) -> anyhow::Result<()> {
    let mut store = Store::open(&cfg.store.path, cfg.store.durability)
        .with_context(|| format!("opening {}", cfg.store.path.display()))?;
    match cmd {
        ProfileCmd::Put { name, file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let ifcs: Vec<ifc::InitialFilterCriteria> = if text.trim_start().starts_with('<') {
                ifc::ImsSubscription::from_xml(&text)?
                    .service_profiles
                    .into_iter()
                    .flat_map(|sp| sp.initial_filter_criteria)
                    .collect()
            } else {
                serde_json::from_str(&text).context("expected a JSON array of iFCs")?
            };
            store.put_profile(name, &ifcs)?;
            println!("profile {name}: {} iFCs", ifcs.len());
        }
        ProfileCmd::Show { name } => {
            let ifcs = store
                .profile(name)?
                .with_context(|| format!("no profile {name}"))?;
            println!("{}", serde_json::to_string_pretty(&ifcs)?);
        }
    }
    Ok(())
}

/// `URI[;irs=N][;barred]` from the command line.
fn parse_impu(arg: &str) -> anyhow::Result<Impu> {
    let mut parts = arg.split(';');
    let uri = parts.next().unwrap_or_default().trim().to_string();
    let mut impu = Impu {
        uri,
        irs: 0,
        barred: false,
        display_name: None,
    };
    for p in parts {
        match p.trim().split_once('=') {
            Some(("irs", n)) => impu.irs = n.parse().with_context(|| format!("irs in {arg:?}"))?,
            None if p.trim() == "barred" => impu.barred = true,
            _ => anyhow::bail!("unknown IMPU option {p:?} in {arg:?} (irs=N or barred)"),
        }
    }
    Ok(impu)
}

/// SIGINT or SIGTERM.
async fn wait_for_shutdown() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

fn subscriber(cfg: &Config, cmd: &SubCmd) -> anyhow::Result<()> {
    let mut store = Store::open(&cfg.store.path, cfg.store.durability)
        .with_context(|| format!("opening {}", cfg.store.path.display()))?;
    match cmd {
        SubCmd::Add(a) => {
            let n = NewSubscriber {
                impi: a.impi.clone(),
                imsi: a.imsi.clone(),
                iccid: a.iccid.clone(),
                msisdn: a.msisdn.clone(),
                k: a.ki.clone(),
                opc: a.opc.clone(),
                op: a.op.clone(),
                amf: a.amf.clone(),
                sqn: a.sqn,
                impus: if a.impus.is_empty() {
                    None
                } else {
                    Some(
                        a.impus
                            .iter()
                            .map(|u| parse_impu(u))
                            .collect::<anyhow::Result<_>>()?,
                    )
                },
                ifcs: vec![],
                profile: a.profile.clone(),
                shared_ifc_set_ids: vec![],
            };
            let s = n.build(&defaults(cfg)?).map_err(anyhow::Error::msg)?;
            store.add(&s)?;
            println!("{}", serde_json::to_string_pretty(&s.masked())?);
        }
        SubCmd::Show { id, show_secrets } => {
            let s = store
                .find(id)?
                .with_context(|| format!("no subscriber {id}"))?;
            let v = if *show_secrets {
                serde_json::to_value(&s)?
            } else {
                s.masked()
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        SubCmd::List => {
            for i in store.list()? {
                println!("{i}");
            }
        }
        SubCmd::Delete { id } => {
            let s = store
                .find(id)?
                .with_context(|| format!("no subscriber {id}"))?;
            store.delete(&s.impi)?;
            println!("deleted {}", s.impi);
        }
        SubCmd::Import {
            file,
            profile,
            update,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let d = hss::csv::ImportDefaults {
                domain: cfg.ims.domain.clone(),
                mnc_digits: cfg.ims.mnc_digits,
                amf: cfg.default_amf()?,
                profile: profile.clone(),
            };
            let r = match hss::csv::import(&mut store, &text, &d, *update) {
                Ok(r) => r,
                Err(e @ hss::csv::ImportError::Store { .. }) => {
                    anyhow::bail!("{e}; --update replaces existing ones")
                }
                Err(e) => return Err(e.into()),
            };
            println!(
                "imported {} new, {} updated, from {} rows",
                r.added, r.updated, r.rows
            );
        }
    }
    Ok(())
}
