//! Prometheus metrics for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldLabel {
    field: &'static str,
}

/// The cache proxy's metrics.
pub struct Metrics {
    registry: Registry,
    narinfos: Family<OutcomeLabel, Counter>,
    mismatches: Family<FieldLabel, Counter>,
    decisions: Family<OutcomeLabel, Counter>,
    nars: Family<OutcomeLabel, Counter>,
    /// Seconds to answer a narinfo request.
    pub narinfo_latency: Histogram,
    /// NAR bytes passed on to clients.
    pub nar_bytes: Counter,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tally_cache");
        let m = Metrics {
            narinfos: Family::default(),
            mismatches: Family::default(),
            decisions: Family::default(),
            nars: Family::default(),
            narinfo_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            nar_bytes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "narinfo_requests",
            "Narinfo requests by outcome: served, disputed, unknown, mismatch, not_upstream, \
             upstream_error, bad_upstream_narinfo, no_decision, bad_request",
            m.narinfos.clone(),
        );
        registry.register(
            "mismatches",
            "Upstream narinfos refused because a field differs from the trusted attestation, by field",
            m.mismatches.clone(),
        );
        registry.register(
            "decisions",
            "Decisions by source: cache (reused) or aggregator (asked)",
            m.decisions.clone(),
        );
        registry.register(
            "nar_requests",
            "NAR requests by outcome: served, not_upstream, upstream_error, bad_request",
            m.nars.clone(),
        );
        registry.register(
            "narinfo_duration_seconds",
            "Time to answer a narinfo request",
            m.narinfo_latency.clone(),
        );
        registry.register(
            "nar_bytes",
            "NAR bytes passed on to clients",
            m.nar_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a narinfo answer.
    pub fn narinfo(&self, outcome: &'static str) {
        self.narinfos.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts a field that differed.
    pub fn mismatch(&self, field: &'static str) {
        self.mismatches.get_or_create(&FieldLabel { field }).inc();
    }

    /// Counts a decision, reused or asked for.
    pub fn decision(&self, cached: bool) {
        let outcome = if cached { "cache" } else { "aggregator" };
        self.decisions
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts a NAR answer.
    pub fn nar(&self, outcome: &'static str) {
        self.nars.get_or_create(&OutcomeLabel { outcome }).inc();
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
