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
    started: Mutex<Vec<(KeyName, Instant, u64, u64, Instant)>>,
}

impl SyncProgress for LogLines {
    fn start(&self, origin: &KeyName, from: u64, to: u64) {
        tracing::info!(%origin, "syncing entries {from}..{to}");
        if let Ok(mut s) = self.started.lock() {
            s.retain(|(o, ..)| o != origin);
            s.push((origin.clone(), Instant::now(), from, to, Instant::now()));
        }
    }

    fn advance(&self, origin: &KeyName, at: u64) {
        let Ok(mut s) = self.started.lock() else { return };
        if let Some((_, began, from, to, last)) = s.iter_mut().find(|(o, ..)| o == origin) {
            if last.elapsed().as_secs() >= 10 {
                *last = Instant::now();
                let rate = (at - *from) as f64 / began.elapsed().as_secs_f64().max(0.001);
                let eta = (*to - at) as f64 / rate.max(1.0);
                tracing::info!(%origin, "synced {at} of {to} ({rate:.0} entries/s, {eta:.0} s left)");
            }
        }
    }

    fn finish(&self, origin: &KeyName) {
        let Ok(mut s) = self.started.lock() else { return };
        if let Some(i) = s.iter().position(|(o, ..)| o == origin) {
            let (_, began, from, to, _) = s.remove(i);
            let secs = began.elapsed().as_secs_f64();
            tracing::info!(%origin, "synced entries {from}..{to} in {secs:.1} s ({:.0} entries/s)", (to - from) as f64 / secs.max(0.001));
        }
    }
}
