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
//! A Cx server and a client over TCP (the tokio shell):
//!
//! ```no_run
//! use std::time::Duration;
//! use diameter::{app, avp, cmd, result, Avp, FindAvp, Message, PeerConfig, PeerHandle, Server};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // HSS side: answer every request; a struct implementing `Handler` works too.
//! let config = PeerConfig::cx("hss.ims.lab", "ims.lab")
//!     .allow_peers([diameter::AllowedPeer::new("scscf.ims.lab", ["127.0.0.1".parse()?])]);
//! let server = Server::bind(("0.0.0.0", diameter::transport::DEFAULT_PORT), config,
//!     |req: Message| async move {
//!         match req.get_utf8(avp::USER_NAME) {
//!             Ok(_impi) => Message::answer_for(&req).with_result_code(result::SUCCESS),
//!             Err(e) => Message::error_answer(&req, e.result_code(), Some(&e.to_string())),
//!         }
//!     }).await?;
//! let (hss, _task) = server.spawn();
//!
//! // S-CSCF side: one connection, many requests in flight.
//! let scscf = PeerHandle::connect("127.0.0.1:3868", PeerConfig::cx("scscf.ims.lab", "ims.lab")).await?;
//! let uar = Message::request(app::CX, cmd::USER_AUTHORIZATION)
//!     .with(Avp::utf8(avp::SESSION_ID, scscf.new_session_id()))
//!     .with(Avp::utf8(avp::USER_NAME, "alice@ims.lab"));
//! let uaa = scscf.request(uar).await?;
//! assert!(uaa.result().is_some_and(|r| r.is_success()));
//!
//! // The HSS pushes an RTR to the S-CSCF over the same connection.
//! let rtr = Message::request(app::CX, cmd::REGISTRATION_TERMINATION)
//!     .with(Avp::utf8(avp::SESSION_ID, "hss.ims.lab;1;1"));
//! let _rta = hss.request("scscf.ims.lab", rtr).await;
//! # Ok(()) }
//! ```
//!
//! Layers:
//! - [`Message`], [`Avp`], [`FindAvp`]: the codec (RFC 6733 §3–§4). Decoding a [`bytes::Bytes`]
//!   shares the buffer with every AVP payload; unknown AVPs are kept, never fatal.
//! - [`dict`]: AVP/command definitions and result codes ([`avp`], [`cmd`], [`app`], [`result`]).
//! - [`peer::Peer`]: the sans-IO connection state machine (capabilities exchange, watchdog,
//!   disconnect, request/answer matching, protocol error answers).
//! - [`transport`]: tokio TCP client and server around [`peer::Peer`] (SCTP with feature `sctp`).
//!
//! Cargo features: `sctp` (SCTP transport via tokio-sctp; links libsctp, fails with
//! [`TransportError::SctpUnsupported`] where the kernel lacks SCTP) and `testkit`
//! (a freeDiameter launcher for interop tests).
//!
//! Peers are identified by Origin-Host and source address ([`AllowedPeer`]); a server keeps
//! one connection per Origin-Host and refuses a second one while the first is open (RFC 6733
//! §5.6, R-Open + R-Conn-CER → R-Reject).
//!
//! Not implemented: peer election for simultaneous connections (RFC 6733 §5.6.4; our
//! server never initiates, so it never has the two connections the election picks from),
//! duplicate request detection (T flag, §6.1.5), the RFC 3539 REOPEN state (a
//! [`ReconnectingClient`] simply opens a fresh connection), TLS/DTLS.

#![warn(missing_docs)]

mod codec;
pub mod dict;
pub mod error;
pub mod message;
pub mod peer;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;

pub use crate::codec::{Avp, FindAvp, Value, MAX_GROUP_DEPTH};
pub use crate::dict::{app, avp, cmd, enums, result, AvpDef, AvpKey, AvpType, VENDOR_3GPP};
pub use crate::error::{AvpError, DecodeError};
pub use crate::message::{frame_length, Message, ResultCode, DEFAULT_MAX_MESSAGE_SIZE};
pub use crate::peer::{AllowedPeer, Peer, PeerConfig, PeerInfo, Refusal};
pub use crate::transport::{
    Client, Handler, PeerHandle, ReconnectingClient, RefusalCounts, RequestError, Server,
    ServerHandle, TransportError,
};
