//! `tally query` and `tally check`: ask an aggregator whether enough logs agree, and check
//! every answer's proofs against your own trust policy.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use tally_core::KeyName;
use tally_core::decision::{Counted, Decision, Uncached, decide};
use tally_core::evidence::{Bundle, BundleFile};
use tally_core::index::PathAnswer;
use tally_core::policy::{Policy, Verdict};
use tally_core::trust::TrustPolicy;
use tally_proto::client::{self, Address};
use tally_proto::v1;

use crate::output::outln;
use crate::{output, progress, runtime};

/// Ask an aggregator whether enough logs agree on paths
///
/// With --policy-file (your own trust policy: the logs' keys, witnesses and quorums, see
/// docs/formats.md), every log's answer is checked (checkpoint signature, cosignatures, map
/// and inclusion proofs) and the verdict is yours. Without it, the verdict is the
/// aggregator's unverified word, and every line says so.
///
/// For each path prints trusted (with the agreed NAR), disputed (each candidate and its
/// logs) or unknown, and each log's vote. With --evidence, writes the proofs to a file that
/// `tally verify` checks offline.
///
/// Examples:
///
///   tally query --aggregator http://127.0.0.1:7421 --policy-file trust.policy /nix/store/7wm0…-hello-2.12.1
///
///   tally query --aggregator http://127.0.0.1:7421 --policy-file trust.policy --evidence hello.json ./result
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    ask: AskArgs,
    /// Write the proofs behind the answer to this file, for `tally verify`.
    #[arg(long, value_name = "FILE")]
    evidence: Option<PathBuf>,
    /// Output paths, hash parts, or `result` symlinks.
    #[arg(required = true)]
    paths: Vec<String>,
}

/// Check that every path is trusted, with verified proofs
///
/// Exits 0 only if every path is trusted: a gate for CI and promotion.
///
/// Every log's answer is checked against your trust policy (--policy-file); a path counts as
/// trusted only if the verified answers meet its quorum. Without a policy file nothing can be
/// verified, so `tally check` prints the aggregator's word and exits 1. Paths come from
/// arguments, from --paths FILE, or from stdin (--paths -), one per line, as `nix-store -qR`
/// prints them. Prints each path that is not trusted and why; prints a summary either way.
///
/// Examples:
///
///   nix-store -qR ./result | tally check --aggregator http://127.0.0.1:7421 --policy-file trust.policy --paths -
///
///   tally check --aggregator http://127.0.0.1:7421 --policy-file trust.policy /nix/store/…
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    ask: AskArgs,
    /// A file of paths, one per line, or - for stdin.
    #[arg(long, value_name = "FILE")]
    paths: Option<PathBuf>,
    /// Output paths, hash parts, or `result` symlinks.
    path: Vec<String>,
}

/// Where to ask, and how to judge the answers.
#[derive(clap::Args, Debug)]
pub(crate) struct AskArgs {
    /// The aggregator: http://host:port or https://host.
    #[arg(long)]
    aggregator: Address,
    /// Your trust policy (C2SP tlog-policy with an `attest` line): every answer is checked
    /// against it.
    #[arg(long, env = "TALLY_POLICY_FILE", value_name = "FILE")]
    policy_file: Option<PathBuf>,
    /// The attestation quorum, instead of the policy file's (majority, N-of-M, with
    /// ,dissent=K and ,require=ORIGIN+ORIGIN).
    #[arg(long)]
    policy: Option<Policy>,
}

impl AskArgs {
    /// The trust policy, if given, with the quorum override applied.
    fn trust(&self) -> anyhow::Result<Option<TrustPolicy>> {
        let Some(file) = &self.policy_file else {
            return Ok(None);
        };
        let mut trust = read_policy(file)?;
        if let Some(q) = &self.policy {
            trust = trust
                .with_attest(q.clone())
                .with_context(|| format!("--policy with {}", file.display()))?;
        }
        Ok(Some(trust))
    }
}

/// Reads a trust policy file.
pub(crate) fn read_policy(file: &Path) -> anyhow::Result<TrustPolicy> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    TrustPolicy::parse(&text).with_context(|| format!("trust policy {}", file.display()))
}

/// One path's result, for --json and printing.
#[derive(serde::Serialize)]
struct PathResult {
    path: String,
    status: &'static str,
    /// Whether the verdict is the caller's own, from checked proofs.
    verified: bool,
    verdict: Verdict,
    logs: Vec<LogResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ignored: Vec<String>,
}

#[derive(serde::Serialize)]
struct LogResult {
    origin: String,
    vote: &'static str,
    /// Whether this vote's proofs were checked and hold.
    verified: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
}

/// Queries in chunks the aggregator accepts, with a progress bar when there are many.
/// Returns the policy the aggregator applied and one answer per path, in order.
pub(super) async fn ask(
    aggregator: &Address,
    policy: Option<&Policy>,
    paths: &[String],
    proofs: bool,
) -> anyhow::Result<(String, Vec<PathAnswer>)> {
    let mut client = client::connect_aggregator(aggregator).await?;
    let mut results = Vec::with_capacity(paths.len());
    let mut applied = String::new();
    let chunk_size = tally_aggregator::query::MAX_PATHS;
    let bar = (paths.len() > chunk_size).then(|| progress::bar(paths.len() as u64, "paths"));
    for chunk in paths.chunks(chunk_size) {
        let response = client
            .query(v1::QueryRequest {
                paths: chunk.to_vec(),
                policy: policy.map(ToString::to_string).unwrap_or_default(),
                proofs,
            })
            .await;
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(s) => {
                return Err(crate::remote::status(
                    aggregator,
                    "querying",
                    s,
                    tally_proto::client::Service::Aggregator,
                )
                .await);
            }
        };
        if response.results.len() != chunk.len() {
            bail!(
                "{aggregator} answered {} for {}",
                output::count(response.results.len(), "result", "results"),
                output::count(chunk.len(), "path", "paths")
            );
        }
        applied = response.policy;
        for (asked, r) in chunk.iter().zip(&response.results) {
            if r.path != *asked {
                bail!(
                    "{aggregator} answered about {:?} when asked about {asked:?}",
                    r.path
                );
            }
            results.push(
                PathAnswer::try_from(r)
                    .with_context(|| format!("{aggregator}'s answer about {asked}"))?,
            );
        }
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((applied, results))
}

/// The aggregator's word, unchecked.
fn unverified(a: &PathAnswer) -> PathResult {
    PathResult {
        path: a.path.clone(),
        status: a.verdict.status(),
        verified: false,
        verdict: a.verdict.clone(),
        logs: a
            .votes
            .iter()
            .map(|v| LogResult {
                origin: v.origin.to_string(),
                vote: v.vote.name(),
                verified: false,
                reason: v.reason.clone(),
            })
            .collect(),
        ignored: Vec::new(),
    }
}

/// The caller's own decision, from checked proofs.
fn verified(path: &str, d: &Decision) -> PathResult {
    PathResult {
        path: path.to_owned(),
        status: d.verdict.status(),
        verified: true,
        verdict: d.verdict.clone(),
        logs: d
            .votes
            .iter()
            .map(|v| LogResult {
                origin: v.origin.to_string(),
                vote: v.counted.name(),
                verified: v.counted.verified(),
                reason: match &v.counted {
                    Counted::Rejected(why) | Counted::Missing(why) => why.clone(),
                    _ => String::new(),
                },
            })
            .collect(),
        ignored: d
            .ignored
            .iter()
            .map(|i| format!("{}: {}", i.origin, i.why))
            .collect(),
    }
}

/// Judges the answers: under `trust` when given, else as the aggregator's word.
fn judge(trust: Option<&TrustPolicy>, answers: &[PathAnswer]) -> Vec<PathResult> {
    answers
        .iter()
        .map(|a| match trust {
            Some(t) => verified(
                &a.path,
                &decide(t, &a.hash, a.ballots(), &Uncached, runtime::now_unix()),
            ),
            None => unverified(a),
        })
        .collect()
}

const UNVERIFIED: &str = "[unverified]: the aggregator's word; pass --policy-file to check it";

fn print(r: &PathResult) {
    // Every line of an unchecked answer says so.
    let mark = if r.verified { "" } else { "[unverified] " };
    let p = |line: String| outln!("{mark}{line}");
    match &r.verdict {
        Verdict::Trusted { agreed, dissent } => {
            let origins: Vec<&str> = agreed.origins.iter().map(KeyName::as_str).collect();
            p(format!("{}: trusted", r.path));
            p(format!(
                "  {}  nar-hash {}  nar-size {}  ({})",
                agreed.output_path,
                agreed.nar_hash,
                agreed.nar_size,
                origins.join(", ")
            ));
            for reference in &agreed.references {
                p(format!("  ref {}", reference.basename()));
            }
            for d in dissent {
                let o: Vec<&str> = d.origins.iter().map(KeyName::as_str).collect();
                p(format!(
                    "  tolerated dissent: {} ({})",
                    d.nar_hash,
                    o.join(", ")
                ));
            }
        }
        Verdict::Disputed { candidates } => {
            p(format!("{}: disputed", r.path));
            for c in candidates {
                let o: Vec<&str> = c.origins.iter().map(KeyName::as_str).collect();
                p(format!(
                    "  candidate {} size {} ({}) backed by {}",
                    c.nar_hash,
                    c.nar_size,
                    output::count(c.references.len(), "ref", "refs"),
                    o.join(", ")
                ));
            }
        }
        Verdict::Unknown { reason } => p(format!("{}: unknown ({reason})", r.path)),
    }
    for l in &r.logs {
        let checked = if r.verified && l.verified {
            " (proofs checked)"
        } else {
            ""
        };
        match l.vote {
            "absent" => p(format!(
                "    {:<40} absent{checked}{}",
                l.origin,
                note(&l.reason)
            )),
            "present" => p(format!(
                "    {:<40} present{checked}{}",
                l.origin,
                note(&l.reason)
            )),
            v => p(format!("    {:<40} {v}: {}", l.origin, l.reason)),
        }
    }
    for i in &r.ignored {
        p(format!("    not counted: {i}"));
    }
}

fn note(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

pub(crate) fn query(args: QueryArgs, json: bool) -> anyhow::Result<ExitCode> {
    let trust = args.ask.trust()?;
    let paths = resolve(&args.paths)?;
    let proofs = trust.is_some() || args.evidence.is_some();
    let (policy, answers) = runtime::block_on(ask(
        &args.ask.aggregator,
        args.ask.policy.as_ref(),
        &paths,
        proofs,
    ))??;
    let mut results = judge(trust.as_ref(), &answers);
    // Report the paths as the caller gave them.
    for (r, p) in results.iter_mut().zip(&args.paths) {
        r.path.clone_from(p);
    }
    if let Some(file) = &args.evidence {
        let applied: Policy = policy.parse()?;
        let bundles: Vec<BundleFile> = answers
            .iter()
            .map(|a| BundleFile::new(Bundle::Query(a.bundle(applied.clone()))))
            .collect();
        let text = match bundles.as_slice() {
            [one] => serde_json::to_string_pretty(one)?,
            many => serde_json::to_string_pretty(many)?,
        };
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    let judged_by = match &trust {
        Some(t) => format!("your policy: {t}"),
        None => format!("the aggregator's policy {policy} (unverified)"),
    };
    if json {
        output::json(
            &serde_json::json!({"policy": judged_by, "verified": trust.is_some(), "results": results}),
        )?;
    } else {
        outln!("judged under {judged_by}");
        if trust.is_none() {
            outln!("{UNVERIFIED}");
        }
        for r in &results {
            print(r);
        }
        if let Some(file) = &args.evidence {
            eprintln!(
                "proofs written to {}; check them with: tally verify --policy-file POLICY {}",
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

/// Paths as the aggregator takes them: `result` symlinks followed, paths inside a store path
/// reduced to it.
fn resolve(paths: &[String]) -> anyhow::Result<Vec<String>> {
    paths
        .iter()
        .map(|p| crate::paths::store_path_hash(p).map(|h| h.to_string()))
        .collect()
}

pub(crate) fn check(args: CheckArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut paths = args.path.clone();
    if let Some(file) = &args.paths {
        paths.extend(read_paths(file)?);
    }
    if paths.is_empty() {
        bail!("no paths to check: give them as arguments or with --paths FILE (- for stdin)");
    }
    let trust = args.ask.trust()?;
    let asked = resolve(&paths)?;
    let (policy, answers) = runtime::block_on(ask(
        &args.ask.aggregator,
        args.ask.policy.as_ref(),
        &asked,
        trust.is_some(),
    ))??;
    let mut results = judge(trust.as_ref(), &answers);
    // Report the paths as the caller gave them.
    for (r, p) in results.iter_mut().zip(&paths) {
        r.path.clone_from(p);
    }
    let passing = |r: &PathResult| r.verified && r.status == "trusted";
    let failing: Vec<&PathResult> = results.iter().filter(|r| !passing(r)).collect();
    let trusted = results.len() - failing.len();
    if json {
        output::json(&serde_json::json!({
            "policy": trust.as_ref().map_or(policy.clone(), ToString::to_string),
            "verified": trust.is_some(),
            "checked": results.len(),
            "trusted": trusted,
            "failing": failing,
        }))?;
    } else {
        for r in &failing {
            let why = match &r.verdict {
                Verdict::Unknown { reason } => reason.clone(),
                Verdict::Disputed { candidates } => {
                    format!("{} different NARs attested", candidates.len())
                }
                Verdict::Trusted { .. } => String::new(),
            };
            let tag = if r.verified { "" } else { "\t[unverified]" };
            outln!("{}\t{}\t{why}{tag}", r.path, r.status);
        }
        match &trust {
            Some(t) => eprintln!(
                "{trusted} of {} trusted, proofs checked, under your policy: {t}",
                output::count(results.len(), "path", "paths")
            ),
            None => eprintln!(
                "no --policy-file: nothing above is verified ({UNVERIFIED}); \
                 tally check passes only paths whose proofs it checked itself"
            ),
        }
    }
    Ok(if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
