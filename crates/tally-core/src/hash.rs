//! SHA-256 digests, the one hash function Tally uses.
//!
//! A [`Hash`] prints as standard base64 (`UKvK8Sai4WKd30qm3U7wXJMCzREUTdKcYUn8jtkHVl0=`), the
//! form checkpoints and tlog-tiles use.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

/// The length of a [`Hash`] in bytes.
pub const HASH_LEN: usize = 32;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The all-zero value. Never the digest of anything in practice, so the sparse Merkle
    /// map uses it for empty subtrees.
    pub const ZERO: Hash = Hash([0; HASH_LEN]);

    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// SHA-256 of the concatenation of `parts`, without allocating.
    pub fn of_parts(parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        Hash(h.finalize().into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Standard base64 with padding.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Parses standard base64 with padding, as checkpoints carry it.
    pub fn from_base64(s: &str) -> Result<Hash, HashParseError> {
        let bytes = BASE64
            .decode(s)
            .map_err(|_| HashParseError::NotBase64(s.to_owned()))?;
        Hash::from_slice(&bytes).ok_or(HashParseError::Length(bytes.len()))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A hash from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        bytes.try_into().ok().map(Hash)
    }
}

/// Why a string is not a base64 SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    /// The text is not standard, padded base64.
    #[error("{0:?} is not standard padded base64")]
    NotBase64(String),
    /// The text decodes, but not to 32 bytes.
    #[error("a SHA-256 hash is 32 bytes, this decodes to {0}")]
    Length(usize),
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_base64())
    }
}

impl FromStr for Hash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_base64(s)
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_errors() {
        let h = Hash::of(b"leaf-0");
        assert_eq!(h.to_base64().parse::<Hash>(), Ok(h));
        assert_eq!(
            "AAAA".parse::<Hash>(),
            Err(HashParseError::Length(3)),
            "three bytes are not a hash"
        );
        assert!(matches!(
            "not base64!".parse::<Hash>(),
            Err(HashParseError::NotBase64(_))
        ));
    }

    #[test]
    fn parts_equal_concatenation() {
        assert_eq!(Hash::of_parts(&[b"ab", b"c"]), Hash::of(b"abc"));
    }
}
