//! Checks every codec backend must pass, shared by the tests of each (and by the cross-backend
//! tests: encoder of one backend, decoder of the other). Built for this crate's tests and with
//! the cargo feature `testing`.
//!
//! The functions panic with a message naming the frame on any broken promise of the
//! [`Encoder`] / [`Decoder`] contract, so a test just calls them and asserts on the result.

use sdp::AmrKind;

use super::{frame_samples, Decoder, Encoder, MAX_FRAME_OCTETS};
use crate::amr::{
    frame_octets, pack, sid_frame_type, AmrFormat, AmrFrame, AmrPayload, CMR_NONE, FT_NO_DATA,
};
use crate::tone::{goertzel_dbfs, measure, rms_dbfs, ToneGenerator, ToneMeasurement};

/// Frequency of the test tone, both codecs.
pub const TONE_HZ: f64 = 1000.0;
/// Level of the test tone.
pub const TONE_DBFS: f64 = -20.0;
/// Frames per check: one second.
pub const FRAMES: usize = 50;
/// Frames of decoded output not measured while the codec's filters and gains settle.
pub const WARM_UP: usize = 10;

/// Sample rate of `kind`: 8000 Hz (AMR-NB) or 16000 Hz (AMR-WB).
pub fn sample_rate(kind: AmrKind) -> u32 {
    match kind {
        AmrKind::Nb => 8000,
        AmrKind::Wb => 16000,
    }
}

/// Sends one frame through an RTP payload of each format (RFC 4867 §4.3 and §4.4) and
/// checks both give back the same frame type, Q bit and speech bits; calls `then` with the
/// frame parsed from the `octet_aligned` (or bandwidth-efficient) payload.
///
/// # Panics
/// When packing or parsing fails or a format changes the frame.
pub fn through_payloads<R>(
    frame: &AmrFrame<'_>,
    octet_aligned: bool,
    then: impl FnOnce(&AmrFrame<'_>) -> R,
) -> R {
    let kind = frame.kind();
    let mut want = [0u8; MAX_FRAME_OCTETS];
    let n = frame.copy_octets(&mut want).expect("frame fits");
    let mut payloads = [[0u8; 2 + MAX_FRAME_OCTETS]; 2];
    let mut lens = [0usize; 2];
    for (i, oa) in [false, true].into_iter().enumerate() {
        let format = AmrFormat {
            kind,
            octet_aligned: oa,
        };
        lens[i] = pack(format, CMR_NONE, [*frame], &mut payloads[i]).expect("pack");
    }
    let parsed = |i: usize| {
        let format = AmrFormat {
            kind,
            octet_aligned: i == 1,
        };
        let p = AmrPayload::parse(format, &payloads[i][..lens[i]]).expect("parse own payload");
        assert_eq!(p.len(), 1);
        p.frames().next().expect("one frame")
    };
    for i in 0..2 {
        let f = parsed(i);
        let mut got = [0u8; MAX_FRAME_OCTETS];
        let m = f.copy_octets(&mut got).expect("frame fits");
        assert_eq!(
            (f.kind(), f.frame_type(), f.quality()),
            (kind, frame.frame_type(), frame.quality()),
            "octet-aligned {}",
            i == 1
        );
        assert_eq!(&got[..m], &want[..n], "octet-aligned {}", i == 1);
    }
    then(&parsed(usize::from(octet_aligned)))
}

/// Encodes [`FRAMES`] frames of a [`TONE_HZ`] tone at [`TONE_DBFS`] at `mode`, sends each
/// through both payload formats ([`through_payloads`]), decodes the one in the
/// `octet_aligned` format, and measures the decoded tone after [`WARM_UP`] frames.
///
/// # Panics
/// When the codecs are of different kinds, a call fails, or a frame's type or length is
/// not the mode's ([`frame_octets`]).
pub fn tone_roundtrip(
    enc: &mut dyn Encoder,
    dec: &mut dyn Decoder,
    mode: u8,
    octet_aligned: bool,
) -> ToneMeasurement {
    tone_with_modes(enc, dec, octet_aligned, |_| mode)
}

/// [`tone_roundtrip`] with the mode changing every 5 frames through all modes of the codec,
/// as an encoder obeying the far end's codec mode requests (RFC 4867 §4.3.1) does.
///
/// # Panics
/// As [`tone_roundtrip`].
pub fn tone_switching_modes(
    enc: &mut dyn Encoder,
    dec: &mut dyn Decoder,
    octet_aligned: bool,
) -> ToneMeasurement {
    let modes = enc.kind().max_mode() + 1;
    tone_with_modes(enc, dec, octet_aligned, |i| {
        (i / 5 % usize::from(modes)) as u8
    })
}

fn tone_with_modes(
    enc: &mut dyn Encoder,
    dec: &mut dyn Decoder,
    octet_aligned: bool,
    mode_of: impl Fn(usize) -> u8,
) -> ToneMeasurement {
    let kind = enc.kind();
    assert_eq!(dec.kind(), kind, "encoder and decoder of different codecs");
    let n = frame_samples(kind);
    let rate = sample_rate(kind);
    let mut tone = ToneGenerator::new(TONE_HZ, TONE_DBFS, rate).expect("valid tone");
    let mut pcm = vec![0i16; n];
    let mut decoded = vec![0i16; n * FRAMES];
    let mut speech = [0u8; MAX_FRAME_OCTETS];
    for (i, out) in decoded.chunks_mut(n).enumerate() {
        let mode = mode_of(i);
        tone.fill(&mut pcm);
        let e = enc
            .encode(&pcm, mode, &mut speech)
            .unwrap_or_else(|err| panic!("frame {i}: encode: {err}"));
        assert_eq!(e.frame_type, mode, "frame {i}: frame type");
        assert_eq!(Some(e.len), frame_octets(kind, mode), "frame {i}: length");
        let frame = AmrFrame::from_octets(kind, e.frame_type, true, &speech[..e.len])
            .unwrap_or_else(|err| panic!("frame {i}: {err}"));
        through_payloads(&frame, octet_aligned, |f| dec.decode(Some(f), out))
            .unwrap_or_else(|err| panic!("frame {i}: decode: {err}"));
    }
    measure(&decoded[n * WARM_UP..], rate).expect("a tone arrived")
}

/// Frame types an encoder with DTX on wrote for silence (see [`dtx_silence`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DtxCounts {
    /// Speech frames (the mode asked for): the hangover before DTX starts.
    pub speech: usize,
    /// SID frames.
    pub sid: usize,
    /// NO_DATA frames.
    pub no_data: usize,
    /// Level of the decoded last second ([`rms_dbfs`]): the comfort noise.
    pub decoded_dbfs: f64,
}

/// Encodes 100 frames (2 s) of digital silence at `mode` with an encoder made with DTX on,
/// checks each frame is speech of `mode`, SID or NO_DATA with the length
/// [`frame_octets`] gives, decodes them all (through both payload formats) and counts them.
///
/// # Panics
/// When a call fails or a frame type or length is wrong.
pub fn dtx_silence(enc: &mut dyn Encoder, dec: &mut dyn Decoder, mode: u8) -> DtxCounts {
    let kind = enc.kind();
    assert_eq!(dec.kind(), kind, "encoder and decoder of different codecs");
    let n = frame_samples(kind);
    let silence = vec![0i16; n];
    let mut decoded = vec![0i16; n * 100];
    let mut speech = [0u8; MAX_FRAME_OCTETS];
    let mut counts = DtxCounts::default();
    for (i, out) in decoded.chunks_mut(n).enumerate() {
        let e = enc
            .encode(&silence, mode, &mut speech)
            .unwrap_or_else(|err| panic!("frame {i}: encode: {err}"));
        match e.frame_type {
            ft if ft == mode => counts.speech += 1,
            ft if ft == sid_frame_type(kind) => counts.sid += 1,
            FT_NO_DATA => counts.no_data += 1,
            ft => panic!("frame {i}: frame type {ft} in DTX at mode {mode}"),
        }
        assert_eq!(
            Some(e.len),
            frame_octets(kind, e.frame_type),
            "frame {i}: length"
        );
        let frame = AmrFrame::from_octets(kind, e.frame_type, true, &speech[..e.len])
            .unwrap_or_else(|err| panic!("frame {i}: {err}"));
        through_payloads(&frame, i % 2 == 0, |f| dec.decode(Some(f), out))
            .unwrap_or_else(|err| panic!("frame {i}: decode: {err}"));
    }
    counts.decoded_dbfs = rms_dbfs(&decoded[n * 50..]);
    counts
}

/// What arrived of the tone in [`lost_and_damaged`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Concealed {
    /// Level of the tone's frequency ([`goertzel_dbfs`]) in the decoded signal.
    pub tone_dbfs: f64,
    /// Level of the whole decoded signal ([`rms_dbfs`]): close to `tone_dbfs` when the
    /// concealment kept the tone rather than making noise.
    pub rms_dbfs: f64,
    /// Frames where a damaged (Q = 0) frame decoded differently from the same frame with
    /// Q = 1 in a second decoder fed the same stream: the decoder did not trust it.
    pub damaged_differs: usize,
    /// Damaged frames sent.
    pub damaged: usize,
}

/// Like [`tone_roundtrip`] (bandwidth-efficient payloads), but every 12th frame is lost
/// (`None`) and every 12th, six later, arrives with Q = 0. `dec` gets that stream; `reference` gets the
/// same but with Q = 1 on the damaged frames, to show the Q bit reached the decoder.
/// Measures the tone in `dec`'s output after [`WARM_UP`] frames.
///
/// # Panics
/// When a call fails.
pub fn lost_and_damaged(
    enc: &mut dyn Encoder,
    dec: &mut dyn Decoder,
    reference: &mut dyn Decoder,
    mode: u8,
) -> Concealed {
    let kind = enc.kind();
    assert_eq!(dec.kind(), kind, "encoder and decoder of different codecs");
    let n = frame_samples(kind);
    let rate = sample_rate(kind);
    let mut tone = ToneGenerator::new(TONE_HZ, TONE_DBFS, rate).expect("valid tone");
    let mut pcm = vec![0i16; n];
    let mut decoded = vec![0i16; n * FRAMES];
    let mut good = vec![0i16; n];
    let mut speech = [0u8; MAX_FRAME_OCTETS];
    let (mut damaged, mut damaged_differs) = (0, 0);
    for (i, out) in decoded.chunks_mut(n).enumerate() {
        tone.fill(&mut pcm);
        let e = enc
            .encode(&pcm, mode, &mut speech)
            .unwrap_or_else(|err| panic!("frame {i}: encode: {err}"));
        let quality = i % 12 != 11;
        let frame = AmrFrame::from_octets(kind, e.frame_type, quality, &speech[..e.len])
            .unwrap_or_else(|err| panic!("frame {i}: {err}"));
        let intact = AmrFrame::from_octets(kind, e.frame_type, true, &speech[..e.len])
            .unwrap_or_else(|err| panic!("frame {i}: {err}"));
        let r = if i % 12 == 5 {
            dec.decode(None, out)
                .and_then(|()| reference.decode(None, &mut good))
        } else {
            through_payloads(&frame, false, |f| dec.decode(Some(f), out))
                .and_then(|()| reference.decode(Some(&intact), &mut good))
        };
        r.unwrap_or_else(|err| panic!("frame {i}: decode: {err}"));
        if !quality {
            damaged += 1;
            damaged_differs += usize::from(out != good.as_slice());
        }
    }
    let tail = &decoded[n * WARM_UP..];
    Concealed {
        tone_dbfs: goertzel_dbfs(tail, rate, TONE_HZ),
        rms_dbfs: rms_dbfs(tail),
        damaged_differs,
        damaged,
    }
}
