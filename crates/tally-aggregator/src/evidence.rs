//! Storing evidence: every bundle is verified with the logs' keys before it is kept, so the
//! aggregator never publishes a claim it cannot prove; logs proven to fork or serve bad data
//! are excluded from voting.

use std::sync::Arc;

use tally_core::VerifyingKey;
use tally_core::evidence::{Bundle, BundleFile};
use tally_store::MirrorStore;

use crate::metrics::{KindLabel, Metrics};
use crate::status::Statuses;

/// Kinds of evidence after which a log's votes stop counting.
/// Entries that do not match a signed root are not evidence (a mirror or the network may
/// have made them), so `bad_entries`, which older versions recorded, excludes nothing.
pub(crate) const EXCLUDING: [&str; 2] = ["fork", "bad_map_root"];

/// Where evidence goes.
pub(crate) struct EvidenceSink {
    pub(crate) store: Arc<MirrorStore>,
    pub(crate) statuses: Arc<Statuses>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) keys: Vec<VerifyingKey>,
}

impl EvidenceSink {
    /// Verifies and stores a bundle once per `dedupe` key. Returns its id, or `None` if it
    /// does not verify (then it is logged and dropped).
    pub(crate) fn record(&self, dedupe: &str, bundle: Bundle) -> Option<u64> {
        let file = BundleFile::new(bundle);
        let proven = match file.verify(&self.keys) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    "not keeping {} evidence that does not verify: {e}",
                    file.bundle.kind()
                );
                return None;
            }
        };
        let kind = file.bundle.kind();
        let origins: Vec<String> = file
            .bundle
            .origins()
            .iter()
            .map(ToString::to_string)
            .collect();
        let json = match serde_json::to_string_pretty(&file) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!("encoding evidence: {e}");
                return None;
            }
        };
        let (id, new) =
            match self
                .store
                .add_evidence(dedupe, kind, origins.clone(), proven.claim.clone(), json)
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("storing evidence: {e}");
                    return None;
                }
            };
        if new {
            tracing::warn!(id, kind, "evidence: {}", proven.claim);
            if kind == "disagreement" {
                self.metrics.disagreements.inc();
            }
            // Counted for each log the evidence names (a disagreement names two), so that
            // every series belongs to a log and an alert on one log sees all its evidence.
            for origin in &origins {
                self.metrics
                    .evidence
                    .get_or_create(&KindLabel {
                        origin: origin.clone(),
                        kind: kind.into(),
                    })
                    .inc();
            }
        }
        if EXCLUDING.contains(&kind) {
            for m in &proven.misbehaving {
                self.statuses
                    .exclude(m, format!("{kind} evidence #{id}: {}", proven.claim));
            }
        }
        Some(id)
    }
}
