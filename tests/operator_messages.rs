//! The messages an operator acts on in the first hour with Tally: wrong addresses, wrong
//! keys, configs `serve` would refuse, bad input, a closed pipe, and help that says what
//! each command does. Each test asserts the part that matters (the bad value, the fix),
//! not the whole text.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tally_core::{Hash, KeyName, SigningKey, sample};
use tally_tests::daemon::{AggregatorDaemon, CacheDaemon, LogDaemon, trust_policy};
use tally_tests::{http, nix, run_ok, tally};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, which must fail, and returns its stderr.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

/// A loopback address nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// The key ID of a note verifier key (`name+<key ID>+base64`).
fn key_id(vkey: &str) -> &str {
    vkey.split('+').nth(1).unwrap()
}

fn jsonl(attestations: &[tally_core::Attestation]) -> String {
    attestations
        .iter()
        .map(|a| serde_json::to_string(a).unwrap() + "\n")
        .collect()
}

// ---- help ----------------------------------------------------------------------------------

/// The subcommands `tally <path> --help` lists, with their one-line summaries.
fn subcommands(path: &[&str]) -> Vec<(String, String)> {
    let help = run_ok(tally().args(path).arg("--help"));
    let Some((_, list)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = Vec::new();
    for line in list.lines() {
        if line.is_empty() {
            break;
        }
        match line
            .strip_prefix("  ")
            .map(|l| l.split_once(char::is_whitespace))
        {
            Some(Some((name, summary))) if !name.is_empty() => {
                found.push((name.to_owned(), summary.trim().to_owned()));
            }
            // A summary clap wrapped onto a second line.
            _ => found.last_mut().unwrap().1 += &format!(" {}", line.trim()),
        }
    }
    found.retain(|(name, _)| name != "help");
    found
}

/// Every command and subcommand: its path and summary.
fn all_commands() -> Vec<(Vec<String>, String)> {
    let mut all = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for (name, summary) in subcommands(&args) {
            let mut sub = path.clone();
            sub.push(name);
            todo.push(sub.clone());
            all.push((sub, summary));
        }
    }
    all
}

/// The first line of `text` with two periods in a row that are neither an ellipsis nor a
/// range (`0..RANGE`).
fn doubled_period(text: &str) -> Option<&str> {
    text.lines().find(|line| {
        let b = line.as_bytes();
        (0..b.len().saturating_sub(1)).any(|i| {
            let doubled = b[i] == b'.' && b[i + 1] == b'.';
            let ellipsis = (i > 0 && b[i - 1] == b'.') || b.get(i + 2) == Some(&b'.');
            let range = i > 0 && b[i - 1].is_ascii_digit();
            doubled && !ellipsis && !range
        })
    })
}

#[test]
fn help_has_one_style_and_version_only_at_the_top() {
    // Imperative verbs: "Run the log daemon", not "Runs …", "Load generators" or "The log".
    const VERBS: &[&str] = &[
        "Ask", "Attest", "Check", "Classify", "Create", "Download", "Follow", "Inspect", "Load",
        "Measure", "Print", "Run", "Say", "Serve", "Submit", "Turn", "Write",
    ];
    let all = all_commands();
    assert!(all.len() >= 25, "{all:?}");
    for (path, summary) in &all {
        let verb = summary.split_whitespace().next().unwrap_or_default();
        assert!(
            VERBS.contains(&verb),
            "tally {}: {summary:?} does not start with an imperative verb",
            path.join(" ")
        );
        assert!(
            !summary.ends_with('.') && summary.len() <= 66,
            "tally {}: {summary:?} ends with a period or is long",
            path.join(" ")
        );
    }
    // check-config has its own summary, not serve's.
    for role in ["log", "aggregate", "cache"] {
        let summary = |name: &str| {
            all.iter()
                .find(|(p, _)| p[..] == [role.to_owned(), name.to_owned()])
                .map(|(_, s)| s.clone())
                .unwrap()
        };
        let check = summary("check-config");
        assert!(
            check.starts_with("Check") && check.contains("config") && check != summary("serve"),
            "tally {role} check-config: {check:?}"
        );
        // And its own example.
        let help = run_ok(tally().args([role, "check-config", "--help"]));
        assert!(
            help.contains(&format!("tally {role} check-config --config")),
            "{help}"
        );
    }

    // No doubled period in any help text (`--vkey..` once was), long or short; -V only on
    // `tally` itself.
    assert!(doubled_period("checks the signature with --vkey..").is_some());
    assert!(doubled_period("samples 0..RANGE, and so on...").is_none());
    for path in std::iter::once(Vec::new()).chain(all.iter().map(|(p, _)| p.clone())) {
        for flag in ["--help", "-h"] {
            let help = run_ok(tally().args(&path).arg(flag));
            if let Some(at) = doubled_period(&help) {
                panic!("tally {} {flag}: doubled period in {at:?}", path.join(" "));
            }
            assert_eq!(
                help.contains("--version"),
                path.is_empty(),
                "tally {} {flag}",
                path.join(" ")
            );
        }
    }
    assert!(run_ok(tally().arg("--version")).starts_with("tally "));
    let err = fails(tally().args(["log", "-V"]));
    assert!(err.contains("unexpected argument '-V'"), "{err}");
}

#[test]
fn the_hook_help_and_the_docs_name_the_same_hook_path() {
    let help = run_ok(tally().args(["hook", "--help"]));
    let docs =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"))
            .unwrap();
    let line = "post-build-hook = /usr/local/bin/tally-hook";
    assert!(help.contains(line), "{help}");
    assert!(docs.contains(line));
    // On NixOS the module sets its own wrapper: help must not suggest the package's link.
    assert!(help.contains("services.tally.hook"), "{help}");
    assert!(
        !help.contains("/run/current-system/sw/bin/tally-hook"),
        "{help}"
    );
}

// ---- output to a closed pipe, and --json ------------------------------------------------

#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    // The reader is gone before the first write: every write fails with EPIPE.
    let mut child = tally()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && !stderr(&out).contains("panicked"),
        "{}: {}",
        out.status,
        stderr(&out)
    );

    // As a user runs it.
    let tally = tally_tests::tally_bin();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' completions bash | head -1",
            tally.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "_tally() {\n");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    // --json: the script as a JSON string.
    let v: serde_json::Value = serde_json::from_str(&run_ok(tally_tests::tally().args([
        "completions",
        "zsh",
        "--json",
    ])))
    .unwrap();
    assert_eq!(v["shell"], "zsh");
    assert!(v["script"].as_str().unwrap().contains("#compdef tally"));
}

#[test]
fn connection_refused_is_said_once_with_the_command_to_run() {
    let url = closed_port();
    let path = sample::output_path(1).to_string();
    for (args, command) in [
        (
            vec!["query", "--aggregator", &url, &path],
            "is `tally aggregate serve` running there?",
        ),
        (
            vec!["log", "checkpoint", "--log", &url],
            "is `tally log serve` running there?",
        ),
    ] {
        let err = fails(tally().args(&args));
        assert_eq!(
            err.matches("Connection refused").count(),
            1,
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&url) && err.contains(command),
            "{args:?}: {err}"
        );
        assert!(!err.contains("caused by: \n"), "{err}");

        // --json: the same error as one JSON object on stdout, nothing on stderr.
        let out = tally().arg("--json").args(&args).output().unwrap();
        assert!(!out.status.success());
        let v: serde_json::Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{args:?} --json: {e}: {}", stdout(&out)));
        let error = v["error"].as_str().unwrap();
        assert!(
            error.contains("Connection refused") && error.contains(command),
            "{v}"
        );
        assert_eq!(stderr(&out), "", "{args:?}");
    }
    // A daemon that refuses to start, with --json after the subcommand.
    let out = tally()
        .args([
            "log",
            "serve",
            "--json",
            "--config",
            "/nonexistent/log.toml",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/log.toml"),
        "{v}"
    );
    // A usage error (clap's) with --json is JSON too, naming the bad argument.
    let out = tally()
        .args(["--json", "query", "--no-such-flag", &path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("usage error --json: {e}: {}", stdout(&out)));
    assert!(
        v["error"].as_str().unwrap().contains("--no-such-flag"),
        "{v}"
    );
}

// ---- keys ----------------------------------------------------------------------------------

#[test]
fn a_secret_key_given_as_a_public_key_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    run_ok(
        tally()
            .args(["keygen", "--name", "keys.example/log", "--secret-key-file"])
            .arg(&key),
    );
    let secret = fs::read_to_string(&key).unwrap().trim().to_owned();
    let material = secret.rsplit(':').next().unwrap();
    let path = sample::output_path(1).to_string();
    for args in [
        vec![
            "log",
            "checkpoint",
            "--log",
            "http://127.0.0.1:1",
            "--vkey",
            &secret,
        ],
        vec![
            "log",
            "lookup",
            "--log",
            "http://127.0.0.1:1",
            "--vkey",
            &secret,
            &path,
        ],
        vec!["verify", "bundle.json", "--vkey", &secret],
    ] {
        let err = fails(tally().args(&args));
        assert!(
            !err.contains(material),
            "{args:?} echoed the secret key: {err}"
        );
        assert!(
            err.contains("SECRET") && err.contains("tally key public --secret-key-file"),
            "{args:?}: {err}"
        );
    }

    // A truncated public key says so, naming the flag.
    let public = run_ok(
        tally()
            .args(["key", "public", "--secret-key-file"])
            .arg(&key),
    );
    let vkey = public.lines().nth(1).unwrap();
    let err = fails(tally().args([
        "log",
        "checkpoint",
        "--log",
        "http://127.0.0.1:1",
        "--vkey",
        &vkey[..vkey.len() - 8],
    ]));
    assert!(err.contains("--vkey") && err.contains("truncated"), "{err}");

    // `tally key public` also prints the key as a witness's, labelled.
    let signing = tally_store::read_signing_key(&key).unwrap();
    let cosigner = tally_core::cosignature::Cosigner::new(signing)
        .verifier()
        .to_vkey();
    assert_eq!(
        public.lines().nth(2),
        Some(format!("as a witness (cosigner key): {cosigner}").as_str()),
        "{public}"
    );
}

/// A stale `--vkey` (another key under the same name) names both key IDs, on the command
/// line and on the dashboard; the dashboard shows the aggregator's own witness key; report
/// uploads are refused in JSON; and a client pointed at the wrong service says which one
/// answers.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_keys_and_wrong_services_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(&dir.path().join("log"), "stale.example/log", &[]);
    log.submit(&[sample::attestation(1)]).await;
    let stale = SigningKey::from_seed(KeyName::new("stale.example/log").unwrap(), [7; 32])
        .verifying_key()
        .to_note_vkey();
    let (right, old) = (key_id(&log.vkey.to_note_vkey()).to_owned(), key_id(&stale));

    let err = fails(tally().args(["log", "checkpoint", "--log", &log.url(), "--vkey", &stale]));
    assert!(
        err.contains(&right) && err.contains(old) && err.contains("stale"),
        "{err}"
    );

    // An aggregator given the stale key: the dashboard says the same.
    let token = dir.path().join("admin.token");
    fs::write(&token, "let-me-define-reports").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let admin = format!("admin_token_file = \"{}\"", token.display());
    let agg = AggregatorDaemon::start(
        &dir.path().join("agg"),
        &[(log.origin.clone(), stale.clone(), vec![log.url()])],
        &[&admin],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let front = loop {
        let r =
            http::request(agg.addr, "GET", "/", &[("Accept", "application/json")], &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if v["logs"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(old))
        {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}\n{}", agg.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let detail = front["logs"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&right) && detail.contains("stale"),
        "{detail}"
    );
    // Its own witness key, in the JSON and on the page, with what to do with it.
    assert_eq!(front["witness_key"], agg.witness_vkey.as_str(), "{front}");
    let page = http::get(agg.addr, "/").text();
    assert!(page.contains(&agg.witness_vkey), "{page}");
    assert!(
        page.contains("<code>witness</code> line of their trust policy"),
        "{page}"
    );

    // Report uploads are refused in a short JSON answer, not a page.
    let r = http::request(agg.addr, "PUT", "/reports/system", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{v}"
    );

    // The aggregator's client pointed at a log, and at a binary cache.
    let path = sample::output_path(1).to_string();
    let err = fails(tally().args(["query", "--aggregator", &log.url(), &path]));
    assert!(
        err.contains("it is a Tally log, not a Tally aggregator")
            && err.contains(&format!("tally log lookup --log {}", log.url())),
        "{err}"
    );
    assert!(!err.lines().any(|l| l.trim_end().ends_with(':')), "{err}");
    let cache = CacheDaemon::start(
        &dir.path().join("cache"),
        &[format!("file://{}", dir.path().join("upstream").display())],
        &trust_policy(&[&log], ""),
        None,
        &[],
    );
    let err = fails(tally().args(["query", "--aggregator", &cache.url(), &path]));
    assert!(
        err.contains("it is a Tally binary cache, not a Tally aggregator")
            && err.contains(&format!("tally cache explain --cache {}", cache.url())),
        "{err}"
    );
    assert!(!err.contains("grpc-status header missing"), "{err}");
}

// ---- check-config --------------------------------------------------------------------------

/// A log config in `dir` with `key`, `origin` and `listen`.
fn log_config(dir: &Path, key: &Path, origin: &str, listen: &str) -> PathBuf {
    let config = format!(
        "origin = \"{origin}\"\nsecret_key_file = \"{}\"\ndata_dir = \"{}\"\n\
         listen = \"{listen}\"\nsubmit_socket = \"{}\"\nspool_dir = \"{}\"\n",
        key.display(),
        dir.join("data").display(),
        dir.join("s.sock").display(),
        dir.join("spool").display()
    );
    let path = dir.join("log.toml");
    fs::write(&path, config).unwrap();
    path
}

#[test]
fn check_config_catches_what_serve_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let check = |config: &Path, build_time: bool| {
        let mut cmd = tally();
        cmd.args(["log", "check-config", "--config"]).arg(config);
        if build_time {
            cmd.arg("--build-time");
        }
        cmd.output().unwrap()
    };

    // The example config as shipped: its key file is not there yet.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/log.toml");
    let err = stderr(&check(&example, false));
    assert!(
        err.contains("`secret_key_file`") && err.contains("tally keygen"),
        "{err}"
    );

    let key = dir.path().join("log.key");
    run_ok(
        tally()
            .args(["keygen", "--name", "right.example/log", "--secret-key-file"])
            .arg(&key),
    );
    // An origin that is not the key's name.
    let out = check(
        &log_config(dir.path(), &key, "wrong.example/log", "127.0.0.1:0"),
        false,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`origin`") && err.contains("right.example/log"),
        "{err}"
    );

    // A listen address in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().map(|a| (busy, a)).unwrap();
    let config = log_config(dir.path(), &key, "right.example/log", &busy.1.to_string());
    let out = check(&config, false);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`listen`") && err.contains(&busy.1.to_string()),
        "{err}"
    );

    // A key others can read.
    let config = log_config(dir.path(), &key, "right.example/log", "127.0.0.1:0");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&config, false);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`secret_key_file`") && err.contains("chmod 600"),
        "{err}"
    );

    // At build time the files are not checked, and it says which checks it skipped.
    let out = check(&config, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("not checked (--build-time)") && said.contains("secret_key_file"),
        "{said}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "check-config wrote nothing"
    );
}

#[test]
fn check_config_counts_in_words() {
    let dir = tempfile::tempdir().unwrap();
    // An aggregator following one log: "1 log", not "1 logs".
    let vkey = SigningKey::from_seed(KeyName::new("one.example/log").unwrap(), [1; 32])
        .verifying_key()
        .to_note_vkey();
    let config = AggregatorDaemon::write_config(
        &dir.path().join("agg"),
        &[(
            "one.example/log".into(),
            vkey.clone(),
            vec!["http://127.0.0.1:1".into()],
        )],
        &[],
    );
    let said = run_ok(
        tally()
            .args(["aggregate", "check-config", "--build-time", "--config"])
            .arg(&config),
    );
    assert!(said.contains("(1 log, policy"), "{said}");

    // A cache with one upstream: "1 upstream".
    let policy = dir.path().join("trust.policy");
    fs::write(
        &policy,
        format!("log {vkey} http://127.0.0.1:1\nquorum none\n"),
    )
    .unwrap();
    let cache = dir.path().join("cache.toml");
    fs::write(
        &cache,
        format!(
            "upstreams = [\"https://cache.example.org\"]\nsecret_key_file = \"{}\"\n\
             policy_file = \"{}\"\n",
            dir.path().join("cache.key").display(),
            policy.display()
        ),
    )
    .unwrap();
    let said = run_ok(
        tally()
            .args(["cache", "check-config", "--build-time", "--config"])
            .arg(&cache),
    );
    assert!(
        said.contains("1 upstream,") && said.contains("1 log,") && !said.contains("1 logs"),
        "{said}"
    );
}

// ---- submit --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn submit_says_the_real_log_size_when_everything_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(&dir.path().join("log"), "conflicts.example/log", &[]);
    log.submit(&(0..5).map(sample::attestation).collect::<Vec<_>>())
        .await;
    let input = dir.path().join("other.jsonl");
    let other: Vec<_> = (0..5)
        .map(|i| sample::attestation_with_nar(i, Hash::of(b"another build")))
        .collect();
    fs::write(&input, jsonl(&other)).unwrap();
    let submit = |json: bool| {
        let mut cmd = tally();
        cmd.args(["submit", "--log", &log.socket(), "--jsonl"])
            .arg(&input);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = submit(false);
    assert_eq!(out.status.code(), Some(1));
    let said = stdout(&out);
    assert!(
        said.contains("0 appended") && said.contains("5 conflicting; log size 5"),
        "{said}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&submit(true))).unwrap();
    assert_eq!(v["summary"]["log_size"], 5, "{v}");

    // One attestation: "1 attestation".
    let one = dir.path().join("one.jsonl");
    fs::write(&one, jsonl(&[sample::attestation(9)])).unwrap();
    let said = run_ok(
        tally()
            .args(["submit", "--log", &log.socket(), "--jsonl"])
            .arg(&one),
    );
    assert!(said.contains("submitted 1 attestation to"), "{said}");
}

#[test]
fn jsonl_mistakes_are_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let a = [sample::attestation(1), sample::attestation(2)];
    let submit = |name: &str, text: &str| {
        let file = dir.path().join(name);
        fs::write(&file, text).unwrap();
        // Input is checked before anything is sent: no log is needed.
        fails(
            tally()
                .args(["submit", "--log", "unix:/nonexistent.sock", "--jsonl"])
                .arg(&file),
        )
    };
    let err = submit("array.json", &serde_json::to_string(&a).unwrap());
    assert!(
        err.contains("line 1")
            && err.contains("JSON array")
            && err.contains("one compact JSON object per line")
            && err.contains("jq -c '.[]'"),
        "{err}"
    );
    let err = submit("pretty.json", &serde_json::to_string_pretty(&a[0]).unwrap());
    assert!(
        err.contains("line 1")
            && err.contains("pretty-printed")
            && err.contains("one compact JSON object per line"),
        "{err}"
    );
    // A bad third line: its number once, serde's own "at line 1" not repeated.
    let err = submit(
        "bad.jsonl",
        &format!("{}{{\"output_path\": 3}}\n", jsonl(&a)),
    );
    assert!(
        err.contains("line 3") && !err.contains("at line 1"),
        "{err}"
    );
}

// ---- the hook ------------------------------------------------------------------------------

#[test]
fn the_hook_without_drv_path_says_so_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let hook = |json: bool| {
        let mut cmd = tally();
        cmd.arg("hook")
            .env_remove("DRV_PATH")
            .env("TALLY_SPOOL_DIR", dir.path().join("spool"));
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "the hook never fails a build");
        out
    };
    let said = stderr(&hook(false));
    assert!(
        said.starts_with("tally hook: NOT attested: DRV_PATH is not set")
            && said.contains("post-build-hook"),
        "{said}"
    );
    assert!(!said.contains(": :") && !said.contains("  "), "{said}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&hook(true))).unwrap();
    assert!(v["drv_path"].is_null(), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("DRV_PATH is not set"),
        "{v}"
    );
}

// ---- paths ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn paths_are_taken_the_way_users_have_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(&dir.path().join("log"), "paths.example/log", &[]);
    let a = sample::attestation(1);
    log.submit(std::slice::from_ref(&a)).await;
    let vkey = log.vkey.to_note_vkey();
    let lookup = |path: &str| {
        tally()
            .args(["log", "lookup", "--log", &log.url(), "--vkey", &vkey, path])
            .output()
            .unwrap()
    };
    // A file inside a store path is that store path.
    let inside = format!("{}/bin/x", a.output_path());
    let out = lookup(&inside);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("attests {} at entry 0", a.output_path())),
        "{}",
        stdout(&out)
    );
    // A symlink that does not lead into the store says where it leads.
    let elsewhere = dir.path().join("result");
    std::os::unix::fs::symlink(dir.path(), &elsewhere).unwrap();
    let err = fails(
        tally()
            .args(["log", "lookup", "--log", &log.url(), "--vkey", &vkey])
            .arg(&elsewhere),
    );
    assert!(
        err.contains(&dir.path().display().to_string()) && err.contains("not in /nix/store"),
        "{err}"
    );

    // A `result` link whose target was garbage-collected still names its store path.
    let dangling = dir.path().join("result-gone");
    std::os::unix::fs::symlink(a.output_path().to_string(), &dangling).unwrap();
    let out = lookup(dangling.to_str().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("attests {} at entry 0", a.output_path())),
        "{}",
        stdout(&out)
    );

    // A real `result` symlink is its store path.
    if !nix::available("paths_are_taken_the_way_users_have_them (result symlink)") {
        return;
    }
    let file = dir.path().join("tally-result-test");
    fs::write(&file, format!("{:?}", std::time::SystemTime::now())).unwrap();
    let stored = nix::output(
        nix::command("nix-store", &dir.path().join("cache"))
            .arg("--add")
            .arg(&file),
    );
    let result = dir.path().join("result-link");
    std::os::unix::fs::symlink(&stored, &result).unwrap();
    let out = lookup(result.to_str().unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("has no attestation"),
        "{}",
        stdout(&out)
    );
}
