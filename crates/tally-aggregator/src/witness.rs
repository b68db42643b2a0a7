//! The witness: C2SP tlog-cosignatures on checkpoints this aggregator has verified, and the
//! C2SP tlog-witness `add-checkpoint` endpoint.
//!
//! For each log the witness keeps one checkpoint: the largest it cosigned. It cosigns a new
//! one only if it is consistent with that one, and the check and the store happen in one
//! database transaction, so no request can roll it back.

use std::sync::Arc;

use tally_core::cosignature::Cosigner;
use tally_core::evidence::{Bundle, Fork};
use tally_core::tlog::{ConsistencyProof, TreeHead};
use tally_core::witness::AddCheckpoint;
use tally_core::{KeyName, SignedCheckpoint, UnverifiedCheckpoint, VerifyingKey};
use tally_store::{MirrorStore, StoreError, StoredCheckpoint};

use crate::answers::MirrorView;
use crate::follower::note;
use crate::status::now;

/// A witness over the followed logs.
pub struct Witness {
    pub(crate) cosigner: Cosigner,
    pub(crate) store: Arc<MirrorStore>,
    pub(crate) keys: Vec<VerifyingKey>,
}

/// An `add-checkpoint` answer: status code, content type, body.
pub type Reply = (u16, &'static str, Vec<u8>);

fn text(code: u16, body: impl Into<String>) -> Reply {
    (code, "text/plain; charset=utf-8", body.into().into_bytes())
}

impl Witness {
    /// Cosigns a checkpoint the follower just verified, if it is not behind what the witness
    /// already cosigned. Returns fork evidence if it contradicts that checkpoint.
    pub(crate) async fn cosign_verified(
        &self,
        origin: &KeyName,
        checkpoint: &StoredCheckpoint,
        view: &MirrorView,
    ) -> Result<Option<Bundle>, StoreError> {
        let current = self.store.cosigned(origin)?;
        let current_size = current.as_ref().map_or(0, |c| c.checkpoint.tree.size);
        let size = checkpoint.checkpoint.tree.size;
        if current_size > size {
            return Ok(None);
        }
        if let Some(c) = &current {
            // The mirror holds the verified tree: the cosigned checkpoint must be its prefix.
            if view.reader.tree_hash(current_size)? != c.checkpoint.tree.root {
                return Ok(Some(Bundle::Fork(Fork {
                    origin: origin.clone(),
                    a: note(c),
                    b: note(checkpoint),
                    at: current_size,
                    path_a: Vec::new(),
                    path_b: view.reader.prefix_path(current_size, size)?,
                })));
            }
            if current_size == size {
                return Ok(None);
            }
        }
        let cosigned = self.cosign(checkpoint)?;
        let _ = self.store.swap_cosigned(origin, current_size, &cosigned)?;
        Ok(None)
    }

    fn cosign(&self, checkpoint: &StoredCheckpoint) -> Result<Vec<u8>, StoreError> {
        let key = self
            .keys
            .iter()
            .find(|k| *k.name() == checkpoint.checkpoint.origin)
            .ok_or_else(|| StoreError::Corrupt {
                what: "witness",
                detail: format!("no key for {}", checkpoint.checkpoint.origin),
            })?;
        let mut signed =
            SignedCheckpoint::open(&checkpoint.note, key).map_err(|e| StoreError::Corrupt {
                what: "witness",
                detail: e.to_string(),
            })?;
        let line = self.cosigner.cosign(signed.note().text(), now());
        signed
            .add_cosignature(line)
            .map_err(|e| StoreError::Corrupt {
                what: "witness",
                detail: e.to_string(),
            })?;
        Ok(signed.to_bytes())
    }

    /// Handles a C2SP tlog-witness `add-checkpoint` request.
    ///
    /// Status codes, as the spec orders its checks: 400 malformed request, 404 unknown log,
    /// 403 no valid signature from the log, 400 old size above the checkpoint's, 409 old size
    /// not the latest cosigned (body: that size), 422 consistency proof does not verify, 409
    /// same size but a different root; 200 with the cosignature line.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Reply, StoreError> {
        let request = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return Ok(text(400, format!("{e}\n"))),
        };
        let parsed = match UnverifiedCheckpoint::parse(&request.checkpoint) {
            Ok(p) => p,
            Err(e) => return Ok(text(400, format!("malformed checkpoint: {e}\n"))),
        };
        let Some(key) = self.keys.iter().find(|k| k.name() == parsed.origin()) else {
            return Ok(text(404, format!("unknown log {}\n", parsed.origin())));
        };
        let signed = match parsed.verify(key) {
            Ok(s) => s,
            Err(e) => return Ok(text(403, format!("{e}\n"))),
        };
        let new = signed.checkpoint().tree;
        if request.old_size > new.size {
            return Ok(text(
                400,
                format!(
                    "old size {} is above the checkpoint's {}\n",
                    request.old_size, new.size
                ),
            ));
        }
        let origin = signed.checkpoint().origin.clone();
        let current = self.store.cosigned(&origin)?;
        let latest = current.as_ref().map_or(0, |c| c.checkpoint.tree.size);
        if request.old_size != latest {
            return Ok((409, "text/x.tlog.size", format!("{latest}\n").into_bytes()));
        }
        let old = match &current {
            Some(c) => c.checkpoint.tree,
            None => TreeHead {
                size: 0,
                root: tally_core::tlog::empty_root(),
            },
        };
        if old.size == new.size {
            if old.root != new.root {
                return Ok(text(
                    409,
                    "a checkpoint of this size with another root was already cosigned\n",
                ));
            }
        } else {
            let proof = ConsistencyProof {
                old_size: old.size,
                new_size: new.size,
                hashes: request.proof.clone(),
            };
            if let Err(e) = proof.verify(&old, &new) {
                return Ok(text(
                    422,
                    format!(
                        "consistency proof from {} to {} does not verify: {e}\n",
                        old.size, new.size
                    ),
                ));
            }
        }
        let stored = StoredCheckpoint {
            checkpoint: signed.checkpoint().clone(),
            note: signed.to_bytes(),
        };
        let cosigned = self.cosign(&stored)?;
        let line = {
            let note = tally_core::Note::parse(&cosigned).map_err(|e| StoreError::Corrupt {
                what: "witness",
                detail: e.to_string(),
            })?;
            let id = self.cosigner.verifier().key_id();
            note.signatures()
                .iter()
                .find(|s| s.key_id == id && s.name == *self.cosigner.verifier().name())
                .map(|s| s.to_line())
                .unwrap_or_default()
        };
        match self.store.swap_cosigned(&origin, old.size, &cosigned)? {
            Ok(()) => Ok((200, "text/plain; charset=utf-8", line.into_bytes())),
            Err(size) => Ok((409, "text/x.tlog.size", format!("{size}\n").into_bytes())),
        }
    }
}
