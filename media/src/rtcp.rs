//! RTCP (RFC 3550 §6): sender and receiver reports, SDES (CNAME), BYE and compound packets,
//! parsed into borrowed views and written into caller buffers.
//!
//! A leg of a B2BUA either relays what it receives (after [`Compound::parse`] proved it well
//! formed) or generates its own reports with [`RtcpWriter`] from its
//! [`crate::stats::ReceiverStats`].

/// Payload type of a sender report.
pub const PT_SR: u8 = 200;
/// Payload type of a receiver report.
pub const PT_RR: u8 = 201;
/// Payload type of source description.
pub const PT_SDES: u8 = 202;
/// Payload type of goodbye.
pub const PT_BYE: u8 = 203;
/// Payload type of application-defined packets.
pub const PT_APP: u8 = 204;

/// SDES item type of the canonical name (RFC 3550 §6.5.1).
pub const SDES_CNAME: u8 = 1;

const REPORT_BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;

/// What is wrong with an RTCP packet, or why one does not fit a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Fewer bytes than a header or a declared length needs.
    #[error("RTCP packet truncated at offset {offset}: {need} bytes needed, {have} left")]
    Truncated {
        /// Offset of the packet in the compound.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    Version(u8),
    /// RFC 3550 §6.1: the first packet of a compound is an SR or an RR.
    #[error("compound RTCP starts with packet type {0}, not SR or RR")]
    FirstNotReport(u8),
    /// RFC 3550 §6.1: only the last packet of a compound may carry padding.
    #[error("padding in a packet that is not the last of the compound")]
    PaddingNotLast,
    /// A padding count of zero or larger than the packet.
    #[error("RTCP padding count {0} invalid")]
    Padding(u8),
    /// The body of an SR, RR, SDES or BYE does not match its count field.
    #[error("RTCP packet type {pt}: {what}")]
    Body {
        /// The packet type.
        pt: u8,
        /// What is wrong.
        what: &'static str,
    },
    /// Writing: more items than the 5-bit count allows (31), or text longer than 255 bytes.
    #[error("too many items or too long text for one RTCP packet")]
    TooLarge,
    /// Writing: the buffer is too small.
    #[error("buffer too small: {need} bytes needed, {have} available")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// NTP timestamp, seconds in the high 32 bits, fraction in the low 32.
    pub ntp_timestamp: u64,
    /// The RTP timestamp matching the NTP time.
    pub rtp_timestamp: u32,
    /// Packets sent since starting.
    pub packet_count: u32,
    /// Payload octets sent since starting.
    pub octet_count: u32,
}

impl SenderInfo {
    /// The middle 32 bits of the NTP timestamp, which receivers echo as LSR.
    pub fn compact_ntp(&self) -> u32 {
        (self.ntp_timestamp >> 16) as u32
    }
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, a signed 24-bit value (duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from that source (0 if none).
    pub last_sr: u32,
    /// Delay since that SR in 1/65536 s (0 if none).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> Self {
        // 24-bit two's complement: shift into the top of an i32 and back to sign-extend.
        let lost = (be32(b, 4) << 8) as i32 >> 8;
        ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            cumulative_lost: lost,
            extended_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        }
    }

    fn write(&self, out: &mut [u8]) {
        // Clamp to what 24 signed bits hold, as RFC 3550 Appendix A.3 does.
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0xFF_FFFF;
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4..8].copy_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out[8..12].copy_from_slice(&self.extended_highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        out[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// The report blocks of an SR or RR, read from the wire on iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl<'a> ReportBlocks<'a> {
    /// How many blocks there are.
    pub fn len(&self) -> usize {
        self.0.len() / REPORT_BLOCK_LEN
    }

    /// No block at all?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The blocks in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ReportBlock> + 'a {
        self.0
            .chunks_exact(REPORT_BLOCK_LEN)
            .map(ReportBlock::parse)
    }
}

/// A sender report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    /// The sender.
    pub ssrc: u32,
    /// What it sent.
    pub info: SenderInfo,
    /// What it received.
    pub blocks: ReportBlocks<'a>,
    /// Profile-specific extension after the blocks.
    pub extension: &'a [u8],
}

/// A receiver report (RFC 3550 §6.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    /// The reporter.
    pub ssrc: u32,
    /// What it received.
    pub blocks: ReportBlocks<'a>,
    /// Profile-specific extension after the blocks.
    pub extension: &'a [u8],
}

/// One SDES item (RFC 3550 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// The item type (1 CNAME, 2 NAME, … 8 PRIV).
    pub kind: u8,
    /// Its text (UTF-8 by the RFC, kept as bytes).
    pub text: &'a [u8],
}

/// One SDES chunk: a source and its items, already checked to be well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    /// The source described.
    pub ssrc: u32,
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    /// The items in order.
    pub fn items(&self) -> impl Iterator<Item = SdesItem<'a>> + 'a {
        let mut rest = self.items;
        std::iter::from_fn(move || {
            // Checked when the chunk was parsed: every item fits and a null octet ends them.
            let (&kind, tail) = rest.split_first()?;
            if kind == 0 {
                return None;
            }
            let (&len, tail) = tail.split_first()?;
            let text = tail.get(..usize::from(len))?;
            rest = &tail[usize::from(len)..];
            Some(SdesItem { kind, text })
        })
    }

    /// The CNAME item's text, if present.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|i| i.kind == SDES_CNAME).map(|i| i.text)
    }
}

/// Source descriptions (RFC 3550 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes<'a> {
    count: u8,
    body: &'a [u8],
}

impl<'a> Sdes<'a> {
    /// How many chunks there are.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// No chunk at all?
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The chunks in order.
    pub fn chunks(&self) -> impl Iterator<Item = SdesChunk<'a>> + 'a {
        let mut rest = self.body;
        let mut left = self.count;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let (chunk, len) = sdes_chunk(rest).ok()?;
            rest = rest.get(len..)?;
            Some(chunk)
        })
    }

    fn validate(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let mut rest = body;
        for _ in 0..count {
            let (_, len) = sdes_chunk(rest)?;
            rest = &rest[len..];
        }
        Ok(Sdes { count, body })
    }
}

const fn sdes_error(what: &'static str) -> RtcpError {
    RtcpError::Body { pt: PT_SDES, what }
}

/// One chunk at the start of `b` and its length on the wire (a multiple of 4).
fn sdes_chunk(b: &[u8]) -> Result<(SdesChunk<'_>, usize), RtcpError> {
    if b.len() < 4 {
        return Err(sdes_error("chunk without SSRC"));
    }
    let mut at = 4;
    loop {
        match b.get(at) {
            None => return Err(sdes_error("items not ended by a null octet")),
            Some(0) => break,
            Some(_) => {
                let len = usize::from(*b.get(at + 1).ok_or(sdes_error("item truncated"))?);
                at += 2 + len;
                if at > b.len() {
                    return Err(sdes_error("item truncated"));
                }
            }
        }
    }
    // The null octet, then zero padding up to the next 32-bit boundary.
    let end = (at + 1).div_ceil(4) * 4;
    if end > b.len() {
        return Err(sdes_error("chunk padding truncated"));
    }
    Ok((
        SdesChunk {
            ssrc: be32(b, 0),
            items: &b[4..at],
        },
        end,
    ))
}

/// A goodbye (RFC 3550 §6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    /// The reason for leaving, when given.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// The sources leaving.
    pub fn ssrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// One RTCP packet of a compound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// Sender report.
    SenderReport(SenderReport<'a>),
    /// Receiver report.
    ReceiverReport(ReceiverReport<'a>),
    /// Source description.
    Sdes(Sdes<'a>),
    /// Goodbye.
    Bye(Bye<'a>),
    /// APP and every other packet type, kept opaque for relaying.
    Other {
        /// The packet type.
        pt: u8,
        /// The 5-bit count/subtype field.
        count: u8,
        /// The body after the 4-byte header, padding removed.
        body: &'a [u8],
    },
}

impl<'a> RtcpPacket<'a> {
    /// Parses the first packet of `buf` and returns it with its length on the wire.
    pub fn parse(buf: &'a [u8]) -> Result<(Self, usize), RtcpError> {
        Self::parse_at(buf, 0)
    }

    fn parse_at(buf: &'a [u8], offset: usize) -> Result<(Self, usize), RtcpError> {
        let truncated = |need| RtcpError::Truncated {
            offset,
            need,
            have: buf.len(),
        };
        if buf.len() < 4 {
            return Err(truncated(4));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version(version));
        }
        let padded = buf[0] & 0x20 != 0;
        let count = buf[0] & 0x1f;
        let pt = buf[1];
        let len = (usize::from(be16(buf, 2)) + 1) * 4;
        if buf.len() < len {
            return Err(truncated(len));
        }
        let mut body = &buf[4..len];
        if padded {
            let p = body.last().copied().unwrap_or(0);
            if p == 0 || usize::from(p) > body.len() {
                return Err(RtcpError::Padding(p));
            }
            body = &body[..body.len() - usize::from(p)];
        }
        let body_error = |what| RtcpError::Body { pt, what };
        let blocks = |b: &'a [u8]| -> Result<(ReportBlocks<'a>, &'a [u8]), RtcpError> {
            let n = usize::from(count) * REPORT_BLOCK_LEN;
            if b.len() < n {
                return Err(body_error("fewer report blocks than the count says"));
            }
            Ok((ReportBlocks(&b[..n]), &b[n..]))
        };
        let packet = match pt {
            PT_SR => {
                if body.len() < 4 + SENDER_INFO_LEN {
                    return Err(body_error("sender info truncated"));
                }
                let info = SenderInfo {
                    ntp_timestamp: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                    rtp_timestamp: be32(body, 12),
                    packet_count: be32(body, 16),
                    octet_count: be32(body, 20),
                };
                let (blocks, extension) = blocks(&body[4 + SENDER_INFO_LEN..])?;
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: be32(body, 0),
                    info,
                    blocks,
                    extension,
                })
            }
            PT_RR => {
                if body.len() < 4 {
                    return Err(body_error("reporter SSRC missing"));
                }
                let (blocks, extension) = blocks(&body[4..])?;
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: be32(body, 0),
                    blocks,
                    extension,
                })
            }
            PT_SDES => RtcpPacket::Sdes(Sdes::validate(count, body)?),
            PT_BYE => {
                let n = usize::from(count) * 4;
                if body.len() < n {
                    return Err(body_error("fewer SSRCs than the count says"));
                }
                let reason = match body.get(n) {
                    None => None,
                    Some(&l) => Some(
                        body.get(n + 1..n + 1 + usize::from(l))
                            .ok_or(body_error("reason truncated"))?,
                    ),
                };
                RtcpPacket::Bye(Bye {
                    ssrcs: &body[..n],
                    reason,
                })
            }
            _ => RtcpPacket::Other { pt, count, body },
        };
        Ok((packet, len))
    }
}

/// A compound RTCP datagram checked as RFC 3550 Appendix A.2 does: every packet well formed,
/// the lengths adding up to the datagram, the first packet an SR or RR, padding only in the
/// last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compound<'a>(&'a [u8]);

impl<'a> Compound<'a> {
    /// Validates a whole datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtcpError> {
        let mut at = 0;
        while at < buf.len() {
            let (p, len) = RtcpPacket::parse_at(&buf[at..], at)?;
            if at == 0
                && !matches!(
                    p,
                    RtcpPacket::SenderReport(_) | RtcpPacket::ReceiverReport(_)
                )
            {
                return Err(RtcpError::FirstNotReport(buf[1]));
            }
            if buf[at] & 0x20 != 0 && at + len != buf.len() {
                return Err(RtcpError::PaddingNotLast);
            }
            at += len;
        }
        if buf.is_empty() {
            return Err(RtcpError::Truncated {
                offset: 0,
                need: 4,
                have: 0,
            });
        }
        Ok(Compound(buf))
    }

    /// The datagram's bytes, for relaying unchanged.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The packets in order.
    pub fn packets(&self) -> impl Iterator<Item = RtcpPacket<'a>> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let (p, len) = RtcpPacket::parse(rest).ok()?;
            rest = &rest[len..];
            Some(p)
        })
    }
}

/// Writes a compound RTCP packet into a caller buffer, one packet at a time.
#[derive(Debug)]
pub struct RtcpWriter<'b> {
    out: &'b mut [u8],
    at: usize,
}

impl<'b> RtcpWriter<'b> {
    /// A writer at the start of `out`.
    pub fn new(out: &'b mut [u8]) -> Self {
        RtcpWriter { out, at: 0 }
    }

    /// Bytes written so far (the compound's length once done).
    pub fn len(&self) -> usize {
        self.at
    }

    /// Nothing written yet?
    pub fn is_empty(&self) -> bool {
        self.at == 0
    }

    /// Claims `len` bytes (a multiple of 4) for one packet and writes its common header.
    fn start(&mut self, count: usize, pt: u8, len: usize) -> Result<&mut [u8], RtcpError> {
        if count > 31 || len / 4 > usize::from(u16::MAX) + 1 {
            return Err(RtcpError::TooLarge);
        }
        let have = self.out.len() - self.at;
        if have < len {
            return Err(RtcpError::BufferTooSmall { need: len, have });
        }
        let p = &mut self.out[self.at..self.at + len];
        p[0] = 0x80 | count as u8;
        p[1] = pt;
        p[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
        self.at += len;
        Ok(p)
    }

    /// Appends a sender report.
    pub fn sender_report(
        &mut self,
        ssrc: u32,
        info: &SenderInfo,
        blocks: &[ReportBlock],
    ) -> Result<(), RtcpError> {
        let len = 8 + SENDER_INFO_LEN + REPORT_BLOCK_LEN * blocks.len();
        let p = self.start(blocks.len(), PT_SR, len)?;
        p[4..8].copy_from_slice(&ssrc.to_be_bytes());
        p[8..12].copy_from_slice(&((info.ntp_timestamp >> 32) as u32).to_be_bytes());
        p[12..16].copy_from_slice(&(info.ntp_timestamp as u32).to_be_bytes());
        p[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
        p[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
        p[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
        for (b, out) in blocks
            .iter()
            .zip(p[28..].chunks_exact_mut(REPORT_BLOCK_LEN))
        {
            b.write(out);
        }
        Ok(())
    }

    /// Appends a receiver report.
    pub fn receiver_report(&mut self, ssrc: u32, blocks: &[ReportBlock]) -> Result<(), RtcpError> {
        let len = 8 + REPORT_BLOCK_LEN * blocks.len();
        let p = self.start(blocks.len(), PT_RR, len)?;
        p[4..8].copy_from_slice(&ssrc.to_be_bytes());
        for (b, out) in blocks.iter().zip(p[8..].chunks_exact_mut(REPORT_BLOCK_LEN)) {
            b.write(out);
        }
        Ok(())
    }

    /// Appends an SDES packet with one chunk carrying the CNAME (RFC 3550 §6.5.1), the one
    /// item every compound needs.
    pub fn sdes_cname(&mut self, ssrc: u32, cname: &[u8]) -> Result<(), RtcpError> {
        let text_len = u8::try_from(cname.len()).map_err(|_| RtcpError::TooLarge)?;
        // SSRC, type, length, text, then at least one null octet up to a 32-bit boundary.
        let chunk = (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
        let p = self.start(1, PT_SDES, 4 + chunk)?;
        p[4..8].copy_from_slice(&ssrc.to_be_bytes());
        p[8] = SDES_CNAME;
        p[9] = text_len;
        p[10..10 + cname.len()].copy_from_slice(cname);
        p[10 + cname.len()..].fill(0);
        Ok(())
    }

    /// Appends a BYE for `ssrcs` with an optional reason.
    pub fn bye(&mut self, ssrcs: &[u32], reason: Option<&[u8]>) -> Result<(), RtcpError> {
        let reason_len = match reason {
            Some(r) => 1 + usize::from(u8::try_from(r.len()).map_err(|_| RtcpError::TooLarge)?),
            None => 0,
        };
        let len = (4 + 4 * ssrcs.len() + reason_len).div_ceil(4) * 4;
        let p = self.start(ssrcs.len(), PT_BYE, len)?;
        for (s, out) in ssrcs.iter().zip(p[4..].chunks_exact_mut(4)) {
            out.copy_from_slice(&s.to_be_bytes());
        }
        let at = 4 + 4 * ssrcs.len();
        p[at..].fill(0);
        if let Some(r) = reason {
            p[at] = r.len() as u8;
            p[at + 1..at + 1 + r.len()].copy_from_slice(r);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_made_rr_and_sdes() {
        // RR from 0x11111111 with one block on 0x22222222: 2/256 lost, 5 in total, ext
        // seq 0x00010005, jitter 40, LSR 0x12345678, DLSR 0x00010000 (1 s); then SDES with
        // CNAME "ab" (4 + 2 + 2 + 1 null = 9 bytes, padded to 12).
        let bytes: [u8; 48] = [
            0x81, 201, 0, 7, 0x11, 0x11, 0x11, 0x11, //
            0x22, 0x22, 0x22, 0x22, 2, 0, 0, 5, 0, 1, 0, 5, 0, 0, 0, 40, //
            0x12, 0x34, 0x56, 0x78, 0, 1, 0, 0, //
            0x81, 202, 0, 3, 0x11, 0x11, 0x11, 0x11, 1, 2, b'a', b'b', 0, 0, 0, 0,
        ];
        let c = Compound::parse(&bytes).unwrap();
        let packets: Vec<_> = c.packets().collect();
        assert_eq!(packets.len(), 2);
        let RtcpPacket::ReceiverReport(rr) = packets[0] else {
            panic!("{:?}", packets[0])
        };
        assert_eq!(rr.ssrc, 0x1111_1111);
        let b: Vec<_> = rr.blocks.iter().collect();
        assert_eq!(
            b,
            [ReportBlock {
                ssrc: 0x2222_2222,
                fraction_lost: 2,
                cumulative_lost: 5,
                extended_highest_seq: 0x1_0005,
                jitter: 40,
                last_sr: 0x1234_5678,
                delay_since_last_sr: 0x1_0000,
            }]
        );
        let RtcpPacket::Sdes(s) = packets[1] else {
            panic!("{:?}", packets[1])
        };
        let chunk = s.chunks().next().unwrap();
        assert_eq!((chunk.ssrc, chunk.cname()), (0x1111_1111, Some(&b"ab"[..])));

        let mut out = [0u8; 64];
        let mut w = RtcpWriter::new(&mut out);
        w.receiver_report(0x1111_1111, &b).unwrap();
        w.sdes_cname(0x1111_1111, b"ab").unwrap();
        let n = w.len();
        assert_eq!(&out[..n], &bytes[..]);
    }

    #[test]
    fn sr_bye_round_trip_and_negative_loss() {
        let info = SenderInfo {
            ntp_timestamp: 0x8000_0001_4000_0000,
            rtp_timestamp: 160,
            packet_count: 3,
            octet_count: 96,
        };
        assert_eq!(info.compact_ntp(), 0x0001_4000);
        let block = ReportBlock {
            ssrc: 9,
            cumulative_lost: -3,
            ..ReportBlock::default()
        };
        let mut out = [0u8; 128];
        let mut w = RtcpWriter::new(&mut out);
        w.sender_report(7, &info, &[block]).unwrap();
        w.sdes_cname(7, b"ue1@lab").unwrap();
        w.bye(&[7, 8], Some(b"hangup")).unwrap();
        let n = w.len();
        assert_eq!(n % 4, 0);
        let c = Compound::parse(&out[..n]).unwrap();
        let p: Vec<_> = c.packets().collect();
        let RtcpPacket::SenderReport(sr) = p[0] else {
            panic!()
        };
        assert_eq!((sr.ssrc, sr.info), (7, info));
        assert_eq!(sr.blocks.iter().next(), Some(block));
        let RtcpPacket::Bye(bye) = p[2] else { panic!() };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), [7, 8]);
        assert_eq!(bye.reason, Some(&b"hangup"[..]));
    }

    #[test]
    fn typed_errors() {
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(Compound::parse(&rr).is_ok());
        assert_eq!(
            Compound::parse(&rr[..7]),
            Err(RtcpError::Truncated {
                offset: 0,
                need: 8,
                have: 7
            })
        );
        assert_eq!(
            Compound::parse(&[]).map(|_| ()),
            Err(RtcpError::Truncated {
                offset: 0,
                need: 4,
                have: 0
            })
        );
        assert_eq!(
            Compound::parse(&[0x40, 201, 0, 0]),
            Err(RtcpError::Version(1))
        );
        assert_eq!(
            Compound::parse(&[0x80, 203, 0, 0]),
            Err(RtcpError::FirstNotReport(203))
        );
        // RR with count 1 but no block.
        assert!(matches!(
            Compound::parse(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::Body { pt: 201, .. })
        ));
        // Padding in the first of two packets.
        let mut two = [0u8; 20];
        two[..12].copy_from_slice(&[0xA0, 201, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4]);
        two[12..].copy_from_slice(&rr);
        assert!(Compound::parse(&two[..12]).is_ok());
        assert_eq!(Compound::parse(&two), Err(RtcpError::PaddingNotLast));
        // SDES whose item runs past the packet, or that lacks its terminating null.
        assert!(matches!(
            Compound::parse(&[
                0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'x', b'y'
            ]),
            Err(RtcpError::Body { pt: 202, .. })
        ));
        assert!(matches!(
            Compound::parse(&[
                0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'x', b'y'
            ]),
            Err(RtcpError::Body { pt: 202, .. })
        ));
        // BYE reason longer than the packet.
        assert!(matches!(
            Compound::parse(&[
                0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'x', 0, 0
            ]),
            Err(RtcpError::Body { pt: 203, .. })
        ));
        let mut small = [0u8; 10];
        assert_eq!(RtcpWriter::new(&mut small).receiver_report(1, &[]), Ok(()));
        assert_eq!(
            RtcpWriter::new(&mut small).sdes_cname(1, b"abcd"),
            Err(RtcpError::BufferTooSmall { need: 16, have: 10 })
        );
        assert_eq!(
            RtcpWriter::new(&mut [0u8; 2048]).bye(&[0; 32], None),
            Err(RtcpError::TooLarge)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(c) = Compound::parse(&b) {
                for p in c.packets() {
                    match p {
                        RtcpPacket::Sdes(s) => { for ch in s.chunks() { let _ = ch.items().count(); } }
                        RtcpPacket::SenderReport(s) => { let _ = s.blocks.iter().count(); }
                        RtcpPacket::ReceiverReport(r) => { let _ = r.blocks.iter().count(); }
                        RtcpPacket::Bye(b) => { let _ = b.ssrcs().count(); }
                        RtcpPacket::Other { .. } => {}
                    }
                }
            }
        }

        #[test]
        fn written_reports_parse_back(
            ssrc in any::<u32>(), lost in -0x80_0000i32..0x80_0000, frac in any::<u8>(),
            seq in any::<u32>(), n in 0usize..5,
            cname in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let blocks: Vec<ReportBlock> = (0..n).map(|i| ReportBlock {
                ssrc: ssrc ^ i as u32, fraction_lost: frac, cumulative_lost: lost,
                extended_highest_seq: seq, jitter: i as u32, last_sr: 1, delay_since_last_sr: 2,
            }).collect();
            let mut out = [0u8; 512];
            let mut w = RtcpWriter::new(&mut out);
            w.receiver_report(ssrc, &blocks).unwrap();
            w.sdes_cname(ssrc, &cname).unwrap();
            let len = w.len();
            let c = Compound::parse(&out[..len]).unwrap();
            let p: Vec<_> = c.packets().collect();
            let RtcpPacket::ReceiverReport(rr) = p[0] else { panic!() };
            prop_assert_eq!(rr.blocks.iter().collect::<Vec<_>>(), blocks);
            let RtcpPacket::Sdes(s) = p[1] else { panic!() };
            prop_assert_eq!(s.chunks().next().and_then(|c| c.cname()), Some(&cname[..]));
        }
    }
}
