//! Tally's pure core: the formats and the math that every other crate builds on.
//!
//! This crate owns Nix's names for things ([`StorePath`], [`NarHash`], [`nixbase32`]), the log
//! leaf ([`Attestation`]), the RFC 6962 Merkle log ([`tlog`]), the sparse Merkle map ([`map`]),
//! keys, signed notes and [`Checkpoint`]s, and what is decided from them: trust [`policy`]
//! verdicts and [`report`] classes. Each type is built only from valid input, so a
//! value in hand is a value that can be trusted to be well-formed.
//!
//! It must never do I/O, spawn threads, or depend on an async runtime: storage reaches it
//! through the [`tlog::HashReader`] and [`map::MapNodeReader`] traits, so the same code runs in
//! the log daemon, the aggregator and an offline verifier.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod answer;
pub mod attestation;
pub mod backoff;
mod base64_serde;
pub mod bearer;
pub mod checkpoint;
pub mod cosignature;
pub mod decision;
pub mod evidence;
pub mod hash;
pub mod index;
pub mod keys;
pub mod map;
pub mod nar_hash;
pub mod nixbase32;
pub mod note;
pub mod policy;
pub mod replay;
pub mod report;
pub mod sample;
pub mod store_path;
#[cfg(test)]
pub(crate) mod test_log;
pub mod tiles;
pub mod tlog;
pub mod tlog_proof;
pub mod trust;
pub mod witness;

pub use attestation::{Attestation, AttestationError, AttestationFields};
pub use checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint, UnverifiedCheckpoint};
pub use hash::Hash;
pub use keys::{KeyError, KeyName, SigningKey, VerifyingKey};
pub use nar_hash::{NarHash, NarHashError};
pub use note::{Note, NoteError};
pub use store_path::{StorePath, StorePathError, StorePathHash};
pub use tlog::TreeHead;

/// Any error from this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store path is invalid.
    #[error(transparent)]
    StorePath(#[from] StorePathError),
    /// A NAR hash is invalid.
    #[error(transparent)]
    NarHash(#[from] NarHashError),
    /// An attestation is invalid or not canonical.
    #[error(transparent)]
    Attestation(#[from] AttestationError),
    /// A key or key name is invalid.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A signed note is malformed or does not verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A checkpoint is malformed or does not verify.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A log proof does not verify.
    #[error(transparent)]
    Proof(#[from] tlog::ProofError),
    /// A log's answer about a path does not verify.
    #[error(transparent)]
    Answer(#[from] answer::AnswerError),
    /// A map proof does not verify.
    #[error(transparent)]
    MapProof(#[from] map::MapProofError),
}

#[cfg(test)]
pub(crate) mod test_vectors {
    use std::path::PathBuf;

    /// A file of `../shared/testvectors`, which CI keeps beside the checkout, or of
    /// `$TALLY_TESTVECTORS`.
    pub(crate) fn path(name: &str) -> PathBuf {
        let dir = std::env::var_os("TALLY_TESTVECTORS").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testvectors"),
            PathBuf::from,
        );
        dir.join(name)
    }
}
