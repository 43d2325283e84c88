//! `appserver pcap FILE`: a pcap or pcapng capture through the [`Scanner`] into the
//! pipeline, with each packet's capture time as the event time.
//!
//! A file that ends inside a packet (a capture cut off by Ctrl-C) is not an error: what
//! was read counts and [`Summary::stopped`] says why reading ended early. Frames of link
//! types we do not decode are counted as errors and skipped.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

use super::frames::LinkType;
use super::{deliver_all, PassiveConfig, Scanner, Stats};
use crate::event::{CallObserver, Source};

/// Why a capture could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum PcapInError {
    /// The file could not be opened or read.
    #[error("reading the capture: {0}")]
    Io(#[from] std::io::Error),
    /// Neither a pcap nor a pcapng file.
    #[error("not a pcap or pcapng file (magic {0:02x?})")]
    Magic([u8; 4]),
    /// The file header is invalid.
    #[error("bad capture header: {0}")]
    Header(String),
    /// The link type of a classic pcap is not one we decode.
    #[error("unsupported link type {0}")]
    LinkType(u32),
}

/// What `appserver pcap` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Counts.
    pub stats: Stats,
    /// Why reading stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.stats)?;
        if let Some(s) = &self.stopped {
            write!(f, "; stopped early: {s}")?;
        }
        Ok(())
    }
}

/// Reads the capture at `path` into `observer`.
pub fn read_file(
    path: &Path,
    cfg: &PassiveConfig,
    observer: &dyn CallObserver,
) -> Result<Summary, PcapInError> {
    read(File::open(path)?, cfg, observer)
}

/// The entry point of `appserver pcap FILE`: reads it and prints the summary line.
pub fn run(
    path: &Path,
    cfg: &PassiveConfig,
    observer: &dyn CallObserver,
) -> Result<Summary, PcapInError> {
    let s = read_file(path, cfg, observer)?;
    println!("{}: {s}", path.display());
    Ok(s)
}

/// Reads a pcap or pcapng stream (told apart by its magic number) into `observer`.
pub fn read<R: Read>(
    reader: R,
    cfg: &PassiveConfig,
    observer: &dyn CallObserver,
) -> Result<Summary, PcapInError> {
    let mut r = BufReader::new(reader);
    let head = r.fill_buf()?;
    let mut magic = [0u8; 4];
    if head.len() < 4 {
        magic[..head.len()].copy_from_slice(head);
        return Err(PcapInError::Magic(magic));
    }
    magic.copy_from_slice(&head[..4]);
    let mut scanner = Scanner::new(cfg, Source::Pcap);
    let stopped = match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => read_pcapng(r, &mut scanner, observer)?,
        [0xa1, 0xb2, 0xc3, 0xd4]
        | [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x4d, 0x3c, 0xb2, 0xa1] => read_pcap(r, &mut scanner, observer)?,
        _ => return Err(PcapInError::Magic(magic)),
    };
    Ok(Summary {
        stats: scanner.stats(),
        stopped,
    })
}

fn feed(
    scanner: &mut Scanner,
    observer: &dyn CallObserver,
    link: LinkType,
    data: &[u8],
    at: SystemTime,
) {
    if let Err(e) = scanner.handle_frame(link, data, at) {
        tracing::debug!(error = %e, "pcap frame skipped");
    }
    deliver_all(scanner, observer);
}

fn read_pcap<R: Read>(
    r: R,
    scanner: &mut Scanner,
    observer: &dyn CallObserver,
) -> Result<Option<String>, PcapInError> {
    let mut pr = PcapReader::new(r).map_err(|e| PcapInError::Header(e.to_string()))?;
    let dl = u32::from(pr.header().datalink);
    let link = LinkType::from_linktype(dl).ok_or(PcapInError::LinkType(dl))?;
    while let Some(p) = pr.next_packet() {
        match p {
            Ok(p) => {
                let at = SystemTime::UNIX_EPOCH
                    .checked_add(p.timestamp)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                feed(scanner, observer, link, &p.data, at);
            }
            // The reader cannot resynchronise after a bad record header.
            Err(e) => return Ok(Some(e.to_string())),
        }
    }
    Ok(None)
}

/// An interface of a pcapng section: its link type and timestamp unit.
struct Iface {
    link: Option<LinkType>,
    /// `if_tsresol` (default 6: microseconds).
    tsresol: u8,
    /// `if_tsoffset` seconds.
    offset: u64,
}

/// The capture time of an EPB timestamp counted in `iface`'s units (pcapng §4.2
/// `if_tsresol`: bit 7 clear = 10^-n s, set = 2^-n s). pcap-file hands the raw count as
/// nanoseconds whatever the unit, so it is rescaled here.
fn pcapng_time(raw: Duration, iface: &Iface) -> SystemTime {
    let units = u64::try_from(raw.as_nanos()).unwrap_or(u64::MAX);
    let n = u32::from(iface.tsresol & 0x7f);
    let since = if iface.tsresol & 0x80 == 0 {
        match 10u64.checked_pow(n) {
            Some(per_sec) if per_sec > 0 => Duration::new(
                units / per_sec,
                u32::try_from(u128::from(units % per_sec) * 1_000_000_000 / u128::from(per_sec))
                    .unwrap_or(0),
            ),
            _ => Duration::ZERO,
        }
    } else if n < 64 {
        let per_sec = 1u128 << n;
        let nanos = u128::from(units) * 1_000_000_000 / per_sec;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    } else {
        Duration::ZERO
    };
    SystemTime::UNIX_EPOCH
        .checked_add(since)
        .and_then(|t| t.checked_add(Duration::from_secs(iface.offset)))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn read_pcapng<R: Read>(
    r: R,
    scanner: &mut Scanner,
    observer: &dyn CallObserver,
) -> Result<Option<String>, PcapInError> {
    let mut pr = PcapNgReader::new(r).map_err(|e| PcapInError::Header(e.to_string()))?;
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut last = SystemTime::UNIX_EPOCH;
    while let Some(b) = pr.next_block() {
        let b = match b {
            Ok(b) => b,
            Err(e) => return Ok(Some(e.to_string())),
        };
        match b {
            // A new section starts a new interface list (pcapng §4.1).
            Block::SectionHeader(_) => ifaces.clear(),
            Block::InterfaceDescription(idb) => {
                let mut i = Iface {
                    link: LinkType::from_linktype(u32::from(idb.linktype)),
                    tsresol: 6,
                    offset: 0,
                };
                for o in &idb.options {
                    match o {
                        InterfaceDescriptionOption::IfTsResol(r) => i.tsresol = *r,
                        InterfaceDescriptionOption::IfTsOffset(s) => i.offset = *s,
                        _ => {}
                    }
                }
                ifaces.push(i);
            }
            Block::EnhancedPacket(epb) => {
                let iface = usize::try_from(epb.interface_id)
                    .ok()
                    .and_then(|i| ifaces.get(i));
                let Some(iface) = iface else {
                    tracing::debug!(
                        id = epb.interface_id,
                        "pcapng packet of an undeclared interface"
                    );
                    continue;
                };
                last = pcapng_time(epb.timestamp, iface);
                match iface.link {
                    Some(link) => feed(scanner, observer, link, &epb.data, last),
                    None => tracing::debug!("pcapng packet of an unsupported link type"),
                }
            }
            Block::SimplePacket(spb) => {
                // No timestamp of its own (pcapng §4.4): the last one seen stands in.
                if let Some(link) = ifaces.first().and_then(|i| i.link) {
                    feed(scanner, observer, link, &spb.data, last);
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_time_units() {
        let us = Iface {
            link: None,
            tsresol: 6,
            offset: 0,
        };
        let raw = Duration::from_nanos(1_700_000_000_123_456);
        assert_eq!(
            pcapng_time(raw, &us),
            SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000)
        );
        let ns = Iface { tsresol: 9, ..us };
        assert_eq!(
            pcapng_time(Duration::from_nanos(5), &ns),
            SystemTime::UNIX_EPOCH + Duration::from_nanos(5)
        );
        let bin = Iface {
            tsresol: 0x80 | 10,
            offset: 1,
            ..ns
        };
        assert_eq!(
            pcapng_time(Duration::from_nanos(1024), &bin),
            SystemTime::UNIX_EPOCH + Duration::from_secs(2)
        );
        let silly = Iface {
            tsresol: 0x7f,
            offset: 0,
            ..bin
        };
        assert_eq!(pcapng_time(raw, &silly), SystemTime::UNIX_EPOCH);
    }
}
