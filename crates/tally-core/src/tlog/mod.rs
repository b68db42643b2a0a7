//! The append-only Merkle log, hashed as RFC 6962 / RFC 9162 specify.
//!
//! ```text
//! leaf hash  = SHA-256(0x00 ‖ leaf)
//! node hash  = SHA-256(0x01 ‖ left ‖ right)
//! empty tree = SHA-256("")
//! ```
//!
//! A log stores one hash per *complete* subtree, addressed by [`NodeId`]: the subtree of
//! `2^level` leaves starting at leaf `index << level`. Those hashes never change once written,
//! and the hashes at level `8·L` are exactly the C2SP tlog-tiles tiles at level `L`. Any other
//! hash (the root, a proof element over the right edge) is a fold of `O(log n)` stored ones,
//! so every root and proof costs one batched read of `O(log n)` hashes through [`HashReader`].

mod compact;
mod prefix;
mod proof;
#[cfg(test)]
mod tests;

pub use compact::CompactRange;
pub use prefix::{prefix_path, prefix_root};
pub use proof::{ConsistencyProof, InclusionProof, ProofError};

use crate::hash::Hash;

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    Hash::of_parts(&[&[0x00], leaf])
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(&[&[0x01], &left.0, &right.0])
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash::of(b"")
}

/// A complete subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Height above the leaves; leaves are level 0.
    pub level: u8,
    /// Position among the nodes of this level, from the left.
    pub index: u64,
}

impl NodeId {
    /// A node id.
    pub const fn new(level: u8, index: u64) -> NodeId {
        NodeId { level, index }
    }
}

/// A tree size and the root hash at that size: what a checkpoint commits to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TreeHead {
    /// Number of leaves.
    pub size: u64,
    /// Merkle tree hash of those leaves.
    pub root: Hash,
}

/// Read access to the stored hashes of a log.
///
/// Implementations MUST return the hashes in the order of `ids`, and MUST fail rather than
/// return a hash they do not have.
pub trait HashReader {
    /// Why a read failed.
    type Error;
    /// Reads the hashes of complete subtrees.
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        (**self).read_hashes(ids)
    }
}

/// The complete subtrees a tree of `size` leaves is made of, left to right: its peaks.
pub fn peak_ids(size: u64) -> Vec<NodeId> {
    subtrees(0, size).collect()
}

/// The leaves `[lo, hi)` as maximal complete subtrees, left to right.
///
/// RFC 6962 splits a tree at the largest power of two below its size, so the hash of
/// `[lo, hi)`, for the ranges proofs use, is the right fold of these subtrees' hashes.
fn subtrees(mut lo: u64, hi: u64) -> impl Iterator<Item = NodeId> {
    std::iter::from_fn(move || {
        if lo >= hi {
            return None;
        }
        // The largest aligned block at `lo` that fits in `hi - lo`.
        let align = if lo == 0 { 63 } else { lo.trailing_zeros() };
        let fit = 63 - (hi - lo).leading_zeros();
        let level = align.min(fit);
        let id = NodeId::new(level as u8, lo >> level);
        lo += 1 << level;
        Some(id)
    })
}

/// Hashes a range from its subtrees' hashes: `H(s0, H(s1, … H(sk-1, sk)))`.
fn fold_subtrees(hashes: &[Hash]) -> Hash {
    let mut iter = hashes.iter().rev();
    let Some(last) = iter.next() else {
        return empty_root();
    };
    iter.fold(*last, |acc, h| node_hash(h, &acc))
}

/// The Merkle tree hash of the first `size` leaves.
pub fn tree_hash<R: HashReader>(size: u64, reader: &R) -> Result<Hash, R::Error> {
    let ids: Vec<NodeId> = subtrees(0, size).collect();
    if ids.is_empty() {
        return Ok(empty_root());
    }
    Ok(fold_subtrees(&reader.read_hashes(&ids)?))
}

/// The hashes to store when appending leaf number `index` with hash `leaf`: the leaf's own
/// node and every subtree it completes. `reader` must hold all hashes for leaves `[0, index)`.
pub fn hashes_to_store<R: HashReader>(
    index: u64,
    leaf: Hash,
    reader: &R,
) -> Result<Vec<(NodeId, Hash)>, R::Error> {
    // Leaf `index` completes one subtree per trailing one bit of `index`; each one's left
    // half is the stored node just before it on that level.
    let completes = index.trailing_ones() as u8;
    let left: Vec<NodeId> = (0..completes)
        .map(|level| NodeId::new(level, (index >> level) - 1))
        .collect();
    let left = reader.read_hashes(&left)?;
    let mut out = Vec::with_capacity(usize::from(completes) + 1);
    let mut hash = leaf;
    out.push((NodeId::new(0, index), hash));
    for (level, l) in (1..=completes).zip(&left) {
        hash = node_hash(l, &hash);
        out.push((NodeId::new(level, index >> level), hash));
    }
    Ok(out)
}

/// A range of leaves whose hash a proof needs, and the stored subtrees it folds from.
struct Span {
    lo: u64,
    hi: u64,
}

impl Span {
    fn subtrees(&self) -> impl Iterator<Item = NodeId> {
        subtrees(self.lo, self.hi)
    }
}

/// Reads the hashes of `spans` in one batch.
fn span_hashes<R: HashReader>(spans: &[Span], reader: &R) -> Result<Vec<Hash>, R::Error> {
    let ids: Vec<NodeId> = spans.iter().flat_map(Span::subtrees).collect();
    let hashes = reader.read_hashes(&ids)?;
    let mut rest = &hashes[..];
    Ok(spans
        .iter()
        .map(|s| {
            let (mine, tail) = rest.split_at(s.subtrees().count());
            rest = tail;
            fold_subtrees(mine)
        })
        .collect())
}

/// The largest power of two strictly less than `n` (for `n ≥ 2`).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// RFC 6962 `PATH(m, D[lo:hi])`: the spans whose hashes form an inclusion proof.
fn inclusion_spans(m: u64, lo: u64, hi: u64, out: &mut Vec<Span>) {
    if hi - lo <= 1 {
        return;
    }
    let k = split_point(hi - lo);
    if m < lo + k {
        inclusion_spans(m, lo, lo + k, out);
        out.push(Span { lo: lo + k, hi });
    } else {
        inclusion_spans(m, lo + k, hi, out);
        out.push(Span { lo, hi: lo + k });
    }
}

/// RFC 6962 `SUBPROOF(m, D[lo:hi], b)`: the spans whose hashes form a consistency proof.
fn consistency_spans(m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<Span>) {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(Span { lo, hi });
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        consistency_spans(m, lo, lo + k, complete, out);
        out.push(Span { lo: lo + k, hi });
    } else {
        consistency_spans(m - k, lo + k, hi, false, out);
        out.push(Span { lo, hi: lo + k });
    }
}
