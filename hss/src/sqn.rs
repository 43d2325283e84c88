//! Group commit of the Cx writes: MAR SQN reservations and SAR assignments.
//!
//! A single writer thread owns a store connection. Requests queue on a channel; the thread
//! takes everything queued (up to [`MAX_BATCH`]), applies all of it in one immediate
//! transaction ([`Store::commit_batch`]), commits (one fsync), and only then answers every
//! waiter. While a commit is in flight, new requests queue up and form the next batch, so
//! throughput grows with load while every single answer still waits for its own SQN or
//! S-CSCF assignment to be on disk. One writer for both kinds means one fsync per batch
//! of a registration load (MAR + SAR) and no second connection contending for SQLite's
//! write lock.

use crate::store::{
    IssueError, Issued, SarDone, SarError, SarRequest, SqnRequest, Store, WriteJob, WriteResult,
};
use akav1::SqnPolicy;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::oneshot;

/// Most requests committed in one transaction.
pub const MAX_BATCH: usize = 4096;

enum Reply {
    Sqn(oneshot::Sender<Result<Issued, IssueError>>),
    Sar(oneshot::Sender<Result<SarDone, SarError>>),
}

type Job = (WriteJob, Reply);

/// Handle to the writer thread (SQNs and SARs); cheap to clone.
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
    /// Starts the writer thread on its own connection `store`, committing whatever is queued
    /// as soon as the previous commit is done.
    pub fn start(store: Store, policy: SqnPolicy, ind: u32) -> std::io::Result<Self> {
        Self::start_with_delay(store, policy, ind, Duration::ZERO)
    }

    /// Like [`SqnService::start`], but after the first write of a batch the thread sleeps
    /// `delay` before taking what else is queued (PostgreSQL's `commit_delay` idea): under
    /// load the batch grows and the per-commit cost (fsync, WAL locks, a wake-up) is shared by
    /// more requests. It sleeps rather than waiting on the channel, so the requests arriving
    /// meanwhile do not each wake it.
    pub fn start_with_delay(
        mut store: Store,
        policy: SqnPolicy,
        ind: u32,
        delay: Duration,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        std::thread::Builder::new()
            .name("hss-sqn".into())
            .spawn(move || {
                let mut jobs: Vec<WriteJob> = Vec::with_capacity(256);
                let mut replies: Vec<Reply> = Vec::with_capacity(256);
                while let Ok((job, reply)) = rx.recv() {
                    jobs.push(job);
                    replies.push(reply);
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok((j, r)) => {
                                jobs.push(j);
                                replies.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                    let results = store.commit_batch(&jobs, &policy, ind);
                    st.batches.fetch_add(1, Ordering::Relaxed);
                    st.requests.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    jobs.clear();
                    for (reply, res) in replies.drain(..).zip(results) {
                        // A waiter that went away (connection closed) needs no answer.
                        match (reply, res) {
                            (Reply::Sqn(tx), WriteResult::Sqn(r)) => {
                                let _ = tx.send(r);
                            }
                            (Reply::Sar(tx), WriteResult::Sar(r)) => {
                                let _ = tx.send(*r);
                            }
                            // commit_batch answers in job order with the job's kind; a
                            // mismatch would be a bug, and dropping the sender reports it
                            // to the waiter as a stopped writer rather than a wrong answer.
                            _ => tracing::error!("write result of the wrong kind"),
                        }
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
            .send((WriteJob::Sqn(req), Reply::Sqn(reply)))
            .map_err(|_| IssueError::Store("SQN writer stopped".into()))?;
        rx.await
            .map_err(|_| IssueError::Store("SQN writer stopped".into()))?
    }

    /// Applies a SAR; resolves only after it is committed.
    pub async fn sar(&self, req: SarRequest) -> Result<SarDone, SarError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((WriteJob::Sar(req), Reply::Sar(reply)))
            .map_err(|_| SarError::Store("writer stopped".into()))?;
        rx.await
            .map_err(|_| SarError::Store("writer stopped".into()))?
    }
}
