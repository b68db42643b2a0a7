//! Keeping room on the disk.
//!
//! A redb commit that fails half-way with "no space left on device" leaves the database
//! refusing every further transaction until it is reopened. So a store MUST check, before
//! each write transaction, that the file system holding it has room for what the commit may
//! write plus its reserve, and refuse the write with [`StoreError::DiskFull`] otherwise:
//! nothing is written, and writes go on by themselves once space is freed.
//!
//! What a commit may write is bounded by its new entries: each can dirty one random map page,
//! plus its share of entry and hash pages, which [`PAGES_PER_ENTRY`] covers with room to
//! spare. Only another process filling the disk at the same moment can still get redb to
//! the edge, and then the store must be reopened.

use std::path::{Path, PathBuf};

use crate::StoreError;

/// What a store keeps free beyond a commit's own needs, unless told otherwise: 64 MiB.
pub const DEFAULT_KEEP_FREE: u64 = 64 << 20;

/// Bytes a commit may write per new entry: copy-on-write of a random 4 KiB map page, and
/// more than enough for its entry, hash and B-tree pages.
pub(crate) const PAGES_PER_ENTRY: u64 = 2 * 4096;

/// The free space one database keeps.
#[derive(Clone, Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    keep: u64,
}

impl Reserve {
    pub(crate) fn new(path: &Path) -> Reserve {
        Reserve {
            path: path.to_owned(),
            keep: DEFAULT_KEEP_FREE,
        }
    }

    pub(crate) fn keep(&mut self, bytes: u64) {
        self.keep = bytes;
    }

    /// Refuses if the file system holding the database has less free than a commit of
    /// `entries` new entries may write, plus `buffered` bytes of earlier commits that may
    /// still be in memory, plus the reserve.
    pub(crate) fn check(&self, entries: u64, buffered: u64) -> Result<(), StoreError> {
        if self.keep == 0 {
            return Ok(());
        }
        let needed = self
            .keep
            .saturating_add(entries.saturating_mul(PAGES_PER_ENTRY))
            .saturating_add(buffered);
        let free = free_bytes(&self.path).map_err(crate::error::io(&self.path))?;
        if free < needed {
            return Err(StoreError::DiskFull {
                path: self.path.clone(),
                free,
                needed,
            });
        }
        Ok(())
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}
