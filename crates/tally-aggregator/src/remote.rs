//! Talking to one URL of a followed log: its checkpoint, entries and consistency proofs.

use tally_core::{Hash, VerifyingKey};
use tally_proto::client::{self, Address, BearerToken, Client};
use tally_proto::v1;
use tally_store::StoredCheckpoint;

/// The most entries asked for in one `GetEntries` call (the log's limit).
const PAGE: u64 = 1000;

/// A connection to one URL of a log.
pub(crate) struct Remote {
    client: Client,
}

impl Remote {
    /// Connects.
    pub(crate) async fn connect(url: &str) -> Result<Remote, String> {
        let address: Address = url
            .parse()
            .map_err(|e: client::ClientError| e.to_string())?;
        let client = client::connect(&address, BearerToken::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Remote { client })
    }

    /// The log's latest checkpoint, verified with its key.
    pub(crate) async fn checkpoint(
        &mut self,
        key: &VerifyingKey,
    ) -> Result<StoredCheckpoint, String> {
        let note = self
            .client
            .get_checkpoint(v1::GetCheckpointRequest {})
            .await
            .map_err(|s| format!("GetCheckpoint: {}", s.message()))?
            .into_inner()
            .note;
        tally_core::SignedCheckpoint::open(&note, key)
            .map_err(|e| format!("its checkpoint does not verify: {e}"))?;
        StoredCheckpoint::from_note(note).map_err(|e| e.to_string())
    }

    /// Entries `[start, end)`, in pages.
    pub(crate) async fn entries(&mut self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut at = start;
        while at < end {
            let page_end = (at + PAGE).min(end);
            let mut stream = self
                .client
                .get_entries(v1::GetEntriesRequest {
                    start: at,
                    end: page_end,
                })
                .await
                .map_err(|s| format!("GetEntries {at}..{page_end}: {}", s.message()))?
                .into_inner();
            while let Some(page) = stream
                .message()
                .await
                .map_err(|s| format!("GetEntries: {}", s.message()))?
            {
                if page.start != at {
                    return Err(format!(
                        "GetEntries returned entries from {} where {at} was due",
                        page.start
                    ));
                }
                at += page.entries.len() as u64;
                out.extend(page.entries);
            }
            if at != page_end {
                return Err(format!("GetEntries stopped at {at} of {page_end}"));
            }
        }
        Ok(out)
    }

    /// The log's answer about a path, as it sent it (unchecked).
    pub(crate) async fn lookup(
        &mut self,
        path: &tally_core::StorePathHash,
    ) -> Result<tally_core::answer::LogAnswer, String> {
        let r = self
            .client
            .lookup(v1::LookupRequest {
                path: path.to_string(),
            })
            .await
            .map_err(|s| format!("Lookup {path}: {}", s.message()))?
            .into_inner();
        tally_core::answer::LogAnswer::try_from(&r).map_err(|e| format!("Lookup {path}: {e}"))
    }

    /// The log's inclusion proof for entry `index` in its tree of `size`.
    pub(crate) async fn inclusion(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<tally_core::tlog::InclusionProof, String> {
        let p = self
            .client
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                index,
                tree_size: size,
            })
            .await
            .map_err(|s| format!("GetInclusionProof {index}@{size}: {}", s.message()))?
            .into_inner();
        tally_core::tlog::InclusionProof::try_from(&p).map_err(|e| e.to_string())
    }

    /// The log's consistency proof from `old` to `new`.
    pub(crate) async fn consistency(&mut self, old: u64, new: u64) -> Result<Vec<Hash>, String> {
        let p = self
            .client
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: old,
                new_size: new,
            })
            .await
            .map_err(|s| format!("GetConsistencyProof {old}→{new}: {}", s.message()))?
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
