//! Witnessed checkpoints, end to end with separate processes: a log pushing to real,
//! independent witnesses (litewitness) and to an aggregator's witness; consumers that require
//! a witness quorum; a log split between what it shows the witness and what it serves; and
//! two aggregators that catch a split view through each other.

use std::time::{Duration, Instant};

use tally_core::cosignature::CosignatureVerifier;
use tally_core::{Attestation, Note, sample};
use tally_proto::client::{self, Address};
use tally_proto::v1;
use tally_tests::daemon::{AggregatorDaemon, CacheDaemon, LogDaemon};
use tally_tests::litewitness::Litewitness;
use tally_tests::upstream::upload_synthetic;
use tally_tests::{http, nix};

/// `witnesses = [...]` for a log's config.
fn witnesses(list: &[(String, String)]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(url, vkey)| format!("{{ url = \"{url}\", vkey = \"{vkey}\" }}"))
        .collect();
    format!("witnesses = [{}]", items.join(", "))
}

/// The log's `/checkpoint`, parsed.
fn served(log: &LogDaemon) -> (u64, Note) {
    let body = http::get(log.addr, "/checkpoint").body;
    let note = Note::parse(&body).unwrap();
    let size = note.text().lines().nth(1).unwrap().parse().unwrap();
    (size, note)
}

/// Waits until the log serves a checkpoint of `size` cosigned by each of `by`.
fn wait_served(log: &LogDaemon, size: u64, by: &[&str]) -> Note {
    let verifiers: Vec<CosignatureVerifier> = by
        .iter()
        .map(|v| CosignatureVerifier::parse(v).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, note) = served(log);
        if s == size && verifiers.iter().all(|v| v.verify(&note).is_ok()) {
            return note;
        }
        assert!(
            Instant::now() < deadline,
            "the log serves size {s}, not {size} cosigned by {by:?}:\n{}\n{}",
            String::from_utf8_lossy(&note.to_bytes()),
            log.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn explain(cache: &CacheDaemon, a: &Attestation) -> serde_json::Value {
    let r = http::request(
        cache.addr,
        "GET",
        &format!("/explain/{}", a.output_path().hash()),
        &[("accept", "application/json")],
        &[],
    )
    .unwrap();
    serde_json::from_slice(&r.body).unwrap()
}

/// A log pushes to three independent witnesses (litewitness); their cosignatures appear on
/// its `/checkpoint` and in its answers; a consumer requiring two of the three refuses the
/// log's answer while only one has cosigned, and counts it once two have.
#[tokio::test(flavor = "multi_thread")]
async fn litewitness_cosignatures_count_towards_a_consumers_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let ws: Vec<Litewitness> = (1..=3)
        .map(|n| Litewitness::start(&dir.path().join(format!("w{n}")), &format!("w{n}.lw.test")))
        .collect();
    // The log's key first, so that the first witness can be told about it.
    let origin = "witnessed.lw.test/log";
    let vkey = LogDaemon::key_for(&dir.path().join("log"), origin);
    ws[0].add_log(origin, &vkey);
    let list: Vec<(String, String)> = ws.iter().map(|w| (w.url(), w.vkey.clone())).collect();
    let log = LogDaemon::start(
        &dir.path().join("log"),
        origin,
        &[
            &witnesses(&list),
            "witness_interval_secs = 1",
            "witness_quorum = 1",
        ],
    );
    let upstream = dir.path().join("upstream");
    let a = upload_synthetic(&upstream, "witnessed-path", b"built and witnessed\n");
    log.submit(std::slice::from_ref(&a)).await;
    // One witness knows the log: the checkpoint is published with its cosignature alone.
    wait_served(&log, 1, &[&ws[0].vkey]);

    let policy = format!(
        "log {vkey} {}\n{}group two 2 w1 w2 w3\nquorum two\nattest 1-of-1\n",
        log.url(),
        ws.iter()
            .enumerate()
            .map(|(i, w)| format!("witness w{} {}\n", i + 1, w.vkey))
            .collect::<String>()
    );
    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[format!("file://{}", upstream.display())],
        &policy,
        None,
        &["decision_ttl_secs = 1"],
    );
    let r = http::get(cache.addr, &format!("/{}.narinfo", a.output_path().hash()));
    assert_eq!(r.status, 502, "{}", r.text());
    let why = explain(&cache, &a);
    let detail = why["votes"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("lacks the witness quorum two") && detail.contains("w1"),
        "{why:#}"
    );

    // A second witness learns of the log; the next round gets both cosignatures.
    ws[1].add_log(origin, &vkey);
    wait_served(&log, 1, &[&ws[0].vkey, &ws[1].vkey]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http::get(cache.addr, &format!("/{}.narinfo", a.output_path().hash()));
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\n{:#}",
            r.text(),
            explain(&cache, &a)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let why = explain(&cache, &a);
    assert_eq!(
        why["votes"][0]["cosigned_by"],
        serde_json::json!(["w1", "w2"])
    );
    // The log counted a witness that does not know it as a failure, and said so.
    assert!(
        http::get(log.addr, "/metrics")
            .text()
            .contains("tally_log_witness_requests_total{witness=\""),
    );
}

/// The log keeps acknowledging submissions while its witness is down; readers stay at the
/// last witnessed checkpoint, and move on once the witness is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_acknowledges_while_its_witness_is_down_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Litewitness::start(&dir.path().join("w"), "down.lw.test");
    let origin = "patient.lw.test/log";
    let vkey = LogDaemon::key_for(&dir.path().join("log"), origin);
    w.add_log(origin, &vkey);
    let log = LogDaemon::start(
        &dir.path().join("log"),
        origin,
        &[
            &witnesses(&[(w.url(), w.vkey.clone())]),
            "witness_interval_secs = 1",
        ],
    );
    log.submit(&[sample::attestation(0)]).await;
    wait_served(&log, 1, &[&w.vkey]);

    w.stop();
    // Every submission is acknowledged (durable and signed) with the witness down.
    let samples: Vec<Attestation> = (1..10).map(sample::attestation).collect();
    log.submit(&samples).await;
    let mut c = client::connect(&log.socket().parse().unwrap(), Default::default())
        .await
        .unwrap();
    let r = c
        .submit(v1::SubmitRequest {
            attestations: vec![sample::attestation(10).as_bytes().to_vec()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results[0].index, 10);
    let acked = Note::parse(&r.checkpoint.unwrap().note).unwrap();
    assert_eq!(acked.text().lines().nth(1), Some("11"));
    // Readers still see the last witnessed checkpoint.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(served(&log).0, 1);

    w.restart();
    wait_served(&log, 11, &[&w.vkey]);
}

/// An idle log sends its unchanged checkpoint to its witness again after
/// `witness_refresh_secs`, so a consumer with a `max-age` shorter than the log's idle time
/// still counts its answers.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_logs_cosignatures_stay_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let w = Litewitness::start(&dir.path().join("w"), "fresh.lw.test");
    let origin = "idle.lw.test/log";
    let vkey = LogDaemon::key_for(&dir.path().join("log"), origin);
    w.add_log(origin, &vkey);
    let log = LogDaemon::start(
        &dir.path().join("log"),
        origin,
        &[
            &witnesses(&[(w.url(), w.vkey.clone())]),
            "witness_interval_secs = 1",
            "witness_refresh_secs = 2",
        ],
    );
    let a = sample::attestation(3);
    log.submit(std::slice::from_ref(&a)).await;
    let verifier = CosignatureVerifier::parse(&w.vkey).unwrap();
    let first = verifier.verify(&wait_served(&log, 1, &[&w.vkey])).unwrap();
    // Nothing is submitted; the timestamp on the served checkpoint moves on.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (size, note) = served(&log);
        assert_eq!(size, 1);
        if verifier.verify(&note).is_ok_and(|t| t > first + 2) {
            break;
        }
        assert!(Instant::now() < deadline, "not refreshed:\n{}", log.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    // A consumer counting only cosignatures younger than 3 s still trusts the path.
    let policy = dir.path().join("trust.policy");
    std::fs::write(
        &policy,
        format!(
            "log {vkey} {}\nwitness lw {}\nquorum lw\nmax-age 3\nattest all\n",
            log.url(),
            w.vkey
        ),
    )
    .unwrap();
    let out = tally_tests::run_ok(
        tally_tests::tally()
            .args(["proof", "--policy-file"])
            .arg(&policy)
            .arg("--out")
            .arg(dir.path().join("proofs"))
            .arg(a.output_path().to_string()),
    );
    assert!(out.contains("trusted"), "{out}");
}

/// A log shows the aggregator's witness one history (pushes a checkpoint of size 3) and
/// serves its follower another (size 2). The witness does not cosign what its follower has
/// not verified; once the follower's view reaches size 3, the two signed checkpoints are
/// fork evidence and the log stops counting.
#[tokio::test(flavor = "multi_thread")]
async fn a_split_view_pushed_to_the_witness_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "split.witness.test/log";
    // y serves history B to the follower.
    let y = LogDaemon::start(&dir.path().join("y"), origin, &[]);
    y.submit(&[sample::attestation(100), sample::attestation(101)])
        .await;
    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &[y.follow()], &[]);
    agg.wait_verified(origin, 2).await;
    // x, with the same key, holds history A and pushes it to the aggregator's witness.
    std::fs::create_dir_all(dir.path().join("x")).unwrap();
    std::fs::copy(y.dir.join("log.key"), dir.path().join("x/log.key")).unwrap();
    let x = LogDaemon::start(
        &dir.path().join("x"),
        origin,
        &[
            &witnesses(&[(agg.url(), agg.witness_vkey.clone())]),
            "witness_interval_secs = 1",
        ],
    );
    x.submit(&[
        sample::attestation(200),
        sample::attestation(201),
        sample::attestation(202),
    ])
    .await;
    // The push is refused: its consistency proof does not lead from the size-2 checkpoint
    // the witness cosigned (B's) to A's size 3.
    let deadline = Instant::now() + Duration::from_secs(40);
    while !x.log().contains("422") {
        assert!(Instant::now() < deadline, "no push refused:\n{}", x.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let cosigned = http::get(agg.addr, &format!("/witness/checkpoint/{origin}"));
    let cosigned = Note::parse(&cosigned.body).unwrap();
    assert!(
        cosigned.text().lines().nth(1) == Some("2"),
        "the witness cosigned only the verified size: {}",
        cosigned.text()
    );
    // B reaches size 3: the two checkpoints of size 3 the log signed are a fork.
    y.submit(&[sample::attestation(102)]).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let evidence = loop {
        let mut c = client::connect_aggregator(&Address::Http(agg.url()))
            .await
            .unwrap();
        let list = c
            .list_evidence(v1::ListEvidenceRequest::default())
            .await
            .unwrap()
            .into_inner()
            .evidence;
        if let Some(e) = list.into_iter().find(|e| e.kind == "fork") {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no fork evidence:\n{}",
            agg.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(evidence.summary.contains(origin), "{}", evidence.summary);
    let status = agg.logs().await;
    assert_eq!(status[0].state, "excluded", "{status:?}");
}

/// One log shows two aggregators two histories. Each reads the other's cosigned checkpoint
/// (gossip): the one whose view is larger proves the fork from its mirror, and the other
/// takes that evidence once it verifies with the log's key. Both stop counting the log.
#[tokio::test(flavor = "multi_thread")]
async fn two_aggregators_catch_a_split_view_through_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "gossip.witness.test/log";
    let x = LogDaemon::start(&dir.path().join("x"), origin, &[]);
    std::fs::create_dir_all(dir.path().join("y")).unwrap();
    std::fs::copy(x.dir.join("log.key"), dir.path().join("y/log.key")).unwrap();
    let y = LogDaemon::start(&dir.path().join("y"), origin, &[]);
    let shared: Vec<Attestation> = (0..50).map(sample::attestation).collect();
    let mut a = shared.clone();
    a.extend((300..350).map(sample::attestation));
    let mut b = shared;
    b.extend((400..470).map(sample::attestation));
    x.submit(&a).await;
    y.submit(&b).await;
    let mut agg1 = AggregatorDaemon::start(&dir.path().join("agg1"), &[x.follow()], &[]);
    agg1.wait_verified(origin, 100).await;
    let peer1 = format!("peers = [\"{}\"]", agg1.url());
    let agg2 = AggregatorDaemon::start(
        &dir.path().join("agg2"),
        &[y.follow()],
        &[&peer1, "gossip_interval_secs = 1"],
    );
    // agg2's view is larger: agg1's cosigned checkpoint of size 100 contradicts it.
    wait_excluded(&agg2).await;
    // agg1 learns it from agg2.
    agg1.stop();
    let config = agg1.dir.join("aggregator.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "peers = [\"{}\"]\ngossip_interval_secs = 1\n{text}",
            agg2.url()
        ),
    )
    .unwrap();
    agg1.restart();
    wait_excluded(&agg1).await;
}

async fn wait_excluded(agg: &AggregatorDaemon) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let logs = agg.logs().await;
        if logs[0].state == "excluded" {
            assert!(logs[0].detail.contains("fork"), "{logs:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not excluded: {logs:?}\n{}",
            agg.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Nix substitutes through a cache whose policy requires the witness: a witnessed path is
/// served once the log's checkpoint carries the cosignature.
#[tokio::test(flavor = "multi_thread")]
async fn nix_substitutes_a_witnessed_path() {
    if !nix::available("nix_substitutes_a_witnessed_path") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = Litewitness::start(&dir.path().join("w"), "nix.lw.test");
    let origin = "nix.lw.test/log";
    let vkey = LogDaemon::key_for(&dir.path().join("log"), origin);
    w.add_log(origin, &vkey);
    let log = LogDaemon::start(
        &dir.path().join("log"),
        origin,
        &[
            &witnesses(&[(w.url(), w.vkey.clone())]),
            "witness_interval_secs = 1",
        ],
    );
    let upstream = dir.path().join("upstream");
    let a = upload_synthetic(&upstream, "witnessed-for-nix", b"cosigned by litewitness\n");
    log.submit(std::slice::from_ref(&a)).await;
    wait_served(&log, 1, &[&w.vkey]);
    let policy = format!(
        "log {vkey} {}\nwitness lw {}\nquorum lw\nmax-age 3600\nattest 1-of-1\n",
        log.url(),
        w.vkey
    );
    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[format!("file://{}", upstream.display())],
        &policy,
        None,
        &[],
    );
    let client = nix::Client::new(&dir.path().join("client"));
    let path = a.output_path().to_string();
    let out = client.realise(&cache.url(), &cache.public_key, &path);
    assert!(out.status.success(), "{out:?}\n{}", cache.log());
    assert_eq!(client.read(&path), b"cosigned by litewitness\n");
}

/// `tally proof` writes one standard C2SP tlog-proof per agreeing log, with the witness's
/// cosignature on each checkpoint; `tally verify` checks each offline under the policy, and
/// refuses an altered one.
#[tokio::test(flavor = "multi_thread")]
async fn tally_proof_writes_standard_tlog_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let w = Litewitness::start(&dir.path().join("w"), "proof.lw.test");
    let a = sample::attestation(5);
    let mut logs = Vec::new();
    let mut lines = String::new();
    for n in 1..=2 {
        let origin = format!("b{n}.proof.test/log");
        let vkey = LogDaemon::key_for(&dir.path().join(format!("log{n}")), &origin);
        w.add_log(&origin, &vkey);
        let log = LogDaemon::start(
            &dir.path().join(format!("log{n}")),
            &origin,
            &[
                &witnesses(&[(w.url(), w.vkey.clone())]),
                "witness_interval_secs = 1",
            ],
        );
        log.submit(std::slice::from_ref(&a)).await;
        wait_served(&log, 1, &[&w.vkey]);
        lines.push_str(&format!("log {vkey} {}\n", log.url()));
        logs.push(log);
    }
    let policy = dir.path().join("trust.policy");
    std::fs::write(
        &policy,
        format!("{lines}witness lw {}\nquorum lw\nattest all\n", w.vkey),
    )
    .unwrap();
    let out_dir = dir.path().join("proofs");
    let out = tally_tests::run_ok(
        tally_tests::tally()
            .args(["proof", "--policy-file"])
            .arg(&policy)
            .arg("--out")
            .arg(&out_dir)
            .arg(a.output_path().to_string()),
    );
    assert!(out.contains("trusted"), "{out}");
    let mut files: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
        let out = tally_tests::run_ok(
            tally_tests::tally()
                .arg("verify")
                .arg(f)
                .arg("--policy-file")
                .arg(&policy),
        );
        assert!(
            out.contains("proven") && out.contains("cosigned by lw"),
            "{out}"
        );
    }
    // Another leaf claimed at the same place does not verify.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let other = base64_of(sample::attestation(6).as_bytes());
    let altered: String = text
        .lines()
        .map(|l| {
            if l.starts_with("extra ") {
                format!("extra {other}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let bad = dir.path().join("altered.tlog-proof");
    std::fs::write(&bad, altered).unwrap();
    let out = tally_tests::tally()
        .arg("verify")
        .arg(&bad)
        .arg("--policy-file")
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT proven"));
}

fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
