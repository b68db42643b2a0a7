//! Progress bars: drawn only on a terminal, with rate and ETA.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar for `total` items, on stderr if it is a terminal and hidden otherwise.
pub(crate) fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {human_pos}/{human_len} {per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// Sync progress for the aggregator: a bar per log on a terminal, log lines otherwise.
pub(crate) fn sync_progress() -> std::sync::Arc<dyn tally_aggregator::SyncProgress> {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        std::sync::Arc::new(SyncBars::default())
    } else {
        std::sync::Arc::new(tally_aggregator::LogLines::default())
    }
}

#[derive(Default)]
struct SyncBars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::BTreeMap<String, ProgressBar>>,
}

impl tally_aggregator::SyncProgress for SyncBars {
    fn start(&self, origin: &tally_core::KeyName, from: u64, to: u64) {
        let b = self.multi.add(bar(to, origin.as_str()));
        b.set_position(from);
        b.reset_eta();
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(origin.to_string(), b);
        }
    }

    fn advance(&self, origin: &tally_core::KeyName, at: u64) {
        if let Some(b) = self
            .bars
            .lock()
            .ok()
            .and_then(|b| b.get(origin.as_str()).cloned())
        {
            b.set_position(at);
        }
    }

    fn finish(&self, origin: &tally_core::KeyName) {
        if let Some(b) = self
            .bars
            .lock()
            .ok()
            .and_then(|mut b| b.remove(origin.as_str()))
        {
            b.finish_and_clear();
        }
    }
}
