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
//! - `SessionDescription`: only for an `application/sdp` body; an SDP line matches when its
//!   type (before the first `=`) equals `Line` (as an anchored case-insensitive regex) and,
//!   with `Content`, that regex is searched in the line's value. Kamailio searches
//!   `Line=Content` in the whole body, which lets `.` run across lines and lets `Line` `y`
//!   match the `y=2` inside `mode-change-capability=2`; Annex B.2.7 names the line type.
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
    /// Line-type regex (anchored) and content regex as for `Header`.
    Sdp(Option<Regex>, Option<Option<Regex>>),
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
        SptCondition::SessionDescription { line, content } => CompiledCond::Sdp(
            rx(&format!("^(?:{})$", line.trim())),
            content.as_deref().map(rx),
        ),
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
            CompiledCond::Sdp(line, content) => match (line, req.sdp()) {
                (Some(line), Some(body)) => body.lines().any(|l| {
                    let l = l.trim_end_matches('\r');
                    let Some((kind, value)) = l.split_once('=') else {
                        return false;
                    };
                    line.is_match(kind.trim())
                        && content
                            .as_ref()
                            .is_none_or(|c| c.as_ref().is_some_and(|c| c.is_match(value)))
                }),
                _ => false,
            },
        };
        r != self.negated
    }
}

#[cfg(test)]
mod tests {
    //! The iFC semantics table (TS 29.228 Annex B.2.5–B.2.7): one row per case, each with a
    //! request, a context, a trigger point and the expected result.
    use super::*;

    struct Req {
        method: &'static str,
        uri: &'static str,
        headers: Vec<(&'static str, &'static str)>,
        sdp: Option<&'static str>,
    }

    impl RequestView for Req {
        fn method(&self) -> &str {
            self.method
        }
        fn request_uri(&self) -> &str {
            self.uri
        }
        fn headers(&self) -> Vec<(&str, &str)> {
            self.headers.clone()
        }
        fn sdp(&self) -> Option<&str> {
            self.sdp
        }
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 97\r\na=rtpmap:97 AMR/8000\r\na=fmtp:97 mode-change-capability=2\r\n";

    fn invite() -> Req {
        Req {
            method: "INVITE",
            uri: "sip:bob@ims.test",
            headers: vec![
                ("From", "<sip:alice@ims.test>;tag=1"),
                ("To", "<sip:bob@ims.test>"),
                ("History-Info", "<sip:x@ims.test>;index=1"),
                ("Content-Type", "application/sdp"),
            ],
            sdp: Some(SDP),
        }
    }

    fn orig() -> EvalContext {
        EvalContext {
            session_case: SessionCase::Originating,
            registered: true,
            registration_type: None,
        }
    }

    fn spt(group: u32, negated: bool, condition: SptCondition) -> Spt {
        Spt {
            condition_negated: negated,
            groups: vec![group],
            condition,
            registration_types: vec![],
        }
    }

    fn method(m: &str) -> SptCondition {
        SptCondition::Method(m.into())
    }

    fn ifc(priority: i32, cnf: bool, spts: Vec<Spt>) -> InitialFilterCriteria {
        InitialFilterCriteria {
            priority,
            trigger_point: Some(TriggerPoint {
                condition_type_cnf: cnf,
                spts,
            }),
            application_server: ApplicationServer {
                server_name: format!("sip:as{priority}@as.test"),
                ..Default::default()
            },
            profile_part_indicator: None,
        }
    }

    fn matches(i: InitialFilterCriteria, req: &Req, ctx: &EvalContext) -> bool {
        IfcMatcher::new(&[i]).next_match(req, ctx, 0).is_some()
    }

    #[test]
    fn semantics_table() {
        use SptCondition::*;
        let hdr = |h: &str, c: Option<&str>| SipHeader {
            header: h.into(),
            content: c.map(Into::into),
        };
        let sdp = |l: &str, c: Option<&str>| SessionDescription {
            line: l.into(),
            content: c.map(Into::into),
        };
        let term = EvalContext {
            session_case: super::SessionCase::TerminatingRegistered,
            ..orig()
        };
        // (name, trigger, context, expected)
        let rows: Vec<(&str, Vec<Spt>, bool, EvalContext, bool)> = vec![
            (
                "method equal",
                vec![spt(0, false, method("INVITE"))],
                true,
                orig(),
                true,
            ),
            (
                "method case-insensitive",
                vec![spt(0, false, method("invite"))],
                true,
                orig(),
                true,
            ),
            (
                "method other",
                vec![spt(0, false, method("MESSAGE"))],
                true,
                orig(),
                false,
            ),
            (
                "method negated",
                vec![spt(0, true, method("MESSAGE"))],
                true,
                orig(),
                true,
            ),
            (
                "request-uri regex",
                vec![spt(0, false, RequestUri("bob@".into()))],
                true,
                orig(),
                true,
            ),
            (
                "request-uri no match",
                vec![spt(0, false, RequestUri("^tel:".into()))],
                true,
                orig(),
                false,
            ),
            (
                "request-uri bad regex never matches",
                vec![spt(0, false, RequestUri("(".into()))],
                true,
                orig(),
                false,
            ),
            (
                "header present",
                vec![spt(0, false, hdr("From", None))],
                true,
                orig(),
                true,
            ),
            (
                "header absent",
                vec![spt(0, false, hdr("Accept-Contact", None))],
                true,
                orig(),
                false,
            ),
            (
                "header name anchored",
                vec![spt(0, false, hdr("Info", None))],
                true,
                orig(),
                false,
            ),
            (
                "header content",
                vec![spt(0, false, hdr("From", Some("alice")))],
                true,
                orig(),
                true,
            ),
            (
                "header content other",
                vec![spt(0, false, hdr("From", Some("carol")))],
                true,
                orig(),
                false,
            ),
            (
                "header content negated",
                vec![spt(0, true, hdr("From", Some("carol")))],
                true,
                orig(),
                true,
            ),
            (
                "session case orig",
                vec![spt(0, false, SessionCase(super::SessionCase::Originating))],
                true,
                orig(),
                true,
            ),
            (
                "session case term",
                vec![spt(0, false, SessionCase(super::SessionCase::Originating))],
                true,
                term,
                false,
            ),
            (
                "sdp line",
                vec![spt(0, false, sdp("m", None))],
                true,
                orig(),
                true,
            ),
            (
                "sdp content",
                vec![spt(0, false, sdp("m", Some("audio")))],
                true,
                orig(),
                true,
            ),
            (
                "sdp content other",
                vec![spt(0, false, sdp("m", Some("video")))],
                true,
                orig(),
                false,
            ),
            (
                "sdp line type is the line's type",
                vec![spt(0, false, sdp("y", Some("2")))],
                true,
                orig(),
                false,
            ),
            (
                "sdp content of a line",
                vec![spt(0, false, sdp("a", Some("^fmtp:97 mode")))],
                true,
                orig(),
                true,
            ),
            // CNF: (INVITE or MESSAGE) and (orig): true; DNF of the same groups: (INVITE and MESSAGE) or orig.
            (
                "cnf and of ors",
                vec![
                    spt(1, false, method("INVITE")),
                    spt(1, false, method("MESSAGE")),
                    spt(2, false, SessionCase(super::SessionCase::Originating)),
                ],
                true,
                orig(),
                true,
            ),
            (
                "cnf one group false",
                vec![
                    spt(1, false, method("INVITE")),
                    spt(1, false, method("MESSAGE")),
                    spt(2, false, SessionCase(super::SessionCase::Originating)),
                ],
                true,
                term,
                false,
            ),
            (
                "dnf or of ands",
                vec![
                    spt(1, false, method("INVITE")),
                    spt(1, false, method("MESSAGE")),
                    spt(2, false, SessionCase(super::SessionCase::Originating)),
                ],
                false,
                term,
                false,
            ),
            (
                "dnf one group true",
                vec![
                    spt(1, false, method("INVITE")),
                    spt(1, false, method("MESSAGE")),
                    spt(2, false, SessionCase(super::SessionCase::Originating)),
                ],
                false,
                orig(),
                true,
            ),
            (
                "dnf and within group",
                vec![
                    spt(1, false, method("INVITE")),
                    spt(1, false, hdr("To", Some("bob"))),
                ],
                false,
                orig(),
                true,
            ),
            (
                "spt in two groups",
                vec![
                    Spt {
                        groups: vec![1, 2],
                        ..spt(0, false, method("INVITE"))
                    },
                    spt(2, false, method("MESSAGE")),
                ],
                true,
                orig(),
                true,
            ),
        ];
        for (name, spts, cnf, ctx, want) in rows {
            assert_eq!(matches(ifc(0, cnf, spts), &invite(), &ctx), want, "{name}");
        }
    }

    #[test]
    fn no_trigger_point_always_matches_and_empty_trigger_follows_its_form() {
        let mut i = ifc(0, true, vec![]);
        assert!(matches(i.clone(), &invite(), &orig()), "empty CNF: true");
        i.trigger_point = Some(TriggerPoint::default());
        assert!(!matches(i.clone(), &invite(), &orig()), "empty DNF: false");
        i.trigger_point = None;
        assert!(matches(i, &invite(), &orig()));
    }

    #[test]
    fn register_with_registration_types() {
        let req = Req {
            method: "REGISTER",
            uri: "sip:ims.test",
            headers: vec![],
            sdp: None,
        };
        let only_initial = ifc(
            0,
            true,
            vec![Spt {
                registration_types: vec![RegistrationType::Initial, RegistrationType::De],
                ..spt(0, false, method("REGISTER"))
            }],
        );
        let ctx = |t| EvalContext {
            registration_type: Some(t),
            ..orig()
        };
        assert!(matches(
            only_initial.clone(),
            &req,
            &ctx(RegistrationType::Initial)
        ));
        assert!(!matches(
            only_initial.clone(),
            &req,
            &ctx(RegistrationType::Re)
        ));
        assert!(matches(
            only_initial.clone(),
            &req,
            &ctx(RegistrationType::De)
        ));
        assert!(
            !matches(only_initial, &req, &orig()),
            "no type known: no match"
        );
        let any = ifc(0, true, vec![spt(0, false, method("REGISTER"))]);
        assert!(matches(any, &req, &ctx(RegistrationType::Re)));
    }

    #[test]
    fn priority_order_and_continuation() {
        let all = |p| ifc(p, true, vec![spt(0, false, method("INVITE"))]);
        let never = ifc(5, true, vec![spt(0, false, method("BYE"))]);
        let m = IfcMatcher::new(&[all(30), never, all(10), all(20)]);
        let order: Vec<String> = m
            .all_matches(&invite(), &orig())
            .into_iter()
            .map(|(_, i)| i.application_server.server_name.clone())
            .collect();
        assert_eq!(
            order,
            ["sip:as10@as.test", "sip:as20@as.test", "sip:as30@as.test"]
        );
        let (first, _) = m.next_match(&invite(), &orig(), 0).unwrap();
        assert_eq!(first, 1, "index 0 is priority 5, which does not match");
        let (second, i) = m.next_match(&invite(), &orig(), first + 1).unwrap();
        assert_eq!((second, i.priority), (2, 20));
        assert!(m.next_match(&invite(), &orig(), 4).is_none());
    }

    #[test]
    fn profile_part_indicator() {
        let mut reg = ifc(0, true, vec![spt(0, false, method("INVITE"))]);
        reg.profile_part_indicator = Some(ProfilePartIndicator::Registered);
        let mut unreg = reg.clone();
        unreg.profile_part_indicator = Some(ProfilePartIndicator::Unregistered);
        let registered = orig();
        let unregistered = EvalContext {
            registered: false,
            session_case: SessionCase::TerminatingUnregistered,
            ..orig()
        };
        assert!(matches(reg.clone(), &invite(), &registered));
        assert!(!matches(reg, &invite(), &unregistered));
        assert!(!matches(unreg.clone(), &invite(), &registered));
        assert!(matches(unreg, &invite(), &unregistered));
    }

    #[test]
    fn tel_and_sip_forms_of_one_implicit_set_share_the_profile() {
        let id = |u: &str| PublicIdentity {
            identity: u.into(),
            ..Default::default()
        };
        let sub = ImsSubscription {
            private_id: "a@ims.test".into(),
            service_profiles: vec![
                ServiceProfile {
                    public_identities: vec![id("sip:other@ims.test")],
                    ..Default::default()
                },
                ServiceProfile {
                    public_identities: vec![id("sip:alice@ims.test"), id("tel:+4930123")],
                    initial_filter_criteria: vec![ifc(
                        0,
                        true,
                        vec![spt(0, false, method("INVITE"))],
                    )],
                    ..Default::default()
                },
            ],
        };
        for form in [
            "sip:alice@IMS.test",
            "<sip:alice@ims.test:5060;transport=tcp>",
            "tel:+49-30-123",
            "tel:+4930123;phone-context=ims.test",
        ] {
            let sp = sub.profile_of(form).unwrap_or_else(|| panic!("{form}"));
            assert_eq!(sp.initial_filter_criteria.len(), 1, "{form}");
        }
        assert!(
            sub.profile_of("sip:Alice@ims.test").is_none(),
            "user part is case-sensitive"
        );
        assert!(sub.profile_of("tel:+4930124").is_none());
        // A tel: Request-URI and a sip: one with user=phone trigger the same RequestURI SPT
        // only when the pattern allows both forms: the regex sees the URI as written.
        let tel = Req {
            uri: "tel:+4930123",
            ..invite()
        };
        let both = ifc(
            0,
            true,
            vec![spt(
                0,
                false,
                SptCondition::RequestUri(r"^(tel:|sip:)\+4930123".into()),
            )],
        );
        assert!(matches(both.clone(), &tel, &orig()));
        let sip_form = Req {
            uri: "sip:+4930123@ims.test;user=phone",
            ..invite()
        };
        assert!(matches(both, &sip_form, &orig()));
    }
}
