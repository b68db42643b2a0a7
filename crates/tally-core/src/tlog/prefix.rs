//! Prefix paths: proof of the root of a tree's first `k` leaves, against its full root.
//!
//! A prefix path from `k` to `n` is the RFC 6962 consistency proof from `k` to `n`, with the
//! root of the first `k` leaves prepended when `k` is a power of two (the one case where the
//! consistency proof leaves it out, because the verifier is meant to know it). Walking it
//! against the root of `n` leaves *yields* the root of the first `k` leaves instead of
//! checking a claimed one. Two signed checkpoints whose prefix roots at the same `k` differ
//! cannot both be true: that is a fork, provable to anyone.

use super::proof::{consistency_len, walk};
use super::{ConsistencyProof, HashReader, NodeId, ProofError, TreeHead, empty_root};
use crate::hash::Hash;

/// The prefix path from `k` to `n` over a stored tree of at least `n` leaves.
pub fn prefix_path<R>(k: u64, n: u64, reader: &R) -> Result<Vec<Hash>, R::Error>
where
    R: HashReader,
    R::Error: From<ProofError>,
{
    if k > n {
        return Err(ProofError::OldLargerThanNew { old: k, new: n }.into());
    }
    if k == 0 || k == n {
        return Ok(Vec::new());
    }
    let mut path = ConsistencyProof::generate(k, n, reader)?.hashes;
    if k.is_power_of_two() {
        let seed = reader.read_hashes(&[NodeId::new(k.trailing_zeros() as u8, 0)])?;
        path.splice(0..0, seed);
    }
    Ok(path)
}

/// The root of the first `k` leaves of the tree `head`, proven by `path`.
pub fn prefix_root(k: u64, head: &TreeHead, path: &[Hash]) -> Result<Hash, ProofError> {
    let n = head.size;
    if k > n {
        return Err(ProofError::OldLargerThanNew { old: k, new: n });
    }
    let expected = match k {
        0 => 0,
        k if k == n => 0,
        k => consistency_len(k, n) + usize::from(k.is_power_of_two()),
    };
    if path.len() != expected {
        return Err(ProofError::Length {
            expected,
            found: path.len(),
        });
    }
    match k {
        0 => Ok(empty_root()),
        k if k == n => Ok(head.root),
        k => {
            let (fr, sr) = walk(k, n, path[0], &path[1..])?;
            if sr == head.root {
                Ok(fr)
            } else {
                Err(ProofError::RootMismatch { size: n })
            }
        }
    }
}
