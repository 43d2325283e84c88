//! `imslab up`: the core for a real lab from one file; see [`crate::up`].

use crate::up::{self, LabConfig};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// Run HSS and P-CSCF (with its S-CSCF) for a real lab from one file.
///
/// Reads lab.toml (`imslab up --example` prints every key), checks the P-CSCF address is
/// this host's, the ports are free and the SIM CSV parses, writes hss.toml and pcscf.toml
/// into [out] dir, imports the CSV, starts everything and prints what to set in the EPC
/// and on the handsets. Runs until SIGINT or SIGTERM; prints `imslab up: ready` when the
/// core listens. Needs root for IPsec.
///
/// Example: `imslab up --example > lab.toml`, edit it, then `imslab up --config lab.toml
/// --check`, then `imslab up --config lab.toml`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The lab file.
    #[arg(long, value_name = "FILE", required_unless_present = "example")]
    config: Option<PathBuf>,
    /// Only check (address, ports, CSV) and print the generated configurations.
    #[arg(long)]
    check: bool,
    /// Print a lab.toml with every key and its default, and exit.
    #[arg(long)]
    example: bool,
}

/// Runs `imslab up`.
pub fn run(a: &UpArgs) -> anyhow::Result<String> {
    if a.example {
        return Ok(up::EXAMPLE.to_string());
    }
    let path = a.config.as_ref().context("--config FILE")?;
    let cfg = LabConfig::load(path)?;
    let checks = up::check(&cfg);
    let mut report = String::new();
    for c in &checks {
        report.push_str(&format!(
            "{} {}\n",
            if c.ok { "[ok]  " } else { "[FAIL]" },
            c.what
        ));
    }
    let failed = checks.iter().any(|c| !c.ok);
    if a.check {
        report.push_str(&format!(
            "\n# hss.toml\n{}\n# pcscf.toml\n{}",
            cfg.hss_toml(),
            cfg.pcscf_toml()
        ));
        if failed {
            anyhow::bail!("{report}\nimslab up: the checks failed");
        }
        return Ok(report);
    }
    if failed {
        anyhow::bail!("{report}\nimslab up: the checks failed; nothing was started");
    }
    print!("{report}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let running = up::start(&cfg).await?;
        println!("{}", running.summary);
        println!("imslab up: ready (SIP {})", cfg.sip_addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        running.pcscf.stop().await;
        anyhow::Ok(())
    })?;
    Ok("imslab up: stopped; IPsec state removed\n".into())
}
