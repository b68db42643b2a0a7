//! Attestations: one build output as one builder saw it. The leaf of a Tally log.
//!
//! The encoding is canonical text, one field per line, every line ending in `\n`:
//!
//! ```text
//! tally/attestation/v1
//! drv /nix/store/1ynz2k0vz8rqdgdwqjdxk2hqbgysrgjq-hello-2.12.1.drv
//! output out
//! path /nix/store/7wm0wahkpyx0dd44m7r9g8gp1jl4rl59-hello-2.12.1
//! nar-hash sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73
//! nar-size 226560
//! ref 7wm0wahkpyx0dd44m7r9g8gp1jl4rl59-hello-2.12.1
//! ref 9y8pmvk8gdwwznmkzxa6pwyah52xy3nk-glibc-2.38-27
//! ```
//!
//! Each attestation has exactly one encoding, and [`Attestation::decode`] accepts nothing
//! else: fields in this order, single spaces, `nar-hash` in nixbase32, `nar-size` without
//! leading zeros, references as basenames, strictly ascending, and at most
//! [`MAX_ENCODED_LEN`] bytes so an entry fits a tlog-tiles entry bundle. `drv <unknown>` and
//! `output <unknown>` record that the deriver or output name is not known (attestations
//! imported from a binary cache); `<` is not allowed in store paths or output names, so the
//! marker cannot be mistaken for a value.

use std::fmt;

use crate::nar_hash::NarHash;
use crate::store_path::{self, StorePath, StorePathError};

/// The first line of every version-1 attestation.
pub const HEADER: &str = "tally/attestation/v1";

/// The largest encoding, in bytes: the tlog-tiles entry bundle limit.
pub const MAX_ENCODED_LEN: usize = 65_535;

/// The marker for a deriver or output name that is not known.
pub const UNKNOWN: &str = "<unknown>";

/// An attestation: the facts a narinfo signs, plus the derivation and output they came from.
///
/// Built only through [`Attestation::new`] or [`Attestation::decode`], so it is always valid
/// and its canonical bytes are always at hand.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Attestation {
    fields: AttestationFields,
    encoded: Box<[u8]>,
}

/// The fields of an attestation, before validation. Also its JSON form.
///
/// ```json
/// {"drv_path": "/nix/store/…-hello-2.12.1.drv", "output_name": "out",
///  "output_path": "/nix/store/…-hello-2.12.1", "nar_hash": "sha256:…",
///  "nar_size": 226560, "references": ["…-glibc-2.38-27"]}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationFields {
    /// The derivation that built the output, if known.
    #[serde(default)]
    pub drv_path: Option<StorePath>,
    /// The output's name in that derivation (`out`, `dev`, …), if known.
    #[serde(default)]
    pub output_name: Option<String>,
    /// The output path.
    pub output_path: StorePath,
    /// SHA-256 of the output's NAR serialisation.
    pub nar_hash: NarHash,
    /// Size of the NAR serialisation in bytes.
    pub nar_size: u64,
    /// The store paths the output refers to. Order and duplicates do not matter on input.
    #[serde(default)]
    pub references: Vec<StorePath>,
}

/// Why bytes or fields do not make a valid attestation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The deriver is not a `.drv` path.
    #[error("drv path {0} does not end in .drv")]
    NotDerivation(String),
    /// The output name breaks Nix's name rules.
    #[error("output name {name:?}: {source}")]
    OutputName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        source: StorePathError,
    },
    /// The encoding would exceed [`MAX_ENCODED_LEN`].
    #[error("attestation encodes to {0} bytes; the limit is {MAX_ENCODED_LEN}")]
    TooLarge(usize),
    /// Bytes are not UTF-8.
    #[error("attestation is not UTF-8")]
    NotUtf8,
    /// A line is missing, out of order or malformed.
    #[error("attestation line {line}: expected {expected}, found {found:?}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What the grammar requires there.
        expected: &'static str,
        /// What is there.
        found: String,
    },
    /// A store path field does not parse.
    #[error("attestation line {line}: {source}")]
    StorePath {
        /// 1-based line number.
        line: usize,
        /// What is wrong with the path.
        source: StorePathError,
    },
    /// Well-formed, but not the canonical encoding (for example a hex NAR hash, unsorted
    /// references, or a size with leading zeros).
    #[error("attestation line {line} is not canonical: expected {expected:?}, found {found:?}")]
    NotCanonical {
        /// 1-based line number.
        line: usize,
        /// The canonical line.
        expected: String,
        /// The line given.
        found: String,
    },
}

impl Attestation {
    /// Validates `fields` and computes the canonical encoding. References are sorted and
    /// de-duplicated.
    pub fn new(mut fields: AttestationFields) -> Result<Attestation, AttestationError> {
        check(&fields)?;
        fields.references.sort();
        fields.references.dedup();
        let encoded = encode(&fields);
        if encoded.len() > MAX_ENCODED_LEN {
            return Err(AttestationError::TooLarge(encoded.len()));
        }
        Ok(Attestation {
            fields,
            encoded: encoded.into_bytes().into_boxed_slice(),
        })
    }

    /// Decodes a canonical encoding, rejecting every other byte string.
    ///
    /// The parser accepts only canonical spellings, so the bytes it accepts are the bytes
    /// [`Attestation::new`] encodes the fields to; a property test holds it to that.
    pub fn decode(bytes: &[u8]) -> Result<Attestation, AttestationError> {
        if bytes.len() > MAX_ENCODED_LEN {
            return Err(AttestationError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| AttestationError::NotUtf8)?;
        let fields = parse(text)?;
        check(&fields)?;
        Ok(Attestation {
            fields,
            encoded: bytes.into(),
        })
    }

    /// The canonical encoding: the log leaf.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The fields.
    pub fn fields(&self) -> &AttestationFields {
        &self.fields
    }

    /// The output path.
    pub fn output_path(&self) -> &StorePath {
        &self.fields.output_path
    }

    /// The NAR hash.
    pub fn nar_hash(&self) -> NarHash {
        self.fields.nar_hash
    }

    /// The NAR size.
    pub fn nar_size(&self) -> u64 {
        self.fields.nar_size
    }

    /// The references, sorted.
    pub fn references(&self) -> &[StorePath] {
        &self.fields.references
    }

    /// The deriver, if known.
    pub fn drv_path(&self) -> Option<&StorePath> {
        self.fields.drv_path.as_ref()
    }

    /// The output name, if known.
    pub fn output_name(&self) -> Option<&str> {
        self.fields.output_name.as_deref()
    }

    /// Whether two attestations vouch for the same NAR: hash, size and references. These are
    /// the facts a narinfo's signature covers; who built it and from which derivation may
    /// differ between honest builders.
    pub fn same_nar(&self, other: &Attestation) -> bool {
        self.fields.nar_hash == other.fields.nar_hash
            && self.fields.nar_size == other.fields.nar_size
            && self.fields.references == other.fields.references
    }
}

impl TryFrom<AttestationFields> for Attestation {
    type Error = AttestationError;
    fn try_from(fields: AttestationFields) -> Result<Self, Self::Error> {
        Attestation::new(fields)
    }
}

impl fmt::Debug for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Attestation").field(&self.fields).finish()
    }
}

impl serde::Serialize for Attestation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Attestation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Attestation::new(AttestationFields::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What every attestation's fields must satisfy, beyond their types.
fn check(fields: &AttestationFields) -> Result<(), AttestationError> {
    if let Some(drv) = fields.drv_path.as_ref().filter(|d| !d.is_derivation()) {
        return Err(AttestationError::NotDerivation(drv.to_string()));
    }
    if let Some(name) = &fields.output_name {
        store_path::check_name(name).map_err(|source| AttestationError::OutputName {
            name: name.clone(),
            source,
        })?;
    }
    Ok(())
}

fn encode(f: &AttestationFields) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(256 + 48 * f.references.len());
    let drv = f.drv_path.as_ref().map(|p| p.to_string());
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "{HEADER}\ndrv {}\noutput {}\npath {}\nnar-hash {}\nnar-size {}\n",
        drv.as_deref().unwrap_or(UNKNOWN),
        f.output_name.as_deref().unwrap_or(UNKNOWN),
        f.output_path,
        f.nar_hash.to_nix32(),
        f.nar_size,
    );
    for r in &f.references {
        let _ = writeln!(s, "ref {}-{}", r.hash(), r.name());
    }
    s
}

fn parse(text: &str) -> Result<AttestationFields, AttestationError> {
    let Some(body) = text.strip_suffix('\n') else {
        return Err(AttestationError::Line {
            line: text.split('\n').count(),
            expected: "a final newline",
            found: text.rsplit('\n').next().unwrap_or_default().to_owned(),
        });
    };
    let lines: Vec<&str> = body.split('\n').collect();
    // Line `n` (1-based), or an error saying what should have been there.
    let line = |n: usize, expected: &'static str| {
        lines.get(n - 1).copied().ok_or(AttestationError::Line {
            line: n,
            expected,
            found: "the end of the attestation".into(),
        })
    };
    if line(1, HEADER)? != HEADER {
        return Err(line_err(1, HEADER, lines[0]));
    }
    let drv = field(2, line(2, "drv <path>")?, "drv", "drv <path>")?;
    let drv_path = match drv {
        UNKNOWN => None,
        path => Some(store_path(2, path)?),
    };
    let output = field(3, line(3, "output <name>")?, "output", "output <name>")?;
    let output_name = (output != UNKNOWN).then(|| output.to_owned());
    let path = field(4, line(4, "path <path>")?, "path", "path <path>")?;
    let output_path = store_path(4, path)?;
    const HASH: &str = "nar-hash sha256:<52 nixbase32 chars>";
    let hash = field(5, line(5, HASH)?, "nar-hash", HASH)?;
    let nar_hash = hash
        .parse::<NarHash>()
        .map_err(|_| line_err(5, HASH, hash))?;
    let canonical = nar_hash.to_nix32();
    if hash != canonical {
        return Err(not_canonical(
            5,
            format!("nar-hash {canonical}"),
            format!("nar-hash {hash}"),
        ));
    }
    let size = field(
        6,
        line(6, "nar-size <decimal>")?,
        "nar-size",
        "nar-size <decimal>",
    )?;
    let nar_size = Some(size)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| line_err(6, "nar-size <decimal>", size))?;
    if nar_size.to_string() != size {
        return Err(not_canonical(
            6,
            format!("nar-size {nar_size}"),
            format!("nar-size {size}"),
        ));
    }
    let mut references = Vec::with_capacity(lines.len().saturating_sub(6));
    for (i, text) in lines.iter().enumerate().skip(6) {
        let n = i + 1;
        let r = field(n, text, "ref", "ref <basename>")?;
        let r = StorePath::from_basename(r)
            .map_err(|source| AttestationError::StorePath { line: n, source })?;
        if let Some(previous) = references.last().filter(|p| **p >= r) {
            return Err(not_canonical(
                n,
                format!("references sorted and unique: ref {previous} before ref {r} is not"),
                format!("ref {}", r.basename()),
            ));
        }
        references.push(r);
    }
    Ok(AttestationFields {
        drv_path,
        output_name,
        output_path,
        nar_hash,
        nar_size,
        references,
    })
}

/// Splits `key value` and checks the key.
fn field<'a>(
    n: usize,
    line: &'a str,
    key: &str,
    expected: &'static str,
) -> Result<&'a str, AttestationError> {
    line.strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| line_err(n, expected, line))
}

fn store_path(line: usize, s: &str) -> Result<StorePath, AttestationError> {
    StorePath::parse(s).map_err(|source| AttestationError::StorePath { line, source })
}

fn line_err(line: usize, expected: &'static str, found: &str) -> AttestationError {
    AttestationError::Line {
        line,
        expected,
        found: found.to_owned(),
    }
}

fn not_canonical(line: usize, expected: String, found: String) -> AttestationError {
    AttestationError::NotCanonical {
        line,
        expected,
        found,
    }
}

#[cfg(test)]
pub(crate) mod tests;
