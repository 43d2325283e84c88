//! Sequence numbers, TS 33.102 §6.3.2 and Annex C.
//!
//! SQN is 48 bits, split as SEQ ‖ IND with IND the `ind_bits` least significant bits
//! (C.1.1). The network keeps one SEQ counter per subscriber and stamps every vector with its
//! own IND slot; the USIM keeps the highest SEQ accepted per IND slot (C.2). Two network
//! elements that share a card (an EPC HSS and our IMS HSS) each use their own IND so that
//! vectors from one never look stale to the other.

use crate::AkaError;

/// Largest value a 48-bit SQN can take.
pub const SQN_MAX: u64 = (1 << 48) - 1;

/// A 48-bit sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sqn(u64);

impl Sqn {
    /// Zero: what a fresh card and a fresh subscriber record start from.
    pub const ZERO: Sqn = Sqn(0);

    /// A sequence number, rejected if it does not fit in 48 bits.
    pub fn new(value: u64) -> Result<Self, AkaError> {
        if value > SQN_MAX {
            return Err(AkaError::SqnOutOfRange(value));
        }
        Ok(Sqn(value))
    }

    /// The numeric value.
    pub fn value(self) -> u64 {
        self.0
    }

    /// The 6 big-endian octets carried (concealed by AK) in AUTN and AUTS.
    pub fn to_bytes(self) -> [u8; 6] {
        let b = self.0.to_be_bytes();
        [b[2], b[3], b[4], b[5], b[6], b[7]]
    }

    /// From the 6 big-endian octets of AUTN/AUTS.
    pub fn from_bytes(b: &[u8; 6]) -> Self {
        Sqn(u64::from_be_bytes([
            0, 0, b[0], b[1], b[2], b[3], b[4], b[5],
        ]))
    }
}

impl std::fmt::Display for Sqn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How SQNs are built and judged: the IND width and the USIM's freshness limits (C.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqnPolicy {
    /// Width of IND in bits (TS 33.102 C.3.2 suggests 5). 0..=16.
    pub ind_bits: u8,
    /// Δ: how far ahead of the highest accepted SEQ a new SEQ may be (C.2.2).
    pub delta: u64,
    /// L: how far behind the highest accepted SEQ a new SEQ may be, if the card checks it.
    pub age_limit: Option<u64>,
}

impl Default for SqnPolicy {
    /// IND 5 bits, Δ = 2^28, L = 2^25: the values programmable ISIMs commonly ship with.
    fn default() -> Self {
        SqnPolicy {
            ind_bits: 5,
            delta: 1 << 28,
            age_limit: Some(1 << 25),
        }
    }
}

impl SqnPolicy {
    /// A policy with the given IND width and the default limits.
    pub fn with_ind_bits(ind_bits: u8) -> Result<Self, AkaError> {
        if ind_bits > 16 {
            return Err(AkaError::IndWidth(ind_bits));
        }
        Ok(SqnPolicy {
            ind_bits,
            ..SqnPolicy::default()
        })
    }

    fn ind_mask(&self) -> u64 {
        (1u64 << self.ind_bits) - 1
    }

    /// SEQ part of an SQN.
    pub fn seq(&self, sqn: Sqn) -> u64 {
        sqn.0 >> self.ind_bits
    }

    /// IND part of an SQN.
    pub fn ind(&self, sqn: Sqn) -> u32 {
        // ind_bits <= 16, so the value fits.
        (sqn.0 & self.ind_mask()) as u32
    }

    /// Number of IND slots (2^ind_bits).
    pub fn slots(&self) -> usize {
        1usize << self.ind_bits
    }

    /// SEQ ‖ IND.
    pub fn compose(&self, seq: u64, ind: u32) -> Result<Sqn, AkaError> {
        if u64::from(ind) > self.ind_mask() {
            return Err(AkaError::IndOutOfRange {
                ind,
                bits: self.ind_bits,
            });
        }
        if seq > (SQN_MAX >> self.ind_bits) {
            return Err(AkaError::SqnExhausted);
        }
        Ok(Sqn((seq << self.ind_bits) | u64::from(ind)))
    }

    /// The network side (C.3.2): the SQN for the next vector after `last_issued`, in slot `ind`.
    ///
    /// SEQ always advances by one whatever IND the last vector used, so a vector is never
    /// reissued even if the IND configuration changes.
    pub fn next(&self, last_issued: Sqn, ind: u32) -> Result<Sqn, AkaError> {
        let seq = self
            .seq(last_issued)
            .checked_add(1)
            .ok_or(AkaError::SqnExhausted)?;
        self.compose(seq, ind)
    }

    /// The network side after a resynchronisation (C.3.4): what to store as "last issued" so
    /// that the next vector is fresh for a USIM whose highest accepted SQN is `sqn_ms`.
    ///
    /// SEQ never moves backwards: a stale or replayed AUTS cannot make us reissue a SEQ.
    pub fn resynced(&self, last_issued: Sqn, sqn_ms: Sqn) -> Sqn {
        if self.seq(sqn_ms) > self.seq(last_issued) {
            sqn_ms
        } else {
            last_issued
        }
    }
}

/// Why a USIM refuses an SQN (TS 33.102 C.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SqnRejection {
    /// SEQ is not above what this IND slot already accepted (a replay or a stale vector).
    #[error("SEQ {seq} is not above SEQ_MS({ind}) = {seq_ms}")]
    NotFresh {
        /// SEQ received.
        seq: u64,
        /// IND received.
        ind: u32,
        /// Highest SEQ accepted in that slot.
        seq_ms: u64,
    },
    /// SEQ jumps further ahead than Δ.
    #[error("SEQ {seq} is more than delta={delta} ahead of the highest accepted {highest}")]
    TooFarAhead {
        /// SEQ received.
        seq: u64,
        /// Highest SEQ accepted in any slot.
        highest: u64,
        /// Δ in force.
        delta: u64,
    },
    /// SEQ is older than the age limit L.
    #[error("SEQ {seq} is at least L={limit} behind the highest accepted {highest}")]
    TooOld {
        /// SEQ received.
        seq: u64,
        /// Highest SEQ accepted in any slot.
        highest: u64,
        /// L in force.
        limit: u64,
    },
}

/// The USIM's SQN memory (C.2): the highest SEQ accepted in each IND slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsimSqnState {
    policy: SqnPolicy,
    seq_ms: Vec<u64>,
    /// Highest SQN (SEQ ‖ IND) ever accepted: what the card reports in AUTS.
    highest: Sqn,
}

impl UsimSqnState {
    /// A fresh card: nothing accepted yet.
    pub fn new(policy: SqnPolicy) -> Self {
        UsimSqnState {
            seq_ms: vec![0; policy.slots()],
            policy,
            highest: Sqn::ZERO,
        }
    }

    /// A card that has accepted `sqn_ms` (in its IND slot) and nothing newer.
    pub fn with_highest(policy: SqnPolicy, sqn_ms: Sqn) -> Self {
        let mut s = UsimSqnState::new(policy);
        s.record(sqn_ms);
        s
    }

    /// The policy this card applies.
    pub fn policy(&self) -> SqnPolicy {
        self.policy
    }

    /// SQN_MS: the highest SQN accepted, reported in AUTS on a synchronisation failure.
    pub fn highest(&self) -> Sqn {
        self.highest
    }

    fn highest_seq(&self) -> u64 {
        self.policy.seq(self.highest)
    }

    /// Would this SQN be accepted? (C.2.2; no state change.)
    pub fn check(&self, sqn: Sqn) -> Result<(), SqnRejection> {
        let seq = self.policy.seq(sqn);
        let ind = self.policy.ind(sqn);
        let highest = self.highest_seq();
        if seq > highest && seq - highest > self.policy.delta {
            return Err(SqnRejection::TooFarAhead {
                seq,
                highest,
                delta: self.policy.delta,
            });
        }
        if let Some(limit) = self.policy.age_limit {
            if seq <= highest && highest - seq >= limit {
                return Err(SqnRejection::TooOld {
                    seq,
                    highest,
                    limit,
                });
            }
        }
        let seq_ms = self.seq_ms[ind as usize];
        if seq <= seq_ms {
            return Err(SqnRejection::NotFresh { seq, ind, seq_ms });
        }
        Ok(())
    }

    /// Check and, if fresh, remember `sqn` as accepted.
    pub fn accept(&mut self, sqn: Sqn) -> Result<(), SqnRejection> {
        self.check(sqn)?;
        self.record(sqn);
        Ok(())
    }

    fn record(&mut self, sqn: Sqn) {
        let ind = self.policy.ind(sqn) as usize;
        let seq = self.policy.seq(sqn);
        self.seq_ms[ind] = self.seq_ms[ind].max(seq);
        if seq >= self.highest_seq() {
            self.highest = sqn;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqn_bytes_round_trip_and_range() {
        let s = Sqn::new(0xff9b_b4d0_b607).unwrap();
        assert_eq!(s.to_bytes(), [0xff, 0x9b, 0xb4, 0xd0, 0xb6, 0x07]);
        assert_eq!(Sqn::from_bytes(&s.to_bytes()), s);
        assert!(Sqn::new(SQN_MAX).is_ok());
        assert_eq!(
            Sqn::new(SQN_MAX + 1),
            Err(AkaError::SqnOutOfRange(SQN_MAX + 1))
        );
    }

    #[test]
    fn next_advances_seq_in_the_requested_slot() {
        let p = SqnPolicy::default();
        let s1 = p.next(Sqn::ZERO, 3).unwrap();
        assert_eq!(s1.value(), 32 + 3);
        let s2 = p.next(s1, 7).unwrap();
        assert_eq!((p.seq(s2), p.ind(s2)), (2, 7));
        assert!(matches!(
            p.next(s2, 32),
            Err(AkaError::IndOutOfRange { ind: 32, bits: 5 })
        ));
        let last = p.compose(SQN_MAX >> 5, 0).unwrap();
        assert_eq!(p.next(last, 0), Err(AkaError::SqnExhausted));
    }

    #[test]
    fn usim_accepts_each_slot_independently_and_rejects_replays() {
        let p = SqnPolicy::default();
        let mut usim = UsimSqnState::new(p);
        // Our HSS in slot 1, an EPC HSS in slot 0 with its own SEQ.
        let ims = p.compose(10, 1).unwrap();
        let epc = p.compose(5, 0).unwrap();
        usim.accept(ims).unwrap();
        usim.accept(epc).unwrap();
        assert_eq!(usim.highest(), ims);
        assert!(matches!(
            usim.accept(ims),
            Err(SqnRejection::NotFresh {
                seq: 10,
                ind: 1,
                seq_ms: 10
            })
        ));
        let ahead = p.compose(10 + p.delta + 1, 2).unwrap();
        assert!(matches!(
            usim.check(ahead),
            Err(SqnRejection::TooFarAhead { .. })
        ));
        let ok = p.compose(10 + p.delta, 2).unwrap();
        assert!(usim.check(ok).is_ok());
    }

    #[test]
    fn age_limit_applies_only_when_set() {
        let mut p = SqnPolicy {
            age_limit: Some(4),
            ..SqnPolicy::default()
        };
        let mut usim = UsimSqnState::with_highest(p, p.compose(100, 0).unwrap());
        assert!(matches!(
            usim.check(p.compose(96, 1).unwrap()),
            Err(SqnRejection::TooOld { .. })
        ));
        assert!(usim.accept(p.compose(97, 1).unwrap()).is_ok());
        p.age_limit = None;
        let usim = UsimSqnState::with_highest(p, p.compose(100, 0).unwrap());
        assert!(usim.check(p.compose(1, 1).unwrap()).is_ok());
    }

    #[test]
    fn resync_never_moves_seq_backwards() {
        let p = SqnPolicy::default();
        let last = p.compose(50, 1).unwrap();
        let behind = p.compose(20, 0).unwrap();
        let ahead = p.compose(80, 0).unwrap();
        assert_eq!(p.resynced(last, behind), last);
        assert_eq!(p.resynced(last, ahead), ahead);
        let next = p.next(p.resynced(last, ahead), 1).unwrap();
        let mut usim = UsimSqnState::with_highest(p, ahead);
        assert!(usim.accept(next).is_ok());
    }
}
