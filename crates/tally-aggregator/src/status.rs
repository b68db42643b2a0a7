//! What the aggregator knows about each followed log right now.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tally_core::KeyName;

/// A followed log's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Not checked yet, or catching up to a checkpoint.
    Syncing,
    /// Mirrored and verified up to its latest checkpoint.
    Verified,
    /// Could not be reached (or served data that could not be checked) on the last poll.
    Unavailable,
    /// Proven to misbehave (fork or bad data): its votes no longer count.
    Excluded,
}

impl State {
    /// The name used in APIs and pages.
    pub fn name(&self) -> &'static str {
        match self {
            State::Syncing => "syncing",
            State::Verified => "verified",
            State::Unavailable => "unavailable",
            State::Excluded => "excluded",
        }
    }
}

/// One log's status.
#[derive(Clone, Debug)]
pub struct LogStatus {
    /// Its state.
    pub state: State,
    /// The last error, or why it is excluded.
    pub detail: String,
    /// The newest checkpoint size seen from it.
    pub latest_size: u64,
    /// When it last answered, seconds since 1970.
    pub last_success: Option<u64>,
    /// When this process first saw its newest checkpoint, seconds since 1970.
    pub latest_seen: Option<u64>,
    /// Each URL's state, in configuration order: `ok`, `unreachable: …` or `faulty: …`.
    pub url_states: Vec<String>,
}

/// Every log's status, shared by the followers, the query engine and the APIs.
#[derive(Debug, Default)]
pub struct Statuses(RwLock<BTreeMap<KeyName, LogStatus>>);

/// Seconds since 1970.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Statuses {
    /// Every log starts syncing.
    pub fn new(origins: &[KeyName]) -> Statuses {
        let map = origins
            .iter()
            .map(|o| {
                let s = LogStatus {
                    state: State::Syncing,
                    detail: String::new(),
                    latest_size: 0,
                    last_success: None,
                    latest_seen: None,
                    url_states: Vec::new(),
                };
                (o.clone(), s)
            })
            .collect();
        Statuses(RwLock::new(map))
    }

    /// A log's status.
    pub fn get(&self, origin: &KeyName) -> Option<LogStatus> {
        self.0.read().ok()?.get(origin).cloned()
    }

    fn update(&self, origin: &KeyName, f: impl FnOnce(&mut LogStatus)) {
        // Once excluded, a log stays excluded.
        if let Ok(mut map) = self.0.write()
            && let Some(s) = map.get_mut(origin)
            && s.state != State::Excluded
        {
            f(s);
        }
    }

    /// The log answered with a checkpoint of `size`.
    pub fn seen(&self, origin: &KeyName, size: u64) {
        self.update(origin, |s| {
            let now = now();
            if size > s.latest_size || s.latest_seen.is_none() {
                s.latest_size = size;
                s.latest_seen = Some(now);
            }
            s.last_success = Some(now);
        });
    }

    /// The log is caught up.
    pub fn verified(&self, origin: &KeyName) {
        self.update(origin, |s| {
            s.state = State::Verified;
            s.detail.clear();
        });
    }

    /// The log is catching up.
    pub fn syncing(&self, origin: &KeyName, detail: String) {
        self.update(origin, |s| {
            s.state = State::Syncing;
            s.detail = detail;
        });
    }

    /// The last poll failed.
    pub fn unavailable(&self, origin: &KeyName, error: String) {
        self.update(origin, |s| {
            s.state = State::Unavailable;
            s.detail = error;
        });
    }

    /// Each URL's state, in configuration order. Kept even for an excluded log.
    pub fn urls(&self, origin: &KeyName, states: Vec<String>) {
        if let Ok(mut map) = self.0.write()
            && let Some(s) = map.get_mut(origin)
        {
            s.url_states = states;
        }
    }

    /// The log is proven to misbehave.
    pub fn exclude(&self, origin: &KeyName, reason: String) {
        self.update(origin, |s| {
            s.state = State::Excluded;
            s.detail = reason;
        });
    }
}
