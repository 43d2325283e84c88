//! Which callers are refused: exact numbers, number prefixes (`+4990*`) and `anonymous`.
//!
//! Entries come from the configuration (`entries = [...]`) and from a file (one entry a
//! line, `#` comments) that is reloaded like the phonebook and that
//! [`BlocklistHandle::add`] appends to, so an entry added over REST survives a restart.
//! Numbers are normalised with [`NumberPlan`] when read, so `0900*` and `+49900*` are the
//! same rule.

use crate::event::{Caller, Verdict};
use crate::numbers::NumberPlan;
use crate::phonebook::{fingerprint, watch, Shared};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[blocklist]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlocklistConfig {
    /// Entries written in the configuration: `"+4930123"`, `"0900*"`, `"anonymous"`
    /// (default none).
    pub entries: Vec<String>,
    /// A file of further entries, one a line; entries added over REST are appended to it
    /// (default none: REST additions last until restart).
    pub file: Option<PathBuf>,
    /// Seconds between checks of the file besides change notifications (default 5, as
    /// the phonebook).
    pub poll_seconds: u64,
}

impl Default for BlocklistConfig {
    fn default() -> Self {
        BlocklistConfig {
            entries: Vec::new(),
            file: None,
            poll_seconds: 5,
        }
    }
}

/// The commented TOML snippet of `[blocklist]`.
pub const EXAMPLE: &str = r#"[blocklist]
# Exact numbers (any written form), prefixes ending in '*', or "anonymous" for withheld
# callers. A blocked call gets 603 Decline over ISC and is dropped from NFQUEUE.
entries = []
# for example: entries = ["anonymous", "0900*", "+49 30 1234567"]
# More entries, one a line ('#' comments); POST /api/blocklist appends here.
# file = "/etc/imslab/blocklist.txt"
poll_seconds = 5
"#;

/// A blocklist entry that cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlocklistError {
    /// Not a number, a prefix or `anonymous`.
    #[error(
        "{origin} line {line}: {entry:?} is not a number, a prefix ending in '*' or \"anonymous\""
    )]
    Entry {
        /// `config` or the file's path.
        origin: String,
        /// 1-based line (index + 1 in the configuration's list).
        line: usize,
        /// The entry as written.
        entry: String,
    },
    /// The file cannot be read or appended to.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

/// One rule, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// This number.
    Exact(String),
    /// Numbers starting with this (normalised, without the `*`).
    Prefix(String),
    /// Withheld callers.
    Anonymous,
}

/// A rule and how it was written (what the verdict and the call log name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// As written.
    pub written: String,
    /// Where it came from: `config`, `file` or `rest`.
    pub origin: &'static str,
    #[serde(skip)]
    rule: Rule,
}

impl Entry {
    /// Parses one entry. `None` when it is not a number, a prefix or `anonymous`.
    pub fn parse(written: &str, origin: &'static str, plan: &NumberPlan) -> Option<Entry> {
        let w = written.trim();
        let rule = if w.eq_ignore_ascii_case("anonymous") {
            Rule::Anonymous
        } else if let Some(p) = w.strip_suffix('*') {
            // The bare international prefix `00*` would not normalise; `+` alone means
            // every international caller and is allowed.
            let p = p.trim();
            if p == "+" {
                Rule::Prefix("+".into())
            } else {
                Rule::Prefix(plan.normalize(p)?)
            }
        } else {
            Rule::Exact(plan.normalize(w)?)
        };
        Some(Entry {
            written: w.to_string(),
            origin,
            rule,
        })
    }

    /// The normalised rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    fn matches(&self, c: &Caller) -> bool {
        match (&self.rule, c.number.as_deref()) {
            (Rule::Anonymous, _) => c.anonymous,
            (Rule::Exact(n), Some(num)) => n == num,
            (Rule::Prefix(p), Some(num)) => num.starts_with(p.as_str()),
            _ => false,
        }
    }
}

/// The rules in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    entries: Vec<Entry>,
}

impl Blocklist {
    /// Parses the configuration's list.
    pub fn from_entries(list: &[String], plan: &NumberPlan) -> Result<Blocklist, BlocklistError> {
        let mut entries = Vec::new();
        for (i, w) in list.iter().enumerate() {
            entries.push(
                Entry::parse(w, "config", plan).ok_or_else(|| BlocklistError::Entry {
                    origin: "config".into(),
                    line: i + 1,
                    entry: w.clone(),
                })?,
            );
        }
        Ok(Blocklist { entries })
    }

    /// Parses a file's text (one entry a line, blank lines and `#` comments skipped).
    pub fn parse_file(
        text: &str,
        origin: &str,
        plan: &NumberPlan,
    ) -> Result<Vec<Entry>, BlocklistError> {
        let mut out = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            out.push(
                Entry::parse(l, "file", plan).ok_or_else(|| BlocklistError::Entry {
                    origin: origin.into(),
                    line: i + 1,
                    entry: l.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    /// The verdict for a caller: the first matching entry blocks.
    pub fn check(&self, c: &Caller) -> Verdict {
        match self.entries.iter().find(|e| e.matches(c)) {
            Some(e) => Verdict::Block {
                rule: e.written.clone(),
            },
            None => Verdict::Ring,
        }
    }

    /// The entries, in matching order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// The blocklist in use and what it is built from; shared by the pipeline and REST.
#[derive(Debug)]
pub struct BlocklistHandle {
    current: Arc<Shared<Blocklist>>,
    config: Vec<Entry>,
    file: Option<PathBuf>,
    /// Entries added over REST while no file is configured.
    added: Mutex<Vec<Entry>>,
    plan: NumberPlan,
}

impl BlocklistHandle {
    /// The rules in force now.
    pub fn get(&self) -> Arc<Blocklist> {
        self.current.get()
    }

    /// The verdict for a caller.
    pub fn check(&self, c: &Caller) -> Verdict {
        self.get().check(c)
    }

    /// Adds an entry: appended to the file when there is one (and so kept across
    /// restarts), else held in memory. Returns the parsed entry.
    pub fn add(&self, written: &str) -> Result<Entry, BlocklistError> {
        let written = written.trim();
        let bad = || BlocklistError::Entry {
            origin: "rest".into(),
            line: 1,
            entry: written.to_string(),
        };
        if written.contains(['\n', '\r', '#']) {
            return Err(bad());
        }
        let origin = if self.file.is_some() { "file" } else { "rest" };
        let e = Entry::parse(written, origin, &self.plan).ok_or_else(bad)?;
        let mut added = self.added.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.file {
            let io = |err: std::io::Error| BlocklistError::Io {
                path: path.clone(),
                reason: err.to_string(),
            };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io)?;
            writeln!(f, "{written}").map_err(io)?;
            let text = std::fs::read_to_string(path).map_err(io)?;
            let from_file = Blocklist::parse_file(&text, &path.display().to_string(), &self.plan)?;
            self.current.set(self.compose(from_file, &added));
        } else {
            added.push(e.clone());
            let file = Vec::new();
            self.current.set(self.compose(file, &added));
        }
        Ok(e)
    }

    fn compose(&self, file: Vec<Entry>, added: &[Entry]) -> Blocklist {
        let mut entries = self.config.clone();
        entries.extend(file);
        entries.extend(added.iter().cloned());
        Blocklist { entries }
    }
}

fn load_file(path: &Path, plan: &NumberPlan) -> Result<Vec<Entry>, BlocklistError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Blocklist::parse_file(&t, &path.display().to_string(), plan),
        // The file is created by the first REST addition.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(BlocklistError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// The blocklist of a configuration: parsed now (a bad entry is an error at start) and its
/// file watched for changes.
pub fn start(
    cfg: &BlocklistConfig,
    plan: &NumberPlan,
) -> Result<Arc<BlocklistHandle>, BlocklistError> {
    let config = Blocklist::from_entries(&cfg.entries, plan)?.entries;
    let seen = cfg.file.as_deref().and_then(fingerprint);
    let from_file = match &cfg.file {
        Some(p) => load_file(p, plan)?,
        None => Vec::new(),
    };
    let mut all = config.clone();
    all.extend(from_file);
    let current = Shared::new(Blocklist { entries: all });
    if let Some(path) = &cfg.file {
        let (plan2, config2) = (plan.clone(), config.clone());
        watch(
            &current,
            path.clone(),
            seen,
            Duration::from_secs(cfg.poll_seconds.max(1)),
            "blocklist",
            move |p| {
                let mut entries = config2.clone();
                entries.extend(load_file(p, &plan2)?);
                Ok::<_, BlocklistError>(Blocklist { entries })
            },
        )
        .map_err(|e| BlocklistError::Io {
            path: path.clone(),
            reason: format!("watcher thread: {e}"),
        })?;
    }
    Ok(Arc::new(BlocklistHandle {
        current,
        config,
        file: cfg.file.clone(),
        added: Mutex::new(Vec::new()),
        plan: plan.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NameSource;

    fn caller(number: Option<&str>, anonymous: bool) -> Caller {
        Caller {
            number: number.map(str::to_string),
            name: None,
            name_source: NameSource::None,
            anonymous,
        }
    }

    fn block(rule: &str) -> Verdict {
        Verdict::Block { rule: rule.into() }
    }

    #[test]
    fn exact_prefix_and_anonymous_rules() {
        let plan = NumberPlan::default();
        let list = Blocklist::from_entries(
            &["0301234".into(), "+49 900*".into(), "anonymous".into()],
            &plan,
        )
        .unwrap();
        assert_eq!(
            list.check(&caller(Some("+49301234"), false)),
            block("0301234")
        );
        assert_eq!(
            list.check(&caller(Some("+493012345"), false)),
            Verdict::Ring
        );
        assert_eq!(
            list.check(&caller(Some("+499001111"), false)),
            block("+49 900*")
        );
        assert_eq!(list.check(&caller(None, true)), block("anonymous"));
        assert_eq!(list.check(&caller(None, false)), Verdict::Ring);
        assert_eq!(list.check(&caller(Some("+44900"), false)), Verdict::Ring);
    }

    #[test]
    fn bad_entries_are_refused_with_their_line() {
        let plan = NumberPlan::default();
        assert_eq!(
            Blocklist::from_entries(&["anonymous".into(), "spam".into()], &plan),
            Err(BlocklistError::Entry {
                origin: "config".into(),
                line: 2,
                entry: "spam".into()
            })
        );
        let e = Blocklist::parse_file("# c\n\n0301\n*\n", "f", &plan).unwrap_err();
        assert!(matches!(e, BlocklistError::Entry { line: 4, .. }), "{e}");
    }

    #[test]
    fn additions_go_to_the_file_and_survive_a_reload() {
        let dir = std::env::temp_dir().join(format!("bl-add-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("block.txt");
        let _ = std::fs::remove_file(&path);
        let plan = NumberPlan::default();
        let cfg = BlocklistConfig {
            entries: vec!["anonymous".into()],
            file: Some(path.clone()),
            poll_seconds: 1,
        };
        let h = start(&cfg, &plan).unwrap();
        assert_eq!(h.check(&caller(Some("+49301"), false)), Verdict::Ring);
        h.add("0301").unwrap();
        assert_eq!(h.check(&caller(Some("+49301"), false)), block("0301"));
        assert!(h.add("not a number").is_err());
        assert!(h.add("0301\nanonymous").is_err());
        // A restart reads it back.
        let h2 = start(&cfg, &plan).unwrap();
        assert_eq!(h2.check(&caller(Some("+49301"), false)), block("0301"));
        assert_eq!(h2.get().entries().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_file_additions_stay_in_memory() {
        let h = start(&BlocklistConfig::default(), &NumberPlan::default()).unwrap();
        h.add("+4930*").unwrap();
        h.add("0401").unwrap();
        assert_eq!(h.check(&caller(Some("+49309"), false)), block("+4930*"));
        assert_eq!(h.check(&caller(Some("+49401"), false)), block("0401"));
        assert_eq!(h.get().entries()[0].origin, "rest");
    }
}
