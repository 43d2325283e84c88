//! Sans-IO ESP (RFC 4303) in transport mode: one [`EspSa`] per unidirectional SA.
//!
//! Packet layout (RFC 4303 §2): `SPI(4) ‖ Seq(4) ‖ IV ‖ E(payload ‖ padding ‖ pad-len ‖
//! next-header) ‖ ICV(12)`. The ICV (HMAC-MD5-96, RFC 2403; HMAC-SHA-1-96, RFC 2404) covers
//! everything before it. Sequence numbers are 32-bit (no ESN, as sec-agree SAs never carry
//! 2^32 packets); the receiver keeps a 64-packet anti-replay window (RFC 4303 §3.4.3,
//! Appendix A2). Nothing here does I/O or reads a clock: bytes in, bytes out.

use std::fmt;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit};
use hmac::{Hmac, Mac};

use crate::model::{EncryptionAlg, IntegrityAlg, SaKeys};

/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// Next header value of a dummy packet (RFC 4303 §2.6), silently dropped.
pub const NEXT_HEADER_NONE: u8 = 59;
/// Size of the anti-replay window in packets.
pub const REPLAY_WINDOW: u32 = 64;

/// Why an ESP packet was refused or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// Too short, not block-aligned, or inconsistent lengths.
    #[error("malformed ESP packet: {0}")]
    Malformed(&'static str),
    /// The ICV does not match: tampered or wrong key.
    #[error("ESP ICV check failed (spi 0x{spi:08x}, seq {seq})")]
    BadIcv {
        /// SPI of the packet.
        spi: u32,
        /// Sequence number of the packet.
        seq: u32,
    },
    /// Sequence number already seen or left of the window (RFC 4303 §3.4.3).
    #[error("ESP replay (spi 0x{spi:08x}, seq {seq})")]
    Replay {
        /// SPI of the packet.
        spi: u32,
        /// Sequence number of the packet.
        seq: u32,
    },
    /// No SA with that SPI.
    #[error("no ESP SA for spi 0x{0:08x}")]
    UnknownSpi(u32),
    /// The packet was for another SA.
    #[error("ESP packet spi 0x{got:08x} given to SA 0x{want:08x}")]
    SpiMismatch {
        /// SPI of the SA.
        want: u32,
        /// SPI in the packet.
        got: u32,
    },
    /// Padding bytes are not 1, 2, 3, ... (RFC 4303 §2.4) after a valid ICV.
    #[error("ESP padding invalid")]
    BadPadding,
    /// 2^32-1 packets sent: the SA must be replaced (RFC 4303 §3.3.3).
    #[error("ESP sequence number space exhausted")]
    SequenceExhausted,
    /// Key of the wrong length for the algorithm.
    #[error("{alg} needs a {want}-byte key, got {got}")]
    BadKeyLength {
        /// Algorithm name.
        alg: &'static str,
        /// Expected length.
        want: usize,
        /// Given length.
        got: usize,
    },
    /// IV of the wrong length for the algorithm (only with [`EspSa::encrypt_with_iv`]).
    #[error("IV must be {want} bytes, got {got}")]
    BadIvLength {
        /// Expected length.
        want: usize,
        /// Given length.
        got: usize,
    },
}

/// Packet counters of one SA (visible in metrics and asserted by tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EspCounters {
    /// Packets encrypted.
    pub out_packets: u64,
    /// Plaintext bytes encrypted.
    pub out_bytes: u64,
    /// Packets decrypted and accepted.
    pub in_packets: u64,
    /// Plaintext bytes accepted.
    pub in_bytes: u64,
    /// Dropped: ICV mismatch (tampered).
    pub dropped_icv: u64,
    /// Dropped: replayed or too old.
    pub dropped_replay: u64,
    /// Dropped: malformed or bad padding.
    pub dropped_malformed: u64,
}

/// RFC 4303 Appendix A2 sliding window of 64 sequence numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u32,
    bitmap: u64,
}

impl ReplayWindow {
    /// True if `seq` may be accepted (not seen, not left of the window, not 0).
    pub fn check(&self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            return true;
        }
        let diff = self.top - seq;
        diff < REPLAY_WINDOW && self.bitmap & (1u64 << diff) == 0
    }

    /// Marks `seq` as seen; call only after the ICV verified (RFC 4303 §3.4.3).
    pub fn update(&mut self, seq: u32) {
        if seq > self.top {
            let shift = seq - self.top;
            self.bitmap = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.bitmap << shift
            };
            self.bitmap |= 1;
            self.top = seq;
        } else {
            let diff = self.top - seq;
            if diff < REPLAY_WINDOW {
                self.bitmap |= 1u64 << diff;
            }
        }
    }

    /// Highest sequence number accepted so far.
    pub fn top(&self) -> u32 {
        self.top
    }
}

#[derive(Clone)]
enum MacKey {
    Md5(Hmac<md5::Md5>),
    Sha1(Hmac<sha1::Sha1>),
}

impl MacKey {
    fn new(alg: IntegrityAlg, key: &[u8]) -> Result<MacKey, EspError> {
        if key.len() != alg.key_len() {
            return Err(EspError::BadKeyLength {
                alg: alg.sip_name(),
                want: alg.key_len(),
                got: key.len(),
            });
        }
        let bad = |_| EspError::BadKeyLength {
            alg: alg.sip_name(),
            want: alg.key_len(),
            got: key.len(),
        };
        Ok(match alg {
            IntegrityAlg::HmacMd5_96 => {
                MacKey::Md5(<Hmac<md5::Md5> as KeyInit>::new_from_slice(key).map_err(bad)?)
            }
            IntegrityAlg::HmacSha1_96 => {
                MacKey::Sha1(<Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key).map_err(bad)?)
            }
        })
    }

    /// Full (untruncated) HMAC of `data`; the keyed state is cloned so the key schedule
    /// (ipad/opad blocks) is computed once per SA, not per packet.
    fn compute(&self, data: &[u8]) -> Vec<u8> {
        match self {
            MacKey::Md5(m) => {
                let mut m = m.clone();
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            MacKey::Sha1(m) => {
                let mut m = m.clone();
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Constant-time check of a truncated ICV.
    fn verify(&self, data: &[u8], icv: &[u8]) -> bool {
        match self {
            MacKey::Md5(m) => {
                let mut m = m.clone();
                m.update(data);
                m.verify_truncated_left(icv).is_ok()
            }
            MacKey::Sha1(m) => {
                let mut m = m.clone();
                m.update(data);
                m.verify_truncated_left(icv).is_ok()
            }
        }
    }
}

#[derive(Clone)]
enum CipherKey {
    Null,
    Aes(aes::Aes128),
    Des3(des::TdesEde3),
}

/// CBC (RFC 3602 §2.3, RFC 2451) from the `cbc` crate over a key schedule kept per SA: each
/// packet only clones the scheduled cipher into a fresh mode instance with its IV.
macro_rules! cbc_run {
    (enc, $c:expr, $ty:ty, $iv:expr, $buf:expr) => {{
        let len = $buf.len();
        cbc::Encryptor::<$ty>::inner_iv_slice_init($c.clone(), $iv)
            .map_err(|_| EspError::Malformed("IV length"))?
            .encrypt_padded::<NoPadding>($buf, len)
            .map(|_| ())
            .map_err(|_| EspError::Malformed("not block-aligned"))
    }};
    (dec, $c:expr, $ty:ty, $iv:expr, $buf:expr) => {{
        cbc::Decryptor::<$ty>::inner_iv_slice_init($c.clone(), $iv)
            .map_err(|_| EspError::Malformed("IV length"))?
            .decrypt_padded::<NoPadding>($buf)
            .map(|_| ())
            .map_err(|_| EspError::Malformed("not block-aligned"))
    }};
}

impl CipherKey {
    fn new(alg: EncryptionAlg, key: &[u8]) -> Result<CipherKey, EspError> {
        let bad = || EspError::BadKeyLength {
            alg: alg.sip_name(),
            want: alg.key_len(),
            got: key.len(),
        };
        if key.len() != alg.key_len() {
            return Err(bad());
        }
        Ok(match alg {
            EncryptionAlg::Null => CipherKey::Null,
            EncryptionAlg::AesCbc => {
                CipherKey::Aes(aes::Aes128::new_from_slice(key).map_err(|_| bad())?)
            }
            // Weak-key checks are not done: Annex I derives the key from CK, we cannot pick.
            EncryptionAlg::DesEde3Cbc => {
                CipherKey::Des3(des::TdesEde3::new_from_slice(key).map_err(|_| bad())?)
            }
        })
    }

    /// Encrypts `buf` (a multiple of the block size) in place.
    fn encrypt(&self, iv: &[u8], buf: &mut [u8]) -> Result<(), EspError> {
        match self {
            CipherKey::Null => Ok(()),
            CipherKey::Aes(c) => cbc_run!(enc, c, aes::Aes128, iv, buf),
            CipherKey::Des3(c) => cbc_run!(enc, c, des::TdesEde3, iv, buf),
        }
    }

    /// Decrypts `buf` (a multiple of the block size) in place.
    fn decrypt(&self, iv: &[u8], buf: &mut [u8]) -> Result<(), EspError> {
        match self {
            CipherKey::Null => Ok(()),
            CipherKey::Aes(c) => cbc_run!(dec, c, aes::Aes128, iv, buf),
            CipherKey::Des3(c) => cbc_run!(dec, c, des::TdesEde3, iv, buf),
        }
    }
}

/// A decrypted, verified ESP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// Sequence number of the packet.
    pub seq: u32,
    /// Next header (17 UDP, 6 TCP).
    pub next_header: u8,
    /// The transport segment (UDP/TCP header and data).
    pub payload: Vec<u8>,
}

/// One unidirectional ESP SA: outbound (encrypt) or inbound (decrypt) state.
#[derive(Clone)]
pub struct EspSa {
    spi: u32,
    integrity: IntegrityAlg,
    encryption: EncryptionAlg,
    mac: MacKey,
    cipher: CipherKey,
    seq_out: u32,
    replay: ReplayWindow,
    counters: EspCounters,
}

impl fmt::Debug for EspSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EspSa")
            .field("spi", &format_args!("0x{:08x}", self.spi))
            .field("integrity", &self.integrity)
            .field("encryption", &self.encryption)
            .field("seq_out", &self.seq_out)
            .field("replay", &self.replay)
            .field("counters", &self.counters)
            .finish()
    }
}

/// Reads the SPI of an ESP packet (to find its SA) without other checks.
pub fn peek_spi(packet: &[u8]) -> Result<u32, EspError> {
    match packet.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(EspError::Malformed("shorter than an SPI")),
    }
}

impl EspSa {
    /// Creates an SA with keys of the right length for its algorithms.
    pub fn new(
        spi: u32,
        integrity: IntegrityAlg,
        encryption: EncryptionAlg,
        keys: &SaKeys,
    ) -> Result<EspSa, EspError> {
        Ok(EspSa {
            spi,
            integrity,
            encryption,
            mac: MacKey::new(integrity, &keys.auth)?,
            cipher: CipherKey::new(encryption, &keys.enc)?,
            seq_out: 0,
            replay: ReplayWindow::default(),
            counters: EspCounters::default(),
        })
    }

    /// SPI of this SA.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Counters so far.
    pub fn counters(&self) -> EspCounters {
        self.counters
    }

    /// Last sequence number sent (0 before the first packet).
    pub fn last_seq_out(&self) -> u32 {
        self.seq_out
    }

    /// Anti-replay state of the inbound direction.
    pub fn replay_window(&self) -> ReplayWindow {
        self.replay
    }

    /// Length of the ESP packet produced for a payload of `len` bytes.
    pub fn encrypted_len(&self, len: usize) -> usize {
        let bs = self.encryption.block_len();
        let body = (len + 2).div_ceil(bs) * bs;
        8 + self.encryption.iv_len() + body + self.integrity.icv_len()
    }

    /// Encrypts a transport segment with a fresh random IV (RFC 3602 §2.1: IVs must be
    /// unpredictable).
    pub fn encrypt(&mut self, next_header: u8, payload: &[u8]) -> Result<Vec<u8>, EspError> {
        let mut iv = vec![0u8; self.encryption.iv_len()];
        rand::Rng::fill(&mut rand::rng(), &mut iv[..]);
        self.encrypt_with_iv(next_header, payload, &iv)
    }

    /// Encrypts with a caller-chosen IV (tests and known-answer vectors only).
    pub fn encrypt_with_iv(
        &mut self,
        next_header: u8,
        payload: &[u8],
        iv: &[u8],
    ) -> Result<Vec<u8>, EspError> {
        if iv.len() != self.encryption.iv_len() {
            return Err(EspError::BadIvLength {
                want: self.encryption.iv_len(),
                got: iv.len(),
            });
        }
        let seq = self
            .seq_out
            .checked_add(1)
            .ok_or(EspError::SequenceExhausted)?;
        let bs = self.encryption.block_len();
        let pad = (bs - (payload.len() + 2) % bs) % bs;
        let mut out = Vec::with_capacity(self.encrypted_len(payload.len()));
        out.extend_from_slice(&self.spi.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(iv);
        let body_start = out.len();
        out.extend_from_slice(payload);
        // Default monotonic padding 1, 2, 3, ... (RFC 4303 §2.4).
        out.extend((1..=pad).map(|i| i as u8));
        out.push(pad as u8);
        out.push(next_header);
        self.cipher.encrypt(iv, &mut out[body_start..])?;
        let icv = self.mac.compute(&out);
        out.extend_from_slice(&icv[..self.integrity.icv_len()]);
        self.seq_out = seq;
        self.counters.out_packets += 1;
        self.counters.out_bytes += payload.len() as u64;
        Ok(out)
    }

    /// Verifies and decrypts one ESP packet (the IP payload). Order per RFC 4303 §3.4.3:
    /// cheap replay check, ICV, then the window update, then decryption.
    pub fn decrypt(&mut self, packet: &[u8]) -> Result<Decrypted, EspError> {
        let r = self.decrypt_inner(packet);
        match &r {
            Ok(d) => {
                self.counters.in_packets += 1;
                self.counters.in_bytes += d.payload.len() as u64;
            }
            Err(EspError::BadIcv { .. }) => self.counters.dropped_icv += 1,
            Err(EspError::Replay { .. }) => self.counters.dropped_replay += 1,
            Err(EspError::SpiMismatch { .. }) | Err(EspError::UnknownSpi(_)) => {}
            Err(_) => self.counters.dropped_malformed += 1,
        }
        r
    }

    fn decrypt_inner(&mut self, packet: &[u8]) -> Result<Decrypted, EspError> {
        let iv_len = self.encryption.iv_len();
        let icv_len = self.integrity.icv_len();
        let bs = self.encryption.block_len();
        if packet.len() < 8 + iv_len + bs + icv_len {
            return Err(EspError::Malformed("too short"));
        }
        let spi = peek_spi(packet)?;
        if spi != self.spi {
            return Err(EspError::SpiMismatch {
                want: self.spi,
                got: spi,
            });
        }
        let seq = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let (authed, icv) = packet.split_at(packet.len() - icv_len);
        let body_len = authed.len() - 8 - iv_len;
        if body_len % bs != 0 {
            return Err(EspError::Malformed("ciphertext not block-aligned"));
        }
        if !self.replay.check(seq) {
            return Err(EspError::Replay { spi, seq });
        }
        if !self.mac.verify(authed, icv) {
            return Err(EspError::BadIcv { spi, seq });
        }
        self.replay.update(seq);
        let iv = &authed[8..8 + iv_len];
        let mut body = authed[8 + iv_len..].to_vec();
        self.cipher.decrypt(iv, &mut body)?;
        let n = body.len();
        let next_header = body[n - 1];
        let pad = usize::from(body[n - 2]);
        if pad + 2 > n {
            return Err(EspError::Malformed("pad length exceeds payload"));
        }
        let data_len = n - 2 - pad;
        if !body[data_len..n - 2]
            .iter()
            .enumerate()
            .all(|(i, b)| usize::from(*b) == i + 1)
        {
            return Err(EspError::BadPadding);
        }
        body.truncate(data_len);
        Ok(Decrypted {
            seq,
            next_header,
            payload: body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    // RFC 2202 test cases 1-3 (HMAC-MD5 and HMAC-SHA-1); RFC 2403/2404 truncate to 96 bits.
    #[test]
    fn hmac_rfc2202_vectors() {
        let md5 = MacKey::new(IntegrityAlg::HmacMd5_96, &[0x0b; 16]).unwrap();
        assert_eq!(
            md5.compute(b"Hi There"),
            h("9294727a3638bb1c13f48ef8158bfc9d")
        );
        let sha = MacKey::new(IntegrityAlg::HmacSha1_96, &[0x0b; 20]).unwrap();
        assert_eq!(
            sha.compute(b"Hi There"),
            h("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        let md5 = MacKey::new(IntegrityAlg::HmacMd5_96, &[0xaa; 16]).unwrap();
        assert_eq!(
            md5.compute(&[0xdd; 50]),
            h("56be34521d144c88dbb8c733f0e8b3f6")
        );
        let sha = MacKey::new(IntegrityAlg::HmacSha1_96, &[0xaa; 20]).unwrap();
        assert_eq!(
            sha.compute(&[0xdd; 50]),
            h("125d7342b9ac11cd91a39af48aa17b4f63f175d3")
        );
        assert!(sha.verify(&[0xdd; 50], &h("125d7342b9ac11cd91a39af4")));
        assert!(!sha.verify(&[0xdd; 50], &h("125d7342b9ac11cd91a39af5")));
    }

    // RFC 3602 §4 cases 1 and 2 (AES-128-CBC).
    #[test]
    fn aes_cbc_rfc3602_vectors() {
        let c = CipherKey::new(
            EncryptionAlg::AesCbc,
            &h("06a9214036b8a15b512e03d534120006"),
        )
        .unwrap();
        let mut buf = b"Single block msg".to_vec();
        c.encrypt(&h("3dafba429d9eb430b422da802c9fac41"), &mut buf)
            .unwrap();
        assert_eq!(buf, h("e353779c1079aeb82708942dbe77181a"));
        let c = CipherKey::new(
            EncryptionAlg::AesCbc,
            &h("c286696d887c9aa0611bbb3e2025a45a"),
        )
        .unwrap();
        let iv = h("562e17996d093d28ddb3ba695a2e6f58");
        let pt: Vec<u8> = (0u8..32).collect();
        let mut buf = pt.clone();
        c.encrypt(&iv, &mut buf).unwrap();
        assert_eq!(
            buf,
            h("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")
        );
        c.decrypt(&iv, &mut buf).unwrap();
        assert_eq!(buf, pt);
    }

    // Computed with `openssl enc -des-ede3-cbc -nopad` (an independent implementation).
    #[test]
    fn des3_cbc_openssl_vector() {
        let c = CipherKey::new(
            EncryptionAlg::DesEde3Cbc,
            &h("0123456789abcdef23456789abcdef01456789abcdef0123"),
        )
        .unwrap();
        let iv = h("1234567890abcdef");
        let mut buf = b"Now is the time for all ".to_vec();
        c.encrypt(&iv, &mut buf).unwrap();
        assert_eq!(buf, h("f3c0ff026c023089656fbb169def7edb30ba36075d6f0176"));
        c.decrypt(&iv, &mut buf).unwrap();
        assert_eq!(buf, b"Now is the time for all ");
    }

    fn keys(i: IntegrityAlg, e: EncryptionAlg) -> SaKeys {
        SaKeys {
            auth: i.derive_key(&[0x11; 16]),
            enc: e.derive_key(&[0x22; 16]),
        }
    }

    fn pair(i: IntegrityAlg, e: EncryptionAlg) -> (EspSa, EspSa) {
        let k = keys(i, e);
        (
            EspSa::new(0x1234, i, e, &k).unwrap(),
            EspSa::new(0x1234, i, e, &k).unwrap(),
        )
    }

    #[test]
    fn known_packet_layout_null_md5() {
        // NULL encryption exposes the layout: SPI, seq, payload, padding to 4, pad len, nh, ICV.
        let (mut tx, _) = pair(IntegrityAlg::HmacMd5_96, EncryptionAlg::Null);
        let p = tx.encrypt_with_iv(17, b"abcde", &[]).unwrap();
        assert_eq!(&p[..8], &h("0000123400000001"));
        assert_eq!(&p[8..16], b"abcde\x01\x01\x11");
        let mac = MacKey::new(IntegrityAlg::HmacMd5_96, &[0x11; 16]).unwrap();
        assert_eq!(&p[16..], &mac.compute(&p[..16])[..12]);
        assert_eq!(p.len(), tx.encrypted_len(5));
    }

    #[test]
    fn round_trip_all_algorithms_and_sizes() {
        for i in IntegrityAlg::ALL {
            for e in EncryptionAlg::ALL {
                let (mut tx, mut rx) = pair(i, e);
                for len in [0usize, 1, 13, 14, 15, 16, 17, 700, 1300] {
                    let pt: Vec<u8> = (0..len).map(|x| x as u8).collect();
                    let p = tx.encrypt(17, &pt).unwrap();
                    assert_eq!(p.len(), tx.encrypted_len(len));
                    assert_eq!((p.len() - 8 - e.iv_len() - 12) % e.block_len(), 0);
                    if e != EncryptionAlg::Null && len >= 16 {
                        assert!(
                            !p.windows(16).any(|w| w == &pt[..16]),
                            "{e}: plaintext on the wire"
                        );
                    }
                    let d = rx.decrypt(&p).unwrap();
                    assert_eq!(d.next_header, 17);
                    assert_eq!(d.payload, pt);
                }
                assert_eq!(rx.counters().in_packets, 9);
                assert_eq!(tx.counters().out_packets, 9);
            }
        }
    }

    #[test]
    fn tamper_every_byte_detected() {
        let (mut tx, mut rx) = pair(IntegrityAlg::HmacSha1_96, EncryptionAlg::AesCbc);
        let p = tx.encrypt(17, b"INVITE sip:bob SIP/2.0\r\n").unwrap();
        for i in 8..p.len() {
            let mut t = p.clone();
            t[i] ^= 0x01;
            assert!(
                matches!(rx.decrypt(&t), Err(EspError::BadIcv { .. })),
                "byte {i}"
            );
        }
        assert_eq!(rx.counters().dropped_icv, (p.len() - 8) as u64);
        // The real packet still goes through: failed packets did not move the window.
        assert!(rx.decrypt(&p).is_ok());
    }

    #[test]
    fn replay_dropped_and_counted() {
        let (mut tx, mut rx) = pair(IntegrityAlg::HmacMd5_96, EncryptionAlg::DesEde3Cbc);
        let pkts: Vec<Vec<u8>> = (0..100).map(|_| tx.encrypt(17, b"x").unwrap()).collect();
        rx.decrypt(&pkts[0]).unwrap();
        assert!(matches!(
            rx.decrypt(&pkts[0]),
            Err(EspError::Replay { seq: 1, .. })
        ));
        // Out of order within the window is fine.
        rx.decrypt(&pkts[50]).unwrap();
        rx.decrypt(&pkts[20]).unwrap();
        assert!(matches!(
            rx.decrypt(&pkts[20]),
            Err(EspError::Replay { .. })
        ));
        rx.decrypt(&pkts[99]).unwrap();
        // seq 36 is 64 behind seq 100: left of the window.
        assert!(matches!(
            rx.decrypt(&pkts[35]),
            Err(EspError::Replay { seq: 36, .. })
        ));
        rx.decrypt(&pkts[36]).unwrap();
        assert_eq!(rx.counters().dropped_replay, 3);
        assert_eq!(rx.counters().in_packets, 5);
    }

    #[test]
    fn replay_window_appendix_a() {
        let mut w = ReplayWindow::default();
        assert!(!w.check(0));
        w.update(1);
        w.update(64);
        assert!(!w.check(1));
        assert!(w.check(2));
        w.update(65);
        // 1 is now 64 behind 65: outside.
        assert!(!w.check(1));
        assert!(w.check(2));
        w.update(1000);
        assert!(!w.check(936));
        assert!(w.check(937));
        assert!(!w.check(1000));
        w.update(u32::MAX);
        assert_eq!(w.top(), u32::MAX);
    }

    #[test]
    fn malformed_inputs() {
        let (mut tx, mut rx) = pair(IntegrityAlg::HmacSha1_96, EncryptionAlg::AesCbc);
        assert!(matches!(rx.decrypt(&[]), Err(EspError::Malformed(_))));
        assert!(matches!(rx.decrypt(&[0; 30]), Err(EspError::Malformed(_))));
        let p = tx.encrypt(17, b"hello").unwrap();
        let mut short = p.clone();
        short.remove(30);
        assert!(matches!(rx.decrypt(&short), Err(EspError::Malformed(_))));
        let mut other = p.clone();
        other[3] ^= 1;
        assert!(matches!(
            rx.decrypt(&other),
            Err(EspError::SpiMismatch { .. })
        ));
        assert_eq!(rx.counters().dropped_malformed, 3);
        assert!(matches!(peek_spi(&[1, 2]), Err(EspError::Malformed(_))));
    }

    #[test]
    fn bad_padding_after_valid_icv() {
        // Build a NULL packet whose pad bytes are not monotonic but whose ICV is right.
        let k = keys(IntegrityAlg::HmacMd5_96, EncryptionAlg::Null);
        let mut rx = EspSa::new(7, IntegrityAlg::HmacMd5_96, EncryptionAlg::Null, &k).unwrap();
        let mut p = h("00000007 00000001");
        // "abcd", padding 0x09 0x02 (should be 0x01 0x02), pad length 2, next header 17.
        p.extend_from_slice(b"abcd\x09\x02\x02\x11");
        let mac = MacKey::new(IntegrityAlg::HmacMd5_96, &k.auth).unwrap();
        let icv = mac.compute(&p);
        p.extend_from_slice(&icv[..12]);
        assert_eq!(rx.decrypt(&p), Err(EspError::BadPadding));
    }

    #[test]
    fn sequence_number_never_cycles() {
        let (mut tx, mut rx) = pair(IntegrityAlg::HmacMd5_96, EncryptionAlg::Null);
        tx.seq_out = u32::MAX - 1;
        let last = tx.encrypt(17, b"x").unwrap();
        assert_eq!(&last[4..8], &u32::MAX.to_be_bytes());
        assert_eq!(tx.encrypt(17, b"x"), Err(EspError::SequenceExhausted));
        assert!(rx.decrypt(&last).is_ok());
    }

    #[test]
    fn bad_keys() {
        let k = SaKeys {
            auth: vec![0; 16],
            enc: vec![0; 15],
        };
        assert!(matches!(
            EspSa::new(300, IntegrityAlg::HmacSha1_96, EncryptionAlg::AesCbc, &k),
            Err(EspError::BadKeyLength { .. })
        ));
        let mut s = EspSa::new(
            300,
            IntegrityAlg::HmacMd5_96,
            EncryptionAlg::AesCbc,
            &SaKeys {
                auth: vec![0; 16],
                enc: vec![0; 16],
            },
        )
        .unwrap();
        assert!(matches!(
            s.encrypt_with_iv(17, b"", &[0; 8]),
            Err(EspError::BadIvLength { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decrypt_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            for e in EncryptionAlg::ALL {
                let (_, mut rx) = pair(IntegrityAlg::HmacMd5_96, e);
                let mut d = data.clone();
                if d.len() >= 4 { d[..4].copy_from_slice(&0x1234u32.to_be_bytes()); }
                let _ = rx.decrypt(&d);
            }
        }
    }
}
