#![no_main]
//! Arbitrary datagrams into the collapsed node (P-CSCF and S-CSCF cores), on the
//! P-CSCF's unprotected port, on a protected one and on the S-CSCF's port, with every
//! output drained and every Cx/security request answered with a failure: no input may
//! panic either core.
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pcscf::config::IpsecPolicy;
use pcscf::core::{CoreConfig, SecurityOp};
use pcscf::node::{Node, Output};
use scscf::CxIdentity;
use sip::{Flow, Limits, Protocol};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let cfg = CoreConfig {
        domain: "ims.test".into(),
        local_ip: [127, 0, 0, 1].into(),
        sip_port: 5060,
        policy: if sel & 1 == 0 {
            IpsecPolicy::Required
        } else {
            IpsecPolicy::Optional
        },
        ipsec_available: true,
        prefs: secagree::AlgPrefs::default(),
        spi_range: (4096, 4105),
        port_range: (31100, 31109),
        default_expires: 600,
        auth_timeout: Duration::from_secs(30),
        retire_grace: Duration::from_secs(2),
        max_challenges_per_impi: 3,
        limits: Limits::default(),
    };
    let s_cfg = scscf::Config {
        cx: CxIdentity {
            origin_host: "pcscf.ims.test".into(),
            origin_realm: "ims.test".into(),
            destination_realm: "ims.test".into(),
            server_name: "sip:127.0.0.1:6060".into(),
        },
        ..scscf::Config::new("ims.test", SocketAddr::from(([127, 0, 0, 1], 6060)))
    };
    let Ok(mut core) = Node::collapsed(cfg, s_cfg, "ims.test".into()) else {
        return;
    };
    let now = Instant::now();
    let local_port = match sel & 0x18 {
        0 => 5060,
        8 => 6060,
        _ => 31101,
    };
    let flow = Flow::new(
        SocketAddr::from(([127, 0, 0, 1], local_port)),
        SocketAddr::from(([127, 0, 0, 2], 5060)),
        if sel & 4 == 0 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
    );
    core.handle_inbound(flow, Bytes::copy_from_slice(rest), now);
    for _ in 0..64 {
        let Some(o) = core.poll_output() else { break };
        match o {
            Output::Cx { token, .. } => {
                core.handle_cx_answer(token, Err(diameter::RequestError::TimedOut), now)
            }
            Output::Security(SecurityOp::Prepare { token, .. }) => {
                core.handle_security_ready(token, Err(secagree::SipIoError::IpsecOff), now)
            }
            _ => {}
        }
    }
    core.handle_timeout(now + Duration::from_secs(3600));
    while core.poll_output().is_some() {}
});
