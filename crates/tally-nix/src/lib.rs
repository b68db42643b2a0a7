//! Tally's Nix integration.
//!
//! This crate owns what Tally knows about Nix itself: reading derivations, querying the
//! local store, the post-build [`hook`], binary cache [`narinfo`] files and their
//! signatures, and writing small [`nar`]s. Nix's formats that other crates verify (store
//! paths, NAR hashes, nixbase32) are in `tally-core`.
//!
//! It must never fail or stall a Nix build: the hook works within a time budget and falls
//! back to the spool.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod derivation;
pub mod hook;
pub mod nar;
pub mod narinfo;
pub mod store;
