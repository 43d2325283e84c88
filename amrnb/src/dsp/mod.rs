//! Signal processing shared by the decoder and the encoder, in `f32`.
//!
//! Conventions: an LP filter is `A(z) = a[0] + a[1] z^-1 + … + a[10] z^-10` with `a[0] = 1`
//! (TS 26.090 §5.2: the synthesis filter is 1/A(z)); LSPs are cosines of the line spectral
//! frequencies (−1..1); LSFs are kept in the tables' unit, Q15 normalised frequency where
//! 16384.0 is 4 kHz (half the sampling rate), so table values are used unscaled.

pub mod filter;
pub mod gain;
pub mod lsfq;
pub mod lsp;
pub mod pitch;

/// Coefficients of an order-10 LP filter, `a[0] = 1`.
pub type Lpc = [f32; crate::LPC_ORDER + 1];
