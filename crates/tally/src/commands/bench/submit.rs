//! `tally bench submit`: load a log with submits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tally_core::sample;
use tally_proto::v1;

use super::{Report, Run, closed_loop, rss_mb};
use crate::output;

/// Load a log with submits, report throughput and latency
///
/// By default N clients each submit batches of B sample attestations back to back until C
/// are acknowledged (durably, as always). With --rate, single-attestation submits are sent
/// at a steady rate regardless of answers, the way post-build hooks arrive, and their
/// latency is reported. Samples are realistic attestations numbered from --start (default:
/// the log's current size), so repeated runs append new entries. All requests are encoded
/// before the clock starts, so the figures measure the log, not the generator.
///
/// Examples:
///
///   tally bench submit --log unix:/run/tally/log.sock --clients 8 --batch 500 --count 1000000
///
///   tally bench submit --log unix:/run/tally/log.sock --rate 500 --count 30000 --daemon-pid "$PID"
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct SubmitArgs {
    #[command(flatten)]
    to: crate::commands::submit::LogTarget,
    /// Concurrent clients (closed loop).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Attestations per request (closed loop).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Attestations to submit in all.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Open loop: single-attestation submits per second.
    #[arg(long)]
    rate: Option<u64>,
    /// First sample index.
    #[arg(long)]
    start: Option<u64>,
    /// Report this process's resident memory at the end (the daemon's pid).
    #[arg(long)]
    daemon_pid: Option<u32>,
}

pub(super) async fn run(args: SubmitArgs) -> anyhow::Result<Report> {
    if args.clients == 0 || args.batch == 0 || args.rate == Some(0) {
        bail!("--clients, --batch and --rate must be at least 1");
    }
    let client = args.to.connect().await?;
    let start_index = match args.start {
        Some(s) => s,
        None => {
            let note = client
                .clone()
                .get_checkpoint(v1::GetCheckpointRequest {})
                .await?
                .into_inner()
                .note;
            tally_core::Checkpoint::from_text(tally_core::Note::parse(&note)?.text())?
                .tree
                .size
        }
    };
    let batch = if args.rate.is_some() { 1 } else { args.batch };
    let requests = prepare(start_index, args.count, batch);
    let log_size = Arc::new(AtomicU64::new(0));
    let bar = crate::progress::bar(args.count, "submitting");
    let send = {
        let (client, size) = (client.clone(), log_size.clone());
        move |request: v1::SubmitRequest| {
            let (mut client, size) = (client.clone(), size.clone());
            async move {
                let n = request.attestations.len() as u64;
                let response = client.submit(request).await.context("Submit")?.into_inner();
                size.fetch_max(checkpoint_size(&response), Ordering::Relaxed);
                anyhow::Ok(n)
            }
        }
    };
    let (mode, run) = match args.rate {
        None => (
            format!(
                "{} × batches of {}",
                output::count(args.clients, "client", "clients"),
                args.batch
            ),
            closed_loop(requests, args.clients, &bar, send).await?,
        ),
        Some(rate) => (
            format!("steady {rate}/s single submits"),
            open_loop(requests, rate, &bar, send).await?,
        ),
    };
    let mut report = Report::new(mode, "attestations", args.count, &run);
    report.log_size = Some(log_size.load(Ordering::Relaxed));
    report.daemon_rss_mb = args.daemon_pid.and_then(rss_mb);
    Ok(report)
}

/// Sends one request every 1/`rate` seconds, whatever the answers, and times each.
async fn open_loop<F, Fut>(
    requests: Vec<v1::SubmitRequest>,
    rate: u64,
    bar: &indicatif::ProgressBar,
    send: F,
) -> anyhow::Result<Run>
where
    F: Fn(v1::SubmitRequest) -> Fut,
    Fut: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let began = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for request in requests {
        tick.tick().await;
        let sent = send(request);
        let bar = bar.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            bar.inc(sent.await?);
            anyhow::Ok(t.elapsed())
        });
    }
    let mut latencies = Vec::new();
    while let Some(t) = tasks.join_next().await {
        latencies.push(t??);
    }
    let seconds = began.elapsed().as_secs_f64();
    bar.finish_and_clear();
    latencies.sort_unstable();
    Ok(Run { latencies, seconds })
}

/// Encodes every request up front.
fn prepare(start: u64, count: u64, batch: usize) -> Vec<v1::SubmitRequest> {
    let bar = crate::progress::bar(count, "preparing samples");
    let indices: Vec<u64> = (start..start + count).collect();
    let requests = indices
        .chunks(batch)
        .map(|chunk| {
            bar.inc(chunk.len() as u64);
            v1::SubmitRequest {
                attestations: chunk
                    .iter()
                    .map(|&i| sample::attestation(i).as_bytes().to_vec())
                    .collect(),
            }
        })
        .collect();
    bar.finish_and_clear();
    requests
}

fn checkpoint_size(response: &v1::SubmitResponse) -> u64 {
    response
        .checkpoint
        .as_ref()
        .and_then(|c| tally_core::Note::parse(&c.note).ok())
        .and_then(|n| tally_core::Checkpoint::from_text(n.text()).ok())
        .map_or(0, |c| c.tree.size)
}
