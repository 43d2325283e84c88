//! tshark fixture (Debian `tshark` 4.0): capture on loopback and dissect.
//!
//! - [`Capture::start`] runs `tshark -i lo -f "<BPF>" -w file.pcap` with an
//!   autostop bound (`-a duration:N`) and waits for `Capturing on` before
//!   returning; [`Capture::stop`] sends SIGINT (tshark/dumpcap flush and close
//!   the file) and waits, bounded.
//! - [`dissect`] reads a pcap with decode-as rules (`-d tcp.port==N,diameter`,
//!   `-d udp.port==N,sip`: our ports are not the well-known ones) and
//!   `-T fields`, and returns the number of packets, the number of
//!   **malformed** packets (`_ws.malformed`: the acceptance criterion for
//!   "Wireshark dissects it cleanly"), the Diameter commands (code, request
//!   flag, application) and SIP methods and status codes seen, in order.
//!   Several Diameter messages or SIP messages in one frame are all reported.
//! - Extra `-o` preferences go through [`DissectOptions::prefs`]; [`esp_prefs`]
//!   builds the ESP ones (decryption + ICV check on, one `uat:esp_sa:` record
//!   per [`EspSa`], several records allowed) and [`Dissection`] counts ESP
//!   frames and good/bad ICVs. Verified with handcrafted NULL/HMAC-SHA-1-96
//!   packets: a good ICV, a bad ICV, and the SIP inside dissected.
//!
//! Capturing needs root or `CAP_NET_RAW` (dumpcap): ask
//! [`crate::require_root`] first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, TestDir};
use crate::Error;

/// Path of `tshark`, if installed.
pub fn bin() -> Option<PathBuf> {
    crate::find_bin("tshark")
}

fn tshark() -> Result<PathBuf, Error> {
    bin().ok_or_else(|| Error::Failed {
        what: "find tshark".into(),
        detail: "not installed (apt-get install tshark)".into(),
    })
}

/// BPF filter matching any of `ports` (TCP, UDP or SCTP).
pub fn port_filter(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("port {p}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Pause before stopping a capture (see [`Capture::stop`]).
pub const STOP_SETTLE: Duration = Duration::from_millis(1200);

/// A running capture. Dropping it without [`Capture::stop`] kills tshark
/// (the pcap may then be truncated).
#[derive(Debug)]
pub struct Capture {
    guard: ChildGuard,
    pcap: PathBuf,
    _dir: TestDir,
}

impl Capture {
    /// Starts capturing on `iface` (usually `lo`) with BPF `filter` into
    /// `pcap`, stopping by itself after `max_duration` at the latest. Returns
    /// once tshark reports it is capturing (at most 15 s).
    pub fn start(
        iface: &str,
        filter: &str,
        pcap: &Path,
        max_duration: Duration,
    ) -> Result<Self, Error> {
        let dir = TestDir::new("tshark")?;
        let mut cmd = Command::new(tshark()?);
        cmd.args(["-n", "-q", "-i", iface, "-f", filter, "-w"])
            .arg(pcap)
            .arg("-a")
            .arg(format!("duration:{}", max_duration.as_secs().max(1)));
        let mut guard = ChildGuard::spawn("tshark", &mut cmd, &dir.join("tshark.log"))?;
        guard.wait_for_log("Capturing on", Duration::from_secs(15))?;
        // dumpcap announces itself just before its first read: give it a moment.
        std::thread::sleep(Duration::from_millis(150));
        Ok(Self {
            guard,
            pcap: pcap.to_path_buf(),
            _dir: dir,
        })
    }

    /// Captures loopback traffic on `ports` into `pcap` (bounded to 10 minutes).
    pub fn loopback(ports: &[u16], pcap: &Path) -> Result<Self, Error> {
        Self::start("lo", &port_filter(ports), pcap, Duration::from_secs(600))
    }

    /// Stops the capture (SIGINT, up to 10 s) and returns the pcap path.
    ///
    /// Waits [`STOP_SETTLE`] first: dumpcap reads the kernel's packet ring in
    /// blocks with a timeout, and packets still in the ring when SIGINT
    /// arrives are lost (seen here: the last ~5 packets of a flow missing
    /// with a 200 ms settle).
    pub fn stop(mut self) -> Result<PathBuf, Error> {
        std::thread::sleep(STOP_SETTLE);
        self.guard.signal_group(libc::SIGINT);
        self.guard.wait_timeout(Duration::from_secs(10))?;
        if !self.pcap.is_file() {
            return Err(Error::Failed {
                what: "tshark capture".into(),
                detail: format!("no pcap written\n{}", self.guard.log_tail(20)),
            });
        }
        Ok(self.pcap.clone())
    }

    /// tshark's own output (errors, packet count).
    pub fn log(&self) -> String {
        self.guard.log()
    }
}

/// A "decode as" rule: `-d <layer>.port==<port>,<protocol>`.
#[derive(Clone, Debug)]
pub struct DecodeAs {
    /// `tcp`, `udp` or `sctp`.
    pub layer: &'static str,
    /// Port.
    pub port: u16,
    /// Dissector name: `diameter`, `sip`, ...
    pub protocol: &'static str,
}

impl DecodeAs {
    /// Diameter on TCP `port`.
    pub fn diameter_tcp(port: u16) -> Self {
        Self {
            layer: "tcp",
            port,
            protocol: "diameter",
        }
    }
    /// SIP on UDP `port`.
    pub fn sip_udp(port: u16) -> Self {
        Self {
            layer: "udp",
            port,
            protocol: "sip",
        }
    }
    /// SIP on TCP `port`.
    pub fn sip_tcp(port: u16) -> Self {
        Self {
            layer: "tcp",
            port,
            protocol: "sip",
        }
    }
}

/// Options of [`dissect`].
#[derive(Clone, Debug, Default)]
pub struct DissectOptions {
    /// Decode-as rules.
    pub decode_as: Vec<DecodeAs>,
    /// `-o` preferences, each `name:value`.
    pub prefs: Vec<String>,
    /// Optional display filter (`-Y`).
    pub display_filter: Option<String>,
}

/// One Diameter message seen in a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiameterSeen {
    /// Frame number.
    pub frame: u64,
    /// Command code (257 CER/CEA, 280 DWR/DWA, 282 DPR/DPA, 300–305 Cx).
    pub code: u32,
    /// R flag.
    pub request: bool,
    /// Application-Id of the header.
    pub app: u32,
}

/// Summary of a dissected pcap.
#[derive(Clone, Debug, Default)]
pub struct Dissection {
    /// Number of frames (after the display filter, if any).
    pub packets: usize,
    /// Frames with a malformed-packet marker.
    pub malformed: usize,
    /// Frame numbers of those.
    pub malformed_frames: Vec<u64>,
    /// Diameter messages in order.
    pub diameter: Vec<DiameterSeen>,
    /// SIP request methods in order.
    pub sip_methods: Vec<String>,
    /// SIP response status codes in order.
    pub sip_status: Vec<u16>,
    /// Frames carrying ESP.
    pub esp_packets: usize,
    /// ESP frames whose ICV tshark verified as good (needs [`esp_prefs`]).
    pub esp_icv_good: usize,
    /// ESP frames whose ICV tshark found bad.
    pub esp_icv_bad: usize,
}

impl Dissection {
    /// Diameter command codes of requests (`request == true`) or answers.
    pub fn diameter_codes(&self, request: bool) -> Vec<u32> {
        self.diameter
            .iter()
            .filter(|d| d.request == request)
            .map(|d| d.code)
            .collect()
    }
}

const FIELDS: &[&str] = &[
    "frame.number",
    "_ws.malformed",
    "diameter.cmd.code",
    "diameter.flags.request",
    "diameter.applicationId",
    "sip.Method",
    "sip.Status-Code",
    "esp.spi",
    "esp.icv_good",
    "esp.icv_bad",
];

/// The tshark arguments [`dissect`] uses (for reproducing by hand).
pub fn dissect_args(pcap: &Path, opts: &DissectOptions) -> Vec<String> {
    let mut a = vec!["-n".to_string(), "-r".into(), pcap.display().to_string()];
    for d in &opts.decode_as {
        a.push("-d".into());
        a.push(format!("{}.port=={},{}", d.layer, d.port, d.protocol));
    }
    for p in &opts.prefs {
        a.push("-o".into());
        a.push(p.clone());
    }
    if let Some(f) = &opts.display_filter {
        a.push("-Y".into());
        a.push(f.clone());
    }
    a.extend(
        [
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
        ]
        .map(String::from),
    );
    for f in FIELDS {
        a.push("-e".into());
        a.push((*f).into());
    }
    a
}

/// Runs tshark on `pcap` and summarises it (see the module docs). Bounded to 60 s.
pub fn dissect(pcap: &Path, opts: &DissectOptions) -> Result<Dissection, Error> {
    let dir = TestDir::new("tshark-read")?;
    let mut cmd = Command::new(tshark()?);
    cmd.args(dissect_args(pcap, opts));
    let log = dir.join("out.tsv");
    let mut guard = ChildGuard::spawn("tshark -r", &mut cmd, &log)?;
    let st = guard.wait_timeout(Duration::from_secs(60))?;
    let out = guard.log();
    if !st.success() {
        return Err(Error::Failed {
            what: format!("tshark {}", dissect_args(pcap, opts).join(" ")),
            detail: out,
        });
    }
    parse_fields(&out)
}

fn split(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn num<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|_| Error::parse(what, format!("not a number: {s:?}")))
}

fn is_true(s: &str) -> bool {
    matches!(s, "1" | "True" | "true")
}

/// Encryption algorithm names of tshark's `esp_sa` UAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EspEncryption {
    /// NULL (RFC 2410).
    Null,
    /// AES-CBC with 128-bit key (RFC 3602).
    AesCbc,
    /// 3DES-CBC (RFC 2451).
    TripleDesCbc,
}

impl EspEncryption {
    fn uat_name(self) -> &'static str {
        match self {
            EspEncryption::Null => "NULL",
            EspEncryption::AesCbc => "AES-CBC [RFC3602]",
            EspEncryption::TripleDesCbc => "TripleDES-CBC [RFC2451]",
        }
    }
}

/// Authentication algorithm names of tshark's `esp_sa` UAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EspAuth {
    /// NULL.
    Null,
    /// HMAC-MD5-96 (RFC 2403).
    HmacMd5_96,
    /// HMAC-SHA-1-96 (RFC 2404).
    HmacSha1_96,
}

impl EspAuth {
    fn uat_name(self) -> &'static str {
        match self {
            EspAuth::Null => "NULL",
            EspAuth::HmacMd5_96 => "HMAC-MD5-96 [RFC2403]",
            EspAuth::HmacSha1_96 => "HMAC-SHA-1-96 [RFC2404]",
        }
    }
}

/// One security association for tshark's ESP decryption (`esp_sa` UAT).
#[derive(Clone, Debug)]
pub struct EspSa {
    /// Source address of the SA's packets.
    pub src: std::net::IpAddr,
    /// Destination address.
    pub dst: std::net::IpAddr,
    /// SPI.
    pub spi: u32,
    /// Encryption algorithm.
    pub encryption: EspEncryption,
    /// Encryption key (empty for NULL).
    pub enc_key: Vec<u8>,
    /// Authentication algorithm.
    pub auth: EspAuth,
    /// Authentication key (IK, or IK ‖ 0^32 for HMAC-SHA-1-96, TS 33.203 Annex I).
    pub auth_key: Vec<u8>,
}

impl EspSa {
    /// The 8-column UAT record: `"IPv4","src","dst","0xSPI","ENC","0xKEY","AUTH","0xKEY"`.
    pub fn uat_record(&self) -> String {
        let hex = |k: &[u8]| {
            if k.is_empty() {
                String::new()
            } else {
                format!(
                    "0x{}",
                    k.iter().map(|b| format!("{b:02x}")).collect::<String>()
                )
            }
        };
        let family = if self.src.is_ipv4() { "IPv4" } else { "IPv6" };
        format!(
            "\"{family}\",\"{}\",\"{}\",\"0x{:08x}\",\"{}\",\"{}\",\"{}\",\"{}\"",
            self.src,
            self.dst,
            self.spi,
            self.encryption.uat_name(),
            hex(&self.enc_key),
            self.auth.uat_name(),
            hex(&self.auth_key)
        )
    }
}

/// `-o` preferences that make tshark decrypt ESP and check ICVs with `sas`
/// (for [`DissectOptions::prefs`]); one `uat:esp_sa:` record per SA.
pub fn esp_prefs(sas: &[EspSa]) -> Vec<String> {
    let mut p = vec![
        "esp.enable_encryption_decode:TRUE".to_string(),
        "esp.enable_authentication_check:TRUE".to_string(),
    ];
    p.extend(
        sas.iter()
            .map(|sa| format!("uat:esp_sa:{}", sa.uat_record())),
    );
    p
}

/// Parses the `-T fields` output of [`dissect_args`]. Lines that are not
/// field rows (tshark warnings on stderr share the log) are ignored.
pub fn parse_fields(out: &str) -> Result<Dissection, Error> {
    let mut d = Dissection::default();
    for line in out.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != FIELDS.len() {
            continue;
        }
        let Ok(frame) = cols[0].trim().parse::<u64>() else {
            continue;
        };
        d.packets += 1;
        if !cols[1].trim().is_empty() {
            d.malformed += 1;
            d.malformed_frames.push(frame);
        }
        let codes: Vec<&str> = split(cols[2]).collect();
        let reqs: Vec<&str> = split(cols[3]).collect();
        let apps: Vec<&str> = split(cols[4]).collect();
        for (i, c) in codes.iter().enumerate() {
            let request = match reqs.get(i).copied() {
                Some("1") | Some("True") | Some("true") => true,
                Some("0") | Some("False") | Some("false") | None => false,
                Some(other) => {
                    return Err(Error::parse("diameter.flags.request", other.to_string()))
                }
            };
            d.diameter.push(DiameterSeen {
                frame,
                code: num("diameter.cmd.code", c)?,
                request,
                app: match apps.get(i) {
                    Some(a) => num("diameter.applicationId", a)?,
                    None => 0,
                },
            });
        }
        d.sip_methods.extend(split(cols[5]).map(String::from));
        for s in split(cols[6]) {
            d.sip_status.push(num("sip.Status-Code", s)?);
        }
        if split(cols[7]).next().is_some() {
            d.esp_packets += 1;
        }
        if split(cols[8]).any(is_true) {
            d.esp_icv_good += 1;
        }
        if split(cols[9]).any(is_true) {
            d.esp_icv_bad += 1;
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_field_rows() {
        let out = "Running as user \"root\"\n\
                   1\t\t257\t1\t0\t\t\t\t\t\n\
                   2\t\t257,280\t0,1\t0,0\t\t\t\t\t\n\
                   3\t\t\t\t\tOPTIONS\t\t0x100\t1\t\n\
                   4\t\t\t\t\t\t200\t\t\t\n\
                   5\t1\t\t\t\t\t\t0x100\t\t1\n";
        let d = parse_fields(out).unwrap();
        assert_eq!(d.packets, 5);
        assert_eq!(d.malformed, 1);
        assert_eq!(d.malformed_frames, vec![5]);
        assert_eq!(d.diameter_codes(true), vec![257, 280]);
        assert_eq!(d.diameter_codes(false), vec![257]);
        assert_eq!(d.sip_methods, vec!["OPTIONS"]);
        assert_eq!(d.sip_status, vec![200]);
        assert_eq!((d.esp_packets, d.esp_icv_good, d.esp_icv_bad), (2, 1, 1));
    }

    #[test]
    fn rejects_garbage_numbers() {
        assert!(parse_fields("1\t\tx\t1\t0\t\t\t\t\t\n").is_err());
    }

    #[test]
    fn filter_and_args() {
        assert_eq!(port_filter(&[1, 2]), "port 1 or port 2");
        let a = dissect_args(
            Path::new("/x.pcap"),
            &DissectOptions {
                decode_as: vec![DecodeAs::diameter_tcp(3868), DecodeAs::sip_udp(5060)],
                ..Default::default()
            },
        );
        assert!(a.windows(2).any(|w| w == ["-d", "tcp.port==3868,diameter"]));
        assert!(a.windows(2).any(|w| w == ["-d", "udp.port==5060,sip"]));
    }
}
