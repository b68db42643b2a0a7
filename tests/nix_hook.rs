//! The post-build hook with real Nix (Debian's nix-bin): builds attest their outputs exactly
//! as the store records them, a stopped daemon makes the hook spool without failing the
//! build, and a restarted daemon drains the spool. Needs Nix; see `tally_tests::nix`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tally_core::answer::{LogAnswer, Verified};
use tally_core::tlog::ConsistencyProof;
use tally_core::{SignedCheckpoint, StorePath};
use tally_proto::client::{self, BearerToken, Client};
use tally_proto::v1;
use tally_tests::daemon::LogDaemon;
use tally_tests::{nix, tally_bin};

fn derivations(nonce: &str) -> String {
    format!(
        r#"
let
  mk = args: derivation ({{ system = builtins.currentSystem; builder = "/bin/sh"; nonce = "{nonce}"; }} // args);
in rec {{
  single = mk {{ name = "tally-e2e-single"; args = ["-c" "echo single-output > $out"]; }};
  multi = mk {{
    name = "tally-e2e-multi";
    outputs = ["out" "dev" "lib"];
    args = ["-c" "echo out > $out; /bin/mkdir $dev; echo dev > $dev/file; echo lib > $lib"];
  }};
  refs = mk {{
    name = "tally-e2e-refs";
    args = ["-c" "/bin/mkdir $out; echo ${{single}} > $out/single; echo ${{multi.lib}} > $out/lib; echo ${{multi.dev}}/file > $out/dev"];
  }};
  late = mk {{ name = "tally-e2e-late"; args = ["-c" "echo built-while-the-log-was-down > $out"]; }};
}}
"#
    )
}

fn nix_build(dir: &Path, log: &LogDaemon, attrs: &[&str]) -> (std::process::Output, Duration) {
    let hook = dir.join("bin/tally-hook");
    let mut cmd = Command::new("nix-build");
    cmd.arg(dir.join("default.nix"))
        .arg("--no-out-link")
        .env(
            "NIX_CONFIG",
            format!("{}post-build-hook = {}\n", nix::NIX_CONFIG, hook.display()),
        )
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("TALLY_LOG", log.socket())
        .env("TALLY_SPOOL_DIR", log.dir.join("spool"));
    for a in attrs {
        cmd.args(["-A", a]);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    (out, start.elapsed())
}

fn query(args: &[&str], path: &str) -> Vec<String> {
    let out = nix::output(
        Command::new("nix-store")
            .args(["--query"])
            .args(args)
            .arg(path)
            .env("NIX_CONFIG", nix::NIX_CONFIG),
    );
    out.lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

async fn lookup(client: &mut Client, log: &LogDaemon, path: &StorePath) -> Verified {
    let r = client
        .lookup(v1::LookupRequest {
            path: path.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    LogAnswer::try_from(&r)
        .unwrap()
        .verify(&log.vkey, &path.hash())
        .unwrap()
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

#[tokio::test(flavor = "multi_thread")]
async fn builds_are_attested_spooled_and_drained() {
    if !nix::available("builds_are_attested_spooled_and_drained") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogDaemon::start(
        &dir.path().join("log"),
        "e2e.example/nix-hook",
        &["spool_drain_interval_secs = 1"],
    );
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::os::unix::fs::symlink(tally_bin(), dir.path().join("bin/tally-hook")).unwrap();
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    std::fs::write(dir.path().join("default.nix"), derivations(&nonce)).unwrap();

    // Three derivations, one with three outputs, one referring to the others.
    let (out, _) = nix_build(dir.path(), &log, &["single", "multi.all", "refs"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nix-build failed:\n{stderr}");
    assert!(stderr.contains("attested"), "the hook ran:\n{stderr}");
    let paths: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(paths.len(), 5, "{paths:?}");

    let mut client = client::connect(&log.socket().parse().unwrap(), BearerToken::default())
        .await
        .unwrap();
    for path in &paths {
        let store_path = StorePath::parse(path).unwrap();
        let Verified::Present { attestation, .. } = lookup(&mut client, &log, &store_path).await
        else {
            panic!("{path} is not in the log:\n{stderr}\n{}", log.log());
        };
        assert_eq!(
            attestation.nar_hash().to_string(),
            query(&["--hash"], path)[0],
            "{path}"
        );
        assert_eq!(
            attestation.nar_size().to_string(),
            query(&["--size"], path)[0],
            "{path}"
        );
        let mut refs = query(&["--references"], path);
        refs.sort();
        let ours: Vec<String> = attestation
            .references()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ours, refs, "{path}");
        let deriver = query(&["--deriver"], path)[0].clone();
        assert_eq!(
            attestation.drv_path().map(ToString::to_string),
            Some(deriver),
            "{path}"
        );
        let name = store_path.name();
        let expected_output = ["dev", "lib"]
            .into_iter()
            .find(|o| name.ends_with(&format!("-{o}")))
            .unwrap_or("out");
        assert_eq!(attestation.output_name(), Some(expected_output), "{path}");
    }
    let refs_path = paths
        .iter()
        .find(|p| p.ends_with("-tally-e2e-refs"))
        .unwrap();
    assert_eq!(
        query(&["--references"], refs_path).len(),
        3,
        "the refs output has references"
    );
    let before = checkpoint(&mut client, &log).await;

    // A log that accepts connections but never answers: the hook still returns within its
    // budget, exits 0, and spools.
    let silent = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let single_drv = query(
        &["--deriver"],
        paths.iter().find(|p| p.ends_with("-single")).unwrap(),
    )[0]
    .clone();
    let spool2 = dir.path().join("spool2");
    let start = Instant::now();
    let out = Command::new(tally_bin())
        .arg("hook")
        .env("DRV_PATH", &single_drv)
        .env("OUT_PATHS", "")
        .env("TALLY_LOG", format!("unix:{}", silent.display()))
        .env("TALLY_SPOOL_DIR", &spool2)
        .env("NIX_CONFIG", nix::NIX_CONFIG)
        .env("TALLY_HOOK_BUDGET_MS", "1000")
        .output()
        .unwrap();
    assert!(out.status.success());
    // A hook that waited for the log would never return. The bound is the 1 s budget plus
    // slack for process start-up on a loaded 2-core CI machine; it is a bound, not a speed.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the hook took {:?} with a budget of 1 s",
        start.elapsed()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spooled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&spool2).unwrap().count(), 1);

    // With the daemon down, a build still succeeds, promptly, and the hook spools.
    log.stop();
    let (out, took) = nix_build(dir.path(), &log, &["late"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nix-build failed with the log down:\n{stderr}"
    );
    assert!(stderr.contains("spooled"), "{stderr}");
    assert!(took < Duration::from_secs(10), "the build took {took:?}");
    let late = StorePath::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let spool = log.dir.join("spool");
    let spooled: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    assert!(
        std::fs::read_to_string(&spooled[0])
            .unwrap()
            .contains(&late.to_string())
    );

    // Restarted, the daemon drains the spool and the late output appears.
    log.restart();
    let mut client = client::connect(&log.socket().parse().unwrap(), BearerToken::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Verified::Present { attestation, .. } = lookup(&mut client, &log, &late).await {
            assert_eq!(
                attestation.nar_hash().to_string(),
                query(&["--hash"], &late.to_string())[0]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the spool was not drained:\n{}",
            log.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!spooled[0].exists(), "the drained spool file is removed");

    // The checkpoints before and after are consistent.
    let after = checkpoint(&mut client, &log).await;
    let (old, new) = (before.checkpoint().tree, after.checkpoint().tree);
    assert!(new.size > old.size);
    let proof = client
        .get_consistency_proof(v1::GetConsistencyProofRequest {
            old_size: old.size,
            new_size: new.size,
        })
        .await
        .unwrap()
        .into_inner();
    ConsistencyProof::try_from(&proof)
        .unwrap()
        .verify(&old, &new)
        .unwrap();
}

/// A log reached over TCP is down while several builds finish: each build's hook spools on
/// the build host (the daemon never sees that spool). Once the log is back, the next build's
/// hook submits its own outputs and drains everything spooled before.
#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_log_down_for_several_builds_gets_them_all_when_it_returns() {
    if !nix::available("a_tcp_log_down_for_several_builds_gets_them_all_when_it_returns") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("submit.token");
    tally_store::write_secret(&token, &tally_store::generate_token().unwrap()).unwrap();
    let token_line = format!("submit_token_file = \"{}\"", token.display());
    let mut log = LogDaemon::start(
        &dir.path().join("log"),
        "tcp.example/nix-hook",
        &[&token_line],
    );
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::os::unix::fs::symlink(tally_bin(), dir.path().join("bin/tally-hook")).unwrap();
    let nonce = format!(
        "tcp-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    std::fs::write(dir.path().join("default.nix"), derivations(&nonce)).unwrap();
    let host_spool = dir.path().join("build-host-spool");
    let log_url = log.url();
    let build = |attr: &str| {
        let out = Command::new("nix-build")
            .arg(dir.path().join("default.nix"))
            .args(["--no-out-link", "-A", attr])
            .env(
                "NIX_CONFIG",
                format!(
                    "{}post-build-hook = {}\n",
                    nix::NIX_CONFIG,
                    dir.path().join("bin/tally-hook").display()
                ),
            )
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env("TALLY_LOG", &log_url)
            .env("TALLY_TOKEN_FILE", &token)
            .env("TALLY_SPOOL_DIR", &host_spool)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            stderr,
        )
    };
    log.stop();
    let (single, stderr) = build("single");
    assert!(stderr.contains("spooled"), "{stderr}");
    let (late, stderr) = build("late");
    assert!(stderr.contains("spooled"), "{stderr}");
    let spooled = || {
        std::fs::read_dir(&host_spool)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .count()
    };
    assert_eq!(spooled(), 2);

    log.restart();
    let (refs, stderr) = build("refs");
    assert!(
        stderr.contains("spooled earlier also submitted"),
        "the hook drained the build host's spool:\n{stderr}"
    );
    assert_eq!(spooled(), 0);
    let mut client = client::connect(&log.socket().parse().unwrap(), BearerToken::default())
        .await
        .unwrap();
    for path in [&single, &late, &refs] {
        let p = StorePath::parse(path).unwrap();
        assert!(
            matches!(
                lookup(&mut client, &log, &p).await,
                Verified::Present { .. }
            ),
            "{path} not attested:\n{stderr}"
        );
    }
}

/// A log reached over TCP without its token, or with a wrong one: the hook says it is a
/// configuration error (which a retry will not fix) and that the outputs are spooled, so
/// nothing is lost once the token is set.
#[test]
fn a_tcp_log_without_its_token_is_a_configuration_error_and_spools() {
    if !nix::available("a_tcp_log_without_its_token_is_a_configuration_error_and_spools") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("submit.token");
    tally_store::write_secret(&token, &tally_store::generate_token().unwrap()).unwrap();
    let log = LogDaemon::start(
        &dir.path().join("log"),
        "token.example/nix-hook",
        &[&format!("submit_token_file = \"{}\"", token.display())],
    );
    let nonce = format!(
        "token-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    std::fs::write(dir.path().join("default.nix"), derivations(&nonce)).unwrap();
    // Built without a hook; the hook then runs as Nix would run it.
    let built = nix::output(
        nix::command("nix-build", &dir.path().join("cache"))
            .arg(dir.path().join("default.nix"))
            .args(["--no-out-link", "-A", "single"]),
    );
    let drv = query(&["--deriver"], &built)[0].clone();
    let wrong = dir.path().join("wrong.token");
    tally_store::write_secret(&wrong, &tally_store::generate_token().unwrap()).unwrap();
    for (n, (token_file, says)) in [(None, "--token-file"), (Some(&wrong), "refuses")]
        .into_iter()
        .enumerate()
    {
        let spool = dir.path().join(format!("spool{n}"));
        let mut hook = Command::new(tally_bin());
        hook.arg("hook")
            .env("DRV_PATH", &drv)
            .env("OUT_PATHS", "")
            .env("TALLY_LOG", log.url())
            .env_remove("TALLY_TOKEN_FILE")
            .env("TALLY_SPOOL_DIR", &spool)
            .env("NIX_CONFIG", nix::NIX_CONFIG);
        if let Some(file) = token_file {
            hook.env("TALLY_TOKEN_FILE", file);
        }
        let out = hook.output().unwrap();
        assert!(out.status.success(), "the hook never fails a build");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains(&drv)
                && said.contains("configuration error")
                && said.contains(says)
                && said.contains("1 attestation spooled"),
            "{said}"
        );
        let spooled = std::fs::read_dir(&spool)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .count();
        assert_eq!(spooled, 1, "{said}");
    }
}
