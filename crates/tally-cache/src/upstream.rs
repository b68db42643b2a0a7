//! Reading other binary caches: narinfos and NAR files, over HTTP(S) or from a `file://`
//! directory, as Nix lays them out (`<hash>.narinfo`, `nar/<file>`).
//!
//! Nothing here decides trust: it returns what a cache holds, says plainly when a cache does
//! not hold it, and reports every failure as a failure, so that an error can never read as
//! an answer.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use tally_core::StorePathHash;
use tokio_stream::{Stream, StreamExt as _};

/// Narinfos larger than this are refused: real ones are well under 10 KiB.
pub const MAX_NARINFO_BYTES: usize = 1 << 20;

/// A binary cache's address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum BinaryCacheUrl {
    /// `http://…` or `https://…`, without a trailing slash.
    Http(String),
    /// `file:///…`: a directory as `nix copy --to file://…` writes it.
    File(PathBuf),
}

impl FromStr for BinaryCacheUrl {
    type Err = UpstreamError;
    fn from_str(s: &str) -> Result<Self, UpstreamError> {
        let bad = || UpstreamError::Url(s.to_owned());
        if s.contains(['?', '#']) || s.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        if let Some(path) = s.strip_prefix("file://") {
            return match path.strip_suffix('/').unwrap_or(path) {
                p if p.starts_with('/') => Ok(BinaryCacheUrl::File(p.into())),
                _ => Err(bad()),
            };
        }
        let host = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(bad)?;
        if host.is_empty() || host.starts_with('/') {
            return Err(bad());
        }
        Ok(BinaryCacheUrl::Http(s.trim_end_matches('/').to_owned()))
    }
}

impl TryFrom<String> for BinaryCacheUrl {
    type Error = UpstreamError;
    fn try_from(s: String) -> Result<Self, UpstreamError> {
        s.parse()
    }
}

impl fmt::Display for BinaryCacheUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinaryCacheUrl::Http(url) => f.write_str(url),
            BinaryCacheUrl::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// The name of a NAR file under `nar/`, as a narinfo's URL gives it
/// (`1pyjbli83fr0czjwh7f8vcan19zl46b2b4wqvipxkb41y4x2rjb5.nar.xz`). It cannot name a file
/// outside the cache's `nar/` directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarFile(String);

impl FromStr for NarFile {
    type Err = UpstreamError;
    fn from_str(s: &str) -> Result<Self, UpstreamError> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if ok {
            Ok(NarFile(s.to_owned()))
        } else {
            Err(UpstreamError::NarFile(s.to_owned()))
        }
    }
}

impl fmt::Display for NarFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an upstream could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Not a usable binary cache URL.
    #[error(
        "{0:?} is not a binary cache URL: use https://host[/path], http://host:port or file:///absolute/path"
    )]
    Url(String),
    /// Not a NAR file name.
    #[error("{0:?} is not a NAR file name")]
    NarFile(String),
    /// The HTTP client could not be built.
    #[error("setting up the HTTP client: {0}")]
    Client(String),
    /// One cache failed.
    #[error("{cache}: {problem}")]
    Failed {
        /// The cache.
        cache: String,
        /// What went wrong.
        problem: String,
    },
    /// No cache had it, and some failed, so absence is not known.
    #[error("no upstream answered: {}", .0.join("; "))]
    Unavailable(Vec<String>),
}

/// A narinfo as one upstream serves it.
#[derive(Clone, Debug)]
pub struct FoundNarInfo {
    /// The text.
    pub text: String,
    /// The cache it came from.
    pub cache: String,
}

/// A NAR file's bytes, as a stream.
pub type NarBody = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A NAR file from an upstream.
pub struct Nar {
    /// Its length, if the upstream said.
    pub length: Option<u64>,
    /// Its bytes (empty for a HEAD request).
    pub body: NarBody,
}

/// The upstream caches, tried in order.
#[derive(Clone)]
pub struct Upstreams {
    caches: Vec<BinaryCacheUrl>,
    client: reqwest::Client,
    timeout: Duration,
}

impl Upstreams {
    /// Clients for `caches`. `timeout` bounds a narinfo fetch, and each read of a NAR.
    pub fn new(caches: Vec<BinaryCacheUrl>, timeout: Duration) -> Result<Upstreams, UpstreamError> {
        Ok(Upstreams {
            caches,
            client: tally_proto::client::http_client(timeout)
                .map_err(|e| UpstreamError::Client(e.to_string()))?,
            timeout,
        })
    }

    /// The caches.
    pub fn caches(&self) -> &[BinaryCacheUrl] {
        &self.caches
    }

    /// The narinfo for `hash` from the first cache that has it.
    pub async fn narinfo(
        &self,
        hash: &StorePathHash,
    ) -> Result<Option<FoundNarInfo>, UpstreamError> {
        let mut failures = Vec::new();
        for cache in &self.caches {
            match self.narinfo_from(cache, hash).await {
                Ok(Some(text)) => {
                    return Ok(Some(FoundNarInfo {
                        text,
                        cache: cache.to_string(),
                    }));
                }
                Ok(None) => {}
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            Ok(None)
        } else {
            Err(UpstreamError::Unavailable(failures))
        }
    }

    /// The NAR file `nar/<file>` from the first cache that has it.
    pub async fn nar(&self, file: &NarFile, head: bool) -> Result<Option<Nar>, UpstreamError> {
        let mut failures = Vec::new();
        for cache in &self.caches {
            match self.nar_from(cache, file, head).await {
                Ok(Some(nar)) => return Ok(Some(nar)),
                Ok(None) => {}
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            Ok(None)
        } else {
            Err(UpstreamError::Unavailable(failures))
        }
    }

    /// One cache's narinfo for `hash`: `None` if it does not have one.
    pub async fn narinfo_from(
        &self,
        cache: &BinaryCacheUrl,
        hash: &StorePathHash,
    ) -> Result<Option<String>, UpstreamError> {
        let failed = |problem: String| UpstreamError::Failed {
            cache: cache.to_string(),
            problem: format!("{hash}.narinfo: {problem}"),
        };
        let bytes = match cache {
            BinaryCacheUrl::Http(base) => {
                let response = self
                    .client
                    .get(format!("{base}/{hash}.narinfo"))
                    .timeout(self.timeout)
                    .send()
                    .await
                    .map_err(|e| failed(describe(&e)))?;
                // Nix reads 403 as "not here" too (S3 answers it for missing keys).
                match response.status().as_u16() {
                    200 => read_capped(response).await.map_err(failed)?,
                    403 | 404 => return Ok(None),
                    status => return Err(failed(format!("HTTP {status}"))),
                }
            }
            BinaryCacheUrl::File(root) => {
                let path = root.join(format!("{hash}.narinfo"));
                match tokio::fs::metadata(&path).await {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(failed(e.to_string())),
                    Ok(m) if m.len() > MAX_NARINFO_BYTES as u64 => {
                        return Err(failed(format!("{} bytes is too large", m.len())));
                    }
                    Ok(_) => {}
                }
                tokio::fs::read(&path)
                    .await
                    .map_err(|e| failed(e.to_string()))?
            }
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| failed("not UTF-8".into()))
    }

    async fn nar_from(
        &self,
        cache: &BinaryCacheUrl,
        file: &NarFile,
        head: bool,
    ) -> Result<Option<Nar>, UpstreamError> {
        let failed = |problem: String| UpstreamError::Failed {
            cache: cache.to_string(),
            problem: format!("nar/{file}: {problem}"),
        };
        match cache {
            BinaryCacheUrl::Http(base) => {
                let url = format!("{base}/nar/{file}");
                let request = if head {
                    self.client.head(url)
                } else {
                    self.client.get(url)
                };
                let response = request.send().await.map_err(|e| failed(describe(&e)))?;
                match response.status().as_u16() {
                    200 => {}
                    403 | 404 => return Ok(None),
                    status => return Err(failed(format!("HTTP {status}"))),
                }
                // Not `content_length()`: that is the body's size, and a HEAD has none.
                let length = response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                let body: NarBody = if head {
                    Box::pin(tokio_stream::empty())
                } else {
                    Box::pin(
                        response
                            .bytes_stream()
                            .map(|chunk| chunk.map_err(std::io::Error::other)),
                    )
                };
                Ok(Some(Nar { length, body }))
            }
            BinaryCacheUrl::File(root) => {
                let path = root.join("nar").join(&file.0);
                let opened = tokio::fs::File::open(&path).await;
                let f = match opened {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    other => other.map_err(|e| failed(e.to_string()))?,
                };
                let length = f.metadata().await.map_err(|e| failed(e.to_string()))?.len();
                let body: NarBody = if head {
                    Box::pin(tokio_stream::empty())
                } else {
                    Box::pin(tokio_util::io::ReaderStream::with_capacity(f, 64 << 10))
                };
                Ok(Some(Nar {
                    length: Some(length),
                    body,
                }))
            }
        }
    }
}

/// Reads a response body of at most [`MAX_NARINFO_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if out.len() + chunk.len() > MAX_NARINFO_BYTES {
            return Err(format!("larger than {MAX_NARINFO_BYTES} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A reqwest error with its causes: the top level alone says only "error sending request".
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_urls() {
        assert_eq!(
            "https://cache.nixos.org/".parse::<BinaryCacheUrl>(),
            Ok(BinaryCacheUrl::Http("https://cache.nixos.org".into()))
        );
        assert_eq!(
            "file:///var/cache/nix".parse::<BinaryCacheUrl>(),
            Ok(BinaryCacheUrl::File("/var/cache/nix".into()))
        );
        for bad in [
            "cache.nixos.org",
            "file://relative",
            "file:///x?compression=none",
            "https://",
            "s3://bucket",
            "http:// x",
        ] {
            assert_eq!(
                bad.parse::<BinaryCacheUrl>(),
                Err(UpstreamError::Url(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn nar_files_stay_in_nar() {
        assert!(
            "1pyjbli83fr0czjwh7f8vcan19zl46b2b4wqvipxkb41y4x2rjb5.nar.xz"
                .parse::<NarFile>()
                .is_ok()
        );
        for bad in [
            "", "..", "../x.nar", "a/b.nar", ".hidden", "x y.nar", "x%2f.nar",
        ] {
            assert!(bad.parse::<NarFile>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn file_caches_answer_present_absent_and_failed() {
        let dir = tempfile::tempdir().unwrap();
        let hash: StorePathHash = "2yxrynmfrysg4jnwbdmngpv1zn9nwx74".parse().unwrap();
        std::fs::create_dir_all(dir.path().join("nar")).unwrap();
        std::fs::write(dir.path().join(format!("{hash}.narinfo")), "StorePath: x\n").unwrap();
        std::fs::write(dir.path().join("nar/a.nar"), b"nar bytes").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let url = |d: &std::path::Path| BinaryCacheUrl::File(d.to_owned());
        let both = Upstreams::new(
            vec![url(empty.path()), url(dir.path())],
            Duration::from_secs(5),
        )
        .unwrap();
        let found = both.narinfo(&hash).await.unwrap().unwrap();
        assert_eq!(found.text, "StorePath: x\n");
        assert_eq!(found.cache, format!("file://{}", dir.path().display()));
        let nar = both
            .nar(&"a.nar".parse().unwrap(), false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(nar.length, Some(9));
        let chunks: Vec<_> = nar.body.collect().await;
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap()).collect();
        assert_eq!(bytes, b"nar bytes");
        assert!(
            both.nar(&"b.nar".parse().unwrap(), true)
                .await
                .unwrap()
                .is_none()
        );

        // A cache that cannot be read makes absence unknown, not "absent".
        std::fs::create_dir(empty.path().join(format!("{hash}.narinfo"))).unwrap();
        let other: StorePathHash = "76ad9g8kg177c09lzrdqz74z289mc821".parse().unwrap();
        assert!(both.narinfo(&other).await.unwrap().is_none());
        let broken = Upstreams::new(vec![url(empty.path())], Duration::from_secs(5)).unwrap();
        assert!(matches!(
            broken.narinfo(&hash).await,
            Err(UpstreamError::Unavailable(_))
        ));
    }
}
