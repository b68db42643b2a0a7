//! The sparse Merkle map: output path → the first log entry that attests it.
//!
//! A binary Merkle tree over 256-bit keys, defined for a set of `key → value` pairs by:
//!
//! ```text
//! hash(no keys)         = 0x00 × 32
//! hash(one pair k → v)  = SHA-256(0x00 ‖ k ‖ v)            wherever it sits: leaves float up
//! hash(two or more)     = SHA-256(0x01 ‖ hash(left) ‖ hash(right))   split on the next key bit
//! ```
//!
//! Bits are read from the most significant bit of the key's first byte; `0` goes left. A leaf
//! therefore sits just below the longest prefix it shares with any other key, so proofs are
//! about `log2(n)` hashes long, and the root is a function of the set of pairs alone: not of
//! insertion order, not of batching.
//!
//! The key is `SHA-256` of the 32-character nixbase32 hash part of the output path ([`MapKey`]);
//! the value is the index and leaf hash of the first attestation of that path ([`MapValue`]).
//! A [`MapProof`] shows either the pair for a key or that no pair exists, and
//! [`MapProof::verify`] checks it against a root with no other input.

mod node;
#[cfg(test)]
mod tests;
mod tree;

pub use node::{MapNode, MapNodeError, MapNodeId, Slot};
pub use tree::{MapError, MapNodeReader, MapUpdate, insert, lookup, prove, root};

use std::fmt;

use crate::hash::Hash;
use crate::store_path::StorePathHash;

/// A map key: `SHA-256(<32-character hash part>)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapKey(pub [u8; 32]);

impl MapKey {
    /// The key for an output path's hash part.
    pub fn for_path(hash: &StorePathHash) -> MapKey {
        MapKey(Hash::of(hash.as_str().as_bytes()).0)
    }

    /// Bit `i` (0 = most significant bit of the first byte).
    pub fn bit(&self, i: usize) -> bool {
        self.0[i / 8] >> (7 - i % 8) & 1 == 1
    }

    /// Nibble `i` (0 = high half of the first byte).
    pub fn nibble(&self, i: usize) -> u8 {
        let b = self.0[i / 2];
        if i.is_multiple_of(2) {
            b >> 4
        } else {
            b & 0x0f
        }
    }

    /// Whether the first `bits` bits of two keys are equal.
    pub fn shares_prefix(&self, other: &MapKey, bits: usize) -> bool {
        let (whole, rest) = (bits / 8, bits % 8);
        self.0[..whole] == other.0[..whole]
            && (rest == 0 || (self.0[whole] ^ other.0[whole]) >> (8 - rest) == 0)
    }
}

impl fmt::Debug for MapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MapKey({})", hex::encode(self.0))
    }
}

impl serde::Serialize for MapKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Hash(self.0).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for MapKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Hash::deserialize(d).map(|h| MapKey(h.0))
    }
}

/// A map value: where the first attestation of a path is in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MapValue {
    /// The entry's index in the log.
    pub leaf_index: u64,
    /// `SHA-256(entry)`, the hash of the attestation bytes (not the RFC 6962 leaf hash).
    pub entry_hash: Hash,
}

impl MapValue {
    /// The length of [`MapValue::to_bytes`].
    pub const LEN: usize = 40;

    /// `leaf_index` (big-endian u64) ‖ `entry_hash`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.leaf_index.to_be_bytes());
        out[8..].copy_from_slice(&self.entry_hash.0);
        out
    }

    /// Inverse of [`MapValue::to_bytes`].
    pub fn from_bytes(b: &[u8; Self::LEN]) -> MapValue {
        let mut index = [0u8; 8];
        index.copy_from_slice(&b[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[8..]);
        MapValue {
            leaf_index: u64::from_be_bytes(index),
            entry_hash: Hash(hash),
        }
    }
}

/// The hash of a subtree holding exactly one pair.
pub fn leaf_hash(key: &MapKey, value: &MapValue) -> Hash {
    Hash::of_parts(&[&[0x00], &key.0, &value.to_bytes()])
}

/// The hash of a subtree holding two or more pairs.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(&[&[0x01], &left.0, &right.0])
}

/// The root of the empty map.
pub const EMPTY_ROOT: Hash = Hash::ZERO;

/// What a proof finds where the key's path ends.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Terminal {
    /// An empty subtree: the key is absent.
    Empty,
    /// A subtree with one pair. If its key is the queried key, that is the key's value;
    /// otherwise the queried key is absent.
    Leaf {
        /// The key of the pair found.
        key: MapKey,
        /// Its value.
        value: MapValue,
    },
}

/// A proof of presence or absence of one key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapProof {
    /// Sibling hashes from the root down: `siblings[d]` is the sibling of the path node at
    /// depth `d + 1`.
    pub siblings: Vec<Hash>,
    /// What sits at depth `siblings.len()` on the key's path.
    pub terminal: Terminal,
}

/// What a verified [`MapProof`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapAnswer {
    /// The key is in the map with this value.
    Present(MapValue),
    /// The key is not in the map.
    Absent,
}

/// Why a map proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapProofError {
    /// More siblings than key bits.
    #[error("map proof has {0} siblings; keys have 256 bits")]
    TooDeep(usize),
    /// The leaf found is not on the queried key's path.
    #[error("map proof ends in a leaf that is not on the key's path")]
    OffPath,
    /// The hashes do not lead to the root.
    #[error("map proof does not lead to the map root")]
    RootMismatch,
}

impl MapProof {
    /// The root this proof leads to for `key`, and what it says about `key`.
    pub fn evaluate(&self, key: &MapKey) -> Result<(Hash, MapAnswer), MapProofError> {
        let depth = self.siblings.len();
        if depth > 256 {
            return Err(MapProofError::TooDeep(depth));
        }
        let (mut h, answer) = match &self.terminal {
            Terminal::Empty => (Hash::ZERO, MapAnswer::Absent),
            Terminal::Leaf { key: k, value } => {
                if !k.shares_prefix(key, depth) {
                    return Err(MapProofError::OffPath);
                }
                let answer = if k == key {
                    MapAnswer::Present(*value)
                } else {
                    MapAnswer::Absent
                };
                (leaf_hash(k, value), answer)
            }
        };
        for (d, sibling) in self.siblings.iter().enumerate().rev() {
            h = if key.bit(d) {
                node_hash(sibling, &h)
            } else {
                node_hash(&h, sibling)
            };
        }
        Ok((h, answer))
    }

    /// Checks the proof for `key` against `root` and says whether the key is present.
    pub fn verify(&self, key: &MapKey, root: &Hash) -> Result<MapAnswer, MapProofError> {
        let (computed, answer) = self.evaluate(key)?;
        if computed == *root {
            Ok(answer)
        } else {
            Err(MapProofError::RootMismatch)
        }
    }
}
