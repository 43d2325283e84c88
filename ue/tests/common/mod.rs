//! The scripted P-CSCF/registrar shared by the UE core tests: real Milenage vectors
//! (TS 35.208 test set 1 keys), real AKAv1-MD5 digest checks against XRES, real
//! Security-Server choice and SA sets.

#![allow(dead_code)]

pub mod relay;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use akav1::digest::{Challenge, Credentials};
use akav1::{Milenage, Sqn, SqnPolicy};
use secagree::AlgPrefs;
use sip::ims::{format_security_list, SecurityMechanism};
use sip::{Flow, Message, Protocol, ResponseBuilder, Transmit};
use ue::{
    EventKind, IsimKeys, LocalSecurity, Procedure, RegError, SaAction, Ue, UeConfig, UeEvent,
};
use xfrm::SaSet;

pub const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
pub const OP: [u8; 16] = [
    0xcd, 0xc2, 0x02, 0xd5, 0x12, 0x3e, 0x20, 0xf6, 0x2b, 0x6d, 0x67, 0x6a, 0xc7, 0x2c, 0xb3, 0x18,
];
pub const DOMAIN: &str = "ims.mnc001.mcc001.3gppnetwork.org";
pub const IMPI: &str = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org";
pub const IMPU: &str = "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org";

pub fn pcscf_addr() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}
pub fn ue_ip() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

pub fn config() -> UeConfig {
    let mut c = UeConfig::new(
        IMPI,
        IMPU,
        DOMAIN,
        IsimKeys::from_op(K, OP),
        ue_ip(),
        pcscf_addr(),
    );
    c.security = LocalSecurity {
        spi_uc: 11111,
        spi_us: 22222,
        port_uc: 6100,
        port_us: 6101,
    };
    c.expires = 3600;
    c.sa_grace = Duration::from_secs(2);
    c.instance_id = Some("<urn:gsma:imei:35000000-000000-0>".into());
    // These tests script the registration dialogue message by message; the reg event
    // subscription that follows it is the subject of ue_regevent.rs, which turns it on.
    c.reg_event = false;
    c
}

/// The network side: HSS (Milenage, SQN) plus the P-CSCF/registrar logic of a collapsed
/// P-CSCF, just enough to script the dialogue.
pub struct Net {
    pub hss: Milenage,
    pub policy: SqnPolicy,
    pub last_sqn: Sqn,
    pub rand_counter: u8,
    /// per challenge: XRES, CK, IK, RAND
    pub xres: [u8; 8],
    pub ck: [u8; 16],
    pub ik: [u8; 16],
    pub rand: [u8; 16],
    pub nonce: String,
    /// the Security-Server of the last 401 and the UE offer it answers
    pub server: Vec<SecurityMechanism>,
    pub offer: Option<SecurityMechanism>,
    pub next_server_spi: u32,
    pub next_server_port: u16,
    pub prefs: AlgPrefs,
    /// the subscriber this registrar expects
    pub impi: String,
    pub impu: String,
    pub ue_ip: IpAddr,
}

impl Net {
    pub fn new(hss: Milenage) -> Net {
        Net {
            hss,
            policy: SqnPolicy::default(),
            last_sqn: Sqn::ZERO,
            rand_counter: 0,
            xres: [0; 8],
            ck: [0; 16],
            ik: [0; 16],
            rand: [0; 16],
            nonce: String::new(),
            server: Vec::new(),
            offer: None,
            next_server_spi: 70000,
            next_server_port: 7100,
            prefs: AlgPrefs::default(),
            impi: IMPI.into(),
            impu: IMPU.into(),
            ue_ip: ue_ip(),
        }
    }

    /// A 401 with a fresh vector and our Security-Server for the request's offers.
    pub fn challenge(&mut self, req: &Message) -> Message {
        self.rand_counter += 1;
        self.rand = [self.rand_counter; 16];
        self.last_sqn = self.policy.next(self.last_sqn, 0).unwrap();
        let v = self.hss.vector(&self.rand, self.last_sqn, [0x80, 0x00]);
        self.xres = v.xres;
        self.ck = v.ck;
        self.ik = v.ik;
        self.nonce = akav1::nonce::encode(&v.rand, &v.autn, &[]);
        let ch = Challenge {
            realm: DOMAIN.into(),
            nonce: self.nonce.clone(),
            algorithm: Some("AKAv1-MD5".into()),
            qop: vec![akav1::digest::Qop::Auth],
            ..Challenge::default()
        };
        let mut b = ResponseBuilder::new(req, 401)
            .to_tag("pcscf-tag")
            .header("WWW-Authenticate", ch.to_header());
        let offers = req.security_client().unwrap();
        if !offers.is_empty() {
            let choice = secagree::choose(&offers, &self.prefs).unwrap();
            let server = secagree::server_mechanism(
                &choice,
                self.next_server_spi,
                self.next_server_spi + 1,
                self.next_server_port,
                self.next_server_port + 1,
            );
            self.next_server_spi += 2;
            self.next_server_port += 2;
            self.offer = Some(choice.offer);
            self.server = vec![server];
            b = b.header("Security-Server", format_security_list(&self.server));
        }
        b.build().unwrap()
    }

    /// The SA set the P-CSCF builds for the last 401.
    pub fn set(&self, now: Instant) -> SaSet {
        secagree::sa_set(
            self.ue_ip,
            pcscf_addr().ip(),
            self.offer.as_ref().unwrap(),
            &self.server[0],
            &self.ck,
            &self.ik,
            Duration::from_secs(60),
            now,
        )
        .unwrap()
    }

    pub fn check_answer(&self, req: &Message) -> Credentials {
        let c = Credentials::parse(req.header("Authorization").unwrap()).unwrap();
        assert_eq!(c.username, self.impi);
        assert_eq!(c.nonce, self.nonce);
        assert!(c.auts.is_none());
        assert!(
            c.verify(&self.xres, "REGISTER", b""),
            "digest response does not match XRES"
        );
        c
    }

    pub fn ok(&self, req: &Message, expires: u32) -> Message {
        let contact = req.header("Contact").unwrap();
        let base = contact.split(";expires=").next().unwrap();
        ResponseBuilder::new(req, 200)
            .to_tag("pcscf-tag")
            .header("Contact", format_args!("{base};expires={expires}"))
            .header(
                "Service-Route",
                format_args!("<sip:orig@scscf.{DOMAIN};lr>"),
            )
            .header(
                "P-Associated-URI",
                format_args!("<{}>, <tel:+4930123456>", self.impu),
            )
            .header("Path", "<sip:term@pcscf.ims.test;lr>")
            .build()
            .unwrap()
    }
}

pub fn one_transmit(ue: &mut Ue) -> (Message, Flow) {
    let t: Transmit = ue.poll_transmit().expect("a transmit");
    assert!(
        ue.poll_transmit().is_none(),
        "exactly one transmit expected"
    );
    (Message::parse(&t.payload).unwrap(), t.flow)
}

pub fn events(ue: &mut Ue) -> Vec<UeEvent> {
    std::iter::from_fn(|| ue.poll_event()).collect()
}

/// Whether the UE reported that `procedure` failed with `error`.
pub fn failed_with(ue: &mut Ue, procedure: Procedure, error: &RegError) -> bool {
    events(ue).iter().any(|e| {
        e.kind
            == EventKind::Failed {
                procedure,
                error: error.clone(),
            }
    })
}

pub fn actions(ue: &mut Ue) -> Vec<SaAction> {
    std::iter::from_fn(|| ue.poll_action()).collect()
}

/// Delivers `resp` to the UE as if it came back on the flow `req_flow` was sent on.
pub fn deliver(ue: &mut Ue, resp: &Message, req_flow: Flow, now: Instant) {
    let back = Flow::new(req_flow.local.unwrap(), req_flow.remote, Protocol::Udp);
    ue.handle_datagram(back, &resp.to_bytes(), now);
}

/// Runs the whole initial registration; returns the UE, the network and the time.
pub fn registered() -> (Ue, Net, Instant, SaSet) {
    registered_with(config())
}

/// [`registered`] with another configuration; the SA set gets backend id 41.
pub fn registered_with(cfg: UeConfig) -> (Ue, Net, Instant, SaSet) {
    let (mut ue, mut net, t0, r1, f1) = started(cfg);
    let c401 = net.challenge(&r1);
    let t1 = t0 + Duration::from_millis(3);
    deliver(&mut ue, &c401, f1, t1);
    let set = match actions(&mut ue).as_slice() {
        [SaAction::Install { generation: 0, set }] => set.clone(),
        other => panic!("expected one install, got {other:?}"),
    };
    ue.handle_sa_installed(0, Ok(41), t1);
    let (r2, f2) = one_transmit(&mut ue);
    net.check_answer(&r2);
    let ok = net.ok(&r2, 3600);
    deliver(&mut ue, &ok, f2, t1 + Duration::from_millis(2));
    let _ = events(&mut ue);
    let _ = actions(&mut ue);
    (ue, net, t1 + Duration::from_millis(2), set)
}

pub fn started(cfg: UeConfig) -> (Ue, Net, Instant, Message, Flow) {
    let mut ue = Ue::new(cfg).unwrap();
    let net = Net::new(Milenage::from_op(&K, &OP));
    let t = Instant::now();
    ue.register(t);
    let (register, flow) = one_transmit(&mut ue);
    (ue, net, t, register, flow)
}
