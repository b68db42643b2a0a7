//! Helpers for Tally's end-to-end tests: the real `tally` binary, and real Nix.
//!
//! Tests here start separate processes and talk to them over loopback, the way users run
//! Tally. They never fake a component a user would run for real.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod browser;
pub mod daemon;
pub mod hostile_log;
pub mod http;
pub mod litewitness;
pub mod lying_aggregator;
pub mod nginx;
pub mod nix;
pub mod proxy;
pub mod upstream;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `tally` binary that cargo built beside this test.
///
/// `cargo test --workspace` builds it before any test runs. Running only this package's tests
/// needs `cargo build -p tally` first.
pub fn tally_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/tally
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("tally");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo test --workspace`, or `cargo build -p tally` first",
        bin.display()
    );
    bin
}

/// A `tally` command.
pub fn tally() -> Command {
    Command::new(tally_bin())
}

/// Runs a command, requiring success, and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert_success(cmd, &out);
    String::from_utf8(out.stdout).unwrap()
}

/// Panics with the command's output unless it succeeded.
pub fn assert_success(cmd: &Command, out: &Output) {
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
