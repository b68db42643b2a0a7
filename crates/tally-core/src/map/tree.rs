//! Reading and updating the map through a [`MapNodeReader`]: batched inserts, lookups and
//! proofs.

use super::node::Subtree;
use super::{MapKey, MapNode, MapNodeError, MapNodeId, MapProof, MapValue, Slot, Terminal};
use crate::hash::Hash;

/// Read access to stored map nodes.
pub trait MapNodeReader {
    /// Why a read failed. Must be able to carry [`MapError`]s.
    type Error: From<MapError>;
    /// The node at `id`, or `None` if there is none.
    fn read_node(&self, id: &MapNodeId) -> Result<Option<MapNode>, Self::Error>;
}

impl<R: MapNodeReader + ?Sized> MapNodeReader for &R {
    type Error = R::Error;
    fn read_node(&self, id: &MapNodeId) -> Result<Option<MapNode>, Self::Error> {
        (**self).read_node(id)
    }
}

/// Why a map operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// An insert named a key that is already in the map, or twice in one batch.
    #[error("map key {0:?} is already present")]
    DuplicateKey(MapKey),
    /// A slot refers to a child node that is not stored.
    #[error("map node {0:?} is missing")]
    MissingNode(MapNodeId),
    /// A stored node does not decode.
    #[error("map node {id:?} is corrupt: {source}")]
    Corrupt {
        /// The node.
        id: MapNodeId,
        /// What is wrong with it.
        source: MapNodeError,
    },
}

/// The result of an insert: the nodes to write and the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapUpdate {
    /// Nodes to store, replacing any at the same id.
    pub nodes: Vec<(MapNodeId, MapNode)>,
    /// The map root after the insert.
    pub root: Hash,
}

/// The map's root hash.
pub fn root<R: MapNodeReader>(reader: &R) -> Result<Hash, R::Error> {
    Ok(reader
        .read_node(&MapNodeId::ROOT)?
        .map_or(Hash::ZERO, |n| n.top().hash()))
}

/// Inserts new pairs. Every key must be absent from the map and appear once in `pairs`.
pub fn insert<R: MapNodeReader>(
    reader: &R,
    mut pairs: Vec<(MapKey, MapValue)>,
) -> Result<MapUpdate, R::Error> {
    pairs.sort_unstable_by_key(|p| p.0);
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(MapError::DuplicateKey(w[0].0).into());
    }
    let root = reader.read_node(&MapNodeId::ROOT)?;
    if pairs.is_empty() {
        let root = root.map_or(Hash::ZERO, |n| n.top().hash());
        return Ok(MapUpdate {
            nodes: Vec::new(),
            root,
        });
    }
    let mut nodes = Vec::new();
    let top = insert_into(reader, MapNodeId::ROOT, root, &pairs, &mut nodes)?;
    Ok(MapUpdate {
        nodes,
        root: top.hash(),
    })
}

/// Inserts sorted `pairs` under node `id` (currently `node`), recording rewritten nodes.
fn insert_into<R: MapNodeReader>(
    reader: &R,
    id: MapNodeId,
    node: Option<MapNode>,
    pairs: &[(MapKey, MapValue)],
    out: &mut Vec<(MapNodeId, MapNode)>,
) -> Result<Subtree, R::Error> {
    let depth = usize::from(id.depth());
    let mut node = node.unwrap_or_else(MapNode::empty);
    let mut rest = pairs;
    while let Some((first, _)) = rest.first() {
        let s = first.nibble(depth);
        let n = rest
            .iter()
            .take_while(|(k, _)| k.nibble(depth) == s)
            .count();
        let (here, tail) = rest.split_at(n);
        rest = tail;
        let child_id = MapNodeId::on_path(first, id.depth() + 1);
        node.slots[usize::from(s)] = match node.slots[usize::from(s)] {
            Slot::Empty if here.len() == 1 => Slot::Leaf(here[0].0, here[0].1),
            Slot::Empty => child_slot(insert_into(reader, child_id, None, here, out)?),
            Slot::Leaf(k, v) => {
                // The lone pair moves down into a new child, with the new ones.
                if here.iter().any(|(key, _)| *key == k) {
                    return Err(MapError::DuplicateKey(k).into());
                }
                let mut merged = here.to_vec();
                let at = merged.partition_point(|(key, _)| *key < k);
                merged.insert(at, (k, v));
                child_slot(insert_into(reader, child_id, None, &merged, out)?)
            }
            Slot::Child(_) => {
                let child = reader
                    .read_node(&child_id)?
                    .ok_or(MapError::MissingNode(child_id))?;
                child_slot(insert_into(reader, child_id, Some(child), here, out)?)
            }
        };
    }
    let top = node.top();
    out.push((id, node));
    Ok(top)
}

fn child_slot(subtree: Subtree) -> Slot {
    // A child always holds two or more pairs, so its subtree is `Many`.
    Slot::Child(subtree.hash())
}

/// The value for `key`, without a proof.
pub fn lookup<R: MapNodeReader>(reader: &R, key: &MapKey) -> Result<Option<MapValue>, R::Error> {
    let mut id = MapNodeId::ROOT;
    let Some(mut node) = reader.read_node(&id)? else {
        return Ok(None);
    };
    loop {
        match node.slots[usize::from(key.nibble(usize::from(id.depth())))] {
            Slot::Empty => return Ok(None),
            Slot::Leaf(k, v) => return Ok((k == *key).then_some(v)),
            Slot::Child(_) => {
                id = MapNodeId::on_path(key, id.depth() + 1);
                node = reader.read_node(&id)?.ok_or(MapError::MissingNode(id))?;
            }
        }
    }
}

/// A proof of the presence or absence of `key`.
pub fn prove<R: MapNodeReader>(reader: &R, key: &MapKey) -> Result<MapProof, R::Error> {
    let mut siblings = Vec::new();
    let mut id = MapNodeId::ROOT;
    let Some(mut node) = reader.read_node(&id)? else {
        return Ok(MapProof {
            siblings,
            terminal: Terminal::Empty,
        });
    };
    loop {
        let depth = usize::from(id.depth());
        let t = node.subtrees();
        // Walk the node's four binary levels along the key's bits.
        let mut i = 1;
        for level in 0..=4 {
            match t[i] {
                Subtree::Empty => {
                    return Ok(MapProof {
                        siblings,
                        terminal: Terminal::Empty,
                    });
                }
                Subtree::One(_) => {
                    let leaf = node.slots[leftmost_leaf(&node, i)];
                    let Slot::Leaf(key, value) = leaf else {
                        unreachable!("a subtree of one pair holds exactly one leaf slot");
                    };
                    return Ok(MapProof {
                        siblings,
                        terminal: Terminal::Leaf { key, value },
                    });
                }
                Subtree::Many(_) if level == 4 => break,
                Subtree::Many(_) => {
                    let bit = usize::from(key.bit(4 * depth + level));
                    siblings.push(t[2 * i + (1 - bit)].hash());
                    i = 2 * i + bit;
                }
            }
        }
        // A slot holding many pairs is a child node: continue there.
        id = MapNodeId::on_path(key, id.depth() + 1);
        node = reader.read_node(&id)?.ok_or(MapError::MissingNode(id))?;
    }
}

/// The one non-empty slot under heap position `i` (which holds exactly one pair).
fn leftmost_leaf(node: &MapNode, i: usize) -> usize {
    let span = 16 >> (31 - (i as u32).leading_zeros());
    let first = i * span - 16;
    (first..first + span)
        .find(|&s| node.slots[s] != Slot::Empty)
        .unwrap_or(first)
}
