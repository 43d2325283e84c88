//! `diameter`: under construction; see ../shared/design.md for what this crate owns.
