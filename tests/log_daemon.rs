//! The log daemon as a separate process, over real gRPC and HTTP on loopback: the read and
//! write APIs, batching, conflicts, authorisation, bad input, C2SP tlog-tiles, metrics, and
//! restarts.

use std::time::Duration;

use tally_core::answer::{LogAnswer, Verified};
use tally_core::replay::Replay;
use tally_core::tiles::{TileKind, TilePath};
use tally_core::tlog::{self, TreeHead};
use tally_core::{Hash, SignedCheckpoint, sample};
use tally_proto::client::{self, Address, BearerToken, Client};
use tally_proto::v1;
use tally_tests::daemon::LogDaemon;
use tally_tests::http;
use tonic::Code;

async fn connect(addr: &str, token: Option<&str>) -> Client {
    let address: Address = addr.parse().unwrap();
    client::connect(&address, BearerToken::new(token).unwrap())
        .await
        .unwrap()
}

fn request(range: std::ops::Range<u64>) -> v1::SubmitRequest {
    v1::SubmitRequest {
        attestations: range
            .map(|i| sample::attestation(i).as_bytes().to_vec())
            .collect(),
    }
}

async fn checkpoint(client: &mut Client, log: &LogDaemon) -> SignedCheckpoint {
    let note = client
        .get_checkpoint(v1::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .note;
    SignedCheckpoint::open(&note, &log.vkey).unwrap()
}

async fn size(client: &mut Client, log: &LogDaemon) -> u64 {
    checkpoint(client, log).await.checkpoint().tree.size
}

fn metric(log: &LogDaemon, name: &str) -> f64 {
    let text = http::get(log.addr, "/metrics").text();
    text.lines()
        .find(|l| {
            l.starts_with(name)
                && l[name.len()..].starts_with([' ', '{'])
                && (!name.contains('{') || l.starts_with(name))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_read_and_verify_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogDaemon::start(dir.path(), "e2e.example/log-read", &[]);
    let mut client = connect(&log.socket(), None).await;
    assert_eq!(
        size(&mut client, &log).await,
        0,
        "a new log starts with a size-0 checkpoint"
    );

    let first = client.submit(request(0..100)).await.unwrap().into_inner();
    let indices: Vec<u64> = first.results.iter().map(|r| r.index).collect();
    assert_eq!(indices, (0..100).collect::<Vec<_>>());
    let a = SignedCheckpoint::open(&first.checkpoint.unwrap().note, &log.vkey).unwrap();
    assert!(
        a.checkpoint().tree.size >= 100,
        "the answer's checkpoint covers the submission"
    );
    client.submit(request(100..300)).await.unwrap();
    let b = checkpoint(&mut client, &log).await;
    let head = b.checkpoint().tree;
    assert_eq!(head.size, 300);

    // Resubmitting is idempotent.
    let again = client.submit(request(5..6)).await.unwrap().into_inner();
    assert_eq!(
        (again.results[0].index, again.results[0].duplicate),
        (5, true)
    );
    assert_eq!(size(&mut client, &log).await, 300);

    // Entries, in bounded pages, reproduce both roots of the checkpoint.
    let mut entries = Vec::new();
    for start in (0..300).step_by(120) {
        let mut stream = client
            .get_entries(v1::GetEntriesRequest {
                start,
                end: (start + 120).min(300),
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(page) = stream.message().await.unwrap() {
            assert_eq!(page.start, entries.len() as u64);
            assert!(page.entries.len() <= 256);
            entries.extend(page.entries);
        }
    }
    assert_eq!(entries[7], sample::attestation(7).as_bytes());
    let mut replay = Replay::of(&entries);
    assert_eq!(replay.tree_head(), head);
    assert_eq!(replay.map_root(), b.checkpoint().map_root);

    // Proofs verify against the signed tree heads.
    for index in [0, 99, 150, 299] {
        let p = client
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                index,
                tree_size: 300,
            })
            .await
            .unwrap()
            .into_inner();
        let p = tlog::InclusionProof::try_from(&p).unwrap();
        p.verify(tlog::leaf_hash(&entries[index as usize]), &head)
            .unwrap();
    }
    let old = a.checkpoint().tree;
    let p = client
        .get_consistency_proof(v1::GetConsistencyProofRequest {
            old_size: old.size,
            new_size: 300,
        })
        .await
        .unwrap()
        .into_inner();
    tlog::ConsistencyProof::try_from(&p)
        .unwrap()
        .verify(&old, &head)
        .unwrap();

    // Lookup answers verify offline, by full path and by hash part, present and absent.
    let wanted = sample::attestation(42);
    let path = wanted.output_path();
    for query in [path.to_string(), path.hash().to_string()] {
        let r = client
            .lookup(v1::LookupRequest { path: query })
            .await
            .unwrap()
            .into_inner();
        match LogAnswer::try_from(&r)
            .unwrap()
            .verify(&log.vkey, &path.hash())
            .unwrap()
        {
            Verified::Present {
                index, attestation, ..
            } => {
                assert_eq!(index, 42);
                assert_eq!(*attestation, wanted);
            }
            v => panic!("expected present, got {v:?}"),
        }
    }
    let absent = sample::output_path(1_000_000);
    let r = client
        .lookup(v1::LookupRequest {
            path: absent.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let answer = LogAnswer::try_from(&r).unwrap();
    assert!(matches!(
        answer.verify(&log.vkey, &absent.hash()),
        Ok(Verified::Absent { .. })
    ));
    // The same proof of absence cannot pass for a present path.
    assert!(answer.verify(&log.vkey, &path.hash()).is_err());

    // A restart keeps everything.
    log.stop();
    log.restart();
    let mut client = connect(&log.url(), None).await;
    assert_eq!(checkpoint(&mut client, &log).await.checkpoint().tree, head);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_submitters_share_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(
        dir.path(),
        "e2e.example/log-batch",
        &["batch_period_ms = 300"],
    );
    let client = connect(&log.socket(), None).await;
    let before = metric(&log, "tally_log_batches_total");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let mut c = client.clone();
        tasks.spawn(async move {
            c.submit(request(i..i + 1))
                .await
                .map(|r| r.into_inner().results[0].index)
        });
    }
    let mut indices = Vec::new();
    while let Some(r) = tasks.join_next().await {
        indices.push(r.unwrap().unwrap());
    }
    indices.sort_unstable();
    assert_eq!(indices, (0..40).collect::<Vec<_>>());
    let batches = metric(&log, "tally_log_batches_total") - before;
    assert!(
        (1.0..=4.0).contains(&batches),
        "40 concurrent submits took {batches} batches"
    );
    assert!(metric(&log, "tally_log_submit_duration_seconds_count") >= 40.0);
    assert_eq!(metric(&log, "tally_log_tree_size"), 40.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_submissions_are_refused_named_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(dir.path(), "e2e.example/log-conflict", &[]);
    let mut client = connect(&log.socket(), None).await;
    client.submit(request(0..3)).await.unwrap();
    let held = sample::attestation(1);
    let other = sample::attestation_with_nar(1, Hash::of(b"a different build"));

    // A good new attestation and a conflicting one: the request is refused as a whole.
    let req = v1::SubmitRequest {
        attestations: vec![
            sample::attestation(10).as_bytes().to_vec(),
            other.as_bytes().to_vec(),
        ],
    };
    let status = client.submit(req).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let message = status.message();
    assert!(message.contains(&held.nar_hash().to_string()), "{message}");
    assert!(message.contains(&other.nar_hash().to_string()), "{message}");
    assert!(
        message.contains(&held.output_path().to_string()),
        "{message}"
    );
    let details = client::submit_conflicts(&status).unwrap();
    assert_eq!(details.conflicts.len(), 1);
    assert_eq!(
        (
            details.conflicts[0].position,
            details.conflicts[0].existing_index
        ),
        (1, 1)
    );
    assert_eq!(
        size(&mut client, &log).await,
        3,
        "nothing from the refused request was written"
    );
    let r = client
        .lookup(v1::LookupRequest {
            path: sample::output_path(10).to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.entry.is_none());
    assert_eq!(
        metric(
            &log,
            "tally_log_submissions_rejected_total{reason=\"Conflict\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("submit.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let log = LogDaemon::start(
        dir.path(),
        "e2e.example/log-bad",
        &[
            "max_message_bytes = 65536",
            "batch_size = 100",
            &format!("submit_token_file = \"{}\"", token_file.display()),
        ],
    );
    let mut socket = connect(&log.socket(), None).await;
    socket.submit(request(0..5)).await.unwrap();

    let good = String::from_utf8(sample::attestation(50).as_bytes().to_vec()).unwrap();
    let out_hash = sample::output_path(50).hash().to_string();
    let nar = sample::attestation(50).nar_hash().to_string();
    let mangled = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        v1::SubmitRequest {
            attestations: vec![good.replacen(from, to, 1).into_bytes()],
        }
    };
    let bad_hash_char = format!("{}e", &out_hash[..31]);
    let cases: Vec<(&str, v1::SubmitRequest, Code, &str)> = vec![
        (
            "malformed store path",
            mangled(
                &format!("path /nix/store/{out_hash}"),
                &format!("path /nix/store/{bad_hash_char}"),
            ),
            Code::InvalidArgument,
            "nixbase32",
        ),
        (
            "wrong hash length",
            mangled(&nar, &nar[..nar.len() - 1]),
            Code::InvalidArgument,
            "nar-hash",
        ),
        (
            "non-canonical leaf",
            mangled("\nnar-size ", "\nnar-size 0"),
            Code::InvalidArgument,
            "not canonical",
        ),
        (
            "not UTF-8",
            v1::SubmitRequest {
                attestations: vec![vec![0xff, 0xfe]],
            },
            Code::InvalidArgument,
            "UTF-8",
        ),
        (
            "empty request",
            v1::SubmitRequest {
                attestations: vec![],
            },
            Code::InvalidArgument,
            "no attestations",
        ),
        (
            "too many in one request",
            request(1000..1101),
            Code::InvalidArgument,
            "at most 100",
        ),
        (
            "oversized request",
            v1::SubmitRequest {
                attestations: vec![vec![b'x'; 70_000]],
            },
            Code::OutOfRange,
            "",
        ),
        (
            "conflicting resubmission",
            v1::SubmitRequest {
                attestations: vec![
                    sample::attestation_with_nar(2, Hash::ZERO)
                        .as_bytes()
                        .to_vec(),
                ],
            },
            Code::AlreadyExists,
            "already attested",
        ),
    ];
    for (name, req, code, needle) in cases {
        let status = socket.submit(req).await.unwrap_err();
        // tonic reports an oversized message as OUT_OF_RANGE or RESOURCE_EXHAUSTED by version.
        let code_ok = status.code() == code
            || (code == Code::OutOfRange && status.code() == Code::ResourceExhausted);
        assert!(code_ok, "{name}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{name}: {}",
            status.message()
        );
        assert_eq!(size(&mut socket, &log).await, 5, "{name}: nothing written");
    }

    // Authorisation over TCP.
    let mut anonymous = connect(&log.url(), None).await;
    let status = anonymous.submit(request(60..61)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let mut wrong = connect(&log.url(), Some("not-the-token")).await;
    assert_eq!(
        wrong.submit(request(60..61)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(size(&mut socket, &log).await, 5);
    let mut right = connect(&log.url(), Some("s3cret-token")).await;
    right.submit(request(60..61)).await.unwrap();
    assert_eq!(size(&mut socket, &log).await, 6);

    // Reads beyond the tree.
    let beyond = [
        socket
            .get_entries(v1::GetEntriesRequest { start: 4, end: 7 })
            .await
            .err(),
        socket
            .get_entries(v1::GetEntriesRequest {
                start: 0,
                end: 1001,
            })
            .await
            .err(),
        socket
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                index: 6,
                tree_size: 6,
            })
            .await
            .err(),
        socket
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                index: 1,
                tree_size: 7,
            })
            .await
            .err(),
        socket
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: 2,
                new_size: 7,
            })
            .await
            .err(),
        socket
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: 5,
                new_size: 3,
            })
            .await
            .err(),
    ];
    for (i, status) in beyond.into_iter().enumerate() {
        let status = status.unwrap_or_else(|| panic!("read {i} beyond the tree succeeded"));
        assert_eq!(status.code(), Code::OutOfRange, "read {i}: {status:?}");
    }
    let status = socket
        .lookup(v1::LookupRequest {
            path: "not a path".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Still serving, and every refusal counted by reason.
    assert_eq!(size(&mut socket, &log).await, 6);
    assert_eq!(
        metric(
            &log,
            "tally_log_submissions_rejected_total{reason=\"Invalid\"}"
        ),
        6.0
    );
    assert_eq!(
        metric(
            &log,
            "tally_log_submissions_rejected_total{reason=\"Unauthenticated\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &log,
            "tally_log_submissions_rejected_total{reason=\"Conflict\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_submits_are_denied_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(dir.path(), "e2e.example/log-closed", &[]);
    let mut tcp = connect(&log.url(), Some("anything")).await;
    let status = tcp.submit(request(0..1)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("Unix socket"),
        "{}",
        status.message()
    );
    assert_eq!(size(&mut tcp, &log).await, 0);
    assert_eq!(
        metric(
            &log,
            "tally_log_submissions_rejected_total{reason=\"PermissionDenied\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tiles_alone_verify_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(dir.path(), "e2e.example/log-tiles", &[]);
    let mut client = connect(&log.socket(), None).await;
    for start in (0..612).step_by(200) {
        client
            .submit(request(start..(start + 200).min(612)))
            .await
            .unwrap();
    }

    // A tlog-tiles client: the checkpoint, then tiles and bundles, nothing else.
    let response = http::get(log.addr, "/checkpoint");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    let signed = SignedCheckpoint::open(&response.body, &log.vkey).unwrap();
    let head = signed.checkpoint().tree;
    assert_eq!(head.size, 612);

    let mut leaf_hashes = Vec::new();
    let mut entries = Vec::new();
    for n in 0.. {
        let Some(tile) = TilePath::for_tree(TileKind::Hash { level: 0 }, n, head.size) else {
            break;
        };
        let r = http::get(log.addr, &format!("/{tile}"));
        assert_eq!(r.status, 200, "{tile}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(r.body.len() as u64, tile.width() * 32);
        let bundle_path = TilePath {
            kind: TileKind::Entries,
            ..tile
        };
        let bundle = http::get(log.addr, &format!("/{bundle_path}"));
        assert_eq!(bundle.status, 200, "{bundle_path}");
        let bundle_entries = tally_core::tiles::bundle_entries(&bundle.body).unwrap();
        assert_eq!(bundle_entries.len() as u64, tile.width());
        for (i, e) in bundle_entries.iter().enumerate() {
            assert_eq!(
                tlog::leaf_hash(e).0,
                r.body[i * 32..(i + 1) * 32],
                "entry {}",
                n * 256 + i as u64
            );
            entries.push(e.to_vec());
        }
        leaf_hashes.extend(r.body.chunks(32).map(|c| Hash::from_slice(c).unwrap()));
    }
    assert_eq!(leaf_hashes.len(), 612);
    let level1 = TilePath::for_tree(TileKind::Hash { level: 1 }, 0, head.size).unwrap();
    assert_eq!(level1.partial, Some(2));
    let l1 = http::get(log.addr, &format!("/{level1}"));
    assert_eq!(l1.status, 200);
    for k in 0..2 {
        let sub = Replay::of(&entries[k * 256..(k + 1) * 256])
            .tree_head()
            .root;
        assert_eq!(
            &l1.body[k * 32..(k + 1) * 32],
            &sub.0[..],
            "level 1 hash {k}"
        );
    }
    let mut replay = Replay::of(&entries);
    assert_eq!(
        replay.tree_head(),
        head,
        "the log root from tiles and bundles"
    );
    assert_eq!(
        replay.map_root(),
        signed.checkpoint().map_root,
        "the map root from bundles"
    );
    assert_eq!(
        mth(&leaf_hashes),
        head.root,
        "RFC 6962 over the level-0 tile hashes"
    );

    // What is not there: wider than the tree, beyond it, or not a tile path.
    for (path, status) in [
        ("/tile/0/002", 404),
        ("/tile/0/002.p/101", 404),
        ("/tile/0/003", 404),
        ("/tile/1/000", 404),
        ("/tile/2/000.p/1", 404),
        ("/tile/entries/003.p/1", 404),
        ("/tile/0/2", 400),
        ("/tile/0/002.p/0", 400),
        ("/tile/x/000", 400),
    ] {
        assert_eq!(http::get(log.addr, path).status, status, "{path}");
    }
    // A narrower partial tile than the tree has is a prefix: still served.
    let prefix = http::get(log.addr, "/tile/0/002.p/50");
    assert_eq!(prefix.status, 200);
    assert_eq!(prefix.body.len(), 50 * 32);
    let head_only = http::request(log.addr, "HEAD", "/tile/0/000", &[], &[]).unwrap();
    assert_eq!(head_only.status, 200);
    assert!(head_only.body.is_empty());
    assert_eq!(http::get(log.addr, "/healthz").text(), "ok\n");
    let _ = Duration::ZERO;
}

/// RFC 6962 MTH over leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::of(b""),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            tlog::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

#[test]
fn head_of_empty_log_is_the_empty_root() {
    assert_eq!(
        Replay::new().tree_head(),
        TreeHead {
            size: 0,
            root: Hash::of(b"")
        }
    );
}
