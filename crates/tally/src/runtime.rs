//! The async runtime, logging and shutdown signals, set up the same way for every command.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// Runs a future to completion on a multi-threaded runtime.
pub(crate) fn block_on<F: Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}

/// How long a command waits before retry number `attempt` (from 0), or `None` once
/// [`Backoff::COMMAND`](tally_core::backoff::Backoff::COMMAND) gives up. The clock's
/// nanoseconds are jitter enough to keep concurrent requests apart.
pub(crate) fn retry_delay(attempt: u32) -> Option<std::time::Duration> {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    tally_core::backoff::Backoff::COMMAND.delay(attempt, u64::from(jitter))
}

/// Logs to stderr at `default` level; `RUST_LOG` overrides it.
pub(crate) fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A token cancelled on SIGTERM or SIGINT (Ctrl-C).
pub(crate) fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

/// `--ready-file`: where a daemon writes the addresses it listens on, once it listens.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ReadyFile {
    /// Once listening, write the bound addresses here as JSON (`{"listen": "127.0.0.1:41234"}`),
    /// replacing the file atomically. For scripts and tests that listen on port 0.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<std::path::PathBuf>,
}

impl ReadyFile {
    /// Writes `addresses` (name → address) if a ready file was asked for.
    pub(crate) fn write(&self, addresses: &[(&str, std::net::SocketAddr)]) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let Some(path) = &self.ready_file else {
            return Ok(());
        };
        let value: serde_json::Map<String, serde_json::Value> = addresses
            .iter()
            .map(|(name, addr)| ((*name).to_owned(), addr.to_string().into()))
            .collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", serde_json::Value::Object(value)))
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing --ready-file {}", path.display()))
    }
}

/// Seconds since 1970, for the age of cosignatures.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
