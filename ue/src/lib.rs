//! `ue`: the IMS UE simulator of IMS Lab Core, an ISIM-holding UE that registers with IMS
//! AKA and sec-agree (TS 24.229 §5.1.1, TS 33.203), installs its side of the IPsec SAs
//! through the same `xfrm` backends as the P-CSCF, re-registers and deregisters.
//!
//! A library only: `imslab ue` (the CLI), `imslab demo`, `imslab bench` and the end-to-end
//! and VM tests live in the `lab` crate and drive the UEs through this API.
//!
//! Layers, in the project's sans-IO shape:
//! - [`Ue`] ([`core`]): no sockets, no clock. Feed it datagrams ([`Ue::handle_datagram`]),
//!   timer expiries ([`Ue::handle_timeout`]), commands ([`Ue::register`] …) and the shell's
//!   SA results ([`Ue::handle_sa_installed`]); drain [`Ue::poll_transmit`],
//!   [`Ue::poll_action`] ([`SaAction`]: install/promote/retire/delete), [`Ue::poll_event`]
//!   ([`UeEvent`], timestamped for ladders) and [`Ue::poll_timeout`]. It owns a
//!   `sip::transaction::Transactions` table and routes responses by transaction to the
//!   registration or the calls ([`Ue::call`], [`Ue::answer`], [`Ue::hangup`],
//!   [`Ue::send_message`] …).
//! - [`shell`]: a tokio task driving many `Ue`s over one [`secagree::SipIo`] (each UE on
//!   its own IP address), with [`UeHandle`] commands that resolve when a procedure ends.
//! - [`fleet`]: register N UEs concurrently and collect their timings (end-to-end tests,
//!   the demo, load).
//!
//! Behaviour worth knowing when reading a capture:
//! - Via carries the port the request really leaves from, with `rport` (RFC 3581), so
//!   responses find the UE whatever the P-CSCF's Via handling; Contact carries the
//!   protected server port (port_us), which stays the same across re-authentications
//!   (TS 33.203 §7.4) while each new SA set gets new SPIs and a new client port
//!   (`port_uc` and `port_uc + 2` alternate, see [`LocalSecurity::generation`]).
//! - Every REGISTER after the first challenge carries the last nonce and a response
//!   computed from its RES (TS 24.229 §5.1.1.4.1), so a P-CSCF may accept a
//!   re-registration without re-authenticating; a deregistration repeats the parameters of
//!   the set in use rather than offering a new one, and is answered like any challenge if
//!   the network challenges it.
//! - A new set is promoted on the 200 OK and the old one retired for `sa_grace`, then
//!   deleted; deregistration and local expiry retire every set the same way.
//! - Calls and MESSAGE ([`call`]): every request leaves from the protected client port to
//!   the P-CSCF's protected server port, initial ones with `Route: <sip:P-CSCF:port_ps;lr>`
//!   and the Service-Route, in-dialog ones with the dialog's route set
//!   ([`sip::dialog`]); the Contact is the registered one (protected server port).
//!   Requests from the network that are not for a call, a MESSAGE or the reg event are
//!   answered (OPTIONS 200, anything else 501).
//! - Transport (RFC 3261 §18.1.1, [`Ue::set_size_rule`]): a request larger than 1300 bytes
//!   (our REGISTER with sec-agree, an INVITE with a handset's SDP) goes over TCP, from the
//!   protected client port to the P-CSCF's protected server port once registered, and
//!   again over UDP if the P-CSCF refuses the connection; the UE listens on TCP as well
//!   as UDP on its ports. Not through userspace-ESP SAs (no TCP stack there): UDP only.
//! - Media ([`media`]): after the answer each call sends RTP every 20 ms (AMR or AMR-WB as
//!   negotiated, by default a bit-checkable test pattern, not audio) from the UE's RTP
//!   port to the peer's `c=`/`m=` address over plain UDP (not the SAs) and counts what
//!   arrives; the statistics come as [`EventKind::CallMedia`] when the call ends.
//! - The reg event ([`regevent`], TS 24.229 §5.1.1.3): after the initial registration the
//!   UE subscribes to its own IMPU (`Event: reg`, [`UeConfig::reg_event`]), refreshes the
//!   subscription, ends it before deregistering, and obeys a NOTIFY that says the network
//!   deregistered it (§5.1.1.7): registration and SAs are dropped at once, without a
//!   de-REGISTER.

pub mod call;
pub mod config;
pub mod core;
pub mod event;
pub mod fleet;
pub mod media;
mod media_io;
pub mod regevent;
pub mod registration;
pub mod shell;
pub mod summary;

pub use self::core::Ue;
pub use call::{
    AnswerMode, CallConfig, CallEnd, CallError, CallPhase, CallRef, CallTimeout, Party,
};
pub use config::{instance_urn, ConfigError, IsimKeys, LocalSecurity, UeConfig};
pub use event::{
    ChallengeError, EventKind, IoFailure, Note, Procedure, RegError, Registered, ResponseError,
    SaInstallError, SaStep, SaSummary, SecAgreeFailure, UeEvent,
};
pub use fleet::{
    loopback_ip, numbered, register_many, run_scripts, FleetReport, ScriptError, Step,
    StepParseError, UeTimings,
};
pub use media::{AudioSource, MediaCodec, MediaConfig, MediaError, MediaStats};
pub use regevent::{RegNotification, SubscriptionEnd, SubscriptionState, SubscriptionStateError};
pub use registration::{refresh_after, RegState, Registration, SaAction};
pub use shell::{
    run, ue_tag, HostEvent, IoConfig, UeHandle, UeHost, UeHostError, UeSnapshot, UE_TAG,
};
/// The reg event document, shared with the S-CSCF that writes it and the P-CSCF.
pub use sip::reginfo;
pub use sip::reginfo::{
    ContactEvent, ContactInfo, ContactState, DocState, RegInfo, RegInfoError, RegistrationInfo,
    RegistrationState,
};
pub use summary::{ladder_line, summarize};
