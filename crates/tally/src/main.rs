//! The `tally` command: a thin layer that parses arguments and calls the library crates.
//!
//! Each subcommand lives in its own module under `commands/`. This crate owns argument
//! parsing, output formatting (`--json`) and exit codes; it must not hold logic that a
//! library crate could test on its own.

#![forbid(unsafe_code)]

mod commands;
mod config;
mod keyarg;
mod output;
mod paths;
mod progress;
mod remote;
mod runtime;

use std::process::ExitCode;

use clap::Parser as _;

/// The daemons allocate from many threads (async workers and the blocking pool that runs
/// redb). glibc's malloc gives each contending thread its own arena and rarely returns
/// their free pages, so an aggregator syncing 10 logs one at a time grew to 2 GB where the
/// same work with two arenas peaked at 981 MiB (docs/BENCHMARKS.md, issue 16). mimalloc
/// keeps memory near what is live, without the environment variable that limits arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Called as `tally-hook` (Nix runs its post-build hook without arguments): act as
    // `tally hook`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name().map(|n| n.to_owned()));
    if called.as_deref() == Some(std::ffi::OsStr::new("tally-hook")) {
        args.truncate(1);
        args.push("hook".into());
    }
    let cli = match commands::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // Help and version go to stdout as clap writes them; usage errors are JSON when
        // --json was asked for, like every other error.
        Err(e) if e.use_stderr() && args.iter().any(|a| a == "--json") => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
            output::error(&anyhow::anyhow!("{message}"), true);
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let json = cli.json();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::error(&e, json);
            ExitCode::FAILURE
        }
    }
}
