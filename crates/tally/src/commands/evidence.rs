//! `tally evidence` and `tally verify`: fetch evidence, and check bundles offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tally_core::VerifyingKey;
use tally_core::evidence::BundleFile;
use tally_proto::client::{self, Address};
use tally_proto::v1;

use crate::output::outln;
use crate::{output, runtime};

/// Download an aggregator's evidence bundles.
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

/// Check an evidence or query bundle offline.
///
/// Exits 0 if the bundle proves its claim (a fork, bad data, a contradiction, a
/// disagreement, or a query's verdict), using nothing but the logs' public keys; exits 1 and
/// says why otherwise. A file may hold one bundle or a JSON list of them.
///
/// Examples:
///
///   tally verify evidence/3-fork.json --vkey 'builder1.example.org/tally+0ebe49a9+ASFS…'
///
///   tally verify hello.json --vkey-file federation.keys
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct VerifyArgs {
    /// The bundle file.
    file: PathBuf,
    /// A log's public key (note verifier key or Nix public key); repeat for each log.
    #[arg(long)]
    vkey: Vec<VerifyingKey>,
    /// A file of public keys, one per line.
    #[arg(long)]
    vkey_file: Option<PathBuf>,
}

pub(crate) fn evidence(args: EvidenceArgs, json: bool) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let written = runtime::block_on(async {
        let mut client = client::connect_aggregator(&args.aggregator).await?;
        let list = client
            .list_evidence(v1::ListEvidenceRequest {
                origin: args.log.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("ListEvidence: {}", s.message()))?
            .into_inner()
            .evidence;
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
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let bundles: Vec<BundleFile> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
    } else {
        serde_json::from_str(&text).map(|b| vec![b])
    }
    .with_context(|| format!("{} is not a Tally bundle", args.file.display()))?;
    let mut ok = true;
    let mut results = Vec::new();
    for b in &bundles {
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
