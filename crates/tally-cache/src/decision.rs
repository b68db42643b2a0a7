//! Decisions: the aggregator's verdict on a path under the proxy's policy, reused for a short
//! time, and the gate that lets a narinfo through only if it matches a trusted verdict.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tally_core::StorePathHash;
use tally_core::policy::Verdict;
use tally_nix::narinfo::NarInfo;
use tally_proto::client::AggregatorClient;
use tally_proto::v1;
use tally_proto::v1::aggregator_server::Aggregator as _;

/// How long a remote aggregator may take to decide.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where verdicts come from.
#[derive(Clone)]
pub enum Aggregator {
    /// An aggregator running in this process.
    InProcess(tally_aggregator::Shared),
    /// An aggregator reached over gRPC.
    Remote(AggregatorClient),
}

impl Aggregator {
    /// The origins of the logs the aggregator follows.
    pub async fn origins(&self) -> Result<Vec<String>, DecisionError> {
        let request = v1::ListLogsRequest {};
        let answer = match self {
            Aggregator::InProcess(shared) => shared.list_logs(tonic::Request::new(request)).await,
            Aggregator::Remote(client) => {
                tokio::time::timeout(QUERY_TIMEOUT, client.clone().list_logs(request))
                    .await
                    .map_err(|_| {
                        DecisionError::Unreachable(format!("no answer in {QUERY_TIMEOUT:?}"))
                    })?
            }
        };
        let logs = answer
            .map_err(|s| DecisionError::Unreachable(format!("{}: {}", s.code(), s.message())))?
            .into_inner()
            .logs;
        Ok(logs.into_iter().map(|l| l.origin).collect())
    }
}

/// Why no decision could be had. Never read as a verdict.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    /// The aggregator did not answer.
    #[error("aggregator did not answer: {0}")]
    Unreachable(String),
    /// The aggregator answered something unusable.
    #[error("aggregator's answer is unusable: {0}")]
    BadAnswer(String),
}

/// Verdicts, cached for a time-to-live.
pub struct Decisions {
    aggregator: Aggregator,
    policy: String,
    ttl: Duration,
    max: usize,
    cache: Mutex<HashMap<StorePathHash, (Instant, Arc<Verdict>)>>,
}

impl Decisions {
    /// Decisions from `aggregator` under `policy` (empty: the aggregator's default), each
    /// reused for `ttl`, at most `max` kept.
    pub fn new(aggregator: Aggregator, policy: String, ttl: Duration, max: usize) -> Decisions {
        Decisions {
            aggregator,
            policy,
            ttl,
            max,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The verdict on `hash`, and whether it came from the cache. Errors are not cached.
    pub async fn decide(
        &self,
        hash: &StorePathHash,
    ) -> Result<(Arc<Verdict>, bool), DecisionError> {
        if let Some(v) = self.cached(hash) {
            return Ok((v, true));
        }
        let verdict = Arc::new(self.ask(hash).await?);
        self.remember(*hash, Arc::clone(&verdict));
        Ok((verdict, false))
    }

    async fn ask(&self, hash: &StorePathHash) -> Result<Verdict, DecisionError> {
        let request = v1::QueryRequest {
            paths: vec![hash.to_string()],
            policy: self.policy.clone(),
            proofs: false,
        };
        let answer = match &self.aggregator {
            Aggregator::InProcess(shared) => shared.query(tonic::Request::new(request)).await,
            Aggregator::Remote(client) => {
                tokio::time::timeout(QUERY_TIMEOUT, client.clone().query(request))
                    .await
                    .map_err(|_| {
                        DecisionError::Unreachable(format!("no answer in {QUERY_TIMEOUT:?}"))
                    })?
            }
        };
        let answer = answer
            .map_err(|s| DecisionError::Unreachable(format!("{}: {}", s.code(), s.message())))?
            .into_inner();
        let [result] = answer.results.as_slice() else {
            return Err(DecisionError::BadAnswer(format!(
                "{} results for one path",
                answer.results.len()
            )));
        };
        tally_proto::verdict(result).map_err(|e| DecisionError::BadAnswer(e.to_string()))
    }

    fn cached(&self, hash: &StorePathHash) -> Option<Arc<Verdict>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(hash)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| Arc::clone(v))
    }

    fn remember(&self, hash: StorePathHash, verdict: Arc<Verdict>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.max {
            cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if cache.len() >= self.max {
                cache.clear();
            }
        }
        cache.insert(hash, (Instant::now(), verdict));
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
    /// Too few logs attest the path.
    Unknown {
        /// The aggregator's reason.
        reason: String,
    },
    /// The path is trusted, but not with what the upstream narinfo says.
    Mismatch(Vec<Mismatch>),
}

/// One field where an upstream narinfo differs from the trusted attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `NarHash`, `NarSize` or `References`.
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
                for m in fields {
                    write!(
                        f,
                        " {} is {:?} upstream but {:?} attested;",
                        m.field, m.narinfo, m.attested
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Lets `narinfo` through only if `verdict` trusts exactly its NarHash, NarSize and
/// References.
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
    let mut mismatches = Vec::new();
    let mut check = |field, narinfo: String, attested: String| {
        if narinfo != attested {
            mismatches.push(Mismatch {
                field,
                narinfo,
                attested,
            });
        }
    };
    check(
        "NarHash",
        narinfo.nar_hash.to_string(),
        agreed.nar_hash.to_string(),
    );
    check(
        "NarSize",
        narinfo.nar_size.to_string(),
        agreed.nar_size.to_string(),
    );
    // Both sides are sorted and free of duplicates.
    let names = |refs: &[tally_core::StorePath]| {
        refs.iter()
            .map(|r| r.basename())
            .collect::<Vec<_>>()
            .join(" ")
    };
    check(
        "References",
        names(&narinfo.references),
        names(&agreed.references),
    );
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Mismatch(mismatches))
    }
}

#[cfg(test)]
mod tests {
    use tally_core::policy::Candidate;
    use tally_core::{KeyName, sample};

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
        for (changed, field) in [(hash, "NarHash"), (size, "NarSize"), (refs, "References")] {
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
        let unknown = Verdict::Unknown {
            reason: "1 of 3 logs attest it".into(),
        };
        assert_eq!(admit(&info, &unknown).unwrap_err().kind(), "unknown");
        let disputed = Verdict::Disputed { candidates: vec![] };
        assert_eq!(admit(&info, &disputed).unwrap_err().kind(), "disputed");
    }
}
