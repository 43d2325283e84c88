//! Export of live SA keys as Wireshark's `esp_sa` UAT file, so any capture of a lab session
//! decrypts (`-o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE`).
//!
//! One record per SA, eight columns as Wireshark 4.0's ESP preferences define them:
//! protocol (`IPv4`/`IPv6`), source IP, destination IP, SPI (`0x...`), encryption algorithm
//! (Wireshark's label), encryption key (`0x...`, empty for NULL), authentication algorithm,
//! authentication key. Put the file at `$XDG_CONFIG_HOME/wireshark/esp_sa` (or a profile
//! directory), or pass a single record inline with `-o 'uat:esp_sa:<record>'`.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::model::{SaSet, Side};

fn hexkey(k: &[u8]) -> String {
    if k.is_empty() {
        return String::new();
    }
    let mut s = String::from("0x");
    for b in k {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The `esp_sa` records of one set (four lines, SA-table order). Both ends produce the same.
pub fn records(set: &SaSet) -> Vec<String> {
    let proto = if set.is_ipv6() { "IPv6" } else { "IPv4" };
    set.sas(Side::Pcscf)
        .iter()
        .map(|sa| {
            format!(
                "\"{proto}\",\"{}\",\"{}\",\"0x{:08x}\",\"{}\",\"{}\",\"{}\",\"{}\"",
                sa.src.ip(),
                sa.dst.ip(),
                sa.spi,
                set.encryption.wireshark_name(),
                hexkey(&set.keys.enc),
                set.integrity.wireshark_name(),
                hexkey(&set.keys.auth),
            )
        })
        .collect()
}

/// The whole file for the given sets (one record per line, trailing newline).
pub fn esp_sa_file<'a>(sets: impl IntoIterator<Item = &'a SaSet>) -> String {
    let mut out = String::from("# Wireshark esp_sa UAT: IMS sec-agree SAs (keys are secrets)\n");
    for s in sets {
        for r in records(s) {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

/// Writes [`esp_sa_file`] to `path` (mode 0600: the file holds keys).
pub fn write_esp_sa_file<'a>(
    path: &Path,
    sets: impl IntoIterator<Item = &'a SaSet>,
) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    io::Write::write_all(&mut f, esp_sa_file(sets).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use std::time::{Duration, Instant};

    #[test]
    fn record_format() {
        let s = SaSet::new(
            SocketAddrPair {
                addr: "10.0.0.2".parse().unwrap(),
                client: 1,
                server: 2,
            },
            SocketAddrPair {
                addr: "10.0.0.1".parse().unwrap(),
                client: 3,
                server: 4,
            },
            Spis {
                uc: 0x1000,
                us: 0x1001,
                pc: 0x2000,
                ps: 0x2001,
            },
            IntegrityAlg::HmacMd5_96,
            EncryptionAlg::Null,
            &[0xcc; 16],
            &[0xab; 16],
            Duration::from_secs(1),
            Instant::now(),
        )
        .unwrap();
        let r = records(&s);
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            "\"IPv4\",\"10.0.0.2\",\"10.0.0.1\",\"0x00002001\",\"NULL\",\"\",\"HMAC-MD5-96 [RFC2403]\",\"0xabababababababababababababababab\""
        );
        let f = esp_sa_file([&s]);
        assert_eq!(f.lines().count(), 5);
    }
}
