//! The store's error type.

use tally_core::map::{MapError, MapNodeError};
use tally_core::tlog::ProofError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed: I/O, a full disk, or a corrupt file.
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// A proof was asked for sizes or an index the log does not have.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A map operation failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// Stored bytes do not decode.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Entries were asked for beyond the log's size.
    #[error("entries {start}..{end} are beyond the log size {size}")]
    OutOfRange {
        /// First entry asked for.
        start: u64,
        /// End of the range asked for.
        end: u64,
        /// The log's size.
        size: u64,
    },
    /// A tile was asked for that the log does not have (yet).
    #[error("tile {index} at level {level} is beyond the log size {size}")]
    TileOutOfRange {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// The log's size.
        size: u64,
    },
    /// A secret file (key or token) cannot be used.
    #[error("secret file {path}: {problem}")]
    SecretFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, and how to fix it.
        problem: String,
    },
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The database belongs to another log.
    #[error("this database holds log {found:?}, not {expected:?}")]
    WrongLog {
        /// The origin asked for.
        expected: String,
        /// The origin the database holds.
        found: String,
    },
    /// Signing the checkpoint failed.
    #[error("signing the checkpoint: {0}")]
    Sign(#[from] tally_core::CheckpointError),
    /// The file system holding the database is (nearly) full; nothing was written.
    #[error(
        "the file system holding {} has {} free, but this commit needs {} (with the reserve \
         kept free): free some space (nothing was written)",
        path.display(), mib(*free), mib(*needed)
    )]
    DiskFull {
        /// The database file.
        path: std::path::PathBuf,
        /// Bytes free.
        free: u64,
        /// Bytes the commit needed free: its own writes and the store's reserve.
        needed: u64,
    },
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

impl StoreError {
    /// Whether the database must be closed and opened again before it can be used: redb
    /// refuses every transaction after an I/O error in a commit (a full disk, a failing
    /// device). Nothing acknowledged is lost; reopening recovers the last durable commit.
    pub fn needs_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::Database(redb::Error::PreviousIo)
                | StoreError::Database(redb::Error::Io(_))
        )
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

/// Attaches a path to an I/O error.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl From<MapNodeError> for StoreError {
    fn from(e: MapNodeError) -> Self {
        StoreError::corrupt("map node", e)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError
);
