//! The aggregator as a separate process following real log daemons over loopback: verdicts
//! and policies, evidence of disagreement, forks and bad data that `tally verify` accepts
//! (and a tampered bundle it refuses), logs going down and coming back, restarts, and the
//! witness, and a two-faced log whose contradiction becomes evidence.

use std::time::{Duration, Instant};

use tally_core::cosignature::CosignatureVerifier;
use tally_core::witness::AddCheckpoint;
use tally_core::{Hash, Note, SignedCheckpoint, sample};
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;
use tally_tests::daemon::{AggregatorDaemon, LogDaemon, trust_policy};
use tally_tests::{http, run_ok, tally};

fn samples(range: std::ops::Range<u64>) -> Vec<tally_core::Attestation> {
    range.map(sample::attestation).collect()
}

async fn logs_status(agg: &AggregatorDaemon, origin: &str) -> v1::LogStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = agg.logs().await;
        let s = all.into_iter().find(|l| l.origin == origin).unwrap();
        if s.state != "syncing" || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_evidence(agg: &AggregatorDaemon, kind: &str) -> v1::EvidenceSummary {
    let mut c = client::connect_aggregator(&Address::Http(agg.url()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = c
            .list_evidence(v1::ListEvidenceRequest::default())
            .await
            .unwrap()
            .into_inner()
            .evidence;
        if let Some(e) = list.into_iter().find(|e| e.kind == kind) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} evidence:\n{}",
            agg.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a trust policy of `logs` (no witnesses) in `dir`.
fn policy_file(dir: &std::path::Path, logs: &[&LogDaemon]) -> std::path::PathBuf {
    let file = dir.join("trust.policy");
    std::fs::write(&file, trust_policy(logs, "")).unwrap();
    file
}

/// `tally query --json` under the trust policy in `policy_file`, its quorum replaced by
/// `policy` if given.
fn query(
    agg: &AggregatorDaemon,
    policy_file: &std::path::Path,
    policy: Option<&str>,
    paths: &[String],
) -> serde_json::Value {
    let mut cmd = tally();
    cmd.args([
        "query",
        "--json",
        "--aggregator",
        &agg.url(),
        "--policy-file",
    ])
    .arg(policy_file);
    if let Some(p) = policy {
        cmd.args(["--policy", p]);
    }
    let r: serde_json::Value = serde_json::from_str(&run_ok(cmd.args(paths))).unwrap();
    assert_eq!(r["verified"], true, "{r:#}");
    r
}

fn status_of(result: &serde_json::Value, i: usize) -> String {
    result["results"][i]["status"].as_str().unwrap().to_owned()
}

fn vkeys(logs: &[&LogDaemon]) -> Vec<String> {
    logs.iter()
        .flat_map(|l| ["--vkey".to_owned(), l.vkey.to_note_vkey()])
        .collect()
}

fn three_logs(dir: &std::path::Path) -> Vec<LogDaemon> {
    (1..=3)
        .map(|n| {
            LogDaemon::start(
                &dir.join(format!("log{n}")),
                &format!("b{n}.agg.test/log"),
                &[],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn verdicts_policies_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let logs = three_logs(dir.path());
    for (n, log) in logs.iter().enumerate() {
        let mut a = samples(0..50);
        if n == 2 {
            a[7] = sample::attestation_with_nar(7, Hash::of(b"builder 3's build"));
        }
        log.submit(&a).await;
    }
    let agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &logs.iter().map(LogDaemon::follow).collect::<Vec<_>>(),
        &[],
    );
    for log in &logs {
        agg.wait_verified(&log.origin, 50).await;
    }
    let trusted = sample::output_path(1).to_string();
    let disputed = sample::output_path(7).to_string();
    let unknown = sample::output_path(99).hash().to_string();
    let policy = policy_file(dir.path(), &logs.iter().collect::<Vec<_>>());

    // Three honest logs → trusted; one dissenter → disputed, unless the policy tolerates it.
    let r = query(
        &agg,
        &policy,
        None,
        &[trusted.clone(), disputed.clone(), unknown.clone()],
    );
    assert!(
        r["policy"].as_str().unwrap().contains("attest majority"),
        "{r:#}"
    );
    assert_eq!(
        (status_of(&r, 0), status_of(&r, 1), status_of(&r, 2)),
        ("trusted".into(), "disputed".into(), "unknown".into())
    );
    assert_eq!(
        r["results"][0]["verdict"]["agreed"]["nar_hash"],
        sample::attestation(1).nar_hash().to_string()
    );
    assert_eq!(r["results"][2]["logs"][0]["vote"], "absent");
    assert_eq!(r["results"][2]["logs"][0]["verified"], true);
    let tolerant = query(
        &agg,
        &policy,
        Some("2-of-3,dissent=1"),
        std::slice::from_ref(&disputed),
    );
    assert_eq!(status_of(&tolerant, 0), "trusted");
    let bad_policy = tally()
        .args(["query", "--aggregator", &agg.url(), "--policy-file"])
        .arg(&policy)
        .args(["--policy", "2-of-4", &trusted])
        .output()
        .unwrap();
    assert!(!bad_policy.status.success());
    assert!(String::from_utf8_lossy(&bad_policy.stderr).contains("2-of-4"));

    // Without a policy file, query says on every line that the verdict is unverified.
    let out = run_ok(tally().args(["query", "--aggregator", &agg.url(), &trusted]));
    assert!(
        out.lines()
            .filter(|l| l.contains(&trusted))
            .all(|l| l.starts_with("[unverified]")),
        "{out}"
    );

    // Query proofs check offline, under the verifier's own policy.
    let file = dir.path().join("disputed.json");
    run_ok(
        tally()
            .args(["query", "--aggregator", &agg.url(), "--evidence"])
            .arg(&file)
            .arg(&disputed),
    );
    let keys = vkeys(&logs.iter().collect::<Vec<_>>());
    let out = tally()
        .arg("verify")
        .arg(&file)
        .arg("--policy-file")
        .arg(&policy)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("disputed under your policy"), "{printed}");
    assert_eq!(out.status.code(), Some(1), "only trusted exits 0");
    let out = run_ok(
        tally()
            .arg("verify")
            .arg(&file)
            .arg("--policy-file")
            .arg(&policy)
            .args(["--policy", "2-of-3,dissent=1"]),
    );
    assert!(out.contains("trusted under your policy"), "{out}");

    // `tally check` is a gate, with paths on stdin as nix-store -qR prints them.
    let mut check = tally()
        .args([
            "check",
            "--aggregator",
            &agg.url(),
            "--paths",
            "-",
            "--policy-file",
        ])
        .arg(&policy)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{trusted}\n{disputed}\n").as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&disputed) && listed.contains("disputed") && !listed.contains(&trusted),
        "{listed}"
    );
    run_ok(
        tally()
            .args(["check", "--aggregator", &agg.url(), "--policy-file"])
            .arg(&policy)
            .arg(&trusted),
    );
    // Without a policy file nothing is verified, so nothing passes.
    let out = tally()
        .args(["check", "--aggregator", &agg.url(), &trusted])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing above is verified"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The disagreement is evidence that verifies.
    let e = wait_evidence(&agg, "disagreement").await;
    assert!(e.summary.contains(&disputed), "{}", e.summary);
    let out_dir = dir.path().join("evidence");
    run_ok(
        tally()
            .args(["evidence", "--aggregator", &agg.url(), "--out"])
            .arg(&out_dir),
    );
    let files: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    for f in &files {
        run_ok(tally().arg("verify").arg(f).args(&keys));
    }
    let metrics = http::get(agg.addr, "/metrics").text();
    assert!(
        metrics.contains("tally_aggregator_log_size{origin=\"b1.agg.test/log\"} 50"),
        "{metrics}"
    );
    // Evidence is counted for each log it names: the dissenter is in every disagreement,
    // and no series goes without a log.
    assert!(
        metrics.contains(
            "tally_aggregator_evidence_total{origin=\"b3.agg.test/log\",kind=\"disagreement\"}"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("origin=\"\""), "{metrics}");

    // The witness cosigned each log's verified checkpoint.
    let verifier = CosignatureVerifier::parse(&agg.witness_vkey).unwrap();
    for log in &logs {
        let r = http::get(agg.addr, &format!("/witness/checkpoint/{}", log.origin));
        assert_eq!(r.status, 200, "{}", r.text());
        let signed = SignedCheckpoint::open(&r.body, &log.vkey).unwrap();
        assert_eq!(signed.checkpoint().tree.size, 50);
        verifier.verify(&Note::parse(&r.body).unwrap()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_down_restarts_and_catching_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut logs = three_logs(dir.path());
    for log in &logs {
        log.submit(&samples(0..30)).await;
    }
    let mut agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &logs.iter().map(LogDaemon::follow).collect::<Vec<_>>(),
        &[],
    );
    for log in &logs {
        agg.wait_verified(&log.origin, 30).await;
    }

    // Builder 3 goes down; the others attest a new path; queries are still answered.
    logs[2].stop();
    for log in &logs[..2] {
        log.submit(&samples(30..31)).await;
        agg.wait_verified(&log.origin, 31).await;
    }
    let new = sample::output_path(30).to_string();
    let policy = policy_file(dir.path(), &logs.iter().collect::<Vec<_>>());
    let r = query(&agg, &policy, None, std::slice::from_ref(&new));
    assert_eq!(status_of(&r, 0), "trusted", "{r:#}");
    // The aggregator still answers for builder 3 from its last verified checkpoint, and
    // the proof of absence holds.
    let third = &r["results"][0]["logs"][2];
    assert_eq!(third["vote"], "absent", "{third}");
    assert_eq!(third["verified"], true, "{third}");

    // The aggregator restarts: it keeps what it verified and fetches only what is new.
    agg.stop();
    logs[0].submit(&samples(31..40)).await;
    agg.restart();
    for (log, size) in logs[..2].iter().zip([40, 31]) {
        agg.wait_verified(&log.origin, size).await;
    }
    // Builder 3 is still down: reported so, with what was verified before kept.
    let third = logs_status(&agg, &logs[2].origin).await;
    assert_eq!(
        (third.state.as_str(), third.verified_size),
        ("unavailable", 30),
        "{third:?}"
    );
    let metrics = http::get(agg.addr, "/metrics").text();
    let synced: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tally_aggregator_entries_synced_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(
        synced, 9.0,
        "only the 9 new entries were fetched after the restart"
    );

    // Builder 3 comes back and catches up.
    logs[2].restart();
    logs[2].submit(&samples(30..31)).await;
    agg.wait_verified(&logs[2].origin, 31).await;
    let r = query(&agg, &policy, Some("all"), &[new]);
    assert_eq!(status_of(&r, 0), "trusted", "{r:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_views_of_one_log_are_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    // Two daemons with one key and origin, serving different histories.
    let x = LogDaemon::start(&dir.path().join("x"), "forked.agg.test/log", &[]);
    std::fs::create_dir_all(dir.path().join("y")).unwrap();
    std::fs::copy(x.dir.join("log.key"), dir.path().join("y/log.key")).unwrap();
    let y = LogDaemon::start(&dir.path().join("y"), "forked.agg.test/log", &[]);
    x.submit(&samples(0..100)).await;
    let mut other = samples(0..50);
    other.extend((200..270).map(sample::attestation));
    y.submit(&other).await;

    let follow = vec![(
        x.origin.clone(),
        x.vkey.to_note_vkey(),
        vec![y.url(), x.url()],
    )];
    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &follow, &[]);
    let e = wait_evidence(&agg, "fork").await;
    assert!(e.summary.contains("forked.agg.test/log"), "{}", e.summary);
    let out_dir = dir.path().join("evidence");
    run_ok(
        tally()
            .args([
                "evidence",
                "--aggregator",
                &agg.url(),
                "--log",
                &x.origin,
                "--out",
            ])
            .arg(&out_dir),
    );
    let file = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("fork"))
        .unwrap();
    let out = run_ok(tally().arg("verify").arg(&file).args(vkeys(&[&x])));
    assert!(out.contains("forked"), "{out}");
    // Another key cannot be blamed with it.
    let stranger = tally_core::SigningKey::from_seed(
        tally_core::KeyName::new("forked.agg.test/log").unwrap(),
        [5; 32],
    );
    let out = tally()
        .arg("verify")
        .arg(&file)
        .args(["--vkey", &stranger.verifying_key().to_note_vkey()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // The forked log no longer votes, and answers say why.
    let policy = policy_file(dir.path(), &[&x]);
    let r = query(
        &agg,
        &policy,
        Some("1-of-1"),
        &[sample::output_path(1).to_string()],
    );
    assert_eq!(status_of(&r, 0), "unknown");
    let reason = r["results"][0]["logs"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("excluded") && reason.contains("fork"),
        "{reason}"
    );
    assert!(agg.logs().await[0].state == "excluded");
}

/// Entries that do not hash to the signed root are not the log's statement: whoever relays
/// them may have made them. So they are no evidence; the URL that served them is marked
/// faulty, and the log, which cannot be verified, does not count.
#[tokio::test(flavor = "multi_thread")]
async fn an_entry_altered_after_signing_is_not_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogDaemon::start(&dir.path().join("log"), "tampered.agg.test/log", &[]);
    log.submit(&samples(0..300)).await;
    log.stop();
    tamper(&log.dir.join("data/log.redb"), 123);
    log.restart();

    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &[log.follow()], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = logs_status(&agg, &log.origin).await;
        if s.url_states
            .first()
            .is_some_and(|u| u.starts_with("faulty"))
        {
            break s;
        }
        assert!(Instant::now() < deadline, "{s:?}\n{}", agg.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.url_states[0].contains("not the signed tree"),
        "{status:?}"
    );
    assert_eq!(status.verified_size, 0, "{status:?}");
    assert_ne!(status.state, "excluded", "{status:?}");
    let mut c = client::connect_aggregator(&Address::Http(agg.url()))
        .await
        .unwrap();
    let evidence = c
        .list_evidence(v1::ListEvidenceRequest::default())
        .await
        .unwrap()
        .into_inner()
        .evidence;
    assert!(evidence.is_empty(), "{evidence:?}");
}

/// Changes one byte of entry `index` in a log's database, as a disk fault or an intruder
/// would, leaving the signed checkpoint and the stored hashes as they were.
fn tamper(db: &std::path::Path, index: u64) {
    use redb::ReadableTable as _;
    const ENTRIES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log/entries");
    let db = redb::Database::create(db).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(ENTRIES).unwrap();
        let (first, blob) = {
            let (k, v) = table.range(..=index).unwrap().next_back().unwrap().unwrap();
            (k.value(), v.value().to_vec())
        };
        let raw = lz4_flex::decompress_size_prepended(&blob).unwrap();
        let mut entries: Vec<Vec<u8>> = tally_core::tiles::bundle_entries(&raw)
            .unwrap()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        let e = &mut entries[(index - first) as usize];
        let at = e.windows(9).position(|w| w == b"nar-size ").unwrap() + 9;
        e[at] = if e[at] == b'9' { b'8' } else { e[at] + 1 };
        let mut bundle = Vec::new();
        for e in &entries {
            tally_core::tiles::push_entry(&mut bundle, e);
        }
        table
            .insert(first, lz4_flex::compress_prepend_size(&bundle).as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_witness_add_checkpoint_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(&dir.path().join("log"), "witnessed.agg.test/log", &[]);
    log.submit(&samples(0..10)).await;
    // Poll once at start-up, then leave the witness to add-checkpoint alone.
    let agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &[log.follow()],
        &["poll_interval_secs = 3600"],
    );
    agg.wait_verified(&log.origin, 10).await;
    log.submit(&samples(10..25)).await;
    let mut c = client::connect(&log.socket().parse().unwrap(), BearerToken::default())
        .await
        .unwrap();
    let note = c
        .get_checkpoint(v1::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .note;
    let proof = c
        .get_consistency_proof(v1::GetConsistencyProofRequest {
            old_size: 10,
            new_size: 25,
        })
        .await
        .unwrap()
        .into_inner();
    let hashes = tally_core::tlog::ConsistencyProof::try_from(&proof)
        .unwrap()
        .hashes;
    let post =
        |body: Vec<u8>| http::request(agg.addr, "POST", "/add-checkpoint", &[], &body).unwrap();
    let request = |old: u64, proof: Vec<Hash>, checkpoint: Vec<u8>| {
        AddCheckpoint {
            old_size: old,
            proof,
            checkpoint,
        }
        .to_body()
    };

    assert_eq!(post(b"nonsense".to_vec()).status, 400);
    let stranger = tally_core::SigningKey::from_seed(
        tally_core::KeyName::new("unknown.test/log").unwrap(),
        [3; 32],
    );
    let unknown = SignedCheckpoint::sign(
        tally_core::Checkpoint {
            origin: stranger.name().clone(),
            tree: tally_core::TreeHead {
                size: 1,
                root: Hash::ZERO,
            },
            map_root: Hash::ZERO,
        },
        &stranger,
    )
    .unwrap();
    assert_eq!(post(request(0, vec![], unknown.to_bytes())).status, 404);
    let impostor =
        tally_core::SigningKey::from_seed(tally_core::KeyName::new(&log.origin).unwrap(), [4; 32]);
    let forged = Note::sign(Note::parse(&note).unwrap().text(), &impostor)
        .unwrap()
        .to_bytes();
    assert_eq!(post(request(10, hashes.clone(), forged)).status, 403);
    assert_eq!(post(request(26, vec![], note.clone())).status, 400);
    let stale = post(request(5, hashes.clone(), note.clone()));
    assert_eq!(
        (stale.status, stale.header("content-type"), stale.text()),
        (409, Some("text/x.tlog.size"), "10\n".to_owned())
    );
    let mut bad = hashes.clone();
    bad[0].0[0] ^= 1;
    assert_eq!(post(request(10, bad, note.clone())).status, 422);

    let ok = post(request(10, hashes.clone(), note.clone()));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(
        ok.text().starts_with("— aggregator.test/witness "),
        "{}",
        ok.text()
    );
    let mut cosigned = Note::parse(&note).unwrap();
    cosigned.add_signature(
        Note::parse(format!("x\n\n{}", ok.text()).as_bytes())
            .unwrap()
            .signatures()[0]
            .clone(),
    );
    CosignatureVerifier::parse(&agg.witness_vkey)
        .unwrap()
        .verify(&cosigned)
        .unwrap();
    // Persisted: the same request again is now stale.
    let again = post(request(10, hashes, note));
    assert_eq!((again.status, again.text()), (409, "25\n".to_owned()));
}

/// A log that attests one output path twice, which no Tally daemon will do (it refuses the
/// second submit). It signs honest checkpoints over its entries, built with tally-core's
/// in-memory replay, and serves the read RPCs the aggregator follows.
mod rogue {
    use tally_core::replay::Replay;
    use tally_core::tlog::ConsistencyProof;
    use tally_core::{Checkpoint, SignedCheckpoint, SigningKey};
    use tally_proto::v1;
    use tally_proto::v1::log_server::{Log, LogServer};
    use tonic::{Request, Response, Status};

    pub(super) struct RogueLog {
        entries: Vec<Vec<u8>>,
        replay: Replay,
        note: Vec<u8>,
    }

    impl RogueLog {
        pub(super) fn new(key: &SigningKey, entries: Vec<Vec<u8>>) -> RogueLog {
            let mut replay = Replay::of(&entries);
            let checkpoint = Checkpoint {
                origin: key.name().clone(),
                tree: replay.tree_head(),
                map_root: replay.map_root(),
            };
            let note = SignedCheckpoint::sign(checkpoint, key).unwrap().to_bytes();
            RogueLog {
                entries,
                replay,
                note,
            }
        }

        /// Serves it on loopback; returns its URL.
        pub(super) async fn serve(self) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(LogServer::new(self))
                    .serve_with_incoming(incoming),
            );
            url
        }
    }

    type Pages = tokio_stream::Iter<std::vec::IntoIter<Result<v1::EntryPage, Status>>>;

    #[tonic::async_trait]
    impl Log for RogueLog {
        type GetEntriesStream = Pages;

        async fn get_checkpoint(
            &self,
            _: Request<v1::GetCheckpointRequest>,
        ) -> Result<Response<v1::Checkpoint>, Status> {
            Ok(Response::new(v1::Checkpoint {
                note: self.note.clone(),
            }))
        }

        async fn get_entries(
            &self,
            request: Request<v1::GetEntriesRequest>,
        ) -> Result<Response<Pages>, Status> {
            let r = request.into_inner();
            let page = v1::EntryPage {
                start: r.start,
                entries: self.entries[r.start as usize..r.end as usize].to_vec(),
            };
            Ok(Response::new(tokio_stream::iter(vec![Ok(page)])))
        }

        async fn get_consistency_proof(
            &self,
            request: Request<v1::GetConsistencyProofRequest>,
        ) -> Result<Response<v1::ConsistencyProof>, Status> {
            let r = request.into_inner();
            let proof = ConsistencyProof::generate(r.old_size, r.new_size, &self.replay)
                .map_err(|e| Status::out_of_range(e.to_string()))?;
            Ok(Response::new(proof.into()))
        }

        async fn submit(
            &self,
            _: Request<v1::SubmitRequest>,
        ) -> Result<Response<v1::SubmitResponse>, Status> {
            Err(Status::unimplemented("read-only"))
        }

        async fn get_inclusion_proof(
            &self,
            _: Request<v1::GetInclusionProofRequest>,
        ) -> Result<Response<v1::InclusionProof>, Status> {
            Err(Status::unimplemented("not needed"))
        }

        async fn lookup(
            &self,
            _: Request<v1::LookupRequest>,
        ) -> Result<Response<v1::LookupResponse>, Status> {
            Err(Status::unimplemented("not needed"))
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_attesting_one_path_twice_is_a_contradiction() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "twofaced.agg.test/log";
    let key = tally_core::SigningKey::from_seed(tally_core::KeyName::new(origin).unwrap(), [7; 32]);
    let mut fields = sample::attestation(4).fields().clone();
    fields.nar_hash = sample::attestation(5).nar_hash();
    let second = tally_core::Attestation::new(fields).unwrap();
    let mut entries: Vec<Vec<u8>> = (0..10)
        .map(|i| sample::attestation(i).as_bytes().to_vec())
        .collect();
    entries.push(second.as_bytes().to_vec());
    let url = rogue::RogueLog::new(&key, entries).serve().await;
    let vkey = key.verifying_key().to_note_vkey();
    let follow = vec![(origin.to_owned(), vkey.clone(), vec![url])];
    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &follow, &[]);
    let e = wait_evidence(&agg, "contradiction").await;
    assert!(
        e.summary.contains("twice")
            && e.summary.contains("at entry 4")
            && e.summary.contains("at entry 10"),
        "{}",
        e.summary
    );

    let out_dir = dir.path().join("evidence");
    run_ok(
        tally()
            .args(["evidence", "--aggregator", &agg.url(), "--out"])
            .arg(&out_dir),
    );
    let file = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("contradiction"))
        .unwrap();
    let out = run_ok(tally().arg("verify").arg(&file).args(["--vkey", &vkey]));
    assert!(out.contains("at entry 10"), "{out}");
    let metrics = String::from_utf8(http::get(agg.addr, "/metrics").body).unwrap();
    let counted = format!(
        "tally_aggregator_verification_failures_total{{origin=\"{origin}\",kind=\"contradiction\"}} 1"
    );
    assert!(metrics.contains(&counted), "{counted} not in:\n{metrics}");
}

/// An empty log votes: its checkpoint of size 0 is verified, and it answers with proven
/// absence rather than "syncing 0 of 0".
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_log_answers_with_proven_absence() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(&dir.path().join("log"), "empty.agg.test/log", &[]);
    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &[log.follow()], &[]);
    agg.wait_verified(&log.origin, 0).await;
    let policy = policy_file(dir.path(), &[&log]);
    let r = query(&agg, &policy, None, &[sample::output_path(1).to_string()]);
    let vote = &r["results"][0]["logs"][0];
    assert_eq!(vote["vote"], "absent", "{r:#}");
    assert_eq!(vote["verified"], true, "{r:#}");
}

/// Evidence is listed a page at a time, so any number of bundles fits the gRPC limits.
#[tokio::test(flavor = "multi_thread")]
async fn evidence_is_listed_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let logs: Vec<LogDaemon> = (1..=2)
        .map(|n| {
            LogDaemon::start(
                &dir.path().join(format!("log{n}")),
                &format!("p{n}.agg.test/log"),
                &[],
            )
        })
        .collect();
    // 1,200 paths the two logs attest differently: 1,200 disagreements.
    logs[0].submit(&samples(0..1200)).await;
    let other: Vec<_> = (0..1200)
        .map(|i| sample::attestation_with_nar(i, Hash::of(format!("other {i}").as_bytes())))
        .collect();
    logs[1].submit(&other).await;
    let agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &logs.iter().map(LogDaemon::follow).collect::<Vec<_>>(),
        &[],
    );
    for log in &logs {
        agg.wait_verified(&log.origin, 1200).await;
    }
    let mut c = client::connect_aggregator(&Address::Http(agg.url()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let first = c
            .list_evidence(v1::ListEvidenceRequest::default())
            .await
            .unwrap()
            .into_inner();
        let all = client::all_evidence(&mut c, "").await.unwrap();
        if all.len() == 1200 {
            assert_eq!(first.evidence.len(), 1000);
            assert!(first.more);
            let mut ids: Vec<u64> = all.iter().map(|e| e.id).collect();
            ids.dedup();
            assert_eq!(ids.len(), 1200, "each once");
            break;
        }
        assert!(Instant::now() < deadline, "{} of 1200", all.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
