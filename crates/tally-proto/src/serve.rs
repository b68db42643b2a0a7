//! Serving a daemon's gRPC and HTTP routes on a listener, with limits on what one peer can
//! hold: the one accept loop every Tally daemon uses.
//!
//! A peer may be hostile. It may open connections and send nothing, trickle a request's
//! headers a byte at a time, or keep connections open for ever. So:
//! - at most [`Limits::max_connections`] connections are served at once; one more is closed
//!   as soon as it is accepted (and logged, at most every 10 s), so the listen backlog never
//!   fills with peers that will not be served;
//! - a connection that sends and receives nothing for [`Limits::idle_timeout`] is closed
//!   gracefully, counting from the moment it was accepted;
//! - HTTP/1 headers must arrive within [`Limits::header_timeout`];
//! - HTTP/2 allows [`MAX_STREAMS`] concurrent streams per connection.
//!
//! On shutdown the loop stops accepting, asks every connection to finish its requests, and
//! returns once they have.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a connection asked to close may take to finish its requests.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Concurrent HTTP/2 streams per connection.
pub const MAX_STREAMS: u32 = 256;

/// What one daemon allows its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a connection may be silent in both directions before it is closed.
    pub idle_timeout: Duration,
    /// How long an HTTP/1 request's headers may take to arrive.
    pub header_timeout: Duration,
}

/// The default `max_connections` of every daemon's config.
pub fn default_max_connections() -> usize {
    4096
}

/// The default `idle_timeout_secs` of every daemon's config.
pub fn default_idle_timeout_secs() -> u64 {
    300
}

impl Limits {
    /// The limits a daemon's config sets (`max_connections`, `idle_timeout_secs`), or which
    /// option is out of range and why.
    pub fn from_config(
        max_connections: usize,
        idle_timeout_secs: u64,
    ) -> Result<Limits, (&'static str, String)> {
        if max_connections == 0 {
            return Err(("max_connections", "must be at least 1".into()));
        }
        if idle_timeout_secs == 0 {
            return Err(("idle_timeout_secs", "must be at least 1".into()));
        }
        Ok(Limits {
            max_connections,
            idle_timeout: Duration::from_secs(idle_timeout_secs),
            header_timeout: Duration::from_secs(10).min(Duration::from_secs(idle_timeout_secs)),
        })
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_config(default_max_connections(), default_idle_timeout_secs())
            .unwrap_or_else(|_| unreachable!("the defaults are in range"))
    }
}

/// A daemon's own stop signal: cancelled with `shutdown`, or when the daemon cancels
/// `fatal` because it cannot go on, without cancelling `shutdown` (which other services in
/// the process may share). Call within a Tokio runtime.
pub fn stop_token(shutdown: &CancellationToken, fatal: &CancellationToken) -> CancellationToken {
    let stop = shutdown.child_token();
    tokio::spawn({
        let (fatal, stop) = (fatal.clone(), stop.clone());
        async move {
            tokio::select! {
                () = fatal.cancelled() => stop.cancel(),
                () = stop.cancelled() => {}
            }
        }
    });
    stop
}

/// A listener the loop accepts from: TCP or a Unix socket.
pub trait Listener: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<tokio::net::TcpStream> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        // Small answers (checkpoints, proofs) must not wait out Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<tokio::net::UnixStream> {
        Ok(tokio::net::UnixListener::accept(self).await?.0)
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown`, then lets open requests
/// finish.
pub async fn serve(
    listener: impl Listener,
    router: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().max_concurrent_streams(MAX_STREAMS);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut warned: Option<Instant> = None;
    loop {
        let io = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(io) => io,
                Err(e) => {
                    // Out of file descriptors, or a peer gone before it was accepted: wait
                    // a moment rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "too many connections; closing new ones until some end"
                );
                warned = Some(Instant::now());
            }
            drop(io);
            continue;
        };
        let builder = Arc::clone(&builder);
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let (io, last) = Watched::new(io);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(conn);
            let tick = (limits.idle_timeout / 4).max(Duration::from_millis(50));
            // Once asked to close, a connection gets this long to finish its requests; a
            // peer that ignores the request is then cut off.
            let mut closing: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    () = shutdown.cancelled(), if closing.is_none() => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                    () = tokio::time::sleep(tick), if closing.is_none() => {
                        if last.idle() >= limits.idle_timeout {
                            conn.as_mut().graceful_shutdown();
                            closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                        }
                    }
                    () = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => break,
                }
            }
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
}

/// When a connection last moved bytes, as milliseconds since it was accepted.
struct LastActivity {
    accepted: Instant,
    at_ms: AtomicU64,
}

impl LastActivity {
    fn touch(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.accepted
            .elapsed()
            .saturating_sub(Duration::from_millis(self.at_ms.load(Ordering::Relaxed)))
    }
}

/// A connection that records when it last read or wrote a byte.
struct Watched<T> {
    inner: T,
    last: Arc<LastActivity>,
}

impl<T> Watched<T> {
    fn new(inner: T) -> (Watched<T>, Arc<LastActivity>) {
        let last = Arc::new(LastActivity {
            accepted: Instant::now(),
            at_ms: AtomicU64::new(0),
        });
        (
            Watched {
                inner,
                last: Arc::clone(&last),
            },
            last,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.last.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.last.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
