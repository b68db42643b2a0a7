//! The post-build hook: attest every output of a finished build.
//!
//! Nix runs the hook after each build with `DRV_PATH` and `OUT_PATHS` set. Nix 2.8 leaves
//! `OUT_PATHS` empty, so outputs are resolved from the derivation when it is. Each output's
//! NAR hash, size and references come from the store.
//!
//! The hook never fails or stalls a build: it works within a fixed time budget, and if the
//! log cannot take the attestations in time they go to the spool. The daemon drains the
//! spool, and so does the hook, with what is left of its budget, whenever it reached the log
//! (a log reached over TCP never sees the build host's spool). Whatever happens, the caller
//! exits 0.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tally_core::{Attestation, AttestationFields, StorePath};
use tally_proto::client::{self, Address, BearerToken};
use tally_proto::v1;
use tally_store::Spool;
use tonic::Code;

use crate::{derivation, store};

/// How the hook reaches the log.
#[derive(Clone, Debug)]
pub struct HookConfig {
    /// The log daemon (usually its Unix socket).
    pub log: Address,
    /// The bearer token, for a log reached over TCP (empty for a socket); or why it could
    /// not be had. Then attestations are spooled, as for a log that is down, and submitted
    /// once the configuration is fixed.
    pub token: Result<BearerToken, String>,
    /// Where to keep attestations the log could not take.
    pub spool_dir: PathBuf,
    /// The whole hook's time budget.
    pub budget: Duration,
}

/// What the hook did.
#[derive(Debug)]
pub enum HookOutcome {
    /// The log appended (or already had) every attestation.
    Submitted {
        /// How many.
        attestations: usize,
        /// The log's size afterwards.
        log_size: u64,
        /// Attestations from earlier builds submitted from the spool on the way.
        drained: usize,
    },
    /// The log could not take them; they are in the spool.
    Spooled {
        /// How many.
        attestations: usize,
        /// The spool file.
        file: PathBuf,
        /// Why the submit failed.
        reason: String,
    },
    /// Nothing could be attested.
    Failed(String),
    /// The log refused the attestations for good (a conflict: the build did not reproduce).
    Refused(String),
}

/// Why attestations could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// `DRV_PATH` is missing or not a derivation path.
    #[error("DRV_PATH {0:?} is not a derivation in the Nix store")]
    DrvPath(String),
    /// The derivation file could not be read.
    #[error("reading {path}: {problem}")]
    Derivation {
        /// The .drv file.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// A path in `OUT_PATHS` is not a store path.
    #[error("OUT_PATHS: {0}")]
    OutPaths(String),
    /// The store could not be queried.
    #[error(transparent)]
    Store(#[from] store::StoreQueryError),
    /// An attestation could not be built.
    #[error("attesting {path}: {problem}")]
    Attestation {
        /// The output path.
        path: String,
        /// What went wrong.
        problem: String,
    },
}

/// The attestations for a finished build.
pub async fn attestations(
    drv_path: &str,
    out_paths: &str,
    timeout: Duration,
) -> Result<Vec<Attestation>, HookError> {
    let drv = StorePath::parse(drv_path)
        .ok()
        .filter(StorePath::is_derivation)
        .ok_or_else(|| HookError::DrvPath(drv_path.to_owned()))?;
    let text = tokio::fs::read_to_string(drv_path)
        .await
        .map_err(|e| HookError::Derivation {
            path: drv_path.to_owned(),
            problem: e.to_string(),
        })?;
    let declared = derivation::outputs(&text).map_err(|e| HookError::Derivation {
        path: drv_path.to_owned(),
        problem: e.to_string(),
    })?;
    let paths: Vec<StorePath> = if !out_paths.trim().is_empty() {
        out_paths
            .split_whitespace()
            .map(|p| StorePath::parse(p).map_err(|e| HookError::OutPaths(e.to_string())))
            .collect::<Result<_, _>>()?
    } else if declared.iter().all(|o| o.path.is_some()) {
        declared.iter().filter_map(|o| o.path.clone()).collect()
    } else {
        // Content-addressed outputs are only known once built: ask the store.
        store::outputs(&drv, timeout).await?
    };
    let drv_name = drv.name().trim_end_matches(".drv");
    let infos = store::path_info(&paths, timeout).await?;
    infos
        .into_iter()
        .map(|info| {
            let output_name = declared
                .iter()
                .find(|o| o.path.as_ref() == Some(&info.path))
                .map(|o| o.name.clone())
                .or_else(|| output_name_from_path(drv_name, info.path.name()));
            Attestation::new(AttestationFields {
                drv_path: Some(drv.clone()),
                output_name,
                output_path: info.path.clone(),
                nar_hash: info.nar_hash,
                nar_size: info.nar_size,
                references: info.references,
            })
            .map_err(|e| HookError::Attestation {
                path: info.path.to_string(),
                problem: e.to_string(),
            })
        })
        .collect()
}

/// Nix names output `o` of derivation `d` `d-o`, and output `out` just `d`.
fn output_name_from_path(drv_name: &str, path_name: &str) -> Option<String> {
    if path_name == drv_name {
        return Some("out".into());
    }
    path_name
        .strip_prefix(drv_name)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
}

/// Runs the hook for one build. Never returns an error: every failure is an outcome.
pub async fn run(config: &HookConfig, drv_path: &str, out_paths: &str) -> HookOutcome {
    let start = Instant::now();
    // Leave a quarter of the budget for spooling.
    let work = config.budget.mul_f32(0.75);
    let attestations = match tokio::time::timeout(work, attestations(drv_path, out_paths, work))
        .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return HookOutcome::Failed(e.to_string()),
        Err(_) => {
            return HookOutcome::Failed(format!("querying the store took longer than {work:?}"));
        }
    };
    if attestations.is_empty() {
        return HookOutcome::Failed(format!("{drv_path} has no outputs"));
    }
    let remaining = work
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(100));
    let reason = match tokio::time::timeout(remaining, submit(config, &attestations)).await {
        Ok(Ok(log_size)) => {
            // The log is reachable: send what earlier builds spooled, as time allows.
            let left = config.budget.saturating_sub(start.elapsed());
            let drained = tokio::time::timeout(left, drain(config)).await.unwrap_or(0);
            return HookOutcome::Submitted {
                attestations: attestations.len(),
                log_size,
                drained,
            };
        }
        Ok(Err(Submit::Refused(reason))) => return HookOutcome::Refused(reason),
        Ok(Err(Submit::Retry(reason))) => reason,
        Err(_) => format!("the log did not answer within {remaining:?}"),
    };
    let spooled = Spool::open(&config.spool_dir).and_then(|s| s.push(&attestations));
    match spooled {
        Ok(file) => HookOutcome::Spooled {
            attestations: attestations.len(),
            file,
            reason,
        },
        Err(e) => HookOutcome::Failed(format!("{reason}; and spooling failed too: {e}")),
    }
}

enum Submit {
    /// Worth retrying later, from the spool.
    Retry(String),
    /// Never going to be accepted.
    Refused(String),
}

/// Submits spooled files, oldest first, removing each once acknowledged; a file that cannot
/// be submitted is quarantined. Stops at the first failure, and when the caller's timeout
/// drops it: a file is removed only after its answer, so nothing is lost either way.
/// Returns how many attestations were submitted.
async fn drain(config: &HookConfig) -> usize {
    let Ok(spool) = Spool::open(&config.spool_dir) else {
        return 0;
    };
    let Ok(files) = spool.pending() else {
        return 0;
    };
    let mut drained = 0;
    for file in files {
        let attestations = match file.attestations {
            Ok(a) => a,
            Err(problem) => {
                if let Ok(to) = spool.quarantine(&file.path) {
                    eprintln!(
                        "tally hook: spool file {} cannot be submitted ({problem}); moved to {}",
                        file.path.display(),
                        to.display()
                    );
                }
                continue;
            }
        };
        match submit(config, &attestations).await {
            // A conflict is settled for good: the log holds another NAR for the path.
            Ok(_) | Err(Submit::Refused(_)) => {
                if std::fs::remove_file(&file.path).is_err() {
                    return drained;
                }
                drained += attestations.len();
            }
            Err(Submit::Retry(_)) => return drained,
        }
    }
    drained
}

async fn submit(config: &HookConfig, attestations: &[Attestation]) -> Result<u64, Submit> {
    let token = config
        .token
        .clone()
        .map_err(|e| Submit::Retry(format!("configuration error: {e}")))?;
    let mut client = client::connect(&config.log, token)
        .await
        .map_err(|e| match e {
            client::ClientError::Connect { .. } => Submit::Retry(e.to_string()),
            other => Submit::Retry(format!("configuration error: {other}")),
        })?;
    let request = v1::SubmitRequest {
        attestations: attestations.iter().map(|a| a.as_bytes().to_vec()).collect(),
    };
    match client.submit(request).await {
        Ok(response) => {
            let note = response
                .into_inner()
                .checkpoint
                .map(|c| c.note)
                .unwrap_or_default();
            Ok(tally_core::Note::parse(&note)
                .ok()
                .and_then(|n| tally_core::Checkpoint::from_text(n.text()).ok())
                .map_or(0, |c| c.tree.size))
        }
        Err(s) if matches!(s.code(), Code::AlreadyExists | Code::InvalidArgument) => {
            Err(Submit::Refused(format!(
                "the log refused the attestations ({:?}): {}",
                s.code(),
                s.message()
            )))
        }
        Err(s) if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated) => {
            Err(Submit::Retry(format!(
                "configuration error: the log refuses this hook's submits ({:?}: {}); over TCP \
                 the hook needs --token-file (the log's submit_token_file), or use the log's \
                 unix: socket",
                s.code(),
                s.message()
            )))
        }
        Err(s) => Err(Submit::Retry(format!("{:?}: {}", s.code(), s.message()))),
    }
}

#[cfg(test)]
mod tests {
    use super::output_name_from_path;

    #[test]
    fn output_names_from_paths() {
        assert_eq!(
            output_name_from_path("multi", "multi").as_deref(),
            Some("out")
        );
        assert_eq!(
            output_name_from_path("multi", "multi-dev").as_deref(),
            Some("dev")
        );
        assert_eq!(output_name_from_path("multi", "other"), None);
        assert_eq!(output_name_from_path("multi", "multi-"), None);
    }
}
