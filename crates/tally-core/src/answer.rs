//! One log's answer about one output path, and checking it offline.
//!
//! An answer is what a log's `Lookup` returns: its signed checkpoint, a map proof for the
//! path's key against the checkpoint's map root, and, if the path is present, the entry and
//! its inclusion proof against the checkpoint's log root. [`LogAnswer::verify`] needs nothing
//! but the log's public key: it proves either "this log attests exactly this" or "this log
//! has no attestation for this path".
//!
//! In JSON (query bundles, evidence), a present answer is a standard C2SP tlog-proof (the
//! entry in `extra`, its inclusion proof, the cosigned checkpoint) with Tally's map proof
//! beside it; an absent one is the checkpoint and the map proof:
//!
//! ```text
//! {"tlog_proof": "c2sp.org/tlog-proof@v1\nextra …\nindex 3\n…", "map_proof": {…}}
//! {"checkpoint": "builder1.example.org/tally\n5\n…", "map_proof": {…}}
//! ```
//!
//! The older form (`checkpoint`, `entry`, `inclusion_proof`) is still read.

use crate::attestation::Attestation;
use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint, UnverifiedCheckpoint};
use crate::hash::Hash;
use crate::keys::VerifyingKey;
use crate::map::{MapAnswer, MapKey, MapProof, MapProofError};
use crate::store_path::StorePathHash;
use crate::tlog::{self, InclusionProof, ProofError};
use crate::tlog_proof::TlogProof;

/// A log's answer about one path, as received.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "AnswerJson", try_from = "AnswerJson")]
pub struct LogAnswer {
    /// The signed checkpoint the proofs are against.
    pub checkpoint: String,
    /// The map proof for the path's key.
    pub map_proof: MapProof,
    /// When present: the entry's index and its bytes (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<AnswerEntry>,
    /// When present: the entry's inclusion proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion_proof: Option<InclusionProof>,
}

/// A [`LogAnswer`] as JSON: a tlog-proof when present.
#[derive(serde::Serialize, serde::Deserialize)]
struct AnswerJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tlog_proof: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
    map_proof: MapProof,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entry: Option<AnswerEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inclusion_proof: Option<InclusionProof>,
}

impl From<LogAnswer> for AnswerJson {
    fn from(a: LogAnswer) -> AnswerJson {
        match (a.entry, a.inclusion_proof) {
            (Some(entry), Some(proof)) => AnswerJson {
                tlog_proof: Some(
                    TlogProof {
                        extra: Some(entry.data),
                        index: entry.index,
                        hashes: proof.hashes,
                        checkpoint: a.checkpoint,
                    }
                    .to_text(),
                ),
                checkpoint: None,
                map_proof: a.map_proof,
                entry: None,
                inclusion_proof: None,
            },
            (entry, inclusion_proof) => AnswerJson {
                tlog_proof: None,
                checkpoint: Some(a.checkpoint),
                map_proof: a.map_proof,
                entry,
                inclusion_proof,
            },
        }
    }
}

impl TryFrom<AnswerJson> for LogAnswer {
    type Error = String;
    fn try_from(j: AnswerJson) -> Result<LogAnswer, String> {
        match (j.tlog_proof, j.checkpoint) {
            (Some(text), None) => {
                let p = TlogProof::parse(&text).map_err(|e| e.to_string())?;
                let size = UnverifiedCheckpoint::parse(p.checkpoint.as_bytes())
                    .map_err(|e| format!("the tlog-proof's checkpoint: {e}"))?
                    .size();
                Ok(LogAnswer {
                    inclusion_proof: Some(p.inclusion_proof(size)),
                    entry: Some(AnswerEntry {
                        index: p.index,
                        data: p
                            .extra
                            .ok_or("the tlog-proof has no extra line (the entry)")?,
                    }),
                    checkpoint: p.checkpoint,
                    map_proof: j.map_proof,
                })
            }
            (None, Some(checkpoint)) => Ok(LogAnswer {
                checkpoint,
                map_proof: j.map_proof,
                entry: j.entry,
                inclusion_proof: j.inclusion_proof,
            }),
            _ => Err("an answer has either a tlog_proof or a checkpoint".into()),
        }
    }
}

/// A log entry in an answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnswerEntry {
    /// Its index.
    pub index: u64,
    /// Its bytes, base64.
    #[serde(with = "crate::base64_serde::bytes")]
    pub data: Vec<u8>,
}

/// What a verified answer shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The log attests the path with this attestation, at this index.
    Present {
        /// The verified checkpoint.
        checkpoint: Checkpoint,
        /// The entry's index.
        index: u64,
        /// The attestation.
        attestation: Box<Attestation>,
    },
    /// The log has no attestation for the path, as of this checkpoint.
    Absent {
        /// The verified checkpoint.
        checkpoint: Checkpoint,
    },
}

impl Verified {
    /// The checkpoint the answer was verified against.
    pub fn checkpoint(&self) -> &Checkpoint {
        match self {
            Verified::Present { checkpoint, .. } | Verified::Absent { checkpoint } => checkpoint,
        }
    }
}

/// Why an answer does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The checkpoint does not verify with the log's key.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The map proof does not lead to the checkpoint's map root.
    #[error("map proof: {0}")]
    MapProof(#[from] MapProofError),
    /// The map says present, but no entry (or inclusion proof) came with the answer.
    #[error(
        "the map says the path is present at entry {0}, but the answer has no entry and inclusion proof for it"
    )]
    MissingEntry(u64),
    /// The map says absent, but the answer carries an entry anyway.
    #[error("the map says the path is absent, but the answer carries an entry")]
    UnexpectedEntry,
    /// The entry is not the one the map points at.
    #[error("the entry is not the one the map points at (index {index}, hash {hash})")]
    WrongEntry {
        /// The index the map gives.
        index: u64,
        /// The entry hash the map gives.
        hash: Hash,
    },
    /// The inclusion proof does not verify.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
    /// The entry is not a valid attestation.
    #[error("entry {index} is not a valid attestation: {problem}")]
    BadEntry {
        /// The entry's index.
        index: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// The checkpoint's origin is not a log of the consumer's trust policy.
    #[error("{0} is not a log of the trust policy")]
    UnknownLog(String),
    /// The checkpoint lacks the cosignatures the consumer's trust policy requires.
    #[error("its checkpoint of size {size} lacks the witness quorum {quorum}")]
    WitnessQuorum {
        /// The checkpoint's tree size.
        size: u64,
        /// The policy's quorum.
        quorum: String,
    },
    /// The entry attests another path.
    #[error("entry {index} attests {found}, not the path asked about")]
    OtherPath {
        /// The entry's index.
        index: u64,
        /// The path it attests.
        found: String,
    },
}

impl LogAnswer {
    /// Checks the answer about `path` with the log's key.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        path: &StorePathHash,
    ) -> Result<Verified, AnswerError> {
        let signed = SignedCheckpoint::open(self.checkpoint.as_bytes(), key)?;
        self.verify_against(signed.checkpoint(), path)
    }

    /// Checks the answer about `path` against `checkpoint`, which the caller has already
    /// opened from [`LogAnswer::checkpoint`] with the log's key: the map proof, and the entry
    /// and its inclusion proof.
    pub fn verify_against(
        &self,
        checkpoint: &Checkpoint,
        path: &StorePathHash,
    ) -> Result<Verified, AnswerError> {
        let checkpoint = checkpoint.clone();
        let map_key = MapKey::for_path(path);
        match self.map_proof.verify(&map_key, &checkpoint.map_root)? {
            MapAnswer::Absent => {
                if self.entry.is_some() || self.inclusion_proof.is_some() {
                    return Err(AnswerError::UnexpectedEntry);
                }
                Ok(Verified::Absent { checkpoint })
            }
            MapAnswer::Present(value) => {
                let (Some(entry), Some(proof)) = (&self.entry, &self.inclusion_proof) else {
                    return Err(AnswerError::MissingEntry(value.leaf_index));
                };
                if entry.index != value.leaf_index
                    || proof.index != value.leaf_index
                    || Hash::of(&entry.data) != value.entry_hash
                {
                    return Err(AnswerError::WrongEntry {
                        index: value.leaf_index,
                        hash: value.entry_hash,
                    });
                }
                proof.verify(tlog::leaf_hash(&entry.data), &checkpoint.tree)?;
                let attestation =
                    Attestation::decode(&entry.data).map_err(|e| AnswerError::BadEntry {
                        index: entry.index,
                        problem: e.to_string(),
                    })?;
                if attestation.output_path().hash() != *path {
                    return Err(AnswerError::OtherPath {
                        index: entry.index,
                        found: attestation.output_path().to_string(),
                    });
                }
                Ok(Verified::Present {
                    checkpoint,
                    index: entry.index,
                    attestation: Box::new(attestation),
                })
            }
        }
    }
}
