//! The log commands as a user runs them: `tally submit`, `tally log checkpoint`,
//! `tally log lookup`, and start-up errors that name the bad option.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use tally_core::sample;
use tally_tests::daemon::LogDaemon;
use tally_tests::{run_ok, tally};

fn jsonl(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| serde_json::to_string(&sample::attestation(i)).unwrap() + "\n")
        .collect()
}

#[test]
fn submit_checkpoint_and_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogDaemon::start(&dir.path().join("log"), "cli.example/log", &[]);
    let vkey = log.vkey.to_note_vkey();
    let input = dir.path().join("in.jsonl");
    fs::write(&input, jsonl(0..1200)).unwrap();

    let out = run_ok(
        tally()
            .args([
                "submit",
                "--json",
                "--batch",
                "500",
                "--log",
                &log.socket(),
                "--jsonl",
            ])
            .arg(&input),
    );
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["summary"]["appended"], 1200, "{out}");
    assert_eq!(summary["summary"]["log_size"], 1200);

    // Again from stdin: all duplicates, plus one conflict, which makes the exit status 1.
    let mut conflicting = jsonl(0..10);
    conflicting +=
        &(serde_json::to_string(&sample::attestation_with_nar(3, tally_core::Hash::ZERO)).unwrap()
            + "\n");
    let mut child = tally()
        .args(["submit", "--log", &log.socket(), "--jsonl", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conflicting.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10 already present, 1 conflicting"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflict:"));

    // Bad input: named by line, nothing sent.
    fs::write(
        &input,
        format!(
            "{}{{\"output_path\": \"/nix/store/short\"}}\n",
            jsonl(2000..2001)
        ),
    )
    .unwrap();
    let out = tally()
        .args(["submit", "--log", &log.socket(), "--jsonl"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Over http:// a token file is required.
    let out = tally()
        .args(["submit", "--log", &log.url(), "--jsonl"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"));

    // A single attestation from flags.
    let one = sample::attestation(5000);
    let f = one.fields();
    let mut cmd = tally();
    cmd.args(["submit", "--log", &log.socket()])
        .args(["--output-path", &f.output_path.to_string()])
        .args(["--drv-path", &f.drv_path.as_ref().unwrap().to_string()])
        .args(["--output-name", "out", "--nar-hash", &f.nar_hash.to_sri()])
        .args(["--nar-size", &f.nar_size.to_string()]);
    for r in &f.references {
        cmd.args(["--reference", &r.basename()]);
    }
    assert!(run_ok(&mut cmd).contains("1 appended"));

    // The checkpoint, verified.
    let out = run_ok(tally().args([
        "log",
        "checkpoint",
        "--json",
        "--log",
        &log.url(),
        "--vkey",
        &vkey,
    ]));
    let cp: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cp["verified"], true);
    assert_eq!(cp["parsed"]["tree"]["size"], 1201);

    // Lookup: present (the exact attestation), absent, and a failed verification.
    let path = one.output_path().to_string();
    let out = run_ok(tally().args(["log", "lookup", "--log", &log.url(), "--vkey", &vkey, &path]));
    assert!(
        out.contains(std::str::from_utf8(one.as_bytes()).unwrap()),
        "{out}"
    );
    let absent = sample::output_path(9999).hash().to_string();
    let out = run_ok(tally().args([
        "log",
        "lookup",
        "--json",
        "--log",
        &log.socket(),
        "--vkey",
        &vkey,
        &absent,
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["verified"].as_bool(), v["present"].as_bool()),
        (Some(true), Some(false))
    );
    let stranger = tally_core::SigningKey::from_seed(
        tally_core::KeyName::new("cli.example/log").unwrap(),
        [9; 32],
    );
    let out = tally()
        .args([
            "log",
            "lookup",
            "--log",
            &log.url(),
            "--vkey",
            &stranger.verifying_key().to_note_vkey(),
            &path,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"));
}

#[test]
fn start_up_errors_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    run_ok(
        tally()
            .args(["keygen", "--name", "right.example/log", "--secret-key-file"])
            .arg(&key),
    );
    let config = |origin: &str| {
        let c = format!(
            "origin = \"{origin}\"\nsecret_key_file = \"{}\"\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nsubmit_socket = \"{}\"\nspool_dir = \"{}\"\n",
            key.display(),
            dir.path().join("data").display(),
            dir.path().join("s.sock").display(),
            dir.path().join("spool").display()
        );
        let p = dir.path().join("log.toml");
        fs::write(&p, c).unwrap();
        p
    };
    let serve = |p: &std::path::Path| {
        let out = tally()
            .args(["log", "serve", "--config"])
            .arg(p)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = serve(&config("wrong.example/log"));
    assert!(
        err.contains("`origin`") && err.contains("right.example/log"),
        "{err}"
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = serve(&config("right.example/log"));
    assert!(
        err.contains("`secret_key_file`") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(
        !dir.path().join("data/log.redb").exists(),
        "nothing written before the checks pass"
    );
}

#[test]
fn the_hook_exits_zero_quickly_when_the_log_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    // A socket that accepts connections and never answers.
    let sock = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    // No real store is needed to show the time bound: without Nix the store query fails,
    // with Nix this drv does not exist. Either way the hook must exit 0 within its budget.
    let start = Instant::now();
    let out = tally()
        .arg("hook")
        .env(
            "DRV_PATH",
            "/nix/store/00000000000000000000000000000000-missing.drv",
        )
        .env("OUT_PATHS", "")
        .env("TALLY_LOG", format!("unix:{}", sock.display()))
        .env("TALLY_SPOOL_DIR", dir.path().join("spool"))
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT attested"));

    // Without DRV_PATH (not run by Nix) it still exits 0, and says why.
    let out = tally().arg("hook").env_remove("DRV_PATH").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DRV_PATH"));
}
