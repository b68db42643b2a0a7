//! Nix store paths: `/nix/store/<hash>-<name>`.
//!
//! ```text
//! /nix/store/p4pclmv1gyja5kzc26npqpia1qqxrf0l-ruby-2.7.3
//!            |------------ hash -----------| |- name -|
//! ```
//!
//! The hash part is 32 nixbase32 characters (160 bits). The name follows Nix's rules: 1 to 211
//! characters from `A-Za-z0-9+-._?=`, and not `.`, `..`, or starting with `.-` or `..-`.
//! Tally supports the default store directory only, because the hash part is all a binary cache
//! request carries, and the same hash names the same path only within one store directory.

use std::fmt;
use std::str::FromStr;

use crate::nixbase32;

/// The store directory Tally's paths live in.
pub const STORE_DIR: &str = "/nix/store";

/// The longest store path name Nix accepts.
pub const MAX_NAME_LEN: usize = 211;

/// The digest length of a store path hash part, in bytes.
pub const HASH_BYTES: usize = 20;

/// The length of a store path hash part, in nixbase32 characters.
pub const HASH_CHARS: usize = 32;

/// The hash part of a store path: a 20-byte digest, written as 32 nixbase32 characters.
///
/// This is what a substituter request (`/<hash>.narinfo`) names, and what the log's map is
/// keyed by. It is kept as its text, so ordering is textual: the order Nix sorts references
/// in (nixbase32 writes the digest's bytes last-first, so byte order would differ).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePathHash([u8; HASH_CHARS]);

impl StorePathHash {
    /// The 32 characters.
    pub fn as_str(&self) -> &str {
        // Only nixbase32 (ASCII) text is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The hash part of a raw 20-byte digest.
    pub fn from_bytes(bytes: [u8; HASH_BYTES]) -> StorePathHash {
        let mut text = [0u8; HASH_CHARS];
        text.copy_from_slice(nixbase32::encode(&bytes).as_bytes());
        StorePathHash(text)
    }
}

impl FromStr for StorePathHash {
    type Err = StorePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // 32 digits encode exactly 160 bits, so any 32 digits are a valid hash part; decode
        // only to report what is wrong.
        if s.len() != HASH_CHARS || !nixbase32::is_valid(s) {
            let source = nixbase32::decode(s, HASH_BYTES)
                .err()
                .unwrap_or(nixbase32::DecodeError::Overflow);
            return Err(StorePathError::Hash {
                hash: s.to_owned(),
                source,
            });
        }
        let mut text = [0u8; HASH_CHARS];
        text.copy_from_slice(s.as_bytes());
        Ok(StorePathHash(text))
    }
}

impl fmt::Display for StorePathHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for StorePathHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StorePathHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for StorePathHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePathHash({self})")
    }
}

/// A valid Nix store path under [`STORE_DIR`].
///
/// Ordering is by basename text (hash part, then name), the order Nix sorts references in.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    hash: StorePathHash,
    name: Box<str>,
}

/// Why a string is not a valid store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorePathError {
    /// The path is not directly inside `/nix/store/`.
    #[error(
        "{0:?} is not in the Nix store: store paths look like /nix/store/<32-char hash>-<name>"
    )]
    NotInStore(String),
    /// The basename has no `-` after a 32-character hash part.
    #[error("{0:?} is not <32-char hash>-<name>")]
    Shape(String),
    /// The hash part is not 32 nixbase32 characters.
    #[error("bad store path hash {hash:?}: {source}")]
    Hash {
        /// The offending hash part.
        hash: String,
        /// What is wrong with it.
        source: nixbase32::DecodeError,
    },
    /// The name is empty.
    #[error("store path name is empty")]
    EmptyName,
    /// The name is longer than Nix allows.
    #[error("store path name is {0} characters, Nix allows at most {MAX_NAME_LEN}")]
    NameTooLong(usize),
    /// The name contains a character Nix does not allow.
    #[error("store path name {name:?} contains {bad:?}; allowed are A-Z a-z 0-9 and + - . _ ? =")]
    NameCharacter {
        /// The offending name.
        name: String,
        /// The first bad character.
        bad: char,
    },
    /// The name is `.` or `..`, or starts with `.-` or `..-`.
    #[error("store path name {0:?} is reserved: it must not be . or .. or start with .- or ..-")]
    NameReserved(String),
}

/// Checks a store path name (the part after `<hash>-`) against Nix's rules.
pub fn check_name(name: &str) -> Result<(), StorePathError> {
    if name.is_empty() {
        return Err(StorePathError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StorePathError::NameTooLong(name.len()));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(c)))
    {
        return Err(StorePathError::NameCharacter {
            name: name.to_owned(),
            bad,
        });
    }
    let reserved = name == "." || name == ".." || name.starts_with(".-") || name.starts_with("..-");
    if reserved {
        return Err(StorePathError::NameReserved(name.to_owned()));
    }
    Ok(())
}

impl StorePath {
    /// Parses a full path, `/nix/store/<hash>-<name>`.
    pub fn parse(path: &str) -> Result<StorePath, StorePathError> {
        let base = path
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|base| !base.contains('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_owned()))?;
        StorePath::from_basename(base)
    }

    /// Parses a basename, `<hash>-<name>`, as narinfo `References` lines carry them.
    pub fn from_basename(base: &str) -> Result<StorePath, StorePathError> {
        let (hash, name) = match (base.get(..HASH_CHARS), base.get(HASH_CHARS..)) {
            (Some(hash), Some(rest)) if rest.starts_with('-') => (hash, &rest[1..]),
            _ => return Err(StorePathError::Shape(base.to_owned())),
        };
        let hash: StorePathHash = hash.parse()?;
        check_name(name)?;
        Ok(StorePath {
            hash,
            name: name.into(),
        })
    }

    /// The store path that `path` is, or lies inside: `/nix/store/<hash>-<name>/bin/x` is in
    /// `/nix/store/<hash>-<name>`.
    pub fn containing(path: &str) -> Result<StorePath, StorePathError> {
        let base = path
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| rest.split('/').next().unwrap_or_default())
            .ok_or_else(|| StorePathError::NotInStore(path.to_owned()))?;
        StorePath::from_basename(base)
    }

    /// Parses either a full path or a basename.
    pub fn parse_lenient(s: &str) -> Result<StorePath, StorePathError> {
        if s.starts_with('/') {
            StorePath::parse(s)
        } else {
            StorePath::from_basename(s)
        }
    }

    /// The hash part.
    pub fn hash(&self) -> StorePathHash {
        self.hash
    }

    /// The name after the hash part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<hash>-<name>`.
    pub fn basename(&self) -> String {
        format!("{}-{}", self.hash, self.name)
    }

    /// Whether this is a derivation (`.drv`) path.
    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }
}

/// The hash part of a path as a user or a client asks about it: a store path, a path inside
/// one, or a bare 32-character hash part. Every service and command reads paths with this.
pub fn hash_of_query(query: &str) -> Result<StorePathHash, StorePathError> {
    if query.starts_with('/') {
        StorePath::containing(query).map(|p| p.hash())
    } else {
        query.parse()
    }
}

impl FromStr for StorePath {
    type Err = StorePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorePath::parse(s)
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}-{}", self.hash, self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({self})")
    }
}

impl serde::Serialize for StorePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StorePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StorePath::parse_lenient(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "/nix/store/p4pclmv1gyja5kzc26npqpia1qqxrf0l-ruby-2.7.3";

    #[test]
    fn parses_and_prints() {
        let p = StorePath::parse(GOOD).unwrap();
        assert_eq!(p.hash().to_string(), "p4pclmv1gyja5kzc26npqpia1qqxrf0l");
        assert_eq!(p.name(), "ruby-2.7.3");
        assert_eq!(p.to_string(), GOOD);
        assert_eq!(p.basename(), "p4pclmv1gyja5kzc26npqpia1qqxrf0l-ruby-2.7.3");
        assert_eq!(StorePath::from_basename(&p.basename()), Ok(p.clone()));
        assert_eq!(StorePath::parse_lenient(&p.basename()), Ok(p));
    }

    #[test]
    fn orders_by_text_as_nix_does() {
        // Byte order of the digests would put these the other way round.
        let a = StorePath::parse("/nix/store/2nwkczqiipyj9dal1ipxr5xrwqdiyx09-tally-e2e-multi-dev")
            .unwrap();
        let b = StorePath::parse("/nix/store/8yv658alr3r84yxc18i6gcr18dy538h3-tally-e2e-single")
            .unwrap();
        let c = StorePath::parse("/nix/store/j4pjc7y9ihkhm01kmva89899jw9qv7di-tally-e2e-multi-lib")
            .unwrap();
        let mut v = vec![c.clone(), b.clone(), a.clone()];
        v.sort();
        assert_eq!(v, [a, b, c]);
    }

    #[test]
    fn accepts_every_allowed_name_character() {
        let name = "AZaz09+-._?=";
        let p = format!("/nix/store/{}-{name}", "0".repeat(32));
        assert_eq!(StorePath::parse(&p).unwrap().name(), name);
        let long = format!("/nix/store/{}-{}", "0".repeat(32), "a".repeat(MAX_NAME_LEN));
        assert!(StorePath::parse(&long).is_ok());
        let dotted = format!("/nix/store/{}-.config", "0".repeat(32));
        assert!(
            StorePath::parse(&dotted).is_ok(),
            "a leading dot alone is allowed"
        );
    }

    #[test]
    fn rejects_bad_paths_naming_the_problem() {
        let h = "p4pclmv1gyja5kzc26npqpia1qqxrf0l";
        let cases: &[(String, StorePathError)] = &[
            (
                format!("/usr/store/{h}-x"),
                StorePathError::NotInStore(format!("/usr/store/{h}-x")),
            ),
            (
                format!("/nix/store/{h}-x/bin/ruby"),
                StorePathError::NotInStore(format!("/nix/store/{h}-x/bin/ruby")),
            ),
            (
                format!("/nix/store/{h}"),
                StorePathError::Shape(h.to_owned()),
            ),
            (
                format!("/nix/store/{h}_x"),
                StorePathError::Shape(format!("{h}_x")),
            ),
            (format!("/nix/store/{h}-"), StorePathError::EmptyName),
            (
                format!("/nix/store/{h}-{}", "a".repeat(212)),
                StorePathError::NameTooLong(212),
            ),
            (
                format!("/nix/store/{h}-a b"),
                StorePathError::NameCharacter {
                    name: "a b".into(),
                    bad: ' ',
                },
            ),
            (
                format!("/nix/store/{h}-.."),
                StorePathError::NameReserved("..".into()),
            ),
            (
                format!("/nix/store/{h}-.-x"),
                StorePathError::NameReserved(".-x".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(StorePath::parse(input).as_ref(), Err(want), "{input}");
        }
        let bad_hash = "/nix/store/p4pclmv1gyja5kzc26npqpia1qqxrf0e-ruby";
        let err = StorePath::parse(bad_hash).unwrap_err();
        assert!(matches!(err, StorePathError::Hash { .. }), "{err}");
        assert!(err.to_string().contains("'e'"), "{err}");
    }
}
