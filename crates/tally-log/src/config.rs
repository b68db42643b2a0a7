//! The daemon's configuration, one TOML file. `examples/log.toml` documents every option.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tally_core::KeyName;
use tally_core::cosignature::CosignatureVerifier;

use crate::LogError;

/// `tally log serve --config PATH`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The log's origin, e.g. `builder1.example.org/tally`. Must be the signing key's name.
    pub origin: KeyName,
    /// The log's secret key (Nix format, mode 0600), as `tally keygen` writes it.
    pub secret_key_file: PathBuf,
    /// Where the log database lives.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Public address for gRPC reads and HTTP (tlog-tiles, `/metrics`, `/healthz`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Unix socket accepting submits (and reads).
    #[serde(default = "default_submit_socket")]
    pub submit_socket: PathBuf,
    /// Permissions of the submit socket, in octal.
    #[serde(default = "default_submit_socket_mode")]
    pub submit_socket_mode: String,
    /// Group owning the submit socket (name or numeric id); unset keeps the daemon's group.
    #[serde(default)]
    pub submit_socket_group: Option<String>,
    /// A file holding a bearer token that allows submits over TCP. Unset: TCP is read-only.
    #[serde(default)]
    pub submit_token_file: Option<PathBuf>,
    /// The post-build hook's spool, drained at start-up and every `spool_drain_interval_secs`.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Seconds between spool drains.
    #[serde(default = "default_spool_drain_interval_secs")]
    pub spool_drain_interval_secs: u64,
    /// The longest a submission waits for others to share its batch, in milliseconds.
    #[serde(default = "default_batch_period_ms")]
    pub batch_period_ms: u64,
    /// A batch is committed early once no submission has arrived for this long, in
    /// milliseconds.
    #[serde(default = "default_batch_idle_ms")]
    pub batch_idle_ms: u64,
    /// Attestations per batch; a full batch commits at once. Also the most one request may hold.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The largest gRPC message accepted, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// The database's in-process page cache, in MiB: most of the daemon's memory.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: usize,
    /// MiB kept free on the file system holding the database: a commit that would start
    /// with less is refused (submits get RESOURCE_EXHAUSTED) until space is freed.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
    /// Connections served at once; more are closed as they arrive.
    #[serde(default = "tally_proto::serve::default_max_connections")]
    pub max_connections: usize,
    /// Seconds a connection may stay silent before it is closed.
    #[serde(default = "tally_proto::serve::default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// A directory to publish the log into as static files (its checkpoint and tlog-tiles
    /// tiles), for a web server or CDN to serve. Unset: tiles are served by the daemon only.
    #[serde(default)]
    pub tiles_dir: Option<PathBuf>,
    /// Witnesses asked to cosign new checkpoints (C2SP tlog-witness `add-checkpoint`).
    #[serde(default)]
    pub witnesses: Vec<WitnessConfig>,
    /// Seconds between witness rounds: each witness gets at most one new checkpoint per
    /// round (plus one retry after a 409).
    #[serde(default = "default_witness_interval_secs")]
    pub witness_interval_secs: u64,
    /// Seconds after which a checkpoint that is still the latest (an idle log) is sent to
    /// the witnesses again, for fresh cosignatures: consumers with a `max-age` keep counting
    /// the log's answers.
    #[serde(default = "default_witness_refresh_secs")]
    pub witness_refresh_secs: u64,
    /// Cosignatures a checkpoint needs before reads (`GetCheckpoint`, `Lookup`,
    /// `/checkpoint`) move to it. Unset: every configured witness. 0: reads always see the
    /// latest checkpoint, with the cosignatures it has so far.
    #[serde(default)]
    pub witness_quorum: Option<usize>,
}

/// One witness.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its submission prefix: `add-checkpoint` is posted to `<url>/add-checkpoint`.
    pub url: String,
    /// Its cosignature verifier key (`name+id+base64(0x04 ‖ key)`); answers are checked
    /// with it.
    pub vkey: CosignatureVerifier,
}

fn default_data_dir() -> PathBuf {
    "/var/lib/tally/log".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7420))
}
fn default_submit_socket() -> PathBuf {
    "/run/tally/log.sock".into()
}
fn default_submit_socket_mode() -> String {
    "0660".into()
}
/// The spool directory the daemon and `tally hook` use unless told otherwise.
pub fn default_spool_dir() -> PathBuf {
    "/var/lib/tally/spool".into()
}
fn default_spool_drain_interval_secs() -> u64 {
    30
}
fn default_batch_period_ms() -> u64 {
    200
}
fn default_batch_idle_ms() -> u64 {
    5
}
fn default_batch_size() -> usize {
    4096
}
fn default_max_message_bytes() -> usize {
    16 << 20
}
fn default_min_free_mb() -> u64 {
    tally_store::DEFAULT_KEEP_FREE >> 20
}

fn default_cache_mb() -> usize {
    tally_store::DEFAULT_CACHE_BYTES >> 20
}
fn default_witness_refresh_secs() -> u64 {
    tally_core::witness::COSIGNATURE_REFRESH_SECS
}

fn default_witness_interval_secs() -> u64 {
    60
}

impl Config {
    /// Checks values that parse but cannot work, naming the option.
    pub fn validate(&self) -> Result<(), LogError> {
        let bad = |option: &'static str, problem: String| Err(LogError::Config { option, problem });
        self.limits()?;
        if self.socket_mode().is_none() {
            return bad(
                "submit_socket_mode",
                format!(
                    "{:?} is not an octal mode like \"0660\"",
                    self.submit_socket_mode
                ),
            );
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return bad(
                "batch_size",
                format!("{} is not between 1 and 100000", self.batch_size),
            );
        }
        if !(1..=60_000).contains(&self.batch_period_ms) {
            return bad(
                "batch_period_ms",
                format!("{} is not between 1 and 60000", self.batch_period_ms),
            );
        }
        if self.batch_idle_ms > self.batch_period_ms {
            return bad(
                "batch_idle_ms",
                format!(
                    "{} is longer than batch_period_ms ({})",
                    self.batch_idle_ms, self.batch_period_ms
                ),
            );
        }
        if self.max_message_bytes < 1024 {
            return bad(
                "max_message_bytes",
                format!("{} is below 1024", self.max_message_bytes),
            );
        }
        if !(8..=1 << 20).contains(&self.cache_mb) {
            return bad(
                "cache_mb",
                format!("{} is not between 8 and 1048576", self.cache_mb),
            );
        }
        if self.spool_drain_interval_secs == 0 {
            return bad("spool_drain_interval_secs", "must be at least 1".into());
        }
        if self.witness_interval_secs == 0 {
            return bad("witness_interval_secs", "must be at least 1".into());
        }
        if self.witness_refresh_secs < self.witness_interval_secs {
            return bad(
                "witness_refresh_secs",
                format!(
                    "{} is less than witness_interval_secs ({}); cosignatures cannot be \
                     refreshed more often than witnesses are asked",
                    self.witness_refresh_secs, self.witness_interval_secs
                ),
            );
        }
        if let Some(q) = self.witness_quorum.filter(|q| *q > self.witnesses.len()) {
            return bad(
                "witness_quorum",
                format!(
                    "{q} is more than the {} configured",
                    match self.witnesses.len() {
                        1 => "1 witness".to_owned(),
                        n => format!("{n} witnesses"),
                    }
                ),
            );
        }
        for (i, w) in self.witnesses.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(LogError::Config {
                    option: "witnesses",
                    problem: format!(
                        "witnesses[{i}].url {:?} is not an http:// or https:// URL",
                        w.url
                    ),
                });
            }
        }
        Ok(())
    }

    /// `submit_socket_mode` as a number.
    pub fn socket_mode(&self) -> Option<u32> {
        u32::from_str_radix(&self.submit_socket_mode, 8)
            .ok()
            .filter(|m| *m <= 0o777)
    }

    /// What one peer may hold: connections and how long they may stay silent.
    pub fn limits(&self) -> Result<tally_proto::serve::Limits, LogError> {
        tally_proto::serve::Limits::from_config(self.max_connections, self.idle_timeout_secs)
            .map_err(|(option, problem)| LogError::Config { option, problem })
    }

    /// How batches are formed.
    pub fn batching(&self) -> crate::sequencer::Batching {
        crate::sequencer::Batching {
            period: Duration::from_millis(self.batch_period_ms),
            idle: Duration::from_millis(self.batch_idle_ms),
            size: self.batch_size,
        }
    }

    /// Cosignatures a checkpoint needs before reads move to it.
    pub fn witness_quorum(&self) -> usize {
        self.witness_quorum.unwrap_or(self.witnesses.len())
    }

    /// The log database file.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("log.redb")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c: Config =
            toml::from_str("origin = \"a.example/log\"\nsecret_key_file = \"/k\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen.port(), 7420);
        assert_eq!(c.socket_mode(), Some(0o660));
        assert_eq!(c.batching().period, Duration::from_millis(200));

        let err =
            toml::from_str::<Config>("origin = \"a\"\nsecret_key_file = \"/k\"\nbatchsize = 3\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("batchsize"), "{err}");
        let err = toml::from_str::<Config>("origin = \"a b\"\nsecret_key_file = \"/k\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("' '"), "{err}");

        let mut bad = c.clone();
        bad.submit_socket_mode = "rw-rw----".into();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("submit_socket_mode"), "{err}");
        let mut bad = c;
        bad.batch_size = 0;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("batch_size")
        );
    }
}
