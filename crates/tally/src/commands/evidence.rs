//! `tally evidence` and `tally verify`: fetch evidence, and check bundles offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tally_core::VerifyingKey;
use tally_core::decision::Uncached;
use tally_core::evidence::{Bundle, BundleFile};
use tally_core::policy::Policy;
use tally_core::trust::TrustPolicy;
use tally_proto::client::{self, Address};
use tally_proto::v1;

use crate::output::outln;
use crate::{output, runtime};

/// Download an aggregator's evidence bundles
///
/// Writes each bundle to DIR/<id>-<kind>.json and lists what each claims. Check any of them
/// with `tally verify`, which needs nothing but the logs' public keys.
///
/// Example:
///
///   tally evidence --aggregator http://127.0.0.1:7421 --out evidence/
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct EvidenceArgs {
    /// The aggregator: http://host:port.
    #[arg(long)]
    aggregator: Address,
    /// Only evidence about this log.
    #[arg(long)]
    log: Option<String>,
    /// Where to write the bundles.
    #[arg(long)]
    out: PathBuf,
}

/// Check an evidence or query bundle, or a tlog-proof, offline
///
/// Evidence bundles (a fork, a wrong map root, a contradiction, a disagreement) prove their
/// claim with nothing but the logs' public keys: exits 0 if the bundle proves it. A query
/// bundle (from `tally query --evidence`) carries each log's answer about a path; it is
/// decided under YOUR trust policy (--policy-file, or the --vkey keys with --policy), never
/// the policy or verdict the bundle names: each log counts once, answers from logs outside
/// your policy or failing any check do not count, and it prints "trusted" and exits 0 only
/// when the verified answers meet your quorum. A file may hold one bundle or a JSON list.
/// A C2SP tlog-proof (`tally proof` writes them) is checked the same way: a log of your
/// policy signed its checkpoint, your witness quorum cosigned it, and the attestation in it
/// is included.
///
/// Examples:
///
///   tally verify evidence/3-fork.json --vkey 'builder1.example.org/tally+0ebe49a9+ASFS…'
///
///   tally verify hello.json --policy-file trust.policy
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct VerifyArgs {
    /// The bundle file.
    file: PathBuf,
    /// Your trust policy: its logs' keys check evidence, and it decides query bundles.
    #[arg(long, env = "TALLY_POLICY_FILE", value_name = "FILE")]
    policy_file: Option<PathBuf>,
    /// A log's public key (note verifier key or Nix public key); repeat for each log.
    #[arg(long, value_parser = crate::keyarg::PublicKeyParser)]
    vkey: Vec<VerifyingKey>,
    /// A file of public keys, one per line.
    #[arg(long)]
    vkey_file: Option<PathBuf>,
    /// The attestation quorum for query bundles (default: the policy file's, or majority of
    /// the --vkey keys).
    #[arg(long)]
    policy: Option<Policy>,
}

pub(crate) fn evidence(args: EvidenceArgs, json: bool) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let written = runtime::block_on(async {
        let mut client = client::connect_aggregator(&args.aggregator).await?;
        let list = match client::all_evidence(&mut client, args.log.as_deref().unwrap_or_default())
            .await
        {
            Ok(list) => list,
            Err(s) => {
                return Err(crate::remote::status(
                    &args.aggregator,
                    "ListEvidence",
                    s,
                    tally_proto::client::Service::Aggregator,
                )
                .await);
            }
        };
        let mut written = Vec::new();
        for summary in list {
            let e = client
                .get_evidence(v1::GetEvidenceRequest { id: summary.id })
                .await
                .map_err(|s| anyhow::anyhow!("GetEvidence {}: {}", summary.id, s.message()))?
                .into_inner();
            let file = args
                .out
                .join(format!("{}-{}.json", summary.id, summary.kind));
            std::fs::write(&file, &e.bundle_json)
                .with_context(|| format!("writing {}", file.display()))?;
            written.push(serde_json::json!({"id": summary.id, "kind": summary.kind, "origins": summary.origins, "claim": summary.summary, "file": file}));
        }
        anyhow::Ok(written)
    })??;
    if json {
        output::json(&written)?;
    } else {
        for w in &written {
            outln!(
                "#{} {} → {}\n    {}",
                w["id"],
                w["kind"].as_str().unwrap_or_default(),
                w["file"].as_str().unwrap_or_default(),
                w["claim"].as_str().unwrap_or_default()
            );
        }
        eprintln!("{} bundle(s) in {}", written.len(), args.out.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn verify(args: VerifyArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut keys = args.vkey.clone();
    if let Some(file) = &args.vkey_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                keys.push(
                    line.parse()
                        .with_context(|| format!("{} line {}", file.display(), n + 1))?,
                );
            }
        }
    }
    let trust = match &args.policy_file {
        Some(file) => {
            let trust = super::query::read_policy(file)?;
            keys.extend(trust.logs().iter().map(|l| l.key.clone()));
            match &args.policy {
                Some(q) => Some(trust.with_attest(q.clone())?),
                None => Some(trust),
            }
        }
        None if keys.is_empty() => None,
        None => Some(
            TrustPolicy::of_keys(&keys, args.policy.clone().unwrap_or_default())
                .context("the --vkey keys as a trust policy")?,
        ),
    };
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    if text.starts_with(tally_core::tlog_proof::HEADER) {
        return verify_tlog_proof(&args, &text, trust.as_ref(), json);
    }
    let bundles: Vec<BundleFile> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
    } else {
        serde_json::from_str(&text).map(|b| vec![b])
    }
    .with_context(|| format!("{} is not a Tally bundle", args.file.display()))?;
    let mut ok = true;
    let mut results = Vec::new();
    for b in &bundles {
        if let Bundle::Query(q) = &b.bundle {
            let Some(trust) = &trust else {
                anyhow::bail!(
                    "a query bundle is decided under your own trust policy: pass --policy-file \
                     (or the logs' keys with --vkey)"
                );
            };
            let d = q.decide(trust, &Uncached, runtime::now_unix());
            let trusted = d.verdict.status() == "trusted";
            ok &= trusted;
            let counted: Vec<serde_json::Value> = d
                .votes
                .iter()
                .map(|v| serde_json::json!({"origin": v.origin, "vote": v.counted.name(), "verified": v.counted.verified(), "detail": v.counted.to_string()}))
                .collect();
            if !json {
                outln!(
                    "{}: {} under your policy ({trust}); the bundle claimed {} under {}",
                    q.path,
                    d.verdict.status(),
                    q.verdict.status(),
                    q.policy
                );
                for v in &d.votes {
                    outln!("  {:<40} {}", v.origin, v.counted);
                }
                for i in &d.ignored {
                    outln!("  not counted: {} ({})", i.origin, i.why);
                }
            }
            results.push(serde_json::json!({"kind": "query", "path": q.path, "status": d.verdict.status(), "trusted": trusted, "verdict": d.verdict, "votes": counted, "ignored": d.ignored.iter().map(|i| serde_json::json!({"origin": i.origin, "why": i.why})).collect::<Vec<_>>()}));
            continue;
        }
        match b.verify(&keys) {
            Ok(p) => {
                if !json {
                    outln!("proven: {}", p.claim);
                    for c in &p.caveats {
                        outln!("  caveat: {c}");
                    }
                }
                results.push(serde_json::json!({"kind": b.bundle.kind(), "proven": true, "claim": p.claim, "caveats": p.caveats, "misbehaving": p.misbehaving}));
            }
            Err(e) => {
                ok = false;
                if !json {
                    outln!("NOT proven ({}): {e}", b.bundle.summary());
                }
                results.push(serde_json::json!({"kind": b.bundle.kind(), "proven": false, "error": e.to_string()}));
            }
        }
    }
    if json {
        output::json(&serde_json::json!({"file": args.file, "results": results}))?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify_tlog_proof(
    args: &VerifyArgs,
    text: &str,
    trust: Option<&TrustPolicy>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(trust) = trust else {
        anyhow::bail!("a tlog-proof is checked under your trust policy: pass --policy-file");
    };
    let proof = tally_core::tlog_proof::TlogProof::parse(text)
        .with_context(|| format!("{}", args.file.display()))?;
    match proof.verify(trust, runtime::now_unix()) {
        Ok(p) => {
            let witnesses: Vec<&str> = p.cosigned.iter().map(|(w, _)| w.as_str()).collect();
            if json {
                output::json(&serde_json::json!({
                    "file": args.file,
                    "proven": true,
                    "origin": p.checkpoint.origin,
                    "tree_size": p.checkpoint.tree.size,
                    "index": p.index,
                    "cosigned_by": witnesses,
                    "attestation": p.attestation.fields(),
                }))?;
            } else {
                outln!(
                    "proven: {} includes, at index {} of its tree of size {}, the attestation of {} with {}",
                    p.checkpoint.origin,
                    p.index,
                    p.checkpoint.tree.size,
                    p.attestation.output_path(),
                    p.attestation.nar_hash()
                );
                if !witnesses.is_empty() {
                    outln!("  cosigned by {}", witnesses.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                output::json(
                    &serde_json::json!({"file": args.file, "proven": false, "error": e.to_string()}),
                )?;
            } else {
                outln!("NOT proven: {e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
