//! The one config loader: every service's TOML file is read here.

use std::path::Path;

use anyhow::Context as _;
use serde::de::DeserializeOwned;

/// Reads and parses a TOML config file. Parse errors name the option and its line.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}
