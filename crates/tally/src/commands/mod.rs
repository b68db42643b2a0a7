//! The command line: one module per subcommand.

mod aggregate;
mod bench;
mod cache;
mod completions;
mod demo;
mod evidence;
mod hook;
mod import;
mod key;
mod keygen;
mod log;
mod proof;
mod query;
mod report;
mod submit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tally: a federation of transparency logs for Nix builds.
///
/// Builders log what they built; aggregators check the logs and answer n-of-m questions;
/// a binary cache proxy serves only what a quorum of builders agrees on.
#[derive(Parser, Debug)]
// `-V` only here: the subcommands have no versions of their own.
#[command(name = "tally", version)]
pub(crate) struct Cli {
    /// Print machine-readable JSON instead of text: results, and errors as {"error", "causes"}.
    ///
    /// Every command honours it, before or after the subcommand's name. For the daemons
    /// (`serve`) it changes how a refusal to start is printed: one JSON object on stdout.
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
    #[command(subcommand)]
    Log(log::Command),
    Submit(submit::Args),
    Hook(hook::Args),
    #[command(subcommand)]
    Aggregate(aggregate::Command),
    #[command(subcommand)]
    Cache(cache::Command),
    Query(query::QueryArgs),
    Check(query::CheckArgs),
    Report(report::Args),
    Evidence(evidence::EvidenceArgs),
    Verify(evidence::VerifyArgs),
    Proof(proof::Args),
    Import(import::Args),
    #[command(subcommand)]
    Bench(bench::Command),
    Demo(demo::Args),
    Completions(completions::Args),
}

impl Cli {
    /// Whether output (and errors) are JSON.
    pub(crate) fn json(&self) -> bool {
        self.json
    }
}

/// Runs a parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Keygen(args) => keygen::run(args, json),
        Command::Key(cmd) => key::run(cmd, json),
        Command::Log(cmd) => log::run(cmd, json),
        Command::Submit(args) => submit::run(args, json),
        Command::Hook(args) => hook::run(args, json),
        Command::Aggregate(cmd) => aggregate::run(cmd, json),
        Command::Cache(cmd) => cache::run(cmd, json),
        Command::Query(args) => query::query(args, json),
        Command::Check(args) => query::check(args, json),
        Command::Report(args) => report::run(args, json),
        Command::Evidence(args) => evidence::evidence(args, json),
        Command::Verify(args) => evidence::verify(args, json),
        Command::Proof(args) => proof::run(args, json),
        Command::Import(args) => import::run(args, json),
        Command::Bench(cmd) => bench::run(cmd, json),
        Command::Demo(args) => demo::run(args, json),
        Command::Completions(args) => completions::run(args, json),
    }
}
