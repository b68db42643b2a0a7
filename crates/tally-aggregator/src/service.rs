//! The `tally.v1.Aggregator` gRPC service.

use std::sync::Arc;
use std::time::Instant;

use tally_core::bearer::RequiredToken;
use tally_core::index::PathAnswer;
use tally_core::policy::Policy;
use tally_core::{KeyName, StorePathHash};
use tally_proto::v1;
use tally_proto::v1::aggregator_server::Aggregator;
use tally_store::{EvidenceSummary, MirrorStore, StoreError};
use tonic::{Request, Response, Status};

use crate::config::LogConfig;
use crate::metrics::Metrics;
use crate::query::{self, MAX_PATHS, QueryError};
use crate::status::Statuses;

/// Evidence summaries per `ListEvidence` page, at most.
const EVIDENCE_PAGE: usize = 1000;

/// State shared by the gRPC service and the HTTP routes.
#[derive(Clone)]
pub struct Shared {
    pub(crate) store: Arc<MirrorStore>,
    pub(crate) statuses: Arc<Statuses>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) logs: Arc<Vec<LogConfig>>,
    pub(crate) policy: Policy,
    pub(crate) witness: Option<Arc<crate::witness::Witness>>,
    pub(crate) reports: Arc<crate::reports::Reports>,
    /// Who may define and delete named reports.
    pub(crate) admin: Option<RequiredToken>,
}

impl Shared {
    pub(crate) fn origins(&self) -> Vec<KeyName> {
        self.logs.iter().map(|l| l.origin.clone()).collect()
    }

    /// Runs a blocking store call off the async threads.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || f(&s))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
    }
}

impl Shared {
    /// Every followed log's answer about `path`, with proofs, from the mirrors as they stand:
    /// what an in-process consumer counts under its own policy. Blocking: call it off the
    /// async threads.
    pub fn answer_with_proofs(&self, path: &StorePathHash) -> Result<PathAnswer, String> {
        let mut answers = query::answer(
            &self.store,
            &self.statuses,
            &self.origins(),
            &self.policy,
            &[path.to_string()],
            true,
        )
        .map_err(|e| e.to_string())?;
        answers.pop().ok_or_else(|| "no answer".to_owned())
    }

    /// A followed log's status, as `ListLogs` and the dashboard show it.
    pub(crate) fn log_status(&self, l: &LogConfig) -> Result<v1::LogStatus, StoreError> {
        let state = self.store.state(&l.origin)?;
        let cosigned = self.store.cosigned(&l.origin)?;
        let status = self.statuses.get(&l.origin);
        Ok(v1::LogStatus {
            origin: l.origin.to_string(),
            name: l.name.clone().unwrap_or_default(),
            urls: l.urls.clone(),
            state: status
                .as_ref()
                .map_or("syncing", |s| s.state.name())
                .to_owned(),
            detail: status
                .as_ref()
                .map(|s| s.detail.clone())
                .unwrap_or_default(),
            verified_size: state
                .verified
                .as_ref()
                .map_or(0, |c| c.checkpoint.tree.size),
            synced_size: state.size,
            latest_size: status.as_ref().map_or(0, |s| s.latest_size),
            last_success_unix: status
                .as_ref()
                .and_then(|s| s.last_success)
                .map_or(0, |t| i64::try_from(t).unwrap_or(0)),
            url_states: status
                .as_ref()
                .map(|s| s.url_states.clone())
                .unwrap_or_default(),
            verified: state.verified.map(|c| v1::Checkpoint { note: c.note }),
            cosigned: cosigned.map(|c| v1::Checkpoint { note: c.note }),
        })
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!("{e}");
    Status::internal(e.to_string())
}

fn summary(r: &EvidenceSummary) -> v1::EvidenceSummary {
    v1::EvidenceSummary {
        id: r.id,
        kind: r.kind.clone(),
        origins: r.origins.clone(),
        summary: r.summary.clone(),
        created_unix: i64::try_from(r.created).unwrap_or(0),
    }
}

#[tonic::async_trait]
impl Aggregator for Shared {
    async fn query(
        &self,
        request: Request<v1::QueryRequest>,
    ) -> Result<Response<v1::QueryResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        if r.paths.len() > MAX_PATHS {
            return Err(Status::invalid_argument(format!(
                "{} paths in one query; ask for at most {MAX_PATHS} at a time",
                r.paths.len()
            )));
        }
        let policy = match r.policy.trim() {
            "" => self.policy.clone(),
            text => text
                .parse::<Policy>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        };
        policy
            .check(&self.origins())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let n = r.paths.len() as u64;
        let applied = policy.to_string();
        let results = self
            .blocking(move |s| {
                query::answer(
                    &s.store,
                    &s.statuses,
                    &s.origins(),
                    &policy,
                    &r.paths,
                    r.proofs,
                )
                .map_err(|e| match e {
                    QueryError::Path(p) => {
                        Status::invalid_argument(format!("not a store path or hash part: {p}"))
                    }
                    QueryError::Store(e) => internal(e),
                })
            })
            .await?;
        self.metrics.queried_paths.inc_by(n);
        self.metrics
            .query_latency
            .observe(start.elapsed().as_secs_f64());
        Ok(Response::new(v1::QueryResponse {
            policy: applied,
            results: results.iter().map(Into::into).collect(),
        }))
    }

    async fn list_logs(
        &self,
        _request: Request<v1::ListLogsRequest>,
    ) -> Result<Response<v1::ListLogsResponse>, Status> {
        let logs = self
            .blocking(|s| {
                s.logs
                    .iter()
                    .map(|l| s.log_status(l).map_err(internal))
                    .collect::<Result<Vec<_>, Status>>()
            })
            .await?;
        Ok(Response::new(v1::ListLogsResponse { logs }))
    }

    async fn list_evidence(
        &self,
        request: Request<v1::ListEvidenceRequest>,
    ) -> Result<Response<v1::ListEvidenceResponse>, Status> {
        let r = request.into_inner();
        let limit = match r.limit {
            0 => EVIDENCE_PAGE,
            n => (n as usize).min(EVIDENCE_PAGE),
        };
        let (evidence, more) = self
            .blocking(move |s| {
                let all = s.store.list_evidence().map_err(internal)?;
                let mut matching = all.iter().filter(|e| {
                    e.id > r.after_id && (r.origin.is_empty() || e.origins.contains(&r.origin))
                });
                let page: Vec<_> = matching.by_ref().take(limit).map(summary).collect();
                Ok((page, matching.next().is_some()))
            })
            .await?;
        Ok(Response::new(v1::ListEvidenceResponse { evidence, more }))
    }

    async fn get_evidence(
        &self,
        request: Request<v1::GetEvidenceRequest>,
    ) -> Result<Response<v1::Evidence>, Status> {
        let id = request.into_inner().id;
        let record = self
            .blocking(move |s| s.store.evidence(id).map_err(internal))
            .await?
            .ok_or_else(|| Status::not_found(format!("no evidence #{id}")))?;
        Ok(Response::new(v1::Evidence {
            summary: Some(summary(&record.about)),
            bundle_json: record.bundle,
        }))
    }

    async fn get_cosigned_checkpoint(
        &self,
        request: Request<v1::GetCosignedCheckpointRequest>,
    ) -> Result<Response<v1::Checkpoint>, Status> {
        let origin = KeyName::new(&request.into_inner().origin)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let o = origin.clone();
        let note = self
            .blocking(move |s| s.store.cosigned(&o).map_err(internal))
            .await?
            .ok_or_else(|| Status::not_found(format!("no cosigned checkpoint of {origin}")))?;
        Ok(Response::new(v1::Checkpoint { note: note.note }))
    }
}
