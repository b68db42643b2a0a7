//! Storage benchmark at scale: durable appends, bytes on disk, and proof generation.
//!
//! ```text
//! cargo bench -p tally-store --bench store                 # 1,000,000 attestations
//! TALLY_BENCH_ENTRIES=100000 TALLY_BENCH_BATCH=5000 cargo bench -p tally-store --bench store
//! ```
//!
//! The append figure times `LogStore::append_batch` only (batches of 1,000 realistic
//! attestations, each batch one durable commit); generating the samples is excluded. The
//! proof figures are criterion measurements against the finished log.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tally_core::map::MapKey;
use tally_core::{KeyName, SigningKey, sample};
use tally_store::LogStore;

fn main() {
    let n: u64 = std::env::var("TALLY_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let batch_size: u64 = std::env::var("TALLY_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("log.redb");
    let store = LogStore::open(&path).expect("open");
    let key = SigningKey::from_seed(KeyName::new("bench.example/log").expect("name"), [3; 32]);

    let mut appending = Duration::ZERO;
    let mut leaf_bytes = 0u64;
    let mut start = 0;
    while start < n {
        let end = (start + batch_size).min(n);
        let batch: Vec<_> = (start..end).map(sample::attestation).collect();
        leaf_bytes += batch.iter().map(|a| a.as_bytes().len() as u64).sum::<u64>();
        let t = Instant::now();
        store.append_batch(&key, &[&batch]).expect("append");
        appending += t.elapsed();
        start = end;
        if start % 100_000 == 0 {
            eprintln!("  {start} appended");
        }
    }
    let file = std::fs::metadata(&path).expect("stat").len();
    println!("entries: {n}, batches of {batch_size}, one durable commit each");
    println!(
        "durable append: {:.0} attestations/s ({:.1} s)",
        n as f64 / appending.as_secs_f64(),
        appending.as_secs_f64()
    );
    println!(
        "on disk: {:.0} bytes per attestation ({} bytes in all; leaves average {:.0} bytes)",
        file as f64 / n as f64,
        file,
        leaf_bytes as f64 / n as f64
    );

    // The same work with no storage at all: the tree and the map computed in memory, the
    // hashing that any durable append must do, for the ratio to the limit.
    let attestations: Vec<_> = (0..n).map(sample::attestation).collect();
    let t = Instant::now();
    let mut replay = tally_core::replay::Replay::new();
    for a in &attestations {
        replay.push(a.as_bytes());
    }
    black_box(replay.map_root());
    let cpu = t.elapsed();
    println!(
        "in memory (tree and map hashing, no storage): {:.0} attestations/s, {:.2} µs each",
        n as f64 / cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / n as f64
    );
    drop((replay, attestations));

    let reader = store.read().expect("read");
    let size = reader.size();
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let mut i = 0u64;
    c.bench_function(&format!("inclusion + consistency proof at {size}"), |b| {
        b.iter(|| {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let index = (i >> 20) % size;
            let old = (i >> 7) % size + 1;
            black_box(reader.inclusion_proof(index, size).expect("proof"));
            black_box(reader.consistency_proof(old, size).expect("proof"));
        })
    });
    c.bench_function(&format!("map proof at {size} keys"), |b| {
        b.iter(|| {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = MapKey::for_path(&sample::output_path((i >> 20) % size).hash());
            black_box(reader.map_proof(&key).expect("map proof"));
        })
    });
    c.final_summary();
}
