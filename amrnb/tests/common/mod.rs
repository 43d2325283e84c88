//! libopencore-amrnb's C interface (Debian's package of the TS 26.073 reference code), one
//! declaration for the gold tests and the bench. Frames are in the storage format: one
//! header octet, then the speech bits in class order.

// Each test binary uses a different part of it.
#![allow(dead_code)]

pub use std::os::raw::{c_int, c_short, c_uchar, c_void};

#[link(name = "opencore-amrnb")]
extern "C" {
    pub fn Encoder_Interface_init(dtx: c_int) -> *mut c_void;
    pub fn Encoder_Interface_exit(state: *mut c_void);
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
