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
