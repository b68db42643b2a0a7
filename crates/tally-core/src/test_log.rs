//! A log in memory, for tests: it signs checkpoints and answers lookups as a log daemon
//! would.

use crate::answer::{AnswerEntry, LogAnswer};
use crate::attestation::Attestation;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::hash::Hash;
use crate::keys::{KeyName, SigningKey, VerifyingKey};
use crate::map::MapKey;
use crate::replay::Replay;
use crate::store_path::StorePathHash;

/// A log in memory that signs checkpoints and answers lookups.
pub(crate) struct TestLog {
    pub(crate) key: SigningKey,
    pub(crate) replay: Replay,
    pub(crate) entries: Vec<Vec<u8>>,
}

impl TestLog {
    pub(crate) fn new(name: &str, seed: u8) -> TestLog {
        TestLog {
            key: SigningKey::from_seed(KeyName::new(name).unwrap(), [seed; 32]),
            replay: Replay::new(),
            entries: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, a: &Attestation) {
        self.replay.push(a.as_bytes());
        self.entries.push(a.as_bytes().to_vec());
    }

    pub(crate) fn checkpoint(&mut self) -> String {
        let root = self.replay.map_root();
        self.checkpoint_with_map(root)
    }

    pub(crate) fn checkpoint_with_map(&mut self, map_root: Hash) -> String {
        let c = Checkpoint {
            origin: self.key.name().clone(),
            tree: self.replay.tree_head(),
            map_root,
        };
        String::from_utf8(SignedCheckpoint::sign(c, &self.key).unwrap().to_bytes()).unwrap()
    }

    pub(crate) fn answer(&mut self, path: &StorePathHash) -> LogAnswer {
        let checkpoint = self.checkpoint();
        let proof = self.replay.map_proof(&MapKey::for_path(path));
        let size = self.replay.size();
        let present = match &proof.terminal {
            crate::map::Terminal::Leaf { key, value } if *key == MapKey::for_path(path) => {
                Some(value.leaf_index)
            }
            _ => None,
        };
        LogAnswer {
            checkpoint,
            map_proof: proof,
            entry: present.map(|i| AnswerEntry {
                index: i,
                data: self.entries[i as usize].clone(),
            }),
            inclusion_proof: present.map(|i| self.replay.inclusion_proof(i, size).unwrap()),
        }
    }

    pub(crate) fn vkey(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}
