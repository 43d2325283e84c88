//! What a simulated UE is: ISIM identities and secrets, where it lives on the network and
//! what it offers for sec-agree.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use akav1::{Milenage, SqnPolicy, Usim, UsimSqnState};
use secagree::AlgPrefs;
use sip::transaction::TimerConfig;
use sip::{Scheme, Uri};

use crate::call::CallConfig;
use crate::media::{MediaConfig, MediaError};

/// Why a [`UeConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The IMPU is not a `sip:`/`sips:` URI with a user part or a `tel:` URI.
    #[error("IMPU {0:?} must be sip:user@domain or tel:+number")]
    Impu(String),
    /// The IMPI is empty or contains characters a digest `username` cannot carry.
    #[error("IMPI {0:?} must be non-empty and contain no quote, backslash or whitespace")]
    Impi(String),
    /// The home domain is empty or not a host name.
    #[error("home domain {0:?} is not a host name")]
    Domain(String),
    /// SPIs below 256 are reserved (RFC 4303 §2.1) or the two SPIs are equal.
    #[error("SPIs {0} and {1} must both be >= 256 and differ")]
    Spi(u32, u32),
    /// A protected port is 0, the ports collide or two generations would overlap.
    #[error("ports: unprotected {port}, protected {port_uc}/{port_us}: {why}")]
    Ports {
        /// unprotected port
        port: u16,
        /// protected client port
        port_uc: u16,
        /// protected server port
        port_us: u16,
        /// what is wrong
        why: &'static str,
    },
    /// The UE and P-CSCF addresses are of different families.
    #[error("UE address {ue} and P-CSCF address {pcscf} are of different IP families")]
    Family {
        /// UE address
        ue: IpAddr,
        /// P-CSCF address
        pcscf: IpAddr,
    },
    /// No algorithm to offer.
    #[error("sec-agree is on but no integrity or no encryption algorithm is offered")]
    NoAlgorithms,
    /// The configured audio source cannot be played (not a storage file, a tone out of
    /// range, a codec backend this build lacks).
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// The ISIM secrets (TS 31.103 / TS 35.206): K and OPc, plus the card's SQN memory.
#[derive(Clone)]
pub struct IsimKeys {
    /// Subscriber key K.
    pub k: [u8; 16],
    /// Operator variant OPc (derive it from OP with [`IsimKeys::from_op`]).
    pub opc: [u8; 16],
    /// The card's SQN memory (TS 33.102 Annex C): what it accepted before.
    pub sqn: UsimSqnState,
}

impl std::fmt::Debug for IsimKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // K and OPc never go to logs.
        f.debug_struct("IsimKeys")
            .field("sqn_ms", &self.sqn.highest())
            .finish_non_exhaustive()
    }
}

impl IsimKeys {
    /// A fresh card (nothing accepted yet) programmed with K and OPc.
    pub fn new(k: [u8; 16], opc: [u8; 16]) -> Self {
        IsimKeys {
            k,
            opc,
            sqn: UsimSqnState::new(SqnPolicy::default()),
        }
    }

    /// A fresh card programmed with K and OP (OPc is derived, TS 35.206 §4.1).
    pub fn from_op(k: [u8; 16], op: [u8; 16]) -> Self {
        IsimKeys::new(k, akav1::opc_from_op(&k, &op))
    }

    /// The same card with existing SQN memory.
    pub fn with_sqn(mut self, sqn: UsimSqnState) -> Self {
        self.sqn = sqn;
        self
    }

    /// The USIM application that checks AUTN and computes RES/CK/IK.
    pub fn usim(&self) -> Usim {
        Usim::with_state(Milenage::new(&self.k, &self.opc), self.sqn.clone())
    }
}

/// A UE's own sec-agree parameters for one SA generation: the SPIs it receives on and its
/// protected ports (TS 33.203 §7.1: spi_uc/spi_us, port_uc/port_us).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalSecurity {
    /// SPI of the UE's inbound SA from the P-CSCF's server port (SA 3).
    pub spi_uc: u32,
    /// SPI of the UE's inbound SA from the P-CSCF's client port (SA 2).
    pub spi_us: u32,
    /// Protected client port: the UE sends requests from here.
    pub port_uc: u16,
    /// Protected server port: the UE receives requests here (its Contact).
    pub port_us: u16,
}

impl LocalSecurity {
    /// The parameters of generation `generation` (TS 33.203 §7.4: a re-authentication sets
    /// up a new SA set with new SPIs and a new protected client port, while the protected
    /// server port — the port in the registered Contact — stays). Odd generations use
    /// `port_uc + 2`, so a new set never shares its client port with the set it replaces
    /// (both exist during the grace period); SPIs advance by two per generation and wrap
    /// inside 256..=u32::MAX.
    pub fn generation(&self, generation: u64) -> LocalSecurity {
        let step = |spi: u32| -> u32 {
            let span = u64::from(u32::MAX) - 255;
            let off = (u64::from(spi).saturating_sub(256) + 2 * generation) % span;
            u32::try_from(256 + off).unwrap_or(256)
        };
        let shift = if generation % 2 == 1 { 2 } else { 0 };
        LocalSecurity {
            spi_uc: step(self.spi_uc),
            spi_us: step(self.spi_us),
            port_uc: self.port_uc.wrapping_add(shift),
            port_us: self.port_us,
        }
    }

    /// Random SPIs in 256..2^31 (distinct) with the given ports: what a handset does.
    pub fn random(port_uc: u16, port_us: u16) -> LocalSecurity {
        use rand::Rng;
        let mut rng = rand::rng();
        let spi_uc = rng.random_range(0x1000..0x4000_0000u32);
        // keep the pair apart by more than any number of generations we will run
        let spi_us = spi_uc + 0x1000_0001;
        LocalSecurity {
            spi_uc,
            spi_us,
            port_uc,
            port_us,
        }
    }
}

/// A stable `+sip.instance` for a UE without an IMEI: a UUID URN (RFC 4122 layout, version
/// 5-style bits) derived from the IMPI, so every run of the same UE presents the same
/// instance and registrars replace its old binding instead of adding one (RFC 5626 §4.1).
pub fn instance_urn(impi: &str) -> String {
    // two FNV-1a passes with different offsets: not cryptographic, only stable and spread
    let fnv = |seed: u64| {
        impi.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142));
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&a.to_be_bytes());
    u[8..].copy_from_slice(&b.to_be_bytes());
    u[6] = (u[6] & 0x0f) | 0x50;
    u[8] = (u[8] & 0x3f) | 0x80;
    let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "<urn:uuid:{}-{}-{}-{}-{}>",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Everything a simulated IMS UE needs (TS 24.229 §5.1.1): identities from the ISIM, the
/// secrets, its addresses and what it offers for sec-agree.
#[derive(Debug, Clone)]
pub struct UeConfig {
    /// Private user identity (IMPI), the digest `username`, e.g.
    /// `001010000000001@ims.mnc001.mcc001.3gppnetwork.org`.
    pub impi: String,
    /// Public user identity (IMPU) to register: `sip:…@domain` or `tel:+…`.
    pub impu: String,
    /// Home network domain: the REGISTER Request-URI host (TS 24.229 §5.1.1.2.1).
    pub home_domain: String,
    /// Digest realm to put in the initial Authorization; the home domain if `None`.
    pub realm: Option<String>,
    /// K, OPc and SQN memory.
    pub keys: IsimKeys,
    /// This UE's own address (each UE on its own loopback address: 127.0.0.2, …).
    pub local_ip: IpAddr,
    /// Unprotected port (initial REGISTER and its 401).
    pub port: u16,
    /// sec-agree parameters of the first SA generation (later ones: see
    /// [`LocalSecurity::generation`]).
    pub security: LocalSecurity,
    /// The P-CSCF's unprotected address (from the PCO in a real network).
    pub pcscf: SocketAddr,
    /// Offer sec-agree with IPsec (`false`: a plain digest UE like SIPp).
    pub sec_agree: bool,
    /// Algorithms to offer, most preferred first; one Security-Client mechanism per pair.
    pub algorithms: AlgPrefs,
    /// Requested registration expiry in seconds (phones ask for 600000).
    pub expires: u32,
    /// Re-register by itself before the registration expires (TS 24.229 §5.1.1.4.1).
    pub auto_refresh: bool,
    /// How long a temporary SA set may wait for the 200 OK (TS 33.203 §7.2).
    pub temporary_sa_lifetime: Duration,
    /// How long a retired SA set stays after it was superseded or deregistered, so that
    /// late responses still arrive protected.
    pub sa_grace: Duration,
    /// `+sip.instance` of the Contact (RFC 5626): phones send `<urn:gsma:imei:…>`; the
    /// default is [`instance_urn`] of the IMPI.
    pub instance_id: Option<String>,
    /// P-Access-Network-Info value (RFC 7315 §4.4), e.g.
    /// `3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=001010001000019b`.
    pub access_network_info: Option<String>,
    /// User-Agent value.
    pub user_agent: String,
    /// SIP timers (T1/T2/T4); loopback tests may shorten them.
    pub timers: TimerConfig,
    /// How calls are placed and answered.
    pub calls: CallConfig,
    /// The RTP of calls: on/off, what is sent (test pattern, an AMR file or a tone), the
    /// codec backend, silence timeout. The RTP port is [`CallConfig::rtp_port`].
    pub media: MediaConfig,
    /// Subscribe to the own registration state after the initial registration (TS 24.229
    /// §5.1.1.3), to learn of a network-initiated deregistration.
    pub reg_event: bool,
    /// Expires asked in each reg event SUBSCRIBE (handsets ask 600000 s).
    pub reg_event_expires: u32,
    /// Register again at once when the network deactivates the registration (NOTIFY with
    /// our contact `terminated`, event `deactivated`; TS 24.229 §5.1.1.7). A `rejected`
    /// contact is never re-registered by itself.
    pub reregister_on_deactivation: bool,
}

impl UeConfig {
    /// A UE with the defaults of a VoLTE handset on LTE: sec-agree on with every algorithm
    /// pair, 600000 s expiry, random SPIs, protected ports 5102/5103 (each UE has its own
    /// IP, so the ports may repeat), unprotected port 5060.
    pub fn new(
        impi: impl Into<String>,
        impu: impl Into<String>,
        home_domain: impl Into<String>,
        keys: IsimKeys,
        local_ip: IpAddr,
        pcscf: SocketAddr,
    ) -> UeConfig {
        let impi: String = impi.into();
        let instance_id = Some(instance_urn(&impi));
        UeConfig {
            impi,
            impu: impu.into(),
            home_domain: home_domain.into(),
            realm: None,
            keys,
            local_ip,
            port: 5060,
            security: LocalSecurity::random(5102, 5103),
            pcscf,
            sec_agree: true,
            algorithms: AlgPrefs::default(),
            expires: 600_000,
            auto_refresh: true,
            temporary_sa_lifetime: Duration::from_secs(60),
            sa_grace: Duration::from_secs(2),
            instance_id,
            access_network_info: Some(
                "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=001010001000019B".into(),
            ),
            user_agent: concat!("imslab-ue/", env!("CARGO_PKG_VERSION")).into(),
            timers: TimerConfig::default(),
            calls: CallConfig::default(),
            media: MediaConfig::default(),
            reg_event: true,
            reg_event_expires: 600_000,
            reregister_on_deactivation: false,
        }
    }

    /// The digest realm used before the first challenge.
    pub fn realm(&self) -> &str {
        self.realm.as_deref().unwrap_or(&self.home_domain)
    }

    /// The IMPU parsed, checked to be usable in From/To.
    pub fn impu_uri(&self) -> Result<Uri, ConfigError> {
        let bad = || ConfigError::Impu(self.impu.clone());
        let u = Uri::parse(&self.impu).map_err(|_| bad())?;
        match u.scheme {
            Scheme::Sip | Scheme::Sips if u.user.is_some() && !u.host.is_empty() => Ok(u),
            Scheme::Tel if u.user.as_deref().is_some_and(|n| !n.is_empty()) => Ok(u),
            _ => Err(bad()),
        }
    }

    /// Checks everything a registration depends on, so that errors surface before any
    /// packet is sent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.impu_uri()?;
        if self.impi.is_empty()
            || self
                .impi
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_whitespace())
        {
            return Err(ConfigError::Impi(self.impi.clone()));
        }
        let d = &self.home_domain;
        if d.is_empty() || Uri::parse(&format!("sip:{d}")).is_err() {
            return Err(ConfigError::Domain(d.clone()));
        }
        if self.local_ip.is_ipv4() != self.pcscf.ip().is_ipv4() {
            return Err(ConfigError::Family {
                ue: self.local_ip,
                pcscf: self.pcscf.ip(),
            });
        }
        self.media.validate()?;
        if self.sec_agree {
            let s = self.security;
            if s.spi_uc < 256 || s.spi_us < 256 || s.spi_uc == s.spi_us {
                return Err(ConfigError::Spi(s.spi_uc, s.spi_us));
            }
            let bad = |why| ConfigError::Ports {
                port: self.port,
                port_uc: s.port_uc,
                port_us: s.port_us,
                why,
            };
            if s.port_uc == 0 || s.port_us == 0 || self.port == 0 {
                return Err(bad("no port may be 0"));
            }
            if s.port_uc > u16::MAX - 2 || s.port_us > u16::MAX - 2 {
                return Err(bad(
                    "protected ports must leave room for the next generation (+2)",
                ));
            }
            let all = vec![self.port, s.port_uc, s.port_uc + 2, s.port_us];
            let mut sorted = all.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != all.len() {
                return Err(bad(
                    "unprotected port, port_uc, port_uc + 2 (next generation) and port_us must all differ",
                ));
            }
            if self.algorithms.integrity.is_empty() || self.algorithms.encryption.is_empty() {
                return Err(ConfigError::NoAlgorithms);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> UeConfig {
        UeConfig::new(
            "001010000000001@ims.test",
            "sip:001010000000001@ims.test",
            "ims.test",
            IsimKeys::new([1; 16], [2; 16]),
            "127.0.0.2".parse().unwrap(),
            "127.0.0.1:5060".parse().unwrap(),
        )
    }

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        let c = cfg();
        c.validate().unwrap();
        let mut t = cfg();
        t.impu = "tel:+4930123456".into();
        t.validate().unwrap();
        for bad in ["sip:ims.test", "mailto:x@y", "", "tel:"] {
            let mut c = cfg();
            c.impu = bad.into();
            assert!(matches!(c.validate(), Err(ConfigError::Impu(_))), "{bad}");
        }
        let mut c = cfg();
        c.impi = "a b".into();
        assert!(matches!(c.validate(), Err(ConfigError::Impi(_))));
        let mut c = cfg();
        c.security.spi_uc = 255;
        assert!(matches!(c.validate(), Err(ConfigError::Spi(..))));
        let mut c = cfg();
        c.security.port_us = c.security.port_uc + 2;
        assert!(matches!(c.validate(), Err(ConfigError::Ports { .. })));
        let mut c = cfg();
        c.pcscf = "[::1]:5060".parse().unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Family { .. })));
        let mut c = cfg();
        c.algorithms.encryption.clear();
        assert_eq!(c.validate(), Err(ConfigError::NoAlgorithms));
        c.sec_agree = false;
        c.validate().unwrap();
    }

    #[test]
    fn generations_alternate_ports_and_advance_spis() {
        let l = LocalSecurity {
            spi_uc: 1000,
            spi_us: 2000,
            port_uc: 6000,
            port_us: 6001,
        };
        assert_eq!(l.generation(0), l);
        let g1 = l.generation(1);
        assert_eq!(
            (g1.port_uc, g1.port_us, g1.spi_uc, g1.spi_us),
            (6002, 6001, 1002, 2002)
        );
        let g2 = l.generation(2);
        assert_eq!((g2.port_uc, g2.spi_uc), (6000, 1004));
        let top = LocalSecurity {
            spi_uc: u32::MAX,
            ..l
        };
        assert!(top.generation(1).spi_uc >= 256);
        let r = LocalSecurity::random(1, 2);
        let u = instance_urn("001010000000001@ims.test");
        assert_eq!(u, instance_urn("001010000000001@ims.test"));
        assert_ne!(u, instance_urn("001010000000002@ims.test"));
        assert_eq!(u.len(), "<urn:uuid:>".len() + 36);
        assert!(r.spi_uc >= 256 && r.spi_us != r.spi_uc);
    }
}
