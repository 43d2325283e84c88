//! The P-CSCF's SA sets, indexed by the flow that reaches each one.
//!
//! Every inbound message asks "which SA set, if any, did this arrive through?" (TS 33.203
//! §7.1: a request on a protected port must come from the UE's protected port of the same
//! set). With a thousand registered UEs a linear walk over the sets on every message was
//! the P-CSCF's single largest cost, so the sets are indexed by `(local, remote)` flow.

use super::SaRecord;
use std::collections::HashMap;
use std::net::SocketAddr;
use xfrm::SetId;

/// SA sets by id, with a `(local, remote)` index kept in step.
#[derive(Default)]
pub(crate) struct SaTable {
    sets: HashMap<SetId, SaRecord>,
    /// Our protected port and the UE's port that pairs with it, per set: SA 1 (UE's
    /// client port → our server port) and SA 4 (UE's server port → our client port).
    by_flow: HashMap<(SocketAddr, SocketAddr), SetId>,
    /// How many live sets use each of our protected addresses.
    protected: HashMap<SocketAddr, usize>,
}

/// The two `(local, remote)` flows a set accepts traffic on.
fn flows(r: &SaRecord) -> [(SocketAddr, SocketAddr); 2] {
    let s = &r.set;
    [
        (
            SocketAddr::new(s.pcscf, s.port_ps),
            SocketAddr::new(s.ue, s.port_uc),
        ),
        (
            SocketAddr::new(s.pcscf, s.port_pc),
            SocketAddr::new(s.ue, s.port_us),
        ),
    ]
}

impl SaTable {
    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }

    pub(crate) fn get(&self, id: &SetId) -> Option<&SaRecord> {
        self.sets.get(id)
    }

    pub(crate) fn contains_key(&self, id: &SetId) -> bool {
        self.sets.contains_key(id)
    }

    pub(crate) fn insert(&mut self, id: SetId, r: SaRecord) {
        self.remove(&id);
        for (local, remote) in flows(&r) {
            self.by_flow.insert((local, remote), id);
            *self.protected.entry(local).or_default() += 1;
        }
        self.sets.insert(id, r);
    }

    pub(crate) fn remove(&mut self, id: &SetId) -> Option<SaRecord> {
        let r = self.sets.remove(id)?;
        for (local, remote) in flows(&r) {
            if self.by_flow.get(&(local, remote)) == Some(id) {
                self.by_flow.remove(&(local, remote));
            }
            if let Some(n) = self.protected.get_mut(&local) {
                *n -= 1;
                if *n == 0 {
                    self.protected.remove(&local);
                }
            }
        }
        Some(r)
    }

    /// The set `remote` → `local` belongs to: `Ok(Some)` when it came through one,
    /// `Ok(None)` when `local` is no set's protected port, `Err` when `local` is one but
    /// `remote` owns no set on it.
    pub(crate) fn classify(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Option<SetId>, ()> {
        match self.by_flow.get(&(local, remote)) {
            Some(id) => Ok(Some(*id)),
            None if self.protected.contains_key(&local) => Err(()),
            None => Ok(None),
        }
    }
}
