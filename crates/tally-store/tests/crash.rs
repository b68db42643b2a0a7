//! Crash safety with a real process: a child appends batches and prints each acknowledged
//! size; the parent SIGKILLs it at random moments and checks, after every reopen, that every
//! acknowledged entry is there, that the checkpoint verifies and matches the roots
//! recomputed from the stored entries, and that appending continues.
//!
//! `TALLY_CRASH_ROUNDS` sets the number of kills (24 by default, as CI runs it; see
//! docs/BENCHMARKS.md for a run of 1,000).

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Replay, attestation, key};
use tally_core::SignedCheckpoint;
use tally_store::LogStore;

const CHILD_ENV: &str = "TALLY_STORE_CRASH_CHILD";

/// The child's loop. Runs only when the parent sets `TALLY_STORE_CRASH_CHILD`.
#[test]
fn crash_child() {
    let Some(db) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = LogStore::open(db.as_ref()).unwrap();
    let key = key();
    let mut rng = Lcg(std::process::id().into());
    loop {
        let size = store.read().unwrap().size();
        let n = 1 + rng.next() % 16;
        let batch: Vec<_> = (size..size + n).map(attestation).collect();
        let result = store.append_batch(&key, &[&batch]).unwrap();
        println!("ack {}", result.checkpoint.checkpoint.tree.size);
    }
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.redb");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    let key = key();
    let mut acknowledged = 0u64;
    let rounds: usize = std::env::var("TALLY_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(24);
    // The log only ever holds attestation(0), attestation(1), …, and the size it reopens at
    // never falls below one already checked (each round ends by acknowledging one more), so
    // one replay grows with it.
    let mut replay = Replay::new();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(size) = line.strip_prefix("ack ") {
                    last = Some(size.parse::<u64>().unwrap());
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(30 + rng.next() % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(size) = reader.join().unwrap() {
            assert!(size >= acknowledged, "acknowledged sizes only grow");
            acknowledged = size;
        }

        let store = LogStore::open(&db).unwrap();
        let reader = store.read().unwrap();
        let size = reader.size();
        assert!(
            size >= acknowledged,
            "round {round}: size {size} is below acknowledged {acknowledged}"
        );
        let checked = replay.size();
        assert!(
            size >= checked,
            "round {round}: size {size} fell below {checked}"
        );
        let entries = reader.entries(checked, size).unwrap();
        for (i, e) in (checked..).zip(&entries) {
            assert_eq!(
                e.as_slice(),
                attestation(i).as_bytes(),
                "round {round}: entry {i}"
            );
            replay.push(e);
        }
        if size > 0 {
            let stored = reader.checkpoint().unwrap().unwrap();
            let signed = SignedCheckpoint::open(&stored.note, &key.verifying_key()).unwrap();
            assert_eq!(
                signed.checkpoint().tree,
                replay.tree_head(),
                "round {round}: log root"
            );
            assert_eq!(
                signed.checkpoint().map_root,
                replay.map_root(),
                "round {round}: map root"
            );
        }
        drop(reader);
        // Appending continues where the log stands.
        let next = store.append_batch(&key, &[&[attestation(size)]]).unwrap();
        assert_eq!(next.checkpoint.checkpoint.tree.size, size + 1);
        acknowledged = size + 1;
    }
    eprintln!("{rounds} kills, {acknowledged} entries acknowledged");
    assert!(
        acknowledged > rounds as u64 * 2,
        "the child made progress: {acknowledged}"
    );
}
