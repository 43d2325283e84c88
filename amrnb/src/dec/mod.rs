//! AMR-NB decoder (TS 26.090 §6).

/// The AMR-NB decoder state of one direction of a call.
#[derive(Debug, Clone)]
pub struct Decoder {}
