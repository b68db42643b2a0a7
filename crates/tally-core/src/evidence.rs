//! Evidence bundles: self-contained JSON that proves a claim about logs to anyone holding
//! the logs' public keys, and nothing else.
//!
//! | kind | proves |
//! |---|---|
//! | `fork` | a log signed two checkpoints that disagree about its first `at` entries |
//! | `bad_entries` | entries a log served as part of a checkpoint's tree are not that tree's |
//! | `bad_map_root` | a log signed a map root that is not the replay of its entries |
//! | `contradiction` | one log attests two different NARs for one output path |
//! | `disagreement` | two logs attest different NARs for one output path |
//! | `query` | a path's verdict under a policy follows from the logs' proven answers |
//!
//! Every bundle is checked by [`Bundle::verify`]; a bundle that does not prove its claim is
//! an error, never a weaker success.

use std::collections::BTreeSet;

use crate::Error;
use crate::answer::{LogAnswer, Verified};
use crate::attestation::Attestation;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::hash::Hash;
use crate::keys::{KeyName, VerifyingKey};
use crate::policy::{Policy, Verdict, Vote};
use crate::replay::Replay;
use crate::store_path::StorePathHash;
use crate::tlog::{self, CompactRange, InclusionProof};

/// The `version` every bundle carries.
pub const VERSION: &str = "tally-bundle/v1";

/// A bundle as written to a file: a version, and one kind of evidence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleFile {
    /// Always [`VERSION`].
    pub version: String,
    /// The evidence.
    #[serde(flatten)]
    pub bundle: Bundle,
}

impl BundleFile {
    /// Wraps a bundle.
    pub fn new(bundle: Bundle) -> BundleFile {
        BundleFile {
            version: VERSION.to_owned(),
            bundle,
        }
    }
}

/// One piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bundle {
    /// Two checkpoints of one log that cannot both be true.
    Fork(Fork),
    /// Served entries that are not the signed tree's.
    BadEntries(BadEntries),
    /// A signed map root that is not the replay of the entries.
    BadMapRoot(BadMapRoot),
    /// One log attesting two NARs for one path.
    Contradiction(Contradiction),
    /// Two logs attesting different NARs for one path.
    Disagreement(Disagreement),
    /// A query's verdict with every log's answer.
    Query(QueryBundle),
}

/// Checkpoints `a` and `b` of `origin`, with prefix paths proving different roots for their
/// first `at` entries (see [`tlog::prefix_path`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fork {
    /// The log.
    pub origin: KeyName,
    /// One signed checkpoint.
    pub a: String,
    /// The other.
    pub b: String,
    /// The prefix size they disagree about.
    pub at: u64,
    /// Prefix path from `at` to `a`'s size (empty if equal).
    pub path_a: Vec<Hash>,
    /// Prefix path from `at` to `b`'s size (empty if equal).
    pub path_b: Vec<Hash>,
}

/// Entries served as `[start, start + entries.len())` of a checkpoint's tree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadEntries {
    /// The log.
    pub origin: KeyName,
    /// The signed checkpoint.
    pub checkpoint: String,
    /// Index of the first entry.
    pub start: u64,
    /// Peaks of the tree of the first `start` entries.
    pub peaks: Vec<Hash>,
    /// Prefix path from `start` to the checkpoint, proving those peaks.
    pub path_start: Vec<Hash>,
    /// The entries served.
    #[serde(with = "crate::base64_serde::list")]
    pub entries: Vec<Vec<u8>>,
    /// Prefix path from `start + entries.len()` to the checkpoint.
    pub path_end: Vec<Hash>,
}

/// A checkpoint and every entry of its tree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadMapRoot {
    /// The log.
    pub origin: KeyName,
    /// The signed checkpoint.
    pub checkpoint: String,
    /// Entries `[0, size)`.
    #[serde(with = "crate::base64_serde::list")]
    pub entries: Vec<Vec<u8>>,
}

/// An entry and its inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProvenEntry {
    /// The entry's bytes.
    #[serde(with = "crate::base64_serde::bytes")]
    pub entry: Vec<u8>,
    /// Its inclusion proof (which carries its index).
    pub inclusion_proof: InclusionProof,
}

/// Two entries of one log, in one checkpoint, attesting one path differently.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contradiction {
    /// The log.
    pub origin: KeyName,
    /// The signed checkpoint both entries are in.
    pub checkpoint: String,
    /// The first entry.
    pub first: ProvenEntry,
    /// The second.
    pub second: ProvenEntry,
}

/// A log's answer, named.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OriginAnswer {
    /// The log.
    pub origin: KeyName,
    /// Its answer.
    pub answer: LogAnswer,
}

/// Two or more logs' answers about one path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Disagreement {
    /// The path's hash part.
    pub path: StorePathHash,
    /// The answers, each present.
    pub answers: Vec<OriginAnswer>,
}

/// One followed log in a query bundle.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueryLog {
    /// The log.
    pub origin: KeyName,
    /// Its answer, if it could be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<LogAnswer>,
    /// Why not, if it could not (a claim of the aggregator, not provable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// A query's verdict and every followed log's answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueryBundle {
    /// The path's hash part.
    pub path: StorePathHash,
    /// The policy applied.
    pub policy: Policy,
    /// Every followed log.
    pub logs: Vec<QueryLog>,
    /// The verdict claimed.
    pub verdict: Verdict,
}

/// What a verified bundle proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    /// The claim, in words.
    pub claim: String,
    /// Logs the bundle proves to have misbehaved.
    pub misbehaving: Vec<KeyName>,
    /// Caveats: parts of the bundle that could not be proven (for example a log reported
    /// unavailable).
    pub caveats: Vec<String>,
}

/// Why a bundle does not prove its claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// No key was given for a log the bundle needs.
    #[error("no verifier key for {0}: pass it with --vkey")]
    NoKey(String),
    /// The bundle's version is not known.
    #[error("unknown bundle version {0:?}; expected {VERSION}")]
    Version(String),
    /// A signature, proof or format check failed.
    #[error(transparent)]
    Invalid(#[from] Error),
    /// The data checks out, but does not show what the bundle claims.
    #[error("the bundle does not prove its claim: {0}")]
    NotProven(String),
}

fn open(note: &str, key: &VerifyingKey) -> Result<Checkpoint, EvidenceError> {
    let signed = SignedCheckpoint::open(note.as_bytes(), key).map_err(Error::from)?;
    Ok(signed.checkpoint().clone())
}

fn key<'a>(keys: &'a [VerifyingKey], origin: &KeyName) -> Result<&'a VerifyingKey, EvidenceError> {
    keys.iter()
        .find(|k| k.name() == origin)
        .ok_or_else(|| EvidenceError::NoKey(origin.to_string()))
}

fn not_proven(why: impl Into<String>) -> EvidenceError {
    EvidenceError::NotProven(why.into())
}

impl BundleFile {
    /// Checks the bundle with the logs' public keys.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        if self.version != VERSION {
            return Err(EvidenceError::Version(self.version.clone()));
        }
        self.bundle.verify(keys)
    }
}

impl Bundle {
    /// A one-line description of what the bundle claims (before verification).
    pub fn summary(&self) -> String {
        match self {
            Bundle::Fork(f) => format!(
                "fork: {} signed two checkpoints that disagree about its first {} entries",
                f.origin, f.at
            ),
            Bundle::BadEntries(b) => format!(
                "bad data: {} served entries {}..{} that are not in its signed tree",
                b.origin,
                b.start,
                b.start + b.entries.len() as u64
            ),
            Bundle::BadMapRoot(b) => format!(
                "bad data: {} signed a map root its {} entries do not give",
                b.origin,
                b.entries.len()
            ),
            Bundle::Contradiction(c) => format!(
                "contradiction: {} attests one path twice (entries {} and {})",
                c.origin, c.first.inclusion_proof.index, c.second.inclusion_proof.index
            ),
            Bundle::Disagreement(d) => {
                let names: Vec<&str> = d.answers.iter().map(|a| a.origin.as_str()).collect();
                format!(
                    "disagreement: {} attest different NARs for {}",
                    names.join(", "),
                    d.path
                )
            }
            Bundle::Query(q) => format!(
                "query: {} is {} under {}",
                q.path,
                q.verdict.status(),
                q.policy
            ),
        }
    }

    /// The logs the bundle concerns.
    pub fn origins(&self) -> Vec<KeyName> {
        match self {
            Bundle::Fork(f) => vec![f.origin.clone()],
            Bundle::BadEntries(b) => vec![b.origin.clone()],
            Bundle::BadMapRoot(b) => vec![b.origin.clone()],
            Bundle::Contradiction(c) => vec![c.origin.clone()],
            Bundle::Disagreement(d) => d.answers.iter().map(|a| a.origin.clone()).collect(),
            Bundle::Query(q) => q.logs.iter().map(|l| l.origin.clone()).collect(),
        }
    }

    /// The kind, as in the JSON `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Bundle::Fork(_) => "fork",
            Bundle::BadEntries(_) => "bad_entries",
            Bundle::BadMapRoot(_) => "bad_map_root",
            Bundle::Contradiction(_) => "contradiction",
            Bundle::Disagreement(_) => "disagreement",
            Bundle::Query(_) => "query",
        }
    }

    /// Checks the bundle with the logs' public keys.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        match self {
            Bundle::Fork(f) => f.verify(keys),
            Bundle::BadEntries(b) => b.verify(keys),
            Bundle::BadMapRoot(b) => b.verify(keys),
            Bundle::Contradiction(c) => c.verify(keys),
            Bundle::Disagreement(d) => d.verify(keys),
            Bundle::Query(q) => q.verify(keys),
        }
    }
}

fn proven(claim: String, misbehaving: Vec<KeyName>) -> Result<Proven, EvidenceError> {
    Ok(Proven {
        claim,
        misbehaving,
        caveats: Vec::new(),
    })
}

impl Fork {
    fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        let k = key(keys, &self.origin)?;
        let (a, b) = (open(&self.a, k)?, open(&self.b, k)?);
        let ra = tlog::prefix_root(self.at, &a.tree, &self.path_a).map_err(Error::from)?;
        let rb = tlog::prefix_root(self.at, &b.tree, &self.path_b).map_err(Error::from)?;
        if ra == rb {
            return Err(not_proven(format!(
                "both checkpoints agree on their first {} entries",
                self.at
            )));
        }
        proven(
            format!(
                "{} signed checkpoints of size {} and {} whose first {} entries differ ({ra} vs {rb}): the log forked",
                self.origin, a.tree.size, b.tree.size, self.at
            ),
            vec![self.origin.clone()],
        )
    }
}

impl BadEntries {
    fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        let c = open(&self.checkpoint, key(keys, &self.origin)?)?;
        let mut range =
            CompactRange::from_peaks(self.start, self.peaks.clone()).ok_or_else(|| {
                not_proven(format!(
                    "{} peaks do not fit a tree of {}",
                    self.peaks.len(),
                    self.start
                ))
            })?;
        let prefix =
            tlog::prefix_root(self.start, &c.tree, &self.path_start).map_err(Error::from)?;
        if prefix != range.root() {
            return Err(not_proven(
                "the peaks are not the checkpoint's first entries",
            ));
        }
        for e in &self.entries {
            range.append(tlog::leaf_hash(e));
        }
        let end = range.size();
        let expected = tlog::prefix_root(end, &c.tree, &self.path_end).map_err(Error::from)?;
        if range.root() == expected {
            return Err(not_proven(format!(
                "entries {}..{end} are the checkpoint's",
                self.start
            )));
        }
        proven(
            format!(
                "the entries served as {}..{end} are not those of {}'s signed checkpoint of size {}: the data served does not match what the log signed",
                self.start, self.origin, c.tree.size
            ),
            vec![self.origin.clone()],
        )
    }
}

impl BadMapRoot {
    fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        let c = open(&self.checkpoint, key(keys, &self.origin)?)?;
        let mut replay = Replay::of(&self.entries);
        if replay.tree_head() != c.tree {
            return Err(not_proven("the entries are not the checkpoint's tree"));
        }
        let map_root = replay.map_root();
        if map_root == c.map_root {
            return Err(not_proven("the map root is the replay of the entries"));
        }
        proven(
            format!(
                "{} signed map root {} at size {}, but its entries give {map_root}",
                self.origin, c.map_root, c.tree.size
            ),
            vec![self.origin.clone()],
        )
    }
}

impl Contradiction {
    fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        let c = open(&self.checkpoint, key(keys, &self.origin)?)?;
        let mut found = Vec::new();
        for e in [&self.first, &self.second] {
            e.inclusion_proof
                .verify(tlog::leaf_hash(&e.entry), &c.tree)
                .map_err(Error::from)?;
            found.push(Attestation::decode(&e.entry).map_err(Error::from)?);
        }
        let (a, b) = (&found[0], &found[1]);
        if self.first.inclusion_proof.index == self.second.inclusion_proof.index {
            return Err(not_proven("both proofs are of the same entry"));
        }
        if a.output_path() != b.output_path() {
            return Err(not_proven("the entries attest different paths"));
        }
        if a.same_nar(b) {
            return Err(not_proven("the entries attest the same NAR"));
        }
        proven(
            format!(
                "{} attests {} twice: {} at entry {} and {} at entry {}",
                self.origin,
                a.output_path(),
                a.nar_hash(),
                self.first.inclusion_proof.index,
                b.nar_hash(),
                self.second.inclusion_proof.index
            ),
            vec![self.origin.clone()],
        )
    }
}

impl Disagreement {
    fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        let mut seen: Vec<(KeyName, Attestation)> = Vec::new();
        for a in &self.answers {
            match a
                .answer
                .verify(key(keys, &a.origin)?, &self.path)
                .map_err(Error::from)?
            {
                Verified::Present { attestation, .. } => {
                    seen.push((a.origin.clone(), *attestation))
                }
                Verified::Absent { .. } => {
                    return Err(not_proven(format!(
                        "{} has no attestation for the path",
                        a.origin
                    )));
                }
            }
        }
        let distinct: BTreeSet<_> = seen
            .iter()
            .map(|(_, a)| (a.nar_hash(), a.nar_size(), a.references().to_vec()))
            .collect();
        if distinct.len() < 2 {
            return Err(not_proven("the logs agree"));
        }
        let parts: Vec<String> = seen
            .iter()
            .map(|(o, a)| format!("{o} attests {}", a.nar_hash()))
            .collect();
        Ok(Proven {
            claim: format!("logs disagree about {}: {}", seen[0].1.output_path(), parts.join("; ")),
            misbehaving: Vec::new(),
            caveats: vec!["a disagreement is a reproducibility failure or an attack; it does not say which log is wrong".into()],
        })
    }
}

impl QueryBundle {
    fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        let mut votes = Vec::new();
        let mut caveats = Vec::new();
        for log in &self.logs {
            let vote = match (&log.answer, &log.unavailable) {
                (Some(answer), None) => match answer
                    .verify(key(keys, &log.origin)?, &self.path)
                    .map_err(Error::from)?
                {
                    Verified::Present { attestation, .. } => Vote::Present(attestation),
                    Verified::Absent { .. } => Vote::Absent,
                },
                (None, Some(why)) => {
                    caveats.push(format!(
                        "{} was reported unavailable ({why}); that cannot be checked",
                        log.origin
                    ));
                    Vote::Unavailable(why.clone())
                }
                _ => {
                    return Err(not_proven(format!(
                        "{} has neither an answer nor a reason",
                        log.origin
                    )));
                }
            };
            votes.push((log.origin.clone(), vote));
        }
        let origins: Vec<KeyName> = votes.iter().map(|(o, _)| o.clone()).collect();
        self.policy
            .check(&origins)
            .map_err(|e| not_proven(e.to_string()))?;
        let recomputed = self.policy.decide(&votes);
        if recomputed != self.verdict {
            return Err(not_proven(format!(
                "the answers give {} under {}, not the {} claimed",
                recomputed.status(),
                self.policy,
                self.verdict.status()
            )));
        }
        Ok(Proven {
            claim: format!(
                "{} is {} under policy {}, from {} verified log answers",
                self.path,
                self.verdict.status(),
                self.policy,
                self.logs.len() - caveats.len()
            ),
            misbehaving: Vec::new(),
            caveats,
        })
    }
}

#[cfg(test)]
mod tests;
