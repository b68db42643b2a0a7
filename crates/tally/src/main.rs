//! The `tally` command: a thin layer that parses arguments and calls the library crates.
//!
//! Each subcommand lives in its own module under `commands/`. This crate owns argument
//! parsing, output formatting (`--json`) and exit codes; it must not hold logic that a
//! library crate could test on its own.

#![forbid(unsafe_code)]

mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}
