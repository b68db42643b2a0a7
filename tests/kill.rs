//! SIGKILL of the real daemons under load. A log killed while `tally bench submit` and
//! acknowledged submitters run keeps every acknowledged attestation, at the index it was
//! acknowledged at, under a checkpoint that matches its entries. An aggregator killed in
//! the middle of a sync resumes where it stood, without fetching again what it had stored,
//! and ends with a verified state.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_core::replay::Replay;
use tally_core::sample;
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;
use tally_tests::daemon::{AggregatorDaemon, LogDaemon};
use tally_tests::{http, run_ok, tally};

/// Kills of the log in the first test.
const LOG_KILLS: u64 = 4;

/// Submits batches of fresh attestations (numbered from `first`) until told to stop,
/// recording (sample number, index) for each acknowledged one. Errors (the daemon is down)
/// just move on to the next batch.
async fn acknowledged_submitter(
    socket: String,
    first: u64,
    acked: Arc<Mutex<Vec<(u64, u64)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let address: Address = socket.parse().unwrap();
    let mut next = first;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let batch: Vec<u64> = (next..next + 50).collect();
        next += 50;
        let Ok(mut c) = client::connect(&address, BearerToken::default()).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let request = v1::SubmitRequest {
            attestations: batch
                .iter()
                .map(|n| sample::attestation(*n).as_bytes().to_vec())
                .collect(),
        };
        if let Ok(r) = c.submit(request).await {
            let r = r.into_inner();
            let mut acked = acked.lock().unwrap();
            for (n, result) in batch.iter().zip(&r.results) {
                acked.push((*n, result.index));
            }
        }
    }
}

/// The size of the log's latest checkpoint.
fn log_size(log: &LogDaemon) -> u64 {
    let body = http::get(log.addr, "/checkpoint").body;
    let note = tally_core::Note::parse(&body).unwrap();
    note.text().lines().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_killed_under_load_keeps_every_acknowledged_attestation() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogDaemon::start(&dir.path().join("log"), "killed.kill.test/log", &[]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..LOG_KILLS {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let submitters: Vec<_> = (0..3)
            .map(|t| {
                tokio::spawn(acknowledged_submitter(
                    log.socket(),
                    (round * 3 + t) * 1_000_000,
                    Arc::clone(&acked),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        // The load generator, on sample numbers of its own.
        let mut bench = tally()
            .args(["bench", "submit", "--log", &log.socket()])
            .args(["--clients", "4", "--batch", "200", "--count", "50000"])
            .args(["--start", &(500_000_000 + round * 10_000_000).to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill once the load generator is well under way and some of the checkers' submits
        // are acknowledged.
        let before = acked.lock().unwrap().len();
        let size_before = log_size(&log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 500 || log_size(&log) < size_before + 5_000 {
            assert!(Instant::now() < deadline, "the load never got going");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100 + 97 * round)).await;
        log.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in submitters {
            s.await.unwrap();
        }
        let _ = bench.kill();
        let _ = bench.wait();
        log.restart();
    }

    // Everything acknowledged is where it was acknowledged, under a checkpoint that is the
    // log's own signature over exactly these entries.
    let (signed, entries) = log.read_all().await;
    let size = signed.checkpoint().tree.size;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 2000, "{} acknowledged", acked.len());
    for (n, index) in &acked {
        assert_eq!(
            entries[*index as usize],
            sample::attestation(*n).as_bytes(),
            "acknowledged sample {n} at index {index}"
        );
    }
    let mut replay = Replay::of(&entries);
    assert_eq!(signed.checkpoint().tree, replay.tree_head());
    assert_eq!(signed.checkpoint().map_root, replay.map_root());
    println!(
        "{LOG_KILLS} kills under load: {} acknowledged by the checkers, {size} entries in all, every one in place",
        acked.len()
    );
}

/// The aggregator's `entries_synced` counter, from its /metrics.
fn entries_synced(agg: &AggregatorDaemon) -> u64 {
    let text = http::get(agg.addr, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix("tally_aggregator_entries_synced_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aggregator_killed_mid_sync_resumes_and_verifies() {
    const SIZE: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(&dir.path().join("log"), "synced.kill.test/log", &[]);
    run_ok(
        tally()
            .args(["bench", "submit", "--log", &log.socket()])
            .args([
                "--clients",
                "4",
                "--batch",
                "1000",
                "--count",
                &SIZE.to_string(),
            ]),
    );
    let mut agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &[log.follow()],
        &["sync_chunk = 1000"],
    );
    // Kill it part-way through the sync, once it has been syncing long enough to have
    // committed durably (every 2 s).
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let synced = loop {
        let s = agg.logs().await.remove(0);
        if s.synced_size > 0 && started.elapsed() > Duration::from_secs(3) {
            break s.synced_size;
        }
        assert!(Instant::now() < deadline, "sync never started: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    agg.kill();
    println!("killed after {:?}", started.elapsed());
    assert!(synced < SIZE, "killed too late: synced {synced}");

    agg.restart();
    agg.wait_verified(&log.origin, SIZE).await;
    // It fetched again at most what it synced in its last 2 s, not everything.
    let fetched = entries_synced(&agg);
    println!("killed at {synced} of {SIZE}; fetched {fetched} after the restart");
    assert!(
        fetched < SIZE,
        "fetched all {fetched} entries again after the restart"
    );
    // Its state verifies: the log's own checkpoint, and answers with proofs under a policy.
    let status = agg.logs().await.remove(0);
    let ours = status.verified.unwrap().note;
    let log_note = http::get(log.addr, "/checkpoint").body;
    assert_eq!(ours, log_note);
    let policy = dir.path().join("trust.policy");
    std::fs::write(
        &policy,
        format!(
            "log {}\nquorum none\nattest 1-of-1\n",
            log.vkey.to_note_vkey()
        ),
    )
    .unwrap();
    let start: u64 = 0;
    for n in [start, SIZE / 2, SIZE - 1] {
        run_ok(
            tally()
                .args(["check", "--aggregator", &agg.url(), "--policy-file"])
                .arg(&policy)
                .arg(sample::attestation(n).output_path().to_string()),
        );
    }
}
