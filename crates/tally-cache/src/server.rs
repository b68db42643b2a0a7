//! Starting the cache proxy: the key, the upstreams, the aggregator, and the HTTP listener.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::CacheError;
use crate::config::Config;
use crate::decision::{Aggregator, Decisions};
use crate::http::{CacheState, router};
use crate::metrics::Metrics;
use crate::upstream::Upstreams;

fn config_error(option: &str, problem: impl ToString) -> CacheError {
    CacheError::Config {
        option: option.to_owned(),
        problem: problem.to_string(),
    }
}

/// Serves the cache until `shutdown` is cancelled, taking verdicts from `aggregator`.
pub async fn serve(
    config: Config,
    aggregator: Aggregator,
    shutdown: CancellationToken,
) -> Result<(), CacheError> {
    start(config, aggregator, shutdown).await?.serving.await
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
    aggregator: Aggregator,
    shutdown: CancellationToken,
) -> Result<Running, CacheError> {
    config.validate()?;
    let key = load_key(&config)?;
    let upstreams = Upstreams::new(config.upstreams.clone(), config.upstream_timeout())
        .map_err(|e| config_error("upstreams", e))?;
    check_policy(&config, &aggregator).await?;
    let policy = config
        .policy
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let state = CacheState {
        upstreams,
        decisions: Arc::new(Decisions::new(
            aggregator,
            policy,
            config.decision_ttl(),
            config.max_decisions,
        )),
        key: Arc::new(key),
        priority: config.priority,
        metrics: Arc::new(Metrics::new()),
    };
    let listen = |source| CacheError::Io {
        what: format!("listen on {}", config.listen),
        source,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(listen)?;
    let local_addr = listener.local_addr().map_err(listen)?;
    // Narinfos are small: they must not wait out Nagle's algorithm.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    tracing::info!(
        key = %state.key.name(),
        upstreams = ?config.upstreams.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "serving the binary cache on http://{local_addr}"
    );
    let serving = async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| CacheError::Io {
                what: "serving".into(),
                source,
            })
    };
    Ok(Running {
        local_addr,
        serving: Box::pin(serving),
    })
}

/// Checks the policy against the aggregator's logs, if the aggregator answers now; one that
/// is down is not a reason to refuse to start (every narinfo gets a 502 until it is back).
async fn check_policy(config: &Config, aggregator: &Aggregator) -> Result<(), CacheError> {
    let Some(policy) = &config.policy else {
        return Ok(());
    };
    match aggregator.origins().await {
        Ok(origins) => {
            let origins = origins
                .iter()
                .filter_map(|o| tally_core::KeyName::new(o).ok())
                .collect::<Vec<_>>();
            policy
                .check(&origins)
                .map_err(|e| config_error("policy", e))
        }
        Err(e) => {
            tracing::warn!("cannot check the policy against the aggregator's logs yet: {e}");
            Ok(())
        }
    }
}
