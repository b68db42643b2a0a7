//! The cache proxy's error type.

/// Why the cache proxy cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A configuration option is invalid.
    #[error("config option `{option}`: {problem}")]
    Config {
        /// The option.
        option: String,
        /// What is wrong, and how to fix it.
        problem: String,
    },
    /// A listener could not be set up, or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}
