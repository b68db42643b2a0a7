//! The aggregator's configuration. `examples/aggregator.toml` documents every option.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tally_core::policy::Policy;
use tally_core::trust::TrustPolicy;
use tally_core::{KeyName, VerifyingKey};
use tally_proto::client::Address;

use crate::AggregatorError;

/// `tally aggregate serve --config PATH`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The logs to follow (or give them with `policy_file`).
    #[serde(default)]
    pub logs: Vec<LogConfig>,
    /// A trust policy file (C2SP tlog-policy with Tally's lines) whose logs to follow, instead
    /// of `[[logs]]` tables; its `attest` line is the default policy unless `policy` is set.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    /// Where the aggregator's database lives.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Address for gRPC and HTTP (metrics, health, witness, evidence).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Seconds between polls of each log.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// The policy queries use unless they name one (default: `policy_file`'s `attest` line,
    /// or a majority).
    #[serde(default)]
    pub policy: Option<Policy>,
    /// The witness's signing key (Nix format, mode 0600). Unset: no witness.
    #[serde(default)]
    pub witness_key_file: Option<PathBuf>,
    /// The database's page cache, in MiB.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: usize,
    /// MiB kept free on the file system holding the database: a commit that would start
    /// with less is refused (the sync waits) until space is freed.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
    /// Connections served at once; more are closed as they arrive.
    #[serde(default = "tally_proto::serve::default_max_connections")]
    pub max_connections: usize,
    /// Seconds a connection may stay silent before it is closed.
    #[serde(default = "tally_proto::serve::default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// The memory the aggregator may use, in MiB: its page cache (`cache_mb`) plus what the
    /// syncs in progress hold. Syncs beyond what fits wait their turn.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// The longest one call to a followed log may take (a page of entries included), in
    /// seconds: a log that answers slower is retried later.
    #[serde(default = "default_peer_timeout_secs")]
    pub peer_timeout_secs: u64,
    /// Entries fetched and committed per chunk while syncing.
    #[serde(default = "default_sync_chunk")]
    pub sync_chunk: u64,
    /// A file holding the bearer token that may define and delete named reports (mode
    /// 0600). Unset: reports cannot be changed over HTTP.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Other aggregators whose cosigned checkpoints to compare with this one's view
    /// (gossip): each a monitoring prefix, read as `<peer>/<hex SHA-256 of the
    /// origin>/checkpoint`, which Tally aggregators serve. (Witnesses that serve that path
    /// can be listed too; litewitness v0.5.0 does not.)
    #[serde(default)]
    pub peers: Vec<String>,
    /// Seconds between reads of the peers.
    #[serde(default = "default_gossip_interval_secs")]
    pub gossip_interval_secs: u64,
}

/// One followed log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Its origin.
    pub origin: KeyName,
    /// Its public key: a note verifier key or a Nix public key, named after the origin.
    pub vkey: VerifyingKey,
    /// Where to reach it: http://host:port or unix:/path, tried in order. All must serve
    /// the same log; different views are a fork.
    pub urls: Vec<String>,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
}

fn default_data_dir() -> PathBuf {
    "/var/lib/tally/aggregator".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7421))
}
fn default_poll_interval_secs() -> u64 {
    10
}
fn default_memory_mb() -> u64 {
    1024
}

fn default_peer_timeout_secs() -> u64 {
    60
}

fn default_min_free_mb() -> u64 {
    tally_store::DEFAULT_KEEP_FREE >> 20
}

fn default_cache_mb() -> usize {
    256
}
fn default_gossip_interval_secs() -> u64 {
    60
}
fn default_sync_chunk() -> u64 {
    50_000
}

/// What a sync holds per entry of its chunk, in bytes: the chunk being fetched, the one
/// waiting and the one being appended (raw and decoded), and the write transaction's dirty
/// pages (about one map page per new key).
pub const SYNC_BYTES_PER_ENTRY: u64 = 8 << 10;

/// What the process needs besides its cache and syncs, in MiB.
pub const BASE_MB: u64 = 96;

/// What a sync of chunks of `entries` may hold, in MiB (at least 1).
pub fn sync_mb(entries: u64) -> u32 {
    let mb = entries
        .saturating_mul(SYNC_BYTES_PER_ENTRY)
        .div_ceil(1 << 20);
    u32::try_from(mb.max(1)).unwrap_or(u32::MAX)
}

impl Config {
    /// The MiB that syncs share within `memory_mb`: each takes what its next chunks need
    /// ([`sync_mb`]), so a log catching up a few entries is not kept waiting behind
    /// another's initial sync, and initial syncs of many logs take turns.
    pub fn sync_budget_mb(&self) -> u32 {
        let free = self
            .memory_mb
            .saturating_sub(self.cache_mb as u64)
            .saturating_sub(BASE_MB);
        u32::try_from(free).unwrap_or(u32::MAX)
    }

    /// What one peer may hold: connections and how long they may stay silent.
    pub fn limits(&self) -> Result<tally_proto::serve::Limits, AggregatorError> {
        tally_proto::serve::Limits::from_config(self.max_connections, self.idle_timeout_secs)
            .map_err(|(option, problem)| AggregatorError::Config {
                option: option.into(),
                problem,
            })
    }

    /// Reads `policy_file`, if set, into `logs` and the default policy. Call before
    /// [`Config::validate`].
    pub fn read_policy_file(mut self) -> Result<Config, AggregatorError> {
        let Some(path) = &self.policy_file else {
            return Ok(self);
        };
        let bad = |problem: String| AggregatorError::Config {
            option: "policy_file".into(),
            problem,
        };
        if !self.logs.is_empty() {
            return Err(bad(
                "give the logs either as [[logs]] tables or in policy_file, not both".into(),
            ));
        }
        let text = std::fs::read(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let trust =
            TrustPolicy::parse(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        self.logs = trust
            .logs()
            .iter()
            .map(|l| LogConfig {
                origin: l.origin().clone(),
                vkey: l.key.clone(),
                urls: l.urls.clone(),
                name: None,
            })
            .collect();
        self.policy.get_or_insert_with(|| trust.attest().clone());
        Ok(self)
    }

    /// The policy queries use unless they name one.
    pub fn policy(&self) -> Policy {
        self.policy.clone().unwrap_or_default()
    }

    /// Checks values that parse but cannot work, naming the option.
    pub fn validate(&self) -> Result<(), AggregatorError> {
        let bad =
            |option: String, problem: String| Err(AggregatorError::Config { option, problem });
        self.limits()?;
        if self.peer_timeout_secs == 0 {
            return bad("peer_timeout_secs".into(), "must be at least 1".into());
        }
        if self.logs.is_empty() {
            return bad(
                "logs".into(),
                "no logs to follow: add [[logs]] entries, or a policy_file with log lines".into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeMap::new();
        for (i, log) in self.logs.iter().enumerate() {
            let at = |field: &str| format!("logs[{i}].{field}");
            if !seen.insert(&log.origin) {
                return bad(at("origin"), format!("{} is listed twice", log.origin));
            }
            if let Some(first) = keys.insert(*log.vkey.as_bytes(), &log.origin) {
                return bad(
                    at("vkey"),
                    format!(
                        "is the same public key as {first}'s: one key may follow one log, or it \
                         would vote twice"
                    ),
                );
            }
            if log.vkey.name() != &log.origin {
                return bad(
                    at("vkey"),
                    format!("is the key of {}, not of {}", log.vkey.name(), log.origin),
                );
            }
            if log.urls.is_empty() {
                return bad(at("urls"), "needs at least one URL".into());
            }
            for url in &log.urls {
                match url.strip_prefix(crate::remote::TILES_PREFIX) {
                    Some(base) if base.starts_with("http://") || base.starts_with("https://") => {}
                    Some(_) => {
                        return bad(
                            at("urls"),
                            format!(
                                "{url:?}: a tlog-tiles URL is tiles+http://host/prefix or \
                                 tiles+https://host/prefix"
                            ),
                        );
                    }
                    None => {
                        if let Err(e) = url.parse::<Address>() {
                            return bad(
                                at("urls"),
                                format!(
                                    "{e}; or tiles+https://host/prefix for the log's tlog-tiles"
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Err(e) = self.policy().check(&self.origins()) {
            return bad("policy".into(), e.to_string());
        }
        for (i, peer) in self.peers.iter().enumerate() {
            if !(peer.starts_with("http://") || peer.starts_with("https://")) {
                return bad(
                    format!("peers[{i}]"),
                    format!("{peer:?} is not an http:// or https:// URL"),
                );
            }
        }
        if self.gossip_interval_secs == 0 {
            return bad("gossip_interval_secs".into(), "must be at least 1".into());
        }
        if self.poll_interval_secs == 0 {
            return bad("poll_interval_secs".into(), "must be at least 1".into());
        }
        if !(1000..=1_000_000).contains(&self.sync_chunk) {
            return bad(
                "sync_chunk".into(),
                format!("{} is not between 1000 and 1000000", self.sync_chunk),
            );
        }
        if self.sync_budget_mb() < sync_mb(self.sync_chunk) {
            return bad(
                "memory_mb".into(),
                format!(
                    "{} MiB leaves no room for a sync beside cache_mb = {}: a sync of \
                     sync_chunk = {} entries needs {} MiB and the process {} MiB more; raise \
                     memory_mb, or lower cache_mb or sync_chunk",
                    self.memory_mb,
                    self.cache_mb,
                    self.sync_chunk,
                    sync_mb(self.sync_chunk),
                    BASE_MB
                ),
            );
        }
        if !(8..=1 << 20).contains(&self.cache_mb) {
            return bad(
                "cache_mb".into(),
                format!("{} is not between 8 and 1048576", self.cache_mb),
            );
        }
        Ok(())
    }

    /// The followed origins, in configuration order.
    pub fn origins(&self) -> Vec<KeyName> {
        self.logs.iter().map(|l| l.origin.clone()).collect()
    }

    /// The poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs)
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("aggregator.redb")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(&format!(
            "{extra}\n[[logs]]\norigin = \"a.example/log\"\n\
             vkey = \"a.example/log+4943e0e0+Acwu1S1UmlxhZJFRrsqVVZ8N+IrKcxSWISB9pTbNV2QC\"\n\
             urls = [\"http://127.0.0.1:1\"]\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_sync_costs_memory_in_proportion_to_its_chunk() {
        assert_eq!(sync_mb(0), 1);
        assert_eq!(sync_mb(128), 1);
        assert_eq!(sync_mb(1000), 8);
        assert_eq!(sync_mb(50_000), 391);
        // The defaults: one initial sync of 50,000-entry chunks at a time within 1 GiB,
        // beside the cache, with room for small catch-ups of other logs.
        let c = config("");
        assert_eq!(c.sync_budget_mb(), 1024 - 256 - 96);
        assert_eq!(c.sync_budget_mb() / sync_mb(c.sync_chunk), 1);
        c.validate().unwrap();
    }

    #[test]
    fn a_budget_too_small_for_one_chunk_names_the_options() {
        let c = config("memory_mb = 600");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("memory_mb"), "{e}");
        assert!(
            e.contains("sync_chunk = 50000 entries needs 391 MiB"),
            "{e}"
        );
        config("memory_mb = 600\nsync_chunk = 20000")
            .validate()
            .unwrap();
    }
}
