//! `tally aggregate`: run an aggregator.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::output::outln;
use crate::{config, output, progress, runtime};

/// Run an aggregator.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    Serve(Args),
    CheckConfig(Args),
}

/// Follow and fully verify logs, keep evidence, answer queries, witness.
///
/// Serves gRPC (tally query, tally check, tally report, tally evidence) and HTTP (/metrics,
/// /healthz, /add-checkpoint, /witness/checkpoint/<origin>, and the dashboard: /,
/// /disagreements, /evidence/<id>, /path/<hash>, /reports, /reports/<name>) on `listen`. The
/// first sync of a large log shows a progress bar on a terminal. Stops cleanly on SIGTERM or
/// Ctrl-C. See examples/aggregator.toml for every option.
///
/// Example:
///
///   tally aggregate serve --config /etc/tally/aggregator.toml
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The aggregator's TOML config.
    #[arg(long)]
    config: PathBuf,
}

/// Reads and checks an aggregator config file.
pub(super) fn load(path: &std::path::Path) -> anyhow::Result<tally_aggregator::Config> {
    let config: tally_aggregator::Config = config::load(path)?;
    config
        .validate()
        .with_context(|| format!("config file {}", path.display()))?;
    Ok(config)
}

pub(crate) fn run(cmd: Command, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(args) => {
            let config = load(&args.config)?;
            runtime::init_tracing("info");
            runtime::block_on(async {
                let shutdown = runtime::shutdown_on_signal();
                tally_aggregator::serve(config, progress::sync_progress(), shutdown).await
            })?
            .with_context(|| format!("tally aggregate serve --config {}", args.config.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let config = load(&args.config)?;
            if json {
                output::json(
                    &serde_json::json!({"config": args.config, "logs": config.origins(), "ok": true}),
                )?;
            } else {
                outln!(
                    "{}: ok ({} logs, policy {})",
                    args.config.display(),
                    config.logs.len(),
                    config.policy
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
