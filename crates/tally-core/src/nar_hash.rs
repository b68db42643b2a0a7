//! The SHA-256 of a store path's NAR serialisation, as Nix prints it.
//!
//! Three spellings of one value are accepted, and each can be printed (here, the SHA-256 of
//! nothing):
//!
//! ```text
//! sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73             nixbase32, as narinfo
//! sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=                     SRI
//! sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 hex
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::hash::Hash;
use crate::nixbase32;

/// A NAR hash. Only SHA-256 is supported: it is what Nix records for every valid path.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NarHash(Hash);

/// Why a string is not a SHA-256 NAR hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NarHashError {
    /// Neither `sha256:` nor `sha256-` starts the string.
    #[error(
        "{0:?} is not a SHA-256 NAR hash: expected sha256:<52 nixbase32 chars>, \
         sha256:<64 hex chars> or sha256-<base64> (SRI)"
    )]
    Prefix(String),
    /// The digest after `sha256:` has a length that is neither nixbase32 (52) nor hex (64).
    #[error(
        "{hash:?} has a {len}-character digest; sha256 digests are 52 (nixbase32) or 64 (hex) characters"
    )]
    Length {
        /// The offending text.
        hash: String,
        /// Its digest length.
        len: usize,
    },
    /// The digest is not valid in its encoding.
    #[error("{hash:?}: {reason}")]
    Digest {
        /// The offending text.
        hash: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl NarHash {
    /// Wraps a raw digest.
    pub fn from_digest(digest: Hash) -> NarHash {
        NarHash(digest)
    }

    /// The raw digest.
    pub fn digest(&self) -> Hash {
        self.0
    }

    /// `sha256:<nixbase32>`, the form narinfo files and `nix-store -q --hash` use.
    pub fn to_nix32(&self) -> String {
        format!("sha256:{}", nixbase32::encode(self.0.as_bytes()))
    }

    /// `sha256-<base64>`, the SRI form newer Nix prints.
    pub fn to_sri(&self) -> String {
        format!("sha256-{}", BASE64.encode(self.0.as_bytes()))
    }

    /// `sha256:<hex>`.
    pub fn to_hex(&self) -> String {
        format!("sha256:{}", self.0.to_hex())
    }
}

impl FromStr for NarHash {
    type Err = NarHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digest_err = |reason: String| NarHashError::Digest {
            hash: s.to_owned(),
            reason,
        };
        let bytes = if let Some(b64) = s.strip_prefix("sha256-") {
            let bytes = BASE64
                .decode(b64)
                .map_err(|e| digest_err(format!("not base64: {e}")))?;
            if bytes.len() != 32 {
                return Err(digest_err(format!(
                    "decodes to {} bytes, sha256 is 32",
                    bytes.len()
                )));
            }
            bytes
        } else if let Some(digest) = s.strip_prefix("sha256:") {
            match digest.len() {
                52 => nixbase32::decode(digest, 32).map_err(|e| digest_err(e.to_string()))?,
                64 if digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
                {
                    hex::decode(digest).map_err(|e| digest_err(e.to_string()))?
                }
                64 => return Err(digest_err("not lower-case hex".into())),
                len => {
                    return Err(NarHashError::Length {
                        hash: s.to_owned(),
                        len,
                    });
                }
            }
        } else {
            return Err(NarHashError::Prefix(s.to_owned()));
        };
        Ok(NarHash(
            Hash::from_slice(&bytes).ok_or_else(|| digest_err("wrong digest length".into()))?,
        ))
    }
}

impl fmt::Display for NarHash {
    /// Prints the nixbase32 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix32())
    }
}

impl fmt::Debug for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NarHash({})", self.to_nix32())
    }
}

impl serde::Serialize for NarHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_nix32())
    }
}

impl<'de> serde::Deserialize<'de> for NarHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-256 of the empty string in each spelling.
    const NIX32: &str = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    const HEX: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn three_spellings_one_value() {
        let a: NarHash = NIX32.parse().unwrap();
        let b: NarHash = SRI.parse().unwrap();
        let c: NarHash = HEX.parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.digest(), Hash::of(b""));
        assert_eq!(a.to_nix32(), NIX32);
        assert_eq!(a.to_sri(), SRI);
        assert_eq!(a.to_hex(), HEX);
        assert_eq!(a.to_string(), NIX32);
    }

    #[test]
    fn rejects_naming_the_problem() {
        assert!(matches!(
            "md5:abc".parse::<NarHash>(),
            Err(NarHashError::Prefix(_))
        ));
        assert!(matches!(
            "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7".parse::<NarHash>(),
            Err(NarHashError::Length { len: 51, .. })
        ));
        let upper = HEX.to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(
            upper.parse::<NarHash>(),
            Err(NarHashError::Digest { .. })
        ));
        assert!(matches!(
            "sha256-AAAA".parse::<NarHash>(),
            Err(NarHashError::Digest { .. })
        ));
        let err = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7e"
            .parse::<NarHash>()
            .unwrap_err();
        assert!(err.to_string().contains("'e'"), "{err}");
    }
}
