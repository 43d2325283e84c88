//! Digest headers on a [`Message`], parsed by `akav1::digest` (which owns the
//! AKAv1-MD5 / RFC 2617 parameter grammar; this crate does not duplicate it).

pub use akav1::digest::{AuthenticationInfo, Challenge, Credentials, DigestError};

use crate::ims::hdr;
use crate::message::Message;

/// AKA keys a S-CSCF put into a 401 challenge for the P-CSCF (TS 24.229 §5.4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkaKeys {
    /// `ck` parameter, hex as sent
    pub ck: Option<String>,
    /// `ik` parameter, hex as sent
    pub ik: Option<String>,
}

impl Message {
    /// The Authorization credentials (first Authorization header), `None` if absent.
    pub fn digest_credentials(&self) -> Option<Result<Credentials, DigestError>> {
        self.header(hdr::AUTHORIZATION).map(Credentials::parse)
    }

    /// The Proxy-Authorization credentials, `None` if absent.
    pub fn proxy_credentials(&self) -> Option<Result<Credentials, DigestError>> {
        self.header(hdr::PROXY_AUTHORIZATION)
            .map(Credentials::parse)
    }

    /// The WWW-Authenticate challenge (first header), `None` if absent.
    pub fn digest_challenge(&self) -> Option<Result<Challenge, DigestError>> {
        self.header(hdr::WWW_AUTHENTICATE).map(Challenge::parse)
    }

    /// The Authentication-Info of a 2xx, `None` if absent.
    pub fn authentication_info(&self) -> Option<Result<AuthenticationInfo, DigestError>> {
        self.header(hdr::AUTHENTICATION_INFO)
            .map(AuthenticationInfo::parse)
    }

    /// Proxy mode: removes `ck`/`ik` from every WWW-Authenticate challenge so the UE
    /// never sees them (TS 24.229 §5.2.2.1) and returns those of the first challenge
    /// that had any. Challenges without keys keep their bytes.
    pub fn take_aka_keys(&mut self) -> Result<Option<AkaKeys>, DigestError> {
        let mut err = None;
        let mut keys = None;
        self.rewrite_headers(hdr::WWW_AUTHENTICATE, |v| match Challenge::parse(v) {
            Ok(mut c) if c.ck.is_some() || c.ik.is_some() => {
                if keys.is_none() {
                    keys = Some(AkaKeys {
                        ck: c.ck.take(),
                        ik: c.ik.take(),
                    });
                }
                c.ck = None;
                c.ik = None;
                Some(c.to_header())
            }
            Ok(_) => None,
            Err(e) => {
                err.get_or_insert(e);
                None
            }
        });
        match err {
            Some(e) if keys.is_none() => Err(e),
            _ => Ok(keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Message;

    #[test]
    fn strip_ck_ik() {
        let raw = "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nWWW-Authenticate: Digest realm=\"ims.test\", nonce=\"bm9uY2U=\", algorithm=AKAv1-MD5, qop=\"auth\", ck=\"00112233445566778899aabbccddeeff\", ik=\"ffeeddccbbaa99887766554433221100\"\r\nContent-Length: 0\r\n\r\n";
        let mut m = Message::parse(raw.as_bytes()).unwrap();
        let c = m.digest_challenge().unwrap().unwrap();
        assert!(c.is_akav1_md5());
        let k = m.take_aka_keys().unwrap().unwrap();
        assert_eq!(k.ck.as_deref(), Some("00112233445566778899aabbccddeeff"));
        assert_eq!(k.ik.as_deref(), Some("ffeeddccbbaa99887766554433221100"));
        let out = Message::parse(&m.to_bytes()).unwrap();
        let c = out.digest_challenge().unwrap().unwrap();
        assert_eq!((c.ck, c.ik), (None, None));
        assert_eq!(c.nonce, "bm9uY2U=");
        assert!(!String::from_utf8(m.to_bytes()).unwrap().contains("ck="));
        assert_eq!(m.clone().take_aka_keys().unwrap(), None);
        assert!(out.digest_credentials().is_none());
    }
}
