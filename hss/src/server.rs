//! The running HSS: Diameter server, SQN writer, REST API, wired from a [`Config`].

use crate::config::Config;
use crate::cx::{CxHandler, DeregReason, Outcome};
use crate::metrics::{Gauges, Metrics};
use crate::sqn::SqnService;
use crate::store::Store;
use diameter::transport::{Handler, Server, ServerHandle};
use diameter::{Message, PeerConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared state of a running HSS.
pub struct Hss {
    /// Cx handlers.
    pub cx: Arc<CxHandler>,
    /// Group-commit SQN writer.
    pub sqn: SqnService,
    /// Store connection for everything except SQN issue.
    pub store: Arc<Mutex<Store>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The Diameter server (to send RTR/PPR).
    pub diameter: ServerHandle,
    /// Provisioning defaults.
    pub defaults: crate::provision::Defaults,
}

/// Runs one Cx request to its answer: MAR and SAR only parse here and then go through the
/// group-commit writer; UAR and LIR read the store on the blocking pool.
pub async fn dispatch(cx: &Arc<CxHandler>, sqn: &SqnService, req: Message) -> Message {
    let outcome = if req.code == diameter::cmd::MULTIMEDIA_AUTH
        || req.code == diameter::cmd::SERVER_ASSIGNMENT
    {
        cx.handle(&req)
    } else {
        let cx2 = cx.clone();
        let req2 = req.clone();
        match tokio::task::spawn_blocking(move || cx2.handle(&req2)).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "Cx handler panicked");
                return Message::error_answer(
                    &req,
                    diameter::result::UNABLE_TO_COMPLY,
                    Some("internal error"),
                );
            }
        }
    };
    match outcome {
        Outcome::Answer(a) => a,
        Outcome::NeedSqn(r, pending) => {
            let issued = sqn.issue(r).await;
            cx.finish_mar(pending, issued)
        }
        Outcome::NeedSar(r, pending) => {
            let done = sqn.sar(r).await;
            cx.finish_sar(pending, done)
        }
    }
}

#[derive(Clone)]
struct CxService {
    cx: Arc<CxHandler>,
    sqn: SqnService,
}

impl Handler for CxService {
    async fn handle(&self, req: Message) -> Message {
        use tracing::Instrument;
        let span = tracing::debug_span!("cx", cmd = %req.name(), hbh = req.hop_by_hop, session = ?req.session_id());
        dispatch(&self.cx, &self.sqn, req).instrument(span).await
    }
}

/// Addresses a started HSS listens on.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    /// Diameter TCP.
    pub diameter: SocketAddr,
    /// REST, if enabled.
    pub rest: Option<SocketAddr>,
}

/// Opens the store, starts the SQN writer, the Diameter server and the REST API.
pub async fn start(cfg: &Config) -> anyhow::Result<(Arc<Hss>, Listening)> {
    let policy = cfg.sqn_policy()?;
    let main_store = Store::open(&cfg.store.path, cfg.store.durability)?;
    let sqn_store = Store::open(&cfg.store.path, cfg.store.durability)?;
    let sqn = SqnService::start_with_delay(
        sqn_store,
        policy,
        cfg.aka.ind,
        Duration::from_micros(cfg.store.commit_delay_us),
    )?;
    let store = Arc::new(Mutex::new(main_store));
    let metrics = Arc::new(Metrics::default());
    let cx = Arc::new(CxHandler::new(
        cfg.cx_config(),
        store.clone(),
        metrics.clone(),
    ));

    let mut pc = PeerConfig::cx(cfg.origin_host.clone(), cfg.realm.clone());
    pc.product_name = "imslab-hss".into();
    pc.vendor_id = diameter::VENDOR_3GPP;
    pc.watchdog_interval = Duration::from_secs(cfg.diameter.watchdog_secs);
    pc.origin_state_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as u32);
    if !cfg.diameter.allowed_peers.is_empty() {
        pc = pc.allow_peers(cfg.diameter_peers());
    } else {
        tracing::warn!("diameter.allowed_peers is empty: any Diameter peer may connect");
    }
    let server = Server::bind(
        cfg.diameter.listen,
        pc,
        CxService {
            cx: cx.clone(),
            sqn: sqn.clone(),
        },
    )
    .await?;
    let diameter_addr = server.local_addr()?;
    let (handle, _task) = server.spawn();

    let hss = Arc::new(Hss {
        cx,
        sqn,
        store,
        metrics,
        diameter: handle,
        defaults: crate::provision::Defaults {
            domain: cfg.ims.domain.clone(),
            mnc_digits: cfg.ims.mnc_digits,
            amf: cfg.default_amf()?,
        },
    });
    let rest = match (cfg.rest.listen, &cfg.rest.token) {
        (Some(addr), Some(token)) => {
            let calls = match (&cfg.rest.calls_url, &cfg.rest.calls_token) {
                (Some(url), token) => Some(crate::rest::CallLogSource {
                    url: url.clone(),
                    token: token.clone().unwrap_or_default(),
                }),
                (None, _) => None,
            };
            Some(crate::rest::serve(hss.clone(), addr, token.clone(), calls).await?)
        }
        _ => None,
    };
    Ok((
        hss,
        Listening {
            diameter: diameter_addr,
            rest,
        },
    ))
}

/// Result of an HSS-initiated request.
#[derive(Debug, serde::Serialize)]
pub struct PushResult {
    /// The S-CSCF's Origin-Host.
    pub peer: String,
    /// Result-Code or Experimental-Result-Code of the answer.
    pub result: u32,
}

impl Hss {
    /// Current gauges.
    pub fn gauges(&self) -> Gauges {
        let st = self.store.lock().unwrap_or_else(|p| p.into_inner());
        Gauges {
            subscribers: st.count().unwrap_or(0),
            registered: st.count_registered().unwrap_or(0),
            peers: self.diameter.peers().len() as u64,
            cer_refused: self.diameter.refusals(),
            sqn_commits: self
                .sqn
                .stats()
                .batches
                .load(std::sync::atomic::Ordering::Relaxed),
            sqn_commit_requests: self
                .sqn
                .stats()
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Administrative deregistration: RTR to the S-CSCF, then clears the registration on
    /// success (TS 29.228 §6.2.1).
    pub async fn rtr(
        &self,
        impi: &str,
        reason: DeregReason,
        info: Option<&str>,
    ) -> anyhow::Result<PushResult> {
        let (m, host) = self.cx.build_rtr(impi, reason, info)?;
        let ans = self.diameter.request(&host, m).await?;
        let code = ans.result().map(|r| r.code()).unwrap_or(0);
        if code == diameter::result::SUCCESS {
            self.cx.rtr_done(impi)?;
        }
        Ok(PushResult {
            peer: host,
            result: code,
        })
    }

    /// Pushes the current profile to the S-CSCF (PPR, TS 29.228 §6.2.2).
    pub async fn ppr(&self, impi: &str) -> anyhow::Result<PushResult> {
        let (m, host) = self.cx.build_ppr(impi)?;
        let ans = self.diameter.request(&host, m).await?;
        Ok(PushResult {
            peer: host,
            result: ans.result().map(|r| r.code()).unwrap_or(0),
        })
    }
}
