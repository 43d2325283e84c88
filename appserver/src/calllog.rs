//! The call log: one SQLite row per call (WAL, versioned schema like `hss::store`).
//!
//! Calls must never wait for the disk, so the pipeline hands complete rows to
//! [`CallLog::record`], which only puts them on a bounded channel; a writer thread commits
//! whatever has queued up in one transaction (one fsync for a burst of calls). A row is
//! written when the call is offered, again when it learns a name or is answered, and a last
//! time when it ends: every write is an upsert of the whole row keyed by
//! `(call_id, started)`, so the order of writes of different calls never matters and a
//! crash leaves the last state of each call. When the channel is full (the disk stalls)
//! rows are dropped and counted rather than slowing calls.
//!
//! Readers (REST, CLI) use their own connection; WAL lets them read while the writer writes.

use crate::event::{Outcome, Source};
use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `[calllog]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallLogConfig {
    /// The SQLite file, created and migrated on start (default `"calls.db"`, relative to
    /// the working directory, like the HSS's `hss.db`).
    pub path: PathBuf,
    /// Rows that may wait for the writer (default 4096: minutes of a busy lab's calls
    /// while the disk stalls; beyond it rows are dropped and counted, calls go on).
    pub queue: usize,
    /// Most rows committed in one transaction (default 256: one fsync per burst, short
    /// enough that readers never wait long for the write lock).
    pub batch: usize,
}

impl Default for CallLogConfig {
    fn default() -> Self {
        CallLogConfig {
            path: "calls.db".into(),
            queue: 4096,
            batch: 256,
        }
    }
}

/// The commented TOML snippet of `[calllog]`.
pub const EXAMPLE: &str = r#"[calllog]
# SQLite file of the call log (one row per call), created and migrated on start.
path = "calls.db"
# Rows waiting for the writer thread; when full, rows are dropped (and counted), never calls.
queue = 4096
# Most rows per commit.
batch = 256
"#;

/// Current schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Schema migrations: entry `i` upgrades from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v0 -> v1. Times are Unix milliseconds; outcome is NULL while the call is in progress.
    "CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        call_id TEXT NOT NULL,
        started INTEGER NOT NULL,
        caller_number TEXT,
        caller_name TEXT,
        name_source TEXT NOT NULL,
        anonymous INTEGER NOT NULL,
        callee TEXT NOT NULL,
        callee_number TEXT,
        source TEXT NOT NULL,
        outcome TEXT,
        answered_at INTEGER,
        ended_at INTEGER,
        talk_seconds INTEGER NOT NULL DEFAULT 0,
        block_rule TEXT,
        UNIQUE (call_id, started)
     );
     CREATE INDEX calls_by_started ON calls(started);
     CREATE INDEX calls_by_caller ON calls(caller_number, started);
     CREATE INDEX calls_by_outcome ON calls(outcome, started);",
];

/// Call log failures.
#[derive(Debug, thiserror::Error)]
pub enum CallLogError {
    /// SQLite said no.
    #[error("call log database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database was written by a newer appserver.
    #[error(
        "call log schema version {0} is newer than this appserver supports ({SCHEMA_VERSION})"
    )]
    TooNew(i64),
    /// The writer thread could not start.
    #[error("call log writer thread: {0}")]
    Thread(std::io::Error),
}

/// One call as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// Call-ID (or MGCP call key).
    pub call_id: String,
    /// Offered at, Unix milliseconds.
    pub started: i64,
    /// The caller's number (E.164 when placed); `None` when withheld or absent.
    pub caller_number: Option<String>,
    /// The name shown.
    pub caller_name: Option<String>,
    /// Where the name came from (`phonebook`, `reverse`, `display`, `anonymous`, `none`).
    pub name_source: String,
    /// The caller withheld the number.
    pub anonymous: bool,
    /// The called URI as the input gave it.
    pub callee: String,
    /// The callee's number when the URI holds one.
    pub callee_number: Option<String>,
    /// Where the call was seen (`isc`, `pcap`, `live`, `nfqueue`).
    pub source: String,
    /// How it ended (`answered`, `missed`, …); `None` while in progress.
    pub outcome: Option<String>,
    /// Answered at, Unix milliseconds.
    pub answered_at: Option<i64>,
    /// Ended at, Unix milliseconds.
    pub ended_at: Option<i64>,
    /// Seconds between answer and end.
    pub talk_seconds: i64,
    /// The blocklist entry that refused it.
    pub block_rule: Option<String>,
}

/// Unix milliseconds of a time (0 before 1970, which no capture has).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// The call log's spelling of a [`Source`]'s name, parsed back.
pub fn parse_source(s: &str) -> Option<Source> {
    [Source::Isc, Source::Pcap, Source::Live, Source::Nfqueue]
        .into_iter()
        .find(|x| x.as_str() == s)
}

/// [`Outcome::as_str`] parsed back.
pub fn parse_outcome(s: &str) -> Option<Outcome> {
    [
        Outcome::Answered,
        Outcome::Missed,
        Outcome::Blocked,
        Outcome::Cancelled,
        Outcome::AnsweredElsewhere,
    ]
    .into_iter()
    .find(|o| o.as_str() == s)
}

/// Which rows a query returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// At most this many (0 means 100).
    pub limit: usize,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// Only this caller number (normalised).
    pub caller: Option<String>,
    /// Only calls offered at or after this (Unix milliseconds).
    pub since: Option<i64>,
}

enum Msg {
    Row(Box<CallRecord>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// The call log: a queue to the writer thread and a reader connection.
pub struct CallLog {
    tx: SyncSender<Msg>,
    reader: Mutex<Connection>,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
    path: PathBuf,
}

impl std::fmt::Debug for CallLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLog").field("path", &self.path).finish()
    }
}

fn open(path: &Path) -> Result<Connection, CallLogError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // A lost last second of call history on a power cut is acceptable; an fsync per
    // commit on a Raspberry Pi's SD card is not.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), CallLogError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let v: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if v > SCHEMA_VERSION {
        return Err(CallLogError::TooNew(v));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(v.max(0) as usize) {
        tx.execute_batch(m)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

const UPSERT: &str = "INSERT INTO calls (call_id, started, caller_number, caller_name, name_source,
        anonymous, callee, callee_number, source, outcome, answered_at, ended_at, talk_seconds,
        block_rule)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
    ON CONFLICT (call_id, started) DO UPDATE SET caller_number = excluded.caller_number,
        caller_name = excluded.caller_name, name_source = excluded.name_source,
        anonymous = excluded.anonymous, callee = excluded.callee,
        callee_number = excluded.callee_number, source = excluded.source,
        outcome = excluded.outcome, answered_at = excluded.answered_at,
        ended_at = excluded.ended_at, talk_seconds = excluded.talk_seconds,
        block_rule = excluded.block_rule";

fn write_batch(conn: &mut Connection, rows: &[CallRecord]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut st = tx.prepare_cached(UPSERT)?;
        for r in rows {
            st.execute(params![
                r.call_id,
                r.started,
                r.caller_number,
                r.caller_name,
                r.name_source,
                r.anonymous,
                r.callee,
                r.callee_number,
                r.source,
                r.outcome,
                r.answered_at,
                r.ended_at,
                r.talk_seconds,
                r.block_rule,
            ])?;
        }
    }
    tx.commit()
}

fn writer(mut conn: Connection, rx: Receiver<Msg>, batch: usize, written: Arc<AtomicU64>) {
    let batch = batch.max(1);
    let mut rows = Vec::with_capacity(batch);
    let mut flushes = Vec::new();
    // Ends when every sender (the CallLog) is gone.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Row(r) => rows.push(*r),
                Msg::Flush(done) => flushes.push(done),
            }
            if rows.len() < batch {
                next = rx.try_recv().ok();
            }
        }
        if !rows.is_empty() {
            match write_batch(&mut conn, &rows) {
                Ok(()) => {
                    written.fetch_add(rows.len() as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, rows = rows.len(), "call log write failed"),
            }
            rows.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        call_id: r.get(0)?,
        started: r.get(1)?,
        caller_number: r.get(2)?,
        caller_name: r.get(3)?,
        name_source: r.get(4)?,
        anonymous: r.get(5)?,
        callee: r.get(6)?,
        callee_number: r.get(7)?,
        source: r.get(8)?,
        outcome: r.get(9)?,
        answered_at: r.get(10)?,
        ended_at: r.get(11)?,
        talk_seconds: r.get(12)?,
        block_rule: r.get(13)?,
    })
}

impl CallLog {
    /// Opens (creating and migrating) the log and starts its writer thread.
    pub fn open(cfg: &CallLogConfig) -> Result<CallLog, CallLogError> {
        let mut w = open(&cfg.path)?;
        migrate(&mut w)?;
        let reader = open(&cfg.path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue.max(1));
        let written = Arc::new(AtomicU64::new(0));
        let (batch, written2) = (cfg.batch, written.clone());
        std::thread::Builder::new()
            .name("calllog-writer".into())
            .spawn(move || writer(w, rx, batch, written2))
            .map_err(CallLogError::Thread)?;
        Ok(CallLog {
            tx,
            reader: Mutex::new(reader),
            dropped: AtomicU64::new(0),
            written,
            path: cfg.path.clone(),
        })
    }

    /// Queues a row (the whole current state of a call). Never blocks: a full queue drops
    /// the row and counts it.
    pub fn record(&self, r: CallRecord) {
        match self.tx.try_send(Msg::Row(Box::new(r))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // One line per power of two, not one per dropped row.
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "call log queue full, rows dropped");
                }
            }
        }
    }

    /// Waits until every row queued before this call is committed (tests, shutdown,
    /// and the CLI after an import). Bounded by `timeout`; false if it ran out.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }

    /// Rows dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Rows committed.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, CallLogError> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Rows matching `f`, newest first.
    pub fn query(&self, f: &Filter) -> Result<Vec<CallRecord>, CallLogError> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        query(&c, f)
    }

    /// One call's row, by Call-ID (the newest if the id was reused).
    pub fn get(&self, call_id: &str) -> Result<Option<CallRecord>, CallLogError> {
        let c = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(c.query_row(
            &format!(
                "SELECT {COLUMNS} FROM calls WHERE call_id = ?1 ORDER BY started DESC LIMIT 1"
            ),
            [call_id],
            row,
        )
        .optional()?)
    }
}

const COLUMNS: &str = "call_id, started, caller_number, caller_name, name_source, anonymous,
    callee, callee_number, source, outcome, answered_at, ended_at, talk_seconds, block_rule";

/// Reads rows from a connection (the CLI opens the file read-only without a writer).
pub fn query(c: &Connection, f: &Filter) -> Result<Vec<CallRecord>, CallLogError> {
    let limit = if f.limit == 0 {
        100
    } else {
        f.limit.min(100_000)
    } as i64;
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM calls
         WHERE (?1 IS NULL OR outcome = ?1) AND (?2 IS NULL OR caller_number = ?2)
           AND (?3 IS NULL OR started >= ?3)
         ORDER BY started DESC, id DESC LIMIT ?4"
    ))?;
    let rows = st.query_map(
        params![f.outcome.map(Outcome::as_str), f.caller, f.since, limit],
        row,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Opens an existing log for reading only (the CLI, while the server may be writing).
pub fn open_read_only(path: &Path) -> Result<Connection, CallLogError> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(Duration::from_secs(5))?;
    let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if v > SCHEMA_VERSION {
        return Err(CallLogError::TooNew(v));
    }
    Ok(c)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh database path under the temp directory.
    pub(crate) fn temp_db(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("calllog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("calls.db")
    }

    fn rec(call_id: &str, started: i64, caller: &str, outcome: Option<Outcome>) -> CallRecord {
        CallRecord {
            call_id: call_id.into(),
            started,
            caller_number: Some(caller.into()),
            caller_name: None,
            name_source: "none".into(),
            anonymous: false,
            callee: "sip:+49302@ims".into(),
            callee_number: Some("+49302".into()),
            source: "isc".into(),
            outcome: outcome.map(|o| o.as_str().into()),
            answered_at: None,
            ended_at: None,
            talk_seconds: 0,
            block_rule: None,
        }
    }

    #[test]
    fn rows_upsert_by_call_and_queries_filter() {
        let cfg = CallLogConfig {
            path: temp_db("q"),
            ..Default::default()
        };
        let log = CallLog::open(&cfg).unwrap();
        assert_eq!(log.schema_version().unwrap(), SCHEMA_VERSION);
        log.record(rec("a", 1000, "+491", None));
        log.record(rec("b", 2000, "+492", Some(Outcome::Missed)));
        log.record(rec("c", 3000, "+491", Some(Outcome::Blocked)));
        let mut a = rec("a", 1000, "+491", Some(Outcome::Answered));
        a.caller_name = Some("Alice".into());
        a.talk_seconds = 42;
        log.record(a.clone());
        assert!(log.flush(Duration::from_secs(5)));
        assert_eq!(log.written(), 4);

        let all = log.query(&Filter::default()).unwrap();
        assert_eq!(
            all.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        assert_eq!(all[2], a);
        let f = |f: Filter| -> Vec<String> {
            log.query(&f)
                .unwrap()
                .into_iter()
                .map(|r| r.call_id)
                .collect()
        };
        assert_eq!(
            f(Filter {
                limit: 1,
                ..Default::default()
            }),
            ["c"]
        );
        assert_eq!(
            f(Filter {
                outcome: Some(Outcome::Missed),
                ..Default::default()
            }),
            ["b"]
        );
        assert_eq!(
            f(Filter {
                caller: Some("+491".into()),
                ..Default::default()
            }),
            ["c", "a"]
        );
        assert_eq!(
            f(Filter {
                since: Some(2000),
                ..Default::default()
            }),
            ["c", "b"]
        );
        assert_eq!(log.get("a").unwrap(), Some(a));
        assert_eq!(log.get("zz").unwrap(), None);
        drop(log);

        // Reopening keeps the rows and does not migrate again; a reader sees them.
        let log = CallLog::open(&cfg).unwrap();
        assert_eq!(log.query(&Filter::default()).unwrap().len(), 3);
        let ro = open_read_only(&cfg.path).unwrap();
        assert_eq!(query(&ro, &Filter::default()).unwrap().len(), 3);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let path = temp_db("new");
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = CallLog::open(&CallLogConfig {
            path: path.clone(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, CallLogError::TooNew(99)), "{e}");
        assert!(matches!(
            open_read_only(&path),
            Err(CallLogError::TooNew(99))
        ));
    }

    #[test]
    fn a_full_queue_drops_rows_instead_of_blocking() {
        let cfg = CallLogConfig {
            path: temp_db("full"),
            queue: 1,
            batch: 1,
        };
        let log = CallLog::open(&cfg).unwrap();
        let t = std::time::Instant::now();
        for i in 0..2000 {
            log.record(rec(&format!("x{i}"), i, "+491", None));
        }
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(log.written() + log.dropped(), 2000);
        assert!(log.dropped() > 0);
    }

    #[test]
    fn outcome_and_source_names_round_trip() {
        for o in [
            "answered",
            "missed",
            "blocked",
            "cancelled",
            "answered_elsewhere",
        ] {
            assert_eq!(parse_outcome(o).map(Outcome::as_str), Some(o));
        }
        assert_eq!(parse_outcome("ringing"), None);
        assert_eq!(parse_source("nfqueue"), Some(Source::Nfqueue));
        assert_eq!(parse_source("x"), None);
    }
}
