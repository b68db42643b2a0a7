//! Prometheus metrics for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A log label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabel {
    /// The log's origin.
    pub origin: String,
}

/// A log and a kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The log's origin (empty for evidence about several logs).
    pub origin: String,
    /// What kind of failure or evidence.
    pub kind: String,
}

/// The aggregator's metrics.
pub struct Metrics {
    registry: Registry,
    /// Each log's verified size.
    pub log_size: Family<LogLabel, Gauge>,
    /// Each log's lag: newest checkpoint seen minus verified size.
    pub log_lag: Family<LogLabel, Gauge>,
    /// Verification failures, by log and kind.
    pub failures: Family<KindLabel, Counter>,
    /// Evidence stored, by log and kind.
    pub evidence: Family<KindLabel, Counter>,
    /// Paths answered.
    pub queried_paths: Counter,
    /// Seconds per Query request.
    pub query_latency: Histogram,
    /// Checkpoints the witness cosigned.
    pub cosigned: Counter,
    /// Entries mirrored and verified.
    pub entries_synced: Counter,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tally_aggregator");
        let m = Metrics {
            log_size: Family::default(),
            log_lag: Family::default(),
            failures: Family::default(),
            evidence: Family::default(),
            queried_paths: Counter::default(),
            query_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            cosigned: Counter::default(),
            entries_synced: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "log_size",
            "Verified size of each followed log",
            m.log_size.clone(),
        );
        registry.register(
            "log_lag",
            "Newest checkpoint seen minus verified size",
            m.log_lag.clone(),
        );
        registry.register(
            "verification_failures",
            "Verification failures by log and kind",
            m.failures.clone(),
        );
        registry.register(
            "evidence",
            "Evidence stored, by log and kind",
            m.evidence.clone(),
        );
        registry.register("queried_paths", "Paths answered", m.queried_paths.clone());
        registry.register(
            "query_duration_seconds",
            "Time per Query request",
            m.query_latency.clone(),
        );
        registry.register(
            "cosigned",
            "Checkpoints the witness cosigned",
            m.cosigned.clone(),
        );
        registry.register(
            "entries_synced",
            "Entries mirrored and verified",
            m.entries_synced.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a failure.
    pub fn fail(&self, origin: &str, kind: &str) {
        self.failures
            .get_or_create(&KindLabel {
                origin: origin.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
