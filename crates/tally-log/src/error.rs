//! The daemon's error type, and how errors become gRPC statuses (in one place).

use tally_store::StoreError;
use tonic::{Code, Status};

/// Why the daemon cannot start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A configuration option is invalid.
    #[error("config option `{option}`: {problem}")]
    Config {
        /// The option.
        option: &'static str,
        /// What is wrong, and how to fix it.
        problem: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed a commit and must be reopened: the daemon stopped, and starting
    /// it again recovers the last durable commit.
    #[error(
        "the database failed a commit and must be reopened; restart tally log serve (nothing \
         acknowledged is lost)"
    )]
    MustReopen,
    /// A listener, socket or directory could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// The gRPC status for a store error on a read path.
pub(crate) fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::OutOfRange { .. }
        | StoreError::TileOutOfRange { .. }
        | StoreError::Proof(_) => Status::new(Code::OutOfRange, e.to_string()),
        e => {
            tracing::error!("storage error: {e}");
            Status::internal(format!("storage error: {e}"))
        }
    }
}
