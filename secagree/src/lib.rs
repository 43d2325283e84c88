//! sec-agree for both ends of the Gm interface (RFC 3329, TS 33.203 §7, TS 24.229 §5.1.1.2 /
//! §5.2.2): which mechanism the P-CSCF picks from Security-Client, the Security-Server it
//! answers with, the check of Security-Verify, the IPsec SA set both ends derive from those
//! headers and CK/IK, and [`SipIo`], the transport both ends send SIP through so that
//! protected flows go through whichever IPsec backend is active.
//!
//! The P-CSCF and the UE simulator share this crate on purpose: an SA table that is built
//! by one function cannot come out mirrored wrongly at one end.

mod io;
mod negotiate;

pub use io::{IpsecMode, SipIo, SipIoError};
pub use negotiate::{
    check_verify, choose, client_offers, sa_set, server_mechanism, AlgPrefs, Choice,
};

/// Why sec-agree failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecAgreeError {
    /// Security-Client has no `ipsec-3gpp` mechanism at all.
    #[error("Security-Client offers no ipsec-3gpp mechanism")]
    NoIpsecOffer,
    /// Every `ipsec-3gpp` offer is incomplete or uses algorithms we do not accept.
    #[error("no ipsec-3gpp offer with acceptable algorithms, ESP transport mode, SPIs and ports")]
    NoAcceptableOffer,
    /// The UE's mechanism lacks SPIs or ports.
    #[error("Security-Client mechanism lacks spi-c/spi-s/port-c/port-s")]
    IncompleteOffer,
    /// The P-CSCF's mechanism lacks something or names an unknown algorithm.
    #[error("Security-Server mechanism is incomplete or names an unknown algorithm")]
    IncompleteServer,
    /// Security-Verify differs from the Security-Server sent (RFC 3329 §2.3.1).
    #[error("Security-Verify does not match the Security-Server we sent (possible bid-down)")]
    VerifyMismatch,
    /// The SPIs/ports/addresses do not make a valid SA set.
    #[error(transparent)]
    InvalidSet(#[from] xfrm::model::InvalidSaSet),
}
