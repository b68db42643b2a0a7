//! The attester log daemon, `tally log serve`.
//!
//! This crate owns the service a builder runs: the [`sequencer`] that turns submissions into
//! durable, signed batches; [`witnessing`], which gets checkpoints cosigned (C2SP
//! tlog-witness) and [`publish`]es what readers see; the `tally.v1.Log` gRPC [`service`];
//! write [`auth`]; the C2SP tlog-tiles [`http`] read API with `/metrics` and `/healthz`; and
//! draining the post-build hook's [`spool`]. Storage is `tally-store`'s; formats and proofs
//! are `tally-core`'s.
//!
//! It must never acknowledge a submission before it is durable and signed, never write any
//! part of a rejected submission, and never let bad input stop it serving.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod auth;
pub mod config;
mod error;
pub mod http;
pub mod metrics;
pub mod publish;
pub mod sequencer;
mod server;
pub mod service;
pub mod spool;
pub mod tile_dir;
pub mod witnessing;

pub use config::Config;
pub use error::LogError;
pub use server::{HOST_CHECKS, Running, check_host, serve, start};
