//! Reads on ordinary HTTP infrastructure: a log publishes its checkpoint and tlog-tiles into
//! a directory, crash-safely, and real nginx serves that directory; an aggregator follows
//! the log through nginx alone, over tiles, and verifies it.

use std::time::{Duration, Instant};

use tally_core::{Attestation, Note, sample};
use tally_tests::daemon::{AggregatorDaemon, LogDaemon};
use tally_tests::nginx::Nginx;
use tally_tests::{http, run_ok};

/// The tree size of the checkpoint in a tiles directory.
fn published(dir: &std::path::Path) -> u64 {
    std::fs::read(dir.join("checkpoint"))
        .ok()
        .and_then(|b| Note::parse(&b).ok())
        .and_then(|n| n.text().lines().nth(1).and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn wait_published(dir: &std::path::Path, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while published(dir) < size {
        assert!(
            Instant::now() < deadline,
            "published {} of {size}",
            published(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every tile and bundle that the directory's checkpoint needs is there, and the entries
/// hash to its root: what a client reading the directory alone would check.
fn check_directory(dir: &std::path::Path, vkey: &tally_core::VerifyingKey) -> u64 {
    let note = std::fs::read(dir.join("checkpoint")).unwrap();
    let signed = tally_core::SignedCheckpoint::open(&note, vkey).unwrap();
    let size = signed.checkpoint().tree.size;
    let mut entries = Vec::new();
    for t in tally_core::tiles::new_tiles(0, size) {
        let bytes = std::fs::read(dir.join(t.to_string()))
            .unwrap_or_else(|e| panic!("{t} for the checkpoint of {size}: {e}"));
        if t.kind == tally_core::tiles::TileKind::Entries {
            entries.extend(
                tally_core::tiles::bundle_entries(&bytes)
                    .unwrap()
                    .into_iter()
                    .map(<[u8]>::to_vec),
            );
        }
    }
    let replay = tally_core::replay::Replay::of(&entries);
    assert_eq!(replay.tree_head(), signed.checkpoint().tree);
    size
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_serves_the_published_tiles_and_an_aggregator_follows_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let tiles = dir.path().join("tiles");
    let mut log = LogDaemon::start(
        &dir.path().join("log"),
        "static.tiles.test/log",
        &[&format!("tiles_dir = \"{}\"", tiles.display())],
    );
    let entries: Vec<Attestation> = (0..3000).map(sample::attestation).collect();
    log.submit(&entries).await;
    wait_published(&tiles, 3000);
    // 3,000 = 11 × 256 + 184: eleven full level-0 tiles and bundles, then partial ones.
    for path in [
        "tile/0/010",
        "tile/0/011.p/184",
        "tile/entries/010",
        "tile/entries/011.p/184",
        "tile/1/000.p/11",
    ] {
        assert!(tiles.join(path).is_file(), "{path}");
    }
    assert!(
        !tiles.join("tile/0/000.p").exists(),
        "superseded partials go"
    );
    assert_eq!(check_directory(&tiles, &log.vkey), 3000);

    // Killed while publishing, the directory is never ahead of its tiles.
    for round in 0..3u64 {
        let more: Vec<Attestation> = (0..2000)
            .map(|i| sample::attestation(10_000 + round * 2000 + i))
            .collect();
        let submitting = {
            let socket = log.socket();
            tokio::spawn(async move {
                let address = socket.parse().unwrap();
                let mut c = tally_proto::client::connect(&address, Default::default())
                    .await
                    .unwrap();
                for chunk in more.chunks(100) {
                    let _ = c
                        .submit(tally_proto::v1::SubmitRequest {
                            attestations: chunk.iter().map(|a| a.as_bytes().to_vec()).collect(),
                        })
                        .await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(150 + 200 * round)).await;
        log.kill();
        let _ = submitting.await;
        check_directory(&tiles, &log.vkey);
        log.restart();
    }
    let size = {
        let body = http::get(log.addr, "/checkpoint").body;
        let note = Note::parse(&body).unwrap();
        note.text().lines().nth(1).unwrap().parse::<u64>().unwrap()
    };
    wait_published(&tiles, size);
    assert_eq!(check_directory(&tiles, &log.vkey), size);

    // nginx serves the directory, with the cache headers docs/operations.md gives.
    let nginx = Nginx::serve(&dir.path().join("nginx"), &tiles);
    let r = http::get(nginx.addr, "/checkpoint");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let r = http::get(nginx.addr, "/tile/0/000");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 256 * 32);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // An aggregator that reaches the log only through nginx follows and verifies it.
    let follow = vec![(
        log.origin.clone(),
        log.vkey.to_note_vkey(),
        vec![format!("tiles+{}", nginx.url())],
    )];
    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &follow, &["sync_chunk = 1000"]);
    agg.wait_verified(&log.origin, size).await;
    // It keeps following as the log grows.
    let later: Vec<Attestation> = (50_000..50_700).map(sample::attestation).collect();
    log.submit(&later).await;
    wait_published(&tiles, size + 700);
    agg.wait_verified(&log.origin, size + 700).await;
    agg.assert_trusted(&log, &later[699].output_path().to_string());
}

/// A tiles URL that serves bytes other than the log's is faulty, and the log is verified
/// from its other URL.
#[tokio::test(flavor = "multi_thread")]
async fn a_tiles_mirror_that_lies_is_marked_faulty() {
    let dir = tempfile::tempdir().unwrap();
    let tiles = dir.path().join("tiles");
    let log = LogDaemon::start(
        &dir.path().join("log"),
        "lied.tiles.test/log",
        &[&format!("tiles_dir = \"{}\"", tiles.display())],
    );
    let entries: Vec<Attestation> = (0..600).map(sample::attestation).collect();
    log.submit(&entries).await;
    wait_published(&tiles, 600);
    // A copy with one entry bundle altered.
    let copy = dir.path().join("copy");
    run_ok(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(&tiles)
            .arg(&copy),
    );
    let bundle = copy.join("tile/entries/001");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    let nginx = Nginx::serve(&dir.path().join("nginx"), &copy);
    let follow = vec![(
        log.origin.clone(),
        log.vkey.to_note_vkey(),
        vec![
            format!("tiles+{}", nginx.url()),
            format!("tiles+{}", log.url()),
        ],
    )];
    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &follow, &[]);
    agg.wait_verified(&log.origin, 600).await;
    let status = agg.logs().await.remove(0);
    assert!(status.url_states[0].starts_with("faulty"), "{status:?}");
    assert_eq!(status.url_states[1], "ok", "{status:?}");
}
