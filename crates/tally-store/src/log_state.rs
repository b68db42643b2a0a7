//! One log's live state: its table names and the in-memory top of its map, kept in step with
//! the database.

use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable};
use tally_core::map::{MapNode, MapNodeId};

use crate::StoreError;
use crate::log_tables::{LogReader, TableNames};
use crate::map_top::MapTop;

/// The meta key holding a log's tree size.
pub(crate) const SIZE: &str = "size";

/// The tree size recorded in a meta table: 0 for a new log, and for a log written before
/// the size had its own key, the size of its latest checkpoint.
pub(crate) fn stored_size(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u64, StoreError> {
    match meta.get(SIZE)? {
        None => Ok(match meta.get(crate::log_store::CHECKPOINT)? {
            Some(note) => {
                crate::StoredCheckpoint::from_note(note.value().to_vec())?
                    .checkpoint
                    .tree
                    .size
            }
            None => 0,
        }),
        Some(v) => {
            let bytes: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::corrupt("meta", "size is not 8 bytes"))?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// Records the tree size in a meta table.
pub(crate) fn store_size(
    meta: &mut redb::Table<'_, &'static str, &'static [u8]>,
    size: u64,
) -> Result<(), StoreError> {
    meta.insert(SIZE, size.to_be_bytes().as_slice())?;
    Ok(())
}

pub(crate) fn poisoned() -> StoreError {
    StoreError::corrupt("store lock", "a writer panicked")
}

/// A log in a database: its tables and its map top.
pub(crate) struct LogState {
    pub(crate) names: TableNames,
    top: RwLock<Arc<MapTop>>,
}

impl LogState {
    /// Creates the log's tables if needed and rebuilds its map top.
    pub(crate) fn open(db: &Database, names: TableNames) -> Result<LogState, StoreError> {
        let txn = db.begin_write()?;
        names.create(&txn)?;
        txn.commit()?;
        let txn = db.begin_read()?;
        let size = stored_size(&txn.open_table(names.meta())?)?;
        let top = MapTop::load(&txn.open_table(names.map())?, size)?;
        Ok(LogState {
            names,
            top: RwLock::new(Arc::new(top)),
        })
    }

    /// The map top as of the latest commit. Writers hold the store's writer lock while they
    /// use it, so it cannot change under them.
    pub(crate) fn top(&self) -> Result<Arc<MapTop>, StoreError> {
        Ok(Arc::clone(&*self.top.read().map_err(|_| poisoned())?))
    }

    /// Applies a committed batch's top nodes. The caller must have dropped its own
    /// reference from [`LogState::top`], so the top is updated in place.
    pub(crate) fn apply(
        &self,
        size: u64,
        nodes: Vec<(MapNodeId, MapNode)>,
    ) -> Result<(), StoreError> {
        let mut guard = self.top.write().map_err(|_| poisoned())?;
        Arc::make_mut(&mut guard).apply(size, nodes);
        Ok(())
    }

    /// A consistent view: a read transaction and the map top of the same size.
    pub(crate) fn read(&self, db: &Database) -> Result<LogReader, StoreError> {
        // The top is replaced just after each commit: take a snapshot and a top of the same
        // size, retrying across that short window.
        for _ in 0..100_000 {
            let top = self.top()?;
            let txn = db.begin_read()?;
            let size = stored_size(&txn.open_table(self.names.meta())?)?;
            if size == top.size() {
                return Ok(LogReader::new(txn, self.names.clone(), top));
            }
            std::thread::yield_now();
        }
        Err(StoreError::corrupt(
            "map top",
            "does not catch up with the latest commit",
        ))
    }
}
