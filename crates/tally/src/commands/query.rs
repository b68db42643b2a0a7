//! `tally query` and `tally check`: ask an aggregator whether enough logs agree.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tally_core::KeyName;
use tally_core::evidence::BundleFile;
use tally_proto::client::{self, Address};
use tally_proto::v1;

use crate::output::outln;
use crate::{output, progress, runtime};

/// Ask an aggregator whether enough logs agree on paths.
///
/// For each path prints trusted (with the agreed NAR hash, size and references), disputed
/// (with each candidate and the logs that back it) or unknown, and each log's answer:
/// present, absent (proven), or unavailable. With --evidence, writes a bundle of every log's
/// proofs that `tally verify` checks offline, without trusting the aggregator.
///
/// Policies: majority (the default), all, N-of-M, with ",dissent=K" to tolerate K logs
/// attesting something else and ",require=ORIGIN+ORIGIN" for logs that must agree.
///
/// Examples:
///
///   tally query --aggregator http://127.0.0.1:7421 /nix/store/7wm0…-hello-2.12.1
///
///   tally query --aggregator http://127.0.0.1:7421 --policy 2-of-3,dissent=1 --evidence hello.json 7wm0…
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct QueryArgs {
    /// The aggregator: http://host:port.
    #[arg(long)]
    aggregator: Address,
    /// The trust policy (default: the aggregator's).
    #[arg(long)]
    policy: Option<String>,
    /// Write the proofs behind the answer to this file, for `tally verify`.
    #[arg(long, value_name = "FILE")]
    evidence: Option<PathBuf>,
    /// Output paths or hash parts.
    #[arg(required = true)]
    paths: Vec<String>,
}

/// Exit 0 only if every path is trusted: a gate for CI and promotion.
///
/// Paths come from arguments, from --paths FILE, or from stdin (--paths -), one per line,
/// as `nix-store -qR` prints them. Prints each path that is not trusted with its status and
/// exits 1; prints a summary either way.
///
/// Examples:
///
///   nix-store -qR ./result | tally check --aggregator http://127.0.0.1:7421 --paths -
///
///   tally check --aggregator http://127.0.0.1:7421 --policy 2-of-3 /nix/store/…
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct CheckArgs {
    /// The aggregator: http://host:port.
    #[arg(long)]
    aggregator: Address,
    /// The trust policy (default: the aggregator's).
    #[arg(long)]
    policy: Option<String>,
    /// A file of paths, one per line, or - for stdin.
    #[arg(long, value_name = "FILE")]
    paths: Option<PathBuf>,
    /// Output paths or hash parts.
    path: Vec<String>,
}

/// One path's result, for --json and printing.
#[derive(serde::Serialize)]
struct PathResult {
    path: String,
    status: &'static str,
    verdict: tally_core::policy::Verdict,
    logs: Vec<LogResult>,
}

#[derive(serde::Serialize)]
struct LogResult {
    origin: String,
    vote: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
}

fn vote_name(v: &v1::LogVote) -> &'static str {
    match v.vote() {
        v1::Vote::Present => "present",
        v1::Vote::Absent => "absent",
        v1::Vote::Unavailable => "unavailable",
        v1::Vote::Unspecified => "unknown",
    }
}

/// Queries in chunks the aggregator accepts, with a progress bar when there are many.
pub(super) async fn ask(
    aggregator: &Address,
    policy: Option<&str>,
    paths: &[String],
    proofs: bool,
) -> anyhow::Result<(String, Vec<v1::PathVerdict>)> {
    let mut client = client::connect_aggregator(aggregator).await?;
    let mut results = Vec::with_capacity(paths.len());
    let mut applied = String::new();
    let chunk_size = tally_aggregator::query::MAX_PATHS;
    let bar = (paths.len() > chunk_size).then(|| progress::bar(paths.len() as u64, "paths"));
    for chunk in paths.chunks(chunk_size) {
        let response = client
            .query(v1::QueryRequest {
                paths: chunk.to_vec(),
                policy: policy.unwrap_or_default().to_owned(),
                proofs,
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))
            .with_context(|| format!("querying {aggregator}"))?
            .into_inner();
        applied = response.policy;
        results.extend(response.results);
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((applied, results))
}

fn result(r: &v1::PathVerdict) -> anyhow::Result<PathResult> {
    let verdict = tally_proto::verdict(r)?;
    Ok(PathResult {
        path: r.path.clone(),
        status: verdict.status(),
        verdict,
        logs: r
            .logs
            .iter()
            .map(|l| LogResult {
                origin: l.origin.clone(),
                vote: vote_name(l),
                reason: l.reason.clone(),
            })
            .collect(),
    })
}

fn print(r: &PathResult) {
    use tally_core::policy::Verdict;
    match &r.verdict {
        Verdict::Trusted { agreed, dissent } => {
            let origins: Vec<&str> = agreed.origins.iter().map(KeyName::as_str).collect();
            outln!("{}: trusted", r.path);
            outln!(
                "  nar-hash {}  nar-size {}  ({})",
                agreed.nar_hash,
                agreed.nar_size,
                origins.join(", ")
            );
            for reference in &agreed.references {
                outln!("  ref {}", reference.basename());
            }
            for d in dissent {
                let o: Vec<&str> = d.origins.iter().map(KeyName::as_str).collect();
                outln!("  tolerated dissent: {} ({})", d.nar_hash, o.join(", "));
            }
        }
        Verdict::Disputed { candidates } => {
            outln!("{}: disputed", r.path);
            for c in candidates {
                let o: Vec<&str> = c.origins.iter().map(KeyName::as_str).collect();
                outln!(
                    "  candidate {} size {} ({} refs) backed by {}",
                    c.nar_hash,
                    c.nar_size,
                    c.references.len(),
                    o.join(", ")
                );
            }
        }
        Verdict::Unknown { reason } => outln!("{}: unknown ({reason})", r.path),
    }
    for l in &r.logs {
        match l.vote {
            "absent" => outln!(
                "    {:<40} absent (proof of absence){}",
                l.origin,
                note(&l.reason)
            ),
            "unavailable" => outln!("    {:<40} unavailable: {}", l.origin, l.reason),
            v => outln!("    {:<40} {v}{}", l.origin, note(&l.reason)),
        }
    }
}

fn note(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

/// The offline bundle for one answered path.
fn bundle(policy: &str, r: &v1::PathVerdict) -> anyhow::Result<BundleFile> {
    Ok(BundleFile::new(tally_proto::query_bundle(
        policy.parse()?,
        r,
    )?))
}

pub(crate) fn query(args: QueryArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (policy, results) = runtime::block_on(ask(
        &args.aggregator,
        args.policy.as_deref(),
        &args.paths,
        args.evidence.is_some(),
    ))??;
    let printed: Vec<PathResult> = results.iter().map(result).collect::<anyhow::Result<_>>()?;
    if let Some(file) = &args.evidence {
        let bundles: Vec<BundleFile> = results
            .iter()
            .map(|r| bundle(&policy, r))
            .collect::<anyhow::Result<_>>()?;
        let text = match bundles.as_slice() {
            [one] => serde_json::to_string_pretty(one)?,
            many => serde_json::to_string_pretty(many)?,
        };
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    if json {
        output::json(&serde_json::json!({"policy": policy, "results": printed}))?;
    } else {
        outln!("policy {policy}");
        for r in &printed {
            print(r);
        }
        if let Some(file) = &args.evidence {
            eprintln!(
                "proofs written to {}; check them with: tally verify {} --vkey …",
                file.display(),
                file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_paths(file: &Path) -> anyhow::Result<Vec<String>> {
    let reader: Box<dyn std::io::BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        ))
    };
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        let p = line.trim();
        if !p.is_empty() && !p.starts_with('#') {
            out.push(p.to_owned());
        }
    }
    Ok(out)
}

pub(crate) fn check(args: CheckArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut paths = args.path.clone();
    if let Some(file) = &args.paths {
        paths.extend(read_paths(file)?);
    }
    if paths.is_empty() {
        bail!("no paths to check: give them as arguments or with --paths FILE (- for stdin)");
    }
    let (policy, results) =
        runtime::block_on(ask(&args.aggregator, args.policy.as_deref(), &paths, false))??;
    let results: Vec<PathResult> = results.iter().map(result).collect::<anyhow::Result<_>>()?;
    let failing: Vec<&PathResult> = results.iter().filter(|r| r.status != "trusted").collect();
    if json {
        output::json(&serde_json::json!({
            "policy": policy,
            "checked": results.len(),
            "trusted": results.len() - failing.len(),
            "failing": failing,
        }))?;
    } else {
        for r in &failing {
            let why = match &r.verdict {
                tally_core::policy::Verdict::Unknown { reason } => reason.clone(),
                tally_core::policy::Verdict::Disputed { candidates } => {
                    format!("{} different NARs attested", candidates.len())
                }
                tally_core::policy::Verdict::Trusted { .. } => String::new(),
            };
            outln!("{}\t{}\t{why}", r.path, r.status);
        }
        eprintln!(
            "{} of {} paths trusted under policy {policy}",
            results.len() - failing.len(),
            results.len()
        );
    }
    Ok(if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
