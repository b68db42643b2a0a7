//! Paths the way users have them: a store path, a path inside one, a bare hash part, or a
//! symlink into the store such as `./result`.

use anyhow::{Context as _, bail};
use tally_core::store_path::{STORE_DIR, hash_of_query};
use tally_core::{StorePath, StorePathHash};

/// Follows `arg` to the store when it is a symlink (or a path) on disk outside the store.
fn resolve(arg: &str) -> anyhow::Result<String> {
    let looks_like_hash = arg.len() == 32 && !arg.contains('/');
    if arg.starts_with(STORE_DIR) || looks_like_hash {
        return Ok(arg.to_owned());
    }
    let target = match std::fs::canonicalize(arg) {
        Ok(t) => t,
        // A `result` link whose target was garbage-collected still names its store path.
        Err(_) => match std::fs::read_link(arg) {
            Ok(link) if link.starts_with(STORE_DIR) => link,
            _ => bail!(
                "{arg:?} is not a store path, a hash part, or a file that leads into {STORE_DIR}"
            ),
        },
    };
    let target = target.to_string_lossy().into_owned();
    if !target.starts_with(STORE_DIR) {
        bail!("{arg} resolves to {target}, which is not in {STORE_DIR}");
    }
    Ok(target)
}

/// The hash part of the store path `arg` names.
pub(crate) fn store_path_hash(arg: &str) -> anyhow::Result<StorePathHash> {
    let path = resolve(arg)?;
    hash_of_query(&path).with_context(|| format!("{arg:?}"))
}

/// The store path `arg` names: a path inside a store path is reduced to it.
pub(crate) fn store_path(arg: &str) -> anyhow::Result<StorePath> {
    let path = resolve(arg)?;
    StorePath::containing(&path).with_context(|| format!("{arg:?} is not a store path"))
}
