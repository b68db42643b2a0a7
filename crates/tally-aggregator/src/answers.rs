//! A followed log's answers, from its mirror: the votes queries count and the proofs that
//! back them.

use tally_core::answer::{AnswerEntry, LogAnswer};
use tally_core::evidence::{Disagreement, OriginAnswer};
use tally_core::map::{MapAnswer, MapKey, MapValue};
use tally_core::{Attestation, Hash, KeyName, StorePathHash};
use tally_store::{LogReader, MirrorStore, StoreError, StoredCheckpoint};

/// A snapshot of one mirror.
pub(crate) struct MirrorView {
    pub(crate) origin: KeyName,
    pub(crate) reader: LogReader,
    pub(crate) verified: Option<StoredCheckpoint>,
    /// The witness's cosigned checkpoint of this log, if any.
    cosigned: Option<StoredCheckpoint>,
}

impl MirrorView {
    pub(crate) fn open(store: &MirrorStore, origin: &KeyName) -> Result<MirrorView, StoreError> {
        let reader = store.read(origin)?;
        let verified = reader.checkpoint()?;
        let cosigned = store.cosigned(origin)?;
        Ok(MirrorView {
            origin: origin.clone(),
            reader,
            verified,
            cosigned,
        })
    }

    /// The checkpoint answers are proven against, if the mirror stands exactly at it (not
    /// in the middle of a sync).
    pub(crate) fn answering(&self) -> Option<&StoredCheckpoint> {
        self.verified
            .as_ref()
            .filter(|c| c.checkpoint.tree.size == self.reader.size())
    }

    /// The paths attested in entries `[from, to)` that one of `others` attests with another
    /// NAR, each with both logs' proven answers.
    ///
    /// A path whose map value in the other log carries this entry's hash is the same bytes,
    /// so only disagreements read the other log's entry. Each batch is looked up in key
    /// order, so that neighbouring lookups share the map's pages.
    pub(crate) fn disagreements(
        &self,
        others: &[MirrorView],
        from: u64,
        to: u64,
    ) -> Result<Vec<Disagreement>, StoreError> {
        let mut found = Vec::new();
        let mut at = from;
        while at < to {
            let end = (at + 10_000).min(to);
            let mut batch: Vec<(MapKey, Hash, Attestation)> = self
                .reader
                .entries(at, end)?
                .into_iter()
                .filter_map(|entry| {
                    let mine = Attestation::decode(&entry).ok()?;
                    let key = MapKey::for_path(&mine.output_path().hash());
                    Some((key, Hash::of(&entry), mine))
                })
                .collect();
            batch.sort_unstable_by_key(|b| b.0);
            for other in others {
                for (key, entry_hash, mine) in &batch {
                    match other.reader.lookup(key)? {
                        Some(v) if v.entry_hash != *entry_hash => {}
                        _ => continue,
                    }
                    let path = mine.output_path().hash();
                    let Some((_, theirs)) = other.lookup(&path)? else {
                        continue;
                    };
                    if theirs.same_nar(mine) {
                        continue;
                    }
                    let (Some(a), Some(b)) = (self.answer(&path)?, other.answer(&path)?) else {
                        continue;
                    };
                    found.push(Disagreement {
                        path,
                        answers: vec![
                            OriginAnswer {
                                origin: self.origin.clone(),
                                answer: a,
                            },
                            OriginAnswer {
                                origin: other.origin.clone(),
                                answer: b,
                            },
                        ],
                    });
                }
            }
            at = end;
        }
        Ok(found)
    }

    /// The log's attestation of a path: its index and the attestation.
    pub(crate) fn lookup(
        &self,
        path: &StorePathHash,
    ) -> Result<Option<(u64, Attestation)>, StoreError> {
        let Some(value) = self.lookup_value(path)? else {
            return Ok(None);
        };
        Ok(Some((
            value.leaf_index,
            self.attestation(value.leaf_index)?,
        )))
    }

    /// The map's value for a path: where the attestation is and the hash of its bytes.
    ///
    /// The replay checked that each entry hashes to its map value, so logs whose values
    /// carry the same entry hash attest the same bytes.
    pub(crate) fn lookup_value(
        &self,
        path: &StorePathHash,
    ) -> Result<Option<MapValue>, StoreError> {
        self.reader.lookup(&MapKey::for_path(path))
    }

    /// The attestation at `index`.
    pub(crate) fn attestation(&self, index: u64) -> Result<Attestation, StoreError> {
        let entry = self.entry(index)?;
        Attestation::decode(&entry).map_err(|e| StoreError::Corrupt {
            what: "mirrored entry",
            detail: format!("{} entry {index}: {e}", self.origin),
        })
    }

    pub(crate) fn entry(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        let mut e = self.reader.entries(index, index + 1)?;
        e.pop().ok_or(StoreError::OutOfRange {
            start: index,
            end: index + 1,
            size: self.reader.size(),
        })
    }

    /// The verified checkpoint's note with every cosignature known for it: those the log's
    /// URLs carried, and this aggregator's own.
    fn answer_note(&self, checkpoint: &StoredCheckpoint) -> Vec<u8> {
        let own = self
            .cosigned
            .as_ref()
            .filter(|c| c.checkpoint == checkpoint.checkpoint);
        let (Some(own), Ok(mut note)) = (own, tally_core::Note::parse(&checkpoint.note)) else {
            return checkpoint.note.clone();
        };
        match tally_core::Note::parse(&own.note) {
            Ok(other) if note.merge(&other) => note.to_bytes(),
            _ => checkpoint.note.clone(),
        }
    }

    /// The log's answer about a path, with proofs against the verified checkpoint.
    pub(crate) fn answer(&self, path: &StorePathHash) -> Result<Option<LogAnswer>, StoreError> {
        let Some(checkpoint) = self.answering() else {
            return Ok(None);
        };
        let key = MapKey::for_path(path);
        let map_proof = self.reader.map_proof(&key)?;
        let (entry, inclusion_proof) = match map_proof.verify(&key, &checkpoint.checkpoint.map_root)
        {
            Ok(MapAnswer::Present(v)) => {
                let i = v.leaf_index;
                let proof = self
                    .reader
                    .inclusion_proof(i, checkpoint.checkpoint.tree.size)?;
                (
                    Some(AnswerEntry {
                        index: i,
                        data: self.entry(i)?,
                    }),
                    Some(proof),
                )
            }
            Ok(MapAnswer::Absent) => (None, None),
            Err(e) => {
                return Err(StoreError::Corrupt {
                    what: "mirrored map",
                    detail: format!("{}: own proof does not verify: {e}", self.origin),
                });
            }
        };
        Ok(Some(LogAnswer {
            checkpoint: String::from_utf8_lossy(&self.answer_note(checkpoint)).into_owned(),
            map_proof,
            entry,
            inclusion_proof,
        }))
    }
}
