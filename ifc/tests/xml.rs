use ifc::*;
use proptest::prelude::*;

fn sample() -> ImsSubscription {
    ImsSubscription {
        private_id: "001010000000001@ims.mnc001.mcc001.3gppnetwork.org".into(),
        service_profiles: vec![ServiceProfile {
            public_identities: vec![
                PublicIdentity {
                    identity: "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org".into(),
                    ..Default::default()
                },
                PublicIdentity {
                    identity: "tel:+491701234567".into(),
                    barring_indication: true,
                    identity_type: Some(IdentityType::PublicUserIdentity),
                    wildcarded_psi: None,
                    display_name: Some("Alice <&> \"A\"".into()),
                },
            ],
            core_network_services_authorization: Some(CoreNetworkServicesAuthorization {
                subscribed_media_profile_id: Some(7),
            }),
            initial_filter_criteria: vec![
                InitialFilterCriteria {
                    priority: 10,
                    trigger_point: Some(TriggerPoint {
                        condition_type_cnf: true,
                        spts: vec![
                            Spt {
                                condition_negated: false,
                                groups: vec![0],
                                condition: SptCondition::Method("INVITE".into()),
                                registration_types: vec![],
                            },
                            Spt {
                                condition_negated: true,
                                groups: vec![1, 2],
                                condition: SptCondition::SipHeader {
                                    header: "P-Asserted-Identity".into(),
                                    content: Some("^<sip:.*@ims\\.example$".into()),
                                },
                                registration_types: vec![],
                            },
                            Spt {
                                condition_negated: false,
                                groups: vec![1],
                                condition: SptCondition::SessionCase(SessionCase::Originating),
                                registration_types: vec![],
                            },
                            Spt {
                                condition_negated: false,
                                groups: vec![3],
                                condition: SptCondition::SessionDescription {
                                    line: "m".into(),
                                    content: Some("audio".into()),
                                },
                                registration_types: vec![],
                            },
                            Spt {
                                condition_negated: false,
                                groups: vec![3],
                                condition: SptCondition::RequestUri("tel:\\+49.*".into()),
                                registration_types: vec![],
                            },
                        ],
                    }),
                    application_server: ApplicationServer {
                        server_name: "sip:as.ims.example:5070".into(),
                        default_handling: DefaultHandling::SessionTerminated,
                        service_info: Some("x<y".into()),
                        include_register_request: true,
                        include_register_response: false,
                    },
                    profile_part_indicator: Some(ProfilePartIndicator::Registered),
                },
                InitialFilterCriteria {
                    priority: 1,
                    trigger_point: Some(TriggerPoint {
                        condition_type_cnf: false,
                        spts: vec![Spt {
                            condition_negated: false,
                            groups: vec![0],
                            condition: SptCondition::Method("REGISTER".into()),
                            registration_types: vec![
                                RegistrationType::Initial,
                                RegistrationType::De,
                            ],
                        }],
                    }),
                    application_server: ApplicationServer {
                        server_name: "sip:reg-as.ims.example".into(),
                        ..Default::default()
                    },
                    profile_part_indicator: None,
                },
            ],
            shared_ifc_set_ids: vec![1, 5],
        }],
    }
}

#[test]
fn round_trip() {
    let s = sample();
    let xml = s.to_xml();
    assert_eq!(ImsSubscription::from_xml(&xml).unwrap(), s);
}

#[test]
fn writes_schema_order() {
    let xml = sample().to_xml();
    let order = [
        "<PrivateID>",
        "<ServiceProfile>",
        "<PublicIdentity>",
        "<Identity>sip:",
        "<BarringIndication>1</BarringIndication><Identity>tel:+491701234567</Identity><Extension><IdentityType>0</IdentityType><Extension><DisplayName>Alice &lt;&amp;&gt; &quot;A&quot;</DisplayName></Extension></Extension>",
        "<CoreNetworkServicesAuthorization><SubscribedMediaProfileId>7</SubscribedMediaProfileId></CoreNetworkServicesAuthorization>",
        "<InitialFilterCriteria><Priority>10</Priority><TriggerPoint><ConditionTypeCNF>1</ConditionTypeCNF><SPT><ConditionNegated>0</ConditionNegated><Group>0</Group><Method>INVITE</Method></SPT>",
        "<SPT><ConditionNegated>1</ConditionNegated><Group>1</Group><Group>2</Group><SIPHeader><Header>P-Asserted-Identity</Header><Content>",
        "<SessionCase>0</SessionCase>",
        "<SessionDescription><Line>m</Line><Content>audio</Content></SessionDescription>",
        "<ApplicationServer><ServerName>sip:as.ims.example:5070</ServerName><DefaultHandling>1</DefaultHandling><ServiceInfo>x&lt;y</ServiceInfo><Extension><IncludeRegisterRequest/></Extension></ApplicationServer><ProfilePartIndicator>0</ProfilePartIndicator></InitialFilterCriteria>",
        "<Method>REGISTER</Method><Extension><RegistrationType>0</RegistrationType><RegistrationType>2</RegistrationType></Extension></SPT>",
        "<Extension><SharedIFCSetID>1</SharedIFCSetID><SharedIFCSetID>5</SharedIFCSetID></Extension></ServiceProfile></IMSSubscription>",
    ];
    let mut at = 0;
    for o in order {
        let i = xml[at..]
            .find(o)
            .unwrap_or_else(|| panic!("{o} not after {at} in {xml}"));
        at += i + o.len();
    }
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><IMSSubscription"));
}

#[test]
fn tolerant_parse() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- pretty printed, with namespace prefix, unknown elements, reordered children -->
<cx:IMSSubscription xmlns:cx="urn:x">
  <cx:ServiceProfile>
    <PublicIdentity>
      <Identity>  sip:alice@ims.example  </Identity>
      <Unknown><Deep>1</Deep></Unknown>
    </PublicIdentity>
    <InitialFilterCriteria>
      <ApplicationServer>
        <DefaultHandling>0</DefaultHandling>
        <ServerName>sip:as@x</ServerName>
        <Extension><IncludeRegisterResponse/></Extension>
      </ApplicationServer>
      <Priority>3</Priority>
      <TriggerPoint>
        <ConditionTypeCNF>true</ConditionTypeCNF>
        <SPT><Group>0</Group><RequestURI><![CDATA[sip:.*@x]]></RequestURI></SPT>
      </TriggerPoint>
    </InitialFilterCriteria>
  </cx:ServiceProfile>
  <PrivateID>alice@ims.example</PrivateID>
</cx:IMSSubscription>"#;
    let s = ImsSubscription::from_xml(xml).unwrap();
    assert_eq!(s.private_id, "alice@ims.example");
    let sp = &s.service_profiles[0];
    assert_eq!(sp.public_identities[0].identity, "sip:alice@ims.example");
    let ifc = &sp.initial_filter_criteria[0];
    assert_eq!(ifc.priority, 3);
    assert!(ifc.application_server.include_register_response);
    assert!(!ifc.application_server.include_register_request);
    let tp = ifc.trigger_point.as_ref().unwrap();
    assert!(tp.condition_type_cnf);
    assert_eq!(
        tp.spts[0].condition,
        SptCondition::RequestUri("sip:.*@x".into())
    );
}

#[test]
fn typed_errors() {
    use ifc::XmlError;
    assert_eq!(ImsSubscription::from_xml(""), Err(XmlError::Empty));
    assert!(matches!(
        ImsSubscription::from_xml("<IMSSubscription><PrivateID>x</Private>"),
        Err(XmlError::Syntax(_))
    ));
    assert_eq!(
        ImsSubscription::from_xml("<Foo/>"),
        Err(XmlError::WrongRoot("Foo".into()))
    );
    assert_eq!(
        ImsSubscription::from_xml("<IMSSubscription/>"),
        Err(XmlError::Missing {
            parent: "IMSSubscription",
            child: "PrivateID"
        })
    );
    let bad = "<IMSSubscription><PrivateID>x</PrivateID><ServiceProfile><PublicIdentity><Identity>a</Identity></PublicIdentity><InitialFilterCriteria><Priority>x</Priority><ApplicationServer><ServerName>s</ServerName></ApplicationServer></InitialFilterCriteria></ServiceProfile></IMSSubscription>";
    assert_eq!(
        ImsSubscription::from_xml(bad),
        Err(XmlError::Invalid {
            element: "Priority",
            value: "x".into()
        })
    );
    let empty_spt = "<IMSSubscription><PrivateID>x</PrivateID><ServiceProfile><InitialFilterCriteria><TriggerPoint><ConditionTypeCNF>0</ConditionTypeCNF><SPT><Group>0</Group></SPT></TriggerPoint><ApplicationServer><ServerName>s</ServerName></ApplicationServer></InitialFilterCriteria></ServiceProfile></IMSSubscription>";
    assert_eq!(
        ImsSubscription::from_xml(empty_spt),
        Err(XmlError::EmptySpt)
    );
    let deep = "<a>".repeat(100) + &"</a>".repeat(100);
    assert_eq!(ImsSubscription::from_xml(&deep), Err(XmlError::TooLarge));
}

#[test]
fn json_round_trip() {
    let s = sample();
    let j = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<ImsSubscription>(&j).unwrap(), s);
}

#[test]
fn shared_sets_expand() {
    let mut sets = SharedIfcSets::new();
    let extra = sample().service_profiles[0].initial_filter_criteria[1].clone();
    sets.insert(5, vec![extra.clone()]);
    let mut sp = sample().service_profiles[0].clone();
    assert_eq!(sp.effective_ifcs(&sets).len(), 3);
    sp.expand_shared(&sets);
    assert_eq!(sp.initial_filter_criteria.len(), 3);
    assert_eq!(sp.shared_ifc_set_ids, vec![1]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let s = String::from_utf8_lossy(&data);
        let _ = ImsSubscription::from_xml(&s);
    }

    #[test]
    fn mutated_documents_never_panic(cut in 0usize..2000, byte in any::<u8>()) {
        let mut xml = sample().to_xml().into_bytes();
        let at = cut % xml.len();
        xml[at] = byte;
        let s = String::from_utf8_lossy(&xml);
        let _ = ImsSubscription::from_xml(&s);
        let _ = ImsSubscription::from_xml(&String::from_utf8_lossy(&xml[..at]));
    }
}

/// Our User-Data validates against the CxDataType schema Kamailio's IMS package ships
/// (TS 29.228 Annex B), with `xmllint` (libxml2-utils).
#[test]
fn output_validates_against_the_cx_data_type_schema() {
    let schemas = "/usr/share/doc/kamailio/examples/ims/scscf";
    let Some(xmllint) = testkit::find_bin("xmllint") else {
        testkit::skip_or_fail("xmllint is not installed (apt-get install libxml2-utils)");
        return;
    };
    let dir = testkit::TestDir::new("ifc-xsd").unwrap();
    let doc = dir.write("user-data.xml", sample().to_xml()).unwrap();
    let mut checked = 0;
    for rel in ["Rel7", "Rel8"] {
        let xsd = format!("{schemas}/CxDataType_{rel}.xsd");
        if !std::path::Path::new(&xsd).is_file() {
            continue;
        }
        let out = std::process::Command::new(&xmllint)
            .args(["--noout", "--schema", &xsd])
            .arg(&doc)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{rel}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            sample().to_xml()
        );
        checked += 1;
    }
    if checked == 0 {
        testkit::skip_or_fail(&format!(
            "no CxDataType XSD under {schemas} (apt-get install kamailio)"
        ));
    }
}
