//! IPsec for IMS sec-agree (TS 33.203 §7, RFC 3329): the model of one security association
//! set, SPI/port pools, a kernel XFRM backend and a userspace ESP (RFC 4303) backend behind one
//! API, and the export of live keys for Wireshark.
//!
//! # Pieces
//! - [`model`]: [`SaSet`] (addresses, the four ports and SPIs, algorithms with their
//!   Security-Client names, keys derived from CK/IK per TS 33.203 Annex I, state
//!   temporary → established → expiring) and [`SaSet::sas`], the four SAs of the table in
//!   TS 33.203 §7.1 with their direction as seen by [`Side::Pcscf`] or [`Side::Ue`].
//! - [`pool`]: thread-safe SPI and port pools handing out RAII [`Lease`]s.
//! - [`backend`]: the [`IpsecBackend`] trait (install, promote, begin_expiry, delete,
//!   live_sets, flush) and [`select`] for `ipsec.backend = "kernel" | "userspace" | "auto"`.
//! - [`kernel`]: XFRM netlink, tagged state, checked ACKs, rollback, extended-ack errors,
//!   [`XfrmError::KernelLacksEsp`] where ESP is missing. Each instance tags its state with
//!   [`Tag::for_instance`] (role + listen address): instances sharing a network namespace
//!   never flush each other's state, a restarted one flushes its own leftovers, and
//!   [`claim`] keeps a second live process with the same tag from flushing anything.
//! - [`esp`] (sans-IO ESP SA) and [`userspace`] (SA database + raw-socket shell).
//! - [`uat`]: Wireshark `esp_sa` export. [`netns`]: namespaces for tests and the lab.
//!
//! # Use from the P-CSCF (the UE simulator is the same with `Side::Ue` and its own pools)
//! ```no_run
//! use std::time::{Duration, Instant};
//! use xfrm::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spis = Pool::spis(10_000..=0x0fff_ffff)?;
//! let ports = Pool::ports(5100..=5199)?;
//! // This instance's own tag: the same after a restart, different for any other instance.
//! let tag = Tag::for_instance("pcscf", &["10.45.0.1:5060".parse()?]);
//! let sel = select(BackendKind::Auto, tag)?; // flushes our leftovers first
//! // On the initial REGISTER: our SPIs and ports, the UE's from Security-Client.
//! let (spi_pc, spi_ps) = (spis.allocate()?, spis.allocate()?);
//! let (port_pc, port_ps) = (ports.allocate()?, ports.allocate()?);
//! let (ck, ik) = ([0u8; 16], [0u8; 16]); // from the MAA
//! let now = Instant::now();
//! let set = SaSet::new(
//!     SocketAddrPair { addr: "10.45.0.7".parse()?, client: 31800, server: 31900 },
//!     SocketAddrPair { addr: "10.45.0.1".parse()?, client: port_pc.port(), server: port_ps.port() },
//!     Spis { uc: 1111, us: 2222, pc: spi_pc.value(), ps: spi_ps.value() },
//!     "hmac-sha-1-96".parse()?, "aes-cbc".parse()?, &ck, &ik,
//!     Duration::from_secs(30), now,
//! )?;
//! let id = sel.backend().install(&set, Side::Pcscf)?;            // with the 401
//! sel.backend().promote(id, Duration::from_secs(3600), now)?;    // with the 200 OK
//! sel.backend().begin_expiry(id, Duration::from_secs(5), now)?;  // superseded/deregistered
//! sel.backend().delete(id)?;                                     // at the deadline
//! drop((spi_pc, spi_ps, port_pc, port_ps));                      // back to the pools
//! let live: Vec<SaSet> = sel.backend().live_sets().into_iter().map(|(_, s, _)| s).collect();
//! uat::write_esp_sa_file("esp_sa".as_ref(), live.iter())?;
//! # Ok(()) }
//! ```
//! With [`Selected::Kernel`] the SIP stack uses ordinary sockets bound to the protected
//! ports. With [`Selected::Userspace`] it receives [`Inbound`] datagrams on the channel and
//! sends with [`UserspaceBackend::send_udp`]`(src, dst, payload)`.
//!
//! Both ends in one network namespace: the userspace backend works (each endpoint ignores the
//! other's SPIs, counting them as unknown), the kernel backend does not (both ends would add
//! the same SAs): give each end its own namespace, as the lab does.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod backend;
pub mod claim;
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
