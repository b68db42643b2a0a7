//! Tally's durable local state.
//!
//! This crate owns everything Tally keeps on the local disk:
//! - [`LogStore`]: an attester log (entries, Merkle hashes, map nodes, the latest signed
//!   checkpoint) in one redb file, appended in atomic, durable batches;
//! - [`MirrorStore`]: an aggregator's mirrors of the logs it follows, the evidence it found,
//!   and its witness's cosigned checkpoints;
//! - [`Spool`]: attestations the post-build hook could not deliver yet;
//! - secret files: signing keys and tokens ([`read_secret`], [`read_signing_key`],
//!   [`write_signing_key`]).
//!
//! It must never acknowledge a write before it is durable, never leave a checkpoint that
//! does not match the data stored with it, and never start a write without its free-space
//! reserve (`space`). It does no networking and holds no async
//! state: callers on an async runtime run it on a blocking thread.
//!
//! Why redb: it is ACID and crash-safe by default, its file format is stable, it is tested
//! upstream for crash consistency and I/O faults, and it is one dependency. sled, which the
//! original design card named, has had no stable release since 0.34.7 (2021), has open
//! reports of corruption after a killed process, and depends on crates with RUSTSEC
//! "unmaintained" advisories.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod entry_pages;
mod error;
mod hash_chunks;
pub mod host;
mod key_file;
mod log_state;
mod log_store;
mod log_tables;
mod map_nodes;
mod map_top;
mod mirror_store;
mod space;
mod spool;

pub use error::StoreError;
pub use key_file::{
    generate_signing_key, generate_token, read_secret, read_signing_key, write_secret,
    write_signing_key,
};
pub use log_store::{BatchResult, DEFAULT_CACHE_BYTES, LogStore, StoredCheckpoint};
pub use log_tables::{Conflict, LogReader, Outcome};
pub use mirror_store::{
    Appended, EvidenceRecord, EvidenceSummary, Expect, MirrorState, MirrorStore,
};
pub use space::{DEFAULT_KEEP_FREE, free_bytes};
pub use spool::{Spool, SpoolFile};
