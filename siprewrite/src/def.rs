//! The rules file as written (serde) and its validation into compiled [`Rule`]s.

use crate::{Direction, HeaderMatch, Kind, RemoveHeader, ReplaceHeader, Rule, RuleError, RuleSet};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use std::ops::RangeInclusive;
use std::sync::Arc;

/// Compiled-regex size limit: a rules file is trusted-ish operator input, but a pattern
/// that compiles to megabytes is a mistake, and it would slow every message down.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusDef {
    Code(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderMatchDef {
    name: String,
    value: Option<String>,
    #[serde(default)]
    absent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveHeaderDef {
    name: String,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceHeaderDef {
    name: String,
    pattern: String,
    with: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddHeaderDef {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapStatusDef {
    code: i64,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindDef {
    Request,
    Response,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    name: String,
    #[serde(default)]
    kind: Option<KindDef>,
    #[serde(default)]
    method: OneOrMany<String>,
    #[serde(default)]
    status: OneOrMany<StatusDef>,
    #[serde(default)]
    headers: Vec<HeaderMatchDef>,
    #[serde(default)]
    remove_header: Vec<RemoveHeaderDef>,
    #[serde(default)]
    replace_header: Vec<ReplaceHeaderDef>,
    #[serde(default)]
    add_header: Vec<AddHeaderDef>,
    #[serde(default)]
    remove_codecs: Vec<String>,
    #[serde(default)]
    remove_sdp_attributes: Vec<String>,
    #[serde(default)]
    map_status: Option<MapStatusDef>,
    #[serde(default)]
    dscp: Option<i64>,
}

pub(crate) fn load(text: &str) -> Result<RuleSet, RuleError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| RuleError::Toml(e.to_string()))?;
    let mut set = RuleSet::default();
    for (key, value) in table {
        let dir = Direction::from_key(&key).ok_or(RuleError::UnknownDirection(key))?;
        let toml::Value::Array(items) = value else {
            return Err(RuleError::NotAList(dir.key()));
        };
        let rules = &mut set.dirs[dir.index()];
        for (i, item) in items.into_iter().enumerate() {
            let named = item
                .get("name")
                .and_then(toml::Value::as_str)
                .map(str::to_owned);
            let err = |rule: &str, what: String| RuleError::Rule {
                direction: dir.key(),
                rule: rule.to_owned(),
                what,
            };
            let Some(name) = named.filter(|n| !n.trim().is_empty()) else {
                return Err(err(&format!("#{}", i + 1), "has no name".into()));
            };
            if !item.is_table() {
                return Err(err(&name, "is not a table".into()));
            }
            if rules.iter().any(|r: &Rule| *r.name == *name) {
                return Err(err(
                    &name,
                    "the name is used twice in this direction".into(),
                ));
            }
            let def: RuleDef = item
                .try_into()
                .map_err(|e: toml::de::Error| err(&name, e.message().trim().to_owned()))?;
            rules.push(compile(def).map_err(|what| err(&name, what))?);
        }
    }
    Ok(set)
}

fn compile(d: RuleDef) -> Result<Rule, String> {
    let methods = d
        .method
        .into_vec()
        .into_iter()
        .map(|m| {
            if is_token(&m) {
                sip::Method::parse(&m).map_err(|e| format!("method {m:?}: {e}"))
            } else {
                Err(format!("method {m:?} is not a SIP method token"))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let status = d
        .status
        .into_vec()
        .into_iter()
        .map(status_range)
        .collect::<Result<Vec<_>, _>>()?;
    let kind = d.kind.map(|k| match k {
        KindDef::Request => Kind::Request,
        KindDef::Response => Kind::Response,
    });
    if kind == Some(Kind::Request) && !status.is_empty() {
        return Err("kind = \"request\" with a status: it can never match".into());
    }
    let headers = d
        .headers
        .into_iter()
        .map(|h| {
            header_name(&h.name)?;
            Ok(HeaderMatch {
                value: h.value.as_deref().map(regex).transpose()?,
                name: h.name,
                absent: h.absent,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let remove_header = d
        .remove_header
        .into_iter()
        .map(|h| {
            edited_header(&h.name)?;
            Ok(RemoveHeader {
                value: h.value.as_deref().map(regex).transpose()?,
                name: h.name,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let replace_header = d
        .replace_header
        .into_iter()
        .map(|h| {
            edited_header(&h.name)?;
            let pattern = regex(&h.pattern)?;
            header_value(&h.with)?;
            check_replacement(&pattern, &h.with)?;
            Ok(ReplaceHeader {
                name: h.name,
                pattern,
                with: h.with,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let add_header = d
        .add_header
        .into_iter()
        .map(|h| {
            edited_header(&h.name)?;
            header_value(&h.value)?;
            Ok((h.name, h.value))
        })
        .collect::<Result<Vec<_>, String>>()?;
    for c in &d.remove_codecs {
        if c.is_empty() || c.contains(['/', ' ']) || c.chars().any(char::is_control) {
            return Err(format!(
                "remove_codecs: {c:?} is not an encoding name (write \"AMR-WB\", not \"AMR-WB/16000\")"
            ));
        }
    }
    for a in &d.remove_sdp_attributes {
        // Written with or without the `a=` people copy from a trace.
        if !is_token(a.strip_prefix("a=").unwrap_or(a)) {
            return Err(format!(
                "remove_sdp_attributes: {a:?} is not an attribute name"
            ));
        }
    }
    let remove_sdp_attributes = d
        .remove_sdp_attributes
        .into_iter()
        .map(|a| a.strip_prefix("a=").map(str::to_owned).unwrap_or(a))
        .collect();
    let map_status = d.map_status.map(|m| map_target(m, &status)).transpose()?;
    let dscp = d
        .dscp
        .map(|v| {
            u8::try_from(v)
                .ok()
                .filter(|v| *v <= 63)
                .ok_or_else(|| format!("dscp {v} is not 0-63 (a 6-bit DSCP, RFC 2474)"))
        })
        .transpose()?;
    let rule = Rule {
        name: Arc::from(d.name),
        kind,
        methods,
        status,
        headers,
        remove_header,
        replace_header,
        add_header,
        remove_codecs: d.remove_codecs,
        remove_sdp_attributes,
        map_status,
        dscp,
    };
    if rule.remove_header.is_empty()
        && rule.replace_header.is_empty()
        && rule.add_header.is_empty()
        && rule.remove_codecs.is_empty()
        && rule.remove_sdp_attributes.is_empty()
        && rule.map_status.is_none()
        && rule.dscp.is_none()
    {
        return Err("has no action (add_header, remove_header, replace_header, remove_codecs, remove_sdp_attributes, map_status, dscp)".into());
    }
    Ok(rule)
}

fn regex(p: &str) -> Result<Regex, String> {
    RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            // The regex crate draws a caret under the pattern over several lines; a log
            // line and a startup error want the one line that says what is wrong.
            let text = e.to_string();
            let what = text.lines().last().unwrap_or_default();
            format!("bad regex {p:?}: {}", what.trim_start_matches("error: "))
        })
}

/// `$n`, `${n}` and `${name}` in a replacement must name a group of the pattern: the regex
/// crate would silently put nothing there.
fn check_replacement(re: &Regex, with: &str) -> Result<(), String> {
    let b = with.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        i += 1;
        let (name, next) = match b.get(i) {
            Some(b'$') => {
                i += 1;
                continue;
            }
            Some(b'{') => match with[i + 1..].find('}') {
                Some(end) => (&with[i + 1..i + 1 + end], i + 2 + end),
                None => return Err(format!("replacement {with:?}: unclosed ${{")),
            },
            Some(_) => {
                let len = with[i..]
                    .bytes()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    .count();
                (&with[i..i + len], i + len)
            }
            None => ("", i),
        };
        if name.is_empty() {
            return Err(format!(
                "replacement {with:?}: a lone $ (write $$ for a dollar sign)"
            ));
        }
        let known = match name.parse::<usize>() {
            Ok(n) => n < re.captures_len(),
            Err(_) => re.capture_names().flatten().any(|g| g == name),
        };
        if !known {
            return Err(format!(
                "replacement {with:?}: the pattern has no group {name:?}"
            ));
        }
        i = next;
    }
    Ok(())
}

fn status_range(s: StatusDef) -> Result<RangeInclusive<u16>, String> {
    let code = |v: i64| {
        u16::try_from(v)
            .ok()
            .filter(|c| (100..=699).contains(c))
            .ok_or_else(|| format!("status {v} is not a code 100-699"))
    };
    match s {
        StatusDef::Code(c) => code(c).map(|c| c..=c),
        StatusDef::Text(t) => {
            let t = t.trim();
            let b = t.as_bytes();
            if b.len() == 3 && b[1..].eq_ignore_ascii_case(b"xx") && (b'1'..=b'6').contains(&b[0]) {
                let lo = u16::from(b[0] - b'0') * 100;
                return Ok(lo..=lo + 99);
            }
            let num = |p: &str| {
                p.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("status {t:?}: expected a code, \"4xx\" or \"400-499\""))
                    .and_then(code)
            };
            match t.split_once('-') {
                Some((a, z)) => {
                    let (a, z) = (num(a)?, num(z)?);
                    if a > z {
                        return Err(format!("status {t:?}: the range is empty"));
                    }
                    Ok(a..=z)
                }
                None => num(t).map(|c| c..=c),
            }
        }
    }
}

/// A mapping keeps the response class a transaction depends on: a provisional answer
/// stays provisional and a final one final (RFC 3261 §17: only finals end a
/// transaction).
fn map_target(m: MapStatusDef, status: &[RangeInclusive<u16>]) -> Result<(u16, String), String> {
    let code = u16::try_from(m.code)
        .ok()
        .filter(|c| (100..=699).contains(c))
        .ok_or_else(|| format!("map_status: code {} is not 100-699", m.code))?;
    if status.is_empty() {
        return Err("map_status needs a status to match (which responses to map)".into());
    }
    let provisional = |r: &RangeInclusive<u16>| *r.end() < 200;
    let fin = |r: &RangeInclusive<u16>| *r.start() >= 200;
    let ok = if code < 200 {
        status.iter().all(provisional)
    } else {
        status.iter().all(fin)
    };
    if !ok {
        return Err(format!(
            "map_status: {code} and the matched status {status:?} are not all provisional or all final"
        ));
    }
    if m.reason.chars().any(char::is_control) {
        return Err("map_status: the reason has control characters".into());
    }
    Ok((code, m.reason))
}

/// RFC 3261 §25.1 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c))
}

/// A header a rule may edit: a token, and not Content-Length, which the engine keeps
/// equal to the body (a stream peer would lose the framing otherwise).
fn edited_header(n: &str) -> Result<(), String> {
    header_name(n)?;
    if sip::names_match(n, "Content-Length") {
        return Err(format!(
            "{n:?}: Content-Length is set by the engine after a body change"
        ));
    }
    Ok(())
}

fn header_name(n: &str) -> Result<(), String> {
    if is_token(n) {
        Ok(())
    } else {
        Err(format!("{n:?} is not a header name"))
    }
}

fn header_value(v: &str) -> Result<(), String> {
    if v.chars().any(|c| c.is_control() && c != '\t') {
        Err(format!(
            "header value {v:?} has control characters (CR, LF…)"
        ))
    } else {
        Ok(())
    }
}
