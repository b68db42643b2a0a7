//! Deciding about a path as a consumer: every log's answer checked against the consumer's
//! own [`TrustPolicy`] before it counts.
//!
//! Answers may come from anywhere: an aggregator, the logs themselves, a bundle on disk.
//! None of them is trusted. [`decide`] counts an answer only if:
//! - it claims to come from a log the policy lists, and no answer from that log counted yet;
//! - its checkpoint is signed by that log's key and carries the policy's witness quorum;
//! - its map proof leads to the checkpoint's map root, and, when present, its entry is the
//!   one the map points at, included in the checkpoint's tree, and attests the path asked.
//!
//! Anything else is reported and not counted. The verdict is the policy's attestation
//! quorum over the counted votes: one rule, in [`crate::policy::Policy::decide`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::Hash;
use crate::answer::{AnswerError, LogAnswer, Verified};
use crate::attestation::Attestation;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::keys::KeyName;
use crate::policy::{Verdict, Vote};
use crate::store_path::StorePathHash;
use crate::trust::{TrustPolicy, TrustedLog, Witnessed};

/// One log's answer as it was delivered, before any check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ballot {
    /// The log the deliverer says it is from.
    pub origin: String,
    /// The answer, or the deliverer's (unprovable) reason for not having one.
    pub answer: Result<LogAnswer, String>,
}

/// A log's checkpoint, opened: signature checked, cosignatures counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The witnesses that cosigned it.
    pub witnessed: Witnessed,
}

/// How a consumer opens checkpoints. [`Uncached`] checks every one in full; a long-running
/// consumer may remember the notes it has opened, since the same checkpoint backs many
/// answers.
pub trait Checkpoints {
    /// Checks `note` with `log`'s key and counts its cosignatures under `trust`.
    fn open(
        &self,
        trust: &TrustPolicy,
        log: &TrustedLog,
        note: &str,
    ) -> Result<OpenedCheckpoint, AnswerError>;
}

/// Opens every checkpoint in full.
#[derive(Clone, Copy, Debug, Default)]
pub struct Uncached;

/// Opens each checkpoint once and remembers it by its note, since many answers share one
/// checkpoint and its signatures need checking once. Cheap to clone: clones share the memo.
#[derive(Clone, Debug, Default)]
pub struct CheckpointMemo(Arc<Mutex<HashMap<Hash, OpenedCheckpoint>>>);

impl CheckpointMemo {
    /// The most checkpoints remembered; the memo is cleared when full.
    pub const MAX: usize = 4096;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, OpenedCheckpoint>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Checkpoints for CheckpointMemo {
    fn open(
        &self,
        trust: &TrustPolicy,
        log: &TrustedLog,
        note: &str,
    ) -> Result<OpenedCheckpoint, AnswerError> {
        // The origin is part of the key: the same note under another log is opened anew.
        let key = Hash::of(format!("{}\n{note}", log.origin()).as_bytes());
        if let Some(o) = self.lock().get(&key) {
            return Ok(o.clone());
        }
        let opened = Uncached.open(trust, log, note)?;
        let mut memo = self.lock();
        if memo.len() >= Self::MAX {
            memo.clear();
        }
        memo.insert(key, opened.clone());
        Ok(opened)
    }
}

impl Checkpoints for Uncached {
    fn open(
        &self,
        trust: &TrustPolicy,
        log: &TrustedLog,
        note: &str,
    ) -> Result<OpenedCheckpoint, AnswerError> {
        let signed = SignedCheckpoint::open(note.as_bytes(), &log.key)?;
        Ok(OpenedCheckpoint {
            checkpoint: signed.checkpoint().clone(),
            witnessed: trust.witnessed(signed.note()),
        })
    }
}

/// What one policy log's vote came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counted {
    /// The log attests the path, proven.
    Present {
        /// The checkpoint the proofs are against.
        checkpoint: Checkpoint,
        /// The entry's index.
        index: u64,
        /// The attestation.
        attestation: Box<Attestation>,
        /// The witnesses that cosigned the checkpoint, with their timestamps.
        cosigned: Vec<(String, u64)>,
    },
    /// The log proved it has no attestation for the path.
    Absent {
        /// The checkpoint the proof is against.
        checkpoint: Checkpoint,
        /// The witnesses that cosigned the checkpoint, with their timestamps.
        cosigned: Vec<(String, u64)>,
    },
    /// An answer came, but failed a check; it does not count.
    Rejected(String),
    /// No answer came; the deliverer's reason, which cannot be checked.
    Missing(String),
}

impl Counted {
    /// `present`, `absent`, `rejected` or `missing`.
    pub fn name(&self) -> &'static str {
        match self {
            Counted::Present { .. } => "present",
            Counted::Absent { .. } => "absent",
            Counted::Rejected(_) => "rejected",
            Counted::Missing(_) => "missing",
        }
    }

    /// Whether the answer's proofs verified.
    pub fn verified(&self) -> bool {
        matches!(self, Counted::Present { .. } | Counted::Absent { .. })
    }

    fn vote(&self) -> Vote {
        match self {
            Counted::Present { attestation, .. } => Vote::Present(attestation.clone()),
            Counted::Absent { .. } => Vote::Absent,
            Counted::Rejected(why) => Vote::Unavailable(format!("rejected: {why}")),
            Counted::Missing(why) => Vote::Unavailable(why.clone()),
        }
    }
}

impl std::fmt::Display for Counted {
    /// The vote in a few words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Counted::Present {
                checkpoint, index, ..
            } => write!(
                f,
                "present at entry {index}, proven against its checkpoint of size {}",
                checkpoint.tree.size
            ),
            Counted::Absent { checkpoint, .. } => write!(
                f,
                "absent, proven against its checkpoint of size {}",
                checkpoint.tree.size
            ),
            Counted::Rejected(why) => write!(f, "answer rejected: {why}"),
            Counted::Missing(why) => write!(f, "no answer: {why}"),
        }
    }
}

/// One policy log and its vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogVote {
    /// The log.
    pub origin: KeyName,
    /// What its answer came to.
    pub counted: Counted,
}

/// An answer that was not counted at all, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    /// The log it claimed to be from.
    pub origin: String,
    /// Why it was not counted.
    pub why: String,
}

/// A consumer's decision about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The path.
    pub path: StorePathHash,
    /// Every log of the policy, in the policy's order.
    pub votes: Vec<LogVote>,
    /// Answers that were not counted: from logs outside the policy, or repeats.
    pub ignored: Vec<Ignored>,
    /// The attestation quorum's verdict over the verified votes.
    pub verdict: Verdict,
}

/// Decides about `path` from `ballots`, checking each against `trust` at time `now`
/// (seconds since 1970, for the age of cosignatures).
pub fn decide(
    trust: &TrustPolicy,
    path: &StorePathHash,
    ballots: Vec<Ballot>,
    checkpoints: &dyn Checkpoints,
    now: u64,
) -> Decision {
    let mut counted: Vec<Option<Counted>> = vec![None; trust.logs().len()];
    let mut ignored = Vec::new();
    for ballot in ballots {
        let Some(i) = trust
            .logs()
            .iter()
            .position(|l| l.origin().as_str() == ballot.origin)
        else {
            ignored.push(Ignored {
                why: "not a log of the trust policy".into(),
                origin: ballot.origin,
            });
            continue;
        };
        let result = match ballot.answer {
            Err(why) => Counted::Missing(why),
            Ok(answer) => count(trust, &trust.logs()[i], path, &answer, checkpoints, now),
        };
        // The first verified answer from a log counts; an unverified one gives way to it.
        match &counted[i] {
            Some(c) if c.verified() || !result.verified() => ignored.push(Ignored {
                origin: ballot.origin,
                why: format!(
                    "a second answer from this log ({}); only one counts",
                    result.name()
                ),
            }),
            _ => counted[i] = Some(result),
        }
    }
    let votes: Vec<LogVote> = trust
        .logs()
        .iter()
        .zip(counted)
        .map(|(log, c)| LogVote {
            origin: log.origin().clone(),
            counted: c.unwrap_or_else(|| Counted::Missing("no answer".into())),
        })
        .collect();
    let policy_votes: Vec<(KeyName, Vote)> = votes
        .iter()
        .map(|v| (v.origin.clone(), v.counted.vote()))
        .collect();
    Decision {
        path: *path,
        verdict: trust.attest().decide(&policy_votes),
        votes,
        ignored,
    }
}

/// Checks one answer from `log` in full, as [`decide`] does for each. A source that can
/// ask a log again elsewhere uses it to pick an answer that verifies.
pub fn count(
    trust: &TrustPolicy,
    log: &TrustedLog,
    path: &StorePathHash,
    answer: &LogAnswer,
    checkpoints: &dyn Checkpoints,
    now: u64,
) -> Counted {
    let opened = match checkpoints.open(trust, log, &answer.checkpoint) {
        Ok(o) => o,
        Err(e) => return Counted::Rejected(e.to_string()),
    };
    if !trust.quorum_met(&opened.witnessed, now) {
        let by: Vec<String> = opened
            .witnessed
            .cosigned
            .iter()
            .map(|(w, t)| format!("{w} {}s ago", now.saturating_sub(*t)))
            .collect();
        let age = trust
            .max_age()
            .map_or(String::new(), |a| format!(" within {a}s"));
        return Counted::Rejected(format!(
            "its checkpoint of size {} lacks the witness quorum {}{age} (cosigned by: {})",
            opened.checkpoint.tree.size,
            trust.quorum_name(),
            if by.is_empty() {
                "none".to_owned()
            } else {
                by.join(", ")
            }
        ));
    }
    let cosigned = opened.witnessed.cosigned;
    match answer.verify_against(&opened.checkpoint, path) {
        Ok(Verified::Present {
            checkpoint,
            index,
            attestation,
        }) => Counted::Present {
            checkpoint,
            index,
            attestation,
            cosigned,
        },
        Ok(Verified::Absent { checkpoint }) => Counted::Absent {
            checkpoint,
            cosigned,
        },
        Err(e) => Counted::Rejected(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
