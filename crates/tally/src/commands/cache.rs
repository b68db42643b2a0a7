//! `tally cache`: run the substituter trust plugin.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use tally_cache::{Aggregator, AggregatorAt};

use crate::{config, progress, runtime};

/// Run a binary cache that serves only quorum-attested paths.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    Serve(Args),
    /// Check a binary cache's config file without starting it.
    ///
    /// Checks everything `serve` would refuse: every option, the upstream URLs, the
    /// aggregator (and, when it runs in process, its config), the key file (present, mode
    /// 0600) and that the listen address is free. With --build-time (a NixOS build, where
    /// secrets and ports are not there yet) it skips the files and the ports, and lists what
    /// it skipped. Exits 1 naming the first problem.
    ///
    /// Examples:
    ///
    ///   tally cache check-config --config /etc/tally/cache.toml
    ///
    ///   tally cache check-config --build-time --config ./cache.toml
    #[command(verbatim_doc_comment)]
    CheckConfig(config::CheckArgs),
}

/// Serve a Nix binary cache that passes on a narinfo only when a quorum of logs attests
/// exactly its NarHash, NarSize and References, re-signed with this cache's key.
///
/// Narinfos and NARs come from the upstream caches; verdicts from the aggregator, remote or
/// run in this process. Anything not trusted is a 404; an upstream or aggregator failure is
/// a 502. Serves /nix-cache-info, /<hash>.narinfo, /nar/<file>, /metrics and /healthz.
/// See examples/cache.toml for every option.
///
/// Example:
///
///   tally cache serve --config /etc/tally/cache.toml
///
/// and in nix.conf:
///
///   substituters = http://127.0.0.1:7422
///   trusted-public-keys = <the output of tally key public --secret-key-file KEY, first line>
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The cache's TOML config.
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    ready: runtime::ReadyFile,
}

/// Reads and checks a cache config file, and the aggregator config it names. Key files are
/// read only by `serve`: a config is checked where the secrets are not (a NixOS build).
fn load(path: &Path) -> anyhow::Result<(tally_cache::Config, AggregatorAt)> {
    let config: tally_cache::Config = config::load(path)?;
    let at = config
        .validate()
        .with_context(|| format!("config file {}", path.display()))?;
    if let AggregatorAt::InProcess(aggregator) = &at {
        super::aggregate::load(aggregator)
            .with_context(|| format!("aggregator.config in {}", path.display()))?;
    }
    Ok((config, at))
}

pub(crate) fn run(cmd: Command, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(args) => {
            let (config, at) = load(&args.config)?;
            runtime::init_tracing("info");
            runtime::block_on(serve(config, at, &args.ready))?
                .with_context(|| format!("tally cache serve --config {}", args.config.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let (config, at) = load(&args.config)?;
            let skipped = args.host_checks(tally_cache::HOST_CHECKS, || {
                tally_cache::check_host(&config)
            })?;
            if let AggregatorAt::InProcess(path) = &at {
                let aggregator = super::aggregate::load(path)?;
                args.host_checks(tally_aggregator::HOST_CHECKS, || {
                    tally_aggregator::check_host(&aggregator)
                })
                .with_context(|| format!("aggregator.config in {}", args.config.display()))?;
            }
            let aggregator = match &at {
                AggregatorAt::Remote(a) => a.to_string(),
                AggregatorAt::InProcess(p) => format!("in process from {}", p.display()),
            };
            let mut fields = serde_json::Map::new();
            fields.insert(
                "upstreams".into(),
                serde_json::json!(
                    config
                        .upstreams
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ),
            );
            fields.insert("aggregator".into(), aggregator.clone().into());
            let upstreams = config.upstreams.len();
            let plural = if upstreams == 1 { "" } else { "s" };
            args.report(
                &format!("{upstreams} upstream{plural}, aggregator {aggregator}"),
                skipped,
                fields,
                json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(
    config: tally_cache::Config,
    at: AggregatorAt,
    ready: &runtime::ReadyFile,
) -> anyhow::Result<()> {
    let shutdown = runtime::shutdown_on_signal();
    match at {
        AggregatorAt::Remote(address) => {
            let client = tally_proto::client::connect_aggregator_lazy(&address)?;
            let running = tally_cache::start(config, Aggregator::Remote(client), shutdown).await?;
            ready.write(&[("listen", running.local_addr)])?;
            running.serving.await?;
        }
        AggregatorAt::InProcess(path) => {
            let aggregator = super::aggregate::load(&path)?;
            let running =
                tally_aggregator::start(aggregator, progress::sync_progress(), shutdown.clone())
                    .await?;
            let aggregator_addr = running.local_addr;
            let serving = tokio::spawn(running.serving);
            let served = async {
                let cache = tally_cache::start(
                    config,
                    Aggregator::InProcess(running.handle),
                    shutdown.clone(),
                )
                .await?;
                ready.write(&[
                    ("listen", cache.local_addr),
                    ("aggregator", aggregator_addr),
                ])?;
                cache.serving.await?;
                anyhow::Ok(())
            }
            .await;
            // Either way, stop the aggregator too and wait for it.
            shutdown.cancel();
            let stopped = serving.await?;
            served?;
            stopped?;
        }
    }
    Ok(())
}
