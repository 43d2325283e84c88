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

use crate::core::{CoreConfig, CoreError, CoreEvent, Pcscf, SecurityOp, Stats, Upstream};
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
        };
        Ok(Node {
            pcscf: Pcscf::new(cfg, upstream)?,
            scscf: Some(Scscf::new(scscf)),
            out: VecDeque::new(),
        })
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

    /// A [`Output::Transmit`] of `role` could not be sent.
    pub fn handle_transport_error(&mut self, role: Role, tx: Option<TxId>, now: Instant) {
        if let (Role::Pcscf, Some(id)) = (role, tx) {
            self.pcscf.handle_transport_error(id, now);
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
        match (p, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
