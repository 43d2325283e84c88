//! The AKA nonce and `auts` encodings of RFC 3310 §3.2 and §3.3.
//!
//! nonce = base64(RAND ‖ AUTN ‖ server data), where server data is optional and opaque to the
//! UE. auts = base64(AUTS), 14 octets. Both travel as quoted strings in digest headers.
//! Decoding accepts standard base64 with or without padding: handsets and S-CSCFs disagree.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Standard alphabet, pad on encode, accept both on decode.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a nonce or auts value is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Not base64 at all.
    #[error("not valid base64: {0}")]
    Base64(String),
    /// Decoded, but shorter than RAND ‖ AUTN.
    #[error("nonce decodes to {0} octets; AKA needs at least 32 (RAND 16 + AUTN 16)")]
    TooShort(usize),
    /// An auts value that is not 14 octets.
    #[error("auts decodes to {0} octets; AUTS is 14 (SQN_MS^AK* 6 + MAC-S 8)")]
    AutsLength(usize),
}

/// A decoded AKA nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AkaNonce {
    /// RAND.
    pub rand: [u8; 16],
    /// AUTN.
    pub autn: [u8; 16],
    /// Anything the server appended after AUTN.
    pub server_data: Vec<u8>,
}

/// base64(RAND ‖ AUTN ‖ server_data).
pub fn encode(rand: &[u8; 16], autn: &[u8; 16], server_data: &[u8]) -> String {
    let mut raw = Vec::with_capacity(32 + server_data.len());
    raw.extend_from_slice(rand);
    raw.extend_from_slice(autn);
    raw.extend_from_slice(server_data);
    B64.encode(raw)
}

/// Split a nonce into RAND, AUTN and server data.
pub fn decode(nonce: &str) -> Result<AkaNonce, NonceError> {
    let raw = B64
        .decode(nonce.trim())
        .map_err(|e| NonceError::Base64(e.to_string()))?;
    if raw.len() < 32 {
        return Err(NonceError::TooShort(raw.len()));
    }
    let mut rand = [0u8; 16];
    let mut autn = [0u8; 16];
    rand.copy_from_slice(&raw[..16]);
    autn.copy_from_slice(&raw[16..32]);
    Ok(AkaNonce {
        rand,
        autn,
        server_data: raw[32..].to_vec(),
    })
}

/// base64(AUTS).
pub fn encode_auts(auts: &[u8; 14]) -> String {
    B64.encode(auts)
}

/// The 14 octets of an `auts` parameter.
pub fn decode_auts(auts: &str) -> Result<[u8; 14], NonceError> {
    let raw = B64
        .decode(auts.trim())
        .map_err(|e| NonceError::Base64(e.to_string()))?;
    raw.as_slice()
        .try_into()
        .map_err(|_| NonceError::AutsLength(raw.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_nonce_layout() {
        let n = encode(&[0; 16], &[0xff; 16], &[]);
        // 32 octets → 44 base64 characters with one '=' of padding.
        assert_eq!(n.len(), 44);
        assert!(n.ends_with('='));
        let d = decode(n.trim_end_matches('=')).unwrap();
        assert_eq!((d.rand, d.autn), ([0; 16], [0xff; 16]));
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(decode("@@@"), Err(NonceError::Base64(_))));
        assert_eq!(decode("AAAA"), Err(NonceError::TooShort(3)));
        assert_eq!(decode_auts("AAAA"), Err(NonceError::AutsLength(3)));
    }

    proptest! {
        #[test]
        fn nonce_round_trip(rand in any::<[u8; 16]>(), autn in any::<[u8; 16]>(),
                            extra in proptest::collection::vec(any::<u8>(), 0..40)) {
            let d = decode(&encode(&rand, &autn, &extra)).unwrap();
            prop_assert_eq!(d, AkaNonce { rand, autn, server_data: extra });
        }

        #[test]
        fn auts_round_trip(auts in any::<[u8; 14]>()) {
            prop_assert_eq!(decode_auts(&encode_auts(&auts)).unwrap(), auts);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".*") {
            let _ = decode(&s);
            let _ = decode_auts(&s);
        }
    }
}
