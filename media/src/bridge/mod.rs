//! The media plane of a bridged call, sans-IO: one [`Channel`] per call joins leg A (IMS,
//! usually AMR) and leg B (SIP, usually G.711).
//!
//! Each leg's [`LegSpec`] comes from the two SDPs of its offer/answer. When both legs use the
//! same codec the channel relays: the payload crosses untouched (AMR converted between the
//! bandwidth-efficient and octet-aligned formats without decoding when the legs disagree on
//! `octet-align`, RFC 4867 §4.3/§4.4) and the header is rewritten per leg
//! ([`crate::rewrite::LegRewriter`], RFC 7667 §3.2.1.3 media translator). Otherwise it
//! transcodes through 20 ms frames of linear PCM: an adaptive [`jitter::JitterBuffer`]
//! per received stream, the [`crate::codec`] decoder of the sending leg, a resampler when
//! the rates differ (AMR-WB), and the encoder or G.711 of the other leg packetized at that
//! leg's ptime. AMR rate control follows RFC 4867 §4.3.1: we encode at the highest mode of
//! the mode-set at or below the peer's last CMR and send as CMR the highest mode we accept.
//! telephone-event crosses with its duration converted between clock rates (RFC 4733 §2.5,
//! [`crate::telephone_event`]) and the other leg's payload type. RTCP is terminated per leg:
//! each leg gets SR/RR about what it receives and sends there (RFC 3550 §6.4).
//!
//! Inputs carry `now`; outputs are polled: [`Channel::poll_transmit`] copies the next
//! datagram into the caller's buffer, [`Channel::poll_event`] reports a silent leg, and
//! [`Channel::poll_timeout`] says when to call [`Channel::handle_timeout`]. Buffers are
//! allocated when a channel or a leg is set up, never per packet.

mod channel;
pub mod jitter;
mod leg;

pub use channel::{
    BridgeError, Channel, ChannelConfig, ChannelEvent, ChannelStats, Mode, Side, Transmit,
    MAX_DATAGRAM,
};
pub use leg::{DtmfSpec, LegCodec, LegError, LegSpec};
