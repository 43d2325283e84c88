//! Admission control: what the P-CSCF refuses before it spends anything on a request
//! (hardening issue, items 4 and "overload").
//!
//! - **Per IMPI**: every unprotected REGISTER costs an authentication vector at the HSS
//!   (a Cx MAR, an SQN commit), a temporary SA set and a line of the `esp_sa` file. A
//!   token bucket per private identity lets a real UE register, re-register and resync
//!   freely and turns a flood naming one identity into cheap 503s.
//! - **Overload**: when the shell reports its input backlog is deep, requests that would
//!   start new work (an unprotected REGISTER, a dialog-creating or out-of-dialog request
//!   from a UE) are answered 503 at once, while what finishes work already begun
//!   (protected REGISTERs answering our challenges, in-dialog requests, responses) goes
//!   on. Shedding early keeps goodput up: a request answered late is retransmitted and
//!   costs twice (RFC 3261 §21.5.4, RFC 7339 §1).
//!
//! Both answer `503 Service Unavailable` with `Retry-After` (RFC 3261 §20.33), which a UE
//! honours before it retries (TS 24.229 §5.1.1.2.1). The bucket table is bounded: full
//! buckets are forgotten, and beyond [`AdmissionConfig::max_tracked`] identities a new one
//! is refused until the table drains.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Limits of [`Admission`] (`[admission]` in the pcscf config).
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// Unprotected REGISTERs one IMPI may send at once. 0 turns the limit off.
    pub register_burst: u32,
    /// Tokens per second an IMPI's bucket regains.
    pub register_per_second: f64,
    /// IMPIs tracked at most.
    pub max_tracked: usize,
    /// `Retry-After` of an overload 503, seconds.
    pub overload_retry_after: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            register_burst: 20,
            register_per_second: 2.0,
            max_tracked: 200_000,
            overload_retry_after: 5,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per IMPI and the overload flag.
#[derive(Debug)]
pub struct Admission {
    cfg: AdmissionConfig,
    buckets: HashMap<String, Bucket>,
    overloaded: bool,
    last_sweep: Option<Instant>,
}

/// How often full buckets are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl Admission {
    /// Admission with `cfg`.
    pub fn new(cfg: AdmissionConfig) -> Self {
        Admission {
            cfg,
            buckets: HashMap::new(),
            overloaded: false,
            last_sweep: None,
        }
    }

    /// The shell's view of its input backlog.
    pub fn set_overloaded(&mut self, on: bool) {
        self.overloaded = on;
    }

    /// Whether new work is being shed now.
    pub fn overloaded(&self) -> bool {
        self.overloaded
    }

    /// `Retry-After` seconds of an overload 503.
    pub fn overload_retry_after(&self) -> u32 {
        self.cfg.overload_retry_after.max(1)
    }

    /// Takes a token of `impi` for an unprotected REGISTER: `Ok` to go on, `Err(seconds)`
    /// to answer 503 with that `Retry-After`.
    pub fn register(&mut self, impi: &str, now: Instant) -> Result<(), u32> {
        if self.cfg.register_burst == 0 {
            return Ok(());
        }
        self.sweep(now);
        let burst = f64::from(self.cfg.register_burst);
        let rate = self.cfg.register_per_second.max(f64::MIN_POSITIVE);
        if !self.buckets.contains_key(impi) {
            if self.buckets.len() >= self.cfg.max_tracked {
                return Err(SWEEP_EVERY.as_secs() as u32);
            }
            self.buckets.insert(
                impi.to_string(),
                Bucket {
                    tokens: burst,
                    at: now,
                },
            );
        }
        let Some(b) = self.buckets.get_mut(impi) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().clamp(1.0, 3600.0) as u32)
        }
    }

    /// IMPIs tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let burst = f64::from(self.cfg.register_burst);
        let rate = self.cfg.register_per_second;
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(burst: u32, rate: f64, max: usize) -> Admission {
        Admission::new(AdmissionConfig {
            register_burst: burst,
            register_per_second: rate,
            max_tracked: max,
            overload_retry_after: 5,
        })
    }

    #[test]
    fn a_burst_passes_then_503_with_the_time_to_the_next_token() {
        let mut a = adm(3, 0.5, 10);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(a.register("alice", t), Ok(()));
        }
        assert_eq!(a.register("alice", t), Err(2));
        // Another identity has its own bucket.
        assert_eq!(a.register("bob", t), Ok(()));
        // Two seconds later one token is back.
        assert_eq!(a.register("alice", t + Duration::from_secs(2)), Ok(()));
        assert!(a.register("alice", t + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn full_buckets_are_forgotten_and_the_table_is_bounded() {
        let mut a = adm(2, 1.0, 2);
        let t = Instant::now();
        assert!(a.register("a", t).is_ok());
        assert!(a.register("b", t).is_ok());
        assert_eq!(a.register("c", t), Err(10), "table full");
        // After the sweep interval both buckets are full again and forgotten.
        let later = t + SWEEP_EVERY + Duration::from_secs(1);
        assert!(a.register("c", later).is_ok());
        assert_eq!(a.tracked(), 1);
    }

    #[test]
    fn a_zero_burst_turns_the_limit_off() {
        let mut a = adm(0, 1.0, 1);
        let t = Instant::now();
        for i in 0..100 {
            assert!(a.register(&format!("u{i}"), t).is_ok());
        }
        assert_eq!(a.tracked(), 0);
    }
}
