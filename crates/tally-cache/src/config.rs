//! The cache proxy's configuration. `examples/cache.toml` documents every option.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tally_core::trust::TrustPolicy;
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
    /// The cache's own trust policy (C2SP tlog-policy with Tally's `attest` line): the logs
    /// whose answers count, their keys, the witnesses, and the quorums.
    pub policy_file: PathBuf,
    /// Where the logs' answers come from. Unset: the logs themselves, at the URLs the policy
    /// lists.
    #[serde(default)]
    pub aggregator: Option<AggregatorSource>,
    /// `enforce` (the default) serves only admitted narinfos; `report-only` serves what the
    /// upstreams serve and logs and counts what the gate would have refused.
    #[serde(default)]
    pub mode: Mode,
    /// Extra CA certificates (PEM) to trust for `https://` upstreams, aggregators and logs,
    /// besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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
    /// Connections served at once; more are closed as they arrive.
    #[serde(default = "tally_proto::serve::default_max_connections")]
    pub max_connections: usize,
    /// Seconds a connection may stay silent before it is closed.
    #[serde(default = "tally_proto::serve::default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
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

/// Where the logs' answers come from, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AggregatorAt {
    /// An aggregator over gRPC.
    Remote(Address),
    /// An aggregator in this process, from this config file.
    InProcess(PathBuf),
    /// The logs themselves, at the policy's URLs.
    Logs,
}

/// What the gate does with a narinfo it would refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Refuse it.
    #[default]
    Enforce,
    /// Serve it as the upstream has it (not re-signed), and log and count the refusal.
    ReportOnly,
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
    /// What one peer may hold: connections and how long they may stay silent.
    pub fn limits(&self) -> Result<tally_proto::serve::Limits, CacheError> {
        tally_proto::serve::Limits::from_config(self.max_connections, self.idle_timeout_secs)
            .map_err(|(option, problem)| CacheError::Config {
                option: option.into(),
                problem,
            })
    }

    /// Checks values that parse but cannot work, naming the option.
    pub fn validate(&self) -> Result<AggregatorAt, CacheError> {
        let bad = |option: &str, problem: String| {
            Err(CacheError::Config {
                option: option.to_owned(),
                problem,
            })
        };
        self.limits()?;
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
        let Some(aggregator) = &self.aggregator else {
            return Ok(AggregatorAt::Logs);
        };
        match (&aggregator.url, &aggregator.config) {
            (Some(url), None) => match url.parse::<Address>() {
                Ok(a) => Ok(AggregatorAt::Remote(a)),
                Err(e) => bad("aggregator.url", e.to_string()),
            },
            (None, Some(path)) => Ok(AggregatorAt::InProcess(path.clone())),
            _ => bad(
                "aggregator",
                "set exactly one of aggregator.url (a remote aggregator) and aggregator.config \
                 (run one in process), or leave [aggregator] out to ask the logs directly"
                    .into(),
            ),
        }
    }

    /// Reads the trust policy, and checks that the logs can be asked when there is no
    /// aggregator.
    pub fn trust_policy(&self, at: &AggregatorAt) -> Result<TrustPolicy, CacheError> {
        let bad = |problem: String| CacheError::Config {
            option: "policy_file".into(),
            problem,
        };
        let text = std::fs::read(&self.policy_file)
            .map_err(|e| bad(format!("{}: {e}", self.policy_file.display())))?;
        let trust = TrustPolicy::parse(&text)
            .map_err(|e| bad(format!("{}: {e}", self.policy_file.display())))?;
        if *at == AggregatorAt::Logs
            && let Some(log) = trust.logs().iter().find(|l| l.urls.is_empty())
        {
            return Err(bad(format!(
                "{}: log {} has no URL, and there is no [aggregator] to ask; add its URL to its \
                 `log` line, or set aggregator.url",
                self.policy_file.display(),
                log.origin()
            )));
        }
        for log in trust.logs() {
            for url in &log.urls {
                url.parse::<Address>()
                    .map_err(|e| bad(format!("log {}: {e}", log.origin())))?;
            }
        }
        Ok(trust)
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
