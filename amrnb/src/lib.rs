//! SCRATCH lib.rs of the encoder branch; replaced by the amrdec branch's crate root on merge.

pub mod enc;

/// AMR-NB speech modes (TS 26.090 §4), in frame-type order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Mode {
    MR475,
    MR515,
    MR59,
    MR67,
    MR74,
    MR795,
    MR102,
    MR122,
}
