//! Starting the daemon: checking the config, opening the log, and serving until shutdown.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use tally_proto::v1::log_server::LogServer;
use tally_store::{LogStore, Spool};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::auth::WriteAccess;
use crate::config::Config;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::publish::Published;
use crate::sequencer::Sequencer;
use crate::service::LogService;
use crate::witnessing::Witnessing;
use crate::{LogError, spool};

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    move |source| LogError::Io {
        what: what.into(),
        source,
    }
}

fn config_error(option: &'static str, problem: impl ToString) -> LogError {
    LogError::Config {
        option,
        problem: problem.to_string(),
    }
}

/// Runs the daemon until `shutdown` is cancelled, then stops accepting requests, lets the
/// ones in flight finish, and returns.
pub async fn serve(config: Config, shutdown: CancellationToken) -> Result<(), LogError> {
    start(config, shutdown).await?.serving.await
}

/// A started log daemon.
pub struct Running {
    /// The address the TCP listener is bound to (the real port when `listen` asks for 0).
    pub local_addr: SocketAddr,
    /// Serves until shutdown, then commits what is queued; must be polled.
    pub serving: Pin<Box<dyn Future<Output = Result<(), LogError>> + Send>>,
}

/// Checks the config, opens the log and binds both listeners, so that start-up errors come
/// out here, and returns the bound address and the future that does the work.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, LogError> {
    config.validate()?;
    // A fatal storage error stops this daemon, not whatever else shares `shutdown`.
    let fatal = CancellationToken::new();
    let shutdown = tally_proto::serve::stop_token(&shutdown, &fatal);
    let key = load_key(&config)?;
    let tcp_access = load_tcp_access(&config)?;
    std::fs::create_dir_all(&config.data_dir).map_err(io(format!(
        "creating data_dir {}",
        config.data_dir.display()
    )))?;
    let spool =
        Spool::open_to_drain(&config.spool_dir).map_err(|e| config_error("spool_dir", e))?;

    let database = config.database();
    let cache = config.cache_mb << 20;
    let keep_free = config.min_free_mb << 20;
    let (store, first) = {
        let key = key.clone();
        tokio::task::spawn_blocking(move || -> Result<_, LogError> {
            let store = LogStore::open_with_cache(&database, cache)?.keep_free(keep_free);
            // An empty log gets its size-0 checkpoint, so readers always find one.
            let first = store.append_batch(&key, &[])?;
            Ok((Arc::new(store), first.checkpoint))
        })
        .await
        .map_err(|e| io("opening the log")(std::io::Error::other(e)))??
    };
    let metrics = Arc::new(Metrics::new());
    metrics
        .tree_size
        .set(i64::try_from(first.checkpoint.tree.size).unwrap_or(i64::MAX));
    let (sequencer, sequencer_task) = Sequencer::start(
        Arc::clone(&store),
        key,
        config.batching(),
        Arc::clone(&metrics),
        fatal.clone(),
    );

    let tcp = TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listen on {}", config.listen)))?;
    let local_addr = tcp
        .local_addr()
        .map_err(io(format!("listen on {}", config.listen)))?;
    let unix = bind_socket(&config)?;

    let published = Arc::new(if config.witness_quorum() > 0 {
        Published::witnessed(Arc::clone(&store))?
    } else {
        Published::latest(Arc::clone(&store))
    });
    let tiles = config.tiles_dir.clone().map(|dir| {
        tokio::spawn(crate::tile_dir::run(
            dir,
            Arc::clone(&published),
            std::time::Duration::from_secs(1),
            shutdown.clone(),
        ))
    });
    let witnessing = if config.witnesses.is_empty() {
        None
    } else {
        let w = Witnessing::new(
            config.witnesses.clone(),
            config.witness_quorum(),
            std::time::Duration::from_secs(config.witness_interval_secs),
            std::time::Duration::from_secs(config.witness_refresh_secs),
            Arc::clone(&published),
            Arc::clone(&metrics),
        )
        .map_err(|e| config_error("witnesses", e))?;
        Some(tokio::spawn(w.run(shutdown.clone())))
    };
    let service = |access| LogService {
        store: Arc::clone(&store),
        published: Arc::clone(&published),
        sequencer: sequencer.clone(),
        access,
        metrics: Arc::clone(&metrics),
        batch_size: config.batch_size,
    };
    let http_state = HttpState {
        store: Arc::clone(&store),
        published: Arc::clone(&published),
        metrics: Arc::clone(&metrics),
    };
    let app = |access| {
        let grpc = LogServer::new(service(access))
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(64 << 20);
        tonic::service::Routes::new(grpc)
            .into_axum_router()
            .merge(http::router(http_state.clone()))
    };
    let tcp_app = app(tcp_access);
    let unix_app = app(WriteAccess::Socket);

    tracing::info!(
        origin = %config.origin,
        size = first.checkpoint.tree.size,
        "serving gRPC and HTTP on {local_addr}, submits on unix:{}",
        config.submit_socket.display()
    );
    let drainer = tokio::spawn(drain_spool(
        spool,
        sequencer.clone(),
        config.batch_size,
        Arc::clone(&metrics),
        std::time::Duration::from_secs(config.spool_drain_interval_secs),
        shutdown.clone(),
    ));
    drop(sequencer);
    let limits = config.limits()?;
    let tcp_server = tally_proto::serve::serve(tcp, tcp_app, limits, shutdown.clone());
    let unix_server = tally_proto::serve::serve(unix, unix_app, limits, shutdown.clone());
    let socket = config.submit_socket.clone();
    let serving = async move {
        tokio::join!(tcp_server, unix_server);
        let _ = drainer.await;
        if let Some(w) = witnessing {
            let _ = w.await;
        }
        if let Some(t) = tiles {
            let _ = t.await;
        }
        // Servers are done and the drainer has stopped: the sequencer commits what is queued.
        let _ = sequencer_task.await;
        let _ = std::fs::remove_file(&socket);
        if fatal.is_cancelled() {
            return Err(LogError::MustReopen);
        }
        tracing::info!("stopped");
        Ok(())
    };
    Ok(Running {
        local_addr,
        serving: Box::pin(serving),
    })
}

/// What [`check_host`] checks, by option: the parts of a config that depend on the machine
/// it runs on (secret files, directories, the listen address), which a build-time check
/// skips.
pub const HOST_CHECKS: &[&str] = &[
    "secret_key_file",
    "submit_token_file",
    "data_dir",
    "spool_dir",
    "tiles_dir",
    "submit_socket",
    "submit_socket_group",
    "listen",
];

/// Checks everything `serve` needs from this machine, without changing anything: the key
/// (readable, mode 0600, named after the origin), the token file, that the directories can
/// be created or written, that the socket's group exists and that `listen` is free.
pub fn check_host(config: &Config) -> Result<(), LogError> {
    load_key(config)?;
    load_tcp_access(config)?;
    let dir = |option, path: &Path| {
        tally_store::host::check_writable_dir(path).map_err(|e| config_error(option, e))
    };
    dir("data_dir", &config.data_dir)?;
    dir("spool_dir", &config.spool_dir)?;
    if let Some(tiles) = &config.tiles_dir {
        dir("tiles_dir", tiles)?;
    }
    if let Some(parent) = config.submit_socket.parent() {
        dir("submit_socket", parent)?;
    }
    if let Some(group) = &config.submit_socket_group
        && group_id(group).is_none()
    {
        return Err(config_error(
            "submit_socket_group",
            format!("no group {group:?} in /etc/group"),
        ));
    }
    tally_store::host::check_listen(config.listen).map_err(|e| config_error("listen", e))
}

/// The signing key, which must be named after the origin.
fn load_key(config: &Config) -> Result<tally_core::SigningKey, LogError> {
    let key = tally_store::read_signing_key(&config.secret_key_file)
        .map_err(|e| config_error("secret_key_file", e))?;
    if *key.name() != config.origin {
        return Err(config_error(
            "origin",
            format!(
                "is {:?} but the key in {} is named {:?}: a log's key must be named after its origin",
                config.origin.as_str(),
                config.secret_key_file.display(),
                key.name().as_str()
            ),
        ));
    }
    Ok(key)
}

/// Who may submit over TCP.
fn load_tcp_access(config: &Config) -> Result<WriteAccess, LogError> {
    Ok(match &config.submit_token_file {
        Some(path) => WriteAccess::token(
            &tally_store::read_secret(path).map_err(|e| config_error("submit_token_file", e))?,
        ),
        None => WriteAccess::Closed,
    })
}

/// Binds the submit socket, replacing a stale one, with the configured mode and group.
fn bind_socket(config: &Config) -> Result<UnixListener, LogError> {
    let path = &config.submit_socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(config_error(
                "submit_socket",
                format!(
                    "{} exists and is not a socket; remove it or choose another path",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)
            .map_err(io(format!("removing stale socket {}", path.display())))?;
    }
    let listener = UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))?;
    let mode = config.socket_mode().unwrap_or(0o660);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("setting the mode of {}", path.display())))?;
    if let Some(group) = &config.submit_socket_group {
        let gid = group_id(group).ok_or_else(|| {
            config_error(
                "submit_socket_group",
                format!("no group {group:?} in /etc/group"),
            )
        })?;
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(io(format!("giving {} to group {group}", path.display())))?;
    }
    Ok(listener)
}

/// A group's id, from a number or a name in /etc/group.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string(Path::new("/etc/group")).ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(group))
            .then(|| fields.nth(1).and_then(|gid| gid.parse().ok()))
            .flatten()
    })
}

async fn drain_spool(
    spool: Spool,
    sequencer: Sequencer,
    batch_size: usize,
    metrics: Arc<Metrics>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    loop {
        match spool::drain(&spool, &sequencer, batch_size, &metrics).await {
            Ok(r) if r == spool::DrainReport::default() => {}
            Ok(r) => tracing::info!(
                files = r.files,
                submitted = r.submitted,
                conflicts = r.conflicts,
                quarantined = r.quarantined,
                "drained the hook spool {}",
                spool.dir().display()
            ),
            Err(e) => tracing::warn!(
                "draining the spool {}: {e}; will retry",
                spool.dir().display()
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
