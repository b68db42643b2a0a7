//! Reporting sync progress: log lines by default, a progress bar when the binary has a
//! terminal.

use std::sync::Mutex;
use std::time::Instant;

use tally_core::KeyName;

/// Receives a follower's progress through a sync.
pub trait SyncProgress: Send + Sync {
    /// A sync of entries `[from, to)` starts.
    fn start(&self, origin: &KeyName, from: u64, to: u64);
    /// Entries up to `at` are mirrored and checked.
    fn advance(&self, origin: &KeyName, at: u64);
    /// The sync is done (or stopped).
    fn finish(&self, origin: &KeyName);
}

/// Logs a line when a sync starts, every 10 seconds, and when it ends.
#[derive(Default)]
pub struct LogLines {
    started: Mutex<Vec<Running>>,
}

struct Running {
    origin: KeyName,
    began: Instant,
    from: u64,
    to: u64,
    at: u64,
    last: Instant,
}

impl SyncProgress for LogLines {
    fn start(&self, origin: &KeyName, from: u64, to: u64) {
        tracing::info!(%origin, "syncing entries {from}..{to}");
        if let Ok(mut s) = self.started.lock() {
            s.retain(|p| p.origin != *origin);
            let now = Instant::now();
            s.push(Running {
                origin: origin.clone(),
                began: now,
                from,
                to,
                at: from,
                last: now,
            });
        }
    }

    fn advance(&self, origin: &KeyName, at: u64) {
        let Ok(mut s) = self.started.lock() else {
            return;
        };
        if let Some(p) = s.iter_mut().find(|p| p.origin == *origin) {
            p.at = at;
            if p.last.elapsed().as_secs() >= 10 {
                p.last = Instant::now();
                let rate = (at - p.from) as f64 / p.began.elapsed().as_secs_f64().max(0.001);
                let eta = (p.to - at) as f64 / rate.max(1.0);
                tracing::info!(%origin, "synced {at} of {} ({rate:.0} entries/s, {eta:.0} s left)", p.to);
            }
        }
    }

    fn finish(&self, origin: &KeyName) {
        let Ok(mut s) = self.started.lock() else {
            return;
        };
        if let Some(i) = s.iter().position(|p| p.origin == *origin) {
            let p = s.remove(i);
            let secs = p.began.elapsed().as_secs_f64();
            if p.at == p.to {
                tracing::info!(%origin, "synced entries {}..{} in {secs:.1} s ({:.0} entries/s)", p.from, p.to, (p.to - p.from) as f64 / secs.max(0.001));
            } else {
                tracing::info!(%origin, "sync stopped at {} of {} after {secs:.1} s", p.at, p.to);
            }
        }
    }
}
