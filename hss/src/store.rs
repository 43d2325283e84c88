//! The subscriber store: SQLite (WAL) with versioned schema migrations.
//!
//! Everything the HSS must not forget lives here: subscribers (IMPI, K, OPc, AMF, the last
//! issued SQN, IMSI/ICCID/MSISDN), their IMPUs with implicit registration sets and barring,
//! their iFCs (own or from a shared profile), and the registration state (assigned S-CSCF).
//!
//! SQNs are handed out by [`Store::issue_sqns`]: one `BEGIN IMMEDIATE` transaction for a whole
//! batch of requests, committed before the caller may compute and send any vector (TS 33.102
//! Annex C: an SQN must never be reused). [`crate::sqn::SqnService`] turns that into group
//! commit for the Diameter server.

use akav1::{Milenage, Sqn, SqnPolicy};
use ifc::InitialFilterCriteria;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

pub use crate::registration::IrsRegistration;

/// Current schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// Schema migrations: entry `i` upgrades from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v0 -> v1
    "CREATE TABLE profiles (
        name TEXT PRIMARY KEY,
        ifcs TEXT NOT NULL DEFAULT '[]'
     );
     CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY,
        impi TEXT NOT NULL UNIQUE,
        imsi TEXT UNIQUE,
        iccid TEXT,
        msisdn TEXT,
        k BLOB NOT NULL CHECK (length(k) = 16),
        opc BLOB NOT NULL CHECK (length(opc) = 16),
        amf BLOB NOT NULL CHECK (length(amf) = 2),
        sqn INTEGER NOT NULL DEFAULT 0 CHECK (sqn >= 0 AND sqn < 281474976710656),
        ifcs TEXT NOT NULL DEFAULT '[]',
        profile TEXT REFERENCES profiles(name) ON UPDATE CASCADE ON DELETE SET NULL,
        shared_ifc_set_ids TEXT NOT NULL DEFAULT '[]',
        reg_state INTEGER NOT NULL DEFAULT 0,
        scscf_name TEXT,
        scscf_host TEXT,
        scscf_realm TEXT,
        updated_at INTEGER NOT NULL DEFAULT (unixepoch())
     );
     CREATE TABLE impus (
        uri TEXT PRIMARY KEY,
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        irs INTEGER NOT NULL DEFAULT 0,
        barred INTEGER NOT NULL DEFAULT 0,
        display_name TEXT
     );
     CREATE INDEX impus_by_subscriber ON impus(subscriber_id, position);",
    // v1 -> v2: registration state per implicit registration set (TS 29.228 §6.1.2). The
    // subscriber-level columns stay as a summary; a v1 registration applied to every set of
    // the subscriber, so each set starts with it.
    "CREATE TABLE irs_registrations (
        subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        irs INTEGER NOT NULL,
        reg_state INTEGER NOT NULL,
        scscf_name TEXT,
        scscf_host TEXT,
        scscf_realm TEXT,
        PRIMARY KEY (subscriber_id, irs)
     ) WITHOUT ROWID;
     INSERT INTO irs_registrations(subscriber_id, irs, reg_state, scscf_name, scscf_host,
                                   scscf_realm)
        SELECT DISTINCT s.id, i.irs, s.reg_state, s.scscf_name, s.scscf_host, s.scscf_realm
        FROM subscribers s JOIN impus i ON i.subscriber_id = s.id
        WHERE s.reg_state != 0 OR s.scscf_name IS NOT NULL;",
];

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database was written by a newer HSS.
    #[error("database schema version {0} is newer than this hss supports ({SCHEMA_VERSION})")]
    TooNew(i64),
    /// No such subscriber.
    #[error("no subscriber {0}")]
    NotFound(String),
    /// A unique key (IMPI, IMSI, IMPU) is already taken.
    #[error("already exists: {0}")]
    Conflict(String),
    /// Input that cannot be stored.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A stored JSON column does not decode.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Registration state of a subscriber as seen by the HSS (TS 29.228 §6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RegState {
    /// No S-CSCF assigned.
    #[default]
    NotRegistered,
    /// Registered at `scscf_name`.
    Registered,
    /// An S-CSCF serves the user for unregistered services (terminating while unregistered).
    Unregistered,
}

impl RegState {
    pub(crate) fn code(self) -> i64 {
        match self {
            Self::NotRegistered => 0,
            Self::Registered => 1,
            Self::Unregistered => 2,
        }
    }
    pub(crate) fn from_code(c: i64) -> Self {
        match c {
            1 => Self::Registered,
            2 => Self::Unregistered,
            _ => Self::NotRegistered,
        }
    }
}

/// A public user identity (IMPU) of a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impu {
    /// `sip:` or `tel:` URI.
    pub uri: String,
    /// Implicit registration set number: IMPUs with the same number register together
    /// (TS 23.228 §5.2.1a) and share one ServiceProfile in the User-Data.
    #[serde(default)]
    pub irs: u32,
    /// Barred (TS 29.228 §6.1.2): may be registered, not used for sessions.
    #[serde(default)]
    pub barred: bool,
    /// Display name (User-Data `DisplayName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl Impu {
    /// An unbarred IMPU in implicit registration set 0, without a display name.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            irs: 0,
            barred: false,
            display_name: None,
        }
    }
}

/// A subscriber as stored.
///
/// `reg_state` and `scscf_*` summarise the per-set registrations
/// ([`Store::irs_registrations`], [`crate::registration::summary`]): registered when any
/// implicit registration set is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Private identity (Cx `User-Name`).
    pub impi: String,
    /// IMSI.
    pub imsi: Option<String>,
    /// ICCID of the card.
    pub iccid: Option<String>,
    /// MSISDN (digits, no `+`).
    pub msisdn: Option<String>,
    /// Subscriber key K.
    #[serde(with = "hex16")]
    pub k: [u8; 16],
    /// OPc.
    #[serde(with = "hex16")]
    pub opc: [u8; 16],
    /// AMF used in new vectors.
    #[serde(with = "hex2")]
    pub amf: [u8; 2],
    /// The last SQN issued (SEQ ‖ IND).
    pub sqn: u64,
    /// IMPUs, the first being the default one.
    pub impus: Vec<Impu>,
    /// The subscriber's own iFCs.
    #[serde(default)]
    pub ifcs: Vec<InitialFilterCriteria>,
    /// A shared profile whose iFCs are added to the own ones.
    #[serde(default)]
    pub profile: Option<String>,
    /// Shared iFC set ids sent in the User-Data (for S-CSCFs that know them).
    #[serde(default)]
    pub shared_ifc_set_ids: Vec<u32>,
    /// Registration state.
    #[serde(default)]
    pub reg_state: RegState,
    /// The assigned S-CSCF's SIP URI (Server-Name).
    #[serde(default)]
    pub scscf_name: Option<String>,
    /// Diameter Origin-Host of the S-CSCF that made the assignment (target for RTR/PPR).
    #[serde(default)]
    pub scscf_host: Option<String>,
    /// Diameter Origin-Realm of that S-CSCF.
    #[serde(default)]
    pub scscf_realm: Option<String>,
}

impl std::fmt::Debug for Subscriber {
    // K and OPc never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("impi", &self.impi)
            .field("imsi", &self.imsi)
            .field("impus", &self.impus)
            .field("sqn", &self.sqn)
            .field("reg_state", &self.reg_state)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// A subscriber with only its IMPI and keys: AMF 8000, SQN 0, no IMPUs, no iFCs, not
    /// registered. Fill in the rest with struct update syntax
    /// (`Subscriber { impus, ..Subscriber::new(impi, k, opc) }`).
    pub fn new(impi: impl Into<String>, k: [u8; 16], opc: [u8; 16]) -> Self {
        Self {
            impi: impi.into(),
            imsi: None,
            iccid: None,
            msisdn: None,
            k,
            opc,
            amf: [0x80, 0x00],
            sqn: 0,
            impus: Vec::new(),
            ifcs: Vec::new(),
            profile: None,
            shared_ifc_set_ids: Vec::new(),
            reg_state: RegState::NotRegistered,
            scscf_name: None,
            scscf_host: None,
            scscf_realm: None,
        }
    }

    /// A copy with K and OPc replaced by a mask, for display.
    pub fn masked(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("k".into(), "********************************".into());
            o.insert("opc".into(), "********************************".into());
        }
        v
    }
}

/// Hex (de)serialization of fixed-size keys.
pub(crate) mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hex::<16>(&s).map_err(serde::de::Error::custom)
    }
}
pub(crate) mod hex2 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 2], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 2], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hex::<2>(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses `N` bytes of hex, tolerating spaces, colons and a `0x` prefix.
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let t: String = s
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !matches!(c, ' ' | ':' | '-'))
        .collect();
    let v = hex::decode(&t).map_err(|e| format!("{s:?} is not hex: {e}"))?;
    v.try_into()
        .map_err(|v: Vec<u8>| format!("expected {N} bytes of hex, got {}", v.len()))
}

/// The home domain for an IMSI (TS 23.003 §13.2): `ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org`,
/// 2-digit MNCs padded to 3 digits.
pub fn home_domain_from_imsi(imsi: &str, mnc_digits: usize) -> Option<String> {
    if imsi.len() < 3 + mnc_digits || !imsi.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if mnc_digits != 2 && mnc_digits != 3 {
        return None;
    }
    let mcc = &imsi[..3];
    let mnc = &imsi[3..3 + mnc_digits];
    Some(format!("ims.mnc{mnc:0>3}.mcc{mcc}.3gppnetwork.org"))
}

/// What to issue for one MAR: `count` SQNs for `impi` (optionally checking that `impu`
/// belongs to it), after an optional resynchronisation from RAND ‖ AUTS.
#[derive(Debug, Clone)]
pub struct SqnRequest {
    /// Private identity.
    pub impi: String,
    /// Public identity from the MAR, checked against the subscriber's IMPUs.
    pub impu: Option<String>,
    /// Number of vectors.
    pub count: u32,
    /// RAND ‖ AUTS from SIP-Authorization.
    pub resync: Option<([u8; 16], [u8; 14])>,
}

/// SQNs reserved and committed for one [`SqnRequest`], with the keys to build vectors.
#[derive(Clone)]
pub struct Issued {
    /// K.
    pub k: [u8; 16],
    /// OPc.
    pub opc: [u8; 16],
    /// AMF.
    pub amf: [u8; 2],
    /// The SQNs, ascending, each committed as "last issued" before this value exists.
    pub sqns: Vec<Sqn>,
    /// SQN_MS recovered from a verified AUTS.
    pub resynced_from: Option<Sqn>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("sqns", &self.sqns)
            .field("resynced_from", &self.resynced_from)
            .finish_non_exhaustive()
    }
}

/// Why one [`SqnRequest`] got no SQNs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// Unknown IMPI.
    #[error("unknown user")]
    UnknownUser,
    /// The IMPU does not belong to the IMPI.
    #[error("public identity does not belong to the private identity")]
    IdentitiesDontMatch,
    /// AUTS whose MAC-S does not verify.
    #[error("AUTS rejected: {0}")]
    Resync(akav1::AkaError),
    /// SQN space exhausted or IND misconfigured.
    #[error("SQN: {0}")]
    Sqn(akav1::AkaError),
    /// The transaction failed; nothing was issued.
    #[error("store: {0}")]
    Store(String),
}

/// A SAR to apply in the write transaction (TS 29.228 §6.1.2).
#[derive(Debug, Clone)]
pub struct SarRequest {
    /// User-Name, if present.
    pub impi: Option<String>,
    /// Public-Identity, if present: the SAR acts on its implicit registration set; without
    /// it, on every set of `impi`.
    pub impu: Option<String>,
    /// Server-Assignment-Type (TS 29.229 §6.3.15).
    pub assignment_type: i32,
    /// Server-Name of the S-CSCF.
    pub server_name: String,
    /// Origin-Host of the S-CSCF (kept for RTR/PPR).
    pub origin_host: Option<String>,
    /// Origin-Realm of the S-CSCF.
    pub origin_realm: Option<String>,
}

/// A SAR applied and committed.
#[derive(Clone)]
pub struct SarDone {
    /// The subscriber after the change.
    pub subscriber: Subscriber,
    /// The set the SAR was about; `None` when it named no Public-Identity (all sets).
    pub irs: Option<u32>,
    /// Whether the answer carries User-Data.
    pub with_data: bool,
    /// The iFCs for that User-Data: the subscriber's own, then its shared profile's.
    pub ifcs: Vec<InitialFilterCriteria>,
}

impl std::fmt::Debug for SarDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SarDone")
            .field("subscriber", &self.subscriber)
            .field("irs", &self.irs)
            .field("with_data", &self.with_data)
            .finish_non_exhaustive()
    }
}

/// Why one [`SarRequest`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SarError {
    /// Unknown IMPI or IMPU.
    #[error("unknown user")]
    UnknownUser,
    /// The IMPU does not belong to the IMPI.
    #[error("public identity does not belong to the private identity")]
    IdentitiesDontMatch,
    /// Neither User-Name nor Public-Identity.
    #[error("SAR needs User-Name or Public-Identity")]
    NoIdentity,
    /// The assignment is not allowed in the set's state.
    #[error(transparent)]
    Refused(#[from] crate::registration::SarRefusal),
    /// The transaction failed; nothing was changed.
    #[error("store: {0}")]
    Store(String),
}

/// One write of a group-committed batch ([`Store::commit_batch`]).
#[derive(Debug, Clone)]
pub enum WriteJob {
    /// Reserve SQNs for a MAR.
    Sqn(SqnRequest),
    /// Apply a SAR.
    Sar(SarRequest),
}

/// The result of one [`WriteJob`], in the same order.
#[derive(Debug)]
pub enum WriteResult {
    /// SQNs reserved (or why not).
    Sqn(Result<Issued, IssueError>),
    /// SAR applied (or why not); boxed, it is several times the size of the SQN result.
    Sar(Box<Result<SarDone, SarError>>),
}

/// A connection to the subscriber database.
pub struct Store {
    conn: Connection,
}

/// Durability of commits (`PRAGMA synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync on every commit: survives power loss (default).
    #[default]
    Full,
    /// fsync at checkpoints only: survives a killed process, not a power cut.
    Normal,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn, durability)
    }

    /// An in-memory database (tests, benchmarks of the logic).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, Durability::Full)
    }

    fn init(conn: Connection, durability: Durability) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Reads of the hot rows from the mapping instead of a pread each; a cache that holds
        // a lab's subscriber tables.
        conn.pragma_update(None, "mmap_size", 256i64 << 20)?;
        conn.pragma_update(None, "cache_size", -16384i64)?;
        let mut s = Store { conn };
        s.migrate()?;
        Ok(s)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let v: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew(v));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(v.max(0) as usize) {
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds a subscriber; IMPI, IMSI and IMPUs must be new.
    pub fn add(&mut self, s: &Subscriber) -> Result<(), StoreError> {
        validate(s)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        insert(&tx, s)?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces a subscriber's provisioning data, keeping its SQN if the new one is lower
    /// (SEQ never moves back) and its registration state.
    pub fn update(&mut self, impi: &str, s: &Subscriber) -> Result<(), StoreError> {
        validate(s)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (old_id, old) = get_row(&tx, impi)?.ok_or_else(|| StoreError::NotFound(impi.into()))?;
        let old_sets = load_sets(&tx, old_id)?;
        tx.execute("DELETE FROM subscribers WHERE impi = ?1", [impi])?;
        let mut merged = s.clone();
        merged.sqn = merged.sqn.max(old.sqn);
        merged.reg_state = old.reg_state;
        merged.scscf_name = old.scscf_name;
        merged.scscf_host = old.scscf_host;
        merged.scscf_realm = old.scscf_realm;
        let id = insert(&tx, &merged)?;
        // Sets that still exist keep their registration; a removed set's is dropped.
        let kept: Vec<_> = old_sets
            .into_iter()
            .filter(|r| merged.impus.iter().any(|i| i.irs == r.irs))
            .collect();
        write_sets(&tx, id, &kept)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes a subscriber; false if there was none.
    pub fn delete(&mut self, impi: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM subscribers WHERE impi = ?1", [impi])?
            > 0)
    }

    /// A subscriber by IMPI.
    pub fn get(&self, impi: &str) -> Result<Option<Subscriber>, StoreError> {
        get_in(&self.conn, impi)
    }

    /// A subscriber by IMPI, IMSI, MSISDN or one of its IMPUs.
    pub fn find(&self, key: &str) -> Result<Option<Subscriber>, StoreError> {
        // MSISDNs are stored without '+'; IMPUs keep theirs.
        if let Some(digits) = key.strip_prefix('+') {
            if let Some(s) = self.find_exact(digits)? {
                return Ok(Some(s));
            }
        }
        self.find_exact(key)
    }

    fn find_exact(&self, key: &str) -> Result<Option<Subscriber>, StoreError> {
        let impi: Option<String> = self
            .conn
            .query_row(
                "SELECT impi FROM subscribers WHERE impi = ?1 OR imsi = ?1 OR msisdn = ?1
                 UNION ALL
                 SELECT s.impi FROM impus i JOIN subscribers s ON s.id = i.subscriber_id
                 WHERE i.uri = ?1 LIMIT 1",
                [key],
                |r| r.get(0),
            )
            .optional()?;
        match impi {
            Some(i) => self.get(&i),
            None => Ok(None),
        }
    }

    /// The IMPI owning an IMPU.
    pub fn impi_of(&self, impu: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT s.impi FROM impus i JOIN subscribers s ON s.id = i.subscriber_id
                 WHERE i.uri = ?1",
                [impu],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// All IMPIs, sorted.
    pub fn list(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT impi FROM subscribers ORDER BY impi")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every subscriber an S-CSCF serves (registered or unregistered state), sorted by IMPI:
    /// what the HSS knows of live registrations (TS 29.228 §6.1.2; contacts live in the
    /// S-CSCF, not here).
    pub fn registrations(&self) -> Result<Vec<Subscriber>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT impi FROM subscribers WHERE reg_state != 0 ORDER BY impi")?;
        let impis = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(impis.len());
        for i in impis {
            // A row deleted between the two reads is simply no longer registered.
            if let Some(s) = self.get(&i)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Number of subscribers.
    pub fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM subscribers", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Number of subscribers with an S-CSCF assigned (registered).
    pub fn count_registered(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM subscribers WHERE reg_state = 1",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Records the S-CSCF assignment (SAR) or clears it (`state` NotRegistered).
    pub fn set_registration(
        &mut self,
        impi: &str,
        state: RegState,
        scscf_name: Option<&str>,
        scscf_host: Option<&str>,
        scscf_realm: Option<&str>,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (id, s) = get_row(&tx, impi)?.ok_or_else(|| StoreError::NotFound(impi.into()))?;
        let sets: Vec<_> = distinct_sets(&s)
            .map(|irs| IrsRegistration {
                irs,
                state,
                scscf_name: scscf_name.map(str::to_string),
                scscf_host: scscf_host.map(str::to_string),
                scscf_realm: scscf_realm.map(str::to_string),
            })
            .collect();
        write_sets(&tx, id, &sets)?;
        tx.commit()?;
        Ok(())
    }

    /// The registration of every implicit registration set of `impi`, by set number (sets
    /// with nothing stored are [`IrsRegistration::none`]).
    pub fn irs_registrations(&self, impi: &str) -> Result<Vec<IrsRegistration>, StoreError> {
        let (id, s) =
            get_row(&self.conn, impi)?.ok_or_else(|| StoreError::NotFound(impi.into()))?;
        let stored = load_sets(&self.conn, id)?;
        Ok(distinct_sets(&s)
            .map(|irs| {
                stored
                    .iter()
                    .find(|r| r.irs == irs)
                    .cloned()
                    .unwrap_or_else(|| IrsRegistration::none(irs))
            })
            .collect())
    }

    /// The registration of the implicit registration set holding `impu` (None: unknown IMPU).
    pub fn registration_of(&self, impu: &str) -> Result<Option<IrsRegistration>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT i.irs, r.reg_state, r.scscf_name, r.scscf_host, r.scscf_realm
                 FROM impus i LEFT JOIN irs_registrations r
                   ON r.subscriber_id = i.subscriber_id AND r.irs = i.irs
                 WHERE i.uri = ?1",
            )?
            .query_row([impu], |r| {
                Ok(IrsRegistration {
                    irs: r.get(0)?,
                    state: RegState::from_code(r.get::<_, Option<i64>>(1)?.unwrap_or(0)),
                    scscf_name: r.get(2)?,
                    scscf_host: r.get(3)?,
                    scscf_realm: r.get(4)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Stores a shared iFC profile.
    pub fn put_profile(
        &mut self,
        name: &str,
        ifcs: &[InitialFilterCriteria],
    ) -> Result<(), StoreError> {
        let j = serde_json::to_string(ifcs).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO profiles(name, ifcs) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET ifcs = excluded.ifcs",
            params![name, j],
        )?;
        Ok(())
    }

    /// A shared iFC profile.
    pub fn profile(&self, name: &str) -> Result<Option<Vec<InitialFilterCriteria>>, StoreError> {
        let j: Option<String> = self
            .conn
            .query_row("SELECT ifcs FROM profiles WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        j.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// IMPIs of subscribers using a profile (targets of PPR after a profile change).
    pub fn users_of_profile(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT impi FROM subscribers WHERE profile = ?1 ORDER BY impi")?;
        let rows = st.query_map([name], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The User-Data document for a subscriber: one ServiceProfile per implicit registration
    /// set, with the subscriber's own iFCs followed by its shared profile's.
    pub fn user_data(&self, s: &Subscriber) -> Result<ifc::ImsSubscription, StoreError> {
        let mut ifcs = s.ifcs.clone();
        if let Some(p) = &s.profile {
            if let Some(extra) = self.profile(p)? {
                ifcs.extend(extra);
            }
        }
        Ok(build_user_data(s, &ifcs))
    }

    /// Applies a batch of MAR SQN reservations and SARs in ONE immediate transaction and
    /// commits it (one fsync for the batch); results in the order of `jobs`. Nothing is
    /// returned before the commit succeeded, so no answer can announce a state or an SQN that
    /// a crash would take back. A failed transaction fails every job of the batch.
    pub fn commit_batch(
        &mut self,
        jobs: &[WriteJob],
        policy: &SqnPolicy,
        ind: u32,
    ) -> Vec<WriteResult> {
        match self.commit_batch_tx(jobs, policy, ind) {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                jobs.iter()
                    .map(|j| match j {
                        WriteJob::Sqn(_) => WriteResult::Sqn(Err(IssueError::Store(msg.clone()))),
                        WriteJob::Sar(_) => {
                            WriteResult::Sar(Box::new(Err(SarError::Store(msg.clone()))))
                        }
                    })
                    .collect()
            }
        }
    }

    fn commit_batch_tx(
        &mut self,
        jobs: &[WriteJob],
        policy: &SqnPolicy,
        ind: u32,
    ) -> Result<Vec<WriteResult>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            out.push(match j {
                WriteJob::Sqn(r) => WriteResult::Sqn(sqn_in_tx(&tx, r, policy, ind)?),
                WriteJob::Sar(r) => WriteResult::Sar(Box::new(sar_in_tx(&tx, r)?)),
            });
        }
        tx.commit()?;
        Ok(out)
    }

    /// Issues SQNs for a batch of MARs in ONE immediate transaction; nothing is returned
    /// before the commit succeeded, so an SQN handed out is an SQN on disk (TS 33.102 C.3).
    ///
    /// `ind` is this HSS's IND slot, so that another HSS/AuC on the same card using another
    /// slot does not make the card's per-slot SEQ_MS go backwards.
    pub fn issue_sqns(
        &mut self,
        reqs: &[SqnRequest],
        policy: &SqnPolicy,
        ind: u32,
    ) -> Vec<Result<Issued, IssueError>> {
        match self.issue_sqns_tx(reqs, policy, ind) {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                reqs.iter()
                    .map(|_| Err(IssueError::Store(msg.clone())))
                    .collect()
            }
        }
    }

    fn issue_sqns_tx(
        &mut self,
        reqs: &[SqnRequest],
        policy: &SqnPolicy,
        ind: u32,
    ) -> Result<Vec<Result<Issued, IssueError>>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(sqn_in_tx(&tx, r, policy, ind)?);
        }
        tx.commit()?;
        Ok(out)
    }
}

/// Reserves the SQNs of one MAR inside the caller's write transaction. The statements are
/// cached: this runs inside the write lock, so its cost bounds MAR throughput.
fn sqn_in_tx(
    conn: &Connection,
    r: &SqnRequest,
    policy: &SqnPolicy,
    ind: u32,
) -> Result<Result<Issued, IssueError>, StoreError> {
    let mut sel = conn.prepare_cached(
        "SELECT s.id, s.k, s.opc, s.amf, s.sqn,
                ?2 IS NULL OR EXISTS (SELECT 1 FROM impus i
                                      WHERE i.subscriber_id = s.id AND i.uri = ?2)
         FROM subscribers s WHERE s.impi = ?1",
    )?;
    let row = sel
        .query_row(params![&r.impi, &r.impu], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, bool>(5)?,
            ))
        })
        .optional()?;
    let Some((id, k, opc, amf, sqn, owns)) = row else {
        return Ok(Err(IssueError::UnknownUser));
    };
    if !owns {
        return Ok(Err(IssueError::IdentitiesDontMatch));
    }
    let (Ok(k), Ok(opc), Ok(amf)) = (
        <[u8; 16]>::try_from(k.as_slice()),
        <[u8; 16]>::try_from(opc.as_slice()),
        <[u8; 2]>::try_from(amf.as_slice()),
    ) else {
        return Err(StoreError::Corrupt(format!("key lengths of {}", r.impi)));
    };
    let mut last =
        Sqn::new(sqn as u64).map_err(|e| StoreError::Corrupt(format!("sqn of {}: {e}", r.impi)))?;
    let mut resynced_from = None;
    if let Some((rand, auts)) = &r.resync {
        match Milenage::new(&k, &opc).resync(rand, auts) {
            Ok(sqn_ms) => {
                last = policy.resynced(last, sqn_ms);
                resynced_from = Some(sqn_ms);
            }
            Err(e) => return Ok(Err(IssueError::Resync(e))),
        }
    }
    let mut sqns = Vec::with_capacity(r.count.clamp(1, 64) as usize);
    for _ in 0..r.count.max(1) {
        match policy.next(last, ind) {
            Ok(n) => {
                sqns.push(n);
                last = n;
            }
            Err(e) => return Ok(Err(IssueError::Sqn(e))),
        }
    }
    conn.prepare_cached("UPDATE subscribers SET sqn = ?2 WHERE id = ?1")?
        .execute(params![id, last.value() as i64])?;
    Ok(Ok(Issued {
        k,
        opc,
        amf,
        sqns,
        resynced_from,
    }))
}

/// Applies one SAR inside the caller's write transaction (TS 29.228 §6.1.2): to the
/// implicit registration set of its Public-Identity, or to every set of its User-Name.
fn sar_in_tx(conn: &Connection, r: &SarRequest) -> Result<Result<SarDone, SarError>, StoreError> {
    let (impi, irs) = match (&r.impu, &r.impi) {
        (Some(u), impi) => {
            let row = conn
                .prepare_cached(
                    "SELECT s.impi, i.irs FROM impus i JOIN subscribers s ON s.id = i.subscriber_id
                     WHERE i.uri = ?1",
                )?
                .query_row([u], |x| Ok((x.get::<_, String>(0)?, x.get::<_, u32>(1)?)))
                .optional()?;
            let Some((owner, irs)) = row else {
                return Ok(Err(SarError::UnknownUser));
            };
            if let Some(i) = impi.as_ref().filter(|i| **i != owner) {
                // An unknown IMPI is USER_UNKNOWN; a known one that does not own the IMPU is
                // IDENTITIES_DONT_MATCH (TS 29.228 §6.1.2.1).
                let known = conn
                    .prepare_cached("SELECT 1 FROM subscribers WHERE impi = ?1")?
                    .exists([i])?;
                return Ok(Err(if known {
                    SarError::IdentitiesDontMatch
                } else {
                    SarError::UnknownUser
                }));
            }
            (owner, Some(irs))
        }
        (None, Some(i)) => (i.clone(), None),
        (None, None) => return Ok(Err(SarError::NoIdentity)),
    };
    let Some((id, mut s)) = get_row(conn, &impi)? else {
        return Ok(Err(SarError::UnknownUser));
    };
    let mut sets: Vec<IrsRegistration> = {
        let stored = load_sets(conn, id)?;
        distinct_sets(&s)
            .map(|n| {
                stored
                    .iter()
                    .find(|x| x.irs == n)
                    .cloned()
                    .unwrap_or_else(|| IrsRegistration::none(n))
            })
            .collect()
    };
    let by = crate::registration::Assigner {
        name: &r.server_name,
        host: r.origin_host.as_deref(),
        realm: r.origin_realm.as_deref(),
    };
    // Decide for every target set first: a refusal changes nothing.
    let mut with_data = false;
    let mut changes = Vec::new();
    for (k, cur) in sets.iter().enumerate() {
        if irs.is_some_and(|n| n != cur.irs) {
            continue;
        }
        let t = match crate::registration::sar_transition(r.assignment_type, cur, by) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e.into())),
        };
        with_data = t.with_data;
        // A re-registration at the same S-CSCF changes nothing: nothing to write.
        if let Some(n) = t.new.filter(|n| n != cur) {
            changes.push((k, n));
        }
    }
    if !changes.is_empty() {
        for (k, n) in changes {
            write_set(conn, id, &n)?;
            sets[k] = n;
        }
        let sum = crate::registration::summary(&sets);
        if (
            sum.state,
            &sum.scscf_name,
            &sum.scscf_host,
            &sum.scscf_realm,
        ) != (s.reg_state, &s.scscf_name, &s.scscf_host, &s.scscf_realm)
        {
            write_summary(conn, id, &sum)?;
            s.reg_state = sum.state;
            s.scscf_name = sum.scscf_name;
            s.scscf_host = sum.scscf_host;
            s.scscf_realm = sum.scscf_realm;
        }
    }
    let mut ifcs = Vec::new();
    if with_data {
        ifcs = s.ifcs.clone();
        if let Some(p) = &s.profile {
            let j: Option<String> = conn
                .prepare_cached("SELECT ifcs FROM profiles WHERE name = ?1")?
                .query_row([p], |x| x.get(0))
                .optional()?;
            if let Some(j) = j {
                let extra: Vec<InitialFilterCriteria> =
                    serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                ifcs.extend(extra);
            }
        }
    }
    Ok(Ok(SarDone {
        subscriber: s,
        irs,
        with_data,
        ifcs,
    }))
}

/// The implicit registration set numbers of a subscriber, ascending, each once.
fn distinct_sets(s: &Subscriber) -> impl Iterator<Item = u32> {
    let mut v: Vec<u32> = s.impus.iter().map(|i| i.irs).collect();
    v.sort_unstable();
    v.dedup();
    v.into_iter()
}

// Statements that compare a bound subscriber id with the leading column of a non-unique index
// write it `+?1`: with the bundled SQLite's STAT4 the planner otherwise marks the parameter as
// plan-relevant and re-prepares the cached statement every time the id changes, i.e. on
// every request (measured: every execution of such a statement re-prepared). The unary plus
// keeps the index search (EXPLAIN QUERY PLAN: SEARCH ... USING INDEX) without that mark.

/// The stored set registrations of subscriber `id` (sets without a row are not registered).
fn load_sets(conn: &Connection, id: i64) -> Result<Vec<IrsRegistration>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT irs, reg_state, scscf_name, scscf_host, scscf_realm
         FROM irs_registrations WHERE subscriber_id = +?1 ORDER BY irs",
    )?;
    let rows = st
        .query_map([id], |r| {
            Ok(IrsRegistration {
                irs: r.get(0)?,
                state: RegState::from_code(r.get(1)?),
                scscf_name: r.get(2)?,
                scscf_host: r.get(3)?,
                scscf_realm: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Stores the registration of one set of subscriber `id` (the empty state as no row).
fn write_set(conn: &Connection, id: i64, r: &IrsRegistration) -> Result<(), StoreError> {
    if r.is_empty() {
        conn.prepare_cached(
            "DELETE FROM irs_registrations WHERE subscriber_id = +?1 AND irs = ?2",
        )?
        .execute(params![id, r.irs])?;
    } else {
        conn.prepare_cached(
            "INSERT INTO irs_registrations(subscriber_id, irs, reg_state, scscf_name, scscf_host,
                                           scscf_realm)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(subscriber_id, irs) DO UPDATE SET reg_state = excluded.reg_state,
                scscf_name = excluded.scscf_name, scscf_host = excluded.scscf_host,
                scscf_realm = excluded.scscf_realm",
        )?
        .execute(params![
            id,
            r.irs,
            r.state.code(),
            r.scscf_name,
            r.scscf_host,
            r.scscf_realm
        ])?;
    }
    Ok(())
}

/// Stores the subscriber-level summary of its sets.
fn write_summary(conn: &Connection, id: i64, sum: &IrsRegistration) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE subscribers SET reg_state = ?2, scscf_name = ?3, scscf_host = ?4,
         scscf_realm = ?5, updated_at = unixepoch() WHERE id = ?1",
    )?
    .execute(params![
        id,
        sum.state.code(),
        sum.scscf_name,
        sum.scscf_host,
        sum.scscf_realm
    ])?;
    Ok(())
}

/// Stores the registrations of every set of subscriber `id` (a set in the empty state has no
/// row) and the subscriber-level summary; returns the summary.
fn write_sets(
    conn: &Connection,
    id: i64,
    sets: &[IrsRegistration],
) -> Result<IrsRegistration, StoreError> {
    conn.prepare_cached("DELETE FROM irs_registrations WHERE subscriber_id = +?1")?
        .execute([id])?;
    let mut ins = conn.prepare_cached(
        "INSERT INTO irs_registrations(subscriber_id, irs, reg_state, scscf_name, scscf_host,
                                       scscf_realm)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in sets.iter().filter(|r| !r.is_empty()) {
        ins.execute(params![
            id,
            r.irs,
            r.state.code(),
            r.scscf_name,
            r.scscf_host,
            r.scscf_realm
        ])?;
    }
    let sum = crate::registration::summary(sets);
    write_summary(conn, id, &sum)?;
    Ok(sum)
}

fn validate(s: &Subscriber) -> Result<(), StoreError> {
    if s.impi.trim().is_empty() {
        return Err(StoreError::Invalid("IMPI is empty".into()));
    }
    if s.sqn > akav1::SQN_MAX {
        return Err(StoreError::Invalid("SQN does not fit in 48 bits".into()));
    }
    for i in &s.impus {
        if !(i.uri.starts_with("sip:") || i.uri.starts_with("tel:") || i.uri.starts_with("sips:")) {
            return Err(StoreError::Invalid(format!(
                "IMPU {:?} is not a sip:, sips: or tel: URI",
                i.uri
            )));
        }
    }
    if let Some(imsi) = &s.imsi {
        if !(6..=15).contains(&imsi.len()) || !imsi.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StoreError::Invalid(format!(
                "IMSI {imsi:?} is not 6-15 digits"
            )));
        }
    }
    Ok(())
}

fn conflict(e: rusqlite::Error, what: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("{what}: {e}"))
        }
        _ => StoreError::Db(e),
    }
}

/// Inserts a subscriber with its IMPUs; its registration summary, if any, is given to every
/// implicit registration set. Returns the row id.
fn insert(tx: &rusqlite::Transaction<'_>, s: &Subscriber) -> Result<i64, StoreError> {
    if let Some(p) = &s.profile {
        let known = tx
            .query_row("SELECT 1 FROM profiles WHERE name = ?1", [p], |_| Ok(()))
            .optional()?;
        if known.is_none() {
            return Err(StoreError::Invalid(format!(
                "no iFC profile {p:?} (create it first with PUT /api/v1/profiles/{p})"
            )));
        }
    }
    let j = |v: &dyn erased::Ser| v.json();
    tx.execute(
        "INSERT INTO subscribers(impi, imsi, iccid, msisdn, k, opc, amf, sqn, ifcs, profile,
            shared_ifc_set_ids, reg_state, scscf_name, scscf_host, scscf_realm)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            s.impi,
            s.imsi,
            s.iccid,
            s.msisdn,
            &s.k[..],
            &s.opc[..],
            &s.amf[..],
            s.sqn as i64,
            j(&s.ifcs)?,
            s.profile,
            j(&s.shared_ifc_set_ids)?,
            s.reg_state.code(),
            s.scscf_name,
            s.scscf_host,
            s.scscf_realm,
        ],
    )
    .map_err(|e| conflict(e, &format!("subscriber {} (IMPI or IMSI)", s.impi)))?;
    let id = tx.last_insert_rowid();
    for (pos, i) in s.impus.iter().enumerate() {
        tx.execute(
            "INSERT INTO impus(uri, subscriber_id, position, irs, barred, display_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![i.uri, id, pos as i64, i.irs, i.barred, i.display_name],
        )
        .map_err(|e| conflict(e, &format!("IMPU {}", i.uri)))?;
    }
    if s.reg_state != RegState::NotRegistered || s.scscf_name.is_some() {
        let sets: Vec<_> = distinct_sets(s)
            .map(|irs| IrsRegistration {
                irs,
                state: s.reg_state,
                scscf_name: s.scscf_name.clone(),
                scscf_host: s.scscf_host.clone(),
                scscf_realm: s.scscf_realm.clone(),
            })
            .collect();
        write_sets(tx, id, &sets)?;
    }
    Ok(id)
}

mod erased {
    use super::StoreError;
    pub trait Ser {
        fn json(&self) -> Result<String, StoreError>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> Result<String, StoreError> {
            serde_json::to_string(self).map_err(|e| StoreError::Invalid(e.to_string()))
        }
    }
}

fn get_in(conn: &Connection, impi: &str) -> Result<Option<Subscriber>, StoreError> {
    Ok(get_row(conn, impi)?.map(|(_, s)| s))
}

/// A subscriber and its row id. Statements are cached: the SAR path reads through here.
fn get_row(conn: &Connection, impi: &str) -> Result<Option<(i64, Subscriber)>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT id, impi, imsi, iccid, msisdn, k, opc, amf, sqn, ifcs, profile,
                    shared_ifc_set_ids, reg_state, scscf_name, scscf_host, scscf_realm
             FROM subscribers WHERE impi = ?1",
        )?
        .query_row([impi], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, Vec<u8>>(6)?,
                r.get::<_, Vec<u8>>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, Option<String>>(10)?,
                r.get::<_, String>(11)?,
                r.get::<_, i64>(12)?,
                (
                    r.get::<_, Option<String>>(13)?,
                    r.get::<_, Option<String>>(14)?,
                    r.get::<_, Option<String>>(15)?,
                ),
            ))
        })
        .optional()?;
    let Some((id, impi, imsi, iccid, msisdn, k, opc, amf, sqn, ifcs, profile, sets, reg, sc)) = row
    else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of {impi}"));
    let mut st = conn.prepare_cached(
        "SELECT uri, irs, barred, display_name FROM impus WHERE subscriber_id = +?1
         ORDER BY position",
    )?;
    let impus = st
        .query_map([id], |r| {
            Ok(Impu {
                uri: r.get(0)?,
                irs: r.get(1)?,
                barred: r.get(2)?,
                display_name: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((
        id,
        Subscriber {
            k: k.as_slice().try_into().map_err(|_| corrupt("K"))?,
            opc: opc.as_slice().try_into().map_err(|_| corrupt("OPc"))?,
            amf: amf.as_slice().try_into().map_err(|_| corrupt("AMF"))?,
            sqn: sqn as u64,
            ifcs: serde_json::from_str(&ifcs).map_err(|_| corrupt("iFCs"))?,
            shared_ifc_set_ids: serde_json::from_str(&sets).map_err(|_| corrupt("shared sets"))?,
            impi,
            imsi,
            iccid,
            msisdn,
            impus,
            profile,
            reg_state: RegState::from_code(reg),
            scscf_name: sc.0,
            scscf_host: sc.1,
            scscf_realm: sc.2,
        },
    )))
}

/// Builds User-Data from a subscriber and the iFCs that apply to it: one ServiceProfile per
/// implicit registration set.
pub fn build_user_data(s: &Subscriber, ifcs: &[InitialFilterCriteria]) -> ifc::ImsSubscription {
    build_user_data_for(s, ifcs, None)
}

/// Like [`build_user_data`], but only set `irs` when given: what an SAA about one
/// Public-Identity carries (all IMPUs of its implicit registration set, TS 29.228 §6.1.2.1),
/// so an S-CSCF never takes the IMPUs of another, unregistered set as registered.
pub fn build_user_data_for(
    s: &Subscriber,
    ifcs: &[InitialFilterCriteria],
    irs: Option<u32>,
) -> ifc::ImsSubscription {
    let service_profiles = distinct_sets(s)
        .filter(|n| irs.is_none_or(|i| i == *n))
        .map(|set| ifc::ServiceProfile {
            public_identities: s
                .impus
                .iter()
                .filter(|i| i.irs == set)
                .map(|i| ifc::PublicIdentity {
                    identity: i.uri.clone(),
                    barring_indication: i.barred,
                    identity_type: i
                        .display_name
                        .as_ref()
                        .map(|_| ifc::IdentityType::PublicUserIdentity),
                    wildcarded_psi: None,
                    display_name: i.display_name.clone(),
                })
                .collect(),
            core_network_services_authorization: None,
            initial_filter_criteria: ifcs.to_vec(),
            shared_ifc_set_ids: s.shared_ifc_set_ids.clone(),
        })
        .collect();
    ifc::ImsSubscription {
        private_id: s.impi.clone(),
        service_profiles,
    }
}
