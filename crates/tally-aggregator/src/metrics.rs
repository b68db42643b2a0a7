//! Prometheus metrics for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tally_core::report::{Reproducibility, Summary};

/// A log label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabel {
    /// The log's origin.
    pub origin: String,
}

/// A log and a kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The log's origin.
    pub origin: String,
    /// What kind of failure or evidence.
    pub kind: String,
}

/// A report and a class label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportLabel {
    /// The report's name.
    pub report: String,
    /// reproduced, disputed, single or unknown.
    pub class: String,
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
    /// Evidence stored, by kind, counted for each log it names.
    pub evidence: Family<KindLabel, Counter>,
    /// Paths answered.
    pub queried_paths: Counter,
    /// Seconds per Query request.
    pub query_latency: Histogram,
    /// Checkpoints the witness cosigned.
    pub cosigned: Counter,
    /// Entries mirrored and verified.
    pub entries_synced: Counter,
    /// Disagreement evidence kept.
    pub disagreements: Gauge,
    /// Each named report's paths by class.
    pub report_paths: Family<ReportLabel, Gauge>,
    /// Each named report's share of paths by class, in percent.
    pub report_percent: Family<ReportLabel, Gauge<f64, AtomicU64>>,
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
            disagreements: Gauge::default(),
            report_paths: Family::default(),
            report_percent: Family::default(),
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
            "Evidence stored, by kind, counted for each log it names (a disagreement names two)",
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
        registry.register(
            "disagreements",
            "Disagreement evidence kept: a path and two logs that attest different NARs for it",
            m.disagreements.clone(),
        );
        registry.register(
            "report_paths",
            "Paths of each named report by class",
            m.report_paths.clone(),
        );
        registry.register(
            "report_percent",
            "Share of each named report's paths by class, in percent",
            m.report_percent.clone(),
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

    /// Publishes a named report's summary.
    pub fn report(&self, name: &str, summary: &Summary) {
        for class in Reproducibility::ALL {
            let label = ReportLabel {
                report: name.into(),
                class: class.name().into(),
            };
            self.report_paths
                .get_or_create(&label)
                .set(i64::try_from(summary.count(class)).unwrap_or(i64::MAX));
            self.report_percent
                .get_or_create(&label)
                .set(summary.percent(class));
        }
    }

    /// Removes a deleted report's series.
    pub fn forget_report(&self, name: &str) {
        for class in Reproducibility::ALL {
            let label = ReportLabel {
                report: name.into(),
                class: class.name().into(),
            };
            self.report_paths.remove(&label);
            self.report_percent.remove(&label);
        }
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
