//! `tally bench`: load generators. Every request is prepared before the clock starts, so
//! the figures measure the service, not the generator.

mod narinfo;
mod query;
mod submit;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use crate::output::outln;
use crate::{output, runtime};

/// Measure throughput and latency under load
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    Submit(submit::SubmitArgs),
    Query(query::QueryArgs),
    Narinfo(narinfo::NarinfoArgs),
    SampleCache(narinfo::SampleCacheArgs),
}

/// What a run measured.
#[derive(serde::Serialize)]
struct Report {
    mode: String,
    /// What was counted: "attestations" submitted, "paths" answered, "narinfos" fetched.
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

impl Report {
    fn new(mode: String, unit: &'static str, count: u64, run: &Run) -> Report {
        Report {
            mode,
            unit,
            count,
            seconds: run.seconds,
            per_second: count as f64 / run.seconds,
            requests: run.latencies.len(),
            latency_ms_p50: run.percentile(0.50),
            latency_ms_p99: run.percentile(0.99),
            latency_ms_max: run.percentile(1.0),
            log_size: None,
            daemon_rss_mb: None,
        }
    }
}

pub(crate) fn run(cmd: Command, json: bool) -> anyhow::Result<ExitCode> {
    let report = match cmd {
        Command::Submit(args) => runtime::block_on(submit::run(args))??,
        Command::Query(args) => runtime::block_on(query::run(args))??,
        Command::Narinfo(args) => runtime::block_on(narinfo::run(args))??,
        Command::SampleCache(args) => return narinfo::write_sample_cache(args, json),
    };
    if json {
        output::json(&report)?;
    } else {
        outln!(
            "{}: {} {} in {:.1} s = {:.0}/s; {}, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}{}",
            report.mode,
            report.count,
            report.unit,
            report.seconds,
            report.per_second,
            output::count(report.requests, "request", "requests"),
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

/// The latencies of a finished run, and how long it took.
struct Run {
    latencies: Vec<Duration>,
    seconds: f64,
}

impl Run {
    /// The latency at `p` (0..=1), in milliseconds.
    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.latencies
            .get(i)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Sends `requests` from `clients` closed loops (each sends its next request when the last
/// is answered) and times each. `send` returns how many items a request carried.
async fn closed_loop<R, F, Fut>(
    requests: Vec<R>,
    clients: usize,
    bar: &ProgressBar,
    send: F,
) -> anyhow::Result<Run>
where
    R: Send + 'static,
    F: Fn(R) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (queue, send, bar) = (queue.clone(), send.clone(), bar.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("a client panicked"))?
                    .next();
                let Some(request) = next else {
                    return anyhow::Ok(latencies);
                };
                let t = Instant::now();
                let n = send(request).await?;
                latencies.push(t.elapsed());
                bar.inc(n);
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(t) = tasks.join_next().await {
        latencies.extend(t??);
    }
    let seconds = began.elapsed().as_secs_f64();
    bar.finish_and_clear();
    latencies.sort_unstable();
    Ok(Run { latencies, seconds })
}

/// A pseudo-random walk over `0..range`, the same on every run.
fn sample_walk(count: u64, range: u64) -> impl Iterator<Item = u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..count).map(move |_| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 17) % range
    })
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
