//! IPsec for IMS sec-agree (TS 33.203 §7, RFC 3329): the model of one security association
//! set, SPI/port pools, a kernel XFRM backend and a userspace ESP (RFC 4303) backend behind one
//! API, and the export of live keys for Wireshark.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod backend;
pub mod error;
pub mod esp;
pub mod kernel;
pub mod model;
pub mod netns;
pub mod pool;
pub mod uat;
pub mod userspace;

pub use backend::{select, BackendKind, IpsecBackend, Selected};
pub use error::{XfrmError, NO_ESP_MESSAGE};
pub use esp::{EspCounters, EspError, EspSa};
pub use kernel::SetId;
pub use kernel::{KernelBackend, Tag};
pub use model::{
    Direction, EncryptionAlg, IntegrityAlg, SaDesc, SaKeys, SaKind, SaSet, SaState, Side,
    SocketAddrPair, Spis,
};
pub use pool::{Lease, Pool, PoolError};
pub use userspace::{EspEndpoint, Inbound, UserspaceBackend};
