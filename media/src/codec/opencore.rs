//! The [`Backend::Opencore`](super::Backend::Opencore) codecs: Debian's `libopencore-amrnb`
//! (AMR-NB encoder and decoder), `libopencore-amrwb` (AMR-WB decoder) and `libvo-amrwbenc`
//! (AMR-WB encoder) over FFI, built with the cargo feature `opencore`.
//!
//! All three libraries speak the RFC 4867 §5.3 storage format, one frame per call: a header
//! octet `0 FT(4) Q 0 0` followed by the speech bits MSB first in class A, B, C order, the
//! last octet zero-padded. The trait's frames are that without the header octet, so each
//! codec keeps one fixed scratch buffer holding header and speech: encoding copies the speech
//! octets out of it, decoding writes the header and [`AmrFrame::copy_octets`] into it (which
//! also realigns a bandwidth-efficient frame). Nothing is allocated per frame.
//!
//! How the wrappers treat bad frames (opencore-amr 0.1.x `amrnb/wrapper.cpp`,
//! `amrwb/wrapper.c`), which decides what [`Decoder::decode`] passes for a lost or damaged
//! frame:
//! - AMR-NB `Decoder_Interface_Decode` ignores the header's Q bit; `bfi != 0` replaces the
//!   frame type with NO_DATA, which the decoder conceals as a bad frame during speech
//!   (TS 26.091) and as a continued comfort-noise frame during DTX. Lost frames and frames
//!   with Q = 0 go that way.
//! - AMR-WB `D_IF_decode` also ignores Q and maps `bfi != 0` to NO_DATA; frame type 14
//!   (SPEECH_LOST, RFC 4867 §4.3.2) is the explicit "speech frame lost" the decoder conceals
//!   (TS 26.191). A lost frame and a damaged speech frame are sent as FT 14; a damaged SID
//!   as NO_DATA, which continues the comfort noise of the last good SID (the wrapper has no
//!   way to mark a SID bad).

use std::ffi::{c_int, c_short, c_uchar, c_void};
use std::ptr::NonNull;

use sdp::AmrKind;

use super::{check_pcm, CodecError, Decoder, Encoded, Encoder, MAX_FRAME_OCTETS};
use crate::amr::{frame_octets, AmrFrame, FT_NO_DATA, FT_SPEECH_LOST};

/// The C interfaces, as in `/usr/include/opencore-amrnb/interf_{enc,dec}.h`,
/// `/usr/include/opencore-amrwb/dec_if.h` and `/usr/include/vo-amrwbenc/enc_if.h`.
mod ffi {
    use std::ffi::{c_int, c_short, c_uchar, c_void};

    #[link(name = "opencore-amrnb")]
    extern "C" {
        pub fn Encoder_Interface_init(dtx: c_int) -> *mut c_void;
        pub fn Encoder_Interface_exit(state: *mut c_void);
        /// `mode` is the C `enum Mode` (MR475 = 0 … MR122 = 7), an `int` in the ABI.
        /// Writes the header octet and the speech; returns the octets written. Despite the
        /// `const`, it may modify `speech` (see design.md): callers pass a copy.
        pub fn Encoder_Interface_Encode(
            state: *mut c_void,
            mode: c_int,
            speech: *const c_short,
            out: *mut c_uchar,
            force_speech: c_int,
        ) -> c_int;
        pub fn Decoder_Interface_init() -> *mut c_void;
        pub fn Decoder_Interface_exit(state: *mut c_void);
        pub fn Decoder_Interface_Decode(
            state: *mut c_void,
            input: *const c_uchar,
            out: *mut c_short,
            bfi: c_int,
        );
    }

    #[link(name = "opencore-amrwb")]
    extern "C" {
        pub fn D_IF_init() -> *mut c_void;
        pub fn D_IF_decode(
            state: *mut c_void,
            bits: *const c_uchar,
            synth: *mut c_short,
            bfi: c_int,
        );
        pub fn D_IF_exit(state: *mut c_void);
    }

    #[link(name = "vo-amrwbenc")]
    extern "C" {
        pub fn E_IF_init() -> *mut c_void;
        /// Writes the header octet and the speech; returns the octets written.
        pub fn E_IF_encode(
            state: *mut c_void,
            mode: c_int,
            speech: *const c_short,
            out: *mut c_uchar,
            dtx: c_int,
        ) -> c_int;
        pub fn E_IF_exit(state: *mut c_void);
    }
}

/// Storage-format frame buffer: the header octet and the longest speech part, plus slack in
/// case a library writes a word past the frame it reports (none is known to).
const STORAGE_LEN: usize = 1 + MAX_FRAME_OCTETS + 7;

/// PCM buffer for the largest frame (AMR-WB, 320 samples).
const MAX_SAMPLES: usize = 320;

/// The storage-format header octet of a frame (RFC 4867 §5.3: `0 FT Q 0 0`).
fn header(ft: u8, quality: bool) -> u8 {
    (ft << 3) | (u8::from(quality) << 2)
}

/// A library state pointer and the function that frees it.
///
/// The owner is the only user of the state (no copies of the pointer escape), so moving it
/// to another thread is sound; it is not `Sync`, calls need `&mut`.
struct Handle {
    state: NonNull<c_void>,
    exit: unsafe extern "C" fn(*mut c_void),
}

impl Handle {
    /// Wraps what an `*_init` returned; null (the library's `malloc` failed) is an error.
    fn new(
        state: *mut c_void,
        exit: unsafe extern "C" fn(*mut c_void),
    ) -> Result<Self, CodecError> {
        NonNull::new(state)
            .map(|state| Handle { state, exit })
            .ok_or(CodecError::Init)
    }

    fn ptr(&mut self) -> *mut c_void {
        self.state.as_ptr()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from the matching `*_init` and is freed once, here.
        unsafe { (self.exit)(self.state.as_ptr()) }
    }
}

// SAFETY: the libraries keep all codec state behind the handle (no globals in the
// opencore-amr 0.1.x and vo-amrwbenc 0.1.x builds Debian ships), and only the owning
// `Handle` holds the pointer, so using it from another thread is the same as from this one.
unsafe impl Send for Handle {}

/// An AMR-NB (`libopencore-amrnb`) or AMR-WB (`libvo-amrwbenc`) encoder.
pub struct OpencoreEncoder {
    kind: AmrKind,
    dtx: bool,
    handle: Handle,
    /// The input copy the library may modify.
    pcm: [i16; MAX_SAMPLES],
    frame: [u8; STORAGE_LEN],
}

impl OpencoreEncoder {
    /// A new encoder; `dtx` turns on discontinuous transmission.
    pub fn new(kind: AmrKind, dtx: bool) -> Result<Self, CodecError> {
        let handle = match kind {
            // SAFETY: plain constructors without preconditions.
            AmrKind::Nb => Handle::new(
                unsafe { ffi::Encoder_Interface_init(c_int::from(dtx)) },
                ffi::Encoder_Interface_exit,
            )?,
            AmrKind::Wb => Handle::new(unsafe { ffi::E_IF_init() }, ffi::E_IF_exit)?,
        };
        Ok(OpencoreEncoder {
            kind,
            dtx,
            handle,
            pcm: [0; MAX_SAMPLES],
            frame: [0; STORAGE_LEN],
        })
    }
}

impl Encoder for OpencoreEncoder {
    fn kind(&self) -> AmrKind {
        self.kind
    }

    fn encode(&mut self, pcm: &[i16], mode: u8, out: &mut [u8]) -> Result<Encoded, CodecError> {
        let kind = self.kind;
        if mode > kind.max_mode() {
            return Err(CodecError::Mode { kind, mode });
        }
        let samples = check_pcm(kind, pcm.len())?;
        if out.len() < MAX_FRAME_OCTETS {
            return Err(CodecError::Buffer {
                need: MAX_FRAME_OCTETS,
                got: out.len(),
            });
        }
        let input = &mut self.pcm[..samples];
        input.copy_from_slice(pcm);
        self.frame = [0; STORAGE_LEN];
        let state = self.handle.ptr();
        // SAFETY: `state` is live; `input` holds the frame_samples(kind) samples the codec
        // reads; `frame` has room for the longest frame of either codec with its header.
        let written = unsafe {
            match kind {
                AmrKind::Nb => ffi::Encoder_Interface_Encode(
                    state,
                    c_int::from(mode),
                    input.as_ptr().cast::<c_short>(),
                    self.frame.as_mut_ptr().cast::<c_uchar>(),
                    0,
                ),
                AmrKind::Wb => ffi::E_IF_encode(
                    state,
                    c_int::from(mode),
                    input.as_ptr().cast::<c_short>(),
                    self.frame.as_mut_ptr().cast::<c_uchar>(),
                    c_int::from(self.dtx),
                ),
            }
        };
        let ft = (self.frame[0] >> 3) & 0x0f;
        // The header says what was written; a frame type outside the codec's, or a length
        // not matching it, would be a library bug: report nothing sent rather than garbage.
        let len = match frame_octets(kind, ft) {
            Some(n) if usize::try_from(written).ok() == Some(1 + n) => n,
            _ => {
                debug_assert!(false, "{kind:?} encoder wrote FT {ft} in {written} octets");
                return Ok(Encoded {
                    frame_type: FT_NO_DATA,
                    len: 0,
                });
            }
        };
        out[..len].copy_from_slice(&self.frame[1..1 + len]);
        Ok(Encoded {
            frame_type: ft,
            len,
        })
    }
}

/// An AMR-NB (`libopencore-amrnb`) or AMR-WB (`libopencore-amrwb`) decoder.
pub struct OpencoreDecoder {
    kind: AmrKind,
    handle: Handle,
    frame: [u8; STORAGE_LEN],
}

impl OpencoreDecoder {
    /// A new decoder.
    pub fn new(kind: AmrKind) -> Result<Self, CodecError> {
        let handle = match kind {
            // SAFETY: plain constructors without preconditions.
            AmrKind::Nb => Handle::new(
                unsafe { ffi::Decoder_Interface_init() },
                ffi::Decoder_Interface_exit,
            )?,
            AmrKind::Wb => Handle::new(unsafe { ffi::D_IF_init() }, ffi::D_IF_exit)?,
        };
        Ok(OpencoreDecoder {
            kind,
            handle,
            frame: [0; STORAGE_LEN],
        })
    }

    /// Fills the storage-format buffer for `frame`; returns the `bfi` argument.
    fn prepare(&mut self, frame: Option<&AmrFrame<'_>>) -> Result<c_int, CodecError> {
        let kind = self.kind;
        self.frame = [0; STORAGE_LEN];
        let Some(f) = frame else {
            return Ok(match kind {
                // NO_DATA with bfi: the wrapper's bad-frame path.
                AmrKind::Nb => {
                    self.frame[0] = header(FT_NO_DATA, true);
                    1
                }
                AmrKind::Wb => {
                    self.frame[0] = header(FT_SPEECH_LOST, true);
                    0
                }
            });
        };
        if f.kind() != kind {
            return Err(CodecError::Kind {
                want: kind,
                got: f.kind(),
            });
        }
        if !f.quality() {
            return Ok(match kind {
                AmrKind::Nb => {
                    self.frame[0] = header(FT_NO_DATA, false);
                    1
                }
                AmrKind::Wb if f.is_speech() => {
                    self.frame[0] = header(FT_SPEECH_LOST, false);
                    0
                }
                AmrKind::Wb => {
                    self.frame[0] = header(FT_NO_DATA, false);
                    1
                }
            });
        }
        // A valid AmrFrame has at most MAX_FRAME_OCTETS of speech, so this cannot fail.
        let n = f
            .copy_octets(&mut self.frame[1..])
            .map_err(|_| CodecError::Buffer {
                need: f.bit_len().div_ceil(8),
                got: STORAGE_LEN - 1,
            })?;
        debug_assert!(n <= MAX_FRAME_OCTETS);
        self.frame[0] = header(f.frame_type(), true);
        Ok(0)
    }
}

impl Decoder for OpencoreDecoder {
    fn kind(&self) -> AmrKind {
        self.kind
    }

    fn decode(&mut self, frame: Option<&AmrFrame<'_>>, pcm: &mut [i16]) -> Result<(), CodecError> {
        check_pcm(self.kind, pcm.len())?;
        let bfi = self.prepare(frame)?;
        let state = self.handle.ptr();
        // SAFETY: `state` is live; `frame` holds a header and the speech octets its frame
        // type announces (the libraries read no more); `pcm` has the frame_samples(kind)
        // samples the decoder writes.
        unsafe {
            match self.kind {
                AmrKind::Nb => ffi::Decoder_Interface_Decode(
                    state,
                    self.frame.as_ptr().cast::<c_uchar>(),
                    pcm.as_mut_ptr().cast::<c_short>(),
                    bfi,
                ),
                AmrKind::Wb => ffi::D_IF_decode(
                    state,
                    self.frame.as_ptr().cast::<c_uchar>(),
                    pcm.as_mut_ptr().cast::<c_short>(),
                    bfi,
                ),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_octets() {
        // MR122 good: 0 0111 1 00 = 0x3C; NO_DATA good: 0x7C; WB SPEECH_LOST bad: 0x70.
        assert_eq!(header(7, true), 0x3C);
        assert_eq!(header(FT_NO_DATA, true), 0x7C);
        assert_eq!(header(FT_SPEECH_LOST, false), 0x70);
    }

    #[test]
    fn rejects_bad_arguments() {
        let mut enc = OpencoreEncoder::new(AmrKind::Nb, false).unwrap();
        let mut out = [0u8; MAX_FRAME_OCTETS];
        assert_eq!(
            enc.encode(&[0; 160], 8, &mut out),
            Err(CodecError::Mode {
                kind: AmrKind::Nb,
                mode: 8
            })
        );
        assert_eq!(
            enc.encode(&[0; 320], 7, &mut out),
            Err(CodecError::Buffer {
                need: 160,
                got: 320
            })
        );
        assert_eq!(
            enc.encode(&[0; 160], 7, &mut out[..31]),
            Err(CodecError::Buffer {
                need: MAX_FRAME_OCTETS,
                got: 31
            })
        );
        let mut dec = OpencoreDecoder::new(AmrKind::Nb).unwrap();
        let wb = AmrFrame::no_data(AmrKind::Wb);
        assert_eq!(
            dec.decode(Some(&wb), &mut [0; 160]),
            Err(CodecError::Kind {
                want: AmrKind::Nb,
                got: AmrKind::Wb
            })
        );
        assert_eq!(
            dec.decode(None, &mut [0; 161]),
            Err(CodecError::Buffer {
                need: 160,
                got: 161
            })
        );
    }
}
