//! Prometheus metrics for `/metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a submission was refused.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Reason {
    /// A different attestation for an already-attested output path.
    Conflict,
    /// A malformed or non-canonical attestation, or too many in one request.
    Invalid,
    /// No or a wrong bearer token.
    Unauthenticated,
    /// Submits are not allowed on this listener.
    PermissionDenied,
    /// The message exceeded `max_message_bytes`.
    TooLarge,
    /// Storage failed.
    Unavailable,
    /// The disk is (nearly) full.
    DiskFull,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: Reason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabel {
    witness: String,
    outcome: &'static str,
}

/// The log daemon's metrics.
pub struct Metrics {
    registry: Registry,
    /// Entries in the log.
    pub tree_size: Gauge,
    /// Batches committed.
    pub batches: Counter,
    /// Attestations appended.
    pub appended: Counter,
    /// Seconds from a submit's arrival to its answer.
    pub submit_latency: Histogram,
    rejected: Family<ReasonLabel, Counter>,
    /// Attestations submitted from the hook's spool.
    pub spool_drained: Counter,
    /// Spool files moved to `quarantine/`.
    pub spool_quarantined: Counter,
    /// The size of the checkpoint last sent to the witnesses.
    pub witnessed_size: Gauge,
    witness_requests: Family<WitnessLabel, Counter>,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tally_log");
        let tree_size = Gauge::default();
        let batches = Counter::default();
        let appended = Counter::default();
        let submit_latency = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let rejected = Family::<ReasonLabel, Counter>::default();
        let spool_drained = Counter::default();
        let spool_quarantined = Counter::default();
        registry.register(
            "spool_quarantined",
            "Spool files that could not be submitted, moved to quarantine/",
            spool_quarantined.clone(),
        );
        let witnessed_size = Gauge::default();
        let witness_requests = Family::<WitnessLabel, Counter>::default();
        registry.register(
            "witnessed_size",
            "Size of the checkpoint last sent to the witnesses",
            witnessed_size.clone(),
        );
        registry.register(
            "witness_requests",
            "add-checkpoint requests by witness and outcome: cosigned, conflict, failed",
            witness_requests.clone(),
        );
        registry.register("tree_size", "Entries in the log", tree_size.clone());
        registry.register("batches", "Batches committed", batches.clone());
        registry.register("appended", "Attestations appended", appended.clone());
        registry.register(
            "submit_duration_seconds",
            "Time from a submit's arrival to its answer",
            submit_latency.clone(),
        );
        registry.register(
            "submissions_rejected",
            "Submissions refused, by reason",
            rejected.clone(),
        );
        registry.register(
            "spool_drained",
            "Attestations submitted from the post-build hook's spool",
            spool_drained.clone(),
        );
        Metrics {
            registry,
            tree_size,
            batches,
            appended,
            submit_latency,
            rejected,
            spool_drained,
            spool_quarantined,
            witnessed_size,
            witness_requests,
        }
    }

    /// Counts an `add-checkpoint` request to `witness`.
    pub fn witness(&self, witness: &str, outcome: &'static str) {
        self.witness_requests
            .get_or_create(&WitnessLabel {
                witness: witness.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts a refused submission.
    pub fn reject(&self, reason: Reason) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
