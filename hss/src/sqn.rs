//! Group commit of SQN reservations.
//!
//! A single writer thread owns a store connection. Requests queue on a channel; the thread
//! takes everything queued (up to [`MAX_BATCH`]), reserves all of it in one immediate
//! transaction, commits (one fsync), and only then answers every waiter. While a commit is in
//! flight, new requests queue up and form the next batch, so throughput grows with load while
//! every single answer still waits for its own SQN to be on disk.

use crate::store::{IssueError, Issued, SqnRequest, Store};
use akav1::SqnPolicy;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// Most requests committed in one transaction.
pub const MAX_BATCH: usize = 4096;

type Job = (SqnRequest, oneshot::Sender<Result<Issued, IssueError>>);

/// Handle to the SQN writer thread; cheap to clone.
#[derive(Clone)]
pub struct SqnService {
    tx: mpsc::Sender<Job>,
    stats: Arc<Stats>,
}

/// Group-commit counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Transactions committed (or attempted).
    pub batches: AtomicU64,
    /// Requests served in them.
    pub requests: AtomicU64,
}

impl SqnService {
    /// Starts the writer thread on its own connection `store`.
    pub fn start(mut store: Store, policy: SqnPolicy, ind: u32) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        std::thread::Builder::new()
            .name("hss-sqn".into())
            .spawn(move || {
                let mut batch: Vec<Job> = Vec::with_capacity(256);
                while let Ok(first) = rx.recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    let reqs: Vec<SqnRequest> = batch.iter().map(|(r, _)| r.clone()).collect();
                    let results = store.issue_sqns(&reqs, &policy, ind);
                    st.batches.fetch_add(1, Ordering::Relaxed);
                    st.requests.fetch_add(reqs.len() as u64, Ordering::Relaxed);
                    for ((_, reply), res) in batch.drain(..).zip(results) {
                        let _ = reply.send(res);
                    }
                }
            })?;
        Ok(SqnService { tx, stats })
    }

    /// Counters of the writer thread.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Reserves SQNs; resolves only after they are committed.
    pub async fn issue(&self, req: SqnRequest) -> Result<Issued, IssueError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((req, reply))
            .map_err(|_| IssueError::Store("SQN writer stopped".into()))?;
        rx.await
            .map_err(|_| IssueError::Store("SQN writer stopped".into()))?
    }
}
