//! Answering queries: each followed log's vote on each path, and the policy's verdict.
//!
//! A log votes *present* or *absent* only from a mirror that stands exactly at a verified
//! checkpoint, so every vote can carry a proof against a checkpoint the log signed; a log
//! that is down still votes from its last verified checkpoint, and the vote says so. A log
//! that is syncing, never reached, or excluded is *unavailable*, and never counts as support.

use tally_core::index::{IndexedVote, PathAnswer, VoteKind};
use tally_core::policy::{self, Policy, Vote};
use tally_core::report::Reproducibility;
use tally_core::{Attestation, Hash, KeyName, StorePathHash};
use tally_store::{MirrorStore, StoreError};

use crate::answers::MirrorView;
use crate::status::{State, Statuses};

/// The most paths one request may ask about.
pub const MAX_PATHS: usize = 10_000;

/// The hash part of a path as asked: a full output path or a bare hash part.
pub fn path_hash(query: &str) -> Result<StorePathHash, String> {
    tally_core::store_path::hash_of_query(query).map_err(|e| format!("{query:?}: {e}"))
}

/// One log, as queries see it.
enum Voter {
    /// Answers from its mirror; the note says if the log itself is unreachable.
    Ready(Box<MirrorView>, String),
    Unavailable(String),
}

/// Answers `paths` under `policy`.
pub(crate) fn answer(
    store: &MirrorStore,
    statuses: &Statuses,
    origins: &[KeyName],
    policy: &Policy,
    paths: &[String],
    proofs: bool,
) -> Result<Vec<PathAnswer>, QueryError> {
    let hashes = paths
        .iter()
        .map(|p| path_hash(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(QueryError::Path)?;
    let voters = origins
        .iter()
        .map(|o| {
            let status = statuses.get(o);
            if let Some(s) = status.as_ref().filter(|s| s.state == State::Excluded) {
                return Ok(Voter::Unavailable(format!("excluded: {}", s.detail)));
            }
            let view = MirrorView::open(store, o)?;
            Ok(match view.answering() {
                Some(c) => {
                    let note = match status {
                        Some(s) if s.state == State::Unavailable => format!(
                            "log unreachable ({}); answered from its last verified checkpoint, size {}",
                            s.detail, c.checkpoint.tree.size
                        ),
                        _ => String::new(),
                    };
                    Voter::Ready(Box::new(view), note)
                }
                None => Voter::Unavailable(match status {
                    Some(s) if s.state == State::Unavailable => format!("unreachable: {}", s.detail),
                    _ => {
                        let verified = view.verified.as_ref().map_or(0, |c| c.checkpoint.tree.size);
                        let size = view.reader.size().max(status.map_or(0, |s| s.latest_size));
                        let noun = if size == 1 { "entry" } else { "entries" };
                        format!("syncing: {verified} of {size} {noun} checked")
                    }
                }),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut results = Vec::with_capacity(paths.len());
    for (path, hash) in paths.iter().zip(&hashes) {
        let mut votes = Vec::with_capacity(origins.len());
        let mut logs = Vec::with_capacity(origins.len());
        // Agreeing logs attest the same bytes: read and decode each distinct entry once.
        let mut decoded: Vec<(Hash, Attestation)> = Vec::new();
        for (origin, voter) in origins.iter().zip(&voters) {
            let (vote, indexed) = match voter {
                Voter::Unavailable(why) => (
                    Vote::Unavailable(why.clone()),
                    IndexedVote {
                        origin: origin.clone(),
                        vote: VoteKind::Unavailable,
                        reason: why.clone(),
                        proof: None,
                    },
                ),
                Voter::Ready(view, note) => {
                    let found = match view.lookup_value(hash)? {
                        None => None,
                        Some(value) => match decoded.iter().find(|(h, _)| *h == value.entry_hash) {
                            Some((_, a)) => Some(a.clone()),
                            None => {
                                let a = view.attestation(value.leaf_index)?;
                                decoded.push((value.entry_hash, a.clone()));
                                Some(a)
                            }
                        },
                    };
                    let proof = if proofs { view.answer(hash)? } else { None };
                    let kind = if found.is_some() {
                        VoteKind::Present
                    } else {
                        VoteKind::Absent
                    };
                    let vote = match found {
                        Some(a) => Vote::Present(Box::new(a)),
                        None => Vote::Absent,
                    };
                    (
                        vote,
                        IndexedVote {
                            origin: origin.clone(),
                            vote: kind,
                            reason: note.clone(),
                            proof,
                        },
                    )
                }
            };
            votes.push((origin.clone(), vote));
            logs.push(indexed);
        }
        let candidates = policy::candidates(&votes);
        results.push(PathAnswer {
            path: path.clone(),
            hash: *hash,
            votes: logs,
            reproducibility: Reproducibility::of(&candidates),
            verdict: policy.judge(candidates, votes.len()),
        });
    }
    Ok(results)
}

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueryError {
    /// A path does not parse.
    #[error("not a store path or hash part: {0}")]
    Path(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
