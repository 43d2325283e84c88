//! Passive and inline inputs: calls learnt from the wire rather than over ISC, for VoIP
//! boxes whose SIP or MGCP we do not control.
//!
//! ```text
//!  pcap/pcapng file ─┐
//!  AF_PACKET socket ─┼─ frames ─▶ Decoder ─ SIP ─▶ SipScanner ──┐
//!  NFQUEUE (IP)    ──┘  (link, IP, frags,    MGCP ─▶ MgcpScanner ─┴─ ScanEvent ─▶ CallObserver
//!                        UDP, TCP streams)                                  ◀─ Verdict (NFQUEUE obeys)
//! ```
//!
//! [`Scanner`] is the sans-IO core every input shares: [`Scanner::handle_frame`] takes a
//! frame and its capture time, [`Scanner::poll_event`] gives [`ScanEvent`]s. The shells
//! ([`pcapin`], [`live`], [`nfqueue`]) read frames and hand events to the pipeline with
//! [`deliver`].

pub mod fixtures;
pub mod frames;
pub mod live;
pub mod nfqueue;
pub mod pcapin;
pub mod sipscan;

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::event::{CallObserver, Offer, Progress, Source, Verdict};
use crate::mgcp::MgcpScanner;
use frames::{App, Decoder, DecoderLimits, LinkType, Ports};
use sipscan::{SipScanConfig, SipScanner};

/// What a scanner learnt from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEvent {
    /// A call is offered (an initial INVITE, an MGCP ring with caller-ID).
    Offer(Offer),
    /// A later stage of an offered call.
    Progress {
        /// The call, as its offer named it.
        call_id: String,
        /// What happened.
        progress: Progress,
        /// When (capture time).
        at: SystemTime,
    },
}

/// Where a sniffed INVITE's callee is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalleeFrom {
    /// The To URI: the number that was dialled, whatever proxy rewrote the Request-URI.
    #[default]
    To,
    /// The Request-URI: the contact the box registered, useful when several numbers ring
    /// one box and To shows only the public one.
    RequestUri,
}

/// `[passive]`: what every passive or inline input looks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveConfig {
    /// UDP and TCP ports that carry SIP, either end (default `[5060]`). 5061 is TLS and
    /// opaque to a sniffer, so it is not in the default.
    pub sip_ports: Vec<u16>,
    /// UDP ports that carry MGCP, either end (default `[2427, 2727]`: gateway and call
    /// agent, RFC 3435 §3.5).
    pub mgcp_ports: Vec<u16>,
    /// Believe P-Asserted-Identity on this wire (default `false`: anyone on a LAN can
    /// write one; set it only for a wire that carries nothing but the provider's trunk).
    pub trust_pai: bool,
    /// Where the callee comes from: `"to"` (default, the dialled number) or
    /// `"request_uri"`.
    pub callee_from: CalleeFrom,
    /// TCP flows followed at once (default 1024); the least recently active is dropped.
    pub max_flows: usize,
    /// Fragmented datagrams reassembled at once (default 256); the oldest is dropped.
    pub max_fragmented: usize,
    /// Seconds an idle TCP flow is kept (default 300: longer than the SIP keep-alive
    /// interval of common boxes).
    pub flow_idle_secs: u64,
    /// Seconds a fragmented datagram waits for its missing fragments (default 30, the
    /// IPv4 reassembly timeout of RFC 791 §3.2 and Linux's `ipfrag_time`).
    pub fragment_timeout_secs: u64,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            sip_ports: vec![5060],
            mgcp_ports: vec![2427, 2727],
            trust_pai: false,
            callee_from: CalleeFrom::To,
            max_flows: 1024,
            max_fragmented: 256,
            flow_idle_secs: 300,
            fragment_timeout_secs: 30,
        }
    }
}

/// The commented TOML of `[passive]`, `[live]` and `[nfqueue]` with their defaults.
pub const EXAMPLE: &str = r#"# Passive and inline inputs: SIP and MGCP seen on the wire.
[passive]
# UDP/TCP ports carrying SIP (either end). 5061 is TLS: opaque to a sniffer.
sip_ports = [5060]
# UDP ports carrying MGCP (gateway 2427, call agent 2727).
mgcp_ports = [2427, 2727]
# Believe P-Asserted-Identity seen here (only on a wire that carries nothing but the
# provider's trunk: anyone on a LAN can write one).
trust_pai = false
# Callee of a sniffed INVITE: "to" (the dialled number) or "request_uri".
callee_from = "to"
# Bounds: TCP flows followed, fragmented datagrams in reassembly, and their ages.
max_flows = 1024
max_fragmented = 256
flow_idle_secs = 300
fragment_timeout_secs = 30

# Sniff a live interface (AF_PACKET, needs CAP_NET_RAW), e.g. a bridge in front of a VoIP
# adapter. Absent interface = off.
[live]
# interface = "br0"
# Also see frames not addressed to this host (needed on a mirror port, not on a bridge).
promiscuous = false

# Inline: packets held in an NFQUEUE (needs CAP_NET_ADMIN and an iptables rule such as
#   iptables -A FORWARD -p udp --dport 5060 -j NFQUEUE --queue-num 5 --queue-bypass
# ). A blocked caller's INVITE is dropped. Absent queue = off.
[nfqueue]
# queue = 5
# On an error (unparsable packet, internal failure) drop instead of accept.
fail_closed = false
"#;

impl PassiveConfig {
    fn ports(&self) -> Ports {
        Ports {
            sip: self.sip_ports.clone(),
            mgcp: self.mgcp_ports.clone(),
        }
    }

    fn limits(&self) -> DecoderLimits {
        DecoderLimits {
            max_flows: self.max_flows,
            max_fragmented: self.max_fragmented,
            flow_idle: Duration::from_secs(self.flow_idle_secs),
            fragment_timeout: Duration::from_secs(self.fragment_timeout_secs),
            ..DecoderLimits::default()
        }
    }
}

/// Counts of what a scanner saw: the summary of `appserver pcap`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handled.
    pub packets: u64,
    /// SIP messages handed to the SIP scanner.
    pub sip_messages: u64,
    /// MGCP datagrams handed to the MGCP scanner.
    pub mgcp_messages: u64,
    /// Offers produced (retransmissions included).
    pub offers: u64,
    /// Progress reports produced.
    pub progress: u64,
    /// Frames or messages dropped as undecodable.
    pub errors: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packets {}, SIP messages {}, MGCP messages {}, offers {}, progress {}, errors {}",
            self.packets,
            self.sip_messages,
            self.mgcp_messages,
            self.offers,
            self.progress,
            self.errors
        )
    }
}

/// Why a frame or message gave nothing (counted in [`Stats::errors`], logged at debug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Link, IP, UDP or TCP layer.
    #[error(transparent)]
    Frame(#[from] frames::FrameError),
    /// A SIP message did not parse.
    #[error(transparent)]
    Sip(#[from] sipscan::SipScanError),
    /// An MGCP message did not parse.
    #[error(transparent)]
    Mgcp(#[from] crate::mgcp::MgcpError),
}

/// The sans-IO core shared by every passive and inline input: frames in, events out.
#[derive(Debug)]
pub struct Scanner {
    decoder: Decoder,
    sip: SipScanner,
    mgcp: MgcpScanner,
    stats: Stats,
}

impl Scanner {
    /// A scanner for `cfg` whose offers carry `source`.
    pub fn new(cfg: &PassiveConfig, source: Source) -> Scanner {
        Scanner {
            decoder: Decoder::new(cfg.ports(), cfg.limits()),
            sip: SipScanner::new(
                SipScanConfig {
                    trust_pai: cfg.trust_pai,
                    callee_from: cfg.callee_from,
                    ..SipScanConfig::default()
                },
                source,
            ),
            mgcp: MgcpScanner::new(source),
            stats: Stats::default(),
        }
    }

    /// What was seen so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// One captured frame of link type `link`, seen at `at`. Events go to
    /// [`Scanner::poll_event`]; the first error met is returned (the frame may still
    /// have completed earlier messages, whose events are queued).
    pub fn handle_frame(
        &mut self,
        link: LinkType,
        frame: &[u8],
        at: SystemTime,
    ) -> Result<(), ScanError> {
        self.stats.packets += 1;
        let mut first_err: Option<ScanError> = None;
        if let Err(e) = self.decoder.handle_frame(link, frame, at) {
            self.stats.errors += 1;
            first_err = Some(e.into());
        }
        while let Some(p) = self.decoder.poll_payload() {
            let r: Result<(), ScanError> = match p.app {
                App::Sip => {
                    self.stats.sip_messages += 1;
                    self.sip
                        .handle_message(&p.data, at)
                        .map(drop)
                        .map_err(Into::into)
                }
                App::Mgcp => {
                    self.stats.mgcp_messages += 1;
                    self.mgcp
                        .handle_datagram(&p.data, at)
                        .map(drop)
                        .map_err(Into::into)
                }
            };
            if let Err(e) = r {
                self.stats.errors += 1;
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The next event (SIP ones first, then MGCP; each in order).
    pub fn poll_event(&mut self) -> Option<ScanEvent> {
        let e = self.sip.poll_event().or_else(|| self.mgcp.poll_event())?;
        match e {
            ScanEvent::Offer(_) => self.stats.offers += 1,
            ScanEvent::Progress { .. } => self.stats.progress += 1,
        }
        Some(e)
    }
}

/// Hands one event to the pipeline; returns the verdict for an offer.
pub fn deliver(observer: &dyn CallObserver, event: ScanEvent) -> Option<Verdict> {
    match event {
        ScanEvent::Offer(o) => Some(observer.offer(o)),
        ScanEvent::Progress {
            call_id,
            progress,
            at,
        } => {
            observer.progress(&call_id, progress, at);
            None
        }
    }
}

/// Drains a scanner into the pipeline; returns `Block` if any offer was blocked (the
/// packet that completed it should be dropped, where the input can).
pub fn deliver_all(scanner: &mut Scanner, observer: &dyn CallObserver) -> Option<Verdict> {
    let mut verdict = None;
    while let Some(e) = scanner.poll_event() {
        match deliver(observer, e) {
            Some(v @ Verdict::Block { .. }) => verdict = Some(v),
            Some(Verdict::Ring) => {
                verdict.get_or_insert(Verdict::Ring);
            }
            None => {}
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_to_the_defaults() {
        #[derive(Deserialize)]
        struct File {
            passive: PassiveConfig,
            live: live::LiveConfig,
            nfqueue: nfqueue::NfqueueConfig,
        }
        let f: File = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(f.passive, PassiveConfig::default());
        assert_eq!(f.live, live::LiveConfig::default());
        assert_eq!(f.nfqueue, nfqueue::NfqueueConfig::default());
        assert!(toml::from_str::<PassiveConfig>("sip_port = 1").is_err());
        let c: PassiveConfig = toml::from_str("callee_from = \"request_uri\"").unwrap();
        assert_eq!(c.callee_from, CalleeFrom::RequestUri);
    }
}
