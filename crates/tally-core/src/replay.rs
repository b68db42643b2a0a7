//! Replaying a log in memory: the log root and map root a sequence of entries must have.
//!
//! Anyone holding a log's entries can recompute both roots of its checkpoints: the tree is
//! RFC 6962 over the entries, and the map holds, for each valid attestation whose output
//! path is not yet in it, `(index, SHA-256(entry))`. An aggregator uses the same rule against
//! its mirror; this in-memory form serves offline verifiers and tests.

use std::collections::{HashMap, HashSet};

use crate::attestation::Attestation;
use crate::hash::Hash;
use crate::map::{self, MapError, MapKey, MapNode, MapNodeId, MapNodeReader, MapValue};
use crate::tlog::{self, HashReader, NodeId, TreeHead};

/// A log replayed in memory.
#[derive(Default)]
pub struct Replay {
    hashes: HashMap<NodeId, Hash>,
    nodes: HashMap<MapNodeId, MapNode>,
    mapped: HashSet<MapKey>,
    pending: Vec<(MapKey, MapValue)>,
    size: u64,
}

/// Why the in-memory state could not answer: a proof for sizes beyond the replay, or (a bug)
/// a missing hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The request does not fit the replayed entries.
    #[error(transparent)]
    Proof(#[from] tlog::ProofError),
    /// A stored hash is missing.
    #[error("replay has no hash for {0:?}")]
    Missing(NodeId),
}

impl HashReader for Replay {
    type Error = ReplayError;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ReplayError> {
        ids.iter()
            .map(|id| {
                self.hashes
                    .get(id)
                    .copied()
                    .ok_or(ReplayError::Missing(*id))
            })
            .collect()
    }
}

struct Nodes<'a>(&'a HashMap<MapNodeId, MapNode>);

impl MapNodeReader for Nodes<'_> {
    type Error = MapError;
    fn read_node(&self, id: &MapNodeId) -> Result<Option<MapNode>, MapError> {
        Ok(self.0.get(id).cloned())
    }
}

impl Replay {
    /// An empty log.
    pub fn new() -> Replay {
        Replay::default()
    }

    /// Replays `entries` from index 0.
    pub fn of<E: AsRef<[u8]>>(entries: &[E]) -> Replay {
        let mut r = Replay::new();
        for e in entries {
            r.push(e.as_ref());
        }
        r
    }

    /// Appends one entry.
    pub fn push(&mut self, entry: &[u8]) {
        let index = self.size;
        let new = tlog::hashes_to_store(index, tlog::leaf_hash(entry), &*self)
            .unwrap_or_else(|e| unreachable!("replay holds every stored hash: {e}"));
        self.hashes.extend(new);
        if let Ok(a) = Attestation::decode(entry) {
            let key = MapKey::for_path(&a.output_path().hash());
            if self.mapped.insert(key) {
                self.pending.push((
                    key,
                    MapValue {
                        leaf_index: index,
                        entry_hash: Hash::of(entry),
                    },
                ));
            }
        }
        self.size += 1;
    }

    /// Entries replayed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree head after the entries so far.
    pub fn tree_head(&self) -> TreeHead {
        self.tree_head_at(self.size)
    }

    /// The tree head of the first `size` entries (at most [`Replay::size`]).
    pub fn tree_head_at(&self, size: u64) -> TreeHead {
        let root = tlog::tree_hash(size.min(self.size), self)
            .unwrap_or_else(|e| unreachable!("replay holds every stored hash: {e}"));
        TreeHead {
            size: size.min(self.size),
            root,
        }
    }

    /// The map root after the entries so far.
    pub fn map_root(&mut self) -> Hash {
        let pairs = std::mem::take(&mut self.pending);
        let update = map::insert(&Nodes(&self.nodes), pairs)
            .unwrap_or_else(|e| unreachable!("replay maps each key once: {e}"));
        self.nodes.extend(update.nodes);
        update.root
    }

    /// A map proof for `key` after the entries so far.
    pub fn map_proof(&mut self, key: &MapKey) -> map::MapProof {
        self.map_root();
        map::prove(&Nodes(&self.nodes), key)
            .unwrap_or_else(|e| unreachable!("replay map is whole: {e}"))
    }

    /// The inclusion proof of entry `index` in the tree of the first `size` entries.
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<tlog::InclusionProof, ReplayError> {
        if size > self.size {
            return Err(tlog::ProofError::IndexOutOfRange {
                index: size,
                size: self.size,
            }
            .into());
        }
        tlog::InclusionProof::generate(index, size, self)
    }

    /// The prefix path from `k` to `n` (see [`tlog::prefix_path`]).
    pub fn prefix_path(&self, k: u64, n: u64) -> Result<Vec<Hash>, ReplayError> {
        if n > self.size {
            return Err(tlog::ProofError::OldLargerThanNew {
                old: n,
                new: self.size,
            }
            .into());
        }
        tlog::prefix_path(k, n, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[test]
    fn the_map_keeps_the_first_attestation_of_a_path() {
        let first = sample::attestation(3);
        let second = sample::attestation_with_nar(3, Hash::of(b"other"));
        let entries = [
            sample::attestation(1).as_bytes().to_vec(),
            first.as_bytes().to_vec(),
            b"not an attestation".to_vec(),
            second.as_bytes().to_vec(),
        ];
        let mut replay = Replay::of(&entries);
        assert_eq!(replay.size(), 4);
        let mut expected = Replay::of(&entries[..2]);
        assert_eq!(
            replay.map_root(),
            expected.map_root(),
            "later entries for path 3 are not mapped"
        );
        assert_ne!(replay.tree_head(), expected.tree_head());
        assert_eq!(replay.tree_head_at(2), expected.tree_head());
    }
}
