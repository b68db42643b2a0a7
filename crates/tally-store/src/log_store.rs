//! The attester log's database: one log, appended in signed batches.
//!
//! Durability contract:
//! - [`LogStore::append_batch`] MUST NOT return before the entries, their hashes, their map
//!   nodes and the checkpoint that signs them are committed in one durable redb transaction.
//!   A crash before that loses the whole batch and nothing else; a crash after it loses
//!   nothing.
//! - The stored checkpoint always matches the stored entries: they are written together.
//! - An output path is entered at most once: a byte-identical resubmission is an
//!   [`Outcome::Duplicate`], a different one a [`Conflict`] that rejects its whole group, and
//!   neither is appended.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, ReadableTable};
use tally_core::map::{MapKey, MapValue};
use tally_core::{Attestation, Checkpoint, Hash, Note, SignedCheckpoint, SigningKey};

use crate::StoreError;
use crate::log_state::{LogState, poisoned};
use crate::log_tables::{Conflict, LogReader, Outcome, TableNames, WriteTables};
use crate::map_top::MapTop;
use crate::space::Reserve;

/// The meta key of a log's latest checkpoint (a mirror's verified one).
pub(crate) const CHECKPOINT: &str = "checkpoint";
/// The latest checkpoint the log had cosigned, with its witnesses' cosignature lines.
const COSIGNED: &str = "cosigned";

/// The page cache a store gets unless told otherwise: 128 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;

/// A checkpoint as stored: parsed, and the signed note bytes as served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note.
    pub note: Vec<u8>,
}

impl StoredCheckpoint {
    /// Parses a stored checkpoint. The store wrote it after signing, so the signature is not
    /// checked again here.
    pub fn from_note(note: Vec<u8>) -> Result<StoredCheckpoint, StoreError> {
        let text = Note::parse(&note).map_err(|e| StoreError::corrupt("checkpoint", e))?;
        let checkpoint =
            Checkpoint::from_text(text.text()).map_err(|e| StoreError::corrupt("checkpoint", e))?;
        Ok(StoredCheckpoint { checkpoint, note })
    }

    fn from_signed(signed: &SignedCheckpoint) -> StoredCheckpoint {
        StoredCheckpoint {
            checkpoint: signed.checkpoint().clone(),
            note: signed.to_bytes(),
        }
    }
}

/// What [`LogStore::append_batch`] did.
#[derive(Clone, Debug)]
pub struct BatchResult {
    /// The latest checkpoint after the batch (unchanged if nothing was appended).
    pub checkpoint: StoredCheckpoint,
    /// Per group, in order: an outcome per attestation, or the conflicts that rejected it.
    pub groups: Vec<Result<Vec<Outcome>, Vec<Conflict>>>,
}

/// An attester log in a redb file.
pub struct LogStore {
    db: Database,
    log: LogState,
    reserve: Reserve,
    /// Held by the one batch in progress, from its transaction's start until its commit is
    /// reflected in the log's map top.
    writer: Mutex<()>,
}

/// The attestations taken into a batch so far, by output path.
type Accepted<'a> = HashMap<MapKey, (MapValue, &'a Attestation)>;

impl LogStore {
    /// Opens the database at `path`, creating it if it does not exist, with the default
    /// page cache ([`DEFAULT_CACHE_BYTES`]).
    pub fn open(path: &Path) -> Result<LogStore, StoreError> {
        LogStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the database with a page cache of at most `cache_bytes`. The cache is most of
    /// the process's memory; pages beyond it are read again from the OS page cache.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<LogStore, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let log = LogState::open(&db, TableNames::new("log"))?;
        Ok(LogStore {
            db,
            log,
            reserve: Reserve::new(path),
            writer: Mutex::new(()),
        })
    }

    /// A write transaction for a commit of up to `entries` new entries, if the free space
    /// allows it.
    fn begin_write(&self, entries: u64) -> Result<redb::WriteTransaction, StoreError> {
        self.reserve.check(entries, 0)?;
        Ok(self.db.begin_write()?)
    }

    /// Keeps `bytes` free on the file system holding the database: a write that would start
    /// with less free is refused with [`StoreError::DiskFull`] (default
    /// [`crate::DEFAULT_KEEP_FREE`]; 0 turns the check off).
    pub fn keep_free(mut self, bytes: u64) -> LogStore {
        self.reserve.keep(bytes);
        self
    }

    /// Appends the new attestations of each group and signs a checkpoint over the result,
    /// all in one durable transaction.
    ///
    /// A group is all or nothing: if any of its attestations conflicts with the log (or with
    /// an earlier attestation in the batch), none of the group is appended. Groups stand for
    /// independent requests sharing a batch. With nothing new to append the checkpoint is
    /// unchanged, except that an empty log gets its first (size 0) checkpoint.
    pub fn append_batch(
        &self,
        key: &SigningKey,
        groups: &[&[Attestation]],
    ) -> Result<BatchResult, StoreError> {
        let _writer = self.writer.lock().map_err(|_| poisoned())?;
        let top = self.log.top()?;
        let new: usize = groups.iter().map(|g| g.len()).sum();
        let txn = self.begin_write(new as u64)?;
        let (result, top_nodes) = {
            let mut tables = WriteTables::open(&txn, &self.log.names)?;
            let latest = latest(&tables.meta)?;
            if let Some(other) = latest
                .as_ref()
                .filter(|l| l.checkpoint.origin != *key.name())
            {
                return Err(StoreError::WrongLog {
                    expected: key.name().to_string(),
                    found: other.checkpoint.origin.to_string(),
                });
            }
            let size = latest.as_ref().map_or(0, |c| c.checkpoint.tree.size);

            let mut accepted: Accepted<'_> = HashMap::new();
            let mut leaves: Vec<&[u8]> = Vec::new();
            let mut pairs = Vec::new();
            let mut outcomes = Vec::with_capacity(groups.len());
            for group in groups {
                let next = size + leaves.len() as u64;
                let (group_outcome, new) = classify(&tables, &top, &accepted, group, next)?;
                if group_outcome.is_ok() {
                    for (key, value, a) in new {
                        leaves.push(a.as_bytes());
                        pairs.push((key, value));
                        accepted.insert(key, (value, a));
                    }
                }
                outcomes.push(group_outcome);
            }
            if let (true, Some(latest)) = (leaves.is_empty(), &latest) {
                // Nothing to commit: dropping the transaction aborts it.
                return Ok(BatchResult {
                    checkpoint: latest.clone(),
                    groups: outcomes,
                });
            }
            let appended = tables.append(size, &leaves, pairs, &top)?;
            let checkpoint = Checkpoint {
                origin: key.name().clone(),
                tree: appended.tree,
                map_root: appended.map_root,
            };
            let signed = SignedCheckpoint::sign(checkpoint, key)?;
            tables
                .meta
                .insert(CHECKPOINT, signed.to_bytes().as_slice())?;
            let result = BatchResult {
                checkpoint: StoredCheckpoint::from_signed(&signed),
                groups: outcomes,
            };
            (result, appended.top_nodes)
        };
        txn.commit()?;
        let size = result.checkpoint.checkpoint.tree.size;
        drop(top);
        self.log.apply(size, top_nodes)?;
        Ok(result)
    }

    /// A consistent view of the log as of the latest commit.
    pub fn read(&self) -> Result<LogReader, StoreError> {
        self.log.read(&self.db)
    }

    /// Keeps `note`, a checkpoint of this log with its witnesses' cosignatures, so that a
    /// restart can serve it again. The caller has checked the signatures. Not acknowledged to
    /// anyone, so not forced to disk: cosignatures can always be collected again.
    pub fn set_cosigned(&self, note: &[u8]) -> Result<(), StoreError> {
        let mut txn = self.begin_write(0)?;
        txn.set_durability(redb::Durability::None)?;
        {
            let mut tables = WriteTables::open(&txn, &self.log.names)?;
            tables.meta.insert(COSIGNED, note)?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// The latest checkpoint in a meta table.
fn latest(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    meta.get(CHECKPOINT)?
        .map(|v| StoredCheckpoint::from_note(v.value().to_vec()))
        .transpose()
}

/// Classifies one group against the log and the batch so far. Returns the group's outcome
/// and, if it is accepted, the attestations to append (with the indices they will get).
#[allow(clippy::type_complexity)]
fn classify<'a>(
    tables: &WriteTables<'_>,
    top: &MapTop,
    accepted: &Accepted<'a>,
    group: &'a [Attestation],
    mut next: u64,
) -> Result<
    (
        Result<Vec<Outcome>, Vec<Conflict>>,
        Vec<(MapKey, MapValue, &'a Attestation)>,
    ),
    StoreError,
> {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut conflicts = Vec::new();
    let mut new: Vec<(MapKey, MapValue, &Attestation)> = Vec::new();
    for (position, a) in group.iter().enumerate() {
        let key = MapKey::for_path(&a.output_path().hash());
        let entry_hash = Hash::of(a.as_bytes());
        let existing = match accepted.get(&key) {
            Some((value, held)) => Some((*value, Some(*held))),
            None => match new.iter().find(|(k, _, _)| *k == key) {
                Some((_, value, held)) => Some((*value, Some(*held))),
                None => tables.lookup(top, &key)?.map(|v| (v, None)),
            },
        };
        match existing {
            Some((v, _)) if v.entry_hash == entry_hash => {
                outcomes.push(Outcome::Duplicate(v.leaf_index));
            }
            Some((v, held)) => conflicts.push(Conflict {
                position,
                index: v.leaf_index,
                existing: Box::new(match held {
                    Some(a) => a.clone(),
                    None => Attestation::decode(&tables.entry(v.leaf_index)?)
                        .map_err(|e| StoreError::corrupt("entry", e))?,
                }),
            }),
            None => {
                let value = MapValue {
                    leaf_index: next,
                    entry_hash,
                };
                next += 1;
                new.push((key, value, a));
                outcomes.push(Outcome::Appended(value.leaf_index));
            }
        }
    }
    if conflicts.is_empty() {
        Ok((Ok(outcomes), new))
    } else {
        Ok((Err(conflicts), Vec::new()))
    }
}

impl LogReader {
    /// The latest checkpoint, if the log has one.
    pub fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.meta(CHECKPOINT)?
            .map(StoredCheckpoint::from_note)
            .transpose()
    }

    /// The checkpoint last kept by [`LogStore::set_cosigned`], with its cosignatures.
    pub fn cosigned(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta(COSIGNED)
    }
}
