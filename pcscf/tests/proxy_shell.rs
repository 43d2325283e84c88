//! Proxy mode through the tokio shell on loopback, without privileges: `ipsec.policy =
//! "off"`, a plain-digest UE (like SIPp) and a scripted S-CSCF on a UDP socket that puts
//! ck/ik into its 401. Proves the wiring: no HSS is contacted in proxy mode (the configured
//! one does not exist), REGISTERs reach `[scscf] address` with the proxy's edits, answers
//! come back to the UE without the keys.

use akav1::digest::{Challenge, Credentials, Qop, QopInput, ResponseInput, AKAV1_MD5};
use akav1::{Milenage, Sqn, SqnPolicy, Usim, UsimSqnState};
use sip::{Message, ResponseBuilder};
use std::time::Duration;
use tokio::net::UdpSocket;

const DOMAIN: &str = "ims.test";
const IMPI: &str = "001010000000009@ims.test";
const IMPU: &str = "sip:001010000000009@ims.test";
const K: [u8; 16] = [0x11; 16];
const OPC: [u8; 16] = [0x22; 16];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn recv(sock: &UdpSocket) -> (Message, std::net::SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("nothing arrived within 5 s")
        .unwrap();
    (Message::parse(&buf[..n]).unwrap(), from)
}

/// A one-user S-CSCF: 401 with ck/ik, then 200 for the right response. Returns the
/// REGISTERs it received.
async fn scscf(sock: UdpSocket) -> Vec<Message> {
    let milenage = Milenage::new(&K, &OPC);
    let mut seen = Vec::new();
    let mut xres = None;
    for round in 0..2u8 {
        let (req, _) = recv(&sock).await;
        seen.push(req.clone());
        let creds = Credentials::parse(req.header("Authorization").unwrap()).unwrap();
        let resp = if round == 0 {
            let v = milenage.vector(&[7; 16], Sqn::new(64).unwrap(), [0x80, 0]);
            xres = Some(v.xres);
            let ch = Challenge {
                realm: DOMAIN.into(),
                nonce: akav1::nonce::encode(&v.rand, &v.autn, &[]),
                algorithm: Some(AKAV1_MD5.into()),
                qop: vec![Qop::Auth],
                ck: Some(hex(&v.ck)),
                ik: Some(hex(&v.ik)),
                ..Default::default()
            };
            ResponseBuilder::new(&req, 401)
                .to_tag("s")
                .header("WWW-Authenticate", ch.to_header())
                .build()
                .unwrap()
        } else {
            let ok = creds.verify(&xres.unwrap(), "REGISTER", req.body());
            let b = ResponseBuilder::new(&req, if ok { 200 } else { 403 }).to_tag("s");
            let b = if ok {
                b.header("Contact", "<sip:127.0.0.1:5999>;expires=600")
                    .header("Service-Route", "<sip:orig@scscf.ims.test;lr>")
                    .header("P-Associated-URI", format!("<{IMPU}>"))
            } else {
                b
            };
            b.build().unwrap()
        };
        // To the top Via: the P-CSCF's unprotected port.
        let (host, port) = resp.top_via().unwrap().response_target();
        let to: std::net::SocketAddr = format!("{host}:{port}").parse().unwrap();
        sock.send_to(&resp.to_bytes(), to).await.unwrap();
    }
    seen
}

fn register(ue_port: u16, cseq: u32, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{ue_port};branch={}\r\n\
         Max-Forwards: 70\r\n\
         From: <{IMPU}>;tag=ue\r\n\
         To: <{IMPU}>\r\n\
         Call-ID: proxy-shell-test\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:127.0.0.1:{ue_port}>;expires=600\r\n\
         Authorization: {auth}\r\n\
         Content-Length: 0\r\n\r\n",
        sip::new_branch()
    )
    .into_bytes()
}

#[tokio::test]
async fn proxy_mode_shell_forwards_and_strips_keys_without_an_hss() {
    let s_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let s_addr = s_sock.local_addr().unwrap();
    let scscf_task = tokio::spawn(scscf(s_sock));
    let cfg = pcscf::Config::from_toml(&format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\n\
         [ipsec]\npolicy = \"off\"\n\
         [hss]\naddress = \"127.0.0.1:1\"\n\
         [scscf]\nmode = \"proxy\"\naddress = \"{s_addr}\"\nvisited_network_id = \"lab.visited\"\n"
    ))
    .unwrap();
    let running = pcscf::shell::start(cfg)
        .await
        .expect("proxy mode starts without an HSS");

    let ue = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ue_port = ue.local_addr().unwrap().port();
    let empty = format!(
        "Digest username=\"{IMPI}\", realm=\"{DOMAIN}\", uri=\"sip:{DOMAIN}\", nonce=\"\", response=\"\""
    );
    ue.send_to(&register(ue_port, 1, &empty), running.sip_addr)
        .await
        .unwrap();
    let (r401, _) = recv(&ue).await;
    assert_eq!(r401.code(), Some(401));
    let raw = r401.to_string();
    assert!(!raw.contains("ck=") && !raw.contains("ik="), "{raw}");
    let ch = Challenge::parse(r401.header("WWW-Authenticate").unwrap()).unwrap();
    let n = akav1::nonce::decode(&ch.nonce).unwrap();
    let mut usim = Usim::with_state(
        Milenage::new(&K, &OPC),
        UsimSqnState::with_highest(SqnPolicy::default(), Sqn::new(0).unwrap()),
    );
    let res = usim.authenticate(&n.rand, &n.autn).unwrap().res;
    let uri = format!("sip:{DOMAIN}");
    let input = ResponseInput {
        username: IMPI,
        realm: &ch.realm,
        nonce: &ch.nonce,
        method: "REGISTER",
        uri: &uri,
        qop: Some(QopInput {
            qop: Qop::Auth,
            cnonce: "abcd",
            nc: "00000001",
        }),
        body: b"",
    };
    let auth = Credentials {
        username: IMPI.into(),
        realm: ch.realm.clone(),
        nonce: ch.nonce.clone(),
        uri: uri.clone(),
        response: akav1::digest::response(&res, &input),
        algorithm: Some(AKAV1_MD5.into()),
        cnonce: Some("abcd".into()),
        qop: Some(Qop::Auth),
        nc: Some("00000001".into()),
        ..Default::default()
    }
    .to_header();
    ue.send_to(&register(ue_port, 2, &auth), running.sip_addr)
        .await
        .unwrap();
    let (ok, _) = recv(&ue).await;
    assert_eq!(ok.code(), Some(200), "{ok}");
    assert_eq!(ok.header_values("Via").count(), 1);

    let seen = scscf_task.await.unwrap();
    for (req, flag) in seen.iter().zip(["no", "no"]) {
        assert_eq!(req.vias().unwrap().len(), 2);
        assert_eq!(
            req.header("Path"),
            Some(&*format!("<sip:term@{};lr>", running.sip_addr))
        );
        assert_eq!(req.header("P-Visited-Network-ID"), Some("lab.visited"));
        let c = Credentials::parse(req.header("Authorization").unwrap()).unwrap();
        // Without IPsec nothing is integrity protected (TS 24.229 §5.2.2.1).
        assert_eq!(c.integrity_protected.as_deref(), Some(flag));
    }
    let stats = running.stats();
    assert_eq!((stats.challenges, stats.registrations), (1, 1), "{stats:?}");
    running.stop().await;
}
