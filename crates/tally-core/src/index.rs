//! What an index (an aggregator) answers about a path: each followed log's vote, with the
//! proof behind it when asked, and the index's own verdict.
//!
//! The verdict is the index's word, for people and dashboards. A consumer that decides
//! (the cache, `tally check`, `tally verify`) turns the answer into [`Ballot`]s and counts
//! them with [`crate::decision::decide`] under its own trust policy.

use crate::answer::LogAnswer;
use crate::decision::Ballot;
use crate::evidence::{QueryBundle, QueryLog};
use crate::keys::KeyName;
use crate::policy::{Candidate, Policy, Verdict};
use crate::report::Reproducibility;
use crate::store_path::StorePathHash;

/// A log's vote as the index reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteKind {
    /// The log attests the path.
    Present,
    /// The log proves it has no attestation for the path.
    Absent,
    /// The log could not be counted (down, syncing, excluded).
    Unavailable,
}

impl VoteKind {
    /// `present`, `absent` or `unavailable`.
    pub fn name(self) -> &'static str {
        match self {
            VoteKind::Present => "present",
            VoteKind::Absent => "absent",
            VoteKind::Unavailable => "unavailable",
        }
    }
}

/// One followed log's vote, as the index reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedVote {
    /// The log.
    pub origin: KeyName,
    /// Its vote.
    pub vote: VoteKind,
    /// Why it is unavailable, or a note on a vote (answered from an older checkpoint).
    pub reason: String,
    /// The log's answer behind a present or absent vote, when proofs were asked for.
    pub proof: Option<LogAnswer>,
}

/// An index's answer about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathAnswer {
    /// The path as asked.
    pub path: String,
    /// Its hash part.
    pub hash: StorePathHash,
    /// Every followed log's vote.
    pub votes: Vec<IndexedVote>,
    /// The index's verdict under the policy it applied.
    pub verdict: Verdict,
    /// What the logs say whatever the policy.
    pub reproducibility: Reproducibility,
}

impl PathAnswer {
    /// The answers to count, one per log: its proof, or why there is none.
    pub fn ballots(&self) -> Vec<Ballot> {
        self.votes
            .iter()
            .map(|v| Ballot {
                origin: v.origin.to_string(),
                answer: match (&v.proof, v.vote) {
                    (Some(p), VoteKind::Present | VoteKind::Absent) => Ok(p.clone()),
                    (_, VoteKind::Unavailable) => Err(format!("unavailable: {}", v.reason)),
                    (None, _) => Err("the index sent no proof".into()),
                },
            })
            .collect()
    }

    /// The logs the index says attest the path.
    pub fn attested_by(&self) -> impl Iterator<Item = &KeyName> {
        self.votes
            .iter()
            .filter(|v| v.vote == VoteKind::Present)
            .map(|v| &v.origin)
    }

    /// Every NAR the verdict names, with its supporters.
    pub fn candidates(&self) -> Vec<&Candidate> {
        match &self.verdict {
            Verdict::Trusted { agreed, dissent } => {
                std::iter::once(agreed).chain(dissent).collect()
            }
            Verdict::Disputed { candidates } => candidates.iter().collect(),
            Verdict::Unknown { .. } => Vec::new(),
        }
    }

    /// The answers as an offline bundle for `tally verify`; `policy` is recorded as the one
    /// the index applied.
    pub fn bundle(&self, policy: Policy) -> QueryBundle {
        QueryBundle {
            path: self.hash,
            policy,
            logs: self
                .votes
                .iter()
                .map(|v| match (&v.proof, v.vote) {
                    (Some(p), VoteKind::Present | VoteKind::Absent) => QueryLog {
                        origin: v.origin.clone(),
                        answer: Some(p.clone()),
                        unavailable: None,
                    },
                    _ => QueryLog {
                        origin: v.origin.clone(),
                        answer: None,
                        unavailable: Some(if v.reason.is_empty() {
                            "unavailable".into()
                        } else {
                            v.reason.clone()
                        }),
                    },
                })
                .collect(),
            verdict: self.verdict.clone(),
        }
    }
}
