//! Publishing: which checkpoint readers are served, and the snapshot its proofs come from.
//!
//! Sequencing commits and signs a checkpoint per batch; publishing decides what `GetCheckpoint`,
//! `Lookup` and `/checkpoint` show. Without witnesses (or with `witness_quorum = 0`) that is
//! the latest commit. With witnesses it is the latest checkpoint that enough of them
//! cosigned, together with the database snapshot taken when it was made, so that a lookup's
//! map and inclusion proofs are against exactly the checkpoint (and cosignatures) it carries:
//! a consumer that requires a witness quorum can count it.
//!
//! Entries, tree hashes and tiles never change once appended, so `GetEntries`, proofs
//! between given sizes and tiles are served from the latest state in both modes.
//!
//! Publishing MUST NOT hold up submissions: a submit is acknowledged when its batch is
//! durable and signed, whatever the witnesses do.

use std::sync::{Arc, RwLock};

use tally_core::{Checkpoint, Note};
use tally_store::{LogReader, LogStore, StoreError, StoredCheckpoint};

/// A published checkpoint: its note (with any cosignatures) and the snapshot it describes.
pub struct View {
    /// The snapshot the checkpoint was signed over.
    pub reader: Arc<LogReader>,
    /// The signed checkpoint, with the cosignatures collected for it.
    pub note: Vec<u8>,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

/// What readers are served.
pub struct Published {
    store: Arc<LogStore>,
    /// `None`: the latest commit. `Some`: the view set by the witness client.
    witnessed: Option<RwLock<Arc<View>>>,
}

impl Published {
    /// Readers see the latest commit, with the cosignatures kept for it if any.
    pub fn latest(store: Arc<LogStore>) -> Published {
        Published {
            store,
            witnessed: None,
        }
    }

    /// Readers see what [`Published::publish`] sets: at first the latest commit (with its
    /// cosignatures, if they were collected before a restart).
    pub fn witnessed(store: Arc<LogStore>) -> Result<Published, StoreError> {
        let first = View::latest(&store)?;
        Ok(Published {
            store,
            witnessed: Some(RwLock::new(Arc::new(first))),
        })
    }

    /// The view to answer a reader from.
    pub fn view(&self) -> Result<Arc<View>, StoreError> {
        match &self.witnessed {
            None => Ok(Arc::new(View::latest(&self.store)?)),
            Some(v) => Ok(Arc::clone(
                &v.read().unwrap_or_else(std::sync::PoisonError::into_inner),
            )),
        }
    }

    /// Whether reads wait for witnesses.
    pub fn waits_for_witnesses(&self) -> bool {
        self.witnessed.is_some()
    }

    /// Moves readers to `view` (never backwards), and keeps its cosigned note for restarts.
    pub fn publish(&self, view: View) -> Result<(), StoreError> {
        self.store.set_cosigned(&view.note)?;
        if let Some(v) = &self.witnessed {
            let mut current = v.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if view.checkpoint.tree.size >= current.checkpoint.tree.size {
                *current = Arc::new(view);
            }
        }
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Arc<LogStore> {
        &self.store
    }
}

impl View {
    /// The latest commit, with the cosignatures kept for exactly that checkpoint.
    pub fn latest(store: &LogStore) -> Result<View, StoreError> {
        let reader = store.read()?;
        let stored = reader.checkpoint()?.ok_or_else(|| StoreError::Corrupt {
            what: "checkpoint",
            detail: "the log has no checkpoint yet".into(),
        })?;
        let note = with_cosignatures(&stored, reader.cosigned()?.as_deref());
        Ok(View {
            reader: Arc::new(reader),
            checkpoint: stored.checkpoint,
            note,
        })
    }
}

/// `stored`'s note with the signature lines of `cosigned`, when that is the same checkpoint.
fn with_cosignatures(stored: &StoredCheckpoint, cosigned: Option<&[u8]>) -> Vec<u8> {
    let (Ok(mut note), Some(Ok(other))) = (Note::parse(&stored.note), cosigned.map(Note::parse))
    else {
        return stored.note.clone();
    };
    if note.merge(&other) {
        note.to_bytes()
    } else {
        stored.note.clone()
    }
}
