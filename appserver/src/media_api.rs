//! The contract between the B2BUA (signalling, `b2bua`) and the media plane (`mediaplane`)
//! of the AMR ⇄ PCMA bridge (issue 12).
//!
//! The B2BUA deals only in SDP: it asks the plane which codecs a leg can take, allocates a
//! media session (one local RTP port per leg, RTCP on the next port, RFC 3550 §11), writes
//! those addresses into the offers and answers it sends, and tells the plane each time a
//! leg's offer/answer completes (first INVITE, re-INVITE, UPDATE). The plane derives from the
//! two SDPs of a leg what it receives and sends there, relays RTP untouched in payload when
//! both legs agreed on the same codec, and transcodes otherwise. When a leg stays silent past
//! the media timeout the plane reports it, and the B2BUA ends both legs.

use std::net::SocketAddr;

/// One side of a bridged call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// Toward the IMS core (the VoLTE UE's side; AMR usually).
    Ims,
    /// Toward the configured SIP peer (PBX, trunk, desk phone; PCMA usually).
    Sip,
}

impl Leg {
    /// The other leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::Ims => Leg::Sip,
            Leg::Sip => Leg::Ims,
        }
    }
}

/// A media session's handle, unique for the plane's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(pub u64);

/// What [`MediaControl::allocate`] reserved: the local RTP address of each leg (RTCP on the
/// next port up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    /// The session's handle.
    pub id: MediaId,
    /// Where the IMS side sends its RTP.
    pub ims: SocketAddr,
    /// Where the SIP side sends its RTP.
    pub sip: SocketAddr,
}

/// What the plane reports on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP or RTCP arrived on `leg` for the configured media timeout: end the call.
    Timeout {
        /// The session.
        id: MediaId,
        /// The silent leg.
        leg: Leg,
    },
}

/// Why the plane refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Every port of the configured range is in use.
    #[error("no free media ports in the configured range")]
    NoPorts,
    /// No such session (released, or timed out).
    #[error("no media session {0:?}")]
    Unknown(MediaId),
    /// The two SDPs of a leg agree on no codec the plane can send and receive.
    #[error("no usable codec on the {leg:?} leg: {reason}")]
    Codec {
        /// The leg.
        leg: Leg,
        /// What was wrong, for the log and the SIP reason phrase.
        reason: String,
    },
}

/// The media plane as the B2BUA drives it. Implemented by `mediaplane::MediaPlane`; calls
/// return at once (no IO on the caller's task).
pub trait MediaControl: Send + Sync + 'static {
    /// The payload formats the plane can receive and send on `leg`, in preference order,
    /// for the B2BUA's offers and answers (with `sdp::answer`): on the IMS leg AMR-NB in
    /// both payload formats (and AMR-WB when built with it), PCMA, PCMU, telephone-event at
    /// 8000 and 16000 Hz; on the SIP leg what the configuration allows toward the peer.
    fn codecs(&self, leg: Leg) -> Vec<sdp::LocalCodec>;

    /// Reserves the ports of a new media session.
    fn allocate(&self) -> Result<Allocated, MediaError>;

    /// The offer/answer on `leg` completed: `local` is the SDP we sent on that leg, `remote`
    /// the SDP the peer sent (whichever was offer or answer). Called again after every
    /// re-INVITE or UPDATE that carried SDP; media flows once both legs are known.
    fn negotiated(
        &self,
        id: MediaId,
        leg: Leg,
        local: &sdp::Session,
        remote: &sdp::Session,
    ) -> Result<(), MediaError>;

    /// Ends the session and frees its ports. Unknown ids are ignored (idempotent).
    fn release(&self, id: MediaId);
}
