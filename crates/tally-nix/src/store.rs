//! Facts about valid store paths, from the local Nix store via `nix-store --query`.
//!
//! `nix-store` is used rather than `nix path-info --json`, whose output shape changes between
//! Nix versions and which needs the `nix-command` experimental feature on older ones.

use std::time::Duration;

use tally_core::{NarHash, StorePath};
use tokio::process::Command;

/// What the store records about one valid path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInfo {
    /// The path.
    pub path: StorePath,
    /// SHA-256 of its NAR serialisation.
    pub nar_hash: NarHash,
    /// Size of its NAR serialisation.
    pub nar_size: u64,
    /// Its references.
    pub references: Vec<StorePath>,
}

/// Why the store could not be queried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreQueryError {
    /// `nix-store` could not be started.
    #[error("running nix-store: {0}")]
    Spawn(std::io::Error),
    /// It did not finish in time.
    #[error("nix-store {0} timed out")]
    Timeout(String),
    /// It failed.
    #[error("nix-store {args} failed: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// What it printed.
        stderr: String,
    },
    /// It printed something unexpected.
    #[error("nix-store {args} printed {line:?}: {problem}")]
    Output {
        /// The arguments.
        args: String,
        /// The offending line.
        line: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Runs `nix-store --query <args>` and returns its output lines.
async fn query(args: &[String], timeout: Duration) -> Result<Vec<String>, StoreQueryError> {
    let shown = args.join(" ");
    let run = Command::new("nix-store")
        .arg("--query")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| StoreQueryError::Timeout(shown.clone()))?
        .map_err(StoreQueryError::Spawn)?;
    if !out.status.success() {
        return Err(StoreQueryError::Failed {
            args: shown,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn parse<T>(
    args: &[String],
    line: &str,
    r: Result<T, impl ToString>,
) -> Result<T, StoreQueryError> {
    r.map_err(|e| StoreQueryError::Output {
        args: args.join(" "),
        line: line.to_owned(),
        problem: e.to_string(),
    })
}

/// The output paths of a built derivation (`nix-store --query --outputs`).
pub async fn outputs(
    drv: &StorePath,
    timeout: Duration,
) -> Result<Vec<StorePath>, StoreQueryError> {
    let args = vec!["--outputs".to_owned(), drv.to_string()];
    query(&args, timeout)
        .await?
        .iter()
        .map(|l| parse(&args, l, StorePath::parse(l)))
        .collect()
}

/// NAR hash, size and references of valid paths, in the order given.
pub async fn path_info(
    paths: &[StorePath],
    timeout: Duration,
) -> Result<Vec<PathInfo>, StoreQueryError> {
    let names: Vec<String> = paths.iter().map(ToString::to_string).collect();
    let mut args = vec!["--hash".to_owned()];
    args.extend(names.iter().cloned());
    let hashes = query(&args, timeout).await?;
    args[0] = "--size".to_owned();
    let sizes = query(&args, timeout).await?;
    if hashes.len() != paths.len() || sizes.len() != paths.len() {
        return Err(StoreQueryError::Output {
            args: args.join(" "),
            line: String::new(),
            problem: match paths.len() {
                1 => "expected 1 line".to_owned(),
                n => format!("expected {n} lines"),
            },
        });
    }
    let mut out = Vec::with_capacity(paths.len());
    for ((path, hash), size) in paths.iter().zip(&hashes).zip(&sizes) {
        // One call per path: with several paths, --references prints their union.
        let refs_args = vec!["--references".to_owned(), path.to_string()];
        let references = query(&refs_args, timeout)
            .await?
            .iter()
            .map(|l| parse(&refs_args, l, StorePath::parse(l)))
            .collect::<Result<_, _>>()?;
        out.push(PathInfo {
            path: path.clone(),
            nar_hash: parse(&args, hash, hash.parse())?,
            nar_size: parse(&args, size, size.parse())?,
            references,
        });
    }
    Ok(out)
}
