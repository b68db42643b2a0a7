//! `tally log`: run and inspect an attester log.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tally_core::answer::{LogAnswer, Verified};
use tally_core::{UnverifiedCheckpoint, VerifyingKey};
use tally_proto::client::{self, Address, BearerToken, Service};
use tally_proto::v1;

use crate::output::{out, outln};
use crate::{config, output, runtime};

/// Run and inspect an attester log
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    Serve(ServeArgs),
    /// Check a log daemon's config file without starting it
    ///
    /// Checks everything `serve` would refuse: every option, the key file (present, mode
    /// 0600, named after the origin), the token file, that the directories can be created,
    /// that the socket's group exists and that the listen address is free. With
    /// --build-time (a NixOS build, where secrets and ports are not there yet) it checks
    /// the options only and lists what it skipped. Exits 1 naming the first problem.
    ///
    /// Examples:
    ///
    ///   tally log check-config --config /etc/tally/log.toml
    ///
    ///   tally log check-config --build-time --config ./log.toml
    #[command(verbatim_doc_comment)]
    CheckConfig(config::CheckArgs),
    Checkpoint(CheckpointArgs),
    Lookup(LookupArgs),
}

/// Run the attester log daemon
///
/// Serves gRPC reads and the C2SP tlog-tiles HTTP API on `listen`, takes submits on the Unix
/// socket (and over TCP with a bearer token, if configured), and drains the post-build hook's
/// spool. Stops cleanly on SIGTERM or Ctrl-C. See examples/log.toml for every option.
///
/// Example:
///
///   tally log serve --config /etc/tally/log.toml
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct ServeArgs {
    /// The daemon's TOML config.
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    ready: runtime::ReadyFile,
}

/// Print a log's latest checkpoint, verified with --vkey
///
/// Examples:
///
///   tally log checkpoint --log http://builder1.example.org:7420
///
///   tally log checkpoint --log unix:/run/tally/log.sock --vkey 'builder1.example.org/tally+0ebe49a9+ASFS…'
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct CheckpointArgs {
    /// The log: http://host:port or unix:/path/to/socket.
    #[arg(long)]
    log: Address,
    /// The log's public key (note verifier key or Nix public key); checks the signature.
    #[arg(long, value_parser = crate::keyarg::PublicKeyParser)]
    vkey: Option<VerifyingKey>,
}

/// Ask a log about one output path, and verify the answer
///
/// Prints the attestation, or that the log has none, after checking the checkpoint's
/// signature, the map proof and (if present) the entry's inclusion proof. Exits 1 if any
/// check fails.
///
/// Example:
///
///   tally log lookup --log http://builder1.example.org:7420 --vkey "$VKEY" /nix/store/7wm0…-hello-2.12.1
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct LookupArgs {
    /// The log: http://host:port or unix:/path/to/socket.
    #[arg(long)]
    log: Address,
    /// The log's public key (note verifier key or Nix public key).
    #[arg(long, value_parser = crate::keyarg::PublicKeyParser)]
    vkey: VerifyingKey,
    /// The output path, or its 32-character hash part.
    path: String,
}

pub(crate) fn run(cmd: Command, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(args, json),
        Command::Checkpoint(args) => runtime::block_on(checkpoint(args, json))?,
        Command::Lookup(args) => runtime::block_on(lookup(args, json))?,
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<tally_log::Config> {
    let config: tally_log::Config = config::load(path)?;
    config
        .validate()
        .with_context(|| format!("config file {}", path.display()))?;
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    runtime::init_tracing("info");
    runtime::block_on(async {
        let shutdown = runtime::shutdown_on_signal();
        let running = tally_log::start(config, shutdown).await?;
        args.ready.write(&[("listen", running.local_addr)])?;
        running.serving.await?;
        anyhow::Ok(())
    })?
    .with_context(|| format!("tally log serve --config {}", args.config.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(args: config::CheckArgs, json: bool) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    let skipped = args.host_checks(tally_log::HOST_CHECKS, || tally_log::check_host(&config))?;
    let mut fields = serde_json::Map::new();
    fields.insert("origin".into(), config.origin.as_str().into());
    args.report(&format!("log {}", config.origin), skipped, fields, json)?;
    Ok(ExitCode::SUCCESS)
}

async fn checkpoint(args: CheckpointArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut client = client::connect(&args.log, BearerToken::default()).await?;
    let note = match client.get_checkpoint(v1::GetCheckpointRequest {}).await {
        Ok(r) => r.into_inner().note,
        Err(s) => {
            return Err(crate::remote::status(&args.log, "GetCheckpoint", s, Service::Log).await);
        }
    };
    let parsed = UnverifiedCheckpoint::parse(&note).context("the log's checkpoint")?;
    let checkpoint = match &args.vkey {
        Some(key) => Some(
            parsed
                .verify(key)
                .with_context(|| format!("verifying the checkpoint with {key}"))?
                .checkpoint()
                .clone(),
        ),
        None => None,
    };
    let text = String::from_utf8_lossy(&note);
    if json {
        output::json(&serde_json::json!({
            "checkpoint": text,
            "verified": checkpoint.is_some(),
            "parsed": checkpoint,
        }))?;
    } else {
        out!("{text}");
        if let Some(c) = checkpoint {
            eprintln!("verified: {} at size {}", c.origin, c.tree.size);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn lookup(args: LookupArgs, json: bool) -> anyhow::Result<ExitCode> {
    let hash = crate::paths::store_path_hash(&args.path)?;
    let mut client = client::connect(&args.log, BearerToken::default()).await?;
    let response = match client
        .lookup(v1::LookupRequest {
            path: hash.to_string(),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(crate::remote::status(&args.log, "Lookup", s, Service::Log).await),
    };
    let answer = LogAnswer::try_from(&response).context("the log's answer is malformed")?;
    let verified = match answer.verify(&args.vkey, &hash) {
        Ok(v) => v,
        Err(e) => {
            if json {
                output::json(
                    &serde_json::json!({"path": args.path, "verified": false, "error": e.to_string()}),
                )?;
            }
            anyhow::bail!("the answer from {} does not verify: {e}", args.log);
        }
    };
    let c = verified.checkpoint();
    match &verified {
        Verified::Present {
            index, attestation, ..
        } => {
            if json {
                output::json(&serde_json::json!({
                    "path": args.path, "verified": true, "present": true,
                    "origin": c.origin, "tree_size": c.tree.size, "index": index,
                    "attestation": attestation,
                }))?;
            } else {
                outln!(
                    "{} attests {} at entry {index} (verified against checkpoint {}):",
                    c.origin,
                    attestation.output_path(),
                    c.tree.size
                );
                out!("{}", String::from_utf8_lossy(attestation.as_bytes()));
            }
        }
        Verified::Absent { .. } => {
            if json {
                output::json(&serde_json::json!({
                    "path": args.path, "verified": true, "present": false,
                    "origin": c.origin, "tree_size": c.tree.size,
                }))?;
            } else {
                outln!(
                    "{} has no attestation for {} (proof of absence verified against checkpoint {})",
                    c.origin,
                    args.path,
                    c.tree.size
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
