//! The witness: C2SP tlog-cosignatures on checkpoints this aggregator has verified, and the
//! C2SP tlog-witness `add-checkpoint` endpoint.
//!
//! For each log the witness keeps one checkpoint: the largest it cosigned. It never
//! contradicts itself or its follower: a checkpoint is cosigned only if it is consistent with
//! the last one cosigned (the spec's checks, the swap in one transaction so no request can
//! roll it back) AND the follower has verified the log's tree up to its size, with the same
//! root. A pushed checkpoint beyond what the follower verified is offered to the follower as
//! a sync target and the request waits a little for it; one that disagrees with the verified
//! tree is kept as fork evidence, from the two checkpoints the log signed.

use std::sync::Arc;
use std::time::Duration;

use tally_core::cosignature::Cosigner;
use tally_core::evidence::{Bundle, Fork};
use tally_core::tlog::{ConsistencyProof, TreeHead};
use tally_core::witness::{AddCheckpoint, COSIGNATURE_REFRESH_SECS};
use tally_core::{KeyName, SignedCheckpoint, UnverifiedCheckpoint, VerifyingKey};
use tally_store::{MirrorStore, StoreError, StoredCheckpoint};

use crate::answers::MirrorView;
use crate::evidence::EvidenceSink;
use crate::follower::note;
use crate::offered::Offered;
use crate::status::now;

/// How long an `add-checkpoint` request waits for the follower to verify a larger checkpoint.
const VERIFY_WAIT: Duration = Duration::from_secs(10);

/// A witness over the followed logs.
pub struct Witness {
    pub(crate) cosigner: Cosigner,
    pub(crate) store: Arc<MirrorStore>,
    pub(crate) keys: Vec<VerifyingKey>,
    pub(crate) offered: Arc<Offered>,
    pub(crate) evidence: Arc<EvidenceSink>,
}

/// What cosigning a verified checkpoint came to.
pub(crate) enum Cosigned {
    /// Cosigned: it is the witness's latest.
    Yes,
    /// Not cosigned: the witness already cosigned it, or a larger one.
    No,
    /// It contradicts what the witness cosigned: evidence against the log.
    Fork(Box<Bundle>),
}

/// An `add-checkpoint` request that passed the spec's checks.
struct Accepted {
    checkpoint: StoredCheckpoint,
    /// The size last cosigned, which the request named.
    old: u64,
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
    ) -> Result<Cosigned, StoreError> {
        let current = self.store.cosigned(origin)?;
        let current_size = current.as_ref().map_or(0, |c| c.checkpoint.tree.size);
        let size = checkpoint.checkpoint.tree.size;
        if current_size > size {
            return Ok(Cosigned::No);
        }
        if let Some(c) = &current {
            // The mirror holds the verified tree: the cosigned checkpoint must be its prefix.
            if view.reader.tree_hash(current_size)? != c.checkpoint.tree.root {
                return Ok(Cosigned::Fork(Box::new(Bundle::Fork(Fork {
                    origin: origin.clone(),
                    a: note(c),
                    b: note(checkpoint),
                    at: current_size,
                    path_a: Vec::new(),
                    path_b: view.reader.prefix_path(current_size, size)?,
                }))));
            }
            if current_size == size {
                return Ok(Cosigned::No);
            }
        }
        let cosigned = self.cosign(checkpoint)?;
        Ok(
            match self.store.swap_cosigned(origin, current_size, &cosigned)? {
                Ok(()) => Cosigned::Yes,
                Err(_) => Cosigned::No,
            },
        )
    }

    /// Cosigns again the checkpoint last cosigned for `origin` once this witness's
    /// cosignature on it is older than [`COSIGNATURE_REFRESH_SECS`]: an idle log's answers
    /// then keep counting for consumers with a `max-age`. Returns whether it did.
    pub(crate) fn refresh(&self, origin: &KeyName) -> Result<bool, StoreError> {
        let Some(current) = self.store.cosigned(origin)? else {
            return Ok(false);
        };
        let signed_at = tally_core::Note::parse(&current.note)
            .ok()
            .and_then(|n| self.cosigner.verifier().verify(&n).ok());
        if signed_at.is_some_and(|t| t.saturating_add(COSIGNATURE_REFRESH_SECS) > now()) {
            return Ok(false);
        }
        let cosigned = self.cosign(&current)?;
        Ok(self
            .store
            .swap_cosigned(origin, current.checkpoint.tree.size, &cosigned)?
            .is_ok())
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
    /// not the latest cosigned (body: that size), 422 consistency proof does not verify, 422
    /// same size but a different root (kept as fork evidence); then this witness's own: 422 when the checkpoint
    /// disagrees with the tree the follower verified (kept as fork evidence), 503 when the
    /// follower has not verified that size yet (try again later); 200 with the cosignature.
    pub async fn add_checkpoint(self: &Arc<Self>, body: Vec<u8>) -> Result<Reply, StoreError> {
        let w = Arc::clone(self);
        let accepted = match blocking(move || w.check_request(&body)).await?? {
            Ok(a) => a,
            Err(reply) => return Ok(reply),
        };
        let origin = accepted.checkpoint.checkpoint.origin.clone();
        let size = accepted.checkpoint.checkpoint.tree.size;
        let verified = self.store.state(&origin)?.verified;
        if verified
            .as_ref()
            .is_none_or(|v| v.checkpoint.tree.size < size)
        {
            self.offered
                .offer(&origin, "push", accepted.checkpoint.clone());
            if !self.offered.wait_verified(&origin, size, VERIFY_WAIT).await {
                return Ok(text(
                    503,
                    format!(
                        "this witness cosigns only what its follower verified, and it has not \
                         verified {origin} to size {size} yet; try again later\n"
                    ),
                ));
            }
        }
        let w = Arc::clone(self);
        blocking(move || w.cosign_if_verified(accepted)).await?
    }

    /// The spec's checks, in its order.
    fn check_request(&self, body: &[u8]) -> Result<Result<Accepted, Reply>, StoreError> {
        let request = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return Ok(Err(text(400, format!("{e}\n")))),
        };
        let parsed = match UnverifiedCheckpoint::parse(&request.checkpoint) {
            Ok(p) => p,
            Err(e) => return Ok(Err(text(400, format!("malformed checkpoint: {e}\n")))),
        };
        let Some(key) = self.keys.iter().find(|k| k.name() == parsed.origin()) else {
            return Ok(Err(text(404, format!("unknown log {}\n", parsed.origin()))));
        };
        let signed = match parsed.verify(key) {
            Ok(s) => s,
            Err(e) => return Ok(Err(text(403, format!("{e}\n")))),
        };
        let new = signed.checkpoint().tree;
        if request.old_size > new.size {
            return Ok(Err(text(
                400,
                format!(
                    "old size {} is above the checkpoint's {}\n",
                    request.old_size, new.size
                ),
            )));
        }
        let origin = signed.checkpoint().origin.clone();
        let current = self.store.cosigned(&origin)?;
        let latest = current.as_ref().map_or(0, |c| c.checkpoint.tree.size);
        if request.old_size != latest {
            return Ok(Err(size_reply(latest)));
        }
        let old = match &current {
            Some(c) => c.checkpoint.tree,
            None => TreeHead {
                size: 0,
                root: tally_core::tlog::empty_root(),
            },
        };
        let pushed = StoredCheckpoint {
            checkpoint: signed.checkpoint().clone(),
            note: signed.to_bytes(),
        };
        if old.size == new.size {
            if old.root != new.root {
                // Two checkpoints of one size with two roots, both signed by the log.
                let id = current.as_ref().and_then(|c| {
                    self.evidence.record(
                        &format!("fork:{origin}:pushed:{}", new.root),
                        Bundle::Fork(Fork {
                            origin: origin.clone(),
                            a: note(c),
                            b: note(&pushed),
                            at: new.size,
                            path_a: Vec::new(),
                            path_b: Vec::new(),
                        }),
                    )
                });
                return Ok(Err(text(
                    422,
                    format!(
                        "a checkpoint of this size with another root was already cosigned \
                         (evidence #{})\n",
                        id.map_or_else(|| "not kept".into(), |i| i.to_string())
                    ),
                )));
            }
        } else {
            let proof = ConsistencyProof {
                old_size: old.size,
                new_size: new.size,
                hashes: request.proof.clone(),
            };
            if let Err(e) = proof.verify(&old, &new) {
                // Not cosigned, but kept in view: the follower proves a fork from it as soon
                // as its own verified tree reaches this size.
                self.offered.offer(&origin, "push", pushed);
                return Ok(Err(text(
                    422,
                    format!(
                        "consistency proof from {} to {} does not verify: {e}\n",
                        old.size, new.size
                    ),
                )));
            }
        }
        Ok(Ok(Accepted {
            checkpoint: pushed,
            old: old.size,
        }))
    }

    /// Cosigns an accepted checkpoint if the follower's verified tree has its root at its
    /// size; keeps fork evidence if not.
    fn cosign_if_verified(&self, accepted: Accepted) -> Result<Reply, StoreError> {
        let c = &accepted.checkpoint;
        let origin = c.checkpoint.origin.clone();
        let size = c.checkpoint.tree.size;
        let view = MirrorView::open(&self.store, &origin)?;
        let Some(verified) = view
            .verified
            .clone()
            .filter(|v| v.checkpoint.tree.size >= size)
        else {
            return Ok(text(
                503,
                format!("{origin} is not verified to size {size} yet\n"),
            ));
        };
        let vsize = verified.checkpoint.tree.size;
        let same_map = size < vsize || verified.checkpoint.map_root == c.checkpoint.map_root;
        if view.reader.tree_hash(size)? != c.checkpoint.tree.root || !same_map {
            let bundle = Bundle::Fork(Fork {
                origin: origin.clone(),
                a: note(c),
                b: note(&verified),
                at: size,
                path_a: Vec::new(),
                path_b: view.reader.prefix_path(size, vsize)?,
            });
            let id = self.evidence.record(
                &format!("fork:{origin}:pushed:{}", c.checkpoint.tree.root),
                bundle,
            );
            return Ok(text(
                422,
                format!(
                    "checkpoint of size {size} contradicts the tree this witness verified \
                     (evidence #{})\n",
                    id.map_or_else(|| "not kept".into(), |i| i.to_string())
                ),
            ));
        }
        let cosigned = self.cosign(c)?;
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
        match self.store.swap_cosigned(&origin, accepted.old, &cosigned)? {
            Ok(()) => Ok((200, "text/plain; charset=utf-8", line.into_bytes())),
            // The follower cosigned this very checkpoint meanwhile (it verified it): the
            // answer is a cosignature all the same.
            Err(_)
                if self
                    .store
                    .cosigned(&origin)?
                    .is_some_and(|cur| cur.checkpoint == c.checkpoint) =>
            {
                Ok((200, "text/plain; charset=utf-8", line.into_bytes()))
            }
            Err(size) => Ok(size_reply(size)),
        }
    }
}

fn size_reply(size: u64) -> Reply {
    (409, "text/x.tlog.size", format!("{size}\n").into_bytes())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Corrupt {
            what: "task",
            detail: e.to_string(),
        })
}
