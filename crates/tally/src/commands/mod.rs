//! The command line: one module per subcommand.

mod completions;
mod key;
mod keygen;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tally: a federation of transparency logs for Nix builds.
///
/// Builders log what they built; aggregators check the logs and answer n-of-m questions;
/// a binary cache proxy serves only what a quorum of builders agrees on.
#[derive(Parser, Debug)]
#[command(name = "tally", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Keygen(keygen::Args),
    #[command(subcommand)]
    Key(key::Command),
    Completions(completions::Args),
}

/// Runs a parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Keygen(args) => keygen::run(args, json),
        Command::Key(cmd) => key::run(cmd, json),
        Command::Completions(args) => completions::run(args),
    }
}
