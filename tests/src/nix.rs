//! Real Nix, for the tests that need it.
//!
//! With `TALLY_NIX_TESTS=1` (as CI sets after `apt-get install -y nix-bin`) a missing Nix is a
//! test failure. Without it, Nix tests skip and say so.

use std::path::Path;
use std::process::Command;

/// Whether Nix tests must run.
pub fn required() -> bool {
    std::env::var("TALLY_NIX_TESTS").is_ok_and(|v| v == "1")
}

/// Returns `true` if Nix is available. Panics if Nix tests are required but Nix is missing;
/// prints a skip notice and returns `false` if they are not required.
pub fn available(test: &str) -> bool {
    let found = Command::new("nix-store")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match (found, required()) {
        (true, _) => true,
        (false, true) => panic!(
            "TALLY_NIX_TESTS=1 but nix-store is not runnable: install Debian's nix-bin \
             (apt-get install -y nix-bin) and run as root"
        ),
        (false, false) => {
            eprintln!(
                "skipping {test}: Nix is not installed (set TALLY_NIX_TESTS=1 to require it)"
            );
            false
        }
    }
}

/// Settings that let root use Debian's Nix without a daemon, build users, sandbox or
/// network substituters.
pub const NIX_CONFIG: &str = "build-users-group =\nsandbox = false\nsubstituters =\n\
                              experimental-features = nix-command\n";

/// A Nix command with [`NIX_CONFIG`] and a private cache directory, so narinfo lookups are
/// never served from an earlier run's cache.
pub fn command(program: &str, cache: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("NIX_CONFIG", NIX_CONFIG)
        .env("XDG_CACHE_HOME", cache);
    cmd
}

/// Runs a Nix command and returns its trimmed stdout, panicking with its stderr on failure.
pub fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    crate::assert_success(cmd, &out);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A fresh client store that substitutes from one binary cache, trusting only its key, with
/// signatures required: what a Nix user of a Tally cache runs.
pub struct Client {
    dir: std::path::PathBuf,
}

impl Client {
    /// A client store (and Nix cache directory) under `dir`.
    pub fn new(dir: &Path) -> Client {
        Client {
            dir: dir.to_owned(),
        }
    }

    fn nix(&self, program: &str) -> Command {
        command(program, &self.dir.join("xdg-cache"))
    }

    /// `nix-store --realise path`, substituting from `cache` with public key `key` only.
    pub fn realise(&self, cache: &str, key: &str, path: &str) -> std::process::Output {
        self.nix("nix-store")
            .arg("--store")
            .arg(self.dir.join("store"))
            .args(["--realise", path])
            .args(["--option", "substituters", cache])
            .args(["--option", "trusted-public-keys", key])
            .args(["--option", "require-sigs", "true"])
            .args(["--option", "narinfo-cache-negative-ttl", "0"])
            .args(["--option", "narinfo-cache-positive-ttl", "0"])
            .output()
            .unwrap()
    }

    /// Whether `path` is valid in the client store.
    pub fn has(&self, path: &str) -> bool {
        self.nix("nix-store")
            .arg("--store")
            .arg(self.dir.join("store"))
            .args(["--check-validity", path])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// The contents of file `path` in the client store.
    pub fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("store").join(path.trim_start_matches('/'))).unwrap()
    }
}
