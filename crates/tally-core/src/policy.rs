//! Trust policies: when do enough logs agree on a path?
//!
//! A policy says how many logs must attest the same NAR, which logs must be among them, and
//! how many may attest something else:
//!
//! ```text
//! policy  = quorum *( "," clause )
//! quorum  = N "-of-" M        at least N of the M followed logs agree (M must match)
//!         | "majority"        more than half of the followed logs agree
//!         | "all"             every followed log agrees
//! clause  = "require=" origin *( "+" origin )    these logs must be among the agreeing
//!         | "dissent=" K                          at most K logs attest another NAR (default 0)
//! ```
//!
//! Examples: `majority` (the default), `2-of-3`, `2-of-3,dissent=1`,
//! `3-of-5,require=builder1.example.org/tally`.
//!
//! Logs agree when they attest the same NAR hash, NAR size and references: the facts a
//! narinfo signature covers. A log that has no attestation for the path, is unreachable, or
//! is excluded after evidence of misbehaviour neither supports nor dissents.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::attestation::Attestation;
use crate::keys::KeyName;
use crate::nar_hash::NarHash;
use crate::store_path::StorePath;

/// How many logs must agree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Quorum {
    /// At least `n` of `m` logs; `m` must be the number of followed logs.
    Count {
        /// Agreeing logs needed.
        n: usize,
        /// Logs followed.
        m: usize,
    },
    /// More than half of the followed logs.
    Majority,
    /// Every followed log.
    All,
}

/// A trust policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    /// How many must agree.
    pub quorum: Quorum,
    /// Logs that must be among those agreeing.
    pub required: Vec<KeyName>,
    /// The most logs that may attest a different NAR.
    pub max_dissent: usize,
}

impl Default for Policy {
    /// A strict majority, no dissent.
    fn default() -> Self {
        Policy {
            quorum: Quorum::Majority,
            required: Vec::new(),
            max_dissent: 0,
        }
    }
}

/// Why a policy does not parse or does not fit the followed logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text does not follow the grammar.
    #[error(
        "policy {text:?}: {problem} (examples: majority, 2-of-3, 2-of-3,dissent=1, 3-of-5,require=a.example/log)"
    )]
    Syntax {
        /// The policy text.
        text: String,
        /// What is wrong.
        problem: String,
    },
    /// `N-of-M` names a different number of logs than are followed.
    #[error(
        "policy {policy} counts {m} {}, but {followed} {} followed",
        plural(.m, "log", "logs"),
        plural(.followed, "is", "are")
    )]
    WrongCount {
        /// The policy.
        policy: String,
        /// Its M.
        m: usize,
        /// Logs followed.
        followed: usize,
    },
    /// A required log is not followed.
    #[error("policy {policy} requires {origin}, which is not followed")]
    UnknownLog {
        /// The policy.
        policy: String,
        /// The required origin.
        origin: String,
    },
    /// The tolerated dissent is so large that a second NAR could reach the quorum too.
    #[error(
        "policy {policy}: dissent={dissent} lets two different NARs both reach the quorum of {needed} among {followed} logs; use dissent={} at most",
        needed - 1
    )]
    DissentTooHigh {
        /// The policy.
        policy: String,
        /// Its dissent.
        dissent: usize,
        /// Agreeing logs it needs.
        needed: usize,
        /// Logs followed.
        followed: usize,
    },
}

/// The singular or plural word for `n` things.
fn plural(n: &usize, one: &'static str, many: &'static str) -> &'static str {
    if *n == 1 { one } else { many }
}

impl FromStr for Policy {
    type Err = PolicyError;
    fn from_str(text: &str) -> Result<Self, PolicyError> {
        let err = |problem: &str| PolicyError::Syntax {
            text: text.to_owned(),
            problem: problem.to_owned(),
        };
        let mut parts = text.trim().split(',');
        let quorum = match parts.next().unwrap_or_default().trim() {
            "majority" => Quorum::Majority,
            "all" => Quorum::All,
            q => {
                let (n, m) = q
                    .split_once("-of-")
                    .ok_or_else(|| err("expected N-of-M, majority or all first"))?;
                let n: usize = n.parse().map_err(|_| err("N in N-of-M is not a number"))?;
                let m: usize = m.parse().map_err(|_| err("M in N-of-M is not a number"))?;
                if n == 0 || n > m {
                    return Err(err("N-of-M needs 1 ≤ N ≤ M"));
                }
                Quorum::Count { n, m }
            }
        };
        let mut policy = Policy {
            quorum,
            ..Policy::default()
        };
        for clause in parts {
            let clause = clause.trim();
            if let Some(origins) = clause.strip_prefix("require=") {
                for o in origins.split('+') {
                    policy
                        .required
                        .push(KeyName::new(o).map_err(|e| err(&e.to_string()))?);
                }
            } else if let Some(k) = clause.strip_prefix("dissent=") {
                policy.max_dissent = k.parse().map_err(|_| err("dissent=K needs a number"))?;
            } else {
                return Err(err(&format!("unknown clause {clause:?}")));
            }
        }
        Ok(policy)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.quorum {
            Quorum::Count { n, m } => write!(f, "{n}-of-{m}")?,
            Quorum::Majority => f.write_str("majority")?,
            Quorum::All => f.write_str("all")?,
        }
        if !self.required.is_empty() {
            let names: Vec<&str> = self.required.iter().map(KeyName::as_str).collect();
            write!(f, ",require={}", names.join("+"))?;
        }
        if self.max_dissent > 0 {
            write!(f, ",dissent={}", self.max_dissent)?;
        }
        Ok(())
    }
}

impl serde::Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Policy {
    /// Checks the policy against the followed logs.
    pub fn check(&self, followed: &[KeyName]) -> Result<(), PolicyError> {
        if let Quorum::Count { m, .. } = self.quorum
            && m != followed.len()
        {
            return Err(PolicyError::WrongCount {
                policy: self.to_string(),
                m,
                followed: followed.len(),
            });
        }
        if let Some(missing) = self.required.iter().find(|r| !followed.contains(r)) {
            return Err(PolicyError::UnknownLog {
                policy: self.to_string(),
                origin: missing.to_string(),
            });
        }
        let needed = self.needed(followed.len());
        if self.max_dissent >= needed && 2 * needed <= followed.len() {
            return Err(PolicyError::DissentTooHigh {
                policy: self.to_string(),
                dissent: self.max_dissent,
                needed,
                followed: followed.len(),
            });
        }
        Ok(())
    }

    /// How many agreeing logs this policy needs when `followed` logs are followed.
    pub fn needed(&self, followed: usize) -> usize {
        match self.quorum {
            Quorum::Count { n, .. } => n,
            Quorum::Majority => followed / 2 + 1,
            Quorum::All => followed,
        }
    }

    /// Decides a path from each followed log's vote.
    pub fn decide(&self, votes: &[(KeyName, Vote)]) -> Verdict {
        self.judge(candidates(votes), votes.len())
    }

    /// Decides a path from the NARs attested for it (see [`candidates`]) among `followed`
    /// logs.
    pub fn judge(&self, candidates: Vec<Candidate>, followed: usize) -> Verdict {
        let Some(best) = candidates.first() else {
            return Verdict::Unknown {
                reason: "no followed log attests this path".into(),
            };
        };
        let support = best.origins.len();
        let dissent: usize = candidates[1..].iter().map(|c| c.origins.len()).sum();
        let needed = self.needed(followed);
        // Two NARs with a quorum each is never trusted, whatever the dissent allows.
        let rivals = candidates[1..].iter().any(|c| c.origins.len() >= needed);
        let missing: Vec<&KeyName> = self
            .required
            .iter()
            .filter(|r| !best.origins.contains(r))
            .collect();
        if support >= needed && missing.is_empty() && dissent <= self.max_dissent && !rivals {
            return Verdict::Trusted {
                agreed: best.clone(),
                dissent: candidates[1..].to_vec(),
            };
        }
        if candidates.len() > 1 {
            return Verdict::Disputed { candidates };
        }
        let reason = if support < needed {
            format!("{support} log(s) attest it; policy {self} needs {needed}")
        } else {
            let names: Vec<&str> = missing.iter().map(|k| k.as_str()).collect();
            format!(
                "policy {self} requires {} among the attesting logs",
                names.join(", ")
            )
        };
        Verdict::Unknown { reason }
    }
}

/// The NARs the present votes attest, each with its supporters: most support first, ties in
/// a fixed order.
pub fn candidates(votes: &[(KeyName, Vote)]) -> Vec<Candidate> {
    let mut candidates: BTreeMap<NarIdentity, Candidate> = BTreeMap::new();
    for (origin, vote) in votes {
        if let Vote::Present(a) = vote {
            candidates
                .entry(NarIdentity::of(a))
                .or_insert_with(|| Candidate::of(a))
                .origins
                .push(origin.clone());
        }
    }
    let mut candidates: Vec<Candidate> = candidates.into_values().collect();
    candidates.sort_by(|a, b| {
        b.origins
            .len()
            .cmp(&a.origins.len())
            .then(a.nar_hash.cmp(&b.nar_hash))
    });
    candidates
}

/// One log's answer about a path, as far as voting is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    /// The log attests this.
    Present(Box<Attestation>),
    /// The log proved it has no attestation for the path.
    Absent,
    /// The log could not be asked, or is excluded; the reason says which.
    Unavailable(String),
}

/// What makes two attestations agree: the facts a narinfo signature covers, the whole store
/// path (hash and name) among them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct NarIdentity {
    nar_hash: NarHash,
    nar_size: u64,
    references: Vec<StorePath>,
    output_path: StorePath,
}

impl NarIdentity {
    fn of(a: &Attestation) -> NarIdentity {
        NarIdentity {
            nar_hash: a.nar_hash(),
            nar_size: a.nar_size(),
            references: a.references().to_vec(),
            output_path: a.output_path().clone(),
        }
    }
}

/// A NAR some logs attest for a path, and which logs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    /// The whole store path attested (hash part and name).
    pub output_path: StorePath,
    /// The NAR hash.
    pub nar_hash: NarHash,
    /// The NAR size.
    pub nar_size: u64,
    /// The references.
    pub references: Vec<StorePath>,
    /// The logs attesting it.
    pub origins: Vec<KeyName>,
}

impl Candidate {
    fn of(a: &Attestation) -> Candidate {
        Candidate {
            output_path: a.output_path().clone(),
            nar_hash: a.nar_hash(),
            nar_size: a.nar_size(),
            references: a.references().to_vec(),
            origins: Vec::new(),
        }
    }
}

/// The decision about one path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Verdict {
    /// Enough logs agree on this NAR, and the policy tolerates the rest.
    Trusted {
        /// The NAR agreed on, and its supporters.
        agreed: Candidate,
        /// Other NARs attested, within the tolerated dissent.
        dissent: Vec<Candidate>,
    },
    /// Logs attest different NARs, and the policy's quorum is not met.
    Disputed {
        /// Each NAR attested and its supporters, most support first.
        candidates: Vec<Candidate>,
    },
    /// Too few logs attest the path.
    Unknown {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// `trusted`, `disputed` or `unknown`.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Trusted { .. } => "trusted",
            Verdict::Disputed { .. } => "disputed",
            Verdict::Unknown { .. } => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hash;
    use crate::sample;

    fn logs(n: usize) -> Vec<KeyName> {
        (0..n)
            .map(|i| KeyName::new(&format!("log{i}.example/tally")).unwrap())
            .collect()
    }

    fn votes(logs: &[KeyName], v: &[Vote]) -> Vec<(KeyName, Vote)> {
        logs.iter().cloned().zip(v.iter().cloned()).collect()
    }

    fn honest() -> Vote {
        Vote::Present(Box::new(sample::attestation(7)))
    }

    fn other() -> Vote {
        Vote::Present(Box::new(sample::attestation_with_nar(7, Hash::of(b"evil"))))
    }

    #[test]
    fn parses_and_prints() {
        for text in [
            "majority",
            "all",
            "2-of-3",
            "2-of-3,dissent=1",
            "3-of-5,require=a.example/x+b.example/y",
        ] {
            assert_eq!(text.parse::<Policy>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "two-of-three",
            "0-of-3",
            "4-of-3",
            "2-of-3,dissent=x",
            "2-of-3,quorum=2",
            "majority,require=a b",
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
        let p: Policy = "2-of-3".parse().unwrap();
        assert!(p.check(&logs(3)).is_ok());
        assert!(matches!(
            p.check(&logs(4)),
            Err(PolicyError::WrongCount {
                m: 3,
                followed: 4,
                ..
            })
        ));
        let r: Policy = "majority,require=nope.example/x".parse().unwrap();
        assert!(matches!(
            r.check(&logs(3)),
            Err(PolicyError::UnknownLog { .. })
        ));
    }

    #[test]
    fn a_dissent_that_lets_two_nars_reach_the_quorum_is_refused() {
        let p: Policy = "2-of-4,dissent=2".parse().unwrap();
        let err = p.check(&logs(4)).unwrap_err();
        assert!(
            matches!(err, PolicyError::DissentTooHigh { needed: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("dissent=1 at most"), "{err}");
        // With 3 logs a second NAR cannot reach 2 as well, so the same dissent is harmless.
        assert!(
            "2-of-3,dissent=2"
                .parse::<Policy>()
                .unwrap()
                .check(&logs(3))
                .is_ok()
        );
        // Even unchecked, two candidates with a quorum each are disputed, never trusted.
        let l = logs(4);
        let v = votes(&l, &[honest(), honest(), other(), other()]);
        assert!(matches!(p.decide(&v), Verdict::Disputed { .. }));
    }

    #[test]
    fn the_same_nar_under_another_name_is_another_candidate() {
        let l = logs(2);
        let a = sample::attestation(7);
        let mut fields = a.fields().clone();
        let renamed = format!("/nix/store/{}-evil", a.output_path().hash());
        fields.output_path = StorePath::parse(&renamed).unwrap();
        let v = votes(
            &l,
            &[
                Vote::Present(Box::new(a)),
                Vote::Present(Box::new(Attestation::new(fields).unwrap())),
            ],
        );
        assert!(matches!(
            Policy::default().decide(&v),
            Verdict::Disputed { .. }
        ));
    }

    #[test]
    fn three_honest_logs_are_trusted() {
        let l = logs(3);
        let v = Policy::default().decide(&votes(&l, &[honest(), honest(), honest()]));
        let Verdict::Trusted { agreed, dissent } = v else {
            panic!("{v:?}")
        };
        assert_eq!(agreed.origins.len(), 3);
        assert!(dissent.is_empty());
    }

    #[test]
    fn one_dissenter_disputes_by_default_and_is_tolerated_on_request() {
        let l = logs(3);
        let v = votes(&l, &[honest(), honest(), other()]);
        assert!(
            matches!(Policy::default().decide(&v), Verdict::Disputed { ref candidates } if candidates.len() == 2)
        );
        let tolerant: Policy = "2-of-3,dissent=1".parse().unwrap();
        let Verdict::Trusted { agreed, dissent } = tolerant.decide(&v) else {
            panic!()
        };
        assert_eq!(agreed.nar_hash, sample::attestation(7).nar_hash());
        assert_eq!(dissent[0].origins, [l[2].clone()]);
    }

    #[test]
    fn absence_and_silence_never_support() {
        let l = logs(3);
        let v = votes(
            &l,
            &[honest(), Vote::Absent, Vote::Unavailable("down".into())],
        );
        assert!(matches!(
            Policy::default().decide(&v),
            Verdict::Unknown { .. }
        ));
        let one: Policy = "1-of-3".parse().unwrap();
        assert!(matches!(one.decide(&v), Verdict::Trusted { .. }));
        let v = votes(&l, &[Vote::Absent, Vote::Absent, Vote::Absent]);
        assert!(matches!(one.decide(&v), Verdict::Unknown { .. }));
    }

    #[test]
    fn required_logs_must_agree() {
        let l = logs(3);
        let p: Policy = format!("2-of-3,require={}", l[2]).parse().unwrap();
        let v = votes(&l, &[honest(), honest(), Vote::Absent]);
        let verdict = p.decide(&v);
        assert!(
            matches!(&verdict, Verdict::Unknown { reason } if reason.contains("requires")),
            "{verdict:?}"
        );
        let v = votes(&l, &[honest(), Vote::Absent, honest()]);
        assert!(matches!(p.decide(&v), Verdict::Trusted { .. }));
    }

    #[test]
    fn references_count_as_part_of_the_nar() {
        let l = logs(2);
        let a = sample::attestation(8);
        let mut fields = a.fields().clone();
        fields.references.clear();
        let stripped = Attestation::new(fields).unwrap();
        let v = votes(
            &l,
            &[
                Vote::Present(Box::new(a)),
                Vote::Present(Box::new(stripped)),
            ],
        );
        assert!(matches!(
            Policy::default().decide(&v),
            Verdict::Disputed { .. }
        ));
    }
}
