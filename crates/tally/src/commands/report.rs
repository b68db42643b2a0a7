//! `tally report`: how much of a closure or an SBOM independent builders reproduced.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tally_aggregator::reports::Report;
use tally_core::report::{PathList, Reproducibility};
use tally_proto::client::Address;

use crate::output::{self, outln};
use crate::runtime;

/// Classify a closure's or an SBOM's paths by what the logs attest
///
///   reproduced  at least 2 logs attest it, all the same NAR
///   disputed    logs attest different NARs (hash, size or references)
///   single      exactly 1 log attests it
///   unknown     no log attests it
///
/// Prints a summary (counts and percentages) and a table of paths; --json prints both as
/// JSON, and --html writes a self-contained page. The classes do not depend on a policy:
/// use `tally check` to gate on one.
///
/// Examples:
///
///   nix-store -qR /run/current-system > closure.txt
///   tally report --aggregator http://127.0.0.1:7421 --closure closure.txt \
///       --html report.html
///
///   tally report --aggregator http://127.0.0.1:7421 --sbom system.cdx.json --json
///
///   tally report --aggregator http://127.0.0.1:7421 $(nix-store -qR ./result)
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The aggregator: http://host:port.
    #[arg(long)]
    aggregator: Address,
    /// A closure: one store path per line, as `nix-store -qR` prints it (- for stdin).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sbom", "paths"])]
    closure: Option<PathBuf>,
    /// A CycloneDX JSON SBOM (sbomnix, nix-runtime-tree-to-sbom, bombon, …).
    #[arg(long, value_name = "FILE.cdx.json", conflicts_with = "paths")]
    sbom: Option<PathBuf>,
    /// Also write the report as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// The report's title.
    #[arg(long, default_value = "closure")]
    name: String,
    /// Output paths.
    #[arg(required_unless_present_any = ["closure", "sbom"])]
    paths: Vec<String>,
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<ExitCode> {
    let list = match (&args.closure, &args.sbom) {
        (Some(file), _) => PathList::closure(&read(file)?)
            .with_context(|| format!("{} is not a closure list", file.display()))?,
        (_, Some(file)) => PathList::cyclonedx(&read(file)?)
            .with_context(|| format!("{} is not a usable SBOM", file.display()))?,
        _ => {
            let paths = args
                .paths
                .iter()
                .map(|p| crate::paths::store_path(p).map(|p| p.to_string()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            PathList::closure(&paths.join("\n"))?
        }
    };
    if list.skipped_derivations > 0 {
        eprintln!(
            "skipping {} derivation (.drv) paths: reports cover build outputs",
            list.skipped_derivations
        );
    }
    let paths: Vec<String> = list.paths.iter().map(ToString::to_string).collect();
    let (_, answers) =
        runtime::block_on(super::query::ask(&args.aggregator, None, &paths, false))??;
    let logs = answers
        .first()
        .map(|a| a.votes.iter().map(|v| v.origin.to_string()).collect())
        .unwrap_or_default();
    let report = Report::new(args.name.clone(), &list, 0, logs, &answers);
    if let Some(file) = &args.html {
        let base = args.aggregator.to_string();
        let page =
            tally_aggregator::dashboard::report_document(&report, base.trim_end_matches('/'));
        std::fs::write(file, page).with_context(|| format!("writing {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    if json {
        output::json(&serde_json::json!({ "report": report, "paths": report.rows }))?;
    } else {
        print(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print(r: &tally_aggregator::reports::Report) {
    let width = r.rows.iter().map(|x| x.path.len()).max().unwrap_or(4);
    for row in &r.rows {
        outln!(
            "{:<width$}  {:<10}  {}",
            row.path,
            row.class,
            row.attested_by.join(", ")
        );
        for c in &row.candidates {
            outln!(
                "{:<width$}    {} ({} bytes): {}",
                "",
                c.nar_hash,
                c.nar_size,
                c.origins.join(", ")
            );
        }
    }
    outln!();
    outln!(
        "{}, {} ({})",
        output::count(r.summary.total(), "path", "paths"),
        output::count(r.logs.len(), "log", "logs"),
        r.logs.join(", ")
    );
    for c in Reproducibility::ALL {
        outln!(
            "  {:<10} {:>8}  {:>5.1}%",
            c.name(),
            r.summary.count(c),
            r.summary.percent(c)
        );
    }
}
