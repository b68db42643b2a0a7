//! A soak: mixed load against a federation of three logs, an aggregator and a cache, with
//! one log restarted every minute. Outside CI; the figures go to docs/BENCHMARKS.md.
//!
//! ```sh
//! cargo build --release
//! cargo run --release -p tally-tests --example soak -- 600
//! ```
//!
//! For the whole run:
//! - each log gets hook-like submits of one attestation, ten a second, retried the way the
//!   hook's spool would deliver them (for up to 30 s) when the log is restarting;
//! - every 20 s one log gets a bulk submit of 5,000;
//! - two clients query the aggregator for 10 paths at a time, all attested by every log;
//! - two clients fetch narinfos from the cache;
//! - the dashboard is read every 2 s;
//! - every 60 s one log (in turn) is stopped and started again.
//!
//! An error is a request that failed for good: a submit not taken within 30 s, a query
//! whose verdict is not "trusted", a narinfo that is not served, a dashboard that is not
//! 200. Resident memory of every daemon is sampled every 10 s.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_core::sample;
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;
use tally_tests::daemon::{AggregatorDaemon, CacheDaemon, LogDaemon, trust_policy};
use tally_tests::{http, run_ok, tally};

/// Paths every log attests before the load starts; queries and narinfos use them.
const SHARED: u64 = 50_000;
/// Narinfos in the upstream cache.
const NARINFOS: u64 = 10_000;

#[derive(Default)]
struct Stats {
    latencies: Mutex<BTreeMap<&'static str, Vec<Duration>>>,
    errors: Mutex<BTreeMap<&'static str, Vec<String>>>,
}

impl Stats {
    fn ok(&self, kind: &'static str, took: Duration) {
        self.latencies
            .lock()
            .unwrap()
            .entry(kind)
            .or_default()
            .push(took);
    }

    fn error(&self, kind: &'static str, why: String) {
        self.errors
            .lock()
            .unwrap()
            .entry(kind)
            .or_default()
            .push(why);
    }
}

/// Submits `numbers` as one request to the log at `socket`, retrying for up to 30 s.
async fn submit(socket: &str, numbers: std::ops::Range<u64>) -> Result<Duration, String> {
    let address: Address = socket.parse().unwrap();
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(mut c) = client::connect(&address, BearerToken::default()).await {
            let request = v1::SubmitRequest {
                attestations: numbers
                    .clone()
                    .map(|n| sample::attestation(n).as_bytes().to_vec())
                    .collect(),
            };
            match c.submit(request).await {
                Ok(_) => return Ok(started.elapsed()),
                Err(s) => last = s.message().to_owned(),
            }
        } else {
            last = "connection refused".into();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("not taken in 30 s: {last}"))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let dir = tempfile::tempdir().unwrap();
    eprintln!("soak for {seconds} s in {}", dir.path().display());

    let logs: Vec<LogDaemon> = (1..=3)
        .map(|n| {
            LogDaemon::start(
                &dir.path().join(format!("log{n}")),
                &format!("b{n}.soak.test/log"),
                &[],
            )
        })
        .collect();
    for log in &logs {
        run_ok(
            tally()
                .args(["bench", "submit", "--log", &log.socket(), "--start", "0"])
                .args(["--clients", "4", "--batch", "1000", "--count"])
                .arg(SHARED.to_string()),
        );
    }
    let upstream = dir.path().join("upstream");
    run_ok(
        tally()
            .args(["bench", "sample-cache", "--dir"])
            .arg(&upstream)
            .args(["--count", &NARINFOS.to_string()]),
    );
    let follow: Vec<_> = logs.iter().map(LogDaemon::follow).collect();
    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &follow, &["cache_mb = 128"]);
    for log in &logs {
        agg.wait_verified(&log.origin, SHARED).await;
    }
    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[format!("file://{}", upstream.display())],
        &trust_policy(&logs.iter().collect::<Vec<_>>(), "attest 2-of-3\n"),
        Some(&format!("url = \"{}\"", agg.url())),
        &[],
    );
    eprintln!("federation up; load for {seconds} s");

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sockets: Vec<String> = logs.iter().map(LogDaemon::socket).collect();
    let next = Arc::new(AtomicU64::new(10_000_000));
    let mut tasks = Vec::new();

    // Hook-like submits, ten a second per log.
    for socket in sockets.clone() {
        let (stats, stop, next) = (stats.clone(), stop.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let n = next.fetch_add(1, Ordering::Relaxed);
                let (stats, socket) = (stats.clone(), socket.clone());
                tokio::spawn(async move {
                    match submit(&socket, n..n + 1).await {
                        Ok(t) => stats.ok("hook submit", t),
                        Err(e) => stats.error("hook submit", e),
                    }
                });
            }
        }));
    }
    // Bulk submits.
    {
        let (stats, stop, next, sockets) =
            (stats.clone(), stop.clone(), next.clone(), sockets.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let socket = &sockets[round % sockets.len()];
                round += 1;
                let first = next.fetch_add(5_000, Ordering::Relaxed);
                for start in (first..first + 5_000).step_by(500) {
                    match submit(socket, start..start + 500).await {
                        Ok(t) => stats.ok("bulk submit (500)", t),
                        Err(e) => stats.error("bulk submit (500)", e),
                    }
                }
            }
        }));
    }
    // Queries.
    for client_number in 0..2u64 {
        let (stats, stop, url) = (stats.clone(), stop.clone(), agg.url());
        tasks.push(tokio::spawn(async move {
            let mut c = client::connect_aggregator(&Address::Http(url))
                .await
                .unwrap();
            let mut x = 1 + client_number;
            while !stop.load(Ordering::Relaxed) {
                let paths: Vec<String> = (0..10)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        sample::output_path((x >> 17) % SHARED).to_string()
                    })
                    .collect();
                let t = Instant::now();
                match c
                    .query(v1::QueryRequest {
                        paths,
                        policy: String::new(),
                        proofs: false,
                    })
                    .await
                {
                    Ok(r) => {
                        let took = t.elapsed();
                        let r = r.into_inner();
                        let trusted = v1::Status::Trusted as i32;
                        match r.results.iter().find(|p| p.status != trusted) {
                            None => stats.ok("query (10 paths)", took),
                            Some(p) => stats.error(
                                "query (10 paths)",
                                format!("{} is not trusted: {}", p.path, p.reason),
                            ),
                        }
                    }
                    Err(s) => stats.error("query (10 paths)", s.message().to_owned()),
                }
            }
        }));
    }
    // Narinfos.
    for client_number in 0..2u64 {
        let (stats, stop, addr) = (stats.clone(), stop.clone(), cache.addr);
        tasks.push(tokio::spawn(async move {
            let mut x = 7 + client_number;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                let path = format!(
                    "/{}.narinfo",
                    sample::output_path((x >> 17) % NARINFOS).hash()
                );
                let t = Instant::now();
                let r = tokio::task::spawn_blocking(move || http::get(addr, &path))
                    .await
                    .unwrap();
                if r.status == 200 {
                    stats.ok("narinfo", t.elapsed());
                } else {
                    stats.error("narinfo", format!("{}: {}", r.status, r.text()));
                }
            }
        }));
    }
    // The dashboard.
    {
        let (stats, stop, addr) = (stats.clone(), stop.clone(), agg.addr);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = tokio::task::spawn_blocking(move || http::get(addr, "/"))
                    .await
                    .unwrap();
                if r.status == 200 {
                    stats.ok("dashboard", t.elapsed());
                } else {
                    stats.error("dashboard", format!("{}", r.status));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }));
    }

    // Restarts and memory, from here.
    let mut logs = logs;
    let began = Instant::now();
    let mut rss: Vec<(u64, Vec<u64>)> = Vec::new();
    let mut restarted = 0;
    let mut last_restart = Instant::now();
    while began.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let mut row: Vec<u64> = logs.iter().map(|l| rss_mib(l.pid())).collect();
        row.push(rss_mib(agg.pid()));
        row.push(rss_mib(cache.pid()));
        rss.push((began.elapsed().as_secs(), row));
        if last_restart.elapsed() >= Duration::from_secs(60) {
            let log = &mut logs[restarted % 3];
            eprintln!(
                "{:>4} s: restarting {}",
                began.elapsed().as_secs(),
                log.origin
            );
            log.stop();
            log.restart();
            restarted += 1;
            last_restart = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Let the last hook submits finish.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Everything submitted reached the aggregator, verified.
    let mut final_sizes = Vec::new();
    for log in &logs {
        let body = http::get(log.addr, "/checkpoint").body;
        let note = tally_core::Note::parse(&body).unwrap();
        let size: u64 = note.text().lines().nth(1).unwrap().parse().unwrap();
        agg.wait_verified(&log.origin, size).await;
        final_sizes.push(size);
    }

    println!("## Soak: {seconds} s, 3 logs, {restarted} log restarts");
    println!();
    println!("| load | requests | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    let latencies = stats.latencies.lock().unwrap();
    let errors = stats.errors.lock().unwrap();
    let kinds: std::collections::BTreeSet<&str> =
        latencies.keys().chain(errors.keys()).copied().collect();
    for kind in kinds {
        let mut l = latencies.get(kind).cloned().unwrap_or_default();
        l.sort_unstable();
        println!(
            "| {kind} | {} | {} | {:.1} | {:.1} | {:.1} |",
            l.len(),
            errors.get(kind).map_or(0, Vec::len),
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&l, 1.0)
        );
    }
    for (kind, e) in errors.iter() {
        for why in e.iter().take(5) {
            println!("- {kind} error: {why}");
        }
    }
    println!();
    println!("Final log sizes {final_sizes:?}, all verified by the aggregator.");
    println!();
    println!("| t (s) | log 1 | log 2 | log 3 | aggregator | cache |");
    println!("|---|---|---|---|---|---|");
    for (t, row) in rss.iter().filter(|(t, _)| t % 60 < 10) {
        let cells: Vec<String> = row.iter().map(|m| format!("{m} MiB")).collect();
        println!("| {t} | {} |", cells.join(" | "));
    }
    let total_errors: usize = errors.values().map(Vec::len).sum();
    if total_errors > 0 {
        std::process::exit(1);
    }
}
