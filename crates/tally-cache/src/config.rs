//! The cache proxy's configuration. `examples/cache.toml` documents every option.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tally_core::policy::Policy;
use tally_proto::client::Address;

use crate::CacheError;
use crate::upstream::BinaryCacheUrl;

/// `tally cache serve --config PATH`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address Nix reaches the cache on (HTTP).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The binary caches narinfos and NARs come from, tried in order: `https://…`,
    /// `http://…` or `file:///…`.
    pub upstreams: Vec<BinaryCacheUrl>,
    /// Where decisions come from.
    pub aggregator: AggregatorSource,
    /// The policy paths must meet. Unset: the aggregator's default.
    #[serde(default)]
    pub policy: Option<Policy>,
    /// The key narinfos are re-signed with (Nix format, mode 0600); its public half goes in
    /// the clients' `trusted-public-keys`.
    pub secret_key_file: PathBuf,
    /// `Priority` in `/nix-cache-info`; lower is tried first by Nix.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Seconds a decision is reused before the aggregator is asked again.
    #[serde(default = "default_decision_ttl_secs")]
    pub decision_ttl_secs: u64,
    /// Decisions kept at most.
    #[serde(default = "default_max_decisions")]
    pub max_decisions: usize,
    /// Seconds to wait for an upstream's narinfo, or for each read of a NAR.
    #[serde(default = "default_upstream_timeout_secs")]
    pub upstream_timeout_secs: u64,
}

/// The aggregator: reached over gRPC, or run in this process from its own config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorSource {
    /// A remote aggregator: `http://host:port` or `unix:/path`.
    #[serde(default)]
    pub url: Option<String>,
    /// An aggregator config file to run in process.
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// Which aggregator, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AggregatorAt {
    /// Over gRPC.
    Remote(Address),
    /// In this process, from this config file.
    InProcess(PathBuf),
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7422))
}
fn default_priority() -> u32 {
    30
}
fn default_decision_ttl_secs() -> u64 {
    60
}
fn default_max_decisions() -> usize {
    100_000
}
fn default_upstream_timeout_secs() -> u64 {
    20
}

impl Config {
    /// Checks values that parse but cannot work, naming the option.
    pub fn validate(&self) -> Result<AggregatorAt, CacheError> {
        let bad = |option: &str, problem: String| {
            Err(CacheError::Config {
                option: option.to_owned(),
                problem,
            })
        };
        if self.upstreams.is_empty() {
            return bad(
                "upstreams",
                "no upstream caches: add e.g. \"https://cache.nixos.org\"".into(),
            );
        }
        if self.decision_ttl_secs == 0 {
            return bad("decision_ttl_secs", "must be at least 1".into());
        }
        if self.upstream_timeout_secs == 0 {
            return bad("upstream_timeout_secs", "must be at least 1".into());
        }
        if self.max_decisions == 0 {
            return bad("max_decisions", "must be at least 1".into());
        }
        match (&self.aggregator.url, &self.aggregator.config) {
            (Some(url), None) => match url.parse::<Address>() {
                Ok(a) => Ok(AggregatorAt::Remote(a)),
                Err(e) => bad("aggregator.url", e.to_string()),
            },
            (None, Some(path)) => Ok(AggregatorAt::InProcess(path.clone())),
            _ => bad(
                "aggregator",
                "set exactly one of aggregator.url (a remote aggregator) and aggregator.config \
                 (run one in process)"
                    .into(),
            ),
        }
    }

    /// How long decisions are reused.
    pub fn decision_ttl(&self) -> Duration {
        Duration::from_secs(self.decision_ttl_secs)
    }

    /// The upstream timeout.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs)
    }
}
