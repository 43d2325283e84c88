//! What the message-by-message P-CSCF tests share: the test subscriber (TS 35.208 test
//! set 1 keys), the loopback addresses and a scripted handset whose USIM is akav1's and
//! whose sec-agree offers are secagree's. Each test file builds its own REGISTER layout
//! and checks on top of [`Ue`].
#![allow(dead_code)]

use akav1::digest::{Challenge, Credentials, Qop, QopInput, ResponseInput, AKAV1_MD5};
use akav1::{Milenage, Sqn, SqnPolicy, Usim, UsimSqnState};
use pcscf::config::IpsecPolicy;
use pcscf::core::CoreConfig;
use secagree::AlgPrefs;
use sip::ims::{format_security_list, SecurityMechanism};
use sip::{Flow, Limits, Message};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use xfrm::SaSet;

pub const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
pub const OPC: [u8; 16] = [
    0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf,
];
pub const DOMAIN: &str = "ims.mnc001.mcc001.3gppnetwork.org";
pub const IMPI: &str = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org";
pub const IMPU: &str = "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org";
pub const TEL: &str = "tel:+491700000001";

pub const P_IP: [u8; 4] = [127, 0, 0, 1];
pub const UE_IP: [u8; 4] = [127, 0, 0, 2];

pub fn p_addr(port: u16) -> SocketAddr {
    SocketAddr::from((P_IP, port))
}
pub fn ue_addr(port: u16) -> SocketAddr {
    SocketAddr::from((UE_IP, port))
}

/// The P-CSCF core at 127.0.0.1:5060 for `DOMAIN` with `policy`: SPIs 4096–4199, protected
/// ports 31100–31199, 30 s to answer a challenge, 2 s before a replaced SA set goes.
pub fn core_config(policy: IpsecPolicy) -> CoreConfig {
    CoreConfig {
        domain: DOMAIN.into(),
        local_ip: IpAddr::from(P_IP),
        sip_port: 5060,
        policy,
        ipsec_available: true,
        prefs: AlgPrefs::default(),
        spi_range: (4096, 4199),
        port_range: (31100, 31199),
        default_expires: 600,
        auth_timeout: Duration::from_secs(30),
        retire_grace: Duration::from_secs(2),
        max_challenges_per_impi: 3,
        limits: Limits::default(),
    }
}

pub fn only(sent: Vec<(Flow, Message)>) -> (Flow, Message) {
    assert_eq!(sent.len(), 1, "expected one message, got {sent:#?}");
    sent.into_iter().next().unwrap()
}

/// A scripted handset: an ISIM, protected ports, and REGISTERs built by hand so that tests
/// can also build wrong ones.
pub struct Ue {
    pub usim: Usim,
    pub cseq: u32,
    pub call_id: String,
    pub spi_c: u32,
    pub spi_s: u32,
    pub port_c: u16,
    pub port_s: u16,
    pub sa: Option<SaSet>,
    /// The Security-Server of the set in use: what a protected REGISTER repeats in
    /// Security-Verify (TS 33.203 §7.4).
    pub verify: String,
}

impl Ue {
    /// A handset whose USIM has already seen SQNs up to `sqn_ms`.
    pub fn new(sqn_ms: u64) -> Ue {
        Ue {
            usim: Usim::with_state(
                Milenage::new(&K, &OPC),
                UsimSqnState::with_highest(SqnPolicy::default(), Sqn::new(sqn_ms).unwrap()),
            ),
            cseq: 0,
            call_id: sip::new_call_id(None),
            spi_c: 1000,
            spi_s: 1001,
            port_c: 40000,
            port_s: 40001,
            sa: None,
            verify: String::new(),
        }
    }

    pub fn offers(&self) -> Vec<SecurityMechanism> {
        secagree::client_offers(
            &AlgPrefs::default(),
            self.spi_c,
            self.spi_s,
            self.port_c,
            self.port_s,
        )
    }

    /// The next REGISTER from `via_port`: `contact_lines` (each ending in CRLF) go between
    /// CSeq and Supported, `extra` after Supported.
    pub fn register_with(
        &mut self,
        via_port: u16,
        contact_lines: &str,
        extra: &[(&str, String)],
    ) -> Message {
        self.cseq += 1;
        let mut m = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.2:{via_port};branch={}\r\n\
             Max-Forwards: 70\r\n\
             From: <{IMPU}>;tag=ue{}\r\n\
             To: <{IMPU}>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n\
             {contact_lines}\
             Supported: path, sec-agree\r\n",
            sip::new_branch(),
            self.cseq,
            self.call_id,
            self.cseq,
        );
        for (n, v) in extra {
            m.push_str(&format!("{n}: {v}\r\n"));
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(m.as_bytes()).unwrap()
    }

    /// The headers of an initial, unprotected REGISTER (TS 24.229 §5.1.1.2.1): the
    /// sec-agree offer and an Authorization with an empty response.
    pub fn initial_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Security-Client", format_security_list(&self.offers())),
            ("Require", "sec-agree".into()),
            ("Proxy-Require", "sec-agree".into()),
            (
                "Authorization",
                format!(
                    "Digest username=\"{IMPI}\", realm=\"{DOMAIN}\", uri=\"sip:{DOMAIN}\", nonce=\"\", response=\"\""
                ),
            ),
        ]
    }

    /// Authorization answering `ch` with `password` (RES, or garbage to test refusal).
    pub fn authorization(&self, ch: &Challenge, password: &[u8], auts: Option<String>) -> String {
        let input = ResponseInput {
            username: IMPI,
            realm: &ch.realm,
            nonce: &ch.nonce,
            method: "REGISTER",
            uri: &format!("sip:{DOMAIN}"),
            qop: Some(QopInput {
                qop: Qop::Auth,
                cnonce: "c0ffee",
                nc: "00000001",
            }),
            body: b"",
        };
        Credentials {
            username: IMPI.into(),
            realm: ch.realm.clone(),
            nonce: ch.nonce.clone(),
            uri: format!("sip:{DOMAIN}"),
            response: akav1::digest::response(password, &input),
            algorithm: Some(AKAV1_MD5.into()),
            cnonce: Some("c0ffee".into()),
            qop: Some(Qop::Auth),
            nc: Some("00000001".into()),
            auts,
            ..Default::default()
        }
        .to_header()
    }
}
