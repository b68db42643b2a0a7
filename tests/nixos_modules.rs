//! The NixOS modules (`nixos/`) and the flake, in the evaluation harness of `tests/nixos/`:
//! the real module system (nixpkgs' `lib.evalModules`, from `../shared/nixpkgs-lib`) and Nix
//! 2.8, declarations of the NixOS options the modules set, and a small `pkgs` whose
//! derivations build with the host's `/bin/sh`. It is not NixOS: no system is built and no
//! unit runs under systemd (docs/nixos.md says what is covered and what is not).
//!
//! Checked here: every `.nix` file parses; each module evaluates alone with its defaults and
//! all together with a full example; bad values fail with the option's own message, and
//! missing ones (the cache's trust policy) with the assertion's; units are hardened and start
//! the real command; the generated configs (and trust policies) pass the real binary's
//! `check-config`, and a bad one fails the build; the cache configures Nix, asks the logs
//! directly when it has no aggregator, and puts its trust policy in /etc/tally; the keygen
//! unit's script makes, keeps and checks keys; the hook wrapper attests to a live log, spools
//! when it is down, and never fails a build; the flake's modules evaluate through `nix eval`
//! with stub inputs; the VM test's nodes evaluate, their configs pass `check-config`, and its
//! script is valid Python; the examples in docs/nixos.md evaluate and build. Needs Nix; see
//! `tally_tests::nix`.

use std::cell::Cell;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tally_tests::daemon::LogDaemon;
use tally_tests::{nix, tally_bin};

/// The repository.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// nixpkgs' lib: `$TALLY_NIXPKGS_LIB`, or `../shared/nixpkgs-lib` beside the repository.
fn nixpkgs_lib() -> PathBuf {
    let path = std::env::var_os("TALLY_NIXPKGS_LIB")
        .map_or_else(|| repo().join("../shared/nixpkgs-lib"), PathBuf::from);
    assert!(
        path.join("lib/default.nix").exists(),
        "nixpkgs' lib is not at {}: the NixOS module tests evaluate the modules with it. CI \
         keeps it in ../shared/nixpkgs-lib beside the repository; set TALLY_NIXPKGS_LIB to \
         use another copy",
        path.display()
    );
    path.canonicalize().unwrap()
}

/// Nix settings for root without a daemon (as the other Nix tests), plus flakes.
fn nix_config() -> String {
    format!("{}extra-experimental-features = flakes\n", nix::NIX_CONFIG)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the evaluation harness (tests/nixos/eval.nix) with one tally binary.
struct Harness {
    dir: tempfile::TempDir,
    lib: PathBuf,
    tally: PathBuf,
    modules: Cell<usize>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_tally(&tally_bin())
    }

    fn with_tally(tally: &Path) -> Harness {
        Harness {
            dir: tempfile::tempdir().unwrap(),
            lib: nixpkgs_lib(),
            tally: tally.to_owned(),
            modules: Cell::new(0),
        }
    }

    /// A Nix command with the test settings and a private cache.
    fn command(&self, program: &str) -> Command {
        let mut cmd = nix::command(program, &self.dir.path().join("cache"));
        cmd.env("NIX_CONFIG", nix_config());
        cmd
    }

    /// Writes a module (Nix text) to a file of its own.
    fn module(&self, text: &str) -> PathBuf {
        let n = self.modules.get();
        self.modules.set(n + 1);
        let path = self.dir.path().join(format!("module-{n}.nix"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `nix-instantiate --eval` of eval.nix's `attr`, importing Tally's modules named in
    /// `import` ("default" for all) and the configuration `modules`.
    fn instantiate(&self, import: &[&str], modules: &[&str], attr: &str) -> Output {
        let import: Vec<String> = import.iter().map(|m| format!("\"{m}\"")).collect();
        let modules: Vec<String> = modules
            .iter()
            .map(|m| self.module(m).display().to_string())
            .collect();
        let mut cmd = self.command("nix-instantiate");
        cmd.args(["--eval", "--strict", "--json", "--read-write-mode"])
            .arg(repo().join("tests/nixos/eval.nix"))
            .arg("--arg")
            .arg("nixpkgsLib")
            .arg(&self.lib)
            .arg("--argstr")
            .arg("tallyBin")
            .arg(&self.tally)
            .args(["--arg", "import"])
            .arg(format!("[ {} ]", import.join(" ")))
            .args(["--arg", "modules"])
            .arg(format!("[ {} ]", modules.join(" ")))
            .args(["-A", attr]);
        cmd.output().unwrap()
    }

    /// The harness's summary of a configuration (services, settings, nix.settings, …).
    fn eval(&self, import: &[&str], modules: &[&str]) -> Value {
        self.eval_attr(import, modules, "summary")
    }

    fn eval_attr(&self, import: &[&str], modules: &[&str], attr: &str) -> Value {
        let out = self.instantiate(import, modules, attr);
        assert!(
            out.status.success(),
            "evaluating {modules:?} failed:\n{}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The error evaluating a configuration must fail with.
    fn eval_error(&self, import: &[&str], modules: &[&str]) -> String {
        let out = self.instantiate(import, modules, "summary");
        assert!(
            !out.status.success(),
            "{modules:?} evaluated, but should not have: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr(&out)
    }

    /// The derivations behind a configuration: config files, the hook's wrapper, scripts.
    fn drvs(&self, import: &[&str], modules: &[&str]) -> Value {
        self.eval_attr(import, modules, "drvs")
    }

    /// Builds a derivation; its output path, or the build's error.
    fn realise(&self, drv: &Value) -> Result<PathBuf, String> {
        let drv = drv.as_str().unwrap_or_else(|| panic!("not a drv: {drv}"));
        let out = self
            .command("nix-store")
            .args(["--realise", drv])
            .output()
            .unwrap();
        if out.status.success() {
            let path = String::from_utf8(out.stdout).unwrap();
            Ok(PathBuf::from(path.trim()))
        } else {
            Err(stderr(&out))
        }
    }
}

const LOG: &str = "{ services.tally.log.enable = true; }";
const HOOK: &str = "{ services.tally.hook.enable = true; }";
const AGGREGATOR: &str = r#"{
  services.tally.aggregator = {
    enable = true;
    logs.builder1 = {
      origin = "builder1.example.org/tally";
      vkey = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
      urls = [ "http://builder1.example.org:7420" ];
    };
  };
}"#;
/// The cache's trust policy: the three logs of examples/trust.policy, 2-of-3.
const CACHE: &str = r#"{
  services.tally.cache = {
    enable = true;
    settings.aggregator.url = "http://aggregator.example.org:7421";
    trustPolicy = {
      logs = {
        builder1.vkey = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
        builder2.vkey = "builder2.example.org/tally+8ebebb6f+AW6fgm3iw1G1XzNSwlYerg5utpTTPe8aoBMOnPiTyNKl";
        builder3.vkey = "builder3.example.org/tally+43154245+Af1xpV9ws6KXGSKzTnXcdeg6ex18Bm/wUgN3A+BulN6z";
      };
      attest = "2-of-3";
    };
  };
}"#;

/// A cache without an aggregator: it asks the logs, at its trust policy's URLs.
const CACHE_DIRECT: &str = r#"{
  services.tally.cache = {
    enable = true;
    trustPolicy = {
      logs = {
        builder1 = {
          vkey = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
          urls = [ "http://builder1.example.org:7420" ];
        };
        builder2 = {
          vkey = "builder2.example.org/tally+8ebebb6f+AW6fgm3iw1G1XzNSwlYerg5utpTTPe8aoBMOnPiTyNKl";
          urls = [ "http://builder2.example.org:7420" "http://mirror.example.org/builder2" ];
        };
        builder3 = {
          vkey = "builder3.example.org/tally+43154245+Af1xpV9ws6KXGSKzTnXcdeg6ex18Bm/wUgN3A+BulN6z";
          urls = [ "https://builder3.example.org" ];
        };
      };
      quorum = "none";
      attest = "majority";
    };
  };
}"#;

/// Every role on one machine, with most options set.
const FULL: &str = r#"{
  networking = { hostName = "builder1"; domain = "example.org"; };
  services.tally.log = {
    enable = true;
    settings = { listen = "[::]:7420"; batch_period_ms = 500; };
    secretKeyFile = "/run/secrets/tally-log.key";
    submitTokenFile = "/run/secrets/tally-submit.token";
    openFirewall = true;
  };
  services.tally.hook = { enable = true; budgetMs = 2000; };
  services.tally.aggregator = {
    enable = true;
    logs = {
      builder1 = {
        origin = "builder1.example.org/tally";
        vkey = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
        urls = [ "http://127.0.0.1:7420" ];
      };
      builder2 = {
        origin = "builder2.example.org/tally";
        vkey = "builder2.example.org/tally:bp+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU=";
        urls = [ "http://builder2.example.org:7420" "http://mirror.example.org/builder2" ];
        name = "Builder 2";
      };
    };
    settings = { listen = "0.0.0.0:7421"; policy = "2-of-2"; poll_interval_secs = 5; };
    witnessKeyFile = "/run/secrets/tally-witness.key";
    adminTokenFile = "/run/secrets/tally-admin.token";
    openFirewall = true;
  };
  services.tally.cache = {
    enable = true;
    publicKey = "builder1.example.org-tally-1:bp+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU=";
    trustPolicy = {
      logs = {
        builder1.vkey = "builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R";
        builder2 = {
          vkey = "builder2.example.org/tally+8ebebb6f+AW6fgm3iw1G1XzNSwlYerg5utpTTPe8aoBMOnPiTyNKl";
          urls = [ "http://builder2.example.org:7420" "http://mirror.example.org/builder2" ];
        };
      };
      attest = "2-of-2";
    };
    # Rolling out: serve everything, count what the gate would refuse, keep the other caches.
    onlySubstituter = false;
    settings = {
      mode = "report-only";
      ca_file = builtins.toFile "ca.pem" "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
      decision_ttl_secs = 30;
      upstream_timeout_secs = 10;
    };
  };
}"#;

const NO_BUILD_TIME_CHECK: &str = r#"{ lib, ... }: {
  services.tally = lib.genAttrs [ "log" "aggregator" "cache" ] (_: { checkConfig = false; });
}"#;

/// Checks the hardening every daemon must have.
fn assert_hardened(name: &str, unit: &Value) {
    let sc = &unit["serviceConfig"];
    assert!(
        sc["DynamicUser"] == json!(true) || sc["User"].as_str().is_some_and(|u| u != "root"),
        "{name} runs as root: {sc:#}"
    );
    for (key, value) in [
        ("ProtectSystem", json!("strict")),
        ("ProtectHome", json!(true)),
        ("PrivateTmp", json!(true)),
        ("NoNewPrivileges", json!(true)),
        ("CapabilityBoundingSet", json!("")),
        ("Restart", json!("on-failure")),
    ] {
        assert_eq!(sc[key], value, "{name}: {key}");
    }
    assert!(sc["StateDirectory"].is_string(), "{name}: StateDirectory");
    let families = sc["RestrictAddressFamilies"].as_array().unwrap();
    assert!(!families.is_empty(), "{name}: RestrictAddressFamilies");
    for family in families {
        assert!(
            ["AF_UNIX", "AF_INET", "AF_INET6"].contains(&family.as_str().unwrap()),
            "{name}: {family}"
        );
    }
    let filter = sc["SystemCallFilter"].as_array().unwrap();
    assert_eq!(filter[0], json!("@system-service"), "{name}");
    for credential in sc["LoadCredential"].as_array().unwrap() {
        let (_, path) = credential.as_str().unwrap().split_once(':').unwrap();
        assert!(
            path.starts_with('/') && !path.starts_with("/nix/store/"),
            "{name}: credential {path} must be a file outside the store"
        );
    }
}

/// Checks `ExecStart` is `<tally>/bin/tally <command> serve --config <store>/<file>.toml`.
fn assert_exec_start(unit: &Value, command: &str, file: &str) {
    let exec = unit["serviceConfig"]["ExecStart"].as_str().unwrap();
    let (program, args) = exec.split_once(' ').unwrap();
    assert!(
        program.starts_with("/nix/store/") && program.ends_with("-tally/bin/tally"),
        "{exec}"
    );
    let config = args
        .strip_prefix(&format!("{command} serve --config "))
        .unwrap_or_else(|| panic!("{exec}"));
    assert!(
        config.starts_with("/nix/store/") && config.ends_with(&format!("-{file}.toml")),
        "{exec}"
    );
}

/// The keygen units: root's, but with nothing else: no network, no capabilities.
fn assert_keygen(name: &str, unit: &Value) {
    let sc = &unit["serviceConfig"];
    assert_eq!(sc["Type"], json!("oneshot"), "{name}");
    assert_eq!(sc["PrivateNetwork"], json!(true), "{name}");
    assert_eq!(sc["RestrictAddressFamilies"], json!("none"), "{name}");
    assert_eq!(sc["CapabilityBoundingSet"], json!(""), "{name}");
    assert_eq!(sc["ProtectSystem"], json!("strict"), "{name}");
    assert_eq!(sc["NoNewPrivileges"], json!(true), "{name}");
}

fn check_config_supports_build_time(tally: &Path) -> bool {
    let out = Command::new(tally)
        .args(["log", "check-config", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("--build-time")
}

#[test]
fn every_nix_file_parses() {
    if !nix::available("every_nix_file_parses") {
        return;
    }
    let h = Harness::new();
    let mut files = vec![repo().join("flake.nix")];
    let mut dirs = vec![repo().join("nixos"), repo().join("tests/nixos")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "nix") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 14, "{files:?}");
    for file in files {
        let out = h
            .command("nix-instantiate")
            .arg("--parse")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not parse:\n{}",
            file.display(),
            stderr(&out)
        );
    }
}

#[test]
fn each_module_evaluates_alone_with_its_defaults() {
    if !nix::available("each_module_evaluates_alone_with_its_defaults") {
        return;
    }
    let h = Harness::new();

    let log = h.eval(&["log"], &[LOG]);
    assert_eq!(log["warnings"], json!([]));
    let settings = &log["settings"]["log"];
    assert_eq!(settings["origin"], json!("nixos/tally"));
    assert_eq!(settings["listen"], json!("127.0.0.1:7420"));
    assert_eq!(settings["submit_socket"], json!("/run/tally-log/log.sock"));
    assert_eq!(settings["spool_dir"], json!("/var/lib/tally-log/spool"));
    assert_eq!(
        settings["secret_key_file"],
        json!("/run/credentials/tally-log.service/secret-key")
    );
    let unit = &log["services"]["tally-log"];
    assert_hardened("tally-log", unit);
    assert_exec_start(unit, "log", "tally-log");
    // No key given: one is made before the first start, and loaded as a credential.
    assert_eq!(
        unit["serviceConfig"]["LoadCredential"],
        json!(["secret-key:/var/lib/tally-log-key/log.key"])
    );
    assert_eq!(unit["requires"], json!(["tally-log-keygen.service"]));
    assert_keygen("tally-log-keygen", &log["services"]["tally-log-keygen"]);
    assert_eq!(log["firewall"], json!([]), "the firewall is opt-in");
    assert_eq!(log["users"]["tally-log"]["isSystemUser"], json!(true));
    assert_eq!(log["groups"], json!(["tally-log"]));

    // The hook alone, for a log elsewhere: a spool of root's own.
    let hook = h.eval(&["hook"], &[HOOK]);
    let post_build_hook = hook["nixSettings"]["post-build-hook"].as_str().unwrap();
    assert!(
        post_build_hook.starts_with("/nix/store/")
            && post_build_hook.ends_with("-tally-post-build-hook"),
        "{post_build_hook}"
    );
    assert_eq!(
        hook["tmpfiles"]["10-tally-hook"]["/var/lib/tally-hook/spool"]["d"]["mode"],
        json!("0700")
    );
    assert_eq!(hook["services"], json!({}));

    let aggregator = h.eval(&["aggregator"], &[AGGREGATOR]);
    let settings = &aggregator["settings"]["aggregator"];
    // Unset: tally's default (majority, or a policy file's `attest` line) applies.
    assert_eq!(settings["policy"], json!(null));
    assert_eq!(settings["logs"][0]["name"], json!("builder1"));
    assert!(settings.get("witness_key_file").is_none());
    let unit = &aggregator["services"]["tally-aggregator"];
    assert_hardened("tally-aggregator", unit);
    assert_exec_start(unit, "aggregate", "tally-aggregator");
    assert_eq!(unit["serviceConfig"]["DynamicUser"], json!(true));

    let cache = h.eval(&["cache"], &[CACHE]);
    let settings = &cache["settings"]["cache"];
    assert_eq!(settings["upstreams"], json!(["https://cache.nixos.org"]));
    assert_eq!(
        settings["aggregator"],
        json!({"url": "http://aggregator.example.org:7421"})
    );
    assert_eq!(settings["mode"], json!("enforce"));
    // trustPolicy, rendered into the store, is the policy file, and /etc/tally/trust.policy.
    let policy = settings["policy_file"].as_str().unwrap();
    assert!(
        policy.starts_with("/nix/store/") && policy.ends_with("-tally-trust.policy"),
        "{policy}"
    );
    assert_eq!(cache["etc"]["tally/trust.policy"], json!(policy));
    let unit = &cache["services"]["tally-cache"];
    assert_hardened("tally-cache", unit);
    assert_exec_start(unit, "cache", "tally-cache");
    // No aggregator on this machine: nothing to wait for.
    assert_eq!(unit["wants"], json!(["network-online.target"]));
    assert_eq!(
        unit["after"],
        json!(["network-online.target", "tally-cache-keygen.service"])
    );
    assert_keygen(
        "tally-cache-keygen",
        &cache["services"]["tally-cache-keygen"],
    );
    // Without publicKey, Nix cannot trust the cache yet: a warning says where the key is.
    let warnings = cache["warnings"].to_string();
    assert!(
        warnings.contains("head -1 /var/lib/tally-cache-key/cache.key.pub"),
        "{warnings}"
    );
}

#[test]
fn a_full_example_evaluates_with_hardened_units() {
    if !nix::available("a_full_example_evaluates_with_hardened_units") {
        return;
    }
    let h = Harness::new();
    let all = h.eval(&["default"], &[FULL]);
    assert_eq!(all["warnings"], json!([]));
    for (unit, command, file) in [
        ("tally-log", "log", "tally-log"),
        ("tally-aggregator", "aggregate", "tally-aggregator"),
        ("tally-cache", "cache", "tally-cache"),
    ] {
        assert_hardened(unit, &all["services"][unit]);
        assert_exec_start(&all["services"][unit], command, file);
    }
    let log = &all["services"]["tally-log"]["serviceConfig"];
    assert_eq!(log["User"], json!("tally-log"));
    assert_eq!(log["RuntimeDirectory"], json!("tally-log"));
    assert_eq!(
        log["LoadCredential"],
        json!([
            "secret-key:/run/secrets/tally-log.key",
            "submit-token:/run/secrets/tally-submit.token"
        ])
    );
    // Keys were given: nothing generates one.
    assert!(all["services"].get("tally-log-keygen").is_none());
    assert_eq!(all["services"]["tally-log"]["requires"], json!([]));

    let settings = &all["settings"];
    assert_eq!(
        settings["log"]["origin"],
        json!("builder1.example.org/tally")
    );
    assert_eq!(
        settings["log"]["submit_token_file"],
        json!("/run/credentials/tally-log.service/submit-token")
    );
    assert_eq!(settings["log"]["batch_period_ms"], json!(500));
    let aggregator = &settings["aggregator"];
    assert_eq!(aggregator["logs"].as_array().unwrap().len(), 2);
    assert_eq!(aggregator["logs"][1]["name"], json!("Builder 2"));
    assert_eq!(
        aggregator["witness_key_file"],
        json!("/run/credentials/tally-aggregator.service/witness-key")
    );
    assert_eq!(
        aggregator["admin_token_file"],
        json!("/run/credentials/tally-aggregator.service/admin-token")
    );
    // The cache asks the aggregator on this machine, through loopback, and checks its
    // answers against its own policy.
    let cache = &settings["cache"];
    assert_eq!(cache["aggregator"]["url"], json!("http://127.0.0.1:7421"));
    assert_eq!(cache["mode"], json!("report-only"));
    assert!(
        cache["ca_file"].as_str().unwrap().ends_with("-ca.pem"),
        "{cache}"
    );
    assert!(cache.get("policy").is_none(), "{cache}");
    assert_eq!(all["etc"]["tally/trust.policy"], cache["policy_file"]);
    assert_eq!(
        all["services"]["tally-cache"]["after"],
        json!([
            "network-online.target",
            "tally-aggregator.service",
            "tally-cache-keygen.service"
        ])
    );

    // The spool contract with the hook: the same directory, the log's group, setgid.
    let spool = &all["tmpfiles"]["10-tally-log"]["/var/lib/tally-log/spool"]["d"];
    assert_eq!(spool["user"], json!("tally-log"));
    assert_eq!(spool["group"], json!("tally-log"));
    assert_eq!(spool["mode"], json!("2770"));
    assert_eq!(
        settings["log"]["spool_dir"],
        json!("/var/lib/tally-log/spool")
    );

    let mut ports: Vec<u64> = all["firewall"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, [7420, 7421], "the cache's port stays closed");
    let etc = all["etc"].as_object().unwrap();
    for file in [
        "tally/log.toml",
        "tally/aggregator.toml",
        "tally/cache.toml",
        "tally/trust.policy",
    ] {
        assert!(etc.contains_key(file), "{etc:?}");
    }

    // The hook wrapper submits to the local log's socket and spools into its spool.
    let drvs = h.drvs(&["default"], &[FULL, NO_BUILD_TIME_CHECK]);
    let wrapper = std::fs::read_to_string(h.realise(&drvs["hook"]).unwrap()).unwrap();
    for expected in [
        "--log unix:/run/tally-log/log.sock",
        "--spool-dir /var/lib/tally-log/spool",
        "--budget-ms 2000",
        "exit 0",
    ] {
        assert!(wrapper.contains(expected), "{expected}:\n{wrapper}");
    }
}

#[test]
fn bad_values_fail_evaluation_with_the_options_message() {
    if !nix::available("bad_values_fail_evaluation_with_the_options_message") {
        return;
    }
    let h = Harness::new();
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["log"],
            r#"{ services.tally.log = { enable = true; settings.listen = "localhost:7420"; }; }"#,
            "services.tally.log.settings.listen' is not of type `IP socket address",
        ),
        (
            &["log"],
            r#"{ services.tally.log = { enable = true; settings.origin = "builder 1"; }; }"#,
            "services.tally.log.settings.origin' is not of type `key name",
        ),
        (
            &["log"],
            r#"{ services.tally.log = { enable = true; secretKeyFile = ./log.key; }; }"#,
            "services.tally.log.secretKeyFile' is not of type `null or absolute path outside the Nix store",
        ),
        (
            &["log"],
            r#"{ services.tally.log = { enable = true; secretKeyFile = "/nix/store/00000000000000000000000000000000-log.key"; }; }"#,
            "services.tally.log.secretKeyFile' is not of type `null or absolute path outside the Nix store",
        ),
        (
            &["log"],
            r#"{ services.tally.log = { enable = true; settings.secret_key_file = "/etc/log.key"; }; }"#,
            "services.tally.log.settings.secret_key_file' is read-only",
        ),
        (
            &["log"],
            r#"{ services.tally.log = { enable = true; settings.spool_dir = "/srv/spool"; }; }"#,
            "services.tally.log.settings.spool_dir must be a directory inside /var/lib/tally-log",
        ),
        (
            &["log"],
            r#"{ services.tally.log = { enable = true; settings.submit_socket = "/run/tally/log.sock"; }; }"#,
            "services.tally.log.settings.submit_socket must be inside /run/tally-log",
        ),
        (
            &["aggregator"],
            "{ services.tally.aggregator.enable = true; }",
            "services.tally.aggregator: no logs to follow",
        ),
        (
            &["aggregator"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.aggregator.settings.policy = "2 of 3"; }}"#,
                h.module(AGGREGATOR).display()
            ),
            "services.tally.aggregator.settings.policy' is not of type `null or trust policy",
        ),
        (
            &["aggregator"],
            r#"{ services.tally.aggregator = { enable = true; logs.b1 = { origin = "b1.example/log"; vkey = "b1.example/log:bp+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU="; urls = [ ]; }; }; }"#,
            "services.tally.aggregator.logs.b1.urls' is not of type `non-empty",
        ),
        (
            &["aggregator"],
            r#"{ services.tally.aggregator = { enable = true; logs.b1 = { origin = "b1.example/log"; vkey = "not a key"; urls = [ "http://b1:7420" ]; }; }; }"#,
            "services.tally.aggregator.logs.b1.vkey' is not of type",
        ),
        (
            &["aggregator"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.aggregator.policyFile = {}; }}"#,
                h.module(AGGREGATOR).display(),
                repo().join("examples/trust.policy").display()
            ),
            "services.tally.aggregator: both logs and policyFile are set",
        ),
        (
            &["aggregator"],
            r#"{ services.tally.aggregator = { enable = true; policyFile = "/etc/tally/trust.policy"; }; }"#,
            "services.tally.aggregator.policyFile (/etc/tally/trust.policy) is not in",
        ),
        (
            &["cache"],
            "{ services.tally.cache.enable = true; }",
            "services.tally.cache: no trust policy. Set services.tally.cache.policyFile",
        ),
        (
            &["cache"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.cache.settings.policy = "2-of-3"; }}"#,
                h.module(CACHE).display()
            ),
            "services.tally.cache.settings.policy is no longer an option of the cache",
        ),
        (
            &["cache"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.cache.settings.mode = "audit"; }}"#,
                h.module(CACHE).display()
            ),
            r#"services.tally.cache.settings.mode' is not of type `one of "enforce", "report-only"'"#,
        ),
        (
            &["cache"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.cache.trustPolicy.attest = "2 of 3"; }}"#,
                h.module(CACHE).display()
            ),
            "services.tally.cache.trustPolicy.attest' is not of type `trust policy",
        ),
        (
            &["cache"],
            r#"{ services.tally.cache = { enable = true; trustPolicy.logs.b1.vkey = "b1.example/log:bp+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU="; }; }"#,
            "services.tally.cache.trustPolicy.logs.b1.vkey' is not of type `signed-note verifier key",
        ),
        (
            &["cache"],
            r#"{ services.tally.cache = { enable = true; trustPolicy.logs = { }; }; }"#,
            "services.tally.cache.trustPolicy.logs is empty",
        ),
        (
            &["cache"],
            &format!(
                r#"{{ lib, ... }}: {{ imports = [ {} ]; services.tally.cache.settings.aggregator.url = lib.mkForce null; }}"#,
                h.module(CACHE).display()
            ),
            "but these have no urls: trustPolicy.logs.builder1.urls, \
             trustPolicy.logs.builder2.urls, trustPolicy.logs.builder3.urls.",
        ),
        (
            &["cache"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.cache.policyFile = {}; }}"#,
                h.module(CACHE).display(),
                repo().join("examples/trust.policy").display()
            ),
            "services.tally.cache: both trustPolicy and policyFile (",
        ),
        (
            &["cache"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.cache.settings.ca_file = "/etc/ssl/internal-ca.pem"; }}"#,
                h.module(CACHE).display()
            ),
            "services.tally.cache.settings.ca_file (/etc/ssl/internal-ca.pem) is not in",
        ),
        (
            &["cache"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.cache.publicKey = "cache.example.org-1"; }}"#,
                h.module(CACHE).display()
            ),
            "services.tally.cache.publicKey' is not of type",
        ),
        (
            &["cache"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.cache.publicKey = "other.example.org-1:bp+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU="; }}"#,
                h.module(CACHE).display()
            ),
            "services.tally.cache.publicKey (other.example.org-1:",
        ),
        (
            &["cache"],
            &format!(
                r#"{{ imports = [ {} ]; services.tally.cache.settings.upstreams = [ "cache.nixos.org" ]; }}"#,
                h.module(CACHE).display()
            ),
            "services.tally.cache.settings.upstreams.\"[definition 1-entry 1]\"' is not of type `string matching the pattern (https?|file)://",
        ),
        (
            &["hook"],
            r#"{ services.tally.hook = { enable = true; budgetMs = 50; }; }"#,
            "services.tally.hook.budgetMs' is not of type `integer between 200 and 10000",
        ),
        (
            &["default"],
            r#"{ services.tally = { log.enable = true; hook = { enable = true; spoolDir = "/var/lib/tally-log/other"; }; }; }"#,
            "services.tally.hook.spoolDir (/var/lib/tally-log/other) must be the spool_dir of the log",
        ),
        (
            &["default"],
            r#"{ services.tally = { log.enable = true; hook = { enable = true; log = "http://tally.example.org:7420"; }; }; }"#,
            "submits to http://tally.example.org:7420, not to the log on this machine",
        ),
        (
            &["hook"],
            r#"{ services.tally.hook.enable = true; nix.settings.post-build-hook = "/run/current-system/sw/bin/other-hook"; }"#,
            "nix.settings.post-build-hook' has conflicting definition values",
        ),
    ];
    for (import, module, expected) in cases {
        let error = h.eval_error(import, &[*module]);
        assert!(
            error.contains(*expected),
            "{module}\nshould fail with {expected:?}, but failed with:\n{error}"
        );
    }
}

#[test]
fn generated_configs_pass_the_binarys_check_config() {
    if !nix::available("generated_configs_pass_the_binarys_check_config") {
        return;
    }
    let h = Harness::new();
    let build_time = check_config_supports_build_time(&h.tally);
    if !build_time {
        eprintln!(
            "note: this tally has no `check-config --build-time`; checking without it (the \
             generated secret files do not exist here)"
        );
    }
    let aggregator_policy = format!(
        "{{ services.tally.aggregator = {{ enable = true; policyFile = {}; }}; }}",
        repo().join("examples/trust.policy").display()
    );
    // Each config, and what check-config must say of each role: the trust policy is read
    // (it is in the store), and its `attest` line is the quorum.
    // (role, what its check-config output must contain) for each config.
    type Expected<'a> = &'a [(&'a str, &'a [&'a str])];
    let cases: &[(&str, Expected)] = &[
        (
            FULL,
            &[
                ("log", &["log builder1.example.org/tally"]),
                ("aggregator", &["2 logs, policy 2-of-2"]),
                (
                    "cache",
                    &[
                        "answers from aggregator http://127.0.0.1:7421",
                        "policy: 2 logs, attest 2-of-2, witness quorum none",
                    ],
                ),
            ],
        ),
        (LOG, &[("log", &["log nixos/tally"])]),
        (AGGREGATOR, &[("aggregator", &["1 log, policy majority"])]),
        (
            &aggregator_policy,
            &[("aggregator", &["3 logs, policy 2-of-3"])],
        ),
        (
            CACHE,
            &[(
                "cache",
                &[
                    "answers from aggregator http://aggregator.example.org:7421",
                    "policy: 3 logs, attest 2-of-3, witness quorum none",
                ],
            )],
        ),
        (
            CACHE_DIRECT,
            &[(
                "cache",
                &[
                    "answers from the logs directly",
                    "policy: 3 logs, attest majority, witness quorum none",
                ],
            )],
        ),
    ];
    for (extra, roles) in cases {
        let drvs = h.drvs(&["default"], &[extra, NO_BUILD_TIME_CHECK]);
        for (role, expected) in *roles {
            let file = h.realise(&drvs[role]).unwrap();
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                text.contains(&format!(
                    "secret_key_file = \"/run/credentials/tally-{role}.service/"
                )) || *role == "aggregator",
                "{text}"
            );
            let command = if *role == "aggregator" {
                "aggregate"
            } else {
                *role
            };
            let mut check = Command::new(&h.tally);
            check.args([command, "check-config", "--config"]).arg(&file);
            if build_time {
                check.arg("--build-time");
            }
            let out = check.output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "tally {command} check-config refused the {role} config generated from\n\
                 {extra}\n{text}\n{stdout}{}",
                stderr(&out)
            );
            for expected in *expected {
                assert!(
                    stdout.contains(expected),
                    "{role}: {expected:?} not in\n{stdout}\nfor\n{text}"
                );
            }
            if *role == "cache" {
                // The policy file was there to check: only the key and the port were not.
                assert!(!stdout.contains("policy_file"), "{stdout}");
                assert!(!text.contains("policy ="), "{text}");
            }
        }
    }

    // Without an aggregator there is no [aggregator] table at all (an empty one would be
    // refused), and the policy lists every log's URL, mirrors as `mirror` lines.
    let drvs = h.drvs(&["default"], &[CACHE_DIRECT, NO_BUILD_TIME_CHECK]);
    let text = std::fs::read_to_string(h.realise(&drvs["cache"]).unwrap()).unwrap();
    assert!(!text.contains("aggregator"), "{text}");
    let policy =
        std::fs::read_to_string(h.realise(&drvs["etc:tally/trust.policy"]).unwrap()).unwrap();
    let lines: Vec<&str> = policy
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines,
        [
            "log builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R http://builder1.example.org:7420",
            "log builder2.example.org/tally+8ebebb6f+AW6fgm3iw1G1XzNSwlYerg5utpTTPe8aoBMOnPiTyNKl http://builder2.example.org:7420",
            "mirror builder2.example.org/tally http://mirror.example.org/builder2",
            "log builder3.example.org/tally+43154245+Af1xpV9ws6KXGSKzTnXcdeg6ex18Bm/wUgN3A+BulN6z https://builder3.example.org",
            "quorum none",
            "attest majority",
        ],
        "{policy}"
    );
}

#[test]
fn a_bad_setting_fails_the_build_not_the_start() {
    if !nix::available("a_bad_setting_fails_the_build_not_the_start") {
        return;
    }
    let h = Harness::new();
    assert!(
        check_config_supports_build_time(&h.tally),
        "{} has no `log check-config --build-time`, which the modules' build-time check runs \
         (nixos/common.nix)",
        h.tally.display()
    );
    // Checked by default: the config file is a derivation that runs check-config.
    let drvs = h.drvs(&["default"], &[FULL]);
    for role in ["log", "aggregator", "cache"] {
        let file = h.realise(&drvs[role]).unwrap();
        assert!(
            file.to_string_lossy()
                .ends_with(&format!("-tally-{role}.toml")),
            "{}",
            file.display()
        );
    }
    let fails = |module: &str, role: &str, expected: &[&str]| {
        let drvs = h.drvs(&["default"], &[FULL, module]);
        let error = h.realise(&drvs[role]).unwrap_err();
        for expected in expected {
            assert!(error.contains(expected), "{expected:?} not in\n{error}");
        }
        assert!(
            error.contains(&format!("tally-{role}.toml.drv' failed")),
            "{error}"
        );
    };
    // Well typed, but wrong: 3-of-2 passes the option's type, and fails check-config.
    fails(
        r#"{ lib, ... }: { services.tally.aggregator.settings.policy = lib.mkForce "3-of-2"; }"#,
        "aggregator",
        &["3-of-2"],
    );
    // The cache's trust policy is checked too: 2-of-3 for its two logs.
    fails(
        r#"{ lib, ... }: { services.tally.cache.trustPolicy.attest = lib.mkForce "2-of-3"; }"#,
        "cache",
        &[
            "policy_file",
            "policy 2-of-3 counts 3 logs, but 2 are followed",
        ],
    );
    // No aggregator, and a log the policy file gives no URL: the logs cannot be asked.
    fails(
        r#"{ lib, ... }: {
          services.tally.cache = {
            trustPolicy = lib.mkForce null;
            policyFile = builtins.toFile "trust.policy" ''
              log builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R
              quorum none
            '';
            settings.aggregator.url = lib.mkForce null;
          };
        }"#,
        "cache",
        &["has no URL, and there is no [aggregator] to ask"],
    );
}

#[test]
fn the_cache_configures_nix() {
    if !nix::available("the_cache_configures_nix") {
        return;
    }
    let h = Harness::new();
    let key = "laptop-tally-1:bp+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU=";
    let with_key = format!(
        r#"{{ networking.hostName = "laptop"; services.tally.cache.publicKey = "{key}"; }}"#
    );

    // The default: the only substituter, and the only trusted key.
    let only = h.eval(&["cache"], &[CACHE, &with_key]);
    assert_eq!(
        only["nixSettings"]["substituters"],
        json!(["http://127.0.0.1:7422?priority=30"])
    );
    assert_eq!(only["nixSettings"]["trusted-public-keys"], json!([key]));
    assert_eq!(only["warnings"], json!([]));

    // Beside the others, tried first.
    let beside = r#"{ services.tally.cache = { onlySubstituter = false; settings = { listen = "0.0.0.0:8422"; priority = 20; }; }; }"#;
    let beside = h.eval(&["cache"], &[CACHE, &with_key, beside]);
    assert_eq!(
        beside["nixSettings"]["substituters"],
        json!([
            "http://127.0.0.1:8422?priority=20",
            "https://cache.nixos.org/"
        ])
    );
    assert_eq!(
        beside["nixSettings"]["trusted-public-keys"],
        json!([
            "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
            key
        ])
    );

    // Report-only passes on what the gate refuses with the upstreams' signatures: with
    // onlySubstituter, Nix would not trust them, and a warning says so.
    let report_only = r#"{ services.tally.cache.settings.mode = "report-only"; }"#;
    let warned = h.eval(&["cache"], &[CACHE, &with_key, report_only]);
    let warnings: Vec<&str> = warned["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let warnings = warnings.concat();
    assert!(
        warnings.contains("settings.mode is \"report-only\"")
            && warnings.contains("set services.tally.cache.onlySubstituter = false"),
        "{warnings}"
    );
    let rolling_out = "{ services.tally.cache.onlySubstituter = false; }";
    let rolling_out = h.eval(&["cache"], &[CACHE, &with_key, report_only, rolling_out]);
    assert_eq!(rolling_out["warnings"], json!([]));

    // Not at all.
    let off = "{ services.tally.cache.configureNix = false; }";
    let off = h.eval(&["cache"], &[CACHE, off]);
    assert_eq!(
        off["nixSettings"]["substituters"],
        json!(["https://cache.nixos.org/"])
    );
    assert_eq!(off["warnings"], json!([]));

    // A key made beforehand: no keygen unit, loaded from its file.
    let own = r#"{ services.tally.cache = { secretKeyFile = "/run/secrets/cache.key"; publicKey = "cache.example.org-1:bp+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU="; }; }"#;
    let own = h.eval(&["cache"], &[CACHE, own]);
    assert!(own["services"].get("tally-cache-keygen").is_none());
    assert_eq!(
        own["services"]["tally-cache"]["serviceConfig"]["LoadCredential"],
        json!(["secret-key:/run/secrets/cache.key"])
    );
}

#[test]
fn the_cache_waits_only_for_the_aggregator_it_asks() {
    if !nix::available("the_cache_waits_only_for_the_aggregator_it_asks") {
        return;
    }
    let h = Harness::new();
    let aggregator =
        r#"{ services.tally.aggregator = { enable = true; settings.listen = "[::]:7421"; }; }"#;
    let unit = |s: &Value| s["services"]["tally-cache"].clone();

    // With an aggregator on this machine, the cache asks it by default, and starts after it.
    let local = h.eval(&["default"], &[AGGREGATOR, aggregator, CACHE_DIRECT]);
    assert_eq!(
        local["settings"]["cache"]["aggregator"]["url"],
        json!("http://[::1]:7421")
    );
    assert_eq!(
        unit(&local)["wants"],
        json!(["network-online.target", "tally-aggregator.service"])
    );
    assert!(
        unit(&local)["after"]
            .as_array()
            .unwrap()
            .contains(&json!("tally-aggregator.service"))
    );

    // Told to ask the logs instead, it neither waits for the aggregator nor names it.
    let direct = r#"{ services.tally.cache.settings.aggregator.url = null; }"#;
    let direct = h.eval(
        &["default"],
        &[AGGREGATOR, aggregator, CACHE_DIRECT, direct],
    );
    assert_eq!(
        direct["settings"]["cache"]["aggregator"]["url"],
        json!(null)
    );
    assert_eq!(unit(&direct)["wants"], json!(["network-online.target"]));
    assert_eq!(
        unit(&direct)["after"],
        json!(["network-online.target", "tally-cache-keygen.service"])
    );

    // Without an aggregator anywhere, it asks the logs.
    let alone = h.eval(&["cache"], &[CACHE_DIRECT]);
    assert_eq!(alone["settings"]["cache"]["aggregator"]["url"], json!(null));
    assert_eq!(unit(&alone)["wants"], json!(["network-online.target"]));
}

#[test]
fn a_policy_file_lands_in_the_settings() {
    if !nix::available("a_policy_file_lands_in_the_settings") {
        return;
    }
    let h = Harness::new();
    // A C2SP tlog-policy file holds only public keys: it may be in the store. One file for
    // both roles: the aggregator follows its logs, the cache decides with it.
    let policy = format!(
        r#"{{ lib, ... }}: {{
          services.tally = lib.genAttrs [ "aggregator" "cache" ] (_: {{
            enable = true;
            policyFile = {};
          }});
        }}"#,
        repo().join("examples/trust.policy").display()
    );
    let summary = h.eval(&["aggregator", "cache"], &[&policy]);
    for role in ["aggregator", "cache"] {
        let settings = &summary["settings"][role];
        let file = settings["policy_file"].as_str().unwrap();
        assert!(
            file.starts_with("/nix/store/") && file.ends_with("-trust.policy"),
            "{role}: {file}"
        );
        // No `logs`, no `policy`: the file's log and attest lines.
        assert!(settings.get("logs").is_none(), "{settings}");
        assert_eq!(settings["policy"], json!(null), "{settings}");
    }
    assert_eq!(
        summary["etc"]["tally/trust.policy"],
        summary["settings"]["cache"]["policy_file"]
    );
    // The default build-time check reads the file, and passes.
    let drvs = h.drvs(&["aggregator", "cache"], &[&policy]);
    for role in ["aggregator", "cache"] {
        h.realise(&drvs[role]).unwrap();
    }

    // Or a derivation (pkgs.writeText), written into the TOML as its path.
    let written = format!(
        r#"{{ lib, pkgs, ... }}: {{
          services.tally = lib.genAttrs [ "aggregator" "cache" ] (_: {{
            enable = true;
            policyFile = pkgs.writeText "written.policy" (builtins.readFile {});
          }});
        }}"#,
        repo().join("examples/trust.policy").display()
    );
    let drvs = h.drvs(&["aggregator", "cache"], &[&written]);
    for role in ["aggregator", "cache"] {
        let text = std::fs::read_to_string(h.realise(&drvs[role]).unwrap()).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("policy_file = \"/nix/store/")
                    && l.ends_with("-written.policy\"")),
            "{role}:\n{text}"
        );
    }

    // The cache's trustPolicy, shared with the aggregator on the same machine.
    let shared = r#"{ config, ... }: {
      services.tally.aggregator = { enable = true; policyFile = config.services.tally.cache.policyFile; };
    }"#;
    let summary = h.eval(&["aggregator", "cache"], &[CACHE_DIRECT, shared]);
    let file = summary["settings"]["cache"]["policy_file"]
        .as_str()
        .unwrap();
    assert!(file.ends_with("-tally-trust.policy"), "{file}");
    assert_eq!(
        summary["settings"]["aggregator"]["policy_file"],
        json!(file)
    );
    let drvs = h.drvs(&["aggregator", "cache"], &[CACHE_DIRECT, shared]);
    for role in ["aggregator", "cache"] {
        h.realise(&drvs[role]).unwrap();
    }

    // A policy file managed outside Nix: the cache reads it when it starts, and
    // /etc/tally/trust.policy is not made a link to itself.
    let managed =
        r#"{ services.tally.cache = { enable = true; policyFile = "/etc/tally/trust.policy"; }; }"#;
    let summary = h.eval(&["cache"], &[managed]);
    assert_eq!(
        summary["settings"]["cache"]["policy_file"],
        json!("/etc/tally/trust.policy")
    );
    assert!(summary["etc"].get("tally/trust.policy").is_none());
    h.realise(&h.drvs(&["cache"], &[managed])["cache"]).unwrap();
}

#[test]
fn the_keygen_unit_makes_keeps_and_checks_the_key() {
    if !nix::available("the_keygen_unit_makes_keeps_and_checks_the_key") {
        return;
    }
    let h = Harness::new();
    let script = |origin: &str| {
        let module = format!(
            r#"{{ services.tally.log = {{ enable = true; settings.origin = "{origin}"; }}; }}"#
        );
        let drvs = h.drvs(&["log"], &[&module]);
        h.realise(&drvs["unit:tally-log-keygen"]).unwrap()
    };
    let state = tempfile::tempdir().unwrap();
    let run = |script: &Path| {
        Command::new(script)
            .env("STATE_DIRECTORY", state.path())
            .output()
            .unwrap()
    };

    let first = script("keygen.test/tally");
    let out = run(&first);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = state.path().join("log.key");
    let public = std::fs::read_to_string(state.path().join("log.key.pub")).unwrap();
    assert!(public.starts_with("keygen.test/tally:"), "{public}");
    assert_eq!(public.lines().count(), 3, "{public}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&state.path().join("log.key.pub")), 0o644);
    let secret = std::fs::read(&key).unwrap();

    // Started again, it keeps the key.
    let out = run(&first);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&key).unwrap(), secret);

    // A new origin cannot silently get the old log's key.
    let out = run(&script("renamed.test/tally"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is the key of keygen.test/tally, not of renamed.test/tally"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&key).unwrap(), secret);
}

fn derivations(nonce: &str) -> String {
    format!(
        r#"
let
  mk = name: derivation {{
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo ${{name}} {nonce} > $out" ];
  }};
in {{
  manual = mk "tally-nixos-hook-manual";
  built = mk "tally-nixos-hook-built";
  spooled = mk "tally-nixos-hook-spooled";
  broken = mk "tally-nixos-hook-broken";
}}
"#
    )
}

/// `nix-build -A attr`, with `hook` as Nix's post-build-hook if given.
fn nix_build(h: &Harness, file: &Path, attr: &str, hook: Option<&Path>) -> Output {
    let mut config = nix::NIX_CONFIG.to_owned();
    if let Some(hook) = hook {
        config.push_str(&format!("post-build-hook = {}\n", hook.display()));
    }
    h.command("nix-build")
        .env("NIX_CONFIG", config)
        .arg(file)
        .args(["--no-out-link", "-A", attr])
        .output()
        .unwrap()
}

fn built_path(out: &Output) -> String {
    assert!(out.status.success(), "nix-build failed:\n{}", stderr(out));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

fn attests(log: &LogDaemon, path: &str) -> bool {
    let out = tally_tests::tally()
        .args(["log", "lookup", "--log", &log.socket(), "--vkey"])
        .arg(log.vkey.to_note_vkey())
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).contains(&format!(" attests {path} "))
}

#[test]
fn the_hook_wrapper_attests_to_a_live_log_and_never_fails_a_build() {
    if !nix::available("the_hook_wrapper_attests_to_a_live_log_and_never_fails_a_build") {
        return;
    }
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogDaemon::start(
        &dir.path().join("log"),
        "nixos-hook.test/tally",
        &["spool_drain_interval_secs = 1"],
    );
    let spool = log.dir.join("spool");
    let module = format!(
        r#"{{ services.tally.hook = {{ enable = true; log = "{}"; spoolDir = "{}"; }}; }}"#,
        log.socket(),
        spool.display()
    );
    let wrapper = h.realise(&h.drvs(&["hook"], &[&module])["hook"]).unwrap();
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let file = dir.path().join("default.nix");
    std::fs::write(&file, derivations(&nonce)).unwrap();

    // Run by hand, as Nix runs it: DRV_PATH and OUT_PATHS in the environment.
    let manual = built_path(&nix_build(&h, &file, "manual", None));
    let drv = nix::output(
        Command::new("nix-store")
            .args(["--query", "--deriver", &manual])
            .env("NIX_CONFIG", nix::NIX_CONFIG),
    );
    let out = Command::new(&wrapper)
        .env("DRV_PATH", &drv)
        .env("OUT_PATHS", &manual)
        .env("NIX_CONFIG", nix::NIX_CONFIG)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("attested"), "{}", stderr(&out));
    assert!(attests(&log, &manual), "{}", log.log());

    // As Nix's post-build-hook.
    let out = nix_build(&h, &file, "built", Some(&wrapper));
    let built = built_path(&out);
    assert!(stderr(&out).contains("attested"), "{}", stderr(&out));
    assert!(attests(&log, &built), "{}", log.log());

    // The log is down: the build succeeds, the hook spools, the log drains it when back.
    log.stop();
    let start = Instant::now();
    let out = nix_build(&h, &file, "spooled", Some(&wrapper));
    let spooled = built_path(&out);
    assert!(stderr(&out).contains("spooled"), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let files = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .count();
    assert_eq!(files, 1);
    log.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !attests(&log, &spooled) {
        assert!(Instant::now() < deadline, "not drained:\n{}", log.log());
        std::thread::sleep(Duration::from_millis(200));
    }

    // A hook whose tally cannot even start still lets the build succeed.
    let broken = Harness::with_tally(Path::new("/nonexistent/tally"));
    let broken_wrapper = broken
        .realise(&broken.drvs(&["hook"], &[&module])["hook"])
        .unwrap();
    let out = nix_build(&h, &file, "broken", Some(&broken_wrapper));
    built_path(&out);
    assert!(
        stderr(&out).contains("tally-post-build-hook: tally hook ended with status 127"),
        "{}",
        stderr(&out)
    );
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn the_flakes_modules_evaluate_with_nix_2_8() {
    if !nix::available("the_flakes_modules_evaluate_with_nix_2_8") {
        return;
    }
    let h = Harness::new();
    // The flake as Nix would fetch it, without the build tree: flake.nix, nixos/, tests/nixos/.
    let flake = h.dir.path().join("flake");
    std::fs::create_dir_all(&flake).unwrap();
    std::fs::copy(repo().join("flake.nix"), flake.join("flake.nix")).unwrap();
    copy_tree(&repo().join("nixos"), &flake.join("nixos"));
    copy_tree(&repo().join("tests/nixos"), &flake.join("tests/nixos"));
    // nixpkgs is a stub flake holding only nixpkgs' lib (tests/nixos/nixpkgs-stub).
    let eval = |output: &str, apply: &str| {
        let out = h
            .command("nix")
            .args(["eval", "--json", "--impure", "--no-write-lock-file"])
            .args(["--override-input", "nixpkgs"])
            .arg(format!(
                "path:{}",
                repo().join("tests/nixos/nixpkgs-stub").display()
            ))
            .args(["--override-input", "nixpkgs/nixpkgs-lib"])
            .arg(format!("path:{}", h.lib.display()))
            .arg(format!("path:{}#{output}", flake.display()))
            .args(["--apply", apply])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nix eval {output} --apply {apply}:\n{}",
            stderr(&out)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };

    assert_eq!(
        eval("nixosModules", "builtins.attrNames"),
        json!(["aggregator", "cache", "default", "hook", "log"])
    );
    assert_eq!(eval("overlays.default", "builtins.isFunction"), json!(true));
    // The other outputs need nixpkgs' packages: only their shape is evaluated.
    for (output, names) in [
        ("packages.x86_64-linux", json!(["default", "tally"])),
        ("apps.x86_64-linux", json!(["default", "demo"])),
        ("devShells.x86_64-linux", json!(["default"])),
        ("checks.x86_64-linux", json!(["federation", "package"])),
    ] {
        assert_eq!(eval(output, "builtins.attrNames"), names, "{output}");
    }

    // Each of the flake's modules, through the harness.
    let harness = repo().join("tests/nixos/eval.nix");
    let tally = h.tally.display();
    let lib = h.lib.display();
    for (name, config, unit) in [
        ("log", LOG, Some("tally-log")),
        ("hook", HOOK, None),
        ("aggregator", AGGREGATOR, Some("tally-aggregator")),
        ("cache", CACHE, Some("tally-cache")),
        ("default", FULL, Some("tally-log")),
    ] {
        let module = h.module(config);
        let summary = eval(
            "nixosModules",
            &format!(
                "ms: (import {} {{ nixpkgsLib = {lib}; tallyBin = \"{tally}\"; import = [ ms.{name} ]; \
                 modules = [ {} ]; }}).summary",
                harness.display(),
                module.display()
            ),
        );
        match unit {
            Some(unit) => assert_hardened(unit, &summary["services"][unit]),
            None => assert!(summary["nixSettings"]["post-build-hook"].is_string()),
        }
    }
}

#[test]
fn the_vm_tests_nodes_evaluate() {
    if !nix::available("the_vm_tests_nodes_evaluate") {
        return;
    }
    let h = Harness::new();
    let out = h
        .command("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo().join("tests/nixos/eval.nix"))
        .arg("--arg")
        .arg("nixpkgsLib")
        .arg(&h.lib)
        .arg("--argstr")
        .arg("tallyBin")
        .arg(&h.tally)
        .arg("--arg")
        .arg("test")
        .arg(repo().join("tests/nixos/federation.nix"))
        .args(["-A", "test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let test: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = test["nodes"].as_object().unwrap();
    assert_eq!(
        nodes.keys().collect::<Vec<_>>(),
        ["aggregator", "builder1", "builder2", "builder3", "client"]
    );
    for (name, node) in nodes {
        assert_eq!(node["warnings"], json!([]), "{name}");
    }
    for builder in ["builder1", "builder2", "builder3"] {
        let node = &nodes[builder];
        assert_hardened("tally-log", &node["services"]["tally-log"]);
        assert!(node["nixSettings"]["post-build-hook"].is_string());
        assert_eq!(
            node["settings"]["log"]["origin"],
            json!(format!("{builder}.test/tally"))
        );
    }
    let aggregator = &nodes["aggregator"]["settings"]["aggregator"];
    assert_eq!(aggregator["policy"], json!("2-of-3"));
    assert_eq!(aggregator["logs"].as_array().unwrap().len(), 3);
    let client = &nodes["client"];
    assert_eq!(
        client["nixSettings"]["substituters"],
        json!(["http://127.0.0.1:7422?priority=30"])
    );
    let cache = &client["settings"]["cache"];
    assert_eq!(cache["aggregator"]["url"], json!("http://aggregator:7421"));
    assert_eq!(client["etc"]["tally/trust.policy"], cache["policy_file"]);

    // Every node's config passes the real check-config (the client's with its trust policy),
    // and the client's policy is the builders' three test keys, no witnesses, 2-of-3.
    let drvs = h
        .command("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--read-write-mode"])
        .arg(repo().join("tests/nixos/eval.nix"))
        .arg("--arg")
        .arg("nixpkgsLib")
        .arg(&h.lib)
        .arg("--argstr")
        .arg("tallyBin")
        .arg(&h.tally)
        .arg("--arg")
        .arg("test")
        .arg(repo().join("tests/nixos/federation.nix"))
        .args(["-A", "test.drvs"])
        .output()
        .unwrap();
    assert!(drvs.status.success(), "{}", stderr(&drvs));
    let drvs: Value = serde_json::from_slice(&drvs.stdout).unwrap();
    for (node, role) in [
        ("builder1", "log"),
        ("builder2", "log"),
        ("builder3", "log"),
        ("aggregator", "aggregator"),
        ("client", "cache"),
    ] {
        h.realise(&drvs[node][role])
            .unwrap_or_else(|e| panic!("{node}'s {role} config: {e}"));
    }
    let policy = h
        .realise(&drvs["client"]["etc:tally/trust.policy"])
        .unwrap();
    let policy = std::fs::read_to_string(policy).unwrap();
    for builder in ["builder1", "builder2", "builder3"] {
        // Git keeps no file modes beyond the executable bit, so a checkout's key is
        // world-readable, and the binary rightly refuses it. Read a private copy.
        let key = h.dir.path().join(format!("{builder}.key"));
        std::fs::copy(repo().join(format!("tests/nixos/keys/{builder}.key")), &key).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let public = nix::output(
            Command::new(&h.tally)
                .args(["key", "public", "--secret-key-file"])
                .arg(&key),
        );
        let vkey = public.lines().nth(1).unwrap();
        assert!(
            policy.contains(&format!("\nlog {vkey} http://{builder}:7420\n")),
            "{builder}'s key {vkey} is not in the client's policy:\n{policy}"
        );
    }
    assert!(
        policy.ends_with("\nquorum none\nattest 2-of-3\n"),
        "{policy}"
    );

    // The test script is Python for the NixOS test driver. It checks paths under the
    // client's trust policy, and asks the cache why it refused one.
    let text = test["testScript"].as_str().unwrap();
    for expected in [
        "tally check --aggregator http://aggregator:7421 --policy-file /etc/tally/trust.policy",
        "tally cache explain --cache http://127.0.0.1:7422",
    ] {
        assert!(text.contains(expected), "{expected}");
    }
    let script = h.dir.path().join("test_script.py");
    std::fs::write(&script, text).unwrap();
    let out = Command::new("python3")
        .args(["-m", "py_compile"])
        .arg(&script)
        .output()
        .expect("python3 checks the VM test's script");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_examples_in_the_docs_evaluate() {
    if !nix::available("the_examples_in_the_docs_evaluate") {
        return;
    }
    let h = Harness::new();
    let docs = std::fs::read_to_string(repo().join("docs/nixos.md")).unwrap();
    // ```nix blocks that start with `# configuration.nix` are a machine's module; those
    // that start with `# machines:` a set of them; others (a flake) are not evaluated here.
    let mut blocks = Vec::new();
    let mut lines = docs.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```nix" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    // Each example evaluates without warnings, and its configs (and trust policies) build:
    // the real check-config accepts them.
    let builds = |module: &str| {
        let drvs = h.drvs(&["default"], &[module]);
        for (name, drv) in drvs.as_object().unwrap() {
            if let Err(e) = h.realise(drv) {
                panic!("{name} of\n{module}\ndoes not build:\n{e}");
            }
        }
    };
    let (mut modules, mut machines) = (0, 0);
    for block in &blocks {
        if block.starts_with("# configuration.nix") {
            let summary = h.eval(&["default"], &[block]);
            assert_eq!(summary["warnings"], json!([]), "{block}");
            builds(block);
            modules += 1;
        } else if block.starts_with("# machines:") {
            let file = h.module(block);
            let names = h
                .command("nix-instantiate")
                .args(["--eval", "--strict", "--json", "-E"])
                .arg(format!("builtins.attrNames (import {})", file.display()))
                .output()
                .unwrap();
            assert!(names.status.success(), "{block}\n{}", stderr(&names));
            let names: Vec<String> = serde_json::from_slice(&names.stdout).unwrap();
            for name in names {
                let module = format!("(import {}).{name}", file.display());
                let summary = h.eval(&["default"], &[&module]);
                assert_eq!(summary["warnings"], json!([]), "{name} in\n{block}");
                builds(&module);
                machines += 1;
            }
        }
    }
    assert!(modules >= 4, "{modules} configuration.nix examples");
    assert!(
        machines >= 5,
        "the federation example has {machines} machines"
    );
}
