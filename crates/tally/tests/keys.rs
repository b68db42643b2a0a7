//! `tally keygen` and `tally key public`, run as a user would.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

fn tally() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tally"))
}

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let sk = dir.path().join("log.key");
    let out = tally()
        .args([
            "keygen",
            "--name",
            "builder1.example.org/tally",
            "--json",
            "--secret-key-file",
        ])
        .arg(&sk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["name"], "builder1.example.org/tally");
    assert_eq!(
        fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secret = fs::read_to_string(&sk).unwrap();
    assert!(secret.starts_with("builder1.example.org/tally:"));
    assert!(
        !secret.ends_with('\n'),
        "Nix writes key files without a newline"
    );

    let again = tally()
        .args(["keygen", "--name", "x", "--secret-key-file"])
        .arg(&sk)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(
        fs::read_to_string(&sk).unwrap(),
        secret,
        "the key is untouched"
    );

    let public = tally()
        .args(["key", "public", "--secret-key-file"])
        .arg(&sk)
        .output()
        .unwrap();
    let text = String::from_utf8(public.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], json["public_key"].as_str().unwrap());
    assert_eq!(lines[1], json["verifier_key"].as_str().unwrap());
    assert!(lines[1].starts_with("builder1.example.org/tally+"));
    // The third line, labelled: the key as a witness's cosigner key (type 0x04).
    let cosigner = lines[2]
        .strip_prefix("as a witness (cosigner key): ")
        .unwrap();
    assert_eq!(cosigner, json["cosigner_key"].as_str().unwrap());
    tally_core::cosignature::CosignatureVerifier::parse(cosigner).unwrap();
}

#[test]
fn readable_key_files_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sk = dir.path().join("k");
    let ok = tally()
        .args(["keygen", "--name", "k", "--secret-key-file"])
        .arg(&sk)
        .output()
        .unwrap();
    assert!(ok.status.success());
    fs::set_permissions(&sk, fs::Permissions::from_mode(0o644)).unwrap();
    let out = tally()
        .args(["key", "public", "--secret-key-file"])
        .arg(&sk)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chmod 600") && err.contains(&sk.display().to_string()),
        "{err}"
    );

    let bad = tally()
        .args(["keygen", "--name", "has space", "--secret-key-file"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--name") && err.contains("' '"), "{err}");
    assert!(
        !dir.path().join("other").exists(),
        "nothing written for a bad name"
    );
}

#[test]
fn the_example_log_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/log.toml");
    let out = tally()
        .args(["log", "check-config", "--build-time", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("not checked (--build-time)"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        fs::read_to_string(example)
            .unwrap()
            .replace("batch_idle_ms = 5", "batch_idle_ms = 500"),
    )
    .unwrap();
    let out = tally()
        .args(["log", "check-config", "--build-time", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batch_idle_ms"), "{err}");
    fs::write(
        &bad,
        "origin = \"a.example/log\"\nsecret_key_file = \"/k\"\nlisten = \"not an address\"\n",
    )
    .unwrap();
    let out = tally()
        .args(["log", "check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("listen"), "{err}");
}

#[test]
fn the_example_aggregator_config_is_valid() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/aggregator.toml"
    );
    let out = tally()
        .args([
            "aggregate",
            "check-config",
            "--build-time",
            "--config",
            example,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("not checked (--build-time)"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        fs::read_to_string(example)
            .unwrap()
            .replace("policy = \"majority\"", "policy = \"2-of-4\""),
    )
    .unwrap();
    let out = tally()
        .args(["aggregate", "check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("`policy`") && err.contains("2-of-4"),
        "{err}"
    );
}

#[test]
fn the_example_cache_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cache.toml");
    let out = tally()
        .args(["cache", "check-config", "--build-time", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("not checked (--build-time)"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = fs::read_to_string(example).unwrap();
    for (from, to, option) in [
        (
            "upstreams = [\"https://cache.nixos.org\"]",
            "upstreams = [\"cache.nixos.org\"]",
            "upstreams",
        ),
        (
            "# config = \"/etc/tally/aggregator.toml\"",
            "config = \"/etc/tally/aggregator.toml\"",
            "aggregator",
        ),
        (
            "decision_ttl_secs = 60",
            "decision_ttl_secs = 0",
            "decision_ttl_secs",
        ),
        ("priority = 30", "priority = 30\nprority = 1", "prority"),
    ] {
        assert!(text.contains(from), "{from}");
        fs::write(&bad, text.replace(from, to)).unwrap();
        let out = tally()
            .args(["cache", "check-config", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(option),
            "{option}: {err}"
        );
    }
}

/// `check-config` refuses what `serve` would refuse on this machine, naming the option and
/// the fix; `--build-time` skips exactly those checks and says so.
#[test]
fn check_config_catches_what_serve_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    let config = dir.path().join("log.toml");
    let write = |origin: &str, listen: &str| {
        fs::write(
            &config,
            format!(
                "origin = \"{origin}\"\nsecret_key_file = \"{}\"\ndata_dir = \"{}\"\n\
                 listen = \"{listen}\"\nsubmit_socket = \"{}\"\nspool_dir = \"{}\"\n",
                key.display(),
                dir.path().join("data").display(),
                dir.path().join("log.sock").display(),
                dir.path().join("spool").display(),
            ),
        )
        .unwrap();
    };
    let check = |extra: &[&str]| {
        let out = tally()
            .args(["log", "check-config", "--config"])
            .arg(&config)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    write("a.example/log", "127.0.0.1:0");

    // The key file is missing: say how to make one.
    let (ok, _, err) = check(&[]);
    assert!(
        !ok && err.contains("secret_key_file") && err.contains("tally keygen"),
        "{err}"
    );
    let (ok, out, _) = check(&["--build-time"]);
    assert!(
        ok && out.contains("secret_key_file") && out.contains("listen"),
        "{out}"
    );

    // A key named after another origin.
    tally()
        .args(["keygen", "--name", "b.example/log", "--secret-key-file"])
        .arg(&key)
        .output()
        .unwrap();
    let (ok, _, err) = check(&[]);
    assert!(
        !ok && err.contains("`origin`") && err.contains("b.example/log"),
        "{err}"
    );

    // A key file others can read.
    write("b.example/log", "127.0.0.1:0");
    assert!(check(&[]).0, "{}", check(&[]).2);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = check(&[]);
    assert!(!ok && err.contains("chmod 600"), "{err}");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();

    // A listen address already taken.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    write("b.example/log", &held.local_addr().unwrap().to_string());
    let (ok, _, err) = check(&[]);
    assert!(
        !ok && err.contains("`listen`") && err.contains("already in use"),
        "{err}"
    );
    assert!(check(&["--build-time"]).0);
    assert!(
        !dir.path().join("data").exists(),
        "check-config writes nothing"
    );
}
