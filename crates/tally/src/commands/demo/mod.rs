//! `tally demo`: a three-builder federation with an aggregator and a binary cache proxy, on
//! loopback.

mod cache;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tally_cache::upstream::{BinaryCacheUrl, Upstreams};
use tally_core::report::{PathList, Reproducibility, Source};
use tally_core::{Hash, KeyName, NarHash, SigningKey, sample};
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;

use crate::{output, runtime};

/// Run a demo federation: three builders, an aggregator, a cache
///
/// Starts three attester log daemons, an aggregator (with a witness) and a binary cache
/// proxy in a temporary directory with fresh keys. Feeds the logs realistic sample
/// attestations (one path on which the third builder disagrees, one that only the first
/// builder built) and attestations of two small store paths in an upstream file:// cache,
/// waits until the aggregator has mirrored and verified everything, and prints query
/// results, the evidence found, what the cache serves, the nix.conf lines to use it, and the
/// commands to try next. Runs until Ctrl-C; with --once it stops after printing. Needs no
/// Nix (but a Nix can substitute from the cache).
///
/// Example:
///
///   cargo run --release -- demo
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// Stop after printing the results.
    #[arg(long)]
    once: bool,
    /// Sample attestations per log.
    #[arg(long, default_value_t = 5000)]
    entries: u64,
    /// Keep the federation's files here instead of a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The sample that builder 3 disagrees on, and the one only builder 1 has.
const DISPUTED: u64 = 7;
const SINGLE: u64 = 1_000_000;

struct Builder {
    origin: KeyName,
    key: SigningKey,
    addr: SocketAddr,
    socket: PathBuf,
    /// Attestations fed to its log.
    size: u64,
}

fn keyfile(dir: &Path, name: &str) -> anyhow::Result<(SigningKey, PathBuf)> {
    let path = dir.join(format!("{}.key", name.replace('/', "_")));
    let key = tally_store::generate_signing_key(KeyName::new(name)?)?;
    tally_store::write_signing_key(&path, &key)?;
    Ok((key, path))
}

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<ExitCode> {
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = std::env::temp_dir().join(format!("tally-demo-{}", std::process::id()));
            std::fs::create_dir_all(&tmp)?;
            tmp.clone()
        }
    };
    // The services' routine log lines would bury the demo's output.
    runtime::init_tracing("error");
    let outcome = runtime::block_on(federation(args, dir.clone(), json))?;
    if args_dir_is_temp(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

fn args_dir_is_temp(dir: &Path) -> bool {
    dir.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("tally-demo-"))
}

async fn federation(args: Args, dir: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let shutdown = runtime::shutdown_on_signal();
    let mut tasks = tokio::task::JoinSet::new();

    // Three builders, each with its own log daemon.
    let mut builders = Vec::new();
    for n in 1..=3 {
        let origin = KeyName::new(&format!("builder{n}.demo.tally/log"))?;
        let (key, key_file) = keyfile(&dir, origin.as_str())?;
        let data = dir.join(format!("builder{n}"));
        let socket = data.join("log.sock");
        let config: tally_log::Config = toml::from_str(&format!(
            "origin = \"{origin}\"\nsecret_key_file = \"{}\"\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\
             submit_socket = \"{}\"\nspool_dir = \"{}\"\nbatch_period_ms = 50\ncache_mb = 32\n",
            key_file.display(),
            data.display(),
            socket.display(),
            data.join("spool").display()
        ))?;
        // Port 0: the kernel picks a free port, and the daemon says which.
        let running = tally_log::start(config, shutdown.clone())
            .await
            .with_context(|| format!("starting {origin}"))?;
        let addr = running.local_addr;
        tasks.spawn(async move {
            if let Err(e) = running.serving.await {
                eprintln!("log {addr}: {e}");
            }
        });
        builders.push(Builder {
            origin,
            key,
            addr,
            socket,
            size: 0,
        });
    }
    // Realistic attestations; builder 3 got a different NAR for one path, and only builder 1
    // built another.
    let started = Instant::now();
    for (n, b) in builders.iter_mut().enumerate() {
        let mut client =
            client::connect(&Address::Unix(b.socket.clone()), BearerToken::default()).await?;
        b.size += args.entries + u64::from(n == 0) + 2;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        for i in 0..args.entries {
            let a = if n == 2 && i == DISPUTED {
                sample::attestation_with_nar(i, Hash::of(b"a build that did not reproduce"))
            } else {
                sample::attestation(i)
            };
            batch.push(a.as_bytes().to_vec());
            if batch.len() == 1000 || i + 1 == args.entries {
                client
                    .submit(v1::SubmitRequest {
                        attestations: std::mem::take(&mut batch),
                    })
                    .await?;
            }
        }
        if n == 0 {
            client
                .submit(v1::SubmitRequest {
                    attestations: vec![sample::attestation(SINGLE).as_bytes().to_vec()],
                })
                .await?;
        }
    }
    // Two store paths in an upstream cache: all three builders agree on one; builder 3 got
    // a different NAR for the other.
    let hello = cache::DemoPath::script(
        "tally-demo-hello",
        "echo 'Hello from a path three independent builders agree on.'",
    )?;
    let unreproducible = cache::DemoPath::script(
        "tally-demo-unreproducible",
        "echo 'Builder 3 got different bytes for this one.'",
    )?;
    let upstream = dir.join("upstream");
    for (n, b) in builders.iter().enumerate() {
        hello.upload(&upstream)?;
        unreproducible.upload(&upstream)?;
        let other = (n == 2).then(|| NarHash::from_digest(Hash::of(b"not reproduced")));
        client::connect(&Address::Unix(b.socket.clone()), BearerToken::default())
            .await?
            .submit(v1::SubmitRequest {
                attestations: vec![
                    hello.attestation(None)?.as_bytes().to_vec(),
                    unreproducible.attestation(other)?.as_bytes().to_vec(),
                ],
            })
            .await?;
    }
    let fed = started.elapsed();

    // The aggregator, with a witness.
    let (_, witness_key) = keyfile(&dir, "aggregator.demo.tally/witness")?;
    let admin_token = dir.join("admin.token");
    tally_store::write_secret(&admin_token, &tally_store::generate_token()?)?;
    let mut logs = String::new();
    for b in &builders {
        logs.push_str(&format!(
            "[[logs]]\norigin = \"{}\"\nvkey = \"{}\"\nurls = [\"http://{}\"]\n\n",
            b.origin,
            b.key.verifying_key().to_note_vkey(),
            b.addr
        ));
    }
    let agg_config: tally_aggregator::Config = toml::from_str(&format!(
        "data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\npoll_interval_secs = 1\nwitness_key_file = \"{}\"\n\
         admin_token_file = \"{}\"\ncache_mb = 64\n\n{logs}",
        dir.join("aggregator").display(),
        witness_key.display(),
        admin_token.display()
    ))?;
    let progress: Arc<dyn tally_aggregator::SyncProgress> =
        Arc::new(tally_aggregator::LogLines::default());
    let running = tally_aggregator::start(agg_config, progress, shutdown.clone())
        .await
        .context("starting the aggregator")?;
    let agg_addr = running.local_addr;
    tasks.spawn(async move {
        if let Err(e) = running.serving.await {
            eprintln!("aggregator: {e}");
        }
    });

    // The trust policy a consumer holds: the three logs' keys and URLs, and the quorum.
    let policy_file = dir.join("trust.policy");
    let mut policy_text = String::from(
        "# The logs whose votes count (key name = origin), and where to reach them.\n",
    );
    for b in &builders {
        policy_text.push_str(&format!(
            "log {} http://{}\n",
            b.key.verifying_key().to_note_vkey(),
            b.addr
        ));
    }
    policy_text.push_str("# No witnesses required in the demo.\nquorum none\nattest majority\n");
    std::fs::write(&policy_file, &policy_text)?;
    let trust = tally_core::trust::TrustPolicy::parse(policy_text.as_bytes())?;

    // The binary cache proxy, asking the aggregator in process and checking every answer.
    let (cache_key, cache_key_file) = keyfile(&dir, "cache.demo.tally-1")?;
    let cache_config: tally_cache::Config = toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\nupstreams = [\"file://{}\"]\nsecret_key_file = \"{}\"\n\
         policy_file = \"{}\"\n",
        upstream.display(),
        cache_key_file.display(),
        policy_file.display()
    ))?;
    let dashboard = running.handle.clone();
    let in_process = Arc::new(super::cache::InProcess(running.handle));
    let cache = tally_cache::start(cache_config, trust, in_process, shutdown.clone())
        .await
        .context("starting the binary cache")?;
    let cache_addr = cache.local_addr;
    tasks.spawn(async move {
        if let Err(e) = cache.serving.await {
            eprintln!("cache: {e}");
        }
    });
    let aggregator = Address::Http(format!("http://{agg_addr}"));
    let synced = wait_synced(&aggregator, &builders).await?;

    // A named report, as an operator would upload a system's closure: the sample paths, the
    // one only builder 1 has and one nobody built.
    let closure = PathList {
        paths: (0..args.entries.min(1000))
            .chain([SINGLE, SINGLE + 1])
            .map(sample::output_path)
            .collect(),
        source: Source::Closure,
        skipped_derivations: 0,
    };
    let report = tokio::task::spawn_blocking(move || dashboard.define_report("demo", &closure))
        .await??
        .0;

    // Ask.
    let trusted = sample::output_path(1);
    let disputed = sample::output_path(DISPUTED);
    let single = sample::output_path(SINGLE);
    let absent = sample::output_path(SINGLE + 1);
    let asked = [
        trusted.to_string(),
        disputed.to_string(),
        single.to_string(),
        absent.to_string(),
    ];
    let mut agg = client::connect_aggregator(&aggregator).await?;
    let mut results = Vec::new();
    for policy in ["", "2-of-3,dissent=1"] {
        let r = agg
            .query(v1::QueryRequest {
                paths: asked.to_vec(),
                policy: policy.into(),
                proofs: false,
            })
            .await?
            .into_inner();
        results.push(r);
    }
    let evidence = client::all_evidence(&mut agg, "").await?;
    // What the cache serves, asked over HTTP as Nix would.
    let cache_url = format!("http://{cache_addr}");
    let nix_client = Upstreams::new(
        vec![BinaryCacheUrl::Http(cache_url.clone())],
        Duration::from_secs(10),
    )?;
    let mut served = Vec::new();
    for p in [&hello.path, &unreproducible.path] {
        let found = nix_client
            .narinfo_from(&nix_client.caches()[0], &p.hash())
            .await?;
        served.push((p, found.is_some()));
    }
    let public_key = cache_key.verifying_key().to_nix_public();
    let client_store = dir.join("client");
    let realise = format!(
        "nix-store --store {} --realise {} --option substituters {cache_url} --option trusted-public-keys '{public_key}'",
        client_store.display(),
        hello.path
    );

    let mut text = String::new();
    if json {
        let mut out = serde_json::Map::new();
        out.insert("aggregator".into(), format!("http://{agg_addr}").into());
        out.insert("dashboard".into(), format!("http://{agg_addr}/").into());
        out.insert(
            "report".into(),
            serde_json::json!({"url": format!("http://{agg_addr}/reports/demo"), "summary": report.summary}),
        );
        out.insert("logs".into(), builders.iter().map(|b| serde_json::json!({"origin": b.origin, "url": format!("http://{}", b.addr), "vkey": b.key.verifying_key().to_note_vkey()})).collect());
        out.insert("results".into(), results.iter().map(|r| serde_json::json!({
            "policy": r.policy,
            "paths": r.results.iter().map(|p| serde_json::json!({"path": p.path, "status": status(p)})).collect::<Vec<_>>(),
        })).collect());
        out.insert(
            "cache".into(),
            serde_json::json!({
                "url": cache_url,
                "public_key": public_key,
                "nix_conf": [format!("substituters = {cache_url}"), format!("trusted-public-keys = {public_key}")],
                "realise": realise,
                "served": served.iter().map(|(p, ok)| serde_json::json!({"path": p.to_string(), "served": ok})).collect::<Vec<_>>(),
                "run": client_store.join(hello.path.to_string().trim_start_matches('/')),
            }),
        );
        out.insert(
            "evidence".into(),
            evidence
                .iter()
                .map(|e| serde_json::json!({"id": e.id, "kind": e.kind, "claim": e.summary}))
                .collect(),
        );
        text = format!("{}\n", serde_json::Value::Object(out));
    } else {
        writeln!(
            text,
            "Tally demo: three builders, an aggregator and a binary cache on loopback, in {}",
            dir.display()
        )?;
        writeln!(
            text,
            "  fed {} to each log in {:.1} s; the aggregator mirrored and verified them in {:.1} s\n",
            output::count(args.entries, "attestation", "attestations"),
            fed.as_secs_f64(),
            synced.as_secs_f64()
        )?;
        for b in &builders {
            writeln!(
                text,
                "  log {:<28} http://{}  (gRPC and tlog-tiles)",
                b.origin, b.addr
            )?;
        }
        writeln!(
            text,
            "  aggregator                        http://{agg_addr}  (gRPC, /metrics, witness)"
        )?;
        writeln!(
            text,
            "  dashboard                         http://{agg_addr}/  (open it in a browser)"
        )?;
        writeln!(
            text,
            "  binary cache                      {cache_url}  (upstream file://{})\n",
            upstream.display()
        )?;
        for r in &results {
            writeln!(text, "policy {}:", r.policy)?;
            for (p, label) in r.results.iter().zip([
                "built by all three",
                "builder 3 disagrees",
                "only builder 1 built it",
                "nobody built it",
            ]) {
                writeln!(text, "  {:<9} {}  ({label})", status(p), p.path)?;
            }
            writeln!(text)?;
        }
        writeln!(
            text,
            "binary cache {cache_url}, narinfos re-signed by {}:",
            cache_key.name()
        )?;
        for (p, ok) in &served {
            let what = if *ok { "served  " } else { "404     " };
            writeln!(text, "  {what}  {p}")?;
        }
        writeln!(
            text,
            "\nreport http://{agg_addr}/reports/demo ({}): {}",
            output::count(report.summary.total(), "path", "paths"),
            Reproducibility::ALL
                .map(|c| format!("{:.1}% {c}", report.summary.percent(c)))
                .join(", ")
        )?;
        writeln!(text, "\nUse it from Nix (nix.conf):")?;
        writeln!(text, "  substituters = {cache_url}")?;
        writeln!(text, "  trusted-public-keys = {public_key}")?;
        writeln!(text, "or straight away, into a scratch store:")?;
        writeln!(text, "  {realise}")?;
        writeln!(
            text,
            "  {}",
            client_store
                .join(hello.path.to_string().trim_start_matches('/'))
                .display()
        )?;
        writeln!(text)?;
        writeln!(text, "evidence found:")?;
        for e in &evidence {
            writeln!(text, "  #{} {}: {}", e.id, e.kind, e.summary)?;
        }
        let vkeys: Vec<String> = builders
            .iter()
            .map(|b| format!("--vkey '{}'", b.key.verifying_key().to_note_vkey()))
            .collect();
        writeln!(text, "\nTry next (in another terminal, while this runs):")?;
        writeln!(
            text,
            "  tally query --aggregator http://{agg_addr} {disputed}"
        )?;
        writeln!(
            text,
            "  tally query --aggregator http://{agg_addr} --policy 2-of-3,dissent=1 --evidence /tmp/disputed.json {disputed}"
        )?;
        writeln!(
            text,
            "  tally verify /tmp/disputed.json {}",
            vkeys.join(" ")
        )?;
        writeln!(
            text,
            "  tally check --aggregator http://{agg_addr} {trusted} {disputed}; echo exit $?"
        )?;
        writeln!(
            text,
            "  tally evidence --aggregator http://{agg_addr} --out /tmp/tally-evidence"
        )?;
        writeln!(
            text,
            "  tally report --aggregator http://{agg_addr} --html /tmp/report.html {trusted} {disputed} {single} {absent}"
        )?;
        writeln!(
            text,
            "  curl -H 'Accept: application/json' http://{agg_addr}/reports/demo"
        )?;
        writeln!(
            text,
            "  nix-store -qR /run/current-system | curl -X PUT -H \"Authorization: Bearer $(cat {})\" --data-binary @- http://{agg_addr}/reports/mine",
            admin_token.display()
        )?;
        writeln!(
            text,
            "  tally log lookup --log http://{} --vkey '{}' {trusted}",
            builders[0].addr,
            builders[0].key.verifying_key().to_note_vkey()
        )?;
        writeln!(
            text,
            "  curl http://{}/checkpoint; curl -s http://{}/tile/0/000 | xxd | head -3",
            builders[0].addr, builders[0].addr
        )?;
        writeln!(
            text,
            "  curl http://{agg_addr}/witness/checkpoint/{}",
            builders[0].origin
        )?;
        writeln!(
            text,
            "  curl http://{agg_addr}/metrics | grep tally_aggregator_log_size"
        )?;
        writeln!(text, "  curl {cache_url}/{}.narinfo", hello.path.hash())?;
        writeln!(
            text,
            "  curl -i {cache_url}/{}.narinfo",
            unreproducible.path.hash()
        )?;
    }
    // The federation keeps serving after this: a reader that stops reading (a script that
    // took the JSON and closed the pipe) must not stop it.
    crate::output::write_ignoring_closed_reader(&text);
    if !args.once {
        // On stderr: with --json, stdout holds exactly one JSON document.
        eprintln!("\nRunning until Ctrl-C.");
        shutdown.cancelled().await;
    }
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(ExitCode::SUCCESS)
}

fn status(p: &v1::PathVerdict) -> &'static str {
    match p.status() {
        v1::Status::Trusted => "trusted",
        v1::Status::Disputed => "disputed",
        v1::Status::Unknown => "unknown",
        v1::Status::Unspecified => "?",
    }
}

async fn wait_synced(aggregator: &Address, builders: &[Builder]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut agg = client::connect_aggregator(aggregator).await?;
    let deadline = start + Duration::from_secs(300);
    loop {
        let logs = agg
            .list_logs(v1::ListLogsRequest {})
            .await?
            .into_inner()
            .logs;
        let done = builders.iter().all(|b| {
            logs.iter().any(|l| {
                l.origin == b.origin.as_str() && l.verified_size == b.size && l.state == "verified"
            })
        });
        if done {
            return Ok(start.elapsed());
        }
        if Instant::now() > deadline {
            let states: Vec<String> = logs
                .iter()
                .map(|l| {
                    format!(
                        "{} {} at {} of {}",
                        l.origin, l.state, l.verified_size, l.latest_size
                    )
                })
                .collect();
            bail!(
                "the aggregator did not verify every log within 5 minutes: {}",
                states.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
