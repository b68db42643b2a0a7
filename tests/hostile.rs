//! Hostile peers, end to end with separate processes: an aggregator following logs that
//! attack it, and a log daemon under attack from its clients. The daemons must keep serving
//! everyone else, give up on the attacker with a clear status, and stay within a stated
//! memory bound (measured here from /proc, and printed for docs/BENCHMARKS.md).

use std::io::Write;
use std::time::{Duration, Instant};

use tally_core::{Attestation, sample};
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;
use tally_tests::daemon::{AggregatorDaemon, LogDaemon};
use tally_tests::hostile_log::{Attack, GarbageLog, HostileLog, peak_rss_kib};
use tally_tests::{http, run_ok, tally};
use tokio_stream::StreamExt as _;

/// The aggregator may use at most this much memory while followed logs attack it.
const AGGREGATOR_RSS_BOUND_MIB: u64 = 400;
/// The log daemon may use at most this much memory while clients attack it.
const LOG_RSS_BOUND_MIB: u64 = 200;

/// Waits until `check` holds for the aggregator's status of `origin`, or fails with it.
async fn wait_status(
    agg: &AggregatorDaemon,
    origin: &str,
    what: &str,
    check: impl Fn(&v1::LogStatus) -> bool,
) -> v1::LogStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = agg
            .logs()
            .await
            .into_iter()
            .find(|l| l.origin == origin)
            .unwrap();
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{origin}: never {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Five hostile logs and one honest one: the aggregator verifies the honest log and answers
/// about it throughout, marks each attacker's URL faulty or unreachable with a reason, never
/// counts an attacker, and stays under its memory bound.
#[tokio::test(flavor = "multi_thread")]
async fn an_aggregator_survives_hostile_logs() {
    let dir = tempfile::tempdir().unwrap();
    let honest = LogDaemon::start(&dir.path().join("honest"), "honest.hostile.test/log", &[]);
    let entries: Vec<Attestation> = (0..200).map(sample::attestation).collect();
    honest.submit(&entries).await;
    let endless = HostileLog::start(Attack::Endless, "endless.hostile.test/log", 1).await;
    let oversized = HostileLog::start(Attack::Oversized, "oversized.hostile.test/log", 2).await;
    let slow = HostileLog::start(Attack::Slow, "slow.hostile.test/log", 3).await;
    let huge = HostileLog::start(Attack::HugeTree, "huge.hostile.test/log", 4).await;
    let garbage = GarbageLog::start().await;
    let garbage_key = tally_core::SigningKey::from_seed(
        tally_core::KeyName::new("garbage.hostile.test/log").unwrap(),
        [5; 32],
    );
    let mut follow = vec![(
        honest.origin.clone(),
        honest.vkey.to_note_vkey(),
        vec![honest.url()],
    )];
    for h in [&endless, &oversized, &slow, &huge] {
        follow.push((h.origin.clone(), h.vkey.clone(), vec![h.url()]));
    }
    follow.push((
        "garbage.hostile.test/log".into(),
        garbage_key.verifying_key().to_note_vkey(),
        vec![garbage.url()],
    ));
    let agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &follow,
        &["peer_timeout_secs = 3", "cache_mb = 32"],
    );
    agg.wait_verified(&honest.origin, 200).await;

    // Each attacker is given up on, with a reason an operator can act on.
    let faulty = |s: &v1::LogStatus| s.url_states.iter().any(|u| u.starts_with("faulty"));
    let s = wait_status(&agg, &oversized.origin, "marked faulty", faulty).await;
    assert!(s.url_states[0].contains("too large"), "{s:?}");
    let s = wait_status(&agg, &endless.origin, "marked faulty", faulty).await;
    assert!(s.url_states[0].contains("were asked"), "{s:?}");
    let s = wait_status(&agg, &huge.origin, "marked faulty", faulty).await;
    assert!(s.url_states[0].contains("faulty"), "{s:?}");
    let s = wait_status(&agg, &slow.origin, "timed out", |s| {
        s.detail.contains("no answer in 3s")
    })
    .await;
    assert_eq!(s.state, "unavailable", "{s:?}");
    let s = wait_status(&agg, "garbage.hostile.test/log", "given up", |s| {
        !s.detail.is_empty()
    })
    .await;
    assert_eq!(s.state, "unavailable", "{s:?}");
    assert_eq!(s.verified_size, 0);

    // Meanwhile the honest log is answered for, with proofs, and no attacker counts.
    let policy = dir.path().join("trust.policy");
    std::fs::write(
        &policy,
        format!(
            "log {}\nquorum none\nattest 1-of-1\n",
            honest.vkey.to_note_vkey()
        ),
    )
    .unwrap();
    for a in entries.iter().step_by(50) {
        run_ok(
            tally()
                .args(["check", "--aggregator", &agg.url(), "--policy-file"])
                .arg(&policy)
                .arg(a.output_path().to_string()),
        );
    }
    for s in agg.logs().await {
        if s.origin != honest.origin {
            assert_ne!(s.state, "verified", "{s:?}");
            assert_eq!(s.verified_size, 0, "{s:?}");
        }
    }
    // A few more rounds of attacks, then the memory bound.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(http::get(agg.addr, "/healthz").status, 200);
    let peak = peak_rss_kib(agg.pid()) / 1024;
    println!("aggregator peak RSS under hostile logs: {peak} MiB");
    assert!(
        peak < AGGREGATOR_RSS_BOUND_MIB,
        "peak RSS {peak} MiB is over {AGGREGATOR_RSS_BOUND_MIB} MiB"
    );
}

/// A log daemon under attack from its clients: oversized submits, a request body that never
/// ends, thousands of silent connections, and headers trickled a byte at a time. Honest
/// clients are served throughout, silent connections are closed, and memory stays bounded.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_survives_hostile_clients() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(
        &dir.path().join("log"),
        "besieged.hostile.test/log",
        &[
            "idle_timeout_secs = 3",
            "max_connections = 500",
            "max_message_bytes = 1048576",
        ],
    );
    log.submit(&[sample::attestation(0)]).await;
    let address = Address::Http(log.url());

    // An oversized submit is refused, and names the limit.
    let mut c = client::connect(&address, BearerToken::default())
        .await
        .unwrap();
    let big = v1::SubmitRequest {
        attestations: vec![vec![b'x'; 2 << 20]],
    };
    let err = c.submit(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("1048576"), "{err:?}");

    // A request whose body never ends: an endless stream of submits in one call.
    let endless = tokio::spawn({
        let address = address.clone();
        async move {
            let channel = client::channel(&address).await.unwrap();
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.unwrap();
            let requests = tokio_stream::iter(0u64..).map(|i| v1::SubmitRequest {
                attestations: vec![sample::attestation(1_000_000 + i).as_bytes().to_vec()],
            });
            let path = tonic::codegen::http::uri::PathAndQuery::from_static("/tally.v1.Log/Submit");
            let codec = tonic_prost::ProstCodec::<v1::SubmitRequest, v1::SubmitResponse>::default();
            grpc.client_streaming(tonic::Request::new(requests), path, codec)
                .await
        }
    });

    // Silent connections, and HTTP/1 headers trickled.
    let mut silent = Vec::new();
    for _ in 0..1500 {
        if let Ok(s) = std::net::TcpStream::connect(log.addr) {
            silent.push(s);
        }
    }
    let mut trickling = Vec::new();
    for _ in 0..100 {
        let mut s = std::net::TcpStream::connect(log.addr).unwrap();
        s.write_all(b"GET /checkpoint HTTP/1.1\r\nHo").unwrap();
        trickling.push(s);
    }
    // Honest clients are served throughout (each retried briefly: a full house closes new
    // connections until the silent ones time out).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut served = 0;
    while served < 20 {
        for s in &mut trickling {
            let _ = s.write_all(b"s");
        }
        let r = http::request(log.addr, "GET", "/checkpoint", &[], &[]);
        if let Ok(r) = r
            && r.status == 200
        {
            served += 1;
        }
        assert!(Instant::now() < deadline, "honest reads were not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let more: Vec<Attestation> = (10..20).map(sample::attestation).collect();
    log.submit(&more).await;

    // Silent connections are closed by the daemon: reading them gives end of file.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", log.pid()))
            .unwrap()
            .count()
    };
    while fds() > 100 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors still open:\n{}",
            fds(),
            log.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(silent);
    drop(trickling);
    endless.abort();
    let peak = peak_rss_kib(log.pid()) / 1024;
    println!("log daemon peak RSS under hostile clients: {peak} MiB");
    assert!(
        peak < LOG_RSS_BOUND_MIB,
        "peak RSS {peak} MiB is over {LOG_RSS_BOUND_MIB} MiB"
    );
    assert!(log.log().contains("too many connections"), "{}", log.log());
}
