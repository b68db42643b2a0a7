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
