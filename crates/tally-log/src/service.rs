//! The `tally.v1.Log` gRPC service.

use std::sync::Arc;
use std::time::Instant;

use prost::Message as _;
use tally_core::map::{MapAnswer, MapKey};
use tally_core::{Attestation, StorePath, StorePathHash};
use tally_proto::v1;
use tally_proto::v1::log_server::Log;
use tally_store::{LogStore, Outcome};
use tonic::{Code, Request, Response, Status};

use crate::auth::WriteAccess;
use crate::error::store_status;
use crate::metrics::{Metrics, Reason};
use crate::sequencer::{Sequencer, SubmitError};

/// The most entries one `GetEntries` request may ask for.
pub const MAX_ENTRIES_PER_REQUEST: u64 = 1000;

/// Entries per `GetEntries` message: the size of a tlog-tiles entry bundle.
const PAGE: usize = 256;

/// The service, as served on one listener.
#[derive(Clone)]
pub struct LogService {
    pub(crate) store: Arc<LogStore>,
    pub(crate) published: Arc<crate::publish::Published>,
    pub(crate) sequencer: Sequencer,
    pub(crate) access: WriteAccess,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) batch_size: usize,
}

impl LogService {
    fn reject(&self, reason: Reason, status: Status) -> Status {
        self.metrics.reject(reason);
        status
    }

    fn reader(&self) -> Result<tally_store::LogReader, Status> {
        self.store.read().map_err(store_status)
    }
}

/// Parses a Lookup query: an output path or its hash part.
fn lookup_key(query: &str) -> Result<MapKey, Status> {
    let hash = if query.starts_with('/') {
        StorePath::parse(query).map(|p| p.hash())
    } else {
        query.parse::<StorePathHash>()
    };
    hash.map(|h| MapKey::for_path(&h))
        .map_err(|e| Status::invalid_argument(format!("lookup {query:?}: {e}")))
}

#[tonic::async_trait]
impl Log for LogService {
    async fn submit(
        &self,
        request: Request<v1::SubmitRequest>,
    ) -> Result<Response<v1::SubmitResponse>, Status> {
        let start = Instant::now();
        self.access
            .check(request.metadata())
            .map_err(|(reason, status)| self.reject(reason, status))?;
        let raw = request.into_inner().attestations;
        if raw.is_empty() {
            return Err(self.reject(Reason::Invalid, Status::invalid_argument("no attestations")));
        }
        if raw.len() > self.batch_size {
            return Err(self.reject(
                Reason::Invalid,
                Status::invalid_argument(format!(
                    "{} attestations in one request; this log takes at most {} (its batch_size)",
                    raw.len(),
                    self.batch_size
                )),
            ));
        }
        let attestations = raw
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                Attestation::decode(bytes).map_err(|e| {
                    self.reject(
                        Reason::Invalid,
                        Status::invalid_argument(format!("attestation {i}: {e}")),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let submitted = attestations.clone();
        let result = self.sequencer.submit(attestations).await;
        self.metrics
            .submit_latency
            .observe(start.elapsed().as_secs_f64());
        match result {
            Ok(accepted) => Ok(Response::new(v1::SubmitResponse {
                results: accepted
                    .outcomes
                    .iter()
                    .map(|o| v1::SubmitResult {
                        index: o.index(),
                        duplicate: matches!(o, Outcome::Duplicate(_)),
                    })
                    .collect(),
                checkpoint: Some(v1::Checkpoint {
                    note: accepted.checkpoint.note,
                }),
            })),
            Err(SubmitError::Conflicts(conflicts)) => {
                let details = v1::SubmitConflicts {
                    conflicts: conflicts
                        .iter()
                        .map(|c| v1::SubmitConflict {
                            position: c.position as u32,
                            output_path: c.existing.output_path().to_string(),
                            existing_index: c.index,
                            existing_nar_hash: c.existing.nar_hash().to_string(),
                            submitted_nar_hash: submitted[c.position].nar_hash().to_string(),
                        })
                        .collect(),
                };
                let first = &details.conflicts[0];
                let message = format!(
                    "{} is already attested with NAR hash {} (entry {}); this submission has {}{}; nothing was written",
                    first.output_path,
                    first.existing_nar_hash,
                    first.existing_index,
                    first.submitted_nar_hash,
                    match details.conflicts.len() {
                        1 => String::new(),
                        n => format!(" ({} more conflicts in this request)", n - 1),
                    }
                );
                Err(self.reject(
                    Reason::Conflict,
                    Status::with_details(
                        Code::AlreadyExists,
                        message,
                        details.encode_to_vec().into(),
                    ),
                ))
            }
            Err(SubmitError::Storage(e)) => Err(self.reject(
                Reason::Unavailable,
                Status::unavailable(format!(
                    "the log could not commit: {e}; nothing was written, retry"
                )),
            )),
            Err(SubmitError::DiskFull(e)) => Err(self.reject(
                Reason::DiskFull,
                Status::resource_exhausted(format!("the log could not commit: {e}; retry later")),
            )),
            Err(SubmitError::Stopped) => Err(self.reject(
                Reason::Unavailable,
                Status::unavailable("the log is shutting down; retry"),
            )),
        }
    }

    async fn get_checkpoint(
        &self,
        _request: Request<v1::GetCheckpointRequest>,
    ) -> Result<Response<v1::Checkpoint>, Status> {
        let view = self.published.view().map_err(store_status)?;
        Ok(Response::new(v1::Checkpoint {
            note: view.note.clone(),
        }))
    }

    type GetEntriesStream = tokio_stream::Iter<std::vec::IntoIter<Result<v1::EntryPage, Status>>>;

    async fn get_entries(
        &self,
        request: Request<v1::GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let v1::GetEntriesRequest { start, end } = request.into_inner();
        if end < start || end - start > MAX_ENTRIES_PER_REQUEST {
            return Err(Status::out_of_range(format!(
                "entries {start}..{end}: ask for at most {MAX_ENTRIES_PER_REQUEST} at a time"
            )));
        }
        let entries = self.reader()?.entries(start, end).map_err(store_status)?;
        // One message per entry would cost a frame, a wake-up and a decode each.
        let pages: Vec<_> = entries
            .chunks(PAGE)
            .zip((start..).step_by(PAGE))
            .map(|(chunk, first)| {
                Ok(v1::EntryPage {
                    start: first,
                    entries: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(tokio_stream::iter(pages)))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProof>, Status> {
        let r = request.into_inner();
        let proof = self
            .reader()?
            .inclusion_proof(r.index, r.tree_size)
            .map_err(store_status)?;
        Ok(Response::new(proof.into()))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProof>, Status> {
        let r = request.into_inner();
        let proof = self
            .reader()?
            .consistency_proof(r.old_size, r.new_size)
            .map_err(store_status)?;
        Ok(Response::new(proof.into()))
    }

    async fn lookup(
        &self,
        request: Request<v1::LookupRequest>,
    ) -> Result<Response<v1::LookupResponse>, Status> {
        let key = lookup_key(&request.into_inner().path)?;
        // Proofs against the published checkpoint, from the snapshot it was signed over.
        let view = self.published.view().map_err(store_status)?;
        let reader = &view.reader;
        let map_proof = reader.map_proof(&key).map_err(store_status)?;
        let root = view.checkpoint.map_root;
        let (entry, inclusion_proof) = match map_proof.verify(&key, &root) {
            Ok(MapAnswer::Present(value)) => {
                let index = value.leaf_index;
                let size = view.checkpoint.tree.size;
                let mut data = reader.entries(index, index + 1).map_err(store_status)?;
                let proof = reader.inclusion_proof(index, size).map_err(store_status)?;
                (
                    data.pop().map(|data| v1::Entry { index, data }),
                    Some(proof.into()),
                )
            }
            Ok(MapAnswer::Absent) => (None, None),
            Err(e) => {
                tracing::error!("own map proof does not verify: {e}");
                return Err(Status::internal(format!("map proof does not verify: {e}")));
            }
        };
        Ok(Response::new(v1::LookupResponse {
            checkpoint: Some(v1::Checkpoint {
                note: view.note.clone(),
            }),
            map_proof: Some(map_proof.into()),
            entry,
            inclusion_proof,
        }))
    }
}
