//! `tally cache`: run the substituter trust plugin, and ask it why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tally_cache::votes::BoxFuture;
use tally_cache::{AggregatorAt, Votes};
use tally_core::StorePathHash;
use tally_core::decision::Ballot;
use tally_core::trust::TrustPolicy;

use crate::{config, output, paths, progress, runtime};
use tally_cache::explain::Explanation;

/// Run a binary cache that serves only quorum-attested paths
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    Serve(Args),
    /// Check a binary cache's config file without starting it
    ///
    /// Checks everything `serve` would refuse: every option, the upstream URLs, the trust
    /// policy file, the aggregator (and, when it runs in process, its config), the key file
    /// (present, mode 0600) and that the listen address is free. With --build-time (a NixOS
    /// build, where secrets and ports are not there yet) it skips the key, the ports and a
    /// policy file that is not there yet, and lists what it skipped. Exits 1 naming the
    /// first problem.
    ///
    /// Examples:
    ///
    ///   tally cache check-config --config /etc/tally/cache.toml
    ///
    ///   tally cache check-config --build-time --config ./cache.toml
    #[command(verbatim_doc_comment)]
    CheckConfig(config::CheckArgs),
    Explain(ExplainArgs),
}

/// Serve a binary cache that passes on only what a quorum attests
///
/// A narinfo is passed on only when a quorum of logs attests exactly its store path, NarHash,
/// NarSize and References, and is re-signed with this cache's key.
///
/// Every log's answer is checked against the cache's own trust policy (policy_file): its
/// checkpoint signature, witness cosignatures, map and inclusion proofs. Answers come from an
/// aggregator (remote, or run in this process) or from the logs themselves; none is taken on
/// its word. Anything not trusted is a 404; when nothing usable could be had (an upstream or
/// every log down, every answer forged) it is a 502. Serves /nix-cache-info,
/// /<hash>.narinfo, /nar/<file>, /explain/<hash>, /metrics and /healthz. See
/// examples/cache.toml for every option.
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

/// Say why a cache serves or refuses a path
///
/// Asks the cache's /explain/<hash>: each log's vote and whether its proofs verified under
/// the cache's trust policy, the verdict, and the upstream narinfo compared field by field
/// with the attested NAR. Exits 0 if the cache serves the path, 1 if it refuses it.
///
/// Examples:
///
///   tally cache explain --cache http://127.0.0.1:7422 /nix/store/7wm0…-hello-2.12.1
///
///   tally cache explain --cache http://127.0.0.1:7422 --json ./result
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct ExplainArgs {
    /// The cache: http://host:port.
    #[arg(long, default_value = "http://127.0.0.1:7422")]
    cache: String,
    /// The store path, its hash part, or a `result` symlink.
    path: String,
}

/// Reads and checks a cache config file, the trust policy it names (unless `build_time` and
/// the policy file is not there yet), and the aggregator config it runs in process.
fn load(
    path: &Path,
    build_time: bool,
) -> anyhow::Result<(tally_cache::Config, AggregatorAt, Option<TrustPolicy>)> {
    let config: tally_cache::Config = config::load(path)?;
    let in_file = || format!("config file {}", path.display());
    let at = config.validate().with_context(in_file)?;
    let trust = if build_time && !config.policy_file.exists() {
        None
    } else {
        Some(config.trust_policy(&at).with_context(in_file)?)
    };
    if let AggregatorAt::InProcess(aggregator) = &at {
        super::aggregate::load(aggregator)
            .with_context(|| format!("aggregator.config in {}", path.display()))?;
    }
    if let Some(ca) = &config.ca_file {
        tally_proto::client::add_ca_file(ca).with_context(in_file)?;
    }
    Ok((config, at, trust))
}

pub(crate) fn run(cmd: Command, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(args) => {
            let (config, at, trust) = load(&args.config, false)?;
            let trust = trust.context("the trust policy")?;
            runtime::init_tracing("info");
            runtime::block_on(serve(config, at, trust, &args.ready))?
                .with_context(|| format!("tally cache serve --config {}", args.config.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => check_config(&args, json),
        Command::Explain(args) => explain(&args, json),
    }
}

fn check_config(args: &config::CheckArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (config, at, trust) = load(&args.config, args.build_time)?;
    let mut skipped: Vec<&str> = args
        .host_checks(tally_cache::HOST_CHECKS, || {
            tally_cache::check_host(&config)
        })?
        .to_vec();
    if trust.is_none() {
        skipped.push("policy_file");
    }
    if let AggregatorAt::InProcess(path) = &at {
        let aggregator = super::aggregate::load(path)?;
        args.host_checks(tally_aggregator::HOST_CHECKS, || {
            tally_aggregator::check_host(&aggregator)
        })
        .with_context(|| format!("aggregator.config in {}", args.config.display()))?;
    }
    let source = match &at {
        AggregatorAt::Remote(a) => format!("aggregator {a}"),
        AggregatorAt::InProcess(p) => format!("aggregator in process from {}", p.display()),
        AggregatorAt::Logs => "the logs directly".to_owned(),
    };
    let policy = trust.as_ref().map(ToString::to_string);
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
    fields.insert("answers_from".into(), source.clone().into());
    fields.insert("policy".into(), serde_json::json!(policy));
    args.report(
        &format!(
            "{}, answers from {source}, policy: {}",
            output::count(config.upstreams.len(), "upstream", "upstreams"),
            policy.as_deref().unwrap_or("not checked")
        ),
        &skipped,
        fields,
        json,
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    config: tally_cache::Config,
    at: AggregatorAt,
    trust: TrustPolicy,
    ready: &runtime::ReadyFile,
) -> anyhow::Result<()> {
    let shutdown = runtime::shutdown_on_signal();
    if let Some(votes) = tally_cache::network_votes(&at, &trust)? {
        let running = tally_cache::start(config, trust, votes, shutdown).await?;
        ready.write(&[("listen", running.local_addr)])?;
        running.serving.await?;
        return Ok(());
    }
    let AggregatorAt::InProcess(path) = at else {
        anyhow::bail!("no source of answers");
    };
    let aggregator = super::aggregate::load(&path)?;
    let running =
        tally_aggregator::start(aggregator, progress::sync_progress(), shutdown.clone()).await?;
    let aggregator_addr = running.local_addr;
    let votes = Arc::new(InProcess(running.handle));
    let serving = tokio::spawn(running.serving);
    let served = async {
        let cache = tally_cache::start(config, trust, votes, shutdown.clone()).await?;
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
    Ok(())
}

/// An aggregator in this process, as a source of answers: its mirrors' proofs, which the
/// cache checks like any other.
pub(crate) struct InProcess(pub(crate) tally_aggregator::Shared);

impl Votes for InProcess {
    fn ballots<'a>(
        &'a self,
        path: &'a StorePathHash,
    ) -> BoxFuture<'a, Result<Vec<Ballot>, String>> {
        let shared = self.0.clone();
        let path = *path;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || shared.answer_with_proofs(&path))
                .await
                .map_err(|e| e.to_string())?
                .map(|a| a.ballots())
        })
    }

    fn describe(&self) -> String {
        "the aggregator in this process".into()
    }
}

fn explain(args: &ExplainArgs, json: bool) -> anyhow::Result<ExitCode> {
    let hash = paths::store_path_hash(&args.path)?;
    let url = format!("{}/explain/{hash}", args.cache.trim_end_matches('/'));
    let body = runtime::block_on(async {
        let response = tally_proto::client::http_client(std::time::Duration::from_secs(30))?
            .get(&url)
            .header("accept", "application/json")
            .send()
            .await
            .with_context(|| format!("asking {url}; is `tally cache serve` running there?"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            anyhow::bail!("{url} answered {status}: {}", text.trim());
        }
        anyhow::Ok(text)
    })??;
    let explained: Explanation = serde_json::from_str(&body).with_context(|| {
        format!("{url} answered, but not with an explanation: is it a Tally cache?")
    })?;
    if json {
        output::json(&explained)?;
    } else {
        output::out!("{}", explained.to_text());
    }
    Ok(if explained.status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
