//! The hook's spool: attestations that could not be submitted yet, kept durably on disk.
//!
//! Each spool file is JSON lines, one attestation per line (the format `tally submit --jsonl`
//! reads), named `<unix nanos>-<random>.jsonl` so they sort in arrival order. A file appears
//! atomically: it is written under a temporary name, synced, renamed, and the directory
//! synced. Whoever drains the spool removes a file only after its attestations are
//! acknowledged, so a crash in between at worst submits them twice, which the log answers
//! as duplicates.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tally_core::Attestation;

use crate::StoreError;
use crate::error::io;

/// A spool directory.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

/// One spooled file.
#[derive(Debug)]
pub struct SpoolFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its attestations, or why they do not parse.
    pub attestations: Result<Vec<Attestation>, String>,
}

impl Spool {
    /// Opens a spool directory, creating it (mode 0770) if needed.
    pub fn open(dir: &Path) -> Result<Spool, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o770)
            .create(dir)
            .map_err(io(dir))?;
        Ok(Spool {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durably writes attestations as a new spool file.
    pub fn push(&self, attestations: &[Attestation]) -> Result<PathBuf, StoreError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut random = [0u8; 4];
        // A clash only needs distinct names; fall back to the process id without entropy.
        if getrandom::getrandom(&mut random).is_err() {
            random = std::process::id().to_be_bytes();
        }
        let name = format!("{nanos:020}-{:08x}.jsonl", u32::from_be_bytes(random));
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(name);
        let mut body = String::new();
        for a in attestations {
            body.push_str(&serde_json::to_string(a).map_err(|e| StoreError::Io {
                path: tmp.clone(),
                source: e.into(),
            })?);
            body.push('\n');
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(body.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(path)
    }

    /// The spooled files, oldest first.
    pub fn pending(&self) -> Result<Vec<SpoolFile>, StoreError> {
        let mut paths: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|path| {
                let text = fs::read_to_string(&path).map_err(io(&path))?;
                let attestations = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .enumerate()
                    .map(|(i, l)| {
                        serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))
                    })
                    .collect();
                Ok(SpoolFile { path, attestations })
            })
            .collect()
    }

    /// Removes a drained file.
    pub fn remove(&self, file: &SpoolFile) -> Result<(), StoreError> {
        fs::remove_file(&file.path).map_err(io(&file.path))
    }

    /// Moves a file that can never be submitted into `rejected/`, so draining moves on and
    /// an operator can inspect it.
    pub fn reject(&self, file: &SpoolFile) -> Result<PathBuf, StoreError> {
        let dir = self.dir.join("rejected");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let to = dir.join(file.path.file_name().unwrap_or_default());
        fs::rename(&file.path, &to).map_err(io(&to))?;
        Ok(to)
    }
}
