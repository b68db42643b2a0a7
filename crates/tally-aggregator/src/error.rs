//! The aggregator's error type.

use tally_store::StoreError;

/// Why the aggregator cannot start, or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregatorError {
    /// A configuration option is invalid.
    #[error("config option `{option}`: {problem}")]
    Config {
        /// The option.
        option: String,
        /// What is wrong, and how to fix it.
        problem: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed a commit and must be reopened: the aggregator stopped, and
    /// starting it again recovers the last durable commit.
    #[error(
        "the database failed a commit and must be reopened; restart tally aggregate serve \
         (what was verified is kept)"
    )]
    MustReopen,
    /// A listener could not be set up, or a task failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}
