//! Diameter base protocol (RFC 6733) for IMS Lab Core: codec, dictionary (base, Cx/Dx
//! TS 29.229, Sh TS 29.329), a sans-IO peer state machine and a thin tokio TCP shell.
//!
//! ```
//! use diameter::{app, avp, cmd, result, Avp, FindAvp, Message, VENDOR_3GPP};
//!
//! // A Cx MAR as an S-CSCF sends it.
//! let mar = Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
//!     .with(Avp::utf8(avp::SESSION_ID, "scscf.ims.lab;1;1"))
//!     .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
//!     .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
//!     .with(Avp::utf8(avp::ORIGIN_HOST, "scscf.ims.lab"))
//!     .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
//!     .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
//!     .with(Avp::utf8(avp::USER_NAME, "001010000000001@ims.lab"))
//!     .with(Avp::utf8(avp::PUBLIC_IDENTITY, "sip:001010000000001@ims.lab"))
//!     .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
//!     .with(Avp::grouped(avp::SIP_AUTH_DATA_ITEM, [
//!         Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, "Digest-AKAv1-MD5"),
//!     ]));
//! let wire = mar.encode();
//!
//! // The HSS side: decode, read typed values, answer.
//! let req = Message::decode(wire)?;
//! let impi = req.get_utf8(avp::USER_NAME)?;
//! let item = req.get_grouped(avp::SIP_AUTH_DATA_ITEM)?;
//! assert_eq!(item.get_utf8(avp::SIP_AUTHENTICATION_SCHEME)?, "Digest-AKAv1-MD5");
//! let maa = Message::answer_for(&req)
//!     .with(Avp::utf8(avp::USER_NAME, impi))
//!     .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
//!     .with(Avp::grouped(avp::SIP_AUTH_DATA_ITEM, [
//!         Avp::u32(avp::SIP_ITEM_NUMBER, 1),
//!         Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, "Digest-AKAv1-MD5"),
//!         Avp::octets(avp::SIP_AUTHENTICATE, vec![0u8; 32]),
//!         Avp::octets(avp::SIP_AUTHORIZATION, vec![0u8; 8]),
//!         Avp::octets(avp::CONFIDENTIALITY_KEY, vec![0u8; 16]),
//!         Avp::octets(avp::INTEGRITY_KEY, vec![0u8; 16]),
//!     ]))
//!     .with_result_code(result::SUCCESS);
//! assert_eq!(maa.hop_by_hop, req.hop_by_hop);
//! assert_eq!(maa.session_id(), Some("scscf.ims.lab;1;1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Layers:
//! - [`Message`], [`Avp`], [`FindAvp`]: the codec (RFC 6733 §3–§4). Decoding a [`bytes::Bytes`]
//!   shares the buffer with every AVP payload; unknown AVPs are kept, never fatal.
//! - [`dict`]: AVP/command definitions and result codes ([`avp`], [`cmd`], [`app`], [`result`]).
//! - [`peer::Peer`]: the sans-IO connection state machine (capabilities exchange, watchdog,
//!   disconnect, request/answer matching, protocol error answers).
//! - [`transport`]: tokio TCP client and server around [`peer::Peer`] (SCTP with feature `sctp`).

#![warn(missing_docs)]

mod codec;
pub mod dict;
pub mod error;
pub mod message;
pub mod peer;
pub mod transport;

pub use crate::codec::{Avp, FindAvp, Value, MAX_GROUP_DEPTH};
pub use crate::dict::{app, avp, cmd, enums, result, AvpDef, AvpKey, AvpType, VENDOR_3GPP};
pub use crate::error::{AvpError, DecodeError};
pub use crate::message::{frame_length, Message, ResultCode, DEFAULT_MAX_MESSAGE_SIZE};
pub use crate::peer::{Peer, PeerConfig, PeerInfo};
pub use crate::transport::{
    Client, Handler, PeerHandle, RequestError, Server, ServerHandle, TransportError,
};
