//! The `pcscf` process as one sans-IO node: our P-CSCF core, and in collapsed mode (the
//! default) our S-CSCF core beside it, wired in memory.
//!
//! The P-CSCF has ONE path toward an S-CSCF ([`crate::core::Upstream`]). In proxy mode it
//! leads over UDP or TCP to Kamailio or any other S-CSCF. In collapsed mode it leads to
//! the [`scscf::Scscf`] in this node over a [`Protocol::InProcess`] flow: both cores keep
//! their own transaction tables exactly as over a network, but messages cross as parsed
//! [`sip::Message`]s ([`sip::transaction::Handoff`]) — no socket, no serialisation, no
//! re-parse. Everything else (Cx for the S-CSCF, IPsec for the P-CSCF, bytes for the
//! network) comes out of [`Node::poll_output`] for the shell.
//!
//! Network input reaches the S-CSCF when it arrives on the S-CSCF's own address (where
//! application servers send, later), and the P-CSCF otherwise.

use crate::core::{CoreConfig, CoreError, CoreEvent, Pcscf, SaStep, SecurityOp, Stats, Upstream};
use bytes::Bytes;
use scscf::Scscf;
use sip::transaction::{Handoff, TxId};
use sip::{Flow, Protocol, Transmit};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// Which core produced or receives something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The P-CSCF core.
    Pcscf,
    /// The collapsed S-CSCF core.
    Scscf,
}

/// Something the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes; report a failure with [`Node::handle_transport_error`] and the
    /// role.
    Transmit(Role, Transmit),
    /// A Cx request of the S-CSCF; answer with [`Node::handle_cx_answer`].
    Cx {
        /// Correlation token.
        token: u64,
        /// The request.
        request: diameter::Message,
    },
    /// IPsec work of the P-CSCF.
    Security(SecurityOp),
    /// Something worth logging or counting.
    Event(Event),
}

/// An event of either core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// From the P-CSCF.
    Pcscf(CoreEvent),
    /// From the S-CSCF.
    Scscf(scscf::Event),
}

/// The P-CSCF, and in collapsed mode the S-CSCF. See the module docs.
pub struct Node {
    pcscf: Pcscf,
    scscf: Option<Scscf>,
    out: VecDeque<Output>,
}

impl Node {
    /// The P-CSCF in front of an external S-CSCF.
    pub fn proxy(cfg: CoreConfig, upstream: Upstream) -> Result<Node, CoreError> {
        Ok(Node {
            pcscf: Pcscf::new(cfg, upstream)?,
            scscf: None,
            out: VecDeque::new(),
        })
    }

    /// The P-CSCF with our S-CSCF in the same process.
    pub fn collapsed(
        cfg: CoreConfig,
        scscf: scscf::Config,
        visited_network_id: String,
    ) -> Result<Node, CoreError> {
        let upstream = Upstream {
            address: scscf.address,
            protocol: Protocol::InProcess,
            route: None,
            visited_network_id,
            reg_event: true,
        };
        // Terminating requests reach our P-CSCF in memory, along the Path it registered.
        let mut scscf = scscf;
        let p_addr = SocketAddr::new(cfg.local_ip, cfg.sip_port);
        if !scscf.routing.local_peers.contains(&p_addr) {
            scscf.routing.local_peers.push(p_addr);
        }
        Ok(Node {
            pcscf: Pcscf::new(cfg, upstream)?,
            scscf: Some(Scscf::new(scscf)),
            out: VecDeque::new(),
        })
    }

    /// Takes every tag and branch of both cores from `seed`: the same inputs then give
    /// the same bytes (tests; production uses OS entropy).
    pub fn with_seed(mut self, seed: u64) -> Node {
        self.pcscf = self.pcscf.with_ids(sip::Ids::seeded(seed));
        self.scscf = self
            .scscf
            .map(|s| s.with_ids(sip::Ids::seeded(seed.wrapping_add(1))));
        self
    }

    /// Whether our P-CSCF subscribes to each registered user's reg event (default: yes,
    /// TS 24.229 §5.2.3).
    pub fn with_reg_event(mut self, on: bool) -> Node {
        self.pcscf.set_reg_event(on);
        self
    }

    /// The collapsed S-CSCF's application-server settings (`[isc]`); nothing in proxy
    /// mode.
    pub fn with_isc(mut self, isc: scscf::Isc) -> Node {
        self.scscf = self.scscf.map(|s| s.with_isc(isc));
        self
    }

    /// The P-CSCF's admission limits other than the defaults.
    pub fn with_admission(mut self, cfg: crate::core::AdmissionConfig) -> Node {
        self.pcscf = self.pcscf.with_admission(cfg);
        self
    }

    /// The shell's report on its input backlog (see [`Pcscf::set_overloaded`]).
    pub fn set_overloaded(&mut self, on: bool) {
        self.pcscf.set_overloaded(on);
    }

    /// Lets requests toward UEs move to TCP (see [`Pcscf::set_tcp_to_ue`]).
    pub fn with_tcp_to_ue(mut self, rule: sip::SizeRule, through_sa: bool) -> Node {
        self.pcscf.set_tcp_to_ue(rule, through_sa);
        self
    }

    /// The P-CSCF core.
    pub fn pcscf(&self) -> &Pcscf {
        &self.pcscf
    }

    /// The S-CSCF core, in collapsed mode.
    pub fn scscf(&self) -> Option<&Scscf> {
        self.scscf.as_ref()
    }

    /// True in proxy mode.
    pub fn is_proxy(&self) -> bool {
        self.scscf.is_none()
    }

    /// The P-CSCF's counters, with the S-CSCF's resynchronisations in collapsed mode.
    pub fn stats(&self) -> Stats {
        self.pcscf.stats()
    }

    fn pcscf_addr(&self) -> SocketAddr {
        let c = self.pcscf.config();
        SocketAddr::new(c.local_ip, c.sip_port)
    }

    // ---- inputs --------------------------------------------------------------------

    /// Bytes received from the network.
    pub fn handle_inbound(&mut self, flow: Flow, data: Bytes, now: Instant) {
        match &mut self.scscf {
            Some(s) if flow.local == Some(s.config().address) => s.handle_inbound(flow, data, now),
            _ => self.pcscf.handle_inbound(flow, data, now),
        }
        self.shuttle(now);
    }

    /// The Cx answer (or why there is none) for `token`.
    pub fn handle_cx_answer(
        &mut self,
        token: u64,
        answer: Result<diameter::Message, diameter::RequestError>,
        now: Instant,
    ) {
        if let Some(s) = &mut self.scscf {
            s.handle_cx_answer(token, answer, now);
        }
        self.shuttle(now);
    }

    /// A request of the HSS (RTR, PPR) for the collapsed S-CSCF, answered at once; in
    /// proxy mode nobody here talks Cx (3001 COMMAND_UNSUPPORTED).
    pub fn handle_cx_request(
        &mut self,
        req: &diameter::Message,
        now: Instant,
    ) -> diameter::Message {
        let a = match &mut self.scscf {
            Some(s) => s.handle_cx_request(req, now),
            None => {
                diameter::Message::error_answer(req, diameter::result::COMMAND_UNSUPPORTED, None)
            }
        };
        self.shuttle(now);
        a
    }

    /// The shell's report on a [`SecurityOp::Prepare`].
    pub fn handle_security_ready(
        &mut self,
        token: u64,
        result: Result<xfrm::SetId, secagree::SipIoError>,
        now: Instant,
    ) {
        self.pcscf.handle_security_ready(token, result, now);
        self.shuttle(now);
    }

    /// The shell's report on a [`SecurityOp::Promote`], [`SecurityOp::Retire`] or
    /// [`SecurityOp::Delete`] (see [`Pcscf::handle_security_result`]).
    pub fn handle_security_result(
        &mut self,
        id: xfrm::SetId,
        step: SaStep,
        result: Result<(), secagree::SipIoError>,
        now: Instant,
    ) {
        self.pcscf.handle_security_result(id, step, result, now);
        self.shuttle(now);
    }

    /// A [`Output::Transmit`] of `role` could not be sent.
    pub fn handle_transport_error(&mut self, role: Role, tx: Option<TxId>, now: Instant) {
        match (role, tx, &mut self.scscf) {
            (Role::Pcscf, Some(id), _) => self.pcscf.handle_transport_error(id, now),
            (Role::Scscf, Some(id), Some(s)) => s.handle_transport_error(id, now),
            _ => {}
        }
        self.shuttle(now);
    }

    /// Fire due timers of both cores.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pcscf.handle_timeout(now);
        if let Some(s) = &mut self.scscf {
            s.handle_timeout(now);
        }
        self.shuttle(now);
    }

    // ---- outputs -------------------------------------------------------------------

    /// Next output for the shell.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let p = self.pcscf.poll_timeout();
        let s = self.scscf.as_mut().and_then(Scscf::poll_timeout);
        sip::transaction::earliest(p, s)
    }

    /// Moves messages between the cores until both are quiet, collecting everything
    /// else for the shell.
    fn shuttle(&mut self, now: Instant) {
        let p_addr = self.pcscf_addr();
        loop {
            let mut moved = false;
            while let Some(o) = self.pcscf.poll_output() {
                moved = true;
                match o {
                    crate::core::Output::Handoff(h) => self.hand_to_scscf(h, p_addr, now),
                    crate::core::Output::Transmit(t) => {
                        self.out.push_back(Output::Transmit(Role::Pcscf, t))
                    }
                    crate::core::Output::Security(op) => self.out.push_back(Output::Security(op)),
                    crate::core::Output::Event(e) => {
                        self.out.push_back(Output::Event(Event::Pcscf(e)))
                    }
                }
            }
            let Some(s) = &mut self.scscf else { break };
            let s_addr = s.config().address;
            while let Some(o) = s.poll_output() {
                moved = true;
                match o {
                    scscf::Output::Handoff(h) => {
                        if h.flow.remote == p_addr {
                            let flow = Flow::new(p_addr, s_addr, Protocol::InProcess);
                            self.pcscf.handle_message(h.message, flow, now);
                        } else {
                            tracing::warn!(to = %h.flow.remote, "in-process message to no core");
                        }
                    }
                    scscf::Output::Transmit(t) => {
                        self.out.push_back(Output::Transmit(Role::Scscf, t))
                    }
                    scscf::Output::Cx { token, request } => {
                        self.out.push_back(Output::Cx { token, request })
                    }
                    scscf::Output::Event(e) => self.out.push_back(Output::Event(Event::Scscf(e))),
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn hand_to_scscf(&mut self, h: Handoff, from: SocketAddr, now: Instant) {
        match &mut self.scscf {
            Some(s) if h.flow.remote == s.config().address => {
                let flow = Flow::new(h.flow.remote, from, Protocol::InProcess);
                s.handle_message(h.message, flow, now);
            }
            _ => tracing::warn!(to = %h.flow.remote, "in-process message to no core"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IpsecPolicy;
    use diameter::{avp, result, Avp};
    use std::time::Duration;

    fn node(seed: u64) -> Node {
        let cfg = CoreConfig {
            domain: "ims.test".into(),
            local_ip: [127, 0, 0, 1].into(),
            sip_port: 5060,
            policy: IpsecPolicy::Off,
            ipsec_available: false,
            prefs: secagree::AlgPrefs::default(),
            spi_range: (4096, 4105),
            port_range: (31100, 31109),
            default_expires: 600,
            auth_timeout: Duration::from_secs(30),
            retire_grace: Duration::from_secs(2),
            max_challenges_per_impi: 3,
            limits: sip::Limits::default(),
        };
        let s = scscf::Config {
            domain: "ims.test".into(),
            address: SocketAddr::from(([127, 0, 0, 1], 6060)),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            auth_timeout: Duration::from_secs(30),
            max_challenges_per_impi: 3,
            cx: scscf::CxIdentity {
                origin_host: "scscf.ims.test".into(),
                origin_realm: "ims.test".into(),
                destination_realm: "ims.test".into(),
                server_name: "sip:127.0.0.1:6060".into(),
            },
            limits: sip::Limits::default(),
            routing: Default::default(),
        };
        Node::collapsed(cfg, s, "ims.test".into())
            .unwrap()
            .with_seed(seed)
    }

    /// The 401 a UE gets for one REGISTER, through both cores and a fixed vector.
    fn challenge_bytes(seed: u64) -> Vec<u8> {
        let mut n = node(seed);
        let now = Instant::now();
        let register = "REGISTER sip:ims.test SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKue1\r\n\
            Max-Forwards: 70\r\nFrom: <sip:alice@ims.test>;tag=1\r\nTo: <sip:alice@ims.test>\r\n\
            Call-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:127.0.0.2:5060>\r\n\
            Content-Length: 0\r\n\r\n";
        let flow = Flow::new(
            SocketAddr::from(([127, 0, 0, 1], 5060)),
            SocketAddr::from(([127, 0, 0, 2], 5060)),
            Protocol::Udp,
        );
        n.handle_inbound(flow, Bytes::from_static(register.as_bytes()), now);
        let mut out = Vec::new();
        while let Some(o) = n.poll_output() {
            match o {
                Output::Cx { token, request } => {
                    let answer = diameter::Message::answer_for(&request)
                        .with(Avp::grouped(
                            avp::SIP_AUTH_DATA_ITEM,
                            [
                                Avp::octets(avp::SIP_AUTHENTICATE, vec![1u8; 32]),
                                Avp::octets(avp::SIP_AUTHORIZATION, vec![2u8; 8]),
                                Avp::octets(avp::CONFIDENTIALITY_KEY, vec![3u8; 16]),
                                Avp::octets(avp::INTEGRITY_KEY, vec![4u8; 16]),
                            ],
                        ))
                        .with_result_code(result::SUCCESS);
                    n.handle_cx_answer(token, Ok(answer), now);
                }
                Output::Transmit(Role::Pcscf, t) => out.extend_from_slice(&t.payload),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn a_seed_makes_both_cores_reproducible() {
        let a = challenge_bytes(7);
        assert!(
            a.starts_with(b"SIP/2.0 401"),
            "{}",
            String::from_utf8_lossy(&a)
        );
        assert!(
            !String::from_utf8_lossy(&a).contains("ck="),
            "keys stay between the cores"
        );
        assert_eq!(a, challenge_bytes(7), "same seed, same bytes");
        assert_ne!(a, challenge_bytes(8), "the To-tag comes from the seed");
    }
}
