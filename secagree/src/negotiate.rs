//! The mechanism agreement itself (RFC 3329 §2, TS 33.203 §7.1–7.2), the same code for the
//! UE and the P-CSCF so the two can never disagree about which SA is which.

use sip::ims::{security_lists_equal, SecurityMechanism};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use xfrm::{EncryptionAlg, IntegrityAlg, SaSet, SocketAddrPair, Spis};

use crate::SecAgreeError;

/// Which algorithms we accept, most preferred first. An algorithm not listed is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgPrefs {
    /// Integrity algorithms (`alg`).
    pub integrity: Vec<IntegrityAlg>,
    /// Encryption algorithms (`ealg`; `null` is integrity only).
    pub encryption: Vec<EncryptionAlg>,
}

impl Default for AlgPrefs {
    /// hmac-sha-1-96 over hmac-md5-96; aes-cbc, then null, then des-ede3-cbc. Every handset
    /// we know offers at least hmac-md5-96 or hmac-sha-1-96 with null or aes-cbc.
    fn default() -> Self {
        AlgPrefs {
            integrity: vec![IntegrityAlg::HmacSha1_96, IntegrityAlg::HmacMd5_96],
            encryption: vec![
                EncryptionAlg::AesCbc,
                EncryptionAlg::Null,
                EncryptionAlg::DesEde3Cbc,
            ],
        }
    }
}

/// The offer the P-CSCF picked and the algorithms it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The UE's mechanism (its SPIs and ports).
    pub offer: SecurityMechanism,
    /// Integrity algorithm.
    pub integrity: IntegrityAlg,
    /// Encryption algorithm.
    pub encryption: EncryptionAlg,
}

/// Algorithms of one complete `ipsec-3gpp` transport-mode ESP mechanism, if we know them.
fn algs_of(m: &SecurityMechanism) -> Option<(IntegrityAlg, EncryptionAlg)> {
    if !m.mechanism.eq_ignore_ascii_case("ipsec-3gpp") || !m.is_complete_ipsec_3gpp() {
        return None;
    }
    if m.prot
        .as_deref()
        .is_some_and(|p| !p.eq_ignore_ascii_case("esp"))
    {
        return None;
    }
    if m.mode
        .as_deref()
        .is_some_and(|p| !p.eq_ignore_ascii_case("trans"))
    {
        return None;
    }
    let i: IntegrityAlg = m.alg.as_deref()?.parse().ok()?;
    let e: EncryptionAlg = m.ealg_or_null().parse().ok()?;
    Some((i, e))
}

/// P-CSCF side: pick one offer from Security-Client by our preference (TS 33.203 §7.2).
///
/// alg and ealg always come from the same offer: combining the integrity of one offer with
/// the encryption of another could build a pair the UE never proposed. Encryption
/// preference ranks first, integrity breaks ties, then the UE's q and header order.
pub fn choose(offers: &[SecurityMechanism], prefs: &AlgPrefs) -> Result<Choice, SecAgreeError> {
    let mut best: Option<(usize, usize, i32, Choice)> = None;
    let mut seen_ipsec = false;
    for m in offers {
        let Some((i, e)) = algs_of(m) else {
            seen_ipsec |= m.mechanism.eq_ignore_ascii_case("ipsec-3gpp");
            continue;
        };
        seen_ipsec = true;
        let (Some(ri), Some(re)) = (
            prefs.integrity.iter().position(|x| *x == i),
            prefs.encryption.iter().position(|x| *x == e),
        ) else {
            continue;
        };
        // Higher q is better; absent q ranks after every explicit one (RFC 3329 §2.2).
        let q = -i32::from(m.q.map_or(0, |q| q + 1));
        let better = best
            .as_ref()
            .is_none_or(|(bre, bri, bq, _)| (re, ri, q) < (*bre, *bri, *bq));
        if better {
            best = Some((
                re,
                ri,
                q,
                Choice {
                    offer: m.clone(),
                    integrity: i,
                    encryption: e,
                },
            ));
        }
    }
    match best {
        Some((.., c)) => Ok(c),
        None if seen_ipsec => Err(SecAgreeError::NoAcceptableOffer),
        None => Err(SecAgreeError::NoIpsecOffer),
    }
}

/// P-CSCF side: the Security-Server mechanism answering `choice` with our SPIs and ports.
pub fn server_mechanism(
    choice: &Choice,
    spi_c: u32,
    spi_s: u32,
    port_c: u16,
    port_s: u16,
) -> SecurityMechanism {
    let mut m = SecurityMechanism::ipsec_3gpp(
        choice.integrity.sip_name(),
        Some(choice.encryption.sip_name()),
        spi_c,
        spi_s,
        port_c,
        port_s,
    );
    m.q = Some(100);
    m
}

/// UE side: the Security-Client list, one mechanism per (alg, ealg) pair in preference
/// order, all with the same SPIs and ports, as handsets send it.
pub fn client_offers(
    prefs: &AlgPrefs,
    spi_c: u32,
    spi_s: u32,
    port_c: u16,
    port_s: u16,
) -> Vec<SecurityMechanism> {
    let mut out = Vec::new();
    for e in &prefs.encryption {
        for i in &prefs.integrity {
            out.push(SecurityMechanism::ipsec_3gpp(
                i.sip_name(),
                Some(e.sip_name()),
                spi_c,
                spi_s,
                port_c,
                port_s,
            ));
        }
    }
    out
}

/// Both sides: the SA set for a UE offer (`client`) and the P-CSCF answer (`server`),
/// keys from CK/IK (TS 33.203 Annex I). The algorithms are the server's: it chose them.
#[allow(clippy::too_many_arguments)]
pub fn sa_set(
    ue: IpAddr,
    pcscf: IpAddr,
    client: &SecurityMechanism,
    server: &SecurityMechanism,
    ck: &[u8; 16],
    ik: &[u8; 16],
    temporary_lifetime: Duration,
    now: Instant,
) -> Result<SaSet, SecAgreeError> {
    let (integrity, encryption) = algs_of(server).ok_or(SecAgreeError::IncompleteServer)?;
    let missing = SecAgreeError::IncompleteOffer;
    let set = SaSet::new(
        SocketAddrPair {
            addr: ue,
            client: client.port_c.ok_or(missing.clone())?,
            server: client.port_s.ok_or(missing.clone())?,
        },
        SocketAddrPair {
            addr: pcscf,
            client: server.port_c.ok_or(SecAgreeError::IncompleteServer)?,
            server: server.port_s.ok_or(SecAgreeError::IncompleteServer)?,
        },
        Spis {
            uc: client.spi_c.ok_or(missing.clone())?,
            us: client.spi_s.ok_or(missing)?,
            pc: server.spi_c.ok_or(SecAgreeError::IncompleteServer)?,
            ps: server.spi_s.ok_or(SecAgreeError::IncompleteServer)?,
        },
        integrity,
        encryption,
        ck,
        ik,
        temporary_lifetime,
        now,
    )?;
    Ok(set)
}

/// P-CSCF side: Security-Verify must repeat the Security-Server we sent (RFC 3329 §2.3.1,
/// TS 33.203 §7.2); anything else is a bidding-down attempt or a broken UE.
pub fn check_verify(
    sent: &[SecurityMechanism],
    verify: &[SecurityMechanism],
) -> Result<(), SecAgreeError> {
    if security_lists_equal(sent, verify) {
        Ok(())
    } else {
        Err(SecAgreeError::VerifyMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(alg: &str, ealg: Option<&str>) -> SecurityMechanism {
        SecurityMechanism::ipsec_3gpp(alg, ealg, 1111, 2222, 31000, 31001)
    }

    #[test]
    fn picks_both_algorithms_from_one_offer_by_preference() {
        let offers = vec![
            offer("hmac-md5-96", Some("null")),
            offer("hmac-sha-1-96", Some("null")),
            offer("hmac-md5-96", Some("aes-cbc")),
        ];
        let c = choose(&offers, &AlgPrefs::default()).unwrap();
        assert_eq!(
            (c.integrity, c.encryption),
            (IntegrityAlg::HmacMd5_96, EncryptionAlg::AesCbc)
        );
        // An operator that wants integrity only.
        let prefs = AlgPrefs {
            encryption: vec![EncryptionAlg::Null],
            ..AlgPrefs::default()
        };
        let c = choose(&offers, &prefs).unwrap();
        assert_eq!(
            (c.integrity, c.encryption),
            (IntegrityAlg::HmacSha1_96, EncryptionAlg::Null)
        );
    }

    #[test]
    fn absent_ealg_means_null_and_unknown_offers_are_skipped() {
        let mut weird = offer("hmac-sha-256-128", Some("aes-gcm"));
        weird.q = Some(1000);
        let offers = vec![weird, offer("hmac-md5-96", None)];
        let c = choose(&offers, &AlgPrefs::default()).unwrap();
        assert_eq!(c.encryption, EncryptionAlg::Null);
        assert_eq!(
            choose(&offers[..1], &AlgPrefs::default()),
            Err(SecAgreeError::NoAcceptableOffer)
        );
        let tls = SecurityMechanism::parse("tls;q=0.2").unwrap();
        assert_eq!(
            choose(&[tls], &AlgPrefs::default()),
            Err(SecAgreeError::NoIpsecOffer)
        );
        let mut tunnel = offer("hmac-md5-96", None);
        tunnel.mode = Some("tun".into());
        assert_eq!(
            choose(&[tunnel], &AlgPrefs::default()),
            Err(SecAgreeError::NoAcceptableOffer)
        );
    }

    #[test]
    fn ue_and_pcscf_build_the_same_set_and_verify_detects_bid_down() {
        let ue_offers = client_offers(&AlgPrefs::default(), 1111, 2222, 31000, 31001);
        assert_eq!(ue_offers.len(), 6);
        let c = choose(&ue_offers, &AlgPrefs::default()).unwrap();
        let server = server_mechanism(&c, 3333, 4444, 5100, 5101);
        let now = Instant::now();
        let ue: IpAddr = "127.0.0.2".parse().unwrap();
        let p: IpAddr = "127.0.0.1".parse().unwrap();
        let (ck, ik) = ([1u8; 16], [2u8; 16]);
        let at_pcscf = sa_set(
            ue,
            p,
            &c.offer,
            &server,
            &ck,
            &ik,
            Duration::from_secs(30),
            now,
        )
        .unwrap();
        // The UE parses our header and builds from its own first offer (same SPIs/ports).
        let parsed = SecurityMechanism::parse_list(&sip::ims::format_security_list(
            std::slice::from_ref(&server),
        ))
        .unwrap();
        let at_ue = sa_set(
            ue,
            p,
            &ue_offers[0],
            &parsed[0],
            &ck,
            &ik,
            Duration::from_secs(30),
            now,
        )
        .unwrap();
        assert_eq!(at_pcscf, at_ue);
        assert_eq!(
            (
                at_pcscf.spi_uc,
                at_pcscf.spi_us,
                at_pcscf.spi_pc,
                at_pcscf.spi_ps
            ),
            (1111, 2222, 3333, 4444)
        );
        assert!(check_verify(std::slice::from_ref(&server), &parsed).is_ok());
        let mut downgraded = server.clone();
        downgraded.ealg = Some("null".into());
        assert_eq!(
            check_verify(&[server], &[downgraded]),
            Err(SecAgreeError::VerifyMismatch)
        );
    }
}
