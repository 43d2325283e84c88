//! Which transport a request goes on: the RFC 3261 §18.1.1 size rule, in one sans-IO place
//! that every UA and proxy of the workspace shares (through
//! [`crate::transaction::Transactions::send_request_sized`]).
//!
//! §18.1.1: a request within 200 bytes of the path MTU, or larger than 1300 bytes when the
//! MTU is unknown, MUST go over a congestion-controlled transport (TCP), with the top Via's
//! transport changed to match; if that fails (connection refused or reset) the client
//! SHOULD retry over UDP. Responses are not subject to the rule: they go back on the flow
//! of their request (§18.2.2), which the transaction layer does already.
//!
//! Why it matters here: our REGISTER is about 1,750 bytes and an INVITE with a handset's
//! SDP about 1,780; over a 1,500-byte path with ESP they fragment, and handsets (TS 24.229
//! §5.1.1.2, §5.2.2) send them over TCP to the P-CSCF's protected server port.

use crate::error::ParseError;
use crate::flow::{Flow, Protocol};
use crate::message::Message;

/// RFC 3261 §18.1.1's threshold when the path MTU is unknown (a 1,500-byte MTU minus 200).
pub const DEFAULT_THRESHOLD: usize = 1300;

/// The size rule for one destination: whether TCP is possible on the path, and the size
/// above which a request must use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRule {
    /// A request larger than this many bytes goes over TCP (the MTU − 200 rule).
    pub threshold: usize,
    /// Whether the path to the destination can carry TCP at all (for example not through
    /// an SA of the userspace ESP backend, which has no TCP stack).
    pub tcp: bool,
}

impl Default for SizeRule {
    fn default() -> Self {
        SizeRule {
            threshold: DEFAULT_THRESHOLD,
            tcp: true,
        }
    }
}

impl SizeRule {
    /// The rule with `threshold` (bytes) on a path that carries TCP.
    pub fn new(threshold: usize) -> SizeRule {
        SizeRule {
            threshold,
            tcp: true,
        }
    }

    /// The same rule on a path without TCP: every request stays on UDP.
    pub fn without_tcp(self) -> SizeRule {
        SizeRule { tcp: false, ..self }
    }

    /// The protocol for a request of `len` bytes that the caller meant to send over
    /// `protocol`. Only UDP is ever changed: a request already on a reliable transport
    /// (or handed to a core in this process) stays there.
    pub fn protocol_for(&self, protocol: Protocol, len: usize) -> Protocol {
        if protocol == Protocol::Udp && self.tcp && len > self.threshold {
            Protocol::Tcp
        } else {
            protocol
        }
    }
}

/// Sets the transport token of the top Via to `protocol`'s (§18.1.1: "the Via header field
/// value transport must be changed"). `UDP` and `TCP` have the same length, so the message
/// size does not change and the rule's decision stays valid.
pub fn set_via_transport(msg: &mut Message, protocol: Protocol) -> Result<(), ParseError> {
    let mut via = msg.top_via()?;
    if via.transport.eq_ignore_ascii_case(protocol.as_str()) {
        return Ok(());
    }
    via.transport = protocol.as_str().to_string();
    msg.replace_top_value("Via", &via.to_string());
    Ok(())
}

/// Applies `rule` to a request of `len` encoded bytes about to go on `flow`: the flow it
/// must use instead, with the top Via rewritten to match, or `None` when it stays as it
/// is. A Via that cannot be parsed keeps the request where it was (a request we cannot
/// describe correctly is better sent as the caller built it than with a lying Via).
pub fn apply(rule: &SizeRule, msg: &mut Message, flow: Flow, len: usize) -> Option<Flow> {
    let protocol = rule.protocol_for(flow.protocol, len);
    if protocol == flow.protocol {
        return None;
    }
    set_via_transport(msg, protocol).ok()?;
    Some(Flow { protocol, ..flow })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn request(body_len: usize) -> Message {
        let body = "v".repeat(body_len);
        let raw = format!(
            "INVITE sip:bob@ims.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKa1;rport\r\n\
             Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKa0\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@ims.test>;tag=1\r\nTo: <sip:bob@ims.test>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    fn flow(p: Protocol) -> Flow {
        let l: SocketAddr = "10.0.0.2:5062".parse().unwrap();
        let r: SocketAddr = "10.0.0.1:5064".parse().unwrap();
        Flow::new(l, r, p)
    }

    #[test]
    fn only_udp_above_the_threshold_moves_to_tcp() {
        let r = SizeRule::default();
        assert_eq!(r.threshold, 1300);
        assert_eq!(r.protocol_for(Protocol::Udp, 1300), Protocol::Udp);
        assert_eq!(r.protocol_for(Protocol::Udp, 1301), Protocol::Tcp);
        assert_eq!(r.protocol_for(Protocol::Tcp, 10), Protocol::Tcp);
        assert_eq!(
            r.protocol_for(Protocol::InProcess, 9000),
            Protocol::InProcess
        );
        let small = SizeRule::new(500);
        assert_eq!(small.protocol_for(Protocol::Udp, 501), Protocol::Tcp);
    }

    #[test]
    fn a_path_without_tcp_keeps_udp_whatever_the_size() {
        let r = SizeRule::default().without_tcp();
        assert_eq!(r.protocol_for(Protocol::Udp, 60_000), Protocol::Udp);
    }

    #[test]
    fn apply_rewrites_only_the_top_via_and_keeps_the_size() {
        let mut m = request(1600);
        let before = m.to_bytes().len();
        let f = apply(&SizeRule::default(), &mut m, flow(Protocol::Udp), before);
        assert_eq!(f, Some(flow(Protocol::Tcp)));
        let vias = m.vias().unwrap();
        assert_eq!(vias[0].transport, "TCP");
        assert_eq!(vias[0].branch(), Some("z9hG4bKa1"));
        assert!(vias[0].rport().is_some(), "parameters survive");
        assert_eq!(vias[1].transport, "UDP", "only our own Via changes");
        assert_eq!(m.to_bytes().len(), before);
        // and back again, as the fallback to UDP does
        set_via_transport(&mut m, Protocol::Udp).unwrap();
        assert_eq!(m.top_via().unwrap().transport, "UDP");
    }

    #[test]
    fn apply_leaves_small_requests_alone() {
        let mut m = request(10);
        let len = m.to_bytes().len();
        let before = m.to_bytes();
        assert_eq!(
            apply(&SizeRule::default(), &mut m, flow(Protocol::Udp), len),
            None
        );
        assert_eq!(m.to_bytes(), before, "not a byte changed");
    }

    #[test]
    fn a_request_without_via_stays_where_it_was() {
        let mut m = Message::parse(
            b"OPTIONS sip:x@ims.test SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            apply(&SizeRule::new(10), &mut m, flow(Protocol::Udp), 5000),
            None
        );
    }
}
