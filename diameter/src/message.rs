//! Diameter messages (RFC 6733 §3): header, wire codec, builders and answer helpers.

use std::fmt;

use bytes::{BufMut, Bytes};

use crate::codec::{decode_avps, Avp, FindAvp};
use crate::dict::{app, avp, command_abbrev, AvpDef};
use crate::error::DecodeError;

/// Size of the fixed message header.
pub const HEADER_LEN: usize = 20;

/// Default limit on a message's length (the header's 24-bit length allows 16 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Where a message ends in a byte stream (TCP/SCTP framing, RFC 6733 §3).
///
/// Returns `Ok(None)` until the first 4 bytes (version + length) are there, then the
/// whole message's length, after checking version 1, `20 <= length`, `length % 4 == 0`
/// and `length <= max_size`. An error means the stream cannot be re-synchronised.
pub fn frame_length(buf: &[u8], max_size: usize) -> Result<Option<usize>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    if buf[0] != 1 {
        return Err(DecodeError::BadVersion(buf[0]));
    }
    let len = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]);
    if (len as usize) < HEADER_LEN || len % 4 != 0 {
        return Err(DecodeError::InvalidMessageLength(len));
    }
    if len as usize > max_size {
        return Err(DecodeError::TooLarge {
            length: len,
            max: max_size,
        });
    }
    Ok(Some(len as usize))
}

/// A Diameter message: header fields and the top-level AVPs, in order.
///
/// Build requests with [`Message::request`] and answers with [`Message::answer_for`];
/// read AVPs through [`FindAvp`] (`find`, `find_all`, `get_utf8`, ...).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Command flags (R, P, E, T; see the `FLAG_*` constants).
    pub flags: u8,
    /// Command code (24 bits).
    pub code: u32,
    /// Application-ID.
    pub app_id: u32,
    /// Hop-by-Hop Identifier.
    pub hop_by_hop: u32,
    /// End-to-End Identifier.
    pub end_to_end: u32,
    /// AVPs in wire order.
    pub avps: Vec<Avp>,
}

/// Result of an answer: a base Result-Code or a vendor Experimental-Result-Code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    /// Result-Code AVP (RFC 6733 §7.1).
    Base(u32),
    /// Experimental-Result (RFC 6733 §7.6) with its Vendor-Id.
    Experimental {
        /// Vendor-Id (10415 for Cx).
        vendor: u32,
        /// Experimental-Result-Code.
        code: u32,
    },
}

impl ResultCode {
    /// The numeric code.
    pub fn code(&self) -> u32 {
        match *self {
            ResultCode::Base(c) => c,
            ResultCode::Experimental { code, .. } => code,
        }
    }

    /// Whether the code is in the 2xxx success class.
    pub fn is_success(&self) -> bool {
        (2000..3000).contains(&self.code())
    }
}

impl Message {
    /// R bit: request.
    pub const FLAG_R: u8 = 0x80;
    /// P bit: proxiable.
    pub const FLAG_P: u8 = 0x40;
    /// E bit: error answer (protocol errors, RFC 6733 §7.2).
    pub const FLAG_E: u8 = 0x20;
    /// T bit: potentially retransmitted.
    pub const FLAG_T: u8 = 0x10;

    /// New request of `code` in `app_id`. Application requests are proxiable (P), the base
    /// protocol's CER/DWR/DPR are not. Identifiers are 0 until the peer assigns them.
    pub fn request(app_id: u32, code: u32) -> Message {
        let flags = if app_id == app::COMMON {
            Self::FLAG_R
        } else {
            Self::FLAG_R | Self::FLAG_P
        };
        Message {
            flags,
            code,
            app_id,
            hop_by_hop: 0,
            end_to_end: 0,
            avps: Vec::new(),
        }
    }

    /// Answer skeleton for `req` (RFC 6733 §6.2): same code, application, P bit and
    /// identifiers; Session-Id first, then the request's Proxy-Info AVPs in order.
    /// Origin-Host/Origin-Realm are added by the peer when sending if absent.
    pub fn answer_for(req: &Message) -> Message {
        let mut a = Message {
            flags: req.flags & Self::FLAG_P,
            code: req.code,
            app_id: req.app_id,
            hop_by_hop: req.hop_by_hop,
            end_to_end: req.end_to_end,
            avps: Vec::with_capacity(8),
        };
        if let Some(s) = req.find(avp::SESSION_ID) {
            a.avps.push(s.clone());
        }
        a.avps.extend(req.find_all(avp::PROXY_INFO).cloned());
        a
    }

    /// Answer to `req` carrying only `result_code` (and `Error-Message` if given). Protocol
    /// errors (3xxx) get the E bit (RFC 6733 §7.2).
    pub fn error_answer(req: &Message, result_code: u32, error_message: Option<&str>) -> Message {
        let mut a = Message::answer_for(req);
        if is_protocol_error(result_code) {
            a.flags |= Self::FLAG_E;
        }
        a.add(Avp::u32(avp::RESULT_CODE, result_code));
        if let Some(m) = error_message {
            a.add(Avp::utf8(avp::ERROR_MESSAGE, m));
        }
        a
    }

    /// Copy of the header fields without the AVPs.
    pub fn header_only(&self) -> Message {
        Message {
            flags: self.flags,
            code: self.code,
            app_id: self.app_id,
            hop_by_hop: self.hop_by_hop,
            end_to_end: self.end_to_end,
            avps: Vec::new(),
        }
    }

    /// Appends an AVP.
    pub fn add(&mut self, avp: Avp) -> &mut Self {
        self.avps.push(avp);
        self
    }

    /// Appends an AVP, builder style.
    pub fn with(mut self, avp: Avp) -> Self {
        self.avps.push(avp);
        self
    }

    /// Appends several AVPs, builder style.
    pub fn with_all(mut self, avps: impl IntoIterator<Item = Avp>) -> Self {
        self.avps.extend(avps);
        self
    }

    /// Replaces every AVP named `def` by `avp` at the first one's position, or appends it.
    pub fn set(&mut self, avp: Avp) -> &mut Self {
        match self
            .avps
            .iter()
            .position(|a| a.code == avp.code && a.vendor_id == avp.vendor_id)
        {
            Some(i) => {
                let (code, vendor) = (avp.code, avp.vendor_id);
                self.avps[i] = avp;
                let mut seen = false;
                self.avps.retain(|a| {
                    if a.code == code && a.vendor_id == vendor {
                        let keep = !seen;
                        seen = true;
                        keep
                    } else {
                        true
                    }
                });
            }
            None => self.avps.push(avp),
        }
        self
    }

    /// Removes every AVP named `def`.
    pub fn remove(&mut self, def: AvpDef) -> &mut Self {
        self.avps.retain(|a| !a.is(def));
        self
    }

    /// Adds a Result-Code AVP, builder style.
    pub fn with_result_code(self, code: u32) -> Self {
        self.with(Avp::u32(avp::RESULT_CODE, code))
    }

    /// Adds an Experimental-Result AVP (Vendor-Id + Experimental-Result-Code), builder style.
    pub fn with_experimental_result(self, vendor: u32, code: u32) -> Self {
        self.with(Avp::experimental_result(vendor, code))
    }

    /// Whether the R bit is set.
    pub fn is_request(&self) -> bool {
        self.flags & Self::FLAG_R != 0
    }

    /// Whether the P bit is set.
    pub fn is_proxiable(&self) -> bool {
        self.flags & Self::FLAG_P != 0
    }

    /// Whether the E bit is set.
    pub fn is_error(&self) -> bool {
        self.flags & Self::FLAG_E != 0
    }

    /// Session-Id, if present and valid UTF-8.
    pub fn session_id(&self) -> Option<&str> {
        self.find(avp::SESSION_ID).and_then(|a| a.as_utf8().ok())
    }

    /// Origin-Host, if present and valid UTF-8.
    pub fn origin_host(&self) -> Option<&str> {
        self.find(avp::ORIGIN_HOST).and_then(|a| a.as_utf8().ok())
    }

    /// Origin-Realm, if present and valid UTF-8.
    pub fn origin_realm(&self) -> Option<&str> {
        self.find(avp::ORIGIN_REALM).and_then(|a| a.as_utf8().ok())
    }

    /// Result of an answer: Result-Code if present, else the Experimental-Result.
    pub fn result(&self) -> Option<ResultCode> {
        if let Some(c) = self.find(avp::RESULT_CODE).and_then(|a| a.as_u32().ok()) {
            return Some(ResultCode::Base(c));
        }
        let g = self.find(avp::EXPERIMENTAL_RESULT)?.as_grouped().ok()?;
        Some(ResultCode::Experimental {
            vendor: g.get_u32(avp::VENDOR_ID).unwrap_or(0),
            code: g.get_u32(avp::EXPERIMENTAL_RESULT_CODE).ok()?,
        })
    }

    /// Short name such as "MAR" or "CEA".
    pub fn name(&self) -> String {
        command_abbrev(self.code, self.app_id, self.is_request())
    }

    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.avps.iter().map(Avp::padded_len).sum::<usize>()
    }

    /// Appends the wire form to `buf` (a `Vec<u8>` or `BytesMut`).
    pub fn encode_into<B: BufMut>(&self, buf: &mut B) {
        let len = self.encoded_len() as u32;
        buf.put_u32((1 << 24) | (len & 0x00ff_ffff));
        buf.put_u32(((self.flags as u32) << 24) | (self.code & 0x00ff_ffff));
        buf.put_u32(self.app_id);
        buf.put_u32(self.hop_by_hop);
        buf.put_u32(self.end_to_end);
        for a in &self.avps {
            a.encode_into(buf);
        }
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v);
        v
    }

    /// Decodes exactly one message from `buf` with the default size limit.
    /// Pass a [`Bytes`] to share the buffer with the AVP payloads instead of copying.
    pub fn decode(buf: impl Into<Bytes>) -> Result<Message, DecodeError> {
        Message::decode_with_limit(buf.into(), DEFAULT_MAX_MESSAGE_SIZE)
    }

    /// Decodes exactly one message from a borrowed slice (copies it once).
    pub fn decode_slice(buf: &[u8]) -> Result<Message, DecodeError> {
        Message::decode_with_limit(Bytes::copy_from_slice(buf), DEFAULT_MAX_MESSAGE_SIZE)
    }

    /// Decodes exactly one message from `buf`, refusing messages above `max_size`.
    pub fn decode_with_limit(buf: Bytes, max_size: usize) -> Result<Message, DecodeError> {
        let (mut msg, body) = Message::decode_header(&buf, max_size)?;
        msg.avps = decode_avps(&body, 0)?;
        Ok(msg)
    }

    /// Decodes the header only and returns the message (without AVPs) and the AVP bytes.
    /// Useful to answer a request whose AVPs are malformed.
    pub fn decode_header(buf: &Bytes, max_size: usize) -> Result<(Message, Bytes), DecodeError> {
        let len = match frame_length(buf, max_size)? {
            Some(l) => l,
            None => {
                return Err(DecodeError::Truncated {
                    needed: HEADER_LEN,
                    available: buf.len(),
                })
            }
        };
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        if len != buf.len() {
            return Err(DecodeError::LengthMismatch {
                header: len as u32,
                actual: buf.len(),
            });
        }
        let be = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let flags = buf[4];
        if flags & Self::FLAG_R != 0 && flags & Self::FLAG_E != 0 {
            return Err(DecodeError::InvalidHeaderBits(flags));
        }
        let msg = Message {
            flags,
            code: be(4) & 0x00ff_ffff,
            app_id: be(8),
            hop_by_hop: be(12),
            end_to_end: be(16),
            avps: Vec::new(),
        };
        Ok((msg, buf.slice(HEADER_LEN..)))
    }
}

impl FindAvp for Message {
    fn avp_list(&self) -> &[Avp] {
        &self.avps
    }
}

impl Avp {
    /// Experimental-Result (RFC 6733 §7.6): Vendor-Id and Experimental-Result-Code.
    pub fn experimental_result(vendor: u32, code: u32) -> Avp {
        Avp::grouped(
            avp::EXPERIMENTAL_RESULT,
            [
                Avp::u32(avp::VENDOR_ID, vendor),
                Avp::u32(avp::EXPERIMENTAL_RESULT_CODE, code),
            ],
        )
    }

    /// Vendor-Specific-Application-Id (RFC 6733 §6.11) with an Auth-Application-Id.
    pub fn vendor_specific_auth_app(vendor: u32, auth_app_id: u32) -> Avp {
        Avp::grouped(
            avp::VENDOR_SPECIFIC_APPLICATION_ID,
            [
                Avp::u32(avp::VENDOR_ID, vendor),
                Avp::u32(avp::AUTH_APPLICATION_ID, auth_app_id),
            ],
        )
    }

    /// Failed-AVP (RFC 6733 §7.5) wrapping the offending AVPs.
    pub fn failed_avp(offending: impl IntoIterator<Item = Avp>) -> Avp {
        Avp::grouped(avp::FAILED_AVP, offending)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} flags={:#04x} app={} hbh={:#010x} e2e={:#010x} ",
            self.name(),
            self.flags,
            self.app_id,
            self.hop_by_hop,
            self.end_to_end
        )?;
        f.debug_list().entries(self.avps.iter()).finish()
    }
}

/// Whether `code` is a protocol error (3xxx) that is sent with the E bit.
pub fn is_protocol_error(code: u32) -> bool {
    (3000..4000).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::{cmd, VENDOR_3GPP};
    use crate::result;

    #[test]
    fn header_layout() {
        let mut m = Message::request(app::CX, cmd::MULTIMEDIA_AUTH);
        m.hop_by_hop = 0x11223344;
        m.end_to_end = 0x55667788;
        let w = m.encode();
        assert_eq!(
            w,
            [
                1, 0, 0, 20, 0xc0, 0, 1, 0x2f, 1, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
                0x77, 0x88
            ]
        );
        assert_eq!(Message::decode(w).unwrap(), m);
    }

    #[test]
    fn header_errors() {
        let mut w = Message::request(0, 280).encode();
        w[0] = 2;
        assert_eq!(Message::decode(w.clone()), Err(DecodeError::BadVersion(2)));
        w[0] = 1;
        w[3] = 22;
        assert_eq!(
            Message::decode(w.clone()),
            Err(DecodeError::InvalidMessageLength(22))
        );
        w[3] = 24;
        assert!(matches!(
            Message::decode(w.clone()),
            Err(DecodeError::LengthMismatch { .. })
        ));
        w[3] = 20;
        w[4] = 0xa0; // R + E
        assert_eq!(
            Message::decode(w.clone()),
            Err(DecodeError::InvalidHeaderBits(0xa0))
        );
        assert!(matches!(
            Message::decode_slice(&w[..10]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Message::decode_with_limit(Bytes::from(vec![1, 0, 1, 0]), 64),
            Err(DecodeError::TooLarge {
                length: 256,
                max: 64
            })
        ));
    }

    #[test]
    fn answer_copies_ids_session_and_proxy_info() {
        let mut req = Message::request(app::CX, cmd::USER_AUTHORIZATION)
            .with(Avp::utf8(avp::SESSION_ID, "scscf;1;2"))
            .with(Avp::utf8(avp::ORIGIN_HOST, "scscf"))
            .with(Avp::grouped(
                avp::PROXY_INFO,
                [
                    Avp::utf8(avp::PROXY_HOST, "p1"),
                    Avp::octets(avp::PROXY_STATE, &b"s1"[..]),
                ],
            ))
            .with(Avp::grouped(
                avp::PROXY_INFO,
                [Avp::utf8(avp::PROXY_HOST, "p2")],
            ));
        req.hop_by_hop = 7;
        req.end_to_end = 9;
        let a = Message::answer_for(&req)
            .with_result_code(result::SUCCESS)
            .with_experimental_result(VENDOR_3GPP, result::cx::FIRST_REGISTRATION);
        assert!(!a.is_request());
        assert!(a.is_proxiable());
        assert_eq!((a.hop_by_hop, a.end_to_end), (7, 9));
        assert_eq!(a.avps[0].as_utf8().unwrap(), "scscf;1;2");
        assert_eq!(a.find_all(avp::PROXY_INFO).count(), 2);
        assert!(a.find(avp::ORIGIN_HOST).is_none());
        assert_eq!(a.result(), Some(ResultCode::Base(2001)));
        let e = Message::answer_for(&req).with_experimental_result(VENDOR_3GPP, 5001);
        assert_eq!(
            e.result(),
            Some(ResultCode::Experimental {
                vendor: VENDOR_3GPP,
                code: 5001
            })
        );
        let pe = Message::error_answer(&req, result::UNKNOWN_PEER, Some("who?"));
        assert!(pe.is_error());
        assert_eq!(Message::decode(pe.encode()).unwrap(), pe);
    }

    #[test]
    fn set_replaces_all_occurrences() {
        let mut m = Message::request(app::CX, 300)
            .with(Avp::u32(avp::RESULT_CODE, 1))
            .with(Avp::utf8(avp::ORIGIN_HOST, "x"))
            .with(Avp::u32(avp::RESULT_CODE, 2));
        m.set(Avp::u32(avp::RESULT_CODE, 3));
        assert_eq!(m.avps.len(), 2);
        assert_eq!(m.get_u32(avp::RESULT_CODE).unwrap(), 3);
        m.remove(avp::RESULT_CODE);
        assert_eq!(m.avps.len(), 1);
    }

    #[test]
    fn unknown_avps_are_kept() {
        let m = Message::request(app::CX, 300)
            .with(Avp::raw(99999, 4242, 0x40, &b"zz"[..]))
            .with(Avp::raw(12345, 0, 0, &b"abcde"[..]));
        let d = Message::decode(m.encode()).unwrap();
        assert_eq!(d, m);
        assert_eq!(d.find((99999, 4242)).unwrap().as_octets(), b"zz");
    }
}
