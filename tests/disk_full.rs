//! A full disk, for real: the log's and the aggregator's data directories are small tmpfs
//! mounts (the tests run as root), filled up by the load. Submits are then refused with
//! RESOURCE_EXHAUSTED and a log line naming the database; nothing acknowledged is lost and
//! the database stays readable; once the mount is made larger, both carry on by themselves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tally_core::replay::Replay;
use tally_core::{Attestation, sample};
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;
use tally_tests::daemon::{AggregatorDaemon, LogDaemon};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }

    fn grow(&self, mib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Submits `batch`; the indexes on success, the status otherwise.
async fn submit(address: &Address, batch: &[Attestation]) -> Result<Vec<u64>, tonic::Status> {
    let mut c = client::connect(address, BearerToken::default())
        .await
        .unwrap();
    let r = c
        .submit(v1::SubmitRequest {
            attestations: batch.iter().map(|a| a.as_bytes().to_vec()).collect(),
        })
        .await?;
    Ok(r.into_inner().results.iter().map(|r| r.index).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_loses_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let log_data = Tmpfs::mount(&dir.path().join("log-data"), 12);
    let log = LogDaemon::start(
        &dir.path().join("log"),
        "full.disk.test/log",
        &[
            &format!("data_dir = \"{}\"", log_data.0.display()),
            "min_free_mb = 3",
        ],
    );
    let address: Address = log.socket().parse().unwrap();

    // Fill it: batches of 500 until the log refuses one.
    let mut next = 0u64;
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let refusal = loop {
        let batch: Vec<Attestation> = (next..next + 500).map(sample::attestation).collect();
        match submit(&address, &batch).await {
            Ok(indexes) => {
                acked.extend((next..).zip(indexes));
                next += 500;
            }
            Err(status) => break status,
        }
        assert!(next < 1_000_000, "the disk never filled up");
    };
    assert_eq!(
        refusal.code(),
        tonic::Code::ResourceExhausted,
        "{refusal:?}"
    );
    assert!(refusal.message().contains("free some space"), "{refusal:?}");
    let database = log_data.0.join("log.redb");
    assert!(
        log.log().contains(&database.display().to_string()),
        "the log line names the database:\n{}",
        log.log()
    );
    println!("the log filled its 12 MiB tmpfs at {} entries", acked.len());

    // Nothing acknowledged is lost, and reads go on.
    let check = |entries: &[Vec<u8>], acked: &[(u64, u64)]| {
        for (n, index) in acked {
            assert_eq!(entries[*index as usize], sample::attestation(*n).as_bytes());
        }
    };
    let (_, entries) = log.read_all().await;
    check(&entries, &acked);

    // An aggregator on a disk of its own, too small for the whole log, stops with the
    // reason in its status.
    let agg_data = Tmpfs::mount(&dir.path().join("agg-data"), 8);
    let agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &[log.follow()],
        &[
            &format!("data_dir = \"{}\"", agg_data.0.display()),
            "min_free_mb = 2",
            "sync_chunk = 1000",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = match client::connect_aggregator(&Address::Http(agg.url())).await {
            Ok(mut c) => c
                .list_logs(v1::ListLogsRequest {})
                .await
                .unwrap()
                .into_inner()
                .logs
                .remove(0),
            Err(e) => panic!("the aggregator is gone ({e}):\n{}", agg.log()),
        };
        if s.detail.contains("free some space") {
            assert!(s.synced_size < acked.len() as u64, "{s:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the aggregator never ran out: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // More room: both carry on, with no restart.
    log_data.grow(64);
    agg_data.grow(64);
    let deadline = Instant::now() + Duration::from_secs(30);
    let more: Vec<Attestation> = (next..next + 500).map(sample::attestation).collect();
    loop {
        match submit(&address, &more).await {
            Ok(indexes) => {
                acked.extend((next..).zip(indexes));
                break;
            }
            Err(s) => assert!(Instant::now() < deadline, "still refused: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (signed, entries) = log.read_all().await;
    check(&entries, &acked);
    let mut replay = Replay::of(&entries);
    assert_eq!(signed.checkpoint().tree, replay.tree_head());
    assert_eq!(signed.checkpoint().map_root, replay.map_root());
    agg.wait_verified(&log.origin, entries.len() as u64).await;
}
