//! AMR-NB encoder (TS 26.090 §5). Written by the encoder helper on top of the shared tables,
//! [`crate::bits`] and [`crate::dsp`].
