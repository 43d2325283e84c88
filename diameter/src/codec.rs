//! AVPs (RFC 6733 §4): representation, typed constructors and getters, wire codec.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};

use crate::dict::{flags, lookup_avp, AvpDef, AvpKey, AvpType};
use crate::error::{AvpError, DecodeError};

/// Deepest nesting of grouped AVPs the decoder follows.
pub const MAX_GROUP_DEPTH: usize = 16;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One AVP. The payload is a [`Bytes`] slice of the received buffer (no copy on decode);
/// grouped payloads are decoded on demand with [`Avp::as_grouped`].
#[derive(Clone, PartialEq, Eq)]
pub struct Avp {
    /// AVP code.
    pub code: u32,
    /// Flags byte as received or to send; the V bit is kept consistent with `vendor_id`
    /// on encode.
    pub flags: u8,
    /// Vendor-Id if the V bit is set.
    pub vendor_id: Option<u32>,
    /// Payload without padding.
    pub data: Bytes,
}

impl Avp {
    /// Raw AVP with explicit code, vendor (0 for none), flags and payload.
    pub fn raw(code: u32, vendor: u32, avp_flags: u8, data: impl Into<Bytes>) -> Avp {
        let (vendor_id, f) = if vendor != 0 {
            (Some(vendor), avp_flags | flags::V)
        } else {
            (None, avp_flags & !flags::V)
        };
        Avp {
            code,
            flags: f,
            vendor_id,
            data: data.into(),
        }
    }

    /// AVP of `def` (its code, vendor and flags) with a raw payload.
    pub fn new(def: AvpDef, data: impl Into<Bytes>) -> Avp {
        Avp::raw(def.code, def.vendor, def.flags, data)
    }

    /// OctetString AVP.
    pub fn octets(def: AvpDef, data: impl Into<Bytes>) -> Avp {
        Avp::new(def, data)
    }

    /// UTF8String / DiameterIdentity / DiameterURI AVP.
    pub fn utf8(def: AvpDef, s: impl AsRef<str>) -> Avp {
        Avp::new(def, Bytes::copy_from_slice(s.as_ref().as_bytes()))
    }

    /// Unsigned32 AVP.
    pub fn u32(def: AvpDef, v: u32) -> Avp {
        Avp::new(def, Bytes::copy_from_slice(&v.to_be_bytes()))
    }

    /// Unsigned64 AVP.
    pub fn u64(def: AvpDef, v: u64) -> Avp {
        Avp::new(def, Bytes::copy_from_slice(&v.to_be_bytes()))
    }

    /// Integer32 AVP.
    pub fn i32(def: AvpDef, v: i32) -> Avp {
        Avp::new(def, Bytes::copy_from_slice(&v.to_be_bytes()))
    }

    /// Integer64 AVP.
    pub fn i64(def: AvpDef, v: i64) -> Avp {
        Avp::new(def, Bytes::copy_from_slice(&v.to_be_bytes()))
    }

    /// Enumerated AVP (an Integer32 on the wire).
    pub fn enumerated(def: AvpDef, v: i32) -> Avp {
        Avp::i32(def, v)
    }

    /// Address AVP (RFC 6733 §4.3.1): family 1 (IPv4) or 2 (IPv6) followed by the address.
    pub fn address(def: AvpDef, ip: IpAddr) -> Avp {
        let mut v = Vec::with_capacity(18);
        match ip {
            IpAddr::V4(a) => {
                v.extend_from_slice(&1u16.to_be_bytes());
                v.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                v.extend_from_slice(&2u16.to_be_bytes());
                v.extend_from_slice(&a.octets());
            }
        }
        Avp::new(def, v)
    }

    /// Time AVP (RFC 6733 §4.3.1): NTP seconds, wrapping in 2036 as RFC 5905 describes.
    /// Times before 1900 are clamped to the NTP epoch.
    pub fn time(def: AvpDef, t: SystemTime) -> Avp {
        let ntp = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs().wrapping_add(NTP_UNIX_OFFSET),
            Err(e) => NTP_UNIX_OFFSET.saturating_sub(e.duration().as_secs()),
        };
        Avp::u32(def, ntp as u32)
    }

    /// Grouped AVP whose payload is the encoding of `children`.
    pub fn grouped(def: AvpDef, children: impl IntoIterator<Item = Avp>) -> Avp {
        let mut buf = Vec::new();
        for c in children {
            c.encode_into(&mut buf);
        }
        Avp::new(def, buf)
    }

    /// Same AVP with other flags (e.g. to set M on Supported-Features). V stays tied to
    /// the vendor.
    pub fn with_flags(mut self, avp_flags: u8) -> Avp {
        self.flags = if self.vendor_id.is_some() {
            avp_flags | flags::V
        } else {
            avp_flags & !flags::V
        };
        self
    }

    /// Vendor-Id, 0 if absent.
    pub fn vendor(&self) -> u32 {
        self.vendor_id.unwrap_or(0)
    }

    /// Whether the M bit is set.
    pub fn is_mandatory(&self) -> bool {
        self.flags & flags::M != 0
    }

    /// Whether this AVP is the one `key` names.
    pub fn is<K: AvpKey>(&self, key: K) -> bool {
        self.code == key.code() && self.vendor() == key.vendor()
    }

    /// Dictionary definition, if known.
    pub fn def(&self) -> Option<&'static AvpDef> {
        lookup_avp(self.code, self.vendor())
    }

    fn bad_len(&self, ty: AvpType) -> AvpError {
        AvpError::InvalidLength {
            code: self.code,
            vendor: self.vendor(),
            len: self.data.len(),
            ty,
        }
    }

    fn fixed<const N: usize>(&self, ty: AvpType) -> Result<[u8; N], AvpError> {
        <[u8; N]>::try_from(&self.data[..]).map_err(|_| self.bad_len(ty))
    }

    /// Payload as bytes (OctetString).
    pub fn as_octets(&self) -> &[u8] {
        &self.data
    }

    /// Payload as text (UTF8String, DiameterIdentity, DiameterURI).
    pub fn as_utf8(&self) -> Result<&str, AvpError> {
        std::str::from_utf8(&self.data).map_err(|_| AvpError::InvalidUtf8 {
            code: self.code,
            vendor: self.vendor(),
        })
    }

    /// Unsigned32 payload.
    pub fn as_u32(&self) -> Result<u32, AvpError> {
        Ok(u32::from_be_bytes(self.fixed(AvpType::Unsigned32)?))
    }

    /// Unsigned64 payload.
    pub fn as_u64(&self) -> Result<u64, AvpError> {
        Ok(u64::from_be_bytes(self.fixed(AvpType::Unsigned64)?))
    }

    /// Integer32 / Enumerated payload.
    pub fn as_i32(&self) -> Result<i32, AvpError> {
        Ok(i32::from_be_bytes(self.fixed(AvpType::Integer32)?))
    }

    /// Integer64 payload.
    pub fn as_i64(&self) -> Result<i64, AvpError> {
        Ok(i64::from_be_bytes(self.fixed(AvpType::Integer64)?))
    }

    /// Float32 payload.
    pub fn as_f32(&self) -> Result<f32, AvpError> {
        Ok(f32::from_be_bytes(self.fixed(AvpType::Float32)?))
    }

    /// Float64 payload.
    pub fn as_f64(&self) -> Result<f64, AvpError> {
        Ok(f64::from_be_bytes(self.fixed(AvpType::Float64)?))
    }

    /// Address payload; only IPv4 (1) and IPv6 (2) families are turned into `IpAddr`.
    pub fn as_address(&self) -> Result<IpAddr, AvpError> {
        let d = &self.data[..];
        if d.len() < 2 {
            return Err(self.bad_len(AvpType::Address));
        }
        let family = u16::from_be_bytes([d[0], d[1]]);
        match family {
            1 => <[u8; 4]>::try_from(&d[2..])
                .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .map_err(|_| self.bad_len(AvpType::Address)),
            2 => <[u8; 16]>::try_from(&d[2..])
                .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                .map_err(|_| self.bad_len(AvpType::Address)),
            _ => Err(AvpError::AddressFamily {
                code: self.code,
                family,
            }),
        }
    }

    /// Time payload as `SystemTime`. Values with the top bit clear are taken to be after
    /// the 2036 NTP era roll-over (RFC 6733 §4.3.1 referring to RFC 5905).
    pub fn as_time(&self) -> Result<SystemTime, AvpError> {
        let ntp = u32::from_be_bytes(self.fixed(AvpType::Time)?) as u64;
        let ntp = if ntp & 0x8000_0000 == 0 {
            ntp + (1u64 << 32)
        } else {
            ntp
        };
        let unix = ntp
            .checked_sub(NTP_UNIX_OFFSET)
            .ok_or(AvpError::InvalidTime { code: self.code })?;
        UNIX_EPOCH
            .checked_add(Duration::from_secs(unix))
            .ok_or(AvpError::InvalidTime { code: self.code })
    }

    /// Children of a grouped AVP.
    pub fn as_grouped(&self) -> Result<Vec<Avp>, AvpError> {
        decode_avps(&self.data, 1).map_err(|source| AvpError::Grouped {
            code: self.code,
            vendor: self.vendor(),
            source,
        })
    }

    /// Value interpreted with the dictionary type (for logs and tools). Unknown AVPs and
    /// payloads that do not fit their type come back as [`Value::Octets`].
    pub fn value(&self) -> Value {
        let ty = self.def().map_or(AvpType::OctetString, |d| d.ty);
        let v = match ty {
            AvpType::OctetString => None,
            AvpType::Utf8String | AvpType::DiameterIdentity | AvpType::DiameterUri => {
                self.as_utf8().ok().map(|s| Value::Text(s.to_string()))
            }
            AvpType::Integer32 | AvpType::Enumerated => self.as_i32().ok().map(Value::I32),
            AvpType::Integer64 => self.as_i64().ok().map(Value::I64),
            AvpType::Unsigned32 => self.as_u32().ok().map(Value::U32),
            AvpType::Unsigned64 => self.as_u64().ok().map(Value::U64),
            AvpType::Float32 => self.as_f32().ok().map(|f| Value::F64(f as f64)),
            AvpType::Float64 => self.as_f64().ok().map(Value::F64),
            AvpType::Address => self.as_address().ok().map(Value::Address),
            AvpType::Time => self.as_time().ok().map(Value::Time),
            AvpType::Grouped => self.as_grouped().ok().map(Value::Grouped),
        };
        v.unwrap_or_else(|| Value::Octets(self.data.clone()))
    }

    /// Length on the wire without padding (header + payload).
    pub fn wire_len(&self) -> usize {
        self.header_len() + self.data.len()
    }

    /// Length on the wire including padding to 4 bytes.
    pub fn padded_len(&self) -> usize {
        (self.wire_len() + 3) & !3
    }

    fn header_len(&self) -> usize {
        if self.vendor_id.is_some() {
            12
        } else {
            8
        }
    }

    /// Appends the AVP with its padding (RFC 6733 §4.1) to `buf`.
    ///
    /// The AVP length field has 24 bits; a payload above 16 MiB would be a caller bug and
    /// is written with a truncated length. The peer refuses messages over its maximum
    /// size long before that.
    pub fn encode_into<B: BufMut>(&self, buf: &mut B) {
        let len = self.wire_len() as u32;
        buf.put_u32(self.code);
        let f = if self.vendor_id.is_some() {
            self.flags | flags::V
        } else {
            self.flags & !flags::V
        };
        buf.put_u32(((f as u32) << 24) | (len & 0x00ff_ffff));
        if let Some(v) = self.vendor_id {
            buf.put_u32(v);
        }
        buf.put_slice(&self.data);
        for _ in self.wire_len()..self.padded_len() {
            buf.put_u8(0);
        }
    }

    /// Decodes one AVP at the start of `buf` (a slice of a shared buffer: the payload is
    /// not copied). Returns the AVP and the number of bytes consumed including padding.
    ///
    /// The padding after the last AVP of a message may be absent in broken peers; it is
    /// tolerated only where the container ends.
    pub fn decode(buf: &Bytes) -> Result<(Avp, usize), DecodeError> {
        decode_at(buf, 0)
    }
}

/// Decodes the AVP at `off` in `buf`; returns it and the number of bytes it occupies
/// with padding (clamped to the end of `buf`). Only the payload slice touches the
/// buffer's reference count.
fn decode_at(buf: &Bytes, off: usize) -> Result<(Avp, usize), DecodeError> {
    let b = &buf[off..];
    if b.len() < 8 {
        return Err(DecodeError::Truncated {
            needed: 8,
            available: b.len(),
        });
    }
    let code = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let avp_flags = b[4];
    let length = u32::from_be_bytes([0, b[5], b[6], b[7]]);
    let vendor = avp_flags & flags::V != 0;
    let hdr = if vendor { 12 } else { 8 };
    if (length as usize) < hdr {
        return Err(DecodeError::AvpTooShort { code, length });
    }
    if length as usize > b.len() {
        return Err(DecodeError::AvpOverrun {
            code,
            length,
            remaining: b.len(),
        });
    }
    let vendor_id = if vendor {
        Some(u32::from_be_bytes([b[8], b[9], b[10], b[11]]))
    } else {
        None
    };
    let data = buf.slice(off + hdr..off + length as usize);
    let padded = ((length as usize) + 3) & !3;
    Ok((
        Avp {
            code,
            flags: avp_flags,
            vendor_id,
            data,
        },
        padded.min(b.len()),
    ))
}

/// Decodes a sequence of AVPs filling `buf`, checking known grouped AVPs recursively.
pub(crate) fn decode_avps(buf: &Bytes, depth: usize) -> Result<Vec<Avp>, DecodeError> {
    if depth > MAX_GROUP_DEPTH {
        return Err(DecodeError::TooDeep(MAX_GROUP_DEPTH));
    }
    let mut out = Vec::with_capacity(buf.len() / 24 + 1);
    let mut off = 0;
    while off < buf.len() {
        let (avp, used) = decode_at(buf, off)?;
        check_group(&avp, depth)?;
        out.push(avp);
        off += used;
    }
    Ok(out)
}

fn check_group(avp: &Avp, depth: usize) -> Result<(), DecodeError> {
    if avp.def().is_some_and(|d| d.ty == AvpType::Grouped) {
        validate_group(&avp.data, depth + 1).map_err(|e| DecodeError::Grouped {
            code: avp.code,
            vendor: avp.vendor(),
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// The AVP to put in Failed-AVP when `buf` (a message body) does not decode, as RFC 6733
/// §7.1.5 asks for DIAMETER_INVALID_AVP_LENGTH: the offending AVP's header with a
/// zero-filled payload of the minimum size for its type; an incomplete header padded with
/// zeros; for an error inside a grouped AVP, the grouped AVP's header with no payload.
pub(crate) fn offending_avp(buf: &Bytes) -> Option<Avp> {
    let mut off = 0;
    while off < buf.len() {
        let b = &buf[off..];
        let mut hdr = [0u8; 12];
        let n = b.len().min(12);
        hdr[..n].copy_from_slice(&b[..n]);
        let code = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let avp_flags = hdr[4];
        let vendor = if avp_flags & flags::V != 0 {
            u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]])
        } else {
            0
        };
        let zeroed = |len: usize| Avp::raw(code, vendor, avp_flags, vec![0u8; len]);
        match decode_at(buf, off) {
            Err(_) => {
                let min = match lookup_avp(code, vendor).map(|d| d.ty) {
                    Some(AvpType::Integer32 | AvpType::Unsigned32 | AvpType::Enumerated)
                    | Some(AvpType::Float32 | AvpType::Time) => 4,
                    Some(AvpType::Integer64 | AvpType::Unsigned64 | AvpType::Float64) => 8,
                    Some(AvpType::Address) => 6,
                    _ => 0,
                };
                return Some(zeroed(min));
            }
            Ok((avp, used)) => {
                if check_group(&avp, 0).is_err() {
                    return Some(zeroed(0));
                }
                off += used;
            }
        }
    }
    None
}

/// Walks a grouped payload to report nested malformations at decode time.
fn validate_group(buf: &Bytes, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_GROUP_DEPTH {
        return Err(DecodeError::TooDeep(MAX_GROUP_DEPTH));
    }
    let mut off = 0;
    while off < buf.len() {
        let (avp, used) = decode_at(buf, off)?;
        check_group(&avp, depth)?;
        off += used;
    }
    Ok(())
}

/// A decoded AVP value, typed by the dictionary.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// OctetString, or anything unknown / not fitting its type.
    Octets(Bytes),
    /// UTF8String, DiameterIdentity, DiameterURI.
    Text(String),
    /// Integer32 / Enumerated.
    I32(i32),
    /// Integer64.
    I64(i64),
    /// Unsigned32.
    U32(u32),
    /// Unsigned64.
    U64(u64),
    /// Float32 / Float64.
    F64(f64),
    /// Address (IPv4/IPv6).
    Address(IpAddr),
    /// Time.
    Time(SystemTime),
    /// Grouped.
    Grouped(Vec<Avp>),
}

impl fmt::Debug for Avp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.def().map_or("?", |d| d.name);
        write!(f, "{name}({}", self.code)?;
        if let Some(v) = self.vendor_id {
            write!(f, "/{v}")?;
        }
        write!(f, ",{:#04x})=", self.flags)?;
        match self.value() {
            Value::Octets(b) if b.len() <= 64 => {
                write!(f, "0x")?;
                for x in b.iter() {
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
            Value::Octets(b) => write!(f, "<{} bytes>", b.len()),
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Grouped(g) => f.debug_list().entries(g.iter()).finish(),
            v => write!(f, "{v:?}"),
        }
    }
}

/// Finder helpers over a list of AVPs: a message body or a grouped AVP's children.
///
/// Getters return [`AvpError::Missing`] when the AVP is absent and a type error when its
/// payload does not fit, so handlers can use `?` and map the error to a Result-Code with
/// [`AvpError::result_code`].
pub trait FindAvp {
    /// The AVPs searched.
    fn avp_list(&self) -> &[Avp];

    /// First AVP named by `key`.
    fn find<K: AvpKey>(&self, key: K) -> Option<&Avp> {
        self.avp_list().iter().find(|a| a.is(key))
    }

    /// All AVPs named by `key`, in order.
    fn find_all<K: AvpKey>(&self, key: K) -> impl Iterator<Item = &Avp> {
        self.avp_list().iter().filter(move |a| a.is(key))
    }

    /// First AVP named by `key`, or [`AvpError::Missing`].
    fn get<K: AvpKey>(&self, key: K) -> Result<&Avp, AvpError> {
        self.find(key).ok_or(AvpError::Missing {
            code: key.code(),
            vendor: key.vendor(),
            name: key.name(),
        })
    }

    /// Text value of the first `key` AVP.
    fn get_utf8<K: AvpKey>(&self, key: K) -> Result<&str, AvpError> {
        self.get(key)?.as_utf8()
    }

    /// Bytes of the first `key` AVP.
    fn get_octets<K: AvpKey>(&self, key: K) -> Result<&[u8], AvpError> {
        Ok(self.get(key)?.as_octets())
    }

    /// Unsigned32 value of the first `key` AVP.
    fn get_u32<K: AvpKey>(&self, key: K) -> Result<u32, AvpError> {
        self.get(key)?.as_u32()
    }

    /// Unsigned64 value of the first `key` AVP.
    fn get_u64<K: AvpKey>(&self, key: K) -> Result<u64, AvpError> {
        self.get(key)?.as_u64()
    }

    /// Integer32/Enumerated value of the first `key` AVP.
    fn get_i32<K: AvpKey>(&self, key: K) -> Result<i32, AvpError> {
        self.get(key)?.as_i32()
    }

    /// Integer64 value of the first `key` AVP.
    fn get_i64<K: AvpKey>(&self, key: K) -> Result<i64, AvpError> {
        self.get(key)?.as_i64()
    }

    /// Address value of the first `key` AVP.
    fn get_address<K: AvpKey>(&self, key: K) -> Result<IpAddr, AvpError> {
        self.get(key)?.as_address()
    }

    /// Time value of the first `key` AVP.
    fn get_time<K: AvpKey>(&self, key: K) -> Result<SystemTime, AvpError> {
        self.get(key)?.as_time()
    }

    /// Children of the first `key` grouped AVP.
    fn get_grouped<K: AvpKey>(&self, key: K) -> Result<Vec<Avp>, AvpError> {
        self.get(key)?.as_grouped()
    }

    /// Optional text value: `Ok(None)` when absent, an error when present but invalid.
    fn opt_utf8<K: AvpKey>(&self, key: K) -> Result<Option<&str>, AvpError> {
        self.find(key).map(|a| a.as_utf8()).transpose()
    }

    /// Optional Unsigned32 value.
    fn opt_u32<K: AvpKey>(&self, key: K) -> Result<Option<u32>, AvpError> {
        self.find(key).map(|a| a.as_u32()).transpose()
    }

    /// Optional Integer32/Enumerated value.
    fn opt_i32<K: AvpKey>(&self, key: K) -> Result<Option<i32>, AvpError> {
        self.find(key).map(|a| a.as_i32()).transpose()
    }
}

impl FindAvp for [Avp] {
    fn avp_list(&self) -> &[Avp] {
        self
    }
}

impl FindAvp for Vec<Avp> {
    fn avp_list(&self) -> &[Avp] {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::{avp, VENDOR_3GPP};

    fn enc(a: &Avp) -> Vec<u8> {
        let mut v = Vec::new();
        a.encode_into(&mut v);
        v
    }

    #[test]
    fn base_avp_layout_with_padding() {
        // RFC 6733 §4.1: code, flags, 24-bit length (unpadded), data, pad to 4.
        let a = Avp::utf8(avp::ORIGIN_HOST, "hss");
        assert_eq!(enc(&a), [0, 0, 1, 8, 0x40, 0, 0, 11, b'h', b's', b's', 0]);
        let (d, used) = Avp::decode(&Bytes::from(enc(&a))).unwrap();
        assert_eq!(used, 12);
        assert_eq!(d, a);
    }

    #[test]
    fn vendor_avp_layout() {
        let a = Avp::u32(avp::SIP_ITEM_NUMBER, 1);
        assert_eq!(
            enc(&a),
            [0, 0, 2, 101, 0xc0, 0, 0, 16, 0, 0, 0x28, 0xaf, 0, 0, 0, 1]
        );
        assert_eq!(a.vendor(), VENDOR_3GPP);
    }

    #[test]
    fn address_and_time() {
        let a = Avp::address(avp::HOST_IP_ADDRESS, "127.0.0.1".parse().unwrap());
        assert_eq!(&a.data[..], &[0, 1, 127, 0, 0, 1]);
        assert_eq!(
            a.as_address().unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        let a6 = Avp::address(avp::HOST_IP_ADDRESS, "::1".parse().unwrap());
        assert_eq!(a6.data.len(), 18);
        assert_eq!(a6.as_address().unwrap(), "::1".parse::<IpAddr>().unwrap());
        let bad = Avp::new(avp::HOST_IP_ADDRESS, vec![0, 3, 1, 2]);
        assert!(matches!(
            bad.as_address(),
            Err(AvpError::AddressFamily { family: 3, .. })
        ));
        let short = Avp::new(avp::HOST_IP_ADDRESS, vec![0, 1, 1, 2]);
        assert!(matches!(
            short.as_address(),
            Err(AvpError::InvalidLength { .. })
        ));

        // 2000-01-01T00:00:00Z is NTP 3155673600 (0xBC17C200).
        let t = UNIX_EPOCH + Duration::from_secs(946_684_800);
        let a = Avp::time(avp::EVENT_TIMESTAMP, t);
        assert_eq!(&a.data[..], &[0xbc, 0x17, 0xc2, 0x00]);
        assert_eq!(a.as_time().unwrap(), t);
        // After the 2036 roll-over (era 1).
        let t = UNIX_EPOCH + Duration::from_secs(2_200_000_000);
        assert_eq!(Avp::time(avp::EVENT_TIMESTAMP, t).as_time().unwrap(), t);
    }

    #[test]
    fn typed_getters_reject_wrong_lengths() {
        let a = Avp::new(avp::RESULT_CODE, vec![0, 0, 7]);
        assert!(matches!(
            a.as_u32(),
            Err(AvpError::InvalidLength { len: 3, .. })
        ));
        assert!(a.as_u64().is_err());
        let a = Avp::new(avp::SESSION_ID, vec![0xff, 0xfe]);
        assert!(matches!(a.as_utf8(), Err(AvpError::InvalidUtf8 { .. })));
        assert_eq!(
            Avp::i64(avp::ACCOUNTING_SUB_SESSION_ID, -5)
                .as_i64()
                .unwrap(),
            -5
        );
        assert_eq!(
            Avp::u64(avp::ACCOUNTING_SUB_SESSION_ID, 5)
                .as_u64()
                .unwrap(),
            5
        );
    }

    #[test]
    fn offending_avp_for_failed_avp() {
        // Good Origin-Host, then a Result-Code whose length overruns.
        let mut body = Vec::new();
        Avp::utf8(avp::ORIGIN_HOST, "h").encode_into(&mut body);
        body.extend_from_slice(&[0, 0, 1, 12, 0x40, 0, 0, 40, 0, 0, 0, 1]);
        let bad = offending_avp(&Bytes::from(body)).unwrap();
        assert_eq!((bad.code, bad.flags, bad.vendor_id), (268, 0x40, None));
        assert_eq!(&bad.data[..], &[0, 0, 0, 0]);
        // Incomplete header: padded with zeros.
        let bad = offending_avp(&Bytes::from_static(&[0, 0, 2])).unwrap();
        assert_eq!(bad.code, 2 << 8);
        // Error inside a group: the group's header, empty.
        let mut body = Vec::new();
        Avp::new(
            avp::SIP_AUTH_DATA_ITEM,
            vec![0, 0, 2, 101, 0xc0, 0, 0, 40, 0, 0, 0x28, 0xaf],
        )
        .encode_into(&mut body);
        let bad = offending_avp(&Bytes::from(body)).unwrap();
        assert!(bad.is(avp::SIP_AUTH_DATA_ITEM) && bad.data.is_empty());
        // Nothing wrong: nothing to report.
        let mut body = Vec::new();
        Avp::utf8(avp::ORIGIN_HOST, "h").encode_into(&mut body);
        assert!(offending_avp(&Bytes::from(body)).is_none());
    }

    #[test]
    fn avp_length_errors() {
        // Length 7 < header 8.
        let b = Bytes::from_static(&[0, 0, 1, 8, 0x40, 0, 0, 7]);
        assert!(matches!(
            Avp::decode(&b),
            Err(DecodeError::AvpTooShort { length: 7, .. })
        ));
        // V bit, length 8 < 12.
        let b = Bytes::from_static(&[0, 0, 1, 8, 0xc0, 0, 0, 8, 0, 0, 0, 0]);
        assert!(matches!(
            Avp::decode(&b),
            Err(DecodeError::AvpTooShort { .. })
        ));
        // Overrun.
        let b = Bytes::from_static(&[0, 0, 1, 8, 0x40, 0, 0, 20, 1, 2, 3, 4]);
        assert!(matches!(
            Avp::decode(&b),
            Err(DecodeError::AvpOverrun { .. })
        ));
        // Truncated header.
        let b = Bytes::from_static(&[0, 0, 1]);
        assert!(matches!(
            Avp::decode(&b),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn grouped_round_trip_and_nested_error() {
        let g = Avp::grouped(
            avp::SIP_AUTH_DATA_ITEM,
            [
                Avp::u32(avp::SIP_ITEM_NUMBER, 1),
                Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, "Digest-AKAv1-MD5"),
            ],
        );
        let kids = g.as_grouped().unwrap();
        assert_eq!(kids.get_u32(avp::SIP_ITEM_NUMBER).unwrap(), 1);
        assert_eq!(
            kids.get_utf8(avp::SIP_AUTHENTICATION_SCHEME).unwrap(),
            "Digest-AKAv1-MD5"
        );
        assert!(matches!(
            kids.get_u32(avp::CONFIDENTIALITY_KEY),
            Err(AvpError::Missing {
                name: "Confidentiality-Key",
                ..
            })
        ));
        // A group whose child overruns.
        let bad = Avp::new(
            avp::SIP_AUTH_DATA_ITEM,
            vec![0, 0, 2, 101, 0xc0, 0, 0, 40, 0, 0, 0x28, 0xaf],
        );
        assert!(matches!(
            bad.as_grouped(),
            Err(AvpError::Grouped { code: 612, .. })
        ));
        let mut buf = Vec::new();
        bad.encode_into(&mut buf);
        assert!(matches!(
            decode_avps(&Bytes::from(buf), 0),
            Err(DecodeError::Grouped { code: 612, .. })
        ));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut a = Avp::u32(avp::RESULT_CODE, 1);
        for _ in 0..40 {
            a = Avp::grouped(avp::PROXY_INFO, [a]);
        }
        let mut buf = Vec::new();
        a.encode_into(&mut buf);
        assert!(decode_avps(&Bytes::from(buf), 0).is_err());
    }
}
