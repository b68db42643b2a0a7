//! A compact range: the peaks of a tree, enough to append leaves and compute roots.

use super::{empty_root, node_hash};
use crate::hash::Hash;

/// The complete subtrees ("peaks") of a tree of `size` leaves, left to right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Hash>,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// A tree of `size` leaves from its peaks, or `None` if there are not exactly as many
    /// peaks as `size` has one bits.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<CompactRange> {
        (peaks.len() == size.count_ones() as usize).then_some(CompactRange { size, peaks })
    }

    /// Appends a leaf hash.
    pub fn append(&mut self, leaf_hash: Hash) {
        self.peaks.push(leaf_hash);
        let mut s = self.size;
        while s & 1 == 1 {
            let right = self.peaks.pop();
            let left = self.peaks.pop();
            if let (Some(l), Some(r)) = (left, right) {
                self.peaks.push(node_hash(&l, &r));
            }
            s >>= 1;
        }
        self.size += 1;
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The peaks.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, p| node_hash(p, &acc)),
        }
    }
}
