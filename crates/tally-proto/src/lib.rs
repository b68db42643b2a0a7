//! Tally's wire contracts.
//!
//! This crate owns the gRPC code generated from `proto/tally/v1/*.proto` (by protox and
//! tonic-prost-build, with no system `protoc`), the conversions between wire messages and
//! `tally-core` types, how a client reaches a daemon ([`client`]), and how a daemon accepts
//! connections under limits ([`serve`]). It must not hold service logic: the services live
//! in the service crates.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod client;
mod convert;
pub mod serve;

pub use convert::{WireError, reproducibility, set_verdict, verdict};

/// Generated code for package `tally.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("tally.v1");
}
