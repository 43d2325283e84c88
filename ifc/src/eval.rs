//! Initial filter criteria evaluation (TS 29.228 Annex B.2.5–B.2.7, TS 23.218 §6).
//!
//! Semantics follow Kamailio's `ims_isc` (the interop reference), with the differences noted:
//! - iFCs are tried by ascending `Priority` (stable for equal priorities); an iFC without a
//!   `TriggerPoint` always matches.
//! - `ProfilePartIndicator` REGISTERED skips the iFC for an unregistered user and vice versa.
//! - CNF: AND over groups of the OR of the group's SPTs; DNF: OR over groups of the AND. An SPT
//!   listing several `Group`s belongs to each. `ConditionNegated` inverts one SPT's result.
//! - `RequestURI`: a POSIX-extended-style regular expression, case-insensitive, searched
//!   (not anchored) in the Request-URI.
//! - `Method`: case-insensitive equality; for REGISTER with `RegistrationType`s, the request's
//!   registration type must be one of them.
//! - `SIPHeader`: headers whose name equals `Header` (case-insensitive; Kamailio searches the
//!   name as an unanchored regex, which makes `To` match `History-Info` — we anchor it). With
//!   `Content` its case-insensitive regex is searched in the header value; without, presence of
//!   the header is the condition.
//! - `SessionCase`: equality with the case the caller is evaluating.
//! - `SessionDescription`: only for an `application/sdp` body; the regex `Line=Content`
//!   (case-insensitive) is searched in each SDP line (Kamailio searches the whole body, which
//!   lets `.` run across lines).
//!
//! An SPT whose regex does not compile never matches (as in Kamailio), before negation.

use crate::model::*;
use regex::{Regex, RegexBuilder};

/// What the evaluator needs to know about a SIP request; implemented by the P-CSCF/S-CSCF over
/// its own message type so this crate does not depend on the `sip` crate.
pub trait RequestView {
    /// The method (`INVITE`, `REGISTER`, ...).
    fn method(&self) -> &str;
    /// The Request-URI as it appears on the request line.
    fn request_uri(&self) -> &str;
    /// Every header as (name, value), with compact names expanded where the caller can.
    fn headers(&self) -> Vec<(&str, &str)>;
    /// The SDP body when Content-Type is `application/sdp`, else `None`.
    fn sdp(&self) -> Option<&str>;
}

/// The evaluation context that is not in the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalContext {
    /// The session case being served.
    pub session_case: SessionCase,
    /// Whether the served user is registered (selects by `ProfilePartIndicator`).
    pub registered: bool,
    /// For REGISTER: initial, re- or de-registration.
    pub registration_type: Option<RegistrationType>,
}

enum CompiledCond {
    Regex(Option<Regex>),
    Method(String),
    /// Name regex; content: None = presence only, Some(None) = a Content that does not compile.
    Header(Option<Regex>, Option<Option<Regex>>),
    SessionCase(SessionCase),
    Sdp(Option<Regex>),
}

struct CompiledSpt {
    negated: bool,
    groups: Vec<u32>,
    cond: CompiledCond,
    registration_types: Vec<RegistrationType>,
}

struct CompiledIfc {
    ifc: InitialFilterCriteria,
    cnf: bool,
    spts: Option<Vec<CompiledSpt>>,
}

/// A set of iFCs, sorted by priority with their regular expressions compiled once.
pub struct IfcMatcher {
    ifcs: Vec<CompiledIfc>,
}

fn rx(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .ok()
}

impl IfcMatcher {
    /// Sorts `ifcs` by ascending priority (stable) and compiles their conditions.
    pub fn new(ifcs: &[InitialFilterCriteria]) -> Self {
        let mut sorted: Vec<InitialFilterCriteria> = ifcs.to_vec();
        sorted.sort_by_key(|i| i.priority);
        let ifcs = sorted
            .into_iter()
            .map(|ifc| {
                let (cnf, spts) = match &ifc.trigger_point {
                    None => (true, None),
                    Some(tp) => (
                        tp.condition_type_cnf,
                        Some(tp.spts.iter().map(compile_spt).collect()),
                    ),
                };
                CompiledIfc { ifc, cnf, spts }
            })
            .collect();
        Self { ifcs }
    }

    /// Number of iFCs.
    pub fn len(&self) -> usize {
        self.ifcs.len()
    }

    /// Whether there are no iFCs.
    pub fn is_empty(&self) -> bool {
        self.ifcs.is_empty()
    }

    /// The iFC at a position in priority order.
    pub fn get(&self, index: usize) -> Option<&InitialFilterCriteria> {
        self.ifcs.get(index).map(|c| &c.ifc)
    }

    /// The first iFC at or after `start` (an index in priority order) that matches; the S-CSCF
    /// continues with `index + 1` when the request comes back from the AS.
    pub fn next_match<R: RequestView + ?Sized>(
        &self,
        req: &R,
        ctx: &EvalContext,
        start: usize,
    ) -> Option<(usize, &InitialFilterCriteria)> {
        self.ifcs
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, c)| c.matches(req, ctx))
            .map(|(i, c)| (i, &c.ifc))
    }

    /// Every matching iFC in priority order.
    pub fn all_matches<R: RequestView + ?Sized>(
        &self,
        req: &R,
        ctx: &EvalContext,
    ) -> Vec<(usize, &InitialFilterCriteria)> {
        self.ifcs
            .iter()
            .enumerate()
            .filter(|(_, c)| c.matches(req, ctx))
            .map(|(i, c)| (i, &c.ifc))
            .collect()
    }
}

fn compile_spt(spt: &Spt) -> CompiledSpt {
    let cond = match &spt.condition {
        SptCondition::RequestUri(r) => CompiledCond::Regex(rx(r)),
        SptCondition::Method(m) => CompiledCond::Method(m.trim().to_string()),
        SptCondition::SipHeader { header, content } => CompiledCond::Header(
            rx(&format!("^(?:{})$", header.trim())),
            content.as_deref().map(rx),
        ),
        SptCondition::SessionCase(sc) => CompiledCond::SessionCase(*sc),
        SptCondition::SessionDescription { line, content } => CompiledCond::Sdp(rx(&format!(
            "(?:{})=(?:{})",
            line.trim(),
            content.as_deref().unwrap_or("")
        ))),
    };
    CompiledSpt {
        negated: spt.condition_negated,
        groups: spt.groups.clone(),
        cond,
        registration_types: spt.registration_types.clone(),
    }
}

impl CompiledIfc {
    fn matches<R: RequestView + ?Sized>(&self, req: &R, ctx: &EvalContext) -> bool {
        match self.ifc.profile_part_indicator {
            Some(ProfilePartIndicator::Registered) if !ctx.registered => return false,
            Some(ProfilePartIndicator::Unregistered) if ctx.registered => return false,
            _ => {}
        }
        let Some(spts) = &self.spts else {
            return true;
        };
        let mut groups: Vec<u32> = spts.iter().flat_map(|s| s.groups.iter().copied()).collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.is_empty() {
            // A TriggerPoint without SPTs: the empty conjunction is true, the empty
            // disjunction false.
            return self.cnf;
        }
        // Evaluate each SPT once, lazily, since a regex search can be costly.
        let mut cache: Vec<Option<bool>> = vec![None; spts.len()];
        let mut eval =
            |i: usize| -> bool { *cache[i].get_or_insert_with(|| spts[i].eval(req, ctx)) };
        let members = |g: u32| {
            spts.iter()
                .enumerate()
                .filter(move |(_, s)| s.groups.contains(&g))
                .map(|(i, _)| i)
        };
        if self.cnf {
            groups.iter().all(|&g| members(g).any(&mut eval))
        } else {
            groups.iter().any(|&g| members(g).all(&mut eval))
        }
    }
}

impl CompiledSpt {
    fn eval<R: RequestView + ?Sized>(&self, req: &R, ctx: &EvalContext) -> bool {
        let r = match &self.cond {
            CompiledCond::Regex(re) => re.as_ref().is_some_and(|re| re.is_match(req.request_uri())),
            CompiledCond::Method(m) => {
                req.method().eq_ignore_ascii_case(m)
                    && (!m.eq_ignore_ascii_case("REGISTER")
                        || self.registration_types.is_empty()
                        || ctx
                            .registration_type
                            .is_some_and(|t| self.registration_types.contains(&t)))
            }
            CompiledCond::Header(name, content) => match name {
                None => false,
                Some(name) => req.headers().iter().any(|(n, v)| {
                    name.is_match(n.trim())
                        && content
                            .as_ref()
                            .is_none_or(|c| c.as_ref().is_some_and(|c| c.is_match(v.trim())))
                }),
            },
            CompiledCond::SessionCase(sc) => *sc == ctx.session_case,
            CompiledCond::Sdp(re) => match (re, req.sdp()) {
                (Some(re), Some(body)) => {
                    body.lines().any(|l| re.is_match(l.trim_end_matches('\r')))
                }
                _ => false,
            },
        };
        r != self.negated
    }
}
