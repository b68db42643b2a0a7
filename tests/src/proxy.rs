//! A TCP proxy that rewrites bytes in transit: the network path, or a mirror, as an attacker.
//!
//! It forwards every connection to a target and replaces each occurrence of a byte pattern
//! with another of the same length in what the target sends back, so HTTP/2 and gRPC framing
//! stay valid while the content lies. A pattern split across two reads is still found: the
//! proxy holds back the last `len - 1` bytes of a read until the next one, or until the
//! target has been quiet for a moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops when dropped.
pub struct RewritingProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    rewrites: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RewritingProxy {
    /// Proxies to `target`, replacing `from` with `to` (the same length) in the target's
    /// answers.
    pub async fn start(target: SocketAddr, from: Vec<u8>, to: Vec<u8>) -> RewritingProxy {
        assert_eq!(from.len(), to.len(), "a rewrite must keep the length");
        assert!(!from.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rewrites = Arc::new(AtomicU64::new(0));
        let pattern = Arc::new((from, to));
        let counter = Arc::clone(&rewrites);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (pattern, counter) = (Arc::clone(&pattern), Arc::clone(&counter));
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                        let _ = sw.shutdown().await;
                    });
                    rewrite_copy(&mut sr, &mut cw, &pattern.0, &pattern.1, &counter).await;
                    let _ = cw.shutdown().await;
                    up.abort();
                });
            }
        });
        RewritingProxy {
            addr,
            rewrites,
            task,
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many times the pattern was replaced so far.
    pub fn rewrites(&self) -> u64 {
        self.rewrites.load(Ordering::Relaxed)
    }
}

impl Drop for RewritingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn rewrite_copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    pattern: &[u8],
    replacement: &[u8],
    counter: &AtomicU64,
) {
    let keep = pattern.len() - 1;
    let mut held: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let read = tokio::time::timeout(Duration::from_millis(5), from.read(&mut buf)).await;
        match read {
            // Quiet: pass on what was held back.
            Err(_) => {
                replace_all(&mut held, pattern, replacement, counter);
                if to.write_all(&held).await.is_err() {
                    return;
                }
                held.clear();
                // Wait for more without a timeout.
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => held.extend_from_slice(&buf[..n]),
                }
            }
            Ok(Ok(0) | Err(_)) => {
                replace_all(&mut held, pattern, replacement, counter);
                let _ = to.write_all(&held).await;
                return;
            }
            Ok(Ok(n)) => held.extend_from_slice(&buf[..n]),
        }
        replace_all(&mut held, pattern, replacement, counter);
        if held.len() > keep {
            let send = held.len() - keep;
            if to.write_all(&held[..send]).await.is_err() {
                return;
            }
            held.drain(..send);
        }
    }
}

fn replace_all(buf: &mut [u8], pattern: &[u8], replacement: &[u8], counter: &AtomicU64) {
    let mut i = 0;
    while i + pattern.len() <= buf.len() {
        if &buf[i..i + pattern.len()] == pattern {
            buf[i..i + pattern.len()].copy_from_slice(replacement);
            counter.fetch_add(1, Ordering::Relaxed);
            i += pattern.len();
        } else {
            i += 1;
        }
    }
}
