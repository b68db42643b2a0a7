//! Inclusion and consistency proofs: generation from stored hashes, and verification as
//! RFC 9162 §2.1.3.2 and §2.1.4.2 specify.

use super::{
    HashReader, Span, TreeHead, consistency_spans, empty_root, inclusion_spans, node_hash,
    span_hashes,
};
use crate::hash::Hash;

/// Why a proof does not verify, or cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked about.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old tree is larger than the new one.
    #[error("old tree size {old} is larger than new tree size {new}")]
    OldLargerThanNew {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// The proof has the wrong number of hashes for its index and sizes.
    #[error("proof has {found} hashes, this proof needs {expected}")]
    Length {
        /// How many hashes such a proof has.
        expected: usize,
        /// How many were given.
        found: usize,
    },
    /// The proof was made for a tree of another size than the one it is checked against.
    #[error("proof is for a tree of size {proof}, checked against size {head}")]
    WrongTreeSize {
        /// The size the proof was made for.
        proof: u64,
        /// The size of the tree head it was checked against.
        head: u64,
    },
    /// A tree head of size 0 with a root other than `SHA-256("")`.
    #[error("an empty tree's root is SHA-256(\"\"), not {0}")]
    EmptyRoot(Hash),
    /// The hashes do not lead to the expected root.
    #[error("proof does not lead to the root of the tree of size {size}")]
    RootMismatch {
        /// The size of the tree whose root did not match.
        size: u64,
    },
}

/// A proof that a leaf is at `index` in a tree: the RFC 6962 audit path, leaf upward.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The audit path.
    pub hashes: Vec<Hash>,
}

impl InclusionProof {
    /// Makes the proof for leaf `index` in the tree of `size` leaves.
    pub fn generate<R>(index: u64, size: u64, reader: &R) -> Result<InclusionProof, R::Error>
    where
        R: HashReader,
        R::Error: From<ProofError>,
    {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size }.into());
        }
        let mut spans = Vec::new();
        inclusion_spans(index, 0, size, &mut spans);
        let hashes = span_hashes(&spans, reader)?;
        Ok(InclusionProof {
            index,
            tree_size: size,
            hashes,
        })
    }

    /// Checks that `leaf_hash` is at this proof's index in the tree `head`.
    pub fn verify(&self, leaf_hash: Hash, head: &TreeHead) -> Result<(), ProofError> {
        let (index, size) = (self.index, head.size);
        if self.tree_size != size {
            return Err(ProofError::WrongTreeSize {
                proof: self.tree_size,
                head: size,
            });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let expected = inclusion_len(index, size);
        if self.hashes.len() != expected {
            return Err(ProofError::Length {
                expected,
                found: self.hashes.len(),
            });
        }
        // RFC 9162 §2.1.3.2.
        let (mut f, mut s) = (index, size - 1);
        let mut r = leaf_hash;
        for p in &self.hashes {
            if s == 0 {
                return Err(ProofError::RootMismatch { size });
            }
            if f & 1 == 1 || f == s {
                r = node_hash(p, &r);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        if s == 0 && r == head.root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch { size })
        }
    }
}

/// A proof that one tree is a prefix of another (RFC 6962 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsistencyProof {
    /// The size of the old tree.
    pub old_size: u64,
    /// The size of the new tree.
    pub new_size: u64,
    /// The proof hashes, in RFC 6962 order.
    pub hashes: Vec<Hash>,
}

impl ConsistencyProof {
    /// Makes the proof that the tree of `old` leaves is a prefix of the tree of `new`.
    pub fn generate<R>(old: u64, new: u64, reader: &R) -> Result<ConsistencyProof, R::Error>
    where
        R: HashReader,
        R::Error: From<ProofError>,
    {
        if old > new {
            return Err(ProofError::OldLargerThanNew { old, new }.into());
        }
        let mut spans = Vec::new();
        if old != 0 && old != new {
            consistency_spans(old, 0, new, true, &mut spans);
        }
        let hashes = span_hashes(&spans, reader)?;
        Ok(ConsistencyProof {
            old_size: old,
            new_size: new,
            hashes,
        })
    }

    /// Checks that `old` is a prefix of `new`.
    pub fn verify(&self, old: &TreeHead, new: &TreeHead) -> Result<(), ProofError> {
        let (m, n) = (old.size, new.size);
        for (proof, head) in [(self.old_size, m), (self.new_size, n)] {
            if proof != head {
                return Err(ProofError::WrongTreeSize { proof, head });
            }
        }
        if m > n {
            return Err(ProofError::OldLargerThanNew { old: m, new: n });
        }
        let expected = consistency_len(m, n);
        if self.hashes.len() != expected {
            return Err(ProofError::Length {
                expected,
                found: self.hashes.len(),
            });
        }
        if m == 0 {
            // Every tree extends the empty one, whose root is fixed.
            return if old.root == empty_root() {
                Ok(())
            } else {
                Err(ProofError::EmptyRoot(old.root))
            };
        }
        if m == n {
            return if old.root == new.root {
                Ok(())
            } else {
                Err(ProofError::RootMismatch { size: n })
            };
        }
        // RFC 9162 §2.1.4.2. A power-of-two old tree is a node of the new one, so its root
        // starts the walk; otherwise the proof's first hash does.
        let (seed, path) = if m.is_power_of_two() {
            (old.root, self.hashes.as_slice())
        } else {
            (self.hashes[0], &self.hashes[1..])
        };
        let (fr, sr) = walk(m, n, seed, path)?;
        if fr != old.root {
            return Err(ProofError::RootMismatch { size: m });
        }
        if sr != new.root {
            return Err(ProofError::RootMismatch { size: n });
        }
        Ok(())
    }
}

/// The RFC 9162 §2.1.4.2 walk for `0 < m < n`: from `seed` along `path`, the roots of the
/// trees of `m` and of `n` leaves that the path implies.
pub(super) fn walk(m: u64, n: u64, seed: Hash, path: &[Hash]) -> Result<(Hash, Hash), ProofError> {
    let (mut f, mut s) = (m - 1, n - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in path {
        if s == 0 {
            return Err(ProofError::RootMismatch { size: n });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::RootMismatch { size: n });
    }
    Ok((fr, sr))
}

/// The number of hashes in an inclusion proof for `index < size`.
fn inclusion_len(index: u64, size: u64) -> usize {
    let mut spans: Vec<Span> = Vec::new();
    inclusion_spans(index, 0, size, &mut spans);
    spans.len()
}

/// The number of hashes in a consistency proof from `old` to `new`, `old ≤ new`.
pub(super) fn consistency_len(old: u64, new: u64) -> usize {
    if old == 0 || old == new {
        return 0;
    }
    let mut spans: Vec<Span> = Vec::new();
    consistency_spans(old, 0, new, true, &mut spans);
    spans.len()
}
