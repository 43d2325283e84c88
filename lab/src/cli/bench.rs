//! `imslab bench`: load tools that print figures.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

use super::IpsecChoice;

/// Benchmarks against an in-process network on loopback (bounded in count).
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Full AKA registrations per second through the P-CSCF (MAR + SAR to the HSS), IPsec
    /// off and (as root) userspace ESP side by side, with p50/p99 registration times.
    Register {
        /// UEs registering at once (each on its own loopback address).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=5000))]
        ues: u32,
        /// Also measure with IPsec: `auto` (kernel XFRM if the kernel can do ESP, else
        /// userspace ESP; skipped when not root), `kernel`, `userspace`, or `off` (`none`):
        /// IPsec off only.
        #[arg(long, value_enum, default_value_t = IpsecChoice::Auto)]
        ipsec: IpsecChoice,
    },
    /// Call set-ups per second through the CSCFs with SIPp UAC and UAS (INVITE/100/180/200/
    /// ACK, BYE/200, IPsec off): our `pcscf` (collapsed) and, side by side in the same run,
    /// our `pcscf` in proxy mode in front of a Kamailio 5.6 S-CSCF. The offered rate climbs
    /// through --rates until a step has failures; prints achieved set-ups/s, p50/p99
    /// INVITE → 200, the CSCF processes' CPU seconds, set-ups per CSCF core-second and the
    /// ratio ours/Kamailio. Needs `sipp`, and `kamailio` with its IMS modules for the
    /// comparison.
    Calls {
        /// Offered rates (calls/s) in climbing order, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "200,500,1000,1500,2000,2500,3000,3500,4000,5000",
              value_parser = clap::value_parser!(u32).range(1..=20000))]
        rates: Vec<u32>,
        /// Seconds of calls per step (rate × seconds calls, at most --max-calls).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=60))]
        seconds: u32,
        /// Most calls in one step.
        #[arg(long, default_value_t = 25000, value_parser = clap::value_parser!(u32).range(1..=200000))]
        max_calls: u32,
        /// Milliseconds between ACK and BYE. Not 0: over UDP a proxy with several
        /// workers (Kamailio) may pass a BYE sent right after the ACK ahead of it, and
        /// SIPp's UAS fails a call whose BYE comes first.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=60000))]
        hold_ms: u64,
        /// Our `pcscf` binary. Default: `pcscf` next to this `imslab` (cargo build
        /// --release -p pcscf --bin pcscf), else on $PATH.
        #[arg(long, value_name = "FILE")]
        pcscf: Option<PathBuf>,
        /// Measure Kamailio too: `auto` (when kamailio and its IMS modules are installed),
        /// `on` (fail without it), `off`.
        #[arg(long, value_enum, default_value_t = KamailioChoice::Auto)]
        kamailio: KamailioChoice,
        /// Kamailio's UDP worker processes.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        kamailio_children: u32,
    },
    /// The HSS alone under Cx registration load: provisions --subscribers in a fresh
    /// database with the `hss` binary, runs it, and sends MAR + SAR (REGISTRATION) pairs
    /// over Diameter at each offered rate for --seconds. Prints throughput, answers by result
    /// code, p50/p99 MAR → SAA, 3004s, timeouts, SQNs issued twice, and the HSS process's
    /// CPU (utime + stime from /proc) per registration.
    Cx {
        /// Offered registration rates (MAR + SAR pairs per second), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2500,5000",
              value_parser = clap::value_parser!(u32).range(1..=50000))]
        rates: Vec<u32>,
        /// Seconds of load per rate.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=120))]
        seconds: u32,
        /// Most registrations in one step.
        #[arg(long, default_value_t = 200000, value_parser = clap::value_parser!(u32).range(1..=1000000))]
        max_registrations: u32,
        /// Subscribers provisioned; registrations cycle through them.
        #[arg(long, default_value_t = 10000, value_parser = clap::value_parser!(u32).range(1..=1000000))]
        subscribers: u32,
        /// Diameter connections to spread the load over.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        connections: u32,
        /// The HSS's `[store] durability`.
        #[arg(long, value_enum, default_value_t = DurabilityChoice::Full)]
        durability: DurabilityChoice,
        /// The `hss` binary. Default: `hss` next to this `imslab`, else on $PATH.
        #[arg(long, value_name = "FILE")]
        hss: Option<PathBuf>,
    },
    /// Concurrent media channels per core through a media engine (issue 12): N channels of
    /// RTP at 20 ms, full duplex by default, through each engine in turn for --seconds per
    /// step, N climbing through --channels until a step loses a packet, gets the wrong
    /// payload type or has p99 added delay ≥ --p99-ms. Prints packets sent/received, loss,
    /// p50/p99/max added delay, the engine's CPU % and channels per core, and the largest
    /// passing N. Engine today: Debian's rtpengine (userspace). Scenarios: amr-pcma
    /// (rtpengine forwards AMR untranscoded: Debian's build cannot encode AMR, and it only
    /// transcodes what it can decode and encode), g729-pcma (a CELP transcode it can do),
    /// pcma-relay.
    Media {
        /// Channel counts in climbing order, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "50,100,200,400",
              value_parser = clap::value_parser!(u32).range(1..=2000))]
        channels: Vec<u32>,
        /// Seconds of streaming per step.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=300))]
        seconds: u32,
        /// Scenarios, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            value_enum,
            default_value = "amr-pcma,g729-pcma,pcma-relay"
        )]
        scenarios: Vec<MediaScenario>,
        /// Leg A → leg B only (default: both legs send).
        #[arg(long)]
        one_way: bool,
        /// Milliseconds at the start of each step left out of the delay figures.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60000))]
        warmup_ms: u64,
        /// A step passes with p99 added delay below this many milliseconds.
        #[arg(long, default_value_t = 5.0)]
        p99_ms: f64,
    },
}

/// Scenarios of `imslab bench media`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MediaScenario {
    /// AMR-NB 12.2 (octet-aligned) ⇄ PCMA.
    AmrPcma,
    /// G.729 ⇄ PCMA.
    G729Pcma,
    /// PCMA ⇄ PCMA relay.
    PcmaRelay,
}

impl MediaScenario {
    fn kind(self) -> crate::bench::media::ScenarioKind {
        use crate::bench::media::ScenarioKind;
        match self {
            MediaScenario::AmrPcma => ScenarioKind::AmrPcma,
            MediaScenario::G729Pcma => ScenarioKind::G729Pcma,
            MediaScenario::PcmaRelay => ScenarioKind::PcmaRelay,
        }
    }
}

/// `[store] durability` for `imslab bench cx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityChoice {
    /// fsync on every commit (the HSS's default).
    Full,
    /// fsync at checkpoints only.
    Normal,
}

/// Whether `imslab bench calls` measures Kamailio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KamailioChoice {
    /// When installed.
    Auto,
    /// Always; an error when not installed.
    On,
    /// Never.
    Off,
}

/// The `pcscf` binary: next to the running `imslab` (both come out of one cargo build),
/// else on $PATH.
fn default_pcscf() -> anyhow::Result<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("pcscf"))
        .filter(|p| p.is_file());
    sibling
        .or_else(|| testkit::find_bin("pcscf"))
        .context("no pcscf binary next to imslab or on $PATH: cargo build --release -p pcscf --bin pcscf, or pass --pcscf")
}

/// The `hss` binary: next to the running `imslab`, else on $PATH.
fn default_hss() -> anyhow::Result<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("hss"))
        .filter(|p| p.is_file());
    sibling
        .or_else(|| testkit::find_bin("hss"))
        .context("no hss binary next to imslab or on $PATH: cargo build --release -p hss --bin hss, or pass --hss")
}

/// Run a benchmark; the figures are returned for printing.
pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    match &args.command {
        BenchCommand::Register { ues, ipsec } => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() == 0 };
            let mode = match ipsec {
                IpsecChoice::Off => None,
                IpsecChoice::Auto if !root => {
                    eprintln!(
                        "not root: measuring without IPsec only (userspace ESP needs raw sockets)"
                    );
                    None
                }
                other => Some(other.mode()),
            };
            rt.block_on(crate::bench::register(*ues as usize, mode))
        }
        BenchCommand::Cx {
            rates,
            seconds,
            max_registrations,
            subscribers,
            connections,
            durability,
            hss,
        } => {
            drop(rt);
            let opts = crate::bench::cx::CxOptions {
                hss: match hss {
                    Some(p) => p.clone(),
                    None => default_hss()?,
                },
                subscribers: *subscribers,
                rates: rates.clone(),
                seconds: *seconds,
                max_registrations: *max_registrations,
                connections: *connections,
                durability: match durability {
                    DurabilityChoice::Full => "full",
                    DurabilityChoice::Normal => "normal",
                }
                .into(),
            };
            let steps = crate::bench::cx::cx_run(&opts)?;
            Ok(crate::bench::cx::cx_report(&opts, &steps))
        }
        BenchCommand::Calls {
            rates,
            seconds,
            max_calls,
            hold_ms,
            pcscf,
            kamailio,
            kamailio_children,
        } => {
            drop(rt);
            if testkit::sipp::bin().is_none() {
                anyhow::bail!("sipp not installed (apt-get install sip-tester)");
            }
            let kamailio = match kamailio {
                KamailioChoice::Off => false,
                KamailioChoice::On if !testkit::kamailio::scscf_available() => {
                    anyhow::bail!("kamailio or its IMS modules are not installed")
                }
                KamailioChoice::On => true,
                KamailioChoice::Auto => {
                    let there = testkit::kamailio::scscf_available();
                    if !there {
                        eprintln!("kamailio (with IMS modules) not installed: measuring ours only");
                    }
                    there
                }
            };
            let opts = crate::bench::CallsOptions {
                rates: rates.clone(),
                seconds: *seconds,
                max_calls: *max_calls,
                hold: Duration::from_millis(*hold_ms),
                pcscf: match pcscf {
                    Some(p) => p.clone(),
                    None => default_pcscf()?,
                },
                kamailio,
                kamailio_children: *kamailio_children,
            };
            let steps = crate::bench::calls_run(&opts)?;
            Ok(crate::bench::calls_report(&opts, &steps))
        }
        BenchCommand::Media {
            channels,
            seconds,
            scenarios,
            one_way,
            warmup_ms,
            p99_ms,
        } => {
            drop(rt);
            use crate::bench::media::{media_report, media_run, EngineKind, MediaOptions};
            if !p99_ms.is_finite() || *p99_ms <= 0.0 {
                anyhow::bail!("--p99-ms must be a positive number of milliseconds");
            }
            use appserver::mediaplane::CodecBackend;
            // Ours first (the ratio lines read ours/rtpengine), each backend this build has.
            let engines: Vec<EngineKind> = [
                EngineKind::Appserver(CodecBackend::Opencore),
                EngineKind::Appserver(CodecBackend::Rust),
                EngineKind::Rtpengine,
            ]
            .into_iter()
            .filter(|e| e.available())
            .collect();
            if !engines.contains(&EngineKind::Rtpengine) {
                eprintln!(
                    "imslab bench media: rtpengine not installed (apt-get install \
                     rtpengine-daemon): no anchor in this run"
                );
            }
            let opts = MediaOptions {
                channels: channels.iter().map(|&n| n as usize).collect(),
                seconds: *seconds,
                warmup: Duration::from_millis(*warmup_ms),
                p99_limit: Duration::from_secs_f64(p99_ms / 1e3),
                duplex: !*one_way,
                engines,
                scenarios: scenarios.iter().map(|s| s.kind()).collect(),
            };
            let steps = media_run(&opts)?;
            Ok(media_report(&opts, &steps))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn ipsec(v: &str) -> Result<IpsecChoice, clap::Error> {
        let cli = crate::cli::Cli::try_parse_from(["imslab", "bench", "register", "--ipsec", v])?;
        match cli.command {
            crate::cli::Command::Bench(BenchArgs {
                command: BenchCommand::Register { ipsec, .. },
            }) => Ok(ipsec),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn calls_takes_a_rate_list() {
        let cli = crate::cli::Cli::try_parse_from([
            "imslab",
            "bench",
            "calls",
            "--rates",
            "20,50",
            "--seconds",
            "2",
            "--kamailio",
            "off",
        ])
        .unwrap();
        match cli.command {
            crate::cli::Command::Bench(BenchArgs {
                command:
                    BenchCommand::Calls {
                        rates,
                        seconds,
                        kamailio,
                        ..
                    },
            }) => {
                assert_eq!(rates, vec![20, 50]);
                assert_eq!(seconds, 2);
                assert_eq!(kamailio, KamailioChoice::Off);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            ["--rates", "0"],
            ["--seconds", "0"],
            ["--kamailio", "maybe"],
        ] {
            let mut argv = vec!["imslab", "bench", "calls"];
            argv.extend(bad);
            assert!(crate::cli::Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cx_takes_rates_and_durability() {
        let cli = crate::cli::Cli::try_parse_from([
            "imslab",
            "bench",
            "cx",
            "--rates",
            "2500,5000",
            "--durability",
            "normal",
            "--subscribers",
            "300",
        ])
        .unwrap();
        match cli.command {
            crate::cli::Command::Bench(BenchArgs {
                command:
                    BenchCommand::Cx {
                        rates,
                        durability,
                        subscribers,
                        seconds,
                        ..
                    },
            }) => {
                assert_eq!(rates, vec![2500, 5000]);
                assert_eq!(durability, DurabilityChoice::Normal);
                assert_eq!(subscribers, 300);
                assert_eq!(seconds, 10);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            ["--rates", "0"],
            ["--durability", "off"],
            ["--connections", "0"],
        ] {
            let mut argv = vec!["imslab", "bench", "cx"];
            argv.extend(bad);
            assert!(crate::cli::Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn media_takes_a_channel_ladder_and_scenarios() {
        let cli = crate::cli::Cli::try_parse_from([
            "imslab",
            "bench",
            "media",
            "--channels",
            "20,40",
            "--seconds",
            "2",
            "--scenarios",
            "g729-pcma,pcma-relay",
            "--one-way",
        ])
        .unwrap();
        match cli.command {
            crate::cli::Command::Bench(BenchArgs {
                command:
                    BenchCommand::Media {
                        channels,
                        seconds,
                        scenarios,
                        one_way,
                        warmup_ms,
                        p99_ms,
                    },
            }) => {
                assert_eq!(channels, vec![20, 40]);
                assert_eq!(seconds, 2);
                assert_eq!(
                    scenarios,
                    vec![MediaScenario::G729Pcma, MediaScenario::PcmaRelay]
                );
                assert!(one_way);
                assert_eq!((warmup_ms, p99_ms), (1000, 5.0));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            ["--channels", "0"],
            ["--seconds", "0"],
            ["--scenarios", "opus"],
        ] {
            let mut argv = vec!["imslab", "bench", "media"];
            argv.extend(bad);
            assert!(crate::cli::Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipsec_is_the_shared_choice() {
        assert_eq!(ipsec("userspace").unwrap(), IpsecChoice::Userspace);
        assert_eq!(ipsec("off").unwrap(), IpsecChoice::Off);
        assert_eq!(ipsec("none").unwrap(), IpsecChoice::Off);
        assert!(ipsec("esp").is_err());
    }
}
