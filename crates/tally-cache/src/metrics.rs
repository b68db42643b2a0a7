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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: String,
}

/// The cache proxy's metrics.
pub struct Metrics {
    registry: Registry,
    narinfos: Family<OutcomeLabel, Counter>,
    mismatches: Family<FieldLabel, Counter>,
    decisions: Family<OutcomeLabel, Counter>,
    nars: Family<OutcomeLabel, Counter>,
    would_refuse: Family<OutcomeLabel, Counter>,
    rejected: Family<OriginLabel, Counter>,
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
            would_refuse: Family::default(),
            rejected: Family::default(),
            narinfo_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            nar_bytes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "narinfo_requests",
            "Narinfo requests by outcome: served, report_only, disputed, unknown, mismatch, \
             not_upstream, upstream_error, bad_upstream_narinfo, no_decision, bad_request",
            m.narinfos.clone(),
        );
        registry.register(
            "mismatches",
            "Upstream narinfos refused because a field differs from the trusted attestation, by field",
            m.mismatches.clone(),
        );
        registry.register(
            "decisions",
            "Decisions: cache (reused) or asked (answers fetched and checked)",
            m.decisions.clone(),
        );
        registry.register(
            "report_only_refusals",
            "In report-only mode: narinfos served that the gate would have refused, by reason",
            m.would_refuse.clone(),
        );
        registry.register(
            "rejected_answers",
            "Log answers that failed a check (signature, proof, witness quorum), by log: a sign of \
             a forged or rewritten answer, or of a log serving a view no witness saw",
            m.rejected.clone(),
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
        let outcome = if cached { "cache" } else { "asked" };
        self.decisions
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts a narinfo served in report-only mode that the gate would have refused.
    pub fn would_refuse(&self, outcome: &'static str) {
        self.would_refuse
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts an answer from `origin` that failed a check.
    pub fn rejected(&self, origin: &str) {
        self.rejected
            .get_or_create(&OriginLabel {
                origin: origin.to_owned(),
            })
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
