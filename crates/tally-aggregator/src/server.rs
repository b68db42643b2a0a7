//! Starting the aggregator: checking the config, opening the mirror, following every log, and
//! serving gRPC and HTTP until shutdown.

use std::sync::Arc;

use tally_core::bearer::RequiredToken;
use tally_core::cosignature::Cosigner;
use tally_proto::v1::aggregator_server::AggregatorServer;
use tally_store::MirrorStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::evidence::{EXCLUDING, EvidenceSink};
use crate::follower::Follower;
use crate::gossip::Gossip;
use crate::metrics::Metrics;
use crate::offered::Offered;
use crate::progress::SyncProgress;
use crate::service::Shared;
use crate::status::Statuses;
use crate::witness::Witness;
use crate::{AggregatorError, dashboard, http};

fn config_error(option: &str, problem: impl ToString) -> AggregatorError {
    AggregatorError::Config {
        option: option.to_owned(),
        problem: problem.to_string(),
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AggregatorError {
    move |source| AggregatorError::Io {
        what: what.into(),
        source,
    }
}

/// The secret files an aggregator reads.
struct Secrets {
    cosigner: Option<Cosigner>,
    admin: Option<RequiredToken>,
}

impl Secrets {
    fn load(config: &Config) -> Result<Secrets, AggregatorError> {
        let cosigner = match &config.witness_key_file {
            Some(path) => Some(Cosigner::new(
                tally_store::read_signing_key(path)
                    .map_err(|e| config_error("witness_key_file", e))?,
            )),
            None => None,
        };
        let admin = match &config.admin_token_file {
            Some(path) => Some(RequiredToken::new(
                &tally_store::read_secret(path).map_err(|e| config_error("admin_token_file", e))?,
            )),
            None => None,
        };
        Ok(Secrets { cosigner, admin })
    }
}

/// What [`check_host`] checks, by option; a build-time check skips these.
pub const HOST_CHECKS: &[&str] = &["witness_key_file", "admin_token_file", "data_dir", "listen"];

/// Checks everything `serve` needs from this machine, without changing anything: the secret
/// files (readable, mode 0600), that `data_dir` can be created or written, and that `listen`
/// is free.
pub fn check_host(config: &Config) -> Result<(), AggregatorError> {
    Secrets::load(config)?;
    tally_store::host::check_writable_dir(&config.data_dir)
        .map_err(|e| config_error("data_dir", e))?;
    tally_store::host::check_listen(config.listen).map_err(|e| config_error("listen", e))
}

/// Runs the aggregator until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    progress: Arc<dyn SyncProgress>,
    shutdown: CancellationToken,
) -> Result<(), AggregatorError> {
    start(config, progress, shutdown).await?.serving.await
}

/// A started aggregator.
pub struct Running {
    /// The address the listener is bound to (the real port when `listen` asks for 0).
    pub local_addr: std::net::SocketAddr,
    /// Answers queries in process: it implements the gRPC service's methods.
    pub handle: Shared,
    /// Follows the logs and serves gRPC and HTTP until shutdown; must be polled.
    pub serving: std::pin::Pin<Box<dyn Future<Output = Result<(), AggregatorError>> + Send>>,
}

/// Opens the mirror and binds the listener, so that start-up errors come out here, and
/// returns the handle and the future that does the work.
pub async fn start(
    config: Config,
    progress: Arc<dyn SyncProgress>,
    shutdown: CancellationToken,
) -> Result<Running, AggregatorError> {
    config.validate()?;
    let Secrets { cosigner, admin } = Secrets::load(&config)?;
    // A fatal storage error stops this aggregator, not whatever else shares `shutdown`.
    let fatal = CancellationToken::new();
    let shutdown = tally_proto::serve::stop_token(&shutdown, &fatal);
    std::fs::create_dir_all(&config.data_dir).map_err(io(format!(
        "creating data_dir {}",
        config.data_dir.display()
    )))?;
    let origins = config.origins();
    let store = {
        let (path, origins, cache) = (config.database(), origins.clone(), config.cache_mb << 20);
        let keep_free = config.min_free_mb << 20;
        tokio::task::spawn_blocking(move || {
            MirrorStore::open(&path, &origins, cache).map(|s| s.keep_free(keep_free))
        })
        .await
        .map_err(|e| io("opening the mirror")(std::io::Error::other(e)))??
    };
    let store = Arc::new(store);
    let statuses = Arc::new(Statuses::new(&origins));
    for record in store.list_evidence()? {
        if EXCLUDING.contains(&record.kind.as_str()) {
            for o in &record.origins {
                if let Some(origin) = origins.iter().find(|k| k.as_str() == o) {
                    statuses.exclude(
                        origin,
                        format!(
                            "{} evidence #{}: {}",
                            record.kind, record.id, record.summary
                        ),
                    );
                }
            }
        }
    }
    let metrics = Arc::new(Metrics::new());
    let disagreements = store
        .list_evidence()?
        .iter()
        .filter(|r| r.kind == "disagreement")
        .count();
    metrics
        .disagreements
        .set(i64::try_from(disagreements).unwrap_or(i64::MAX));
    let keys: Vec<_> = config.logs.iter().map(|l| l.vkey.clone()).collect();
    let evidence = Arc::new(EvidenceSink {
        store: Arc::clone(&store),
        statuses: Arc::clone(&statuses),
        metrics: Arc::clone(&metrics),
        keys: keys.clone(),
    });
    let offered = Arc::new(Offered::new(&origins));
    let witness = cosigner.map(|cosigner| {
        Arc::new(Witness {
            cosigner,
            store: Arc::clone(&store),
            keys: keys.clone(),
            offered: Arc::clone(&offered),
            evidence: Arc::clone(&evidence),
        })
    });

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listen on {}", config.listen)))?;
    let local_addr = listener
        .local_addr()
        .map_err(io(format!("listen on {}", config.listen)))?;
    let mut followers = tokio::task::JoinSet::new();
    let syncs = Arc::new(tokio::sync::Semaphore::new(config.sync_budget_mb() as usize));
    for log in &config.logs {
        let follower = Follower {
            log: log.clone(),
            others: origins
                .iter()
                .filter(|o| **o != log.origin)
                .cloned()
                .collect(),
            store: Arc::clone(&store),
            statuses: Arc::clone(&statuses),
            metrics: Arc::clone(&metrics),
            evidence: Arc::clone(&evidence),
            witness: witness.clone(),
            progress: Arc::clone(&progress),
            poll: config.poll_interval(),
            chunk: config.sync_chunk,
            peer_timeout: std::time::Duration::from_secs(config.peer_timeout_secs),
            last_durable: std::time::Instant::now(),
            fatal: fatal.clone(),
            syncs: Arc::clone(&syncs),
            remotes: log.urls.iter().map(|_| None).collect(),
            offered: Arc::clone(&offered),
            faults: log.urls.iter().map(|_| None).collect(),
            map_searched: None,
        };
        followers.spawn(follower.run(shutdown.clone()));
    }
    if !config.peers.is_empty() {
        let gossip = Gossip {
            peers: config.peers.clone(),
            logs: config
                .logs
                .iter()
                .map(|l| (l.origin.clone(), l.vkey.clone()))
                .collect(),
            offered: Arc::clone(&offered),
            evidence: Arc::clone(&evidence),
            every: std::time::Duration::from_secs(config.gossip_interval_secs),
        };
        followers.spawn(gossip.run(shutdown.clone()));
    }
    let shared = Shared {
        store,
        statuses,
        metrics,
        logs: Arc::new(config.logs.clone()),
        policy: config.policy(),
        witness,
        reports: Arc::default(),
        admin,
    };
    followers.spawn(
        shared
            .clone()
            .refresh_reports_forever(config.poll_interval(), shutdown.clone()),
    );
    let grpc = AggregatorServer::new(shared.clone()).max_encoding_message_size(256 << 20);
    let app = tonic::service::Routes::new(grpc)
        .into_axum_router()
        .merge(http::router(shared.clone()))
        .merge(dashboard::router(shared.clone()))
        .fallback(dashboard::not_found);
    tracing::info!(
        logs = origins.len(),
        "serving gRPC and HTTP on {local_addr}"
    );
    let limits = config.limits()?;
    let serving = async move {
        tally_proto::serve::serve(listener, app, limits, shutdown.clone()).await;
        while followers.join_next().await.is_some() {}
        if fatal.is_cancelled() {
            return Err(AggregatorError::MustReopen);
        }
        tracing::info!("stopped");
        Ok(())
    };
    Ok(Running {
        local_addr,
        handle: shared,
        serving: Box::pin(serving),
    })
}
