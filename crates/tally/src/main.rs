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
    let cli = commands::Cli::parse_from(args);
    let json = cli.json();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::error(&e, json);
            ExitCode::FAILURE
        }
    }
}
