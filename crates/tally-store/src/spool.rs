//! The hook's spool: attestations that could not be submitted yet, kept durably on disk.
//!
//! Each spool file is JSON lines, one attestation per line (the format `tally submit --jsonl`
//! reads), named `<unix nanos>-<random>.jsonl` so they sort in arrival order. A file appears
//! atomically: it is written under a temporary name, synced, renamed, and the directory
//! synced. Whoever drains the spool removes a file only after its attestations are
//! acknowledged, so a crash in between at worst submits them twice, which the log answers
//! as duplicates.
//!
//! A file that cannot be submitted (unreadable, not UTF-8, not attestations) is moved to
//! `quarantine/` and never blocks the others; so is a temporary file a killed writer left
//! behind. Ownership: the hook runs as root (under nix-daemon) and the log daemon as its own
//! user. The daemon creates the directory with mode 2770 (setgid), so files written into it
//! belong to the daemon's group; the hook writes them 0640, so the daemon can read them and,
//! owning the directory, remove them.

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
    /// Its attestations, or why it cannot be submitted.
    pub attestations: Result<Vec<Attestation>, String>,
}

/// A temporary file older than this was left by a writer that died.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(600);

impl Spool {
    /// Opens a spool directory, creating it (mode 0770) if needed: as the hook does.
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

    /// Opens the spool as the process that drains it (the log daemon): creates it if needed
    /// and makes it mode 2770, setgid, so that files another user (the hook, as root) writes
    /// into it belong to this process's group. A directory owned by someone else is left as
    /// its owner set it up.
    pub fn open_to_drain(dir: &Path) -> Result<Spool, StoreError> {
        let spool = Spool::open(dir)?;
        use std::os::unix::fs::PermissionsExt as _;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o2770));
        Ok(spool)
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

    /// The spooled files, oldest first, each read only when the iterator reaches it, so one
    /// bad file is reported with its problem and never stops the others. Temporary files that
    /// a killed writer left behind are quarantined on the way.
    pub fn pending(&self) -> Result<impl Iterator<Item = SpoolFile> + use<>, StoreError> {
        let mut paths = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TMP));
                if old {
                    let _ = self.quarantine(&path);
                }
                continue;
            }
            if path.extension().is_some_and(|e| e == "jsonl") && !name.starts_with('.') {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths.into_iter().map(|path| {
            let attestations = read(&path);
            SpoolFile { path, attestations }
        }))
    }

    /// Moves a file that can never be submitted into `quarantine/`, so draining moves on
    /// and an operator can inspect it (and move it back once fixed).
    pub fn quarantine(&self, path: &Path) -> Result<PathBuf, StoreError> {
        let dir = self.dir.join("quarantine");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o770)
            .create(&dir)
            .map_err(io(&dir))?;
        let to = dir.join(path.file_name().unwrap_or_default());
        fs::rename(path, &to).map_err(io(&to))?;
        Ok(to)
    }
}

/// A spool file's attestations, or why they cannot be had.
fn read(path: &Path) -> Result<Vec<Attestation>, String> {
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot read it ({e}): the spool directory must be setgid to the log daemon's group \
             and files in it group-readable (docs/operations.md, the spool)"
        ),
        _ => format!("cannot read it: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 at byte {}: not a spool file",
            e.utf8_error().valid_up_to()
        )
    })?;
    let attestations: Vec<Attestation> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect::<Result<_, _>>()?;
    if attestations.is_empty() {
        return Err("it holds no attestations".into());
    }
    Ok(attestations)
}
