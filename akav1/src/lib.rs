//! AKA crypto core for IMS: Milenage, sequence numbers, authentication vectors and the
//! AKAv1-MD5 HTTP digest.
//!
//! Everything here is sans-IO and allocation-free on the vector path:
//!
//! - [`Milenage`]: f1, f1*, f2..f5, f5* of 3GPP TS 35.206 with OP→OPc, the AES key schedule
//!   expanded once per subscriber key.
//! - [`Sqn`], [`SqnPolicy`], [`UsimSqnState`]: SEQ ‖ IND sequence numbers of TS 33.102
//!   Annex C, both the network's counter and the USIM's freshness check.
//! - [`AuthVector`] from [`Milenage::vector`] (network side) and [`Milenage::resync`] (AUTS,
//!   MAC-S checked); the UE side in [`Usim`] (verify AUTN, produce RES/CK/IK or AUTS).
//! - [`nonce`]: the IMS nonce, base64(RAND ‖ AUTN ‖ server data) (RFC 3310 §3.2), and `auts`.
//! - [`digest`]: RFC 2617 digest parameters and responses with RES as the password (RFC 3310).
//!
//! ```
//! use akav1::{Milenage, Sqn, Usim, SqnPolicy};
//! let k = [0x46; 16];
//! let opc = [0x0c; 16];
//! let hss = Milenage::new(&k, &opc);
//! let v = hss.vector(&[7; 16], Sqn::new(32 + 1).unwrap(), [0x80, 0x00]);
//! let mut ue = Usim::new(Milenage::new(&k, &opc), SqnPolicy::default());
//! let ok = ue.authenticate(&v.rand, &v.autn).unwrap();
//! assert_eq!(ok.res, v.xres);
//! ```

pub mod digest;
mod milenage;
pub mod nonce;
mod sqn;

pub use milenage::{opc_from_op, Milenage, MilenageConstants, F2345};
pub use sqn::{Sqn, SqnPolicy, SqnRejection, UsimSqnState, SQN_MAX};

/// Errors of the AKA core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AkaError {
    /// A sequence number above 2^48 - 1.
    #[error("SQN {0} does not fit in 48 bits")]
    SqnOutOfRange(u64),
    /// SEQ cannot advance any further in 48 bits.
    #[error("SQN space exhausted for this subscriber")]
    SqnExhausted,
    /// An IND value outside the configured width.
    #[error("IND {ind} does not fit in {bits} bits")]
    IndOutOfRange {
        /// IND requested.
        ind: u32,
        /// Configured width.
        bits: u8,
    },
    /// IND width above what we support.
    #[error("IND width {0} bits is not supported (0..=16)")]
    IndWidth(u8),
    /// AUTS whose MAC-S does not verify: forged, corrupted, or for another RAND/key.
    #[error("AUTS MAC-S mismatch: resynchronisation refused (wrong K/OPc, RAND or forged AUTS)")]
    MacSMismatch,
}

/// AMF used for MAC-S in AUTS (TS 33.102 §6.3.3: "dummy" AMF of all zeros).
pub const RESYNC_AMF: [u8; 2] = [0, 0];

/// One authentication vector (TS 33.102 §6.3.2), as the HSS hands it to the S-CSCF.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthVector {
    /// The random challenge.
    pub rand: [u8; 16],
    /// (SQN ⊕ AK) ‖ AMF ‖ MAC-A.
    pub autn: [u8; 16],
    /// Expected response (64-bit Milenage f2).
    pub xres: [u8; 8],
    /// Cipher key.
    pub ck: [u8; 16],
    /// Integrity key.
    pub ik: [u8; 16],
}

impl std::fmt::Debug for AuthVector {
    // Keys stay out of logs; RAND and AUTN are public anyway.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthVector")
            .field("rand", &HexFmt(&self.rand))
            .field("autn", &HexFmt(&self.autn))
            .finish_non_exhaustive()
    }
}

struct HexFmt<'a>(&'a [u8]);
impl std::fmt::Debug for HexFmt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Milenage {
    /// The network side: a vector for `sqn` and `amf` with the given RAND (TS 33.102 §6.3.2).
    pub fn vector(&self, rand: &[u8; 16], sqn: Sqn, amf: [u8; 2]) -> AuthVector {
        let sqn_b = sqn.to_bytes();
        let (mac_a, o) = self.f12345(rand, &sqn_b, &amf);
        let mut autn = [0u8; 16];
        for i in 0..6 {
            autn[i] = sqn_b[i] ^ o.ak[i];
        }
        autn[6..8].copy_from_slice(&amf);
        autn[8..16].copy_from_slice(&mac_a);
        AuthVector {
            rand: *rand,
            autn,
            xres: o.res,
            ck: o.ck,
            ik: o.ik,
        }
    }

    /// The network side of a resynchronisation (TS 33.102 §6.3.5): recover SQN_MS from
    /// AUTS = (SQN_MS ⊕ AK*) ‖ MAC-S, checking MAC-S = f1*(SQN_MS, RAND, AMF=0000).
    ///
    /// A mismatch is an error: accepting an unverified AUTS would let anyone push a
    /// subscriber's SQN forward (and exhaust it).
    pub fn resync(&self, rand: &[u8; 16], auts: &[u8; 14]) -> Result<Sqn, AkaError> {
        let ak_star = self.f5_star(rand);
        let mut sqn_ms = [0u8; 6];
        for i in 0..6 {
            sqn_ms[i] = auts[i] ^ ak_star[i];
        }
        let mac_s = self.f1_star(rand, &sqn_ms, &RESYNC_AMF);
        if !ct_eq(&mac_s, &auts[6..14]) {
            return Err(AkaError::MacSMismatch);
        }
        Ok(Sqn::from_bytes(&sqn_ms))
    }

    /// The UE side of a resynchronisation: AUTS for the card's SQN_MS and this RAND.
    pub fn auts(&self, rand: &[u8; 16], sqn_ms: Sqn) -> [u8; 14] {
        let ak_star = self.f5_star(rand);
        let sqn_b = sqn_ms.to_bytes();
        let mac_s = self.f1_star(rand, &sqn_b, &RESYNC_AMF);
        let mut auts = [0u8; 14];
        for i in 0..6 {
            auts[i] = sqn_b[i] ^ ak_star[i];
        }
        auts[6..14].copy_from_slice(&mac_s);
        auts
    }
}

/// Comparison whose time does not depend on where the first difference is.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the USIM returns for an accepted challenge (TS 33.102 §6.3.3).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AkaResponse {
    /// RES, the digest password of AKAv1-MD5.
    pub res: [u8; 8],
    /// Cipher key.
    pub ck: [u8; 16],
    /// Integrity key.
    pub ik: [u8; 16],
    /// The SQN the network used (recovered from AUTN).
    pub sqn: Sqn,
}

impl std::fmt::Debug for AkaResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AkaResponse")
            .field("sqn", &self.sqn)
            .finish_non_exhaustive()
    }
}

/// Why a USIM refuses a challenge (TS 33.102 §6.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// MAC-A does not verify: the network does not know our K/OPc (or AUTN was damaged).
    /// The UE answers without credentials; SIP-wise, an Authorization with empty response.
    #[error("AUTN MAC mismatch: network authentication failed")]
    MacFailure,
    /// The SQN is not acceptable; the UE answers with this AUTS (TS 33.102 §6.3.3).
    #[error("SQN not acceptable ({reason}); resynchronise with AUTS")]
    SyncFailure {
        /// AUTS to send back (`auts=` in the Authorization header).
        auts: [u8; 14],
        /// Why the SQN was refused.
        reason: SqnRejection,
    },
}

/// The UE/ISIM side of AKA: K/OPc plus the card's SQN memory.
#[derive(Clone, Debug)]
pub struct Usim {
    milenage: Milenage,
    sqn: UsimSqnState,
}

impl Usim {
    /// A card that has never authenticated.
    pub fn new(milenage: Milenage, policy: SqnPolicy) -> Self {
        Usim {
            milenage,
            sqn: UsimSqnState::new(policy),
        }
    }

    /// A card with existing SQN memory.
    pub fn with_state(milenage: Milenage, sqn: UsimSqnState) -> Self {
        Usim { milenage, sqn }
    }

    /// The card's SQN memory.
    pub fn sqn_state(&self) -> &UsimSqnState {
        &self.sqn
    }

    /// The card's Milenage instance.
    pub fn milenage(&self) -> &Milenage {
        &self.milenage
    }

    /// Verify AUTN for RAND (MAC-A, then SQN freshness) and, if both pass, accept the SQN and
    /// return RES/CK/IK (TS 33.102 §6.3.3).
    pub fn authenticate(
        &mut self,
        rand: &[u8; 16],
        autn: &[u8; 16],
    ) -> Result<AkaResponse, AuthFailure> {
        let f = self.milenage.f2345(rand);
        let mut sqn_b = [0u8; 6];
        for i in 0..6 {
            sqn_b[i] = autn[i] ^ f.ak[i];
        }
        let amf = [autn[6], autn[7]];
        let mac = self.milenage.f1(rand, &sqn_b, &amf);
        if !ct_eq(&mac, &autn[8..16]) {
            return Err(AuthFailure::MacFailure);
        }
        let sqn = Sqn::from_bytes(&sqn_b);
        if let Err(reason) = self.sqn.accept(sqn) {
            return Err(AuthFailure::SyncFailure {
                auts: self.milenage.auts(rand, self.sqn.highest()),
                reason,
            });
        }
        Ok(AkaResponse {
            res: f.res,
            ck: f.ck,
            ik: f.ik,
            sqn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usim(k: [u8; 16], opc: [u8; 16], highest: Sqn) -> Usim {
        Usim::with_state(
            Milenage::new(&k, &opc),
            UsimSqnState::with_highest(SqnPolicy::default(), highest),
        )
    }

    #[test]
    fn vector_verifies_at_the_ue_and_replay_triggers_resync() {
        let (k, opc) = ([1u8; 16], [2u8; 16]);
        let hss = Milenage::new(&k, &opc);
        let p = SqnPolicy::default();
        let mut ue = usim(k, opc, Sqn::ZERO);
        let sqn = p.next(Sqn::ZERO, 0).unwrap();
        let v = hss.vector(&[9; 16], sqn, [0x80, 0]);
        let r = ue.authenticate(&v.rand, &v.autn).unwrap();
        assert_eq!((r.res, r.ck, r.ik, r.sqn), (v.xres, v.ck, v.ik, sqn));
        // Same vector again: stale, the UE answers with AUTS carrying SQN_MS = sqn.
        match ue.authenticate(&v.rand, &v.autn) {
            Err(AuthFailure::SyncFailure { auts, .. }) => {
                assert_eq!(hss.resync(&v.rand, &auts), Ok(sqn));
            }
            other => panic!("expected sync failure, got {other:?}"),
        }
    }

    #[test]
    fn resync_round_trip_recovers_sqn_ms_and_next_vector_is_accepted() {
        let (k, opc) = ([0x33u8; 16], [0x44u8; 16]);
        let hss = Milenage::new(&k, &opc);
        let p = SqnPolicy::default();
        // The card has seen SEQ 1000 in our IND slot (say, a restored HSS database is behind
        // the card); our HSS is at SEQ 3. In another slot SEQ 3 would be fine (Annex C.2).
        let sqn_ms = p.compose(1000, 1).unwrap();
        let mut ue = usim(k, opc, sqn_ms);
        let ours = p.compose(3, 1).unwrap();
        let rand = [0x5a; 16];
        let v = hss.vector(&rand, ours, [0x80, 0]);
        let Err(AuthFailure::SyncFailure { auts, reason }) = ue.authenticate(&v.rand, &v.autn)
        else {
            panic!("expected a sync failure");
        };
        assert!(matches!(reason, SqnRejection::NotFresh { .. }));
        let recovered = hss.resync(&rand, &auts).unwrap();
        assert_eq!(recovered, sqn_ms);
        let next = p.next(p.resynced(ours, recovered), 1).unwrap();
        let v2 = hss.vector(&[0x11; 16], next, [0x80, 0]);
        assert!(ue.authenticate(&v2.rand, &v2.autn).is_ok());
    }

    #[test]
    fn forged_or_misdirected_auts_is_rejected() {
        let (k, opc) = ([0x33u8; 16], [0x44u8; 16]);
        let hss = Milenage::new(&k, &opc);
        let rand = [0x5a; 16];
        let good = hss.auts(&rand, Sqn::new(12345).unwrap());
        assert!(hss.resync(&rand, &good).is_ok());
        for bit in 0..(14 * 8) {
            let mut forged = good;
            forged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                hss.resync(&rand, &forged),
                Err(AkaError::MacSMismatch),
                "bit {bit}"
            );
        }
        // The right AUTS for another RAND does not verify either.
        assert_eq!(hss.resync(&[0x5b; 16], &good), Err(AkaError::MacSMismatch));
        // Nor does it under another key.
        let other = Milenage::new(&[0x34; 16], &opc);
        assert_eq!(other.resync(&rand, &good), Err(AkaError::MacSMismatch));
    }

    #[test]
    fn wrong_key_is_a_mac_failure_not_a_sync_failure() {
        let hss = Milenage::new(&[1; 16], &[2; 16]);
        let v = hss.vector(&[3; 16], Sqn::new(64).unwrap(), [0x80, 0]);
        let mut ue = usim([9; 16], [2; 16], Sqn::ZERO);
        assert_eq!(
            ue.authenticate(&v.rand, &v.autn).unwrap_err(),
            AuthFailure::MacFailure
        );
    }
}
