//! The substituter trust plugin, `tally cache serve`: a Nix binary cache that passes on a
//! narinfo only when a quorum of logs attests exactly its NAR.
//!
//! This crate owns reading [`upstream`] caches, getting the logs' answers ([`votes`]: from an
//! aggregator, or from the logs themselves), the [`decision`] gate (every answer's proofs
//! checked against the cache's own trust policy, then the exact comparison of the store
//! path, NarHash, NarSize and References), re-signing, explanations ([`explain`]), and the
//! binary cache [`http`] protocol. The narinfo format and its signatures are `tally-nix`'s;
//! the decision rule is `tally-core`'s.
//!
//! It must never serve a narinfo the gate has not admitted (outside report-only mode), never
//! take any source's verdict on its word, and never let an error (an upstream down, a source
//! unreachable, an answer that does not verify) read as a trusted answer.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod config;
pub mod decision;
mod error;
pub mod explain;
pub mod http;
pub mod metrics;
mod server;
pub mod upstream;
pub mod votes;

pub use config::{AggregatorAt, Config, Mode};
pub use error::CacheError;
pub use server::{HOST_CHECKS, Running, check_host, network_votes, serve, start};
pub use votes::Votes;
