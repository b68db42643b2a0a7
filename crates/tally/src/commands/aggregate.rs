//! `tally aggregate`: run an aggregator.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::{config, output, progress, runtime};

/// Run an aggregator
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    Serve(Args),
    /// Check an aggregator's config file without starting it
    ///
    /// Checks everything `serve` would refuse: every option, each log's key and URLs, the
    /// policy, the witness key and admin token files (present, mode 0600), that data_dir can
    /// be created and that the listen address is free. With --build-time (a NixOS build,
    /// where secrets and ports are not there yet) it skips the files and the port, and lists
    /// what it skipped. Exits 1 naming the first problem.
    ///
    /// Examples:
    ///
    ///   tally aggregate check-config --config /etc/tally/aggregator.toml
    ///
    ///   tally aggregate check-config --build-time --config ./aggregator.toml
    #[command(verbatim_doc_comment)]
    CheckConfig(config::CheckArgs),
}

/// Follow and verify logs, keep evidence, answer queries, witness
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
    #[command(flatten)]
    ready: runtime::ReadyFile,
}

/// Reads and checks an aggregator config file.
pub(super) fn load(path: &std::path::Path) -> anyhow::Result<tally_aggregator::Config> {
    let config: tally_aggregator::Config = config::load(path)?;
    let config = config
        .read_policy_file()
        .with_context(|| format!("config file {}", path.display()))?;
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
                let running =
                    tally_aggregator::start(config, progress::sync_progress(), shutdown).await?;
                args.ready.write(&[("listen", running.local_addr)])?;
                running.serving.await?;
                anyhow::Ok(())
            })?
            .with_context(|| format!("tally aggregate serve --config {}", args.config.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let config = load(&args.config)?;
            let skipped = args.host_checks(tally_aggregator::HOST_CHECKS, || {
                tally_aggregator::check_host(&config)
            })?;
            let mut fields = serde_json::Map::new();
            fields.insert("logs".into(), serde_json::json!(config.origins()));
            args.report(
                &format!(
                    "{}, policy {}",
                    output::count(config.logs.len(), "log", "logs"),
                    config.policy()
                ),
                skipped,
                fields,
                json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
