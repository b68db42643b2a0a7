//! Following a log over C2SP tlog-tiles: its checkpoint, entry bundles and hash tiles, read
//! over plain HTTP from the daemon's port, a directory behind any web server or CDN, or a
//! mirror.
//!
//! Nothing fetched is trusted. The checkpoint must verify with the log's key. Entries are
//! appended only if they lead to the root that the log's signed checkpoint proves for their
//! end, and that proof is computed here from hash tiles: a tile that lies yields a path that
//! does not lead to the signed root, so the chunk is refused. Bundles are fetched several at
//! a time over keep-alive connections; every response has a size limit and a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt as _;
use tally_core::attestation::MAX_ENCODED_LEN;
use tally_core::tiles::{TILE_HEIGHT, TILE_WIDTH, TileKind, TilePath, bundle_entries};
use tally_core::tlog::{self, HashReader, NodeId};
use tally_core::{Hash, VerifyingKey};
use tally_store::StoredCheckpoint;

use crate::remote::Failure;

/// Bundles (or tiles) fetched at once.
const IN_FLIGHT: usize = 16;

/// The largest checkpoint accepted, in bytes.
const MAX_CHECKPOINT: usize = 64 << 10;

/// A log's tlog-tiles, at a base URL.
pub(crate) struct TileSource {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl TileSource {
    /// The tiles under `base` (e.g. `https://cdn.example/log`); each request may take up to
    /// `timeout`.
    pub(crate) fn new(base: &str, timeout: Duration) -> Result<TileSource, String> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "tiles+{base}: a tlog-tiles URL is tiles+http://… or tiles+https://…"
            ));
        }
        Ok(TileSource {
            base: base.trim_end_matches('/').to_owned(),
            http: tally_proto::client::http_client(timeout).map_err(|e| e.to_string())?,
            timeout,
        })
    }

    /// GETs `path` under the base, refusing a body over `limit` bytes.
    async fn get(&self, path: &str, limit: usize) -> Result<Vec<u8>, Failure> {
        let url = format!("{}/{path}", self.base);
        let fetch = async {
            let mut response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| Failure::Down(format!("{url}: {e}")))?;
            if !response.status().is_success() {
                return Err(Failure::Down(format!("{url}: {}", response.status())));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| Failure::Down(format!("{url}: {e}")))?
            {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::Faulty(format!(
                        "{url} is larger than any {path} can be ({limit} bytes)"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Down(format!(
                    "{url}: no answer in {:?}",
                    self.timeout
                )))
            })
    }

    /// The checkpoint, verified with the log's key.
    pub(crate) async fn checkpoint(&self, key: &VerifyingKey) -> Result<StoredCheckpoint, Failure> {
        let note = self.get("checkpoint", MAX_CHECKPOINT).await?;
        tally_core::SignedCheckpoint::open(&note, key)
            .map_err(|e| Failure::Faulty(format!("its checkpoint does not verify: {e}")))?;
        StoredCheckpoint::from_note(note).map_err(|e| Failure::Faulty(e.to_string()))
    }

    /// Entries from `start`, up to `end` or until they hold `max_bytes` (at least one
    /// bundle), from the bundles of a tree of `total` entries.
    pub(crate) async fn entries(
        &self,
        start: u64,
        end: u64,
        total: u64,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, Failure> {
        let first = start / TILE_WIDTH;
        let last = end.div_ceil(TILE_WIDTH);
        let mut bundles = futures_util::stream::iter(first..last)
            .map(|index| async move {
                let tile =
                    TilePath::for_tree(TileKind::Entries, index, total).ok_or_else(|| {
                        Failure::Down(format!(
                            "entry bundle {index} is beyond the tree of {total}"
                        ))
                    })?;
                let limit = tile.width() as usize * (2 + MAX_ENCODED_LEN);
                let bytes = self.get(&tile.to_string(), limit).await?;
                Ok::<_, Failure>((tile, bytes))
            })
            .buffered(IN_FLIGHT);
        let mut out = Vec::new();
        let mut bytes_in = 0;
        while let Some(fetched) = bundles.next().await {
            let (tile, bytes) = fetched?;
            let entries =
                bundle_entries(&bytes).map_err(|e| Failure::Faulty(format!("{tile}: {e}")))?;
            if entries.len() as u64 != tile.width() {
                return Err(Failure::Faulty(format!(
                    "{tile} holds {} entries, not {}",
                    entries.len(),
                    tile.width()
                )));
            }
            let from = tile.index * TILE_WIDTH;
            for (i, e) in (from..).zip(entries) {
                if i >= start && i < end {
                    bytes_in += e.len();
                    out.push(e.to_vec());
                }
            }
            if bytes_in >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// The prefix path from `k` to `n`, computed from the hash tiles of the tree of `n`.
    pub(crate) async fn prefix_path(&self, k: u64, n: u64) -> Result<Vec<Hash>, String> {
        let tiles = self.tiles_for(n, |r| tlog::prefix_path(k, n, r)).await?;
        tlog::prefix_path(k, n, &tiles).map_err(|e| e.to_string())
    }

    /// The inclusion proof of entry `index` in the tree of `size`, from its hash tiles.
    pub(crate) async fn inclusion(
        &self,
        index: u64,
        size: u64,
    ) -> Result<tlog::InclusionProof, String> {
        let tiles = self
            .tiles_for(size, |r| tlog::InclusionProof::generate(index, size, r))
            .await?;
        tlog::InclusionProof::generate(index, size, &tiles).map_err(|e| e.to_string())
    }

    /// Fetches the hash tiles of the tree of `size` that `compute` reads. Which nodes a
    /// proof needs depends only on the sizes, so a first run with placeholder hashes finds
    /// them.
    async fn tiles_for<T, E>(
        &self,
        size: u64,
        compute: impl Fn(&Recorder) -> Result<T, E>,
    ) -> Result<TileHashes, String> {
        let recorder = Recorder::default();
        let _ = compute(&recorder);
        let wanted: BTreeSet<TilePath> = recorder
            .ids
            .into_inner()
            .iter()
            .filter_map(|id| tile_of(id, size))
            .collect();
        let fetched: Vec<Result<(TilePath, Vec<u8>), Failure>> = futures_util::stream::iter(wanted)
            .map(|tile| async move {
                let bytes = self
                    .get(&tile.to_string(), tile.width() as usize * 32)
                    .await?;
                Ok((tile, bytes))
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        let mut tiles = BTreeMap::new();
        for f in fetched {
            let (tile, bytes) = f.map_err(|f| match f {
                Failure::Down(e) | Failure::Faulty(e) => e,
            })?;
            if bytes.len() as u64 != tile.width() * 32 {
                return Err(format!(
                    "{tile} is {} bytes, not {}",
                    bytes.len(),
                    tile.width() * 32
                ));
            }
            let TileKind::Hash { level } = tile.kind else {
                continue;
            };
            tiles.insert((level, tile.index), bytes);
        }
        Ok(TileHashes { tiles })
    }
}

/// The tile holding the hashes that node `id` is computed from, in the tree of `size`.
fn tile_of(id: &NodeId, size: u64) -> Option<TilePath> {
    let level = id.level / TILE_HEIGHT;
    let below = id.level % TILE_HEIGHT;
    let first = id.index << below;
    TilePath::for_tree(TileKind::Hash { level }, first / TILE_WIDTH, size)
}

/// A [`HashReader`] that records what is asked and answers with placeholders.
#[derive(Default)]
struct Recorder {
    ids: std::cell::RefCell<Vec<NodeId>>,
}

impl HashReader for Recorder {
    type Error = tlog::ProofError;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        self.ids.borrow_mut().extend_from_slice(ids);
        Ok(vec![Hash::ZERO; ids.len()])
    }
}

/// Hash tiles, by (tile level, index), as a [`HashReader`]: a node between tile levels is
/// hashed up from the tile level below it.
struct TileHashes {
    tiles: BTreeMap<(u8, u64), Vec<u8>>,
}

/// Why a proof could not be computed from the tiles.
#[derive(Debug, thiserror::Error)]
enum TileReadError {
    /// The proof's sizes do not fit.
    #[error(transparent)]
    Proof(#[from] tlog::ProofError),
    /// A node's hashes are not in the tiles fetched.
    #[error("the tiles lack node {0:?}")]
    Missing(NodeId),
}

impl HashReader for TileHashes {
    type Error = TileReadError;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        ids.iter()
            .map(|id| {
                let level = id.level / TILE_HEIGHT;
                let below = id.level % TILE_HEIGHT;
                let first = id.index << below;
                let count = 1u64 << below;
                let tile = self
                    .tiles
                    .get(&(level, first / TILE_WIDTH))
                    .ok_or(TileReadError::Missing(*id))?;
                let offset = (first % TILE_WIDTH) as usize;
                let mut hashes: Vec<Hash> = (0..count as usize)
                    .map(|i| {
                        let at = (offset + i) * 32;
                        tile.get(at..at + 32).map(|b| {
                            let mut h = [0u8; 32];
                            h.copy_from_slice(b);
                            Hash(h)
                        })
                    })
                    .collect::<Option<_>>()
                    .ok_or(TileReadError::Missing(*id))?;
                while hashes.len() > 1 {
                    hashes = hashes
                        .chunks(2)
                        .map(|pair| tlog::node_hash(&pair[0], &pair[1]))
                        .collect();
                }
                Ok(hashes[0])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::replay::Replay;

    /// Tiles cut from a real tree answer every proof as the tree itself does.
    #[test]
    fn proofs_from_tiles_match_the_tree() {
        let entries: Vec<Vec<u8>> = (0..70_000u64).map(|i| i.to_be_bytes().to_vec()).collect();
        let replay = Replay::of(&entries);
        for size in [1u64, 255, 256, 300, 65_536, 65_537, 70_000] {
            let mut tiles = BTreeMap::new();
            let mut level = 0u8;
            while size >> (u32::from(level) * 8) > 0 {
                let nodes = size >> (u32::from(level) * 8);
                for index in 0..nodes.div_ceil(TILE_WIDTH) {
                    let width = (nodes - index * TILE_WIDTH).min(TILE_WIDTH);
                    let hashes = replay
                        .read_hashes(
                            &(0..width)
                                .map(|i| NodeId::new(level * 8, index * TILE_WIDTH + i))
                                .collect::<Vec<_>>(),
                        )
                        .unwrap();
                    tiles.insert(
                        (level, index),
                        hashes.iter().flat_map(|h| h.0).collect::<Vec<u8>>(),
                    );
                }
                level += 1;
            }
            let from_tiles = TileHashes { tiles };
            for k in [0, 1, size / 3, size.saturating_sub(1), size] {
                assert_eq!(
                    tlog::prefix_path(k, size, &from_tiles).unwrap(),
                    replay.prefix_path(k, size).unwrap(),
                    "{k} of {size}"
                );
            }
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    tlog::InclusionProof::generate(index, size, &from_tiles).unwrap(),
                    tlog::InclusionProof::generate(index, size, &replay).unwrap(),
                );
            }
        }
    }
}
