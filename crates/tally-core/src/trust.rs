//! A consumer's trust policy: the C2SP tlog-policy file, plus Tally's attestation quorum.
//!
//! ```text
//! # The logs whose votes count: their verifier keys (the key name is the origin), and
//! # optionally where to reach them.
//! log builder1.example.org/tally+4596fa37+AZx05ZFgVj5LsROwtdwlhE0vw56itUBGI6PO4Dso0t1R https://builder1.example.org/tally
//! log builder2.example.org/tally+8d2f4a01+AbP+CbeLDUbVfM1LCVh6uDm62lNM97xqgEw6c+JPI0qU
//! log builder3.example.org/tally+2a8bd6c3+Af1xpV9ws6KXGSKzTnXcdeg6ex1sG2/wUgN3A+BulN6z
//!
//! # The witnesses, and how many must have cosigned a log's checkpoint (tlog-policy).
//! witness w1 witness1.example+0f1e2d3c+BKn3...
//! witness w2 witness2.example+11223344+BPq8...
//! group two-witnesses 2 w1 w2
//! # Or `quorum none`, to accept checkpoints no witness cosigned.
//! quorum two-witnesses
//!
//! # Tally's lines. How many logs must attest the same NAR (src/policy.rs's grammar):
//! attest 2-of-3,dissent=1
//! # More URLs for a log (mirrors), tried after the one on its log line:
//! mirror builder2.example.org/tally https://mirror.example.org/builder2
//! # Cosignatures older than this many seconds do not count towards the witness quorum:
//! max-age 86400
//! ```
//!
//! The file follows `../shared/specs/tlog-policy.md` exactly for `log`, `witness`, `group`
//! and `quorum`: whitespace is spaces and tabs, `#` starts a comment line, names are opaque
//! octets, a group or the quorum names only what is defined above it, `none` is predefined,
//! a member is listed at most once per group, and there is exactly one quorum line. Tally
//! adds `attest` (at most once; `majority` when absent), `mirror`, and `max-age` (at most
//! once; only with a witness quorum).
//!
//! Parsing rejects, naming the line: a public key listed twice (under any name, as a log
//! or a witness), a vkey of the wrong type for its line, an unknown name, an attestation
//! quorum whose M is not the number of logs or whose dissent would let two NARs both reach
//! the quorum, and any character the spec does not allow. A [`TrustPolicy`] in hand is
//! therefore one a consumer can decide with.

use std::collections::BTreeMap;

/// How far in the future a cosignature's timestamp may be, in seconds, and still count
/// under `max-age`: clocks differ, but not by more than this.
pub const CLOCK_SKEW_SECS: u64 = 600;
use std::fmt;

use crate::cosignature::CosignatureVerifier;
use crate::keys::{KeyName, VerifyingKey};
use crate::note::Note;
use crate::policy::{Policy, PolicyError};

/// More logs, witnesses or groups than this is refused; the spec asks for at least 32.
pub const MAX_ENTRIES: usize = 256;

/// A parsed, checked trust policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPolicy {
    logs: Vec<TrustedLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Option<Member>,
    attest: Policy,
    max_age: Option<u64>,
}

/// A log whose answers count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedLog {
    /// Its key; the key's name is the log's origin.
    pub key: VerifyingKey,
    /// Where to reach it, in order: the `log` line's URL, then its `mirror` lines.
    pub urls: Vec<String>,
}

impl TrustedLog {
    /// The log's origin.
    pub fn origin(&self) -> &KeyName {
        self.key.name()
    }
}

/// A witness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its name in the policy file.
    pub name: String,
    /// Its cosigner key.
    pub key: CosignatureVerifier,
    /// Its tlog-witness submission prefix, if given.
    pub url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// Why a policy file is refused: the line, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct TrustPolicyError {
    /// The line number, from 1 (0 for the file as a whole).
    pub line: usize,
    /// What is wrong, and how to fix it.
    pub problem: String,
}

/// Which of the policy's witnesses cosigned a checkpoint, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witnessed {
    /// Each policy witness whose valid cosignature the note carries, with its timestamp.
    pub cosigned: Vec<(String, u64)>,
}

impl TrustPolicy {
    /// Parses and checks a policy file.
    pub fn parse(text: &[u8]) -> Result<TrustPolicy, TrustPolicyError> {
        Parser::default().parse(text)
    }

    /// The logs, in file order.
    pub fn logs(&self) -> &[TrustedLog] {
        &self.logs
    }

    /// The log with this origin.
    pub fn log(&self, origin: &KeyName) -> Option<&TrustedLog> {
        self.logs.iter().find(|l| l.origin() == origin)
    }

    /// The logs' origins, in file order.
    pub fn origins(&self) -> Vec<KeyName> {
        self.logs.iter().map(|l| l.origin().clone()).collect()
    }

    /// The witnesses, in file order.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether any cosignature is required (`quorum none` requires none).
    pub fn requires_witnesses(&self) -> bool {
        self.quorum.is_some()
    }

    /// The attestation quorum.
    pub fn attest(&self) -> &Policy {
        &self.attest
    }

    /// Replaces the attestation quorum (for example from a `--policy` option), checked
    /// against the logs as the file's own would be.
    pub fn with_attest(mut self, attest: Policy) -> Result<TrustPolicy, PolicyError> {
        attest.check(&self.origins())?;
        self.attest = attest;
        Ok(self)
    }

    /// A policy of `keys` alone: no witnesses (`quorum none`) and the attestation quorum
    /// `attest`, for consumers given keys rather than a file.
    pub fn of_keys(keys: &[VerifyingKey], attest: Policy) -> Result<TrustPolicy, TrustPolicyError> {
        let mut text = String::new();
        for k in keys {
            text.push_str(&format!("log {}\n", k.to_note_vkey()));
        }
        text.push_str(&format!("quorum none\nattest {attest}\n"));
        TrustPolicy::parse(text.as_bytes())
    }

    /// The policy's witnesses whose valid cosignature `note` (a log's checkpoint) carries.
    /// Cosignatures by keys outside the policy, and invalid ones, are ignored.
    pub fn witnessed(&self, note: &Note) -> Witnessed {
        Witnessed {
            cosigned: self
                .witnesses
                .iter()
                .filter_map(|w| w.key.verify(note).ok().map(|t| (w.name.clone(), t)))
                .collect(),
        }
    }

    /// Whether `witnessed` meets the quorum at `now` (seconds since 1970): always under
    /// `quorum none`; otherwise counting only cosignatures within `max-age`, if set. Under
    /// `max-age`, a cosignature dated more than [`CLOCK_SKEW_SECS`] in the future does not
    /// count either: a witness cannot make its cosignature stay fresh for ever.
    pub fn quorum_met(&self, witnessed: &Witnessed, now: u64) -> bool {
        let Some(quorum) = self.quorum else {
            return true;
        };
        let fresh: Vec<bool> = self
            .witnesses
            .iter()
            .map(|w| {
                witnessed.cosigned.iter().any(|(name, t)| {
                    *name == w.name
                        && self.max_age.is_none_or(|age| {
                            t.saturating_add(age) >= now
                                && *t <= now.saturating_add(CLOCK_SKEW_SECS)
                        })
                })
            })
            .collect();
        self.satisfied(quorum, &fresh)
    }

    /// The longest a cosignature counts, in seconds, if limited.
    pub fn max_age(&self) -> Option<u64> {
        self.max_age
    }

    fn satisfied(&self, member: Member, fresh: &[bool]) -> bool {
        match member {
            Member::Witness(i) => fresh[i],
            Member::Group(g) => {
                let group = &self.groups[g];
                group
                    .members
                    .iter()
                    .filter(|m| self.satisfied(**m, fresh))
                    .count()
                    >= group.threshold
            }
        }
    }

    /// The quorum, as the file names it.
    pub fn quorum_name(&self) -> &str {
        match self.quorum {
            None => "none",
            Some(Member::Witness(i)) => &self.witnesses[i].name,
            Some(Member::Group(g)) => &self.groups[g].name,
        }
    }
}

impl fmt::Display for TrustPolicy {
    /// A one-line summary: the logs, the attestation quorum and the witness quorum.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let logs = self.logs.len();
        write!(
            f,
            "{logs} {}, attest {}, witness quorum {}",
            if logs == 1 { "log" } else { "logs" },
            self.attest,
            self.quorum_name()
        )
    }
}

/// The state of a parse: what has been defined so far.
#[derive(Default)]
struct Parser {
    logs: Vec<TrustedLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    /// Witness and group names (one namespace), to their definitions.
    names: BTreeMap<String, Member>,
    /// Every public key seen, to the line that defined it.
    keys: BTreeMap<[u8; 32], usize>,
    quorum: Option<(usize, Option<Member>)>,
    attest: Option<(usize, String)>,
    max_age: Option<(usize, u64)>,
    mirrors: Vec<(usize, String, String)>,
}

impl Parser {
    fn parse(mut self, text: &[u8]) -> Result<TrustPolicy, TrustPolicyError> {
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line_no = n + 1;
            let err = |problem: String| TrustPolicyError {
                line: line_no,
                problem,
            };
            if let Some(bad) = line
                .iter()
                .find(|&&b| b != b'\t' && (b < 0x20 || b == 0x7f))
            {
                let hint = if *bad == b'\r' {
                    " (Windows line endings? the file must use \\n only)"
                } else {
                    ""
                };
                return Err(err(format!(
                    "control character 0x{bad:02x} is not allowed{hint}"
                )));
            }
            let words: Vec<&[u8]> = line
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|w| !w.is_empty())
                .collect();
            let Some((keyword, args)) = words.split_first() else {
                continue;
            };
            if keyword.starts_with(b"#") {
                continue;
            }
            self.line(line_no, keyword, args).map_err(err)?;
        }
        self.finish()
    }

    fn line(&mut self, line: usize, keyword: &[u8], args: &[&[u8]]) -> Result<(), String> {
        match keyword {
            b"log" => self.log(line, args),
            b"witness" => self.witness(line, args),
            b"group" => self.group(args),
            b"quorum" => self.quorum(line, args),
            b"attest" => self.attest(line, args),
            b"mirror" => self.mirror(line, args),
            b"max-age" => self.max_age(line, args),
            other => Err(format!(
                "unknown keyword {:?}; a line starts with log, witness, group, quorum, \
                 attest, mirror or max-age",
                String::from_utf8_lossy(other)
            )),
        }
    }

    fn new_key(&mut self, line: usize, bytes: &[u8; 32], what: &str) -> Result<(), String> {
        if let Some(first) = self.keys.insert(*bytes, line) {
            return Err(format!(
                "{what} uses the same public key as line {first}; one key may be listed once, \
                 under one name"
            ));
        }
        if self.keys.len() > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} keys"));
        }
        Ok(())
    }

    fn log(&mut self, line: usize, args: &[&[u8]]) -> Result<(), String> {
        let (vkey, url) = match args {
            [vkey] => (*vkey, None),
            [vkey, url] => (*vkey, Some(utf8(url, "URL")?)),
            _ => return Err("expected `log <vkey> [<url>]`".into()),
        };
        let vkey = utf8(vkey, "vkey")?;
        let key = VerifyingKey::from_note_vkey(vkey).map_err(|e| {
            format!("{e}; a log line takes the log's signed-note verifier key (tally key public)")
        })?;
        self.new_key(line, key.as_bytes(), &format!("log {}", key.name()))?;
        self.logs.push(TrustedLog {
            key,
            urls: url.map(str::to_owned).into_iter().collect(),
        });
        Ok(())
    }

    fn define(&mut self, name: &[u8], member: Member) -> Result<String, String> {
        let name = utf8(name, "name")?.to_owned();
        if name == "none" {
            return Err("`none` is predefined and cannot be redefined".into());
        }
        if self.names.insert(name.clone(), member).is_some() {
            return Err(format!("{name:?} is already defined above"));
        }
        Ok(name)
    }

    fn witness(&mut self, line: usize, args: &[&[u8]]) -> Result<(), String> {
        let (name, vkey, url) = match args {
            [name, vkey] => (*name, *vkey, None),
            [name, vkey, url] => (*name, *vkey, Some(utf8(url, "URL")?.to_owned())),
            _ => return Err("expected `witness <name> <vkey> [<url>]`".into()),
        };
        let key = CosignatureVerifier::parse(utf8(vkey, "vkey")?).map_err(|e| {
            format!(
                "{e}; a witness line takes the witness's cosignature verifier key \
                 (name+id+base64 of 0x04 and the public key)"
            )
        })?;
        self.new_key(line, key.public_key().as_bytes(), "witness")?;
        let name = self.define(name, Member::Witness(self.witnesses.len()))?;
        self.witnesses.push(PolicyWitness { name, key, url });
        Ok(())
    }

    fn member(&self, name: &[u8]) -> Result<Member, String> {
        let text = String::from_utf8_lossy(name);
        if text == "none" {
            return Err("`none` cannot be a group member".into());
        }
        self.names.get(text.as_ref()).copied().ok_or_else(|| {
            format!("{text:?} is not defined above; define a witness or group before using it")
        })
    }

    fn group(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let [name, threshold, members @ ..] = args else {
            return Err("expected `group <name> all|any|<k> <name>...`".into());
        };
        if members.is_empty() {
            return Err("a group needs at least one member".into());
        }
        let mut resolved = Vec::with_capacity(members.len());
        for m in members {
            let member = self.member(m)?;
            if resolved.contains(&member) {
                return Err(format!(
                    "{:?} is listed twice in this group",
                    String::from_utf8_lossy(m)
                ));
            }
            resolved.push(member);
        }
        let n = resolved.len();
        let threshold = match *threshold {
            b"all" => n,
            b"any" => 1,
            k => {
                let k: usize = std::str::from_utf8(k)
                    .ok()
                    .filter(|k| k.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|k| k.parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "threshold {:?} is not all, any or a decimal number",
                            String::from_utf8_lossy(k)
                        )
                    })?;
                if !(1..=n).contains(&k) {
                    return Err(format!(
                        "threshold {k} is not between 1 and {n} (the members)"
                    ));
                }
                k
            }
        };
        if self.groups.len() >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} groups"));
        }
        let name = self.define(name, Member::Group(self.groups.len()))?;
        self.groups.push(Group {
            name,
            threshold,
            members: resolved,
        });
        Ok(())
    }

    fn quorum(&mut self, line: usize, args: &[&[u8]]) -> Result<(), String> {
        let [name] = args else {
            return Err("expected `quorum <name>` (or `quorum none`)".into());
        };
        if let Some((first, _)) = self.quorum {
            return Err(format!(
                "a second quorum line (the first is line {first}); a policy has exactly one"
            ));
        }
        let member = if *name == b"none" {
            None
        } else {
            Some(self.member(name)?)
        };
        self.quorum = Some((line, member));
        Ok(())
    }

    fn attest(&mut self, line: usize, args: &[&[u8]]) -> Result<(), String> {
        let [policy] = args else {
            return Err(
                "expected `attest <quorum>`, e.g. `attest 2-of-3` or `attest majority,dissent=1`"
                    .into(),
            );
        };
        if let Some((first, _)) = &self.attest {
            return Err(format!("a second attest line (the first is line {first})"));
        }
        let text = utf8(policy, "attestation quorum")?;
        // Syntax now; the count of logs once every log line is read.
        text.parse::<Policy>().map_err(|e| e.to_string())?;
        self.attest = Some((line, text.to_owned()));
        Ok(())
    }

    fn max_age(&mut self, line: usize, args: &[&[u8]]) -> Result<(), String> {
        let [secs] = args else {
            return Err("expected `max-age <seconds>`".into());
        };
        if let Some((first, _)) = self.max_age {
            return Err(format!("a second max-age line (the first is line {first})"));
        }
        let secs = std::str::from_utf8(secs)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .ok_or("max-age takes a number of seconds, at least 1")?;
        self.max_age = Some((line, secs));
        Ok(())
    }

    fn mirror(&mut self, line: usize, args: &[&[u8]]) -> Result<(), String> {
        let [origin, url] = args else {
            return Err("expected `mirror <origin> <url>`".into());
        };
        self.mirrors.push((
            line,
            utf8(origin, "origin")?.to_owned(),
            utf8(url, "URL")?.to_owned(),
        ));
        Ok(())
    }

    fn finish(mut self) -> Result<TrustPolicy, TrustPolicyError> {
        let whole = |problem: String| TrustPolicyError { line: 0, problem };
        let Some((_, quorum)) = self.quorum else {
            return Err(whole(
                "no quorum line; add `quorum none` (no witnesses required) or `quorum <name>`"
                    .into(),
            ));
        };
        if self.logs.is_empty() {
            return Err(whole(
                "no log lines: list the logs whose votes count".into(),
            ));
        }
        for (line, origin, url) in std::mem::take(&mut self.mirrors) {
            let log = self
                .logs
                .iter_mut()
                .find(|l| l.origin().as_str() == origin)
                .ok_or_else(|| TrustPolicyError {
                    line,
                    problem: format!("{origin:?} is not the origin of a log listed in the file"),
                })?;
            log.urls.push(url);
        }
        let (line, attest) = match self.attest {
            Some((line, text)) => (
                line,
                text.parse::<Policy>().map_err(|e| whole(e.to_string()))?,
            ),
            None => (0, Policy::default()),
        };
        let origins: Vec<KeyName> = self.logs.iter().map(|l| l.origin().clone()).collect();
        attest.check(&origins).map_err(|e| TrustPolicyError {
            line,
            problem: e.to_string(),
        })?;
        if let (Some((line, _)), None) = (self.max_age, quorum) {
            return Err(TrustPolicyError {
                line,
                problem: "max-age limits the age of cosignatures, but `quorum none` requires \
                          none; set a witness quorum or drop max-age"
                    .into(),
            });
        }
        Ok(TrustPolicy {
            logs: self.logs,
            witnesses: self.witnesses,
            groups: self.groups,
            quorum,
            attest,
            max_age: self.max_age.map(|(_, s)| s),
        })
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("the {what} is not UTF-8"))
}

#[cfg(test)]
mod tests;
