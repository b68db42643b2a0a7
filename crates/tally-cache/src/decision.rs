//! Decisions: every log's answer about a path, checked against the cache's own trust policy,
//! reused for a short time; and the gate that lets a narinfo through only if it matches a
//! trusted verdict exactly.
//!
//! The cache believes no source. [`Decisions`] gets answers from a [`Votes`] source and
//! counts them with [`tally_core::decision::decide`]: a rewritten, forged or unwitnessed
//! answer does not count, so it can at most turn a "yes" into a "no".

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tally_core::StorePathHash;
use tally_core::decision::{self, CheckpointMemo, Decision};
use tally_core::policy::{Candidate, Verdict};
use tally_core::trust::TrustPolicy;
use tally_nix::narinfo::NarInfo;

use crate::votes::Votes;

/// Why no decision could be had. Never read as a verdict.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    /// The source could not be asked.
    #[error("no answers: {0}")]
    Unreachable(String),
    /// Answers came, but not one of them verified under the trust policy.
    #[error("no log's answer verified under the trust policy: {}", votes(.0))]
    NothingVerified(Arc<Decision>),
}

fn votes(d: &Decision) -> String {
    let why: Vec<String> = d
        .votes
        .iter()
        .map(|v| format!("{}: {}", v.origin, v.counted))
        .collect();
    why.join("; ")
}

/// Decisions under one trust policy, each reused for a time-to-live.
pub struct Decisions {
    votes: Arc<dyn Votes>,
    trust: TrustPolicy,
    ttl: Duration,
    max: usize,
    cache: Mutex<HashMap<StorePathHash, (Instant, Arc<Decision>)>>,
    checkpoints: CheckpointMemo,
}

impl Decisions {
    /// Decisions about answers from `votes` under `trust`, each reused for `ttl`, at most
    /// `max` kept.
    pub fn new(votes: Arc<dyn Votes>, trust: TrustPolicy, ttl: Duration, max: usize) -> Decisions {
        Decisions {
            votes,
            trust,
            ttl,
            max,
            cache: Mutex::new(HashMap::new()),
            checkpoints: CheckpointMemo::default(),
        }
    }

    /// The trust policy.
    pub fn trust(&self) -> &TrustPolicy {
        &self.trust
    }

    /// What the answers come from.
    pub fn source(&self) -> String {
        self.votes.describe()
    }

    /// The decision about `hash`, and whether it came from the cache. Errors are not cached.
    pub async fn decide(
        &self,
        hash: &StorePathHash,
    ) -> Result<(Arc<Decision>, bool), DecisionError> {
        if let Some(d) = self.cached(hash) {
            return Ok((d, true));
        }
        let ballots =
            self.votes.ballots(hash).await.map_err(|e| {
                DecisionError::Unreachable(format!("{}: {e}", self.votes.describe()))
            })?;
        let now = crate::votes::now();
        let decision = Arc::new(decision::decide(
            &self.trust,
            hash,
            ballots,
            &self.checkpoints,
            now,
        ));
        if !decision.votes.iter().any(|v| v.counted.verified()) {
            return Err(DecisionError::NothingVerified(decision));
        }
        self.remember(*hash, Arc::clone(&decision));
        Ok((decision, false))
    }

    fn cached(&self, hash: &StorePathHash) -> Option<Arc<Decision>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(hash)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, d)| Arc::clone(d))
    }

    fn remember(&self, hash: StorePathHash, decision: Arc<Decision>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.max {
            cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if cache.len() >= self.max {
                cache.clear();
            }
        }
        cache.insert(hash, (Instant::now(), decision));
    }
}

/// Why a narinfo is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Logs disagree and the policy's quorum is not met.
    Disputed {
        /// How many different NARs are attested.
        candidates: usize,
    },
    /// Too few logs attest the path, with verified proofs.
    Unknown {
        /// The policy's reason.
        reason: String,
    },
    /// The path is trusted, but not with what the upstream narinfo says.
    Mismatch(Vec<Mismatch>),
}

/// One field where an upstream narinfo differs from the trusted attestation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// `StorePath`, `NarHash`, `NarSize` or `References`.
    pub field: &'static str,
    /// What the narinfo says.
    pub narinfo: String,
    /// What the quorum attests.
    pub attested: String,
}

impl Refusal {
    /// A label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Disputed { .. } => "disputed",
            Refusal::Unknown { .. } => "unknown",
            Refusal::Mismatch(_) => "mismatch",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Disputed { candidates } => {
                write!(f, "disputed: logs attest {candidates} different NARs")
            }
            Refusal::Unknown { reason } => write!(f, "not attested by a quorum: {reason}"),
            Refusal::Mismatch(fields) => {
                f.write_str("upstream narinfo differs from the attested NAR:")?;
                // "; " between fields, nothing after the last: the body ends with the text.
                for (i, m) in fields.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(
                        f,
                        "{sep}{} is {:?} upstream but {:?} attested",
                        m.field, m.narinfo, m.attested
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Each field the gate compares, as the narinfo and the attestation have it.
pub fn compare(narinfo: &NarInfo, agreed: &Candidate) -> Vec<Mismatch> {
    // Both sides are sorted and free of duplicates.
    let names = |refs: &[tally_core::StorePath]| {
        refs.iter()
            .map(|r| r.basename())
            .collect::<Vec<_>>()
            .join(" ")
    };
    [
        (
            "StorePath",
            narinfo.store_path.to_string(),
            agreed.output_path.to_string(),
        ),
        (
            "NarHash",
            narinfo.nar_hash.to_string(),
            agreed.nar_hash.to_string(),
        ),
        (
            "NarSize",
            narinfo.nar_size.to_string(),
            agreed.nar_size.to_string(),
        ),
        (
            "References",
            names(&narinfo.references),
            names(&agreed.references),
        ),
    ]
    .into_iter()
    .map(|(field, narinfo, attested)| Mismatch {
        field,
        narinfo,
        attested,
    })
    .collect()
}

/// Lets `narinfo` through only if `verdict` trusts exactly its store path (hash and name),
/// NarHash, NarSize and References.
pub fn admit(narinfo: &NarInfo, verdict: &Verdict) -> Result<(), Refusal> {
    let agreed = match verdict {
        Verdict::Trusted { agreed, .. } => agreed,
        Verdict::Disputed { candidates } => {
            return Err(Refusal::Disputed {
                candidates: candidates.len(),
            });
        }
        Verdict::Unknown { reason } => {
            return Err(Refusal::Unknown {
                reason: reason.clone(),
            });
        }
    };
    let mismatches: Vec<Mismatch> = compare(narinfo, agreed)
        .into_iter()
        .filter(|m| m.narinfo != m.attested)
        .collect();
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Mismatch(mismatches))
    }
}

#[cfg(test)]
mod tests {
    use tally_core::policy::Candidate;
    use tally_core::{KeyName, StorePath, sample};

    use super::*;

    fn narinfo_for(a: &tally_core::Attestation) -> NarInfo {
        let refs: Vec<String> = a.references().iter().map(|r| r.basename()).collect();
        NarInfo::parse(&format!(
            "StorePath: {}\nURL: nar/x.nar\nCompression: none\nNarHash: {}\nNarSize: {}\nReferences: {}\n",
            a.output_path(),
            a.nar_hash(),
            a.nar_size(),
            refs.join(" ")
        ))
        .unwrap()
    }

    fn trusted(a: &tally_core::Attestation) -> Verdict {
        Verdict::Trusted {
            agreed: Candidate {
                output_path: a.output_path().clone(),
                nar_hash: a.nar_hash(),
                nar_size: a.nar_size(),
                references: a.references().to_vec(),
                origins: vec![KeyName::new("a.example/log").unwrap()],
            },
            dissent: vec![],
        }
    }

    #[test]
    fn only_an_exact_match_with_a_trusted_verdict_passes() {
        let a = (0..)
            .map(sample::attestation)
            .find(|a| a.references().len() >= 2)
            .unwrap();
        let info = narinfo_for(&a);
        assert_eq!(admit(&info, &trusted(&a)), Ok(()));

        let mut hash = info.clone();
        hash.nar_hash = sample::attestation(999).nar_hash();
        let mut size = info.clone();
        size.nar_size += 1;
        let mut refs = info.clone();
        refs.references.pop();
        // The same hash part under another name is another path.
        let mut name = info.clone();
        name.store_path =
            StorePath::parse(&format!("/nix/store/{}-evil", a.output_path().hash())).unwrap();
        for (changed, field) in [
            (hash, "NarHash"),
            (size, "NarSize"),
            (refs, "References"),
            (name, "StorePath"),
        ] {
            match admit(&changed, &trusted(&a)) {
                Err(Refusal::Mismatch(m)) => {
                    assert_eq!(m.len(), 1);
                    assert_eq!(m[0].field, field);
                    let text = Refusal::Mismatch(m.clone()).to_string();
                    assert!(
                        text.contains(field) && text.contains(&m[0].attested),
                        "{text}"
                    );
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // Several fields: separated, and nothing after the last (it ends a 404 body).
        let mut both = info.clone();
        both.nar_size += 1;
        both.references.pop();
        let text = admit(&both, &trusted(&a)).unwrap_err().to_string();
        assert!(text.contains("attested; References is"), "{text}");
        assert!(text.ends_with("attested"), "{text}");
        let unknown = Verdict::Unknown {
            reason: "1 of 3 logs attest it".into(),
        };
        assert_eq!(admit(&info, &unknown).unwrap_err().kind(), "unknown");
        let disputed = Verdict::Disputed { candidates: vec![] };
        assert_eq!(admit(&info, &disputed).unwrap_err().kind(), "disputed");
    }
}
