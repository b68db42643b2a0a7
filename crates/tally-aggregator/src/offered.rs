//! Checkpoints offered from outside the follower's own polling: pushed to the witness with
//! `add-checkpoint`, or read from peers (other aggregators, witnesses) by gossip.
//!
//! Each is a signed view of a log that the follower checks like the checkpoints its URLs
//! serve: one at or below the verified size must have the mirror's root there (or it is a
//! fork, kept as evidence); a larger one becomes a sync target when the log can prove it
//! extends the verified tree. So every checkpoint the witness cosigns is one the follower
//! verified, and a log that shows witnesses or peers one history and the follower another is
//! caught as soon as the follower's view reaches the other's size.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tally_core::KeyName;
use tally_store::StoredCheckpoint;
use tokio::sync::{Notify, watch};

/// The most offered checkpoints kept per log (one per source).
const MAX_PER_LOG: usize = 64;

/// One log's offered checkpoints, and the follower's progress on them.
struct Log {
    /// By source (`push`, `peer <url>`): the largest checkpoint it offered.
    offered: Mutex<BTreeMap<String, StoredCheckpoint>>,
    /// Wakes the follower early.
    wake: Notify,
    /// The follower's verified size.
    verified: watch::Sender<u64>,
}

/// Offered checkpoints of every followed log.
pub(crate) struct Offered(BTreeMap<KeyName, Log>);

impl Offered {
    /// Nothing offered yet.
    pub(crate) fn new(origins: &[KeyName]) -> Offered {
        Offered(
            origins
                .iter()
                .map(|o| {
                    (
                        o.clone(),
                        Log {
                            offered: Mutex::new(BTreeMap::new()),
                            wake: Notify::new(),
                            verified: watch::Sender::new(0),
                        },
                    )
                })
                .collect(),
        )
    }

    /// Offers a checkpoint (its signature already checked) from `source`, and wakes the
    /// follower. A source's smaller offer does not replace its larger one.
    pub(crate) fn offer(&self, origin: &KeyName, source: &str, checkpoint: StoredCheckpoint) {
        let Some(log) = self.0.get(origin) else {
            return;
        };
        {
            let mut offered = log
                .offered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let size = checkpoint.checkpoint.tree.size;
            let keep = offered
                .get(source)
                .is_none_or(|c| c.checkpoint.tree.size <= size);
            if keep && (offered.len() < MAX_PER_LOG || offered.contains_key(source)) {
                offered.insert(source.to_owned(), checkpoint);
            }
        }
        log.wake.notify_one();
    }

    /// The checkpoints offered for `origin`, by source.
    pub(crate) fn views(&self, origin: &KeyName) -> Vec<(String, StoredCheckpoint)> {
        self.0.get(origin).map_or_else(Vec::new, |log| {
            log.offered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(s, c)| (s.clone(), c.clone()))
                .collect()
        })
    }

    /// The verified size the follower last reported.
    pub(crate) fn verified_size(&self, origin: &KeyName) -> u64 {
        self.0.get(origin).map_or(0, |log| *log.verified.borrow())
    }

    /// Whether something offered for `origin` is beyond the verified size.
    pub(crate) fn ahead(&self, origin: &KeyName) -> bool {
        self.0.get(origin).is_some_and(|log| {
            let verified = *log.verified.borrow();
            log.offered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .any(|c| c.checkpoint.tree.size > verified)
        })
    }

    /// Forgets offers at or below `size` once the follower has checked them.
    pub(crate) fn settled(&self, origin: &KeyName, size: u64) {
        if let Some(log) = self.0.get(origin) {
            log.offered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|_, c| c.checkpoint.tree.size > size);
        }
    }

    /// The follower verified `origin` up to `size`.
    pub(crate) fn verified(&self, origin: &KeyName, size: u64) {
        if let Some(log) = self.0.get(origin) {
            log.verified.send_if_modified(|v| {
                let grew = size > *v;
                *v = (*v).max(size);
                grew
            });
        }
    }

    /// Waits until the follower has verified `origin` to at least `size`, for at most
    /// `timeout`. Returns whether it did.
    pub(crate) async fn wait_verified(
        &self,
        origin: &KeyName,
        size: u64,
        timeout: Duration,
    ) -> bool {
        let Some(log) = self.0.get(origin) else {
            return false;
        };
        let mut rx = log.verified.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= size))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Sleeps for `delay`, or until something is offered for `origin`.
    pub(crate) async fn sleep(&self, origin: &KeyName, delay: Duration) {
        match self.0.get(origin) {
            Some(log) => {
                tokio::select! {
                    () = log.wake.notified() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            }
            None => tokio::time::sleep(delay).await,
        }
    }
}
