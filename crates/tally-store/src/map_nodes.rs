//! The sparse Merkle map's 16-way nodes, keyed by [`MapNodeId::to_bytes`].

use redb::{ReadableTable, TableDefinition};
use tally_core::map::{MapNode, MapNodeId, MapNodeReader};

use crate::StoreError;

/// The table type.
pub(crate) type MapTable<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

/// A [`MapNodeReader`] over a map table.
pub(crate) struct StoredMap<'t, T>(pub(crate) &'t T);

impl<T: ReadableTable<&'static [u8], &'static [u8]>> MapNodeReader for StoredMap<'_, T> {
    type Error = StoreError;
    fn read_node(&self, id: &MapNodeId) -> Result<Option<MapNode>, StoreError> {
        match self.0.get(id.to_bytes().as_slice())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(MapNode::from_bytes(bytes.value())?)),
        }
    }
}
