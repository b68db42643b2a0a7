//! Following one log: poll, check, mirror, verify, and keep evidence.
//!
//! Each round, for every URL of the log:
//! 1. fetch the checkpoint and verify the log's signature;
//! 2. check it against the mirror: a checkpoint at or below the verified size must have the
//!    mirror's root there; a larger one must prove (with the log's consistency proof) that
//!    its first `v` entries are the verified tree's. Anything else is a fork, kept as
//!    evidence;
//! 3. fetch the new entries in chunks, each committed only if it leads to the root the
//!    checkpoint proves for its end, with the map replayed alongside;
//! 4. at the checkpoint's size, compare the replayed map root with the signed one;
//! 5. turn contradictions found on the way into evidence, look for disagreements with the
//!    other logs, and cosign the checkpoint as a witness.
//!
//! Evidence rests only on what the log signed. A URL that serves entries which do not hash
//! to the signed root (a corrupting mirror, a broken proxy) proves nothing against the log:
//! that URL is marked faulty and skipped for a while, and the other URLs are used. A log
//! that is down or slow is retried with backoff; one proven by its own signatures to fork or
//! to sign a wrong map root is excluded and no longer followed.

use std::sync::Arc;
use std::time::Duration;

use tally_core::backoff::Backoff;
use tally_core::evidence::{BadMapRoot, Bundle, Contradiction, Fork, ProvenEntry};
use tally_core::map::{MapAnswer, MapKey};
use tally_core::tlog::{self, NodeId};
use tally_core::{Attestation, Hash, KeyName, SignedCheckpoint};
use tally_store::{Appended, Expect, MirrorState, MirrorStore, StoreError, StoredCheckpoint};
use tokio_util::sync::CancellationToken;

use crate::answers::MirrorView;
use crate::config::LogConfig;
use crate::evidence::EvidenceSink;
use crate::metrics::{LogLabel, Metrics};
use crate::offered::Offered;
use crate::progress::SyncProgress;
use crate::remote::{Failure, Remote};
use crate::status::{State, Statuses};
use crate::witness::{Cosigned, Witness};

/// Why a round stopped.
#[derive(Debug)]
enum Stop {
    /// Try again later.
    Retry(String),
    /// One URL served data that does not match what the log signed: skip it for a while.
    BadUrl {
        /// Which.
        url: usize,
        /// What it served.
        reason: String,
    },
    /// The replayed map root differs from the signed one at the end of a sync.
    MapMismatch(Hash),
    /// The log is proven to misbehave.
    Excluded,
    /// The database must be reopened before anything more can be stored.
    Fatal(String),
}

/// A URL that served data not matching the log's signatures, and until when it is skipped.
#[derive(Debug, Clone)]
pub(crate) struct UrlFault {
    reason: String,
    until: std::time::Instant,
    count: u32,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        if e.needs_reopen() {
            Stop::Fatal(e.to_string())
        } else {
            Stop::Retry(format!("database: {e}"))
        }
    }
}

/// Everything a follower needs.
pub(crate) struct Follower {
    pub(crate) log: LogConfig,
    pub(crate) others: Vec<KeyName>,
    pub(crate) store: Arc<MirrorStore>,
    pub(crate) statuses: Arc<Statuses>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) evidence: Arc<EvidenceSink>,
    pub(crate) witness: Option<Arc<Witness>>,
    pub(crate) progress: Arc<dyn SyncProgress>,
    pub(crate) poll: Duration,
    pub(crate) chunk: u64,
    /// The longest one call to a log may take.
    pub(crate) peer_timeout: Duration,
    /// When a chunk was last committed durably.
    pub(crate) last_durable: std::time::Instant,
    /// Cancelled when the database must be reopened: the aggregator stops.
    pub(crate) fatal: CancellationToken,
    /// Permits to sync, shared by every follower: what fits in `memory_mb`.
    pub(crate) syncs: Arc<tokio::sync::Semaphore>,
    pub(crate) remotes: Vec<Option<Remote>>,
    /// Checkpoints pushed to the witness or read from peers.
    pub(crate) offered: Arc<Offered>,
    /// Per URL: why it is skipped, if it is.
    pub(crate) faults: Vec<Option<UrlFault>>,
    /// The target whose wrong map root was searched for a compact proof in vain; not
    /// searched again until the log signs another checkpoint.
    pub(crate) map_searched: Option<Hash>,
}

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<MirrorStore>,
    f: impl FnOnce(&MirrorStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Corrupt {
            what: "task",
            detail: e.to_string(),
        })?
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    u64::from_le_bytes(b)
}

impl Follower {
    fn origin(&self) -> &KeyName {
        &self.log.origin
    }

    /// Polls until `shutdown`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let backoff = Backoff {
            base: self.poll,
            max: self.poll.max(Duration::from_secs(60)),
            retries: u32::MAX,
        };
        let mut failures = 0u32;
        loop {
            let excluded = self
                .statuses
                .get(self.origin())
                .is_some_and(|s| s.state == State::Excluded);
            let mut again = false;
            if !excluded {
                let before = self.offered.verified_size(self.origin());
                match self.round().await {
                    Ok(()) => {
                        failures = 0;
                        // Progress, and something offered is still ahead (a push may be
                        // waiting for it): go on at once.
                        again = self.offered.ahead(self.origin())
                            && self.offered.verified_size(self.origin()) > before;
                    }
                    Err(Stop::Excluded) => {}
                    Err(Stop::BadUrl { url, reason }) => {
                        self.fault(url, reason);
                        // The other URLs may serve the log well: try them at once.
                        again = true;
                    }
                    Err(Stop::Retry(e)) => {
                        failures += 1;
                        tracing::warn!(origin = %self.log.origin, "{e}");
                        self.metrics.fail(self.origin().as_str(), "unavailable");
                        self.statuses.unavailable(self.origin(), e);
                        self.remotes.iter_mut().for_each(|r| *r = None);
                    }
                    Err(Stop::MapMismatch(_)) => unreachable!("handled in sync"),
                    Err(Stop::Fatal(e)) => {
                        // redb refuses every transaction after a failed commit until it is
                        // reopened: stop the aggregator, so that it is restarted.
                        tracing::error!(
                            origin = %self.log.origin,
                            "{e}; the database must be reopened: stopping so that tally \
                             aggregate serve is restarted"
                        );
                        self.fatal.cancel();
                        return;
                    }
                }
            }
            let delay = match failures {
                _ if again => Duration::from_millis(50),
                0 => self.poll,
                n => backoff.delay(n - 1, random()).unwrap_or(self.poll),
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.offered.sleep(&self.log.origin, delay) => {}
            }
        }
    }

    /// Marks URL `i` faulty: skipped for a minute, doubling on each repeat up to an hour.
    fn fault(&mut self, i: usize, reason: String) {
        let count = self.faults[i].as_ref().map_or(0, |f| f.count) + 1;
        let skip = Duration::from_secs(60u64 << (count - 1).min(6)).min(Duration::from_secs(3600));
        tracing::warn!(
            origin = %self.log.origin,
            url = %self.log.urls[i],
            "URL marked faulty for {}s: {reason}",
            skip.as_secs()
        );
        self.metrics.fail(self.origin().as_str(), "faulty_url");
        self.remotes[i] = None;
        self.faults[i] = Some(UrlFault {
            reason,
            until: std::time::Instant::now() + skip,
            count,
        });
        self.publish_urls(&[]);
    }

    /// Whether URL `i` is being skipped.
    fn skipped(&self, i: usize) -> bool {
        self.faults[i]
            .as_ref()
            .is_some_and(|f| f.until > std::time::Instant::now())
    }

    /// Publishes each URL's state; `unreachable` holds this round's failures.
    fn publish_urls(&self, unreachable: &[(usize, String)]) {
        let states = (0..self.log.urls.len())
            .map(|i| {
                if let Some(f) = self.faults[i].as_ref().filter(|_| self.skipped(i)) {
                    format!("faulty: {}", f.reason)
                } else if let Some((_, e)) = unreachable.iter().find(|(u, _)| *u == i) {
                    format!("unreachable: {e}")
                } else {
                    "ok".to_owned()
                }
            })
            .collect();
        self.statuses.urls(self.origin(), states);
    }

    async fn remote(&mut self, i: usize) -> Result<&mut Remote, String> {
        if self.remotes[i].is_none() {
            self.remotes[i] = Some(Remote::connect(&self.log.urls[i], self.peer_timeout).await?);
        }
        self.remotes[i]
            .as_mut()
            .ok_or_else(|| "not connected".to_owned())
    }

    /// One round: check every URL's checkpoint, then sync to the largest.
    async fn round(&mut self) -> Result<(), Stop> {
        let origin = self.origin().clone();
        let state = blocking(&self.store, {
            let o = origin.clone();
            move |s| s.state(&o)
        })
        .await?;
        let mut views = Vec::new();
        let mut unreachable = Vec::new();
        for i in 0..self.log.urls.len() {
            if self.skipped(i) {
                continue;
            }
            let key = self.log.vkey.clone();
            let result = match self.remote(i).await {
                Ok(r) => r.checkpoint(&key).await,
                Err(e) => Err(Failure::Down(e)),
            };
            match result {
                Ok(c) => views.push((i, c)),
                Err(Failure::Down(e)) => {
                    unreachable.push((i, e));
                    self.remotes[i] = None;
                }
                // A checkpoint not signed by the configured key: another log at this URL,
                // or a stale key in the config.
                Err(Failure::Faulty(e)) => {
                    unreachable.push((i, e.clone()));
                    self.fault(i, e);
                }
            }
        }
        self.publish_urls(&unreachable);
        let errors: Vec<String> = unreachable
            .iter()
            .map(|(i, e)| format!("{}: {e}", self.log.urls[*i]))
            .chain(
                (0..self.log.urls.len())
                    .filter(|i| self.skipped(*i))
                    .map(|i| format!("{}: skipped as faulty", self.log.urls[i])),
            )
            .collect();
        if views.is_empty() {
            return Err(Stop::Retry(errors.join("; ")));
        }
        for (_, c) in &views {
            self.statuses.seen(&origin, c.checkpoint.tree.size);
        }
        for (i, c) in &views {
            self.check(*i, c, &state).await?;
        }
        let verified = state
            .verified
            .as_ref()
            .map_or(0, |v| v.checkpoint.tree.size);
        self.offered.verified(&origin, verified);
        if let Some(v) = &state.verified {
            // Cosignatures the URLs carry on the verified checkpoint travel with its answers.
            for (_, c) in views.iter().filter(|(_, c)| c.checkpoint == v.checkpoint) {
                let (o, n) = (origin.clone(), c.note.clone());
                blocking(&self.store, move |s| s.merge_signatures(&o, &n)).await?;
            }
            if let Some(w) = self.witness.clone() {
                let o = origin.clone();
                if blocking(&self.store, move |_| w.refresh(&o)).await? {
                    self.metrics.cosigned.inc();
                }
            }
        }
        // Checkpoints pushed to the witness or read from peers are views too: checked the
        // same way (a contradiction is a fork), and a larger one that the log proves extends
        // the verified tree is a sync target. One it cannot prove is not.
        let proof_url = views[0].0;
        let mut offered = Vec::new();
        for (source, c) in self.offered.views(&origin) {
            match self.check(proof_url, &c, &state).await {
                // A target only once it is proven to extend a verified tree.
                Ok(()) if c.checkpoint.tree.size > verified && state.verified.is_some() => {
                    offered.push(c);
                }
                Ok(()) => {}
                Err(Stop::Retry(why)) => {
                    tracing::warn!(%origin, %source, "offered checkpoint of size {} not usable: {why}", c.checkpoint.tree.size);
                }
                Err(other) => return Err(other),
            }
        }
        self.offered.settled(&origin, verified);
        // Finish a sync in progress first; otherwise head for the largest checkpoint seen.
        let (url, target) = match &state.target {
            Some(t) => {
                // A URL whose checkpoint covers the target; else the first (a pushed target is
                // often beyond what the log publishes, but its entries are there).
                let from = views
                    .iter()
                    .find(|(_, c)| c.checkpoint.tree.size >= t.checkpoint.tree.size)
                    .map_or(proof_url, |(i, _)| *i);
                (from, t.clone())
            }
            None => {
                // The largest checkpoint, from the first URL (in configuration order) that has
                // it: the operator's preference; an offered one is fetched from the first URL.
                let largest = views
                    .iter()
                    .map(|(_, c)| c.checkpoint.tree.size)
                    .chain(offered.iter().map(|c| c.checkpoint.tree.size))
                    .max()
                    .ok_or_else(|| Stop::Retry("no checkpoint".into()))?;
                match views
                    .iter()
                    .find(|(_, c)| c.checkpoint.tree.size == largest)
                {
                    Some((i, c)) => (*i, c.clone()),
                    None => {
                        let c = offered
                            .iter()
                            .find(|c| c.checkpoint.tree.size == largest)
                            .ok_or_else(|| Stop::Retry("no checkpoint".into()))?;
                        (proof_url, c.clone())
                    }
                }
            }
        };
        let size = target.checkpoint.tree.size;
        // An empty log is verified too, so that it answers with proven absence.
        let unverified = size > verified || state.verified.is_none();
        if size > state.size || (size == state.size && unverified) {
            self.sync(url, &target, &state).await?;
        } else if size == verified {
            self.statuses.verified(&origin);
        }
        self.metrics
            .log_size
            .get_or_create(&LogLabel {
                origin: origin.to_string(),
            })
            .set(i64::try_from(size.max(verified)).unwrap_or(i64::MAX));
        let latest = self.statuses.get(&origin).map_or(0, |s| s.latest_size);
        self.metrics
            .log_lag
            .get_or_create(&LogLabel {
                origin: origin.to_string(),
            })
            .set(i64::try_from(latest.saturating_sub(size.max(verified))).unwrap_or(0));
        if !errors.is_empty() {
            tracing::warn!(%origin, "some URLs failed: {}", errors.join("; "));
        }
        Ok(())
    }

    /// Checks a checkpoint against the verified mirror: a fork is recorded as evidence.
    async fn check(
        &mut self,
        url: usize,
        c: &StoredCheckpoint,
        state: &MirrorState,
    ) -> Result<(), Stop> {
        let Some(v) = &state.verified else {
            return Ok(());
        };
        let origin = self.origin().clone();
        let (vsize, csize) = (v.checkpoint.tree.size, c.checkpoint.tree.size);
        let view = self.view().await?;
        if csize <= vsize {
            let root = view.reader.tree_hash(csize)?;
            if root != c.checkpoint.tree.root {
                let path_b = view.reader.prefix_path(csize, vsize)?;
                let bundle = Bundle::Fork(Fork {
                    origin: origin.clone(),
                    a: note(c),
                    b: note(v),
                    at: csize,
                    path_a: Vec::new(),
                    path_b,
                });
                return self.exclude(
                    &format!("fork:{origin}:{}:{csize}", c.checkpoint.tree.root),
                    bundle,
                );
            }
            if csize == vsize && c.checkpoint.map_root != v.checkpoint.map_root {
                // Two signed map roots for one tree: the map is a function of the entries, so
                // the log's own signatures prove one of them wrong.
                let bundle = Bundle::Fork(Fork {
                    origin: origin.clone(),
                    a: note(v),
                    b: note(c),
                    at: csize,
                    path_a: Vec::new(),
                    path_b: Vec::new(),
                });
                return self.exclude(
                    &format!("fork:{origin}:map:{csize}:{}", c.checkpoint.map_root),
                    bundle,
                );
            }
            return Ok(());
        }
        // A larger checkpoint must extend the verified tree: prove its first `vsize` entries.
        let path_b = self.remote_prefix_path(url, &view, vsize, csize).await?;
        let prefix = match tlog::prefix_root(vsize, &c.checkpoint.tree, &path_b) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.fail(origin.as_str(), "invalid_proof");
                return Err(Stop::Retry(format!(
                    "{} served a consistency proof that does not verify: {e}",
                    self.log.urls[url]
                )));
            }
        };
        if prefix != v.checkpoint.tree.root {
            let bundle = Bundle::Fork(Fork {
                origin: origin.clone(),
                a: note(v),
                b: note(c),
                at: vsize,
                path_a: Vec::new(),
                path_b,
            });
            return self.exclude(
                &format!("fork:{origin}:{}:{vsize}", c.checkpoint.tree.root),
                bundle,
            );
        }
        Ok(())
    }

    /// The log's prefix path from `k` to `n`: its consistency proof, with the mirror's root of
    /// the first `k` entries in front when `k` is a power of two (the walk then checks it).
    async fn remote_prefix_path(
        &mut self,
        url: usize,
        view: &MirrorView,
        k: u64,
        n: u64,
    ) -> Result<Vec<Hash>, Stop> {
        if k == 0 || k == n {
            return Ok(Vec::new());
        }
        let mut path = self
            .remote(url)
            .await
            .map_err(Stop::Retry)?
            .consistency(k, n)
            .await
            .map_err(Stop::Retry)?;
        if k.is_power_of_two() {
            let seed = view
                .reader
                .read_hashes(&[NodeId::new(k.trailing_zeros() as u8, 0)])?;
            path.splice(0..0, seed);
        }
        Ok(path)
    }

    async fn view(&self) -> Result<MirrorView, Stop> {
        let o = self.origin().clone();
        Ok(blocking(&self.store, move |s| MirrorView::open(s, &o)).await?)
    }

    fn exclude(&self, dedupe: &str, bundle: Bundle) -> Result<(), Stop> {
        self.metrics.fail(self.origin().as_str(), bundle.kind());
        match self.evidence.record(dedupe, bundle) {
            Some(_) => Err(Stop::Excluded),
            None => Err(Stop::Retry(
                "found an inconsistency but could not prove it".into(),
            )),
        }
    }

    /// Mirrors entries up to `target`, chunk by chunk.
    async fn sync(
        &mut self,
        url: usize,
        target: &StoredCheckpoint,
        state: &MirrorState,
    ) -> Result<(), Stop> {
        let origin = self.origin().clone();
        let total = target.checkpoint.tree.size;
        if state.target.as_ref() != Some(target) {
            let (o, t) = (origin.clone(), target.clone());
            blocking(&self.store, move |s| s.set_target(&o, &t)).await?;
        }
        let first_new = state
            .verified
            .as_ref()
            .map_or(0, |v| v.checkpoint.tree.size);
        let mut start = state.size;
        // Within the memory budget: wait for a turn if other logs' syncs hold it.
        let need = crate::config::sync_mb(self.chunk.min(total.saturating_sub(start)));
        let syncs = Arc::clone(&self.syncs);
        let permit = match syncs.try_acquire_many(need) {
            Ok(p) => p,
            Err(_) => {
                self.statuses.syncing(
                    &origin,
                    format!("synced {start} of {total}; waiting for other syncs (memory_mb)"),
                );
                syncs
                    .acquire_many(need)
                    .await
                    .map_err(|_| Stop::Retry("shutting down".into()))?
            }
        };
        self.statuses
            .syncing(&origin, format!("synced {start} of {total}"));
        self.progress.start(&origin, start, total);
        let result = self.sync_chunks(url, target, &mut start).await;
        self.progress.finish(&origin);
        // What follows reads the store but holds no chunks: the next log may start.
        drop(permit);
        match result {
            Err(Stop::MapMismatch(computed)) => {
                tracing::warn!(%origin, "replayed map root {computed} differs from the signed {}", target.checkpoint.map_root);
                return self.bad_map(url, target, first_new).await;
            }
            other => other?,
        }
        self.map_searched = None;
        self.verified(target, first_new).await
    }

    /// The signed map root at `target` is not the replay of the entries: look for one path
    /// the log's own map proof binds wrongly, and keep that as evidence. The paths of the new
    /// entries `[first_new, size)` are asked first (the likely lie hides a new attestation),
    /// then the older ones; memory stays bounded by a page of entries. A wrong map that binds
    /// no path of any entry wrongly (an extra key) cannot be shown this way: the log then stays
    /// unverified, and so does not count, without evidence.
    async fn bad_map(
        &mut self,
        url: usize,
        target: &StoredCheckpoint,
        first_new: u64,
    ) -> Result<(), Stop> {
        let origin = self.origin().clone();
        let size = target.checkpoint.tree.size;
        let unproven = || {
            Stop::Retry(format!(
                "the map root {} signed at size {size} is not the replay of the entries, and no \
                 path was found that its map binds wrongly; the log does not count until it signs \
                 a consistent map",
                target.checkpoint.map_root
            ))
        };
        if self.map_searched == Some(target.checkpoint.map_root) {
            return Err(unproven());
        }
        let ranges = [(first_new, size), (0, first_new)];
        for (from, to) in ranges {
            let mut at = from;
            while at < to {
                let end = (at + 1000).min(to);
                self.statuses.syncing(
                    &origin,
                    format!(
                        "signed map root is wrong; looking for a proof at entry {at} of {size}"
                    ),
                );
                let view = self.view().await?;
                for (j, entry) in (at..end).zip(view.reader.entries(at, end)?) {
                    let Ok(a) = Attestation::decode(&entry) else {
                        continue;
                    };
                    let path = a.output_path().hash();
                    // Only the first attestation of a path is mapped.
                    if view.lookup_value(&path)?.is_none_or(|v| v.leaf_index != j) {
                        continue;
                    }
                    if let Some(bundle) = self.map_proof_against(url, &view, &path, j).await? {
                        return self.exclude(
                            &format!(
                                "bad_map_root:{origin}:{path}:{}",
                                target.checkpoint.map_root
                            ),
                            bundle,
                        );
                    }
                }
                at = end;
            }
        }
        self.map_searched = Some(target.checkpoint.map_root);
        Err(unproven())
    }

    /// Asks the log about `path`, whose first attestation is entry `first` of the mirror, and
    /// returns evidence if the log's signed map binds it wrongly.
    async fn map_proof_against(
        &mut self,
        url: usize,
        view: &MirrorView,
        path: &tally_core::StorePathHash,
        first: u64,
    ) -> Result<Option<Bundle>, Stop> {
        let key = self.log.vkey.clone();
        let remote = self.remote(url).await.map_err(Stop::Retry)?;
        let answer = remote.lookup(path).await.map_err(Stop::Retry)?;
        let Ok(signed) = SignedCheckpoint::open(answer.checkpoint.as_bytes(), &key) else {
            return Ok(None);
        };
        let c = signed.checkpoint().clone();
        let Ok(map) = answer
            .map_proof
            .verify(&MapKey::for_path(path), &c.map_root)
        else {
            return Ok(None);
        };
        let ours = view.lookup_value(path)?;
        // The entry that shows the binding wrong: ours for a hidden or late binding, the one
        // the log points at for a binding to other bytes.
        let shown = match map {
            MapAnswer::Present(v) if Some(v) == ours => return Ok(None),
            MapAnswer::Present(v) if v.leaf_index >= c.tree.size => None,
            MapAnswer::Present(v) if v.leaf_index < first => Some(v.leaf_index),
            _ => Some(first),
        };
        let entry = match shown {
            None => None,
            Some(i) if i >= c.tree.size => return Ok(None),
            Some(i) => {
                let bytes = view.entry(i)?;
                let inclusion_proof = if c.tree.size == view.reader.size() {
                    view.reader.inclusion_proof(i, c.tree.size)?
                } else {
                    remote
                        .inclusion(i, c.tree.size)
                        .await
                        .map_err(Stop::Retry)?
                };
                Some(ProvenEntry {
                    entry: bytes,
                    inclusion_proof,
                })
            }
        };
        let bundle = Bundle::BadMapRoot(BadMapRoot {
            origin: self.origin().clone(),
            checkpoint: answer.checkpoint,
            path: *path,
            map_proof: answer.map_proof,
            entry,
        });
        // Kept only if it proves its claim with nothing but the log's key.
        Ok(bundle
            .verify(std::slice::from_ref(&key))
            .is_ok()
            .then_some(bundle))
    }

    async fn sync_chunks(
        &mut self,
        url: usize,
        target: &StoredCheckpoint,
        start: &mut u64,
    ) -> Result<(), Stop> {
        let origin = self.origin().clone();
        let total = target.checkpoint.tree.size;
        if *start == total {
            // The entries are all here (an earlier round stopped before verifying).
            return self
                .append(
                    url,
                    target,
                    Chunk {
                        start: *start,
                        end: total,
                        entries: Vec::new(),
                        path_end: Vec::new(),
                    },
                )
                .await;
        }
        // Fetch the next chunk on a second connection while this one is appended.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let fetcher = tokio::spawn(fetch_chunks(
            self.log.urls[url].clone(),
            *start,
            total,
            self.chunk,
            self.peer_timeout,
            tx,
        ));
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.map_err(|f| match f {
                Failure::Down(why) => Stop::Retry(why),
                Failure::Faulty(reason) => Stop::BadUrl { url, reason },
            })?;
            let end = chunk.end;
            self.append(url, target, chunk).await?;
            self.metrics.entries_synced.inc_by(end - *start);
            *start = end;
            self.progress.advance(&origin, end);
            self.statuses
                .syncing(&origin, format!("synced {end} of {total}"));
        }
        fetcher.abort();
        if *start < total {
            return Err(Stop::Retry(format!(
                "the fetch stopped at {start} of {total}"
            )));
        }
        Ok(())
    }

    /// Appends one chunk, or records why it cannot be.
    async fn append(
        &mut self,
        url: usize,
        target: &StoredCheckpoint,
        chunk: Chunk,
    ) -> Result<(), Stop> {
        let origin = self.origin().clone();
        let total = target.checkpoint.tree.size;
        let Chunk {
            start,
            end,
            entries,
            path_end,
        } = chunk;
        let root = match tlog::prefix_root(end, &target.checkpoint.tree, &path_end) {
            Ok(r) => r,
            Err(e) => {
                return Err(Stop::BadUrl {
                    url,
                    reason: format!("a consistency proof it served does not verify: {e}"),
                });
            }
        };
        let completes = end == total;
        // Chunks commit without waiting for the disk, except the last one and one every
        // DURABLE_EVERY: a crash then loses at most that much syncing.
        let durable = completes || self.last_durable.elapsed() >= DURABLE_EVERY;
        let outcome = {
            let (o, t, e) = (origin.clone(), target.clone(), entries.clone());
            blocking(&self.store, move |s| {
                s.append(
                    &o,
                    &e,
                    Expect {
                        root,
                        completes: completes.then_some(&t),
                        durable,
                    },
                )
            })
            .await?
        };
        if durable {
            self.last_durable = std::time::Instant::now();
        }
        match outcome {
            Appended::Synced(_) | Appended::Verified(_) => Ok(()),
            Appended::RootMismatch { computed } => Err(Stop::BadUrl {
                url,
                reason: format!(
                    "entries {start}..{end} it served lead to root {} of size {}, not the signed \
                     tree of size {total}",
                    computed.root, computed.size
                ),
            }),
            Appended::MapMismatch { computed } => Err(Stop::MapMismatch(computed)),
        }
    }

    /// After `target` is verified: contradictions, disagreements, the witness.
    async fn verified(&mut self, target: &StoredCheckpoint, first_new: u64) -> Result<(), Stop> {
        let origin = self.origin().clone();
        self.statuses.verified(&origin);
        self.offered.verified(&origin, target.checkpoint.tree.size);
        let view = self.view().await?;
        let size = target.checkpoint.tree.size;

        let contradictions = {
            let o = origin.clone();
            blocking(&self.store, move |s| s.contradictions(&o)).await?
        };
        for (i, j) in &contradictions {
            let proven = |k: u64| -> Result<ProvenEntry, StoreError> {
                Ok(ProvenEntry {
                    entry: view.entry(k)?,
                    inclusion_proof: view.reader.inclusion_proof(k, size)?,
                })
            };
            let bundle = Bundle::Contradiction(Contradiction {
                origin: origin.clone(),
                checkpoint: note(target),
                first: proven(*i)?,
                second: proven(*j)?,
            });
            self.metrics.fail(origin.as_str(), "contradiction");
            self.evidence
                .record(&format!("contradiction:{origin}:{i}:{j}"), bundle);
        }
        if !contradictions.is_empty() {
            let o = origin.clone();
            blocking(&self.store, move |s| s.clear_contradictions(&o)).await?;
        }

        self.disagreements(first_new, size).await?;
        if let Some(w) = self.witness.clone() {
            match w.cosign_verified(&origin, target, &view).await? {
                Cosigned::Yes => {
                    self.metrics.cosigned.inc();
                }
                Cosigned::No => {}
                Cosigned::Fork(bundle) => self.exclude(
                    &format!("fork:{origin}:witness:{}", target.checkpoint.tree.root),
                    *bundle,
                )?,
            }
        }
        Ok(())
    }

    /// Compares the paths attested in `[from, to)` with the other logs, off the async
    /// threads: at 10^6 new entries and ten logs this is millions of map reads.
    async fn disagreements(&self, from: u64, to: u64) -> Result<(), Stop> {
        let others: Vec<KeyName> = self
            .others
            .iter()
            .filter(|o| {
                self.statuses
                    .get(o)
                    .is_none_or(|s| s.state != State::Excluded)
            })
            .cloned()
            .collect();
        if others.is_empty() || from >= to {
            return Ok(());
        }
        let origin = self.origin().clone();
        let found = blocking(&self.store, move |s| {
            let view = MirrorView::open(s, &origin)?;
            let mut answering = Vec::new();
            for o in &others {
                let other = MirrorView::open(s, o)?;
                if other.answering().is_some() {
                    answering.push(other);
                }
            }
            view.disagreements(&answering, from, to)
        })
        .await?;
        for d in found {
            let mut names: Vec<String> = d.answers.iter().map(|a| a.origin.to_string()).collect();
            names.sort();
            self.evidence.record(
                &format!("disagreement:{}:{}", d.path, names.join(":")),
                Bundle::Disagreement(d),
            );
        }
        Ok(())
    }
}

/// Entries `[start, end)` of a target, and the log's prefix path from `end` to the target.
struct Chunk {
    start: u64,
    end: u64,
    entries: Vec<Vec<u8>>,
    path_end: Vec<Hash>,
}

/// How often a sync in progress commits durably.
const DURABLE_EVERY: Duration = Duration::from_secs(2);

/// The most entry bytes in one chunk: with one chunk being appended, one waiting and one
/// being fetched, a log's sync holds at most about three times this (plus a page).
const MAX_CHUNK_BYTES: usize = 16 << 20;

/// Fetches chunks from `start` to `total` in order. A chunk end inside the tree is proven by
/// the log's consistency proof to `total`, which needs no extra hash when the end is not a
/// power of two, so ends are chosen that way.
async fn fetch_chunks(
    url: String,
    mut start: u64,
    total: u64,
    size: u64,
    timeout: Duration,
    tx: tokio::sync::mpsc::Sender<Result<Chunk, Failure>>,
) {
    let mut remote = match Remote::connect(&url, timeout).await {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Err(Failure::Down(e))).await;
            return;
        }
    };
    while start < total {
        let mut end = (start + size).min(total);
        if end < total && end.is_power_of_two() {
            end = if end - 1 > start { end - 1 } else { end + 1 };
        }
        let fetched = async {
            let mut entries = remote.entries(start, end, total, MAX_CHUNK_BYTES).await?;
            // The byte budget may end the chunk early; its end must still not be a power
            // of two.
            let mut end = start + entries.len() as u64;
            if end < total && end.is_power_of_two() && end - 1 > start {
                entries.pop();
                end -= 1;
            }
            let path_end = if end == total {
                Vec::new()
            } else {
                remote
                    .consistency(end, total)
                    .await
                    .map_err(Failure::Down)?
            };
            Ok(Chunk {
                start,
                end,
                entries,
                path_end,
            })
        }
        .await;
        let next = fetched.as_ref().map(|c| c.end).ok();
        if tx.send(fetched).await.is_err() {
            return;
        }
        match next {
            Some(end) => start = end,
            None => return,
        }
    }
}

/// A stored checkpoint's signed note as text (notes are UTF-8 by construction).
pub(crate) fn note(c: &StoredCheckpoint) -> String {
    String::from_utf8_lossy(&c.note).into_owned()
}
