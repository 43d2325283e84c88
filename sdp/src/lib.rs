//! `sdp`: the Session Description Protocol as IMS voice uses it, sans-IO.
//!
//! - [`Session::parse`] reads a body (RFC 8866) into typed lines and never panics; every line
//!   keeps its bytes, so [`Session::to_bytes`] of an unedited parse is the input exactly (a
//!   CSCF relays what it received) and an edit rewrites only the lines it touches.
//! - Typed values for `v/o/s/c/t/b/m` ([`Origin`], [`Connection`], [`Bandwidth`],
//!   [`MediaLine`]…) and the attributes voice needs ([`Attribute`]: rtpmap, fmtp, ptime,
//!   maxptime, direction, rtcp, mid, and the RFC 3312 `curr`/`des`/`conf`).
//! - Format parameters: [`AmrParams`] (AMR/AMR-WB, RFC 4867 §8.1) and
//!   [`TelephoneEvents`] (RFC 4733).
//! - Offer/answer: [`answer`] (RFC 3264 §6, RFC 4867 §8.3.1 matching) from [`LocalCaps`], and
//!   the preconditions table [`QosStatus`] for offers, answers and the UE's UPDATE.
//! - Offers: [`VolteOffer`] (a VoLTE handset) and [`G711Offer`] (a SIP phone).
//!
//! ```
//! use sdp::{answer, AmrKind, LocalCaps, LocalCodec, Origin, Session, VolteOffer};
//!
//! let ue: std::net::IpAddr = "2001:db8::5".parse().unwrap();
//! let offer = VolteOffer::new(Origin::new("-", "1", 1, ue), ue, 4000).build();
//! let wire = offer.to_bytes();
//!
//! // A proxy relays what it parsed unchanged.
//! let relayed = Session::parse(&wire)?;
//! assert_eq!(relayed.to_bytes(), wire);
//!
//! // An AMR-NB <-> PCMA bridge answers with octet-aligned AMR and DTMF at 8000 Hz.
//! let me: std::net::IpAddr = "2001:db8::9".parse().unwrap();
//! let mut caps = LocalCaps::new(Origin::new("as", "7", 1, me), me, 6000);
//! caps.codecs = vec![
//!     LocalCodec::amr(AmrKind::Nb, true),
//!     LocalCodec::pcma(),
//!     LocalCodec::telephone_event(8000),
//! ];
//! let a = answer(&relayed, &caps)?;
//! assert_eq!(a.media()[0].line().formats, ["99", "101"]);
//! # Ok::<(), sdp::SdpError>(())
//! ```

mod amr;
mod answer;
mod attr;
mod build;
mod dtmf;
mod error;
mod model;
mod precondition;
mod session;

pub use amr::{AmrKind, AmrParams};
pub use answer::{answer, LocalCaps, LocalCodec};
pub use attr::{
    Attribute, DesiredStatus, Direction, Fmtp, PrecondDirection, Rtcp, Rtpmap, StatusLine,
    StatusType, Strength,
};
pub use build::{G711Offer, VolteOffer};
pub use dtmf::TelephoneEvents;
pub use error::SdpError;
pub use model::{AddrType, Bandwidth, BwType, Connection, Field, MediaLine, Origin, Timing};
pub use precondition::{QosStatus, Segment};
pub use session::{Codec, LineEnding, Media, Session};
