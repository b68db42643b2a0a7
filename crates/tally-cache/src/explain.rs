//! Why a path is served or refused: the one evaluation behind both `/<hash>.narinfo` and
//! `/explain/<hash>`, so an explanation can never differ from what the cache does.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tally_core::StorePathHash;
use tally_core::decision::{Counted, Decision};
use tally_core::policy::Verdict;
use tally_nix::narinfo::NarInfo;

use crate::config::Mode;
use crate::decision::{Refusal, admit, compare};
use crate::http::CacheState;

/// What the cache does with a narinfo request.
#[derive(Debug)]
pub enum Outcome {
    /// Served, re-signed with the cache's key.
    Served(Box<NarInfo>),
    /// Refused with a 404: the cache knows the answer is no.
    Refused {
        /// A label for metrics.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// A 502: the cache could not find out.
    Failed {
        /// A label for metrics.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// Report-only mode: the upstream narinfo, passed on unchanged, that the gate would have
    /// refused (or could not decide) for `reason`.
    PassedOn {
        /// The upstream's narinfo text.
        text: String,
        /// The refusal's label.
        kind: &'static str,
        /// Why it would have been refused.
        reason: String,
    },
}

impl Outcome {
    /// The HTTP status the cache answers with.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Served(_) | Outcome::PassedOn { .. } => 200,
            Outcome::Refused { .. } => 404,
            Outcome::Failed { .. } => 502,
        }
    }

    /// The label metrics count it under.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Served(_) => "served",
            Outcome::PassedOn { .. } => "report_only",
            Outcome::Refused { kind, .. } | Outcome::Failed { kind, .. } => kind,
        }
    }
}

/// A request, evaluated: the upstream narinfo, every log's vote, and the outcome.
pub struct Evaluation {
    /// The path asked.
    pub hash: StorePathHash,
    /// The upstream that had the narinfo, and the narinfo.
    pub upstream: Option<(String, NarInfo)>,
    /// The decision, if one could be had.
    pub decision: Option<Arc<Decision>>,
    /// Whether the decision was reused.
    pub cached: bool,
    /// What the cache does.
    pub outcome: Outcome,
}

fn failed(kind: &'static str, reason: String) -> Outcome {
    Outcome::Failed { kind, reason }
}

/// Fetches the upstream narinfo and the decision at once, and decides what to serve.
pub async fn evaluate(s: &CacheState, hash: &StorePathHash) -> Evaluation {
    let (found, decision) = tokio::join!(s.upstreams.narinfo(hash), s.decisions.decide(hash));
    let mut e = Evaluation {
        hash: *hash,
        upstream: None,
        decision: None,
        cached: false,
        outcome: failed("pending", String::new()),
    };
    let found = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            e.outcome = Outcome::Refused {
                kind: "not_upstream",
                reason: format!("{hash}: no upstream has it"),
            };
            return e;
        }
        Err(err) => {
            e.outcome = failed("upstream_error", err.to_string());
            return e;
        }
    };
    let info = match NarInfo::parse(&found.text) {
        Ok(info) if info.store_path.hash() == *hash => info,
        Ok(info) => {
            let reason = format!(
                "{} served a narinfo for {} when asked for {hash}",
                found.cache, info.store_path
            );
            e.outcome = failed("bad_upstream_narinfo", reason);
            return e;
        }
        Err(err) => {
            let reason = format!("{} served a bad narinfo for {hash}: {err}", found.cache);
            e.outcome = failed("bad_upstream_narinfo", reason);
            return e;
        }
    };
    e.upstream = Some((found.cache.to_string(), info.clone()));
    let refusal = match decision {
        Err(err) => {
            if let crate::decision::DecisionError::NothingVerified(d) = &err {
                e.decision = Some(Arc::clone(d));
            }
            Err(failed("no_decision", err.to_string()))
        }
        Ok((decision, cached)) => {
            e.cached = cached;
            let verdict = decision.verdict.clone();
            e.decision = Some(decision);
            admit(&info, &verdict).map_err(|r: Refusal| Outcome::Refused {
                kind: r.kind(),
                reason: format!("{}: {r}", info.store_path),
            })
        }
    };
    e.outcome = match (refusal, s.mode) {
        (Ok(()), _) => {
            let mut info = info;
            info.sign(&s.key);
            Outcome::Served(Box::new(info))
        }
        (
            Err(Outcome::Refused { kind, reason } | Outcome::Failed { kind, reason }),
            Mode::ReportOnly,
        ) => Outcome::PassedOn {
            text: found.text,
            kind,
            reason,
        },
        (Err(refused), Mode::Enforce) => refused,
        (Err(other), Mode::ReportOnly) => other,
    };
    e
}

/// An evaluation as `/explain` shows it (and `tally cache explain` reads it back).
#[derive(Serialize, Deserialize)]
pub struct Explanation {
    /// The hash part asked.
    pub path: String,
    /// The store path the upstream narinfo names.
    pub store_path: Option<String>,
    /// The HTTP status a narinfo request gets.
    pub status: u16,
    /// `served`, `report_only`, or why not (`disputed`, `unknown`, `mismatch`, …).
    pub outcome: String,
    /// Why it is not served.
    pub reason: Option<String>,
    /// The cache's trust policy, in one line.
    pub policy: String,
    /// Where the answers came from.
    pub source: String,
    /// `enforce` or `report-only`.
    pub mode: String,
    /// Whether the decision was reused.
    pub decision_reused: bool,
    /// The upstream that had the narinfo.
    pub upstream: Option<String>,
    /// Every policy log's vote.
    pub votes: Vec<VoteExplained>,
    /// Answers not counted at all.
    pub ignored: Vec<IgnoredExplained>,
    /// The verdict over the verified votes.
    pub verdict: Option<Verdict>,
    /// The narinfo against the attested NAR, field by field.
    pub comparison: Vec<FieldExplained>,
}

/// One log's vote, explained.
#[derive(Serialize, Deserialize)]
pub struct VoteExplained {
    /// The log.
    pub origin: String,
    /// `present`, `absent`, `rejected` or `missing`.
    pub vote: String,
    /// Whether its proofs verified.
    pub verified: bool,
    /// In words.
    pub detail: String,
    /// The policy witnesses that cosigned its checkpoint.
    pub cosigned_by: Vec<String>,
    /// The NAR hash it attests.
    pub nar_hash: Option<String>,
}

/// An answer not counted, explained.
#[derive(Serialize, Deserialize)]
pub struct IgnoredExplained {
    /// The log it claimed to be from.
    pub origin: String,
    /// Why it was not counted.
    pub why: String,
}

/// One compared field.
#[derive(Serialize, Deserialize)]
pub struct FieldExplained {
    /// `StorePath`, `NarHash`, `NarSize` or `References`.
    pub field: String,
    /// The narinfo's value.
    pub narinfo: String,
    /// The attested value.
    pub attested: String,
    /// Whether they are equal.
    pub equal: bool,
}

impl Explanation {
    /// Explains an evaluation.
    pub fn of(s: &CacheState, e: &Evaluation) -> Explanation {
        let reason = match &e.outcome {
            Outcome::Served(_) => None,
            Outcome::Refused { reason, .. }
            | Outcome::Failed { reason, .. }
            | Outcome::PassedOn { reason, .. } => Some(reason.clone()),
        };
        let votes = e.decision.as_ref().map_or_else(Vec::new, |d| {
            d.votes
                .iter()
                .map(|v| {
                    let (cosigned, nar) = match &v.counted {
                        Counted::Present {
                            cosigned,
                            attestation,
                            ..
                        } => (cosigned.clone(), Some(attestation.nar_hash().to_string())),
                        Counted::Absent { cosigned, .. } => (cosigned.clone(), None),
                        _ => (Vec::new(), None),
                    };
                    VoteExplained {
                        origin: v.origin.to_string(),
                        vote: v.counted.name().to_owned(),
                        verified: v.counted.verified(),
                        detail: v.counted.to_string(),
                        cosigned_by: cosigned.into_iter().map(|(w, _)| w).collect(),
                        nar_hash: nar,
                    }
                })
                .collect()
        });
        let ignored = e.decision.as_ref().map_or_else(Vec::new, |d| {
            d.ignored
                .iter()
                .map(|i| IgnoredExplained {
                    origin: i.origin.clone(),
                    why: i.why.clone(),
                })
                .collect()
        });
        let agreed = e.decision.as_ref().and_then(|d| match &d.verdict {
            Verdict::Trusted { agreed, .. } => Some(agreed.clone()),
            _ => None,
        });
        let comparison = match (&e.upstream, &agreed) {
            (Some((_, info)), Some(agreed)) => compare(info, agreed)
                .into_iter()
                .map(|m| FieldExplained {
                    field: m.field.to_owned(),
                    equal: m.narinfo == m.attested,
                    narinfo: m.narinfo,
                    attested: m.attested,
                })
                .collect(),
            _ => Vec::new(),
        };
        Explanation {
            path: e.hash.to_string(),
            store_path: e.upstream.as_ref().map(|(_, i)| i.store_path.to_string()),
            status: e.outcome.status(),
            outcome: e.outcome.kind().to_owned(),
            reason,
            policy: s.decisions.trust().to_string(),
            source: s.decisions.source(),
            mode: match s.mode {
                Mode::Enforce => "enforce",
                Mode::ReportOnly => "report-only",
            }
            .to_owned(),
            decision_reused: e.cached,
            upstream: e.upstream.as_ref().map(|(c, _)| c.clone()),
            votes,
            ignored,
            verdict: e.decision.as_ref().map(|d| d.verdict.clone()),
            comparison,
        }
    }

    /// The explanation as text, for people.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let path = self.store_path.as_deref().unwrap_or(&self.path);
        let _ = writeln!(t, "{path}: {} ({})", self.outcome, self.status);
        if let Some(r) = &self.reason {
            let _ = writeln!(t, "  why: {r}");
        }
        let _ = writeln!(t, "policy: {} ({} mode)", self.policy, self.mode);
        let _ = writeln!(
            t,
            "answers from: {}{}",
            self.source,
            if self.decision_reused {
                " (decision reused)"
            } else {
                ""
            }
        );
        if let Some(u) = &self.upstream {
            let _ = writeln!(t, "upstream narinfo from: {u}");
        }
        if !self.votes.is_empty() {
            let _ = writeln!(t, "votes:");
            for v in &self.votes {
                let mark = if v.verified {
                    "verified"
                } else {
                    "NOT counted"
                };
                let _ = writeln!(t, "  {:<40} {:<8} [{mark}] {}", v.origin, v.vote, v.detail);
                if !v.cosigned_by.is_empty() {
                    let _ = writeln!(t, "  {:<40} cosigned by {}", "", v.cosigned_by.join(", "));
                }
            }
        }
        for i in &self.ignored {
            let _ = writeln!(t, "  ignored answer claiming {}: {}", i.origin, i.why);
        }
        if let Some(v) = &self.verdict {
            let _ = writeln!(t, "verdict: {}", v.status());
        }
        if !self.comparison.is_empty() {
            let _ = writeln!(t, "narinfo against the attested NAR:");
            for f in &self.comparison {
                let mark = if f.equal { "=" } else { "≠" };
                let _ = writeln!(t, "  {:<10} {mark} narinfo {:?}", f.field, f.narinfo);
                if !f.equal {
                    let _ = writeln!(t, "  {:<10}   attested {:?}", "", f.attested);
                }
            }
        }
        t
    }
}
