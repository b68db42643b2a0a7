//! Narinfo files: what a binary cache says about one store path, and the signature Nix checks.
//!
//! A narinfo as `nix copy --to file://…` writes it (Nix 2.8):
//!
//! ```text
//! StorePath: /nix/store/psr8z1hjvldg5gp45wb8cx0152wbp02i-refs
//! URL: nar/1pyjbli83fr0czjwh7f8vcan19zl46b2b4wqvipxkb41y4x2rjb5.nar
//! Compression: none
//! FileHash: sha256:1pyjbli83fr0czjwh7f8vcan19zl46b2b4wqvipxkb41y4x2rjb5
//! FileSize: 832
//! NarHash: sha256:1pyjbli83fr0czjwh7f8vcan19zl46b2b4wqvipxkb41y4x2rjb5
//! NarSize: 832
//! References: 2yxrynmfrysg4jnwbdmngpv1zn9nwx74-single 76ad9g8kg177c09lzrdqz74z289mc821-multi-lib
//! Deriver: v6jxf06wl377g4dyzvhyjs5b5dxbzilc-refs.drv
//! Sig: tally-cache-1:npHFMl87K1GMZC8awizlScHA3xDMSR+gcmoj6h1ZPWdEu4J+hnTl83so8TqJ9uEM3kyxih4Fvyhnb6VOGr6CCQ==
//! ```
//!
//! Every line is `Key: value` and ends in `\n`; `References` and `Deriver` are basenames. A
//! `Sig:` is Ed25519, by the named key, over the [fingerprint](NarInfo::fingerprint):
//! `1;<path>;<NarHash as sha256:nixbase32>;<NarSize>;<references as full paths, joined by ','>`.
//!
//! The parser is stricter than Nix where Nix would be ambiguous (a repeated field) and equally
//! strict where Nix fails (no final newline, `\r`, a missing required field): a proxy that
//! re-signs what it parsed must not read a file differently from the client that checks it.

use std::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tally_core::{
    Attestation, AttestationError, AttestationFields, NarHash, SigningKey, StorePath, VerifyingKey,
};

/// One store path's narinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarInfo {
    /// The store path described.
    pub store_path: StorePath,
    /// Where the NAR file is, relative to the cache (or absolute).
    pub url: String,
    /// The NAR file's compression (`none`, `xz`, `zstd`, …), if stated. Nix assumes `bzip2`
    /// when it is not.
    pub compression: Option<String>,
    /// The NAR file's hash, as written.
    pub file_hash: Option<String>,
    /// The NAR file's size, as written.
    pub file_size: Option<String>,
    /// The NAR's hash.
    pub nar_hash: NarHash,
    /// The NAR's size.
    pub nar_size: u64,
    /// The references, sorted and without duplicates.
    pub references: Vec<StorePath>,
    /// The derivation that built it, if known.
    pub deriver: Option<StorePath>,
    /// The `Sig:` lines' values, `name:base64`.
    pub signatures: Vec<String>,
    /// A content address, as written.
    pub ca: Option<String>,
    /// Other fields, in order, passed on as they are.
    pub other: Vec<(String, String)>,
}

/// Why a narinfo does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NarInfoError {
    /// The text does not end in a newline; Nix refuses such a file.
    #[error("narinfo does not end with a newline")]
    NoFinalNewline,
    /// A line is not `Key: value`.
    #[error("narinfo line {line}: {problem}")]
    Line {
        /// 1-based.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A field's value does not parse.
    #[error("narinfo field {field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong, naming the value.
        problem: String,
    },
    /// A required field is missing.
    #[error("narinfo has no {0} field")]
    Missing(&'static str),
    /// A field other than `Sig` appears twice.
    #[error("narinfo field {0} appears twice")]
    Repeated(String),
}

fn field_error(field: &'static str, problem: impl fmt::Display) -> NarInfoError {
    NarInfoError::Field {
        field,
        problem: problem.to_string(),
    }
}

impl NarInfo {
    /// Parses a narinfo.
    pub fn parse(text: &str) -> Result<NarInfo, NarInfoError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NarInfoError::NoFinalNewline)?;
        let mut store_path = None;
        let mut url = None;
        let mut compression = None;
        let mut file_hash = None;
        let mut file_size = None;
        let mut nar_hash = None;
        let mut nar_size = None;
        let mut references = None;
        let mut deriver = None;
        let mut ca = None;
        let mut signatures = Vec::new();
        let mut other: Vec<(String, String)> = Vec::new();
        for (i, line) in body.split('\n').enumerate() {
            let bad = |problem: String| NarInfoError::Line {
                line: i + 1,
                problem,
            };
            if let Some(c) = line.chars().find(|c| c.is_control()) {
                return Err(bad(format!("control character {c:?}")));
            }
            let (key, value) = line
                .split_once(": ")
                .ok_or_else(|| bad(format!("{line:?} is not `Key: value`")))?;
            if key.is_empty() || key.contains(' ') {
                return Err(bad(format!("{key:?} is not a field name")));
            }
            let slot = match key {
                "StorePath" => {
                    let p = StorePath::parse(value).map_err(|e| field_error("StorePath", e))?;
                    set(&mut store_path, p)
                }
                "URL" => set(&mut url, value.to_owned()),
                "Compression" => set(&mut compression, value.to_owned()),
                "FileHash" => set(&mut file_hash, value.to_owned()),
                "FileSize" => set(&mut file_size, value.to_owned()),
                "NarHash" => {
                    let h = value
                        .parse::<NarHash>()
                        .map_err(|e| field_error("NarHash", e))?;
                    set(&mut nar_hash, h)
                }
                "NarSize" => {
                    let n = value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            field_error("NarSize", format!("{value:?} is not a positive size"))
                        })?;
                    set(&mut nar_size, n)
                }
                "References" => {
                    let mut refs = value
                        .split(' ')
                        .filter(|r| !r.is_empty())
                        .map(StorePath::from_basename)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| field_error("References", e))?;
                    refs.sort();
                    refs.dedup();
                    set(&mut references, refs)
                }
                "Deriver" => {
                    let d = match value {
                        "unknown-deriver" => None,
                        v => Some(
                            StorePath::from_basename(v).map_err(|e| field_error("Deriver", e))?,
                        ),
                    };
                    set(&mut deriver, d)
                }
                "CA" => set(&mut ca, value.to_owned()),
                "Sig" => {
                    signatures.push(value.to_owned());
                    true
                }
                _ => {
                    let fresh = other.iter().all(|(k, _)| k != key);
                    other.push((key.to_owned(), value.to_owned()));
                    fresh
                }
            };
            if !slot {
                return Err(NarInfoError::Repeated(key.to_owned()));
            }
        }
        Ok(NarInfo {
            store_path: store_path.ok_or(NarInfoError::Missing("StorePath"))?,
            url: url.ok_or(NarInfoError::Missing("URL"))?,
            compression,
            file_hash,
            file_size,
            nar_hash: nar_hash.ok_or(NarInfoError::Missing("NarHash"))?,
            nar_size: nar_size.ok_or(NarInfoError::Missing("NarSize"))?,
            references: references.unwrap_or_default(),
            deriver: deriver.flatten(),
            signatures,
            ca,
            other,
        })
    }

    /// What Nix signs: `1;<path>;<nar hash>;<nar size>;<references>`.
    pub fn fingerprint(&self) -> String {
        let refs: Vec<String> = self.references.iter().map(ToString::to_string).collect();
        format!(
            "1;{};{};{};{}",
            self.store_path,
            self.nar_hash,
            self.nar_size,
            refs.join(",")
        )
    }

    /// Replaces every signature with one by `key`.
    pub fn sign(&mut self, key: &SigningKey) {
        let sig = key.sign(self.fingerprint().as_bytes());
        self.signatures = vec![format!("{}:{}", key.name(), BASE64.encode(sig))];
    }

    /// Whether a `Sig:` line by `key` verifies.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let fingerprint = self.fingerprint();
        self.signatures.iter().any(|s| {
            s.split_once(':').is_some_and(|(name, sig)| {
                name == key.name().as_str()
                    && BASE64
                        .decode(sig)
                        .is_ok_and(|sig| key.verify(fingerprint.as_bytes(), &sig))
            })
        })
    }

    /// The output's name in its deriver, by Nix's naming rule: output `out` of `<name>.drv`
    /// is `<name>`, output `o` is `<name>-o`. `None` without a deriver, or when the path's
    /// name does not follow the rule (fixed-output paths may be named freely).
    pub fn output_name(&self) -> Option<String> {
        let drv = self.deriver.as_ref()?.name().strip_suffix(".drv")?;
        let name = self.store_path.name();
        if name == drv {
            return Some("out".into());
        }
        let output = name.strip_prefix(drv)?.strip_prefix('-')?;
        tally_core::store_path::check_name(output).ok()?;
        Some(output.to_owned())
    }

    /// The attestation this narinfo makes: its NAR, references and deriver, and the output
    /// name where [`output_name`](NarInfo::output_name) can tell it (else *unknown*).
    pub fn attestation(&self) -> Result<Attestation, AttestationError> {
        let output_name = self.output_name();
        Attestation::new(AttestationFields {
            drv_path: self.deriver.clone(),
            output_name,
            output_path: self.store_path.clone(),
            nar_hash: self.nar_hash,
            nar_size: self.nar_size,
            references: self.references.clone(),
        })
    }
}

/// Fills an empty slot; false if it was already filled.
fn set<T>(slot: &mut Option<T>, value: T) -> bool {
    slot.replace(value).is_none()
}

impl fmt::Display for NarInfo {
    /// The narinfo text, fields in the order Nix writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "StorePath: {}", self.store_path)?;
        writeln!(f, "URL: {}", self.url)?;
        if let Some(c) = &self.compression {
            writeln!(f, "Compression: {c}")?;
        }
        if let Some(h) = &self.file_hash {
            writeln!(f, "FileHash: {h}")?;
        }
        if let Some(s) = &self.file_size {
            writeln!(f, "FileSize: {s}")?;
        }
        writeln!(f, "NarHash: {}", self.nar_hash)?;
        writeln!(f, "NarSize: {}", self.nar_size)?;
        let mut refs = String::new();
        for (i, r) in self.references.iter().enumerate() {
            if i > 0 {
                refs.push(' ');
            }
            let _ = write!(refs, "{}", r.basename());
        }
        writeln!(f, "References: {refs}")?;
        if let Some(d) = &self.deriver {
            writeln!(f, "Deriver: {}", d.basename())?;
        }
        for s in &self.signatures {
            writeln!(f, "Sig: {s}")?;
        }
        if let Some(ca) = &self.ca {
            writeln!(f, "CA: {ca}")?;
        }
        for (k, v) in &self.other {
            writeln!(f, "{k}: {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
