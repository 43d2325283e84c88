//! The sec-agree security association model (TS 33.203 §7, RFC 3329).
//!
//! One [`SaSet`] is what one successful sec-agree negotiation produces: two addresses, four
//! protected ports, four SPIs, one integrity and one encryption algorithm, and keys derived from
//! the AKA CK/IK. It expands into four unidirectional ESP transport-mode SAs ([`SaSet::sas`]).
//! The same set serves both ends: the P-CSCF installs it with [`Side::Pcscf`], the UE simulator
//! with [`Side::Ue`]; only the direction of each SA differs.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Integrity algorithm as named in `Security-Client` `alg=` (RFC 3329, TS 33.203 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntegrityAlg {
    /// HMAC-MD5-96 (RFC 2403).
    HmacMd5_96,
    /// HMAC-SHA-1-96 (RFC 2404).
    HmacSha1_96,
}

/// Encryption algorithm as named in `Security-Client` `ealg=` (TS 33.203 §6.1, Rel-6+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncryptionAlg {
    /// NULL encryption (RFC 2410): integrity only.
    Null,
    /// AES-CBC with 128-bit key (RFC 3602).
    AesCbc,
    /// 3DES-EDE-CBC (RFC 2451).
    DesEde3Cbc,
}

/// Error for an algorithm name that sec-agree does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IPsec algorithm name {0:?}")]
pub struct UnknownAlg(pub String);

impl IntegrityAlg {
    /// All integrity algorithms, in the default preference order (strongest first).
    pub const ALL: [IntegrityAlg; 2] = [IntegrityAlg::HmacSha1_96, IntegrityAlg::HmacMd5_96];

    /// Name as used in `Security-Client`/`Security-Server`.
    pub fn sip_name(self) -> &'static str {
        match self {
            IntegrityAlg::HmacMd5_96 => "hmac-md5-96",
            IntegrityAlg::HmacSha1_96 => "hmac-sha-1-96",
        }
    }

    /// Linux crypto API name used in XFRMA_ALG_AUTH_TRUNC.
    pub fn kernel_name(self) -> &'static str {
        match self {
            IntegrityAlg::HmacMd5_96 => "hmac(md5)",
            IntegrityAlg::HmacSha1_96 => "hmac(sha1)",
        }
    }

    /// Name of the algorithm in Wireshark's `esp_sa` UAT.
    pub fn wireshark_name(self) -> &'static str {
        match self {
            IntegrityAlg::HmacMd5_96 => "HMAC-MD5-96 [RFC2403]",
            IntegrityAlg::HmacSha1_96 => "HMAC-SHA-1-96 [RFC2404]",
        }
    }

    /// Key length in bytes (TS 33.203 Annex I: IK, padded with 32 zero bits for SHA-1).
    pub fn key_len(self) -> usize {
        match self {
            IntegrityAlg::HmacMd5_96 => 16,
            IntegrityAlg::HmacSha1_96 => 20,
        }
    }

    /// Length of the truncated ICV in bytes (96 bits for both).
    pub fn icv_len(self) -> usize {
        12
    }

    /// IK_ESP from IK per TS 33.203 Annex I.
    pub fn derive_key(self, ik: &[u8; 16]) -> Vec<u8> {
        let mut k = ik.to_vec();
        if self == IntegrityAlg::HmacSha1_96 {
            k.extend_from_slice(&[0; 4]);
        }
        k
    }
}

impl EncryptionAlg {
    /// All encryption algorithms, in the default preference order.
    pub const ALL: [EncryptionAlg; 3] = [
        EncryptionAlg::AesCbc,
        EncryptionAlg::DesEde3Cbc,
        EncryptionAlg::Null,
    ];

    /// Name as used in `Security-Client`/`Security-Server` `ealg=`.
    pub fn sip_name(self) -> &'static str {
        match self {
            EncryptionAlg::Null => "null",
            EncryptionAlg::AesCbc => "aes-cbc",
            EncryptionAlg::DesEde3Cbc => "des-ede3-cbc",
        }
    }

    /// Linux crypto API name used in XFRMA_ALG_CRYPT (ESP always needs one, NULL included).
    pub fn kernel_name(self) -> &'static str {
        match self {
            EncryptionAlg::Null => "ecb(cipher_null)",
            EncryptionAlg::AesCbc => "cbc(aes)",
            EncryptionAlg::DesEde3Cbc => "cbc(des3_ede)",
        }
    }

    /// Name of the algorithm in Wireshark's `esp_sa` UAT.
    pub fn wireshark_name(self) -> &'static str {
        match self {
            EncryptionAlg::Null => "NULL",
            EncryptionAlg::AesCbc => "AES-CBC [RFC3602]",
            EncryptionAlg::DesEde3Cbc => "TripleDES-CBC [RFC2451]",
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            EncryptionAlg::Null => 0,
            EncryptionAlg::AesCbc => 16,
            EncryptionAlg::DesEde3Cbc => 24,
        }
    }

    /// Explicit IV length carried in each ESP packet (RFC 3602 §3, RFC 2451 §3).
    pub fn iv_len(self) -> usize {
        match self {
            EncryptionAlg::Null => 0,
            EncryptionAlg::AesCbc => 16,
            EncryptionAlg::DesEde3Cbc => 8,
        }
    }

    /// Alignment of payload‖padding‖pad-length‖next-header: the cipher block size, and at
    /// least 4 as RFC 4303 §2.4 requires.
    pub fn block_len(self) -> usize {
        match self {
            EncryptionAlg::Null => 4,
            EncryptionAlg::AesCbc => 16,
            EncryptionAlg::DesEde3Cbc => 8,
        }
    }

    /// CK_ESP from CK per TS 33.203 Annex I (3DES: CK1‖CK2‖CK1).
    pub fn derive_key(self, ck: &[u8; 16]) -> Vec<u8> {
        match self {
            EncryptionAlg::Null => Vec::new(),
            EncryptionAlg::AesCbc => ck.to_vec(),
            EncryptionAlg::DesEde3Cbc => {
                let mut k = ck.to_vec();
                k.extend_from_slice(&ck[..8]);
                k
            }
        }
    }
}

impl fmt::Display for IntegrityAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sip_name())
    }
}

impl fmt::Display for EncryptionAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sip_name())
    }
}

impl FromStr for IntegrityAlg {
    type Err = UnknownAlg;
    /// Case-insensitive, as RFC 3329 parameter values are tokens compared case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IntegrityAlg::ALL
            .into_iter()
            .find(|a| a.sip_name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAlg(s.to_string()))
    }
}

impl FromStr for EncryptionAlg {
    type Err = UnknownAlg;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EncryptionAlg::ALL
            .into_iter()
            .find(|a| a.sip_name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAlg(s.to_string()))
    }
}

/// Which end of the association we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The P-CSCF (owns `spi_pc`, `spi_ps`, `port_pc`, `port_ps`).
    Pcscf,
    /// The UE (owns `spi_uc`, `spi_us`, `port_uc`, `port_us`); installs the mirror image.
    Ue,
}

/// Direction of one SA (and of its policy) as seen from the installing side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We receive on it (its SPI is ours).
    In,
    /// We send on it (its SPI belongs to the peer).
    Out,
}

/// Which of the four SAs of the table in TS 33.203 §7.1 (numbered as in design.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaKind {
    /// SA 1: UE:port_uc → P:port_ps, SPI spi_ps.
    UeClientToPcscfServer,
    /// SA 2: P:port_pc → UE:port_us, SPI spi_us.
    PcscfClientToUeServer,
    /// SA 3: P:port_ps → UE:port_uc, SPI spi_uc.
    PcscfServerToUeClient,
    /// SA 4: UE:port_us → P:port_pc, SPI spi_pc.
    UeServerToPcscfClient,
}

/// One unidirectional transport-mode ESP SA with the selector of its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaDesc {
    /// Row of the SA table.
    pub kind: SaKind,
    /// Sender address and port (also the policy selector source, /32 or /128).
    pub src: SocketAddr,
    /// Receiver address and port.
    pub dst: SocketAddr,
    /// SPI, chosen by the receiver.
    pub spi: u32,
    /// Direction from the installing side's point of view.
    pub dir: Direction,
}

/// Keys of the four SAs (all four use the same IK_ESP/CK_ESP, TS 33.203 Annex I).
#[derive(Clone, PartialEq, Eq)]
pub struct SaKeys {
    /// Integrity key (IK_ESP).
    pub auth: Vec<u8>,
    /// Encryption key (CK_ESP), empty for NULL.
    pub enc: Vec<u8>,
}

impl fmt::Debug for SaKeys {
    // Keys never go to logs by accident; use the esp_sa export to see them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaKeys")
            .field("auth", &format_args!("<{} bytes>", self.auth.len()))
            .field("enc", &format_args!("<{} bytes>", self.enc.len()))
            .finish()
    }
}

/// Life cycle of an SA set (TS 33.203 §7.4): temporary while the registration awaits the
/// protected REGISTER, established after the 200 OK, expiring once superseded or deregistered
/// (kept briefly so the final response still goes out protected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaState {
    /// Installed after the 401; only the protected REGISTER may use it.
    Temporary,
    /// Promoted after the 200 OK.
    Established,
    /// Superseded or deregistered; deleted at the deadline.
    Expiring,
}

/// Error of an illegal state transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SA set cannot go from {from:?} to {to:?}")]
pub struct BadTransition {
    /// State before.
    pub from: SaState,
    /// Refused target.
    pub to: SaState,
}

/// Error in the parameters of an SA set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSaSet {
    /// UE and P-CSCF addresses of different families.
    #[error("UE address {ue} and P-CSCF address {pcscf} are of different IP families")]
    MixedFamilies {
        /// UE address.
        ue: IpAddr,
        /// P-CSCF address.
        pcscf: IpAddr,
    },
    /// SPI 0..=255 is reserved (RFC 4303 §2.1).
    #[error("SPI {0} is reserved (must be >= 256)")]
    ReservedSpi(u32),
    /// Port 0 cannot be a protected port.
    #[error("protected port must not be 0")]
    ZeroPort,
    /// SPIs must differ (each is an SA's identity at its receiver).
    #[error("SPI {0} is used twice in one SA set")]
    DuplicateSpi(u32),
}

/// One sec-agree security association set (four ESP SAs). Field names follow TS 33.203 §7.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSet {
    /// UE address (as seen by the P-CSCF).
    pub ue: IpAddr,
    /// P-CSCF address (the one the UE sends to).
    pub pcscf: IpAddr,
    /// UE protected client port.
    pub port_uc: u16,
    /// UE protected server port.
    pub port_us: u16,
    /// P-CSCF protected client port.
    pub port_pc: u16,
    /// P-CSCF protected server port.
    pub port_ps: u16,
    /// SPI of the UE's inbound SA from port_ps (SA 3).
    pub spi_uc: u32,
    /// SPI of the UE's inbound SA from port_pc (SA 2).
    pub spi_us: u32,
    /// SPI of the P-CSCF's inbound SA from port_us (SA 4).
    pub spi_pc: u32,
    /// SPI of the P-CSCF's inbound SA from port_uc (SA 1).
    pub spi_ps: u32,
    /// Integrity algorithm.
    pub integrity: IntegrityAlg,
    /// Encryption algorithm.
    pub encryption: EncryptionAlg,
    /// Keys derived from CK/IK.
    pub keys: SaKeys,
    /// Current state.
    pub state: SaState,
    /// When the current state ends (temporary: auth wait; established: registration expiry
    /// plus slack; expiring: deletion time). The owner deletes the set at that time: the
    /// backends do not give the kernel a lifetime so that no SA disappears behind our back.
    pub expires_at: Instant,
}

impl SaSet {
    /// Builds a temporary set, deriving the keys from CK/IK (TS 33.203 Annex I).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ue: SocketAddrPair,
        pcscf: SocketAddrPair,
        spis: Spis,
        integrity: IntegrityAlg,
        encryption: EncryptionAlg,
        ck: &[u8; 16],
        ik: &[u8; 16],
        temporary_lifetime: Duration,
        now: Instant,
    ) -> Result<SaSet, InvalidSaSet> {
        if ue.addr.is_ipv4() != pcscf.addr.is_ipv4() {
            return Err(InvalidSaSet::MixedFamilies {
                ue: ue.addr,
                pcscf: pcscf.addr,
            });
        }
        let all = [spis.uc, spis.us, spis.pc, spis.ps];
        for (i, s) in all.iter().enumerate() {
            if *s < 256 {
                return Err(InvalidSaSet::ReservedSpi(*s));
            }
            if all[..i].contains(s) {
                return Err(InvalidSaSet::DuplicateSpi(*s));
            }
        }
        if [ue.client, ue.server, pcscf.client, pcscf.server].contains(&0) {
            return Err(InvalidSaSet::ZeroPort);
        }
        Ok(SaSet {
            ue: ue.addr,
            pcscf: pcscf.addr,
            port_uc: ue.client,
            port_us: ue.server,
            port_pc: pcscf.client,
            port_ps: pcscf.server,
            spi_uc: spis.uc,
            spi_us: spis.us,
            spi_pc: spis.pc,
            spi_ps: spis.ps,
            integrity,
            encryption,
            keys: SaKeys {
                auth: integrity.derive_key(ik),
                enc: encryption.derive_key(ck),
            },
            state: SaState::Temporary,
            expires_at: now + temporary_lifetime,
        })
    }

    /// True for an IPv6 set.
    pub fn is_ipv6(&self) -> bool {
        self.ue.is_ipv6()
    }

    /// The four SAs of the table in design.md / TS 33.203 §7.1, directions as seen by `side`.
    pub fn sas(&self, side: Side) -> [SaDesc; 4] {
        let ue = |p| SocketAddr::new(self.ue, p);
        let pc = |p| SocketAddr::new(self.pcscf, p);
        let (inb, out) = match side {
            Side::Pcscf => (Direction::In, Direction::Out),
            Side::Ue => (Direction::Out, Direction::In),
        };
        [
            SaDesc {
                kind: SaKind::UeClientToPcscfServer,
                src: ue(self.port_uc),
                dst: pc(self.port_ps),
                spi: self.spi_ps,
                dir: inb,
            },
            SaDesc {
                kind: SaKind::PcscfClientToUeServer,
                src: pc(self.port_pc),
                dst: ue(self.port_us),
                spi: self.spi_us,
                dir: out,
            },
            SaDesc {
                kind: SaKind::PcscfServerToUeClient,
                src: pc(self.port_ps),
                dst: ue(self.port_uc),
                spi: self.spi_uc,
                dir: out,
            },
            SaDesc {
                kind: SaKind::UeServerToPcscfClient,
                src: ue(self.port_us),
                dst: pc(self.port_pc),
                spi: self.spi_pc,
                dir: inb,
            },
        ]
    }

    /// Temporary → established (on the 200 OK to the protected REGISTER).
    pub fn promote(&mut self, lifetime: Duration, now: Instant) -> Result<(), BadTransition> {
        self.transition(SaState::Established, SaState::Temporary, lifetime, now)
    }

    /// Temporary or established → expiring (superseded, deregistered or failed auth); the set
    /// is to be deleted after `grace`.
    pub fn begin_expiry(&mut self, grace: Duration, now: Instant) -> Result<(), BadTransition> {
        if self.state == SaState::Expiring {
            return Err(BadTransition {
                from: self.state,
                to: SaState::Expiring,
            });
        }
        self.state = SaState::Expiring;
        self.expires_at = now + grace;
        Ok(())
    }

    fn transition(
        &mut self,
        to: SaState,
        from: SaState,
        lifetime: Duration,
        now: Instant,
    ) -> Result<(), BadTransition> {
        if self.state != from {
            return Err(BadTransition {
                from: self.state,
                to,
            });
        }
        self.state = to;
        self.expires_at = now + lifetime;
        Ok(())
    }

    /// True once the current state's deadline has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }
}

/// One end's address and its two protected ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketAddrPair {
    /// IP address.
    pub addr: IpAddr,
    /// Protected client port (port-c).
    pub client: u16,
    /// Protected server port (port-s).
    pub server: u16,
}

/// The four SPIs of a set (spi-c/spi-s of both ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spis {
    /// UE spi-c.
    pub uc: u32,
    /// UE spi-s.
    pub us: u32,
    /// P-CSCF spi-c.
    pub pc: u32,
    /// P-CSCF spi-s.
    pub ps: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(i: IntegrityAlg, e: EncryptionAlg) -> SaSet {
        SaSet::new(
            SocketAddrPair {
                addr: "10.0.0.2".parse().unwrap(),
                client: 5062,
                server: 5064,
            },
            SocketAddrPair {
                addr: "10.0.0.1".parse().unwrap(),
                client: 5100,
                server: 5101,
            },
            Spis {
                uc: 1000,
                us: 1001,
                pc: 2000,
                ps: 2001,
            },
            i,
            e,
            &[0xc0; 16],
            &[0x1a; 16],
            Duration::from_secs(30),
            Instant::now(),
        )
        .unwrap()
    }

    #[test]
    fn names_round_trip() {
        for a in IntegrityAlg::ALL {
            assert_eq!(a.to_string().parse::<IntegrityAlg>().unwrap(), a);
        }
        for a in EncryptionAlg::ALL {
            assert_eq!(a.to_string().parse::<EncryptionAlg>().unwrap(), a);
        }
        assert_eq!(
            "HMAC-SHA-1-96".parse::<IntegrityAlg>().unwrap(),
            IntegrityAlg::HmacSha1_96
        );
        assert_eq!("des-ede3-cbc".parse(), Ok(EncryptionAlg::DesEde3Cbc));
        assert!("hmac-sha-256".parse::<IntegrityAlg>().is_err());
        assert!("aes-gcm".parse::<EncryptionAlg>().is_err());
    }

    #[test]
    fn annex_i_key_derivation() {
        let ck: [u8; 16] = core::array::from_fn(|i| i as u8);
        let ik: [u8; 16] = core::array::from_fn(|i| 0x80 + i as u8);
        assert_eq!(IntegrityAlg::HmacMd5_96.derive_key(&ik), ik.to_vec());
        let sha = IntegrityAlg::HmacSha1_96.derive_key(&ik);
        assert_eq!(&sha[..16], &ik);
        assert_eq!(&sha[16..], &[0, 0, 0, 0]);
        assert_eq!(EncryptionAlg::AesCbc.derive_key(&ck), ck.to_vec());
        let des = EncryptionAlg::DesEde3Cbc.derive_key(&ck);
        assert_eq!(des.len(), 24);
        assert_eq!(&des[..16], &ck);
        assert_eq!(&des[16..], &ck[..8]);
        assert!(EncryptionAlg::Null.derive_key(&ck).is_empty());
        for a in IntegrityAlg::ALL {
            assert_eq!(a.derive_key(&ik).len(), a.key_len());
        }
        for a in EncryptionAlg::ALL {
            assert_eq!(a.derive_key(&ck).len(), a.key_len());
        }
    }

    #[test]
    fn sa_table_pcscf_and_ue_are_mirrors() {
        let s = sample(IntegrityAlg::HmacSha1_96, EncryptionAlg::AesCbc);
        let p = s.sas(Side::Pcscf);
        let u = s.sas(Side::Ue);
        // Row 1: UE:port_uc -> P:port_ps with spi_ps, inbound at the P-CSCF.
        assert_eq!(p[0].src, "10.0.0.2:5062".parse().unwrap());
        assert_eq!(p[0].dst, "10.0.0.1:5101".parse().unwrap());
        assert_eq!(p[0].spi, 2001);
        assert_eq!(p[0].dir, Direction::In);
        assert_eq!(p[1].spi, 1001);
        assert_eq!(p[1].dir, Direction::Out);
        assert_eq!(p[2].spi, 1000);
        assert_eq!(p[2].src, "10.0.0.1:5101".parse().unwrap());
        assert_eq!(p[3].spi, 2000);
        assert_eq!(p[3].dir, Direction::In);
        for (a, b) in p.iter().zip(u.iter()) {
            assert_eq!((a.src, a.dst, a.spi), (b.src, b.dst, b.spi));
            assert_ne!(a.dir, b.dir);
            // Each SPI is chosen by the receiver: inbound SAs at the P-CSCF carry its SPIs.
            let pcscf_owned = [s.spi_pc, s.spi_ps].contains(&a.spi);
            assert_eq!(pcscf_owned, a.dir == Direction::In);
            assert_eq!(a.dst.ip() == s.pcscf, a.dir == Direction::In);
        }
    }

    #[test]
    fn state_machine() {
        let now = Instant::now();
        let mut s = sample(IntegrityAlg::HmacMd5_96, EncryptionAlg::Null);
        assert_eq!(s.state, SaState::Temporary);
        assert!(!s.is_expired(now));
        assert!(s.is_expired(now + Duration::from_secs(31)));
        s.promote(Duration::from_secs(600), now).unwrap();
        assert_eq!(s.state, SaState::Established);
        assert!(s.promote(Duration::from_secs(1), now).is_err());
        s.begin_expiry(Duration::from_secs(5), now).unwrap();
        assert_eq!(s.state, SaState::Expiring);
        assert!(s.is_expired(now + Duration::from_secs(5)));
        assert!(s.begin_expiry(Duration::from_secs(5), now).is_err());
        assert!(s.promote(Duration::from_secs(1), now).is_err());
    }

    #[test]
    fn invalid_sets_rejected() {
        let v4 = SocketAddrPair {
            addr: "10.0.0.2".parse().unwrap(),
            client: 1,
            server: 2,
        };
        let v6 = SocketAddrPair {
            addr: "::1".parse().unwrap(),
            client: 1,
            server: 2,
        };
        let spis = Spis {
            uc: 300,
            us: 301,
            pc: 302,
            ps: 303,
        };
        let mk = |a, b, s| {
            SaSet::new(
                a,
                b,
                s,
                IntegrityAlg::HmacMd5_96,
                EncryptionAlg::Null,
                &[0; 16],
                &[0; 16],
                Duration::from_secs(1),
                Instant::now(),
            )
        };
        assert!(matches!(
            mk(v4, v6, spis),
            Err(InvalidSaSet::MixedFamilies { .. })
        ));
        assert_eq!(
            mk(v4, v4, Spis { uc: 255, ..spis }),
            Err(InvalidSaSet::ReservedSpi(255))
        );
        assert_eq!(
            mk(v4, v4, Spis { pc: 300, ..spis }),
            Err(InvalidSaSet::DuplicateSpi(300))
        );
        assert_eq!(
            mk(v4, SocketAddrPair { client: 0, ..v4 }, spis),
            Err(InvalidSaSet::ZeroPort)
        );
        assert!(mk(v6, v6, spis).unwrap().is_ipv6());
    }
}
