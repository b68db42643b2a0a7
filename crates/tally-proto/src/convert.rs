//! Conversions between wire messages and `tally-core` types, in one place.
//!
//! Wire to core is fallible (`TryFrom`): a peer may send hashes of the wrong length.

use tally_core::answer::{AnswerEntry, LogAnswer};
use tally_core::index::{IndexedVote, PathAnswer, VoteKind};
use tally_core::map::{MapKey, MapProof, MapValue, Terminal};
use tally_core::policy::{Candidate, Verdict};
use tally_core::report::Reproducibility;
use tally_core::store_path::StorePathHash;
use tally_core::tlog::{ConsistencyProof, InclusionProof};
use tally_core::{Hash, KeyName, StorePath};

use crate::v1;

/// A wire message that does not make a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A hash field is not 32 bytes.
    #[error("{field} is {len} bytes, a SHA-256 hash is 32")]
    HashLength {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A required field is missing.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A text field is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A field does not parse.
    #[error("{0} is invalid")]
    Invalid(&'static str),
}

fn hash(field: &'static str, bytes: &[u8]) -> Result<Hash, WireError> {
    Hash::from_slice(bytes).ok_or(WireError::HashLength {
        field,
        len: bytes.len(),
    })
}

fn hashes(field: &'static str, list: &[Vec<u8>]) -> Result<Vec<Hash>, WireError> {
    list.iter().map(|h| hash(field, h)).collect()
}

impl From<InclusionProof> for v1::InclusionProof {
    fn from(p: InclusionProof) -> Self {
        v1::InclusionProof {
            index: p.index,
            tree_size: p.tree_size,
            hashes: p.hashes.iter().map(|h| h.0.to_vec()).collect(),
        }
    }
}

impl TryFrom<&v1::InclusionProof> for InclusionProof {
    type Error = WireError;
    fn try_from(p: &v1::InclusionProof) -> Result<Self, WireError> {
        Ok(InclusionProof {
            index: p.index,
            tree_size: p.tree_size,
            hashes: hashes("inclusion proof hash", &p.hashes)?,
        })
    }
}

impl From<ConsistencyProof> for v1::ConsistencyProof {
    fn from(p: ConsistencyProof) -> Self {
        v1::ConsistencyProof {
            old_size: p.old_size,
            new_size: p.new_size,
            hashes: p.hashes.iter().map(|h| h.0.to_vec()).collect(),
        }
    }
}

impl TryFrom<&v1::ConsistencyProof> for ConsistencyProof {
    type Error = WireError;
    fn try_from(p: &v1::ConsistencyProof) -> Result<Self, WireError> {
        Ok(ConsistencyProof {
            old_size: p.old_size,
            new_size: p.new_size,
            hashes: hashes("consistency proof hash", &p.hashes)?,
        })
    }
}

impl From<MapProof> for v1::MapProof {
    fn from(p: MapProof) -> Self {
        let terminal = match p.terminal {
            Terminal::Empty => v1::map_proof::Terminal::Empty(v1::MapEmpty {}),
            Terminal::Leaf { key, value } => v1::map_proof::Terminal::Leaf(v1::MapLeaf {
                key: key.0.to_vec(),
                leaf_index: value.leaf_index,
                entry_hash: value.entry_hash.0.to_vec(),
            }),
        };
        v1::MapProof {
            siblings: p.siblings.iter().map(|h| h.0.to_vec()).collect(),
            terminal: Some(terminal),
        }
    }
}

impl TryFrom<&v1::MapProof> for MapProof {
    type Error = WireError;
    fn try_from(p: &v1::MapProof) -> Result<Self, WireError> {
        let terminal = match p
            .terminal
            .as_ref()
            .ok_or(WireError::Missing("map proof terminal"))?
        {
            v1::map_proof::Terminal::Empty(_) => Terminal::Empty,
            v1::map_proof::Terminal::Leaf(l) => Terminal::Leaf {
                key: MapKey(hash("map leaf key", &l.key)?.0),
                value: MapValue {
                    leaf_index: l.leaf_index,
                    entry_hash: hash("map leaf entry hash", &l.entry_hash)?,
                },
            },
        };
        Ok(MapProof {
            siblings: hashes("map proof sibling", &p.siblings)?,
            terminal,
        })
    }
}

impl TryFrom<&v1::LookupResponse> for LogAnswer {
    type Error = WireError;
    fn try_from(r: &v1::LookupResponse) -> Result<Self, WireError> {
        let note = r
            .checkpoint
            .as_ref()
            .ok_or(WireError::Missing("checkpoint"))?;
        Ok(LogAnswer {
            checkpoint: String::from_utf8(note.note.clone())
                .map_err(|_| WireError::NotUtf8("checkpoint"))?,
            map_proof: r
                .map_proof
                .as_ref()
                .ok_or(WireError::Missing("map proof"))?
                .try_into()?,
            entry: r.entry.as_ref().map(|e| AnswerEntry {
                index: e.index,
                data: e.data.clone(),
            }),
            inclusion_proof: r
                .inclusion_proof
                .as_ref()
                .map(TryInto::try_into)
                .transpose()?,
        })
    }
}

impl From<&Candidate> for v1::Candidate {
    fn from(c: &Candidate) -> Self {
        v1::Candidate {
            output_path: c.output_path.to_string(),
            nar_hash: c.nar_hash.to_string(),
            nar_size: c.nar_size,
            references: c.references.iter().map(|r| r.basename()).collect(),
            origins: c.origins.iter().map(ToString::to_string).collect(),
        }
    }
}

impl TryFrom<&v1::Candidate> for Candidate {
    type Error = WireError;
    fn try_from(c: &v1::Candidate) -> Result<Self, WireError> {
        Ok(Candidate {
            output_path: StorePath::parse(&c.output_path)
                .map_err(|_| WireError::Invalid("candidate output_path"))?,
            nar_hash: c
                .nar_hash
                .parse()
                .map_err(|_| WireError::Invalid("candidate nar_hash"))?,
            nar_size: c.nar_size,
            references: c
                .references
                .iter()
                .map(|r| {
                    StorePath::parse_lenient(r)
                        .map_err(|_| WireError::Invalid("candidate reference"))
                })
                .collect::<Result<_, _>>()?,
            origins: c
                .origins
                .iter()
                .map(|o| KeyName::new(o).map_err(|_| WireError::Invalid("candidate origin")))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<Reproducibility> for v1::Reproducibility {
    fn from(r: Reproducibility) -> Self {
        match r {
            Reproducibility::Reproduced => v1::Reproducibility::Reproduced,
            Reproducibility::Disputed => v1::Reproducibility::Disputed,
            Reproducibility::Single => v1::Reproducibility::Single,
            Reproducibility::Unknown => v1::Reproducibility::Unknown,
        }
    }
}

/// The class a [`v1::PathVerdict`] carries.
pub fn reproducibility(v: &v1::PathVerdict) -> Result<Reproducibility, WireError> {
    match v.reproducibility() {
        v1::Reproducibility::Reproduced => Ok(Reproducibility::Reproduced),
        v1::Reproducibility::Disputed => Ok(Reproducibility::Disputed),
        v1::Reproducibility::Single => Ok(Reproducibility::Single),
        v1::Reproducibility::Unknown => Ok(Reproducibility::Unknown),
        v1::Reproducibility::Unspecified => Err(WireError::Missing("reproducibility")),
    }
}

/// Fills a [`v1::PathVerdict`]'s verdict fields.
pub fn set_verdict(out: &mut v1::PathVerdict, verdict: &Verdict) {
    match verdict {
        Verdict::Trusted { agreed, dissent } => {
            out.set_status(v1::Status::Trusted);
            out.agreed = Some(agreed.into());
            out.candidates = dissent.iter().map(Into::into).collect();
        }
        Verdict::Disputed { candidates } => {
            out.set_status(v1::Status::Disputed);
            out.candidates = candidates.iter().map(Into::into).collect();
        }
        Verdict::Unknown { reason } => {
            out.set_status(v1::Status::Unknown);
            out.reason = reason.clone();
        }
    }
}

/// The verdict a [`v1::PathVerdict`] carries.
pub fn verdict(v: &v1::PathVerdict) -> Result<Verdict, WireError> {
    let candidates = || {
        v.candidates
            .iter()
            .map(TryInto::try_into)
            .collect::<Result<Vec<_>, _>>()
    };
    match v.status() {
        v1::Status::Trusted => Ok(Verdict::Trusted {
            agreed: v
                .agreed
                .as_ref()
                .ok_or(WireError::Missing("agreed"))?
                .try_into()?,
            dissent: candidates()?,
        }),
        v1::Status::Disputed => Ok(Verdict::Disputed {
            candidates: candidates()?,
        }),
        v1::Status::Unknown => Ok(Verdict::Unknown {
            reason: v.reason.clone(),
        }),
        v1::Status::Unspecified => Err(WireError::Missing("status")),
    }
}

impl From<&LogAnswer> for v1::LookupResponse {
    fn from(a: &LogAnswer) -> Self {
        v1::LookupResponse {
            checkpoint: Some(v1::Checkpoint {
                note: a.checkpoint.as_bytes().to_vec(),
            }),
            map_proof: Some(a.map_proof.clone().into()),
            entry: a.entry.as_ref().map(|e| v1::Entry {
                index: e.index,
                data: e.data.clone(),
            }),
            inclusion_proof: a.inclusion_proof.clone().map(Into::into),
        }
    }
}

impl From<&PathAnswer> for v1::PathVerdict {
    fn from(a: &PathAnswer) -> Self {
        let mut out = v1::PathVerdict {
            path: a.path.clone(),
            logs: a
                .votes
                .iter()
                .map(|v| v1::LogVote {
                    origin: v.origin.to_string(),
                    vote: match v.vote {
                        VoteKind::Present => v1::Vote::Present,
                        VoteKind::Absent => v1::Vote::Absent,
                        VoteKind::Unavailable => v1::Vote::Unavailable,
                    }
                    .into(),
                    reason: v.reason.clone(),
                    proof: v.proof.as_ref().map(Into::into),
                })
                .collect(),
            ..Default::default()
        };
        out.set_reproducibility(a.reproducibility.into());
        set_verdict(&mut out, &a.verdict);
        out
    }
}

impl TryFrom<&v1::PathVerdict> for PathAnswer {
    type Error = WireError;
    /// A proof that does not convert is dropped and said so in the vote's reason: a consumer
    /// then does not count that vote, and the rest of the answer stays usable.
    fn try_from(r: &v1::PathVerdict) -> Result<Self, WireError> {
        let hash = if r.path.starts_with('/') {
            StorePath::parse(&r.path).map(|p| p.hash()).ok()
        } else {
            r.path.parse::<StorePathHash>().ok()
        }
        .ok_or(WireError::Invalid("path"))?;
        let votes = r
            .logs
            .iter()
            .map(|l| {
                let origin =
                    KeyName::new(&l.origin).map_err(|_| WireError::Invalid("vote origin"))?;
                let vote = match l.vote() {
                    v1::Vote::Present => VoteKind::Present,
                    v1::Vote::Absent => VoteKind::Absent,
                    v1::Vote::Unavailable | v1::Vote::Unspecified => VoteKind::Unavailable,
                };
                let (proof, reason) = match l.proof.as_ref().map(LogAnswer::try_from) {
                    None => (None, l.reason.clone()),
                    Some(Ok(p)) => (Some(p), l.reason.clone()),
                    Some(Err(e)) => (None, format!("malformed proof: {e}")),
                };
                Ok(IndexedVote {
                    origin,
                    vote,
                    reason,
                    proof,
                })
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        Ok(PathAnswer {
            path: r.path.clone(),
            hash,
            votes,
            verdict: verdict(r)?,
            reproducibility: reproducibility(r)?,
        })
    }
}
