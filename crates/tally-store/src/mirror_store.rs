//! The aggregator's database: a mirror of every followed log, the evidence found, and the
//! witness's cosigned checkpoints, and the definitions of named reports.
//!
//! A mirror holds a log's entries, tree hashes and map, replayed here exactly as the log
//! must have built them. Entries are appended in chunks; a chunk is committed only if the
//! tree it completes has the root the caller expects (proven by the log's signed
//! checkpoint), so the mirror never holds entries the log did not sign for. When a chunk
//! completes the checkpoint being synced (the *target*), its map root is compared too, and
//! the checkpoint becomes the mirror's *verified* one.
//!
//! Contract:
//! - A mirror's entries `[0, size)` are always a prefix of its target's tree.
//! - The verified checkpoint always matches the mirror's tree and map at its size.
//! - Evidence and cosigned checkpoints are written durably before the call returns; the
//!   witness's check-and-store is one transaction.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tally_core::Note;
use tally_core::map::{MapKey, MapValue};
use tally_core::tlog::TreeHead;
use tally_core::{Attestation, Hash, KeyName};

use crate::StoreError;
use crate::log_state::{LogState, poisoned, stored_size};
use crate::log_store::{CHECKPOINT, StoredCheckpoint};
use crate::log_tables::{LogReader, TableNames, WriteTables};
use crate::space::Reserve;

const TARGET: &str = "target";
const CONTRADICTIONS: &str = "contradictions";

const EVIDENCE: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("evidence");
const EVIDENCE_KEYS: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("evidence_keys");
/// Each piece of evidence's [`EvidenceSummary`], so that listing never decodes bundles.
const EVIDENCE_INDEX: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("evidence_index");
const WITNESS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("witness");
/// Named reports: the name, and the definition as the aggregator encodes it.
const REPORTS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("reports");

/// Where a mirror stands.
#[derive(Clone, Debug, Default)]
pub struct MirrorState {
    /// Entries held.
    pub size: u64,
    /// The latest checkpoint whose tree and map the mirror has fully checked.
    pub verified: Option<StoredCheckpoint>,
    /// The checkpoint being synced towards, if beyond the verified one.
    pub target: Option<StoredCheckpoint>,
}

/// What a chunk must lead to.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// The root the tree must have after the chunk.
    pub root: Hash,
    /// The target, when the chunk ends at its size: then its map root is checked too.
    pub completes: Option<&'a StoredCheckpoint>,
    /// Whether the commit must be durable before returning. Progress that is not durable may
    /// be lost on a crash, and is then fetched again.
    pub durable: bool,
}

/// What appending a chunk did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Committed; the target is not reached yet.
    Synced(TreeHead),
    /// Committed, and the target is now verified.
    Verified(TreeHead),
    /// The entries do not lead to the expected root: nothing was committed.
    RootMismatch {
        /// The root they lead to.
        computed: TreeHead,
    },
    /// The entries lead to the target's tree (and are committed), but its map root is not
    /// their replay. The target is not verified.
    MapMismatch {
        /// The replay's map root.
        computed: Hash,
    },
}

/// What a stored piece of evidence is about: everything but its bundle.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvidenceSummary {
    /// Its id, from 1.
    pub id: u64,
    /// The bundle kind.
    pub kind: String,
    /// The logs it concerns.
    pub origins: Vec<String>,
    /// What it claims.
    pub summary: String,
    /// When it was found, seconds since 1970.
    pub created: u64,
}

/// A stored piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvidenceRecord {
    /// What it is about.
    #[serde(flatten)]
    pub about: EvidenceSummary,
    /// The bundle, as JSON text.
    pub bundle: String,
}

/// The aggregator's redb file.
pub struct MirrorStore {
    db: Database,
    logs: BTreeMap<KeyName, LogState>,
    reserve: Reserve,
    /// Entries appended by commits that were not durable, since the last durable one: their
    /// pages may still be in memory, to be written by the next durable commit.
    undurable: std::sync::atomic::AtomicU64,
    /// redb's cache, which bounds what can be held in memory.
    cache_bytes: u64,
    writer: Mutex<()>,
}

/// Entries mapped in one chunk, by key: index, entry hash, and the entry.
type Mapped<'a> = HashMap<MapKey, (MapValue, &'a [u8])>;

impl MirrorStore {
    /// Opens (or creates) the database, with a mirror for each of `origins`.
    pub fn open(
        path: &Path,
        origins: &[KeyName],
        cache_bytes: usize,
    ) -> Result<MirrorStore, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(EVIDENCE_KEYS)?;
        {
            // Databases from before the index get it filled in once.
            let evidence = txn.open_table(EVIDENCE)?;
            let mut index = txn.open_table(EVIDENCE_INDEX)?;
            if index.len()? != evidence.len()? {
                for row in evidence.iter()? {
                    let (id, v) = row?;
                    let record: EvidenceRecord = serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::corrupt("evidence", e))?;
                    let about = serde_json::to_vec(&record.about)
                        .map_err(|e| StoreError::corrupt("evidence", e))?;
                    index.insert(id.value(), about.as_slice())?;
                }
            }
        }
        txn.open_table(WITNESS)?;
        txn.open_table(REPORTS)?;
        txn.commit()?;
        let mut logs = BTreeMap::new();
        for origin in origins {
            logs.insert(
                origin.clone(),
                LogState::open(&db, TableNames::new(&format!("mirror:{origin}")))?,
            );
        }
        Ok(MirrorStore {
            db,
            logs,
            reserve: Reserve::new(path),
            undurable: std::sync::atomic::AtomicU64::new(0),
            cache_bytes: cache_bytes as u64,
            writer: Mutex::new(()),
        })
    }

    /// Keeps `bytes` free on the file system holding the database: a write that would start
    /// with less free is refused with [`StoreError::DiskFull`] (default
    /// [`crate::DEFAULT_KEEP_FREE`]; 0 turns the check off).
    pub fn keep_free(mut self, bytes: u64) -> MirrorStore {
        self.reserve.keep(bytes);
        self
    }

    /// A write transaction for a commit of up to `entries` new entries, if the free space
    /// allows it, counting what commits that were not durable may have left in memory (at
    /// most redb's cache).
    fn begin_write(&self, entries: u64) -> Result<redb::WriteTransaction, StoreError> {
        let undurable = self.undurable.load(std::sync::atomic::Ordering::Relaxed);
        let buffered = undurable
            .saturating_mul(crate::space::PAGES_PER_ENTRY)
            .min(self.cache_bytes);
        self.reserve.check(entries, buffered)?;
        Ok(self.db.begin_write()?)
    }

    fn log(&self, origin: &KeyName) -> Result<&LogState, StoreError> {
        self.logs
            .get(origin)
            .ok_or_else(|| StoreError::corrupt("mirror", format!("{origin} is not followed")))
    }

    /// Where the mirror of `origin` stands.
    pub fn state(&self, origin: &KeyName) -> Result<MirrorState, StoreError> {
        let log = self.log(origin)?;
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(log.names.meta())?;
        let note = |key: &str| -> Result<Option<StoredCheckpoint>, StoreError> {
            meta.get(key)?
                .map(|v| StoredCheckpoint::from_note(v.value().to_vec()))
                .transpose()
        };
        Ok(MirrorState {
            size: stored_size(&meta)?,
            verified: note(CHECKPOINT)?,
            target: note(TARGET)?,
        })
    }

    /// A consistent view of a mirror (its `checkpoint()` is the verified one).
    pub fn read(&self, origin: &KeyName) -> Result<LogReader, StoreError> {
        self.log(origin)?.read(&self.db)
    }

    /// Records the checkpoint being synced towards. Durable.
    pub fn set_target(
        &self,
        origin: &KeyName,
        target: &StoredCheckpoint,
    ) -> Result<(), StoreError> {
        let log = self.log(origin)?;
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let txn = self.begin_write(0)?;
        txn.open_table(log.names.meta())?
            .insert(TARGET, target.note.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Appends a chunk of entries, replaying the map, if they lead to `expect.root`.
    pub fn append(
        &self,
        origin: &KeyName,
        entries: &[Vec<u8>],
        expect: Expect<'_>,
    ) -> Result<Appended, StoreError> {
        let log = self.log(origin)?;
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let top = log.top()?;
        let pending = self.undurable.load(std::sync::atomic::Ordering::Relaxed);
        let mut txn = self.begin_write(entries.len() as u64)?;
        txn.set_durability(if expect.durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let (outcome, top_nodes, size) = {
            let mut tables = WriteTables::open(&txn, &log.names)?;
            let size = stored_size(&tables.meta)?;
            // First valid attestation of a path is mapped; a later different NAR for it is a
            // contradiction; a later identical or same-NAR one is neither.
            let mut mapped: Mapped<'_> = HashMap::new();
            let mut pairs = Vec::new();
            let mut contradictions = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                let index = size + i as u64;
                let Ok(a) = Attestation::decode(entry) else {
                    continue;
                };
                let key = MapKey::for_path(&a.output_path().hash());
                let entry_hash = Hash::of(entry);
                let existing = match mapped.get(&key) {
                    Some((v, e)) => Some((*v, Some(*e))),
                    None => tables.lookup(&top, &key)?.map(|v| (v, None)),
                };
                match existing {
                    None => {
                        let value = MapValue {
                            leaf_index: index,
                            entry_hash,
                        };
                        mapped.insert(key, (value, entry));
                        pairs.push((key, value));
                    }
                    Some((v, _)) if v.entry_hash == entry_hash => {}
                    Some((v, held)) => {
                        let first = match held {
                            Some(e) => e.to_vec(),
                            None => tables.entry(v.leaf_index)?,
                        };
                        let differs = Attestation::decode(&first).map_or(true, |f| !f.same_nar(&a));
                        if differs {
                            contradictions.push((v.leaf_index, index));
                        }
                    }
                }
            }
            let leaves: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            let appended = tables.append(size, &leaves, pairs, &top)?;
            if appended.tree.root != expect.root {
                // Dropping the transaction aborts it.
                return Ok(Appended::RootMismatch {
                    computed: appended.tree,
                });
            }
            if !contradictions.is_empty() {
                let mut all: Vec<(u64, u64)> = match tables.meta.get(CONTRADICTIONS)? {
                    Some(v) => serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::corrupt("contradictions", e))?,
                    None => Vec::new(),
                };
                all.extend(contradictions);
                let json = serde_json::to_vec(&all)
                    .map_err(|e| StoreError::corrupt("contradictions", e))?;
                tables.meta.insert(CONTRADICTIONS, json.as_slice())?;
            }
            let outcome = match expect.completes {
                None => Appended::Synced(appended.tree),
                Some(target) if target.checkpoint.map_root != appended.map_root => {
                    Appended::MapMismatch {
                        computed: appended.map_root,
                    }
                }
                Some(target) => {
                    tables.meta.insert(CHECKPOINT, target.note.as_slice())?;
                    tables.meta.remove(TARGET)?;
                    Appended::Verified(appended.tree)
                }
            };
            (outcome, appended.top_nodes, appended.tree.size)
        };
        txn.commit()?;
        self.undurable.store(
            if expect.durable {
                0
            } else {
                pending + entries.len() as u64
            },
            std::sync::atomic::Ordering::Relaxed,
        );
        drop(top);
        log.apply(size, top_nodes)?;
        Ok(outcome)
    }

    /// Marks a checkpoint of the mirror's current size verified (used when a log's new
    /// checkpoint adds no entries). Its tree must be the mirror's.
    pub fn set_verified(
        &self,
        origin: &KeyName,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), StoreError> {
        let log = self.log(origin)?;
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let txn = self.begin_write(0)?;
        {
            let mut meta = txn.open_table(log.names.meta())?;
            if stored_size(&meta)? != checkpoint.checkpoint.tree.size {
                return Err(StoreError::corrupt(
                    "mirror",
                    "verified checkpoint is not at the mirror's size",
                ));
            }
            meta.insert(CHECKPOINT, checkpoint.note.as_slice())?;
            meta.remove(TARGET)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Adds the signature lines of `note` (cosignatures) to the verified checkpoint, when it is
    /// the same checkpoint. Returns whether anything was added.
    pub fn merge_signatures(&self, origin: &KeyName, note: &[u8]) -> Result<bool, StoreError> {
        let log = self.log(origin)?;
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let txn = self.begin_write(0)?;
        let added = {
            let mut meta = txn.open_table(log.names.meta())?;
            let Some(stored) = meta.get(CHECKPOINT)?.map(|v| v.value().to_vec()) else {
                return Ok(false);
            };
            let (Ok(mut verified), Ok(other)) = (Note::parse(&stored), Note::parse(note)) else {
                return Ok(false);
            };
            if !verified.merge(&other) {
                return Ok(false);
            }
            meta.insert(CHECKPOINT, verified.to_bytes().as_slice())?;
            true
        };
        txn.commit()?;
        Ok(added)
    }

    /// Contradictions found and not yet turned into evidence: (first index, later index).
    pub fn contradictions(&self, origin: &KeyName) -> Result<Vec<(u64, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(self.log(origin)?.names.meta())?;
        match meta.get(CONTRADICTIONS)? {
            Some(v) => serde_json::from_slice(v.value())
                .map_err(|e| StoreError::corrupt("contradictions", e)),
            None => Ok(Vec::new()),
        }
    }

    /// Forgets contradictions once their evidence is stored.
    pub fn clear_contradictions(&self, origin: &KeyName) -> Result<(), StoreError> {
        let log = self.log(origin)?;
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let txn = self.begin_write(0)?;
        txn.open_table(log.names.meta())?.remove(CONTRADICTIONS)?;
        txn.commit()?;
        Ok(())
    }

    /// Stores evidence once per `dedupe` key. Returns its id and whether it is new.
    pub fn add_evidence(
        &self,
        dedupe: &str,
        kind: &str,
        origins: Vec<String>,
        summary: String,
        bundle: String,
    ) -> Result<(u64, bool), StoreError> {
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let txn = self.begin_write(0)?;
        let result = {
            let mut keys = txn.open_table(EVIDENCE_KEYS)?;
            if let Some(id) = keys.get(dedupe)? {
                return Ok((id.value(), false));
            }
            let mut table = txn.open_table(EVIDENCE)?;
            let id = table.last()?.map_or(1, |(k, _)| k.value() + 1);
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let record = EvidenceRecord {
                about: EvidenceSummary {
                    id,
                    kind: kind.to_owned(),
                    origins,
                    summary,
                    created,
                },
                bundle,
            };
            let corrupt = |e| StoreError::corrupt("evidence", e);
            let json = serde_json::to_vec(&record).map_err(corrupt)?;
            let about = serde_json::to_vec(&record.about).map_err(corrupt)?;
            table.insert(id, json.as_slice())?;
            txn.open_table(EVIDENCE_INDEX)?
                .insert(id, about.as_slice())?;
            keys.insert(dedupe, id)?;
            (id, true)
        };
        txn.commit()?;
        Ok(result)
    }

    /// One piece of evidence.
    pub fn evidence(&self, id: u64) -> Result<Option<EvidenceRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVIDENCE)?;
        table
            .get(id)?
            .map(|v| {
                serde_json::from_slice(v.value()).map_err(|e| StoreError::corrupt("evidence", e))
            })
            .transpose()
    }

    /// What every piece of evidence is about, oldest first.
    pub fn list_evidence(&self) -> Result<Vec<EvidenceSummary>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVIDENCE_INDEX)?;
        table
            .iter()?
            .map(|row| {
                let (_, v) = row?;
                serde_json::from_slice(v.value()).map_err(|e| StoreError::corrupt("evidence", e))
            })
            .collect()
    }

    /// The latest checkpoint of `origin` the witness cosigned.
    pub fn cosigned(&self, origin: &KeyName) -> Result<Option<StoredCheckpoint>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(WITNESS)?;
        table
            .get(origin.as_str())?
            .map(|v| StoredCheckpoint::from_note(v.value().to_vec()))
            .transpose()
    }

    /// Replaces the cosigned checkpoint of `origin` if the current one has size
    /// `expected_size` (0 when there is none), atomically and durably. Otherwise leaves it
    /// and returns the current size.
    pub fn swap_cosigned(
        &self,
        origin: &KeyName,
        expected_size: u64,
        note: &[u8],
    ) -> Result<Result<(), u64>, StoreError> {
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let txn = self.begin_write(0)?;
        let result = {
            let mut table = txn.open_table(WITNESS)?;
            let current = match table.get(origin.as_str())? {
                Some(v) => {
                    StoredCheckpoint::from_note(v.value().to_vec())?
                        .checkpoint
                        .tree
                        .size
                }
                None => 0,
            };
            if current != expected_size {
                return Ok(Err(current));
            }
            table.insert(origin.as_str(), note)?;
            Ok(())
        };
        txn.commit()?;
        Ok(result)
    }

    /// Stores (or replaces) a named report's definition, durably. Returns whether it is new.
    pub fn put_report(&self, name: &str, definition: &[u8]) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let txn = self.begin_write(0)?;
        let new = txn.open_table(REPORTS)?.insert(name, definition)?.is_none();
        txn.commit()?;
        Ok(new)
    }

    /// Deletes a named report. Returns whether it existed.
    pub fn delete_report(&self, name: &str) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let txn = self.begin_write(0)?;
        let existed = txn.open_table(REPORTS)?.remove(name)?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    /// Whether a report of this name is stored.
    pub fn has_report(&self, name: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(REPORTS)?.get(name)?.is_some())
    }

    /// Every report's name and definition, by name.
    pub fn reports(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REPORTS)?;
        table
            .iter()?
            .map(|row| {
                let (k, v) = row?;
                Ok((k.value().to_owned(), v.value().to_vec()))
            })
            .collect()
    }

    /// The followed origins.
    pub fn origins(&self) -> impl Iterator<Item = &KeyName> {
        self.logs.keys()
    }
}
