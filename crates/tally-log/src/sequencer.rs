//! Sequencing: pooling submissions into batches, each one durable, signed commit.
//!
//! Contract:
//! - A submit future MUST NOT resolve with success before the batch holding its
//!   attestations is durably committed and a checkpoint covering them is signed.
//! - A batch closes when it holds `batch_size` attestations, when `batch_period` has passed
//!   since its first submission arrived, or when no new submission has arrived for
//!   `batch_idle`, whichever comes first. Concurrent submitters share batches; a lone
//!   submitter (a post-build hook) waits only the idle gap, and submitters that resubmit
//!   as soon as they are answered are not held back by the period.
//! - A submission is all or nothing: it is one group in the store's batch.
//! - If the commit fails, every submission in the batch gets the error and nothing of it is
//!   acknowledged; the next batch starts afresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_core::{Attestation, SigningKey};
use tally_store::{Conflict, LogStore, Outcome, StoreError, StoredCheckpoint};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Why a submission was not accepted.
#[derive(Debug)]
pub enum SubmitError {
    /// Some attestations contradict what the log holds; nothing was written.
    Conflicts(Vec<Conflict>),
    /// The batch failed to commit; nothing was written.
    Storage(String),
    /// The disk is (nearly) full; nothing was written.
    DiskFull(String),
    /// The sequencer has shut down.
    Stopped,
}

/// An accepted submission.
#[derive(Debug)]
pub struct Accepted {
    /// Where each attestation is, in order.
    pub outcomes: Vec<Outcome>,
    /// A checkpoint covering them.
    pub checkpoint: StoredCheckpoint,
}

struct Job {
    attestations: Vec<Attestation>,
    reply: oneshot::Sender<Result<Accepted, SubmitError>>,
}

/// A handle for submitting to the sequencer. Cloning shares the same sequencer.
#[derive(Clone)]
pub struct Sequencer {
    jobs: mpsc::Sender<Job>,
}

/// How batches are formed.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// The longest the first submission of a batch waits for others.
    pub period: Duration,
    /// A batch closes once no submission has arrived for this long.
    pub idle: Duration,
    /// Attestations per batch.
    pub size: usize,
}

impl Sequencer {
    /// Starts the sequencing task. It ends when every handle is dropped and the queue is
    /// drained. It cancels `fatal` if the database must be reopened before it can commit
    /// again.
    pub fn start(
        store: Arc<LogStore>,
        key: SigningKey,
        batching: Batching,
        metrics: Arc<Metrics>,
        fatal: CancellationToken,
    ) -> (Sequencer, JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(4096);
        let task = tokio::spawn(run(rx, store, key, batching, metrics, fatal));
        (Sequencer { jobs }, task)
    }

    /// Submits attestations and waits until they are durable and signed.
    pub async fn submit(&self, attestations: Vec<Attestation>) -> Result<Accepted, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                attestations,
                reply,
            })
            .await
            .map_err(|_| SubmitError::Stopped)?;
        answer.await.unwrap_or(Err(SubmitError::Stopped))
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<LogStore>,
    key: SigningKey,
    batching: Batching,
    metrics: Arc<Metrics>,
    fatal: CancellationToken,
) {
    let mut carried: Option<Job> = None;
    loop {
        let Some(first) = (match carried.take() {
            Some(job) => Some(job),
            None => rx.recv().await,
        }) else {
            return;
        };
        let deadline = Instant::now() + batching.period;
        let mut count = first.attestations.len();
        let mut jobs = vec![first];
        while count < batching.size {
            let wait = (Instant::now() + batching.idle).min(deadline);
            match tokio::time::timeout_at(wait.into(), rx.recv()).await {
                Ok(Some(job)) if count + job.attestations.len() > batching.size => {
                    carried = Some(job);
                    break;
                }
                Ok(Some(job)) => {
                    count += job.attestations.len();
                    jobs.push(job);
                }
                Ok(None) | Err(_) => break,
            }
        }
        commit(&store, &key, jobs, &metrics, &fatal).await;
    }
}

async fn commit(
    store: &Arc<LogStore>,
    key: &SigningKey,
    jobs: Vec<Job>,
    metrics: &Metrics,
    fatal: &CancellationToken,
) {
    let (groups, replies): (Vec<Vec<Attestation>>, Vec<_>) =
        jobs.into_iter().map(|j| (j.attestations, j.reply)).unzip();
    let (store, key) = (Arc::clone(store), key.clone());
    let result = tokio::task::spawn_blocking(move || {
        let refs: Vec<&[Attestation]> = groups.iter().map(Vec::as_slice).collect();
        store.append_batch(&key, &refs)
    })
    .await;
    match result {
        Ok(Ok(batch)) => {
            let size = batch.checkpoint.checkpoint.tree.size;
            let appended = batch
                .groups
                .iter()
                .flatten()
                .flatten()
                .filter(|o| matches!(o, Outcome::Appended(_)))
                .count();
            metrics.batches.inc();
            metrics.appended.inc_by(appended as u64);
            metrics
                .tree_size
                .set(i64::try_from(size).unwrap_or(i64::MAX));
            for (outcome, reply) in batch.groups.into_iter().zip(replies) {
                let answer = match outcome {
                    Ok(outcomes) => Ok(Accepted {
                        outcomes,
                        checkpoint: batch.checkpoint.clone(),
                    }),
                    Err(conflicts) => Err(SubmitError::Conflicts(conflicts)),
                };
                // A submitter that went away no longer needs its answer.
                let _ = reply.send(answer);
            }
        }
        Ok(Err(e @ StoreError::DiskFull { .. })) => {
            tracing::error!("batch refused, nothing acknowledged: {e}");
            for reply in replies {
                let _ = reply.send(Err(SubmitError::DiskFull(e.to_string())));
            }
        }
        Ok(Err(e)) => {
            tracing::error!("batch commit failed, nothing acknowledged: {e}");
            for reply in replies {
                let _ = reply.send(Err(SubmitError::Storage(e.to_string())));
            }
            if e.needs_reopen() {
                // redb refuses every transaction after a failed commit until it is
                // reopened. Stop: the service manager restarts the daemon, which reopens
                // the database at its last durable commit (nothing acknowledged is lost).
                tracing::error!(
                    "the database must be reopened after this I/O error; stopping so that \
                     tally log serve is restarted"
                );
                fatal.cancel();
            }
        }
        Err(panic) => {
            tracing::error!("batch commit panicked, nothing acknowledged: {panic}");
            for reply in replies {
                let _ = reply.send(Err(SubmitError::Storage("internal error".into())));
            }
        }
    }
}
