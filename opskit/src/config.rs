//! `config example` and `config check`, the same for every binary.
//!
//! Each binary writes its commented example by hand (the "why" of a key is prose, not
//! something a struct can say) and keeps it honest with [`check_example`] in a unit test.
//! `config check` prints the effective configuration through [`render_redacted`], the one
//! place that decides what is a secret.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// `<binary> config …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConfigCmd {
    /// Print a commented configuration file with every key, its default and why.
    Example,
    /// Load a configuration file (FILE, else the one given with -c), validate it and print
    /// the effective values, secrets redacted. Exits non-zero with the reason if invalid.
    Check {
        /// The file to check.
        file: Option<PathBuf>,
    },
}

/// Why a configuration file cannot be used: the error type of every binary's
/// `Config::load`, so `config check` and startup name the file, the key and the reason
/// the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// Unparsable TOML or unknown key.
    #[error("{0}")]
    Toml(String),
    /// Bad value.
    #[error("{key}: {reason}")]
    Value {
        /// Which key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Parses a TOML document into `T`. Unknown keys are errors when `T` says
/// `deny_unknown_fields`, as every configuration here does: a typo must not silently fall
/// back to a default.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))
}

/// Reads a configuration file as text.
pub fn read(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// What replaces a secret in printed configuration.
pub const REDACTED: &str = "<redacted>";

/// Keys whose values are secrets wherever they appear in any binary's configuration, at any
/// depth (compared case-insensitively, also as the last `_` part of a key such as
/// `calls_token`): bearer tokens, passwords, and the subscriber key material K/Ki, OP and
/// OPc (TS 35.206).
pub const SECRET_KEYS: &[&str] = &["token", "password", "secret", "k", "ki", "op", "opc"];

/// The configuration could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Not representable as TOML (e.g. a path that is not UTF-8).
    #[error("cannot print the configuration as TOML: {0}")]
    Toml(String),
}

/// The configuration as TOML with every [`SECRET_KEYS`] value replaced by [`REDACTED`].
/// Keys are sorted; unset optional keys are absent.
pub fn render_redacted<T: Serialize>(cfg: &T) -> Result<String, RenderError> {
    let mut v = toml::Value::try_from(cfg).map_err(|e| RenderError::Toml(e.to_string()))?;
    redact(&mut v);
    toml::to_string(&v).map_err(|e| RenderError::Toml(e.to_string()))
}

/// Replaces the values of [`SECRET_KEYS`] in place, in nested tables and arrays too.
pub fn redact(v: &mut toml::Value) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                if is_secret(k) {
                    *v = toml::Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

fn is_secret(key: &str) -> bool {
    let last = key.rsplit('_').next().unwrap_or(key);
    SECRET_KEYS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(key) || s.eq_ignore_ascii_case(last))
}

/// A commented example that does not tell the truth about the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// As printed, the example does not parse into the configuration.
    #[error("the example does not parse: {0}")]
    Parse(String),
    /// With its commented-out `# key = value` lines enabled, it names unknown keys.
    #[error("the example's commented keys do not parse: {0}")]
    CommentedParse(String),
    /// Its values are not the defaults.
    #[error("the example's values differ from the defaults:\nexample:\n{example}\ndefaults:\n{defaults}")]
    NotDefaults {
        /// The example, parsed and printed.
        example: String,
        /// The defaults, printed.
        defaults: String,
    },
    /// Keys with a default that the example does not mention.
    #[error("keys missing from the example: {0:?}")]
    Missing(Vec<String>),
}

/// Checks a hand-written commented example against the configuration type: as printed it
/// parses to exactly `defaults`; with its `# key = value` lines uncommented it still parses
/// (so optional keys shown commented are real keys); and it mentions every key `defaults`
/// has. Meant for each binary's unit tests.
pub fn check_example<T>(example: &str, defaults: &T) -> Result<(), ExampleError>
where
    T: Serialize + DeserializeOwned,
{
    let to_value = |c: &T| toml::Value::try_from(c).map_err(|e| ExampleError::Parse(e.to_string()));
    let parsed: T = toml::from_str(example).map_err(|e| ExampleError::Parse(e.to_string()))?;
    let (got, want) = (to_value(&parsed)?, to_value(defaults)?);
    if got != want {
        let show = |v: &toml::Value| toml::to_string_pretty(v).unwrap_or_default();
        return Err(ExampleError::NotDefaults {
            example: show(&got),
            defaults: show(&want),
        });
    }
    let enabled = uncomment_keys(example);
    toml::from_str::<T>(&enabled).map_err(|e| ExampleError::CommentedParse(e.to_string()))?;
    let mentioned: toml::Value =
        toml::from_str(&enabled).map_err(|e| ExampleError::CommentedParse(e.to_string()))?;
    let (mut have, mut need) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&mentioned, "", &mut have);
    key_paths(&want, "", &mut need);
    let missing: Vec<String> = need.difference(&have).cloned().collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ExampleError::Missing(missing))
    }
}

/// Turns `# key = value` lines (a lower-case key right after the `#`) into `key = value`;
/// prose comments are left alone.
fn uncomment_keys(example: &str) -> String {
    let mut out = String::with_capacity(example.len());
    for line in example.lines() {
        let rest = line.trim_start().strip_prefix('#').map(str::trim_start);
        match rest {
            Some(r) if looks_like_assignment(r) => out.push_str(r),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn looks_like_assignment(s: &str) -> bool {
    let key_len = s
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        .count();
    key_len > 0
        && s.as_bytes()[0].is_ascii_lowercase()
        && s[key_len..].trim_start().starts_with('=')
}

/// Dotted paths of every leaf (arrays count as leaves).
fn key_paths(v: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let toml::Value::Table(t) = v {
        for (k, v) in t {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_table() {
                key_paths(v, &p, out);
            } else {
                out.insert(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        name: String,
        api: Api,
        subscriber: Vec<Sub>,
    }
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Api {
        listen: Option<String>,
        token: Option<String>,
        port: u16,
    }
    impl Default for Api {
        fn default() -> Self {
            Api {
                listen: None,
                token: None,
                port: 80,
            }
        }
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Sub {
        imsi: String,
        #[serde(rename = "K")]
        k: String,
        opc: String,
    }
    impl Default for Demo {
        fn default() -> Self {
            Demo {
                name: "lab".into(),
                api: Api::default(),
                subscriber: vec![],
            }
        }
    }

    #[test]
    fn secrets_are_redacted_at_any_depth_and_nothing_else() {
        let c = Demo {
            name: "token-free".into(),
            api: Api {
                listen: Some("127.0.0.1:1".into()),
                token: Some("hunter2".into()),
                port: 1,
            },
            subscriber: vec![Sub {
                imsi: "001010000000001".into(),
                k: "465B5CE8B199B49FAA5F0A2EE238A6BC".into(),
                opc: "CD63CB71954A9F4E48A5994E37A02BAF".into(),
            }],
        };
        let out = render_redacted(&c).unwrap();
        for secret in ["hunter2", "465B5CE8", "CD63CB71"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
        assert!(
            out.contains("token-free") && out.contains("001010000000001"),
            "{out}"
        );
        assert!(out.contains("listen = \"127.0.0.1:1\""), "{out}");
        // A secret named by its last part, and a key that only contains a secret's name.
        let mut v: toml::Value =
            toml::from_str("calls_token = \"s3\"\ntokens_seen = 4\nbook = \"k\"").unwrap();
        redact(&mut v);
        assert_eq!(v["calls_token"].as_str(), Some(REDACTED));
        assert_eq!(v["tokens_seen"].as_integer(), Some(4));
        assert_eq!(v["book"].as_str(), Some("k"));
    }

    const GOOD: &str = "# The lab's name. SQN = SEQ || IND is prose, not a key.\nname = \"lab\"\nsubscriber = []\n\
        [api]\n# listen = \"127.0.0.1:8080\"\n#token = \"change-me\"\nport = 80\n";

    #[test]
    fn a_truthful_example_passes() {
        check_example(GOOD, &Demo::default()).unwrap();
    }

    #[test]
    fn example_lies_are_caught() {
        let d = Demo::default();
        let e = check_example(&GOOD.replace("port = 80", "port = 81"), &d).unwrap_err();
        assert!(matches!(e, ExampleError::NotDefaults { .. }), "{e}");
        let e = check_example(&GOOD.replace("port = 80\n", ""), &d).unwrap_err();
        assert!(
            matches!(e, ExampleError::Missing(ref m) if m == &["api.port"]),
            "{e}"
        );
        let e = check_example(&GOOD.replace("#token", "# tokn"), &d).unwrap_err();
        assert!(matches!(e, ExampleError::CommentedParse(_)), "{e}");
        let e = check_example(&GOOD.replace("name =", "nme ="), &d).unwrap_err();
        assert!(matches!(e, ExampleError::Parse(_)), "{e}");
    }

    #[test]
    fn config_cmd_parses_with_and_without_a_file() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: ConfigCmd,
        }
        let c = Cli::try_parse_from(["x", "check", "a.toml"]).unwrap();
        assert!(
            matches!(c.cmd, ConfigCmd::Check { file: Some(ref f) } if f.to_str() == Some("a.toml"))
        );
        let c = Cli::try_parse_from(["x", "example"]).unwrap();
        assert!(matches!(c.cmd, ConfigCmd::Example));
    }
}
