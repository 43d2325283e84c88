//! Sans-IO Diameter peer connection (RFC 6733 §5, RFC 3539 watchdog).
//!
//! One [`Peer`] is one transport connection to one Diameter peer, in either role: the
//! initiator sends CER, the responder answers it. The shape follows quinn-proto's
//! `Connection`: feed inputs with `handle_bytes` / `handle_timeout` / `handle_command`
//! (`now` always passed in), collect outputs with `poll_transmit` (bytes to write),
//! `poll_event` (things for the application) and `poll_timeout` (next deadline). Nothing
//! here reads the clock, sleeps or touches a socket.
//!
//! What the peer does on its own:
//! - capabilities exchange (§5.3): CER/CEA with Host-IP-Address, Vendor-Id, Product-Name,
//!   Auth-/Acct-Application-Id, Vendor-Specific-Application-Id and Supported-Vendor-Id;
//!   a peer advertising Relay (0xffffffff) shares every application; a peer rejected by the
//!   allow-list gets DIAMETER_UNKNOWN_PEER (3010) and the connection closes; no common
//!   application gives 5010;
//! - watchdog (RFC 3539 §3.4): DWR after Tw (± jitter) without traffic, SUSPECT after a
//!   second Tw without answer, DOWN (close) after a third;
//! - disconnect (§5.4): DPR/DPA in both directions;
//! - request bookkeeping: hop-by-hop and end-to-end identifiers (§3), a pending map with
//!   per-request deadlines, answers matched by hop-by-hop id;
//! - protocol errors for requests: unknown command → 3001, unsupported application → 3007,
//!   unknown AVP with the M bit → 5001 with Failed-AVP, malformed AVPs → 5014 (§7), an
//!   AVP repeated beyond its command ABNF → 5009 with Failed-AVP (§7.5,
//!   [`crate::dict::excess_avp`]);
//!   a stream that cannot be framed any more → close.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::codec::{Avp, FindAvp};
use crate::dict::{app, avp, cmd, enums, lookup_avp, lookup_command, COMMANDS, VENDOR_3GPP};
use crate::error::DecodeError;
use crate::message::{frame_length, Message, ResultCode, DEFAULT_MAX_MESSAGE_SIZE};
use crate::result;

/// Decides whether a peer that sent CER (or answered ours) may talk to us.
pub type PeerFilter = Arc<dyn Fn(&PeerInfo) -> bool + Send + Sync>;

/// One entry of the allow-list: a peer is its Origin-Host AND the transport addresses it
/// may connect from, because the Origin-Host in a CER is only what the peer says about
/// itself (RFC 6733 §5.3, §13: Diameter identities are not authenticated without TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPeer {
    /// Origin-Host, compared case-insensitively (RFC 6733 §5.6.4 on DNS case).
    pub origin_host: String,
    /// Source addresses the peer's connections may come from; empty = any address
    /// (only the name is checked, as [`PeerConfig::allow_hosts`] does).
    pub addresses: Vec<IpAddr>,
}

impl AllowedPeer {
    /// `origin_host` from any of `addresses`.
    pub fn new(
        origin_host: impl Into<String>,
        addresses: impl IntoIterator<Item = IpAddr>,
    ) -> AllowedPeer {
        AllowedPeer {
            origin_host: origin_host.into(),
            addresses: addresses.into_iter().collect(),
        }
    }

    fn admits(&self, addr: Option<IpAddr>) -> bool {
        // An IPv4 peer reaching a dual-stack listener shows up as ::ffff:a.b.c.d.
        self.addresses.is_empty()
            || addr.is_some_and(|a| {
                let a = a.to_canonical();
                self.addresses.iter().any(|b| b.to_canonical() == a)
            })
    }
}

/// Why a capabilities exchange was refused by policy (see [`Peer::refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The Origin-Host is not in the allow-list, or the [`PeerFilter`] said no.
    UnknownHost,
    /// The Origin-Host is allowed, but not from the connection's source address: an
    /// impostor, or a peer whose address changed without the configuration.
    WrongAddress,
    /// The peer already has an open connection to us. Both connections are
    /// responder-side, so RFC 6733 §5.6's R-Open + R-Conn-CER → R-Reject applies: the live
    /// connection stays, the new one is refused (the §5.6.4 election only decides between
    /// a connection we initiated and one we accepted).
    AlreadyConnected,
}

impl Refusal {
    /// Result-Code of the CEA: DIAMETER_UNKNOWN_PEER (3010, RFC 6733 §7.1.3) for a peer
    /// we do not accept, DIAMETER_UNABLE_TO_COMPLY (5012) for a duplicate connection of one
    /// we do.
    pub fn result_code(self) -> u32 {
        match self {
            Refusal::UnknownHost | Refusal::WrongAddress => result::UNKNOWN_PEER,
            Refusal::AlreadyConnected => result::UNABLE_TO_COMPLY,
        }
    }

    /// Short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownHost => "unknown_host",
            Refusal::WrongAddress => "wrong_address",
            Refusal::AlreadyConnected => "already_connected",
        }
    }
}

/// A per-connection check the shell runs on a CER that passed the allow-list, just before
/// CEA: the TCP server uses it to reserve the Origin-Host in its registry atomically.
pub type Admission = Box<dyn FnMut(&PeerInfo) -> Result<(), Refusal> + Send>;

/// Local identity and policy of a Diameter node (RFC 6733 §5.3).
#[derive(Clone)]
pub struct PeerConfig {
    /// Our Origin-Host (FQDN).
    pub origin_host: String,
    /// Our Origin-Realm.
    pub origin_realm: String,
    /// Host-IP-Address values; when empty the transport's local address is used.
    pub host_ip_addresses: Vec<IpAddr>,
    /// Vendor-Id in CER/CEA (0 = none registered).
    pub vendor_id: u32,
    /// Product-Name.
    pub product_name: String,
    /// Firmware-Revision, if any.
    pub firmware_revision: Option<u32>,
    /// Origin-State-Id, if any (should increase on every restart).
    pub origin_state_id: Option<u32>,
    /// Auth-Application-Id values advertised without a vendor.
    pub auth_application_ids: Vec<u32>,
    /// Acct-Application-Id values advertised.
    pub acct_application_ids: Vec<u32>,
    /// (Vendor-Id, Auth-Application-Id) pairs sent as Vendor-Specific-Application-Id.
    pub vendor_specific_auth_apps: Vec<(u32, u32)>,
    /// Supported-Vendor-Id values.
    pub supported_vendor_ids: Vec<u32>,
    /// Watchdog interval Tw (RFC 3539 §3.4.1 recommends 30 s, at least 6 s).
    pub watchdog_interval: Duration,
    /// Random jitter added to each Tw, drawn uniformly from `-j..=+j` (RFC 3539 uses ±2 s).
    pub watchdog_jitter: Duration,
    /// How long a request waits for its answer.
    pub request_timeout: Duration,
    /// How long to wait for CER (responder) or CEA (initiator).
    pub capabilities_timeout: Duration,
    /// How long to wait for DPA after sending DPR.
    pub disconnect_timeout: Duration,
    /// Largest message accepted or sent.
    pub max_message_size: usize,
    /// Answer 5001 to requests carrying an unknown AVP with the M bit (RFC 6733 §4.1).
    pub reject_unknown_mandatory: bool,
    /// Requests from the peer the application may hold unanswered at once; more are
    /// answered DIAMETER_TOO_BUSY (3004) so a flood cannot grow memory without bound.
    pub max_incoming_requests: usize,
    /// AVPs the application understands beyond the built-in dictionary (code, vendor).
    pub extra_avps: Vec<(u32, u32)>,
    /// Allow-list of Origin-Host and source addresses; empty = no list (see also
    /// `peer_filter`, which must agree too).
    pub allowed_peers: Vec<AllowedPeer>,
    /// Allow-list hook; `None` accepts everyone.
    pub peer_filter: Option<PeerFilter>,
}

impl fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConfig")
            .field("origin_host", &self.origin_host)
            .field("origin_realm", &self.origin_realm)
            .field("host_ip_addresses", &self.host_ip_addresses)
            .field("auth_application_ids", &self.auth_application_ids)
            .field("vendor_specific_auth_apps", &self.vendor_specific_auth_apps)
            .field("watchdog_interval", &self.watchdog_interval)
            .field("request_timeout", &self.request_timeout)
            .field("allowed_peers", &self.allowed_peers)
            .field("peer_filter", &self.peer_filter.is_some())
            .finish_non_exhaustive()
    }
}

impl PeerConfig {
    /// Node without applications (add some: a node sharing no application with its peer
    /// gets DIAMETER_NO_COMMON_APPLICATION), Tw 30 s ± 2 s, requests time out after 5 s.
    pub fn new(origin_host: impl Into<String>, origin_realm: impl Into<String>) -> PeerConfig {
        PeerConfig {
            origin_host: origin_host.into(),
            origin_realm: origin_realm.into(),
            host_ip_addresses: Vec::new(),
            vendor_id: 0,
            product_name: "imslab-diameter".into(),
            firmware_revision: None,
            origin_state_id: None,
            auth_application_ids: Vec::new(),
            acct_application_ids: Vec::new(),
            vendor_specific_auth_apps: Vec::new(),
            supported_vendor_ids: Vec::new(),
            watchdog_interval: Duration::from_secs(30),
            watchdog_jitter: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            capabilities_timeout: Duration::from_secs(10),
            disconnect_timeout: Duration::from_secs(2),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            reject_unknown_mandatory: true,
            max_incoming_requests: 10_000,
            extra_avps: Vec::new(),
            allowed_peers: Vec::new(),
            peer_filter: None,
        }
    }

    /// Node advertising Cx/Dx (TS 29.229 §7.2: Vendor-Specific-Application-Id 10415/16777216,
    /// Supported-Vendor-Id 10415).
    pub fn cx(origin_host: impl Into<String>, origin_realm: impl Into<String>) -> PeerConfig {
        let mut c = PeerConfig::new(origin_host, origin_realm);
        c.vendor_specific_auth_apps.push((VENDOR_3GPP, app::CX));
        c.supported_vendor_ids.push(VENDOR_3GPP);
        c
    }

    /// Node advertising Sh (TS 29.329 §7.2: Vendor-Specific-Application-Id 10415/16777217).
    pub fn sh(origin_host: impl Into<String>, origin_realm: impl Into<String>) -> PeerConfig {
        PeerConfig::new(origin_host, origin_realm).with_vendor_auth_app(VENDOR_3GPP, app::SH)
    }

    /// Also advertise `app_id` as an Auth-Application-Id.
    pub fn with_auth_app(mut self, app_id: u32) -> PeerConfig {
        if !self.auth_application_ids.contains(&app_id) {
            self.auth_application_ids.push(app_id);
        }
        self
    }

    /// Also advertise (`vendor`, `app_id`) as a Vendor-Specific-Application-Id, and
    /// `vendor` as a Supported-Vendor-Id.
    pub fn with_vendor_auth_app(mut self, vendor: u32, app_id: u32) -> PeerConfig {
        if !self.vendor_specific_auth_apps.contains(&(vendor, app_id)) {
            self.vendor_specific_auth_apps.push((vendor, app_id));
        }
        if !self.supported_vendor_ids.contains(&vendor) {
            self.supported_vendor_ids.push(vendor);
        }
        self
    }

    /// Accept only peers whose Origin-Host is in `hosts` (case-insensitive), from any
    /// address. Prefer [`PeerConfig::allow_peers`]: a name alone is what the peer claims.
    pub fn allow_hosts<I, S>(self, hosts: I) -> PeerConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_peers(
            hosts
                .into_iter()
                .map(|h| AllowedPeer::new(h, std::iter::empty())),
        )
    }

    /// Accept only these peers: a CER whose Origin-Host is not listed, or is listed but
    /// comes from an address not listed for it, gets DIAMETER_UNKNOWN_PEER (3010). Adds
    /// to entries given before.
    pub fn allow_peers(mut self, peers: impl IntoIterator<Item = AllowedPeer>) -> PeerConfig {
        self.allowed_peers.extend(peers);
        self
    }

    /// Checks a peer against `allowed_peers` and `peer_filter`; `addr` is the source
    /// address of its transport connection, if known.
    pub fn check_peer(&self, info: &PeerInfo, addr: Option<IpAddr>) -> Result<(), Refusal> {
        if !self.allowed_peers.is_empty() {
            let mut named = self
                .allowed_peers
                .iter()
                .filter(|p| p.origin_host.eq_ignore_ascii_case(&info.origin_host))
                .peekable();
            if named.peek().is_none() {
                return Err(Refusal::UnknownHost);
            }
            if !named.any(|p| p.admits(addr)) {
                return Err(Refusal::WrongAddress);
            }
        }
        match &self.peer_filter {
            Some(f) if !f(info) => Err(Refusal::UnknownHost),
            _ => Ok(()),
        }
    }

    fn supports_app(&self, id: u32) -> bool {
        self.auth_application_ids.contains(&id)
            || self.acct_application_ids.contains(&id)
            || self.vendor_specific_auth_apps.iter().any(|&(_, a)| a == id)
            || self.auth_application_ids.contains(&app::RELAY)
    }
}

/// What the remote peer said about itself in its CER or CEA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Host-IP-Address values.
    pub host_ip_addresses: Vec<IpAddr>,
    /// Vendor-Id.
    pub vendor_id: u32,
    /// Product-Name.
    pub product_name: String,
    /// Origin-State-Id.
    pub origin_state_id: Option<u32>,
    /// Auth-Application-Id values (top level).
    pub auth_application_ids: Vec<u32>,
    /// Acct-Application-Id values (top level).
    pub acct_application_ids: Vec<u32>,
    /// Vendor-Specific-Application-Id (vendor, auth or acct app) pairs.
    pub vendor_specific_apps: Vec<(u32, u32)>,
    /// Supported-Vendor-Id values.
    pub supported_vendor_ids: Vec<u32>,
}

impl PeerInfo {
    /// Parses the capability AVPs of a CER/CEA. Missing Origin-Host/Realm are errors.
    pub fn from_message(m: &Message) -> Result<PeerInfo, crate::AvpError> {
        let mut p = PeerInfo {
            origin_host: m.get_utf8(avp::ORIGIN_HOST)?.to_string(),
            origin_realm: m.get_utf8(avp::ORIGIN_REALM)?.to_string(),
            vendor_id: m.opt_u32(avp::VENDOR_ID)?.unwrap_or(0),
            product_name: m.opt_utf8(avp::PRODUCT_NAME)?.unwrap_or("").to_string(),
            origin_state_id: m.opt_u32(avp::ORIGIN_STATE_ID)?,
            ..PeerInfo::default()
        };
        for a in m.find_all(avp::HOST_IP_ADDRESS) {
            if let Ok(ip) = a.as_address() {
                p.host_ip_addresses.push(ip);
            }
        }
        for a in m.find_all(avp::AUTH_APPLICATION_ID) {
            p.auth_application_ids.push(a.as_u32()?);
        }
        for a in m.find_all(avp::ACCT_APPLICATION_ID) {
            p.acct_application_ids.push(a.as_u32()?);
        }
        for a in m.find_all(avp::SUPPORTED_VENDOR_ID) {
            p.supported_vendor_ids.push(a.as_u32()?);
        }
        for a in m.find_all(avp::VENDOR_SPECIFIC_APPLICATION_ID) {
            let g = a.as_grouped()?;
            let vendor = g.opt_u32(avp::VENDOR_ID)?.unwrap_or(0);
            if let Some(id) = g.opt_u32(avp::AUTH_APPLICATION_ID)? {
                p.vendor_specific_apps.push((vendor, id));
            }
            if let Some(id) = g.opt_u32(avp::ACCT_APPLICATION_ID)? {
                p.vendor_specific_apps.push((vendor, id));
            }
        }
        Ok(p)
    }

    /// Whether the peer advertises the Relay application (and so every application).
    pub fn is_relay(&self) -> bool {
        self.auth_application_ids.contains(&app::RELAY)
            || self.acct_application_ids.contains(&app::RELAY)
    }

    /// Whether the peer advertises application `id` (directly, vendor-specific or as a relay).
    pub fn supports_app(&self, id: u32) -> bool {
        self.is_relay()
            || self.auth_application_ids.contains(&id)
            || self.acct_application_ids.contains(&id)
            || self.vendor_specific_apps.iter().any(|&(_, a)| a == id)
    }
}

/// Which side opened the transport connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We connected and send CER.
    Initiator,
    /// We accepted and wait for CER.
    Responder,
}

/// Connection state (RFC 6733 §5.6, collapsed to one transport connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Initiator: CER sent, waiting for CEA.
    WaitCea,
    /// Responder: waiting for CER.
    WaitCer,
    /// Capabilities exchanged; application traffic flows.
    Open,
    /// DPR sent, waiting for DPA.
    Closing,
    /// Done; the shell should flush `poll_transmit` and close the transport.
    Closed,
}

/// Watchdog status (RFC 3539 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogState {
    /// Traffic or DWA seen recently.
    Okay,
    /// A DWR went unanswered for Tw.
    Suspect,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent DPR with this Disconnect-Cause.
    PeerDisconnected(Option<i32>),
    /// We sent DPR (answered or timed out).
    LocalDisconnect,
    /// The watchdog declared the peer DOWN (RFC 3539).
    WatchdogDown,
    /// CER/CEA did not arrive in time.
    CapabilitiesTimeout,
    /// The capabilities exchange failed with this Result-Code (3010 unknown peer, 5010 no
    /// common application, ...), sent by us or by the peer.
    CapabilitiesRejected(u32),
    /// The byte stream broke the protocol (bad framing, unexpected message before Open).
    ProtocolError(String),
    /// The transport was closed or failed underneath.
    TransportClosed,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// No answer within `request_timeout`.
    TimedOut,
    /// The connection closed before the answer came.
    ConnectionClosed,
    /// An answer with this hop-by-hop id came but could not be decoded.
    MalformedAnswer(DecodeError),
}

/// Something the application should know about.
#[derive(Debug, Clone)]
pub enum Event {
    /// Capabilities exchanged; the peer is open.
    Up(PeerInfo),
    /// An application request to answer with [`Peer::send_answer`] (in any order).
    Request(Message),
    /// The answer to a request sent with [`Peer::send_request`] (match by `hop_by_hop`).
    Answer(Message),
    /// A request sent with [`Peer::send_request`] will get no answer.
    RequestFailed {
        /// Hop-by-hop id returned by `send_request`.
        hop_by_hop: u32,
        /// Why.
        reason: FailReason,
    },
    /// The watchdog moved to SUSPECT (RFC 3539): traffic should fail over.
    WatchdogSuspect,
    /// The watchdog went back to OKAY.
    WatchdogRecovered,
    /// The connection is closed; flush `poll_transmit` and close the transport.
    Closed(CloseReason),
}

/// Inputs from the application (see [`Peer::handle_command`]).
#[derive(Debug, Clone)]
pub enum Command {
    /// Send a request; identifiers are assigned.
    Request(Message),
    /// Send an answer.
    Answer(Message),
    /// Start an orderly shutdown with DPR and this Disconnect-Cause.
    Disconnect(i32),
}

/// Why the application's command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Requests need the Open state.
    #[error("peer not open (state {0:?})")]
    NotOpen(PeerState),
    /// The message exceeds `max_message_size`.
    #[error("message of {len} bytes exceeds the limit {max}")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// `send_request` with an answer or `send_answer` with a request.
    #[error("wrong message direction (R bit)")]
    WrongDirection,
}

/// Small deterministic PRNG (xorshift64*) so ids and jitter come from the seed input.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// One Diameter peer connection (sans-IO).
pub struct Peer {
    config: Arc<PeerConfig>,
    role: Role,
    state: PeerState,
    local_ips: Vec<IpAddr>,
    remote: Option<PeerInfo>,
    /// Source address of the transport connection, checked against the allow-list.
    remote_addr: Option<IpAddr>,
    admission: Option<Admission>,
    refusal: Option<Refusal>,
    rx: BytesMut,
    tx: BytesMut,
    events: VecDeque<Event>,
    rng: Rng,
    next_hbh: u32,
    next_e2e: u32,
    session_counter: u64,
    session_high: u32,
    pending: HashMap<u32, Instant>,
    /// Hop-by-hop ids of peer requests handed to the application and not yet answered.
    incoming: HashSet<u32>,
    deadlines: BTreeSet<(Instant, u32)>,
    /// Hop-by-hop id of our own outstanding DWR/DPR/CER (not application requests).
    base_pending: HashMap<u32, u32>,
    watchdog: WatchdogState,
    dwr_pending: bool,
    watchdog_deadline: Option<Instant>,
    state_deadline: Option<Instant>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("remote", &self.remote.as_ref().map(|r| &r.origin_host))
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Initiator side: queues CER at once. `seed` feeds identifiers and watchdog jitter;
    /// give it the Unix time in the high 32 bits and randomness in the low ones (RFC 6733
    /// §3: the end-to-end id's high 12 bits come from the clock). `local_ip` is the
    /// transport's local address, advertised when the config has no Host-IP-Address.
    pub fn connect(
        config: Arc<PeerConfig>,
        now: Instant,
        seed: u64,
        local_ip: Option<IpAddr>,
    ) -> Peer {
        let mut p = Peer::new(config, Role::Initiator, now, seed, local_ip);
        p.state = PeerState::WaitCea;
        let cer = p.capabilities(Message::request(app::COMMON, cmd::CAPABILITIES_EXCHANGE));
        let hbh = p.queue_request(cer);
        p.base_pending.insert(hbh, cmd::CAPABILITIES_EXCHANGE);
        p
    }

    /// Responder side: waits for CER. See [`Peer::connect`] for `seed` and `local_ip`.
    pub fn accept(
        config: Arc<PeerConfig>,
        now: Instant,
        seed: u64,
        local_ip: Option<IpAddr>,
    ) -> Peer {
        let mut p = Peer::new(config, Role::Responder, now, seed, local_ip);
        p.state = PeerState::WaitCer;
        p
    }

    fn new(
        config: Arc<PeerConfig>,
        role: Role,
        now: Instant,
        seed: u64,
        local_ip: Option<IpAddr>,
    ) -> Peer {
        let mut rng = Rng(seed | 1);
        let next_hbh = rng.next() as u32;
        let next_e2e = (((seed >> 32) as u32 & 0xfff) << 20) | (rng.next() as u32 & 0xf_ffff);
        let session_high = (seed >> 32) as u32;
        let local_ips = if config.host_ip_addresses.is_empty() {
            local_ip.into_iter().collect()
        } else {
            config.host_ip_addresses.clone()
        };
        let state_deadline = Some(now + config.capabilities_timeout);
        Peer {
            config,
            role,
            state: PeerState::WaitCer,
            local_ips,
            remote: None,
            remote_addr: None,
            admission: None,
            refusal: None,
            rx: BytesMut::with_capacity(8192),
            tx: BytesMut::with_capacity(8192),
            events: VecDeque::new(),
            rng,
            next_hbh,
            next_e2e,
            session_counter: 0,
            session_high,
            pending: HashMap::new(),
            incoming: HashSet::new(),
            deadlines: BTreeSet::new(),
            base_pending: HashMap::new(),
            watchdog: WatchdogState::Okay,
            dwr_pending: false,
            watchdog_deadline: None,
            state_deadline,
        }
    }

    /// Tells the peer the transport's remote address, which `allowed_peers` entries with
    /// addresses are checked against. Without it such entries refuse every peer.
    pub fn set_remote_addr(&mut self, addr: IpAddr) {
        self.remote_addr = Some(addr);
    }

    /// Runs `check` on a CER that passed the allow-list and the common-application test,
    /// right before the CEA; an `Err` refuses the peer with its Result-Code.
    pub fn set_admission(&mut self, check: Admission) {
        self.admission = Some(check);
    }

    /// Why policy refused the capabilities exchange, if it did.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// The transport's remote address given to [`Peer::set_remote_addr`].
    pub fn remote_addr(&self) -> Option<IpAddr> {
        self.remote_addr
    }

    /// Current state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// Role of this side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether application traffic can flow.
    pub fn is_open(&self) -> bool {
        self.state == PeerState::Open
    }

    /// Whether the connection is finished (after flushing `poll_transmit`, close it).
    pub fn is_closed(&self) -> bool {
        self.state == PeerState::Closed
    }

    /// Watchdog status.
    pub fn watchdog(&self) -> WatchdogState {
        self.watchdog
    }

    /// The remote peer's capabilities once known.
    pub fn remote(&self) -> Option<&PeerInfo> {
        self.remote.as_ref()
    }

    /// Our configuration.
    pub fn config(&self) -> &Arc<PeerConfig> {
        &self.config
    }

    /// Number of application requests waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Number of peer requests handed out as [`Event::Request`] and not answered yet.
    pub fn unanswered_requests(&self) -> usize {
        self.incoming.len()
    }

    /// A fresh Session-Id `<Origin-Host>;<high 32 bits>;<low 32 bits>` (RFC 6733 §8.8).
    pub fn new_session_id(&mut self) -> String {
        self.session_counter += 1;
        format!(
            "{};{};{}",
            self.config.origin_host, self.session_high, self.session_counter
        )
    }

    // ---------------------------------------------------------------- outputs

    /// Bytes to write to the transport, all queued messages concatenated.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.tx.is_empty() {
            None
        } else {
            Some(self.tx.split().freeze())
        }
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Earliest deadline at which [`Peer::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == PeerState::Closed {
            return None;
        }
        [
            self.watchdog_deadline,
            self.state_deadline,
            self.deadlines.first().map(|&(t, _)| t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---------------------------------------------------------------- inputs

    /// Application command; returns the hop-by-hop id for [`Command::Request`].
    pub fn handle_command(&mut self, now: Instant, c: Command) -> Result<Option<u32>, PeerError> {
        match c {
            Command::Request(m) => self.send_request(now, m).map(Some),
            Command::Answer(m) => self.send_answer(m).map(|_| None),
            Command::Disconnect(cause) => {
                self.disconnect(now, cause);
                Ok(None)
            }
        }
    }

    /// Sends an application request. Assigns the hop-by-hop id (returned) and, when the
    /// message has 0, an end-to-end id; adds Origin-Host/Origin-Realm when absent. The
    /// answer arrives as [`Event::Answer`], or [`Event::RequestFailed`] after
    /// `request_timeout`.
    pub fn send_request(&mut self, now: Instant, m: Message) -> Result<u32, PeerError> {
        let t = self.config.request_timeout;
        self.send_request_with_timeout(now, m, t)
    }

    /// [`Peer::send_request`] with its own answer timeout instead of `request_timeout`.
    pub fn send_request_with_timeout(
        &mut self,
        now: Instant,
        mut m: Message,
        timeout: Duration,
    ) -> Result<u32, PeerError> {
        if self.state != PeerState::Open {
            return Err(PeerError::NotOpen(self.state));
        }
        if !m.is_request() {
            return Err(PeerError::WrongDirection);
        }
        self.fill_origin(&mut m);
        let len = m.encoded_len();
        if len > self.config.max_message_size {
            return Err(PeerError::TooLarge {
                len,
                max: self.config.max_message_size,
            });
        }
        let hbh = self.queue_request(m);
        let deadline = now + timeout;
        self.pending.insert(hbh, deadline);
        self.deadlines.insert((deadline, hbh));
        Ok(hbh)
    }

    /// Sends an answer to a request received as [`Event::Request`]; adds
    /// Origin-Host/Origin-Realm when absent.
    pub fn send_answer(&mut self, mut m: Message) -> Result<(), PeerError> {
        if !matches!(self.state, PeerState::Open | PeerState::Closing) {
            return Err(PeerError::NotOpen(self.state));
        }
        if m.is_request() {
            return Err(PeerError::WrongDirection);
        }
        self.incoming.remove(&m.hop_by_hop);
        self.fill_origin(&mut m);
        let len = m.encoded_len();
        if len > self.config.max_message_size {
            return Err(PeerError::TooLarge {
                len,
                max: self.config.max_message_size,
            });
        }
        m.encode_into(&mut self.tx);
        Ok(())
    }

    /// Orderly shutdown (RFC 6733 §5.4): DPR now, closed on DPA or after
    /// `disconnect_timeout`. Before Open the connection simply closes.
    pub fn disconnect(&mut self, now: Instant, cause: i32) {
        match self.state {
            PeerState::Open => {
                let m = self
                    .base_request(cmd::DISCONNECT_PEER)
                    .with(Avp::enumerated(avp::DISCONNECT_CAUSE, cause));
                let hbh = self.queue_request(m);
                self.base_pending.insert(hbh, cmd::DISCONNECT_PEER);
                self.state = PeerState::Closing;
                self.state_deadline = Some(now + self.config.disconnect_timeout);
                self.watchdog_deadline = None;
            }
            PeerState::Closing | PeerState::Closed => {}
            PeerState::WaitCea | PeerState::WaitCer => self.close(CloseReason::LocalDisconnect),
        }
    }

    /// The transport closed or failed.
    pub fn handle_transport_closed(&mut self) {
        if self.state != PeerState::Closed {
            let reason = if self.state == PeerState::Closing {
                CloseReason::LocalDisconnect
            } else {
                CloseReason::TransportClosed
            };
            self.close(reason);
        }
    }

    /// Timers: watchdog, capabilities/disconnect deadline, request timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == PeerState::Closed {
            return;
        }
        while let Some(&(t, hbh)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if self.pending.remove(&hbh).is_some() {
                self.events.push_back(Event::RequestFailed {
                    hop_by_hop: hbh,
                    reason: FailReason::TimedOut,
                });
            }
        }
        if self.state_deadline.is_some_and(|t| t <= now) {
            self.state_deadline = None;
            match self.state {
                PeerState::WaitCea | PeerState::WaitCer => {
                    self.close(CloseReason::CapabilitiesTimeout);
                    return;
                }
                PeerState::Closing => {
                    self.close(CloseReason::LocalDisconnect);
                    return;
                }
                _ => {}
            }
        }
        if self.watchdog_deadline.is_some_and(|t| t <= now) && self.state == PeerState::Open {
            // RFC 3539 §3.4.1 OnTimerElapsed.
            match (self.watchdog, self.dwr_pending) {
                (WatchdogState::Okay, false) => {
                    let m = self.base_request(cmd::DEVICE_WATCHDOG);
                    let hbh = self.queue_request(m);
                    self.base_pending.insert(hbh, cmd::DEVICE_WATCHDOG);
                    self.dwr_pending = true;
                }
                (WatchdogState::Okay, true) => {
                    self.watchdog = WatchdogState::Suspect;
                    self.events.push_back(Event::WatchdogSuspect);
                }
                (WatchdogState::Suspect, _) => {
                    self.close(CloseReason::WatchdogDown);
                    return;
                }
            }
            self.arm_watchdog(now);
        }
    }

    /// Bytes read from the transport (any split).
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        if self.state == PeerState::Closed {
            return;
        }
        self.rx.extend_from_slice(data);
        loop {
            let len = match frame_length(&self.rx, self.config.max_message_size) {
                Ok(Some(l)) if self.rx.len() >= l => l,
                Ok(_) => break,
                Err(e) => {
                    self.framing_error(e);
                    return;
                }
            };
            let frame = self.rx.split_to(len).freeze();
            self.handle_frame(now, frame);
            if self.state == PeerState::Closed {
                return;
            }
        }
    }

    // ---------------------------------------------------------------- internals

    fn framing_error(&mut self, e: DecodeError) {
        // Answer a request if its header is readable, then give up the stream.
        if let Some(req) = raw_header(&self.rx).filter(|h| h.is_request() && !h.is_error()) {
            if self.state == PeerState::Open {
                self.answer_error(&req, e.result_code(), &e.to_string(), None);
            }
        }
        self.rx.clear();
        self.close(CloseReason::ProtocolError(e.to_string()));
    }

    fn handle_frame(&mut self, now: Instant, frame: Bytes) {
        let max = self.config.max_message_size;
        let msg = match Message::decode_with_limit(frame.clone(), max) {
            Ok(m) => m,
            Err(e) => {
                match Message::decode_header(&frame, max) {
                    Ok((hdr, body)) if hdr.is_request() => {
                        tracing::debug!(error = %e, cmd = hdr.code, "malformed request");
                        self.note_traffic(now);
                        if self.state == PeerState::WaitCer {
                            self.close(CloseReason::ProtocolError(e.to_string()));
                        } else {
                            let failed = crate::codec::offending_avp(&body);
                            self.answer_error(&hdr, e.result_code(), &e.to_string(), failed);
                        }
                    }
                    Ok((hdr, _)) => {
                        tracing::debug!(error = %e, cmd = hdr.code, "malformed answer");
                        self.note_traffic(now);
                        match self.base_pending.remove(&hdr.hop_by_hop) {
                            Some(cmd::CAPABILITIES_EXCHANGE) => {
                                self.close(CloseReason::ProtocolError(format!(
                                    "malformed CEA: {e}"
                                )));
                                return;
                            }
                            // Garbled, but the peer is alive and answered.
                            Some(cmd::DEVICE_WATCHDOG) => self.dwr_pending = false,
                            Some(cmd::DISCONNECT_PEER) => {
                                self.close(CloseReason::LocalDisconnect);
                                return;
                            }
                            _ => {}
                        }
                        if self.pending.remove(&hdr.hop_by_hop).is_some() {
                            self.events.push_back(Event::RequestFailed {
                                hop_by_hop: hdr.hop_by_hop,
                                reason: FailReason::MalformedAnswer(e),
                            });
                        }
                    }
                    Err(e2) => {
                        // R and E together: answer 3008 on an open connection, else close.
                        if let (DecodeError::InvalidHeaderBits(_), Some(mut hdr)) =
                            (&e2, raw_header(&frame))
                        {
                            if self.state == PeerState::Open {
                                hdr.flags &= !Message::FLAG_E;
                                self.answer_error(
                                    &hdr,
                                    result::INVALID_HDR_BITS,
                                    &e2.to_string(),
                                    None,
                                );
                                return;
                            }
                        }
                        self.close(CloseReason::ProtocolError(e2.to_string()));
                    }
                }
                return;
            }
        };
        tracing::trace!(msg = ?msg, "rx");
        self.note_traffic(now);
        if msg.is_request() {
            self.handle_request(now, msg);
        } else {
            self.handle_answer(now, msg);
        }
    }

    /// RFC 3539 §3.4.1 OnReceive: any message from the peer restarts Tw and takes a
    /// SUSPECT connection back to OKAY (an outstanding DWR stays pending until its DWA).
    fn note_traffic(&mut self, now: Instant) {
        if self.state == PeerState::Open {
            self.arm_watchdog(now);
            if self.watchdog == WatchdogState::Suspect {
                self.watchdog = WatchdogState::Okay;
                self.events.push_back(Event::WatchdogRecovered);
            }
        }
    }

    fn arm_watchdog(&mut self, now: Instant) {
        let tw = self.config.watchdog_interval;
        let j = self.config.watchdog_jitter.as_millis() as u64;
        let deadline = if j == 0 {
            now + tw
        } else {
            let r = self.rng.next() % (2 * j + 1);
            let t = tw.as_millis() as u64 + r;
            now + Duration::from_millis(t.saturating_sub(j).max(1))
        };
        self.watchdog_deadline = Some(deadline);
    }

    fn handle_request(&mut self, now: Instant, req: Message) {
        match self.state {
            PeerState::WaitCer => {
                if req.code == cmd::CAPABILITIES_EXCHANGE && req.app_id == app::COMMON {
                    self.handle_cer(now, &req);
                } else {
                    self.close(CloseReason::ProtocolError(format!(
                        "{} before CER",
                        req.name()
                    )));
                }
                return;
            }
            PeerState::WaitCea => {
                self.close(CloseReason::ProtocolError(format!(
                    "{} before CEA",
                    req.name()
                )));
                return;
            }
            PeerState::Closed => return,
            PeerState::Open | PeerState::Closing => {}
        }
        if req.app_id == app::COMMON {
            match req.code {
                cmd::DEVICE_WATCHDOG => {
                    let mut a = Message::answer_for(&req).with_result_code(result::SUCCESS);
                    self.fill_origin(&mut a);
                    if let Some(id) = self.config.origin_state_id {
                        a.add(Avp::u32(avp::ORIGIN_STATE_ID, id));
                    }
                    a.encode_into(&mut self.tx);
                }
                cmd::DISCONNECT_PEER => {
                    let cause = req.opt_i32(avp::DISCONNECT_CAUSE).ok().flatten();
                    let mut a = Message::answer_for(&req).with_result_code(result::SUCCESS);
                    self.fill_origin(&mut a);
                    a.encode_into(&mut self.tx);
                    self.close(CloseReason::PeerDisconnected(cause));
                }
                cmd::CAPABILITIES_EXCHANGE => {
                    // RFC 6733 §5.6: a CER on an open connection is not an election here.
                    self.answer_error(
                        &req,
                        result::UNABLE_TO_COMPLY,
                        "CER on an open connection",
                        None,
                    );
                }
                _ => self.answer_error(
                    &req,
                    result::COMMAND_UNSUPPORTED,
                    "unsupported command",
                    None,
                ),
            }
            return;
        }
        if !self.config.supports_app(req.app_id) {
            self.answer_error(
                &req,
                result::APPLICATION_UNSUPPORTED,
                "application not supported",
                None,
            );
            return;
        }
        let dict_knows_app = COMMANDS.iter().any(|c| c.app_id == req.app_id);
        if dict_knows_app && lookup_command(req.code, req.app_id).is_none() {
            self.answer_error(
                &req,
                result::COMMAND_UNSUPPORTED,
                "unsupported command",
                None,
            );
            return;
        }
        if self.config.reject_unknown_mandatory {
            if let Some(bad) = req.avps.iter().find(|a| {
                a.is_mandatory()
                    && lookup_avp(a.code, a.vendor()).is_none()
                    && !self.config.extra_avps.contains(&(a.code, a.vendor()))
            }) {
                let bad = bad.clone();
                self.answer_error(
                    &req,
                    result::AVP_UNSUPPORTED,
                    "unsupported mandatory AVP",
                    Some(bad),
                );
                return;
            }
        }
        if let Some(extra) = crate::dict::excess_avp(&req) {
            // RFC 6733 §7.5: the Failed-AVP holds the first copy beyond the limit. Answered
            // here, once for every command, so no handler ever sees an ambiguous request
            // (which of two User-Names would it authenticate?).
            let name = lookup_avp(extra.code, extra.vendor()).map_or("AVP", |d| d.name);
            let text = format!("{name} occurs more than once");
            let extra = extra.clone();
            self.answer_error(&req, result::AVP_OCCURS_TOO_MANY_TIMES, &text, Some(extra));
            return;
        }
        if self.incoming.len() >= self.config.max_incoming_requests {
            self.answer_error(
                &req,
                result::TOO_BUSY,
                "too many requests in progress",
                None,
            );
            return;
        }
        self.incoming.insert(req.hop_by_hop);
        self.events.push_back(Event::Request(req));
    }

    fn handle_cer(&mut self, now: Instant, req: &Message) {
        let info = match PeerInfo::from_message(req) {
            Ok(i) => i,
            Err(e) => {
                let code = e.result_code();
                self.send_cea(req, code, Some(&e.to_string()));
                self.close(CloseReason::CapabilitiesRejected(code));
                return;
            }
        };
        if let Err(r) = self.config.check_peer(&info, self.remote_addr) {
            self.refuse(req, &info, r);
            return;
        }
        if !self.has_common_app(&info) {
            self.send_cea(req, result::NO_COMMON_APPLICATION, None);
            self.close(CloseReason::CapabilitiesRejected(
                result::NO_COMMON_APPLICATION,
            ));
            return;
        }
        if let Some(Err(r)) = self.admission.as_mut().map(|f| f(&info)) {
            self.refuse(req, &info, r);
            return;
        }
        self.send_cea(req, result::SUCCESS, None);
        self.open(now, info);
    }

    /// CEA with the refusal's Result-Code, then close (RFC 6733 §5.3).
    fn refuse(&mut self, req: &Message, info: &PeerInfo, r: Refusal) {
        let text = match r {
            Refusal::UnknownHost => "peer not allowed",
            Refusal::WrongAddress => "peer not allowed from this address",
            Refusal::AlreadyConnected => "peer already connected",
        };
        let (peer, addr) = (&info.origin_host, self.remote_addr);
        match r {
            Refusal::UnknownHost => {
                tracing::warn!(%peer, ?addr, "CER from a peer not in the allow-list")
            }
            Refusal::WrongAddress => tracing::warn!(
                %peer,
                ?addr,
                "CER from an allowed Origin-Host at an address not allowed for it"
            ),
            Refusal::AlreadyConnected => tracing::info!(
                %peer,
                ?addr,
                "CER from a peer that already has an open connection"
            ),
        }
        self.refusal = Some(r);
        self.send_cea(req, r.result_code(), Some(text));
        self.close(CloseReason::CapabilitiesRejected(r.result_code()));
    }

    fn has_common_app(&self, info: &PeerInfo) -> bool {
        let c = &self.config;
        c.auth_application_ids
            .iter()
            .chain(&c.acct_application_ids)
            .chain(c.vendor_specific_auth_apps.iter().map(|(_, a)| a))
            .any(|&a| info.supports_app(a) || a == app::RELAY)
    }

    fn send_cea(&mut self, req: &Message, code: u32, msg: Option<&str>) {
        let mut a = Message::answer_for(req).with_result_code(code);
        if crate::message::is_protocol_error(code) {
            a.flags |= Message::FLAG_E;
        }
        let mut a = self.capabilities(a);
        if let Some(m) = msg {
            a.add(Avp::utf8(avp::ERROR_MESSAGE, m));
        }
        a.encode_into(&mut self.tx);
    }

    fn open(&mut self, now: Instant, info: PeerInfo) {
        tracing::info!(peer = %info.origin_host, product = %info.product_name, "Diameter peer open");
        self.state = PeerState::Open;
        self.state_deadline = None;
        self.remote = Some(info.clone());
        self.arm_watchdog(now);
        self.events.push_back(Event::Up(info));
    }

    fn handle_answer(&mut self, now: Instant, ans: Message) {
        if let Some(kind) = self.base_pending.remove(&ans.hop_by_hop) {
            match kind {
                cmd::CAPABILITIES_EXCHANGE if self.state == PeerState::WaitCea => {
                    let code = ans.result().map(|r| r.code()).unwrap_or(0);
                    if ans.result() != Some(ResultCode::Base(result::SUCCESS)) {
                        self.close(CloseReason::CapabilitiesRejected(code));
                        return;
                    }
                    match PeerInfo::from_message(&ans) {
                        Ok(info) if self.has_common_app(&info) => {
                            match self.config.check_peer(&info, self.remote_addr) {
                                Ok(()) => self.open(now, info),
                                Err(r) => {
                                    tracing::warn!(peer = %info.origin_host, addr = ?self.remote_addr, reason = r.as_str(), "CEA from a peer we do not accept");
                                    self.refusal = Some(r);
                                    self.close(CloseReason::CapabilitiesRejected(r.result_code()));
                                }
                            }
                        }
                        Ok(_) => self.close(CloseReason::CapabilitiesRejected(
                            result::NO_COMMON_APPLICATION,
                        )),
                        Err(e) => self.close(CloseReason::ProtocolError(e.to_string())),
                    }
                }
                cmd::DEVICE_WATCHDOG => self.dwr_pending = false,
                cmd::DISCONNECT_PEER => self.close(CloseReason::LocalDisconnect),
                _ => {}
            }
            return;
        }
        if self.state == PeerState::WaitCea {
            self.close(CloseReason::ProtocolError(format!(
                "{} before CEA",
                ans.name()
            )));
            return;
        }
        if let Some(deadline) = self.pending.remove(&ans.hop_by_hop) {
            self.deadlines.remove(&(deadline, ans.hop_by_hop));
            self.events.push_back(Event::Answer(ans));
        } else {
            tracing::debug!(
                hbh = ans.hop_by_hop,
                "answer to no pending request, dropped"
            );
        }
    }

    fn answer_error(&mut self, req: &Message, code: u32, text: &str, failed: Option<Avp>) {
        let mut a = Message::error_answer(req, code, Some(text));
        if let Some(f) = failed {
            a.add(Avp::failed_avp([f]));
        }
        self.fill_origin(&mut a);
        a.encode_into(&mut self.tx);
    }

    fn fill_origin(&self, m: &mut Message) {
        if m.find(avp::ORIGIN_HOST).is_none() {
            m.add(Avp::utf8(avp::ORIGIN_HOST, &self.config.origin_host));
        }
        if m.find(avp::ORIGIN_REALM).is_none() {
            m.add(Avp::utf8(avp::ORIGIN_REALM, &self.config.origin_realm));
        }
    }

    fn base_request(&self, code: u32) -> Message {
        let mut m = Message::request(app::COMMON, code);
        self.fill_origin(&mut m);
        if code == cmd::DEVICE_WATCHDOG {
            if let Some(id) = self.config.origin_state_id {
                m.add(Avp::u32(avp::ORIGIN_STATE_ID, id));
            }
        }
        m
    }

    /// Adds our identity and capabilities (RFC 6733 §5.3.1/§5.3.2 order) to a CER/CEA.
    fn capabilities(&self, mut m: Message) -> Message {
        let c = &self.config;
        m.add(Avp::utf8(avp::ORIGIN_HOST, &c.origin_host));
        m.add(Avp::utf8(avp::ORIGIN_REALM, &c.origin_realm));
        for ip in &self.local_ips {
            m.add(Avp::address(avp::HOST_IP_ADDRESS, *ip));
        }
        m.add(Avp::u32(avp::VENDOR_ID, c.vendor_id));
        m.add(Avp::utf8(avp::PRODUCT_NAME, &c.product_name));
        if let Some(id) = c.origin_state_id {
            m.add(Avp::u32(avp::ORIGIN_STATE_ID, id));
        }
        for &v in &c.supported_vendor_ids {
            m.add(Avp::u32(avp::SUPPORTED_VENDOR_ID, v));
        }
        for &a in &c.auth_application_ids {
            m.add(Avp::u32(avp::AUTH_APPLICATION_ID, a));
        }
        for &a in &c.acct_application_ids {
            m.add(Avp::u32(avp::ACCT_APPLICATION_ID, a));
        }
        for &(v, a) in &c.vendor_specific_auth_apps {
            m.add(Avp::vendor_specific_auth_app(v, a));
        }
        if let Some(f) = c.firmware_revision {
            m.add(Avp::u32(avp::FIRMWARE_REVISION, f));
        }
        m
    }

    fn queue_request(&mut self, mut m: Message) -> u32 {
        let hbh = self.next_hbh;
        self.next_hbh = self.next_hbh.wrapping_add(1);
        m.hop_by_hop = hbh;
        if m.end_to_end == 0 {
            m.end_to_end = self.next_e2e;
            self.next_e2e = self.next_e2e.wrapping_add(1);
        }
        tracing::trace!(msg = ?m, "tx");
        m.encode_into(&mut self.tx);
        hbh
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state == PeerState::Closed {
            return;
        }
        tracing::debug!(?reason, "Diameter connection closed");
        self.state = PeerState::Closed;
        self.watchdog_deadline = None;
        self.state_deadline = None;
        let mut failed: Vec<u32> = self.pending.drain().map(|(h, _)| h).collect();
        failed.sort_unstable();
        self.deadlines.clear();
        for h in failed {
            self.events.push_back(Event::RequestFailed {
                hop_by_hop: h,
                reason: FailReason::ConnectionClosed,
            });
        }
        self.events.push_back(Event::Closed(reason));
    }
}

/// Header fields of the first 20 bytes, whatever the version and length say.
fn raw_header(b: &[u8]) -> Option<Message> {
    let h = b.get(..20)?;
    let be = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    Some(Message {
        flags: h[4],
        code: be(4) & 0x00ff_ffff,
        app_id: be(8),
        hop_by_hop: be(12),
        end_to_end: be(16),
        avps: Vec::new(),
    })
}

/// Disconnect-Cause DO_NOT_WANT_TO_TALK_TO_YOU, the usual cause for an orderly stop.
pub const DEFAULT_DISCONNECT_CAUSE: i32 = enums::DISCONNECT_DO_NOT_WANT_TO_TALK_TO_YOU;
