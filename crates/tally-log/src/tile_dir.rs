//! Publishing the log as static files: its checkpoint and tlog-tiles tiles, in a directory
//! that any web server or CDN can serve without the daemon.
//!
//! Durability rules, so that a reader of the directory never sees a checkpoint whose tiles
//! are missing, whatever crashes:
//! - a tile or bundle MUST be written to a temporary file, fsynced, and renamed into place,
//!   and its directory fsynced, before a checkpoint that needs it is published;
//! - the checkpoint MUST be replaced last, the same way (rename over the old one);
//! - tiles are immutable: one that exists is never written again;
//! - partial tiles are removed only once their full tile exists *and* a checkpoint that no
//!   longer needs them is in place (the spec lets a log drop them then).
//!
//! On start the directory's own checkpoint says how far it got; publishing again from there
//! is idempotent.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use tally_core::tiles::{TileKind, new_tiles};

use crate::publish::View;

/// A directory the log is published into.
pub struct TileDirectory {
    dir: PathBuf,
    /// The tree size of the checkpoint in the directory.
    published: u64,
    /// The checkpoint note in the directory.
    note: Vec<u8>,
}

/// Why publishing failed; the directory is left as it was, plus any finished tiles.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct TileDirError {
    path: PathBuf,
    source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> TileDirError + '_ {
    move |source| TileDirError {
        path: path.to_owned(),
        source,
    }
}

impl TileDirectory {
    /// Opens (creating) `dir`, reading how far an earlier run published.
    pub fn open(dir: &Path) -> Result<TileDirectory, TileDirError> {
        fs::create_dir_all(dir).map_err(err(dir))?;
        let checkpoint = dir.join("checkpoint");
        let note = match fs::read(&checkpoint) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(&checkpoint)(e)),
        };
        // Written by this code after its tiles: the size line is all that is needed.
        let published = std::str::from_utf8(&note)
            .ok()
            .and_then(|t| t.lines().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(TileDirectory {
            dir: dir.to_owned(),
            published,
            note,
        })
    }

    /// The tree size published so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Publishes `view`: the tiles its tree has beyond what is published, then its
    /// checkpoint. A view no larger than what is published only refreshes the checkpoint
    /// (new cosignatures on the same tree).
    pub fn publish(&mut self, view: &View) -> Result<(), TileDirError> {
        let size = view.checkpoint.tree.size;
        if size < self.published || (size == self.published && view.note == self.note) {
            return Ok(());
        }
        let mut dirs = BTreeSet::new();
        let mut superseded = Vec::new();
        for tile in new_tiles(self.published, size) {
            let path = self.dir.join(tile.to_string());
            if tile.partial.is_none() {
                superseded.push(self.dir.join(format!("{tile}.p")));
            }
            if path.exists() {
                continue;
            }
            let bytes = match tile.kind {
                TileKind::Hash { level } => view.reader.hash_tile(level, tile.index, tile.width()),
                TileKind::Entries => view.reader.entry_bundle(tile.index, tile.width()),
            }
            .map_err(|e| TileDirError {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            write_atomically(&path, &bytes)?;
            if let Some(parent) = path.parent() {
                dirs.insert(parent.to_owned());
            }
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        write_atomically(&self.dir.join("checkpoint"), &view.note)?;
        sync_dir(&self.dir)?;
        self.published = size;
        self.note.clone_from(&view.note);
        // Only now may the partial tiles that full ones replace go.
        for p in superseded {
            if let Err(e) = fs::remove_dir_all(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("removing superseded partial tiles {}: {e}", p.display());
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory: fsynced, then
/// renamed into place. The caller fsyncs the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TileDirError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(err(parent))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(err(&tmp))?;
    file.write_all(bytes).map_err(err(&tmp))?;
    file.sync_all().map_err(err(&tmp))?;
    fs::rename(&tmp, path).map_err(err(path))
}

fn sync_dir(dir: &Path) -> Result<(), TileDirError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir))
}

/// Keeps `dir` in step with what readers are served, until `shutdown`.
pub async fn run(
    dir: PathBuf,
    published: std::sync::Arc<crate::publish::Published>,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tiles = match tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || TileDirectory::open(&dir)
    })
    .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::error!("tiles_dir: {e}; not publishing tiles");
            return;
        }
        Err(e) => {
            tracing::error!("tiles_dir: {e}");
            return;
        }
    };
    loop {
        match published.view() {
            Ok(view) => {
                let result = tokio::task::spawn_blocking(move || {
                    let r = tiles.publish(&view);
                    (tiles, r)
                })
                .await;
                match result {
                    Ok((t, r)) => {
                        tiles = t;
                        if let Err(e) = r {
                            tracing::warn!("publishing tiles to {}: {e}; retrying", dir.display());
                        }
                    }
                    Err(e) => {
                        tracing::error!("publishing tiles: {e}");
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!("publishing tiles: {e}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
