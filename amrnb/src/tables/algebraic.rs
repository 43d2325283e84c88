//! Algebraic codebook helper data of TS 26.090 §5.7 (pulse position coding).
//!
//! Normative constant data of 3GPP TS 26.073 (ANSI-C reference of the AMR speech codec,
//! (C) 3GPP Organizational Partners), the tables TS 26.090 describes. The values were taken
//! from the opencore-amr sources (PacketVideo, Apache License 2.0; file common/src/c2_9pf_tab.cpp, common/src/gray_tbl.cpp, enc/src/c2_11pf.cpp, enc/src/c2_9pf.cpp), see
//! amrnb/NOTICE. Only the numbers are used; the code around them is this crate's own.
//! Fixed-point formats are those of the reference (Qn = value / 2^n).

/// Gray code of the 3-bit pulse positions (encoder, 10.2/12.2/7.4/7.95).
#[rustfmt::skip]
pub const GRAY: [i16; 8] = [
    0, 1, 3, 2, 6, 4, 5, 7,
];

/// Inverse Gray code (decoder).
#[rustfmt::skip]
pub const DGRAY: [i16; 8] = [
    0, 1, 3, 2, 5, 6, 4, 7,
];

/// Track start positions of the 2-pulse codebook of 4.75/5.15: [subframe 0..3][track pair 0..1][pulse 0..1].
#[rustfmt::skip]
pub const START_POS_2_9: [i16; 16] = [
    0, 2, 0, 3, 0, 2, 0, 3, 1, 3, 2, 4,
    1, 4, 1, 4,
];

/// Track table of the 4.75/5.15 codebook search, [subframe][position set].
#[rustfmt::skip]
pub const TRACK_TABLE_2_9: [i16; 20] = [
    0, 1, 0, 1, -1, 0, -1, 1, 0, 1, 0, 1,
    0, -1, 1, 0, 1, -1, 0, 1,
];

/// First-pulse tracks of the 5.9 codebook.
#[rustfmt::skip]
pub const START_POS1_2_11: [i16; 2] = [
    1, 3,
];

/// Second-pulse tracks of the 5.9 codebook.
#[rustfmt::skip]
pub const START_POS2_2_11: [i16; 4] = [
    0, 1, 2, 4,
];
