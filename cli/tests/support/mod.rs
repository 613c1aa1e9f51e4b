//! A real deployment for end-to-end tests (the `ringpush-harness` crate), and devices on
//! the SDK.

#![allow(dead_code)]

pub use ringpush_harness::*;

pub mod audiences;
pub mod campaigns;
pub mod devices;

/// The `ringpush` binary cargo built for these tests (the harness finds the same one).
pub fn ringpush_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringpush")
}
