//! `imslab verify`: check a capture with tshark (see [`crate::verify`]).

use clap::Args;
use std::path::PathBuf;

use crate::verify::{self, Expect, Options};

/// Check that a capture shows a correct IMS flow.
///
/// tshark dissects CAPTURE with the ESP keys of KEYS (the `esp_sa` file the demo and the
/// P-CSCF write) and the checks run on what it shows: no malformed frame; every ESP frame
/// decrypted with a good ICV; each UE challenged (401) and registered (200); no cleartext
/// SIP to or from a UE after its first 401; every SIP request answered; every answered
/// call ACKed and ended with BYE/200; every Diameter request answered. Prints a ladder of
/// the UE legs and a verdict; exits non-zero when a check fails.
///
/// Example: `imslab verify demo-out/demo.pcap --keys demo-out/esp_sa --diameter-port 3868
/// --expect register,call,message,ipsec`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The capture (pcap or pcapng).
    capture: PathBuf,
    /// The ESP keys: Wireshark's `esp_sa` UAT file, as `imslab demo` and `pcscf`
    /// (`[ipsec] esp_sa_file`) write it.
    #[arg(long, value_name = "FILE")]
    keys: Option<PathBuf>,
    /// TCP port(s) to dissect as Diameter besides 3868 (the HSS's `listen` port).
    #[arg(long, value_name = "PORT", value_delimiter = ',')]
    diameter_port: Vec<u16>,
    /// UDP/TCP port(s) to dissect as SIP besides 5060 (tshark finds most SIP by itself).
    #[arg(long, value_name = "PORT", value_delimiter = ',')]
    sip_port: Vec<u16>,
    /// Flows that must be in the capture, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    expect: Vec<Expect>,
    /// Only print the tshark command line that the checks read.
    #[arg(long)]
    print_command: bool,
    /// Omit the ladder; print only the checks and the verdict.
    #[arg(long)]
    quiet: bool,
}

/// Runs `imslab verify`.
pub fn run(a: &VerifyArgs) -> anyhow::Result<String> {
    let opts = Options {
        keys: a.keys.clone(),
        diameter_ports: a.diameter_port.clone(),
        sip_ports: a.sip_port.clone(),
        expect: a.expect.clone(),
    };
    if a.print_command {
        let keys = match &a.keys {
            Some(k) => {
                std::fs::read_to_string(k).map_err(|e| anyhow::anyhow!("{}: {e}", k.display()))?
            }
            None => String::new(),
        };
        let args: Vec<String> = verify::tshark_args(&a.capture, &opts, &keys)
            .into_iter()
            .map(|s| format!("'{}'", s.replace('\'', "'\\''")))
            .collect();
        return Ok(format!("tshark {}", args.join(" ")));
    }
    let mut v = verify::run(&a.capture, &opts)?;
    if a.quiet {
        v.ladder.clear();
    }
    if v.passed() {
        Ok(format!("{v}\n"))
    } else {
        anyhow::bail!("the capture does not show a correct flow\n{v}")
    }
}
