//! Evidence bundles: self-contained JSON that proves a claim about logs to anyone holding
//! the logs' public keys, and nothing else.
//!
//! | kind | proves |
//! |---|---|
//! | `fork` | a log signed two checkpoints that disagree about its first `at` entries |
//! | `bad_map_root` | a log signed a map root that binds a path wrongly: one entry and the log's own map proof |
//! | `contradiction` | one log attests two different NARs for one output path |
//! | `disagreement` | two logs attest different NARs for one output path |
//! | `query` | every log's answer about a path; a consumer decides with its own policy |
//! | `bad_entries` | nothing (kept only so old files parse): see below |
//!
//! Evidence rests only on what the accused log signed. Entries that do not hash to a signed
//! root are not the log's statement: anyone (a mirror, the network) can make such bytes, so
//! a `bad_entries` bundle never verifies.
//!
//! Every bundle is checked by [`Bundle::verify`]; a bundle that does not prove its claim is
//! an error, never a weaker success. A query bundle proves no claim: it carries answers, and
//! [`QueryBundle::decide`] counts them under the consumer's [`TrustPolicy`], never under the
//! policy or verdict the bundle names.

use std::collections::BTreeSet;

use crate::Error;
use crate::answer::{LogAnswer, Verified};
use crate::attestation::Attestation;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::decision::{Ballot, Checkpoints, Decision};
use crate::hash::Hash;
use crate::keys::{KeyName, VerifyingKey};
use crate::map::{MapAnswer, MapKey, MapProof};
use crate::policy::{Policy, Verdict};
use crate::store_path::StorePathHash;
use crate::tlog::{self, InclusionProof};
use crate::trust::TrustPolicy;

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
    /// Served entries that are not the signed tree's: never evidence (see the module docs).
    BadEntries(BadEntries),
    /// A signed map root that binds a path wrongly.
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

/// A signed map root that binds a path wrongly, shown by one entry and the log's own map
/// proof for that path, both against one signed checkpoint. The map must bind each path to
/// its first entry ([`crate::map`]); the bundle shows one of:
/// - the map proves the path absent, but `entry` attests it;
/// - the map binds the path to a later index than `entry`, which attests it;
/// - `entry` is the one the map binds the path to, but its hash differs, it does not decode,
///   or it attests another path;
/// - the map binds the path to an index beyond the tree (`entry` is then absent).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadMapRoot {
    /// The log.
    pub origin: KeyName,
    /// The signed checkpoint.
    pub checkpoint: String,
    /// The path.
    pub path: StorePathHash,
    /// The log's map proof for the path against the checkpoint's map root.
    pub map_proof: MapProof,
    /// An entry of the checkpoint's tree, with its inclusion proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<ProvenEntry>,
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

/// "1 entry", "N entries".
fn entries(n: u64) -> String {
    if n == 1 {
        "1 entry".to_owned()
    } else {
        format!("{n} entries")
    }
}

impl Bundle {
    /// A one-line description of what the bundle claims (before verification).
    pub fn summary(&self) -> String {
        match self {
            Bundle::Fork(f) => format!(
                "fork: {} signed two checkpoints that disagree about its first {}",
                f.origin,
                entries(f.at)
            ),
            Bundle::BadEntries(b) => format!(
                "entries {}..{} served for {} do not hash to its signed tree (not evidence against the log)",
                b.start,
                b.start + b.entries.len() as u64,
                b.origin
            ),
            Bundle::BadMapRoot(b) => format!(
                "bad data: {} signed a map root that binds {} wrongly",
                b.origin, b.path
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
                "query: {} answers about {} (the bundle says {} under {})",
                q.logs.len(),
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

    /// Checks the bundle with the logs' public keys. A query bundle proves no claim: decide
    /// it with [`QueryBundle::decide`] under a trust policy.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        match self {
            Bundle::Fork(f) => f.verify(keys),
            Bundle::BadEntries(_) => Err(not_proven(
                "entries that do not hash to a signed root are not the log's statement: anyone \
                 who relays them (a mirror, the network) can make such bytes, so they prove \
                 nothing about the log",
            )),
            Bundle::BadMapRoot(b) => b.verify(keys),
            Bundle::Contradiction(c) => c.verify(keys),
            Bundle::Disagreement(d) => d.verify(keys),
            Bundle::Query(_) => Err(not_proven(
                "a query bundle is decided under the verifier's own trust policy, not proven",
            )),
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
        if ra == rb && a.tree == b.tree && a.map_root != b.map_root {
            // The map is a function of the entries: one tree has one map root.
            return proven(
                format!(
                    "{} signed two map roots ({} and {}) for one tree of size {}: one of them is not the replay of its entries",
                    self.origin, a.map_root, b.map_root, a.tree.size
                ),
                vec![self.origin.clone()],
            );
        }
        if ra == rb {
            return Err(not_proven(format!(
                "both checkpoints agree on their first {}",
                entries(self.at)
            )));
        }
        proven(
            format!(
                "{} signed checkpoints of size {} and {} whose first {} differ ({ra} vs {rb}): the log forked",
                self.origin,
                a.tree.size,
                b.tree.size,
                entries(self.at)
            ),
            vec![self.origin.clone()],
        )
    }
}

impl BadMapRoot {
    fn verify(&self, keys: &[VerifyingKey]) -> Result<Proven, EvidenceError> {
        let c = open(&self.checkpoint, key(keys, &self.origin)?)?;
        let map = self
            .map_proof
            .verify(&MapKey::for_path(&self.path), &c.map_root)
            .map_err(Error::from)?;
        let entry = match &self.entry {
            Some(e) => {
                e.inclusion_proof
                    .verify(tlog::leaf_hash(&e.entry), &c.tree)
                    .map_err(Error::from)?;
                Some((e.inclusion_proof.index, e.entry.as_slice()))
            }
            None => None,
        };
        let attests_path = |bytes: &[u8]| {
            Attestation::decode(bytes).is_ok_and(|a| a.output_path().hash() == self.path)
        };
        let problem = match (map, entry) {
            (MapAnswer::Absent, Some((i, bytes))) if attests_path(bytes) => {
                format!(
                    "its map proves {} absent, but entry {i} attests it",
                    self.path
                )
            }
            (MapAnswer::Present(v), _) if v.leaf_index >= c.tree.size => format!(
                "its map binds {} to entry {}, beyond its {}",
                self.path,
                v.leaf_index,
                entries(c.tree.size)
            ),
            (MapAnswer::Present(v), Some((i, bytes)))
                if i < v.leaf_index && attests_path(bytes) =>
            {
                format!(
                    "its map binds {} to entry {}, but entry {i} attests it first",
                    self.path, v.leaf_index
                )
            }
            (MapAnswer::Present(v), Some((i, bytes)))
                if i == v.leaf_index
                    && (Hash::of(bytes) != v.entry_hash || !attests_path(bytes)) =>
            {
                format!(
                    "its map binds {} to entry {i}, which is not an attestation of it with the hash the map gives",
                    self.path
                )
            }
            _ => {
                return Err(not_proven(
                    "the entry and the map proof are consistent with each other",
                ));
            }
        };
        proven(
            format!(
                "{} signed a map root at size {} that is not the replay of its entries: {problem}",
                self.origin, c.tree.size
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
    /// Decides about the path from the bundle's answers, under the consumer's own policy (at
    /// time `now`, seconds since 1970): the policy and verdict the bundle names play no part.
    pub fn decide(&self, trust: &TrustPolicy, checkpoints: &dyn Checkpoints, now: u64) -> Decision {
        let ballots = self
            .logs
            .iter()
            .map(|l| Ballot {
                origin: l.origin.to_string(),
                answer: match (&l.answer, &l.unavailable) {
                    (Some(a), _) => Ok(a.clone()),
                    (None, Some(why)) => Err(format!("reported unavailable: {why}")),
                    (None, None) => Err("no answer".into()),
                },
            })
            .collect();
        crate::decision::decide(trust, &self.path, ballots, checkpoints, now)
    }
}

#[cfg(test)]
mod tests;
