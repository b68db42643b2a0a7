//! The substituter trust plugin, `tally cache serve`: a Nix binary cache that passes on a
//! narinfo only when a quorum of logs attests exactly its NAR.
//!
//! This crate owns reading [`upstream`] caches, the [`decision`] gate (the aggregator's
//! verdict, cached briefly, and the exact comparison of NarHash, NarSize and References),
//! re-signing, and the binary cache [`http`] protocol. Verdicts are the aggregator's; the
//! narinfo format and its signatures are `tally-nix`'s.
//!
//! It must never serve a narinfo the gate has not admitted, and never let an error (an
//! upstream down, an aggregator unreachable) read as a trusted answer.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod config;
pub mod decision;
mod error;
pub mod http;
pub mod metrics;
mod server;
pub mod upstream;

pub use config::{AggregatorAt, Config};
pub use decision::Aggregator;
pub use error::CacheError;
pub use server::{HOST_CHECKS, Running, check_host, serve, start};
