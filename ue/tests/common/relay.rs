//! A registrar plus record-routing relay on one loopback UDP socket, for tests of UEs on a
//! real [`ue::UeHost`] (sec-agree off, so no privileges): the P-CSCF/S-CSCF path reduced
//! to what the UEs see of it.

use std::net::{IpAddr, SocketAddr};

use akav1::Milenage;
use sip::{Message, Method};
use tokio::net::UdpSocket;

use super::{Net, K, OP};

const SERVICE_ROUTE: &str = "<sip:orig@scscf.ims.mnc001.mcc001.3gppnetwork.org;lr>";

/// Registrar plus relay: REGISTER is challenged and accepted by a [`Net`] per subscriber;
/// other requests have our Route entry (and the Service-Route entry) popped, initial ones
/// are retargeted to the registered contact and record-routed; responses follow Via.
pub async fn relay(sock: UdpSocket) {
    let me = sock.local_addr().unwrap();
    let own_route = format!("<sip:{me};lr>");
    let mut nets: std::collections::HashMap<String, Net> = Default::default();
    let mut contacts: std::collections::HashMap<String, SocketAddr> = Default::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let Ok(mut m) = Message::parse(&buf[..n]) else {
            continue;
        };
        if !m.is_request() {
            m.pop_header_value("Via");
            let Ok(via) = m.top_via() else { continue };
            let (host, port) = via.response_target();
            let Ok(ip) = host.parse::<IpAddr>() else {
                continue;
            };
            let _ = sock.send_to(&m.to_bytes(), SocketAddr::new(ip, port)).await;
            continue;
        }
        if m.method() == Some(&Method::Register) {
            let impu = m.to_header().unwrap().uri.to_string();
            let user = m.to_header().unwrap().uri.user.clone().unwrap();
            let cred =
                akav1::digest::Credentials::parse(m.header("Authorization").unwrap()).unwrap();
            let net = nets.entry(cred.username.clone()).or_insert_with(|| {
                let mut n = Net::new(Milenage::from_op(&K, &OP));
                n.impi = cred.username.clone();
                n.impu = impu;
                n.ue_ip = src.ip();
                n
            });
            let answer = if cred.response.is_empty() {
                net.challenge(&m)
            } else {
                net.check_answer(&m);
                let c = m.name_addrs("Contact").unwrap()[0].uri.clone();
                let addr = SocketAddr::new(c.host.parse().unwrap(), c.port.unwrap());
                contacts.insert(user, addr);
                net.ok(&m, 3600)
            };
            let _ = sock.send_to(&answer.to_bytes(), src).await;
            continue;
        }
        if m.header_values("Route").next() == Some(own_route.as_str()) {
            m.pop_header_value("Route");
        }
        let dest = if m.header_values("Route").next() == Some(SERVICE_ROUTE) {
            m.pop_header_value("Route");
            let uri = m.request_uri().unwrap();
            let Some(&addr) = uri.user.as_ref().and_then(|u| contacts.get(u)) else {
                continue;
            };
            m.set_uri(&format!("sip:{}@{addr}", uri.user.unwrap()));
            if m.method() == Some(&Method::Invite) {
                m.prepend_header("Record-Route", &own_route);
            }
            addr
        } else {
            let uri = m.request_uri().unwrap();
            SocketAddr::new(uri.host.parse().unwrap(), uri.port.unwrap())
        };
        // derived from the UE's branch, so that CANCEL and a non-2xx ACK reach the
        // INVITE's transaction at the callee
        let branch = m.branch().unwrap();
        m.prepend_header("Via", &format!("SIP/2.0/UDP {me};branch={branch}relay"));
        let _ = sock.send_to(&m.to_bytes(), dest).await;
    }
}

/// A relay on a fresh loopback socket and a UE host without sec-agree, the start of every
/// test on a real host: the relay's address (the UEs' P-CSCF), its task (abort it at the
/// end) and the host.
pub async fn relay_and_host() -> (SocketAddr, tokio::task::JoinHandle<()>, ue::UeHost) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = sock.local_addr().unwrap();
    let relay_task = tokio::spawn(relay(sock));
    let host = ue::UeHost::start(ue::IoConfig {
        mode: secagree::IpsecMode::Off,
        ..ue::IoConfig::default()
    })
    .await
    .unwrap();
    (relay_addr, relay_task, host)
}
