//! `imslab bench register`: full AKA registrations per second through the P-CSCF, with
//! Cx MAR + SAR to the HSS (durable SQN), IPsec off and userspace ESP side by side.
//!
//! Everything runs in this process on loopback: the network from [`crate::net`], N UEs on
//! their own loopback addresses, all starting at once. A registration is counted from the
//! UE's first REGISTER to its 200 OK (two REGISTER transactions, MAR, SAR, and with IPsec
//! the SA installs on both ends). The load is bounded by the number of UEs.

use crate::net::{self, LabNet, NetOptions, Ports};
use anyhow::Context;
use secagree::IpsecMode;
use std::fmt::Write as _;
use std::time::Duration;
use ue::{IoConfig, Step};

/// One measured run.
#[derive(Debug, Clone)]
pub struct RegisterFigures {
    /// "off", "userspace" or "kernel".
    pub backend: &'static str,
    /// UEs that registered.
    pub registered: usize,
    /// UEs that failed.
    pub failed: usize,
    /// From the first REGISTER to the last 200 OK.
    pub wall: Duration,
    /// Median registration time.
    pub p50: Duration,
    /// 99th percentile registration time.
    pub p99: Duration,
}

impl RegisterFigures {
    /// Registrations per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.registered as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Register `ues` UEs at once against a fresh network with IPsec `mode`.
pub async fn register_once(ues: usize, mode: IpsecMode) -> anyhow::Result<RegisterFigures> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let lab = LabNet::start(&NetOptions {
        subscribers: ues,
        mode,
        config_dir: dir.path().to_path_buf(),
        ports: Ports::pick()?,
        port_range: (20000, 29999),
        min_expires: 60,
        advertise: None,
    })
    .await?;
    let configs = lab.ue_configs(ues, mode != IpsecMode::Off);
    let report = ue::register_many(
        IoConfig {
            mode,
            tag: ue::ue_tag(&configs),
            ..IoConfig::default()
        },
        configs,
        &[Step::Register],
    )
    .await
    .context("run the UEs")?;
    let backend = lab.pcscf.backend;
    lab.pcscf.stop().await;
    let times = report.register_times();
    Ok(RegisterFigures {
        backend: if mode == IpsecMode::Off {
            "off"
        } else {
            backend
        },
        registered: times.len(),
        failed: report.ues.len() - times.len(),
        wall: report.wall,
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
    })
}

/// Both runs, printed side by side.
pub async fn register(ues: usize, with_ipsec: Option<IpsecMode>) -> anyhow::Result<String> {
    let mut runs = vec![register_once(ues, IpsecMode::Off).await?];
    if let Some(m) = with_ipsec {
        runs.push(register_once(ues, m).await?);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "full AKA registrations (REGISTER/401/REGISTER/200 + MAR + SAR, SQLite SQN), {ues} UEs at once, domain {}",
        net::DOMAIN
    );
    let _ = writeln!(
        out,
        "{:<10} {:>10} {:>8} {:>10} {:>12} {:>10} {:>10}",
        "ipsec", "registered", "failed", "wall", "reg/s", "p50", "p99"
    );
    for r in &runs {
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>8} {:>9.1}ms {:>12.0} {:>8.1}ms {:>8.1}ms",
            r.backend,
            r.registered,
            r.failed,
            r.wall.as_secs_f64() * 1e3,
            r.rate(),
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
    if runs.len() == 2 {
        let _ = writeln!(
            out,
            "IPsec ({}) costs {:.2}x the time of no IPsec",
            runs[1].backend,
            runs[0].rate() / runs[1].rate().max(1e-9)
        );
    }
    Ok(out)
}
