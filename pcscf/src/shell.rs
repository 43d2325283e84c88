//! The tokio shell around [`crate::node::Node`]: sockets and IPsec through
//! [`secagree::SipIo`], Cx through a `diameter` client, timers. A loop of a few dozen lines;
//! all decisions are in the cores.

use crate::config::{Config, IpsecPolicy, ScscfMode, UpstreamTransport};
use crate::core::{CoreConfig, CoreEvent, SaStep, SecurityOp, Stats, Upstream};
use crate::metrics::{Metrics, SaState};
use crate::node::{Event, Node, Output};
use crate::rewrite::{Peers, Rewriter};
use scscf::cxclient::{self, CxClient, HssPeer};
use scscf::CxIdentity;
use secagree::{IpsecMode, SipIo};
use sip::transaction::TxId;
use sip::transport::TransportConfig;
use sip::Limits;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use xfrm::{Side, Tag};

/// Why the P-CSCF could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// IPsec backend or sockets.
    #[error(transparent)]
    Io(#[from] secagree::SipIoError),
    /// Binding the SIP port.
    #[error("bind SIP {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
    /// The core's pools.
    #[error(transparent)]
    Core(#[from] crate::core::CoreError),
    /// No HSS.
    #[error("cannot reach the HSS at {addr}: {reason}")]
    Hss {
        /// Address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The `/metrics` endpoint.
    #[error("metrics endpoint: {0}")]
    Metrics(#[from] crate::metrics::ServeError),
    /// The `[rewrite] file`.
    #[error(transparent)]
    Rewrite(#[from] siprewrite::FileError),
}

/// A running P-CSCF.
pub struct Running {
    /// Where SIP listens (unprotected).
    pub sip_addr: SocketAddr,
    /// IPsec backend in use ("kernel", "userspace", "off").
    pub backend: &'static str,
    /// The tag of our kernel XFRM state ([`xfrm_tag`]).
    pub xfrm_tag: Tag,
    /// Where `/metrics` is served, when `[metrics] listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    _metrics_server: Option<crate::metrics::MetricsServer>,
    stop: watch::Sender<bool>,
    stats: Arc<Mutex<Stats>>,
    task: tokio::task::JoinHandle<()>,
    io: SipIo,
}

impl Running {
    /// Counters so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `esp_sa` UAT of every SA set since start.
    pub fn esp_sa_history(&self) -> String {
        self.io.esp_sa_history()
    }

    /// Number of SA sets installed right now.
    pub fn live_sa_sets(&self) -> usize {
        self.io.live_sets().len()
    }

    /// Stop: flush our IPsec state and end the loop.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Err(e) = self.io.flush() {
            tracing::warn!("flushing IPsec state at stop: {e}");
        }
    }
}

/// The XFRM tag of the P-CSCF listening on `listen` (its configured SIP address): the same
/// for every run with that address, so a restart flushes the previous run's leftovers, and
/// different from any other P-CSCF's or UE's in the namespace. With port 0 the address says
/// nothing about the instance: then the tag is this process's own
/// ([`Tag::for_this_process`]).
pub fn xfrm_tag(listen: SocketAddr) -> Tag {
    if listen.port() == 0 {
        Tag::for_this_process(XFRM_ROLE)
    } else {
        Tag::for_instance(XFRM_ROLE, &[listen])
    }
}

/// The role name in our XFRM tag ([`Tag::for_instance`]).
const XFRM_ROLE: &str = "pcscf";

/// Start the P-CSCF as configured.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    cfg.validate()?;
    let policy = cfg.ipsec.policy;
    let mode = if policy == IpsecPolicy::Off {
        IpsecMode::Off
    } else {
        IpsecMode::Backend(cfg.backend_kind()?)
    };
    let tcfg = TransportConfig {
        limits: Limits {
            max_message: cfg.sip.max_message_size,
            ..Limits::default()
        },
        tcp_idle_timeout: Some(Duration::from_secs(cfg.tcp.idle_timeout)),
        ..TransportConfig::default()
    };
    let rewriter = Rewriter::start(cfg.rewrite.file.as_deref(), Peers::of(&cfg), tcfg.limits)?;
    // Our XFRM state carries this instance's own tag so start/stop flush only what this
    // P-CSCF (or its previous run) installed, never another P-CSCF's in the same namespace.
    let listen = cfg.sip.listen;
    let xfrm_tag = xfrm_tag(listen);
    tracing::info!("kernel XFRM state tagged {xfrm_tag}");
    let (io, mut rx) = match SipIo::start(mode, xfrm_tag, tcfg).await {
        Ok(x) => x,
        Err(e) if policy == IpsecPolicy::Optional => {
            tracing::warn!("IPsec unavailable ({e}); continuing without (policy optional)");
            SipIo::start(IpsecMode::Off, xfrm_tag, tcfg).await?
        }
        Err(e) => return Err(e.into()),
    };
    let sip_addr = rewriter
        .bind_udp(io.transport(), listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    io.transport()
        .bind_tcp(sip_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: sip_addr,
            source,
        })?;
    let origin_host = cfg.origin_host();
    let realm = cfg.realm();
    // What UEs and peers are told (SAs, Path, Via): never a wildcard listen address.
    let advertise = SocketAddr::new(cfg.advertise_addr().ip(), sip_addr.port());
    let core_cfg = CoreConfig {
        domain: cfg.sip.domain.clone(),
        local_ip: advertise.ip(),
        sip_port: sip_addr.port(),
        policy,
        ipsec_available: io.has_ipsec(),
        prefs: cfg.alg_prefs()?,
        spi_range: (cfg.ipsec.spi_range[0], cfg.ipsec.spi_range[1]),
        port_range: (cfg.ipsec.port_range[0], cfg.ipsec.port_range[1]),
        default_expires: cfg.registrar.default_expires,
        auth_timeout: Duration::from_secs(u64::from(cfg.registrar.auth_timeout)),
        retire_grace: Duration::from_millis(cfg.ipsec.retire_grace_ms),
        max_challenges_per_impi: MAX_CHALLENGES_PER_IMPI,
        limits: tcfg.limits,
    };
    // Proxy mode: the S-CSCF talks to the HSS, we do not.
    // Where the collapsed S-CSCF's own messages leave from, once it listens there.
    let mut scscf_local = None;
    let (node, hss, mut hss_requests) = match cfg.scscf.mode {
        ScscfMode::Proxy => {
            let upstream = Upstream {
                address: cfg.scscf.address,
                protocol: match cfg.scscf.transport {
                    UpstreamTransport::Udp => sip::Protocol::Udp,
                    UpstreamTransport::Tcp => sip::Protocol::Tcp,
                },
                route: cfg.scscf.uri.clone(),
                visited_network_id: cfg.visited_network_id(),
                reg_event: cfg.scscf.subscribe_reg_event,
            };
            (
                Node::proxy(core_cfg, upstream)?.with_admission(cfg.admission.core()),
                None,
                None,
            )
        }
        ScscfMode::Collapsed => {
            // Our S-CSCF lives at its own address beside ours (Service-Route, Server-Name
            // on Cx), on our IP when the configured one is a wildcard.
            let mut s_addr = cfg.scscf.address;
            if s_addr.ip().is_unspecified() {
                s_addr.set_ip(advertise.ip());
            }
            let s_cfg = scscf::Config {
                domain: cfg.sip.domain.clone(),
                address: s_addr,
                min_expires: cfg.registrar.min_expires,
                max_expires: cfg.registrar.max_expires,
                default_expires: cfg.registrar.default_expires,
                auth_timeout: Duration::from_secs(u64::from(cfg.registrar.auth_timeout)),
                max_challenges_per_impi: MAX_CHALLENGES_PER_IMPI,
                cx: CxIdentity {
                    origin_host: origin_host.clone(),
                    origin_realm: realm.clone(),
                    destination_realm: realm.clone(),
                    server_name: scscf::cx::server_name(s_addr),
                },
                limits: tcfg.limits,
                routing: Default::default(),
            };
            let node = Node::collapsed(core_cfg, s_cfg, cfg.visited_network_id())?
                .with_reg_event(cfg.scscf.subscribe_reg_event)
                .with_admission(cfg.admission.core())
                .with_isc(cfg.isc.core());
            // Application servers that iFCs send requests to return them to the S-CSCF's
            // own address (ISC, TS 24.229 §5.4.3.2), and send their own there.
            let bound = async {
                io.transport().bind_udp(s_addr).await?;
                io.transport().bind_tcp(s_addr).await
            }
            .await;
            if bound.is_ok() {
                scscf_local = Some(s_addr);
            }
            if let Err(e) = bound {
                tracing::warn!(
                    "the collapsed S-CSCF cannot listen on {s_addr} ({e}): application \
                     servers cannot reach it; give [scscf] address a free port"
                );
            }
            let peer = HssPeer {
                address: cfg.hss.address,
                origin_host: origin_host.clone(),
                realm: realm.clone(),
                timeout: Duration::from_millis(cfg.hss.timeout_ms),
            };
            let hss = cxclient::connect(&peer)
                .await
                .map_err(|e| StartError::Hss {
                    addr: cfg.hss.address,
                    reason: e.to_string(),
                })?;
            (node, Some(hss.0), Some(hss.1))
        }
    };
    let backend = io.backend_name();
    let tcp_through_sa = backend != "userspace";
    if !tcp_through_sa {
        note_no_tcp_through_sa();
    }
    let mut node = node.with_tcp_to_ue(sip::SizeRule::new(cfg.tcp.size_threshold), tcp_through_sa);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stats = Arc::new(Mutex::new(Stats::default()));
    let stats2 = stats.clone();
    let io2 = io.clone();
    let esp_sa_file = match &cfg.ipsec.esp_sa_file {
        Some(p) => match create_keys_file(p).and_then(|()| KeysWriter::start(p.clone())) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "esp_sa file {}: {e}; keys will not be exported",
                    p.display()
                );
                None
            }
        },
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let (metrics_addr, metrics_server) = match cfg.metrics.listen {
        Some(addr) => {
            let server = crate::metrics::serve(addr, metrics.clone()).await?;
            (Some(server.local_addr()), Some(server))
        }
        None => (None, None),
    };
    let overload_backlog = cfg.admission.overload_backlog;
    let task = tokio::spawn(async move {
        let (cx, mut cx_rx) = CxClient::new(hss);
        let mut shedding = false;
        let (send_failed, mut send_failures) = tokio::sync::mpsc::unbounded_channel();
        let mut last_gauges = Instant::now()
            .checked_sub(GAUGE_PERIOD)
            .unwrap_or_else(Instant::now);
        loop {
            let sinks = Sinks {
                cx: &cx,
                esp_sa_file: esp_sa_file.as_ref(),
                metrics: &metrics,
                send_failed: &send_failed,
                rewriter: &rewriter,
                scscf_local,
            };
            drain(&mut node, &io2, &sinks).await;
            *stats2.lock().unwrap_or_else(|e| e.into_inner()) = node.stats();
            // Gauges walk the registrations: a few times a second is plenty for a
            // scrape, and keeps the per-message cost of the loop flat.
            if last_gauges.elapsed() >= GAUGE_PERIOD {
                gauges(&node, &metrics);
                last_gauges = Instant::now();
            }
            let deadline = node.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => {
                        // The backlog is what the next messages will wait: shed new work
                        // above the mark, resume below half of it (hysteresis).
                        let backlog = rx.len();
                        if overload_backlog > 0 {
                            if backlog >= overload_backlog && !shedding {
                                shedding = true;
                                node.set_overloaded(true);
                                tracing::warn!(backlog, "overloaded: new work answered 503");
                            } else if backlog < overload_backlog / 2 && shedding {
                                shedding = false;
                                node.set_overloaded(false);
                                tracing::info!(backlog, "no longer overloaded");
                            }
                        }
                        let data = rewriter.inbound(&m.flow, m.data);
                        node.handle_inbound(m.flow, data, Instant::now())
                    }
                    None => break,
                },
                Some((token, answer)) = cx_rx.recv() => {
                    node.handle_cx_answer(token, answer, Instant::now());
                }
                Some((role, tx)) = send_failures.recv() => {
                    node.handle_transport_error(role, tx, Instant::now());
                }
                q = cxclient::next_request(&mut hss_requests) => {
                    let _ = q.reply.send(node.handle_cx_request(&q.request, Instant::now()));
                }
                _ = sleep => node.handle_timeout(Instant::now()),
                _ = stop_rx.changed() => break,
            }
        }
    });
    Ok(Running {
        sip_addr,
        backend,
        xfrm_tag,
        metrics_addr,
        _metrics_server: metrics_server,
        stop: stop_tx,
        stats,
        task,
        io,
    })
}

/// Says once per process (not per message, not per P-CSCF in a test process) that the
/// userspace ESP backend keeps SIP toward UEs on UDP: it has no TCP stack, so the RFC 3261
/// §18.1.1 size rule cannot move large requests to TCP inside the SAs.
fn note_no_tcp_through_sa() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::info!(
            "userspace ESP backend: no TCP inside the SAs, so SIP toward UEs stays on UDP \
             whatever its size (RFC 3261 §18.1.1 asks for TCP above [tcp] size_threshold); \
             use the kernel backend for SIP over TCP"
        )
    });
}

/// How often the loop refreshes the gauges of `/metrics`.
const GAUGE_PERIOD: Duration = Duration::from_millis(250);

/// How many challenges (each with its temporary SA set) may wait per IMPI: enough for a
/// UE that retries, few enough that nobody can exhaust our SPIs through one identity.
const MAX_CHALLENGES_PER_IMPI: usize = 3;

/// Where [`drain`] hands what is not SIP on an open socket.
struct Sinks<'a> {
    cx: &'a CxClient,
    esp_sa_file: Option<&'a KeysWriter>,
    metrics: &'a Arc<Metrics>,
    /// Sends that failed off the loop, for [`Node::handle_transport_error`].
    send_failed: &'a tokio::sync::mpsc::UnboundedSender<(crate::node::Role, Option<TxId>)>,
    /// Interop rewrite rules, applied to everything sent.
    rewriter: &'a Rewriter,
    /// The collapsed S-CSCF's address when it listens there: what it sends to application
    /// servers leaves from it, so that their requests come back to it.
    scscf_local: Option<SocketAddr>,
}

async fn drain(node: &mut Node, io: &SipIo, sinks: &Sinks<'_>) {
    let Sinks {
        cx,
        esp_sa_file,
        metrics,
        send_failed,
        rewriter,
        scscf_local,
    } = *sinks;
    while let Some(o) = node.poll_output() {
        match o {
            Output::Transmit(role, mut t) => {
                if role == crate::node::Role::Scscf && t.flow.local.is_none() {
                    t.flow.local = scscf_local;
                }
                let (t, dscp) = rewriter.outbound(role, t);
                if t.flow.protocol == sip::Protocol::Tcp
                    && !io.transport().has_tcp_connection(&t.flow)
                {
                    // A new connection: its connect must not stall everybody else's SIP (a
                    // UE that vanished never answers the SYN). A failure comes back to the
                    // loop, which hands it to the transaction (the size rule's UDP
                    // fallback).
                    let (io, send_failed) = (io.clone(), send_failed.clone());
                    tokio::spawn(async move {
                        if let Err(e) = io.send(&t).await {
                            tracing::warn!("send to {}: {e}", t.flow.remote);
                            let _ = send_failed.send((role, t.tx));
                        }
                    });
                    continue;
                }
                if dscp.is_some_and(|d| rewriter.send_with_dscp(&t, d)) {
                    continue;
                }
                if let Err(e) = io.send(&t).await {
                    tracing::warn!("send to {}: {e}", t.flow.remote);
                    node.handle_transport_error(role, t.tx, Instant::now());
                }
            }
            // Only the collapsed S-CSCF asks; without an HSS (proxy mode) the client
            // answers Closed.
            Output::Cx { token, request } => cx.request(token, request, metrics.clone()),
            Output::Security(op) => {
                let now = Instant::now();
                match op {
                    SecurityOp::Prepare { token, set } => {
                        let r = async {
                            io.open_protected(set.pcscf, set.port_pc, set.port_ps)
                                .await?;
                            // TCP on these ports only from the UE the SAs pair them with.
                            io.restrict_tcp(
                                SocketAddr::new(set.pcscf, set.port_ps),
                                SocketAddr::new(set.ue, set.port_uc),
                            );
                            io.restrict_tcp(
                                SocketAddr::new(set.pcscf, set.port_pc),
                                SocketAddr::new(set.ue, set.port_us),
                            );
                            let s = set.clone();
                            match xfrm_op(io, move |io| io.install(&s, Side::Pcscf)).await {
                                Ok(id) => Ok(id),
                                Err(e) => {
                                    io.close_protected(set.pcscf, set.port_pc, set.port_ps);
                                    Err(e)
                                }
                            }
                        }
                        .await;
                        if r.is_ok() {
                            if let Some(w) = esp_sa_file {
                                w.append(&set);
                            }
                        }
                        node.handle_security_ready(token, r, Instant::now());
                    }
                    SecurityOp::Promote { id, lifetime } => {
                        let r = xfrm_op(io, move |io| io.promote(id, lifetime, now)).await;
                        node.handle_security_result(id, SaStep::Promote, r, Instant::now());
                    }
                    SecurityOp::Retire { id, grace } => {
                        let r = xfrm_op(io, move |io| io.begin_expiry(id, grace, now)).await;
                        node.handle_security_result(id, SaStep::Retire, r, Instant::now());
                    }
                    SecurityOp::Delete { id, set } => {
                        let r = xfrm_op(io, move |io| io.delete(id)).await;
                        io.close_protected(set.pcscf, set.port_pc, set.port_ps);
                        node.handle_security_result(id, SaStep::Delete, r, Instant::now());
                    }
                }
            }
            Output::Event(Event::Pcscf(e)) => {
                metrics.count(&e);
                log_event(&e)
            }
            Output::Event(Event::Scscf(e)) => log_scscf_event(&e),
        }
    }
}

/// Runs an IPsec operation off the event loop where it can block: the kernel backend's
/// netlink round trips go to the blocking pool, so a slow kernel never stalls SIP; the
/// userspace backend (and IPsec off) only touches memory and runs inline.
async fn xfrm_op<T: Send + 'static>(
    io: &SipIo,
    f: impl FnOnce(SipIo) -> Result<T, secagree::SipIoError> + Send + 'static,
) -> Result<T, secagree::SipIoError> {
    if !io.may_block() {
        return f(io.clone());
    }
    let io = io.clone();
    tokio::task::spawn_blocking(move || f(io))
        .await
        .unwrap_or_else(|e| {
            Err(secagree::SipIoError::Io {
                what: "IPsec operation".into(),
                source: std::io::Error::other(e),
            })
        })
}

/// Starts the esp_sa file afresh (mode 0600: it holds keys).
fn create_keys_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(xfrm::uat::esp_sa_file(std::iter::empty()).as_bytes())
}

/// Appends SA sets' records to the esp_sa file from one writer thread, in install order:
/// the event loop never waits on the disk, and a burst of installs costs one thread, not a
/// blocking-pool thread each. The thread ends when the shell drops its writer.
struct KeysWriter(std::sync::mpsc::Sender<xfrm::SaSet>);

impl KeysWriter {
    fn start(path: std::path::PathBuf) -> std::io::Result<KeysWriter> {
        let (tx, rx) = std::sync::mpsc::channel::<xfrm::SaSet>();
        std::thread::Builder::new()
            .name("esp-sa-file".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Whatever queued up meanwhile goes out in the same write.
                    let sets: Vec<_> = std::iter::once(first).chain(rx.try_iter()).collect();
                    append_keys(&sets, &path);
                }
            })?;
        Ok(KeysWriter(tx))
    }

    fn append(&self, set: &xfrm::SaSet) {
        // Only fails once the writer thread is gone, and then there is no file to write.
        let _ = self.0.send(set.clone());
    }
}

/// Appends the sets' records: the file grows with the session, so a capture of all of it
/// decrypts, and each install costs O(1) however many sets came before.
fn append_keys(sets: &[xfrm::SaSet], path: &std::path::Path) {
    use std::io::Write;
    let mut text = String::new();
    for r in sets.iter().flat_map(xfrm::uat::records) {
        text.push_str(&r);
        text.push('\n');
    }
    let r = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = r {
        tracing::warn!("append to esp_sa file {}: {e}", path.display());
    }
}

fn log_event(e: &CoreEvent) {
    match e {
        CoreEvent::Challenged { impi, ipsec } => tracing::info!(%impi, ipsec, "401 challenge"),
        CoreEvent::Registered {
            impu,
            impi,
            expires,
            protected,
        } => tracing::info!(%impu, %impi, expires, protected, "registered"),
        CoreEvent::Deregistered { impu, reason } => tracing::info!(%impu, reason, "deregistered"),
        CoreEvent::Rejected { impi, code, reason } => {
            tracing::warn!(%impi, code, %reason, "REGISTER rejected")
        }
        CoreEvent::Dropped { remote, reason } => tracing::debug!(%remote, %reason, "dropped"),
        CoreEvent::SaFailed {
            id,
            step,
            impi,
            error,
        } => tracing::warn!(id, %step, ?impi, %error, "SA set operation failed"),
        CoreEvent::Refused {
            method,
            code,
            reason,
        } => tracing::info!(%method, code, %reason, "request refused"),
    }
}

/// Gauges, after every pass of the loop.
fn gauges(node: &Node, m: &Metrics) {
    let p = node.pcscf();
    let temporary = p.pending_challenges();
    let established = p.established_sa_count();
    let retiring = p.sa_count().saturating_sub(temporary + established);
    m.set_registered(p.registration_count() as u64);
    m.set_sa_sets(SaState::Temporary, temporary as u64);
    m.set_sa_sets(SaState::Established, established as u64);
    m.set_sa_sets(SaState::Retiring, retiring as u64);
    let s_tx = node.scscf().map_or(0, scscf::Scscf::transaction_count);
    m.set_transactions((p.transaction_count() + s_tx) as u64);
}

fn log_scscf_event(e: &scscf::Event) {
    use scscf::Event as E;
    match e {
        E::Challenged { impi } => tracing::debug!(%impi, "S-CSCF: 401 challenge"),
        E::Registered {
            impu,
            impi,
            expires,
        } => tracing::debug!(%impu, %impi, expires, "S-CSCF: registered"),
        E::Deregistered { impu, reason } => {
            tracing::info!(%impu, ?reason, "S-CSCF: deregistered")
        }
        E::Rejected { impi, code, reason } => {
            tracing::warn!(%impi, code, %reason, "S-CSCF: REGISTER rejected")
        }
        E::Dropped { remote, reason } => tracing::debug!(%remote, %reason, "S-CSCF: dropped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfrm_tag_per_listen_address() {
        let a: SocketAddr = "10.77.0.1:5060".parse().unwrap();
        let b: SocketAddr = "10.77.0.3:5060".parse().unwrap();
        // A restart finds its leftovers; another P-CSCF, or a UE on the same address, has
        // its own tag.
        assert_eq!(xfrm_tag(a), xfrm_tag(a));
        assert_ne!(xfrm_tag(a), xfrm_tag(b));
        assert_ne!(xfrm_tag(a), Tag::for_instance("ue", &[a]));
        assert_ne!(xfrm_tag(a), Tag::default());
        // Port 0 names no instance: every start gets its own tag.
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_ne!(xfrm_tag(any), xfrm_tag(any));
    }
}
