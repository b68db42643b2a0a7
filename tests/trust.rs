//! Trust nobody in the middle: each test plays one attacker between the logs and a consumer
//! (the network path, a lying aggregator, a corrupting mirror, a forger of bundles) and
//! shows that the consumer, holding its own trust policy and checking every proof, refuses
//! what the attacker wants accepted. Separate processes over loopback; real Nix wherever a
//! narinfo would be substituted. docs/trust-model.md points here.

use tally_core::Attestation;
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;
use tally_tests::daemon::{AggregatorDaemon, CacheDaemon, LogDaemon, trust_policy};
use tally_tests::lying_aggregator::LyingAggregator;
use tally_tests::proxy::RewritingProxy;
use tally_tests::upstream::upload_synthetic;
use tally_tests::{http, nix, run_ok, tally};

fn three_logs(dir: &std::path::Path, tag: &str) -> Vec<LogDaemon> {
    (1..=3)
        .map(|n| {
            LogDaemon::start(
                &dir.join(format!("log{n}")),
                &format!("b{n}.{tag}.test/log"),
                &[],
            )
        })
        .collect()
}

fn refs(logs: &[LogDaemon]) -> Vec<&LogDaemon> {
    logs.iter().collect()
}

/// The nixbase32 part of an attestation's NAR hash, as it appears in every encoding.
fn nix32(a: &Attestation) -> Vec<u8> {
    a.nar_hash().to_string().as_bytes()["sha256:".len()..].to_vec()
}

fn narinfo(cache: &CacheDaemon, a: &Attestation) -> http::Response {
    http::get(cache.addr, &format!("/{}.narinfo", a.output_path().hash()))
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

/// An attacker on the path between the aggregator and the cache rewrites the logs' NAR hash
/// into the hash of a poisoned NAR that the upstream serves. Unchecked, the answer says
/// "trusted, with the poisoned hash"; the cache checks the proofs, so nothing is served and
/// Nix does not substitute the poison.
#[tokio::test(flavor = "multi_thread")]
async fn an_aggregator_answer_rewritten_on_the_way_is_refused() {
    if !nix::available("an_aggregator_answer_rewritten_on_the_way_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream");
    // What the builders built, and the poison the upstream serves for the same path.
    let honest = upload_synthetic(&dir.path().join("scratch"), "victim", b"honest build\n");
    let poisoned = upload_synthetic(&upstream, "victim", b"poison build\n");
    assert_eq!(honest.output_path(), poisoned.output_path());
    let good = upload_synthetic(&upstream, "bystander", b"built the same by all\n");
    let logs = three_logs(dir.path(), "rewrite");
    for log in &logs {
        log.submit(&[honest.clone(), good.clone()]).await;
    }
    let agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &logs.iter().map(LogDaemon::follow).collect::<Vec<_>>(),
        &[],
    );
    for log in &logs {
        agg.wait_verified(&log.origin, 2).await;
    }
    let proxy = RewritingProxy::start(agg.addr, nix32(&honest), nix32(&poisoned)).await;

    // Unchecked, the rewritten answer claims a quorum for the poison.
    let victim = honest.output_path().to_string();
    let out = run_ok(tally().args(["query", "--aggregator", &proxy.url(), &victim]));
    assert!(
        out.contains(&poisoned.nar_hash().to_string()) && out.contains("[unverified]"),
        "{out}"
    );
    assert!(proxy.rewrites() > 0);

    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[format!("file://{}", upstream.display())],
        &trust_policy(&refs(&logs), ""),
        Some(&format!("url = \"{}\"", proxy.url())),
        &[],
    );
    let r = narinfo(&cache, &poisoned);
    assert_ne!(r.status, 200, "{}", r.text());
    assert_eq!(r.status, 502, "no answer verified: {}", r.text());
    assert!(
        r.text().contains("no log's answer verified"),
        "{}",
        r.text()
    );
    let why = explain(&cache, &poisoned);
    for vote in why["votes"].as_array().unwrap() {
        assert_eq!(vote["vote"], "rejected", "{why:#}");
    }
    let metrics = http::get(cache.addr, "/metrics").text();
    assert!(
        metrics.contains("tally_cache_rejected_answers_total{origin=\"b1.rewrite.test/log\"}"),
        "{metrics}"
    );
    // The untouched path is still served, and Nix substitutes it; the poison it does not.
    let client = nix::Client::new(&dir.path().join("client"));
    let out = client.realise(
        &cache.url(),
        &cache.public_key,
        &good.output_path().to_string(),
    );
    assert!(out.status.success(), "{out:?}\n{}", cache.log());
    let out = client.realise(&cache.url(), &cache.public_key, &victim);
    assert!(!out.status.success());
    assert!(!client.has(&victim));
}

/// An aggregator that lies outright: it claims all three logs attest a path that only one
/// builder (the attacker's) attested, copying that one genuine answer under the other logs'
/// names. Each log counts once, and an answer counts only with its own log's signature.
#[tokio::test(flavor = "multi_thread")]
async fn a_lying_aggregator_cannot_claim_a_quorum() {
    if !nix::available("a_lying_aggregator_cannot_claim_a_quorum") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream");
    let poisoned = upload_synthetic(&upstream, "only-one-builder", b"poison\n");
    let logs = three_logs(dir.path(), "liar");
    logs[0].submit(std::slice::from_ref(&poisoned)).await;
    let mut log1 = client::connect(&Address::Http(logs[0].url()), BearerToken::default())
        .await
        .unwrap();
    let genuine = log1
        .lookup(v1::LookupRequest {
            path: poisoned.output_path().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let origins: Vec<String> = logs.iter().map(|l| l.origin.clone()).collect();
    let claimed = poisoned.clone();
    let with_proofs = {
        let origins = origins.clone();
        move |path: &str| lie(path, &claimed, &origins, Some(&genuine))
    };
    let liar = LyingAggregator::start(with_proofs).await;
    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[format!("file://{}", upstream.display())],
        &trust_policy(&refs(&logs), ""),
        Some(&format!("url = \"{}\"", liar.url())),
        &[],
    );
    let r = narinfo(&cache, &poisoned);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains("not attested by a quorum"),
        "{}",
        r.text()
    );
    let why = explain(&cache, &poisoned);
    let votes: Vec<&str> = why["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vote"].as_str().unwrap())
        .collect();
    assert_eq!(votes, ["present", "rejected", "rejected"], "{why:#}");
    let client = nix::Client::new(&dir.path().join("client"));
    let out = client.realise(
        &cache.url(),
        &cache.public_key,
        &poisoned.output_path().to_string(),
    );
    assert!(!out.status.success());
    drop(cache);

    // The same claim without any proofs: nothing can be checked, so nothing is served.
    let claimed = poisoned.clone();
    let bare = LyingAggregator::start(move |path| lie(path, &claimed, &origins, None)).await;
    let cache = CacheDaemon::start(
        &dir.path().join("cache2"),
        &[format!("file://{}", upstream.display())],
        &trust_policy(&refs(&logs), ""),
        Some(&format!("url = \"{}\"", bare.url())),
        &[],
    );
    let r = narinfo(&cache, &poisoned);
    assert_eq!(r.status, 502, "{}", r.text());
}

/// A verdict of "trusted" by every origin, with `proof` (if any) under each.
fn lie(
    path: &str,
    a: &Attestation,
    origins: &[String],
    proof: Option<&v1::LookupResponse>,
) -> v1::PathVerdict {
    let candidate = v1::Candidate {
        output_path: a.output_path().to_string(),
        nar_hash: a.nar_hash().to_string(),
        nar_size: a.nar_size(),
        references: vec![],
        origins: origins.to_vec(),
    };
    v1::PathVerdict {
        path: path.to_owned(),
        status: v1::Status::Trusted.into(),
        agreed: Some(candidate),
        reproducibility: v1::Reproducibility::Reproduced.into(),
        logs: origins
            .iter()
            .map(|o| v1::LogVote {
                origin: o.clone(),
                vote: v1::Vote::Present.into(),
                reason: String::new(),
                proof: proof.cloned(),
            })
            .collect(),
        ..Default::default()
    }
}

/// `tally verify` decides a query bundle under the verifier's own policy: forged bundles
/// (a repeated answer, a bundle-chosen policy, a key outside the policy, a swapped leaf, an
/// answer about another path) do not make a path trusted; a genuine bundle does. A "bad
/// data" bundle made of a public checkpoint and arbitrary bytes proves nothing.
#[tokio::test(flavor = "multi_thread")]
async fn forged_bundles_do_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let logs = three_logs(dir.path(), "bundle");
    let target = tally_core::sample::attestation(1);
    let other = tally_core::sample::attestation(2);
    // Only the first log attests `target`; all three attest `other`.
    logs[0].submit(&[target.clone(), other.clone()]).await;
    for log in &logs[1..] {
        log.submit(std::slice::from_ref(&other)).await;
    }
    let agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &logs.iter().map(LogDaemon::follow).collect::<Vec<_>>(),
        &[],
    );
    agg.wait_verified(&logs[0].origin, 2).await;
    for log in &logs[1..] {
        agg.wait_verified(&log.origin, 1).await;
    }
    let policy = dir.path().join("trust.policy");
    std::fs::write(&policy, trust_policy(&refs(&logs), "attest 2-of-3\n")).unwrap();
    let bundle = |path: &Attestation, name: &str| -> serde_json::Value {
        let file = dir.path().join(name);
        run_ok(
            tally()
                .args(["query", "--aggregator", &agg.url(), "--evidence"])
                .arg(&file)
                .arg(path.output_path().to_string()),
        );
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
    };
    let verify = |b: &serde_json::Value| -> (bool, String) {
        let file = dir.path().join("candidate.json");
        std::fs::write(&file, b.to_string()).unwrap();
        let out = tally()
            .arg("verify")
            .arg(&file)
            .arg("--policy-file")
            .arg(&policy)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    // Genuine: `other` is trusted, `target` (one log) is not.
    let genuine_other = bundle(&other, "other.json");
    let (ok, out) = verify(&genuine_other);
    assert!(ok && out.contains("trusted under your policy"), "{out}");
    let genuine = bundle(&target, "target.json");
    let (ok, out) = verify(&genuine);
    assert!(!ok && out.contains("unknown under your policy"), "{out}");

    // The one genuine answer, repeated under every log's name.
    let mut repeated = genuine.clone();
    let first = repeated["logs"][0].clone();
    for i in 1..3 {
        let origin = repeated["logs"][i]["origin"].clone();
        repeated["logs"][i] = first.clone();
        repeated["logs"][i]["origin"] = origin;
    }
    let (ok, out) = verify(&repeated);
    assert!(!ok && out.contains("answer rejected"), "{out}");
    // And repeated under its own name.
    let mut twice = genuine.clone();
    twice["logs"][1] = first.clone();
    twice["logs"][2] = first.clone();
    let (ok, out) = verify(&twice);
    assert!(!ok && out.contains("only one counts"), "{out}");

    // The bundle names its own policy and verdict: they play no part.
    let mut chosen = genuine.clone();
    chosen["policy"] = "1-of-3".into();
    chosen["verdict"] = genuine_other["verdict"].clone();
    let (ok, out) = verify(&chosen);
    assert!(!ok && out.contains("unknown under your policy"), "{out}");

    // An answer from a log signed by a key outside the policy.
    let stranger = LogDaemon::start(&dir.path().join("stranger"), "b2.bundle.test/log", &[]);
    stranger.submit(std::slice::from_ref(&target)).await;
    let mut c = client::connect(&Address::Http(stranger.url()), BearerToken::default())
        .await
        .unwrap();
    let answer = c
        .lookup(v1::LookupRequest {
            path: target.output_path().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let stranger_answer = tally_core::answer::LogAnswer::try_from(&answer).unwrap();
    let mut outside = genuine.clone();
    outside["logs"][1]["answer"] = serde_json::to_value(&stranger_answer).unwrap();
    outside["logs"][1]
        .as_object_mut()
        .unwrap()
        .remove("unavailable");
    let (ok, out) = verify(&outside);
    assert!(!ok && out.contains("key ID"), "{out}");

    // Swapped leaves: the trusted path's proofs (standard tlog-proofs), each with another
    // entry's bytes in its `extra` line.
    let extra = |b: &serde_json::Value| -> String {
        b["logs"][0]["answer"]["tlog_proof"]
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("extra "))
            .unwrap()
            .to_owned()
    };
    let (theirs, ours) = (extra(&genuine), extra(&genuine_other));
    let mut swapped = genuine_other.clone();
    for i in 0..3 {
        let proof = swapped["logs"][i]["answer"]["tlog_proof"]
            .as_str()
            .unwrap()
            .replace(&ours, &theirs);
        swapped["logs"][i]["answer"]["tlog_proof"] = proof.into();
    }
    let (ok, out) = verify(&swapped);
    assert!(!ok && out.contains("answer rejected"), "{out}");

    // Genuine answers about another path, presented as answers about this one.
    let mut another = genuine_other.clone();
    another["path"] = genuine["path"].clone();
    let (ok, out) = verify(&another);
    assert!(!ok && out.contains("answer rejected"), "{out}");

    // "Bad data" made of a log's public checkpoint and bytes of the forger's choosing.
    // A present answer is a tlog-proof: the checkpoint follows its first blank line.
    let proof = genuine_other["logs"][0]["answer"]["tlog_proof"]
        .as_str()
        .expect("a present answer is a tlog-proof");
    let checkpoint = tally_core::tlog_proof::TlogProof::parse(proof)
        .unwrap()
        .checkpoint;
    let forged = serde_json::json!({
        "version": "tally-bundle/v1",
        "kind": "bad_entries",
        "origin": logs[0].origin,
        "checkpoint": checkpoint,
        "start": 0,
        "peaks": [],
        "path_start": [],
        "entries": ["YXJiaXRyYXJ5IGJ5dGVz"],
        "path_end": [],
    });
    let (ok, out) = verify(&forged);
    assert!(!ok && out.contains("NOT proven"), "{out}");
}

/// A mirror (or a proxy) that corrupts entries in transit is not evidence against the log:
/// its URL is marked faulty and skipped, the log is read from its other URL, verified, and
/// votes.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupting_mirror_is_marked_and_the_log_still_votes() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(&dir.path().join("log"), "mirrored.trust.test/log", &[]);
    let entries: Vec<Attestation> = (0..20).map(tally_core::sample::attestation).collect();
    log.submit(&entries).await;
    let mirror = RewritingProxy::start(
        log.addr,
        b"tally/attestation/v1".to_vec(),
        b"tally/attestation/v9".to_vec(),
    )
    .await;
    // The corrupting mirror is listed first: it is read first.
    let follow = vec![(
        log.origin.clone(),
        log.vkey.to_note_vkey(),
        vec![mirror.url(), log.url()],
    )];
    let agg = AggregatorDaemon::start(&dir.path().join("agg"), &follow, &[]);
    agg.wait_verified(&log.origin, 20).await;
    assert!(mirror.rewrites() > 0, "the mirror served entries");
    let status = agg
        .logs()
        .await
        .into_iter()
        .find(|l| l.origin == log.origin)
        .unwrap();
    assert!(
        status.url_states[0].starts_with("faulty") && status.url_states[1] == "ok",
        "{status:?}"
    );
    let mut c = client::connect_aggregator(&Address::Http(agg.url()))
        .await
        .unwrap();
    let evidence = c
        .list_evidence(v1::ListEvidenceRequest::default())
        .await
        .unwrap()
        .into_inner()
        .evidence;
    assert!(
        evidence.is_empty(),
        "no evidence against the log: {evidence:?}"
    );
    // It votes, with proofs that check.
    // `tally check` exits 0 only for a path trusted with checked proofs.
    let policy = agg.assert_trusted(&log, &entries[3].output_path().to_string());
    // The dashboard shows each URL's state.
    let page = http::get(agg.addr, "/").text();
    assert!(page.contains("faulty"), "{page}");
    // Asked directly, with the mirror first, the log's vote still counts: the mirror's
    // answer fails its checks, and the log's own URL is asked next.
    std::fs::write(
        &policy,
        format!(
            "log {} {}\nmirror {} {}\nquorum none\nattest 1-of-1\n",
            log.vkey.to_note_vkey(),
            mirror.url(),
            log.origin,
            log.url()
        ),
    )
    .unwrap();
    let rewrites = mirror.rewrites();
    let out_dir = dir.path().join("proofs");
    run_ok(
        tally()
            .args(["proof", "--policy-file"])
            .arg(&policy)
            .arg("--out")
            .arg(&out_dir)
            .arg(entries[5].output_path().to_string()),
    );
    assert!(mirror.rewrites() > rewrites, "the mirror was asked first");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
}

/// A cache with no aggregator at all asks the logs of its policy directly: it serves the
/// path they agree on, which Nix substitutes, and refuses the disputed one.
#[tokio::test(flavor = "multi_thread")]
async fn a_cache_without_an_aggregator_asks_the_logs() {
    if !nix::available("a_cache_without_an_aggregator_asks_the_logs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream");
    let agreed = upload_synthetic(&upstream, "agreed-by-all", b"everyone built this\n");
    let disputed = upload_synthetic(&upstream, "disputed-one", b"the upstream's bytes\n");
    let other = upload_synthetic(
        &dir.path().join("scratch"),
        "disputed-one",
        b"builder 3's bytes!\n",
    );
    let logs = three_logs(dir.path(), "direct");
    logs[0].submit(&[agreed.clone(), disputed.clone()]).await;
    logs[1].submit(&[agreed.clone(), disputed.clone()]).await;
    logs[2].submit(&[agreed.clone(), other]).await;
    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[format!("file://{}", upstream.display())],
        &trust_policy(&refs(&logs), "attest all\n"),
        None,
        &[],
    );
    let client = nix::Client::new(&dir.path().join("client"));
    let path = agreed.output_path().to_string();
    let out = client.realise(&cache.url(), &cache.public_key, &path);
    assert!(out.status.success(), "{out:?}\n{}", cache.log());
    assert_eq!(client.read(&path), b"everyone built this\n");
    let r = narinfo(&cache, &disputed);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("disputed"), "{}", r.text());
    let out = client.realise(
        &cache.url(),
        &cache.public_key,
        &disputed.output_path().to_string(),
    );
    assert!(!out.status.success());
    // `tally cache explain` says why, log by log.
    let out = tally()
        .args(["cache", "explain", "--cache", &cache.url()])
        .arg(disputed.output_path().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("disputed")
            && text.contains("b3.direct.test/log")
            && text.contains("verified"),
        "{text}"
    );
    assert!(
        text.contains("the 3 logs of the trust policy, directly"),
        "{text}"
    );
}
