use ifc::*;

struct Req {
    method: &'static str,
    ruri: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    sdp: Option<&'static str>,
}

impl RequestView for Req {
    fn method(&self) -> &str {
        self.method
    }
    fn request_uri(&self) -> &str {
        self.ruri
    }
    fn headers(&self) -> Vec<(&str, &str)> {
        self.headers.clone()
    }
    fn sdp(&self) -> Option<&str> {
        self.sdp
    }
}

fn invite() -> Req {
    Req {
        method: "INVITE",
        ruri: "tel:+491701234567",
        headers: vec![
            ("From", "<sip:alice@ims.example>;tag=1"),
            ("History-Info", "<sip:x>"),
            ("P-Asserted-Identity", "<sip:alice@ims.example>"),
        ],
        sdp: Some("v=0\r\nm=audio 5000 RTP/AVP 96\r\na=rtpmap:96 AMR/8000\r\n"),
    }
}

fn spt(groups: &[u32], negated: bool, condition: SptCondition) -> Spt {
    Spt {
        condition_negated: negated,
        groups: groups.to_vec(),
        condition,
        registration_types: vec![],
    }
}

fn ifc(priority: i32, name: &str, tp: Option<TriggerPoint>) -> InitialFilterCriteria {
    InitialFilterCriteria {
        priority,
        trigger_point: tp,
        application_server: ApplicationServer {
            server_name: name.into(),
            ..Default::default()
        },
        profile_part_indicator: None,
    }
}

fn orig() -> EvalContext {
    EvalContext {
        session_case: SessionCase::Originating,
        registered: true,
        registration_type: None,
    }
}

fn matches(tp: TriggerPoint, req: &Req, ctx: &EvalContext) -> bool {
    IfcMatcher::new(&[ifc(0, "sip:as", Some(tp))])
        .next_match(req, ctx, 0)
        .is_some()
}

#[test]
fn no_trigger_point_always_matches_and_priority_orders() {
    let m = IfcMatcher::new(&[
        ifc(5, "sip:b", None),
        ifc(1, "sip:a", None),
        ifc(5, "sip:c", None),
    ]);
    let r = invite();
    let (i, f) = m.next_match(&r, &orig(), 0).unwrap();
    assert_eq!((i, f.application_server.server_name.as_str()), (0, "sip:a"));
    let (i, f) = m.next_match(&r, &orig(), 1).unwrap();
    assert_eq!((i, f.application_server.server_name.as_str()), (1, "sip:b"));
    let (i, f) = m.next_match(&r, &orig(), 2).unwrap();
    assert_eq!((i, f.application_server.server_name.as_str()), (2, "sip:c"));
    assert!(m.next_match(&r, &orig(), 3).is_none());
}

#[test]
fn cnf_and_dnf() {
    let inv = SptCondition::Method("invite".into());
    let msg = SptCondition::Method("MESSAGE".into());
    let orig_case = SptCondition::SessionCase(SessionCase::Originating);
    let term = SptCondition::SessionCase(SessionCase::TerminatingRegistered);
    let r = invite();
    // CNF: (INVITE or MESSAGE) and (orig or term)
    let tp = TriggerPoint {
        condition_type_cnf: true,
        spts: vec![
            spt(&[0], false, inv.clone()),
            spt(&[0], false, msg.clone()),
            spt(&[1], false, orig_case.clone()),
            spt(&[1], false, term.clone()),
        ],
    };
    assert!(matches(tp, &r, &orig()));
    // CNF: (MESSAGE) and (orig) -> false
    let tp = TriggerPoint {
        condition_type_cnf: true,
        spts: vec![
            spt(&[0], false, msg.clone()),
            spt(&[1], false, orig_case.clone()),
        ],
    };
    assert!(!matches(tp, &r, &orig()));
    // DNF: (MESSAGE and orig) or (INVITE and orig) -> true
    let tp = TriggerPoint {
        condition_type_cnf: false,
        spts: vec![
            spt(&[0], false, msg.clone()),
            spt(&[0, 1], false, orig_case.clone()),
            spt(&[1], false, inv.clone()),
        ],
    };
    assert!(matches(tp, &r, &orig()));
    // DNF: (INVITE and term) -> false
    let tp = TriggerPoint {
        condition_type_cnf: false,
        spts: vec![
            spt(&[0], false, inv.clone()),
            spt(&[0], false, term.clone()),
        ],
    };
    assert!(!matches(tp, &r, &orig()));
    // negation: not MESSAGE -> true
    let tp = TriggerPoint {
        condition_type_cnf: true,
        spts: vec![spt(&[0], true, msg)],
    };
    assert!(matches(tp, &r, &orig()));
    let tp = TriggerPoint {
        condition_type_cnf: true,
        spts: vec![spt(&[0], true, inv)],
    };
    assert!(!matches(tp, &r, &orig()));
}

#[test]
fn spt_kinds() {
    let r = invite();
    let one = |c: SptCondition| TriggerPoint {
        condition_type_cnf: true,
        spts: vec![spt(&[0], false, c)],
    };
    assert!(matches(
        one(SptCondition::RequestUri("^TEL:\\+49".into())),
        &r,
        &orig()
    ));
    assert!(
        matches(one(SptCondition::RequestUri("1701".into())), &r, &orig()),
        "unanchored search"
    );
    assert!(!matches(
        one(SptCondition::RequestUri("^sip:".into())),
        &r,
        &orig()
    ));
    assert!(
        !matches(one(SptCondition::RequestUri("([".into())), &r, &orig()),
        "bad regex never matches"
    );
    let hdr = |h: &str, c: Option<&str>| SptCondition::SipHeader {
        header: h.into(),
        content: c.map(Into::into),
    };
    assert!(matches(
        one(hdr("p-asserted-identity", Some("alice@ims"))),
        &r,
        &orig()
    ));
    assert!(matches(one(hdr("From", None)), &r, &orig()), "presence");
    assert!(
        !matches(one(hdr("To", None)), &r, &orig()),
        "name is anchored (History-Info contains 'to')"
    );
    assert!(!matches(one(hdr("From", Some("bob"))), &r, &orig()));
    let sd = |l: &str, c: Option<&str>| SptCondition::SessionDescription {
        line: l.into(),
        content: c.map(Into::into),
    };
    assert!(matches(one(sd("m", Some("audio"))), &r, &orig()));
    assert!(matches(
        one(sd("a", Some("rtpmap:[0-9]+ amr/"))),
        &r,
        &orig()
    ));
    assert!(!matches(one(sd("m", Some("video"))), &r, &orig()));
    let mut no_sdp = invite();
    no_sdp.sdp = None;
    assert!(!matches(one(sd("m", Some("audio"))), &no_sdp, &orig()));
    let term = EvalContext {
        session_case: SessionCase::TerminatingUnregistered,
        ..orig()
    };
    assert!(matches(
        one(SptCondition::SessionCase(
            SessionCase::TerminatingUnregistered
        )),
        &r,
        &term
    ));
    assert!(!matches(
        one(SptCondition::SessionCase(SessionCase::Originating)),
        &r,
        &term
    ));
}

#[test]
fn register_types() {
    let reg = Req {
        method: "REGISTER",
        ruri: "sip:ims.example",
        headers: vec![],
        sdp: None,
    };
    let tp = TriggerPoint {
        condition_type_cnf: true,
        spts: vec![Spt {
            condition_negated: false,
            groups: vec![0],
            condition: SptCondition::Method("REGISTER".into()),
            registration_types: vec![RegistrationType::Initial, RegistrationType::De],
        }],
    };
    let ctx = |t| EvalContext {
        registration_type: Some(t),
        ..orig()
    };
    assert!(matches(tp.clone(), &reg, &ctx(RegistrationType::Initial)));
    assert!(!matches(tp.clone(), &reg, &ctx(RegistrationType::Re)));
    assert!(matches(tp, &reg, &ctx(RegistrationType::De)));
}

#[test]
fn profile_part_indicator() {
    let mut f = ifc(0, "sip:as", None);
    f.profile_part_indicator = Some(ProfilePartIndicator::Unregistered);
    let m = IfcMatcher::new(&[f]);
    let r = invite();
    assert!(m.next_match(&r, &orig(), 0).is_none());
    let unreg = EvalContext {
        registered: false,
        ..orig()
    };
    assert!(m.next_match(&r, &unreg, 0).is_some());
}

#[test]
fn empty_trigger_point() {
    let r = invite();
    assert!(matches(
        TriggerPoint {
            condition_type_cnf: true,
            spts: vec![]
        },
        &r,
        &orig()
    ));
    assert!(!matches(
        TriggerPoint {
            condition_type_cnf: false,
            spts: vec![]
        },
        &r,
        &orig()
    ));
}
