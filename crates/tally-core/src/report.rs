//! Reproducibility reports: of the paths in a closure or an SBOM, which did independent
//! builders reproduce?
//!
//! Unlike a [`Policy`](crate::policy::Policy) verdict, which answers "may I install this?",
//! a path's [`Reproducibility`] describes the evidence, whatever the policy:
//!
//! | class | the followed logs |
//! |---|---|
//! | `reproduced` | at least two attest it, and all that do attest the same NAR |
//! | `disputed` | attest different NARs (hash, size or references) |
//! | `single` | exactly one attests it |
//! | `unknown` | none attests it |
//!
//! A log that cannot be asked, or is excluded after evidence of misbehaviour, attests nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::policy::Candidate;
use crate::store_path::{StorePath, StorePathError};

/// What the followed logs say about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reproducibility {
    /// At least two logs attest it, all the same NAR.
    Reproduced,
    /// Logs attest different NARs.
    Disputed,
    /// Exactly one log attests it.
    Single,
    /// No log attests it.
    Unknown,
}

impl Reproducibility {
    /// Every class, in report order.
    pub const ALL: [Reproducibility; 4] = [
        Reproducibility::Reproduced,
        Reproducibility::Disputed,
        Reproducibility::Single,
        Reproducibility::Unknown,
    ];

    /// Classifies a path from the NARs attested for it, as
    /// [`policy::candidates`](crate::policy::candidates) groups them.
    pub fn of(candidates: &[Candidate]) -> Reproducibility {
        match candidates {
            [] => Reproducibility::Unknown,
            [one] if one.origins.len() == 1 => Reproducibility::Single,
            [_] => Reproducibility::Reproduced,
            _ => Reproducibility::Disputed,
        }
    }

    /// `reproduced`, `disputed`, `single` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Reproducibility::Reproduced => "reproduced",
            Reproducibility::Disputed => "disputed",
            Reproducibility::Single => "single",
            Reproducibility::Unknown => "unknown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reproducibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Not one of the four classes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a class: use reproduced, disputed, single or unknown")]
pub struct UnknownClass(String);

impl FromStr for Reproducibility {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reproducibility::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownClass(s.to_owned()))
    }
}

impl serde::Serialize for Reproducibility {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// How many paths fall in each class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    counts: [u64; 4],
}

impl Summary {
    /// Counts one path.
    pub fn add(&mut self, class: Reproducibility) {
        self.counts[class.index()] += 1;
    }

    /// Paths in `class`.
    pub fn count(&self, class: Reproducibility) -> u64 {
        self.counts[class.index()]
    }

    /// Paths counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The share of paths in `class`, in percent; 0 for an empty report.
    pub fn percent(&self, class: Reproducibility) -> f64 {
        match self.total() {
            0 => 0.0,
            total => 100.0 * self.count(class) as f64 / total as f64,
        }
    }
}

impl FromIterator<Reproducibility> for Summary {
    fn from_iter<I: IntoIterator<Item = Reproducibility>>(iter: I) -> Summary {
        let mut s = Summary::default();
        iter.into_iter().for_each(|c| s.add(c));
        s
    }
}

impl serde::Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("total", &self.total())?;
        for c in Reproducibility::ALL {
            m.serialize_entry(c.name(), &self.count(c))?;
        }
        for c in Reproducibility::ALL {
            // One decimal is what pages and tables show; JSON keeps it stable to compare.
            let rounded = (self.percent(c) * 10.0).round() / 10.0;
            m.serialize_entry(&format!("{}_percent", c.name()), &rounded)?;
        }
        m.end()
    }
}

/// The most paths one report may hold.
pub const MAX_REPORT_PATHS: usize = 1_000_000;

/// Where a report's paths came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// One store path per line, as `nix-store -qR` prints a closure.
    Closure,
    /// A CycloneDX JSON SBOM.
    CycloneDx,
}

/// The output paths a report covers: deduplicated, in input order, derivations left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathList {
    /// The paths.
    pub paths: Vec<StorePath>,
    /// The input's format.
    pub source: Source,
    /// Mentions of derivation (`.drv`) paths in the input, which are not build outputs and
    /// are skipped.
    pub skipped_derivations: usize,
}

/// Why a report's input is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathListError {
    /// A closure line is not a store path.
    #[error("line {line}: {problem}")]
    Line {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: StorePathError,
    },
    /// The input starts like JSON but is not.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a CycloneDX document: its `bomFormat`, if any.
    #[error("not a CycloneDX SBOM: bomFormat is {0}, not \"CycloneDX\"")]
    NotCycloneDx(String),
    /// Nothing to report on.
    #[error("no output paths in the input: give `nix-store -qR <path>` output or a CycloneDX SBOM")]
    Empty,
    /// Too many paths.
    #[error("more than {MAX_REPORT_PATHS} paths; split the input")]
    TooMany,
}

impl PathList {
    /// Parses a closure list or, when the text starts with `{`, a CycloneDX JSON SBOM.
    pub fn parse(text: &str) -> Result<PathList, PathListError> {
        // Editors on some systems start UTF-8 files with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim_start().starts_with('{') {
            PathList::cyclonedx(text)
        } else {
            PathList::closure(text)
        }
    }

    /// One store path per line; blank lines are ignored.
    pub fn closure(text: &str) -> Result<PathList, PathListError> {
        let mut found = Found::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let path = StorePath::parse(line).map_err(|problem| PathListError::Line {
                line: i + 1,
                problem,
            })?;
            found.add(path)?;
        }
        found.finish(Source::Closure)
    }

    /// The output paths of a CycloneDX SBOM's components (`metadata.component` and every
    /// `components` entry, nested ones too). A component's paths are its `nix:output_path`,
    /// `nix:out_path`, `nix:store_path` or `nix:narinfo:store_path` properties (sbomnix,
    /// nix-build-sbom, nix-runtime-tree-to-sbom, genealogos) or else its `bom-ref` (bombon
    /// writes it without `/nix/store/`). Anything that is not an output path is skipped:
    /// vendored components have package URLs there, and some tools use derivation paths.
    pub fn cyclonedx(text: &str) -> Result<PathList, PathListError> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| PathListError::Json(e.to_string()))?;
        match doc.get("bomFormat") {
            Some(Value::String(f)) if f == "CycloneDX" => {}
            Some(other) => return Err(PathListError::NotCycloneDx(other.to_string())),
            None => return Err(PathListError::NotCycloneDx("missing".into())),
        }
        let mut found = Found::default();
        if let Some(root) = doc.pointer("/metadata/component") {
            found.component(root)?;
        }
        for c in components(&doc) {
            found.component(c)?;
        }
        found.finish(Source::CycloneDx)
    }
}

fn components(v: &Value) -> &[Value] {
    v.get("components")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Paths collected so far.
#[derive(Default)]
struct Found {
    paths: Vec<StorePath>,
    seen: BTreeSet<StorePath>,
    derivations: usize,
}

impl Found {
    fn add(&mut self, path: StorePath) -> Result<(), PathListError> {
        if path.is_derivation() {
            self.derivations += 1;
        } else if self.seen.insert(path.clone()) {
            if self.paths.len() == MAX_REPORT_PATHS {
                return Err(PathListError::TooMany);
            }
            self.paths.push(path);
        }
        Ok(())
    }

    /// A CycloneDX component and its nested components.
    fn component(&mut self, component: &Value) -> Result<(), PathListError> {
        let properties = component
            .get("properties")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let mut values: Vec<&str> = properties
            .iter()
            .filter(|p| {
                matches!(
                    p.get("name").and_then(Value::as_str),
                    Some(
                        "nix:output_path"
                            | "nix:out_path"
                            | "nix:store_path"
                            | "nix:narinfo:store_path"
                    )
                )
            })
            .filter_map(|p| p.get("value").and_then(Value::as_str))
            .collect();
        if values.is_empty()
            && let Some(r) = component.get("bom-ref").and_then(Value::as_str)
        {
            values.push(r);
        }
        for value in values {
            if let Ok(path) = StorePath::parse_lenient(value) {
                self.add(path)?;
            }
        }
        components(component)
            .iter()
            .try_for_each(|c| self.component(c))
    }

    fn finish(self, source: Source) -> Result<PathList, PathListError> {
        match self.paths.len() {
            0 => Err(PathListError::Empty),
            _ => Ok(PathList {
                paths: self.paths,
                source,
                skipped_derivations: self.derivations,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
