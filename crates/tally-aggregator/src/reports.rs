//! Reproducibility reports: what the followed logs say about every path of a closure or an
//! SBOM (docs/reports.md).
//!
//! A *named* report is defined by uploading its paths to the dashboard. The definition is
//! stored; the classification is recomputed whenever a log's verified size or the set of
//! excluded logs changes, so a report follows the logs as they grow.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use tally_core::index::PathAnswer;
use tally_core::report::{PathList, Reproducibility, Source, Summary};
use tally_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::query::{self, QueryError};
use crate::service::Shared;
use crate::status::State;
use crate::status::now;

/// One path in a report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// The output path.
    pub path: String,
    /// Its class.
    pub class: Reproducibility,
    /// The logs that attest it.
    pub attested_by: Vec<String>,
    /// When disputed: each NAR attested and by whom.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<RowCandidate>,
}

/// One NAR attested for a disputed path.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RowCandidate {
    /// The NAR hash.
    pub nar_hash: String,
    /// The NAR size.
    pub nar_size: u64,
    /// The references, as basenames.
    pub references: Vec<String>,
    /// The logs attesting it.
    pub origins: Vec<String>,
}

impl Row {
    /// The row for one answered path.
    pub fn of(a: &PathAnswer) -> Row {
        let class = a.reproducibility;
        let mut candidates = Vec::new();
        if class == Reproducibility::Disputed {
            candidates.extend(a.candidates().into_iter().map(|c| RowCandidate {
                nar_hash: c.nar_hash.to_string(),
                nar_size: c.nar_size,
                references: c.references.iter().map(|r| r.basename()).collect(),
                origins: c.origins.iter().map(ToString::to_string).collect(),
            }));
        }
        Row {
            path: a.path.clone(),
            class,
            attested_by: a.attested_by().map(ToString::to_string).collect(),
            candidates,
        }
    }
}

/// A report: its paths' classes and the summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Its name.
    pub name: String,
    /// Where its paths came from.
    pub source: Source,
    /// Derivation paths in the input, skipped.
    pub skipped_derivations: usize,
    /// The followed logs, as of the computation.
    pub logs: Vec<String>,
    /// When its paths were uploaded, seconds since 1970 (0 for an ad hoc report).
    pub uploaded_unix: u64,
    /// When it was computed, seconds since 1970.
    pub computed_unix: u64,
    /// Counts and percentages.
    pub summary: Summary,
    /// Every path, in input order.
    #[serde(skip)]
    pub rows: Vec<Row>,
}

impl Report {
    /// A report from answered paths.
    pub fn new(
        name: String,
        list: &PathList,
        uploaded_unix: u64,
        logs: Vec<String>,
        answers: &[PathAnswer],
    ) -> Report {
        let rows: Vec<Row> = answers.iter().map(Row::of).collect();
        Report {
            name,
            source: list.source,
            skipped_derivations: list.skipped_derivations,
            logs,
            uploaded_unix,
            computed_unix: now(),
            summary: rows.iter().map(|r| r.class).collect(),
            rows,
        }
    }

    /// The rows of one class (or all), a page at a time.
    pub fn page(&self, class: Option<Reproducibility>, page: usize, per_page: usize) -> Page<'_> {
        let matching = class.map_or(self.summary.total(), |c| self.summary.count(c));
        let pages = usize::try_from(matching)
            .unwrap_or(usize::MAX)
            .div_ceil(per_page)
            .max(1);
        let page = page.clamp(1, pages);
        let rows = self
            .rows
            .iter()
            .filter(|r| class.is_none_or(|c| r.class == c))
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        Page { page, pages, rows }
    }
}

/// One page of a report's rows.
#[derive(Debug, serde::Serialize)]
pub struct Page<'a> {
    /// This page, from 1.
    pub page: usize,
    /// How many pages there are.
    pub pages: usize,
    /// Its rows.
    pub rows: Vec<&'a Row>,
}

/// A named report's stored definition.
#[derive(serde::Serialize, serde::Deserialize)]
struct Definition {
    source: Source,
    paths: Vec<String>,
    skipped_derivations: usize,
    uploaded_unix: u64,
}

impl Definition {
    fn list(&self) -> Result<PathList, ReportError> {
        let paths = self
            .paths
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, tally_core::StorePathError>>()
            .map_err(|e| ReportError::Stored(e.to_string()))?;
        Ok(PathList {
            paths,
            source: self.source,
            skipped_derivations: self.skipped_derivations,
        })
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The name is not usable in a URL.
    #[error(
        "report name {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with . (for example nixos-24.11-iso)"
    )]
    Name(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A query failed.
    #[error("{0}")]
    Query(String),
    /// A stored definition does not decode.
    #[error("stored report definition: {0}")]
    Stored(String),
}

impl From<QueryError> for ReportError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Store(e) => ReportError::Store(e),
            QueryError::Path(p) => ReportError::Query(p),
        }
    }
}

/// Checks a report name: it is a URL path segment and a metric label.
pub fn check_name(name: &str) -> Result<(), ReportError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ReportError::Name(name.to_owned()))
    }
}

/// The named reports, as last computed.
#[derive(Default)]
pub struct Reports {
    computed: RwLock<BTreeMap<String, Arc<Report>>>,
    /// Held while a definition is stored, deleted or recomputed, so that a refresh never
    /// brings back a deleted report or an older definition.
    changing: Mutex<()>,
}

impl Reports {
    /// A report by name.
    pub fn get(&self, name: &str) -> Option<Arc<Report>> {
        self.computed.read().ok()?.get(name).cloned()
    }

    /// Every report, by name.
    pub fn all(&self) -> Vec<Arc<Report>> {
        self.computed
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Keeps a computed report.
    fn insert(&self, report: Report, shared: &Shared) -> Arc<Report> {
        let report = Arc::new(report);
        shared.metrics.report(&report.name, &report.summary);
        if let Ok(mut m) = self.computed.write() {
            m.insert(report.name.clone(), Arc::clone(&report));
        }
        report
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Shared {
    /// Classifies `list` against the mirrors as they stand.
    pub fn report(
        &self,
        name: String,
        list: &PathList,
        uploaded_unix: u64,
    ) -> Result<Report, ReportError> {
        let origins = self.origins();
        let paths: Vec<String> = list.paths.iter().map(ToString::to_string).collect();
        // One answer for all paths: every vote from the same mirror views.
        let verdicts = query::answer(
            &self.store,
            &self.statuses,
            &origins,
            &self.policy,
            &paths,
            false,
        )?;
        let logs = origins.iter().map(ToString::to_string).collect();
        Ok(Report::new(name, list, uploaded_unix, logs, &verdicts))
    }

    /// Stores a named report's paths and computes it. Returns the report, and whether the name
    /// is new.
    pub fn define_report(
        &self,
        name: &str,
        list: &PathList,
    ) -> Result<(Arc<Report>, bool), ReportError> {
        check_name(name)?;
        let definition = Definition {
            source: list.source,
            paths: list.paths.iter().map(ToString::to_string).collect(),
            skipped_derivations: list.skipped_derivations,
            uploaded_unix: now(),
        };
        let report = self.report(name.to_owned(), list, definition.uploaded_unix)?;
        let bytes =
            serde_json::to_vec(&definition).map_err(|e| ReportError::Stored(e.to_string()))?;
        let new = self.store.put_report(name, &bytes)?;
        Ok((self.reports.insert(report, self), new))
    }

    /// Deletes a named report. Returns whether it existed.
    pub fn delete_report(&self, name: &str) -> Result<bool, ReportError> {
        let _changing = self.reports.lock();
        let existed = self.store.delete_report(name)?;
        if let Ok(mut m) = self.reports.computed.write() {
            m.remove(name);
        }
        self.metrics.forget_report(name);
        Ok(existed)
    }

    /// Recomputes every stored report. A definition that cannot be read is logged and
    /// skipped, so it cannot take the others down.
    fn refresh_reports(&self) -> Result<(), ReportError> {
        let _changing = self.reports.lock();
        for (name, bytes) in self.store.reports()? {
            let computed = serde_json::from_slice::<Definition>(&bytes)
                .map_err(|e| ReportError::Stored(format!("{name}: {e}")))
                .and_then(|d| {
                    let list = d
                        .list()
                        .map_err(|e| ReportError::Stored(format!("{name}: {e}")))?;
                    self.report(name.clone(), &list, d.uploaded_unix)
                });
            match computed {
                Ok(report) => {
                    self.reports.insert(report, self);
                }
                Err(e) => tracing::error!(report = name, "not refreshing report: {e}"),
            }
        }
        Ok(())
    }

    /// Whether a report of this name is stored but not computed yet (just after start-up).
    pub fn report_pending(&self, name: &str) -> bool {
        self.reports.get(name).is_none() && self.store.has_report(name).unwrap_or(false)
    }

    /// What reports depend on: each log's verified size and whether it votes; `None` while
    /// a voting log is part-way through a sync (it votes from nowhere until it is done).
    fn report_inputs(&self) -> Option<Vec<(u64, bool)>> {
        self.logs
            .iter()
            .map(|l| {
                let state = self.store.state(&l.origin).ok()?;
                let verified = state.verified.map_or(0, |c| c.checkpoint.tree.size);
                let votes = self
                    .statuses
                    .get(&l.origin)
                    .is_some_and(|s| s.state != State::Excluded);
                (!votes || state.size == verified).then_some((verified, votes))
            })
            .collect()
    }

    /// Keeps the named reports up to date until shutdown.
    pub(crate) async fn refresh_reports_forever(
        self,
        every: std::time::Duration,
        shutdown: CancellationToken,
    ) {
        let mut last = None;
        loop {
            let s = self.clone();
            let inputs = tokio::task::spawn_blocking(move || s.report_inputs())
                .await
                .ok()
                .flatten();
            // Until every voting log stands at a verified checkpoint, keep what was computed
            // (but compute once at start-up, so reports appear).
            let wanted = match (&inputs, &last) {
                (Some(i), Some(l)) => i != l,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            if wanted {
                let s = self.clone();
                match tokio::task::spawn_blocking(move || s.refresh_reports()).await {
                    Ok(Ok(())) => last = Some(inputs.unwrap_or_default()),
                    Ok(Err(e)) => tracing::error!("refreshing reports: {e}"),
                    Err(e) => tracing::error!("refreshing reports: {e}"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
