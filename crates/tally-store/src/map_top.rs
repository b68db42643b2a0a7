//! The top of the map, held in memory.
//!
//! The map's nodes above nibble depth [`TOP_DEPTH`] (at most 4,369 of them) change on every
//! batch: each new key rewrites its path's top four nodes, and at a million keys those
//! rewrites scatter over ~600 pages per commit. What changes there, though, is only the
//! hashes of child nodes, which follow from the nodes below. So a top node is written to the
//! database, in the batch's transaction like every other node, only when its *shape*
//! changes (a slot becomes a leaf or a child); the current version, with its child hashes,
//! is kept here. Opening a store rebuilds it from the stored shapes and the stored nodes
//! below (measured: 1,000,000-key append rate 26,800/s → 36,500/s).
//!
//! Readers must use the top that matches their database snapshot: [`MapTop::size`] is the
//! tree size it belongs to.

use std::collections::HashMap;

use redb::ReadableTable;
use tally_core::Hash;
use tally_core::map::{MapNode, MapNodeId, MapNodeReader, Slot};

use crate::StoreError;
use crate::map_nodes::StoredMap;

/// Nodes shallower than this nibble depth live in memory.
pub(crate) const TOP_DEPTH: u8 = 4;

/// The top of one log's map, as of one tree size.
#[derive(Clone, Debug, Default)]
pub(crate) struct MapTop {
    nodes: HashMap<MapNodeId, MapNode>,
    size: u64,
}

impl MapTop {
    /// Rebuilds the top from a map table: the stored shapes of the top nodes, with the
    /// hashes of their children recomputed from the nodes below, deepest first.
    pub(crate) fn load<T>(table: &T, size: u64) -> Result<MapTop, StoreError>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let mut by_depth: Vec<Vec<(MapNodeId, MapNode)>> = vec![Vec::new(); usize::from(TOP_DEPTH)];
        for row in table.range::<&[u8]>(..[TOP_DEPTH].as_slice())? {
            let (k, v) = row?;
            let id = MapNodeId::from_bytes(k.value())
                .ok_or_else(|| StoreError::corrupt("map node id", format!("{:?}", k.value())))?;
            by_depth[usize::from(id.depth())].push((id, MapNode::from_bytes(v.value())?));
        }
        let mut top = MapTop {
            nodes: HashMap::new(),
            size,
        };
        let stored = StoredMap(table);
        for level in by_depth.into_iter().rev() {
            for (id, mut node) in level {
                for (s, slot) in node.slots.iter_mut().enumerate() {
                    if let Slot::Child(hash) = slot {
                        let child = id.child(s as u8);
                        *hash = match top.nodes.get(&child) {
                            Some(n) => n.hash(),
                            None => stored
                                .read_node(&child)?
                                .ok_or_else(|| {
                                    StoreError::corrupt("map", format!("node {child:?} is missing"))
                                })?
                                .hash(),
                        };
                    }
                }
                top.nodes.insert(id, node);
            }
        }
        Ok(top)
    }

    /// The tree size this top belongs to.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The map root.
    pub(crate) fn root(&self) -> Hash {
        self.nodes
            .get(&MapNodeId::ROOT)
            .map_or(Hash::ZERO, MapNode::hash)
    }

    /// Whether a rewritten top node must also be written to the database.
    pub(crate) fn must_store(&self, id: &MapNodeId, node: &MapNode) -> bool {
        self.nodes.get(id).is_none_or(|old| !old.same_shape(node))
    }

    /// Applies a committed batch's top nodes.
    pub(crate) fn apply(&mut self, size: u64, nodes: Vec<(MapNodeId, MapNode)>) {
        self.nodes.extend(nodes);
        self.size = size;
    }
}

/// A [`MapNodeReader`] that serves the top from memory and the rest from a table.
pub(crate) struct LayeredMap<'a, T> {
    pub(crate) top: &'a MapTop,
    pub(crate) table: &'a T,
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> MapNodeReader for LayeredMap<'_, T> {
    type Error = StoreError;
    fn read_node(&self, id: &MapNodeId) -> Result<Option<MapNode>, StoreError> {
        if id.depth() < TOP_DEPTH {
            Ok(self.top.nodes.get(id).cloned())
        } else {
            StoredMap(self.table).read_node(id)
        }
    }
}
