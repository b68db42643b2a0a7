//! The aggregator, `tally aggregate serve`.
//!
//! This crate owns following logs and checking everything they serve ([`follower`]), the
//! evidence that follows from what does not check out, the n-of-m [`query`] engine, the
//! [`witness`], named reproducibility [`reports`], the [`dashboard`], and the gRPC and HTTP
//! APIs. The mirror's storage is `tally-store`'s; the formats, proofs, policies, report
//! classes and evidence verification are `tally-core`'s.
//!
//! It must never count a vote it cannot prove against a checkpoint the log signed, never
//! keep evidence it cannot verify itself, and never stop serving because a log is down,
//! slow or lying.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod answers;
pub mod config;
pub mod dashboard;
mod error;
mod evidence;
mod follower;
pub mod gossip;
pub mod http;
pub mod metrics;
mod offered;
pub mod progress;
pub mod query;
mod remote;
pub mod reports;
mod server;
pub mod service;
pub mod status;
mod tile_source;
pub mod witness;

pub use config::Config;
pub use error::AggregatorError;
pub use progress::{LogLines, SyncProgress};
pub use server::{HOST_CHECKS, Running, check_host, serve, start};
pub use service::Shared;
