//! How the map is stored: 16-way nodes, each holding four levels of the binary tree.
//!
//! A [`MapNode`] at nibble depth `t` covers the keys that share their first `t` nibbles
//! ([`MapNodeId`]). Its 16 [`Slot`]s are the subtrees at bit depth `4t + 4`: empty, a single
//! pair, or a child node (which then holds two or more pairs). Storing four binary levels per
//! record keeps a batch's writes to a few records per key, and recomputing a node's inner
//! hashes costs at most 15 hashes.
//!
//! The encoding is a 2-byte bitmap of leaf slots, a 2-byte bitmap of child slots (both
//! big-endian, bit `s` for slot `s`), then, in slot order, `key ‖ value` (72 bytes) for a leaf
//! and the child's hash (32 bytes) for a child.

use super::{MapKey, MapValue, leaf_hash, node_hash};
use crate::hash::Hash;

/// Where a [`MapNode`] sits: its nibble depth and the key prefix it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapNodeId {
    depth: u8,
    prefix: [u8; 32],
}

impl MapNodeId {
    /// The root node.
    pub const ROOT: MapNodeId = MapNodeId {
        depth: 0,
        prefix: [0; 32],
    };

    /// The node at nibble depth `depth` on `key`'s path.
    pub fn on_path(key: &MapKey, depth: u8) -> MapNodeId {
        let mut prefix = [0u8; 32];
        let whole = usize::from(depth / 2);
        prefix[..whole].copy_from_slice(&key.0[..whole]);
        if depth % 2 == 1 {
            prefix[whole] = key.0[whole] & 0xf0;
        }
        MapNodeId { depth, prefix }
    }

    /// Nibble depth: the node's slots are nibble `depth` of their keys.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The node under slot `nibble`, one level down.
    pub fn child(&self, nibble: u8) -> MapNodeId {
        let mut prefix = self.prefix;
        let i = usize::from(self.depth / 2);
        if self.depth.is_multiple_of(2) {
            prefix[i] = nibble << 4;
        } else {
            prefix[i] |= nibble & 0x0f;
        }
        MapNodeId {
            depth: self.depth + 1,
            prefix,
        }
    }

    /// Parses [`MapNodeId::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<MapNodeId> {
        let (&depth, used) = bytes.split_first()?;
        if depth > 63 || used.len() != usize::from(depth).div_ceil(2) {
            return None;
        }
        let mut prefix = [0u8; 32];
        prefix[..used.len()].copy_from_slice(used);
        Some(MapNodeId { depth, prefix })
    }

    /// The storage key: depth, then the prefix bytes it uses.
    pub fn to_bytes(&self) -> Vec<u8> {
        let used = usize::from(self.depth).div_ceil(2);
        let mut out = Vec::with_capacity(1 + used);
        out.push(self.depth);
        out.extend_from_slice(&self.prefix[..used]);
        out
    }
}

/// One of a node's 16 subtrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// No pairs.
    Empty,
    /// Exactly one pair.
    Leaf(MapKey, MapValue),
    /// Two or more pairs, in the child node; this is that node's hash.
    Child(Hash),
}

/// Sixteen slots: four levels of the binary map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapNode {
    /// The subtrees, indexed by nibble.
    pub slots: [Slot; 16],
}

/// Why stored bytes are not a map node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapNodeError {
    /// The bitmaps claim a slot is both a leaf and a child.
    #[error("map node marks slot {0} as both leaf and child")]
    Overlap(usize),
    /// The payload length does not match the bitmaps.
    #[error("map node is {found} bytes, its bitmaps need {expected}")]
    Length {
        /// Bytes the bitmaps call for.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
}

/// A subtree's hash, and whether it holds exactly one pair (which then floats up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Subtree {
    Empty,
    One(Hash),
    Many(Hash),
}

impl Subtree {
    pub(super) fn hash(self) -> Hash {
        match self {
            Subtree::Empty => Hash::ZERO,
            Subtree::One(h) | Subtree::Many(h) => h,
        }
    }

    /// The parent of two sibling subtrees.
    pub(super) fn join(left: Subtree, right: Subtree) -> Subtree {
        match (left, right) {
            (Subtree::Empty, Subtree::Empty) => Subtree::Empty,
            (Subtree::One(h), Subtree::Empty) | (Subtree::Empty, Subtree::One(h)) => {
                Subtree::One(h)
            }
            (l, r) => Subtree::Many(node_hash(&l.hash(), &r.hash())),
        }
    }
}

impl Slot {
    pub(super) fn subtree(&self) -> Subtree {
        match self {
            Slot::Empty => Subtree::Empty,
            Slot::Leaf(k, v) => Subtree::One(leaf_hash(k, v)),
            Slot::Child(h) => Subtree::Many(*h),
        }
    }
}

const LEAF_LEN: usize = 32 + MapValue::LEN;

impl MapNode {
    /// A node with all slots empty.
    pub fn empty() -> MapNode {
        MapNode {
            slots: [Slot::Empty; 16],
        }
    }

    /// The binary subtrees of this node, as a heap: `[1]` is the whole node, `[2], [3]` its
    /// halves, …, `[16..32]` the slots.
    pub(super) fn subtrees(&self) -> [Subtree; 32] {
        let mut t = [Subtree::Empty; 32];
        for (s, slot) in self.slots.iter().enumerate() {
            t[16 + s] = slot.subtree();
        }
        for i in (1..16).rev() {
            t[i] = Subtree::join(t[2 * i], t[2 * i + 1]);
        }
        t
    }

    /// The node's subtree: what its parent slot refers to.
    pub(super) fn top(&self) -> Subtree {
        self.subtrees()[1]
    }

    /// The hash of the subtree this node holds.
    pub fn hash(&self) -> Hash {
        self.top().hash()
    }

    /// Whether two nodes have the same slots, except for the hashes of child nodes: the
    /// part of a node that does not follow from the nodes below it.
    pub fn same_shape(&self, other: &MapNode) -> bool {
        self.slots.iter().zip(&other.slots).all(|pair| match pair {
            (Slot::Child(_), Slot::Child(_)) => true,
            (a, b) => a == b,
        })
    }

    /// The storage encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (mut leaves, mut children) = (0u16, 0u16);
        let mut payload = Vec::with_capacity(16 * LEAF_LEN);
        for (s, slot) in self.slots.iter().enumerate() {
            match slot {
                Slot::Empty => {}
                Slot::Leaf(k, v) => {
                    leaves |= 1 << s;
                    payload.extend_from_slice(&k.0);
                    payload.extend_from_slice(&v.to_bytes());
                }
                Slot::Child(h) => {
                    children |= 1 << s;
                    payload.extend_from_slice(&h.0);
                }
            }
        }
        let mut out = Vec::with_capacity(4 + payload.len());
        out.extend_from_slice(&leaves.to_be_bytes());
        out.extend_from_slice(&children.to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes [`MapNode::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<MapNode, MapNodeError> {
        let header = bytes.get(..4).ok_or(MapNodeError::Length {
            expected: 4,
            found: bytes.len(),
        })?;
        let leaves = u16::from_be_bytes([header[0], header[1]]);
        let children = u16::from_be_bytes([header[2], header[3]]);
        if leaves & children != 0 {
            return Err(MapNodeError::Overlap(
                (leaves & children).trailing_zeros() as usize
            ));
        }
        let expected =
            4 + leaves.count_ones() as usize * LEAF_LEN + children.count_ones() as usize * 32;
        if bytes.len() != expected {
            return Err(MapNodeError::Length {
                expected,
                found: bytes.len(),
            });
        }
        let mut node = MapNode::empty();
        let mut rest = &bytes[4..];
        for (s, slot) in node.slots.iter_mut().enumerate() {
            if leaves >> s & 1 == 1 {
                let (pair, tail) = rest.split_at(LEAF_LEN);
                let mut key = [0u8; 32];
                key.copy_from_slice(&pair[..32]);
                let mut value = [0u8; MapValue::LEN];
                value.copy_from_slice(&pair[32..]);
                *slot = Slot::Leaf(MapKey(key), MapValue::from_bytes(&value));
                rest = tail;
            } else if children >> s & 1 == 1 {
                let (hash, tail) = rest.split_at(32);
                *slot = Slot::Child(Hash::from_slice(hash).unwrap_or_default());
                rest = tail;
            }
        }
        Ok(node)
    }
}
