//! The error type of the backends.

use crate::esp::EspError;
use crate::model::{BadTransition, InvalidSaSet};
use crate::pool::PoolError;

/// Text of [`XfrmError::KernelLacksEsp`], stable for operators and tests.
pub const NO_ESP_MESSAGE: &str = "kernel lacks ESP (CONFIG_INET_ESP); use the userspace backend";

/// Errors of installing, deleting and listing SA sets.
#[derive(Debug, thiserror::Error)]
pub enum XfrmError {
    /// The kernel has XFRM but no ESP protocol handler (NEWSA answers EPROTONOSUPPORT).
    #[error("{}", NO_ESP_MESSAGE)]
    KernelLacksEsp,
    /// A netlink request was refused; `message` is the kernel's extended ack text, if any.
    #[error("netlink {op} failed: {}{}", std::io::Error::from_raw_os_error(*errno), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Netlink {
        /// What we asked (e.g. "NEWSA spi 0x00001000").
        op: String,
        /// Positive errno.
        errno: i32,
        /// Extended ack message (NLMSGERR_ATTR_MSG).
        message: Option<String>,
    },
    /// Socket-level failure (including no answer within the timeout).
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel sent something we cannot parse.
    #[error("cannot decode netlink answer: {0}")]
    Decode(String),
    /// Handle not known to this backend.
    #[error("unknown SA set handle {0}")]
    UnknownSet(u64),
    /// Invalid SA set.
    #[error(transparent)]
    InvalidSet(#[from] InvalidSaSet),
    /// Illegal state change of a set.
    #[error(transparent)]
    Transition(#[from] BadTransition),
    /// Pool exhausted or misconfigured.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// ESP processing error (userspace backend).
    #[error(transparent)]
    Esp(#[from] EspError),
    /// No SA matches the addresses/ports of an outbound datagram (userspace backend).
    #[error("no outbound SA from {src} to {dst}")]
    NoOutboundSa {
        /// Source of the datagram.
        src: std::net::SocketAddr,
        /// Destination of the datagram.
        dst: std::net::SocketAddr,
    },
    /// Another process in this network namespace owns our tag ([`crate::claim`]): a second
    /// instance with the same identity, or a tag collision. Nothing was flushed.
    #[error(
        "another process in this network namespace already uses XFRM tag {0} (a second \
         instance with the same listen address?); its IPsec state was left alone"
    )]
    TagInUse(crate::kernel::Tag),
    /// An SPI is already installed (userspace backend keeps SPIs unique).
    #[error("SPI 0x{0:08x} already installed")]
    SpiInUse(u32),
}
