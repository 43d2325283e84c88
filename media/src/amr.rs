//! AMR and AMR-WB RTP payloads (RFC 4867 §4) in both payload formats, and the AMR storage
//! (file) format (RFC 4867 §5).
//!
//! A payload is a codec mode request (CMR), a table of contents with one entry per frame
//! (F: more entries follow, FT: frame type, Q: quality), then the speech bits of each frame
//! as the codec emitted them (class A, B, C order; no codec here). The two payload formats
//! carry the same fields:
//!
//! - bandwidth-efficient (§4.3, the default): CMR in 4 bits, 6-bit ToC entries, speech bits
//!   back to back, the packet padded with zero bits to a whole octet;
//! - octet-aligned (§4.4, `octet-align=1`): CMR and 4 reserved bits in one octet, one octet
//!   per ToC entry, each frame padded to a whole octet.
//!
//! [`AmrPayload::parse`] validates a payload and borrows it; [`AmrPayload::frames`] yields
//! [`AmrFrame`] views; [`pack`] (and [`AmrPayload::write`]) writes frames in either format into
//! a caller buffer. Converting between the formats is parse-then-write, with no allocation:
//! exactly what a bridge does when one leg says `octet-align=1` and the other does not.
//!
//! Interleaving, frame CRCs and robust sorting (§4.4.2, §4.4.3) are not supported:
//! [`AmrFormat::from_params`] refuses them, so an answer should not accept them either.

use sdp::{AmrKind, AmrParams};

/// Frame type of "no data" (nothing transmitted for this frame block), both codecs.
pub const FT_NO_DATA: u8 = 15;
/// Frame type of a lost speech frame, AMR-WB only (RFC 4867 §4.3.2).
pub const FT_SPEECH_LOST: u8 = 14;
/// CMR value meaning "no mode request" (RFC 4867 §4.3.1).
pub const CMR_NONE: u8 = 15;

/// Speech bits per frame type, AMR-NB (3GPP TS 26.101 Table 1a): modes 0–7 (4.75 to
/// 12.2 kbit/s), then SID.
const NB_BITS: [u16; 9] = [95, 103, 118, 134, 148, 159, 204, 244, 39];
/// Speech bits per frame type, AMR-WB (3GPP TS 26.201 Table 2): modes 0–8 (6.60 to
/// 23.85 kbit/s), then SID.
const WB_BITS: [u16; 10] = [132, 177, 253, 285, 317, 365, 397, 461, 477, 40];

/// The frame type of the SID (comfort noise) frame: 8 for AMR-NB, 9 for AMR-WB.
pub fn sid_frame_type(kind: AmrKind) -> u8 {
    match kind {
        AmrKind::Nb => 8,
        AmrKind::Wb => 9,
    }
}

/// Speech bits a frame of type `ft` carries, or `None` for a frame type RFC 4867 §4.3.2
/// tells receivers to discard the packet for (AMR-NB 9–14: legacy SIDs and reserved;
/// AMR-WB 10–13: reserved).
pub fn frame_bits(kind: AmrKind, ft: u8) -> Option<usize> {
    let table: &[u16] = match kind {
        AmrKind::Nb => &NB_BITS,
        AmrKind::Wb => &WB_BITS,
    };
    match (kind, ft) {
        (_, FT_NO_DATA) | (AmrKind::Wb, FT_SPEECH_LOST) => Some(0),
        _ => table.get(usize::from(ft)).map(|&b| usize::from(b)),
    }
}

/// Octets the speech of a frame of type `ft` takes in the octet-aligned and storage formats.
pub fn frame_octets(kind: AmrKind, ft: u8) -> Option<usize> {
    frame_bits(kind, ft).map(|b| b.div_ceil(8))
}

/// Is `cmr` a valid codec mode request: a mode of the codec, or 15 (none)?
pub fn valid_cmr(kind: AmrKind, cmr: u8) -> bool {
    cmr == CMR_NONE || cmr <= kind.max_mode()
}

/// Everything that can be wrong with an AMR payload, a storage file or a frame to pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmrError {
    /// The payload is empty.
    #[error("empty AMR payload")]
    Empty,
    /// Packing: the CMR is neither a mode of the codec nor 15.
    #[error("CMR {0} is not a mode of the codec nor 15")]
    Cmr(u8),
    /// A ToC entry (or storage frame header) has a frame type receivers must discard.
    #[error("frame {index}: frame type {ft} is reserved")]
    FrameType {
        /// 0-based frame index.
        index: usize,
        /// The frame type.
        ft: u8,
    },
    /// The payload ends inside the table of contents (no entry with F = 0).
    #[error("table of contents truncated after {entries} entries")]
    TocTruncated {
        /// Entries read.
        entries: usize,
    },
    /// The payload is shorter than its table of contents says.
    #[error("speech data truncated: {need} bits needed, {have} present")]
    Truncated {
        /// Bits the ToC announces (CMR and ToC included).
        need: usize,
        /// Bits present.
        have: usize,
    },
    /// Whole octets after the last frame (more than the format's padding).
    #[error("{0} octets after the last frame")]
    Trailing(usize),
    /// A frame's speech data does not have the length its frame type requires.
    #[error("frame type {ft} needs {need} speech octets, {got} given")]
    SpeechLength {
        /// The frame type.
        ft: u8,
        /// Octets required.
        need: usize,
        /// Octets given.
        got: usize,
    },
    /// Packing a payload needs at least one frame.
    #[error("no frame to pack")]
    NoFrames,
    /// A frame of one codec packed into a payload of the other.
    #[error("frame of {frame:?} in an {format:?} payload")]
    KindMismatch {
        /// The codec of the payload.
        format: AmrKind,
        /// The codec of the frame.
        frame: AmrKind,
    },
    /// The negotiated parameters ask for a payload feature this crate does not implement.
    #[error("unsupported AMR payload option: {0}")]
    Unsupported(&'static str),
    /// A storage file does not start with `#!AMR\n` or `#!AMR-WB\n`.
    #[error("not an AMR storage file (magic number missing)")]
    Magic,
    /// The output buffer is too small.
    #[error("buffer of {have} bytes too small, {need} needed")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// Which codec and which payload format (RFC 4867 §8.1 `octet-align`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AmrFormat {
    /// AMR or AMR-WB.
    pub kind: AmrKind,
    /// Octet-aligned (true) or bandwidth-efficient (false).
    pub octet_aligned: bool,
}

impl AmrFormat {
    /// The octet-aligned format of `kind`.
    pub const fn octet_aligned(kind: AmrKind) -> Self {
        AmrFormat {
            kind,
            octet_aligned: true,
        }
    }

    /// The bandwidth-efficient format of `kind`.
    pub const fn bandwidth_efficient(kind: AmrKind) -> Self {
        AmrFormat {
            kind,
            octet_aligned: false,
        }
    }

    /// The format a negotiated fmtp describes, refusing the options this crate does not
    /// implement (CRC, robust sorting, interleaving, more than one channel).
    pub fn from_params(kind: AmrKind, params: &AmrParams) -> Result<Self, AmrError> {
        if params.crc == Some(true) {
            return Err(AmrError::Unsupported("crc=1"));
        }
        if params.robust_sorting == Some(true) {
            return Err(AmrError::Unsupported("robust-sorting=1"));
        }
        if params.interleaving.is_some() {
            return Err(AmrError::Unsupported("interleaving"));
        }
        if params.channel_count() != 1 {
            return Err(AmrError::Unsupported("channels other than 1"));
        }
        Ok(AmrFormat {
            kind,
            octet_aligned: params.is_octet_aligned(),
        })
    }
}

fn bit(data: &[u8], pos: usize) -> bool {
    data[pos / 8] & (0x80 >> (pos % 8)) != 0
}

/// The 8 bits from bit `pos`; they lie inside `data` (so an unaligned read has a next octet).
fn read8(data: &[u8], pos: usize) -> u8 {
    let (i, shift) = (pos / 8, pos % 8);
    if shift == 0 {
        data[i]
    } else {
        (data[i] << shift) | (data[i + 1] >> (8 - shift))
    }
}

fn read_bits(data: &[u8], pos: usize, n: usize) -> u8 {
    (0..n).fold(0, |acc, i| (acc << 1) | u8::from(bit(data, pos + i)))
}

/// Writes bits MSB first into a zeroed buffer.
struct BitWriter<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl BitWriter<'_> {
    fn put(&mut self, value: u8, n: usize) {
        for i in (0..n).rev() {
            if value & (1 << i) != 0 {
                self.out[self.pos / 8] |= 0x80 >> (self.pos % 8);
            }
            self.pos += 1;
        }
    }

    /// Writes 8 bits at any bit position (the buffer has room: callers checked the length).
    fn put8(&mut self, v: u8) {
        let (i, shift) = (self.pos / 8, self.pos % 8);
        self.out[i] |= v >> shift;
        if shift != 0 {
            self.out[i + 1] |= v << (8 - shift);
        }
        self.pos += 8;
    }

    fn put_frame(&mut self, f: &AmrFrame<'_>) {
        // Eight bits at a time with shifts, whatever the two alignments; the last few one
        // by one so no bit after the frame's end is read.
        let mut src = f.bit_offset;
        let end = src + f.bits;
        while src + 8 <= end {
            self.put8(read8(f.data, src));
            src += 8;
        }
        while src < end {
            self.put(u8::from(bit(f.data, src)), 1);
            src += 1;
        }
    }

    fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }
}

/// One frame: its type, quality bit and speech bits, borrowed from a payload, a storage
/// file or the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmrFrame<'a> {
    kind: AmrKind,
    ft: u8,
    quality: bool,
    data: &'a [u8],
    bit_offset: usize,
    bits: usize,
}

impl<'a> AmrFrame<'a> {
    /// A frame from its speech bits as octets, MSB first, the last octet zero-padded (how an
    /// encoder or the storage format gives them). `speech` must be exactly
    /// [`frame_octets`] long.
    pub fn from_octets(
        kind: AmrKind,
        ft: u8,
        quality: bool,
        speech: &'a [u8],
    ) -> Result<Self, AmrError> {
        let bits = frame_bits(kind, ft).ok_or(AmrError::FrameType { index: 0, ft })?;
        let need = bits.div_ceil(8);
        if speech.len() != need {
            return Err(AmrError::SpeechLength {
                ft,
                need,
                got: speech.len(),
            });
        }
        Ok(AmrFrame {
            kind,
            ft,
            quality,
            data: speech,
            bit_offset: 0,
            bits,
        })
    }

    /// A NO_DATA frame (frame type 15): nothing sent for this frame block.
    pub fn no_data(kind: AmrKind) -> Self {
        AmrFrame {
            kind,
            ft: FT_NO_DATA,
            quality: true,
            data: &[],
            bit_offset: 0,
            bits: 0,
        }
    }

    /// AMR or AMR-WB.
    pub fn kind(&self) -> AmrKind {
        self.kind
    }

    /// The frame type: the mode for speech, SID, SPEECH_LOST (WB) or NO_DATA.
    pub fn frame_type(&self) -> u8 {
        self.ft
    }

    /// The Q bit: false when the frame is damaged (RFC 4867 §4.3.2).
    pub fn quality(&self) -> bool {
        self.quality
    }

    /// Is this a speech frame (a mode, not SID, SPEECH_LOST or NO_DATA)?
    pub fn is_speech(&self) -> bool {
        self.ft <= self.kind.max_mode()
    }

    /// Number of speech bits.
    pub fn bit_len(&self) -> usize {
        self.bits
    }

    /// Speech bit `i` (0 is the first bit carried), `None` past the end.
    pub fn bit(&self, i: usize) -> Option<bool> {
        (i < self.bits).then(|| bit(self.data, self.bit_offset + i))
    }

    /// The speech bits as octets when they start on an octet boundary (octet-aligned
    /// payloads, storage files, frames built from octets), without copying; the bits after
    /// the last speech bit are whatever the sender put there.
    pub fn aligned_octets(&self) -> Option<&'a [u8]> {
        (self.bit_offset % 8 == 0).then(|| {
            let at = self.bit_offset / 8;
            &self.data[at..at + self.bits.div_ceil(8)]
        })
    }

    /// Copies the speech bits into `out` as octets, MSB first, zero-padded; returns the
    /// octet count (what a decoder or the storage format takes).
    pub fn copy_octets(&self, out: &mut [u8]) -> Result<usize, AmrError> {
        let n = self.bits.div_ceil(8);
        let have = out.len();
        let out = out
            .get_mut(..n)
            .ok_or(AmrError::BufferTooSmall { need: n, have })?;
        out.fill(0);
        BitWriter { out, pos: 0 }.put_frame(self);
        Ok(n)
    }
}

/// A validated AMR or AMR-WB payload borrowing the RTP payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmrPayload<'a> {
    format: AmrFormat,
    cmr: u8,
    data: &'a [u8],
    frames: usize,
    speech_start: usize,
}

impl<'a> AmrPayload<'a> {
    /// Parses and validates a payload in `format` (RFC 4867 §4.3 or §4.4): every ToC frame
    /// type, and a length that matches the ToC exactly (up to the format's padding). A CMR
    /// outside the codec's modes is kept, not refused: §4.3.1 reserves those values for
    /// future use, and the speech that follows is still good ([`Self::mode_request`]
    /// ignores them).
    pub fn parse(format: AmrFormat, payload: &'a [u8]) -> Result<Self, AmrError> {
        let Some(&first) = payload.first() else {
            return Err(AmrError::Empty);
        };
        let kind = format.kind;
        let cmr = first >> 4;
        let have = payload.len() * 8;
        // Where the ToC starts and how wide an entry is, in bits.
        let (mut pos, entry) = if format.octet_aligned { (8, 8) } else { (4, 6) };
        let mut frames = 0;
        let mut speech_bits = 0;
        loop {
            if pos + entry > have {
                return Err(AmrError::TocTruncated { entries: frames });
            }
            let more = bit(payload, pos);
            let ft = read_bits(payload, pos + 1, 4);
            let bits = frame_bits(kind, ft).ok_or(AmrError::FrameType { index: frames, ft })?;
            speech_bits += if format.octet_aligned {
                bits.div_ceil(8) * 8
            } else {
                bits
            };
            frames += 1;
            pos += entry;
            if !more {
                break;
            }
        }
        let need = pos + speech_bits;
        if need > have {
            return Err(AmrError::Truncated { need, have });
        }
        let used = need.div_ceil(8);
        if payload.len() > used {
            return Err(AmrError::Trailing(payload.len() - used));
        }
        Ok(AmrPayload {
            format,
            cmr,
            data: payload,
            frames,
            speech_start: pos,
        })
    }

    /// The payload format it was parsed as.
    pub fn format(&self) -> AmrFormat {
        self.format
    }

    /// The CMR field as received (15: no request; may be a value reserved for future use).
    pub fn cmr(&self) -> u8 {
        self.cmr
    }

    /// The mode the sender asks us to encode with: `None` for CMR 15 and for values that
    /// are not modes of the codec (RFC 4867 §4.3.1).
    pub fn mode_request(&self) -> Option<u8> {
        (self.cmr <= self.format.kind.max_mode()).then_some(self.cmr)
    }

    /// Number of frames (ToC entries).
    pub fn len(&self) -> usize {
        self.frames
    }

    /// Never true: a valid payload has at least one ToC entry.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// The payload's bytes as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The frames in order.
    pub fn frames(&self) -> Frames<'a> {
        Frames {
            payload: *self,
            index: 0,
            speech_pos: self.speech_start,
        }
    }

    /// Writes the same frames in `to` (another payload format, or the same one with another
    /// CMR, e.g. the bridge's own request); returns the length written.
    pub fn write(&self, to: AmrFormat, cmr: u8, out: &mut [u8]) -> Result<usize, AmrError> {
        pack(to, cmr, self.frames(), out)
    }
}

/// The frames of an [`AmrPayload`], read from its ToC and speech bits.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    payload: AmrPayload<'a>,
    index: usize,
    speech_pos: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = AmrFrame<'a>;

    fn next(&mut self) -> Option<AmrFrame<'a>> {
        let p = &self.payload;
        if self.index >= p.frames {
            return None;
        }
        let toc = if p.format.octet_aligned {
            8 + 8 * self.index
        } else {
            4 + 6 * self.index
        };
        let ft = read_bits(p.data, toc + 1, 4);
        let quality = bit(p.data, toc + 5);
        // Validated by parse; a reserved type here would mean a bug, so end the iteration.
        let bits = frame_bits(p.format.kind, ft)?;
        let frame = AmrFrame {
            kind: p.format.kind,
            ft,
            quality,
            data: p.data,
            bit_offset: self.speech_pos,
            bits,
        };
        self.speech_pos += if p.format.octet_aligned {
            bits.div_ceil(8) * 8
        } else {
            bits
        };
        self.index += 1;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.payload.frames - self.index;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Frames<'_> {}

/// Length in bytes of a payload of `frames` in `format`.
pub fn packed_len<'f>(format: AmrFormat, frames: impl IntoIterator<Item = AmrFrame<'f>>) -> usize {
    let (n, bits) = frames.into_iter().fold((0, 0), |(n, bits), f| {
        let b = if format.octet_aligned {
            f.bits.div_ceil(8) * 8
        } else {
            f.bits
        };
        (n + 1, bits + b)
    });
    if format.octet_aligned {
        1 + n + bits / 8
    } else {
        (4 + 6 * n + bits).div_ceil(8)
    }
}

/// Packs `frames` (one per 20 ms frame block, in order) with codec mode request `cmr` into
/// `out` in `format`; returns the payload length. Padding and reserved bits are zero.
pub fn pack<'f, I>(format: AmrFormat, cmr: u8, frames: I, out: &mut [u8]) -> Result<usize, AmrError>
where
    I: IntoIterator<Item = AmrFrame<'f>>,
    I::IntoIter: Clone,
{
    let frames = frames.into_iter();
    if !valid_cmr(format.kind, cmr) {
        return Err(AmrError::Cmr(cmr));
    }
    let mut count = 0;
    for f in frames.clone() {
        if f.kind != format.kind {
            return Err(AmrError::KindMismatch {
                format: format.kind,
                frame: f.kind,
            });
        }
        count += 1;
    }
    if count == 0 {
        return Err(AmrError::NoFrames);
    }
    let len = packed_len(format, frames.clone());
    let have = out.len();
    let out = out
        .get_mut(..len)
        .ok_or(AmrError::BufferTooSmall { need: len, have })?;
    out.fill(0);
    let mut w = BitWriter { out, pos: 0 };
    w.put(cmr, 4);
    if format.octet_aligned {
        w.put(0, 4);
    }
    for (i, f) in frames.clone().enumerate() {
        w.put(u8::from(i + 1 < count), 1);
        w.put(f.ft, 4);
        w.put(u8::from(f.quality), 1);
        if format.octet_aligned {
            w.put(0, 2);
        }
    }
    for f in frames {
        w.put_frame(&f);
        if format.octet_aligned {
            w.align();
        }
    }
    Ok(len)
}

/// Magic number of an AMR-NB storage file (RFC 4867 §5.1, single channel).
pub const STORAGE_MAGIC_NB: &[u8] = b"#!AMR\n";
/// Magic number of an AMR-WB storage file (RFC 4867 §5.1, single channel).
pub const STORAGE_MAGIC_WB: &[u8] = b"#!AMR-WB\n";

/// The frames of an AMR or AMR-WB storage file (RFC 4867 §5.3: per frame one header octet
/// `0 FT Q 0 0` then the speech octets), such as `.amr` files a UE simulator plays.
#[derive(Debug, Clone)]
pub struct StorageFrames<'a> {
    kind: AmrKind,
    rest: &'a [u8],
    index: usize,
}

impl<'a> StorageFrames<'a> {
    /// Reads the magic number; frames are read (and validated) by the iterator.
    pub fn parse(file: &'a [u8]) -> Result<Self, AmrError> {
        let (kind, rest) = if let Some(rest) = file.strip_prefix(STORAGE_MAGIC_WB) {
            (AmrKind::Wb, rest)
        } else if let Some(rest) = file.strip_prefix(STORAGE_MAGIC_NB) {
            (AmrKind::Nb, rest)
        } else {
            return Err(AmrError::Magic);
        };
        Ok(StorageFrames {
            kind,
            rest,
            index: 0,
        })
    }

    /// The codec named by the magic number.
    pub fn kind(&self) -> AmrKind {
        self.kind
    }
}

impl<'a> Iterator for StorageFrames<'a> {
    type Item = Result<AmrFrame<'a>, AmrError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&header, tail) = self.rest.split_first()?;
        let ft = (header >> 3) & 0x0f;
        let quality = header & 0x04 != 0;
        let index = self.index;
        self.index += 1;
        let Some(n) = frame_octets(self.kind, ft) else {
            self.rest = &[];
            return Some(Err(AmrError::FrameType { index, ft }));
        };
        let Some(speech) = tail.get(..n) else {
            self.rest = &[];
            return Some(Err(AmrError::Truncated {
                need: n * 8,
                have: tail.len() * 8,
            }));
        };
        self.rest = &tail[n..];
        Some(AmrFrame::from_octets(self.kind, ft, quality, speech))
    }
}

/// Writes one frame in the storage format (header octet and speech octets); returns the
/// length. The file starts with [`STORAGE_MAGIC_NB`] or [`STORAGE_MAGIC_WB`].
pub fn write_storage_frame(frame: &AmrFrame<'_>, out: &mut [u8]) -> Result<usize, AmrError> {
    let n = frame.bits.div_ceil(8);
    if out.len() < 1 + n {
        return Err(AmrError::BufferTooSmall {
            need: 1 + n,
            have: out.len(),
        });
    }
    out[0] = (frame.ft << 3) | (u8::from(frame.quality) << 2);
    frame.copy_octets(&mut out[1..])?;
    Ok(1 + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NB_OA: AmrFormat = AmrFormat::octet_aligned(AmrKind::Nb);
    const NB_BE: AmrFormat = AmrFormat::bandwidth_efficient(AmrKind::Nb);
    const WB_OA: AmrFormat = AmrFormat::octet_aligned(AmrKind::Wb);
    const WB_BE: AmrFormat = AmrFormat::bandwidth_efficient(AmrKind::Wb);

    #[test]
    fn frame_sizes() {
        // MR122: 244 bits, 31 octets: the 1 + 1 + 31 of a one-frame octet-aligned payload.
        assert_eq!(frame_bits(AmrKind::Nb, 7), Some(244));
        assert_eq!(frame_octets(AmrKind::Nb, 7), Some(31));
        assert_eq!(frame_octets(AmrKind::Nb, 0), Some(12));
        assert_eq!(frame_bits(AmrKind::Nb, 8), Some(39));
        assert_eq!(frame_bits(AmrKind::Nb, 15), Some(0));
        for ft in 9..=14 {
            assert_eq!(frame_bits(AmrKind::Nb, ft), None, "{ft}");
        }
        assert_eq!(frame_bits(AmrKind::Wb, 8), Some(477));
        assert_eq!(frame_octets(AmrKind::Wb, 8), Some(60));
        assert_eq!(frame_bits(AmrKind::Wb, 9), Some(40));
        assert_eq!(frame_bits(AmrKind::Wb, 14), Some(0));
        assert_eq!(frame_bits(AmrKind::Wb, 15), Some(0));
        for ft in 10..=13 {
            assert_eq!(frame_bits(AmrKind::Wb, ft), None, "{ft}");
        }
        assert_eq!(frame_bits(AmrKind::Wb, 16), None);
        // Bit rates: bits per 20 ms frame times 50.
        assert_eq!(
            NB_BITS[..8]
                .iter()
                .map(|b| u32::from(*b) * 50)
                .collect::<Vec<_>>(),
            [4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200]
        );
        assert_eq!(
            WB_BITS[..9]
                .iter()
                .map(|b| u32::from(*b) * 50)
                .collect::<Vec<_>>(),
            [6600, 8850, 12650, 14250, 15850, 18250, 19850, 23050, 23850]
        );
    }

    #[test]
    fn mr122_headers_in_both_formats() {
        // CMR 15, one frame FT 7 Q 1. Octet-aligned: 1111 0000 | 0 0111 1 00 = F0 3C.
        // Bandwidth-efficient: 1111 | 0 0111 1 | speech… = F3 then "11" + first 6 speech bits.
        let speech = [0xA5u8; 31]; // 244 bits are 30.5 octets: the last nibble is padding
        let mut speech = speech;
        speech[30] = 0xA0;
        let f = AmrFrame::from_octets(AmrKind::Nb, 7, true, &speech).unwrap();
        let mut oa = [0u8; 64];
        let n = pack(NB_OA, CMR_NONE, [f], &mut oa).unwrap();
        assert_eq!(n, 33);
        assert_eq!(&oa[..2], [0xF0, 0x3C]);
        assert_eq!(&oa[2..33], &speech);
        let mut be = [0u8; 64];
        let m = pack(NB_BE, CMR_NONE, [f], &mut be).unwrap();
        // 4 + 6 + 244 = 254 bits: 32 octets, 2 padding bits.
        assert_eq!(m, 32);
        // Speech A5 = 1010 0101 shifted right by 2 bits after "11".
        assert_eq!(&be[..4], [0xF3, 0xE9, 0x69, 0x69]);
        assert_eq!(be[31] & 0x03, 0);

        let p = AmrPayload::parse(NB_OA, &oa[..n]).unwrap();
        let mut back = [0u8; 64];
        assert_eq!(p.write(NB_BE, p.cmr(), &mut back), Ok(32));
        assert_eq!(&back[..32], &be[..32]);
        let q = AmrPayload::parse(NB_BE, &be[..m]).unwrap();
        assert_eq!(q.write(NB_OA, 15, &mut back), Ok(33));
        assert_eq!(&back[..33], &oa[..33]);
        let fr = q.frames().next().unwrap();
        assert_eq!(
            (fr.frame_type(), fr.quality(), fr.bit_len()),
            (7, true, 244)
        );
        assert_eq!(fr.aligned_octets(), None);
        let mut octets = [0u8; 31];
        assert_eq!(fr.copy_octets(&mut octets), Ok(31));
        assert_eq!(octets, speech);
        assert_eq!(
            p.frames().next().unwrap().aligned_octets(),
            Some(&speech[..])
        );
    }

    #[test]
    fn sid_vector_worked_by_hand() {
        // AMR-NB SID (FT 8, 39 bits, all ones), CMR 15, Q 1.
        // BE: 1111 010001 + 39 ones + 7 zero bits = F4 7F FF FF FF FF 80.
        // OA: F0, 0 1000 1 00 = 44, then 39 ones and one padding zero = FF FF FF FF FE.
        let sid = [0xFF, 0xFF, 0xFF, 0xFF, 0xFE];
        let f = AmrFrame::from_octets(AmrKind::Nb, 8, true, &sid).unwrap();
        let mut out = [0u8; 16];
        let n = pack(NB_BE, 15, [f], &mut out).unwrap();
        assert_eq!(&out[..n], [0xF4, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0x80]);
        let n = pack(NB_OA, 15, [f], &mut out).unwrap();
        assert_eq!(&out[..n], [0xF0, 0x44, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
    }

    #[test]
    fn several_frames_with_cmr_and_no_data() {
        // CMR 5; MR475 (95 bits, Q 1), NO_DATA, MR475 with Q 0 (damaged).
        // BE ToC: 1 0000 1 | 1 1111 1 | 0 0000 0.
        let a = [0x81u8; 12];
        let mut a = a;
        a[11] = 0x80; // 95 bits: the last bit of octet 12 is padding
        let frames = [
            AmrFrame::from_octets(AmrKind::Nb, 0, true, &a).unwrap(),
            AmrFrame::no_data(AmrKind::Nb),
            AmrFrame::from_octets(AmrKind::Nb, 0, false, &a).unwrap(),
        ];
        let mut be = [0u8; 64];
        let n = pack(NB_BE, 5, frames, &mut be).unwrap();
        assert_eq!(n, (4 + 18 + 190usize).div_ceil(8));
        // 0101 100001 111111 000000 → 0101 1000 | 0111 1111 | 0000 00..
        assert_eq!(&be[..2], [0x58, 0x7F]);
        assert_eq!(be[2] & 0xFC, 0);
        let p = AmrPayload::parse(NB_BE, &be[..n]).unwrap();
        assert_eq!((p.cmr(), p.len()), (5, 3));
        let got: Vec<_> = p
            .frames()
            .map(|f| (f.frame_type(), f.quality(), f.bit_len()))
            .collect();
        assert_eq!(got, [(0, true, 95), (15, true, 0), (0, false, 95)]);
        let mut oa = [0u8; 64];
        let m = p.write(NB_OA, 5, &mut oa).unwrap();
        assert_eq!(m, 1 + 3 + 12 + 12);
        assert_eq!(&oa[..4], [0x50, 0x84, 0xFC, 0x00]);
        assert_eq!(&oa[4..16], &a);
        assert_eq!(&oa[16..28], &a);
    }

    #[test]
    fn typed_errors_for_malformed_payloads() {
        assert_eq!(AmrPayload::parse(NB_OA, &[]), Err(AmrError::Empty));
        // CMR 8 is no AMR-NB mode: kept, ignored as a request, the frames still good (and
        // a mode for WB).
        let reserved = AmrPayload::parse(NB_OA, &[0x80, 0x7C]).unwrap();
        assert_eq!(
            (reserved.cmr(), reserved.mode_request(), reserved.len()),
            (8, None, 1)
        );
        assert_eq!(
            AmrPayload::parse(NB_OA, &[0xF0, 0x7C])
                .unwrap()
                .mode_request(),
            None
        );
        assert_eq!(
            AmrPayload::parse(NB_OA, &[0x70, 0x7C])
                .unwrap()
                .mode_request(),
            Some(7)
        );
        assert_eq!(
            AmrPayload::parse(WB_OA, &[0x80, 0x7C]).map(|p| p.mode_request()),
            Ok(Some(8))
        );
        assert_eq!(
            AmrPayload::parse(WB_OA, &[0x80, 0x7C]).map(|p| p.len()),
            Ok(1)
        );
        // ToC never ends.
        assert_eq!(
            AmrPayload::parse(NB_OA, &[0xF0, 0xFC, 0xFC]),
            Err(AmrError::TocTruncated { entries: 2 })
        );
        assert_eq!(
            AmrPayload::parse(NB_OA, &[0xF0]),
            Err(AmrError::TocTruncated { entries: 0 })
        );
        // Reserved frame types.
        assert_eq!(
            AmrPayload::parse(NB_OA, &[0xF0, 0x4C]),
            Err(AmrError::FrameType { index: 0, ft: 9 })
        );
        assert_eq!(
            AmrPayload::parse(WB_OA, &[0xF0, 0xFC, 0x54]),
            Err(AmrError::FrameType { index: 1, ft: 10 })
        );
        // MR122 header without its 31 octets.
        let mut short = vec![0xF0, 0x3C];
        short.extend_from_slice(&[0; 30]);
        assert_eq!(
            AmrPayload::parse(NB_OA, &short),
            Err(AmrError::Truncated {
                need: 16 + 248,
                have: 256
            })
        );
        short.extend_from_slice(&[0; 2]);
        assert_eq!(AmrPayload::parse(NB_OA, &short), Err(AmrError::Trailing(1)));
        // Bandwidth-efficient: NO_DATA alone is 10 bits, 2 octets; a third is trailing.
        assert_eq!(
            AmrPayload::parse(NB_BE, &[0xF7, 0xC0]).map(|p| p.len()),
            Ok(1)
        );
        assert_eq!(
            AmrPayload::parse(NB_BE, &[0xF7, 0xC0, 0]),
            Err(AmrError::Trailing(1))
        );
        // The same two octets as MR122 (FT 7) lack 242 speech bits.
        assert_eq!(
            AmrPayload::parse(NB_BE, &[0xF3, 0xC0]),
            Err(AmrError::Truncated {
                need: 254,
                have: 16
            })
        );
        assert_eq!(
            AmrPayload::parse(NB_BE, &[0xF7]),
            Err(AmrError::TocTruncated { entries: 0 })
        );

        let a = [0u8; 12];
        let f = AmrFrame::from_octets(AmrKind::Nb, 0, true, &a).unwrap();
        assert_eq!(
            AmrFrame::from_octets(AmrKind::Nb, 0, true, &a[..11]),
            Err(AmrError::SpeechLength {
                ft: 0,
                need: 12,
                got: 11
            })
        );
        assert_eq!(
            AmrFrame::from_octets(AmrKind::Nb, 12, true, &a),
            Err(AmrError::FrameType { index: 0, ft: 12 })
        );
        let none: [AmrFrame<'_>; 0] = [];
        assert_eq!(pack(NB_OA, 15, none, &mut [0; 8]), Err(AmrError::NoFrames));
        assert_eq!(pack(NB_OA, 9, [f], &mut [0; 64]), Err(AmrError::Cmr(9)));
        assert_eq!(
            pack(WB_OA, 15, [f], &mut [0; 64]),
            Err(AmrError::KindMismatch {
                format: AmrKind::Wb,
                frame: AmrKind::Nb
            })
        );
        assert_eq!(
            pack(NB_OA, 15, [f], &mut [0; 13]),
            Err(AmrError::BufferTooSmall { need: 14, have: 13 })
        );
    }

    #[test]
    fn format_from_sdp_params() {
        let p = |s: &str| AmrParams::parse(s, AmrKind::Nb).unwrap();
        assert_eq!(AmrFormat::from_params(AmrKind::Nb, &p("")), Ok(NB_BE));
        assert_eq!(
            AmrFormat::from_params(AmrKind::Nb, &p("octet-align=1;mode-change-capability=2")),
            Ok(NB_OA)
        );
        for s in [
            "octet-align=1;crc=1",
            "octet-align=1;interleaving=4",
            "octet-align=1;robust-sorting=1",
            "channels=2",
        ] {
            assert!(
                matches!(
                    AmrFormat::from_params(AmrKind::Nb, &p(s)),
                    Err(AmrError::Unsupported(_))
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn storage_file() {
        let mut file = STORAGE_MAGIC_NB.to_vec();
        let speech = [0x3Cu8; 31];
        let mut speech = speech;
        speech[30] = 0x30;
        let f = AmrFrame::from_octets(AmrKind::Nb, 7, true, &speech).unwrap();
        let mut buf = [0u8; 64];
        let n = write_storage_frame(&f, &mut buf).unwrap();
        assert_eq!((n, buf[0]), (32, 0x3C));
        file.extend_from_slice(&buf[..n]);
        file.push(0x7C); // NO_DATA
        let frames = StorageFrames::parse(&file).unwrap();
        assert_eq!(frames.kind(), AmrKind::Nb);
        let got: Vec<_> = frames.collect::<Result<_, _>>().unwrap();
        assert_eq!(got, [f, AmrFrame::no_data(AmrKind::Nb)]);
        file.push(0x3C);
        let last = StorageFrames::parse(&file).unwrap().last().unwrap();
        assert!(matches!(last, Err(AmrError::Truncated { .. })));
        assert_eq!(
            StorageFrames::parse(b"#!AMR-WB\n").map(|s| s.kind()),
            Ok(AmrKind::Wb)
        );
        assert!(matches!(
            StorageFrames::parse(b"RIFF"),
            Err(AmrError::Magic)
        ));
    }

    fn frame_strategy(kind: AmrKind) -> impl Strategy<Value = (u8, bool, Vec<u8>)> {
        let types: Vec<u8> = (0..16)
            .filter(|&ft| frame_bits(kind, ft).is_some())
            .collect();
        (
            proptest::sample::select(types),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 61),
        )
            .prop_map(move |(ft, q, mut bytes)| {
                let bits = frame_bits(kind, ft).unwrap_or(0);
                bytes.truncate(bits.div_ceil(8));
                if bits % 8 != 0 {
                    if let Some(last) = bytes.last_mut() {
                        *last &= 0xFFu8 << (8 - bits % 8);
                    }
                }
                (ft, q, bytes)
            })
    }

    fn round_trip(
        kind: AmrKind,
        cmr: u8,
        raw: &[(u8, bool, Vec<u8>)],
    ) -> Result<(), TestCaseError> {
        let frames: Vec<AmrFrame<'_>> = raw
            .iter()
            .map(|(ft, q, b)| AmrFrame::from_octets(kind, *ft, *q, b).unwrap())
            .collect();
        let oa_fmt = AmrFormat::octet_aligned(kind);
        let be_fmt = AmrFormat::bandwidth_efficient(kind);
        let mut oa = [0u8; 1024];
        let mut be = [0u8; 1024];
        let mut again = [0u8; 1024];
        let n = pack(oa_fmt, cmr, frames.iter().copied(), &mut oa).unwrap();
        let m = pack(be_fmt, cmr, frames.iter().copied(), &mut be).unwrap();
        prop_assert!(m <= n);
        let p = AmrPayload::parse(oa_fmt, &oa[..n]).unwrap();
        let q = AmrPayload::parse(be_fmt, &be[..m]).unwrap();
        prop_assert_eq!(p.cmr(), cmr);
        prop_assert_eq!(q.cmr(), cmr);
        for (f, (a, b)) in frames.iter().zip(p.frames().zip(q.frames())) {
            let mut x = [0u8; 64];
            let mut y = [0u8; 64];
            let k = a.copy_octets(&mut x).unwrap();
            b.copy_octets(&mut y).unwrap();
            prop_assert_eq!((a.frame_type(), a.quality()), (f.frame_type(), f.quality()));
            prop_assert_eq!((b.frame_type(), b.quality()), (f.frame_type(), f.quality()));
            prop_assert_eq!(&x[..k], f.aligned_octets().unwrap());
            prop_assert_eq!(&y[..k], f.aligned_octets().unwrap());
        }
        // Converting each way gives exactly what packing directly gave.
        let k = q.write(oa_fmt, cmr, &mut again).unwrap();
        prop_assert_eq!(&again[..k], &oa[..n]);
        let k = p.write(be_fmt, cmr, &mut again).unwrap();
        prop_assert_eq!(&again[..k], &be[..m]);
        Ok(())
    }

    proptest! {
        #[test]
        fn nb_round_trips(cmr in prop_oneof![0u8..8, Just(15u8)], raw in proptest::collection::vec(frame_strategy(AmrKind::Nb), 1..6)) {
            round_trip(AmrKind::Nb, cmr, &raw)?;
        }

        #[test]
        fn wb_round_trips(cmr in prop_oneof![0u8..9, Just(15u8)], raw in proptest::collection::vec(frame_strategy(AmrKind::Wb), 1..6)) {
            round_trip(AmrKind::Wb, cmr, &raw)?;
        }

        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            for fmt in [NB_OA, NB_BE, WB_OA, WB_BE] {
                if let Ok(p) = AmrPayload::parse(fmt, &b) {
                    prop_assert_eq!(p.frames().count(), p.len());
                    let mut out = [0u8; 128];
                    for to in [NB_OA, NB_BE, WB_OA, WB_BE] {
                        if to.kind == fmt.kind {
                            let cmr = p.mode_request().unwrap_or(CMR_NONE);
                            let n = p.write(to, cmr, &mut out).unwrap();
                            let back = AmrPayload::parse(to, &out[..n]).unwrap();
                            prop_assert_eq!(back.len(), p.len());
                        }
                    }
                }
            }
            let mut file = STORAGE_MAGIC_NB.to_vec();
            file.extend_from_slice(&b);
            for f in StorageFrames::parse(&file).unwrap() {
                let _ = f;
            }
        }
    }
}
