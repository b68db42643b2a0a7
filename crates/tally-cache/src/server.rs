//! Starting the cache proxy: the key, the upstreams, the aggregator, and the HTTP listener.

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
    config.validate()?;
    let key = tally_store::read_signing_key(&config.secret_key_file)
        .map_err(|e| config_error("secret_key_file", e))?;
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
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| CacheError::Io {
            what: format!("listen on {}", config.listen),
            source,
        })?;
    // Narinfos are small: they must not wait out Nagle's algorithm.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    tracing::info!(
        key = %state.key.name(),
        upstreams = ?config.upstreams.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "serving the binary cache on http://{}",
        config.listen
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| CacheError::Io {
            what: "serving".into(),
            source,
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
