//! RTP data packets (RFC 3550 §5.1): a borrowed view for received packets, a header writer
//! into caller buffers, and in-place edits of the fixed header for a relay.
//!
//! Nothing here allocates: parsing borrows the datagram, writing fills a `&mut [u8]`.

/// The only RTP version there is (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;

/// Length of the fixed header without CSRCs or extension.
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet, or why a packet does not fit a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the header (fixed part, CSRCs and extension) announces.
    #[error("RTP packet truncated: {len} bytes, header needs {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the header announces.
        need: usize,
    },
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    /// The padding count (last octet, P bit set) is zero or exceeds the payload.
    #[error("RTP padding count {count} invalid for {available} bytes after the header")]
    Padding {
        /// The padding count octet.
        count: u8,
        /// Bytes after the header, padding included.
        available: usize,
    },
    /// A payload type above 127 cannot be written in 7 bits.
    #[error("RTP payload type {0} does not fit in 7 bits")]
    PayloadType(u8),
    /// More than 15 CSRCs cannot be written in the 4-bit CC field.
    #[error("{0} CSRCs, at most 15 fit")]
    TooManyCsrcs(usize),
    /// A header extension must be a whole number of 32-bit words, at most 65535 of them.
    #[error("header extension of {0} bytes is not a whole number of 32-bit words (max 65535)")]
    Extension(usize),
    /// The output buffer is too small.
    #[error("buffer of {have} bytes too small, {need} needed")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// A header extension (RFC 3550 §5.3.1): the profile-defined 16 bits and the data words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    /// The "defined by profile" field (0xBEDE for RFC 8285 one-byte headers).
    pub profile: u16,
    /// The extension data, a multiple of 4 bytes.
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    csrcs: &'a [u8],
    extension: Option<RtpExtension<'a>>,
    payload: &'a [u8],
    padding: u8,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> RtpPacket<'a> {
    /// Parses one datagram. Checks what RFC 3550 Appendix A.1 checks per packet: version 2,
    /// the CSRC list and extension inside the datagram, and a padding count that fits.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let truncated = |need| RtpError::Truncated {
            len: buf.len(),
            need,
        };
        if buf.len() < RTP_FIXED_HEADER_LEN {
            return Err(truncated(RTP_FIXED_HEADER_LEN));
        }
        let version = buf[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::Version(version));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_extension = buf[0] & 0x10 != 0;
        let cc = usize::from(buf[0] & 0x0f);
        let mut at = RTP_FIXED_HEADER_LEN + 4 * cc;
        if buf.len() < at {
            return Err(truncated(at));
        }
        let csrcs = &buf[RTP_FIXED_HEADER_LEN..at];
        let extension = if has_extension {
            if buf.len() < at + 4 {
                return Err(truncated(at + 4));
            }
            let profile = be16(buf, at);
            let words = usize::from(be16(buf, at + 2));
            let end = at + 4 + 4 * words;
            if buf.len() < end {
                return Err(truncated(end));
            }
            let data = &buf[at + 4..end];
            at = end;
            Some(RtpExtension { profile, data })
        } else {
            None
        };
        let rest = &buf[at..];
        let padding = if has_padding {
            // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            let count = rest.last().copied().unwrap_or(0);
            if count == 0 || usize::from(count) > rest.len() {
                return Err(RtpError::Padding {
                    count,
                    available: rest.len(),
                });
            }
            count
        } else {
            0
        };
        Ok(RtpPacket {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            sequence: be16(buf, 2),
            timestamp: be32(buf, 4),
            ssrc: be32(buf, 8),
            csrcs,
            extension,
            payload: &rest[..rest.len() - usize::from(padding)],
            padding,
        })
    }

    /// The marker bit (for audio: first packet of a talkspurt, RFC 3551 §4.1).
    pub fn marker(&self) -> bool {
        self.marker
    }

    /// The payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// The sequence number.
    pub fn sequence(&self) -> u16 {
        self.sequence
    }

    /// The RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The synchronization source.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// How many contributing sources the header lists.
    pub fn csrc_count(&self) -> usize {
        self.csrcs.len() / 4
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.csrcs.chunks_exact(4).map(|c| be32(c, 0))
    }

    /// The header extension, when the X bit is set.
    pub fn extension(&self) -> Option<RtpExtension<'a>> {
        self.extension
    }

    /// The payload without padding.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Padding octets at the end of the datagram (0 when the P bit is clear).
    pub fn padding(&self) -> u8 {
        self.padding
    }

    /// The header of this packet, for writing it again (e.g. with edited fields).
    pub fn header(&self) -> RtpHeader<'a> {
        RtpHeader {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs: Csrcs::Wire(self.csrcs),
            extension: self.extension,
        }
    }
}

/// CSRCs given by the application or borrowed from a parsed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csrcs<'a> {
    /// As numbers.
    List(&'a [u32]),
    /// As they appeared on the wire (4 bytes each, big-endian).
    Wire(&'a [u8]),
}

impl Csrcs<'_> {
    fn count(&self) -> usize {
        match self {
            Csrcs::List(l) => l.len(),
            Csrcs::Wire(w) => w.len() / 4,
        }
    }
}

/// The fields of an RTP header to write (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader<'a> {
    /// The marker bit.
    pub marker: bool,
    /// The payload type, 0–127.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The synchronization source.
    pub ssrc: u32,
    /// Contributing sources (at most 15).
    pub csrcs: Csrcs<'a>,
    /// A header extension.
    pub extension: Option<RtpExtension<'a>>,
}

impl<'a> RtpHeader<'a> {
    /// A header with no CSRC, no extension and the marker clear.
    pub fn new(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32) -> Self {
        RtpHeader {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrcs: Csrcs::List(&[]),
            extension: None,
        }
    }

    /// Bytes the header takes on the wire.
    pub fn len(&self) -> usize {
        RTP_FIXED_HEADER_LEN
            + 4 * self.csrcs.count()
            + self.extension.map_or(0, |e| 4 + e.data.len())
    }

    /// Never: a header has at least its 12 fixed bytes (here for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header at the start of `out` and returns its length; the payload goes
    /// right after it, so an encoder can write straight into `out[len..]`.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        self.write_with_padding(out, false)
    }

    fn write_with_padding(&self, out: &mut [u8], padding: bool) -> Result<usize, RtpError> {
        if self.payload_type > 0x7f {
            return Err(RtpError::PayloadType(self.payload_type));
        }
        let cc = self.csrcs.count();
        if cc > 15 {
            return Err(RtpError::TooManyCsrcs(cc));
        }
        if let Some(e) = self.extension {
            if e.data.len() % 4 != 0 || e.data.len() / 4 > usize::from(u16::MAX) {
                return Err(RtpError::Extension(e.data.len()));
            }
        }
        let len = self.len();
        if out.len() < len {
            return Err(RtpError::BufferTooSmall {
                need: len,
                have: out.len(),
            });
        }
        out[0] = (RTP_VERSION << 6)
            | (u8::from(padding) << 5)
            | (u8::from(self.extension.is_some()) << 4)
            | cc as u8;
        out[1] = (u8::from(self.marker) << 7) | self.payload_type;
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut at = RTP_FIXED_HEADER_LEN;
        match self.csrcs {
            Csrcs::List(l) => {
                for c in l {
                    out[at..at + 4].copy_from_slice(&c.to_be_bytes());
                    at += 4;
                }
            }
            Csrcs::Wire(w) => {
                let w = &w[..cc * 4];
                out[at..at + w.len()].copy_from_slice(w);
                at += w.len();
            }
        }
        if let Some(e) = self.extension {
            out[at..at + 2].copy_from_slice(&e.profile.to_be_bytes());
            out[at + 2..at + 4].copy_from_slice(&((e.data.len() / 4) as u16).to_be_bytes());
            out[at + 4..at + 4 + e.data.len()].copy_from_slice(e.data);
            at += 4 + e.data.len();
        }
        Ok(at)
    }

    /// Writes header and payload into `out`; returns the packet length.
    pub fn write_packet(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
        self.write_packet_padded(payload, 0, out)
    }

    /// Writes header, payload and `padding` octets (RFC 3550 §5.1, P bit; 0 for none);
    /// returns the packet length.
    pub fn write_packet_padded(
        &self,
        payload: &[u8],
        padding: u8,
        out: &mut [u8],
    ) -> Result<usize, RtpError> {
        let need = self.len() + payload.len() + usize::from(padding);
        if out.len() < need {
            return Err(RtpError::BufferTooSmall {
                need,
                have: out.len(),
            });
        }
        let at = self.write_with_padding(out, padding != 0)?;
        out[at..at + payload.len()].copy_from_slice(payload);
        let end = at + payload.len();
        if padding != 0 {
            let pad = &mut out[end..need];
            pad.fill(0);
            pad[pad.len() - 1] = padding;
        }
        Ok(need)
    }
}

/// Rewrites the fixed-header fields a relay changes per leg (sequence, timestamp, SSRC and,
/// when given, the payload type) in a packet that [`RtpPacket::parse`] accepted, leaving every
/// other byte as received. A relay forwards without copying this way.
pub fn rewrite_header(
    packet: &mut [u8],
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload_type: Option<u8>,
) -> Result<(), RtpError> {
    if packet.len() < RTP_FIXED_HEADER_LEN {
        return Err(RtpError::Truncated {
            len: packet.len(),
            need: RTP_FIXED_HEADER_LEN,
        });
    }
    if let Some(pt) = payload_type {
        if pt > 0x7f {
            return Err(RtpError::PayloadType(pt));
        }
        packet[1] = (packet[1] & 0x80) | pt;
    }
    packet[2..4].copy_from_slice(&sequence.to_be_bytes());
    packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(())
}

/// Is this datagram RTCP rather than RTP when both share a port (RFC 5761 §4: the second
/// octet is 192–223 for RTCP, which RTP payload types 64–95 would collide with)?
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // An RFC 3550 §5.1 header worked by hand: V=2 P=0 X=0 CC=0, M=1 PT=96, seq 0x1234,
    // timestamp 0xDEADBEEF, SSRC 0x01020304, then three payload bytes.
    const SIMPLE: [u8; 15] = [
        0x80, 0xE0, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB, 0xCC,
    ];

    #[test]
    fn parses_a_hand_made_packet() {
        let p = RtpPacket::parse(&SIMPLE).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence(), 0x1234);
        assert_eq!(p.timestamp(), 0xDEAD_BEEF);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.csrc_count(), 0);
        assert_eq!(p.extension(), None);
        assert_eq!(p.payload(), [0xAA, 0xBB, 0xCC]);
        assert_eq!(p.padding(), 0);
    }

    #[test]
    fn csrcs_extension_and_padding() {
        // V=2 P=1 X=1 CC=2; PT 0; two CSRCs; extension 0xBEDE with one word; 2 payload
        // bytes; 3 padding bytes whose last says 3.
        let mut b = vec![0xB2, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        b.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 8]);
        b.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xFF, 0, 0]);
        b.extend_from_slice(&[0x55, 0x66, 0, 0, 3]);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), [7, 8]);
        let e = p.extension().unwrap();
        assert_eq!((e.profile, e.data), (0xBEDE, &[0x10, 0xFF, 0, 0][..]));
        assert_eq!(p.payload(), [0x55, 0x66]);
        assert_eq!(p.padding(), 3);
        let mut out = [0u8; 64];
        let n = p
            .header()
            .write_packet_padded(p.payload(), 3, &mut out)
            .unwrap();
        assert_eq!(&out[..n], &b[..]);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            RtpPacket::parse(&SIMPLE[..11]),
            Err(RtpError::Truncated { len: 11, need: 12 })
        );
        let mut v1 = SIMPLE;
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::Version(1)));
        let mut cc = SIMPLE;
        cc[0] = 0x81;
        assert_eq!(
            RtpPacket::parse(&cc[..15]),
            Err(RtpError::Truncated { len: 15, need: 16 })
        );
        let mut x = SIMPLE;
        x[0] = 0x90;
        assert_eq!(
            RtpPacket::parse(&x),
            Err(RtpError::Truncated { len: 15, need: 16 })
        );
        let mut pad = SIMPLE;
        pad[0] = 0xA0;
        pad[14] = 4;
        assert_eq!(
            RtpPacket::parse(&pad),
            Err(RtpError::Padding {
                count: 4,
                available: 3
            })
        );
        pad[14] = 0;
        assert!(matches!(
            RtpPacket::parse(&pad),
            Err(RtpError::Padding { count: 0, .. })
        ));
        let mut out = [0u8; 14];
        assert_eq!(
            RtpHeader::new(0, 0, 0, 0).write_packet(&[0; 3], &mut out),
            Err(RtpError::BufferTooSmall { need: 15, have: 14 })
        );
        assert_eq!(
            RtpHeader::new(128, 0, 0, 0).write(&mut out),
            Err(RtpError::PayloadType(128))
        );
        let mut h = RtpHeader::new(0, 0, 0, 0);
        let many = [0u32; 16];
        h.csrcs = Csrcs::List(&many);
        assert_eq!(h.write(&mut [0u8; 128]), Err(RtpError::TooManyCsrcs(16)));
    }

    #[test]
    fn rewrite_in_place_keeps_the_rest() {
        let mut b = SIMPLE;
        rewrite_header(&mut b, 7, 8, 9, Some(8)).unwrap();
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(
            (
                p.marker(),
                p.payload_type(),
                p.sequence(),
                p.timestamp(),
                p.ssrc()
            ),
            (true, 8, 7, 8, 9)
        );
        assert_eq!(p.payload(), &SIMPLE[12..]);
    }

    #[test]
    fn rtcp_demultiplexing() {
        assert!(!is_rtcp(&SIMPLE));
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 203]));
        assert!(!is_rtcp(&[0x80]));
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = RtpPacket::parse(&b);
        }

        #[test]
        fn write_then_parse(
            m in any::<bool>(), pt in 0u8..128, seq in any::<u16>(), ts in any::<u32>(),
            ssrc in any::<u32>(), csrcs in proptest::collection::vec(any::<u32>(), 0..16),
            ext in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..3))),
            payload in proptest::collection::vec(any::<u8>(), 0..40), padding in any::<u8>(),
        ) {
            let ext_data: Vec<u8> = ext.as_ref().map(|(_, w)| w.repeat(4)).unwrap_or_default();
            let mut h = RtpHeader::new(pt, seq, ts, ssrc);
            h.marker = m;
            h.csrcs = Csrcs::List(&csrcs);
            h.extension = ext.as_ref().map(|(p, _)| RtpExtension { profile: *p, data: &ext_data });
            let mut out = [0u8; 512];
            let n = h.write_packet_padded(&payload, padding, &mut out).unwrap();
            let p = RtpPacket::parse(&out[..n]).unwrap();
            prop_assert_eq!(p.marker(), m);
            prop_assert_eq!(p.payload_type(), pt);
            prop_assert_eq!(p.sequence(), seq);
            prop_assert_eq!(p.timestamp(), ts);
            prop_assert_eq!(p.ssrc(), ssrc);
            prop_assert_eq!(p.csrcs().collect::<Vec<_>>(), csrcs.clone());
            prop_assert_eq!(p.extension(), h.extension);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(p.padding(), padding);
            // And the parsed header writes the same bytes back.
            let mut again = [0u8; 512];
            let n2 = p.header().write_packet_padded(p.payload(), p.padding(), &mut again).unwrap();
            prop_assert_eq!(&again[..n2], &out[..n]);
        }
    }
}
