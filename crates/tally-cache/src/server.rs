//! Starting the cache proxy: the key, the upstreams, the aggregator, and the HTTP listener.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use tally_core::trust::TrustPolicy;

use crate::CacheError;
use crate::config::{AggregatorAt, Config};
use crate::decision::Decisions;
use crate::http::{CacheState, router};
use crate::metrics::Metrics;
use crate::upstream::Upstreams;
use crate::votes::{DirectLogs, RemoteAggregator, Votes};

fn config_error(option: &str, problem: impl ToString) -> CacheError {
    CacheError::Config {
        option: option.to_owned(),
        problem: problem.to_string(),
    }
}

/// Serves the cache until `shutdown` is cancelled, counting answers from `votes` under
/// `trust`.
pub async fn serve(
    config: Config,
    trust: TrustPolicy,
    votes: Arc<dyn Votes>,
    shutdown: CancellationToken,
) -> Result<(), CacheError> {
    start(config, trust, votes, shutdown).await?.serving.await
}

/// The source of answers for a remote aggregator or the logs themselves; `None` for an
/// aggregator in process, which the caller provides.
pub fn network_votes(
    at: &AggregatorAt,
    trust: &TrustPolicy,
) -> Result<Option<Arc<dyn Votes>>, CacheError> {
    let bad = |option: &str, e: tally_proto::client::ClientError| config_error(option, e);
    Ok(match at {
        AggregatorAt::Remote(address) => Some(Arc::new(
            RemoteAggregator::new(address.clone()).map_err(|e| bad("aggregator.url", e))?,
        )),
        AggregatorAt::Logs => Some(Arc::new(
            DirectLogs::new(trust).map_err(|e| bad("policy_file", e))?,
        )),
        AggregatorAt::InProcess(_) => None,
    })
}

/// What [`check_host`] checks, by option; a build-time check skips these.
pub const HOST_CHECKS: &[&str] = &["secret_key_file", "listen"];

/// Checks everything `serve` needs from this machine, without changing anything: the key
/// (readable, mode 0600) and that `listen` is free.
pub fn check_host(config: &Config) -> Result<(), CacheError> {
    load_key(config)?;
    tally_store::host::check_listen(config.listen).map_err(|e| config_error("listen", e))
}

fn load_key(config: &Config) -> Result<tally_core::SigningKey, CacheError> {
    tally_store::read_signing_key(&config.secret_key_file)
        .map_err(|e| config_error("secret_key_file", e))
}

/// A started cache.
pub struct Running {
    /// The address the listener is bound to (the real port when `listen` asks for 0).
    pub local_addr: SocketAddr,
    /// Serves until shutdown; must be polled.
    pub serving: Pin<Box<dyn Future<Output = Result<(), CacheError>> + Send>>,
}

/// Checks the config, reads the key and binds the listener, so that start-up errors come out
/// here, and returns the bound address and the future that serves.
pub async fn start(
    config: Config,
    trust: TrustPolicy,
    votes: Arc<dyn Votes>,
    shutdown: CancellationToken,
) -> Result<Running, CacheError> {
    config.validate()?;
    let key = load_key(&config)?;
    let upstreams = Upstreams::new(config.upstreams.clone(), config.upstream_timeout())
        .map_err(|e| config_error("upstreams", e))?;
    tracing::info!(policy = %trust, source = %votes.describe(), mode = ?config.mode, "trust policy");
    let state = CacheState {
        upstreams,
        decisions: Arc::new(Decisions::new(
            votes,
            trust,
            config.decision_ttl(),
            config.max_decisions,
        )),
        key: Arc::new(key),
        priority: config.priority,
        mode: config.mode,
        metrics: Arc::new(Metrics::new()),
    };
    let listen = |source| CacheError::Io {
        what: format!("listen on {}", config.listen),
        source,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(listen)?;
    let local_addr = listener.local_addr().map_err(listen)?;
    tracing::info!(
        key = %state.key.name(),
        upstreams = ?config.upstreams.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "serving the binary cache on http://{local_addr}"
    );
    let limits = config.limits()?;
    let serving = async move {
        tally_proto::serve::serve(listener, router(state), limits, shutdown).await;
        Ok(())
    };
    Ok(Running {
        local_addr,
        serving: Box::pin(serving),
    })
}
