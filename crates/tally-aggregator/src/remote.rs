//! Talking to one URL of a followed log: its checkpoint, entries and consistency proofs,
//! over gRPC (`http://`, `https://`, `unix:`) or over tlog-tiles (`tiles+http://`,
//! `tiles+https://`: the daemon's HTTP port, a static directory behind a web server, or a
//! mirror; see [`crate::tile_source`]).
//!
//! A log (or whatever answers at its URL) may be hostile. Every call has a deadline, a page
//! of entries may hold no more entries than asked and no entry larger than an attestation
//! can be, and a fetch stops at a byte budget, so a peer can cost at most that much memory
//! and time before it is given up on.

use std::future::Future;
use std::time::Duration;

use tally_core::attestation::MAX_ENCODED_LEN;
use tally_core::{Hash, VerifyingKey};
use tally_proto::client::{self, Address, BearerToken, Client};
use tally_proto::v1;
use tally_store::StoredCheckpoint;

use crate::tile_source::TileSource;

/// The most entries asked for in one `GetEntries` call (the log's limit).
const PAGE: u64 = 1000;

/// Why entries could not be had from a URL.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It did not answer, or not in time: try again later.
    Down(String),
    /// It answered with what no honest log sends: skip the URL for a while.
    Faulty(String),
}

/// `call`, or an error naming `what` if it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    what: impl FnOnce() -> String,
    call: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(format!("{}: no answer in {limit:?}", what())))
}

/// One URL of a log.
pub(crate) enum Remote {
    /// The log's gRPC API.
    Grpc(Grpc),
    /// The log's tlog-tiles.
    Tiles(TileSource),
}

/// The scheme prefix of a tlog-tiles URL.
pub(crate) const TILES_PREFIX: &str = "tiles+";

impl Remote {
    /// Connects; each call may then take up to `timeout`.
    pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<Remote, String> {
        match url.strip_prefix(TILES_PREFIX) {
            Some(base) => Ok(Remote::Tiles(TileSource::new(base, timeout)?)),
            None => Ok(Remote::Grpc(Grpc::connect(url, timeout).await?)),
        }
    }

    /// The log's latest checkpoint, verified with its key.
    pub(crate) async fn checkpoint(
        &mut self,
        key: &VerifyingKey,
    ) -> Result<StoredCheckpoint, Failure> {
        match self {
            Remote::Grpc(g) => g.checkpoint(key).await,
            Remote::Tiles(t) => t.checkpoint(key).await,
        }
    }

    /// Entries from `start`, up to `end` or until they hold `max_bytes` (at least one page or
    /// bundle is read), of a tree of `total` entries.
    pub(crate) async fn entries(
        &mut self,
        start: u64,
        end: u64,
        total: u64,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, Failure> {
        match self {
            Remote::Grpc(g) => g.entries(start, end, max_bytes).await,
            Remote::Tiles(t) => t.entries(start, end, total, max_bytes).await,
        }
    }

    /// The prefix path from `old` to `new` (the consistency proof, for an `old` that is not
    /// a power of two).
    pub(crate) async fn consistency(&mut self, old: u64, new: u64) -> Result<Vec<Hash>, String> {
        match self {
            Remote::Grpc(g) => g.consistency(old, new).await,
            Remote::Tiles(t) => t.prefix_path(old, new).await,
        }
    }

    /// The log's answer about a path (gRPC only: tlog-tiles has no lookups).
    pub(crate) async fn lookup(
        &mut self,
        path: &tally_core::StorePathHash,
    ) -> Result<tally_core::answer::LogAnswer, String> {
        match self {
            Remote::Grpc(g) => g.lookup(path).await,
            Remote::Tiles(_) => Err("lookups need the log's gRPC API, not tlog-tiles".into()),
        }
    }

    /// The log's inclusion proof for entry `index` in its tree of `size`.
    pub(crate) async fn inclusion(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<tally_core::tlog::InclusionProof, String> {
        match self {
            Remote::Grpc(g) => g.inclusion(index, size).await,
            Remote::Tiles(t) => t.inclusion(index, size).await,
        }
    }
}

/// A gRPC connection to one URL of a log.
pub(crate) struct Grpc {
    client: Client,
    /// The longest one call may take, a page of entries included.
    timeout: Duration,
}

impl Grpc {
    /// Connects; each call may then take up to `timeout`.
    async fn connect(url: &str, timeout: Duration) -> Result<Grpc, String> {
        let address: Address = url
            .parse()
            .map_err(|e: client::ClientError| e.to_string())?;
        let client = within(timeout, || format!("connecting to {url}"), async {
            client::connect(&address, BearerToken::default())
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        Ok(Grpc { client, timeout })
    }

    /// The log's latest checkpoint, verified with its key. One that does not verify is the
    /// URL's fault (or a stale key in the config), not a network failure.
    async fn checkpoint(&mut self, key: &VerifyingKey) -> Result<StoredCheckpoint, Failure> {
        let note = within(self.timeout, || "GetCheckpoint".into(), async {
            self.client
                .get_checkpoint(v1::GetCheckpointRequest {})
                .await
                .map_err(|s| format!("GetCheckpoint: {}", s.message()))
        })
        .await
        .map_err(Failure::Down)?
        .into_inner()
        .note;
        tally_core::SignedCheckpoint::open(&note, key)
            .map_err(|e| Failure::Faulty(format!("its checkpoint does not verify: {e}")))?;
        StoredCheckpoint::from_note(note).map_err(|e| Failure::Faulty(e.to_string()))
    }

    /// Entries from `start`, in pages, up to `end` or until they hold `max_bytes` (at least
    /// one page is read).
    async fn entries(
        &mut self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, Failure> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut at = start;
        while at < end && (at == start || bytes < max_bytes) {
            let page_end = (at + PAGE).min(end);
            let limit = self.timeout;
            let page = tokio::time::timeout(limit, self.page(at, page_end))
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::Down(format!(
                        "GetEntries {at}..{page_end}: not all sent in {limit:?}"
                    )))
                })?;
            bytes += page.iter().map(Vec::len).sum::<usize>();
            at = page_end;
            out.extend(page);
        }
        Ok(out)
    }

    /// Entries `[at, end)`, one `GetEntries` call, checked as they arrive.
    async fn page(&mut self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Failure> {
        let down = |s: tonic::Status| {
            // Our decoder's limit: no honest page of entries comes near it.
            if s.code() == tonic::Code::OutOfRange && s.message().contains("too large") {
                Failure::Faulty(format!("GetEntries sent a page too large: {}", s.message()))
            } else {
                Failure::Down(format!("GetEntries: {}", s.message()))
            }
        };
        let mut stream = self
            .client
            .get_entries(v1::GetEntriesRequest { start, end })
            .await
            .map_err(down)?
            .into_inner();
        let mut out = Vec::new();
        let mut at = start;
        // Read no further than asked: a stream that goes on is dropped, not drained.
        while at < end {
            let Some(page) = stream.message().await.map_err(down)? else {
                return Err(Failure::Down(format!(
                    "GetEntries stopped at {at} of {end}"
                )));
            };
            if page.start != at {
                return Err(Failure::Faulty(format!(
                    "GetEntries returned entries from {} where {at} was due",
                    page.start
                )));
            }
            if page.entries.len() as u64 > end - at {
                return Err(Failure::Faulty(format!(
                    "GetEntries returned {} entries from {at} where {} were asked",
                    page.entries.len(),
                    end - at
                )));
            }
            if let Some((i, e)) = (at..)
                .zip(&page.entries)
                .find(|(_, e)| e.len() > MAX_ENCODED_LEN)
            {
                return Err(Failure::Faulty(format!(
                    "entry {i} is {} bytes, more than any attestation ({MAX_ENCODED_LEN})",
                    e.len()
                )));
            }
            at += page.entries.len() as u64;
            out.extend(page.entries);
        }
        Ok(out)
    }

    /// The log's answer about a path, as it sent it (unchecked).
    async fn lookup(
        &mut self,
        path: &tally_core::StorePathHash,
    ) -> Result<tally_core::answer::LogAnswer, String> {
        let r = within(self.timeout, || format!("Lookup {path}"), async {
            self.client
                .lookup(v1::LookupRequest {
                    path: path.to_string(),
                })
                .await
                .map_err(|s| format!("Lookup {path}: {}", s.message()))
        })
        .await?
        .into_inner();
        tally_core::answer::LogAnswer::try_from(&r).map_err(|e| format!("Lookup {path}: {e}"))
    }

    async fn inclusion(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<tally_core::tlog::InclusionProof, String> {
        let p = within(
            self.timeout,
            || format!("GetInclusionProof {index}@{size}"),
            async {
                self.client
                    .get_inclusion_proof(v1::GetInclusionProofRequest {
                        index,
                        tree_size: size,
                    })
                    .await
                    .map_err(|s| format!("GetInclusionProof {index}@{size}: {}", s.message()))
            },
        )
        .await?
        .into_inner();
        tally_core::tlog::InclusionProof::try_from(&p).map_err(|e| e.to_string())
    }

    /// The log's consistency proof from `old` to `new`.
    async fn consistency(&mut self, old: u64, new: u64) -> Result<Vec<Hash>, String> {
        let p = within(
            self.timeout,
            || format!("GetConsistencyProof {old}→{new}"),
            async {
                self.client
                    .get_consistency_proof(v1::GetConsistencyProofRequest {
                        old_size: old,
                        new_size: new,
                    })
                    .await
                    .map_err(|s| format!("GetConsistencyProof {old}→{new}: {}", s.message()))
            },
        )
        .await?
        .into_inner();
        if (p.old_size, p.new_size) != (old, new) {
            return Err(format!(
                "asked for a proof {old}→{new}, got {}→{}",
                p.old_size, p.new_size
            ));
        }
        tally_core::tlog::ConsistencyProof::try_from(&p)
            .map(|p| p.hashes)
            .map_err(|e| e.to_string())
    }
}
