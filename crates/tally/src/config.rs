//! The one config loader: every service's TOML file is read here.

use std::path::Path;

use anyhow::Context as _;
use serde::de::DeserializeOwned;

/// Reads and parses a TOML config file. Parse errors name the option and its line.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        // The parser quotes the offending line; a secret key pasted where a public key
        // belongs must not be repeated, so then only the line number is given.
        if e.message().contains("SECRET key") {
            let line = e
                .span()
                .map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            anyhow::anyhow!(
                "config file {} line {line}: {}",
                path.display(),
                e.message()
            )
        } else {
            anyhow::Error::new(e).context(format!("config file {}", path.display()))
        }
    })
}

/// The arguments every `check-config` takes.
#[derive(clap::Args, Debug)]
pub(crate) struct CheckArgs {
    /// The TOML config to check.
    #[arg(long)]
    pub(crate) config: std::path::PathBuf,
    /// Check only what does not depend on this machine (for a NixOS build, where secrets
    /// and ports are not there yet): skip secret files, directories and the listen address,
    /// and say so.
    #[arg(long)]
    pub(crate) build_time: bool,
}

impl CheckArgs {
    /// Runs `host` (the checks of this machine) unless this is a build-time check, and
    /// returns what was skipped.
    pub(crate) fn host_checks<E>(
        &self,
        skippable: &'static [&'static str],
        host: impl FnOnce() -> Result<(), E>,
    ) -> anyhow::Result<&'static [&'static str]>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if self.build_time {
            return Ok(skippable);
        }
        host().with_context(|| format!("config file {}", self.config.display()))?;
        Ok(&[])
    }

    /// Prints the result of a successful check: `summary` and, for a build-time check, what
    /// it skipped; `fields` go into the JSON.
    pub(crate) fn report(
        &self,
        summary: &str,
        skipped: &[&str],
        mut fields: serde_json::Map<String, serde_json::Value>,
        json: bool,
    ) -> anyhow::Result<()> {
        if json {
            fields.insert("config".into(), self.config.display().to_string().into());
            fields.insert("ok".into(), true.into());
            fields.insert("skipped".into(), skipped.into());
            crate::output::json(&fields)
        } else {
            crate::output::outln!("{}: ok ({summary})", self.config.display());
            if !skipped.is_empty() {
                crate::output::outln!("  not checked (--build-time): {}", skipped.join(", "));
            }
            Ok(())
        }
    }
}
