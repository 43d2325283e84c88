//! Constant tables of the AMR-NB codec (3GPP TS 26.090 / TS 26.073 / TS 26.101 Annex B), shared
//! by the decoder and the encoder. Values keep the reference's fixed-point formats; each table
//! says its Q format, and the DSP code converts them to floating point where it uses them.

pub mod algebraic;
pub mod bitorder;
pub mod filters;
pub mod gains;
pub mod lsf;
pub mod math;
