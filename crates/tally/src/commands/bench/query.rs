//! `tally bench query`: load an aggregator with queries.

use anyhow::{Context as _, bail};
use tally_core::sample;
use tally_proto::client::{self, Address};
use tally_proto::v1;

use super::{Report, closed_loop, rss_mb, sample_walk};
use crate::output;

/// Load an aggregator with queries, report throughput and latency
///
/// N clients each send Query requests of B sample paths back to back (samples 0..RANGE,
/// so most are attested by logs the `bench submit` samples filled) until C paths are
/// answered. Reports paths per second and per-request latency.
///
/// Example:
///
///   tally bench query --aggregator http://127.0.0.1:7421 --clients 4 --batch 10 --count 100000
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct QueryArgs {
    /// The aggregator: http://host:port.
    #[arg(long)]
    aggregator: Address,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Paths per request.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Paths to ask about in all.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Sample indices to draw from: 0..RANGE.
    #[arg(long, default_value_t = 1_000_000)]
    range: u64,
    /// Ask for proofs too.
    #[arg(long)]
    proofs: bool,
    /// Report this process's resident memory at the end (the aggregator's pid).
    #[arg(long)]
    daemon_pid: Option<u32>,
}

pub(super) async fn run(args: QueryArgs) -> anyhow::Result<Report> {
    if args.clients == 0 || args.batch == 0 || args.range == 0 {
        bail!("--clients, --batch and --range must be at least 1");
    }
    let client = client::connect_aggregator(&args.aggregator).await?;
    let paths: Vec<String> = sample_walk(args.count, args.range)
        .map(|i| sample::output_path(i).to_string())
        .collect();
    let requests: Vec<Vec<String>> = paths.chunks(args.batch).map(<[_]>::to_vec).collect();
    let proofs = args.proofs;
    let bar = crate::progress::bar(args.count, "querying");
    let run = closed_loop(requests, args.clients, &bar, move |paths: Vec<String>| {
        let mut client = client.clone();
        async move {
            let n = paths.len() as u64;
            let answer = client
                .query(v1::QueryRequest {
                    paths,
                    policy: String::new(),
                    proofs,
                })
                .await
                .context("Query")?;
            anyhow::ensure!(
                answer.into_inner().results.len() as u64 == n,
                "short answer"
            );
            anyhow::Ok(n)
        }
    })
    .await?;
    let mode = format!(
        "{} × queries of {}{}",
        output::count(args.clients, "client", "clients"),
        output::count(args.batch, "path", "paths"),
        if args.proofs { " with proofs" } else { "" }
    );
    let mut report = Report::new(mode, "paths", args.count, &run);
    report.daemon_rss_mb = args.daemon_pid.and_then(rss_mb);
    Ok(report)
}
