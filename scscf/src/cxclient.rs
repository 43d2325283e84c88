//! The Cx client of an S-CSCF shell (TS 29.229 over the `diameter` client): one Diameter
//! connection to the HSS, each Cx request of the core run as its own task so a slow HSS
//! never stalls SIP, its answer handed back through a channel with the core's token, and
//! its latency or failure counted for `/metrics`.
//!
//! Shared by the `scscf` binary and the `pcscf` binary in collapsed mode, so both talk to
//! the HSS, and report it, the same way.

use diameter::{PeerConfig, PeerHandle, RequestError};
use opskit::metrics::{CounterFamily, Exposition, HistogramFamily, LATENCY_BUCKETS};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A Cx answer, or why there is none: what [`crate::Scscf::handle_cx_answer`] takes.
pub type CxResult = Result<diameter::Message, RequestError>;

/// Where the HSS is and who we are toward it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HssPeer {
    /// The HSS's Diameter address (TCP).
    pub address: SocketAddr,
    /// Our Origin-Host.
    pub origin_host: String,
    /// Our Origin-Realm (also the Destination-Realm).
    pub realm: String,
    /// How long a Cx request may wait for its answer.
    pub timeout: Duration,
}

/// A request the HSS sent us (RTR, PPR), and where its answer goes: the shell hands it
/// to the core ([`crate::Scscf::handle_cx_request`]) and sends the answer back.
#[derive(Debug)]
pub struct HssRequest {
    /// The request.
    pub request: diameter::Message,
    /// Its answer's way back to the connection.
    pub reply: oneshot::Sender<diameter::Message>,
}

/// Connects to the HSS and completes the capabilities exchange, advertising Cx
/// (RFC 6733 §5.3, TS 29.229 §6.1: Vendor-Specific-Application-Id 3GPP/Cx). The HSS's
/// own requests (RTR, PPR) come out of the receiver; while nobody takes them (the loop
/// has stopped) they are answered 5012 DIAMETER_UNABLE_TO_COMPLY.
pub async fn connect(
    peer: &HssPeer,
) -> Result<(PeerHandle, mpsc::UnboundedReceiver<HssRequest>), diameter::TransportError> {
    let cfg = PeerConfig {
        request_timeout: peer.timeout,
        ..PeerConfig::cx(peer.origin_host.clone(), peer.realm.clone())
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |request: diameter::Message| {
        let tx = tx.clone();
        async move {
            let refused = diameter::Message::error_answer(
                &request,
                diameter::result::UNABLE_TO_COMPLY,
                Some("S-CSCF not running"),
            );
            let (reply, answer) = oneshot::channel();
            if tx.send(HssRequest { request, reply }).is_err() {
                return refused;
            }
            answer.await.unwrap_or(refused)
        }
    };
    let h = PeerHandle::connect_with_handler(peer.address, cfg, handler).await?;
    Ok((h, rx))
}

/// The next request of the HSS, or never when there is no HSS connection: for a shell's
/// `select!`.
pub async fn next_request(rx: &mut Option<mpsc::UnboundedReceiver<HssRequest>>) -> HssRequest {
    match rx {
        Some(r) => match r.recv().await {
            Some(q) => q,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Runs the core's Cx requests against the HSS; answers come out of the receiver
/// [`CxClient::new`] returns, as `(token, answer)`.
#[derive(Debug, Clone)]
pub struct CxClient {
    hss: Option<PeerHandle>,
    answers: mpsc::UnboundedSender<(u64, CxResult)>,
}

impl CxClient {
    /// A client over `hss`; `None` (no HSS configured) answers every request with
    /// [`RequestError::Closed`] so the core still ends its transaction.
    pub fn new(hss: Option<PeerHandle>) -> (CxClient, mpsc::UnboundedReceiver<(u64, CxResult)>) {
        let (answers, rx) = mpsc::unbounded_channel();
        (CxClient { hss, answers }, rx)
    }

    /// Sends `request` in its own task and times it into `metrics`. Must be called inside
    /// a tokio runtime.
    pub fn request<M>(&self, token: u64, request: diameter::Message, metrics: Arc<M>)
    where
        M: AsRef<CxMetrics> + Send + Sync + 'static,
    {
        let Some(hss) = self.hss.clone() else {
            let _ = self.answers.send((token, Err(RequestError::Closed)));
            return;
        };
        let tx = self.answers.clone();
        let command = command(request.code);
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = hss.request(request).await;
            let m: &CxMetrics = (*metrics).as_ref();
            match &r {
                Ok(_) => m.answer(command, t0.elapsed()),
                Err(e) => m.failure(command, failure_reason(e)),
            }
            // The loop may have stopped meanwhile; the answer then has nobody to go to.
            let _ = tx.send((token, r));
        });
    }
}

/// The Cx series of `/metrics`: request latency by command, failures by command and
/// reason. Labels are fixed categories, never message content.
#[derive(Debug)]
pub struct CxMetrics {
    latency: HistogramFamily<1>,
    failures: CounterFamily<2>,
}

impl Default for CxMetrics {
    fn default() -> Self {
        CxMetrics {
            latency: HistogramFamily::new(["command"], LATENCY_BUCKETS),
            failures: CounterFamily::new(["command", "reason"]),
        }
    }
}

impl AsRef<CxMetrics> for CxMetrics {
    fn as_ref(&self) -> &CxMetrics {
        self
    }
}

impl CxMetrics {
    /// A Cx answer to `command` (`"MAR"`, `"SAR"`, …) arrived `elapsed` after the request.
    pub fn answer(&self, command: &'static str, elapsed: Duration) {
        self.latency.observe_duration([command], elapsed);
    }

    /// A Cx request got no usable answer; `reason` e.g. `"timeout"`, `"closed"`.
    pub fn failure(&self, command: &'static str, reason: &'static str) {
        self.failures.inc([command, reason]);
    }

    /// Failures so far for `command` and `reason`.
    pub fn failures(&self, command: &'static str, reason: &'static str) -> u64 {
        self.failures.get([command, reason])
    }

    /// Appends `<prefix>_cx_request_duration_seconds` and `<prefix>_cx_failures_total`.
    pub fn render_into(&self, prefix: &str, e: &mut Exposition) {
        e.histograms(
            &format!("{prefix}_cx_request_duration_seconds"),
            "Time from a Cx request to its answer, by command.",
            &self.latency,
        );
        e.counters(
            &format!("{prefix}_cx_failures_total"),
            "Cx requests without a usable answer, by command and reason.",
            &self.failures,
        );
    }
}

/// The metrics label of a Cx command code.
pub fn command(code: u32) -> &'static str {
    match code {
        diameter::cmd::MULTIMEDIA_AUTH => "MAR",
        diameter::cmd::SERVER_ASSIGNMENT => "SAR",
        _ => "other",
    }
}

/// The metrics label of why a Cx request got no answer.
pub fn failure_reason(e: &RequestError) -> &'static str {
    match e {
        RequestError::TimedOut => "timeout",
        RequestError::Closed => "closed",
        RequestError::MalformedAnswer(_) => "malformed",
        RequestError::NotSent(_) => "not-sent",
        RequestError::UnknownPeer(_) => "unknown-peer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_fixed_categories() {
        assert_eq!(command(diameter::cmd::MULTIMEDIA_AUTH), "MAR");
        assert_eq!(command(diameter::cmd::SERVER_ASSIGNMENT), "SAR");
        assert_eq!(command(diameter::cmd::USER_AUTHORIZATION), "other");
        assert_eq!(failure_reason(&RequestError::TimedOut), "timeout");
        assert_eq!(failure_reason(&RequestError::Closed), "closed");
    }

    #[tokio::test]
    async fn without_an_hss_every_request_is_answered_closed_and_counted_nowhere() {
        let (c, mut rx) = CxClient::new(None);
        let m = Arc::new(CxMetrics::default());
        let req = diameter::Message::request(diameter::app::CX, diameter::cmd::MULTIMEDIA_AUTH);
        c.request(7, req, m.clone());
        let (token, r) = rx.recv().await.unwrap();
        assert_eq!(token, 7);
        assert!(matches!(r, Err(RequestError::Closed)), "{r:?}");
        let mut e = Exposition::new();
        m.render_into("t", &mut e);
        let text = e.finish();
        assert!(
            text.contains("# TYPE t_cx_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE t_cx_failures_total counter"),
            "{text}"
        );
    }
}
