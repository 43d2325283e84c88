//! The local phonebook: numbers to names, imported from CSV or vCard (RFC 6350 4.0, RFC
//! 2426 3.0), reloaded when the file changes.
//!
//! Keys are normalised with [`NumberPlan`], so `030 1234`, `+49301234` and
//! `tel:+49-30-1234` in the file all match the caller `+49301234`.
//!
//! A file that does not parse is reported with its line number and the phonebook in use
//! stays as it was: a half-saved file from an editor must not empty the phonebook while a
//! call comes in. [`watch`] (shared with the blocklist) reloads on a `notify` event and,
//! because inotify misses changes on some network and container file systems, also checks
//! the file's size and modification time every poll interval.

use crate::numbers::NumberPlan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

/// `[phonebook]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhonebookConfig {
    /// The phonebook file: `.vcf` is read as vCard, anything else as CSV `number,name`
    /// (default none: no phonebook, callers show their display name).
    pub file: Option<PathBuf>,
    /// Seconds between checks of the file besides change notifications (default 5: quick
    /// enough after an edit, negligible cost; notifications make it instant where they work).
    pub poll_seconds: u64,
}

impl Default for PhonebookConfig {
    fn default() -> Self {
        PhonebookConfig {
            file: None,
            poll_seconds: 5,
        }
    }
}

/// The commented TOML snippet of `[phonebook]`.
pub const EXAMPLE: &str = r#"[phonebook]
# CSV "number,name" (an optional header line; quotes around fields with commas) or a vCard
# export (.vcf, 3.0 or 4.0). Reloaded when it changes; a broken file keeps the old phonebook.
# file = "/etc/imslab/phonebook.vcf"
# Seconds between checks besides change notifications.
poll_seconds = 5
"#;

/// Why a phonebook file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhonebookError {
    /// The file cannot be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error, as text (so the error stays comparable in tests).
        reason: String,
    },
    /// A CSV line is malformed.
    #[error("CSV line {line}: {reason}")]
    Csv {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A vCard line is malformed.
    #[error("vCard line {line}: {reason}")]
    Vcard {
        /// 1-based line number (of the first physical line of a folded one).
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Numbers (normalised) to names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phonebook {
    entries: BTreeMap<String, String>,
}

impl Phonebook {
    /// The name for a normalised number.
    pub fn lookup(&self, number: &str) -> Option<&str> {
        self.entries.get(number).map(String::as_str)
    }

    /// How many numbers it knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, by number.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Reads a file: `.vcf`/`.vcard` as vCard, anything else as CSV.
    pub fn load(path: &Path, plan: &NumberPlan) -> Result<Phonebook, PhonebookError> {
        let text = std::fs::read_to_string(path).map_err(|e| PhonebookError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("vcf" | "vcard") => parse_vcard(&text, plan),
            _ => parse_csv(&text, plan),
        }
    }
}

/// Parses CSV `number,name` lines. Blank lines and `#` comments are skipped; a first line
/// whose number field is not a number is a header.
pub fn parse_csv(text: &str, plan: &NumberPlan) -> Result<Phonebook, PhonebookError> {
    let mut pb = Phonebook::default();
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim().trim_start_matches('\u{feff}');
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let err = |reason| PhonebookError::Csv { line, reason };
        let fields = opskit::csv::split_line(l, ',').ok_or(err("unterminated quote"))?;
        let was_first = std::mem::replace(&mut first, false);
        if fields.len() < 2 {
            return Err(err("expected number,name"));
        }
        let Some(number) = plan.normalize(&fields[0]) else {
            if was_first {
                continue;
            }
            return Err(err("not a number"));
        };
        if fields[1].is_empty() {
            return Err(err("empty name"));
        }
        pb.entries.insert(number, fields[1].clone());
    }
    Ok(pb)
}

/// RFC 6350 §3.4 value escapes: `\,`, `\;`, `\\`, `\n`.
fn vcard_unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push(' '),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_string()
}

/// Parses vCards: FN (or N when FN is missing) and every TEL of each card. Lines are
/// unfolded first (RFC 6350 §3.2: CRLF followed by a space or tab continues a line).
pub fn parse_vcard(text: &str, plan: &NumberPlan) -> Result<Phonebook, PhonebookError> {
    // Unfold, remembering the first physical line of each logical one for errors.
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim_end_matches('\r');
        if let Some(cont) = raw.strip_prefix([' ', '\t']) {
            match lines.last_mut() {
                Some((_, l)) => l.push_str(cont),
                None => {
                    return Err(PhonebookError::Vcard {
                        line: i + 1,
                        reason: "continuation line without a line to continue",
                    })
                }
            }
        } else {
            lines.push((i + 1, raw.trim_start_matches('\u{feff}').to_string()));
        }
    }

    struct Card {
        fname: Option<String>,
        n: Option<String>,
        tels: Vec<String>,
    }
    let mut pb = Phonebook::default();
    let mut card: Option<Card> = None;
    for (line, l) in lines {
        let err = |reason| PhonebookError::Vcard { line, reason };
        if l.trim().is_empty() {
            continue;
        }
        let (head, value) = l.split_once(':').ok_or(err("line without ':'"))?;
        // `item1.TEL;TYPE=cell` → name TEL (a group prefix is allowed, RFC 6350 §3.3).
        let mut parts = head.split(';');
        let name = parts.next().unwrap_or_default();
        let name = name.rsplit('.').next().unwrap_or(name).trim();
        if name.eq_ignore_ascii_case("BEGIN") && value.trim().eq_ignore_ascii_case("VCARD") {
            if card.is_some() {
                return Err(err("BEGIN:VCARD inside a card"));
            }
            card = Some(Card {
                fname: None,
                n: None,
                tels: Vec::new(),
            });
            continue;
        }
        if name.eq_ignore_ascii_case("END") && value.trim().eq_ignore_ascii_case("VCARD") {
            let c = card.take().ok_or(err("END:VCARD without BEGIN"))?;
            if let Some(who) = c.fname.or(c.n) {
                for t in c.tels {
                    pb.entries.insert(t, who.clone());
                }
            }
            continue;
        }
        let Some(c) = card.as_mut() else {
            return Err(err("property outside BEGIN:VCARD/END:VCARD"));
        };
        if name.eq_ignore_ascii_case("FN") {
            let v = vcard_unescape(value);
            if !v.is_empty() {
                c.fname = Some(v);
            }
        } else if name.eq_ignore_ascii_case("N") {
            // family;given;additional;prefix;suffix → "given family".
            let f: Vec<String> = value.split(';').map(vcard_unescape).collect();
            let v = [f.get(1), f.first()]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            if !v.is_empty() {
                c.n = Some(v);
            }
        } else if name.eq_ignore_ascii_case("TEL") {
            // 4.0 writes `TEL;VALUE=uri:tel:+49…`, 3.0 the bare number.
            let v = value.trim();
            let number = if v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("tel:")) {
                plan.from_uri_str(v)
            } else {
                plan.normalize(v)
            };
            c.tels.push(number.ok_or(err("TEL is not a number"))?);
        }
    }
    if card.is_some() {
        return Err(PhonebookError::Vcard {
            line: text.lines().count(),
            reason: "missing END:VCARD",
        });
    }
    Ok(pb)
}

/// A value that a file behind it can replace at any time; readers take a cheap snapshot.
#[derive(Debug, Default)]
pub struct Shared<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Shared<T> {
    /// Holds `v` until replaced.
    pub fn new(v: T) -> Arc<Self> {
        Arc::new(Shared {
            current: RwLock::new(Arc::new(v)),
        })
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the value.
    pub fn set(&self, v: T) {
        let v = Arc::new(v);
        match self.current.write() {
            Ok(mut g) => *g = v,
            Err(p) => *p.into_inner() = v,
        }
    }
}

/// What tells a changed file from the one last read: modification time and size.
pub type Fingerprint = Option<(SystemTime, u64)>;

/// The file's [`Fingerprint`] now; take it *before* reading the file so that a write
/// during the read is seen as a change.
pub fn fingerprint(path: &Path) -> Fingerprint {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads `target` from `path` with `load` whenever the file changes: on a `notify`
/// event for its directory (editors replace files by renaming, which a watch on the file
/// itself would lose) and at least every `poll`, when its fingerprint differs from `seen`
/// (the one taken before the value in `target` was read). A failed load is logged with its error
/// (line number included) and the old value stays. The thread ends within `poll` after
/// `target` is dropped.
pub fn watch<T, E, F>(
    target: &Arc<Shared<T>>,
    path: PathBuf,
    seen: Fingerprint,
    poll: Duration,
    what: &'static str,
    load: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    T: Send + Sync + 'static,
    E: std::fmt::Display,
    F: Fn(&Path) -> Result<T, E> + Send + 'static,
{
    use notify::Watcher;
    let weak: Weak<Shared<T>> = Arc::downgrade(target);
    let poll = poll.max(Duration::from_millis(10));
    std::thread::Builder::new()
        .name(format!("watch-{what}"))
        .spawn(move || {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
                let _ = tx.send(());
            })
            .and_then(|mut w| w.watch(&dir, notify::RecursiveMode::NonRecursive).map(|_| w));
            let watcher = match watcher {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::info!(what, error = %e, "no change notifications, polling only");
                    None
                }
            };
            let mut last = seen;
            loop {
                if watcher.is_some() {
                    match rx.recv_timeout(poll) {
                        Ok(()) => {
                            // An editor's save is several events; let it finish.
                            std::thread::sleep(Duration::from_millis(50));
                            while rx.try_recv().is_ok() {}
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            std::thread::sleep(poll)
                        }
                    }
                } else {
                    std::thread::sleep(poll);
                }
                let Some(t) = weak.upgrade() else { break };
                let fp = fingerprint(&path);
                if fp == last {
                    continue;
                }
                last = fp;
                match load(&path) {
                    Ok(v) => {
                        t.set(v);
                        tracing::info!(what, path = %path.display(), "reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(what, path = %path.display(), error = %e, "reload failed, keeping the previous one")
                    }
                }
            }
        })
}

/// The phonebook of a configuration: loaded now (an unreadable or broken file is an
/// error at start, where the operator sees it) and watched for changes. Without a file, an
/// empty phonebook that never changes.
pub fn start(
    cfg: &PhonebookConfig,
    plan: &NumberPlan,
) -> Result<Arc<Shared<Phonebook>>, PhonebookError> {
    let Some(path) = cfg.file.clone() else {
        return Ok(Shared::new(Phonebook::default()));
    };
    let seen = fingerprint(&path);
    let pb = Shared::new(Phonebook::load(&path, plan)?);
    let plan = plan.clone();
    let poll = Duration::from_secs(cfg.poll_seconds.max(1));
    watch(&pb, path.clone(), seen, poll, "phonebook", move |p| {
        Phonebook::load(p, &plan)
    })
    .map_err(|e| PhonebookError::Io {
        path,
        reason: format!("watcher thread: {e}"),
    })?;
    Ok(pb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> NumberPlan {
        NumberPlan::default()
    }

    #[test]
    fn csv_with_header_quotes_and_comments() {
        let pb = parse_csv(
            "\u{feff}number,name\n# a comment\n\n030 1234,\"Doe, Jane\"\n+44 20 7946 0000,\"The \"\"Office\"\"\"\n1234,Reception,extra\n",
            &plan(),
        )
        .unwrap();
        assert_eq!(pb.len(), 3);
        assert_eq!(pb.lookup("+49301234"), Some("Doe, Jane"));
        assert_eq!(pb.lookup("+442079460000"), Some("The \"Office\""));
        assert_eq!(pb.lookup("1234"), Some("Reception"));
    }

    #[test]
    fn csv_errors_carry_their_line() {
        let cases = [
            ("030 1,A\nfoo,B\n", 2, "not a number"),
            ("030 1,A\n\n030 2\n", 3, "expected number,name"),
            ("030 1,\"A\n", 1, "unterminated quote"),
            ("030 1,\n", 1, "empty name"),
        ];
        for (text, line, reason) in cases {
            assert_eq!(
                parse_csv(text, &plan()),
                Err(PhonebookError::Csv { line, reason }),
                "{text:?}"
            );
        }
    }

    const VCF: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Jane\r\n  Doe\r\nTEL;TYPE=cell:0171 5551234\r\nTEL;VALUE=uri:tel:+49-30-1234\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nN:Smith;John;;;\r\nitem1.TEL;TYPE=HOME:+44 20 7946 0000\r\nEND:VCARD\r\n";

    #[test]
    fn vcard_reads_fn_n_and_tel_forms_with_folding() {
        let pb = parse_vcard(VCF, &plan()).unwrap();
        assert_eq!(pb.lookup("+491715551234"), Some("Jane Doe"));
        assert_eq!(pb.lookup("+49301234"), Some("Jane Doe"));
        assert_eq!(pb.lookup("+442079460000"), Some("John Smith"));
        assert_eq!(pb.len(), 3);
    }

    #[test]
    fn vcard_errors_carry_their_line() {
        let cases = [
            (
                " folded\n",
                1,
                "continuation line without a line to continue",
            ),
            ("FN:x\n", 1, "property outside BEGIN:VCARD/END:VCARD"),
            ("BEGIN:VCARD\nBEGIN:VCARD\n", 2, "BEGIN:VCARD inside a card"),
            ("END:VCARD\n", 1, "END:VCARD without BEGIN"),
            (
                "BEGIN:VCARD\nFN:x\nTEL:call me\nEND:VCARD\n",
                3,
                "TEL is not a number",
            ),
            // Found by the appserver_vcard fuzz target: a multi-byte character at byte 4.
            (
                "BEGIN:VCARD\r\nitem1.TEL:\u{fffd}\u{fffd}\0\n",
                2,
                "TEL is not a number",
            ),
            ("BEGIN:VCARD\nFN x\n", 2, "line without ':'"),
            ("BEGIN:VCARD\nFN:x\n", 2, "missing END:VCARD"),
        ];
        for (text, line, reason) in cases {
            assert_eq!(
                parse_vcard(text, &plan()),
                Err(PhonebookError::Vcard { line, reason }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old() {
        let dir = std::env::temp_dir().join(format!("pb-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("book.csv");
        std::fs::write(&path, "0301,Alice\n").unwrap();
        let cfg = PhonebookConfig {
            file: Some(path.clone()),
            poll_seconds: 1,
        };
        let pb = start(&cfg, &plan()).unwrap();
        assert_eq!(pb.get().lookup("+49301"), Some("Alice"));

        let wait_for = |f: &dyn Fn(&Phonebook) -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if f(&pb.get()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        std::fs::write(&path, "0301,Alice\n0302,Bob\n").unwrap();
        assert!(wait_for(&|p| p.lookup("+49302") == Some("Bob")));

        std::fs::write(&path, "0301,Alice\nbroken\n0303,Carol\n").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(pb.get().lookup("+49302"), Some("Bob"), "old phonebook kept");
        assert_eq!(pb.get().lookup("+49303"), None);

        std::fs::write(&path, "0303,Carol\n").unwrap();
        assert!(wait_for(
            &|p| p.lookup("+49303") == Some("Carol") && p.len() == 1
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_file_is_an_empty_phonebook_and_a_missing_one_an_error() {
        assert!(start(&PhonebookConfig::default(), &plan())
            .unwrap()
            .get()
            .is_empty());
        let cfg = PhonebookConfig {
            file: Some("/nonexistent/book.vcf".into()),
            poll_seconds: 1,
        };
        assert!(matches!(
            start(&cfg, &plan()),
            Err(PhonebookError::Io { .. })
        ));
    }
}
