//! SPI and protected-port allocation (TS 33.203 §7.1: each end chooses the SPIs of its inbound
//! SAs and its protected ports; RFC 4303 §2.1 reserves SPIs 1..=255).
//!
//! A [`Pool`] hands out values of a configured range, never the same value twice while it is
//! in use. Allocation returns a [`Lease`], an RAII guard: dropping it returns the value to the
//! pool. Keep the lease inside the registration that owns the SA set and the value is released
//! exactly when the registration (and its SAs) go away; [`Lease::release`] makes that explicit.
//! Values are handed out round-robin from a cursor so a just-released SPI is not reused at once
//! (a late packet for the old SA cannot hit a new one).

use std::collections::HashSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

/// Errors of pool construction and allocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every value of the range is leased.
    #[error("pool {name} exhausted ({size} values in use)")]
    Exhausted {
        /// Pool name (for logs).
        name: &'static str,
        /// Number of values in the range.
        size: u64,
    },
    /// The range is empty or includes forbidden values.
    #[error("invalid {name} range {start}..={end}: {why}")]
    InvalidRange {
        /// Pool name.
        name: &'static str,
        /// Range start.
        start: u32,
        /// Range end.
        end: u32,
        /// What is wrong.
        why: &'static str,
    },
}

struct Inner {
    name: &'static str,
    start: u32,
    end: u32,
    state: Mutex<State>,
}

struct State {
    next: u32,
    in_use: HashSet<u32>,
}

/// A thread-safe pool of `u32` values (cheap to clone: clones share the same pool).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("range", &(self.inner.start..=self.inner.end))
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Pool {
    fn new(name: &'static str, range: RangeInclusive<u32>) -> Result<Pool, PoolError> {
        let (start, end) = (*range.start(), *range.end());
        if start > end {
            return Err(PoolError::InvalidRange {
                name,
                start,
                end,
                why: "empty",
            });
        }
        Ok(Pool {
            inner: Arc::new(Inner {
                name,
                start,
                end,
                state: Mutex::new(State {
                    next: start,
                    in_use: HashSet::new(),
                }),
            }),
        })
    }

    /// A pool of SPIs; the range must not include 0..=255 (RFC 4303 §2.1).
    pub fn spis(range: RangeInclusive<u32>) -> Result<Pool, PoolError> {
        if *range.start() < 256 {
            return Err(PoolError::InvalidRange {
                name: "spi",
                start: *range.start(),
                end: *range.end(),
                why: "SPIs 0..=255 are reserved",
            });
        }
        Pool::new("spi", range)
    }

    /// A pool of protected ports; the range must not include 0.
    pub fn ports(range: RangeInclusive<u16>) -> Result<Pool, PoolError> {
        if *range.start() == 0 {
            return Err(PoolError::InvalidRange {
                name: "port",
                start: 0,
                end: u32::from(*range.end()),
                why: "port 0 is not a port",
            });
        }
        Pool::new("port", u32::from(*range.start())..=u32::from(*range.end()))
    }

    /// Number of values in the range.
    pub fn size(&self) -> u64 {
        u64::from(self.inner.end - self.inner.start) + 1
    }

    /// Number of values currently leased.
    pub fn in_use(&self) -> usize {
        self.lock().in_use.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the set inconsistent (single insert or
        // remove), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Leases the next free value after the cursor.
    pub fn allocate(&self) -> Result<Lease, PoolError> {
        let size = self.size();
        let mut st = self.lock();
        if st.in_use.len() as u64 >= size {
            return Err(PoolError::Exhausted {
                name: self.inner.name,
                size,
            });
        }
        // At least one value is free, so this loop ends within `size` steps.
        loop {
            let v = st.next;
            st.next = if v == self.inner.end {
                self.inner.start
            } else {
                v + 1
            };
            if st.in_use.insert(v) {
                return Ok(Lease {
                    value: v,
                    pool: Some(self.clone()),
                });
            }
        }
    }

    /// Leases a specific value (e.g. an SPI the kernel chose with ALLOCSPI, or a port from a
    /// configuration). `None` if it is outside the range or already leased.
    pub fn claim(&self, value: u32) -> Option<Lease> {
        if value < self.inner.start || value > self.inner.end {
            return None;
        }
        if self.lock().in_use.insert(value) {
            Some(Lease {
                value,
                pool: Some(self.clone()),
            })
        } else {
            None
        }
    }

    /// True if `value` is leased.
    pub fn is_in_use(&self, value: u32) -> bool {
        self.lock().in_use.contains(&value)
    }

    fn free(&self, value: u32) {
        self.lock().in_use.remove(&value);
    }
}

/// A leased pool value; returned to its pool on drop.
pub struct Lease {
    value: u32,
    pool: Option<Pool>,
}

impl Lease {
    /// The leased value (an SPI, or a port: see [`Lease::port`]).
    pub fn value(&self) -> u32 {
        self.value
    }

    /// The leased value as a port (ports pools only hold values ≤ 65535).
    pub fn port(&self) -> u16 {
        u16::try_from(self.value).unwrap_or(u16::MAX)
    }

    /// Returns the value to the pool now (same as dropping the lease).
    pub fn release(self) {
        drop(self)
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lease({})", self.value)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(p) = self.pool.take() {
            p.free(self.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spi_range_rules() {
        assert!(Pool::spis(1..=1000).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 300..=299;
        assert!(Pool::spis(empty).is_err());
        assert!(Pool::ports(0..=10).is_err());
        assert_eq!(Pool::spis(256..=256).unwrap().size(), 1);
    }

    #[test]
    fn no_reuse_while_in_use_and_release_on_drop() {
        let p = Pool::spis(256..=259).unwrap();
        let a: Vec<Lease> = (0..4).map(|_| p.allocate().unwrap()).collect();
        let mut vals: Vec<u32> = a.iter().map(Lease::value).collect();
        vals.sort();
        assert_eq!(vals, vec![256, 257, 258, 259]);
        assert!(matches!(p.allocate(), Err(PoolError::Exhausted { .. })));
        assert_eq!(p.in_use(), 4);
        let mut a = a;
        let freed = a.remove(1).value();
        assert!(!p.is_in_use(freed));
        assert_eq!(p.allocate().unwrap().value(), freed);
        // The temporary lease above was dropped immediately: the value is free again.
        assert_eq!(p.in_use(), 3);
        a.into_iter().for_each(Lease::release);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn round_robin_delays_reuse() {
        let p = Pool::ports(6000..=6009).unwrap();
        let first = p.allocate().unwrap().value();
        let second = p.allocate().unwrap().value();
        assert_ne!(first, second);
    }

    #[test]
    fn claim() {
        let p = Pool::spis(1000..=2000).unwrap();
        let l = p.claim(1500).unwrap();
        assert!(p.claim(1500).is_none());
        assert!(p.claim(999).is_none());
        drop(l);
        assert!(p.claim(1500).is_some());
    }

    #[test]
    fn thread_safe_unique() {
        let p = Pool::spis(256..=256 + 7999).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    (0..2000).map(|_| p.allocate().unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let leases: Vec<Lease> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let set: HashSet<u32> = leases.iter().map(Lease::value).collect();
        assert_eq!(set.len(), 8000);
        assert!(p.allocate().is_err());
        drop(leases);
        assert_eq!(p.in_use(), 0);
    }
}
