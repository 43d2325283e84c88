//! # `sip`: SIP for IMS Lab Core
//!
//! Message model, IMS header types, a sans-IO transaction layer (RFC 3261 §17) and
//! thin tokio UDP/TCP transports, for the P-CSCF (stateful proxy + collapsed
//! registrar), the UE simulator and the application server.
//!
//! ## Why our own parser and not `rsipstack`
//!
//! The design notes picked `rsipstack` =0.7.14 for the message model *if it lets us
//! act as a stateful proxy*. A source review of the 0.7.14 package
//! (`src/sip/parser.rs`, `src/sip/headers/`, `src/transaction/`) showed it does
//! not, for these reasons:
//!
//! * **Not byte-preserving.** Headers are parsed eagerly into a typed enum and
//!   re-generated on output: folded lines are unfolded, whitespace is trimmed and
//!   compact names are expanded. RFC 3261 §16.6 lets a proxy change only the
//!   headers it edits; we also want pcaps in which the UE's bytes reach the S-CSCF
//!   unchanged (digest and Security-* values must survive verbatim).
//! * **Silent acceptance of broken framing.** An unparsable Content-Length becomes
//!   0 and a short body is silently truncated; we need typed errors (400/513) and
//!   strict stream framing with a size limit.
//! * **Transactions and transports are fused** into an async endpoint that owns its
//!   sockets; we need sans-IO transactions fed with bytes from any source (our
//!   protected-port sockets, the userspace ESP backend) and a sender that picks the
//!   local socket.
//! * **Weight and speed.** Its default features pull rustls, hickory and
//!   tungstenite, and every header is allocated into a typed value on parse; our
//!   target is ≥ 2,000 full AKA registrations/s through the P-CSCF on 2 cores,
//!   and a lazy parse touches only the headers the proxy actually reads.
//!
//! So this crate has a focused lazy parser: [`Message::parse`] splits the header
//! section into spans of one shared string and frames the body; typed views
//! ([`Via`], [`NameAddr`], [`CSeq`], [`ims`] headers) are parsed on demand; edits
//! replace single fields and everything else is written back byte for byte.
//!
//! ## Layers
//!
//! * [`Message`], [`Uri`], [`NameAddr`], [`Via`], [`CSeq`]: RFC 3261 §7, §19, §20, §25.
//! * [`ims`]: RFC 3329 / TS 33.203 sec-agree, Path (RFC 3327), Service-Route
//!   (RFC 3608), P-headers (RFC 3455, RFC 7315), option tags.
//!   Digest Authorization/WWW-Authenticate parameters belong to `akav1::digest`;
//!   [`auth`] only glues them to [`Message`] (and strips `ck`/`ik` for proxy mode).
//! * [`dialog`]: UA dialogs (RFC 3261 §12): route set, remote target, CSeq order,
//!   in-dialog requests (BYE, re-INVITE, UPDATE, PRACK, ACK for 2xx).
//! * [`builder`]: requests, responses from requests (Via/From/To/Call-ID/CSeq copied,
//!   To-tag), branch/tag/Call-ID generation.
//! * [`transaction`]: sans-IO client/server transactions, INVITE and non-INVITE,
//!   timers as inputs (quinn-proto style `handle_*`/`poll_*`).
//! * [`uas`]: how a core answers requests through its server transactions.
//! * [`size_rule`]: which transport a request takes (RFC 3261 §18.1.1: TCP above 1300
//!   bytes, back to UDP when TCP fails), shared by every UA and proxy.
//! * [`transport`]: tokio UDP/TCP sockets on several local addresses, TCP
//!   connection reuse, stream framing, explicit choice of the sending socket.
//!
//! No parser in this crate panics on input; every failure is a [`ParseError`].

#![warn(missing_docs)]

pub mod auth;
pub mod builder;
pub mod dialog;
pub mod error;
pub mod flow;
pub mod headers;
pub mod ims;
pub mod message;
pub mod method;
pub mod name;
pub mod params;
pub mod proxy;
pub mod reginfo;
pub mod size_rule;
pub mod transaction;
pub mod transport;
pub mod uas;
pub mod uri;

pub use builder::{new_branch, new_call_id, new_tag, Ids, RequestBuilder, ResponseBuilder};
pub use dialog::{Dialog, DialogError, DialogId, DialogState};
pub use error::ParseError;
pub use flow::{Flow, Protocol, Transmit};
pub use headers::{CSeq, Contacts, NameAddr, Via, BRANCH_MAGIC};
pub use message::{
    stream_frame, Frame, Framing, HeaderRef, Limits, Message, StartLine, StreamFramer,
};
pub use method::Method;
pub use name::{compact_of, expand_compact, names_match};
pub use params::{Param, Params};
pub use size_rule::SizeRule;
pub use uri::{Scheme, Uri};
