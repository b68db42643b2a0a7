//! `tally bench`: load generators.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tally_core::sample;
use tally_proto::client::{self, Address};
use tally_proto::v1;
use tokio::sync::Mutex;

use crate::output::outln;
use crate::{output, runtime};

/// Load generators.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    Submit(SubmitArgs),
    Query(QueryArgs),
}

/// Load an aggregator with queries and report throughput and latency.
///
/// N clients each send Query requests of B sample paths back to back (samples 0..RANGE,
/// so most are attested by logs the `bench submit` samples filled) until C paths are
/// answered. Reports paths per second and per-request latency.
///
/// Example:
///
///   tally bench query --aggregator http://127.0.0.1:7421 --clients 4 --batch 100 --count 200000
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
    #[arg(long, default_value_t = 100)]
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

/// Load a log with submits and report throughput and latency.
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
    /// The log: unix:/path/to/socket, or http://host:port with --token-file.
    #[arg(long)]
    log: Address,
    /// The log's submit bearer token, for http://.
    #[arg(long)]
    token_file: Option<PathBuf>,
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

#[derive(serde::Serialize)]
struct Report {
    mode: String,
    /// What was counted: "attestations" submitted or "paths" answered.
    unit: &'static str,
    count: u64,
    seconds: f64,
    per_second: f64,
    requests: usize,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    /// The log's size after a submit run.
    log_size: Option<u64>,
    daemon_rss_mb: Option<f64>,
}

pub(crate) fn run(cmd: Command, json: bool) -> anyhow::Result<ExitCode> {
    let report = match cmd {
        Command::Submit(args) => runtime::block_on(submit(args))??,
        Command::Query(args) => runtime::block_on(query(args))??,
    };
    if json {
        output::json(&report)?;
    } else {
        outln!(
            "{}: {} {} in {:.1} s = {:.0}/s; {} requests, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}{}",
            report.mode,
            report.count,
            report.unit,
            report.seconds,
            report.per_second,
            report.requests,
            report.latency_ms_p50,
            report.latency_ms_p99,
            report.latency_ms_max,
            report
                .log_size
                .map(|n| format!("; log size {n}"))
                .unwrap_or_default(),
            report
                .daemon_rss_mb
                .map(|m| format!("; daemon RSS {m:.0} MB"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn submit(args: SubmitArgs) -> anyhow::Result<Report> {
    let token = super::submit::read_token(&args.log, args.token_file.as_deref())?;
    let client = client::connect(&args.log, token).await?;
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
    if args.clients == 0 || args.batch == 0 || args.rate == Some(0) {
        bail!("--clients, --batch and --rate must be at least 1");
    }
    let batch = if args.rate.is_some() { 1 } else { args.batch };
    let requests = prepare(start_index, args.count, batch);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let log_size = Arc::new(AtomicU64::new(0));
    let bar = crate::progress::bar(args.count, "submitting");
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let shared = (
        client.clone(),
        latencies.clone(),
        log_size.clone(),
        bar.clone(),
    );
    let send = move |request: v1::SubmitRequest| {
        let (mut client, lat, size, bar) = shared.clone();
        async move {
            let n = request.attestations.len() as u64;
            let t = Instant::now();
            let response = client.submit(request).await.context("Submit")?.into_inner();
            lat.lock().await.push(t.elapsed());
            size.fetch_max(checkpoint_size(&response), Ordering::Relaxed);
            bar.inc(n);
            anyhow::Ok(())
        }
    };
    let mode = match args.rate {
        None => {
            // Closed loop: each client sends its next request when the last is answered.
            let queue = Arc::new(std::sync::Mutex::new(requests.into_iter()));
            for _ in 0..args.clients {
                let (queue, send) = (queue.clone(), send.clone());
                tasks.spawn(async move {
                    loop {
                        let next = queue
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .next();
                        match next {
                            Some(request) => send(request).await?,
                            None => return anyhow::Ok(()),
                        }
                    }
                });
            }
            format!("{} clients × batches of {}", args.clients, args.batch)
        }
        Some(rate) => {
            // Open loop: a steady rate, whatever the answers.
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for request in requests {
                tick.tick().await;
                tasks.spawn(send(request));
            }
            format!("steady {rate}/s single submits")
        }
    };
    while let Some(t) = tasks.join_next().await {
        t??;
    }
    let seconds = began.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Report {
        mode,
        unit: "attestations",
        count: args.count,
        seconds,
        per_second: args.count as f64 / seconds,
        requests: lat.len(),
        latency_ms_p50: pct(0.50),
        latency_ms_p99: pct(0.99),
        latency_ms_max: pct(1.0),
        log_size: Some(log_size.load(Ordering::Relaxed)),
        daemon_rss_mb: args.daemon_pid.and_then(rss_mb),
    })
}

async fn query(args: QueryArgs) -> anyhow::Result<Report> {
    if args.clients == 0 || args.batch == 0 || args.range == 0 {
        bail!("--clients, --batch and --range must be at least 1");
    }
    let client = client::connect_aggregator(&args.aggregator).await?;
    // Prepared up front: a fixed pseudo-random walk over the sample range.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let paths: Vec<String> = (0..args.count)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            sample::output_path((x >> 17) % args.range).to_string()
        })
        .collect();
    let requests: Vec<Vec<String>> = paths.chunks(args.batch).map(<[_]>::to_vec).collect();
    let queue = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let bar = crate::progress::bar(args.count, "querying");
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        let (mut client, queue, lat, bar) = (
            client.clone(),
            queue.clone(),
            latencies.clone(),
            bar.clone(),
        );
        let proofs = args.proofs;
        tasks.spawn(async move {
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .next();
                let Some(paths) = next else {
                    return anyhow::Ok(());
                };
                let n = paths.len() as u64;
                let t = Instant::now();
                let r = client
                    .query(v1::QueryRequest {
                        paths,
                        policy: String::new(),
                        proofs,
                    })
                    .await
                    .context("Query")?;
                lat.lock().await.push(t.elapsed());
                anyhow::ensure!(r.into_inner().results.len() as u64 == n, "short answer");
                bar.inc(n);
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t??;
    }
    let seconds = began.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Report {
        mode: format!(
            "{} clients × queries of {} paths{}",
            args.clients,
            args.batch,
            if args.proofs { " with proofs" } else { "" }
        ),
        unit: "paths",
        count: args.count,
        seconds,
        per_second: args.count as f64 / seconds,
        requests: lat.len(),
        latency_ms_p50: pct(0.50),
        latency_ms_p99: pct(0.99),
        latency_ms_max: pct(1.0),
        log_size: None,
        daemon_rss_mb: args.daemon_pid.and_then(rss_mb),
    })
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

/// A process's resident set size, from /proc.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
