//! `tally proof`: archivable evidence of why a substitution was allowed, as C2SP tlog-proofs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tally_cache::Votes;
use tally_cache::votes::{DirectLogs, RemoteAggregator};
use tally_core::decision::{Counted, Uncached, decide};
use tally_core::policy::Verdict;
use tally_core::tlog_proof::TlogProof;
use tally_proto::client::Address;

use crate::output::outln;
use crate::{output, runtime};

/// Write the proofs that a path is trusted: a tlog-proof per log
///
/// Asks the logs of your trust policy (at their URLs, or through --aggregator), checks every
/// answer under the policy, and for each log whose verified answer supports the agreed NAR
/// writes DIR/<origin>.tlog-proof: the attestation (in `extra`), its inclusion proof and the
/// log's checkpoint with its witnesses' cosignatures. Each file can be checked offline, later,
/// with `tally verify FILE --policy-file POLICY`. Exits 0 if the path is trusted, 1 if not
/// (then nothing is written).
///
/// Examples:
///
///   tally proof --policy-file /etc/tally/trust.policy --out proofs/ ./result
///
///   tally proof --policy-file trust.policy --aggregator http://127.0.0.1:7421 --out proofs/ /nix/store/7wm0…-hello-2.12.1
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// Your trust policy.
    #[arg(long, env = "TALLY_POLICY_FILE", value_name = "FILE")]
    policy_file: PathBuf,
    /// Ask this aggregator for the logs' answers instead of the logs themselves.
    #[arg(long)]
    aggregator: Option<Address>,
    /// Where to write the proofs (created if needed).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The store path, its hash part, or a `result` symlink.
    path: String,
}

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<ExitCode> {
    let trust = super::query::read_policy(&args.policy_file)?;
    let hash = crate::paths::store_path_hash(&args.path)?;
    let ballots = runtime::block_on(async {
        // Channels connect lazily, inside the runtime.
        let votes: Box<dyn Votes> = match &args.aggregator {
            Some(a) => Box::new(RemoteAggregator::new(a.clone())?),
            None => Box::new(DirectLogs::new(&trust)?),
        };
        votes
            .ballots(&hash)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("asking {}", votes.describe()))
    })??;
    let decision = decide(
        &trust,
        &hash,
        ballots.clone(),
        &Uncached,
        runtime::now_unix(),
    );
    let Verdict::Trusted { agreed, .. } = &decision.verdict else {
        if json {
            output::json(
                &serde_json::json!({"path": args.path, "status": decision.verdict.status(), "written": []}),
            )?;
        } else {
            outln!(
                "{}: {} under your policy ({trust}); no proofs written",
                args.path,
                decision.verdict.status()
            );
            for v in &decision.votes {
                outln!("  {:<40} {}", v.origin, v.counted);
            }
        }
        return Ok(ExitCode::FAILURE);
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut written = Vec::new();
    for v in &decision.votes {
        if !matches!(&v.counted, Counted::Present { .. }) || !agreed.origins.contains(&v.origin) {
            continue;
        }
        let Some(log) = trust.log(&v.origin) else {
            continue;
        };
        // The answer that counted: the first from this log that verifies again.
        let answer = ballots
            .iter()
            .filter(|b| b.origin == v.origin.as_str())
            .filter_map(|b| b.answer.as_ref().ok())
            .find(|a| a.verify(&log.key, &hash).is_ok());
        let Some(answer) = answer else {
            bail!("the verified answer of {} is gone", v.origin);
        };
        let (Some(entry), Some(proof)) = (&answer.entry, &answer.inclusion_proof) else {
            continue;
        };
        let text = TlogProof {
            extra: Some(entry.data.clone()),
            index: entry.index,
            hashes: proof.hashes.clone(),
            checkpoint: answer.checkpoint.clone(),
        }
        .to_text();
        let file = args.out.join(format!(
            "{}.tlog-proof",
            v.origin.as_str().replace('/', "_")
        ));
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        written.push(file);
    }
    if json {
        output::json(&serde_json::json!({
            "path": args.path,
            "status": "trusted",
            "nar_hash": agreed.nar_hash.to_string(),
            "written": written,
        }))?;
    } else {
        outln!(
            "{}: trusted under your policy ({trust}), nar-hash {}",
            agreed.output_path,
            agreed.nar_hash
        );
        for f in &written {
            outln!("  wrote {}", f.display());
        }
        eprintln!(
            "check them offline with: tally verify FILE --policy-file {}",
            args.policy_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
