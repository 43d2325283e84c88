//! One API over both backends, and the `ipsec.backend = "kernel" | "userspace" | "auto"`
//! selection.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::error::XfrmError;
use crate::kernel::{KernelBackend, SetId, Tag};
use crate::model::{SaSet, Side};
use crate::userspace::{Inbound, UserspaceBackend};

/// What the P-CSCF and the UE simulator call, whatever carries the packets.
///
/// All methods are quick and non-async (a netlink round trip or a map update), so they may be
/// called from async code directly.
pub trait IpsecBackend: Send + Sync {
    /// Installs a (temporary) set, directions as seen by `side`.
    fn install(&self, set: &SaSet, side: Side) -> Result<SetId, XfrmError>;
    /// Temporary → established (after the 200 OK), valid for `lifetime`.
    fn promote(&self, id: SetId, lifetime: Duration, now: Instant) -> Result<(), XfrmError>;
    /// → expiring: still usable for `grace`, then the owner deletes it.
    fn begin_expiry(&self, id: SetId, grace: Duration, now: Instant) -> Result<(), XfrmError>;
    /// Deletes the set's SAs (and policies).
    fn delete(&self, id: SetId) -> Result<(), XfrmError>;
    /// Sets installed through this backend, for the esp_sa export and metrics.
    fn live_sets(&self) -> Vec<(SetId, SaSet, Side)>;
    /// Deletes all our state (the kernel backend: everything with our tag).
    fn flush(&self) -> Result<usize, XfrmError>;
    /// "kernel" or "userspace".
    fn name(&self) -> &'static str;
}

impl IpsecBackend for KernelBackend {
    fn install(&self, set: &SaSet, side: Side) -> Result<SetId, XfrmError> {
        KernelBackend::install(self, set, side)
    }
    fn promote(&self, id: SetId, lifetime: Duration, now: Instant) -> Result<(), XfrmError> {
        let mut r = Ok(());
        self.update_model(id, |s| r = s.promote(lifetime, now))?;
        Ok(r?)
    }
    fn begin_expiry(&self, id: SetId, grace: Duration, now: Instant) -> Result<(), XfrmError> {
        let mut r = Ok(());
        self.update_model(id, |s| r = s.begin_expiry(grace, now))?;
        Ok(r?)
    }
    fn delete(&self, id: SetId) -> Result<(), XfrmError> {
        KernelBackend::delete(self, id)
    }
    fn live_sets(&self) -> Vec<(SetId, SaSet, Side)> {
        KernelBackend::live_sets(self)
    }
    fn flush(&self) -> Result<usize, XfrmError> {
        KernelBackend::flush(self)
    }
    fn name(&self) -> &'static str {
        "kernel"
    }
}

impl IpsecBackend for UserspaceBackend {
    fn install(&self, set: &SaSet, side: Side) -> Result<SetId, XfrmError> {
        self.endpoint().install(set, side)
    }
    fn promote(&self, id: SetId, lifetime: Duration, now: Instant) -> Result<(), XfrmError> {
        let mut r = Ok(());
        self.endpoint()
            .update_model(id, |s| r = s.promote(lifetime, now))?;
        Ok(r?)
    }
    fn begin_expiry(&self, id: SetId, grace: Duration, now: Instant) -> Result<(), XfrmError> {
        let mut r = Ok(());
        self.endpoint()
            .update_model(id, |s| r = s.begin_expiry(grace, now))?;
        Ok(r?)
    }
    fn delete(&self, id: SetId) -> Result<(), XfrmError> {
        self.endpoint().delete(id)
    }
    fn live_sets(&self) -> Vec<(SetId, SaSet, Side)> {
        self.endpoint().sets()
    }
    fn flush(&self) -> Result<usize, XfrmError> {
        Ok(self.endpoint().flush())
    }
    fn name(&self) -> &'static str {
        "userspace"
    }
}

/// Configured backend choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// Kernel XFRM; fails if the kernel cannot install ESP.
    Kernel,
    /// Userspace ESP over raw sockets.
    Userspace,
    /// Kernel if a probe SA installs, else userspace.
    #[default]
    Auto,
}

/// Unknown backend name in configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IPsec backend {0:?} (expected kernel, userspace or auto)")]
pub struct UnknownBackend(pub String);

impl FromStr for BackendKind {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kernel" => Ok(BackendKind::Kernel),
            "userspace" => Ok(BackendKind::Userspace),
            "auto" => Ok(BackendKind::Auto),
            _ => Err(UnknownBackend(s.to_string())),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Kernel => "kernel",
            BackendKind::Userspace => "userspace",
            BackendKind::Auto => "auto",
        })
    }
}

/// The backend chosen by [`select`].
pub enum Selected {
    /// Kernel XFRM: the application uses ordinary sockets on its protected ports.
    Kernel(KernelBackend),
    /// Userspace ESP: the application sends through [`UserspaceBackend::send_udp`] and
    /// receives decrypted traffic on the channel.
    Userspace(UserspaceBackend, tokio::sync::mpsc::Receiver<Inbound>),
}

impl Selected {
    /// The common API.
    pub fn backend(&self) -> &dyn IpsecBackend {
        match self {
            Selected::Kernel(k) => k,
            Selected::Userspace(u, _) => u,
        }
    }
}

/// Opens the configured backend in the calling thread's network namespace and flushes our
/// leftover kernel state (tag `tag`: give each instance its own, [`Tag::for_instance`])
/// first. `Kernel` fails with [`XfrmError::KernelLacksEsp`] where the kernel cannot install
/// ESP. `Kernel` and `Auto` fail with [`XfrmError::TagInUse`], flushing nothing, while
/// another process in the namespace owns `tag` ([`crate::claim`]).
pub fn select(kind: BackendKind, tag: Tag) -> Result<Selected, XfrmError> {
    let kernel = || -> Result<Option<KernelBackend>, XfrmError> {
        let k = KernelBackend::owner(tag)?;
        let n = k.flush()?;
        if n > 0 {
            tracing::info!("flushed {n} leftover XFRM objects tagged {tag} (an earlier run)");
        }
        Ok(k.probe_esp()?.then_some(k))
    };
    match kind {
        BackendKind::Kernel => match kernel()? {
            Some(k) => Ok(Selected::Kernel(k)),
            None => Err(XfrmError::KernelLacksEsp),
        },
        BackendKind::Userspace => {
            let (u, rx) = UserspaceBackend::start()?;
            Ok(Selected::Userspace(u, rx))
        }
        BackendKind::Auto => match kernel() {
            Ok(Some(k)) => Ok(Selected::Kernel(k)),
            // Not a kernel limitation: a misconfiguration the operator must see.
            Err(e @ XfrmError::TagInUse(_)) => Err(e),
            other => {
                if let Err(e) = other {
                    tracing::info!("kernel IPsec backend unusable ({e}); using userspace ESP");
                } else {
                    tracing::info!("{}; using userspace ESP", crate::NO_ESP_MESSAGE);
                }
                let (u, rx) = UserspaceBackend::start()?;
                Ok(Selected::Userspace(u, rx))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_parse() {
        assert_eq!("Kernel".parse(), Ok(BackendKind::Kernel));
        assert_eq!("userspace".parse(), Ok(BackendKind::Userspace));
        assert_eq!(" auto ".parse(), Ok(BackendKind::Auto));
        assert!("xfrm".parse::<BackendKind>().is_err());
        assert_eq!(BackendKind::default().to_string(), "auto");
    }
}
