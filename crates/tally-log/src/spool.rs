//! Draining the post-build hook's spool into the log.
//!
//! Each spooled file is submitted in chunks of at most `batch_size`, and removed only once
//! every chunk is acknowledged. Attestations that conflict with the log can never be
//! appended: they are logged, counted, and dropped from their chunk, which is resubmitted.
//! A file that cannot be read or parsed is moved to `quarantine/`, logged and counted, and
//! never blocks the files behind it. A storage error stops the drain; the next one retries.

use tally_core::Attestation;
use tally_store::Spool;

use crate::metrics::{Metrics, Reason};
use crate::sequencer::{Sequencer, SubmitError};

/// What one drain did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Files fully submitted and removed.
    pub files: usize,
    /// Attestations acknowledged by the log.
    pub submitted: usize,
    /// Attestations dropped because the log attests their path differently.
    pub conflicts: usize,
    /// Files moved to `quarantine/`.
    pub quarantined: usize,
}

/// Submits every spooled file.
pub async fn drain(
    spool: &Spool,
    sequencer: &Sequencer,
    batch_size: usize,
    metrics: &Metrics,
) -> Result<DrainReport, String> {
    let s = spool.clone();
    let files: Vec<_> = tokio::task::spawn_blocking(move || s.pending().map(Iterator::collect))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut report = DrainReport::default();
    for file in files {
        let attestations = match file.attestations {
            Ok(a) => a,
            Err(problem) => {
                metrics.spool_quarantined.inc();
                report.quarantined += 1;
                match spool.quarantine(&file.path) {
                    Ok(to) => tracing::error!(
                        "spool file {} cannot be submitted ({problem}); moved to {}",
                        file.path.display(),
                        to.display()
                    ),
                    Err(e) => tracing::error!(
                        "spool file {} cannot be submitted ({problem}), nor moved aside: {e}",
                        file.path.display()
                    ),
                }
                continue;
            }
        };
        for chunk in attestations.chunks(batch_size.max(1)) {
            let (submitted, conflicts) =
                submit_dropping_conflicts(sequencer, chunk.to_vec(), metrics).await?;
            report.submitted += submitted;
            report.conflicts += conflicts;
        }
        std::fs::remove_file(&file.path)
            .map_err(|e| format!("removing {}: {e}", file.path.display()))?;
        report.files += 1;
    }
    Ok(report)
}

async fn submit_dropping_conflicts(
    sequencer: &Sequencer,
    mut chunk: Vec<Attestation>,
    metrics: &Metrics,
) -> Result<(usize, usize), String> {
    let mut dropped = 0;
    loop {
        if chunk.is_empty() {
            return Ok((0, dropped));
        }
        match sequencer.submit(chunk.clone()).await {
            Ok(accepted) => {
                metrics.spool_drained.inc_by(accepted.outcomes.len() as u64);
                return Ok((accepted.outcomes.len(), dropped));
            }
            Err(SubmitError::Conflicts(conflicts)) => {
                let mut positions: Vec<usize> = conflicts.iter().map(|c| c.position).collect();
                positions.sort_unstable();
                for c in &conflicts {
                    metrics.reject(Reason::Conflict);
                    tracing::warn!(
                        "spooled attestation of {} conflicts with entry {} (NAR hash {} there, {} spooled); dropped",
                        c.existing.output_path(),
                        c.index,
                        c.existing.nar_hash(),
                        chunk[c.position].nar_hash()
                    );
                }
                for p in positions.into_iter().rev() {
                    chunk.remove(p);
                    dropped += 1;
                }
            }
            Err(SubmitError::Storage(e) | SubmitError::DiskFull(e)) => return Err(e),
            Err(SubmitError::Stopped) => return Err("the log is shutting down".into()),
        }
    }
}
