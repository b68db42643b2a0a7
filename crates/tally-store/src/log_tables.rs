//! One log's tables: entries, hashes, map nodes and metadata, under a name prefix, and the
//! batch integration that keeps them in step.
//!
//! The daemon's store has one log (prefix `log`); the aggregator's mirror has one per
//! followed log. Both append through [`WriteTables::append`], so an entry, its hashes and its
//! map node always land in the same transaction.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use redb::{ReadOnlyTable, ReadTransaction, Table, TableDefinition, WriteTransaction};
use tally_core::map::{self, MapKey, MapValue};
use tally_core::tlog::{self, HashReader, TreeHead};
use tally_core::{Attestation, Hash};

use crate::StoreError;
use crate::entry_pages::{self, EntryTable};
use crate::hash_chunks::{self, HashTable, PendingHashes, StoredHashes};
use crate::map_nodes::MapTable;
use crate::map_top::{LayeredMap, MapTop, TOP_DEPTH};

/// Metadata: small named values such as the latest checkpoint.
pub(crate) type MetaTable<'a> = TableDefinition<'a, &'static str, &'static [u8]>;

/// The names of one log's tables.
#[derive(Clone, Debug)]
pub(crate) struct TableNames {
    entries: String,
    hashes: String,
    map: String,
    meta: String,
}

impl TableNames {
    pub(crate) fn new(prefix: &str) -> TableNames {
        TableNames {
            entries: format!("{prefix}/entries"),
            hashes: format!("{prefix}/hashes"),
            map: format!("{prefix}/map"),
            meta: format!("{prefix}/meta"),
        }
    }

    pub(crate) fn entries(&self) -> EntryTable<'_> {
        TableDefinition::new(&self.entries)
    }
    pub(crate) fn hashes(&self) -> HashTable<'_> {
        TableDefinition::new(&self.hashes)
    }
    pub(crate) fn map(&self) -> MapTable<'_> {
        TableDefinition::new(&self.map)
    }
    pub(crate) fn meta(&self) -> MetaTable<'_> {
        TableDefinition::new(&self.meta)
    }

    /// Creates the tables if they do not exist.
    pub(crate) fn create(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(self.entries())?;
        txn.open_table(self.hashes())?;
        txn.open_table(self.map())?;
        txn.open_table(self.meta())?;
        Ok(())
    }
}

/// Where an accepted attestation is in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Appended at this index.
    Appended(u64),
    /// Byte-identical to the entry already at this index; nothing appended.
    Duplicate(u64),
}

impl Outcome {
    /// The entry's index.
    pub fn index(self) -> u64 {
        match self {
            Outcome::Appended(i) | Outcome::Duplicate(i) => i,
        }
    }
}

/// An attestation for an output path the log already attests differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Position of the attestation in its group.
    pub position: usize,
    /// Index of the attestation the log holds.
    pub index: u64,
    /// The attestation the log holds.
    pub existing: Box<Attestation>,
}

/// What [`WriteTables::append`] did.
pub(crate) struct Appended {
    /// The new tree head.
    pub(crate) tree: TreeHead,
    /// The new map root.
    pub(crate) map_root: Hash,
    /// Rewritten top nodes, to apply to the in-memory top after the commit.
    pub(crate) top_nodes: Vec<(tally_core::map::MapNodeId, tally_core::map::MapNode)>,
}

/// A log's tables inside a write transaction.
pub(crate) struct WriteTables<'txn> {
    pub(crate) entries: Table<'txn, u64, &'static [u8]>,
    pub(crate) hashes: Table<'txn, (u8, u64), &'static [u8]>,
    pub(crate) map: Table<'txn, &'static [u8], &'static [u8]>,
    pub(crate) meta: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> WriteTables<'txn> {
    pub(crate) fn open(
        txn: &'txn WriteTransaction,
        names: &TableNames,
    ) -> Result<Self, StoreError> {
        Ok(WriteTables {
            entries: txn.open_table(names.entries())?,
            hashes: txn.open_table(names.hashes())?,
            map: txn.open_table(names.map())?,
            meta: txn.open_table(names.meta())?,
        })
    }

    /// The map's value for `key`.
    pub(crate) fn lookup(
        &self,
        top: &MapTop,
        key: &MapKey,
    ) -> Result<Option<MapValue>, StoreError> {
        map::lookup(
            &LayeredMap {
                top,
                table: &self.map,
            },
            key,
        )
    }

    /// The stored entry at `index`.
    pub(crate) fn entry(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        let mut e = entry_pages::read(&self.entries, index, index + 1)?;
        e.pop()
            .ok_or_else(|| StoreError::corrupt("entry page", format!("no entry {index}")))
    }

    /// Appends `leaves` to a log of `size` entries, and inserts `pairs` into the map whose
    /// top is `top`. Returns the new tree head and map root, and the top nodes to apply to
    /// `top` once the transaction commits.
    pub(crate) fn append(
        &mut self,
        size: u64,
        leaves: &[&[u8]],
        pairs: Vec<(MapKey, MapValue)>,
        top: &MapTop,
    ) -> Result<Appended, StoreError> {
        entry_pages::append(&mut self.entries, size, leaves)?;

        let stored = StoredHashes::new(&self.hashes);
        let mut pending = PendingHashes {
            stored: &stored,
            new: BTreeMap::new(),
        };
        for (i, leaf) in leaves.iter().enumerate() {
            let index = size + i as u64;
            let hashes = tlog::hashes_to_store(index, tlog::leaf_hash(leaf), &pending)?;
            pending.new.extend(hashes);
        }
        let new_size = size + leaves.len() as u64;
        let root = tlog::tree_hash(new_size, &pending)?;
        let new = pending.new;
        drop(stored);
        hash_chunks::write(&mut self.hashes, &new)?;

        crate::log_state::store_size(&mut self.meta, new_size)?;
        let update = map::insert(
            &LayeredMap {
                top,
                table: &self.map,
            },
            pairs,
        )?;
        let mut top_nodes = Vec::new();
        for (id, node) in update.nodes {
            if id.depth() >= TOP_DEPTH || top.must_store(&id, &node) {
                self.map
                    .insert(id.to_bytes().as_slice(), node.to_bytes().as_slice())?;
            }
            if id.depth() < TOP_DEPTH {
                top_nodes.push((id, node));
            }
        }
        Ok(Appended {
            tree: TreeHead {
                size: new_size,
                root,
            },
            map_root: update.root,
            top_nodes,
        })
    }
}

/// A consistent read-only view of one log.
pub struct LogReader {
    txn: ReadTransaction,
    names: TableNames,
    size: u64,
    top: Arc<MapTop>,
    // Opened on first use: a lookup touches each table several times.
    entry_table: OnceLock<ReadOnlyTable<u64, &'static [u8]>>,
    hash_table: OnceLock<ReadOnlyTable<(u8, u64), &'static [u8]>>,
    map_table: OnceLock<ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl LogReader {
    /// A view from a read transaction and the map top of the same tree size.
    pub(crate) fn new(txn: ReadTransaction, names: TableNames, top: Arc<MapTop>) -> LogReader {
        LogReader {
            txn,
            names,
            size: top.size(),
            top,
            entry_table: OnceLock::new(),
            hash_table: OnceLock::new(),
            map_table: OnceLock::new(),
        }
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.txn.open_table(self.names.meta())?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The number of entries in this view.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn check_range(&self, start: u64, end: u64) -> Result<(), StoreError> {
        if start > end || end > self.size {
            return Err(StoreError::OutOfRange {
                start,
                end,
                size: self.size,
            });
        }
        Ok(())
    }

    /// Entries `[start, end)`.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.check_range(start, end)?;
        let table = cached(&self.entry_table, || {
            self.txn.open_table(self.names.entries())
        })?;
        entry_pages::read(table, start, end)
    }

    fn hash_table(&self) -> Result<&ReadOnlyTable<(u8, u64), &'static [u8]>, StoreError> {
        cached(&self.hash_table, || {
            self.txn.open_table(self.names.hashes())
        })
    }

    fn map_table(&self) -> Result<&ReadOnlyTable<&'static [u8], &'static [u8]>, StoreError> {
        cached(&self.map_table, || self.txn.open_table(self.names.map()))
    }

    /// The root of the first `size` entries.
    pub fn tree_hash(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_range(0, size)?;
        tlog::tree_hash(size, &StoredHashes::new(self.hash_table()?))
    }

    /// The inclusion proof for entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<tlog::InclusionProof, StoreError> {
        self.check_range(0, size)?;
        tlog::InclusionProof::generate(index, size, &StoredHashes::new(self.hash_table()?))
    }

    /// The consistency proof from the tree of `old` entries to the tree of `new`.
    pub fn consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> Result<tlog::ConsistencyProof, StoreError> {
        self.check_range(0, new)?;
        tlog::ConsistencyProof::generate(old, new, &StoredHashes::new(self.hash_table()?))
    }

    /// The prefix path from `k` to `n` entries (see [`tlog::prefix_path`]).
    pub fn prefix_path(&self, k: u64, n: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_range(0, n)?;
        tlog::prefix_path(k, n, &StoredHashes::new(self.hash_table()?))
    }

    /// The map's value for `key`.
    pub fn lookup(&self, key: &MapKey) -> Result<Option<MapValue>, StoreError> {
        let table = self.map_table()?;
        map::lookup(
            &LayeredMap {
                top: &self.top,
                table,
            },
            key,
        )
    }

    /// A proof of presence or absence of `key` in the map.
    pub fn map_proof(&self, key: &MapKey) -> Result<map::MapProof, StoreError> {
        let table = self.map_table()?;
        map::prove(
            &LayeredMap {
                top: &self.top,
                table,
            },
            key,
        )
    }

    /// The map root.
    pub fn map_root(&self) -> Hash {
        self.top.root()
    }

    /// The bytes of hash tile `index` at tile level `level`, `width` hashes wide.
    pub fn hash_tile(&self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, StoreError> {
        let tree_level = u32::from(level) * 8;
        let nodes = self.size.checked_shr(tree_level).unwrap_or(0);
        let start = index.checked_mul(tally_core::tiles::TILE_WIDTH);
        match start.and_then(|s| s.checked_add(width)) {
            Some(end) if end <= nodes && tree_level < 64 => {
                StoredHashes::new(self.hash_table()?).read_run(tree_level as u8, end - width, width)
            }
            _ => Err(StoreError::TileOutOfRange {
                level,
                index,
                size: self.size,
            }),
        }
    }

    /// Entry bundle `index`, `width` entries wide, in tlog-tiles format.
    pub fn entry_bundle(&self, index: u64, width: u64) -> Result<Vec<u8>, StoreError> {
        let out_of_range = || StoreError::TileOutOfRange {
            level: 0,
            index,
            size: self.size,
        };
        let start = index
            .checked_mul(tally_core::tiles::TILE_WIDTH)
            .ok_or_else(out_of_range)?;
        let end = start
            .checked_add(width)
            .filter(|&e| e <= self.size)
            .ok_or_else(out_of_range)?;
        let mut out = Vec::new();
        for e in self.entries(start, end)? {
            tally_core::tiles::push_entry(&mut out, &e);
        }
        Ok(out)
    }

    /// Reads the stored hashes of complete subtrees directly.
    pub fn read_hashes(&self, ids: &[tlog::NodeId]) -> Result<Vec<Hash>, StoreError> {
        StoredHashes::new(self.hash_table()?).read_hashes(ids)
    }
}

/// The table in `cell`, opening it with `open` the first time.
fn cached<T>(
    cell: &OnceLock<T>,
    open: impl FnOnce() -> Result<T, redb::TableError>,
) -> Result<&T, StoreError> {
    if let Some(table) = cell.get() {
        return Ok(table);
    }
    let table = open()?;
    Ok(cell.get_or_init(|| table))
}
